//! Entry points for the cargo-fuzz targets under `fuzz/` (one per parser:
//! notes, checkpoints, proofs, keys, tiles). Not a stable API.
//!
//! Each function must never panic on any input; it asserts what must hold
//! whatever the bytes are (a parsed value writes back to the same bytes, a
//! changed proof never verifies), so a fuzzer finds both crashes and lies.

use crate::checkpoint::{Checkpoint, open_checkpoint};
use crate::merkle::{
    HASH_LEN_BYTES, Hash, HashSource as _, MemoryTree, leaf_hash, range_hash, tree_hash,
    verify_consistency, verify_inclusion,
};
use crate::note::{Ed25519Signer, Verifier, encode_base64, open_note, parse_note};
use crate::tiles::{MemTiles, TILE_HEIGHT, TILE_WIDTH, TileStorage as _, TileStore, tile_path};
use crate::{consistency_proof, inclusion_proof};

/// The key the note and checkpoint targets verify with.
fn fuzz_signer() -> Ed25519Signer {
    // A fixed seed; the name is valid, so this cannot fail.
    Ed25519Signer::from_seed("fuzz.example/log", &[0x42; 32])
        .unwrap_or_else(|_| unreachable!("a valid fixed key"))
}

/// Arbitrary bytes as a signed note: a parsed note writes back to exactly the
/// same bytes (the encoding is canonical), and opening never panics.
pub fn note(data: &[u8]) {
    if let Ok((text, signatures)) = parse_note(data) {
        let mut back = format!("{text}\n");
        for sig in &signatures {
            let mut bytes = sig.key_id.to_be_bytes().to_vec();
            bytes.extend_from_slice(&sig.signature);
            back.push_str(&format!(
                "\u{2014} {} {}\n",
                sig.name,
                encode_base64(&bytes)
            ));
        }
        assert_eq!(back.as_bytes(), data, "a parsed note is its canonical form");
    }
    let verifier = fuzz_signer().verifier();
    if let Ok(verified) = open_note(data, std::slice::from_ref(&verifier)) {
        assert!(!verified.verified_by.is_empty());
    }
}

/// Arbitrary bytes as a checkpoint text and as a signed checkpoint: a parsed
/// checkpoint writes back to the same text; a fresh signature over it opens.
pub fn checkpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = Checkpoint::parse(text) {
        assert_eq!(parsed.to_text(), text, "a parsed checkpoint is canonical");
        let signer = fuzz_signer();
        if let Ok(note) = parsed.sign(&[&signer]) {
            let opened = open_checkpoint(note.as_bytes(), &[signer.verifier()]);
            assert_eq!(opened.map(|(c, _)| c).ok(), Some(parsed));
        }
    }
    let _ = open_checkpoint(data, &[fuzz_signer().verifier()]);
}

/// Arbitrary bytes as key strings: a parsed key writes back to a string that
/// parses to the same key.
pub fn key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(verifier) = Verifier::from_vkey(text) {
        assert_eq!(Verifier::from_vkey(&verifier.vkey()).ok(), Some(verifier));
    }
    if let Ok(signer) = Ed25519Signer::from_skey(text) {
        let again = Ed25519Signer::from_skey(&signer.skey())
            .ok()
            .map(|s| s.vkey());
        assert_eq!(again, Some(signer.vkey()));
    }
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = data.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(bytes)
}

fn hashes_of(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(HASH_LEN_BYTES)
        .map(|c| {
            let mut h = [0u8; HASH_LEN_BYTES];
            h.copy_from_slice(c);
            h
        })
        .collect()
}

