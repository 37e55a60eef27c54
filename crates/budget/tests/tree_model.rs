//! The budget tree against a simple sequential reference: random trees (chains up
//! to depth 4 plus scope nodes), random reservations over random plans, commits,
//! releases, overruns, top-ups and window resets. After every operation the tree's books of
//! every node and window, its refusals (which node) and its alerts must equal the
//! reference's. proptest prints the failing case and its seed.

use calybris_budget::{
    AlertEvent, BudgetTree, NodeId, NodeScope, NodeSpec, TreeError, TreeReservation, WindowBooks,
    WindowSpec,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// One node of the generated tree: parent choice and whether it is a scope.
#[derive(Debug, Clone)]
struct GenNode {
    parent: Option<usize>,
    scope: bool,
    limit: i64,
    thresholds: Vec<u16>,
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        key: usize,
        scopes: Vec<usize>,
        amount: i64,
    },
    Commit {
        open: usize,
        actual_pct: i64,
    },
    Release {
        open: usize,
    },
    TopUp {
        node: usize,
        amount: i64,
    },
    Reset {
        node: usize,
        skip: u64,
    },
}

fn gen_nodes() -> impl Strategy<Value = Vec<GenNode>> {
    prop::collection::vec(
        (
            any::<bool>(),
            prop::option::of(0_usize..16),
            0_i64..400,
            prop::sample::subsequence(vec![2_500_u16, 5_000, 8_000, 10_000], 0..=4),
        ),
        1..10,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .map(|(scope, parent, limit, thresholds)| GenNode {
                parent: if scope { None } else { parent },
                scope,
                limit,
                thresholds,
            })
            .collect()
    })
}

fn gen_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0_usize..16, prop::collection::vec(0_usize..16, 0..3), 1_i64..120)
            .prop_map(|(key, scopes, amount)| Op::Reserve { key, scopes, amount }),
        2 => (0_usize..32, 0_i64..=200).prop_map(|(open, actual_pct)| Op::Commit { open, actual_pct }),
        1 => (0_usize..32).prop_map(|open| Op::Release { open }),
        1 => (0_usize..16, 1_i64..100).prop_map(|(node, amount)| Op::TopUp { node, amount }),
        1 => (0_usize..16, 1_u64..3).prop_map(|(node, skip)| Op::Reset { node, skip }),
    ]
}

/// The reference: per node, its current window and every window's books.
#[derive(Debug)]
struct RefNode {
    window: u64,
    limit: i64,
    thresholds: Vec<u16>,
    books: BTreeMap<u64, WindowBooks>,
    parent: Option<usize>,
    scope: bool,
}

struct RefHold {
    nodes: Vec<(usize, u64)>,
    amount: i64,
}

fn ref_alerts(node: usize, n: &mut RefNode, window: u64, out: &mut Vec<AlertEvent>) {
    let books = n.books.get_mut(&window).expect("window exists");
    for (bit, bps) in n.thresholds.iter().enumerate() {
        let reached = i128::from(books.committed_microcents) * 10_000
            >= i128::from(*bps) * i128::from(books.granted_microcents);
        if reached && books.fired_mask & (1 << bit) == 0 {
            books.fired_mask |= 1 << bit;
            out.push(AlertEvent {
                node: NodeId(u32::try_from(node).expect("small")),
                window,
                threshold_bps: *bps,
                committed_microcents: books.committed_microcents,
                granted_microcents: books.granted_microcents,
            });
        }
    }
}

