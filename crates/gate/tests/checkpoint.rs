//! Checkpoint records (code 17): taken on schedule and on demand, each covering
//! exactly the records before it, signed, resumed across a reopen, and checked
//! by `verify_dir`; a forged one is refused.

mod common;

use std::sync::Arc;

use calybris_gate::{
    CheckpointConfig, Gate, GateConfig, GateRecord, VerifyError, VerifyOptions, verify_dir,
};
use calybris_tlog::{Ed25519Signer, MemoryTree, leaf_hash, open_checkpoint};
use calybris_wal::storage::FsDirectory;
use calybris_wal::{DurableConfig, DurableWal, SegmentedReader};
use common::{TempDir, policy, request};

const ORIGIN: &str = "example.com/gate";

fn signer() -> Ed25519Signer {
    Ed25519Signer::from_seed(ORIGIN, &[9; 32]).expect("signer")
}

fn fixed_clock() -> u64 {
    1_700_000_000_000
}

fn config(dir: &std::path::Path, every: u64) -> GateConfig {
    GateConfig::new(dir, policy(false))
        .tenant("acme", 1_000_000_000)
        .clock(fixed_clock)
        .checkpoints(CheckpointConfig::new(ORIGIN, Arc::new(signer())).every_records(every))
}

/// Every record of the log with its entry hash.
fn records(dir: &std::path::Path) -> Vec<(u64, [u8; 32], GateRecord)> {
    let mut reader =
        SegmentedReader::<GateRecord>::open(&dir.join("log"), None, None).expect("reader");
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry().expect("entry") {
        out.push((entry.sequence, entry.hash, entry.record));
    }
    out
}

#[test]
fn checkpoints_cover_the_records_before_them_and_verify() {
    let dir = TempDir::new("checkpoints");
    let gate = Gate::open(config(&dir.0, 10)).expect("open");
    for i in 0..25 {
        let admission = gate.decide("acme", request(i, 1)).expect("decide");
        gate.release(admission).expect("release");
    }
    let on_demand = gate.checkpoint().expect("checkpoint now");
    on_demand.wait().expect("durable");
    gate.close().expect("close");
    // Reopened: the tree is rebuilt from the log and the schedule goes on.
    let gate = Gate::open(config(&dir.0, 10)).expect("reopen");
    for i in 25..40 {
        let admission = gate.decide("acme", request(i, 1)).expect("decide");
        gate.release(admission).expect("release");
    }
    gate.close().expect("close");

    let all = records(&dir.0);
    let mut tree = MemoryTree::new();
    let mut checkpoints = 0;
    let verifier = signer().verifier();
    for (sequence, hash, record) in &all {
        if let GateRecord::Checkpoint(checkpoint) = record {
            assert_eq!(
                checkpoint.tree_size, *sequence,
                "covers the records before it"
            );
            assert_eq!(checkpoint.root, tree.root(), "record {sequence}");
            let (signed, _) =
                open_checkpoint(checkpoint.note.as_bytes(), std::slice::from_ref(&verifier))
                    .expect("a note signed by the gate's key");
            assert_eq!(
                (signed.size, signed.root),
                (checkpoint.tree_size, checkpoint.root)
            );
            assert_eq!(signed.origin, ORIGIN);
            checkpoints += 1;
        }
        tree.append(leaf_hash(hash)).expect("append");
    }
    // 40 decisions and 40 releases plus the opening records: one every ten
    // records, and the one on demand.
    assert!(
        checkpoints >= 8,
        "{checkpoints} checkpoints in {} records",
        all.len()
    );
    verify_dir(&dir.0, &VerifyOptions::default()).expect("the log verifies");
}

#[test]
fn without_configuration_no_checkpoint_is_taken() {
    let dir = TempDir::new("no-checkpoints");
    let gate =
        Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("acme", 1_000_000)).expect("open");
    for i in 0..30 {
        let admission = gate.decide("acme", request(i, 1)).expect("decide");
        gate.release(admission).expect("release");
    }
    assert!(
        gate.checkpoint().is_err(),
        "on demand needs a configuration"
    );
    gate.close().expect("close");
    assert!(
        records(&dir.0)
            .iter()
            .all(|(_, _, r)| !matches!(r, GateRecord::Checkpoint(_)))
    );
}

