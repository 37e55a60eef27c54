//! `calybris verify`, `inspect` and `show` on gate directories (one chained log per
//! directory, written by `calybris::gate::Gate`), through the built binary: a
//! verified directory with its books, forged budget records named by their reason
//! codes, a flipped byte named by the chain's code, and a keyed directory.

mod common;

use std::path::Path;

use calybris::gate::record::{SettlementKind, SettlementRecord, TenantCreated};
use calybris::gate::{CallerMeta, Gate, GateConfig, GateRecord, LOG_DIR};
use calybris::wal::{DurableConfig, DurableWal, Entry, SegmentedReader, WalAnchor, WalKey};
use common::*;

/// The caller's request id of decision `i`.
fn request_id(i: u64) -> [u8; 16] {
    let mut id = [0xab; 16];
    id[8..].copy_from_slice(&i.to_be_bytes());
    id
}

/// What `write_gate` made, for the checks.
struct Written {
    anchor: WalAnchor,
    ledger_digest: String,
    /// (sequence, tenant) of every decision.
    decisions: Vec<(u64, &'static str)>,
    /// Sequences of the settlements, each with the decision it settles.
    settlements: Vec<(u64, u64)>,
}

/// A gate directory: tenants "acme" (1,000,000 microunits) and "globex" (20,000),
/// eight decisions, every admitted one settled at half its estimate.
fn write_gate(dir: &Path, key: Option<WalKey>) -> Written {
    let mut config = GateConfig::new(dir, policy(1))
        .tenant("acme", 1_000_000)
        .tenant("globex", 20_000)
        .clock(|| 1_700_000_000_000);
    if let Some(key) = key {
        config = config.key(key);
    }
    let gate = Gate::open(config).expect("open the gate");
    let mut decisions = Vec::new();
    let mut settlements = Vec::new();
    for i in 0..8 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        let caller = CallerMeta {
            request_id: request_id(i),
            recorded_at_unix_ms: 1_700_000_000_000 + i,
        };
        let admission = gate
            .decide_with(tenant, request(i), caller)
            .expect("decide");
        let sequence = admission.log_sequence();
        decisions.push((sequence, tenant));
        if admission.is_admitted() {
            let half = admission.decision().estimated_cost_microunits / 2;
            let settled = gate.settle(admission, half).expect("settle");
            settlements.push((settled.log_sequence.expect("logged"), sequence));
        }
    }
    let ledger_digest = gate
        .prove_conservation()
        .expect("proof")
        .ledger_digest
        .to_hex();
    let anchor = gate.close().expect("close");
    Written {
        anchor,
        ledger_digest,
        decisions,
        settlements,
    }
}

fn read_records(dir: &Path) -> Vec<Entry<GateRecord>> {
    SegmentedReader::<GateRecord>::open(&dir.join(LOG_DIR), None, None)
        .expect("open the log")
        .collect::<Result<_, _>>()
        .expect("read the log")
}

/// Writes `records` as a fresh, properly chained gate log in `dir`: a forger who
/// can rewrite the files and recompute every hash.
fn forge(dir: &Path, records: impl IntoIterator<Item = GateRecord>) {
    std::fs::create_dir_all(dir).expect("dir");
    let wal = DurableWal::<GateRecord>::open(&dir.join(LOG_DIR), DurableConfig::default())
        .expect("open the forged log");
    for record in records {
        let _ = wal.append(&record).expect("append");
    }
    wal.close().expect("close");
}

/// `verify --json` of a forged directory: DIVERGED with `reason` at `sequence`, exit 1,
/// and the text form agreeing.
fn assert_forged(dir: &Path, reason: &str, sequence: u64) {
    let (run, json) = verify_json(dir, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(json["outcome"], "DIVERGED", "{json}");
    assert_eq!(json["reason"], reason, "{json}");
    assert_eq!(json["sequence"], sequence, "{json}");
    assert!(json["offset_bytes"].is_u64(), "{json}");
    assert!(
        json["segment"]
            .as_str()
            .is_some_and(|segment| segment.ends_with(".cwal")),
        "{json}"
    );
    assert_eq!(json["gate"], serde_json::Value::Null);
    let text = calybris(&["verify", path_str(dir)]);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout
            .starts_with(&format!("DIVERGED {reason} sequence={sequence} offset=")),
        "{text:?}"
    );
}

