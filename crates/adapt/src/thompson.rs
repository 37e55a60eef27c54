//! Thompson selection over Beta posteriors, its exact re-derivable propensity, and a
//! keyed epsilon-greedy baseline.
//!
//! One decision draws one `Beta(α, β)` sample per arm, arms in index order, from the
//! [`Purpose::Thompson`] stream with index 0 of the decision's [`Prf`], and picks the
//! highest sample (ties go to the lowest arm index). Its propensity is re-derived by
//! `K` more draws, streams 1..=K: with `c` the number of those in which the same arm
//! wins, the propensity is the exact fraction `(c + 1) / (K + 1)`. The `+ 1` counts
//! the decision's own draw (stream 0), which by construction picked the arm, so the
//! fraction is the arm's share over all `K + 1` draws and is never 0.

use crate::beta::{SHAPE_MAX, Sampler, check_shape};
use crate::error::LearnError;
use crate::prf::{Prf, Purpose};

/// The most arms a policy accepts: bounds a decision's draws.
pub const ARMS_MAX: usize = 1024;

/// The most re-draws a propensity may ask for: bounds its time (re-draws × arms).
pub const REDRAWS_MAX: u32 = 1_000_000;

/// Basis points in one (probability 1).
pub const BPS_ONE: u32 = 10_000;

/// A Beta posterior of one arm with integer shapes in [1, [`SHAPE_MAX`]].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Posterior {
    alpha: u32,
    beta: u32,
}

impl Posterior {
    /// The uniform prior Beta(1, 1).
    pub const UNIFORM: Self = Self { alpha: 1, beta: 1 };

    /// A posterior `Beta(alpha, beta)`.
    ///
    /// # Errors
    /// [`LearnError::ShapeOutOfRange`].
    pub const fn new(alpha: u32, beta: u32) -> Result<Self, LearnError> {
        if let Err(e) = check_shape(alpha) {
            return Err(e);
        }
        if let Err(e) = check_shape(beta) {
            return Err(e);
        }
        Ok(Self { alpha, beta })
    }

    /// α (prior successes plus observed successes).
    #[must_use]
    pub const fn alpha(&self) -> u32 {
        self.alpha
    }

    /// β (prior failures plus observed failures).
    #[must_use]
    pub const fn beta(&self) -> u32 {
        self.beta
    }

    /// The posterior after one outcome: a success adds 1 to α, a failure 1 to β.
    ///
    /// # Errors
    /// [`LearnError::ShapeOutOfRange`] when the shape would pass [`SHAPE_MAX`]
    /// (the state is unchanged; the caller decides how to forget).
    pub const fn observed(self, success: bool) -> Result<Self, LearnError> {
        let (alpha, beta) = if success {
            (self.alpha + 1, self.beta)
        } else {
            (self.alpha, self.beta + 1)
        };
        if alpha > SHAPE_MAX || beta > SHAPE_MAX {
            return Err(LearnError::ShapeOutOfRange {
                shape: SHAPE_MAX as u64 + 1,
            });
        }
        Ok(Self { alpha, beta })
    }
}

/// An exact probability `numerator / denominator` (not reduced: a verifier recomputes
/// both integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Propensity {
    /// The numerator, at most the denominator.
    pub numerator: u64,
    /// The denominator, at least 1.
    pub denominator: u64,
}

impl Propensity {
    /// Probability one.
    pub const ONE: Self = Self {
        numerator: 1,
        denominator: 1,
    };

    /// The nearest binary64 (one correctly rounded division of exact conversions
    /// when both are below 2^53).
    #[must_use]
    pub fn to_f64(self) -> f64 {
        debug_assert!(self.denominator > 0 && self.numerator <= self.denominator);
        self.numerator as f64 / self.denominator as f64
    }
}

/// Which learning policy picks an arm when the engine explores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Thompson sampling, propensity over `redraws` keyed re-draws.
    Thompson {
        /// `K` of `(c + 1) / (K + 1)`.
        redraws: u32,
    },
    /// The baseline: explore with `epsilon_bps`, else the arm of highest posterior mean.
    EpsilonGreedy {
        /// The exploration probability, in basis points.
        epsilon_bps: u32,
    },
}

fn check_arms(posteriors: &[Posterior]) -> Result<(), LearnError> {
    if posteriors.is_empty() || posteriors.len() > ARMS_MAX {
        return Err(LearnError::ArmCount {
            arms: posteriors.len(),
            max: ARMS_MAX,
        });
    }
    Ok(())
}

fn arm_index(i: usize) -> u32 {
    // i < ARMS_MAX, checked by every caller.
    u32::try_from(i).unwrap_or_else(|_| unreachable!("arm index below ARMS_MAX"))
}

