//! The Calybris decision gate: one chained log for each decision's whole life.
//!
//! A [`Gate`] owns one directory and one `calybris-wal` log inside it ([`LOG_DIR`]).
//! Everything the gate does is a record of that log, in one order: the policies, every
//! decision together with its reservation, every settlement, every change to a
//! tenant's budget, every observed outcome, and periodic snapshots of the books. The
//! budget books are a pure function of that order: [`Gate::open`] rebuilds them from
//! the log (from the last snapshot on) and [`verify_dir`] rebuilds them again, offline,
//! with the same fold ([`Books`]).
//!
//! ```text
//! decide(tenant, input)
//!   1. prescribe under the current policy                  (kernel, no I/O)
//!   2. a priced selection? hold its cost in memory          (lock-free CAS)
//!   3. append ONE record: decision + budget outcome         (group commit)
//!   -> Admission { decision, budget outcome, ticket }       (returns without waiting)
//! settle(admission, actual cost)
//!   4. overrun? take the excess in memory first
//!   5. append the settlement record, naming the decision by sequence
//!   6. refund the rest of the hold in memory
//! ```
//!
//! # Why the books are a function of the log order
//!
//! Threads hold budget in memory before their records get a position in the log, so
//! the in-memory order and the log order differ. The gate keeps one rule: an operation
//! that **takes** budget (a reservation, the excess of an overrun) takes it in memory
//! before its record is appended; one that **frees** budget (a refund, a release, a
//! top-up) frees it only after its record has its position. Then, at any moment, the
//! in-memory spendable budget is at most what a replay in log order would show, so a
//! reservation the gate granted is always covered in log order: a verifier never sees
//! an overspend. (A refusal may look unnecessary in log order; a refusal is always safe.)
//! `docs/ARCHITECTURE.md` ("The one log") has the argument in full, and
//! `tests/interleavings.rs` checks it by a seeded simulation of interleavings, with
//! the opposite order shown to overspend.
//!
//! A book snapshot holds every operation still while it copies the books (the
//! policy lock doubles as the barrier), so the snapshot equals the fold of exactly the
//! records before it; the verifier checks that equality for every snapshot.
//!
//! # Durability
//!
//! `decide` does not wait for the disk: the [`Admission`] carries the decision record's
//! [`Ticket`] ([`Ticket::wait`] blocks). What a caller may do before it completes is
//! written on [`Admission`]. A settlement does not wait either: it follows its decision
//! in the same log, so it can never be durable without it. After a crash, either a
//! decision and its reservation both exist or neither does; holds found open at reopen
//! are released by a logged record ([`ReopenHolds`]).
//!
//! A failed write or sync poisons the gate ([`GateError::Poisoned`]): every waiter gets
//! the error, nothing later is accepted, and the in-memory books are not trusted again
//! until the gate is reopened from the log.
//!
//! # Money
//!
//! One unit from configuration to report: the kernel's **microunits** (10^-6 of the
//! caller's currency unit). Budgets, holds, costs and the books are all in microunits.
//!
//! # Example
//! ```
//! use calybris_digest::SealedPolicy;
//! use calybris_gate::{BudgetOutcome, Gate, GateConfig, VerifyOptions, verify_dir};
//! use calybris_kernel::{KernelInput, KernelModel, PolicySnapshot};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = KernelModel {
//!     model_id: 1, provider_id: 0, quality_bps: 9_000, risk_ceiling_bps: 9_000, enabled: 1,
//!     p95_latency_ms: 300, capabilities: 0, region_mask: 0b1,
//!     input_cost_microunits_per_million_tokens: 2_000_000,
//!     output_cost_microunits_per_million_tokens: 8_000_000,
//! };
//! let policy = SealedPolicy::new(PolicySnapshot::builder().model(model).build()?);
//! let dir = std::env::temp_dir().join(format!("calybris-gate-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! // 20,000 microunits of budget; the request below costs 12,000.
//! let gate = Gate::open(GateConfig::new(&dir, policy).tenant("acme", 20_000))?;
//! let request = KernelInput {
//!     request_sequence: 9, requested_model_id: 1, input_tokens: 2_000, output_tokens: 1_000,
//!     business_value_microunits: 50_000, ..KernelInput::default()
//! };
//! let first = gate.decide("acme", request)?;
//! assert_eq!(first.budget(), BudgetOutcome::Reserved { amount_microunits: 12_000 });
//! let second = gate.decide("acme", request)?; // 8,000 left: refused, and logged
//! assert_eq!(second.budget(), BudgetOutcome::Insufficient { remaining_microunits: 8_000 });
//! gate.settle(first, 10_000)?; // spent 10,000; 2,000 refunded
//! drop(second); // nothing to settle
//! gate.close()?;
//!
//! // Offline, from the directory alone: chain, replay, books, conservation.
//! let report = verify_dir(&dir, &VerifyOptions::default())?;
//! assert_eq!(report.counts.decisions, 2);
//! assert_eq!(report.tenants[0].committed_microunits, 10_000);
//! assert_eq!(report.tenants[0].remaining_microunits, 10_000);
//! assert!(report.conservation.balanced);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Limits, on purpose or for now
//! - One gate per directory: the log takes an exclusive writer lock (a second process
//!   is refused with [`GateError::Log`] naming the lock).
//! - Reservation caps ([`Gate::set_limits`]) are enforced by the writer; the verifier
//!   records them but does not re-check refusals against them.
//! - The verifier keeps 40 bytes per decision in memory to check outcome bindings.
//!
//! # Features
//! - `adaptive`: the adaptive engine (`calybris-adapt`): `GateConfig::adaptive`,
//!   `Gate::decide_adaptive`, learning from outcomes, and the verifier's
//!   re-derivation of every adaptive step (the items are documented in a build with
//!   the feature, as on docs.rs). Without it the records are still read and
//!   written (the format does not depend on features), but a log holding adaptive
//!   records fails verification with [`adaptive::AdaptiveMismatch::Unsupported`].
//! - `tracing`: one span per decision, `calybris.gate.decide`, with the tenant,
//!   request sequence, action, reason, cost, budget outcome and log sequence.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adaptive;
#[cfg(feature = "adaptive")]
mod adaptive_engine;
mod books;
mod error;
mod gate;
pub mod holdout;
pub mod names;
pub mod record;
pub mod shadow;
pub mod transparency;
mod verify;
pub mod windows;

