//! The adaptive engine in the gate (issue 11): every adaptive step of a log re-derives
//! from the log alone, one flipped outcome fails verification at the first decision
//! whose engine state it changes, and the properties of the learner (it never loosens a
//! hard gate, a client floor always wins, exploration off is the static policy).
//!
//! Seeded: `CALYBRIS_SEED` replays a run; failures print the seed.

mod common;

use calybris_digest::SealedPolicy;
use calybris_gate::adaptive::{
    AdaptiveMismatch, AdaptivePolicy, AdaptiveRegime, AdaptiveSetup, AdaptiveTier,
};
use calybris_gate::record::GateRecord;
use calybris_gate::{
    AdaptiveRequest, CallerMeta, Gate, GateConfig, LOG_DIR, VerifyError, VerifyOptions, verify_dir,
};
use calybris_kernel::{KernelInput, PolicySnapshot};
use calybris_wal::{DurableConfig, DurableWal, SegmentedReader};
use calybris_workload::{SplitMix64, seed_from_env};
use common::TempDir;

const TIERS: u32 = 22;
const LABELS: [&str; 8] = [
    "support",
    "coding",
    "compliance",
    "security",
    "analysis",
    "writing",
    "extraction",
    "other",
];

/// 22 free models (no holds to settle) of qualities 0.55 to 0.97.
fn policy() -> SealedPolicy {
    SealedPolicy::new(
        PolicySnapshot::builder()
            .models((0..TIERS).map(|i| {
                let mut m = common::model(i + 1, 5_500 + 200 * u16::try_from(i).unwrap(), 0);
                m.provider_id = u16::try_from(i % 4).unwrap();
                m
            }))
            .build()
            .expect("valid policy"),
    )
}

fn setup(exploration_bps: u32, redraws: u32, snapshot_every_updates: u64) -> AdaptiveSetup {
    let domains = [
        (1, 0),
        (2, 0),
        (3, 0),
        (4, 0),
        (5, 5_500),
        (5, 5_500),
        (5, 5_500),
        (5, 5_500),
    ];
    AdaptiveSetup {
        format_version: 1,
        regimes: LABELS
            .iter()
            .zip(domains)
            .map(|(label, (domain, floor))| AdaptiveRegime {
                label: (*label).to_owned(),
                domain,
                custom_floor_bps: floor,
            })
            .collect(),
        features: 4,
        floor_min_bps: 5_000,
        floor_max_bps: 9_900,
        step_bps: 10,
        min_observations: 8,
        fallback: 7,
        priors: vec![(1, 1); TIERS as usize],
        policy: AdaptivePolicy::Thompson { redraws },
        exploration_bps,
        key: [0x5a; 32],
        tiers: (0..TIERS)
            .map(|i| AdaptiveTier {
                floor_bps: 0,
                requested_model_id: Some(i + 1),
            })
            .collect(),
        static_tier: 0,
        snapshot_every_updates,
        feedback: Default::default(),
    }
}

/// One seeded request: its kernel input, label and features.
fn request(rng: &mut SplitMix64, sequence: u64) -> (KernelInput, Option<&'static str>, [i32; 4]) {
    let mut input = common::request(
        sequence,
        1 + u32::try_from(rng.below(u64::from(TIERS))).unwrap(),
    );
    // A client floor on a quarter of the requests.
    if rng.percent(25) {
        input.minimum_quality_bps = u16::try_from(rng.between(5_000, 9_700)).unwrap();
    }
    if rng.percent(10) {
        input.allowed_provider_mask = 0b0101;
    }
    let label = if rng.percent(80) {
        rng.pick(&LABELS).copied()
    } else {
        None
    };
    let regime = i32::try_from(rng.below(8)).unwrap();
    let features = [
        regime * 100 + i32::try_from(rng.below(20)).unwrap(),
        i32::try_from(rng.below(1_000)).unwrap(),
        regime,
        i32::try_from(rng.below(2)).unwrap(),
    ];
    (input, label, features)
}