#[test]
fn a_gate_directory_verifies_with_its_books() {
    let dir = temp_dir("gate-good");
    let written = write_gate(&dir, None);
    let anchor = calybris_cli::report::anchor_text(&written.anchor);

    let run = calybris(&["verify", path_str(&dir), "--anchor", &anchor]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("VERIFIED "), "{run:?}");
    assert!(run.stdout.contains(&anchor), "{run:?}");
    assert!(run.stdout.contains("8 decisions replayed"), "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("{} settlements", written.settlements.len())),
        "{run:?}"
    );
    assert!(run.stdout.contains("open holds: 0"), "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "conservation: balanced, ledger digest {}",
            written.ledger_digest
        )),
        "{run:?}"
    );
    assert!(run.stdout.contains("1000000 (1.000000)"), "{run:?}");

    let (run, json) = verify_json(&dir, &["--anchor", &anchor]);
    assert_eq!(run.code, 0);
    assert_eq!(json["outcome"], "VERIFIED");
    assert_eq!(json["records"], written.anchor.next_sequence);
    assert_eq!(json["decisions"], 8);
    assert_eq!(json["policies"], 1);
    let gate = &json["gate"];
    assert_eq!(gate["balanced"], true);
    assert_eq!(gate["open_holds"], 0);
    assert_eq!(gate["ledger_digest"], written.ledger_digest.as_str());
    assert_eq!(gate["counts"]["decisions"], 8);
    assert_eq!(gate["counts"]["settlements"], written.settlements.len());
    assert_eq!(gate["counts"]["budget_changes"], 2);
    let tenants = gate["tenants"].as_array().expect("tenants");
    assert_eq!(tenants.len(), 2);
    assert_eq!(tenants[0]["tenant"], "acme");
    assert_eq!(tenants[0]["initial_microunits"], 1_000_000);
    assert_eq!(tenants[0]["initial_units"], "1.000000");
    assert_eq!(tenants[1]["tenant"], "globex");
    for tenant in tenants {
        let amount = |key: &str| tenant[key].as_i64().expect("an integer");
        assert_eq!(amount("reserved_microunits"), 0);
        assert!(amount("committed_microunits") > 0, "{tenant}");
        assert_eq!(
            amount("remaining_microunits") + amount("committed_microunits"),
            amount("initial_microunits")
        );
    }

    // The log directory alone: chain and replay only, no books.
    let (run, json) = verify_json(&dir.join(LOG_DIR), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(json["records"], written.anchor.next_sequence);
    assert_eq!(json["gate"], serde_json::Value::Null);
}

#[test]
fn a_settlement_of_an_unknown_decision_is_named() {
    let dir = temp_dir("gate-unknown-settlement");
    let good = temp_dir("gate-source");
    write_gate(&good, None);
    let mut records: Vec<GateRecord> = read_records(&good)
        .into_iter()
        .map(|entry| entry.record)
        .take(3)
        .collect();
    // Header, two tenants: a settlement of record 1 (a tenant, not a decision).
    records.truncate(3);
    records.push(GateRecord::Settlement(SettlementRecord {
        decision_sequence: 1,
        tenant: "acme".into(),
        kind: SettlementKind::Commit {
            actual_microunits: 1,
        },
    }));
    forge(&dir, records);
    assert_forged(&dir, "SETTLEMENT_UNKNOWN_DECISION", 3);
}

#[test]
fn an_overspend_and_an_excessive_commit_are_named() {
    let good = temp_dir("gate-source");
    let written = write_gate(&good, None);
    let entries = read_records(&good);

    // The opening budget of "globex" cut to 10 microunits: its first reservation
    // overspends in log order.
    let dir = temp_dir("gate-overspend");
    forge(
        &dir,
        entries.iter().map(|entry| match &entry.record {
            GateRecord::TenantCreated(created) if created.tenant == "globex" => {
                GateRecord::TenantCreated(TenantCreated {
                    tenant: created.tenant.clone(),
                    initial_microunits: 10,
                })
            }
            other => other.clone(),
        }),
    );
    let first_globex = written
        .decisions
        .iter()
        .find(|(_, tenant)| *tenant == "globex")
        .map(|(sequence, _)| *sequence)
        .expect("a globex decision");
    assert_forged(&dir, "OVERSPEND", first_globex);

    // A settlement that spends ten times its hold as a plain commit.
    let (settlement, _) = written.settlements[0];
    let dir = temp_dir("gate-exceeds");
    forge(
        &dir,
        entries.iter().map(|entry| match &entry.record {
            GateRecord::Settlement(record) if entry.sequence == settlement => {
                let mut record = record.clone();
                if let SettlementKind::Commit { actual_microunits } = &mut record.kind {
                    *actual_microunits = (*actual_microunits + 1) * 10;
                }
                GateRecord::Settlement(record)
            }
            other => other.clone(),
        }),
    );
    assert_forged(&dir, "SETTLEMENT_EXCEEDS_HOLD", settlement);

    // A settlement naming the other tenant.
    let dir = temp_dir("gate-wrong-tenant");
    forge(
        &dir,
        entries.iter().map(|entry| match &entry.record {
            GateRecord::Settlement(record) if entry.sequence == settlement => {
                let mut record = record.clone();
                record.tenant = if record.tenant == "acme" {
                    "globex".into()
                } else {
                    "acme".into()
                };
                GateRecord::Settlement(record)
            }
            other => other.clone(),
        }),
    );
    assert_forged(&dir, "SETTLEMENT_WRONG_TENANT", settlement);
}

