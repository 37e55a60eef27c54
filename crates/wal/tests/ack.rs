//! The acknowledgement watermark: the recovery decision table of
//! `docs/SPECIFICATION.md` ("Recovery with a watermark"), one test per row, each
//! on real files and in memory, plus the hostile cases: every truncation of the
//! last batch, seeded garbage after it, every bit of the last acknowledged record
//! flipped, damaged slots, failing watermark syncs, retained segments.
//!
//! Re-run a randomised failure with `CALYBRIS_SEED=<seed> cargo test -p
//! calybris-wal --test ack`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use calybris_wal::format::{ACK_SLOT_LEN_BYTES, AckSlot, HEADER_LEN_BYTES};
use calybris_wal::storage::{Directory, FsDirectory, MemDirectory, MemDisk};
use calybris_wal::{
    Acknowledged, CorruptReason, DurableConfig, DurableWal, Recovery, SegmentedReader, TornReason,
    WalAnchor, WalError, scan_dir,
};
use common::{Rec, Rng, TempDir, rec, seed, watermark_caught_up};

fn config() -> DurableConfig {
    DurableConfig {
        window: Duration::from_micros(20),
        ..DurableConfig::default()
    }
}

/// A segment directory on real files or in memory, with byte access to its
/// segments and its watermark.
trait DirBackend {
    type D: Directory + Clone;
    fn new(tag: &str) -> Self;
    fn dir(&self) -> Self::D;
    fn segment_bytes(&self, first: u64) -> Vec<u8>;
    fn set_segment_bytes(&self, first: u64, bytes: Vec<u8>);
    fn ack_bytes(&self) -> Option<Vec<u8>>;
    fn set_ack_bytes(&self, bytes: Option<Vec<u8>>);
}

struct FsBackend {
    _tmp: TempDir,
    path: PathBuf,
}

impl DirBackend for FsBackend {
    type D = FsDirectory;

    fn new(tag: &str) -> Self {
        let tmp = TempDir::new(tag);
        let path = tmp.path().join("log");
        Self { _tmp: tmp, path }
    }

    fn dir(&self) -> FsDirectory {
        FsDirectory::new(&self.path).expect("directory")
    }

    fn segment_bytes(&self, first: u64) -> Vec<u8> {
        std::fs::read(self.dir().segment_path(first)).expect("read segment")
    }

    fn set_segment_bytes(&self, first: u64, bytes: Vec<u8>) {
        std::fs::write(self.dir().segment_path(first), bytes).expect("write segment");
    }

    fn ack_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(self.path.join("ACK")).ok()
    }

    fn set_ack_bytes(&self, bytes: Option<Vec<u8>>) {
        let path = self.path.join("ACK");
        match bytes {
            Some(bytes) => std::fs::write(path, bytes).expect("write ACK"),
            None => std::fs::remove_file(path).expect("remove ACK"),
        }
    }
}

struct MemBackend {
    dir: MemDirectory,
}

impl DirBackend for MemBackend {
    type D = MemDirectory;

    fn new(_tag: &str) -> Self {
        Self {
            dir: MemDirectory::new(),
        }
    }

    fn dir(&self) -> MemDirectory {
        self.dir.clone()
    }

    fn segment_bytes(&self, first: u64) -> Vec<u8> {
        self.dir.segment(first).expect("segment").bytes()
    }

    fn set_segment_bytes(&self, first: u64, bytes: Vec<u8>) {
        self.dir.segment(first).expect("segment").set_bytes(bytes);
    }

    fn ack_bytes(&self) -> Option<Vec<u8>> {
        self.dir.ack().map(|disk| disk.bytes())
    }

    fn set_ack_bytes(&self, bytes: Option<Vec<u8>>) {
        self.dir.set_ack(bytes.map(MemDisk::with_bytes));
    }
}

/// Writes `batches` batches of `per_batch` records, each waited for (so each
/// is acknowledged, and its watermark written, before the next); returns the
/// watermark file after every batch (index 0: before any record).
fn write_batches<B: DirBackend>(backend: &B, batches: u64, per_batch: u64) -> Vec<Vec<u8>> {
    let wal = DurableWal::<Rec, _>::open_in(backend.dir(), config()).expect("open");
    let mut acks = vec![backend.ack_bytes().expect("a new log has a watermark")];
    for batch in 0..batches {
        let tickets: Vec<_> = (0..per_batch)
            .map(|k| wal.append(&rec(batch * per_batch + k)).expect("append"))
            .collect();
        for ticket in tickets {
            ticket.wait().expect("durable");
        }
        watermark_caught_up(&wal);
        acks.push(backend.ack_bytes().expect("watermark"));
    }
    wal.close().expect("close");
    acks
}

