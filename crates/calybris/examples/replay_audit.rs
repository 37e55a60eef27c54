//! Replay audit: write a decision log through the gate, then tamper with it three ways
//! and watch verification name the record each time.
//!
//! 1. A flipped byte: the hash chain breaks at that record.
//! 2. A forged decision in an unkeyed log, re-chained so every hash checks out and
//!    its digest recomputed: replaying the decision against the logged policy exposes
//!    it, naming the field.
//! 3. The same forgery in an HMAC-keyed log: the forger cannot produce the chain
//!    without the key, so verification refuses it.
//!
//! Run with `cargo run -p calybris --example replay_audit --features gate`.

use std::path::{Path, PathBuf};

use calybris::digest::decision_digest;
use calybris::gate::{DECISIONS_DIR, Gate, GateConfig};
use calybris::prelude::*;
use calybris::wal::storage::FileStorage;
use calybris::wal::{
    AuditError, AuditRecord, DurableConfig, DurableWal, Entry, FrameReader, Recovery,
    SegmentedReader, WalKey, replay_audited_segments,
};

/// The log record the examples tamper with (record 0 is the policy).
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

/// Writes eight decisions through a gate in `dir`; returns the log directory.
fn write_log(dir: &Path, key: Option<WalKey>) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let mut config = GateConfig::new(dir, policy()?).tenant("acme", 100_000_000);
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
    Ok(dir.join(DECISIONS_DIR))
}

/// Verifies a log directory and prints the verdict as an auditor would read it.
fn verify(label: &str, log: &Path, key: Option<&WalKey>) -> Result<bool, AuditError> {
    let verdict = replay_audited_segments(SegmentedReader::open(log, key, None)?);
    match &verdict {
        Ok(summary) => println!(
            "{label:<34} VERIFIED: {} policy, {} decisions replayed",
            summary.policies, summary.decisions
        ),
        Err(AuditError::ChainBroken(Recovery::Corrupt {
            sequence: Some(sequence),
            offset_bytes,
            reason,
        })) => println!(
            "{label:<34} DIVERGED: chain broken at record {sequence}, byte offset {offset_bytes} ({reason:?})"
        ),
        Err(AuditError::ChainBroken(other)) => {
            println!("{label:<34} DIVERGED: chain does not verify: {other}");
        }
        Err(AuditError::DoesNotReplay {
            sequence: Some(sequence),
            field,
            ..
        }) => println!(
            "{label:<34} DIVERGED: record {sequence} does not replay: field `{field}` differs"
        ),
        Err(other) => println!("{label:<34} DIVERGED: {other}"),
    }
    Ok(verdict.is_ok())
}

/// The only segment file of a small log.
fn segment(log: &Path) -> PathBuf {
    log.join(format!("{:020}.cwal", 0))
}

/// Flips one byte in the middle of the frame of record `sequence`.
fn flip_byte_in_record(log: &Path, sequence: u64) -> Result<u64, Box<dyn std::error::Error>> {
    let path = segment(log);
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

/// What a forger does: rewrite one decision (halving its cost, with a matching
/// digest) and write the whole log again, chaining every hash under `key`.
fn forge(
    entries: &[Entry<AuditRecord>],
    log: &Path,
    key: Option<WalKey>,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = DurableConfig {
        key,
        ..DurableConfig::default()
    };
    let wal = DurableWal::<AuditRecord>::open(log, config)?;
    for entry in entries {
        let mut record = entry.record.clone();
        if let AuditRecord::Decision(decision) = &mut record
            && entry.sequence == TAMPERED_SEQUENCE
        {
            decision.decision.estimated_cost_microunits /= 2;
            decision.decision_digest = decision_digest(&decision.decision);
        }
        let _ = wal.append(&record)?;
    }
    wal.close()?;
    Ok(())
}

fn read_all(
    log: &Path,
    key: Option<&WalKey>,
) -> Result<Vec<Entry<AuditRecord>>, Box<dyn std::error::Error>> {
    Ok(SegmentedReader::open(log, key, None)?.collect::<Result<_, _>>()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::temp_dir().join(format!("calybris-replay-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut verdicts = Vec::new();

    // An unkeyed log, as the gate wrote it.
    let log = write_log(&root.join("plain"), None)?;
    verdicts.push(verify("the log as written:", &log, None)?);
    let entries = read_all(&log, None)?;

    // 1. One flipped bit in the middle of record 5.
    let offset = flip_byte_in_record(&log, TAMPERED_SEQUENCE)?;
    println!("  (flipped one bit at byte offset {offset} of the segment)");
    verdicts.push(!verify("1. a flipped bit:", &log, None)?);

    // 2. A forged, re-chained copy: every hash is valid, the decision is not.
    let forged = root.join("forged");
    forge(&entries, &forged, None)?;
    verdicts.push(!verify(
        "2. forged and re-chained, unkeyed:",
        &forged,
        None,
    )?);

    // 3. With a key, the forger (who lacks it) must chain under another key.
    let key = WalKey::new(b"the auditor's key, 32 bytes or more")?;
    let keyed = write_log(&root.join("keyed"), Some(key.clone()))?;
    verdicts.push(verify("3. the keyed log as written:", &keyed, Some(&key))?);
    let keyed_entries = read_all(&keyed, Some(&key))?;
    let forged_keyed = root.join("forged-keyed");
    let forger_key = WalKey::new(b"a forger's guess at the key, 32 b")?;
    forge(&keyed_entries, &forged_keyed, Some(forger_key))?;
    verdicts.push(!verify(
        "   forged without the key:",
        &forged_keyed,
        Some(&key),
    )?);

    std::fs::remove_dir_all(&root)?;
    if verdicts.iter().all(|expected| *expected) {
        println!("every verdict is the expected one");
        Ok(())
    } else {
        Err("a verdict was not the expected one".into())
    }
}
