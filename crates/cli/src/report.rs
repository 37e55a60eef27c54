//! The verification contract: outcomes, reason codes, exit codes and the report
//! that `calybris verify` prints. Every word and code here is documented in
//! `docs/CLI.md` and pinned by the tests in `tests/verify.rs`; a change here is a
//! change of a public contract.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use calybris::wal::WalAnchor;
use serde::Serialize;

/// Exit code of a log that verified (and of every other command that succeeded).
pub const EXIT_OK: u8 = 0;
/// Exit code of a log that does not verify, or of an input file that is invalid.
pub const EXIT_DIVERGED: u8 = 1;
/// Exit code when the job could not be done: unreadable input, wrong key, bad
/// arguments.
pub const EXIT_ERROR: u8 = 2;

/// The three outcomes of `calybris verify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// The chain verifies to a clean end and every decision replays.
    Verified,
    /// The log is readable but is not what was written: the reason names how.
    Diverged,
    /// The log could not be checked at all: the reason names why.
    Error,
}

impl Outcome {
    /// The word printed first on the report line.
    #[must_use]
    pub const fn word(self) -> &'static str {
        match self {
            Self::Verified => "VERIFIED",
            Self::Diverged => "DIVERGED",
            Self::Error => "ERROR",
        }
    }

    /// The process exit code of the outcome.
    #[must_use]
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::Verified => EXIT_OK,
            Self::Diverged => EXIT_DIVERGED,
            Self::Error => EXIT_ERROR,
        }
    }
}

/// Why a log did not verify. Each reason belongs to exactly one outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// A frame's entry hash, length or segment link does not verify and more data
    /// follows it, or a segment header fails its check.
    ChainBroken,
    /// The last frame is incomplete or does not verify and nothing follows it.
    TornTail,
    /// The log holds fewer records than the anchor vouches for.
    SuffixTruncated,
    /// The record at the anchor's position has another hash.
    AnchorMismatch,
    /// A policy record's stored digest is not the digest of its snapshot.
    PolicyDigestMismatch,
    /// A decision record's input digest is not the digest of its input.
    InputDigestMismatch,
    /// A decision does not replay against its policy (the field is named).
    DecisionMismatch,
    /// A decision record's decision digest is not the digest of its decision.
    DecisionDigestMismatch,
    /// The file or directory cannot be read, or the key file cannot.
    Unreadable,
    /// Not a Calybris audited log (bad magic, unknown version, a record that is
    /// not an audited record, a directory with no segment).
    UnknownFormat,
    /// The log was written under another key, needs a key, or is not keyed.
    WrongKey,
    /// A decision names a policy that no earlier record holds.
    PolicyMissing,
    /// More distinct policies than a replay keeps in memory.
    TooManyPolicies,
    /// An argument is malformed: the anchor text, or a key shorter than 32 bytes.
    BadArgument,
    /// A gate log does not start with a gate header of a known version (or is empty).
    BooksBadHeader,
    /// A gate header appears after the first record of a gate log.
    BooksMisplacedHeader,
    /// A gate record names a tenant that no earlier record created.
    TenantUnknown,
    /// A gate log creates the same tenant twice.
    TenantDuplicate,
    /// A gate record's tenant name is empty or longer than 256 bytes.
    TenantNameInvalid,
    /// A gate record's amount does not fit the books (or a top-up is zero).
    AmountOutOfRange,
    /// A gate decision's budget outcome does not fit its kernel decision.
    BudgetOutcomeMismatch,
    /// A reservation in log order takes more than the tenant's spendable budget.
    Overspend,
    /// A settlement names no open, admitted decision (unknown, refused, or settled already).
    SettlementUnknownDecision,
    /// A settlement names another tenant than its decision's.
    SettlementWrongTenant,
    /// A plain commit spends more than its hold, or an overrun commit does not exceed it.
    SettlementExceedsHold,
    /// A book snapshot disagrees with the books rebuilt from the records before it.
    BooksSnapshotMismatch,
    /// A tenant's books do not balance after a record (remaining + reserved + committed != initial).
    BooksUnbalanced,
    /// An outcome record names no decision record.
    OutcomeUnknownDecision,
    /// An outcome record's decision digest is not its decision's.
    OutcomeDigestMismatch,
    /// An outcome record's detail is longer than 4,096 bytes.
    OutcomeTooLarge,
    /// A decision's holdout assignment does not hold: recomputed otherwise, a held-out
    /// decision not made by the baseline, or a baseline that is not staged.
    HoldoutMismatch,
    /// A live shadow record does not hold: a note that does not re-derive, a missing
    /// note, a note of a candidate not staged, a second candidate staged, or an
    /// unstaging of a policy not staged.
    ShadowMismatch,
    /// A checkpoint is not signed by the given key, or a signature does not verify.
    CheckpointSignatureInvalid,
    /// An inclusion proof does not lead to the checkpoint's root.
    InclusionProofInvalid,
    /// Two checkpoints (or a checkpoint and a witness's state) are not consistent.
    NotConsistent,
    /// The adaptive setup record is missing before an adaptive record, repeated, or
    /// refused by the engine.
    AdaptiveSetupInvalid,
    /// The engine state an adaptive decision (or engine snapshot) saw is not the state
    /// the log's outcomes give.
    AdaptiveStateMismatch,
    /// An engine state record (codes 22 and 23) is out of bounds, is not a state of
    /// the engine, lacks its pending records or its engine snapshot, or does not
    /// match that snapshot's digests (or the replayed state).
    AdaptiveStateRecordMismatch,
    /// An adaptive decision's regime does not re-derive.
    AdaptiveRegimeMismatch,
    /// An adaptive decision's exploration draw or drawn tier does not re-derive.
    AdaptiveDrawMismatch,
    /// An adaptive decision's floor (suggested, applied, client override) does not re-derive.
    AdaptiveFloorMismatch,
    /// An adaptive decision's propensity does not re-derive.
    AdaptivePropensityMismatch,
    /// An adaptive note is out of bounds, or the kernel input is not the caller's with
    /// the engine's floor and tier.
    AdaptiveInputMismatch,
    /// The log holds adaptive records and this build has no adaptive engine.
    AdaptiveUnsupported,
}

