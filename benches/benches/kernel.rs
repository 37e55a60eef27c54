//! The kernel and the digests, side by side with the published `calybris-core` 1.3.0:
//! each group runs the same workload on both, so the ratio is read off one report.
//!
//! `cargo bench -p calybris-benches --bench kernel` (or `cargo xtask bench --bench kernel`).

// criterion's group macros generate public functions without docs.
#![allow(missing_docs)]

#[path = "../common/workload.rs"]
mod workload;

#[path = "../common/stress.rs"]
mod stress;

use calybris_core::{digest as core_d, verify as core_v};
use calybris_digest as d;
use calybris_kernel::KernelDecision;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use workload::{REQUESTS, pair, requests, to_core_input};

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

/// The 22-candidate policy, its selecting requests and their decisions, on both sides.
struct Decided {
    p: workload::Pair,
    ours_in: Vec<calybris_kernel::KernelInput>,
    ours_out: Vec<KernelDecision>,
    theirs_in: Vec<calybris_core::kernel::KernelInput>,
    theirs_out: Vec<calybris_core::kernel::KernelDecision>,
}

fn decided() -> Decided {
    let p = pair(22);
    let ours_in = requests(p.ours.models(), false);
    let ours_out = ours_in.iter().map(|i| p.ours.prescribe(*i)).collect();
    let theirs_in: Vec<_> = ours_in.iter().map(to_core_input).collect();
    let theirs_out = theirs_in.iter().map(|i| p.theirs.prescribe(*i)).collect();
    Decided {
        p,
        ours_in,
        ours_out,
        theirs_in,
        theirs_out,
    }
}

fn verify(c: &mut Criterion) {
    let Decided {
        p,
        ours_in,
        ours_out,
        theirs_in,
        theirs_out,
    } = decided();
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

/// Requests in one burst of the batch group.
const BURST: usize = 1_024;

/// A burst of 1,024 requests over 22 candidates: our `prescribe_batch_into` against a
/// loop of the published crate's `prescribe` (it has no batch entry point). Throughput
/// is per request, so criterion reports the time of one decision.
fn prescribe_batch(c: &mut Criterion) {
    let p = pair(22);
    let cycle = requests(p.ours.models(), false);
    let ours_in: Vec<_> = (0..BURST)
        .map(|k| calybris_kernel::KernelInput {
            request_sequence: k as u64,
            ..cycle[k % REQUESTS]
        })
        .collect();
    let theirs_in: Vec<_> = ours_in.iter().map(to_core_input).collect();
    let mut out = vec![p.ours.prescribe(ours_in[0]); BURST];
    assert_eq!(p.ours.prescribe_batch_into(&ours_in, &mut out), BURST);
    for (i, d) in ours_in.iter().zip(&out) {
        assert_eq!(*d, p.ours.prescribe(*i), "the batch decides like prescribe");
    }
    let mut g = c.benchmark_group("prescribe_batch");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function(BenchmarkId::new("calybris", "1024x22"), |b| {
        b.iter(|| {
            p.ours
                .prescribe_batch_into(black_box(&ours_in), black_box(&mut out))
        })
    });
    g.bench_function(BenchmarkId::new("calybris-core", "1024x22"), |b| {
        b.iter(|| {
            black_box(&theirs_in).iter().fold(0u64, |a, i| {
                a.wrapping_add(p.theirs.prescribe(*i).estimated_cost_microunits)
            })
        })
    });
    g.finish();
}

/// The second, independent workload (`benches/common/stress.rs`): other catalog sizes,
/// mostly rejections, some wide-path and refused requests.
fn stress_prescribe(c: &mut Criterion) {
    for n in stress::SIZES {
        let p = stress::pair(n);
        let ours_in = stress::requests(p.ours.models());
        let theirs_in: Vec<_> = ours_in.iter().map(to_core_input).collect();
        for (a, b) in ours_in.iter().zip(&theirs_in) {
            let (ours, theirs) = (p.ours.prescribe(*a), p.theirs.prescribe(*b));
            assert_eq!(ours.selected_model_id, theirs.selected_model_id);
            assert_eq!(ours.reason.code(), theirs.reason as u16);
        }
        side_by_side(
            c,
            "stress_prescribe",
            &n.to_string(),
            |k| p.ours.prescribe(ours_in[k]).estimated_cost_microunits,
            |k| p.theirs.prescribe(theirs_in[k]).estimated_cost_microunits,
        );
    }
}

fn digests(c: &mut Criterion) {
    let Decided {
        p,
        ours_in,
        ours_out,
        theirs_in,
        theirs_out,
    } = decided();
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

criterion_group!(
    benches,
    prescribe,
    prescribe_reject,
    verify,
    prescribe_batch,
    stress_prescribe,
    digests
);
criterion_main!(benches);