#[test]
fn a_forged_checkpoint_record_is_refused_by_the_verifier() {
    for forged_root in [true, false] {
        let dir = TempDir::new("forged-checkpoint");
        let gate = Gate::open(config(&dir.0, 1_000)).expect("open");
        let admission = gate.decide("acme", request(0, 1)).expect("decide");
        gate.release(admission).expect("release");
        gate.checkpoint()
            .expect("checkpoint")
            .wait()
            .expect("durable");
        gate.close().expect("close");
        let all = records(&dir.0);
        let Some(GateRecord::Checkpoint(good)) = all.last().map(|(_, _, r)| r.clone()) else {
            panic!("the last record is the checkpoint");
        };
        // A well-chained record whose tree head is wrong: the root (or the size)
        // of the previous checkpoint, appended after more records.
        let mut forged = good.clone();
        if forged_root {
            forged.tree_size = all.len() as u64;
            forged.root[0] ^= 1;
        }
        let wal = DurableWal::<GateRecord, FsDirectory>::open(
            &dir.0.join("log"),
            DurableConfig::default(),
        )
        .expect("open the log");
        wal.append_durable(&GateRecord::Checkpoint(forged))
            .expect("append");
        wal.close().expect("close");
        match verify_dir(&dir.0, &VerifyOptions::default()) {
            Err(VerifyError::CheckpointMismatch { sequence, .. }) => {
                assert_eq!(sequence, all.len() as u64);
            }
            other => panic!("forged root {forged_root}: {other:?}"),
        }
    }
}

static NOW_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn test_clock() -> u64 {
    NOW_MS.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn a_time_schedule_follows_the_gates_clock() {
    use std::sync::atomic::Ordering;
    let dir = TempDir::new("checkpoint-time");
    NOW_MS.store(1_000, Ordering::SeqCst);
    let config = GateConfig::new(&dir.0, policy(false))
        .tenant("acme", 1_000_000_000)
        .clock(test_clock)
        .checkpoints(CheckpointConfig::new(ORIGIN, Arc::new(signer())).every_ms(500));
    let gate = Gate::open(config).expect("open");
    // Records within 500 ms of the opening: no checkpoint.
    for i in 0..5 {
        let admission = gate.decide("acme", request(i, 1)).expect("decide");
        gate.release(admission).expect("release");
    }
    NOW_MS.store(1_499, Ordering::SeqCst);
    let admission = gate.decide("acme", request(5, 1)).expect("decide");
    gate.release(admission).expect("release");
    // 500 ms after the opening the next record brings one, and only one (one
    // taken before would make two).
    NOW_MS.store(1_500, Ordering::SeqCst);
    for i in 6..9 {
        let admission = gate.decide("acme", request(i, 1)).expect("decide");
        gate.release(admission).expect("release");
    }
    gate.close().expect("close");
    let all = records(&dir.0);
    let checkpoints: Vec<u64> = all
        .iter()
        .filter_map(|(s, _, r)| matches!(r, GateRecord::Checkpoint(_)).then_some(*s))
        .collect();
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    // It follows the first record appended at 1,500 ms: the decision of request 6.
    let first_late = all
        .iter()
        .position(
            |(_, _, r)| matches!(r, GateRecord::Decision(d) if d.audit.input.request_sequence == 6),
        )
        .expect("the decision of request 6");
    assert_eq!(checkpoints[0], first_late as u64 + 1);
    verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
}

#[test]
fn checkpoints_on_a_log_with_retired_segments_are_a_typed_refusal() {
    let dir = TempDir::new("checkpoint-retired");
    let config = || {
        GateConfig::new(&dir.0, policy(false))
            .tenant("a", u64::MAX / 4)
            .snapshot_every_records(500)
            .segment_limit_bytes(16 * 1024)
            .retention(calybris_gate::Retention::SinceLastSnapshot)
    };
    let gate = Gate::open(config()).expect("open");
    for k in 0..3_000 {
        let admission = gate.decide("a", request(k, 1)).expect("decide");
        gate.release(admission).expect("release");
    }
    let start = gate.start_anchor().expect("old segments were retired");
    gate.close().expect("close");
    // With retention still configured the combination itself is refused
    // (`tests/combos.rs`); keeping every segment from now on does not bring the
    // retired ones back.
    let with_checkpoints = config()
        .retention(calybris_gate::Retention::KeepAll)
        .checkpoints(CheckpointConfig::new(ORIGIN, Arc::new(signer())).every_records(10));
    match Gate::open(with_checkpoints) {
        Err(calybris_gate::GateError::CheckpointsNeedWholeLog { first_sequence }) => {
            assert!(first_sequence > 0 && first_sequence <= start.next_sequence);
        }
        other => panic!("expected CheckpointsNeedWholeLog, got {other:?}"),
    }
    // Without checkpoints the same directory opens.
    Gate::open(config())
        .expect("reopen")
        .close()
        .expect("close");
}
