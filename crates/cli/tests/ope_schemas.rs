//! The off-policy commands on an HMAC-keyed gate directory with a holdout and a
//! staged live shadow candidate: `--key-file` and `--holdout-key-file` in `regret`,
//! `shadow`, `promote`, `rollback` and `counterfactual`, and each `--json` output
//! checked against its schema in docs/schemas/ (every key, every type, nested, by
//! the small checker below: the workspace has no JSON-schema validator).

mod common;

use std::path::{Path, PathBuf};

use calybris::digest::SealedPolicy;
use calybris::gate::{Gate, GateConfig, HoldoutConfig, HoldoutKey, Outcome};
use common::path_str as s;
use common::*;
use serde_json::{Value, json};

const HOLDOUT_KEY: &[u8] = b"calybris cli test holdout key, 32 bytes or more";

fn docs() -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let in_workspace = std::fs::read_to_string(workspace.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("crates/cli"));
    if !in_workspace {
        eprintln!("not inside the Calybris workspace: the schema checks do not apply");
        return None;
    }
    Some(workspace.join("docs"))
}

fn schema(docs: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(docs.join("schemas").join(name)).expect("schema file");
    serde_json::from_str(&text).expect("schema is JSON")
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown schema type {other}"),
    }
}

/// Checks `value` against `node` of the schema `root`: `$ref` to `#/$defs/...`,
/// `oneOf`, `type`, `enum`, the 64-hex and decimal patterns, array items and
/// bounds, and for objects exactly the listed properties, all required, none extra.
fn check(root: &Value, node: &Value, value: &Value, at: &str) {
    if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/$defs/")
            .unwrap_or_else(|| panic!("{at}: unsupported $ref {reference}"));
        return check(root, &root["$defs"][name], value, at);
    }
    if let Some(options) = node.get("oneOf").and_then(Value::as_array) {
        // The schemas use `oneOf` for "a definition or null" only.
        let null = json!({"type": "null"});
        assert_eq!(options.len(), 2, "{at}: {node}");
        assert!(options.contains(&null), "{at}: {node}");
        if !value.is_null() {
            let other = options
                .iter()
                .find(|o| **o != null)
                .expect("the definition");
            check(root, other, value, at);
        }
        return;
    }
    match &node["type"] {
        Value::String(name) => assert!(type_matches(name, value), "{at}: {value} is not {name}"),
        Value::Array(names) => assert!(
            names
                .iter()
                .any(|n| type_matches(n.as_str().expect("a type name"), value)),
            "{at}: {value} is none of {names:?}"
        ),
        other => panic!("{at}: a schema node without a type: {other}"),
    }
    if value.is_null() {
        return;
    }
    if let Some(allowed) = node.get("enum").and_then(Value::as_array) {
        assert!(allowed.contains(value), "{at}: {value} not in {allowed:?}");
    }
    match node.get("pattern").and_then(Value::as_str) {
        Some("^[0-9a-f]{64}$") => {
            let text = value.as_str().expect("a string");
            assert!(
                text.len() == 64
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{at}: {text} is not a lowercase hex digest"
            );
        }
        Some("^-?[0-9]+$") => {
            let text = value.as_str().expect("a string");
            assert!(text.parse::<i128>().is_ok(), "{at}: {text} is not decimal");
        }
        Some(other) => panic!("{at}: unchecked pattern {other}"),
        None => {}
    }
    if let Some(items) = value.as_array() {
        if let Some(min) = node.get("minItems").and_then(Value::as_u64) {
            assert!(items.len() as u64 >= min, "{at}: fewer than {min} items");
        }
        if let Some(max) = node.get("maxItems").and_then(Value::as_u64) {
            assert!(items.len() as u64 <= max, "{at}: more than {max} items");
        }
        for (i, item) in items.iter().enumerate() {
            check(root, &node["items"], item, &format!("{at}[{i}]"));
        }
    }
    if let Some(object) = value.as_object() {
        assert_eq!(node["additionalProperties"], false, "{at}: open object");
        let properties = node["properties"].as_object().expect("properties");
        let listed: Vec<&String> = properties.keys().collect();
        let mut found: Vec<&String> = object.keys().collect();
        let mut expected = listed.clone();
        found.sort();
        expected.sort();
        assert_eq!(found, expected, "{at}: keys");
        let mut required: Vec<&str> = node["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        required.sort_unstable();
        let expected: Vec<&str> = expected.iter().map(|k| k.as_str()).collect();
        assert_eq!(required, expected, "{at}: every key is required");
        for (key, property) in properties {
            check(root, property, &object[key], &format!("{at}.{key}"));
        }
    }
}

