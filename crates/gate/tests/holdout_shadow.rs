//! The holdout and live shadow mode end to end: the realised holdout share, the
//! baseline deciding held-out requests, one staged candidate at a time, shadow notes
//! that never change a response, and the verifier re-deriving both.

mod common;

use calybris_digest::SealedPolicy;
use calybris_gate::record::{GateDecision, StageRole};
use calybris_gate::{
    Gate, GateConfig, GateError, GateRecord, HoldoutConfig, HoldoutKey, Retention, VerifyError,
    VerifyOptions, verify_dir,
};
use calybris_kernel::{KernelInput, PolicySnapshot};
use calybris_wal::{DurableConfig, DurableWal, SegmentedReader};
use common::{Rng, TempDir, baseline, candidate, holdout_key, model, policy, request, seed};

fn records(dir: &TempDir) -> Vec<GateRecord> {
    SegmentedReader::<GateRecord>::open(&dir.0.join("log"), None, None)
        .expect("log opens")
        .map(|entry| entry.expect("entry").record)
        .collect()
}

fn decisions(records: &[GateRecord]) -> Vec<&GateDecision> {
    records
        .iter()
        .filter_map(|record| match record {
            GateRecord::Decision(decision) => Some(decision),
            _ => None,
        })
        .collect()
}

fn with_key() -> VerifyOptions {
    VerifyOptions {
        holdout_key: Some(holdout_key()),
        ..VerifyOptions::default()
    }
}

/// Rewrites a log record by record into `dir` (the forged logs of the refusals).
fn forge(dir: &TempDir, records: &[GateRecord]) {
    std::fs::create_dir_all(&dir.0).expect("dir");
    let wal =
        DurableWal::<GateRecord>::open(&dir.0.join("log"), DurableConfig::default()).expect("open");
    for record in records {
        let _ = wal.append(record).expect("append");
    }
    wal.close().expect("close");
}

#[test]
fn the_realised_holdout_share_over_20_000_requests_is_within_half_a_point() -> Result<(), GateError>
{
    for share_bps in [2_000u16, 500, 5_000] {
        let dir = TempDir::new("share");
        let holdout = HoldoutConfig::new(holdout_key(), baseline())
            .share_bps(share_bps)
            .expect("in range");
        let gate = Gate::open(
            GateConfig::new(&dir.0, policy(false))
                .tenant("a", u64::MAX / 4)
                .holdout(holdout),
        )?;
        for n in 0..20_000u64 {
            let admission = gate.decide("a", request(n, 1))?;
            drop(admission);
        }
        gate.close()?;
        let all = records(&dir);
        let logged = decisions(&all);
        assert_eq!(logged.len(), 20_000);
        let held: Vec<_> = logged
            .iter()
            .filter(|d| d.holdout.expect("a note on every decision").held_out)
            .collect();
        let realised = held.len() as f64 / 20_000.0 * 10_000.0;
        assert!(
            (realised - f64::from(share_bps)).abs() <= 50.0,
            "share {share_bps} bps realised {realised} bps"
        );
        // Held out: decided by the baseline; the others by the policy in force.
        for d in &logged {
            let note = d.holdout.expect("note");
            assert_eq!(note.share_bps, share_bps);
            assert_eq!(note.baseline_digest, *baseline().digest());
            let expected = if note.held_out {
                *baseline().digest()
            } else {
                *policy(false).digest()
            };
            assert_eq!(d.audit.policy_digest, expected);
        }
        let report = verify_dir(&dir.0, &with_key()).expect("verifies with the holdout key");
        assert_eq!(report.counts.held_out, held.len() as u64);
        assert_eq!(report.counts.holdout_unchecked, 0);
        let unkeyed = verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
        assert_eq!(unkeyed.counts.holdout_unchecked, 20_000);
        let other = VerifyOptions {
            holdout_key: Some(HoldoutKey::new(&[1; 32]).expect("key")),
            ..VerifyOptions::default()
        };
        assert!(matches!(
            verify_dir(&dir.0, &other),
            Err(VerifyError::HoldoutKeyMismatch { .. })
        ));
    }
    Ok(())
}

