//! `calybris simulate` on a small seeded workload: two runs write byte-identical logs
//! (the same anchors and the same summary), no decision breaks a hard limit, every
//! strategy's gate directory verifies with `calybris verify`, which re-derives every
//! adaptive step of the engine strategies (they route through
//! `Gate::decide_adaptive`), a flipped outcome in a simulated log is caught, the plots
//! are SVG drawings of every strategy, and a second run into the same directory is
//! refused without `--fresh`.

mod common;

use std::path::{Path, PathBuf};

use calybris::gate::LOG_DIR;
use calybris::gate::record::GateRecord;
use calybris::wal::{DurableConfig, DurableWal, SegmentedReader};
use calybris_cli::simulate::{Options, Strategy, simulate};
use common::*;

const REQUESTS: u64 = 3_000;
const SEED: u64 = 0x00C0_FFEE;

/// Runs, with the error's code and sentence in the panic message.
fn run(options: &Options, what: &str) -> calybris_cli::simulate::Summary {
    simulate(options).unwrap_or_else(|e| panic!("{what}: ERROR {}: {e}", e.code()))
}

fn options(dir: &Path) -> Options {
    Options {
        requests: REQUESTS,
        seed: SEED,
        dir: dir.to_path_buf(),
        catalog: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/policies/catalog.toml"),
        fresh: false,
        json: false,
    }
}

#[test]
fn two_runs_write_the_same_logs_with_no_violation_and_every_log_verifies() {
    let (a_dir, b_dir) = (temp_dir("simulate-a"), temp_dir("simulate-b"));
    let a = run(&options(&a_dir), "first run");
    let b = run(&options(&b_dir), "second run");
    assert_eq!(a.runs.len(), Strategy::ALL.len());
    for (x, y) in a.runs.iter().zip(&b.runs) {
        assert_eq!(x.strategy, y.strategy);
        assert_eq!(
            x.anchor,
            y.anchor,
            "{}: the log digests differ",
            x.strategy.name()
        );
        assert_eq!(x.violations, 0, "{}", x.strategy.name());
        // The engine strategies decide every request through the gate's engine, and
        // the verifier re-derived each step (one snapshot per 10,000 updates: none in
        // a run this short).
        let engine = matches!(
            x.strategy,
            Strategy::Static | Strategy::EpsilonGreedy | Strategy::Thompson
        );
        assert_eq!(
            x.adaptive_decisions,
            if engine { REQUESTS } else { 0 },
            "{}",
            x.strategy.name()
        );
        if engine {
            assert_eq!(x.pulls.len(), 8, "{}", x.strategy.name());
            let pulled: u64 = x.pulls.iter().flatten().sum();
            assert_eq!(pulled, REQUESTS, "{}", x.strategy.name());
        }
        // A decision, a settlement (when admitted) and an outcome per request, plus
        // the header records.
        assert!(
            x.records >= 2 * REQUESTS,
            "{}: {}",
            x.strategy.name(),
            x.records
        );
        let run = calybris(&[
            "verify",
            &a_dir.join(x.strategy.name()).display().to_string(),
            "--json",
        ]);
        assert_eq!(run.code, 0, "{}: {run:?}", x.strategy.name());
        let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON line");
        assert_eq!(report["outcome"], "VERIFIED", "{run:?}");
        assert_eq!(
            report["gate"]["counts"]["adaptive_decisions"], x.adaptive_decisions,
            "{run:?}"
        );
    }
    // With exploration off the engine is the static policy: one tier for everything.
    let fixed = &a.runs[0];
    assert_eq!(fixed.strategy, Strategy::Static);
    assert!(
        fixed
            .pulls
            .iter()
            .all(|per_tier| per_tier.iter().filter(|&&n| n > 0).count() <= 1),
        "{:?}",
        fixed.pulls
    );
    assert_eq!(
        calybris_cli::simulate::summary_json(&a),
        calybris_cli::simulate::summary_json(&b)
    );
    assert_eq!(
        std::fs::read(a_dir.join("summary.json")).expect("summary"),
        std::fs::read(b_dir.join("summary.json")).expect("summary")
    );
    // The oracle has no regret by construction; random has some.
    let regret = |s: Strategy| {
        a.runs
            .iter()
            .find(|r| r.strategy == s)
            .map(|r| r.regret_microunits)
            .unwrap_or(f64::NAN)
    };
    assert_eq!(regret(Strategy::Oracle), 0.0);
    assert!(regret(Strategy::Random) > regret(Strategy::Thompson));
    for plot in ["regret.svg", "cost-quality.svg"] {
        let svg = std::fs::read_to_string(a_dir.join(plot)).expect("plot");
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{plot}: {}",
            &svg[..svg.len().min(80)]
        );
        assert!(!svg.contains("plot failed"), "{plot}: {svg}");
        for strategy in Strategy::ALL {
            assert!(
                svg.contains(strategy.name()),
                "{plot}: no {}",
                strategy.name()
            );
        }
        // Drawn, not empty: an axis, the legend and one mark per strategy at least.
        assert!(svg.len() > 4_000, "{plot}: {} bytes", svg.len());
        let marks = svg.matches("<polyline").count() + svg.matches("<circle").count();
        assert!(marks >= Strategy::ALL.len(), "{plot}: {marks} marks");
    }
    // The cost-quality plot marks the frontier's cost at 95 % of always-the-best.
    let cost_svg = std::fs::read_to_string(a_dir.join("cost-quality.svg")).expect("plot");
    assert!(a.cost_at_95.is_some());
    assert!(cost_svg.contains("95 % of its quality at"), "no 95 % point");
    // The regret plot draws one curve per strategy with a point per 1/200 of the run.
    let regret_svg = std::fs::read_to_string(a_dir.join("regret.svg")).expect("plot");
    assert!(regret_svg.matches("<polyline").count() >= Strategy::ALL.len());
    for r in &a.runs {
        assert!(
            r.curve.len() >= 200,
            "{}: {}",
            r.strategy.name(),
            r.curve.len()
        );
    }
    forged_rewards_are_caught(&a_dir.join(Strategy::Thompson.name()));
    // Another seed gives other logs.
    let c_dir = temp_dir("simulate-c");
    let mut other = options(&c_dir);
    other.seed = SEED + 1;
    let c = run(&other, "third run");
    assert_ne!(a.runs[3].anchor, c.runs[3].anchor);
}