impl Reason {
    /// Every reason, in the order of the table in docs/CLI.md.
    pub const ALL: [Self; 44] = [
        Self::ChainBroken,
        Self::TornTail,
        Self::SuffixTruncated,
        Self::AnchorMismatch,
        Self::PolicyDigestMismatch,
        Self::InputDigestMismatch,
        Self::DecisionMismatch,
        Self::DecisionDigestMismatch,
        Self::Unreadable,
        Self::UnknownFormat,
        Self::WrongKey,
        Self::PolicyMissing,
        Self::TooManyPolicies,
        Self::BadArgument,
        Self::BooksBadHeader,
        Self::BooksMisplacedHeader,
        Self::TenantUnknown,
        Self::TenantDuplicate,
        Self::TenantNameInvalid,
        Self::AmountOutOfRange,
        Self::BudgetOutcomeMismatch,
        Self::Overspend,
        Self::SettlementUnknownDecision,
        Self::SettlementWrongTenant,
        Self::SettlementExceedsHold,
        Self::BooksSnapshotMismatch,
        Self::BooksUnbalanced,
        Self::OutcomeUnknownDecision,
        Self::OutcomeDigestMismatch,
        Self::OutcomeTooLarge,
        Self::HoldoutMismatch,
        Self::ShadowMismatch,
        Self::CheckpointSignatureInvalid,
        Self::InclusionProofInvalid,
        Self::NotConsistent,
        Self::AdaptiveSetupInvalid,
        Self::AdaptiveStateMismatch,
        Self::AdaptiveStateRecordMismatch,
        Self::AdaptiveRegimeMismatch,
        Self::AdaptiveDrawMismatch,
        Self::AdaptiveFloorMismatch,
        Self::AdaptivePropensityMismatch,
        Self::AdaptiveInputMismatch,
        Self::AdaptiveUnsupported,
    ];

