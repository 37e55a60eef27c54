//! The engine: the tenant registry and the operations callers use.

use crate::error::{BudgetError, ConservationViolation, RestoreError};
use crate::reservation::{Reservation, ReservationId, Settlement, settlement};
use crate::snapshot::{BudgetSnapshot, TenantLedger};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, RwLock};
use crate::tenant::{Row, TenantCell};
use std::collections::HashMap;

/// The most tenants one engine holds (a [`ReservationId`] names the tenant's slot in 24 bits).
pub const MAX_TENANTS: u32 = 1 << 24;

/// The longest tenant id accepted, in bytes.
pub const MAX_TENANT_ID_BYTES: usize = 256;

/// Optional limits on a tenant's open reservations.
///
/// Limits apply to reservations opened after they are set; lowering a limit
/// never revokes a hold already granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TenantLimits {
    /// Cap on the sum of the tenant's open holds, in microcents.
    pub max_reserved_microcents: Option<i64>,
    /// Cap on how many reservations the tenant may have open at once.
    pub max_active_reservations: Option<u64>,
}

/// What [`BudgetEngine::ensure_tenant`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantCreation {
    /// The tenant was created with the given initial budget.
    Created,
    /// The tenant already existed and was left untouched (no top-up).
    AlreadyExists,
}

/// Hashes tenant ids in the registry.
///
/// The by-id hot path hashes the id on every call, and SipHash (std's default)
/// costs more than the reservation itself on short ids. This is the FxHash
/// multiply-rotate construction over 8-byte words, keyed per engine with a
/// random seed drawn from std's `RandomState`, so ids cannot be chosen offline
/// to collide. Tenant ids are configured by the operator, not supplied per
/// request; an engine fed hostile ids should key its tenants itself.
#[derive(Clone)]
struct IdHashBuilder {
    seed: u64,
}

impl Default for IdHashBuilder {
    fn default() -> Self {
        use std::hash::BuildHasher as _;
        Self {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x00ca_1b71_u64),
        }
    }
}

impl std::hash::BuildHasher for IdHashBuilder {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.seed)
    }
}

/// The hasher built by [`IdHashBuilder`].
struct IdHasher(u64);

impl IdHasher {
    /// FxHash's multiplier (from the golden ratio, odd).
    const MULTIPLIER: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::MULTIPLIER);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0_u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        let mut word = [0_u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        // The length in the top byte keeps "a" and "a\0" apart.
        self.add(u64::from_le_bytes(word) ^ ((tail.len() as u64) << 56));
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        // The multiply leaves its entropy in the high bits; the table indexes
        // with the low ones, so rotate them down.
        self.0.rotate_left(26)
    }
}

/// The tenant registry: ids to cells, and slots to cells for reservation ids.
#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Arc<TenantCell>, IdHashBuilder>,
    /// Every cell ever created, by slot; a retired cell keeps its slot so a
    /// stale reservation id can never name a different tenant.
    by_index: Vec<Arc<TenantCell>>,
}

/// A per-tenant budget engine whose books always balance.
///
/// Share it between threads by reference or in an `Arc`; every method takes
/// `&self`. See the [crate documentation](crate) for the model.
pub struct BudgetEngine {
    registry: RwLock<Registry>,
    /// Serialises restores (the only operation that holds more than one tenant still).
    restore_lock: Mutex<()>,
    snapshot_version: AtomicU64,
    /// This engine's identity for the per-thread lookup cache.
    engine_id: u64,
    /// Bumped (under the registry's write lock) whenever the id -> cell map
    /// changes, so per-thread caches of it know when to start over.
    registry_epoch: AtomicU64,
}

impl std::fmt::Debug for BudgetEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetEngine")
            .field("tenant_count", &self.tenant_count())
            .finish_non_exhaustive()
    }
}

impl Default for BudgetEngine {
    fn default() -> Self {
        Self::new()
    }
}

/// A cheap, cloneable handle on one tenant that skips the id lookup.
///
/// Operations through a handle touch only that tenant's cache line, so threads
/// working on different tenants through handles share nothing. A handle whose
/// tenant was removed by [`BudgetEngine::restore`] refuses new work with
/// [`BudgetError::TenantRetired`].
#[derive(Clone)]
pub struct TenantHandle {
    cell: Arc<TenantCell>,
}

impl std::fmt::Debug for TenantHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantHandle")
            .field("tenant_id", &self.cell.tenant_id)
            .finish()
    }
}

