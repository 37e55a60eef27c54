//! Shared helpers of the conformance tests: a seeded generator of catalogs and requests
//! rich in edge values, and conversions to and from the `calybris-core` oracle's types.

#![allow(dead_code)]

use calybris_core::kernel as core_k;
use calybris_kernel::{KernelAction, KernelDecision, KernelInput, KernelModel, KernelReason};
use calybris_testkit::SplitMix64;
#[allow(unused_imports)]
pub use calybris_testkit::oracle::{to_core_input, to_core_model};

/// The seed of a run: `CALYBRIS_SEED` when set (decimal or 0x-hex), else a fixed default.
pub fn seed() -> u64 {
    calybris_testkit::seed_from_env(0x0C41_B815_5EED_2026)
}

/// The workspace's SplitMix64 (from `calybris-testkit`), with the edge-value draws of
/// the conformance tests on top.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `0..n` (n > 0), with negligible bias for the small n used here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    /// A u64 that is an edge value a quarter of the time, else below `typical`.
    pub fn u64_edgy(&mut self, typical: u64) -> u64 {
        if self.chance(25) {
            self.pick(&[
                0,
                1,
                999_999,
                1_000_000,
                1_000_001,
                u64::MAX,
                u64::MAX - 1,
                1 << 63,
                u32::MAX as u64,
            ])
        } else {
            self.below(typical.max(1))
        }
    }
    pub fn u32_edgy(&mut self, typical: u32) -> u32 {
        if self.chance(20) {
            self.pick(&[0, 1, u32::MAX, u32::MAX - 1, 1 << 31])
        } else {
            self.below(u64::from(typical.max(1))) as u32
        }
    }
    /// Basis points, mostly valid, sometimes at the boundary or above 10_000.
    pub fn bps(&mut self, allow_invalid: bool) -> u16 {
        if self.chance(15) {
            let edges: &[u16] = if allow_invalid {
                &[0, 1, 9_999, 10_000, 10_001, 50_000, u16::MAX]
            } else {
                &[0, 1, 9_999, 10_000]
            };
            self.pick(edges)
        } else {
            self.below(10_001) as u16
        }
    }
    pub fn mask(&mut self, bits: u32) -> u64 {
        if self.chance(10) {
            self.pick(&[0, u64::MAX, 1, 1 << 63])
        } else {
            self.next_u64() & ((1u64 << bits) - 1)
        }
    }
}

/// A random, valid catalog of `1..=max_len` candidates in random order.
pub fn catalog(rng: &mut Rng, max_len: u64) -> Vec<KernelModel> {
    let len = 1 + rng.below(max_len) as usize;
    let id_space = if rng.chance(20) {
        u64::from(u32::MAX)
    } else {
        4 * len as u64 + 8
    };
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < len {
        let id = 1 + rng.below(id_space) as u32;
        ids.insert(if rng.chance(2) { u32::MAX } else { id });
    }
    let mut models: Vec<KernelModel> = ids
        .into_iter()
        .map(|model_id| KernelModel {
            model_id,
            provider_id: rng.below(64) as u16,
            quality_bps: rng.bps(false),
            risk_ceiling_bps: rng.bps(false),
            enabled: u8::from(!rng.chance(10)),
            p95_latency_ms: rng.u32_edgy(5_000),
            capabilities: rng.mask(4),
            region_mask: rng.mask(3),
            input_cost_microunits_per_million_tokens: rng.u64_edgy(30_000_000),
            output_cost_microunits_per_million_tokens: rng.u64_edgy(120_000_000),
        })
        .collect();
    // Twins: same prices and latency as another candidate, so utilities and costs tie
    // and the tie-breaks (quality, then the lower id) decide.
    for i in 1..models.len() {
        if rng.chance(30) {
            let j = rng.below(i as u64) as usize;
            let model_id = models[i].model_id;
            let quality_bps = if rng.chance(50) {
                models[j].quality_bps
            } else {
                models[i].quality_bps
            };
            models[i] = KernelModel {
                model_id,
                quality_bps,
                ..models[j]
            };
        }
    }
    if !models.iter().any(|m| m.enabled == 1) {
        models[0].enabled = 1;
    }
    // Shuffle: catalog order must never decide anything.
    for i in (1..models.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        models.swap(i, j);
    }
    models
}

/// The six policy scalars: (policy_epoch, catalog_epoch, hard_risk, min_conf, multiplier, latency rate).
pub type Scalars = (u64, u64, u16, u16, u16, u64);

pub fn scalars(rng: &mut Rng) -> Scalars {
    (
        rng.next_u64(),
        rng.next_u64(),
        if rng.chance(70) {
            5_000 + rng.below(5_001) as u16
        } else {
            rng.bps(false)
        },
        if rng.chance(70) {
            rng.below(3_000) as u16
        } else {
            rng.bps(false)
        },
        if rng.chance(10) {
            rng.pick(&[0, 50_000, 49_999])
        } else {
            rng.below(30_001) as u16
        },
        if rng.chance(15) {
            rng.pick(&[0, u64::MAX, 1 << 40])
        } else {
            rng.below(20)
        },
    )
}

