//! What a scan or a replay found round-trips through JSON: a service can send a
//! recovery outcome or a replay summary elsewhere and get back the same value.

use calybris_wal::storage::MemDisk;
use calybris_wal::{
    Acknowledged, AuditRecord, AuditWriter, CorruptReason, KeyMismatch, Recovery, ReplaySummary,
    TornReason, WalAnchor, WalReader, WalWriter, replay_audited, scan,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn round_trip<T>(value: &T) -> Result<T, serde_json::Error>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    serde_json::from_str(&serde_json::to_string(value)?)
}

#[test]
fn the_recovery_of_a_real_log_round_trips() -> TestResult {
    let disk = MemDisk::new();
    let mut writer = WalWriter::<u64, _>::create_in(disk.lock()?, None)?;
    for value in 0..4u64 {
        writer.append(&value)?;
    }
    let anchor = writer.sync()?;
    drop(writer);
    let recovery = scan::<u64, _>(disk.reader(), None, None)?;
    assert!(recovery.is_clean());
    let back = round_trip(&recovery)?;
    assert_eq!(back, recovery);
    assert_eq!(back.anchor(), Some(anchor));
    assert_eq!(round_trip(&anchor)?, anchor);
    Ok(())
}

#[test]
fn every_refusal_and_reason_round_trips() -> TestResult {
    let anchor = WalAnchor {
        next_sequence: 9,
        head_hash: [3; 32],
    };
    let acknowledged = Acknowledged::Known {
        records: 7,
        segment_first_sequence: 0,
        end_offset_bytes: 640,
        damaged_slots: 1,
    };
    let mut outcomes = vec![
        Recovery::WrongKey {
            reason: KeyMismatch::KeyRequired,
        },
        Recovery::UnknownVersion { found: 99 },
    ];
    for reason in [
        TornReason::IncompleteHeader,
        TornReason::IncompleteFrame,
        TornReason::ZeroFilled,
        TornReason::BadFinalFrame,
        TornReason::Garbage,
    ] {
        outcomes.push(Recovery::TornTail {
            anchor,
            valid_len_bytes: 700,
            cut_bytes: 12,
            reason,
            acknowledged,
        });
    }
    for reason in [
        CorruptReason::HashMismatch,
        CorruptReason::SuffixMissing {
            anchored_records: 10,
            found_records: 9,
        },
        CorruptReason::GenesisMissing { first_sequence: 4 },
    ] {
        outcomes.push(Recovery::Corrupt {
            sequence: Some(5),
            offset_bytes: 320,
            reason,
        });
    }
    for outcome in &outcomes {
        assert_eq!(&round_trip(outcome)?, outcome);
    }
    let value = serde_json::to_value(&outcomes[0])?;
    assert_eq!(value["WrongKey"]["reason"], "KeyRequired");
    Ok(())
}

#[test]
fn a_replay_summary_round_trips() -> TestResult {
    let disk = MemDisk::new();
    let mut writer = AuditWriter::create_in(disk.lock()?, None)?;
    let anchor = writer.sync()?;
    drop(writer);
    let summary = replay_audited(WalReader::<AuditRecord, _>::from_storage(
        disk.reader(),
        None,
    )?)?;
    assert_eq!(summary.anchor, anchor);
    assert_eq!(round_trip(&summary)?, summary);
    let made = ReplaySummary {
        policies: 2,
        decisions: 40,
        anchor,
    };
    assert_eq!(round_trip(&made)?, made);
    assert_eq!(serde_json::to_value(made)?["decisions"], 40);
    Ok(())
}
