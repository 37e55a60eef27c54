//! The estimators, their configuration and report, and the fixed-order sums.

use super::OpeError;
use super::round::{CheckedRound, LoggedRound, RowDefect, check_round};

/// The project's default weight cap: importance weights above 20 are clipped to 20.
pub const DEFAULT_WEIGHT_CAP: f64 = 20.0;

/// The two-sided 95 % quantile of the standard normal distribution, Φ⁻¹(0.975).
pub const Z_95: f64 = 1.959_963_984_540_054;

/// An off-policy estimator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Estimator {
    /// Inverse propensity scoring (IPW): mean of `w · r`.
    Ips,
    /// Self-normalised IPS: `Σ w·r / Σ w`, computed as the mean of `w·r / mean(w)`.
    SnIps,
    /// Direct method: mean of the DM terms.
    Dm,
    /// Doubly robust: mean of `m + w · (r − q̂)`.
    Dr,
    /// Self-normalised DR: mean of `m + w · (r − q̂) / mean(w)`; only the correction
    /// is normalised.
    SnDr,
    /// DR in which a round whose raw weight exceeds `tau` drops its correction
    /// (`w ≤ tau` keeps it); the DM term stays in every round.
    SwitchDr {
        /// The switch threshold; `NaN` and negative values are refused.
        tau: f64,
    },
    /// DR with optimistic shrinkage: the weight becomes `λ·w / (w² + λ)`.
    DrOs {
        /// The shrinkage `λ`; infinity gives DR, zero gives DM. `NaN` and negative
        /// values are refused.
        lambda: f64,
    },
}

impl Estimator {
    /// Every estimator with obp's default-like parameters (`tau = lambda = 20`), in a
    /// fixed order (handy for reports and benchmarks).
    pub const ALL: [Self; 7] = [
        Self::Ips,
        Self::SnIps,
        Self::Dm,
        Self::Dr,
        Self::SnDr,
        Self::SwitchDr { tau: 20.0 },
        Self::DrOs { lambda: 20.0 },
    ];

    /// A short stable name (`ips`, `snips`, `dm`, `dr`, `sndr`, `switch-dr`, `dr-os`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ips => "ips",
            Self::SnIps => "snips",
            Self::Dm => "dm",
            Self::Dr => "dr",
            Self::SnDr => "sndr",
            Self::SwitchDr { .. } => "switch-dr",
            Self::DrOs { .. } => "dr-os",
        }
    }

    /// Whether the estimator reads the reward model.
    #[must_use]
    pub const fn needs_model(self) -> bool {
        !matches!(self, Self::Ips | Self::SnIps)
    }

    /// Whether the correction term is divided by the mean (capped) weight.
    #[must_use]
    pub const fn is_normalised(self) -> bool {
        matches!(self, Self::SnIps | Self::SnDr)
    }

    fn check(self) -> Result<(), OpeError> {
        match self {
            Self::SwitchDr { tau } if tau.is_nan() || tau < 0.0 => {
                Err(OpeError::InvalidParameter {
                    name: "tau",
                    value: tau,
                })
            }
            Self::DrOs { lambda } if lambda.is_nan() || lambda < 0.0 => {
                Err(OpeError::InvalidParameter {
                    name: "lambda",
                    value: lambda,
                })
            }
            _ => Ok(()),
        }
    }
}

/// What to do with a round that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RowPolicy {
    /// Leave it out and count it (as excluded or unsupported).
    #[default]
    Exclude,
    /// Fail with [`OpeError::RowRefused`] at the first such round.
    Refuse,
}

/// How an estimator treats weights and bad rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EstimatorConfig {
    /// Weights above the cap are replaced by the cap before the estimator uses them;
    /// `None` (or infinity) leaves them as they are. Must be positive.
    pub weight_cap: Option<f64>,
    /// What to do with unusable rounds.
    pub row_policy: RowPolicy,
}

impl Default for EstimatorConfig {
    /// The project's setting: cap [`DEFAULT_WEIGHT_CAP`], exclude bad rounds.
    fn default() -> Self {
        Self {
            weight_cap: Some(DEFAULT_WEIGHT_CAP),
            row_policy: RowPolicy::Exclude,
        }
    }
}

