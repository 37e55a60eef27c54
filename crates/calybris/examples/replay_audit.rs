//! Replay audit: write a gate directory (one chained log), then tamper with it four
//! ways and watch `verify_dir` name the record each time.
//!
//! 1. A flipped byte: the hash chain breaks at that record.
//! 2. A forged decision in an unkeyed log, re-chained so every hash checks out and
//!    its digest recomputed: replaying the decision against the logged policy exposes
//!    it, naming the field.
//! 3. A forged settlement, re-chained: spending more than the hold without the
//!    overrun path; the books rebuilt from the log expose it.
//! 4. The decision forgery in an HMAC-keyed log: the forger cannot produce the chain
//!    without the key, so verification refuses it.
//!
//! Run with `cargo run -p calybris --example replay_audit --features gate`.

use std::path::{Path, PathBuf};

use calybris::digest::decision_digest;
use calybris::gate::record::SettlementKind;
use calybris::gate::{
    Gate, GateConfig, GateRecord, LOG_DIR, VerifyError, VerifyOptions, verify_dir,
};
use calybris::prelude::*;
use calybris::wal::storage::FileStorage;
use calybris::wal::{
    AuditError, DurableConfig, DurableWal, Entry, FrameReader, Recovery, SegmentedReader, WalKey,
};

/// The log record the examples tamper with: a decision (records 0 to 2 are the
/// gate's header, the tenant and the policy; decisions and settlements alternate).
const TAMPERED_SEQUENCE: u64 = 5;

fn policy() -> Result<SealedPolicy, PolicyError> {
    let model = |model_id, quality_bps, input_price| KernelModel {
        model_id,
        provider_id: 0,
        quality_bps,
        risk_ceiling_bps: 8_000,
        enabled: 1,
        p95_latency_ms: 500,
        capabilities: 0b1,
        region_mask: 0b1,
        input_cost_microunits_per_million_tokens: input_price,
        output_cost_microunits_per_million_tokens: input_price * 4,
    };
    Ok(SealedPolicy::new(
        PolicySnapshot::builder()
            .models([model(1, 9_300, 3_000_000), model(2, 8_100, 250_000)])
            .build()?,
    ))
}

/// Writes eight decisions, each settled, through a gate in `dir` (budget in
/// microunits).
fn write_gate(dir: &Path, key: Option<WalKey>) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = GateConfig::new(dir, policy()?).tenant("acme", 1_000_000);
    if let Some(key) = key {
        config = config.key(key);
    }
    let gate = Gate::open(config)?;
    for sequence in 0..8 {
        let input = KernelInput {
            request_sequence: sequence,
            requested_model_id: 1,
            input_tokens: 1_000 + 250 * u32::try_from(sequence)?,
            output_tokens: 400,
            business_value_microunits: 40_000,
            ..KernelInput::default()
        };
        let admission = gate.decide("acme", input)?;
        let cost = admission.decision().estimated_cost_microunits;
        gate.settle(admission, cost)?;
    }
    gate.close()?;
    Ok(())
}

/// Verifies a gate directory and prints the verdict as an auditor would read it.
fn verify(label: &str, dir: &Path, key: Option<&WalKey>) -> bool {
    let options = VerifyOptions {
        key: key.cloned(),
        ..VerifyOptions::default()
    };
    let verdict = verify_dir(dir, &options);
    match &verdict {
        Ok(report) => println!(
            "{label:<36} VERIFIED: {} decisions replayed, {} settlements matched, books balanced: {}",
            report.counts.decisions, report.counts.settlements, report.conservation.balanced
        ),
        Err(VerifyError::Chain(Recovery::Corrupt {
            sequence: Some(sequence),
            offset_bytes,
            reason,
        })) => println!(
            "{label:<36} DIVERGED: chain broken at record {sequence}, byte offset {offset_bytes} ({reason:?})"
        ),
        Err(VerifyError::Chain(other)) => {
            println!("{label:<36} DIVERGED: chain does not verify: {other}");
        }
        Err(VerifyError::Replay(AuditError::DoesNotReplay {
            sequence: Some(sequence),
            field,
            ..
        })) => println!(
            "{label:<36} DIVERGED: record {sequence} does not replay: field `{field}` differs"
        ),
        Err(VerifyError::Books {
            sequence, error, ..
        }) => {
            println!(
                "{label:<36} DIVERGED: record {sequence} does not fold into the books: {error}"
            );
        }
        Err(other) => println!("{label:<36} DIVERGED: {other}"),
    }
    verdict.is_ok()
}

/// The only segment file of a small gate directory's log.
fn segment(dir: &Path) -> PathBuf {
    dir.join(LOG_DIR).join(format!("{:020}.cwal", 0))
}

