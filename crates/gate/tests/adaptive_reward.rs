//! Reward feedback of the gate's adaptive engine (`AdaptiveFeedback::Reward`,
//! `docs/ADAPT.md` section 9): a log whose engine learns from each outcome's reward
//! (two dithered observations per outcome) re-derives with `verify_dir`; a snapshot
//! is written whenever an outcome's updates reach or pass a multiple of the snapshot
//! interval (an odd interval with two updates per outcome); a forged reward that
//! changes a learned bit fails verification at the next decision; the bounds of the
//! feedback are checked at open; and a reopened gate goes on.
//!
//! Seeded: `CALYBRIS_SEED` replays a run; failures print the seed.

mod common;

use calybris_digest::SealedPolicy;
use calybris_gate::adaptive::{
    AdaptiveFeedback, AdaptiveMismatch, AdaptivePolicy, AdaptiveRegime, AdaptiveSetup,
    AdaptiveTier, MAX_REWARD_OBSERVATIONS,
};
use calybris_gate::record::GateRecord;
use calybris_gate::{
    AdaptiveRequest, CallerMeta, Gate, GateConfig, GateError, LOG_DIR, Outcome, VerifyError,
    VerifyOptions, verify_dir,
};
use calybris_kernel::PolicySnapshot;
use calybris_wal::{DurableConfig, DurableWal, SegmentedReader};
use calybris_workload::SplitMix64;
use common::TempDir;

const DECISIONS: u64 = 300;
const SNAPSHOT_EVERY: u64 = 3;
const OBSERVATIONS: u32 = 2;

/// Three free models (no holds to settle) of qualities 0.60, 0.75, 0.90.
fn policy() -> SealedPolicy {
    SealedPolicy::new(
        PolicySnapshot::builder()
            .models([(1, 6_000), (2, 7_500), (3, 9_000)].map(|(id, q)| common::model(id, q, 0)))
            .build()
            .expect("valid policy"),
    )
}

fn setup(feedback: AdaptiveFeedback) -> AdaptiveSetup {
    AdaptiveSetup {
        format_version: 1,
        regimes: ["coding", "other"]
            .iter()
            .map(|label| AdaptiveRegime {
                label: (*label).to_owned(),
                domain: 5,
                custom_floor_bps: 5_000,
            })
            .collect(),
        features: 1,
        floor_min_bps: 5_000,
        floor_max_bps: 9_900,
        step_bps: 10,
        min_observations: 8,
        fallback: 1,
        priors: vec![(1, 1); 3],
        policy: AdaptivePolicy::Thompson { redraws: 4 },
        exploration_bps: 10_000,
        key: [0x3c; 32],
        tiers: (0..3)
            .map(|i| AdaptiveTier {
                floor_bps: 0,
                requested_model_id: Some(i + 1),
            })
            .collect(),
        static_tier: 0,
        snapshot_every_updates: SNAPSHOT_EVERY,
        feedback,
    }
}

fn reward_feedback() -> AdaptiveFeedback {
    AdaptiveFeedback::Reward {
        cost_bound_bps: 5_000,
        observations: OBSERVATIONS,
    }
}

fn config(dir: &std::path::Path, feedback: AdaptiveFeedback) -> GateConfig {
    GateConfig::new(dir, policy())
        .tenant("acme", 1_000_000_000)
        .clock(|| 1_764_620_000_000)
        .adaptive(setup(feedback))
}

