//! The single-threaded writer: [`WalWriter`].

use std::marker::PhantomData;
use std::path::Path;

use serde::Serialize;

use crate::ack::{AckWriter, Watermark, initial_file, read_watermark};
use crate::error::WalError;
use crate::format::{AckPoint, HEADER_LEN_BYTES, SegmentHeader, WalKey, encode_frame};
use crate::reader::FrameReader;
use crate::recovery::{CorruptReason, Recovery, WalAnchor};
use crate::storage::{FileStorage, Storage};

/// How many encoded bytes [`WalWriter::append`] buffers before it writes them out
/// by itself.
pub const DEFAULT_BUFFER_LIMIT_BYTES: usize = 1024 * 1024;

/// Encodes `record` with postcard into `out` (cleared first).
pub(crate) fn encode_record<T: Serialize + ?Sized>(
    record: &T,
    out: &mut Vec<u8>,
) -> Result<(), WalError> {
    out.clear();
    let taken = std::mem::take(out);
    *out = postcard::to_extend(record, taken).map_err(WalError::Encode)?;
    Ok(())
}

/// Appends records to one log file (or any [`Storage`]), holding its writer lock.
///
/// `append` only buffers; `flush` writes the buffer out, `sync` also makes it
/// durable. After a failed write or sync the writer is poisoned and refuses
/// everything: reopen the log to recover to the last durable record. Dropping the
/// writer flushes (but does not sync) what is buffered, ignoring errors.
#[derive(Debug)]
pub struct WalWriter<T: ?Sized, S: Storage = FileStorage> {
    storage: S,
    key: Option<WalKey>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    appended: WalAnchor,
    written: WalAnchor,
    synced: WalAnchor,
    recovery: Recovery,
    poisoned: Option<WalError>,
    buffer_limit_bytes: usize,
    /// First sequence of the file's header (the watermark names it).
    first_sequence: u64,
    /// Bytes in the file once the buffer written so far lands.
    written_len_bytes: u64,
    /// The watermark sidecar, when this log has one.
    ack: Option<AckWriter<S>>,
    _record: PhantomData<fn(&T)>,
}

impl<T: Serialize + ?Sized> WalWriter<T, FileStorage> {
    /// Creates a new, empty log file at `path` and its watermark sidecar
    /// `<path>.ack`, and takes the log's lock.
    ///
    /// # Errors
    /// [`WalError::AlreadyExists`], [`WalError::Locked`] or an I/O error.
    pub fn create(path: &Path, key: Option<WalKey>) -> Result<Self, WalError> {
        let mut writer = Self::create_in(FileStorage::create_locked(path)?, key)?;
        let point = writer.ack_point();
        let bytes = initial_file(point, writer.key.as_ref());
        let ack = FileStorage::create_ack_for(path, &bytes)?;
        writer.ack = Some(AckWriter::new(ack, writer.key.clone(), 1, point));
        Ok(writer)
    }

    /// Opens an existing log file, verifies its whole chain against its
    /// watermark sidecar (if any), cuts a torn tail (see [`WalWriter::recovery`])
    /// and continues after the last good record. A log without a sidecar gets
    /// one, vouching for what recovery kept.
    ///
    /// # Errors
    /// [`WalError::NotFound`], [`WalError::Locked`], [`WalError::Refused`] for
    /// corruption, damage at or before the acknowledged position, a wrong key or
    /// an unknown version, or an I/O error.
    pub fn open(path: &Path, key: Option<WalKey>) -> Result<Self, WalError> {
        Self::open_file(path, key, None)
    }

    /// Like [`WalWriter::open`], also refusing a log that does not reach
    /// `anchor` or disagrees with it.
    ///
    /// # Errors
    /// As [`WalWriter::open`].
    pub fn open_anchored(
        path: &Path,
        key: Option<WalKey>,
        anchor: WalAnchor,
    ) -> Result<Self, WalError> {
        Self::open_file(path, key, Some(anchor))
    }

