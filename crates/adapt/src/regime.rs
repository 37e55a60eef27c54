//! Regimes: exact integer Welford statistics per regime and feature, an anomaly score,
//! classification, and the outcome-calibrated quality floor of each regime.
//!
//! - [`Welford`] keeps `(n, S = Σx, Σx²)` exactly in integers and derives
//!   `D = n·Σ(x − x̄)² = n·Σx² − S²` from them; merging
//!   two states gives exactly the state of one pass over both inputs.
//! - The anomaly score of a request in a regime is `Σ_f z_f²` in thousandths,
//!   `z_f² = (n·x_f − S_f)² / D_f`, floored, saturating at [`ANOMALY_CAP_MILLI`].
//! - [`Regimes::classify`]: a caller-given label that names a configured regime wins;
//!   otherwise the regime (with at least `min_observations`) of the lowest anomaly
//!   score, the lowest index on ties; otherwise the configured fallback regime.
//! - Floors: each regime starts at its domain's warm-start floor, clamped into the
//!   configured bounds; a success lowers it by `step_bps`, a failure raises it by
//!   `2 · step_bps` (failures count twice), always within the bounds. The floor a
//!   decision gets is `max(regime floor, client floor)`: a client floor always wins.

use crate::error::LearnError;
use crate::thompson::BPS_ONE;

/// The default number of regimes.
pub const REGIMES_DEFAULT: usize = 8;

/// The most regimes a configuration may have.
pub const REGIMES_MAX: usize = 64;

/// The most features a request may carry.
pub const FEATURES_MAX: usize = 32;

/// The most observations one [`Welford`] state holds: with `|x| < 2^31` it keeps
/// `n·Σx² < 2^124`, so every intermediate fits in `i128`.
pub const WELFORD_COUNT_MAX: u64 = (1 << 31) - 1;

/// The largest anomaly score, in thousandths of a squared z-score.
pub const ANOMALY_CAP_MILLI: u64 = 1_000_000_000_000;

/// Thousandths in one.
const MILLI: u32 = 1000;

/// Exact streaming mean and variance of one integer feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Welford {
    count: u64,
    sum: i128,
    /// `Σx²` (below `2^93`): kept instead of `D` so that a push is three additions
    /// (no 128-bit division); `D = n·Σx² − S²` is derived, exactly.
    squares: i128,
}

