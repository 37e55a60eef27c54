//! The decision gate (feature `gate`): one type that runs the common path of a
//! service in the right order, so the service does not have to re-derive it.
//!
//! ```text
//! decide(tenant, input)
//!   1. prescribe against the current sealed policy            (kernel, no I/O)
//!   2. selection with a cost? reserve it from the tenant      (budget journal, durable)
//!   3. append the verified audited record, budget outcome     (decision log, group commit)
//!      in its caller metadata; policy record first if new
//!   -> Admission { decision, budget outcome, reservation, durability ticket }
//! settle(admission, actual cost)
//!   4. wait until the decision record is durable
//!   5. commit the actual cost (or release, via `abandon`)      (budget journal, durable)
//! ```
//!
//! # On disk
//!
//! A gate owns one directory with two segment directories inside:
//! [`DECISIONS_DIR`] (the audited decision log, a [`DurableAuditWal`]) and
//! [`BUDGET_DIR`] (the budget journal, a [`DurableLedger`]). Both use the same
//! optional HMAC key. `calybris_wal::replay_audited_segments` verifies the first
//! without the gate; `DurableLedger::recover` rebuilds the second read-only; and
//! [`audit_dir`] does both and checks that they agree.
//!
//! # Units
//!
//! The kernel prices in **microunits** (10^-6 of the caller's currency unit,
//! `u64`); the budget counts **microcents** (10^-6 of a cent, `i64`). With 100
//! cents to the unit, one microunit is exactly [`MICROCENTS_PER_MICROUNIT`] (100)
//! microcents, so the conversion ([`microunits_to_microcents`]) is an exact
//! multiplication, never a rounding; a cost whose microcent value does not fit
//! an `i64` (above about 9.2 * 10^16 microunits) is refused with
//! [`GateError::CostOverflow`]. Tenant budgets are given in microcents.
//!
//! # The budget outcome in the log
//!
//! The kernel decision in the log is exactly what `prescribe` returned, so it
//! replays. What the budget made of it is written in the record's
//! [`DecisionMeta`]: `tenant_id` is [`tenant_number`] of the tenant name, and
//! `request_id` holds the [`BudgetOutcome`] in the layout of
//! [`BudgetOutcome::to_request_id`]. A selection refused for want of budget is
//! therefore a logged decision like any other: the kernel part replays, and its
//! metadata says it was not admitted and why.
//!
//! # Ordering guarantees
//!
//! - A policy record precedes every decision that names it (installing a policy
//!   writes it at once; [`DurableAuditWal`] also writes it before a decision if
//!   needed).
//! - A reservation is durable in the budget journal before its decision is
//!   appended, and its journal id is in the decision's metadata.
//! - [`Gate::settle`] waits for the decision record to be durable before it
//!   journals the spend, so no committed spend belongs to a decision the log
//!   could lose.
//! - After a crash, reservations that were open are released when the gate is
//!   reopened (see [`DurableLedger::open`]).
//!
//! # Limits, on purpose or for now
//!
//! - `decide` returns once the reservation is durable in the budget journal
//!   ([`DurableLedger`] acknowledges a reservation only when it is durable), so
//!   a priced selection waits for one fdatasync, shared with every concurrent
//!   caller (group commit). The decision record is not awaited: its
//!   [`Ticket`] is in the admission, and `settle` waits for it.
//! - The record's `request_id` carries the budget outcome, so it cannot carry
//!   the caller's own request id; correlate by
//!   [`KernelInput::request_sequence`], which the record holds.
//! - An [`Admission`] borrows its gate (the hold is a [`DurableReservation`]
//!   of the gate's ledger): settle it before the gate is closed. It is `Send`,
//!   so it can be settled on another thread of the same scope.
//! - One gate per directory: both logs take an exclusive writer lock.
//! - Tenants listed in [`GateConfig`] are created when missing and otherwise
//!   left as the journal has them; budgets change only through
//!   [`Gate::top_up`].
//!
//! # Example: a refusal is a logged decision
//! ```
//! use calybris::gate::{BudgetOutcome, Gate, GateConfig};
//! use calybris::prelude::*;
//! use calybris::wal::{AuditRecord, SegmentedReader, replay_audited_segments};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = KernelModel {
//!     model_id: 1, provider_id: 0, quality_bps: 9_000, risk_ceiling_bps: 9_000, enabled: 1,
//!     p95_latency_ms: 300, capabilities: 0, region_mask: 0b1,
//!     input_cost_microunits_per_million_tokens: 2_000_000,
//!     output_cost_microunits_per_million_tokens: 8_000_000,
//! };
//! let policy = SealedPolicy::new(PolicySnapshot::builder().model(model).build()?);
//! let dir = std::env::temp_dir().join(format!("calybris-gate-refusal-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! // One cent of budget (1,000,000 microcents); the request below costs 1.2 cents.
//! let gate = Gate::open(GateConfig::new(&dir, policy).tenant("acme", 1_000_000))?;
//! let request = KernelInput {
//!     request_sequence: 9, requested_model_id: 1, input_tokens: 2_000, output_tokens: 1_000,
//!     business_value_microunits: 50_000, ..KernelInput::default()
//! };
//! let admission = gate.decide("acme", request)?;
//! assert!(admission.decision().is_selection()); // the kernel chose model 1...
//! assert!(!admission.is_admitted()); // ...but the budget refused it
//! assert_eq!(admission.decision().estimated_cost_microunits, 12_000);
//! assert_eq!(
//!     admission.budget(),
//!     BudgetOutcome::Insufficient { remaining_microcents: 1_000_000 }
//! );
//! let sequence = admission.log_sequence();
//! gate.abandon(admission)?;
//! let log = gate.decisions_dir();
//! gate.close()?;
//!
//! // The log replays, and the refusal is in the record's metadata.
//! let summary = replay_audited_segments(SegmentedReader::open(&log, None, None)?)?;
//! assert_eq!(summary.decisions, 1);
//! for entry in SegmentedReader::<AuditRecord>::open(&log, None, None)? {
//!     if let AuditRecord::Decision(record) = entry?.record {
//!         assert_eq!(record.decision.request_sequence, 9);
//!         assert!(matches!(
//!             BudgetOutcome::from_meta(&record.meta),
//!             Some(BudgetOutcome::Insufficient { .. })
//!         ));
//!     }
//! }
//! # assert_eq!(sequence, 1);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use calybris_budget::{BudgetError, Settlement, TenantLedger};
use calybris_digest::{Canon, Digest, SealedPolicy, TAG_LEN};
use calybris_finance::{
    ConservationProof, DurableLedger, DurableReservation, JournalRecord, LedgerError,
    LedgerRecovery, prove_snapshot,
};
use calybris_kernel::{InputError, KernelDecision, KernelInput};
use calybris_wal::{
    AuditError, AuditRecord, DEFAULT_WINDOW, DecisionMeta, DurableAuditWal, DurableConfig,
    Recovery, ReplaySummary, SegmentedReader, Ticket, WalAnchor, WalError, WalKey,
    replay_audited_segments,
};
use parking_lot::RwLock;

