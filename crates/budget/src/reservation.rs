//! The linear reservation handle and its id form.

use crate::error::{BudgetError, Refused};
use crate::sync::Arc;
use crate::tenant::TenantCell;

/// Bits of a [`ReservationId`] that carry the per-tenant sequence number.
const SEQUENCE_BITS: u32 = 40;
/// Mask of the sequence part of a [`ReservationId`].
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;

/// An open hold on part of one tenant's budget.
///
/// A `Reservation` is linear: it is settled exactly once, by
/// [`commit`](Self::commit), [`commit_with_overrun`](Self::commit_with_overrun),
/// [`release`](Self::release), or by being dropped, which releases it, so a
/// forgotten reservation cannot leak budget. To hand a reservation across a
/// boundary that cannot carry a Rust value (a queue, another service), turn it
/// into a [`ReservationId`] with [`into_id`](Self::into_id) and settle it later
/// with [`BudgetEngine::commit_by_id`](crate::BudgetEngine::commit_by_id) or
/// [`BudgetEngine::release_by_id`](crate::BudgetEngine::release_by_id).
#[must_use = "dropping a reservation releases it at once"]
pub struct Reservation {
    /// `None` once settled, so `Drop` knows there is nothing left to release.
    cell: Option<Arc<TenantCell>>,
    held_microcents: i64,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("tenant_id", &self.tenant_id())
            .field("held_microcents", &self.held_microcents)
            .finish()
    }
}

/// What a settlement did to the tenant's books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Settlement {
    /// Amount added to the tenant's lifetime spend.
    pub committed_microcents: i64,
    /// Amount returned to the tenant's spendable budget.
    pub refunded_microcents: i64,
    /// Amount taken from spendable budget beyond the hold (overrun path only).
    pub overrun_microcents: i64,
}

impl Reservation {
    pub(crate) fn new(cell: Arc<TenantCell>, held_microcents: i64) -> Self {
        debug_assert!(held_microcents > 0);
        Self {
            cell: Some(cell),
            held_microcents,
        }
    }

    /// The amount this reservation holds.
    pub fn held_microcents(&self) -> i64 {
        self.held_microcents
    }

    /// The tenant this reservation draws on.
    pub fn tenant_id(&self) -> &str {
        self.cell
            .as_ref()
            .map_or("", |cell| cell.tenant_id.as_str())
    }

    /// Spends `actual_microcents` (at most the amount held) and refunds the rest.
    ///
    /// # Errors
    ///
    /// Hands the reservation back, still open, if `actual_microcents` is
    /// negative ([`BudgetError::NegativeAmount`]) or above the hold
    /// ([`BudgetError::ActualExceedsReservation`]; see
    /// [`commit_with_overrun`](Self::commit_with_overrun) for that case).
    pub fn commit(self, actual_microcents: i64) -> Result<Settlement, Box<Refused>> {
        if actual_microcents > self.held_microcents {
            let error = BudgetError::ActualExceedsReservation {
                reserved_microcents: self.held_microcents,
                actual_microcents,
            };
            return Err(self.refuse(error));
        }
        self.commit_with_overrun(actual_microcents)
    }

    /// Spends `actual_microcents`, even above the hold: the excess is debited
    /// from the tenant's spendable budget, atomically with the commit.
    ///
    /// This is the one explicit overrun path: the overrun is never silent (it is
    /// reported in [`Settlement::overrun_microcents`]) and never drives the
    /// spendable budget below zero.
    ///
    /// # Errors
    ///
    /// Hands the reservation back, still open and still holding its amount, if
    /// `actual_microcents` is negative or the tenant cannot cover the excess
    /// ([`BudgetError::Insufficient`]).
    pub fn commit_with_overrun(
        mut self,
        actual_microcents: i64,
    ) -> Result<Settlement, Box<Refused>> {
        if actual_microcents < 0 {
            let error = BudgetError::NegativeAmount {
                amount_microcents: actual_microcents,
            };
            return Err(self.refuse(error));
        }
        let Some(cell) = self.cell.take() else {
            return Err(self.refuse(BudgetError::TenantRetired));
        };
        match cell.settle(self.held_microcents, actual_microcents) {
            Ok(()) => Ok(settlement(self.held_microcents, actual_microcents)),
            Err(error) => {
                self.cell = Some(cell);
                Err(self.refuse(error))
            }
        }
    }

