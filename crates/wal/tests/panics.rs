//! A panic in one of a `DurableWal`'s background threads (flusher, sync,
//! watermark), injected with `MemDisk::panic_next_syncs`, poisons the log with
//! `WalError::ThreadPanicked`: pending tickets fail (blocking and async), later
//! appends fail, nothing past the last durable point is reported durable, and a
//! crash then reopen keeps exactly the acknowledged records.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use calybris_wal::storage::{CrashMode, MemDirectory};
use calybris_wal::{DurableConfig, DurableWal, SegmentedReader, WalError, WalThread};
use common::{Rec, rec};

fn config(sync_concurrency: usize) -> DurableConfig {
    DurableConfig {
        window: Duration::from_micros(20),
        sync_concurrency,
        watermark_interval: Duration::ZERO,
        ..DurableConfig::default()
    }
}

fn records(dir: &MemDirectory) -> Vec<Rec> {
    SegmentedReader::<Rec, _>::from_dir(dir.clone(), None, None)
        .expect("list")
        .map(|entry| entry.expect("verified").record)
        .collect()
}

fn panicked_in(error: &WalError, thread: WalThread) -> bool {
    matches!(error, WalError::ThreadPanicked { thread: t, message } if *t == thread && message == "injected sync panic")
}

/// After a crash, the log reopens at `durable` with exactly the records before it.
fn reopens_at(dir: &MemDirectory, durable: u64) {
    dir.crash(CrashMode::DropUnsynced);
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(2)).expect("reopen");
    assert_eq!(wal.durable_anchor().next_sequence, durable);
    assert_eq!(
        wal.append_durable(&rec(durable)).expect("continues"),
        durable
    );
    wal.close().expect("close");
    assert_eq!(records(dir), (0..=durable).map(rec).collect::<Vec<_>>());
}

/// A sync thread panics in the fdatasync covering the pending records: every
/// pending ticket fails (none was durable), later appends fail, the close
/// reports it, and the durable position stays where it was.
#[test]
fn a_sync_thread_panic_fails_every_pending_ticket() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(1)).expect("open");
    for id in 0..3 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    let segment = dir.segment(0).expect("segment 0");
    // The first pending batch's sync waits; the rest gather behind it (the one
    // sync slot is busy).
    segment.hold_syncs(true);
    let tickets: Vec<_> = (3..9)
        .map(|id| wal.append(&rec(id)).expect("append"))
        .collect();
    let mut future = pin!(tickets[5].durable());
    let mut context = Context::from_waker(Waker::noop());
    assert!(future.as_mut().poll(&mut context).is_pending());
    segment.panic_next_syncs(1);
    segment.hold_syncs(false);
    for ticket in &tickets {
        let error = ticket.wait().expect_err("never durable");
        assert!(panicked_in(&error, WalThread::Sync), "{error}");
        assert!(error.is_poisoned());
        assert!(!ticket.is_durable());
    }
    match future.as_mut().poll(&mut context) {
        Poll::Ready(Err(error)) => assert!(panicked_in(&error, WalThread::Sync), "{error}"),
        other => panic!("the future resolves with the panic: {other:?}"),
    }
    assert_eq!(wal.durable_anchor().next_sequence, 3);
    assert!(wal.watermarked_anchor().next_sequence <= 3);
    let later = wal.append(&rec(9)).expect_err("poisoned");
    assert!(panicked_in(&later, WalThread::Sync), "{later}");
    let closed = wal.close().expect_err("poisoned");
    assert!(panicked_in(&closed, WalThread::Sync), "{closed}");
    reopens_at(&dir, 3);
}

/// With no sync threads the flusher syncs inline: its panic poisons the log the
/// same way.
#[test]
fn a_flusher_panic_poisons_the_log() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(0)).expect("open");
    for id in 0..2 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    dir.segment(0).expect("segment 0").panic_next_syncs(1);
    let error = wal.append_durable(&rec(2)).expect_err("never durable");
    assert!(panicked_in(&error, WalThread::Flusher), "{error}");
    assert_eq!(wal.durable_anchor().next_sequence, 2);
    let later = wal.append(&rec(3)).expect_err("poisoned");
    assert!(panicked_in(&later, WalThread::Flusher), "{later}");
    // Dropping (not closing) a poisoned log returns; nothing waits forever.
    drop(wal);
    reopens_at(&dir, 2);
}

/// The watermark thread panics in its fdatasync: what was acknowledged stays
/// acknowledged (tickets complete on their data sync), later appends fail once
/// the panic is seen, the watermark stays behind, and reopening keeps every
/// acknowledged record.
#[test]
fn a_watermark_thread_panic_poisons_the_log() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(2)).expect("open");
    assert_eq!(wal.append_durable(&rec(0)).expect("durable"), 0);
    for _ in 0..20_000 {
        if wal.watermarked_anchor() == wal.durable_anchor() {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(wal.watermarked_anchor().next_sequence, 1);
    dir.ack().expect("watermark").panic_next_syncs(1);
    let mut acknowledged = 1;
    let error = loop {
        match wal.append(&rec(acknowledged)).map(|ticket| ticket.wait()) {
            Ok(Ok(sequence)) => {
                assert_eq!(sequence, acknowledged);
                acknowledged += 1;
            }
            Ok(Err(error)) | Err(error) => break error,
        }
        assert!(acknowledged < 10_000, "the panic never poisoned the log");
        std::thread::sleep(Duration::from_micros(100));
    };
    assert!(panicked_in(&error, WalThread::Watermark), "{error}");
    assert!(
        acknowledged >= 2,
        "the record whose watermark panicked was acknowledged"
    );
    assert_eq!(wal.watermarked_anchor().next_sequence, 1);
    let durable = wal.durable_anchor().next_sequence;
    assert!(durable >= acknowledged);
    let closed = wal.close().expect_err("poisoned");
    assert!(panicked_in(&closed, WalThread::Watermark), "{closed}");
    dir.crash(CrashMode::DropUnsynced);
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config(2)).expect("reopen");
    assert_eq!(wal.durable_anchor().next_sequence, durable);
    assert_eq!(wal.recovery().acknowledged().records(), Some(1));
    wal.close().expect("close");
    assert_eq!(records(&dir), (0..durable).map(rec).collect::<Vec<_>>());
}
