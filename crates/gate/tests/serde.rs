//! The verifier's report and a settlement round-trip through JSON, so a service can
//! send them elsewhere; the ticket of a settlement stays in the process.

mod common;

use calybris_gate::{
    BudgetOutcome, Gate, GateConfig, GateReport, RecordCounts, Settled, TenantBooks, VerifyOptions,
    verify_dir,
};
use common::{TempDir, policy, request};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn round_trip<T>(value: &T) -> Result<T, serde_json::Error>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    serde_json::from_str(&serde_json::to_string(value)?)
}

#[test]
fn a_report_and_a_settlement_round_trip() -> TestResult {
    let dir = TempDir::new("serde");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("acme", 1_000_000))?;
    let admission = gate.decide("acme", request(0, 1))?;
    let BudgetOutcome::Reserved { amount_microunits } = admission.budget() else {
        return Err(format!("expected a reservation, got {:?}", admission.budget()).into());
    };
    assert_eq!(round_trip(&admission.budget())?, admission.budget());
    let settled = gate.settle(admission, amount_microunits - 5)?;
    assert!(settled.ticket.is_some());
    let value = serde_json::to_value(&settled)?;
    assert!(
        value.get("ticket").is_none(),
        "the ticket is not serialized"
    );
    let back: Settled = serde_json::from_value(value)?;
    assert!(back.ticket.is_none());
    assert_eq!(back.log_sequence, settled.log_sequence);
    assert_eq!(back.committed_microunits, amount_microunits - 5);
    assert_eq!(back.refunded_microunits, 5);
    let kept = gate.decide("acme", request(1, 2))?.into_reservation_id();
    assert!(kept.is_some(), "the second decision holds its cost");
    gate.close()?;

    let report = verify_dir(&dir.0, &VerifyOptions::default())?;
    let back: GateReport = round_trip(&report)?;
    assert_eq!(back, report);
    assert_eq!(back.counts.decisions, 2);
    assert_eq!(back.counts.settlements, 1);
    assert_eq!(back.open_holds, 1);
    let books: &TenantBooks = back.tenants.first().ok_or("one tenant")?;
    assert_eq!(books.tenant, "acme");
    assert_eq!(books.committed_microunits, (amount_microunits - 5) as i64);
    assert!(back.conservation.balanced);
    Ok(())
}

#[test]
fn record_counts_keep_their_field_names() -> TestResult {
    let counts = RecordCounts {
        decisions: 3,
        policy_names: 1,
        ..RecordCounts::default()
    };
    let value = serde_json::to_value(counts)?;
    assert_eq!(round_trip(&counts)?, counts);
    assert_eq!(value["decisions"], 3);
    assert_eq!(value["policy_names"], 1);
    assert_eq!(value["overruns"], 0);
    Ok(())
}
