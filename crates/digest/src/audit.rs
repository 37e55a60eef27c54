//! Audit bundles: the three digests that bind a decision to its policy and request,
//! and whether the decision replays.

// A replay mismatch carries both whole decisions so the caller sees every field; it is
// returned only off the hot path, and boxing is not an option without `alloc`.
#![allow(clippy::result_large_err)]

use crate::canon::Digest;
use calybris_kernel::{DecisionMismatch, KernelDecision, KernelInput};

/// Binds a decision to its policy and request by their raw digests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct AuditBundle {
    /// Digest of the policy in force (`calypol1`).
    pub policy_digest: Digest,
    /// Digest of the request (`calyinp1`).
    pub input_digest: Digest,
    /// Digest of the decision as recorded (`calydcn1`).
    pub decision_digest: Digest,
    /// The policy epoch of the snapshot.
    pub policy_epoch: u64,
    /// The catalog epoch of the snapshot.
    pub catalog_epoch: u64,
    /// Whether replaying the request gives exactly the recorded decision.
    pub replay_valid: bool,
}

impl AuditBundle {
    /// The identity of the decision this bundle is about.
    #[must_use]
    pub fn identity(&self, request_sequence: u64) -> crate::DecisionIdentity {
        crate::DecisionIdentity {
            policy_digest: self.policy_digest,
            input_digest: self.input_digest,
            decision_digest: self.decision_digest,
            request_sequence,
        }
    }
}

/// Why a fail-closed audit refused to produce a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The decision is not what the policy gives for the request.
    #[error("the decision does not replay: field {} differs", .0.field)]
    DoesNotReplay(DecisionMismatch),
}

#[cfg(feature = "alloc")]
pub use sealed::SealedPolicy;

#[cfg(feature = "alloc")]
mod sealed {
    use super::{AuditBundle, AuditError};
    use crate::canon::Digest;
    use calybris_kernel::{KernelDecision, KernelInput, PolicySnapshot};

    /// A policy together with its digest, computed once when sealed rather than once per
    /// decision. Dereferences to the [`PolicySnapshot`].
    ///
    /// ```
    /// use calybris_digest::SealedPolicy;
    /// use calybris_kernel::{KernelInput, KernelModel, PolicySnapshot};
    ///
    /// let m = KernelModel { model_id: 1, provider_id: 0, quality_bps: 9_000,
    ///     risk_ceiling_bps: 9_000, enabled: 1, p95_latency_ms: 100, capabilities: 0,
    ///     region_mask: 1, input_cost_microunits_per_million_tokens: 1_000_000,
    ///     output_cost_microunits_per_million_tokens: 1_000_000 };
    /// let policy = SealedPolicy::new(PolicySnapshot::builder().model(m).build()?);
    /// let input = KernelInput { requested_model_id: 1, input_tokens: 100,
    ///     business_value_microunits: 10_000, ..KernelInput::default() };
    /// let decision = policy.prescribe(input);
    /// let bundle = policy.verified_audit_bundle(input, &decision)?;
    /// assert!(bundle.replay_valid);
    /// assert_eq!(bundle.policy_digest, *policy.digest());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SealedPolicy {
        snapshot: PolicySnapshot,
        digest: Digest,
    }

    impl SealedPolicy {
        /// Seals a snapshot, computing its digest.
        #[must_use]
        pub fn new(snapshot: PolicySnapshot) -> Self {
            let digest = crate::policy_digest(&snapshot);
            Self { snapshot, digest }
        }

        /// The policy's digest (`calypol1`).
        #[must_use]
        pub fn digest(&self) -> &Digest {
            &self.digest
        }

        /// The snapshot.
        #[must_use]
        pub fn snapshot(&self) -> &PolicySnapshot {
            &self.snapshot
        }

        /// Gives the snapshot back.
        #[must_use]
        pub fn into_snapshot(self) -> PolicySnapshot {
            self.snapshot
        }

        /// The bundle of a decision, whether or not it replays (`replay_valid` says).
        #[must_use]
        pub fn audit_bundle(&self, input: KernelInput, decision: &KernelDecision) -> AuditBundle {
            let replay_valid = self.snapshot.verify_decision(input, decision).is_ok();
            self.bundle(input, decision, replay_valid)
        }

        /// The bundle of a decision only if it replays exactly: the fail-closed form for
        /// audit boundaries.
        ///
        /// # Errors
        /// [`AuditError::DoesNotReplay`] naming the first differing field.
        pub fn verified_audit_bundle(
            &self,
            input: KernelInput,
            decision: &KernelDecision,
        ) -> Result<AuditBundle, AuditError> {
            self.snapshot
                .verify_decision(input, decision)
                .map_err(AuditError::DoesNotReplay)?;
            Ok(self.bundle(input, decision, true))
        }

        fn bundle(
            &self,
            input: KernelInput,
            decision: &KernelDecision,
            replay_valid: bool,
        ) -> AuditBundle {
            AuditBundle {
                policy_digest: self.digest,
                input_digest: crate::input_digest(&input),
                decision_digest: crate::decision_digest(decision),
                policy_epoch: self.snapshot.policy_epoch(),
                catalog_epoch: self.snapshot.catalog_epoch(),
                replay_valid,
            }
        }
    }

    impl core::ops::Deref for SealedPolicy {
        type Target = PolicySnapshot;
        fn deref(&self) -> &PolicySnapshot {
            &self.snapshot
        }
    }

    impl From<PolicySnapshot> for SealedPolicy {
        fn from(snapshot: PolicySnapshot) -> Self {
            Self::new(snapshot)
        }
    }

    #[cfg(feature = "serde")]
    impl serde::Serialize for SealedPolicy {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            self.snapshot.serialize(s)
        }
    }

    #[cfg(feature = "serde")]
    impl<'de> serde::Deserialize<'de> for SealedPolicy {
        /// Decodes (and validates) a snapshot, then seals it: the digest is recomputed,
        /// never trusted from the input.
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            PolicySnapshot::deserialize(d).map(Self::new)
        }
    }
}

/// The bundle of a decision against a borrowed policy whose digest the caller holds.
#[must_use]
pub fn audit_bundle_with(
    policy: &calybris_kernel::PolicyView<'_>,
    policy_digest: &Digest,
    input: KernelInput,
    decision: &KernelDecision,
) -> AuditBundle {
    AuditBundle {
        policy_digest: *policy_digest,
        input_digest: crate::input_digest(&input),
        decision_digest: crate::decision_digest(decision),
        policy_epoch: policy.params().policy_epoch,
        catalog_epoch: policy.params().catalog_epoch,
        replay_valid: policy.verify_decision(input, decision).is_ok(),
    }
}

/// The bundle of a decision, whether or not it replays.
#[cfg(feature = "alloc")]
#[must_use]
pub fn audit_bundle(
    policy: &SealedPolicy,
    input: KernelInput,
    decision: &KernelDecision,
) -> AuditBundle {
    policy.audit_bundle(input, decision)
}

/// The bundle of a decision only if it replays exactly.
///
/// # Errors
/// [`AuditError::DoesNotReplay`] naming the first differing field.
#[cfg(feature = "alloc")]
pub fn verified_audit_bundle(
    policy: &SealedPolicy,
    input: KernelInput,
    decision: &KernelDecision,
) -> Result<AuditBundle, AuditError> {
    policy.verified_audit_bundle(input, decision)
}
