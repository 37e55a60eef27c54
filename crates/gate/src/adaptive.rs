//! The adaptive engine's records in the gate log (issue 11): what the engine suggested
//! for a decision ([`AdaptiveNote`], in [`GateDecision::adaptive`]), the engine's
//! configuration and replay key ([`AdaptiveSetup`], code 21), its periodic state
//! digest ([`EngineSnapshot`], code 20) and, under retention, its whole state
//! ([`EngineState`], code 22, with the waiting decisions in [`EnginePending`] records,
//! code 23), from which a retained log replays the engine.
//!
//! These types are plain data and always compiled, so every build reads and writes the
//! same bytes. Running the engine (deciding, learning from outcomes, re-deriving every
//! step in the verifier) needs the `adaptive` feature, which brings in
//! `calybris-adapt`. The procedure is normative in `docs/ADAPT.md` section 8.
//!
//! [`GateDecision::adaptive`]: crate::record::GateDecision::adaptive

use calybris_digest::Digest;
use serde::{Deserialize, Serialize};

/// The version of the adaptive record set, in every [`AdaptiveSetup`].
pub const ADAPTIVE_FORMAT_VERSION: u16 = 1;

/// The longest regime label an [`AdaptiveSetup`] or an [`AdaptiveNote`] may carry, in
/// bytes.
pub const MAX_ADAPTIVE_LABEL_BYTES: usize = 64;

/// The most tiers an [`AdaptiveSetup`] may configure (the engine's arm bound).
pub const MAX_ADAPTIVE_TIERS: usize = 1024;

/// The most decisions an adaptive gate keeps waiting for their outcome: a decision
/// beyond it is refused ([`GateError::AdaptivePendingFull`]), so memory stays bounded
/// (each waits with its features, at most 32 integers).
///
/// [`GateError::AdaptivePendingFull`]: crate::GateError::AdaptivePendingFull
pub const MAX_ADAPTIVE_PENDING: usize = 1 << 20;

/// What the adaptive engine suggested for one decision, and why.
///
/// The gate's kernel input ([`DecisionRecord::input`]) is the caller's input with the
/// two fields the engine may change: `minimum_quality_bps` raised to
/// `max(floor_bps, tier floor)`, and `requested_model_id` set to the tier's model if
/// it names one. Both the caller's values are here, so a verifier rebuilds the
/// caller's input, its digest (the engine's input digest) and the whole step.
///
/// [`DecisionRecord::input`]: calybris_wal::DecisionRecord
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaptiveNote {
    /// The regime the request was classified into.
    pub regime: u32,
    /// The tier (arm) the engine chose.
    pub tier: u32,
    /// The tier the static policy would have chosen.
    pub static_tier: u32,
    /// Whether the exploration gate opened (the learning policy chose the tier).
    pub explored: bool,
    /// The exploration gate's keyed draw in `[0, 10,000)`; `None` with exploration off.
    pub draw: Option<u32>,
    /// The chosen tier's exact propensity: numerator.
    pub propensity_numerator: u64,
    /// The chosen tier's exact propensity: denominator.
    pub propensity_denominator: u64,
    /// The engine's own floor for the regime (the calibrated floor, or the warm-start
    /// floor with exploration off), in basis points.
    pub floor_suggested_bps: u32,
    /// The caller's floor (its `minimum_quality_bps`, if not 0), in basis points.
    pub client_floor_bps: Option<u32>,
    /// Whether the client floor was above the engine's, so it won.
    pub client_floor_overrode: bool,
    /// The floor the decision got: `max(floor_suggested_bps, client floor)`.
    pub floor_bps: u32,
    /// The caller's `requested_model_id` (the tier may have replaced it).
    pub requested_model_id: u32,
    /// The caller's regime label, if any.
    pub label: Option<String>,
    /// The request's features (the configured number of them).
    pub features: Vec<i32>,
    /// The engine state digest before this step (`docs/ADAPT.md` section 5).
    pub state_digest: Digest,
}

