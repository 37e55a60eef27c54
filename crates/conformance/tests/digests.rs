//! Our CALY digests against the published `calybris-core` 1.3.0, over random and
//! edge-value artifacts, plus golden vectors pinned in `tests/data/digest_vectors.txt`.
//!
//! The golden file changes only on purpose: `CALYBRIS_REGENERATE_GOLDEN=1 cargo test -p
//! calybris-conformance --test digests` rewrites it (after checking every vector against
//! the oracle); a normal run only reads it.

mod common;

use calybris_core::{digest as core_d, outcome as core_o};
use calybris_digest as d;
use calybris_kernel::{
    KernelAction, KernelDecision, KernelInput, KernelModel, KernelReason, PolicySnapshot,
};
use common::{
    Rng, both_policies, catalog, request, scalars, seed, to_core_decision, to_core_input,
};

const CASES: u64 = 100_000;

fn random_decision(rng: &mut Rng) -> KernelDecision {
    KernelDecision {
        request_sequence: rng.next_u64(),
        action: KernelAction::from_code(1 + rng.below(3) as u8).expect("valid code"),
        reason: rng.pick(&[
            KernelReason::RequestedModelMaximizesUtility,
            KernelReason::AlternativeMaximizesUtility,
            KernelReason::RiskHardLimit,
            KernelReason::BudgetConstraint,
            KernelReason::RiskCeilingConstraint,
        ]),
        selected_model_id: rng.next_u64() as u32,
        selected_model_index: rng.next_u64() as u16,
        estimated_cost_microunits: rng.u64_edgy(u64::MAX),
        expected_utility_microunits: rng.next_u64() as i64,
        counterfactual_model_id: rng.next_u64() as u32,
        counterfactual_utility_microunits: rng.next_u64() as i64,
        evaluated_models: rng.next_u64() as u16,
        eligible_models: rng.next_u64() as u16,
        policy_epoch: rng.next_u64(),
        catalog_epoch: rng.next_u64(),
    }
}

fn core_identity(i: &d::DecisionIdentity) -> core_o::DecisionIdentity {
    core_o::DecisionIdentity {
        policy_digest: i.policy_digest.to_bytes(),
        input_digest: i.input_digest.to_bytes(),
        decision_digest: i.decision_digest.to_bytes(),
        request_sequence: i.request_sequence,
    }
}

fn core_selection(s: &d::Selection) -> core_o::Selection {
    core_o::Selection {
        strategy: match s.strategy {
            d::SelectionStrategy::MaximiseUtility => core_o::SelectionStrategy::MaximiseUtility,
            d::SelectionStrategy::Explore => core_o::SelectionStrategy::Explore,
            d::SelectionStrategy::Human => core_o::SelectionStrategy::Human,
        },
        acted_model_id: s.acted_model_id,
        propensity_bps: s.propensity_bps,
    }
}

fn core_outcome(o: &d::Outcome) -> core_o::Outcome {
    core_o::Outcome {
        identity: core_identity(&o.identity),
        observed_at_micros: o.observed_at_micros,
        revision: o.revision,
        selection: core_selection(&o.selection),
        disposition: match o.disposition {
            d::Disposition::Applied => core_o::Disposition::Applied,
            d::Disposition::Abandoned => core_o::Disposition::Abandoned,
            d::Disposition::InFlight => core_o::Disposition::InFlight,
        },
        observation: core_o::Observation {
            realized_cost_microunits: o.observation.realized_cost_microunits,
            realized_latency_ms: o.observation.realized_latency_ms,
            succeeded: o.observation.succeeded,
        },
    }
}

fn opt<T>(rng: &mut Rng, make: impl FnOnce(&mut Rng) -> T) -> Option<T> {
    if rng.chance(60) {
        Some(make(rng))
    } else {
        None
    }
}

#[test]
fn kernel_digests_match_the_oracle() {
    let seed = seed() ^ 0xD16;
    let mut rng = Rng::new(seed);
    let mut case = 0u64;
    while case < CASES {
        let models = catalog(&mut rng, 24);
        let s = scalars(&mut rng);
        let Ok(Some((ours, theirs))) = both_policies(s, &models) else {
            panic!("seed {seed:#x}, case {case}: policy construction disagreed or failed");
        };
        let sealed = d::SealedPolicy::new(ours);
        assert_eq!(
            *sealed.digest(),
            core_d::policy_digest(&theirs),
            "seed {seed:#x}, case {case}: policy digest"
        );
        assert_eq!(d::policy_view_digest(&sealed.view()), *sealed.digest());
        for _ in 0..10 {
            let input = request(&mut rng, sealed.models(), case);
            let decision = if rng.chance(80) {
                sealed.prescribe(input)
            } else {
                random_decision(&mut rng)
            };
            let ctx =
                || format!("seed {seed:#x}, case {case}, input {input:?}, decision {decision:?}");
            assert_eq!(
                d::input_digest(&input),
                core_d::input_digest(&to_core_input(&input)),
                "input digest, {}",
                ctx()
            );
            assert_eq!(
                d::decision_digest(&decision),
                core_d::decision_digest(&to_core_decision(&decision)),
                "decision digest, {}",
                ctx()
            );
            let identity = d::DecisionIdentity::of(*sealed.digest(), &input, &decision);
            assert_eq!(
                identity.digest(),
                core_o::identity_digest(&core_identity(&identity)),
                "identity, {}",
                ctx()
            );
            case += 1;
        }
    }
}

