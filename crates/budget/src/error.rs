//! Typed errors of the budget engine.

use crate::{Reservation, ReservationId};

/// Why a budget operation was refused.
///
/// Every refusal leaves the books exactly as they were before the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// A reservation or top-up amount was zero or negative.
    #[error("amount must be positive, got {amount_microcents} microcents")]
    NonPositiveAmount {
        /// The amount that was refused.
        amount_microcents: i64,
    },
    /// An initial budget or an actual cost was negative.
    #[error("amount must not be negative, got {amount_microcents} microcents")]
    NegativeAmount {
        /// The amount that was refused.
        amount_microcents: i64,
    },
    /// No tenant has this id.
    #[error("unknown tenant {tenant_id:?}")]
    UnknownTenant {
        /// The id that was looked up.
        tenant_id: String,
    },
    /// The tenant id is empty or longer than [`crate::MAX_TENANT_ID_BYTES`].
    #[error("tenant id must be 1 to {max_bytes} bytes long, got {len_bytes} bytes")]
    InvalidTenantId {
        /// Length of the refused id.
        len_bytes: usize,
        /// The longest id accepted.
        max_bytes: usize,
    },
    /// The engine already holds [`crate::MAX_TENANTS`] tenants.
    #[error("the engine already holds the maximum of {max_tenants} tenants")]
    TooManyTenants {
        /// The bound that was hit.
        max_tenants: u32,
    },
    /// The tenant does not have enough spendable budget.
    #[error(
        "insufficient budget: {requested_microcents} microcents requested, {remaining_microcents} remaining"
    )]
    Insufficient {
        /// Spendable budget seen by the refused attempt.
        remaining_microcents: i64,
        /// The amount that was requested.
        requested_microcents: i64,
    },
    /// The reservation would take the tenant's outstanding holds above its cap.
    #[error(
        "reservation cap exceeded: {reserved_microcents} reserved + {requested_microcents} requested > cap {cap_microcents}"
    )]
    ReservedCapExceeded {
        /// Outstanding holds seen by the refused attempt.
        reserved_microcents: i64,
        /// The amount that was requested.
        requested_microcents: i64,
        /// The tenant's cap on outstanding holds.
        cap_microcents: i64,
    },
    /// The tenant already has as many open reservations as it may.
    #[error("too many open reservations: the limit is {max_active_reservations}")]
    TooManyActiveReservations {
        /// The limit that was hit.
        max_active_reservations: u64,
    },
    /// A total would not fit in an `i64`; nothing was changed.
    #[error("the {total} total would overflow i64")]
    Overflow {
        /// Which total would have overflowed.
        total: &'static str,
    },
    /// The actual cost is above the reservation and the plain commit path was used.
    ///
    /// Use [`Reservation::commit_with_overrun`] to debit the difference explicitly.
    #[error("actual cost {actual_microcents} exceeds the reservation of {reserved_microcents}")]
    ActualExceedsReservation {
        /// The amount held by the reservation.
        reserved_microcents: i64,
        /// The actual cost that was refused.
        actual_microcents: i64,
    },
    /// No open reservation has this id (already settled, or never issued here).
    #[error("unknown reservation {id}")]
    UnknownReservation {
        /// The id that was looked up.
        id: ReservationId,
    },
    /// The tenant's reservation-id sequence is exhausted.
    #[error("reservation ids of this tenant are exhausted")]
    ReservationIdsExhausted,
    /// The tenant handle refers to a tenant that a `restore` removed.
    #[error("the tenant was removed by a restore")]
    TenantRetired,
}

/// A settlement or conversion that was refused, handing the reservation back.
///
/// The reservation is still open and still holds its amount; settle it again or
/// drop it to release the hold.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Refused {
    /// Why the operation was refused.
    pub error: BudgetError,
    /// The reservation, untouched.
    pub reservation: Reservation,
}

/// Why [`crate::BudgetEngine::restore`] refused a snapshot.
///
/// A refused restore leaves the engine exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The engine has open reservations; restoring would orphan them.
    #[error("{count} reservations are open in the engine")]
    ActiveReservations {
        /// How many reservations were open.
        count: u64,
    },
    /// The snapshot itself records open reservations or reserved amounts.
    ///
    /// Their handles do not exist any more; apply
    /// [`crate::BudgetSnapshot::with_open_reservations_released`] first if the
    /// holds should go back to the tenants.
    #[error("the snapshot records open reservations ({active_reservations} active)")]
    SnapshotHasOpenReservations {
        /// The snapshot's count of active reservations.
        active_reservations: u64,
    },
    /// The same tenant id appears twice.
    #[error("tenant {tenant_id:?} appears twice")]
    DuplicateTenant {
        /// The repeated id.
        tenant_id: String,
    },
    /// A tenant id is empty or too long.
    #[error("invalid tenant id of {len_bytes} bytes")]
    InvalidTenantId {
        /// Length of the refused id.
        len_bytes: usize,
    },
    /// A balance is negative.
    #[error("tenant {tenant_id:?} has a negative {field}: {value_microcents}")]
    NegativeBalance {
        /// The tenant.
        tenant_id: String,
        /// Which balance.
        field: &'static str,
        /// Its value.
        value_microcents: i64,
    },
    /// A tenant's books do not balance.
    #[error(transparent)]
    Unbalanced(#[from] ConservationViolation),
    /// The snapshot holds more than [`crate::MAX_TENANTS`] tenants.
    #[error("the snapshot holds more than the maximum of {max_tenants} tenants")]
    TooManyTenants {
        /// The bound.
        max_tenants: u32,
    },
}

/// A tenant whose books do not balance: `remaining + reserved + committed != initial`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {tenant_id:?} is off by {delta_microcents} microcents")]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConservationViolation {
    /// The tenant.
    pub tenant_id: String,
    /// `remaining + reserved + committed - initial`, computed exactly (no overflow).
    pub delta_microcents: i128,
}
