//! The owned snapshot's structure-of-arrays evaluation (gate masks, reciprocal pricing,
//! bounds that skip whole blocks) against the scalar loop of the borrowed view over the
//! same catalog, on catalogs that straddle the 64-candidate blocks and on values at the
//! edges of every fast path: token counts around the reciprocal pricing's limit
//! (1_099_511), rates around multiples of 1e6, values around the narrow limits.
//! Decisions, traces, replays and the batch entry point must all agree.

#![cfg(feature = "alloc")]

use calybris_kernel::{KernelDecision, KernelInput, KernelModel, PolicyParams, PolicySnapshot};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

/// Catalogs up to four blocks long natively; just past one block under Miri, which is
/// slow.
const MAX_CATALOG: usize = if cfg!(miri) { 70 } else { 200 };

/// The reciprocal cost is exact up to this many tokens (`2^40 / 1e6`).
const FIXED_TOKENS_MAX: u32 = 1_099_511;

/// Rates of a catalog the reciprocal pricing covers (a multiplier fits in 64 bits).
fn tame_rate() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..20_000_000,
        1 => (0u64..40).prop_map(|k| k * 1_000_000),
        1 => (1u64..40).prop_map(|k| k * 1_000_000 - 1),
        1 => (1u64..40).prop_map(|k| k * 1_000_000 + 1),
        1 => Just(0),
    ]
}

/// Any rate, up to the extremes that force the wide path.
fn rate() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => tame_rate(),
        1 => (1u64 << 40)..(1u64 << 44),
        1 => any::<u64>(),
    ]
}

fn tokens() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..50_000,
        2 => (FIXED_TOKENS_MAX - 3)..(FIXED_TOKENS_MAX + 3),
        1 => Just(0),
        1 => any::<u32>(),
    ]
}

fn model(tame: bool) -> impl Strategy<Value = KernelModel> {
    let rate = move || {
        if tame {
            tame_rate().boxed()
        } else {
            rate().boxed()
        }
    };
    (
        (0u16..=63, 0u16..=10_000, 0u16..=10_000, 0u8..=1),
        (0u32..10_000, 0u64..16, 0u64..16),
        (rate(), rate()),
    )
        .prop_map(
            |(
                (provider_id, quality_bps, risk_ceiling_bps, enabled),
                (lat, caps, regions),
                (i, o),
            )| {
                KernelModel {
                    model_id: 0,
                    provider_id,
                    quality_bps,
                    risk_ceiling_bps,
                    enabled,
                    p95_latency_ms: lat,
                    capabilities: caps,
                    region_mask: regions,
                    input_cost_microunits_per_million_tokens: i,
                    output_cost_microunits_per_million_tokens: o,
                }
            },
        )
}

/// Catalogs of 1 to 199 candidates (up to four blocks), three in four of them with
/// rates the reciprocal pricing covers.
fn catalog() -> impl Strategy<Value = Vec<KernelModel>> {
    prop_oneof![3 => Just(true), 1 => Just(false)]
        .prop_flat_map(|tame| prop::collection::vec(model(tame), 1..MAX_CATALOG))
        .prop_map(|mut models| {
            for (k, m) in models.iter_mut().enumerate() {
                m.model_id = 1 + k as u32 * 3;
            }
            models[0].enabled = 1;
            models
        })
}

fn input(ids: Vec<u32>) -> impl Strategy<Value = KernelInput> {
    (
        (0usize..ids.len(), tokens(), tokens()),
        prop_oneof![
            3 => -1_000_000i64..5_000_000,
            1 => any::<i64>(),
            1 => (1i64 << 40)..(1i64 << 50),
        ],
        prop_oneof![3 => 0u64..2_000_000, 1 => Just(1), 1 => Just(u64::MAX)],
        (0u16..=10_000, 0u16..=10_000, 0u16..=10_000),
        (
            prop_oneof![Just(0u32), 0u32..12_000],
            0u64..16,
            prop_oneof![Just(u64::MAX), any::<u64>()],
            prop_oneof![Just(0u64), 0u64..16],
        ),
    )
        .prop_map(
            move |(
                (k, input_tokens, output_tokens),
                value,
                budget,
                (risk, confidence, quality),
                (latency, caps, providers, regions),
            )| KernelInput {
                request_sequence: k as u64,
                requested_model_id: ids[k],
                input_tokens,
                output_tokens,
                business_value_microunits: value,
                budget_limit_microunits: budget,
                risk_bps: risk,
                confidence_bps: confidence,
                minimum_quality_bps: quality,
                max_p95_latency_ms: latency,
                required_capabilities: caps,
                allowed_provider_mask: providers,
                required_region_mask: regions,
            },
        )
}