/// Decides `n` requests from `from` on, each with an outcome whose reward is seeded
/// in `[-40,000, 50,000]` (the value is 50,000; half of the scale's low end is below
/// it, so some rewards are clamped).
fn decide(gate: &Gate, rng: &mut SplitMix64, from: u64, n: u64) {
    // Each outcome at once: the same draws, in the same order, as no lag.
    decide_delayed(gate, rng, from, n, 0);
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

fn rewrite(dir: &std::path::Path, log: &[GateRecord]) {
    std::fs::create_dir_all(dir).expect("dir");
    let wal = DurableWal::<GateRecord>::open(&dir.join(LOG_DIR), DurableConfig::default())
        .expect("open the forged log");
    for record in log {
        let _ = wal.append(record).expect("append");
    }
    wal.close().expect("close");
}

#[test]
fn a_reward_feedback_log_re_derives_and_snapshots_on_every_crossing() {
    let seed = common::seed(0x0ead_feed);
    let tmp = TempDir::new("adaptive-reward");
    let dir = tmp.0.join("gate");
    let gate = Gate::open(config(&dir, reward_feedback())).expect("open");
    let mut rng = SplitMix64::new(seed);
    decide(&gate, &mut rng, 0, DECISIONS);
    gate.close().expect("close");
    let report = verify_dir(&dir, &VerifyOptions::default())
        .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    assert_eq!(
        report.counts.adaptive_decisions, DECISIONS,
        "seed {seed:#x}"
    );
    // Two updates per outcome, a snapshot each time the count reaches or passes a
    // multiple of 3: one per multiple of 3 up to 600.
    let updates = DECISIONS * u64::from(OBSERVATIONS);
    assert_eq!(
        report.counts.engine_snapshots,
        updates / SNAPSHOT_EVERY,
        "seed {seed:#x}"
    );
    let log = records(&dir);
    let last = log
        .iter()
        .rev()
        .find_map(|r| match r {
            GateRecord::EngineSnapshot(s) => Some(*s),
            _ => None,
        })
        .expect("snapshots");
    assert_eq!(
        last.updates + last.refused_updates,
        updates,
        "seed {seed:#x}"
    );

    // Reopened, the gate replays the engine and goes on.
    let gate = Gate::open(config(&dir, reward_feedback())).expect("reopen");
    decide(&gate, &mut rng, DECISIONS, 20);
    gate.close().expect("close");
    let report = verify_dir(&dir, &VerifyOptions::default())
        .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    assert_eq!(report.counts.adaptive_decisions, DECISIONS + 20);

    // One outcome's reward forged to the scale's low end (both bits 0) and to its high
    // end (both bits 1): at least one of the two changes a bit learned (both do when
    // the original bits differ), and the verifier names the first record after it.
    let target = log
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, GateRecord::Outcome(_)))
        .nth(100)
        .map(|(i, _)| i)
        .expect("outcomes");
    let next = log
        .iter()
        .enumerate()
        .skip(target + 1)
        .find(|(_, r)| matches!(r, GateRecord::Decision(_) | GateRecord::EngineSnapshot(_)))
        .map(|(i, _)| i as u64)
        .expect("a record after it");
    let mut failed = 0;
    for (name, reward) in [("low", i64::MIN), ("high", i64::MAX)] {
        let mut forged = log.clone();
        if let GateRecord::Outcome(o) = &mut forged[target] {
            o.reward_microunits = reward;
        }
        let copy = tmp.0.join(format!("forged-{name}"));
        rewrite(&copy, &forged);
        match verify_dir(&copy, &VerifyOptions::default()) {
            Ok(_) => {}
            Err(VerifyError::Adaptive { sequence, kind, .. }) => {
                assert_eq!(kind, AdaptiveMismatch::State, "seed {seed:#x}");
                assert_eq!(sequence, next, "seed {seed:#x}");
                failed += 1;
            }
            Err(e) => panic!("seed {seed:#x}: {name}: {e}"),
        }
    }
    assert!(
        failed >= 1,
        "seed {seed:#x}: no forgery changed the engine state"
    );
}

#[test]
fn success_feedback_ignores_the_reward_and_bounds_are_checked_at_open() {
    let seed = common::seed(0x005c_ce55);
    let tmp = TempDir::new("adaptive-success");
    let dir = tmp.0.join("gate");
    let gate = Gate::open(config(&dir, AdaptiveFeedback::Success)).expect("open");
    let mut rng = SplitMix64::new(seed);
    decide(&gate, &mut rng, 0, 60);
    gate.close().expect("close");
    let report = verify_dir(&dir, &VerifyOptions::default())
        .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    // One update per outcome.
    assert_eq!(report.counts.engine_snapshots, 60 / SNAPSHOT_EVERY);
    // With success feedback a forged reward changes nothing the engine learned.
    let mut log = records(&dir);
    for record in &mut log {
        if let GateRecord::Outcome(o) = record {
            o.reward_microunits = -o.reward_microunits;
        }
    }
    let copy = tmp.0.join("forged");
    rewrite(&copy, &log);
    verify_dir(&copy, &VerifyOptions::default()).unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));

    for feedback in [
        AdaptiveFeedback::Reward {
            cost_bound_bps: 5_000,
            observations: 0,
        },
        AdaptiveFeedback::Reward {
            cost_bound_bps: 5_000,
            observations: MAX_REWARD_OBSERVATIONS + 1,
        },
        AdaptiveFeedback::Reward {
            cost_bound_bps: 10_001,
            observations: 1,
        },
    ] {
        let refused = tmp.0.join("refused");
        match Gate::open(config(&refused, feedback)) {
            Err(GateError::AdaptiveSetup(_)) => {}
            other => panic!("{feedback:?}: {:?}", other.map(|_| "opened")),
        }
    }
}

