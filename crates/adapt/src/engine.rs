//! The adaptive engine: regimes, per-regime Beta posteriors per arm and floors, one
//! keyed decision at a time, and the state digest a verifier starts from.
//!
//! A decision is a pure function of the engine key, the engine state (through its
//! digest) and the request; the state is a pure function of the initial configuration
//! and the sequence of updates. See `docs/ADAPT.md` for the procedure, the propensity
//! and the byte layout of [`Engine::state_digest`].

use sha2::{Digest, Sha256};

use crate::error::LearnError;
use crate::prf::{DIGEST_LEN, PrfKey, StateStreams, VERSION_LIMIT};
use crate::regime::{RegimeConfig, Regimes, Welford};
use crate::thompson::{
    ARMS_MAX, BPS_ONE, Policy, Posterior, Propensity, Refresh, ThompsonTable, epsilon_greedy_on,
    epsilon_greedy_propensity,
};

/// The domain-separation prefix of the state digest (30 ASCII bytes).
pub const ENGINE_STATE_TAG: &[u8; 30] = b"calybris/adapt/engine-state/v2";

/// The domain-separation prefix of one regime's digest (24 ASCII bytes).
pub const REGIME_STATE_TAG: &[u8; 24] = b"calybris/adapt/regime/v1";

/// The domain-separation prefix of one step of the state digest chain (2 ASCII bytes:
/// short, so that a step with up to four features is one SHA-256 block).
pub const ENGINE_STEP_TAG: &[u8; 2] = b"S2";

/// The engine's configuration: fixed for its lifetime (a verifier gets it with the
/// snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineConfig {
    /// Regimes, features, floor bounds and the calibration step.
    pub regimes: RegimeConfig,
    /// The prior of each arm (the number of arms is its length), in every regime.
    pub priors: Vec<Posterior>,
    /// The learning policy used when the engine explores.
    pub policy: Policy,
    /// The probability of exploring, in basis points; 0 is the static policy.
    pub exploration_bps: u32,
}

/// One request to decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The digest of the decision's input (from the gate's record).
    pub input_digest: [u8; DIGEST_LEN],
    /// A caller-given regime label, if any.
    pub label: Option<&'a str>,
    /// The request's integer features (the configured number of them).
    pub features: &'a [i32],
    /// The client's quality floor, in basis points; it always wins.
    pub client_floor_bps: Option<u32>,
    /// The arm (tier) the static policy would choose.
    pub static_arm: u32,
}

/// What the engine proposes for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The regime the request was classified into.
    pub regime: u32,
    /// The proposed arm (tier).
    pub arm: u32,
    /// The proposed quality floor, in basis points.
    pub floor_bps: u32,
    /// Whether the exploration gate opened (the policy chose the arm).
    pub explored: bool,
    /// The exploration gate's keyed draw, a uniform integer in `[0, 10,000)` (the gate
    /// opens when it is below `exploration_bps`); `None` when exploration is off.
    pub draw: Option<u32>,
    /// The digest of the state the decision saw.
    pub state_digest: [u8; DIGEST_LEN],
}

/// The whole state of an [`Engine`] at one point, apart from its configuration and
/// key: exactly the fields of its [`layout_digest`](Engine::layout_digest) plus the
/// chained [`state_digest`](Engine::state_digest) (which the layout cannot give back).
/// The Thompson table's samples are not here: they are a function of the refresh
/// points and the key, drawn again by [`Engine::from_state`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineState {
    /// Applied updates ([`Engine::version`]).
    pub version: u64,
    /// The chained state digest ([`Engine::state_digest`]).
    pub state_digest: [u8; DIGEST_LEN],
    /// Every regime, in index order.
    pub regimes: Vec<RegimeState>,
}

/// One regime of an [`EngineState`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegimeState {
    /// The regime's calibrated floor, in basis points.
    pub floor_bps: u32,
    /// The Welford state of each feature.
    pub stats: Vec<Welford>,
    /// The posterior of each arm.
    pub posteriors: Vec<Posterior>,
    /// The Thompson table's part (`None` under epsilon-greedy).
    pub table: Option<TableState>,
}

