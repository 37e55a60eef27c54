//! Streaming, verifying readers: [`FrameReader`] walks raw frames of one segment,
//! [`WalReader`] decodes them as records, [`scan`] returns the [`Recovery`]
//! outcome. None of them holds more than one frame plus a read chunk in memory.

use std::marker::PhantomData;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::ack::{Watermark, read_watermark};
use crate::error::WalError;
use crate::format::AckPoint;
use crate::format::{
    ENTRY_HASH_LEN_BYTES, EntryHash, FRAME_HEADER_LEN_BYTES, FRAME_OVERHEAD_BYTES,
    HEADER_LEN_BYTES, HeaderProblem, MAX_PAYLOAD_BYTES, SegmentHeader, WalKey, decode_frame_header,
    entry_hash, hashes_equal,
};
use crate::recovery::{Acknowledged, CorruptReason, KeyMismatch, Recovery, TornReason, WalAnchor};
use crate::segmented::SegmentedFrames;
use crate::storage::{FileStorage, FsDirectory, Storage};

/// How many bytes the reader asks storage for at a time.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The largest window the reader ever buffers: one maximal frame.
const MAX_WINDOW_BYTES: usize = MAX_PAYLOAD_BYTES as usize + FRAME_OVERHEAD_BYTES;

/// One verified frame, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its sequence number.
    pub sequence: u64,
    /// Byte offset of its frame header in the segment.
    pub offset_bytes: u64,
    /// The postcard payload.
    pub payload: &'a [u8],
    /// Its verified entry hash.
    pub hash: EntryHash,
    /// First sequence of the segment it is in; `None` when read from a single
    /// file.
    pub segment: Option<u64>,
}

/// Where a verified frame sits in the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameMeta {
    sequence: u64,
    offset_bytes: u64,
    payload_start: usize,
    payload_end: usize,
    hash: EntryHash,
}

/// One verified, decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<T> {
    /// Its sequence number.
    pub sequence: u64,
    /// Byte offset of its frame header in its segment (or file).
    pub offset_bytes: u64,
    /// First sequence of the segment it is in; `None` when read from a single
    /// file.
    pub segment: Option<u64>,
    /// Its entry hash.
    pub hash: EntryHash,
    /// The record.
    pub record: T,
}

impl FrameMeta {
    /// Byte offset of the frame header.
    pub(crate) fn offset_bytes(&self) -> u64 {
        self.offset_bytes
    }
}

/// Where verified frames come from: one segment file ([`FrameReader`]), a
/// segment directory ([`crate::SegmentedFrames`]), or whichever a path is
/// ([`LogFrames`]). Every decoding reader and the audited replay are written
/// once over it.
pub trait FrameSource {
    /// The next verified frame; `Ok(None)` at a clean end or a torn tail (see
    /// [`FrameSource::outcome`]).
    ///
    /// # Errors
    /// [`WalError::Refused`] on corruption (and on every call after it);
    /// [`WalError::Io`] when storage fails.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WalError>;

    /// The outcome, once the end or a refusal was reached.
    fn outcome(&self) -> Option<&Recovery>;

    /// The position after the last verified frame.
    fn position(&self) -> WalAnchor;

    /// Marks the frame just returned as undecodable and returns the refusal
    /// ([`CorruptReason::Undecodable`]), which later calls repeat.
    fn refuse_undecodable(&mut self, sequence: u64, offset_bytes: u64) -> WalError;
}

/// The one decoding step every reader shares: the next verified frame of
/// `frames`, decoded as `T`, or the refusal when its payload does not decode.
///
/// # Errors
/// As [`FrameSource::next_frame`], plus [`CorruptReason::Undecodable`].
pub fn decode_next<T: DeserializeOwned, F: FrameSource + ?Sized>(
    frames: &mut F,
) -> Result<Option<Entry<T>>, WalError> {
    let Some(frame) = frames.next_frame()? else {
        return Ok(None);
    };
    let (sequence, offset_bytes, hash, segment) = (
        frame.sequence,
        frame.offset_bytes,
        frame.hash,
        frame.segment,
    );
    match decode_record::<T>(frame.payload) {
        Ok(record) => Ok(Some(Entry {
            sequence,
            offset_bytes,
            segment,
            hash,
            record,
        })),
        Err(_) => Err(frames.refuse_undecodable(sequence, offset_bytes)),
    }
}

