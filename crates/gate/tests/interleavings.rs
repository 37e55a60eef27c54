//! A seeded deterministic simulation of the gate's ordering rule over every kind of
//! interleaving: threads reserve in memory before their records get a position in the
//! log, so the in-memory order and the log order differ. The rule the gate follows:
//! an operation that takes budget takes it in memory before its record is appended;
//! one that frees budget frees it only after its record is placed. The simulation
//! splits every operation into those steps, lets a seeded scheduler interleave the
//! steps of many simulated threads, and folds the resulting log with the real
//! [`calybris_gate::Books`] (the verifier's own fold): it must never see an overspend,
//! and at quiescence the in-memory books must equal the fold of the log.
//!
//! The opposite order (free in memory before appending) is simulated too, and must
//! be caught overspending for some seed: the check has teeth.

mod common;

use calybris_digest::{decision_digest, input_digest};
use calybris_gate::record::{GateDecision, LogHeader, SettlementRecord, TenantCreated, TopUp};
use calybris_gate::{
    Books, BooksError, BudgetOutcome, GATE_FORMAT_VERSION, GateRecord, SettlementKind,
};
use calybris_kernel::{KernelAction, KernelDecision, KernelInput, KernelReason};
use calybris_wal::{DecisionMeta, DecisionRecord};
use common::{Rng, seed};

const TENANT: &str = "t";
const BUDGET: i64 = 1_000;

/// The order in which a freeing operation touches memory and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The gate's rule: free after the record is placed.
    FreeAfterPosition,
    /// The wrong rule: free before the record is placed.
    FreeBeforePosition,
}

/// What a free in memory gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Free {
    /// The unspent part of a hold returns to the spendable budget.
    Refund,
    /// A top-up grows the budget.
    TopUp,
}

/// One step a simulated thread still has to do.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Try to take `amount` from the spendable budget in memory.
    MemTake(i64),
    /// Append the decision record of the last take (reserved, or refused).
    AppendDecision(i64),
    /// Append the settlement of the thread's open hold.
    AppendSettle(SettleKind),
    /// Give `amount` back in memory.
    MemFree(i64, Free),
    /// Append a top-up record.
    AppendTopUp(i64),
}

#[derive(Debug, Clone, Copy)]
enum SettleKind {
    Commit(i64),
    Overrun(i64),
    Release,
}

#[derive(Debug, Default)]
struct Thread {
    steps: std::collections::VecDeque<Step>,
    /// The thread's open decision (sequence, amount held), once appended.
    open: Option<(u64, i64)>,
    /// Whether the last `MemTake` succeeded.
    took: bool,
}

struct Sim {
    rule: Rule,
    mem_remaining: i64,
    mem_reserved: i64,
    mem_committed: i64,
    mem_initial: i64,
    log: Vec<GateRecord>,
}

fn decision_record(sequence: u64, cost: i64, reserved: bool) -> GateRecord {
    let input = KernelInput {
        request_sequence: sequence,
        requested_model_id: 1,
        input_tokens: 1,
        ..KernelInput::default()
    };
    let decision = KernelDecision {
        request_sequence: sequence,
        action: KernelAction::ExecuteRequested,
        reason: KernelReason::RequestedModelMaximizesUtility,
        selected_model_id: 1,
        selected_model_index: 0,
        estimated_cost_microunits: cost.unsigned_abs(),
        expected_utility_microunits: 1,
        counterfactual_model_id: 0,
        counterfactual_utility_microunits: 0,
        evaluated_models: 1,
        eligible_models: 1,
        policy_epoch: 0,
        catalog_epoch: 0,
    };
    GateRecord::Decision(GateDecision {
        audit: DecisionRecord {
            input,
            decision,
            policy_digest: calybris_digest::Digest::from([0; 32]),
            input_digest: input_digest(&input),
            decision_digest: decision_digest(&decision),
            meta: DecisionMeta::default(),
        },
        tenant: TENANT.into(),
        budget: if reserved {
            BudgetOutcome::Reserved {
                amount_microunits: cost.unsigned_abs(),
            }
        } else {
            BudgetOutcome::Insufficient {
                remaining_microunits: 0,
            }
        },
        adaptive: None,
    })
}

impl Sim {
    fn new(rule: Rule) -> Self {
        Self {
            rule,
            mem_remaining: BUDGET,
            mem_reserved: 0,
            mem_committed: 0,
            mem_initial: BUDGET,
            log: vec![
                GateRecord::Header(LogHeader {
                    format_version: GATE_FORMAT_VERSION,
                }),
                GateRecord::TenantCreated(TenantCreated {
                    tenant: TENANT.into(),
                    initial_microunits: BUDGET.unsigned_abs(),
                }),
            ],
        }
    }

    /// Plans the next operation of a thread that has nothing left to do.
    fn plan(&self, thread: &mut Thread, rng: &mut Rng) {
        if let Some((_, held)) = thread.open {
            match rng.below(3) {
                0 => {
                    let actual = rng.below(held.unsigned_abs() + 1) as i64;
                    self.freeing(
                        thread,
                        Step::AppendSettle(SettleKind::Commit(actual)),
                        held - actual,
                        Free::Refund,
                    );
                }
                1 => {
                    // Takes budget (the excess): take first, then append.
                    let actual = held + 1 + rng.below(40) as i64;
                    thread.steps.push_back(Step::MemTake(actual - held));
                    thread
                        .steps
                        .push_back(Step::AppendSettle(SettleKind::Overrun(actual)));
                }
                _ => self.freeing(
                    thread,
                    Step::AppendSettle(SettleKind::Release),
                    held,
                    Free::Refund,
                ),
            }
        } else if rng.below(20) == 0 {
            let amount = 1 + rng.below(200) as i64;
            self.freeing(thread, Step::AppendTopUp(amount), amount, Free::TopUp);
        } else {
            let amount = 1 + rng.below(300) as i64;
            thread.steps.push_back(Step::MemTake(amount));
            thread.steps.push_back(Step::AppendDecision(amount));
        }
    }

