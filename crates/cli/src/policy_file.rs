//! Human policy files for `calybris policy check` and `calybris explain`: TOML or JSON
//! in the `calybris-policy` format (models, providers, capabilities and regions by
//! name; schema `docs/schemas/policy-file.schema.json`), besides the kernel's numeric
//! JSON form that [`crate::files`] reads.
//!
//! Which form a file is: `.toml` is always a human policy; a JSON file whose top level
//! has a `params` key is the kernel's numeric form, any other JSON file a human policy.
//! A request read with a human policy may name its model (`requested_model`), its
//! providers (`allowed_providers`), capabilities (`required_capabilities` as an array)
//! and regions (`required_regions`) by name.

use std::path::{Path, PathBuf};

use calybris::digest::{SealedPolicy, digest_to_hex};
use calybris::kernel::InputError;
use calybris_policy::{Format, NameMap, PolicyFileError, RequestError};

use crate::files::{self, BoundedReadError, FileError};
use crate::report::Code;
use crate::report::{EXIT_DIVERGED, EXIT_ERROR, EXIT_OK};
use crate::{render, stderr_line, stdout_text};

/// A policy read from any of the accepted forms.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The sealed snapshot.
    pub policy: SealedPolicy,
    /// Its names, for a human policy file.
    pub names: Option<NameMap>,
}

/// Why a policy or request file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileFailure {
    /// A numeric policy or request file error, as [`crate::files`] reports it.
    #[error(transparent)]
    File(#[from] FileError),
    /// The human policy file does not compile.
    #[error("{path}: {source}")]
    Human {
        /// The file.
        path: PathBuf,
        /// Why.
        source: PolicyFileError,
    },
    /// The request (with names) cannot be read.
    #[error("{path}: {source}")]
    Request {
        /// The file.
        path: PathBuf,
        /// Why.
        source: RequestError,
    },
}

impl PolicyFileFailure {
    /// The reason code printed with the error (see docs/CLI.md).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::File(error) => error.code(),
            Self::Human {
                source: PolicyFileError::TooLarge { .. },
                ..
            } => Code::TooLarge.code(),
            Self::Human {
                source: PolicyFileError::Toml { .. } | PolicyFileError::NotUtf8,
                ..
            } => Code::InvalidToml.code(),
            Self::Human {
                source: PolicyFileError::Json { .. },
                ..
            } => Code::InvalidJson.code(),
            Self::Human { .. } => Code::InvalidPolicy.code(),
            Self::Request {
                source: RequestError::Json { .. },
                ..
            } => Code::InvalidJson.code(),
            Self::Request { .. } => Code::InvalidRequest.code(),
        }
    }

    /// 2 when a file could not be read, 1 when it was read and is invalid.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::File(error) => error.exit_code(),
            _ => EXIT_DIVERGED,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    files::read_at_most(path, files::MAX_JSON_FILE_BYTES).map_err(|error| match error {
        BoundedReadError::Io(source) => FileError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
        BoundedReadError::TooLarge => FileError::TooLarge {
            path: path.to_path_buf(),
            limit_bytes: files::MAX_JSON_FILE_BYTES,
        },
    })
}

/// Whether JSON `bytes` are the kernel's numeric form (a top-level `params` key).
fn is_numeric_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
        .is_ok_and(|object| object.contains_key("params"))
}

