//! Reading a log split into segments: [`SegmentedReader`] walks every segment of a
//! [`Directory`] in order and checks that each one starts exactly where the
//! previous one ended (sequence number and entry hash).

use std::marker::PhantomData;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::ack::{Watermark, read_watermark};
use crate::error::WalError;
use crate::format::{AckPoint, HEADER_LEN_BYTES, WalKey, hashes_equal};
use crate::reader::{
    AckSpan, Entry, Frame, FrameReader, FrameSource, decode_next, refusal_or_error,
};
use crate::recovery::{Acknowledged, CorruptReason, Recovery, WalAnchor};
use crate::storage::{Directory, FsDirectory};

/// Verifies the frames of every segment in a directory, in order.
#[derive(Debug)]
pub struct SegmentedFrames<D: Directory> {
    dir: D,
    key: Option<WalKey>,
    anchor: Option<WalAnchor>,
    segments: Vec<u64>,
    next_index: usize,
    current: Option<FrameReader<D::Storage>>,
    position: WalAnchor,
    outcome: Option<Recovery>,
    start_anchor: Option<WalAnchor>,
    watermark: Watermark<D::Storage>,
    acknowledged: Acknowledged,
    ack_point: Option<AckPoint>,
}

impl<D: Directory> SegmentedFrames<D> {
    /// Lists the segments of `dir` and reads its acknowledgement watermark (the
    /// `ACK` file, if any); no segment is read yet.
    ///
    /// # Errors
    /// [`WalError::Io`] when the directory cannot be listed or the watermark
    /// cannot be read.
    pub fn new(dir: D, key: Option<&WalKey>, anchor: Option<WalAnchor>) -> Result<Self, WalError> {
        // The watermark is read before the segments are listed and measured: a
        // writer syncs data before the watermark that covers it, so a reader racing
        // a live writer never finds a watermark beyond the bytes it then reads.
        let watermark = read_watermark(dir.open_ack()?, key)?;
        let segments = dir.list_segments()?;
        let acknowledged = watermark.acknowledged();
        let ack_point = watermark.point();
        Ok(Self {
            dir,
            key: key.cloned(),
            anchor,
            segments,
            next_index: 0,
            current: None,
            position: WalAnchor::GENESIS,
            outcome: None,
            start_anchor: None,
            watermark,
            acknowledged,
            ack_point,
        })
    }

    /// Accepts a directory whose oldest segments were retired: with a trusted
    /// `start` anchor (for instance [`crate::RetiredSegments::start_anchor`]),
    /// the first segment may start at any sequence up to `start.next_sequence`,
    /// and the chain must pass through `start`. Without one, the first segment
    /// must start at sequence 0 ([`CorruptReason::GenesisMissing`] otherwise).
    #[must_use]
    pub fn with_start_anchor(mut self, start: Option<WalAnchor>) -> Self {
        self.start_anchor = start;
        self
    }

    /// What the directory's watermark vouches for.
    #[must_use]
    pub fn acknowledged(&self) -> Acknowledged {
        self.acknowledged
    }

    /// The watermark file and the generation of its current slot, when valid.
    pub(crate) fn take_watermark(&mut self) -> Option<(D::Storage, u64)> {
        std::mem::replace(&mut self.watermark, Watermark::Absent).into_parts()
    }

    /// Whether the directory has a watermark file that could not be read.
    pub(crate) fn watermark_damaged(&self) -> bool {
        matches!(self.watermark, Watermark::Damaged)
    }

    /// First sequence numbers of the segments, ascending.
    #[must_use]
    pub fn segments(&self) -> &[u64] {
        &self.segments
    }

    /// The position after the last verified frame.
    #[must_use]
    pub fn position(&self) -> WalAnchor {
        self.position
    }

    /// The outcome, once the end or a refusal was reached.
    #[must_use]
    pub fn outcome(&self) -> Option<&Recovery> {
        self.outcome.as_ref()
    }

    /// Gives the directory back.
    pub fn into_dir(self) -> D {
        self.dir
    }

    fn refuse(&mut self, recovery: Recovery) -> WalError {
        self.outcome = Some(recovery.clone());
        WalError::Refused(recovery)
    }