    /// The reason code as printed and as written in JSON.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::ChainBroken => "CHAIN_BROKEN",
            Self::TornTail => "TORN_TAIL",
            Self::SuffixTruncated => "SUFFIX_TRUNCATED",
            Self::AnchorMismatch => "ANCHOR_MISMATCH",
            Self::PolicyDigestMismatch => "POLICY_DIGEST_MISMATCH",
            Self::InputDigestMismatch => "INPUT_DIGEST_MISMATCH",
            Self::DecisionMismatch => "DECISION_MISMATCH",
            Self::DecisionDigestMismatch => "DECISION_DIGEST_MISMATCH",
            Self::Unreadable => "UNREADABLE",
            Self::UnknownFormat => "UNKNOWN_FORMAT",
            Self::WrongKey => "WRONG_KEY",
            Self::PolicyMissing => "POLICY_MISSING",
            Self::TooManyPolicies => "TOO_MANY_POLICIES",
            Self::BadArgument => "BAD_ARGUMENT",
            Self::BooksBadHeader => "BOOKS_BAD_HEADER",
            Self::BooksMisplacedHeader => "BOOKS_MISPLACED_HEADER",
            Self::TenantUnknown => "TENANT_UNKNOWN",
            Self::TenantDuplicate => "TENANT_DUPLICATE",
            Self::TenantNameInvalid => "TENANT_NAME_INVALID",
            Self::AmountOutOfRange => "AMOUNT_OUT_OF_RANGE",
            Self::BudgetOutcomeMismatch => "BUDGET_OUTCOME_MISMATCH",
            Self::Overspend => "OVERSPEND",
            Self::SettlementUnknownDecision => "SETTLEMENT_UNKNOWN_DECISION",
            Self::SettlementWrongTenant => "SETTLEMENT_WRONG_TENANT",
            Self::SettlementExceedsHold => "SETTLEMENT_EXCEEDS_HOLD",
            Self::BooksSnapshotMismatch => "BOOKS_SNAPSHOT_MISMATCH",
            Self::BooksUnbalanced => "BOOKS_UNBALANCED",
            Self::OutcomeUnknownDecision => "OUTCOME_UNKNOWN_DECISION",
            Self::OutcomeDigestMismatch => "OUTCOME_DIGEST_MISMATCH",
            Self::OutcomeTooLarge => "OUTCOME_TOO_LARGE",
            Self::HoldoutMismatch => "HOLDOUT_MISMATCH",
            Self::ShadowMismatch => "SHADOW_MISMATCH",
            Self::CheckpointSignatureInvalid => "CHECKPOINT_SIGNATURE_INVALID",
            Self::InclusionProofInvalid => "INCLUSION_PROOF_INVALID",
            Self::NotConsistent => "NOT_CONSISTENT",
            Self::AdaptiveSetupInvalid => "ADAPTIVE_SETUP_INVALID",
            Self::AdaptiveStateMismatch => "ADAPTIVE_STATE_MISMATCH",
            Self::AdaptiveStateRecordMismatch => "ADAPTIVE_STATE_RECORD_MISMATCH",
            Self::AdaptiveRegimeMismatch => "ADAPTIVE_REGIME_MISMATCH",
            Self::AdaptiveDrawMismatch => "ADAPTIVE_DRAW_MISMATCH",
            Self::AdaptiveFloorMismatch => "ADAPTIVE_FLOOR_MISMATCH",
            Self::AdaptivePropensityMismatch => "ADAPTIVE_PROPENSITY_MISMATCH",
            Self::AdaptiveInputMismatch => "ADAPTIVE_INPUT_MISMATCH",
            Self::AdaptiveUnsupported => "ADAPTIVE_UNSUPPORTED",
        }
    }

    /// The outcome a finding with this reason gives.
    #[must_use]
    pub const fn outcome(self) -> Outcome {
        match self {
            Self::ChainBroken
            | Self::TornTail
            | Self::SuffixTruncated
            | Self::AnchorMismatch
            | Self::PolicyDigestMismatch
            | Self::InputDigestMismatch
            | Self::DecisionMismatch
            | Self::DecisionDigestMismatch
            | Self::BooksBadHeader
            | Self::BooksMisplacedHeader
            | Self::TenantUnknown
            | Self::TenantDuplicate
            | Self::TenantNameInvalid
            | Self::AmountOutOfRange
            | Self::BudgetOutcomeMismatch
            | Self::Overspend
            | Self::SettlementUnknownDecision
            | Self::SettlementWrongTenant
            | Self::SettlementExceedsHold
            | Self::BooksSnapshotMismatch
            | Self::BooksUnbalanced
            | Self::OutcomeUnknownDecision
            | Self::OutcomeDigestMismatch
            | Self::OutcomeTooLarge
            | Self::HoldoutMismatch
            | Self::ShadowMismatch
            | Self::CheckpointSignatureInvalid
            | Self::InclusionProofInvalid
            | Self::NotConsistent
            | Self::AdaptiveSetupInvalid
            | Self::AdaptiveStateMismatch
            | Self::AdaptiveStateRecordMismatch
            | Self::AdaptiveRegimeMismatch
            | Self::AdaptiveDrawMismatch
            | Self::AdaptiveFloorMismatch
            | Self::AdaptivePropensityMismatch
            | Self::AdaptiveInputMismatch => Outcome::Diverged,
            Self::Unreadable
            | Self::UnknownFormat
            | Self::WrongKey
            | Self::PolicyMissing
            | Self::TooManyPolicies
            | Self::BadArgument
            | Self::AdaptiveUnsupported => Outcome::Error,
        }
    }
}

/// The codes of failures that are not findings of a log (usage errors, input
/// files, the demo). Together with [`Reason`] this is the one place where a code
/// is spelt; every command prints codes through [`Reason::code`] and
/// [`Code::code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The command line is malformed (exit 2).
    Usage,
    /// `show --seq N` names a record the log does not hold (exit 2).
    NotFound,
    /// A JSON file holds more than the limit (exit 1).
    TooLarge,
    /// A JSON file is not JSON of the right shape (exit 1).
    InvalidJson,
    /// A TOML policy file is not TOML of the right shape (exit 1).
    InvalidToml,
    /// A policy file breaks a policy rule (exit 1).
    InvalidPolicy,
    /// A request file breaks a request rule (exit 1).
    InvalidRequest,
    /// The demo's directory already holds a demo log (exit 2).
    DirNotEmpty,
    /// The demo's gate failed (exit 2).
    DemoFailed,
    /// The demo's log does not verify or disagrees with what was decided (exit 2).
    DemoCheckFailed,
    /// `regret`, `shadow`, `promote`, `rollback`: the gate directory does not verify
    /// or cannot be read (exit 2).
    LogNotVerified,
    /// `regret`: no selection with an outcome to estimate from (exit 2).
    NoOutcomes,
    /// `promote`: the report does not pass its criteria (exit 1).
    NotPromotable,
    /// `promote`: the report's digest is not the digest of the report recomputed from
    /// the directory and the candidate (exit 1).
    ReportMismatch,
    /// `rollback`: no promotion installed the policy in force (exit 2).
    NothingToRollBack,
    /// `promote`, `rollback`: the gate failed to open or to write (exit 2).
    GateFailed,
    /// The simulation's gate or engine failed (exit 2).
    SimulateFailed,
    /// A simulation log does not verify or disagrees with the closed-form table (exit 2).
    SimulateCheckFailed,
}