/// One regime of an [`AdaptiveSetup`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaptiveRegime {
    /// The label a caller gives to route a request to it.
    pub label: String,
    /// Its domain: 1 support, 2 coding, 3 compliance, 4 security, 5 custom.
    pub domain: u8,
    /// The warm-start floor of a custom domain, in basis points (0 for the others,
    /// whose floors are fixed by the domain).
    pub custom_floor_bps: u32,
}

/// The learning policy of an [`AdaptiveSetup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdaptivePolicy {
    /// Thompson sampling over a table of `redraws + 1` keyed draws per regime
    /// (`docs/ADAPT.md` section 3).
    Thompson {
        /// `K`: the table has `K + 1` rows, so a propensity is `w / (K + 1)`.
        redraws: u32,
    },
    /// Epsilon-greedy, exploring with `epsilon_bps`.
    EpsilonGreedy {
        /// The exploration probability, in basis points.
        epsilon_bps: u32,
    },
}

/// One tier: what the engine's arm means for the kernel input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaptiveTier {
    /// The quality floor of the tier, in basis points (raised, never lowered, into the
    /// input's `minimum_quality_bps`).
    pub floor_bps: u16,
    /// The model the tier asks the kernel for, if any (the kernel still applies every
    /// hard gate to it, and may substitute or reject).
    pub requested_model_id: Option<u32>,
}

/// The engine's configuration and replay key (record code 21): written once, before
/// the first adaptive decision, so the log alone re-derives every step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaptiveSetup {
    /// [`ADAPTIVE_FORMAT_VERSION`].
    pub format_version: u16,
    /// The regimes, in index order.
    pub regimes: Vec<AdaptiveRegime>,
    /// Features per request.
    pub features: u32,
    /// The lowest floor the learner may propose, in basis points.
    pub floor_min_bps: u32,
    /// The highest floor the learner may propose, in basis points.
    pub floor_max_bps: u32,
    /// The calibration step (a failure moves twice as far).
    pub step_bps: u32,
    /// Observations a regime needs before classification by nearest score.
    pub min_observations: u64,
    /// The fallback regime.
    pub fallback: u32,
    /// The prior `(α, β)` of each tier, in every regime.
    pub priors: Vec<(u32, u32)>,
    /// The learning policy.
    pub policy: AdaptivePolicy,
    /// The probability of exploring, in basis points; 0 is the static policy.
    pub exploration_bps: u32,
    /// The PRF key (the replay seed; anyone holding the log can re-derive the draws).
    pub key: [u8; 32],
    /// The tiers, one per prior.
    pub tiers: Vec<AdaptiveTier>,
    /// The static policy's tier.
    pub static_tier: u32,
    /// An [`EngineSnapshot`] follows every this many engine updates (0: never).
    pub snapshot_every_updates: u64,
    /// What the engine learns from an outcome record (appended last: the record's
    /// earlier fields keep their place).
    pub feedback: AdaptiveFeedback,
}

/// What the engine learns from the first outcome record of an adaptive decision
/// (`docs/ADAPT.md` section 9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdaptiveFeedback {
    /// The outcome's success bit: each tier's posterior is over its success rate.
    #[default]
    Success,
    /// The outcome's reward (`reward_microunits`), on the scale `[−V · cost_bound_bps
    /// / 10,000, V]` with `V` the decision input's `business_value_microunits`,
    /// through a dithered bit (`calybris_adapt::reward`, with the `adaptive`
    /// feature): each tier's posterior is over its normalised expected reward, so the
    /// engine weighs what a tier costs as well as how often it succeeds. A decision
    /// whose value is not positive learns from its success bit.
    Reward {
        /// The most a decision may cost, in basis points of its value (at most
        /// 10,000: the kernel's positive-utility gate keeps every admitted cost
        /// below the value); lower rewards are clamped to the scale's low end.
        cost_bound_bps: u32,
        /// Observations one outcome counts for, 1 to [`MAX_REWARD_OBSERVATIONS`]:
        /// that many dithered bits at the tier's next dither points, each an engine
        /// update. The bits carry only the reward's own variance, below the Bernoulli
        /// variance a Beta posterior assumes; counting an outcome `w` times narrows
        /// the posterior by `√w` (choose `w` at most that variance ratio).
        observations: u32,
    },
}

