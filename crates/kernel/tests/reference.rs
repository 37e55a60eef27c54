//! The fast decision path against a plain, obviously-correct reference written straight
//! from the decision semantics: wide integers everywhere, one candidate at a time, a
//! full sort for the ranking. Proptest drives both over random catalogs and requests
//! rich in extreme values; the seed is fixed (override with `CALYBRIS_SEED`) and
//! printed on failure, and `PROPTEST_CASES` sets the number of cases.

#![cfg(feature = "alloc")]

use calybris_kernel::{
    CandidateVerdict, KernelAction, KernelDecision, KernelInput, KernelModel, KernelReason,
    PolicyParams, PolicySnapshot, PolicyView,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

// ---- The reference ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Gate(usize),
    Eligible { utility: i64, cost: u64 },
}

/// Gate slots in evaluation order: disabled, quality, latency, capability, provider,
/// region, risk ceiling, budget, utility.
fn fate(p: &PolicyParams, m: &KernelModel, i: &KernelInput) -> Fate {
    if m.enabled == 0 {
        return Fate::Gate(0);
    }
    if m.quality_bps < i.minimum_quality_bps {
        return Fate::Gate(1);
    }
    if i.max_p95_latency_ms > 0 && m.p95_latency_ms > i.max_p95_latency_ms {
        return Fate::Gate(2);
    }
    if m.capabilities & i.required_capabilities != i.required_capabilities {
        return Fate::Gate(3);
    }
    if m.provider_id > 63 {
        return Fate::Gate(4);
    }
    if i.allowed_provider_mask != u64::MAX && i.allowed_provider_mask & (1u64 << m.provider_id) == 0
    {
        return Fate::Gate(4);
    }
    if i.required_region_mask != 0 && m.region_mask & i.required_region_mask == 0 {
        return Fate::Gate(5);
    }
    if i.risk_bps > m.risk_ceiling_bps {
        return Fate::Gate(6);
    }
    let ceil_div = |n: u128, d: u128| n / d + u128::from(!n.is_multiple_of(d));
    let cost_wide = ceil_div(
        u128::from(i.input_tokens) * u128::from(m.input_cost_microunits_per_million_tokens),
        1_000_000,
    ) + ceil_div(
        u128::from(i.output_tokens) * u128::from(m.output_cost_microunits_per_million_tokens),
        1_000_000,
    );
    let cost = u64::try_from(cost_wide).unwrap_or(u64::MAX);
    if cost > i.budget_limit_microunits {
        return Fate::Gate(7);
    }
    let v = i128::from(i.business_value_microunits.max(0));
    let quality_adjusted =
        v * i128::from(i.confidence_bps) * i128::from(m.quality_bps) / 100_000_000;
    let risk_penalty =
        v * i128::from(i.risk_bps) * i128::from(p.risk_penalty_multiplier_bps) / 100_000_000;
    let latency_penalty =
        i128::from(m.p95_latency_ms) * i128::from(p.latency_penalty_microunits_per_ms);
    let exact = quality_adjusted - risk_penalty - i128::from(cost) - latency_penalty;
    let utility = exact.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    if utility <= 0 {
        return Fate::Gate(8);
    }
    Fate::Eligible { utility, cost }
}

fn reject(
    p: &PolicyParams,
    i: &KernelInput,
    reason: KernelReason,
    evaluated: u16,
) -> KernelDecision {
    KernelDecision {
        request_sequence: i.request_sequence,
        action: KernelAction::Reject,
        reason,
        selected_model_id: 0,
        selected_model_index: u16::MAX,
        estimated_cost_microunits: 0,
        expected_utility_microunits: 0,
        counterfactual_model_id: 0,
        counterfactual_utility_microunits: 0,
        evaluated_models: evaluated,
        eligible_models: 0,
        policy_epoch: p.policy_epoch,
        catalog_epoch: p.catalog_epoch,
    }
}

