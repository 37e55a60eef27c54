//! The gate's features together, through real files: holdout with the adaptive
//! engine, budget nodes with checkpoints, budget nodes with the holdout, the live
//! shadow with budget nodes, the adaptive engine with checkpoints, and book snapshots
//! and retention with each of them.
//!
//! Every combination is decided, settled, reopened and decided again, then the
//! directory must pass `verify_dir`; then one tamper (a flipped bit or a forged,
//! well-chained record) must fail verification with the typed error of what was
//! tampered with, naming its record. The combinations refused by design (retention
//! with checkpoints or the adaptive engine, book snapshots with budget nodes) are
//! asserted as typed errors; `tests/combos_docs.rs` checks the docs say so.
//!
//! Seeded: `CALYBRIS_SEED` replays a run; failures print the seed.

mod common;

use std::path::Path;
use std::sync::Arc;

use calybris_gate::record::GateDecision;
use calybris_gate::windows::{BudgetDefined, BudgetScope, BudgetWindow};
use calybris_gate::{
    BudgetRoute, CallerMeta, CheckpointConfig, Gate, GateConfig, GateError, GateRecord,
    HoldoutConfig, Retention, VerifyError, VerifyOptions, verify_dir,
};
use calybris_tlog::{Ed25519Signer, open_checkpoint};
use common::{
    Rng, TempDir, baseline, candidate, flip_bit_in_record, holdout_key, log_entries, log_records,
    policy, request, rewrite_log, seed,
};

const ORIGIN: &str = "example.com/combos";
/// The caller's clock at the first request: a whole number of budget windows.
const T0: u64 = 1_764_620_000_000;
/// Budget windows of one second of the caller's clock.
const WINDOW_MS: u64 = 1_000;
/// Caller time between two requests: about seven requests per window.
const STEP_MS: u64 = 150;
/// The team's limit per window: four selections of model 2 (1,500 each), so the
/// team refuses some requests in every window.
const TEAM_LIMIT: u64 = 6_000;

fn fixed_clock() -> u64 {
    T0
}

fn signer() -> Ed25519Signer {
    Ed25519Signer::from_seed(ORIGIN, &[7; 32]).expect("signer")
}

/// Scheduled checkpoints signed on the appending thread, so each record covers
/// exactly the records before it (the tests below name where each one lands).
fn checkpoints(every: u64) -> CheckpointConfig {
    CheckpointConfig::new(ORIGIN, Arc::new(signer()))
        .every_records(every)
        .inline_signing(true)
}

/// Book snapshots every few records while a background signer lands scheduled
/// checkpoints from its own thread and four threads decide: a checkpoint never
/// lands between a snapshot and its policy record, so the log reopens and verifies.
#[test]
fn background_checkpoints_never_split_a_snapshot_from_its_policy_record() {
    let dir = TempDir::new("combos-background");
    let config = || {
        base_config(&dir.0)
            .snapshot_every_records(5)
            .checkpoints(CheckpointConfig::new(ORIGIN, Arc::new(signer())).every_records(3))
    };
    for round in 0..2u64 {
        let gate = Arc::new(Gate::open(config()).expect("open"));
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let gate = Arc::clone(&gate);
                scope.spawn(move || {
                    for k in 0..50u64 {
                        let id = round * 1_000 + thread * 100 + k;
                        let admission = gate.decide("acme", request(id, 1)).expect("decide");
                        let held = admission.budget().held_microunits();
                        gate.settle(admission, held / 2).expect("settle");
                    }
                });
            }
        });
        let gate = Arc::into_inner(gate).expect("the only handle");
        gate.close().expect("close");
    }
    let report = verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
    assert!(report.counts.snapshots >= 20, "{:?}", report.counts);
    assert!(report.counts.checkpoints > 0, "{:?}", report.counts);
    let records = log_records(&dir.0);
    for (at, record) in records.iter().enumerate() {
        if matches!(record, GateRecord::BookSnapshot(_)) {
            assert!(
                matches!(records.get(at + 1), Some(GateRecord::Policy(_))),
                "record {} after the snapshot at {at}: {:?}",
                at + 1,
                records.get(at + 1).map(std::mem::discriminant)
            );
        }
    }
}

/// Half the requests held out, under [`baseline`].
fn holdout() -> HoldoutConfig {
    HoldoutConfig::new(holdout_key(), baseline())
        .share_bps(5_000)
        .expect("in range")
}

fn with_holdout_key() -> VerifyOptions {
    VerifyOptions {
        holdout_key: Some(holdout_key()),
        ..VerifyOptions::default()
    }
}

fn base_config(dir: &Path) -> GateConfig {
    GateConfig::new(dir, policy(false))
        .tenant("acme", 1_000_000_000_000)
        .clock(fixed_clock)
}

fn node(name: &str, parent: Option<&str>, scope: BudgetScope, limit: u64) -> BudgetDefined {
    BudgetDefined {
        node: name.into(),
        parent: parent.map(Into::into),
        scope,
        limit_microunits: limit,
        window: BudgetWindow::Fixed {
            duration_ms: WINDOW_MS,
            origin_unix_ms: 0,
        },
        start_window: T0 / WINDOW_MS,
        alert_thresholds_bps: vec![5_000, 10_000],
    }
}

