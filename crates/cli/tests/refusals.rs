//! Input the command must refuse, through the built binary: files larger than their
//! limit (bounded by what is read, not by the size a file reports, so endless
//! devices are refused too) and misspelled fields at any depth of a policy or
//! request file.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A device that reports a size of 0 and never ends.
const ENDLESS: &str = "/dev/zero";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples-data")
}

fn example(name: &str) -> String {
    path_str(&examples().join(name)).to_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path_str(&path).to_owned()
}

fn assert_refused(run: &Run, prefix: &str, exit: i32) {
    assert_eq!(run.code, exit, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(run.stderr.starts_with(prefix), "{run:?}");
}

#[test]
fn policy_check_refuses_an_endless_device() {
    let run = calybris(&["policy", "check", ENDLESS]);
    assert_refused(&run, "INVALID TOO_LARGE: ", 1);
    assert!(run.stderr.contains("67108864"), "{run:?}");
}

#[test]
fn explain_refuses_an_endless_request_and_an_endless_policy() {
    let run = calybris(&[
        "explain",
        "--policy",
        &example("policy.json"),
        "--request",
        ENDLESS,
    ]);
    assert_refused(&run, "INVALID TOO_LARGE: ", 1);
    let run = calybris(&[
        "explain",
        "--policy",
        ENDLESS,
        "--request",
        &example("request.json"),
    ]);
    assert_refused(&run, "INVALID TOO_LARGE: ", 1);
}

#[test]
fn a_file_one_byte_over_the_limit_is_refused_and_one_at_the_limit_is_read() {
    let dir = temp_dir("limit");
    let limit = calybris_cli::files::MAX_JSON_FILE_BYTES;
    // A valid request padded with spaces up to exactly the limit: read and decided.
    let request = r#"{"request_sequence": 1}"#;
    let padding = usize::try_from(limit).expect("fits") - request.len();
    let at_limit = dir.join("at-limit.json");
    std::fs::write(&at_limit, format!("{request}{}", " ".repeat(padding))).expect("write");
    let run = calybris(&[
        "explain",
        "--policy",
        &example("policy.json"),
        "--request",
        path_str(&at_limit),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    // One more byte: refused before it is parsed.
    let over = dir.join("over.json");
    std::fs::write(&over, format!("{request}{} ", " ".repeat(padding))).expect("write");
    let run = calybris(&[
        "explain",
        "--policy",
        &example("policy.json"),
        "--request",
        path_str(&over),
    ]);
    // 128 MiB of scratch: removed before the assertion (the guard would on a panic too).
    drop(dir);
    assert_refused(&run, "INVALID TOO_LARGE: ", 1);
}

#[test]
fn verify_refuses_an_endless_key_file() {
    let dir = temp_dir("endless-key");
    let log = dir.join("audit.cwal");
    write_log(&log, Some(key()), 2);
    let (run, json) = verify_json(&log, &["--key-file", ENDLESS]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(json["outcome"], "ERROR");
    assert_eq!(json["reason"], "BAD_ARGUMENT");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(message.contains("more than 65536 bytes"), "{json}");
}

#[test]
fn a_misspelled_field_inside_a_model_or_the_params_is_refused() {
    let dir = temp_dir("nested");
    let good = std::fs::read_to_string(examples().join("policy.json")).expect("read");
    assert!(good.contains("\"quality_bps\""));
    // One extra, misspelled key next to the real one, so only the typo is wrong.
    let in_model = good.replacen("\"quality_bps\"", "\"qualty_bps\": 1, \"quality_bps\"", 1);
    let in_params = good.replacen(
        "\"policy_epoch\"",
        "\"policy_epok\": 1, \"policy_epoch\"",
        1,
    );
    for (name, text, typo) in [
        ("model.json", in_model, "qualty_bps"),
        ("params.json", in_params, "policy_epok"),
    ] {
        let path = write(&dir, name, &text);
        let run = calybris(&["policy", "check", &path]);
        assert_refused(&run, "INVALID INVALID_JSON: ", 1);
        assert!(run.stderr.contains(typo), "{name}: {run:?}");
    }
    // The unchanged file is valid, so the refusals above are the typos' doing.
    let run = calybris(&["policy", "check", &example("policy.json")]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn a_misspelled_request_field_is_refused_and_missing_ones_take_defaults() {
    let dir = temp_dir("request-fields");
    let policy = example("policy.json");
    let typo = write(&dir, "typo.json", r#"{"input_tokns": 10}"#);
    let run = calybris(&["explain", "--policy", &policy, "--request", &typo]);
    assert_refused(&run, "INVALID INVALID_JSON: ", 1);
    assert!(run.stderr.contains("input_tokns"), "{run:?}");
    let partial = write(&dir, "partial.json", r#"{"input_tokens": 10}"#);
    let run = calybris(&["explain", "--policy", &policy, "--request", &partial]);
    assert_eq!(run.code, 0, "{run:?}");
}
