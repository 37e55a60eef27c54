//! Times `calybris shadow` over a 20,000-decision demo log: writes the demo into a
//! temporary gate directory (`calybris demo --requests 20000`), a candidate that is
//! the demo's policy with a hard risk limit 1,000 bps lower, then runs the shadow
//! (verify, join, replay every request, every estimator, the promotion report) five
//! times in this process and prints each wall time and the fastest. Run it in
//! release:
//!
//! ```sh
//! cargo run --release -p calybris-cli --example shadow_timing
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("calybris-shadow-timing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_text = dir.to_str().expect("utf-8 temp dir").to_owned();
    let code = calybris_cli::run([
        "calybris",
        "demo",
        "--requests",
        "20000",
        "--dir",
        &dir_text,
        "--json",
    ]);
    assert_eq!(code, 0, "the demo failed");
    let policy = calybris_cli::demo::policy().expect("the demo policy");
    let snapshot = policy.snapshot();
    let mut params = serde_json::to_value(snapshot.params()).expect("params");
    let limit = params["hard_risk_limit_bps"].as_u64().expect("limit");
    params["hard_risk_limit_bps"] = serde_json::json!(limit.saturating_sub(1_000));
    let candidate = dir.join("candidate.json");
    let file = serde_json::json!({"params": params, "models": snapshot.models()});
    std::fs::write(&candidate, file.to_string()).expect("write the candidate");
    let candidate = candidate.to_str().expect("utf-8").to_owned();
    let mut best = f64::INFINITY;
    for run in 1..=5 {
        let start = Instant::now();
        let code = calybris_cli::run([
            "calybris",
            "shadow",
            &dir_text,
            "--candidate",
            &candidate,
            "--json",
        ]);
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(code, 0, "shadow failed");
        eprintln!("run {run}: {seconds:.3} s");
        best = best.min(seconds);
    }
    eprintln!("fastest of 5: {best:.3} s over 20,000 decisions");
    let _ = std::fs::remove_dir_all(&dir);
}
