//! The offline verifier of a gate directory: [`verify_dir`].

use std::path::Path;

use calybris_digest::Digest;
use calybris_finance::{ConservationProof, LedgerDigestError, prove_snapshot};
use calybris_wal::{
    AuditError, AuditReplayer, Recovery, SegmentedReader, WalAnchor, WalError, WalKey,
};

use crate::books::{Books, BooksError, TenantBooks};
use crate::gate::LOG_DIR;
use crate::names::NameMapError;
use crate::record::{BudgetOutcome, GateRecord, MAX_OUTCOME_DETAIL_BYTES, SettlementKind};

/// What [`verify_dir`] needs besides the directory.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The log's HMAC key, when it is keyed.
    pub key: Option<WalKey>,
    /// A trusted position the log must reach with the same hash (catches a cut suffix).
    pub anchor: Option<WalAnchor>,
    /// A trusted position where a retained log starts (its oldest segments were
    /// retired; see [`crate::Retention`]): the anchor the gate wrote when it retired
    /// them, kept somewhere the log's writer cannot rewrite. Without it, a log that
    /// does not start at sequence 0 is refused as `GenesisMissing`.
    pub start_anchor: Option<WalAnchor>,
    /// The holdout key, to recompute every decision's holdout assignment; without it
    /// the assignments are counted as [`RecordCounts::holdout_unchecked`].
    pub holdout_key: Option<crate::HoldoutKey>,
}

/// Counts of what a verified gate log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RecordCounts {
    /// Policy records.
    pub policies: u64,
    /// Decision records, replayed.
    pub decisions: u64,
    /// Of those, admitted (reserved or not priced).
    pub admitted: u64,
    /// Of those, selections the budget refused.
    pub refused_by_budget: u64,
    /// Of those, rejected by the kernel.
    pub rejected_by_kernel: u64,
    /// Settlement records.
    pub settlements: u64,
    /// Of those, commits through the overrun path.
    pub overruns: u64,
    /// Of those, releases at reopen.
    pub released_at_reopen: u64,
    /// Of those, holds spent in full at reopen ([`crate::ReopenHolds::CommitHeld`]).
    pub committed_at_reopen: u64,
    /// Outcome records.
    pub outcomes: u64,
    /// Book snapshots, each checked against the books rebuilt before it.
    pub snapshots: u64,
    /// Tenant, top-up and limit records.
    pub budget_changes: u64,
    /// Records of a retained log before its first book snapshot: their chain is
    /// verified, but neither replayed nor folded (the books start at the snapshot).
    pub unfolded_prefix: u64,
    /// Outcomes naming a decision before the verified range (a retained log).
    pub outcomes_unchecked: u64,
    /// Policy-names records, each checked against the policy it names.
    pub policy_names: u64,
    /// Execution records, each bound to a decision record.
    pub executions: u64,
    /// Executions naming a decision before the verified range (a retained log).
    pub executions_unchecked: u64,
    /// Requests refused for their authority lease.
    pub lease_refusals: u64,
    /// Promotion and rollback records, each checked to name recorded policies.
    pub promotions: u64,
    /// Of the execution records (checked or not), those a provider served in full
    /// ([`ExecutionStatus::Served`](crate::record::ExecutionStatus::Served)); the
    /// others failed (every provider failed, the client went away, or the executor
    /// failed).
    pub executions_served: u64,
    /// Staging records (a shadow candidate or a holdout baseline, restatements
    /// included).
    pub staged: u64,
    /// Unstaging records.
    pub unstaged: u64,
    /// Decisions held out (decided under the holdout's baseline).
    pub held_out: u64,
    /// Decisions whose holdout assignment was not recomputed (no holdout key given).
    pub holdout_unchecked: u64,
    /// Decisions whose shadow note was re-derived from the staged candidate.
    pub shadow_notes: u64,
    /// Adaptive decisions, each re-derived (regime, draw, tier, floor, propensity).
    pub adaptive_decisions: u64,
    /// Engine snapshots, each checked against the replayed engine state.
    pub engine_snapshots: u64,
    /// Engine state records (codes 22 and 23), each checked against the engine
    /// snapshot that follows it and, where the log was replayed up to it, against
    /// the replayed state.
    #[serde(default)]
    pub engine_states: u64,
    /// Adaptive decisions of a retained log before its first engine state record:
    /// their effect is in that record, so they are not re-derived.
    #[serde(default)]
    pub adaptive_unchecked: u64,
    /// Checkpoint records (code 17), each checked against the Merkle tree of
    /// the records before it (in a log from sequence 0).
    pub checkpoints: u64,
}

/// What [`verify_dir`] established.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GateReport {
    /// The position after the last record.
    pub anchor: WalAnchor,
    /// Records by kind.
    pub counts: RecordCounts,
    /// Every tenant's books at the end of the log, in ascending byte order of name.
    pub tenants: Vec<TenantBooks>,
    /// Holds still open at the end of the log.
    pub open_holds: u64,
    /// The conservation proof of the final books (amounts in microunits), bound to
    /// the number of records.
    pub conservation: ConservationProof,
    /// The replayed selections by selected model, named where the log holds the
    /// names of the deciding policy (a [`PolicyNames`](crate::record::PolicyNames)
    /// record), in ascending order of model id, then of name.
    pub selections: Vec<ModelSelections>,
}

