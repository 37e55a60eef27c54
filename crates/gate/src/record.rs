//! The records of a gate log: one enum, [`GateRecord`], encoded with postcard inside
//! the frames of a `calybris-wal` log. This module is the only definition of their
//! layout; `docs/SPECIFICATION.md` ("The gate log") describes it byte by byte and the
//! golden files under `crates/gate/tests/data/` pin it.
//!
//! Amounts are in the kernel's **microunits** (10^-6 of the caller's currency unit),
//! the same unit as [`KernelDecision::estimated_cost_microunits`]: a gate has one
//! money unit from its configuration to its reports.
//!
//! [`KernelDecision::estimated_cost_microunits`]: calybris_kernel::KernelDecision::estimated_cost_microunits

use calybris_digest::Digest;

pub use crate::adaptive::{
    AdaptiveNote, AdaptivePolicy, AdaptiveRegime, AdaptiveSetup, AdaptiveTier, EnginePending,
    EngineSnapshot, EngineState,
};
use crate::holdout::HoldoutNote;
use crate::names::NameMap;
pub use crate::shadow::{ShadowNote, StageRole, StagedPolicy, UnstagedPolicy};
use calybris_wal::{DecisionRecord, PolicyRecord};
use serde::{Deserialize, Serialize};

/// The version of the gate record set, written in the [`LogHeader`] that opens every
/// gate log and in every [`BookSnapshot`].
pub const GATE_FORMAT_VERSION: u16 = 1;

/// The longest tenant name a record may carry, in bytes (the budget engine's bound).
pub const MAX_TENANT_NAME_BYTES: usize = calybris_budget::MAX_TENANT_ID_BYTES;

/// The most attempts an [`ExecutionRecord`] may list.
pub const MAX_EXECUTION_ATTEMPTS: usize = 16;

/// The longest name (provider, model, lease field, reason) an [`ExecutionRecord`] or a
/// [`LeaseRefusal`] may carry, in bytes.
pub const MAX_EXECUTION_NAME_BYTES: usize = 256;

/// The longest free-form detail an [`OutcomeRecord`] may carry, in bytes.
pub const MAX_OUTCOME_DETAIL_BYTES: usize = 4_096;

/// One record of a gate log. The variant's position is its code on disk (postcard
/// writes it as a varint before the fields), so variants are only ever appended.
///
/// Codes 0 and 1 are the layouts of `calybris_wal::AuditRecord`'s policy and decision
/// records: a policy record is byte for byte the audited log's, and a gate decision
/// starts with the audited decision record and adds the gate's fields after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Decisions are by far the most common record and the one on the hot path: boxing
// the variant would cost an allocation per decision to save stack on the rare kinds.
#[allow(clippy::large_enum_variant)]
pub enum GateRecord {
    /// 0: a policy snapshot, written before the first decision that names it.
    Policy(PolicyRecord),
    /// 1: a decision and, for an admitted selection, its reservation.
    Decision(GateDecision),
    /// 2: the first record of every gate log.
    Header(LogHeader),
    /// 3: a tenant is created with an opening budget.
    TenantCreated(TenantCreated),
    /// 4: a tenant's budget grows.
    TopUp(TopUp),
    /// 5: a tenant's reservation limits change.
    LimitsChanged(LimitsChanged),
    /// 6: an admitted decision is settled (committed, released or abandoned).
    Settlement(SettlementRecord),
    /// 7: an observed result, bound to its decision.
    Outcome(OutcomeRecord),
    /// 8: the whole budget state after every record before it.
    BookSnapshot(BookSnapshot),
    /// 9: the names of a policy's ids and bits, written right after its policy record.
    PolicyNames(PolicyNames),
    /// 10: what executed an admitted decision: the provider and model that actually
    /// served (after any fallback), digests of the request and response, latency,
    /// status and every attempt. Bound to its decision; folded as a no-op.
    Execution(ExecutionRecord),
    /// 11: a request refused before any decision because its authority lease was
    /// missing, expired or out of scope. Nothing is priced or held; folded as a no-op.
    LeaseRefused(LeaseRefusal),
    /// 12: a policy was promoted (or rolled back) after an offline evaluation.
    Promotion(PromotionRecord),
    /// 13: a budget node (chain level or model / provider / tag scope) is defined.
    BudgetDefined(crate::windows::BudgetDefined),
    /// 14: a budget node moves to a later window; the old window's spendable rest
    /// expires. Written before any decision in the new window.
    WindowReset(crate::windows::WindowResetRecord),
    /// 15: a budget node's committed spend in a window reached an alert threshold
    /// (once per node, window and threshold).
    AlertFired(crate::windows::AlertFiredRecord),
    /// 16: a budget node's current window grows.
    BudgetTopUp(crate::windows::BudgetTopUp),
    /// 17: a tree head the gate signed, covering every record before it
    /// (issue 13; see [`crate::transparency`]). Folded as a no-op.
    Checkpoint(crate::transparency::CheckpointRecord),
    /// 18: a policy other than the one in force is staged: the live shadow candidate
    /// or the holdout's baseline (or restated after a snapshot or a reopen); see
    /// [`crate::shadow`]. Folded as a no-op.
    Staged(StagedPolicy),
    /// 19: a staged policy is unstaged. Folded as a no-op.
    Unstaged(UnstagedPolicy),
    /// 20: the adaptive engine's state digest after some updates (issue 11).
    /// Folded as a no-op.
    EngineSnapshot(EngineSnapshot),
    /// 21: the adaptive engine's configuration and replay key, before the first
    /// adaptive decision (issue 11). Folded as a no-op.
    AdaptiveSetup(AdaptiveSetup),
    /// 22: the adaptive engine's whole state, after a book snapshot under retention
    /// (issue 11). Folded as a no-op.
    EngineState(EngineState),
    /// 23: decisions waiting for their outcome, following an [`EngineState`] record.
    /// Folded as a no-op.
    EnginePending(EnginePending),
}

