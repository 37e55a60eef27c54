//! The decision gate end to end, on real files: what it logs replays, the budget
//! balances under concurrent use, refusals are logged decisions, rotation writes the
//! policy first, and reopening recovers both logs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use calybris::gate::{
    BUDGET_DIR, BUDGET_META_MAGIC, BudgetOutcome, DECISIONS_DIR, Gate, GateAuditError, GateConfig,
    GateError, MICROCENTS_PER_MICROUNIT, ReservationProblem, audit_dir, microunits_to_microcents,
    tenant_number,
};
use calybris::prelude::*;
use calybris::wal::{AuditRecord, Entry, SegmentedReader, WalKey, replay_audited_segments};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "calybris-gate-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The seed of a randomised test: `CALYBRIS_SEED` if set, else a fixed default.
fn seed() -> u64 {
    let seed = std::env::var("CALYBRIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_CA1B_0001);
    println!("seed {seed} (re-run with CALYBRIS_SEED={seed})");
    seed
}

/// xorshift64*: small, seeded, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn model(model_id: u32, quality_bps: u16, input_price: u64, output_price: u64) -> KernelModel {
    KernelModel {
        model_id,
        provider_id: 0,
        quality_bps,
        risk_ceiling_bps: 8_000,
        enabled: 1,
        p95_latency_ms: 500,
        capabilities: 0b1,
        region_mask: 0b1,
        input_cost_microunits_per_million_tokens: input_price,
        output_cost_microunits_per_million_tokens: output_price,
    }
}

/// Three models; the epoch makes policies of different epochs differ by digest.
fn policy(epoch: u64) -> SealedPolicy {
    SealedPolicy::new(
        PolicySnapshot::builder()
            .policy_epoch(epoch)
            .catalog_epoch(1)
            .hard_risk_limit_bps(9_000)
            .models([
                model(1, 9_400, 3_000_000, 15_000_000),
                model(2, 8_500, 500_000, 1_500_000),
                model(3, 7_000, 100_000, 400_000),
            ])
            .build()
            .expect("the test policy is valid"),
    )
}

/// A request for model 1 that the kernel selects (model 1 or a substitute; from 0.03 to
/// 1.05 cents estimated).
fn request(sequence: u64) -> KernelInput {
    KernelInput {
        request_sequence: sequence,
        requested_model_id: 1,
        input_tokens: 1_000,
        output_tokens: 500,
        business_value_microunits: 100_000,
        ..KernelInput::default()
    }
}

/// A request the kernel rejects (risk at the hard limit).
fn risky(sequence: u64) -> KernelInput {
    KernelInput {
        risk_bps: 9_500,
        ..request(sequence)
    }
}

const CENT: i64 = 1_000_000;

fn decisions_dir(dir: &Path) -> PathBuf {
    dir.join(DECISIONS_DIR)
}

fn read_log(dir: &Path, key: Option<&WalKey>) -> Vec<Entry<AuditRecord>> {
    SegmentedReader::<AuditRecord>::open(&decisions_dir(dir), key, None)
        .expect("the log opens")
        .collect::<Result<_, _>>()
        .expect("the log reads")
}

fn replay(dir: &Path, key: Option<&WalKey>) -> calybris::wal::ReplaySummary {
    let reader = SegmentedReader::open(&decisions_dir(dir), key, None).expect("the log opens");
    replay_audited_segments(reader).expect("the log the gate wrote replays")
}