impl Code {
    /// Every code.
    pub const ALL: [Self; 18] = [
        Self::Usage,
        Self::NotFound,
        Self::TooLarge,
        Self::InvalidJson,
        Self::InvalidToml,
        Self::InvalidPolicy,
        Self::InvalidRequest,
        Self::DirNotEmpty,
        Self::DemoFailed,
        Self::DemoCheckFailed,
        Self::LogNotVerified,
        Self::NoOutcomes,
        Self::NotPromotable,
        Self::ReportMismatch,
        Self::NothingToRollBack,
        Self::GateFailed,
        Self::SimulateFailed,
        Self::SimulateCheckFailed,
    ];

    /// The code as printed.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Usage => "USAGE",
            Self::NotFound => "NOT_FOUND",
            Self::TooLarge => "TOO_LARGE",
            Self::InvalidJson => "INVALID_JSON",
            Self::InvalidToml => "INVALID_TOML",
            Self::InvalidPolicy => "INVALID_POLICY",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::DirNotEmpty => "DIR_NOT_EMPTY",
            Self::DemoFailed => "DEMO_FAILED",
            Self::DemoCheckFailed => "DEMO_CHECK_FAILED",
            Self::LogNotVerified => "LOG_NOT_VERIFIED",
            Self::NoOutcomes => "NO_OUTCOMES",
            Self::NotPromotable => "NOT_PROMOTABLE",
            Self::ReportMismatch => "REPORT_MISMATCH",
            Self::NothingToRollBack => "NOTHING_TO_ROLL_BACK",
            Self::GateFailed => "GATE_FAILED",
            Self::SimulateFailed => "SIMULATE_FAILED",
            Self::SimulateCheckFailed => "SIMULATE_CHECK_FAILED",
        }
    }
}

/// Exit code of `calybris replay` when it refused to re-execute (REFUSED).
pub const EXIT_REFUSED: u8 = 3;

/// The four outcomes of `calybris replay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplayOutcome {
    /// Everything the request did was re-derived and matches the log.
    Verified,
    /// Something re-derived differs from the log: the reason names what.
    Diverged,
    /// The replay could not be done: the reason names why.
    Error,
    /// Re-executing is possible but was not allowed: the reason names the flag.
    Refused,
}

impl ReplayOutcome {
    /// The word printed first on the report line.
    #[must_use]
    pub const fn word(self) -> &'static str {
        match self {
            Self::Verified => "VERIFIED",
            Self::Diverged => "DIVERGED",
            Self::Error => "ERROR",
            Self::Refused => "REFUSED",
        }
    }

    /// The process exit code of the outcome.
    #[must_use]
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::Verified => EXIT_OK,
            Self::Diverged => EXIT_DIVERGED,
            Self::Error => EXIT_ERROR,
            Self::Refused => EXIT_REFUSED,
        }
    }
}

/// Why a replay did not end VERIFIED (`docs/CLI.md`, "replay"). Each reason belongs
/// to exactly one outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplayReason {
    /// Re-executing calls a provider, and `--allow-side-effects` was not given.
    SideEffectsNotAllowed,
    /// Re-executing opens a connection, and `--allow-network` was not given.
    NetworkNotAllowed,
    /// The record is not a request the gateway decided, or its execution cannot be
    /// reproduced (it did not serve a whole answer).
    ReplayNotReplayable,
    /// The request's body is not in the request-body archive.
    InputPointerMissing,
    /// The provider that served is not a local deterministic one, or is not known to
    /// the replay.
    ProviderNotSupported,
    /// The re-execution failed (the provider failed or is unreachable).
    ExecutionError,
    /// The archived body does not hash to the logged request SHA-256, or the kernel
    /// input re-derived from it is not the logged one.
    InputHashMismatch,
    /// The re-executed answer's SHA-256 is not the logged response SHA-256.
    OutputHashMismatch,
    /// The kernel, re-run under the logged policy, decides otherwise, or the books or
    /// the settlement do not follow from the decision and the execution.
    DecisionCoreMismatch,
    /// A record's bytes do not match their digests: the chain, a decision's digests,
    /// or the execution record's binding to its decision.
    EdrHashMismatch,
    /// The replay's environment is not the one that decided: the configuration's
    /// policy is not the logged one, or the log names a policy it does not hold.
    EnvironmentMismatch,
}

