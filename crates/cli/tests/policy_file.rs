//! Human policy files (TOML and JSON, by name) through the built binary: `policy
//! check`, `explain` with a request by name, the refusals, and a gate log that records
//! the names.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const POLICY: &str = r#"
policy_epoch = 2
capabilities = ["function_calling", "vision"]
regions = ["us", "eu"]

[[models]]
name = "gpt-4o-2024-05-13"
provider = "openai"
quality_bps = 5746
capabilities = ["function_calling", "vision"]
regions = ["us"]
input_usd_per_mtok = "5"
output_usd_per_mtok = "15"

[[models]]
name = "gpt-4o-mini-2024-07-18"
provider = "openai"
quality_bps = 5073
capabilities = ["function_calling", "vision"]
regions = ["us", "eu"]
input_usd_per_mtok = "0.15"
output_usd_per_mtok = "0.6"

[[models]]
name = "Meta-Llama-3.1-8B-Instruct-Turbo"
provider = "meta"
quality_bps = 2085
regions = ["eu"]
input_usd_per_mtok = "0.18"
output_usd_per_mtok = "0.18"
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

fn compiled() -> calybris_policy::CompiledPolicy {
    calybris_policy::compile_bytes(POLICY.as_bytes(), calybris_policy::Format::Toml)
        .expect("the test policy compiles")
}

#[test]
fn policy_check_of_a_toml_file_prints_the_digest_and_the_models_by_name() {
    let dir = temp_dir("policy-toml");
    let path = write(&dir, "policy.toml", POLICY);
    let run = calybris(&["policy", "check", path_str(&path)]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut lines = run.stdout.lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with("VALID "), "{run:?}");
    assert!(
        first.contains("policy epoch 2") && first.contains("3 models"),
        "{first}"
    );
    assert!(first.ends_with(&compiled().digest_hex()), "{first}");
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("id  name"), "{header}");
    let mini = lines
        .find(|line| line.contains("gpt-4o-mini-2024-07-18"))
        .expect("a row for gpt-4o-mini");
    assert!(mini.contains("openai"), "{mini}");
    assert!(mini.contains("0.15") && mini.contains("0.6"), "{mini}");
    assert!(
        mini.contains("function_calling,vision") && mini.contains("us,eu"),
        "{mini}"
    );
    assert!(run.stdout.contains("meta"), "{run:?}");
}

#[test]
fn the_same_policy_in_json_checks_to_the_same_digest() {
    let dir = temp_dir("policy-json");
    let file =
        calybris_policy::parse(POLICY.as_bytes(), calybris_policy::Format::Toml).expect("parses");
    let json = serde_json::to_string_pretty(&file).expect("serializes");
    let path = write(&dir, "policy.json", &json);
    let run = calybris(&["policy", "check", path_str(&path)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with(&compiled().digest_hex()),
        "{run:?}"
    );
    assert!(run.stdout.contains("Meta-Llama-3.1-8B-Instruct-Turbo"));
}

#[test]
fn explain_takes_a_request_that_names_its_model_providers_capabilities_and_regions() {
    let dir = temp_dir("policy-explain");
    let policy = write(&dir, "policy.toml", POLICY);
    let request = write(
        &dir,
        "request.json",
        r#"{"requested_model": "gpt-4o-2024-05-13", "input_tokens": 1000,
            "output_tokens": 500, "business_value_microunits": 100000,
            "allowed_providers": ["openai"], "required_capabilities": ["vision"],
            "required_regions": ["eu"]}"#,
    );
    let run = calybris(&[
        "explain",
        "--json",
        "--policy",
        path_str(&policy),
        "--request",
        path_str(&request),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    // Only gpt-4o-mini (id 2) is an openai model with vision in the eu.
    assert_eq!(json["explanation"]["decision"]["action"], "Substitute");
    assert_eq!(json["explanation"]["decision"]["selected_model_id"], 2);
    assert_eq!(json["names"]["requested_model"], "gpt-4o-2024-05-13");
    assert_eq!(json["names"]["selected_model"], "gpt-4o-mini-2024-07-18");

    let run = calybris(&[
        "explain",
        "--policy",
        path_str(&policy),
        "--request",
        path_str(&request),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("by name: requested gpt-4o-2024-05-13, selected gpt-4o-mini-2024-07-18"),
        "{}",
        run.stdout
    );
}

#[test]
fn unknown_names_bad_prices_and_unknown_keys_are_refused_with_their_place() {
    let dir = temp_dir("policy-refusals");
    let policy = write(&dir, "policy.toml", POLICY);
    let request = write(&dir, "request.json", r#"{"requested_model": "gpt-5"}"#);
    let run = calybris(&[
        "explain",
        "--policy",
        path_str(&policy),
        "--request",
        path_str(&request),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("INVALID INVALID_REQUEST: "),
        "{run:?}"
    );
    assert!(run.stderr.contains("\"gpt-5\""), "{run:?}");

    let price = write(
        &dir,
        "price.toml",
        &POLICY.replacen("\"0.18\"", "\"0.1800001\"", 1),
    );
    let run = calybris(&["policy", "check", path_str(&price)]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("INVALID INVALID_POLICY: "),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("Meta-Llama-3.1-8B-Instruct-Turbo")
            && run.stderr.contains("input_usd_per_mtok"),
        "{run:?}"
    );

    let typo = write(
        &dir,
        "typo.toml",
        &POLICY.replacen("quality_bps = 5073", "qualty_bps = 5073", 1),
    );
    let run = calybris(&["policy", "check", path_str(&typo)]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with("INVALID INVALID_TOML: "), "{run:?}");
    assert!(
        run.stderr.contains("qualty_bps") && run.stderr.contains("line"),
        "{run:?}"
    );

    let numeric_request = write(&dir, "numeric.json", r#"{"requested_model": "x"}"#);
    let numeric_policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples-data/policy.json");
    let run = calybris(&[
        "explain",
        "--policy",
        path_str(&numeric_policy),
        "--request",
        path_str(&numeric_request),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("the policy has no names"), "{run:?}");

    let missing = dir.join("missing.toml");
    let run = calybris(&["policy", "check", path_str(&missing)]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.starts_with("ERROR UNREADABLE: "), "{run:?}");
}

#[test]
fn a_gate_log_records_the_names_and_show_prints_them() {
    use calybris::gate::{Gate, GateConfig};
    let dir = temp_dir("policy-gate");
    let compiled = compiled();
    let gate = Gate::open(
        GateConfig::new(&dir, compiled.policy.clone()).policy_names(compiled.names.clone()),
    )
    .expect("opens");
    gate.close().expect("closes");
    let run = calybris(&["verify", path_str(&dir)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("VERIFIED"), "{run:?}");
    let run = calybris(&["show", path_str(&dir), "--seq", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("policy-names"), "{run:?}");
    assert!(run.stdout.contains("2 gpt-4o-mini-2024-07-18"), "{run:?}");
    assert!(run.stdout.contains("1 meta"), "{run:?}");
    assert!(run.stdout.contains(&compiled.digest_hex()), "{run:?}");
}

#[test]
fn the_catalog_example_checks_with_its_31_models() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = workspace.join("examples/policies/catalog.toml");
    if !std::fs::read_to_string(workspace.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("crates/cli"))
    {
        eprintln!("not inside the Calybris workspace: the example does not apply");
        return;
    }
    let run = calybris(&["policy", "check", path_str(&example)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(", 31 models, digest "), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1 + 1 + 31, "{run:?}");
    assert!(run.stdout.contains("claude-3-5-sonnet-20240620"), "{run:?}");
}
