//! The tree against the RFC 6962 reference vectors, and proofs against the
//! recursive definitions on seeded random trees, from memory and from tiles.

// The workspace's seeded generator (SplitMix64).
use calybris_tlog::merkle::{HASH_LEN_BYTES, HashSource as _, MAX_TREE_SIZE};
use calybris_tlog::{
    Hash, MemTiles, MemoryTree, ProofError, RightEdge, TileStore, TileWriter, consistency_proof,
    empty_root, inclusion_proof, leaf_hash, tile_path, tree_hash, verify_consistency,
    verify_inclusion,
};
use calybris_workload::SplitMix64 as Rng;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex in the vector file"))
        .collect()
}

fn hash(text: &str) -> Hash {
    hex(text).try_into().expect("a 32-byte hash")
}

struct Vectors {
    leaves: Vec<Vec<u8>>,
    roots: Vec<(u64, Hash)>,
    inclusions: Vec<(u64, u64, Vec<Hash>)>,
    consistencies: Vec<(u64, u64, Vec<Hash>)>,
}

fn vectors() -> Vectors {
    let text = include_str!("data/rfc6962.txt");
    let mut v = Vectors {
        leaves: vec![],
        roots: vec![],
        inclusions: vec![],
        consistencies: vec![],
    };
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let fields: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| fields[i].parse::<u64>().expect("a number");
        match fields[0] {
            "leaf" if fields[1] == "-" => v.leaves.push(vec![]),
            "leaf" => v.leaves.push(hex(fields[1])),
            "root" => v.roots.push((num(1), hash(fields[2]))),
            "inclusion" => v.inclusions.push((
                num(1),
                num(2),
                fields[3..].iter().map(|h| hash(h)).collect(),
            )),
            "consistency" => v.consistencies.push((
                num(1),
                num(2),
                fields[3..].iter().map(|h| hash(h)).collect(),
            )),
            other => panic!("unknown record {other}"),
        }
    }
    v
}

fn tree_of(leaves: &[Vec<u8>]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in leaves {
        tree.append(leaf_hash(leaf)).expect("append");
    }
    tree
}

#[test]
fn rfc6962_roots_and_proofs() {
    let v = vectors();
    assert_eq!(v.leaves.len(), 8);
    assert_eq!(empty_root(), v.roots[0].1);
    for &(size, root) in &v.roots {
        let tree = tree_of(&v.leaves[..size as usize]);
        assert_eq!(tree.root(), root, "root of size {size}");
        let hashes: Vec<Hash> = v.leaves[..size as usize]
            .iter()
            .map(|l| leaf_hash(l))
            .collect();
        assert_eq!(tree_hash(&hashes), root);
    }
    let full = tree_of(&v.leaves);
    let root_of = |size: u64| v.roots.iter().find(|r| r.0 == size).expect("a root").1;
    for (index, size, want) in &v.inclusions {
        let tree = tree_of(&v.leaves[..*size as usize]);
        assert_eq!(&inclusion_proof(&tree, *index, *size).expect("proof"), want);
        // The larger tree gives the same proof for the smaller size.
        assert_eq!(&inclusion_proof(&full, *index, *size).expect("proof"), want);
        let leaf = leaf_hash(&v.leaves[*index as usize]);
        verify_inclusion(&leaf, *index, *size, want, &root_of(*size)).expect("verifies");
    }
    for (old, new, want) in &v.consistencies {
        assert_eq!(&consistency_proof(&full, *old, *new).expect("proof"), want);
        verify_consistency(*old, *new, &root_of(*old), &root_of(*new), want).expect("verifies");
    }
}

fn seed() -> u64 {
    std::env::var("TLOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7106)
}

fn ref_path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return vec![];
    }
    let k = (leaves.len() - 1).next_power_of_two()
        / if (leaves.len() - 1).is_power_of_two() {
            1
        } else {
            2
        };
    let k = if k >= leaves.len() { k / 2 } else { k };
    if index < k {
        let mut p = ref_path(&leaves[..k], index);
        p.push(tree_hash(&leaves[k..]));
        p
    } else {
        let mut p = ref_path(&leaves[k..], index - k);
        p.push(tree_hash(&leaves[..k]));
        p
    }
}

