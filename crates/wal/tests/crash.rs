//! Crash test: this binary re-executes itself as a child (selected by an
//! environment variable) that appends with group commit from several threads and
//! prints every acknowledged sequence number on stdout. The parent SIGKILLs it
//! after a seeded random number of acknowledgements, reopens the log, and checks
//! every acknowledged record is present, intact, and the chain verifies.
//!
//! `harness = false`: `main` is the test. Re-run a failure with
//! `CALYBRIS_SEED=<seed> cargo test -p calybris-wal --test crash`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use calybris_wal::{DurableConfig, DurableWal, Recovery, SegmentedReader};
use serde::{Deserialize, Serialize};

/// Set in the child: the log directory.
const CHILD_DIR_ENV: &str = "CALYBRIS_WAL_CRASH_CHILD_DIR";
/// Set in the child: which run this is (records carry it).
const CHILD_RUN_ENV: &str = "CALYBRIS_WAL_CRASH_CHILD_RUN";
const KILLS: u64 = 24;
const CHILD_THREADS: u32 = 4;
/// Bound on how many records one child thread appends before giving up.
const CHILD_MAX_RECORDS_PER_THREAD: u64 = 1_000_000;
/// Tickets one child thread keeps in flight.
const CHILD_IN_FLIGHT: usize = 4;
const SEGMENT_LIMIT_BYTES: u64 = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CrashRec {
    run: u64,
    thread: u32,
    index: u64,
    pad: Vec<u8>,
}

fn crash_rec(run: u64, thread: u32, index: u64) -> CrashRec {
    CrashRec {
        run,
        thread,
        index,
        pad: vec![thread as u8; (index % 23) as usize],
    }
}

fn child(dir: &Path, run: u64) {
    let wal = DurableWal::<CrashRec>::open(
        dir,
        DurableConfig {
            window: Duration::from_micros(200),
            segment_limit_bytes: SEGMENT_LIMIT_BYTES,
            ..DurableConfig::default()
        },
    )
    .expect("child: open");
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for thread in 0..CHILD_THREADS {
            let (wal, out) = (&wal, &out);
            scope.spawn(move || {
                let mut in_flight = std::collections::VecDeque::new();
                for index in 0..CHILD_MAX_RECORDS_PER_THREAD {
                    let ticket = wal
                        .append(&crash_rec(run, thread, index))
                        .expect("child: append");
                    in_flight.push_back((ticket, index));
                    if in_flight.len() >= CHILD_IN_FLIGHT {
                        let (ticket, index) = in_flight.pop_front().expect("non-empty");
                        let seq = ticket.wait().expect("child: durable");
                        let mut out = out.lock().expect("stdout lock");
                        writeln!(out, "ack {seq} {thread} {index}").expect("child: report");
                        out.flush().expect("child: flush");
                    }
                }
            });
        }
    });
}

fn parse_ack(line: &str) -> Option<(u64, u32, u64)> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

fn parent(seed: u64) {
    let dir = common::TempDir::new("crash");
    let mut rng = common::Rng::new(seed);
    let exe = std::env::current_exe().expect("current exe");
    let mut acked: BTreeMap<u64, CrashRec> = BTreeMap::new();
    let mut torn_tails = 0u64;
    let mut watermark_lagged = 0u64;
    for run in 0..KILLS {
        let threshold = 1 + rng.below(120);
        let stderr_path = dir.path().join(format!("child-{run}.stderr"));
        let mut child = Command::new(&exe)
            .env(CHILD_DIR_ENV, dir.path().join("log"))
            .env(CHILD_RUN_ENV, run.to_string())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut seen = 0u64;
        let mut killed = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read child stdout");
            let Some((seq, thread, index)) = parse_ack(&line) else {
                continue;
            };
            let previous = acked.insert(seq, crash_rec(run, thread, index));
            assert!(
                previous.is_none(),
                "seed {seed}: sequence {seq} acknowledged twice"
            );
            seen += 1;
            if seen >= threshold && !killed {
                // `Child::kill` is SIGKILL on Unix: no destructor, no flush runs.
                child.kill().expect("kill child");
                killed = true;
            }
        }
        let status = child.wait().expect("reap child");
        assert!(
            killed,
            "seed {seed} run {run}: child exited ({status}) before {threshold} acks; stderr: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        let mut reader = SegmentedReader::<CrashRec, _>::open(&dir.path().join("log"), None, None)
            .expect("list segments");
        let mut found = BTreeMap::new();
        for entry in reader.by_ref() {
            let entry = entry.unwrap_or_else(|error| {
                panic!("seed {seed} run {run}: the log does not verify: {error}")
            });
            found.insert(entry.sequence, entry.record);
        }
        let outcome = reader.outcome().cloned();
        match &outcome {
            Some(Recovery::Clean { .. }) => {}
            Some(Recovery::TornTail { .. }) => torn_tails += 1,
            other => panic!("seed {seed} run {run}: unexpected outcome {other:?}"),
        }
        // The watermark is a lower bound: tickets complete once their data is
        // synced and the watermark follows, so it may lag the acknowledged records
        // (they are kept because they verify), but it never runs ahead of the
        // records found.
        let watermark = outcome
            .as_ref()
            .and_then(|outcome| outcome.acknowledged().records())
            .unwrap_or_else(|| panic!("seed {seed} run {run}: no watermark"));
        let found_end = found.last_key_value().map_or(0, |(&seq, _)| seq + 1);
        assert!(
            watermark <= found_end,
            "seed {seed} run {run}: the watermark vouches for {watermark} records, the log holds {found_end}"
        );
        if let Some((&last_acked, _)) = acked.last_key_value()
            && watermark <= last_acked
        {
            watermark_lagged += 1;
        }
        for (seq, record) in &acked {
            assert_eq!(
                found.get(seq),
                Some(record),
                "seed {seed} run {run}: acknowledged record {seq} lost or changed"
            );
        }
    }
    println!(
        "crash test: {KILLS} kills, {} acknowledged records all present, {torn_tails} torn tails cut, {watermark_lagged} kills with acknowledged records after the watermark (seed {seed})",
        acked.len()
    );
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let run = std::env::var(CHILD_RUN_ENV)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        child(Path::new(&dir), run);
        return;
    }
    let seed = common::seed(0x00C4_A5E5);
    let result = std::panic::catch_unwind(|| parent(seed));
    if result.is_err() {
        eprintln!("crash test failed; re-run with CALYBRIS_SEED={seed}");
        std::process::exit(1);
    }
    println!("1 passed, 0 failed");
}
