//! Beta draws that are bit-identical on every platform.
//!
//! Method (defined in `docs/ADAPT.md`): `Beta(α, β) = X / (X + Y)` with independent
//! `X ~ Gamma(α)` and `Y ~ Gamma(β)`; each Gamma by Marsaglia and Tsang's squeeze and
//! rejection method (valid for shapes ≥ 1); its standard normals by Marsaglia's polar
//! method; its one logarithm by [`ln`], our own. Every step is an IEEE-754 binary64
//! `+`, `-`, `*`, `/` or `sqrt`, all correctly rounded, in a fixed order with no fused
//! multiply-add, plus exact integer-to-float conversions and exact bit manipulation.
//! No libm function is called, so every platform with IEEE binary64 arithmetic (every
//! Rust tier-1 target; x87 targets without SSE2 excepted) computes the same bits.
//!
//! Shapes are integers in [`SHAPE_MIN`, `SHAPE_MAX`].

use crate::error::LearnError;
use crate::prf::Stream;

/// The smallest Beta or Gamma shape accepted.
pub const SHAPE_MIN: u32 = 1;

/// The largest Beta or Gamma shape accepted.
pub const SHAPE_MAX: u32 = 1_000_000;

/// The most candidate pairs the polar method may reject in a row (each with
/// probability 1 − π/4 < 0.22) before it gives up.
pub const POLAR_ATTEMPTS_MAX: u32 = 64;

/// The most candidates the Gamma rejection step may reject in a row (each with
/// probability below 0.05 for shapes ≥ 1) before it gives up.
pub const GAMMA_ATTEMPTS_MAX: u32 = 64;

/// The number of odd terms of the `atanh` series in [`ln`]: with `|f| ≤ 0.1716`,
/// `f^2 ≤ 0.0295` and the first omitted term is below 2^-60 relative.
const LN_SERIES_TERMS: usize = 12;

/// `1/(2k + 1)` for `k` in `0..LN_SERIES_TERMS`, each one correctly rounded binary64
/// division (evaluated at compile time: the same bits as dividing at run time).
const LN_SERIES_COEFFICIENTS: [f64; LN_SERIES_TERMS] = {
    let mut c = [0.0; LN_SERIES_TERMS];
    let mut k = 0;
    while k < LN_SERIES_TERMS {
        c[k] = 1.0 / ((2 * k + 1) as f64);
        k += 1;
    }
    c
};

/// Marsaglia and Tsang's squeeze constant.
const SQUEEZE: f64 = 0.0331;

/// A binary64's exponent bias.
const EXPONENT_BIAS: i64 = 1023;

/// 2^54, the scale that lifts a subnormal into the normal range in [`ln`].
const TWO_POW_54: f64 = 18_014_398_509_481_984.0;

/// The natural logarithm, deterministic: `x = m · 2^e` with `m ∈ [√½, √2)` by exact bit
/// manipulation, then `ln m = 2·atanh(f)`, `f = (m − 1)/(m + 1)`, by the first
/// `LN_SERIES_TERMS` odd terms in Horner form, and `ln x = e·ln 2 + ln m`. Within a
/// few ulps of the true value (tested against the platform's `ln`); the point is not
/// the last ulp but that every platform gives the same bits.
///
/// Returns NaN for NaN or negative `x`, −∞ for 0 and +∞ for +∞.
#[must_use]
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x == f64::INFINITY {
        return f64::INFINITY;
    }
    let (x, lifted) = if x < f64::MIN_POSITIVE {
        (x * TWO_POW_54, 54)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    // The biased exponent is 11 bits, so the cast is exact.
    let biased = ((bits >> 52) & 0x7FF) as i64;
    let mut e = biased - EXPONENT_BIAS - lifted;
    let mut m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000);
    debug_assert!((1.0..2.0).contains(&m));
    if m > core::f64::consts::SQRT_2 {
        // Halving is exact.
        m *= 0.5;
        e += 1;
    }
    // m - 1 is exact (Sterbenz); m + 1 and the quotient are rounded once each.
    let f = (m - 1.0) / (m + 1.0);
    let f2 = f * f;
    let mut series = 0.0;
    for k in (0..LN_SERIES_TERMS).rev() {
        // 1/(2k + 1), correctly rounded; the loop order is fixed.
        series = series * f2 + LN_SERIES_COEFFICIENTS[k];
    }
    let ln_m = 2.0 * f * series;
    // |e| ≤ 1128, exact in binary64.
    (e as f64) * core::f64::consts::LN_2 + ln_m
}

/// Draws standard normals by Marsaglia's polar method and keeps the second of each
/// pair for the next call, so a draw's words depend only on the stream and the order
/// of calls.
#[derive(Debug, Clone)]
pub struct Sampler {
    stream: Stream,
    spare_normal: Option<f64>,
}

impl Sampler {
    /// A sampler over `stream`.
    #[must_use]
    pub const fn new(stream: Stream) -> Self {
        Self {
            stream,
            spare_normal: None,
        }
    }

    /// A standard normal: the kept spare if there is one, else a fresh polar pair.
    ///
    /// # Errors
    /// [`LearnError::Exhausted`] after [`POLAR_ATTEMPTS_MAX`] rejected pairs.
    pub fn normal(&mut self) -> Result<f64, LearnError> {
        if let Some(z) = self.spare_normal.take() {
            return Ok(z);
        }
        for _ in 0..POLAR_ATTEMPTS_MAX {
            // 2u - 1 is exact for u a multiple of 2^-53 in [0, 1).
            let u = 2.0 * self.stream.unit_f64() - 1.0;
            let v = 2.0 * self.stream.unit_f64() - 1.0;
            let s = u * u + v * v;
            if s >= 1.0 || s == 0.0 {
                continue;
            }
            let factor = (-2.0 * ln(s) / s).sqrt();
            self.spare_normal = Some(v * factor);
            return Ok(u * factor);
        }
        Err(LearnError::Exhausted {
            what: "polar normal",
            attempts: POLAR_ATTEMPTS_MAX,
        })
    }