impl Welford {
    /// The empty state.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            count: 0,
            sum: 0,
            squares: 0,
        }
    }

    /// The state `(n, S, D)` as [`count`](Self::count), [`sum`](Self::sum) and
    /// [`spread`](Self::spread) report it (the fields of the engine's layout digest),
    /// checked against every invariant of a state [`push`](Self::push) can reach:
    /// `n ≤` [`WELFORD_COUNT_MAX`], an empty state is all zero, `D ≥ 0`, `n` divides
    /// `D + S²` (that quotient is `Σx²`), `|S| ≤ n · 2^31` and `Σx² ≤ n · 2^62`.
    ///
    /// # Errors
    /// [`LearnError::InvalidState`] naming the broken invariant.
    pub fn from_parts(count: u64, sum: i128, spread: i128) -> Result<Self, LearnError> {
        let bad = |reason| Err(LearnError::InvalidState { reason });
        if count > WELFORD_COUNT_MAX {
            return bad("a Welford count above its bound");
        }
        if count == 0 {
            return if sum == 0 && spread == 0 {
                Ok(Self::new())
            } else {
                bad("an empty Welford state with a sum or a spread")
            };
        }
        if spread < 0 {
            return bad("a negative Welford spread");
        }
        let n = i128::from(count);
        // |x| ≤ 2^31 for every observation: |S| ≤ n·2^31 < 2^62, so S² < 2^124.
        if sum.unsigned_abs() > u128::from(count) << 31 {
            return bad("a Welford sum beyond what its count can reach");
        }
        let Some(total) = sum.checked_mul(sum).and_then(|s2| s2.checked_add(spread)) else {
            return bad("a Welford spread beyond what its count can reach");
        };
        if total % n != 0 {
            return bad("a Welford spread that no integer sum of squares gives");
        }
        let squares = total / n;
        if squares.unsigned_abs() > u128::from(count) << 62 {
            return bad("a Welford sum of squares beyond what its count can reach");
        }
        let state = Self {
            count,
            sum,
            squares,
        };
        debug_assert_eq!(state.spread(), spread);
        Ok(state)
    }

    /// The number of observations.
    #[must_use]
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// `S = Σx`.
    #[must_use]
    pub const fn sum(&self) -> i128 {
        self.sum
    }

    /// `D = n · Σ(x − x̄)² = n·Σx² − S²`, so the population variance is `D / n²`
    /// exactly.
    #[must_use]
    pub const fn spread(&self) -> i128 {
        // n < 2^31 and Σx² < 2^93: the product is below 2^124; S² ≤ n·Σx².
        self.count as i128 * self.squares - self.sum * self.sum
    }

    /// `Σx²`, exact.
    const fn sum_squares(&self) -> i128 {
        self.squares
    }

    /// Adds one observation: `n + 1`, `S + x`, `Σx² + x²`; `D` follows exactly
    /// (Welford's `M2' = M2 + (x − x̄)(x − x̄')` multiplied through by `n + 1`).
    ///
    /// # Errors
    /// [`LearnError::Overflow`] past [`WELFORD_COUNT_MAX`] (the state is unchanged).
    pub fn push(&mut self, x: i32) -> Result<(), LearnError> {
        if self.count >= WELFORD_COUNT_MAX {
            return Err(LearnError::Overflow {
                what: "Welford count",
            });
        }
        let x = i128::from(x);
        self.squares += x * x;
        self.sum += x;
        self.count += 1;
        debug_assert!(self.spread() >= 0);
        Ok(())
    }

    /// The state of one pass over both inputs (Chan's merge, exact).
    ///
    /// # Errors
    /// [`LearnError::Overflow`] when the counts add past [`WELFORD_COUNT_MAX`].
    pub fn merge(&self, other: &Self) -> Result<Self, LearnError> {
        let count = self.count + other.count;
        if count > WELFORD_COUNT_MAX {
            return Err(LearnError::Overflow {
                what: "Welford count",
            });
        }
        let merged = Self {
            count,
            sum: self.sum + other.sum,
            squares: self.sum_squares() + other.sum_squares(),
        };
        debug_assert!(merged.spread() >= 0);
        Ok(merged)
    }

    /// The mean as the exact fraction `(S, n)`; `None` when empty.
    #[must_use]
    pub const fn mean(&self) -> Option<(i128, u64)> {
        if self.count == 0 {
            None
        } else {
            Some((self.sum, self.count))
        }
    }

    /// The population variance as the exact fraction `(D, n²)`; `None` when empty.
    #[must_use]
    pub fn variance(&self) -> Option<(i128, u128)> {
        (self.count > 0).then(|| {
            (
                self.spread(),
                u128::from(self.count) * u128::from(self.count),
            )
        })
    }

    /// `floor(1000 · z²)` for `x`, `z² = (n·x − S)² / D`; saturating at
    /// [`ANOMALY_CAP_MILLI`]; 0 when `x` is the mean of a constant feature and the cap
    /// for any other value of it; the cap when empty.
    #[must_use]
    pub fn z2_milli(&self, x: i32) -> u64 {
        if self.count == 0 {
            return ANOMALY_CAP_MILLI;
        }
        let deviation = (i128::from(self.count) * i128::from(x) - self.sum).unsigned_abs();
        let numerator = deviation * deviation;
        let d = self.spread().unsigned_abs();
        if d == 0 {
            return if numerator == 0 { 0 } else { ANOMALY_CAP_MILLI };
        }
        let whole = numerator / d;
        if whole >= u128::from(ANOMALY_CAP_MILLI / u64::from(MILLI)) {
            return ANOMALY_CAP_MILLI;
        }
        // Three decimal digits of the remainder by long division; 10·r < 10·D < 2^128.
        let mut r = numerator % d;
        let mut milli = whole;
        for _ in 0..3 {
            r *= 10;
            milli = milli * 10 + r / d;
            r %= d;
        }
        u64::try_from(milli).map_or(ANOMALY_CAP_MILLI, |m| m.min(ANOMALY_CAP_MILLI))
    }
}

