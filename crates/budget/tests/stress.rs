//! 100 threads on one tenant and on many, checking the final books exactly.
//!
//! Each thread follows a deterministic script derived from a seed (set
//! `CALYBRIS_STRESS_SEED` to change it; it is printed on failure) and counts
//! what the engine granted it; the final books must equal the sums of those
//! counts to the microcent. A watcher thread snapshots throughout and every
//! snapshot must balance.

use calybris_budget::{BudgetEngine, BudgetError, TenantHandle};
use calybris_workload::SplitMix64;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

const THREADS: usize = 100;
const OPS_PER_THREAD: u64 = 2_000;
const DEFAULT_SEED: u64 = 0x5eed_0fb0_d9e7;

fn seed() -> u64 {
    std::env::var("CALYBRIS_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// What one thread did to one tenant.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    committed_microcents: i64,
    topped_up_microcents: i64,
    granted: u64,
    refused_insufficient: u64,
}

/// Runs one thread's script against the handles, returning a tally per handle.
fn script(
    engine: &BudgetEngine,
    handles: &[TenantHandle],
    seed: u64,
) -> Result<Vec<Tally>, String> {
    let mut rng = SplitMix64::new(seed);
    let mut tallies = vec![Tally::default(); handles.len()];
    for _ in 0..OPS_PER_THREAD {
        let pick = usize::try_from(rng.next_u64() % handles.len() as u64).unwrap_or(0);
        let (handle, tally) = (&handles[pick], &mut tallies[pick]);
        let amount = i64::try_from(rng.next_u64() % 1_000 + 1).unwrap_or(1);
        match rng.next_u64() % 10 {
            0 => {
                handle.top_up(amount).map_err(|e| e.to_string())?;
                tally.topped_up_microcents += amount;
            }
            choice => match handle.try_reserve(amount) {
                Ok(hold) => {
                    tally.granted += 1;
                    match choice {
                        1..=5 => {
                            let actual = amount / 2;
                            hold.commit(actual).map_err(|e| e.to_string())?;
                            tally.committed_microcents += actual;
                        }
                        6 => {
                            let parked = hold.into_id().map_err(|e| e.to_string())?;
                            let actual = amount / 3;
                            engine
                                .commit_by_id(parked, actual)
                                .map_err(|e| e.to_string())?;
                            tally.committed_microcents += actual;
                        }
                        7 => {
                            hold.release();
                        }
                        _ => drop(hold),
                    }
                }
                Err(BudgetError::Insufficient { .. }) => tally.refused_insufficient += 1,
                Err(other) => return Err(other.to_string()),
            },
        }
    }
    Ok(tallies)
}

fn run(tenant_count: usize, initial_microcents: i64) -> Result<(), String> {
    let seed = seed();
    let engine = BudgetEngine::new();
    let ids: Vec<String> = (0..tenant_count)
        .map(|i| format!("tenant-{i:03}"))
        .collect();
    for id in &ids {
        engine
            .ensure_tenant(id, initial_microcents)
            .map_err(|e| e.to_string())?;
    }
    let handles: Vec<TenantHandle> = ids
        .iter()
        .map(|id| engine.tenant(id))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let barrier = Barrier::new(THREADS + 1);
    let done = AtomicBool::new(false);
    let (results, snapshots_taken) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (engine, handles, barrier) = (&engine, &handles, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    script(
                        engine,
                        handles,
                        seed ^ (t as u64).wrapping_mul(0x2545_f491_4f6c_dd1d),
                    )
                })
            })
            .collect();
        let watcher = scope.spawn(|| {
            barrier.wait();
            let mut taken = 0_u64;
            while !done.load(Ordering::Acquire) {
                engine.verify_conservation().map_err(|v| v.to_string())?;
                taken += 1;
            }
            Ok::<u64, String>(taken)
        });
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().map_err(|_| "worker panicked".to_string()))
            .collect();
        done.store(true, Ordering::Release);
        let taken = watcher.join().map_err(|_| "watcher panicked".to_string());
        (results, taken)
    });
    let snapshots_taken = snapshots_taken??;
    let mut totals = vec![Tally::default(); tenant_count];
    for result in results {
        for (total, tally) in totals.iter_mut().zip(result??) {
            total.committed_microcents += tally.committed_microcents;
            total.topped_up_microcents += tally.topped_up_microcents;
            total.granted += tally.granted;
            total.refused_insufficient += tally.refused_insufficient;
        }
    }
    let snapshot = engine.snapshot();
    snapshot.verify_conservation().map_err(|v| v.to_string())?;
    if snapshot.active_reservations != 0 {
        return Err(format!(
            "seed {seed}: {} reservations leaked",
            snapshot.active_reservations
        ));
    }
    for (row, total) in snapshot.tenants.iter().zip(&totals) {
        let expected_initial = initial_microcents + total.topped_up_microcents;
        if row.initial_microcents != expected_initial {
            return Err(format!(
                "seed {seed}: {row:?} initial != {expected_initial}"
            ));
        }
        if row.committed_microcents != total.committed_microcents {
            return Err(format!(
                "seed {seed}: {row:?} committed != {}",
                total.committed_microcents
            ));
        }
        if row.reserved_microcents != 0
            || row.remaining_microcents != expected_initial - total.committed_microcents
        {
            return Err(format!("seed {seed}: {row:?} lost an update"));
        }
        if total.granted == 0 {
            return Err(format!(
                "seed {seed}: nothing was granted on {}",
                row.tenant_id
            ));
        }
    }
    if snapshots_taken == 0 {
        return Err(format!("seed {seed}: the watcher never ran"));
    }
    Ok(())
}

#[test]
fn hundred_threads_on_one_tenant_keep_exact_books() -> Result<(), String> {
    // Small enough that the budget runs out and refusals race with refunds.
    run(1, 200_000)
}

#[test]
fn hundred_threads_on_many_tenants_keep_exact_books() -> Result<(), String> {
    run(16, 50_000)
}

#[test]
fn racing_for_the_last_units_grants_each_unit_once() -> Result<(), String> {
    const UNITS: i64 = 37;
    let engine = BudgetEngine::new();
    engine
        .ensure_tenant("t", UNITS)
        .map_err(|e| e.to_string())?;
    let barrier = Barrier::new(THREADS);
    let holds: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (engine, barrier) = (&engine, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    engine.try_reserve("t", 1).ok().map(|hold| hold.into_id())
                })
            })
            .collect();
        workers.into_iter().filter_map(|w| w.join().ok()).collect()
    });
    let granted: Vec<_> = holds.into_iter().flatten().collect();
    if granted.len() as i64 != UNITS {
        return Err(format!("{} units granted out of {UNITS}", granted.len()));
    }
    let row = engine.ledger("t").map_err(|e| e.to_string())?;
    if row.remaining_microcents != 0 || row.reserved_microcents != UNITS {
        return Err(format!("books after the race: {row:?}"));
    }
    for id in granted {
        let id = id.map_err(|e| e.to_string())?;
        engine.commit_by_id(id, 1).map_err(|e| e.to_string())?;
    }
    let row = engine.ledger("t").map_err(|e| e.to_string())?;
    if row.committed_microcents != UNITS || row.reserved_microcents != 0 {
        return Err(format!("books after commits: {row:?}"));
    }
    Ok(())
}