/// How often one model was selected in a verified log, and by which names the log
/// knows it and its provider.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ModelSelections {
    /// The kernel's `model_id`.
    pub model_id: u32,
    /// The model's name in the deciding policy's names, when the log holds them.
    pub model: Option<String>,
    /// The model's `provider_id` in the deciding policy.
    pub provider_id: u16,
    /// The provider's name in the deciding policy's names, when the log holds them.
    pub provider: Option<String>,
    /// Decisions that selected the model (executed or substituted).
    pub selections: u64,
    /// The sum of their estimated costs, in microunits.
    pub estimated_cost_microunits: u128,
}

/// What one policy of the log says of a model: its provider, and their names once a
/// names record gives them.
#[derive(Debug, Clone, Default)]
struct ModelLabel {
    provider_id: u16,
    model: Option<String>,
    provider: Option<String>,
}

/// A tally key: model id, model name, provider id, provider name.
type ModelKey = (u32, Option<String>, u16, Option<String>);

/// Selections by model, named by the policy-names records seen so far: what
/// [`verify_dir`] reports as [`GateReport::selections`], for any reader that walks a
/// log record by record (feed it the policy, names and decision records in log order).
#[derive(Debug, Default)]
pub struct SelectionTally {
    labels: std::collections::HashMap<Digest, std::collections::HashMap<u32, ModelLabel>>,
    tally: std::collections::BTreeMap<ModelKey, (u64, u128)>,
}

impl SelectionTally {
    /// A policy record: its models, unnamed until a names record follows (a policy
    /// installed again without names is unnamed again, as in the gate).
    pub fn policy(&mut self, digest: Digest, policy: &calybris_digest::SealedPolicy) {
        let labels = policy
            .models()
            .iter()
            .map(|model| {
                (
                    model.model_id,
                    ModelLabel {
                        provider_id: model.provider_id,
                        ..ModelLabel::default()
                    },
                )
            })
            .collect();
        self.labels.insert(digest, labels);
    }

    /// A names record of the policy `digest` (ignored when no policy record of that
    /// digest came before it).
    pub fn names(&mut self, digest: &Digest, names: &crate::NameMap) {
        if let Some(labels) = self.labels.get_mut(digest) {
            for (model_id, label) in labels.iter_mut() {
                label.model = names.model_name(*model_id).map(str::to_owned);
                label.provider = names.provider_name(label.provider_id).map(str::to_owned);
            }
        }
    }

    /// A decision record: counted when it is a selection, under the names its policy
    /// has at this point of the log.
    pub fn decision(&mut self, record: &calybris_wal::DecisionRecord) {
        let decision = &record.decision;
        if !decision.is_selection() {
            return;
        }
        let label = self
            .labels
            .get(&record.policy_digest)
            .and_then(|labels| labels.get(&decision.selected_model_id))
            .cloned()
            .unwrap_or_default();
        let entry = self
            .tally
            .entry((
                decision.selected_model_id,
                label.model,
                label.provider_id,
                label.provider,
            ))
            .or_default();
        entry.0 += 1;
        entry.1 += u128::from(decision.estimated_cost_microunits);
    }

    /// The tally, in ascending order of model id, then of name.
    #[must_use]
    pub fn into_selections(self) -> Vec<ModelSelections> {
        self.tally
            .into_iter()
            .map(
                |((model_id, model, provider_id, provider), (selections, cost))| ModelSelections {
                    model_id,
                    model,
                    provider_id,
                    provider,
                    selections,
                    estimated_cost_microunits: cost,
                },
            )
            .collect()
    }
}