/// Writes `n` adaptive decisions with outcomes (nine in ten of them) into `dir`.
fn write(dir: &std::path::Path, seed: u64, n: u64, setup: AdaptiveSetup) {
    let config = GateConfig::new(dir, policy())
        .tenant("acme", 1_000_000_000)
        .clock(|| 1_764_620_000_000)
        .adaptive(setup);
    let gate = Gate::open(config).expect("open");
    let mut rng = SplitMix64::new(seed);
    // Outcomes from their own stream, so the requests replay from the seed alone.
    let mut outcomes = SplitMix64::new(seed ^ 0x0c7c_0e00);
    for sequence in 0..n {
        let (input, label, features) = request(&mut rng, sequence);
        let admission = gate
            .decide_adaptive(
                "acme",
                input,
                CallerMeta {
                    request_id: [0; 16],
                    recorded_at_unix_ms: 1_764_620_000_000,
                },
                AdaptiveRequest {
                    label,
                    features: &features,
                },
            )
            .expect("decide");
        let decision_ref = admission.decision_ref();
        drop(admission);
        // Nine in ten get an outcome; success more likely on better models.
        if outcomes.percent(90) {
            let model = u64::from(decision_ref_model(&input));
            let success = outcomes.below(100) < 40 + model * 2;
            let _ = gate
                .record_outcome(decision_ref, common::binary_outcome(success))
                .expect("outcome");
        }
    }
    gate.close().expect("close");
}

fn decision_ref_model(input: &KernelInput) -> u32 {
    input.requested_model_id
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

fn rewrite(dir: &std::path::Path, records: &[GateRecord]) {
    std::fs::create_dir_all(dir).expect("dir");
    let wal = DurableWal::<GateRecord>::open(&dir.join(LOG_DIR), DurableConfig::default())
        .expect("open the rewritten log");
    for record in records {
        let _ = wal.append(record).expect("append");
    }
    wal.close().expect("close");
}

/// 10^6 adaptive decisions on 22 tiers in release (the xtask test step runs this
/// binary in release); 20,000 in a debug build.
#[test]
fn a_log_of_adaptive_decisions_re_derives_with_zero_divergences() {
    let seed = seed_from_env(0x11_ada9);
    let n = if cfg!(debug_assertions) {
        20_000
    } else {
        1_000_000
    };
    let tmp = TempDir::new("adaptive-replay");
    let started = std::time::Instant::now();
    write(tmp.0.as_path(), seed, n, setup(10_000, 3, 10_000));
    let written = started.elapsed();
    let started = std::time::Instant::now();
    let report = verify_dir(tmp.0.as_path(), &VerifyOptions::default())
        .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    let verified = started.elapsed();
    // Figures for docs/BENCHMARKS.md (not asserted: the machine is shared).
    eprintln!(
        "{n} adaptive decisions: written in {written:?}, verified in {verified:?} ({:.0} decisions/s)",
        n as f64 / verified.as_secs_f64()
    );
    assert_eq!(report.counts.decisions, n, "seed {seed:#x}");
    assert_eq!(report.counts.adaptive_decisions, n, "seed {seed:#x}");
    // About 0.9·n updates: one snapshot per 10,000.
    assert!(
        report.counts.engine_snapshots >= n * 85 / 100 / 10_000,
        "seed {seed:#x}: {:?}",
        report.counts
    );
}

#[test]
fn a_flipped_outcome_fails_at_the_first_decision_it_changes() {
    let seed = seed_from_env(0xf1_1bed);
    let tmp = TempDir::new("adaptive-flip");
    let source = tmp.0.as_path().join("source");
    write(&source, seed, 600, setup(10_000, 3, 0));
    verify_dir(&source, &VerifyOptions::default())
        .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    let mut log = records(&source);
    // The outcome of the 200th outcome record, flipped.
    let (flipped, _) = log
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, GateRecord::Outcome(_)))
        .nth(200)
        .expect("enough outcomes");
    let GateRecord::Outcome(outcome) = &mut log[flipped] else {
        unreachable!()
    };
    outcome.success = !outcome.success;
    // The first adaptive decision after it sees a state the log no longer gives.
    let expected = log
        .iter()
        .enumerate()
        .skip(flipped + 1)
        .find(|(_, r)| matches!(r, GateRecord::Decision(d) if d.adaptive.is_some()))
        .map(|(i, _)| i as u64)
        .expect("a decision after it");
    let forged = tmp.0.as_path().join("forged");
    rewrite(&forged, &log);
    match verify_dir(&forged, &VerifyOptions::default()) {
        Err(VerifyError::Adaptive { sequence, kind, .. }) => {
            assert_eq!(kind, AdaptiveMismatch::State, "seed {seed:#x}");
            assert_eq!(sequence, expected, "seed {seed:#x}");
        }
        other => panic!("seed {seed:#x}: {other:?}"),
    }
    // A tampered draw is named as such, at its own decision.
    let mut log = records(&source);
    let (at, note) = log
        .iter_mut()
        .enumerate()
        .find_map(|(i, r)| match r {
            GateRecord::Decision(d) if i > 100 => d.adaptive.as_mut().map(|n| (i, n)),
            _ => None,
        })
        .expect("an adaptive decision");
    note.draw = note.draw.map(|d| (d + 1) % 10_000);
    let forged = tmp.0.as_path().join("forged-draw");
    rewrite(&forged, &log);
    match verify_dir(&forged, &VerifyOptions::default()) {
        Err(VerifyError::Adaptive { sequence, kind, .. }) => {
            assert_eq!((kind, sequence), (AdaptiveMismatch::Draw, at as u64));
        }
        other => panic!("seed {seed:#x}: {other:?}"),
    }
}

