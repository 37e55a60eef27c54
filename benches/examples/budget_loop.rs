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

#[path = "../common/tree.rs"]
mod tree;

use calybris_budget::{BudgetEngine, NodeScope};

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
            let (tree, plans) = tree::three_levels_one_scope(INITIAL_MICROCENTS, 1);
            let mut plan = plans[0].clone();
            let key = plan.nodes().max().expect("the key has the largest id");
            let model = plan
                .nodes()
                .find(|node| tree.spec(*node).is_ok_and(|s| s.scope != NodeScope::Chain))
                .expect("the model scope");
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
