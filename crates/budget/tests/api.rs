//! Behaviour of each public operation, one promise per test.

use calybris_budget::{
    BudgetEngine, BudgetError, BudgetSnapshot, MAX_TENANT_ID_BYTES, ReservationId, RestoreError,
    TenantCreation, TenantLedger, TenantLimits,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn engine_with(tenant_id: &str, initial_microcents: i64) -> Result<BudgetEngine, BudgetError> {
    let engine = BudgetEngine::new();
    engine.ensure_tenant(tenant_id, initial_microcents)?;
    Ok(engine)
}

fn books(engine: &BudgetEngine, tenant_id: &str) -> Result<(i64, i64, i64, i64), BudgetError> {
    let row = engine.ledger(tenant_id)?;
    Ok((
        row.initial_microcents,
        row.remaining_microcents,
        row.reserved_microcents,
        row.committed_microcents,
    ))
}

#[test]
fn ensure_tenant_is_idempotent_and_never_tops_up() -> TestResult {
    let engine = BudgetEngine::new();
    assert_eq!(engine.ensure_tenant("a", 100)?, TenantCreation::Created);
    assert_eq!(
        engine.ensure_tenant("a", 999)?,
        TenantCreation::AlreadyExists
    );
    assert_eq!(books(&engine, "a")?, (100, 100, 0, 0));
    assert_eq!(engine.tenant_count(), 1);
    Ok(())
}

#[test]
fn ensure_tenant_refuses_negative_budget_and_bad_ids() {
    let engine = BudgetEngine::new();
    assert_eq!(
        engine.ensure_tenant("a", -1),
        Err(BudgetError::NegativeAmount {
            amount_microcents: -1
        })
    );
    assert!(matches!(
        engine.ensure_tenant("", 1),
        Err(BudgetError::InvalidTenantId { len_bytes: 0, .. })
    ));
    let long_id = "x".repeat(MAX_TENANT_ID_BYTES + 1);
    assert!(matches!(
        engine.ensure_tenant(&long_id, 1),
        Err(BudgetError::InvalidTenantId { .. })
    ));
    assert_eq!(engine.tenant_count(), 0);
}

#[test]
fn zero_and_negative_amounts_are_refused() -> TestResult {
    let engine = engine_with("a", 100)?;
    for amount in [0, -1, i64::MIN] {
        assert_eq!(
            engine.try_reserve("a", amount).err(),
            Some(BudgetError::NonPositiveAmount {
                amount_microcents: amount
            })
        );
        assert_eq!(
            engine.top_up("a", amount),
            Err(BudgetError::NonPositiveAmount {
                amount_microcents: amount
            })
        );
    }
    let hold = engine.try_reserve("a", 10)?;
    let refused = hold.commit(-5).err().ok_or("negative commit accepted")?;
    assert_eq!(
        refused.error,
        BudgetError::NegativeAmount {
            amount_microcents: -5
        }
    );
    assert_eq!(books(&engine, "a")?, (100, 90, 10, 0));
    drop(refused);
    assert_eq!(books(&engine, "a")?, (100, 100, 0, 0));
    Ok(())
}

#[test]
fn unknown_tenants_are_refused() {
    let engine = BudgetEngine::new();
    let unknown = Some(BudgetError::UnknownTenant {
        tenant_id: "ghost".into(),
    });
    assert_eq!(engine.try_reserve("ghost", 1).err(), unknown);
    assert_eq!(engine.top_up("ghost", 1).err(), unknown);
    assert_eq!(engine.ledger("ghost").err(), unknown);
    assert_eq!(engine.tenant("ghost").err(), unknown);
}

#[test]
fn commit_refunds_the_surplus() -> TestResult {
    let engine = engine_with("a", 100)?;
    let hold = engine.try_reserve("a", 40)?;
    assert_eq!(books(&engine, "a")?, (100, 60, 40, 0));
    let settled = hold.commit(15)?;
    assert_eq!(settled.committed_microcents, 15);
    assert_eq!(settled.refunded_microcents, 25);
    assert_eq!(settled.overrun_microcents, 0);
    assert_eq!(books(&engine, "a")?, (100, 85, 0, 15));
    Ok(())
}

#[test]
fn commit_above_the_hold_is_refused_and_hands_the_reservation_back() -> TestResult {
    let engine = engine_with("a", 100)?;
    let hold = engine.try_reserve("a", 40)?;
    let refused = hold
        .commit(41)
        .err()
        .ok_or("overrun accepted by plain commit")?;
    assert_eq!(
        refused.error,
        BudgetError::ActualExceedsReservation {
            reserved_microcents: 40,
            actual_microcents: 41
        }
    );
    assert_eq!(books(&engine, "a")?, (100, 60, 40, 0));
    let settled = refused.reservation.commit(40)?;
    assert_eq!(settled.committed_microcents, 40);
    assert_eq!(books(&engine, "a")?, (100, 60, 0, 40));
    Ok(())
}

#[test]
fn overrun_path_debits_the_excess_or_refuses_without_change() -> TestResult {
    let engine = engine_with("a", 100)?;
    let hold = engine.try_reserve("a", 40)?;
    let settled = hold.commit_with_overrun(70)?;
    assert_eq!(settled.overrun_microcents, 30);
    assert_eq!(books(&engine, "a")?, (100, 30, 0, 70));

    let hold = engine.try_reserve("a", 10)?;
    let refused = hold
        .commit_with_overrun(41)
        .err()
        .ok_or("uncovered overrun accepted")?;
    assert_eq!(
        refused.error,
        BudgetError::Insufficient {
            remaining_microcents: 20,
            requested_microcents: 31
        }
    );
    assert_eq!(books(&engine, "a")?, (100, 20, 10, 70));
    refused.reservation.release();
    assert_eq!(books(&engine, "a")?, (100, 30, 0, 70));
    Ok(())
}

#[test]
fn release_and_drop_return_the_whole_hold() -> TestResult {
    let engine = engine_with("a", 100)?;
    let hold = engine.try_reserve("a", 60)?;
    let settled = hold.release();
    assert_eq!(settled.refunded_microcents, 60);
    assert_eq!(books(&engine, "a")?, (100, 100, 0, 0));
    {
        let _forgotten = engine.try_reserve("a", 60)?;
        assert_eq!(books(&engine, "a")?, (100, 40, 60, 0));
    }
    assert_eq!(books(&engine, "a")?, (100, 100, 0, 0));
    assert_eq!(engine.snapshot().active_reservations, 0);
    Ok(())
}

#[test]
fn insufficient_budget_is_refused_without_change() -> TestResult {
    let engine = engine_with("a", 100)?;
    let _hold = engine.try_reserve("a", 100)?;
    assert_eq!(
        engine.try_reserve("a", 1).err(),
        Some(BudgetError::Insufficient {
            remaining_microcents: 0,
            requested_microcents: 1
        })
    );
    assert_eq!(books(&engine, "a")?, (100, 0, 100, 0));
    Ok(())
}

#[test]
fn top_up_extends_initial_and_remaining_and_keeps_spend() -> TestResult {
    let engine = engine_with("a", 100)?;
    engine.try_reserve("a", 30)?.commit(30)?;
    engine.top_up("a", 50)?;
    assert_eq!(books(&engine, "a")?, (150, 120, 0, 30));
    Ok(())
}

#[test]
fn top_up_overflow_is_refused_not_wrapped() -> TestResult {
    let engine = engine_with("a", i64::MAX - 5)?;
    assert_eq!(
        engine.top_up("a", 6),
        Err(BudgetError::Overflow { total: "initial" })
    );
    engine.top_up("a", 5)?;
    assert_eq!(books(&engine, "a")?, (i64::MAX, i64::MAX, 0, 0));
    assert_eq!(
        engine.top_up("a", 1),
        Err(BudgetError::Overflow { total: "initial" })
    );
    let hold = engine.try_reserve("a", i64::MAX)?;
    hold.commit(i64::MAX)?;
    assert_eq!(books(&engine, "a")?, (i64::MAX, 0, 0, i64::MAX));
    engine.verify_conservation()?;
    Ok(())
}

#[test]
fn id_form_commits_and_releases_once() -> TestResult {
    let engine = engine_with("a", 100)?;
    let first = engine.try_reserve("a", 30)?.into_id()?;
    let second = engine.try_reserve("a", 20)?.into_id()?;
    assert_ne!(first, second);
    assert_eq!(engine.snapshot().active_reservations, 2);
    let wire = ReservationId::from_u64(first.as_u64());
    let settled = engine.commit_by_id(wire, 10)?;
    assert_eq!(settled.refunded_microcents, 20);
    assert_eq!(
        engine.commit_by_id(first, 10),
        Err(BudgetError::UnknownReservation { id: first })
    );
    engine.release_by_id(second)?;
    assert_eq!(
        engine.release_by_id(second),
        Err(BudgetError::UnknownReservation { id: second })
    );
    assert_eq!(books(&engine, "a")?, (100, 90, 0, 10));
    assert_eq!(engine.snapshot().active_reservations, 0);
    Ok(())
}

#[test]
fn id_form_refusals_keep_the_reservation_open() -> TestResult {
    let engine = engine_with("a", 100)?;
    let id = engine.try_reserve("a", 30)?.into_id()?;
    assert_eq!(
        engine.commit_by_id(id, 31),
        Err(BudgetError::ActualExceedsReservation {
            reserved_microcents: 30,
            actual_microcents: 31
        })
    );
    assert!(matches!(
        engine.commit_with_overrun_by_id(id, 200),
        Err(BudgetError::Insufficient { .. })
    ));
    assert_eq!(books(&engine, "a")?, (100, 70, 30, 0));
    engine.commit_with_overrun_by_id(id, 50)?;
    assert_eq!(books(&engine, "a")?, (100, 50, 0, 50));
    assert!(matches!(
        engine.release_by_id(ReservationId::from_u64(u64::MAX)),
        Err(BudgetError::UnknownReservation { .. })
    ));
    Ok(())
}

#[test]
fn reserved_amount_cap_limits_outstanding_holds() -> TestResult {
    let engine = engine_with("a", 1_000)?;
    engine.set_limits(
        "a",
        TenantLimits {
            max_reserved_microcents: Some(100),
            max_active_reservations: None,
        },
    )?;
    let first = engine.try_reserve("a", 60)?;
    assert_eq!(
        engine.try_reserve("a", 41).err(),
        Some(BudgetError::ReservedCapExceeded {
            reserved_microcents: 60,
            requested_microcents: 41,
            cap_microcents: 100
        })
    );
    let second = engine.try_reserve("a", 40)?;
    first.commit(60)?;
    let third = engine.try_reserve("a", 60)?;
    assert_eq!(books(&engine, "a")?, (1_000, 840, 100, 60));
    drop((second, third));
    engine.set_limits("a", TenantLimits::default())?;
    assert_eq!(engine.limits("a")?, TenantLimits::default());
    drop(engine.try_reserve("a", 900)?);
    assert!(matches!(
        engine.set_limits(
            "a",
            TenantLimits {
                max_reserved_microcents: Some(0),
                max_active_reservations: None
            }
        ),
        Err(BudgetError::NonPositiveAmount { .. })
    ));
    Ok(())
}

#[test]
fn active_reservation_cap_limits_open_holds() -> TestResult {
    let engine = engine_with("a", 1_000)?;
    let limits = TenantLimits {
        max_reserved_microcents: None,
        max_active_reservations: Some(2),
    };
    engine.set_limits("a", limits)?;
    assert_eq!(engine.limits("a")?, limits);
    let first = engine.try_reserve("a", 1)?;
    let second = engine.try_reserve("a", 1)?.into_id()?;
    assert_eq!(
        engine.try_reserve("a", 1).err(),
        Some(BudgetError::TooManyActiveReservations {
            max_active_reservations: 2
        })
    );
    first.release();
    let third = engine.try_reserve("a", 1)?;
    engine.release_by_id(second)?;
    third.commit(1)?;
    assert_eq!(books(&engine, "a")?, (1_000, 999, 0, 1));
    Ok(())
}

#[test]
fn snapshot_is_sorted_by_id_bytes_and_versions_increase() -> TestResult {
    let engine = BudgetEngine::new();
    for id in ["b", "B", "a", "ab", "é"] {
        engine.ensure_tenant(id, 10)?;
    }
    let first = engine.snapshot();
    let ids: Vec<&str> = first.tenants.iter().map(|t| t.tenant_id.as_str()).collect();
    assert_eq!(ids, ["B", "a", "ab", "b", "é"]);
    let second = engine.snapshot();
    assert!(second.version > first.version);
    Ok(())
}

#[test]
fn restore_is_refused_while_reservations_are_open() -> TestResult {
    let engine = engine_with("a", 100)?;
    let saved = engine.snapshot();
    let hold = engine.try_reserve("a", 10)?;
    assert_eq!(
        engine.restore(&saved),
        Err(RestoreError::ActiveReservations { count: 1 })
    );
    assert_eq!(books(&engine, "a")?, (100, 90, 10, 0));
    let id = hold.into_id()?;
    assert_eq!(
        engine.restore(&saved),
        Err(RestoreError::ActiveReservations { count: 1 })
    );
    engine.commit_by_id(id, 10)?;
    engine.restore(&saved)?;
    assert_eq!(books(&engine, "a")?, (100, 100, 0, 0));
    Ok(())
}

#[test]
fn restore_replaces_the_books_and_retires_absent_tenants() -> TestResult {
    let engine = engine_with("kept", 100)?;
    engine.ensure_tenant("dropped", 50)?;
    let kept = engine.tenant("kept")?;
    let dropped = engine.tenant("dropped")?;
    engine.snapshot();
    engine.snapshot();
    let target = BudgetSnapshot {
        version: 1,
        tenants: vec![
            TenantLedger {
                tenant_id: "kept".into(),
                initial_microcents: 500,
                remaining_microcents: 200,
                reserved_microcents: 0,
                committed_microcents: 300,
            },
            TenantLedger {
                tenant_id: "new".into(),
                initial_microcents: 7,
                remaining_microcents: 7,
                reserved_microcents: 0,
                committed_microcents: 0,
            },
        ],
        active_reservations: 0,
    };
    engine.restore(&target)?;
    let after = engine.snapshot();
    assert_eq!(after.tenants, target.tenants);
    assert!(after.version > 2, "versions must not go backwards");
    assert_eq!(kept.ledger().remaining_microcents, 200);
    kept.try_reserve(200)?.commit(200)?;
    assert_eq!(
        dropped.try_reserve(1).err(),
        Some(BudgetError::TenantRetired)
    );
    assert_eq!(dropped.top_up(1).err(), Some(BudgetError::TenantRetired));
    assert!(matches!(
        engine.try_reserve("dropped", 1),
        Err(BudgetError::UnknownTenant { .. })
    ));
    engine.try_reserve("new", 7)?.commit(7)?;
    engine.verify_conservation()?;
    Ok(())
}

#[test]
fn restore_refuses_unsound_snapshots_and_changes_nothing() -> TestResult {
    let engine = engine_with("a", 100)?;
    let row = |id: &str, initial, remaining, reserved, committed| TenantLedger {
        tenant_id: id.into(),
        initial_microcents: initial,
        remaining_microcents: remaining,
        reserved_microcents: reserved,
        committed_microcents: committed,
    };
    let cases = [
        (vec![row("x", 10, 5, 0, 4)], 0),
        (vec![row("x", 10, 10, 0, 0), row("x", 10, 10, 0, 0)], 0),
        (vec![row("x", 10, -1, 0, 11)], 0),
        (vec![row("x", 10, 5, 5, 0)], 0),
        (vec![row("", 10, 10, 0, 0)], 0),
        (vec![row("x", 10, 10, 0, 0)], 1),
    ];
    for (tenants, active_reservations) in cases {
        let bad = BudgetSnapshot {
            version: 0,
            tenants,
            active_reservations,
        };
        assert!(engine.restore(&bad).is_err(), "accepted {bad:?}");
    }
    assert_eq!(books(&engine, "a")?, (100, 100, 0, 0));
    assert_eq!(engine.tenant_count(), 1);
    Ok(())
}

#[test]
fn open_holds_in_a_snapshot_can_be_released_explicitly() -> TestResult {
    let engine = engine_with("a", 100)?;
    let hold = engine.try_reserve("a", 30)?;
    let crashed = engine.snapshot();
    drop(hold);
    assert!(matches!(
        engine.restore(&crashed),
        Err(RestoreError::SnapshotHasOpenReservations { .. })
    ));
    let released = crashed
        .with_open_reservations_released()
        .ok_or("overflow releasing holds")?;
    assert_eq!(released.active_reservations, 0);
    released.verify_conservation()?;
    engine.restore(&released)?;
    assert_eq!(books(&engine, "a")?, (100, 100, 0, 0));
    Ok(())
}

#[test]
fn handles_skip_the_lookup_but_share_the_books() -> TestResult {
    let engine = engine_with("a", 100)?;
    let handle = engine.tenant("a")?;
    assert_eq!(handle.tenant_id(), "a");
    let hold = handle.try_reserve(25)?;
    assert_eq!(hold.tenant_id(), "a");
    assert_eq!(hold.held_microcents(), 25);
    assert_eq!(engine.remaining_microcents("a")?, 75);
    hold.commit(5)?;
    handle.top_up(10)?;
    assert_eq!(handle.remaining_microcents(), 105);
    assert_eq!(books(&engine, "a")?, (110, 105, 0, 5));
    Ok(())
}

#[test]
fn by_id_lookups_never_mix_engines_or_miss_new_tenants() -> TestResult {
    let first = engine_with("shared", 100)?;
    let second = engine_with("shared", 7)?;
    for _ in 0..3 {
        first.try_reserve("shared", 10)?.commit(10)?;
        second.try_reserve("shared", 1)?.commit(1)?;
    }
    assert_eq!(books(&first, "shared")?, (100, 70, 0, 30));
    assert_eq!(books(&second, "shared")?, (7, 4, 0, 3));
    assert!(matches!(
        first.try_reserve("later", 1),
        Err(BudgetError::UnknownTenant { .. })
    ));
    first.ensure_tenant("later", 5)?;
    first.try_reserve("later", 5)?.commit(5)?;
    assert_eq!(books(&first, "later")?, (5, 0, 0, 5));
    Ok(())
}