/// Microcents in one microunit: 10^-6 unit = 100 * (10^-6 cent).
pub const MICROCENTS_PER_MICROUNIT: i64 = 100;

/// The decision log's directory inside the gate directory.
pub const DECISIONS_DIR: &str = "decisions";

/// The budget journal's directory inside the gate directory.
pub const BUDGET_DIR: &str = "budget";

/// The first four bytes of a gate `request_id`: "CGB" and layout version 1.
pub const BUDGET_META_MAGIC: [u8; 4] = *b"CGB\x01";

/// The tag of [`tenant_number`]'s SHA-256 layout (NUL-padded to the CALY tag length).
pub const TENANT_NUMBER_TAG: &[u8; TAG_LEN] = b"calytnt1\0";

/// Codes of [`BudgetOutcome`] in byte 4 of a gate `request_id`.
mod code {
    pub const NOT_REQUIRED: u8 = 0;
    pub const FREE: u8 = 1;
    pub const RESERVED: u8 = 2;
    pub const INSUFFICIENT: u8 = 3;
    pub const RESERVATION_CAP: u8 = 4;
    pub const TOO_MANY_RESERVATIONS: u8 = 5;
}

/// Converts a kernel cost in microunits to budget microcents, exactly.
///
/// ```
/// use calybris::gate::{GateError, microunits_to_microcents};
/// assert_eq!(microunits_to_microcents(10_750)?, 1_075_000); // 1.075 cents
/// assert!(matches!(microunits_to_microcents(u64::MAX), Err(GateError::CostOverflow { .. })));
/// # Ok::<(), GateError>(())
/// ```
///
/// # Errors
/// [`GateError::CostOverflow`] when the result does not fit an `i64`.
pub fn microunits_to_microcents(cost_microunits: u64) -> Result<i64, GateError> {
    i64::try_from(cost_microunits)
        .ok()
        .and_then(|cost| cost.checked_mul(MICROCENTS_PER_MICROUNIT))
        .ok_or(GateError::CostOverflow { cost_microunits })
}

