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

/// One used round reduced to the three numbers its term is made of:
/// `term = base + correction` or, when normalised, `base + correction / mean(norm)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Part {
    pub(crate) base: f64,
    pub(crate) correction: f64,
    pub(crate) norm: f64,
}

/// The used rounds of a log, ready to be summed, with their counts and weight
/// statistics.
pub(crate) struct Prepared {
    pub(crate) estimator: Estimator,
    pub(crate) parts: Vec<Part>,
    counts: RowCounts,
    weight_max: f64,
    weight_sum: f64,
    weight_square_sum: f64,
    reward_sum: f64,
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

impl Prepared {
    /// Checks every round in order, counts, and keeps the parts of the used ones.
    pub(crate) fn new(
        rows: &[LoggedRound],
        estimator: Estimator,
        config: &EstimatorConfig,
    ) -> Result<Self, OpeError> {
        estimator.check()?;
        let cap = config.cap()?;
        let needs_model = estimator.needs_model();
        let mut prepared = Self {
            estimator,
            parts: Vec::with_capacity(rows.len()),
            counts: RowCounts::default(),
            weight_max: 0.0,
            weight_sum: 0.0,
            weight_square_sum: 0.0,
            reward_sum: 0.0,
        };
        for (index, row) in rows.iter().enumerate() {
            prepared.counts.rows += 1;
            let round = match check_round(row, needs_model) {
                Ok(round) => round,
                Err(defect) => {
                    if config.row_policy == RowPolicy::Refuse {
                        return Err(OpeError::RowRefused {
                            index: index as u64,
                            defect,
                        });
                    }
                    if defect == RowDefect::Unsupported {
                        prepared.counts.unsupported += 1;
                    } else {
                        prepared.counts.excluded += 1;
                    }
                    continue;
                }
            };
            prepared.add(round, cap);
        }
        let c = prepared.counts;
        debug_assert_eq!(c.used + c.excluded + c.unsupported, c.rows);
        debug_assert_eq!(c.used, prepared.parts.len() as u64);
        if c.used == 0 {
            return Err(OpeError::NoUsableRows { counts: c });
        }
        Ok(prepared)
    }

    fn add(&mut self, round: CheckedRound, cap: f64) {
        let w = round.weight;
        let capped = if w > cap {
            self.counts.clipped += 1;
            cap
        } else {
            w
        };
        if let Estimator::SwitchDr { tau } = self.estimator
            && w > tau
        {
            self.counts.switched_off += 1;
        }
        self.counts.used += 1;
        self.weight_max = self.weight_max.max(w);
        self.weight_sum += w;
        self.weight_square_sum += w * w;
        self.reward_sum += round.reward;
        self.parts.push(part_of(self.estimator, &round, capped));
    }

    /// The full report: value, counts, weight statistics and the normal interval.
    pub(crate) fn estimate(&self) -> Estimate {
        let n = self.parts.len() as f64;
        let (value, variance) = mean_and_variance(&self.parts, self.estimator.is_normalised());
        let normal_interval = variance.map(|v| {
            let half_width = Z_95 * (v / n).sqrt();
            Interval {
                lower: value - half_width,
                upper: value + half_width,
            }
        });
        let effective_sample_size = if self.weight_square_sum == 0.0 {
            0.0
        } else {
            (self.weight_sum * self.weight_sum) / self.weight_square_sum
        };
        Estimate {
            estimator: self.estimator,
            value,
            counts: self.counts,
            weight_max: self.weight_max,
            weight_mean: self.weight_sum / n,
            effective_sample_size,
            logged_reward_mean: self.reward_sum / n,
            normal_interval,
        }
    }
}

/// The normaliser `mean(norm)` of normalised estimators, or 1 for the others.
/// Zero only when every norm is zero, and then every correction is zero too.
fn mean_norm(parts: &[Part], normalised: bool) -> f64 {
    if !normalised {
        return 1.0;
    }
    let mut sum = 0.0;
    for p in parts {
        sum += p.norm;
    }
    sum / parts.len() as f64
}

/// One round's term. A zero normaliser means every weight is zero, so every
/// correction is zero, and the term is defined as `base` (the limit, not `0/0`).
#[inline]
fn term(p: &Part, normalised: bool, norm_mean: f64) -> f64 {
    if !normalised {
        p.base + p.correction
    } else if norm_mean == 0.0 {
        debug_assert!(p.correction == 0.0);
        p.base
    } else {
        p.base + p.correction / norm_mean
    }
}

/// The mean of the terms (left-to-right sum divided by `n`), and the terms' sample
/// variance (divisor `n − 1`, second pass around that mean) when `n ≥ 2`.
pub(crate) fn mean_and_variance(parts: &[Part], normalised: bool) -> (f64, Option<f64>) {
    assert!(!parts.is_empty(), "an estimate needs at least one round");
    let n = parts.len() as f64;
    let norm_mean = mean_norm(parts, normalised);
    let mut sum = 0.0;
    for p in parts {
        sum += term(p, normalised, norm_mean);
    }
    let mean = sum / n;
    if parts.len() < 2 {
        return (mean, None);
    }
    let mut square_sum = 0.0;
    for p in parts {
        let d = term(p, normalised, norm_mean) - mean;
        square_sum += d * d;
    }
    (mean, Some(square_sum / (n - 1.0)))
}

/// The mean of the terms only (the bootstrap's replicate statistic).
pub(crate) fn mean_only(parts: &[Part], normalised: bool) -> f64 {
    assert!(!parts.is_empty(), "an estimate needs at least one round");
    let norm_mean = mean_norm(parts, normalised);
    let mut sum = 0.0;
    for p in parts {
        sum += term(p, normalised, norm_mean);
    }
    sum / parts.len() as f64
}

/// Estimates the value of the evaluation policy from a log.
///
/// Rounds are checked and summed in the given order; see `docs/OPE.md` for every
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
