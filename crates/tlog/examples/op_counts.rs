//! Runs one operation a given number of times, for instruction counts under
//! callgrind, which a loaded machine does not disturb (docs/BENCHMARKS.md):
//!
//! ```sh
//! cargo build --release -p calybris-tlog --example op_counts
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/op_counts verify 1000
//! ```
//!
//! The count of `OP 0` is the fixed cost to subtract; the rest divided by the
//! repetitions is the operation's. Operations: `node` (one interior node
//! hash), `node-hasher` (the same through sha2's buffered hasher, as before),
//! `leaf` (one leaf hash of an entry hash), `verify` (an inclusion proof of 24
//! hashes, as for a tree of 10^7 leaves), `tile-batched` and `tile-one-by-one`
//! (256 entry hashes into a tree with tiles in memory, as a batch on one thread
//! or leaf by leaf), `sign` (a checkpoint note), `sign-bare` (the same text
//! with ed25519-dalek alone), `read-log` and `build-log` (a verified read of
//! a 10,000-record log file in the system's temporary folder, alone and with
//! the tree built beside it; `OP 0` writes the file too).

use std::hint::black_box;

use calybris_tlog::{
    Checkpoint, Ed25519Signer, MemTiles, TileWriter, leaf_hash, node_hash, verify_inclusion,
};
use ed25519_dalek::Signer as _;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let op = args.first().map_or("node", String::as_str);
    let times: u64 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1);
    let size = 10_000_000u64;
    let index = 1_234_567u64;
    // 24 hashes: the path length of a leaf in a tree of 10^7 leaves. Random
    // hashes do not verify, but verification does the same work either way.
    let proof: Vec<_> = (0..24u64).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let leaf = leaf_hash(b"leaf");
    let root = leaf_hash(b"root");
    let signer = Ed25519Signer::from_seed("bench.example/log", &[5; 32]).expect("signer");
    let checkpoint = Checkpoint {
        origin: "bench.example/log".into(),
        size,
        root,
        extensions: vec![],
    };
    let text = checkpoint.to_text();
    let bare = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let entries: Vec<_> = (0..256u64).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let mut writer = TileWriter::new(MemTiles::new());
    let log = std::env::temp_dir().join(format!("calybris-op-counts-{}.cwal", std::process::id()));
    if op.ends_with("-log") {
        let mut wal = calybris_wal::WalWriter::<u64>::create(&log, None).expect("create");
        for value in 0..10_000u64 {
            wal.append(&value).expect("append");
        }
        wal.sync().expect("sync");
    }
    for _ in 0..times {
        match op {
            "node" => {
                black_box(node_hash(black_box(&leaf), black_box(&root)));
            }
            "node-hasher" => {
                let mut input = [0u8; 65];
                input[0] = 1;
                input[1..33].copy_from_slice(black_box(&leaf));
                input[33..].copy_from_slice(black_box(&root));
                black_box(<sha2::Sha256 as sha2::Digest>::digest(input));
            }
            "leaf" => {
                black_box(calybris_tlog::merkle::leaf_hash_32(black_box(&leaf)));
            }
            "tile-batched" => {
                writer.append_entry_hashes(&entries, 1).expect("append");
            }
            "tile-one-by-one" => {
                for entry in &entries {
                    writer.append(leaf_hash(entry)).expect("append");
                }
            }
            "read-log" => {
                let mut frames = calybris_wal::LogFrames::open(&log, None, None).expect("open");
                black_box(frames.scan_to_end().expect("scan"));
            }
            "build-log" => {
                let mut tree = TileWriter::new(MemTiles::new());
                black_box(calybris_tlog::build_from_log(&log, None, &mut tree).expect("build"));
            }
            "verify" => {
                let _ = black_box(verify_inclusion(
                    &leaf,
                    index,
                    size,
                    black_box(&proof),
                    &root,
                ));
            }
            "sign" => {
                black_box(checkpoint.sign(&[&signer]).expect("sign"));
            }
            "sign-bare" => {
                black_box(bare.sign(black_box(text.as_bytes())));
            }
            other => {
                eprintln!("unknown operation {other}");
                std::process::exit(2);
            }
        }
    }
    let _ = std::fs::remove_file(&log);
}