/// A request against `models`, usually for one of its candidates.
pub fn request(rng: &mut Rng, models: &[KernelModel], sequence: u64) -> KernelInput {
    let requested_model_id = if rng.chance(85) {
        models[rng.below(models.len() as u64) as usize].model_id
    } else {
        rng.u32_edgy(1_000)
    };
    let business_value_microunits = if rng.chance(20) {
        rng.pick(&[i64::MIN, i64::MAX, -1, 0, 1, i64::MAX - 1])
    } else {
        rng.below(2_000_000_000) as i64 - 100_000_000
    };
    KernelInput {
        request_sequence: sequence,
        requested_model_id,
        input_tokens: rng.u32_edgy(200_000),
        output_tokens: rng.u32_edgy(50_000),
        business_value_microunits,
        budget_limit_microunits: rng.u64_edgy(5_000_000_000),
        risk_bps: if rng.chance(70) {
            rng.below(4_000) as u16
        } else {
            rng.bps(true)
        },
        confidence_bps: if rng.chance(70) {
            5_000 + rng.below(5_001) as u16
        } else {
            rng.bps(true)
        },
        minimum_quality_bps: if rng.chance(50) {
            rng.below(8_000) as u16
        } else {
            rng.bps(true)
        },
        max_p95_latency_ms: if rng.chance(40) {
            0
        } else {
            rng.u32_edgy(6_000)
        },
        required_capabilities: if rng.chance(50) {
            0
        } else {
            rng.mask(4) & rng.mask(4)
        },
        allowed_provider_mask: if rng.chance(50) {
            u64::MAX
        } else {
            rng.next_u64()
        },
        required_region_mask: if rng.chance(50) { 0 } else { rng.mask(3) },
    }
}

pub fn from_core_decision(d: &core_k::KernelDecision) -> KernelDecision {
    KernelDecision {
        request_sequence: d.request_sequence,
        action: KernelAction::from_code(d.action as u8).expect("oracle action code"),
        reason: KernelReason::from_code(d.reason as u16).expect("oracle reason code"),
        selected_model_id: d.selected_model_id,
        selected_model_index: d.selected_model_index,
        estimated_cost_microunits: d.estimated_cost_microunits,
        expected_utility_microunits: d.expected_utility_microunits,
        counterfactual_model_id: d.counterfactual_model_id,
        counterfactual_utility_microunits: d.counterfactual_utility_microunits,
        evaluated_models: d.evaluated_models,
        eligible_models: d.eligible_models,
        policy_epoch: d.policy_epoch,
        catalog_epoch: d.catalog_epoch,
    }
}

pub fn to_core_decision(d: &KernelDecision) -> core_k::KernelDecision {
    let action = match d.action {
        KernelAction::ExecuteRequested => core_k::KernelAction::ExecuteRequested,
        KernelAction::Substitute => core_k::KernelAction::Substitute,
        KernelAction::Reject => core_k::KernelAction::Reject,
    };
    use core_k::KernelReason as R;
    let reason = match d.reason {
        KernelReason::RequestedModelMaximizesUtility => R::RequestedModelMaximizesUtility,
        KernelReason::AlternativeMaximizesUtility => R::AlternativeMaximizesUtility,
        KernelReason::RiskHardLimit => R::RiskHardLimit,
        KernelReason::ConfidenceHardLimit => R::ConfidenceHardLimit,
        KernelReason::NoEnabledModel => R::NoEnabledModel,
        KernelReason::QualityConstraint => R::QualityConstraint,
        KernelReason::LatencyConstraint => R::LatencyConstraint,
        KernelReason::CapabilityConstraint => R::CapabilityConstraint,
        KernelReason::ProviderConstraint => R::ProviderConstraint,
        KernelReason::RegionConstraint => R::RegionConstraint,
        KernelReason::BudgetConstraint => R::BudgetConstraint,
        KernelReason::NonPositiveUtility => R::NonPositiveUtility,
        KernelReason::RiskCeilingConstraint => R::RiskCeilingConstraint,
    };
    core_k::KernelDecision {
        request_sequence: d.request_sequence,
        action,
        reason,
        selected_model_id: d.selected_model_id,
        selected_model_index: d.selected_model_index,
        estimated_cost_microunits: d.estimated_cost_microunits,
        expected_utility_microunits: d.expected_utility_microunits,
        counterfactual_model_id: d.counterfactual_model_id,
        counterfactual_utility_microunits: d.counterfactual_utility_microunits,
        evaluated_models: d.evaluated_models,
        eligible_models: d.eligible_models,
        policy_epoch: d.policy_epoch,
        catalog_epoch: d.catalog_epoch,
    }
}

/// Builds the same policy on both sides; `None` when both refuse it, a panic (with the
/// seed in the message of the caller) when only one does.
pub fn both_policies(
    s: Scalars,
    models: &[KernelModel],
) -> Result<Option<(calybris_kernel::PolicySnapshot, core_k::PolicySnapshot)>, String> {
    let ours =
        calybris_kernel::PolicySnapshot::try_new(s.0, s.1, s.2, s.3, s.4, s.5, models.to_vec());
    let theirs = core_k::PolicySnapshot::try_new_trusted(
        s.0,
        s.1,
        s.2,
        s.3,
        s.4,
        s.5,
        models.iter().map(to_core_model).collect(),
    );
    match (ours, theirs) {
        (Ok(a), Ok(b)) => Ok(Some((a, b))),
        (Err(_), Err(_)) => Ok(None),
        (Ok(_), Err(e)) => Err(format!("oracle refused a policy we accept: {e:?}")),
        (Err(e), Ok(_)) => Err(format!("we refused a policy the oracle accepts: {e:?}")),
    }
}