impl EstimatorConfig {
    /// No cap, bad rounds excluded: the textbook (and obp's) estimators.
    #[must_use]
    pub const fn uncapped() -> Self {
        Self {
            weight_cap: None,
            row_policy: RowPolicy::Exclude,
        }
    }

    /// The same configuration with another cap.
    #[must_use]
    pub const fn with_cap(self, weight_cap: Option<f64>) -> Self {
        Self { weight_cap, ..self }
    }

    /// The same configuration with another row policy.
    #[must_use]
    pub const fn with_row_policy(self, row_policy: RowPolicy) -> Self {
        Self { row_policy, ..self }
    }

    fn cap(self) -> Result<f64, OpeError> {
        match self.weight_cap {
            None => Ok(f64::INFINITY),
            Some(cap) if cap.is_nan() || cap <= 0.0 => Err(OpeError::InvalidParameter {
                name: "weight_cap",
                value: cap,
            }),
            Some(cap) => Ok(cap),
        }
    }
}

/// How many rounds went where. `used + excluded + unsupported == rows` always.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RowCounts {
    /// Rounds given.
    pub rows: u64,
    /// Rounds the estimate is the mean over.
    pub used: u64,
    /// Rounds left out for a defect other than [`RowDefect::Unsupported`].
    pub excluded: u64,
    /// Rounds left out because `π_e > 0` where `π_b = 0`.
    pub unsupported: u64,
    /// Used rounds whose raw weight was above the cap (strictly) and was clipped.
    pub clipped: u64,
    /// Used rounds whose correction switch-DR dropped (raw weight above `tau`);
    /// zero for the other estimators.
    pub switched_off: u64,
}

/// A two-sided interval `[lower, upper]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// The lower end.
    pub lower: f64,
    /// The upper end.
    pub upper: f64,
}

/// An estimate and what it rests on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Which estimator.
    pub estimator: Estimator,
    /// The estimated value of the evaluation policy: the mean of the per-round terms.
    pub value: f64,
    /// Where the rounds went.
    pub counts: RowCounts,
    /// The largest raw (uncapped) weight among used rounds.
    pub weight_max: f64,
    /// The mean raw weight among used rounds (near 1 when the propensities are right).
    pub weight_mean: f64,
    /// The effective sample size of the raw weights, `(Σ w)² / Σ w²` (zero if every
    /// weight is zero).
    pub effective_sample_size: f64,
    /// The mean logged reward of the used rounds (the behaviour policy's value).
    pub logged_reward_mean: f64,
    /// The 95 % normal-approximation interval `value ± Z_95 · s / √n`, with `s²` the
    /// sample variance (divisor `n − 1`) of the per-round terms; `None` below two
    /// used rounds.
    pub normal_interval: Option<Interval>,
}

/// One used round of a normalised estimator, reduced to the three numbers its term is
/// made of: `term = base + correction / mean(norm)`. The other estimators store the
/// term itself (`base + correction`, one `f64`), which keeps their memory traffic to
/// a third.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Part {
    pub(crate) base: f64,
    pub(crate) correction: f64,
    pub(crate) norm: f64,
}

/// What a used round is summed as: a plain term (`f64`) or a normalised [`Part`].
pub(crate) trait Summand: Copy {
    /// The normaliser of a sequence: `mean(norm)` for parts, unused (1) for terms.
    fn norm_mean(items: &[Self]) -> f64;
    /// The round's term given the normaliser.
    fn term(&self, norm_mean: f64) -> f64;
}

impl Summand for f64 {
    fn norm_mean(_: &[Self]) -> f64 {
        1.0
    }

    #[inline]
    fn term(&self, _: f64) -> f64 {
        *self
    }
}

impl Summand for Part {
    /// Zero when every norm is zero (and then every correction is zero too), or when
    /// the norms are subnormal and their mean underflows.
    fn norm_mean(items: &[Self]) -> f64 {
        let mut sum = 0.0;
        for p in items {
            sum += p.norm;
        }
        sum / items.len() as f64
    }

    /// A zero normaliser means every weight is zero, so every correction is zero, and
    /// the term is defined as `base` (the limit, not `0/0`). The one other way to get
    /// a zero mean is weights so tiny (subnormal, below about 1e-308) that their mean
    /// underflows; the same rule then drops their corrections rather than dividing
    /// by zero.
    #[inline]
    fn term(&self, norm_mean: f64) -> f64 {
        if norm_mean == 0.0 {
            self.base
        } else {
            self.base + self.correction / norm_mean
        }
    }
}