impl TenantHandle {
    /// The tenant's id.
    pub fn tenant_id(&self) -> &str {
        &self.cell.tenant_id
    }

    /// Reserves `amount_microcents` of this tenant's budget (lock-free).
    ///
    /// # Errors
    ///
    /// [`BudgetError::NonPositiveAmount`], [`BudgetError::Insufficient`],
    /// [`BudgetError::ReservedCapExceeded`],
    /// [`BudgetError::TooManyActiveReservations`] or
    /// [`BudgetError::TenantRetired`]; the books are unchanged.
    pub fn try_reserve(&self, amount_microcents: i64) -> Result<Reservation, BudgetError> {
        check_positive(amount_microcents)?;
        self.cell.reserve(amount_microcents)?;
        Ok(Reservation::new(Arc::clone(&self.cell), amount_microcents))
    }

    /// Adds `amount_microcents` to the tenant's initial and spendable budget.
    ///
    /// # Errors
    ///
    /// [`BudgetError::NonPositiveAmount`], [`BudgetError::Overflow`] if the
    /// initial total would not fit in an `i64`, or
    /// [`BudgetError::TenantRetired`]; the books are unchanged.
    pub fn top_up(&self, amount_microcents: i64) -> Result<(), BudgetError> {
        check_positive(amount_microcents)?;
        self.cell.top_up(amount_microcents)
    }

    /// Spendable budget now: one relaxed read, stale as soon as it returns.
    pub fn remaining_microcents(&self) -> i64 {
        self.cell.remaining_now()
    }

    /// A consistent copy of this tenant's books.
    pub fn ledger(&self) -> TenantLedger {
        ledger_row(&self.cell.tenant_id, &self.cell.row())
    }
}

impl BudgetEngine {
    /// An engine with no tenants.
    pub fn new() -> Self {
        Self {
            registry: RwLock::new(Registry::default()),
            restore_lock: Mutex::new(()),
            snapshot_version: AtomicU64::new(0),
            engine_id: lookup_cache::next_engine_id(),
            registry_epoch: AtomicU64::new(0),
        }
    }

    /// Creates `tenant_id` with `initial_microcents`, or leaves an existing
    /// tenant untouched (use [`top_up`](Self::top_up) to add funds).
    ///
    /// # Errors
    ///
    /// [`BudgetError::NegativeAmount`], [`BudgetError::InvalidTenantId`] or
    /// [`BudgetError::TooManyTenants`]; nothing is created.
    pub fn ensure_tenant(
        &self,
        tenant_id: &str,
        initial_microcents: i64,
    ) -> Result<TenantCreation, BudgetError> {
        check_tenant_id(tenant_id)?;
        if initial_microcents < 0 {
            return Err(BudgetError::NegativeAmount {
                amount_microcents: initial_microcents,
            });
        }
        let mut registry = self.registry.write();
        if registry.by_id.contains_key(tenant_id) {
            return Ok(TenantCreation::AlreadyExists);
        }
        create_cell(&mut registry, tenant_id, initial_microcents)?;
        self.registry_epoch.fetch_add(1, Ordering::Release);
        Ok(TenantCreation::Created)
    }

    /// A handle on `tenant_id` for repeated work without the id lookup.
    ///
    /// # Errors
    ///
    /// [`BudgetError::UnknownTenant`].
    pub fn tenant(&self, tenant_id: &str) -> Result<TenantHandle, BudgetError> {
        Ok(TenantHandle {
            cell: self.cell(tenant_id)?,
        })
    }

    /// Reserves `amount_microcents` of `tenant_id`'s budget.
    ///
    /// The reservation itself is a compare-and-swap loop on the tenant's
    /// spendable balance; no lock is held while threads contend for it. The
    /// id is looked up under a briefly held read lock; use
    /// [`tenant`](Self::tenant) and [`TenantHandle::try_reserve`] to skip it.
    ///
    /// # Errors
    ///
    /// [`BudgetError::UnknownTenant`] and the errors of
    /// [`TenantHandle::try_reserve`]; the books are unchanged.
    pub fn try_reserve(
        &self,
        tenant_id: &str,
        amount_microcents: i64,
    ) -> Result<Reservation, BudgetError> {
        check_positive(amount_microcents)?;
        let cell = self.cell(tenant_id)?;
        cell.reserve(amount_microcents)?;
        Ok(Reservation::new(cell, amount_microcents))
    }

