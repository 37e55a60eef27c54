//! What a decision can say about itself: per-gate rejection counts, and, behind `alloc`,
//! a verdict for every candidate.

/// How many candidates each gate turned away in one evaluation (saturating).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct RejectionHistogram {
    /// Candidates switched off in the catalog.
    pub disabled: u16,
    /// Candidates below the requested quality.
    pub quality: u16,
    /// Candidates whose risk ceiling is below the request's risk.
    pub risk_ceiling: u16,
    /// Candidates above the requested latency.
    pub latency: u16,
    /// Candidates missing a required capability.
    pub capability: u16,
    /// Candidates of a provider the request does not allow (or cannot name).
    pub provider: u16,
    /// Candidates serving none of the required regions.
    pub region: u16,
    /// Candidates costing more than the request's budget.
    pub budget: u16,
    /// Candidates within budget whose utility was zero or below.
    pub utility: u16,
}

impl RejectionHistogram {
    /// The sum of all counters (saturating).
    #[must_use]
    pub fn total(&self) -> u16 {
        [
            self.disabled,
            self.quality,
            self.risk_ceiling,
            self.latency,
            self.capability,
            self.provider,
            self.region,
            self.budget,
            self.utility,
        ]
        .iter()
        .fold(0u16, |sum, n| sum.saturating_add(*n))
    }
}

/// The counters of one evaluation, returned beside its decision by
/// `prescribe_with_trace`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct DecisionTrace {
    /// Per-gate rejection counts.
    pub rejections: RejectionHistogram,
    /// Same as the decision's `evaluated_models`.
    pub evaluated_models: u16,
    /// Same as the decision's `eligible_models`.
    pub eligible_models: u16,
}

/// The arithmetic-free gate a candidate failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum GateKind {
    /// `enabled == 0`.
    Disabled,
    /// `quality_bps < minimum_quality_bps`.
    Quality,
    /// `p95_latency_ms > max_p95_latency_ms` (with a limit set).
    Latency,
    /// Missing at least one required capability bit.
    Capability,
    /// `provider_id` above 63: no bit of a provider mask can name it.
    ProviderUnrepresentable,
    /// The provider's bit is not in `allowed_provider_mask`.
    ProviderNotAllowed,
    /// No bit in common with a non-zero `required_region_mask`.
    Region,
    /// `risk_bps > risk_ceiling_bps`.
    RiskCeiling,
}

/// The terms of a candidate's utility:
/// `utility = quality_adjusted - risk_penalty - cost - latency_penalty`, clamped into `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct UtilityTerms {
    /// `floor(value * confidence_bps * quality_bps / 1e8)`, in microunits.
    pub quality_adjusted: i128,
    /// `floor(value * risk_bps * risk_penalty_multiplier_bps / 1e8)`, in microunits.
    pub risk_penalty: i128,
    /// The candidate's cost for the request, in microunits.
    pub cost_microunits: u64,
    /// `p95_latency_ms * latency_penalty_microunits_per_ms`, in microunits.
    pub latency_penalty: i128,
    /// The clamped total the ranking uses, in microunits.
    pub utility: i64,
}

/// Where one candidate ended, with the numbers that decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub enum CandidateVerdict {
    /// Failed an arithmetic-free gate (the first one, in gate order).
    Rejected {
        /// The gate.
        gate: GateKind,
        /// What the candidate carries: its quality, latency, capability, provider or
        /// region mask, risk ceiling, or `enabled` flag.
        measured: u64,
        /// What the request (or the mask format) demands.
        limit: u64,
    },
    /// Priced above the request's budget.
    OverBudget {
        /// The candidate's cost, in microunits.
        cost_microunits: u64,
        /// The request's budget, in microunits.
        limit_microunits: u64,
    },
    /// Within budget, but its utility was zero or below.
    NonPositiveUtility(UtilityTerms),
    /// Passed every gate and was ranked.
    Eligible(UtilityTerms),
}

/// One row of an [`Explanation`].
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct CandidateExplanation {
    /// The candidate.
    pub model_id: u32,
    /// Its index in the sorted catalog.
    pub index: u16,
    /// What happened to it.
    pub verdict: CandidateVerdict,
}

/// A decision with its trace and a verdict for every candidate, from the same single
/// evaluation that made the decision.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Explanation {
    /// The decision, identical to what `prescribe` returns.
    pub decision: crate::KernelDecision,
    /// The rejection counters.
    pub trace: DecisionTrace,
    /// One row per candidate in catalog order; empty for a request-level refusal.
    pub candidates: alloc::vec::Vec<CandidateExplanation>,
}