/// The used rounds in the form their estimator sums them.
pub(crate) enum Store {
    /// Terms of an estimator without normalisation.
    Plain(Vec<f64>),
    /// Parts of a normalised estimator (SNIPS, SNDR).
    Normalised(Vec<Part>),
}

impl Store {
    fn len(&self) -> usize {
        match self {
            Self::Plain(v) => v.len(),
            Self::Normalised(v) => v.len(),
        }
    }
}

/// The used rounds of a log, ready to be summed, with their counts and weight
/// statistics.
pub(crate) struct Prepared {
    pub(crate) estimator: Estimator,
    pub(crate) store: Store,
    /// The counts and weight statistics of the checking pass.
    tally: Tally,
}

/// DRos's shrunk weight `λ·w / (w² + λ)`, with its two limits made exact: λ = ∞
/// gives `w`, and a zero denominator (w = λ = 0) gives 0.
fn shrink(weight: f64, lambda: f64) -> f64 {
    if lambda == f64::INFINITY {
        return weight;
    }
    let denominator = weight * weight + lambda;
    if denominator == 0.0 {
        0.0
    } else {
        (lambda * weight) / denominator
    }
}

/// The per-round part of one checked round: pure, no branching on the caller's data
/// beyond the estimator's own rule.
fn part_of(estimator: Estimator, round: &CheckedRound, capped: f64) -> Part {
    let (prediction, dm_term) = round.model;
    let residual = round.reward - prediction;
    match estimator {
        Estimator::Ips => Part {
            base: 0.0,
            correction: capped * round.reward,
            norm: 0.0,
        },
        Estimator::SnIps => Part {
            base: 0.0,
            correction: capped * round.reward,
            norm: capped,
        },
        Estimator::Dm => Part {
            base: dm_term,
            correction: 0.0,
            norm: 0.0,
        },
        Estimator::Dr => Part {
            base: dm_term,
            correction: capped * residual,
            norm: 0.0,
        },
        Estimator::SnDr => Part {
            base: dm_term,
            correction: capped * residual,
            norm: capped,
        },
        Estimator::SwitchDr { tau } => Part {
            base: dm_term,
            correction: if round.weight <= tau {
                capped * residual
            } else {
                0.0
            },
            norm: 0.0,
        },
        Estimator::DrOs { lambda } => Part {
            base: dm_term,
            correction: shrink(capped, lambda) * residual,
            norm: 0.0,
        },
    }
}

/// The running totals of the checking pass, kept in a local value (not behind the
/// output vector) so that they can live in registers.
#[derive(Clone, Copy, Default)]
struct Tally {
    counts: RowCounts,
    weight_max: f64,
    weight_sum: f64,
    weight_square_sum: f64,
    reward_sum: f64,
}

/// Checks every round in order, counts it, and pushes `keep(part)` of each used one.
fn fill<T>(
    rows: &[LoggedRound],
    estimator: Estimator,
    cap: f64,
    row_policy: RowPolicy,
    out: &mut Vec<T>,
    keep: impl Fn(Part) -> T,
) -> Result<Tally, OpeError> {
    let needs_model = estimator.needs_model();
    let tau = match estimator {
        Estimator::SwitchDr { tau } => tau,
        _ => f64::INFINITY,
    };
    let mut t = Tally::default();
    for (index, row) in rows.iter().enumerate() {
        t.counts.rows += 1;
        let round = match check_round(row, needs_model) {
            Ok(round) => round,
            Err(defect) => {
                if row_policy == RowPolicy::Refuse {
                    return Err(OpeError::RowRefused {
                        index: index as u64,
                        defect,
                    });
                }
                if defect == RowDefect::Unsupported {
                    t.counts.unsupported += 1;
                } else {
                    t.counts.excluded += 1;
                }
                continue;
            }
        };
        let w = round.weight;
        let capped = if w > cap {
            t.counts.clipped += 1;
            cap
        } else {
            w
        };
        // `tau` is infinite for every estimator but switch-DR, so this counts nothing
        // for them.
        t.counts.switched_off += u64::from(w > tau);
        t.counts.used += 1;
        t.weight_max = t.weight_max.max(w);
        t.weight_sum += w;
        t.weight_square_sum += w * w;
        t.reward_sum += round.reward;
        out.push(keep(part_of(estimator, &round, capped)));
    }
    Ok(t)
}

