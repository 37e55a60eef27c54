//! Fixed loops over the budget engine's reserve + commit pair, for instruction counts
//! (callgrind's are repeatable where wall-clock time on a shared machine is not):
//!
//! ```sh
//! cargo build --release -p calybris-benches --example budget_loop
//! valgrind --tool=callgrind target/release/examples/budget_loop flat 100000
//! valgrind --tool=callgrind target/release/examples/budget_loop tree 100000
//! valgrind --tool=callgrind target/release/examples/budget_loop tree 0
//! valgrind --tool=callgrind target/release/examples/budget_loop tree-plan 100000
//! ```
//!
//! `flat` reserves and commits on one tenant by handle (the flat path of
//! `benches/budget.rs`); `tree` does the same through a three-level hierarchy
//! (organisation, team, key) with one model scope, the bench's `budget_tree` case;
//! `tree-plan` also resolves the plan every time (what the gate does per decision).
//! Subtract the `N = 0` run (set-up) and divide by N for instructions per pair.

use std::hint::black_box;

use calybris_budget::{BudgetEngine, BudgetTree, NodeId, NodeScope, NodeSpec, WindowSpec};

const INITIAL_MICROCENTS: i64 = i64::MAX / 4;
const HOLD_MICROCENTS: i64 = 1_000;
const ACTUAL_MICROCENTS: i64 = 600;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "tree".to_owned());
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    match what.as_str() {
        "flat" => {
            let engine = BudgetEngine::new();
            engine
                .ensure_tenant("acme", INITIAL_MICROCENTS)
                .expect("valid tenant");
            let handle = engine.tenant("acme").expect("tenant exists");
            for _ in 0..n {
                let hold = handle
                    .try_reserve(black_box(HOLD_MICROCENTS))
                    .expect("budget never runs out");
                black_box(hold.commit(black_box(ACTUAL_MICROCENTS)).is_ok());
            }
            assert_eq!(engine.verify_conservation(), Ok(()));
        }
        "tree" | "tree-plan" => {
            let spec = |name: &str, parent: Option<NodeId>, scope: NodeScope| NodeSpec {
                name: name.to_owned(),
                parent,
                scope,
                limit_microcents: INITIAL_MICROCENTS,
                window: WindowSpec::Daily {
                    utc_offset_minutes: 0,
                },
                start_window: 0,
                alert_thresholds_bps: vec![5_000, 8_000, 10_000],
            };
            let tree = BudgetTree::new();
            let org = tree
                .define(spec("org", None, NodeScope::Chain))
                .expect("valid");
            let team = tree
                .define(spec("team", Some(org), NodeScope::Chain))
                .expect("valid");
            let key = tree
                .define(spec("key", Some(team), NodeScope::Chain))
                .expect("valid");
            let model = tree
                .define(spec("model", None, NodeScope::Model("large".to_owned())))
                .expect("valid");
            let mut plan = tree.plan(key, &[model]).expect("valid");
            let replan = what == "tree-plan";
            for _ in 0..n {
                if replan {
                    plan = tree.plan(black_box(key), &[model]).expect("valid");
                }
                let hold = tree
                    .try_reserve(black_box(&plan), black_box(HOLD_MICROCENTS))
                    .expect("budget never runs out");
                black_box(hold.commit(black_box(ACTUAL_MICROCENTS)).is_ok());
            }
            assert!(tree.verify_conservation().is_ok());
        }
        other => {
            eprintln!("usage: budget_loop flat|tree|tree-plan N (not {other:?})");
            std::process::exit(2);
        }
    }
}