    fn open_file(
        path: &Path,
        key: Option<WalKey>,
        anchor: Option<WalAnchor>,
    ) -> Result<Self, WalError> {
        let storage = FileStorage::open_locked(path)?;
        let watermark = read_watermark(FileStorage::open_ack_for(path)?, key.as_ref())?;
        Self::open_watermarked(storage, key, anchor, Some(watermark), |bytes| {
            FileStorage::create_ack_for(path, bytes)
        })
    }
}

impl<T: Serialize + ?Sized, S: Storage> WalWriter<T, S> {
    /// Starts a new log in empty `storage` (which should hold the writer lock),
    /// without a watermark.
    ///
    /// # Errors
    /// [`WalError::AlreadyExists`] when the storage is not empty, or an I/O error.
    pub fn create_in(mut storage: S, key: Option<WalKey>) -> Result<Self, WalError> {
        if storage.len_bytes()? != 0 {
            return Err(WalError::AlreadyExists {
                path: "<storage>".into(),
            });
        }
        let header = SegmentHeader::new(key.as_ref(), 0, WalAnchor::GENESIS.head_hash);
        let header_bytes = header.encode();
        storage.append(&header_bytes)?;
        storage.sync_data()?;
        Ok(Self::continuing(
            storage,
            key,
            WalAnchor::GENESIS,
            Recovery::Clean {
                anchor: WalAnchor::GENESIS,
                len_bytes: header_bytes.len() as u64,
                acknowledged: crate::recovery::Acknowledged::Unknown,
            },
            0,
            header_bytes.len() as u64,
        ))
    }

    /// [`WalWriter::create_in`] with a watermark kept in `ack` (empty storage),
    /// which every [`WalWriter::sync`] updates.
    ///
    /// # Errors
    /// As [`WalWriter::create_in`].
    pub fn create_in_acked(storage: S, mut ack: S, key: Option<WalKey>) -> Result<Self, WalError> {
        let mut writer = Self::create_in(storage, key)?;
        let point = writer.ack_point();
        ack.truncate(0)?;
        ack.write_at(0, &initial_file(point, writer.key.as_ref()))?;
        ack.sync_data()?;
        writer.ack = Some(AckWriter::new(ack, writer.key.clone(), 1, point));
        Ok(writer)
    }

    /// Opens the log in `storage` (which should hold the writer lock): verifies
    /// the chain, cuts a torn tail and continues after the last good record.
    /// Without a watermark, a bad final frame is taken for a torn tail (the
    /// outcome says the acknowledged position is unknown).
    ///
    /// # Errors
    /// [`WalError::Refused`] for corruption, a wrong key, an unknown version or
    /// an anchor the log does not satisfy; an I/O error.
    pub fn open_in(
        storage: S,
        key: Option<WalKey>,
        anchor: Option<WalAnchor>,
    ) -> Result<Self, WalError> {
        Self::open_watermarked(storage, key, anchor, None, |_| {
            Err(std::io::Error::other("no watermark storage"))
        })
    }

    /// [`WalWriter::open_in`] with the watermark kept in `ack`: damage at or
    /// before the acknowledged position is refused, garbage after it is a torn
    /// tail. An empty `ack` is a log without a watermark yet: one is written
    /// vouching for what recovery kept.
    ///
    /// # Errors
    /// As [`WalWriter::open_in`], plus [`CorruptReason::AckDamaged`] when both
    /// slots are bad.
    pub fn open_in_acked(
        storage: S,
        mut ack: S,
        key: Option<WalKey>,
        anchor: Option<WalAnchor>,
    ) -> Result<Self, WalError> {
        if ack.len_bytes()? == 0 {
            return Self::open_watermarked(
                storage,
                key,
                anchor,
                Some(Watermark::Absent),
                |bytes| {
                    ack.write_at(0, bytes)?;
                    ack.sync_data()?;
                    Ok(ack)
                },
            );
        }
        let watermark = read_watermark(Some(ack), key.as_ref())?;
        Self::open_watermarked(storage, key, anchor, Some(watermark), |_| {
            Err(std::io::Error::other("the watermark exists"))
        })
    }

