//! SIGKILL crash test of a multi-threaded gate process.
//!
//! The test binary re-executes itself as the child (the environment variable
//! `CALYBRIS_GATE_CRASH_CHILD` selects the role). The child opens a gate and runs
//! several threads of decide, settle, top-up and outcome, waiting for each record's
//! ticket and reporting every acknowledged record on its stdout; the parent kills it
//! with SIGKILL at a seeded random moment. After each kill the parent reopens the
//! directory (which cuts a torn tail and releases the holds left open), checks that
//! every acknowledged record is present with the content acknowledged, closes it, and
//! runs the offline verifier, which also checks that nothing is settled twice and that
//! the books balance after every record.
//!
//! `CALYBRIS_CRASH_KILLS` sets the number of kills (default 100), `CALYBRIS_SEED` the
//! seed; a failure prints both.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use calybris_gate::{
    Gate, GateConfig, GateRecord, Outcome, ReopenHolds, VerifyOptions, verify_dir,
};
use calybris_wal::SegmentedReader;
use common::kill::{KillLoop, kills_from_env};
use common::{Rng, policy, request, seed};

const CHILD_ENV: &str = "CALYBRIS_GATE_CRASH_CHILD";
const THREADS: u64 = 4;
const TENANTS: [&str; 3] = ["a", "b", "c"];
/// Kills per gate directory before a fresh one is started (keeps each verification small).
const KILLS_PER_DIR: u64 = 10;

fn config(dir: &Path) -> GateConfig {
    let mut config = GateConfig::new(dir, policy(false))
        .snapshot_every_records(97)
        .reopen_holds(ReopenHolds::Release)
        .clock(|| 1_764_620_000_000);
    for tenant in TENANTS {
        config = config.tenant(tenant, 2_000_000);
    }
    config
}

/// What the child acknowledged: the record at `sequence` is of this kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Acked {
    Decision { request_sequence: u64 },
    Settlement { decision: u64 },
    TopUp,
    Outcome { decision: u64 },
}

fn parse(line: &str) -> Option<(u64, Acked)> {
    let mut words = line.split_whitespace();
    let kind = words.next()?;
    let sequence: u64 = words.next()?.parse().ok()?;
    let value: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let acked = match kind {
        "D" => Acked::Decision {
            request_sequence: value,
        },
        "S" => Acked::Settlement { decision: value },
        "T" => Acked::TopUp,
        "O" => Acked::Outcome { decision: value },
        _ => return None,
    };
    Some((sequence, acked))
}