/// Reads and verifies the frames of one segment, in order.
#[derive(Debug)]
pub struct FrameReader<S> {
    storage: S,
    key: Option<WalKey>,
    header: SegmentHeader,
    file_len_bytes: u64,
    buf: Vec<u8>,
    buf_offset_bytes: u64,
    offset_bytes: u64,
    position: WalAnchor,
    anchor: Option<WalAnchor>,
    last_segment: bool,
    started: bool,
    outcome: Option<Recovery>,
    ack: AckSpan,
    acknowledged: Acknowledged,
    segment: Option<u64>,
}

/// How a segment relates to the log's acknowledged position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckSpan {
    /// No watermark: a bad final frame cannot be told from a torn write.
    Unknown,
    /// The acknowledged position is in this segment.
    Through(AckPoint),
    /// The acknowledged position is in a later segment: all of this one is
    /// acknowledged.
    Whole(AckPoint),
    /// The acknowledged position is in an earlier segment: none of this one is.
    After,
}

/// Checks a header against the key; the refusal, if any.
fn check_key(header: &SegmentHeader, key: Option<&WalKey>) -> Result<(), Recovery> {
    let reason = match (header.keyed, key) {
        (true, None) => KeyMismatch::KeyRequired,
        (false, Some(_)) => KeyMismatch::LogNotKeyed,
        (true, Some(key)) if !hashes_equal(&header.key_fingerprint, &key.fingerprint()) => {
            KeyMismatch::DifferentKey
        }
        (false, None) if header.key_fingerprint != [0; ENTRY_HASH_LEN_BYTES] => {
            return Err(Recovery::Corrupt {
                sequence: None,
                offset_bytes: 0,
                reason: CorruptReason::BadHeader,
            });
        }
        _ => return Ok(()),
    };
    Err(Recovery::WrongKey { reason })
}

/// Decodes a segment header from its bytes, mapping each problem to its refusal.
fn decode_header(bytes: &[u8]) -> Result<SegmentHeader, Recovery> {
    let corrupt = |reason| Recovery::Corrupt {
        sequence: None,
        offset_bytes: 0,
        reason,
    };
    let Some(array) = bytes
        .get(..HEADER_LEN_BYTES)
        .and_then(|prefix| <&[u8; HEADER_LEN_BYTES]>::try_from(prefix).ok())
    else {
        return Err(corrupt(CorruptReason::BadMagic));
    };
    SegmentHeader::decode(array).map_err(|problem| match problem {
        HeaderProblem::BadMagic => corrupt(CorruptReason::BadMagic),
        HeaderProblem::UnknownVersion(found) => Recovery::UnknownVersion { found },
        HeaderProblem::Checksum => corrupt(CorruptReason::BadHeader),
    })
}

impl<S: Storage> FrameReader<S> {
    /// Reads and checks the segment header.
    ///
    /// # Errors
    /// [`WalError::Refused`] for a bad header, an unknown version or a wrong key;
    /// [`WalError::Io`] when storage fails.
    pub fn new(mut storage: S, key: Option<&WalKey>) -> Result<Self, WalError> {
        let file_len_bytes = storage.len_bytes()?;
        let mut header_bytes = [0u8; HEADER_LEN_BYTES];
        let mut have = 0usize;
        while have < HEADER_LEN_BYTES {
            let rest = header_bytes.get_mut(have..).unwrap_or_default();
            let n = storage.read_at(have as u64, rest)?;
            if n == 0 {
                break;
            }
            have += n;
        }
        let header = decode_header(header_bytes.get(..have).unwrap_or_default())
            .map_err(WalError::Refused)?;
        check_key(&header, key).map_err(WalError::Refused)?;
        Ok(Self {
            storage,
            key: key.cloned(),
            header,
            file_len_bytes,
            buf: Vec::new(),
            buf_offset_bytes: HEADER_LEN_BYTES as u64,
            offset_bytes: HEADER_LEN_BYTES as u64,
            position: WalAnchor {
                next_sequence: header.first_sequence,
                head_hash: header.prev_hash,
            },
            anchor: None,
            last_segment: true,
            started: false,
            outcome: None,
            ack: AckSpan::Unknown,
            acknowledged: Acknowledged::Unknown,
            segment: None,
        })
    }

    /// Checks the segment against the log's acknowledgement watermark as it
    /// reads: damage at or before the acknowledged position is refused, never
    /// cut, and only what follows it may be a torn tail (zero-filled or not).
    /// `None` keeps the rule for logs without a watermark.
    #[must_use]
    pub fn with_watermark(self, point: Option<AckPoint>) -> Self {
        let acknowledged =
            point.map_or(Acknowledged::Unknown, |point| Acknowledged::known(point, 0));
        self.with_watermark_reported(point, acknowledged)
    }