// Row: acknowledged records after a lagging watermark (tickets complete on the
// data sync; the watermark follows) -> kept, even across a rotation; only a torn
// tail after them is cut.
fn records_after_a_lagging_watermark_are_kept<B: DirBackend>() {
    let backend = B::new("ack-lagging");
    let small = DurableConfig {
        segment_limit_bytes: 200,
        ..config()
    };
    let wal = DurableWal::<Rec, _>::open_in(backend.dir(), small.clone()).expect("open");
    for id in 0..3 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    watermark_caught_up(&wal);
    assert_eq!(wal.watermarked_anchor().next_sequence, 3);
    // The watermark as a crash leaves it when none of the later watermark writes
    // reached the disk, though their records were acknowledged.
    let stale = backend.ack_bytes().expect("watermark");
    for id in 3..20 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    assert!(wal.segments_created() > 0, "the records rotate segments");
    let durable = wal.durable_anchor();
    wal.close().expect("close");
    backend.set_ack_bytes(Some(stale));
    let last = *backend
        .dir()
        .list_segments()
        .expect("list")
        .last()
        .expect("a segment");
    let mut bytes = backend.segment_bytes(last);
    let cut = bytes.len() as u64;
    // Half a frame of the next batch: a torn write after the last data sync.
    bytes.extend_from_slice(&[0x21, 0, 0, 0, 0xde, 0xff]);
    backend.set_segment_bytes(last, bytes);
    let wal = DurableWal::<Rec, _>::open_in(backend.dir(), small).expect("reopen");
    let Recovery::TornTail {
        anchor,
        valid_len_bytes,
        acknowledged,
        ..
    } = wal.recovery()
    else {
        panic!("{:?}", wal.recovery());
    };
    assert_eq!(*anchor, durable, "every acknowledged record is kept");
    assert_eq!(*valid_len_bytes, cut);
    assert_eq!(acknowledged.records(), Some(3), "the watermark lagged");
    assert_eq!(wal.append_durable(&rec(20)).expect("continues"), 20);
    watermark_caught_up(&wal);
    assert_eq!(wal.watermarked_anchor().next_sequence, 21);
    wal.close().expect("close");
    assert_eq!(records(&backend), (0..21).map(rec).collect::<Vec<_>>());
}

// Row: a watermark ahead of the data it names (never written by a writer, which
// records only synced positions; what a lost suffix or a copied watermark looks
// like) -> refused, nothing cut, even when the data ends in a torn frame.
fn a_watermark_ahead_of_torn_data_is_refused<B: DirBackend>() {
    let backend = B::new("ack-ahead");
    let acks = write_batches(&backend, 2, 3);
    let (offsets, _) = offsets(&backend);
    // The second batch torn in its middle, under the watermark that covers it.
    let mut bytes = backend.segment_bytes(0);
    bytes.truncate(usize::try_from(offsets[4]).expect("fits") + 5);
    backend.set_segment_bytes(0, bytes.clone());
    backend.set_ack_bytes(Some(acks[2].clone()));
    let recovery = refusal(reopen(&backend));
    assert!(
        matches!(
            recovery,
            Recovery::Corrupt {
                sequence: Some(4),
                reason: CorruptReason::SuffixMissing {
                    anchored_records: 6,
                    found_records: 4
                },
                ..
            }
        ),
        "{recovery:?}"
    );
    assert_eq!(backend.segment_bytes(0), bytes, "nothing was cut");
}

/// Byte offsets of every frame of the (only) segment 0, and its length.
fn offsets<B: DirBackend>(backend: &B) -> (Vec<u64>, u64) {
    let mut reader = SegmentedReader::<Rec, _>::from_dir(backend.dir(), None, None).expect("list");
    let mut offsets = Vec::new();
    for entry in reader.by_ref() {
        offsets.push(entry.expect("clean").offset_bytes);
    }
    (offsets, backend.segment_bytes(0).len() as u64)
}

fn reopen<B: DirBackend>(backend: &B) -> Result<DurableWal<Rec, B::D>, WalError> {
    DurableWal::<Rec, _>::open_in(backend.dir(), config())
}

fn records<B: DirBackend>(backend: &B) -> Vec<Rec> {
    SegmentedReader::<Rec, _>::from_dir(backend.dir(), None, None)
        .expect("list")
        .map(|entry| entry.expect("verified").record)
        .collect()
}

fn refusal(result: Result<DurableWal<Rec, impl Directory>, WalError>) -> Recovery {
    match result {
        Err(WalError::Refused(recovery)) => recovery,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(wal) => panic!("expected a refusal, opened: {:?}", wal.recovery()),
    }
}

// Row: every byte verifies -> Clean, the watermark is known.
fn clean_reports_the_watermark<B: DirBackend>() {
    let backend = B::new("ack-clean");
    write_batches(&backend, 2, 3);
    let wal = reopen(&backend).expect("reopen");
    let Recovery::Clean { acknowledged, .. } = wal.recovery() else {
        panic!("{:?}", wal.recovery());
    };
    let Acknowledged::Known {
        records,
        end_offset_bytes,
        ..
    } = *acknowledged
    else {
        panic!("{acknowledged:?}");
    };
    assert_eq!(records, 6);
    assert_eq!(end_offset_bytes, backend.segment_bytes(0).len() as u64);
    assert!(matches!(
        acknowledged,
        Acknowledged::Known {
            damaged_slots: 0,
            ..
        }
    ));
}

