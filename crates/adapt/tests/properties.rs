//! Properties of the estimators over random logs (proptest).
//!
//! proptest seeds each run itself; a failing case is shrunk, printed, and its seed
//! saved under `proptest-regressions/` so that the next run replays it first.

use calybris_adapt::ope::{
    BootstrapKey, Estimator, EstimatorConfig, LoggedRound, OpeError, Probability, RowPolicy,
    bootstrap, estimate,
};
use proptest::prelude::*;

/// The largest log a case generates: big enough for ties and clipping, small
/// enough for debug builds.
const ROWS_MAX: usize = 60;

/// Replicates per bootstrap in these tests.
const REPLICATES: u32 = 64;

/// A valid, positive probability: a float in (0, 1] or a fraction n/d with 1 ≤ n ≤ d.
fn positive_probability() -> impl Strategy<Value = Probability> {
    prop_oneof![
        (1e-3f64..=1.0).prop_map(Probability::float),
        (1u64..=10_000)
            .prop_flat_map(|d| (1u64..=d, Just(d)))
            .prop_map(|(n, d)| Probability::ratio(n, d)),
    ]
}

/// A valid probability that may be zero.
fn probability() -> impl Strategy<Value = Probability> {
    prop_oneof![
        4 => positive_probability(),
        1 => Just(Probability::float(0.0)),
        1 => (1u64..=100).prop_map(|d| Probability::ratio(0, d)),
    ]
}

/// A reward: a click or a continuous value.
fn reward() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0]
}

/// A usable round (behaviour propensity positive).
fn valid_round() -> impl Strategy<Value = LoggedRound> {
    (
        reward(),
        positive_probability(),
        probability(),
        0.0f64..=1.0,
        0.0f64..=1.0,
    )
        .prop_map(|(r, b, e, q, m)| LoggedRound::new(r, b, e, q, m))
}

/// Any f64 a broken log might hold.
fn hostile_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 0.0f64..=1.0,
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-0.5),
        1 => Just(1.5),
        1 => Just(1e-320),
        1 => any::<f64>(),
    ]
}

fn hostile_probability() -> impl Strategy<Value = Probability> {
    prop_oneof![
        hostile_f64().prop_map(Probability::float),
        (0u64..=5, 0u64..=5).prop_map(|(n, d)| Probability::ratio(n, d)),
    ]
}

/// A round that may be broken in any field, or lack its reward model.
fn hostile_round() -> impl Strategy<Value = LoggedRound> {
    (
        hostile_f64(),
        hostile_probability(),
        hostile_probability(),
        prop::option::weighted(0.9, (hostile_f64(), hostile_f64())),
    )
        .prop_map(|(r, b, e, model)| match model {
            Some((q, m)) => LoggedRound::new(r, b, e, q, m),
            None => LoggedRound::without_model(r, b, e),
        })
}

fn estimators() -> impl Strategy<Value = Estimator> {
    prop_oneof![
        Just(Estimator::Ips),
        Just(Estimator::SnIps),
        Just(Estimator::Dm),
        Just(Estimator::Dr),
        Just(Estimator::SnDr),
        (0.0f64..50.0).prop_map(|tau| Estimator::SwitchDr { tau }),
        (0.0f64..50.0).prop_map(|lambda| Estimator::DrOs { lambda }),
    ]
}

fn caps() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![Just(None), Just(Some(20.0)), (0.5f64..30.0).prop_map(Some)]
}