    /// Adds `amount_microcents` to `tenant_id`'s initial and spendable budget;
    /// its lifetime spend is kept.
    ///
    /// # Errors
    ///
    /// [`BudgetError::UnknownTenant`] and the errors of [`TenantHandle::top_up`].
    pub fn top_up(&self, tenant_id: &str, amount_microcents: i64) -> Result<(), BudgetError> {
        check_positive(amount_microcents)?;
        self.cell(tenant_id)?.top_up(amount_microcents)
    }

    /// Sets (or, with `None` fields, removes) `tenant_id`'s limits.
    ///
    /// # Errors
    ///
    /// [`BudgetError::UnknownTenant`], or [`BudgetError::NonPositiveAmount`]
    /// for a reserved-amount cap of zero or below.
    pub fn set_limits(&self, tenant_id: &str, limits: TenantLimits) -> Result<(), BudgetError> {
        if let Some(cap) = limits.max_reserved_microcents {
            check_positive(cap)?;
        }
        self.cell(tenant_id)?.set_limits(limits);
        Ok(())
    }

    /// The limits in force for `tenant_id`.
    ///
    /// # Errors
    ///
    /// [`BudgetError::UnknownTenant`].
    pub fn limits(&self, tenant_id: &str) -> Result<TenantLimits, BudgetError> {
        Ok(self.cell(tenant_id)?.limits())
    }

    /// Commits a reservation parked with [`Reservation::into_id`]; see
    /// [`Reservation::commit`].
    ///
    /// # Errors
    ///
    /// [`BudgetError::UnknownReservation`] if the id is not open here, and the
    /// errors of [`Reservation::commit`]; on any error the reservation stays
    /// open under the same id.
    pub fn commit_by_id(
        &self,
        id: ReservationId,
        actual_microcents: i64,
    ) -> Result<Settlement, BudgetError> {
        self.settle_by_id(id, actual_microcents, false)
    }

    /// Commits a parked reservation, debiting any excess over the hold; see
    /// [`Reservation::commit_with_overrun`].
    ///
    /// # Errors
    ///
    /// As [`commit_by_id`](Self::commit_by_id), with
    /// [`BudgetError::Insufficient`] when the excess is not covered.
    pub fn commit_with_overrun_by_id(
        &self,
        id: ReservationId,
        actual_microcents: i64,
    ) -> Result<Settlement, BudgetError> {
        self.settle_by_id(id, actual_microcents, true)
    }

    /// Releases a parked reservation, returning its whole hold.
    ///
    /// # Errors
    ///
    /// [`BudgetError::UnknownReservation`].
    pub fn release_by_id(&self, id: ReservationId) -> Result<Settlement, BudgetError> {
        self.settle_by_id(id, 0, false)
    }

    fn settle_by_id(
        &self,
        id: ReservationId,
        actual_microcents: i64,
        allow_overrun: bool,
    ) -> Result<Settlement, BudgetError> {
        if actual_microcents < 0 {
            return Err(BudgetError::NegativeAmount {
                amount_microcents: actual_microcents,
            });
        }
        let cell = self.cell_by_index(id)?;
        let held_microcents = cell
            .unregister(id.sequence())
            .ok_or(BudgetError::UnknownReservation { id })?;
        if actual_microcents > held_microcents && !allow_overrun {
            cell.reregister(id.sequence(), held_microcents);
            return Err(BudgetError::ActualExceedsReservation {
                reserved_microcents: held_microcents,
                actual_microcents,
            });
        }
        match cell.settle(held_microcents, actual_microcents) {
            Ok(()) => Ok(settlement(held_microcents, actual_microcents)),
            Err(error) => {
                cell.reregister(id.sequence(), held_microcents);
                Err(error)
            }
        }
    }

    /// Spendable budget of `tenant_id` now (one relaxed read).
    ///
    /// # Errors
    ///
    /// [`BudgetError::UnknownTenant`].
    pub fn remaining_microcents(&self, tenant_id: &str) -> Result<i64, BudgetError> {
        Ok(self.cell(tenant_id)?.remaining_now())
    }

    /// A consistent copy of `tenant_id`'s books.
    ///
    /// # Errors
    ///
    /// [`BudgetError::UnknownTenant`].
    pub fn ledger(&self, tenant_id: &str) -> Result<TenantLedger, BudgetError> {
        let cell = self.cell(tenant_id)?;
        Ok(ledger_row(&cell.tenant_id, &cell.row()))
    }

    /// How many tenants the engine holds.
    pub fn tenant_count(&self) -> usize {
        self.registry.read().by_id.len()
    }

