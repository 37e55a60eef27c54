//! The gate end to end on real files: decide, settle every way, reopen, snapshots,
//! and the verifier's verdict on each.

mod common;

use calybris_gate::record::{LogHeader, TenantCreated};
use calybris_gate::{
    BooksError, BudgetOutcome, CallerMeta, GATE_FORMAT_VERSION, Gate, GateConfig, GateError,
    GateRecord, Outcome, ReopenHolds, SettlementKind, VerifyError, VerifyOptions, verify_dir,
};
use calybris_wal::storage::MemDirectory;
use calybris_wal::{DurableConfig, DurableWal, WalError, WalKey};
use common::{TempDir, policy, request};

fn verify(dir: &TempDir) -> calybris_gate::GateReport {
    verify_dir(&dir.0, &VerifyOptions::default()).expect("the directory verifies")
}

#[test]
fn every_settlement_kind_is_logged_and_the_books_balance() -> Result<(), GateError> {
    let dir = TempDir::new("settle");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("acme", 1_000_000))?;
    let mut held = Vec::new();
    for k in 0..5 {
        let admission = gate.decide("acme", request(k, 1))?;
        assert!(admission.is_admitted());
        let BudgetOutcome::Reserved { amount_microunits } = admission.budget() else {
            panic!(
                "a priced selection is reserved, got {:?}",
                admission.budget()
            );
        };
        assert_eq!(
            amount_microunits,
            admission.decision().estimated_cost_microunits
        );
        held.push((admission, amount_microunits));
    }
    let mut expected_committed = 0;
    let mut it = held.into_iter();
    let (exact, amount) = it.next().expect("five");
    assert_eq!(gate.settle(exact, amount)?.committed_microunits, amount);
    expected_committed += amount;
    let (lower, amount) = it.next().expect("five");
    let settled = gate.settle(lower, amount / 2)?;
    assert_eq!(settled.refunded_microunits, amount - amount / 2);
    expected_committed += amount / 2;
    let (higher, amount) = it.next().expect("five");
    let settled = gate.settle(higher, amount + 7)?;
    assert_eq!(settled.overrun_microunits, 7);
    expected_committed += amount + 7;
    let (released, _) = it.next().expect("five");
    gate.release(released)?;
    let (dropped, _) = it.next().expect("five");
    drop(dropped); // abandoned, and logged
    let books = gate.tenant_books("acme")?;
    assert_eq!(books.committed_microunits, expected_committed as i64);
    assert_eq!(books.reserved_microunits, 0);
    assert_eq!(
        books.remaining_microunits,
        1_000_000 - expected_committed as i64
    );
    gate.close()?;

    let report = verify(&dir);
    assert_eq!(report.counts.decisions, 5);
    assert_eq!(report.counts.settlements, 5);
    assert_eq!(report.counts.overruns, 1);
    assert_eq!(report.open_holds, 0);
    assert_eq!(report.tenants.len(), 1);
    assert_eq!(
        report.tenants[0].committed_microunits,
        expected_committed as i64
    );
    assert!(report.conservation.balanced);
    Ok(())
}

#[test]
fn a_budget_refusal_is_a_logged_decision_that_cannot_be_charged() -> Result<(), GateError> {
    let dir = TempDir::new("refusal");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("small", 10))?;
    let admission = gate.decide("small", request(1, 1))?;
    assert!(admission.decision().is_selection());
    assert!(!admission.is_admitted());
    assert_eq!(
        admission.budget(),
        BudgetOutcome::Insufficient {
            remaining_microunits: 10
        }
    );
    let sequence = admission.log_sequence();
    assert!(matches!(
        gate.settle(admission, 1),
        Err(GateError::NotAdmitted { log_sequence }) if log_sequence == sequence
    ));
    gate.close()?;
    let report = verify(&dir);
    assert_eq!(report.counts.refused_by_budget, 1);
    assert_eq!(report.counts.settlements, 0);
    assert_eq!(report.tenants[0].remaining_microunits, 10);
    Ok(())
}

