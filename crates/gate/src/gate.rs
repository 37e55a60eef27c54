//! The running gate: [`Gate`], [`GateConfig`], [`Admission`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use calybris_budget::{
    BudgetEngine, BudgetError, BudgetTree, HoldPlan, NodeId, NodeScope, NodeSpec, Reservation,
    TenantLimits, TreeError, TreeReservation, WindowBooks,
};
use calybris_digest::{Digest, SealedPolicy, decision_digest, input_digest, tenant_number};
use calybris_finance::{ConservationProof, prove_snapshot};
use calybris_kernel::{KernelDecision, KernelInput};
use calybris_wal::storage::{Directory, FsDirectory};
use calybris_wal::{CorruptReason, EntryHash, Frame, FrameReader, RetiredSegments, decode_record};
use calybris_wal::{
    DEFAULT_WINDOW, DecisionMeta, DecisionRecord, DurableConfig, DurableWal, PolicyRecord,
    Recovery, Ticket, WalAnchor, WalError, WalKey,
};
use parking_lot::{Mutex, RwLock};

use crate::books::{Books, TenantBooks};
use crate::error::GateError;
use crate::holdout::HoldoutConfig;
use crate::names::NameMap;
use crate::record::{
    BookSnapshot, BudgetOutcome, ExecutionRecord, GATE_FORMAT_VERSION, GateDecision, GateRecord,
    LeaseRefusal, LimitsChanged, LogHeader, MAX_OUTCOME_DETAIL_BYTES, MAX_TENANT_NAME_BYTES,
    OpenHold, OutcomeRecord, PolicyNames, PromotionRecord, SettlementKind, SettlementRecord,
    SnapshotTenant, TenantCreated, TopUp,
};
use crate::shadow::{ShadowNote, StageRole};
use crate::transparency::{CheckpointConfig, SignerHandle, TreeState};
use crate::windows::{
    AlertFiredRecord, BudgetDefined, BudgetScope, BudgetWindow, NodeWindowBooks, ScopeHold,
    SnapshotBudgetNode, SnapshotHeldNode, SnapshotNodeHolds, WindowResetRecord,
};
use calybris_tlog::{RightEdge, leaf_hash};

/// The log's directory inside a gate directory.
pub const LOG_DIR: &str = "log";

/// Default number of records between two book snapshots.
pub const DEFAULT_SNAPSHOT_EVERY_RECORDS: u64 = 65_536;

/// The most hold plans a gate caches (beyond, routes are planned each time).
const MAX_CACHED_PLANS: usize = 65_536;

/// A route's cache key: the key node and its scopes, sorted, padded with `u32::MAX`.
type PlanKey = (u32, [u32; calybris_budget::MAX_PLAN_SCOPES]);

/// The cache key of `key` with `scopes` (`None` for more scopes than a plan holds).
fn plan_key(key: NodeId, scopes: &[NodeId]) -> Option<PlanKey> {
    let mut sorted = [u32::MAX; calybris_budget::MAX_PLAN_SCOPES];
    for (slot, scope) in sorted.iter_mut().zip(scopes) {
        *slot = scope.0;
    }
    if scopes.len() > sorted.len() {
        return None;
    }
    sorted.sort_unstable();
    Some((key.0, sorted))
}

/// Shards of the open-hold registry (a power of two).
const OPEN_SHARDS: usize = 64;

/// What reopening does with holds that were open when the gate stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReopenHolds {
    /// Release each one with a logged [`SettlementKind::ReleasedAtReopen`] record
    /// (the default: their admissions died with the process).
    #[default]
    Release,
    /// Keep them open, so the service can settle them by [`ReservationId`] after
    /// the restart ([`Gate::settle_by_id`], [`Gate::release_by_id`]).
    Keep,
    /// Spend each one in full with a logged [`SettlementKind::CommittedAtReopen`]
    /// record: the conservative choice for a service that may have called a paid
    /// provider for an admission before it stopped (the hold is the most that call
    /// could cost), so the books never count less than was spent. The gateway's
    /// default.
    CommitHeld,
}

/// How much of the log a gate keeps on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Retention {
    /// Every segment, from the first record on (the default): the whole history
    /// verifies from genesis.
    #[default]
    KeepAll,
    /// After each book snapshot is durable, delete the segments whose records all lie
    /// before it. The log then starts at a segment boundary before the snapshot, the
    /// snapshot holds the books and the open holds, and the policy record in force
    /// follows it, so the retained suffix is self-contained. The gate writes where the
    /// log now starts into [`START_ANCHOR_FILE`]; verifying the suffix needs that
    /// anchor, kept where the log's writer cannot rewrite it. Not with checkpoints,
    /// which need the log from record 0 ([`GateError::RetentionConflict`] at open); a
    /// gate with budget nodes writes no book snapshot, so it retires nothing. With
    /// the adaptive engine, each book snapshot is followed (in the same barrier) by
    /// the engine's whole state ([`GateRecord::EngineState`], its
    /// [`GateRecord::EnginePending`] records and an [`GateRecord::EngineSnapshot`]),
    /// and segments are retired only once that is durable: the retained log replays
    /// the engine from there.
    SinceLastSnapshot,
}

/// The file, in the gate directory, holding where a retained log starts: the
/// `SEQ:HEX` text of a [`WalAnchor`] (sequence, then the previous entry hash in
/// hex), written after each retirement.
pub const START_ANCHOR_FILE: &str = "log-start.anchor";

/// Settings of [`Gate::open`].
#[derive(Debug, Clone)]
pub struct GateConfig {
    dir: PathBuf,
    policy: SealedPolicy,
    names: Option<NameMap>,
    key: Option<WalKey>,
    tenants: Vec<(String, u64)>,
    window: Duration,
    sync_concurrency: usize,
    watermark_interval: Duration,
    snapshot_every_records: u64,
    reopen_holds: ReopenHolds,
    retention: Retention,
    segment_limit_bytes: u64,
    clock: fn() -> u64,
    checkpoints: Option<CheckpointConfig>,
    holdout: Option<HoldoutConfig>,
    #[cfg(feature = "adaptive")]
    adaptive: Option<crate::adaptive::AdaptiveSetup>,
}

impl GateConfig {
    /// A gate in `dir` deciding under `policy`: unkeyed, no tenants yet, book
    /// snapshots every [`DEFAULT_SNAPSHOT_EVERY_RECORDS`] records, open holds released
    /// at reopen, the system clock for decisions that carry no timestamp.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>, policy: SealedPolicy) -> Self {
        Self {
            dir: dir.into(),
            policy,
            names: None,
            key: None,
            tenants: Vec::new(),
            window: DEFAULT_WINDOW,
            sync_concurrency: calybris_wal::DEFAULT_SYNC_CONCURRENCY,
            watermark_interval: calybris_wal::DEFAULT_WATERMARK_INTERVAL,
            snapshot_every_records: DEFAULT_SNAPSHOT_EVERY_RECORDS,
            reopen_holds: ReopenHolds::Release,
            retention: Retention::KeepAll,
            segment_limit_bytes: calybris_wal::DEFAULT_SEGMENT_LIMIT_BYTES,
            clock: system_clock_unix_ms,
            checkpoints: None,
            holdout: None,
            #[cfg(feature = "adaptive")]
            adaptive: None,
        }
    }

    /// Holds out a share of requests, assigned by a keyed hash of each request's input
    /// digest, and decides them under the holdout's baseline policy
    /// ([`crate::holdout`]). Every decision then records its assignment; a share of 0
    /// turns the holdout off.
    #[must_use]
    pub fn holdout(mut self, holdout: HoldoutConfig) -> Self {
        self.holdout = Some(holdout).filter(HoldoutConfig::is_on);
        self
    }

    /// Runs the adaptive engine configured by `setup` (feature `adaptive`): logged in
    /// a [`GateRecord::AdaptiveSetup`] record at open (unless the log holds it: then
    /// the engine is replayed from the log, every step checked), then consulted by
    /// [`Gate::decide_adaptive`] and taught by [`Gate::record_outcome`].
    /// [`Gate::open`] refuses a setup the engine refuses ([`GateError::AdaptiveSetup`]),
    /// one that is not the log's ([`GateError::AdaptiveSetupChanged`]) and a log whose
    /// adaptive steps do not replay ([`GateError::AdaptiveReplay`]). A retained log
    /// replays the engine from its first complete engine state record (see
    /// [`Retention::SinceLastSnapshot`]).
    #[cfg(feature = "adaptive")]
    #[must_use]
    pub fn adaptive(mut self, setup: crate::adaptive::AdaptiveSetup) -> Self {
        self.adaptive = Some(setup);
        self
    }

    /// The names of the policy's ids and bits (built by `calybris-policy` from a
    /// policy file): logged in a [`GateRecord::PolicyNames`] record right after the
    /// policy record, so reports on the log speak in names. [`Gate::open`] refuses
    /// names that do not fit the policy ([`GateError::InvalidNames`]).
    #[must_use]
    pub fn policy_names(mut self, names: NameMap) -> Self {
        self.names = Some(names);
        self
    }

    /// How much of the log to keep (default [`Retention::KeepAll`]).
    #[must_use]
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The size at which the log moves to a new segment file (default
    /// [`calybris_wal::DEFAULT_SEGMENT_LIMIT_BYTES`]); retention deletes whole segments.
    #[must_use]
    pub fn segment_limit_bytes(mut self, bytes: u64) -> Self {
        self.segment_limit_bytes = bytes.max(1);
        self
    }

    /// Chains the log with HMAC-SHA-256 under `key` (give the same key to reopen
    /// and to verify it).
    #[must_use]
    pub fn key(mut self, key: WalKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Creates `tenant` with an opening budget of `budget_microunits` when the gate
    /// opens, unless the log already holds it (its books are then kept as logged; use
    /// [`Gate::top_up`] to add to them).
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>, budget_microunits: u64) -> Self {
        self.tenants.push((tenant.into(), budget_microunits));
        self
    }

    /// The group-commit window (default [`calybris_wal::DEFAULT_WINDOW`]).
    #[must_use]
    pub fn group_commit_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many data fdatasyncs of the log may be in flight at once (default
    /// [`calybris_wal::DEFAULT_SYNC_CONCURRENCY`]; 0 syncs inline, one at a time;
    /// see [`calybris_wal::DurableConfig::sync_concurrency`]).
    #[must_use]
    pub fn sync_concurrency(mut self, syncs: usize) -> Self {
        self.sync_concurrency = syncs;
        self
    }

    /// The least time between two writes of the log's acknowledgement watermark
    /// (default [`calybris_wal::DEFAULT_WATERMARK_INTERVAL`], 10 ms; zero: one after
    /// every data fdatasync). No acknowledgement waits for the watermark; a longer
    /// interval saves `ACK` writes and fdatasyncs under load and lets the watermark
    /// trail the acknowledged records by up to the interval plus one watermark write
    /// (recovery keeps the verified records after it; see
    /// [`calybris_wal::DurableConfig::watermark_interval`]). Closing the gate writes
    /// the last one.
    #[must_use]
    pub fn watermark_interval(mut self, interval: Duration) -> Self {
        self.watermark_interval = interval;
        self
    }

    /// Records between two book snapshots (at least 1; `u64::MAX` turns them off).
    #[must_use]
    pub fn snapshot_every_records(mut self, records: u64) -> Self {
        self.snapshot_every_records = records.max(1);
        self
    }

    /// What reopening does with holds left open (default [`ReopenHolds::Release`]).
    #[must_use]
    pub fn reopen_holds(mut self, reopen_holds: ReopenHolds) -> Self {
        self.reopen_holds = reopen_holds;
        self
    }

    /// The clock used for [`Gate::decide`]'s timestamp, in milliseconds since the
    /// Unix epoch (the kernel reads no clock; give a fixed one for byte-identical
    /// logs, or pass your own timestamps to [`Gate::decide_with`]).
    #[must_use]
    pub fn clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// Signed checkpoint records in the log (record code 17, off by default):
    /// the gate keeps the Merkle tree's right edge over every record and logs
    /// a signed tree head on the schedule of `checkpoints`, and on
    /// [`Gate::checkpoint`]. See [`crate::transparency`].
    #[must_use]
    pub fn checkpoints(mut self, checkpoints: CheckpointConfig) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }
}

impl GateConfig {
    /// Refuses retention with a feature that needs the whole log from record 0.
    fn check_retention(&self) -> Result<(), GateError> {
        if self.retention != Retention::SinceLastSnapshot {
            return Ok(());
        }
        if self.checkpoints.is_some() {
            return Err(GateError::RetentionConflict {
                with: "checkpoints",
            });
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, or 0 for a clock set before it.
fn system_clock_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// What the caller attaches to one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CallerMeta {
    /// The caller's own request id, logged and given back.
    pub request_id: [u8; 16],
    /// The caller's timestamp, in milliseconds since the Unix epoch.
    pub recorded_at_unix_ms: u64,
}

/// The id of an admitted decision's reservation: the decision record's sequence
/// number in the log. Stable across restarts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ReservationId(pub u64);

impl std::fmt::Display for ReservationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a settlement did to the tenant's books, in microunits.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Settled {
    /// The settlement record's sequence number (`None` when nothing was logged: a
    /// decision that was not admitted, settled at zero).
    pub log_sequence: Option<u64>,
    /// The settlement record's durability ticket (`None` when nothing was logged).
    /// A ticket belongs to this process: it is not serialized, and a deserialized
    /// `Settled` has none.
    #[serde(skip)]
    pub ticket: Option<Ticket>,
    /// Added to the tenant's lifetime spend.
    pub committed_microunits: u64,
    /// Returned to the tenant's spendable budget.
    pub refunded_microunits: u64,
    /// Taken from the spendable budget beyond the hold (the overrun path).
    pub overrun_microunits: u64,
}

/// What [`Gate::open`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GateRecovery {
    /// The log's outcome: clean, or a torn tail that was cut.
    pub log: Recovery,
    /// Records in the log when it was opened.
    pub records: u64,
    /// Records replayed into the books (those after the last book snapshot count,
    /// the rest are checked against it).
    pub records_replayed: u64,
    /// Holds found open.
    pub open_holds: u64,
    /// Of those, released by a logged record ([`ReopenHolds::Release`]).
    pub released_holds: u64,
    /// Of those, spent in full by a logged record ([`ReopenHolds::CommitHeld`]).
    pub committed_holds: u64,
}

/// The snapshot barrier as a settlement holds it: shared, or exclusive for an
/// overrun on budget nodes.
enum Barrier<'a> {
    /// Held for its unlock on drop.
    Shared {
        _guard: parking_lot::RwLockReadGuard<'a, Arc<SealedPolicy>>,
    },
    /// Held for its unlock on drop.
    Exclusive {
        _guard: parking_lot::RwLockWriteGuard<'a, Arc<SealedPolicy>>,
    },
}