    /// A frozen view of every tenant, sorted by id bytes, and the count of
    /// open reservations.
    ///
    /// Each tenant's row is an atomic cut of that tenant's books: the tenant
    /// is held still only while its four balances are copied, after the
    /// operations already in flight on it finish, and tenants are taken one
    /// after another, so no thread waits for more than one row copy. Rows of
    /// different tenants may be cut at slightly different instants; since no
    /// operation spans two tenants, the snapshot is still a state the books
    /// passed through, tenant by tenant, and every row balances.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let mut cells: Vec<Arc<TenantCell>> =
            self.registry.read().by_id.values().cloned().collect();
        cells.sort_unstable_by(|a, b| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()));
        let mut active_reservations = 0_u64;
        let tenants = cells
            .iter()
            .map(|cell| {
                let row = cell.row();
                // At most 2^24 tenants of at most 2^30 reservations each: no overflow.
                active_reservations = active_reservations.saturating_add(row.active_reservations);
                ledger_row(&cell.tenant_id, &row)
            })
            .collect();
        let version = self.next_snapshot_version();
        BudgetSnapshot {
            version,
            tenants,
            active_reservations,
        }
    }

    /// Takes a snapshot and checks that every row balances.
    ///
    /// # Errors
    ///
    /// The first tenant whose books do not balance (which would be a bug in
    /// this crate).
    pub fn verify_conservation(&self) -> Result<(), ConservationViolation> {
        self.snapshot().verify_conservation()
    }

    /// Replaces the books with `snapshot`, for recovery.
    ///
    /// Tenants in the snapshot take its balances (existing [`TenantHandle`]s
    /// on them stay valid); tenants absent from it are removed and their
    /// handles retired. Limits are kept for surviving tenants. The snapshot
    /// counter is raised to at least `snapshot.version`, so versions never go
    /// backwards. All of this happens while every tenant is held still, so no
    /// operation observes a half-restored engine.
    ///
    /// # Errors
    ///
    /// Refused, with the engine untouched, while any reservation is open
    /// ([`RestoreError::ActiveReservations`]), or if the snapshot records open
    /// reservations, repeats a tenant, holds a negative balance or an invalid
    /// id, or does not balance.
    pub fn restore(&self, snapshot: &BudgetSnapshot) -> Result<(), RestoreError> {
        validate_for_restore(snapshot)?;
        let _restoring = self.restore_lock.lock();
        let mut registry = self.registry.write();
        let mut live: Vec<Arc<TenantCell>> = registry.by_id.values().cloned().collect();
        // Freezing in id order keeps the order deterministic for the models.
        live.sort_unstable_by(|a, b| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()));
        let mut active = 0_u64;
        for cell in &live {
            let word = cell.freeze();
            active = active.saturating_add(cell.read_frozen(word).active_reservations);
        }
        let fresh = if active == 0 {
            fresh_cells(&registry, snapshot)
        } else {
            Err(RestoreError::ActiveReservations { count: active })
        };
        let fresh = match fresh {
            Ok(fresh) => fresh,
            Err(refusal) => {
                for cell in &live {
                    cell.thaw(false);
                }
                return Err(refusal);
            }
        };
        // From here on nothing can fail: the engine moves to the snapshot whole.
        let mut kept: HashMap<String, Arc<TenantCell>, IdHashBuilder> = HashMap::default();
        for row in &snapshot.tenants {
            if let Some(cell) = registry.by_id.remove(&row.tenant_id) {
                cell.write_frozen(&frozen_row(row));
                kept.insert(row.tenant_id.clone(), cell);
            }
        }
        for cell in fresh {
            registry.by_index.push(Arc::clone(&cell));
            kept.insert(cell.tenant_id.clone(), cell);
        }
        for cell in &live {
            let retire = registry.by_id.contains_key(&cell.tenant_id);
            cell.thaw(retire);
        }
        registry.by_id = kept;
        self.registry_epoch.fetch_add(1, Ordering::Release);
        self.snapshot_version
            .fetch_max(snapshot.version, Ordering::Relaxed);
        Ok(())
    }

    /// The next snapshot version: strictly increasing, saturating at `u64::MAX`
    /// (never wrapping; 2^64 snapshots are out of reach).
    fn next_snapshot_version(&self) -> u64 {
        let previous = self
            .snapshot_version
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(1))
            })
            .unwrap_or(u64::MAX);
        previous.saturating_add(1)
    }

    /// The cell of `tenant_id`, from this thread's lookup cache when it is
    /// current, else from the registry under its read lock.
    fn cell(&self, tenant_id: &str) -> Result<Arc<TenantCell>, BudgetError> {
        // Read the epoch before the registry: a cell looked up below is then
        // at least as new as the epoch it is cached under, and any later
        // change bumps the epoch past it.
        let epoch = self.registry_epoch.load(Ordering::Acquire);
        if let Some(cell) = lookup_cache::get(self.engine_id, epoch, tenant_id) {
            return Ok(cell);
        }
        let cell = self
            .registry
            .read()
            .by_id
            .get(tenant_id)
            .cloned()
            .ok_or_else(|| BudgetError::UnknownTenant {
                tenant_id: tenant_id.to_owned(),
            })?;
        lookup_cache::put(self.engine_id, epoch, tenant_id, &cell);
        Ok(cell)
    }

    fn cell_by_index(&self, id: ReservationId) -> Result<Arc<TenantCell>, BudgetError> {
        let registry = self.registry.read();
        usize::try_from(id.tenant_index())
            .ok()
            .and_then(|index| registry.by_index.get(index))
            .cloned()
            .ok_or(BudgetError::UnknownReservation { id })
    }
}

