//! The Rust half of the Go interoperability check (`cargo xtask interop`; the Go
//! half is `interop/go/`, the file layout is in `interop/README.md`).
//!
//! `interop generate DIR` writes a log of at least 100,000 leaves as C2SP tiles,
//! signed checkpoints at several sizes (the last one cosigned by a witness), and
//! random inclusion and consistency proofs. `interop check DIR` reads what the Go
//! program wrote into `DIR/go/` (notes signed with `sumdb/note`, proofs made by
//! `sumdb/tlog` from our tiles), verifies all of it, checks the Go proofs equal
//! ours hash for hash, and checks that every single-byte change of every note
//! and proof, Go's and ours, is rejected. The seed comes from `CALYBRIS_SEED`
//! and is printed, so a failure can be rerun.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use calybris_testkit::{SplitMix64, seed_from_env};
use calybris_tlog::merkle::range_hash;
use calybris_tlog::{
    Checkpoint, Ed25519Signer, FsTiles, Hash, TileStore, TileWriter, Verifier, consistency_proof,
    cosignature_line, inclusion_proof, leaf_hash, open_checkpoint, verify_consistency,
    verify_inclusion,
};

/// The origin line of the interop log.
const ORIGIN: &str = "interop.calybris.example/log";
/// The witness key name.
const WITNESS: &str = "witness.calybris.example";
/// Leaves at least in the log.
const MIN_LEAVES: u64 = 100_000;
/// Random proofs of each kind.
const PROOFS: usize = 1_000;
/// Checkpoints signed below the final size.
const EARLIER_CHECKPOINTS: usize = 5;
/// Default seed when `CALYBRIS_SEED` is unset.
const DEFAULT_SEED: u64 = 0x1357_9bdf_2468_ace0;
/// The cosignature timestamp of the witness.
const COSIGN_TIME: u64 = 1_780_000_000;

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = seed_from_env(DEFAULT_SEED);
    let outcome = match (args.first().map(String::as_str), args.get(1)) {
        (Some("generate"), Some(dir)) => generate(Path::new(dir), seed),
        (Some("check"), Some(dir)) => check(Path::new(dir), seed),
        _ => Err("usage: interop generate DIR | interop check DIR".to_owned()),
    };
    match outcome {
        Ok(summary) => {
            println!("interop (rust, seed {seed:#x}): {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "interop (rust, seed {seed:#x}; rerun with CALYBRIS_SEED={seed:#x}): FAILED: {e}"
            );
            ExitCode::FAILURE
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Result<Hash> {
    if text.len() != 64 {
        return Err(format!("not a 32-byte hex hash: {text:?}"));
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("not hex: {text:?}"))?;
    }
    Ok(hash)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|_| format!("{}: not UTF-8", path.display()))
}

fn signers(seed: u64) -> Result<(Ed25519Signer, Ed25519Signer)> {
    let mut rng = SplitMix64::new(seed ^ 0x5eed_0f4b);
    let mut key = || {
        let mut k = [0u8; 32];
        for chunk in k.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        k
    };
    let log = Ed25519Signer::from_seed(ORIGIN, &key()).map_err(|e| e.to_string())?;
    let witness = Ed25519Signer::cosigner_from_seed(WITNESS, &key()).map_err(|e| e.to_string())?;
    Ok((log, witness))
}

fn generate(dir: &Path, seed: u64) -> Result<String> {
    let mut rng = SplitMix64::new(seed);
    let size = MIN_LEAVES + rng.below(1_000);
    let mut checkpoint_sizes: Vec<u64> = (0..EARLIER_CHECKPOINTS)
        .map(|_| rng.between(1, size - 1))
        .collect();
    checkpoint_sizes.push(size);
    checkpoint_sizes.sort_unstable();
    checkpoint_sizes.dedup();

    let mut inputs = Vec::with_capacity(usize::try_from(size).map_err(|e| e.to_string())? * 32);
    let mut writer = TileWriter::new(FsTiles::new(dir));
    let (log, witness) = signers(seed)?;
    let mut roots = Vec::new();
    let mut next_checkpoint = checkpoint_sizes.iter().peekable();
    for _ in 0..size {
        let mut input = [0u8; 32];
        for chunk in input.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        inputs.extend_from_slice(&input);
        writer
            .append(leaf_hash(&input))
            .map_err(|e| e.to_string())?;
        if next_checkpoint.peek() == Some(&&writer.size()) {
            next_checkpoint.next();
            let (at, root) = writer.checkpoint().map_err(|e| e.to_string())?;
            let checkpoint = Checkpoint {
                origin: ORIGIN.to_owned(),
                size: at,
                root,
                extensions: vec![],
            };
            let mut note = checkpoint.sign(&[&log]).map_err(|e| e.to_string())?;
            if at == size {
                note.push_str(
                    &cosignature_line(&checkpoint.to_text(), &witness, COSIGN_TIME)
                        .map_err(|e| e.to_string())?,
                );
            }
            write(
                &dir.join("checkpoints").join(at.to_string()),
                note.as_bytes(),
            )?;
            roots.push((at, root));
        }
    }
    assert_eq!(
        roots.len(),
        checkpoint_sizes.len(),
        "every checkpoint size was reached"
    );
    write(&dir.join("leaves.bin"), &inputs)?;
    write(
        &dir.join("log.vkey"),
        format!("{}\n", log.vkey()).as_bytes(),
    )?;
    write(
        &dir.join("witness.vkey"),
        format!("{}\n", witness.vkey()).as_bytes(),
    )?;

    let store = TileStore::new(FsTiles::new(dir), size).map_err(|e| e.to_string())?;
    let mut inclusion = String::new();
    for i in 0..PROOFS {
        // Half at the final size, half at a random earlier size.
        let tree = if i % 2 == 0 {
            size
        } else {
            rng.between(1, size)
        };
        let index = rng.below(tree);
        let proof = inclusion_proof(&store, index, tree).map_err(|e| e.to_string())?;
        let root = range_hash(&store, 0, tree).map_err(|e| e.to_string())?;
        let _ = write!(inclusion, "{tree} {index} {}", hex(&root));
        for hash in &proof {
            let _ = write!(inclusion, " {}", hex(hash));
        }
        inclusion.push('\n');
    }
    write(&dir.join("inclusion.txt"), inclusion.as_bytes())?;
    let mut consistency = String::new();
    for i in 0..PROOFS {
        let (old, new) = if i < checkpoint_sizes.len() * checkpoint_sizes.len() {
            let a = checkpoint_sizes[i / checkpoint_sizes.len()];
            let b = checkpoint_sizes[i % checkpoint_sizes.len()];
            (a.min(b), a.max(b))
        } else {
            let a = rng.between(1, size);
            let b = rng.between(1, size);
            (a.min(b), a.max(b))
        };
        let proof = consistency_proof(&store, old, new).map_err(|e| e.to_string())?;
        let old_root = range_hash(&store, 0, old).map_err(|e| e.to_string())?;
        let new_root = range_hash(&store, 0, new).map_err(|e| e.to_string())?;
        let _ = write!(
            consistency,
            "{old} {new} {} {}",
            hex(&old_root),
            hex(&new_root)
        );
        for hash in &proof {
            let _ = write!(consistency, " {}", hex(hash));
        }
        consistency.push('\n');
    }
    write(&dir.join("consistency.txt"), consistency.as_bytes())?;
    Ok(format!(
        "wrote {size} leaves, {} checkpoints, {PROOFS} inclusion and {PROOFS} consistency proofs",
        roots.len()
    ))
}

/// A proof line: the sizes or index, the roots, the proof hashes.
struct ProofLine {
    numbers: (u64, u64),
    roots: Vec<Hash>,
    hashes: Vec<Hash>,
}

fn parse_lines(text: &str, roots: usize) -> Result<Vec<ProofLine>> {
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 2 + roots {
                return Err(format!("short proof line {line:?}"));
            }
            let number = |s: &str| s.parse::<u64>().map_err(|_| format!("not a number: {s:?}"));
            Ok(ProofLine {
                numbers: (number(fields[0])?, number(fields[1])?),
                roots: fields[2..2 + roots]
                    .iter()
                    .map(|f| unhex(f))
                    .collect::<Result<_>>()?,
                hashes: fields[2 + roots..]
                    .iter()
                    .map(|f| unhex(f))
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

/// Every byte of `bytes` changed once by a random non-zero XOR (and by every
/// single-bit flip when `all_bits`): `accepts` must refuse each. Returns the
/// number of changed inputs tried.
fn mutations(
    bytes: &[u8],
    rng: &mut SplitMix64,
    all_bits: bool,
    what: &str,
    accepts: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<u64> {
    let mut tried = 0;
    let mut changed = bytes.to_vec();
    for i in 0..bytes.len() {
        let mut masks = vec![u8::try_from(rng.between(1, 255)).unwrap_or(1)];
        if all_bits {
            masks.extend((0..8).map(|bit| 1u8 << bit));
        }
        for mask in masks {
            changed[i] = bytes[i] ^ mask;
            tried += 1;
            if accepts(&changed) {
                return Err(format!(
                    "{what}: byte {i} changed by xor {mask:#04x} is accepted"
                ));
            }
        }
        changed[i] = bytes[i];
    }
    Ok(tried)
}

fn hashes_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

fn bytes_hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap_or([0; 32]))
        .collect()
}

fn check(dir: &Path, seed: u64) -> Result<String> {
    let mut rng = SplitMix64::new(seed ^ 0xc4ec);
    let go = dir.join("go");
    let leaves = read(&dir.join("leaves.bin"))?;
    let size = leaves.len() as u64 / 32;
    let store = TileStore::new(FsTiles::new(dir), size).map_err(|e| e.to_string())?;
    let leaf = |n: u64| -> Hash {
        let at = usize::try_from(n * 32).unwrap_or(usize::MAX);
        leaf_hash(&leaves[at..at + 32])
    };
    let (log, witness) = signers(seed)?;
    let mut tried = 0u64;

    // Our notes: every byte change is refused (the cosigned one must keep both
    // signatures valid).
    let mut ours: Vec<PathBuf> = std::fs::read_dir(dir.join("checkpoints"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    ours.sort();
    let both = [log.verifier(), witness.verifier()];
    for path in &ours {
        let note = read(path)?;
        let (cp, verified) =
            open_checkpoint(&note, &both).map_err(|e| format!("{}: {e}", path.display()))?;
        let signers_needed = verified.signatures.len();
        if verified.verified_by.len() != signers_needed {
            return Err(format!("{}: not every signature verified", path.display()));
        }
        if cp.root != range_hash(&store, 0, cp.size).map_err(|e| e.to_string())? {
            return Err(format!("{}: root is not the tiles' root", path.display()));
        }
        tried += mutations(&note, &mut rng, signers_needed > 1, "our note", &mut |m| {
            open_checkpoint(m, &both).is_ok_and(|(_, v)| v.verified_by.len() == signers_needed)
        })?;
    }

    // Notes the Go program signed with sumdb/note over our tree heads.
    let go_key =
        Verifier::from_vkey(&read_text(&go.join("go.vkey"))?).map_err(|e| e.to_string())?;
    let go_keys = [go_key];
    let mut notes: Vec<PathBuf> = std::fs::read_dir(go.join("notes"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    notes.sort();
    if notes.is_empty() {
        return Err("the Go program signed no notes".to_owned());
    }
    for path in &notes {
        let note = read(path)?;
        let (cp, _) = open_checkpoint(&note, &go_keys)
            .map_err(|e| format!("Go note {}: {e}", path.display()))?;
        if cp.origin != ORIGIN
            || cp.root != range_hash(&store, 0, cp.size).map_err(|e| e.to_string())?
        {
            return Err(format!(
                "Go note {}: another tree head than ours",
                path.display()
            ));
        }
        tried += mutations(&note, &mut rng, false, "Go note", &mut |m| {
            open_checkpoint(m, &go_keys).is_ok()
        })?;
    }

    // Inclusion proofs the Go program made from our tiles: equal to ours, valid,
    // and every byte change refused.
    let go_inclusion = parse_lines(&read_text(&go.join("inclusion.txt"))?, 1)?;
    let our_inclusion = parse_lines(&read_text(&dir.join("inclusion.txt"))?, 1)?;
    if go_inclusion.len() != our_inclusion.len() || go_inclusion.len() < PROOFS {
        return Err(format!(
            "{} Go inclusion proofs for {} of ours",
            go_inclusion.len(),
            our_inclusion.len()
        ));
    }
    for (g, o) in go_inclusion.iter().zip(&our_inclusion) {
        let (tree, index) = g.numbers;
        if g.numbers != o.numbers || g.roots != o.roots || g.hashes != o.hashes {
            return Err(format!(
                "Go's inclusion proof of {index} in {tree} differs from ours"
            ));
        }
        let root = g.roots[0];
        let leaf = leaf(index);
        verify_inclusion(&leaf, index, tree, &g.hashes, &root)
            .map_err(|e| format!("Go inclusion proof of {index} in {tree}: {e}"))?;
        tried += mutations(
            &hashes_bytes(&g.hashes),
            &mut rng,
            false,
            "inclusion proof",
            &mut |m| verify_inclusion(&leaf, index, tree, &bytes_hashes(m), &root).is_ok(),
        )?;
        if verify_inclusion(
            &leaf,
            index,
            tree,
            &g.hashes[..g.hashes.len().saturating_sub(1)],
            &root,
        )
        .is_ok()
            && !g.hashes.is_empty()
        {
            return Err("a truncated inclusion proof is accepted".to_owned());
        }
    }
    let go_consistency = parse_lines(&read_text(&go.join("consistency.txt"))?, 2)?;
    let our_consistency = parse_lines(&read_text(&dir.join("consistency.txt"))?, 2)?;
    if go_consistency.len() != our_consistency.len() || go_consistency.len() < PROOFS {
        return Err(format!(
            "{} Go consistency proofs for {} of ours",
            go_consistency.len(),
            our_consistency.len()
        ));
    }
    for (g, o) in go_consistency.iter().zip(&our_consistency) {
        let (old, new) = g.numbers;
        if g.numbers != o.numbers || g.roots != o.roots || g.hashes != o.hashes {
            return Err(format!(
                "Go's consistency proof {old} -> {new} differs from ours"
            ));
        }
        let (old_root, new_root) = (g.roots[0], g.roots[1]);
        verify_consistency(old, new, &old_root, &new_root, &g.hashes)
            .map_err(|e| format!("Go consistency proof {old} -> {new}: {e}"))?;
        tried += mutations(
            &hashes_bytes(&g.hashes),
            &mut rng,
            false,
            "consistency proof",
            &mut |m| verify_consistency(old, new, &old_root, &new_root, &bytes_hashes(m)).is_ok(),
        )?;
    }
    Ok(format!(
        "verified {} of our notes, {} Go notes, {} Go inclusion and {} Go consistency proofs (all equal to ours); {tried} single-byte changes all rejected",
        ours.len(),
        notes.len(),
        go_inclusion.len(),
        go_consistency.len()
    ))
}
