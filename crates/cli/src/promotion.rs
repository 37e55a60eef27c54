//! The promotion gate: explicit criteria on a [`Shadow`] evaluation, a report with a
//! digest that is the same on every machine, and the checks `calybris promote` makes
//! before it installs a policy.
//!
//! A candidate passes when **all** of these hold ([`Criteria`]):
//! 1. **support**: at least `min_ess` rows are supported (the candidate takes the
//!    logged action). With a deterministic log every weight is 0 or 1, so the
//!    effective sample size `(Σ w)² / Σ w²` is exactly that count;
//! 2. **value**: the lower end of the 95 % normal interval of the per-row gain
//!    (DR term − observed reward, see [`crate::ope::shadow`]) is at least
//!    `margin_microunits` (0: not worse, with 95 % confidence; a negative margin
//!    tolerates a loss of at most that much per decision);
//! 3. **mismatch rate**: decisions where the candidate decides otherwise than the
//!    log, per mille of all decisions, at most `max_mismatch_per_mille`;
//! 4. **no hard-gate loosening**: the candidate's hard risk limit is not above the
//!    incumbent's, its confidence floor not below, and no model present in both has
//!    a higher risk ceiling.

use sha2::{Digest as _, Sha256};

use calybris::digest::{Digest, SealedPolicy};
use calybris::wal::WalAnchor;

use crate::ope::{Mean, Shadow};

/// The tag that starts the canonical bytes of a promotion report.
pub const REPORT_TAG: &[u8; 8] = b"calyprm1";

/// The promotion criteria.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Criteria {
    /// The fewest supported rows (the effective sample size of 0/1 weights).
    pub min_ess: u64,
    /// The least the lower 95 % bound of the per-decision gain may be, in microunits.
    pub margin_microunits: i64,
    /// The most decisions (per mille) the candidate may decide otherwise.
    pub max_mismatch_per_mille: u64,
}

impl Default for Criteria {
    /// 30 supported rows, margin 0, at most 200 ‰ mismatches.
    fn default() -> Self {
        Self {
            min_ess: 30,
            margin_microunits: 0,
            max_mismatch_per_mille: 200,
        }
    }
}

/// A hard gate the candidate loosens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Loosening {
    /// 1: hard risk limit (bps), 2: confidence floor (bps), 3: a model's risk ceiling.
    pub gate: u8,
    /// The model, for gate 3 (0 otherwise).
    pub model_id: u32,
    /// The incumbent's value.
    pub incumbent: u16,
    /// The candidate's value.
    pub candidate: u16,
}

impl Loosening {
    /// The gate's name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self.gate {
            1 => "hard_risk_limit_bps",
            2 => "minimum_confidence_bps",
            _ => "risk_ceiling_bps",
        }
    }
}

/// Every hard gate `candidate` loosens relative to `incumbent`.
#[must_use]
pub fn loosenings(incumbent: &SealedPolicy, candidate: &SealedPolicy) -> Vec<Loosening> {
    let (inc, cand) = (incumbent.snapshot(), candidate.snapshot());
    let (ip, cp) = (inc.params(), cand.params());
    let mut out = Vec::new();
    if cp.hard_risk_limit_bps > ip.hard_risk_limit_bps {
        out.push(Loosening {
            gate: 1,
            model_id: 0,
            incumbent: ip.hard_risk_limit_bps,
            candidate: cp.hard_risk_limit_bps,
        });
    }
    if cp.minimum_confidence_bps < ip.minimum_confidence_bps {
        out.push(Loosening {
            gate: 2,
            model_id: 0,
            incumbent: ip.minimum_confidence_bps,
            candidate: cp.minimum_confidence_bps,
        });
    }
    for model in cand.models() {
        if let Some(old) = inc.models().iter().find(|m| m.model_id == model.model_id)
            && model.risk_ceiling_bps > old.risk_ceiling_bps
        {
            out.push(Loosening {
                gate: 3,
                model_id: model.model_id,
                incumbent: old.risk_ceiling_bps,
                candidate: model.risk_ceiling_bps,
            });
        }
    }
    out
}

