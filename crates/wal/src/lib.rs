//! calybris-wal (docs in progress).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "audit")]
pub mod audit;
mod durable;
mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
mod reader;
mod recovery;
mod segmented;
pub mod storage;
mod writer;

#[cfg(feature = "audit")]
pub use audit::{
    AuditError, AuditRecord, AuditReplayer, AuditWriter, DecisionMeta, DecisionRecord,
    PolicyRecord, ReplaySummary, replay_audited, replay_audited_file, replay_audited_segments,
};
pub use durable::{
    DEFAULT_BATCH_BUDGET_BYTES, DEFAULT_SEGMENT_LIMIT_BYTES, DEFAULT_WINDOW, DurableConfig,
    DurableWal, MAX_PENDING_BYTES, Ticket,
};
pub use error::WalError;
pub use format::{EntryHash, WalKey};
pub use reader::{Entry, Frame, FrameReader, WalReader, decode_record, scan, scan_frames};
pub use recovery::{CorruptReason, KeyMismatch, Recovery, TornReason, WalAnchor};
pub use segmented::{SegmentedFrames, SegmentedReader, scan_dir};
pub use writer::WalWriter;