    /// [`FrameReader::with_watermark`], reporting `acknowledged`.
    pub(crate) fn with_watermark_reported(
        self,
        point: Option<AckPoint>,
        acknowledged: Acknowledged,
    ) -> Self {
        let first = self.header.first_sequence;
        let span = match point {
            None => AckSpan::Unknown,
            Some(point) if point.segment_first_sequence == first => AckSpan::Through(point),
            Some(point) if point.segment_first_sequence > first => AckSpan::Whole(point),
            Some(_) => AckSpan::After,
        };
        self.with_ack_span(span, acknowledged)
    }

    /// Sets how this segment relates to the acknowledged position.
    pub(crate) fn with_ack_span(mut self, span: AckSpan, acknowledged: Acknowledged) -> Self {
        self.ack = span;
        self.acknowledged = acknowledged;
        self
    }

    /// Names the segment the frames come from (for [`Frame::segment`]).
    pub(crate) fn in_segment(mut self, first_sequence: u64) -> Self {
        self.segment = Some(first_sequence);
        self
    }

    /// Everything before this byte offset is acknowledged.
    fn acked_until(&self) -> u64 {
        match self.ack {
            AckSpan::Through(point) => point.end_offset_bytes,
            AckSpan::Whole(_) => u64::MAX,
            AckSpan::Unknown | AckSpan::After => 0,
        }
    }

    /// The number of records the watermark vouches for.
    fn acked_records(&self) -> u64 {
        match self.ack {
            AckSpan::Through(point) | AckSpan::Whole(point) => point.anchor.next_sequence,
            AckSpan::Unknown | AckSpan::After => 0,
        }
    }

    /// Whether a watermark exists (so garbage after it is a torn tail).
    fn ack_known(&self) -> bool {
        !matches!(self.ack, AckSpan::Unknown)
    }

    /// Checks the watermark at a frame boundary `end_bytes` reached at
    /// `position`, or a frame that straddles the acknowledged position.
    fn check_ack(
        &mut self,
        start_bytes: u64,
        end_bytes: u64,
        position: WalAnchor,
    ) -> Result<(), WalError> {
        let AckSpan::Through(point) = self.ack else {
            return Ok(());
        };
        let at_point = end_bytes == point.end_offset_bytes;
        let straddles = start_bytes < point.end_offset_bytes && end_bytes > point.end_offset_bytes;
        if straddles
            || (at_point
                && (position.next_sequence != point.anchor.next_sequence
                    || !hashes_equal(&position.head_hash, &point.anchor.head_hash)))
        {
            return Err(self.refuse(
                Some(position.next_sequence.saturating_sub(1)),
                start_bytes,
                CorruptReason::AckMismatch,
            ));
        }
        Ok(())
    }

    /// A frame at `offset_bytes` is incomplete: a cut suffix when the watermark
    /// vouches for it, a torn tail otherwise.
    fn incomplete(
        &mut self,
        sequence: u64,
        offset_bytes: u64,
        torn: TornReason,
    ) -> Result<(), WalError> {
        if offset_bytes < self.acked_until() {
            let anchored_records = self.acked_records();
            return Err(self.refuse(
                Some(sequence),
                offset_bytes,
                CorruptReason::SuffixMissing {
                    anchored_records,
                    found_records: sequence,
                },
            ));
        }
        self.finish_tail(Some(torn))
    }

    /// Checks the log against a trusted anchor as it reads: the record at the
    /// anchor's position must have the anchor's hash, and (if this is the last
    /// segment) the log must reach the anchor.
    #[must_use]
    pub fn with_anchor(mut self, anchor: Option<WalAnchor>) -> Self {
        self.anchor = anchor;
        self
    }

    /// Marks this segment as followed by another: reaching its end does not
    /// check the anchor's suffix, and a bad tail is corruption, not a torn write
    /// (a segment is synced before the next one is created).
    #[must_use]
    pub fn not_last_segment(mut self) -> Self {
        self.last_segment = false;
        self
    }

    /// The segment header.
    #[must_use]
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// The position after the last verified frame.
    #[must_use]
    pub fn position(&self) -> WalAnchor {
        self.position
    }

