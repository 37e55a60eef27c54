//! Off-policy estimators: the value of an evaluation policy from rounds logged under
//! a behaviour policy.
//!
//! Every formula, count, interval and the bootstrap's PRF are written down in
//! `docs/SPECIFICATION.md` ("Off-policy estimators"). The short version:
//!
//! - [`estimate`] checks every [`LoggedRound`] in order, counts it as used, excluded
//!   or unsupported ([`RowCounts`]), and returns the mean of the per-round terms of
//!   the chosen [`Estimator`] with a 95 % normal interval ([`Estimate`]).
//! - [`bootstrap`] resamples the used rounds with indices from a keyed SHA-256
//!   counter-mode stream ([`IndexStream`]), so its interval replays bit for bit.
//! - Sums run left to right in the given order; nothing uses `mul_add`, threads or
//!   platform-dependent maths (only `+ − × ÷` and `sqrt`, all correctly rounded).

mod bootstrap;
mod estimate;
mod probability;
mod round;

pub use bootstrap::{
    BOOTSTRAP_DOMAIN_TAG, BOOTSTRAP_KEY_LEN, BOOTSTRAP_REPLICATES_MAX, Bootstrap, BootstrapKey,
    IndexStream, PERCENTILE_LOWER_PER_MILLE, PERCENTILE_UPPER_PER_MILLE, bootstrap,
};
pub use estimate::{
    DEFAULT_WEIGHT_CAP, Estimate, Estimator, EstimatorConfig, Interval, RowCounts, RowPolicy, Z_95,
    estimate,
};
pub use probability::{EXACT_F64_INTEGER_MAX, Probability, ProbabilityDefect, importance_weight};
pub use round::{Field, LoggedRound, RewardModel, RowDefect};

/// Why an estimate or a bootstrap could not be made.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OpeError {
    /// Under [`RowPolicy::Refuse`], the first unusable round.
    #[error("round {index} refused: {defect}")]
    RowRefused {
        /// The round's 0-based position in the given slice.
        index: u64,
        /// What is wrong with it.
        defect: RowDefect,
    },
    /// No round could be used, so there is no mean to take.
    #[error("no usable rounds ({} given, {} excluded, {} unsupported)", counts.rows, counts.excluded, counts.unsupported)]
    NoUsableRows {
        /// Where the rounds went.
        counts: RowCounts,
    },
    /// A weight cap, `tau` or `lambda` out of its range.
    #[error("invalid {name}: {value}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// A replicate count outside `1..=max`.
    #[error("bootstrap replicates {replicates} outside 1..={max}")]
    Replicates {
        /// The count asked for.
        replicates: u32,
        /// [`BOOTSTRAP_REPLICATES_MAX`].
        max: u32,
    },
}
