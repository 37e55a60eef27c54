//! Property tests of the log fold on hostile record sequences: any record, valid or
//! not, either folds into books that still balance, or is refused with the books left
//! exactly as they were; and the fold agrees with a small reference model of the
//! rules written independently here.

mod common;

use std::collections::HashMap;

use calybris_gate::record::{LogHeader, SettlementRecord, TenantCreated, TopUp};
use calybris_gate::{Books, BudgetOutcome, GATE_FORMAT_VERSION, GateRecord, SettlementKind};
use proptest::prelude::*;

const TENANTS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Create(usize, u64),
    TopUp(usize, u64),
    Decide {
        tenant: usize,
        cost: u64,
        selection: bool,
        outcome: u8,
    },
    Settle {
        decision: usize,
        tenant: usize,
        kind: u8,
        actual: u64,
    },
    Snapshot {
        tamper: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..2_000u64).prop_map(|(t, a)| Op::Create(t, a)),
        (0..3usize, 0..500u64).prop_map(|(t, a)| Op::TopUp(t, a)),
        (0..3usize, 0..600u64, any::<bool>(), 0..6u8).prop_map(
            |(tenant, cost, selection, outcome)| Op::Decide {
                tenant,
                cost,
                selection,
                outcome
            }
        ),
        (0..40usize, 0..3usize, 0..5u8, 0..800u64).prop_map(|(decision, tenant, kind, actual)| {
            Op::Settle {
                decision,
                tenant,
                kind,
                actual,
            }
        }),
        any::<bool>().prop_map(|tamper| Op::Snapshot { tamper }),
    ]
}

/// The reference model: per tenant (remaining, reserved, committed, initial), and
/// the open holds (sequence -> tenant, held).
#[derive(Debug, Default, Clone)]
struct Model {
    tenants: HashMap<String, [i64; 4]>,
    open: HashMap<u64, (String, i64)>,
}

impl Model {
    /// Applies a record by the written rules; `false` when the rules refuse it.
    fn apply(&mut self, sequence: u64, record: &GateRecord) -> bool {
        match record {
            GateRecord::Header(_)
            | GateRecord::Policy(_)
            | GateRecord::Outcome(_)
            | GateRecord::PolicyNames(_)
            | GateRecord::Execution(_)
            | GateRecord::LeaseRefused(_)
            | GateRecord::Promotion(_)
            | GateRecord::Checkpoint(_)
            | GateRecord::Staged(_)
            | GateRecord::Unstaged(_)
            | GateRecord::EngineSnapshot(_)
            | GateRecord::AdaptiveSetup(_)
            | GateRecord::EngineState(_)
            | GateRecord::EnginePending(_)
            | GateRecord::LimitsChanged(_) => true,
            // Budget nodes are not generated here (tests/windows.rs covers them).
            GateRecord::BudgetDefined(_)
            | GateRecord::WindowReset(_)
            | GateRecord::AlertFired(_)
            | GateRecord::BudgetTopUp(_) => false,
            GateRecord::TenantCreated(c) => {
                if self.tenants.contains_key(&c.tenant) {
                    return false;
                }
                let i = c.initial_microunits as i64;
                self.tenants.insert(c.tenant.clone(), [i, 0, 0, i]);
                true
            }
            GateRecord::TopUp(t) => match self.tenants.get_mut(&t.tenant) {
                Some(row) if t.amount_microunits > 0 => {
                    row[0] += t.amount_microunits as i64;
                    row[3] += t.amount_microunits as i64;
                    true
                }
                _ => false,
            },
            GateRecord::Decision(d) => {
                let Some(row) = self.tenants.get_mut(&d.tenant) else {
                    return false;
                };
                let cost = d.audit.decision.estimated_cost_microunits;
                let selection = d.audit.decision.is_selection();
                match d.budget {
                    BudgetOutcome::RejectedByKernel => !selection,
                    BudgetOutcome::NotPriced => {
                        if !selection || cost != 0 {
                            return false;
                        }
                        self.open.insert(sequence, (d.tenant.clone(), 0));
                        true
                    }
                    BudgetOutcome::Reserved { amount_microunits } => {
                        let held = amount_microunits as i64;
                        if !selection || cost == 0 || amount_microunits != cost || row[0] < held {
                            return false;
                        }
                        row[0] -= held;
                        row[1] += held;
                        self.open.insert(sequence, (d.tenant.clone(), held));
                        true
                    }
                    _ => selection && cost > 0,
                }
            }
            GateRecord::Settlement(s) => {
                let Some((tenant, held)) = self.open.get(&s.decision_sequence).cloned() else {
                    return false;
                };
                if tenant != s.tenant {
                    return false;
                }
                let row = self
                    .tenants
                    .get_mut(&tenant)
                    .expect("an open hold's tenant");
                match s.kind {
                    SettlementKind::Commit { actual_microunits } => {
                        let actual = actual_microunits as i64;
                        if actual > held {
                            return false;
                        }
                        row[1] -= held;
                        row[2] += actual;
                        row[0] += held - actual;
                    }
                    SettlementKind::CommitWithOverrun { actual_microunits } => {
                        let actual = actual_microunits as i64;
                        if actual <= held || row[0] < actual - held {
                            return false;
                        }
                        row[0] -= actual - held;
                        row[1] -= held;
                        row[2] += actual;
                    }
                    _ => {
                        row[1] -= held;
                        row[0] += held;
                    }
                }
                self.open.remove(&s.decision_sequence);
                true
            }
            GateRecord::BookSnapshot(_) => true, // checked against `Books` itself below
        }
    }
}

