//! What happened after a decision: the decision's identity, how the acted-on candidate
//! was selected, and what was observed, each with its canonical digest.

use crate::canon::{Canon, Digest, IDENTITY_DIGEST_TAG, OUTCOME_DIGEST_TAG, SELECTION_DIGEST_TAG};
use calybris_kernel::{BASIS_POINTS, KernelDecision, KernelInput};

/// Which decision a record is about: the three digests that produced it, and its
/// sequence number in the clear so a record can be found without rehashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct DecisionIdentity {
    /// Digest of the policy in force.
    pub policy_digest: Digest,
    /// Digest of the request.
    pub input_digest: Digest,
    /// Digest of the decision.
    pub decision_digest: Digest,
    /// The request's sequence number.
    pub request_sequence: u64,
}

impl DecisionIdentity {
    /// The identity of `decision`, made from `input` under the policy with `policy_digest`.
    #[must_use]
    pub fn of(policy_digest: Digest, input: &KernelInput, decision: &KernelDecision) -> Self {
        Self {
            policy_digest,
            input_digest: crate::input_digest(input),
            decision_digest: crate::decision_digest(decision),
            request_sequence: decision.request_sequence,
        }
    }

    /// The identity's own digest (`calyidn1`).
    #[must_use]
    pub fn digest(&self) -> Digest {
        identity_digest(self)
    }
}

/// The digest of a decision identity.
#[must_use]
pub fn identity_digest(identity: &DecisionIdentity) -> Digest {
    let mut c = Canon::sha256(IDENTITY_DIGEST_TAG);
    c.digest(&identity.policy_digest)
        .digest(&identity.input_digest)
        .digest(&identity.decision_digest)
        .u64(identity.request_sequence);
    c.finish()
}

/// How the acted-on candidate came to be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum SelectionStrategy {
    /// The kernel's ranking was followed; the propensity is exactly 10_000 bps.
    MaximiseUtility = 0,
    /// The caller explored another candidate with a stated probability (1..=10_000 bps).
    Explore = 1,
    /// A person chose; no probability exists, so none may be recorded.
    Human = 2,
}

/// How a candidate was acted on, and with what probability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Selection {
    /// The mechanism that chose.
    pub strategy: SelectionStrategy,
    /// The candidate acted on.
    pub acted_model_id: u32,
    /// The probability of this choice in basis points; absent exactly for `Human`.
    pub propensity_bps: Option<u16>,
}

impl Selection {
    /// The kernel ranked and the caller followed.
    #[must_use]
    pub fn followed(decision: &KernelDecision) -> Self {
        Self {
            strategy: SelectionStrategy::MaximiseUtility,
            acted_model_id: decision.selected_model_id,
            propensity_bps: Some(BASIS_POINTS),
        }
    }

    /// The caller explored `acted_model_id` with the given probability.
    #[must_use]
    pub fn explored(acted_model_id: u32, propensity_bps: u16) -> Self {
        Self {
            strategy: SelectionStrategy::Explore,
            acted_model_id,
            propensity_bps: Some(propensity_bps),
        }
    }

    /// A person chose `acted_model_id`.
    #[must_use]
    pub fn human(acted_model_id: u32) -> Self {
        Self {
            strategy: SelectionStrategy::Human,
            acted_model_id,
            propensity_bps: None,
        }
    }

    /// Checks the propensity against the strategy that claims it.
    ///
    /// # Errors
    /// [`OutcomeError`] when a probability is missing, out of range, or present where
    /// none can exist.
    pub fn validate(&self) -> Result<(), OutcomeError> {
        match (self.strategy, self.propensity_bps) {
            (SelectionStrategy::Human, None) => Ok(()),
            (SelectionStrategy::Human, Some(_)) => Err(OutcomeError::UnknowablePropensity),
            (strategy, None) => Err(OutcomeError::MissingPropensity(strategy)),
            (_, Some(p)) if p == 0 || p > BASIS_POINTS => {
                Err(OutcomeError::PropensityOutOfRange(p))
            }
            (SelectionStrategy::MaximiseUtility, Some(p)) if p != BASIS_POINTS => {
                Err(OutcomeError::DeterministicPropensity(p))
            }
            _ => Ok(()),
        }
    }

    /// The selection's digest (`calysel1`).
    #[must_use]
    pub fn digest(&self) -> Digest {
        selection_digest(self)
    }
}

/// The digest of a selection.
#[must_use]
pub fn selection_digest(selection: &Selection) -> Digest {
    let mut c = Canon::sha256(SELECTION_DIGEST_TAG);
    c.u8(selection.strategy as u8)
        .u32(selection.acted_model_id)
        .opt(selection.propensity_bps, |c, p| {
            c.u16(p);
        });
    c.finish()
}

/// What became of a recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum Disposition {
    /// Carried out and finished; the observation must say something.
    Applied = 0,
    /// Never carried out; nothing may be observed.
    Abandoned = 1,
    /// Still running; cost and latency so far may be recorded, success may not.
    InFlight = 2,
}

/// The measurements that came back, each optional so a missing one never reads as zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Observation {
    /// What it actually cost, in microunits.
    pub realized_cost_microunits: Option<u64>,
    /// What it actually took, in milliseconds.
    pub realized_latency_ms: Option<u32>,
    /// Whether it succeeded.
    pub succeeded: Option<bool>,
}

impl Observation {
    /// Whether nothing at all was measured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.realized_cost_microunits.is_none()
            && self.realized_latency_ms.is_none()
            && self.succeeded.is_none()
    }
}

