//! Checkpoint records (code 17): taken on schedule and on demand, each covering
//! exactly the records before it, signed, resumed across a reopen, and checked
//! by `verify_dir`; a forged one is refused.

mod common;

use std::sync::Arc;

use calybris_gate::{
    CheckpointConfig, Gate, GateConfig, GateRecord, VerifyError, VerifyOptions, verify_dir,
};
use calybris_tlog::{Ed25519Signer, leaf_hash, open_checkpoint, tree_hash, verify_consistency};
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

/// As [`config`], signing on the appending thread: checkpoints at the exact
/// places the schedule gives.
fn inline_config(dir: &std::path::Path, every: u64) -> GateConfig {
    GateConfig::new(dir, policy(false))
        .tenant("acme", 1_000_000_000)
        .clock(fixed_clock)
        .checkpoints(
            CheckpointConfig::new(ORIGIN, Arc::new(signer()))
                .every_records(every)
                .inline_signing(true),
        )
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
    let gate = Gate::open(inline_config(&dir.0, 10)).expect("open");
    for i in 0..25 {
        let admission = gate.decide("acme", request(i, 1)).expect("decide");
        gate.release(admission).expect("release");
    }
    let on_demand = gate.checkpoint().expect("checkpoint now");
    on_demand.wait().expect("durable");
    gate.close().expect("close");
    // Reopened with the background signer: the tree is rebuilt from the log
    // and the schedule goes on.
    let gate = Gate::open(config(&dir.0, 10)).expect("reopen");
    for i in 25..40 {
        let admission = gate.decide("acme", request(i, 1)).expect("decide");
        gate.release(admission).expect("release");
    }
    gate.close().expect("close");

    let all = records(&dir.0);
    let leaves: Vec<[u8; 32]> = all.iter().map(|(_, hash, _)| leaf_hash(hash)).collect();
    let mut checkpoints = 0;
    let mut last_size = None;
    let verifier = signer().verifier();
    for (sequence, _, record) in &all {
        if let GateRecord::Checkpoint(checkpoint) = record {
            // The signed head: records [0, tree_size), at or before the
            // record (the background signer lands it a few records later,
            // with the consistency proof to the records before it).
            assert!(checkpoint.tree_size <= *sequence, "record {sequence}");
            assert!(
                last_size < Some(checkpoint.tree_size),
                "tree sizes increase: {last_size:?} then {}",
                checkpoint.tree_size
            );
            last_size = Some(checkpoint.tree_size);
            let size = usize::try_from(checkpoint.tree_size).expect("size");
            assert_eq!(
                checkpoint.root,
                tree_hash(&leaves[..size]),
                "record {sequence}"
            );
            let before = usize::try_from(*sequence).expect("sequence");
            if size == before {
                assert!(checkpoint.proof.is_empty());
            }
            verify_consistency(
                checkpoint.tree_size,
                *sequence,
                &checkpoint.root,
                &tree_hash(&leaves[..before]),
                &checkpoint.proof,
            )
            .expect("the signed tree is a prefix of the log before the record");
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
    }
    // 25 decisions and 25 releases plus the opening records, one every ten
    // records signed inline, and the one on demand; then at least the one
    // the background signer lands (or close signs).
    assert!(
        checkpoints >= 7,
        "{checkpoints} checkpoints in {} records",
        all.len()
    );
    verify_dir(&dir.0, &VerifyOptions::default()).expect("the log verifies");
}

/// A scheduled checkpoint is signed on the background thread: the record
/// that makes it due is appended without waiting for the signature, and the
/// checkpoint record lands later with a consistency proof; a forged proof is
/// refused by the verifier.
/// A signer that waits for the test's go-ahead before each signature, so a
/// background checkpoint lands exactly when the test lets it.
struct GatedSigner {
    inner: Ed25519Signer,
    /// Off while the gate opens (records it appends then are signed inline).
    hold: std::sync::atomic::AtomicBool,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl calybris_tlog::Signer for GatedSigner {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn key_id(&self) -> u32 {
        calybris_tlog::Signer::key_id(&self.inner)
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, calybris_tlog::NoteError> {
        // A closed channel lets every later signature through.
        if self.hold.load(std::sync::atomic::Ordering::SeqCst) {
            let _go = self.go.lock().expect("lock").recv();
        }
        calybris_tlog::Signer::sign(&self.inner, message)
    }
}

#[test]
fn background_checkpoints_carry_a_proof_that_verifies_and_a_forged_one_is_refused() {
    let dir = TempDir::new("checkpoint-background");
    let (go, wait) = std::sync::mpsc::channel();
    let gated = Arc::new(GatedSigner {
        inner: signer(),
        hold: std::sync::atomic::AtomicBool::new(false),
        go: std::sync::Mutex::new(wait),
    });
    // A checkpoint due at every record; the first one is held by its signer
    // while 20 more records are appended: they do not wait for it.
    let gate = Gate::open(
        GateConfig::new(&dir.0, policy(false))
            .tenant("acme", 1_000_000_000)
            .clock(fixed_clock)
            .checkpoints(CheckpointConfig::new(ORIGIN, gated.clone()).every_records(1)),
    )
    .expect("open");
    gated.hold.store(true, std::sync::atomic::Ordering::SeqCst);
    for i in 0..10 {
        let admission = gate.decide("acme", request(i, 1)).expect("decide");
        gate.release(admission).expect("release");
    }
    drop(go);
    for i in 10..20 {
        let admission = gate.decide("acme", request(i, 1)).expect("decide");
        gate.release(admission).expect("release");
    }
    gate.close().expect("close");
    let all = records(&dir.0);
    let late: Vec<_> = all
        .iter()
        .filter_map(|(sequence, _, record)| match record {
            GateRecord::Checkpoint(c) if c.tree_size < *sequence => Some((*sequence, c.clone())),
            _ => None,
        })
        .collect();
    let (landed_at, first) = late.first().expect("a checkpoint landed late");
    assert!(
        *landed_at >= first.tree_size + 20,
        "held while 20 records were appended: {landed_at} for {}",
        first.tree_size
    );
    verify_dir(&dir.0, &VerifyOptions::default()).expect("the log verifies");

    // The same log with one proof hash of a late checkpoint changed, appended
    // again as a well-chained record: refused.
    let (_, good) = late.last().expect("a late checkpoint").clone();
    let mut forged = good.clone();
    if let Some(hash) = forged.proof.first_mut() {
        hash[0] ^= 1;
    } else {
        forged.proof.push([7; 32]);
    }
    forged.tree_size = good.tree_size;
    let wal =
        DurableWal::<GateRecord, FsDirectory>::open(&dir.0.join("log"), DurableConfig::default())
            .expect("open the log");
    wal.append_durable(&GateRecord::Checkpoint(forged))
        .expect("append");
    wal.close().expect("close");
    match verify_dir(&dir.0, &VerifyOptions::default()) {
        Err(VerifyError::CheckpointMismatch { sequence, .. }) => {
            assert_eq!(sequence, all.len() as u64);
        }
        other => panic!("a forged proof: {other:?}"),
    }
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
        .checkpoints(
            CheckpointConfig::new(ORIGIN, Arc::new(signer()))
                .every_ms(500)
                .inline_signing(true),
        );
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
    // It signs the tree up to the first record appended at 1,500 ms: the
    // decision of request 6, and follows it.
    let first_late = all
        .iter()
        .position(
            |(_, _, r)| matches!(r, GateRecord::Decision(d) if d.audit.input.request_sequence == 6),
        )
        .expect("the decision of request 6");
    let Some((sequence, _, GateRecord::Checkpoint(checkpoint))) =
        all.iter().find(|(s, _, _)| *s == checkpoints[0])
    else {
        panic!("the checkpoint record");
    };
    assert_eq!(checkpoint.tree_size, first_late as u64 + 1);
    assert_eq!(*sequence, first_late as u64 + 1);
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

/// The verifier builds the tree only when it meets the first checkpoint
/// record (a second read of the records before it): a log with none counts
/// none; a first checkpoint far into a log is checked against the tree of
/// every record before it, true or forged.
#[test]
fn the_first_checkpoint_record_is_checked_against_a_tree_built_on_demand() {
    for forged in [false, true] {
        let dir = TempDir::new("checkpoint-lazy");
        let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("acme", 1_000_000))
            .expect("open");
        for i in 0..300 {
            let admission = gate.decide("acme", request(i, 1)).expect("decide");
            gate.release(admission).expect("release");
        }
        gate.close().expect("close");
        let report = verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
        assert_eq!(report.counts.checkpoints, 0);
        let all = records(&dir.0);
        let leaves: Vec<[u8; 32]> = all.iter().map(|(_, hash, _)| leaf_hash(hash)).collect();
        // A head over the first 100 records, appended after all of them, with
        // the consistency proof from the true tree.
        let mut tree = calybris_tlog::MemoryTree::new();
        for leaf in &leaves {
            tree.append(*leaf).expect("append");
        }
        let size = 100u64;
        let mut root = tree_hash(&leaves[..100]);
        let proof = calybris_tlog::consistency_proof(&tree, size, all.len() as u64).expect("proof");
        if forged {
            root[31] ^= 1;
        }
        let note = calybris_tlog::Checkpoint {
            origin: ORIGIN.into(),
            size,
            root,
            extensions: vec![],
        }
        .sign(&[&signer()])
        .expect("sign");
        let record = calybris_gate::CheckpointRecord {
            tree_size: size,
            root,
            note,
            proof,
        };
        let wal = DurableWal::<GateRecord, FsDirectory>::open(
            &dir.0.join("log"),
            DurableConfig::default(),
        )
        .expect("open the log");
        wal.append_durable(&GateRecord::Checkpoint(record))
            .expect("append");
        wal.close().expect("close");
        match verify_dir(&dir.0, &VerifyOptions::default()) {
            Ok(report) if !forged => assert_eq!(report.counts.checkpoints, 1),
            Err(VerifyError::CheckpointMismatch { sequence, .. }) if forged => {
                assert_eq!(sequence, all.len() as u64);
            }
            other => panic!("forged {forged}: {other:?}"),
        }
    }
}
