//! The CALY digests of Calybris: one SHA-256 pass over a fixed, tagged byte layout for
//! each of a policy, a request, a decision, a decision's identity, a selection and an
//! outcome, and the [`AuditBundle`] that binds a decision to its policy and request.
//!
//! The layouts are normative in the project's `spec/digests.md` and bit-compatible with
//! the published CALY formats, so a digest written here can be checked by any other
//! implementation of them. The crate is `#![no_std]`; with the default `alloc` feature
//! it adds [`SealedPolicy`], which computes a policy's digest once rather than once per
//! decision.
//!
//! What it deliberately does not do: decide (see `calybris-kernel`), store (see
//! `calybris-wal`), or hash JSON. Every digest is over the fixed binary layout.
//!
//! # Example
//! ```
//! use calybris_digest::{SealedPolicy, decision_digest, digest_to_hex, input_digest};
//! use calybris_kernel::{KernelInput, KernelModel, PolicySnapshot};
//!
//! let model = KernelModel { model_id: 7, provider_id: 2, quality_bps: 8_500,
//!     risk_ceiling_bps: 6_000, enabled: 1, p95_latency_ms: 250, capabilities: 0b1,
//!     region_mask: 0b1, input_cost_microunits_per_million_tokens: 500_000,
//!     output_cost_microunits_per_million_tokens: 1_500_000 };
//! let policy = SealedPolicy::new(PolicySnapshot::try_new(1, 1, 9_000, 0, 10_000, 0, vec![model])?);
//! let input = KernelInput { request_sequence: 1, requested_model_id: 7, input_tokens: 800,
//!     output_tokens: 200, business_value_microunits: 25_000, ..KernelInput::default() };
//! let decision = policy.prescribe(input);
//!
//! let bundle = policy.verified_audit_bundle(input, &decision)?;
//! assert_eq!(bundle.input_digest, input_digest(&input));
//! assert_eq!(bundle.decision_digest, decision_digest(&decision));
//! assert_eq!(digest_to_hex(&bundle.policy_digest).len(), 64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//! - `alloc` (default): [`SealedPolicy`], [`policy_digest`] of an owned snapshot,
//!   [`digest_to_hex`].
//! - `serde`: `Serialize`/`Deserialize` on the public types.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod audit;
mod canon;
mod hex;
mod kernel_digests;
mod ledger;
mod outcome;

pub use audit::{AuditBundle, AuditError, audit_bundle_with};
#[cfg(feature = "alloc")]
pub use audit::{SealedPolicy, audit_bundle, verified_audit_bundle};
pub use canon::{
    Canon, DECISION_DIGEST_TAG, Digest, IDENTITY_DIGEST_TAG, INPUT_DIGEST_TAG, LEDGER_DIGEST_TAG,
    OUTCOME_DIGEST_TAG, POLICY_DIGEST_TAG, SELECTION_DIGEST_TAG, Sink, TAG_LEN, TENANT_NUMBER_TAG,
};
pub use ledger::{LedgerLayoutError, LedgerRow, WAL_WATERMARK_LABEL, ledger_digest_of, tenant_number};
#[cfg(feature = "alloc")]
pub use hex::digest_to_hex;
pub use hex::{DIGEST_HEX_LEN, Hex, HexError, digest_hex, parse_digest_hex};
#[cfg(feature = "alloc")]
pub use kernel_digests::policy_digest;
pub use kernel_digests::{
    decision_digest, input_digest, policy_digest_of, policy_view_digest, write_decision,
    write_input, write_policy,
};
pub use outcome::{
    DecisionIdentity, Disposition, IdentityField, Observation, Outcome, OutcomeError, Selection,
    SelectionStrategy, identity_digest, outcome_digest, selection_digest,
};
