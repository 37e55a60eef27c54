//! Logged probabilities (binary64 or exact fractions) and the importance weight.

/// The largest integer below which every integer converts to `f64` exactly (2^53).
///
/// A ratio of two integers at most this large is rounded once, by the division.
pub const EXACT_F64_INTEGER_MAX: u128 = 1 << 53;

/// A probability as a log records it.
///
/// The OBD files carry binary64 values; the project's adaptive engine logs exact
/// fractions (for example basis points, `numerator / 10_000`). Both are checked
/// exactly before use: a fraction is never rounded before its range is known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Probability {
    /// A binary64 value, as parsed from a file.
    Float(f64),
    /// The exact fraction `numerator / denominator`.
    Ratio {
        /// The numerator.
        numerator: u64,
        /// The denominator; zero makes the probability invalid.
        denominator: u64,
    },
}

/// Why a logged probability cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbabilityDefect {
    /// A binary64 value that is NaN or infinite.
    #[error("not finite")]
    NonFinite,
    /// A binary64 value below zero.
    #[error("negative")]
    Negative,
    /// A value (binary64 or fraction) above one.
    #[error("above one")]
    AboveOne,
    /// A fraction whose denominator is zero.
    #[error("zero denominator")]
    ZeroDenominator,
}

impl Probability {
    /// A probability given as a binary64 value.
    #[must_use]
    pub const fn float(value: f64) -> Self {
        Self::Float(value)
    }

    /// A probability given as the exact fraction `numerator / denominator`.
    #[must_use]
    pub const fn ratio(numerator: u64, denominator: u64) -> Self {
        Self::Ratio {
            numerator,
            denominator,
        }
    }

    /// Checks that the value is a probability: finite, in `[0, 1]`, and (for a
    /// fraction) with a non-zero denominator. The check is exact for fractions.
    ///
    /// # Errors
    /// The first defect found.
    pub fn check(self) -> Result<(), ProbabilityDefect> {
        match self {
            Self::Float(value) if !value.is_finite() => Err(ProbabilityDefect::NonFinite),
            Self::Float(value) if value < 0.0 => Err(ProbabilityDefect::Negative),
            Self::Float(value) if value > 1.0 => Err(ProbabilityDefect::AboveOne),
            Self::Float(_) => Ok(()),
            Self::Ratio { denominator: 0, .. } => Err(ProbabilityDefect::ZeroDenominator),
            Self::Ratio {
                numerator,
                denominator,
            } if numerator > denominator => Err(ProbabilityDefect::AboveOne),
            Self::Ratio { .. } => Ok(()),
        }
    }

    /// Whether the value is exactly zero (`-0.0` counts as zero).
    #[must_use]
    pub fn is_zero(self) -> bool {
        match self {
            Self::Float(value) => value == 0.0,
            Self::Ratio { numerator, .. } => numerator == 0,
        }
    }

    /// The value as binary64: itself, or `numerator as f64 / denominator as f64`
    /// (one rounding when both are below 2^53). Meaningful only after [`check`](Self::check).
    #[must_use]
    pub fn to_f64(self) -> f64 {
        match self {
            Self::Float(value) => value,
            // `as f64` from u64 rounds to nearest, ties to even, on every target.
            Self::Ratio {
                numerator,
                denominator,
            } => numerator as f64 / denominator as f64,
        }
    }
}

/// The importance weight `evaluation / behaviour` of a checked pair whose behaviour
/// propensity is not zero.
///
/// When both are fractions and the cross products `ne * db` and `de * nb` are at
/// most 2^53 (always so for basis points), the weight is the exact ratio rounded
/// once. Otherwise it is the binary64 division of the two [`Probability::to_f64`]
/// values, which is what a float log gives anyway. The result may be infinite if a
/// binary64 propensity is tiny; the caller refuses such a row.
#[must_use]
pub fn importance_weight(evaluation: Probability, behaviour: Probability) -> f64 {
    debug_assert!(evaluation.check().is_ok() && behaviour.check().is_ok());
    debug_assert!(!behaviour.is_zero());
    if let (
        Probability::Ratio {
            numerator: ne,
            denominator: de,
        },
        Probability::Ratio {
            numerator: nb,
            denominator: db,
        },
    ) = (evaluation, behaviour)
    {
        let top = u128::from(ne) * u128::from(db);
        let bottom = u128::from(de) * u128::from(nb);
        if top <= EXACT_F64_INTEGER_MAX && bottom <= EXACT_F64_INTEGER_MAX {
            // Both integers convert exactly, so the division is the only rounding.
            return top as f64 / bottom as f64;
        }
    }
    evaluation.to_f64() / behaviour.to_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_exact() {
        assert_eq!(Probability::ratio(3, 3).check(), Ok(()));
        assert_eq!(
            Probability::ratio(4, 3).check(),
            Err(ProbabilityDefect::AboveOne)
        );
        assert_eq!(
            Probability::ratio(0, 0).check(),
            Err(ProbabilityDefect::ZeroDenominator)
        );
        assert_eq!(
            Probability::float(f64::NAN).check(),
            Err(ProbabilityDefect::NonFinite)
        );
        assert_eq!(
            Probability::float(-1e-300).check(),
            Err(ProbabilityDefect::Negative)
        );
        assert_eq!(
            Probability::float(1.0 + f64::EPSILON).check(),
            Err(ProbabilityDefect::AboveOne)
        );
        assert!(Probability::float(-0.0).is_zero());
    }

    #[test]
    fn exact_fractions_round_once() {
        // 1/3 over 1/10: exactly 10/3, rounded once.
        let w = importance_weight(Probability::ratio(1, 3), Probability::ratio(1, 10));
        assert_eq!(w, 10.0 / 3.0);
        // Basis points: 2_500 bps over 125 bps is exactly 20.
        let w = importance_weight(
            Probability::ratio(2_500, 10_000),
            Probability::ratio(125, 10_000),
        );
        assert_eq!(w, 20.0);
        // The same pair as floats equals the same pair as fractions when both are exact.
        let w = importance_weight(Probability::float(0.25), Probability::ratio(1, 80));
        assert_eq!(w, 20.0);
    }

    #[test]
    fn huge_fractions_fall_back_to_float_division() {
        let big = u64::MAX;
        let w = importance_weight(Probability::ratio(big, big), Probability::ratio(1, 2));
        assert_eq!(w, 1.0 / 0.5);
    }
}
