//! The fold of budget nodes, windows and alerts (records 13 to 16 and decision
//! scopes): a hold open across a reset settles in its own window, a double or a
//! missed reset is refused, an alert fires once per window, an overspend at any level
//! is refused, and every refused record leaves the books exactly as they were.

use calybris_digest::{decision_digest, input_digest};
use calybris_gate::record::{GateDecision, LogHeader, SettlementRecord, TenantCreated};
use calybris_gate::windows::{
    AlertFiredRecord, BudgetDefined, BudgetScope, BudgetTopUp, BudgetWindow, ScopeHold,
    WindowError, WindowResetRecord,
};
use calybris_gate::{
    Books, BooksError, BudgetOutcome, GATE_FORMAT_VERSION, GateRecord, SettlementKind,
};
use calybris_kernel::{KernelAction, KernelDecision, KernelInput, KernelReason};
use calybris_wal::{DecisionMeta, DecisionRecord};

fn decision(sequence: u64, cost: u64, budget: BudgetOutcome, scopes: &[(&str, u64)]) -> GateRecord {
    let input = KernelInput {
        request_sequence: sequence,
        requested_model_id: 1,
        input_tokens: 1,
        ..KernelInput::default()
    };
    let decision = KernelDecision {
        request_sequence: sequence,
        action: KernelAction::ExecuteRequested,
        reason: KernelReason::RequestedModelMaximizesUtility,
        selected_model_id: 1,
        selected_model_index: 0,
        estimated_cost_microunits: cost,
        expected_utility_microunits: 1,
        counterfactual_model_id: 0,
        counterfactual_utility_microunits: 0,
        evaluated_models: 1,
        eligible_models: 1,
        policy_epoch: 0,
        catalog_epoch: 0,
    };
    GateRecord::Decision(GateDecision {
        audit: DecisionRecord {
            input,
            decision,
            policy_digest: calybris_digest::Digest::from([0; 32]),
            input_digest: input_digest(&input),
            decision_digest: decision_digest(&decision),
            meta: DecisionMeta::default(),
        },
        tenant: "t".into(),
        budget,
        scopes: scopes
            .iter()
            .map(|(node, window)| ScopeHold {
                node: (*node).into(),
                window: *window,
            })
            .collect(),
        holdout: None,
        shadow: None,
        adaptive: None,
    })
}

fn reserved(sequence: u64, cost: u64, scopes: &[(&str, u64)]) -> GateRecord {
    decision(
        sequence,
        cost,
        BudgetOutcome::Reserved {
            amount_microunits: cost,
        },
        scopes,
    )
}

fn node(name: &str, parent: Option<&str>, scope: BudgetScope, limit: u64) -> GateRecord {
    GateRecord::BudgetDefined(BudgetDefined {
        node: name.into(),
        parent: parent.map(Into::into),
        scope,
        limit_microunits: limit,
        window: BudgetWindow::Daily {
            utc_offset_minutes: 0,
        },
        start_window: 10,
        alert_thresholds_bps: vec![5_000, 10_000],
    })
}

fn commit(sequence: u64, actual: u64) -> GateRecord {
    GateRecord::Settlement(SettlementRecord {
        decision_sequence: sequence,
        tenant: "t".into(),
        kind: SettlementKind::Commit {
            actual_microunits: actual,
        },
    })
}

fn reset(name: &str, from: u64, to: u64, expired: u64) -> GateRecord {
    GateRecord::WindowReset(WindowResetRecord {
        node: name.into(),
        from_window: from,
        to_window: to,
        expired_microunits: expired,
        recorded_at_unix_ms: to * 86_400_000,
    })
}

fn alert(name: &str, window: u64, bps: u16) -> GateRecord {
    GateRecord::AlertFired(AlertFiredRecord {
        node: name.into(),
        window,
        threshold_bps: bps,
        committed_microunits: 0,
        granted_microunits: 0,
    })
}

/// Applies `record` as the next record, asserting a refusal leaves the books as they were.
fn apply(books: &mut Books, record: &GateRecord) -> Result<(), BooksError> {
    let before = books.clone();
    let sequence = books.records();
    let result = books.apply(sequence, record);
    if result.is_err() {
        assert_eq!(*books, before, "a refused record changed the books");
    }
    result
}

