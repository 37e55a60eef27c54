//! Appending with and without the tree, proofs from tiles and their verification
//! for a tree of 10^7 leaves, tree construction and checkpoint signing (beside a
//! bare Ed25519 signature, so the overhead of the note shows).
//! `cargo bench -p calybris-tlog --bench tlog`; one group with a filter, e.g.
//! `cargo bench -p calybris-tlog --bench tlog -- verify`.

#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::hint::black_box;
use std::time::Duration;

use calybris_tlog::tiles::TILE_WIDTH;
use calybris_tlog::{
    Checkpoint, Ed25519Signer, MemTiles, RightEdge, TileStore, TileWriter, inclusion_proof,
    leaf_hash, verify_inclusion,
};
use calybris_wal::WalWriter;
use calybris_wal::storage::MemDisk;
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
    c.bench_function("right_edge_append", |b| {
        let mut edge = RightEdge::new();
        let mut i = 0u64;
        b.iter(|| {
            edge.append(leaf(i)).expect("append");
            i += 1;
        });
    });
}

fn large_tree(c: &mut Criterion) {
    let leaves: Vec<_> = (0..LEAVES).map(leaf).collect();
    let mut group = c.benchmark_group("build");
    group.throughput(Throughput::Elements(LEAVES));
    group.sample_size(10);
    group.bench_function("tile_writer_10M", |b| {
        b.iter(|| {
            let mut writer = TileWriter::new(MemTiles::new());
            for leaf in &leaves {
                writer.append(*leaf).expect("append");
            }
            black_box(writer.checkpoint().expect("checkpoint"))
        });
    });
    group.finish();
    let mut writer = TileWriter::new(MemTiles::new());
    for leaf in &leaves {
        writer.append(*leaf).expect("append");
    }
    drop(leaves);
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
    let leaf = leaf(index);
    c.bench_function("verify_inclusion_10M", |b| {
        b.iter(|| {
            verify_inclusion(&leaf, index, size, black_box(&proof), &root).expect("ok");
        });
    });
    c.bench_function("node_hash", |b| {
        b.iter(|| black_box(calybris_tlog::node_hash(black_box(&leaf), black_box(&root))));
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
    targets = append, large_tree
}
criterion_main!(tlog);