    /// The outcome, once the reader has reached the end or a refusal.
    #[must_use]
    pub fn outcome(&self) -> Option<&Recovery> {
        self.outcome.as_ref()
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Ensures `buf` holds file bytes `[offset, offset + len)`; `None` when the
    /// file ends first.
    fn window(&mut self, offset_bytes: u64, len_bytes: usize) -> Result<Option<usize>, WalError> {
        debug_assert!(len_bytes <= MAX_WINDOW_BYTES);
        let end = offset_bytes.saturating_add(len_bytes as u64);
        if end > self.file_len_bytes {
            return Ok(None);
        }
        let buf_end = self.buf_offset_bytes + self.buf.len() as u64;
        if offset_bytes < self.buf_offset_bytes || end > buf_end {
            if offset_bytes >= self.buf_offset_bytes && offset_bytes <= buf_end {
                let consumed = usize::try_from(offset_bytes - self.buf_offset_bytes)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                self.buf.drain(..consumed);
            } else {
                self.buf.clear();
            }
            self.buf_offset_bytes = offset_bytes;
            let left_in_file = usize::try_from(self.file_len_bytes.saturating_sub(offset_bytes))
                .unwrap_or(usize::MAX);
            let want = len_bytes.max(READ_CHUNK_BYTES).min(left_in_file);
            let mut have = self.buf.len();
            self.buf.resize(want, 0);
            while have < want {
                let target = self.buf.get_mut(have..want).unwrap_or_default();
                let n = self.storage.read_at(offset_bytes + have as u64, target)?;
                if n == 0 {
                    break;
                }
                have += n;
            }
            self.buf.truncate(have);
            if have < len_bytes {
                // The file shrank under us; treat the missing bytes as absent.
                self.file_len_bytes = offset_bytes + have as u64;
                return Ok(None);
            }
        }
        Ok(usize::try_from(offset_bytes - self.buf_offset_bytes).ok())
    }

    /// True when every byte from `offset_bytes` to the end of the file is zero.
    fn rest_is_zero(&mut self, offset_bytes: u64) -> Result<bool, WalError> {
        let mut at = offset_bytes;
        while at < self.file_len_bytes {
            let len = usize::try_from(self.file_len_bytes - at)
                .unwrap_or(usize::MAX)
                .min(READ_CHUNK_BYTES);
            let Some(start) = self.window(at, len)? else {
                return Ok(true);
            };
            if self
                .buf
                .get(start..start + len)
                .is_none_or(|chunk| chunk.iter().any(|b| *b != 0))
            {
                return Ok(false);
            }
            at += len as u64;
        }
        Ok(true)
    }

    fn finish_tail(&mut self, torn: Option<TornReason>) -> Result<(), WalError> {
        if let Some(anchor) = self.anchor
            && self.last_segment
            && self.position.next_sequence < anchor.next_sequence
        {
            return Err(self.refuse(
                Some(self.position.next_sequence),
                self.offset_bytes,
                CorruptReason::SuffixMissing {
                    anchored_records: anchor.next_sequence,
                    found_records: self.position.next_sequence,
                },
            ));
        }
        let outcome = match torn {
            None => Recovery::Clean {
                anchor: self.position,
                len_bytes: self.file_len_bytes,
                acknowledged: self.acknowledged,
            },
            Some(reason) if self.last_segment => Recovery::TornTail {
                anchor: self.position,
                valid_len_bytes: self.offset_bytes,
                cut_bytes: self.file_len_bytes.saturating_sub(self.offset_bytes),
                reason,
                acknowledged: self.acknowledged,
            },
            Some(_) => {
                return Err(self.refuse(
                    Some(self.position.next_sequence),
                    self.offset_bytes,
                    CorruptReason::HashMismatch,
                ));
            }
        };
        self.outcome = Some(outcome);
        Ok(())
    }

    /// Records a refusal and returns it as an error.
    fn refuse(
        &mut self,
        sequence: Option<u64>,
        offset_bytes: u64,
        reason: CorruptReason,
    ) -> WalError {
        let recovery = Recovery::Corrupt {
            sequence,
            offset_bytes,
            reason,
        };
        self.outcome = Some(recovery.clone());
        WalError::Refused(recovery)
    }

    /// Marks the frame just returned as undecodable and returns the refusal.
    pub(crate) fn refuse_previous(&mut self, sequence: u64, offset_bytes: u64) -> WalError {
        self.refuse(Some(sequence), offset_bytes, CorruptReason::Undecodable)
    }

    /// The next verified frame; `Ok(None)` at a clean end or a torn tail (see
    /// [`FrameReader::outcome`]).
    ///
    /// # Errors
    /// [`WalError::Refused`] on corruption (and on every call after it);
    /// [`WalError::Io`] when storage fails.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WalError> {
        Ok(self.advance()?.map(|meta| self.frame(meta)))
    }

