//! Running the adaptive engine inside the gate and re-deriving it in the verifier
//! (feature `adaptive`). One [`AdaptiveState`] is both: the gate steps it under its
//! lock, in log order; the verifier steps a fresh one from the log's records and
//! compares every field of every [`AdaptiveNote`] with what it derives.

use std::collections::HashMap;

use calybris_adapt::engine::{
    Decision, Engine, EngineConfig, EngineState as AdaptEngineState, RegimeState, Request,
    TableState,
};
use calybris_adapt::error::LearnError;
use calybris_adapt::prf::PrfKey;
use calybris_adapt::regime::{Domain, RegimeConfig, RegimeSpec, Welford};
use calybris_adapt::reward::RewardScale;
use calybris_adapt::thompson::{Policy, Posterior, Refresh};
use calybris_digest::{Digest, input_digest};
use calybris_kernel::KernelInput;

use crate::adaptive::AdaptiveMismatch;
use crate::adaptive::{
    ADAPTIVE_FORMAT_VERSION, AdaptiveFeedback, AdaptiveNote, AdaptivePolicy, AdaptiveSetup,
    EnginePending, EngineRegimeState, EngineSnapshot, EngineState, MAX_ADAPTIVE_PENDING,
    MAX_PENDING_PER_RECORD, PendingDecision, TableRefresh, WelfordState,
};
use crate::record::{GateDecision, OutcomeRecord};
use crate::verify::VerifyError;

/// What a caller tells the engine about a request besides its kernel input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveRequest<'a> {
    /// The regime label, if the caller knows it.
    pub label: Option<&'a str>,
    /// The request's integer features (the configured number of them).
    pub features: &'a [i32],
}

/// Why an [`AdaptiveSetup`] does not build an engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The record breaks a bound or has another version.
    #[error("adaptive setup out of bounds: {0}")]
    Bounds(&'static str),
    /// The engine refuses the configuration.
    #[error("adaptive setup refused by the engine: {0}")]
    Engine(#[from] LearnError),
}

/// The engine configuration and key of `setup`.
///
/// # Errors
/// [`SetupError`].
pub fn engine_config(setup: &AdaptiveSetup) -> Result<(EngineConfig, PrfKey), SetupError> {
    if setup.format_version != ADAPTIVE_FORMAT_VERSION {
        return Err(SetupError::Bounds("unknown adaptive format version"));
    }
    if !setup.within_bounds() {
        return Err(SetupError::Bounds(
            "labels, tiers (one per prior), the static tier or the feedback's cost bound",
        ));
    }
    let mut regimes = Vec::with_capacity(setup.regimes.len());
    for r in &setup.regimes {
        let domain = match r.domain {
            1 => Domain::Support,
            2 => Domain::Coding,
            3 => Domain::Compliance,
            4 => Domain::Security,
            5 => Domain::Custom {
                floor_bps: r.custom_floor_bps,
            },
            _ => return Err(SetupError::Bounds("unknown regime domain")),
        };
        regimes.push(RegimeSpec {
            label: r.label.clone(),
            domain,
        });
    }
    let priors = setup
        .priors
        .iter()
        .map(|&(a, b)| Posterior::new(a, b))
        .collect::<Result<Vec<_>, _>>()?;
    let config = EngineConfig {
        regimes: RegimeConfig {
            regimes,
            features: setup.features as usize,
            floor_min_bps: setup.floor_min_bps,
            floor_max_bps: setup.floor_max_bps,
            step_bps: setup.step_bps,
            min_observations: setup.min_observations,
            fallback: setup.fallback,
        },
        priors,
        policy: match setup.policy {
            AdaptivePolicy::Thompson { redraws } => Policy::Thompson { redraws },
            AdaptivePolicy::EpsilonGreedy { epsilon_bps } => Policy::EpsilonGreedy { epsilon_bps },
        },
        exploration_bps: setup.exploration_bps,
    };
    Ok((config, PrfKey::from_bytes(setup.key)))
}

/// A decision waiting for its outcome.
#[derive(Debug, Clone)]
struct Pending {
    /// The engine's decision (an update reads its regime and arm only).
    decision: Decision,
    features: Vec<i32>,
    /// The kernel input's `business_value_microunits` (restated in a state record).
    value: i64,
    /// The reward scale it learns on and the observations per outcome (feedback
    /// [`AdaptiveFeedback::Reward`] and a positive value), else its success bit.
    scale: Option<(RewardScale, u32)>,
}

/// One engine step: the note to log and the kernel input the gate decides on.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) note: AdaptiveNote,
    pub(crate) input: KernelInput,
    decision: Decision,
    value: i64,
    scale: Option<(RewardScale, u32)>,
}