/// Arbitrary bytes as proofs: verification of any index, sizes and hashes
/// never panics; on a small real tree the true proofs verify and the same
/// proofs changed by the input's bytes (when that changes them) never do.
pub fn proof(data: &[u8]) {
    let (a, b) = (u64_at(data, 0), u64_at(data, 8));
    let rest = data.get(16..).unwrap_or_default();
    let hashes = hashes_of(rest);
    let root = hashes.first().copied().unwrap_or_default();
    let _ = verify_inclusion(&root, a, b, &hashes, &root);
    let _ = verify_consistency(a, b, &root, &root, &hashes);

    let size = 1 + (a % 200);
    let mut tree = MemoryTree::new();
    let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    for leaf in &leaves {
        if tree.append(*leaf).is_err() {
            return;
        }
    }
    let root = tree.root();
    let index = b % size;
    let Ok(path) = inclusion_proof(&tree, index, size) else {
        panic!("a proof of a leaf in the tree");
    };
    let leaf = &leaves[usize::try_from(index).unwrap_or(0)];
    assert!(verify_inclusion(leaf, index, size, &path, &root).is_ok());
    let changed: Vec<Hash> = path
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut h = *h;
            for (j, byte) in h.iter_mut().enumerate() {
                *byte ^= rest.get(i * HASH_LEN_BYTES + j).copied().unwrap_or(0);
            }
            h
        })
        .collect();
    if changed != path {
        assert!(verify_inclusion(leaf, index, size, &changed, &root).is_err());
    }
    let old = 1 + (b % size);
    let Ok(path) = consistency_proof(&tree, old, size) else {
        panic!("a consistency proof inside the tree");
    };
    let Ok(old_root) = range_hash(&tree, 0, old) else {
        panic!("the old root from the tree");
    };
    assert!(verify_consistency(old, size, &old_root, &root, &path).is_ok());
    let changed: Vec<Hash> = path
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut h = *h;
            h[0] ^= rest.get(i).copied().unwrap_or(0);
            h
        })
        .collect();
    if changed != path {
        assert!(verify_consistency(old, size, &old_root, &root, &changed).is_err());
    }
}

/// Arbitrary bytes as the one level-0 tile of a tree: the tree size comes from
/// the first byte; a tile of the wrong length is refused, one of the right
/// length gives every subtree hash the definition gives.
pub fn tile(data: &[u8]) {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let size = 1 + u64::from(first) % TILE_WIDTH;
    let storage = MemTiles::new();
    if storage.write_once(&tile_path(0, 0, size), bytes).is_err() {
        return;
    }
    let Ok(store) = TileStore::new(&storage, size) else {
        return;
    };
    let right_length = bytes.len() as u64 == size * HASH_LEN_BYTES as u64;
    let leaves = hashes_of(bytes);
    // Levels inside the tile (level 8 of a full tile lives in tile level 1,
    // which this storage does not hold).
    for level in 0u8..TILE_HEIGHT {
        for index in 0..=(size >> level) {
            let got = store.subtree(level, index);
            let complete = (index + 1) << level <= size;
            if !right_length || !complete {
                assert!(got.is_err(), "level {level} index {index}");
                continue;
            }
            let lo = usize::try_from(index << level).unwrap_or(0);
            let hi = lo + (1usize << level);
            assert_eq!(got.ok(), Some(tree_hash(&leaves[lo..hi])));
        }
    }
}

/// Arbitrary bytes as both JSON proof files (feature `json`): never a panic;
/// a file that parses writes back to one that parses to the same proof, and
/// an inclusion proof that parses never verifies against another root than
/// the one it states.
#[cfg(feature = "json")]
pub fn proof_file(data: &[u8]) {
    use crate::proof_file::{ConsistencyProof, InclusionProof};
    if let Ok(proof) = InclusionProof::parse(data) {
        let again = serde_json::to_vec(&proof.to_file()).expect("a parsed file serialises");
        assert_eq!(
            InclusionProof::parse(&again).as_ref(),
            Ok(&proof),
            "written back, it parses the same"
        );
        let mut other_root = proof.root;
        other_root[0] ^= 1;
        if proof.sequence < proof.tree_size {
            assert!(
                crate::verify_inclusion(
                    &proof.leaf,
                    proof.sequence,
                    proof.tree_size,
                    &proof.hashes,
                    &other_root
                )
                .is_err()
                    || crate::verify_inclusion(
                        &proof.leaf,
                        proof.sequence,
                        proof.tree_size,
                        &proof.hashes,
                        &proof.root
                    )
                    .is_err(),
                "one proof cannot lead to two roots"
            );
        }
    }
    if let Ok(proof) = ConsistencyProof::parse(data) {
        let again = serde_json::to_vec(&proof.to_file()).expect("a parsed file serialises");
        assert_eq!(
            ConsistencyProof::parse(&again).as_ref(),
            Ok(&proof),
            "written back, it parses the same"
        );
    }
}
