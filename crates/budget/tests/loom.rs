//! Loom models of the engine's races, run on the real code through `src/sync.rs`.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p calybris-budget --test loom --release`
//!
//! Each model explores every interleaving (up to the preemption bound) of a
//! few threads and asserts that no interleaving loses an update, grants a
//! microcent twice, or lets a snapshot see books that do not balance.

#![cfg(loom)]

use calybris_budget::{
    BudgetEngine, BudgetError, BudgetSnapshot, BudgetTree, NodeScope, NodeSpec, RestoreError,
    TenantLedger, WindowSpec,
};
use loom::sync::Arc;
use loom::thread;

fn engine_with(tenant_id: &str, initial_microcents: i64) -> Arc<BudgetEngine> {
    let engine = BudgetEngine::new();
    engine
        .ensure_tenant(tenant_id, initial_microcents)
        .expect("a fresh engine accepts a valid tenant");
    Arc::new(engine)
}

fn row(engine: &BudgetEngine, tenant_id: &str) -> TenantLedger {
    engine.ledger(tenant_id).expect("the tenant exists")
}

/// A chain node of a lifetime window, for the tree models.
fn chain_node(
    name: &str,
    parent: Option<calybris_budget::tree::NodeId>,
    limit_microcents: i64,
    alert_thresholds_bps: &[u16],
) -> NodeSpec {
    NodeSpec {
        name: name.to_owned(),
        parent,
        scope: NodeScope::Chain,
        limit_microcents,
        window: WindowSpec::Lifetime,
        start_window: 0,
        alert_thresholds_bps: alert_thresholds_bps.to_vec(),
    }
}

/// The 50 % alert of the first tree model.
const ALERTS: &[u16] = &[5_000];

/// Opens `node`'s window 1 on another thread (the reset a tree model races).
fn reset_in_thread(
    tree: &Arc<BudgetTree>,
    node: calybris_budget::tree::NodeId,
) -> thread::JoinHandle<calybris_budget::tree::WindowReset> {
    let tree = Arc::clone(tree);
    thread::spawn(move || {
        tree.advance_window(node, 1)
            .expect("forward")
            .expect("opened once")
    })
}

fn assert_balanced(snapshot: &BudgetSnapshot) {
    assert_eq!(snapshot.verify_conservation(), Ok(()), "{snapshot:?}");
}

#[test]
fn two_reservations_race_for_the_last_unit() {
    loom::model(|| {
        let engine = engine_with("t", 1);
        let handle = engine.tenant("t").expect("the tenant exists");
        let other = handle.clone();
        let racer = thread::spawn(move || other.try_reserve(1).map(|hold| hold.into_id()));
        let mine = handle.try_reserve(1);
        let theirs = racer.join().expect("the racer does not panic");
        let wins = usize::from(mine.is_ok()) + usize::from(theirs.is_ok());
        assert_eq!(wins, 1, "exactly one racer gets the last unit");
        let loser = if mine.is_ok() {
            theirs.err()
        } else {
            mine.err()
        };
        assert_eq!(
            loser,
            Some(BudgetError::Insufficient {
                remaining_microcents: 0,
                requested_microcents: 1
            })
        );
        let books = row(&engine, "t");
        assert_eq!(
            (books.remaining_microcents, books.reserved_microcents),
            (0, 1)
        );
    });
}

#[test]
fn commit_races_with_a_snapshot() {
    loom::model(|| {
        let engine = engine_with("t", 10);
        let handle = engine.tenant("t").expect("the tenant exists");
        let committer = thread::spawn(move || {
            let hold = handle.try_reserve(4).expect("4 of 10 is available");
            hold.commit(3).expect("3 is within the hold");
        });
        let during = engine.snapshot();
        assert_balanced(&during);
        let books = &during.tenants[0];
        // Only whole states: before, holding, or committed.
        let seen = (books.remaining_microcents, books.reserved_microcents);
        assert!(matches!(seen, (10, 0) | (6, 4) | (7, 0)), "{during:?}");
        assert_eq!(during.active_reservations, u64::from(seen == (6, 4)));
        committer.join().expect("no panic");
        let after = row(&engine, "t");
        assert_eq!(
            (
                after.remaining_microcents,
                after.reserved_microcents,
                after.committed_microcents
            ),
            (7, 0, 3)
        );
    });
}

#[test]
fn commit_races_with_a_release() {
    loom::model(|| {
        let engine = engine_with("t", 10);
        let handle = engine.tenant("t").expect("the tenant exists");
        let committer = {
            let handle = handle.clone();
            thread::spawn(move || {
                let hold = handle.try_reserve(4).expect("4 of 10 is available");
                hold.commit(3).expect("3 is within the hold");
            })
        };
        let hold = handle.try_reserve(5).expect("5 of 10 is available");
        hold.release();
        committer.join().expect("no panic");
        let after = engine.snapshot();
        assert_eq!(after.active_reservations, 0);
        let books = &after.tenants[0];
        assert_eq!(
            (
                books.initial_microcents,
                books.remaining_microcents,
                books.reserved_microcents,
                books.committed_microcents
            ),
            (10, 7, 0, 3)
        );
    });
}