fn check_positive(amount_microcents: i64) -> Result<(), BudgetError> {
    if amount_microcents <= 0 {
        return Err(BudgetError::NonPositiveAmount { amount_microcents });
    }
    Ok(())
}

fn check_tenant_id(tenant_id: &str) -> Result<(), BudgetError> {
    if tenant_id.is_empty() || tenant_id.len() > MAX_TENANT_ID_BYTES {
        return Err(BudgetError::InvalidTenantId {
            len_bytes: tenant_id.len(),
            max_bytes: MAX_TENANT_ID_BYTES,
        });
    }
    Ok(())
}

fn create_cell(
    registry: &mut Registry,
    tenant_id: &str,
    initial_microcents: i64,
) -> Result<(), BudgetError> {
    let index = u32::try_from(registry.by_index.len())
        .ok()
        .filter(|index| *index < MAX_TENANTS)
        .ok_or(BudgetError::TooManyTenants {
            max_tenants: MAX_TENANTS,
        })?;
    let cell = Arc::new(TenantCell::new(
        tenant_id.to_owned(),
        index,
        initial_microcents,
    ));
    registry.by_index.push(Arc::clone(&cell));
    registry.by_id.insert(tenant_id.to_owned(), cell);
    Ok(())
}

/// New cells, with their balances, for the snapshot's rows the engine lacks.
///
/// They get the next free slots but are not registered yet, so a refusal
/// leaves no trace.
fn fresh_cells(
    registry: &Registry,
    snapshot: &BudgetSnapshot,
) -> Result<Vec<Arc<TenantCell>>, RestoreError> {
    let mut fresh = Vec::new();
    for row in &snapshot.tenants {
        if registry.by_id.contains_key(&row.tenant_id) {
            continue;
        }
        let index = u32::try_from(registry.by_index.len() + fresh.len())
            .ok()
            .filter(|index| *index < MAX_TENANTS)
            .ok_or(RestoreError::TooManyTenants {
                max_tenants: MAX_TENANTS,
            })?;
        let cell = Arc::new(TenantCell::new(row.tenant_id.clone(), index, 0));
        // The cell is not shared yet; freezing keeps `write_frozen`'s contract anyway.
        let word = cell.freeze();
        debug_assert_eq!(cell.read_frozen(word).active_reservations, 0);
        cell.write_frozen(&frozen_row(row));
        cell.thaw(false);
        fresh.push(cell);
    }
    Ok(fresh)
}

fn frozen_row(row: &TenantLedger) -> Row {
    Row {
        initial_microcents: row.initial_microcents,
        remaining_microcents: row.remaining_microcents,
        reserved_microcents: row.reserved_microcents,
        committed_microcents: row.committed_microcents,
        active_reservations: 0,
    }
}

fn ledger_row(tenant_id: &str, row: &Row) -> TenantLedger {
    TenantLedger {
        tenant_id: tenant_id.to_owned(),
        initial_microcents: row.initial_microcents,
        remaining_microcents: row.remaining_microcents,
        reserved_microcents: row.reserved_microcents,
        committed_microcents: row.committed_microcents,
    }
}

