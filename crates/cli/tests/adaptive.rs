//! `calybris verify` and `calybris show` on a gate log of adaptive decisions: the log
//! verifies, `show --seq N` explains the engine's suggestion in words, and a flipped
//! outcome fails with `ADAPTIVE_STATE_MISMATCH` naming the first decision it changes.

mod common;

use calybris::gate::adaptive::{AdaptivePolicy, AdaptiveRegime, AdaptiveSetup, AdaptiveTier};
use calybris::gate::record::GateRecord;
use calybris::gate::{
    AdaptiveRequest, CallerMeta, Gate, GateConfig, LOG_DIR, Outcome, Retention, START_ANCHOR_FILE,
};
use calybris::wal::{DurableConfig, DurableWal, SegmentedReader};
use common::{calybris, policy, request, temp_dir};

fn setup() -> AdaptiveSetup {
    AdaptiveSetup {
        format_version: 1,
        regimes: ["support", "coding"]
            .iter()
            .zip([1u8, 2])
            .map(|(label, domain)| AdaptiveRegime {
                label: (*label).to_owned(),
                domain,
                custom_floor_bps: 0,
            })
            .collect(),
        features: 1,
        floor_min_bps: 5_000,
        floor_max_bps: 9_900,
        step_bps: 10,
        min_observations: 4,
        fallback: 0,
        priors: vec![(1, 1); 3],
        policy: AdaptivePolicy::Thompson { redraws: 7 },
        exploration_bps: 5_000,
        key: [3; 32],
        tiers: (1..=3)
            .map(|m| AdaptiveTier {
                floor_bps: 0,
                requested_model_id: Some(m),
            })
            .collect(),
        static_tier: 2,
        snapshot_every_updates: 10,
        feedback: Default::default(),
    }
}

fn write(dir: &std::path::Path, n: u64) {
    write_with(dir, n, |config| config);
}

/// Writes `n` adaptive decisions and their outcomes through a gate configured by
/// `configure`.
fn write_with(dir: &std::path::Path, n: u64, configure: impl FnOnce(GateConfig) -> GateConfig) {
    let gate = Gate::open(configure(
        GateConfig::new(dir, policy(1))
            .tenant("acme", 1_000_000_000)
            .adaptive(setup()),
    ))
    .expect("open");
    for i in 0..n {
        let mut input = request(i);
        if i % 4 == 0 {
            input.minimum_quality_bps = 9_000;
        }
        let features = [i32::try_from(i % 9).expect("small")];
        let admission = gate
            .decide_adaptive(
                "acme",
                input,
                CallerMeta {
                    request_id: [0; 16],
                    recorded_at_unix_ms: 1_764_620_000_000,
                },
                AdaptiveRequest {
                    label: (i % 3 != 2).then_some(if i % 2 == 0 { "support" } else { "coding" }),
                    features: &features,
                },
            )
            .expect("decide");
        let decision = admission.decision_ref();
        let cost = admission.decision().estimated_cost_microunits;
        if admission.is_admitted() {
            gate.settle(admission, cost).expect("settle");
        } else {
            drop(admission);
        }
        let _ = gate
            .record_outcome(
                decision,
                Outcome {
                    reward_microunits: 0,
                    success: i % 3 == 0,
                    latency_ms: 0,
                    detail: Vec::new(),
                },
            )
            .expect("outcome");
    }
    gate.close().expect("close");
}

fn records(dir: &std::path::Path) -> Vec<GateRecord> {
    let mut reader =
        SegmentedReader::<GateRecord>::open(&dir.join(LOG_DIR), None, None).expect("reader");
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry().expect("entry") {
        out.push(entry.record);
    }
    out
}