    /// Opens the next segment and checks that it continues the chain; `false`
    /// when there is none.
    fn open_next(&mut self) -> Result<bool, WalError> {
        let Some(&first_sequence) = self.segments.get(self.next_index) else {
            return Ok(false);
        };
        let is_first = self.next_index == 0;
        let is_last = self.next_index + 1 == self.segments.len();
        self.next_index += 1;
        let storage = self.dir.open_segment(first_sequence)?;
        let reader = match FrameReader::new(storage, self.key.as_ref()) {
            Ok(reader) => reader,
            Err(WalError::Refused(recovery)) => return Err(self.refuse(recovery)),
            Err(other) => return Err(other),
        };
        let header = *reader.header();
        if is_first {
            self.check_first_segment(header.first_sequence)?;
            self.position = WalAnchor {
                next_sequence: header.first_sequence,
                head_hash: header.prev_hash,
            };
            if first_sequence == 0
                && !hashes_equal(&header.prev_hash, &WalAnchor::GENESIS.head_hash)
            {
                return Err(self.refuse(Recovery::Corrupt {
                    sequence: Some(0),
                    offset_bytes: HEADER_LEN_BYTES as u64,
                    reason: CorruptReason::SegmentChainBreak,
                }));
            }
        }
        if header.first_sequence != first_sequence
            || header.first_sequence != self.position.next_sequence
            || !hashes_equal(&header.prev_hash, &self.position.head_hash)
        {
            return Err(self.refuse(Recovery::Corrupt {
                sequence: Some(self.position.next_sequence),
                offset_bytes: HEADER_LEN_BYTES as u64,
                reason: CorruptReason::SegmentChainBreak,
            }));
        }
        self.check_start_anchor(self.position, HEADER_LEN_BYTES as u64)?;
        let span = match self.ack_point {
            None => AckSpan::Unknown,
            Some(point) if first_sequence < point.segment_first_sequence => AckSpan::Whole(point),
            Some(point) if first_sequence == point.segment_first_sequence => {
                AckSpan::Through(point)
            }
            Some(_) => AckSpan::After,
        };
        let reader = reader
            .with_anchor(self.anchor)
            .with_ack_span(span, self.acknowledged)
            .in_segment(first_sequence);
        self.current = Some(if is_last {
            reader
        } else {
            reader.not_last_segment()
        });
        Ok(true)
    }

    /// Checks, once the first segment's header has passed, that the log starts
    /// where it may and agrees with its watermark about which segment that is.
    fn check_first_segment(&mut self, first_sequence: u64) -> Result<(), WalError> {
        let corrupt = |sequence, reason| Recovery::Corrupt {
            sequence,
            offset_bytes: 0,
            reason,
        };
        let start_ok = first_sequence == 0
            || self
                .start_anchor
                .is_some_and(|start| first_sequence <= start.next_sequence);
        if !start_ok {
            return Err(self.refuse(corrupt(
                Some(first_sequence),
                CorruptReason::GenesisMissing { first_sequence },
            )));
        }
        if self.watermark_damaged() {
            return Err(self.refuse(corrupt(None, CorruptReason::AckDamaged)));
        }
        if let Some(point) = self.ack_point {
            let ack_segment = point.segment_first_sequence;
            let last = self.segments.last().copied().unwrap_or(first_sequence);
            let retired =
                ack_segment < first_sequence && point.anchor.next_sequence <= first_sequence;
            let present = self.segments.contains(&ack_segment);
            // A watermark in a segment after the last one is a cut suffix, found
            // at the end of the last segment; any other absent segment disagrees.
            if !(present || retired || ack_segment > last) {
                return Err(self.refuse(corrupt(
                    Some(point.anchor.next_sequence),
                    CorruptReason::AckMismatch,
                )));
            }
        }
        Ok(())
    }

    /// Checks the trusted start anchor at `position` (reached at `offset_bytes`).
    fn check_start_anchor(
        &mut self,
        position: WalAnchor,
        offset_bytes: u64,
    ) -> Result<(), WalError> {
        if let Some(start) = self.start_anchor
            && start.next_sequence == position.next_sequence
            && !hashes_equal(&start.head_hash, &position.head_hash)
        {
            return Err(self.refuse(Recovery::Corrupt {
                sequence: Some(position.next_sequence),
                offset_bytes,
                reason: CorruptReason::AnchorMismatch,
            }));
        }
        Ok(())
    }

    /// Checks at the end that the log reached the trusted start anchor.
    fn check_start_reached(&mut self) -> Result<(), WalError> {
        if let Some(start) = self.start_anchor
            && self.position.next_sequence < start.next_sequence
        {
            return Err(self.refuse(Recovery::Corrupt {
                sequence: Some(self.position.next_sequence),
                offset_bytes: 0,
                reason: CorruptReason::SuffixMissing {
                    anchored_records: start.next_sequence,
                    found_records: self.position.next_sequence,
                },
            }));
        }
        Ok(())
    }