#[test]
fn a_share_of_zero_turns_the_holdout_off_and_a_forged_assignment_is_named() -> Result<(), GateError>
{
    let off = TempDir::new("off");
    let holdout = HoldoutConfig::new(holdout_key(), baseline())
        .share_bps(0)
        .expect("in range");
    let gate = Gate::open(
        GateConfig::new(&off.0, policy(false))
            .tenant("a", 1 << 40)
            .holdout(holdout),
    )?;
    assert!(gate.holdout().is_none());
    drop(gate.decide("a", request(1, 1))?);
    gate.close()?;
    assert!(
        decisions(&records(&off))
            .iter()
            .all(|d| d.holdout.is_none())
    );

    let dir = TempDir::new("forged-holdout");
    let gate = Gate::open(
        GateConfig::new(&dir.0, policy(false))
            .tenant("a", 1 << 40)
            .holdout(HoldoutConfig::new(holdout_key(), baseline())),
    )?;
    for n in 0..50 {
        drop(gate.decide("a", request(n, 1))?);
    }
    gate.close()?;
    let mut all = records(&dir);
    // Flip the assignment of a decision made under the policy in force.
    let flipped = all
        .iter_mut()
        .find_map(|record| match record {
            GateRecord::Decision(d) if !d.holdout.expect("note").held_out => Some(d),
            _ => None,
        })
        .expect("a decision not held out");
    flipped.holdout.as_mut().expect("note").held_out = true;
    let forged = TempDir::new("forged-holdout-log");
    forge(&forged, &all);
    // Recorded as held out but decided under the policy in force.
    assert!(matches!(
        verify_dir(&forged.0, &with_key()),
        Err(VerifyError::HoldoutNotUnderBaseline { .. })
    ));

    // A held-out decision relabelled as not held out replays, but the key says no.
    let mut all = records(&dir);
    let relabelled = all
        .iter_mut()
        .find_map(|record| match record {
            GateRecord::Decision(d) if d.holdout.expect("note").held_out => Some(d),
            _ => None,
        })
        .expect("a held-out decision among 50 at 20 %");
    relabelled.holdout.as_mut().expect("note").held_out = false;
    let forged = TempDir::new("forged-holdout-relabelled");
    forge(&forged, &all);
    verify_dir(&forged.0, &VerifyOptions::default()).expect("structurally sound");
    assert!(matches!(
        verify_dir(&forged.0, &with_key()),
        Err(VerifyError::HoldoutMismatch {
            recorded: false,
            ..
        })
    ));
    Ok(())
}

#[test]
fn one_candidate_at_a_time_and_its_notes_re_derive() -> Result<(), GateError> {
    let dir = TempDir::new("shadow");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("a", 1 << 40))?;
    assert!(matches!(
        gate.unstage_shadow(),
        Err(GateError::NoShadowStaged)
    ));
    drop(gate.decide("a", request(0, 1))?);
    let _ticket = gate.stage_shadow(candidate())?;
    let refused = gate.stage_shadow(policy(true));
    match refused {
        Err(GateError::ShadowAlreadyStaged {
            staged,
            candidate: second,
        }) => {
            assert_eq!(staged, *candidate().digest());
            assert_eq!(second, *policy(true).digest());
        }
        other => panic!("a second staging must be refused, got {other:?}"),
    }
    for n in 1..=20 {
        drop(gate.decide("a", request(n, 1))?);
    }
    gate.close()?;
    // Reopened: still staged (from the log), restated.
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)))?;
    assert_eq!(
        gate.staged_shadow().map(|c| *c.digest()),
        Some(*candidate().digest())
    );
    drop(gate.decide("a", request(21, 1))?);
    let _ticket = gate.unstage_shadow()?;
    drop(gate.decide("a", request(22, 1))?);
    gate.close()?;

    let all = records(&dir);
    let logged = decisions(&all);
    assert!(logged[0].shadow.is_none(), "before the staging");
    assert!(logged[22].shadow.is_none(), "after the unstaging");
    for d in &logged[1..22] {
        let note = d.shadow.expect("a note while staged");
        assert_eq!(note.candidate_digest, *candidate().digest());
        let ours = candidate().snapshot().prescribe(d.audit.input);
        assert_eq!(note.action, ours.action);
        assert_eq!(note.selected_model_id, ours.selected_model_id);
        assert_eq!(note.reason, ours.reason);
        assert_eq!(
            note.decision_digest,
            calybris_digest::decision_digest(&ours)
        );
    }
    let staged = all
        .iter()
        .filter(|r| matches!(r, GateRecord::Staged(s) if s.role == StageRole::Shadow))
        .count();
    assert_eq!(staged, 2, "the staging and its restatement at reopen");
    let report = verify_dir(&dir.0, &VerifyOptions::default()).expect("verifies");
    assert_eq!(report.counts.shadow_notes, 21);
    assert_eq!(report.counts.unstaged, 1);

    // A note that is not the candidate's decision is named.
    let mut forged_records = all.clone();
    let tampered = forged_records
        .iter_mut()
        .find_map(|record| match record {
            GateRecord::Decision(d) if d.shadow.is_some() => Some(d),
            _ => None,
        })
        .expect("a note");
    tampered.shadow.as_mut().expect("note").selected_model_id ^= 7;
    let forged = TempDir::new("shadow-forged");
    forge(&forged, &forged_records);
    assert!(matches!(
        verify_dir(&forged.0, &VerifyOptions::default()),
        Err(VerifyError::ShadowMismatch { .. })
    ));

    // A note dropped while a candidate is staged is named.
    let mut forged_records = all.clone();
    let dropped = forged_records
        .iter_mut()
        .find_map(|record| match record {
            GateRecord::Decision(d) if d.shadow.is_some() => Some(d),
            _ => None,
        })
        .expect("a note");
    dropped.shadow = None;
    let forged = TempDir::new("shadow-dropped");
    forge(&forged, &forged_records);
    assert!(matches!(
        verify_dir(&forged.0, &VerifyOptions::default()),
        Err(VerifyError::ShadowNoteMissing { .. })
    ));

    // A second candidate staged in the log while one is: refused by the verifier.
    let mut forged_records = all;
    let at = forged_records
        .iter()
        .position(|r| matches!(r, GateRecord::Staged(_)))
        .expect("staged");
    forged_records.insert(
        at + 1,
        GateRecord::Staged(calybris_gate::record::StagedPolicy {
            role: StageRole::Shadow,
            policy: calybris_wal::PolicyRecord {
                policy_digest: *policy(true).digest(),
                policy: policy(true),
            },
        }),
    );
    let forged = TempDir::new("shadow-second");
    forge(&forged, &forged_records);
    assert!(matches!(
        verify_dir(&forged.0, &VerifyOptions::default()),
        Err(VerifyError::ShadowAlreadyStaged { .. })
    ));
    Ok(())
}

