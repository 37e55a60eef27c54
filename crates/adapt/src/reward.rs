//! Learning from a bounded reward with Beta posteriors: the reward of an outcome,
//! normalised into `[0, 1]` on a known scale, becomes one observation bit whose mean
//! is the normalised reward, so Thompson sampling (and the epsilon-greedy baseline)
//! rank arms by expected reward rather than by success rate alone.
//!
//! The bit is **dithered**, not drawn: the `k`-th observation of an arm (from 0)
//! compares the normalised reward with the `k`-th point of a golden-ratio Weyl
//! sequence, `u_k = ((k + 1) · G) mod 2^53` with `G` = [`WEYL_STEP_53`] (odd, so the
//! sequence visits every 53-bit point once per period). The mean of the bit over the
//! sequence is the normalised reward, as with an independent uniform (the classical
//! reduction of a bounded reward to Beta–Bernoulli sampling), but the points of a Weyl
//! sequence are spread evenly, so the sum of an arm's bits follows the sum of its
//! normalised rewards within a few units instead of a binomial `√n`: the bits add
//! only the reward's own noise. An arm's Beta posterior then over-states its
//! uncertainty a little (it assumes Bernoulli variance), which errs towards exploring.
//!
//! Everything is integer arithmetic (the comparison is exact in `u128`), and the
//! count `k` is the arm's number of observations (its posterior's `α + β` minus its
//! prior's), so a verifier re-derives every bit from the log. The procedure is
//! normative in `docs/ADAPT.md` section 9.

use crate::error::LearnError;

/// The Weyl step: `floor(2^53 · (√5 − 1) / 2)`, odd.
pub const WEYL_STEP_53: u64 = 5_566_755_282_872_655;

/// 2^53: the dither points are 53-bit fractions.
const UNIT_53: u64 = 1 << 53;

/// The basis points in one.
const BPS_ONE: u64 = 10_000;

/// The `k`-th dither point (from 0), a 53-bit fraction `u_k / 2^53` in `(0, 1)`.
#[must_use]
pub const fn dither_point(k: u64) -> u64 {
    // (k + 1) · G mod 2^53, wrapping: 2^53 divides 2^64, so the low 53 bits of the
    // wrapping product are the product mod 2^53.
    k.wrapping_add(1).wrapping_mul(WEYL_STEP_53) & (UNIT_53 - 1)
}

/// The scale of a reward: `[low, high]` in microunits, `low < high`; rewards outside
/// are clamped into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RewardScale {
    low: i64,
    high: i64,
}

impl RewardScale {
    /// The scale `[low, high]`.
    ///
    /// # Errors
    /// [`LearnError::RewardScale`] unless `low < high`.
    pub const fn new(low: i64, high: i64) -> Result<Self, LearnError> {
        if low >= high {
            return Err(LearnError::RewardScale { low, high });
        }
        Ok(Self { low, high })
    }

    /// The scale of a request worth `value` microunits per success whose cost is at
    /// most `cost_bound_bps` of its value: `[−value · cost_bound_bps / 10,000, value]`
    /// (the division rounds up, so the bound is never tighter than asked). `None` when
    /// the value is not positive (there is no reward scale to learn on) or the bound
    /// is above 10,000 bps.
    #[must_use]
    pub fn of_value(value: i64, cost_bound_bps: u32) -> Option<Self> {
        if value <= 0 || u64::from(cost_bound_bps) > BPS_ONE {
            return None;
        }
        // Both non-negative: unsigned ceiling division.
        let low = (u128::from(value.unsigned_abs()) * u128::from(cost_bound_bps))
            .div_ceil(u128::from(BPS_ONE));
        // low ≤ value < 2^63, so it fits, and −low < value.
        let low = i64::try_from(low).ok()?;
        Self::new(-low, value).ok()
    }

    /// The lowest reward of the scale.
    #[must_use]
    pub const fn low(&self) -> i64 {
        self.low
    }

    /// The highest reward of the scale.
    #[must_use]
    pub const fn high(&self) -> i64 {
        self.high
    }

    /// The observation bit of `reward` as an arm's `count`-th observation (from 0):
    /// `u_count · (high − low) < (clamp(reward) − low) · 2^53`, with `u_count` the
    /// [`dither_point`]. Its mean over the dither sequence is the normalised reward
    /// `(clamp(reward) − low) / (high − low)`.
    #[must_use]
    pub fn bit(&self, reward: i64, count: u64) -> bool {
        let clamped = reward.clamp(self.low, self.high);
        // Both differences fit in u64 (low < high, both i64); the products are below
        // 2^53 · 2^64 = 2^117.
        let span = u128::from(self.high.abs_diff(self.low));
        let above = u128::from(clamped.abs_diff(self.low));
        debug_assert!(above <= span && span > 0);
        u128::from(dither_point(count)) * span < above * u128::from(UNIT_53)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_is_the_golden_ratio_in_53_bits_and_odd() {
        let g = (5f64.sqrt() - 1.0) / 2.0;
        let approx = (g * UNIT_53 as f64) as u64;
        assert!(approx.abs_diff(WEYL_STEP_53) <= 2, "{approx}");
        assert_eq!(WEYL_STEP_53 % 2, 1);
        assert_eq!(dither_point(0), WEYL_STEP_53);
        assert_eq!(dither_point(1), (2 * WEYL_STEP_53) % UNIT_53);
    }

    #[test]
    fn the_bits_follow_the_normalised_reward_closely() {
        let scale = RewardScale::new(-3_000, 7_000).unwrap();
        for reward in [-3_000, -1_234, 0, 2_500, 6_999] {
            let m = (reward + 3_000) as f64 / 10_000.0;
            let mut ones = 0u64;
            for k in 0..100_000u64 {
                ones += u64::from(scale.bit(reward, k));
                // The running sum stays within a few units of k·m (a binomial would
                // wander by about sqrt(k)/2 = 150 at the end).
                let drift = ones as f64 - (k + 1) as f64 * m;
                assert!(drift.abs() < 4.0, "reward {reward}, k {k}: drift {drift}");
            }
        }
        // The ends: the lowest reward never gives a one, the highest always does.
        assert!((0..1_000).all(|k| !scale.bit(-5_000, k)));
        assert!((0..1_000).all(|k| scale.bit(9_000, k)));
    }

    #[test]
    fn the_scale_of_a_value_rounds_its_cost_bound_up() {
        let s = RewardScale::of_value(6_000, 5_746).unwrap();
        assert_eq!((s.low(), s.high()), (-3_448, 6_000));
        let s = RewardScale::of_value(300_000, 10_000).unwrap();
        assert_eq!((s.low(), s.high()), (-300_000, 300_000));
        let s = RewardScale::of_value(7, 0).unwrap();
        assert_eq!((s.low(), s.high()), (0, 7));
        assert_eq!(RewardScale::of_value(0, 5_000), None);
        assert_eq!(RewardScale::of_value(-10, 5_000), None);
        assert_eq!(RewardScale::of_value(10, 10_001), None);
        assert_eq!(
            RewardScale::new(5, 5),
            Err(LearnError::RewardScale { low: 5, high: 5 })
        );
        let wide = RewardScale::new(i64::MIN, i64::MAX).unwrap();
        assert!(!wide.bit(i64::MIN, 0) && wide.bit(i64::MAX, 0));
    }
}