#[test]
fn an_unbalanced_book_snapshot_is_named() {
    let good = temp_dir("gate-snapshot-source");
    let gate =
        Gate::open(GateConfig::new(&good, policy(1)).tenant("acme", 1_000_000)).expect("open");
    let admission = gate.decide("acme", request(0)).expect("decide");
    let cost = admission.decision().estimated_cost_microunits;
    gate.settle(admission, cost).expect("settle");
    let snapshot = gate.snapshot_books().expect("snapshot");
    gate.close().expect("close");
    let dir = temp_dir("gate-snapshot");
    forge(
        &dir,
        read_records(&good)
            .into_iter()
            .map(|entry| match entry.record {
                GateRecord::BookSnapshot(mut books) if entry.sequence == snapshot => {
                    // Money out of nowhere: the row no longer balances.
                    books.tenants[0].remaining_microunits += 1;
                    GateRecord::BookSnapshot(books)
                }
                other => other,
            }),
    );
    assert_forged(&dir, "BOOKS_SNAPSHOT_MISMATCH", snapshot);
}

#[test]
fn a_log_without_its_header_and_a_repeated_tenant_are_named() {
    let dir = temp_dir("gate-no-header");
    forge(
        &dir,
        [GateRecord::TenantCreated(TenantCreated {
            tenant: "acme".into(),
            initial_microunits: 5,
        })],
    );
    // Without the header the log is not recognised as a gate log by the frames'
    // first record, but verify_dir reads it as one.
    let (run, json) = verify_json(&dir, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(json["reason"], "BOOKS_BAD_HEADER", "{json}");
    assert_eq!(json["sequence"], 0, "{json}");

    let good = temp_dir("gate-source");
    write_gate(&good, None);
    let mut records: Vec<GateRecord> = read_records(&good)
        .into_iter()
        .map(|entry| entry.record)
        .collect();
    records.insert(2, records[1].clone());
    let dir = temp_dir("gate-repeated");
    forge(&dir, records);
    assert_forged(&dir, "TENANT_DUPLICATE", 2);
}

#[test]
fn a_flipped_byte_in_a_gate_log_breaks_the_chain() {
    let dir = temp_dir("gate-flip");
    let written = write_gate(&dir, None);
    let segment = dir.join(LOG_DIR).join(format!("{:020}.cwal", 0));
    let (sequence, _) = written.settlements[0];
    let (offset, len) = frames(&segment, None)[usize::try_from(sequence).expect("small")];
    flip_byte(&segment, offset + len / 2);

    let (run, json) = verify_json(&dir, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(json["outcome"], "DIVERGED");
    assert_eq!(json["reason"], "CHAIN_BROKEN", "{json}");
    assert_eq!(json["sequence"], sequence);
    assert_eq!(json["offset_bytes"], offset);
    assert_eq!(json["segment"], path_str(&segment));
    assert_eq!(json["records"], sequence);
    let run = calybris(&["verify", path_str(&dir)]);
    assert!(
        run.stdout.starts_with(&format!(
            "DIVERGED CHAIN_BROKEN sequence={sequence} offset={offset} "
        )),
        "{run:?}"
    );
}

#[test]
fn a_keyed_gate_directory_needs_its_key() {
    let dir = temp_dir("gate-keyed");
    write_gate(&dir, Some(key()));
    let key_file = dir.join("key");
    std::fs::write(&key_file, KEY).expect("write the key");
    let run = calybris(&["verify", path_str(&dir), "--key-file", path_str(&key_file)]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = calybris(&["verify", path_str(&dir)]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.starts_with("ERROR WRONG_KEY "), "{run:?}");
}

#[test]
fn inspect_and_show_read_gate_records() {
    let dir = temp_dir("gate-inspect");
    let written = write_gate(&dir, None);
    let run = calybris(&["inspect", path_str(&dir)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("gate records by kind:"), "{run:?}");
    assert!(run.stdout.contains("  tenant-created   2"), "{run:?}");
    assert!(run.stdout.contains("  decision         8"), "{run:?}");
    assert!(run.stdout.contains("tenant acme "), "{run:?}");
    assert!(run.stdout.contains("admitted, cost reserved"), "{run:?}");
    assert!(run.stdout.contains("\nVERIFIED "), "{run:?}");

    let (decision, tenant) = written.decisions[0];
    let run = calybris(&["show", path_str(&dir), "--seq", &decision.to_string()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with(&format!("record {decision}: tenant {tenant} (number ")),
        "{run:?}"
    );
    let id: String = request_id(0).iter().map(|b| format!("{b:02x}")).collect();
    assert!(run.stdout.contains(&format!("request id {id}")), "{run:?}");
    assert!(
        run.stdout
            .contains("budget outcome (gate): admitted, cost reserved: "),
        "{run:?}"
    );
    assert!(run.stdout.contains("candidates: 3 evaluated"), "{run:?}");

    let (settlement, settled) = written.settlements[0];
    let run = calybris(&["show", path_str(&dir), "--seq", &settlement.to_string()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with(&format!(
            "record {settlement} is a gate settlement record: settles decision {settled} "
        )),
        "{run:?}"
    );
    assert!(run.stdout.contains("committed "), "{run:?}");

    let run = calybris(&["show", path_str(&dir), "--seq", "1"]);
    assert!(
        run.stdout
            .starts_with("record 1 is a gate tenant-created record: tenant acme created with 1000000 microunits (1.000000 units)"),
        "{run:?}"
    );
}

#[test]
fn show_on_a_forged_gate_directory_ends_with_verify_s_verdict() {
    let good = temp_dir("gate-source");
    let written = write_gate(&good, None);
    let (settlement, _) = written.settlements[0];
    let dir = temp_dir("gate-show-forged");
    forge(
        &dir,
        read_records(&good)
            .into_iter()
            .map(|entry| match entry.record {
                GateRecord::Settlement(mut record) if entry.sequence == settlement => {
                    record.decision_sequence = 0;
                    GateRecord::Settlement(record)
                }
                other => other,
            }),
    );
    let run = calybris(&["show", path_str(&dir), "--seq", "0"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.starts_with("record 0 is a gate header record"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!(
            "\nDIVERGED SETTLEMENT_UNKNOWN_DECISION sequence={settlement} "
        )),
        "{run:?}"
    );
    let run = calybris(&["inspect", path_str(&dir)]);
    assert_eq!(run.code, 1, "{run:?}");
}

#[test]
fn an_empty_gate_log_is_an_unknown_format_a_cut_one_truncated_and_garbage_a_torn_tail() {
    let dir = temp_dir("gate-empty");
    std::fs::create_dir_all(dir.join(LOG_DIR)).expect("dir");
    let (run, json) = verify_json(&dir, &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(json["reason"], "UNKNOWN_FORMAT", "{json}");

    let dir = temp_dir("gate-torn");
    let written = write_gate(&dir, None);
    let segment = dir.join(LOG_DIR).join(format!("{:020}.cwal", 0));
    let len = std::fs::metadata(&segment).expect("segment").len();
    // The log's watermark vouches for every record: a cut one is a truncated
    // suffix, never a torn tail to cut.
    truncate(&segment, len - 3);
    let (run, json) = verify_json(&dir, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(json["reason"], "SUFFIX_TRUNCATED", "{json}");
    assert_eq!(json["sequence"], written.anchor.next_sequence - 1, "{json}");
    assert_eq!(json["segment"], path_str(&segment), "{json}");

    // Bytes after the acknowledged end are a torn tail (reported, not verified).
    let dir = temp_dir("gate-garbage");
    let written = write_gate(&dir, None);
    let segment = dir.join(LOG_DIR).join(format!("{:020}.cwal", 0));
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes.extend_from_slice(&[0x5a; 37]);
    std::fs::write(&segment, &bytes).expect("write");
    let (run, json) = verify_json(&dir, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(json["reason"], "TORN_TAIL", "{json}");
    assert_eq!(json["sequence"], written.anchor.next_sequence, "{json}");
}