#[test]
fn the_learner_never_loosens_a_gate_and_the_client_floor_wins() {
    let seed = seed_from_env(0x9a7e);
    let tmp = TempDir::new("adaptive-properties");
    write(tmp.0.as_path(), seed, 3_000, setup(10_000, 3, 0));
    let policy = policy();
    let mut rng = SplitMix64::new(seed);
    let mut decisions = 0;
    let mut overridden = 0;
    for record in records(tmp.0.as_path()) {
        let GateRecord::Decision(d) = record else {
            continue;
        };
        let note = d.adaptive.expect("every decision is adaptive");
        let (caller, _, _) = request(&mut rng, d.audit.input.request_sequence);
        let logged = d.audit.input;
        // Only the floor (raised) and the requested model may differ.
        let mut same = logged;
        same.minimum_quality_bps = caller.minimum_quality_bps;
        same.requested_model_id = caller.requested_model_id;
        assert_eq!(same, caller, "seed {seed:#x}");
        assert!(logged.minimum_quality_bps >= caller.minimum_quality_bps);
        // The client floor always wins.
        if caller.minimum_quality_bps > 0 {
            assert_eq!(
                note.client_floor_bps,
                Some(u32::from(caller.minimum_quality_bps))
            );
            assert!(note.floor_bps >= u32::from(caller.minimum_quality_bps));
            if u32::from(caller.minimum_quality_bps) > note.floor_suggested_bps {
                assert!(note.client_floor_overrode);
                overridden += 1;
            }
        }
        // Every hard gate of the caller's input holds for what the kernel selected.
        if d.audit.decision.is_selection() {
            let m = policy
                .snapshot()
                .models()
                .iter()
                .find(|m| m.model_id == d.audit.decision.selected_model_id)
                .expect("a policy model");
            assert!(
                m.quality_bps >= caller.minimum_quality_bps,
                "seed {seed:#x}"
            );
            assert!((1u64 << m.provider_id) & caller.allowed_provider_mask != 0);
        }
        decisions += 1;
    }
    assert_eq!(decisions, 3_000);
    assert!(
        overridden > 0,
        "seed {seed:#x}: no client floor above the engine's"
    );
}