/// What one engine step derives (see [`AdaptiveState::derive`]).
#[derive(Debug, Clone, Copy)]
struct Derived {
    decision: Decision,
    propensity: calybris_adapt::thompson::Propensity,
    /// The engine's own floor (before the client's).
    own: u32,
    client: Option<u32>,
    /// The kernel input with the engine's floor and tier.
    input: KernelInput,
}

impl Derived {
    fn client_overrode(&self) -> bool {
        self.client.is_some_and(|c| c > self.own)
    }
}

/// Hashes the waiting decisions' sequence numbers: a multiply and a shift (Fibonacci
/// hashing). Keys are sequence numbers the log assigned in order (never chosen by a
/// caller), and lookups by an outcome's claimed sequence only read, so SipHash's
/// flooding resistance buys nothing here and costs a fifth of a replayed step.
#[derive(Debug, Clone, Copy, Default)]
struct SequenceHasher(u64);

impl std::hash::Hasher for SequenceHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 ^= self.0 >> 29;
    }
}

type SequenceMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<SequenceHasher>>;

/// The engine, its setup, and the adaptive decisions waiting for an outcome.
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveState {
    engine: Engine,
    setup: AdaptiveSetup,
    pending: SequenceMap<Pending>,
    updates: u64,
    refused: u64,
}

impl AdaptiveState {
    /// A fresh engine from `setup`.
    pub(crate) fn new(setup: AdaptiveSetup) -> Result<Self, SetupError> {
        let (config, key) = engine_config(&setup)?;
        Ok(Self {
            engine: Engine::new(config, key)?,
            setup,
            pending: SequenceMap::default(),
            updates: 0,
            refused: 0,
        })
    }

    pub(crate) const fn setup(&self) -> &AdaptiveSetup {
        &self.setup
    }

    pub(crate) fn pending_full(&self) -> bool {
        self.pending.len() >= MAX_ADAPTIVE_PENDING
    }

    /// The engine's suggestion for `input` (the caller's) on the current state, and the
    /// kernel input that carries it. Pure.
    pub(crate) fn step(
        &self,
        input: &KernelInput,
        request: AdaptiveRequest<'_>,
    ) -> Result<Step, LearnError> {
        let d = self.derive(input, request)?;
        let note = AdaptiveNote {
            regime: d.decision.regime,
            tier: d.decision.arm,
            static_tier: self.setup.static_tier,
            explored: d.decision.explored,
            draw: d.decision.draw,
            propensity_numerator: d.propensity.numerator,
            propensity_denominator: d.propensity.denominator,
            floor_suggested_bps: d.own,
            client_floor_bps: d.client,
            client_floor_overrode: d.client_overrode(),
            floor_bps: d.decision.floor_bps,
            requested_model_id: input.requested_model_id,
            label: request.label.map(str::to_owned),
            features: request.features.to_vec(),
            state_digest: Digest(d.decision.state_digest),
        };
        Ok(Step {
            note,
            input: d.input,
            decision: d.decision,
            value: input.business_value_microunits,
            scale: self.scale_of(input.business_value_microunits),
        })
    }