impl ReplayReason {
    /// Every reason.
    pub const ALL: [Self; 11] = [
        Self::SideEffectsNotAllowed,
        Self::NetworkNotAllowed,
        Self::ReplayNotReplayable,
        Self::InputPointerMissing,
        Self::ProviderNotSupported,
        Self::ExecutionError,
        Self::InputHashMismatch,
        Self::OutputHashMismatch,
        Self::DecisionCoreMismatch,
        Self::EdrHashMismatch,
        Self::EnvironmentMismatch,
    ];

    /// The code as printed.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::SideEffectsNotAllowed => "SIDE_EFFECTS_NOT_ALLOWED",
            Self::NetworkNotAllowed => "NETWORK_NOT_ALLOWED",
            Self::ReplayNotReplayable => "REPLAY_NOT_REPLAYABLE",
            Self::InputPointerMissing => "INPUT_POINTER_MISSING",
            Self::ProviderNotSupported => "PROVIDER_NOT_SUPPORTED",
            Self::ExecutionError => "EXECUTION_ERROR",
            Self::InputHashMismatch => "INPUT_HASH_MISMATCH",
            Self::OutputHashMismatch => "OUTPUT_HASH_MISMATCH",
            Self::DecisionCoreMismatch => "DECISION_CORE_MISMATCH",
            Self::EdrHashMismatch => "EDR_HASH_MISMATCH",
            Self::EnvironmentMismatch => "ENVIRONMENT_MISMATCH",
        }
    }

    /// The outcome the reason belongs to.
    #[must_use]
    pub const fn outcome(self) -> ReplayOutcome {
        match self {
            Self::SideEffectsNotAllowed | Self::NetworkNotAllowed => ReplayOutcome::Refused,
            Self::ReplayNotReplayable
            | Self::InputPointerMissing
            | Self::ProviderNotSupported
            | Self::ExecutionError => ReplayOutcome::Error,
            Self::InputHashMismatch
            | Self::OutputHashMismatch
            | Self::DecisionCoreMismatch
            | Self::EdrHashMismatch
            | Self::EnvironmentMismatch => ReplayOutcome::Diverged,
        }
    }
}

/// What stopped a verification, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The reason code.
    pub reason: Reason,
    /// The record at fault, when there is one.
    pub sequence: Option<u64>,
    /// Byte offset of that record's frame (or of a header) in its file.
    pub offset_bytes: Option<u64>,
    /// The segment file holding it, for a segment directory.
    pub segment: Option<PathBuf>,
    /// The first differing decision field, for [`Reason::DecisionMismatch`].
    pub field: Option<&'static str>,
    /// One human sentence, without a trailing period.
    pub detail: String,
}

impl Finding {
    /// A finding that names no position.
    #[must_use]
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            sequence: None,
            offset_bytes: None,
            segment: None,
            field: None,
            detail: detail.into(),
        }
    }

    /// Names the record and byte offset.
    #[must_use]
    pub fn at(mut self, sequence: Option<u64>, offset_bytes: Option<u64>) -> Self {
        self.sequence = sequence;
        self.offset_bytes = offset_bytes;
        self
    }
}

/// Counts of what a scan verified before it ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records verified (policies plus decisions).
    pub records: u64,
    /// Policy records verified.
    pub policies: u64,
    /// Decision records verified and replayed.
    pub decisions: u64,
}

/// One tenant's books at the end of a verified gate log, in microunits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TenantTotals {
    /// The tenant's name.
    pub tenant: String,
    /// Every amount ever granted (opening budget plus top-ups).
    pub initial_microunits: i64,
    /// Spent over the tenant's lifetime.
    pub committed_microunits: i64,
    /// Held by open reservations.
    pub reserved_microunits: i64,
    /// Spendable.
    pub remaining_microunits: i64,
}

/// Counts by record kind of a verified gate log (see `calybris_gate::RecordCounts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GateCounts {
    /// Policy records.
    pub policies: u64,
    /// Decision records, replayed.
    pub decisions: u64,
    /// Of those, admitted (reserved or not priced).
    pub admitted: u64,
    /// Of those, selections the budget refused.
    pub refused_by_budget: u64,
    /// Of those, rejected by the kernel.
    pub rejected_by_kernel: u64,
    /// Settlement records.
    pub settlements: u64,
    /// Of those, commits through the overrun path.
    pub overruns: u64,
    /// Of those, releases at reopen.
    pub released_at_reopen: u64,
    /// Of those, holds spent in full at reopen.
    pub committed_at_reopen: u64,
    /// Outcome records.
    pub outcomes: u64,
    /// Book snapshots, each checked.
    pub snapshots: u64,
    /// Tenant, top-up and limit records.
    pub budget_changes: u64,
    /// Policy-names records, each checked against the policy it names.
    pub policy_names: u64,
    /// Execution records (the gateway's provider calls), checked or not.
    pub executions: u64,
    /// Of those, served in full by a provider.
    pub executions_served: u64,
    /// Of those, not served: every provider failed, the client went away, or the
    /// executor failed.
    pub executions_failed: u64,
    /// Requests refused for their authority lease.
    pub lease_refusals: u64,
    /// Promotion and rollback records.
    pub promotions: u64,
    /// Adaptive decisions, each re-derived.
    pub adaptive_decisions: u64,
    /// Engine snapshots, each checked.
    pub engine_snapshots: u64,
    /// Engine state records, each checked against its engine snapshot (and the
    /// replayed state where the log was replayed up to it).
    pub engine_states: u64,
    /// Adaptive decisions of a retained log before its first engine state record
    /// (their effect is in that record; not re-derived).
    pub adaptive_unchecked: u64,
    /// Checkpoint records (signed tree heads), each checked against the Merkle
    /// tree of the records before it.
    pub checkpoints: u64,
}