/// The decision and the nine gate counters, straight from the spec.
fn reference(
    p: &PolicyParams,
    sorted: &[KernelModel],
    i: &KernelInput,
) -> (KernelDecision, [u32; 9]) {
    if i.risk_bps >= p.hard_risk_limit_bps {
        return (reject(p, i, KernelReason::RiskHardLimit, 0), [0; 9]);
    }
    if i.confidence_bps < p.minimum_confidence_bps {
        return (reject(p, i, KernelReason::ConfidenceHardLimit, 0), [0; 9]);
    }
    let mut counts = [0u32; 9];
    let mut eligible = Vec::new();
    for (index, m) in sorted.iter().enumerate() {
        match fate(p, m, i) {
            Fate::Gate(g) => counts[g] += 1,
            Fate::Eligible { utility, cost } => {
                eligible.push((utility, cost, m.quality_bps, m.model_id, index))
            }
        }
    }
    let evaluated = u16::try_from(sorted.len()).unwrap_or(u16::MAX);
    if eligible.is_empty() {
        // Ties go to the gate that comes last in this list.
        let order = [
            (3, KernelReason::CapabilityConstraint),
            (5, KernelReason::RegionConstraint),
            (4, KernelReason::ProviderConstraint),
            (1, KernelReason::QualityConstraint),
            (6, KernelReason::RiskCeilingConstraint),
            (2, KernelReason::LatencyConstraint),
            (7, KernelReason::BudgetConstraint),
            (8, KernelReason::NonPositiveUtility),
            (0, KernelReason::NoEnabledModel),
        ];
        let max = counts.iter().copied().max().unwrap_or(0);
        let reason = order
            .iter()
            .rev()
            .find(|(g, _)| counts[*g] == max)
            .map_or(KernelReason::NoEnabledModel, |x| x.1);
        return (reject(p, i, reason, evaluated), counts);
    }
    // Better first: higher utility, lower cost, higher quality, lower id.
    eligible.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(b.2.cmp(&a.2))
            .then(a.3.cmp(&b.3))
    });
    let best = eligible[0];
    let second = eligible.get(1).map_or((0, 0), |s| (s.3, s.0));
    let execute = best.3 == i.requested_model_id;
    let decision = KernelDecision {
        request_sequence: i.request_sequence,
        action: if execute {
            KernelAction::ExecuteRequested
        } else {
            KernelAction::Substitute
        },
        reason: if execute {
            KernelReason::RequestedModelMaximizesUtility
        } else {
            KernelReason::AlternativeMaximizesUtility
        },
        selected_model_id: best.3,
        selected_model_index: best.4 as u16,
        estimated_cost_microunits: best.1,
        expected_utility_microunits: best.0,
        counterfactual_model_id: second.0,
        counterfactual_utility_microunits: second.1,
        evaluated_models: evaluated,
        eligible_models: u16::try_from(eligible.len()).unwrap_or(u16::MAX),
        policy_epoch: p.policy_epoch,
        catalog_epoch: p.catalog_epoch,
    };
    (decision, counts)
}

// ---- Strategies --------------------------------------------------------------------------

/// Largest generated catalog (exclusive). Miri runs about a thousand times slower and
/// checks for undefined behaviour, which does not depend on size, so it gets small ones.
const MAX_CATALOG: usize = if cfg!(miri) { 6 } else { 40 };
/// Proptest cases per property under Miri.
const MIRI_CASES: u32 = 3;
/// Most requests per generated policy (exclusive).
const MAX_INPUTS: usize = if cfg!(miri) { 3 } else { 8 };

fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..200_000_000,
        1 => prop::sample::select(vec![0, 1, 999_999, 1_000_000, 1_000_001, u64::MAX, u64::MAX - 1, 1 << 63, u64::from(u32::MAX)]),
        1 => any::<u64>(),
    ]
}

fn edgy_u32() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..500_000, 1 => prop::sample::select(vec![0, 1, u32::MAX, u32::MAX - 1]), 1 => any::<u32>()]
}

fn bps(max_valid: u16) -> impl Strategy<Value = u16> {
    prop_oneof![4 => 0..=max_valid, 1 => prop::sample::select(vec![0, max_valid])]
}

