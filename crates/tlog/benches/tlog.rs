//! Appending leaves, proofs from tiles at 10^6 leaves, tree construction and
//! checkpoint signing. Short runs: `cargo bench -p calybris-tlog`.

#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::hint::black_box;
use std::time::Duration;

use calybris_tlog::{
    Checkpoint, Ed25519Signer, MemTiles, RightEdge, TileStore, TileWriter, inclusion_proof,
    leaf_hash, verify_inclusion,
};
use criterion::{Criterion, criterion_group, criterion_main};

const LEAVES: u64 = 1_000_000;

fn benches(c: &mut Criterion) {
    let leaves: Vec<_> = (0..LEAVES).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    c.bench_function("right_edge_append", |b| {
        let mut edge = RightEdge::new();
        let mut i = 0usize;
        b.iter(|| {
            edge.append(leaves[i % leaves.len()]).expect("append");
            i += 1;
        });
    });
    c.bench_function("tile_writer_build_1M", |b| {
        b.iter(|| {
            let mut writer = TileWriter::new(MemTiles::new());
            for leaf in &leaves {
                writer.append(*leaf).expect("append");
            }
            black_box(writer.checkpoint().expect("checkpoint"))
        });
    });
    let mut writer = TileWriter::new(MemTiles::new());
    for leaf in &leaves {
        writer.append(*leaf).expect("append");
    }
    let (size, root) = writer.checkpoint().expect("checkpoint");
    let store = TileStore::new(writer.storage(), size).expect("store");
    // Leaf indices from the workspace's seeded generator (SplitMix64).
    let mut rng = calybris_workload::SplitMix64::new(1);
    let mut next = move || rng.below(LEAVES);
    c.bench_function("inclusion_proof_from_tiles_1M", |b| {
        b.iter(|| black_box(inclusion_proof(&store, next(), size).expect("proof")));
    });
    let index = 123_457;
    let proof = inclusion_proof(&store, index, size).expect("proof");
    c.bench_function("verify_inclusion_1M", |b| {
        b.iter(|| {
            verify_inclusion(
                &leaves[index as usize],
                index,
                size,
                black_box(&proof),
                &root,
            )
            .expect("ok")
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
}

criterion_group! {
    name = tlog;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(tlog);