fn start() -> Books {
    let mut books = Books::new();
    let setup = [
        GateRecord::Header(LogHeader {
            format_version: GATE_FORMAT_VERSION,
        }),
        GateRecord::TenantCreated(TenantCreated {
            tenant: "t".into(),
            initial_microunits: 1_000_000,
        }),
        node("org", None, BudgetScope::Chain, 10_000),
        node("team", Some("org"), BudgetScope::Chain, 100),
        node("key", Some("team"), BudgetScope::Chain, 1_000),
        node("model", None, BudgetScope::Model("m".into()), 5_000),
    ];
    for record in &setup {
        apply(&mut books, record).expect("setup folds");
    }
    books
}

const PLAN: [(&str, u64); 4] = [("org", 10), ("team", 10), ("key", 10), ("model", 10)];

#[test]
fn a_hold_across_a_reset_settles_in_its_window() {
    let mut books = start();
    apply(&mut books, &reserved(6, 60, &PLAN)).expect("fits every level");
    // The team's window closes with 60 held and 40 spendable: 40 expires.
    assert!(matches!(
        apply(&mut books, &reset("team", 10, 11, 60)),
        Err(BooksError::Windows(WindowError::WrongExpiry { .. }))
    ));
    apply(&mut books, &reset("team", 10, 11, 40)).expect("the right expiry");
    // A second reset to the same window is refused: exactly once.
    assert!(matches!(
        apply(&mut books, &reset("team", 10, 11, 40)),
        Err(BooksError::Windows(WindowError::WrongWindow { .. }))
    ));
    // A decision naming the closed window after the reset is refused: no missed reset.
    assert!(matches!(
        apply(&mut books, &reserved(8, 10, &PLAN)),
        Err(BooksError::Windows(WindowError::WrongWindow { .. }))
    ));
    apply(&mut books, &commit(6, 50)).expect("within the hold");
    let team = books.windows().books("team").expect("defined");
    // Window 11 is untouched; closed window 10 is kept while its 50 % alert is due.
    assert_eq!(team[0].window, 11);
    assert_eq!(
        (team[0].remaining_microunits, team[0].committed_microunits),
        (100, 0)
    );
    let closed = team[1];
    assert_eq!(closed.window, 10);
    assert_eq!(
        (
            closed.committed_microunits,
            closed.expired_microunits,
            closed.reserved_microunits
        ),
        (50, 50, 0)
    );
    assert_eq!(closed.imbalance(), 0);
    assert_eq!(
        books.windows().pending_alerts(),
        vec![("team".to_owned(), 10, 5_000)]
    );
    apply(&mut books, &alert("team", 10, 5_000)).expect("reached in window 10");
    assert!(books.windows().pending_alerts().is_empty());
    // Fired once per window.
    assert!(matches!(
        apply(&mut books, &alert("team", 10, 5_000)),
        Err(BooksError::Windows(WindowError::BadAlert { .. }))
    ));
}

#[test]
fn the_binding_level_refuses_in_log_order() {
    let mut books = start();
    apply(&mut books, &reserved(6, 70, &PLAN)).expect("fits");
    // The team has 30 left: a hold of 40 is an overspend at the team.
    let refused = apply(&mut books, &reserved(7, 40, &PLAN));
    assert!(
        matches!(&refused, Err(BooksError::Windows(WindowError::Overspend { node, .. })) if node == "team"),
        "{refused:?}"
    );
    // A refusal by the team is logged as Insufficient naming the team alone.
    apply(
        &mut books,
        &decision(
            7,
            40,
            BudgetOutcome::Insufficient {
                remaining_microunits: 30,
            },
            &[("team", 10)],
        ),
    )
    .expect("a refusal names its node");
    // Not a key with its ancestors: the team is missing from the chain.
    assert!(matches!(
        apply(&mut books, &reserved(8, 1, &[("org", 10), ("key", 10)])),
        Err(BooksError::Windows(WindowError::BadScopes { .. }))
    ));
    // An alert not reached yet is refused.
    assert!(matches!(
        apply(&mut books, &alert("team", 10, 10_000)),
        Err(BooksError::Windows(WindowError::BadAlert { .. }))
    ));
    apply(
        &mut books,
        &GateRecord::BudgetTopUp(BudgetTopUp {
            node: "team".into(),
            window: 10,
            amount_microunits: 50,
        }),
    )
    .expect("a top-up of the current window");
    apply(&mut books, &reserved(9, 40, &PLAN)).expect("fits after the top-up");
    let team = books.windows().books("team").expect("defined");
    assert_eq!(
        (
            team[0].granted_microunits,
            team[0].remaining_microunits,
            team[0].reserved_microunits
        ),
        (150, 40, 110)
    );
    // The overrun path: the excess comes out of what each node has spendable, the
    // rest is the node's overrun, and every window still balances.
    let overrun = |sequence, actual_microunits| {
        GateRecord::Settlement(SettlementRecord {
            decision_sequence: sequence,
            tenant: "t".into(),
            kind: SettlementKind::CommitWithOverrun { actual_microunits },
        })
    };
    apply(&mut books, &overrun(6, 80)).expect("10 over, 40 spendable at the team");
    apply(&mut books, &overrun(9, 100)).expect("60 over, 30 spendable at the team");
    let team = books.windows().books("team").expect("defined")[0];
    assert_eq!(
        (
            team.remaining_microunits,
            team.reserved_microunits,
            team.committed_microunits,
            team.overrun_microunits
        ),
        (0, 0, 180, 30)
    );
    assert_eq!(team.imbalance(), 0);
    let org = books.windows().books("org").expect("defined")[0];
    assert_eq!((org.committed_microunits, org.overrun_microunits), (180, 0));
}

