//! Audited decision records (feature `audit`): a log of kernel decisions that
//! verifies itself.
//!
//! Two record kinds share one log: a [`PolicyRecord`] (the whole policy snapshot,
//! written once, keyed by its CALY digest) and a [`DecisionRecord`] (the request,
//! the decision, the three raw digests and caller metadata). [`AuditWriter`]
//! refuses to write a decision that does not replay against its policy, and writes
//! the policy before the first decision that uses it, so a log is self-contained.
//! [`replay_audited`] walks a log, resolves each decision's policy by digest from
//! the policy records before it, re-runs `prescribe`, recomputes the digests, and
//! fails closed on the first divergence with a typed reason.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use calybris_digest::{Digest, SealedPolicy, decision_digest, input_digest};
use calybris_kernel::{DecisionField, KernelDecision, KernelInput};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::durable::{DurableConfig, DurableWal, Ticket};
use crate::error::WalError;
use crate::format::WalKey;
use crate::reader::{Entry, FrameSource, WalReader, decode_next, decode_record, open_log};
use crate::recovery::{CorruptReason, Recovery, WalAnchor};
use crate::segmented::SegmentedReader;
use crate::storage::{Directory, FileStorage, FsDirectory, Storage};
use crate::writer::WalWriter;

/// Bound on distinct policies a replay keeps in memory.
pub const MAX_REPLAY_POLICIES: usize = 65_536;

/// What the caller attaches to a decision. Fixed-width, so a decision record
/// costs no allocation and has a bounded size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DecisionMeta {
    /// When the caller recorded the decision, in milliseconds since the Unix
    /// epoch (the kernel reads no clock; this is the caller's).
    pub recorded_at_unix_ms: u64,
    /// The caller's tenant or account.
    pub tenant_id: u64,
    /// The caller's request or trace id.
    pub request_id: [u8; 16],
}

/// A policy snapshot, written once, keyed by its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// The CALY policy digest (`calypol1`) as written.
    pub policy_digest: Digest,
    /// The snapshot. Decoding validates it and recomputes its digest.
    pub policy: SealedPolicy,
}

/// One decision with everything needed to replay it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The request.
    pub input: KernelInput,
    /// The decision as made.
    pub decision: KernelDecision,
    /// Digest of the policy that decided; a [`PolicyRecord`] earlier in the log
    /// holds it.
    pub policy_digest: Digest,
    /// Digest of the request (`calyinp1`).
    pub input_digest: Digest,
    /// Digest of the decision (`calydcn1`).
    pub decision_digest: Digest,
    /// The caller's metadata.
    pub meta: DecisionMeta,
}

impl DecisionRecord {
    /// Builds the record of a decision only if it replays exactly against
    /// `policy`, computing the three digests.
    ///
    /// # Errors
    /// [`AuditError::DoesNotReplay`] naming the first differing field.
    pub fn verified(
        policy: &SealedPolicy,
        input: KernelInput,
        decision: &KernelDecision,
        meta: DecisionMeta,
    ) -> Result<Self, AuditError> {
        policy
            .verify_decision(input, decision)
            .map_err(|mismatch| AuditError::DoesNotReplay {
                sequence: None,
                offset_bytes: None,
                field: mismatch.field,
            })?;
        Ok(Self {
            input,
            decision: *decision,
            policy_digest: *policy.digest(),
            input_digest: input_digest(&input),
            decision_digest: decision_digest(decision),
            meta,
        })
    }
}

/// One record of an audited log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditRecord {
    /// A policy snapshot.
    Policy(PolicyRecord),
    /// A decision.
    Decision(DecisionRecord),
}

/// Serializes exactly like [`AuditRecord`] from borrowed parts, so writing a
/// policy record does not clone the snapshot.
#[derive(Serialize)]
enum AuditRecordRef<'a> {
    Policy(PolicyRecordRef<'a>),
    Decision(&'a DecisionRecord),
}

#[derive(Serialize)]
struct PolicyRecordRef<'a> {
    policy_digest: &'a Digest,
    policy: &'a SealedPolicy,
}

