//! Checkpoint records (record code 17, issue 13): the gate log says which
//! tree head it signed, so an auditor sees every published checkpoint in
//! order and `verify_dir` checks each one against the records before it.
//!
//! The tree is the RFC 6962 tree of `calybris-tlog` over the log's records
//! (leaf `n` = SHA-256(0x00 || entry hash of record `n`)). A checkpoint record
//! at sequence `s` covers exactly the records `[0, s)`: the gate appends it
//! while no other record can be appended, so its `tree_size` is its own
//! sequence number. The gate keeps only the tree's right edge (O(log n)
//! memory); taking a checkpoint signs one note (tens of microseconds), every
//! `N` records or `T` milliseconds of the gate's clock, on the path of the
//! record that makes it due, or whenever [`Gate::checkpoint`] is called (for
//! instance from a background thread, to keep signing off decisions' path).
//!
//! A log whose first segments were retired cannot have checkpoints taken: leaf
//! `n` is sequence `n`, so the tree needs every record from sequence 0
//! ([`GateError::CheckpointsNeedWholeLog`]); `verify_dir` skips the checkpoint
//! check for such a log.
//!
//! [`Gate::checkpoint`]: crate::Gate::checkpoint

use std::sync::Arc;

use calybris_tlog::{Checkpoint, Hash, RightEdge, Signer, leaf_hash};
use serde::{Deserialize, Serialize};

use crate::GateError;
use crate::record::GateRecord;

/// Largest signed note a checkpoint record holds, in bytes: a checkpoint with
/// a few signatures is a few hundred bytes.
pub const MAX_CHECKPOINT_NOTE_BYTES: usize = 4096;

/// A tree head the gate signed, logged (record code 17).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Records covered: every record before this one (its own sequence).
    pub tree_size: u64,
    /// The RFC 6962 root over those records.
    pub root: Hash,
    /// The C2SP signed checkpoint note over `tree_size` and `root`, at most
    /// [`MAX_CHECKPOINT_NOTE_BYTES`].
    pub note: String,
}

impl CheckpointRecord {
    /// Whether the note is within its bound, so the record is as the gate
    /// writes it.
    #[must_use]
    pub fn within_bounds(&self) -> bool {
        self.note.len() <= MAX_CHECKPOINT_NOTE_BYTES
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
}

impl std::fmt::Debug for CheckpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointConfig")
            .field("origin", &self.origin)
            .field("signer", &self.signer.name())
            .field("every_records", &self.every_records)
            .field("every_ms", &self.every_ms)
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
        }
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

/// The gate's side: the right edge of the tree over every record appended,
/// and when the last checkpoint was taken.
#[derive(Debug)]
pub(crate) struct TreeState {
    config: CheckpointConfig,
    edge: RightEdge,
    last_size: u64,
    last_at_ms: u64,
}

impl TreeState {
    /// The tree of a log from sequence 0; `edge` covers its records so far.
    pub(crate) fn new(config: CheckpointConfig, edge: RightEdge, now_ms: u64) -> Self {
        let last_size = edge.size();
        Self {
            config,
            edge,
            last_size,
            last_at_ms: now_ms,
        }
    }

    /// Leaves so far (the next record's sequence).
    pub(crate) fn size(&self) -> u64 {
        self.edge.size()
    }

    /// Adds the record just appended, whose entry hash is `hash`.
    pub(crate) fn appended(&mut self, sequence: u64, hash: &Hash) -> Result<(), GateError> {
        debug_assert_eq!(sequence, self.edge.size(), "the tree follows the log");
        if sequence != self.edge.size() {
            return Err(GateError::CheckpointFailed {
                detail: format!(
                    "record {sequence} appended where leaf {} was expected",
                    self.edge.size()
                ),
            });
        }
        self.edge
            .append(leaf_hash(hash))
            .map_err(|e| GateError::CheckpointFailed {
                detail: e.to_string(),
            })
    }

    /// Whether the schedule asks for a checkpoint now.
    pub(crate) fn due(&self, now_ms: u64) -> bool {
        let by_records = self
            .config
            .every_records
            .is_some_and(|n| self.edge.size() - self.last_size >= n);
        let by_time = self
            .config
            .every_ms
            .is_some_and(|ms| now_ms.saturating_sub(self.last_at_ms) >= ms);
        (by_records || by_time) && self.edge.size() > self.last_size
    }

    /// The signed checkpoint record of the tree so far.
    pub(crate) fn record(&self) -> Result<GateRecord, GateError> {
        let failed = |detail: String| GateError::CheckpointFailed { detail };
        let checkpoint = Checkpoint {
            origin: self.config.origin.clone(),
            size: self.edge.size(),
            root: self.edge.root(),
            extensions: vec![],
        };
        let signer: &dyn Signer = self.config.signer.as_ref();
        let note = checkpoint
            .sign(&[signer])
            .map_err(|e| failed(e.to_string()))?;
        if note.len() > MAX_CHECKPOINT_NOTE_BYTES {
            return Err(failed(format!(
                "a note of {} bytes exceeds {MAX_CHECKPOINT_NOTE_BYTES}",
                note.len()
            )));
        }
        Ok(GateRecord::Checkpoint(CheckpointRecord {
            tree_size: checkpoint.size,
            root: checkpoint.root,
            note,
        }))
    }

    /// Marks a checkpoint of the current size as taken at `now_ms`.
    pub(crate) fn taken(&mut self, size: u64, now_ms: u64) {
        self.last_size = size;
        self.last_at_ms = now_ms;
    }
}

/// Why a checkpoint record does not match the log before it.
pub(crate) fn check_record(
    record: &CheckpointRecord,
    sequence: u64,
    edge: &RightEdge,
) -> Result<(), String> {
    if !record.within_bounds() {
        return Err(format!(
            "a note of {} bytes exceeds {MAX_CHECKPOINT_NOTE_BYTES}",
            record.note.len()
        ));
    }
    if record.tree_size != sequence || edge.size() != sequence {
        return Err(format!(
            "tree size {} for a record at sequence {sequence}",
            record.tree_size
        ));
    }
    if record.root != edge.root() {
        return Err("the root is not the tree of the records before it".to_owned());
    }
    let (text, _) = calybris_tlog::note::parse_note(record.note.as_bytes())
        .map_err(|e| format!("the note: {e}"))?;
    let signed = Checkpoint::parse(&text).map_err(|e| format!("the note's checkpoint: {e}"))?;
    if signed.size != record.tree_size || signed.root != record.root {
        return Err("the note signs another tree head than the record says".to_owned());
    }
    Ok(())
}
