//! Policy files people can write, for the Calybris decision kernel: models and
//! providers by name, capabilities and regions by name, `enabled` as a boolean, prices
//! as exact decimals per million tokens, documented defaults. A file is TOML or JSON
//! ([`parse`]); [`compile`] turns it into the kernel's numeric
//! [`PolicySnapshot`](calybris_kernel::PolicySnapshot) (sealed with its digest) and a
//! [`NameMap`] of its ids and bits, which the decision gate records after the policy
//! (`GateConfig::policy_names`) so every later report can speak in names.
//!
//! What it deliberately does not do: guess. Unknown keys are refused at every level, a
//! price that is not a whole number of microunits is refused, a capability or region a
//! model names must be declared, and every failure is a typed [`PolicyFileError`]
//! naming the model and field; no input panics.
//!
//! # Ids and bits
//! Assigned from the file alone, so the same file always compiles to the same digest:
//! - model ids: each model's own `id` when every model sets one, else the model's
//!   position in the file from 1 (mixing the two is refused);
//! - provider ids: by first appearance in the models' file order, from 0; at most 64
//!   (the kernel's provider mask);
//! - capability and region bits: a name's position in the policy's `capabilities` or
//!   `regions` list, from 0; at most 64 each.
//!
//! # Prices
//! `input_usd_per_mtok` and `output_usd_per_mtok` are in currency units per million
//! tokens, written as a string (`"0.15"`, exact), an integer, or a number (read as the
//! shortest decimal denoting the same binary float). They become microunits per million
//! tokens by integer decimal arithmetic: at most six decimal places (further zeros are
//! fine), no sign, no exponent, at most `u64::MAX` microunits.
//!
//! # Example
//! ```
//! let text = r#"
//! capabilities = ["function_calling", "vision"]
//!
//! [[models]]
//! name = "gpt-4o-mini-2024-07-18"
//! provider = "openai"
//! quality_bps = 5073
//! capabilities = ["function_calling", "vision"]
//! input_usd_per_mtok = "0.15"
//! output_usd_per_mtok = "0.6"
//! "#;
//! let file = calybris_policy::parse(text.as_bytes(), calybris_policy::Format::Toml)?;
//! let compiled = calybris_policy::compile(&file)?;
//! let model = compiled.policy.models()[0];
//! assert_eq!(model.model_id, 1);
//! assert_eq!(model.input_cost_microunits_per_million_tokens, 150_000);
//! assert_eq!(model.capabilities, 0b11);
//! assert_eq!(compiled.names.model_name(1), Some("gpt-4o-mini-2024-07-18"));
//! assert_eq!(compiled.digest_hex().len(), 64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//! None.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod compile;
mod decimal;
mod error;
mod file;
mod request;

pub use calybris_gate::NameMap;
pub use compile::{CompiledPolicy, compile};
pub use decimal::{
    MAX_PRICE_TEXT_BYTES, PRICE_DECIMALS, Price, PriceError, decimal_to_microunits,
    microunits_to_decimal,
};
pub use error::PolicyFileError;
pub use file::{FORMAT_VERSION, ModelEntry, PolicyFile};
pub use request::{RequestError, request_from_json};

/// The largest policy file read, in bytes.
pub const MAX_POLICY_FILE_BYTES: usize = 16 << 20;

/// The two forms of a policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format a file name's extension names (`.toml` or `.json`, any case).
    #[must_use]
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "toml" => Some(Self::Toml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Parses a policy file of `format` (at most [`MAX_POLICY_FILE_BYTES`]).
///
/// # Errors
/// [`PolicyFileError::TooLarge`], [`PolicyFileError::NotUtf8`],
/// [`PolicyFileError::Toml`] or [`PolicyFileError::Json`] (with the line, column and
/// key at fault).
pub fn parse(bytes: &[u8], format: Format) -> Result<PolicyFile, PolicyFileError> {
    if bytes.len() > MAX_POLICY_FILE_BYTES {
        return Err(PolicyFileError::TooLarge {
            len_bytes: bytes.len(),
            max_bytes: MAX_POLICY_FILE_BYTES,
        });
    }
    match format {
        Format::Toml => {
            let text = std::str::from_utf8(bytes).map_err(|_| PolicyFileError::NotUtf8)?;
            toml::from_str(text).map_err(|error| PolicyFileError::Toml {
                message: toml_message(&error),
            })
        }
        Format::Json => serde_json::from_slice(bytes).map_err(|error| PolicyFileError::Json {
            message: error.to_string(),
        }),
    }
}

/// The toml error on one line: where (line and column), then what (the parser also
/// draws the line, which is left out).
fn toml_message(error: &toml::de::Error) -> String {
    let text = error.to_string();
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or_default().to_owned();
    match lines.next_back() {
        Some(last) if !last.starts_with('|') && !last.starts_with('^') => {
            format!("{first}: {last}")
        }
        _ => first,
    }
}

/// [`parse`], then [`compile`].
///
/// # Errors
/// As [`parse`] and [`compile`].
pub fn compile_bytes(bytes: &[u8], format: Format) -> Result<CompiledPolicy, PolicyFileError> {
    compile(&parse(bytes, format)?)
}

/// The README's example, compiled and run as a doctest so the crates.io page
/// cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
