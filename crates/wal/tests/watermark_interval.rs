//! `DurableConfig::watermark_interval`: the acknowledgement watermark is written
//! at most once per interval, acknowledgements never wait for it, closing (or
//! dropping) the log writes the last durable position, and recovery after a crash
//! keeps every acknowledged record after a lagging watermark.
//!
//! No timing is asserted: the tests compare the log's own counters (watermark
//! writes against data syncs) with an interval of an hour against an interval of
//! zero, and read the watermark file's bytes.

mod common;

use std::time::Duration;

use calybris_wal::storage::{CrashMode, Directory, MemDirectory, MemDisk};
use calybris_wal::{
    DEFAULT_WATERMARK_INTERVAL, DurableConfig, DurableWal, Recovery, SegmentedReader, WalAnchor,
};
use common::{Rec, rec, watermark_caught_up};

/// An interval no test outlives: no watermark is written before the close.
const LONG: Duration = Duration::from_secs(3_600);

fn config(interval: Duration) -> DurableConfig {
    DurableConfig {
        window: Duration::from_micros(20),
        watermark_interval: interval,
        ..DurableConfig::default()
    }
}

fn records(dir: &MemDirectory) -> Vec<Rec> {
    SegmentedReader::<Rec, _>::from_dir(dir.clone(), None, None)
        .expect("list")
        .map(|entry| entry.expect("verified").record)
        .collect()
}

/// What a power loss leaves of `dir` now, copied into a new directory (the log
/// still running on `dir` cannot touch the copy, so it may be closed or dropped
/// afterwards without repairing the image).
fn crash_image(dir: &MemDirectory, mode: CrashMode) -> MemDirectory {
    dir.crash(mode);
    let image = MemDirectory::new();
    for (first, disk) in dir.segments() {
        image
            .create_segment(first, &disk.bytes())
            .expect("copy segment");
    }
    image.set_ack(dir.ack().map(|ack| MemDisk::with_bytes(ack.bytes())));
    image
}

/// Writes records `0..n` with a zero interval and closes: the watermark vouches
/// for all of them.
fn log_with(n: u64) -> MemDirectory {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(Duration::ZERO)).expect("open");
    for id in 0..n {
        wal.append_durable(&rec(id)).expect("durable");
    }
    wal.close().expect("close");
    dir
}

#[test]
fn the_default_interval_is_ten_milliseconds() {
    assert_eq!(DEFAULT_WATERMARK_INTERVAL, Duration::from_millis(10));
    assert_eq!(
        DurableConfig::default().watermark_interval,
        DEFAULT_WATERMARK_INTERVAL
    );
}

/// Interval zero: one watermark write per data sync when each sync is waited
/// for (the behaviour before the interval existed).
#[test]
fn a_zero_interval_writes_a_watermark_after_every_sync() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(Duration::ZERO)).expect("open");
    for id in 0..20 {
        wal.append_durable(&rec(id)).expect("durable");
        watermark_caught_up(&wal);
    }
    let stats = wal.stats();
    assert_eq!(stats.data_syncs, 20, "{stats:?}");
    assert_eq!(stats.watermarks, stats.data_syncs, "{stats:?}");
    // Every sync is done and counted in one latency bucket (memory syncs are quick).
    assert_eq!(
        stats.data_sync_buckets.iter().sum::<u64>(),
        stats.data_syncs,
        "{stats:?}"
    );
    assert!(stats.data_sync_buckets[0] > 0, "{stats:?}");
    assert_eq!(wal.watermarked_anchor().next_sequence, 20);
    wal.close().expect("close");
}

/// A long interval: the same twenty syncs, no watermark write before the close,
/// the watermark file untouched since the open, the acknowledgements unaffected;
/// the close writes the last durable position, once.
#[test]
fn a_long_interval_defers_the_watermark_to_the_close() {
    let dir = log_with(3);
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(LONG)).expect("open");
    let at_open = dir.ack().expect("watermark").bytes();
    for id in 3..23 {
        assert_eq!(wal.append_durable(&rec(id)).expect("durable"), id);
    }
    let stats = wal.stats();
    assert_eq!(stats.data_syncs, 20, "{stats:?}");
    assert_eq!(stats.watermarks, 0, "{stats:?}");
    assert_eq!(wal.durable_anchor().next_sequence, 23);
    assert_eq!(wal.watermarked_anchor().next_sequence, 3, "it lags");
    assert_eq!(dir.ack().expect("watermark").bytes(), at_open);
    let durable = wal.durable_anchor();
    assert_eq!(wal.close().expect("close"), durable);
    let reopened = DurableWal::<Rec, _>::open_in(dir.clone(), config(LONG)).expect("reopen");
    assert!(reopened.recovery().is_clean(), "{:?}", reopened.recovery());
    assert_eq!(
        reopened.recovery().acknowledged().records(),
        Some(23),
        "the close wrote the last watermark"
    );
    reopened.close().expect("close");
    assert_eq!(records(&dir), (0..23).map(rec).collect::<Vec<_>>());
}

/// Dropping the log without `close` writes the last watermark as well.
#[test]
fn dropping_the_log_writes_the_last_watermark() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(LONG)).expect("open");
    let tickets: Vec<_> = (0..5)
        .map(|id| wal.append(&rec(id)).expect("append"))
        .collect();
    drop(wal);
    for ticket in &tickets {
        assert!(ticket.is_durable(), "drop makes what was appended durable");
    }
    let reopened = DurableWal::<Rec, _>::open_in(dir, config(LONG)).expect("reopen");
    assert_eq!(reopened.recovery().acknowledged().records(), Some(5));
    assert_eq!(reopened.durable_anchor().next_sequence, 5);
}

