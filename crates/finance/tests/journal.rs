//! The durable ledger: round trips, the open-reservation rule, group commit,
//! and a crash test that SIGKILLs a writer process at seeded random moments.
//!
//! The crash test re-executes this test binary as the child (the environment
//! variable `CALYBRIS_LEDGER_CRASH_CHILD` selects the role). The child runs a
//! seeded operation script on a durable ledger and reports each operation on
//! stdout as `applied <records> <digest>` (after applying, before waiting for
//! durability) and `ack <records>` (once acknowledged). The parent kills it
//! after a random number of acknowledgements, recovers the journal, and checks
//! that every acknowledged operation survived, that the recovered digest is
//! the one the child reported for that log prefix, and that the books balance.
//! Set `CALYBRIS_CRASH_SEED` to replay a run; the seed is printed on failure.

use calybris_finance::{DurableLedger, LedgerRecovery};
use calybris_wal::DurableConfig;
use calybris_workload::SplitMix64;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "CALYBRIS_LEDGER_CRASH_CHILD";
const KILLS: u64 = 24;
const DEFAULT_SEED: u64 = 0x0c4a_5e1e_d9e7_0001;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A fresh directory under the target's temp area, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "calybris-finance-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir can be created");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config() -> DurableConfig {
    DurableConfig {
        window: Duration::from_micros(50),
        ..DurableConfig::default()
    }
}

fn open(path: &Path) -> Result<(DurableLedger, LedgerRecovery), calybris_finance::LedgerError> {
    DurableLedger::open(path, config())
}

#[test]
fn reopening_replays_to_the_same_digest_and_books() -> TestResult {
    let dir = TempDir::new("roundtrip");
    let (ledger, first) = open(dir.path())?;
    assert_eq!(first.records_replayed, 0);
    ledger.ensure_tenant("a", 1_000)?;
    ledger.ensure_tenant("b", 500)?;
    ledger.top_up("a", 250)?;
    ledger.try_reserve("a", 300)?.commit(120)?;
    ledger.try_reserve("b", 200)?.commit_with_overrun(260)?;
    ledger.try_reserve("b", 10)?.release()?;
    drop(ledger.try_reserve("a", 5)?);
    let digest = ledger.digest()?;
    let proof = ledger.prove_conservation()?;
    assert!(proof.balanced);
    assert_eq!(proof.ledger_digest, digest);
    assert_eq!(proof.wal_high_watermark, Some(11));
    let books = ledger.snapshot().tenants;
    ledger.close()?;

    let (reopened, recovery) = open(dir.path())?;
    assert_eq!(recovery.records_replayed, 11);
    assert_eq!(recovery.digest_at_recovery, digest);
    assert!(recovery.released_reservations.is_empty());
    assert_eq!(reopened.digest()?, digest);
    assert_eq!(reopened.snapshot().tenants, books);
    reopened.verify_conservation()?;
    Ok(())
}

#[test]
fn reservations_open_at_the_crash_are_released_and_journaled() -> TestResult {
    let dir = TempDir::new("orphans");
    let (ledger, _) = open(dir.path())?;
    ledger.ensure_tenant("a", 100)?;
    let kept = ledger.try_reserve("a", 30)?;
    let orphan_id = kept.journal_id();
    // Simulate the handle dying with the process: the log keeps `Reserved`
    // with no settlement.
    std::mem::forget(kept);
    let digest_with_hold = ledger.digest()?;
    ledger.close()?;

    let (reopened, recovery) = open(dir.path())?;
    assert_eq!(recovery.digest_at_recovery, digest_with_hold);
    assert_eq!(recovery.released_reservations, vec![orphan_id]);
    let row = reopened.ledger("a")?;
    assert_eq!(
        (
            row.remaining_microcents,
            row.reserved_microcents,
            row.committed_microcents
        ),
        (100, 0, 0)
    );
    let after_release = reopened.digest()?;
    reopened.close()?;

    // The release was journaled: a second reopen finds nothing to release.
    let (again, recovery) = open(dir.path())?;
    assert!(recovery.released_reservations.is_empty());
    assert_eq!(recovery.digest_at_recovery, after_release);
    again.try_reserve("a", 100)?.commit(100)?;
    Ok(())
}