/// Why a gate directory does not verify. Every variant names the record at fault
/// where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The log could not be read (missing directory, storage error).
    #[error("log: {0}")]
    Log(WalError),
    /// The chain does not verify to a clean end (corruption, torn tail, wrong key,
    /// unknown version, unmet anchor).
    #[error("the chain does not verify: {0}")]
    Chain(Recovery),
    /// A decision or policy record does not replay (kernel decision, digests).
    #[error("{0}")]
    Replay(AuditError),
    /// A record does not fold into balanced books.
    #[error("record {sequence} (byte offset {offset_bytes}): {error}")]
    Books {
        /// The record.
        sequence: u64,
        /// Byte offset of its frame in its segment.
        offset_bytes: u64,
        /// Why.
        error: BooksError,
    },
    /// A retained log holds no book snapshot to start the books from.
    #[error("the retained log (from record {first_sequence}) holds no book snapshot")]
    NoSnapshotInSuffix {
        /// The first record of the retained log.
        first_sequence: u64,
    },
    /// An outcome names no decision record at that sequence.
    #[error("record {sequence}: outcome of decision {decision_sequence}, which is not a decision")]
    OutcomeUnknownDecision {
        /// The outcome record.
        sequence: u64,
        /// The sequence it names.
        decision_sequence: u64,
    },
    /// An outcome's decision digest is not that decision's.
    #[error("record {sequence}: outcome's decision digest is not decision {decision_sequence}'s")]
    OutcomeDigestMismatch {
        /// The outcome record.
        sequence: u64,
        /// The decision it names.
        decision_sequence: u64,
    },
    /// An outcome's detail is longer than [`MAX_OUTCOME_DETAIL_BYTES`].
    #[error("record {sequence}: outcome detail of {len_bytes} bytes is over the limit")]
    OutcomeTooLarge {
        /// The outcome record.
        sequence: u64,
        /// Its length.
        len_bytes: usize,
    },
    /// The final books cannot be digested.
    #[error("ledger digest: {0}")]
    Digest(#[from] LedgerDigestError),
    /// A policy-names record names a policy no record before it holds.
    #[error("record {sequence}: names of policy {policy_digest}, which no earlier record holds", policy_digest = calybris_digest::Hex(policy_digest.as_slice()))]
    NamesUnknownPolicy {
        /// The names record.
        sequence: u64,
        /// The digest it names.
        policy_digest: Digest,
    },
    /// A promotion record names a policy no record before it holds.
    #[error("record {sequence}: promotion names policy {policy_digest}, which no earlier record holds", policy_digest = calybris_digest::Hex(policy_digest.as_slice()))]
    PromotionUnknownPolicy {
        /// The promotion record.
        sequence: u64,
        /// The digest it names.
        policy_digest: Digest,
    },
    /// A policy-names record is not valid on its own or for its policy.
    #[error("record {sequence}: invalid policy names: {error}")]
    InvalidNames {
        /// The names record.
        sequence: u64,
        /// Why.
        error: NameMapError,
    },
    /// An execution names no decision record at that sequence.
    #[error(
        "record {sequence}: execution of decision {decision_sequence}, which is not a decision"
    )]
    ExecutionUnknownDecision {
        /// The execution record.
        sequence: u64,
        /// The sequence it names.
        decision_sequence: u64,
    },
    /// An execution's decision digest is not that decision's.
    #[error("record {sequence}: execution's decision digest is not decision {decision_sequence}'s")]
    ExecutionDigestMismatch {
        /// The execution record.
        sequence: u64,
        /// The decision it names.
        decision_sequence: u64,
    },
    /// A second shadow candidate is staged while one is.
    #[error("record {sequence}: a second shadow candidate staged while {staged} is", staged = calybris_digest::Hex(&staged.0))]
    ShadowAlreadyStaged {
        /// The record's sequence number.
        sequence: u64,
        /// Digest of the candidate staged before it.
        staged: Digest,
    },
    /// A record names a policy as staged in a role it is not staged in (an unstaging,
    /// a holdout note's baseline, a shadow note's candidate).
    #[error("record {sequence}: {policy} is not the staged {role} policy", role = role.name(), policy = calybris_digest::Hex(&policy_digest.0))]
    NotStaged {
        /// The record's sequence number.
        sequence: u64,
        /// The role.
        role: crate::StageRole,
        /// The policy it names.
        policy_digest: Digest,
    },
    /// A held-out decision was not made under the baseline its note names.
    #[error("record {sequence}: a held-out decision not made under the holdout's baseline")]
    HoldoutNotUnderBaseline {
        /// The decision's sequence number.
        sequence: u64,
    },
    /// The holdout key given is not the one that assigned the decision.
    #[error("record {sequence}: the holdout key given is not the key that assigned it")]
    HoldoutKeyMismatch {
        /// The decision's sequence number.
        sequence: u64,
    },
    /// The recomputed holdout assignment is not the recorded one.
    #[error("record {sequence}: recorded as {}, the holdout key assigns it otherwise", if *recorded { "held out" } else { "not held out" })]
    HoldoutMismatch {
        /// The decision's sequence number.
        sequence: u64,
        /// The recorded assignment.
        recorded: bool,
    },
    /// A decision made while a shadow candidate was staged carries no shadow note.
    #[error("record {sequence}: no shadow note, with {candidate} staged", candidate = calybris_digest::Hex(&candidate_digest.0))]
    ShadowNoteMissing {
        /// The decision's sequence number.
        sequence: u64,
        /// The staged candidate.
        candidate_digest: Digest,
    },
    /// The shadow note is not what the staged candidate decides on the input.
    #[error("record {sequence}: the shadow note does not re-derive from the staged candidate")]
    ShadowMismatch {
        /// The decision's sequence number.
        sequence: u64,
    },
    /// An execution or lease refusal breaks a bound (attempts, name lengths).
    #[error("record {sequence}: a {kind} record out of bounds")]
    RecordOutOfBounds {
        /// The record.
        sequence: u64,
        /// Its kind.
        kind: &'static str,
    },
    /// A checkpoint record (code 17) does not match the tree over the records
    /// before it, or its note is malformed or too large.
    #[error("record {sequence}: checkpoint does not match the log before it: {detail}")]
    CheckpointMismatch {
        /// The checkpoint record.
        sequence: u64,
        /// What does not match.
        detail: String,
    },
    /// An adaptive step does not re-derive from the log: the first decision (or
    /// snapshot, or setup) that differs.
    #[error("record {sequence}: adaptive {kind:?} mismatch: {detail}")]
    Adaptive {
        /// The record.
        sequence: u64,
        /// What differs.
        kind: crate::adaptive::AdaptiveMismatch,
        /// Logged against derived, in words.
        detail: String,
    },
}

