//! A lock-free, per-tenant budget engine whose books always balance.
//!
//! A service that spends money per decision (model tokens, venue fees,
//! exposure) keeps one budget per tenant, draws on it from many threads at
//! once, and must never overspend, lose an update, or be unable to say where
//! every microcent went. This crate is that budget, in memory.
//!
//! # The model
//!
//! Every amount is an `i64` count of **microcents** (1 cent = 1,000,000
//! microcents; see [`MICROCENTS_PER_CENT`]). Each tenant has four balances:
//!
//! - `initial`: every microcent ever granted (the opening budget plus top-ups);
//! - `remaining`: spendable now;
//! - `reserved`: held by open reservations;
//! - `committed`: spent over the tenant's lifetime.
//!
//! and after every completed operation **`remaining + reserved + committed ==
//! initial`**. Spending is two-phase: [`BudgetEngine::try_reserve`] moves an
//! estimate from `remaining` to `reserved` and returns a [`Reservation`]; the
//! reservation is then committed with the actual cost (the surplus goes back to
//! `remaining`), released, or dropped (which releases it).
//!
//! # What it does not do
//!
//! - No I/O and no durability: the journal and its recovery live in
//!   `calybris-finance`, built on [`BudgetEngine::snapshot`] and
//!   [`BudgetEngine::restore`].
//! - No digests or proofs (also `calybris-finance`), no currencies or
//!   exchange rates, no floating point, and no operation spanning two tenants.
//!
//! # Main types
//!
//! - [`BudgetEngine`]: the tenants; `ensure_tenant`, `top_up`, `try_reserve`,
//!   `snapshot`, `verify_conservation`, `restore`.
//! - [`Reservation`]: the linear hold: `commit`, `commit_with_overrun`,
//!   `release`, drop-to-release, `into_id`; [`ReservationId`] for the id form.
//! - [`TenantHandle`]: skips the id lookup on hot paths.
//! - [`BudgetSnapshot`] and [`TenantLedger`]: frozen views.
//! - [`BudgetError`], [`Refused`], [`RestoreError`],
//!   [`ConservationViolation`]: typed refusals. No operation panics on caller
//!   input, and no total ever wraps: an addition that would overflow is refused.
//!
//! # Budget trees
//!
//! [`BudgetTree`] (module [`tree`]) adds what gateway operators budget with:
//! organisation -> team -> key chains, per-model, per-provider and per-tag scope
//! budgets, windows that reset on an explicit, caller-clocked
//! [`BudgetTree::advance_window`] ([`WindowSpec`] maps a clock value to a window),
//! alert thresholds fired once per window, and an overrun path. A reservation holds
//! on every node of its [`HoldPlan`] or on none, without a lock. The [`tree`]
//! module's documentation says how. Calendar windows may follow a time zone with
//! daylight saving ([`ZoneRule`], module [`zone`]), its rule fixed by the
//! configuration.
//!
//! # Concurrency
//!
//! Each tenant's balances and a small gate word sit alone on one 128-byte
//! aligned line, and id lookups are memoised per thread (invalidated by an
//! epoch whenever a tenant is created or a restore lands), so threads working
//! on different tenants write no shared cache line, whether they name tenants
//! by id or through a [`TenantHandle`]. A
//! reservation is a compare-and-swap loop on the tenant's spendable balance:
//! reservers never take a lock and never exclude each other, and two
//! reservations racing for the last microcent cannot both win. A snapshot
//! briefly holds one tenant at a time still (operations on that tenant wait
//! for the copy of four numbers), so every row it returns balances. All
//! atomics and locks come from one internal `sync` module, which switches to
//! [loom](https://docs.rs/loom) under `--cfg loom` so the models in
//! `tests/loom.rs` check this very code.
//!
//! # Example
//!
//! ```
//! use calybris_budget::{BudgetEngine, BudgetError, MICROCENTS_PER_CENT};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = BudgetEngine::new();
//! engine.ensure_tenant("acme", 100 * MICROCENTS_PER_CENT)?;
//!
//! // Hold an estimate, then commit what was actually spent.
//! let hold = engine.try_reserve("acme", 30 * MICROCENTS_PER_CENT)?;
//! let settled = hold.commit(12 * MICROCENTS_PER_CENT)?;
//! assert_eq!(settled.refunded_microcents, 18 * MICROCENTS_PER_CENT);
//!
//! // A forgotten reservation is released when dropped.
//! drop(engine.try_reserve("acme", 50 * MICROCENTS_PER_CENT)?);
//!
//! // Overspending is refused, never wrapped or clamped.
//! let too_much = engine.try_reserve("acme", 200 * MICROCENTS_PER_CENT);
//! assert!(matches!(too_much, Err(BudgetError::Insufficient { .. })));
//!
//! let snapshot = engine.snapshot();
//! assert_eq!(snapshot.tenants[0].committed_microcents, 12 * MICROCENTS_PER_CENT);
//! assert_eq!(snapshot.tenants[0].remaining_microcents, 88 * MICROCENTS_PER_CENT);
//! engine.verify_conservation()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `serde` (off by default): `Serialize`/`Deserialize` on the result types a
//!   service sends elsewhere: [`TenantLedger`], [`BudgetSnapshot`], [`Settlement`],
//!   [`TenantLimits`] and [`ConservationViolation`].
//!
//! The crate needs `std` and `parking_lot`; under `--cfg loom` it also uses `loom`.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod calendar;
mod cas;
mod engine;
mod error;
mod reservation;
mod snapshot;
mod sync;
mod tenant;
pub mod tree;
pub mod zone;

pub use calendar::{CalendarError, MAX_UTC_OFFSET_MINUTES, WindowSpec};
pub use engine::{
    BudgetEngine, MAX_TENANT_ID_BYTES, MAX_TENANTS, TenantCreation, TenantHandle, TenantLimits,
};
pub use error::{BudgetError, ConservationViolation, Refused, RestoreError};
pub use reservation::{Reservation, ReservationId, Settlement};
pub use snapshot::{BudgetSnapshot, TenantLedger};
pub use tenant::MAX_ACTIVE_RESERVATIONS_PER_TENANT;
pub use tree::{
    AlertEvent, BudgetTree, HoldPlan, MAX_ALERT_THRESHOLDS, MAX_CHAIN_DEPTH, MAX_NODE_NAME_BYTES,
    MAX_PLAN_NODES, MAX_PLAN_SCOPES, MAX_TREE_NODES, NodeId, NodeScope, NodeSpec, TreeError,
    TreeReservation, TreeSettlement, TreeStats, WindowBooks, WindowReset,
};
pub use zone::{
    DstRule, MAX_POSIX_TZ_BYTES, MAX_ZONE_OFFSET_SECONDS, Transition, TransitionDate, ZoneError,
    ZoneRule,
};

/// Microcents in one cent: amounts are `i64` microcents throughout.
pub const MICROCENTS_PER_CENT: i64 = 1_000_000;

/// The README's example, compiled and run as a doctest so the crates.io page
/// cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
