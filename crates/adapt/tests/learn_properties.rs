//! Properties of the learning modules (proptest): exact Welford merges, the floor
//! bounds the learner can never leave, the static policy under exploration off, and
//! the engine state as a pure function of its updates.
//!
//! proptest seeds each run itself; a failing case is shrunk, printed, and its seed
//! saved under `proptest-regressions/` so that the next run replays it first.

use calybris_adapt::engine::{Engine, EngineConfig, Request};
use calybris_adapt::prf::PrfKey;
use calybris_adapt::regime::{RegimeConfig, Regimes, Welford};
use calybris_adapt::thompson::{BPS_ONE, Policy, Posterior};
use proptest::prelude::*;

/// The longest sequence a case generates.
const STEPS_MAX: usize = 40;

/// Arms of the test engines.
const ARMS: usize = 5;

fn engine(policy: Policy, exploration_bps: u32, floor_min_bps: u32) -> Engine {
    let regimes = RegimeConfig {
        floor_min_bps,
        min_observations: 2,
        ..RegimeConfig::default()
    };
    let priors = (1..=ARMS as u32)
        .map(|i| Posterior::new(i, 1 + ARMS as u32 - i).expect("small shapes"))
        .collect();
    let config = EngineConfig {
        regimes,
        priors,
        policy,
        exploration_bps,
    };
    Engine::new(config, PrfKey::from_bytes([0x42; 32])).expect("a valid configuration")
}

/// One request with its outcome: input digest byte, label choice, features, client
/// floor, static arm, success.
type Step = (u8, Option<u8>, [i32; 4], Option<u32>, u32, bool);

fn step() -> impl Strategy<Value = Step> {
    (
        any::<u8>(),
        proptest::option::of(0u8..10),
        (-1000i32..1000, -1000i32..1000, 0i32..5, any::<i32>())
            .prop_map(|(a, b, c, d)| [a, b, c, d]),
        proptest::option::of(0u32..=BPS_ONE),
        0u32..ARMS as u32,
        any::<bool>(),
    )
}

const LABELS: [&str; 10] = [
    "support",
    "coding",
    "compliance",
    "security",
    "analysis",
    "writing",
    "extraction",
    "other",
    "unknown",
    "",
];

fn request<'a>(s: &'a Step) -> Request<'a> {
    Request {
        input_digest: [s.0; 32],
        label: s.1.map(|i| LABELS[usize::from(i)]),
        features: &s.2,
        client_floor_bps: s.3,
        static_arm: s.4,
    }
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        (1u32..20).prop_map(|redraws| Policy::Thompson { redraws }),
        (0u32..=BPS_ONE).prop_map(|epsilon_bps| Policy::EpsilonGreedy { epsilon_bps }),
    ]
}