/// The `u64` a tenant name is logged as in [`DecisionMeta::tenant_id`]: the
/// first eight bytes (big-endian) of SHA-256 over [`TENANT_NUMBER_TAG`] and the
/// name's UTF-8 bytes. Stable across runs and machines, so an auditor holding
/// the tenant list can map numbers back to names.
#[must_use]
pub fn tenant_number(tenant_id: &str) -> u64 {
    let mut canon = Canon::sha256(TENANT_NUMBER_TAG);
    canon.bytes(tenant_id.as_bytes());
    let digest = canon.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// What the budget made of one decision. Logged in the decision's metadata
/// (see [`BudgetOutcome::to_request_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BudgetOutcome {
    /// The kernel rejected the request: there was nothing to reserve.
    NotRequired,
    /// The kernel selected a candidate whose estimated cost is zero: nothing
    /// was held, and the decision is admitted.
    Free,
    /// The estimated cost is held by the budget-journal reservation with this id.
    Reserved {
        /// The reservation's id in the budget journal.
        journal_id: u64,
    },
    /// The tenant's spendable budget was below the estimated cost: not admitted.
    Insufficient {
        /// Spendable budget the refused attempt saw, in microcents.
        remaining_microcents: i64,
    },
    /// The tenant's cap on outstanding holds would have been exceeded: not admitted.
    ReservationCapExceeded {
        /// Outstanding holds the refused attempt saw, in microcents.
        reserved_microcents: i64,
    },
    /// The tenant already had as many open reservations as it may: not admitted.
    TooManyOpenReservations,
}

impl BudgetOutcome {
    /// Whether the work may go ahead as far as the budget is concerned.
    #[must_use]
    pub const fn allows_work(self) -> bool {
        matches!(self, Self::Free | Self::Reserved { .. })
    }

    /// The 16-byte `request_id` the gate logs this outcome as:
    ///
    /// | bytes | content |
    /// |---|---|
    /// | 0..4 | [`BUDGET_META_MAGIC`] (`"CGB"`, version 1) |
    /// | 4 | code: 0 not required, 1 free, 2 reserved, 3 insufficient, 4 reservation cap, 5 too many reservations |
    /// | 5..8 | zero |
    /// | 8..16 | big-endian `u64`: the journal id (code 2), the remaining (3) or reserved (4) microcents as two's complement, else zero |
    #[must_use]
    pub fn to_request_id(self) -> [u8; 16] {
        let (code, value) = match self {
            Self::NotRequired => (code::NOT_REQUIRED, 0),
            Self::Free => (code::FREE, 0),
            Self::Reserved { journal_id } => (code::RESERVED, journal_id),
            Self::Insufficient {
                remaining_microcents,
            } => (code::INSUFFICIENT, remaining_microcents.cast_unsigned()),
            Self::ReservationCapExceeded {
                reserved_microcents,
            } => (code::RESERVATION_CAP, reserved_microcents.cast_unsigned()),
            Self::TooManyOpenReservations => (code::TOO_MANY_RESERVATIONS, 0),
        };
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&BUDGET_META_MAGIC);
        bytes[4] = code;
        bytes[8..].copy_from_slice(&value.to_be_bytes());
        bytes
    }

    /// Reads an outcome back from a gate `request_id`; `None` when the bytes
    /// are not in the gate's layout (a record written by something else).
    #[must_use]
    pub fn from_request_id(bytes: &[u8; 16]) -> Option<Self> {
        if bytes[..4] != BUDGET_META_MAGIC || bytes[5..8] != [0, 0, 0] {
            return None;
        }
        let mut value = [0u8; 8];
        value.copy_from_slice(&bytes[8..]);
        let value = u64::from_be_bytes(value);
        let outcome = match bytes[4] {
            code::NOT_REQUIRED => Self::NotRequired,
            code::FREE => Self::Free,
            code::RESERVED => {
                return Some(Self::Reserved { journal_id: value });
            }
            code::INSUFFICIENT => {
                return Some(Self::Insufficient {
                    remaining_microcents: value.cast_signed(),
                });
            }
            code::RESERVATION_CAP => {
                return Some(Self::ReservationCapExceeded {
                    reserved_microcents: value.cast_signed(),
                });
            }
            code::TOO_MANY_RESERVATIONS => Self::TooManyOpenReservations,
            _ => return None,
        };
        (value == 0).then_some(outcome)
    }

    /// [`from_request_id`](Self::from_request_id) of a record's metadata.
    #[must_use]
    pub fn from_meta(meta: &DecisionMeta) -> Option<Self> {
        Self::from_request_id(&meta.request_id)
    }
}