    /// What [`step`](Self::step) derives, without building the note (the verifier
    /// compares it with the logged note field by field).
    fn derive(
        &self,
        input: &KernelInput,
        request: AdaptiveRequest<'_>,
    ) -> Result<Derived, LearnError> {
        let client =
            (input.minimum_quality_bps > 0).then_some(u32::from(input.minimum_quality_bps));
        let engine_request = Request {
            input_digest: input_digest(input).0,
            label: request.label,
            features: request.features,
            client_floor_bps: client,
            static_arm: self.setup.static_tier,
        };
        let decision = self.engine.decide(&engine_request)?;
        let propensity = self.engine.propensity(&engine_request, &decision)?;
        let own = self.engine.regimes().decision_floor_bps(
            decision.regime,
            None,
            self.setup.exploration_bps > 0,
        )?;
        let tier = self.setup.tiers[decision.arm as usize];
        let mut adapted = *input;
        // floor_bps ≤ 10,000 (the engine's bound), so it fits a u16.
        let floor = u16::try_from(decision.floor_bps).unwrap_or(u16::MAX);
        adapted.minimum_quality_bps = adapted.minimum_quality_bps.max(floor).max(tier.floor_bps);
        if let Some(model) = tier.requested_model_id {
            adapted.requested_model_id = model;
        }
        // The learner only raises the floor and names a candidate: every other limit
        // of the caller's input reaches the kernel unchanged.
        debug_assert!(adapted.minimum_quality_bps >= input.minimum_quality_bps);
        debug_assert!(decision.floor_bps >= own && client.is_none_or(|c| decision.floor_bps >= c));
        // A decided tier is never improbable.
        debug_assert!(propensity.numerator > 0 && propensity.numerator <= propensity.denominator);
        Ok(Derived {
            decision,
            propensity,
            own,
            client,
            input: adapted,
        })
    }

    /// The decision of `step` was logged at `sequence`: it now waits for its outcome.
    pub(crate) fn logged(&mut self, sequence: u64, step: Step) {
        self.waits(
            sequence,
            step.decision,
            step.note.features,
            step.value,
            step.scale,
        );
    }

    /// The reward scale and observations per outcome a decision whose request is
    /// worth `business_value_microunits` learns on (`None` with success feedback).
    fn scale_of(&self, business_value_microunits: i64) -> Option<(RewardScale, u32)> {
        match self.setup.feedback {
            AdaptiveFeedback::Success => None,
            AdaptiveFeedback::Reward {
                cost_bound_bps,
                observations,
            } => RewardScale::of_value(business_value_microunits, cost_bound_bps)
                .map(|scale| (scale, observations)),
        }
    }

    fn waits(
        &mut self,
        sequence: u64,
        decision: Decision,
        features: Vec<i32>,
        value: i64,
        scale: Option<(RewardScale, u32)>,
    ) {
        debug_assert!(self.pending.len() < MAX_ADAPTIVE_PENDING);
        let previous = self.pending.insert(
            sequence,
            Pending {
                decision,
                features,
                value,
                scale,
            },
        );
        debug_assert!(previous.is_none(), "a sequence number is never reused");
    }

    /// The first outcome of the adaptive decision at `decision_sequence` was logged:
    /// the engine learns from it (an outcome of another decision, or a second one,
    /// changes nothing). With reward feedback it learns the dithered bit of `reward`
    /// as the tier's next observation (`docs/ADAPT.md` section 9), else `success`.
    /// Returns the snapshot to log, when one is due.
    pub(crate) fn learn(
        &mut self,
        decision_sequence: u64,
        success: bool,
        reward: i64,
    ) -> Option<EngineSnapshot> {
        let pending = self.pending.remove(&decision_sequence)?;
        let (scale, observations) = match pending.scale {
            None => (None, 1),
            Some((scale, observations)) => (Some(scale), observations),
        };
        let before = self.updates + self.refused;
        for _ in 0..observations {
            let bit = match scale {
                None => success,
                Some(scale) => {
                    // The tier's observations so far: its posterior's shapes less its
                    // prior's (a pure function of the state, so the verifier agrees).
                    let arm = pending.decision.arm as usize;
                    let seen = self
                        .engine
                        .posteriors(pending.decision.regime)
                        .ok()
                        .and_then(|p| p.get(arm).copied())
                        .zip(self.engine.config().priors.get(arm).copied())
                        .map_or(0, |(now, prior)| {
                            (u64::from(now.alpha()) + u64::from(now.beta()))
                                .saturating_sub(u64::from(prior.alpha()) + u64::from(prior.beta()))
                        });
                    scale.bit(reward, seen)
                }
            };
            match self
                .engine
                .update(&pending.decision, &pending.features, bit)
            {
                Ok(()) => self.updates += 1,
                // A posterior at its shape bound (or a Welford count at its bound): the
                // state does not change, and the refusal is counted in every snapshot.
                Err(_) => self.refused += 1,
            }
        }
        let every = self.setup.snapshot_every_updates;
        let applied = self.updates + self.refused;
        // Due when this outcome's updates reach a multiple of `every` (one outcome may
        // apply several).
        (every > 0 && before / every != applied / every).then(|| self.snapshot())
    }

