//! The estimators against obp on real logs.
//!
//! Data: the small sample of the Open Bandit Dataset (ZOZO, Inc., for research use,
//! https://research.zozo.com/data.html) that ships inside the PyPI package obp 0.4.1,
//! with obp's own estimates in `*.expected.json`. obp is Apache-2.0, Copyright (c)
//! Yuta Saito, Yusuke Narita, and ZOZO Technologies, Inc. Cite: Y. Saito, S. Aihara,
//! M. Matsutani, Y. Narita, "Open Bandit Dataset and Pipeline: Towards Realistic and
//! Reproducible Off-Policy Evaluation", NeurIPS 2021 Datasets and Benchmarks track,
//! arXiv:2008.07146. The fixtures and their provenance are described in
//! `shared/data/obd/README.md`; no obp code is used here, only the published
//! formulas and numbers.
//!
//! The files live beside the repository (`../shared/data/obd`, which CI provides).
//! If they are missing this test fails and says where it looked; it never skips.

use std::path::PathBuf;

use calybris_adapt::ope::{
    Estimate, Estimator, EstimatorConfig, LoggedRound, Probability, estimate,
};

/// The fixtures checked here (the other three are held back for acceptance tests).
const FIXTURES: [&str; 3] = ["random-all", "bts-all", "random-men"];

/// The asserted bound on the relative error against obp. The fixtures' README measured
/// 1.2e-14 for a naive left-to-right sum in file order (obp sums pairwise), and the
/// project's floor is 1e-9; 1e-12 keeps a hundredfold margin over what we reach.
const TOLERANCE_RELATIVE: f64 = 1e-12;

/// The CSV header the parser expects, in order.
const HEADER: &str = "round,action,position,reward,pscore,pi_e_logged,q_hat_logged,dm_term";

/// obp's switch threshold and shrinkage, and the project's cap, as in the fixtures.
const TAU: f64 = 20.0;
const LAMBDA: f64 = 20.0;
const CAP: f64 = 20.0;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/obd")
}

fn read(path: &PathBuf) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => panic!(
            "cannot read the OBD fixture {} ({e}). These tests need the shared data \
             directory beside the repository (../shared/data/obd); they do not skip.",
            path.display()
        ),
    }
}

fn parse_csv(name: &str) -> Vec<LoggedRound> {
    let text = read(&data_dir().join(format!("{name}.csv")));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(HEADER), "{name}.csv: unexpected header");
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 8, "{name}.csv line {}: {line}", i + 2);
            let num = |k: usize| -> f64 {
                f[k].parse()
                    .unwrap_or_else(|e| panic!("{name}.csv line {} field {k}: {e}", i + 2))
            };
            LoggedRound::new(
                num(3),
                Probability::float(num(4)),
                Probability::float(num(5)),
                num(6),
                num(7),
            )
        })
        .collect()
}

fn expected(name: &str) -> serde_json::Value {
    let text = read(&data_dir().join(format!("{name}.expected.json")));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}.expected.json: {e}"))
}

fn relative_error(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else {
        (got - want).abs() / want.abs()
    }
}

struct Checker {
    name: &'static str,
    json: serde_json::Value,
    worst: f64,
    checked: usize,
}

impl Checker {
    fn check(&mut self, key: &str, got: f64) {
        let want = self.json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{}.expected.json has no number {key}", self.name));
        let err = relative_error(got, want);
        println!(
            "{:>11} {key:>22}: ours {got:.17e} obp {want:.17e} rel {err:.2e}",
            self.name
        );
        assert!(
            err <= TOLERANCE_RELATIVE,
            "{} {key}: ours {got:e}, obp {want:e}, relative error {err:e}",
            self.name
        );
        self.worst = self.worst.max(err);
        self.checked += 1;
    }
}

fn run(rows: &[LoggedRound], estimator: Estimator, config: EstimatorConfig) -> Estimate {
    let e = estimate(rows, estimator, &config).expect("the OBD rows are all usable");
    assert_eq!(e.counts.used, rows.len() as u64, "every OBD row is usable");
    e
}