#[test]
fn definitions_are_checked() {
    let mut books = start();
    for bad in [
        node("org", None, BudgetScope::Chain, 1),
        node("scoped", Some("org"), BudgetScope::Tag("x".into()), 1),
        node("orphan", Some("nobody"), BudgetScope::Chain, 1),
        node("under-model", Some("model"), BudgetScope::Chain, 1),
    ] {
        assert!(apply(&mut books, &bad).is_err(), "{bad:?}");
    }
    apply(&mut books, &node("sub", Some("key"), BudgetScope::Chain, 1)).expect("depth 4");
    assert!(
        apply(
            &mut books,
            &node("too-deep", Some("sub"), BudgetScope::Chain, 1)
        )
        .is_err()
    );
}

#[path = "common/mod.rs"]
mod common;

/// The running gate: a reset is logged when the caller's clock passes the boundary,
/// a hold open across it settles in its own window, the team refuses by name, an
/// alert is logged and published, and a reopen rebuilds the node in its window.
#[test]
fn the_gate_resets_on_the_callers_clock_and_settles_in_the_old_window() {
    use calybris_gate::{BudgetRoute, CallerMeta, Gate, GateConfig, VerifyOptions, verify_dir};
    let dir = common::TempDir::new("windows-gate");
    let config = || {
        GateConfig::new(&dir.0, common::policy(false))
            .tenant("t", 1_000_000)
            .clock(|| 0)
    };
    let gate = Gate::open(config()).expect("opens");
    let fixed = |name: &str, parent: Option<&str>, limit| BudgetDefined {
        node: name.into(),
        parent: parent.map(Into::into),
        scope: BudgetScope::Chain,
        limit_microunits: limit,
        window: BudgetWindow::Fixed {
            duration_ms: 1_000,
            origin_unix_ms: 0,
        },
        start_window: 1,
        alert_thresholds_bps: vec![5_000],
    };
    for node in [
        fixed("org", None, 1_000_000),
        fixed("team", Some("org"), 2_000),
        fixed("key", Some("team"), 1_000_000),
        // Provider 0 serves both models; without names it is named "0".
        BudgetDefined {
            scope: BudgetScope::Provider("0".into()),
            ..fixed("provider-0", None, 1_000_000)
        },
    ] {
        let _ticket = gate.define_budget(&node).expect("valid");
    }
    let alerts = gate.subscribe_alerts();
    let route = BudgetRoute {
        key: "key".into(),
        scopes: Vec::new(),
    };
    let at = |ms| CallerMeta {
        request_id: [0; 16],
        recorded_at_unix_ms: ms,
    };
    // Model 2 is selected: 1,500 per request.
    let first = gate
        .decide_budgeted("t", common::request(1, 2), at(1_500), &route)
        .expect("decides");
    assert!(first.is_admitted());
    let provider = gate.budget_books("provider-0").expect("defined");
    assert_eq!(
        provider[0].reserved_microcents, 1_500,
        "the provider scope is held"
    );
    let second = gate
        .decide_budgeted("t", common::request(2, 2), at(1_600), &route)
        .expect("decides");
    assert!(!second.is_admitted(), "the team has 500 left");
    drop(second);
    let third = gate
        .decide_budgeted("t", common::request(3, 2), at(2_500), &route)
        .expect("decides");
    assert!(third.is_admitted(), "window 2 opened with a fresh 2,000");
    gate.settle(first, 1_500).expect("settles");
    let alert = alerts
        .try_recv()
        .expect("the team's 50 % alert of window 1");
    assert_eq!((alert.window, alert.threshold_bps), (1, 5_000));
    let team = gate.budget_books("team").expect("defined");
    assert_eq!(team.len(), 1, "window 1 is settled and forgotten");
    assert_eq!((team[0].window, team[0].reserved_microcents), (2, 1_500));
    drop(third);
    gate.close().expect("closes");
    let report = verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
    assert!(report.conservation.balanced);
    let gate = Gate::open(config()).expect("reopens");
    let team = gate.budget_books("team").expect("rebuilt");
    assert_eq!(
        (
            team[0].window,
            team[0].remaining_microcents,
            team[0].reserved_microcents
        ),
        (2, 2_000, 0)
    );
    gate.close().expect("closes");
}

