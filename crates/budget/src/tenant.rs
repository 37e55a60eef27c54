//! One tenant's books and the gate that lets a snapshot read them consistently.
//!
//! # The gate
//!
//! Each tenant has one 64-bit gate word beside its four balances, all in one
//! cache line of their own:
//!
//! | bits   | meaning                                                     |
//! |--------|-------------------------------------------------------------|
//! | 0..32  | operations in flight on this tenant                         |
//! | 32..62 | open reservations (linear handles and registered ids)       |
//! | 62     | frozen: a snapshot or restore is reading or writing the row |
//! | 63     | retired: a restore removed the tenant                       |
//!
//! A mutation enters by a CAS that adds one in-flight operation (refused only
//! while the frozen bit is set), updates the balances with single atomic steps,
//! and leaves by subtracting its in-flight count with release ordering. Mutators
//! never exclude each other: the reservation itself is a CAS loop on
//! `remaining`. A snapshot sets the frozen bit, waits for the in-flight count to
//! drain to zero, copies the row, and clears the bit, so it sees the books only
//! between whole operations, where they balance.
//!
//! Every operation decreases one balance before it increases another, so at any
//! instant `remaining + reserved + committed <= initial`, each balance is at most
//! `initial`, and only the checked additions to `initial` (top-up) and to
//! `reserved` under a cap can overflow.

use crate::error::BudgetError;
use crate::sync::{AtomicI64, AtomicU64, Mutex, Ordering, reload, wait_a_little};
use std::collections::HashMap;

/// One operation in flight.
const IN_FLIGHT_ONE: u64 = 1;
/// Mask of the in-flight count.
const IN_FLIGHT_MASK: u64 = 0xFFFF_FFFF;
/// Position of the open-reservation count.
const ACTIVE_SHIFT: u32 = 32;
/// One open reservation.
const ACTIVE_ONE: u64 = 1 << ACTIVE_SHIFT;
/// Mask of the open-reservation count.
const ACTIVE_MASK: u64 = ((1 << 30) - 1) << ACTIVE_SHIFT;
/// Set while a snapshot or restore holds the row still.
const FROZEN: u64 = 1 << 62;
/// Set once a restore removed the tenant.
const RETIRED: u64 = 1 << 63;

/// The most reservations one tenant can have open at once (the gate's field width).
pub const MAX_ACTIVE_RESERVATIONS_PER_TENANT: u64 = ACTIVE_MASK >> ACTIVE_SHIFT;

/// Value of `max_reserved_microcents` meaning "no cap".
const NO_RESERVED_CAP: i64 = i64::MAX;

/// What an operation entering the gate is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Open a reservation.
    Open,
    /// Settle (commit or release) an open reservation.
    Settle,
    /// Change the balances without touching reservations (top-up).
    Adjust,
}

/// The balances of one tenant at one instant between operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) initial_microcents: i64,
    pub(crate) remaining_microcents: i64,
    pub(crate) reserved_microcents: i64,
    pub(crate) committed_microcents: i64,
    pub(crate) active_reservations: u64,
}

/// The hot part of a tenant: gate, balances and limits in one cache line.
///
/// The 128-byte alignment keeps two tenants off the same line and also off the
/// adjacent line that x86 prefetchers pull in pairs, so threads working on
/// different tenants never contend on a line.
#[repr(align(128))]
struct Hot {
    gate: AtomicU64,
    remaining_microcents: AtomicI64,
    reserved_microcents: AtomicI64,
    committed_microcents: AtomicI64,
    initial_microcents: AtomicI64,
    max_reserved_microcents: AtomicI64,
    max_active_reservations: AtomicU64,
}

/// One tenant: the hot line plus the cold registry of id-form reservations.
pub(crate) struct TenantCell {
    hot: Hot,
    /// The tenant's id, fixed for the cell's life.
    pub(crate) tenant_id: String,
    /// The tenant's slot in the engine, part of every reservation id.
    pub(crate) index: u32,
    /// Next sequence number for an id-form reservation.
    next_sequence: AtomicU64,
    /// Open id-form reservations: sequence -> amount held.
    pending: Mutex<HashMap<u64, i64>>,
}