/// What verifying a gate directory established besides the chain and the replay:
/// the books rebuilt in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateSummary {
    /// Records by kind.
    pub counts: GateCounts,
    /// Every tenant's books, in ascending byte order of name.
    pub tenants: Vec<TenantTotals>,
    /// Holds still open at the end of the log.
    pub open_holds: u64,
    /// The conservation proof's `calyldg1` ledger digest of the final books.
    pub ledger_digest: calybris::finance::LedgerDigest,
    /// Whether every tenant's books balance.
    pub balanced: bool,
    /// Selections by selected model, with the model's and its provider's names where
    /// the log holds them (ascending model id).
    pub models: Vec<calybris::gate::ModelSelections>,
}

/// A model as a report names it: its name where the log holds one, else `model ID`.
#[must_use]
pub fn model_label(model_id: u32, name: Option<&str>) -> String {
    name.map_or_else(|| format!("model {model_id}"), str::to_owned)
}

/// A provider as a report names it: its name where the log holds one, else
/// `provider ID`.
#[must_use]
pub fn provider_label(provider_id: u16, name: Option<&str>) -> String {
    name.map_or_else(|| format!("provider {provider_id}"), str::to_owned)
}

/// Microunits as decimal units with six decimals (`-0.000123`, `12.500000`): exact.
#[must_use]
pub fn units_text(microunits: i64) -> String {
    let sign = if microunits < 0 { "-" } else { "" };
    let magnitude = microunits.unsigned_abs();
    format!(
        "{sign}{}.{:06}",
        magnitude / 1_000_000,
        magnitude % 1_000_000
    )
}

impl GateSummary {
    /// The lines `calybris verify` prints after the VERIFIED line of a gate directory.
    #[must_use]
    pub fn text(&self) -> String {
        let c = &self.counts;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "records by kind: {} policies ({} policy-names records), {} decisions ({} admitted, {} refused by the budget, {} rejected by the kernel), {} settlements ({} overruns, {} released at reopen, {} spent in full at reopen), {} outcomes, {} book snapshots, {} budget changes",
            c.policies,
            c.policy_names,
            c.decisions,
            c.admitted,
            c.refused_by_budget,
            c.rejected_by_kernel,
            c.settlements,
            c.overruns,
            c.released_at_reopen,
            c.committed_at_reopen,
            c.outcomes,
            c.snapshots,
            c.budget_changes
        );
        let _ = writeln!(
            out,
            "executions: {} ({} served, {} failed), {} lease refusals, {} promotions, {} checkpoints",
            c.executions,
            c.executions_served,
            c.executions_failed,
            c.lease_refusals,
            c.promotions,
            c.checkpoints
        );
        let _ = writeln!(
            out,
            "tenants: {} (microunits; units in parentheses)",
            self.tenants.len()
        );
        let _ = writeln!(
            out,
            "  {:<24} {:>28} {:>28} {:>28} {:>28}",
            "tenant", "initial", "committed", "reserved", "remaining"
        );
        let cell = |microunits: i64| format!("{microunits} ({})", units_text(microunits));
        for row in &self.tenants {
            let _ = writeln!(
                out,
                "  {:<24} {:>28} {:>28} {:>28} {:>28}",
                row.tenant,
                cell(row.initial_microunits),
                cell(row.committed_microunits),
                cell(row.reserved_microunits),
                cell(row.remaining_microunits)
            );
        }
        if !self.models.is_empty() {
            let _ = writeln!(
                out,
                "selections by model: {} (model, provider, selections, estimated cost in microunits)",
                self.models.len()
            );
            for row in &self.models {
                let _ = writeln!(
                    out,
                    "  {:<32} {:<24} {:>12} {:>24}",
                    model_label(row.model_id, row.model.as_deref()),
                    provider_label(row.provider_id, row.provider.as_deref()),
                    row.selections,
                    row.estimated_cost_microunits
                );
            }
        }
        let _ = writeln!(out, "open holds: {}", self.open_holds);
        let _ = writeln!(
            out,
            "conservation: {}, ledger digest {}",
            if self.balanced {
                "balanced"
            } else {
                "NOT BALANCED"
            },
            self.ledger_digest.to_hex()
        );
        out
    }
}