#[test]
fn random_proofs_match_the_definition_and_verify_from_tiles() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let leaves: Vec<Hash> = (0..3000u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut tree = MemoryTree::new();
    let mut writer = TileWriter::new(MemTiles::new());
    let mut roots = vec![empty_root()];
    for leaf in &leaves {
        tree.append(*leaf).expect("append");
        writer.append(*leaf).expect("append");
        roots.push(tree.root());
    }
    let (size, root) = writer.checkpoint().expect("partial tiles");
    assert_eq!((size, root), (3000, tree.root()));
    let tiles = TileStore::new(writer.storage(), size).expect("store");
    for _ in 0..300 {
        let size = 1 + rng.below(3000);
        let index = rng.below(size);
        let proof = inclusion_proof(&tree, index, size).expect("proof");
        assert_eq!(
            proof,
            ref_path(&leaves[..size as usize], index as usize),
            "seed {seed}: {index} in {size}"
        );
        let leaf = &leaves[index as usize];
        verify_inclusion(leaf, index, size, &proof, &roots[size as usize])
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // The wrong leaf, index or root fails.
        assert!(
            verify_inclusion(
                &leaves[((index + 1) % 3000) as usize],
                index,
                size,
                &proof,
                &roots[size as usize]
            )
            .is_err()
                || size == 1 && index == 0 && leaves.len() == 1
        );
        if size > 1 {
            assert!(
                verify_inclusion(
                    leaf,
                    (index + 1) % size,
                    size,
                    &proof,
                    &roots[size as usize]
                )
                .is_err(),
                "seed {seed}"
            );
        }
        let old = 1 + rng.below(size);
        let proof = consistency_proof(&tree, old, size).expect("consistency");
        verify_consistency(
            old,
            size,
            &roots[old as usize],
            &roots[size as usize],
            &proof,
        )
        .unwrap_or_else(|e| panic!("seed {seed}: {old}->{size}: {e}"));
        if old < size {
            assert!(
                verify_consistency(
                    old,
                    size,
                    &roots[old as usize - 1],
                    &roots[size as usize],
                    &proof
                )
                .is_err(),
                "seed {seed}"
            );
        }
    }
    // From tiles, at the tiled size, proofs are the same.
    for _ in 0..100 {
        let index = rng.below(3000);
        assert_eq!(
            inclusion_proof(&tiles, index, 3000).expect("tiles"),
            inclusion_proof(&tree, index, 3000).expect("memory"),
            "seed {seed}"
        );
        let old = 1 + rng.below(3000);
        assert_eq!(
            consistency_proof(&tiles, old, 3000).expect("tiles"),
            consistency_proof(&tree, old, 3000).expect("memory"),
            "seed {seed}"
        );
    }
}

#[test]
fn tiles_are_written_once_with_standard_paths() {
    assert_eq!(tile_path(0, 1_234_067, 256), "tile/0/x001/x234/067");
    assert_eq!(tile_path(1, 5, 17), "tile/1/005.p/17");
    assert_eq!(tile_path(2, 1000, 256), "tile/2/x001/000");
    let tiles = MemTiles::new();
    let mut writer = TileWriter::new(&tiles);
    for i in 0..(256u64 * 3 + 5) {
        writer.append(leaf_hash(&i.to_be_bytes())).expect("append");
    }
    assert_eq!(tiles.len(), 3);
    writer.checkpoint().expect("partials");
    // Three full level-0 tiles, one partial level-0 tile, one partial level-1 tile.
    assert_eq!(tiles.len(), 5);
    assert_eq!(
        tiles_read(&tiles, "tile/0/003.p/5").len(),
        5 * HASH_LEN_BYTES
    );
    assert_eq!(
        tiles_read(&tiles, "tile/1/000.p/3").len(),
        3 * HASH_LEN_BYTES
    );
    // Another tree cannot overwrite them.
    let mut other = TileWriter::new(&tiles);
    let err = (0..256u64).try_for_each(|i| other.append(leaf_hash(&(i + 1).to_be_bytes())));
    assert!(matches!(
        err,
        Err(calybris_tlog::TileError::Conflict { .. })
    ));
}

