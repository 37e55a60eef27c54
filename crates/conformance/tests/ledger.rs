//! Our `calyldg1` ledger digest and budget books against the published
//! `calybris-core` 1.3.0.
//!
//! - Digests of many random snapshots (edge values, unicode ids, shuffled
//!   rows), with and without a WAL high watermark, equal the oracle's.
//! - The same random reserve/commit/release/top-up sequence run on both
//!   engines leaves the same books, and our snapshot of them digests as the
//!   oracle's digest of the same rows.
//!
//! Seeded: set `CALYBRIS_SEED` (decimal or 0x-hex) to replay a failure; the
//! seed is printed in every failure message.

use calybris_budget::{BudgetEngine, BudgetSnapshot, TenantLedger};
use calybris_core::budget as core_b;
use calybris_core::finance as core_f;
use calybris_finance::{LedgerDigest, ledger_digest};
use calybris_testkit::SplitMix64;

const DEFAULT_SEED: u64 = 0x1ed9_e7c0_47a3_5b21;
const SNAPSHOT_CASES: u64 = 5_000;
const ENGINE_CASES: u64 = 200;
const OPS_PER_ENGINE_CASE: u64 = 60;

fn seed() -> u64 {
    calybris_testkit::seed_from_env(DEFAULT_SEED)
}

/// The workspace's SplitMix64 (from `calybris-testkit`), with the draws of this test.
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0.below(bound)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    fn i64_edgy(&mut self) -> i64 {
        match self.below(8) {
            0 => 0,
            1 => i64::MAX,
            2 => i64::MIN,
            3 => -1,
            4 => self.below(1_000) as i64,
            _ => self.0.next_u64() as i64,
        }
    }

    fn u64_edgy(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => u64::MAX,
            2 => self.below(100),
            _ => self.0.next_u64(),
        }
    }

    fn tenant_id(&mut self) -> String {
        const ALPHABET: [&str; 12] = ["a", "b", "z", "A", "0", "-", "_", ".", "é", "日", "ß", "🦀"];
        let max_len = if self.chance(10) { 200 } else { 12 };
        let len = 1 + self.below(max_len);
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            .collect()
    }
}

fn random_snapshot(rng: &mut Rng) -> BudgetSnapshot {
    let tenant_count = if rng.chance(10) { 0 } else { rng.below(12) };
    let mut tenants: Vec<TenantLedger> = Vec::new();
    while (tenants.len() as u64) < tenant_count {
        let tenant_id = rng.tenant_id();
        if tenants.iter().any(|t| t.tenant_id == tenant_id) {
            continue;
        }
        tenants.push(TenantLedger {
            tenant_id,
            initial_microcents: rng.i64_edgy(),
            remaining_microcents: rng.i64_edgy(),
            reserved_microcents: rng.i64_edgy(),
            committed_microcents: rng.i64_edgy(),
        });
    }
    BudgetSnapshot {
        version: rng.u64_edgy(),
        tenants,
        active_reservations: rng.below(1 << 20),
    }
}

fn to_core_snapshot(snapshot: &BudgetSnapshot, watermark: Option<u64>) -> core_b::BudgetSnapshot {
    core_b::BudgetSnapshot {
        version: snapshot.version,
        tenants: snapshot
            .tenants
            .iter()
            .map(|t| core_b::TenantLedger {
                tenant_id: t.tenant_id.clone(),
                initial_microcents: t.initial_microcents,
                remaining_microcents: t.remaining_microcents,
                reserved_microcents: t.reserved_microcents,
                committed_microcents: t.committed_microcents,
            })
            .collect(),
        active_reservations: usize::try_from(snapshot.active_reservations)
            .expect("test snapshots keep active_reservations below 2^20"),
        wal_high_watermark: watermark,
    }
}

fn sorted(snapshot: &BudgetSnapshot) -> BudgetSnapshot {
    let mut sorted = snapshot.clone();
    sorted
        .tenants
        .sort_by(|a, b| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()));
    sorted
}