fn request_bps() -> impl Strategy<Value = u16> {
    // Requests are not validated by `prescribe`: values above 10_000 must be handled too.
    prop_oneof![4 => 0u16..=10_000, 1 => any::<u16>()]
}

fn model() -> impl Strategy<Value = KernelModel> {
    (
        (
            0u16..=63,
            bps(10_000),
            bps(10_000),
            prop::bool::weighted(0.9),
            edgy_u32(),
        ),
        (0u64..16, 0u64..8, edgy_u64(), edgy_u64()),
    )
        .prop_map(
            |(
                (provider_id, quality_bps, risk_ceiling_bps, enabled, p95_latency_ms),
                (capabilities, region_mask, input, output),
            )| KernelModel {
                model_id: 0,
                provider_id,
                quality_bps,
                risk_ceiling_bps,
                enabled: u8::from(enabled),
                p95_latency_ms,
                capabilities,
                region_mask,
                input_cost_microunits_per_million_tokens: input,
                output_cost_microunits_per_million_tokens: output,
            },
        )
}

/// A valid catalog: distinct non-zero ids (some of them extreme), some twins that tie on
/// price, at least one enabled candidate.
fn catalog() -> impl Strategy<Value = Vec<KernelModel>> {
    (
        prop::collection::vec(model(), 1..MAX_CATALOG),
        prop::collection::btree_set(1u32..=u32::MAX, MAX_CATALOG),
        any::<u64>(),
    )
        .prop_map(|(mut models, ids, twin_bits)| {
            for (k, (m, id)) in models.iter_mut().zip(ids).enumerate() {
                m.model_id = if k == 0 && twin_bits & 1 == 1 {
                    u32::MAX
                } else {
                    id
                };
            }
            for k in 1..models.len() {
                if twin_bits >> (k % 64) & 1 == 1 {
                    let id = models[k].model_id;
                    models[k] = KernelModel {
                        model_id: id,
                        ..models[k - 1]
                    };
                }
            }
            // Ids must stay distinct after the u32::MAX substitution.
            models.sort_by_key(|m| m.model_id);
            models.dedup_by_key(|m| m.model_id);
            if models.iter().all(|m| m.enabled == 0) {
                models[0].enabled = 1;
            }
            models
        })
}

fn params() -> impl Strategy<Value = PolicyParams> {
    (
        any::<u64>(),
        any::<u64>(),
        bps(10_000),
        bps(10_000),
        bps(50_000),
        prop_oneof![3 => 0u64..50, 1 => any::<u64>()],
    )
        .prop_map(
            |(
                policy_epoch,
                catalog_epoch,
                hard_risk_limit_bps,
                minimum_confidence_bps,
                risk_penalty_multiplier_bps,
                latency,
            )| PolicyParams {
                policy_epoch,
                catalog_epoch,
                hard_risk_limit_bps,
                minimum_confidence_bps,
                risk_penalty_multiplier_bps,
                latency_penalty_microunits_per_ms: latency,
            },
        )
}

fn input(ids: Vec<u32>) -> impl Strategy<Value = KernelInput> {
    (
        (any::<u64>(), prop_oneof![3 => prop::sample::select(ids), 1 => any::<u32>()], edgy_u32(), edgy_u32()),
        (prop_oneof![3 => -1_000_000i64..5_000_000_000, 1 => prop::sample::select(vec![i64::MIN, i64::MAX, -1, 0, 1]), 1 => any::<i64>()], edgy_u64()),
        (request_bps(), request_bps(), request_bps(), prop_oneof![1 => Just(0u32), 2 => edgy_u32()]),
        (0u64..16, prop_oneof![1 => Just(u64::MAX), 1 => any::<u64>()], prop_oneof![1 => Just(0u64), 1 => 0u64..8]),
    )
        .prop_map(|((seq, requested, input_tokens, output_tokens), (value, budget), (risk, confidence, min_quality, max_latency), (caps, providers, regions))| KernelInput {
            request_sequence: seq,
            requested_model_id: requested,
            input_tokens,
            output_tokens,
            business_value_microunits: value,
            budget_limit_microunits: budget,
            risk_bps: risk,
            confidence_bps: confidence,
            minimum_quality_bps: min_quality,
            max_p95_latency_ms: max_latency,
            required_capabilities: caps,
            allowed_provider_mask: providers,
            required_region_mask: regions,
        })
}