fn conforms(docs: &Path, name: &str, value: &Value) {
    let root = schema(docs, name);
    check(&root, &root, value, name);
}

/// `policy(1)` with model 1 ten times cheaper: another choice on many requests.
fn candidate_policy() -> SealedPolicy {
    let mut models = policy(1).snapshot().models().to_vec();
    models[0].input_cost_microunits_per_million_tokens /= 10;
    models[0].output_cost_microunits_per_million_tokens /= 10;
    policy_of(models, 1)
}

/// A keyed gate directory: 20 % holdout under `policy(3)` as the baseline, the
/// cheaper candidate staged for live shadow after request 10, an outcome for every
/// admitted selection (its expected utility plus a deterministic wobble).
fn write(dir: &Path) {
    let holdout = HoldoutConfig::new(HoldoutKey::new(HOLDOUT_KEY).expect("key"), policy(3));
    let gate = Gate::open(
        GateConfig::new(dir, policy(1))
            .key(key())
            .tenant("acme", 1_000_000_000)
            .holdout(holdout)
            .clock(|| 1_700_000_000_000),
    )
    .expect("open");
    for i in 0..400 {
        if i == 10 {
            let _ticket = gate.stage_shadow(candidate_policy()).expect("stage");
        }
        let admission = gate.decide("acme", request(i)).expect("decide");
        if !admission.is_admitted() {
            continue;
        }
        let reference = admission.decision_ref();
        let utility = admission.decision().expected_utility_microunits;
        let cost = admission.decision().estimated_cost_microunits;
        gate.settle(admission, cost).expect("settle");
        let wobble = (i as i64 * 7_919) % 2_001 - 1_000;
        let _ticket = gate
            .record_outcome(
                reference,
                Outcome {
                    reward_microunits: utility + wobble,
                    success: true,
                    latency_ms: 100,
                    detail: Vec::new(),
                },
            )
            .expect("outcome");
    }
    gate.close().expect("close");
}

