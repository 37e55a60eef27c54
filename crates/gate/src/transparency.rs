//! Checkpoint records (record code 17, issue 13): the gate log says which
//! tree head it signed, so an auditor sees every published checkpoint in
//! order and `verify_dir` checks each one against the records before it.
//!
//! The tree is the RFC 6962 tree of `calybris-tlog` over the log's records
//! (leaf `n` = SHA-256(0x00 || entry hash of record `n`)). A checkpoint record
//! states exactly which tree head it signed: `tree_size` records `[0,
//! tree_size)` with root `root`, at or before its own sequence `s`; when
//! `tree_size < s` it carries the RFC 9162 consistency proof from that tree to
//! the tree of the records `[0, s)` before it, so a verifier holding only the
//! right edge at `s` checks the signed head.
//!
//! Scheduled checkpoints (every `N` records or `T` milliseconds of the gate's
//! clock) are signed off the decisions' path: the record that makes one due
//! hands the tree head (a copy of the right edge, 24 hashes at 10^7 records)
//! to a background signer thread and goes on; the thread computes the root,
//! signs the note, and appends the checkpoint record with its proof when
//! ready. While one is being signed the gate keeps the leaves appended since
//! its tree head (at most [`MAX_CHECKPOINT_LAG_RECORDS`]; a signer slower than
//! that gives up the head and the next record makes a checkpoint due again).
//! [`Gate::checkpoint`] signs on the caller's thread and logs a record with
//! `tree_size` equal to its own sequence; so does [`Gate::close`], for a
//! checkpoint still being signed. The gate keeps only the tree's right edge
//! (O(log n) memory).
//!
//! A log whose first segments were retired cannot have checkpoints taken: leaf
//! `n` is sequence `n`, so the tree needs every record from sequence 0
//! ([`GateError::CheckpointsNeedWholeLog`]); `verify_dir` skips the checkpoint
//! check for such a log.
//!
//! [`Gate::checkpoint`]: crate::Gate::checkpoint
//! [`Gate::close`]: crate::Gate::close

use std::sync::{Arc, mpsc};

use parking_lot::Mutex;

use calybris_tlog::merkle::{MAX_CONSISTENCY_HASHES, range_hash, tree_hash};
use calybris_tlog::{
    Checkpoint, Hash, HashSource, ProofError, RightEdge, Signer, consistency_proof,
    verify_consistency,
};
use serde::{Deserialize, Serialize};

use crate::GateError;
use crate::record::GateRecord;

/// Largest signed note a checkpoint record holds, in bytes: a checkpoint with
/// a few signatures is a few hundred bytes.
pub const MAX_CHECKPOINT_NOTE_BYTES: usize = 4096;

/// Records a background signer may fall behind the tree head it signs: the
/// gate keeps the leaf hash of each record appended meanwhile (32 bytes
/// each, 2 MiB at most) for the record's consistency proof.
pub const MAX_CHECKPOINT_LAG_RECORDS: usize = 65_536;

/// A tree head the gate signed, logged (record code 17).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Records covered: the records `[0, tree_size)`, at or before this
    /// record's own sequence.
    pub tree_size: u64,
    /// The RFC 6962 root over those records.
    pub root: Hash,
    /// The C2SP signed checkpoint note over `tree_size` and `root`, at most
    /// [`MAX_CHECKPOINT_NOTE_BYTES`].
    pub note: String,
    /// The RFC 9162 consistency proof from the tree of `tree_size` records to
    /// the tree of every record before this one (empty when `tree_size` is
    /// this record's sequence), at most `MAX_CONSISTENCY_HASHES` hashes.
    pub proof: Vec<Hash>,
}

impl CheckpointRecord {
    /// Whether the note and the proof are within their bounds, so the record
    /// is as the gate writes it.
    #[must_use]
    pub fn within_bounds(&self) -> bool {
        self.note.len() <= MAX_CHECKPOINT_NOTE_BYTES && self.proof.len() <= MAX_CONSISTENCY_HASHES
    }
}

/// When and how the gate takes checkpoints (off unless configured with
/// [`GateConfig::checkpoints`]).
///
/// [`GateConfig::checkpoints`]: crate::GateConfig::checkpoints
#[derive(Clone)]
pub struct CheckpointConfig {
    origin: String,
    signer: Arc<dyn Signer + Send + Sync>,
    every_records: Option<u64>,
    every_ms: Option<u64>,
    inline: bool,
}

