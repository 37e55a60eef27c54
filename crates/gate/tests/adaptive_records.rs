//! Adaptive records in a log read by any build: with the `adaptive` feature the
//! verifier checks them; without it, it refuses them with a typed error (never skips
//! them in silence).

mod common;

use calybris_gate::adaptive::{
    AdaptiveMismatch, AdaptivePolicy, AdaptiveRegime, AdaptiveSetup, AdaptiveTier,
};
use calybris_gate::record::GateRecord;
use calybris_gate::{Gate, GateConfig, LOG_DIR, VerifyError, VerifyOptions, verify_dir};
use calybris_wal::{DurableConfig, DurableWal, SegmentedReader};
use common::TempDir;

fn setup() -> AdaptiveSetup {
    AdaptiveSetup {
        format_version: 1,
        regimes: vec![AdaptiveRegime {
            label: "support".into(),
            domain: 1,
            custom_floor_bps: 0,
        }],
        features: 1,
        floor_min_bps: 5_000,
        floor_max_bps: 9_900,
        step_bps: 10,
        min_observations: 8,
        fallback: 0,
        priors: vec![(1, 1), (2, 1)],
        policy: AdaptivePolicy::EpsilonGreedy { epsilon_bps: 200 },
        exploration_bps: 1_000,
        key: [1; 32],
        tiers: vec![
            AdaptiveTier {
                floor_bps: 0,
                requested_model_id: None,
            },
            AdaptiveTier {
                floor_bps: 9_000,
                requested_model_id: Some(1),
            },
        ],
        static_tier: 0,
        snapshot_every_updates: 0,
        feedback: Default::default(),
    }
}

#[test]
fn a_setup_record_is_checked_or_refused_by_type() {
    let tmp = TempDir::new("adaptive-records");
    let plain = tmp.0.join("plain");
    let gate = Gate::open(GateConfig::new(&plain, common::policy(false)).tenant("acme", 10))
        .expect("open");
    gate.close().expect("close");
    let mut records = Vec::new();
    let mut reader =
        SegmentedReader::<GateRecord>::open(&plain.join(LOG_DIR), None, None).expect("reader");
    while let Some(entry) = reader.next_entry().expect("entry") {
        records.push(entry.record);
    }
    let at = records.len() as u64;
    records.push(GateRecord::AdaptiveSetup(setup()));
    let forged = tmp.0.join("with-setup");
    std::fs::create_dir_all(&forged).expect("dir");
    let wal = DurableWal::<GateRecord>::open(&forged.join(LOG_DIR), DurableConfig::default())
        .expect("open the log");
    for record in &records {
        let _ = wal.append(record).expect("append");
    }
    wal.close().expect("close");
    let result = verify_dir(&forged, &VerifyOptions::default());
    if cfg!(feature = "adaptive") {
        let report = result.expect("a valid setup verifies");
        assert_eq!(report.counts.adaptive_decisions, 0);
    } else {
        match result {
            Err(VerifyError::Adaptive { sequence, kind, .. }) => {
                assert_eq!((sequence, kind), (at, AdaptiveMismatch::Unsupported));
            }
            other => panic!("{other:?}"),
        }
    }
}