impl VerifyError {
    /// The sequence number of the record at fault, where one is named.
    #[must_use]
    pub fn sequence(&self) -> Option<u64> {
        match self {
            Self::Log(_) | Self::Digest(_) => None,
            Self::Chain(recovery) => recovery.named_sequence(),
            Self::Replay(error) => match error {
                AuditError::DoesNotReplay { sequence, .. } => *sequence,
                AuditError::PolicyMissing { sequence, .. }
                | AuditError::PolicyDigestMismatch { sequence, .. }
                | AuditError::InputDigestMismatch { sequence, .. }
                | AuditError::DecisionDigestMismatch { sequence, .. }
                | AuditError::TooManyPolicies { sequence, .. } => Some(*sequence),
                _ => None,
            },
            Self::NoSnapshotInSuffix { first_sequence } => Some(*first_sequence),
            Self::Books { sequence, .. }
            | Self::OutcomeUnknownDecision { sequence, .. }
            | Self::OutcomeDigestMismatch { sequence, .. }
            | Self::OutcomeTooLarge { sequence, .. }
            | Self::NamesUnknownPolicy { sequence, .. }
            | Self::InvalidNames { sequence, .. }
            | Self::ExecutionUnknownDecision { sequence, .. }
            | Self::ExecutionDigestMismatch { sequence, .. }
            | Self::RecordOutOfBounds { sequence, .. }
            | Self::Adaptive { sequence, .. }
            | Self::CheckpointMismatch { sequence, .. }
            | Self::PromotionUnknownPolicy { sequence, .. }
            | Self::ShadowAlreadyStaged { sequence, .. }
            | Self::NotStaged { sequence, .. }
            | Self::HoldoutNotUnderBaseline { sequence }
            | Self::HoldoutKeyMismatch { sequence }
            | Self::HoldoutMismatch { sequence, .. }
            | Self::ShadowNoteMissing { sequence, .. }
            | Self::ShadowMismatch { sequence } => Some(*sequence),
        }
    }
}