fn child(dir: &Path, seed: u64) -> ! {
    let gate = match Gate::open(config(dir)) {
        Ok(gate) => gate,
        Err(error) => {
            eprintln!("child: open failed: {error}");
            std::process::exit(3);
        }
    };
    let out = Mutex::new(std::io::stdout());
    let say = |line: String| {
        let mut out = out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    say("ready 0".to_owned());
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let gate = gate.clone();
            let say = &say;
            scope.spawn(move || {
                let mut rng = Rng::new(seed ^ (thread + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                for k in 0.. {
                    let tenant = TENANTS[rng.below(TENANTS.len() as u64) as usize];
                    if rng.below(25) == 0 {
                        let Ok(ticket) = gate.top_up(tenant, 1 + rng.below(5_000)) else {
                            return;
                        };
                        if ticket.wait().is_ok() {
                            say(format!("T {}", ticket.sequence()));
                        }
                        continue;
                    }
                    let request_sequence = (seed << 20) ^ (thread << 40) ^ k;
                    let Ok(admission) =
                        gate.decide(tenant, request(request_sequence, 1 + (k % 2) as u32))
                    else {
                        return;
                    };
                    if admission.wait_durable().is_err() {
                        return;
                    }
                    let decision = admission.log_sequence();
                    say(format!("D {decision} {request_sequence}"));
                    if rng.below(3) == 0 {
                        let Ok(ticket) = gate.record_outcome(
                            admission.decision_ref(),
                            Outcome {
                                reward_microunits: rng.below(1_000) as i64 - 500,
                                success: rng.below(2) == 0,
                                latency_ms: rng.below(900) as u32,
                                detail: vec![7; rng.below(64) as usize],
                            },
                        ) else {
                            return;
                        };
                        if ticket.wait().is_ok() {
                            say(format!("O {} {decision}", ticket.sequence()));
                        }
                    }
                    let held = admission.budget().held_microunits();
                    let settled = match rng.below(5) {
                        0 => gate.abandon(admission),
                        1 => gate.settle(admission, held + rng.below(100)),
                        2 if rng.below(2) == 0 => {
                            // Left open: a crash releases it at reopen.
                            let _ = admission.into_reservation_id();
                            continue;
                        }
                        _ => gate.settle(admission, rng.below(held + 1)),
                    };
                    match settled {
                        Ok(settled) => {
                            if let Some(ticket) = settled.ticket
                                && ticket.wait().is_ok()
                            {
                                say(format!("S {} {decision}", ticket.sequence()));
                            }
                        }
                        Err(calybris_gate::GateError::OverrunNotCovered { .. }) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    std::process::exit(0);
}

fn check_after_kill(dir: &Path, acked: &HashMap<u64, Acked>, context: &str) {
    let gate = Gate::open(config(dir)).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    let records = gate.recovery().records;
    gate.close()
        .unwrap_or_else(|e| panic!("{context}: close after reopen: {e}"));
    let mut found: HashMap<u64, Acked> = HashMap::with_capacity(acked.len());
    let reader = SegmentedReader::<GateRecord>::open(&dir.join("log"), None, None)
        .unwrap_or_else(|e| panic!("{context}: read: {e}"));
    for entry in reader {
        let entry = entry.unwrap_or_else(|e| panic!("{context}: read: {e}"));
        if !acked.contains_key(&entry.sequence) {
            continue;
        }
        let kind = match entry.record {
            GateRecord::Decision(record) => Acked::Decision {
                request_sequence: record.audit.input.request_sequence,
            },
            GateRecord::Settlement(record) => Acked::Settlement {
                decision: record.decision_sequence,
            },
            GateRecord::TopUp(_) => Acked::TopUp,
            GateRecord::Outcome(record) => Acked::Outcome {
                decision: record.decision_sequence,
            },
            other => panic!("{context}: record {} is a {}", entry.sequence, other.kind()),
        };
        found.insert(entry.sequence, kind);
    }
    for (sequence, expected) in acked {
        assert!(
            *sequence < records,
            "{context}: acknowledged record {sequence} is missing ({records} records after reopen)"
        );
        assert_eq!(
            found.get(sequence),
            Some(expected),
            "{context}: acknowledged record {sequence} differs"
        );
    }
    let report = verify_dir(dir, &VerifyOptions::default())
        .unwrap_or_else(|e| panic!("{context}: the directory does not verify: {e}"));
    assert!(report.conservation.balanced, "{context}");
    assert_eq!(
        report.open_holds, 0,
        "{context}: reopen released every hold"
    );
}

fn main() {
    let kill_loop = KillLoop {
        child_env: CHILD_ENV,
        dir_name: "crash",
        kills_per_dir: KILLS_PER_DIR,
        max_delay_ms: 60,
    };
    kill_loop.child_role(child);
    let seed = seed(0xc0a5_4ed0);
    let kills = kills_from_env(100);
    let started = Instant::now();
    let mut acked_total = 0_u64;
    kill_loop.run(seed, kills, |killed| {
        let acked: HashMap<u64, Acked> = killed.lines.iter().filter_map(|l| parse(l)).collect();
        acked_total += acked.len() as u64;
        check_after_kill(killed.dir, &acked, &killed.context);
    });
    assert!(
        acked_total > kills,
        "seed {seed:#x}: too few acknowledgements ({acked_total})"
    );
    println!(
        "crash: {kills} kills, {acked_total} acknowledged records checked, seed {seed:#x}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("1 passed, 0 failed");
}
