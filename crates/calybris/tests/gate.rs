//! The facade's `gate` module is `calybris-gate`, re-exported: a smoke test that the
//! re-export and the prelude work together (the gate's own tests are in
//! `crates/gate/tests/`).

use calybris::gate::{BudgetOutcome, VerifyOptions, verify_dir};
use calybris::prelude::*;

fn policy() -> SealedPolicy {
    let model = KernelModel {
        model_id: 1,
        provider_id: 0,
        quality_bps: 9_000,
        risk_ceiling_bps: 9_000,
        enabled: 1,
        p95_latency_ms: 300,
        capabilities: 0,
        region_mask: 0b1,
        input_cost_microunits_per_million_tokens: 2_000_000,
        output_cost_microunits_per_million_tokens: 8_000_000,
    };
    SealedPolicy::new(
        PolicySnapshot::builder()
            .model(model)
            .build()
            .expect("valid policy"),
    )
}

#[test]
fn the_reexported_gate_decides_settles_and_verifies() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("calybris-facade-gate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 20,000 microunits; the request costs 12,000 (2,000 tokens in, 1,000 out).
    let gate: Gate = Gate::open(GateConfig::new(&dir, policy()).tenant("acme", 20_000))?;
    let request = KernelInput {
        request_sequence: 1,
        requested_model_id: 1,
        input_tokens: 2_000,
        output_tokens: 1_000,
        business_value_microunits: 50_000,
        ..KernelInput::default()
    };
    let first: Admission = gate.decide("acme", request)?;
    assert_eq!(
        first.budget(),
        BudgetOutcome::Reserved {
            amount_microunits: 12_000
        }
    );
    let second = gate.decide("acme", request)?;
    assert!(!second.is_admitted());
    gate.settle(first, 11_000)?;
    drop(second);
    let closed: Result<_, GateError> = gate.close();
    closed?;

    let report = verify_dir(&dir, &VerifyOptions::default())?;
    assert_eq!(report.counts.decisions, 2);
    assert_eq!(report.counts.refused_by_budget, 1);
    assert_eq!(report.tenants.len(), 1);
    assert_eq!(report.tenants[0].committed_microunits, 11_000);
    assert_eq!(report.tenants[0].remaining_microunits, 9_000);
    assert!(report.conservation.balanced);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
