//! Proofs and certificates round-trip through JSON, and what comes back still
//! checks against the books it describes.

use calybris_budget::{BudgetEngine, BudgetSnapshot, TenantLedger};
use calybris_finance::{
    CertificateBaseline, Certifier, ConservationProof, FinancialCertificate, LedgerDigest, Total,
    Totals, ledger_digest, prove_conservation, prove_snapshot,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn engine() -> Result<BudgetEngine, Box<dyn std::error::Error>> {
    let engine = BudgetEngine::new();
    engine.ensure_tenant("acme", 10_000)?;
    engine.ensure_tenant("globex", 4_000)?;
    engine
        .try_reserve("acme", 2_500)?
        .commit(1_200)
        .map_err(|refused| refused.error)?;
    let _parked = engine.try_reserve("globex", 300)?.into_id();
    Ok(engine)
}

#[test]
fn a_conservation_proof_round_trips_and_its_digest_still_matches() -> TestResult {
    let engine = engine()?;
    let snapshot = engine.snapshot();
    let proof = prove_snapshot(&snapshot, Some(42))?;
    assert_eq!(prove_conservation(&engine, Some(42))?.totals, proof.totals);
    let text = serde_json::to_string(&proof)?;
    let back: ConservationProof = serde_json::from_str(&text)?;
    assert_eq!(back, proof);
    assert!(back.balanced);
    assert_eq!(back.wal_high_watermark, Some(42));
    assert_eq!(back.totals.committed, Total::Exact(1_200));
    assert_eq!(back.totals.reserved, Total::Exact(300));
    assert_eq!(back.ledger_digest, ledger_digest(&snapshot, Some(42))?);

    let rows: Vec<TenantLedger> = back.tenants.iter().map(|t| t.ledger.clone()).collect();
    let rebuilt = BudgetSnapshot {
        version: back.snapshot_version,
        tenants: rows,
        active_reservations: back.active_reservations,
    };
    assert_eq!(prove_snapshot(&rebuilt, Some(42))?, proof);
    Ok(())
}

#[test]
fn a_certificate_round_trips_and_resumes_its_certifier() -> TestResult {
    let engine = engine()?;
    let certifier = Certifier::new();
    let first = certifier.certify_engine(&engine, None)?;
    let text = serde_json::to_string(&first)?;
    let back: FinancialCertificate = serde_json::from_str(&text)?;
    assert_eq!(back, first);
    assert_eq!(back.sequence, 1);
    assert_eq!(back.committed_since_previous, Total::Exact(1_200));

    let baseline = CertificateBaseline::after(&back);
    let baseline: CertificateBaseline = serde_json::from_str(&serde_json::to_string(&baseline)?)?;
    let resumed = Certifier::resume(baseline);
    engine
        .try_reserve("globex", 100)?
        .commit(100)
        .map_err(|refused| refused.error)?;
    let second = resumed.certify_engine(&engine, None)?;
    assert_eq!(second.sequence, 2);
    assert_eq!(second.committed_since_previous, Total::Exact(100));
    Ok(())
}

#[test]
fn a_total_that_does_not_fit_keeps_its_exact_value() -> TestResult {
    let huge = i128::from(i64::MAX) * 3;
    let totals = Totals {
        initial: Total::from_exact(huge),
        remaining: Total::Exact(-5),
        reserved: Total::Exact(0),
        committed: Total::from_exact(huge - 5),
    };
    let back: Totals = serde_json::from_str(&serde_json::to_string(&totals)?)?;
    assert_eq!(back, totals);
    assert_eq!(back.initial.exact_microcents(), huge);
    assert!(!back.all_fit());

    let digest = LedgerDigest([7; 32]);
    let back: LedgerDigest = serde_json::from_str(&serde_json::to_string(&digest)?)?;
    assert_eq!(back, digest);
    Ok(())
}