/// Runs `steps` through `engine` (decide, then update), returning the decisions.
fn run(engine: &mut Engine, steps: &[Step]) -> Vec<calybris_adapt::engine::Decision> {
    steps
        .iter()
        .map(|s| {
            let d = engine.decide(&request(s)).expect("decide");
            engine.update(&d, &s.2, s.5).expect("update");
            d
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn welford_merge_is_the_one_pass_state(
        xs in proptest::collection::vec(any::<i32>(), 0..200),
        cut in 0usize..200,
    ) {
        let cut = cut.min(xs.len());
        let mut whole = Welford::new();
        let (mut left, mut right) = (Welford::new(), Welford::new());
        for &x in &xs { whole.push(x).unwrap(); }
        for &x in &xs[..cut] { left.push(x).unwrap(); }
        for &x in &xs[cut..] { right.push(x).unwrap(); }
        prop_assert_eq!(left.merge(&right).unwrap(), whole);
        prop_assert_eq!(right.merge(&left).unwrap(), whole);
        // And D is n·Σ(x − x̄)² exactly: n·Σx² − (Σx)².
        let n = xs.len() as i128;
        let s: i128 = xs.iter().map(|&x| i128::from(x)).sum();
        let q: i128 = xs.iter().map(|&x| i128::from(x) * i128::from(x)).sum();
        prop_assert_eq!(whole.spread(), n * q - s * s);
    }

    #[test]
    fn the_learner_never_loosens_a_hard_gate(
        steps in proptest::collection::vec(step(), 1..STEPS_MAX),
        policy in policy(),
        exploration_bps in 0u32..=BPS_ONE,
        floor_min_bps in 0u32..9_000,
    ) {
        let mut e = engine(policy, exploration_bps, floor_min_bps);
        for s in &steps {
            let d = e.decide(&request(s)).unwrap();
            prop_assert!(d.floor_bps >= floor_min_bps && d.floor_bps <= BPS_ONE, "{d:?}");
            prop_assert!(d.floor_bps >= s.3.unwrap_or(0), "client floor {:?} lost: {d:?}", s.3);
            prop_assert!((d.arm as usize) < ARMS);
            let p = e.propensity(&request(s), &d).unwrap();
            prop_assert!(p.numerator >= 1 && p.numerator <= p.denominator, "{p:?}");
            e.update(&d, &s.2, s.5).unwrap();
            for &f in e.regimes().floors_bps() {
                prop_assert!(f >= floor_min_bps && f <= e.config().regimes.floor_max_bps);
            }
        }
    }

    #[test]
    fn exploration_off_is_the_static_policy(
        steps in proptest::collection::vec(step(), 1..STEPS_MAX),
        policy in policy(),
    ) {
        let mut e = engine(policy, 0, 5_000);
        let statics = Regimes::new(e.config().regimes.clone()).unwrap();
        for s in &steps {
            let d = e.decide(&request(s)).unwrap();
            prop_assert_eq!(d.arm, s.4);
            prop_assert!(!d.explored);
            let static_floor = statics.decision_floor_bps(d.regime, s.3, false).unwrap();
            prop_assert_eq!(d.floor_bps, static_floor);
            prop_assert_eq!(e.propensity(&request(s), &d).unwrap().to_f64(), 1.0);
            e.update(&d, &s.2, s.5).unwrap();
        }
    }

    #[test]
    fn the_state_is_a_function_of_the_updates(
        steps in proptest::collection::vec(step(), 1..STEPS_MAX),
        policy in policy(),
        exploration_bps in 1u32..=BPS_ONE,
        flip in 0usize..STEPS_MAX,
    ) {
        let mut a = engine(policy, exploration_bps, 5_000);
        let mut b = engine(policy, exploration_bps, 5_000);
        let da = run(&mut a, &steps);
        let db = run(&mut b, &steps);
        prop_assert_eq!(&da, &db);
        prop_assert_eq!(a.state_digest(), b.state_digest());
        // Replaying the same (decision, outcome) updates on a third engine, without
        // deciding, gives the same state.
        let mut c = engine(policy, exploration_bps, 5_000);
        for (d, s) in da.iter().zip(&steps) {
            c.update(d, &s.2, s.5).unwrap();
        }
        prop_assert_eq!(c.state_digest(), a.state_digest());
        prop_assert_eq!(c.layout_digest(), a.layout_digest());
        // One flipped outcome changes the digest.
        let flip = flip % steps.len();
        let mut f = engine(policy, exploration_bps, 5_000);
        for (i, (d, s)) in da.iter().zip(&steps).enumerate() {
            f.update(d, &s.2, if i == flip { !s.5 } else { s.5 }).unwrap();
        }
        prop_assert_ne!(f.state_digest(), a.state_digest());
        prop_assert_ne!(f.layout_digest(), a.layout_digest());
    }
}

#[test]
fn a_stale_decision_has_no_propensity() {
    let mut e = engine(Policy::Thompson { redraws: 8 }, 10_000, 5_000);
    let s: Step = (1, Some(0), [1, 2, 3, 4], None, 0, true);
    let d = e.decide(&request(&s)).unwrap();
    assert!(d.explored);
    e.update(&d, &s.2, true).unwrap();
    assert_eq!(
        e.propensity(&request(&s), &d),
        Err(calybris_adapt::error::LearnError::StaleState)
    );
}

#[test]
fn the_propensity_mixes_the_gate_and_the_policy_exactly() {
    // Epsilon-greedy inside a 50 % gate: the static arm 0 is also the greedy arm of
    // nobody (arm 4 has the highest prior mean), so P(arm 0) = ½·1 + ½·ε/5.
    let e = engine(Policy::EpsilonGreedy { epsilon_bps: 1_000 }, 5_000, 5_000);
    let s: Step = (3, Some(1), [0; 4], None, 0, true);
    let mut d = e.decide(&request(&s)).unwrap();
    d.arm = 0;
    let p = e.propensity(&request(&s), &d).unwrap();
    assert_eq!(
        (p.numerator, p.denominator),
        (5_000 * 50_000 + 5_000 * 1_000, 10_000 * 50_000)
    );
    d.arm = 4;
    let p = e.propensity(&request(&s), &d).unwrap();
    assert_eq!(p.numerator, 5_000 * (1_000 + 9_000 * 5));
}