/// A fixed-window chain for the gate tests: org -> team -> key, 1-second windows.
fn fixed_node(name: &str, parent: Option<&str>, limit: u64) -> BudgetDefined {
    BudgetDefined {
        node: name.into(),
        parent: parent.map(Into::into),
        scope: BudgetScope::Chain,
        limit_microunits: limit,
        window: BudgetWindow::Fixed {
            duration_ms: 1_000,
            origin_unix_ms: 0,
        },
        start_window: 0,
        alert_thresholds_bps: vec![5_000, 8_000],
    }
}

/// Defines org -> team -> key (fixed 1-second windows; the team's limit is
/// `team_limit`) and, with `provider`, the scope node of provider 0.
fn define_chain(gate: &calybris_gate::Gate, team_limit: u64, provider: bool) {
    let mut nodes = vec![
        fixed_node("org", None, 10_000_000),
        fixed_node("team", Some("org"), team_limit),
        fixed_node("key", Some("team"), 10_000_000),
    ];
    if provider {
        nodes.push(BudgetDefined {
            scope: BudgetScope::Provider("0".into()),
            ..fixed_node("provider-0", None, 10_000_000)
        });
    }
    for node in &nodes {
        let _ticket = gate.define_budget(node).expect("valid");
    }
}

/// The route through key "key".
fn key_route() -> calybris_gate::BudgetRoute {
    calybris_gate::BudgetRoute {
        key: "key".into(),
        scopes: Vec::new(),
    }
}

/// Caller metadata at `ms` on the caller's clock.
fn at(ms: u64) -> calybris_gate::CallerMeta {
    calybris_gate::CallerMeta {
        request_id: [0; 16],
        recorded_at_unix_ms: ms,
    }
}