/// Writes two batches, then puts back the watermark of the first, as a crash
/// between the second batch's data sync and its watermark sync leaves it.
fn unacknowledged_last_batch<B: DirBackend>(tag: &str) -> (B, Vec<u64>, u64) {
    let backend = B::new(tag);
    let acks = write_batches(&backend, 2, 3);
    backend.set_ack_bytes(Some(acks[1].clone()));
    let (offsets, len) = offsets(&backend);
    (backend, offsets, len)
}

fn torn_after_watermark<B: DirBackend>(
    tag: &str,
    damage: impl Fn(&mut Vec<u8>, usize),
    expected: TornReason,
    kept: usize,
) {
    let (backend, offsets, _) = unacknowledged_last_batch::<B>(tag);
    let mut bytes = backend.segment_bytes(0);
    damage(&mut bytes, usize::try_from(offsets[3]).expect("fits"));
    backend.set_segment_bytes(0, bytes);
    let wal = reopen(&backend).expect("a tail after the watermark is cut");
    let Recovery::TornTail {
        anchor,
        valid_len_bytes,
        reason,
        acknowledged,
        ..
    } = wal.recovery()
    else {
        panic!("{tag}: {:?}", wal.recovery());
    };
    assert_eq!(*reason, expected, "{tag}");
    assert_eq!(anchor.next_sequence, kept as u64, "{tag}");
    assert_eq!(*valid_len_bytes, offsets[kept], "{tag}");
    assert_eq!(acknowledged.records(), Some(3), "{tag}");
    wal.append_durable(&rec(100)).expect("continues");
    wal.close().expect("close");
    let mut expected_records: Vec<Rec> = (0..kept as u64).map(rec).collect();
    expected_records.push(rec(100));
    assert_eq!(records(&backend), expected_records, "{tag}");
}

// Row: the file ends inside a frame after the watermark -> TornTail.
fn torn_incomplete_after_watermark<B: DirBackend>() {
    torn_after_watermark::<B>(
        "ack-torn-incomplete",
        |b, at| b.truncate(at + 20),
        TornReason::IncompleteFrame,
        3,
    );
}

// Row: zeros after the watermark -> TornTail (ZeroFilled).
fn torn_zero_filled_after_watermark<B: DirBackend>() {
    torn_after_watermark::<B>(
        "ack-torn-zero",
        |b, at| {
            b.truncate(at);
            b.resize(at + 4096, 0);
        },
        TornReason::ZeroFilled,
        3,
    );
}

// Row: part of a record, then non-zero garbage up to the end, after the
// watermark -> TornTail (Garbage), not corruption.
fn torn_garbage_after_watermark<B: DirBackend>() {
    torn_after_watermark::<B>(
        "ack-torn-garbage",
        |b, at| {
            b.truncate(at + 11);
            b.extend((0..3000u32).map(|i| (i % 251) as u8 | 1));
        },
        TornReason::Garbage,
        3,
    );
}

// Row: a complete but bad final frame after the watermark -> TornTail.
fn torn_bad_final_frame_after_watermark<B: DirBackend>() {
    torn_after_watermark::<B>(
        "ack-torn-final",
        |b, _| {
            let last = b.len() - 1;
            b[last] ^= 0x01;
        },
        TornReason::BadFinalFrame,
        5,
    );
}

// Row: a damaged final record at or before the watermark -> refused, never cut.
fn damaged_last_acknowledged_record_is_refused<B: DirBackend>() {
    let backend = B::new("ack-flip-last");
    write_batches(&backend, 2, 3);
    let (offsets, len) = offsets(&backend);
    let before = backend.segment_bytes(0);
    let mut bytes = before.clone();
    let last = usize::try_from(len).expect("fits") - 1;
    bytes[last] ^= 0x01;
    backend.set_segment_bytes(0, bytes.clone());
    assert_eq!(
        refusal(reopen(&backend)),
        Recovery::Corrupt {
            sequence: Some(5),
            offset_bytes: offsets[5],
            reason: CorruptReason::HashMismatch,
        }
    );
    assert_eq!(backend.segment_bytes(0), bytes, "nothing was cut");
}

// Row: the segment holds less than the watermark vouches for -> SuffixMissing.
fn cut_acknowledged_suffix_is_refused<B: DirBackend>() {
    let backend = B::new("ack-cut");
    write_batches(&backend, 2, 3);
    let (offsets, _) = offsets(&backend);
    let mut bytes = backend.segment_bytes(0);
    bytes.truncate(usize::try_from(offsets[4]).expect("fits"));
    backend.set_segment_bytes(0, bytes);
    assert_eq!(
        refusal(reopen(&backend)),
        Recovery::Corrupt {
            sequence: Some(4),
            offset_bytes: offsets[4],
            reason: CorruptReason::SuffixMissing {
                anchored_records: 6,
                found_records: 4,
            },
        }
    );
}

