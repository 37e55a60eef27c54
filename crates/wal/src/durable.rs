//! Group commit: [`DurableWal`] lets many threads append at once and acknowledges
//! each record once its data is durable: one write per batch and one fdatasync
//! covering it, with up to [`DurableConfig::sync_concurrency`] fdatasyncs in
//! flight at once; the acknowledgement watermark follows behind, off the
//! acknowledgement path, at most once per [`DurableConfig::watermark_interval`]
//! (it is a lower bound of what was acknowledged).

use crate::EntryHash;
use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::io;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::ack::{AckWriter, initial_file};
use crate::error::{MAX_PANIC_MESSAGE_BYTES, WalError, WalThread};
use crate::format::{AckPoint, SegmentHeader, WalKey, encode_frame};
use crate::reader::{Frame, FrameReader};
use crate::recovery::{Recovery, WalAnchor};
use crate::segmented::SegmentedFrames;
use crate::storage::{Directory, FsDirectory, Storage, SyncHandle};
use crate::writer::encode_record;

/// Default group-commit window. The window is adaptive: a batch is written at once
/// when no sync is in flight (a lone record never waits for a timer); while syncs
/// are in flight and a sync slot is free, the flusher waits up to the window after
/// the batch's first record for more records before it starts an overlapping sync;
/// while every slot is busy, records gather until one frees.
pub const DEFAULT_WINDOW: Duration = Duration::from_micros(200);

/// Default number of data fdatasyncs that may be in flight at once (see
/// [`DurableConfig::sync_concurrency`]).
pub const DEFAULT_SYNC_CONCURRENCY: usize = 2;

/// Upper bound of [`DurableConfig::sync_concurrency`] (larger values are clamped):
/// one thread per slot.
pub const MAX_SYNC_CONCURRENCY: usize = 16;

/// Default byte budget of a batch: the flusher writes as soon as this many bytes
/// are pending, without waiting for the window to close.
pub const DEFAULT_BATCH_BUDGET_BYTES: usize = 1024 * 1024;

/// Default segment size limit: after a batch leaves the current segment at or
/// above it, the next batch goes to a new segment.
pub const DEFAULT_SEGMENT_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// Default [`DurableConfig::watermark_interval`]: the watermark is written at most
/// once per 10 ms.
pub const DEFAULT_WATERMARK_INTERVAL: Duration = Duration::from_millis(10);

/// Bound on bytes waiting for the flusher: appenders block (on a condition
/// variable, not spinning) while this many bytes are pending.
pub const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

/// Settings of a [`DurableWal`].
#[derive(Debug, Clone)]
pub struct DurableConfig {
    /// HMAC key, or `None` for the unkeyed (SHA-256) chain.
    pub key: Option<WalKey>,
    /// Group-commit window (adaptive: see [`DEFAULT_WINDOW`]).
    pub window: Duration,
    /// How many data fdatasyncs may be in flight at once, each on its own thread
    /// (clamped to [`MAX_SYNC_CONCURRENCY`]). A sync covers every batch written
    /// before it began, so overlapping syncs let a new batch become durable without
    /// waiting for the previous batch's sync to return. 0: the flusher syncs
    /// inline, one sync at a time (also what happens for a storage without a
    /// [`Storage::sync_handle`]).
    pub sync_concurrency: usize,
    /// Batch byte budget.
    pub batch_budget_bytes: usize,
    /// Segment size limit.
    pub segment_limit_bytes: u64,
    /// A trusted anchor the existing log must reach.
    pub anchor: Option<WalAnchor>,
    /// Where a directory whose oldest segments were retired starts: a trusted
    /// anchor with `next_sequence` at or after the first segment's first
    /// sequence (normally [`RetiredSegments::start_anchor`]). `None`: the first
    /// segment must start at sequence 0.
    pub start_anchor: Option<WalAnchor>,
    /// The least time between the starts of two watermark writes (default
    /// [`DEFAULT_WATERMARK_INTERVAL`]). The watermark thread writes the newest
    /// durable position when the interval since its previous write (or since the
    /// log was opened) has passed, so one write covers every sync of the interval
    /// and the watermark trails the durable position by at most the interval plus
    /// one watermark write (write and fdatasync of the `ACK` file; plus the one in
    /// progress when that takes longer than the interval). Acknowledgements never
    /// wait for it. Closing (or dropping) the log writes the last durable position
    /// at once, without waiting for the interval. [`Duration::ZERO`]: a watermark
    /// after every data sync, as soon as the previous one is written. A longer
    /// interval means fewer `ACK` writes and a wider span of acknowledged records
    /// after the watermark, in which media damage that looks like a torn tail is
    /// cut rather than refused (see `docs/SPECIFICATION.md`, "Durability
    /// contract"); an interval too long to represent waits for the close.
    pub watermark_interval: Duration,
}

impl Default for DurableConfig {
    fn default() -> Self {
        Self {
            key: None,
            window: DEFAULT_WINDOW,
            sync_concurrency: DEFAULT_SYNC_CONCURRENCY,
            batch_budget_bytes: DEFAULT_BATCH_BUDGET_BYTES,
            segment_limit_bytes: DEFAULT_SEGMENT_LIMIT_BYTES,
            anchor: None,
            start_anchor: None,
            watermark_interval: DEFAULT_WATERMARK_INTERVAL,
        }
    }
}

