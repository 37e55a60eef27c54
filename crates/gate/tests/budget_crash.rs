//! SIGKILL crash test of budget windows: a multi-threaded child decides through an
//! org -> team -> key hierarchy with a model scope (model 2, the one selected) whose windows last 20 ms of the
//! caller's clock, so boundaries pass all the time, and the parent kills it at a
//! seeded random moment, many times over the same directory.
//!
//! After each kill the parent reopens the gate (which releases the holds left open,
//! rebuilds the budget nodes from the log and logs any alert a crash left due),
//! closes it and runs the offline verifier, whose fold refuses a second reset of a
//! window (wrong window), a decision held in a window its caller's clock had passed
//! (a missed reset), a reset before its boundary, an alert fired twice, and any
//! window whose books do not balance. The parent also checks that the reopened
//! gate's team window is the log's last.
//!
//! `CALYBRIS_CRASH_KILLS` sets the number of kills (default 30), `CALYBRIS_SEED` the
//! seed; a failure prints both.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use calybris_gate::windows::{BudgetDefined, BudgetScope, BudgetWindow};
use calybris_gate::{
    BudgetRoute, CallerMeta, Gate, GateConfig, GateRecord, ReopenHolds, VerifyOptions, verify_dir,
};
use calybris_wal::SegmentedReader;
use common::kill::{KillLoop, kills_from_env};
use common::{Rng, policy, request, seed};

const CHILD_ENV: &str = "CALYBRIS_GATE_BUDGET_CRASH_CHILD";
const THREADS: u64 = 4;
const KILLS_PER_DIR: u64 = 10;
const WINDOW_MS: u64 = 20;
/// Five decisions of 1,500 (model 2 is selected) per window: the team binds.
const TEAM_LIMIT: u64 = 7_500;

