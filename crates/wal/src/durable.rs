//! Group commit: [`DurableWal`] lets many threads append at once and acknowledges
//! each record once it is durable, with one write and one fdatasync per batch.

use std::cell::RefCell;
use std::io;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::error::WalError;
use crate::format::{SegmentHeader, WalKey, encode_frame};
use crate::recovery::{Recovery, WalAnchor};
use crate::segmented::SegmentedFrames;
use crate::storage::{Directory, FsDirectory, Storage};
use crate::writer::encode_record;

/// Default group-commit window: how long the flusher waits after the first record
/// of a batch arrives before it writes the batch.
pub const DEFAULT_WINDOW: Duration = Duration::from_micros(200);

/// Default byte budget of a batch: the flusher writes as soon as this many bytes
/// are pending, without waiting for the window to close.
pub const DEFAULT_BATCH_BUDGET_BYTES: usize = 1024 * 1024;

/// Default segment size limit: after a batch leaves the current segment at or
/// above it, the next batch goes to a new segment.
pub const DEFAULT_SEGMENT_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// Bound on bytes waiting for the flusher: appenders block (on a condition
/// variable, not spinning) while this many bytes are pending.
pub const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

/// Settings of a [`DurableWal`].
#[derive(Debug, Clone)]
pub struct DurableConfig {
    /// HMAC key, or `None` for the unkeyed (SHA-256) chain.
    pub key: Option<WalKey>,
    /// Group-commit window.
    pub window: Duration,
    /// Batch byte budget.
    pub batch_budget_bytes: usize,
    /// Segment size limit.
    pub segment_limit_bytes: u64,
    /// A trusted anchor the existing log must reach.
    pub anchor: Option<WalAnchor>,
}

impl Default for DurableConfig {
    fn default() -> Self {
        Self {
            key: None,
            window: DEFAULT_WINDOW,
            batch_budget_bytes: DEFAULT_BATCH_BUDGET_BYTES,
            segment_limit_bytes: DEFAULT_SEGMENT_LIMIT_BYTES,
            anchor: None,
        }
    }
}

#[derive(Debug)]
struct State {
    pending: Vec<u8>,
    first_pending_at: Option<Instant>,
    appended: WalAnchor,
    durable: WalAnchor,
    poisoned: Option<(io::ErrorKind, String)>,
    closing: bool,
    /// Set by the flusher thread as it exits; after that nothing more becomes
    /// durable.
    flusher_exited: bool,
    segments_created: u64,
}

#[derive(Debug)]
struct Core {
    state: Mutex<State>,
    /// The flusher waits here for work; appenders notify it.
    work: Condvar,
    /// Ticket holders wait here; the flusher notifies after each batch.
    done: Condvar,
    /// Appenders wait here while the pending buffer is full.
    room: Condvar,
    key: Option<WalKey>,
    window: Duration,
    batch_budget_bytes: usize,
}

impl Core {
    fn poison_error(poisoned: &(io::ErrorKind, String)) -> WalError {
        WalError::Poisoned {
            kind: poisoned.0,
            message: poisoned.1.clone(),
        }
    }
}

/// A claim on one appended record: [`Ticket::wait`] returns once it is durable.
#[derive(Debug, Clone)]
#[must_use = "a record is acknowledged only by waiting on its ticket"]
pub struct Ticket {
    sequence: u64,
    core: Arc<Core>,
}

impl Ticket {
    /// The record's sequence number.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Blocks until the record is durable and returns its sequence number.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] when a write or sync failed before the record
    /// became durable; [`WalError::Closed`] when the log shut down without it.
    pub fn wait(&self) -> Result<u64, WalError> {
        let mut state = self.core.state.lock();
        loop {
            if state.durable.next_sequence > self.sequence {
                return Ok(self.sequence);
            }
            if let Some(poisoned) = &state.poisoned {
                return Err(Core::poison_error(poisoned));
            }
            if state.flusher_exited {
                return Err(WalError::Closed);
            }
            self.core.done.wait(&mut state);
        }
    }