impl std::fmt::Debug for CheckpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointConfig")
            .field("origin", &self.origin)
            .field("signer", &self.signer.name())
            .field("every_records", &self.every_records)
            .field("every_ms", &self.every_ms)
            .field("inline", &self.inline)
            .finish()
    }
}

impl CheckpointConfig {
    /// Checkpoints with `origin` as their first line, signed by `signer` (an
    /// `Ed25519Signer`, or a KMS behind the `Signer` trait); taken only on
    /// [`Gate::checkpoint`] until a schedule is set.
    ///
    /// [`Gate::checkpoint`]: crate::Gate::checkpoint
    #[must_use]
    pub fn new(origin: impl Into<String>, signer: Arc<dyn Signer + Send + Sync>) -> Self {
        Self {
            origin: origin.into(),
            signer,
            every_records: None,
            every_ms: None,
            inline: false,
        }
    }

    /// Scheduled checkpoints signed on the appending thread instead of the
    /// background signer: the record that makes one due waits for the
    /// signature, and every checkpoint record covers exactly the records
    /// before it (`tree_size` is its own sequence), at the exact place the
    /// schedule gives, whatever the signer's speed. For logs that must come
    /// out the same on every run (tests, replays); off by default.
    #[must_use]
    pub fn inline_signing(mut self, inline: bool) -> Self {
        self.inline = inline;
        self
    }

    /// A checkpoint once `records` records (at least 1) were appended since the
    /// last one.
    #[must_use]
    pub fn every_records(mut self, records: u64) -> Self {
        self.every_records = Some(records.max(1));
        self
    }

    /// A checkpoint once `ms` milliseconds of the gate's clock passed since
    /// the last one (checked when a record is appended).
    #[must_use]
    pub fn every_ms(mut self, ms: u64) -> Self {
        self.every_ms = Some(ms);
        self
    }
}

/// What the signer thread hands back for the head of a size: its root and
/// note, or why it could not sign.
pub(crate) type Signed = Result<(Hash, String), GateError>;

/// The background signer of scheduled checkpoints: a thread fed tree heads
/// over a channel, which signs each and hands the note to `land` (the gate
/// appends the record). Without a running thread, checkpoints are signed on
/// the appending thread.
#[derive(Debug, Default)]
pub(crate) struct SignerHandle {
    jobs: Mutex<Option<mpsc::Sender<SignJob>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SignerHandle {
    /// Starts the thread; `land` returns `false` when the gate is gone, which
    /// ends it. A thread that cannot be spawned leaves signing inline.
    pub(crate) fn start(
        &self,
        config: CheckpointConfig,
        mut land: impl FnMut(u64, Signed) -> bool + Send + 'static,
    ) {
        let (to_thread, jobs) = mpsc::channel::<SignJob>();
        let spawned = std::thread::Builder::new()
            .name("calybris-checkpoint-signer".to_owned())
            .spawn(move || {
                while let Ok(job) = jobs.recv() {
                    // A signer (a KMS client, say) that panics fails this
                    // checkpoint, not the thread.
                    let signed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let root = job.edge.root();
                        sign_head(&config, job.size, root).map(|note| (root, note))
                    }))
                    .unwrap_or_else(|_| {
                        Err(GateError::CheckpointFailed {
                            detail: "the signer panicked".to_owned(),
                        })
                    });
                    if !land(job.size, signed) {
                        return;
                    }
                }
            });
        if let Ok(thread) = spawned {
            *self.jobs.lock() = Some(to_thread);
            *self.thread.lock() = Some(thread);
        }
    }

    /// Hands the tree head to the thread; `false` (nothing in flight) when
    /// there is no thread, so the caller signs it.
    pub(crate) fn submit(&self, tree: &mut TreeState, now_ms: u64) -> bool {
        let jobs = self.jobs.lock();
        let Some(to_thread) = jobs.as_ref() else {
            return false;
        };
        if to_thread.send(tree.start(now_ms)).is_ok() {
            true
        } else {
            let _given_up = tree.abandon();
            false
        }
    }

    /// Stops the thread after the head it holds, if any, was landed.
    pub(crate) fn stop(&self) {
        drop(self.jobs.lock().take());
        if let Some(thread) = self.thread.lock().take() {
            // A panic outside the signer call is the thread's own; the gate
            // goes on signing inline.
            let _joined = thread.join();
        }
    }
}

/// A tree head handed to the background signer: its size and right edge.
#[derive(Debug)]
pub(crate) struct SignJob {
    /// The tree size signed.
    pub(crate) size: u64,
    /// The tree's right edge at that size (the root is computed off the
    /// decisions' path, by the signer).
    pub(crate) edge: RightEdge,
}

