//! Transparency for Calybris logs: an RFC 6962 / RFC 9162 Merkle tree over the
//! entry hashes of a `calybris-wal` log, inclusion and consistency proofs, tree
//! heads as C2SP signed checkpoints (Ed25519 signed notes, tlog-cosignature/v1
//! witness cosignatures) and the tree on disk as C2SP tlog-tiles.
//!
//! **The leaf** of record `n` is leaf `n` of the tree, and its leaf input is the
//! record's 32-byte entry hash as stored in its frame: the leaf hash is
//! SHA-256(0x00 || entry hash), an interior node SHA-256(0x01 || left || right).
//! The entry hash already binds the record's payload, its sequence number and
//! the whole chain before it, so a proof for it proves the record's place in
//! history; for a keyed log it is an HMAC tag, so a checkpoint or a proof
//! reveals nothing about the payload.
//!
//! # What it deliberately does not do
//! - Serve tiles or checkpoints over a network: the files are laid out so any
//!   static file server can.
//! - Store entry bundles (`tile/entries/`): the records stay in the log.
//! - Handle logs whose first segments were retired: leaf `n` is sequence `n`,
//!   so the log must start at sequence 0 ([`BuildError::Retired`] says so).
//!
//! # Main types
//! - [`merkle`]: [`RightEdge`] (append with O(log n) memory), [`MemoryTree`],
//!   [`inclusion_proof`], [`consistency_proof`], [`verify_inclusion`],
//!   [`verify_consistency`], all against a [`HashSource`].
//! - [`note`]: [`Signer`] (for a KMS or HSM), [`Ed25519Signer`], [`Verifier`],
//!   [`sign_note`], [`open_note`], [`cosignature_line`].
//! - [`checkpoint`]: [`Checkpoint`], [`open_checkpoint`], [`witness_cosign`].
//! - [`tiles`]: [`TileWriter`] (writes each tile once), [`TileStore`] (a
//!   [`HashSource`] reading tiles), [`tile_path`].
//! - [`build_from_log`]: tiles for every record of a log file or directory.
//!
//! # Example
//! ```
//! use calybris_tlog::{Checkpoint, Ed25519Signer, MemoryTree, inclusion_proof, leaf_hash,
//!     open_checkpoint, verify_inclusion};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut tree = MemoryTree::new();
//! for n in 0u8..10 {
//!     tree.append(leaf_hash(&[n; 32]))?;
//! }
//! let signer = Ed25519Signer::from_seed("example.com/log", &[7; 32])?;
//! let checkpoint = Checkpoint { origin: "example.com/log".into(), size: tree.size(),
//!     root: tree.root(), extensions: vec![] };
//! let note = checkpoint.sign(&[&signer])?;
//! let (opened, _) = open_checkpoint(note.as_bytes(), &[signer.verifier()])?;
//! let proof = inclusion_proof(&tree, 3, opened.size)?;
//! verify_inclusion(&leaf_hash(&[3; 32]), 3, opened.size, &proof, &opened.root)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Unsafe code
//! One call: the tree hashes a tile's independent inputs two at a time, and
//! on an x86-64 CPU with the SHA extension the two compressions run
//! interleaved in a function compiled for that extension, called only after
//! the running CPU was seen to have it (about 1.4x the tree build on one core
//! of the machine in `docs/BENCHMARKS.md`). The function is otherwise safe
//! code, tested against `sha2` on random input; other CPUs, other
//! architectures and Miri take two plain compressions.
//!
//! # Features
//! - `json`: [`proof_file`], the JSON inclusion and consistency proof files
//!   of the `calybris` command line (serde, serde_json).
#![cfg_attr(docsrs, feature(doc_cfg))]
// `unsafe` is denied but for one call: `sha256x2` runs two SHA-256 streams at
// once with the CPU's SHA extension after seeing it is there.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod checkpoint;
pub mod fuzzing;
pub mod merkle;
pub mod note;
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub mod proof_file;
mod sha256x2;
pub mod tiles;

use std::path::Path;

pub use checkpoint::{Checkpoint, CheckpointError, WitnessError, open_checkpoint, witness_cosign};
pub use merkle::{
    Hash, HashSource, MemoryTree, ProofError, RightEdge, consistency_proof, empty_root,
    inclusion_proof, leaf_hash, node_hash, tree_hash, verify_consistency, verify_inclusion,
};
pub use note::{
    Ed25519Signer, NoteError, Signer, VerifiedNote, Verifier, cosignature_line, open_note,
    sign_note,
};
pub use tiles::{FsTiles, MemTiles, TileError, TileStorage, TileStore, TileWriter, tile_path};