/// Verifies a gate directory offline, from the directory alone: checks the chain to
/// a clean end, replays every decision against the policy recorded before it
/// (never trusting the writer), folds every record into the books in log order
/// (conservation after every record; every reservation covered in log order; every
/// settlement naming an open, admitted decision of its tenant, spending more than the
/// hold only through the overrun path; every book snapshot equal to the books rebuilt
/// before it), checks every outcome's binding to its decision, and proves the final
/// books balance.
///
/// Memory: one policy per distinct digest, the open holds, 40 bytes per decision
/// (to check outcome bindings), and the records read ahead: the chain is checked and
/// the records decoded on a second thread, at most a few hundred records (or a few
/// MiB of frames, plus one record) ahead of the replay.
///
/// Run it on a directory no gate is writing: a live writer's unsynced tail reads as
/// a torn tail, which fails verification.
///
/// # Errors
/// The first problem, as a [`VerifyError`].
pub fn verify_dir(dir: &Path, options: &VerifyOptions) -> Result<GateReport, VerifyError> {
    let log_dir = dir.join(LOG_DIR);
    if !log_dir.is_dir() {
        return Err(VerifyError::Log(WalError::NotFound { path: log_dir }));
    }
    let reader =
        SegmentedReader::<GateRecord>::open(&log_dir, options.key.as_ref(), options.anchor)
            .map_err(chain)?
            .with_start_anchor(options.start_anchor);
    // Two stages on two threads: the reader checks the chain, decodes the records
    // and replays the policy and decision records through the kernel (about half
    // of the work) while this thread folds the ones before them (books, bindings,
    // the adaptive engine). The fold sees the records and their replay results in
    // log order, and a refusal only after every record before it, exactly as with
    // one thread.
    std::thread::scope(|scope| {
        let (batches, ahead) = std::sync::mpsc::sync_channel(READ_AHEAD_BATCHES);
        let reading = scope.spawn(move || read_ahead(reader, &batches, ReadAheadLimits::DEFAULT));
        let mut entries = ReadAhead {
            batches: ahead,
            batch: Vec::new().into_iter(),
            last_sequence: None,
        };
        let folded = fold(&log_dir, options, &mut entries);
        // Dropping the receiver ends a reader that is still ahead (a refusal was
        // found before the log's end).
        drop(entries);
        let (reader, replayer) = match reading.join() {
            Ok(ended) => ended,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let (books, counts, tally) = folded?;
        debug_assert_eq!(replayer.decisions(), counts.decisions);
        finish(&reader, books, counts, tally)
    })
}

/// A reader's error: a refusal of the chain, or the log's own failure.
fn chain(error: WalError) -> VerifyError {
    match error {
        WalError::Refused(recovery) => VerifyError::Chain(recovery),
        other => VerifyError::Log(other),
    }
}

/// Batches the reader may be ahead of the fold (each up to [`READ_AHEAD_ENTRIES`]
/// records or [`READ_AHEAD_BYTES`] of frames, whichever comes first, plus the record
/// that crosses it): what bounds the verifier's memory beyond one record.
const READ_AHEAD_BATCHES: usize = 4;
/// Records per batch handed from the reader thread to the fold.
const READ_AHEAD_ENTRIES: usize = 256;
/// Frame bytes after which a batch is handed on early (large policy records).
const READ_AHEAD_BYTES: u64 = 1 << 20;

/// When the reader hands a batch on.
#[derive(Debug, Clone, Copy)]
struct ReadAheadLimits {
    /// Records per batch.
    entries: usize,
    /// Frame bytes after which a batch is handed on early.
    bytes: u64,
}

impl ReadAheadLimits {
    const DEFAULT: Self = Self {
        entries: READ_AHEAD_ENTRIES,
        bytes: READ_AHEAD_BYTES,
    };
}

/// A record read ahead, with the result of its replay (policy, staging and
/// decision records of the folded range; `Ok` for the others).
struct ReadEntry {
    entry: calybris_wal::Entry<GateRecord>,
    replayed: Result<(), AuditError>,
}

/// One batch: records in log order, ending with the reader's error if it met one.
type Batch = Vec<Result<ReadEntry, WalError>>;

/// The reader thread: reads and replays to the end (or to the first error, sent
/// last) and gives the reader and the replayer back.
fn read_ahead(
    mut reader: SegmentedReader<GateRecord>,
    batches: &std::sync::mpsc::SyncSender<Batch>,
    limits: ReadAheadLimits,
) -> (SegmentedReader<GateRecord>, AuditReplayer) {
    debug_assert!(limits.entries > 0, "a batch holds at least one record");
    let mut replayer = AuditReplayer::new();
    // The fold's rule (see `fold`): a log from sequence 0 is replayed from its
    // first record, a retained log from its first book snapshot.
    let mut folding: Option<bool> = None;
    let mut batch: Batch = Vec::with_capacity(limits.entries);
    let mut bytes = 0u64;
    let mut last: Option<(Option<u64>, u64)> = None;
    loop {
        let next = reader.next_entry();
        let mut done = !matches!(next, Ok(Some(_)));
        match next {
            Ok(Some(entry)) => {
                let folded = folding.get_or_insert(entry.sequence == 0);
                if !*folded && matches!(entry.record, GateRecord::BookSnapshot(_)) {
                    *folded = true;
                }
                let replayed = if *folded {
                    replay(&mut replayer, &entry)
                } else {
                    Ok(())
                };
                // Nothing after a record that does not replay is needed.
                done = replayed.is_err();
                // The previous frame's size, where both lie in one segment.
                if let Some((segment, offset)) = last
                    && segment == entry.segment
                {
                    bytes += entry.offset_bytes.saturating_sub(offset);
                }
                last = Some((entry.segment, entry.offset_bytes));
                batch.push(Ok(ReadEntry { entry, replayed }));
            }
            Ok(None) => {}
            Err(error) => batch.push(Err(error)),
        }
        debug_assert!(
            batch.len() <= limits.entries,
            "a batch is handed on when full"
        );
        if done || batch.len() >= limits.entries || bytes >= limits.bytes {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(limits.entries));
            bytes = 0;
            if (!full.is_empty() && batches.send(full).is_err()) || done {
                // The fold stopped (a refusal) or the log ended.
                return (reader, replayer);
            }
        }
    }
}

/// Replays one record of the folded range through the kernel.
fn replay(
    replayer: &mut AuditReplayer,
    entry: &calybris_wal::Entry<GateRecord>,
) -> Result<(), AuditError> {
    let (sequence, offset_bytes) = (entry.sequence, entry.offset_bytes);
    match &entry.record {
        GateRecord::Policy(record) => replayer.check_policy(sequence, offset_bytes, record),
        GateRecord::Staged(record) => replayer.check_policy(sequence, offset_bytes, &record.policy),
        GateRecord::Decision(record) => {
            replayer.check_decision(sequence, offset_bytes, &record.audit)
        }
        _ => Ok(()),
    }
}

/// The fold's side of the read-ahead: the records in log order.
struct ReadAhead {
    batches: std::sync::mpsc::Receiver<Batch>,
    batch: std::vec::IntoIter<Result<ReadEntry, WalError>>,
    /// The sequence of the last record handed to the fold.
    last_sequence: Option<u64>,
}