/// Defines org -> team -> key and the model scopes of models 1 and 2 (named by id:
/// the gate has no names), unless the log holds them.
fn define_nodes(gate: &Gate) {
    if gate.budget_books("org").is_ok() {
        return;
    }
    for definition in [
        node("org", None, BudgetScope::Chain, 1_000_000_000),
        node("team", Some("org"), BudgetScope::Chain, TEAM_LIMIT),
        node("key", Some("team"), BudgetScope::Chain, 1_000_000_000),
        node(
            "model-1",
            None,
            BudgetScope::Model("1".into()),
            1_000_000_000,
        ),
        node(
            "model-2",
            None,
            BudgetScope::Model("2".into()),
            1_000_000_000,
        ),
    ] {
        let _ticket = gate.define_budget(&definition).expect("define");
    }
}

/// What a round of requests did.
#[derive(Debug, Default, Clone, Copy)]
struct Round {
    admitted: u64,
    refused: u64,
}

/// The caller of request `k`: its number in the request id, its time `STEP_MS` after
/// the one before.
fn caller(k: u64) -> CallerMeta {
    let mut request_id = [0; 16];
    request_id[..8].copy_from_slice(&k.to_be_bytes());
    CallerMeta {
        request_id,
        recorded_at_unix_ms: T0 + k * STEP_MS,
    }
}

/// Decides requests `from..from + n` through the key (and its ancestors and the
/// selected model's scope), settling each admitted one at a seeded cost up to its
/// hold; then advances every window past the last request.
fn budget_round(gate: &Gate, rng: &mut Rng, from: u64, n: u64) -> Round {
    let route = BudgetRoute {
        key: "key".into(),
        scopes: Vec::new(),
    };
    let mut round = Round::default();
    for k in from..from + n {
        let admission = gate
            .decide_budgeted("acme", request(k, 1), caller(k), &route)
            .expect("decide");
        if admission.is_admitted() {
            let held = admission.budget().held_microunits();
            gate.settle(admission, rng.below(held + 1)).expect("settle");
            round.admitted += 1;
        } else {
            round.refused += 1;
        }
    }
    gate.advance_windows(T0 + (from + n) * STEP_MS + WINDOW_MS)
        .expect("advance the windows");
    round
}

fn decisions(records: &[GateRecord]) -> Vec<(u64, &GateDecision)> {
    records
        .iter()
        .enumerate()
        .filter_map(|(at, record)| match record {
            GateRecord::Decision(decision) => Some((at as u64, decision)),
            _ => None,
        })
        .collect()
}

fn count(records: &[GateRecord], what: fn(&GateRecord) -> bool) -> usize {
    records.iter().filter(|record| what(record)).count()
}

/// Every checkpoint record of `dir` covers exactly the records before it and its
/// note is signed by [`signer`]; returns their sequence numbers.
fn checked_checkpoints(dir: &Path) -> Vec<u64> {
    let verifier = signer().verifier();
    let mut at = Vec::new();
    for entry in log_entries(dir) {
        if let GateRecord::Checkpoint(checkpoint) = &entry.record {
            assert_eq!(checkpoint.tree_size, entry.sequence);
            let (signed, _) =
                open_checkpoint(checkpoint.note.as_bytes(), std::slice::from_ref(&verifier))
                    .expect("a note signed by the gate's key");
            assert_eq!(
                (signed.size, signed.root),
                (checkpoint.tree_size, checkpoint.root)
            );
            at.push(entry.sequence);
        }
    }
    at
}

/// A copy of the log of `dir` with `edit` applied to record `at`, in a new directory.
fn forged(dir: &Path, at: u64, edit: impl FnOnce(&mut GateRecord)) -> TempDir {
    let mut records = log_records(dir);
    edit(&mut records[at as usize]);
    let copy = TempDir::new("combo-forged");
    rewrite_log(&copy.0, &records);
    copy
}

/// A flipped bit in record `sequence` is corruption of that record.
fn assert_flip_is_named(dir: &Path, sequence: u64, options: &VerifyOptions) {
    flip_bit_in_record(dir, sequence);
    match verify_dir(dir, options) {
        Err(VerifyError::Chain(recovery)) => {
            assert_eq!(recovery.named_sequence(), Some(sequence), "{recovery}");
        }
        other => panic!("a flipped bit in record {sequence}: {other:?}"),
    }
}

