//! What a scan of a log found: the closed [`Recovery`] enum, its reasons, and the
//! caller-kept [`WalAnchor`].

use serde::{Deserialize, Serialize};

use crate::format::{AckPoint, ENTRY_HASH_LEN_BYTES, EntryHash, GENESIS_HASH};

/// A trusted position in a log, kept by the caller outside the file.
///
/// The chain alone cannot tell a log from the same log with its last records cut
/// off cleanly; an anchor can. Store it after a successful `sync` (for instance in
/// another system) and pass it to the reader: a log holding fewer records than the
/// anchor, or whose record `next_sequence - 1` has another hash, is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WalAnchor {
    /// The sequence number the next record will get, which is the number of
    /// records in the log.
    pub next_sequence: u64,
    /// Entry hash of record `next_sequence - 1` ([`GENESIS_HASH`] for an empty log).
    pub head_hash: EntryHash,
}

/// Size of [`WalAnchor::to_bytes`], in bytes.
pub const ANCHOR_LEN_BYTES: usize = 8 + ENTRY_HASH_LEN_BYTES;

impl WalAnchor {
    /// The anchor of an empty log.
    pub const GENESIS: Self = Self {
        next_sequence: 0,
        head_hash: GENESIS_HASH,
    };

    /// Fixed 40-byte encoding: `next_sequence` (u64 LE) then `head_hash`.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; ANCHOR_LEN_BYTES] {
        let mut out = [0u8; ANCHOR_LEN_BYTES];
        out[..8].copy_from_slice(&self.next_sequence.to_le_bytes());
        out[8..].copy_from_slice(&self.head_hash);
        out
    }

    /// Inverse of [`WalAnchor::to_bytes`].
    #[must_use]
    pub fn from_bytes(bytes: &[u8; ANCHOR_LEN_BYTES]) -> Self {
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&bytes[..8]);
        let mut head_hash = [0u8; ENTRY_HASH_LEN_BYTES];
        head_hash.copy_from_slice(&bytes[8..]);
        Self {
            next_sequence: u64::from_le_bytes(sequence),
            head_hash,
        }
    }
}

/// The outcome of scanning a log. Closed on purpose: every case has a row in the
/// recovery table of `docs/SPECIFICATION.md` and its own test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recovery {
    /// Every byte belongs to a verified frame.
    Clean {
        /// Position after the last record.
        anchor: WalAnchor,
        /// Length of the (last) segment, in bytes.
        len_bytes: u64,
        /// What the log's acknowledgement watermark vouched for.
        acknowledged: Acknowledged,
    },
    /// The last frame is incomplete or bad and nothing follows it: a write that
    /// was cut short by a crash after the last sync. Reopening for writing cuts
    /// it off.
    TornTail {
        /// Position after the last good record.
        anchor: WalAnchor,
        /// Where the good part of the (last) segment ends, in bytes.
        valid_len_bytes: u64,
        /// How many bytes follow the good part (and are cut when reopening for
        /// writing).
        cut_bytes: u64,
        /// What the torn bytes looked like.
        reason: TornReason,
        /// What the log's acknowledgement watermark vouched for: everything cut
        /// lies after it.
        acknowledged: Acknowledged,
    },
    /// A bad frame followed by more data, a bad header, a break in the chain
    /// between segments, or a log that disagrees with the caller's anchor.
    /// Refused: nothing is truncated.
    Corrupt {
        /// Sequence number of the record at fault (`None` for a segment header).
        sequence: Option<u64>,
        /// Byte offset of that record's frame (or of the header) in its segment.
        offset_bytes: u64,
        /// What is wrong.
        reason: CorruptReason,
    },
    /// The log was written under another key, or keyed where none was given, or
    /// unkeyed where a key was given.
    WrongKey {
        /// Which of those.
        reason: KeyMismatch,
    },
    /// The header names a format version this crate does not know.
    UnknownVersion {
        /// The version found.
        found: u16,
    },
}

/// How a torn tail looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TornReason {
    /// The file ends inside a frame header.
    IncompleteHeader,
    /// The file ends inside a frame's payload or entry hash.
    IncompleteFrame,
    /// The bytes after the last good frame are all zero (a file system that
    /// extended the file before the data reached it).
    ZeroFilled,
    /// The last frame is complete but its entry hash does not verify.
    BadFinalFrame,
    /// A bad frame followed by bytes that are not all zero, after the
    /// acknowledged position of a log with a watermark: what a power loss leaves
    /// when a file system extended the file with stale blocks.
    Garbage,
}

/// What a log's acknowledgement watermark (its `ACK` file, or `<file>.ack`) said
/// when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acknowledged {
    /// No watermark: a log written before watermarks existed, a file copied
    /// without its sidecar, or a reader given none. A bad final frame cannot be
    /// told from a torn write and is treated as one.
    Unknown,
    /// The watermark vouched for the first `records` records, ending at byte
    /// `end_offset_bytes` of segment `segment_first_sequence` (their hash was
    /// checked against it); nothing at or before that was cut.
    Known {
        /// How many records were acknowledged (the sequence after the last).
        records: u64,
        /// First sequence of the segment the acknowledged position is in.
        segment_first_sequence: u64,
        /// Where the acknowledged records end in that segment, in bytes.
        end_offset_bytes: u64,
        /// How many of the two slots were torn or damaged (1: the other slot was
        /// used; the next acknowledgement rewrites the bad one).
        damaged_slots: u8,
    },
}