// Row: the watermark names a segment after the last one -> SuffixMissing.
fn watermark_beyond_the_last_segment_is_refused<B: DirBackend>() {
    let backend = B::new("ack-beyond");
    let wal = DurableWal::<Rec, _>::open_in(
        backend.dir(),
        DurableConfig {
            segment_limit_bytes: 300,
            ..config()
        },
    )
    .expect("open");
    for id in 0..12 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    wal.close().expect("close");
    let segments = backend.dir().list_segments().expect("list");
    assert!(segments.len() >= 3, "{segments:?}");
    // Drop the segment the watermark points into, and every later one.
    let dir = backend.dir();
    let ack_segment = scan_dir::<Rec, _>(backend.dir(), None, None)
        .expect("scan")
        .acknowledged()
        .segment_first_sequence()
        .expect("known");
    assert!(ack_segment > 0);
    for first in segments.iter().filter(|first| **first >= ack_segment) {
        dir.remove_segment(*first).expect("remove");
    }
    let outcome = refusal(reopen(&backend));
    assert!(
        matches!(
            outcome,
            Recovery::Corrupt {
                reason: CorruptReason::SuffixMissing { .. },
                ..
            }
        ),
        "{outcome:?}"
    );
}

// Row: the record at the watermark has another hash -> AckMismatch.
fn watermark_of_another_history_is_refused<B: DirBackend>() {
    let first = B::new("ack-history-a");
    write_batches(&first, 1, 3);
    let second = B::new("ack-history-b");
    let wal = DurableWal::<Rec, _>::open_in(second.dir(), config()).expect("open");
    for id in 50..53 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    wal.close().expect("close");
    // Same layout of lengths would be a coincidence; force the same end offset by
    // giving the second log the first one's watermark.
    second.set_ack_bytes(first.ack_bytes());
    let outcome = refusal(reopen(&second));
    assert!(
        matches!(
            outcome,
            Recovery::Corrupt {
                reason: CorruptReason::AckMismatch | CorruptReason::SuffixMissing { .. },
                ..
            }
        ),
        "{outcome:?}"
    );
}

// Row: one slot torn or damaged -> the other is used and the damage reported.
fn one_damaged_slot_falls_back<B: DirBackend>() {
    let backend = B::new("ack-one-slot");
    let acks = write_batches(&backend, 2, 3);
    let mut ack = acks[2].clone();
    // Damage the current slot (the one with the larger generation); the other
    // one holds an earlier acknowledged position.
    let (current, _) = AckSlot::decode_file(&ack, None);
    let current = AckSlot::slot_index(current.expect("valid").generation);
    let other = 1 - current;
    let other_slot: &[u8; ACK_SLOT_LEN_BYTES] = ack
        [other * ACK_SLOT_LEN_BYTES..(other + 1) * ACK_SLOT_LEN_BYTES]
        .try_into()
        .expect("slot");
    let fallback = AckSlot::decode(other_slot, None).expect("the other slot is valid");
    assert!(fallback.point.anchor.next_sequence < 6);
    ack[current * ACK_SLOT_LEN_BYTES + 30] ^= 0x40;
    backend.set_ack_bytes(Some(ack));
    let wal = reopen(&backend).expect("falls back to the other slot");
    let acknowledged = wal.recovery().acknowledged();
    assert_eq!(
        acknowledged,
        Acknowledged::Known {
            records: fallback.point.anchor.next_sequence,
            segment_first_sequence: 0,
            end_offset_bytes: fallback.point.end_offset_bytes,
            damaged_slots: 1,
        }
    );
    // Records after the fallback position are verified, so kept.
    assert_eq!(wal.durable_anchor().next_sequence, 6);
    wal.close().expect("close");
    // Opening rewrote the damaged slot.
    let wal = reopen(&backend).expect("reopen");
    assert!(matches!(
        wal.recovery().acknowledged(),
        Acknowledged::Known {
            damaged_slots: 0,
            ..
        }
    ));
}

// Row: both slots damaged -> refused (AckDamaged), nothing modified.
fn both_damaged_slots_are_refused<B: DirBackend>() {
    let backend = B::new("ack-both-slots");
    write_batches(&backend, 1, 3);
    let mut ack = backend.ack_bytes().expect("watermark");
    ack[5] ^= 1;
    ack[ACK_SLOT_LEN_BYTES + 5] ^= 1;
    backend.set_ack_bytes(Some(ack.clone()));
    assert_eq!(
        refusal(reopen(&backend)),
        Recovery::Corrupt {
            sequence: None,
            offset_bytes: 0,
            reason: CorruptReason::AckDamaged,
        }
    );
    assert_eq!(backend.ack_bytes(), Some(ack));
}