fn config(dir: &Path) -> GateConfig {
    GateConfig::new(dir, policy(false))
        .snapshot_every_records(1_000_000)
        .reopen_holds(ReopenHolds::Release)
        .tenant("a", 1_000_000_000_000)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn definition(node: &str, parent: Option<&str>, scope: BudgetScope, limit: u64) -> BudgetDefined {
    BudgetDefined {
        node: node.into(),
        parent: parent.map(Into::into),
        scope,
        limit_microunits: limit,
        window: BudgetWindow::Fixed {
            duration_ms: WINDOW_MS,
            origin_unix_ms: 0,
        },
        start_window: now_ms() / WINDOW_MS,
        alert_thresholds_bps: vec![5_000, 8_000, 10_000],
    }
}

fn child(dir: &Path, seed: u64) -> ! {
    let gate = match Gate::open(config(dir)) {
        Ok(gate) => gate,
        Err(error) => {
            eprintln!("child: open failed: {error}");
            std::process::exit(3);
        }
    };
    if gate.budget_books("org").is_err() {
        for node in [
            definition("org", None, BudgetScope::Chain, 1_000_000_000),
            definition("team", Some("org"), BudgetScope::Chain, TEAM_LIMIT),
            definition("key", Some("team"), BudgetScope::Chain, 1_000_000),
            definition("model-2", None, BudgetScope::Model("2".into()), 10_000_000),
        ] {
            gate.define_budget(&node)
                .and_then(|ticket| ticket.wait().map_err(Into::into))
                .unwrap_or_else(|e| {
                    eprintln!("child: define failed: {e}");
                    std::process::exit(4)
                });
        }
    }
    let route = BudgetRoute {
        key: "key".into(),
        scopes: Vec::new(),
    };
    println!("ready");
    let _ = std::io::stdout().flush();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (gate, route) = (&gate, &route);
            scope.spawn(move || {
                let mut rng = Rng::new(seed ^ t);
                for n in 0.. {
                    let caller = CallerMeta {
                        request_id: [0; 16],
                        recorded_at_unix_ms: now_ms(),
                    };
                    let admission =
                        match gate.decide_budgeted("a", request(t << 32 | n, 1), caller, route) {
                            Ok(admission) => admission,
                            Err(error) => {
                                eprintln!("child: decide failed: {error}");
                                std::process::exit(5);
                            }
                        };
                    if admission.is_admitted() {
                        let held = admission.budget().held_microunits();
                        let actual = rng.below(held + 1);
                        if let Err(error) = gate.settle(admission, actual) {
                            eprintln!("child: settle failed: {error}");
                            std::process::exit(6);
                        }
                    }
                    if rng.percent(10) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
        }
    });
    std::process::exit(0)
}

/// Reopens, checks the rebuilt team window against the log, closes and verifies.
/// Returns the resets and alerts in the log.
fn check_after_kill(dir: &Path, context: &str) -> (u64, u64) {
    let gate = Gate::open(config(dir)).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    let team_window = gate.budget_books("team").ok().map(|books| books[0].window);
    gate.close()
        .unwrap_or_else(|e| panic!("{context}: close: {e}"));
    let report = verify_dir(dir, &VerifyOptions::default())
        .unwrap_or_else(|e| panic!("{context}: the directory does not verify: {e}"));
    assert!(report.conservation.balanced, "{context}");
    assert_eq!(
        report.open_holds, 0,
        "{context}: reopen released every hold"
    );
    let reader = SegmentedReader::<GateRecord>::open(&dir.join(calybris_gate::LOG_DIR), None, None)
        .unwrap_or_else(|e| panic!("{context}: read the log: {e}"));
    let mut resets = HashSet::new();
    let mut last_team = None;
    let mut alerts = HashSet::new();
    let mut defined_team = None;
    let (mut held_with_model, mut refused_by_team) = (0_u64, 0_u64);
    for entry in reader {
        let entry = entry.unwrap_or_else(|e| panic!("{context}: log entry: {e}"));
        match &entry.record {
            GateRecord::WindowReset(reset) => {
                assert!(
                    resets.insert((reset.node.clone(), reset.to_window)),
                    "{context}: window {} of {} opened twice",
                    reset.to_window,
                    reset.node
                );
                if reset.node == "team" {
                    last_team = Some(reset.to_window);
                }
            }
            GateRecord::AlertFired(alert) => {
                assert!(
                    alerts.insert((alert.node.clone(), alert.window, alert.threshold_bps)),
                    "{context}: {alert:?} fired twice"
                );
            }
            GateRecord::Decision(decision) => {
                let names: Vec<&str> = decision.scopes.iter().map(|s| s.node.as_str()).collect();
                if names == ["org", "team", "key", "model-2"] {
                    held_with_model += 1;
                } else if names == ["team"] {
                    refused_by_team += 1;
                }
            }
            GateRecord::BudgetDefined(defined) if defined.node == "team" => {
                defined_team = Some(defined.start_window);
            }
            _ => {}
        }
    }
    assert!(
        held_with_model > 0 && refused_by_team > 0,
        "{context}: decisions held all four nodes ({held_with_model}) and the team refused ({refused_by_team})"
    );
    assert_eq!(
        team_window,
        last_team.or(defined_team),
        "{context}: the reopened gate's team window is the log's last"
    );
    (resets.len() as u64, alerts.len() as u64)
}

fn main() {
    let kill_loop = KillLoop {
        child_env: CHILD_ENV,
        dir_name: "budget-crash",
        kills_per_dir: KILLS_PER_DIR,
        max_delay_ms: 80,
    };
    kill_loop.child_role(child);
    let seed = seed(0xb0d6_e7c4);
    let kills = kills_from_env(30);
    let started = Instant::now();
    let (mut resets_total, mut alerts_total) = (0, 0);
    kill_loop.run(seed, kills, |killed| {
        let (resets, alerts) = check_after_kill(killed.dir, &killed.context);
        // Counted once per directory, at its last kill (each check counts them all).
        if killed.kill % KILLS_PER_DIR == KILLS_PER_DIR - 1 || killed.kill + 1 == kills {
            resets_total += resets;
            alerts_total += alerts;
        }
    });
    assert!(
        resets_total > kills,
        "seed {seed:#x}: too few resets ({resets_total})"
    );
    assert!(alerts_total > 0, "seed {seed:#x}: no alert fired");
    println!(
        "budget crash: {kills} kills, {resets_total} window resets and {alerts_total} alerts checked, seed {seed:#x}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("1 passed, 0 failed");
}
