//! The keyed Beta sampler against the exact Beta CDF (Kolmogorov–Smirnov), its
//! replay bit for bit, and the golden first draws.
//!
//! The keys are fixed, so every run tests the same draws; the KS figures are printed
//! (`cargo test -p calybris-adapt --test beta_ks -- --nocapture`).

mod common;

use calybris_adapt::beta::Sampler;
use calybris_adapt::prf::{Prf, PrfKey, Purpose};

/// Draws per KS test (debug builds included: all seven take about 5 s there).
const KS_DRAWS: usize = 100_000;

/// The shapes tested: small, skewed, an OBD prior, symmetric, the extremes.
const KS_SHAPES: [(u32, u32); 7] = [
    (1, 1),
    (2, 5),
    (47, 12_198),
    (500, 500),
    (1, 1_000_000),
    (1_000_000, 3),
    (1_000_000, 1_000_000),
];

/// The significance level below which a KS test fails.
const KS_ALPHA: f64 = 0.01;

fn sampler(key_byte: u8, index: u64) -> Sampler {
    let prf = Prf::new(
        &PrfKey::from_bytes([key_byte; 32]),
        &[0x5a; 32],
        &[key_byte; 32],
    );
    Sampler::new(prf.stream(Purpose::External, index))
}

fn draws(key_byte: u8, alpha: u32, beta: u32, n: usize) -> Vec<f64> {
    let mut s = sampler(key_byte, u64::from(alpha) << 32 | u64::from(beta));
    (0..n)
        .map(|_| s.beta(alpha, beta).expect("valid shapes"))
        .collect()
}

#[test]
fn reference_cdf_is_right_on_closed_forms() {
    // I_x(1, 1) = x, I_x(2, 1) = x², I_x(1, b) = 1 − (1 − x)^b.
    for x in [0.01, 0.3, 0.5, 0.77, 0.999] {
        let i11 = common::beta_cdf(1.0, 1.0, x);
        assert!((i11 - x).abs() < 1e-13, "I_{x}(1, 1) = {i11}");
        assert!((common::beta_cdf(2.0, 1.0, x) - x * x).abs() < 1e-13);
        let b = 7.0;
        assert!((common::beta_cdf(1.0, b, x) - (1.0 - (1.0 - x).powf(b))).abs() < 1e-12);
    }
    // Symmetric shapes: the CDF at 1/2 is 1/2.
    let half = common::beta_cdf(1e6, 1e6, 0.5);
    assert!((half - 0.5).abs() < 1e-7, "I_0.5(1e6, 1e6) = {half}");
    // The KS p-value of a tiny statistic is 1 and of a large one is tiny.
    assert_eq!(common::ks_p_value(0.0001, 100_000), 1.0);
    assert!(common::ks_p_value(0.02, 100_000) < 1e-10);
}

#[test]
fn draws_follow_the_beta_cdf() {
    let mut failures = Vec::new();
    for (i, &(alpha, beta)) in KS_SHAPES.iter().enumerate() {
        let key_byte = u8::try_from(i + 1).expect("few shapes");
        let mut sample = draws(key_byte, alpha, beta, KS_DRAWS);
        let (a, b) = (f64::from(alpha), f64::from(beta));
        let d = common::ks_statistic(&mut sample, |x| common::beta_cdf(a, b, x));
        let p = common::ks_p_value(d, KS_DRAWS);
        println!(
            "Beta({alpha}, {beta}), key byte {key_byte}, n = {KS_DRAWS}: D = {d:.6}, p = {p:.4}"
        );
        if p <= KS_ALPHA {
            failures.push((alpha, beta, key_byte, d, p));
        }
    }
    assert!(
        failures.is_empty(),
        "KS rejects (alpha, beta, key byte, D, p): {failures:?}"
    );
}

#[test]
fn same_key_same_bits_other_key_other_draws() {
    for &(alpha, beta) in &KS_SHAPES {
        let a = draws(9, alpha, beta, 200);
        let b = draws(9, alpha, beta, 200);
        let a_bits: Vec<u64> = a.iter().map(|x| x.to_bits()).collect();
        let b_bits: Vec<u64> = b.iter().map(|x| x.to_bits()).collect();
        assert_eq!(a_bits, b_bits, "Beta({alpha}, {beta}) does not replay");
        let c = draws(10, alpha, beta, 200);
        let same = a
            .iter()
            .zip(&c)
            .filter(|(x, y)| x.to_bits() == y.to_bits())
            .count();
        assert!(
            same < 5,
            "Beta({alpha}, {beta}): another key repeats {same} of 200 draws"
        );
    }
}

/// The golden file: `alpha beta key_byte draw bits_hex value` per line.
const GOLDEN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/beta_golden.txt");

/// Draws pinned per (shape, key).
const GOLDEN_DRAWS: usize = 8;

fn golden_text() -> String {
    let mut out = String::from(
        "# First keyed Beta draws (docs/ADAPT.md). Regenerate only with\n\
         # CALYBRIS_REGENERATE_GOLDEN=1 cargo test -p calybris-adapt --test beta_ks\n\
         # alpha beta key_byte draw bits_hex value\n",
    );
    for &(alpha, beta) in &KS_SHAPES {
        for key_byte in [1u8, 2, 0xff] {
            for (j, x) in draws(key_byte, alpha, beta, GOLDEN_DRAWS)
                .iter()
                .enumerate()
            {
                out.push_str(&format!(
                    "{alpha} {beta} {key_byte} {j} {:016x} {x:e}\n",
                    x.to_bits()
                ));
            }
        }
    }
    out
}

#[test]
fn first_draws_match_the_golden_file() {
    let text = golden_text();
    if std::env::var_os("CALYBRIS_REGENERATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN_PATH, &text).expect("write the golden file");
        return;
    }
    let golden = std::fs::read_to_string(GOLDEN_PATH).unwrap_or_else(|e| {
        panic!("{GOLDEN_PATH}: {e} (regenerate with CALYBRIS_REGENERATE_GOLDEN=1)")
    });
    for (i, (want, got)) in golden.lines().zip(text.lines()).enumerate() {
        assert_eq!(want, got, "{GOLDEN_PATH}, line {}", i + 1);
    }
    assert_eq!(
        golden.lines().count(),
        text.lines().count(),
        "{GOLDEN_PATH}: line count"
    );
}