/// Retention with budget nodes, end to end: book snapshots carry the nodes, their
/// windows and the open holds' nodes, so old segments are retired while windows
/// reset, alerts fire, decisions are refused by the team and one hold stays open
/// across every reset, snapshot and retirement; the retained suffix verifies from its
/// anchor (conservation per node and window from the snapshot on), and a reopen
/// rebuilds every node's books as they were.
#[test]
fn retention_retires_a_log_with_budget_nodes_and_the_suffix_verifies() {
    use calybris_gate::{Gate, GateConfig, ReservationId, Retention, VerifyOptions, verify_dir};
    use std::collections::VecDeque;
    let dir = common::TempDir::new("windows-retention");
    let config = || {
        GateConfig::new(&dir.0, common::policy(false))
            .tenant("t", u64::MAX / 4)
            .clock(|| 0)
            .snapshot_every_records(200)
            .segment_limit_bytes(16 * 1024)
            .retention(Retention::SinceLastSnapshot)
    };
    let gate = Gate::open(config()).expect("opens");
    define_chain(&gate, 100_000, true);
    let route = key_route();
    let alerts = gate.subscribe_alerts();
    let mut parked: Option<ReservationId> = None;
    let mut in_flight = VecDeque::new();
    let (mut admitted, mut refused) = (0_u32, 0_u32);
    for k in 0..3_000_u64 {
        // About 140 decisions per 1-second window: the team (100,000 per window at
        // 1,500 a decision) refuses the last ~70 of each.
        let admission = gate
            .decide_budgeted("t", common::request(k, 2), at(k * 7), &route)
            .expect("decides");
        if !admission.is_admitted() {
            refused += 1;
            continue;
        }
        admitted += 1;
        if parked.is_none() {
            parked = admission.into_reservation_id();
            continue;
        }
        // Three holds stay open at any time, so snapshots catch holds of windows
        // that a reset has closed.
        in_flight.push_back(admission);
        if in_flight.len() > 3
            && let Some(oldest) = in_flight.pop_front()
        {
            let cost = oldest.budget().held_microunits();
            let _settled = gate.settle(oldest, cost - k % 3).expect("settles");
        }
    }
    for admission in in_flight {
        let _settled = gate.release(admission).expect("releases");
    }
    assert!(
        admitted > 1_000 && refused > 1_000,
        "{admitted} admitted, {refused} refused"
    );
    let snapshots = gate.snapshots_taken();
    assert!(snapshots >= 10, "{snapshots} snapshots");
    let start = gate.start_anchor().expect("old segments were retired");
    assert!(start.next_sequence > 0);
    // The parked hold settles in window 0, closed ~20 resets and every retirement ago.
    let settled = gate
        .settle_by_id(parked.expect("admitted"), 1_000)
        .expect("settles in its own window");
    settled.ticket.expect("logged").wait().expect("durable");
    let fired: Vec<_> = alerts.try_iter().collect();
    assert!(fired.len() >= 40, "{} alerts", fired.len());
    let nodes = ["org", "team", "key", "provider-0"];
    let before: Vec<_> = nodes
        .iter()
        .map(|node| gate.budget_books(node).expect("defined"))
        .collect();
    assert!(
        before.iter().all(|books| books.len() == 1),
        "no hold is left open"
    );
    gate.close().expect("closes");

    let report = verify_dir(
        &dir.0,
        &VerifyOptions {
            start_anchor: Some(start),
            ..VerifyOptions::default()
        },
    )
    .expect("the retained suffix verifies from its start anchor");
    assert!(report.conservation.balanced);
    assert!(report.counts.snapshots >= 1);

    let gate = Gate::open(config()).expect("reopens from the last snapshot");
    for (node, books) in nodes.iter().zip(&before) {
        assert_eq!(
            &gate.budget_books(node).expect("rebuilt"),
            books,
            "node {node} rebuilt from the snapshot and the records after it"
        );
    }
    gate.close().expect("closes");
}

/// The budget section of a book snapshot round-trips through the fold, and a
/// snapshot whose node books or holds do not add up is refused.
#[test]
fn a_snapshot_carries_the_budget_nodes_and_is_checked() {
    use calybris_gate::record::BookSnapshot;
    let mut books = start();
    apply(&mut books, &reserved(6, 60, &PLAN)).expect("fits");
    apply(&mut books, &reset("team", 10, 11, 40)).expect("resets");
    let snapshot = books.snapshot(calybris_digest::Digest::from([7; 32]));
    assert_eq!(snapshot.budget_nodes.len(), 4);
    assert_eq!(snapshot.budget_holds.len(), 1);
    let team = &snapshot.budget_nodes[1];
    assert_eq!(
        team.definition.start_window, 11,
        "restated in its current window"
    );
    assert_eq!(
        team.windows.len(),
        2,
        "the closed window with its open hold is kept"
    );
    let restored = Books::from_snapshot(&snapshot).expect("a well-formed snapshot");
    assert_eq!(restored.snapshot(snapshot.policy_digest), snapshot);
    assert_eq!(
        restored.windows().books("team"),
        books.windows().books("team")
    );
    let broken = |edit: &dyn Fn(&mut BookSnapshot)| {
        let mut forged = snapshot.clone();
        edit(&mut forged);
        Books::from_snapshot(&forged).expect_err("a forged budget section is refused")
    };
    let refusals = [
        broken(&|s| s.budget_nodes[1].windows[0].reserved_microunits += 1),
        broken(&|s| s.budget_nodes[1].windows[0].open_holds = 0),
        broken(&|s| s.budget_nodes[1].windows[1].remaining_microunits -= 1),
        broken(&|s| s.budget_holds[0].held_microunits = 59),
        broken(&|s| {
            s.budget_holds[0].nodes.remove(0);
        }),
        broken(&|s| s.budget_nodes[1].windows.reverse()),
        broken(&|s| s.budget_nodes.swap(0, 1)),
    ];
    for refusal in refusals {
        assert!(
            matches!(
                refusal,
                BooksError::Windows(_) | BooksError::SnapshotMismatch { .. }
            ),
            "{refusal:?}"
        );
    }
}

