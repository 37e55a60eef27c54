//! The `calyldg1` layout, byte by byte, and golden vectors.
//!
//! `tests/data/ledger_vectors.txt` pins the digests of a few fixed snapshots
//! (the same digests are checked against `calybris-core` 1.3.0 in the
//! conformance crate). It changes only on purpose:
//! `CALYBRIS_REGENERATE_GOLDEN=1 cargo test -p calybris-finance --test digest`
//! rewrites it; a normal run only reads it.

use calybris_budget::{BudgetEngine, BudgetSnapshot, TenantLedger};
use calybris_finance::{LEDGER_DIGEST_TAG, LedgerDigest, WAL_WATERMARK_LABEL, ledger_digest};
use sha2::{Digest as _, Sha256};

const GOLDEN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ledger_vectors.txt");

fn row(id: &str, initial: i64, remaining: i64, reserved: i64, committed: i64) -> TenantLedger {
    TenantLedger {
        tenant_id: id.to_owned(),
        initial_microcents: initial,
        remaining_microcents: remaining,
        reserved_microcents: reserved,
        committed_microcents: committed,
    }
}

fn digest(snapshot: &BudgetSnapshot, watermark: Option<u64>) -> LedgerDigest {
    ledger_digest(snapshot, watermark).expect("test ids are short")
}

/// The layout written out by hand from the spec, independently of the crate.
fn by_hand(snapshot: &BudgetSnapshot, watermark: Option<u64>) -> [u8; 32] {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"calyldg1\0");
    bytes.extend_from_slice(&snapshot.version.to_le_bytes());
    bytes.extend_from_slice(&(snapshot.tenants.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&snapshot.active_reservations.to_le_bytes());
    let mut rows = snapshot.tenants.clone();
    rows.sort_by(|a, b| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()));
    for r in rows {
        bytes.extend_from_slice(&(r.tenant_id.len() as u32).to_le_bytes());
        bytes.extend_from_slice(r.tenant_id.as_bytes());
        for value in [
            r.initial_microcents,
            r.remaining_microcents,
            r.reserved_microcents,
            r.committed_microcents,
        ] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
    }
    if let Some(w) = watermark {
        bytes.extend_from_slice(b"calybris.ledger.wal-watermark.v1\0");
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    Sha256::digest(&bytes).into()
}

fn vectors() -> Vec<(&'static str, BudgetSnapshot, Option<u64>)> {
    let empty = BudgetSnapshot::default();
    let one = BudgetSnapshot {
        version: 1,
        tenants: vec![row("acme", 100_000_000, 70_000_000, 10_000_000, 20_000_000)],
        active_reservations: 1,
    };
    let many = BudgetSnapshot {
        version: 0x0102_0304_0506_0708,
        tenants: vec![
            row("zeta", 5, 5, 0, 0),
            row("Alpha", i64::MAX, 0, 0, i64::MAX),
            row("été", 3, 1, 1, 1),
            row("a", 0, 0, 0, 0),
        ],
        active_reservations: 2,
    };
    let odd = BudgetSnapshot {
        version: u64::MAX,
        tenants: vec![row("negative", -1, i64::MIN, -5, 7)],
        active_reservations: u64::from(u32::MAX),
    };
    vec![
        ("empty", empty.clone(), None),
        ("empty-watermark-0", empty, Some(0)),
        ("one-tenant", one.clone(), None),
        ("one-tenant-watermark", one, Some(12_345)),
        ("unsorted-edge-values", many.clone(), None),
        ("unsorted-edge-values-watermark-max", many, Some(u64::MAX)),
        ("unbalanced-negative", odd, Some(1)),
    ]
}

#[test]
fn layout_matches_the_spec_written_out_by_hand() {
    assert_eq!(LEDGER_DIGEST_TAG.len(), 9);
    assert_eq!(WAL_WATERMARK_LABEL.len(), 33);
    for (name, snapshot, watermark) in vectors() {
        assert_eq!(
            digest(&snapshot, watermark).0,
            by_hand(&snapshot, watermark),
            "{name}"
        );
    }
}

#[test]
fn golden_vectors_are_stable() {
    let computed: String = vectors()
        .iter()
        .map(|(name, snapshot, watermark)| format!("{name} {}\n", digest(snapshot, *watermark)))
        .collect();
    if std::env::var_os("CALYBRIS_REGENERATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN_PATH, &computed).expect("golden file is writable");
    }
    let pinned = std::fs::read_to_string(GOLDEN_PATH).expect("golden file exists");
    assert_eq!(
        pinned, computed,
        "ledger digests changed; see the module docs"
    );
}

#[test]
fn watermark_is_bound_only_when_present() {
    let snapshot = BudgetSnapshot {
        version: 3,
        tenants: vec![row("a", 10, 10, 0, 0)],
        active_reservations: 0,
    };
    let unbound = digest(&snapshot, None);
    assert_ne!(unbound, digest(&snapshot, Some(0)));
    assert_ne!(digest(&snapshot, Some(1)), digest(&snapshot, Some(2)));
    assert_eq!(unbound, digest(&snapshot, None));
}

#[test]
fn every_field_changes_the_digest() {
    let base = BudgetSnapshot {
        version: 3,
        tenants: vec![row("a", 10, 5, 3, 2), row("b", 1, 1, 0, 0)],
        active_reservations: 1,
    };
    let reference = digest(&base, None);
    let mut variants = Vec::new();
    let mut v = base.clone();
    v.version += 1;
    variants.push(v);
    let mut v = base.clone();
    v.active_reservations += 1;
    variants.push(v);
    for field in 0..5 {
        let mut v = base.clone();
        let r = &mut v.tenants[0];
        match field {
            0 => r.tenant_id.push('x'),
            1 => r.initial_microcents += 1,
            2 => r.remaining_microcents += 1,
            3 => r.reserved_microcents += 1,
            _ => r.committed_microcents += 1,
        }
        variants.push(v);
    }
    let mut v = base.clone();
    v.tenants.pop();
    variants.push(v);
    for variant in variants {
        assert_ne!(digest(&variant, None), reference, "{variant:?}");
    }
}

#[test]
fn engine_snapshot_digest_is_reproducible_from_the_rows() {
    let engine = BudgetEngine::new();
    engine.ensure_tenant("b", 100).expect("valid tenant");
    engine.ensure_tenant("a", 50).expect("valid tenant");
    let _hold = engine.try_reserve("a", 20).expect("covered");
    let snapshot = engine.snapshot();
    assert_eq!(digest(&snapshot, Some(9)).0, by_hand(&snapshot, Some(9)));
    assert_eq!(digest(&snapshot, None).to_hex().len(), 64);
    assert!(
        digest(&snapshot, None)
            .to_hex()
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
}