#[test]
fn unknown_tenants_and_bad_requests_log_nothing() -> Result<(), GateError> {
    let dir = TempDir::new("unknown");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("acme", 100))?;
    let before = gate.appended_anchor();
    assert!(matches!(
        gate.decide("nobody", request(1, 1)),
        Err(GateError::UnknownTenant { .. })
    ));
    assert!(matches!(
        gate.decide("", request(1, 1)),
        Err(GateError::InvalidTenant { len_bytes: 0 })
    ));
    let long = "x".repeat(257);
    assert!(matches!(
        gate.decide(&long, request(1, 1)),
        Err(GateError::InvalidTenant { len_bytes: 257 })
    ));
    let mut bad = request(1, 1);
    bad.confidence_bps = 20_000;
    assert!(matches!(gate.decide("acme", bad), Err(GateError::Input(_))));
    assert_eq!(gate.appended_anchor(), before);
    gate.close()?;
    Ok(())
}

#[test]
fn a_free_selection_is_admitted_and_charged_through_the_overrun_path() -> Result<(), GateError> {
    let dir = TempDir::new("free");
    let only_free = calybris_digest::SealedPolicy::new(
        calybris_kernel::PolicySnapshot::builder()
            .model(common::model(3, 7_000, 0))
            .build()
            .expect("valid policy"),
    );
    let gate = Gate::open(GateConfig::new(&dir.0, only_free).tenant("acme", 1_000))?;
    let admission = gate.decide("acme", request(1, 3))?;
    assert!(admission.decision().is_selection());
    assert_eq!(admission.decision().estimated_cost_microunits, 0);
    assert_eq!(admission.budget(), BudgetOutcome::NotPriced);
    let settled = gate.settle(admission, 300)?;
    assert_eq!(settled.overrun_microunits, 300);
    assert_eq!(gate.tenant_books("acme")?.remaining_microunits, 700);
    gate.close()?;
    let report = verify(&dir);
    assert_eq!(report.counts.overruns, 1);
    assert_eq!(report.tenants[0].committed_microunits, 300);
    Ok(())
}

#[test]
fn an_overrun_the_tenant_cannot_cover_is_refused_and_the_hold_stays_open() -> Result<(), GateError>
{
    let dir = TempDir::new("overrun");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("acme", 13_000))?;
    let admission = gate.decide("acme", request(1, 1))?;
    let held = admission.budget().held_microunits();
    assert!(held > 0);
    let id = calybris_gate::ReservationId(admission.log_sequence());
    let too_much = 13_000 + 1;
    assert!(matches!(
        gate.settle(admission, too_much),
        Err(GateError::OverrunNotCovered { .. })
    ));
    assert_eq!(gate.tenant_books("acme")?.reserved_microunits, held as i64);
    gate.settle_by_id(id, held)?;
    assert!(matches!(
        gate.settle_by_id(id, 0),
        Err(GateError::UnknownReservation { .. })
    ));
    gate.close()?;
    let report = verify(&dir);
    assert_eq!(report.tenants[0].committed_microunits, held as i64);
    Ok(())
}

#[test]
fn reopening_releases_the_holds_left_open_by_a_logged_record() -> Result<(), GateError> {
    let dir = TempDir::new("reopen");
    let config = || GateConfig::new(&dir.0, policy(false)).tenant("acme", 100_000);
    let gate = Gate::open(config())?;
    let parked = gate.decide("acme", request(1, 1))?;
    let held = parked.budget().held_microunits() as i64;
    let _id = parked.into_reservation_id().expect("admitted");
    let spent = gate.decide("acme", request(2, 1))?;
    let cost = spent.budget().held_microunits();
    gate.settle(spent, cost)?;
    let _ticket = gate.top_up("acme", 5_000)?;
    assert_eq!(gate.tenant_books("acme")?.reserved_microunits, held);
    gate.close()?;

    let gate = Gate::open(config())?;
    assert_eq!(gate.recovery().open_holds, 1);
    assert_eq!(gate.recovery().released_holds, 1);
    let books = gate.tenant_books("acme")?;
    assert_eq!(books.reserved_microunits, 0);
    assert_eq!(books.initial_microunits, 105_000);
    assert_eq!(books.committed_microunits, cost as i64);
    assert_eq!(books.remaining_microunits, 105_000 - cost as i64);
    gate.close()?;
    let report = verify(&dir);
    assert_eq!(report.counts.released_at_reopen, 1);
    assert!(report.conservation.balanced);
    Ok(())
}