/// Every record of the gate log in `dir`.
fn log_records(dir: &std::path::Path) -> Vec<GateRecord> {
    let mut reader = calybris_wal::SegmentedReader::<GateRecord>::open(
        &dir.join(calybris_gate::LOG_DIR),
        None,
        None,
    )
    .expect("reader");
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry().expect("entry") {
        out.push(entry.record);
    }
    out
}

/// The alert-loss edge: a crash between a settlement that reached a threshold and its
/// alert record, then a reset of that window before the gate reopens. The closed
/// window has no open hold, yet the fold keeps it while its alert is due, so the
/// reopened gate logs the alert (once) and the log verifies.
#[test]
fn an_alert_due_in_a_window_closed_before_reopen_is_logged_at_reopen() {
    use calybris_gate::{BudgetRoute, CallerMeta, Gate, GateConfig, VerifyOptions, verify_dir};
    let written = common::TempDir::new("windows-alert-written");
    let config = |dir: &std::path::Path| {
        GateConfig::new(dir, common::policy(false))
            .tenant("t", 1_000_000)
            .clock(|| 0)
    };
    let gate = Gate::open(config(&written.0)).expect("opens");
    let _ticket = gate
        .define_budget(&BudgetDefined {
            alert_thresholds_bps: vec![5_000],
            ..fixed_node("key", None, 2_000)
        })
        .expect("valid");
    let route = BudgetRoute {
        key: "key".into(),
        scopes: Vec::new(),
    };
    let admission = gate
        .decide_budgeted(
            "t",
            common::request(1, 2),
            CallerMeta {
                request_id: [0; 16],
                recorded_at_unix_ms: 100,
            },
            &route,
        )
        .expect("decides");
    assert!(admission.is_admitted());
    // 1,500 of 2,000 reaches 50 %: the settlement is followed by its alert record.
    let _settled = gate.settle(admission, 1_500).expect("settles");
    gate.close().expect("closes");
    let mut records = log_records(&written.0);
    let alert = records.pop().expect("the log ends with the alert");
    assert!(
        matches!(&alert, GateRecord::AlertFired(a) if a.window == 0 && a.threshold_bps == 5_000),
        "{alert:?}"
    );
    assert!(matches!(records.last(), Some(GateRecord::Settlement(_))));
    // The crash cut the alert; then window 0 closed (500 spendable expires) before
    // the gate reopened.
    records.push(reset("key", 0, 1, 500));
    let crashed = common::TempDir::new("windows-alert-crashed");
    std::fs::create_dir_all(&crashed.0).expect("dir");
    let wal = calybris_wal::DurableWal::<GateRecord>::open(
        &crashed.0.join(calybris_gate::LOG_DIR),
        calybris_wal::DurableConfig::default(),
    )
    .expect("open");
    for record in &records {
        let _ticket = wal.append(record).expect("append");
    }
    wal.close().expect("close");
    verify_dir(&crashed.0, &VerifyOptions::default()).expect("a log with a due alert verifies");

    let alerts_of = |dir: &std::path::Path| -> Vec<AlertFiredRecord> {
        log_records(dir)
            .into_iter()
            .filter_map(|record| match record {
                GateRecord::AlertFired(alert) => Some(alert),
                _ => None,
            })
            .collect()
    };
    assert!(alerts_of(&crashed.0).is_empty());
    Gate::open(config(&crashed.0))
        .expect("reopens")
        .close()
        .expect("closes");
    let logged = alerts_of(&crashed.0);
    assert_eq!(
        logged.len(),
        1,
        "the due alert is logged at reopen: {logged:?}"
    );
    assert_eq!(
        (
            logged[0].window,
            logged[0].threshold_bps,
            logged[0].committed_microunits
        ),
        (0, 5_000, 1_500)
    );
    let report = verify_dir(&crashed.0, &VerifyOptions::default()).expect("verifies");
    assert!(report.conservation.balanced);
    // Fired once: the window is forgotten after its alert, a second reopen adds none.
    Gate::open(config(&crashed.0))
        .expect("reopens")
        .close()
        .expect("closes");
    assert_eq!(alerts_of(&crashed.0).len(), 1);
    verify_dir(&crashed.0, &VerifyOptions::default()).expect("verifies");
}

