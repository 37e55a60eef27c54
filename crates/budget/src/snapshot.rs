//! Frozen views of the books.

use crate::error::ConservationViolation;

/// One tenant's books at the instant of a snapshot, in microcents.
///
/// `committed_microcents` is the lifetime spend, and `initial_microcents` grows
/// with every top-up, so a sound row satisfies
/// `remaining + reserved + committed == initial`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TenantLedger {
    /// The tenant's id.
    pub tenant_id: String,
    /// Every microcent ever granted: the opening budget plus all top-ups.
    pub initial_microcents: i64,
    /// Spendable now.
    pub remaining_microcents: i64,
    /// Held by open reservations.
    pub reserved_microcents: i64,
    /// Spent over the tenant's lifetime.
    pub committed_microcents: i64,
}

impl TenantLedger {
    /// `remaining + reserved + committed - initial`, exact (computed in `i128`).
    ///
    /// Zero exactly when the row balances.
    pub fn conservation_delta_microcents(&self) -> i128 {
        i128::from(self.remaining_microcents)
            + i128::from(self.reserved_microcents)
            + i128::from(self.committed_microcents)
            - i128::from(self.initial_microcents)
    }
}

/// A frozen view of every tenant and of the open reservations.
///
/// Taken by [`BudgetEngine::snapshot`](crate::BudgetEngine::snapshot), which
/// returns the tenants in ascending byte order of their ids; restored by
/// [`BudgetEngine::restore`](crate::BudgetEngine::restore).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BudgetSnapshot {
    /// The engine's snapshot counter: strictly increasing across the
    /// snapshots of one engine (and kept at least as high through a restore).
    pub version: u64,
    /// One row per tenant.
    pub tenants: Vec<TenantLedger>,
    /// Reservations open at the snapshot (linear handles and parked ids).
    pub active_reservations: u64,
}

impl BudgetSnapshot {
    /// Checks `remaining + reserved + committed == initial` for every row.
    ///
    /// # Errors
    ///
    /// The first row (in the snapshot's order) that does not balance.
    pub fn verify_conservation(&self) -> Result<(), ConservationViolation> {
        match self
            .tenants
            .iter()
            .find(|row| row.conservation_delta_microcents() != 0)
        {
            None => Ok(()),
            Some(row) => Err(ConservationViolation {
                tenant_id: row.tenant_id.clone(),
                delta_microcents: row.conservation_delta_microcents(),
            }),
        }
    }

    /// The rows, with each tenant's open holds returned to its spendable
    /// budget and no open reservations.
    ///
    /// This is the documented rule for reservations open at a crash: their
    /// handles died with the process, so their holds go back to the tenant,
    /// and nothing was spent. The result balances if `self` did.
    /// Returns `None` only if a `remaining + reserved` sum would overflow.
    pub fn with_open_reservations_released(&self) -> Option<Self> {
        let mut released = self.clone();
        for row in &mut released.tenants {
            row.remaining_microcents = row
                .remaining_microcents
                .checked_add(row.reserved_microcents)?;
            row.reserved_microcents = 0;
        }
        released.active_reservations = 0;
        Some(released)
    }
}