    /// The watermark this reader checks against.
    #[must_use]
    pub fn acknowledged(&self) -> Acknowledged {
        self.acknowledged
    }

    /// The frame `meta` describes, borrowed from the buffer.
    pub(crate) fn frame(&self, meta: FrameMeta) -> Frame<'_> {
        Frame {
            sequence: meta.sequence,
            offset_bytes: meta.offset_bytes,
            payload: self
                .buf
                .get(meta.payload_start..meta.payload_end)
                .unwrap_or_default(),
            hash: meta.hash,
            segment: self.segment,
        }
    }

    /// Verifies the next frame and says where it is in the buffer.
    pub(crate) fn advance(&mut self) -> Result<Option<FrameMeta>, WalError> {
        match &self.outcome {
            Some(refusal @ Recovery::Corrupt { .. }) => {
                return Err(WalError::Refused(refusal.clone()));
            }
            Some(_) => return Ok(None),
            None => {}
        }
        if !self.started {
            self.started = true;
            self.check_anchor_at_start()?;
        }
        let offset = self.offset_bytes;
        let sequence = self.position.next_sequence;
        if offset >= self.file_len_bytes {
            let acked_missing = match self.ack {
                AckSpan::Through(point) => offset < point.end_offset_bytes,
                AckSpan::Whole(_) => self.last_segment,
                AckSpan::Unknown | AckSpan::After => false,
            };
            if acked_missing {
                self.incomplete(sequence, offset, TornReason::IncompleteHeader)?;
                return Ok(None);
            }
            self.finish_tail(None)?;
            return Ok(None);
        }
        let Some(start) = self.window(offset, FRAME_HEADER_LEN_BYTES)? else {
            self.incomplete(sequence, offset, TornReason::IncompleteHeader)?;
            return Ok(None);
        };
        let mut frame_header = [0u8; FRAME_HEADER_LEN_BYTES];
        frame_header.copy_from_slice(
            self.buf
                .get(start..start + FRAME_HEADER_LEN_BYTES)
                .unwrap_or(&[0; FRAME_HEADER_LEN_BYTES]),
        );
        let Some(payload_len) = decode_frame_header(&frame_header) else {
            if offset < self.acked_until() {
                return Err(self.refuse(Some(sequence), offset, CorruptReason::BadLength));
            }
            if self.last_segment && self.rest_is_zero(offset)? {
                self.finish_tail(Some(TornReason::ZeroFilled))?;
                return Ok(None);
            }
            if self.last_segment && self.ack_known() {
                self.finish_tail(Some(TornReason::Garbage))?;
                return Ok(None);
            }
            return Err(self.refuse(Some(sequence), offset, CorruptReason::BadLength));
        };
        let payload_len = payload_len as usize;
        let frame_len = payload_len + FRAME_OVERHEAD_BYTES;
        let Some(start) = self.window(offset, frame_len)? else {
            self.incomplete(sequence, offset, TornReason::IncompleteFrame)?;
            return Ok(None);
        };
        let payload_start = start + FRAME_HEADER_LEN_BYTES;
        let hash_start = payload_start + payload_len;
        let mut stored = [0u8; ENTRY_HASH_LEN_BYTES];
        stored.copy_from_slice(
            self.buf
                .get(hash_start..hash_start + ENTRY_HASH_LEN_BYTES)
                .unwrap_or(&[0; ENTRY_HASH_LEN_BYTES]),
        );
        let payload = self.buf.get(payload_start..hash_start).unwrap_or_default();
        let computed = entry_hash(
            self.key.as_ref(),
            &self.position.head_hash,
            sequence,
            payload,
        );
        let frame_end = offset + frame_len as u64;
        if !hashes_equal(&computed, &stored) {
            if offset < self.acked_until() {
                return Err(self.refuse(Some(sequence), offset, CorruptReason::HashMismatch));
            }
            if frame_end == self.file_len_bytes {
                self.finish_tail(Some(TornReason::BadFinalFrame))?;
                return Ok(None);
            }
            if self.last_segment && self.ack_known() {
                self.finish_tail(Some(TornReason::Garbage))?;
                return Ok(None);
            }
            return Err(self.refuse(Some(sequence), offset, CorruptReason::HashMismatch));
        }
        let Some(next_sequence) = sequence.checked_add(1) else {
            return Err(self.refuse(Some(sequence), offset, CorruptReason::BadHeader));
        };
        if let Some(anchor) = self.anchor
            && anchor.next_sequence == next_sequence
            && !hashes_equal(&anchor.head_hash, &computed)
        {
            return Err(self.refuse(Some(sequence), offset, CorruptReason::AnchorMismatch));
        }
        let position = WalAnchor {
            next_sequence,
            head_hash: computed,
        };
        self.check_ack(offset, frame_end, position)?;
        self.position = position;
        self.offset_bytes = frame_end;
        Ok(Some(FrameMeta {
            sequence,
            offset_bytes: offset,
            payload_start,
            payload_end: hash_start,
            hash: computed,
        }))
    }

    /// Checks the anchor against the segment start (an anchor that vouches for
    /// exactly the records before this segment).
    fn check_anchor_at_start(&mut self) -> Result<(), WalError> {
        if let Some(anchor) = self.anchor
            && anchor.next_sequence == self.header.first_sequence
            && !hashes_equal(&anchor.head_hash, &self.header.prev_hash)
        {
            return Err(self.refuse(
                Some(self.header.first_sequence),
                HEADER_LEN_BYTES as u64,
                CorruptReason::AnchorMismatch,
            ));
        }
        let start = self.position;
        self.check_ack(HEADER_LEN_BYTES as u64, HEADER_LEN_BYTES as u64, start)
    }

    /// Reads to the end without decoding and returns the outcome.
    ///
    /// # Errors
    /// [`WalError::Io`] when storage fails. Refusals are returned as `Ok`.
    pub fn scan_to_end(&mut self) -> Result<Recovery, WalError> {
        loop {
            match self.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => return refusal_or_error(error),
            }
        }
        self.outcome.clone().ok_or(WalError::Closed)
    }
}