fn tiles_read(tiles: &MemTiles, path: &str) -> Vec<u8> {
    use calybris_tlog::TileStorage as _;
    tiles.read(path).expect("tile")
}

#[test]
fn proofs_out_of_range_are_typed_errors() {
    let tree = tree_of(&[vec![1], vec![2], vec![3]]);
    let root = tree.root();
    let leaf = leaf_hash(&[1]);
    assert!(matches!(
        inclusion_proof(&tree, 3, 3),
        Err(ProofError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        inclusion_proof(&tree, 0, 4),
        Err(ProofError::HashUnavailable { .. })
    ));
    assert!(matches!(
        consistency_proof(&tree, 4, 3),
        Err(ProofError::SizeOutOfRange { .. })
    ));
    assert!(matches!(
        verify_inclusion(&leaf, 0, MAX_TREE_SIZE + 1, &[], &root),
        Err(ProofError::SizeOutOfRange { .. })
    ));
    assert!(matches!(
        verify_inclusion(&leaf, 0, 3, &[root; 64], &root),
        Err(ProofError::WrongLength { .. })
    ));
    assert!(matches!(
        verify_inclusion(&leaf, 0, 3, &[], &root),
        Err(ProofError::WrongLength { .. })
    ));
    assert!(matches!(
        verify_consistency(2, 3, &root, &root, &[]),
        Err(ProofError::WrongLength { .. })
    ));
    assert!(matches!(
        verify_consistency(0, 3, &root, &root, &[]),
        Err(ProofError::RootMismatch)
    ));
    verify_consistency(0, 3, &empty_root(), &root, &[]).expect("any tree extends the empty one");
    verify_consistency(3, 3, &root, &root, &[]).expect("a tree extends itself");
    let mut edge = RightEdge::new();
    assert_eq!(edge.root(), empty_root());
    edge.append(leaf).expect("append");
    assert_eq!(
        RightEdge::from_parts(1, edge.edge().to_vec()).expect("parts"),
        edge
    );
    assert!(RightEdge::from_parts(3, edge.edge().to_vec()).is_err());
}

#[test]
fn mutating_any_byte_of_a_proof_is_rejected() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let leaves: Vec<Hash> = (0..777u64).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let mut tree = MemoryTree::new();
    for leaf in &leaves {
        tree.append(*leaf).expect("append");
    }
    let root = tree.root();
    for _ in 0..20 {
        let index = rng.below(777);
        let proof = inclusion_proof(&tree, index, 777).expect("proof");
        for (i, byte) in proof.iter().flat_map(|h| h.iter()).enumerate() {
            let mut bad = proof.clone();
            bad[i / HASH_LEN_BYTES][i % HASH_LEN_BYTES] = byte ^ (1 << rng.below(8));
            assert!(
                verify_inclusion(&leaves[index as usize], index, 777, &bad, &root).is_err(),
                "seed {seed}: byte {i}"
            );
        }
        let old = 1 + rng.below(776);
        let old_root = tree_hash(&leaves[..old as usize]);
        let proof = consistency_proof(&tree, old, 777).expect("proof");
        for i in 0..proof.len() * HASH_LEN_BYTES {
            let mut bad = proof.clone();
            bad[i / HASH_LEN_BYTES][i % HASH_LEN_BYTES] ^= 1 << rng.below(8);
            assert!(
                verify_consistency(old, 777, &old_root, &root, &bad).is_err(),
                "seed {seed}: byte {i}"
            );
        }
        let mut short = proof.clone();
        short.pop();
        assert!(
            verify_consistency(old, 777, &old_root, &root, &short).is_err(),
            "seed {seed}"
        );
    }
}

