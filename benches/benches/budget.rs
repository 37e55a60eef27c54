//! The budget engine, side by side with the published `calybris-core` 1.3.0:
//! reserve + commit on one thread, then two threads on two tenants and on one
//! tenant. Each group runs the same workload on both engines, so the ratio is
//! read off one report.
//!
//! `cargo bench -p calybris-benches --bench budget`.
//!
//! The two-thread groups time `iters` reserve + commit pairs on each of two
//! threads started together; the figure is wall time divided by `iters`, that
//! is the time per pair per thread (lower is better; equal to the one-thread
//! figure means perfect scaling).

// criterion's group macros generate public functions without docs.
#![allow(missing_docs)]

#[path = "../common/tree.rs"]
mod tree;

use calybris_budget::BudgetEngine;
use calybris_core::budget as core_b;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Opening budget: large enough that no run ever exhausts it.
const INITIAL_MICROCENTS: i64 = i64::MAX / 4;
/// Amount held by each reservation.
const HOLD_MICROCENTS: i64 = 1_000;
/// Amount committed out of each hold (the rest is refunded).
const ACTUAL_MICROCENTS: i64 = 600;

fn ours(tenants: &[&str]) -> BudgetEngine {
    let engine = BudgetEngine::new();
    for tenant in tenants {
        engine
            .ensure_tenant(tenant, INITIAL_MICROCENTS)
            .expect("bench tenants are valid");
    }
    engine
}

fn theirs(tenants: &[&str]) -> core_b::BudgetEngine {
    let engine = core_b::BudgetEngine::new();
    for tenant in tenants {
        engine.ensure_tenant(tenant, INITIAL_MICROCENTS);
    }
    engine
}

fn ours_by_id(engine: &BudgetEngine, tenant: &str) {
    let hold = engine
        .try_reserve(black_box(tenant), black_box(HOLD_MICROCENTS))
        .expect("budget never runs out");
    let settled = hold.commit(black_box(ACTUAL_MICROCENTS));
    black_box(settled.is_ok());
}

fn ours_by_handle(handle: &calybris_budget::TenantHandle) {
    let hold = handle
        .try_reserve(black_box(HOLD_MICROCENTS))
        .expect("budget never runs out");
    let settled = hold.commit(black_box(ACTUAL_MICROCENTS));
    black_box(settled.is_ok());
}

fn theirs_pair(engine: &core_b::BudgetEngine, tenant: &str) {
    let (reservation, id) = engine.try_reserve(black_box(tenant), black_box(HOLD_MICROCENTS));
    black_box(&reservation);
    let id = id.expect("budget never runs out");
    black_box(engine.commit(id, black_box(ACTUAL_MICROCENTS)));
}

fn one_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("budget_reserve_commit_one_thread");
    let engine = ours(&["acme"]);
    let handle = engine.tenant("acme").expect("tenant exists");
    let core = theirs(&["acme"]);
    group.bench_function("calybris_by_id", |b| b.iter(|| ours_by_id(&engine, "acme")));
    group.bench_function("calybris_by_handle", |b| b.iter(|| ours_by_handle(&handle)));
    group.bench_function("calybris_core", |b| b.iter(|| theirs_pair(&core, "acme")));
    group.finish();
    assert_eq!(engine.verify_conservation(), Ok(()));
}

