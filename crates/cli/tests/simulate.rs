//! `calybris simulate` on a small seeded workload: two runs write byte-identical logs
//! (the same anchors and the same summary), no decision breaks a hard limit, every
//! strategy's gate directory verifies with `calybris verify`, the plots are SVG, and a
//! second run into the same directory is refused without `--fresh`.

mod common;

use std::path::{Path, PathBuf};

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
        assert_eq!(x.engine_digest, y.engine_digest);
        assert_eq!(x.violations, 0, "{}", x.strategy.name());
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
        ]);
        assert_eq!(run.code, 0, "{}: {run:?}", x.strategy.name());
        assert!(run.stdout.starts_with("VERIFIED"), "{run:?}");
    }
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
            svg.starts_with("<svg"),
            "{plot}: {}",
            &svg[..svg.len().min(80)]
        );
        assert!(svg.contains("thompson"), "{plot}");
    }
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
