//! Thompson selection on the 80 production Beta priors of the Open Bandit Dataset:
//! the share of keyed draws each item wins matches the exact probability that its
//! Beta draw is the highest of the 80 (`p_top_exact`).
//!
//! Data: `../shared/data/obd/prior_bts.csv` beside the repository (obp 0.4.1,
//! Apache-2.0; Saito et al., "Open Bandit Dataset and Pipeline", NeurIPS 2021 Datasets
//! and Benchmarks, arXiv:2008.07146). Without it the test fails and names the path.

use calybris_adapt::prf::{Prf, PrfKey, StateStreams};
use calybris_adapt::thompson::{Posterior, ThompsonTable, thompson_wins};

/// The priors file, from this crate's manifest directory.
const PRIORS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/obd/prior_bts.csv"
);

/// The number of items in the file.
const ITEMS: usize = 80;

/// Keyed draws in release builds, and the tolerance the brief sets for them.
const DRAWS_RELEASE: u32 = 100_000;
const TOLERANCE_RELEASE: f64 = 0.005;

/// Debug builds (a 60 s budget for the crate) run the first 20,000 of the same draws
/// with the tolerance widened by √(100,000 / 20,000) = √5, the same margin in
/// standard deviations; the release run checks the full figure.
const DRAWS: u32 = if cfg!(debug_assertions) {
    20_000
} else {
    DRAWS_RELEASE
};
const TOLERANCE: f64 = if cfg!(debug_assertions) {
    TOLERANCE_RELEASE * 2.236_067_977_499_79
} else {
    TOLERANCE_RELEASE
};

struct Item {
    alpha: u32,
    beta: u32,
    p_top_exact: f64,
}

fn read_items() -> Vec<Item> {
    let text = std::fs::read_to_string(PRIORS_PATH).unwrap_or_else(|e| {
        panic!("{PRIORS_PATH}: {e}. The OBD fixtures must be in ../shared/data/obd beside the repository")
    });
    let mut lines = text.lines();
    let header = lines.next().expect("a header line");
    assert!(
        header.starts_with("item,alpha,beta,p_top_exact"),
        "{PRIORS_PATH}: unexpected header {header}"
    );
    let items: Vec<Item> = lines
        .enumerate()
        .map(|(i, line)| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(
                fields[0].parse::<usize>().ok(),
                Some(i),
                "{PRIORS_PATH}: row {i}"
            );
            Item {
                alpha: fields[1].parse().expect("alpha"),
                beta: fields[2].parse().expect("beta"),
                p_top_exact: fields[3].parse().expect("p_top_exact"),
            }
        })
        .collect();
    assert_eq!(items.len(), ITEMS, "{PRIORS_PATH}: item count");
    let total: f64 = items.iter().map(|it| it.p_top_exact).sum();
    assert!((total - 1.0).abs() < 1e-6, "p_top_exact sums to {total}");
    items
}

#[test]
fn win_shares_match_the_exact_top_probabilities() {
    let items = read_items();
    let posteriors: Vec<Posterior> = items
        .iter()
        .map(|it| Posterior::new(it.alpha, it.beta).expect("OBD shapes are in range"))
        .collect();
    let key = PrfKey::from_bytes(*b"calybris/tests/thompson-obd/v1.0");
    let prf = Prf::new(&key, &[0; 32], &[0; 32]);
    let wins = thompson_wins(&prf, &posteriors, DRAWS).expect("valid arms");
    check_shares("fresh draws", &items, &wins);
}

/// The engine's Thompson table (`docs/ADAPT.md` section 3): its rows are independent
/// Thompson draws keyed by the state, so the share of rows each item wins (its
/// propensity) matches `p_top_exact` within the same tolerance.
#[test]
fn the_tables_win_shares_match_the_exact_top_probabilities() {
    let items = read_items();
    let posteriors: Vec<Posterior> = items
        .iter()
        .map(|it| Posterior::new(it.alpha, it.beta).expect("OBD shapes are in range"))
        .collect();
    let key = PrfKey::from_bytes(*b"calybris/tests/thompson-obd/v1.0");
    let table = ThompsonTable::new(&StateStreams::new(&key), 1, &posteriors, DRAWS as usize)
        .expect("a table within bounds");
    let wins: Vec<u64> = (0..ITEMS)
        .map(|a| table.wins(0, u32::try_from(a).expect("80 items")))
        .collect();
    assert_eq!(wins.iter().sum::<u64>(), u64::from(DRAWS));
    check_shares("table rows", &items, &wins);
}

fn check_shares(what: &str, items: &[Item], wins: &[u64]) {
    let mut worst = (0usize, 0.0f64);
    for (i, (item, &w)) in items.iter().zip(wins).enumerate() {
        let share = w as f64 / f64::from(DRAWS);
        let err = (share - item.p_top_exact).abs();
        if err > worst.1 {
            worst = (i, err);
        }
    }
    println!(
        "{what}: {DRAWS} draws: largest |share - p_top_exact| = {:.5} (item {}, exact {:.5}, share {:.5}); tolerance {TOLERANCE:.5}",
        worst.1,
        worst.0,
        items[worst.0].p_top_exact,
        wins[worst.0] as f64 / f64::from(DRAWS)
    );
    for (i, (item, &w)) in items.iter().zip(wins).enumerate() {
        let share = w as f64 / f64::from(DRAWS);
        assert!(
            (share - item.p_top_exact).abs() <= TOLERANCE,
            "{what}: item {i}: share {share} of {DRAWS} draws, exact {}",
            item.p_top_exact
        );
    }
}
