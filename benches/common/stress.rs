//! A second kernel workload, independent of `workload.rs` and built to be unlike it:
//! other catalog sizes (9, 40, 128: a single short block, a partial block, two full
//! blocks), twelve providers, eight capability bits and four regions spread at random,
//! wider price and latency ranges, and requests that reject far more (several required
//! capabilities, narrow provider and region masks, tight latency and budgets), with one
//! request in eight on the wide (`u128`) arithmetic path (huge token counts or values)
//! and one in sixteen refused outright. Everything comes from a fixed-seed generator.
//! Included by path next to `workload.rs`, whose conversions it uses.

// Each including target uses a different part of this module.
#![allow(dead_code)]

use crate::workload::{Pair, to_core_model};
use calybris_core::kernel as core_k;
use calybris_kernel::{KernelInput, KernelModel, PolicySnapshot};

/// Requests cycled through, as in `workload.rs`.
pub const REQUESTS: usize = 64;

/// The catalog sizes of this workload.
pub const SIZES: [u32; 3] = [9, 40, 128];

/// The workspace's seeded generator (SplitMix64, from `calybris-testkit`), with the
/// draws of this workload.
struct Rng(calybris_testkit::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(calybris_testkit::SplitMix64::new(seed))
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    /// A mask of `bits` low bits, each set with probability `percent` / 100.
    fn bits(&mut self, bits: u32, percent: u64) -> u64 {
        (0..bits).fold(0, |m, b| m | u64::from(self.below(100) < percent) << b)
    }
}

/// `n` candidates with fields drawn at random (seeded by `n`).
pub fn catalog(n: u32) -> Vec<KernelModel> {
    let mut rng = Rng::new(0x5EED_0000 + u64::from(n));
    (1..=n)
        .map(|k| {
            let input = 10_000 + rng.below(60_000_000);
            KernelModel {
                model_id: 50_000 - k * 13,
                provider_id: rng.below(12) as u16,
                quality_bps: 4_000 + rng.below(6_001) as u16,
                risk_ceiling_bps: 2_000 + rng.below(8_001) as u16,
                enabled: u8::from(rng.below(7) != 0),
                p95_latency_ms: 100 + rng.below(8_000) as u32,
                capabilities: rng.bits(8, 65),
                region_mask: rng.bits(4, 45) | 1 << rng.below(4),
                input_cost_microunits_per_million_tokens: input,
                output_cost_microunits_per_million_tokens: input * (1 + rng.below(6)),
            }
        })
        .collect()
}

/// Requests that mostly reject, with some on the wide path and some refused.
pub fn requests(models: &[KernelModel]) -> Vec<KernelInput> {
    let mut rng = Rng::new(0xC0FF_EE00 + models.len() as u64);
    (0..REQUESTS as u64)
        .map(|k| {
            let wide = k % 8 == 3;
            KernelInput {
                request_sequence: 1_000 + k,
                requested_model_id: models[rng.below(models.len() as u64) as usize].model_id,
                input_tokens: if wide && k % 16 == 3 {
                    3_000_000_000 + rng.below(1_000_000_000) as u32
                } else {
                    100 + rng.below(40_000) as u32
                },
                output_tokens: 50 + rng.below(8_000) as u32,
                business_value_microunits: if wide && k % 16 == 11 {
                    (1 << 60) + rng.below(1 << 60) as i64
                } else {
                    rng.below(2_000_000) as i64 - 200_000
                },
                budget_limit_microunits: if wide {
                    u64::MAX
                } else {
                    500 + rng.below(400_000)
                },
                risk_bps: if k % 16 == 7 {
                    9_500
                } else {
                    rng.below(6_000) as u16
                },
                confidence_bps: 3_000 + rng.below(7_001) as u16,
                minimum_quality_bps: 3_000 + rng.below(6_000) as u16,
                max_p95_latency_ms: if k % 4 == 0 {
                    0
                } else {
                    500 + rng.below(6_000) as u32
                },
                required_capabilities: rng.bits(8, 25),
                allowed_provider_mask: if k % 3 == 0 {
                    u64::MAX
                } else {
                    rng.bits(12, 50)
                },
                required_region_mask: if k % 2 == 0 { 0 } else { rng.bits(4, 40) },
            }
        })
        .collect()
}

/// The same policy on both sides, with its own scalars (a hard risk limit that refuses
/// some requests, a heavier latency penalty).
pub fn pair(n: u32) -> Pair {
    let models = catalog(n);
    let ours = PolicySnapshot::try_new(7, 3, 9_000, 3_500, 25_000, 11, models.clone())
        .expect("valid policy");
    let theirs = core_k::PolicySnapshot::try_new_trusted(
        7,
        3,
        9_000,
        3_500,
        25_000,
        11,
        models.iter().map(to_core_model).collect(),
    )
    .expect("valid policy");
    Pair { ours, theirs }
}
