//! The one error type of the learning modules ([`crate::prf`], [`crate::beta`],
//! [`crate::thompson`], [`crate::regime`], [`crate::engine`], [`crate::reward`]).

use thiserror::Error;

/// Why a learning primitive refused its input or could not finish.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LearnError {
    /// A uniform integer was asked for in an empty range.
    #[error("a uniform integer in an empty range [0, 0) was asked for")]
    EmptyRange,
    /// A rejection loop used up its named bound of attempts (probability far below
    /// 2^-100 for every accepted input; the caller may retry with another context).
    #[error("the {what} rejection loop used up its {attempts} attempts")]
    Exhausted {
        /// Which loop.
        what: &'static str,
        /// Its bound.
        attempts: u32,
    },
    /// A Beta shape is outside [`crate::beta::SHAPE_MIN`, `crate::beta::SHAPE_MAX`].
    #[error("Beta shape {shape} is outside [1, 1000000]")]
    ShapeOutOfRange {
        /// The refused shape.
        shape: u64,
    },
    /// An arm set is empty or larger than its bound.
    #[error("{arms} arms: a policy needs between 1 and {max} arms")]
    ArmCount {
        /// The number of arms given.
        arms: usize,
        /// The bound.
        max: usize,
    },
    /// An arm index is not below the number of arms.
    #[error("arm {arm} is not below the number of arms {arms}")]
    ArmOutOfRange {
        /// The arm index.
        arm: u32,
        /// The number of arms.
        arms: u32,
    },
    /// A re-draw count for the propensity is 0 or above its bound.
    #[error("{redraws} re-draws: the propensity needs between 1 and {max}")]
    Redraws {
        /// The count given.
        redraws: u32,
        /// The bound.
        max: u32,
    },
    /// A value in basis points is above 10,000 (or a bound pair is inverted).
    #[error("{what} = {bps} bps is not a valid basis-point value here")]
    BasisPoints {
        /// Which value.
        what: &'static str,
        /// The value.
        bps: u32,
    },
    /// A regime configuration is empty, too large, or names a label twice.
    #[error("bad regime configuration: {reason}")]
    RegimeConfig {
        /// What is wrong.
        reason: &'static str,
    },
    /// A regime index is not below the number of regimes.
    #[error("regime {regime} is not below the number of regimes {regimes}")]
    RegimeOutOfRange {
        /// The regime index.
        regime: u32,
        /// The number of regimes.
        regimes: u32,
    },
    /// A feature vector does not have the configured length.
    #[error("{given} features given, the configuration has {expected}")]
    FeatureCount {
        /// Features given.
        given: usize,
        /// Features configured.
        expected: usize,
    },
    /// A propensity was asked for a decision taken on another engine state.
    #[error("the decision was taken on another engine state")]
    StaleState,
    /// A reward scale is empty or inverted ([`crate::reward::RewardScale`]).
    #[error("reward scale [{low}, {high}] is empty: the low end must be below the high end")]
    RewardScale {
        /// The low end given.
        low: i64,
        /// The high end given.
        high: i64,
    },
    /// An engine state given to [`crate::engine::Engine::from_state`] (or a part of it,
    /// such as [`crate::regime::Welford::from_parts`]) breaks an invariant of every
    /// state the engine can reach.
    #[error("invalid engine state: {reason}")]
    InvalidState {
        /// Which invariant.
        reason: &'static str,
    },
    /// An exact integer state would overflow its bound (count or accumulator).
    #[error("the {what} would overflow its exact integer bound")]
    Overflow {
        /// Which accumulator.
        what: &'static str,
    },
}