fn case() -> impl Strategy<Value = (PolicyParams, Vec<KernelModel>, Vec<KernelInput>)> {
    (
        (0u16..=10_000, 0u16..=5_000, 0u16..=50_000),
        prop_oneof![3 => 0u64..20, 1 => any::<u64>()],
        catalog(),
    )
        .prop_flat_map(|((hard, conf, mult), latency, models)| {
            let params = PolicyParams {
                policy_epoch: 9,
                catalog_epoch: 4,
                hard_risk_limit_bps: hard,
                minimum_confidence_bps: conf,
                risk_penalty_multiplier_bps: mult,
                latency_penalty_microunits_per_ms: latency,
            };
            let ids = models.iter().map(|m| m.model_id).collect::<Vec<_>>();
            (
                Just(params),
                Just(models),
                prop::collection::vec(input(ids), 1..if cfg!(miri) { 3 } else { 12 }),
            )
        })
}

#[test]
fn snapshot_masks_agree_with_the_scalar_view() {
    let seed: u64 = std::env::var("CALYBRIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x050A_5EED);
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(miri) { 2 } else { 300 });
    let mut runner = TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    });
    let selected = std::cell::Cell::new(0usize);
    let result = runner.run(&case(), |(params, models, inputs)| {
        let snapshot = PolicySnapshot::from_params(params, models).expect("valid");
        let view = snapshot.view();
        let mut batch = vec![snapshot.prescribe(inputs[0]); inputs.len()];
        prop_assert_eq!(
            snapshot.prescribe_batch_into(&inputs, &mut batch),
            inputs.len()
        );
        for (i, from_batch) in inputs.iter().zip(&batch) {
            let scalar: KernelDecision = view.prescribe(*i);
            let (ours, trace) = snapshot.prescribe_with_trace(*i);
            prop_assert_eq!(snapshot.prescribe(*i), scalar);
            prop_assert_eq!(ours, scalar);
            prop_assert_eq!(*from_batch, scalar);
            prop_assert_eq!(trace, view.prescribe_with_trace(*i).1);
            prop_assert!(snapshot.verify_decision(*i, &scalar).is_ok());
            selected.set(selected.get() + usize::from(scalar.is_selection()));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed:#x}: {e}");
    }
    // The generator must exercise selections, not only rejections (Miri runs too few
    // cases to promise one).
    assert!(
        cfg!(miri) || selected.get() > 0,
        "no case selected anything"
    );
}

/// The index visits candidates cheapest first, not in catalog order, so a full tie
/// (same utility, cost and quality) must still go to the lower catalog position. Here
/// the prices fall along the catalog, so the index meets the candidates in reverse:
/// with no tokens every cost is 0 and every candidate ties, and with tokens the cost
/// decides instead.
#[test]
fn full_ties_go_to_the_lower_position_whatever_the_index_order() {
    for n in [13u32, 22, 64, 65, 130] {
        let models: Vec<KernelModel> = (0..n)
            .map(|k| KernelModel {
                model_id: 10 + k,
                provider_id: 0,
                quality_bps: 9_000,
                risk_ceiling_bps: 10_000,
                enabled: 1,
                p95_latency_ms: 100,
                capabilities: 0,
                region_mask: 1,
                input_cost_microunits_per_million_tokens: u64::from(n - k) * 1_000,
                output_cost_microunits_per_million_tokens: u64::from(n - k) * 3_000,
            })
            .collect();
        let policy = PolicySnapshot::from_params(PolicyParams::default(), models.clone())
            .expect("valid policy");
        let view = policy.view();
        let mut input = KernelInput {
            request_sequence: 1,
            requested_model_id: 10,
            input_tokens: 0,
            output_tokens: 0,
            business_value_microunits: 1_000_000,
            budget_limit_microunits: 1_000_000,
            risk_bps: 0,
            confidence_bps: 10_000,
            minimum_quality_bps: 0,
            max_p95_latency_ms: 0,
            required_capabilities: 0,
            allowed_provider_mask: u64::MAX,
            required_region_mask: 0,
        };
        let tie = policy.prescribe(input);
        assert_eq!(
            tie,
            view.prescribe(input),
            "n {n}: the index and the scalar loop"
        );
        assert_eq!(
            (tie.selected_model_index, tie.counterfactual_model_id),
            (0, 11),
            "n {n}: the two lowest positions win the full tie"
        );
        assert_eq!(u32::from(tie.eligible_models), n);
        // With tokens the last (cheapest) candidate wins on cost, the one before it is
        // the runner-up.
        input.input_tokens = 1_000_000;
        let priced = policy.prescribe(input);
        assert_eq!(priced, view.prescribe(input), "n {n}: priced");
        assert_eq!(
            (priced.selected_model_id, priced.counterfactual_model_id),
            (10 + n - 1, 10 + n - 2),
            "n {n}: the cheapest wins"
        );
    }
}
