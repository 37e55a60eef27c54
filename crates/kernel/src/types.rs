//! The plain data types of a decision: candidates, requests, decisions and their codes.

/// Basis points in one whole: 10_000 bps = 100 %.
pub const BASIS_POINTS: u16 = 10_000;
/// The largest value any `_bps` field may hold, except the risk penalty multiplier.
pub const MAX_BPS: u16 = BASIS_POINTS;
/// The largest `risk_penalty_multiplier_bps` a policy may hold (5x).
pub const MAX_RISK_PENALTY_MULTIPLIER_BPS: u16 = 50_000;
/// The largest `provider_id` a candidate may carry: one bit of a `u64` provider mask.
pub const MAX_PROVIDER_ID: u16 = 63;
/// The largest catalog a policy may hold, so that the `u16` counters of a decision are exact.
pub const MAX_CATALOG_MODELS: usize = u16::MAX as usize;
/// The provider mask that allows every provider.
pub const ALL_PROVIDERS: u64 = u64::MAX;
/// The region mask of a request that places no region constraint.
pub const ANY_REGION: u64 = 0;
/// The model id a rejection "selects"; no candidate may use it.
pub const RESERVED_MODEL_ID: u32 = 0;
/// The `selected_model_index` of a rejection.
pub const NO_MODEL_INDEX: u16 = u16::MAX;
/// Microunits in one million: the divisor that turns a per-million-token price into a cost.
pub const TOKENS_PER_PRICE_UNIT: u64 = 1_000_000;
/// `BASIS_POINTS` squared: the divisor of a product of two basis-point factors.
pub const BPS_SQUARED: u64 = 100_000_000;

/// One candidate of a catalog: an LLM model, a trading venue, a supplier.
///
/// Every field is plain data; a [`crate::PolicySnapshot`] validates a catalog of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct KernelModel {
    /// Unique, non-zero identifier of the candidate.
    pub model_id: u32,
    /// Provider index, `0..=63` (one bit of a provider mask).
    pub provider_id: u16,
    /// Quality score in basis points, `0..=10_000`.
    pub quality_bps: u16,
    /// The highest request risk the candidate accepts, in basis points, `0..=10_000`.
    pub risk_ceiling_bps: u16,
    /// `1` when the candidate may be selected, `0` when it is switched off.
    pub enabled: u8,
    /// 95th percentile latency in milliseconds.
    pub p95_latency_ms: u32,
    /// Capability bits the candidate offers.
    pub capabilities: u64,
    /// Region bits the candidate serves.
    pub region_mask: u64,
    /// Price of input, in microunits per million tokens.
    pub input_cost_microunits_per_million_tokens: u64,
    /// Price of output, in microunits per million tokens.
    pub output_cost_microunits_per_million_tokens: u64,
}

/// One request to decide.
///
/// `Default` gives the most permissive request: no limits, every provider allowed,
/// no region constraint, zero tokens and zero value. With the `serde` feature a
/// field missing from a self-describing form (JSON, say) takes its `Default` value,
/// so a request file names only what it sets; an unknown field is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct KernelInput {
    /// Caller-chosen sequence number, echoed in the decision.
    pub request_sequence: u64,
    /// The candidate the caller asked for.
    pub requested_model_id: u32,
    /// Input tokens the request will consume.
    pub input_tokens: u32,
    /// Output tokens the request will produce.
    pub output_tokens: u32,
    /// What a perfect answer is worth to the caller, in microunits (may be negative).
    pub business_value_microunits: i64,
    /// The most the request may cost, in microunits.
    pub budget_limit_microunits: u64,
    /// Risk of the request, in basis points.
    pub risk_bps: u16,
    /// Confidence in the request, in basis points.
    pub confidence_bps: u16,
    /// Lowest candidate quality accepted, in basis points.
    pub minimum_quality_bps: u16,
    /// Highest candidate p95 latency accepted, in milliseconds; `0` means no limit.
    pub max_p95_latency_ms: u32,
    /// Capability bits a candidate must all offer.
    pub required_capabilities: u64,
    /// Providers allowed, one bit each; [`ALL_PROVIDERS`] allows any.
    pub allowed_provider_mask: u64,
    /// Regions of which a candidate must serve at least one; [`ANY_REGION`] means no constraint.
    pub required_region_mask: u64,
}