/// Why an audited append or replay failed. A replay stops at the first one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The log itself failed: storage, encoding, or a refused log.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The chain does not verify to a clean end (corruption, torn tail, wrong
    /// key, unknown version, unmet anchor).
    #[error("the chain does not verify: {0}")]
    ChainBroken(Recovery),
    /// A decision does not replay against its policy.
    #[error(
        "decision {sequence:?} (byte offset {offset_bytes:?}) does not replay: field {field} differs"
    )]
    DoesNotReplay {
        /// The record (`None` when refused before it was written).
        sequence: Option<u64>,
        /// Byte offset of its frame in its segment (`None` when refused before
        /// it was written).
        offset_bytes: Option<u64>,
        /// The first differing field.
        field: DecisionField,
    },
    /// A decision names a policy that no earlier record holds.
    #[error(
        "decision {sequence} (byte offset {offset_bytes}) names a policy that no earlier record holds"
    )]
    PolicyMissing {
        /// The decision record.
        sequence: u64,
        /// Byte offset of its frame in its segment.
        offset_bytes: u64,
        /// The digest it names.
        policy_digest: Digest,
    },
    /// A policy record's stored digest is not the digest of its snapshot.
    #[error(
        "policy record {sequence} (byte offset {offset_bytes}): the stored digest is not the snapshot's"
    )]
    PolicyDigestMismatch {
        /// The policy record.
        sequence: u64,
        /// Byte offset of its frame in its segment.
        offset_bytes: u64,
    },
    /// A decision record's input digest is not the digest of its input.
    #[error(
        "decision {sequence} (byte offset {offset_bytes}): the input digest does not match the input"
    )]
    InputDigestMismatch {
        /// The decision record.
        sequence: u64,
        /// Byte offset of its frame in its segment.
        offset_bytes: u64,
    },
    /// A decision record's decision digest is not the digest of its decision.
    #[error(
        "decision {sequence} (byte offset {offset_bytes}): the decision digest does not match the decision"
    )]
    DecisionDigestMismatch {
        /// The decision record.
        sequence: u64,
        /// Byte offset of its frame in its segment.
        offset_bytes: u64,
    },
    /// More distinct policies than [`MAX_REPLAY_POLICIES`].
    #[error(
        "policy record {sequence} (byte offset {offset_bytes}): more than {MAX_REPLAY_POLICIES} distinct policies"
    )]
    TooManyPolicies {
        /// The policy record over the bound.
        sequence: u64,
        /// Byte offset of its frame in its segment.
        offset_bytes: u64,
    },
}

/// Writes an audited log: policies once, decisions only if they replay.
#[derive(Debug)]
pub struct AuditWriter<S: Storage = FileStorage> {
    wal: WalWriter<AuditRecord, S>,
    policies: HashSet<Digest>,
}

impl AuditWriter<FileStorage> {
    /// Creates a new audited log file.
    ///
    /// # Errors
    /// As [`WalWriter::create`].
    pub fn create(path: &Path, key: Option<WalKey>) -> Result<Self, AuditError> {
        Ok(Self {
            wal: WalWriter::create(path, key)?,
            policies: HashSet::new(),
        })
    }

    /// Opens an audited log file, verifying its chain and decoding every record to
    /// learn which policies it already holds.
    ///
    /// # Errors
    /// As [`WalWriter::open`], or [`AuditError::Wal`] with a refusal when a record
    /// does not decode.
    pub fn open(path: &Path, key: Option<WalKey>) -> Result<Self, AuditError> {
        Self::open_in(FileStorage::open_locked(path)?, key, None)
    }
}

impl<S: Storage> AuditWriter<S> {
    /// Starts a new audited log in empty `storage`.
    ///
    /// # Errors
    /// As [`WalWriter::create_in`].
    pub fn create_in(storage: S, key: Option<WalKey>) -> Result<Self, AuditError> {
        Ok(Self {
            wal: WalWriter::create_in(storage, key)?,
            policies: HashSet::new(),
        })
    }

