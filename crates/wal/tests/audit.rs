//! Audited decision records: append_verified refuses what does not replay, and
//! replay_audited fails closed on the first divergence with a typed reason.

mod common;

use calybris_digest::SealedPolicy;
use calybris_kernel::{DecisionField, KernelInput, KernelModel, PolicySnapshot};
use calybris_wal::storage::MemDisk;
use calybris_wal::{
    AuditError, AuditRecord, AuditWriter, DecisionMeta, DecisionRecord, PolicyRecord, Recovery,
    WalReader, WalWriter, replay_audited,
};

fn model(model_id: u32, quality_bps: u16, input_cost: u64) -> KernelModel {
    KernelModel {
        model_id,
        provider_id: (model_id % 3) as u16,
        quality_bps,
        risk_ceiling_bps: 7_000,
        enabled: 1,
        p95_latency_ms: 300 + model_id * 10,
        capabilities: 0b11,
        region_mask: 0b1,
        input_cost_microunits_per_million_tokens: input_cost,
        output_cost_microunits_per_million_tokens: input_cost * 4,
    }
}

fn policy(epoch: u64) -> SealedPolicy {
    SealedPolicy::new(
        PolicySnapshot::builder()
            .policy_epoch(epoch)
            .catalog_epoch(7)
            .hard_risk_limit_bps(8_000)
            .models([
                model(1, 9_200, 2_500_000),
                model(2, 7_800, 150_000),
                model(3, 8_600, 900_000),
            ])
            .build()
            .expect("valid policy"),
    )
}

fn input(sequence: u64) -> KernelInput {
    KernelInput {
        request_sequence: sequence,
        requested_model_id: 1 + (sequence % 3) as u32,
        input_tokens: 1_000 + (sequence as u32) * 7,
        output_tokens: 500,
        business_value_microunits: 60_000,
        budget_limit_microunits: 20_000 + sequence * 100,
        risk_bps: 1_000,
        confidence_bps: 9_000,
        minimum_quality_bps: 7_000,
        ..KernelInput::default()
    }
}

fn meta(sequence: u64) -> DecisionMeta {
    DecisionMeta {
        recorded_at_unix_ms: 1_700_000_000_000 + sequence,
        tenant_id: 42,
        request_id: [sequence as u8; 16],
    }
}

fn replay(disk: &MemDisk) -> Result<calybris_wal::ReplaySummary, AuditError> {
    replay_audited(WalReader::<AuditRecord, _>::from_storage(
        disk.reader(),
        None,
    )?)
}

/// Writes raw audit records with the plain writer (to forge bad logs).
fn raw_log(records: &[AuditRecord]) -> MemDisk {
    let disk = MemDisk::new();
    let mut writer =
        WalWriter::<AuditRecord, _>::create_in(disk.lock().expect("lock"), None).expect("create");
    for record in records {
        writer.append(record).expect("append");
    }
    writer.sync().expect("sync");
    disk
}

fn policy_record(policy: &SealedPolicy) -> AuditRecord {
    AuditRecord::Policy(PolicyRecord {
        policy_digest: *policy.digest(),
        policy: policy.clone(),
    })
}

fn good_decision(policy: &SealedPolicy, sequence: u64) -> DecisionRecord {
    let input = input(sequence);
    DecisionRecord::verified(policy, input, &policy.prescribe(input), meta(sequence))
        .expect("replays")
}

#[test]
fn a_verified_log_replays_with_policies_written_once() {
    let disk = MemDisk::new();
    let (p1, p2) = (policy(1), policy(2));
    let mut writer = AuditWriter::create_in(disk.lock().expect("lock"), None).expect("create");
    for sequence in 0..20 {
        let policy = if sequence % 2 == 0 { &p1 } else { &p2 };
        let input = input(sequence);
        writer
            .append_verified(policy, input, &policy.prescribe(input), meta(sequence))
            .expect("append");
    }
    writer.sync().expect("sync");
    drop(writer);
    let summary = replay(&disk).expect("replays");
    assert_eq!((summary.policies, summary.decisions), (2, 20));
    assert_eq!(summary.anchor.next_sequence, 22);

    // Reopening remembers which policies the log holds.
    let mut writer = AuditWriter::open_in(disk.lock().expect("lock"), None, None).expect("open");
    assert_eq!(writer.append_policy(&p1).expect("append"), None);
    assert_eq!(writer.append_policy(&policy(3)).expect("append"), Some(22));
}

#[test]
fn append_verified_refuses_a_decision_that_does_not_replay() {
    let disk = MemDisk::new();
    let p = policy(1);
    let mut writer = AuditWriter::create_in(disk.lock().expect("lock"), None).expect("create");
    let input = input(5);
    let mut decision = p.prescribe(input);
    decision.estimated_cost_microunits += 1;
    let before = writer.wal().anchor();
    match writer.append_verified(&p, input, &decision, meta(5)) {
        Err(AuditError::DoesNotReplay {
            sequence: None,
            offset_bytes: None,
            field: DecisionField::EstimatedCostMicrounits,
        }) => {}
        other => panic!("expected a replay refusal, got {other:?}"),
    }
    assert_eq!(writer.wal().anchor(), before, "nothing was written");
}

#[test]
fn a_decision_without_its_policy_is_refused() {
    let p = policy(1);
    let disk = raw_log(&[AuditRecord::Decision(good_decision(&p, 0))]);
    assert!(matches!(
        replay(&disk),
        Err(AuditError::PolicyMissing { sequence: 0, offset_bytes: 96, policy_digest }) if policy_digest == *p.digest()
    ));
}

