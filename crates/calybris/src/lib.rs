//! Calybris: a deterministic, proof-carrying decision core.
//!
//! A service hands Calybris a frozen policy (a catalog of candidates: LLM models,
//! trading venues, suppliers) and a typed request; Calybris returns exactly one action
//! (execute the requested candidate, substitute another, or reject) with canonical
//! SHA-256 digests, and anyone can replay the same inputs later, on another machine,
//! and get the identical decision. Integer arithmetic only, no clock, no randomness,
//! no `unsafe`.
//!
//! This crate is the thin facade: it re-exports the `calybris-*` crates, enabled by
//! feature, and a [`prelude`]. Depend on the micro-crates directly when you want less.
//! It holds no logic of its own.
//!
//! | module | crate | what it owns |
//! |---|---|---|
//! | [`kernel`] | `calybris-kernel` | types, validation, `prescribe`, trace, explain, replay |
//! | [`digest`] | `calybris-digest` | the CALY digests, sealed policies, audit bundles |
//! | `wal` | `calybris-wal` | the hash-chained write-ahead log, group commit, audited records |
//! | `budget` | `calybris-budget` | lock-free per-tenant budgets and reservations |
//! | `finance` | `calybris-finance` | ledger digest, conservation proofs, certificates |
//! | `gate` | `calybris-gate` | `Gate`: decide, reserve, settle, outcomes in one chained log per directory; `verify_dir` |
//!
//! # Example
//! ```
//! use calybris::prelude::*;
//!
//! let model = |model_id, quality_bps, input_price| KernelModel {
//!     model_id, provider_id: 0, quality_bps, risk_ceiling_bps: 8_000, enabled: 1,
//!     p95_latency_ms: 600, capabilities: 0b1, region_mask: 0b1,
//!     input_cost_microunits_per_million_tokens: input_price,
//!     output_cost_microunits_per_million_tokens: input_price * 4,
//! };
//! let policy = SealedPolicy::new(
//!     PolicySnapshot::builder()
//!         .hard_risk_limit_bps(9_000)
//!         .models([model(1, 9_300, 3_000_000), model(2, 8_100, 250_000)])
//!         .build()?,
//! );
//! let request = KernelInput {
//!     request_sequence: 1, requested_model_id: 1, input_tokens: 2_000, output_tokens: 500,
//!     business_value_microunits: 30_000, confidence_bps: 9_500, ..KernelInput::default()
//! };
//! let decision = policy.prescribe(request);
//! let bundle = policy.verified_audit_bundle(request, &decision)?;
//! assert!(bundle.replay_valid);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//! - `digest` (default): [`digest`], the CALY digests and audit bundles.
//! - `wal`: `wal`, the write-ahead log (implies `digest`).
//! - `budget`: `budget`, the budget engine.
//! - `finance`: `finance`, ledger proofs (implies `budget`).
//! - `serde`: `Serialize`/`Deserialize` on the kernel and digest types and on the
//!   budget engine's results (the wal, finance and gate results always have them).
//! - `gate`: `gate`, the decision gate `calybris-gate` (implies `wal`, `budget`,
//!   `finance`).
//! - `policy`: `policy`, human policy files `calybris-policy` (TOML or JSON, names
//!   compiled to a snapshot and a name map; implies `gate`).
//! - `adaptive`: the adaptive engine in the gate and the verifier's re-derivation of
//!   every adaptive step (implies `gate`; forwards to `calybris-gate/adaptive`).
//! - `tracing`: one `tracing` span per gate decision, named `calybris.gate.decide`,
//!   with the tenant, request sequence, action, reason, cost, budget outcome and log
//!   sequence as fields (implies `gate`; forwards to `calybris-gate/tracing`).
//!
//! # The gate
//! With the `gate` feature (run it with `cargo test -p calybris --features gate`); the
//! README's "The gate in twenty lines" is this example. Every amount is in the
//! kernel's microunits (10^-6 of the caller's currency unit).
//! ```
//! # #[cfg(feature = "gate")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use calybris::gate::{BudgetOutcome, Gate, GateConfig, VerifyOptions, verify_dir};
//! use calybris::prelude::*;
//!
//! let model = |model_id, quality_bps, input_price| KernelModel {
//!     model_id, provider_id: 0, quality_bps, risk_ceiling_bps: 8_000, enabled: 1,
//!     p95_latency_ms: 600, capabilities: 0b1, region_mask: 0b1,
//!     input_cost_microunits_per_million_tokens: input_price,
//!     output_cost_microunits_per_million_tokens: input_price * 4,
//! };
//! let policy = SealedPolicy::new(PolicySnapshot::builder()
//!     .models([model(1, 9_300, 3_000_000), model(2, 8_100, 250_000)]).build()?);
//! let dir = std::env::temp_dir().join(format!("calybris-gate-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! // One directory, one chained log; budgets in microunits (1,000,000 = one unit).
//! let gate = Gate::open(GateConfig::new(&dir, policy).tenant("acme", 1_000_000))?;
//! let request = KernelInput { request_sequence: 1, requested_model_id: 1, input_tokens: 2_000,
//!     output_tokens: 500, business_value_microunits: 30_000, ..KernelInput::default() };
//! let admission = gate.decide("acme", request)?;         // prescribed, reserved, logged
//! assert!(matches!(admission.budget(), BudgetOutcome::Reserved { .. }));
//! let estimate = admission.decision().estimated_cost_microunits;
//! gate.settle(admission, estimate / 2)?;                 // settled, logged
//! assert!(gate.prove_conservation()?.balanced);          // the books balance
//! gate.close()?;
//! let report = verify_dir(&dir, &VerifyOptions::default())?; // offline, from the files
//! assert_eq!(report.tenants[0].committed_microunits, i64::try_from(estimate / 2)?);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "gate"))]
//! # fn main() {}
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use calybris_kernel as kernel;

#[cfg(feature = "digest")]
pub use calybris_digest as digest;

#[cfg(feature = "wal")]
pub use calybris_wal as wal;

#[cfg(feature = "budget")]
pub use calybris_budget as budget;

#[cfg(feature = "finance")]
pub use calybris_finance as finance;

#[cfg(feature = "gate")]
pub use calybris_gate as gate;

#[cfg(feature = "policy")]
pub use calybris_policy as policy;

/// The types most programs need, in one import.
pub mod prelude {
    pub use calybris_kernel::{
        CandidateVerdict, DecisionMismatch, DecisionTrace, Explanation, InputError, KernelAction,
        KernelDecision, KernelInput, KernelModel, KernelReason, PolicyError, PolicyParams,
        PolicySnapshot, PolicyView,
    };

    #[cfg(feature = "digest")]
    pub use calybris_digest::{AuditBundle, AuditError, DecisionIdentity, Hex, SealedPolicy};

    #[cfg(feature = "gate")]
    pub use calybris_gate::{Admission, BudgetOutcome, Gate, GateConfig, GateError};
}

/// The README's example, compiled and run as a doctest so the crates.io page
/// cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