/// Decides `n` requests from `from` on; each decision's outcome (a seeded reward) is
/// recorded only after the next `lag` decisions, so decisions wait for their outcome
/// whenever a book snapshot (and the engine's state records) is written.
fn decide_delayed(gate: &Gate, rng: &mut SplitMix64, from: u64, n: u64, lag: usize) {
    let mut waiting = std::collections::VecDeque::new();
    for sequence in from..from + n {
        let input = common::request(sequence, 1);
        let label = if rng.percent(50) { "coding" } else { "other" };
        let features = [i32::try_from(rng.below(100)).expect("small")];
        let admission = gate
            .decide_adaptive(
                "acme",
                input,
                CallerMeta {
                    request_id: [0; 16],
                    recorded_at_unix_ms: 1_764_620_000_000,
                },
                AdaptiveRequest {
                    label: Some(label),
                    features: &features,
                },
            )
            .expect("decide");
        waiting.push_back(admission.decision_ref());
        drop(admission);
        while waiting.len() > lag {
            let decision_ref = waiting.pop_front().expect("waiting");
            let reward = i64::try_from(rng.below(90_001)).expect("small") - 40_000;
            let _ = gate
                .record_outcome(
                    decision_ref,
                    Outcome {
                        reward_microunits: reward,
                        success: reward > 0,
                        latency_ms: 0,
                        detail: Vec::new(),
                    },
                )
                .expect("outcome");
        }
    }
}

/// Reward feedback under retention: the state records carry the waiting decisions
/// with their values (the reward scale they learn on), so a gate reopened on the
/// retained log goes on exactly as a twin that kept every record, and the suffix
/// verifies from its start anchor.
#[test]
fn a_retained_reward_log_with_waiting_decisions_goes_on_as_its_twin() {
    let seed = common::seed(0x0ead_2e7a);
    let retained = TempDir::new("adaptive-reward-retained");
    let twin = TempDir::new("adaptive-reward-twin");
    let open = |dir: &std::path::Path, retention| {
        Gate::open(
            config(dir, reward_feedback())
                .snapshot_every_records(45)
                .segment_limit_bytes(8 * 1024)
                .retention(retention),
        )
        .unwrap_or_else(|e| panic!("seed {seed:#x}: open: {e}"))
    };
    for (dir, retention) in [
        (&retained.0, calybris_gate::Retention::SinceLastSnapshot),
        (&twin.0, calybris_gate::Retention::KeepAll),
    ] {
        let mut rng = SplitMix64::new(seed);
        let gate = open(dir, retention);
        decide_delayed(&gate, &mut rng, 0, 150, 7);
        gate.close().expect("close");
        let gate = open(dir, retention);
        decide_delayed(&gate, &mut rng, 150, 100, 7);
        gate.close().expect("close");
    }
    let anchor = std::fs::read_to_string(retained.0.join(calybris_gate::START_ANCHOR_FILE))
        .unwrap_or_else(|e| panic!("seed {seed:#x}: segments retired: {e}"));
    let start: calybris_wal::WalAnchor = anchor
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("seed {seed:#x}: {e:?}"));
    let report = verify_dir(
        &retained.0,
        &VerifyOptions {
            start_anchor: Some(start),
            ..VerifyOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    assert!(report.counts.engine_states > 0, "{:?}", report.counts);
    assert!(report.counts.adaptive_decisions > 0, "{:?}", report.counts);
    let mut reader = SegmentedReader::<GateRecord>::open(&retained.0.join(LOG_DIR), None, None)
        .expect("reader")
        .with_start_anchor(Some(start));
    let mut kept = Vec::new();
    while let Some(entry) = reader.next_entry().expect("entry") {
        kept.push(entry.record);
    }
    assert!(
        kept.iter()
            .any(|r| matches!(r, GateRecord::EnginePending(p) if !p.decisions.is_empty())),
        "seed {seed:#x}: a state record with waiting decisions"
    );
    let notes = |log: &[GateRecord]| -> std::collections::HashMap<u64, calybris_gate::adaptive::AdaptiveNote> {
        log.iter()
            .filter_map(|r| match r {
                GateRecord::Decision(d) => Some((d.audit.input.request_sequence, d.adaptive.clone()?)),
                _ => None,
            })
            .collect()
    };
    let twin_notes = notes(&records(&twin.0));
    let kept_notes = notes(&kept);
    assert_eq!(twin_notes.len(), 250);
    assert!(!kept_notes.is_empty());
    for (request, note) in &kept_notes {
        assert_eq!(
            Some(note),
            twin_notes.get(request),
            "seed {seed:#x}: request {request}"
        );
    }
}