fn two_thread_group(c: &mut Criterion, name: &str, tenants: [&'static str; 2]) {
    let mut group = c.benchmark_group(name);
    let unique: Vec<&str> = if tenants[0] == tenants[1] {
        vec![tenants[0]]
    } else {
        tenants.to_vec()
    };
    let engine = ours(&unique);
    let handles = [
        engine.tenant(tenants[0]).expect("tenant exists"),
        engine.tenant(tenants[1]).expect("tenant exists"),
    ];
    let core = theirs(&unique);
    group.bench_function("calybris_by_id", |b| {
        b.iter_custom(|iters| {
            n_threads(2, iters, &|index, n| {
                for _ in 0..n {
                    ours_by_id(&engine, tenants[index]);
                }
            })
        })
    });
    group.bench_function("calybris_by_handle", |b| {
        b.iter_custom(|iters| {
            n_threads(2, iters, &|index, n| {
                for _ in 0..n {
                    ours_by_handle(&handles[index]);
                }
            })
        })
    });
    group.bench_function("calybris_core", |b| {
        b.iter_custom(|iters| {
            n_threads(2, iters, &|index, n| {
                for _ in 0..n {
                    theirs_pair(&core, tenants[index]);
                }
            })
        })
    });
    group.finish();
    assert_eq!(engine.verify_conservation(), Ok(()));
}

fn two_threads_two_tenants(c: &mut Criterion) {
    two_thread_group(c, "budget_two_threads_two_tenants", ["acme", "globex"]);
}

fn two_threads_one_tenant(c: &mut Criterion) {
    two_thread_group(c, "budget_two_threads_one_tenant", ["acme", "acme"]);
}

/// Durable reserve + commit through the journaled ledger: 4 threads, each
/// pair acknowledged only once both records are fsynced (group commit). The
/// figure is wall time per pair per thread; 4 divided by it is pairs per second.
fn durable_four_threads(c: &mut Criterion) {
    const THREADS: usize = 4;
    let mut group = c.benchmark_group("ledger_durable_reserve_commit_4_threads");
    group.sample_size(10);
    let dir = std::env::temp_dir().join(format!("calybris-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ledger, _) =
        calybris_finance::DurableLedger::open(&dir, calybris_finance::DurableConfig::default())
            .expect("the bench journal opens");
    for t in 0..THREADS {
        ledger
            .ensure_tenant(&format!("t{t}"), INITIAL_MICROCENTS)
            .expect("bench tenants are valid");
    }
    let tenants: Vec<String> = (0..THREADS).map(|t| format!("t{t}")).collect();
    group.bench_function("calybris", |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(THREADS);
            std::thread::scope(|scope| {
                let workers: Vec<_> = tenants
                    .iter()
                    .map(|tenant| {
                        let (ledger, barrier) = (&ledger, &barrier);
                        scope.spawn(move || {
                            barrier.wait();
                            let start = Instant::now();
                            for _ in 0..iters {
                                let hold = ledger
                                    .try_reserve(tenant, HOLD_MICROCENTS)
                                    .expect("budget never runs out");
                                hold.commit(ACTUAL_MICROCENTS).expect("journal is healthy");
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("bench thread does not panic"))
                    .max()
                    .unwrap_or_default()
            })
        })
    });
    group.finish();
    assert_eq!(ledger.verify_conservation(), Ok(()));
    ledger.close().expect("the journal closes");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The budget tree (issue 14): reserve + commit through org -> team -> key plus one
/// model scope (four nodes, all or none), next to the flat tenant path by handle.
/// Run alone with `cargo bench -p calybris-benches --bench budget -- budget_tree`.
///
/// One thread: one key. Four threads: the flat path has four threads on one tenant;
/// the tree has four keys under one team, so the team, the org and the model node
/// are shared by all four threads (the contended case a gateway has).
fn tree(c: &mut Criterion) {
    const THREADS: usize = 4;
    let (tree, plans) = tree::three_levels_one_scope(INITIAL_MICROCENTS, THREADS);
    let engine = ours(&["acme"]);
    let handle = engine.tenant("acme").expect("tenant exists");
    let tree_pair = |plan: &calybris_budget::HoldPlan| {
        let hold = tree
            .try_reserve(black_box(plan), black_box(HOLD_MICROCENTS))
            .expect("budget never runs out");
        let settled = hold.commit(black_box(ACTUAL_MICROCENTS));
        black_box(settled.is_ok());
    };
    let mut group = c.benchmark_group("budget_tree_one_thread");
    group.bench_function("flat_by_handle", |b| b.iter(|| ours_by_handle(&handle)));
    group.bench_function("tree_3_levels_1_scope", |b| b.iter(|| tree_pair(&plans[0])));
    group.finish();
    let mut group = c.benchmark_group("budget_tree_four_threads");
    group.bench_function("flat_by_handle_one_tenant", |b| {
        b.iter_custom(|iters| {
            n_threads(THREADS, iters, &|_, n| {
                for _ in 0..n {
                    ours_by_handle(&handle);
                }
            })
        })
    });
    group.bench_function("tree_3_levels_1_scope_shared_team", |b| {
        b.iter_custom(|iters| {
            n_threads(THREADS, iters, &|index, n| {
                for _ in 0..n {
                    tree_pair(&plans[index]);
                }
            })
        })
    });
    group.finish();
    assert_eq!(engine.verify_conservation(), Ok(()));
    assert!(tree.verify_conservation().is_ok());
}

/// Runs `work(thread_index, iters)` on `threads` threads started together; returns
/// the wall time of the slowest.
fn n_threads(threads: usize, iters: u64, work: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|index| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(index, iters);
                    start.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("bench thread does not panic"))
            .max()
            .unwrap_or_default()
    })
}

criterion_group!(
    benches,
    one_thread,
    two_threads_two_tenants,
    two_threads_one_tenant,
    durable_four_threads,
    tree
);
criterion_main!(benches);