use calybris_wal::storage::{Directory, FsDirectory};
use calybris_wal::{FrameSource as _, LogFrames, Recovery, SegmentedFrames, WalError, WalKey};
use tiles::TILE_WIDTH;

/// Why a log's tree cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The log cannot be read or does not verify.
    #[error("log: {0}")]
    Log(#[from] WalError),
    /// The log does not verify to a clean end.
    #[error("the log does not verify cleanly: {0:?}")]
    NotClean(Box<Recovery>),
    /// The first record is not sequence 0, or sequences skip.
    #[error("record {found} where leaf {expected} was expected")]
    Sequence {
        /// The leaf index expected.
        expected: u64,
        /// The sequence found.
        found: u64,
    },
    /// The log's first record is not sequence 0: its first segments were
    /// retired (calybris-wal retention). Leaf `n` is sequence `n`, so the tree
    /// needs the log from its start; build it before retiring segments.
    #[error(
        "the log starts at sequence {first_sequence}: its first segments were retired, and the tree needs every record from 0"
    )]
    Retired {
        /// The first sequence in the log.
        first_sequence: u64,
    },
    /// A record below the tree a writer resumed from has another leaf than the
    /// one stored in the tiles: the log was changed under its tree head.
    #[error("record {sequence} differs from the leaf stored in the tiles")]
    Rewritten {
        /// The record.
        sequence: u64,
    },
    /// The log holds fewer records than the tree a writer resumed from.
    #[error("the log holds {records} records, fewer than the tree size {tree_size}")]
    Shorter {
        /// Records in the log.
        records: u64,
        /// The resumed tree's size.
        tree_size: u64,
    },
    /// Tiles.
    #[error(transparent)]
    Tiles(#[from] TileError),
}

/// Leaf inputs handed from the log reader to the tree thread at a time by
/// [`build_from_log`]: 16,384 entry hashes (512 KiB).
pub const BUILD_BATCH_LEAVES: usize = 16_384;

/// Batches queued between the reader and the tree thread of
/// [`build_from_log`] (8 MiB at most): enough that on a loaded machine
/// neither side waits for the other's next time slice.
const BUILD_QUEUE_BATCHES: usize = 16;

/// Reads every record of the log at `log` (a segment file or directory),
/// verifying the chain, and appends each entry hash as a leaf to `writer`,
/// then writes the partial tiles. Returns the tree size and root.
///
/// The reader (which verifies the chain) and the tree run side by side: the
/// entry hashes go to a tree thread in batches of [`BUILD_BATCH_LEAVES`],
/// which hashes whole level-0 tiles on the cores left
/// ([`TileWriter::append_entry_hashes`]).
///
/// A writer that already holds leaves ([`TileWriter::resume`] from the tiles
/// of an earlier checkpoint) gets only the records after them: each earlier
/// record's leaf is compared with the leaf stored in its level-0 tile (one
/// hash per record, no tree rebuilt, no tile rewritten), so a log that was
/// changed below the earlier tree head is refused
/// ([`BuildError::Rewritten`]). The log itself is still read from its start:
/// its chain is what authenticates the records.
///
/// # Errors
/// [`BuildError`]; [`BuildError::Retired`] for a log whose first segments were
/// retired (leaf `n` is sequence `n`, so a tree needs the log from sequence 0).
pub fn build_from_log<S: TileStorage + Send>(
    log: &Path,
    key: Option<&WalKey>,
    writer: &mut TileWriter<S>,
) -> Result<(u64, Hash), BuildError> {
    let mut frames = LogFrames::open(log, key, None)?;
    let resumed = writer.size();
    let mut next = 0u64;
    let mut stored: Vec<Hash> = Vec::new();
    let check_sequence = |next: u64, found: u64| {
        if found == next {
            Ok(())
        } else if next == 0 {
            Err(BuildError::Retired {
                first_sequence: found,
            })
        } else {
            Err(BuildError::Sequence {
                expected: next,
                found,
            })
        }
    };
    // The records under the resumed tree: compared with the stored leaves.
    while next < resumed {
        let Some(frame) = frames.next_frame()? else {
            break;
        };
        check_sequence(next, frame.sequence)?;
        let in_tile = usize::try_from(next % TILE_WIDTH).unwrap_or(usize::MAX);
        if in_tile == 0 {
            stored = writer.stored_leaves(next / TILE_WIDTH)?;
        }
        if stored.get(in_tile) != Some(&leaf_hash(&frame.hash)) {
            return Err(BuildError::Rewritten { sequence: next });
        }
        next += 1;
    }
    drop(stored);
    build_suffix(&mut frames, &mut next, writer, check_sequence)?;
    match frames.scan_to_end()? {
        Recovery::Clean { .. } => {}
        other => return Err(BuildError::NotClean(Box::new(other))),
    }
    if next < resumed {
        return Err(BuildError::Shorter {
            records: next,
            tree_size: resumed,
        });
    }
    debug_assert_eq!(writer.size(), next);
    Ok(writer.checkpoint()?)
}