#[test]
fn outcome_and_selection_digests_match_the_oracle() {
    let seed = seed() ^ 0x0C;
    let mut rng = Rng::new(seed);
    for case in 0..20_000u64 {
        let selection = match rng.below(4) {
            0 => d::Selection::human(rng.next_u64() as u32),
            1 => d::Selection::explored(rng.next_u64() as u32, rng.bps(true)),
            2 => d::Selection {
                strategy: d::SelectionStrategy::Human,
                acted_model_id: 5,
                propensity_bps: Some(rng.bps(true)),
            },
            _ => d::Selection {
                strategy: d::SelectionStrategy::MaximiseUtility,
                acted_model_id: rng.next_u64() as u32,
                propensity_bps: opt(&mut rng, |r| r.bps(true)),
            },
        };
        let mut bytes = [0u8; 96];
        bytes.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        let identity = d::DecisionIdentity {
            policy_digest: bytes[..32].try_into().expect("32"),
            input_digest: bytes[32..64].try_into().expect("32"),
            decision_digest: bytes[64..].try_into().expect("32"),
            request_sequence: rng.next_u64(),
        };
        let outcome = d::Outcome {
            identity,
            observed_at_micros: rng.next_u64(),
            revision: rng.next_u64() as u32,
            selection,
            disposition: rng.pick(&[
                d::Disposition::Applied,
                d::Disposition::Abandoned,
                d::Disposition::InFlight,
            ]),
            observation: d::Observation {
                realized_cost_microunits: opt(&mut rng, |r| r.u64_edgy(1 << 40)),
                realized_latency_ms: opt(&mut rng, |r| r.u32_edgy(10_000)),
                succeeded: opt(&mut rng, |r| r.chance(50)),
            },
        };
        let theirs = core_outcome(&outcome);
        assert_eq!(
            selection.digest(),
            core_o::selection_digest(&theirs.selection),
            "seed {seed:#x}, case {case}: {selection:?}"
        );
        assert_eq!(
            outcome.digest(),
            core_o::outcome_digest(&theirs),
            "seed {seed:#x}, case {case}: {outcome:?}"
        );
        assert_eq!(
            selection.validate().is_ok(),
            theirs.selection.validate().is_ok(),
            "seed {seed:#x}, case {case}: selection validity of {selection:?}"
        );
        assert_eq!(
            outcome.validate().is_ok(),
            theirs.validate().is_ok(),
            "seed {seed:#x}, case {case}: outcome validity of {outcome:?}"
        );
    }
}

// ---- Golden vectors -------------------------------------------------------------------

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/digest_vectors.txt");

fn nums(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .map(|t| {
            t.parse()
                .unwrap_or_else(|_| panic!("bad number {t:?} in golden file"))
        })
        .collect()
}

fn model_from(n: &[u64]) -> KernelModel {
    KernelModel {
        model_id: n[0] as u32,
        provider_id: n[1] as u16,
        quality_bps: n[2] as u16,
        risk_ceiling_bps: n[3] as u16,
        enabled: n[4] as u8,
        p95_latency_ms: n[5] as u32,
        capabilities: n[6],
        region_mask: n[7],
        input_cost_microunits_per_million_tokens: n[8],
        output_cost_microunits_per_million_tokens: n[9],
    }
}

fn input_from(n: &[u64]) -> KernelInput {
    KernelInput {
        request_sequence: n[0],
        requested_model_id: n[1] as u32,
        input_tokens: n[2] as u32,
        output_tokens: n[3] as u32,
        business_value_microunits: n[4] as i64,
        budget_limit_microunits: n[5],
        risk_bps: n[6] as u16,
        confidence_bps: n[7] as u16,
        minimum_quality_bps: n[8] as u16,
        max_p95_latency_ms: n[9] as u32,
        required_capabilities: n[10],
        allowed_provider_mask: n[11],
        required_region_mask: n[12],
    }
}

fn model_line(m: &KernelModel) -> String {
    format!(
        "{} {} {} {} {} {} {} {} {} {}",
        m.model_id,
        m.provider_id,
        m.quality_bps,
        m.risk_ceiling_bps,
        m.enabled,
        m.p95_latency_ms,
        m.capabilities,
        m.region_mask,
        m.input_cost_microunits_per_million_tokens,
        m.output_cost_microunits_per_million_tokens
    )
}

fn input_line(i: &KernelInput) -> String {
    format!(
        "{} {} {} {} {} {} {} {} {} {} {} {} {}",
        i.request_sequence,
        i.requested_model_id,
        i.input_tokens,
        i.output_tokens,
        i.business_value_microunits as u64,
        i.budget_limit_microunits,
        i.risk_bps,
        i.confidence_bps,
        i.minimum_quality_bps,
        i.max_p95_latency_ms,
        i.required_capabilities,
        i.allowed_provider_mask,
        i.required_region_mask
    )
}

