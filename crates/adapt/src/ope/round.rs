//! One logged round and the checks that decide whether an estimator may use it.

use super::probability::{Probability, ProbabilityDefect, importance_weight};

/// The reward model's view of one round, needed by the model-based estimators
/// (DM, DR and its variants).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RewardModel {
    /// The model's predicted reward for the logged action, `q̂(x_t, a_t)`.
    pub prediction: f64,
    /// The model's expected reward under the evaluation policy,
    /// `Σ_a π_e(a | x_t) · q̂(x_t, a)`: the direct-method term of the round.
    pub dm_term: f64,
}

/// One logged round of a bandit log, reduced to what the estimators need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoggedRound {
    /// The observed reward `r_t`.
    pub reward: f64,
    /// The behaviour policy's probability of the logged action, `π_b(a_t | x_t)`.
    pub behaviour_propensity: Probability,
    /// The evaluation policy's probability of the logged action, `π_e(a_t | x_t)`.
    pub evaluation_probability: Probability,
    /// The reward model's terms, if a model was fitted; `None` makes the round
    /// unusable for model-based estimators (it is counted as excluded there).
    pub reward_model: Option<RewardModel>,
}

impl LoggedRound {
    /// A round with a reward model.
    #[must_use]
    pub const fn new(
        reward: f64,
        behaviour_propensity: Probability,
        evaluation_probability: Probability,
        prediction: f64,
        dm_term: f64,
    ) -> Self {
        Self {
            reward_model: Some(RewardModel {
                prediction,
                dm_term,
            }),
            ..Self::without_model(reward, behaviour_propensity, evaluation_probability)
        }
    }

    /// A round without a reward model (enough for IPS and SNIPS).
    #[must_use]
    pub const fn without_model(
        reward: f64,
        behaviour_propensity: Probability,
        evaluation_probability: Probability,
    ) -> Self {
        Self {
            reward,
            behaviour_propensity,
            evaluation_probability,
            reward_model: None,
        }
    }
}

/// The field of a [`LoggedRound`] a defect is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// [`LoggedRound::reward`].
    Reward,
    /// [`LoggedRound::behaviour_propensity`].
    BehaviourPropensity,
    /// [`LoggedRound::evaluation_probability`].
    EvaluationProbability,
    /// [`RewardModel::prediction`].
    Prediction,
    /// [`RewardModel::dm_term`].
    DmTerm,
}

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Reward => "reward",
            Self::BehaviourPropensity => "behaviour propensity",
            Self::EvaluationProbability => "evaluation probability",
            Self::Prediction => "reward-model prediction",
            Self::DmTerm => "DM term",
        })
    }
}

/// Why a round is not used by an estimator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RowDefect {
    /// A reward or reward-model value that is NaN or infinite.
    #[error("{0} is not finite")]
    NonFinite(Field),
    /// A logged probability that is not a probability.
    #[error("{field} is {defect}")]
    BadProbability {
        /// Which probability.
        field: Field,
        /// What is wrong with it.
        defect: ProbabilityDefect,
    },
    /// The behaviour propensity is zero and so is the evaluation probability: the
    /// log claims an action its policy could not take.
    #[error("behaviour propensity is zero")]
    ZeroPropensity,
    /// The evaluation policy gives the logged action a positive probability that the
    /// behaviour policy did not: no importance weight exists (counted apart from the
    /// other defects, as an unsupported round).
    #[error(
        "unsupported: evaluation probability is positive where the behaviour propensity is zero"
    )]
    Unsupported,
    /// The weight `π_e / π_b` overflows binary64.
    #[error("importance weight overflows")]
    WeightOverflow,
    /// A model-based estimator met a round without a reward model.
    #[error("no reward model for a model-based estimator")]
    MissingRewardModel,
}

/// A round the estimator may use: its raw importance weight and its values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CheckedRound {
    pub(crate) weight: f64,
    pub(crate) reward: f64,
    /// `(prediction, dm_term)`, zero when the estimator needs no model.
    pub(crate) model: (f64, f64),
}

fn check_probability(p: Probability, field: Field) -> Result<(), RowDefect> {
    p.check()
        .map_err(|defect| RowDefect::BadProbability { field, defect })
}

fn check_finite(value: f64, field: Field) -> Result<(), RowDefect> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(RowDefect::NonFinite(field))
    }
}

/// Decides whether a round can be used, in a fixed order of checks: reward,
/// behaviour propensity, evaluation probability, reward model (only when
/// `needs_model`), zero propensity or unsupported, weight overflow.
pub(crate) fn check_round(row: &LoggedRound, needs_model: bool) -> Result<CheckedRound, RowDefect> {
    check_finite(row.reward, Field::Reward)?;
    check_probability(row.behaviour_propensity, Field::BehaviourPropensity)?;
    check_probability(row.evaluation_probability, Field::EvaluationProbability)?;
    let model = if needs_model {
        let m = row.reward_model.ok_or(RowDefect::MissingRewardModel)?;
        check_finite(m.prediction, Field::Prediction)?;
        check_finite(m.dm_term, Field::DmTerm)?;
        (m.prediction, m.dm_term)
    } else {
        (0.0, 0.0)
    };
    if row.behaviour_propensity.is_zero() {
        return Err(if row.evaluation_probability.is_zero() {
            RowDefect::ZeroPropensity
        } else {
            RowDefect::Unsupported
        });
    }
    let weight = importance_weight(row.evaluation_probability, row.behaviour_propensity);
    if !weight.is_finite() {
        return Err(RowDefect::WeightOverflow);
    }
    debug_assert!(weight >= 0.0);
    Ok(CheckedRound {
        weight,
        reward: row.reward,
        model,
    })
}