/// One regime's part of the Thompson table in an [`EngineState`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableState {
    /// The regime's applied updates ([`ThompsonTable::updates`]).
    pub updates: u32,
    /// When and from which posterior each arm's column was drawn, by arm.
    pub refreshes: Vec<Refresh>,
}

/// The adaptive engine.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    /// ChaCha12 keyed once with the engine key.
    streams: StateStreams,
    /// Applied updates: the state version the decision streams are named by.
    version: u64,
    /// The Thompson table (Thompson policy only).
    table: Option<ThompsonTable>,
    regimes: Regimes,
    /// Regime-major: `posteriors[r * arms + a]`.
    posteriors: Vec<Posterior>,
    /// The state digest: the layout digest of the initial state, then chained
    /// through every applied update (one SHA-256 compression per update with up to
    /// four features).
    digest: [u8; DIGEST_LEN],
}

impl Engine {
    /// A fresh engine: warm-start floors, empty statistics, the priors in every regime.
    ///
    /// # Errors
    /// [`LearnError::RegimeConfig`], [`LearnError::ArmCount`],
    /// [`LearnError::BasisPoints`], [`LearnError::Redraws`].
    pub fn new(config: EngineConfig, key: PrfKey) -> Result<Self, LearnError> {
        Self::check_config(&config)?;
        let regimes = Regimes::new(config.regimes.clone())?;
        let posteriors: Vec<Posterior> = config
            .priors
            .iter()
            .copied()
            .cycle()
            .take(config.priors.len() * regimes.len())
            .collect();
        let streams = StateStreams::new(&key);
        let table = match config.policy {
            Policy::Thompson { redraws } => Some(ThompsonTable::new(
                &streams,
                regimes.len(),
                &posteriors,
                redraws as usize + 1,
            )?),
            Policy::EpsilonGreedy { .. } => None,
        };
        let mut engine = Self {
            config,
            streams,
            version: 0,
            table,
            regimes,
            posteriors,
            digest: [0; DIGEST_LEN],
        };
        engine.digest = engine.layout_digest();
        Ok(engine)
    }

    /// The checks of [`new`](Self::new) on the arms, the exploration and the policy
    /// (the regime configuration is checked where the regimes are built).
    fn check_config(config: &EngineConfig) -> Result<(), LearnError> {
        if config.priors.is_empty() || config.priors.len() > ARMS_MAX {
            return Err(LearnError::ArmCount {
                arms: config.priors.len(),
                max: ARMS_MAX,
            });
        }
        if config.exploration_bps > BPS_ONE {
            return Err(LearnError::BasisPoints {
                what: "exploration",
                bps: config.exploration_bps,
            });
        }
        match config.policy {
            Policy::Thompson { redraws } => {
                if redraws == 0 || redraws > crate::thompson::REDRAWS_MAX {
                    return Err(LearnError::Redraws {
                        redraws,
                        max: crate::thompson::REDRAWS_MAX,
                    });
                }
            }
            Policy::EpsilonGreedy { epsilon_bps } => {
                if epsilon_bps > BPS_ONE {
                    return Err(LearnError::BasisPoints {
                        what: "epsilon",
                        bps: epsilon_bps,
                    });
                }
            }
        }
        Ok(())
    }

    /// The engine's whole state ([`EngineState`]): with the configuration and the
    /// key, [`from_state`](Self::from_state) rebuilds an engine that decides, draws
    /// and updates exactly as this one.
    #[must_use]
    pub fn export_state(&self) -> EngineState {
        let features = self.config.regimes.features;
        let arms = self.arms();
        let regimes = (0..self.regimes.len())
            .map(|r| RegimeState {
                floor_bps: self.regimes.floors_bps()[r],
                stats: self.regimes.all_stats()[r * features..(r + 1) * features].to_vec(),
                posteriors: self.posteriors[r * arms..(r + 1) * arms].to_vec(),
                table: self.table.as_ref().map(|table| TableState {
                    updates: table.updates(u32_of(r)),
                    refreshes: table.refreshes(u32_of(r)).to_vec(),
                }),
            })
            .collect();
        EngineState {
            version: self.version,
            state_digest: self.digest,
            regimes,
        }
    }

