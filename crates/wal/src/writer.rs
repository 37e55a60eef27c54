//! The single-threaded writer: [`WalWriter`].

use std::marker::PhantomData;
use std::path::Path;

use serde::Serialize;

use crate::error::WalError;
use crate::format::{SegmentHeader, WalKey, encode_frame};
use crate::reader::FrameReader;
use crate::recovery::{Recovery, WalAnchor};
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
    _record: PhantomData<fn(&T)>,
}

impl<T: Serialize + ?Sized> WalWriter<T, FileStorage> {
    /// Creates a new, empty log file at `path` and takes its lock.
    ///
    /// # Errors
    /// [`WalError::AlreadyExists`], [`WalError::Locked`] or an I/O error.
    pub fn create(path: &Path, key: Option<WalKey>) -> Result<Self, WalError> {
        Self::create_in(FileStorage::create_locked(path)?, key)
    }

    /// Opens an existing log file, verifies its whole chain, cuts a torn tail
    /// (see [`WalWriter::recovery`]) and continues after the last good record.
    ///
    /// # Errors
    /// [`WalError::NotFound`], [`WalError::Locked`], [`WalError::Refused`] for
    /// corruption, a wrong key or an unknown version, or an I/O error.
    pub fn open(path: &Path, key: Option<WalKey>) -> Result<Self, WalError> {
        Self::open_in(FileStorage::open_locked(path)?, key, None)
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
        Self::open_in(FileStorage::open_locked(path)?, key, Some(anchor))
    }
}

impl<T: Serialize + ?Sized, S: Storage> WalWriter<T, S> {
    /// Starts a new log in empty `storage` (which should hold the writer lock).
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
            },
        ))
    }

    /// Opens the log in `storage` (which should hold the writer lock): verifies
    /// the chain, cuts a torn tail and continues after the last good record.
    ///
    /// # Errors
    /// [`WalError::Refused`] for corruption, a wrong key, an unknown version or
    /// an anchor the log does not satisfy; an I/O error.
    pub fn open_in(
        storage: S,
        key: Option<WalKey>,
        anchor: Option<WalAnchor>,
    ) -> Result<Self, WalError> {
        let mut reader = FrameReader::new(storage, key.as_ref())?.with_anchor(anchor);
        let recovery = reader.scan_to_end()?;
        let mut storage = reader.into_storage();
        let position = match &recovery {
            Recovery::Clean { anchor, .. } => *anchor,
            Recovery::TornTail {
                anchor,
                valid_len_bytes,
                ..
            } => {
                storage.truncate(*valid_len_bytes)?;
                storage.sync_data()?;
                *anchor
            }
            refusal => return Err(WalError::Refused(refusal.clone())),
        };
        Ok(Self::continuing(storage, key, position, recovery))
    }

    fn continuing(
        storage: S,
        key: Option<WalKey>,
        position: WalAnchor,
        recovery: Recovery,
    ) -> Self {
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
            _record: PhantomData,
        }
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