    /// The next verified frame across segments; `Ok(None)` at the end (see
    /// [`SegmentedFrames::outcome`]).
    ///
    /// # Errors
    /// [`WalError::Refused`] on corruption or a break between segments;
    /// [`WalError::Io`] when storage fails.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WalError> {
        loop {
            match &self.outcome {
                Some(refusal @ Recovery::Corrupt { .. }) => {
                    return Err(WalError::Refused(refusal.clone()));
                }
                Some(_) => return Ok(None),
                None => {}
            }
            if self.current.is_none() && !self.open_next()? {
                self.finish_empty()?;
                return Ok(None);
            }
            let Some(reader) = self.current.as_mut() else {
                continue;
            };
            match reader.advance() {
                Ok(Some(meta)) => {
                    self.position = reader.position();
                    self.check_start_anchor(self.position, meta.offset_bytes())?;
                    return Ok(self.current.as_ref().map(|reader| reader.frame(meta)));
                }
                Ok(None) => {
                    if self.next_index >= self.segments.len() {
                        let outcome = reader.outcome().cloned();
                        self.check_start_reached()?;
                        self.outcome = outcome;
                        return Ok(None);
                    }
                    self.current = None;
                }
                Err(error) => {
                    if let WalError::Refused(recovery) = &error {
                        self.outcome = Some(recovery.clone());
                    }
                    return Err(error);
                }
            }
        }
    }

    /// The outcome of a directory without segments: an empty log, unless an
    /// anchor vouches for records.
    fn finish_empty(&mut self) -> Result<(), WalError> {
        if self.outcome.is_some() {
            return Ok(());
        }
        if self.watermark_damaged() {
            return Err(self.refuse(Recovery::Corrupt {
                sequence: None,
                offset_bytes: 0,
                reason: CorruptReason::AckDamaged,
            }));
        }
        let vouched = [
            self.anchor,
            self.start_anchor,
            self.ack_point.map(|point| point.anchor),
        ];
        if let Some(anchor) = vouched
            .into_iter()
            .flatten()
            .find(|anchor| anchor.next_sequence > 0)
        {
            return Err(self.refuse(Recovery::Corrupt {
                sequence: Some(0),
                offset_bytes: 0,
                reason: CorruptReason::SuffixMissing {
                    anchored_records: anchor.next_sequence,
                    found_records: 0,
                },
            }));
        }
        self.outcome = Some(Recovery::Clean {
            anchor: WalAnchor::GENESIS,
            len_bytes: 0,
            acknowledged: self.acknowledged,
        });
        Ok(())
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

/// Reads and verifies the records of every segment in a directory, decoding each
/// as `T`. Iterating yields each record, stops at the end or a torn tail and yields
/// one `Err` at a refusal.
#[derive(Debug)]
pub struct SegmentedReader<T, D: Directory = FsDirectory> {
    frames: SegmentedFrames<D>,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> SegmentedReader<T, FsDirectory> {
    /// Reads the segment directory at `path` (no lock is taken).
    ///
    /// # Errors
    /// [`WalError::Io`] when the directory cannot be listed.
    pub fn open(
        path: &Path,
        key: Option<&WalKey>,
        anchor: Option<WalAnchor>,
    ) -> Result<Self, WalError> {
        Self::from_dir(FsDirectory::new(path)?, key, anchor)
    }
}

impl<T: DeserializeOwned, D: Directory> SegmentedReader<T, D> {
    /// Reads any segment directory.
    ///
    /// # Errors
    /// [`WalError::Io`] when the directory cannot be listed.
    pub fn from_dir(
        dir: D,
        key: Option<&WalKey>,
        anchor: Option<WalAnchor>,
    ) -> Result<Self, WalError> {
        Ok(Self {
            frames: SegmentedFrames::new(dir, key, anchor)?,
            _record: PhantomData,
        })
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

    /// The next verified record.
    ///
    /// # Errors
    /// As [`SegmentedFrames::next_frame`], plus a refusal with
    /// [`CorruptReason::Undecodable`].
    pub fn next_entry(&mut self) -> Result<Option<Entry<T>>, WalError> {
        decode_next(&mut self.frames)
    }

    /// Accepts a directory whose oldest segments were retired (see
    /// [`SegmentedFrames::with_start_anchor`]).
    #[must_use]
    pub fn with_start_anchor(mut self, start: Option<WalAnchor>) -> Self {
        self.frames = self.frames.with_start_anchor(start);
        self
    }

    /// The frames underneath, for a driver that works on any [`FrameSource`].
    pub fn frames_mut(&mut self) -> &mut SegmentedFrames<D> {
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

impl<T: DeserializeOwned, D: Directory> Iterator for SegmentedReader<T, D> {
    type Item = Result<Entry<T>, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

/// Scans every segment of a directory, decoding records as `T`; refusals come
/// back as `Ok`.
///
/// # Errors
/// [`WalError::Io`] when storage fails.
pub fn scan_dir<T: DeserializeOwned, D: Directory>(
    dir: D,
    key: Option<&WalKey>,
    anchor: Option<WalAnchor>,
) -> Result<Recovery, WalError> {
    SegmentedReader::<T, D>::from_dir(dir, key, anchor)?.scan_to_end()
}

impl<D: Directory> FrameSource for SegmentedFrames<D> {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WalError> {
        SegmentedFrames::next_frame(self)
    }

    fn outcome(&self) -> Option<&Recovery> {
        SegmentedFrames::outcome(self)
    }

    fn position(&self) -> WalAnchor {
        SegmentedFrames::position(self)
    }

    fn refuse_undecodable(&mut self, sequence: u64, offset_bytes: u64) -> WalError {
        self.refuse(Recovery::Corrupt {
            sequence: Some(sequence),
            offset_bytes,
            reason: CorruptReason::Undecodable,
        })
    }
}