fn ours(snapshot: &BudgetSnapshot, watermark: Option<u64>, seed: u64) -> LedgerDigest {
    ledger_digest(snapshot, watermark)
        .unwrap_or_else(|e| panic!("seed {seed:#x}: digest refused {snapshot:?}: {e}"))
}

#[test]
fn ledger_digests_match_the_oracle_with_and_without_watermark() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut bound = 0_u64;
    for case in 0..SNAPSHOT_CASES {
        let snapshot = random_snapshot(&mut rng);
        let watermark = (!rng.chance(2)).then(|| rng.u64_edgy());
        bound += u64::from(watermark.is_some());
        // The oracle is given rows in ascending id order, the order the
        // layout hashes them in; ours must get the same digest from any order.
        let expected = core_f::ledger_digest(&to_core_snapshot(&sorted(&snapshot), watermark));
        let got = ours(&snapshot, watermark, seed);
        assert_eq!(
            got.0, expected,
            "seed {seed:#x}, case {case}: digest differs\nsnapshot {snapshot:?}\nwatermark {watermark:?}"
        );
        if watermark.is_some() {
            assert_ne!(
                got,
                ours(&snapshot, None, seed),
                "seed {seed:#x}, case {case}: the watermark did not change the digest"
            );
        }
    }
    assert!(
        bound > SNAPSHOT_CASES / 4 && bound < SNAPSHOT_CASES * 3 / 4,
        "seed {seed:#x}: watermark coverage {bound}"
    );
}

#[test]
fn ledger_digest_of_rows_in_any_order_matches_the_oracle_given_sorted_rows() {
    let seed = seed() ^ 0x5a5a;
    let mut rng = Rng::new(seed);
    for case in 0..500 {
        let mut snapshot = random_snapshot(&mut rng);
        snapshot.tenants.reverse();
        let expected = core_f::ledger_digest(&to_core_snapshot(&sorted(&snapshot), Some(7)));
        assert_eq!(
            ours(&snapshot, Some(7), seed).0,
            expected,
            "seed {seed:#x}, case {case}"
        );
    }
}