    /// The snapshot of the current state.
    pub(crate) fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            updates: self.updates,
            refused_updates: self.refused,
            pending: self.pending.len() as u64,
            state_digest: Digest(self.engine.state_digest()),
            layout_digest: Digest(self.engine.layout_digest()),
        }
    }
}

impl AdaptiveState {
    /// The state record of the current state and the pending records that follow it
    /// (waiting decisions in ascending sequence order, [`MAX_PENDING_PER_RECORD`] a
    /// record).
    pub(crate) fn state_records(&self) -> (EngineState, Vec<EnginePending>) {
        let exported = self.engine.export_state();
        let regimes = exported
            .regimes
            .iter()
            .map(|r| EngineRegimeState {
                floor_bps: r.floor_bps,
                welford: r
                    .stats
                    .iter()
                    .map(|w| WelfordState {
                        count: w.count(),
                        sum: w.sum(),
                        spread: w.spread(),
                    })
                    .collect(),
                posteriors: r.posteriors.iter().map(|p| (p.alpha(), p.beta())).collect(),
                table_updates: r.table.as_ref().map_or(0, |t| t.updates),
                refreshes: r.table.as_ref().map_or_else(Vec::new, |t| {
                    t.refreshes
                        .iter()
                        .map(|f| TableRefresh {
                            refreshed_at: f.refreshed_at,
                            alpha: f.posterior.alpha(),
                            beta: f.posterior.beta(),
                        })
                        .collect()
                }),
            })
            .collect();
        let mut waiting: Vec<(&u64, &Pending)> = self.pending.iter().collect();
        waiting.sort_unstable_by_key(|(sequence, _)| **sequence);
        let parts = waiting
            .chunks(MAX_PENDING_PER_RECORD)
            .map(|chunk| EnginePending {
                decisions: chunk
                    .iter()
                    .map(|(sequence, p)| PendingDecision {
                        sequence: **sequence,
                        regime: p.decision.regime,
                        tier: p.decision.arm,
                        features: p.features.clone(),
                        business_value_microunits: p.value,
                    })
                    .collect(),
            })
            .collect();
        let record = EngineState {
            setup: self.setup.clone(),
            updates: self.updates,
            refused_updates: self.refused,
            version: exported.version,
            state_digest: Digest(exported.state_digest),
            regimes,
            pending: self.pending.len() as u64,
        };
        (record, parts)
    }