#[test]
fn reopening_can_spend_the_holds_left_open_in_full() -> Result<(), GateError> {
    let dir = TempDir::new("reopen-commit");
    let config = || {
        GateConfig::new(&dir.0, policy(false))
            .tenant("acme", 100_000)
            .reopen_holds(ReopenHolds::CommitHeld)
    };
    let gate = Gate::open(config())?;
    let parked = gate.decide("acme", request(1, 1))?;
    let held = parked.budget().held_microunits() as i64;
    assert!(held > 0, "the parked decision holds something");
    let _id = parked.into_reservation_id().expect("admitted");
    let spent = gate.decide("acme", request(2, 1))?;
    let cost = spent.budget().held_microunits();
    gate.settle(spent, cost)?;
    gate.close()?;

    let gate = Gate::open(config())?;
    assert_eq!(gate.recovery().open_holds, 1);
    assert_eq!(gate.recovery().committed_holds, 1);
    assert_eq!(gate.recovery().released_holds, 0);
    let books = gate.tenant_books("acme")?;
    assert_eq!(books.reserved_microunits, 0);
    assert_eq!(books.committed_microunits, cost as i64 + held);
    assert_eq!(books.remaining_microunits, 100_000 - cost as i64 - held);
    gate.close()?;
    // Reopening again settles nothing more: the spend is in the log.
    let gate = Gate::open(config())?;
    assert_eq!(gate.recovery().open_holds, 0);
    assert_eq!(
        gate.tenant_books("acme")?.committed_microunits,
        cost as i64 + held
    );
    gate.close()?;
    let report = verify(&dir);
    assert_eq!(report.counts.committed_at_reopen, 1);
    assert_eq!(report.counts.released_at_reopen, 0);
    assert_eq!(report.tenants[0].committed_microunits, cost as i64 + held);
    assert!(report.conservation.balanced);
    Ok(())
}

#[test]
fn kept_holds_can_be_settled_by_id_after_a_restart() -> Result<(), GateError> {
    let dir = TempDir::new("keep");
    let config = || {
        GateConfig::new(&dir.0, policy(false))
            .tenant("acme", 100_000)
            .reopen_holds(ReopenHolds::Keep)
    };
    let gate = Gate::open(config())?;
    let admission = gate.decide("acme", request(1, 1))?;
    let held = admission.budget().held_microunits();
    let id = admission.into_reservation_id().expect("admitted");
    gate.close()?;

    let gate = Gate::open(config())?;
    assert_eq!(gate.recovery().released_holds, 0);
    assert_eq!(gate.tenant_books("acme")?.reserved_microunits, held as i64);
    let settled = gate.settle_by_id(id, held - 1)?;
    assert_eq!(settled.refunded_microunits, 1);
    gate.close()?;
    let report = verify(&dir);
    assert_eq!(report.tenants[0].committed_microunits, held as i64 - 1);
    assert_eq!(report.open_holds, 0);
    Ok(())
}