/// The most observations one outcome may count for ([`AdaptiveFeedback::Reward`]).
pub const MAX_REWARD_OBSERVATIONS: u32 = 8;

/// The engine state digest after some updates (record code 20): a verifier checks its
/// replayed state against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    /// The engine updates applied since the [`AdaptiveSetup`].
    pub updates: u64,
    /// Outcomes the engine refused to learn from (a posterior shape at its bound); the
    /// state did not change for them.
    pub refused_updates: u64,
    /// Adaptive decisions still waiting for their outcome.
    pub pending: u64,
    /// The engine state digest after those updates (the chained digest the next
    /// decision's PRF is keyed with, `docs/ADAPT.md` section 5).
    pub state_digest: Digest,
    /// The digest of the state's canonical byte layout (every regime's floor,
    /// statistics and posteriors), recomputed from the fields.
    pub layout_digest: Digest,
}

/// The most waiting decisions one [`EnginePending`] record carries: 16,384 decisions of
/// at most 32 features stay below 4 MiB, a quarter of a log record's bound.
pub const MAX_PENDING_PER_RECORD: usize = 1 << 14;

/// The adaptive engine's whole state (record code 22), written right after a book
/// snapshot under [`Retention::SinceLastSnapshot`] (in the same barrier), then the
/// [`EnginePending`] records holding the decisions still waiting for their outcome,
/// then the [`EngineSnapshot`] of the same state. A log whose first segments were
/// retired starts its adaptive replay here (`docs/ADAPT.md` section 8).
///
/// [`Retention::SinceLastSnapshot`]: crate::Retention::SinceLastSnapshot
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    /// The engine's setup, restated (the retained log may no longer hold its
    /// [`AdaptiveSetup`] record); it must be the log's.
    pub setup: AdaptiveSetup,
    /// The engine updates applied since the setup (as [`EngineSnapshot::updates`]).
    pub updates: u64,
    /// Updates the engine refused (as [`EngineSnapshot::refused_updates`]).
    pub refused_updates: u64,
    /// The engine's state version: its applied updates.
    pub version: u64,
    /// The chained state digest the next decision's note carries.
    pub state_digest: Digest,
    /// Every regime, in index order (exactly the setup's number of them).
    pub regimes: Vec<EngineRegimeState>,
    /// Decisions waiting for their outcome, carried by the [`EnginePending`] records
    /// that follow: `ceil(pending / MAX_PENDING_PER_RECORD)` of them.
    pub pending: u64,
}

/// One regime of an [`EngineState`]: the fields of its part of the layout digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineRegimeState {
    /// The calibrated floor, in basis points.
    pub floor_bps: u32,
    /// The Welford state of each feature (exactly the setup's number of them).
    pub welford: Vec<WelfordState>,
    /// The posterior `(α, β)` of each tier.
    pub posteriors: Vec<(u32, u32)>,
    /// The regime's applied updates in the Thompson table (0 under epsilon-greedy).
    pub table_updates: u32,
    /// When and from which posterior each tier's table column was drawn: one per
    /// tier under Thompson sampling, none under epsilon-greedy.
    pub refreshes: Vec<TableRefresh>,
}

/// One feature's exact statistics in an [`EngineRegimeState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WelfordState {
    /// Observations `n`.
    pub count: u64,
    /// `S = Σx`.
    pub sum: i128,
    /// `D = n·Σx² − S²`.
    pub spread: i128,
}

/// One column's refresh point in an [`EngineRegimeState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRefresh {
    /// The regime's update count when the column was drawn.
    pub refreshed_at: u32,
    /// The posterior it was drawn from: α.
    pub alpha: u32,
    /// The posterior it was drawn from: β.
    pub beta: u32,
}

/// Decisions waiting for their outcome when an [`EngineState`] was written (record
/// code 23): the records that follow it, each with [`MAX_PENDING_PER_RECORD`]
/// decisions but the last, in ascending sequence order across them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnginePending {
    /// The waiting decisions.
    pub decisions: Vec<PendingDecision>,
}

