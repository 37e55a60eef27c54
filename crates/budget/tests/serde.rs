//! The result types round-trip through JSON with the field names a reader expects.

use calybris_budget::{BudgetEngine, BudgetSnapshot, Settlement, TenantLedger, TenantLimits};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn snapshot_and_settlement_round_trip_through_json() -> TestResult {
    let engine = BudgetEngine::new();
    engine.ensure_tenant("acme", 1_000)?;
    engine.ensure_tenant("globex", 500)?;
    let held = engine.try_reserve("acme", 300)?;
    let settlement = held.commit(120).map_err(|refused| refused.error)?;
    let _open = engine.try_reserve("globex", 50)?;
    let snapshot = engine.snapshot();

    let text = serde_json::to_string(&snapshot)?;
    let back: BudgetSnapshot = serde_json::from_str(&text)?;
    assert_eq!(back, snapshot);
    assert_eq!(back.active_reservations, 1);
    back.verify_conservation()?;

    let value: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(value["tenants"][0]["tenant_id"], "acme");
    assert_eq!(value["tenants"][0]["committed_microcents"], 120);
    assert_eq!(value["tenants"][1]["reserved_microcents"], 50);

    let text = serde_json::to_string(&settlement)?;
    let back: Settlement = serde_json::from_str(&text)?;
    assert_eq!(back, settlement);
    assert_eq!(back.committed_microcents, 120);
    assert_eq!(back.refunded_microcents, 180);
    Ok(())
}

#[test]
fn a_broken_row_survives_the_round_trip_and_still_fails_its_check() -> TestResult {
    let row = TenantLedger {
        tenant_id: "t".into(),
        initial_microcents: 10,
        remaining_microcents: 5,
        reserved_microcents: 0,
        committed_microcents: 6,
    };
    let back: TenantLedger = serde_json::from_str(&serde_json::to_string(&row)?)?;
    assert_eq!(back.conservation_delta_microcents(), 1);
    let violation = BudgetSnapshot {
        version: 1,
        tenants: vec![back],
        active_reservations: 0,
    }
    .verify_conservation()
    .err()
    .ok_or("the broken row passed")?;
    let text = serde_json::to_string(&violation)?;
    assert_eq!(text, r#"{"tenant_id":"t","delta_microcents":1}"#);

    let limits = TenantLimits {
        max_reserved_microcents: Some(7),
        max_active_reservations: None,
    };
    let back: TenantLimits = serde_json::from_str(&serde_json::to_string(&limits)?)?;
    assert_eq!(back, limits);
    Ok(())
}
