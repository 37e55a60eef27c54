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
    /// The file is larger than [`MAX_JSON_FILE_BYTES`].
    #[error("{path} holds {len_bytes} bytes, more than the {MAX_JSON_FILE_BYTES} allowed")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len_bytes: u64,
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
            Self::Unreadable { .. } => "UNREADABLE",
            Self::TooLarge { .. } => "TOO_LARGE",
            Self::InvalidJson { .. } => "INVALID_JSON",
            Self::InvalidPolicy { .. } => "INVALID_POLICY",
            Self::InvalidRequest { .. } => "INVALID_REQUEST",
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

/// The request file: every field optional, defaults from `KernelInput::default()`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    request_sequence: Option<u64>,
    requested_model_id: Option<u32>,
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
    business_value_microunits: Option<i64>,
    budget_limit_microunits: Option<u64>,
    risk_bps: Option<u16>,
    confidence_bps: Option<u16>,
    minimum_quality_bps: Option<u16>,
    max_p95_latency_ms: Option<u32>,
    required_capabilities: Option<u64>,
    allowed_provider_mask: Option<u64>,
    required_region_mask: Option<u64>,
}

impl RequestFile {
    fn into_input(self) -> KernelInput {
        let d = KernelInput::default();
        KernelInput {
            request_sequence: self.request_sequence.unwrap_or(d.request_sequence),
            requested_model_id: self.requested_model_id.unwrap_or(d.requested_model_id),
            input_tokens: self.input_tokens.unwrap_or(d.input_tokens),
            output_tokens: self.output_tokens.unwrap_or(d.output_tokens),
            business_value_microunits: self
                .business_value_microunits
                .unwrap_or(d.business_value_microunits),
            budget_limit_microunits: self
                .budget_limit_microunits
                .unwrap_or(d.budget_limit_microunits),
            risk_bps: self.risk_bps.unwrap_or(d.risk_bps),
            confidence_bps: self.confidence_bps.unwrap_or(d.confidence_bps),
            minimum_quality_bps: self.minimum_quality_bps.unwrap_or(d.minimum_quality_bps),
            max_p95_latency_ms: self.max_p95_latency_ms.unwrap_or(d.max_p95_latency_ms),
            required_capabilities: self
                .required_capabilities
                .unwrap_or(d.required_capabilities),
            allowed_provider_mask: self
                .allowed_provider_mask
                .unwrap_or(d.allowed_provider_mask),
            required_region_mask: self.required_region_mask.unwrap_or(d.required_region_mask),
        }
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, FileError> {
    let unreadable = |source| FileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let len_bytes = std::fs::metadata(path).map_err(unreadable)?.len();
    if len_bytes > MAX_JSON_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len_bytes,
        });
    }
    std::fs::read(path).map_err(unreadable)
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
    let file: RequestFile =
        serde_json::from_slice(&bytes).map_err(|error| FileError::InvalidJson {
            path: path.to_path_buf(),
            what: "request",
            message: error.to_string(),
        })?;
    Ok(file.into_input())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_request_is_the_default_request() {
        let file: RequestFile = serde_json::from_str("{}").unwrap_or_default();
        assert_eq!(file.into_input(), KernelInput::default());
    }

    #[test]
    fn unknown_request_keys_are_refused() {
        assert!(serde_json::from_str::<RequestFile>(r#"{"risk_bsp": 10}"#).is_err());
    }
}