impl GateRecord {
    /// A short lowercase name of the record's kind, for reports.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Policy(_) => "policy",
            Self::Decision(_) => "decision",
            Self::Header(_) => "header",
            Self::TenantCreated(_) => "tenant-created",
            Self::TopUp(_) => "top-up",
            Self::LimitsChanged(_) => "limits-changed",
            Self::Settlement(_) => "settlement",
            Self::Outcome(_) => "outcome",
            Self::BookSnapshot(_) => "book-snapshot",
            Self::PolicyNames(_) => "policy-names",
            Self::Execution(_) => "execution",
            Self::LeaseRefused(_) => "lease-refused",
            Self::Promotion(_) => "promotion",
            Self::BudgetDefined(_) => "budget-defined",
            Self::WindowReset(_) => "window-reset",
            Self::AlertFired(_) => "alert-fired",
            Self::BudgetTopUp(_) => "budget-top-up",
            Self::Checkpoint(_) => "checkpoint",
            Self::Staged(_) => "staged",
            Self::Unstaged(_) => "unstaged",
            Self::EngineSnapshot(_) => "engine-snapshot",
            Self::AdaptiveSetup(_) => "adaptive-setup",
            Self::EngineState(_) => "engine-state",
            Self::EnginePending(_) => "engine-pending",
        }
    }
}

/// The first record of every gate log: says which record set follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHeader {
    /// [`GATE_FORMAT_VERSION`] of the writer.
    pub format_version: u16,
}

/// A decision as the gate logged it.
///
/// The reservation of an admitted, priced selection is this record: its id is the
/// record's own sequence number in the log (the writer cannot know it before the
/// record is placed, so it is not stored a second time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDecision {
    /// The audited decision: request, decision, the three digests, and the caller's
    /// metadata (`recorded_at_unix_ms` is the caller's timestamp, `request_id` the
    /// caller's own request id, `tenant_id` the [`tenant_number`] of [`Self::tenant`]).
    ///
    /// [`tenant_number`]: calybris_digest::tenant_number
    pub audit: DecisionRecord,
    /// The tenant, by name.
    pub tenant: String,
    /// What the budget made of the decision.
    pub budget: BudgetOutcome,
    /// The budget nodes the decision held, each with the window it was held in
    /// (empty when no budget node applies). For a decision refused by a budget node
    /// ([`BudgetOutcome::Insufficient`] with a non-empty list), exactly the refusing
    /// node.
    pub scopes: Vec<crate::windows::ScopeHold>,
    /// The holdout assignment, when the gate has a holdout on ([`crate::holdout`]):
    /// a held-out decision was made under the baseline policy the note names.
    pub holdout: Option<HoldoutNote>,
    /// What the staged shadow candidate would have decided, when one is staged
    /// ([`crate::shadow`]); it never changed the decision.
    pub shadow: Option<ShadowNote>,
    /// What the adaptive engine suggested and why; `None` for a decision the engine
    /// was not asked about.
    pub adaptive: Option<AdaptiveNote>,
}

