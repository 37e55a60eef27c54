//! Every policy and request validation rule refuses with a typed error naming the field,
//! and nothing is clamped.

#![cfg(feature = "alloc")]

use calybris_kernel::{
    InputError, KernelInput, KernelModel, PolicyError, PolicyParams, PolicySnapshot, PolicyView,
};

fn model(model_id: u32) -> KernelModel {
    KernelModel {
        model_id,
        provider_id: 1,
        quality_bps: 8_000,
        risk_ceiling_bps: 5_000,
        enabled: 1,
        p95_latency_ms: 100,
        capabilities: 1,
        region_mask: 1,
        input_cost_microunits_per_million_tokens: 1_000_000,
        output_cost_microunits_per_million_tokens: 2_000_000,
    }
}

fn build(params: PolicyParams, models: Vec<KernelModel>) -> Result<PolicySnapshot, PolicyError> {
    PolicySnapshot::from_params(params, models)
}

#[test]
fn catalog_rules_are_enforced() {
    let p = PolicyParams::default();
    assert_eq!(build(p, vec![]), Err(PolicyError::EmptyCatalog));
    assert_eq!(
        build(p, vec![model(1), model(0)]),
        Err(PolicyError::ReservedModelId { position: 1 })
    );
    assert_eq!(
        build(p, vec![model(4), model(2), model(4)]),
        Err(PolicyError::DuplicateModelId { model_id: 4 })
    );
    assert_eq!(
        build(
            p,
            vec![KernelModel {
                enabled: 2,
                ..model(3)
            }]
        ),
        Err(PolicyError::InvalidEnabled {
            model_id: 3,
            value: 2
        })
    );
    assert_eq!(
        build(
            p,
            vec![
                KernelModel {
                    enabled: 0,
                    ..model(3)
                },
                KernelModel {
                    enabled: 0,
                    ..model(5)
                }
            ]
        ),
        Err(PolicyError::NoEnabledModel)
    );
    assert_eq!(
        build(
            p,
            vec![KernelModel {
                quality_bps: 10_001,
                ..model(3)
            }]
        ),
        Err(PolicyError::ModelBpsOutOfRange {
            model_id: 3,
            field: "quality_bps",
            value: 10_001,
            max: 10_000
        })
    );
    assert_eq!(
        build(
            p,
            vec![KernelModel {
                risk_ceiling_bps: u16::MAX,
                ..model(3)
            }]
        ),
        Err(PolicyError::ModelBpsOutOfRange {
            model_id: 3,
            field: "risk_ceiling_bps",
            value: u16::MAX,
            max: 10_000
        })
    );
    assert_eq!(
        build(
            p,
            vec![KernelModel {
                provider_id: 64,
                ..model(3)
            }]
        ),
        Err(PolicyError::ProviderOutOfRange {
            model_id: 3,
            provider_id: 64
        })
    );
    let too_many: Vec<_> = (1..=65_536).map(model).collect();
    assert_eq!(
        build(p, too_many),
        Err(PolicyError::TooManyModels { count: 65_536 })
    );
    // Boundaries are accepted.
    let edge = KernelModel {
        quality_bps: 10_000,
        risk_ceiling_bps: 10_000,
        provider_id: 63,
        model_id: u32::MAX,
        ..model(1)
    };
    assert!(build(p, vec![edge]).is_ok());
}

#[test]
fn policy_scalars_are_bounded() {
    let cases = [
        (
            PolicyParams {
                hard_risk_limit_bps: 10_001,
                ..PolicyParams::default()
            },
            "hard_risk_limit_bps",
            10_001,
            10_000,
        ),
        (
            PolicyParams {
                minimum_confidence_bps: 20_000,
                ..PolicyParams::default()
            },
            "minimum_confidence_bps",
            20_000,
            10_000,
        ),
        (
            PolicyParams {
                risk_penalty_multiplier_bps: 50_001,
                ..PolicyParams::default()
            },
            "risk_penalty_multiplier_bps",
            50_001,
            50_000,
        ),
    ];
    for (params, field, value, max) in cases {
        assert_eq!(
            build(params, vec![model(1)]),
            Err(PolicyError::PolicyBpsOutOfRange { field, value, max })
        );
    }
    let edge = PolicyParams {
        risk_penalty_multiplier_bps: 50_000,
        hard_risk_limit_bps: 10_000,
        minimum_confidence_bps: 10_000,
        ..PolicyParams::default()
    };
    assert!(build(edge, vec![model(1)]).is_ok());
}

#[test]
fn borrowed_views_must_be_sorted() {
    let catalog = [model(2), model(1)];
    assert_eq!(
        PolicyView::try_new(PolicyParams::default(), &catalog).err(),
        Some(PolicyError::NotSorted { position: 1 })
    );
    let twins = [model(2), model(2)];
    assert_eq!(
        PolicyView::try_new(PolicyParams::default(), &twins).err(),
        Some(PolicyError::DuplicateModelId { model_id: 2 })
    );
}

#[test]
fn builder_names_fields_and_sorts() {
    let snapshot = PolicySnapshot::builder()
        .policy_epoch(7)
        .catalog_epoch(9)
        .hard_risk_limit_bps(9_000)
        .minimum_confidence_bps(100)
        .risk_penalty_multiplier_bps(20_000)
        .latency_penalty_microunits_per_ms(3)
        .models([model(9), model(4)])
        .model(model(6))
        .build()
        .expect("valid");
    assert_eq!(
        snapshot
            .models()
            .iter()
            .map(|m| m.model_id)
            .collect::<Vec<_>>(),
        [4, 6, 9]
    );
    assert_eq!(
        *snapshot.params(),
        PolicyParams {
            policy_epoch: 7,
            catalog_epoch: 9,
            hard_risk_limit_bps: 9_000,
            minimum_confidence_bps: 100,
            risk_penalty_multiplier_bps: 20_000,
            latency_penalty_microunits_per_ms: 3,
        }
    );
}

#[test]
fn checked_entry_points_refuse_out_of_range_requests() {
    let snapshot = build(PolicyParams::default(), vec![model(1)]).expect("valid");
    for (field, input) in [
        (
            "risk_bps",
            KernelInput {
                risk_bps: 10_001,
                ..KernelInput::default()
            },
        ),
        (
            "confidence_bps",
            KernelInput {
                confidence_bps: u16::MAX,
                ..KernelInput::default()
            },
        ),
        (
            "minimum_quality_bps",
            KernelInput {
                minimum_quality_bps: 10_001,
                ..KernelInput::default()
            },
        ),
    ] {
        let expected = InputError::BpsOutOfRange {
            field,
            value: match field {
                "risk_bps" => input.risk_bps,
                "confidence_bps" => input.confidence_bps,
                _ => input.minimum_quality_bps,
            },
            max: 10_000,
        };
        assert_eq!(snapshot.prescribe_checked(input), Err(expected));
        assert_eq!(snapshot.view().prescribe_checked(input), Err(expected));
        assert_eq!(
            snapshot.prescribe_batch_checked(&[KernelInput::default(), input]),
            Err(expected)
        );
        // The unchecked path still decides, and never panics.
        let _ = snapshot.prescribe(input);
    }
    assert!(snapshot.prescribe_checked(KernelInput::default()).is_ok());
}

#[test]
fn errors_render_as_one_line_naming_the_field() {
    let e = build(
        PolicyParams::default(),
        vec![KernelModel {
            quality_bps: 10_001,
            ..model(3)
        }],
    )
    .expect_err("invalid");
    let text = e.to_string();
    assert!(
        text.contains("quality_bps") && text.contains("10001") && !text.contains('\n'),
        "{text}"
    );
}