#[test]
fn budget_nodes_with_checkpoints_reopen_verify_and_a_rewritten_record_breaks_the_next_checkpoint() {
    let seed = seed(0x00c0_4b0d);
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("combo-budget-checkpoints");
    let config = || base_config(&dir.0).checkpoints(checkpoints(7));
    let gate = Gate::open(config()).expect("open");
    define_nodes(&gate);
    let first = budget_round(&gate, &mut rng, 0, 40);
    gate.close().expect("close");
    // Reopened: the tree of budget nodes and the Merkle tree are both rebuilt from
    // the log, and both go on.
    let gate = Gate::open(config()).expect("reopen");
    let team = gate.budget_books("team").expect("team")[0];
    let second = budget_round(&gate, &mut rng, 40, 40);
    gate.close().expect("close");
    let records = log_records(&dir.0);
    let last_team_reset = records
        .iter()
        .filter_map(|r| match r {
            GateRecord::WindowReset(reset)
                if reset.node == "team" && reset.to_window <= team.window =>
            {
                Some(reset.to_window)
            }
            _ => None,
        })
        .max();
    assert_eq!(
        last_team_reset,
        Some(team.window),
        "seed {seed:#x}: reopened in the log's window"
    );
    assert!(
        first.refused > 0 && second.refused > 0,
        "seed {seed:#x}: the team binds"
    );

    let report = verify_dir(&dir.0, &VerifyOptions::default())
        .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    assert_eq!(report.counts.decisions, 80);
    assert_eq!(
        report.counts.refused_by_budget,
        first.refused + second.refused
    );
    assert_eq!(report.open_holds, 0);
    let resets = count(&records, |r| matches!(r, GateRecord::WindowReset(_)));
    let alerts = count(&records, |r| matches!(r, GateRecord::AlertFired(_)));
    assert!(
        resets >= 10 && alerts > 0,
        "seed {seed:#x}: {resets} resets, {alerts} alerts"
    );
    let at = checked_checkpoints(&dir.0);
    assert!(at.len() as u64 >= report.anchor.next_sequence / 9, "{at:?}");

    // A forged request id on a decision (no digest covers it, the books do not
    // change): the chain is rebuilt around it, the next checkpoint is not.
    let (target, _) = decisions(&records)[3];
    let next_checkpoint = *at
        .iter()
        .find(|s| **s > target)
        .expect("a later checkpoint");
    let copy = forged(&dir.0, target, |record| {
        if let GateRecord::Decision(decision) = record {
            decision.audit.meta.request_id[15] ^= 1;
        }
    });
    match verify_dir(&copy.0, &VerifyOptions::default()) {
        Err(VerifyError::CheckpointMismatch { sequence, .. }) => {
            assert_eq!(sequence, next_checkpoint);
        }
        other => panic!("seed {seed:#x}: a rewritten decision: {other:?}"),
    }
    // A flipped bit in a window reset is corruption of that record.
    let reset = records
        .iter()
        .position(|r| matches!(r, GateRecord::WindowReset(_)))
        .expect("a reset") as u64;
    assert_flip_is_named(&dir.0, reset, &VerifyOptions::default());
}

#[test]
fn budget_nodes_with_the_holdout_reopen_verify_and_a_forged_assignment_is_named() {
    let seed = seed(0x0401_db0d);
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("combo-budget-holdout");
    let config = || base_config(&dir.0).holdout(holdout());
    let gate = Gate::open(config()).expect("open");
    define_nodes(&gate);
    let first = budget_round(&gate, &mut rng, 0, 60);
    gate.close().expect("close");
    let gate = Gate::open(config()).expect("reopen");
    let second = budget_round(&gate, &mut rng, 60, 60);
    gate.close().expect("close");

    let records = log_records(&dir.0);
    let logged = decisions(&records);
    assert_eq!(logged.len(), 120);
    // Held-out requests are decided by the baseline and still draw on the budget
    // nodes: the selected model's scope and the key's chain.
    let held: Vec<_> = logged
        .iter()
        .filter(|(_, d)| d.holdout.expect("a note on every decision").held_out)
        .collect();
    assert!(
        held.len() > 20 && held.len() < 100,
        "seed {seed:#x}: {} held out",
        held.len()
    );
    for (_, d) in &held {
        assert_eq!(d.audit.policy_digest, *baseline().digest());
        if d.budget.is_admitted() {
            let names: Vec<&str> = d.scopes.iter().map(|s| s.node.as_str()).collect();
            for name in ["org", "team", "key"] {
                assert!(names.contains(&name), "seed {seed:#x}: {names:?}");
            }
            let model = format!("model-{}", d.audit.decision.selected_model_id);
            assert!(names.contains(&model.as_str()), "seed {seed:#x}: {names:?}");
        }
    }
    let report =
        verify_dir(&dir.0, &with_holdout_key()).unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    assert_eq!(report.counts.held_out, held.len() as u64);
    assert_eq!(report.counts.holdout_unchecked, 0);
    assert_eq!(
        report.counts.refused_by_budget,
        first.refused + second.refused
    );
    assert_eq!(report.open_holds, 0);

    // A held-out decision holding budget nodes, forged as not held out.
    let (target, _) = **held
        .iter()
        .find(|(_, d)| d.budget.is_admitted())
        .expect("an admitted held-out decision");
    let copy = forged(&dir.0, target, |record| {
        if let GateRecord::Decision(decision) = record
            && let Some(note) = decision.holdout.as_mut()
        {
            note.held_out = false;
        }
    });
    match verify_dir(&copy.0, &with_holdout_key()) {
        Err(VerifyError::HoldoutMismatch { sequence, recorded }) => {
            assert_eq!((sequence, recorded), (target, false));
        }
        other => panic!("seed {seed:#x}: a forged assignment: {other:?}"),
    }
    assert_flip_is_named(&dir.0, target, &with_holdout_key());
}

