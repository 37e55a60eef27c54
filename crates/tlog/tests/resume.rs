//! Resuming a tree from its tiles: the same tiles and roots as a build from
//! scratch, the earlier records checked against the stored leaves, and typed
//! refusals for a log changed under its tree head or shorter than it.

use calybris_testkit::{SplitMix64, TempDir, seed_from_env};
use calybris_tlog::{
    BuildError, FsTiles, HashSource as _, MemTiles, TileStore, TileWriter, build_from_log,
    leaf_hash,
};
use calybris_wal::WalWriter;

#[test]
fn a_resumed_writer_gives_the_tiles_and_roots_of_a_fresh_build() {
    let seed = seed_from_env(0x7e5);
    let mut rng = SplitMix64::new(seed);
    for round in 0..12 {
        let first = match round {
            0 => 0,
            1 => 256,
            2 => 65_536,
            _ => rng.below(20_000),
        };
        let second = first + rng.below(3_000);
        let leaf = |i: u64| leaf_hash(&(i ^ seed).to_le_bytes());
        let storage = MemTiles::new();
        let mut writer = TileWriter::new(&storage);
        for i in 0..first {
            writer.append(leaf(i)).expect("append");
        }
        let (size, root) = writer.checkpoint().expect("checkpoint");
        drop(writer);
        let mut resumed = TileWriter::resume(&storage, size).expect("resume");
        assert_eq!(
            (resumed.size(), resumed.root()),
            (size, root),
            "seed {seed:#x}, {first}"
        );
        for i in first..second {
            // write_once refuses a tile with other bytes: every tile the resumed
            // writer writes agrees with the first writer's.
            resumed.append(leaf(i)).expect("append");
        }
        let resumed_head = resumed.checkpoint().expect("checkpoint");
        let mut fresh = TileWriter::new(MemTiles::new());
        for i in 0..second {
            fresh.append(leaf(i)).expect("append");
        }
        assert_eq!(
            resumed_head,
            fresh.checkpoint().expect("checkpoint"),
            "seed {seed:#x}"
        );
        // Every stored hash of the grown tree reads the same from both.
        let ours = TileStore::new(&storage, second).expect("store");
        let theirs = TileStore::new(fresh.storage(), second).expect("store");
        for level in [0u8, 3, 8, 9, 16] {
            for index in (0..second >> level).step_by(7) {
                assert_eq!(
                    ours.subtree(level, index),
                    theirs.subtree(level, index),
                    "seed {seed:#x}: {first} -> {second}, level {level}, index {index}"
                );
            }
        }
    }
}

#[test]
fn a_missing_partial_tile_is_a_typed_error() {
    let storage = MemTiles::new();
    let mut writer = TileWriter::new(&storage);
    for i in 0..300u64 {
        writer.append(leaf_hash(&i.to_le_bytes())).expect("append");
    }
    writer.checkpoint().expect("checkpoint");
    // No checkpoint was written at 299, so its partial tile does not exist.
    assert!(TileWriter::resume(&storage, 299).is_err());
}

fn write_log(path: &std::path::Path, values: std::ops::Range<u64>) {
    let mut writer = if path.exists() {
        WalWriter::<u64>::open(path, None).expect("open")
    } else {
        WalWriter::<u64>::create(path, None).expect("create")
    };
    for value in values {
        writer.append(&value).expect("append");
    }
    writer.sync().expect("sync");
}

#[test]
fn building_from_a_grown_log_resumes_and_checks_the_records_below() {
    let dir = TempDir::new("tlog-resume");
    let log = dir.path().join("log.cwal");
    write_log(&log, 0..700);
    let tiles = dir.path().join("tiles");
    let mut writer = TileWriter::new(FsTiles::new(&tiles));
    let (size, _) = build_from_log(&log, None, &mut writer).expect("build");
    assert_eq!(size, 700);
    write_log(&log, 700..1_000);
    let mut resumed = TileWriter::resume(FsTiles::new(&tiles), size).expect("resume");
    let head = build_from_log(&log, None, &mut resumed).expect("resumed build");
    let mut fresh = TileWriter::new(MemTiles::new());
    assert_eq!(
        head,
        build_from_log(&log, None, &mut fresh).expect("fresh build")
    );
    assert_eq!(head.0, 1_000);

    // Another log of the same length under the same tiles: refused at its
    // first record.
    let other = dir.path().join("other.cwal");
    write_log(&other, 5..1_005);
    let mut resumed = TileWriter::resume(FsTiles::new(&tiles), 1_000).expect("resume");
    assert!(matches!(
        build_from_log(&other, None, &mut resumed),
        Err(BuildError::Rewritten { sequence: 0 })
    ));
    // A log shorter than the tree.
    let short = dir.path().join("short.cwal");
    write_log(&short, 0..500);
    let mut resumed = TileWriter::resume(FsTiles::new(&tiles), 1_000).expect("resume");
    assert!(matches!(
        build_from_log(&short, None, &mut resumed),
        Err(BuildError::Shorter {
            records: 500,
            tree_size: 1_000
        })
    ));
}