// Row: no watermark file -> the rule without one; reopening writes one.
fn no_watermark_keeps_the_old_rule<B: DirBackend>() {
    let backend = B::new("ack-none");
    write_batches(&backend, 2, 3);
    backend.set_ack_bytes(None);
    let (offsets, len) = offsets(&backend);
    let mut bytes = backend.segment_bytes(0);
    let last = usize::try_from(len).expect("fits") - 1;
    bytes[last] ^= 0x01;
    backend.set_segment_bytes(0, bytes);
    let wal = reopen(&backend).expect("without a watermark a bad final frame is a torn tail");
    assert!(matches!(
        wal.recovery(),
        Recovery::TornTail {
            reason: TornReason::BadFinalFrame,
            acknowledged: Acknowledged::Unknown,
            valid_len_bytes,
            ..
        } if *valid_len_bytes == offsets[5]
    ));
    wal.close().expect("close");
    assert!(backend.ack_bytes().is_some(), "reopening wrote a watermark");
    let wal = reopen(&backend).expect("reopen");
    assert_eq!(wal.recovery().acknowledged().records(), Some(5));
}

// Row: a directory whose first segment is not at 0 -> GenesisMissing without a
// start anchor; verifies with the right one; AnchorMismatch with a wrong one.
fn retired_segments_need_the_start_anchor<B: DirBackend>() {
    let backend = B::new("ack-retire");
    let small = DurableConfig {
        segment_limit_bytes: 300,
        ..config()
    };
    let wal = DurableWal::<Rec, _>::open_in(backend.dir(), small.clone()).expect("open");
    for id in 0..20 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    let before = backend.dir().list_segments().expect("list");
    assert!(before.len() >= 4, "{before:?}");
    let plan = wal.plan_retirement(before[2]).expect("plan");
    // The writer may create the next segment after the last acknowledgement
    // (a full segment is synced, acknowledged, then rotated), so the listing can
    // only grow here; every segment listed before planning must still be there.
    let after = backend.dir().list_segments().expect("list");
    assert!(
        before.iter().all(|segment| after.contains(segment)),
        "planning removes nothing: {before:?} -> {after:?}"
    );
    let retired = wal
        .retire_segments_before(plan.before_sequence)
        .expect("retire");
    assert_eq!(retired, plan, "retiring follows the plan");
    assert_eq!(retired.removed, before[..2].to_vec());
    // Beyond the durable position nothing more is retired.
    let clamped = wal.plan_retirement(u64::MAX).expect("plan");
    assert_eq!(clamped.before_sequence, wal.durable_anchor().next_sequence);
    assert_eq!(retired.start_anchor.next_sequence, before[2]);
    // Nothing at or after the sequence is touched, and the writer goes on.
    wal.append_durable(&rec(20)).expect("append after retiring");
    let nothing = wal.retire_segments_before(before[2]).expect("retire again");
    assert!(nothing.removed.is_empty());
    wal.close().expect("close");
    assert_eq!(backend.dir().list_segments().expect("list")[0], before[2]);

    let outcome = refusal(DurableWal::<Rec, _>::open_in(backend.dir(), small.clone()));
    assert_eq!(
        outcome,
        Recovery::Corrupt {
            sequence: Some(before[2]),
            offset_bytes: 0,
            reason: CorruptReason::GenesisMissing {
                first_sequence: before[2]
            },
        }
    );
    let wrong = WalAnchor {
        next_sequence: before[2],
        head_hash: [7; 32],
    };
    let outcome = refusal(DurableWal::<Rec, _>::open_in(
        backend.dir(),
        DurableConfig {
            start_anchor: Some(wrong),
            ..small.clone()
        },
    ));
    assert!(
        matches!(
            outcome,
            Recovery::Corrupt {
                reason: CorruptReason::AnchorMismatch,
                ..
            }
        ),
        "{outcome:?}"
    );
    let wal = DurableWal::<Rec, _>::open_in(
        backend.dir(),
        DurableConfig {
            start_anchor: Some(retired.start_anchor),
            ..small
        },
    )
    .expect("the suffix verifies from the start anchor");
    assert!(wal.recovery().is_clean());
    assert_eq!(wal.durable_anchor().next_sequence, 21);
    assert_eq!(
        wal.recovery().acknowledged().records(),
        Some(21),
        "the watermark still works after retention"
    );
    wal.append_durable(&rec(21)).expect("append");
    wal.close().expect("close");
    let found: Vec<u64> = SegmentedReader::<Rec, _>::from_dir(backend.dir(), None, None)
        .expect("list")
        .with_start_anchor(Some(retired.start_anchor))
        .map(|entry| entry.expect("verified").sequence)
        .collect();
    assert_eq!(found, (before[2]..22).collect::<Vec<_>>());
}