/// Group-commit counters of a [`DurableWal`] since it was opened (see
/// [`DurableWal::stats`]): how many batches were written, how large, and how long
/// their data and watermark syncs took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurableStats {
    /// Batches written (one write each; each covered by a data fdatasync).
    pub batches: u64,
    /// Records in those batches.
    pub records: u64,
    /// Bytes in those batches.
    pub bytes: u64,
    /// Total time in the data fdatasyncs, nanoseconds (overlapping syncs each
    /// count their own time).
    pub data_sync_nanos: u64,
    /// Data fdatasyncs (one may cover several batches written while every sync
    /// slot was busy).
    pub data_syncs: u64,
    /// Watermark writes (each one write and one fdatasync of the `ACK` file; at
    /// most one per [`DurableConfig::watermark_interval`], plus the last one at
    /// close; the one written when the log is opened is not counted).
    pub watermarks: u64,
    /// Total time in the watermark writes and fdatasyncs, nanoseconds.
    pub watermark_sync_nanos: u64,
    /// The data fdatasyncs by how long each took: entry `i` counts those that took
    /// at most [`DATA_SYNC_BUCKET_BOUNDS_US`]`[i]` microseconds and more than the
    /// bound before it; the last entry counts those above the last bound. Each
    /// entry is exact; read apart from `data_syncs`, their sum may trail it by the
    /// syncs in flight.
    pub data_sync_buckets: [u64; DATA_SYNC_BUCKETS],
}

/// Upper bounds, in microseconds, of the latency buckets of
/// [`DurableStats::data_sync_buckets`] (a slow fdatasync is what a durable answer's
/// tail latency is made of: these show how often one is slow, and how slow).
pub const DATA_SYNC_BUCKET_BOUNDS_US: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

/// Entries of [`DurableStats::data_sync_buckets`]: one per bound, and one above.
pub const DATA_SYNC_BUCKETS: usize = DATA_SYNC_BUCKET_BOUNDS_US.len() + 1;

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    data_sync_nanos: AtomicU64,
    data_syncs: AtomicU64,
    data_sync_buckets: [AtomicU64; DATA_SYNC_BUCKETS],
    watermarks: AtomicU64,
    watermark_sync_nanos: AtomicU64,
}

impl Counters {
    /// Counts one data fdatasync that took `nanos`.
    fn data_sync(&self, nanos: u64) {
        let micros = nanos / 1_000;
        let bucket = DATA_SYNC_BUCKET_BOUNDS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(DATA_SYNC_BUCKET_BOUNDS_US.len());
        debug_assert!(bucket < DATA_SYNC_BUCKETS);
        self.data_sync_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.data_sync_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.data_syncs.fetch_add(1, Ordering::Relaxed);
    }
}