/// One decision waiting for its outcome, in an [`EnginePending`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDecision {
    /// The decision record's sequence number.
    pub sequence: u64,
    /// Its regime.
    pub regime: u32,
    /// Its tier.
    pub tier: u32,
    /// Its features (the setup's number of them).
    pub features: Vec<i32>,
    /// Its kernel input's `business_value_microunits` (the reward scale it learns on).
    pub business_value_microunits: i64,
}

impl EngineState {
    /// Whether the record is within its bounds: its setup's, and no more regimes,
    /// features or tiers than the setup has.
    #[must_use]
    pub fn within_bounds(&self) -> bool {
        self.setup.within_bounds()
            && self.regimes.len() == self.setup.regimes.len()
            && self.regimes.iter().all(|r| {
                r.welford.len() == self.setup.features as usize
                    && r.posteriors.len() == self.setup.priors.len()
                    && r.refreshes.len() <= self.setup.priors.len()
            })
            && self.pending <= MAX_ADAPTIVE_PENDING as u64
    }
}

impl EnginePending {
    /// Whether the record is within its bounds (at most [`MAX_PENDING_PER_RECORD`]
    /// decisions of at most 32 features).
    #[must_use]
    pub fn within_bounds(&self) -> bool {
        self.decisions.len() <= MAX_PENDING_PER_RECORD
            && self.decisions.iter().all(|d| d.features.len() <= 32)
    }
}

impl AdaptiveSetup {
    /// Whether the record is within its bounds (labels, tiers, features); the engine
    /// checks the rest when it is built.
    #[must_use]
    pub fn within_bounds(&self) -> bool {
        self.regimes
            .iter()
            .all(|r| r.label.len() <= MAX_ADAPTIVE_LABEL_BYTES)
            && self.tiers.len() <= MAX_ADAPTIVE_TIERS
            && self.tiers.len() == self.priors.len()
            && (self.static_tier as usize) < self.tiers.len()
            && match self.feedback {
                AdaptiveFeedback::Success => true,
                AdaptiveFeedback::Reward {
                    cost_bound_bps,
                    observations,
                } => {
                    cost_bound_bps <= 10_000
                        && (1..=MAX_REWARD_OBSERVATIONS).contains(&observations)
                }
            }
    }
}

impl AdaptiveNote {
    /// Whether the note is within its bounds (label length, at most 32 features).
    #[must_use]
    pub fn within_bounds(&self) -> bool {
        self.label
            .as_ref()
            .is_none_or(|l| l.len() <= MAX_ADAPTIVE_LABEL_BYTES)
            && self.features.len() <= 32
            && self.propensity_denominator > 0
            && self.propensity_numerator <= self.propensity_denominator
    }
}

/// Which part of an adaptive step does not re-derive from the log
/// ([`VerifyError::Adaptive`]).
///
/// [`VerifyError::Adaptive`]: crate::VerifyError::Adaptive
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AdaptiveMismatch {
    /// The adaptive setup is missing, repeated or refused by the engine.
    Setup,
    /// The engine state a decision saw (or a snapshot's) is not the state the log's
    /// outcomes give.
    State,
    /// The regime differs.
    Regime,
    /// The exploration draw, the exploring bit or the tier drawn differs.
    Draw,
    /// The floor (suggested, applied, or the client override) differs.
    Floor,
    /// The propensity differs.
    Propensity,
    /// The note is out of bounds, or the kernel input is not the caller's with the
    /// engine's floor and tier.
    Input,
    /// The log holds adaptive records but this build cannot run the engine (built
    /// without the `adaptive` feature).
    Unsupported,
    /// An engine state record ([`EngineState`], with its [`EnginePending`] records)
    /// is out of bounds, breaks an invariant of the engine's state, is not followed
    /// by its pending records and its [`EngineSnapshot`], or does not match that
    /// snapshot's digests (or, where the log is replayed through it, the replayed
    /// state).
    StateRecord,
}

/// The verifier's adaptive replay: the engine's with the `adaptive` feature; without
/// it, any adaptive record fails verification with [`AdaptiveMismatch::Unsupported`]
/// (never skipped in silence).
#[derive(Debug, Default)]
pub(crate) struct Verifier {
    #[cfg(feature = "adaptive")]
    replay: crate::adaptive_engine::AdaptiveReplay,
}