    /// Opens the audited log in `storage`.
    ///
    /// # Errors
    /// As [`WalWriter::open_in`], or a refusal when a record does not decode.
    pub fn open_in(
        storage: S,
        key: Option<WalKey>,
        anchor: Option<WalAnchor>,
    ) -> Result<Self, AuditError> {
        let mut reader =
            WalReader::<AuditRecord, S>::from_storage(storage, key.as_ref())?.with_anchor(anchor);
        let mut policies = HashSet::new();
        while let Some(entry) = reader.next_entry()? {
            if let AuditRecord::Policy(record) = entry.record {
                policies.insert(*record.policy.digest());
            }
        }
        let wal = WalWriter::open_in(reader.into_storage(), key, anchor)?;
        Ok(Self { wal, policies })
    }

    /// Writes `policy` unless the log already holds it; returns the record's
    /// sequence number when written.
    ///
    /// # Errors
    /// As [`WalWriter::append`].
    pub fn append_policy(&mut self, policy: &SealedPolicy) -> Result<Option<u64>, AuditError> {
        if self.policies.contains(policy.digest()) {
            return Ok(None);
        }
        let record = AuditRecordRef::Policy(PolicyRecordRef {
            policy_digest: policy.digest(),
            policy,
        });
        let sequence = self.wal.append_serialized(&record)?;
        self.policies.insert(*policy.digest());
        Ok(Some(sequence))
    }

    /// Replays `decision` against `policy` and, only if it replays exactly,
    /// writes it (after the policy, if the log does not hold it yet); returns the
    /// decision record's sequence number.
    ///
    /// # Errors
    /// [`AuditError::DoesNotReplay`] (nothing is written), or as
    /// [`WalWriter::append`].
    pub fn append_verified(
        &mut self,
        policy: &SealedPolicy,
        input: KernelInput,
        decision: &KernelDecision,
        meta: DecisionMeta,
    ) -> Result<u64, AuditError> {
        let record = DecisionRecord::verified(policy, input, decision, meta)?;
        self.append_policy(policy)?;
        Ok(self
            .wal
            .append_serialized(&AuditRecordRef::Decision(&record))?)
    }

    /// Writes the buffer out.
    ///
    /// # Errors
    /// As [`WalWriter::flush`].
    pub fn flush(&mut self) -> Result<(), AuditError> {
        Ok(self.wal.flush()?)
    }

    /// Makes everything durable; returns the durable anchor.
    ///
    /// # Errors
    /// As [`WalWriter::sync`].
    pub fn sync(&mut self) -> Result<WalAnchor, AuditError> {
        Ok(self.wal.sync()?)
    }

    /// The underlying log writer.
    #[must_use]
    pub fn wal(&self) -> &WalWriter<AuditRecord, S> {
        &self.wal
    }
}

/// A group-commit audited log: [`DurableWal`] of [`AuditRecord`]s whose
/// `append_verified` can be called from many threads and returns a [`Ticket`]
/// that resolves once the decision is durable.
///
/// Each policy is written once, before the first decision that names it: the
/// policy record is appended under a lock, so no decision can get an earlier
/// sequence number than its policy.
#[derive(Debug)]
pub struct DurableAuditWal<D: Directory = FsDirectory> {
    wal: DurableWal<AuditRecord, D>,
    policies: Mutex<HashSet<Digest>>,
}

impl DurableAuditWal<FsDirectory> {
    /// Opens (or creates) the segment directory at `path`.
    ///
    /// # Errors
    /// As [`DurableAuditWal::open_in`].
    pub fn open(path: &Path, config: DurableConfig) -> Result<Self, AuditError> {
        Self::open_in(FsDirectory::new(path).map_err(WalError::Io)?, config)
    }
}