    /// A `Gamma(shape, 1)` draw by Marsaglia and Tsang: `d = shape − 1/3`,
    /// `c = 1/√(9d)`; for a normal `x` and `v = (1 + c·x)^3 > 0`, accept `d·v` if
    /// `u < 1 − 0.0331·x^4` or `ln u < x²/2 + d·(1 − v + ln v)`, `u` uniform in (0, 1).
    ///
    /// # Errors
    /// [`LearnError::ShapeOutOfRange`]; [`LearnError::Exhausted`].
    pub fn gamma(&mut self, shape: u32) -> Result<f64, LearnError> {
        check_shape(shape)?;
        let d = f64::from(shape) - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        for _ in 0..GAMMA_ATTEMPTS_MAX {
            let x = self.normal()?;
            let t = 1.0 + c * x;
            if t <= 0.0 {
                continue;
            }
            let v = t * t * t;
            let u = self.stream.unit_open_f64();
            let x2 = x * x;
            if u < 1.0 - SQUEEZE * x2 * x2 || ln(u) < 0.5 * x2 + d * (1.0 - v + ln(v)) {
                let g = d * v;
                debug_assert!(g > 0.0 && g.is_finite());
                return Ok(g);
            }
        }
        Err(LearnError::Exhausted {
            what: "gamma",
            attempts: GAMMA_ATTEMPTS_MAX,
        })
    }

    /// A `Beta(alpha, beta)` draw: `X / (X + Y)`, `X ~ Gamma(alpha)` drawn first,
    /// then `Y ~ Gamma(beta)`. The result is in (0, 1] (1 only if `Y` underflows
    /// relative to `X`, which needs shapes far apart).
    ///
    /// # Errors
    /// [`LearnError::ShapeOutOfRange`]; [`LearnError::Exhausted`].
    pub fn beta(&mut self, alpha: u32, beta: u32) -> Result<f64, LearnError> {
        check_shape(alpha)?;
        check_shape(beta)?;
        let x = self.gamma(alpha)?;
        let y = self.gamma(beta)?;
        let b = x / (x + y);
        debug_assert!(b > 0.0 && b <= 1.0);
        Ok(b)
    }
}

/// Refuses a shape outside [`SHAPE_MIN`, `SHAPE_MAX`].
///
/// # Errors
/// [`LearnError::ShapeOutOfRange`].
pub const fn check_shape(shape: u32) -> Result<(), LearnError> {
    if shape < SHAPE_MIN || shape > SHAPE_MAX {
        return Err(LearnError::ShapeOutOfRange {
            shape: shape as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prf::{Prf, PrfKey, Purpose};

    #[test]
    fn ln_is_within_a_few_ulps_of_the_platform() {
        let mut s =
            Prf::new(&PrfKey::from_bytes([4; 32]), &[0; 32], &[0; 32]).stream(Purpose::External, 0);
        let specials = [
            1.0,
            2.0,
            0.5,
            core::f64::consts::SQRT_2,
            1e-300,
            5e-324,
            1e300,
        ];
        let randoms: Vec<f64> = (0..20_000)
            .map(|i| {
                let u = s.unit_open_f64();
                if i % 2 == 0 { u } else { u * 1e6 }
            })
            .collect();
        for &x in specials.iter().chain(randoms.iter()) {
            let ours = ln(x);
            let reference = x.ln();
            let tolerance = 4.0 * f64::EPSILON * reference.abs().max(1e-300);
            assert!(
                (ours - reference).abs() <= tolerance.max(4.0 * f64::EPSILON * 1e-16),
                "ln({x:e}) = {ours:e}, platform {reference:e}"
            );
        }
        assert_eq!(ln(1.0), 0.0);
        assert!(ln(-1.0).is_nan());
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert_eq!(ln(f64::INFINITY), f64::INFINITY);
    }

    #[test]
    fn shapes_are_checked() {
        let prf = Prf::new(&PrfKey::from_bytes([4; 32]), &[0; 32], &[0; 32]);
        let mut s = Sampler::new(prf.stream(Purpose::External, 0));
        assert_eq!(s.beta(0, 1), Err(LearnError::ShapeOutOfRange { shape: 0 }));
        assert_eq!(
            s.beta(1, 1_000_001),
            Err(LearnError::ShapeOutOfRange { shape: 1_000_001 })
        );
        let b = s.beta(1_000_000, 1).unwrap();
        assert!(b > 0.99 && b <= 1.0);
    }

    #[test]
    fn gamma_means_are_close() {
        let prf = Prf::new(&PrfKey::from_bytes([5; 32]), &[0; 32], &[0; 32]);
        let mut s = Sampler::new(prf.stream(Purpose::External, 0));
        for shape in [1u32, 3, 100] {
            let n = 20_000;
            let mean: f64 = (0..n).map(|_| s.gamma(shape).unwrap()).sum::<f64>() / f64::from(n);
            // sd of the mean is sqrt(shape / n); allow 6 of them.
            let tol = 6.0 * (f64::from(shape) / f64::from(n)).sqrt();
            assert!(
                (mean - f64::from(shape)).abs() < tol,
                "shape {shape}: mean {mean}"
            );
        }
    }
}