/// Everything about a snapshot that can be checked without the engine.
fn validate_for_restore(snapshot: &BudgetSnapshot) -> Result<(), RestoreError> {
    if snapshot.active_reservations != 0 {
        return Err(RestoreError::SnapshotHasOpenReservations {
            active_reservations: snapshot.active_reservations,
        });
    }
    if snapshot.tenants.len() > MAX_TENANTS as usize {
        return Err(RestoreError::TooManyTenants {
            max_tenants: MAX_TENANTS,
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(snapshot.tenants.len());
    for row in &snapshot.tenants {
        if check_tenant_id(&row.tenant_id).is_err() {
            return Err(RestoreError::InvalidTenantId {
                len_bytes: row.tenant_id.len(),
            });
        }
        if !seen.insert(row.tenant_id.as_str()) {
            return Err(RestoreError::DuplicateTenant {
                tenant_id: row.tenant_id.clone(),
            });
        }
        let fields = [
            ("initial", row.initial_microcents),
            ("remaining", row.remaining_microcents),
            ("reserved", row.reserved_microcents),
            ("committed", row.committed_microcents),
        ];
        for (field, value_microcents) in fields {
            if value_microcents < 0 {
                return Err(RestoreError::NegativeBalance {
                    tenant_id: row.tenant_id.clone(),
                    field,
                    value_microcents,
                });
            }
        }
        if row.reserved_microcents != 0 {
            return Err(RestoreError::SnapshotHasOpenReservations {
                active_reservations: 0,
            });
        }
    }
    snapshot.verify_conservation()?;
    Ok(())
}

/// A per-thread memo of id -> cell lookups, so the by-id hot path takes no
/// lock and writes no shared cache line.
///
/// Each thread remembers the cells of one engine at one registry epoch. Any
/// change to the registry (a tenant created, a restore) bumps the epoch and
/// the next lookup starts over from the registry. A cached cell is never
/// wrong: tenants keep their cell for life, and a cell removed by a restore is
/// retired, so work on it is refused with [`BudgetError::TenantRetired`]. The
/// memo holds at most [`lookup_cache::MAX_CACHED_TENANTS`] cells, and keeps
/// them alive until the thread looks up another engine or exits.
///
/// Under Loom the memo is off (the models check the registry path): Loom
/// checks for leaked `Arc`s when a model ends, before thread-locals are freed.
mod lookup_cache {
    use super::{Arc, TenantCell};
    #[cfg(not(loom))]
    use {super::IdHashBuilder, std::collections::HashMap};

    /// The most cells one thread remembers; past it the memo starts over.
    #[cfg(not(loom))]
    pub(crate) const MAX_CACHED_TENANTS: usize = 64;

    /// Hands out engine identities; 0 means "no engine" in a fresh memo.
    static NEXT_ENGINE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

    pub(crate) fn next_engine_id() -> u64 {
        // 2^64 engines cannot be created in a process's life, so this never wraps.
        NEXT_ENGINE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(not(loom))]
    #[derive(Default)]
    struct Memo {
        engine_id: u64,
        epoch: u64,
        cells: HashMap<String, Arc<TenantCell>, IdHashBuilder>,
    }

    #[cfg(not(loom))]
    thread_local! {
        static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::default());
    }

    #[cfg(not(loom))]
    pub(crate) fn get(engine_id: u64, epoch: u64, tenant_id: &str) -> Option<Arc<TenantCell>> {
        MEMO.try_with(|memo| {
            let memo = memo.try_borrow().ok()?;
            if memo.engine_id != engine_id || memo.epoch != epoch {
                return None;
            }
            memo.cells.get(tenant_id).cloned()
        })
        .ok()
        .flatten()
    }

    #[cfg(not(loom))]
    pub(crate) fn put(engine_id: u64, epoch: u64, tenant_id: &str, cell: &Arc<TenantCell>) {
        // A thread being torn down has no memo; the lookup simply is not kept.
        let _ = MEMO.try_with(|memo| {
            let Ok(mut memo) = memo.try_borrow_mut() else {
                return;
            };
            if memo.engine_id != engine_id
                || memo.epoch != epoch
                || memo.cells.len() >= MAX_CACHED_TENANTS
            {
                memo.cells.clear();
                memo.engine_id = engine_id;
                memo.epoch = epoch;
            }
            memo.cells.insert(tenant_id.to_owned(), Arc::clone(cell));
        });
    }

    #[cfg(loom)]
    pub(crate) fn get(_engine_id: u64, _epoch: u64, _tenant_id: &str) -> Option<Arc<TenantCell>> {
        None
    }

    #[cfg(loom)]
    pub(crate) fn put(_engine_id: u64, _epoch: u64, _tenant_id: &str, _cell: &Arc<TenantCell>) {}
}