#[test]
fn the_shadow_with_budget_nodes_reopens_verifies_and_a_dropped_note_is_named() {
    let seed = seed(0x05ad_0b0d);
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("combo-shadow-budget");
    let gate = Gate::open(base_config(&dir.0)).expect("open");
    define_nodes(&gate);
    let _staged = gate.stage_shadow(candidate()).expect("stage");
    let _ = budget_round(&gate, &mut rng, 0, 30);
    gate.close().expect("close");
    // The candidate stays staged across the reopen; unstaged after 30 more.
    let gate = Gate::open(base_config(&dir.0)).expect("reopen");
    assert!(gate.staged_shadow().is_some());
    let _ = budget_round(&gate, &mut rng, 30, 30);
    let _unstaged = gate.unstage_shadow().expect("unstage");
    let _ = budget_round(&gate, &mut rng, 60, 10);
    gate.close().expect("close");

    let records = log_records(&dir.0);
    let logged = decisions(&records);
    assert_eq!(logged.len(), 70);
    let noted = logged.iter().filter(|(_, d)| d.shadow.is_some()).count();
    assert_eq!(noted, 60, "seed {seed:#x}");
    // The shadow never changes the decision or its holds: a refused decision names
    // exactly the refusing node, an admitted one its whole chain.
    for (_, d) in &logged {
        if d.budget.is_admitted() {
            assert!(d.scopes.len() >= 4, "seed {seed:#x}: {:?}", d.scopes);
        }
    }
    let report = verify_dir(&dir.0, &VerifyOptions::default())
        .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    assert_eq!(report.counts.shadow_notes, 60);
    assert_eq!(report.open_holds, 0);

    // The note of a decision holding budget nodes, dropped.
    let (target, _) = *logged
        .iter()
        .find(|(_, d)| d.shadow.is_some() && d.budget.is_admitted())
        .expect("an admitted decision with a note");
    let copy = forged(&dir.0, target, |record| {
        if let GateRecord::Decision(decision) = record {
            decision.shadow = None;
        }
    });
    match verify_dir(&copy.0, &VerifyOptions::default()) {
        Err(VerifyError::ShadowNoteMissing {
            sequence,
            candidate_digest,
        }) => {
            assert_eq!(sequence, target);
            assert_eq!(candidate_digest, *candidate().digest());
        }
        other => panic!("seed {seed:#x}: a dropped note: {other:?}"),
    }
    assert_flip_is_named(&dir.0, target, &VerifyOptions::default());
}

#[test]
fn book_snapshots_with_budget_nodes_and_retention_retire_segments_and_the_suffix_verifies() {
    let seed = seed(0x05a9_0b0d);
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("combo-budget-retention");
    let config = || {
        base_config(&dir.0)
            .snapshot_every_records(50)
            .segment_limit_bytes(8 * 1024)
            .retention(Retention::SinceLastSnapshot)
    };
    let gate = Gate::open(config()).expect("open");
    define_nodes(&gate);
    // A book snapshot carries the budget nodes (SPECIFICATION, record 8), so one
    // asked for is written and retention can retire what it stands in for.
    let _at = gate
        .snapshot_books()
        .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    let _ = budget_round(&gate, &mut rng, 0, 120);
    assert!(gate.snapshots_taken() > 1);
    gate.close().expect("close");
    let gate = Gate::open(config()).expect("reopen");
    let _ = budget_round(&gate, &mut rng, 120, 60);
    let start = gate
        .start_anchor()
        .unwrap_or_else(|| panic!("seed {seed:#x}: segments retired"));
    gate.close().expect("close");
    let options = VerifyOptions {
        start_anchor: Some(start),
        ..VerifyOptions::default()
    };
    let report = verify_dir(&dir.0, &options).unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    assert!(report.counts.snapshots > 0, "{:?}", report.counts);
    assert!(
        report.counts.decisions < 180,
        "a retained log: {:?}",
        report.counts
    );
}

#[test]
fn retention_with_checkpoints_is_refused_at_open_before_anything_is_written() {
    let dir = TempDir::new("combo-retention-checkpoints");
    let config = base_config(&dir.0)
        .snapshot_every_records(100)
        .retention(Retention::SinceLastSnapshot)
        .checkpoints(checkpoints(10));
    // Retention would retire the first segments, and leaf n of the tree is record n:
    // such a gate could never reopen. Refused up front, by design.
    match Gate::open(config) {
        Err(GateError::RetentionConflict { with }) => assert_eq!(with, "checkpoints"),
        other => panic!("retention with checkpoints: {other:?}"),
    }
    assert!(
        !dir.0.join("log").exists()
            || std::fs::read_dir(dir.0.join("log"))
                .expect("log")
                .filter_map(Result::ok)
                .all(|e| e.path().extension().is_none_or(|x| x != "cwal")),
        "nothing logged"
    );
    // Book snapshots with checkpoints and the whole log kept, with the holdout and a
    // staged shadow candidate (both restated after every snapshot): reopen and verify.
    let config = || {
        base_config(&dir.0)
            .snapshot_every_records(25)
            .checkpoints(checkpoints(9))
            .holdout(holdout())
    };
    for round in 0..2u64 {
        let gate = Gate::open(config()).expect("open");
        if round == 0 {
            let _staged = gate.stage_shadow(candidate()).expect("stage");
        }
        for k in round * 60..round * 60 + 60 {
            let admission = gate.decide("acme", request(k, 1)).expect("decide");
            let held = admission.budget().held_microunits();
            gate.settle(admission, held / 2).expect("settle");
        }
        gate.close().expect("close");
    }
    let report = verify_dir(&dir.0, &with_holdout_key()).expect("verifies");
    assert!(report.counts.snapshots >= 4, "{:?}", report.counts);
    assert_eq!(report.counts.shadow_notes, 120);
    assert!(report.counts.held_out > 0 && report.counts.holdout_unchecked == 0);
    let at = checked_checkpoints(&dir.0);
    assert!(at.len() >= 20, "{at:?}");
    // A snapshot forged (one tenant's committed spend raised by one, balanced by its
    // remaining) is refused by the fold, before the next checkpoint is reached.
    let records = log_records(&dir.0);
    let snapshot = records
        .iter()
        .rposition(|r| matches!(r, GateRecord::BookSnapshot(_)))
        .expect("a snapshot") as u64;
    let copy = forged(&dir.0, snapshot, |record| {
        if let GateRecord::BookSnapshot(books) = record {
            books.tenants[0].committed_microunits += 1;
            books.tenants[0].remaining_microunits -= 1;
        }
    });
    match verify_dir(&copy.0, &with_holdout_key()) {
        Err(VerifyError::Books { sequence, .. }) => assert_eq!(sequence, snapshot),
        other => panic!("a forged snapshot: {other:?}"),
    }
}

