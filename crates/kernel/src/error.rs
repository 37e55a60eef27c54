//! Typed errors of policy and request validation.

use core::fmt;

/// Why a catalog or policy was refused. Nothing is ever clamped: a bad field is an error
/// that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The catalog holds no candidate.
    EmptyCatalog,
    /// The catalog holds more than [`crate::MAX_CATALOG_MODELS`] candidates.
    TooManyModels {
        /// How many candidates were given.
        count: usize,
    },
    /// A candidate uses model id 0, which is what a rejection selects.
    ReservedModelId {
        /// Position of the candidate in the catalog as given.
        position: usize,
    },
    /// Two candidates share a model id.
    DuplicateModelId {
        /// The repeated id.
        model_id: u32,
    },
    /// A candidate's `enabled` field is neither 0 nor 1.
    InvalidEnabled {
        /// The candidate.
        model_id: u32,
        /// The value found.
        value: u8,
    },
    /// No candidate is enabled.
    NoEnabledModel,
    /// A basis-point field of the policy is above its maximum.
    PolicyBpsOutOfRange {
        /// The field's name.
        field: &'static str,
        /// The value found.
        value: u16,
        /// The largest value allowed.
        max: u16,
    },
    /// A basis-point field of a candidate is above its maximum.
    ModelBpsOutOfRange {
        /// The candidate.
        model_id: u32,
        /// The field's name.
        field: &'static str,
        /// The value found.
        value: u16,
        /// The largest value allowed.
        max: u16,
    },
    /// A candidate's provider cannot be represented in a 64-bit provider mask.
    ProviderOutOfRange {
        /// The candidate.
        model_id: u32,
        /// The provider found.
        provider_id: u16,
    },
    /// A borrowed catalog is not in strictly ascending `model_id` order.
    NotSorted {
        /// Position of the first candidate out of order.
        position: usize,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::EmptyCatalog => f.write_str("the catalog holds no candidate"),
            Self::TooManyModels { count } => write!(
                f,
                "the catalog holds {count} candidates, more than the {} allowed",
                crate::MAX_CATALOG_MODELS
            ),
            Self::ReservedModelId { position } => write!(
                f,
                "the candidate at position {position} uses model_id 0, which is reserved for rejections"
            ),
            Self::DuplicateModelId { model_id } => {
                write!(
                    f,
                    "model_id {model_id} appears more than once in the catalog"
                )
            }
            Self::InvalidEnabled { model_id, value } => write!(
                f,
                "model_id {model_id}: enabled is {value}, but must be 0 or 1"
            ),
            Self::NoEnabledModel => f.write_str("no candidate in the catalog is enabled"),
            Self::PolicyBpsOutOfRange { field, value, max } => {
                write!(
                    f,
                    "policy field {field} is {value}, above its maximum {max}"
                )
            }
            Self::ModelBpsOutOfRange {
                model_id,
                field,
                value,
                max,
            } => write!(
                f,
                "model_id {model_id}: field {field} is {value}, above its maximum {max}"
            ),
            Self::ProviderOutOfRange {
                model_id,
                provider_id,
            } => write!(
                f,
                "model_id {model_id}: provider_id {provider_id} is above the maximum {}",
                crate::MAX_PROVIDER_ID
            ),
            Self::NotSorted { position } => write!(
                f,
                "the borrowed catalog is not sorted by strictly ascending model_id at position {position}"
            ),
        }
    }
}

impl core::error::Error for PolicyError {}

/// Why a request was refused at an API boundary (`prescribe_checked` and friends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// A basis-point field of the request is above 10_000.
    BpsOutOfRange {
        /// The field's name.
        field: &'static str,
        /// The value found.
        value: u16,
        /// The largest value allowed.
        max: u16,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BpsOutOfRange { field, value, max } => {
                write!(
                    f,
                    "request field {field} is {value}, above its maximum {max}"
                )
            }
        }
    }
}

impl core::error::Error for InputError {}

/// A decision field, as named by a replay mismatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum DecisionField {
    /// `request_sequence`.
    RequestSequence,
    /// `action`.
    Action,
    /// `reason`.
    Reason,
    /// `selected_model_id`.
    SelectedModelId,
    /// `selected_model_index`.
    SelectedModelIndex,
    /// `estimated_cost_microunits`.
    EstimatedCostMicrounits,
    /// `expected_utility_microunits`.
    ExpectedUtilityMicrounits,
    /// `counterfactual_model_id`.
    CounterfactualModelId,
    /// `counterfactual_utility_microunits`.
    CounterfactualUtilityMicrounits,
    /// `evaluated_models`.
    EvaluatedModels,
    /// `eligible_models`.
    EligibleModels,
    /// `policy_epoch`.
    PolicyEpoch,
    /// `catalog_epoch`.
    CatalogEpoch,
}

impl DecisionField {
    /// The field's name as written in the decision type.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::RequestSequence => "request_sequence",
            Self::Action => "action",
            Self::Reason => "reason",
            Self::SelectedModelId => "selected_model_id",
            Self::SelectedModelIndex => "selected_model_index",
            Self::EstimatedCostMicrounits => "estimated_cost_microunits",
            Self::ExpectedUtilityMicrounits => "expected_utility_microunits",
            Self::CounterfactualModelId => "counterfactual_model_id",
            Self::CounterfactualUtilityMicrounits => "counterfactual_utility_microunits",
            Self::EvaluatedModels => "evaluated_models",
            Self::EligibleModels => "eligible_models",
            Self::PolicyEpoch => "policy_epoch",
            Self::CatalogEpoch => "catalog_epoch",
        }
    }
}

impl fmt::Display for DecisionField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A recorded decision that does not replay: the first field that differs, with the
/// decision the policy actually gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionMismatch {
    /// The first differing field, in declaration order.
    pub field: DecisionField,
    /// What replaying the request gives.
    pub expected: crate::KernelDecision,
    /// What was recorded.
    pub recorded: crate::KernelDecision,
}

impl fmt::Display for DecisionMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the recorded decision does not replay: field {} differs",
            self.field
        )
    }
}

impl core::error::Error for DecisionMismatch {}