/// Turns a refusal into its outcome and passes other errors on.
pub(crate) fn refusal_or_error(error: WalError) -> Result<Recovery, WalError> {
    match error {
        WalError::Refused(recovery) => Ok(recovery),
        other => Err(other),
    }
}

/// Reads and verifies the records of one segment, decoding each as `T`.
///
/// Iterating yields each verified record; it stops at the end or a torn tail
/// (see [`WalReader::outcome`]) and yields one `Err` at a refusal.
#[derive(Debug)]
pub struct WalReader<T, S = FileStorage> {
    frames: FrameReader<S>,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> WalReader<T, FileStorage> {
    /// Opens the log file at `path` for reading (no lock is taken).
    ///
    /// # Errors
    /// See [`FrameReader::new`].
    ///
    /// The file's watermark sidecar (`<file>.ack`), when present, says how far
    /// the log was acknowledged: damage at or before that is refused, never
    /// taken for a torn tail. Without one the outcome says the acknowledged
    /// position is unknown.
    pub fn open(path: &Path, key: Option<&WalKey>) -> Result<Self, WalError> {
        Ok(Self {
            frames: open_file_frames(path, key)?,
            _record: PhantomData,
        })
    }
}

/// Opens a single log file for reading with its watermark sidecar, if any.
fn open_file_frames(
    path: &Path,
    key: Option<&WalKey>,
) -> Result<FrameReader<FileStorage>, WalError> {
    // The watermark first, then the file (and its length): the writer syncs the
    // data before the watermark that covers it, so a reader racing it never finds
    // a watermark beyond the bytes it reads.
    let watermark = read_watermark(FileStorage::open_ack_for(path)?, key)?;
    let frames = FrameReader::new(FileStorage::open_read(path)?, key)?;
    if matches!(watermark, Watermark::Damaged) {
        return Err(WalError::Refused(Recovery::Corrupt {
            sequence: None,
            offset_bytes: 0,
            reason: CorruptReason::AckDamaged,
        }));
    }
    Ok(frames.with_watermark_reported(watermark.point(), watermark.acknowledged()))
}

impl<T: DeserializeOwned, S: Storage> WalReader<T, S> {
    /// Reads a log from any storage.
    ///
    /// # Errors
    /// See [`FrameReader::new`].
    pub fn from_storage(storage: S, key: Option<&WalKey>) -> Result<Self, WalError> {
        Ok(Self {
            frames: FrameReader::new(storage, key)?,
            _record: PhantomData,
        })
    }

    /// Checks the log against a trusted anchor while reading.
    #[must_use]
    pub fn with_anchor(mut self, anchor: Option<WalAnchor>) -> Self {
        self.frames = self.frames.with_anchor(anchor);
        self
    }

