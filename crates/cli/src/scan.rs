//! The verifying scan shared by `verify`, `inspect` and `show`: walk the frames of
//! a log file or segment directory, decode each as an audited record (or, in a gate
//! log, which starts with a gate header, as a [`GateRecord`]), replay every policy
//! and decision with the wal crate's [`AuditReplayer`], and hand every verified record
//! to a [`Visitor`]. The scan stops at the first finding and says where it is.
//!
//! Given a gate directory (one holding [`LOG_DIR`]), the scan reads its log. The
//! scan checks the chain and the replay only; `calybris verify` of a gate directory
//! also rebuilds the books, with `calybris_gate::verify_dir` (see [`crate::gate`]).
//!
//! The scan drives the frame readers itself (rather than calling
//! `replay_audited_file`) because the frame readers know each record's byte
//! offset, which the contract reports for every divergence.

use std::path::{Path, PathBuf};

use calybris::gate::{GateRecord, LOG_DIR};
use calybris::wal::storage::{FileStorage, FsDirectory};
use calybris::wal::{
    AuditError, AuditRecord, AuditReplayer, CorruptReason, DecisionRecord, FrameReader,
    KeyMismatch, PolicyRecord, Recovery, SegmentedFrames, WalAnchor, WalError, WalKey,
    decode_record,
};

use crate::report::{Counts, Finding, Reason, Report};

/// Size of the smallest key the log accepts, in bytes.
const MIN_KEY_LEN_BYTES: usize = calybris::wal::format::MIN_KEY_LEN_BYTES;
/// The largest key file read, in bytes. An HMAC key longer than the hash's block is
/// hashed down anyway, so this is generous; it exists so that `--key-file
/// /dev/zero` is refused instead of read until memory runs out.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Sees every record that verified, in log order.
pub trait Visitor {
    /// A policy record that verified.
    fn policy(&mut self, sequence: u64, record: &PolicyRecord);
    /// A decision record that replayed.
    fn decision(&mut self, sequence: u64, record: &DecisionRecord);
    /// A record of a gate log that verified (its policy and decision records
    /// replayed). By default, a policy goes to [`Visitor::policy`], a decision to
    /// [`Visitor::decision`], and the other records are skipped.
    fn gate(&mut self, sequence: u64, record: &GateRecord) {
        match record {
            GateRecord::Policy(policy) => self.policy(sequence, policy),
            GateRecord::Decision(decision) => self.decision(sequence, &decision.audit),
            _ => {}
        }
    }
}

/// A visitor that looks at nothing.
pub struct NoVisitor;

impl Visitor for NoVisitor {
    fn policy(&mut self, _: u64, _: &PolicyRecord) {}
    fn decision(&mut self, _: u64, _: &DecisionRecord) {}
}

/// What to verify, and with what.
#[derive(Debug, Clone)]
pub struct Target {
    /// A segment file or a segment directory.
    pub path: PathBuf,
    /// The HMAC key, for a keyed log.
    pub key: Option<WalKey>,
    /// A trusted anchor the log must reach.
    pub anchor: Option<WalAnchor>,
    /// A trusted start of a retained gate log (see `calybris_gate::Retention`).
    pub start_anchor: Option<WalAnchor>,
}

/// Reads a key file: its bytes exactly as stored, at least 32 of them and at most
/// [`MAX_KEY_FILE_BYTES`] (read one byte past the limit at most, whatever size the
/// file reports).
///
/// # Errors
/// [`Reason::Unreadable`] when it cannot be read, [`Reason::BadArgument`] when it
/// is too short or too long.
pub fn read_key_file(path: &Path) -> Result<WalKey, Finding> {
    let bytes =
        crate::files::read_at_most(path, MAX_KEY_FILE_BYTES).map_err(|error| match error {
            crate::files::BoundedReadError::Io(error) => Finding::new(
                Reason::Unreadable,
                format!("cannot read key file {}: {error}", path.display()),
            ),
            crate::files::BoundedReadError::TooLarge => Finding::new(
                Reason::BadArgument,
                format!(
                    "key file {} holds more than {MAX_KEY_FILE_BYTES} bytes; a key is 32 to \
                 {MAX_KEY_FILE_BYTES} bytes",
                    path.display()
                ),
            ),
        })?;
    WalKey::new(&bytes).map_err(|_| {
        Finding::new(
            Reason::BadArgument,
            format!(
                "key file {} holds {} bytes; a key is at least {MIN_KEY_LEN_BYTES} bytes",
                path.display(),
                bytes.len()
            ),
        )
    })
}

