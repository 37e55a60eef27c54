//! Why a gate operation failed.

use std::path::PathBuf;

use calybris_budget::BudgetError;
use calybris_finance::LedgerDigestError;
use calybris_kernel::InputError;
use calybris_wal::WalError;

use crate::books::BooksError;
use crate::gate::ReservationId;

/// Why a gate operation failed. A failed `decide` holds nothing and logs nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// A policy's name map is not valid on its own or for the policy; nothing was
    /// logged.
    #[error("invalid policy names: {0}")]
    InvalidNames(#[from] crate::names::NameMapError),
    /// No tenant has this name.
    #[error("unknown tenant {tenant:?}")]
    UnknownTenant {
        /// The name looked up.
        tenant: String,
    },
    /// A tenant name is empty or longer than [`crate::MAX_TENANT_NAME_BYTES`].
    #[error("invalid tenant name of {len_bytes} bytes (1 to 256 bytes)")]
    InvalidTenant {
        /// Its length.
        len_bytes: usize,
    },
    /// The request is malformed (the kernel's input check); nothing was logged.
    #[error("invalid request: {0}")]
    Input(#[from] InputError),
    /// An amount is zero where it must be positive, or does not fit the books' `i64`.
    #[error("amount of {amount_microunits} microunits is out of range")]
    AmountOutOfRange {
        /// The amount.
        amount_microunits: u64,
    },
    /// A non-zero cost was settled against a decision that was not admitted.
    #[error("decision {log_sequence} was not admitted; it cannot be charged")]
    NotAdmitted {
        /// The decision's sequence number.
        log_sequence: u64,
    },
    /// No hold with this id is open (never admitted, or settled already).
    #[error("no open reservation {id}")]
    UnknownReservation {
        /// The id.
        id: ReservationId,
    },
    /// The tenant cannot cover a settlement's excess over its hold; the hold stays
    /// open under its reservation id.
    #[error(
        "overrun not covered: {actual_microunits} microunits against a hold of {held_microunits} with {remaining_microunits} spendable"
    )]
    OverrunNotCovered {
        /// The amount held.
        held_microunits: u64,
        /// The cost to settle.
        actual_microunits: u64,
        /// The spendable budget seen.
        remaining_microunits: i64,
    },
    /// An outcome's detail is longer than [`crate::MAX_OUTCOME_DETAIL_BYTES`].
    #[error("outcome detail of {len_bytes} bytes is over the limit")]
    OutcomeTooLarge {
        /// Its length.
        len_bytes: usize,
    },
    /// An execution or lease-refusal record breaks a bound (attempts, name lengths).
    #[error("a {kind} record out of bounds")]
    RecordOutOfBounds {
        /// The record's kind.
        kind: &'static str,
    },
    /// The budget engine refused an operation the gate had checked (a bug) or a
    /// configured tenant.
    #[error("budget: {0}")]
    Budget(#[from] BudgetError),
    /// A budget node operation was refused (unknown node, invalid definition or
    /// route, or a commit above the hold of a decision holding budget nodes).
    #[error("budget node: {0}")]
    Tree(#[from] calybris_budget::TreeError),
    /// The books rebuilt from the log could not be loaded into the engine.
    #[error("restoring the books: {0}")]
    Restore(String),
    /// The log failed: storage, a refusal on open (corruption, wrong key, another
    /// writer), or a write or sync error (which poisons the gate).
    #[error("log: {0}")]
    Log(#[from] WalError),
    /// A log record does not fold into balanced books.
    #[error("record {sequence}: {error}")]
    Books {
        /// The record.
        sequence: u64,
        /// Why.
        error: BooksError,
    },
    /// A log failure poisoned the gate earlier: nothing is accepted, and the
    /// in-memory books are not trusted, until the gate is reopened.
    #[error("the gate is poisoned by an earlier log failure; reopen it")]
    Poisoned,
    /// The books do not fit one snapshot record.
    #[error("the books do not fit one snapshot record")]
    SnapshotTooLarge,
    /// `close` was called while other handles or admissions refer to the gate.
    #[error("{handles} other handles or admissions still refer to the gate")]
    StillShared {
        /// How many.
        handles: usize,
    },
    /// The books cannot be digested.
    #[error("ledger digest: {0}")]
    Digest(#[from] LedgerDigestError),
    /// The gate directory could not be created.
    #[error("gate directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A checkpoint could not be taken: the signer failed, or its note is too
    /// large for a checkpoint record.
    #[error("checkpoint: {detail}")]
    CheckpointFailed {
        /// What went wrong.
        detail: String,
    },
    /// Checkpoints are configured on a log whose first segments were retired:
    /// leaf `n` of the tree is sequence `n`, so it needs the log from 0.
    #[error(
        "checkpoints need the whole log, but it starts at sequence {first_sequence} (retired segments)"
    )]
    CheckpointsNeedWholeLog {
        /// The first sequence in the log.
        first_sequence: u64,
    },
    /// A shadow candidate is already staged: one at a time (unstage it first).
    #[error("candidate {staged} is already staged for shadow evaluation; unstage it before staging {candidate}", staged = calybris_digest::Hex(&staged.0), candidate = calybris_digest::Hex(&candidate.0))]
    ShadowAlreadyStaged {
        /// Digest of the candidate staged.
        staged: calybris_digest::Digest,
        /// Digest of the candidate refused.
        candidate: calybris_digest::Digest,
    },
    /// No shadow candidate is staged.
    #[error("no shadow candidate is staged")]
    NoShadowStaged,
    /// The adaptive setup does not build an engine; nothing was logged.
    #[cfg(feature = "adaptive")]
    #[error("{0}")]
    AdaptiveSetup(#[from] crate::adaptive_engine::SetupError),
    /// The engine refuses a request (its features); nothing was logged.
    #[cfg(feature = "adaptive")]
    #[error("the adaptive engine: {0}")]
    Learn(#[from] calybris_adapt::error::LearnError),
    /// `Gate::decide_adaptive` (feature `adaptive`) on a gate opened
    /// without an adaptive setup.
    #[error("this gate has no adaptive engine")]
    AdaptiveNotConfigured,
    /// Too many adaptive decisions wait for their outcome; nothing was logged.
    #[error("{pending} adaptive decisions wait for their outcome: record outcomes first")]
    AdaptivePendingFull {
        /// The bound, [`MAX_ADAPTIVE_PENDING`](crate::adaptive::MAX_ADAPTIVE_PENDING).
        pending: usize,
    },
    /// An adaptive gate was opened on a retained log (one that starts after record 0)
    /// that holds adaptive decisions but neither a complete engine state record
    /// ([`GateRecord::EngineState`](crate::record::GateRecord::EngineState), with its
    /// pending records and snapshot) nor its setup after its first book snapshot: there
    /// is no state to replay the engine from.
    #[error(
        "an adaptive gate cannot reopen this retained log (it starts at record {records}): no engine state record to replay from"
    )]
    AdaptiveReopen {
        /// The first record the log holds.
        records: u64,
    },
    /// The log's adaptive setup is not the configured one; nothing was logged.
    #[error("the log's adaptive setup differs from the configured one")]
    AdaptiveSetupChanged,
    /// Replaying the log's adaptive records at reopen failed (as the verifier would).
    #[cfg(feature = "adaptive")]
    #[error("{0}")]
    AdaptiveReplay(Box<crate::VerifyError>),
    /// [`Retention::SinceLastSnapshot`](crate::Retention::SinceLastSnapshot) was
    /// configured with a feature that needs the whole log from record 0 (checkpoints:
    /// leaf `n` of the tree is record `n`). Such a gate would retire segments it could
    /// never reopen without, so [`Gate::open`](crate::Gate::open) refuses it before
    /// anything is written. (The adaptive engine no longer conflicts: it writes its
    /// whole state after each book snapshot.)
    #[error(
        "retention (Retention::SinceLastSnapshot) cannot be combined with {with}: it needs the whole log from record 0"
    )]
    RetentionConflict {
        /// The feature: `"checkpoints"`.
        with: &'static str,
    },
}
