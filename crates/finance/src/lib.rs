//! Ledger digests, conservation proofs and financial certificates for a
//! [`calybris_budget`] engine.
//!
//! A budget whose books balance is only useful to an auditor if the balance
//! can be shown later, elsewhere, without trusting the service. This crate
//! turns a frozen [`BudgetSnapshot`] into evidence:
//!
//! - [`ledger_digest`]: the `calyldg1` SHA-256 digest of the snapshot (every
//!   tenant's four balances, the snapshot version and the open reservations),
//!   optionally bound to a WAL high watermark. The layout is the published
//!   CALY ledger format, so the digest can be recomputed by any other
//!   implementation of it; it is checked against `calybris-core` 1.3.0 in the
//!   workspace's conformance tests.
//! - [`prove_conservation`] / [`prove_snapshot`]: a [`ConservationProof`]
//!   with per-tenant balances and deltas, exact totals (a total that does not
//!   fit `i64` is reported as [`Total::DoesNotFit`], never wrapped), the
//!   ledger digest, and whether every tenant balances.
//! - [`Certifier`]: issues [`FinancialCertificate`]s that also carry the
//!   spend since the previous certificate, with a baseline that only moves
//!   forward.
//! - [`DurableLedger`]: a budget engine whose every operation (tenant
//!   created, top-up, reserve, commit, release) is journaled as a
//!   [`JournalRecord`] through `calybris-wal` with group commit, and
//!   acknowledged only once durable. [`DurableLedger::open`] replays the
//!   journal; reservations open at a crash are released (and the release
//!   journaled), and [`LedgerRecovery::digest_at_recovery`] is the digest of
//!   the last durable state. [`DurableLedger::recover`] does the same
//!   read-only, for auditors.
//!
//! # What it does not do
//!
//! It does not move money: reservations, commits and top-ups are
//! [`calybris_budget`]'s. It does not sign anything: a digest is evidence of
//! content, and binding it to an identity (HMAC, signatures) is the WAL's or
//! the caller's job. The journal does not snapshot or compact: recovery
//! replays the whole log, so its time grows with the number of operations.
//!
//! # Example
//!
//! ```
//! use calybris_budget::BudgetEngine;
//! use calybris_finance::{Certifier, Total, prove_conservation};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = BudgetEngine::new();
//! engine.ensure_tenant("acme", 1_000)?;
//! engine.try_reserve("acme", 400)?.commit(250)?;
//!
//! let proof = prove_conservation(&engine, Some(42))?;
//! assert!(proof.balanced);
//! assert_eq!(proof.totals.committed, Total::Exact(250));
//! assert_eq!(proof.ledger_digest.to_hex().len(), 64);
//!
//! let certifier = Certifier::new();
//! let first = certifier.certify_engine(&engine, None)?;
//! engine.try_reserve("acme", 100)?.commit(100)?;
//! let second = certifier.certify_engine(&engine, None)?;
//! assert_eq!(first.committed_since_previous, Total::Exact(250));
//! assert_eq!(second.committed_since_previous, Total::Exact(100));
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! None. The crate needs `std`, `calybris-budget` (with its `serde` feature),
//! `calybris-digest` (the ledger layout), `calybris-wal` and `serde`. Every result type
//! ([`ConservationProof`], [`Totals`], [`Total`], [`TenantBalance`], [`LedgerDigest`],
//! [`FinancialCertificate`], [`CertificateBaseline`]) is `Serialize` and `Deserialize`.
//!
//! [`BudgetSnapshot`]: calybris_budget::BudgetSnapshot

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod digest;
mod journal;
mod proof;

pub use digest::{
    LEDGER_DIGEST_TAG, LedgerDigest, LedgerDigestError, WAL_WATERMARK_LABEL, ledger_digest,
};
pub use journal::{DurableLedger, DurableReservation, JournalRecord, LedgerError, LedgerRecovery};
pub use proof::{
    CertificateBaseline, CertificateError, Certifier, ConservationProof, FinancialCertificate,
    TenantBalance, Total, Totals, prove_conservation, prove_snapshot,
};

/// The journal's log settings (re-exported from `calybris-wal`).
pub use calybris_wal::DurableConfig;

/// Microcents in one cent (re-exported from [`calybris_budget`]).
pub use calybris_budget::MICROCENTS_PER_CENT;