fn s(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn an_adaptive_log_verifies_and_show_explains_the_suggestion() {
    let root = temp_dir("adaptive-show");
    let dir = root.join("gate");
    write(&dir, 60);
    let run = calybris(&["verify", s(&dir), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(
        report["gate"]["counts"]["adaptive_decisions"], 60,
        "{report}"
    );
    assert_eq!(report["gate"]["counts"]["engine_snapshots"], 6, "{report}");
    let log = records(&dir);
    let (at, note) = log
        .iter()
        .enumerate()
        .find_map(|(i, r)| match r {
            GateRecord::Decision(d)
                if d.adaptive.as_ref().is_some_and(|n| n.client_floor_overrode) =>
            {
                Some((i, d.adaptive.clone().expect("note")))
            }
            _ => None,
        })
        .expect("a decision whose client floor won");
    let shown = calybris(&["show", s(&dir), "--seq", &at.to_string()]);
    assert_eq!(shown.code, 0, "{shown:?}");
    let text = &shown.stdout;
    assert!(text.contains("adaptive engine:"), "{text}");
    assert!(text.contains(&format!("regime {}", note.regime)), "{text}");
    assert!(
        text.contains("the client's floor 0.90 is higher and wins"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "propensity {}/{}",
            note.propensity_numerator, note.propensity_denominator
        )),
        "{text}"
    );
    assert!(text.contains(&format!("tier {}", note.tier)), "{text}");
    // The setup and a snapshot are described too.
    let setup_at = log
        .iter()
        .position(|r| matches!(r, GateRecord::AdaptiveSetup(_)))
        .expect("a setup record");
    let shown = calybris(&["show", s(&dir), "--seq", &setup_at.to_string()]);
    assert!(
        shown
            .stdout
            .contains("2 regimes, 1 features, 3 tiers (static tier 2)"),
        "{shown:?}"
    );
    let snapshot_at = log
        .iter()
        .position(|r| matches!(r, GateRecord::EngineSnapshot(_)))
        .expect("a snapshot record");
    let shown = calybris(&["show", s(&dir), "--seq", &snapshot_at.to_string()]);
    assert!(shown.stdout.contains("after 10 updates"), "{shown:?}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_flipped_outcome_is_an_adaptive_state_mismatch_at_the_next_decision() {
    let root = temp_dir("adaptive-flip");
    let dir = root.join("gate");
    write(&dir, 40);
    let mut log = records(&dir);
    let flipped = log
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, GateRecord::Outcome(_)))
        .nth(15)
        .map(|(i, _)| i)
        .expect("outcomes");
    if let GateRecord::Outcome(o) = &mut log[flipped] {
        o.success = !o.success;
    }
    let next = log
        .iter()
        .enumerate()
        .skip(flipped + 1)
        .find(|(_, r)| matches!(r, GateRecord::Decision(_) | GateRecord::EngineSnapshot(_)))
        .map(|(i, _)| i as u64)
        .expect("a record after it");
    let copy = root.join("copy");
    std::fs::create_dir_all(&copy).expect("dir");
    let wal = DurableWal::<GateRecord>::open(&copy.join(LOG_DIR), DurableConfig::default())
        .expect("open the forged log");
    for record in &log {
        let _ = wal.append(record).expect("append");
    }
    wal.close().expect("close");
    let run = calybris(&["verify", s(&copy), "--json"]);
    // DIVERGED: exit 1.
    assert_eq!(run.code, 1, "{run:?}");
    let v = run.json();
    assert_eq!(v["reason"], "ADAPTIVE_STATE_MISMATCH", "{v}");
    assert_eq!(v["outcome"], "DIVERGED", "{v}");
    assert_eq!(v["sequence"], next, "{v}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_retained_adaptive_log_verifies_from_its_engine_state_and_a_forged_state_is_named() {
    let root = temp_dir("adaptive-retained");
    let dir = root.join("gate");
    let retained = |c: GateConfig| {
        c.retention(Retention::SinceLastSnapshot)
            .snapshot_every_records(60)
            .segment_limit_bytes(8 * 1024)
    };
    write_with(&dir, 200, retained);
    // Reopened on the retained log (the engine replays from its state record), ten
    // more decisions: fewer records than the snapshot interval, so they follow the
    // last state record.
    write_with(&dir, 10, retained);
    let anchor = std::fs::read_to_string(dir.join(START_ANCHOR_FILE)).expect("segments retired");
    let anchor = anchor.trim();
    let run = calybris(&["verify", s(&dir), "--start-anchor", anchor, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    let counts = &report["gate"]["counts"];
    assert!(counts["engine_states"].as_u64() > Some(0), "{report}");
    assert!(
        counts["adaptive_decisions"].as_u64() >= Some(10),
        "{report}"
    );
    assert!(counts["decisions"].as_u64() < Some(210), "{report}");

    // Retention with segments too large to retire: the log keeps record 0 and holds
    // state records; `show` describes one, and a forged one is named.
    let whole = root.join("whole");
    write_with(&whole, 120, |c| {
        c.retention(Retention::SinceLastSnapshot)
            .snapshot_every_records(60)
    });
    let mut log = records(&whole);
    let at = log
        .iter()
        .position(|r| matches!(r, GateRecord::EngineState(_)))
        .expect("a state record");
    let shown = calybris(&["show", s(&whole), "--seq", &at.to_string()]);
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(
        shown.stdout.contains("the engine's whole state after"),
        "{shown:?}"
    );
    // Every outcome here follows its decision at once: nothing waits, so no pending
    // record, and the engine snapshot comes next.
    assert!(
        matches!(log[at + 1], GateRecord::EngineSnapshot(_)),
        "{:?}",
        log[at + 1]
    );
    if let GateRecord::EngineState(state) = &mut log[at] {
        state.regimes[0].floor_bps += 10;
    }
    let copy = root.join("forged");
    std::fs::create_dir_all(&copy).expect("dir");
    let wal = DurableWal::<GateRecord>::open(&copy.join(LOG_DIR), DurableConfig::default())
        .expect("open the forged log");
    for record in &log {
        let _ = wal.append(record).expect("append");
    }
    wal.close().expect("close");
    let run = calybris(&["verify", s(&copy), "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let v = run.json();
    assert_eq!(v["reason"], "ADAPTIVE_STATE_RECORD_MISMATCH", "{v}");
    assert_eq!(v["sequence"], at as u64, "{v}");
    let _ = std::fs::remove_dir_all(&root);
}
