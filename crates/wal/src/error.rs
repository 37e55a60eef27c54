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
    /// A background thread of a [`DurableWal`](crate::DurableWal) panicked (a bug,
    /// in this crate or in a [`Storage`](crate::storage::Storage) it was given).
    /// Like [`WalError::Poisoned`], the log acknowledges nothing more: every
    /// pending ticket and every later append gets this error. Reopen the log to
    /// recover to the last durable record.
    #[error("log poisoned: its {thread} thread panicked: {message}")]
    ThreadPanicked {
        /// Which thread panicked.
        thread: WalThread,
        /// The panic's message (cut to [`MAX_PANIC_MESSAGE_BYTES`]).
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

/// Longest panic message kept in [`WalError::ThreadPanicked`], in bytes.
pub const MAX_PANIC_MESSAGE_BYTES: usize = 1024;

/// A background thread of a [`DurableWal`](crate::DurableWal), as named by
/// [`WalError::ThreadPanicked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WalThread {
    /// The thread that writes the batches (and syncs them inline when there are
    /// no sync threads, or before a segment rotation).
    Flusher,
    /// One of the threads that fdatasync written batches and complete tickets.
    Sync,
    /// The thread that writes the acknowledgement watermark.
    Watermark,
}

impl std::fmt::Display for WalThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Flusher => "flusher",
            Self::Sync => "sync",
            Self::Watermark => "watermark",
        })
    }
}

impl WalError {
    /// True when the log was poisoned: by a failed write or sync
    /// ([`WalError::Poisoned`]) or by a background thread's panic
    /// ([`WalError::ThreadPanicked`]). Nothing more is acknowledged after it.
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        matches!(self, Self::Poisoned { .. } | Self::ThreadPanicked { .. })
    }

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
