//! The keyed bootstrap against golden vectors computed independently (Python's
//! hashlib and IEEE-754 doubles, `tests/data/bootstrap_golden.py`) from the
//! definitions in `docs/SPECIFICATION.md` ("Off-policy estimators"): index streams, and whole bootstraps bit for bit.

use calybris_adapt::ope::{
    BootstrapKey, Estimator, EstimatorConfig, IndexStream, LoggedRound, Probability, bootstrap,
};

/// The golden file, read by [`golden_lines`] only.
const GOLDEN: &str = include_str!("data/bootstrap_golden.txt");

/// The file's non-comment lines split into words.
fn golden_lines() -> impl Iterator<Item = Vec<&'static str>> {
    GOLDEN
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
}

fn key() -> BootstrapKey {
    let hex = golden_lines().find(|w| w[0] == "key").expect("a key line")[1];
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex key");
    }
    BootstrapKey::from_bytes(bytes)
}

fn rows() -> Vec<LoggedRound> {
    golden_lines()
        .filter(|w| w[0] == "row")
        .map(|w| {
            let f: Vec<f64> = w[1..].iter().map(|x| x.parse().expect("float")).collect();
            LoggedRound::new(
                f[0],
                Probability::float(f[1]),
                Probability::float(f[2]),
                f[3],
                f[4],
            )
        })
        .collect()
}

#[test]
fn index_streams_match_the_reference() {
    let key = key();
    let mut checked = 0;
    for w in golden_lines().filter(|w| w[0] == "stream") {
        let replicate: u64 = w[1].parse().expect("replicate");
        let n: u64 = w[2].parse().expect("n");
        let want: Vec<u64> = w[3..].iter().map(|x| x.parse().expect("index")).collect();
        let got: Vec<u64> = IndexStream::new(&key, replicate, n)
            .take(want.len())
            .collect();
        assert_eq!(got, want, "replicate {replicate}, n {n}");
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn bootstraps_match_the_reference_bit_for_bit() {
    let key = key();
    let rows = rows();
    assert_eq!(rows.len(), 12);
    let config = EstimatorConfig::uncapped();
    let mut checked = 0;
    for w in golden_lines().filter(|w| w[0] == "bootstrap") {
        let estimator = match w[1] {
            "ips" => Estimator::Ips,
            "dr" => Estimator::Dr,
            "sndr" => Estimator::SnDr,
            other => panic!("unknown estimator {other}"),
        };
        let replicates: u32 = w[2].parse().expect("replicates");
        let bits = |s: &str| u64::from_str_radix(s, 16).expect("hex bits");
        let b = bootstrap(&rows, estimator, &config, &key, replicates).expect("bootstrap");
        assert_eq!(b.replicates.len(), replicates as usize);
        assert_eq!(b.interval.lower.to_bits(), bits(w[3]), "{} lower", w[1]);
        assert_eq!(b.interval.upper.to_bits(), bits(w[4]), "{} upper", w[1]);
        checked += 1;
    }
    assert_eq!(checked, 3);
}