impl Default for KernelInput {
    fn default() -> Self {
        Self {
            request_sequence: 0,
            requested_model_id: 0,
            input_tokens: 0,
            output_tokens: 0,
            business_value_microunits: 0,
            budget_limit_microunits: u64::MAX,
            risk_bps: 0,
            confidence_bps: BASIS_POINTS,
            minimum_quality_bps: 0,
            max_p95_latency_ms: 0,
            required_capabilities: 0,
            allowed_provider_mask: ALL_PROVIDERS,
            required_region_mask: ANY_REGION,
        }
    }
}

/// What the kernel decided to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum KernelAction {
    /// Execute the requested candidate: it maximised utility.
    ExecuteRequested = 1,
    /// Execute another candidate: it had a better utility.
    Substitute = 2,
    /// Execute nothing.
    Reject = 3,
}

impl KernelAction {
    /// The numeric code of the action, as hashed in a decision digest.
    #[must_use]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The action with the given code, if there is one.
    #[must_use]
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::ExecuteRequested),
            2 => Some(Self::Substitute),
            3 => Some(Self::Reject),
            _ => None,
        }
    }
}

/// Why the kernel decided what it did. Codes below 100 selected a candidate; 100 and
/// up selected nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u16)]
pub enum KernelReason {
    /// The requested candidate had the best utility.
    RequestedModelMaximizesUtility = 1,
    /// Another candidate had a better utility.
    AlternativeMaximizesUtility = 2,
    /// The request's risk is at or above the policy's hard limit.
    RiskHardLimit = 100,
    /// The request's confidence is below the policy's floor.
    ConfidenceHardLimit = 101,
    /// No enabled candidate (the dominant gate was "disabled").
    NoEnabledModel = 102,
    /// Most candidates were below the requested quality.
    QualityConstraint = 103,
    /// Most candidates were above the requested latency.
    LatencyConstraint = 104,
    /// Most candidates lacked a required capability.
    CapabilityConstraint = 105,
    /// Most candidates belong to providers the request does not allow.
    ProviderConstraint = 106,
    /// Most candidates serve none of the required regions.
    RegionConstraint = 107,
    /// Most candidates cost more than the request's budget.
    BudgetConstraint = 108,
    /// Most candidates had a utility of zero or below.
    NonPositiveUtility = 109,
    /// Most candidates accept less risk than the request carries.
    RiskCeilingConstraint = 110,
}

impl KernelReason {
    /// The numeric code of the reason, as hashed in a decision digest.
    #[must_use]
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The reason with the given code, if there is one.
    #[must_use]
    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => Self::RequestedModelMaximizesUtility,
            2 => Self::AlternativeMaximizesUtility,
            100 => Self::RiskHardLimit,
            101 => Self::ConfidenceHardLimit,
            102 => Self::NoEnabledModel,
            103 => Self::QualityConstraint,
            104 => Self::LatencyConstraint,
            105 => Self::CapabilityConstraint,
            106 => Self::ProviderConstraint,
            107 => Self::RegionConstraint,
            108 => Self::BudgetConstraint,
            109 => Self::NonPositiveUtility,
            110 => Self::RiskCeilingConstraint,
            _ => return None,
        })
    }

    /// Whether a decision with this reason selected a candidate.
    #[must_use]
    pub const fn is_selection(self) -> bool {
        self.code() < 100
    }
}

/// The outcome of evaluating one request against one policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct KernelDecision {
    /// Echoed from the request.
    pub request_sequence: u64,
    /// What to do.
    pub action: KernelAction,
    /// Why.
    pub reason: KernelReason,
    /// The selected candidate, or [`RESERVED_MODEL_ID`] on a rejection.
    pub selected_model_id: u32,
    /// Index of the selected candidate in the sorted catalog, or [`NO_MODEL_INDEX`].
    pub selected_model_index: u16,
    /// Cost of the selected candidate for this request, in microunits.
    pub estimated_cost_microunits: u64,
    /// Utility of the selected candidate, in microunits.
    pub expected_utility_microunits: i64,
    /// The second-best eligible candidate, or `0` when there is none.
    pub counterfactual_model_id: u32,
    /// Utility of the second-best eligible candidate, or `0`.
    pub counterfactual_utility_microunits: i64,
    /// Candidates in the catalog (saturating), or `0` for a request-level refusal.
    pub evaluated_models: u16,
    /// Candidates that passed every gate with positive utility (saturating).
    pub eligible_models: u16,
    /// The policy epoch of the snapshot that decided.
    pub policy_epoch: u64,
    /// The catalog epoch of the snapshot that decided.
    pub catalog_epoch: u64,
}

impl KernelDecision {
    /// Whether a candidate was selected (action 1 or 2).
    #[must_use]
    pub const fn is_selection(&self) -> bool {
        !matches!(self.action, KernelAction::Reject)
    }
}