on_both_backends_dir!(
    clean_reports_the_watermark,
    records_after_a_lagging_watermark_are_kept,
    a_watermark_ahead_of_torn_data_is_refused,
    torn_incomplete_after_watermark,
    torn_zero_filled_after_watermark,
    torn_garbage_after_watermark,
    torn_bad_final_frame_after_watermark,
    damaged_last_acknowledged_record_is_refused,
    cut_acknowledged_suffix_is_refused,
    watermark_beyond_the_last_segment_is_refused,
    watermark_of_another_history_is_refused,
    one_damaged_slot_falls_back,
    both_damaged_slots_are_refused,
    no_watermark_keeps_the_old_rule,
    retired_segments_need_the_start_anchor,
);

/// Truncates the last segment at every byte offset of its last batch, with the
/// watermark of the batch before (a crash before the last watermark sync) and
/// with the last one (damage after acknowledgement), optionally followed by
/// seeded garbage: reopening cuts a torn tail after the watermark or refuses
/// with a typed error naming the offset; it never panics and never loses an
/// acknowledged record.
#[test]
fn every_truncation_of_the_last_batch_on_real_files() {
    let seed = seed(0x7EA2_0001);
    let mut rng = Rng::new(seed);
    let (backend, offsets, len) = unacknowledged_last_batch::<FsBackend>("ack-every-cut");
    let original = backend.segment_bytes(0);
    let acks = [backend.ack_bytes().expect("old watermark"), {
        // The watermark of the last batch: rebuild it by reopening a copy.
        let copy = FsBackend::new("ack-every-cut-copy");
        write_batches(&copy, 2, 3);
        assert_eq!(
            copy.segment_bytes(0),
            original,
            "the same records give the same bytes"
        );
        copy.ack_bytes().expect("new watermark")
    }];
    let batch_start = offsets[3];
    for cut in batch_start..len {
        for (which, ack) in acks.iter().enumerate() {
            for garbage in [false, true] {
                let mut bytes = original[..usize::try_from(cut).expect("fits")].to_vec();
                if garbage {
                    let extra = 1 + rng.below(600);
                    bytes.extend((0..extra).map(|_| rng.next_u64() as u8));
                }
                backend.set_segment_bytes(0, bytes);
                backend.set_ack_bytes(Some(ack.clone()));
                let acked_records = if which == 0 { 3 } else { 6 };
                let context = format!("seed {seed} cut {cut} watermark {which} garbage {garbage}");
                match reopen(&backend) {
                    Ok(wal) => {
                        assert!(wal.recovery().is_recoverable(), "{context}");
                        assert!(
                            wal.durable_anchor().next_sequence >= acked_records,
                            "{context}"
                        );
                        wal.close().expect("close");
                        let found = records(&backend);
                        assert!(found.len() as u64 >= acked_records, "{context}");
                        assert_eq!(
                            found,
                            (0..found.len() as u64).map(rec).collect::<Vec<_>>(),
                            "{context}"
                        );
                    }
                    Err(WalError::Refused(Recovery::Corrupt {
                        sequence: Some(sequence),
                        offset_bytes,
                        ..
                    })) => {
                        assert_eq!(
                            which, 1,
                            "{context}: refused although the cut is after the watermark"
                        );
                        assert!(sequence >= 3 && offset_bytes >= batch_start, "{context}");
                    }
                    Err(other) => panic!("{context}: {other}"),
                }
            }
        }
    }
}

/// Flips every bit of the last acknowledged record on real files: always
/// refused, naming that record and its offset, and the file is never cut.
#[test]
fn every_bit_of_the_last_acknowledged_record_is_refused_on_real_files() {
    let backend = FsBackend::new("ack-every-bit");
    write_batches(&backend, 2, 3);
    let (offsets, len) = offsets(&backend);
    let original = backend.segment_bytes(0);
    let start = usize::try_from(offsets[5]).expect("fits");
    for index in start..usize::try_from(len).expect("fits") {
        for bit in 0..8 {
            let mut bytes = original.clone();
            bytes[index] ^= 1 << bit;
            backend.set_segment_bytes(0, bytes.clone());
            let outcome = refusal(reopen(&backend));
            assert!(
                matches!(
                    outcome,
                    Recovery::Corrupt {
                        sequence: Some(5),
                        offset_bytes,
                        reason: CorruptReason::HashMismatch
                            | CorruptReason::BadLength
                            | CorruptReason::SuffixMissing { .. },
                    } if offset_bytes == offsets[5]
                ),
                "byte {index} bit {bit}: {outcome:?}"
            );
            assert_eq!(
                backend.segment_bytes(0),
                bytes,
                "byte {index} bit {bit}: cut"
            );
        }
    }
    assert!(start > HEADER_LEN_BYTES);
}