/// One decision, what was done about it, and what came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Outcome {
    /// The decision this follows.
    pub identity: DecisionIdentity,
    /// When it was observed, in microseconds since the Unix epoch, supplied by the caller.
    pub observed_at_micros: u64,
    /// 0 for the first record of a decision; a later revision supersedes an earlier one.
    pub revision: u32,
    /// How the acted-on candidate was chosen.
    pub selection: Selection,
    /// What became of the recommendation.
    pub disposition: Disposition,
    /// What was measured.
    pub observation: Observation,
}

impl Outcome {
    /// Checks the record against itself: a usable selection, and a disposition that
    /// agrees with what was measured.
    ///
    /// # Errors
    /// The first [`OutcomeError`] found.
    pub fn validate(&self) -> Result<(), OutcomeError> {
        self.selection.validate()?;
        match self.disposition {
            Disposition::Applied if self.observation.is_empty() => {
                Err(OutcomeError::EmptyObservation)
            }
            Disposition::Abandoned if !self.observation.is_empty() => {
                Err(OutcomeError::ObservationOnAbandoned)
            }
            Disposition::InFlight if self.observation.succeeded.is_some() => {
                Err(OutcomeError::CompletedInFlight)
            }
            _ => Ok(()),
        }
    }

    /// Checks the record against the decision it claims to follow: the identity must be
    /// the decision's, nothing may be acted on after a rejection, and a followed ranking
    /// must have acted on the selected candidate.
    ///
    /// # Errors
    /// The first [`OutcomeError`] found, after those of [`Outcome::validate`].
    pub fn validate_against(
        &self,
        policy_digest: Digest,
        input: &KernelInput,
        decision: &KernelDecision,
    ) -> Result<(), OutcomeError> {
        self.validate()?;
        let expected = DecisionIdentity::of(policy_digest, input, decision);
        let fields = [
            (
                IdentityField::PolicyDigest,
                expected.policy_digest == self.identity.policy_digest,
            ),
            (
                IdentityField::InputDigest,
                expected.input_digest == self.identity.input_digest,
            ),
            (
                IdentityField::DecisionDigest,
                expected.decision_digest == self.identity.decision_digest,
            ),
            (
                IdentityField::RequestSequence,
                expected.request_sequence == self.identity.request_sequence,
            ),
        ];
        if let Some(&(field, _)) = fields.iter().find(|(_, same)| !same) {
            return Err(OutcomeError::IdentityMismatch(field));
        }
        let acted = self.disposition != Disposition::Abandoned;
        if acted && !decision.is_selection() {
            return Err(OutcomeError::ActedOnRejection);
        }
        if self.selection.strategy == SelectionStrategy::MaximiseUtility
            && self.selection.acted_model_id != decision.selected_model_id
        {
            return Err(OutcomeError::ActedModelNotSelected {
                acted: self.selection.acted_model_id,
                selected: decision.selected_model_id,
            });
        }
        Ok(())
    }

    /// The outcome's digest (`calyout1`).
    #[must_use]
    pub fn digest(&self) -> Digest {
        outcome_digest(self)
    }
}

/// The digest of an outcome, over every field; the identity and the selection enter as
/// their own digests.
#[must_use]
pub fn outcome_digest(outcome: &Outcome) -> Digest {
    let o = &outcome.observation;
    let mut c = Canon::sha256(OUTCOME_DIGEST_TAG);
    c.digest(&identity_digest(&outcome.identity))
        .u64(outcome.observed_at_micros)
        .u32(outcome.revision)
        .digest(&selection_digest(&outcome.selection))
        .u8(outcome.disposition as u8)
        .opt(o.realized_cost_microunits, |c, v| {
            c.u64(v);
        })
        .opt(o.realized_latency_ms, |c, v| {
            c.u32(v);
        })
        .opt(o.succeeded, |c, v| {
            c.bool(v);
        });
    c.finish()
}

/// A field of a [`DecisionIdentity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentityField {
    /// `policy_digest`.
    PolicyDigest,
    /// `input_digest`.
    InputDigest,
    /// `decision_digest`.
    DecisionDigest,
    /// `request_sequence`.
    RequestSequence,
}

/// Why an outcome record was refused: a record that cannot be trusted is worse than none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutcomeError {
    /// A probability outside `1..=10_000` bps.
    #[error("propensity {0} bps is outside 1..=10000")]
    PropensityOutOfRange(u16),
    /// A deterministic strategy claiming it might have chosen otherwise.
    #[error("the kernel's own ranking has propensity 10000 bps, not {0}")]
    DeterministicPropensity(u16),
    /// A strategy that has a probability did not record one.
    #[error("strategy {0:?} must record a propensity")]
    MissingPropensity(SelectionStrategy),
    /// A probability attached to a human choice, which has none.
    #[error("a human choice has no propensity, but one was recorded")]
    UnknowablePropensity,
    /// An applied outcome that measured nothing.
    #[error("an applied outcome must carry at least one measurement")]
    EmptyObservation,
    /// An abandoned outcome that measured something.
    #[error("an abandoned outcome cannot carry a measurement")]
    ObservationOnAbandoned,
    /// An in-flight outcome that already claims success or failure.
    #[error("an in-flight outcome cannot say whether it succeeded")]
    CompletedInFlight,
    /// Something was acted on after the decision rejected the request.
    #[error("the decision was a rejection, but the outcome acted on a candidate")]
    ActedOnRejection,
    /// A followed ranking acted on a candidate other than the selected one.
    #[error("followed the ranking but acted on {acted}, not the selected {selected}")]
    ActedModelNotSelected {
        /// The candidate acted on.
        acted: u32,
        /// The candidate the decision selected.
        selected: u32,
    },
    /// The identity does not match the decision it is checked against.
    #[error("the outcome's identity differs in {0:?}")]
    IdentityMismatch(IdentityField),
}
