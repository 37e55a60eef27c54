//! Appending with and without the tree, proofs from tiles and their verification
//! for a tree of 10^7 leaves, tree construction and checkpoint signing (beside a
//! bare Ed25519 signature, so the overhead of the note shows).
//! `cargo bench -p calybris-tlog --bench tlog`; one group with a filter, e.g.
//! `cargo bench -p calybris-tlog --bench tlog -- verify`.

#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::hint::black_box;
use std::time::Duration;

use calybris_tlog::build_from_log;
use calybris_tlog::tiles::TILE_WIDTH;
use calybris_tlog::{
    Checkpoint, Ed25519Signer, MemTiles, RightEdge, TileStore, TileWriter, inclusion_proof,
    leaf_hash, verify_inclusion,
};
use calybris_wal::storage::MemDisk;
use calybris_wal::{LogFrames, WalWriter};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;

/// Leaves of the large tree: 10^7.
const LEAVES: u64 = 10_000_000;
/// Records per batch of the append benchmarks.
const APPEND_BATCH: u64 = 10_000;

fn leaf(i: u64) -> calybris_tlog::Hash {
    leaf_hash(&i.to_be_bytes())
}

/// Leaf indices below `bound` from the workspace's seeded generator (SplitMix64;
/// benchmarks only need spread).
fn indices(bound: u64) -> impl FnMut() -> u64 {
    let mut rng = calybris_workload::SplitMix64::new(1);
    move || rng.below(bound)
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(APPEND_BATCH));
    let fresh = || {
        let disk = MemDisk::new();
        let writer =
            WalWriter::<u64, _>::create_in(disk.lock().expect("lock"), None).expect("writer");
        (disk, writer)
    };
    group.bench_function("wal_only", |b| {
        b.iter_batched(
            fresh,
            |(disk, mut writer)| {
                for value in 0..APPEND_BATCH {
                    writer.append(&value).expect("append");
                }
                (disk, writer)
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("wal_with_tree_and_tiles", |b| {
        b.iter_batched(
            || (fresh(), TileWriter::new(MemTiles::new())),
            |((disk, mut writer), mut tiles)| {
                for value in 0..APPEND_BATCH {
                    writer.append(&value).expect("append");
                    tiles
                        .append(leaf_hash(&writer.anchor().head_hash))
                        .expect("tiles");
                }
                (disk, writer, tiles)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();

    // Against a durable log on disk: each group of records is followed by
    // its fdatasync (one per record, and one per 64-record group commit), as
    // the gate's acknowledged appends are.
    let dir = calybris_testkit::TempDir::new("tlog-bench-append");
    let mut group = c.benchmark_group("append_synced");
    group.sample_size(10);
    for per_sync in [1u64, 64] {
        group.throughput(Throughput::Elements(64));
        for with_tree in [false, true] {
            let name = format!(
                "{}_sync_every_{per_sync}",
                if with_tree {
                    "wal_with_tree_and_tiles"
                } else {
                    "wal_only"
                }
            );
            let path = dir.path().join(&name);
            let mut writer = WalWriter::<u64>::create(&path, None).expect("create");
            let mut tiles = TileWriter::new(MemTiles::new());
            let mut value = 0u64;
            group.bench_function(name, |b| {
                b.iter(|| {
                    for _ in 0..64 {
                        writer.append(&value).expect("append");
                        if with_tree {
                            tiles
                                .append(leaf_hash(&writer.anchor().head_hash))
                                .expect("tiles");
                        }
                        value += 1;
                        if value.is_multiple_of(per_sync) {
                            writer.sync().expect("sync");
                        }
                    }
                });
            });
        }
    }
    group.finish();
    c.bench_function("right_edge_append", |b| {
        let mut edge = RightEdge::new();
        let mut i = 0u64;
        b.iter(|| {
            edge.append(leaf(i)).expect("append");
            i += 1;
        });
    });
}

/// Records of the log the `build_from_log` benchmarks read: 10^6.
const LOG_RECORDS: u64 = 1_000_000;

/// Tree construction from an existing log: the verified read alone (the
/// chain check every build needs), and the build with the tree thread beside
/// it, over a page-cached log file of small records; tiles in memory.
fn from_log(c: &mut Criterion) {
    let dir = calybris_testkit::TempDir::new("tlog-bench-build");
    let log = dir.path().join("log.cwal");
    {
        let mut writer = WalWriter::<u64>::create(&log, None).expect("create");
        for value in 0..LOG_RECORDS {
            writer.append(&value).expect("append");
        }
        writer.sync().expect("sync");
    }
    let mut group = c.benchmark_group("from_log");
    group.throughput(Throughput::Elements(LOG_RECORDS));
    group.sample_size(10);
    group.bench_function("verified_read_only_1M", |b| {
        b.iter(|| {
            let mut frames = LogFrames::open(&log, None, None).expect("open");
            black_box(frames.scan_to_end().expect("scan"))
        });
    });
    // The same work on one thread: read a batch, hash it, read the next.
    group.bench_function("read_then_hash_one_thread_1M", |b| {
        b.iter(|| {
            use calybris_wal::FrameSource as _;
            let mut frames = LogFrames::open(&log, None, None).expect("open");
            let mut writer = TileWriter::new(MemTiles::new());
            let mut batch = Vec::with_capacity(calybris_tlog::BUILD_BATCH_LEAVES);
            while let Some(frame) = frames.next_frame().expect("frame") {
                batch.push(frame.hash);
                if batch.len() == calybris_tlog::BUILD_BATCH_LEAVES {
                    writer.append_entry_hashes(&batch, 1).expect("append");
                    batch.clear();
                }
            }
            writer.append_entry_hashes(&batch, 1).expect("append");
            black_box(writer.checkpoint().expect("checkpoint"))
        });
    });
    group.bench_function("build_from_log_1M", |b| {
        b.iter(|| {
            let mut writer = TileWriter::new(MemTiles::new());
            black_box(build_from_log(&log, None, &mut writer).expect("build"))
        });
    });
    group.finish();
}

fn large_tree(c: &mut Criterion) {
    // The leaf inputs: 32-byte entry hashes, as a log's records give them.
    let entries: Vec<_> = (0..LEAVES).map(leaf).collect();
    let mut group = c.benchmark_group("build");
    group.throughput(Throughput::Elements(LEAVES));
    group.sample_size(10);
    group.bench_function("tile_writer_leaf_by_leaf_10M", |b| {
        b.iter(|| {
            let mut writer = TileWriter::new(MemTiles::new());
            for entry in &entries {
                writer.append(leaf_hash(entry)).expect("append");
            }
            black_box(writer.checkpoint().expect("checkpoint"))
        });
    });
    for threads in [1, 2] {
        group.bench_function(format!("tile_writer_batched_{threads}_threads_10M"), |b| {
            b.iter(|| {
                let mut writer = TileWriter::new(MemTiles::new());
                for batch in entries.chunks(calybris_tlog::BUILD_BATCH_LEAVES) {
                    writer.append_entry_hashes(batch, threads).expect("append");
                }
                black_box(writer.checkpoint().expect("checkpoint"))
            });
        });
    }
    group.finish();
    let mut writer = TileWriter::new(MemTiles::new());
    writer.append_entry_hashes(&entries, 2).expect("append");
    drop(entries);
    let (size, root) = writer.checkpoint().expect("checkpoint");

    // Every tile read and expanded once, held: proofs only look hashes up.
    let tiles =
        usize::try_from(size / TILE_WIDTH + size / (TILE_WIDTH * TILE_WIDTH) + 8).expect("tiles");
    let warm = TileStore::with_cache_capacity(writer.storage(), size, tiles).expect("store");
    for index in (0..size).step_by(usize::try_from(TILE_WIDTH).expect("width")) {
        inclusion_proof(&warm, index, size).expect("proof");
    }
    let mut next = indices(size);
    c.bench_function("inclusion_proof_cached_tiles_10M", |b| {
        b.iter(|| black_box(inclusion_proof(&warm, next(), size).expect("proof")));
    });
    // The default cache of 4,096 tiles against random leaves of 39,063 level-0
    // tiles: most proofs read and expand one level-0 tile.
    let cold = TileStore::new(writer.storage(), size).expect("store");
    let mut next = indices(size);
    c.bench_function("inclusion_proof_uncached_10M", |b| {
        b.iter(|| black_box(inclusion_proof(&cold, next(), size).expect("proof")));
    });
    let index = 1_234_567;
    let proof = inclusion_proof(&warm, index, size).expect("proof");
    let leaf = leaf_hash(&leaf(index));
    c.bench_function("verify_inclusion_10M", |b| {
        b.iter(|| {
            verify_inclusion(&leaf, index, size, black_box(&proof), &root).expect("ok");
        });
    });
    c.bench_function("node_hash", |b| {
        b.iter(|| black_box(calybris_tlog::node_hash(black_box(&leaf), black_box(&root))));
    });
    // The same hash through sha2's buffered hasher (what node_hash did before).
    c.bench_function("node_hash_via_hasher", |b| {
        b.iter(|| {
            let mut input = [0u8; 65];
            input[0] = 1;
            input[1..33].copy_from_slice(black_box(&leaf));
            input[33..].copy_from_slice(black_box(&root));
            black_box(<sha2::Sha256 as sha2::Digest>::digest(input))
        });
    });

    let signer = Ed25519Signer::from_seed("bench.example/log", &[5; 32]).expect("signer");
    let checkpoint = Checkpoint {
        origin: "bench.example/log".into(),
        size,
        root,
        extensions: vec![],
    };
    c.bench_function("sign_checkpoint", |b| {
        b.iter(|| black_box(checkpoint.sign(&[&signer]).expect("sign")));
    });
    let raw = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let text = checkpoint.to_text();
    c.bench_function("sign_ed25519_bare", |b| {
        b.iter(|| black_box(raw.sign(black_box(text.as_bytes()))));
    });
}

criterion_group! {
    name = tlog;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = append, from_log, large_tree
}
criterion_main!(tlog);