/// Appends until the log reports poisoned; returns the records acknowledged on
/// the way (their data was synced before the watermark failure was seen).
fn append_until_poisoned<D: Directory>(wal: &DurableWal<Rec, D>, from: u64) -> Vec<u64> {
    let mut acknowledged = Vec::new();
    for id in from..from + 10_000 {
        match wal.append(&rec(id)).map(|ticket| ticket.wait()) {
            Ok(Ok(sequence)) => acknowledged.push(sequence),
            Ok(Err(WalError::Poisoned { .. })) | Err(WalError::Poisoned { .. }) => {
                return acknowledged;
            }
            Ok(Err(other)) | Err(other) => panic!("expected poison, got {other}"),
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    panic!("the failed watermark never poisoned the log");
}

/// A failing watermark sync poisons the log without taking back what was
/// acknowledged: the record's ticket completes on its data sync (the watermark
/// follows, off the acknowledgement path), later appends are refused once the
/// failure is seen, and reopening after a crash keeps every acknowledged record,
/// those after the stale watermark included.
#[test]
fn a_failed_watermark_sync_poisons_the_log() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config()).expect("open");
    for id in 0..3 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    watermark_caught_up(&wal);
    dir.ack().expect("watermark").fail_next_syncs(1);
    assert_eq!(wal.append_durable(&rec(3)).expect("acknowledged"), 3);
    let later = append_until_poisoned(&wal, 4);
    assert!(wal.durable_anchor().next_sequence >= 4);
    assert!(wal.close().is_err());
    dir.crash(calybris_wal::storage::CrashMode::DropUnsynced);
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config()).expect("reopen");
    let acknowledged = 4 + later.len() as u64;
    assert!(wal.durable_anchor().next_sequence >= acknowledged);
    assert_eq!(
        wal.recovery().acknowledged().records(),
        Some(3),
        "the failed watermark sync left the watermark behind the data"
    );
    wal.close().expect("close");
    let found: Vec<Rec> = SegmentedReader::<Rec, _>::from_dir(dir, None, None)
        .expect("list")
        .map(|entry| entry.expect("verified").record)
        .collect();
    let expected: Vec<Rec> = (0..4)
        .map(rec)
        .chain(later.iter().map(|&sequence| rec(sequence)))
        .collect();
    assert_eq!(found[..expected.len()], expected[..]);
}

/// A failing watermark write (not only its sync) poisons too; what was
/// acknowledged before stays acknowledged.
#[test]
fn a_failed_watermark_write_poisons_the_log() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config()).expect("open");
    wal.append_durable(&rec(0)).expect("durable");
    watermark_caught_up(&wal);
    dir.ack().expect("watermark").fail_next_writes(1);
    assert_eq!(wal.append_durable(&rec(1)).expect("acknowledged"), 1);
    let later = append_until_poisoned(&wal, 2);
    assert!(matches!(
        wal.append(&rec(99)),
        Err(WalError::Poisoned { .. })
    ));
    assert_eq!(wal.watermarked_anchor().next_sequence, 1);
    assert!(wal.durable_anchor().next_sequence >= 2 + later.len() as u64);
}