impl ReadAhead {
    /// The next record, the reader's error, or `None` at the end of the log.
    fn next_entry(&mut self) -> Result<Option<ReadEntry>, WalError> {
        loop {
            if let Some(next) = self.batch.next() {
                if let Ok(read) = &next {
                    // The fold sees the records in log order, each once.
                    debug_assert!(
                        self.last_sequence
                            .is_none_or(|last| last + 1 == read.entry.sequence),
                        "read ahead out of order: {:?} then {}",
                        self.last_sequence,
                        read.entry.sequence
                    );
                    self.last_sequence = Some(read.entry.sequence);
                }
                return next.map(Some);
            }
            match self.batches.recv() {
                Ok(batch) => self.batch = batch.into_iter(),
                // The reader sent its last batch and ended.
                Err(_) => return Ok(None),
            }
        }
    }
}

/// Replays and folds every record; what [`verify_dir`] proves at the end.
fn fold(
    log_dir: &Path,
    options: &VerifyOptions,
    reader: &mut ReadAhead,
) -> Result<(Books, RecordCounts, SelectionTally), VerifyError> {
    let mut books = Books::new();
    let mut counts = RecordCounts::default();
    // A retained log (one that starts after sequence 0) is folded from its first
    // book snapshot on; a log from genesis from its first record.
    let mut folding = true;
    let mut first_sequence = None;
    // (sequence, decision digest) of every decision, ascending: outcome bindings.
    let mut decisions: Vec<(u64, Digest)> = Vec::new();
    // The policies recorded so far, by digest: what a names record is checked against
    // (as many as the replayer holds; it refuses more).
    let mut policies: std::collections::HashMap<Digest, calybris_digest::SealedPolicy> =
        std::collections::HashMap::new();
    let mut tally = SelectionTally::default();
    // The Merkle tree over the records so far (its right edge), for checkpoint
    // records. Built lazily: a log without checkpoint records never pays for it;
    // the first checkpoint record has the edge of the records before it built by
    // a second read of them (checked to end at the same entry hash), and the
    // edge follows every record after it. A log that starts after sequence 0
    // has no tree to check against.
    let mut tree: Option<calybris_tlog::RightEdge> = None;
    let mut whole_log = false;
    let mut last_hash = [0u8; 32];
    let mut stages = crate::shadow::StageCheck::default();
    let mut stage_counts = crate::shadow::StageCounts::default();
    let mut adaptive = crate::adaptive::Verifier::default();
    while let Some(ReadEntry { entry, replayed }) = reader.next_entry().map_err(chain)? {
        let (sequence, offset_bytes) = (entry.sequence, entry.offset_bytes);
        if first_sequence.is_none() {
            first_sequence = Some(sequence);
            whole_log = sequence == 0;
            folding = sequence == 0;
            adaptive.start(sequence);
        }
        if !folding {
            if let GateRecord::BookSnapshot(snapshot) = &entry.record {
                books = Books::from_snapshot(snapshot).map_err(|error| VerifyError::Books {
                    sequence,
                    offset_bytes,
                    error,
                })?;
                counts.snapshots += 1;
                folding = true;
            } else {
                counts.unfolded_prefix += 1;
            }
            continue;
        }
        match &entry.record {
            GateRecord::Policy(record) => {
                replayed.map_err(VerifyError::Replay)?;
                counts.policies += 1;
                tally.policy(record.policy_digest, &record.policy);
                policies
                    .entry(record.policy_digest)
                    .or_insert_with(|| record.policy.clone());
            }
            GateRecord::PolicyNames(record) => {
                let policy =
                    policies
                        .get(&record.policy_digest)
                        .ok_or(VerifyError::NamesUnknownPolicy {
                            sequence,
                            policy_digest: record.policy_digest,
                        })?;
                record
                    .names
                    .validate_for(policy)
                    .map_err(|error| VerifyError::InvalidNames { sequence, error })?;
                counts.policy_names += 1;
                tally.names(&record.policy_digest, &record.names);
            }
            GateRecord::Decision(record) => {
                replayed.map_err(VerifyError::Replay)?;
                counts.decisions += 1;
                tally.decision(&record.audit);
                match record.budget {
                    BudgetOutcome::RejectedByKernel => counts.rejected_by_kernel += 1,
                    outcome if outcome.is_admitted() => counts.admitted += 1,
                    _ => counts.refused_by_budget += 1,
                }
                decisions.push((sequence, record.audit.decision_digest));
                adaptive.decision(sequence, record)?;
                stages.decision(
                    sequence,
                    record,
                    options.holdout_key.as_ref(),
                    &mut stage_counts,
                )?;
            }
            GateRecord::Staged(record) => {
                replayed.map_err(VerifyError::Replay)?;
                stages.staged(sequence, record)?;
                stage_counts.staged += 1;
            }
            GateRecord::Unstaged(record) => {
                stages.unstaged(sequence, record)?;
                stage_counts.unstaged += 1;
            }
            GateRecord::Settlement(record) => {
                counts.settlements += 1;
                match record.kind {
                    SettlementKind::CommitWithOverrun { .. } => counts.overruns += 1,
                    SettlementKind::ReleasedAtReopen => counts.released_at_reopen += 1,
                    SettlementKind::CommittedAtReopen => counts.committed_at_reopen += 1,
                    _ => {}
                }
            }
            GateRecord::Outcome(record) => {
                if record.detail.len() > MAX_OUTCOME_DETAIL_BYTES {
                    return Err(VerifyError::OutcomeTooLarge {
                        sequence,
                        len_bytes: record.detail.len(),
                    });
                }
                let decision_sequence = record.decision_sequence;
                if decisions
                    .first()
                    .is_none_or(|(first, _)| decision_sequence < *first)
                    && first_sequence.is_some_and(|first| first > 0)
                {
                    // Its decision lies before the retained range.
                    counts.outcomes_unchecked += 1;
                } else {
                    let found = decisions
                        .binary_search_by_key(&decision_sequence, |(at, _)| *at)
                        .map_err(|_| VerifyError::OutcomeUnknownDecision {
                            sequence,
                            decision_sequence,
                        })?;
                    if decisions[found].1 != record.decision_digest {
                        return Err(VerifyError::OutcomeDigestMismatch {
                            sequence,
                            decision_sequence,
                        });
                    }
                    counts.outcomes += 1;
                }
                adaptive.outcome(sequence, record)?;
            }
            GateRecord::BookSnapshot(_) => counts.snapshots += 1,
            // Budget nodes, windows and alerts (codes 13..=16) are checked by the fold,
            // per node and per window, at every record.
            GateRecord::TenantCreated(_)
            | GateRecord::TopUp(_)
            | GateRecord::LimitsChanged(_)
            | GateRecord::BudgetDefined(_)
            | GateRecord::WindowReset(_)
            | GateRecord::AlertFired(_)
            | GateRecord::BudgetTopUp(_) => {
                counts.budget_changes += 1;
            }
            GateRecord::Promotion(record) => {
                for digest in [record.policy_digest, record.previous_policy_digest] {
                    if !policies.contains_key(&digest) {
                        return Err(VerifyError::PromotionUnknownPolicy {
                            sequence,
                            policy_digest: digest,
                        });
                    }
                }
                counts.promotions += 1;
            }
            GateRecord::Header(_) => {}
            GateRecord::AdaptiveSetup(record) => adaptive.setup(sequence, record)?,
            GateRecord::EngineSnapshot(record) => adaptive.snapshot(sequence, record)?,
            GateRecord::EngineState(record) => adaptive.state_record(sequence, record)?,
            GateRecord::EnginePending(record) => adaptive.pending_record(sequence, record)?,
            GateRecord::Execution(record) => {
                if !record.within_bounds() {
                    return Err(VerifyError::RecordOutOfBounds {
                        sequence,
                        kind: entry.record.kind(),
                    });
                }
                if record.status == crate::record::ExecutionStatus::Served {
                    counts.executions_served += 1;
                }
                let decision_sequence = record.decision_sequence;
                if decisions
                    .first()
                    .is_none_or(|(first, _)| decision_sequence < *first)
                    && first_sequence.is_some_and(|first| first > 0)
                {
                    counts.executions_unchecked += 1;
                } else {
                    let found = decisions
                        .binary_search_by_key(&decision_sequence, |(at, _)| *at)
                        .map_err(|_| VerifyError::ExecutionUnknownDecision {
                            sequence,
                            decision_sequence,
                        })?;
                    if decisions[found].1 != record.decision_digest {
                        return Err(VerifyError::ExecutionDigestMismatch {
                            sequence,
                            decision_sequence,
                        });
                    }
                    counts.executions += 1;
                }
            }
            GateRecord::LeaseRefused(record) => {
                if !record.within_bounds() {
                    return Err(VerifyError::RecordOutOfBounds {
                        sequence,
                        kind: entry.record.kind(),
                    });
                }
                counts.lease_refusals += 1;
            }
            GateRecord::Checkpoint(record) => {
                counts.checkpoints += 1;
                if tree.is_none() && whole_log {
                    tree = Some(
                        crate::transparency::edge_before(
                            log_dir,
                            options.key.as_ref(),
                            sequence,
                            &last_hash,
                        )
                        .map_err(|detail| VerifyError::CheckpointMismatch { sequence, detail })?,
                    );
                }
                if let Some(tree) = &tree {
                    crate::transparency::check_record(record, sequence, tree)
                        .map_err(|detail| VerifyError::CheckpointMismatch { sequence, detail })?;
                }
            }
        }
        last_hash = entry.hash;
        if let Some(tree) = &mut tree {
            tree.append(calybris_tlog::leaf_hash(&entry.hash))
                .map_err(|error| VerifyError::CheckpointMismatch {
                    sequence,
                    detail: error.to_string(),
                })?;
        }
        books
            .apply(sequence, &entry.record)
            .map_err(|error| VerifyError::Books {
                sequence,
                offset_bytes,
                error,
            })?;
    }
    if !folding && let Some(first_sequence) = first_sequence {
        return Err(VerifyError::NoSnapshotInSuffix { first_sequence });
    }
    counts.staged = stage_counts.staged;
    counts.unstaged = stage_counts.unstaged;
    counts.held_out = stage_counts.held_out;
    counts.holdout_unchecked = stage_counts.holdout_unchecked;
    counts.shadow_notes = stage_counts.shadow_notes;
    adaptive.finish();
    let adaptive_counts = adaptive.counts();
    counts.adaptive_decisions = adaptive_counts.decisions;
    counts.engine_snapshots = adaptive_counts.snapshots;
    counts.engine_states = adaptive_counts.states;
    counts.adaptive_unchecked = adaptive_counts.unchecked;
    Ok((books, counts, tally))
}