/// A regime's domain, which fixes its warm-start floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Customer support: 0.55.
    Support,
    /// Code generation: 0.72.
    Coding,
    /// Compliance: 0.92.
    Compliance,
    /// Security: 0.92.
    Security,
    /// Any other domain, with its own warm-start floor in basis points.
    Custom {
        /// The warm-start floor.
        floor_bps: u32,
    },
}

impl Domain {
    /// The warm-start floor, in basis points.
    #[must_use]
    pub const fn warm_start_floor_bps(self) -> u32 {
        match self {
            Self::Support => 5_500,
            Self::Coding => 7_200,
            Self::Compliance | Self::Security => 9_200,
            Self::Custom { floor_bps } => floor_bps,
        }
    }

    /// The domain's code in the state digest's byte layout (`docs/ADAPT.md`).
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Support => 1,
            Self::Coding => 2,
            Self::Compliance => 3,
            Self::Security => 4,
            Self::Custom { .. } => 5,
        }
    }
}

/// One configured regime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegimeSpec {
    /// The label a caller gives to route a request to this regime.
    pub label: String,
    /// Its domain.
    pub domain: Domain,
}

/// The regime set, the features, the floor bounds and the calibration step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegimeConfig {
    /// The regimes, in index order.
    pub regimes: Vec<RegimeSpec>,
    /// Features per request.
    pub features: usize,
    /// The lowest floor the learner may propose, in basis points.
    pub floor_min_bps: u32,
    /// The highest floor the learner may propose, in basis points (≤ 10,000).
    pub floor_max_bps: u32,
    /// How far a success lowers a floor; a failure raises it twice as far.
    pub step_bps: u32,
    /// Observations a regime needs before it can be chosen by nearest score.
    pub min_observations: u64,
    /// The regime of a request with no known label and no regime with enough data.
    pub fallback: u32,
}

impl Default for RegimeConfig {
    /// Eight regimes: the four named domains, then four general ones starting at the
    /// most permissive named floor (0.55); 4 features; floors in [0.50, 0.99]; step
    /// 10 bps; 8 observations; fallback the last regime ("other").
    fn default() -> Self {
        let general = Domain::Custom { floor_bps: 5_500 };
        let specs = [
            ("support", Domain::Support),
            ("coding", Domain::Coding),
            ("compliance", Domain::Compliance),
            ("security", Domain::Security),
            ("analysis", general),
            ("writing", general),
            ("extraction", general),
            ("other", general),
        ];
        Self {
            regimes: specs
                .iter()
                .map(|(label, domain)| RegimeSpec {
                    label: (*label).to_owned(),
                    domain: *domain,
                })
                .collect(),
            features: 4,
            floor_min_bps: 5_000,
            floor_max_bps: 9_900,
            step_bps: 10,
            min_observations: 8,
            fallback: 7,
        }
    }
}

