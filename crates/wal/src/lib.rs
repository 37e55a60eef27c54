//! calybris-wal (docs in progress).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod durable;
mod error;
pub mod format;
mod reader;
mod recovery;
mod segmented;
pub mod storage;
mod writer;

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
