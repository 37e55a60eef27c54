//! `calybris explain`, `policy check`, `inspect`, `show` and usage errors,
//! through the built binary.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples-data")
}

fn example(name: &str) -> String {
    path_str(&examples().join(name)).to_owned()
}

#[test]
fn policy_check_prints_the_digest_of_the_example_policy() {
    let run = calybris(&["policy", "check", &example("policy.json")]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("VALID "), "{run:?}");
    let policy =
        calybris_cli::files::read_policy(&examples().join("policy.json")).expect("valid example");
    let digest = calybris::digest::digest_to_hex(&calybris::digest::policy_digest(&policy));
    assert!(run.stdout.trim_end().ends_with(&digest), "{run:?}");
}

#[test]
fn explain_decides_the_example_request_and_names_each_gate() {
    let run = calybris(&[
        "explain",
        "--policy",
        &example("policy.json"),
        "--request",
        &example("request.json"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with("decision: SUBSTITUTE"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("turned away by gate latency"));
    assert!(run.stdout.contains("turned away by gate disabled"));
    assert!(run.stdout.contains("* model    102: eligible, utility"));

    let run = calybris(&[
        "explain",
        "--json",
        "--policy",
        &example("policy.json"),
        "--request",
        &example("request.json"),
    ]);
    assert_eq!(run.code, 0);
    let json = run.json();
    assert_eq!(json["explanation"]["decision"]["action"], "Substitute");
    assert_eq!(json["explanation"]["decision"]["selected_model_id"], 102);
    assert_eq!(
        json["explanation"]["candidates"].as_array().map(Vec::len),
        Some(4)
    );
    assert_eq!(json["policy_digest"].as_str().map(str::len), Some(64));
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path_str(&path).to_owned()
}

#[test]
fn malformed_and_invalid_files_are_one_line_with_a_code() {
    let dir = temp_dir("files");
    let good = std::fs::read_to_string(examples().join("policy.json")).expect("read");
    let duplicate = good.replace("\"model_id\": 102", "\"model_id\": 101");
    let cases = [
        ("not-json.json", "{ this is not json", "INVALID_JSON", 1),
        ("array.json", "[1, 2, 3]", "INVALID_JSON", 1),
        ("empty.json", "", "INVALID_JSON", 1),
        (
            "unknown-key.json",
            &good.replacen("\"params\"", "\"parms\"", 1),
            "INVALID_JSON",
            1,
        ),
        ("duplicate.json", &duplicate, "INVALID_POLICY", 1),
        (
            "no-models.json",
            r#"{"params": {"policy_epoch": 1, "catalog_epoch": 1, "hard_risk_limit_bps": 1,
                "minimum_confidence_bps": 0, "risk_penalty_multiplier_bps": 0,
                "latency_penalty_microunits_per_ms": 0}, "models": []}"#,
            "INVALID_POLICY",
            1,
        ),
    ];
    for (name, text, code, exit) in cases {
        let path = write(&dir, name, text);
        let run = calybris(&["policy", "check", &path]);
        assert_eq!(run.code, exit, "{name}: {run:?}");
        assert!(run.stdout.is_empty(), "{name}: {run:?}");
        assert!(
            run.stderr.starts_with(&format!("INVALID {code}: ")),
            "{name}: {run:?}"
        );
    }
    let run = calybris(&["policy", "check", path_str(&dir.join("missing.json"))]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.starts_with("ERROR UNREADABLE: "), "{run:?}");

    let policy = example("policy.json");
    for (name, text, code) in [
        ("risky.json", r#"{"risk_bps": 20000}"#, "INVALID_REQUEST"),
        ("typo.json", r#"{"risk_bsp": 10}"#, "INVALID_JSON"),
        ("negative.json", r#"{"input_tokens": -5}"#, "INVALID_JSON"),
    ] {
        let request = write(&dir, name, text);
        let run = calybris(&["explain", "--policy", &policy, "--request", &request]);
        assert_eq!(run.code, 1, "{name}: {run:?}");
        assert!(
            run.stderr.starts_with(&format!("INVALID {code}: ")),
            "{name}: {run:?}"
        );
    }
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["verify"],
        &["show", "x.cwal"],
        &["show", "x.cwal", "--seq", "minus-one"],
        &["demo", "--requests", "lots"],
    ] {
        let run = calybris(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("ERROR USAGE: "), "{args:?}: {run:?}");
    }
    let run = calybris(&["--help"]);
    assert_eq!(run.code, 0);
    for command in ["verify", "inspect", "show", "explain", "policy", "demo"] {
        assert!(run.stdout.contains(command), "{command}");
    }
}

#[test]
fn inspect_counts_records_policies_and_decisions() {
    let dir = temp_dir("inspect");
    let log = dir.join("audit.cwal");
    write_log(&log, None, 10);
    let policy = policy(1);
    let (mut executed, mut substituted, mut rejected) = (0, 0, 0);
    for i in 0..10 {
        match policy.prescribe(request(i)).action {
            calybris::kernel::KernelAction::ExecuteRequested => executed += 1,
            calybris::kernel::KernelAction::Substitute => substituted += 1,
            calybris::kernel::KernelAction::Reject => rejected += 1,
        }
    }
    let run = calybris(&["inspect", path_str(&log)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("records: 11 (sequence 0..=10), policies 1, decisions 10")
    );
    let digest = calybris::digest::digest_to_hex(policy.digest());
    assert!(
        run.stdout
            .contains(&format!("record 0: digest {digest}, policy epoch 1"))
    );
    for (word, count) in [
        ("EXECUTE", executed),
        ("SUBSTITUTE", substituted),
        ("REJECT", rejected),
    ] {
        if count > 0 {
            // `  WORD  words of the action  count  share %`
            assert!(
                run.stdout
                    .lines()
                    .any(|line| line.starts_with(&format!("  {word:<12} "))
                        && line.split_whitespace().rev().nth(2)
                            == Some(count.to_string().as_str())),
                "{word} {count}: {}",
                run.stdout
            );
        }
    }
    assert!(rejected > 0 && executed + substituted > 0);
    // Reasons in words, never as Rust names; the shares of each table add up to 100.0 %.
    assert!(!run.stdout.contains("RiskHardLimit"), "{}", run.stdout);
    let section = |title: &str| -> Vec<String> {
        run.stdout
            .lines()
            .skip_while(|line| *line != title)
            .skip(1)
            .take_while(|line| line.starts_with("  ") && !line.starts_with("  total"))
            .map(str::to_owned)
            .collect()
    };
    for title in ["decisions by action:", "decisions by reason:"] {
        let rows = section(title);
        assert!(!rows.is_empty(), "{title} {}", run.stdout);
        let tenths: u64 = rows
            .iter()
            .map(|row| {
                let share = row.split_whitespace().rev().nth(1).expect("a share");
                share.replace('.', "").parse::<u64>().expect("a percentage")
            })
            .sum();
        assert_eq!(tenths, 1_000, "{title} {}", run.stdout);
    }
    assert!(
        run.stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("VERIFIED"))
    );
}

#[test]
fn show_explains_one_decision_and_refuses_a_missing_one() {
    let dir = temp_dir("show");
    let log = dir.join("audit.cwal");
    write_log(&log, None, 5);
    let log = path_str(&log).to_owned();

    let run = calybris(&["show", &log, "--seq", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let expected = policy(1).prescribe(request(1));
    assert!(
        run.stdout.starts_with("record 2: tenant 1"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&format!(
        "decision: {}",
        calybris_cli::render::decision_line(&expected)
    )));
    assert!(run.stdout.contains("candidates: 3 evaluated"));

    let run = calybris(&["show", &log, "--seq", "2", "--json"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.json()["explanation"]["decision"]["request_sequence"], 1);

    let run = calybris(&["show", &log, "--seq", "0"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.starts_with("record 0 is a policy record"));

    let run = calybris(&["show", &log, "--seq", "99"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.starts_with("ERROR NOT_FOUND: "), "{run:?}");
}