#[test]
fn book_snapshots_are_checked_and_reopening_agrees_with_the_verifier() -> Result<(), GateError> {
    let dir = TempDir::new("snapshots");
    let config = || {
        GateConfig::new(&dir.0, policy(false))
            .tenant("a", 10_000_000)
            .tenant("b", 5_000_000)
            .snapshot_every_records(16)
    };
    let gate = Gate::open(config())?;
    let mut parked = Vec::new();
    for k in 0..200 {
        let tenant = if k % 3 == 0 { "b" } else { "a" };
        let admission = gate.decide(tenant, request(k, 1 + (k % 2) as u32))?;
        match k % 4 {
            0 => parked.push(admission),
            1 => {
                let cost = admission.budget().held_microunits();
                gate.settle(admission, cost / 3)?;
            }
            2 => {
                let _ticket = gate.record_outcome(
                    admission.decision_ref(),
                    Outcome {
                        reward_microunits: 5,
                        success: true,
                        latency_ms: 12,
                        detail: b"ok".to_vec(),
                    },
                )?;
                gate.abandon(admission)?;
            }
            _ => gate
                .release(admission)?
                .log_sequence
                .map(|_| ())
                .unwrap_or(()),
        }
    }
    assert!(gate.snapshots_taken() > 5, "{}", gate.snapshots_taken());
    let books_before: Vec<_> = ["a", "b"]
        .iter()
        .map(|t| gate.tenant_books(t))
        .collect::<Result<_, _>>()?;
    for admission in parked {
        let _ = admission.into_reservation_id();
    }
    gate.close()?;
    let report = verify(&dir);
    assert!(report.counts.snapshots > 5);
    assert_eq!(report.counts.outcomes, 50);
    assert_eq!(report.open_holds, 50);

    let gate = Gate::open(config().reopen_holds(ReopenHolds::Keep))?;
    for (before, tenant) in books_before.iter().zip(["a", "b"]) {
        assert_eq!(&gate.tenant_books(tenant)?, before);
    }
    assert!(gate.recovery().records_replayed > 0);
    gate.close()?;
    Ok(())
}

#[test]
fn a_second_gate_on_the_same_directory_is_refused() -> Result<(), GateError> {
    let dir = TempDir::new("lock");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)))?;
    match Gate::open(GateConfig::new(&dir.0, policy(false))) {
        Err(GateError::Log(WalError::Locked { .. })) => {}
        other => panic!("expected a lock refusal, got {other:?}"),
    }
    gate.close()?;
    Ok(())
}

#[test]
fn caller_meta_is_logged_and_given_back() -> Result<(), GateError> {
    let dir = TempDir::new("meta");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("acme", 100_000))?;
    let caller = CallerMeta {
        request_id: *b"req-0000-0000-42",
        recorded_at_unix_ms: 1_764_620_000_000,
    };
    let admission = gate.decide_with("acme", request(1, 1), caller)?;
    assert_eq!(admission.request_id(), caller.request_id);
    let sequence = admission.log_sequence();
    admission.wait_durable()?;
    gate.abandon(admission)?;
    gate.close()?;
    let reader = calybris_wal::SegmentedReader::<GateRecord>::open(&dir.0.join("log"), None, None)
        .map_err(GateError::Log)?;
    let mut found = false;
    for entry in reader {
        let entry = entry.map_err(GateError::Log)?;
        if let GateRecord::Decision(record) = entry.record {
            assert_eq!(entry.sequence, sequence);
            assert_eq!(record.tenant, "acme");
            assert_eq!(record.audit.meta.request_id, caller.request_id);
            assert_eq!(
                record.audit.meta.recorded_at_unix_ms,
                caller.recorded_at_unix_ms
            );
            assert_eq!(
                record.audit.meta.tenant_id,
                calybris_digest::tenant_number("acme")
            );
            found = true;
        }
    }
    assert!(found);
    Ok(())
}

#[test]
fn a_keyed_gate_verifies_only_with_its_key() -> Result<(), GateError> {
    let dir = TempDir::new("keyed");
    let key = WalKey::new(&[9u8; 32]).map_err(GateError::Log)?;
    let gate = Gate::open(
        GateConfig::new(&dir.0, policy(false))
            .key(key.clone())
            .tenant("a", 50_000),
    )?;
    let admission = gate.decide("a", request(1, 1))?;
    gate.settle(admission, 1)?;
    gate.close()?;
    assert!(matches!(
        verify_dir(&dir.0, &VerifyOptions::default()),
        Err(VerifyError::Chain(_))
    ));
    let report = verify_dir(
        &dir.0,
        &VerifyOptions {
            key: Some(key),
            ..VerifyOptions::default()
        },
    )
    .expect("verifies with its key");
    assert_eq!(report.counts.settlements, 1);
    Ok(())
}