    /// The engine of `config` and `key` in `state` (from
    /// [`export_state`](Self::export_state), possibly through a log record). Every
    /// invariant of a reachable state is checked: the shapes are the configuration's;
    /// floors within the bounds; each regime's Welford counts, the observations of
    /// its posteriors beyond the priors (each shape at least its prior's) and its
    /// table update count are one number `n_r`, and `version = Σ n_r`; every table
    /// column was drawn at or before its regime's count from a posterior between the
    /// prior and the arm's current one. The chained digest is taken as given: it is
    /// not a function of the state, so the caller checks it (and the
    /// [`layout_digest`](Self::layout_digest) of the result) against a trusted record.
    ///
    /// # Errors
    /// Those of [`new`](Self::new) for the configuration; [`LearnError::InvalidState`]
    /// (and those of [`Welford::from_parts`]-style checks) for the state;
    /// [`LearnError::Exhausted`] when a column cannot be drawn again.
    pub fn from_state(
        config: EngineConfig,
        key: PrfKey,
        state: &EngineState,
    ) -> Result<Self, LearnError> {
        let bad = |reason| Err(LearnError::InvalidState { reason });
        // The configuration's checks, as a fresh engine's (without drawing its table).
        Self::check_config(&config)?;
        config.regimes.check()?;
        let regimes = config.regimes.regimes.len();
        let arms = config.priors.len();
        let features = config.regimes.features;
        let thompson_rows = match config.policy {
            Policy::Thompson { redraws } => Some(redraws as usize + 1),
            Policy::EpsilonGreedy { .. } => None,
        };
        if state.regimes.len() != regimes {
            return bad("the regime count is not the configuration's");
        }
        let mut stats = Vec::with_capacity(regimes * features);
        let mut floors = Vec::with_capacity(regimes);
        let mut posteriors = Vec::with_capacity(regimes * arms);
        let mut refreshes = Vec::new();
        let mut table_updates = Vec::new();
        let mut version = 0u64;
        for regime in &state.regimes {
            if regime.stats.len() != features || regime.posteriors.len() != arms {
                return bad("the feature or arm count is not the configuration's");
            }
            let n = regime.stats[0].count();
            let mut observed = 0u64;
            for (now, prior) in regime.posteriors.iter().zip(&config.priors) {
                if now.alpha() < prior.alpha() || now.beta() < prior.beta() {
                    return bad("a posterior below its prior");
                }
                observed +=
                    u64::from(now.alpha() - prior.alpha()) + u64::from(now.beta() - prior.beta());
            }
            if observed != n {
                return bad("a regime's posteriors observed another count than its statistics");
            }
            match (&regime.table, thompson_rows) {
                (Some(table), Some(_)) => {
                    if u64::from(table.updates) != n || table.refreshes.len() != arms {
                        return bad("a regime's table is not its statistics' count or arms");
                    }
                    for (refresh, now) in table.refreshes.iter().zip(&regime.posteriors) {
                        let then = refresh.posterior;
                        let prior = config.priors[refreshes.len() % arms];
                        if then.alpha() < prior.alpha()
                            || then.beta() < prior.beta()
                            || then.alpha() > now.alpha()
                            || then.beta() > now.beta()
                        {
                            return bad("a table column drawn from a posterior the arm never had");
                        }
                        refreshes.push(*refresh);
                    }
                    table_updates.push(table.updates);
                }
                (None, None) => {}
                _ => return bad("a table part for a policy without a table, or none for one"),
            }
            version += n;
            stats.extend_from_slice(&regime.stats);
            floors.push(regime.floor_bps);
            posteriors.extend_from_slice(&regime.posteriors);
        }
        if version != state.version {
            return bad("the version is not the sum of the regimes' counts");
        }
        let regimes_state = Regimes::from_parts(config.regimes.clone(), stats, floors)?;
        let streams = StateStreams::new(&key);
        let table = match thompson_rows {
            Some(rows) => Some(ThompsonTable::from_refreshes(
                &streams,
                regimes,
                refreshes,
                table_updates,
                rows,
            )?),
            None => None,
        };
        let engine = Self {
            config,
            streams,
            version,
            table,
            regimes: regimes_state,
            posteriors,
            digest: state.state_digest,
        };
        debug_assert_eq!(engine.export_state(), *state);
        Ok(engine)
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The regimes' statistics and floors.
    #[must_use]
    pub const fn regimes(&self) -> &Regimes {
        &self.regimes
    }

    /// The Thompson table (`None` under epsilon-greedy).
    #[must_use]
    pub const fn table(&self) -> Option<&ThompsonTable> {
        self.table.as_ref()
    }

    /// The state version: the number of applied updates (the decision streams are
    /// keyed by it).
    #[must_use]
    pub const fn version(&self) -> u64 {
        self.version
    }

    /// The number of arms.
    #[must_use]
    pub fn arms(&self) -> usize {
        self.config.priors.len()
    }

    /// The posteriors of `regime`, by arm.
    ///
    /// # Errors
    /// [`LearnError::RegimeOutOfRange`].
    pub fn posteriors(&self, regime: u32) -> Result<&[Posterior], LearnError> {
        if regime as usize >= self.regimes.len() {
            return Err(LearnError::RegimeOutOfRange {
                regime,
                regimes: u32::try_from(self.regimes.len()).unwrap_or(u32::MAX),
            });
        }
        let a = self.arms();
        Ok(&self.posteriors[regime as usize * a..(regime as usize + 1) * a])
    }

    /// The state digest every decision's PRF is keyed with: the
    /// [`layout_digest`](Self::layout_digest) of the initial state, then
    /// `SHA-256(ENGINE_STEP_TAG ‖ previous ‖ regime ‖ arm ‖ success ‖ features)` after
    /// each applied update (`docs/ADAPT.md` section 5). The state is a function of the
    /// configuration and the updates, so this digest commits to the state; an update
    /// costs one SHA-256 compression (up to four features) instead of rehashing the
    /// state.
    #[must_use]
    pub const fn state_digest(&self) -> [u8; DIGEST_LEN] {
        self.digest
    }

    /// The SHA-256 digest of the state's canonical byte layout (`docs/ADAPT.md`
    /// section 5), recomputed from every field: for snapshots and checks, not per step.
    #[must_use]
    pub fn layout_digest(&self) -> [u8; DIGEST_LEN] {
        let mut h = Sha256::new();
        h.update(ENGINE_STATE_TAG);
        h.update(u32_of(self.regimes.len()).to_be_bytes());
        h.update(u32_of(self.config.regimes.features).to_be_bytes());
        h.update(u32_of(self.arms()).to_be_bytes());
        h.update(self.version.to_be_bytes());
        for r in 0..self.regimes.len() {
            h.update(self.regime_digest(r));
        }
        h.finalize().into()
    }

    /// `SHA-256(REGIME_STATE_TAG ‖ r ‖ floor ‖ Welford states ‖ posteriors)`.
    fn regime_digest(&self, r: usize) -> [u8; DIGEST_LEN] {
        let features = self.config.regimes.features;
        let arms = self.arms();
        let mut h = Sha256::new();
        h.update(REGIME_STATE_TAG);
        h.update(u32_of(r).to_be_bytes());
        h.update(self.regimes.floors_bps()[r].to_be_bytes());
        for w in &self.regimes.all_stats()[r * features..(r + 1) * features] {
            write_welford(&mut h, w);
        }
        for p in &self.posteriors[r * arms..(r + 1) * arms] {
            h.update(p.alpha().to_be_bytes());
            h.update(p.beta().to_be_bytes());
        }
        if let Some(table) = &self.table {
            let regime = u32_of(r);
            h.update(table.updates(regime).to_be_bytes());
            for refresh in table.refreshes(regime) {
                h.update(refresh.refreshed_at.to_be_bytes());
                h.update(refresh.posterior.alpha().to_be_bytes());
                h.update(refresh.posterior.beta().to_be_bytes());
            }
        }
        h.finalize().into()
    }

    fn check_static_arm(&self, arm: u32) -> Result<(), LearnError> {
        if arm as usize >= self.arms() {
            return Err(LearnError::ArmOutOfRange {
                arm,
                arms: u32_of(self.arms()),
            });
        }
        Ok(())
    }

    /// Decides on `request`: classify, then the exploration gate, then the arm and the
    /// floor (see `docs/ADAPT.md`). Pure: the engine does not change.
    ///
    /// # Errors
    /// [`LearnError::FeatureCount`], [`LearnError::ArmOutOfRange`],
    /// [`LearnError::BasisPoints`], [`LearnError::Exhausted`].
    pub fn decide(&self, request: &Request<'_>) -> Result<Decision, LearnError> {
        self.check_static_arm(request.static_arm)?;
        let regime = self.regimes.classify(request.label, request.features)?;
        let exploring = self.config.exploration_bps > 0;
        let floor_bps =
            self.regimes
                .decision_floor_bps(regime, request.client_floor_bps, exploring)?;
        let mut stream = self.streams.decision(self.version, &request.input_digest);
        let draw = if exploring {
            let d = stream.below(u64::from(BPS_ONE))?;
            // below(10,000) < 10,000 fits a u32.
            Some(u32::try_from(d).unwrap_or_else(|_| unreachable!("below 10,000")))
        } else {
            None
        };
        let explored = draw.is_some_and(|d| d < self.config.exploration_bps);
        let arm = if explored {
            match (&self.table, self.config.policy) {
                (Some(table), _) => {
                    let row = stream.below(table.rows() as u64)?;
                    table.winner(regime, row)
                }
                (None, Policy::EpsilonGreedy { epsilon_bps }) => {
                    epsilon_greedy_on(&mut stream, self.posteriors(regime)?, epsilon_bps)?.0
                }
                (None, Policy::Thompson { .. }) => {
                    unreachable!("a Thompson engine has its table")
                }
            }
        } else {
            request.static_arm
        };
        Ok(Decision {
            regime,
            arm,
            floor_bps,
            explored,
            draw,
            state_digest: self.digest,
        })
    }

    /// The exact propensity of `decision.arm` for `request` on this state:
    /// `((10,000 − e)·[arm = static]·d + e·n) / (10,000·d)` with `n / d` the policy's
    /// propensity of the arm (Thompson: `w / (K + 1)`, the share of the regime's table
    /// rows the arm wins, a lookup; epsilon-greedy: exact); 1 when exploration is off.
    ///
    /// # Errors
    /// [`LearnError::StaleState`] if the decision saw another state; those of the
    /// policy's propensity.
    pub fn propensity(
        &self,
        request: &Request<'_>,
        decision: &Decision,
    ) -> Result<Propensity, LearnError> {
        if decision.state_digest != self.digest {
            return Err(LearnError::StaleState);
        }
        let e = u64::from(self.config.exploration_bps);
        if e == 0 {
            return Ok(Propensity::ONE);
        }
        let posteriors = self.posteriors(decision.regime)?;
        self.check_static_arm(decision.arm)?;
        let policy = match (&self.table, self.config.policy) {
            (Some(table), _) => Propensity {
                numerator: table.wins(decision.regime, decision.arm),
                denominator: table.rows() as u64,
            },
            (None, Policy::EpsilonGreedy { epsilon_bps }) => {
                epsilon_greedy_propensity(posteriors, epsilon_bps, decision.arm)?
            }
            (None, Policy::Thompson { .. }) => unreachable!("a Thompson engine has its table"),
        };
        let one = u64::from(BPS_ONE);
        let stays = if decision.arm == request.static_arm {
            (one - e) * policy.denominator
        } else {
            0
        };
        let p = Propensity {
            numerator: stays + e * policy.numerator,
            denominator: one * policy.denominator,
        };
        // 0 only for an arm no decision on this state can take (neither the static
        // arm nor the winner of a row): a decided arm's propensity is never 0.
        debug_assert!(p.numerator <= p.denominator);
        debug_assert!(
            decision.arm != request.static_arm || e == u64::from(BPS_ONE) || p.numerator > 0
        );
        Ok(p)
    }

    /// Applies the outcome of `decision`: the arm's posterior in its regime, the
    /// regime's statistics (with `features`) and its floor; then the digest. Atomic:
    /// on an error nothing changes.
    ///
    /// # Errors
    /// [`LearnError::RegimeOutOfRange`], [`LearnError::ArmOutOfRange`],
    /// [`LearnError::FeatureCount`], [`LearnError::ShapeOutOfRange`],
    /// [`LearnError::Overflow`].
    pub fn update(
        &mut self,
        decision: &Decision,
        features: &[i32],
        success: bool,
    ) -> Result<(), LearnError> {
        self.check_static_arm(decision.arm)?;
        let index = decision.regime as usize * self.arms() + decision.arm as usize;
        let before = self.posteriors(decision.regime)?;
        let posterior = before[decision.arm as usize].observed(success)?;
        // Every fallible step first (the table's redraws included), then the changes.
        let table_update = match &self.table {
            Some(table) => Some(table.prepare(
                &self.streams,
                decision.regime,
                decision.arm,
                posterior,
                before,
            )?),
            None => None,
        };
        self.regimes.observe(decision.regime, features, success)?;
        self.posteriors[index] = posterior;
        if let (Some(table), Some(update)) = (self.table.as_mut(), table_update) {
            table.commit(update);
        }
        // One SHA-256 block with up to four features: 2 + 32 + 2 + 2 + 1 + 4·4 = 55
        // bytes. The feature count is the configuration's, so it is not repeated.
        let mut message = [0u8; 39 + 4 * crate::regime::FEATURES_MAX];
        message[..2].copy_from_slice(ENGINE_STEP_TAG);
        message[2..34].copy_from_slice(&self.digest);
        // regime < 64 and arm < 1,024: both fit a u16.
        message[34..36].copy_from_slice(&u16_of(decision.regime).to_be_bytes());
        message[36..38].copy_from_slice(&u16_of(decision.arm).to_be_bytes());
        message[38] = u8::from(success);
        for (chunk, x) in message[39..].chunks_exact_mut(4).zip(features) {
            chunk.copy_from_slice(&x.to_be_bytes());
        }
        self.digest = Sha256::digest(&message[..39 + 4 * features.len()]).into();
        self.version += 1;
        // At most 64 regimes × (2^31 − 1) Welford observations: far below the limit.
        debug_assert!(self.version < VERSION_LIMIT);
        Ok(())
    }
}

fn u32_of(n: usize) -> u32 {
    // Every count here is bounded far below 2^32 (REGIMES_MAX, FEATURES_MAX, ARMS_MAX).
    u32::try_from(n).unwrap_or_else(|_| unreachable!("bounded count"))
}

fn u16_of(n: u32) -> u16 {
    // Regimes are below REGIMES_MAX (64) and arms below ARMS_MAX (1,024).
    u16::try_from(n).unwrap_or_else(|_| unreachable!("bounded index"))
}

fn write_welford(h: &mut Sha256, w: &Welford) {
    h.update(w.count().to_be_bytes());
    h.update(w.sum().to_be_bytes());
    h.update(w.spread().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regime::{Domain, RegimeSpec};

    #[test]
    fn the_digest_is_the_documented_layout() {
        let regimes = RegimeConfig {
            regimes: vec![RegimeSpec {
                label: "coding".to_owned(),
                domain: Domain::Coding,
            }],
            features: 1,
            fallback: 0,
            ..RegimeConfig::default()
        };
        let config = EngineConfig {
            regimes,
            priors: vec![Posterior::new(3, 4).unwrap(), Posterior::UNIFORM],
            policy: Policy::Thompson { redraws: 4 },
            exploration_bps: 0,
        };
        let mut e = Engine::new(config, PrfKey::from_bytes([0; 32])).unwrap();
        let d = e
            .decide(&Request {
                input_digest: [0; 32],
                label: None,
                features: &[-5],
                client_floor_bps: None,
                static_arm: 1,
            })
            .unwrap();
        let initial = e.layout_digest();
        assert_eq!(e.state_digest(), initial);
        e.update(&d, &[-5], false).unwrap();
        // By hand: regime 0, floor 7200 + 20, Welford (1, -5, 0), arms (3, 4), (1, 2).
        let mut regime = Vec::new();
        regime.extend_from_slice(b"calybris/adapt/regime/v1");
        regime.extend_from_slice(&0u32.to_be_bytes());
        regime.extend_from_slice(&7_220u32.to_be_bytes());
        regime.extend_from_slice(&1u64.to_be_bytes());
        regime.extend_from_slice(&(-5i128).to_be_bytes());
        regime.extend_from_slice(&0i128.to_be_bytes());
        for x in [3u32, 4, 1, 2] {
            regime.extend_from_slice(&x.to_be_bytes());
        }
        // The Thompson table: 1 update; arm 0 drawn at 0 from (3, 4), arm 1 redrawn at
        // update 1 from (1, 2) (its count grew from 2 to 3).
        for x in [1u32, 0, 3, 4, 1, 1, 2] {
            regime.extend_from_slice(&x.to_be_bytes());
        }
        assert_eq!(regime.len(), 24 + 4 + 4 + 40 + 16 + 4 + 24);
        let mut top = Vec::new();
        top.extend_from_slice(b"calybris/adapt/engine-state/v2");
        for x in [1u32, 1, 2] {
            top.extend_from_slice(&x.to_be_bytes());
        }
        top.extend_from_slice(&1u64.to_be_bytes());
        top.extend_from_slice(&Sha256::digest(&regime));
        let expected: [u8; 32] = Sha256::digest(&top).into();
        assert_eq!(e.layout_digest(), expected);
        // The chain: tag, the initial layout digest, regime 0 and arm 1 (u16), failure,
        // the one feature -5.
        let mut step = Vec::new();
        step.extend_from_slice(b"S2");
        step.extend_from_slice(&initial);
        step.extend_from_slice(&0u16.to_be_bytes());
        step.extend_from_slice(&1u16.to_be_bytes());
        step.push(0);
        step.extend_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(step.len(), 2 + 32 + 2 + 2 + 1 + 4);
        let chained: [u8; 32] = Sha256::digest(&step).into();
        assert_eq!(e.state_digest(), chained);
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::regime::WELFORD_COUNT_MAX;

    fn config(policy: Policy) -> EngineConfig {
        EngineConfig {
            regimes: RegimeConfig::default(),
            priors: vec![
                Posterior::UNIFORM,
                Posterior::new(2, 3).unwrap(),
                Posterior::UNIFORM,
            ],
            policy,
            exploration_bps: 4_000,
        }
    }

    /// A seeded request stream (SplitMix64), so the two engines see the same inputs.
    fn next(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn step(engine: &mut Engine, seed: &mut u64) -> (Decision, Propensity) {
        let r = next(seed);
        let features = [
            i32::try_from(r % 1_000).unwrap() - 500,
            i32::try_from((r >> 10) % 7).unwrap(),
            i32::try_from((r >> 20) % 100).unwrap(),
            -i32::try_from((r >> 30) % 3).unwrap(),
        ];
        let labels = ["support", "coding", "security"];
        let label = (!(r >> 40).is_multiple_of(4)).then(|| labels[((r >> 42) % 3) as usize]);
        let mut input_digest = [0u8; 32];
        input_digest[..8].copy_from_slice(&r.to_be_bytes());
        let request = Request {
            input_digest,
            label,
            features: &features,
            client_floor_bps: None,
            static_arm: 0,
        };
        let d = engine.decide(&request).unwrap();
        let p = engine.propensity(&request, &d).unwrap();
        engine
            .update(&d, &features, !(r >> 50).is_multiple_of(3))
            .unwrap();
        (d, p)
    }

    #[test]
    fn a_state_round_trips_and_the_rebuilt_engine_goes_on_bit_identically() {
        for (seed, policy) in [
            (0x24_5eed_u64, Policy::Thompson { redraws: 7 }),
            (0x25_5eed_u64, Policy::EpsilonGreedy { epsilon_bps: 500 }),
        ] {
            let key = PrfKey::from_bytes([7; 32]);
            let mut running = Engine::new(config(policy), key.clone()).unwrap();
            let mut s = seed;
            // 700 updates: past the table's per-arm refresh threshold and several
            // round-robin refreshes in every labelled regime.
            for _ in 0..700 {
                let _ = step(&mut running, &mut s);
            }
            let state = running.export_state();
            let mut rebuilt = Engine::from_state(config(policy), key.clone(), &state).unwrap();
            assert_eq!(rebuilt.export_state(), state, "seed {seed:#x}");
            assert_eq!(
                rebuilt.layout_digest(),
                running.layout_digest(),
                "seed {seed:#x}"
            );
            assert_eq!(
                rebuilt.state_digest(),
                running.state_digest(),
                "seed {seed:#x}"
            );
            if let (Some(a), Some(b)) = (running.table(), rebuilt.table()) {
                for r in 0..8 {
                    for row in 0..a.rows() {
                        for arm in 0..3 {
                            assert_eq!(
                                a.sample(r, row, arm).to_bits(),
                                b.sample(r, row, arm).to_bits()
                            );
                        }
                    }
                }
            }
            // The same requests from here on: the same draws, tiers, propensities and
            // digests at every step.
            let mut s2 = s;
            for i in 0..500 {
                let a = step(&mut running, &mut s);
                let b = step(&mut rebuilt, &mut s2);
                assert_eq!(a, b, "step {i} after the restore, seed {seed:#x}");
                assert_eq!(running.layout_digest(), rebuilt.layout_digest());
            }
        }
    }

    #[test]
    fn an_invalid_state_is_refused_with_a_typed_error() {
        let key = PrfKey::from_bytes([3; 32]);
        let policy = Policy::Thompson { redraws: 3 };
        let mut engine = Engine::new(config(policy), key.clone()).unwrap();
        let mut s = 11;
        for _ in 0..50 {
            let _ = step(&mut engine, &mut s);
        }
        let good = engine.export_state();
        let refused = |state: &EngineState| {
            matches!(
                Engine::from_state(config(policy), key.clone(), state),
                Err(LearnError::InvalidState { .. })
            )
        };
        let busy = good
            .regimes
            .iter()
            .position(|r| r.stats[0].count() > 2)
            .unwrap();
        let mut bad = good.clone();
        bad.version += 1;
        assert!(refused(&bad), "version");
        let mut bad = good.clone();
        bad.regimes.pop();
        assert!(refused(&bad), "regime count");
        let mut bad = good.clone();
        bad.regimes[busy].floor_bps = 9_950;
        assert!(refused(&bad), "floor above the bound");
        let mut bad = good.clone();
        let p = bad.regimes[busy].posteriors[0];
        bad.regimes[busy].posteriors[0] = Posterior::new(p.alpha() + 1, p.beta()).unwrap();
        assert!(refused(&bad), "posterior count");
        let mut bad = good.clone();
        bad.regimes[busy].stats[1].push(0).unwrap();
        assert!(refused(&bad), "feature counts differ");
        let mut bad = good.clone();
        bad.regimes[busy].table.as_mut().unwrap().refreshes[0].refreshed_at = 10_000;
        assert!(refused(&bad), "refresh after the count");
        let mut bad = good.clone();
        bad.regimes[busy].table = None;
        assert!(refused(&bad), "table missing");
        // Welford invariants.
        assert!(Welford::from_parts(0, 1, 0).is_err());
        assert!(Welford::from_parts(2, 3, -1).is_err());
        assert!(
            Welford::from_parts(2, 3, 2).is_err(),
            "2 does not divide 2 + 9"
        );
        assert!(Welford::from_parts(WELFORD_COUNT_MAX + 1, 0, 0).is_err());
        assert!(Welford::from_parts(1, 1 << 40, 0).is_err());
        let mut w = Welford::new();
        for x in [-5, 9, 12, i32::MIN, i32::MAX] {
            w.push(x).unwrap();
            assert_eq!(Welford::from_parts(w.count(), w.sum(), w.spread()), Ok(w));
        }
        assert_eq!(
            Engine::from_state(config(policy), key, &good)
                .unwrap()
                .export_state(),
            good
        );
    }
}