/// One vector: a policy, a request, and the three digests plus the decision's action and
/// reason codes, as text.
struct Vector {
    policy: PolicySnapshot,
    input: KernelInput,
    expected: String,
}

fn render(policy: &PolicySnapshot, input: &KernelInput) -> String {
    let decision = policy.prescribe(*input);
    format!(
        "policy {} {} {} {} {} {}\n{}input {}\ndigests {} {} {} {} {}\n",
        policy.policy_epoch(),
        policy.catalog_epoch(),
        policy.params().hard_risk_limit_bps,
        policy.params().minimum_confidence_bps,
        policy.params().risk_penalty_multiplier_bps,
        policy.params().latency_penalty_microunits_per_ms,
        policy
            .models()
            .iter()
            .map(|m| format!("model {}\n", model_line(m)))
            .collect::<String>(),
        input_line(input),
        d::digest_to_hex(&d::policy_digest(policy)),
        d::digest_to_hex(&d::input_digest(input)),
        d::digest_to_hex(&d::decision_digest(&decision)),
        decision.action.code(),
        decision.reason.code(),
    )
}

fn parse_golden(text: &str) -> Vec<Vector> {
    let mut out = Vec::new();
    for block in text
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty() && !b.starts_with('#'))
    {
        let mut scalars = Vec::new();
        let mut models = Vec::new();
        let mut input = None;
        let mut expected = String::new();
        for line in block.lines() {
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "policy" => scalars = nums(rest),
                "model" => models.push(model_from(&nums(rest))),
                "input" => input = Some(input_from(&nums(rest))),
                "digests" => expected = rest.to_string(),
                other => panic!("unknown line kind {other:?} in golden file"),
            }
        }
        let s = &scalars;
        let policy = PolicySnapshot::try_new(
            s[0],
            s[1],
            s[2] as u16,
            s[3] as u16,
            s[4] as u16,
            s[5],
            models,
        )
        .expect("golden policy is valid");
        out.push(Vector {
            policy,
            input: input.expect("golden vector has an input"),
            expected,
        });
    }
    out
}

fn generate_golden() -> String {
    let mut rng = Rng::new(0x601D);
    let mut text = String::from(
        "# Golden vectors of the CALY policy, input and decision digests.\n\
         # Each block: policy scalars, its models, one request, then the expected policy,\n\
         # input and decision digests and the decision's action and reason codes.\n\
         # Regenerate only on purpose: CALYBRIS_REGENERATE_GOLDEN=1.\n\n",
    );
    let mut reasons = std::collections::BTreeSet::new();
    while reasons.len() < 13 || text.matches("digests").count() < 24 {
        let models = catalog(&mut rng, 6);
        let s = scalars(&mut rng);
        let Ok(Some((ours, _))) = both_policies(s, &models) else {
            continue;
        };
        let sequence = rng.next_u64();
        let input = request(&mut rng, ours.models(), sequence);
        let reason = ours.prescribe(input).reason.code();
        if reasons.insert(reason) || rng.chance(5) {
            text.push_str(&render(&ours, &input));
            text.push('\n');
        }
    }
    text
}

#[test]
fn golden_vectors_hold_for_us_and_the_oracle() {
    if std::env::var_os("CALYBRIS_REGENERATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, generate_golden()).expect("write golden file");
    }
    let text = std::fs::read_to_string(GOLDEN).expect("read tests/data/digest_vectors.txt");
    let vectors = parse_golden(&text);
    assert!(vectors.len() >= 24, "only {} golden vectors", vectors.len());
    for (n, v) in vectors.iter().enumerate() {
        let rendered = render(&v.policy, &v.input);
        let got = rendered
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("digests "))
            .expect("digests line");
        assert_eq!(got, v.expected, "golden vector {n} changed");
        let s = v.policy.params();
        let theirs = calybris_core::kernel::PolicySnapshot::try_new_trusted(
            s.policy_epoch,
            s.catalog_epoch,
            s.hard_risk_limit_bps,
            s.minimum_confidence_bps,
            s.risk_penalty_multiplier_bps,
            s.latency_penalty_microunits_per_ms,
            v.policy
                .models()
                .iter()
                .map(common::to_core_model)
                .collect(),
        )
        .expect("oracle accepts golden policy");
        let core_input = to_core_input(&v.input);
        let core_decision = theirs.prescribe(core_input);
        let oracle = format!(
            "{} {} {} {} {}",
            core_d::digest_to_hex(&core_d::policy_digest(&theirs)),
            core_d::digest_to_hex(&core_d::input_digest(&core_input)),
            core_d::digest_to_hex(&core_d::decision_digest(&core_decision)),
            core_decision.action as u8,
            core_decision.reason as u16,
        );
        assert_eq!(
            oracle, v.expected,
            "oracle disagrees with golden vector {n}"
        );
    }
}