/// Writes a gate log by hand, record by record, for the verifier's refusals.
fn forged(dir: &TempDir, records: &[GateRecord]) {
    std::fs::create_dir_all(&dir.0).expect("dir");
    let wal =
        DurableWal::<GateRecord>::open(&dir.0.join("log"), DurableConfig::default()).expect("open");
    for record in records {
        let _ = wal.append(record).expect("append");
    }
    wal.close().expect("close");
}

fn header() -> GateRecord {
    GateRecord::Header(LogHeader {
        format_version: GATE_FORMAT_VERSION,
    })
}

fn created(tenant: &str, initial: u64) -> GateRecord {
    GateRecord::TenantCreated(TenantCreated {
        tenant: tenant.into(),
        initial_microunits: initial,
    })
}

#[test]
fn the_verifier_names_a_settlement_of_an_unknown_decision() {
    let dir = TempDir::new("forged-settle");
    forged(
        &dir,
        &[
            header(),
            created("a", 10),
            GateRecord::Settlement(calybris_gate::record::SettlementRecord {
                decision_sequence: 1,
                tenant: "a".into(),
                kind: SettlementKind::Commit {
                    actual_microunits: 1,
                },
            }),
        ],
    );
    match verify_dir(&dir.0, &VerifyOptions::default()) {
        Err(VerifyError::Books {
            sequence: 2,
            offset_bytes: _,
            error:
                BooksError::SettlementUnknownDecision {
                    decision_sequence: 1,
                },
        }) => {}
        other => panic!("expected SettlementUnknownDecision at 2, got {other:?}"),
    }
}

#[test]
fn the_verifier_refuses_a_log_without_a_header_and_a_repeated_tenant() {
    let dir = TempDir::new("forged-header");
    forged(&dir, &[created("a", 10)]);
    assert!(matches!(
        verify_dir(&dir.0, &VerifyOptions::default()),
        Err(VerifyError::Books {
            sequence: 0,
            error: BooksError::BadHeader { .. },
            ..
        })
    ));
    let dir = TempDir::new("forged-dup");
    forged(&dir, &[header(), created("a", 10), created("a", 10)]);
    assert!(matches!(
        verify_dir(&dir.0, &VerifyOptions::default()),
        Err(VerifyError::Books {
            sequence: 2,
            error: BooksError::DuplicateTenant { .. },
            ..
        })
    ));
}

#[test]
fn the_verifier_catches_an_overspend_and_a_forged_snapshot() -> Result<(), GateError> {
    // Build a real log, then re-forge its decision with a larger reservation than
    // the tenant holds: the kernel part still replays, the books refuse it.
    let dir = TempDir::new("source");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("a", 1_000_000))?;
    let admission = gate.decide("a", request(1, 1))?;
    let _ = admission.into_reservation_id();
    gate.close()?;
    let mut records: Vec<GateRecord> =
        calybris_wal::SegmentedReader::<GateRecord>::open(&dir.0.join("log"), None, None)
            .map_err(GateError::Log)?
            .map(|entry| entry.map(|e| e.record))
            .collect::<Result<_, _>>()
            .map_err(GateError::Log)?;
    for record in &mut records {
        if let GateRecord::TenantCreated(created) = record {
            created.initial_microunits = 5;
        }
    }
    let forged_dir = TempDir::new("forged-overspend");
    forged(&forged_dir, &records);
    match verify_dir(&forged_dir.0, &VerifyOptions::default()) {
        Err(VerifyError::Books {
            error: BooksError::Overspend { .. },
            ..
        }) => {}
        other => panic!("expected an overspend, got {other:?}"),
    }

    let dir = TempDir::new("snap-source");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("a", 1_000_000))?;
    gate.snapshot_books()?;
    gate.close()?;
    let mut records: Vec<GateRecord> =
        calybris_wal::SegmentedReader::<GateRecord>::open(&dir.0.join("log"), None, None)
            .map_err(GateError::Log)?
            .map(|entry| entry.map(|e| e.record))
            .collect::<Result<_, _>>()
            .map_err(GateError::Log)?;
    for record in &mut records {
        if let GateRecord::BookSnapshot(snapshot) = record {
            snapshot.tenants[0].remaining_microunits -= 1;
            snapshot.tenants[0].committed_microunits += 1;
        }
    }
    let forged_dir = TempDir::new("forged-snapshot");
    forged(&forged_dir, &records);
    match verify_dir(&forged_dir.0, &VerifyOptions::default()) {
        Err(VerifyError::Books {
            error: BooksError::SnapshotMismatch { .. },
            ..
        }) => {}
        other => panic!("expected a snapshot mismatch, got {other:?}"),
    }
    Ok(())
}

