//! Why a policy file does not compile: [`PolicyFileError`].

use calybris_gate::NameMapError;
use calybris_kernel::PolicyError;

use crate::decimal::PriceError;

/// Why a policy file was refused. Every variant that concerns one model names it, and
/// the field at fault where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFileError {
    /// The file is larger than [`crate::MAX_POLICY_FILE_BYTES`].
    #[error("the policy file holds {len_bytes} bytes, more than the {max_bytes} allowed")]
    TooLarge {
        /// Its length.
        len_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// The file is not UTF-8 text.
    #[error("the policy file is not UTF-8 text")]
    NotUtf8,
    /// The file is not TOML of the policy's shape (the message names the line,
    /// column and key).
    #[error("not a valid TOML policy file: {message}")]
    Toml {
        /// The parser's message.
        message: String,
    },
    /// The file is not JSON of the policy's shape.
    #[error("not a valid JSON policy file: {message}")]
    Json {
        /// The parser's message, with line and column.
        message: String,
    },
    /// `format_version` is not one this crate reads.
    #[error("format_version {found} is not supported (this version reads {supported})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version read.
        supported: u32,
    },
    /// `models` is empty.
    #[error("the policy has no models")]
    NoModels,
    /// More models than the kernel's catalog holds.
    #[error("{count} models, more than the {max} a catalog may hold")]
    TooManyModels {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A model name is empty or too long.
    #[error("model #{position}: a name of {len_bytes} bytes (1 to 256 allowed)")]
    BadModelName {
        /// The model's position in the file, from 0.
        position: usize,
        /// The name's length.
        len_bytes: usize,
    },
    /// Two models have the same name.
    #[error("model {model:?} is given twice")]
    DuplicateModel {
        /// The name.
        model: String,
    },
    /// A provider name is empty or too long.
    #[error("model {model:?}, field provider: a name of {len_bytes} bytes (1 to 256 allowed)")]
    BadProviderName {
        /// The model.
        model: String,
        /// The name's length.
        len_bytes: usize,
    },
    /// The 65th distinct provider: the kernel's provider mask has 64 bits.
    #[error("model {model:?}, field provider: {provider:?} is a 65th provider (64 at most)")]
    TooManyProviders {
        /// The model naming it.
        model: String,
        /// The provider.
        provider: String,
    },
    /// A `capabilities` or `regions` declaration is empty, too long or repeated, or
    /// there are more than 64.
    #[error("{list}: {problem}")]
    BadDeclaration {
        /// `capabilities` or `regions`.
        list: &'static str,
        /// What is wrong, naming the entry.
        problem: String,
    },
    /// Some models set `id` and others do not.
    #[error("model {model:?}, field id: either every model sets an id or none does")]
    MixedIds {
        /// The first model that breaks the rule.
        model: String,
    },
    /// A model sets `id = 0`, which the kernel reserves.
    #[error("model {model:?}, field id: 0 is reserved")]
    ReservedId {
        /// The model.
        model: String,
    },
    /// Two models set the same `id`.
    #[error("model {model:?}, field id: {id} is already the id of another model")]
    DuplicateId {
        /// The second model with it.
        model: String,
        /// The id.
        id: u32,
    },
    /// A model names a capability or region its policy does not declare.
    #[error("model {model:?}, field {field}: {name:?} is not declared in the policy's {field}")]
    Undeclared {
        /// The model.
        model: String,
        /// `capabilities` or `regions`.
        field: &'static str,
        /// The name.
        name: String,
    },
    /// A model's basis-point field is above 10,000.
    #[error("model {model:?}, field {field}: {value} is above {max}")]
    BpsOutOfRange {
        /// The model.
        model: String,
        /// The field.
        field: &'static str,
        /// Its value.
        value: u16,
        /// The limit.
        max: u16,
    },
    /// A model's price does not convert exactly to microunits.
    #[error("model {model:?}, field {field}: {text:?} is {error}")]
    Price {
        /// The model.
        model: String,
        /// `input_usd_per_mtok` or `output_usd_per_mtok`.
        field: &'static str,
        /// The price text.
        text: String,
        /// Why it does not convert.
        error: PriceError,
    },
    /// Every model is disabled.
    #[error("no model is enabled")]
    NoEnabledModel,
    /// The kernel refuses the policy's parameters.
    #[error("invalid policy: {0}")]
    Kernel(PolicyError),
    /// The name map does not validate (cannot follow from a file that compiled).
    #[error("invalid names: {0}")]
    Names(NameMapError),
}