/// A tree head being signed by the background signer, and what the gate
/// keeps meanwhile for the consistency proof of its record.
#[derive(Debug)]
struct InFlight {
    /// The right edge of the head being signed.
    edge: RightEdge,
    /// The leaf hash of every record appended since the head.
    leaves: Vec<Hash>,
    /// The schedule's last checkpoint before this one, put back if signing
    /// fails so the checkpoint stays due.
    previous: (u64, u64),
}

/// The subtree hashes a consistency proof from an in-flight head to the
/// current tree needs: the head's own complete subtrees (its right edge) and
/// the leaves appended since it.
struct InFlightSource<'a> {
    old: &'a RightEdge,
    leaves: &'a [Hash],
}

impl HashSource for InFlightSource<'_> {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        let unavailable = |detail: &str| ProofError::HashUnavailable {
            level,
            index,
            detail: detail.to_owned(),
        };
        let width = 1u64
            .checked_shl(u32::from(level))
            .ok_or_else(|| unavailable("level out of range"))?;
        let start = index
            .checked_mul(width)
            .ok_or_else(|| unavailable("index out of range"))?;
        let old_size = self.old.size();
        if start >= old_size {
            let from = usize::try_from(start - old_size).unwrap_or(usize::MAX);
            let to = usize::try_from(start - old_size + width).unwrap_or(usize::MAX);
            return self
                .leaves
                .get(from..to)
                .map(tree_hash)
                .ok_or_else(|| unavailable("beyond the leaves kept"));
        }
        // One of the old tree's complete subtrees, largest first in its edge.
        let mut at = 0u64;
        for (bit, hash) in (0..64u8)
            .rev()
            .filter(|bit| old_size & (1 << bit) != 0)
            .zip(self.old.edge())
        {
            if at == start && bit == level {
                return Ok(*hash);
            }
            at += 1 << bit;
        }
        Err(unavailable("not a complete subtree of the signed tree"))
    }

    fn range(&self, lo: u64, hi: u64) -> Result<Hash, ProofError> {
        range_hash(self, lo, hi)
    }
}

/// The gate's side: the right edge of the tree over every record appended,
/// when the last checkpoint was taken, and the head being signed, if any.
#[derive(Debug)]
pub(crate) struct TreeState {
    config: CheckpointConfig,
    edge: RightEdge,
    /// Entry hashes of the records appended since the edge was last brought
    /// up to date, at most [`FOLD_RECORDS`]: folded into it a run at a time
    /// (leaf hashes two at a time, a whole tile as one subtree), and before
    /// anything reads the edge.
    pending: Vec<Hash>,
    /// Scratch for the folded leaves.
    folded: Vec<Hash>,
    last_size: u64,
    last_at_ms: u64,
    in_flight: Option<InFlight>,
}

/// Records whose leaves wait before they join the tree: one tile.
const FOLD_RECORDS: usize = 256;

impl TreeState {
    /// The tree of a log from sequence 0; `edge` covers its records so far.
    pub(crate) fn new(config: CheckpointConfig, edge: RightEdge, now_ms: u64) -> Self {
        let last_size = edge.size();
        Self {
            config,
            edge,
            pending: Vec::with_capacity(FOLD_RECORDS),
            folded: Vec::with_capacity(FOLD_RECORDS),
            last_size,
            last_at_ms: now_ms,
            in_flight: None,
        }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    /// Whether a schedule is set to be signed in the background (so a
    /// background signer has work).
    pub(crate) fn scheduled(config: &CheckpointConfig) -> bool {
        !config.inline && (config.every_records.is_some() || config.every_ms.is_some())
    }

    /// Leaves so far (the next record's sequence).
    pub(crate) fn size(&self) -> u64 {
        self.edge.size() + self.pending.len() as u64
    }

    /// Adds the record just appended, whose entry hash is `hash`.
    pub(crate) fn appended(&mut self, sequence: u64, hash: &Hash) -> Result<(), GateError> {
        debug_assert_eq!(sequence, self.size(), "the tree follows the log");
        if sequence != self.size() {
            return Err(GateError::CheckpointFailed {
                detail: format!(
                    "record {sequence} appended where leaf {} was expected",
                    self.size()
                ),
            });
        }
        self.pending.push(*hash);
        if self.pending.len() >= FOLD_RECORDS {
            self.fold()?;
        }
        Ok(())
    }

    /// Brings the edge up to date with every record appended (and the
    /// in-flight head's leaves with it). Everything that reads the edge
    /// calls it first.
    pub(crate) fn fold(&mut self) -> Result<(), GateError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let size = self.size();
        self.folded.clear();
        self.edge
            .append_entry_hashes(&self.pending, &mut self.folded)
            .map_err(|e| GateError::CheckpointFailed {
                detail: e.to_string(),
            })?;
        self.pending.clear();
        if let Some(in_flight) = &mut self.in_flight {
            if in_flight.leaves.len() + self.folded.len() <= MAX_CHECKPOINT_LAG_RECORDS {
                in_flight.leaves.extend_from_slice(&self.folded);
            } else {
                // The signer fell too far behind: give the head up; its
                // signature is dropped when it arrives, and the checkpoint is
                // due again.
                let (size, at) = in_flight.previous;
                self.last_size = size;
                self.last_at_ms = at;
                self.in_flight = None;
            }
        }
        debug_assert_eq!(self.edge.size(), size);
        Ok(())
    }

