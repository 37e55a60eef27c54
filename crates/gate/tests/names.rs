//! The policy-names record: written after its policy, kept across reopens and book
//! snapshots, checked by the verifier.

mod common;

use calybris_gate::names::{ModelName, NameMap, ProviderName};
use calybris_gate::record::{LogHeader, PolicyNames};
use calybris_gate::{
    GATE_FORMAT_VERSION, Gate, GateConfig, GateError, GateRecord, NameMapError, VerifyError,
    VerifyOptions, verify_dir,
};
use calybris_wal::{DurableConfig, DurableWal, PolicyRecord, SegmentedReader};
use common::{TempDir, policy};

fn names() -> NameMap {
    NameMap {
        models: vec![
            ModelName {
                model_id: 1,
                name: "dear".into(),
            },
            ModelName {
                model_id: 2,
                name: "cheap".into(),
            },
        ],
        providers: vec![ProviderName {
            provider_id: 0,
            name: "acme-ai".into(),
        }],
        capabilities: Vec::new(),
        regions: Vec::new(),
    }
}

fn kinds(dir: &TempDir) -> Vec<&'static str> {
    let mut reader =
        SegmentedReader::<GateRecord>::open(&dir.0.join("log"), None, None).expect("reader");
    let mut kinds = Vec::new();
    while let Some(entry) = reader.next_entry().expect("entry") {
        kinds.push(entry.record.kind());
    }
    kinds
}

#[test]
fn names_follow_their_policy_and_are_not_repeated_at_reopen() -> Result<(), GateError> {
    let dir = TempDir::new("names-open");
    let config = GateConfig::new(&dir.0, policy(false)).policy_names(names());
    let gate = Gate::open(config.clone())?;
    assert_eq!(gate.policy_names().as_deref(), Some(&names()));
    gate.close()?;
    assert_eq!(kinds(&dir), ["header", "policy", "policy-names"]);
    // The same policy and names: nothing new is written.
    Gate::open(config)?.close()?;
    assert_eq!(kinds(&dir), ["header", "policy", "policy-names"]);
    // Without names, the logged names of the same policy are still in force.
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)))?;
    assert_eq!(gate.policy_names().as_deref(), Some(&names()));
    // A book snapshot repeats the policy and its names after it.
    let _ = gate.snapshot_books()?;
    gate.close()?;
    assert_eq!(
        kinds(&dir),
        [
            "header",
            "policy",
            "policy-names",
            "book-snapshot",
            "policy",
            "policy-names"
        ]
    );
    let report = verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
    assert_eq!(report.counts.policy_names, 2);
    Ok(())
}

#[test]
fn install_policy_with_names_logs_both_and_the_plain_install_clears_them() -> Result<(), GateError>
{
    let dir = TempDir::new("names-install");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)))?;
    assert!(gate.policy_names().is_none());
    let mut three = names();
    three.models.push(ModelName {
        model_id: 3,
        name: "free".into(),
    });
    let _ = gate.install_policy_with_names(policy(true), three.clone())?;
    assert_eq!(gate.policy_names().as_deref(), Some(&three));
    let _ = gate.install_policy(policy(false))?;
    assert!(gate.policy_names().is_none());
    gate.close()?;
    assert_eq!(
        kinds(&dir),
        ["header", "policy", "policy", "policy-names", "policy"]
    );
    let report = verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
    assert_eq!(report.counts.policy_names, 1);
    Ok(())
}

#[test]
fn names_that_do_not_fit_the_policy_are_refused_before_anything_is_logged() {
    let dir = TempDir::new("names-refused");
    let mut wrong = names();
    wrong.models.push(ModelName {
        model_id: 3,
        name: "absent".into(),
    });
    let error = Gate::open(GateConfig::new(&dir.0, policy(false)).policy_names(wrong.clone()));
    assert!(matches!(
        error,
        Err(GateError::InvalidNames(NameMapError::UnknownModel {
            model_id: 3,
            ..
        }))
    ));
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false))).expect("opens");
    let refused = gate.install_policy_with_names(policy(false), wrong);
    assert!(matches!(refused, Err(GateError::InvalidNames(_))));
    gate.close().expect("close");
    assert_eq!(kinds(&dir), ["header", "policy"]);
}

fn forged(dir: &TempDir, records: &[GateRecord]) {
    std::fs::create_dir_all(&dir.0).expect("dir");
    let wal =
        DurableWal::<GateRecord>::open(&dir.0.join("log"), DurableConfig::default()).expect("open");
    for record in records {
        let _ = wal.append(record).expect("append");
    }
    wal.close().expect("close");
}

fn header() -> GateRecord {
    GateRecord::Header(LogHeader {
        format_version: GATE_FORMAT_VERSION,
    })
}

#[test]
fn the_verifier_refuses_names_of_an_unrecorded_policy() {
    let dir = TempDir::new("names-forged-unknown");
    let sealed = policy(false);
    forged(
        &dir,
        &[
            header(),
            GateRecord::PolicyNames(PolicyNames {
                policy_digest: *sealed.digest(),
                names: names(),
            }),
        ],
    );
    assert!(matches!(
        verify_dir(&dir.0, &VerifyOptions::default()),
        Err(VerifyError::NamesUnknownPolicy { sequence: 1, .. })
    ));
}

#[test]
fn the_verifier_refuses_names_of_ids_the_policy_lacks() {
    let dir = TempDir::new("names-forged-ids");
    let sealed = policy(false);
    let mut wrong = names();
    wrong.providers[0].provider_id = 5;
    forged(
        &dir,
        &[
            header(),
            GateRecord::Policy(PolicyRecord {
                policy_digest: *sealed.digest(),
                policy: sealed.clone(),
            }),
            GateRecord::PolicyNames(PolicyNames {
                policy_digest: *sealed.digest(),
                names: wrong,
            }),
        ],
    );
    match verify_dir(&dir.0, &VerifyOptions::default()) {
        Err(VerifyError::InvalidNames {
            sequence: 2,
            error: NameMapError::UnknownProvider { provider_id: 5, .. },
        }) => {}
        other => panic!("expected the unknown provider to be named, got {other:?}"),
    }
}

#[test]
fn the_report_counts_selections_by_model_and_provider_name() -> Result<(), GateError> {
    let dir = TempDir::new("names-report");
    let gate = Gate::open(
        GateConfig::new(&dir.0, policy(false))
            .policy_names(names())
            .tenant("acme", 100_000_000),
    )?;
    for k in 0..3 {
        let model = if k == 0 { 1 } else { 2 };
        gate.release(gate.decide("acme", common::request(k, model))?)?;
    }
    // A policy installed without names: its selections are reported by id only.
    let _ = gate.install_policy(policy(true))?;
    gate.release(gate.decide("acme", common::request(3, 3))?)?;
    gate.close()?;
    let report = verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
    let rows: Vec<_> = report
        .selections
        .iter()
        .map(|row| {
            (
                row.model_id,
                row.model.as_deref(),
                row.provider.as_deref(),
                row.selections,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            // The selection under the second, unnamed policy (the kernel picked 2).
            (2, None, None, 1),
            // The three under the named policy (the kernel substituted 2 for 1).
            (2, Some("cheap"), Some("acme-ai"), 3),
        ]
    );
    let decisions: u64 = report.selections.iter().map(|row| row.selections).sum();
    assert_eq!(decisions, report.counts.decisions);
    let cost: u128 = report
        .selections
        .iter()
        .map(|row| row.estimated_cost_microunits)
        .sum();
    assert!(cost > 0, "the priced selections carry their estimates");
    Ok(())
}
