//! Real threads on one gate (ported from the facade's old gate tests): concurrent
//! decide and settle never leak a hold, the in-memory books equal what each thread
//! committed, and the verifier rebuilds the same books from the log, in log order.

mod common;

use calybris_gate::{Gate, GateConfig, GateError, VerifyOptions, verify_dir};
use common::{Rng, TempDir, policy, request, seed};

/// A request the kernel rejects (its risk is over the model's ceiling).
fn risky(sequence: u64) -> calybris_kernel::KernelInput {
    calybris_kernel::KernelInput {
        risk_bps: 9_800,
        ..request(sequence, 1)
    }
}

#[test]
fn concurrent_decide_and_settle_conserve_the_budget() -> Result<(), GateError> {
    const THREADS: u64 = 4;
    const DECISIONS_PER_THREAD: u64 = 60;
    let seed = seed(0x5EED_CA1B_0001);
    println!("seed {seed} (re-run with CALYBRIS_SEED={seed})");
    let dir = TempDir::new("concurrent");
    let tenants = ["acme", "globex", "initech"];
    // Ten estimated requests each: the budgets run out under contention.
    let estimate = policy(false)
        .prescribe(request(0, 1))
        .estimated_cost_microunits;
    let budget = estimate * 10;
    let mut config = GateConfig::new(&dir.0, policy(false));
    for tenant in tenants {
        config = config.tenant(tenant, budget);
    }
    let gate = Gate::open(config)?;

    let results = std::thread::scope(|scope| {
        // One seed per thread, drawn from the test's seed.
        let mut root = Rng::new(seed);
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let gate = &gate;
                let thread_seed = root.next_u64();
                scope.spawn(
                    move || -> Result<Vec<(usize, u64, bool, bool)>, GateError> {
                        let mut rng = Rng::new(thread_seed);
                        let mut spent = Vec::new();
                        for i in 0..DECISIONS_PER_THREAD {
                            let tenant = usize::try_from(rng.below(3)).unwrap_or(0);
                            let sequence = thread * 1_000 + i;
                            let input = if rng.below(5) == 0 {
                                risky(sequence)
                            } else {
                                request(sequence, 1 + u32::from(rng.below(2) == 0))
                            };
                            let admission = gate.decide(tenants[tenant], input)?;
                            let admitted = admission.is_admitted();
                            let budget_refused = admission.decision().is_selection() && !admitted;
                            let estimate = admission.decision().estimated_cost_microunits;
                            let settled = match rng.below(4) {
                                0 => gate.abandon(admission)?,
                                _ if !admitted => gate.settle(admission, 0)?,
                                // Anything from zero to the estimate.
                                _ => gate.settle(admission, rng.below(estimate + 1))?,
                            };
                            spent.push((
                                tenant,
                                settled.committed_microunits,
                                admitted,
                                budget_refused,
                            ));
                        }
                        Ok(spent)
                    },
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a worker thread panicked"))
            .collect::<Result<Vec<_>, _>>()
    })?;

    let mut committed = [0u64; 3];
    let mut admitted = 0;
    let mut refused = 0;
    for (tenant, microunits, was_admitted, budget_refused) in results.into_iter().flatten() {
        committed[tenant] += microunits;
        admitted += u64::from(was_admitted);
        refused += u64::from(budget_refused);
    }
    for (index, tenant) in tenants.iter().enumerate() {
        let books = gate.tenant_books(tenant)?;
        assert_eq!(books.reserved_microunits, 0, "{tenant}: a hold leaked");
        assert_eq!(
            books.committed_microunits,
            i64::try_from(committed[index]).unwrap_or(i64::MAX),
            "{tenant}"
        );
        assert_eq!(books.initial_microunits, i64::try_from(budget).unwrap_or(0));
        assert_eq!(
            books.remaining_microunits + books.committed_microunits,
            books.initial_microunits
        );
    }
    let proof = gate.prove_conservation()?;
    assert!(proof.balanced);
    assert!(admitted > 0, "seed {seed}: nothing was admitted");
    assert!(refused > 0, "seed {seed}: the budget refused nothing");
    let in_memory: Vec<_> = tenants
        .iter()
        .map(|tenant| gate.tenant_books(tenant))
        .collect::<Result<_, _>>()?;
    gate.close()?;

    // Offline, in log order: the same books, every decision, no hold open.
    let report = verify_dir(&dir.0, &VerifyOptions::default()).expect("the directory verifies");
    assert_eq!(report.counts.decisions, THREADS * DECISIONS_PER_THREAD);
    assert_eq!(report.counts.admitted, admitted);
    assert_eq!(report.counts.refused_by_budget, refused);
    assert_eq!(report.open_holds, 0);
    let mut expected = in_memory;
    expected.sort_unstable_by(|a, b| a.tenant.cmp(&b.tenant));
    assert_eq!(report.tenants, expected);
    assert!(report.conservation.balanced);
    assert_eq!(report.conservation.ledger_digest, proof.ledger_digest);
    Ok(())
}