/// The same `size` leaves (the hashes of 0, 1, ... as little-endian u64s) in a
/// memory tree and in tiles, the tiles checkpointed (partial tiles written).
fn tree_and_tiles(size: u64) -> (MemoryTree, TileWriter<MemTiles>) {
    let mut tree = MemoryTree::new();
    let mut writer = TileWriter::new(MemTiles::new());
    for i in 0..size {
        let leaf = leaf_hash(&i.to_le_bytes());
        tree.append(leaf).expect("append");
        writer.append(leaf).expect("append");
    }
    let (checkpointed, _) = writer.checkpoint().expect("partial tiles");
    assert_eq!(checkpointed, size);
    (tree, writer)
}

#[test]
fn every_stored_subtree_from_expanded_tiles_equals_the_tree() {
    // 2^16 + 300 leaves: three tile levels, partial tiles at levels 0 and 1.
    let size = (1u64 << 16) + 300;
    let (tree, writer) = tree_and_tiles(size);
    // A cache of three tiles: most lookups evict, and still give the same hash.
    for capacity in [3, calybris_tlog::tiles::TILE_CACHE_MAX] {
        let tiles =
            TileStore::with_cache_capacity(writer.storage(), size, capacity).expect("store");
        for level in 0u8..=16 {
            let complete = size >> level;
            for index in 0..complete {
                assert_eq!(
                    tiles.subtree(level, index),
                    tree.subtree(level, index),
                    "level {level}, index {index}, capacity {capacity}"
                );
            }
            // The first incomplete subtree is not available.
            assert!(matches!(
                tiles.subtree(level, complete),
                Err(ProofError::HashUnavailable { .. })
            ));
        }
    }
}

/// The direct-compression node and leaf hashes equal SHA-256 over the
/// prefixed bytes, on seeded random inputs (and the all-0x00 / all-0xff
/// edges that exercise the padding bytes).
#[test]
fn fast_hashes_equal_sha256_of_the_prefixed_input() {
    use sha2::{Digest as _, Sha256};
    let seed = seed();
    let mut rng = Rng::new(seed);
    let random_hash = |rng: &mut Rng| {
        let mut h = [0u8; HASH_LEN_BYTES];
        for chunk in h.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        h
    };
    let mut cases = vec![([0u8; 32], [0u8; 32]), ([0xff; 32], [0xff; 32])];
    for _ in 0..500 {
        cases.push((random_hash(&mut rng), random_hash(&mut rng)));
    }
    for (left, right) in cases {
        let mut input = vec![0x01];
        input.extend_from_slice(&left);
        input.extend_from_slice(&right);
        let expected: Hash = Sha256::digest(&input).into();
        assert_eq!(
            calybris_tlog::node_hash(&left, &right),
            expected,
            "seed {seed}"
        );
        let mut input = vec![0x00];
        input.extend_from_slice(&left);
        let expected: Hash = Sha256::digest(&input).into();
        assert_eq!(leaf_hash(&left), expected, "seed {seed}");
        assert_eq!(
            calybris_tlog::merkle::leaf_hash_32(&left),
            expected,
            "seed {seed}"
        );
        // Other lengths take the hasher path and agree with it too.
        assert_eq!(
            leaf_hash(&left[..31]),
            Hash::from(Sha256::digest([&[0u8][..], &left[..31]].concat())),
            "seed {seed}"
        );
    }
}

