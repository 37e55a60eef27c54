//! Reading a log split into segments: [`SegmentedReader`] walks every segment of a
//! [`Directory`] in order and checks that each one starts exactly where the
//! previous one ended (sequence number and entry hash).

use std::marker::PhantomData;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::WalError;
use crate::format::{HEADER_LEN_BYTES, WalKey, hashes_equal};
use crate::reader::{Entry, Frame, FrameReader, decode_record, refusal_or_error};
use crate::recovery::{CorruptReason, Recovery, WalAnchor};
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
}

impl<D: Directory> SegmentedFrames<D> {
    /// Lists the segments of `dir`; nothing is read yet.
    ///
    /// # Errors
    /// [`WalError::Io`] when the directory cannot be listed.
    pub fn new(dir: D, key: Option<&WalKey>, anchor: Option<WalAnchor>) -> Result<Self, WalError> {
        let segments = dir.list_segments()?;
        Ok(Self {
            dir,
            key: key.cloned(),
            anchor,
            segments,
            next_index: 0,
            current: None,
            position: WalAnchor::GENESIS,
            outcome: None,
        })
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
        let is_last = self.next_index + 1 == self.segments.len();
        self.next_index += 1;
        let storage = self.dir.open_segment(first_sequence)?;
        let reader = match FrameReader::new(storage, self.key.as_ref()) {
            Ok(reader) => reader,
            Err(WalError::Refused(recovery)) => return Err(self.refuse(recovery)),
            Err(other) => return Err(other),
        };
        let header = *reader.header();
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
        let reader = reader.with_anchor(self.anchor);
        self.current = Some(if is_last {
            reader
        } else {
            reader.not_last_segment()
        });
        Ok(true)
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
                    return Ok(self.current.as_ref().map(|reader| reader.frame(meta)));
                }
                Ok(None) => {
                    if self.next_index >= self.segments.len() {
                        self.outcome = reader.outcome().cloned();
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
        if let Some(anchor) = self.anchor
            && anchor.next_sequence > 0
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
        let Some(frame) = self.frames.next_frame()? else {
            return Ok(None);
        };
        let (sequence, offset_bytes, hash) = (frame.sequence, frame.offset_bytes, frame.hash);
        match decode_record::<T>(frame.payload) {
            Ok(record) => Ok(Some(Entry {
                sequence,
                hash,
                record,
            })),
            Err(_) => Err(self.frames.refuse(Recovery::Corrupt {
                sequence: Some(sequence),
                offset_bytes,
                reason: CorruptReason::Undecodable,
            })),
        }
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