/// Flips one byte in the middle of the frame of record `sequence`.
fn flip_byte_in_record(dir: &Path, sequence: u64) -> Result<u64, Box<dyn std::error::Error>> {
    let path = segment(dir);
    let mut frames = FrameReader::new(FileStorage::open_read(&path)?, None)?;
    let (mut start, mut end) = (None, None);
    while let Some(frame) = frames.next_frame()? {
        if frame.sequence == sequence {
            start = Some(frame.offset_bytes);
        } else if frame.sequence == sequence + 1 {
            end = Some(frame.offset_bytes);
        }
    }
    let (Some(start), Some(end)) = (start, end) else {
        return Err(format!("record {sequence} is not followed by another").into());
    };
    let middle = start + (end - start) / 2;
    let mut bytes = std::fs::read(&path)?;
    let index = usize::try_from(middle)?;
    bytes[index] ^= 0x01;
    std::fs::write(&path, bytes)?;
    Ok(middle)
}

/// What a forger does: rewrite the records with `edit` and write the whole log
/// again into `dir`, chaining every hash under `key`.
fn forge(
    entries: &[Entry<GateRecord>],
    dir: &Path,
    key: Option<WalKey>,
    edit: impl Fn(u64, &mut GateRecord),
) -> Result<(), Box<dyn std::error::Error>> {
    let config = DurableConfig {
        key,
        ..DurableConfig::default()
    };
    let wal = DurableWal::<GateRecord>::open(&dir.join(LOG_DIR), config)?;
    for entry in entries {
        let mut record = entry.record.clone();
        edit(entry.sequence, &mut record);
        let _ = wal.append(&record)?;
    }
    wal.close()?;
    Ok(())
}

/// Halves the estimated cost of the decision at [`TAMPERED_SEQUENCE`], with a
/// matching digest.
fn cheaper_decision(sequence: u64, record: &mut GateRecord) {
    if let GateRecord::Decision(decision) = record
        && sequence == TAMPERED_SEQUENCE
    {
        decision.audit.decision.estimated_cost_microunits /= 2;
        decision.audit.decision_digest = decision_digest(&decision.audit.decision);
    }
}

/// Doubles what the settlement of the decision at [`TAMPERED_SEQUENCE`] spent, as a
/// plain commit (more than its hold).
fn dearer_settlement(_: u64, record: &mut GateRecord) {
    if let GateRecord::Settlement(settlement) = record
        && settlement.decision_sequence == TAMPERED_SEQUENCE
        && let SettlementKind::Commit { actual_microunits } = &mut settlement.kind
    {
        *actual_microunits *= 2;
    }
}

fn read_all(
    dir: &Path,
    key: Option<&WalKey>,
) -> Result<Vec<Entry<GateRecord>>, Box<dyn std::error::Error>> {
    Ok(SegmentedReader::open(&dir.join(LOG_DIR), key, None)?.collect::<Result<_, _>>()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::temp_dir().join(format!("calybris-replay-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut verdicts = Vec::new();

    // An unkeyed gate directory, as the gate wrote it.
    let plain = root.join("plain");
    write_gate(&plain, None)?;
    verdicts.push(verify("the directory as written:", &plain, None));
    let entries = read_all(&plain, None)?;
    if !matches!(
        entries
            .get(usize::try_from(TAMPERED_SEQUENCE)?)
            .map(|e| &e.record),
        Some(GateRecord::Decision(_))
    ) {
        return Err(format!("record {TAMPERED_SEQUENCE} is not a decision").into());
    }

    // 1. One flipped bit in the middle of record 5.
    let offset = flip_byte_in_record(&plain, TAMPERED_SEQUENCE)?;
    println!("  (flipped one bit at byte offset {offset} of the segment)");
    verdicts.push(!verify("1. a flipped bit:", &plain, None));

    // 2. A forged, re-chained copy: every hash is valid, the decision is not.
    let forged = root.join("forged");
    forge(&entries, &forged, None, cheaper_decision)?;
    verdicts.push(!verify("2. forged decision, re-chained:", &forged, None));

    // 3. A forged settlement: every hash and every decision is valid, the books are not.
    let overspent = root.join("overspent");
    forge(&entries, &overspent, None, dearer_settlement)?;
    verdicts.push(!verify(
        "3. forged settlement, re-chained:",
        &overspent,
        None,
    ));

    // 4. With a key, the forger (who lacks it) must chain under another key.
    let key = WalKey::new(b"the auditor's key, 32 bytes or more")?;
    let keyed = root.join("keyed");
    write_gate(&keyed, Some(key.clone()))?;
    verdicts.push(verify(
        "4. the keyed directory as written:",
        &keyed,
        Some(&key),
    ));
    let keyed_entries = read_all(&keyed, Some(&key))?;
    let forged_keyed = root.join("forged-keyed");
    let forger_key = WalKey::new(b"a forger's guess at the key, 32 b")?;
    forge(
        &keyed_entries,
        &forged_keyed,
        Some(forger_key),
        cheaper_decision,
    )?;
    verdicts.push(!verify(
        "   forged without the key:",
        &forged_keyed,
        Some(&key),
    ));

    std::fs::remove_dir_all(&root)?;
    if verdicts.iter().all(|expected| *expected) {
        println!("every verdict is the expected one");
        Ok(())
    } else {
        Err("a verdict was not the expected one".into())
    }
}