#[test]
fn decisions_are_logged_and_replay() -> Result<(), GateError> {
    let tmp = TempDir::new("logged");
    let key = WalKey::new(&[42u8; 32]).expect("a 32-byte key is accepted");
    let gate = Gate::open(
        GateConfig::new(tmp.path(), policy(1))
            .key(key.clone())
            .tenant("acme", 100 * CENT)
            .clock(|| 1_700_000_000_000),
    )?;

    let mut outcomes = Vec::new();
    for sequence in 0..12 {
        let input = if sequence % 3 == 0 {
            risky(sequence)
        } else {
            request(sequence)
        };
        let admission = gate.decide("acme", input)?;
        assert_eq!(admission.decision().request_sequence, sequence);
        if sequence % 3 == 0 {
            assert!(!admission.is_admitted());
            assert_eq!(admission.budget(), BudgetOutcome::NotRequired);
        } else {
            assert!(admission.is_admitted());
            assert!(matches!(admission.budget(), BudgetOutcome::Reserved { .. }));
            assert_eq!(
                admission.held_microcents(),
                microunits_to_microcents(admission.decision().estimated_cost_microunits)?
            );
        }
        outcomes.push((admission.log_sequence(), admission.budget()));
        let estimate = admission.decision().estimated_cost_microunits;
        if sequence % 4 == 1 {
            gate.abandon(admission)?;
        } else {
            gate.settle(admission, estimate)?;
        }
    }
    gate.close()?;

    let summary = replay(tmp.path(), Some(&key));
    assert_eq!(summary.decisions, 12);
    assert_eq!(summary.policies, 1);

    let log = read_log(tmp.path(), Some(&key));
    assert!(matches!(log[0].record, AuditRecord::Policy(_)));
    for (sequence, outcome) in outcomes {
        let entry = log
            .iter()
            .find(|entry| entry.sequence == sequence)
            .expect("every admission's sequence is in the log");
        let AuditRecord::Decision(record) = &entry.record else {
            panic!("record {sequence} is not a decision");
        };
        assert_eq!(BudgetOutcome::from_meta(&record.meta), Some(outcome));
        assert_eq!(record.meta.tenant_id, tenant_number("acme"));
        assert_eq!(record.meta.recorded_at_unix_ms, 1_700_000_000_000);
    }
    Ok(())
}