/// The winner of Thompson draw `replica` (0: the decision; 1..=K: re-draws): the arm
/// with the highest sample, the lowest index on ties.
///
/// # Errors
/// [`LearnError::ArmCount`]; [`LearnError::Exhausted`] (practically never).
pub fn thompson_draw(prf: &Prf, replica: u64, posteriors: &[Posterior]) -> Result<u32, LearnError> {
    check_arms(posteriors)?;
    let mut sampler = Sampler::new(prf.stream(Purpose::Thompson, replica));
    let mut best = 0usize;
    let mut best_sample = f64::NEG_INFINITY;
    for (i, p) in posteriors.iter().enumerate() {
        let sample = sampler.beta(p.alpha, p.beta)?;
        // Strictly greater: an equal later sample does not displace the lower index.
        if sample > best_sample {
            best = i;
            best_sample = sample;
        }
    }
    Ok(arm_index(best))
}

/// How many of the re-draws 1..=`redraws` each arm wins (index = arm).
///
/// # Errors
/// [`LearnError::ArmCount`], [`LearnError::Redraws`], [`LearnError::Exhausted`].
pub fn thompson_wins(
    prf: &Prf,
    posteriors: &[Posterior],
    redraws: u32,
) -> Result<Vec<u64>, LearnError> {
    check_arms(posteriors)?;
    check_redraws(redraws)?;
    let mut wins = vec![0u64; posteriors.len()];
    for replica in 1..=u64::from(redraws) {
        let arm = thompson_draw(prf, replica, posteriors)?;
        wins[arm as usize] += 1;
    }
    debug_assert_eq!(wins.iter().sum::<u64>(), u64::from(redraws));
    Ok(wins)
}

const fn check_redraws(redraws: u32) -> Result<(), LearnError> {
    if redraws == 0 || redraws > REDRAWS_MAX {
        return Err(LearnError::Redraws {
            redraws,
            max: REDRAWS_MAX,
        });
    }
    Ok(())
}

/// The propensity of `arm` under Thompson: `(c + 1) / (K + 1)`, `c` the re-draws
/// 1..=K that `arm` wins.
///
/// # Errors
/// [`LearnError::ArmOutOfRange`] and those of [`thompson_wins`].
pub fn thompson_propensity(
    prf: &Prf,
    posteriors: &[Posterior],
    arm: u32,
    redraws: u32,
) -> Result<Propensity, LearnError> {
    check_arms(posteriors)?;
    check_arm(arm, posteriors.len())?;
    let wins = thompson_wins(prf, posteriors, redraws)?;
    let p = Propensity {
        numerator: wins[arm as usize] + 1,
        denominator: u64::from(redraws) + 1,
    };
    debug_assert!(p.numerator >= 1 && p.numerator <= p.denominator);
    Ok(p)
}

fn check_arm(arm: u32, arms: usize) -> Result<(), LearnError> {
    if arm as usize >= arms {
        return Err(LearnError::ArmOutOfRange {
            arm,
            arms: arm_index(arms),
        });
    }
    Ok(())
}

/// The arm of highest posterior mean `α / (α + β)`, compared exactly by
/// cross-multiplication in `u64`; the lowest index on ties.
///
/// # Errors
/// [`LearnError::ArmCount`].
pub fn greedy_arm(posteriors: &[Posterior]) -> Result<u32, LearnError> {
    check_arms(posteriors)?;
    let mut best = 0usize;
    for (i, p) in posteriors.iter().enumerate().skip(1) {
        let b = posteriors[best];
        // a/(a+b) > a'/(a'+b')  ⇔  a·(a'+b') > a'·(a+b); each product is below 2^42.
        let lhs = u64::from(p.alpha) * (u64::from(b.alpha) + u64::from(b.beta));
        let rhs = u64::from(b.alpha) * (u64::from(p.alpha) + u64::from(p.beta));
        if lhs > rhs {
            best = i;
        }
    }
    Ok(arm_index(best))
}

