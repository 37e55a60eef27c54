//! The budget tree the `budget_tree` bench and the `budget_loop` example measure:
//! org -> team -> `keys` keys, plus one model scope, every node with a daily window
//! and alert thresholds at 50, 80 and 100 %.

use calybris_budget::{BudgetTree, HoldPlan, NodeId, NodeScope, NodeSpec, WindowSpec};

/// The tree and one plan per key (the key, the team, the org and the model scope).
pub fn three_levels_one_scope(limit_microcents: i64, keys: usize) -> (BudgetTree, Vec<HoldPlan>) {
    let spec = |name: &str, parent: Option<NodeId>, scope: NodeScope| NodeSpec {
        name: name.to_owned(),
        parent,
        scope,
        limit_microcents,
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
    let model = tree
        .define(spec("model", None, NodeScope::Model("large".to_owned())))
        .expect("valid");
    let plans = (0..keys)
        .map(|k| {
            let key = tree
                .define(spec(&format!("key{k}"), Some(team), NodeScope::Chain))
                .expect("valid");
            tree.plan(key, &[model]).expect("valid")
        })
        .collect();
    (tree, plans)
}