#[cfg(feature = "adaptive")]
mod adaptive {
    //! The adaptive engine with the holdout, with checkpoints, with book snapshots
    //! and with retention (the engine's state records).

    use super::*;
    use calybris_gate::AdaptiveRequest;
    use calybris_gate::adaptive::{
        AdaptiveMismatch, AdaptiveNote, AdaptivePolicy, AdaptiveRegime, AdaptiveSetup, AdaptiveTier,
    };

    const LABELS: [&str; 2] = ["support", "coding"];

    /// Two tiers, one per model of [`policy`], and two regimes with floors the
    /// models can meet.
    fn setup() -> AdaptiveSetup {
        AdaptiveSetup {
            format_version: 1,
            regimes: LABELS
                .iter()
                .map(|label| AdaptiveRegime {
                    label: (*label).to_owned(),
                    domain: 5,
                    custom_floor_bps: 6_000,
                })
                .collect(),
            features: 2,
            floor_min_bps: 5_000,
            floor_max_bps: 8_000,
            step_bps: 10,
            min_observations: 8,
            fallback: 1,
            priors: vec![(1, 1); 2],
            policy: AdaptivePolicy::Thompson { redraws: 4 },
            exploration_bps: 3_000,
            key: [0x3c; 32],
            tiers: vec![
                AdaptiveTier {
                    floor_bps: 0,
                    requested_model_id: Some(1),
                },
                AdaptiveTier {
                    floor_bps: 0,
                    requested_model_id: Some(2),
                },
            ],
            static_tier: 1,
            snapshot_every_updates: 16,
            feedback: Default::default(),
        }
    }

    /// Decides requests `from..from + n` with the engine, settles each admitted one
    /// and records an outcome for nine in ten.
    fn adaptive_round(gate: &Gate, rng: &mut Rng, from: u64, n: u64) {
        let _ = adaptive_round_via(gate, rng, from, n, None);
    }

    /// As [`adaptive_round`], through `route` when given (then every window is
    /// advanced past the last request); counts what the budget admitted and refused.
    fn adaptive_round_via(
        gate: &Gate,
        rng: &mut Rng,
        from: u64,
        n: u64,
        route: Option<&BudgetRoute>,
    ) -> Round {
        let mut round = Round::default();
        for k in from..from + n {
            let mut input = request(k, 1 + u32::from(rng.percent(50)));
            if rng.percent(20) {
                input.minimum_quality_bps = 8_500;
            }
            let features = [
                i32::try_from(rng.below(100)).unwrap(),
                i32::from(rng.percent(50)),
            ];
            let request = AdaptiveRequest {
                label: Some(LABELS[usize::from(rng.percent(50))]),
                features: &features,
            };
            let admission = match route {
                None => gate.decide_adaptive("acme", input, caller(k), request),
                Some(route) => {
                    gate.decide_adaptive_budgeted("acme", input, caller(k), request, route)
                }
            }
            .expect("decide");
            let decision = admission.decision_ref();
            if admission.is_admitted() {
                let held = admission.budget().held_microunits();
                gate.settle(admission, rng.below(held + 1)).expect("settle");
                round.admitted += 1;
            } else if admission.budget() != calybris_gate::BudgetOutcome::RejectedByKernel {
                round.refused += 1;
            }
            if rng.percent(90) {
                let success = rng.percent(60);
                let _ = gate
                    .record_outcome(decision, common::binary_outcome(success))
                    .expect("outcome");
            }
        }
        if route.is_some() {
            gate.advance_windows(T0 + (from + n) * STEP_MS + WINDOW_MS)
                .expect("advance the windows");
        }
        round
    }

