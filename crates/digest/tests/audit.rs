//! Audit bundles and outcome records: fail-closed verification, and the self- and
//! cross-checks of an outcome.

#![cfg(feature = "alloc")]

use calybris_digest::{
    AuditError, DecisionIdentity, Disposition, IdentityField, Observation, Outcome, OutcomeError,
    SealedPolicy, Selection, decision_digest, input_digest, policy_digest,
};
use calybris_kernel::{DecisionField, KernelDecision, KernelInput, KernelModel, PolicySnapshot};

fn policy() -> SealedPolicy {
    let m = |model_id, quality_bps| KernelModel {
        model_id,
        provider_id: 0,
        quality_bps,
        risk_ceiling_bps: 9_000,
        enabled: 1,
        p95_latency_ms: 100,
        capabilities: 0,
        region_mask: 1,
        input_cost_microunits_per_million_tokens: 1_000_000,
        output_cost_microunits_per_million_tokens: 2_000_000,
    };
    SealedPolicy::new(
        PolicySnapshot::builder()
            .policy_epoch(4)
            .catalog_epoch(5)
            .models([m(1, 9_000), m(2, 7_000)])
            .build()
            .expect("valid"),
    )
}

fn input() -> KernelInput {
    KernelInput {
        request_sequence: 9,
        requested_model_id: 2,
        input_tokens: 1_000,
        output_tokens: 100,
        business_value_microunits: 100_000,
        ..KernelInput::default()
    }
}

#[test]
fn bundles_bind_the_three_digests_and_fail_closed() {
    let p = policy();
    let d = p.prescribe(input());
    let b = p.verified_audit_bundle(input(), &d).expect("replays");
    assert_eq!(
        (b.policy_digest, b.input_digest, b.decision_digest),
        (
            policy_digest(&p),
            input_digest(&input()),
            decision_digest(&d)
        )
    );
    assert_eq!(
        (b.policy_epoch, b.catalog_epoch, b.replay_valid),
        (4, 5, true)
    );

    let forged = KernelDecision {
        counterfactual_utility_microunits: d.counterfactual_utility_microunits + 1,
        ..d
    };
    match p.verified_audit_bundle(input(), &forged) {
        Err(AuditError::DoesNotReplay(m)) => {
            assert_eq!(m.field, DecisionField::CounterfactualUtilityMicrounits)
        }
        other => panic!("a forged decision was bundled: {other:?}"),
    }
    let lenient = p.audit_bundle(input(), &forged);
    assert!(!lenient.replay_valid);
    assert_ne!(lenient.decision_digest, b.decision_digest);
    // The borrowed form gives the same bundle.
    assert_eq!(
        calybris_digest::audit_bundle_with(&p.view(), p.digest(), input(), &d),
        b
    );
}

#[test]
fn outcomes_are_checked_against_themselves_and_their_decision() {
    let p = policy();
    let d = p.prescribe(input());
    let measured = Observation {
        realized_cost_microunits: Some(1_150),
        realized_latency_ms: Some(90),
        succeeded: Some(true),
    };
    let applied = Outcome {
        identity: DecisionIdentity::of(*p.digest(), &input(), &d),
        observed_at_micros: 1_700_000_000_000_000,
        revision: 0,
        selection: Selection::followed(&d),
        disposition: Disposition::Applied,
        observation: measured,
    };
    assert_eq!(applied.validate_against(*p.digest(), &input(), &d), Ok(()));
    assert_eq!(
        Outcome {
            observation: Observation::default(),
            ..applied
        }
        .validate(),
        Err(OutcomeError::EmptyObservation)
    );
    assert_eq!(
        Outcome {
            disposition: Disposition::Abandoned,
            ..applied
        }
        .validate(),
        Err(OutcomeError::ObservationOnAbandoned)
    );
    assert_eq!(
        Outcome {
            disposition: Disposition::InFlight,
            ..applied
        }
        .validate(),
        Err(OutcomeError::CompletedInFlight)
    );
    assert_eq!(
        Selection::explored(2, 0).validate(),
        Err(OutcomeError::PropensityOutOfRange(0))
    );
    assert_eq!(
        Selection {
            propensity_bps: Some(9_000),
            ..Selection::followed(&d)
        }
        .validate(),
        Err(OutcomeError::DeterministicPropensity(9_000))
    );
    assert_eq!(
        Selection {
            propensity_bps: Some(1),
            ..Selection::human(2)
        }
        .validate(),
        Err(OutcomeError::UnknowablePropensity)
    );
    let other_input = KernelInput {
        request_sequence: 10,
        ..input()
    };
    assert_eq!(
        applied.validate_against(*p.digest(), &other_input, &d),
        Err(OutcomeError::IdentityMismatch(IdentityField::InputDigest))
    );
    let wrong_model = Outcome {
        selection: Selection {
            acted_model_id: 99,
            ..Selection::followed(&d)
        },
        ..applied
    };
    assert_eq!(
        wrong_model.validate_against(*p.digest(), &input(), &d),
        Err(OutcomeError::ActedModelNotSelected {
            acted: 99,
            selected: d.selected_model_id
        })
    );
    // Every field enters the outcome digest.
    assert_ne!(
        applied.digest(),
        Outcome {
            revision: 1,
            ..applied
        }
        .digest()
    );
    assert_ne!(
        applied.digest(),
        Outcome {
            observation: Observation {
                succeeded: Some(false),
                ..measured
            },
            ..applied
        }
        .digest()
    );
}