/// Reads the frames of `frames` from record `*next` on (checked by `check`)
/// and hands their entry hashes to a tree thread appending them to
/// `writer`, in batches of [`BUILD_BATCH_LEAVES`].
fn build_suffix<F, S>(
    frames: &mut F,
    next: &mut u64,
    writer: &mut TileWriter<S>,
    check_sequence: impl Fn(u64, u64) -> Result<(), BuildError>,
) -> Result<(), BuildError>
where
    F: calybris_wal::FrameSource,
    S: TileStorage + Send,
{
    // The records after it: read here, hashed into the tree on another thread.
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .saturating_sub(1)
        .max(1);
    let (to_tree, batches) = std::sync::mpsc::sync_channel::<Vec<Hash>>(BUILD_QUEUE_BATCHES);
    let (recycle, recycled) = std::sync::mpsc::channel::<Vec<Hash>>();
    let tree_writer = &mut *writer;
    std::thread::scope(|scope| {
        let tree = scope.spawn(move || -> Result<(), TileError> {
            for batch in batches {
                let appended = tree_writer.append_entry_hashes(&batch, workers);
                // The reader may be gone after an error of its own.
                let _ = recycle.send(batch);
                appended?;
            }
            Ok(())
        });
        let read = (|| -> Result<(), BuildError> {
            let mut batch = Vec::with_capacity(BUILD_BATCH_LEAVES);
            while let Some(frame) = frames.next_frame()? {
                check_sequence(*next, frame.sequence)?;
                batch.push(frame.hash);
                *next += 1;
                if batch.len() == BUILD_BATCH_LEAVES {
                    let mut spare = recycled
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(BUILD_BATCH_LEAVES));
                    spare.clear();
                    if to_tree.send(std::mem::replace(&mut batch, spare)).is_err() {
                        // The tree thread stopped on an error: it says which.
                        return Ok(());
                    }
                }
            }
            if !batch.is_empty() {
                let _ = to_tree.send(batch);
            }
            Ok(())
        })();
        drop(to_tree);
        let tree = tree
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        read.and(tree.map_err(BuildError::from))
    })
}

/// A segment directory seen from one segment on: the segments before it are
/// not listed, so a reader with a start anchor begins there.
#[derive(Debug)]
struct FromSegment {
    dir: FsDirectory,
    first: u64,
}

impl Directory for FromSegment {
    type Storage = <FsDirectory as Directory>::Storage;
    type Guard = <FsDirectory as Directory>::Guard;
    fn lock(&self) -> Result<Self::Guard, WalError> {
        self.dir.lock()
    }
    fn list_segments(&self) -> std::io::Result<Vec<u64>> {
        let mut segments = self.dir.list_segments()?;
        segments.retain(|first| *first >= self.first);
        Ok(segments)
    }
    fn create_segment(&self, first_sequence: u64, header: &[u8]) -> std::io::Result<Self::Storage> {
        self.dir.create_segment(first_sequence, header)
    }
    fn open_segment(&self, first_sequence: u64) -> std::io::Result<Self::Storage> {
        self.dir.open_segment(first_sequence)
    }
    fn remove_segment(&self, first_sequence: u64) -> std::io::Result<()> {
        self.dir.remove_segment(first_sequence)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.dir.sync()
    }
    fn open_ack(&self) -> std::io::Result<Option<Self::Storage>> {
        self.dir.open_ack()
    }
    fn create_ack(&self, bytes: &[u8]) -> std::io::Result<Self::Storage> {
        self.dir.create_ack(bytes)
    }
}