#[test]
fn top_up_races_with_a_reservation_that_needs_it() {
    loom::model(|| {
        let engine = engine_with("t", 1);
        let topper = {
            let engine = Arc::clone(&engine);
            thread::spawn(move || engine.top_up("t", 5).expect("no overflow"))
        };
        let reserved = engine.try_reserve("t", 3);
        match &reserved {
            Ok(_) => {}
            Err(BudgetError::Insufficient {
                remaining_microcents,
                ..
            }) => assert_eq!(*remaining_microcents, 1, "saw only the opening budget"),
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
        let committed = match reserved {
            Ok(hold) => hold.commit(3).map(|s| s.committed_microcents).unwrap_or(0),
            Err(_) => 0,
        };
        topper.join().expect("no panic");
        let books = row(&engine, "t");
        assert_eq!(books.initial_microcents, 6);
        assert_eq!(books.committed_microcents, committed);
        assert_eq!(books.remaining_microcents, 6 - committed);
        assert_eq!(books.reserved_microcents, 0);
    });
}

#[test]
fn overrun_commit_races_with_a_reservation_for_the_same_budget() {
    loom::model(|| {
        let engine = engine_with("t", 10);
        let handle = engine.tenant("t").expect("the tenant exists");
        let hold = handle.try_reserve(4).expect("4 of 10 is available");
        let overrunner = thread::spawn(move || hold.commit_with_overrun(8).is_ok());
        let other = handle.try_reserve(5);
        let overrun_ok = overrunner.join().expect("no panic");
        // 4 held + 4 more for the overrun + 5 for the other = 13 > 10: at most
        // one of the two can get the last 6 microcents' worth it needs.
        let other_ok = other.is_ok();
        assert!(
            !(overrun_ok && other_ok),
            "both were granted: the budget went below zero"
        );
        assert!(overrun_ok || other_ok, "one of them fits on its own");
        drop(other);
        // A refused overrun hands the hold back and the thread dropped it, so
        // either way no hold remains.
        let books = row(&engine, "t");
        assert_eq!(books.reserved_microcents, 0);
        assert_eq!(books.committed_microcents, if overrun_ok { 8 } else { 0 });
        assert_eq!(
            books.remaining_microcents + books.reserved_microcents + books.committed_microcents,
            10
        );
    });
}

#[test]
fn restore_races_with_a_reservation() {
    loom::model(|| {
        let engine = engine_with("t", 10);
        let saved = engine.snapshot();
        let reserver = {
            let engine = Arc::clone(&engine);
            thread::spawn(move || {
                engine
                    .try_reserve("t", 2)
                    .map(|hold| hold.commit(2).is_ok())
            })
        };
        let restored = engine.restore(&saved);
        let reserved = reserver.join().expect("no panic");
        assert_eq!(reserved, Ok(true), "the tenant survives the restore");
        match restored {
            Ok(()) | Err(RestoreError::ActiveReservations { count: 1 }) => {}
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
        // Whether the restore landed before or after the commit, or was
        // refused, the books are one of two whole states and balance.
        let after = engine.snapshot();
        assert_balanced(&after);
        assert_eq!(after.active_reservations, 0);
        let committed = after.tenants[0].committed_microcents;
        assert!(committed == 0 || committed == 2, "{after:?}");
    });
}

#[test]
fn top_up_races_with_a_snapshot() {
    loom::model(|| {
        let engine = engine_with("t", 1);
        let topper = {
            let engine = Arc::clone(&engine);
            thread::spawn(move || engine.top_up("t", 5).expect("no overflow"))
        };
        let during = engine.snapshot();
        assert_balanced(&during);
        let books = &during.tenants[0];
        let seen = (books.initial_microcents, books.remaining_microcents);
        assert!(matches!(seen, (1, 1) | (6, 6)), "{during:?}");
        topper.join().expect("no panic");
        assert_eq!(row(&engine, "t").initial_microcents, 6);
    });
}

/// Three parties at once: a committer, a releaser and a snapshot. The model is
/// explored with one preemption (the spin-waits of three threads make deeper
/// bounds explode the state space); the two-party models above cover two.
#[test]
fn commit_and_release_race_with_a_snapshot() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    builder.check(|| {
        let engine = engine_with("t", 10);
        let handle = engine.tenant("t").expect("the tenant exists");
        let committer = {
            let handle = handle.clone();
            thread::spawn(move || {
                let hold = handle.try_reserve(4).expect("4 of 10 is available");
                hold.commit(3).expect("3 is within the hold");
            })
        };
        let releaser = thread::spawn(move || {
            let hold = handle.try_reserve(5).expect("5 of 10 is available");
            hold.release();
        });
        let during = engine.snapshot();
        assert_balanced(&during);
        committer.join().expect("no panic");
        releaser.join().expect("no panic");
        let books = row(&engine, "t");
        assert_eq!(
            (
                books.remaining_microcents,
                books.reserved_microcents,
                books.committed_microcents
            ),
            (7, 0, 3)
        );
    });
}

/// A key -> team reservation races a reset of the team's window: whichever way it
/// falls, the hold settles in the window it was taken in, the reset expires exactly
/// what was spendable at its instant, and every window balances.
#[test]
fn two_level_reservation_races_a_reset() {
    loom::model(|| {
        let tree = Arc::new(BudgetTree::new());
        let team = tree
            .define(chain_node("team", None, 10, ALERTS))
            .expect("valid");
        let key = tree
            .define(chain_node("key", Some(team), 10, ALERTS))
            .expect("valid");
        let plan = tree.plan(key, &[]).expect("valid");
        let resetter = reset_in_thread(&tree, team);
        let hold = tree.try_reserve(&plan, 6).expect("both levels cover 6");
        let team_window = hold
            .windows()
            .find(|(node, _)| *node == team)
            .map(|(_, window)| window)
            .expect("the team is held");
        let settled = hold.commit(5).expect("within the hold");
        let reset = resetter.join().expect("no panic");
        tree.verify_conservation().expect("every window balances");
        let books = tree.books(team).expect("exists");
        assert_eq!(books.len(), 1, "no hold is left open");
        let now = books[0];
        assert_eq!(now.window, 1);
        if team_window == 0 {
            // Held before the reset: the new window is untouched; the reset
            // expired 10 - 6 (hold open) or 10 - 5 (already committed).
            assert_eq!(
                (now.remaining_microcents, now.committed_microcents),
                (10, 0)
            );
            assert!(matches!(reset.expired_microcents, 4 | 5), "{reset:?}");
            assert_eq!(reset.open_holds, u64::from(reset.expired_microcents == 4));
        } else {
            assert_eq!(team_window, 1);
            assert_eq!((now.remaining_microcents, now.committed_microcents), (5, 5));
            assert_eq!(reset.expired_microcents, 10);
        }
        // 5 of 10 is 50 %: the team's alert fires once, in the hold's window.
        assert!(
            settled
                .alerts
                .iter()
                .any(|a| a.node == team && a.window == team_window)
        );
    });
}

/// An overrun commit of a key -> team hold races a reset of the team's window:
/// whichever way it falls, the excess comes out of what the hold's window had
/// spendable (its `remaining`, or once closed its expired rest) and the rest is
/// overrun, and every window balances with the overrun term.
#[test]
fn overrun_commit_races_a_reset() {
    loom::model(|| {
        let tree = Arc::new(BudgetTree::new());
        let team = tree
            .define(chain_node("team", None, 10, &[]))
            .expect("valid");
        let key = tree
            .define(chain_node("key", Some(team), 100, &[]))
            .expect("valid");
        let plan = tree.plan(key, &[]).expect("valid");
        let hold = tree.try_reserve(&plan, 6).expect("both levels cover 6");
        // A second hold on the team alone keeps window 0 in view after the reset.
        let witness = tree
            .try_reserve(&tree.plan(team, &[]).expect("valid"), 1)
            .expect("the team covers 1");
        let resetter = reset_in_thread(&tree, team);
        // 7 over the hold of 6, with 3 spendable in window 0.
        let _settled = hold.commit_with_overrun(13).expect("the overrun path");
        let reset = resetter.join().expect("no panic");
        tree.verify_conservation().expect("every window balances");
        // Overrun first: 3 from remaining, 4 overrun, the reset expires 0. Reset
        // first: 3 expired, then taken back from the expired rest, 4 overrun. Either
        // way window 0 ends the same.
        assert!(matches!(reset.expired_microcents, 0 | 3), "{reset:?}");
        let books = tree.books(team).expect("exists");
        assert_eq!(books.len(), 2, "window 0 is kept for the witness");
        assert_eq!(
            (books[0].window, books[0].remaining_microcents),
            (1, 10),
            "the new window is untouched"
        );
        let old = books[1];
        assert_eq!(
            (
                old.window,
                old.remaining_microcents,
                old.reserved_microcents,
                old.committed_microcents,
                old.expired_microcents,
                old.overrun_microcents
            ),
            (0, 0, 1, 13, 0, 4)
        );
        drop(witness);
        let key_books = tree.books(key).expect("exists")[0];
        assert_eq!(
            (key_books.committed_microcents, key_books.overrun_microcents),
            (13, 0)
        );
    });
}