fn case() -> impl Strategy<Value = (PolicyParams, Vec<KernelModel>, Vec<KernelInput>)> {
    (params(), catalog()).prop_flat_map(|(p, models)| {
        let ids = models.iter().map(|m| m.model_id).collect::<Vec<_>>();
        (
            Just(p),
            Just(models),
            prop::collection::vec(input(ids), 1..MAX_INPUTS),
        )
    })
}

fn runner(default_cases: u32) -> (TestRunner, u64) {
    let seed = std::env::var("CALYBRIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_CA1B);
    // Miri does not forward the environment by default and runs about a thousand times
    // slower, so it gets a handful of cases whatever `PROPTEST_CASES` says.
    let default_cases = if cfg!(miri) {
        MIRI_CASES
    } else {
        default_cases
    };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    (TestRunner::new(config), seed)
}

fn counts_of(t: &calybris_kernel::DecisionTrace) -> [u32; 9] {
    let h = &t.rejections;
    [
        h.disabled,
        h.quality,
        h.latency,
        h.capability,
        h.provider,
        h.region,
        h.risk_ceiling,
        h.budget,
        h.utility,
    ]
    .map(u32::from)
}

// ---- Properties ----------------------------------------------------------------------------

#[test]
fn fast_path_matches_the_reference() {
    let (mut runner, seed) = runner(2_000);
    let result = runner.run(&case(), |(p, models, inputs)| {
        let snapshot =
            PolicySnapshot::from_params(p, models.clone()).expect("generated policy is valid");
        let view = PolicyView::try_new(p, snapshot.models()).expect("sorted view is valid");
        for i in inputs {
            let (expected, expected_counts) = reference(&p, snapshot.models(), &i);
            let (got, trace) = snapshot.prescribe_with_trace(i);
            prop_assert_eq!(got, expected);
            prop_assert_eq!(counts_of(&trace), expected_counts);
            prop_assert_eq!(view.prescribe(i), expected);
            prop_assert_eq!(view.prescribe_with_trace(i).1, trace);
            prop_assert!(snapshot.verify_decision(i, &got).is_ok());
            for m in snapshot.models() {
                let want = match (
                    i.risk_bps >= p.hard_risk_limit_bps
                        || i.confidence_bps < p.minimum_confidence_bps,
                    fate(&p, m, &i),
                ) {
                    (false, Fate::Eligible { utility, .. }) => Some(utility),
                    _ => None,
                };
                prop_assert_eq!(snapshot.utility_for_model(i, m.model_id), want);
            }
            let explanation = snapshot.explain(i);
            prop_assert_eq!(explanation.decision, got);
            prop_assert_eq!(explanation.trace, trace);
            for row in &explanation.candidates {
                let m = snapshot.models()[usize::from(row.index)];
                match (row.verdict, fate(&p, &m, &i)) {
                    (CandidateVerdict::Eligible(t), Fate::Eligible { utility, cost }) => {
                        prop_assert_eq!((t.utility, t.cost_microunits), (utility, cost));
                        prop_assert_eq!(
                            i128::from(t.utility),
                            (t.quality_adjusted
                                - t.risk_penalty
                                - i128::from(t.cost_microunits)
                                - t.latency_penalty)
                                .clamp(i128::from(i64::MIN), i128::from(i64::MAX))
                        );
                    }
                    (CandidateVerdict::NonPositiveUtility(_), Fate::Gate(8))
                    | (CandidateVerdict::OverBudget { .. }, Fate::Gate(7)) => {}
                    (CandidateVerdict::Rejected { .. }, Fate::Gate(g)) if g < 7 => {}
                    (verdict, fate) => {
                        prop_assert!(false, "explain says {verdict:?}, the reference {fate:?}")
                    }
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}

#[test]
fn catalog_order_never_decides() {
    let (mut runner, seed) = runner(500);
    let result = runner.run(&(case(), any::<u64>()), |((p, models, inputs), shuffle)| {
        let mut shuffled = models.clone();
        let n = shuffled.len();
        for k in (1..n).rev() {
            shuffled.swap(k, (shuffle.rotate_left(k as u32) % (k as u64 + 1)) as usize);
        }
        let a = PolicySnapshot::from_params(p, models).expect("valid");
        let b = PolicySnapshot::from_params(p, shuffled).expect("valid");
        prop_assert_eq!(&a, &b);
        for i in inputs {
            prop_assert_eq!(a.prescribe(i), b.prescribe(i));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}

#[test]
fn replay_names_the_first_differing_field() {
    let (mut runner, seed) = runner(300);
    let result = runner.run(
        &(case(), 0usize..13, any::<u64>()),
        |((p, models, inputs), field, noise)| {
            let snapshot = PolicySnapshot::from_params(p, models).expect("valid");
            let i = inputs[0];
            let good = snapshot.prescribe(i);
            let mut bad = good;
            let bump = noise | 1;
            match field {
                0 => bad.request_sequence ^= bump,
                1 => {
                    bad.action = if bad.action == KernelAction::Reject {
                        KernelAction::Substitute
                    } else {
                        KernelAction::Reject
                    }
                }
                2 => {
                    bad.reason = if bad.reason == KernelReason::BudgetConstraint {
                        KernelReason::RegionConstraint
                    } else {
                        KernelReason::BudgetConstraint
                    }
                }
                3 => bad.selected_model_id ^= bump as u32 | 1,
                4 => bad.selected_model_index ^= bump as u16 | 1,
                5 => bad.estimated_cost_microunits ^= bump,
                6 => bad.expected_utility_microunits ^= bump as i64,
                7 => bad.counterfactual_model_id ^= bump as u32 | 1,
                8 => bad.counterfactual_utility_microunits ^= bump as i64,
                9 => bad.evaluated_models ^= bump as u16 | 1,
                10 => bad.eligible_models ^= bump as u16 | 1,
                11 => bad.policy_epoch ^= bump,
                _ => bad.catalog_epoch ^= bump,
            }
            let mismatch = snapshot
                .verify_decision(i, &bad)
                .expect_err("a changed decision must not replay");
            let names = [
                "request_sequence",
                "action",
                "reason",
                "selected_model_id",
                "selected_model_index",
                "estimated_cost_microunits",
                "expected_utility_microunits",
                "counterfactual_model_id",
                "counterfactual_utility_microunits",
                "evaluated_models",
                "eligible_models",
                "policy_epoch",
                "catalog_epoch",
            ];
            prop_assert_eq!(mismatch.field.name(), names[field]);
            prop_assert_eq!(mismatch.expected, good);
            prop_assert_eq!(mismatch.recorded, bad);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}

/// The largest catalog allowed, and a single-candidate one, against the reference.
#[test]
fn extreme_catalog_sizes_match_the_reference() {
    let (mut runner, seed) = runner(8);
    let result = runner.run(
        &(
            params(),
            model(),
            prop::collection::vec(input(vec![1, 2, 65_535]), 1..4),
        ),
        |(p, template, inputs)| {
            // Miri runs about a thousand times slower; it checks for undefined behaviour,
            // which does not depend on the catalog's size, so it gets a smaller one.
            let largest = if cfg!(miri) { 300 } else { 65_535 };
            for len in [1u32, largest] {
                let models: Vec<KernelModel> = (1..=len)
                    .map(|model_id| KernelModel {
                        model_id,
                        enabled: 1,
                        quality_bps: (model_id % 10_001) as u16,
                        input_cost_microunits_per_million_tokens: template
                            .input_cost_microunits_per_million_tokens
                            / u64::from(model_id),
                        ..template
                    })
                    .collect();
                let snapshot = PolicySnapshot::from_params(p, models).expect("valid");
                for i in &inputs {
                    prop_assert_eq!(
                        snapshot.prescribe_with_trace(*i).0,
                        reference(&p, snapshot.models(), i).0
                    );
                }
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}