#[test]
fn every_off_policy_command_reads_a_keyed_gate_and_prints_its_schema() {
    let root = temp_dir("ope-keyed");
    let dir = root.join("gate");
    write(&dir);
    let key_file = root.join("log.key");
    std::fs::write(&key_file, KEY).expect("key file");
    let holdout_file = root.join("holdout.key");
    std::fs::write(&holdout_file, HOLDOUT_KEY).expect("holdout key file");
    let keys = [
        "--key-file",
        s(&key_file),
        "--holdout-key-file",
        s(&holdout_file),
    ];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(keys.iter())
            .map(|a| (*a).to_owned())
            .collect()
    };
    let run_with = |args: &[&str]| {
        let owned = with(args);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        calybris(&refs)
    };
    let docs = docs();

    // Without the log's key every command refuses the directory.
    for args in [
        vec!["regret", s(&dir)],
        vec!["shadow", s(&dir)],
        vec!["rollback", s(&dir)],
        vec!["counterfactual", s(&dir), "--seq", "5"],
    ] {
        let run = calybris(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("LOG_NOT_VERIFIED"), "{run:?}");
    }
    // A holdout key that is not the gate's is named.
    let wrong = root.join("wrong.key");
    std::fs::write(&wrong, [7u8; 32]).expect("wrong key");
    let run = calybris(&[
        "regret",
        s(&dir),
        "--key-file",
        s(&key_file),
        "--holdout-key-file",
        s(&wrong),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("holdout key"), "{run:?}");

    // regret: the holdout comparison is there.
    let run = run_with(&["regret", s(&dir), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1);
    let regret = run.json();
    let holdout = &regret["holdout"];
    assert_eq!(holdout["share_bps"], 2_000);
    assert_eq!(holdout["assigned"], 400);
    let held = holdout["held_out"].as_u64().expect("held out");
    assert!((40..=120).contains(&held), "{held} of 400 at 20 %");
    assert!(holdout["baseline_reward"]["n"].as_u64().expect("n") > 1);
    let text = run_with(&["regret", s(&dir)]);
    assert!(text.stdout.contains("holdout (2000 bps)"), "{text:?}");

    // shadow without a candidate: the live results alone, for the staged candidate.
    let run = run_with(&["shadow", s(&dir), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let live_only = run.json();
    assert_eq!(live_only["shadow"], Value::Null);
    let live = live_only["live"].as_array().expect("live");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["decisions"], 390);
    assert_eq!(
        live[0]["candidate_digest"],
        calybris::digest::digest_to_hex(&candidate_policy().digest().0)
    );
    assert!(
        live[0]["by_kind"]["other-model"].as_u64().expect("n") > 0,
        "the cheaper candidate picks model 1 elsewhere: {live_only}"
    );
    let text = run_with(&["shadow", s(&dir)]);
    assert!(text.stdout.contains("live shadow of candidate"), "{text:?}");

    // shadow with a candidate of the same rules (another epoch): promotable.
    let same = root.join("same.json");
    let mut value = policy_json(policy(1).snapshot());
    value["params"]["policy_epoch"] = json!(9);
    std::fs::write(&same, value.to_string()).expect("candidate");
    let run = run_with(&["shadow", s(&dir), "--candidate", s(&same), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let shadow = run.json();
    assert!(!shadow["shadow"]["baseline_value"].is_null(), "{shadow}");
    let report = root.join("report.json");
    std::fs::write(&report, &run.stdout).expect("report");

    // promote and rollback on the keyed directory.
    let run = run_with(&[
        "promote",
        s(&dir),
        "--candidate",
        s(&same),
        "--report",
        s(&report),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let promoted = run.json();
    assert_eq!(promoted["result"], "PROMOTED");
    assert_eq!(
        promoted["report_digest"],
        shadow["promotion"]["report_digest"]
    );
    let run = run_with(&["rollback", s(&dir), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let rolled = run.json();
    assert_eq!(rolled["result"], "ROLLED_BACK");
    assert_eq!(rolled["report_digest"], Value::Null);
    assert_eq!(rolled["policy_digest"], promoted["previous_policy_digest"]);
    // inspect replays the held-out decisions (their baseline is a staged policy) and
    // show finds a held-out decision's policy.
    let run = calybris(&["inspect", s(&dir), "--key-file", s(&key_file), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let held_out_sequence = calybris::wal::SegmentedReader::<calybris::gate::GateRecord>::open(
        &dir.join(calybris::gate::LOG_DIR),
        Some(&key()),
        None,
    )
    .expect("log")
    .map(|entry| entry.expect("entry"))
    .find_map(|entry| match entry.record {
        calybris::gate::GateRecord::Decision(d) if d.holdout.is_some_and(|h| h.held_out) => {
            Some(entry.sequence)
        }
        _ => None,
    })
    .expect("a held-out decision");
    let run = calybris(&[
        "show",
        s(&dir),
        "--key-file",
        s(&key_file),
        "--seq",
        &held_out_sequence.to_string(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    // `calybris verify` names a forged shadow note and a forged holdout assignment.
    let records: Vec<calybris::gate::GateRecord> =
        calybris::wal::SegmentedReader::<calybris::gate::GateRecord>::open(
            &dir.join(calybris::gate::LOG_DIR),
            Some(&key()),
            None,
        )
        .expect("log")
        .map(|entry| entry.expect("entry").record)
        .collect();
    for (name, reason) in [
        ("shadow", "SHADOW_MISMATCH"),
        ("holdout", "HOLDOUT_MISMATCH"),
    ] {
        let mut forged = records.clone();
        let target = forged
            .iter_mut()
            .find_map(|record| match record {
                calybris::gate::GateRecord::Decision(d)
                    if d.shadow.is_some() && d.holdout.is_some_and(|h| !h.held_out) =>
                {
                    Some(d)
                }
                _ => None,
            })
            .expect("a noted decision");
        if name == "shadow" {
            target.shadow.as_mut().expect("note").selected_model_id ^= 7;
        } else {
            target.holdout.as_mut().expect("note").held_out = true;
        }
        let forged_dir = root.join(format!("forged-{name}"));
        std::fs::create_dir_all(&forged_dir).expect("dir");
        let wal = calybris::wal::DurableWal::<calybris::gate::GateRecord>::open(
            &forged_dir.join(calybris::gate::LOG_DIR),
            calybris::wal::DurableConfig {
                key: Some(key()),
                ..calybris::wal::DurableConfig::default()
            },
        )
        .expect("open");
        for record in &forged {
            let _ticket = wal.append(record).expect("append");
        }
        wal.close().expect("close");
        let (run, report) = verify_json(&forged_dir, &["--key-file", s(&key_file)]);
        assert_eq!(run.code, 1, "{name}: {run:?}");
        assert_eq!(report["reason"], reason, "{name}: {report}");
    }

    // The directory still verifies with both keys after both; `verify` with another
    // holdout key is WRONG_KEY.
    let (verified, _) = verify_json(
        &dir,
        &[
            "--key-file",
            s(&key_file),
            "--holdout-key-file",
            s(&holdout_file),
        ],
    );
    assert_eq!(verified.code, 0, "{verified:?}");
    let (refused, report) = verify_json(
        &dir,
        &["--key-file", s(&key_file), "--holdout-key-file", s(&wrong)],
    );
    assert_eq!(refused.code, 2, "{refused:?}");
    assert_eq!(report["reason"], "WRONG_KEY", "{report}");

    // counterfactual of a decision.
    let run = run_with(&["counterfactual", s(&dir), "--seq", "5", "--json"]);
    let counterfactual = if run.code == 0 {
        run.json()
    } else {
        // Record 5 may not be a decision: take the first that is.
        let seq = (6..40)
            .find(|seq| run_with(&["counterfactual", s(&dir), "--seq", &seq.to_string()]).code == 0)
            .expect("a decision among the first records");
        run_with(&[
            "counterfactual",
            s(&dir),
            "--seq",
            &seq.to_string(),
            "--json",
        ])
        .json()
    };

    let Some(docs) = docs else {
        return;
    };
    conforms(&docs, "regret-report.schema.json", &regret);
    conforms(&docs, "shadow-report.schema.json", &live_only);
    conforms(&docs, "shadow-report.schema.json", &shadow);
    conforms(&docs, "promotion-result.schema.json", &promoted);
    conforms(&docs, "promotion-result.schema.json", &rolled);
    conforms(&docs, "counterfactual-report.schema.json", &counterfactual);
    // Lists the schemas check are not empty in these outputs.
    for (what, list) in [
        ("regret rows", &regret["rows"]),
        ("shadow estimates", &shadow["shadow"]["estimates"]),
        ("live by_reason", &live_only["live"][0]["by_reason"]),
        ("counterfactual changes", &counterfactual["changes"]),
    ] {
        assert!(
            !list.as_array().expect("an array").is_empty(),
            "{what} is empty"
        );
    }
}