/// One step applied to both engines.
fn step(
    rng: &mut Rng,
    ours: &BudgetEngine,
    theirs: &core_b::BudgetEngine,
    open: &mut Vec<(calybris_budget::Reservation, u64)>,
    tenants: &[String],
) -> Result<(), String> {
    let tenant = &tenants[rng.below(tenants.len() as u64) as usize];
    let amount = 1 + rng.below(400) as i64;
    match rng.below(6) {
        0 => {
            let our = ours.top_up(tenant, amount).is_ok();
            let their = matches!(
                theirs.top_up_tenant(tenant, amount),
                core_b::TopUpResult::ToppedUp { .. }
            );
            if our != their {
                return Err(format!(
                    "top-up {tenant} {amount}: ours {our}, theirs {their}"
                ));
            }
        }
        1 | 2 => {
            let our = ours.try_reserve(tenant, amount);
            let (their, their_id) = theirs.try_reserve(tenant, amount);
            let their_ok = matches!(their, core_b::BudgetReservation::Reserved { .. });
            if our.is_ok() != their_ok {
                return Err(format!(
                    "reserve {tenant} {amount}: ours {our:?}, theirs {their:?}"
                ));
            }
            if let (Ok(hold), Some(id)) = (our, their_id) {
                open.push((hold, id));
            }
        }
        3 | 4 if !open.is_empty() => {
            let (hold, id) = open.swap_remove(rng.below(open.len() as u64) as usize);
            let actual = rng.below(hold.held_microcents() as u64 + 1) as i64;
            let our = hold.commit(actual).is_ok();
            let their = matches!(
                theirs.commit(id, actual),
                core_b::BudgetSettlement::Committed { .. }
            );
            if our != their {
                return Err(format!("commit {actual}: ours {our}, theirs {their}"));
            }
        }
        _ if !open.is_empty() => {
            let (hold, id) = open.swap_remove(rng.below(open.len() as u64) as usize);
            hold.release();
            let their = theirs.release(id);
            if !matches!(their, core_b::BudgetSettlement::Released { .. }) {
                return Err(format!("release: theirs {their:?}"));
            }
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn same_operations_give_the_same_books_and_digest_as_the_oracle() {
    let seed = seed() ^ 0xe9_91e5;
    let mut rng = Rng::new(seed);
    for case in 0..ENGINE_CASES {
        let ours_engine = BudgetEngine::new();
        let theirs = core_b::BudgetEngine::new();
        let tenants: Vec<String> = (0..1 + rng.below(4)).map(|i| format!("t{i}")).collect();
        for tenant in &tenants {
            let initial = rng.below(2_000) as i64;
            ours_engine
                .ensure_tenant(tenant, initial)
                .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
            theirs.ensure_tenant(tenant, initial);
        }
        let mut open = Vec::new();
        for op in 0..OPS_PER_ENGINE_CASE {
            if let Err(why) = step(&mut rng, &ours_engine, &theirs, &mut open, &tenants) {
                panic!("seed {seed:#x}, case {case}, op {op}: {why}");
            }
        }
        let our_snapshot = ours_engine.snapshot();
        let their_snapshot = theirs.snapshot();
        let their_rows: Vec<TenantLedger> = their_snapshot
            .tenants
            .iter()
            .map(|t| TenantLedger {
                tenant_id: t.tenant_id.clone(),
                initial_microcents: t.initial_microcents,
                remaining_microcents: t.remaining_microcents,
                reserved_microcents: t.reserved_microcents,
                committed_microcents: t.committed_microcents,
            })
            .collect();
        assert_eq!(
            our_snapshot.tenants,
            sorted(&BudgetSnapshot {
                tenants: their_rows,
                ..BudgetSnapshot::default()
            })
            .tenants,
            "seed {seed:#x}, case {case}: books differ"
        );
        assert_eq!(
            our_snapshot.active_reservations, their_snapshot.active_reservations as u64,
            "seed {seed:#x}, case {case}"
        );
        // Same rows and counts under the oracle's version and watermark fields.
        let mut aligned = our_snapshot.clone();
        aligned.version = their_snapshot.version;
        assert_eq!(
            ours(&aligned, their_snapshot.wal_high_watermark, seed).0,
            core_f::ledger_digest(&their_snapshot),
            "seed {seed:#x}, case {case}: digest of the same books differs"
        );
        drop(open);
    }
}

#[test]
fn pinned_golden_vectors_of_calybris_finance_match_the_oracle() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../finance/tests/data/ledger_vectors.txt"
    );
    let pinned = std::fs::read_to_string(path).expect("the finance golden file exists");
    let hex_of = |name: &str| -> String {
        pinned
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("vector {name} is pinned"))
    };
    let hex = |bytes: [u8; 32]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let one = BudgetSnapshot {
        version: 1,
        tenants: vec![TenantLedger {
            tenant_id: "acme".into(),
            initial_microcents: 100_000_000,
            remaining_microcents: 70_000_000,
            reserved_microcents: 10_000_000,
            committed_microcents: 20_000_000,
        }],
        active_reservations: 1,
    };
    assert_eq!(
        hex(core_f::ledger_digest(&to_core_snapshot(&one, None))),
        hex_of("one-tenant")
    );
    assert_eq!(
        hex(core_f::ledger_digest(&to_core_snapshot(&one, Some(12_345)))),
        hex_of("one-tenant-watermark")
    );
    assert_eq!(
        hex(core_f::ledger_digest(&to_core_snapshot(
            &BudgetSnapshot::default(),
            None
        ))),
        hex_of("empty")
    );
}
