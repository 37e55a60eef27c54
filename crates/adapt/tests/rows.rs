//! One test per row check and per refused parameter (docs/SPECIFICATION.md,
//! "Off-policy estimators", "Which rounds are used"), and small logs whose estimates
//! are worked out by hand.

use calybris_adapt::ope::{
    BootstrapKey, Estimator, EstimatorConfig, Field, LoggedRound, OpeError, Probability,
    ProbabilityDefect, RowDefect, RowPolicy, bootstrap, estimate,
};

fn good() -> LoggedRound {
    LoggedRound::new(
        1.0,
        Probability::ratio(1, 4),
        Probability::ratio(1, 2),
        0.5,
        0.5,
    )
}

/// The defect the refuse policy reports for a log of one good round then `bad`.
fn defect_of(bad: LoggedRound, estimator: Estimator) -> RowDefect {
    let config = EstimatorConfig::default().with_row_policy(RowPolicy::Refuse);
    match estimate(&[good(), bad], estimator, &config) {
        Err(OpeError::RowRefused { index: 1, defect }) => defect,
        other => panic!("expected round 1 refused, got {other:?}"),
    }
}

#[test]
fn each_defect_is_named() {
    let b = Probability::ratio(1, 4);
    let e = Probability::ratio(1, 2);
    let cases = [
        (
            LoggedRound::new(f64::NAN, b, e, 0.5, 0.5),
            RowDefect::NonFinite(Field::Reward),
        ),
        (
            LoggedRound::new(1.0, Probability::float(-0.1), e, 0.5, 0.5),
            RowDefect::BadProbability {
                field: Field::BehaviourPropensity,
                defect: ProbabilityDefect::Negative,
            },
        ),
        (
            LoggedRound::new(1.0, b, Probability::ratio(3, 2), 0.5, 0.5),
            RowDefect::BadProbability {
                field: Field::EvaluationProbability,
                defect: ProbabilityDefect::AboveOne,
            },
        ),
        (
            LoggedRound::new(1.0, Probability::ratio(1, 0), e, 0.5, 0.5),
            RowDefect::BadProbability {
                field: Field::BehaviourPropensity,
                defect: ProbabilityDefect::ZeroDenominator,
            },
        ),
        (
            LoggedRound::new(1.0, b, Probability::float(f64::INFINITY), 0.5, 0.5),
            RowDefect::BadProbability {
                field: Field::EvaluationProbability,
                defect: ProbabilityDefect::NonFinite,
            },
        ),
        (
            LoggedRound::new(1.0, b, e, f64::NAN, 0.5),
            RowDefect::NonFinite(Field::Prediction),
        ),
        (
            LoggedRound::new(1.0, b, e, 0.5, f64::NEG_INFINITY),
            RowDefect::NonFinite(Field::DmTerm),
        ),
        (
            LoggedRound::new(
                1.0,
                Probability::float(0.0),
                Probability::float(0.0),
                0.5,
                0.5,
            ),
            RowDefect::ZeroPropensity,
        ),
        (
            LoggedRound::new(1.0, Probability::ratio(0, 7), e, 0.5, 0.5),
            RowDefect::Unsupported,
        ),
        (
            LoggedRound::new(
                1.0,
                Probability::float(1e-320),
                Probability::float(1.0),
                0.5,
                0.5,
            ),
            RowDefect::WeightOverflow,
        ),
        (
            LoggedRound::without_model(1.0, b, e),
            RowDefect::MissingRewardModel,
        ),
    ];
    for (bad, want) in cases {
        assert_eq!(defect_of(bad, Estimator::Dr), want, "{bad:?}");
        // Excluded and counted under the default policy, apart when unsupported.
        let e = estimate(&[good(), bad], Estimator::Dr, &EstimatorConfig::default()).unwrap();
        let unsupported = u64::from(want == RowDefect::Unsupported);
        assert_eq!(
            (e.counts.used, e.counts.excluded, e.counts.unsupported),
            (1, 1 - unsupported, unsupported)
        );
    }
}

#[test]
fn the_model_is_checked_only_where_it_is_used() {
    let bad_model = LoggedRound::new(
        1.0,
        Probability::ratio(1, 4),
        Probability::ratio(1, 2),
        f64::NAN,
        f64::NAN,
    );
    let no_model =
        LoggedRound::without_model(0.0, Probability::ratio(1, 4), Probability::ratio(1, 2));
    let rows = [good(), bad_model, no_model];
    let config = EstimatorConfig::default().with_row_policy(RowPolicy::Refuse);
    for estimator in [Estimator::Ips, Estimator::SnIps] {
        assert_eq!(estimate(&rows, estimator, &config).unwrap().counts.used, 3);
    }
    let dm = estimate(&rows, Estimator::Dm, &EstimatorConfig::default()).unwrap();
    assert_eq!((dm.counts.used, dm.counts.excluded), (1, 2));
}