impl RegimeConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    /// [`LearnError::RegimeConfig`], [`LearnError::BasisPoints`].
    pub fn check(&self) -> Result<(), LearnError> {
        let bad = |reason| Err(LearnError::RegimeConfig { reason });
        if self.regimes.is_empty() || self.regimes.len() > REGIMES_MAX {
            return bad("between 1 and 64 regimes");
        }
        if self.features == 0 || self.features > FEATURES_MAX {
            return bad("between 1 and 32 features");
        }
        if self.fallback as usize >= self.regimes.len() {
            return bad("the fallback regime does not exist");
        }
        for (i, spec) in self.regimes.iter().enumerate() {
            if self.regimes[..i].iter().any(|s| s.label == spec.label) {
                return bad("a label names two regimes");
            }
            if spec.domain.warm_start_floor_bps() > BPS_ONE {
                return Err(LearnError::BasisPoints {
                    what: "warm-start floor",
                    bps: spec.domain.warm_start_floor_bps(),
                });
            }
        }
        if self.floor_max_bps > BPS_ONE || self.floor_min_bps > self.floor_max_bps {
            return Err(LearnError::BasisPoints {
                what: "floor bounds",
                bps: self.floor_max_bps,
            });
        }
        if self.step_bps > BPS_ONE / 2 {
            return Err(LearnError::BasisPoints {
                what: "calibration step",
                bps: self.step_bps,
            });
        }
        Ok(())
    }

    /// The warm-start floor of `regime`, clamped into the bounds (the static
    /// policy's floor).
    #[must_use]
    pub fn warm_start_bps(&self, regime: usize) -> u32 {
        self.regimes[regime]
            .domain
            .warm_start_floor_bps()
            .clamp(self.floor_min_bps, self.floor_max_bps)
    }
}

/// The statistics and floors of every regime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Regimes {
    config: RegimeConfig,
    /// Regime-major: `stats[r * features + f]`.
    stats: Vec<Welford>,
    floors_bps: Vec<u32>,
}

impl Regimes {
    /// Fresh statistics and warm-start floors.
    ///
    /// # Errors
    /// Those of [`RegimeConfig::check`].
    pub fn new(config: RegimeConfig) -> Result<Self, LearnError> {
        config.check()?;
        let floors_bps = (0..config.regimes.len())
            .map(|r| config.warm_start_bps(r))
            .collect();
        Ok(Self {
            stats: vec![Welford::new(); config.regimes.len() * config.features],
            floors_bps,
            config,
        })
    }

    /// Statistics and floors restored from a state (the engine's
    /// [`from_state`](crate::engine::Engine::from_state)): `stats` regime-major
    /// (`regimes × features`), one floor per regime within the configured bounds, and
    /// every feature of a regime with the same count (an outcome pushes them all).
    ///
    /// # Errors
    /// Those of [`RegimeConfig::check`]; [`LearnError::InvalidState`].
    pub fn from_parts(
        config: RegimeConfig,
        stats: Vec<Welford>,
        floors_bps: Vec<u32>,
    ) -> Result<Self, LearnError> {
        config.check()?;
        let bad = |reason| Err(LearnError::InvalidState { reason });
        let regimes = config.regimes.len();
        if floors_bps.len() != regimes || stats.len() != regimes * config.features {
            return bad("the regime or feature count is not the configuration's");
        }
        if floors_bps
            .iter()
            .any(|&f| f < config.floor_min_bps || f > config.floor_max_bps)
        {
            return bad("a regime floor outside the configured bounds");
        }
        if stats
            .chunks_exact(config.features)
            .any(|regime| regime.iter().any(|w| w.count() != regime[0].count()))
        {
            return bad("the features of one regime have different counts");
        }
        Ok(Self {
            config,
            stats,
            floors_bps,
        })
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &RegimeConfig {
        &self.config
    }

    /// The number of regimes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.floors_bps.len()
    }