#[test]
fn a_retained_suffix_re_derives_holdout_and_shadow_from_its_restatements() -> Result<(), GateError>
{
    let dir = TempDir::new("shadow-retained");
    let gate = Gate::open(
        GateConfig::new(&dir.0, policy(false))
            .tenant("a", 1 << 40)
            .holdout(HoldoutConfig::new(holdout_key(), baseline()))
            .retention(Retention::SinceLastSnapshot)
            .segment_limit_bytes(4_096)
            .snapshot_every_records(64),
    )?;
    let _ticket = gate.stage_shadow(candidate())?;
    for n in 0..600 {
        let admission = gate.decide("a", request(n, 1))?;
        if admission.is_admitted() {
            gate.settle(admission, 1)?;
        }
    }
    let start = gate.start_anchor().expect("segments were retired");
    gate.close()?;
    let report = verify_dir(
        &dir.0,
        &VerifyOptions {
            start_anchor: Some(start),
            holdout_key: Some(holdout_key()),
            ..VerifyOptions::default()
        },
    )
    .expect("the suffix verifies");
    assert!(report.counts.shadow_notes > 0);
    assert!(report.counts.held_out > 0);
    assert_eq!(report.counts.holdout_unchecked, 0);
    Ok(())
}

/// A random request over models 1..=3 with random limits.
fn random_request(rng: &mut Rng, sequence: u64) -> KernelInput {
    KernelInput {
        request_sequence: sequence,
        requested_model_id: 1 + rng.below(3) as u32,
        input_tokens: rng.below(20_000) as u32,
        output_tokens: rng.below(5_000) as u32,
        business_value_microunits: rng.below(200_000) as i64,
        risk_bps: rng.below(10_000) as u16,
        confidence_bps: rng.below(10_000) as u16,
        minimum_quality_bps: rng.below(9_800) as u16,
        ..KernelInput::default()
    }
}

/// A random candidate: three models of random quality and price.
fn random_policy(rng: &mut Rng) -> SealedPolicy {
    let models: Vec<_> = (1..=3)
        .map(|id| model(id, 7_000 + rng.below(3_000) as u16, rng.below(3_000_000)))
        .collect();
    SealedPolicy::new(
        PolicySnapshot::builder()
            .models(models)
            .build()
            .expect("valid random policy"),
    )
}

#[test]
fn a_staged_shadow_never_changes_a_response() -> Result<(), GateError> {
    let seed = seed(0x5ad0_77ee);
    let mut rng = Rng::new(seed);
    for round in 0..8 {
        let plain = TempDir::new("shadow-prop-plain");
        let shadowed = TempDir::new("shadow-prop-staged");
        let budget = rng.between(10_000, 2_000_000);
        let a = Gate::open(GateConfig::new(&plain.0, policy(true)).tenant("t", budget))?;
        let b = Gate::open(GateConfig::new(&shadowed.0, policy(true)).tenant("t", budget))?;
        let _ticket = b.stage_shadow(random_policy(&mut rng))?;
        for n in 0..200 {
            let input = random_request(&mut rng, n);
            let (x, y) = (a.decide("t", input), b.decide("t", input));
            match (x, y) {
                (Ok(x), Ok(y)) => {
                    assert_eq!(
                        (x.decision(), x.budget(), x.policy_digest()),
                        (y.decision(), y.budget(), y.policy_digest()),
                        "seed {seed:#x} round {round} request {n}"
                    );
                    if x.is_admitted() {
                        let cost = rng.below(2 * x.decision().estimated_cost_microunits + 2);
                        let (sx, sy) = (a.settle(x, cost), b.settle(y, cost));
                        assert_eq!(
                            sx.is_ok(),
                            sy.is_ok(),
                            "seed {seed:#x} round {round} request {n}"
                        );
                    }
                }
                (Err(x), Err(y)) => {
                    assert_eq!(
                        x.to_string(),
                        y.to_string(),
                        "seed {seed:#x} round {round} request {n}"
                    );
                }
                (x, y) => panic!("seed {seed:#x} round {round} request {n}: {x:?} vs {y:?}"),
            }
        }
        a.close()?;
        b.close()?;
        let report = verify_dir(&shadowed.0, &VerifyOptions::default()).expect("verifies");
        assert_eq!(
            report.counts.shadow_notes, report.counts.decisions,
            "seed {seed:#x} round {round}"
        );
    }
    Ok(())
}
