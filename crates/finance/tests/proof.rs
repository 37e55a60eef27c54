//! Conservation proofs and certificates.

use calybris_budget::{BudgetEngine, BudgetSnapshot, TenantLedger};
use calybris_finance::{
    CertificateBaseline, CertificateError, Certifier, Total, ledger_digest, prove_conservation,
    prove_snapshot,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn row(id: &str, initial: i64, remaining: i64, reserved: i64, committed: i64) -> TenantLedger {
    TenantLedger {
        tenant_id: id.to_owned(),
        initial_microcents: initial,
        remaining_microcents: remaining,
        reserved_microcents: reserved,
        committed_microcents: committed,
    }
}

fn snapshot(version: u64, tenants: Vec<TenantLedger>) -> BudgetSnapshot {
    BudgetSnapshot {
        version,
        tenants,
        active_reservations: 0,
    }
}

#[test]
fn proof_of_a_live_engine_balances_and_binds_its_digest() -> TestResult {
    let engine = BudgetEngine::new();
    engine.ensure_tenant("b", 1_000)?;
    engine.ensure_tenant("a", 500)?;
    engine.try_reserve("a", 200)?.commit(150)?;
    let _open = engine.try_reserve("b", 300)?;
    let proof = prove_conservation(&engine, Some(77))?;
    assert!(proof.balanced);
    assert_eq!(proof.violations().count(), 0);
    assert_eq!(proof.active_reservations, 1);
    assert_eq!(proof.wal_high_watermark, Some(77));
    let ids: Vec<&str> = proof
        .tenants
        .iter()
        .map(|t| t.ledger.tenant_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(proof.totals.initial, Total::Exact(1_500));
    assert_eq!(proof.totals.remaining, Total::Exact(1_050));
    assert_eq!(proof.totals.reserved, Total::Exact(300));
    assert_eq!(proof.totals.committed, Total::Exact(150));
    assert!(proof.totals.all_fit());
    // The digest is that of the very snapshot the rows come from.
    let rebuilt = BudgetSnapshot {
        version: proof.snapshot_version,
        tenants: proof.tenants.iter().map(|t| t.ledger.clone()).collect(),
        active_reservations: proof.active_reservations,
    };
    assert_eq!(ledger_digest(&rebuilt, Some(77))?, proof.ledger_digest);
    Ok(())
}

#[test]
fn unbalanced_snapshot_yields_a_proof_that_says_so() -> TestResult {
    let broken = snapshot(4, vec![row("ok", 10, 10, 0, 0), row("bad", 10, 4, 0, 5)]);
    let proof = prove_snapshot(&broken, None)?;
    assert!(!proof.balanced);
    let violations: Vec<_> = proof.violations().collect();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].ledger.tenant_id, "bad");
    assert_eq!(violations[0].delta_microcents, -1);
    Ok(())
}

#[test]
fn totals_that_do_not_fit_are_reported_not_wrapped() -> TestResult {
    let big = snapshot(
        1,
        vec![
            row("a", i64::MAX, i64::MAX, 0, 0),
            row("b", i64::MAX, 0, 0, i64::MAX),
            row("c", 5, 0, 0, 5),
        ],
    );
    let proof = prove_snapshot(&big, None)?;
    assert!(proof.balanced);
    let expected = 2 * i128::from(i64::MAX) + 5;
    assert_eq!(
        proof.totals.initial,
        Total::DoesNotFit {
            exact_microcents: expected
        }
    );
    assert_eq!(proof.totals.initial.as_i64(), None);
    assert_eq!(proof.totals.remaining, Total::Exact(i64::MAX));
    assert_eq!(
        proof.totals.committed.exact_microcents(),
        i128::from(i64::MAX) + 5
    );
    assert!(!proof.totals.all_fit());
    Ok(())
}

#[test]
fn certificates_carry_spend_since_the_previous_one() -> TestResult {
    let engine = BudgetEngine::new();
    engine.ensure_tenant("a", 1_000)?;
    let certifier = Certifier::new();
    engine.try_reserve("a", 100)?.commit(60)?;
    let first = certifier.certify_engine(&engine, None)?;
    assert_eq!(first.sequence, 1);
    assert_eq!(first.baseline_committed, Total::Exact(0));
    assert_eq!(first.committed_since_previous, Total::Exact(60));
    let second = certifier.certify_engine(&engine, Some(3))?;
    assert_eq!(second.sequence, 2);
    assert_eq!(second.committed_since_previous, Total::Exact(0));
    engine.try_reserve("a", 100)?.commit(100)?;
    engine.try_reserve("a", 10)?.commit(1)?;
    let third = certifier.certify_engine(&engine, None)?;
    assert_eq!(third.baseline_committed, Total::Exact(60));
    assert_eq!(third.committed_since_previous, Total::Exact(101));
    assert_eq!(third.proof.totals.committed, Total::Exact(161));
    Ok(())
}

#[test]
fn stale_or_backward_snapshots_are_refused_and_keep_the_baseline() -> TestResult {
    let certifier = Certifier::new();
    certifier.certify(&snapshot(5, vec![row("a", 100, 40, 0, 60)]), None)?;
    let before = certifier.baseline();
    let stale = certifier.certify(&snapshot(5, vec![row("a", 100, 30, 0, 70)]), None);
    assert_eq!(
        stale.err(),
        Some(CertificateError::StaleSnapshot {
            version: 5,
            previous_version: 5
        })
    );
    let backwards = certifier.certify(&snapshot(6, vec![row("a", 100, 50, 0, 50)]), None);
    assert_eq!(
        backwards.err(),
        Some(CertificateError::SpendWentBackwards {
            committed_microcents: 50,
            baseline_microcents: 60
        })
    );
    let unbalanced = certifier.certify(&snapshot(7, vec![row("a", 100, 50, 0, 70)]), None);
    assert!(matches!(
        unbalanced,
        Err(CertificateError::Unbalanced { ref proof }) if !proof.balanced
    ));
    assert_eq!(certifier.baseline(), before);
    let next = certifier.certify(&snapshot(8, vec![row("a", 100, 30, 0, 70)]), None)?;
    assert_eq!(next.committed_since_previous, Total::Exact(10));
    Ok(())
}

#[test]
fn a_resumed_certifier_continues_the_baseline() -> TestResult {
    let certifier = Certifier::new();
    let last = certifier.certify(&snapshot(2, vec![row("a", 100, 80, 0, 20)]), None)?;
    let resumed = Certifier::resume(CertificateBaseline::after(&last));
    assert_eq!(resumed.baseline(), certifier.baseline());
    let next = resumed.certify(&snapshot(3, vec![row("a", 100, 75, 0, 25)]), None)?;
    assert_eq!(next.sequence, 2);
    assert_eq!(next.committed_since_previous, Total::Exact(5));
    Ok(())
}

#[test]
fn spend_since_previous_that_does_not_fit_is_reported() -> TestResult {
    let certifier = Certifier::new();
    let huge = snapshot(
        1,
        vec![row("a", i64::MAX, 0, 0, i64::MAX), row("b", 9, 0, 0, 9)],
    );
    let certificate = certifier.certify(&huge, None)?;
    assert_eq!(
        certificate.committed_since_previous,
        Total::DoesNotFit {
            exact_microcents: i128::from(i64::MAX) + 9
        }
    );
    Ok(())
}
