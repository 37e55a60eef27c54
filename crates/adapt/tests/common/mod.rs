//! Reference statistics for the learning tests, in plain f64 (test-only: the library
//! never uses these functions).

#![allow(dead_code)]

/// `ln Γ(z)` for `z > 0`: shift up to `z ≥ 30` by the recurrence, then Stirling's
/// series to the `z^-7` term (the next term is below 1e-16 there).
pub fn ln_gamma(z: f64) -> f64 {
    let mut shift = 0.0;
    let mut z = z;
    while z < 30.0 {
        shift -= z.ln();
        z += 1.0;
    }
    let z2 = z * z;
    let series = 1.0 / (12.0 * z) - 1.0 / (360.0 * z * z2) + 1.0 / (1260.0 * z * z2 * z2)
        - 1.0 / (1680.0 * z * z2 * z2 * z2);
    shift + (z - 0.5) * z.ln() - z + 0.5 * (2.0 * std::f64::consts::PI).ln() + series
}

/// The continued fraction of the incomplete beta function (modified Lentz, as in
/// Numerical Recipes' `betacf`).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const ITERATIONS_MAX: u32 = 1_000_000;
    const EPS: f64 = 1e-15;
    const TINY: f64 = 1e-300;
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=ITERATIONS_MAX {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        // One Lentz step for the coefficient `aa`: updates `c` and `d` (each kept
        // off zero), returns the factor `d·c` of the convergent.
        let mut step = |aa: f64| {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            d * c
        };
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)));
        let del = step(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)));
        h *= del;
        if (del - 1.0).abs() < EPS {
            return h;
        }
    }
    panic!("beta_cf did not converge for a={a}, b={b}, x={x}");
}

/// The regularised incomplete beta function `I_x(a, b)`, the Beta(a, b) CDF.
pub fn beta_cdf(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// The one-sample Kolmogorov–Smirnov statistic of `samples` against `cdf`.
pub fn ks_statistic(samples: &mut [f64], cdf: impl Fn(f64) -> f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    let mut d: f64 = 0.0;
    for (i, &x) in samples.iter().enumerate() {
        let f = cdf(x);
        let i = i as f64;
        d = d.max((i + 1.0) / n - f).max(f - i / n);
    }
    d
}

/// The asymptotic p-value `Q_KS(λ)`, `λ = (√n + 0.12 + 0.11/√n)·D` (Stephens'
/// correction), `Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}`.
pub fn ks_p_value(d: f64, n: usize) -> f64 {
    let sqrt_n = (n as f64).sqrt();
    let lambda = (sqrt_n + 0.12 + 0.11 / sqrt_n) * d;
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100 {
        let k = f64::from(k);
        sum += sign * (-2.0 * k * k * lambda * lambda).exp();
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}