fn ref_settle(nodes: &mut [RefNode], hold: &RefHold, actual: i64) -> Vec<AlertEvent> {
    let mut alerts = Vec::new();
    for &(node, window) in &hold.nodes {
        let n = &mut nodes[node];
        let current = n.window == window;
        let books = n.books.get_mut(&window).expect("window exists");
        books.reserved_microcents -= hold.amount;
        books.committed_microcents += actual;
        let pool = if current {
            &mut books.remaining_microcents
        } else {
            &mut books.expired_microcents
        };
        if actual <= hold.amount {
            *pool += hold.amount - actual;
        } else {
            // The overrun path: the excess from the pool as far as it goes.
            let excess = actual - hold.amount;
            let covered = excess.min(*pool);
            *pool -= covered;
            books.overrun_microcents += excess - covered;
        }
        books.open_holds -= 1;
        if actual > 0 {
            ref_alerts(node, n, window, &mut alerts);
        }
    }
    alerts
}

/// What the tree should show for a node: current window, then closed windows
/// with open holds, ascending.
fn expected_books(n: &RefNode) -> Vec<WindowBooks> {
    let mut out = vec![n.books[&n.window]];
    out.extend(
        n.books
            .values()
            .filter(|b| b.window != n.window && b.open_holds > 0)
            .copied(),
    );
    out
}