/// What the budget made of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BudgetOutcome {
    /// The kernel rejected the request: nothing was priced or held.
    RejectedByKernel,
    /// The kernel selected a candidate whose estimated cost is zero: admitted, nothing
    /// held (a later settlement may still charge it, through the overrun path).
    NotPriced,
    /// Admitted: the estimated cost is held. The reservation's id is the decision's
    /// sequence number.
    Reserved {
        /// The amount held, in microunits (the decision's estimated cost).
        amount_microunits: u64,
    },
    /// Not admitted: the tenant's spendable budget was below the estimate.
    Insufficient {
        /// The spendable budget the refused attempt saw, in microunits.
        remaining_microunits: i64,
    },
    /// Not admitted: the tenant's cap on the sum of open holds would be exceeded.
    ReservedCapExceeded {
        /// The open holds the refused attempt saw, in microunits.
        reserved_microunits: i64,
    },
    /// Not admitted: the tenant already had as many open reservations as it may.
    TooManyOpenReservations,
}

impl BudgetOutcome {
    /// Whether the work may go ahead as far as the budget is concerned.
    #[must_use]
    pub const fn is_admitted(self) -> bool {
        matches!(self, Self::NotPriced | Self::Reserved { .. })
    }

    /// The amount held, in microunits (zero unless [`BudgetOutcome::Reserved`]).
    #[must_use]
    pub const fn held_microunits(self) -> u64 {
        match self {
            Self::Reserved { amount_microunits } => amount_microunits,
            _ => 0,
        }
    }
}

/// A tenant is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreated {
    /// The tenant's name.
    pub tenant: String,
    /// The opening budget, in microunits.
    pub initial_microunits: u64,
}

/// A tenant's budget grows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopUp {
    /// The tenant's name.
    pub tenant: String,
    /// The amount added, in microunits (positive).
    pub amount_microunits: u64,
}

/// A tenant's reservation limits change (`None` removes a limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsChanged {
    /// The tenant's name.
    pub tenant: String,
    /// Cap on the sum of the tenant's open holds, in microunits.
    pub max_reserved_microunits: Option<u64>,
    /// Cap on how many reservations the tenant may have open at once.
    pub max_open_reservations: Option<u64>,
}

/// How an admitted decision was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SettlementKind {
    /// The actual cost, at most the amount held, is spent; the rest is refunded.
    Commit {
        /// The actual cost, in microunits.
        actual_microunits: u64,
    },
    /// The actual cost is above the amount held: the whole hold is spent and the
    /// excess is taken from the tenant's spendable budget (the one overrun path).
    CommitWithOverrun {
        /// The actual cost, in microunits (greater than the amount held).
        actual_microunits: u64,
    },
    /// The caller released the hold: nothing was spent.
    Release,
    /// The admission was dropped or abandoned without a settlement: nothing spent.
    Abandon,
    /// The gate was reopened with the hold still open and released it.
    ReleasedAtReopen,
    /// The gate was reopened with the hold still open and spent the whole of it
    /// ([`crate::ReopenHolds::CommitHeld`]): whatever the admission did before the
    /// process stopped cost at most its hold, so the books count the hold as spent
    /// and a crash can never leave spending out of them.
    CommittedAtReopen,
}

/// An admitted decision is settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRecord {
    /// The sequence number of the decision record it settles (its reservation id).
    pub decision_sequence: u64,
    /// The decision's tenant, by name (checked against the decision).
    pub tenant: String,
    /// How it was settled.
    pub kind: SettlementKind,
}