    /// Queues a freeing operation's two steps in the order the rule says.
    fn freeing(&self, thread: &mut Thread, append: Step, amount: i64, free: Free) {
        let free = Step::MemFree(amount, free);
        let (first, second) = match self.rule {
            Rule::FreeAfterPosition => (append, free),
            Rule::FreeBeforePosition => (free, append),
        };
        thread.steps.push_back(first);
        thread.steps.push_back(second);
    }

    fn run(&mut self, thread: &mut Thread, step: Step) {
        match step {
            Step::MemTake(amount) => {
                thread.took = self.mem_remaining >= amount;
                if thread.took {
                    self.mem_remaining -= amount;
                    self.mem_reserved += amount;
                }
            }
            Step::AppendDecision(amount) => {
                let sequence = self.log.len() as u64;
                self.log
                    .push(decision_record(sequence, amount, thread.took));
                if thread.took {
                    thread.open = Some((sequence, amount));
                }
            }
            Step::AppendSettle(kind) => {
                let Some((sequence, held)) = thread.open.take() else {
                    return;
                };
                let kind = match kind {
                    SettleKind::Commit(actual) => {
                        // The refund itself is the MemFree step; the spend moves now.
                        self.mem_reserved -= actual;
                        self.mem_committed += actual;
                        SettlementKind::Commit {
                            actual_microunits: actual.unsigned_abs(),
                        }
                    }
                    SettleKind::Overrun(actual) if thread.took => {
                        // The take moved the excess into `reserved`: all of it is spent.
                        self.mem_reserved -= actual;
                        self.mem_committed += actual;
                        SettlementKind::CommitWithOverrun {
                            actual_microunits: actual.unsigned_abs(),
                        }
                    }
                    SettleKind::Overrun(_) => {
                        // The excess was not covered: commit the hold exactly instead.
                        self.mem_reserved -= held;
                        self.mem_committed += held;
                        SettlementKind::Commit {
                            actual_microunits: held.unsigned_abs(),
                        }
                    }
                    SettleKind::Release => SettlementKind::Release,
                };
                self.log.push(GateRecord::Settlement(SettlementRecord {
                    decision_sequence: sequence,
                    tenant: TENANT.into(),
                    kind,
                }));
            }
            Step::MemFree(amount, Free::Refund) => {
                self.mem_reserved -= amount;
                self.mem_remaining += amount;
            }
            Step::MemFree(amount, Free::TopUp) => {
                self.mem_initial += amount;
                self.mem_remaining += amount;
            }
            Step::AppendTopUp(amount) => {
                self.log.push(GateRecord::TopUp(TopUp {
                    tenant: TENANT.into(),
                    amount_microunits: amount.unsigned_abs(),
                }));
            }
        }
    }
}

/// Runs one seeded simulation: `threads` simulated threads, `operations` operations in
/// all, steps interleaved at random. The first problem, if any.
fn simulate(rule: Rule, seed: u64, threads: usize, operations: usize) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let mut sim = Sim::new(rule);
    let mut workers: Vec<Thread> = (0..threads).map(|_| Thread::default()).collect();
    let mut planned = 0;
    loop {
        let ready: Vec<usize> = (0..threads)
            .filter(|index| !workers[*index].steps.is_empty() || planned < operations)
            .collect();
        if ready.is_empty() {
            break;
        }
        let index = ready[rng.below(ready.len() as u64) as usize];
        let worker = &mut workers[index];
        if worker.steps.is_empty() {
            sim.plan(worker, &mut rng);
            planned += 1;
        }
        if let Some(step) = worker.steps.pop_front() {
            sim.run(worker, step);
        }
    }
    let mut books = Books::new();
    for (sequence, record) in sim.log.iter().enumerate() {
        books
            .apply(sequence as u64, record)
            .map_err(|error: BooksError| format!("record {sequence}: {error}"))?;
    }
    let row = books.tenant(TENANT).ok_or("no tenant")?;
    if row.remaining_microunits != sim.mem_remaining
        || row.committed_microunits != sim.mem_committed
        || row.initial_microunits != sim.mem_initial
        || row.reserved_microunits != sim.mem_reserved
    {
        return Err(format!(
            "memory and log disagree at quiescence: log {row:?}; memory remaining {}, reserved {}, committed {}, initial {}",
            sim.mem_remaining, sim.mem_reserved, sim.mem_committed, sim.mem_initial
        ));
    }
    Ok(())
}

#[test]
fn the_log_order_never_overspends_under_the_gate_rule() {
    let base = seed(0x0be_0b5e);
    for run in 0..400 {
        let seed = base.wrapping_add(run);
        if let Err(problem) = simulate(Rule::FreeAfterPosition, seed, 8, 400) {
            panic!("seed {seed:#x}: {problem}");
        }
    }
}

#[test]
fn freeing_before_the_position_is_caught_overspending() {
    let base = seed(0x0be_0b5e);
    let caught = (0..400).find(|run| {
        let seed = base.wrapping_add(*run);
        simulate(Rule::FreeBeforePosition, seed, 8, 400)
            .is_err_and(|problem| problem.contains("would overspend"))
    });
    assert!(
        caught.is_some(),
        "400 seeds from {base:#x} never showed the wrong order overspending"
    );
}