#[test]
fn bad_parameters_are_refused() {
    let rows = [good()];
    let refused = |estimator, cap| {
        matches!(
            estimate(&rows, estimator, &EstimatorConfig::default().with_cap(cap)),
            Err(OpeError::InvalidParameter { .. })
        )
    };
    assert!(refused(Estimator::Ips, Some(0.0)));
    assert!(refused(Estimator::Ips, Some(-1.0)));
    assert!(refused(Estimator::Ips, Some(f64::NAN)));
    assert!(refused(Estimator::SwitchDr { tau: f64::NAN }, None));
    assert!(refused(Estimator::SwitchDr { tau: -1.0 }, None));
    assert!(refused(Estimator::DrOs { lambda: f64::NAN }, None));
    assert!(refused(Estimator::DrOs { lambda: -0.5 }, None));
    assert!(!refused(Estimator::SwitchDr { tau: f64::INFINITY }, None));
    assert!(!refused(
        Estimator::DrOs {
            lambda: f64::INFINITY
        },
        None
    ));
    let key = BootstrapKey::from_bytes([1; 32]);
    let config = EstimatorConfig::default();
    for replicates in [0, 100_001] {
        assert!(matches!(
            bootstrap(&rows, Estimator::Ips, &config, &key, replicates),
            Err(OpeError::Replicates { .. })
        ));
    }
}

#[test]
fn no_usable_rows_is_an_error_with_counts() {
    let rows = [LoggedRound::new(
        1.0,
        Probability::float(0.0),
        Probability::float(0.5),
        0.0,
        0.0,
    )];
    match estimate(&rows, Estimator::Ips, &EstimatorConfig::default()) {
        Err(OpeError::NoUsableRows { counts }) => {
            assert_eq!((counts.rows, counts.used, counts.unsupported), (1, 0, 1));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        estimate(&[], Estimator::Dm, &EstimatorConfig::default()),
        Err(OpeError::NoUsableRows { .. })
    ));
}

/// Three rounds with weights 2, 40 and 0.5, worked out by hand.
#[test]
fn hand_worked_log() {
    let p = Probability::float;
    let rows = [
        LoggedRound::new(1.0, p(0.25), p(0.5), 0.5, 0.25), // w = 2
        LoggedRound::new(1.0, p(0.0125), p(0.5), 0.5, 0.5), // w = 40
        LoggedRound::new(0.0, p(0.5), p(0.25), 0.25, 0.75), // w = 0.5
    ];
    let capped = EstimatorConfig::default(); // cap 20
    let plain = EstimatorConfig::uncapped();
    let value =
        |estimator, config: &EstimatorConfig| estimate(&rows, estimator, config).unwrap().value;

    assert_eq!(value(Estimator::Ips, &plain), (2.0 + 40.0 + 0.0) / 3.0);
    assert_eq!(value(Estimator::Ips, &capped), (2.0 + 20.0 + 0.0) / 3.0);
    let mean_w = (2.0 + 20.0 + 0.5) / 3.0;
    assert_eq!(
        value(Estimator::SnIps, &capped),
        (2.0 / mean_w + 20.0 / mean_w + 0.0) / 3.0
    );
    assert_eq!(value(Estimator::Dm, &capped), (0.25 + 0.5 + 0.75) / 3.0);
    // DR: m + c (r - q) = 0.25 + 1, 0.5 + 10, 0.75 - 0.125.
    assert_eq!(value(Estimator::Dr, &capped), (1.25 + 10.5 + 0.625) / 3.0);
    // Switch at tau 20 drops the raw-40 round's correction even though its capped
    // weight is 20.
    let switch = estimate(&rows, Estimator::SwitchDr { tau: 20.0 }, &capped).unwrap();
    assert_eq!(switch.value, (1.25 + 0.5 + 0.625) / 3.0);
    assert_eq!((switch.counts.switched_off, switch.counts.clipped), (1, 1));
    // DRos with lambda 20 on capped weights 2, 20, 0.5.
    let s = |w: f64| 20.0 * w / (w * w + 20.0);
    let want = (0.25 + s(2.0) * 0.5 + (0.5 + s(20.0) * 0.5) + (0.75 + s(0.5) * -0.25)) / 3.0;
    let got = value(Estimator::DrOs { lambda: 20.0 }, &capped);
    assert!((got - want).abs() < 1e-15, "{got} vs {want}");

    let e = estimate(&rows, Estimator::Ips, &capped).unwrap();
    assert_eq!(e.weight_max, 40.0);
    assert_eq!(e.weight_mean, 42.5 / 3.0);
    assert_eq!(e.effective_sample_size, 42.5 * 42.5 / (4.0 + 1600.0 + 0.25));
    assert_eq!(e.logged_reward_mean, 2.0 / 3.0);
    let i = e.normal_interval.unwrap();
    assert!(i.lower < e.value && e.value < i.upper);
}

/// All weights zero: the normalised estimators fall back to their DM part, not 0/0.
#[test]
fn all_zero_weights_normalise_to_the_limit() {
    let rows = [
        LoggedRound::new(
            1.0,
            Probability::ratio(1, 2),
            Probability::ratio(0, 1),
            0.5,
            0.3,
        ),
        LoggedRound::new(
            0.0,
            Probability::ratio(1, 2),
            Probability::ratio(0, 1),
            0.5,
            0.1,
        ),
    ];
    let config = EstimatorConfig::default();
    assert_eq!(
        estimate(&rows, Estimator::SnIps, &config).unwrap().value,
        0.0
    );
    let sndr = estimate(&rows, Estimator::SnDr, &config).unwrap();
    assert_eq!(
        sndr.value,
        estimate(&rows, Estimator::Dm, &config).unwrap().value
    );
    assert_eq!(sndr.effective_sample_size, 0.0);
}