/// Keyed epsilon-greedy: on the [`Purpose::EpsilonGreedy`] stream 0, a uniform integer
/// `r` in [0, 10,000); if `r < epsilon_bps` a uniform arm (the next uniform integer in
/// [0, n)), else the [`greedy_arm`]. Returns the arm and its exact propensity
/// `(e·1 + (10,000 − e)·n·[arm = greedy]) / (10,000·n)`.
///
/// # Errors
/// [`LearnError::ArmCount`], [`LearnError::BasisPoints`], [`LearnError::Exhausted`].
pub fn epsilon_greedy_select(
    prf: &Prf,
    posteriors: &[Posterior],
    epsilon_bps: u32,
) -> Result<(u32, Propensity), LearnError> {
    check_arms(posteriors)?;
    if epsilon_bps > BPS_ONE {
        return Err(LearnError::BasisPoints {
            what: "epsilon",
            bps: epsilon_bps,
        });
    }
    let greedy = greedy_arm(posteriors)?;
    let n = posteriors.len() as u64;
    let mut stream = prf.stream(Purpose::EpsilonGreedy, 0);
    let coin = stream.below(u64::from(BPS_ONE))?;
    let arm = if coin < u64::from(epsilon_bps) {
        arm_index(usize::try_from(stream.below(n)?).unwrap_or(0))
    } else {
        greedy
    };
    Ok((
        arm,
        epsilon_greedy_propensity(posteriors, epsilon_bps, arm)?,
    ))
}

/// The exact epsilon-greedy propensity of `arm` (see [`epsilon_greedy_select`]).
///
/// # Errors
/// [`LearnError::ArmCount`], [`LearnError::ArmOutOfRange`], [`LearnError::BasisPoints`].
pub fn epsilon_greedy_propensity(
    posteriors: &[Posterior],
    epsilon_bps: u32,
    arm: u32,
) -> Result<Propensity, LearnError> {
    check_arms(posteriors)?;
    check_arm(arm, posteriors.len())?;
    if epsilon_bps > BPS_ONE {
        return Err(LearnError::BasisPoints {
            what: "epsilon",
            bps: epsilon_bps,
        });
    }
    let n = posteriors.len() as u64;
    let e = u64::from(epsilon_bps);
    let exploit = if arm == greedy_arm(posteriors)? {
        (u64::from(BPS_ONE) - e) * n
    } else {
        0
    };
    Ok(Propensity {
        numerator: e + exploit,
        denominator: u64::from(BPS_ONE) * n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prf::PrfKey;

    fn prf(i: u8) -> Prf {
        Prf::new(&PrfKey::from_bytes([i; 32]), &[0; 32], &[i; 32])
    }

    #[test]
    fn ties_go_to_the_lowest_index_and_a_sure_arm_wins() {
        // Beta(10^6, 1) against Beta(1, 10^6): the first arm always wins.
        let arms = [
            Posterior::new(1, 1_000_000).unwrap(),
            Posterior::new(1_000_000, 1).unwrap(),
            Posterior::new(1_000_000, 1).unwrap(),
        ];
        let mut seen = [0u32; 3];
        for i in 0..50 {
            seen[thompson_draw(&prf(i), 0, &arms).unwrap() as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1] > 0 && seen[2] > 0);
        // Greedy: equal means tie to the lowest index.
        assert_eq!(greedy_arm(&arms).unwrap(), 1);
        assert_eq!(greedy_arm(&[Posterior::UNIFORM; 4]).unwrap(), 0);
    }

    #[test]
    fn propensity_counts_the_decision_draw() {
        let arms = [Posterior::new(3, 5).unwrap(), Posterior::new(5, 3).unwrap()];
        let p = prf(1);
        let chosen = thompson_draw(&p, 0, &arms).unwrap();
        let wins = thompson_wins(&p, &arms, 200).unwrap();
        let prop = thompson_propensity(&p, &arms, chosen, 200).unwrap();
        assert_eq!(prop.numerator, wins[chosen as usize] + 1);
        assert_eq!(prop.denominator, 201);
        let other = thompson_propensity(&p, &arms, 1 - chosen, 200).unwrap();
        assert_eq!(prop.numerator + other.numerator, 202);
        assert!(thompson_propensity(&p, &arms, 2, 10).is_err());
        assert!(thompson_propensity(&p, &arms, 0, 0).is_err());
        assert!(thompson_draw(&p, 0, &[]).is_err());
    }

    #[test]
    fn epsilon_greedy_propensities_sum_to_one() {
        let arms = [
            Posterior::new(2, 8).unwrap(),
            Posterior::new(8, 2).unwrap(),
            Posterior::new(5, 5).unwrap(),
        ];
        for eps in [0, 1, 500, 10_000] {
            let total: u64 = (0..3)
                .map(|a| epsilon_greedy_propensity(&arms, eps, a).unwrap().numerator)
                .sum();
            assert_eq!(total, 30_000);
        }
        // With epsilon 0 the greedy arm is always chosen, with propensity 1.
        for i in 0..20 {
            let (arm, p) = epsilon_greedy_select(&prf(i), &arms, 0).unwrap();
            assert_eq!(arm, 1);
            assert_eq!(p.to_f64(), 1.0);
        }
        assert!(epsilon_greedy_select(&prf(0), &arms, 10_001).is_err());
    }
}