#[test]
fn refusals_are_not_journaled() -> TestResult {
    let dir = TempDir::new("refusals");
    let (ledger, _) = open(dir.path())?;
    ledger.ensure_tenant("a", 10)?;
    assert!(ledger.try_reserve("a", 11).is_err());
    assert!(ledger.top_up("ghost", 1).is_err());
    assert!(ledger.try_reserve("a", 0).is_err());
    ledger.set_limits(
        "a",
        calybris_budget::TenantLimits {
            max_reserved_microcents: Some(5),
            max_active_reservations: None,
        },
    )?;
    let hold = ledger.try_reserve("a", 5)?;
    assert!(ledger.try_reserve("a", 1).is_err(), "over the reserved cap");
    assert!(hold.commit(6).is_err(), "plain commit above the hold");
    let digest = ledger.digest()?;
    ledger.close()?;
    let (_, recovery) = open(dir.path())?;
    // Created, reserved, and the release journaled by the refused commit's drop.
    assert_eq!(recovery.records_replayed, 3);
    assert_eq!(recovery.digest_at_recovery, digest);
    Ok(())
}

#[test]
fn concurrent_durable_operations_share_syncs_and_replay_exactly() -> TestResult {
    const THREADS: usize = 8;
    const OPS: i64 = 40;
    let dir = TempDir::new("group");
    let (ledger, _) = open(dir.path())?;
    for t in 0..THREADS {
        ledger.ensure_tenant(&format!("t{}", t % 3), 1_000_000)?;
    }
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let ledger = &ledger;
            scope.spawn(move || {
                let tenant = format!("t{}", t % 3);
                for k in 1..=OPS {
                    let hold = ledger.try_reserve(&tenant, k).expect("budget is ample");
                    if k % 3 == 0 {
                        hold.release().expect("release is journaled");
                    } else {
                        hold.commit(k / 2).expect("commit is journaled");
                    }
                }
            });
        }
    });
    let digest = ledger.digest()?;
    let committed: i64 = ledger
        .snapshot()
        .tenants
        .iter()
        .map(|t| t.committed_microcents)
        .sum();
    let expected: i64 =
        (1..=OPS).filter(|k| k % 3 != 0).map(|k| k / 2).sum::<i64>() * THREADS as i64;
    assert_eq!(committed, expected);
    ledger.close()?;
    let (reopened, recovery) = open(dir.path())?;
    assert_eq!(recovery.digest_at_recovery, digest);
    assert_eq!(
        recovery.records_replayed,
        3 + (THREADS as u64) * (OPS as u64) * 2
    );
    reopened.verify_conservation()?;
    Ok(())
}

// ---- crash test ----------------------------------------------------------

/// The child: a seeded script of durable operations, reported on stdout.
fn child(path: &Path, seed: u64) -> TestResult {
    use std::io::Write as _;
    let (ledger, _) = open(path)?;
    let out = std::io::stdout();
    let report = |line: String| -> std::io::Result<()> {
        let mut out = out.lock();
        writeln!(out, "{line}")?;
        out.flush()
    };
    let mut rng = SplitMix64::new(seed);
    for tenant in ["a", "b", "c"] {
        ledger.ensure_tenant(tenant, 1_000_000)?;
    }
    loop {
        let tenant = ["a", "b", "c"][(rng.next_u64() % 3) as usize];
        let amount = (rng.next_u64() % 1_000 + 1) as i64;
        let hold = ledger.try_reserve(tenant, amount)?;
        // The state after the reserve, then its acknowledgement (try_reserve
        // only returns once durable).
        let (_, records) = ledger.snapshot_with_watermark();
        report(format!("applied {records} {}", ledger.digest()?))?;
        report(format!("ack {records}"))?;
        let settled = match rng.next_u64() % 3 {
            0 => hold.release(),
            _ => hold.commit(amount / 2),
        };
        settled?;
        let (_, records) = ledger.snapshot_with_watermark();
        report(format!("applied {records} {}", ledger.digest()?))?;
        report(format!("ack {records}"))?;
        if rng.next_u64().is_multiple_of(7) {
            ledger.top_up(tenant, amount)?;
            let (_, records) = ledger.snapshot_with_watermark();
            report(format!("applied {records} {}", ledger.digest()?))?;
            report(format!("ack {records}"))?;
        }
    }
}