/// The report of one verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The file or directory verified.
    pub path: PathBuf,
    /// Whether a key was given.
    pub keyed: bool,
    /// Whether an anchor was given.
    pub anchored: bool,
    /// What was verified before the end (or the finding).
    pub counts: Counts,
    /// The position after the last verified record.
    pub anchor: Option<WalAnchor>,
    /// Why it did not verify; `None` when it did.
    pub finding: Option<Finding>,
    /// For a gate directory that verified: the books rebuilt from its log.
    pub gate: Option<GateSummary>,
}

/// The JSON form of a [`Report`]: one object, every key always present.
#[derive(Serialize)]
struct JsonReport<'a> {
    outcome: Outcome,
    reason: Option<Reason>,
    path: String,
    keyed: bool,
    anchored: bool,
    records: u64,
    policies: u64,
    decisions: u64,
    sequence: Option<u64>,
    offset_bytes: Option<u64>,
    segment: Option<String>,
    field: Option<&'a str>,
    anchor: Option<String>,
    message: String,
    gate: Option<JsonGate<'a>>,
}

/// The JSON form of a [`GateSummary`].
#[derive(Serialize)]
struct JsonGate<'a> {
    counts: GateCounts,
    tenants: Vec<JsonTenant<'a>>,
    open_holds: u64,
    ledger_digest: String,
    balanced: bool,
    models: &'a [calybris::gate::ModelSelections],
}

/// One tenant in [`JsonGate`]: microunits as integers, units as exact decimal strings.
#[derive(Serialize)]
struct JsonTenant<'a> {
    tenant: &'a str,
    initial_microunits: i64,
    committed_microunits: i64,
    reserved_microunits: i64,
    remaining_microunits: i64,
    initial_units: String,
    committed_units: String,
    reserved_units: String,
    remaining_units: String,
}

impl<'a> JsonGate<'a> {
    fn new(summary: &'a GateSummary) -> Self {
        Self {
            counts: summary.counts,
            tenants: summary
                .tenants
                .iter()
                .map(|row| JsonTenant {
                    tenant: &row.tenant,
                    initial_microunits: row.initial_microunits,
                    committed_microunits: row.committed_microunits,
                    reserved_microunits: row.reserved_microunits,
                    remaining_microunits: row.remaining_microunits,
                    initial_units: units_text(row.initial_microunits),
                    committed_units: units_text(row.committed_microunits),
                    reserved_units: units_text(row.reserved_microunits),
                    remaining_units: units_text(row.remaining_microunits),
                })
                .collect(),
            open_holds: summary.open_holds,
            ledger_digest: summary.ledger_digest.to_hex(),
            balanced: summary.balanced,
            models: &summary.models,
        }
    }
}

/// The text form of an anchor: `NEXT_SEQUENCE:HEAD_HASH_HEX` (its `Display`).
#[must_use]
pub fn anchor_text(anchor: &WalAnchor) -> String {
    anchor.to_string()
}

