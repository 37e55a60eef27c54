//! The kernel and the digests, side by side with the published `calybris-core` 1.3.0:
//! each group runs the same workload on both, so the ratio is read off one report.
//!
//! `cargo bench -p calybris-benches --bench kernel` (or `cargo xtask bench --bench kernel`).

// criterion's group macros generate public functions without docs.
#![allow(missing_docs)]

use calybris_core::{digest as core_d, kernel as core_k, verify as core_v};
use calybris_digest as d;
use calybris_kernel::{KernelDecision, KernelInput, KernelModel, PolicySnapshot};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// Requests cycled through per workload, so no single input is memorised by the
/// branch predictor.
const REQUESTS: usize = 64;

/// A realistic LLM catalog of `n` models from up to 6 providers: prices, latencies and
/// qualities spread the way public price lists spread them.
fn catalog(n: u32) -> Vec<KernelModel> {
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
fn requests(models: &[KernelModel], reject: bool) -> Vec<KernelInput> {
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

struct Pair {
    ours: PolicySnapshot,
    theirs: core_k::PolicySnapshot,
}

fn pair(n: u32) -> Pair {
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

fn to_core_model(m: &KernelModel) -> core_k::KernelModel {
    core_k::KernelModel {
        model_id: m.model_id,
        provider_id: m.provider_id,
        quality_bps: m.quality_bps,
        risk_ceiling_bps: m.risk_ceiling_bps,
        enabled: m.enabled,
        p95_latency_ms: m.p95_latency_ms,
        capabilities: m.capabilities,
        region_mask: m.region_mask,
        input_cost_microunits_per_million_tokens: m.input_cost_microunits_per_million_tokens,
        output_cost_microunits_per_million_tokens: m.output_cost_microunits_per_million_tokens,
    }
}

fn to_core_input(i: &KernelInput) -> core_k::KernelInput {
    core_k::KernelInput {
        request_sequence: i.request_sequence,
        requested_model_id: i.requested_model_id,
        input_tokens: i.input_tokens,
        output_tokens: i.output_tokens,
        business_value_microunits: i.business_value_microunits,
        budget_limit_microunits: i.budget_limit_microunits,
        risk_bps: i.risk_bps,
        confidence_bps: i.confidence_bps,
        minimum_quality_bps: i.minimum_quality_bps,
        max_p95_latency_ms: i.max_p95_latency_ms,
        required_capabilities: i.required_capabilities,
        allowed_provider_mask: i.allowed_provider_mask,
        required_region_mask: i.required_region_mask,
    }
}

/// Runs `ours` and `theirs` over the same cycled requests in one group.
fn side_by_side<A, B>(c: &mut Criterion, group: &str, param: &str, ours: A, theirs: B)
where
    A: Fn(usize) -> u64,
    B: Fn(usize) -> u64,
{
    let mut g = c.benchmark_group(group);
    let mut k = 0usize;
    g.bench_function(BenchmarkId::new("calybris", param), |b| {
        b.iter(|| {
            k = (k + 1) % REQUESTS;
            black_box(ours(black_box(k)))
        })
    });
    let mut k = 0usize;
    g.bench_function(BenchmarkId::new("calybris-core", param), |b| {
        b.iter(|| {
            k = (k + 1) % REQUESTS;
            black_box(theirs(black_box(k)))
        })
    });
    g.finish();
}

fn prescribe(c: &mut Criterion) {
    for n in [4u32, 22, 64] {
        let p = pair(n);
        let ours_in = requests(p.ours.models(), false);
        let theirs_in: Vec<_> = ours_in.iter().map(to_core_input).collect();
        // Sanity: the workload selects, and both sides agree on it.
        let selected = ours_in
            .iter()
            .filter(|i| p.ours.prescribe(**i).is_selection())
            .count();
        assert!(
            selected * 2 > REQUESTS,
            "the select workload must mostly select ({selected}/{REQUESTS})"
        );
        for (a, b) in ours_in.iter().zip(&theirs_in) {
            assert_eq!(
                p.ours.prescribe(*a).selected_model_id,
                p.theirs.prescribe(*b).selected_model_id
            );
        }
        side_by_side(
            c,
            "prescribe",
            &n.to_string(),
            |k| p.ours.prescribe(ours_in[k]).estimated_cost_microunits,
            |k| p.theirs.prescribe(theirs_in[k]).estimated_cost_microunits,
        );
    }
}

fn prescribe_reject(c: &mut Criterion) {
    let p = pair(22);
    let ours_in = requests(p.ours.models(), true);
    let theirs_in: Vec<_> = ours_in.iter().map(to_core_input).collect();
    assert!(ours_in.iter().all(|i| !p.ours.prescribe(*i).is_selection()));
    side_by_side(
        c,
        "prescribe_reject",
        "22",
        |k| p.ours.prescribe(ours_in[k]).reason.code().into(),
        |k| p.theirs.prescribe(theirs_in[k]).reason as u64,
    );
}

fn verify(c: &mut Criterion) {
    let p = pair(22);
    let ours_in = requests(p.ours.models(), false);
    let ours_out: Vec<KernelDecision> = ours_in.iter().map(|i| p.ours.prescribe(*i)).collect();
    let theirs_in: Vec<_> = ours_in.iter().map(to_core_input).collect();
    let theirs_out: Vec<_> = theirs_in.iter().map(|i| p.theirs.prescribe(*i)).collect();
    side_by_side(
        c,
        "verify_decision",
        "22",
        |k| u64::from(p.ours.verify_decision(ours_in[k], &ours_out[k]).is_ok()),
        |k| {
            u64::from(matches!(
                core_v::verify_decision(&p.theirs, theirs_in[k], &theirs_out[k]),
                core_v::VerifyResult::Valid
            ))
        },
    );
}

fn digests(c: &mut Criterion) {
    let p = pair(22);
    let ours_in = requests(p.ours.models(), false);
    let ours_out: Vec<KernelDecision> = ours_in.iter().map(|i| p.ours.prescribe(*i)).collect();
    let theirs_in: Vec<_> = ours_in.iter().map(to_core_input).collect();
    let theirs_out: Vec<_> = theirs_in.iter().map(|i| p.theirs.prescribe(*i)).collect();
    side_by_side(
        c,
        "policy_digest",
        "22",
        |_| u64::from(d::policy_digest(&p.ours)[0]),
        |_| u64::from(core_d::policy_digest(&p.theirs)[0]),
    );
    side_by_side(
        c,
        "input_digest",
        "",
        |k| u64::from(d::input_digest(&ours_in[k])[0]),
        |k| u64::from(core_d::input_digest(&theirs_in[k])[0]),
    );
    side_by_side(
        c,
        "decision_digest",
        "",
        |k| u64::from(d::decision_digest(&ours_out[k])[0]),
        |k| u64::from(core_d::decision_digest(&theirs_out[k])[0]),
    );
}

criterion_group!(benches, prescribe, prescribe_reject, verify, digests);
criterion_main!(benches);