impl Prepared {
    /// Checks every round in order, counts, and keeps the terms (or parts) of the
    /// used ones.
    pub(crate) fn new(
        rows: &[LoggedRound],
        estimator: Estimator,
        config: &EstimatorConfig,
    ) -> Result<Self, OpeError> {
        estimator.check()?;
        let cap = config.cap()?;
        let policy = config.row_policy;
        let (store, t) = if estimator.is_normalised() {
            let mut parts = Vec::with_capacity(rows.len());
            let t = fill(rows, estimator, cap, policy, &mut parts, |p| p)?;
            (Store::Normalised(parts), t)
        } else {
            let mut terms = Vec::with_capacity(rows.len());
            let t = fill(rows, estimator, cap, policy, &mut terms, |p| {
                p.base + p.correction
            })?;
            (Store::Plain(terms), t)
        };
        let c = t.counts;
        debug_assert_eq!(c.used + c.excluded + c.unsupported, c.rows);
        debug_assert_eq!(c.used, store.len() as u64);
        debug_assert!(c.clipped <= c.used && c.switched_off <= c.used);
        if c.used == 0 {
            return Err(OpeError::NoUsableRows { counts: c });
        }
        Ok(Self {
            estimator,
            store,
            tally: t,
        })
    }

    /// The full report: value, counts, weight statistics and the normal interval.
    pub(crate) fn estimate(&self) -> Estimate {
        let n = self.store.len() as f64;
        let (value, variance) = match &self.store {
            Store::Plain(terms) => mean_and_variance(terms),
            Store::Normalised(parts) => mean_and_variance(parts),
        };
        let normal_interval = variance.map(|v| {
            let half_width = Z_95 * (v / n).sqrt();
            Interval {
                lower: value - half_width,
                upper: value + half_width,
            }
        });
        let t = &self.tally;
        let effective_sample_size = if t.weight_square_sum == 0.0 {
            0.0
        } else {
            (t.weight_sum * t.weight_sum) / t.weight_square_sum
        };
        Estimate {
            estimator: self.estimator,
            value,
            counts: t.counts,
            weight_max: t.weight_max,
            weight_mean: t.weight_sum / n,
            effective_sample_size,
            logged_reward_mean: t.reward_sum / n,
            normal_interval,
        }
    }
}

/// The mean of the terms (left-to-right sum divided by `n`), and the terms' sample
/// variance (divisor `n − 1`, second pass around that mean) when `n ≥ 2`.
pub(crate) fn mean_and_variance<T: Summand>(items: &[T]) -> (f64, Option<f64>) {
    let mean = mean_only(items);
    if items.len() < 2 {
        return (mean, None);
    }
    let norm_mean = T::norm_mean(items);
    let mut square_sum = 0.0;
    for item in items {
        let d = item.term(norm_mean) - mean;
        square_sum += d * d;
    }
    (mean, Some(square_sum / (items.len() as f64 - 1.0)))
}

/// The mean of the terms only: the point estimate, and the bootstrap's replicate
/// statistic.
pub(crate) fn mean_only<T: Summand>(items: &[T]) -> f64 {
    assert!(!items.is_empty(), "an estimate needs at least one round");
    let norm_mean = T::norm_mean(items);
    let mut sum = 0.0;
    for item in items {
        sum += item.term(norm_mean);
    }
    sum / items.len() as f64
}

/// Estimates the value of the evaluation policy from a log.
///
/// Rounds are checked and summed in the given order; see `docs/SPECIFICATION.md` ("Off-policy estimators") for every
/// formula.
///
/// # Errors
/// [`OpeError::InvalidParameter`] for a bad cap, `tau` or `lambda`;
/// [`OpeError::RowRefused`] under [`RowPolicy::Refuse`]; [`OpeError::NoUsableRows`]
/// when no round can be used.
pub fn estimate(
    rows: &[LoggedRound],
    estimator: Estimator,
    config: &EstimatorConfig,
) -> Result<Estimate, OpeError> {
    Ok(Prepared::new(rows, estimator, config)?.estimate())
}