#[test]
fn a_wrong_input_digest_is_refused() {
    let p = policy(1);
    let mut record = good_decision(&p, 1);
    record.input_digest[0] ^= 1;
    let disk = raw_log(&[policy_record(&p), AuditRecord::Decision(record)]);
    assert!(matches!(
        replay(&disk),
        Err(AuditError::InputDigestMismatch { sequence: 1, offset_bytes }) if offset_bytes > 96
    ));
}

#[test]
fn a_decision_that_does_not_replay_is_refused_naming_the_field() {
    let p = policy(1);
    let mut record = good_decision(&p, 2);
    record.decision.selected_model_id ^= 0x10;
    record.decision_digest = calybris_digest::decision_digest(&record.decision);
    let disk = raw_log(&[policy_record(&p), AuditRecord::Decision(record)]);
    assert!(matches!(
        replay(&disk),
        Err(AuditError::DoesNotReplay {
            sequence: Some(1),
            offset_bytes: Some(_),
            field: DecisionField::SelectedModelId
        })
    ));
}

#[test]
fn a_wrong_decision_digest_is_refused() {
    let p = policy(1);
    let mut record = good_decision(&p, 3);
    record.decision_digest[31] ^= 1;
    let disk = raw_log(&[policy_record(&p), AuditRecord::Decision(record)]);
    assert!(matches!(
        replay(&disk),
        Err(AuditError::DecisionDigestMismatch { sequence: 1, offset_bytes }) if offset_bytes > 96
    ));
}

#[test]
fn a_policy_record_with_a_wrong_digest_is_refused() {
    let p = policy(1);
    let mut digest = *p.digest();
    digest[5] ^= 1;
    let disk = raw_log(&[AuditRecord::Policy(PolicyRecord {
        policy_digest: digest,
        policy: p.clone(),
    })]);
    assert!(matches!(
        replay(&disk),
        Err(AuditError::PolicyDigestMismatch {
            sequence: 0,
            offset_bytes: 96
        })
    ));
}

#[test]
fn a_broken_chain_or_torn_tail_fails_the_replay() {
    let p = policy(1);
    let disk = raw_log(&[
        policy_record(&p),
        AuditRecord::Decision(good_decision(&p, 1)),
        AuditRecord::Decision(good_decision(&p, 2)),
    ]);
    assert!(replay(&disk).is_ok());
    let bytes = disk.bytes();
    let mut flipped = bytes.clone();
    flipped[200] ^= 0x04;
    assert!(matches!(
        replay(&MemDisk::with_bytes(flipped)),
        Err(AuditError::ChainBroken(Recovery::Corrupt { .. }))
    ));
    let torn = bytes[..bytes.len() - 3].to_vec();
    assert!(matches!(
        replay(&MemDisk::with_bytes(torn)),
        Err(AuditError::ChainBroken(Recovery::TornTail { .. }))
    ));
}

#[test]
fn a_decision_record_takes_at_most_320_bytes_on_disk() {
    let disk = MemDisk::new();
    let p = policy(1);
    let mut writer = AuditWriter::create_in(disk.lock().expect("lock"), None).expect("create");
    writer.append_policy(&p).expect("policy");
    writer.flush().expect("flush");
    let after_policy = disk.bytes().len();
    const DECISIONS: u64 = 100;
    for sequence in 0..DECISIONS {
        let input = input(sequence);
        writer
            .append_verified(&p, input, &p.prescribe(input), meta(sequence))
            .expect("append");
    }
    writer.flush().expect("flush");
    let per_record = (disk.bytes().len() - after_policy) as u64 / DECISIONS;
    assert!(per_record <= 320, "{per_record} bytes per decision record");
    println!("bytes per decision record: {per_record}");
}

#[test]
fn durable_audited_appends_from_many_threads_replay() {
    use calybris_wal::storage::MemDirectory;
    use calybris_wal::{DurableAuditWal, DurableConfig, SegmentedReader, replay_audited_segments};

    let dir = MemDirectory::new();
    let config = DurableConfig {
        window: std::time::Duration::from_micros(50),
        segment_limit_bytes: 4 * 1024,
        ..DurableConfig::default()
    };
    let (p1, p2) = (policy(1), policy(2));
    let log = DurableAuditWal::open_in(dir.clone(), config.clone()).expect("open");
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let (log, p1, p2) = (&log, &p1, &p2);
            scope.spawn(move || {
                let tickets: Vec<_> = (0..50u64)
                    .map(|k| {
                        let sequence = thread * 100 + k;
                        let policy = if k % 2 == 0 { p1 } else { p2 };
                        let input = input(sequence);
                        log.append_verified(policy, input, &policy.prescribe(input), meta(sequence))
                            .expect("append")
                    })
                    .collect();
                for ticket in tickets {
                    ticket.wait().expect("durable");
                }
            });
        }
    });
    log.close().expect("close");
    let summary = replay_audited_segments(
        SegmentedReader::<AuditRecord, _>::from_dir(dir.clone(), None, None).expect("list"),
    )
    .expect("replays");
    assert_eq!((summary.policies, summary.decisions), (2, 200));

    let reopened = DurableAuditWal::open_in(dir, config).expect("reopen");
    assert!(reopened.append_policy(&p2).expect("append").is_none());
    let mut bad = p1.prescribe(input(1));
    bad.eligible_models += 1;
    assert!(matches!(
        reopened.append_verified(&p1, input(1), &bad, meta(1)),
        Err(AuditError::DoesNotReplay {
            field: DecisionField::EligibleModels,
            ..
        })
    ));
}