/// The single-file writer keeps `<file>.ack`: a flipped bit in its last synced
/// record is refused on reopen and by the reader, never cut.
#[test]
fn single_file_watermark_refuses_a_damaged_last_record() {
    let tmp = TempDir::new("ack-single");
    let path = tmp.path().join("log.cwal");
    let mut writer = calybris_wal::WalWriter::<Rec>::create(&path, None).expect("create");
    assert!(writer.has_watermark());
    for id in 0..4 {
        writer.append(&rec(id)).expect("append");
    }
    writer.sync().expect("sync");
    drop(writer);
    assert!(calybris_wal::storage::ack_path(&path).exists());
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let refused = calybris_wal::WalWriter::<Rec>::open(&path, None);
    assert!(
        matches!(
            refused,
            Err(WalError::Refused(Recovery::Corrupt {
                sequence: Some(3),
                reason: CorruptReason::HashMismatch,
                ..
            }))
        ),
        "{refused:?}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), bytes, "not cut");
    let mut reader = calybris_wal::WalReader::<Rec>::open(&path, None).expect("open");
    assert!(reader.scan_to_end().expect("scan").recovery_is_corrupt());
    // Without the sidecar the old rule applies and says so.
    std::fs::remove_file(calybris_wal::storage::ack_path(&path)).expect("remove");
    let writer = calybris_wal::WalWriter::<Rec>::open(&path, None).expect("torn tail");
    assert!(matches!(
        writer.recovery(),
        Recovery::TornTail {
            acknowledged: Acknowledged::Unknown,
            ..
        }
    ));
}

/// The same on the in-memory disk with `create_in_acked` / `open_in_acked`, and
/// garbage after the last sync is a torn tail there.
#[test]
fn single_file_watermark_in_memory() {
    let (disk, ack) = (MemDisk::new(), MemDisk::new());
    let mut writer = calybris_wal::WalWriter::<Rec, _>::create_in_acked(
        disk.lock().expect("lock"),
        ack.lock().expect("lock"),
        None,
    )
    .expect("create");
    for id in 0..3 {
        writer.append(&rec(id)).expect("append");
    }
    writer.sync().expect("sync");
    writer.append(&rec(3)).expect("append");
    writer.flush().expect("flush, no sync");
    drop(writer);
    let synced_len = disk.bytes().len() - disk.unsynced_len_bytes() as usize;
    let mut bytes = disk.bytes();
    bytes.truncate(synced_len + 13);
    bytes.extend([0xA5u8; 700]);
    disk.set_bytes(bytes);
    let writer = calybris_wal::WalWriter::<Rec, _>::open_in_acked(
        disk.lock().expect("lock"),
        ack.lock().expect("lock"),
        None,
        None,
    )
    .expect("garbage after the watermark is a torn tail");
    assert!(matches!(
        writer.recovery(),
        Recovery::TornTail {
            reason: TornReason::Garbage,
            anchor,
            ..
        } if anchor.next_sequence == 3
    ));
    drop(writer);
    let mut bytes = disk.bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x02;
    disk.set_bytes(bytes);
    let refused = calybris_wal::WalWriter::<Rec, _>::open_in_acked(
        disk.lock().expect("lock"),
        ack.lock().expect("lock"),
        None,
        None,
    );
    assert!(
        matches!(
            refused,
            Err(WalError::Refused(Recovery::Corrupt {
                sequence: Some(2),
                reason: CorruptReason::HashMismatch,
                ..
            }))
        ),
        "{refused:?}"
    );
}

/// `scan_dir` reports the watermark too.
#[test]
fn scan_dir_reports_the_watermark() {
    let backend = MemBackend::new("scan");
    write_batches(&backend, 1, 2);
    let outcome = scan_dir::<Rec, _>(backend.dir(), None, None).expect("scan");
    assert_eq!(outcome.acknowledged().records(), Some(2));
}

trait IsCorrupt {
    fn recovery_is_corrupt(&self) -> bool;
}

impl IsCorrupt for Recovery {
    fn recovery_is_corrupt(&self) -> bool {
        matches!(self, Recovery::Corrupt { .. })
    }
}

/// A crash in the middle of a retirement leaves a directory that still opens
/// from the start anchor persisted from the plan.
#[test]
fn a_retirement_interrupted_by_a_crash_opens_from_the_planned_anchor() {
    let dir = MemDirectory::new();
    let small = DurableConfig {
        segment_limit_bytes: 300,
        ..config()
    };
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), small.clone()).expect("open");
    for id in 0..20 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    let segments = dir.list_segments().expect("list");
    assert!(segments.len() >= 4, "{segments:?}");
    let plan = wal.plan_retirement(segments[3]).expect("plan");
    assert_eq!(plan.removed, segments[..3].to_vec());
    wal.close().expect("close");
    // The crash: only the oldest segment was removed.
    dir.remove_segment(segments[0]).expect("remove");
    dir.crash(calybris_wal::storage::CrashMode::DropUnsynced);
    let wal = DurableWal::<Rec, _>::open_in(
        dir.clone(),
        DurableConfig {
            start_anchor: Some(plan.start_anchor),
            ..small.clone()
        },
    )
    .expect("opens from the planned anchor");
    assert_eq!(wal.durable_anchor().next_sequence, 20);
    let retired = wal
        .retire_segments_before(plan.before_sequence)
        .expect("finish");
    assert_eq!(retired.removed, segments[1..3].to_vec());
    assert_eq!(retired.start_anchor, plan.start_anchor);
    wal.close().expect("close");
    assert_eq!(dir.list_segments().expect("list")[0], segments[3]);
    let wal = DurableWal::<Rec, _>::open_in(
        dir,
        DurableConfig {
            start_anchor: Some(plan.start_anchor),
            ..small
        },
    )
    .expect("reopen");
    assert!(wal.recovery().is_clean());
}

/// A reader racing a live writer (with rotation) never finds the watermark
/// beyond the bytes it reads: every scan verifies to a clean end or a torn tail,
/// on real files and in memory.
#[test]
fn readers_racing_a_writer_are_never_refused() {
    fn race<B: DirBackend>() {
        let backend = B::new("ack-race");
        let wal = DurableWal::<Rec, _>::open_in(
            backend.dir(),
            DurableConfig {
                segment_limit_bytes: 400,
                ..config()
            },
        )
        .expect("open");
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for id in 0..300 {
                    wal.append_durable(&rec(id)).expect("durable");
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let mut scans = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || scans == 0 {
                let outcome = scan_dir::<Rec, _>(backend.dir(), None, None).expect("scan");
                assert!(outcome.is_recoverable(), "scan {scans}: {outcome:?}");
                scans += 1;
            }
        });
        wal.close().expect("close");
    }
    race::<MemBackend>();
    race::<FsBackend>();
}