impl<D: Directory> DurableAuditWal<D> {
    /// Verifies every segment, learns which policies the log holds (in the same
    /// single recovery scan), and opens it for group commit.
    ///
    /// # Errors
    /// As [`DurableWal::open_in`], or a refusal when a record does not decode.
    pub fn open_in(dir: D, config: DurableConfig) -> Result<Self, AuditError> {
        let mut policies = HashSet::new();
        let wal = DurableWal::open_in_visiting(dir, config, |frame| {
            match decode_record::<AuditRecord>(frame.payload) {
                Ok(AuditRecord::Policy(record)) => {
                    policies.insert(*record.policy.digest());
                    Ok(())
                }
                Ok(AuditRecord::Decision(_)) => Ok(()),
                Err(_) => Err(AuditError::Wal(WalError::Refused(Recovery::Corrupt {
                    sequence: Some(frame.sequence),
                    offset_bytes: frame.offset_bytes,
                    reason: CorruptReason::Undecodable,
                }))),
            }
        })?;
        Ok(Self {
            wal,
            policies: Mutex::new(policies),
        })
    }
}

impl<D: Directory> DurableAuditWal<D> {
    /// Queues `policy` unless the log already holds it; the ticket of its record
    /// when queued.
    ///
    /// # Errors
    /// As [`DurableWal::append`].
    pub fn append_policy(&self, policy: &SealedPolicy) -> Result<Option<Ticket>, AuditError> {
        let mut policies = self.policies.lock();
        if policies.contains(policy.digest()) {
            return Ok(None);
        }
        let ticket = self
            .wal
            .append_serialized(&AuditRecordRef::Policy(PolicyRecordRef {
                policy_digest: policy.digest(),
                policy,
            }))?
            .0;
        policies.insert(*policy.digest());
        Ok(Some(ticket))
    }

    /// Replays `decision` against `policy` and, only if it replays exactly,
    /// queues it (after its policy, if the log does not hold it yet); wait on the
    /// ticket for durability.
    ///
    /// # Errors
    /// [`AuditError::DoesNotReplay`] (nothing is queued), or as
    /// [`DurableWal::append`].
    pub fn append_verified(
        &self,
        policy: &SealedPolicy,
        input: KernelInput,
        decision: &KernelDecision,
        meta: DecisionMeta,
    ) -> Result<Ticket, AuditError> {
        let record = DecisionRecord::verified(policy, input, decision, meta)?;
        self.append_policy(policy)?;
        Ok(self
            .wal
            .append_serialized(&AuditRecordRef::Decision(&record))?
            .0)
    }

    /// The underlying group-commit log.
    #[must_use]
    pub fn wal(&self) -> &DurableWal<AuditRecord, D> {
        &self.wal
    }

    /// Makes everything queued durable and stops the flusher.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] when a write or sync failed.
    pub fn close(self) -> Result<WalAnchor, AuditError> {
        Ok(self.wal.close()?)
    }
}

/// What a successful replay covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySummary {
    /// Policy records seen.
    pub policies: u64,
    /// Decision records replayed.
    pub decisions: u64,
    /// Position after the last record.
    pub anchor: WalAnchor,
}

/// Checks audited records one at a time, in log order. [`replay_audited`] and
/// [`replay_audited_segments`] drive it; use it directly for another source.
#[derive(Debug, Default)]
pub struct AuditReplayer {
    policies: HashMap<Digest, Arc<SealedPolicy>>,
    /// The policy of the previous decision: logs mostly run under one policy at a
    /// time, so this spares a hash-map lookup per decision.
    last: Option<(Digest, Arc<SealedPolicy>)>,
    policy_records: u64,
    decisions: u64,
}

impl AuditReplayer {
    /// A replayer that knows no policy yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one record (which must come after every record before it).
    ///
    /// # Errors
    /// The first divergence, as an [`AuditError`] naming the record.
    pub fn check(&mut self, entry: &Entry<AuditRecord>) -> Result<(), AuditError> {
        let (sequence, offset_bytes) = (entry.sequence, entry.offset_bytes);
        match &entry.record {
            AuditRecord::Policy(record) => self.check_policy(sequence, offset_bytes, record),
            AuditRecord::Decision(record) => self.check_decision(sequence, offset_bytes, record),
        }
    }