    /// Opens with an optional watermark: `None` when the storage has no place for
    /// one; `Some(Absent)` when one is created with `create_ack` after recovery.
    fn open_watermarked(
        storage: S,
        key: Option<WalKey>,
        anchor: Option<WalAnchor>,
        watermark: Option<Watermark<S>>,
        create_ack: impl FnOnce(&[u8]) -> std::io::Result<S>,
    ) -> Result<Self, WalError> {
        let reader = FrameReader::new(storage, key.as_ref())?.with_anchor(anchor);
        if matches!(watermark, Some(Watermark::Damaged)) {
            return Err(WalError::Refused(Recovery::Corrupt {
                sequence: None,
                offset_bytes: 0,
                reason: CorruptReason::AckDamaged,
            }));
        }
        let acknowledged = watermark.as_ref().map_or(
            crate::recovery::Acknowledged::Unknown,
            Watermark::acknowledged,
        );
        let point = watermark.as_ref().and_then(Watermark::point);
        let mut reader = reader.with_watermark_reported(point, acknowledged);
        let first_sequence = reader.header().first_sequence;
        let recovery = reader.scan_to_end()?;
        let mut storage = reader.into_storage();
        let (position, len_bytes) = match &recovery {
            Recovery::Clean {
                anchor, len_bytes, ..
            } => (*anchor, *len_bytes),
            Recovery::TornTail {
                anchor,
                valid_len_bytes,
                ..
            } => {
                storage.truncate(*valid_len_bytes)?;
                (*anchor, *valid_len_bytes)
            }
            refusal => return Err(WalError::Refused(refusal.clone())),
        };
        // What recovery kept is made durable before a watermark vouches for it.
        storage.sync_data()?;
        let mut writer =
            Self::continuing(storage, key, position, recovery, first_sequence, len_bytes);
        let point = writer.ack_point();
        writer.ack = match watermark {
            None | Some(Watermark::Damaged) => None,
            Some(Watermark::Absent) => {
                let ack = create_ack(&initial_file(point, writer.key.as_ref()))?;
                Some(AckWriter::new(ack, writer.key.clone(), 1, point))
            }
            Some(valid @ Watermark::Valid { .. }) => {
                let Some((ack, generation)) = valid.into_parts() else {
                    return Err(WalError::Closed);
                };
                let mut ack = AckWriter::new(ack, writer.key.clone(), generation, point);
                ack.write(point)?;
                Some(ack)
            }
        };
        Ok(writer)
    }

    fn continuing(
        storage: S,
        key: Option<WalKey>,
        position: WalAnchor,
        recovery: Recovery,
        first_sequence: u64,
        len_bytes: u64,
    ) -> Self {
        debug_assert!(len_bytes >= HEADER_LEN_BYTES as u64);
        Self {
            storage,
            key,
            buf: Vec::new(),
            scratch: Vec::new(),
            appended: position,
            written: position,
            synced: position,
            recovery,
            poisoned: None,
            buffer_limit_bytes: DEFAULT_BUFFER_LIMIT_BYTES,
            first_sequence,
            written_len_bytes: len_bytes,
            ack: None,
            _record: PhantomData,
        }
    }

    /// The position a watermark written now would vouch for.
    fn ack_point(&self) -> AckPoint {
        AckPoint {
            segment_first_sequence: self.first_sequence,
            end_offset_bytes: self.written_len_bytes,
            anchor: self.written,
        }
    }

    /// Whether this writer keeps a watermark (`<file>.ack`).
    #[must_use]
    pub fn has_watermark(&self) -> bool {
        self.ack.is_some()
    }

    /// Sets how many bytes `append` buffers before writing them out by itself.
    #[must_use]
    pub fn with_buffer_limit(mut self, buffer_limit_bytes: usize) -> Self {
        self.buffer_limit_bytes = buffer_limit_bytes;
        self
    }

