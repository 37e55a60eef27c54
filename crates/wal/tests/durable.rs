//! Group commit: concurrent appenders, tickets, poisoning, segment rotation.

mod common;

use std::time::Duration;

use calybris_wal::storage::{CrashMode, Directory, MemDirectory};
use calybris_wal::{
    CorruptReason, DurableConfig, DurableWal, Recovery, SegmentedReader, WalError, WalKey, scan_dir,
};
use common::{Rec, TempDir, rec};

fn config() -> DurableConfig {
    DurableConfig {
        window: Duration::from_micros(50),
        ..DurableConfig::default()
    }
}

fn read_dir<D: Directory>(dir: D, key: Option<&WalKey>) -> Vec<Rec> {
    SegmentedReader::<Rec, D>::from_dir(dir, key, None)
        .expect("list")
        .map(|entry| entry.expect("verified").record)
        .collect()
}

#[test]
fn concurrent_appenders_are_all_acknowledged_in_chain_order() {
    let dir = TempDir::new("durable-concurrent");
    let key = WalKey::new(&[9u8; 32]).expect("key");
    let wal = DurableWal::<Rec>::open(
        dir.path(),
        DurableConfig {
            key: Some(key.clone()),
            ..config()
        },
    )
    .expect("open");
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 150;
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let wal = &wal;
            scope.spawn(move || {
                let mut tickets = Vec::new();
                for i in 0..PER_THREAD {
                    tickets.push(wal.append(&rec(thread * 1_000 + i)).expect("append"));
                    if tickets.len() == 8 {
                        for ticket in tickets.drain(..) {
                            let seq = ticket.wait().expect("durable");
                            assert_eq!(seq, ticket.sequence());
                            assert!(ticket.is_durable());
                        }
                    }
                }
                for ticket in tickets {
                    ticket.wait().expect("durable");
                }
            });
        }
    });
    let anchor = wal.close().expect("close");
    assert_eq!(anchor.next_sequence, THREADS * PER_THREAD);
    let found = read_dir(
        calybris_wal::storage::FsDirectory::new(dir.path()).expect("dir"),
        Some(&key),
    );
    assert_eq!(found.len() as u64, THREADS * PER_THREAD);
    for thread in 0..THREADS {
        let ids: Vec<u64> = found
            .iter()
            .map(|r| r.id)
            .filter(|id| id / 1_000 == thread)
            .collect();
        let expected: Vec<u64> = (0..PER_THREAD).map(|i| thread * 1_000 + i).collect();
        assert_eq!(ids, expected, "thread {thread} records keep their order");
    }
}

#[test]
fn a_second_writer_on_the_directory_is_refused() {
    let dir = TempDir::new("durable-lock");
    let first = DurableWal::<Rec>::open(dir.path(), config()).expect("open");
    assert!(matches!(
        DurableWal::<Rec>::open(dir.path(), config()),
        Err(WalError::Locked { .. })
    ));
    first.close().expect("close");
    assert!(DurableWal::<Rec>::open(dir.path(), config()).is_ok());
}

#[test]
fn a_failed_sync_poisons_every_waiter_and_reopen_recovers_the_durable_records() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config()).expect("open");
    for id in 0..5 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    let durable = wal.durable_anchor();
    dir.segment(0).expect("segment 0").fail_next_syncs(1);
    // A lone record is written at once (the window is adaptive), so the failed
    // sync may poison the log before the later appends: each is then refused, or
    // its ticket fails.
    for id in 5..9 {
        match wal.append(&rec(id)) {
            Ok(ticket) => {
                assert!(matches!(ticket.wait(), Err(WalError::Poisoned { .. })));
                assert!(!ticket.is_durable());
            }
            Err(error) => assert!(matches!(error, WalError::Poisoned { .. }), "{error}"),
        }
    }
    assert!(matches!(
        wal.append(&rec(9)),
        Err(WalError::Poisoned { .. })
    ));
    assert_eq!(wal.durable_anchor(), durable);
    assert!(matches!(wal.close(), Err(WalError::Poisoned { .. })));
    dir.crash(CrashMode::DropUnsynced);
    let reopened = DurableWal::<Rec, _>::open_in(
        dir.clone(),
        DurableConfig {
            anchor: Some(durable),
            ..config()
        },
    )
    .expect("reopen");
    assert_eq!(reopened.durable_anchor(), durable);
    assert_eq!(reopened.append_durable(&rec(50)).expect("durable"), 5);
    reopened.close().expect("close");
    let mut expected: Vec<Rec> = (0..5).map(rec).collect();
    expected.push(rec(50));
    assert_eq!(read_dir(dir, None), expected);
}

#[test]
fn a_failed_write_poisons_too() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config()).expect("open");
    wal.append_durable(&rec(0)).expect("durable");
    dir.segment(0).expect("segment").short_write_next(7);
    let ticket = wal.append(&rec(1)).expect("append");
    assert!(matches!(ticket.wait(), Err(WalError::Poisoned { .. })));
    drop(wal);
    let reopened = DurableWal::<Rec, _>::open_in(dir.clone(), config()).expect("reopen");
    assert!(
        matches!(reopened.recovery(), Recovery::TornTail { cut_bytes: 7, .. }),
        "{:?}",
        reopened.recovery()
    );
}