impl std::fmt::Debug for TenantCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCell")
            .field("tenant_id", &self.tenant_id)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl TenantCell {
    /// A fresh tenant whose whole budget is spendable.
    pub(crate) fn new(tenant_id: String, index: u32, initial_microcents: i64) -> Self {
        debug_assert!(initial_microcents >= 0);
        Self {
            hot: Hot {
                gate: AtomicU64::new(0),
                remaining_microcents: AtomicI64::new(initial_microcents),
                reserved_microcents: AtomicI64::new(0),
                committed_microcents: AtomicI64::new(0),
                initial_microcents: AtomicI64::new(initial_microcents),
                max_reserved_microcents: AtomicI64::new(NO_RESERVED_CAP),
                max_active_reservations: AtomicU64::new(MAX_ACTIVE_RESERVATIONS_PER_TENANT),
            },
            tenant_id,
            index,
            next_sequence: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Enters the gate as one more operation in flight.
    fn enter(&self, entry: Entry) -> Result<(), BudgetError> {
        let open_reservation = entry == Entry::Open;
        let gate = &self.hot.gate;
        let mut current = gate.load(Ordering::Relaxed);
        let mut attempt = 0_u32;
        loop {
            // A retired tenant still lets its last holders settle (a restore
            // retires only tenants without open reservations, so none remain).
            if current & RETIRED != 0 && entry != Entry::Settle {
                return Err(BudgetError::TenantRetired);
            }
            if current & FROZEN != 0 || current & IN_FLIGHT_MASK == IN_FLIGHT_MASK {
                // A snapshot holds the row (or, absurdly, four billion operations
                // are in flight); it lets go after copying four numbers.
                wait_a_little(attempt);
                attempt = attempt.saturating_add(1);
                current = reload(gate, Ordering::Relaxed);
                continue;
            }
            let mut next = current + IN_FLIGHT_ONE;
            if open_reservation {
                let active = (current & ACTIVE_MASK) >> ACTIVE_SHIFT;
                let limit = self.hot.max_active_reservations.load(Ordering::Relaxed);
                if active >= limit {
                    return Err(BudgetError::TooManyActiveReservations {
                        max_active_reservations: limit,
                    });
                }
                next += ACTIVE_ONE;
            }
            match gate.compare_exchange_weak(current, next, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    /// Leaves the gate, closing one reservation when `close_reservation` is set.
    fn leave(&self, close_reservation: bool) {
        let delta = if close_reservation {
            IN_FLIGHT_ONE + ACTIVE_ONE
        } else {
            IN_FLIGHT_ONE
        };
        let before = self.hot.gate.fetch_sub(delta, Ordering::Release);
        debug_assert!(before & IN_FLIGHT_MASK >= 1);
        debug_assert!(!close_reservation || before & ACTIVE_MASK >= ACTIVE_ONE);
    }

    /// Opens a reservation of `amount_microcents` (already checked positive).
    pub(crate) fn reserve(&self, amount_microcents: i64) -> Result<(), BudgetError> {
        debug_assert!(amount_microcents > 0);
        self.enter(Entry::Open)?;
        let capped = self.hot.max_reserved_microcents.load(Ordering::Relaxed);
        if capped != NO_RESERVED_CAP
            && let Err(error) = self.add_reserved_under_cap(amount_microcents, capped)
        {
            self.leave(true);
            return Err(error);
        }
        if let Err(error) = self.debit_remaining(amount_microcents) {
            if capped != NO_RESERVED_CAP {
                self.hot
                    .reserved_microcents
                    .fetch_sub(amount_microcents, Ordering::Relaxed);
            }
            self.leave(true);
            return Err(error);
        }
        if capped == NO_RESERVED_CAP {
            // Cannot overflow: reserved + remaining <= initial before the debit.
            self.hot
                .reserved_microcents
                .fetch_add(amount_microcents, Ordering::Relaxed);
        }
        self.leave(false);
        Ok(())
    }

    /// Adds to `reserved` only if the result stays within `cap_microcents`.
    fn add_reserved_under_cap(
        &self,
        amount_microcents: i64,
        cap_microcents: i64,
    ) -> Result<(), BudgetError> {
        let reserved = &self.hot.reserved_microcents;
        let mut current = reserved.load(Ordering::Relaxed);
        loop {
            let next = match current.checked_add(amount_microcents) {
                Some(next) if next <= cap_microcents => next,
                _ => {
                    return Err(BudgetError::ReservedCapExceeded {
                        reserved_microcents: current,
                        requested_microcents: amount_microcents,
                        cap_microcents,
                    });
                }
            };
            match reserved.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    /// The lock-free heart: takes `amount_microcents` from `remaining` if it is there.
    fn debit_remaining(&self, amount_microcents: i64) -> Result<(), BudgetError> {
        crate::cas::take_if_covered(&self.hot.remaining_microcents, amount_microcents).map_err(
            |remaining_microcents| BudgetError::Insufficient {
                remaining_microcents,
                requested_microcents: amount_microcents,
            },
        )
    }

    /// Settles an open reservation of `held_microcents`: `actual_microcents` is
    /// spent and the rest refunded. `actual_microcents` may exceed the hold only
    /// on the overrun path, where the excess must come out of `remaining`.
    pub(crate) fn settle(
        &self,
        held_microcents: i64,
        actual_microcents: i64,
    ) -> Result<(), BudgetError> {
        debug_assert!(held_microcents > 0 && actual_microcents >= 0);
        self.enter(Entry::Settle)?;
        if actual_microcents > held_microcents
            && let Err(error) = self.debit_remaining(actual_microcents - held_microcents)
        {
            self.leave(false);
            return Err(error);
        }
        self.hot
            .reserved_microcents
            .fetch_sub(held_microcents, Ordering::Relaxed);
        if actual_microcents > 0 {
            // Cannot overflow: committed + actual <= initial.
            self.hot
                .committed_microcents
                .fetch_add(actual_microcents, Ordering::Relaxed);
        }
        if held_microcents > actual_microcents {
            self.hot
                .remaining_microcents
                .fetch_add(held_microcents - actual_microcents, Ordering::Relaxed);
        }
        self.leave(true);
        Ok(())
    }

    /// Adds `amount_microcents` (already checked positive) to `initial` and `remaining`.
    pub(crate) fn top_up(&self, amount_microcents: i64) -> Result<(), BudgetError> {
        debug_assert!(amount_microcents > 0);
        self.enter(Entry::Adjust)?;
        if crate::cas::add_unless_overflow(&self.hot.initial_microcents, amount_microcents).is_err()
        {
            self.leave(false);
            return Err(BudgetError::Overflow { total: "initial" });
        }
        // Cannot overflow: remaining <= old initial, and old initial + amount fit.
        self.hot
            .remaining_microcents
            .fetch_add(amount_microcents, Ordering::Relaxed);
        self.leave(false);
        Ok(())
    }

    /// Sets the caps; `None` removes a cap. Caps apply to later reservations only.
    pub(crate) fn set_limits(&self, limits: crate::TenantLimits) {
        let reserved_cap = limits.max_reserved_microcents.unwrap_or(NO_RESERVED_CAP);
        let active_cap = limits
            .max_active_reservations
            .map_or(MAX_ACTIVE_RESERVATIONS_PER_TENANT, |cap| {
                cap.min(MAX_ACTIVE_RESERVATIONS_PER_TENANT)
            });
        self.hot
            .max_reserved_microcents
            .store(reserved_cap, Ordering::Relaxed);
        self.hot
            .max_active_reservations
            .store(active_cap, Ordering::Relaxed);
    }

    /// The caps now in force.
    pub(crate) fn limits(&self) -> crate::TenantLimits {
        let reserved_cap = self.hot.max_reserved_microcents.load(Ordering::Relaxed);
        let active_cap = self.hot.max_active_reservations.load(Ordering::Relaxed);
        crate::TenantLimits {
            max_reserved_microcents: (reserved_cap != NO_RESERVED_CAP).then_some(reserved_cap),
            max_active_reservations: (active_cap != MAX_ACTIVE_RESERVATIONS_PER_TENANT)
                .then_some(active_cap),
        }
    }

    /// Spendable budget now (a single relaxed read; may be stale at once).
    pub(crate) fn remaining_now(&self) -> i64 {
        self.hot.remaining_microcents.load(Ordering::Relaxed)
    }

    /// Sets the frozen bit and waits for operations in flight to finish.
    ///
    /// Returns the gate word seen once the row is still.
    pub(crate) fn freeze(&self) -> u64 {
        crate::cas::freeze_gate(&self.hot.gate, FROZEN, IN_FLIGHT_MASK)
    }

    /// Clears the frozen bit, optionally retiring the tenant at the same time.
    pub(crate) fn thaw(&self, retire: bool) {
        if retire {
            self.hot.gate.fetch_or(RETIRED, Ordering::Release);
        }
        let before = self.hot.gate.fetch_and(!FROZEN, Ordering::Release);
        debug_assert!(before & FROZEN != 0);
    }

    /// Reads the row; only meaningful between `freeze` and `thaw`.
    pub(crate) fn read_frozen(&self, gate_word: u64) -> Row {
        Row {
            initial_microcents: self.hot.initial_microcents.load(Ordering::Relaxed),
            remaining_microcents: self.hot.remaining_microcents.load(Ordering::Relaxed),
            reserved_microcents: self.hot.reserved_microcents.load(Ordering::Relaxed),
            committed_microcents: self.hot.committed_microcents.load(Ordering::Relaxed),
            active_reservations: (gate_word & ACTIVE_MASK) >> ACTIVE_SHIFT,
        }
    }

    /// Overwrites the balances; only between `freeze` and `thaw`, with no open
    /// reservations.
    pub(crate) fn write_frozen(&self, row: &Row) {
        debug_assert_eq!(row.active_reservations, 0);
        self.hot
            .initial_microcents
            .store(row.initial_microcents, Ordering::Relaxed);
        self.hot
            .remaining_microcents
            .store(row.remaining_microcents, Ordering::Relaxed);
        self.hot
            .reserved_microcents
            .store(row.reserved_microcents, Ordering::Relaxed);
        self.hot
            .committed_microcents
            .store(row.committed_microcents, Ordering::Relaxed);
    }

    /// A consistent copy of the row, holding the tenant still only while copying.
    pub(crate) fn row(&self) -> Row {
        let word = self.freeze();
        let row = self.read_frozen(word);
        self.thaw(false);
        row
    }

    /// Files an open reservation under a fresh sequence number.
    pub(crate) fn register(&self, held_microcents: i64) -> Result<u64, BudgetError> {
        let sequence = self
            .next_sequence
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| s.checked_add(1))
            .map_err(|_| BudgetError::ReservationIdsExhausted)?;
        let previous = self.pending.lock().insert(sequence, held_microcents);
        debug_assert!(previous.is_none());
        Ok(sequence)
    }

    /// Takes a registered reservation out of the registry.
    pub(crate) fn unregister(&self, sequence: u64) -> Option<i64> {
        self.pending.lock().remove(&sequence)
    }

    /// Puts a reservation back after a refused settlement by id.
    pub(crate) fn reregister(&self, sequence: u64, held_microcents: i64) {
        let previous = self.pending.lock().insert(sequence, held_microcents);
        debug_assert!(previous.is_none());
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Hot, TenantCell};

    /// Each tenant's gate and balances fill one 128-byte block of their own, so
    /// two tenants never share (or prefetch-pair) a written cache line.
    #[test]
    fn hot_state_sits_alone_in_a_128_byte_block() {
        assert_eq!(std::mem::align_of::<Hot>(), 128);
        assert_eq!(std::mem::size_of::<Hot>(), 128);
        assert_eq!(std::mem::align_of::<TenantCell>(), 128);
    }

    /// Two cells allocated back to back do not overlap one 128-byte block.
    #[test]
    fn adjacent_tenants_never_share_a_block() {
        let cells: Vec<std::sync::Arc<TenantCell>> = (0..8)
            .map(|i| std::sync::Arc::new(TenantCell::new(format!("t{i}"), i, 1)))
            .collect();
        let blocks: std::collections::HashSet<usize> = cells
            .iter()
            .map(|cell| std::ptr::from_ref(&cell.hot).addr() / 128)
            .collect();
        assert_eq!(blocks.len(), cells.len());
        for cell in &cells {
            assert_eq!(std::ptr::from_ref(&cell.hot).addr() % 128, 0);
        }
    }
}