impl Acknowledged {
    /// What a valid watermark slot at `point` reports.
    #[must_use]
    pub fn known(point: AckPoint, damaged_slots: u8) -> Self {
        Self::Known {
            records: point.anchor.next_sequence,
            segment_first_sequence: point.segment_first_sequence,
            end_offset_bytes: point.end_offset_bytes,
            damaged_slots,
        }
    }

    /// How many records the watermark vouched for, when known.
    #[must_use]
    pub fn records(&self) -> Option<u64> {
        match self {
            Self::Known { records, .. } => Some(*records),
            Self::Unknown => None,
        }
    }

    /// First sequence of the segment the acknowledged position is in, when known.
    #[must_use]
    pub fn segment_first_sequence(&self) -> Option<u64> {
        match self {
            Self::Known {
                segment_first_sequence,
                ..
            } => Some(*segment_first_sequence),
            Self::Unknown => None,
        }
    }
}

/// What is wrong with a corrupt log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CorruptReason {
    /// The file does not start with the magic bytes (or is shorter than a header).
    BadMagic,
    /// The header check fails or a reserved header bit is set.
    BadHeader,
    /// A frame header's length and complement disagree or exceed the maximum,
    /// and non-zero data follows.
    BadLength,
    /// A frame's entry hash does not verify and more data follows it.
    HashMismatch,
    /// The frame verifies but its payload does not decode as the record type.
    Undecodable,
    /// A segment does not start where the previous one ended (sequence or hash).
    SegmentChainBreak,
    /// The log holds fewer records than the caller's anchor: a suffix was cut.
    SuffixMissing {
        /// Records the anchor vouches for.
        anchored_records: u64,
        /// Records found.
        found_records: u64,
    },
    /// The record at the anchor's position has another hash: a different history.
    AnchorMismatch,
    /// The log disagrees with its own acknowledgement watermark: the record at
    /// the acknowledged position has another hash, or the position does not fall
    /// on a frame boundary.
    AckMismatch,
    /// Both slots of the acknowledgement watermark are damaged: how far the log
    /// was acknowledged is unknown, so nothing may be cut. Removing the watermark
    /// file on purpose falls back to the rule for logs without one.
    AckDamaged,
    /// The first segment does not start at sequence 0 and no trusted start anchor
    /// vouches for where it starts (older segments were retired or lost).
    GenesisMissing {
        /// The first sequence of the first segment present.
        first_sequence: u64,
    },
}

/// How the key disagrees with the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyMismatch {
    /// Both keyed, different fingerprints.
    DifferentKey,
    /// The log is keyed but no key was given.
    KeyRequired,
    /// A key was given but the log is not keyed.
    LogNotKeyed,
}

impl Recovery {
    /// What the watermark vouched for (`Unknown` for refusals).
    #[must_use]
    pub fn acknowledged(&self) -> Acknowledged {
        match self {
            Self::Clean { acknowledged, .. } | Self::TornTail { acknowledged, .. } => *acknowledged,
            _ => Acknowledged::Unknown,
        }
    }

    /// True for [`Recovery::Clean`].
    #[must_use]
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Clean { .. })
    }

    /// True when a writer may continue the log (clean or torn tail).
    #[must_use]
    pub fn is_recoverable(&self) -> bool {
        matches!(self, Self::Clean { .. } | Self::TornTail { .. })
    }

    /// The position after the last good record, when the log is usable.
    #[must_use]
    pub fn anchor(&self) -> Option<WalAnchor> {
        match self {
            Self::Clean { anchor, .. } | Self::TornTail { anchor, .. } => Some(*anchor),
            _ => None,
        }
    }

    /// The sequence number this outcome names: the torn record for a torn tail,
    /// the record at fault for corruption.
    #[must_use]
    pub fn named_sequence(&self) -> Option<u64> {
        match self {
            Self::TornTail { anchor, .. } => Some(anchor.next_sequence),
            Self::Corrupt { sequence, .. } => *sequence,
            _ => None,
        }
    }
}

impl core::fmt::Display for Recovery {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Clean { anchor, .. } => {
                write!(f, "clean log of {} records", anchor.next_sequence)
            }
            Self::TornTail {
                anchor,
                valid_len_bytes,
                cut_bytes,
                reason,
                acknowledged,
            } => write!(
                f,
                "torn tail at record {} (offset {valid_len_bytes}): {cut_bytes} bytes after the last good record ({reason:?}); acknowledged position {}",
                anchor.next_sequence,
                match acknowledged.records() {
                    Some(records) => format!("record {records}"),
                    None => "unknown".to_owned(),
                }
            ),
            Self::Corrupt {
                sequence: Some(sequence),
                offset_bytes,
                reason,
            } => write!(
                f,
                "corrupt log at record {sequence}, byte offset {offset_bytes}: {reason:?}"
            ),
            Self::Corrupt {
                sequence: None,
                offset_bytes,
                reason,
            } => write!(
                f,
                "corrupt segment header at byte offset {offset_bytes}: {reason:?}"
            ),
            Self::WrongKey { reason } => write!(f, "wrong key: {reason:?}"),
            Self::UnknownVersion { found } => write!(f, "unknown format version {found}"),
        }
    }
}
