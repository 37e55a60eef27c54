//! The borrowed, allocation-free policy view, runnable without the `alloc` feature: a
//! static catalog, every request-level refusal, and replay.

use calybris_kernel::{
    KernelAction, KernelInput, KernelModel, KernelReason, PolicyParams, PolicyView,
};

const fn model(model_id: u32, provider_id: u16, quality_bps: u16, price: u64) -> KernelModel {
    KernelModel {
        model_id,
        provider_id,
        quality_bps,
        risk_ceiling_bps: 6_000,
        enabled: 1,
        p95_latency_ms: 200,
        capabilities: 0b11,
        region_mask: 0b01,
        input_cost_microunits_per_million_tokens: price,
        output_cost_microunits_per_million_tokens: price * 3,
    }
}

static CATALOG: [KernelModel; 3] = [
    model(1, 0, 9_000, 5_000_000),
    model(2, 1, 8_000, 500_000),
    model(3, 2, 6_000, 100_000),
];

fn params() -> PolicyParams {
    PolicyParams {
        hard_risk_limit_bps: 7_000,
        minimum_confidence_bps: 3_000,
        risk_penalty_multiplier_bps: 10_000,
        latency_penalty_microunits_per_ms: 1,
        ..PolicyParams::default()
    }
}

fn request() -> KernelInput {
    KernelInput {
        requested_model_id: 1,
        input_tokens: 1_000,
        output_tokens: 1_000,
        business_value_microunits: 100_000,
        confidence_bps: 9_000,
        ..KernelInput::default()
    }
}

#[test]
fn a_static_catalog_decides_and_replays() {
    let view = PolicyView::try_new(params(), &CATALOG).expect("valid");
    let d = view.prescribe(request());
    // Candidate 2: 90_000*8_000/10_000 = 72_000 - 2_000 cost - 200 latency = 69_800,
    // beats 1 (81_000 - 20_000 - 200) and 3 (54_000 - 400 - 200).
    assert_eq!(
        (d.action, d.selected_model_id, d.selected_model_index),
        (KernelAction::Substitute, 2, 1)
    );
    assert_eq!(
        (d.expected_utility_microunits, d.estimated_cost_microunits),
        (69_800, 2_000)
    );
    assert_eq!(
        (
            d.counterfactual_model_id,
            d.counterfactual_utility_microunits
        ),
        (1, 60_800)
    );
    assert_eq!((d.evaluated_models, d.eligible_models), (3, 3));
    assert!(view.verify_decision(request(), &d).is_ok());
    assert_eq!(view.utility_for_model(request(), 3), Some(53_400));
}

#[test]
fn request_level_refusals_evaluate_nothing() {
    let view = PolicyView::try_new(params(), &CATALOG).expect("valid");
    let risky = view.prescribe_with_trace(KernelInput {
        risk_bps: 7_000,
        ..request()
    });
    assert_eq!(
        (
            risky.0.reason,
            risky.0.evaluated_models,
            risky.1.rejections.total()
        ),
        (KernelReason::RiskHardLimit, 0, 0)
    );
    let unsure = view.prescribe(KernelInput {
        confidence_bps: 2_999,
        ..request()
    });
    assert_eq!(unsure.reason, KernelReason::ConfidenceHardLimit);
    assert_eq!(
        view.utility_for_model(
            KernelInput {
                risk_bps: 9_000,
                ..request()
            },
            1
        ),
        None
    );
}

#[test]
fn the_dominant_gate_names_the_rejection() {
    let view = PolicyView::try_new(params(), &CATALOG).expect("valid");
    let d = view.prescribe_with_trace(KernelInput {
        required_region_mask: 0b10,
        ..request()
    });
    assert_eq!(
        (d.0.action, d.0.reason, d.1.rejections.region),
        (KernelAction::Reject, KernelReason::RegionConstraint, 3)
    );
    // One over budget, two below quality: quality dominates.
    let d = view.prescribe(KernelInput {
        minimum_quality_bps: 8_500,
        budget_limit_microunits: 1_000,
        ..request()
    });
    assert_eq!(d.reason, KernelReason::QualityConstraint);
    // The mask allows provider 1 only: provider bars candidates 1 and 3, budget bars 2.
    let d = view.prescribe(KernelInput {
        allowed_provider_mask: 0b10,
        budget_limit_microunits: 10,
        ..request()
    });
    assert_eq!(d.reason, KernelReason::ProviderConstraint);
    // One each: candidate 1 over budget, 2 barred by provider, 3 below quality. In a tie
    // the gate later in the tie order wins, and budget comes after quality and provider.
    let d = view.prescribe(KernelInput {
        budget_limit_microunits: 1_000,
        minimum_quality_bps: 7_000,
        allowed_provider_mask: 0b101,
        ..request()
    });
    assert_eq!(d.reason, KernelReason::BudgetConstraint);
}
