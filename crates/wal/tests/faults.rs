//! Injected storage faults: short writes, failed writes, failed syncs and crashes
//! that keep a torn part of unsynced data. Memory only: real disks cannot be asked
//! to fail on cue.

mod common;

use calybris_wal::storage::{CrashMode, MemDisk};
use calybris_wal::{Recovery, WalError, WalReader, WalWriter};
use common::{Rec, Rng, rec, seed};

fn records(disk: &MemDisk) -> Vec<Rec> {
    WalReader::<Rec, _>::from_storage(disk.reader(), None)
        .expect("header")
        .map(|entry| entry.expect("verified").record)
        .collect()
}

fn synced_log(count: u64) -> (MemDisk, WalWriter<Rec, calybris_wal::storage::MemStorage>) {
    let disk = MemDisk::new();
    let mut writer =
        WalWriter::<Rec, _>::create_in(disk.lock().expect("lock"), None).expect("create");
    for id in 0..count {
        writer.append(&rec(id)).expect("append");
    }
    writer.sync().expect("sync");
    (disk, writer)
}

#[test]
fn a_short_write_poisons_the_writer_and_reopen_cuts_the_torn_part() {
    let (disk, mut writer) = synced_log(3);
    disk.short_write_next(10);
    writer.append(&rec(3)).expect("buffered");
    assert!(matches!(writer.flush(), Err(WalError::Io(_))));
    assert!(matches!(
        writer.append(&rec(4)),
        Err(WalError::Poisoned { .. })
    ));
    assert!(matches!(writer.sync(), Err(WalError::Poisoned { .. })));
    drop(writer);
    let reopened =
        WalWriter::<Rec, _>::open_in(disk.lock().expect("lock"), None, None).expect("reopen");
    assert!(
        matches!(
            reopened.recovery(),
            Recovery::TornTail { cut_bytes: 10, .. }
        ),
        "{:?}",
        reopened.recovery()
    );
    drop(reopened);
    assert_eq!(records(&disk), (0..3).map(rec).collect::<Vec<_>>());
}

#[test]
fn a_failed_write_poisons_the_writer() {
    let (disk, mut writer) = synced_log(2);
    disk.fail_next_writes(1);
    writer.append(&rec(2)).expect("buffered");
    assert!(matches!(writer.sync(), Err(WalError::Io(_))));
    assert!(matches!(writer.flush(), Err(WalError::Poisoned { .. })));
    assert_eq!(writer.synced_anchor().next_sequence, 2);
}

#[test]
fn a_failed_sync_poisons_and_a_crash_keeps_the_last_durable_record() {
    let (disk, mut writer) = synced_log(3);
    let durable = writer.synced_anchor();
    disk.fail_next_syncs(1);
    writer.append(&rec(3)).expect("buffered");
    assert!(matches!(writer.sync(), Err(WalError::Io(_))));
    assert!(matches!(
        writer.append(&rec(4)),
        Err(WalError::Poisoned { .. })
    ));
    assert_eq!(writer.synced_anchor(), durable);
    drop(writer);
    disk.crash(CrashMode::DropUnsynced);
    let reopened = WalWriter::<Rec, _>::open_in(disk.lock().expect("lock"), None, Some(durable))
        .expect("reopen at the durable anchor");
    assert_eq!(reopened.recovery().anchor(), Some(durable));
    drop(reopened);
    assert_eq!(records(&disk), (0..3).map(rec).collect::<Vec<_>>());
}

/// Crashes with every kind of torn unsynced tail at random cut points: the
/// synced records always survive, what survives is a prefix of what was
/// written, and reopening always succeeds.
#[test]
fn random_torn_crashes_never_lose_synced_records() {
    let seed = seed(0xC0FF_EE00);
    let mut rng = Rng::new(seed);
    for round in 0..200 {
        let synced = rng.below(6);
        let unsynced = 1 + rng.below(5);
        let (disk, mut writer) = synced_log(synced);
        let anchor = writer.synced_anchor();
        for id in synced..synced + unsynced {
            writer.append(&rec(id)).expect("append");
        }
        writer.flush().expect("flush");
        drop(writer);
        let unsynced_len = disk.unsynced_len_bytes();
        let cut = rng.below(unsynced_len + 1);
        let mode = match rng.below(3) {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::KeepUnsyncedPrefix(cut),
            _ => CrashMode::ZeroFillUnsynced(cut),
        };
        disk.crash(mode);
        let reopened = WalWriter::<Rec, _>::open_in(disk.lock().expect("lock"), None, Some(anchor));
        let reopened = reopened.unwrap_or_else(|error| {
            panic!("seed {seed} round {round} {mode:?}: reopen failed: {error}")
        });
        assert!(
            reopened.recovery().is_recoverable(),
            "seed {seed} round {round}"
        );
        drop(reopened);
        let found = records(&disk);
        let written: Vec<Rec> = (0..synced + unsynced).map(rec).collect();
        assert!(
            found.len() as u64 >= synced && written.starts_with(&found),
            "seed {seed} round {round} {mode:?}: found {} records",
            found.len()
        );
    }
}