/// The overrun path on budget nodes: a settlement above its hold is logged as an
/// overrun and accounted at every node it held, each node taking the excess from
/// what it has spendable and recording the rest as overrun, so every window balances
/// with the overrun term (checked by the verifier at every record, and rebuilt from a
/// snapshot on reopen).
#[test]
fn an_overrun_on_budget_nodes_is_logged_and_balances_at_every_node() {
    use calybris_gate::{Gate, GateConfig, SettlementKind, VerifyOptions, verify_dir};
    let dir = common::TempDir::new("windows-overrun");
    let config = || {
        GateConfig::new(&dir.0, common::policy(false))
            .tenant("t", 1_000_000)
            .clock(|| 0)
    };
    let gate = Gate::open(config()).expect("opens");
    define_chain(&gate, 2_000, false);
    let route = key_route();
    let alerts = gate.subscribe_alerts();
    // 1,500 held of the team's 2,000; the work cost 2,600.
    let admission = gate
        .decide_budgeted("t", common::request(1, 2), at(100), &route)
        .expect("decides");
    let settled = gate.settle(admission, 2_600).expect("the overrun path");
    assert_eq!(
        (settled.committed_microunits, settled.overrun_microunits),
        (2_600, 1_100)
    );
    let team = gate.budget_books("team").expect("defined")[0];
    // The excess of 1,100: 500 was spendable, 600 is overrun.
    assert_eq!(
        (
            team.remaining_microcents,
            team.reserved_microcents,
            team.committed_microcents,
            team.overrun_microcents
        ),
        (0, 0, 2_600, 600)
    );
    assert_eq!(team.imbalance(), 0);
    let org = gate.budget_books("org").expect("defined")[0];
    assert_eq!(
        (org.remaining_microcents, org.overrun_microcents),
        (10_000_000 - 2_600, 0)
    );
    let fired: Vec<_> = alerts
        .try_iter()
        .map(|a| (a.node, a.threshold_bps))
        .collect();
    assert_eq!(fired.len(), 2, "the team's 50 % and 80 %: {fired:?}");
    // A hold open across a reset overruns in its closed window: the expired rest
    // covers what it can.
    let open = gate
        .decide_budgeted("t", common::request(2, 1), at(1_100), &route)
        .expect("decides");
    let held = open.budget().held_microunits();
    assert!(open.is_admitted() && held > 0);
    let _resets = gate.advance_windows(2_100).expect("resets");
    let _settled = gate.settle(open, held + 1_900).expect("the overrun path");
    let before = gate.budget_books("team").expect("defined");
    let _snapshot = gate.snapshot_books().expect("a snapshot with overruns");
    gate.close().expect("closes");
    let records = log_records(&dir.0);
    let overruns = records
        .iter()
        .filter(|r| {
            matches!(r, GateRecord::Settlement(s)
                if matches!(s.kind, SettlementKind::CommitWithOverrun { .. }))
        })
        .count();
    assert_eq!(overruns, 2);
    let report = verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
    assert!(report.conservation.balanced);
    let gate = Gate::open(config()).expect("reopens from the snapshot");
    assert_eq!(gate.budget_books("team").expect("rebuilt"), before);
    gate.close().expect("closes");
}