    /// The outcome, once iteration has ended.
    #[must_use]
    pub fn outcome(&self) -> Option<&Recovery> {
        self.frames.outcome()
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.frames.into_storage()
    }

    /// The position after the last verified record.
    #[must_use]
    pub fn position(&self) -> WalAnchor {
        self.frames.position()
    }

    /// The next verified record.
    ///
    /// # Errors
    /// As for [`FrameReader::next_frame`], plus a refusal with
    /// [`CorruptReason::Undecodable`] when a verified payload does not decode.
    pub fn next_entry(&mut self) -> Result<Option<Entry<T>>, WalError> {
        decode_next(&mut self.frames)
    }

    /// Checks the log against its acknowledgement watermark (see
    /// [`FrameReader::with_watermark`]).
    #[must_use]
    pub fn with_watermark(mut self, point: Option<AckPoint>) -> Self {
        self.frames = self.frames.with_watermark(point);
        self
    }

    /// The frames underneath, for a driver that works on any [`FrameSource`].
    pub fn frames_mut(&mut self) -> &mut FrameReader<S> {
        &mut self.frames
    }

    /// Reads to the end, decoding every record, and returns the outcome.
    ///
    /// # Errors
    /// [`WalError::Io`] when storage fails. Refusals are returned as `Ok`.
    pub fn scan_to_end(&mut self) -> Result<Recovery, WalError> {
        loop {
            match self.next_entry() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => return refusal_or_error(error),
            }
        }
        self.frames.outcome.clone().ok_or(WalError::Closed)
    }
}

impl<T: DeserializeOwned, S: Storage> Iterator for WalReader<T, S> {
    type Item = Result<Entry<T>, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

/// Decodes one record payload: postcard, and every byte must be used.
///
/// # Errors
/// The decoder's complaint, or [`postcard::Error::DeserializeBadEncoding`] when
/// bytes are left over.
pub fn decode_record<T: DeserializeOwned>(payload: &[u8]) -> Result<T, postcard::Error> {
    let (record, rest) = postcard::take_from_bytes::<T>(payload)?;
    if rest.is_empty() {
        Ok(record)
    } else {
        Err(postcard::Error::DeserializeBadEncoding)
    }
}

/// Scans a whole segment, verifying every frame and decoding every record as `T`,
/// and returns what it found. Refusals (corruption, wrong key, unknown version)
/// come back as `Ok`; only storage failures are errors.
///
/// # Errors
/// [`WalError::Io`] when storage fails.
pub fn scan<T: DeserializeOwned, S: Storage>(
    storage: S,
    key: Option<&WalKey>,
    anchor: Option<WalAnchor>,
) -> Result<Recovery, WalError> {
    match WalReader::<T, S>::from_storage(storage, key) {
        Ok(reader) => reader.with_anchor(anchor).scan_to_end(),
        Err(error) => refusal_or_error(error),
    }
}

/// Like [`scan`] but checks only the chain, without decoding records.
///
/// # Errors
/// [`WalError::Io`] when storage fails.
pub fn scan_frames<S: Storage>(
    storage: S,
    key: Option<&WalKey>,
    anchor: Option<WalAnchor>,
) -> Result<Recovery, WalError> {
    match FrameReader::new(storage, key) {
        Ok(reader) => reader.with_anchor(anchor).scan_to_end(),
        Err(error) => refusal_or_error(error),
    }
}

impl<S: Storage> FrameSource for FrameReader<S> {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WalError> {
        FrameReader::next_frame(self)
    }

    fn outcome(&self) -> Option<&Recovery> {
        FrameReader::outcome(self)
    }

    fn position(&self) -> WalAnchor {
        FrameReader::position(self)
    }

    fn refuse_undecodable(&mut self, sequence: u64, offset_bytes: u64) -> WalError {
        self.refuse_previous(sequence, offset_bytes)
    }
}

/// The frames of a log on disk, whichever shape it has: one segment file (with
/// its `<file>.ack` sidecar, if any) or a segment directory (with its `ACK`
/// file, if any). [`open_log`] picks by what the path is.
#[derive(Debug)]
pub enum LogFrames {
    // Both boxed: the readers are large and of very different sizes.
    /// A single segment file.
    File(Box<FrameReader<FileStorage>>),
    /// A directory of segments.
    Dir(Box<SegmentedFrames<FsDirectory>>),
}

impl LogFrames {
    /// Opens the log at `path`: a directory is read as segments, anything else
    /// as one segment file. Nothing is created.
    ///
    /// # Errors
    /// [`WalError::NotFound`] when nothing is at `path`; a refusal of the file
    /// header, key or watermark; an I/O error.
    pub fn open(
        path: &Path,
        key: Option<&WalKey>,
        anchor: Option<WalAnchor>,
    ) -> Result<Self, WalError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => Ok(Self::Dir(Box::new(SegmentedFrames::new(
                FsDirectory::new(path)?,
                key,
                anchor,
            )?))),
            Ok(_) => Ok(Self::File(Box::new(
                open_file_frames(path, key)?.with_anchor(anchor),
            ))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(WalError::NotFound {
                path: path.to_path_buf(),
            }),
            Err(error) => Err(WalError::Io(error)),
        }
    }