/// Why a gate operation failed. A failed `decide` admits nothing and holds
/// nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// No tenant has this id.
    #[error("unknown tenant {tenant_id:?}")]
    UnknownTenant {
        /// The id that was looked up.
        tenant_id: String,
    },
    /// The request is malformed (the kernel's input check); nothing was logged.
    #[error("invalid request: {0}")]
    Input(#[from] InputError),
    /// A cost in microunits does not fit an `i64` once converted to microcents.
    #[error("a cost of {cost_microunits} microunits does not fit i64 microcents")]
    CostOverflow {
        /// The cost that was refused.
        cost_microunits: u64,
    },
    /// `settle` was given a non-zero cost for a decision that was not admitted.
    #[error("decision {log_sequence} was not admitted; it cannot be charged")]
    NotAdmitted {
        /// The decision's sequence number in the log.
        log_sequence: u64,
    },
    /// The decision log failed (append, replay check, or durability wait).
    #[error("decision log: {0}")]
    DecisionLog(#[from] AuditError),
    /// The budget journal failed or refused an operation.
    #[error("budget journal: {0}")]
    Ledger(#[from] LedgerError),
    /// The gate directory could not be created.
    #[error("gate directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<WalError> for GateError {
    fn from(error: WalError) -> Self {
        Self::DecisionLog(AuditError::Wal(error))
    }
}

/// Settings of [`Gate::open`].
#[derive(Debug, Clone)]
pub struct GateConfig {
    dir: PathBuf,
    policy: SealedPolicy,
    key: Option<WalKey>,
    tenants: Vec<(String, i64)>,
    window: Duration,
    clock: fn() -> u64,
}

impl GateConfig {
    /// A gate in `dir` deciding under `policy`, unkeyed, with no tenants yet.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>, policy: SealedPolicy) -> Self {
        Self {
            dir: dir.into(),
            policy,
            key: None,
            tenants: Vec::new(),
            window: DEFAULT_WINDOW,
            clock: system_clock_unix_ms,
        }
    }

    /// Chains both logs with HMAC-SHA-256 under `key` (the same key must be
    /// given to reopen or verify them).
    #[must_use]
    pub fn key(mut self, key: WalKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Creates `tenant_id` with an opening budget of `budget_microcents` when
    /// the gate opens. A tenant the journal already holds keeps its books (use
    /// [`Gate::top_up`] to add to them).
    #[must_use]
    pub fn tenant(mut self, tenant_id: impl Into<String>, budget_microcents: i64) -> Self {
        self.tenants.push((tenant_id.into(), budget_microcents));
        self
    }

    /// The group-commit window of both logs (default
    /// [`calybris_wal::DEFAULT_WINDOW`]).
    #[must_use]
    pub fn group_commit_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The clock written into [`DecisionMeta::recorded_at_unix_ms`] (default:
    /// the system clock). The kernel never reads it; give a fixed one for
    /// byte-reproducible logs.
    #[must_use]
    pub fn clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    fn wal_config(&self) -> DurableConfig {
        DurableConfig {
            key: self.key.clone(),
            window: self.window,
            ..DurableConfig::default()
        }
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

/// What [`Gate::open`] found in its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRecovery {
    /// The decision log's outcome: clean, or a torn tail that was cut.
    pub decision_log: Recovery,
    /// Records in the decision log when it was opened.
    pub decision_records: u64,
    /// The budget journal's recovery (open reservations released, digest).
    pub ledger: LedgerRecovery,
}

/// The decision gate: prescribe, reserve, log, settle. See the [module
/// docs](self) for the order of operations and what is written where.
///
/// Every method takes `&self`; a `Gate` is `Send + Sync` and meant to be
/// shared (by reference or in an `Arc`) by all the threads of a service.
#[derive(Debug)]
pub struct Gate {
    decisions: DurableAuditWal,
    ledger: DurableLedger,
    policy: RwLock<Arc<SealedPolicy>>,
    clock: fn() -> u64,
    recovery: GateRecovery,
    dir: PathBuf,
    key: Option<WalKey>,
}

// A gate is shared by threads; an admission may move to another thread (or
// task) to be settled there.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    const fn assert_send<T: Send>() {}
    assert_send_sync::<Gate>();
    assert_send::<Admission<'static>>();
};

impl Gate {
    /// Opens (or creates) the gate directory: recovers both logs, creates the
    /// configured tenants that the journal does not hold yet, and writes the
    /// policy record unless the log holds it already.
    ///
    /// # Errors
    /// [`GateError::Directory`]; [`GateError::DecisionLog`] or
    /// [`GateError::Ledger`] when a log is locked by another writer, corrupt,
    /// keyed differently, or fails; [`GateError::Ledger`] for an invalid tenant.
    pub fn open(config: GateConfig) -> Result<Self, GateError> {
        let directory_error = |source| GateError::Directory {
            path: config.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(directory_error)?;
        let decisions =
            DurableAuditWal::open(&config.dir.join(DECISIONS_DIR), config.wal_config())?;
        let (ledger, ledger_recovery) =
            DurableLedger::open(&config.dir.join(BUDGET_DIR), config.wal_config())?;
        for (tenant_id, budget_microcents) in &config.tenants {
            ledger.ensure_tenant(tenant_id, *budget_microcents)?;
        }
        let recovery = GateRecovery {
            decision_log: decisions.wal().recovery().clone(),
            decision_records: decisions.wal().appended_anchor().next_sequence,
            ledger: ledger_recovery,
        };
        // The ticket is not awaited: every decision under this policy gets a
        // later sequence number, and waiting for it covers the policy record.
        let _ = decisions.append_policy(&config.policy)?;
        Ok(Self {
            decisions,
            ledger,
            policy: RwLock::new(Arc::new(config.policy)),
            clock: config.clock,
            recovery,
            dir: config.dir,
            key: config.key,
        })
    }

    /// Decides one request for `tenant_id` and, for a selection, holds its
    /// estimated cost; logs the decision (admitted or not) with group commit.
    ///
    /// The returned [`Admission`] says whether the work may go ahead
    /// ([`Admission::is_admitted`]); settle it with [`settle`](Self::settle) or
    /// [`abandon`](Self::abandon) (dropping it releases the hold).
    ///
    /// # Errors
    /// [`GateError::UnknownTenant`], [`GateError::Input`] and
    /// [`GateError::CostOverflow`] (nothing logged, nothing held), or a log
    /// failure. A refusal by the budget is not an error: it is an admission
    /// whose [`BudgetOutcome`] says why.
    pub fn decide(&self, tenant_id: &str, input: KernelInput) -> Result<Admission<'_>, GateError> {
        #[cfg(feature = "tracing")]
        let span = tracing::info_span!(
            "calybris.gate.decide",
            tenant = tenant_id,
            request_sequence = input.request_sequence,
            action = tracing::field::Empty,
            reason = tracing::field::Empty,
            cost_microunits = tracing::field::Empty,
            budget = tracing::field::Empty,
            log_sequence = tracing::field::Empty,
        );
        #[cfg(feature = "tracing")]
        let _entered = span.enter();

        self.check_tenant(tenant_id)?;
        let policy = self.policy();
        let decision = policy.prescribe_checked(input)?;
        let (budget, reservation) = self.reserve(tenant_id, &decision)?;
        let meta = DecisionMeta {
            recorded_at_unix_ms: (self.clock)(),
            tenant_id: tenant_number(tenant_id),
            request_id: budget.to_request_id(),
        };
        // On failure `reservation` is dropped here, which journals its release.
        let ticket = self
            .decisions
            .append_verified(&policy, input, &decision, meta)?;

        #[cfg(feature = "tracing")]
        {
            span.record("action", tracing::field::debug(decision.action));
            span.record("reason", tracing::field::debug(decision.reason));
            span.record("cost_microunits", decision.estimated_cost_microunits);
            span.record("budget", tracing::field::debug(budget));
            span.record("log_sequence", ticket.sequence());
        }

        Ok(Admission {
            tenant_id: tenant_id.to_owned(),
            input,
            decision,
            policy_digest: *policy.digest(),
            budget,
            reservation,
            ticket,
        })
    }

    /// Settles an admission with what the work actually cost, in microunits:
    /// waits until the decision is durable, then commits the cost against the
    /// hold (refunding the rest) and journals it.
    ///
    /// A cost above the hold is committed too, the excess debited from the
    /// tenant's spendable budget and reported as
    /// [`Settlement::overrun_microcents`]. A free selection charged a non-zero
    /// cost reserves and commits it in one step. An admission that was not
    /// admitted settles only at cost zero.
    ///
    /// # Errors
    /// [`GateError::CostOverflow`]; [`GateError::NotAdmitted`] for a non-zero
    /// cost on a refused decision; [`GateError::Ledger`] when the tenant
    /// cannot cover an overrun (the hold is then released and journaled) or
    /// the journal fails; [`GateError::DecisionLog`] when the decision did not
    /// become durable (nothing is committed; the hold is released).
    pub fn settle(
        &self,
        admission: Admission<'_>,
        actual_cost_microunits: u64,
    ) -> Result<Settlement, GateError> {
        let actual_microcents = microunits_to_microcents(actual_cost_microunits)?;
        admission.wait_durable()?;
        let log_sequence = admission.log_sequence();
        match (admission.reservation, admission.budget) {
            (Some(reservation), _) => Ok(reservation.commit_with_overrun(actual_microcents)?),
            (None, _) if actual_microcents == 0 => Ok(nothing_settled()),
            (None, BudgetOutcome::Free) => Ok(self
                .ledger
                .try_reserve(&admission.tenant_id, actual_microcents)?
                .commit(actual_microcents)?),
            (None, _) => Err(GateError::NotAdmitted { log_sequence }),
        }
    }

    /// Settles an admission whose work was abandoned: releases the hold and
    /// journals the release. Does not wait for the decision to be durable.
    ///
    /// # Errors
    /// [`GateError::Ledger`] when the journal fails.
    pub fn abandon(&self, admission: Admission<'_>) -> Result<Settlement, GateError> {
        match admission.reservation {
            Some(reservation) => Ok(reservation.release()?),
            None => Ok(nothing_settled()),
        }
    }

    /// Installs a new policy: its record is queued in the decision log before
    /// any decision can use it, then it becomes the current policy. Returns
    /// the record's ticket, or `None` when the log already holds that policy.
    ///
    /// Decisions already under way finish under the policy they started with.
    ///
    /// # Errors
    /// A log failure (the current policy is then unchanged).
    pub fn install_policy(&self, policy: SealedPolicy) -> Result<Option<Ticket>, GateError> {
        let mut current = self.policy.write();
        let ticket = self.decisions.append_policy(&policy)?;
        *current = Arc::new(policy);
        Ok(ticket)
    }

    /// The current policy.
    #[must_use]
    pub fn policy(&self) -> Arc<SealedPolicy> {
        Arc::clone(&self.policy.read())
    }

    /// Creates a tenant durably, or leaves an existing one untouched.
    ///
    /// # Errors
    /// [`GateError::Ledger`] for an invalid id or budget, or a journal failure.
    pub fn ensure_tenant(&self, tenant_id: &str, budget_microcents: i64) -> Result<(), GateError> {
        self.ledger.ensure_tenant(tenant_id, budget_microcents)?;
        Ok(())
    }

    /// Adds `amount_microcents` to a tenant's budget, durably.
    ///
    /// # Errors
    /// [`GateError::Ledger`] for an unknown tenant, a non-positive amount, an
    /// overflow, or a journal failure.
    pub fn top_up(&self, tenant_id: &str, amount_microcents: i64) -> Result<(), GateError> {
        self.ledger.top_up(tenant_id, amount_microcents)?;
        Ok(())
    }

    /// A consistent copy of one tenant's books.
    ///
    /// # Errors
    /// [`GateError::UnknownTenant`].
    pub fn tenant_ledger(&self, tenant_id: &str) -> Result<TenantLedger, GateError> {
        self.ledger
            .ledger(tenant_id)
            .map_err(|_| GateError::UnknownTenant {
                tenant_id: tenant_id.to_owned(),
            })
    }

    /// A conservation proof of the budget, bound to the journal.
    ///
    /// # Errors
    /// [`GateError::Ledger`] when the state cannot be digested.
    pub fn prove_conservation(&self) -> Result<ConservationProof, GateError> {
        Ok(self.ledger.prove_conservation()?)
    }

    /// The durable budget journal (snapshots, digests, limits).
    #[must_use]
    pub fn ledger(&self) -> &DurableLedger {
        &self.ledger
    }

    /// The audited decision log.
    #[must_use]
    pub fn decision_log(&self) -> &DurableAuditWal {
        &self.decisions
    }

    /// What opening found.
    #[must_use]
    pub fn recovery(&self) -> &GateRecovery {
        &self.recovery
    }

    /// The decision log's directory (give it to `calybris verify`).
    #[must_use]
    pub fn decisions_dir(&self) -> PathBuf {
        self.dir.join(DECISIONS_DIR)
    }

    /// The budget journal's directory.
    #[must_use]
    pub fn budget_dir(&self) -> PathBuf {
        self.dir.join(BUDGET_DIR)
    }

    /// The gate directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The HMAC key of both logs, if any.
    #[must_use]
    pub fn key(&self) -> Option<&WalKey> {
        self.key.as_ref()
    }

    /// Makes everything durable and closes both logs; returns the decision
    /// log's durable anchor (keep it to detect a cut suffix later).
    ///
    /// # Errors
    /// A log failure.
    pub fn close(self) -> Result<WalAnchor, GateError> {
        let anchor = self.decisions.close()?;
        self.ledger.close()?;
        Ok(anchor)
    }

    fn check_tenant(&self, tenant_id: &str) -> Result<(), GateError> {
        self.tenant_ledger(tenant_id).map(|_| ())
    }

    /// Holds the estimated cost of a selection; a refusal by the budget is an
    /// outcome, not an error.
    fn reserve(
        &self,
        tenant_id: &str,
        decision: &KernelDecision,
    ) -> Result<(BudgetOutcome, Option<DurableReservation<'_>>), GateError> {
        if !decision.is_selection() {
            return Ok((BudgetOutcome::NotRequired, None));
        }
        let amount_microcents = microunits_to_microcents(decision.estimated_cost_microunits)?;
        if amount_microcents == 0 {
            return Ok((BudgetOutcome::Free, None));
        }
        debug_assert!(amount_microcents > 0);
        match self.ledger.try_reserve(tenant_id, amount_microcents) {
            Ok(reservation) => Ok((
                BudgetOutcome::Reserved {
                    journal_id: reservation.journal_id(),
                },
                Some(reservation),
            )),
            Err(LedgerError::Budget(refusal)) => match refusal {
                BudgetError::Insufficient {
                    remaining_microcents,
                    ..
                } => Ok((
                    BudgetOutcome::Insufficient {
                        remaining_microcents,
                    },
                    None,
                )),
                BudgetError::ReservedCapExceeded {
                    reserved_microcents,
                    ..
                } => Ok((
                    BudgetOutcome::ReservationCapExceeded {
                        reserved_microcents,
                    },
                    None,
                )),
                BudgetError::TooManyActiveReservations { .. } => {
                    Ok((BudgetOutcome::TooManyOpenReservations, None))
                }
                BudgetError::UnknownTenant { tenant_id } => {
                    Err(GateError::UnknownTenant { tenant_id })
                }
                other => Err(GateError::Ledger(LedgerError::Budget(other))),
            },
            Err(other) => Err(other.into()),
        }
    }
}

fn nothing_settled() -> Settlement {
    Settlement {
        committed_microcents: 0,
        refunded_microcents: 0,
        overrun_microcents: 0,
    }
}

/// One decision made by a [`Gate`]: the kernel decision, what the budget made
/// of it, the hold (if any) and the durability ticket of its log record.
///
/// Settle it with [`Gate::settle`] or [`Gate::abandon`]; dropping it releases
/// the hold (and journals the release).
#[must_use = "an admission holds budget until it is settled; dropping it releases the hold"]
#[derive(Debug)]
pub struct Admission<'g> {
    tenant_id: String,
    input: KernelInput,
    decision: KernelDecision,
    policy_digest: Digest,
    budget: BudgetOutcome,
    reservation: Option<DurableReservation<'g>>,
    ticket: Ticket,
}

impl Admission<'_> {
    /// Whether the work may go ahead: the kernel selected a candidate and the
    /// budget holds its estimated cost (or it costs nothing).
    #[must_use]
    pub fn is_admitted(&self) -> bool {
        self.decision.is_selection() && self.budget.allows_work()
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

    /// The tenant the decision was made for.
    #[must_use]
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// Digest of the policy that decided.
    #[must_use]
    pub fn policy_digest(&self) -> &Digest {
        &self.policy_digest
    }

    /// Microcents held for this decision (zero when nothing is held).
    #[must_use]
    pub fn held_microcents(&self) -> i64 {
        self.reservation
            .as_ref()
            .map_or(0, DurableReservation::held_microcents)
    }

    /// The hold in the budget journal, if any.
    #[must_use]
    pub fn reservation(&self) -> Option<&DurableReservation<'_>> {
        self.reservation.as_ref()
    }

    /// The decision record's sequence number in the log.
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
    /// [`GateError::DecisionLog`] when the log failed or closed first.
    pub fn wait_durable(&self) -> Result<u64, GateError> {
        Ok(self.ticket.wait()?)
    }
}

/// What [`audit_dir`] established about a gate directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateAudit {
    /// The decision log replayed to a clean end.
    pub decisions: ReplaySummary,
    /// The budget journal's replay (reservations open at its end released).
    pub ledger: LedgerRecovery,
    /// Decisions whose reservation was found in the budget journal with the
    /// same tenant and amount.
    pub reservations_matched: u64,
    /// Conservation proof of the books rebuilt from the journal.
    pub conservation: ConservationProof,
}