    /// Checks one policy record at `sequence` (whose frame starts at `offset_bytes`)
    /// and learns its policy. For logs whose record type wraps [`PolicyRecord`] (the
    /// decision gate's, for one).
    ///
    /// # Errors
    /// [`AuditError::PolicyDigestMismatch`] or [`AuditError::TooManyPolicies`].
    pub fn check_policy(
        &mut self,
        sequence: u64,
        offset_bytes: u64,
        record: &PolicyRecord,
    ) -> Result<(), AuditError> {
        if record.policy_digest != *record.policy.digest() {
            return Err(AuditError::PolicyDigestMismatch {
                sequence,
                offset_bytes,
            });
        }
        self.policy_records += 1;
        if !self.policies.contains_key(&record.policy_digest) {
            if self.policies.len() >= MAX_REPLAY_POLICIES {
                return Err(AuditError::TooManyPolicies {
                    sequence,
                    offset_bytes,
                });
            }
            self.policies
                .insert(record.policy_digest, Arc::new(record.policy.clone()));
        }
        Ok(())
    }

    /// Replays one decision record at `sequence` (frame at `offset_bytes`) against
    /// the policy it names (which
    /// an earlier [`check_policy`](Self::check_policy) must have learnt) and
    /// recomputes its digests.
    ///
    /// # Errors
    /// The first divergence: [`AuditError::PolicyMissing`],
    /// [`AuditError::InputDigestMismatch`], [`AuditError::DoesNotReplay`] or
    /// [`AuditError::DecisionDigestMismatch`].
    pub fn check_decision(
        &mut self,
        sequence: u64,
        offset_bytes: u64,
        record: &DecisionRecord,
    ) -> Result<(), AuditError> {
        let missing = || AuditError::PolicyMissing {
            sequence,
            offset_bytes,
            policy_digest: record.policy_digest,
        };
        if self.last.as_ref().map(|(digest, _)| digest) != Some(&record.policy_digest) {
            let policy = self
                .policies
                .get(&record.policy_digest)
                .ok_or_else(missing)?;
            self.last = Some((record.policy_digest, Arc::clone(policy)));
        }
        let Some((_, policy)) = &self.last else {
            return Err(missing());
        };
        if input_digest(&record.input) != record.input_digest {
            return Err(AuditError::InputDigestMismatch {
                sequence,
                offset_bytes,
            });
        }
        policy
            .verify_decision(record.input, &record.decision)
            .map_err(|mismatch| AuditError::DoesNotReplay {
                sequence: Some(sequence),
                offset_bytes: Some(offset_bytes),
                field: mismatch.field,
            })?;
        if decision_digest(&record.decision) != record.decision_digest {
            return Err(AuditError::DecisionDigestMismatch {
                sequence,
                offset_bytes,
            });
        }
        self.decisions += 1;
        Ok(())
    }

    /// Policy records checked so far (repeats included).
    #[must_use]
    pub fn policy_records(&self) -> u64 {
        self.policy_records
    }

    /// Decision records replayed so far.
    #[must_use]
    pub fn decisions(&self) -> u64 {
        self.decisions
    }

    fn summary(&self, outcome: Option<&Recovery>) -> Result<ReplaySummary, AuditError> {
        match outcome {
            Some(Recovery::Clean { anchor, .. }) => Ok(ReplaySummary {
                policies: self.policy_records,
                decisions: self.decisions,
                anchor: *anchor,
            }),
            Some(other) => Err(AuditError::ChainBroken(other.clone())),
            None => Err(AuditError::Wal(WalError::Closed)),
        }
    }
}

fn chain_error(error: WalError) -> AuditError {
    match error {
        WalError::Refused(recovery) => AuditError::ChainBroken(recovery),
        other => AuditError::Wal(other),
    }
}

/// The one replay driver: checks every record of any [`FrameSource`] in order
/// (chain to a clean end, every policy digest, every decision replayed with its
/// digests recomputed) and fails closed on the first divergence; a torn tail is a
/// failure too. [`replay_audited`], [`replay_audited_segments`],
/// [`replay_audited_file`] and [`replay_audited_log`] are thin calls of it.
///
/// # Errors
/// The first divergence.
pub fn replay_audited_frames<F: FrameSource + ?Sized>(
    frames: &mut F,
) -> Result<ReplaySummary, AuditError> {
    let mut replayer = AuditReplayer::new();
    while let Some(entry) = decode_next::<AuditRecord, F>(frames).map_err(chain_error)? {
        replayer.check(&entry)?;
    }
    replayer.summary(frames.outcome())
}