#[cfg(feature = "adaptive")]
pub use adaptive_engine::{AdaptiveRequest, SetupError, engine_config};
pub use books::{Books, BooksError, Hold, TenantBooks};
pub use calybris_wal::Ticket;
pub use error::GateError;
pub use gate::{
    Admission, BudgetRoute, CallerMeta, DEFAULT_SNAPSHOT_EVERY_RECORDS, DecisionRef, Gate,
    GateConfig, GateRecovery, LOG_DIR, Outcome, ReopenHolds, ReservationId, Retention,
    START_ANCHOR_FILE, Settled,
};
pub use holdout::{HoldoutConfig, HoldoutError, HoldoutKey, HoldoutNote};
pub use names::{NameMap, NameMapError};
pub use record::{
    AttemptSkip, BudgetOutcome, ExecutionAttempt, ExecutionRecord, ExecutionStatus,
    GATE_FORMAT_VERSION, GateRecord, LeaseRefusal, MAX_EXECUTION_ATTEMPTS,
    MAX_EXECUTION_NAME_BYTES, MAX_OUTCOME_DETAIL_BYTES, MAX_TENANT_NAME_BYTES, PromotionRecord,
    SettlementKind,
};
pub use shadow::{ShadowNote, StageRole};
pub use transparency::{CheckpointConfig, CheckpointRecord, MAX_CHECKPOINT_NOTE_BYTES};
pub use verify::{
    GateReport, ModelSelections, RecordCounts, SelectionTally, VerifyError, VerifyOptions,
    verify_dir,
};