    /// True once the record is durable; never blocks.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.core.state.lock().durable.next_sequence > self.sequence
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A log that many threads append to at once, with group commit and segment
/// rotation, in a directory of segment files.
///
/// `append` encodes and chains the record and returns a [`Ticket`]; one
/// background flusher thread writes everything that arrived within the window
/// (or the byte budget) with one write and one fdatasync, then wakes the tickets.
/// A failed write or sync poisons the log: every waiting ticket and every later
/// append gets [`WalError::Poisoned`]; reopening recovers to the last durable
/// record.
#[derive(Debug)]
pub struct DurableWal<T: ?Sized, D: Directory = FsDirectory> {
    core: Arc<Core>,
    flusher: Option<JoinHandle<()>>,
    recovery: Recovery,
    _dir: PhantomData<fn() -> D>,
    _record: PhantomData<fn(&T)>,
}

impl<T: Serialize + ?Sized> DurableWal<T, FsDirectory> {
    /// Opens (or creates) the segment directory at `path`.
    ///
    /// # Errors
    /// As [`DurableWal::open_in`].
    pub fn open(path: &Path, config: DurableConfig) -> Result<Self, WalError> {
        Self::open_in(FsDirectory::new(path)?, config)
    }
}

impl<T: Serialize + ?Sized, D: Directory> DurableWal<T, D> {
    /// Takes the directory's writer lock, verifies every segment, cuts a torn
    /// tail of the last one, and starts the flusher thread.
    ///
    /// # Errors
    /// [`WalError::Locked`] when another writer holds the directory;
    /// [`WalError::Refused`] for corruption, a wrong key, an unknown version or
    /// an unmet anchor; an I/O error.
    pub fn open_in(dir: D, config: DurableConfig) -> Result<Self, WalError> {
        let guard = dir.lock()?;
        let mut frames = SegmentedFrames::new(dir, config.key.as_ref(), config.anchor)?;
        let recovery = frames.scan_to_end()?;
        let last_segment = frames.segments().last().copied();
        let dir = frames.into_dir();
        let (position, storage, segment_len_bytes) = match (&recovery, last_segment) {
            (Recovery::Clean { anchor, len_bytes }, Some(first)) => {
                (*anchor, dir.open_segment(first)?, *len_bytes)
            }
            (
                Recovery::TornTail {
                    anchor,
                    valid_len_bytes,
                    ..
                },
                Some(first),
            ) => {
                let mut storage = dir.open_segment(first)?;
                storage.truncate(*valid_len_bytes)?;
                storage.sync_data()?;
                (*anchor, storage, *valid_len_bytes)
            }
            (Recovery::Clean { anchor, .. }, None) => {
                let header = SegmentHeader::new(config.key.as_ref(), 0, anchor.head_hash).encode();
                (
                    *anchor,
                    dir.create_segment(0, &header)?,
                    header.len() as u64,
                )
            }
            (refusal, _) => return Err(WalError::Refused(refusal.clone())),
        };
        let core = Arc::new(Core {
            state: Mutex::new(State {
                pending: Vec::new(),
                first_pending_at: None,
                appended: position,
                durable: position,
                poisoned: None,
                closing: false,
                flusher_exited: false,
                segments_created: 0,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            room: Condvar::new(),
            key: config.key.clone(),
            window: config.window,
            batch_budget_bytes: config.batch_budget_bytes.max(1),
        });
        let flusher = Flusher {
            core: Arc::clone(&core),
            dir,
            _guard: guard,
            storage,
            segment_len_bytes,
            segment_limit_bytes: config.segment_limit_bytes,
        };
        let handle = std::thread::Builder::new()
            .name("calybris-wal-flusher".into())
            .spawn(move || flusher.run())?;
        Ok(Self {
            core,
            flusher: Some(handle),
            recovery,
            _dir: PhantomData,
            _record: PhantomData,
        })
    }

    /// What opening found: clean, or a torn tail that was cut.
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Encodes and chains `record` and queues it for the next batch.
    ///
    /// # Errors
    /// [`WalError::Poisoned`], [`WalError::Closed`], [`WalError::Encode`],
    /// [`WalError::RecordTooLarge`] or [`WalError::SequenceExhausted`].
    pub fn append(&self, record: &T) -> Result<Ticket, WalError> {
        self.append_serialized(record)
    }

    /// Appends any value that serializes like a `T` (borrowed forms of owned
    /// record types).
    pub(crate) fn append_serialized<U: Serialize + ?Sized>(
        &self,
        record: &U,
    ) -> Result<Ticket, WalError> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            encode_record(record, &mut scratch)?;
            self.append_payload(&scratch)
        })
    }

    fn append_payload(&self, payload: &[u8]) -> Result<Ticket, WalError> {
        let core = &*self.core;
        let mut state = core.state.lock();
        while state.pending.len() >= MAX_PENDING_BYTES && state.poisoned.is_none() && !state.closing
        {
            core.room.wait(&mut state);
        }
        if let Some(poisoned) = &state.poisoned {
            return Err(Core::poison_error(poisoned));
        }
        if state.closing {
            return Err(WalError::Closed);
        }
        let sequence = state.appended.next_sequence;
        let next_sequence = sequence.checked_add(1).ok_or(WalError::SequenceExhausted)?;
        let prev_hash = state.appended.head_hash;
        let was_empty = state.pending.is_empty();
        let hash = encode_frame(
            &mut state.pending,
            core.key.as_ref(),
            &prev_hash,
            sequence,
            payload,
        )?;
        state.appended = WalAnchor {
            next_sequence,
            head_hash: hash,
        };
        if was_empty {
            state.first_pending_at = Some(Instant::now());
            core.work.notify_one();
        } else if state.pending.len() >= core.batch_budget_bytes {
            core.work.notify_one();
        }
        Ok(Ticket {
            sequence,
            core: Arc::clone(&self.core),
        })
    }