/// Why [`audit_dir`] refused a gate directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateAuditError {
    /// The decision log does not verify (chain, policy, replay, digests).
    #[error("decision log: {0}")]
    Decisions(#[from] AuditError),
    /// The budget journal does not replay.
    #[error("budget journal: {0}")]
    Ledger(#[from] LedgerError),
    /// A decision's budget metadata disagrees with the budget journal.
    #[error("decision {log_sequence}: reservation {journal_id}: {problem}")]
    ReservationMismatch {
        /// The decision record.
        log_sequence: u64,
        /// The reservation id it names.
        journal_id: u64,
        /// What disagrees.
        problem: ReservationProblem,
    },
    /// The rebuilt books cannot be digested.
    #[error("budget journal: {0}")]
    Digest(#[from] calybris_finance::LedgerDigestError),
}

/// How a decision's reservation disagrees with the budget journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReservationProblem {
    /// The journal holds no `Reserved` record with this id.
    #[error("not in the budget journal")]
    Missing,
    /// Two decisions name the same reservation.
    #[error("named by an earlier decision too")]
    Duplicate,
    /// The reservation was made for another tenant.
    #[error("made for another tenant")]
    WrongTenant,
    /// The amount held is not the decision's estimated cost in microcents.
    #[error("holds {held_microcents} microcents, the decision estimated {expected_microcents}")]
    WrongAmount {
        /// The amount in the journal.
        held_microcents: i64,
        /// The decision's estimate, converted.
        expected_microcents: i64,
    },
}

/// Audits a closed gate directory offline, without the gate: replays every
/// decision of the log (as `calybris_wal::replay_audited_segments`), rebuilds
/// the books from the budget journal (as [`DurableLedger::recover`]), checks
/// that every decision logged as [`BudgetOutcome::Reserved`] names a
/// reservation of the journal made for its tenant and for exactly its
/// estimated cost, and proves the books balance.
///
/// Reads both logs twice and keeps one small entry per reservation in memory.
/// Run it on a directory no gate is writing (a live writer's unsynced tail
/// reads as a torn tail, which fails the replay).
///
/// # Errors
/// The first disagreement, as a [`GateAuditError`].
pub fn audit_dir(dir: &Path, key: Option<&WalKey>) -> Result<GateAudit, GateAuditError> {
    let decisions_dir = dir.join(DECISIONS_DIR);
    let budget_dir = dir.join(BUDGET_DIR);
    let decisions = replay_audited_segments(
        SegmentedReader::open(&decisions_dir, key, None).map_err(AuditError::Wal)?,
    )?;
    let (engine, ledger) = DurableLedger::recover(&budget_dir, key)?;
    let mut snapshot = engine.snapshot();
    snapshot.version = ledger.records_replayed;
    let conservation = prove_snapshot(&snapshot, Some(ledger.records_replayed))?;

    // Reservation id -> (tenant number, amount, named by a decision yet).
    let mut reservations = std::collections::HashMap::new();
    for entry in
        SegmentedReader::<JournalRecord>::open(&budget_dir, key, None).map_err(LedgerError::Wal)?
    {
        if let JournalRecord::Reserved {
            reservation,
            tenant_id,
            amount_microcents,
        } = entry.map_err(LedgerError::Wal)?.record
        {
            reservations.insert(
                reservation,
                (tenant_number(&tenant_id), amount_microcents, false),
            );
        }
    }
    let mut reservations_matched = 0;
    for entry in
        SegmentedReader::<AuditRecord>::open(&decisions_dir, key, None).map_err(AuditError::Wal)?
    {
        let entry = entry.map_err(AuditError::Wal)?;
        let AuditRecord::Decision(record) = entry.record else {
            continue;
        };
        let Some(BudgetOutcome::Reserved { journal_id }) = BudgetOutcome::from_meta(&record.meta)
        else {
            continue;
        };
        let mismatch = |problem| GateAuditError::ReservationMismatch {
            log_sequence: entry.sequence,
            journal_id,
            problem,
        };
        let (tenant, held_microcents, named) = reservations
            .get_mut(&journal_id)
            .ok_or_else(|| mismatch(ReservationProblem::Missing))?;
        if *named {
            return Err(mismatch(ReservationProblem::Duplicate));
        }
        *named = true;
        if *tenant != record.meta.tenant_id {
            return Err(mismatch(ReservationProblem::WrongTenant));
        }
        // A cost that does not convert cannot match any amount held.
        let expected_microcents =
            microunits_to_microcents(record.decision.estimated_cost_microunits).unwrap_or(-1);
        if *held_microcents != expected_microcents {
            return Err(mismatch(ReservationProblem::WrongAmount {
                held_microcents: *held_microcents,
                expected_microcents,
            }));
        }
        reservations_matched += 1;
    }
    Ok(GateAudit {
        decisions,
        ledger,
        reservations_matched,
        conservation,
    })
}
