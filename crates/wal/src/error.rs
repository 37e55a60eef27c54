//! The crate's error type.

use std::io;
use std::path::PathBuf;

use crate::recovery::Recovery;

/// Everything that can go wrong when writing or reading a log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// The storage failed (read, write, sync, truncate, lock).
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    /// Another writer holds the lock on this log.
    #[error("log {path} is already open for writing by another writer")]
    Locked {
        /// The file (or directory) that is locked.
        path: PathBuf,
    },
    /// The log cannot be used as it is; the recovery outcome says why.
    #[error("log refused: {0}")]
    Refused(Recovery),
    /// A key shorter than 32 bytes was offered.
    #[error("HMAC key of {len_bytes} bytes refused: at least 32 bytes are required")]
    KeyTooShort {
        /// Length of the offered key.
        len_bytes: usize,
    },
    /// A record encodes to more than the largest frame payload.
    #[error("record of {len_bytes} bytes exceeds the frame maximum of {max_bytes} bytes")]
    RecordTooLarge {
        /// Encoded length of the record.
        len_bytes: u64,
        /// The maximum payload.
        max_bytes: u32,
    },
    /// The record could not be encoded with postcard.
    #[error("record could not be encoded: {0}")]
    Encode(postcard::Error),
    /// A verified frame's payload did not decode as the record type.
    #[error("record {sequence} does not decode: {source}")]
    Decode {
        /// Sequence number of the record.
        sequence: u64,
        /// The decoder's complaint.
        source: postcard::Error,
    },
    /// An earlier write or sync failed; this writer acknowledges nothing more.
    /// Reopen the log to recover to the last durable record.
    #[error("writer poisoned by an earlier {kind:?} failure: {message}")]
    Poisoned {
        /// Kind of the failure that poisoned the writer.
        kind: io::ErrorKind,
        /// Its message.
        message: String,
    },
    /// `create` found an existing log.
    #[error("log {path} already exists")]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },
    /// `open` found no log.
    #[error("no log at {path}")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The log has used every sequence number a `u64` holds.
    #[error("sequence numbers exhausted")]
    SequenceExhausted,
    /// The writer was shut down.
    #[error("the log writer has shut down")]
    Closed,
}

impl WalError {
    /// The error that every later caller of a poisoned writer receives.
    pub(crate) fn poisoned_by(error: &io::Error) -> Self {
        Self::Poisoned {
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    /// The recovery outcome, when this error is a refusal.
    #[must_use]
    pub fn recovery(&self) -> Option<&Recovery> {
        match self {
            Self::Refused(recovery) => Some(recovery),
            _ => None,
        }
    }
}
