//! The policy, input and decision layouts.

use crate::canon::{Canon, DECISION_DIGEST_TAG, Digest, INPUT_DIGEST_TAG, POLICY_DIGEST_TAG, Sink};
use calybris_kernel::{KernelDecision, KernelInput, KernelModel, PolicyParams};

/// Writes the policy layout (after its tag): the scalars, then every candidate in
/// ascending `model_id`. No count and nothing derived.
pub fn write_policy<S: Sink>(c: &mut Canon<S>, p: &PolicyParams, models: &[KernelModel]) {
    c.u64(p.policy_epoch)
        .u64(p.catalog_epoch)
        .u16(p.hard_risk_limit_bps)
        .u16(p.minimum_confidence_bps)
        .u16(p.risk_penalty_multiplier_bps)
        .u64(p.latency_penalty_microunits_per_ms);
    for m in models {
        c.u32(m.model_id)
            .u16(m.provider_id)
            .u16(m.quality_bps)
            .u16(m.risk_ceiling_bps)
            .u8(m.enabled)
            .u32(m.p95_latency_ms)
            .u64(m.capabilities)
            .u64(m.region_mask)
            .u64(m.input_cost_microunits_per_million_tokens)
            .u64(m.output_cost_microunits_per_million_tokens);
    }
}

/// Writes the input layout (after its tag).
pub fn write_input<S: Sink>(c: &mut Canon<S>, i: &KernelInput) {
    c.u64(i.request_sequence)
        .u32(i.requested_model_id)
        .u32(i.input_tokens)
        .u32(i.output_tokens)
        .i64(i.business_value_microunits)
        .u64(i.budget_limit_microunits)
        .u16(i.risk_bps)
        .u16(i.confidence_bps)
        .u16(i.minimum_quality_bps)
        .u32(i.max_p95_latency_ms)
        .u64(i.required_capabilities)
        .u64(i.allowed_provider_mask)
        .u64(i.required_region_mask);
}

/// Writes the decision layout (after its tag).
pub fn write_decision<S: Sink>(c: &mut Canon<S>, d: &KernelDecision) {
    c.u64(d.request_sequence)
        .u8(d.action.code())
        .u16(d.reason.code())
        .u32(d.selected_model_id)
        .u16(d.selected_model_index)
        .u64(d.estimated_cost_microunits)
        .i64(d.expected_utility_microunits)
        .u32(d.counterfactual_model_id)
        .i64(d.counterfactual_utility_microunits)
        .u16(d.evaluated_models)
        .u16(d.eligible_models)
        .u64(d.policy_epoch)
        .u64(d.catalog_epoch);
}

/// The digest of a policy given as scalars and a catalog already sorted by ascending
/// `model_id` (as every validated policy is).
#[must_use]
pub fn policy_digest_of(params: &PolicyParams, sorted_models: &[KernelModel]) -> Digest {
    let mut c = Canon::sha256(POLICY_DIGEST_TAG);
    write_policy(&mut c, params, sorted_models);
    c.finish()
}

/// The digest of a borrowed policy.
#[must_use]
pub fn policy_view_digest(policy: &calybris_kernel::PolicyView<'_>) -> Digest {
    policy_digest_of(policy.params(), policy.models())
}

/// The digest of an owned policy. Prefer [`crate::SealedPolicy`], which computes it once.
#[cfg(feature = "alloc")]
#[must_use]
pub fn policy_digest(policy: &calybris_kernel::PolicySnapshot) -> Digest {
    policy_digest_of(policy.params(), policy.models())
}

/// The digest of a request.
#[must_use]
pub fn input_digest(input: &KernelInput) -> Digest {
    let mut c = Canon::sha256(INPUT_DIGEST_TAG);
    write_input(&mut c, input);
    c.finish()
}

/// The digest of a decision, over every field.
#[must_use]
pub fn decision_digest(decision: &KernelDecision) -> Digest {
    let mut c = Canon::sha256(DECISION_DIGEST_TAG);
    write_decision(&mut c, decision);
    c.finish()
}