#[test]
fn the_command_refuses_a_used_directory_and_a_tiny_run() {
    let dir = temp_dir("simulate-cli");
    let catalog = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policies/catalog.toml")
        .display()
        .to_string();
    let dir_text = dir.display().to_string();
    let args = [
        "simulate",
        "--requests",
        "1000",
        "--seed",
        "0x2a",
        "--dir",
        &dir_text,
        "--catalog",
        &catalog,
        "--json",
    ];
    let first = calybris(&args);
    assert_eq!(first.code, 0, "{first:?}");
    let json: serde_json::Value = serde_json::from_str(&first.stdout).expect("one JSON line");
    assert_eq!(json["seed"], "0x2a");
    assert_eq!(json["strategies"].as_array().map(Vec::len), Some(5));
    let again = calybris(&args);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.starts_with("ERROR DIR_NOT_EMPTY"), "{again:?}");
    let tiny = calybris(&["simulate", "--requests", "10", "--dir", &dir_text]);
    assert_eq!(tiny.code, 2, "{tiny:?}");
    assert!(tiny.stderr.starts_with("ERROR BAD_ARGUMENT"), "{tiny:?}");
}

/// The engine learns from the outcome's reward (reward feedback): of two forgeries of
/// one outcome, the reward at the scale's low end (every learned bit 0) and at its
/// high end (every bit 1), at least one changes a bit the engine learned (both when
/// the outcome's two bits differ), and `calybris verify` names the first record after
/// it with ADAPTIVE_STATE_MISMATCH; a forgery that changes no bit verifies.
fn forged_rewards_are_caught(dir: &Path) {
    let mut reader =
        SegmentedReader::<GateRecord>::open(&dir.join(LOG_DIR), None, None).expect("reader");
    let mut log = Vec::new();
    while let Some(entry) = reader.next_entry().expect("entry") {
        log.push(entry.record);
    }
    let target = log
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, GateRecord::Outcome(_)))
        .nth(700)
        .map(|(i, _)| i)
        .expect("outcomes");
    let next = log
        .iter()
        .enumerate()
        .skip(target + 1)
        .find(|(_, r)| matches!(r, GateRecord::Decision(_) | GateRecord::EngineSnapshot(_)))
        .map(|(i, _)| i as u64)
        .expect("a record after it");
    let mut reasons = Vec::new();
    for (name, reward) in [("low", i64::MIN), ("high", i64::MAX)] {
        let mut forged = log.clone();
        if let GateRecord::Outcome(o) = &mut forged[target] {
            o.reward_microunits = reward;
        }
        let copy = dir.with_file_name(format!("forged-{name}"));
        std::fs::create_dir_all(&copy).expect("dir");
        let wal = DurableWal::<GateRecord>::open(&copy.join(LOG_DIR), DurableConfig::default())
            .expect("open the forged log");
        for record in &forged {
            let _ = wal.append(record).expect("append");
        }
        wal.close().expect("close");
        let run = calybris(&["verify", copy.to_str().expect("utf-8"), "--json"]);
        let v = run.json();
        if run.code == 1 {
            assert_eq!(v["reason"], "ADAPTIVE_STATE_MISMATCH", "{v}");
            assert_eq!(v["sequence"], next, "{v}");
        } else {
            assert_eq!(run.code, 0, "{run:?}");
        }
        reasons.push(run.code);
    }
    assert!(reasons.contains(&1), "no forgery changed the engine state");
}