fn settlement_kind(kind: u8, actual: u64) -> SettlementKind {
    match kind {
        0 => SettlementKind::Commit {
            actual_microunits: actual,
        },
        1 => SettlementKind::CommitWithOverrun {
            actual_microunits: actual,
        },
        2 => SettlementKind::Release,
        3 => SettlementKind::Abandon,
        _ => SettlementKind::ReleasedAtReopen,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 512 }, ..ProptestConfig::default() })]

    #[test]
    fn any_record_folds_into_balanced_books_or_leaves_them_untouched(ops in proptest::collection::vec(op(), 1..80)) {
        let mut books = Books::new();
        books.apply(0, &GateRecord::Header(LogHeader { format_version: GATE_FORMAT_VERSION })).expect("header");
        let mut model = Model::default();
        let mut decisions: Vec<u64> = Vec::new();
        let mut sequence = 1_u64;
        for op in ops {
            let record = match op {
                Op::Create(t, initial) => GateRecord::TenantCreated(TenantCreated { tenant: TENANTS[t].into(), initial_microunits: initial }),
                Op::TopUp(t, amount) => GateRecord::TopUp(TopUp { tenant: TENANTS[t].into(), amount_microunits: amount }),
                Op::Decide { tenant, cost, selection, outcome } => {
                    let budget = match outcome {
                        0 => BudgetOutcome::RejectedByKernel,
                        1 => BudgetOutcome::NotPriced,
                        2 | 3 => BudgetOutcome::Reserved { amount_microunits: if outcome == 2 { cost } else { cost + 1 } },
                        4 => BudgetOutcome::Insufficient { remaining_microunits: 0 },
                        _ => BudgetOutcome::TooManyOpenReservations,
                    };
                    decisions.push(sequence);
                    common::synthetic_decision(sequence, TENANTS[tenant], cost, selection, budget)
                }
                Op::Settle { decision, tenant, kind, actual } => GateRecord::Settlement(SettlementRecord {
                    decision_sequence: decisions.get(decision).copied().unwrap_or(u64::MAX),
                    tenant: TENANTS[tenant].into(),
                    kind: settlement_kind(kind, actual),
                }),
                Op::Snapshot { tamper } => {
                    let mut snapshot = books.snapshot(calybris_digest::Digest::from([0; 32]));
                    if tamper && let Some(row) = snapshot.tenants.first_mut() {
                        row.committed_microunits += 1;
                        row.remaining_microunits -= 1;
                    }
                    let record = GateRecord::BookSnapshot(snapshot);
                    let before = books.clone();
                    let result = books.apply(sequence, &record);
                    prop_assert_eq!(result.is_ok(), !tamper || before.tenants().is_empty());
                    if result.is_err() {
                        prop_assert_eq!(&books, &before);
                    } else {
                        // The policy record a snapshot names comes next.
                        sequence += 1;
                        let policy = calybris_digest::SealedPolicy::new(
                            calybris_kernel::PolicySnapshot::builder()
                                .model(calybris_kernel::KernelModel {
                                    model_id: 1,
                                    provider_id: 0,
                                    quality_bps: 9_000,
                                    risk_ceiling_bps: 9_000,
                                    enabled: 1,
                                    p95_latency_ms: 100,
                                    capabilities: 0,
                                    region_mask: 1,
                                    input_cost_microunits_per_million_tokens: 1,
                                    output_cost_microunits_per_million_tokens: 1,
                                })
                                .build()
                                .expect("valid policy"),
                        );
                        // The fold checks the digest a snapshot names (the replay checks
                        // that a policy record's digest is its snapshot's).
                        let named = calybris_wal::PolicyRecord { policy_digest: calybris_digest::Digest::from([0; 32]), policy };
                        let mut other = named.clone();
                        other.policy_digest[0] = 1;
                        let before = books.clone();
                        prop_assert!(books.apply(sequence, &GateRecord::Policy(other)).is_err());
                        prop_assert_eq!(&books, &before);
                        prop_assert!(books.apply(sequence, &GateRecord::Policy(named)).is_ok());
                    }
                    sequence += 1;
                    continue;
                }
            };
            let before = books.clone();
            let accepted_by_model = model.clone().apply(sequence, &record);
            match books.apply(sequence, &record) {
                Ok(()) => {
                    prop_assert!(accepted_by_model, "the fold accepted what the rules refuse: {:?}", record);
                    model.apply(sequence, &record);
                    for row in books.tenants() {
                        prop_assert_eq!(row.conservation_delta_microunits(), 0);
                        prop_assert!(row.remaining_microunits >= 0 && row.reserved_microunits >= 0);
                        let expected = model.tenants[&row.tenant];
                        prop_assert_eq!([row.remaining_microunits, row.reserved_microunits, row.committed_microunits, row.initial_microunits], expected);
                    }
                }
                Err(_) => {
                    prop_assert!(!accepted_by_model, "the fold refused what the rules accept: {:?}", record);
                    prop_assert_eq!(&books, &before);
                }
            }
            sequence += 1;
        }
    }
}