/// The end of [`verify_dir`]: the chain's clean end, the final books' proof.
fn finish(
    reader: &SegmentedReader<GateRecord>,
    books: Books,
    counts: RecordCounts,
    tally: SelectionTally,
) -> Result<GateReport, VerifyError> {
    let anchor = match reader.outcome() {
        Some(Recovery::Clean { anchor, .. }) => *anchor,
        Some(other) => return Err(VerifyError::Chain(other.clone())),
        None => return Err(VerifyError::Log(WalError::Closed)),
    };
    if anchor.next_sequence == 0 {
        return Err(VerifyError::Books {
            sequence: 0,
            offset_bytes: 0,
            error: BooksError::BadHeader {
                found: "an empty log".to_owned(),
            },
        });
    }
    let budget = books.budget_snapshot(anchor.next_sequence);
    let conservation = prove_snapshot(&budget, Some(anchor.next_sequence))?;
    let mut tenants = books.tenants().to_vec();
    tenants.sort_unstable_by(|a, b| a.tenant.as_bytes().cmp(b.tenant.as_bytes()));
    Ok(GateReport {
        anchor,
        counts,
        tenants,
        open_holds: books.open_holds().len() as u64,
        conservation,
        selections: tally.into_selections(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use calybris_wal::{DurableConfig, DurableWal};

    /// A log of `n` outcome records with `detail` bytes each (the reader checks and
    /// decodes frames; what the records say is the fold's business).
    fn log(name: &str, n: u64, detail: usize) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "calybris-gate-read-ahead-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = DurableWal::<GateRecord>::open(&dir, DurableConfig::default()).expect("open");
        for decision_sequence in 0..n {
            let record = GateRecord::Outcome(crate::record::OutcomeRecord {
                decision_sequence,
                decision_digest: Digest::default(),
                reward_microunits: 0,
                success: true,
                latency_ms: 0,
                detail: vec![7; detail],
            });
            let _ = wal.append(&record).expect("append");
        }
        wal.close().expect("close");
        dir
    }

    fn reader(dir: &Path) -> SegmentedReader<GateRecord> {
        SegmentedReader::<GateRecord>::open(dir, None, None).expect("reader")
    }

    #[test]
    fn the_reader_hands_on_bounded_batches_in_order_and_ends_clean() {
        let dir = log("bounded", 1_000, 3_000);
        for (limits, most) in [
            // Cut by count.
            (
                ReadAheadLimits {
                    entries: 64,
                    bytes: u64::MAX,
                },
                64,
            ),
            // Cut by bytes: frames of about 3,050 bytes, a batch handed on once the
            // frames counted reach 10,000 bytes (a frame is counted when the next
            // one is read): at most five records.
            (
                ReadAheadLimits {
                    entries: 1_000,
                    bytes: 10_000,
                },
                5,
            ),
        ] {
            let (batches, ahead) = std::sync::mpsc::sync_channel(READ_AHEAD_BATCHES);
            let (ended, received) = std::thread::scope(|scope| {
                let path = dir.as_path();
                // The sender moves to the reader: the receiver's iteration ends
                // when the reader returns.
                let reading = scope.spawn(move || read_ahead(reader(path), &batches, limits));
                let received: Vec<Batch> = ahead.iter().collect();
                (reading.join().expect("reader thread"), received)
            });
            let sizes: Vec<usize> = received.iter().map(Vec::len).collect();
            assert!(
                sizes.iter().all(|&len| (1..=most).contains(&len)),
                "{limits:?}: {sizes:?}"
            );
            let sequences: Vec<u64> = received
                .into_iter()
                .flatten()
                .map(|read| read.expect("no error").entry.sequence)
                .collect();
            assert_eq!(sequences, (0..1_000).collect::<Vec<_>>(), "{limits:?}");
            assert!(
                matches!(ended.0.outcome(), Some(Recovery::Clean { .. })),
                "{limits:?}: {:?}",
                ended.0.outcome()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_reader_stops_when_the_fold_does() {
        let dir = log("stops", 2_000, 16);
        let (batches, ahead) = std::sync::mpsc::sync_channel(1);
        let ended = std::thread::scope(|scope| {
            let reading = scope.spawn(|| {
                let limits = ReadAheadLimits {
                    entries: 8,
                    bytes: u64::MAX,
                };
                read_ahead(reader(&dir), &batches, limits)
            });
            // The fold takes one batch and stops (as at a refusal).
            let first = ahead.recv().expect("a first batch");
            assert_eq!(first.len(), 8);
            drop(ahead);
            reading.join().expect("reader thread")
        });
        // The reader gave up before the end: no outcome yet.
        assert!(ended.0.outcome().is_none(), "{:?}", ended.0.outcome());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