    /// Always false: a configuration has at least one regime.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.floors_bps.is_empty()
    }

    /// The Welford state of `feature` in `regime`.
    ///
    /// # Errors
    /// [`LearnError::RegimeOutOfRange`], [`LearnError::FeatureCount`].
    pub fn stats(&self, regime: u32, feature: usize) -> Result<&Welford, LearnError> {
        self.check_regime(regime)?;
        if feature >= self.config.features {
            return Err(LearnError::FeatureCount {
                given: feature,
                expected: self.config.features,
            });
        }
        Ok(&self.stats[regime as usize * self.config.features + feature])
    }

    /// Every Welford state, regime-major (for the state digest).
    #[must_use]
    pub fn all_stats(&self) -> &[Welford] {
        &self.stats
    }

    /// Every regime's current floor, in basis points.
    #[must_use]
    pub fn floors_bps(&self) -> &[u32] {
        &self.floors_bps
    }

    fn check_regime(&self, regime: u32) -> Result<(), LearnError> {
        if regime as usize >= self.len() {
            return Err(LearnError::RegimeOutOfRange {
                regime,
                regimes: u32::try_from(self.len()).unwrap_or(u32::MAX),
            });
        }
        Ok(())
    }

    fn check_features(&self, features: &[i32]) -> Result<(), LearnError> {
        if features.len() != self.config.features {
            return Err(LearnError::FeatureCount {
                given: features.len(),
                expected: self.config.features,
            });
        }
        Ok(())
    }

    /// The anomaly score of `features` in `regime`, in thousandths (see the module).
    ///
    /// # Errors
    /// [`LearnError::RegimeOutOfRange`], [`LearnError::FeatureCount`].
    pub fn anomaly_milli(&self, regime: u32, features: &[i32]) -> Result<u64, LearnError> {
        self.check_regime(regime)?;
        self.check_features(features)?;
        let base = regime as usize * self.config.features;
        let score = features
            .iter()
            .zip(&self.stats[base..base + self.config.features])
            .fold(0u64, |acc, (&x, w)| acc.saturating_add(w.z2_milli(x)));
        Ok(score.min(ANOMALY_CAP_MILLI))
    }

    /// The regime of a request (see the module for the rule).
    ///
    /// # Errors
    /// [`LearnError::FeatureCount`].
    pub fn classify(&self, label: Option<&str>, features: &[i32]) -> Result<u32, LearnError> {
        self.check_features(features)?;
        if let Some(label) = label
            && let Some(i) = self.config.regimes.iter().position(|s| s.label == label)
        {
            return Ok(u32::try_from(i).unwrap_or(self.config.fallback));
        }
        let mut best: Option<(u64, u32)> = None;
        for r in 0..self.len() {
            let regime = u32::try_from(r).unwrap_or(u32::MAX);
            let w = &self.stats[r * self.config.features];
            if w.count() < self.config.min_observations.max(1) {
                continue;
            }
            let score = self.anomaly_milli(regime, features)?;
            // Strictly lower: ties keep the lowest index.
            if best.is_none_or(|(s, _)| score < s) {
                best = Some((score, regime));
            }
        }
        Ok(best.map_or(self.config.fallback, |(_, r)| r))
    }

    /// Records an outcome in `regime`: the features join its statistics and its floor
    /// moves (success: down `step`; failure: up `2·step`; clamped into the bounds).
    ///
    /// # Errors
    /// [`LearnError::RegimeOutOfRange`], [`LearnError::FeatureCount`],
    /// [`LearnError::Overflow`] (nothing changes).
    pub fn observe(
        &mut self,
        regime: u32,
        features: &[i32],
        success: bool,
    ) -> Result<(), LearnError> {
        self.check_regime(regime)?;
        self.check_features(features)?;
        let base = regime as usize * self.config.features;
        let mut updated = [Welford::new(); FEATURES_MAX];
        for (i, &x) in features.iter().enumerate() {
            updated[i] = self.stats[base + i];
            updated[i].push(x)?;
        }
        self.stats[base..base + features.len()].copy_from_slice(&updated[..features.len()]);
        let floor = self.floors_bps[regime as usize];
        let moved = if success {
            floor.saturating_sub(self.config.step_bps)
        } else {
            floor.saturating_add(2 * self.config.step_bps)
        };
        let clamped = moved.clamp(self.config.floor_min_bps, self.config.floor_max_bps);
        debug_assert!(clamped <= BPS_ONE);
        self.floors_bps[regime as usize] = clamped;
        Ok(())
    }

    /// The floor a decision in `regime` gets: the regime's floor, or the static
    /// warm-start floor when `learned` is false, raised to the client's floor.
    ///
    /// # Errors
    /// [`LearnError::RegimeOutOfRange`], [`LearnError::BasisPoints`] for a client
    /// floor above 10,000.
    pub fn decision_floor_bps(
        &self,
        regime: u32,
        client_floor_bps: Option<u32>,
        learned: bool,
    ) -> Result<u32, LearnError> {
        self.check_regime(regime)?;
        let client = client_floor_bps.unwrap_or(0);
        if client > BPS_ONE {
            return Err(LearnError::BasisPoints {
                what: "client floor",
                bps: client,
            });
        }
        let own = if learned {
            self.floors_bps[regime as usize]
        } else {
            self.config.warm_start_bps(regime as usize)
        };
        let floor = own.max(client);
        debug_assert!(floor >= self.config.floor_min_bps && floor <= BPS_ONE && floor >= client);
        Ok(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_is_exact_on_a_small_sample() {
        let mut w = Welford::new();
        for x in [2, 4, 4, 4, 5, 5, 7, 9] {
            w.push(x).unwrap();
        }
        // Mean 5, population variance 4: D = n·Σ(x − x̄)² = 8·32.
        assert_eq!(w.mean(), Some((40, 8)));
        assert_eq!(w.variance(), Some((256, 64)));
        // z² of 9 is (9 − 5)² / 4 = 4.
        assert_eq!(w.z2_milli(9), 4_000);
        assert_eq!(w.z2_milli(6), 250);
        let mut c = Welford::new();
        c.push(3).unwrap();
        c.push(3).unwrap();
        assert_eq!(c.z2_milli(3), 0);
        assert_eq!(c.z2_milli(4), ANOMALY_CAP_MILLI);
    }

    #[test]
    fn floors_move_asymmetrically_within_bounds() {
        let mut r = Regimes::new(RegimeConfig::default()).unwrap();
        let f = [0; 4];
        assert_eq!(r.floors_bps()[0], 5_500);
        assert_eq!(r.floors_bps()[1], 7_200);
        assert_eq!(r.floors_bps()[2], 9_200);
        r.observe(1, &f, false).unwrap();
        assert_eq!(r.floors_bps()[1], 7_220);
        r.observe(1, &f, true).unwrap();
        assert_eq!(r.floors_bps()[1], 7_210);
        for _ in 0..100 {
            r.observe(2, &f, false).unwrap();
        }
        assert_eq!(r.floors_bps()[2], 9_900);
        assert_eq!(r.decision_floor_bps(2, Some(10_000), true).unwrap(), 10_000);
        assert_eq!(r.decision_floor_bps(2, Some(1_000), false).unwrap(), 9_200);
        assert!(r.decision_floor_bps(2, Some(10_001), true).is_err());
    }

    #[test]
    fn labels_win_then_the_nearest_regime() {
        let mut r = Regimes::new(RegimeConfig::default()).unwrap();
        assert_eq!(r.classify(Some("security"), &[0; 4]).unwrap(), 3);
        assert_eq!(r.classify(None, &[0; 4]).unwrap(), 7);
        for i in 0..20 {
            r.observe(0, &[100 + i % 3, 10, 0, i % 2], true).unwrap();
            r.observe(1, &[1_000 + i % 5, 500 + i % 7, 3, i % 2], true)
                .unwrap();
        }
        assert_eq!(r.classify(None, &[101, 10, 0, 1]).unwrap(), 0);
        assert_eq!(r.classify(Some("unknown"), &[1_002, 503, 3, 0]).unwrap(), 1);
        assert!(r.classify(None, &[0; 3]).is_err());
    }
}