    /// Returns the whole hold to the tenant's spendable budget.
    pub fn release(mut self) -> Settlement {
        self.release_now();
        settlement(self.held_microcents, 0)
    }

    /// Turns the reservation into an id to settle later through the engine.
    ///
    /// The hold stays open (and counts as an active reservation, blocking
    /// [`restore`](crate::BudgetEngine::restore)) until the id is committed or
    /// released. Ids are only meaningful to the engine that issued the
    /// reservation.
    ///
    /// # Errors
    ///
    /// Hands the reservation back if the tenant's id sequence is exhausted
    /// ([`BudgetError::ReservationIdsExhausted`], after 2^40 ids).
    pub fn into_id(mut self) -> Result<ReservationId, Box<Refused>> {
        let Some(cell) = self.cell.take() else {
            return Err(self.refuse(BudgetError::TenantRetired));
        };
        match cell.register(self.held_microcents) {
            Ok(sequence) if sequence <= SEQUENCE_MASK => {
                Ok(ReservationId::from_parts(cell.index, sequence))
            }
            Ok(sequence) => {
                // Keep the registry exact: the overlong sequence is never issued.
                let _ = cell.unregister(sequence);
                self.cell = Some(cell);
                Err(self.refuse(BudgetError::ReservationIdsExhausted))
            }
            Err(error) => {
                self.cell = Some(cell);
                Err(self.refuse(error))
            }
        }
    }

    fn refuse(self, error: BudgetError) -> Box<Refused> {
        Box::new(Refused {
            error,
            reservation: self,
        })
    }

    fn release_now(&mut self) {
        if let Some(cell) = self.cell.take() {
            // Releasing refunds the whole hold and debits nothing, so it cannot
            // be refused; the error arm is unreachable by construction.
            let released = cell.settle(self.held_microcents, 0);
            debug_assert!(released.is_ok());
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release_now();
    }
}

/// What settling `held` with `actual` does, as reported to the caller.
pub(crate) fn settlement(held_microcents: i64, actual_microcents: i64) -> Settlement {
    Settlement {
        committed_microcents: actual_microcents,
        refunded_microcents: (held_microcents - actual_microcents).max(0),
        overrun_microcents: (actual_microcents - held_microcents).max(0),
    }
}

/// The id of a reservation parked with [`Reservation::into_id`].
///
/// It packs the tenant's slot (24 bits) and a per-tenant sequence number (40
/// bits) into a `u64`, so it crosses any boundary as a plain integer
/// ([`as_u64`](Self::as_u64) / [`from_u64`](Self::from_u64)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(u64);

impl ReservationId {
    fn from_parts(tenant_index: u32, sequence: u64) -> Self {
        debug_assert!(tenant_index < crate::MAX_TENANTS);
        debug_assert!(sequence <= SEQUENCE_MASK);
        Self((u64::from(tenant_index) << SEQUENCE_BITS) | sequence)
    }

    /// The id as a plain integer.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// An id from a plain integer (as produced by [`as_u64`](Self::as_u64)).
    pub fn from_u64(value: u64) -> Self {
        Self(value)
    }

    pub(crate) fn tenant_index(self) -> u64 {
        self.0 >> SEQUENCE_BITS
    }

    pub(crate) fn sequence(self) -> u64 {
        self.0 & SEQUENCE_MASK
    }
}

impl std::fmt::Display for ReservationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.tenant_index(), self.sequence())
    }
}