#[cfg(not(feature = "adaptive"))]
fn unsupported(sequence: u64) -> crate::VerifyError {
    crate::VerifyError::Adaptive {
        sequence,
        kind: AdaptiveMismatch::Unsupported,
        detail: "this build of the verifier has no adaptive engine (feature `adaptive`)".to_owned(),
    }
}

#[cfg(not(feature = "adaptive"))]
impl Verifier {
    pub(crate) fn setup(
        &mut self,
        sequence: u64,
        _: &AdaptiveSetup,
    ) -> Result<(), crate::VerifyError> {
        Err(unsupported(sequence))
    }

    pub(crate) fn decision(
        &mut self,
        sequence: u64,
        record: &crate::record::GateDecision,
    ) -> Result<(), crate::VerifyError> {
        match record.adaptive {
            Some(_) => Err(unsupported(sequence)),
            None => Ok(()),
        }
    }

    pub(crate) const fn start(&mut self, _: u64) {}

    pub(crate) const fn finish(&mut self) {}

    pub(crate) const fn outcome(
        &mut self,
        _: u64,
        _: &crate::record::OutcomeRecord,
    ) -> Result<(), crate::VerifyError> {
        Ok(())
    }

    pub(crate) fn snapshot(
        &mut self,
        sequence: u64,
        _: &EngineSnapshot,
    ) -> Result<(), crate::VerifyError> {
        Err(unsupported(sequence))
    }

    pub(crate) fn state_record(
        &mut self,
        sequence: u64,
        _: &EngineState,
    ) -> Result<(), crate::VerifyError> {
        Err(unsupported(sequence))
    }

    pub(crate) fn pending_record(
        &mut self,
        sequence: u64,
        _: &EnginePending,
    ) -> Result<(), crate::VerifyError> {
        Err(unsupported(sequence))
    }

    pub(crate) const fn counts(&self) -> AdaptiveCounts {
        AdaptiveCounts {
            decisions: 0,
            snapshots: 0,
            states: 0,
            unchecked: 0,
        }
    }
}

/// What the verifier's adaptive replay counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdaptiveCounts {
    pub(crate) decisions: u64,
    pub(crate) snapshots: u64,
    pub(crate) states: u64,
    pub(crate) unchecked: u64,
}

#[cfg(feature = "adaptive")]
impl Verifier {
    pub(crate) fn setup(
        &mut self,
        sequence: u64,
        setup: &AdaptiveSetup,
    ) -> Result<(), crate::VerifyError> {
        self.replay.setup(sequence, setup)
    }

    pub(crate) fn decision(
        &mut self,
        sequence: u64,
        record: &crate::record::GateDecision,
    ) -> Result<(), crate::VerifyError> {
        self.replay.decision(sequence, record)
    }

    pub(crate) const fn start(&mut self, first_sequence: u64) {
        self.replay.start(first_sequence);
    }

    pub(crate) fn finish(&mut self) {
        self.replay.finish();
    }

    pub(crate) fn outcome(
        &mut self,
        sequence: u64,
        record: &crate::record::OutcomeRecord,
    ) -> Result<(), crate::VerifyError> {
        self.replay.outcome(sequence, record)
    }

    pub(crate) fn snapshot(
        &mut self,
        sequence: u64,
        snapshot: &EngineSnapshot,
    ) -> Result<(), crate::VerifyError> {
        self.replay.snapshot(sequence, snapshot)
    }

    pub(crate) fn state_record(
        &mut self,
        sequence: u64,
        state: &EngineState,
    ) -> Result<(), crate::VerifyError> {
        self.replay.state_record(sequence, state)
    }

    pub(crate) fn pending_record(
        &mut self,
        sequence: u64,
        pending: &EnginePending,
    ) -> Result<(), crate::VerifyError> {
        self.replay.pending_record(sequence, pending)
    }

    pub(crate) const fn counts(&self) -> AdaptiveCounts {
        AdaptiveCounts {
            decisions: self.replay.decisions,
            snapshots: self.replay.snapshots,
            states: self.replay.states,
            unchecked: self.replay.unchecked,
        }
    }
}
