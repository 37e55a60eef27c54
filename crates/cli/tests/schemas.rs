//! The JSON schemas in docs/schemas/ must describe what the command actually
//! reads and writes: their field lists are compared with the serde forms of the
//! kernel types and with a real `verify --json` report.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use calybris::kernel::{KernelInput, KernelModel, PolicyParams};
use common::*;
use serde_json::Value;

/// The workspace's `docs/` folder, or `None` when the crate is built on its own from
/// its package (crates.io, `cargo package`), which does not contain the docs.
///
/// Inside the workspace the docs must be there: a missing folder fails the test
/// rather than skipping it, so the checks below cannot quietly stop running.
fn workspace_docs() -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let in_workspace = std::fs::read_to_string(workspace.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("crates/cli"));
    if !in_workspace {
        eprintln!("not inside the Calybris workspace: the docs checks do not apply");
        return None;
    }
    let docs = workspace.join("docs");
    assert!(
        docs.join("CLI.md").is_file(),
        "{} is missing",
        docs.display()
    );
    Some(docs)
}

fn schema(docs: &Path, name: &str) -> Value {
    let path = docs.join("schemas").join(name);
    let text = std::fs::read_to_string(&path).expect("schema file");
    serde_json::from_str(&text).expect("schema is JSON")
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Names of the three models and three providers of `policy`.
fn names() -> calybris::gate::NameMap {
    calybris::gate::NameMap {
        models: [(1, "dear"), (2, "mid"), (3, "cheap")]
            .into_iter()
            .map(|(model_id, name)| calybris::gate::names::ModelName {
                model_id,
                name: name.into(),
            })
            .collect(),
        providers: [(0, "north"), (1, "south"), (2, "east")]
            .into_iter()
            .map(|(provider_id, name)| calybris::gate::names::ProviderName {
                provider_id,
                name: name.into(),
            })
            .collect(),
        ..calybris::gate::NameMap::default()
    }
}

#[test]
fn the_policy_schema_lists_every_field_of_the_kernel_types() {
    let Some(docs) = workspace_docs() else {
        return;
    };
    let s = schema(&docs, "policy.schema.json");
    let params = &s["properties"]["params"];
    let serialized = serde_json::to_value(PolicyParams::default()).expect("serialize");
    assert_eq!(keys(&params["properties"]), keys(&serialized));
    assert_eq!(strings(&params["required"]), keys(&serialized));
    let model = KernelModel {
        model_id: 1,
        provider_id: 0,
        quality_bps: 0,
        risk_ceiling_bps: 0,
        enabled: 1,
        p95_latency_ms: 0,
        capabilities: 0,
        region_mask: 0,
        input_cost_microunits_per_million_tokens: 0,
        output_cost_microunits_per_million_tokens: 0,
    };
    let serialized = serde_json::to_value(model).expect("serialize");
    let items = &s["properties"]["models"]["items"];
    assert_eq!(keys(&items["properties"]), keys(&serialized));
    assert_eq!(strings(&items["required"]), keys(&serialized));
}

#[test]
fn the_request_schema_lists_every_field_of_the_kernel_input() {
    let Some(docs) = workspace_docs() else {
        return;
    };
    let s = schema(&docs, "request.schema.json");
    let serialized = serde_json::to_value(KernelInput::default()).expect("serialize");
    assert_eq!(keys(&s["properties"]), keys(&serialized));
    assert_eq!(s["additionalProperties"], false);
}

#[test]
fn the_report_schema_matches_a_real_report_and_every_reason_code() {
    let Some(docs) = workspace_docs() else {
        return;
    };
    let s = schema(&docs, "verify-report.schema.json");
    let dir = temp_dir("schema");
    let log = dir.join("audit.cwal");
    write_log(&log, None, 2);
    let (_, report) = verify_json(&log, &[]);
    assert_eq!(keys(&s["properties"]), keys(&report));
    assert_eq!(strings(&s["required"]), keys(&report));
    let mut codes: BTreeSet<String> = calybris_cli::report::Reason::ALL
        .iter()
        .map(|r| r.code().to_owned())
        .collect();
    let listed = strings(&s["properties"]["reason"]["enum"]);
    assert_eq!(listed, std::mem::take(&mut codes));
    assert_eq!(report["gate"], Value::Null);
}

#[test]
fn the_report_schema_matches_a_real_gate_report() {
    let Some(docs) = workspace_docs() else {
        return;
    };
    let s = schema(&docs, "verify-report.schema.json");
    let dir = temp_dir("schema-gate");
    let gate = calybris::gate::Gate::open(
        calybris::gate::GateConfig::new(&dir, policy(1)).tenant("acme", 1_000_000),
    )
    .expect("open the gate");
    let admission = gate.decide("acme", request(0)).expect("decide");
    let cost = admission.decision().estimated_cost_microunits;
    gate.settle(admission, cost / 2).expect("settle");
    gate.close().expect("close");

    let (run, report) = verify_json(&dir, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(keys(&s["properties"]), keys(&report));
    assert_eq!(strings(&s["required"]), keys(&report));
    let gate_schema = &s["properties"]["gate"];
    let gate = &report["gate"];
    assert_eq!(keys(&gate_schema["properties"]), keys(gate));
    assert_eq!(strings(&gate_schema["required"]), keys(gate));
    let counts = &gate_schema["properties"]["counts"];
    assert_eq!(keys(&counts["properties"]), keys(&gate["counts"]));
    assert_eq!(strings(&counts["required"]), keys(&gate["counts"]));
    let tenant = &gate_schema["properties"]["tenants"]["items"];
    let tenants = gate["tenants"].as_array().expect("tenants");
    assert_eq!(tenants.len(), 1);
    assert_eq!(keys(&tenant["properties"]), keys(&tenants[0]));
    assert_eq!(strings(&tenant["required"]), keys(&tenants[0]));
    // The patterns of the strings hold for the real values.
    let digest = gate["ledger_digest"].as_str().expect("a digest");
    assert_eq!(digest.len(), 64);
    assert!(
        digest
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let units = tenants[0]["initial_units"].as_str().expect("units");
    assert_eq!(units, "1.000000");
    let model = &gate_schema["properties"]["models"]["items"];
    let models = gate["models"].as_array().expect("models");
    assert_eq!(models.len(), 1, "one selection, one model");
    assert_object_matches(model, &models[0], "gate.models");
    assert_eq!(models[0]["selections"], 1);
    // No policy-names record in this log: the model is named by id only.
    assert_eq!(models[0]["model"], Value::Null);
}

#[test]
fn the_cli_doc_lists_every_reason_code() {
    let Some(docs) = workspace_docs() else {
        return;
    };
    let doc = std::fs::read_to_string(docs.join("CLI.md")).expect("docs/CLI.md");
    for reason in calybris_cli::report::Reason::ALL {
        assert!(
            doc.contains(&format!(
                "| `{}` | {} |",
                reason.code(),
                reason.outcome().word()
            )),
            "docs/CLI.md does not list {} as {}",
            reason.code(),
            reason.outcome().word()
        );
    }
    for code in calybris_cli::report::Code::ALL {
        assert!(
            doc.contains(&format!("`{}`", code.code())),
            "docs/CLI.md does not name the code {}",
            code.code()
        );
    }
}

/// Checks the keys of `value` against the `properties` and `required` of `schema`,
/// then each listed array's items and nested objects, one level down.
fn assert_object_matches(schema: &Value, value: &Value, what: &str) {
    assert_eq!(keys(&schema["properties"]), keys(value), "{what}");
    assert_eq!(strings(&schema["required"]), keys(value), "{what}");
    assert_eq!(schema["additionalProperties"], false, "{what}");
}

#[test]
fn the_inspect_schema_matches_real_reports() {
    let Some(docs) = workspace_docs() else {
        return;
    };
    let s = schema(&docs, "inspect-report.schema.json");
    let verify_schema = schema(&docs, "verify-report.schema.json");
    assert_eq!(
        s["properties"]["verify"]["$ref"],
        "verify-report.schema.json"
    );

    // An audited log and a gate directory.
    let dir = temp_dir("schema-inspect");
    let log = dir.join("audit.cwal");
    write_log(&log, None, 6);
    let gate_dir = dir.join("gate");
    let names = names();
    let gate = calybris::gate::Gate::open(
        calybris::gate::GateConfig::new(&gate_dir, policy(1))
            .policy_names(names)
            .tenant("acme", 1_000_000),
    )
    .expect("open the gate");
    for i in 0..4 {
        let admission = gate.decide("acme", request(i)).expect("decide");
        if admission.is_admitted() {
            let cost = admission.decision().estimated_cost_microunits;
            gate.settle(admission, cost / 2).expect("settle");
        }
    }
    gate.close().expect("close");

    for target in [&log, &gate_dir] {
        let run = calybris(&["inspect", "--json", path_str(target)]);
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stdout.lines().count(), 1, "one JSON value on one line");
        let report = run.json();
        assert_object_matches(&s, &report, "inspect");
        for (list, item) in [
            ("policies", &report["policies"]),
            ("by_action", &report["by_action"]),
            ("by_reason", &report["by_reason"]),
            ("by_model", &report["by_model"]),
            ("tenants", &report["tenants"]),
        ] {
            let items = item.as_array().expect("an array");
            assert!(!items.is_empty(), "{list}");
            for value in items {
                assert_object_matches(&s["properties"][list]["items"], value, list);
            }
        }
        for list in ["by_action", "by_reason"] {
            let total: u64 = report[list]
                .as_array()
                .expect("an array")
                .iter()
                .filter_map(|row| row["share_tenths_percent"].as_u64())
                .sum();
            assert_eq!(total, 1_000, "{list} shares");
        }
        let actions: BTreeSet<String> =
            strings(&s["properties"]["by_action"]["items"]["properties"]["action"]["enum"]);
        for row in report["by_action"].as_array().expect("an array") {
            assert!(actions.contains(row["action"].as_str().expect("a word")));
        }
        assert_object_matches(&verify_schema, &report["verify"], "inspect's verify");
        assert_eq!(report["verify"]["outcome"], "VERIFIED");
        let at = report["first_recorded_at"].as_str().expect("a timestamp");
        assert!(at.ends_with('Z') && at.len() == 24, "{at}");
    }

    // An unreadable target: still one object, with the ERROR in `verify`.
    let run = calybris(&["inspect", "--json", path_str(&dir.join("missing"))]);
    assert_eq!(run.code, 2);
    let report = run.json();
    assert_object_matches(&s, &report, "inspect of a missing file");
    assert_eq!(report["verify"]["reason"], "UNREADABLE");
}

#[test]
fn the_policy_file_schema_lists_every_field_and_default_of_the_human_format() {
    let Some(docs) = workspace_docs() else {
        return;
    };
    let s = schema(&docs, "policy-file.schema.json");
    assert_eq!(s["additionalProperties"], false);
    // The smallest file: every key the schema gives a default is left out.
    let minimal = r#"
        [[models]]
        name = "m"
        provider = "p"
        quality_bps = 1
        input_usd_per_mtok = "1"
        output_usd_per_mtok = "1"
    "#;
    let file = calybris_policy::parse(minimal.as_bytes(), calybris_policy::Format::Toml)
        .expect("the minimal file parses");
    let mut serialized = serde_json::to_value(&file).expect("serialize");
    assert_eq!(keys(&s["properties"]), keys(&serialized));
    assert_eq!(
        strings(&s["required"]),
        BTreeSet::from(["models".to_owned()])
    );
    let items = &s["properties"]["models"]["items"];
    assert_eq!(items["additionalProperties"], false);
    let mut model = serialized["models"][0].take();
    // `id` is optional without a default (left out when not set).
    assert!(model.get("id").is_none());
    let mut with_id = keys(&model);
    with_id.insert("id".to_owned());
    assert_eq!(keys(&items["properties"]), with_id);
    assert_eq!(
        strings(&items["required"]),
        [
            "input_usd_per_mtok",
            "name",
            "output_usd_per_mtok",
            "provider",
            "quality_bps"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<BTreeSet<_>>()
    );
    // Every default the schema documents is the one the parser applies.
    for (level, schema_props, value) in [
        ("policy", &s["properties"], &mut serialized),
        ("model", &items["properties"], &mut model),
    ] {
        for (key, property) in schema_props.as_object().expect("properties") {
            if let Some(default) = property.get("default") {
                assert_eq!(&value[key.as_str()], default, "{level} default of {key}");
            } else if level == "policy" && key != "models" {
                panic!("policy key {key} has no documented default");
            }
        }
    }
}

#[test]
fn inspect_and_verify_name_models_and_providers_where_the_log_holds_names() {
    let dir = temp_dir("names-inspect");
    let names = names();
    let gate = calybris::gate::Gate::open(
        calybris::gate::GateConfig::new(&dir, policy(1))
            .policy_names(names.clone())
            .tenant("acme", 1_000_000),
    )
    .expect("open the gate");
    for i in 0..6 {
        let admission = gate.decide("acme", request(i)).expect("decide");
        if admission.is_admitted() {
            gate.release(admission).expect("release");
        }
    }
    gate.close().expect("close");

    let run = calybris(&["inspect", "--json", path_str(&dir)]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    let rows = report["by_model"].as_array().expect("by_model");
    assert!(!rows.is_empty(), "{report}");
    for row in rows {
        let id = u32::try_from(row["model_id"].as_u64().expect("an id")).expect("u32");
        assert_eq!(row["model"].as_str(), names.model_name(id), "{row}");
        let provider = u16::try_from(row["provider_id"].as_u64().expect("an id")).expect("u16");
        assert_eq!(
            row["provider"].as_str(),
            names.provider_name(provider),
            "{row}"
        );
    }
    let total: u64 = rows
        .iter()
        .filter_map(|row| row["selections"].as_u64())
        .sum();
    let selections: u64 = report["by_action"]
        .as_array()
        .expect("by_action")
        .iter()
        .filter(|row| row["action"] != "REJECT")
        .filter_map(|row| row["count"].as_u64())
        .sum();
    assert_eq!(total, selections);
    // verify's rows are inspect's without the units string.
    let without_units: Vec<Value> = rows
        .iter()
        .cloned()
        .map(|mut row| {
            row.as_object_mut()
                .expect("an object")
                .remove("estimated_cost_units");
            row
        })
        .collect();
    assert_eq!(
        report["verify"]["gate"]["models"].as_array(),
        Some(&without_units)
    );

    let run = calybris(&["inspect", path_str(&dir)]);
    assert_eq!(run.code, 0, "{run:?}");
    let first = &rows[0];
    let line = run
        .stdout
        .lines()
        .find(|line| {
            line.trim_start()
                .starts_with(first["model"].as_str().expect("named"))
        })
        .unwrap_or_else(|| panic!("no line names the model: {}", run.stdout));
    assert!(
        line.contains(first["provider"].as_str().expect("named")),
        "{line}"
    );

    let run = calybris(&["verify", path_str(&dir)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("selections by model:"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.lines().any(
            |line| line.contains(first["model"].as_str().expect("named"))
                && line.contains(first["provider"].as_str().expect("named"))
        ),
        "{}",
        run.stdout
    );
}