    #[test]
    fn holdout_with_the_adaptive_engine_and_snapshots_reopens_verifies_and_a_forged_tier_is_named()
    {
        let seed = seed(0x0ada_401d);
        let mut rng = Rng::new(seed);
        let dir = TempDir::new("combo-holdout-adaptive");
        let config = || {
            base_config(&dir.0)
                .holdout(holdout())
                .snapshot_every_records(40)
                .adaptive(setup())
        };
        let gate = Gate::open(config()).expect("open");
        adaptive_round(&gate, &mut rng, 0, 100);
        gate.close().expect("close");
        // Reopened: the engine replays from its setup across the book snapshots.
        let gate = Gate::open(config()).expect("reopen");
        adaptive_round(&gate, &mut rng, 100, 100);
        gate.close().expect("close");

        let records = log_records(&dir.0);
        let logged = decisions(&records);
        assert_eq!(logged.len(), 200);
        // Every decision carries both notes; a held-out one is the baseline's
        // decision on the engine's input (the kernel input the note re-derives).
        let mut held = 0;
        for (_, d) in &logged {
            let note = d.holdout.expect("a holdout note");
            let adaptive = d.adaptive.as_ref().expect("an adaptive note");
            assert!(
                d.audit.input.minimum_quality_bps >= adaptive.client_floor_bps.unwrap_or(0) as u16
            );
            if note.held_out {
                held += 1;
                assert_eq!(d.audit.policy_digest, *baseline().digest());
            } else {
                assert_eq!(d.audit.policy_digest, *policy(false).digest());
            }
        }
        assert!(held > 50 && held < 150, "seed {seed:#x}: {held} held out");
        let report = verify_dir(&dir.0, &with_holdout_key())
            .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
        assert_eq!(report.counts.adaptive_decisions, 200);
        assert_eq!(report.counts.held_out, held);
        assert!(report.counts.snapshots >= 4, "{:?}", report.counts);
        assert!(report.counts.engine_snapshots >= 4, "{:?}", report.counts);
        assert_eq!(report.open_holds, 0);

        // A held-out adaptive decision whose tier is forged: the draw is named.
        let (target, _) = *logged
            .iter()
            .find(|(_, d)| d.holdout.is_some_and(|n| n.held_out))
            .expect("a held-out decision");
        let copy = forged(&dir.0, target, |record| {
            if let GateRecord::Decision(decision) = record
                && let Some(note) = decision.adaptive.as_mut()
            {
                note.tier ^= 1;
            }
        });
        match verify_dir(&copy.0, &with_holdout_key()) {
            Err(VerifyError::Adaptive { sequence, kind, .. }) => {
                assert_eq!((sequence, kind), (target, AdaptiveMismatch::Draw));
            }
            other => panic!("seed {seed:#x}: a forged tier: {other:?}"),
        }
        // The same record forged as not held out: the holdout key names it.
        let copy = forged(&dir.0, target, |record| {
            if let GateRecord::Decision(decision) = record
                && let Some(note) = decision.holdout.as_mut()
            {
                note.held_out = false;
            }
        });
        match verify_dir(&copy.0, &with_holdout_key()) {
            Err(VerifyError::HoldoutMismatch { sequence, .. }) => assert_eq!(sequence, target),
            other => panic!("seed {seed:#x}: a forged assignment: {other:?}"),
        }
        assert_flip_is_named(&dir.0, target, &with_holdout_key());
    }

