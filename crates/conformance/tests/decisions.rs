//! Our kernel against the published `calybris-core` 1.3.0: identical decisions (every
//! field), traces and per-model utilities over random and edge-value policies and
//! requests, and identical acceptance of policies. Seeded: set `CALYBRIS_SEED` to
//! replay a failure; the seed is printed in every failure message.

mod common;

use common::{
    Rng, both_policies, catalog, from_core_decision, request, scalars, seed, to_core_input,
};

/// Requests decided per run: at least 100,000.
const CASES: u64 = 100_000;
/// Requests per random policy.
const REQUESTS_PER_POLICY: u64 = 10;

#[test]
fn decisions_traces_and_utilities_match_the_oracle() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut decided = 0u64;
    let mut policies = 0u64;
    let mut by_reason = std::collections::BTreeMap::new();
    while decided < CASES {
        let max_len = if rng.chance(5) { 300 } else { 40 };
        let models = catalog(&mut rng, max_len);
        let s = scalars(&mut rng);
        let (ours, theirs) = match both_policies(s, &models) {
            Ok(Some(pair)) => pair,
            Ok(None) => panic!("seed {seed:#x}: a generated valid policy was refused by both"),
            Err(e) => panic!("seed {seed:#x}, policy #{policies}: {e}"),
        };
        policies += 1;
        for _ in 0..REQUESTS_PER_POLICY {
            let input = request(&mut rng, ours.models(), decided);
            let core_input = to_core_input(&input);
            let ctx = || {
                format!(
                    "seed {seed:#x}, case {decided}\npolicy {s:?}\nmodels {:?}\ninput {input:?}",
                    ours.models()
                )
            };

            let expected = from_core_decision(&theirs.prescribe(core_input));
            let (got, trace) = ours.prescribe_with_trace(input);
            assert_eq!(got, expected, "decision differs\n{}", ctx());
            assert_eq!(
                ours.prescribe(input),
                got,
                "prescribe and trace disagree\n{}",
                ctx()
            );

            let (_, core_trace) = theirs.prescribe_with_trace(core_input);
            let h = &trace.rejections;
            let c = &core_trace.rejections;
            assert_eq!(
                [
                    h.disabled,
                    h.quality,
                    h.risk_ceiling,
                    h.latency,
                    h.capability,
                    h.provider,
                    h.region,
                    h.budget,
                    h.utility
                ],
                [
                    c.disabled,
                    c.quality,
                    c.risk_ceiling,
                    c.latency,
                    c.capability,
                    c.provider,
                    c.region,
                    c.budget,
                    c.utility
                ],
                "rejection histogram differs\n{}",
                ctx()
            );
            assert_eq!(
                (trace.evaluated_models, trace.eligible_models),
                (core_trace.evaluated_models, core_trace.eligible_models),
                "trace counters differ\n{}",
                ctx()
            );

            let probe = if rng.chance(50) {
                input.requested_model_id
            } else {
                got.counterfactual_model_id
            };
            assert_eq!(
                ours.utility_for_model(input, probe),
                theirs.utility_for_model(core_input, probe),
                "utility_for_model({probe}) differs\n{}",
                ctx()
            );
            *by_reason.entry(got.reason.code()).or_insert(0u64) += 1;
            decided += 1;
        }
    }
    // The generator must reach every outcome, or the comparison proves little.
    for code in [
        1u16, 2, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110,
    ] {
        assert!(
            by_reason.get(&code).copied().unwrap_or(0) > 0,
            "seed {seed:#x}: no case ended with reason {code}; reasons seen: {by_reason:?}"
        );
    }
}

#[test]
fn explanations_agree_with_decisions_and_the_oracle() {
    let seed = seed() ^ 0xE5;
    let mut rng = Rng::new(seed);
    for case in 0..5_000u64 {
        let models = catalog(&mut rng, 30);
        let s = scalars(&mut rng);
        let Ok(Some((ours, theirs))) = both_policies(s, &models) else {
            panic!("seed {seed:#x}, case {case}: policy construction disagreed or failed");
        };
        let input = request(&mut rng, ours.models(), case);
        let explanation = ours.explain(input);
        let core_explanation = theirs.explain(to_core_input(&input));
        assert_eq!(
            explanation.decision,
            ours.prescribe(input),
            "seed {seed:#x}, case {case}"
        );
        assert_eq!(
            from_core_decision(&core_explanation.decision),
            explanation.decision,
            "seed {seed:#x}, case {case}"
        );
        let eligible = explanation
            .candidates
            .iter()
            .filter(|c| matches!(c.verdict, calybris_kernel::CandidateVerdict::Eligible(_)))
            .count();
        assert_eq!(
            eligible,
            usize::from(explanation.decision.eligible_models),
            "seed {seed:#x}, case {case}"
        );
    }
}

/// Both implementations accept and refuse the same policies.
#[test]
fn policy_validation_matches_the_oracle() {
    let seed = seed() ^ 0x7A;
    let mut rng = Rng::new(seed);
    let mut refused = 0;
    for case in 0..20_000u64 {
        let mut models = catalog(&mut rng, 12);
        let mut s = scalars(&mut rng);
        let i = rng.below(models.len() as u64) as usize;
        match rng.below(12) {
            0 => models[i].quality_bps = 10_001 + rng.below(50_000) as u16,
            1 => models[i].risk_ceiling_bps = 10_001,
            2 => models[i].provider_id = 64 + rng.below(1_000) as u16,
            3 => models[i].model_id = 0,
            4 => models[i].enabled = 2 + rng.below(250) as u8,
            5 => models.iter_mut().for_each(|m| m.enabled = 0),
            6 => {
                let dup = models[i];
                models.push(dup);
            }
            7 => models.clear(),
            8 => s.2 = 10_001,
            9 => s.3 = 10_001 + rng.below(1_000) as u16,
            10 => s.4 = 50_001,
            _ => {}
        }
        match both_policies(s, &models) {
            Ok(None) => refused += 1,
            Ok(Some(_)) => {}
            Err(e) => panic!("seed {seed:#x}, case {case}: {e}\nscalars {s:?}\nmodels {models:?}"),
        }
    }
    assert!(
        refused > 10_000,
        "seed {seed:#x}: only {refused} invalid policies generated"
    );
}

/// The largest catalog allowed decides like the oracle, and one more is refused by both.
#[test]
fn largest_catalog_matches_the_oracle() {
    let mut rng = Rng::new(seed() ^ 0xB16);
    let template = catalog(&mut rng, 1)[0];
    let models: Vec<_> = (1..=65_535u32)
        .map(|model_id| calybris_kernel::KernelModel {
            model_id,
            quality_bps: (model_id % 10_001) as u16,
            input_cost_microunits_per_million_tokens: u64::from(model_id) * 97 % 5_000_000,
            enabled: 1,
            ..template
        })
        .collect();
    let s = (1, 2, 10_000, 0, 10_000, 1);
    let (ours, theirs) = both_policies(s, &models).expect("agree").expect("valid");
    for seq in 0..20 {
        let input = request(&mut rng, ours.models(), seq);
        assert_eq!(
            ours.prescribe(input),
            from_core_decision(&theirs.prescribe(to_core_input(&input)))
        );
    }
    let mut too_many = models;
    too_many.push(calybris_kernel::KernelModel {
        model_id: 65_536,
        ..template
    });
    assert!(matches!(both_policies(s, &too_many), Ok(None)));
}