/// An open hold in memory: the budget engine's linear reservation, if anything is held.
#[derive(Debug)]
struct OpenEntry {
    tenant: String,
    held_microunits: u64,
    hold: Option<Reservation>,
    /// The hold on the budget nodes of a decision made with a [`BudgetRoute`].
    tree_hold: Option<TreeReservation>,
}

/// Which budget nodes a decision draws on besides its tenant (see
/// [`Gate::decide_budgeted`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BudgetRoute {
    /// The key: a chain budget node; its ancestors (team, organisation) are held too.
    pub key: String,
    /// Further scope nodes by name (provider, tag). The model scope of the selected
    /// model is added by the gate.
    pub scopes: Vec<String>,
}

/// The one log, whatever directory it lives in (real files or, in tests, an
/// in-memory directory that injects faults).
trait Log: Send + Sync + std::fmt::Debug {
    fn append(&self, record: &GateRecord) -> Result<Ticket, WalError>;
    fn append_hashed(&self, record: &GateRecord) -> Result<(Ticket, EntryHash), WalError>;
    fn appended_anchor(&self) -> WalAnchor;
    fn durable_anchor(&self) -> WalAnchor;
    fn close(self: Box<Self>) -> Result<WalAnchor, WalError>;
    fn plan_retirement(&self, sequence: u64) -> Result<RetiredSegments, WalError>;
    fn retire_segments_before(&self, sequence: u64) -> Result<RetiredSegments, WalError>;
    fn stats(&self) -> calybris_wal::DurableStats;
}

impl<D: Directory> Log for DurableWal<GateRecord, D> {
    fn append(&self, record: &GateRecord) -> Result<Ticket, WalError> {
        DurableWal::append(self, record)
    }
    fn append_hashed(&self, record: &GateRecord) -> Result<(Ticket, EntryHash), WalError> {
        DurableWal::append_hashed(self, record)
    }
    fn appended_anchor(&self) -> WalAnchor {
        DurableWal::appended_anchor(self)
    }
    fn durable_anchor(&self) -> WalAnchor {
        DurableWal::durable_anchor(self)
    }
    fn close(self: Box<Self>) -> Result<WalAnchor, WalError> {
        DurableWal::close(*self)
    }
    fn plan_retirement(&self, sequence: u64) -> Result<RetiredSegments, WalError> {
        DurableWal::plan_retirement(self, sequence)
    }
    fn retire_segments_before(&self, sequence: u64) -> Result<RetiredSegments, WalError> {
        DurableWal::retire_segments_before(self, sequence)
    }
    fn stats(&self) -> calybris_wal::DurableStats {
        DurableWal::stats(self)
    }
}

#[derive(Debug)]
struct Inner {
    wal: Box<dyn Log>,
    engine: BudgetEngine,
    /// The current policy; its lock is also the snapshot barrier: every operation
    /// holds it shared from its first in-memory effect to its last, and a book
    /// snapshot holds it exclusively, so the books it copies are exactly the fold of
    /// the records before it.
    policy: RwLock<Arc<SealedPolicy>>,
    /// The names of the current policy, if it has any; changed only while the
    /// policy's lock is held exclusively.
    names: Mutex<Option<Arc<NameMap>>>,
    open: Box<[Mutex<OpenShard>]>,
    /// The budget nodes (hierarchy, scopes, windows, alerts), rebuilt from the log.
    tree: BudgetTree,
    /// Model-scope nodes by model name (checked for a window change before every
    /// routed decision, since the model is known only after the kernel chose it).
    model_scopes: RwLock<HashMap<String, NodeId>>,
    /// Provider-scope nodes by provider name (likewise).
    provider_scopes: RwLock<HashMap<String, NodeId>>,
    /// Hold plans already resolved, by key and sorted scopes (nodes are never
    /// removed or changed, so a plan never goes stale); at most
    /// [`MAX_CACHED_PLANS`].
    plans: RwLock<HashMap<PlanKey, HoldPlan>>,
    /// Serialises tenant creation, top-ups and limit changes (rare, and checked
    /// before they are logged).
    admin: Mutex<()>,
    poisoned: AtomicBool,
    next_snapshot_at: AtomicU64,
    snapshot_every_records: u64,
    snapshots_taken: AtomicU64,
    retention: Retention,
    /// Where to write the start anchor after a retirement (`None` for a log in a
    /// directory that is not a file-system path).
    start_anchor_file: Option<PathBuf>,
    start_anchor: Mutex<Option<WalAnchor>>,
    clock: fn() -> u64,
    dir: PathBuf,
    key: Option<WalKey>,
    recovery: GateRecovery,
    /// The Merkle tree over the log, when checkpoints are configured; every
    /// append goes through its lock, so its edge follows the log exactly.
    merkle: Option<Mutex<TreeState>>,
    /// The background signer of scheduled checkpoints (started at the end of
    /// opening when a schedule is set; stopped by [`Gate::close`]).
    signer: SignerHandle,
    /// The holdout, when on (fixed for the gate's life).
    holdout: Option<HoldoutConfig>,
    /// The staged shadow candidate; changed only while the policy's lock is held
    /// exclusively, so every decision record after its staging record carries its note
    /// and none after its unstaging record does.
    shadow: RwLock<Option<Arc<SealedPolicy>>>,
    /// The adaptive engine, if configured. Locked before the policy barrier by the
    /// operations that step it, so the log's order is the engine's.
    #[cfg(feature = "adaptive")]
    adaptive: Option<Mutex<crate::adaptive_engine::AdaptiveState>>,
}

/// The decision gate: one chained log per directory holds every decision, its
/// reservation, its settlement, its outcome and every change to the budget books.
/// See the [crate documentation](crate) for the order of operations.
///
/// A `Gate` is a cheap handle (`Clone`, `Send`, `Sync`); every method takes `&self`.
#[derive(Debug, Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Gate>();
    assert_send_sync::<Admission>();
};

/// Hashes the open-hold registry's keys (log sequence numbers, unique and dense): one
/// multiplication, high bits folded down. The keys are assigned by the log, not chosen
/// by callers, so no keyed hash is needed against collisions.
#[derive(Debug, Default, Clone, Copy)]
struct SequenceHasher(u64);

impl std::hash::Hasher for SequenceHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

/// One shard of the open-hold registry.
type OpenShard = HashMap<u64, OpenEntry, std::hash::BuildHasherDefault<SequenceHasher>>;

thread_local! {
    /// The last tenant this thread decided for and its number: services mostly decide
    /// for the same tenant many times in a row, and the number costs a SHA-256.
    static LAST_TENANT_NUMBER: std::cell::RefCell<(String, u64)> =
        const { std::cell::RefCell::new((String::new(), 0)) };
}

/// [`tenant_number`] of `tenant`, remembered for the thread's last tenant.
fn cached_tenant_number(tenant: &str) -> u64 {
    LAST_TENANT_NUMBER.with(|cell| {
        let mut last = cell.borrow_mut();
        if last.0 != tenant || last.0.is_empty() {
            last.0.clear();
            last.0.push_str(tenant);
            last.1 = tenant_number(tenant);
        }
        debug_assert_eq!(last.1, tenant_number(tenant));
        last.1
    })
}

fn shard_of(sequence: u64) -> usize {
    (sequence as usize) & (OPEN_SHARDS - 1)
}

fn to_i64(amount_microunits: u64) -> Result<i64, GateError> {
    i64::try_from(amount_microunits).map_err(|_| GateError::AmountOutOfRange { amount_microunits })
}

impl Gate {
    /// Opens (or creates) the gate directory: verifies the log, rebuilds the books
    /// from it (from the last book snapshot on), settles or keeps the holds left open
    /// (see [`ReopenHolds`]), creates the configured tenants the log does not hold,
    /// and writes the policy record unless it is the log's latest.
    ///
    /// # Errors
    /// [`GateError::Directory`]; [`GateError::Log`] when the log is locked by another
    /// process, corrupt, keyed differently or fails; [`GateError::Books`] when its
    /// records do not fold into balanced books; [`GateError::Budget`] or
    /// [`GateError::InvalidTenant`] for a configured tenant;
    /// [`GateError::RetentionConflict`] for [`Retention::SinceLastSnapshot`] with
    /// checkpoints (nothing is written).
    pub fn open(config: GateConfig) -> Result<Self, GateError> {
        Self::open_wrapping(config, |dir| dir)
    }