/// Holds on budget nodes kept open across a restart ([`ReopenHolds::Keep`]): the
/// reopened gate re-makes each in the windows it was taken in (one of them closed by
/// a reset before the restart), and settling one by id settles those windows.
#[test]
fn holds_on_budget_nodes_are_kept_across_a_restart() {
    use calybris_gate::{Gate, GateConfig, ReopenHolds, VerifyOptions, verify_dir};
    let dir = common::TempDir::new("windows-keep");
    let config = || {
        GateConfig::new(&dir.0, common::policy(false))
            .tenant("t", 1_000_000)
            .clock(|| 0)
            .reopen_holds(ReopenHolds::Keep)
    };
    let gate = Gate::open(config()).expect("opens");
    define_chain(&gate, 4_000, true);
    let route = key_route();
    let old = gate
        .decide_budgeted("t", common::request(1, 2), at(100), &route)
        .expect("decides")
        .into_reservation_id()
        .expect("admitted");
    let new = gate
        .decide_budgeted("t", common::request(2, 2), at(1_100), &route)
        .expect("decides in window 1")
        .into_reservation_id()
        .expect("admitted");
    let before: Vec<_> = ["org", "team", "key", "provider-0"]
        .iter()
        .map(|node| gate.budget_books(node).expect("defined"))
        .collect();
    assert_eq!(before[1].len(), 2, "the team holds in windows 1 and 0");
    gate.close().expect("closes");

    let gate = Gate::open(config()).expect("reopens keeping the holds");
    assert_eq!(gate.recovery().open_holds, 2);
    assert_eq!(gate.recovery().released_holds, 0);
    for (node, books) in ["org", "team", "key", "provider-0"].iter().zip(&before) {
        assert_eq!(&gate.budget_books(node).expect("rebuilt"), books, "{node}");
    }
    let alerts = gate.subscribe_alerts();
    // The old hold settles in closed window 0 (1,500 of 4,000 expires nothing more).
    let _settled = gate.settle_by_id(old, 1_200).expect("settles by id");
    let _settled = gate.settle_by_id(new, 1_500).expect("settles by id");
    let team = gate.budget_books("team").expect("defined");
    assert_eq!(team.len(), 1, "window 0 is settled and forgotten");
    assert_eq!(
        (
            team[0].window,
            team[0].committed_microcents,
            team[0].reserved_microcents
        ),
        (1, 1_500, 0)
    );
    assert!(
        alerts.try_recv().is_err(),
        "37.5 % of 4,000 reaches no threshold"
    );
    gate.close().expect("closes");
    let report = verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
    assert!(report.conservation.balanced);
}

/// A daily budget in Berlin time, with the zone's rule logged in its definition:
/// the day of the spring change lasts 23 hours, so its window resets at 22:00 UTC
/// (local midnight in summer time), and the log verifies on any machine.
#[test]
fn a_zoned_daily_budget_resets_at_local_midnight_across_a_change() {
    use calybris_gate::{BudgetRoute, CallerMeta, Gate, GateConfig, VerifyOptions, verify_dir};
    let zone =
        calybris_budget::ZoneRule::parse_posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("a valid rule");
    let window = BudgetWindow::ZonedDaily { zone };
    // 2026-03-29 00:00 UTC is day 20,541 since 1970.
    let day = 20_541_u64;
    let utc_ms = |hour: u64, minute: u64| (day * 24 + hour) * 3_600_000 + minute * 60_000;
    let spec = calybris_budget::WindowSpec::from(window);
    assert_eq!(
        spec.window_at(utc_ms(0, 0)),
        Ok(day),
        "01:00 local, 29 March"
    );
    let dir = common::TempDir::new("windows-zoned");
    let gate = Gate::open(
        GateConfig::new(&dir.0, common::policy(false))
            .tenant("t", 1_000_000)
            .clock(|| 0),
    )
    .expect("opens");
    let _ticket = gate
        .define_budget(&BudgetDefined {
            window,
            start_window: day,
            ..fixed_node("key", None, 2_000)
        })
        .expect("valid");
    let route = BudgetRoute {
        key: "key".into(),
        scopes: Vec::new(),
    };
    let decide = |k, ms| {
        gate.decide_budgeted(
            "t",
            common::request(k, 2),
            CallerMeta {
                request_id: [0; 16],
                recorded_at_unix_ms: ms,
            },
            &route,
        )
        .expect("decides")
    };
    let first = decide(1, utc_ms(21, 59));
    assert!(first.is_admitted(), "23:59 local: still 29 March");
    let second = decide(2, utc_ms(21, 59) + 59_999);
    assert!(!second.is_admitted(), "the day's 2,000 has 500 left");
    drop(second);
    let third = decide(3, utc_ms(22, 0));
    assert!(
        third.is_admitted(),
        "00:00 local, 30 March: a new day after 23 hours"
    );
    let books = gate.budget_books("key").expect("defined");
    assert_eq!(books[0].window, day + 1);
    assert_eq!(
        books[1].window, day,
        "29 March is kept while its hold is open"
    );
    drop((first, third));
    gate.close().expect("closes");
    let records = log_records(&dir.0);
    let resets: Vec<_> = records
        .iter()
        .filter_map(|record| match record {
            GateRecord::WindowReset(reset) => Some(reset),
            _ => None,
        })
        .collect();
    assert_eq!(resets.len(), 1);
    assert_eq!(
        (
            resets[0].from_window,
            resets[0].to_window,
            resets[0].recorded_at_unix_ms
        ),
        (day, day + 1, utc_ms(22, 0))
    );
    verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
}
