//! Execution and lease-refusal records: bound to a decision, bounded, folded as no-ops.

use calybris_digest::{Digest, SealedPolicy};
use calybris_gate::{
    DecisionRef, ExecutionAttempt, ExecutionRecord, ExecutionStatus, Gate, GateConfig, GateError,
    LeaseRefusal, MAX_EXECUTION_ATTEMPTS, VerifyError, VerifyOptions, verify_dir,
};
use calybris_kernel::{KernelInput, KernelModel, PolicySnapshot};

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
            .expect("policy"),
    )
}

fn dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("calybris-gate-exec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn input() -> KernelInput {
    KernelInput {
        request_sequence: 1,
        requested_model_id: 1,
        input_tokens: 2_000,
        output_tokens: 1_000,
        business_value_microunits: 50_000,
        ..KernelInput::default()
    }
}

fn execution(attempts: usize) -> ExecutionRecord {
    ExecutionRecord {
        decision_sequence: 0,
        decision_digest: Digest::default(),
        provider: "p".into(),
        model: "m".into(),
        request_sha256: [1; 32],
        response_sha256: [2; 32],
        latency_ms: 5,
        status: ExecutionStatus::Served,
        http_status: 200,
        input_tokens: 2_000,
        output_tokens: 900,
        cost_microunits: 11_200,
        attempts: (0..attempts)
            .map(|_| ExecutionAttempt {
                provider: "p".into(),
                model: "m".into(),
                http_status: 200,
                success: true,
                latency_ms: 5,
                skipped: None,
            })
            .collect(),
    }
}

#[test]
fn an_execution_bound_to_its_decision_verifies_and_changes_no_books() {
    let dir = dir("good");
    let gate = Gate::open(GateConfig::new(&dir, policy()).tenant("acme", 20_000)).expect("open");
    let admission = gate.decide("acme", input()).expect("decide");
    let decision = admission.decision_ref();
    gate.settle(admission, 11_200).expect("settle");
    gate.record_execution(decision, execution(2))
        .expect("execution")
        .wait()
        .expect("durable");
    // A second attempt at the same decision that no provider served.
    let failed = ExecutionRecord {
        status: ExecutionStatus::ProviderFailed,
        ..execution(1)
    };
    gate.record_execution(decision, failed)
        .expect("failed execution")
        .wait()
        .expect("durable");
    let refusal = LeaseRefusal {
        tenant: "acme".into(),
        request_id: [3; 16],
        recorded_at_unix_ms: 1,
        lease_id: String::new(),
        issued_by: String::new(),
        reason: "missing".into(),
    };
    gate.record_lease_refusal(refusal.clone())
        .expect("refusal")
        .wait()
        .expect("durable");
    let too_long = LeaseRefusal {
        reason: "x".repeat(300),
        ..refusal
    };
    assert!(matches!(
        gate.record_lease_refusal(too_long),
        Err(GateError::RecordOutOfBounds { .. })
    ));
    // A skipped attempt is one that was never called: no success, no HTTP status.
    let mut skipped_but_served = execution(1);
    skipped_but_served.attempts[0].skipped = Some(calybris_gate::AttemptSkip::CircuitOpen);
    assert!(matches!(
        gate.record_execution(decision, skipped_but_served),
        Err(GateError::RecordOutOfBounds { .. })
    ));
    let mut skipped = execution(2);
    skipped.attempts[0].skipped = Some(calybris_gate::AttemptSkip::LocalSlotBusy);
    skipped.attempts[0].success = false;
    skipped.attempts[0].http_status = 0;
    assert!(skipped.within_bounds());
    assert_eq!(
        calybris_gate::AttemptSkip::LocalSlotBusy.as_str(),
        "skipped: local slot busy"
    );
    assert!(matches!(
        gate.record_execution(decision, execution(MAX_EXECUTION_ATTEMPTS + 1)),
        Err(GateError::RecordOutOfBounds { .. })
    ));
    gate.close().expect("close");
    let report = verify_dir(&dir, &VerifyOptions::default()).expect("verifies");
    assert_eq!(report.counts.executions, 2);
    assert_eq!(report.counts.executions_served, 1);
    assert_eq!(report.counts.lease_refusals, 1);
    assert_eq!(report.tenants[0].committed_microunits, 11_200);
    assert!(report.conservation.balanced);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_execution_naming_no_decision_or_the_wrong_digest_is_refused_by_the_verifier() {
    for wrong_digest in [false, true] {
        let dir = dir(if wrong_digest { "digest" } else { "unknown" });
        let gate =
            Gate::open(GateConfig::new(&dir, policy()).tenant("acme", 20_000)).expect("open");
        let admission = gate.decide("acme", input()).expect("decide");
        let real = admission.decision_ref();
        gate.release(admission).expect("release");
        let bogus = if wrong_digest {
            DecisionRef {
                sequence: real.sequence,
                decision_digest: Digest::default(),
            }
        } else {
            DecisionRef {
                sequence: 0, // the header
                decision_digest: real.decision_digest,
            }
        };
        gate.record_execution(bogus, execution(1))
            .expect("written")
            .wait()
            .expect("durable");
        gate.close().expect("close");
        let error = verify_dir(&dir, &VerifyOptions::default()).expect_err("refused");
        if wrong_digest {
            assert!(
                matches!(error, VerifyError::ExecutionDigestMismatch { .. }),
                "{error}"
            );
        } else {
            assert!(
                matches!(error, VerifyError::ExecutionUnknownDecision { .. }),
                "{error}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