#[test]
fn concurrent_decide_and_settle_conserve_the_budget() -> Result<(), GateError> {
    const THREADS: u64 = 4;
    const DECISIONS_PER_THREAD: u64 = 60;
    let seed = seed();
    let tmp = TempDir::new("concurrent");
    let tenants = ["acme", "globex", "initech"];
    // Ten estimated requests each: the budgets run out under contention.
    let estimate = policy(1).prescribe(request(0)).estimated_cost_microunits;
    let budget = microunits_to_microcents(estimate)? * 10;
    let mut config = GateConfig::new(tmp.path(), policy(1));
    for tenant in tenants {
        config = config.tenant(tenant, budget);
    }
    let gate = Gate::open(config)?;

    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let gate = &gate;
                scope.spawn(
                    move || -> Result<Vec<(usize, i64, bool, bool)>, GateError> {
                        let mut rng = Rng(seed ^ (thread + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                        let mut spent = Vec::new();
                        for i in 0..DECISIONS_PER_THREAD {
                            let tenant = usize::try_from(rng.below(3)).unwrap_or(0);
                            let sequence = thread * 1_000 + i;
                            let input = if rng.below(5) == 0 {
                                risky(sequence)
                            } else {
                                request(sequence)
                            };
                            let admission = gate.decide(tenants[tenant], input)?;
                            let admitted = admission.is_admitted();
                            let budget_refused = admission.decision().is_selection() && !admitted;
                            let estimate = admission.decision().estimated_cost_microunits;
                            let settlement = match rng.below(4) {
                                0 => gate.abandon(admission)?,
                                _ if !admitted => gate.settle(admission, 0)?,
                                // Anything from zero to the estimate.
                                _ => gate.settle(admission, rng.below(estimate + 1))?,
                            };
                            spent.push((
                                tenant,
                                settlement.committed_microcents,
                                admitted,
                                budget_refused,
                            ));
                        }
                        Ok(spent)
                    },
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a worker thread panicked"))
            .collect::<Result<Vec<_>, _>>()
    })?;

    let mut committed = [0i64; 3];
    let mut admitted = 0;
    let mut refused = 0;
    for (tenant, microcents, was_admitted, budget_refused) in results.into_iter().flatten() {
        committed[tenant] += microcents;
        admitted += u64::from(was_admitted);
        refused += u64::from(budget_refused);
    }
    gate.ledger()
        .verify_conservation()
        .expect("the books balance after concurrent use");
    for (index, tenant) in tenants.iter().enumerate() {
        let books = gate.tenant_ledger(tenant)?;
        assert_eq!(books.reserved_microcents, 0, "{tenant}: a hold leaked");
        assert_eq!(books.committed_microcents, committed[index], "{tenant}");
        assert_eq!(books.initial_microcents, budget);
        assert_eq!(
            books.remaining_microcents + books.committed_microcents,
            books.initial_microcents
        );
    }
    assert!(gate.prove_conservation()?.balanced);
    assert!(admitted > 0, "seed {seed}: nothing was admitted");
    assert!(refused > 0, "seed {seed}: the budget refused nothing");
    gate.close()?;

    let summary = replay(tmp.path(), None);
    assert_eq!(summary.decisions, THREADS * DECISIONS_PER_THREAD);

    // Offline, every admitted decision's hold is found in the budget journal.
    let audit = audit_dir(tmp.path(), None).expect("the gate directory audits clean");
    assert_eq!(audit.decisions.decisions, THREADS * DECISIONS_PER_THREAD);
    assert_eq!(audit.reservations_matched, admitted);
    assert!(audit.conservation.balanced);
    Ok(())
}

/// The budget of a tenant that cannot afford any request.
const POOR: i64 = CENT / 100;

#[test]
fn insufficient_budget_is_logged_as_a_decision() -> Result<(), GateError> {
    let tmp = TempDir::new("insufficient");
    // A hundredth of a cent: less than any candidate's estimate (0.03 to 1.05 cents).
    let gate = Gate::open(GateConfig::new(tmp.path(), policy(1)).tenant("poor", POOR))?;

    let admission = gate.decide("poor", request(7))?;
    assert!(admission.decision().is_selection(), "the kernel selected");
    assert!(!admission.is_admitted(), "the budget refused");
    assert_eq!(
        admission.budget(),
        BudgetOutcome::Insufficient {
            remaining_microcents: POOR
        }
    );
    assert_eq!(admission.held_microcents(), 0);
    let refused_sequence = admission.log_sequence();
    let zero = gate.settle(admission, 0)?;
    assert_eq!(zero.committed_microcents, 0);

    // A refused decision cannot be charged.
    let again = gate.decide("poor", request(8))?;
    let again_sequence = again.log_sequence();
    assert!(matches!(
        gate.settle(again, 1),
        Err(GateError::NotAdmitted { log_sequence }) if log_sequence == again_sequence
    ));
    let books = gate.tenant_ledger("poor")?;
    assert_eq!(books.committed_microcents, 0);
    assert_eq!(books.remaining_microcents, POOR);
    gate.close()?;

    let log = read_log(tmp.path(), None);
    let record = log
        .iter()
        .find_map(|entry| match &entry.record {
            AuditRecord::Decision(record) if entry.sequence == refused_sequence => Some(record),
            _ => None,
        })
        .expect("the refused decision is in the log");
    assert!(record.decision.is_selection());
    assert_eq!(record.meta.request_id[..4], BUDGET_META_MAGIC);
    assert_eq!(
        BudgetOutcome::from_meta(&record.meta),
        Some(BudgetOutcome::Insufficient {
            remaining_microcents: POOR
        })
    );
    assert_eq!(replay(tmp.path(), None).decisions, 2);
    Ok(())
}

#[test]
fn rotation_writes_the_policy_before_its_first_decision() -> Result<(), GateError> {
    let tmp = TempDir::new("rotation");
    let gate = Gate::open(GateConfig::new(tmp.path(), policy(1)).tenant("acme", 1_000 * CENT))?;
    let mut rotated = Vec::new();

    // Two threads decide while the main thread rotates through four policies.
    std::thread::scope(|scope| -> Result<(), GateError> {
        let workers: Vec<_> = (0..2u64)
            .map(|thread| {
                let gate = &gate;
                scope.spawn(move || -> Result<(), GateError> {
                    for i in 0..40 {
                        let admission = gate.decide("acme", request(thread * 100 + i))?;
                        let estimate = admission.decision().estimated_cost_microunits;
                        gate.settle(admission, estimate)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for epoch in 2..=5 {
            let next = policy(epoch);
            let digest = *next.digest();
            let ticket = gate.install_policy(next)?;
            assert!(ticket.is_some(), "a new policy is written");
            assert_eq!(gate.policy().digest(), &digest);
            rotated.push(digest);
        }
        for worker in workers {
            worker.join().expect("a worker thread panicked")?;
        }
        Ok(())
    })?;

    // Installing a policy the log holds writes nothing.
    assert!(gate.install_policy(policy(3))?.is_none());
    let last = gate.decide("acme", request(999))?;
    assert_eq!(last.policy_digest(), policy(3).digest());
    gate.abandon(last)?;
    gate.close()?;

    let log = read_log(tmp.path(), None);
    let mut seen = std::collections::HashSet::new();
    for entry in &log {
        match &entry.record {
            AuditRecord::Policy(record) => {
                assert!(seen.insert(record.policy_digest), "a policy written twice");
            }
            AuditRecord::Decision(record) => assert!(
                seen.contains(&record.policy_digest),
                "decision {} precedes its policy",
                entry.sequence
            ),
        }
    }
    for digest in &rotated {
        assert!(seen.contains(digest), "a rotated policy is missing");
    }
    let summary = replay(tmp.path(), None);
    assert_eq!(summary.policies, 5);
    assert_eq!(summary.decisions, 81);
    Ok(())
}

#[test]
fn reopening_recovers_the_ledger_and_continues_the_log() -> Result<(), GateError> {
    let tmp = TempDir::new("reopen");
    let config = || GateConfig::new(tmp.path(), policy(1)).tenant("acme", 100 * CENT);

    let gate = Gate::open(config())?;
    for sequence in 0..5 {
        let admission = gate.decide("acme", request(sequence))?;
        let estimate = admission.decision().estimated_cost_microunits;
        gate.settle(admission, estimate)?;
    }
    // A decision whose hold is still open when the process "dies".
    let open = gate.decide("acme", request(5))?;
    let BudgetOutcome::Reserved { journal_id } = open.budget() else {
        panic!("the open decision holds budget");
    };
    open.wait_durable()?;
    let committed_before = gate.tenant_ledger("acme")?.committed_microcents;
    let digest_before = gate.ledger().digest()?;
    // Forgetting the admission leaves its hold in the journal as a crash would.
    std::mem::forget(open);
    drop(gate);

    let gate = Gate::open(config())?;
    let recovery = gate.recovery().clone();
    assert_eq!(recovery.ledger.released_reservations, vec![journal_id]);
    assert_eq!(recovery.ledger.digest_at_recovery, digest_before);
    assert_eq!(recovery.decision_records, 7, "one policy and six decisions");
    let books = gate.tenant_ledger("acme")?;
    assert_eq!(books.committed_microcents, committed_before);
    assert_eq!(books.reserved_microcents, 0);
    assert_eq!(
        books.initial_microcents,
        100 * CENT,
        "the tenant is not re-created"
    );

    let next = gate.decide("acme", request(6))?;
    assert_eq!(
        next.log_sequence(),
        7,
        "the log continues, the policy is not rewritten"
    );
    let estimate = next.decision().estimated_cost_microunits;
    gate.settle(next, estimate)?;
    gate.ledger()
        .verify_conservation()
        .expect("the recovered books balance");
    gate.close()?;

    let summary = replay(tmp.path(), None);
    assert_eq!(summary.policies, 1);
    assert_eq!(summary.decisions, 7);
    Ok(())
}

#[test]
fn unknown_tenants_and_unrepresentable_costs_are_errors_and_log_nothing() -> Result<(), GateError> {
    let tmp = TempDir::new("errors");
    // One model priced so that a million tokens cost 10^17 microunits, which is
    // 10^19 microcents: more than an i64 holds.
    let huge = SealedPolicy::new(
        PolicySnapshot::builder()
            .model(model(1, 9_000, 100_000_000_000_000_000, 0))
            .build()
            .expect("the huge policy is valid"),
    );
    let gate = Gate::open(GateConfig::new(tmp.path(), huge).tenant("acme", 100 * CENT))?;
    assert!(matches!(
        gate.decide("nobody", request(1)),
        Err(GateError::UnknownTenant { tenant_id }) if tenant_id == "nobody"
    ));
    let input = KernelInput {
        input_tokens: 1_000_000,
        output_tokens: 0,
        business_value_microunits: i64::MAX,
        ..request(2)
    };
    let decision = gate.policy().prescribe(input);
    assert!(decision.is_selection(), "{decision:?}");
    assert!(matches!(
        gate.decide("acme", input),
        Err(GateError::CostOverflow { cost_microunits }) if cost_microunits == decision.estimated_cost_microunits
    ));
    assert_eq!(gate.tenant_ledger("acme")?.reserved_microcents, 0);
    gate.close()?;
    let summary = replay(tmp.path(), None);
    assert_eq!(summary.decisions, 0, "no decision was logged");
    Ok(())
}

#[test]
fn a_free_selection_holds_nothing_and_is_charged_on_settle() -> Result<(), GateError> {
    let tmp = TempDir::new("free");
    let gate = Gate::open(GateConfig::new(tmp.path(), policy(1)).tenant("acme", 10 * CENT))?;
    let input = KernelInput {
        input_tokens: 0,
        output_tokens: 0,
        ..request(1)
    };
    let admission = gate.decide("acme", input)?;
    assert_eq!(admission.decision().estimated_cost_microunits, 0);
    assert_eq!(admission.budget(), BudgetOutcome::Free);
    assert!(admission.is_admitted());
    let settlement = gate.settle(admission, 250)?;
    assert_eq!(
        settlement.committed_microcents,
        250 * MICROCENTS_PER_MICROUNIT
    );
    let books = gate.tenant_ledger("acme")?;
    assert_eq!(books.committed_microcents, 25_000);
    gate.close()?;
    Ok(())
}

#[test]
fn unit_conversion_is_exact_and_checked() {
    assert_eq!(microunits_to_microcents(0).ok(), Some(0));
    assert_eq!(microunits_to_microcents(1).ok(), Some(100));
    let largest = u64::try_from(i64::MAX / MICROCENTS_PER_MICROUNIT).unwrap_or(0);
    assert_eq!(
        microunits_to_microcents(largest).ok(),
        Some(i64::MAX / 100 * 100)
    );
    for too_big in [largest + 1, u64::try_from(i64::MAX).unwrap_or(0), u64::MAX] {
        assert!(matches!(
            microunits_to_microcents(too_big),
            Err(GateError::CostOverflow { cost_microunits }) if cost_microunits == too_big
        ));
    }
}

#[test]
fn budget_outcomes_round_trip_through_the_request_id() {
    let outcomes = [
        BudgetOutcome::NotRequired,
        BudgetOutcome::Free,
        BudgetOutcome::Reserved { journal_id: 0 },
        BudgetOutcome::Reserved {
            journal_id: u64::MAX,
        },
        BudgetOutcome::Insufficient {
            remaining_microcents: 0,
        },
        BudgetOutcome::Insufficient {
            remaining_microcents: i64::MAX,
        },
        BudgetOutcome::ReservationCapExceeded {
            reserved_microcents: 12_345,
        },
        BudgetOutcome::TooManyOpenReservations,
    ];
    for outcome in outcomes {
        let bytes = outcome.to_request_id();
        assert_eq!(bytes[..4], BUDGET_META_MAGIC);
        assert_eq!(BudgetOutcome::from_request_id(&bytes), Some(outcome));
    }
    // Bytes in another layout are not misread.
    assert_eq!(BudgetOutcome::from_request_id(&[0; 16]), None);
    let mut unknown_code = BudgetOutcome::Free.to_request_id();
    unknown_code[4] = 99;
    assert_eq!(BudgetOutcome::from_request_id(&unknown_code), None);
    let mut stray_value = BudgetOutcome::Free.to_request_id();
    stray_value[15] = 1;
    assert_eq!(BudgetOutcome::from_request_id(&stray_value), None);
    assert_ne!(tenant_number("acme"), tenant_number("globex"));
}

/// The `tracing` feature: one `calybris.gate.decide` span per decision, with the
/// outcome recorded on it.
#[cfg(feature = "tracing")]
mod tracing_spans {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Default)]
    struct Seen {
        next_id: AtomicU64,
        decide_spans: AtomicU64,
        recorded_fields: Mutex<Vec<String>>,
    }

    struct Recorder(Arc<Seen>);

    struct FieldNames<'a>(&'a mut Vec<String>);

    impl Visit for FieldNames<'_> {
        fn record_debug(&mut self, field: &Field, _value: &dyn std::fmt::Debug) {
            self.0.push(field.name().to_owned());
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, _metadata: &Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, span: &Attributes<'_>) -> Id {
            if span.metadata().name() == "calybris.gate.decide" {
                self.0.decide_spans.fetch_add(1, Ordering::Relaxed);
            }
            Id::from_u64(self.0.next_id.fetch_add(1, Ordering::Relaxed) + 1)
        }

        fn record(&self, _span: &Id, values: &Record<'_>) {
            if let Ok(mut fields) = self.0.recorded_fields.lock() {
                values.record(&mut FieldNames(&mut fields));
            }
        }

        fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

        fn event(&self, _event: &Event<'_>) {}

        fn enter(&self, _span: &Id) {}

        fn exit(&self, _span: &Id) {}
    }

    #[test]
    fn every_decision_gets_one_span() -> Result<(), GateError> {
        let tmp = TempDir::new("tracing");
        let gate = Gate::open(GateConfig::new(tmp.path(), policy(1)).tenant("acme", 100 * CENT))?;
        let seen = Arc::new(Seen::default());
        tracing::subscriber::with_default(
            Recorder(Arc::clone(&seen)),
            || -> Result<(), GateError> {
                for sequence in 0..3 {
                    let admission = gate.decide("acme", request(sequence))?;
                    gate.abandon(admission)?;
                }
                Ok(())
            },
        )?;
        gate.close()?;
        assert_eq!(seen.decide_spans.load(Ordering::Relaxed), 3);
        let fields = seen
            .recorded_fields
            .lock()
            .map(|fields| fields.clone())
            .unwrap_or_default();
        for name in [
            "action",
            "reason",
            "cost_microunits",
            "budget",
            "log_sequence",
        ] {
            assert_eq!(
                fields.iter().filter(|field| *field == name).count(),
                3,
                "field {name} recorded once per decision: {fields:?}"
            );
        }
        Ok(())
    }
}

/// Copies the segment files of one log directory (not its lock file).
fn copy_segments(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("the copy's directory is created");
    for entry in std::fs::read_dir(from).expect("the log directory lists") {
        let path = entry.expect("a directory entry reads").path();
        if path.extension().is_some_and(|ext| ext == "cwal") {
            let name = path.file_name().expect("a segment has a file name");
            std::fs::copy(&path, to.join(name)).expect("a segment copies");
        }
    }
}

#[test]
fn the_audit_catches_budget_metadata_that_disagrees_with_the_journal() -> Result<(), GateError> {
    let tmp = TempDir::new("audit");
    let gate = Gate::open(GateConfig::new(tmp.path(), policy(1)).tenant("acme", 100 * CENT))?;
    for sequence in 0..4 {
        let admission = gate.decide("acme", request(sequence))?;
        let estimate = admission.decision().estimated_cost_microunits;
        gate.settle(admission, estimate)?;
    }
    gate.close()?;
    let clean = audit_dir(tmp.path(), None).expect("the directory audits clean");
    assert_eq!(clean.reservations_matched, 4);

    // Rewrite the (unkeyed) decision log with record 2 naming reservation 0, which
    // record 1 names: the chain and every replay still verify, the audit does not.
    let entries = read_log(tmp.path(), None);
    let forged = TempDir::new("audit-forged");
    copy_segments(
        &tmp.path().join(BUDGET_DIR),
        &forged.path().join(BUDGET_DIR),
    );
    let wal = calybris::wal::DurableWal::<AuditRecord>::open(
        &forged.path().join(DECISIONS_DIR),
        calybris::wal::DurableConfig::default(),
    )?;
    for entry in &entries {
        let mut record = entry.record.clone();
        if let AuditRecord::Decision(decision) = &mut record
            && entry.sequence == 2
        {
            decision.meta.request_id = BudgetOutcome::Reserved { journal_id: 0 }.to_request_id();
        }
        let _ = wal.append(&record)?;
    }
    wal.close()?;
    assert_eq!(replay(forged.path(), None).decisions, 4);
    match audit_dir(forged.path(), None) {
        Err(GateAuditError::ReservationMismatch {
            log_sequence,
            journal_id,
            problem,
        }) => {
            assert_eq!((log_sequence, journal_id), (2, 0));
            assert_eq!(problem, ReservationProblem::Duplicate);
        }
        other => panic!("the forged metadata was not caught: {other:?}"),
    }
    Ok(())
}

#[test]
fn overruns_are_committed_and_reported() -> Result<(), GateError> {
    let tmp = TempDir::new("overrun");
    let estimate = policy(1).prescribe(request(0)).estimated_cost_microunits;
    let held = microunits_to_microcents(estimate)?;
    // Room for the hold plus a little: the first overrun fits, a second does not.
    let gate = Gate::open(GateConfig::new(tmp.path(), policy(1)).tenant("acme", 3 * held))?;

    let admission = gate.decide("acme", request(0))?;
    let settlement = gate.settle(admission, estimate + 10)?;
    assert_eq!(
        settlement.committed_microcents,
        held + 10 * MICROCENTS_PER_MICROUNIT
    );
    assert_eq!(settlement.overrun_microcents, 10 * MICROCENTS_PER_MICROUNIT);

    let admission = gate.decide("acme", request(1))?;
    assert!(admission.is_admitted());
    // Three estimates: the excess (two) is more than the tenant has left.
    let refused = gate.settle(admission, estimate * 3);
    assert!(
        matches!(
            refused,
            Err(GateError::Ledger(calybris::finance::LedgerError::Budget(
                calybris::budget::BudgetError::Insufficient { .. }
            )))
        ),
        "{refused:?}"
    );
    let books = gate.tenant_ledger("acme")?;
    assert_eq!(books.reserved_microcents, 0, "the refused hold is released");
    assert_eq!(
        books.committed_microcents,
        held + 10 * MICROCENTS_PER_MICROUNIT
    );
    gate.ledger()
        .verify_conservation()
        .expect("the books balance");
    gate.close()?;
    Ok(())
}

#[test]
fn a_second_gate_on_the_same_directory_and_a_wrong_key_are_refused() -> Result<(), GateError> {
    let tmp = TempDir::new("exclusive");
    let key = WalKey::new(&[1u8; 32]).expect("a 32-byte key is accepted");
    let config = || GateConfig::new(tmp.path(), policy(1)).tenant("acme", CENT);
    let gate = Gate::open(config().key(key.clone()))?;
    assert!(matches!(
        Gate::open(config().key(key.clone())),
        Err(GateError::DecisionLog(_))
    ));
    gate.close()?;

    let other = WalKey::new(&[2u8; 32]).expect("a 32-byte key is accepted");
    assert!(matches!(
        Gate::open(config().key(other)),
        Err(GateError::DecisionLog(_))
    ));
    assert!(matches!(
        Gate::open(config()),
        Err(GateError::DecisionLog(_))
    ));
    // The right key still opens it.
    Gate::open(config().key(key))?.close()?;
    Ok(())
}