/// Reads a policy in any accepted form (see the module documentation).
///
/// # Errors
/// A [`PolicyFileFailure`] naming the file and what is wrong with it.
pub fn read_policy(path: &Path) -> Result<LoadedPolicy, PolicyFileFailure> {
    let format = Format::from_path(path).unwrap_or(Format::Json);
    if format == Format::Json {
        let bytes = read(path)?;
        if is_numeric_json(&bytes) {
            let policy = files::read_policy(path)?;
            return Ok(LoadedPolicy {
                policy: SealedPolicy::new(policy),
                names: None,
            });
        }
    }
    let bytes = read(path)?;
    let compiled = calybris_policy::compile_bytes(&bytes, format).map_err(|source| {
        PolicyFileFailure::Human {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(LoadedPolicy {
        policy: compiled.policy,
        names: Some(compiled.names),
    })
}

fn report(error: &PolicyFileFailure) -> u8 {
    let outcome = if error.exit_code() == EXIT_ERROR {
        "ERROR"
    } else {
        "INVALID"
    };
    stderr_line(&format!("{outcome} {}: {error}", error.code()));
    error.exit_code()
}

/// `calybris policy check FILE`: the VALID line with the digest, then, for a human
/// policy, the models by name.
pub fn policy_check(path: &Path, json: bool) -> u8 {
    let loaded = match read_policy(path) {
        Ok(loaded) => loaded,
        Err(error) => return report(&error),
    };
    let policy = &loaded.policy;
    if json {
        let value = serde_json::json!({
            "outcome": "VALID",
            "path": path.display().to_string(),
            "policy_epoch": policy.policy_epoch(),
            "catalog_epoch": policy.catalog_epoch(),
            "models": policy.models().len(),
            "digest": digest_to_hex(policy.digest()),
            "named": loaded.names.is_some(),
        });
        stdout_text(&format!("{value}\n"));
        return EXIT_OK;
    }
    let mut text = format!(
        "VALID {}: policy epoch {}, catalog epoch {}, {} models, digest {}\n",
        path.display(),
        policy.policy_epoch(),
        policy.catalog_epoch(),
        policy.models().len(),
        digest_to_hex(policy.digest())
    );
    if let Some(names) = loaded.names {
        let compiled = calybris_policy::CompiledPolicy {
            policy: loaded.policy,
            names,
        };
        text.push_str(&compiled.table());
    }
    stdout_text(&crate::human::paint_outcome(&text));
    EXIT_OK
}

/// `calybris explain --policy P --request R`, with any accepted policy form.
pub fn explain(policy_path: &Path, request_path: &Path, json: bool) -> u8 {
    let loaded = match read_policy(policy_path) {
        Ok(loaded) => loaded,
        Err(error) => return report(&error),
    };
    let bytes = match read(request_path) {
        Ok(bytes) => bytes,
        Err(error) => return report(&error.into()),
    };
    let input = match calybris_policy::request_from_json(&bytes, loaded.names.as_ref()) {
        Ok(input) => input,
        Err(source) => {
            return report(&PolicyFileFailure::Request {
                path: request_path.to_path_buf(),
                source,
            });
        }
    };
    let policy = loaded.policy;
    if let Err(source) = policy.prescribe_checked(input) {
        let source: InputError = source;
        return report(
            &FileError::InvalidRequest {
                path: request_path.to_path_buf(),
                source,
            }
            .into(),
        );
    }
    let explanation = policy.explain(input);
    let named = loaded
        .names
        .as_ref()
        .map(|names| NamedDecision::new(names, &input, &explanation));
    if json {
        let body = render::ExplanationJson::new(policy.digest(), &input, &explanation);
        let mut value = match serde_json::to_value(&body) {
            Ok(value) => value,
            Err(error) => {
                stderr_line(&format!("ERROR JSON: cannot encode: {error}"));
                return EXIT_ERROR;
            }
        };
        if let (Some(named), Some(object)) = (&named, value.as_object_mut()) {
            object.insert(
                "names".into(),
                serde_json::to_value(named).unwrap_or_default(),
            );
        }
        let text = serde_json::to_string(&value).unwrap_or_default();
        stdout_text(&format!("{text}\n"));
    } else {
        let mut text = render::explanation_text(policy.digest(), &input, &explanation);
        if let Some(named) = &named {
            text.push_str(&named.text());
        }
        stdout_text(&text);
    }
    EXIT_OK
}

/// The names of the models a decision mentions (`None` for an id without a name,
/// such as the reserved id 0 of a rejection).
#[derive(Debug, serde::Serialize)]
pub struct NamedDecision {
    /// The requested model's name.
    pub requested_model: Option<String>,
    /// The selected model's name.
    pub selected_model: Option<String>,
    /// The second-best model's name.
    pub counterfactual_model: Option<String>,
}

impl NamedDecision {
    /// The names `names` gives the models of `explanation` (of `input`).
    pub(crate) fn new(
        names: &NameMap,
        input: &calybris::kernel::KernelInput,
        explanation: &calybris::kernel::Explanation,
    ) -> Self {
        let name = |id: u32| names.model_name(id).map(str::to_owned);
        Self {
            requested_model: name(input.requested_model_id),
            selected_model: name(explanation.decision.selected_model_id),
            counterfactual_model: name(explanation.decision.counterfactual_model_id),
        }
    }

    /// One line: `by name: requested A, selected B, counterfactual C`.
    pub(crate) fn text(&self) -> String {
        let show = |name: &Option<String>| name.clone().unwrap_or_else(|| "-".to_owned());
        format!(
            "by name: requested {}, selected {}, counterfactual {}\n",
            show(&self.requested_model),
            show(&self.selected_model),
            show(&self.counterfactual_model)
        )
    }
}

/// A policy-names record of a gate log, in words (for `calybris show`).
#[must_use]
pub fn names_record_text(head: &str, record: &calybris::gate::record::PolicyNames) -> String {
    let names = &record.names;
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    format!(
        "{head}: names of policy {}\n  models: {}\n  providers: {}\n  capabilities: {}\n  regions: {}\n",
        digest_to_hex(&record.policy_digest),
        list(
            names
                .models
                .iter()
                .map(|m| format!("{} {}", m.model_id, m.name))
                .collect()
        ),
        list(
            names
                .providers
                .iter()
                .map(|p| format!("{} {}", p.provider_id, p.name))
                .collect()
        ),
        list(
            names
                .capabilities
                .iter()
                .map(|b| format!("bit {} {}", b.bit, b.name))
                .collect()
        ),
        list(
            names
                .regions
                .iter()
                .map(|b| format!("bit {} {}", b.bit, b.name))
                .collect()
        ),
    )
}
