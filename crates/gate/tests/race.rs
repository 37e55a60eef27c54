//! Budget race through the gate: many threads, one tenant with a small budget, a mix
//! of exact, lower, higher (overrun) and abandoned settlements. Committed spend never
//! exceeds the budget except through logged overruns, the in-memory books balance, and
//! the verifier, replaying the log in its order, never sees an overspend.
//!
//! `CALYBRIS_RACE_PAIRS` sets the number of decide+settle pairs (default 1,000,000 in
//! release builds, 100,000 in debug builds); `CALYBRIS_SEED` the seed.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use calybris_gate::{BudgetOutcome, Gate, GateConfig, GateError, VerifyOptions, verify_dir};
use common::{Rng, TempDir, policy, request, seed};

const THREADS: u64 = 64;
/// The tenant's budget: enough for a few dozen holds at once, so most threads race
/// for the last microunits all the time.
const BUDGET: u64 = 400_000;

fn pairs() -> u64 {
    let default = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    std::env::var("CALYBRIS_RACE_PAIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn sixty_four_threads_never_overspend_one_small_budget() -> Result<(), GateError> {
    let seed = seed(0x5eed_0064);
    let dir = TempDir::new("race");
    let gate = Gate::open(
        GateConfig::new(&dir.0, policy(false))
            .tenant("tight", BUDGET)
            .snapshot_every_records(50_000),
    )?;
    let per_thread = pairs() / THREADS;
    let overrun_extra = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let admitted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let gate = gate.clone();
            let (overrun_extra, refused, admitted) = (&overrun_extra, &refused, &admitted);
            scope.spawn(move || {
                let mut rng = Rng::new(seed ^ (thread + 1).wrapping_mul(0x9e37_79b9));
                for k in 0..per_thread {
                    let model = 1 + (rng.below(2) as u32);
                    let admission = gate
                        .decide("tight", request(thread * per_thread + k, model))
                        .unwrap_or_else(|e| panic!("seed {seed:#x}: decide failed: {e}"));
                    let held = admission.budget().held_microunits();
                    if !admission.is_admitted() {
                        assert!(
                            matches!(admission.budget(), BudgetOutcome::Insufficient { .. }),
                            "seed {seed:#x}: {:?}",
                            admission.budget()
                        );
                        refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    admitted.fetch_add(1, Ordering::Relaxed);
                    let id = calybris_gate::ReservationId(admission.log_sequence());
                    let result = match rng.below(4) {
                        0 => gate.settle(admission, held),
                        1 => gate.settle(admission, rng.below(held + 1)),
                        2 => {
                            let extra = 1 + rng.below(50);
                            match gate.settle(admission, held + extra) {
                                Ok(settled) => {
                                    overrun_extra.fetch_add(extra, Ordering::Relaxed);
                                    Ok(settled)
                                }
                                // The hold stays open under its id: settle it exactly.
                                Err(GateError::OverrunNotCovered { .. }) => {
                                    gate.settle_by_id(id, held)
                                }
                                Err(other) => Err(other),
                            }
                        }
                        _ => gate.abandon(admission),
                    };
                    match result {
                        Ok(_) => {}
                        Err(other) => panic!("seed {seed:#x}: settle failed: {other}"),
                    }
                }
            });
        }
    });
    let books = gate.tenant_books("tight")?;
    assert_eq!(books.conservation_delta_microunits(), 0, "seed {seed:#x}");
    assert!(books.remaining_microunits >= 0, "seed {seed:#x}");
    assert!(
        books.committed_microunits as u64 <= BUDGET,
        "seed {seed:#x}: committed {} over the budget {BUDGET}",
        books.committed_microunits
    );
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "seed {seed:#x}: the budget never bound"
    );
    assert!(admitted.load(Ordering::Relaxed) > 0, "seed {seed:#x}");
    gate.close()?;
    let report = verify_dir(&dir.0, &VerifyOptions::default())
        .unwrap_or_else(|e| panic!("seed {seed:#x}: the raced log does not verify: {e}"));
    let tenant = &report.tenants[0];
    assert_eq!(tenant.committed_microunits, books.committed_microunits);
    assert_eq!(tenant.reserved_microunits, 0);
    assert!(report.conservation.balanced);
    assert_eq!(
        report.counts.decisions,
        admitted.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed)
    );
    Ok(())
}