#[test]
fn segments_rotate_and_the_chain_continues_across_them() {
    let dir = MemDirectory::new();
    let small = DurableConfig {
        segment_limit_bytes: 400,
        ..config()
    };
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), small.clone()).expect("open");
    for id in 0..40 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    assert!(wal.segments_created() >= 3, "{}", wal.segments_created());
    wal.close().expect("close");
    let segments = dir.list_segments().expect("list");
    assert!(segments.len() >= 4 && segments[0] == 0, "{segments:?}");
    assert_eq!(
        read_dir(dir.clone(), None),
        (0..40).map(rec).collect::<Vec<_>>()
    );

    // Reopen continues in the last segment.
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), small).expect("reopen");
    assert_eq!(wal.append_durable(&rec(40)).expect("durable"), 40);
    wal.close().expect("close");
    assert_eq!(read_dir(dir.clone(), None).len(), 41);

    // A flipped byte in a middle segment is named; a missing segment breaks the chain.
    let middle = segments[1];
    let disk = dir.segment(middle).expect("segment");
    disk.flip_bit(120, 3);
    let outcome = scan_dir::<Rec, _>(dir.clone(), None, None).expect("scan");
    assert!(
        matches!(outcome, Recovery::Corrupt { sequence: Some(seq), .. } if seq >= middle),
        "{outcome:?}"
    );
    disk.flip_bit(120, 3);
    assert!(
        scan_dir::<Rec, _>(dir.clone(), None, None)
            .expect("scan")
            .is_clean()
    );
}

#[test]
fn a_missing_segment_is_a_chain_break() {
    let root = TempDir::new("durable-gap");
    let small = DurableConfig {
        segment_limit_bytes: 300,
        ..config()
    };
    let wal = DurableWal::<Rec>::open(root.path(), small).expect("open");
    for id in 0..30 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    wal.close().expect("close");
    let dir = calybris_wal::storage::FsDirectory::new(root.path()).expect("dir");
    let segments = dir.list_segments().expect("list");
    assert!(segments.len() >= 3, "{segments:?}");
    std::fs::remove_file(dir.segment_path(segments[1])).expect("remove");
    let outcome = scan_dir::<Rec, _>(dir.clone(), None, None).expect("scan");
    assert_eq!(
        outcome,
        Recovery::Corrupt {
            sequence: Some(segments[1]),
            offset_bytes: calybris_wal::format::HEADER_LEN_BYTES as u64,
            reason: CorruptReason::SegmentChainBreak,
        }
    );
    assert!(matches!(
        DurableWal::<Rec>::open(root.path(), config()),
        Err(WalError::Refused(_))
    ));
}

#[test]
fn close_acknowledges_everything_pending() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(
        dir.clone(),
        DurableConfig {
            window: Duration::from_secs(3600),
            batch_budget_bytes: usize::MAX,
            ..config()
        },
    )
    .expect("open");
    let tickets: Vec<_> = (0..10)
        .map(|id| wal.append(&rec(id)).expect("append"))
        .collect();
    let anchor = wal.close().expect("close");
    assert_eq!(anchor.next_sequence, 10);
    for ticket in tickets {
        assert!(ticket.is_durable());
        ticket.wait().expect("durable");
    }
    assert_eq!(read_dir(dir, None).len(), 10);
}

#[test]
fn the_byte_budget_closes_a_batch_before_the_window() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(
        dir.clone(),
        DurableConfig {
            // A window no test would wait out: only the budget can close it.
            window: Duration::from_secs(3600),
            batch_budget_bytes: 200,
            ..config()
        },
    )
    .expect("open");
    let tickets: Vec<_> = (0..20)
        .map(|id| wal.append(&rec(id)).expect("append"))
        .collect();
    // At least the first budget's worth is acknowledged without closing.
    tickets[0].wait().expect("durable by budget");
    assert!(wal.durable_anchor().next_sequence >= 1);
    wal.close().expect("close");
}

#[test]
fn a_keyed_directory_refuses_another_key_and_no_key() {
    let dir = MemDirectory::new();
    let key = WalKey::new(&[1u8; 32]).expect("key");
    let wal = DurableWal::<Rec, _>::open_in(
        dir.clone(),
        DurableConfig {
            key: Some(key.clone()),
            ..config()
        },
    )
    .expect("open");
    wal.append_durable(&rec(0)).expect("durable");
    wal.close().expect("close");
    for offered in [Some(WalKey::new(&[2u8; 32]).expect("key")), None] {
        let refused = DurableWal::<Rec, _>::open_in(
            dir.clone(),
            DurableConfig {
                key: offered,
                ..config()
            },
        );
        assert!(
            matches!(refused, Err(WalError::Refused(Recovery::WrongKey { .. }))),
            "{refused:?}"
        );
    }
    assert_eq!(read_dir(dir, Some(&key)), vec![rec(0)]);
}

#[test]
fn a_log_without_its_first_segment_is_refused() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(
        dir.clone(),
        DurableConfig {
            segment_limit_bytes: 300,
            ..config()
        },
    )
    .expect("open");
    for id in 0..20 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    wal.close().expect("close");
    // Rebuild the directory without segment 0.
    let trimmed = MemDirectory::new();
    for (first, disk) in dir.segments().into_iter().skip(1) {
        let storage = trimmed
            .create_segment(first, &disk.bytes())
            .expect("copy segment");
        drop(storage);
    }
    let first = dir.segments()[1].0;
    let outcome = scan_dir::<Rec, _>(trimmed, None, None).expect("scan");
    assert_eq!(
        outcome,
        Recovery::Corrupt {
            sequence: Some(first),
            offset_bytes: 0,
            reason: CorruptReason::GenesisMissing {
                first_sequence: first
            },
        }
    );
}
