//! Live shadow mode: one staged candidate policy evaluated on every decision without
//! affecting it (`docs/SPECIFICATION.md`, "Live shadow").
//!
//! [`Gate::stage_shadow`](crate::Gate::stage_shadow) logs a [`StagedPolicy`] record
//! (code 18, role [`StageRole::Shadow`]) carrying the whole candidate; from then on every decision record carries
//! a [`ShadowNote`]: what the candidate would have decided on the same input. The
//! response is the policy in force's alone: the note is computed after the decision
//! and nothing reads it back. [`Gate::unstage_shadow`](crate::Gate::unstage_shadow)
//! logs an [`UnstagedPolicy`] record (code 19). One candidate at a time: staging a
//! second is [`GateError::ShadowAlreadyStaged`].
//!
//! The verifier re-derives every note from the staged candidate and the decision's
//! input, and refuses a note that differs, names another candidate, or appears while
//! none is staged.

use calybris_digest::{Digest, SealedPolicy, decision_digest};
use calybris_kernel::{KernelAction, KernelInput, KernelReason};
use calybris_wal::PolicyRecord;
use serde::{Deserialize, Serialize};

use crate::error::GateError;
use crate::gate::Gate;
use crate::record::GateRecord;

/// What a staged policy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StageRole {
    /// The live shadow candidate: evaluated on every decision, never deciding. At most
    /// one is staged at a time.
    Shadow,
    /// The holdout's baseline ([`crate::holdout`]): decides the held-out requests.
    Baseline,
}

impl StageRole {
    /// The role's name in reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Shadow => "shadow",
            Self::Baseline => "baseline",
        }
    }
}

/// Code 20: a policy that is not the policy in force is staged: a live shadow
/// candidate or the holdout's baseline. Carries the whole policy (a policy record
/// would make it the policy in force). The writer stages the baseline at every open
/// with a holdout, and restates what is staged right after every book snapshot (and a
/// shadow candidate at every reopen), so a retained suffix re-derives its notes: a
/// shadow record naming the candidate already staged is a restatement, not a second
/// staging; a baseline record replaces the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedPolicy {
    /// What the policy is for.
    pub role: StageRole,
    /// The policy, with its digest (checked by the verifier).
    pub policy: PolicyRecord,
}

/// Code 21: a staged policy is unstaged; decisions after an unstaged shadow candidate
/// carry no shadow note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnstagedPolicy {
    /// What it was staged for.
    pub role: StageRole,
    /// Digest of the policy unstaged (the one staged in that role).
    pub policy_digest: Digest,
}

/// What the staged candidate would have decided on a decision's input, recorded with
/// the decision ([`crate::record::GateDecision::shadow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShadowNote {
    /// Digest of the candidate (`calypol1`).
    pub candidate_digest: Digest,
    /// The candidate's action.
    pub action: KernelAction,
    /// The model the candidate selected, as its decision reports it.
    pub selected_model_id: u32,
    /// Why.
    pub reason: KernelReason,
    /// The decision digest (`calydcn1`) of the candidate's whole decision.
    pub decision_digest: Digest,
}

impl ShadowNote {
    /// The candidate's note on `input`: its decision, replayed exactly by the
    /// verifier.
    #[must_use]
    pub fn derive(candidate: &SealedPolicy, input: KernelInput) -> Self {
        let decision = candidate.snapshot().prescribe(input);
        Self {
            candidate_digest: *candidate.digest(),
            action: decision.action,
            selected_model_id: decision.selected_model_id,
            reason: decision.reason,
            decision_digest: decision_digest(&decision),
        }
    }

    /// Whether the candidate selects a model.
    #[must_use]
    pub fn is_selection(&self) -> bool {
        self.action != KernelAction::Reject
    }
}

/// The staging record of `policy` in `role`.
pub(crate) fn staged_record(role: StageRole, policy: &SealedPolicy) -> GateRecord {
    GateRecord::Staged(StagedPolicy {
        role,
        policy: PolicyRecord {
            policy_digest: *policy.digest(),
            policy: policy.clone(),
        },
    })
}

/// At the end of opening: resumes the shadow candidate the log leaves staged, then
/// stages what the gate stages (the holdout's baseline, that candidate), so every
/// decision of this session names policies staged after the log's last snapshot.
pub(crate) fn resume(gate: &Gate, staged_shadow: Option<SealedPolicy>) -> Result<(), GateError> {
    if let Some(candidate) = staged_shadow {
        gate.resume_shadow(candidate);
    }
    gate.restate_staged()
}