    /// Like [`open`](Self::open) (the log in the gate directory's `log/`, the start
    /// anchor file beside it), with the log's file-system [`Directory`] wrapped by
    /// `wrap` first: a wrapper can add work to the log's storage, for instance make
    /// another file durable in each of the log's data syncs before the log's own
    /// (the gateway's request-body archive does). The wrapper must keep the
    /// segments' bytes and names as they are: the log is read back without it.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_wrapping<D: Directory + Clone>(
        config: GateConfig,
        wrap: impl FnOnce(FsDirectory) -> D,
    ) -> Result<Self, GateError> {
        config.check_retention()?;
        std::fs::create_dir_all(&config.dir).map_err(|source| GateError::Directory {
            path: config.dir.clone(),
            source,
        })?;
        let log_dir = config.dir.join(LOG_DIR);
        let dir = FsDirectory::new(&log_dir).map_err(|source| GateError::Directory {
            path: log_dir.clone(),
            source,
        })?;
        let anchor_file = config.dir.join(START_ANCHOR_FILE);
        let mut gate = Self::open_in(config, wrap(dir))?;
        if let Some(inner) = Arc::get_mut(&mut gate.inner) {
            inner.start_anchor_file = Some(anchor_file);
        }
        Ok(gate)
    }

    /// Like [`open`](Self::open), with the log in any segment [`Directory`] (an
    /// in-memory one that injects faults, for tests); the configured directory is
    /// then only the gate's name.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_in<D: Directory + Clone>(config: GateConfig, dir: D) -> Result<Self, GateError> {
        config.check_retention()?;
        if let Some(names) = &config.names {
            names.validate_for(&config.policy)?;
        }
        #[cfg(feature = "adaptive")]
        let adaptive = config
            .adaptive
            .clone()
            .map(crate::adaptive_engine::AdaptiveState::new)
            .transpose()?;
        let start_anchor = start_of(&dir, config.key.as_ref())?;
        let wal_config = DurableConfig {
            key: config.key.clone(),
            window: config.window,
            sync_concurrency: config.sync_concurrency,
            watermark_interval: config.watermark_interval,
            segment_limit_bytes: config.segment_limit_bytes,
            start_anchor,
            ..DurableConfig::default()
        };
        // Opening takes the directory's writer lock first (a second process is
        // refused before anything is read), then verifies the log once, folding each
        // verified record into the books as it goes; a torn tail is cut, not folded.
        let mut fold = Fold::default();
        let mut edge = config.checkpoints.as_ref().map(|_| RightEdge::new());
        #[cfg(feature = "adaptive")]
        if adaptive.is_some() {
            fold.adaptive = Some(crate::adaptive_engine::AdaptiveReplay::default());
        }
        let wal = DurableWal::<GateRecord, D>::open_in_visiting(dir, wal_config, |frame| {
            if let Some(edge) = &mut edge {
                if frame.sequence != edge.size() {
                    return Err(GateError::CheckpointsNeedWholeLog {
                        first_sequence: frame.sequence,
                    });
                }
                edge.append(leaf_hash(&frame.hash))
                    .map_err(|e| GateError::CheckpointFailed {
                        detail: e.to_string(),
                    })?;
            }
            fold.visit(frame)
        })?;
        if let Some(first_sequence) = fold.first_sequence
            && !fold.started
        {
            return Err(GateError::Books {
                sequence: first_sequence,
                error: crate::books::BooksError::SnapshotMismatch {
                    what: "the retained log holds no book snapshot to start from".to_owned(),
                },
            });
        }
        fold.fold_unfolded()?;
        let log_recovery = wal.recovery().clone();
        #[cfg(feature = "adaptive")]
        if let Some(replay) = fold.adaptive.as_mut() {
            // A state record the log ends inside (its snapshot cut with the torn
            // tail) is not used: the replayed state goes on.
            replay.finish();
            if let Some(first) = fold.first_sequence
                && first > 0
                && replay.unchecked > 0
                && !replay.has_state()
            {
                // Adaptive decisions, but no state record or setup to replay from.
                return Err(GateError::AdaptiveReopen { records: first });
            }
        }
        let Fold {
            mut books,
            last_policy,
            last_names,
            folded: replayed,
            staged_shadow,
            #[cfg(feature = "adaptive")]
                adaptive: fold_adaptive,
            ..
        } = fold;
        let config_digest = *config.policy.digest();
        // The names in force: the configured ones, or else the log's latest names of
        // the configured policy.
        let names_in_force = config.names.clone().or_else(|| {
            last_names
                .as_ref()
                .filter(|names| names.policy_digest == config_digest)
                .map(|names| names.names.clone())
        });
        let last_policy_digest = last_policy.as_ref().map(|policy| *policy.digest());
        let records = wal.appended_anchor().next_sequence;
        let wal: Box<dyn Log> = Box::new(wal);

        let engine = BudgetEngine::new();
        restore_balances(&engine, &books)?;
        let inner = Inner {
            wal,
            engine,
            policy: RwLock::new(Arc::new(config.policy.clone())),
            names: Mutex::new(names_in_force.map(Arc::new)),
            open: (0..OPEN_SHARDS)
                .map(|_| Mutex::new(OpenShard::default()))
                .collect(),
            tree: BudgetTree::new(),
            model_scopes: RwLock::new(HashMap::new()),
            provider_scopes: RwLock::new(HashMap::new()),
            plans: RwLock::new(HashMap::new()),
            admin: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            next_snapshot_at: AtomicU64::new(records.saturating_add(config.snapshot_every_records)),
            snapshot_every_records: config.snapshot_every_records,
            snapshots_taken: AtomicU64::new(0),
            retention: config.retention,
            start_anchor_file: None,
            start_anchor: Mutex::new(start_anchor),
            clock: config.clock,
            dir: config.dir.clone(),
            key: config.key.clone(),
            holdout: config.holdout.clone(),
            shadow: RwLock::new(None),
            recovery: GateRecovery {
                log: log_recovery,
                records,
                records_replayed: replayed,
                open_holds: books.open_holds().len() as u64,
                released_holds: 0,
                committed_holds: 0,
            },
            merkle: match (config.checkpoints.clone(), edge) {
                (Some(checkpoints), Some(edge)) => {
                    // A log whose first segments were retired visits no frame
                    // from 0 but still has records: refused, it has no tree.
                    if edge.size() != records {
                        return Err(GateError::CheckpointsNeedWholeLog {
                            first_sequence: records - edge.size(),
                        });
                    }
                    Some(Mutex::new(TreeState::new(
                        checkpoints,
                        edge,
                        (config.clock)(),
                    )))
                }
                _ => None,
            },
            signer: SignerHandle::default(),
            #[cfg(feature = "adaptive")]
            adaptive: None,
        };
        let mut gate = Self {
            inner: Arc::new(inner),
        };
        if records == 0 {
            // Not awaited: every later record's durability covers it.
            let _header = gate.append(&GateRecord::Header(LogHeader {
                format_version: GATE_FORMAT_VERSION,
            }))?;
        }
        // A log cut right after a book snapshot lacks the policy record that follows
        // every snapshot: the policy in force then was the log's latest.
        if let Some(due) = books.policy_due() {
            match last_policy.as_ref() {
                Some(policy) if *policy.digest() == due => {
                    let record = policy_record(policy);
                    let ticket = gate.append(&record)?;
                    books
                        .apply(ticket.sequence(), &record)
                        .map_err(|error| GateError::Books {
                            sequence: ticket.sequence(),
                            error,
                        })?;
                    if let Some(names) = last_names.as_ref().filter(|n| n.policy_digest == due) {
                        let _names = gate.append(&GateRecord::PolicyNames(names.clone()))?;
                    }
                }
                _ => {
                    return Err(GateError::Books {
                        sequence: records,
                        error: crate::books::BooksError::SnapshotMismatch {
                            what: "the log ends after a snapshot whose policy it does not hold"
                                .to_owned(),
                        },
                    });
                }
            }
        }
        // Settled (released or spent, by `config.reopen_holds`) at this open.
        let released = gate.adopt_open_holds(&mut books, config.reopen_holds)?;
        gate.rebuild_tree(&books)?;
        if config.reopen_holds == ReopenHolds::Keep {
            gate.adopt_tree_holds(&books)?;
        }
        restore_limits(&gate.inner.engine, &books)?;
        if let Some(inner) = Arc::get_mut(&mut gate.inner) {
            if config.reopen_holds == ReopenHolds::CommitHeld {
                inner.recovery.committed_holds = released;
            } else {
                inner.recovery.released_holds = released;
            }
        }
        for (tenant, budget) in &config.tenants {
            if books.tenant(tenant).is_none() {
                gate.ensure_tenant(tenant, *budget)?;
            }
        }
        let policy_written = last_policy_digest != Some(config_digest);
        if policy_written {
            let _policy = gate.append(&policy_record(&config.policy))?;
        }
        if let Some(names) = &config.names {
            let logged = last_names
                .as_ref()
                .is_some_and(|last| last.policy_digest == config_digest && last.names == *names);
            if policy_written || !logged {
                let _names = gate.append(&names_record(config_digest, names))?;
            }
        }
        crate::shadow::resume(&gate, staged_shadow)?;
        #[cfg(feature = "adaptive")]
        if let Some(state) = adaptive {
            // The engine's state is a function of the log from its setup on: at reopen,
            // the fold replayed it (and checked every step, as the verifier does).
            let replayed =
                fold_adaptive.and_then(crate::adaptive_engine::AdaptiveReplay::into_state);
            let state = match replayed {
                Some(replayed) if replayed.setup() == state.setup() => replayed,
                Some(_) => return Err(GateError::AdaptiveSetupChanged),
                None => {
                    let _setup = gate.append(&GateRecord::AdaptiveSetup(state.setup().clone()))?;
                    state
                }
            };
            if let Some(inner) = Arc::get_mut(&mut gate.inner) {
                inner.adaptive = Some(Mutex::new(state));
            }
        }
        // Last: the signer holds a weak reference, which `Arc::get_mut` above
        // would not allow.
        gate.start_signer();
        Ok(gate)
    }

    /// Starts the background signer of scheduled checkpoints, if any.
    fn start_signer(&self) {
        let Some(tree) = &self.inner.merkle else {
            return;
        };
        let config = tree.lock().config().clone();
        if !TreeState::scheduled(&config) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        self.inner.signer.start(config, move |size, signed| {
            // The gate may be gone: nothing to log then.
            let Some(inner) = weak.upgrade() else {
                return false;
            };
            Self { inner }.land_checkpoint(size, signed);
            true
        });
    }

    /// Appends the checkpoint record of the in-flight tree head of `size`
    /// signed by the background signer, unless it was given up meanwhile.
    fn land_checkpoint(&self, size: u64, signed: crate::transparency::Signed) {
        if self.check_open().is_err() {
            return;
        }
        let Some(tree) = &self.inner.merkle else {
            return;
        };
        // A book snapshot and its policy record are appended under the policy's
        // write lock and must stay adjacent: the checkpoint lands after them.
        let _policy = self.inner.policy.read();
        let mut tree = tree.lock();
        if let Some(Ok(record)) = tree.finish(size, signed) {
            // A log failure poisons the gate, as for any append; a failed
            // signature left the checkpoint due.
            let _ticket = self.append_to_tree(&mut tree, &record);
        }
    }

    /// Puts the holds the log left open back into the engine and the registry, then
    /// releases them (logged) unless they are to be kept.
    /// Takes the holds a reopened log left open into memory and, unless they are
    /// kept, settles each one (released or spent in full, by `reopen`) with a logged
    /// settlement that is folded into `books` too. Returns how many were settled.
    fn adopt_open_holds(&self, books: &mut Books, reopen: ReopenHolds) -> Result<u64, GateError> {
        let mut released = 0;
        let open: Vec<(u64, crate::books::Hold)> = books
            .open_holds()
            .iter()
            .map(|(sequence, hold)| (*sequence, *hold))
            .collect();
        for (sequence, hold) in &open {
            let tenant = books
                .tenant_name(hold.tenant_index)
                .unwrap_or_default()
                .to_owned();
            let held_microunits = hold.held_microunits.unsigned_abs();
            let reservation = if hold.held_microunits > 0 {
                Some(
                    self.inner
                        .engine
                        .try_reserve(&tenant, hold.held_microunits)?,
                )
            } else {
                None
            };
            self.inner.open[shard_of(*sequence)].lock().insert(
                *sequence,
                OpenEntry {
                    tenant,
                    held_microunits,
                    hold: reservation,
                    tree_hold: None,
                },
            );
            let how = match reopen {
                ReopenHolds::Release => Some((
                    SettleHow::ReleasedAtReopen,
                    SettlementKind::ReleasedAtReopen,
                )),
                ReopenHolds::CommitHeld => Some((
                    SettleHow::CommittedAtReopen,
                    SettlementKind::CommittedAtReopen,
                )),
                ReopenHolds::Keep => None,
            };
            if let Some((how, kind)) = how {
                let tenant = books
                    .tenant_name(hold.tenant_index)
                    .unwrap_or_default()
                    .to_owned();
                let settled = self.settle_entry(*sequence, how)?;
                // Postcondition: spent in full or released in full, nothing else.
                debug_assert_eq!(
                    settled.committed_microunits,
                    if kind == SettlementKind::CommittedAtReopen {
                        held_microunits
                    } else {
                        0
                    },
                    "hold {sequence} settled at reopen"
                );
                // Fold the settlement too, so the budget nodes are rebuilt after it.
                if let Some(log_sequence) = settled.log_sequence {
                    let record = GateRecord::Settlement(SettlementRecord {
                        decision_sequence: *sequence,
                        tenant,
                        kind,
                    });
                    books
                        .apply(log_sequence, &record)
                        .map_err(|error| GateError::Books {
                            sequence: log_sequence,
                            error,
                        })?;
                }
                released += 1;
            }
        }
        Ok(released)
    }

    /// Defines the log's budget nodes in the tree, in their current windows, with
    /// the books of that window and of every closed window that still has open
    /// holds (kept ones, [`ReopenHolds::Keep`]), and logs the alerts a crash left
    /// due (reached in log order, record not written). A closed window the fold
    /// keeps only for such an alert is not restored: its alert is logged here.
    fn rebuild_tree(&self, books: &Books) -> Result<(), GateError> {
        let fold = books.windows();
        let pending = fold.pending_alerts();
        for (definition, current) in fold.nodes() {
            let definition = BudgetDefined {
                start_window: current,
                ..definition.clone()
            };
            let id = self.define_node(&definition)?;
            let Some(kept) = fold.books(&definition.node) else {
                continue;
            };
            let mut windows: Vec<WindowBooks> = kept
                .iter()
                .filter(|window| window.window == current || window.open_holds > 0)
                .map(|window| {
                    let mut fired = window.fired_mask;
                    for (node, at, bps) in &pending {
                        if *node == definition.node
                            && *at == window.window
                            && let Some(bit) = definition
                                .alert_thresholds_bps
                                .iter()
                                .position(|b| b == bps)
                        {
                            fired |= 1 << bit;
                        }
                    }
                    WindowBooks {
                        window: window.window,
                        granted_microcents: window.granted_microunits,
                        remaining_microcents: window.remaining_microunits,
                        reserved_microcents: window.reserved_microunits,
                        committed_microcents: window.committed_microunits,
                        expired_microcents: window.expired_microunits,
                        overrun_microcents: window.overrun_microunits,
                        open_holds: window.open_holds,
                        fired_mask: fired,
                    }
                })
                .collect();
            windows.sort_unstable_by_key(|window| window.window);
            self.inner.tree.restore_window(id, &windows)?;
        }
        for (node, window, threshold_bps) in pending {
            let books_of = fold
                .books(&node)
                .and_then(|all| all.into_iter().find(|b| b.window == window))
                .unwrap_or_default();
            let _alert = self.append(&GateRecord::AlertFired(AlertFiredRecord {
                node,
                window,
                threshold_bps,
                committed_microunits: books_of.committed_microunits.unsigned_abs(),
                granted_microunits: books_of.granted_microunits.unsigned_abs(),
            }))?;
        }
        Ok(())
    }

    /// Re-makes the budget-node holds of the holds kept open across the restart
    /// ([`ReopenHolds::Keep`]), each in the windows the log says it was taken in, on
    /// the tree [`rebuild_tree`](Self::rebuild_tree) restored (whose books already
    /// count them).
    fn adopt_tree_holds(&self, books: &Books) -> Result<(), GateError> {
        let tree = &self.inner.tree;
        for (sequence, nodes) in books.windows().open_holds() {
            let Some(amount) = nodes.first().map(|(_, _, amount)| *amount) else {
                continue;
            };
            let mut key = None;
            let mut scopes = Vec::new();
            let mut windows = Vec::with_capacity(nodes.len());
            for (name, window, _) in &nodes {
                let id = tree.node_id(name)?;
                windows.push((id, *window));
                if tree.spec(id)?.scope != NodeScope::Chain {
                    scopes.push(id);
                }
            }
            // The key is the chain node no other chain node of the hold has as parent.
            for (id, _) in &windows {
                if scopes.contains(id) {
                    continue;
                }
                let is_parent = windows
                    .iter()
                    .any(|(other, _)| tree.spec(*other).is_ok_and(|s| s.parent == Some(*id)));
                if !is_parent {
                    key = Some(*id);
                }
            }
            let key = key.ok_or_else(|| {
                GateError::Restore(format!("hold {sequence} holds no key budget node"))
            })?;
            let plan = tree.plan(key, &scopes)?;
            let held = if amount > 0 {
                Some(tree.adopt(&plan, &windows, amount)?)
            } else {
                None
            };
            if let Some(entry) = self.inner.open[shard_of(sequence)]
                .lock()
                .get_mut(&sequence)
            {
                entry.tree_hold = held;
            } else {
                return Err(GateError::Restore(format!(
                    "budget-node hold {sequence} has no open hold"
                )));
            }
        }
        Ok(())
    }

    fn check_open(&self) -> Result<(), GateError> {
        if self.inner.poisoned.load(Ordering::Acquire) {
            return Err(GateError::Poisoned);
        }
        Ok(())
    }

    /// Appends one record; any failure poisons the gate. With checkpoints
    /// configured, the record's leaf joins the tree under the tree's lock, and
    /// a checkpoint record follows when one is due.
    fn append(&self, record: &GateRecord) -> Result<Ticket, GateError> {
        self.append_checkpointing(record, true)
    }

    /// Appends one record that the next record must follow directly (a book
    /// snapshot, followed by its policy record): a checkpoint falling due on it is
    /// taken after that next record instead.
    fn append_leading(&self, record: &GateRecord) -> Result<Ticket, GateError> {
        self.append_checkpointing(record, false)
    }

    fn append_checkpointing(
        &self,
        record: &GateRecord,
        take_due: bool,
    ) -> Result<Ticket, GateError> {
        let Some(tree) = &self.inner.merkle else {
            return self
                .inner
                .wal
                .append(record)
                .map_err(|error| self.poison(error));
        };
        let mut tree = tree.lock();
        let ticket = self.append_to_tree(&mut tree, record)?;
        if !take_due || !tree.schedule_may_be_due() {
            return Ok(ticket);
        }
        // The clock is read only under a time schedule (a record count alone
        // does not need it).
        let now = if tree.uses_clock() {
            (self.inner.clock)()
        } else {
            0
        };
        if !tree.due(now) {
            return Ok(ticket);
        }
        // The tree head to sign covers every record appended.
        if let Err(error) = tree.fold() {
            self.inner.poisoned.store(true, Ordering::Release);
            return Err(error);
        }
        if !self.inner.signer.submit(&mut tree, now) {
            // No background signer (stopped, or none for an unscheduled
            // configuration): signed here. The record is appended whatever
            // happens next: its ticket tells whether it is durable. A log
            // failure here poisons the gate (and so every later call); a
            // signer failure leaves the checkpoint due, retried on the next
            // append.
            let _checkpoint = self.checkpoint_locked(&mut tree, now);
        }
        Ok(ticket)
    }

    fn append_to_tree(
        &self,
        tree: &mut TreeState,
        record: &GateRecord,
    ) -> Result<Ticket, GateError> {
        let (ticket, hash) = self
            .inner
            .wal
            .append_hashed(record)
            .map_err(|error| self.poison(error))?;
        // Every append holds the tree's lock: leaves join in log order.
        if let Err(error) = tree.appended(ticket.sequence(), &hash) {
            self.inner.poisoned.store(true, Ordering::Release);
            return Err(error);
        }
        Ok(ticket)
    }

    fn checkpoint_locked(&self, tree: &mut TreeState, now: u64) -> Result<Ticket, GateError> {
        // A head the background signer still signs is given up (its
        // signature is dropped when it arrives): checkpoint records keep
        // increasing tree sizes.
        let _given_up = tree.abandon();
        let size = tree.size();
        let record = tree.record()?;
        let ticket = self.append_to_tree(tree, &record)?;
        debug_assert_eq!(ticket.sequence(), size);
        tree.taken(size + 1, now);
        Ok(ticket)
    }

    /// Logs a signed checkpoint of every record so far now (record code 17),
    /// whatever the schedule; returns its ticket. Call it from a background
    /// thread to keep signing off the decisions' path.
    ///
    /// # Errors
    /// [`GateError::CheckpointFailed`] when checkpoints are not configured or
    /// the signer fails; [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn checkpoint(&self) -> Result<Ticket, GateError> {
        self.check_open()?;
        let Some(tree) = &self.inner.merkle else {
            return Err(GateError::CheckpointFailed {
                detail: "checkpoints are not configured (GateConfig::checkpoints)".to_owned(),
            });
        };
        // Never between a book snapshot and its policy record (both appended
        // under the policy's write lock).
        let _policy = self.inner.policy.read();
        let mut tree = tree.lock();
        let now = (self.inner.clock)();
        self.checkpoint_locked(&mut tree, now)
    }

    fn poison(&self, error: WalError) -> GateError {
        self.inner.poisoned.store(true, Ordering::Release);
        GateError::Log(error)
    }

    /// Decides one request for `tenant`, timestamped by the configured clock, with
    /// no caller request id. See [`decide_with`](Self::decide_with).
    ///
    /// # Errors
    /// As [`decide_with`](Self::decide_with).
    pub fn decide(&self, tenant: &str, input: KernelInput) -> Result<Admission, GateError> {
        let caller = CallerMeta {
            request_id: [0; 16],
            recorded_at_unix_ms: (self.inner.clock)(),
        };
        self.decide_with(tenant, input, caller)
    }

    /// Decides one request for `tenant`: prescribes under the current policy, holds
    /// the estimated cost of a selection in memory, and appends ONE record carrying
    /// the decision and its reservation. Returns at once, without waiting for the
    /// disk: the [`Admission`] carries the record's durability [`Ticket`].
    ///
    /// A refusal by the budget is not an error: it is a logged decision whose
    /// [`BudgetOutcome`] says why ([`Admission::is_admitted`] is false).
    ///
    /// # Errors
    /// [`GateError::InvalidTenant`], [`GateError::UnknownTenant`] and
    /// [`GateError::Input`] (nothing logged, nothing held);
    /// [`GateError::Poisoned`] or [`GateError::Log`] when the log failed.
    pub fn decide_with(
        &self,
        tenant: &str,
        input: KernelInput,
        caller: CallerMeta,
    ) -> Result<Admission, GateError> {
        self.decide_routed(tenant, input, caller, None, None)
    }

    /// Decides one request like [`decide_with`](Self::decide_with), also holding the
    /// estimated cost on every budget node of `route`: the key, its ancestors, the
    /// model scope of the selected model (a [`BudgetScope::Model`] node named by the
    /// policy's model name, or by the model id in decimal without names), the
    /// provider scope of its provider ([`BudgetScope::Provider`], likewise by name or
    /// decimal id), and the route's further scopes (tags). All or none: a node that cannot cover it refuses the
    /// decision, which is logged as [`BudgetOutcome::Insufficient`] naming that node
    /// in [`GateDecision::scopes`].
    ///
    /// First, every node whose calendar puts `caller.recorded_at_unix_ms` in a later
    /// window is reset, with a logged [`GateRecord::WindowReset`] that precedes any
    /// decision in the new window (exactly once per node and window: the reset is
    /// made and logged while every other operation is held at the barrier).
    ///
    /// # Errors
    /// As [`decide_with`](Self::decide_with), and [`GateError::Tree`] for a route
    /// naming an unknown node or too many scopes.
    pub fn decide_budgeted(
        &self,
        tenant: &str,
        input: KernelInput,
        caller: CallerMeta,
        route: &BudgetRoute,
    ) -> Result<Admission, GateError> {
        self.check_open()?;
        let route = self.enter_route(route, caller.recorded_at_unix_ms)?;
        self.decide_routed(tenant, input, caller, Some(route), None)
    }

    /// Resolves `route` to its node ids and validates it (before anything is logged),
    /// then resets every node of it, and every model and provider scope, whose
    /// calendar puts `at_unix_ms` in a later window.
    fn enter_route(
        &self,
        route: &BudgetRoute,
        at_unix_ms: u64,
    ) -> Result<(NodeId, Vec<NodeId>), GateError> {
        let key = self.inner.tree.node_id(&route.key)?;
        let mut scopes = Vec::with_capacity(route.scopes.len());
        for name in &route.scopes {
            scopes.push(self.inner.tree.node_id(name)?);
        }
        let plan = self.plan_for(key, &scopes)?;
        let mut due: Vec<NodeId> = plan.nodes().collect();
        due.extend(self.inner.model_scopes.read().values().copied());
        due.extend(self.inner.provider_scopes.read().values().copied());
        self.advance_nodes(&due, at_unix_ms)?;
        Ok((key, scopes))
    }

    /// The hold plan of `key` with `scopes`, from the cache when this route was
    /// planned before (a plan costs an allocation and a lookup per node).
    fn plan_for(&self, key: NodeId, scopes: &[NodeId]) -> Result<HoldPlan, GateError> {
        let Some(cache_key) = plan_key(key, scopes) else {
            // More scopes than a plan holds: the tree refuses it.
            return Ok(self.inner.tree.plan(key, scopes)?);
        };
        if let Some(plan) = self.inner.plans.read().get(&cache_key) {
            return Ok(plan.clone());
        }
        let plan = self.inner.tree.plan(key, scopes)?;
        let mut plans = self.inner.plans.write();
        if plans.len() < MAX_CACHED_PLANS {
            plans.insert(cache_key, plan.clone());
        }
        Ok(plan)
    }

    /// Resets every node of `nodes` that `unix_ms` puts in a later window, logging
    /// each reset, under the barrier. Returns the resets made.
    fn advance_nodes(&self, nodes: &[NodeId], unix_ms: u64) -> Result<u64, GateError> {
        let tree = &self.inner.tree;
        if !tree.any_behind(nodes, unix_ms) {
            return Ok(0);
        }
        let barrier = self.inner.policy.write();
        let mut resets = 0;
        for node in nodes {
            let Ok(due) = tree.window_spec(*node)?.window_at(unix_ms) else {
                continue;
            };
            if due <= tree.current_window(*node)? {
                continue;
            }
            if let Some(reset) = tree.advance_window(*node, due)? {
                let record = GateRecord::WindowReset(WindowResetRecord {
                    node: tree.name(*node)?,
                    from_window: reset.from_window,
                    to_window: reset.to_window,
                    expired_microunits: reset.expired_microcents.unsigned_abs(),
                    recorded_at_unix_ms: unix_ms,
                });
                let _ticket = self.append(&record)?;
                resets += 1;
            }
        }
        drop(barrier);
        Ok(resets)
    }

    /// Resets every budget node whose calendar puts `now_unix_ms` (the caller's
    /// clock) in a later window, logging each reset; returns how many were reset.
    /// [`decide_budgeted`](Self::decide_budgeted) does this for the nodes it draws
    /// on; call this from a timer so idle budgets reset on time too.
    ///
    /// # Errors
    /// [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn advance_windows(&self, now_unix_ms: u64) -> Result<u64, GateError> {
        self.check_open()?;
        let nodes: Vec<NodeId> = (0..self.inner.tree.len())
            .filter_map(|index| u32::try_from(index).ok().map(NodeId))
            .collect();
        self.advance_nodes(&nodes, now_unix_ms)
    }

    /// Defines a budget node, logged as [`GateRecord::BudgetDefined`].
    ///
    /// # Errors
    /// [`GateError::Tree`] for an invalid definition (duplicate name, unknown or
    /// invalid parent, bad thresholds or calendar), [`GateError::Poisoned`] or
    /// [`GateError::Log`].
    pub fn define_budget(&self, definition: &BudgetDefined) -> Result<Ticket, GateError> {
        self.check_open()?;
        let _admin = self.inner.admin.lock();
        let _barrier = self.inner.policy.read();
        self.define_node(definition)?;
        self.append(&GateRecord::BudgetDefined(definition.clone()))
    }

    /// Defines `definition` in the tree (not logged).
    fn define_node(&self, definition: &BudgetDefined) -> Result<NodeId, GateError> {
        let tree = &self.inner.tree;
        let parent = match &definition.parent {
            Some(name) => Some(tree.node_id(name)?),
            None => None,
        };
        let scope = match &definition.scope {
            BudgetScope::Chain => NodeScope::Chain,
            BudgetScope::Model(name) => NodeScope::Model(name.clone()),
            BudgetScope::Provider(name) => NodeScope::Provider(name.clone()),
            BudgetScope::Tag(name) => NodeScope::Tag(name.clone()),
        };
        let limit = i64::try_from(definition.limit_microunits).map_err(|_| {
            GateError::Tree(TreeError::InvalidAmount {
                amount_microcents: -1,
            })
        })?;
        let id = tree.define(NodeSpec {
            name: definition.node.clone(),
            parent,
            scope,
            limit_microcents: limit,
            window: definition.window.into(),
            start_window: definition.start_window,
            alert_thresholds_bps: definition.alert_thresholds_bps.clone(),
        })?;
        match &definition.scope {
            BudgetScope::Model(name) => {
                self.inner.model_scopes.write().insert(name.clone(), id);
            }
            BudgetScope::Provider(name) => {
                self.inner.provider_scopes.write().insert(name.clone(), id);
            }
            BudgetScope::Chain | BudgetScope::Tag(_) => {}
        }
        Ok(id)
    }

    /// The budget tree's books of `node`: current window first, then closed windows
    /// with open holds.
    ///
    /// # Errors
    /// [`GateError::Tree`] for an unknown node.
    pub fn budget_books(&self, node: &str) -> Result<Vec<WindowBooks>, GateError> {
        let id = self.inner.tree.node_id(node)?;
        Ok(self.inner.tree.books(id)?)
    }

    /// A channel receiving every alert the gate logs from now on.
    pub fn subscribe_alerts(&self) -> std::sync::mpsc::Receiver<calybris_budget::AlertEvent> {
        self.inner.tree.subscribe()
    }

    /// Decides one request with the adaptive engine (feature `adaptive`): the engine
    /// classifies it, draws its tier and proposes its floor on the current engine
    /// state; the kernel decides on the caller's input with the floor raised to the
    /// engine's (and the tier's) and the tier's model requested, under every hard
    /// gate of the caller's input; the record carries the [`AdaptiveNote`]. The
    /// caller's `minimum_quality_bps`, if not 0, is the client floor: it always wins.
    ///
    /// [`AdaptiveNote`]: crate::adaptive::AdaptiveNote
    ///
    /// # Errors
    /// [`GateError::AdaptiveNotConfigured`]; [`GateError::Learn`] for a request the
    /// engine refuses (feature count); [`GateError::AdaptivePendingFull`]; those of
    /// [`decide_with`](Self::decide_with). Nothing is logged on an error.
    #[cfg(feature = "adaptive")]
    pub fn decide_adaptive(
        &self,
        tenant: &str,
        input: KernelInput,
        caller: CallerMeta,
        request: crate::adaptive_engine::AdaptiveRequest<'_>,
    ) -> Result<Admission, GateError> {
        self.check_open()?;
        self.decide_adaptive_routed(tenant, input, caller, request, None)
    }

    /// [`decide_adaptive`](Self::decide_adaptive) through budget nodes, as
    /// [`decide_budgeted`](Self::decide_budgeted) does: the engine proposes the floor
    /// and tier, the kernel decides, and the estimated cost is held on every node of
    /// `route` (all or none; a node that cannot cover it refuses the decision, logged
    /// as [`BudgetOutcome::Insufficient`] with its adaptive note, so the engine's step
    /// is in the log either way). Windows the caller's clock has crossed are reset
    /// first, before the engine is asked.
    ///
    /// # Errors
    /// As [`decide_adaptive`](Self::decide_adaptive), and [`GateError::Tree`] for a
    /// route naming an unknown node or too many scopes. Nothing is logged on an error
    /// (but the window resets that precede it).
    #[cfg(feature = "adaptive")]
    pub fn decide_adaptive_budgeted(
        &self,
        tenant: &str,
        input: KernelInput,
        caller: CallerMeta,
        request: crate::adaptive_engine::AdaptiveRequest<'_>,
        route: &BudgetRoute,
    ) -> Result<Admission, GateError> {
        self.check_open()?;
        if self.inner.adaptive.is_none() {
            return Err(GateError::AdaptiveNotConfigured);
        }
        // Validate the route and reset due windows before the engine's lock is taken:
        // a reset is logged under the barrier, which is taken after that lock.
        let route = self.enter_route(route, caller.recorded_at_unix_ms)?;
        self.decide_adaptive_routed(tenant, input, caller, request, Some(route))
    }

    /// The adaptive step and the decision, through `route` when given.
    #[cfg(feature = "adaptive")]
    fn decide_adaptive_routed(
        &self,
        tenant: &str,
        input: KernelInput,
        caller: CallerMeta,
        request: crate::adaptive_engine::AdaptiveRequest<'_>,
        route: Option<(NodeId, Vec<NodeId>)>,
    ) -> Result<Admission, GateError> {
        let Some(adaptive) = self.inner.adaptive.as_ref() else {
            return Err(GateError::AdaptiveNotConfigured);
        };
        let mut state = adaptive.lock();
        if state.pending_full() {
            return Err(GateError::AdaptivePendingFull {
                pending: crate::adaptive::MAX_ADAPTIVE_PENDING,
            });
        }
        let step = state.step(&input, request)?;
        let admission = self.decide_routed_unsnapshotted(
            tenant,
            step.input,
            caller,
            route,
            Some(step.note.clone()),
        )?;
        let sequence = admission.ticket.sequence();
        state.logged(sequence, step);
        // A book snapshot takes the engine's lock (under retention): not while held.
        drop(state);
        self.maybe_snapshot(sequence);
        Ok(admission)
    }

    fn decide_routed(
        &self,
        tenant: &str,
        input: KernelInput,
        caller: CallerMeta,
        route: Option<(NodeId, Vec<NodeId>)>,
        adaptive: Option<crate::adaptive::AdaptiveNote>,
    ) -> Result<Admission, GateError> {
        let admission = self.decide_routed_unsnapshotted(tenant, input, caller, route, adaptive)?;
        self.maybe_snapshot(admission.ticket.sequence());
        Ok(admission)
    }

    /// [`decide_routed`](Self::decide_routed) without the book snapshot it may make
    /// due (the caller takes it, once it holds no lock a snapshot takes).
    fn decide_routed_unsnapshotted(
        &self,
        tenant: &str,
        input: KernelInput,
        caller: CallerMeta,
        route: Option<(NodeId, Vec<NodeId>)>,
        adaptive: Option<crate::adaptive::AdaptiveNote>,
    ) -> Result<Admission, GateError> {
        #[cfg(feature = "tracing")]
        let span = tracing::info_span!(
            "calybris.gate.decide",
            tenant = tenant,
            request_sequence = input.request_sequence,
            action = tracing::field::Empty,
            reason = tracing::field::Empty,
            cost_microunits = tracing::field::Empty,
            budget = tracing::field::Empty,
            log_sequence = tracing::field::Empty,
        );
        #[cfg(feature = "tracing")]
        let _entered = span.enter();

        self.check_open()?;
        check_tenant_name(tenant)?;
        let in_force = self.inner.policy.read();
        let input_digest = input_digest(&input);
        let holdout = self
            .inner
            .holdout
            .as_ref()
            .map(|holdout| (holdout.assign(&input_digest), holdout.baseline()));
        // A held-out request is decided by the baseline, every other by the policy in
        // force.
        let policy: &SealedPolicy = match &holdout {
            Some((note, baseline)) if note.held_out => baseline,
            _ => &in_force,
        };
        let decision = policy.prescribe_checked(input)?;
        // Written from what was just computed; the verifier replays it, and debug
        // builds check here that it replays before it is written.
        debug_assert!(policy.verify_decision(input, &decision).is_ok());
        // The shadow candidate sees the same input after the decision is made; its
        // note is only written down.
        let shadow = self
            .inner
            .shadow
            .read()
            .as_ref()
            .map(|candidate| ShadowNote::derive(candidate, input));
        let (mut budget, mut hold) = self.reserve(tenant, &decision)?;
        let mut tree_hold = None;
        let mut scopes = Vec::new();
        if let (Some((key, extra)), BudgetOutcome::Reserved { amount_microunits }) = (route, budget)
        {
            let selected = decision.selected_model_id;
            let provider = policy
                .snapshot()
                .models()
                .iter()
                .find(|model| model.model_id == selected)
                .map(|model| model.provider_id);
            let (model_name, provider_name) = {
                let names = self.inner.names.lock();
                let names = names.as_ref();
                (
                    names
                        .and_then(|n| n.model_name(selected).map(str::to_owned))
                        .unwrap_or_else(|| selected.to_string()),
                    provider.map(|id| {
                        names
                            .and_then(|n| n.provider_name(id).map(str::to_owned))
                            .unwrap_or_else(|| id.to_string())
                    }),
                )
            };
            let mut plan_scopes = extra;
            if let Some(model) = self.inner.model_scopes.read().get(&model_name)
                && !plan_scopes.contains(model)
            {
                plan_scopes.push(*model);
            }
            if let Some(name) = provider_name
                && let Some(node) = self.inner.provider_scopes.read().get(&name)
                && !plan_scopes.contains(node)
            {
                plan_scopes.push(*node);
            }
            let plan = self.plan_for(key, &plan_scopes)?;
            match self
                .inner
                .tree
                .try_reserve(&plan, to_i64(amount_microunits)?)
            {
                Ok(held) => {
                    scopes.extend(held.held().map(|(_, name, window)| ScopeHold {
                        node: name.to_owned(),
                        window,
                    }));
                    tree_hold = Some(held);
                }
                Err(TreeError::Refused {
                    node,
                    node_name,
                    remaining_microcents,
                    ..
                }) => {
                    // Never logged as taken, so it may be freed before the record.
                    drop(hold.take());
                    budget = BudgetOutcome::Insufficient {
                        remaining_microunits: remaining_microcents,
                    };
                    scopes.push(ScopeHold {
                        node: node_name,
                        window: self.inner.tree.current_window(node)?,
                    });
                }
                Err(other) => return Err(GateError::Tree(other)),
            }
        }
        let decision_digest = decision_digest(&decision);
        let record = GateRecord::Decision(GateDecision {
            audit: DecisionRecord {
                input,
                decision,
                policy_digest: *policy.digest(),
                input_digest,
                decision_digest,
                meta: DecisionMeta {
                    recorded_at_unix_ms: caller.recorded_at_unix_ms,
                    tenant_id: cached_tenant_number(tenant),
                    request_id: caller.request_id,
                },
            },
            tenant: tenant.to_owned(),
            budget,
            scopes,
            holdout: holdout.map(|(note, _)| note),
            shadow,
            adaptive,
        });
        // On failure the hold is dropped here (released in memory); the gate is
        // poisoned, so the in-memory books are not used again before a reopen.
        let ticket = self.append(&record)?;
        let sequence = ticket.sequence();
        if budget.is_admitted() {
            let previous = self.inner.open[shard_of(sequence)].lock().insert(
                sequence,
                OpenEntry {
                    tenant: tenant.to_owned(),
                    held_microunits: budget.held_microunits(),
                    hold,
                    tree_hold,
                },
            );
            debug_assert!(previous.is_none(), "a sequence number is never reused");
        }
        let policy_digest = *policy.digest();
        drop(in_force);

        #[cfg(feature = "tracing")]
        {
            span.record("action", tracing::field::debug(decision.action));
            span.record("reason", tracing::field::debug(decision.reason));
            span.record("cost_microunits", decision.estimated_cost_microunits);
            span.record("budget", tracing::field::debug(budget));
            span.record("log_sequence", sequence);
        }

        Ok(Admission {
            gate: self.clone(),
            tenant: tenant.to_owned(),
            input,
            decision,
            decision_digest,
            policy_digest,
            request_id: caller.request_id,
            budget,
            ticket,
            armed: budget.is_admitted(),
        })
    }

    /// Holds the estimated cost of a selection; a refusal is an outcome.
    fn reserve(
        &self,
        tenant: &str,
        decision: &KernelDecision,
    ) -> Result<(BudgetOutcome, Option<Reservation>), GateError> {
        let engine = &self.inner.engine;
        if !decision.is_selection() {
            // A rejection needs no budget, but it must still name a tenant we hold.
            engine
                .remaining_microcents(tenant)
                .map_err(|_| unknown(tenant))?;
            return Ok((BudgetOutcome::RejectedByKernel, None));
        }
        let cost = decision.estimated_cost_microunits;
        if cost == 0 {
            engine
                .remaining_microcents(tenant)
                .map_err(|_| unknown(tenant))?;
            return Ok((BudgetOutcome::NotPriced, None));
        }
        let amount = to_i64(cost)?;
        match engine.try_reserve(tenant, amount) {
            Ok(reservation) => Ok((
                BudgetOutcome::Reserved {
                    amount_microunits: cost,
                },
                Some(reservation),
            )),
            Err(BudgetError::Insufficient {
                remaining_microcents,
                ..
            }) => Ok((
                BudgetOutcome::Insufficient {
                    remaining_microunits: remaining_microcents,
                },
                None,
            )),
            Err(BudgetError::ReservedCapExceeded {
                reserved_microcents,
                ..
            }) => Ok((
                BudgetOutcome::ReservedCapExceeded {
                    reserved_microunits: reserved_microcents,
                },
                None,
            )),
            Err(BudgetError::TooManyActiveReservations { .. }) => {
                Ok((BudgetOutcome::TooManyOpenReservations, None))
            }
            Err(BudgetError::UnknownTenant { .. }) => Err(unknown(tenant)),
            Err(other) => Err(GateError::Budget(other)),
        }
    }

    /// Settles an admission with what the work actually cost, in microunits. Does not
    /// wait for the decision to be durable: the settlement record follows it in the
    /// same log, so whenever the settlement is durable, so is its decision.
    ///
    /// A cost up to the hold is committed and the rest refunded; a cost above it is
    /// committed through the overrun path (the excess taken from the tenant's
    /// spendable budget, and logged as such). An admission that was not admitted
    /// settles only at cost zero (nothing is logged).
    ///
    /// # Errors
    /// [`GateError::NotAdmitted`] for a non-zero cost on a refused decision;
    /// [`GateError::OverrunNotCovered`] when the tenant cannot cover the excess (the
    /// hold then stays open under its [`ReservationId`]: settle it again by id with
    /// less, or release it); [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn settle(
        &self,
        admission: Admission,
        actual_microunits: u64,
    ) -> Result<Settled, GateError> {
        let mut admission = admission;
        if !admission.armed {
            return if actual_microunits == 0 {
                Ok(Settled::default())
            } else {
                Err(GateError::NotAdmitted {
                    log_sequence: admission.log_sequence(),
                })
            };
        }
        admission.armed = false;
        self.settle_entry(
            admission.log_sequence(),
            SettleHow::Commit(actual_microunits),
        )
    }

    /// Releases an admission's hold: nothing is spent (logged as a release).
    ///
    /// # Errors
    /// [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn release(&self, admission: Admission) -> Result<Settled, GateError> {
        let mut admission = admission;
        if !std::mem::replace(&mut admission.armed, false) {
            return Ok(Settled::default());
        }
        self.settle_entry(admission.log_sequence(), SettleHow::Release)
    }

    /// Abandons an admission whose work did not happen (logged as abandoned). This is
    /// also what dropping an unsettled admission does, ignoring errors.
    ///
    /// # Errors
    /// [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn abandon(&self, admission: Admission) -> Result<Settled, GateError> {
        let mut admission = admission;
        if !std::mem::replace(&mut admission.armed, false) {
            return Ok(Settled::default());
        }
        self.settle_entry(admission.log_sequence(), SettleHow::Abandon)
    }

    /// Settles the hold of a parked admission ([`Admission::into_reservation_id`]) or
    /// one kept open across a restart ([`ReopenHolds::Keep`]); as [`settle`](Self::settle).
    ///
    /// # Errors
    /// [`GateError::UnknownReservation`] when no hold with this id is open, and the
    /// errors of [`settle`](Self::settle).
    pub fn settle_by_id(
        &self,
        id: ReservationId,
        actual_microunits: u64,
    ) -> Result<Settled, GateError> {
        self.settle_entry(id.0, SettleHow::Commit(actual_microunits))
    }

    /// Releases a parked or kept hold by id.
    ///
    /// # Errors
    /// [`GateError::UnknownReservation`], [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn release_by_id(&self, id: ReservationId) -> Result<Settled, GateError> {
        self.settle_entry(id.0, SettleHow::Release)
    }

    /// The one settlement path. Order, so that the books stay a pure function of the
    /// log: an operation that takes budget (the excess of an overrun) takes it in
    /// memory before its record is placed; one that frees budget (a refund, a
    /// release) frees it only after its record has its position.
    fn settle_entry(&self, sequence: u64, how: SettleHow) -> Result<Settled, GateError> {
        self.check_open()?;
        let shard = &self.inner.open[shard_of(sequence)];
        // An overrun on budget nodes splits each node's excess between its spendable
        // balance and its overrun by what is spendable when it runs: it runs with
        // every other operation held at the barrier, so the log's order is the
        // memory's and the fold (and the verifier) reproduce the split exactly.
        let overrun_on_nodes = matches!(how, SettleHow::Commit(actual)
        if shard.lock().get(&sequence).is_some_and(|entry| {
            entry.tree_hold.is_some() && actual > entry.held_microunits
        }));
        let barrier = if overrun_on_nodes {
            Barrier::Exclusive {
                _guard: self.inner.policy.write(),
            }
        } else {
            Barrier::Shared {
                _guard: self.inner.policy.read(),
            }
        };
        let Some(mut entry) = shard.lock().remove(&sequence) else {
            return Err(GateError::UnknownReservation {
                id: ReservationId(sequence),
            });
        };
        let held = entry.held_microunits;
        // Precondition: a priced admission holds exactly what it says it holds; a free
        // one holds nothing.
        debug_assert_eq!(
            entry.hold.as_ref().map_or(0, |hold| hold.held_microcents()),
            to_i64(held).unwrap_or(i64::MAX),
            "open entry {sequence}: its hold and its held amount disagree"
        );
        let kind = match how {
            SettleHow::Commit(actual) if actual > held => SettlementKind::CommitWithOverrun {
                actual_microunits: actual,
            },
            SettleHow::Commit(actual) => SettlementKind::Commit {
                actual_microunits: actual,
            },
            SettleHow::Release => SettlementKind::Release,
            SettleHow::Abandon => SettlementKind::Abandon,
            SettleHow::ReleasedAtReopen => SettlementKind::ReleasedAtReopen,
            SettleHow::CommittedAtReopen => SettlementKind::CommittedAtReopen,
        };
        let mut settled = Settled::default();
        if matches!(kind, SettlementKind::CommitWithOverrun { .. })
            && entry.tree_hold.is_some()
            && !matches!(barrier, Barrier::Exclusive { .. })
        {
            // Cannot happen (the entry's hold and amount are fixed once made); kept
            // so that a node overrun never runs outside the exclusive barrier.
            shard.lock().insert(sequence, entry);
            return Err(GateError::Restore(
                "a budget-node overrun needs the exclusive barrier".to_owned(),
            ));
        }
        if let SettlementKind::CommitWithOverrun { actual_microunits } = kind {
            // Take first: the whole excess leaves `remaining` before the record exists.
            if let Err(error) = self.take_overrun(&mut entry, actual_microunits) {
                shard.lock().insert(sequence, entry);
                return Err(error);
            }
            settled.committed_microunits = actual_microunits;
            settled.overrun_microunits = actual_microunits - held;
        }
        let record = GateRecord::Settlement(SettlementRecord {
            decision_sequence: sequence,
            tenant: entry.tenant.clone(),
            kind,
        });
        let ticket = match self.append(&record) {
            Ok(ticket) => ticket,
            Err(error) => {
                // Poisoned: the entry goes back so nothing is freed without a record.
                shard.lock().insert(sequence, entry);
                return Err(error);
            }
        };
        // Free after: the refund or release happens once the record has its place.
        if let Some(tree_hold) = entry.tree_hold.take() {
            let settlement = match kind {
                SettlementKind::Commit { actual_microunits } => {
                    tree_hold.commit(to_i64(actual_microunits)?)?
                }
                SettlementKind::CommitWithOverrun { actual_microunits } => {
                    tree_hold.commit_with_overrun(to_i64(actual_microunits)?)?
                }
                SettlementKind::CommittedAtReopen => tree_hold.commit(to_i64(held)?)?,
                _ => tree_hold.release(),
            };
            for alert in &settlement.alerts {
                let record = GateRecord::AlertFired(AlertFiredRecord {
                    node: self.inner.tree.name(alert.node)?,
                    window: alert.window,
                    threshold_bps: alert.threshold_bps,
                    committed_microunits: alert.committed_microcents.unsigned_abs(),
                    granted_microunits: alert.granted_microcents.unsigned_abs(),
                });
                let _alert = self.append(&record)?;
            }
            self.inner.tree.publish(&settlement.alerts);
        }
        match kind {
            SettlementKind::Commit { actual_microunits } => {
                if let Some(hold) = entry.hold.take() {
                    let spent = to_i64(actual_microunits)?;
                    // Cannot be refused: 0 <= actual <= held was checked above.
                    hold.commit(spent)
                        .map_err(|refused| GateError::Budget(refused.error))?;
                }
                settled.committed_microunits = actual_microunits;
                settled.refunded_microunits = held - actual_microunits;
            }
            SettlementKind::CommittedAtReopen => {
                if let Some(hold) = entry.hold.take() {
                    // Cannot be refused: the whole hold is spent, nothing more.
                    hold.commit(to_i64(held)?)
                        .map_err(|refused| GateError::Budget(refused.error))?;
                }
                settled.committed_microunits = held;
            }
            SettlementKind::CommitWithOverrun { .. } => {}
            SettlementKind::Release
            | SettlementKind::Abandon
            | SettlementKind::ReleasedAtReopen => {
                if let Some(hold) = entry.hold.take() {
                    hold.release();
                }
                settled.refunded_microunits = held;
            }
        }
        // Postconditions: the hold is gone (committed, debited or released), and what
        // was committed and refunded is what was held plus any overrun.
        debug_assert!(
            entry.hold.is_none(),
            "settlement {sequence} left its hold open"
        );
        debug_assert_eq!(
            u128::from(settled.committed_microunits) + u128::from(settled.refunded_microunits),
            u128::from(held) + u128::from(settled.overrun_microunits),
            "settlement {sequence}: committed + refunded != held + overrun"
        );
        settled.log_sequence = Some(ticket.sequence());
        drop(barrier);
        self.maybe_snapshot(ticket.sequence());
        settled.ticket = Some(ticket);
        Ok(settled)
    }

    /// The overrun path in memory: commits the whole hold and debits the excess, or
    /// refuses (the entry is left as it was).
    fn take_overrun(&self, entry: &mut OpenEntry, actual_microunits: u64) -> Result<(), GateError> {
        let actual = to_i64(actual_microunits)?;
        let not_covered = |remaining_microunits| GateError::OverrunNotCovered {
            held_microunits: entry.held_microunits,
            actual_microunits,
            remaining_microunits,
        };
        match entry.hold.take() {
            Some(hold) => match hold.commit_with_overrun(actual) {
                Ok(_) => Ok(()),
                Err(refused) => {
                    let remaining = match refused.error {
                        BudgetError::Insufficient {
                            remaining_microcents,
                            ..
                        } => remaining_microcents,
                        _ => self
                            .inner
                            .engine
                            .remaining_microcents(&entry.tenant)
                            .unwrap_or(0),
                    };
                    entry.hold = Some(refused.reservation);
                    Err(not_covered(remaining))
                }
            },
            None => {
                // A free admission charged a cost: hold and commit the whole of it.
                match self.inner.engine.try_reserve(&entry.tenant, actual) {
                    Ok(hold) => hold
                        .commit(actual)
                        .map(|_| ())
                        .map_err(|refused| GateError::Budget(refused.error)),
                    Err(BudgetError::Insufficient {
                        remaining_microcents,
                        ..
                    }) => Err(not_covered(remaining_microcents)),
                    Err(other) => Err(GateError::Budget(other)),
                }
            }
        }
    }

    /// Records an observed result of a decision, bound to it by its sequence number
    /// and decision digest (both from [`Admission::decision_ref`]). The gate does not
    /// look the decision up; the verifier checks the binding.
    ///
    /// # Errors
    /// [`GateError::OutcomeTooLarge`] for a detail over [`MAX_OUTCOME_DETAIL_BYTES`];
    /// [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn record_outcome(
        &self,
        decision: DecisionRef,
        outcome: Outcome,
    ) -> Result<Ticket, GateError> {
        self.check_open()?;
        if outcome.detail.len() > MAX_OUTCOME_DETAIL_BYTES {
            return Err(GateError::OutcomeTooLarge {
                len_bytes: outcome.detail.len(),
            });
        }
        // The engine learns in log order: its lock is held from the outcome record to
        // the update (and the snapshot it makes due).
        #[cfg(feature = "adaptive")]
        let mut adaptive = self.inner.adaptive.as_ref().map(|a| a.lock());
        let (success, reward) = (outcome.success, outcome.reward_microunits);
        // Under the barrier like every record, so nothing lands between a book
        // snapshot and the policy record that follows it.
        let barrier = self.inner.policy.read();
        let ticket = self.append(&GateRecord::Outcome(OutcomeRecord {
            decision_sequence: decision.sequence,
            decision_digest: decision.decision_digest,
            reward_microunits: outcome.reward_microunits,
            success,
            latency_ms: outcome.latency_ms,
            detail: outcome.detail,
        }))?;
        #[cfg(feature = "adaptive")]
        if let Some(state) = adaptive.as_mut()
            && let Some(snapshot) = state.learn(decision.sequence, success, reward)
        {
            let _snapshot = self.append(&GateRecord::EngineSnapshot(snapshot))?;
        }
        drop(barrier);
        // A book snapshot takes the engine's lock (under retention): not while held.
        #[cfg(feature = "adaptive")]
        drop(adaptive);
        #[cfg(not(feature = "adaptive"))]
        let _ = (success, reward);
        self.maybe_snapshot(ticket.sequence());
        Ok(ticket)
    }

    /// Records what executed a decision (the provider and model that served, after
    /// any fallback, and every attempt), bound to it by `decision` (from
    /// [`Admission::decision_ref`]); the record's own `decision_sequence` and
    /// `decision_digest` are overwritten from it. The verifier checks the binding.
    ///
    /// # Errors
    /// [`GateError::RecordOutOfBounds`] when the record breaks a bound of
    /// [`ExecutionRecord::within_bounds`]; [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn record_execution(
        &self,
        decision: DecisionRef,
        execution: ExecutionRecord,
    ) -> Result<Ticket, GateError> {
        self.check_open()?;
        let mut execution = execution;
        execution.decision_sequence = decision.sequence;
        execution.decision_digest = decision.decision_digest;
        if !execution.within_bounds() {
            return Err(GateError::RecordOutOfBounds { kind: "execution" });
        }
        let barrier = self.inner.policy.read();
        let ticket = self.append(&GateRecord::Execution(execution))?;
        drop(barrier);
        self.maybe_snapshot(ticket.sequence());
        Ok(ticket)
    }

    /// Records a request refused for its authority lease before any decision (nothing
    /// priced or held).
    ///
    /// # Errors
    /// [`GateError::RecordOutOfBounds`] when a field is over
    /// [`crate::record::MAX_EXECUTION_NAME_BYTES`]; [`GateError::Poisoned`] or
    /// [`GateError::Log`].
    pub fn record_lease_refusal(&self, refusal: LeaseRefusal) -> Result<Ticket, GateError> {
        self.check_open()?;
        if !refusal.within_bounds() {
            return Err(GateError::RecordOutOfBounds {
                kind: "lease-refused",
            });
        }
        let barrier = self.inner.policy.read();
        let ticket = self.append(&GateRecord::LeaseRefused(refusal))?;
        drop(barrier);
        self.maybe_snapshot(ticket.sequence());
        Ok(ticket)
    }

    /// Creates `tenant` with `budget_microunits`, logged; an existing tenant is left
    /// untouched (returns `Ok(None)`).
    ///
    /// # Errors
    /// [`GateError::InvalidTenant`], [`GateError::AmountOutOfRange`],
    /// [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn ensure_tenant(
        &self,
        tenant: &str,
        budget_microunits: u64,
    ) -> Result<Option<Ticket>, GateError> {
        self.check_open()?;
        check_tenant_name(tenant)?;
        let initial = to_i64(budget_microunits)?;
        let _admin = self.inner.admin.lock();
        let _barrier = self.inner.policy.read();
        if self.inner.engine.remaining_microcents(tenant).is_ok() {
            return Ok(None);
        }
        let ticket = self.append(&GateRecord::TenantCreated(TenantCreated {
            tenant: tenant.to_owned(),
            initial_microunits: budget_microunits,
        }))?;
        // No reservation can name the tenant before this, so creating it after its
        // record is placed frees nothing early.
        self.inner.engine.ensure_tenant(tenant, initial)?;
        Ok(Some(ticket))
    }

    /// Adds `amount_microunits` to a tenant's budget, logged. The budget grows in
    /// memory only once the record has its place in the log.
    ///
    /// # Errors
    /// [`GateError::UnknownTenant`], [`GateError::AmountOutOfRange`] (zero, or a total
    /// that would overflow), [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn top_up(&self, tenant: &str, amount_microunits: u64) -> Result<Ticket, GateError> {
        self.check_open()?;
        let amount = to_i64(amount_microunits)?;
        if amount == 0 {
            return Err(GateError::AmountOutOfRange { amount_microunits });
        }
        let _admin = self.inner.admin.lock();
        let _barrier = self.inner.policy.read();
        let books = self
            .inner
            .engine
            .ledger(tenant)
            .map_err(|_| unknown(tenant))?;
        if books.initial_microcents.checked_add(amount).is_none() {
            return Err(GateError::AmountOutOfRange { amount_microunits });
        }
        let ticket = self.append(&GateRecord::TopUp(TopUp {
            tenant: tenant.to_owned(),
            amount_microunits,
        }))?;
        self.inner.engine.top_up(tenant, amount)?;
        Ok(ticket)
    }

    /// Changes a tenant's reservation limits (`None` removes one), logged. Limits
    /// apply to reservations made after the change; the verifier records them but does
    /// not re-check refusals against them (a refusal is always safe).
    ///
    /// # Errors
    /// [`GateError::UnknownTenant`], [`GateError::AmountOutOfRange`] for a cap of zero
    /// or above `i64::MAX`, [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn set_limits(
        &self,
        tenant: &str,
        max_reserved_microunits: Option<u64>,
        max_open_reservations: Option<u64>,
    ) -> Result<Ticket, GateError> {
        self.check_open()?;
        let cap = max_reserved_microunits.map(to_i64).transpose()?;
        if cap == Some(0) {
            return Err(GateError::AmountOutOfRange {
                amount_microunits: 0,
            });
        }
        let _admin = self.inner.admin.lock();
        let _barrier = self.inner.policy.read();
        self.inner
            .engine
            .ledger(tenant)
            .map_err(|_| unknown(tenant))?;
        let ticket = self.append(&GateRecord::LimitsChanged(LimitsChanged {
            tenant: tenant.to_owned(),
            max_reserved_microunits,
            max_open_reservations,
        }))?;
        self.inner.engine.set_limits(
            tenant,
            TenantLimits {
                max_reserved_microcents: cap,
                max_active_reservations: max_open_reservations,
            },
        )?;
        Ok(ticket)
    }

    /// Installs a new policy: its record is appended before any decision can use it.
    /// Decisions already under way finish under the policy they started with.
    ///
    /// # Errors
    /// [`GateError::Poisoned`] or [`GateError::Log`] (the policy is then unchanged).
    pub fn install_policy(&self, policy: SealedPolicy) -> Result<Ticket, GateError> {
        self.install(policy, None)
    }

    /// Installs a new policy with the names of its ids and bits: the policy record,
    /// then a [`GateRecord::PolicyNames`] record right after it, both before any
    /// decision can use the policy. Returns the names record's ticket.
    ///
    /// # Errors
    /// [`GateError::InvalidNames`] when `names` does not fit `policy` (nothing is
    /// logged), [`GateError::Poisoned`] or [`GateError::Log`] (the policy is then
    /// unchanged).
    pub fn install_policy_with_names(
        &self,
        policy: SealedPolicy,
        names: NameMap,
    ) -> Result<Ticket, GateError> {
        names.validate_for(&policy)?;
        self.install(policy, Some(names))
    }

    fn install(&self, policy: SealedPolicy, names: Option<NameMap>) -> Result<Ticket, GateError> {
        self.check_open()?;
        let mut current = self.inner.policy.write();
        let mut ticket = self.append(&policy_record(&policy))?;
        if let Some(names) = &names {
            ticket = self.append(&names_record(*policy.digest(), names))?;
        }
        *self.inner.names.lock() = names.map(Arc::new);
        *current = Arc::new(policy);
        Ok(ticket)
    }

    /// Records a promotion or a rollback ([`GateRecord::Promotion`]) after the policy
    /// it names was installed with [`install_policy`](Self::install_policy). The gate
    /// does not judge the report; the verifier checks that both policies were
    /// recorded before the record.
    ///
    /// # Errors
    /// [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn record_promotion(&self, record: PromotionRecord) -> Result<Ticket, GateError> {
        self.check_open()?;
        let barrier = self.inner.policy.read();
        let ticket = self.append(&GateRecord::Promotion(record))?;
        drop(barrier);
        self.maybe_snapshot(ticket.sequence());
        Ok(ticket)
    }

    /// Stages `candidate` for live shadow evaluation: logs a
    /// [`GateRecord::Staged`] record carrying it, and from then on every decision
    /// record carries the candidate's [`ShadowNote`] on the same input. The responses
    /// do not change. Stays staged across reopens until
    /// [`unstage_shadow`](Self::unstage_shadow).
    ///
    /// # Errors
    /// [`GateError::ShadowAlreadyStaged`] when a candidate is staged (nothing logged);
    /// [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn stage_shadow(&self, candidate: SealedPolicy) -> Result<Ticket, GateError> {
        self.check_open()?;
        let barrier = self.inner.policy.write();
        let mut staged = self.inner.shadow.write();
        if let Some(staged) = staged.as_ref() {
            return Err(GateError::ShadowAlreadyStaged {
                staged: *staged.digest(),
                candidate: *candidate.digest(),
            });
        }
        let ticket = self.append(&crate::shadow::staged_record(StageRole::Shadow, &candidate))?;
        *staged = Some(Arc::new(candidate));
        drop(staged);
        drop(barrier);
        Ok(ticket)
    }

    /// Unstages the shadow candidate: logs a [`GateRecord::Unstaged`] record; later
    /// decisions carry no shadow note.
    ///
    /// # Errors
    /// [`GateError::NoShadowStaged`] when none is staged;
    /// [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn unstage_shadow(&self) -> Result<Ticket, GateError> {
        self.check_open()?;
        let barrier = self.inner.policy.write();
        let mut staged = self.inner.shadow.write();
        let Some(candidate) = staged.as_ref() else {
            return Err(GateError::NoShadowStaged);
        };
        let ticket = self.append(&GateRecord::Unstaged(crate::shadow::UnstagedPolicy {
            role: StageRole::Shadow,
            policy_digest: *candidate.digest(),
        }))?;
        *staged = None;
        drop(staged);
        drop(barrier);
        Ok(ticket)
    }

    /// The staged shadow candidate, if any.
    #[must_use]
    pub fn staged_shadow(&self) -> Option<Arc<SealedPolicy>> {
        self.inner.shadow.read().clone()
    }

    /// The holdout, when on.
    #[must_use]
    pub fn holdout(&self) -> Option<&HoldoutConfig> {
        self.inner.holdout.as_ref()
    }

    /// Appends the staging records of what is staged (the baseline, the shadow
    /// candidate); only under the policy's exclusive lock or while opening.
    pub(crate) fn restate_staged(&self) -> Result<(), GateError> {
        if let Some(holdout) = &self.inner.holdout {
            let _baseline = self.append(&crate::shadow::staged_record(
                StageRole::Baseline,
                holdout.baseline(),
            ))?;
        }
        let candidate = self.inner.shadow.read().clone();
        if let Some(candidate) = candidate {
            let _shadow =
                self.append(&crate::shadow::staged_record(StageRole::Shadow, &candidate))?;
        }
        Ok(())
    }

    /// Sets the staged shadow candidate while opening (from the log).
    pub(crate) fn resume_shadow(&self, candidate: SealedPolicy) {
        *self.inner.shadow.write() = Some(Arc::new(candidate));
    }

    /// The names of the current policy's ids and bits, when it was given any.
    #[must_use]
    pub fn policy_names(&self) -> Option<Arc<NameMap>> {
        self.inner.names.lock().clone()
    }

    /// The current policy.
    #[must_use]
    pub fn policy(&self) -> Arc<SealedPolicy> {
        Arc::clone(&self.inner.policy.read())
    }

    /// One tenant's books now, in microunits (holds of decisions still in flight
    /// included).
    ///
    /// # Errors
    /// [`GateError::UnknownTenant`].
    pub fn tenant_books(&self, tenant: &str) -> Result<TenantBooks, GateError> {
        let row = self
            .inner
            .engine
            .ledger(tenant)
            .map_err(|_| unknown(tenant))?;
        let limits = self
            .inner
            .engine
            .limits(tenant)
            .map_err(|_| unknown(tenant))?;
        Ok(TenantBooks {
            tenant: row.tenant_id,
            initial_microunits: row.initial_microcents,
            remaining_microunits: row.remaining_microcents,
            reserved_microunits: row.reserved_microcents,
            committed_microunits: row.committed_microcents,
            max_reserved_microunits: limits.max_reserved_microcents.map(i64::unsigned_abs),
            max_open_reservations: limits.max_active_reservations,
        })
    }

    /// A conservation proof of the books now, bound to the log's appended position.
    ///
    /// # Errors
    /// [`GateError::Poisoned`] (the in-memory books are not trusted after a failure),
    /// or [`GateError::Digest`].
    pub fn prove_conservation(&self) -> Result<ConservationProof, GateError> {
        self.check_open()?;
        let _barrier = self.inner.policy.write();
        let records = self.inner.wal.appended_anchor().next_sequence;
        let mut snapshot = self.inner.engine.snapshot();
        snapshot.version = records;
        Ok(prove_snapshot(&snapshot, Some(records))?)
    }

    /// Writes a book snapshot now (followed by the current policy record), holding
    /// every operation still for as long as it takes to copy the books; returns the
    /// snapshot record's sequence number.
    ///
    /// # Errors
    /// [`GateError::SnapshotTooLarge`] when the books do not fit one record,
    /// [`GateError::Poisoned`] or [`GateError::Log`].
    pub fn snapshot_books(&self) -> Result<u64, GateError> {
        self.check_open()?;
        // Under retention the engine's whole state follows the book snapshot in the
        // same barrier, so a suffix from the snapshot replays the engine. The engine's
        // lock is taken first, as every operation that steps the engine takes it
        // before the policy barrier (the other order could deadlock with
        // `decide_adaptive`). It stalls no more than the barrier already does: every
        // decision and outcome waits for the barrier, adaptive or not. The callers
        // that hold the engine's lock (`decide_adaptive`, `record_outcome`) release
        // it before they may take a snapshot.
        #[cfg(feature = "adaptive")]
        let adaptive = if self.inner.retention == Retention::SinceLastSnapshot {
            self.inner.adaptive.as_ref().map(|a| a.lock())
        } else {
            None
        };
        let policy = self.inner.policy.write();
        let snapshot = self.books_now(*policy.digest())?;
        let ticket = self.append_leading(&GateRecord::BookSnapshot(snapshot))?;
        // The policy in force follows its snapshot directly (no checkpoint between
        // them), so a suffix that starts at the snapshot holds every policy its
        // decisions name.
        let _policy = self.append(&policy_record(&policy))?;
        let names = self.inner.names.lock().clone();
        if let Some(names) = names {
            let _names = self.append(&names_record(*policy.digest(), &names))?;
        }
        // What is staged is restated, so a suffix from this snapshot re-derives it.
        self.restate_staged()?;
        #[cfg_attr(not(feature = "adaptive"), allow(unused_mut))]
        let mut last = ticket.clone();
        #[cfg(feature = "adaptive")]
        if let Some(state) = &adaptive {
            let (record, parts) = state.state_records();
            let _state = self.append(&GateRecord::EngineState(record))?;
            for part in parts {
                let _part = self.append(&GateRecord::EnginePending(part))?;
            }
            last = self.append(&GateRecord::EngineSnapshot(state.snapshot()))?;
        }
        drop(policy);
        #[cfg(feature = "adaptive")]
        drop(adaptive);
        self.inner.snapshots_taken.fetch_add(1, Ordering::Relaxed);
        if self.inner.retention == Retention::SinceLastSnapshot {
            // Only a durable snapshot may stand in for the segments before it: a
            // crash must never leave a log whose books (or engine) start nowhere.
            // The engine's records are the last of the snapshot's.
            last.wait()?;
            self.retire_before(ticket.sequence())?;
        }
        Ok(ticket.sequence())
    }

    /// Deletes the segments wholly before `sequence` and records where the log now
    /// starts.
    fn retire_before(&self, sequence: u64) -> Result<(), GateError> {
        // Plan, persist where the log will start, then delete: a crash in the middle
        // leaves a directory that still opens (and verifies) from the persisted anchor.
        let plan = self.inner.wal.plan_retirement(sequence)?;
        if plan.removed.is_empty() {
            return Ok(());
        }
        if let Some(path) = &self.inner.start_anchor_file {
            write_start_anchor(path, plan.start_anchor).map_err(|source| GateError::Directory {
                path: path.clone(),
                source,
            })?;
        }
        let retired = self
            .inner
            .wal
            .retire_segments_before(plan.before_sequence)?;
        debug_assert_eq!(retired.start_anchor, plan.start_anchor);
        *self.inner.start_anchor.lock() = Some(retired.start_anchor);
        Ok(())
    }

    /// Where the log starts when older segments were retired (`None`: at genesis).
    /// Keep it where the log's writer cannot rewrite it: verifying the retained log
    /// needs it.
    #[must_use]
    pub fn start_anchor(&self) -> Option<WalAnchor> {
        *self.inner.start_anchor.lock()
    }

    /// The in-memory books as a snapshot record; only under the exclusive barrier.
    fn books_now(&self, policy_digest: Digest) -> Result<BookSnapshot, GateError> {
        let engine_snapshot = self.inner.engine.snapshot();
        let tenants: Vec<SnapshotTenant> = engine_snapshot
            .tenants
            .iter()
            .map(|row| {
                let limits = self.inner.engine.limits(&row.tenant_id).unwrap_or_default();
                SnapshotTenant {
                    tenant: row.tenant_id.clone(),
                    initial_microunits: row.initial_microcents,
                    remaining_microunits: row.remaining_microcents,
                    reserved_microunits: row.reserved_microcents,
                    committed_microunits: row.committed_microcents,
                    max_reserved_microunits: limits.max_reserved_microcents.map(i64::unsigned_abs),
                    max_open_reservations: limits.max_active_reservations,
                }
            })
            .collect();
        let position: HashMap<&str, u32> = tenants
            .iter()
            .enumerate()
            .map(|(index, row)| (row.tenant.as_str(), index as u32))
            .collect();
        let mut open = Vec::new();
        let mut budget_holds = Vec::new();
        for shard in &*self.inner.open {
            for (sequence, entry) in shard.lock().iter() {
                if let Some(tree_hold) = &entry.tree_hold {
                    let mut nodes: Vec<SnapshotHeldNode> = tree_hold
                        .windows()
                        .map(|(node, window)| SnapshotHeldNode {
                            node_index: node.0,
                            window,
                        })
                        .collect();
                    nodes.sort_unstable_by_key(|held| held.node_index);
                    budget_holds.push(SnapshotNodeHolds {
                        decision_sequence: *sequence,
                        held_microunits: entry.held_microunits,
                        nodes,
                    });
                }
                open.push(OpenHold {
                    decision_sequence: *sequence,
                    // Every hold's tenant is in the engine: holds are made from it.
                    tenant_index: position
                        .get(entry.tenant.as_str())
                        .copied()
                        .unwrap_or(u32::MAX),
                    held_microunits: entry.held_microunits,
                });
            }
        }
        open.sort_unstable_by_key(|hold| hold.decision_sequence);
        budget_holds.sort_unstable_by_key(|hold| hold.decision_sequence);
        let budget_nodes = self.budget_nodes_now()?;
        #[cfg(debug_assertions)]
        {
            // Under the exclusive barrier no decision or settlement is half done: every
            // tenant balances, every hold names a tenant, and each tenant's open holds
            // add up to what the engine says it has reserved.
            let mut held = vec![0u128; tenants.len()];
            for hold in &open {
                debug_assert!(
                    (hold.tenant_index as usize) < tenants.len(),
                    "open hold {} names no tenant of the engine",
                    hold.decision_sequence
                );
                if let Some(sum) = held.get_mut(hold.tenant_index as usize) {
                    *sum += u128::from(hold.held_microunits);
                }
            }
            for (row, held) in tenants.iter().zip(held) {
                debug_assert_eq!(
                    i128::from(row.remaining_microunits)
                        + i128::from(row.reserved_microunits)
                        + i128::from(row.committed_microunits),
                    i128::from(row.initial_microunits),
                    "tenant {:?} does not balance in memory",
                    row.tenant
                );
                debug_assert_eq!(
                    u128::try_from(row.reserved_microunits).ok(),
                    Some(held),
                    "tenant {:?}: reserved differs from its open holds",
                    row.tenant
                );
            }
        }
        Ok(BookSnapshot {
            format_version: GATE_FORMAT_VERSION,
            policy_digest,
            tenants,
            open,
            budget_nodes,
            budget_holds,
        })
    }

    /// The budget tree's nodes as a snapshot's budget section: in definition order
    /// (the tree's ids are the log's definition order), each restated in its current
    /// window, with its kept windows ascending; only under the exclusive barrier.
    fn budget_nodes_now(&self) -> Result<Vec<SnapshotBudgetNode>, GateError> {
        let tree = &self.inner.tree;
        let mut nodes = Vec::with_capacity(tree.len());
        for index in 0..tree.len() {
            let id = NodeId(u32::try_from(index).map_err(|_| TreeError::TooManyNodes)?);
            let spec = tree.spec(id)?;
            let mut windows: Vec<NodeWindowBooks> = tree
                .books(id)?
                .into_iter()
                .map(|books| NodeWindowBooks {
                    window: books.window,
                    granted_microunits: books.granted_microcents,
                    remaining_microunits: books.remaining_microcents,
                    reserved_microunits: books.reserved_microcents,
                    committed_microunits: books.committed_microcents,
                    expired_microunits: books.expired_microcents,
                    overrun_microunits: books.overrun_microcents,
                    open_holds: books.open_holds,
                    fired_mask: books.fired_mask,
                })
                .collect();
            windows.sort_unstable_by_key(|books| books.window);
            let current = tree.current_window(id)?;
            debug_assert_eq!(windows.last().map(|books| books.window), Some(current));
            let parent = spec.parent.map(|parent| tree.name(parent)).transpose()?;
            nodes.push(SnapshotBudgetNode {
                definition: BudgetDefined {
                    node: spec.name,
                    parent,
                    scope: match spec.scope {
                        NodeScope::Chain => BudgetScope::Chain,
                        NodeScope::Model(name) => BudgetScope::Model(name),
                        NodeScope::Provider(name) => BudgetScope::Provider(name),
                        NodeScope::Tag(name) => BudgetScope::Tag(name),
                    },
                    limit_microunits: spec.limit_microcents.unsigned_abs(),
                    window: BudgetWindow::try_from(spec.window)
                        .map_err(|error| GateError::Restore(error.to_string()))?,
                    start_window: current,
                    alert_thresholds_bps: spec.alert_thresholds_bps,
                },
                windows,
            });
        }
        Ok(nodes)
    }

    /// Takes a book snapshot when `sequence` crossed the next snapshot point; only one
    /// thread claims it.
    fn maybe_snapshot(&self, sequence: u64) {
        let due = self.inner.next_snapshot_at.load(Ordering::Relaxed);
        if sequence < due {
            return;
        }
        if self
            .inner
            .next_snapshot_at
            .compare_exchange(due, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let next = match self.snapshot_books() {
            Ok(at) => at.saturating_add(self.inner.snapshot_every_records),
            // A failed snapshot is retried later; a poisoned log refuses everything.
            Err(_) => sequence.saturating_add(self.inner.snapshot_every_records),
        };
        self.inner.next_snapshot_at.store(next, Ordering::Release);
    }

    /// Book snapshots written by this gate since it opened.
    #[must_use]
    pub fn snapshots_taken(&self) -> u64 {
        self.inner.snapshots_taken.load(Ordering::Relaxed)
    }

    /// What opening found.
    #[must_use]
    pub fn recovery(&self) -> &GateRecovery {
        &self.inner.recovery
    }

    /// The position after the last appended record.
    #[must_use]
    pub fn appended_anchor(&self) -> WalAnchor {
        self.inner.wal.appended_anchor()
    }

    /// The position after the last durable record.
    #[must_use]
    pub fn durable_anchor(&self) -> WalAnchor {
        self.inner.wal.durable_anchor()
    }

    /// The log's group-commit counters since the gate opened: batches, records, bytes,
    /// and the time spent in data and watermark fdatasyncs.
    #[must_use]
    pub fn log_stats(&self) -> calybris_wal::DurableStats {
        self.inner.wal.stats()
    }

    /// Whether a log failure has poisoned the gate (reopen to continue).
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        self.inner.poisoned.load(Ordering::Acquire)
    }

    /// The gate directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The log's directory (give the gate directory to `calybris verify`).
    #[must_use]
    pub fn log_dir(&self) -> PathBuf {
        self.inner.dir.join(LOG_DIR)
    }

    /// The log's HMAC key, if any.
    #[must_use]
    pub fn key(&self) -> Option<&WalKey> {
        self.inner.key.as_ref()
    }

    /// Makes everything appended durable, stops the log and releases the directory;
    /// returns the durable anchor (keep it to detect a cut suffix later). With
    /// scheduled checkpoints the background signer is stopped first, and a
    /// checkpoint it was still signing is signed and logged here.
    ///
    /// # Errors
    /// [`GateError::StillShared`] when other handles or unsettled admissions still
    /// refer to the gate (the log then closes when the last of them is dropped);
    /// [`GateError::Log`] when a write or sync failed.
    pub fn close(self) -> Result<WalAnchor, GateError> {
        // The background signer stops first (it lands a checkpoint it is
        // signing); a head still in flight is then signed here.
        self.inner.signer.stop();
        if let Some(tree) = &self.inner.merkle {
            let mut tree = tree.lock();
            if tree.abandon() && self.check_open().is_ok() {
                let now = (self.inner.clock)();
                let _checkpoint = self.checkpoint_locked(&mut tree, now);
            }
        }
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => Ok(inner.wal.close()?),
            Err(shared) => Err(GateError::StillShared {
                handles: Arc::strong_count(&shared) - 1,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum SettleHow {
    Commit(u64),
    Release,
    Abandon,
    ReleasedAtReopen,
    CommittedAtReopen,
}

fn unknown(tenant: &str) -> GateError {
    GateError::UnknownTenant {
        tenant: tenant.to_owned(),
    }
}

fn check_tenant_name(tenant: &str) -> Result<(), GateError> {
    if tenant.is_empty() || tenant.len() > MAX_TENANT_NAME_BYTES {
        return Err(GateError::InvalidTenant {
            len_bytes: tenant.len(),
        });
    }
    Ok(())
}

fn names_record(policy_digest: Digest, names: &NameMap) -> GateRecord {
    GateRecord::PolicyNames(PolicyNames {
        policy_digest,
        names: names.clone(),
    })
}

fn policy_record(policy: &SealedPolicy) -> GateRecord {
    GateRecord::Policy(PolicyRecord {
        policy_digest: *policy.digest(),
        policy: policy.clone(),
    })
}

/// The payload code (first byte) of a book snapshot record.
const SNAPSHOT_CODE: u8 = 8;
/// The payload code (first byte) of a policy record.
const POLICY_CODE: u8 = 0;
/// The payload code (first byte) of a policy-names record.
const NAMES_CODE: u8 = 9;
/// The payload code (first byte) of a promotion record; the staging records come
/// after it (their codes are decoded, not assumed).
const PROMOTION_CODE: u8 = 12;
/// Payload bytes kept unfolded since the last book snapshot before they are folded
/// anyway (bounds reopen's memory when snapshots are rare or off).
const MAX_UNFOLDED_BYTES: usize = 64 << 20;

/// The fold of a log as its writer reopens it, in the log's own recovery scan.
///
/// The books of the last book snapshot are the books at that point (the verifier
/// checks every snapshot against the full fold; the writer trusts its own log, whose
/// chain it has just verified). So the payloads after each snapshot are kept raw and
/// folded only at the end, or when they pass [`MAX_UNFOLDED_BYTES`]: reopening a long
/// log decodes and folds little more than the records after its last snapshot. Policy
/// records are decoded as they come (the latest one is needed), and a retained log's
/// records before its first snapshot are skipped.
#[derive(Debug, Default)]
struct Fold {
    books: Books,
    last_policy: Option<SealedPolicy>,
    last_names: Option<PolicyNames>,
    folded: u64,
    started: bool,
    first_sequence: Option<u64>,
    /// Payloads not folded yet, back to back.
    unfolded: Vec<u8>,
    /// (sequence, offset in its segment, end in `unfolded`) of each of them.
    unfolded_frames: Vec<(u64, u64, usize)>,
    /// The shadow candidate staged at the end of the log, if any.
    staged_shadow: Option<SealedPolicy>,
    /// The adaptive engine replayed from the log (an adaptive gate's reopen).
    #[cfg(feature = "adaptive")]
    adaptive: Option<crate::adaptive_engine::AdaptiveReplay>,
}

fn decode_gate_record(
    sequence: u64,
    offset_bytes: u64,
    payload: &[u8],
) -> Result<GateRecord, GateError> {
    decode_record(payload).map_err(|_| {
        GateError::Log(WalError::Refused(Recovery::Corrupt {
            sequence: Some(sequence),
            offset_bytes,
            reason: CorruptReason::Undecodable,
        }))
    })
}

impl Fold {
    fn visit(&mut self, frame: &Frame<'_>) -> Result<(), GateError> {
        let sequence = frame.sequence;
        if self.first_sequence.is_none() {
            self.first_sequence = Some(sequence);
            self.started = sequence == 0;
            #[cfg(feature = "adaptive")]
            if let Some(replay) = self.adaptive.as_mut() {
                replay.start(sequence);
            }
        }
        let books_error = |error| GateError::Books { sequence, error };
        // The engine replays from the first book snapshot on, as the verifier does
        // (in a retained log, from the first complete engine state record after it).
        #[cfg(feature = "adaptive")]
        if self.started
            && let Some(replay) = self.adaptive.as_mut()
        {
            let record = decode_gate_record(sequence, frame.offset_bytes, frame.payload)?;
            replay.visit(sequence, &record)?;
        }
        match frame.payload.first() {
            Some(&SNAPSHOT_CODE) => {
                let record = decode_gate_record(sequence, frame.offset_bytes, frame.payload)?;
                if let GateRecord::BookSnapshot(snapshot) = &record {
                    if self.started && self.unfolded_frames.is_empty() {
                        // Everything before it is folded: check it against the fold.
                        self.books.apply(sequence, &record).map_err(books_error)?;
                    } else {
                        self.books = Books::from_snapshot(snapshot).map_err(books_error)?;
                        self.unfolded.clear();
                        self.unfolded_frames.clear();
                        self.started = true;
                    }
                    self.folded += 1;
                    return Ok(());
                }
            }
            Some(&POLICY_CODE) => {
                if let GateRecord::Policy(policy) =
                    decode_gate_record(sequence, frame.offset_bytes, frame.payload)?
                {
                    self.last_policy = Some(policy.policy);
                }
            }
            Some(&NAMES_CODE) => {
                if let GateRecord::PolicyNames(names) =
                    decode_gate_record(sequence, frame.offset_bytes, frame.payload)?
                {
                    self.last_names = Some(names);
                }
            }
            // The rare kinds after the promotion record: staging is among them.
            Some(&code) if code > PROMOTION_CODE => {
                match decode_gate_record(sequence, frame.offset_bytes, frame.payload)? {
                    GateRecord::Staged(staged) if staged.role == StageRole::Shadow => {
                        self.staged_shadow = Some(staged.policy.policy);
                    }
                    GateRecord::Unstaged(unstaged) if unstaged.role == StageRole::Shadow => {
                        self.staged_shadow = None;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        if !self.started {
            // A retained log: the books start at its first snapshot.
            return Ok(());
        }
        self.unfolded.extend_from_slice(frame.payload);
        self.unfolded_frames
            .push((sequence, frame.offset_bytes, self.unfolded.len()));
        if self.unfolded.len() > MAX_UNFOLDED_BYTES {
            self.fold_unfolded()?;
        }
        Ok(())
    }

    /// Decodes and folds every payload kept since the last snapshot.
    fn fold_unfolded(&mut self) -> Result<(), GateError> {
        let mut start = 0;
        for &(sequence, offset_bytes, end) in &self.unfolded_frames {
            let payload = self.unfolded.get(start..end).unwrap_or_default();
            start = end;
            let record = decode_gate_record(sequence, offset_bytes, payload)?;
            self.books
                .apply(sequence, &record)
                .map_err(|error| GateError::Books { sequence, error })?;
            self.folded += 1;
        }
        self.unfolded.clear();
        self.unfolded_frames.clear();
        Ok(())
    }
}

/// Where a retained log starts: the header of its first segment, when that segment
/// does not start at sequence 0. The writer trusts its own directory (a verifier is
/// given the anchor from elsewhere, see [`crate::VerifyOptions::start_anchor`]).
fn start_of<D: Directory>(dir: &D, key: Option<&WalKey>) -> Result<Option<WalAnchor>, GateError> {
    let segments = dir.list_segments().map_err(WalError::Io)?;
    let Some(&first) = segments.first() else {
        return Ok(None);
    };
    if first == 0 {
        return Ok(None);
    }
    let storage = dir.open_segment(first).map_err(WalError::Io)?;
    let header = *FrameReader::new(storage, key)?.header();
    Ok(Some(WalAnchor {
        next_sequence: header.first_sequence,
        head_hash: header.prev_hash,
    }))
}

/// Loads the engine with the books' balances, holds excluded (they are re-made as
/// reservations by [`Gate::adopt_open_holds`], before the limits are set).
fn restore_balances(engine: &BudgetEngine, books: &Books) -> Result<(), GateError> {
    let mut snapshot = books.budget_snapshot(0);
    for row in &mut snapshot.tenants {
        // Cannot overflow: remaining + reserved <= initial in balanced books.
        row.remaining_microcents += row.reserved_microcents;
        row.reserved_microcents = 0;
    }
    snapshot.active_reservations = 0;
    engine
        .restore(&snapshot)
        .map_err(|error| GateError::Restore(error.to_string()))
}

/// Sets every tenant's limits as the books hold them.
fn restore_limits(engine: &BudgetEngine, books: &Books) -> Result<(), GateError> {
    for row in books.tenants() {
        engine.set_limits(
            &row.tenant,
            TenantLimits {
                max_reserved_microcents: row
                    .max_reserved_microunits
                    .and_then(|cap| i64::try_from(cap).ok()),
                max_active_reservations: row.max_open_reservations,
            },
        )?;
    }
    Ok(())
}

/// Writes the start anchor's text atomically: a temporary file, synced, renamed over
/// the old one, and the directory synced.
fn write_start_anchor(path: &Path, anchor: WalAnchor) -> std::io::Result<()> {
    use std::io::Write as _;
    let text = format!(
        "{}:{}\n",
        anchor.next_sequence,
        calybris_digest::digest_to_hex(&anchor.head_hash)
    );
    let temporary = path.with_extension("anchor.tmp");
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// A decision's place in the log: what an outcome binds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionRef {
    /// The decision record's sequence number.
    pub sequence: u64,
    /// Its decision digest (`calydcn1`).
    pub decision_digest: Digest,
}

/// An observed result of a decision's execution (see [`Gate::record_outcome`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The observed reward, in microunits.
    pub reward_microunits: i64,
    /// Whether the execution succeeded.
    pub success: bool,
    /// The observed latency, in milliseconds.
    pub latency_ms: u32,
    /// Free-form bytes, at most [`MAX_OUTCOME_DETAIL_BYTES`].
    pub detail: Vec<u8>,
}

/// One decision made by a [`Gate`]: the kernel decision, what the budget made of it,
/// and the durability ticket of its record. Owned (`'static`, `Send`): settle it from
/// any thread or task, or park it as a [`ReservationId`].
///
/// # Before the ticket completes
/// The decision is in the log's order but not yet on disk. A caller may read it, start
/// work that can be undone, and settle or abandon it (those records follow the
/// decision, so they can never outlive it). It must not tell anyone outside the process
/// that the decision was made (answer a client, send an order) before
/// [`Admission::wait_durable`] (or its async form, the ticket) returns: after a crash
/// the decision, and everything after it, may be gone.
///
/// Dropping an admitted, unsettled admission abandons it (logged), so a hold can never
/// leak.
#[must_use = "an admission holds budget until it is settled; dropping it abandons it"]
#[derive(Debug)]
pub struct Admission {
    gate: Gate,
    tenant: String,
    input: KernelInput,
    decision: KernelDecision,
    decision_digest: Digest,
    policy_digest: Digest,
    request_id: [u8; 16],
    budget: BudgetOutcome,
    ticket: Ticket,
    /// True while the admission still owns an open hold it must settle.
    armed: bool,
}

impl Admission {
    /// Whether the work may go ahead: the kernel selected a candidate and the budget
    /// holds its estimated cost (or it costs nothing).
    #[must_use]
    pub fn is_admitted(&self) -> bool {
        self.budget.is_admitted()
    }

    /// The kernel decision, exactly as logged.
    #[must_use]
    pub fn decision(&self) -> &KernelDecision {
        &self.decision
    }

    /// The request, exactly as logged.
    #[must_use]
    pub fn input(&self) -> &KernelInput {
        &self.input
    }

    /// What the budget made of the decision.
    #[must_use]
    pub fn budget(&self) -> BudgetOutcome {
        self.budget
    }

    /// The tenant.
    #[must_use]
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The caller's request id, as logged.
    #[must_use]
    pub fn request_id(&self) -> [u8; 16] {
        self.request_id
    }

    /// Digest of the policy that decided.
    #[must_use]
    pub fn policy_digest(&self) -> &Digest {
        &self.policy_digest
    }

    /// The decision's place in the log, for [`Gate::record_outcome`].
    #[must_use]
    pub fn decision_ref(&self) -> DecisionRef {
        DecisionRef {
            sequence: self.ticket.sequence(),
            decision_digest: self.decision_digest,
        }
    }

    /// The decision record's sequence number (also its [`ReservationId`]).
    #[must_use]
    pub fn log_sequence(&self) -> u64 {
        self.ticket.sequence()
    }

    /// The decision record's durability ticket.
    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// Blocks until the decision record is durable; returns its sequence number.
    ///
    /// # Errors
    /// [`GateError::Log`] when the log failed or closed first.
    pub fn wait_durable(&self) -> Result<u64, GateError> {
        Ok(self.ticket.wait()?)
    }

    /// Parks the hold under its [`ReservationId`], to settle it later with
    /// [`Gate::settle_by_id`] or [`Gate::release_by_id`] (from anywhere that holds the
    /// gate). `None` when nothing is to be settled (the decision was not admitted).
    #[must_use]
    pub fn into_reservation_id(mut self) -> Option<ReservationId> {
        std::mem::replace(&mut self.armed, false).then(|| ReservationId(self.log_sequence()))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if std::mem::replace(&mut self.armed, false) {
            // Best effort: a failure poisons the gate, which refuses everything after.
            let _ = self
                .gate
                .settle_entry(self.ticket.sequence(), SettleHow::Abandon);
        }
    }
}
