//! A tamper-evident, crash-safe write-ahead log of any serde record, and an audited
//! decision log on top of it.
//!
//! Every record is encoded with postcard and framed as `length | payload | entry
//! hash`, where the entry hash chains over the previous entry hash, the sequence
//! number and the payload: SHA-256 without a key, HMAC-SHA-256 with one. Editing,
//! reordering, inserting or deleting a record breaks the chain; with a key, whoever
//! rewrites the file cannot forge a consistent chain. A trusted [`WalAnchor`] kept
//! outside the file also catches a cleanly cut suffix. A crash never loses what was
//! acknowledged as durable, and reopening tells a torn tail (cut and reported) from
//! corruption (refused, naming the record and its byte offset): an acknowledgement
//! watermark kept beside the segments (`ACK`, or `<file>.ack`; two checksummed
//! slots written alternately, after the data is synced and before anything is
//! acknowledged) says how far the log was acknowledged, so damage at or before it
//! is refused even in the last record, and only what follows it, zero-filled or
//! garbage, is a torn tail.
//!
//! The byte format is specified field by field in `docs/SPECIFICATION.md` ("The
//! write-ahead log") and pinned by golden files under `tests/data/`.
//!
//! # What it deliberately does not do
//! - Encrypt: records are readable by anyone who can read the file. The key only
//!   authenticates.
//! - Compact: whole segments are removed only on request
//!   ([`DurableWal::retire_segments_before`]), and the suffix then verifies only
//!   from the trusted start anchor that call returns.
//! - Index or query: reading is a verifying scan from the start.
//! - Store the anchor: keeping a [`WalAnchor`] somewhere the attacker cannot
//!   rewrite is the caller's job.
//!
//! # Main types
//! - [`WalWriter`]: one writer, one file: `create`/`open` (which verifies the
//!   whole chain and cuts a torn tail), buffered `append`, `flush`, `sync`
//!   (fdatasync). One writer per file, enforced with an OS file lock.
//! - [`DurableWal`]: many threads append at once; each gets a [`Ticket`] that
//!   [`Ticket::wait`]s until its record is durable. One flusher thread writes each
//!   batch (a 200 µs window or a byte budget) with one write and one fdatasync, and
//!   rotates to a new segment file at a size limit; sync threads fdatasync the
//!   batches and complete their tickets; a watermark thread records the newest
//!   durable position in the watermark, off the acknowledgement path, at most once
//!   per [`DurableConfig::watermark_interval`] (and at close). `ticket.await` ([`TicketFuture`]) waits without blocking a thread
//!   and without a runtime. [`DurableWal::open_in_visiting`] hands every verified
//!   frame of the recovery scan to the caller. A failed write or sync (data or
//!   watermark), or a panic in one of its background threads
//!   ([`WalError::ThreadPanicked`]), poisons it: every waiter gets the error,
//!   nothing later is acknowledged.
//! - [`WalReader`], [`SegmentedReader`], [`scan`], [`scan_dir`]: streaming
//!   readers that verify as they go and never hold more than one frame plus a read
//!   chunk; the outcome is the closed [`Recovery`] enum. All of them decode
//!   through one [`FrameSource`] abstraction; [`open_log`] opens a file or a
//!   segment directory by what the path is, and every [`Entry`] carries its byte
//!   offset and segment.
//! - [`WalKey`]: an HMAC key of at least 32 bytes; the file stores only its
//!   fingerprint.
//! - [`storage::Storage`] and [`storage::Directory`]: where bytes go, with
//!   real-file implementations and in-memory ones ([`storage::MemDisk`],
//!   [`storage::MemDirectory`]) that inject torn writes, short writes, failed
//!   syncs and bit flips.
//! - With the `audit` feature: [`AuditWriter`] (`append_verified` refuses a
//!   decision that does not replay), [`replay_audited`] (re-runs every decision
//!   against the policy recorded in the same log and fails closed on the first
//!   divergence), [`DurableAuditWal`] (the same with group commit, for many
//!   threads).
//!
//! # Example
//! ```
//! use calybris_wal::{Recovery, WalKey, WalReader, WalWriter, scan};
//! use calybris_wal::storage::FileStorage;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("calybris-wal-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("events.cwal");
//! let key = WalKey::new(b"a secret of at least thirty-two bytes!")?;
//!
//! let mut writer = WalWriter::<(u64, String)>::create(&path, Some(key.clone()))?;
//! writer.append(&(1, "reserve".to_owned()))?;
//! writer.append(&(2, "commit".to_owned()))?;
//! let anchor = writer.sync()?; // durable; keep `anchor` somewhere safe
//! drop(writer);
//!
//! // Reading verifies every entry hash as it streams.
//! let records: Vec<(u64, String)> = WalReader::open(&path, Some(&key))?
//!     .map(|entry| entry.map(|e| e.record))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(records[1], (2, "commit".to_owned()));
//!
//! // A scan against the anchor says whether the log is whole.
//! let outcome = scan::<(u64, String), _>(FileStorage::open_read(&path)?, Some(&key), Some(anchor))?;
//! assert!(matches!(outcome, Recovery::Clean { .. }));
//!
//! // Another key is refused, not misread.
//! let other = WalKey::new(&[7u8; 32])?;
//! assert!(matches!(
//!     scan::<(u64, String), _>(FileStorage::open_read(&path)?, Some(&other), None)?,
//!     Recovery::WrongKey { .. }
//! ));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//! - `audit` (default): the audited decision records of the [`audit`] module;
//!   brings in `calybris-kernel` and `calybris-digest` (with their `serde`
//!   feature). Without it the crate is a generic log of any serde record.
//!
//! # Platform notes
//! Durability relies on `File::sync_data` (fdatasync) and, for new files and
//! segments, on syncing the parent directory (Unix). The writer lock is
//! `File::try_lock` (flock on Unix): advisory, so it excludes other writers that
//! use this crate, not arbitrary programs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod ack;
mod anchor_text;
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

pub use anchor_text::AnchorTextError;
#[cfg(feature = "audit")]
pub use audit::{
    AuditError, AuditRecord, AuditReplayer, AuditWriter, DecisionMeta, DecisionRecord,
    DurableAuditWal, PolicyRecord, ReplaySummary, replay_audited, replay_audited_file,
    replay_audited_frames, replay_audited_log, replay_audited_segments,
};
pub use durable::{
    DATA_SYNC_BUCKET_BOUNDS_US, DATA_SYNC_BUCKETS, DEFAULT_BATCH_BUDGET_BYTES,
    DEFAULT_SEGMENT_LIMIT_BYTES, DEFAULT_SYNC_CONCURRENCY, DEFAULT_WATERMARK_INTERVAL,
    DEFAULT_WINDOW, DurableConfig, DurableStats, DurableWal, MAX_PENDING_BYTES,
    MAX_SYNC_CONCURRENCY, RetiredSegments, Ticket, TicketFuture,
};
pub use error::{MAX_PANIC_MESSAGE_BYTES, WalError, WalThread};
pub use format::{AckPoint, EntryHash, WalKey};
pub use reader::{
    Entry, Frame, FrameReader, FrameSource, LogFrames, LogReader, WalReader, decode_next,
    decode_record, open_log, scan, scan_frames,
};
pub use recovery::{Acknowledged, CorruptReason, KeyMismatch, Recovery, TornReason, WalAnchor};
pub use segmented::{SegmentedFrames, SegmentedReader, scan_dir};
pub use writer::WalWriter;