fn nanos_since(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What [`DurableWal::retire_segments_before`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredSegments {
    /// First sequences of the segment files removed (or, from
    /// [`DurableWal::plan_retirement`], to be removed), ascending.
    pub removed: Vec<u64>,
    /// The bound actually used: the requested sequence, clamped to the durable
    /// position. Retiring before it again removes exactly the same segments.
    pub before_sequence: u64,
    /// Where the log now starts: keep it, and pass it as
    /// [`DurableConfig::start_anchor`] (or to a reader's `with_start_anchor`)
    /// to open the directory again.
    pub start_anchor: WalAnchor,
}

/// Bound on tickets' registered wakers: one per pending [`TicketFuture`] that
/// was polled, so it is bounded by the records in flight; this names the
/// capacity the registry is asserted against.
const MAX_REGISTERED_WAKERS: usize = 1 << 24;

#[derive(Debug)]
struct State {
    pending: Vec<u8>,
    first_pending_at: Option<Instant>,
    appended: WalAnchor,
    durable: WalAnchor,
    /// The position the watermark file last recorded (at or before `durable`).
    watermarked: WalAnchor,
    poisoned: Option<Poison>,
    closing: bool,
    /// The newest position whose data is synced but whose watermark is not
    /// written yet (latest wins: one watermark write covers every batch before it).
    ack_pending: Option<AckPoint>,
    /// The newest written batch end no sync has claimed yet (latest wins: one sync
    /// covers every batch written before it).
    sync_target: Option<SyncTarget>,
    /// Sync slots in use: syncs running, plus one for an unclaimed `sync_target`.
    busy_syncs: usize,
    /// Sync threads that have exited.
    syncers_exited: usize,
    /// Set by the data flusher as it exits.
    data_exited: bool,
    /// Set once the flusher and every sync thread have exited; after that nothing
    /// more becomes durable.
    flusher_exited: bool,
    segments_created: u64,
    /// First sequence of the segment the flusher writes to.
    current_segment: u64,
    /// Wakers of pending [`TicketFuture`]s: id to (sequence, waker).
    wakers: BTreeMap<u64, (u64, Waker)>,
    next_waker_id: u64,
}

impl State {
    /// Takes the wakers that may now complete: those whose record is durable,
    /// or all of them once the log is poisoned or its flusher has exited.
    fn take_ready_wakers(&mut self) -> Vec<Waker> {
        let all = self.poisoned.is_some() || self.flusher_exited;
        let durable = self.durable.next_sequence;
        let ready: Vec<u64> = self
            .wakers
            .iter()
            .filter(|(_, (sequence, _))| all || *sequence < durable)
            .map(|(id, _)| *id)
            .collect();
        ready
            .into_iter()
            .filter_map(|id| self.wakers.remove(&id).map(|(_, waker)| waker))
            .collect()
    }
}

/// Why the log stopped acknowledging (the first cause wins).
#[derive(Debug, Clone)]
enum Poison {
    /// A write or sync failed.
    Io {
        kind: io::ErrorKind,
        message: String,
    },
    /// A background thread panicked.
    Panicked { thread: WalThread, message: String },
}

impl Poison {
    /// The error every waiter and later caller gets.
    fn to_error(&self) -> WalError {
        match self {
            Self::Io { kind, message } => WalError::Poisoned {
                kind: *kind,
                message: message.clone(),
            },
            Self::Panicked { thread, message } => WalError::ThreadPanicked {
                thread: *thread,
                message: message.clone(),
            },
        }
    }
}

/// The message of a caught panic, cut to [`MAX_PANIC_MESSAGE_BYTES`] (at a
/// character boundary).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    let mut end = text.len().min(MAX_PANIC_MESSAGE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let message = text.get(..end).unwrap_or_default().to_owned();
    debug_assert!(message.len() <= MAX_PANIC_MESSAGE_BYTES);
    message
}

/// A written batch end and the handle whose sync makes it durable.
#[derive(Debug, Clone)]
struct SyncTarget {
    point: AckPoint,
    handle: Arc<dyn SyncHandle>,
}

#[derive(Debug)]
struct Core {
    state: Mutex<State>,
    /// The flusher waits here for work (appenders notify it) and for a free sync
    /// slot (sync threads notify it).
    work: Condvar,
    /// Sync threads wait here for a written batch.
    sync_work: Condvar,
    /// Ticket holders wait here; the flusher notifies after each batch.
    done: Condvar,
    /// Appenders wait here while the pending buffer is full.
    room: Condvar,
    /// The watermark thread waits here for synced batches.
    ack_work: Condvar,
    key: Option<WalKey>,
    window: Duration,
    batch_budget_bytes: usize,
    /// Sync threads (0: the flusher syncs inline).
    sync_slots: usize,
    /// Least time between the starts of two watermark writes.
    watermark_interval: Duration,
    counters: Counters,
}

impl Core {
    fn poison_error(poisoned: &Poison) -> WalError {
        poisoned.to_error()
    }

    /// Wakes every thread and future that may have something to do after a
    /// change of `state` (which the caller has just released or still holds).
    fn wake_all(&self, wakers: Vec<Waker>) {
        self.done.notify_all();
        self.room.notify_all();
        self.work.notify_all();
        self.sync_work.notify_all();
        self.ack_work.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Records that a sync covering `point` returned: moves the durable position
    /// (never backwards: overlapping syncs may return out of order), hands the
    /// point to the watermark thread, and completes the tickets it covers.
    fn made_durable(&self, point: AckPoint) {
        let mut new_ack_work = false;
        let wakers = {
            let mut state = self.state.lock();
            if point.anchor.next_sequence > state.durable.next_sequence {
                debug_assert!(point.anchor.next_sequence <= state.appended.next_sequence);
                debug_assert!(
                    state
                        .ack_pending
                        .is_none_or(|p| p.anchor.next_sequence < point.anchor.next_sequence)
                );
                state.durable = point.anchor;
                // A point already pending means the watermark thread knows there
                // is work (it is writing, or waiting for its interval, and takes
                // the newest point then): only the first one needs to wake it.
                new_ack_work = state.ack_pending.replace(point).is_none();
            }
            state.take_ready_wakers()
        };
        if new_ack_work {
            self.ack_work.notify_one();
        }
        self.done.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Poisons the log with `error` and wakes everyone.
    fn poison(&self, error: &io::Error) {
        self.poison_with(Poison::Io {
            kind: error.kind(),
            message: error.to_string(),
        });
    }

    /// Poisons the log because `thread` panicked (caught at the top of its body)
    /// and wakes everyone: nothing it had not reported durable ever will be.
    fn panicked(&self, thread: WalThread, payload: &(dyn Any + Send)) {
        self.poison_with(Poison::Panicked {
            thread,
            message: panic_message(payload),
        });
    }

    /// Poisons the log (unless it already is: the first cause is kept) and wakes
    /// everyone.
    fn poison_with(&self, poison: Poison) {
        let wakers = {
            let mut state = self.state.lock();
            state.poisoned.get_or_insert(poison);
            state.take_ready_wakers()
        };
        self.wake_all(wakers);
    }

    /// What a ticket for `sequence` resolves to now; `None` while pending.
    fn resolution(state: &State, sequence: u64) -> Option<Result<u64, WalError>> {
        if state.durable.next_sequence > sequence {
            return Some(Ok(sequence));
        }
        if let Some(poisoned) = &state.poisoned {
            return Some(Err(Self::poison_error(poisoned)));
        }
        if state.flusher_exited {
            return Some(Err(WalError::Closed));
        }
        None
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
    /// became durable, [`WalError::ThreadPanicked`] when one of the log's
    /// background threads panicked before it; [`WalError::Closed`] when the log
    /// shut down without it.
    pub fn wait(&self) -> Result<u64, WalError> {
        let mut state = self.core.state.lock();
        loop {
            if let Some(resolution) = Core::resolution(&state, self.sequence) {
                return resolution;
            }
            self.core.done.wait(&mut state);
        }
    }

    /// True once the record is durable; never blocks.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.core.state.lock().durable.next_sequence > self.sequence
    }

    /// A future that resolves as [`Ticket::wait`] returns, without blocking a
    /// thread: the flusher wakes it after the batch that makes the record
    /// durable (or on poison or close). Needs no async runtime; `.await` on the
    /// ticket itself does the same ([`IntoFuture`]).
    pub fn durable(&self) -> TicketFuture {
        TicketFuture {
            ticket: self.clone(),
            waker_id: None,
        }
    }
}

impl IntoFuture for Ticket {
    type Output = Result<u64, WalError>;
    type IntoFuture = TicketFuture;

    fn into_future(self) -> TicketFuture {
        TicketFuture {
            ticket: self,
            waker_id: None,
        }
    }
}

/// Resolves once a ticket's record is durable (`Ok(sequence)`), or with the
/// error [`Ticket::wait`] would return. Registers its [`Waker`] in the log's
/// shared state; the flusher wakes it. `Send`, `Unpin`, and removes its
/// registration when dropped.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct TicketFuture {
    ticket: Ticket,
    waker_id: Option<u64>,
}

impl TicketFuture {
    /// The record's sequence number.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.ticket.sequence
    }
}

impl Future for TicketFuture {
    type Output = Result<u64, WalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core = &*this.ticket.core;
        let mut state = core.state.lock();
        if let Some(resolution) = Core::resolution(&state, this.ticket.sequence) {
            if let Some(id) = this.waker_id.take() {
                state.wakers.remove(&id);
            }
            return Poll::Ready(resolution);
        }
        match this.waker_id {
            Some(id) => match state.wakers.get_mut(&id) {
                Some((_, waker)) if waker.will_wake(cx.waker()) => {}
                Some((_, waker)) => waker.clone_from(cx.waker()),
                None => {
                    state
                        .wakers
                        .insert(id, (this.ticket.sequence, cx.waker().clone()));
                }
            },
            None => {
                debug_assert!(state.wakers.len() < MAX_REGISTERED_WAKERS);
                let id = state.next_waker_id;
                state.next_waker_id = id.wrapping_add(1);
                state
                    .wakers
                    .insert(id, (this.ticket.sequence, cx.waker().clone()));
                this.waker_id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl Drop for TicketFuture {
    fn drop(&mut self) {
        if let Some(id) = self.waker_id.take() {
            self.ticket.core.state.lock().wakers.remove(&id);
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A log that many threads append to at once, with group commit and segment
/// rotation, in a directory of segment files and one watermark file (`ACK`).
///
/// `append` encodes and chains the record and returns a [`Ticket`]; one
/// background flusher thread writes what is pending as one batch (at once when no
/// sync is in flight, else after the adaptive window, see [`DEFAULT_WINDOW`]) and
/// hands the written position to one of [`DurableConfig::sync_concurrency`] sync
/// threads, whose fdatasync covers every batch written before it; when it
/// returns, the tickets it covers complete. A watermark thread then writes the
/// newest durable position into the watermark file and fdatasyncs that, off the
/// acknowledgement path and at most once per [`DurableConfig::watermark_interval`]
/// (the last position at close): the watermark is a lower bound of what was acknowledged
/// (recovery refuses damage at or before it, and records after it are kept when
/// they verify; see `docs/SPECIFICATION.md`). One watermark write covers every
/// batch synced before it. A failed write or sync (data or watermark) poisons the
/// log: every waiting ticket and every later append gets [`WalError::Poisoned`];
/// a panic in one of the background threads (flusher, sync, watermark) is caught
/// and poisons it the same way, with [`WalError::ThreadPanicked`] (nothing the
/// panicking thread had not reported durable is acknowledged, and no appender is
/// left waiting; a build with `panic = "abort"` aborts instead). Reopening
/// recovers every acknowledged record.
#[derive(Debug)]
pub struct DurableWal<T: ?Sized, D: Directory = FsDirectory> {
    core: Arc<Core>,
    dir: Arc<D>,
    flusher: Option<JoinHandle<()>>,
    syncers: Vec<JoinHandle<()>>,
    acker: Option<JoinHandle<()>>,
    recovery: Recovery,
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

    /// Opens (or creates) the segment directory at `path`, calling `visit` on
    /// every verified frame of the single recovery scan (see
    /// [`DurableWal::open_in_visiting`]).
    ///
    /// # Errors
    /// As [`DurableWal::open_in_visiting`].
    pub fn open_visiting<E, F>(path: &Path, config: DurableConfig, visit: F) -> Result<Self, E>
    where
        E: From<WalError>,
        F: FnMut(&Frame<'_>) -> Result<(), E>,
    {
        Self::open_in_visiting(FsDirectory::new(path).map_err(WalError::Io)?, config, visit)
    }
}

impl<T: Serialize + ?Sized, D: Directory> DurableWal<T, D> {
    /// Takes the directory's writer lock, verifies every segment against the
    /// watermark, cuts a torn tail of the last one, and starts the flusher.
    ///
    /// # Errors
    /// [`WalError::Locked`] when another writer holds the directory;
    /// [`WalError::Refused`] for corruption (including damage at or before the
    /// acknowledged position), a wrong key, an unknown version, an unmet anchor,
    /// a missing genesis without a start anchor; an I/O error.
    pub fn open_in(dir: D, config: DurableConfig) -> Result<Self, WalError> {
        Self::open_in_visiting(dir, config, |_| Ok::<(), WalError>(()))
    }

    /// [`DurableWal::open_in`], calling `visit` on every verified frame, in
    /// order, during the one recovery scan, so a caller rebuilding its state
    /// from the log reads it once. Frames of a torn tail are never visited (they
    /// do not verify); when the log is refused, frames before the refusal may
    /// have been visited. An error from `visit` aborts the open with that error
    /// (nothing is modified, the lock is released).
    ///
    /// # Errors
    /// As [`DurableWal::open_in`] (converted with `From<WalError>`), or the
    /// visitor's error.
    pub fn open_in_visiting<E, F>(dir: D, config: DurableConfig, mut visit: F) -> Result<Self, E>
    where
        E: From<WalError>,
        F: FnMut(&Frame<'_>) -> Result<(), E>,
    {
        let guard = dir.lock()?;
        let mut frames = SegmentedFrames::new(dir, config.key.as_ref(), config.anchor)?
            .with_start_anchor(config.start_anchor);
        let recovery = loop {
            match frames.next_frame() {
                Ok(Some(frame)) => visit(&frame)?,
                Ok(None) => break frames.outcome().cloned().ok_or(WalError::Closed)?,
                Err(WalError::Refused(refusal)) => return Err(WalError::Refused(refusal).into()),
                Err(other) => return Err(other.into()),
            }
        };
        Ok(Self::start(frames, guard, config, recovery)?)
    }

    /// Cuts a torn tail, makes what recovery kept durable, records it in the
    /// watermark, and starts the two threads.
    fn start(
        mut frames: SegmentedFrames<D>,
        guard: D::Guard,
        config: DurableConfig,
        recovery: Recovery,
    ) -> Result<Self, WalError> {
        let last_segment = frames.segments().last().copied();
        let watermark = frames.take_watermark();
        let dir = frames.into_dir();
        let (position, segment, mut storage, segment_len_bytes) = match (&recovery, last_segment) {
            (
                Recovery::Clean {
                    anchor, len_bytes, ..
                },
                Some(first),
            ) => (*anchor, first, dir.open_segment(first)?, *len_bytes),
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
                (*anchor, first, storage, *valid_len_bytes)
            }
            (Recovery::Clean { anchor, .. }, None) => {
                let header = SegmentHeader::new(config.key.as_ref(), 0, anchor.head_hash).encode();
                (
                    *anchor,
                    0,
                    dir.create_segment(0, &header)?,
                    header.len() as u64,
                )
            }
            (refusal, _) => return Err(WalError::Refused(refusal.clone())),
        };
        // What recovery kept is made durable before the watermark vouches for it.
        storage.sync_data()?;
        let point = AckPoint {
            segment_first_sequence: segment,
            end_offset_bytes: segment_len_bytes,
            anchor: position,
        };
        let ack = match watermark {
            Some((ack, generation)) => {
                let mut ack = AckWriter::new(ack, config.key.clone(), generation, point);
                ack.write(point)?;
                ack
            }
            None => {
                let ack = dir.create_ack(&initial_file(point, config.key.as_ref()))?;
                AckWriter::new(ack, config.key.clone(), 1, point)
            }
        };
        let handle = storage.sync_handle()?;
        let sync_slots = if handle.is_some() {
            config.sync_concurrency.min(MAX_SYNC_CONCURRENCY)
        } else {
            0
        };
        let core = Arc::new(Core {
            state: Mutex::new(State {
                pending: Vec::new(),
                first_pending_at: None,
                appended: position,
                durable: position,
                watermarked: position,
                poisoned: None,
                closing: false,
                ack_pending: None,
                sync_target: None,
                busy_syncs: 0,
                syncers_exited: 0,
                data_exited: false,
                flusher_exited: false,
                segments_created: 0,
                current_segment: segment,
                wakers: BTreeMap::new(),
                next_waker_id: 0,
            }),
            work: Condvar::new(),
            sync_work: Condvar::new(),
            done: Condvar::new(),
            room: Condvar::new(),
            ack_work: Condvar::new(),
            key: config.key.clone(),
            window: config.window,
            batch_budget_bytes: config.batch_budget_bytes.max(1),
            sync_slots,
            watermark_interval: config.watermark_interval,
            counters: Counters::default(),
        });
        let dir = Arc::new(dir);
        let flusher = Flusher {
            core: Arc::clone(&core),
            dir: Arc::clone(&dir),
            storage,
            handle,
            segment,
            segment_len_bytes,
            segment_limit_bytes: config.segment_limit_bytes,
        };
        let acker = Acker {
            core: Arc::clone(&core),
            ack,
            // The watermark was just written (or created) above: the interval
            // runs from now.
            last_write_at: Instant::now(),
            _guard: guard,
        };
        let acker = std::thread::Builder::new()
            .name("calybris-wal-ack".into())
            .spawn(move || acker.run())?;
        // Threads that could not start are counted as exited, so the others finish.
        let shut_down = |core: &Arc<Core>, syncers: Vec<JoinHandle<()>>, missing: usize| {
            {
                let mut state = core.state.lock();
                state.data_exited = true;
                state.closing = true;
                state.syncers_exited += missing;
            }
            core.wake_all(Vec::new());
            for syncer in syncers {
                let _ = syncer.join();
            }
            let mut state = core.state.lock();
            if state.syncers_exited == core.sync_slots {
                state.flusher_exited = true;
            }
            drop(state);
            core.wake_all(Vec::new());
        };
        let mut syncers = Vec::with_capacity(sync_slots);
        for slot in 0..sync_slots {
            let syncer = Syncer {
                core: Arc::clone(&core),
            };
            match std::thread::Builder::new()
                .name(format!("calybris-wal-sync-{slot}"))
                .spawn(move || syncer.run())
            {
                Ok(handle) => syncers.push(handle),
                Err(error) => {
                    shut_down(&core, syncers, sync_slots - slot);
                    let _ = acker.join();
                    return Err(WalError::Io(error));
                }
            }
        }
        let flusher = match std::thread::Builder::new()
            .name("calybris-wal-flusher".into())
            .spawn(move || flusher.run())
        {
            Ok(handle) => handle,
            Err(error) => {
                shut_down(&core, syncers, 0);
                let _ = acker.join();
                return Err(WalError::Io(error));
            }
        };
        Ok(Self {
            core,
            dir,
            flusher: Some(flusher),
            syncers,
            acker: Some(acker),
            recovery,
            _record: PhantomData,
        })
    }

    /// What opening found: clean, or a torn tail that was cut, and what the
    /// watermark vouched for.
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Encodes and chains `record` and queues it for the next batch.
    ///
    /// # Errors
    /// [`WalError::Poisoned`], [`WalError::ThreadPanicked`], [`WalError::Closed`],
    /// [`WalError::Encode`], [`WalError::RecordTooLarge`] or
    /// [`WalError::SequenceExhausted`].
    pub fn append(&self, record: &T) -> Result<Ticket, WalError> {
        self.append_serialized(record).map(|(ticket, _)| ticket)
    }

    /// As [`append`](Self::append), and also returns the record's entry hash
    /// (for a Merkle tree kept beside the log), taken under the same lock as
    /// the append rather than read back with [`appended_anchor`](Self::appended_anchor).
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn append_hashed(&self, record: &T) -> Result<(Ticket, EntryHash), WalError> {
        self.append_serialized(record)
    }

    /// Appends any value that serializes like a `T` (borrowed forms of owned
    /// record types).
    pub(crate) fn append_serialized<U: Serialize + ?Sized>(
        &self,
        record: &U,
    ) -> Result<(Ticket, EntryHash), WalError> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            encode_record(record, &mut scratch)?;
            self.append_payload(&scratch)
        })
    }

    fn append_payload(&self, payload: &[u8]) -> Result<(Ticket, EntryHash), WalError> {
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
        Ok((
            Ticket {
                sequence,
                core: Arc::clone(&self.core),
            },
            hash,
        ))
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

    /// The position the acknowledgement watermark last recorded: at or before
    /// [`DurableWal::durable_anchor`], which it follows off the acknowledgement
    /// path (a lower bound of what was acknowledged).
    #[must_use]
    pub fn watermarked_anchor(&self) -> WalAnchor {
        self.core.state.lock().watermarked
    }

    /// The position after the last appended record.
    #[must_use]
    pub fn appended_anchor(&self) -> WalAnchor {
        self.core.state.lock().appended
    }

    /// The group-commit counters since this log was opened (relaxed reads: each
    /// counter is exact, the set is not one snapshot).
    #[must_use]
    pub fn stats(&self) -> DurableStats {
        let counters = &self.core.counters;
        DurableStats {
            batches: counters.batches.load(Ordering::Relaxed),
            records: counters.records.load(Ordering::Relaxed),
            bytes: counters.bytes.load(Ordering::Relaxed),
            data_sync_nanos: counters.data_sync_nanos.load(Ordering::Relaxed),
            data_syncs: counters.data_syncs.load(Ordering::Relaxed),
            watermarks: counters.watermarks.load(Ordering::Relaxed),
            watermark_sync_nanos: counters.watermark_sync_nanos.load(Ordering::Relaxed),
            data_sync_buckets: std::array::from_fn(|i| {
                counters.data_sync_buckets[i].load(Ordering::Relaxed)
            }),
        }
    }

    /// How many segments this writer has created by rotation.
    #[must_use]
    pub fn segments_created(&self) -> u64 {
        self.core.state.lock().segments_created
    }

    /// What [`DurableWal::retire_segments_before`] would remove for `sequence`,
    /// without removing anything: the segments, the effective bound (`sequence`
    /// clamped to the durable position) and the start anchor the log will have.
    /// Persist `start_anchor` first, then retire with `before_sequence`: a crash
    /// in the middle of the removal then leaves a directory that opens from the
    /// persisted anchor, because the first segment left is at or before it.
    ///
    /// # Errors
    /// An I/O error, or a refusal when the first segment kept has a bad header.
    pub fn plan_retirement(&self, sequence: u64) -> Result<RetiredSegments, WalError> {
        let (limit, current) = {
            let state = self.core.state.lock();
            (
                sequence.min(state.durable.next_sequence),
                state.current_segment,
            )
        };
        let segments = self.dir.list_segments()?;
        let mut removed = Vec::new();
        for pair in segments.windows(2) {
            let [first, next] = [pair[0], pair[1]];
            // A segment holds the records from its first sequence up to the next
            // segment's; the one being written has no successor yet.
            if next > limit || first >= current {
                break;
            }
            debug_assert!(first < next && next <= sequence);
            removed.push(first);
        }
        let first_left = segments.get(removed.len()).copied().unwrap_or(current);
        let reader = FrameReader::new(self.dir.open_segment(first_left)?, self.core.key.as_ref())?;
        let header = reader.header();
        debug_assert_eq!(header.first_sequence, first_left);
        Ok(RetiredSegments {
            removed,
            before_sequence: limit,
            start_anchor: WalAnchor {
                next_sequence: header.first_sequence,
                head_hash: header.prev_hash,
            },
        })
    }

    /// Deletes the segment files whose records all lie before `sequence` (never
    /// the segment being written, never one holding `sequence` or a record not
    /// yet durable), oldest first, then syncs the directory. Returns what was
    /// removed and the anchor the log now starts at: keep it and pass it as
    /// [`DurableConfig::start_anchor`] to reopen, since the log no longer
    /// verifies from genesis. To survive a crash during the removal, persist the
    /// anchor of [`DurableWal::plan_retirement`] first and pass its
    /// `before_sequence` here: the result is then the same plan.
    ///
    /// # Errors
    /// An I/O error (segments removed before it stay removed; the log stays
    /// readable from the first one left, given the anchor of its header), or a
    /// refusal when the first segment left has a bad header.
    pub fn retire_segments_before(&self, sequence: u64) -> Result<RetiredSegments, WalError> {
        let plan = self.plan_retirement(sequence)?;
        for first in &plan.removed {
            self.dir.remove_segment(*first)?;
        }
        if !plan.removed.is_empty() {
            self.dir.sync()?;
        }
        Ok(plan)
    }

    /// Makes everything appended so far durable, stops the flusher and releases
    /// the lock; returns the durable position.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] when a write or sync failed,
    /// [`WalError::ThreadPanicked`] when a background thread panicked.
    pub fn close(mut self) -> Result<WalAnchor, WalError> {
        self.stop();
        let state = self.core.state.lock();
        match &state.poisoned {
            Some(poisoned) => Err(Core::poison_error(poisoned)),
            None => Ok(state.durable),
        }
    }
}

impl<T: ?Sized, D: Directory> DurableWal<T, D> {
    /// Stops the threads (the flusher writes and syncs what is pending first,
    /// the watermark thread records the last durable position) and waits for them.
    fn stop(&mut self) {
        self.core.state.lock().closing = true;
        self.core.wake_all(Vec::new());
        let mut panicked = None;
        let syncers = std::mem::take(&mut self.syncers);
        for (thread, handle) in self
            .flusher
            .take()
            .map(|handle| (WalThread::Flusher, handle))
            .into_iter()
            .chain(syncers.into_iter().map(|handle| (WalThread::Sync, handle)))
            .chain(
                self.acker
                    .take()
                    .map(|handle| (WalThread::Watermark, handle)),
            )
        {
            // Each thread catches a panic of its body and poisons the log itself;
            // this is for one escaping its exit bookkeeping.
            if let Err(payload) = handle.join() {
                panicked.get_or_insert((thread, payload));
            }
        }
        let wakers = {
            let mut state = self.core.state.lock();
            if let Some((thread, payload)) = &panicked {
                state.poisoned.get_or_insert(Poison::Panicked {
                    thread: *thread,
                    message: panic_message(payload.as_ref()),
                });
            }
            state.flusher_exited = true;
            state.take_ready_wakers()
        };
        self.core.wake_all(wakers);
    }
}

impl<T: ?Sized, D: Directory> Drop for DurableWal<T, D> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The data thread: it alone writes the segments.
struct Flusher<D: Directory> {
    core: Arc<Core>,
    dir: Arc<D>,
    storage: D::Storage,
    /// Syncs the current segment from a sync thread (`None`: inline syncs).
    handle: Option<Arc<dyn SyncHandle>>,
    segment: u64,
    segment_len_bytes: u64,
    segment_limit_bytes: u64,
}

impl<D: Directory> Flusher<D> {
    fn run(mut self) {
        let body = panic::catch_unwind(AssertUnwindSafe(|| self.flush_until_closed_or_poisoned()));
        if let Err(payload) = body {
            self.core.panicked(WalThread::Flusher, payload.as_ref());
        }
        let wakers = {
            let mut state = self.core.state.lock();
            state.data_exited = true;
            if state.syncers_exited == self.core.sync_slots {
                state.flusher_exited = true;
            }
            state.take_ready_wakers()
        };
        self.core.wake_all(wakers);
    }

    fn flush_until_closed_or_poisoned(&mut self) {
        let mut batch = Vec::new();
        // Nothing is written or synced before this thread runs, so the durable
        // position is where the first batch starts (appends may already be pending).
        let mut previous_end = self.core.state.lock().durable.next_sequence;
        while let Some(batch_end) = self.next_batch(&mut batch) {
            debug_assert!(batch_end.next_sequence > previous_end);
            let records = batch_end.next_sequence - previous_end;
            previous_end = batch_end.next_sequence;
            let result = self.write_batch(&batch, batch_end, records);
            batch.clear();
            if let Err(error) = result {
                self.core.poison(&error);
                return;
            }
        }
    }

    /// Waits for a batch and moves it into `batch`; `None` when the log is closing
    /// with nothing pending (or poisoned). The window is adaptive: with no sync in
    /// flight the batch goes at once; with a free sync slot it goes once its first
    /// record has waited the window (or the byte budget is reached, or the log is
    /// closing); with every slot busy it waits for one to free.
    fn next_batch(&self, batch: &mut Vec<u8>) -> Option<WalAnchor> {
        let core = &*self.core;
        let mut state = core.state.lock();
        loop {
            if state.poisoned.is_some() {
                return None;
            }
            match state.first_pending_at {
                Some(first) if !state.pending.is_empty() => {
                    debug_assert!(state.busy_syncs <= core.sync_slots);
                    if core.sync_slots == 0 || state.busy_syncs == 0 {
                        break;
                    }
                    if state.busy_syncs >= core.sync_slots {
                        core.work.wait(&mut state);
                        continue;
                    }
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

    /// One write; then either hands the batch end to a sync thread, or (inline
    /// mode, or a segment about to be closed) syncs it here. A full segment is
    /// synced before the next one is created, so only the last segment can hold
    /// bytes that are not durable.
    fn write_batch(&mut self, batch: &[u8], batch_end: WalAnchor, records: u64) -> io::Result<()> {
        debug_assert!(!batch.is_empty());
        self.storage.append(batch)?;
        let counters = &self.core.counters;
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.records.fetch_add(records, Ordering::Relaxed);
        counters
            .bytes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.segment_len_bytes += batch.len() as u64;
        let point = AckPoint {
            segment_first_sequence: self.segment,
            end_offset_bytes: self.segment_len_bytes,
            anchor: batch_end,
        };
        let rotate = self.segment_len_bytes >= self.segment_limit_bytes;
        match &self.handle {
            Some(handle) if self.core.sync_slots > 0 && !rotate => {
                let mut state = self.core.state.lock();
                if state.sync_target.is_none() {
                    state.busy_syncs += 1;
                }
                // The write above returned: a sync that begins after this covers it.
                state.sync_target = Some(SyncTarget {
                    point,
                    handle: Arc::clone(handle),
                });
                drop(state);
                self.core.sync_work.notify_one();
            }
            _ => {
                let syncing = Instant::now();
                self.storage.sync_data()?;
                counters.data_sync(nanos_since(syncing));
                self.core.made_durable(point);
            }
        }
        if rotate {
            let header = SegmentHeader::new(
                self.core.key.as_ref(),
                batch_end.next_sequence,
                batch_end.head_hash,
            )
            .encode();
            self.storage = self.dir.create_segment(batch_end.next_sequence, &header)?;
            self.handle = self.storage.sync_handle()?;
            self.segment = batch_end.next_sequence;
            self.segment_len_bytes = header.len() as u64;
            let mut state = self.core.state.lock();
            state.segments_created += 1;
            state.current_segment = self.segment;
        }
        Ok(())
    }
}

/// A sync thread: it fdatasyncs the newest written batch end and completes the
/// tickets that sync covers. Several run at once (one per sync slot).
struct Syncer {
    core: Arc<Core>,
}

impl Syncer {
    fn run(self) {
        let body = panic::catch_unwind(AssertUnwindSafe(|| self.sync_until_done()));
        if let Err(payload) = body {
            self.core.panicked(WalThread::Sync, payload.as_ref());
        }
        let wakers = {
            let mut state = self.core.state.lock();
            state.syncers_exited += 1;
            debug_assert!(state.syncers_exited <= self.core.sync_slots);
            if state.data_exited && state.syncers_exited == self.core.sync_slots {
                state.flusher_exited = true;
            }
            state.take_ready_wakers()
        };
        self.core.wake_all(wakers);
    }

    /// Syncs written batch ends until poisoned or until the flusher has exited
    /// with nothing left to sync.
    fn sync_until_done(&self) {
        while let Some(target) = self.next_target() {
            let syncing = Instant::now();
            let result = target.handle.sync_data();
            let counters = &self.core.counters;
            counters.data_sync(nanos_since(syncing));
            match result {
                Ok(()) => self.core.made_durable(target.point),
                Err(error) => self.core.poison(&error),
            }
            {
                let mut state = self.core.state.lock();
                debug_assert!(state.busy_syncs > 0);
                state.busy_syncs = state.busy_syncs.saturating_sub(1);
            }
            self.core.work.notify_one();
        }
    }

    /// Waits for a written batch end to sync; `None` once poisoned, or once the
    /// flusher has exited with nothing left to sync.
    fn next_target(&self) -> Option<SyncTarget> {
        let mut state = self.core.state.lock();
        loop {
            if state.poisoned.is_some() {
                return None;
            }
            if let Some(target) = state.sync_target.take() {
                return Some(target);
            }
            if state.data_exited {
                return None;
            }
            self.core.sync_work.wait(&mut state);
        }
    }
}

/// The watermark thread: it alone writes the `ACK` file, behind the durable
/// position (never ahead of it): tickets complete without waiting for it.
struct Acker<S: Storage, G> {
    core: Arc<Core>,
    ack: AckWriter<S>,
    /// When the previous watermark write began.
    last_write_at: Instant,
    /// Held until the last watermark is written.
    _guard: G,
}

impl<S: Storage, G> Acker<S, G> {
    fn run(mut self) {
        let body = panic::catch_unwind(AssertUnwindSafe(|| self.write_until_done()));
        if let Err(payload) = body {
            self.core.panicked(WalThread::Watermark, payload.as_ref());
        }
    }

    /// Writes watermarks until poisoned or until the last durable position is
    /// recorded.
    fn write_until_done(&mut self) {
        while let Some(point) = self.next_point() {
            debug_assert!(
                point.anchor.next_sequence <= self.core.state.lock().durable.next_sequence
            );
            let writing = Instant::now();
            self.last_write_at = writing;
            let result = self.ack.write(point);
            let counters = &self.core.counters;
            counters
                .watermark_sync_nanos
                .fetch_add(nanos_since(writing), Ordering::Relaxed);
            counters.watermarks.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    let mut state = self.core.state.lock();
                    debug_assert!(point.anchor.next_sequence >= state.watermarked.next_sequence);
                    state.watermarked = point.anchor;
                }
                Err(error) => self.core.poison(&error),
            }
        }
    }

    /// Waits for a durable position to record and for the watermark interval
    /// since the previous write to pass (not when closing: the last position is
    /// then written at once); `None` once poisoned, or once nothing more can
    /// become durable and everything was recorded.
    fn next_point(&self) -> Option<AckPoint> {
        let core = &*self.core;
        let mut state = core.state.lock();
        loop {
            if state.poisoned.is_some() {
                return None;
            }
            if state.ack_pending.is_some() {
                let hurry = state.closing || state.flusher_exited;
                match self.last_write_at.checked_add(core.watermark_interval) {
                    Some(due) if !hurry && Instant::now() < due => {
                        let _ = core.ack_work.wait_until(&mut state, due);
                    }
                    None if !hurry => core.ack_work.wait(&mut state),
                    _ => return state.ack_pending.take(),
                }
                continue;
            }
            if state.flusher_exited {
                return None;
            }
            self.core.ack_work.wait(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_sync_lands_in_the_bucket_of_its_latency() {
        let counters = Counters::default();
        // At a bound, above it by a microsecond, and beyond the last bound.
        for nanos in [
            0,
            100_000,
            101_000,
            999_999,
            1_000_000,
            1_001_000,
            100_000_000,
        ] {
            counters.data_sync(nanos);
        }
        counters.data_sync(u64::MAX);
        let buckets: Vec<u64> = counters
            .data_sync_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        // <= 100 us: 0 and 100,000 ns; <= 250 us: 101 us; <= 1 ms: 999.999 us and
        // 1 ms; <= 2.5 ms: 1.001 ms; <= 100 ms: 100 ms; above: u64::MAX.
        assert_eq!(buckets, [2, 1, 0, 2, 1, 0, 0, 0, 0, 1, 1]);
        assert_eq!(counters.data_syncs.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn a_panic_message_is_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_PANIC_MESSAGE_BYTES);
        let payload: Box<dyn Any + Send> = Box::new(long.clone());
        let message = panic_message(payload.as_ref());
        assert_eq!(message.len(), MAX_PANIC_MESSAGE_BYTES);
        assert!(long.starts_with(&message));
        let odd = format!("x{long}");
        let payload: Box<dyn Any + Send> = Box::new(odd.clone());
        let message = panic_message(payload.as_ref());
        assert_eq!(
            message.len(),
            MAX_PANIC_MESSAGE_BYTES - 1,
            "one byte short of a split 'é'"
        );
        assert!(odd.starts_with(&message));
        let payload: Box<dyn Any + Send> = Box::new("short");
        assert_eq!(panic_message(payload.as_ref()), "short");
        let payload: Box<dyn Any + Send> = Box::new(7u32);
        assert_eq!(panic_message(payload.as_ref()), "a panic without a message");
    }
}