    /// What opening the log found: clean, or a torn tail that was cut (with the
    /// number of bytes cut).
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The position after the last appended (possibly only buffered) record.
    #[must_use]
    pub fn anchor(&self) -> WalAnchor {
        self.appended
    }

    /// The position after the last record made durable by [`WalWriter::sync`]
    /// (or found on open).
    #[must_use]
    pub fn synced_anchor(&self) -> WalAnchor {
        self.synced
    }

    fn check_poison(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(WalError::Poisoned { kind, message }) => Err(WalError::Poisoned {
                kind: *kind,
                message: message.clone(),
            }),
            Some(_) | None => Ok(()),
        }
    }

    /// Encodes `record`, chains it and buffers the frame; returns its sequence
    /// number. Writes the buffer out when it passes the buffer limit.
    ///
    /// # Errors
    /// [`WalError::Poisoned`], [`WalError::Encode`], [`WalError::RecordTooLarge`],
    /// [`WalError::SequenceExhausted`], or an I/O error from an automatic flush.
    pub fn append(&mut self, record: &T) -> Result<u64, WalError> {
        self.append_serialized(record)
    }

    /// Appends any value that serializes like a `T` (used to write borrowed
    /// forms of owned record types).
    pub(crate) fn append_serialized<U: Serialize + ?Sized>(
        &mut self,
        record: &U,
    ) -> Result<u64, WalError> {
        self.check_poison()?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let encoded = encode_record(record, &mut scratch);
        let result = encoded.and_then(|()| self.append_payload(&scratch));
        self.scratch = scratch;
        result
    }

    /// Chains and buffers an already encoded payload.
    fn append_payload(&mut self, payload: &[u8]) -> Result<u64, WalError> {
        let sequence = self.appended.next_sequence;
        let next_sequence = sequence.checked_add(1).ok_or(WalError::SequenceExhausted)?;
        let hash = encode_frame(
            &mut self.buf,
            self.key.as_ref(),
            &self.appended.head_hash,
            sequence,
            payload,
        )?;
        self.appended = WalAnchor {
            next_sequence,
            head_hash: hash,
        };
        if self.buf.len() >= self.buffer_limit_bytes {
            self.flush()?;
        }
        Ok(sequence)
    }

    /// Writes the buffered frames to storage (not yet durable).
    ///
    /// # Errors
    /// [`WalError::Poisoned`], or the I/O error that poisons the writer.
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.check_poison()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.storage.append(&self.buf) {
            self.poisoned = Some(WalError::poisoned_by(&error));
            return Err(WalError::Io(error));
        }
        self.written_len_bytes += self.buf.len() as u64;
        self.buf.clear();
        self.written = self.appended;
        Ok(())
    }

    /// Flushes and makes everything appended durable (fdatasync); returns the
    /// durable position, which a caller may keep as a trusted [`WalAnchor`].
    ///
    /// # Errors
    /// [`WalError::Poisoned`], or the I/O error that poisons the writer.
    pub fn sync(&mut self) -> Result<WalAnchor, WalError> {
        self.flush()?;
        if let Err(error) = self.storage.sync_data() {
            self.poisoned = Some(WalError::poisoned_by(&error));
            return Err(WalError::Io(error));
        }
        // The watermark is written after the data it covers is durable, and
        // before the position is returned as acknowledged.
        let point = self.ack_point();
        if let Some(ack) = self.ack.as_mut()
            && ack.last() != point
            && let Err(error) = ack.write(point)
        {
            self.poisoned = Some(WalError::poisoned_by(&error));
            return Err(WalError::Io(error));
        }
        self.synced = self.written;
        Ok(self.synced)
    }
}

impl<T: ?Sized, S: Storage> Drop for WalWriter<T, S> {
    fn drop(&mut self) {
        if self.poisoned.is_none() && !self.buf.is_empty() {
            // Best effort: a caller who needs to know calls `flush` or `sync`.
            let _ = self.storage.append(&self.buf);
        }
    }
}