    #[test]
    fn the_adaptive_engine_with_checkpoints_reopens_verifies_and_a_flipped_outcome_is_named() {
        let seed = seed(0x0ada_0c4e);
        let mut rng = Rng::new(seed);
        let dir = TempDir::new("combo-adaptive-checkpoints");
        let config = || {
            base_config(&dir.0)
                .snapshot_every_records(60)
                .checkpoints(checkpoints(11))
                .adaptive(setup())
        };
        let gate = Gate::open(config()).expect("open");
        adaptive_round(&gate, &mut rng, 0, 80);
        gate.checkpoint()
            .expect("on demand")
            .wait()
            .expect("durable");
        gate.close().expect("close");
        let gate = Gate::open(config()).expect("reopen");
        adaptive_round(&gate, &mut rng, 80, 80);
        gate.close().expect("close");

        let report = verify_dir(&dir.0, &VerifyOptions::default())
            .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
        assert_eq!(report.counts.adaptive_decisions, 160);
        assert!(report.counts.engine_snapshots > 0);
        let at = checked_checkpoints(&dir.0);
        assert!(
            at.len() as u64 >= report.anchor.next_sequence / 12,
            "{at:?}"
        );

        // One outcome flipped: the first adaptive decision after it saw another
        // engine state, unless a checkpoint comes first (its tree is another).
        let records = log_records(&dir.0);
        let outcome = records
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, GateRecord::Outcome(_)))
            .nth(40)
            .map(|(i, _)| i as u64)
            .expect("40 outcomes");
        let next_decision = decisions(&records)
            .iter()
            .map(|(s, _)| *s)
            .find(|s| *s > outcome)
            .expect("a later decision");
        let next_checkpoint = *at
            .iter()
            .find(|s| **s > outcome)
            .expect("a later checkpoint");
        let copy = forged(&dir.0, outcome, |record| {
            if let GateRecord::Outcome(outcome) = record {
                outcome.success = !outcome.success;
            }
        });
        match verify_dir(&copy.0, &VerifyOptions::default()) {
            Err(VerifyError::Adaptive { sequence, kind, .. })
                if next_decision < next_checkpoint =>
            {
                assert_eq!((sequence, kind), (next_decision, AdaptiveMismatch::State));
            }
            Err(VerifyError::CheckpointMismatch { sequence, .. }) => {
                assert!(next_checkpoint < next_decision);
                assert_eq!(sequence, next_checkpoint);
            }
            other => panic!("seed {seed:#x}: a flipped outcome: {other:?}"),
        }
        // The writer refuses it too: the forged log does not reopen.
        match Gate::open(
            base_config(&copy.0)
                .snapshot_every_records(60)
                .adaptive(setup()),
        ) {
            Err(GateError::AdaptiveReplay(_)) => {}
            other => panic!("seed {seed:#x}: reopening a flipped outcome: {other:?}"),
        }
        assert_flip_is_named(&dir.0, outcome, &VerifyOptions::default());
    }

    #[test]
    fn retention_with_the_adaptive_engine_retires_segments_and_the_suffix_replays_the_engine() {
        let seed = seed(0x0ada_2e7a);
        let retained = TempDir::new("combo-adaptive-retention");
        let twin = TempDir::new("combo-adaptive-keep-all");
        let config = |dir: &Path, retention| {
            base_config(dir)
                .snapshot_every_records(50)
                .segment_limit_bytes(16 * 1024)
                .retention(retention)
                .adaptive(setup())
        };
        // The same seeded requests and outcomes through a gate that retires its
        // segments and through one that keeps every record.
        let mut rng = Rng::new(seed);
        let gate = Gate::open(config(&retained.0, Retention::SinceLastSnapshot)).expect("open");
        adaptive_round(&gate, &mut rng, 0, 150);
        gate.close().expect("close");
        // Reopened on the retained log: the engine replays from its first complete
        // state record and goes on.
        let gate = Gate::open(config(&retained.0, Retention::SinceLastSnapshot))
            .unwrap_or_else(|e| panic!("seed {seed:#x}: reopen a retained adaptive log: {e}"));
        assert!(
            gate.start_anchor().is_some_and(|a| a.next_sequence > 0),
            "seed {seed:#x}: the reopened log was already retained"
        );
        adaptive_round(&gate, &mut rng, 150, 150);
        let start = gate
            .start_anchor()
            .unwrap_or_else(|| panic!("seed {seed:#x}: segments retired"));
        gate.close().expect("close");
        assert!(start.next_sequence > 0);
        let mut rng = Rng::new(seed);
        let gate = Gate::open(config(&twin.0, Retention::KeepAll)).expect("open the twin");
        adaptive_round(&gate, &mut rng, 0, 150);
        gate.close().expect("close");
        let gate = Gate::open(config(&twin.0, Retention::KeepAll)).expect("reopen the twin");
        adaptive_round(&gate, &mut rng, 150, 150);
        gate.close().expect("close");

        // The suffix verifies from its start anchor, the engine re-derived from the
        // first state record on with zero divergences.
        let options = VerifyOptions {
            start_anchor: Some(start),
            ..VerifyOptions::default()
        };
        let report =
            verify_dir(&retained.0, &options).unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
        let counts = report.counts;
        assert!(counts.engine_states > 0, "seed {seed:#x}: {counts:?}");
        assert!(
            counts.adaptive_decisions >= 10,
            "seed {seed:#x}: {counts:?}"
        );
        assert!(
            counts.decisions < 300,
            "seed {seed:#x}: a retained log: {counts:?}"
        );
        // Every decision the retained log still holds carries exactly the twin's
        // note: the same regime, draw, tier, propensity and state digest, before and
        // after the reopen from a state record.
        let mut reader = calybris_wal::SegmentedReader::<GateRecord>::open(
            &retained.0.join(calybris_gate::LOG_DIR),
            None,
            None,
        )
        .expect("the retained log opens")
        .with_start_anchor(Some(start));
        let mut kept_records = Vec::new();
        while let Some(entry) = reader.next_entry().expect("a clean entry") {
            kept_records.push(entry.record);
        }
        let twin_records = log_records(&twin.0);
        let kept = decisions(&kept_records);
        let all = decisions(&twin_records);
        let twin_notes: std::collections::HashMap<u64, AdaptiveNote> = all
            .iter()
            .map(|(_, d)| (d.audit.input.request_sequence, d.adaptive.clone().unwrap()))
            .collect();
        assert_eq!(all.len(), 300);
        assert!(kept.len() as u64 >= counts.decisions, "seed {seed:#x}");
        for (_, d) in &kept {
            assert_eq!(
                d.adaptive.as_ref(),
                twin_notes.get(&d.audit.input.request_sequence),
                "seed {seed:#x}: request {}",
                d.audit.input.request_sequence
            );
        }
    }

    #[test]
    fn budget_nodes_with_the_adaptive_engine_hold_on_every_node_reopen_verify_and_a_forged_tier_is_named()
     {
        let seed = seed(0x0ada_b0d9);
        let mut rng = Rng::new(seed);
        let dir = TempDir::new("combo-adaptive-budget");
        let config = || base_config(&dir.0).adaptive(setup());
        let gate = Gate::open(config()).expect("open");
        define_nodes(&gate);
        // An unknown node is refused before the engine is asked or anything logged
        // (the 240 decisions counted below are the rounds' own).
        let bad = BudgetRoute {
            key: "nobody".into(),
            scopes: Vec::new(),
        };
        assert!(matches!(
            gate.decide_adaptive_budgeted(
                "acme",
                request(0, 1),
                caller(0),
                AdaptiveRequest {
                    label: None,
                    features: &[0, 0],
                },
                &bad,
            ),
            Err(GateError::Tree(_))
        ));
        let route = BudgetRoute {
            key: "key".into(),
            scopes: Vec::new(),
        };
        let first = adaptive_round_via(&gate, &mut rng, 0, 120, Some(&route));
        gate.close().expect("close");
        let gate = Gate::open(config()).expect("reopen");
        define_nodes(&gate);
        let second = adaptive_round_via(&gate, &mut rng, 120, 120, Some(&route));
        gate.close().expect("close");
        assert!(
            first.refused + second.refused > 0 && first.admitted + second.admitted > 0,
            "seed {seed:#x}: the team limit refuses some and admits some: {first:?} {second:?}"
        );

        let records = log_records(&dir.0);
        let logged = decisions(&records);
        assert_eq!(logged.len(), 240, "seed {seed:#x}");
        for (_, d) in &logged {
            assert!(d.adaptive.is_some(), "seed {seed:#x}: an adaptive note");
            if matches!(d.budget, calybris_gate::BudgetOutcome::Reserved { .. }) {
                // Held on the key, its ancestors and the selected model's scope.
                let held: Vec<&str> = d.scopes.iter().map(|h| h.node.as_str()).collect();
                for node in ["org", "team", "key"] {
                    assert!(held.contains(&node), "seed {seed:#x}: {held:?}");
                }
                assert!(
                    held.contains(
                        &format!("model-{}", d.audit.decision.selected_model_id).as_str()
                    ),
                    "seed {seed:#x}: {held:?}"
                );
            }
        }
        let report = verify_dir(&dir.0, &VerifyOptions::default())
            .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
        assert_eq!(report.counts.adaptive_decisions, 240);
        assert_eq!(
            report.counts.refused_by_budget,
            first.refused + second.refused
        );
        assert_eq!(report.open_holds, 0);
        assert!(report.conservation.balanced);

        // A forged tier on a decision the team refused: the engine's draw is named.
        let (target, _) = *logged
            .iter()
            .find(|(_, d)| matches!(d.budget, calybris_gate::BudgetOutcome::Insufficient { .. }))
            .expect("a decision the team refused");
        let copy = forged(&dir.0, target, |record| {
            if let GateRecord::Decision(decision) = record
                && let Some(note) = decision.adaptive.as_mut()
            {
                note.tier ^= 1;
            }
        });
        match verify_dir(&copy.0, &VerifyOptions::default()) {
            Err(VerifyError::Adaptive { sequence, kind, .. }) => {
                assert_eq!((sequence, kind), (target, AdaptiveMismatch::Draw));
            }
            other => panic!("seed {seed:#x}: a forged tier: {other:?}"),
        }
    }

    /// One forgery of a record.
    type Edit = Box<dyn Fn(&mut GateRecord)>;

    #[test]
    fn a_forged_engine_state_record_fails_with_its_own_reason() {
        let seed = seed(0x0ada_57a7);
        let mut rng = Rng::new(seed);
        let dir = TempDir::new("combo-adaptive-state-forged");
        // Retention with segments too large to retire: the log keeps record 0, so it
        // can be rewritten, and holds state records.
        let config = || {
            base_config(&dir.0)
                .snapshot_every_records(60)
                .retention(Retention::SinceLastSnapshot)
                .adaptive(setup())
        };
        let gate = Gate::open(config()).expect("open");
        adaptive_round(&gate, &mut rng, 0, 200);
        gate.close().expect("close");
        let report = verify_dir(&dir.0, &VerifyOptions::default())
            .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
        assert!(report.counts.engine_states >= 2, "{:?}", report.counts);
        let records = log_records(&dir.0);
        let (at, busy) = records
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, r)| match r {
                GateRecord::EngineState(state) if state.pending > 0 => state
                    .regimes
                    .iter()
                    .position(|r| r.welford[0].count > 2)
                    .map(|busy| (i as u64, busy)),
                _ => None,
            })
            .expect("a state record with waiting decisions and a busy regime");
        let edits: [(&str, Edit); 5] = [
            (
                "a Welford sum",
                Box::new(move |r| {
                    if let GateRecord::EngineState(s) = r {
                        s.regimes[busy].welford[0].sum ^= 1;
                    }
                }),
            ),
            (
                "a floor",
                Box::new(move |r| {
                    if let GateRecord::EngineState(s) = r {
                        s.regimes[busy].floor_bps ^= 0x10;
                    }
                }),
            ),
            (
                "a posterior",
                Box::new(move |r| {
                    if let GateRecord::EngineState(s) = r {
                        let (a, b) = s.regimes[busy].posteriors[0];
                        s.regimes[busy].posteriors[0] = (a + 1, b - 1);
                        if b == 1 {
                            s.regimes[busy].posteriors[0] = (a - 1, b + 1);
                        }
                    }
                }),
            ),
            (
                "the state digest",
                Box::new(|r| {
                    if let GateRecord::EngineState(s) = r {
                        s.state_digest.0[7] ^= 0x40;
                    }
                }),
            ),
            (
                "a refresh point",
                Box::new(move |r| {
                    if let GateRecord::EngineState(s) = r {
                        s.regimes[busy].refreshes[0].refreshed_at ^= 1;
                    }
                }),
            ),
        ];
        for (what, edit) in &edits {
            let copy = forged(&dir.0, at, |r| edit(r));
            match verify_dir(&copy.0, &VerifyOptions::default()) {
                Err(VerifyError::Adaptive { sequence, kind, .. }) => assert_eq!(
                    (sequence, kind),
                    (at, AdaptiveMismatch::StateRecord),
                    "seed {seed:#x}: {what}"
                ),
                other => panic!("seed {seed:#x}: a forged {what}: {other:?}"),
            }
            // The writer refuses it too.
            match Gate::open(
                base_config(&copy.0)
                    .snapshot_every_records(60)
                    .retention(Retention::SinceLastSnapshot)
                    .adaptive(setup()),
            ) {
                Err(GateError::AdaptiveReplay(_)) => {}
                other => panic!("seed {seed:#x}: reopening a forged {what}: {other:?}"),
            }
        }
        // A waiting decision's tier changed in the pending record that follows.
        let copy = forged(&dir.0, at + 1, |r| {
            if let GateRecord::EnginePending(p) = r {
                p.decisions[0].tier ^= 1;
            }
        });
        match verify_dir(&copy.0, &VerifyOptions::default()) {
            Err(VerifyError::Adaptive { kind, .. }) => {
                assert_eq!(kind, AdaptiveMismatch::StateRecord, "seed {seed:#x}");
            }
            other => panic!("seed {seed:#x}: a forged pending record: {other:?}"),
        }
        // A flipped byte in the record's frame is corruption of that record.
        assert_flip_is_named(&dir.0, at, &VerifyOptions::default());
    }
}