fn run(spec: &[GenNode], ops: &[Op]) -> Result<(), TestCaseError> {
    let tree = BudgetTree::new();
    let mut nodes: Vec<RefNode> = Vec::new();
    let mut depth: Vec<usize> = Vec::new();
    for (index, g) in spec.iter().enumerate() {
        // A parent is an earlier chain node of depth below 3 (so depth <= 3).
        let parent = g
            .parent
            .map(|p| p % index.max(1))
            .filter(|p| *p < index && !nodes[*p].scope && depth[*p] < 3);
        let scope = if g.scope {
            NodeScope::Model(format!("m{index}"))
        } else {
            NodeScope::Chain
        };
        let id = tree
            .define(NodeSpec {
                name: format!("n{index}"),
                parent: parent.map(|p| NodeId(u32::try_from(p).expect("small"))),
                scope,
                limit_microcents: g.limit,
                window: WindowSpec::Lifetime,
                start_window: 0,
                alert_thresholds_bps: g.thresholds.clone(),
            })
            .expect("a valid spec");
        prop_assert_eq!(id.0 as usize, index);
        depth.push(parent.map_or(0, |p| depth[p] + 1));
        let mut books = BTreeMap::new();
        books.insert(
            0,
            WindowBooks {
                window: 0,
                granted_microcents: g.limit,
                remaining_microcents: g.limit,
                ..WindowBooks::default()
            },
        );
        nodes.push(RefNode {
            window: 0,
            limit: g.limit,
            thresholds: g.thresholds.clone(),
            books,
            parent,
            scope: g.scope,
        });
    }
    let chain: Vec<usize> = (0..nodes.len()).filter(|i| !nodes[*i].scope).collect();
    let scopes: Vec<usize> = (0..nodes.len()).filter(|i| nodes[*i].scope).collect();
    let mut open: Vec<(TreeReservation, RefHold)> = Vec::new();
    for op in ops {
        match op {
            Op::Reserve {
                key,
                scopes: picked,
                amount,
            } => {
                if chain.is_empty() {
                    continue;
                }
                let key = chain[key % chain.len()];
                let mut plan_scopes: Vec<usize> = Vec::new();
                if !scopes.is_empty() {
                    for s in picked {
                        let s = scopes[s % scopes.len()];
                        if !plan_scopes.contains(&s) {
                            plan_scopes.push(s);
                        }
                    }
                }
                let mut members = vec![key];
                let mut at = key;
                while let Some(p) = nodes[at].parent {
                    members.push(p);
                    at = p;
                }
                members.extend(&plan_scopes);
                members.sort_unstable();
                let plan = tree
                    .plan(
                        NodeId(u32::try_from(key).expect("small")),
                        &plan_scopes
                            .iter()
                            .map(|s| NodeId(u32::try_from(*s).expect("small")))
                            .collect::<Vec<_>>(),
                    )
                    .expect("a valid plan");
                let plan_nodes: Vec<usize> = plan.nodes().map(|n| n.0 as usize).collect();
                prop_assert_eq!(&plan_nodes, &members);
                let refusing = members.iter().copied().find(|m| {
                    let n = &nodes[*m];
                    n.books[&n.window].remaining_microcents < *amount
                });
                let got = tree.try_reserve(&plan, *amount);
                match (refusing, got) {
                    (None, Ok(hold)) => {
                        let mut held = Vec::new();
                        for m in members {
                            let n = &mut nodes[m];
                            let books = n.books.get_mut(&n.window).expect("current");
                            books.remaining_microcents -= amount;
                            books.reserved_microcents += amount;
                            books.open_holds += 1;
                            held.push((m, n.window));
                        }
                        let windows: Vec<(usize, u64)> =
                            hold.windows().map(|(n, w)| (n.0 as usize, w)).collect();
                        prop_assert_eq!(&windows, &held);
                        open.push((
                            hold,
                            RefHold {
                                nodes: held,
                                amount: *amount,
                            },
                        ));
                    }
                    (Some(expected), Err(TreeError::Refused { node, .. })) => {
                        prop_assert_eq!(node.0 as usize, expected);
                    }
                    (expected, got) => {
                        return Err(TestCaseError::fail(format!(
                            "reference refuses at {expected:?}, tree gave {got:?}"
                        )));
                    }
                }
            }
            Op::Commit {
                open: i,
                actual_pct,
            } => {
                if open.is_empty() {
                    continue;
                }
                let (hold, reference) = open.swap_remove(i % open.len());
                let actual = reference.amount * actual_pct / 100;
                let expected = ref_settle(&mut nodes, &reference, actual);
                let settled = if actual <= reference.amount {
                    hold.commit(actual).expect("within the hold")
                } else {
                    hold.commit_with_overrun(actual).expect("the overrun path")
                };
                prop_assert_eq!(settled.alerts, expected);
            }
            Op::Release { open: i } => {
                if open.is_empty() {
                    continue;
                }
                let (hold, reference) = open.swap_remove(i % open.len());
                ref_settle(&mut nodes, &reference, 0);
                let settled = hold.release();
                prop_assert!(settled.alerts.is_empty());
            }
            Op::TopUp { node, amount } => {
                let node = node % nodes.len();
                tree.top_up(NodeId(u32::try_from(node).expect("small")), *amount)
                    .expect("no overflow at these sizes");
                let n = &mut nodes[node];
                let books = n.books.get_mut(&n.window).expect("current");
                books.granted_microcents += amount;
                books.remaining_microcents += amount;
            }
            Op::Reset { node, skip } => {
                let node = node % nodes.len();
                let n = &mut nodes[node];
                let to = n.window + skip;
                let reset = tree
                    .advance_window(NodeId(u32::try_from(node).expect("small")), to)
                    .expect("forward")
                    .expect("a new window");
                let old = n.books.get_mut(&n.window).expect("current");
                prop_assert_eq!(reset.expired_microcents, old.remaining_microcents);
                prop_assert_eq!(reset.open_holds, old.open_holds);
                old.expired_microcents = old.remaining_microcents;
                old.remaining_microcents = 0;
                n.window = to;
                n.books.insert(
                    to,
                    WindowBooks {
                        window: to,
                        granted_microcents: n.limit,
                        remaining_microcents: n.limit,
                        ..WindowBooks::default()
                    },
                );
            }
        }
        for (index, n) in nodes.iter().enumerate() {
            let got = tree
                .books(NodeId(u32::try_from(index).expect("small")))
                .expect("exists");
            prop_assert_eq!(got, expected_books(n), "node {}", index);
            for books in n.books.values() {
                prop_assert_eq!(books.imbalance(), 0);
                prop_assert!(books.remaining_microcents >= 0);
            }
        }
    }
    drop(open);
    prop_assert!(tree.verify_conservation().is_ok());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tree_matches_the_sequential_reference(
        spec in gen_nodes(),
        ops in prop::collection::vec(gen_op(), 1..80),
    ) {
        run(&spec, &ops)?;
    }
}