    /// Whether a schedule is set at all: without one, no append can make a
    /// checkpoint due, and the appending thread skips the check.
    pub(crate) fn schedule_may_be_due(&self) -> bool {
        self.config.every_records.is_some() || self.config.every_ms.is_some()
    }

    /// Whether the schedule counts time (so `due` needs the clock's reading).
    pub(crate) fn uses_clock(&self) -> bool {
        self.config.every_ms.is_some()
    }

    /// Whether the schedule asks for a checkpoint now (none being signed).
    pub(crate) fn due(&self, now_ms: u64) -> bool {
        let by_records = self
            .config
            .every_records
            .is_some_and(|n| self.size() - self.last_size >= n);
        let by_time = self
            .config
            .every_ms
            .is_some_and(|ms| now_ms.saturating_sub(self.last_at_ms) >= ms);
        (by_records || by_time) && self.size() > self.last_size && self.in_flight.is_none()
    }

    /// Hands the current tree head to the background signer: it is in flight
    /// from now on, and the schedule counts from it.
    pub(crate) fn start(&mut self, now_ms: u64) -> SignJob {
        debug_assert!(self.in_flight.is_none());
        debug_assert!(self.pending.is_empty(), "folded before a head is taken");
        let size = self.edge.size();
        self.in_flight = Some(InFlight {
            edge: self.edge.clone(),
            leaves: Vec::new(),
            previous: (self.last_size, self.last_at_ms),
        });
        self.last_size = size;
        self.last_at_ms = now_ms;
        SignJob {
            size,
            edge: self.edge.clone(),
        }
    }

    /// The in-flight head given up (the gate closes, or its signer is gone):
    /// the schedule's previous checkpoint is restored. Returns whether one
    /// was in flight.
    pub(crate) fn abandon(&mut self) -> bool {
        match self.in_flight.take() {
            Some(in_flight) => {
                (self.last_size, self.last_at_ms) = in_flight.previous;
                true
            }
            None => false,
        }
    }

    /// The checkpoint record of the in-flight head of `size`, signed as
    /// `note` over `root`, with its consistency proof to the tree so far;
    /// `None` when that head is no longer in flight (given up, or the gate
    /// closed). A failed signature gives the head up and leaves the
    /// checkpoint due.
    pub(crate) fn finish(
        &mut self,
        size: u64,
        signed: Result<(Hash, String), GateError>,
    ) -> Option<Result<GateRecord, GateError>> {
        if self.in_flight.as_ref()?.edge.size() != size {
            return None;
        }
        if let Err(error) = self.fold() {
            return Some(Err(error));
        }
        // Folding may have given the head up (the signer fell too far behind).
        self.in_flight.as_ref()?;
        let in_flight = self.in_flight.take()?;
        let (root, note) = match signed {
            Ok(signed) => signed,
            Err(error) => {
                (self.last_size, self.last_at_ms) = in_flight.previous;
                return Some(Err(error));
            }
        };
        debug_assert_eq!(size + in_flight.leaves.len() as u64, self.edge.size());
        let source = InFlightSource {
            old: &in_flight.edge,
            leaves: &in_flight.leaves,
        };
        let proof = match consistency_proof(&source, size, self.edge.size()) {
            Ok(proof) => proof,
            Err(error) => {
                return Some(Err(GateError::CheckpointFailed {
                    detail: format!("the consistency proof: {error}"),
                }));
            }
        };
        debug_assert!(
            verify_consistency(size, self.edge.size(), &root, &self.edge.root(), &proof).is_ok()
        );
        Some(Ok(GateRecord::Checkpoint(CheckpointRecord {
            tree_size: size,
            root,
            note,
            proof,
        })))
    }