#[test]
fn an_outcome_bound_to_the_wrong_digest_is_named() -> Result<(), GateError> {
    let dir = TempDir::new("outcome");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("a", 1_000_000))?;
    let admission = gate.decide("a", request(1, 1))?;
    let mut wrong = admission.decision_ref();
    wrong.decision_digest[0] ^= 1;
    let _ticket = gate.record_outcome(wrong, Outcome::default())?;
    assert!(matches!(
        gate.record_outcome(
            admission.decision_ref(),
            Outcome {
                detail: vec![0; calybris_gate::MAX_OUTCOME_DETAIL_BYTES + 1],
                ..Outcome::default()
            }
        ),
        Err(GateError::OutcomeTooLarge { .. })
    ));
    gate.abandon(admission)?;
    gate.close()?;
    assert!(matches!(
        verify_dir(&dir.0, &VerifyOptions::default()),
        Err(VerifyError::OutcomeDigestMismatch { .. })
    ));
    Ok(())
}

#[test]
fn a_failing_fsync_poisons_the_gate() -> Result<(), GateError> {
    let dir = MemDirectory::new();
    let name = TempDir::new("poison");
    let gate = Gate::open_in(
        GateConfig::new(&name.0, policy(false)).tenant("a", 1_000_000),
        dir.clone(),
    )?;
    let first = gate.decide("a", request(1, 1))?;
    first.wait_durable()?;
    let (_, disk) = dir.segments().pop().expect("one segment");
    disk.fail_next_syncs(1);
    let second = gate.decide("a", request(2, 1))?;
    assert!(second.wait_durable().is_err());
    // Everything after the failure is refused, and nothing is acknowledged.
    let mut refused = false;
    for k in 0..50 {
        match gate.decide("a", request(10 + k, 1)) {
            Err(GateError::Poisoned | GateError::Log(_)) => {
                refused = true;
                break;
            }
            Ok(admission) => assert!(admission.wait_durable().is_err()),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(refused);
    assert!(gate.is_poisoned());
    assert!(matches!(
        gate.prove_conservation(),
        Err(GateError::Poisoned)
    ));
    assert!(matches!(gate.top_up("a", 1), Err(GateError::Poisoned)));
    drop(first);
    drop(second);
    Ok(())
}

#[test]
fn installing_a_policy_logs_it_before_its_decisions() -> Result<(), GateError> {
    let dir = TempDir::new("install");
    let gate = Gate::open(GateConfig::new(&dir.0, policy(false)).tenant("a", 1_000_000))?;
    let _ticket = gate.install_policy(policy(true))?;
    let admission = gate.decide("a", request(1, 1))?;
    assert_eq!(admission.policy_digest(), policy(true).digest());
    gate.abandon(admission)?;
    gate.close()?;
    let report = verify(&dir);
    assert_eq!(report.counts.policies, 2);
    // Reopening with the same policy writes no new policy record.
    let gate = Gate::open(GateConfig::new(&dir.0, policy(true)))?;
    gate.close()?;
    assert_eq!(verify(&dir).counts.policies, 2);
    Ok(())
}

#[test]
fn a_log_cut_right_after_a_snapshot_gets_its_policy_record_on_reopen() -> Result<(), GateError> {
    let dir = TempDir::new("cut-after-snapshot");
    let sealed = policy(false);
    let mut books = calybris_gate::Books::new();
    let mut records = vec![
        header(),
        GateRecord::Policy(calybris_wal::PolicyRecord {
            policy_digest: *sealed.digest(),
            policy: sealed.clone(),
        }),
        created("a", 77),
    ];
    for (sequence, record) in records.iter().enumerate() {
        books.apply(sequence as u64, record).expect("folds");
    }
    records.push(GateRecord::BookSnapshot(books.snapshot(*sealed.digest())));
    forged(&dir, &records);
    // The snapshot's policy record is missing; nothing follows it, so the log still
    // verifies as it is...
    assert!(verify_dir(&dir.0, &VerifyOptions::default()).is_ok());
    // ...and a reopen completes it before it appends anything else (here a tenant),
    // which would otherwise make the log invalid.
    let gate = Gate::open(GateConfig::new(&dir.0, sealed.clone()).tenant("b", 5))?;
    gate.close()?;
    let report = verify(&dir);
    assert_eq!(report.counts.snapshots, 1);
    assert_eq!(report.tenants.len(), 2);
    Ok(())
}

#[test]
fn retention_keeps_the_directory_bounded_and_the_suffix_verifies_from_its_anchor()
-> Result<(), GateError> {
    let dir = TempDir::new("retention");
    let config = || {
        GateConfig::new(&dir.0, policy(false))
            .tenant("a", u64::MAX / 4)
            .snapshot_every_records(500)
            .segment_limit_bytes(16 * 1024)
            .retention(calybris_gate::Retention::SinceLastSnapshot)
    };
    let gate = Gate::open(config())?;
    let mut parked = None;
    let mut largest_dir = 0_usize;
    for k in 0..6_000 {
        let admission = gate.decide("a", request(k, 1))?;
        if k == 3 {
            // One hold stays open across every snapshot and retirement.
            parked = admission.into_reservation_id();
            continue;
        }
        let cost = admission.budget().held_microunits();
        let settled = gate.settle(admission, cost / 2)?;
        if k % 1_000 == 999 {
            if let Some(ticket) = settled.ticket {
                ticket.wait()?;
            }
            let segments = std::fs::read_dir(dir.0.join("log"))
                .map_err(|source| GateError::Directory {
                    path: dir.0.clone(),
                    source,
                })?
                .count();
            largest_dir = largest_dir.max(segments);
        }
    }
    let start = gate.start_anchor().expect("old segments were retired");
    assert!(start.next_sequence > 0);
    assert!(
        largest_dir < 12,
        "the log directory grew to {largest_dir} files"
    );
    let id = parked.expect("admitted");
    let books_before = gate.tenant_books("a")?;
    gate.close()?;

    // The suffix does not verify from genesis, and says why...
    match verify_dir(&dir.0, &VerifyOptions::default()) {
        Err(VerifyError::Chain(recovery)) => assert!(
            format!("{recovery:?}").contains("GenesisMissing"),
            "{recovery:?}"
        ),
        other => panic!("expected GenesisMissing, got {other:?}"),
    }
    // ...and verifies from the anchor the gate wrote (as text) when it retired.
    let text = std::fs::read_to_string(dir.0.join(calybris_gate::START_ANCHOR_FILE)).map_err(
        |source| GateError::Directory {
            path: dir.0.clone(),
            source,
        },
    )?;
    assert!(
        text.starts_with(&format!("{}:", start.next_sequence)),
        "{text}"
    );
    let report = verify_dir(
        &dir.0,
        &VerifyOptions {
            start_anchor: Some(start),
            ..VerifyOptions::default()
        },
    )
    .expect("the retained suffix verifies from its start anchor");
    assert!(report.counts.snapshots >= 1);
    assert_eq!(
        report.tenants[0].committed_microunits,
        books_before.committed_microunits
    );
    assert_eq!(report.open_holds, 1);

    // Reopening the retained directory rebuilds the same books, and the parked hold
    // can still be settled by id.
    let gate = Gate::open(config().reopen_holds(ReopenHolds::Keep))?;
    assert_eq!(gate.tenant_books("a")?, books_before);
    gate.settle_by_id(id, 1)?;
    gate.close()?;
    Ok(())
}

/// The last segment file of a gate directory and its length.
fn last_segment(dir: &TempDir) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(dir.0.join("log"))
        .expect("log dir")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cwal"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

#[test]
fn garbage_after_the_acknowledged_end_is_a_torn_tail_and_damage_before_it_is_refused()
-> Result<(), GateError> {
    let seed = common::seed(0x7042_7a11);
    let mut rng = common::Rng::new(seed);
    for round in 0..8 {
        let dir = TempDir::new("torn");
        let config = || GateConfig::new(&dir.0, policy(false)).tenant("a", 10_000_000);
        let gate = Gate::open(config())?;
        for k in 0..20 {
            let admission = gate.decide("a", request(k, 1))?;
            let cost = admission.budget().held_microunits();
            gate.settle(admission, cost)?;
        }
        gate.close()?;
        let books = verify(&dir).tenants[0].clone();
        let segment = last_segment(&dir);
        let mut bytes = std::fs::read(&segment).expect("segment");
        let acknowledged_len = bytes.len();
        // A power loss's shape: part of a never-acknowledged write, then garbage.
        let garbage = 1 + rng.below(9_000) as usize;
        bytes.extend((0..garbage).map(|_| rng.next_u64() as u8));
        std::fs::write(&segment, &bytes).expect("write");
        let gate = Gate::open(config())
            .unwrap_or_else(|e| panic!("seed {seed:#x} round {round}: garbage refused: {e}"));
        assert_eq!(
            gate.tenant_books("a")?.committed_microunits,
            books.committed_microunits
        );
        gate.close()?;
        assert_eq!(
            verify(&dir).tenants[0].committed_microunits,
            books.committed_microunits
        );

        // One flipped bit inside the acknowledged records is corruption, never cut.
        let mut bytes = std::fs::read(&segment).expect("segment");
        let at = 96 + rng.below((acknowledged_len - 96) as u64) as usize;
        bytes[at] ^= 1 << rng.below(8);
        std::fs::write(&segment, &bytes).expect("write");
        match Gate::open(config()) {
            Err(GateError::Log(WalError::Refused(recovery))) => {
                assert!(!recovery.is_recoverable(), "seed {seed:#x}: {recovery}");
            }
            other => panic!(
                "seed {seed:#x} round {round}: a flipped acknowledged bit at {at} was not refused: {other:?}"
            ),
        }
        assert!(verify_dir(&dir.0, &VerifyOptions::default()).is_err());
    }
    Ok(())
}

/// `GateConfig::watermark_interval` reaches the log: with an interval of an hour
/// no watermark is written while the gate runs (the decisions are durable all
/// the same); with zero, each durable decision gets one.
#[test]
fn the_watermark_interval_reaches_the_log() -> Result<(), GateError> {
    let run = |interval: std::time::Duration, tag: &str| -> Result<u64, GateError> {
        let name = TempDir::new(tag);
        let gate = Gate::open_in(
            GateConfig::new(&name.0, policy(false))
                .tenant("a", 1_000_000)
                .watermark_interval(interval),
            MemDirectory::new(),
        )?;
        for k in 0..5 {
            let before = gate.log_stats().watermarks;
            let admission = gate.decide("a", request(k, 1))?;
            admission.wait_durable()?;
            gate.release(admission)?;
            if interval.is_zero() {
                for _ in 0..20_000 {
                    if gate.log_stats().watermarks > before {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
        }
        let stats = gate.log_stats();
        assert!(stats.data_syncs >= 5, "{stats:?}");
        Ok(stats.watermarks)
    };
    assert_eq!(run(std::time::Duration::from_secs(3_600), "wm-long")?, 0);
    assert!(run(std::time::Duration::ZERO, "wm-zero")? >= 5);
    Ok(())
}