/// The promotion report.
#[derive(Debug, Clone, PartialEq)]
pub struct PromotionReport {
    /// The policy in force at the end of the log.
    pub incumbent_digest: Digest,
    /// The candidate.
    pub candidate_digest: Digest,
    /// The log position the evaluation covers.
    pub anchor: WalAnchor,
    /// The criteria.
    pub criteria: Criteria,
    /// The evaluation.
    pub shadow: Shadow,
    /// The hard gates loosened.
    pub loosened: Vec<Loosening>,
    /// Criteria 1 to 4, in order: support, value, mismatch rate, no loosening.
    pub checks: [bool; 4],
}

impl PromotionReport {
    /// Judges `shadow` of `candidate` against `incumbent` by `criteria`.
    #[must_use]
    pub fn new(
        incumbent: &SealedPolicy,
        candidate: &SealedPolicy,
        anchor: WalAnchor,
        criteria: Criteria,
        shadow: Shadow,
    ) -> Self {
        let loosened = loosenings(incumbent, candidate);
        let mismatches = shadow.decisions - shadow.by_kind[0];
        #[allow(clippy::cast_precision_loss)]
        let value = shadow
            .gain
            .and_then(|g| g.interval)
            .is_some_and(|i| i.lower >= criteria.margin_microunits as f64);
        let checks = [
            shadow.supported >= criteria.min_ess,
            value,
            u128::from(mismatches) * 1000
                <= u128::from(criteria.max_mismatch_per_mille) * u128::from(shadow.decisions),
            loosened.is_empty(),
        ];
        Self {
            incumbent_digest: *incumbent.digest(),
            candidate_digest: *candidate.digest(),
            anchor,
            criteria,
            shadow,
            loosened,
            checks,
        }
    }

    /// Whether every criterion holds.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|&c| c)
    }

    /// The canonical bytes (layout in `docs/CLI.md`, "promote"): every integer
    /// big-endian, every figure as the big-endian bits of its `f64` (an absent one as
    /// the quiet NaN `0x7ff8000000000000`).
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        fn figure(out: &mut Vec<u8>, value: Option<f64>) {
            out.extend_from_slice(
                &value
                    .map_or(0x7ff8_0000_0000_0000, f64::to_bits)
                    .to_be_bytes(),
            );
        }
        let s = &self.shadow;
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(REPORT_TAG);
        out.extend_from_slice(&self.incumbent_digest.0);
        out.extend_from_slice(&self.candidate_digest.0);
        out.extend_from_slice(&self.anchor.next_sequence.to_be_bytes());
        out.extend_from_slice(&self.anchor.head_hash);
        out.extend_from_slice(&self.criteria.min_ess.to_be_bytes());
        out.extend_from_slice(&self.criteria.margin_microunits.to_be_bytes());
        out.extend_from_slice(&self.criteria.max_mismatch_per_mille.to_be_bytes());
        out.extend_from_slice(&s.decisions.to_be_bytes());
        for count in s.by_kind {
            out.extend_from_slice(&count.to_be_bytes());
        }
        for count in [s.rows, s.supported, s.unsupported, s.unsupported_no_outcome] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        figure(&mut out, s.incumbent.map(|m: Mean| m.value));
        figure(&mut out, s.gain.map(|m| m.value));
        figure(&mut out, s.gain.and_then(|m| m.interval).map(|i| i.lower));
        figure(&mut out, s.gain.and_then(|m| m.interval).map(|i| i.upper));
        out.extend_from_slice(&(self.loosened.len() as u32).to_be_bytes());
        for l in &self.loosened {
            out.push(l.gate);
            out.extend_from_slice(&l.model_id.to_be_bytes());
            out.extend_from_slice(&l.incumbent.to_be_bytes());
            out.extend_from_slice(&l.candidate.to_be_bytes());
        }
        out.extend(self.checks.iter().map(|&c| u8::from(c)));
        out.push(u8::from(self.passed()));
        out
    }

    /// SHA-256 of [`canonical_bytes`](Self::canonical_bytes).
    #[must_use]
    pub fn digest(&self) -> Digest {
        Digest(Sha256::digest(self.canonical_bytes()).into())
    }
}