    /// Reads to the end without decoding and returns the outcome.
    ///
    /// # Errors
    /// [`WalError::Io`] when storage fails. Refusals are returned as `Ok`.
    pub fn scan_to_end(&mut self) -> Result<Recovery, WalError> {
        match self {
            Self::File(frames) => frames.scan_to_end(),
            Self::Dir(frames) => frames.scan_to_end(),
        }
    }
}

impl FrameSource for LogFrames {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WalError> {
        match self {
            Self::File(frames) => frames.next_frame(),
            Self::Dir(frames) => frames.next_frame(),
        }
    }

    fn outcome(&self) -> Option<&Recovery> {
        match self {
            Self::File(frames) => frames.outcome(),
            Self::Dir(frames) => frames.outcome(),
        }
    }

    fn position(&self) -> WalAnchor {
        match self {
            Self::File(frames) => frames.position(),
            Self::Dir(frames) => frames.position(),
        }
    }

    fn refuse_undecodable(&mut self, sequence: u64, offset_bytes: u64) -> WalError {
        match self {
            Self::File(frames) => {
                FrameSource::refuse_undecodable(&mut **frames, sequence, offset_bytes)
            }
            Self::Dir(frames) => {
                FrameSource::refuse_undecodable(&mut **frames, sequence, offset_bytes)
            }
        }
    }
}

/// Decodes the records of any [`FrameSource`] as `T`: iterating yields each
/// verified record with its sequence, byte offset and segment, stops at the end
/// or a torn tail (see [`LogReader::outcome`]) and yields one `Err` at a refusal.
#[derive(Debug)]
pub struct LogReader<T, F = LogFrames> {
    frames: F,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned, F: FrameSource> LogReader<T, F> {
    /// Decodes the frames of `frames`.
    pub fn new(frames: F) -> Self {
        Self {
            frames,
            _record: PhantomData,
        }
    }

    /// The next verified record.
    ///
    /// # Errors
    /// As [`decode_next`].
    pub fn next_entry(&mut self) -> Result<Option<Entry<T>>, WalError> {
        decode_next(&mut self.frames)
    }

    /// The outcome, once iteration has ended.
    #[must_use]
    pub fn outcome(&self) -> Option<&Recovery> {
        self.frames.outcome()
    }

    /// The position after the last verified record.
    #[must_use]
    pub fn position(&self) -> WalAnchor {
        self.frames.position()
    }

    /// The frames underneath.
    pub fn frames_mut(&mut self) -> &mut F {
        &mut self.frames
    }

    /// Gives the frames back.
    pub fn into_frames(self) -> F {
        self.frames
    }

    /// Reads to the end, decoding every record, and returns the outcome.
    ///
    /// # Errors
    /// [`WalError::Io`] when storage fails. Refusals are returned as `Ok`.
    pub fn scan_to_end(&mut self) -> Result<Recovery, WalError> {
        loop {
            match self.next_entry() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => return refusal_or_error(error),
            }
        }
        self.frames.outcome().cloned().ok_or(WalError::Closed)
    }
}

impl<T: DeserializeOwned, F: FrameSource> Iterator for LogReader<T, F> {
    type Item = Result<Entry<T>, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

/// Opens the log at `path` for reading, whichever shape it has (a segment
/// directory or one segment file, see [`LogFrames::open`]), decoding records as
/// `T` and checking them against `anchor` and the log's watermark.
///
/// # Errors
/// As [`LogFrames::open`].
pub fn open_log<T: DeserializeOwned>(
    path: &Path,
    key: Option<&WalKey>,
    anchor: Option<WalAnchor>,
) -> Result<LogReader<T, LogFrames>, WalError> {
    Ok(LogReader::new(LogFrames::open(path, key, anchor)?))
}