/// A verified record, decoded.
// One value per record, moved at once into its visitor: boxing would only add an
// allocation per record.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decoded {
    /// A record of an audited log.
    Audit(AuditRecord),
    /// A record of a gate log.
    Gate(GateRecord),
}

/// The frames of a segment file or of every segment of a directory.
enum Frames {
    // Both boxed: the readers are large and of very different sizes.
    File(Box<FrameReader<FileStorage>>),
    Dir {
        frames: Box<SegmentedFrames<FsDirectory>>,
        dir: PathBuf,
    },
}

/// One verified frame: its sequence number, its byte offset, and its record when
/// the payload decodes as a record of the log's kind.
type ScannedFrame = (u64, u64, Option<Decoded>);

/// The segment directory to read for `path`: a gate directory's log, or `path`.
#[must_use]
pub fn log_dir_of(path: &Path) -> PathBuf {
    let log = path.join(LOG_DIR);
    if log.is_dir() {
        log
    } else {
        path.to_path_buf()
    }
}

/// Whether `path` is a gate directory (a directory holding [`LOG_DIR`]).
#[must_use]
pub fn is_gate_dir(path: &Path) -> bool {
    path.join(LOG_DIR).is_dir()
}

impl Frames {
    fn open(target: &Target) -> Result<Self, Finding> {
        let path = &log_dir_of(&target.path);
        let metadata = std::fs::metadata(path).map_err(|error| {
            Finding::new(
                Reason::Unreadable,
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        if metadata.is_dir() {
            // The directory exists, so this does not create anything.
            let dir = FsDirectory::new(path).map_err(|error| wal_finding(&error.into()))?;
            let frames = SegmentedFrames::new(dir, target.key.as_ref(), target.anchor)
                .map_err(|error| wal_finding(&error))?;
            if frames.segments().is_empty() {
                return Err(Finding::new(
                    Reason::UnknownFormat,
                    "the directory holds no log segment (*.cwal) and no gate log (log/)",
                ));
            }
            return Ok(Self::Dir {
                frames: Box::new(frames),
                dir: path.clone(),
            });
        }
        let storage = FileStorage::open_read(path).map_err(|error| wal_finding(&error))?;
        let reader =
            FrameReader::new(storage, target.key.as_ref()).map_err(|error| wal_finding(&error))?;
        Ok(Self::File(Box::new(reader.with_anchor(target.anchor))))
    }

    /// The next verified frame as (sequence, offset, decoded record or the
    /// sequence and offset of an undecodable one). `gate` is the log's kind: `None`
    /// until the first frame, which decides it (a gate log starts with its header).
    fn next(&mut self, gate: &mut Option<bool>) -> Result<Option<ScannedFrame>, WalError> {
        let frame = match self {
            Self::File(reader) => reader.next_frame()?,
            Self::Dir { frames, .. } => frames.next_frame()?,
        };
        Ok(frame.map(|frame| {
            let is_gate = *gate.get_or_insert_with(|| {
                matches!(
                    decode_record::<GateRecord>(frame.payload),
                    Ok(GateRecord::Header(_))
                )
            });
            let record = if is_gate {
                decode_record::<GateRecord>(frame.payload)
                    .ok()
                    .map(Decoded::Gate)
            } else {
                decode_record::<AuditRecord>(frame.payload)
                    .ok()
                    .map(Decoded::Audit)
            };
            (frame.sequence, frame.offset_bytes, record)
        }))
    }

    fn outcome(&self) -> Option<&Recovery> {
        match self {
            Self::File(reader) => reader.outcome(),
            Self::Dir { frames, .. } => frames.outcome(),
        }
    }

    fn position(&self) -> WalAnchor {
        match self {
            Self::File(reader) => reader.position(),
            Self::Dir { frames, .. } => frames.position(),
        }
    }

    /// The segment file that holds `sequence`, for a directory.
    fn segment_of(&self, sequence: u64) -> Option<PathBuf> {
        let Self::Dir { frames, dir } = self else {
            return None;
        };
        let first = frames
            .segments()
            .iter()
            .rev()
            .find(|first| **first <= sequence)?;
        Some(dir.join(format!(
            "{first:020}.{}",
            calybris::wal::storage::SEGMENT_EXTENSION
        )))
    }
}

/// The finding of a log-level failure.
pub(crate) fn wal_finding(error: &WalError) -> Finding {
    match error {
        WalError::Refused(recovery) => recovery_finding(recovery)
            .unwrap_or_else(|| Finding::new(Reason::Unreadable, "refused")),
        WalError::NotFound { path } => Finding::new(
            Reason::Unreadable,
            format!("no such file: {}", path.display()),
        ),
        other => Finding::new(Reason::Unreadable, other.to_string()),
    }
}

/// The finding of a recovery outcome; `None` for a clean log.
pub(crate) fn recovery_finding(recovery: &Recovery) -> Option<Finding> {
    let finding = match recovery {
        Recovery::Clean { .. } => return None,
        Recovery::TornTail {
            anchor,
            valid_len_bytes,
            cut_bytes,
            reason,
            ..
        } => Finding::new(
            Reason::TornTail,
            format!("the last {cut_bytes} bytes are not a complete, verified record ({reason:?})"),
        )
        .at(Some(anchor.next_sequence), Some(*valid_len_bytes)),
        Recovery::Corrupt {
            sequence,
            offset_bytes,
            reason,
        } => {
            let (code, detail) = corrupt_reason(*reason);
            Finding::new(code, detail).at(*sequence, Some(*offset_bytes))
        }
        Recovery::WrongKey { reason } => Finding::new(
            Reason::WrongKey,
            match reason {
                KeyMismatch::DifferentKey => "the log was written under another key",
                KeyMismatch::KeyRequired => "the log is keyed (HMAC); pass --key-file",
                KeyMismatch::LogNotKeyed => "a key was given but the log is not keyed",
            },
        ),
        Recovery::UnknownVersion { found } => Finding::new(
            Reason::UnknownFormat,
            format!("unknown log format version {found}"),
        )
        .at(None, Some(0)),
    };
    Some(finding)
}

fn corrupt_reason(reason: CorruptReason) -> (Reason, String) {
    match reason {
        CorruptReason::BadMagic => (
            Reason::UnknownFormat,
            "not a Calybris log (bad magic or shorter than a header)".to_owned(),
        ),
        CorruptReason::BadHeader => (
            Reason::ChainBroken,
            "the segment header fails its check".to_owned(),
        ),
        CorruptReason::BadLength => (
            Reason::ChainBroken,
            "a frame length is invalid and data follows it".to_owned(),
        ),
        CorruptReason::HashMismatch => (
            Reason::ChainBroken,
            "the entry hash does not verify".to_owned(),
        ),
        CorruptReason::Undecodable => (
            Reason::UnknownFormat,
            "the record is not an audited decision record".to_owned(),
        ),
        CorruptReason::SegmentChainBreak => (
            Reason::ChainBroken,
            "the segment does not continue the previous one".to_owned(),
        ),
        CorruptReason::SuffixMissing {
            anchored_records,
            found_records,
        } => (
            Reason::SuffixTruncated,
            format!(
                "the anchor vouches for {anchored_records} records, the log holds {found_records}"
            ),
        ),
        CorruptReason::AnchorMismatch => (
            Reason::AnchorMismatch,
            "the record at the anchor's position has another hash".to_owned(),
        ),
        CorruptReason::AckMismatch => (
            Reason::ChainBroken,
            "the log disagrees with its acknowledgement watermark".to_owned(),
        ),
        CorruptReason::AckDamaged => (
            Reason::ChainBroken,
            "both slots of the acknowledgement watermark are damaged".to_owned(),
        ),
        CorruptReason::GenesisMissing { first_sequence } => (
            Reason::ChainBroken,
            format!(
                "the first segment starts at sequence {first_sequence}, not 0, and no start anchor vouches for it"
            ),
        ),
    }
}

/// The finding of a replay failure of the record at `sequence`.
pub(crate) fn audit_finding(
    error: &AuditError,
    sequence: u64,
    offset_bytes: Option<u64>,
) -> Finding {
    let at = |finding: Finding| finding.at(Some(sequence), offset_bytes);
    match error {
        AuditError::PolicyDigestMismatch { .. } => at(Finding::new(
            Reason::PolicyDigestMismatch,
            "the policy record's stored digest is not the digest of its snapshot",
        )),
        AuditError::InputDigestMismatch { .. } => at(Finding::new(
            Reason::InputDigestMismatch,
            "the input digest does not match the recorded request",
        )),
        AuditError::DecisionDigestMismatch { .. } => at(Finding::new(
            Reason::DecisionDigestMismatch,
            "the decision digest does not match the recorded decision",
        )),
        AuditError::DoesNotReplay { field, .. } => {
            let mut finding = at(Finding::new(
                Reason::DecisionMismatch,
                format!("the decision does not replay: field {field} differs"),
            ));
            finding.field = Some(field.name());
            finding
        }
        AuditError::PolicyMissing { policy_digest, .. } => at(Finding::new(
            Reason::PolicyMissing,
            format!(
                "the decision names policy {} which no earlier record holds",
                calybris::digest::digest_to_hex(policy_digest)
            ),
        )),
        AuditError::TooManyPolicies { .. } => at(Finding::new(
            Reason::TooManyPolicies,
            format!(
                "more than {} distinct policies",
                calybris::wal::audit::MAX_REPLAY_POLICIES
            ),
        )),
        AuditError::ChainBroken(recovery) => recovery_finding(recovery)
            .unwrap_or_else(|| at(Finding::new(Reason::ChainBroken, recovery.to_string()))),
        AuditError::Wal(error) => wal_finding(error),
        other => at(Finding::new(Reason::Unreadable, other.to_string())),
    }
}

/// Verifies `target`, showing every verified record to `visitor`.
pub fn scan(target: &Target, visitor: &mut impl Visitor) -> Report {
    let mut report = Report {
        path: target.path.clone(),
        keyed: target.key.is_some(),
        anchored: target.anchor.is_some(),
        counts: Counts::default(),
        anchor: None,
        finding: None,
        gate: None,
    };
    let mut frames = match Frames::open(target) {
        Ok(frames) => frames,
        Err(finding) => {
            report.finding = Some(finding);
            return report;
        }
    };
    let finding = walk(
        &mut frames,
        &log_dir_of(&target.path),
        &mut report.counts,
        visitor,
    );
    report.anchor = Some(frames.position());
    report.finding = finding.map(|mut finding| {
        let sequence = finding.sequence.unwrap_or(frames.position().next_sequence);
        finding.segment = frames.segment_of(sequence);
        finding
    });
    report
}

/// Records between two progress updates.
const PROGRESS_EVERY_RECORDS: u64 = 4_096;
/// A log smaller than this (in bytes, about 80,000 records) shows no progress.
const PROGRESS_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// A progress bar over the bytes of the log on stderr, drawn only when stderr is a
/// terminal and the log is large (never in a pipe, a file or a test), so scripts
/// and the one-line error contract are unaffected.
struct Progress {
    bar: indicatif::ProgressBar,
    /// For a segment directory: each segment's first sequence and the bytes of
    /// the segments before it.
    segments: Vec<(u64, u64)>,
}

impl Progress {
    fn new(frames: &Frames, path: &Path) -> Self {
        use std::io::IsTerminal;
        let hidden = Self {
            bar: indicatif::ProgressBar::hidden(),
            segments: Vec::new(),
        };
        if !std::io::stderr().is_terminal() {
            return hidden;
        }
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let (total, segments) = match frames {
            Frames::File(_) => (size(path), Vec::new()),
            Frames::Dir { frames, dir } => {
                let mut before = 0u64;
                let mut segments = Vec::with_capacity(frames.segments().len());
                for first in frames.segments() {
                    segments.push((*first, before));
                    before = before.saturating_add(size(&dir.join(format!(
                        "{first:020}.{}",
                        calybris::wal::storage::SEGMENT_EXTENSION
                    ))));
                }
                (before, segments)
            }
        };
        if total < PROGRESS_MIN_BYTES {
            return hidden;
        }
        Self {
            bar: crate::human::progress_bar(total, "verifying", true),
            segments,
        }
    }

    fn tick(&self, records: u64, sequence: u64, offset_bytes: u64) {
        if !records.is_multiple_of(PROGRESS_EVERY_RECORDS) || self.bar.is_hidden() {
            return;
        }
        let index = self
            .segments
            .partition_point(|(first, _)| *first <= sequence);
        let before = index
            .checked_sub(1)
            .and_then(|i| self.segments.get(i))
            .map_or(0, |(_, before)| *before);
        self.bar.set_position(before.saturating_add(offset_bytes));
    }

    fn finish(&self) {
        // Clear the bar before the verdict is printed.
        self.bar.finish_and_clear();
    }
}

/// The scan loop; the first finding, or `None` for a clean, replayed log.
fn walk(
    frames: &mut Frames,
    path: &Path,
    counts: &mut Counts,
    visitor: &mut impl Visitor,
) -> Option<Finding> {
    let progress = Progress::new(frames, path);
    let finding = walk_records(frames, counts, visitor, &progress);
    progress.finish();
    finding
}

fn walk_records(
    frames: &mut Frames,
    counts: &mut Counts,
    visitor: &mut impl Visitor,
    progress: &Progress,
) -> Option<Finding> {
    let mut replayer = AuditReplayer::new();
    let mut gate = None;
    loop {
        let (sequence, offset_bytes, record) = match frames.next(&mut gate) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => return Some(wal_finding(&error)),
        };
        let Some(record) = record else {
            let what = if gate == Some(true) {
                "the record verifies but is not a gate record"
            } else {
                "the record verifies but is not an audited decision record"
            };
            return Some(
                Finding::new(Reason::UnknownFormat, what).at(Some(sequence), Some(offset_bytes)),
            );
        };
        let checked = match &record {
            Decoded::Audit(AuditRecord::Policy(policy)) => {
                replayer.check_policy(sequence, offset_bytes, policy)
            }
            Decoded::Audit(AuditRecord::Decision(decision)) => {
                replayer.check_decision(sequence, offset_bytes, decision)
            }
            Decoded::Gate(record) => match record {
                GateRecord::Policy(policy) => replayer.check_policy(sequence, offset_bytes, policy),
                GateRecord::Decision(decision) => {
                    replayer.check_decision(sequence, offset_bytes, &decision.audit)
                }
                // A staged policy decides too (a holdout's baseline): learnt for replay.
                GateRecord::Staged(staged) => {
                    replayer.check_policy(sequence, offset_bytes, &staged.policy)
                }
                _ => Ok(()),
            },
        };
        if let Err(error) = checked {
            return Some(audit_finding(&error, sequence, Some(offset_bytes)));
        }
        counts.records += 1;
        progress.tick(counts.records, sequence, offset_bytes);
        match &record {
            Decoded::Audit(AuditRecord::Policy(record)) => {
                counts.policies += 1;
                visitor.policy(sequence, record);
            }
            Decoded::Audit(AuditRecord::Decision(record)) => {
                counts.decisions += 1;
                visitor.decision(sequence, record);
            }
            Decoded::Gate(record) => {
                match record {
                    GateRecord::Policy(_) => counts.policies += 1,
                    GateRecord::Decision(_) => counts.decisions += 1,
                    _ => {}
                }
                visitor.gate(sequence, record);
            }
        }
    }
    match frames.outcome() {
        Some(recovery) => recovery_finding(recovery),
        None => Some(Finding::new(
            Reason::Unreadable,
            "the reader stopped without an outcome",
        )),
    }
}

/// The byte offset of record `sequence` and the segment file holding it (for a
/// directory), found by walking the verified frames of `target`; `None` where the
/// record cannot be reached.
#[must_use]
pub fn locate(target: &Target, sequence: u64) -> (Option<u64>, Option<PathBuf>) {
    let Ok(mut frames) = Frames::open(target) else {
        return (None, None);
    };
    let segment = frames.segment_of(sequence);
    loop {
        let frame = match &mut frames {
            Frames::File(reader) => reader.next_frame(),
            Frames::Dir { frames, .. } => frames.next_frame(),
        };
        match frame {
            Ok(Some(frame)) if frame.sequence == sequence => {
                return (Some(frame.offset_bytes), segment);
            }
            Ok(Some(frame)) if frame.sequence < sequence => {}
            _ => return (None, segment),
        }
    }
}
