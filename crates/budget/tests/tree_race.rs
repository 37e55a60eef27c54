//! 64 threads on a hierarchy whose team budget is the binding one (org -> team ->
//! eight keys, plus one model scope on every hold), one of them opening the team's
//! next window every 100 of its operations: never overspent at any level, in any
//! window.
//!
//! Each thread draws its script from a seeded SplitMix64 (`CALYBRIS_SEED` replays a
//! run; the seed is printed on failure) and tallies, per node and window, what it
//! committed. Every window's committed spend must stay within its grant, the books
//! must balance at every sample a watcher takes, and the tallies must equal the
//! tree's final books to the microcent.

use calybris_budget::{BudgetTree, NodeId, NodeScope, NodeSpec, TreeError, WindowSpec};
use calybris_workload::{SplitMix64, seed_from_env};
use std::collections::HashMap;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

const THREADS: usize = 64;
const OPS_PER_THREAD: u64 = 3_000;
const ORG_LIMIT: i64 = 10_000_000;
const TEAM_LIMIT: i64 = 40_000;
/// Keys never bind, so spend reaches every team window.
const KEY_LIMIT: i64 = 10_000_000;
/// Thread 0 opens the team's next window every this many of its operations.
const RESET_EVERY: u64 = 100;
const MODEL_LIMIT: i64 = 5_000_000;
const KEYS: usize = 8;

fn node(name: &str, parent: Option<NodeId>, scope: NodeScope, limit: i64) -> NodeSpec {
    NodeSpec {
        name: name.to_owned(),
        parent,
        scope,
        limit_microcents: limit,
        window: WindowSpec::Fixed {
            duration_ms: 60_000,
            origin_unix_ms: 0,
        },
        start_window: 0,
        alert_thresholds_bps: vec![5_000, 8_000, 10_000],
    }
}

#[test]
fn sixty_four_threads_never_overspend_a_binding_team() {
    let seed = seed_from_env(0x7ea5_b1d5);
    let outcome = std::panic::catch_unwind(|| run(seed));
    if let Err(panic) = outcome {
        eprintln!("tree_race failed with CALYBRIS_SEED={seed:#x}");
        std::panic::resume_unwind(panic);
    }
}

type Tally = HashMap<(NodeId, u64), i64>;

