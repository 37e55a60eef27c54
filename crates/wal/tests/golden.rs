//! Golden files pin the byte format. They change only on purpose: run with
//! `CALYBRIS_REGENERATE_GOLDEN=1` to rewrite them, then review the diff and
//! update docs/SPECIFICATION.md.

mod common;

use std::path::PathBuf;

use calybris_wal::storage::MemDisk;
use calybris_wal::{WalKey, WalReader, WalWriter};
use serde::{Deserialize, Serialize};

/// Set to `1` to rewrite the golden files instead of checking them.
const REGENERATE_ENV: &str = "CALYBRIS_REGENERATE_GOLDEN";
/// The key of the keyed golden log: 32 bytes of 0x42.
const GOLDEN_KEY: [u8; 32] = [0x42; 32];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GoldenRec {
    id: u32,
    label: String,
    flag: bool,
}

fn golden_records() -> Vec<GoldenRec> {
    vec![
        GoldenRec {
            id: 1,
            label: "alpha".into(),
            flag: true,
        },
        GoldenRec {
            id: 300,
            label: String::new(),
            flag: false,
        },
        GoldenRec {
            id: 70_000,
            label: "gamma-γ".into(),
            flag: true,
        },
    ]
}

fn build(key: Option<WalKey>) -> Vec<u8> {
    let disk = MemDisk::new();
    let mut writer =
        WalWriter::<GoldenRec, _>::create_in(disk.lock().expect("lock"), key).expect("create");
    for record in golden_records() {
        writer.append(&record).expect("append");
    }
    writer.sync().expect("sync");
    drop(writer);
    disk.bytes()
}

/// The one helper that reads (or, on request, rewrites) a golden file.
fn check_golden(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    if std::env::var(REGENERATE_ENV).as_deref() == Ok("1") {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "missing golden file {}: {error}; see {REGENERATE_ENV}",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name}: the byte format changed; if on purpose, regenerate with {REGENERATE_ENV}=1"
    );
}

fn read_golden(name: &str, key: Option<&WalKey>) -> Vec<GoldenRec> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    WalReader::<GoldenRec>::open(&path, key)
        .expect("open golden file")
        .map(|entry| entry.expect("golden file verifies").record)
        .collect()
}

#[test]
fn unkeyed_log_bytes_are_pinned() {
    check_golden("unkeyed-3-records.cwal", &build(None));
    assert_eq!(
        read_golden("unkeyed-3-records.cwal", None),
        golden_records()
    );
}

#[test]
fn keyed_log_bytes_are_pinned() {
    let key = WalKey::new(&GOLDEN_KEY).expect("key");
    check_golden("keyed-3-records.cwal", &build(Some(key.clone())));
    assert_eq!(
        read_golden("keyed-3-records.cwal", Some(&key)),
        golden_records()
    );
}

/// An audited log: one policy record and two decision records. Pins the audited
/// record layout, including the kernel types' serde forms it embeds.
#[cfg(feature = "audit")]
#[test]
fn audited_log_bytes_are_pinned() {
    use calybris_digest::SealedPolicy;
    use calybris_kernel::{KernelInput, KernelModel, PolicySnapshot};
    use calybris_wal::{AuditWriter, DecisionMeta, replay_audited};

    let model = |model_id: u32, quality_bps: u16, cost: u64| KernelModel {
        model_id,
        provider_id: 1,
        quality_bps,
        risk_ceiling_bps: 7_000,
        enabled: 1,
        p95_latency_ms: 400,
        capabilities: 0b1,
        region_mask: 0b1,
        input_cost_microunits_per_million_tokens: cost,
        output_cost_microunits_per_million_tokens: cost * 4,
    };
    let policy = SealedPolicy::new(
        PolicySnapshot::builder()
            .policy_epoch(2)
            .catalog_epoch(5)
            .hard_risk_limit_bps(8_000)
            .models([model(1, 9_000, 2_000_000), model(2, 7_500, 100_000)])
            .build()
            .expect("valid policy"),
    );
    let disk = MemDisk::new();
    let mut writer = AuditWriter::create_in(disk.lock().expect("lock"), None).expect("create");
    for sequence in 0..2u64 {
        let input = KernelInput {
            request_sequence: sequence,
            requested_model_id: 1 + sequence as u32,
            input_tokens: 1_000,
            output_tokens: 200,
            business_value_microunits: 50_000,
            budget_limit_microunits: 30_000,
            confidence_bps: 9_000,
            ..KernelInput::default()
        };
        let meta = DecisionMeta {
            recorded_at_unix_ms: 1_763_800_000_000 + sequence,
            tenant_id: 7,
            request_id: [sequence as u8 + 1; 16],
        };
        writer
            .append_verified(&policy, input, &policy.prescribe(input), meta)
            .expect("append");
    }
    writer.sync().expect("sync");
    drop(writer);
    check_golden("audited-policy-2-decisions.cwal", &disk.bytes());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/audited-policy-2-decisions.cwal");
    let summary = replay_audited(WalReader::open(&path, None).expect("open")).expect("replays");
    assert_eq!((summary.policies, summary.decisions), (1, 2));
}

/// The watermark sidecar of the three-record golden logs, as `WalWriter::sync`
/// leaves it: generation 2 in slot 0 (the position after record 2), generation 1
/// in slot 1 (the empty log's position, from creation).
fn build_watermark(key: Option<WalKey>) -> (Vec<u8>, Vec<u8>) {
    let (disk, ack) = (MemDisk::new(), MemDisk::new());
    let mut writer = WalWriter::<GoldenRec, _>::create_in_acked(
        disk.lock().expect("lock"),
        ack.lock().expect("lock"),
        key,
    )
    .expect("create");
    for record in golden_records() {
        writer.append(&record).expect("append");
    }
    writer.sync().expect("sync");
    drop(writer);
    (disk.bytes(), ack.bytes())
}

#[test]
fn watermark_golden_files_match() {
    let (log, ack) = build_watermark(None);
    assert_eq!(
        log,
        build(None),
        "the watermark does not change the log bytes"
    );
    check_golden("unkeyed-3-records.cwal.ack", &ack);
    let key = WalKey::new(&GOLDEN_KEY).expect("key");
    let (log, ack) = build_watermark(Some(key.clone()));
    assert_eq!(log, build(Some(key.clone())));
    check_golden("keyed-3-records.cwal.ack", &ack);
    // Slot 0 holds generation 2: the position after the third record.
    assert_eq!(&ack[0..8], b"CALYACK\0");
    assert_eq!(
        u64::from_le_bytes(ack[16..24].try_into().expect("8 bytes")),
        2
    );
    assert_eq!(
        u64::from_le_bytes(ack[40..48].try_into().expect("8 bytes")),
        3
    );
    assert_eq!(
        u64::from_le_bytes(ack[32..40].try_into().expect("8 bytes")),
        log.len() as u64
    );
}