    /// The state a state record and its waiting decisions give (every invariant of
    /// the engine's state checked; the digests are the caller's to check against the
    /// engine snapshot that follows).
    fn from_records(
        record: &EngineState,
        decisions: &[PendingDecision],
        before: u64,
    ) -> Result<Self, String> {
        if !record.within_bounds() {
            return Err("the engine state record is out of bounds".to_owned());
        }
        if record.updates != record.version {
            return Err(format!(
                "{} updates but state version {}",
                record.updates, record.version
            ));
        }
        let (config, key) = engine_config(&record.setup).map_err(|e| e.to_string())?;
        let thompson = matches!(config.policy, Policy::Thompson { .. });
        let mut regimes = Vec::with_capacity(record.regimes.len());
        for r in &record.regimes {
            let stats = r
                .welford
                .iter()
                .map(|w| Welford::from_parts(w.count, w.sum, w.spread))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let posteriors = r
                .posteriors
                .iter()
                .map(|&(a, b)| Posterior::new(a, b))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let table = if thompson {
                let refreshes = r
                    .refreshes
                    .iter()
                    .map(|f| {
                        Posterior::new(f.alpha, f.beta).map(|posterior| Refresh {
                            refreshed_at: f.refreshed_at,
                            posterior,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                Some(TableState {
                    updates: r.table_updates,
                    refreshes,
                })
            } else {
                if r.table_updates != 0 || !r.refreshes.is_empty() {
                    return Err("table refreshes under epsilon-greedy".to_owned());
                }
                None
            };
            regimes.push(RegimeState {
                floor_bps: r.floor_bps,
                stats,
                posteriors,
                table,
            });
        }
        let exported = AdaptEngineState {
            version: record.version,
            state_digest: record.state_digest.0,
            regimes,
        };
        let engine = Engine::from_state(config, key, &exported).map_err(|e| e.to_string())?;
        let mut state = Self {
            engine,
            setup: record.setup.clone(),
            pending: SequenceMap::default(),
            updates: record.updates,
            refused: record.refused_updates,
        };
        if decisions.len() as u64 != record.pending {
            return Err(format!(
                "{} waiting decisions announced, {} given",
                record.pending,
                decisions.len()
            ));
        }
        let arms = state.engine.arms();
        let regimes = state.engine.regimes().len();
        let features = record.setup.features as usize;
        let mut last = None;
        for d in decisions {
            if last.is_some_and(|l| d.sequence <= l) || d.sequence >= before {
                return Err(
                    "waiting decisions not ascending, or not before the state record".to_owned(),
                );
            }
            last = Some(d.sequence);
            if d.regime as usize >= regimes
                || d.tier as usize >= arms
                || d.features.len() != features
            {
                return Err(format!(
                    "waiting decision {} names a regime, tier or feature count the setup does not have",
                    d.sequence
                ));
            }
            let decision = Decision {
                regime: d.regime,
                arm: d.tier,
                floor_bps: 0,
                explored: false,
                draw: None,
                state_digest: [0; 32],
            };
            let scale = state.scale_of(d.business_value_microunits);
            state.waits(
                d.sequence,
                decision,
                d.features.clone(),
                d.business_value_microunits,
                scale,
            );
        }
        Ok(state)
    }
}

/// A state record read, waiting for its pending records and its snapshot.
#[derive(Debug)]
struct Restoring {
    /// The state record's sequence number.
    sequence: u64,
    record: EngineState,
    decisions: Vec<PendingDecision>,
    /// The state, once every pending record is in.
    built: Option<AdaptiveState>,
}

/// The verifier's side: re-derives every adaptive step from the log.
#[derive(Debug, Default)]
pub(crate) struct AdaptiveReplay {
    state: Option<AdaptiveState>,
    /// The log starts after record 0: adaptive records before its first complete
    /// state record (or its setup) are not re-derived, as the books are not before
    /// their first snapshot.
    retained: bool,
    /// A state record whose pending records or snapshot have not been read yet.
    restoring: Option<Restoring>,
    /// Adaptive decisions of a retained log before its first complete state record.
    pub(crate) unchecked: u64,
    /// Engine state records, each checked against its snapshot (and the replay).
    pub(crate) states: u64,
    /// Adaptive decisions re-derived.
    pub(crate) decisions: u64,
    /// Engine snapshots checked.
    pub(crate) snapshots: u64,
}

fn mismatch(sequence: u64, kind: AdaptiveMismatch, detail: String) -> VerifyError {
    VerifyError::Adaptive {
        sequence,
        kind,
        detail,
    }
}

impl AdaptiveReplay {
    /// The first record of the log is at `first_sequence`.
    pub(crate) const fn start(&mut self, first_sequence: u64) {
        self.retained = first_sequence > 0;
    }

    /// An adaptive step (decision, outcome, another state record) while a state
    /// record waits for its pending records or its snapshot: that state record was
    /// never finished (a crash cut its tail before the log went on), so it is not
    /// used; with no replayed state to go on, the log cannot be re-derived.
    fn abandon_unfinished(&mut self, sequence: u64) -> Result<(), VerifyError> {
        if let Some(unfinished) = self.restoring.take()
            && self.state.is_none()
            && !self.retained
        {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::StateRecord,
                format!(
                    "the engine state record at {} has no engine snapshot",
                    unfinished.sequence
                ),
            ));
        }
        Ok(())
    }

    /// Whether adaptive steps are skipped here: a retained log before its first
    /// complete state record (their effect is in that record).
    const fn skipping(&self) -> bool {
        self.retained && self.state.is_none()
    }

    /// An engine state record (code 22).
    pub(crate) fn state_record(
        &mut self,
        sequence: u64,
        record: &EngineState,
    ) -> Result<(), VerifyError> {
        self.abandon_unfinished(sequence)?;
        if self.state.is_none() && !self.retained {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::Setup,
                "an engine state record before any adaptive setup in a log from record 0"
                    .to_owned(),
            ));
        }
        if let Some(state) = &self.state
            && state.setup != record.setup
        {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::StateRecord,
                "the engine state record restates another setup than the log's".to_owned(),
            ));
        }
        if !record.within_bounds() {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::StateRecord,
                "the engine state record is out of bounds".to_owned(),
            ));
        }
        let mut restoring = Restoring {
            sequence,
            record: record.clone(),
            decisions: Vec::new(),
            built: None,
        };
        if record.pending == 0 {
            restoring.built = Some(Self::build(&restoring)?);
        }
        self.restoring = Some(restoring);
        Ok(())
    }

    fn build(restoring: &Restoring) -> Result<AdaptiveState, VerifyError> {
        AdaptiveState::from_records(&restoring.record, &restoring.decisions, restoring.sequence)
            .map_err(|detail| {
                mismatch(
                    restoring.sequence,
                    AdaptiveMismatch::StateRecord,
                    format!("the engine state record is not a state of the engine: {detail}"),
                )
            })
    }

    /// A pending record (code 23): it must follow its state record.
    pub(crate) fn pending_record(
        &mut self,
        sequence: u64,
        record: &EnginePending,
    ) -> Result<(), VerifyError> {
        let bad = |detail: &str| {
            Err(mismatch(
                sequence,
                AdaptiveMismatch::StateRecord,
                detail.to_owned(),
            ))
        };
        let Some(restoring) = self.restoring.as_mut() else {
            return bad("a pending record without an engine state record before it");
        };
        if restoring.built.is_some() || !record.within_bounds() {
            return bad("a pending record beyond the state record's count, or out of bounds");
        }
        let remaining = restoring.record.pending - restoring.decisions.len() as u64;
        let expected = remaining.min(MAX_PENDING_PER_RECORD as u64);
        if record.decisions.len() as u64 != expected {
            return bad("a pending record with another number of decisions than its share");
        }
        restoring.decisions.extend(record.decisions.iter().cloned());
        if restoring.decisions.len() as u64 == restoring.record.pending {
            restoring.built = Some(Self::build(restoring)?);
        }
        Ok(())
    }

    /// Feeds one record of a log being reopened (the same checks as the verifier's).
    pub(crate) fn visit(
        &mut self,
        sequence: u64,
        record: &crate::record::GateRecord,
    ) -> Result<(), crate::GateError> {
        use crate::record::GateRecord;
        let checked = match record {
            GateRecord::AdaptiveSetup(setup) => self.setup(sequence, setup),
            GateRecord::Decision(decision) => self.decision(sequence, decision),
            GateRecord::Outcome(outcome) => self.outcome(sequence, outcome),
            GateRecord::EngineSnapshot(snapshot) => self.snapshot(sequence, snapshot),
            GateRecord::EngineState(state) => self.state_record(sequence, state),
            GateRecord::EnginePending(pending) => self.pending_record(sequence, pending),
            _ => Ok(()),
        };
        checked.map_err(|e| crate::GateError::AdaptiveReplay(Box::new(e)))
    }

    /// Whether a setup or a complete state record gave the replay a state.
    pub(crate) const fn has_state(&self) -> bool {
        self.state.is_some()
    }

    /// The replayed engine, if the log held a setup (or a state record).
    pub(crate) fn into_state(self) -> Option<AdaptiveState> {
        self.state
    }

    pub(crate) fn setup(
        &mut self,
        sequence: u64,
        setup: &AdaptiveSetup,
    ) -> Result<(), VerifyError> {
        self.abandon_unfinished(sequence)?;
        if self.state.is_some() {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::Setup,
                "a second adaptive setup in one log".to_owned(),
            ));
        }
        let state = AdaptiveState::new(setup.clone())
            .map_err(|e| mismatch(sequence, AdaptiveMismatch::Setup, e.to_string()))?;
        self.state = Some(state);
        Ok(())
    }

    pub(crate) fn decision(
        &mut self,
        sequence: u64,
        record: &GateDecision,
    ) -> Result<(), VerifyError> {
        let Some(note) = &record.adaptive else {
            return Ok(());
        };
        self.abandon_unfinished(sequence)?;
        if self.skipping() {
            self.unchecked += 1;
            return Ok(());
        }
        let Some(state) = self.state.as_mut() else {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::Setup,
                "an adaptive decision before any adaptive setup".to_owned(),
            ));
        };
        if !note.within_bounds() {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::Input,
                "the adaptive note is out of bounds".to_owned(),
            ));
        }
        let here = Digest(state.engine.state_digest());
        if note.state_digest != here {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::State,
                format!(
                    "the decision saw engine state {}, the log's outcomes give {}",
                    calybris_digest::Hex(note.state_digest.as_slice()),
                    calybris_digest::Hex(here.as_slice())
                ),
            ));
        }
        // The caller's input: the logged one with the two fields the engine may change
        // put back.
        let mut caller = record.audit.input;
        caller.requested_model_id = note.requested_model_id;
        caller.minimum_quality_bps =
            note.client_floor_bps
                .map_or(Ok(0), u16::try_from)
                .map_err(|_| {
                    mismatch(
                        sequence,
                        AdaptiveMismatch::Floor,
                        "the client floor is above 10,000".to_owned(),
                    )
                })?;
        let request = AdaptiveRequest {
            label: note.label.as_deref(),
            features: &note.features,
        };
        let d = state
            .derive(&caller, request)
            .map_err(|e| mismatch(sequence, AdaptiveMismatch::Input, e.to_string()))?;
        let check = |ok: bool, kind: AdaptiveMismatch, what: &dyn Fn() -> String| {
            if ok {
                Ok(())
            } else {
                Err(mismatch(sequence, kind, what()))
            }
        };
        check(
            d.decision.regime == note.regime,
            AdaptiveMismatch::Regime,
            &|| {
                format!(
                    "regime {} logged, {} derived",
                    note.regime, d.decision.regime
                )
            },
        )?;
        check(
            d.decision.draw == note.draw
                && d.decision.explored == note.explored
                && state.setup.static_tier == note.static_tier,
            AdaptiveMismatch::Draw,
            &|| {
                format!(
                    "exploration draw {:?} (explored {}) logged, {:?} (explored {}) derived",
                    note.draw, note.explored, d.decision.draw, d.decision.explored
                )
            },
        )?;
        check(d.decision.arm == note.tier, AdaptiveMismatch::Draw, &|| {
            format!("tier {} logged, {} derived", note.tier, d.decision.arm)
        })?;
        check(
            d.own == note.floor_suggested_bps
                && d.decision.floor_bps == note.floor_bps
                && d.client_overrode() == note.client_floor_overrode,
            AdaptiveMismatch::Floor,
            &|| {
                format!(
                    "floor {} (suggested {}, client overrode {}) logged, {} (suggested {}, client overrode {}) derived",
                    note.floor_bps,
                    note.floor_suggested_bps,
                    note.client_floor_overrode,
                    d.decision.floor_bps,
                    d.own,
                    d.client_overrode()
                )
            },
        )?;
        check(
            d.propensity.numerator == note.propensity_numerator
                && d.propensity.denominator == note.propensity_denominator,
            AdaptiveMismatch::Propensity,
            &|| {
                format!(
                    "propensity {}/{} logged, {}/{} derived",
                    note.propensity_numerator,
                    note.propensity_denominator,
                    d.propensity.numerator,
                    d.propensity.denominator
                )
            },
        )?;
        check(
            d.input == record.audit.input,
            AdaptiveMismatch::Input,
            &|| {
                "the kernel input is not the caller's input with the engine's floor and tier"
                    .to_owned()
            },
        )?;
        if state.pending_full() {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::State,
                "more adaptive decisions wait for an outcome than the gate allows".to_owned(),
            ));
        }
        let value = d.input.business_value_microunits;
        let scale = state.scale_of(value);
        state.waits(sequence, d.decision, note.features.clone(), value, scale);
        self.decisions += 1;
        Ok(())
    }

    pub(crate) fn outcome(
        &mut self,
        sequence: u64,
        record: &OutcomeRecord,
    ) -> Result<(), VerifyError> {
        self.abandon_unfinished(sequence)?;
        if let Some(state) = self.state.as_mut() {
            // Whether a snapshot is due is the writer's business; the verifier checks
            // every snapshot the log holds against the state at its place.
            let _due = state.learn(
                record.decision_sequence,
                record.success,
                record.reward_microunits,
            );
        }
        Ok(())
    }

    /// Checks a logged snapshot against the replayed state at its place in the log.
    pub(crate) fn snapshot(
        &mut self,
        sequence: u64,
        logged: &EngineSnapshot,
    ) -> Result<(), VerifyError> {
        if let Some(restoring) = self.restoring.take() {
            self.restored(sequence, restoring, logged)?;
        }
        if self.skipping() {
            return Ok(());
        }
        let Some(state) = self.state.as_ref() else {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::Setup,
                "an engine snapshot before any adaptive setup".to_owned(),
            ));
        };
        let here = state.snapshot();
        if here != *logged {
            return Err(mismatch(
                sequence,
                AdaptiveMismatch::State,
                format!(
                    "snapshot after {} updates with digest {} logged; replay gives {} updates, digest {}",
                    logged.updates,
                    calybris_digest::Hex(logged.state_digest.as_slice()),
                    here.updates,
                    calybris_digest::Hex(here.state_digest.as_slice())
                ),
            ));
        }
        self.snapshots += 1;
        Ok(())
    }

    /// The snapshot `logged` follows the state record of `restoring`: the state the
    /// record gives must have the snapshot's counts and digests (its layout digest
    /// recomputed from the fields); where the log was replayed up to here, the record
    /// must also be the replayed state's own. Otherwise the replay starts here.
    fn restored(
        &mut self,
        sequence: u64,
        restoring: Restoring,
        logged: &EngineSnapshot,
    ) -> Result<(), VerifyError> {
        let at = restoring.sequence;
        let Some(built) = restoring.built else {
            return Err(mismatch(
                at,
                AdaptiveMismatch::StateRecord,
                format!(
                    "the engine snapshot at {sequence} follows a state record missing pending records"
                ),
            ));
        };
        let given = built.snapshot();
        if given != *logged {
            return Err(mismatch(
                at,
                AdaptiveMismatch::StateRecord,
                format!(
                    "the engine state record gives {} updates, state digest {} and layout digest {}; its snapshot at {sequence} has {}, {} and {}",
                    given.updates,
                    calybris_digest::Hex(given.state_digest.as_slice()),
                    calybris_digest::Hex(given.layout_digest.as_slice()),
                    logged.updates,
                    calybris_digest::Hex(logged.state_digest.as_slice()),
                    calybris_digest::Hex(logged.layout_digest.as_slice()),
                ),
            ));
        }
        match &self.state {
            Some(replayed) => {
                if replayed.state_records() != built.state_records() {
                    return Err(mismatch(
                        at,
                        AdaptiveMismatch::StateRecord,
                        "the engine state record is not the state the log's records give"
                            .to_owned(),
                    ));
                }
            }
            None => self.state = Some(built),
        }
        self.states += 1;
        Ok(())
    }

    /// At the end of the log: a state record still waiting for its snapshot was cut
    /// by a crash (nothing after it was acknowledged); it is not used.
    pub(crate) fn finish(&mut self) {
        self.restoring = None;
    }
}