/// An observed result of a decision's execution, bound to the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// The sequence number of the decision record.
    pub decision_sequence: u64,
    /// That record's decision digest (`calydcn1`), so the binding survives any
    /// renumbering doubt.
    pub decision_digest: Digest,
    /// The observed reward, in microunits (signed).
    pub reward_microunits: i64,
    /// Whether the execution succeeded.
    pub success: bool,
    /// The observed latency, in milliseconds.
    pub latency_ms: u32,
    /// Free-form bytes, at most [`MAX_OUTCOME_DETAIL_BYTES`].
    pub detail: Vec<u8>,
}

/// The whole budget state after every record before it: reopening a long log replays
/// only what follows the last snapshot, and a verifier starting from a retained suffix
/// starts from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookSnapshot {
    /// [`GATE_FORMAT_VERSION`] of the writer.
    pub format_version: u16,
    /// Digest of the policy in force; its policy record follows this one.
    pub policy_digest: Digest,
    /// Every tenant, in ascending byte order of name.
    pub tenants: Vec<SnapshotTenant>,
    /// Every open hold (admitted decisions not yet settled), ascending by sequence.
    pub open: Vec<OpenHold>,
    /// Every budget node (issue 14), in definition order, with its windows.
    pub budget_nodes: Vec<crate::windows::SnapshotBudgetNode>,
    /// The budget nodes every open hold that has them holds, ascending by sequence.
    pub budget_holds: Vec<crate::windows::SnapshotNodeHolds>,
}

/// One tenant's books in a [`BookSnapshot`], in microunits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTenant {
    /// The tenant's name.
    pub tenant: String,
    /// Every amount ever granted (opening budget plus top-ups).
    pub initial_microunits: i64,
    /// Spendable now.
    pub remaining_microunits: i64,
    /// Held by open reservations.
    pub reserved_microunits: i64,
    /// Spent over the tenant's lifetime.
    pub committed_microunits: i64,
    /// The cap on open holds, if any.
    pub max_reserved_microunits: Option<u64>,
    /// The cap on open reservations, if any.
    pub max_open_reservations: Option<u64>,
}

/// One open hold in a [`BookSnapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenHold {
    /// The decision record's sequence number (the reservation id).
    pub decision_sequence: u64,
    /// The tenant's position in [`BookSnapshot::tenants`].
    pub tenant_index: u32,
    /// The amount held, in microunits (zero for a [`BudgetOutcome::NotPriced`] admission).
    pub held_microunits: u64,
}

/// The names of a policy's model and provider ids and of its capability and region
/// bits, so that every report on the decisions under that policy speaks in names.
/// Written right after the [`GateRecord::Policy`] record it names; the verifier checks
/// that a policy of that digest was recorded before it and that every id it names
/// exists in that policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyNames {
    /// Digest of the policy named (`calypol1`).
    pub policy_digest: Digest,
    /// The names.
    pub names: NameMap,
}

/// How the execution of an admitted decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExecutionStatus {
    /// A provider served the whole response.
    Served,
    /// Every attempt failed; nothing was served.
    ProviderFailed,
    /// The client went away during a streamed response; what was generated until then
    /// is what was settled.
    ClientDisconnected,
    /// The executor itself failed before a response could be given.
    InternalError,
    /// A streamed response's provider failed after its first event (it disconnected,
    /// timed out, sent something malformed, or never stopped): the client got what was
    /// relayed until then without the end marker, and that is what was settled; the
    /// attempt is marked failed.
    StreamCut,
}

/// Why a provider of the chain was passed over without being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttemptSkip {
    /// Its circuit breaker is open (or half-open with its one trial already out).
    CircuitOpen,
    /// It is a local provider whose single inference slot stayed busy for the
    /// configured wait.
    LocalSlotBusy,
}

impl AttemptSkip {
    /// The attempt status as reports show it: `skipped: circuit open`, `skipped: local
    /// slot busy`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "skipped: circuit open",
            Self::LocalSlotBusy => "skipped: local slot busy",
        }
    }
}

/// One attempt at a provider, in the order tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionAttempt {
    /// The provider tried, by name.
    pub provider: String,
    /// The model asked of it, by name.
    pub model: String,
    /// The provider's HTTP status (0 when no response came: timeout, connection).
    pub http_status: u16,
    /// Whether this attempt served.
    pub success: bool,
    /// How long it took, in milliseconds (for a skip: how long it waited first).
    pub latency_ms: u32,
    /// `Some` when the provider was passed over without a call (then `http_status` is
    /// 0 and `success` false).
    pub skipped: Option<AttemptSkip>,
}