/// Parses the text form of an anchor (see [`anchor_text`]; the parser is the
/// `FromStr` of [`WalAnchor`]).
///
/// # Errors
/// A [`Finding`] with [`Reason::BadArgument`] naming what is wrong.
pub fn parse_anchor(text: &str) -> Result<WalAnchor, Finding> {
    text.parse::<WalAnchor>().map_err(|error| {
        Finding::new(
            Reason::BadArgument,
            format!("anchor {text:?} is not NEXT_SEQUENCE:HEAD_HASH_HEX ({error})"),
        )
    })
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

impl Report {
    /// The outcome.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        self.finding
            .as_ref()
            .map_or(Outcome::Verified, |finding| finding.reason.outcome())
    }

    /// The one-line human form: the outcome word first, then the reason code.
    #[must_use]
    pub fn line(&self) -> String {
        let c = &self.counts;
        let Some(finding) = &self.finding else {
            let anchor = self.anchor.as_ref().map(anchor_text).unwrap_or_default();
            let anchored = if self.anchored {
                "checked against the given anchor"
            } else {
                "not anchored: keep this anchor and pass it with --anchor to detect a cut-off end"
            };
            return format!(
                "VERIFIED {}: {} records ({} policies, {} decisions replayed), anchor {anchor} ({anchored})",
                display(&self.path),
                c.records,
                c.policies,
                c.decisions
            );
        };
        let mut line = format!(
            "{} {}",
            finding.reason.outcome().word(),
            finding.reason.code()
        );
        if let Some(field) = finding.field {
            let _ = write!(line, " field={field}");
        }
        if let Some(sequence) = finding.sequence {
            let _ = write!(line, " sequence={sequence}");
        }
        if let Some(offset) = finding.offset_bytes {
            let _ = write!(line, " offset={offset}");
        }
        let place = finding.segment.as_deref().unwrap_or(&self.path);
        let _ = write!(line, " {}: {}", display(place), finding.detail);
        if finding.reason.outcome() == Outcome::Diverged {
            let _ = write!(line, " ({} records verified before it)", c.records);
        }
        line
    }

    /// The JSON form, one object on one line.
    #[must_use]
    pub fn json(&self) -> String {
        // Encoding a value of strings, integers and booleans cannot fail; fall
        // back to a minimal object rather than panic if it ever did.
        serde_json::to_string(&self.json_value()).unwrap_or_else(|_| {
            format!(
                "{{\"outcome\":\"{}\",\"message\":\"report could not be encoded\"}}",
                self.outcome().word()
            )
        })
    }

    /// The JSON form as a value (the `verify` object of `inspect --json`).
    #[must_use]
    pub fn json_value(&self) -> serde_json::Value {
        let finding = self.finding.as_ref();
        let message = finding.map_or_else(|| self.line(), |f| f.detail.clone());
        let report = JsonReport {
            outcome: self.outcome(),
            reason: finding.map(|f| f.reason),
            path: display(&self.path),
            keyed: self.keyed,
            anchored: self.anchored,
            records: self.counts.records,
            policies: self.counts.policies,
            decisions: self.counts.decisions,
            sequence: finding.and_then(|f| f.sequence),
            offset_bytes: finding.and_then(|f| f.offset_bytes),
            segment: finding.and_then(|f| f.segment.as_deref()).map(display),
            field: finding.and_then(|f| f.field),
            anchor: self.anchor.as_ref().map(anchor_text),
            message,
            gate: self.gate.as_ref().map(JsonGate::new),
        };
        serde_json::to_value(&report).unwrap_or_else(|_| {
            serde_json::json!({
                "outcome": self.outcome().word(),
                "message": "report could not be encoded",
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_text_round_trips() {
        let anchor = WalAnchor {
            next_sequence: 12,
            head_hash: [0xab; 32],
        };
        let text = anchor_text(&anchor);
        assert!(text.starts_with("12:abab"));
        assert_eq!(parse_anchor(&text), Ok(anchor));
    }

    #[test]
    fn malformed_anchors_are_bad_arguments() {
        for text in [
            "",
            "12",
            "x:00",
            "12:zz",
            "-1:00",
            &format!("1:{}", "A".repeat(64)),
        ] {
            let finding = parse_anchor(text).err();
            assert_eq!(
                finding.map(|f| f.reason),
                Some(Reason::BadArgument),
                "{text}"
            );
        }
    }

    #[test]
    fn units_are_exact_decimals() {
        assert_eq!(units_text(0), "0.000000");
        assert_eq!(units_text(12_500_000), "12.500000");
        assert_eq!(units_text(-123), "-0.000123");
        assert_eq!(units_text(i64::MIN), "-9223372036854.775808");
    }

    #[test]
    fn every_reason_has_one_outcome_and_a_distinct_code() {
        let mut codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
        assert!(Reason::ALL.iter().all(|r| r.outcome() != Outcome::Verified));
        for reason in Reason::ALL {
            let json = serde_json::to_string(&reason).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", reason.code()));
        }
        for code in Code::ALL {
            assert!(codes.binary_search(&code.code()).is_err(), "{code:?}");
        }
        let mut replay: Vec<&str> = ReplayReason::ALL.iter().map(|r| r.code()).collect();
        replay.sort_unstable();
        replay.dedup();
        assert_eq!(replay.len(), ReplayReason::ALL.len());
        for reason in ReplayReason::ALL {
            assert_ne!(reason.outcome(), ReplayOutcome::Verified);
            let json = serde_json::to_string(&reason).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", reason.code()));
            assert!(codes.binary_search(&reason.code()).is_err(), "{reason:?}");
        }
    }

    /// Codes are spelt here only: no other source file of the command holds one
    /// as a string literal.
    #[test]
    fn codes_are_spelt_in_this_file_only() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let codes: Vec<&str> = Reason::ALL
            .iter()
            .map(|r| r.code())
            .chain(Code::ALL.iter().map(|c| c.code()))
            .chain(ReplayReason::ALL.iter().map(|r| r.code()))
            .collect();
        let entries = std::fs::read_dir(&src).expect("src/");
        let mut read = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|name| name == "report.rs") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            read += 1;
            for code in &codes {
                assert!(
                    !text.contains(&format!("\"{code}\""))
                        && !text.contains(&format!("\"ERROR {code}"))
                        && !text.contains(&format!("\"DIVERGED {code}"))
                        && !text.contains(&format!("\"REFUSED {code}"))
                        && !text.contains(&format!("\"INVALID {code}")),
                    "{} spells the code {code}; use report::Reason or report::Code",
                    path.display()
                );
            }
        }
        assert!(read >= 5, "read only {read} source files");
    }
}
