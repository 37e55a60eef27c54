//! Random operation sequences against a reference model.
//!
//! Every step is applied to the engine and to a plain, single-threaded model
//! computed in `i128`; after every step the engine's books must equal the
//! model's exactly and `remaining + reserved + committed == initial` must hold
//! for every tenant. The run is seeded: set `CALYBRIS_PROPTEST_SEED` (a `u64`)
//! to replay a reported failure; the seed is printed when the property fails.

use calybris_budget::{
    BudgetEngine, BudgetError, Reservation, ReservationId, TenantLedger, TenantLimits,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::collections::BTreeMap;

const TENANTS: [&str; 3] = ["alpha", "beta", "gamma"];
const DEFAULT_SEED: u64 = 0x00ca_1b71_5b0d_9e7a;
const CASES: u32 = 256;
const MAX_OPS_PER_CASE: usize = 80;

#[derive(Debug, Clone)]
enum Op {
    Ensure(usize, i64),
    TopUp(usize, i64),
    Reserve(usize, i64),
    Commit(usize, i64),
    CommitOverrun(usize, i64),
    Release(usize),
    Drop(usize),
    IntoId(usize),
    CommitById(usize, i64),
    ReleaseById(usize),
    SetCap(usize, Option<i64>, Option<u64>),
    SnapshotRestore,
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 1_i64..1_000,
        2 => -5_i64..=0,
        1 => (i64::MAX - 1_000)..=i64::MAX,
        1 => Just(i64::MIN),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let tenant = 0..TENANTS.len();
    let slot = 0_usize..8;
    prop_oneof![
        2 => (tenant.clone(), amount()).prop_map(|(t, a)| Op::Ensure(t, a)),
        2 => (tenant.clone(), amount()).prop_map(|(t, a)| Op::TopUp(t, a)),
        6 => (tenant.clone(), amount()).prop_map(|(t, a)| Op::Reserve(t, a)),
        3 => (slot.clone(), amount()).prop_map(|(s, a)| Op::Commit(s, a)),
        2 => (slot.clone(), amount()).prop_map(|(s, a)| Op::CommitOverrun(s, a)),
        2 => slot.clone().prop_map(Op::Release),
        2 => slot.clone().prop_map(Op::Drop),
        2 => slot.clone().prop_map(Op::IntoId),
        2 => (slot.clone(), amount()).prop_map(|(s, a)| Op::CommitById(s, a)),
        1 => slot.prop_map(Op::ReleaseById),
        1 => (tenant, proptest::option::of(1_i64..2_000), proptest::option::of(0_u64..4))
            .prop_map(|(t, c, n)| Op::SetCap(t, c, n)),
        1 => Just(Op::SnapshotRestore),
    ]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Books {
    initial: i128,
    remaining: i128,
    reserved: i128,
    committed: i128,
    active: u64,
    cap_reserved: Option<i64>,
    cap_active: Option<u64>,
}

/// Open reservations in the engine and their twins in the model.
struct World {
    engine: BudgetEngine,
    model: BTreeMap<&'static str, Books>,
    handles: Vec<(usize, Reservation)>,
    ids: Vec<(usize, ReservationId, i64)>,
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut world = World {
        engine: BudgetEngine::new(),
        model: BTreeMap::new(),
        handles: Vec::new(),
        ids: Vec::new(),
    };
    for (step, op) in ops.iter().enumerate() {
        apply(&mut world, op)
            .map_err(|e| TestCaseError::fail(format!("step {step} {op:?}: {e}")))?;
        check_books(&world)
            .map_err(|e| TestCaseError::fail(format!("after step {step} {op:?}: {e}")))?;
    }
    Ok(())
}

fn books_mut(world: &mut World, tenant: usize) -> Option<&mut Books> {
    world.model.get_mut(TENANTS[tenant])
}

fn apply(world: &mut World, op: &Op) -> Result<(), String> {
    match *op {
        Op::Ensure(t, a) => {
            let result = world.engine.ensure_tenant(TENANTS[t], a);
            let expected_ok = a >= 0;
            if result.is_ok() != expected_ok {
                return Err(format!("ensure gave {result:?}"));
            }
            if expected_ok {
                world.model.entry(TENANTS[t]).or_insert(Books {
                    initial: a.into(),
                    remaining: a.into(),
                    ..Books::default()
                });
            }
        }
        Op::TopUp(t, a) => {
            let result = world.engine.top_up(TENANTS[t], a);
            let expected = match books_mut(world, t) {
                None => Err("unknown"),
                Some(_) if a <= 0 => Err("non-positive"),
                Some(b) if b.initial + i128::from(a) > i128::from(i64::MAX) => Err("overflow"),
                Some(b) => {
                    b.initial += i128::from(a);
                    b.remaining += i128::from(a);
                    Ok(())
                }
            };
            same_outcome(&result, expected)?;
        }
        Op::Reserve(t, a) => {
            let result = world.engine.try_reserve(TENANTS[t], a);
            let expected = match books_mut(world, t) {
                None => Err("unknown"),
                Some(_) if a <= 0 => Err("non-positive"),
                Some(b) if b.cap_active.is_some_and(|cap| b.active >= cap) => Err("active cap"),
                Some(b)
                    if b.cap_reserved
                        .is_some_and(|cap| b.reserved + i128::from(a) > cap.into()) =>
                {
                    Err("reserved cap")
                }
                Some(b) if b.remaining < a.into() => Err("insufficient"),
                Some(b) => {
                    b.remaining -= i128::from(a);
                    b.reserved += i128::from(a);
                    b.active += 1;
                    Ok(())
                }
            };
            same_outcome(&result, expected)?;
            if let Ok(reservation) = result {
                world.handles.push((t, reservation));
            }
        }
        Op::Commit(slot, actual) | Op::CommitOverrun(slot, actual) => {
            let overrun = matches!(op, Op::CommitOverrun(..));
            if world.handles.is_empty() {
                return Ok(());
            }
            let (t, reservation) = world.handles.swap_remove(slot % world.handles.len());
            let held = reservation.held_microcents();
            let result = if overrun {
                reservation.commit_with_overrun(actual)
            } else {
                reservation.commit(actual)
            };
            let outcome = match result {
                Ok(_) => Ok(()),
                Err(refused) => Err(Refusal::HandedBack(refused.reservation)),
            };
            settle_model(world, t, held, actual, overrun, outcome)?;
        }
        Op::Release(slot) | Op::Drop(slot) => {
            if world.handles.is_empty() {
                return Ok(());
            }
            let (t, reservation) = world.handles.swap_remove(slot % world.handles.len());
            let held = reservation.held_microcents();
            if matches!(op, Op::Release(_)) {
                reservation.release();
            } else {
                drop(reservation);
            }
            settle_model(world, t, held, 0, false, Ok(()))?;
        }
        Op::IntoId(slot) => {
            if world.handles.is_empty() {
                return Ok(());
            }
            let (t, reservation) = world.handles.swap_remove(slot % world.handles.len());
            let held = reservation.held_microcents();
            let id = reservation
                .into_id()
                .map_err(|e| format!("into_id: {}", e.error))?;
            world.ids.push((t, id, held));
        }
        Op::CommitById(slot, _) | Op::ReleaseById(slot) if !world.ids.is_empty() => {
            let index = slot % world.ids.len();
            let (t, id, held) = world.ids[index];
            let (result, actual) = match *op {
                Op::CommitById(_, actual) => (world.engine.commit_by_id(id, actual), actual),
                _ => (world.engine.release_by_id(id), 0),
            };
            let outcome = result.map(|_| ()).map_err(|_| Refusal::Kept);
            let accepted = settle_model(world, t, held, actual, false, outcome)?;
            if accepted {
                world.ids.swap_remove(index);
            }
        }
        Op::CommitById(..) | Op::ReleaseById(_) => {}
        Op::SetCap(t, cap_reserved, cap_active) => {
            let limits = TenantLimits {
                max_reserved_microcents: cap_reserved,
                max_active_reservations: cap_active,
            };
            let result = world.engine.set_limits(TENANTS[t], limits);
            match books_mut(world, t) {
                None => same_outcome(&result, Err("unknown"))?,
                Some(b) => {
                    b.cap_reserved = cap_reserved;
                    b.cap_active = cap_active;
                    same_outcome(&result, Ok(()))?;
                }
            }
        }
        Op::SnapshotRestore => {
            let snapshot = world.engine.snapshot();
            let open = world.handles.len() + world.ids.len();
            let result = world.engine.restore(&snapshot);
            if result.is_ok() != (open == 0) {
                return Err(format!("restore with {open} open gave {result:?}"));
            }
            if result.is_ok() && world.engine.snapshot().tenants != snapshot.tenants {
                return Err("restore changed the books".into());
            }
        }
    }
    Ok(())
}

/// A refused settlement either hands the reservation back or keeps the id open.
enum Refusal {
    Kept,
    HandedBack(Reservation),
}

/// Applies a settlement to the model when the engine accepted it, checks the
/// engine agreed on acceptance, and returns whether it was accepted.
fn settle_model(
    world: &mut World,
    t: usize,
    held: i64,
    actual: i64,
    overrun: bool,
    result: Result<(), Refusal>,
) -> Result<bool, String> {
    let b = books_mut(world, t).ok_or("settled a reservation of an unknown tenant")?;
    let held = i128::from(held);
    let actual_wide = i128::from(actual);
    let excess = actual_wide - held;
    let expected_ok = actual >= 0 && (actual_wide <= held || (overrun && b.remaining >= excess));
    if result.is_ok() != expected_ok {
        return Err(format!(
            "settle held={held} actual={actual} overrun={overrun}: engine accepted={}",
            result.is_ok()
        ));
    }
    match result {
        Ok(()) => {
            b.reserved -= held;
            b.committed += actual_wide;
            b.remaining += held - actual_wide;
            b.active -= 1;
            Ok(true)
        }
        Err(Refusal::HandedBack(reservation)) => {
            world.handles.push((t, reservation));
            Ok(false)
        }
        Err(Refusal::Kept) => Ok(false),
    }
}

fn same_outcome<T, E: std::fmt::Debug>(
    result: &Result<T, E>,
    expected: Result<(), &str>,
) -> Result<(), String> {
    match (result, expected) {
        (Ok(_), Ok(())) | (Err(_), Err(_)) => Ok(()),
        (Ok(_), Err(why)) => Err(format!("engine accepted, model expected {why}")),
        (Err(e), Ok(())) => Err(format!("engine refused with {e:?}, model accepted")),
    }
}

fn check_books(world: &World) -> Result<(), String> {
    let snapshot = world.engine.snapshot();
    snapshot.verify_conservation().map_err(|v| v.to_string())?;
    let open = (world.handles.len() + world.ids.len()) as u64;
    if snapshot.active_reservations != open {
        return Err(format!(
            "engine has {} open, model {open}",
            snapshot.active_reservations
        ));
    }
    if snapshot.tenants.len() != world.model.len() {
        return Err("tenant sets differ".into());
    }
    for (row, (id, b)) in snapshot.tenants.iter().zip(&world.model) {
        let expected = TenantLedger {
            tenant_id: (*id).to_owned(),
            initial_microcents: narrow(b.initial)?,
            remaining_microcents: narrow(b.remaining)?,
            reserved_microcents: narrow(b.reserved)?,
            committed_microcents: narrow(b.committed)?,
        };
        if *row != expected {
            return Err(format!("engine {row:?} != model {expected:?}"));
        }
        if b.remaining + b.reserved + b.committed != b.initial {
            return Err(format!("model of {id} does not balance"));
        }
    }
    Ok(())
}

fn narrow(value: i128) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("model value {value} does not fit i64"))
}

fn seed() -> u64 {
    std::env::var("CALYBRIS_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

#[test]
fn random_operation_sequences_keep_the_books_balanced_after_every_step() {
    let seed = seed();
    let mut seed_bytes = [0_u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = proptest::collection::vec(op(), 1..MAX_OPS_PER_CASE);
    if let Err(failure) = runner.run(&strategy, |ops| run_case(&ops)) {
        panic!("seed {seed} (rerun with CALYBRIS_PROPTEST_SEED={seed}): {failure}");
    }
}

#[test]
fn unused_ids_are_unknown() {
    let engine = BudgetEngine::new();
    assert!(matches!(
        engine.release_by_id(ReservationId::from_u64(0)),
        Err(BudgetError::UnknownReservation { .. })
    ));
}