/// The batch path (whole level-0 tiles hashed on worker threads) gives the
/// same tree and the same tile files as appending leaf by leaf, from any
/// starting size, for any batch split and thread count.
#[test]
fn batched_entry_hashes_equal_leaf_by_leaf_appends() {
    use calybris_tlog::tiles::{TILE_WIDTH, TileStorage as _};
    let seed = seed();
    let mut rng = Rng::new(seed ^ 0xba7c);
    for round in 0..4 {
        // The first round fills a level-1 tile (65,536 leaves); the others are
        // smaller.
        let total = if round == 0 {
            TILE_WIDTH * TILE_WIDTH + rng.below(4_096)
        } else {
            1 + rng.below(20_000)
        };
        let entries: Vec<Hash> = (0..total)
            .map(|i| calybris_tlog::node_hash(&[round; 32], &leaf_hash(&i.to_le_bytes())))
            .collect();
        let mut one = TileWriter::new(MemTiles::new());
        for entry in &entries {
            one.append(leaf_hash(entry)).expect("append");
        }
        let mut batched = TileWriter::new(MemTiles::new());
        let mut at = 0usize;
        while at < entries.len() {
            let len = (1 + rng.below(3_000)) as usize;
            let end = (at + len).min(entries.len());
            let threads = 1 + rng.below(4) as usize;
            batched
                .append_entry_hashes(&entries[at..end], threads)
                .expect("batch");
            at = end;
        }
        assert_eq!(batched.size(), one.size(), "seed {seed}");
        assert_eq!(
            one.checkpoint().expect("c"),
            batched.checkpoint().expect("c"),
            "seed {seed}"
        );
        for level in 0..3u8 {
            let count = total >> (8 * u32::from(level));
            for index in 0..=count / TILE_WIDTH {
                let width = if index < count / TILE_WIDTH {
                    TILE_WIDTH
                } else {
                    count % TILE_WIDTH
                };
                if width == 0 {
                    continue;
                }
                let path = tile_path(level, index, width);
                assert_eq!(
                    one.storage().read(&path).expect("tile"),
                    batched.storage().read(&path).expect("same tile"),
                    "seed {seed}: {path}"
                );
            }
        }
        assert_eq!(one.storage().len(), batched.storage().len(), "seed {seed}");
    }
}

/// Proofs from a store whose cache holds one tile (so most lookups read and
/// expand a tile again) equal the in-memory tree's, and
/// a subtree asked at any level, however large, is a typed error, never a
/// shift overflow.
#[test]
fn proofs_from_a_one_tile_cache_and_absurd_levels() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let (tree, writer) = tree_and_tiles(70_000);
    let size = 70_000;
    let store = TileStore::with_cache_capacity(writer.storage(), size, 1).expect("store");
    for _ in 0..200 {
        let index = rng.below(size);
        assert_eq!(
            inclusion_proof(&store, index, size).expect("tiles"),
            inclusion_proof(&tree, index, size).expect("memory"),
            "seed {seed}: leaf {index}"
        );
        let old = 1 + rng.below(size);
        assert_eq!(
            consistency_proof(&store, old, size).expect("tiles"),
            consistency_proof(&tree, old, size).expect("memory"),
            "seed {seed}: {old} -> {size}"
        );
    }
    for level in [17u8, 62, 63, 64, 200, 255] {
        for index in [0u64, 1, u64::MAX >> 1, u64::MAX] {
            assert!(
                matches!(
                    store.subtree(level, index),
                    Err(ProofError::HashUnavailable { .. })
                ),
                "level {level}, index {index}"
            );
        }
    }
}

/// Appending runs of entry hashes to a right edge, from any starting size and
/// in runs of any length (across and along tile boundaries), gives the same
/// edge and leaves as appending each leaf hash.
#[test]
fn edge_runs_of_entry_hashes_equal_one_by_one_appends() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let entries: Vec<Hash> = (0..5_000u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    for _ in 0..40 {
        let mut by_runs = RightEdge::new();
        let mut one_by_one = RightEdge::new();
        let mut leaves = Vec::new();
        let mut at = 0usize;
        while at < entries.len() {
            let run = (1 + rng.below(700) as usize).min(entries.len() - at);
            by_runs
                .append_entry_hashes(&entries[at..at + run], &mut leaves)
                .expect("runs");
            for entry in &entries[at..at + run] {
                one_by_one
                    .append(calybris_tlog::merkle::leaf_hash_32(entry))
                    .expect("append");
            }
            at += run;
            assert_eq!(by_runs, one_by_one, "seed {seed}: after {at} leaves");
        }
        let want: Vec<Hash> = entries
            .iter()
            .map(calybris_tlog::merkle::leaf_hash_32)
            .collect();
        assert_eq!(leaves, want, "seed {seed}");
    }
}
