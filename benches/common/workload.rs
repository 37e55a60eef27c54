//! The kernel workload the benches and the instruction-count example share: an
//! LLM-like catalog, cycled requests, and the same policy built on both sides, with the
//! conversions to `calybris-core`'s types. Included by path (`#[path]`) from each
//! target, so `calybris-core` stays a dev-dependency.

// Each including target uses a different part of this module.
#![allow(dead_code)]

use calybris_core::kernel as core_k;
use calybris_kernel::{KernelInput, KernelModel, PolicySnapshot};
#[allow(unused_imports)]
pub use calybris_testkit::oracle::{to_core_input, to_core_model};

/// Requests cycled through per workload, so no single input is memorised by the
/// branch predictor.
pub const REQUESTS: usize = 64;

/// A realistic LLM catalog of `n` models from up to 6 providers: prices, latencies and
/// qualities spread the way public price lists spread them.
pub fn catalog(n: u32) -> Vec<KernelModel> {
    (1..=n)
        .map(|k| {
            let tier = u64::from(k % 5);
            KernelModel {
                model_id: 1_000 + k * 7,
                provider_id: (k % 6) as u16,
                quality_bps: 6_500 + ((k * 379) % 3_400) as u16,
                risk_ceiling_bps: 5_000 + ((k * 613) % 5_000) as u16,
                enabled: u8::from(k % 11 != 0),
                p95_latency_ms: 250 + (k * 137) % 2_500,
                capabilities: 0b0111 | u64::from(k % 3 == 0) << 3,
                region_mask: 0b001 | u64::from(k % 2) << 1 | u64::from(k % 4 == 0) << 2,
                input_cost_microunits_per_million_tokens: 100_000
                    + tier * 700_000
                    + u64::from(k) * 13_000,
                output_cost_microunits_per_million_tokens: 400_000
                    + tier * 2_800_000
                    + u64::from(k) * 41_000,
            }
        })
        .collect()
}

/// Requests that mostly select something: moderate limits, varied sizes.
pub fn requests(models: &[KernelModel], reject: bool) -> Vec<KernelInput> {
    (0..REQUESTS as u64)
        .map(|k| KernelInput {
            request_sequence: k,
            requested_model_id: models[(k as usize * 5) % models.len()].model_id,
            input_tokens: 500 + (k as u32 * 911) % 8_000,
            output_tokens: 100 + (k as u32 * 331) % 2_000,
            business_value_microunits: 20_000 + (k as i64 * 7_919) % 200_000,
            budget_limit_microunits: if reject {
                1
            } else {
                50_000 + (k * 3_001) % 100_000
            },
            risk_bps: (k as u16 * 97) % 3_000,
            confidence_bps: 7_000 + (k as u16 * 53) % 3_000,
            minimum_quality_bps: 6_000 + (k as u16 * 71) % 2_000,
            max_p95_latency_ms: if k % 3 == 0 {
                0
            } else {
                1_500 + (k as u32 * 37) % 2_000
            },
            required_capabilities: 0b0011,
            allowed_provider_mask: if k % 4 == 0 { 0b011_111 } else { u64::MAX },
            required_region_mask: if k % 2 == 0 { 0 } else { 0b001 },
        })
        .collect()
}

pub struct Pair {
    pub ours: PolicySnapshot,
    pub theirs: core_k::PolicySnapshot,
}

pub fn pair(n: u32) -> Pair {
    let models = catalog(n);
    let ours = PolicySnapshot::try_new(1, 1, 8_000, 2_000, 10_000, 3, models.clone())
        .expect("valid policy");
    let theirs = core_k::PolicySnapshot::try_new_trusted(
        1,
        1,
        8_000,
        2_000,
        10_000,
        3,
        models.iter().map(to_core_model).collect(),
    )
    .expect("valid policy");
    Pair { ours, theirs }
}