    /// The signed checkpoint record of the tree so far, signed on the
    /// caller's thread.
    pub(crate) fn record(&mut self) -> Result<GateRecord, GateError> {
        self.fold()?;
        let root = self.edge.root();
        let note = sign_head(&self.config, self.edge.size(), root)?;
        Ok(GateRecord::Checkpoint(CheckpointRecord {
            tree_size: self.edge.size(),
            root,
            note,
            proof: Vec::new(),
        }))
    }

    /// Marks a checkpoint of the current size as taken at `now_ms`.
    pub(crate) fn taken(&mut self, size: u64, now_ms: u64) {
        self.last_size = size;
        self.last_at_ms = now_ms;
    }
}

/// The signed checkpoint note of the tree head (`size`, `root`).
pub(crate) fn sign_head(
    config: &CheckpointConfig,
    size: u64,
    root: Hash,
) -> Result<String, GateError> {
    let failed = |detail: String| GateError::CheckpointFailed { detail };
    let checkpoint = Checkpoint {
        origin: config.origin.clone(),
        size,
        root,
        extensions: vec![],
    };
    let signer: &dyn Signer = config.signer.as_ref();
    let note = checkpoint
        .sign(&[signer])
        .map_err(|e| failed(e.to_string()))?;
    if note.len() > MAX_CHECKPOINT_NOTE_BYTES {
        return Err(failed(format!(
            "a note of {} bytes exceeds {MAX_CHECKPOINT_NOTE_BYTES}",
            note.len()
        )));
    }
    Ok(note)
}

/// The right edge of the tree of the first `records` records of the log in
/// `log_dir`, read again and chain-verified (the verifier builds it when it
/// meets the first checkpoint record, so a log without any never hashes a
/// tree); the last record read must have entry hash `last_hash`, the one the
/// first read saw, so both reads are of the same log.
pub(crate) fn edge_before(
    log_dir: &std::path::Path,
    key: Option<&calybris_wal::WalKey>,
    records: u64,
    last_hash: &Hash,
) -> Result<RightEdge, String> {
    use calybris_wal::FrameSource as _;
    let mut edge = RightEdge::new();
    if records == 0 {
        return Ok(edge);
    }
    let mut frames =
        calybris_wal::LogFrames::open(log_dir, key, None).map_err(|e| format!("the log: {e}"))?;
    let mut hash = None;
    while edge.size() < records {
        let frame = frames
            .next_frame()
            .map_err(|e| format!("reading the log again: {e}"))?
            .ok_or_else(|| format!("the log ends before record {}", edge.size()))?;
        if frame.sequence != edge.size() {
            return Err(format!(
                "record {} where leaf {} was expected",
                frame.sequence,
                edge.size()
            ));
        }
        edge.append(calybris_tlog::merkle::leaf_hash_32(&frame.hash))
            .map_err(|e| e.to_string())?;
        hash = Some(frame.hash);
    }
    if hash.as_ref() != Some(last_hash) {
        return Err("the log changed between two reads of it".to_owned());
    }
    Ok(edge)
}

/// Why a checkpoint record does not match the log before it: `edge` is the
/// tree of the records before it.
pub(crate) fn check_record(
    record: &CheckpointRecord,
    sequence: u64,
    edge: &RightEdge,
) -> Result<(), String> {
    if !record.within_bounds() {
        return Err(format!(
            "a note of {} bytes or a proof of {} hashes exceeds its bound",
            record.note.len(),
            record.proof.len()
        ));
    }
    if record.tree_size > sequence || edge.size() != sequence {
        return Err(format!(
            "tree size {} for a record at sequence {sequence}",
            record.tree_size
        ));
    }
    if record.tree_size == sequence {
        if !record.proof.is_empty() || record.root != edge.root() {
            return Err("the root is not the tree of the records before it".to_owned());
        }
    } else {
        verify_consistency(
            record.tree_size,
            sequence,
            &record.root,
            &edge.root(),
            &record.proof,
        )
        .map_err(|e| {
            format!(
                "the signed tree of {} records is not a prefix of the log: {e}",
                record.tree_size
            )
        })?;
    }
    let (text, _) = calybris_tlog::note::parse_note(record.note.as_bytes())
        .map_err(|e| format!("the note: {e}"))?;
    let signed = Checkpoint::parse(&text).map_err(|e| format!("the note's checkpoint: {e}"))?;
    if signed.size != record.tree_size || signed.root != record.root {
        return Err("the note signs another tree head than the record says".to_owned());
    }
    Ok(())
}