    /// Appends and waits until the record is durable.
    ///
    /// # Errors
    /// As [`DurableWal::append`] and [`Ticket::wait`].
    pub fn append_durable(&self, record: &T) -> Result<u64, WalError> {
        self.append(record)?.wait()
    }

    /// The position after the last durable record.
    #[must_use]
    pub fn durable_anchor(&self) -> WalAnchor {
        self.core.state.lock().durable
    }

    /// The position after the last appended record.
    #[must_use]
    pub fn appended_anchor(&self) -> WalAnchor {
        self.core.state.lock().appended
    }

    /// How many segments this writer has created by rotation.
    #[must_use]
    pub fn segments_created(&self) -> u64 {
        self.core.state.lock().segments_created
    }

    /// Makes everything appended so far durable, stops the flusher and releases
    /// the lock; returns the durable position.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] when a write or sync failed.
    pub fn close(mut self) -> Result<WalAnchor, WalError> {
        self.stop();
        let state = self.core.state.lock();
        match &state.poisoned {
            Some(poisoned) => Err(Core::poison_error(poisoned)),
            None => Ok(state.durable),
        }
    }

    fn stop(&mut self) {
        {
            let mut state = self.core.state.lock();
            state.closing = true;
            self.core.work.notify_all();
            self.core.room.notify_all();
        }
        if let Some(handle) = self.flusher.take() {
            // The flusher does not panic on any input; if it did, the poisoned
            // state below still tells waiters the truth.
            if handle.join().is_err() {
                let mut state = self.core.state.lock();
                state.poisoned.get_or_insert((
                    io::ErrorKind::Other,
                    "the flusher thread panicked".to_owned(),
                ));
            }
        }
        self.core.done.notify_all();
    }
}

impl<T: ?Sized, D: Directory> Drop for DurableWal<T, D> {
    fn drop(&mut self) {
        {
            let mut state = self.core.state.lock();
            state.closing = true;
            self.core.work.notify_all();
            self.core.room.notify_all();
        }
        if let Some(handle) = self.flusher.take() {
            let _ = handle.join();
        }
        self.core.done.notify_all();
    }
}

/// The background thread's state: it alone touches storage.
struct Flusher<D: Directory> {
    core: Arc<Core>,
    dir: D,
    _guard: D::Guard,
    storage: D::Storage,
    segment_len_bytes: u64,
    segment_limit_bytes: u64,
}

impl<D: Directory> Flusher<D> {
    fn run(mut self) {
        self.flush_until_closed_or_poisoned();
        let mut state = self.core.state.lock();
        state.flusher_exited = true;
        self.core.done.notify_all();
        self.core.room.notify_all();
    }

    fn flush_until_closed_or_poisoned(&mut self) {
        let mut batch = Vec::new();
        while let Some(batch_end) = self.next_batch(&mut batch) {
            let result = self.write_batch(&batch, batch_end);
            batch.clear();
            let mut state = self.core.state.lock();
            match result {
                Ok(()) => state.durable = batch_end,
                Err(error) => {
                    state.poisoned = Some((error.kind(), error.to_string()));
                }
            }
            self.core.done.notify_all();
            self.core.room.notify_all();
            if state.poisoned.is_some() {
                return;
            }
        }
    }

    /// Waits for a batch (window closed, budget reached, or closing) and moves it
    /// into `batch`; `None` when the log is closing with nothing pending.
    fn next_batch(&self, batch: &mut Vec<u8>) -> Option<WalAnchor> {
        let core = &*self.core;
        let mut state = core.state.lock();
        loop {
            if state.poisoned.is_some() {
                return None;
            }
            match state.first_pending_at {
                Some(first) if !state.pending.is_empty() => {
                    if state.closing || state.pending.len() >= core.batch_budget_bytes {
                        break;
                    }
                    // A window too long to represent waits for the budget or close.
                    match first.checked_add(core.window) {
                        Some(deadline) if Instant::now() >= deadline => break,
                        Some(deadline) => {
                            let _ = core.work.wait_until(&mut state, deadline);
                        }
                        None => core.work.wait(&mut state),
                    }
                }
                _ if state.closing => return None,
                _ => core.work.wait(&mut state),
            }
        }
        std::mem::swap(batch, &mut state.pending);
        state.first_pending_at = None;
        core.room.notify_all();
        Some(state.appended)
    }

    /// One write and one fdatasync; then a new segment if this one is full.
    fn write_batch(&mut self, batch: &[u8], batch_end: WalAnchor) -> io::Result<()> {
        self.storage.append(batch)?;
        self.storage.sync_data()?;
        self.segment_len_bytes += batch.len() as u64;
        if self.segment_len_bytes >= self.segment_limit_bytes {
            let header = SegmentHeader::new(
                self.core.key.as_ref(),
                batch_end.next_sequence,
                batch_end.head_hash,
            )
            .encode();
            self.storage = self.dir.create_segment(batch_end.next_sequence, &header)?;
            self.segment_len_bytes = header.len() as u64;
            self.core.state.lock().segments_created += 1;
        }
        Ok(())
    }
}