/// While a watermark write is stuck (its fdatasync held), records keep being
/// acknowledged, and once it returns one more write covers every sync of the
/// wait: the watermark records the latest durable point, not one per sync.
#[test]
fn acknowledgements_never_wait_for_the_watermark() {
    let dir = log_with(1);
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(Duration::ZERO)).expect("open");
    let ack = dir.ack().expect("watermark");
    ack.hold_syncs(true);
    for id in 1..11 {
        assert_eq!(wal.append_durable(&rec(id)).expect("durable"), id);
    }
    let held = wal.stats();
    assert_eq!(held.data_syncs, 10, "{held:?}");
    assert!(
        wal.watermarked_anchor().next_sequence == 1,
        "no watermark write could return while its sync was held"
    );
    ack.hold_syncs(false);
    watermark_caught_up(&wal);
    let after = wal.stats();
    assert!(
        (1..=2).contains(&after.watermarks),
        "the held write and one for the rest: {after:?}"
    );
    assert_eq!(after.data_syncs, 10);
    wal.close().expect("close");
}

/// A crash while the watermark lags (a long interval, no close): every
/// acknowledged record is kept, the recovery reports the lagging watermark, and
/// the log continues from there.
#[test]
fn a_crash_keeps_the_records_after_a_lagging_watermark() {
    let dir = log_with(3);
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(LONG)).expect("open");
    for id in 3..40 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    let durable = wal.durable_anchor();
    assert_eq!(wal.watermarked_anchor().next_sequence, 3);
    let image = crash_image(&dir, CrashMode::DropUnsynced);
    drop(wal);
    let wal = DurableWal::<Rec, _>::open_in(image.clone(), config(LONG)).expect("reopen");
    let Recovery::Clean {
        anchor,
        acknowledged,
        ..
    } = wal.recovery()
    else {
        panic!("{:?}", wal.recovery());
    };
    assert_eq!(*anchor, durable, "every acknowledged record is kept");
    assert_eq!(acknowledged.records(), Some(3), "the watermark lagged");
    assert_eq!(wal.append_durable(&rec(40)).expect("continues"), 40);
    wal.close().expect("close");
    assert_eq!(records(&image), (0..41).map(rec).collect::<Vec<_>>());
}

/// A crash during a write the log never acknowledged, while the watermark lags:
/// the torn write is cut, every acknowledged record after the watermark is kept.
#[test]
fn a_torn_tail_after_a_lagging_watermark_is_cut_and_the_acknowledged_kept() {
    for keep_bytes in [1u64, 7, 30] {
        let dir = log_with(2);
        let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(LONG)).expect("open");
        for id in 2..12 {
            wal.append_durable(&rec(id)).expect("durable");
        }
        let durable = wal.durable_anchor();
        let segment = dir.segment(0).expect("segment 0");
        let acknowledged_len = segment.bytes().len() as u64;
        segment.hold_syncs(true);
        let pending = wal.append(&rec(12)).expect("append");
        for _ in 0..20_000 {
            if segment.unsynced_len_bytes() > 0 {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(
            segment.unsynced_len_bytes() > keep_bytes,
            "the batch is written"
        );
        assert!(!pending.is_durable());
        let image = crash_image(&dir, CrashMode::KeepUnsyncedPrefix(keep_bytes));
        segment.hold_syncs(false);
        drop(wal);
        let wal = DurableWal::<Rec, _>::open_in(image.clone(), config(LONG)).expect("reopen");
        let Recovery::TornTail {
            anchor,
            valid_len_bytes,
            acknowledged,
            ..
        } = wal.recovery()
        else {
            panic!("keep {keep_bytes}: {:?}", wal.recovery());
        };
        assert_eq!(*anchor, durable, "keep {keep_bytes}");
        assert_eq!(*valid_len_bytes, acknowledged_len, "keep {keep_bytes}");
        assert_eq!(acknowledged.records(), Some(2), "keep {keep_bytes}");
        let reopened_at: WalAnchor = wal.durable_anchor();
        assert_eq!(reopened_at, durable);
        wal.close().expect("close");
        assert_eq!(records(&image), (0..12).map(rec).collect::<Vec<_>>());
    }
}

/// A short interval still catches up without a close (the watermark is not
/// deferred forever), never runs ahead of the durable position, and writes no
/// more watermarks than there were syncs.
#[test]
fn a_short_interval_catches_up_without_a_close() {
    let dir = MemDirectory::new();
    let wal =
        DurableWal::<Rec, _>::open_in(dir.clone(), config(Duration::from_millis(2))).expect("open");
    for round in 0..3u64 {
        let tickets: Vec<_> = (0..10)
            .map(|k| wal.append(&rec(round * 10 + k)).expect("append"))
            .collect();
        for ticket in tickets {
            ticket.wait().expect("durable");
            assert!(wal.watermarked_anchor().next_sequence <= wal.durable_anchor().next_sequence);
        }
        watermark_caught_up(&wal);
        assert_eq!(wal.watermarked_anchor().next_sequence, round * 10 + 10);
    }
    let stats = wal.stats();
    assert!(
        stats.watermarks >= 1 && stats.watermarks <= stats.data_syncs,
        "{stats:?}"
    );
    wal.close().expect("close");
}
