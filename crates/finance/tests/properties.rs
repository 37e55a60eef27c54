//! Properties of digests and proofs over arbitrary snapshots.
//!
//! Seeded: set `CALYBRIS_PROPTEST_SEED` (a `u64`) to replay; the seed is
//! printed when a property fails.

use calybris_budget::{BudgetSnapshot, TenantLedger};
use calybris_finance::{Total, ledger_digest, prove_snapshot};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

const DEFAULT_SEED: u64 = 0x00f1_a4ce_0000_0001;
const CASES: u32 = 512;

fn seed() -> u64 {
    std::env::var("CALYBRIS_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

fn runner(seed: u64) -> TestRunner {
    let mut seed_bytes = [0_u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    )
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 0_i64..1_000,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => any::<i64>(),
    ]
}

fn snapshot() -> impl Strategy<Value = BudgetSnapshot> {
    let row = ("[a-zé0-9]{1,6}", amount(), amount(), amount(), amount()).prop_map(
        |(tenant_id, initial, remaining, reserved, committed)| TenantLedger {
            tenant_id,
            initial_microcents: initial,
            remaining_microcents: remaining,
            reserved_microcents: reserved,
            committed_microcents: committed,
        },
    );
    (
        any::<u64>(),
        proptest::collection::vec(row, 0..8),
        any::<u64>(),
    )
        .prop_map(|(version, mut tenants, active_reservations)| {
            tenants.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
            tenants.dedup_by(|a, b| a.tenant_id == b.tenant_id);
            BudgetSnapshot {
                version,
                tenants,
                active_reservations,
            }
        })
}

fn check(snapshot: &BudgetSnapshot, rotate_by: usize) -> Result<(), TestCaseError> {
    let digest =
        ledger_digest(snapshot, Some(5)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut rotated = snapshot.clone();
    if !rotated.tenants.is_empty() {
        let len = rotated.tenants.len();
        rotated.tenants.rotate_left(rotate_by % len);
    }
    let proof =
        prove_snapshot(&rotated, Some(5)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(proof.ledger_digest, digest, "row order changed the digest");
    let exact = |field: fn(&TenantLedger) -> i64| -> i128 {
        snapshot.tenants.iter().map(|t| i128::from(field(t))).sum()
    };
    let totals = [
        (proof.totals.initial, exact(|t| t.initial_microcents)),
        (proof.totals.remaining, exact(|t| t.remaining_microcents)),
        (proof.totals.reserved, exact(|t| t.reserved_microcents)),
        (proof.totals.committed, exact(|t| t.committed_microcents)),
    ];
    for (total, expected) in totals {
        prop_assert_eq!(total.exact_microcents(), expected);
        prop_assert_eq!(
            matches!(total, Total::Exact(_)),
            i64::try_from(expected).is_ok()
        );
    }
    let balanced = snapshot
        .tenants
        .iter()
        .all(|t| t.conservation_delta_microcents() == 0);
    prop_assert_eq!(proof.balanced, balanced);
    prop_assert_eq!(proof.violations().count() == 0, balanced);
    Ok(())
}

#[test]
fn digests_ignore_row_order_and_totals_are_exact() {
    let seed = seed();
    let strategy = (snapshot(), any::<usize>());
    if let Err(failure) = runner(seed).run(&strategy, |(s, r)| check(&s, r)) {
        panic!("seed {seed} (rerun with CALYBRIS_PROPTEST_SEED={seed}): {failure}");
    }
}