#[test]
fn with_exploration_off_the_decisions_are_the_static_policys() {
    let seed = seed_from_env(0x57a7);
    let tmp = TempDir::new("adaptive-static");
    let static_dir = tmp.0.as_path().join("static");
    write(&static_dir, seed, 2_000, setup(0, 3, 0));
    verify_dir(&static_dir, &VerifyOptions::default()).expect("verifies");
    let warm = [5_500, 7_200, 9_200, 9_200, 5_500, 5_500, 5_500, 5_500];
    for record in records(&static_dir) {
        let GateRecord::Decision(d) = record else {
            continue;
        };
        let note = d.adaptive.expect("adaptive");
        assert_eq!((note.tier, note.explored, note.draw), (0, false, None));
        assert_eq!(
            (note.propensity_numerator, note.propensity_denominator),
            (1, 1)
        );
        // The static policy: the warm-start floor of the regime, raised to the client's.
        assert_eq!(note.floor_suggested_bps, warm[note.regime as usize]);
        let client = note.client_floor_bps.unwrap_or(0);
        assert_eq!(
            note.floor_bps,
            client.max(note.floor_suggested_bps),
            "seed {seed:#x}"
        );
        assert_eq!(d.audit.input.requested_model_id, 1);
        assert_eq!(u32::from(d.audit.input.minimum_quality_bps), note.floor_bps);
    }
}

#[test]
fn an_adaptive_gate_refuses_what_it_cannot_do() {
    let tmp = TempDir::new("adaptive-refusals");
    let mut bad = setup(10_000, 3, 0);
    bad.static_tier = TIERS;
    let refused = Gate::open(GateConfig::new(tmp.0.as_path().join("bad"), policy()).adaptive(bad));
    assert!(matches!(
        refused,
        Err(calybris_gate::GateError::AdaptiveSetup(_))
    ));
    let plain =
        Gate::open(GateConfig::new(tmp.0.as_path().join("plain"), policy()).tenant("acme", 10))
            .expect("open");
    let features = [0; 4];
    let request = AdaptiveRequest {
        label: None,
        features: &features,
    };
    let caller = CallerMeta {
        request_id: [0; 16],
        recorded_at_unix_ms: 0,
    };
    assert!(matches!(
        plain.decide_adaptive("acme", common::request(0, 1), caller, request),
        Err(calybris_gate::GateError::AdaptiveNotConfigured)
    ));
    plain.close().expect("close");
    // A reopened log replays the engine from the log and goes on; the whole log
    // then verifies, every adaptive decision before and after the reopen.
    let dir = tmp.0.join("reopen");
    write(&dir, 1, 300, setup(10_000, 3, 50));
    write(&dir, 2, 300, setup(10_000, 3, 50));
    let report = verify_dir(&dir, &VerifyOptions::default()).expect("verifies");
    assert_eq!(report.counts.adaptive_decisions, 600);
    assert!(report.counts.engine_snapshots >= 8, "{:?}", report.counts);
    let setups = records(&dir)
        .iter()
        .filter(|r| matches!(r, GateRecord::AdaptiveSetup(_)))
        .count();
    assert_eq!(setups, 1, "the reopen does not write a second setup");
    // Another setup on the same log is refused.
    let changed = Gate::open(GateConfig::new(&dir, policy()).adaptive(setup(5_000, 3, 50)));
    assert!(matches!(
        changed,
        Err(calybris_gate::GateError::AdaptiveSetupChanged)
    ));
    // A wrong feature count is a typed error and logs nothing.
    let gate = Gate::open(
        GateConfig::new(tmp.0.as_path().join("features"), policy())
            .tenant("acme", 10)
            .adaptive(setup(10_000, 3, 0)),
    )
    .expect("open");
    let short = [1, 2];
    assert!(matches!(
        gate.decide_adaptive(
            "acme",
            common::request(0, 1),
            caller,
            AdaptiveRequest {
                label: None,
                features: &short
            }
        ),
        Err(calybris_gate::GateError::Learn(_))
    ));
    gate.close().expect("close");
}