/// What executed an admitted decision (see [`GateRecord::Execution`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// The sequence number of the decision record it executes.
    pub decision_sequence: u64,
    /// That record's decision digest (`calydcn1`).
    pub decision_digest: Digest,
    /// The provider that served, by name (empty when nothing served).
    pub provider: String,
    /// The model that actually served, by name (empty when nothing served).
    pub model: String,
    /// SHA-256 of the request body as received.
    pub request_sha256: [u8; 32],
    /// SHA-256 of the response body as sent (for a stream, of the bytes sent).
    pub response_sha256: [u8; 32],
    /// Latency from the decision to the end of the response, in milliseconds.
    pub latency_ms: u32,
    /// How it ended.
    pub status: ExecutionStatus,
    /// The HTTP status given to the client.
    pub http_status: u16,
    /// Prompt tokens the provider reported (or the estimate when it reported none).
    pub input_tokens: u64,
    /// Completion tokens the provider reported (or counted from a cut stream).
    pub output_tokens: u64,
    /// The cost settled for it, in microunits.
    pub cost_microunits: u64,
    /// Every attempt in order, at most [`MAX_EXECUTION_ATTEMPTS`]: the fallback chain.
    pub attempts: Vec<ExecutionAttempt>,
}

impl ExecutionRecord {
    /// Whether every bound holds (attempt count and name lengths) and every skipped
    /// attempt is marked as not called (no HTTP status, no success).
    #[must_use]
    pub fn within_bounds(&self) -> bool {
        self.attempts.len() <= MAX_EXECUTION_ATTEMPTS
            && self.provider.len() <= MAX_EXECUTION_NAME_BYTES
            && self.model.len() <= MAX_EXECUTION_NAME_BYTES
            && self.attempts.iter().all(|attempt| {
                attempt.provider.len() <= MAX_EXECUTION_NAME_BYTES
                    && attempt.model.len() <= MAX_EXECUTION_NAME_BYTES
                    && (attempt.skipped.is_none() || (!attempt.success && attempt.http_status == 0))
            })
    }
}

/// A request refused for its authority lease (see [`GateRecord::LeaseRefused`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRefusal {
    /// The tenant the caller authenticated as.
    pub tenant: String,
    /// The caller's request id.
    pub request_id: [u8; 16],
    /// The caller's timestamp, in milliseconds since the Unix epoch.
    pub recorded_at_unix_ms: u64,
    /// The lease id presented (empty when none was).
    pub lease_id: String,
    /// Who the presented lease names as its issuer (empty when none was).
    pub issued_by: String,
    /// Why it was refused: `missing`, `expired`, `out-of-scope`, `unknown-issuer` or
    /// `malformed`.
    pub reason: String,
}

impl LeaseRefusal {
    /// Whether every bound holds (name lengths).
    #[must_use]
    pub fn within_bounds(&self) -> bool {
        self.tenant.len() <= MAX_TENANT_NAME_BYTES
            && self.lease_id.len() <= MAX_EXECUTION_NAME_BYTES
            && self.issued_by.len() <= MAX_EXECUTION_NAME_BYTES
            && self.reason.len() <= MAX_EXECUTION_NAME_BYTES
    }
}

/// A policy promotion: the policy installed after an offline evaluation passed, bound
/// to the digest of that evaluation's report; or a rollback to the policy in force
/// before the last promotion. Written right after the policy record it installs; the
/// verifier checks that policies of both digests were recorded before it. It changes
/// no books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRecord {
    /// Digest of the policy installed (`calypol1`).
    pub policy_digest: Digest,
    /// Digest of the policy in force before it.
    pub previous_policy_digest: Digest,
    /// SHA-256 of the promotion report's canonical bytes (`docs/CLI.md`, "promote");
    /// all zero for a rollback.
    pub report_digest: Digest,
    /// Whether this is a rollback to [`Self::policy_digest`], the policy in force
    /// before the last promotion.
    pub rollback: bool,
}