fn check_fixture(name: &'static str) -> f64 {
    let rows = parse_csv(name);
    let mut c = Checker {
        name,
        json: expected(name),
        worst: 0.0,
        checked: 0,
    };
    assert_eq!(
        c.json["n_rounds"].as_u64(),
        Some(rows.len() as u64),
        "{name}: row count"
    );
    let plain = EstimatorConfig::uncapped();
    let capped = EstimatorConfig::default().with_cap(Some(CAP));

    let ipw = run(&rows, Estimator::Ips, plain);
    c.check("ipw", ipw.value);
    c.check("snipw", run(&rows, Estimator::SnIps, plain).value);
    c.check("dm", run(&rows, Estimator::Dm, plain).value);
    c.check("dr", run(&rows, Estimator::Dr, plain).value);
    c.check("sndr", run(&rows, Estimator::SnDr, plain).value);
    let switch = run(&rows, Estimator::SwitchDr { tau: TAU }, plain);
    c.check("switch-dr", switch.value);
    c.check(
        "dr-os",
        run(&rows, Estimator::DrOs { lambda: LAMBDA }, plain).value,
    );
    let ipw_cap = run(&rows, Estimator::Ips, capped);
    c.check("ipw_cap20", ipw_cap.value);
    c.check("dr_cap20", run(&rows, Estimator::Dr, capped).value);
    c.check("max_weight", ipw.weight_max);
    c.check("ess", ipw.effective_sample_size);
    let n = rows.len() as f64;
    c.check("share_weights_over_20", ipw_cap.counts.clipped as f64 / n);
    c.check("mean_weight", ipw.weight_mean);
    c.check("logged_ctr", ipw.logged_reward_mean);

    // The counts agree with each other: the cap and the switch share the threshold 20
    // and both compare strictly, so they leave out the same rounds.
    assert_eq!(switch.counts.switched_off, ipw_cap.counts.clipped);
    assert_eq!(ipw.counts.clipped, 0, "no cap, nothing clipped");
    assert_eq!(c.checked, 14);
    println!(
        "{name}: worst relative error {:.2e} over {} figures",
        c.worst, c.checked
    );
    c.worst
}

#[test]
fn random_all_matches_obp() {
    check_fixture(FIXTURES[0]);
}

#[test]
fn bts_all_matches_obp() {
    check_fixture(FIXTURES[1]);
}

#[test]
fn random_men_matches_obp() {
    check_fixture(FIXTURES[2]);
}

/// The ground truth of one campaign is the other policy's logged click rate, and both
/// "all" files are here: check that pairing too.
#[test]
fn ground_truth_is_the_other_logs_click_rate() {
    for (name, other) in [("random-all", "bts-all"), ("bts-all", "random-all")] {
        let want = expected(name)["ground_truth_ctr"]
            .as_f64()
            .expect("ground_truth_ctr");
        let got = run(
            &parse_csv(other),
            Estimator::Ips,
            EstimatorConfig::uncapped(),
        )
        .logged_reward_mean;
        assert!(
            relative_error(got, want) <= TOLERANCE_RELATIVE,
            "{name}: {got} vs {want}"
        );
    }
}

/// The uniform Random logs' propensity is exactly 1/K; logged as the fraction 1/K it
/// gives the same estimates bit for bit as the float the file holds (the nearest
/// double to 1/K).
#[test]
fn exact_uniform_propensities_give_the_same_bits() {
    for (name, actions) in [("random-all", 80u64), ("random-men", 34)] {
        let rows = parse_csv(name);
        let exact: Vec<LoggedRound> = rows
            .iter()
            .map(|r| {
                assert_eq!(r.behaviour_propensity.to_f64(), 1.0 / actions as f64);
                LoggedRound {
                    behaviour_propensity: Probability::ratio(1, actions),
                    ..*r
                }
            })
            .collect();
        for estimator in Estimator::ALL {
            let a = run(&rows, estimator, EstimatorConfig::default());
            let b = run(&exact, estimator, EstimatorConfig::default());
            assert_eq!(a.value.to_bits(), b.value.to_bits(), "{name} {estimator:?}");
        }
    }
}
