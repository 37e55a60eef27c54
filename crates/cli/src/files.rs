//! The JSON files `calybris explain` and `calybris policy check` read. Their schemas
//! are `docs/schemas/policy.schema.json` and `docs/schemas/request.schema.json`.
//!
//! A policy file is exactly the kernel's `serde` form of a `PolicySnapshot`
//! (`{"params": {...}, "models": [...]}`), so a snapshot serialized by a service
//! can be checked as it is. A request file names only the fields it sets: the
//! others take `KernelInput::default()`'s values (no limit, every provider, any
//! region). Unknown keys are refused in both, so a typo is an error, not a silent
//! default.

use std::path::{Path, PathBuf};

use calybris::kernel::{
    InputError, KernelInput, KernelModel, PolicyError, PolicyParams, PolicySnapshot,
};
use serde::Deserialize;

use crate::report::{Code, Reason};

/// The largest JSON file read, in bytes: far above any valid policy of
/// `MAX_CATALOG_MODELS` candidates, and small enough to read whole.
pub const MAX_JSON_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why an input file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds more than [`MAX_JSON_FILE_BYTES`] (found by reading one byte
    /// past the limit, whatever size the file reports).
    #[error("{path} holds more than the {limit_bytes} bytes allowed")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit it exceeds, in bytes.
        limit_bytes: u64,
    },
    /// The file is not JSON of the expected shape.
    #[error("{path} is not a valid {what} file: {message}")]
    InvalidJson {
        /// The file.
        path: PathBuf,
        /// "policy" or "request".
        what: &'static str,
        /// serde_json's message, with line and column.
        message: String,
    },
    /// The policy breaks a rule of the decision semantics.
    #[error("{path}: invalid policy: {source}")]
    InvalidPolicy {
        /// The file.
        path: PathBuf,
        /// The rule broken.
        source: PolicyError,
    },
    /// The request breaks a rule of the decision semantics.
    #[error("{path}: invalid request: {source}")]
    InvalidRequest {
        /// The file.
        path: PathBuf,
        /// The rule broken.
        source: InputError,
    },
}

impl FileError {
    /// The reason code printed with the error (see docs/CLI.md).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => Reason::Unreadable.code(),
            Self::TooLarge { .. } => Code::TooLarge.code(),
            Self::InvalidJson { .. } => Code::InvalidJson.code(),
            Self::InvalidPolicy { .. } => Code::InvalidPolicy.code(),
            Self::InvalidRequest { .. } => Code::InvalidRequest.code(),
        }
    }

    /// 2 when the file could not be read, 1 when it was read and is invalid.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Unreadable { .. } => crate::report::EXIT_ERROR,
            _ => crate::report::EXIT_DIVERGED,
        }
    }
}

/// The policy file: the kernel's wire form of a snapshot.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    params: PolicyParams,
    models: Vec<KernelModel>,
}

/// Reads at most [`MAX_JSON_FILE_BYTES`] of `path`, refusing a file with more.
///
/// The bound is on what is read, not on the size the file system reports: a device
/// or a pipe reports 0 and can be endless (`/dev/zero`), and a file can grow while
/// it is read. One byte past the limit is enough to know it is too large.
fn read_bounded(path: &Path) -> Result<Vec<u8>, FileError> {
    read_at_most(path, MAX_JSON_FILE_BYTES).map_err(|error| match error {
        BoundedReadError::Io(source) => FileError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
        BoundedReadError::TooLarge => FileError::TooLarge {
            path: path.to_path_buf(),
            limit_bytes: MAX_JSON_FILE_BYTES,
        },
    })
}

/// Why [`read_at_most`] gave no bytes.
#[derive(Debug)]
pub(crate) enum BoundedReadError {
    /// The file cannot be opened or read.
    Io(std::io::Error),
    /// The file holds more than the limit.
    TooLarge,
}

/// The whole content of `path` if it is at most `limit_bytes` long, reading no more
/// than `limit_bytes + 1` bytes whatever the file is.
pub(crate) fn read_at_most(path: &Path, limit_bytes: u64) -> Result<Vec<u8>, BoundedReadError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(BoundedReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(limit_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(BoundedReadError::Io)?;
    let read_bytes = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read_bytes > limit_bytes {
        return Err(BoundedReadError::TooLarge);
    }
    Ok(bytes)
}

/// Reads and validates a policy file.
///
/// # Errors
/// A [`FileError`] naming the file and what is wrong with it.
pub fn read_policy(path: &Path) -> Result<PolicySnapshot, FileError> {
    let bytes = read_bounded(path)?;
    let file: PolicyFile =
        serde_json::from_slice(&bytes).map_err(|error| FileError::InvalidJson {
            path: path.to_path_buf(),
            what: "policy",
            message: error.to_string(),
        })?;
    PolicySnapshot::from_params(file.params, file.models).map_err(|source| {
        FileError::InvalidPolicy {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Reads a request file (without validating it against the basis-point limits;
/// [`PolicySnapshot::prescribe_checked`] does that).
///
/// # Errors
/// A [`FileError`] naming the file and what is wrong with it.
pub fn read_request(path: &Path) -> Result<KernelInput, FileError> {
    let bytes = read_bounded(path)?;
    // The kernel's serde form takes `KernelInput::default()` for missing fields and
    // refuses unknown ones, so a request file is exactly what a service would send.
    serde_json::from_slice(&bytes).map_err(|error| FileError::InvalidJson {
        path: path.to_path_buf(),
        what: "request",
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_request_is_the_default_request() {
        let input: Result<KernelInput, _> = serde_json::from_str("{}");
        assert_eq!(input.ok(), Some(KernelInput::default()));
    }

    #[test]
    fn a_partial_request_keeps_the_defaults_of_the_rest() {
        let input: Result<KernelInput, _> = serde_json::from_str(r#"{"risk_bps": 10}"#);
        let expected = KernelInput {
            risk_bps: 10,
            ..KernelInput::default()
        };
        assert_eq!(input.ok(), Some(expected));
    }

    #[test]
    fn unknown_request_keys_are_refused() {
        assert!(serde_json::from_str::<KernelInput>(r#"{"risk_bsp": 10}"#).is_err());
    }

    #[test]
    fn unknown_keys_inside_a_model_are_refused() {
        let policy = r#"{"params": {"policy_epoch": 0, "catalog_epoch": 0,
            "hard_risk_limit_bps": 10000, "minimum_confidence_bps": 0,
            "risk_penalty_multiplier_bps": 0, "latency_penalty_microunits_per_ms": 0},
            "models": [{"model_id": 1, "provider_id": 0, "quality_bps": 1, "qualty_bps": 1,
            "risk_ceiling_bps": 0, "enabled": 1, "p95_latency_ms": 0, "capabilities": 0,
            "region_mask": 0, "input_cost_microunits_per_million_tokens": 0,
            "output_cost_microunits_per_million_tokens": 0}]}"#;
        let error = serde_json::from_str::<PolicyFile>(policy).err();
        assert!(
            error.is_some_and(|e| e.to_string().contains("qualty_bps")),
            "a misspelled model field must be named in the refusal"
        );
    }

    #[test]
    fn a_read_stops_one_byte_past_the_limit() {
        // Removed on drop, also when an assertion fails.
        let dir = tempfile::Builder::new()
            .prefix("calybris-files-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().join("ten.json");
        std::fs::write(&path, [b' '; 10]).ok();
        assert_eq!(read_at_most(&path, 10).ok().map(|b| b.len()), Some(10));
        assert!(matches!(
            read_at_most(&path, 9),
            Err(BoundedReadError::TooLarge)
        ));
    }
}