/// Extends a writer resumed at `link.next_sequence` leaves ([`TileWriter::resume`]
/// from the tiles of an earlier checkpoint) with the records after them of
/// the segment directory `log_dir`, reading the log only from the segment
/// that holds the link on: `link.head_hash` is the entry hash of the last
/// record under the resumed tree (kept beside the checkpoint).
///
/// The link is checked first: its leaf must be the one stored in the tiles
/// and prove into the writer's root (an inclusion proof from the tiles), so a
/// caller that checked the writer's root against a signed checkpoint knows
/// every record under it. The reader then verifies the chain from the
/// link's segment and requires it to pass through the link (the
/// `calybris-wal` start anchor): a record below it that was changed would
/// change every entry hash after it, the link's included. Only the suffix and
/// the link's segment are read. A writer of size 0 (link
/// [`WalAnchor::GENESIS`](calybris_wal::WalAnchor::GENESIS)) reads the whole
/// log. Returns the tree size and root, as [`build_from_log`], and the link of
/// the new size (the position after the last record), to keep for the next
/// call.
///
/// # Errors
/// [`BuildError::Rewritten`] when the link's leaf is not the stored one or
/// does not prove into the root; [`BuildError::Log`] when the chain does not
/// pass through the link or does not verify; [`BuildError::Shorter`],
/// [`BuildError::NotClean`], [`BuildError::Tiles`].
pub fn extend_from_log_dir(
    log_dir: &Path,
    key: Option<&WalKey>,
    writer: &mut TileWriter<FsTiles>,
    link: calybris_wal::WalAnchor,
) -> Result<(u64, Hash, calybris_wal::WalAnchor), BuildError> {
    let size = writer.size();
    if link.next_sequence != size {
        return Err(BuildError::Shorter {
            records: link.next_sequence,
            tree_size: size,
        });
    }
    let dir = FsDirectory::new(log_dir).map_err(WalError::Io)?;
    if size == 0 {
        let mut frames = SegmentedFrames::new(dir, key, None)?;
        let mut next = 0;
        build_suffix(&mut frames, &mut next, writer, |next, found| {
            if found == next {
                Ok(())
            } else if next == 0 {
                Err(BuildError::Retired {
                    first_sequence: found,
                })
            } else {
                Err(BuildError::Sequence {
                    expected: next,
                    found,
                })
            }
        })?;
        return finish_linked(&mut frames, writer);
    }
    let last = size - 1;
    let leaf = leaf_hash(&link.head_hash);
    let stored = writer.stored_leaves(last / TILE_WIDTH)?;
    let in_tile = usize::try_from(last % TILE_WIDTH).unwrap_or(usize::MAX);
    let proves = {
        let tiles =
            TileStore::with_cache_capacity(writer.storage(), size, 8).map_err(TileError::from)?;
        inclusion_proof(&tiles, last, size)
            .and_then(|proof| verify_inclusion(&leaf, last, size, &proof, &writer.root()))
            .is_ok()
    };
    if stored.get(in_tile) != Some(&leaf) || !proves {
        return Err(BuildError::Rewritten { sequence: last });
    }
    // The segment holding record `size - 1` or, when a segment starts at
    // `size`, that one (its header names the link as its previous hash).
    let first = dir
        .list_segments()
        .map_err(WalError::Io)?
        .into_iter()
        .filter(|first| *first <= size)
        .max()
        .unwrap_or(0);
    let mut frames =
        SegmentedFrames::new(FromSegment { dir, first }, key, None)?.with_start_anchor(Some(link));
    let mut next = first;
    // The link's segment up to the link: chain-verified, not in the tree.
    while next < size {
        let Some(frame) = frames.next_frame()? else {
            break;
        };
        if frame.sequence != next {
            return Err(BuildError::Sequence {
                expected: next,
                found: frame.sequence,
            });
        }
        next += 1;
    }
    if next < size {
        return Err(BuildError::Shorter {
            records: next,
            tree_size: size,
        });
    }
    // (A segment that starts at the link has its header checked against it
    // by the reader, as the first frame is read.)
    if next > first && frames.position() != link {
        return Err(BuildError::Rewritten { sequence: last });
    }
    build_suffix(&mut frames, &mut next, writer, |next, found| {
        if found == next {
            Ok(())
        } else {
            Err(BuildError::Sequence {
                expected: next,
                found,
            })
        }
    })?;
    debug_assert_eq!(writer.size(), next);
    finish_linked(&mut frames, writer)
}

/// The end of [`extend_from_log_dir`]: the log must end cleanly; the
/// partial tiles are written.
fn finish_linked<D: Directory>(
    frames: &mut SegmentedFrames<D>,
    writer: &mut TileWriter<FsTiles>,
) -> Result<(u64, Hash, calybris_wal::WalAnchor), BuildError> {
    match frames.scan_to_end()? {
        Recovery::Clean { .. } => {}
        other => return Err(BuildError::NotClean(Box::new(other))),
    }
    let position = frames.position();
    let (size, root) = writer.checkpoint()?;
    debug_assert_eq!(position.next_sequence, size);
    Ok((size, root, position))
}
