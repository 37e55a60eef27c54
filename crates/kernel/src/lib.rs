//! The decision kernel of Calybris: given a frozen policy (a catalog of candidates and a
//! few policy-wide limits) and a typed request, it returns exactly one action — execute
//! the requested candidate, substitute another, or reject — and it gives the same answer
//! for the same inputs on every machine, every time.
//!
//! The crate is `#![no_std]`, has no dependencies, uses integer arithmetic only, reads no
//! clock, no randomness and no environment, and contains no `unsafe`. `prescribe`
//! never allocates and never panics, whatever it is given.
//!
//! What it deliberately does not do: hash (see `calybris-digest`), log (see
//! `calybris-wal`), hold budgets (see `calybris-budget`), or know what a candidate is.
//! An LLM model, a trading venue and a supplier are all a [`KernelModel`].
//!
//! # Main types
//! - [`PolicySnapshot`] (feature `alloc`): a validated, owned policy, compiled once for
//!   a fast decision loop. [`PolicySnapshot::builder`] names every field.
//! - [`PolicyView`]: the same policy borrowed over a caller-owned, sorted catalog, for
//!   targets with no allocator.
//! - [`KernelInput`] → [`KernelDecision`] (with [`KernelAction`] and [`KernelReason`]).
//! - [`DecisionTrace`] and, behind `alloc`, [`Explanation`]: why the decision came out
//!   as it did, from the same single evaluation.
//! - [`verify_decision`] and `verify_decision` methods: replay and name the first
//!   differing field ([`DecisionMismatch`]).
//!
//! # Example
//! ```
//! use calybris_kernel::{KernelAction, KernelInput, KernelModel, KernelReason, PolicySnapshot};
//!
//! let gpt = KernelModel {
//!     model_id: 1, provider_id: 0, quality_bps: 9_200, risk_ceiling_bps: 7_000, enabled: 1,
//!     p95_latency_ms: 1_200, capabilities: 0b11, region_mask: 0b01,
//!     input_cost_microunits_per_million_tokens: 2_500_000,
//!     output_cost_microunits_per_million_tokens: 10_000_000,
//! };
//! let small = KernelModel {
//!     model_id: 2, quality_bps: 7_800, p95_latency_ms: 400,
//!     input_cost_microunits_per_million_tokens: 150_000,
//!     output_cost_microunits_per_million_tokens: 600_000, ..gpt
//! };
//! let policy = PolicySnapshot::builder()
//!     .policy_epoch(3)
//!     .catalog_epoch(12)
//!     .hard_risk_limit_bps(8_000)
//!     .minimum_confidence_bps(2_000)
//!     .risk_penalty_multiplier_bps(10_000)
//!     .latency_penalty_microunits_per_ms(1)
//!     .models([gpt, small])
//!     .build()?;
//!
//! let request = KernelInput {
//!     request_sequence: 42,
//!     requested_model_id: 1,
//!     input_tokens: 1_500,
//!     output_tokens: 700,
//!     business_value_microunits: 60_000,
//!     budget_limit_microunits: 20_000,
//!     risk_bps: 1_000,
//!     confidence_bps: 9_000,
//!     minimum_quality_bps: 8_000,
//!     ..KernelInput::default()
//! };
//! let decision = policy.prescribe(request);
//! assert_eq!(decision.action, KernelAction::ExecuteRequested);
//! assert_eq!(decision.reason, KernelReason::RequestedModelMaximizesUtility);
//! assert_eq!(decision.estimated_cost_microunits, 3_750 + 7_000);
//!
//! // Anyone holding the same policy and request can replay it.
//! assert!(policy.verify_decision(request, &decision).is_ok());
//! # Ok::<(), calybris_kernel::PolicyError>(())
//! ```
//!
//! # Features
//! - `alloc` (default): [`PolicySnapshot`], [`PolicyBuilder`], batch prescribe and
//!   [`Explanation`]. Without it the crate needs no allocator at all.
//! - `serde`: `Serialize`/`Deserialize` on the public types. A deserialized
//!   [`PolicySnapshot`] is validated like one built by hand.
//!
//! The semantics implemented here (every gate, formula, rounding and tie-break) are
//! written down in the repository's `docs/DECISION-SEMANTICS.md`, and checked
//! against the published implementation by the `calybris-conformance` test crate.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod error;
mod eval;
mod policy;
#[cfg(feature = "alloc")]
mod soa;
mod text;
mod trace;
mod types;

pub use error::{DecisionField, DecisionMismatch, InputError, PolicyError};
pub use eval::PolicyParams;
pub use policy::PolicyView;
#[cfg(feature = "alloc")]
pub use policy::{PolicyBuilder, PolicySnapshot, verify_decision};
pub use text::{ParseActionError, ParseReasonError};
#[cfg(feature = "alloc")]
pub use trace::{CandidateExplanation, Explanation};
pub use trace::{CandidateVerdict, DecisionTrace, GateKind, RejectionHistogram, UtilityTerms};
pub use types::{
    ALL_PROVIDERS, ANY_REGION, BASIS_POINTS, BPS_SQUARED, KernelAction, KernelDecision,
    KernelInput, KernelModel, KernelReason, MAX_BPS, MAX_CATALOG_MODELS, MAX_PROVIDER_ID,
    MAX_RISK_PENALTY_MULTIPLIER_BPS, NO_MODEL_INDEX, RESERVED_MODEL_ID, TOKENS_PER_PRICE_UNIT,
};

/// The README's example, compiled and run as a doctest so the crates.io page
/// cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