fn run(seed: u64) {
    let tree = BudgetTree::new();
    let org = tree
        .define(node("org", None, NodeScope::Chain, ORG_LIMIT))
        .expect("valid");
    let team = tree
        .define(node("team", Some(org), NodeScope::Chain, TEAM_LIMIT))
        .expect("valid");
    let keys: Vec<NodeId> = (0..KEYS)
        .map(|k| {
            tree.define(node(
                &format!("key{k}"),
                Some(team),
                NodeScope::Chain,
                KEY_LIMIT,
            ))
            .expect("valid")
        })
        .collect();
    let model = tree
        .define(node(
            "model",
            None,
            NodeScope::Model("m".to_owned()),
            MODEL_LIMIT,
        ))
        .expect("valid");
    let plans: Vec<_> = keys
        .iter()
        .map(|key| tree.plan(*key, &[model]).expect("valid"))
        .collect();
    let alerts = tree.subscribe();
    let done = AtomicBool::new(false);
    let start = Barrier::new(THREADS + 2);
    let (tallies, refused_by_team) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let plan = plans[t % KEYS].clone();
                let tree = &tree;
                let start = &start;
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(seed ^ (t as u64).wrapping_mul(0x9e37_79b9));
                    let mut tally = Tally::new();
                    let mut refused_by_team = 0_u64;
                    start.wait();
                    for op in 0..OPS_PER_THREAD {
                        if t == 0 && op % RESET_EVERY == RESET_EVERY - 1 {
                            let window = op / RESET_EVERY + 1;
                            let reset = tree.advance_window(team, window).expect("forward");
                            assert!(reset.is_some(), "each window is opened once");
                        }
                        let amount = i64::try_from(rng.between(1, 400)).expect("small");
                        match tree.try_reserve(&plan, amount) {
                            Ok(hold) => {
                                let windows: Vec<(NodeId, u64)> = hold.windows().collect();
                                let actual = if rng.percent(20) {
                                    0
                                } else {
                                    i64::try_from(rng.between(0, amount as u64)).expect("small")
                                };
                                let settled = hold.commit(actual).expect("within the hold");
                                tree.publish(&settled.alerts);
                                for key in windows {
                                    *tally.entry(key).or_default() += actual;
                                }
                            }
                            Err(TreeError::Refused { node, .. }) => {
                                if node == team {
                                    refused_by_team += 1;
                                }
                            }
                            Err(other) => panic!("unexpected refusal {other:?}"),
                        }
                    }
                    (tally, refused_by_team)
                })
            })
            .collect();
        let watcher = scope.spawn(|| {
            start.wait();
            let mut samples = 0_u64;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(1));
                samples += 1;
                assert!(
                    tree.books(team)
                        .expect("exists")
                        .iter()
                        .all(|b| b.imbalance() == 0)
                );
            }
            samples
        });
        start.wait();
        let mut all = Tally::new();
        let mut refused = 0;
        for worker in workers {
            let (tally, r) = worker.join().expect("no worker panics");
            refused += r;
            for (key, value) in tally {
                *all.entry(key).or_default() += value;
            }
        }
        done.store(true, Ordering::Relaxed);
        let samples = watcher.join().expect("no panic");
        assert!(samples > 0, "the watcher sampled the books");
        (all, refused)
    });
    assert!(refused_by_team > 0, "the team budget was binding");
    // The org (node 0) is taken before the team (node 1) in every plan, so every
    // refusal by the team rolled the org back: partial holds were seen and undone.
    let stats = tree.stats();
    assert!(stats.rollbacks >= refused_by_team, "{stats:?}");
    println!(
        "tree_race: {refused_by_team} refusals by the team, {} rollbacks of {} node holds, of {} attempts",
        stats.rollbacks,
        stats.nodes_rolled_back,
        THREADS as u64 * OPS_PER_THREAD
    );
    tree.verify_conservation().expect("every window balances");
    // Never overspent, at any level, in any window.
    let mut team_windows = 0;
    for ((node, window), committed) in &tallies {
        let limit = if *node == team {
            team_windows += 1;
            TEAM_LIMIT
        } else if *node == org {
            ORG_LIMIT
        } else if *node == model {
            MODEL_LIMIT
        } else {
            KEY_LIMIT
        };
        assert!(
            *committed <= limit,
            "{node:?} window {window} committed {committed} > {limit}"
        );
    }
    assert!(team_windows > 1, "spend landed in several team windows");
    // The tallies equal the books: org, model and keys never reset.
    for n in keys.iter().chain([&org, &model]) {
        let books = tree.books(*n).expect("exists");
        assert_eq!(books.len(), 1, "no open holds are left");
        assert_eq!(books[0].reserved_microcents, 0);
        assert_eq!(
            books[0].committed_microcents,
            tallies.get(&(*n, 0)).copied().unwrap_or(0)
        );
    }
    let team_books = tree.books(team).expect("exists");
    assert_eq!(team_books.len(), 1);
    assert_eq!(
        team_books[0].committed_microcents,
        tallies
            .get(&(team, team_books[0].window))
            .copied()
            .unwrap_or(0)
    );
    // Every alert is unique per (node, window, threshold).
    let mut seen = std::collections::HashSet::new();
    for alert in alerts.try_iter() {
        assert!(
            seen.insert((alert.node, alert.window, alert.threshold_bps)),
            "{alert:?} fired twice"
        );
    }
    assert!(!seen.is_empty(), "the team's thresholds fired");
}