/// Verifies a whole audited log segment (see [`replay_audited_frames`]).
///
/// # Errors
/// The first divergence.
pub fn replay_audited<S: Storage>(
    mut reader: WalReader<AuditRecord, S>,
) -> Result<ReplaySummary, AuditError> {
    replay_audited_frames(reader.frames_mut())
}

/// [`replay_audited`] over every segment of a directory.
///
/// # Errors
/// The first divergence.
pub fn replay_audited_segments<D: Directory>(
    mut reader: SegmentedReader<AuditRecord, D>,
) -> Result<ReplaySummary, AuditError> {
    replay_audited_frames(reader.frames_mut())
}

/// Opens an audited log file and replays it (see [`replay_audited`]).
///
/// # Errors
/// The first divergence, or [`AuditError::Wal`] when the file cannot be opened.
pub fn replay_audited_file(
    path: &Path,
    key: Option<&WalKey>,
    anchor: Option<WalAnchor>,
) -> Result<ReplaySummary, AuditError> {
    let reader = match WalReader::<AuditRecord>::open(path, key) {
        Ok(reader) => reader,
        Err(error) => return Err(chain_error(error)),
    };
    replay_audited(reader.with_anchor(anchor))
}

/// Opens the audited log at `path`, a segment file or a segment directory (see
/// [`open_log`]), and replays it.
///
/// # Errors
/// The first divergence, or [`AuditError::Wal`] when nothing can be opened.
pub fn replay_audited_log(
    path: &Path,
    key: Option<&WalKey>,
    anchor: Option<WalAnchor>,
) -> Result<ReplaySummary, AuditError> {
    let mut reader = open_log::<AuditRecord>(path, key, anchor).map_err(chain_error)?;
    replay_audited_frames(reader.frames_mut())
}

/// Fuzz entry: decode an audit record and, when it decodes, check it re-encodes
/// to something that decodes the same.
pub(crate) fn fuzz_decode(bytes: &[u8]) {
    if let Ok(record) = crate::reader::decode_record::<AuditRecord>(bytes) {
        let again = postcard::to_allocvec(&record).ok();
        let decoded = again
            .as_deref()
            .map(crate::reader::decode_record::<AuditRecord>);
        assert!(matches!(decoded, Some(Ok(ref r)) if *r == record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calybris_kernel::{KernelModel, PolicySnapshot};

    #[test]
    fn borrowed_records_encode_exactly_like_owned_ones() {
        let model = KernelModel {
            model_id: 1,
            provider_id: 0,
            quality_bps: 9_000,
            risk_ceiling_bps: 9_000,
            enabled: 1,
            p95_latency_ms: 100,
            capabilities: 0,
            region_mask: 1,
            input_cost_microunits_per_million_tokens: 1_000_000,
            output_cost_microunits_per_million_tokens: 1_000_000,
        };
        let policy = SealedPolicy::new(
            PolicySnapshot::builder()
                .model(model)
                .build()
                .expect("valid policy"),
        );
        let owned = AuditRecord::Policy(PolicyRecord {
            policy_digest: *policy.digest(),
            policy: policy.clone(),
        });
        let borrowed = AuditRecordRef::Policy(PolicyRecordRef {
            policy_digest: policy.digest(),
            policy: &policy,
        });
        assert_eq!(
            postcard::to_allocvec(&owned).ok(),
            postcard::to_allocvec(&borrowed).ok()
        );
        let input = KernelInput {
            requested_model_id: 1,
            input_tokens: 100,
            business_value_microunits: 10_000,
            ..KernelInput::default()
        };
        let decision = policy.prescribe(input);
        let record = DecisionRecord::verified(&policy, input, &decision, DecisionMeta::default())
            .expect("replays");
        assert_eq!(
            postcard::to_allocvec(&AuditRecord::Decision(record)).ok(),
            postcard::to_allocvec(&AuditRecordRef::Decision(&record)).ok()
        );
    }
}