/// What the verifier knows of the staged policies while it reads a log in order: it
/// checks each staging record and every decision's holdout and shadow notes against
/// them (see [`crate::verify_dir`]).
#[derive(Debug, Default)]
pub(crate) struct StageCheck {
    baseline: Option<Digest>,
    shadow: Option<SealedPolicy>,
}

/// Counts of what [`StageCheck`] checked.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StageCounts {
    pub staged: u64,
    pub unstaged: u64,
    pub held_out: u64,
    pub holdout_unchecked: u64,
    pub shadow_notes: u64,
}

impl StageCheck {
    /// A staging record: the policy is learnt for replay (a held-out decision names
    /// the baseline), a second shadow candidate is refused.
    pub(crate) fn staged(
        &mut self,
        sequence: u64,
        record: &StagedPolicy,
    ) -> Result<(), crate::VerifyError> {
        let digest = record.policy.policy_digest;
        match record.role {
            StageRole::Baseline => self.baseline = Some(digest),
            StageRole::Shadow => match &self.shadow {
                Some(staged) if *staged.digest() != digest => {
                    return Err(crate::VerifyError::ShadowAlreadyStaged {
                        sequence,
                        staged: *staged.digest(),
                    });
                }
                _ => self.shadow = Some(record.policy.policy.clone()),
            },
        }
        Ok(())
    }

    /// An unstaging record: it must name the policy staged in its role.
    pub(crate) fn unstaged(
        &mut self,
        sequence: u64,
        record: &UnstagedPolicy,
    ) -> Result<(), crate::VerifyError> {
        let staged = match record.role {
            StageRole::Baseline => self.baseline.take(),
            StageRole::Shadow => self.shadow.take().map(|policy| *policy.digest()),
        };
        if staged != Some(record.policy_digest) {
            return Err(crate::VerifyError::NotStaged {
                sequence,
                role: record.role,
                policy_digest: record.policy_digest,
            });
        }
        Ok(())
    }

    /// A decision's notes: the holdout assignment recomputed under `key` (when given)
    /// and a held-out decision made under the staged baseline; the shadow note
    /// present exactly while a candidate is staged, and re-derived from it.
    pub(crate) fn decision(
        &self,
        sequence: u64,
        record: &crate::record::GateDecision,
        key: Option<&crate::HoldoutKey>,
        counts: &mut StageCounts,
    ) -> Result<(), crate::VerifyError> {
        use crate::VerifyError;
        if let Some(note) = &record.holdout {
            if self.baseline != Some(note.baseline_digest) {
                return Err(VerifyError::NotStaged {
                    sequence,
                    role: StageRole::Baseline,
                    policy_digest: note.baseline_digest,
                });
            }
            if note.held_out && record.audit.policy_digest != note.baseline_digest {
                return Err(VerifyError::HoldoutNotUnderBaseline { sequence });
            }
            match key {
                Some(key) if key.fingerprint() != note.key_fingerprint => {
                    return Err(VerifyError::HoldoutKeyMismatch { sequence });
                }
                Some(key) => {
                    let recomputed = key.is_held_out(&record.audit.input_digest, note.share_bps);
                    if recomputed != note.held_out {
                        return Err(VerifyError::HoldoutMismatch {
                            sequence,
                            recorded: note.held_out,
                        });
                    }
                }
                None => counts.holdout_unchecked += 1,
            }
            counts.held_out += u64::from(note.held_out);
        }
        match (&self.shadow, &record.shadow) {
            (None, None) => {}
            (Some(candidate), None) => {
                return Err(VerifyError::ShadowNoteMissing {
                    sequence,
                    candidate_digest: *candidate.digest(),
                });
            }
            (staged, Some(note)) => {
                let Some(candidate) = staged
                    .as_ref()
                    .filter(|c| *c.digest() == note.candidate_digest)
                else {
                    return Err(VerifyError::NotStaged {
                        sequence,
                        role: StageRole::Shadow,
                        policy_digest: note.candidate_digest,
                    });
                };
                if ShadowNote::derive(candidate, record.audit.input) != *note {
                    return Err(VerifyError::ShadowMismatch { sequence });
                }
                counts.shadow_notes += 1;
            }
        }
        Ok(())
    }
}