fn crash_seed() -> u64 {
    std::env::var("CALYBRIS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

#[test]
fn sigkilled_writer_loses_no_acknowledged_operation() -> TestResult {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let seed = std::env::var("CALYBRIS_CHILD_SEED")?.parse()?;
        return child(Path::new(&path), seed);
    }
    let seed = crash_seed();
    let dir = TempDir::new("crash");
    let mut rng = SplitMix64::new(seed);
    let mut digests: HashMap<u64, String> = HashMap::new();
    let mut compared = 0_u64;
    let mut acked_total = 0_u64;
    for kill in 0..KILLS {
        let wanted_acks = 1 + rng.next_u64() % 40;
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "sigkilled_writer_loses_no_acknowledged_operation",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("CALYBRIS_CHILD_SEED", rng.next_u64().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("child stdout is piped")?;
        let mut last_ack = None;
        let mut acks = 0_u64;
        // The most records this child reported applying.
        let mut printed = 0_u64;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line?;
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("applied"), Some(records), Some(digest)) => {
                    let records: u64 = records.parse()?;
                    printed = printed.max(records);
                    digests.insert(records, digest.to_owned());
                }
                (Some("ack"), Some(records), None) => {
                    last_ack = Some(records.parse::<u64>()?);
                    acks += 1;
                    if acks >= wanted_acks {
                        break;
                    }
                }
                _ => {}
            }
        }
        // SIGKILL on Unix: no destructor, no flush, no goodbye.
        child.kill()?;
        child.wait()?;
        acked_total += acks;
        // The child went on applying until the kill landed: the digests it
        // printed meanwhile are still in the pipe (a record made durable just
        // before the kill may have none; that recovery is not compared).
        for line in lines {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace();
            if let (Some("applied"), Some(records), Some(digest)) =
                (words.next(), words.next(), words.next())
            {
                let records: u64 = records.parse()?;
                printed = printed.max(records);
                digests.insert(records, digest.to_owned());
            }
        }

        let (ledger, recovery) = open(dir.path())
            .map_err(|e| format!("seed {seed}, kill {kill}: recovery failed: {e}"))?;
        if let Some(acked) = last_ack
            && recovery.records_replayed < acked
        {
            return Err(format!(
                "seed {seed}, kill {kill}: {acked} records acknowledged, {} recovered",
                recovery.records_replayed
            )
            .into());
        }
        // The child runs one operation (one record) at a time: at most the one
        // in flight when the kill landed can be durable and still unreported.
        if recovery.records_replayed > printed + 1 {
            return Err(format!(
                "seed {seed}, kill {kill}: {} records recovered, the child reported {printed}",
                recovery.records_replayed
            )
            .into());
        }
        if let Some(expected) = digests.get(&recovery.records_replayed) {
            if *expected != recovery.digest_at_recovery.to_hex() {
                return Err(format!(
                    "seed {seed}, kill {kill}: digest after {} records differs",
                    recovery.records_replayed
                )
                .into());
            }
            compared += 1;
        }
        ledger
            .verify_conservation()
            .map_err(|v| format!("seed {seed}, kill {kill}: {v}"))?;
        // Releases of orphaned holds are journaled: digests of later prefixes
        // come from the next child, so forget the ones past this point.
        let (_, records) = ledger.snapshot_with_watermark();
        digests.retain(|k, _| *k <= records);
        ledger.close()?;
    }
    assert!(
        acked_total >= KILLS,
        "seed {seed}: the children acknowledged too little"
    );
    // A log that syncs fast often makes the operation in flight durable before
    // the child reports it (no digest to compare then): a quarter must compare.
    assert!(
        compared * 4 >= KILLS,
        "seed {seed}: only {compared} of {KILLS} recoveries could be compared by digest"
    );
    Ok(())
}

#[test]
fn read_only_recovery_rebuilds_the_books_beside_a_live_writer() -> TestResult {
    let dir = TempDir::new("readonly");
    let (ledger, _) = open(dir.path())?;
    ledger.ensure_tenant("a", 100)?;
    ledger.try_reserve("a", 40)?.commit(25)?;
    std::mem::forget(ledger.try_reserve("a", 10)?);
    let digest = ledger.digest()?;

    // The writer still holds the directory: recovery reads without the lock.
    let (engine, recovery) = DurableLedger::recover(dir.path(), None)?;
    assert_eq!(recovery.records_replayed, 4);
    assert_eq!(recovery.digest_at_recovery, digest);
    assert_eq!(recovery.released_reservations, vec![1]);
    let row = engine.ledger("a")?;
    assert_eq!(
        (
            row.remaining_microcents,
            row.reserved_microcents,
            row.committed_microcents
        ),
        (75, 0, 25)
    );
    engine.verify_conservation()?;
    ledger.close()?;

    // Reading wrote nothing: the writer's recovery finds the same state.
    let (_, reopened) = open(dir.path())?;
    assert_eq!(reopened.digest_at_recovery, digest);
    assert_eq!(reopened.released_reservations, vec![1]);
    Ok(())
}