proptest! {
    /// With π_e = π_b in every round the weights are exactly 1, so IPS and SNIPS are
    /// the logged mean bit for bit; and DR, SNDR and switch-DR (τ ≥ 1) are the logged
    /// mean up to rounding when q̂ equals the DM term.
    #[test]
    fn on_policy_importance_estimators_are_the_logged_mean(
        rounds in prop::collection::vec((reward(), positive_probability(), 0.0f64..=1.0), 1..ROWS_MAX),
        cap in caps().prop_filter("a cap below 1 clips weight 1", |c| c.is_none_or(|c| c >= 1.0)),
    ) {
        let rows: Vec<LoggedRound> =
            rounds.iter().map(|&(r, p, q)| LoggedRound::new(r, p, p, q, q)).collect();
        let mean = rows.iter().map(|row| row.reward).sum::<f64>() / rows.len() as f64;
        let config = EstimatorConfig::default().with_cap(cap);
        for estimator in [Estimator::Ips, Estimator::SnIps] {
            let e = estimate(&rows, estimator, &config).unwrap();
            prop_assert_eq!(e.value.to_bits(), mean.to_bits(), "{:?}", estimator);
            prop_assert_eq!(e.logged_reward_mean.to_bits(), mean.to_bits());
            prop_assert_eq!(e.weight_max, 1.0);
            prop_assert_eq!(e.effective_sample_size, rows.len() as f64);
        }
        for estimator in [Estimator::Dr, Estimator::SnDr, Estimator::SwitchDr { tau: 1.0 }] {
            let e = estimate(&rows, estimator, &config).unwrap();
            prop_assert!((e.value - mean).abs() <= 1e-12, "{:?}: {} vs {}", estimator, e.value, mean);
        }
    }

    /// A reward model that predicts every logged reward exactly leaves no correction,
    /// so every DR variant is the direct method, bit for bit.
    #[test]
    fn dr_with_a_perfect_model_is_dm(
        rounds in prop::collection::vec(valid_round(), 1..ROWS_MAX),
        cap in caps(),
        tau in 0.0f64..50.0,
        lambda in 0.0f64..50.0,
    ) {
        let rows: Vec<LoggedRound> = rounds
            .into_iter()
            .map(|row| LoggedRound::new(
                row.reward, row.behaviour_propensity, row.evaluation_probability,
                row.reward, row.reward_model.unwrap().dm_term))
            .collect();
        let config = EstimatorConfig::default().with_cap(cap);
        let dm = estimate(&rows, Estimator::Dm, &config).unwrap();
        for estimator in [
            Estimator::Dr, Estimator::SnDr, Estimator::SwitchDr { tau }, Estimator::DrOs { lambda },
        ] {
            let e = estimate(&rows, estimator, &config).unwrap();
            prop_assert_eq!(e.value.to_bits(), dm.value.to_bits(), "{:?}", estimator);
        }
    }

    /// A cap of infinity is no cap: the whole report is identical.
    #[test]
    fn infinite_cap_is_uncapped(
        rows in prop::collection::vec(valid_round(), 1..ROWS_MAX),
        estimator in estimators(),
    ) {
        let infinite = EstimatorConfig::default().with_cap(Some(f64::INFINITY));
        let none = EstimatorConfig::uncapped();
        let a = estimate(&rows, estimator, &infinite);
        let b = estimate(&rows, estimator, &none);
        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
        if let Ok(a) = a {
            prop_assert_eq!(a.counts.clipped, 0);
        }
    }

    /// The same key replays the same bootstrap bit for bit; another key resamples
    /// differently.
    #[test]
    fn bootstrap_replays_by_key(
        rows in prop::collection::vec(
            (0.0f64..=1.0, positive_probability(), positive_probability(), 0.0f64..=1.0, 0.0f64..=1.0)
                .prop_map(|(r, b, e, q, m)| LoggedRound::new(r, b, e, q, m)),
            20..ROWS_MAX),
        estimator in estimators(),
        key_a in any::<[u8; 32]>(),
        key_b in any::<[u8; 32]>(),
    ) {
        prop_assume!(key_a != key_b);
        let config = EstimatorConfig::default();
        let a = BootstrapKey::from_bytes(key_a);
        let b = BootstrapKey::from_bytes(key_b);
        let first = bootstrap(&rows, estimator, &config, &a, REPLICATES).unwrap();
        let again = bootstrap(&rows, estimator, &config, &a, REPLICATES).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&first.replicates), bits(&again.replicates));
        prop_assert_eq!(first.interval.lower.to_bits(), again.interval.lower.to_bits());
        prop_assert_eq!(first.interval.upper.to_bits(), again.interval.upper.to_bits());
        prop_assert!(first.interval.lower <= first.interval.upper);
        // Distinct terms are needed for resamples to differ at all.
        let terms_differ = estimate(&rows, estimator, &config).unwrap()
            .normal_interval.is_some_and(|i| i.upper > i.lower);
        if terms_differ {
            let other = bootstrap(&rows, estimator, &config, &b, REPLICATES).unwrap();
            prop_assert_ne!(bits(&first.replicates), bits(&other.replicates));
        }
    }

    /// Every round is used, excluded or unsupported, whatever the log holds; under
    /// the refuse policy the first unusable round is named instead.
    #[test]
    fn counts_add_up(
        rows in prop::collection::vec(hostile_round(), 0..ROWS_MAX),
        estimator in estimators(),
        cap in caps(),
    ) {
        let config = EstimatorConfig::default().with_cap(cap);
        let bad = match estimate(&rows, estimator, &config) {
            Ok(e) => {
                let c = e.counts;
                prop_assert_eq!(c.used + c.excluded + c.unsupported, c.rows);
                prop_assert_eq!(c.rows, rows.len() as u64);
                prop_assert!(c.clipped <= c.used && c.switched_off <= c.used);
                c.excluded + c.unsupported
            }
            Err(OpeError::NoUsableRows { counts: c }) => {
                prop_assert_eq!(c.used, 0);
                prop_assert_eq!(c.excluded + c.unsupported, c.rows);
                prop_assert_eq!(c.rows, rows.len() as u64);
                c.rows
            }
            Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
        };
        let refused = estimate(&rows, estimator, &config.with_row_policy(RowPolicy::Refuse));
        match refused {
            Err(OpeError::RowRefused { index, .. }) => {
                prop_assert!(bad > 0);
                prop_assert!(index < rows.len() as u64);
                // Every round before the refused one is usable on its own.
                let prefix = &rows[..index as usize];
                if !prefix.is_empty() {
                    let e = estimate(prefix, estimator, &config).unwrap();
                    prop_assert_eq!(e.counts.used, index);
                }
            }
            Err(OpeError::NoUsableRows { .. }) => prop_assert!(rows.is_empty()),
            Ok(e) => {
                prop_assert_eq!(bad, 0);
                prop_assert_eq!(e.counts.used, rows.len() as u64);
            }
            Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
        }
    }
}
