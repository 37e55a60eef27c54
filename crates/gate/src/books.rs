//! The budget books as a pure function of the log: [`Books::apply`] folds one record
//! at a time, in log order, and refuses any record that would break the books. The
//! gate rebuilds its in-memory engine from it on open, and the verifier runs the very
//! same fold, so the two can never disagree about what a log means.
//!
//! Rules (see docs/ARCHITECTURE.md, "The one log"):
//! - after every record, for every tenant, `remaining + reserved + committed ==
//!   initial`, and no balance is negative;
//! - a decision logged as [`BudgetOutcome::Reserved`] holds exactly its estimated cost,
//!   and only if the tenant's spendable budget covers it in log order;
//! - a settlement names an open, admitted decision of the same tenant, once, and spends
//!   more than the hold only through [`SettlementKind::CommitWithOverrun`], whose
//!   excess the spendable budget must cover.

use std::collections::{BTreeMap, HashMap};

use calybris_budget::{BudgetSnapshot, TenantLedger};
use calybris_kernel::KernelDecision;

use crate::record::{
    BookSnapshot, BudgetOutcome, GATE_FORMAT_VERSION, GateDecision, GateRecord, LimitsChanged,
    MAX_TENANT_NAME_BYTES, OpenHold, SettlementKind, SettlementRecord, SnapshotTenant,
    TenantCreated, TopUp,
};

/// One tenant's books, in microunits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TenantBooks {
    /// The tenant's name.
    pub tenant: String,
    /// Every amount ever granted: the opening budget plus all top-ups.
    pub initial_microunits: i64,
    /// Spendable now.
    pub remaining_microunits: i64,
    /// Held by open reservations.
    pub reserved_microunits: i64,
    /// Spent over the tenant's lifetime.
    pub committed_microunits: i64,
    /// The cap on open holds, if any.
    pub max_reserved_microunits: Option<u64>,
    /// The cap on open reservations, if any.
    pub max_open_reservations: Option<u64>,
}

impl TenantBooks {
    fn new(tenant: String, initial_microunits: i64) -> Self {
        Self {
            tenant,
            initial_microunits,
            remaining_microunits: initial_microunits,
            reserved_microunits: 0,
            committed_microunits: 0,
            max_reserved_microunits: None,
            max_open_reservations: None,
        }
    }

    /// `remaining + reserved + committed - initial`, exact; zero when the row balances.
    #[must_use]
    pub fn conservation_delta_microunits(&self) -> i128 {
        i128::from(self.remaining_microunits)
            + i128::from(self.reserved_microunits)
            + i128::from(self.committed_microunits)
            - i128::from(self.initial_microunits)
    }

    fn balances(&self) -> bool {
        self.conservation_delta_microunits() == 0
            && self.remaining_microunits >= 0
            && self.reserved_microunits >= 0
            && self.committed_microunits >= 0
    }
}

/// An open hold: an admitted decision not settled yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The tenant's index in the books.
    pub tenant_index: u32,
    /// The amount held, in microunits.
    pub held_microunits: i64,
}

/// Why a record cannot be applied to the books. Each names what is wrong; the record's
/// sequence number travels with it in [`crate::VerifyError`] and [`crate::GateError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BooksError {
    /// The log does not start with a gate header of a known version.
    #[error("the log does not start with a gate header of a known version (found {found})")]
    BadHeader {
        /// What the first record was, or the unknown version.
        found: String,
    },
    /// A header record appears after the first record.
    #[error("a gate header appears after the start of the log")]
    MisplacedHeader,
    /// A record names a tenant the books do not hold.
    #[error("unknown tenant {tenant:?}")]
    UnknownTenant {
        /// The name.
        tenant: String,
    },
    /// A tenant is created twice.
    #[error("tenant {tenant:?} is created a second time")]
    DuplicateTenant {
        /// The name.
        tenant: String,
    },
    /// A tenant name is empty or longer than [`MAX_TENANT_NAME_BYTES`].
    #[error("invalid tenant name of {len_bytes} bytes")]
    InvalidTenantName {
        /// Its length.
        len_bytes: usize,
    },
    /// An amount does not fit the books' `i64`, or a top-up is zero.
    #[error("amount {amount_microunits} microunits is out of range")]
    AmountOutOfRange {
        /// The amount.
        amount_microunits: u64,
    },
    /// A decision's budget outcome does not fit its kernel decision.
    #[error("budget outcome {outcome:?} does not fit the decision ({why})")]
    OutcomeMismatch {
        /// The logged outcome.
        outcome: BudgetOutcome,
        /// What does not fit.
        why: &'static str,
    },
    /// A reservation in log order exceeds the tenant's spendable budget.
    #[error(
        "tenant {tenant:?} would overspend: {amount_microunits} microunits held with {remaining_microunits} spendable"
    )]
    Overspend {
        /// The tenant.
        tenant: String,
        /// The amount the record takes.
        amount_microunits: i64,
        /// What was spendable in log order.
        remaining_microunits: i64,
    },
    /// A settlement names no open, admitted decision (unknown, refused, or settled already).
    #[error("settlement of decision {decision_sequence}, which is not an open admitted decision")]
    SettlementUnknownDecision {
        /// The sequence it names.
        decision_sequence: u64,
    },
    /// A settlement names a decision of another tenant.
    #[error(
        "settlement of decision {decision_sequence} names tenant {named:?}, the decision's is {actual:?}"
    )]
    SettlementWrongTenant {
        /// The decision.
        decision_sequence: u64,
        /// The tenant the settlement names.
        named: String,
        /// The decision's tenant.
        actual: String,
    },
    /// A plain commit spends more than the hold, or an overrun commit does not exceed it.
    #[error(
        "settlement of decision {decision_sequence}: {actual_microunits} microunits against a hold of {held_microunits} is not a valid {kind}"
    )]
    SettlementExceedsHold {
        /// The decision.
        decision_sequence: u64,
        /// The hold.
        held_microunits: i64,
        /// The amount spent.
        actual_microunits: u64,
        /// `commit` or `overrun`.
        kind: &'static str,
    },
    /// A book snapshot disagrees with the books rebuilt from the records before it.
    #[error("the book snapshot disagrees with the books rebuilt from the log: {what}")]
    SnapshotMismatch {
        /// The first difference.
        what: String,
    },
    /// A budget-node record (hierarchy, scope, window, alert) does not fit.
    #[error(transparent)]
    Windows(#[from] crate::windows::WindowError),
    /// The books do not balance after a record (a bug, or an edited log).
    #[error(
        "tenant {tenant:?} does not balance (remaining + reserved + committed - initial = {delta_microunits})"
    )]
    Unbalanced {
        /// The tenant.
        tenant: String,
        /// The difference.
        delta_microunits: i128,
    },
}

/// The books, folded from the log one record at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Books {
    tenants: Vec<TenantBooks>,
    index: HashMap<String, u32>,
    open: BTreeMap<u64, Hold>,
    records: u64,
    header_seen: bool,
    /// Set by a book snapshot: the next record must be the policy record it names.
    policy_due: Option<calybris_digest::Digest>,
    /// The budget nodes' books, per window (records 13 to 16 and decision scopes).
    windows: crate::windows::WindowFold,
}

fn amount(amount_microunits: u64) -> Result<i64, BooksError> {
    i64::try_from(amount_microunits).map_err(|_| BooksError::AmountOutOfRange { amount_microunits })
}

fn check_name(tenant: &str) -> Result<(), BooksError> {
    if tenant.is_empty() || tenant.len() > MAX_TENANT_NAME_BYTES {
        return Err(BooksError::InvalidTenantName {
            len_bytes: tenant.len(),
        });
    }
    Ok(())
}

impl Books {
    /// Empty books, expecting the log's header first.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Books that start from a snapshot (verification from a retained suffix, which
    /// begins at a snapshot record).
    ///
    /// # Errors
    /// [`BooksError::SnapshotMismatch`] when the snapshot is not well formed (tenants
    /// out of order or repeated, a row that does not balance, a hold naming no tenant).
    pub fn from_snapshot(snapshot: &BookSnapshot) -> Result<Self, BooksError> {
        let bad = |what: &str| BooksError::SnapshotMismatch {
            what: what.to_owned(),
        };
        if snapshot.format_version != GATE_FORMAT_VERSION {
            return Err(bad("unknown format version"));
        }
        let mut books = Self {
            header_seen: true,
            policy_due: Some(snapshot.policy_digest),
            ..Self::default()
        };
        for (position, row) in snapshot.tenants.iter().enumerate() {
            check_name(&row.tenant)?;
            if position > 0
                && snapshot.tenants[position - 1].tenant.as_bytes() >= row.tenant.as_bytes()
            {
                return Err(bad("tenants out of order or repeated"));
            }
            let tenant = TenantBooks {
                tenant: row.tenant.clone(),
                initial_microunits: row.initial_microunits,
                remaining_microunits: row.remaining_microunits,
                reserved_microunits: row.reserved_microunits,
                committed_microunits: row.committed_microunits,
                max_reserved_microunits: row.max_reserved_microunits,
                max_open_reservations: row.max_open_reservations,
            };
            if !tenant.balances() {
                return Err(bad("a tenant row does not balance"));
            }
            let index = u32::try_from(position).map_err(|_| bad("too many tenants"))?;
            books.index.insert(row.tenant.clone(), index);
            books.tenants.push(tenant);
        }
        let mut held_by_tenant = vec![0_i128; books.tenants.len()];
        for hold in &snapshot.open {
            let slot = usize::try_from(hold.tenant_index)
                .ok()
                .and_then(|index| held_by_tenant.get_mut(index))
                .ok_or_else(|| bad("a hold names no tenant"))?;
            let held_microunits = amount(hold.held_microunits)?;
            *slot += i128::from(held_microunits);
            if books
                .open
                .insert(
                    hold.decision_sequence,
                    Hold {
                        tenant_index: hold.tenant_index,
                        held_microunits,
                    },
                )
                .is_some()
            {
                return Err(bad("a hold is listed twice"));
            }
        }
        for (tenant, held) in books.tenants.iter().zip(&held_by_tenant) {
            if i128::from(tenant.reserved_microunits) != *held {
                return Err(bad("a tenant's reserved total is not the sum of its holds"));
            }
        }
        books.windows = crate::windows::WindowFold::from_snapshot(
            &snapshot.budget_nodes,
            &snapshot.budget_holds,
        )?;
        for hold in &snapshot.budget_holds {
            // A budget-node hold is one of the tenant holds, of the same amount.
            match books.open.get(&hold.decision_sequence) {
                Some(open) if open.held_microunits.unsigned_abs() == hold.held_microunits => {}
                _ => return Err(bad("a budget-node hold is not an open hold of that amount")),
            }
        }
        Ok(books)
    }

    /// The policy record the next record must be, when the last record was a book
    /// snapshot (a log cut right after one: its writer appends the policy first).
    #[must_use]
    pub fn policy_due(&self) -> Option<calybris_digest::Digest> {
        self.policy_due
    }

    /// Records applied so far.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Every tenant, in creation order.
    #[must_use]
    pub fn tenants(&self) -> &[TenantBooks] {
        &self.tenants
    }

    /// One tenant's books.
    #[must_use]
    pub fn tenant(&self, tenant: &str) -> Option<&TenantBooks> {
        self.index
            .get(tenant)
            .and_then(|index| self.tenants.get(*index as usize))
    }

    /// The budget nodes' books, per window.
    #[must_use]
    pub fn windows(&self) -> &crate::windows::WindowFold {
        &self.windows
    }

    /// The open holds, by decision sequence.
    #[must_use]
    pub fn open_holds(&self) -> &BTreeMap<u64, Hold> {
        &self.open
    }

    /// The name of the tenant at `index`.
    #[must_use]
    pub fn tenant_name(&self, index: u32) -> Option<&str> {
        self.tenants
            .get(index as usize)
            .map(|tenant| tenant.tenant.as_str())
    }

    fn tenant_index(&self, tenant: &str) -> Result<u32, BooksError> {
        self.index
            .get(tenant)
            .copied()
            .ok_or_else(|| BooksError::UnknownTenant {
                tenant: tenant.to_owned(),
            })
    }

    fn row_mut(&mut self, index: u32) -> &mut TenantBooks {
        // Indexes come from `self.index` or from holds made from it: always in range.
        let len = self.tenants.len();
        debug_assert!((index as usize) < len);
        &mut self.tenants[(index as usize).min(len.saturating_sub(1))]
    }

    fn check_balanced(&self, index: u32) -> Result<(), BooksError> {
        let row = &self.tenants[index as usize];
        if row.balances() {
            Ok(())
        } else {
            Err(BooksError::Unbalanced {
                tenant: row.tenant.clone(),
                delta_microunits: row.conservation_delta_microunits(),
            })
        }
    }

    /// Applies the record at `sequence`. On error the books are unchanged.
    ///
    /// # Errors
    /// The [`BooksError`] that says why the record cannot follow the ones before it.
    pub fn apply(&mut self, sequence: u64, record: &GateRecord) -> Result<(), BooksError> {
        if !self.header_seen {
            match record {
                GateRecord::Header(header) if header.format_version == GATE_FORMAT_VERSION => {
                    self.header_seen = true;
                    self.records += 1;
                    return Ok(());
                }
                GateRecord::Header(header) => {
                    return Err(BooksError::BadHeader {
                        found: format!("format version {}", header.format_version),
                    });
                }
                other => {
                    return Err(BooksError::BadHeader {
                        found: other.kind().to_owned(),
                    });
                }
            }
        }
        if let Some(due) = self.policy_due {
            match record {
                GateRecord::Policy(policy) if policy.policy_digest == due => {}
                _ => {
                    return Err(BooksError::SnapshotMismatch {
                        what: "the snapshot is not followed by the policy record it names"
                            .to_owned(),
                    });
                }
            }
        }
        let touched = match record {
            GateRecord::Header(_) => return Err(BooksError::MisplacedHeader),
            GateRecord::Policy(_)
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
            | GateRecord::EnginePending(_) => None,
            GateRecord::BudgetDefined(record) => {
                self.windows.define(record)?;
                None
            }
            GateRecord::WindowReset(record) => {
                self.windows.reset(record)?;
                None
            }
            GateRecord::AlertFired(record) => {
                self.windows.alert(record)?;
                None
            }
            GateRecord::BudgetTopUp(record) => {
                self.windows.top_up(record)?;
                None
            }
            GateRecord::TenantCreated(created) => Some(self.create(created)?),
            GateRecord::TopUp(top_up) => Some(self.top_up(top_up)?),
            GateRecord::LimitsChanged(limits) => Some(self.limits(limits)?),
            GateRecord::Decision(decision) => self.decide(sequence, decision)?,
            GateRecord::Settlement(settlement) => Some(self.settle(settlement)?),
            GateRecord::BookSnapshot(snapshot) => {
                self.check_snapshot(snapshot)?;
                None
            }
        };
        if let Some(index) = touched {
            self.check_balanced(index)?;
        }
        // Postcondition (conservation after every record): the record touched at most
        // the one tenant checked above, so every tenant still balances.
        debug_assert!(
            self.tenants.iter().all(TenantBooks::balances),
            "record {sequence} ({}) unbalanced a tenant it did not name",
            record.kind()
        );
        self.policy_due = match record {
            GateRecord::BookSnapshot(snapshot) => Some(snapshot.policy_digest),
            _ => None,
        };
        self.records += 1;
        Ok(())
    }

    fn create(&mut self, created: &TenantCreated) -> Result<u32, BooksError> {
        check_name(&created.tenant)?;
        let initial = amount(created.initial_microunits)?;
        if self.index.contains_key(&created.tenant) {
            return Err(BooksError::DuplicateTenant {
                tenant: created.tenant.clone(),
            });
        }
        let index =
            u32::try_from(self.tenants.len()).map_err(|_| BooksError::AmountOutOfRange {
                amount_microunits: created.initial_microunits,
            })?;
        self.index.insert(created.tenant.clone(), index);
        self.tenants
            .push(TenantBooks::new(created.tenant.clone(), initial));
        Ok(index)
    }

    fn top_up(&mut self, top_up: &TopUp) -> Result<u32, BooksError> {
        let index = self.tenant_index(&top_up.tenant)?;
        let add = amount(top_up.amount_microunits)?;
        let out_of_range = BooksError::AmountOutOfRange {
            amount_microunits: top_up.amount_microunits,
        };
        let row = &self.tenants[index as usize];
        if add == 0 {
            return Err(out_of_range);
        }
        let (Some(initial), Some(remaining)) = (
            row.initial_microunits.checked_add(add),
            row.remaining_microunits.checked_add(add),
        ) else {
            return Err(out_of_range);
        };
        let row = self.row_mut(index);
        row.initial_microunits = initial;
        row.remaining_microunits = remaining;
        Ok(index)
    }

    fn limits(&mut self, limits: &LimitsChanged) -> Result<u32, BooksError> {
        let index = self.tenant_index(&limits.tenant)?;
        if let Some(cap) = limits.max_reserved_microunits {
            amount(cap)?;
        }
        let row = self.row_mut(index);
        row.max_reserved_microunits = limits.max_reserved_microunits;
        row.max_open_reservations = limits.max_open_reservations;
        Ok(index)
    }

    fn decide(&mut self, sequence: u64, record: &GateDecision) -> Result<Option<u32>, BooksError> {
        let index = self.tenant_index(&record.tenant)?;
        let decision: &KernelDecision = &record.audit.decision;
        let cost = decision.estimated_cost_microunits;
        let mismatch = |why| BooksError::OutcomeMismatch {
            outcome: record.budget,
            why,
        };
        match record.budget {
            BudgetOutcome::RejectedByKernel => {
                if decision.is_selection() {
                    return Err(mismatch("the kernel selected a candidate"));
                }
                if !record.scopes.is_empty() {
                    return Err(mismatch("a rejected request holds no budget node"));
                }
                Ok(None)
            }
            BudgetOutcome::NotPriced => {
                if !decision.is_selection() || cost != 0 {
                    return Err(mismatch("only a selection of zero cost is not priced"));
                }
                self.windows.hold(
                    sequence,
                    &record.scopes,
                    0,
                    record.audit.meta.recorded_at_unix_ms,
                )?;
                self.open.insert(
                    sequence,
                    Hold {
                        tenant_index: index,
                        held_microunits: 0,
                    },
                );
                Ok(Some(index))
            }
            BudgetOutcome::Reserved { amount_microunits } => {
                if !decision.is_selection() || cost == 0 || amount_microunits != cost {
                    return Err(mismatch(
                        "a reservation holds exactly the estimated cost of a selection",
                    ));
                }
                let held = amount(amount_microunits)?;
                let row = &self.tenants[index as usize];
                if row.remaining_microunits < held {
                    return Err(BooksError::Overspend {
                        tenant: row.tenant.clone(),
                        amount_microunits: held,
                        remaining_microunits: row.remaining_microunits,
                    });
                }
                self.windows.hold(
                    sequence,
                    &record.scopes,
                    held,
                    record.audit.meta.recorded_at_unix_ms,
                )?;
                let row = self.row_mut(index);
                row.remaining_microunits -= held;
                // Cannot overflow: reserved + remaining <= initial before the move.
                row.reserved_microunits += held;
                self.open.insert(
                    sequence,
                    Hold {
                        tenant_index: index,
                        held_microunits: held,
                    },
                );
                Ok(Some(index))
            }
            BudgetOutcome::Insufficient { .. }
            | BudgetOutcome::ReservedCapExceeded { .. }
            | BudgetOutcome::TooManyOpenReservations => {
                if !decision.is_selection() || cost == 0 {
                    return Err(mismatch("only a priced selection can be refused"));
                }
                match record.budget {
                    _ if record.scopes.is_empty() => {}
                    BudgetOutcome::Insufficient { .. } => {
                        self.windows.check_refusal(&record.scopes)?;
                    }
                    _ => return Err(mismatch("only a budget-node refusal names a node")),
                }
                Ok(None)
            }
        }
    }

    fn settle(&mut self, record: &SettlementRecord) -> Result<u32, BooksError> {
        let sequence = record.decision_sequence;
        let hold = *self
            .open
            .get(&sequence)
            .ok_or(BooksError::SettlementUnknownDecision {
                decision_sequence: sequence,
            })?;
        let index = hold.tenant_index;
        let owner = &self.tenants[index as usize].tenant;
        if *owner != record.tenant {
            return Err(BooksError::SettlementWrongTenant {
                decision_sequence: sequence,
                named: record.tenant.clone(),
                actual: owner.clone(),
            });
        }
        let held = hold.held_microunits;
        let exceeds = |actual_microunits, kind| BooksError::SettlementExceedsHold {
            decision_sequence: sequence,
            held_microunits: held,
            actual_microunits,
            kind,
        };
        let row = &self.tenants[index as usize];
        let (spent, refund, extra) = match record.kind {
            SettlementKind::Commit { actual_microunits } => {
                let actual = amount(actual_microunits)?;
                if actual > held {
                    return Err(exceeds(actual_microunits, "commit"));
                }
                (actual, held - actual, 0)
            }
            SettlementKind::CommitWithOverrun { actual_microunits } => {
                let actual = amount(actual_microunits)?;
                if actual <= held {
                    return Err(exceeds(actual_microunits, "overrun"));
                }
                let extra = actual - held;
                if row.remaining_microunits < extra {
                    return Err(BooksError::Overspend {
                        tenant: row.tenant.clone(),
                        amount_microunits: extra,
                        remaining_microunits: row.remaining_microunits,
                    });
                }
                (actual, 0, extra)
            }
            SettlementKind::CommittedAtReopen => (held, 0, 0),
            SettlementKind::Release
            | SettlementKind::Abandon
            | SettlementKind::ReleasedAtReopen => (0, held, 0),
        };
        let Some(committed) = row.committed_microunits.checked_add(spent) else {
            return Err(BooksError::AmountOutOfRange {
                amount_microunits: spent.unsigned_abs(),
            });
        };
        // Every budget node the decision holds settles the same amount, overrun
        // included (each node's excess comes out of its own spendable balance as
        // far as it goes, the rest is its overrun).
        self.windows.settle(sequence, spent)?;
        let row = self.row_mut(index);
        row.remaining_microunits = row.remaining_microunits - extra + refund;
        row.reserved_microunits -= held;
        row.committed_microunits = committed;
        self.open.remove(&sequence);
        Ok(index)
    }

    fn check_snapshot(&self, snapshot: &BookSnapshot) -> Result<(), BooksError> {
        let expected = self.snapshot(snapshot.policy_digest);
        if expected == *snapshot {
            return Ok(());
        }
        let what = if expected.format_version != snapshot.format_version {
            "format version".to_owned()
        } else if expected.tenants.len() != snapshot.tenants.len() {
            format!(
                "{} tenants in the snapshot, {} in the log",
                snapshot.tenants.len(),
                expected.tenants.len()
            )
        } else if let Some((ours, theirs)) = expected
            .tenants
            .iter()
            .zip(&snapshot.tenants)
            .find(|(ours, theirs)| ours != theirs)
        {
            format!(
                "tenant {:?} (log: {ours:?}; snapshot: {theirs:?})",
                ours.tenant
            )
        } else if expected.open != snapshot.open {
            format!(
                "open holds ({} in the snapshot, {} in the log)",
                snapshot.open.len(),
                expected.open.len()
            )
        } else if let Some((ours, theirs)) = expected
            .budget_nodes
            .iter()
            .zip(&snapshot.budget_nodes)
            .find(|(ours, theirs)| ours != theirs)
        {
            format!(
                "budget node {:?} (log: {ours:?}; snapshot: {theirs:?})",
                ours.definition.node
            )
        } else if expected.budget_nodes.len() != snapshot.budget_nodes.len() {
            format!(
                "{} budget nodes in the snapshot, {} in the log",
                snapshot.budget_nodes.len(),
                expected.budget_nodes.len()
            )
        } else {
            format!(
                "budget-node holds ({} in the snapshot, {} in the log)",
                snapshot.budget_holds.len(),
                expected.budget_holds.len()
            )
        };
        Err(BooksError::SnapshotMismatch { what })
    }

    /// The books as a snapshot record (tenants in ascending byte order of name).
    #[must_use]
    pub fn snapshot(&self, policy_digest: calybris_digest::Digest) -> BookSnapshot {
        let mut order: Vec<u32> = (0..self.tenants.len() as u32).collect();
        order.sort_unstable_by(|a, b| {
            self.tenants[*a as usize]
                .tenant
                .as_bytes()
                .cmp(self.tenants[*b as usize].tenant.as_bytes())
        });
        let mut position = vec![0_u32; self.tenants.len()];
        for (sorted, original) in order.iter().enumerate() {
            position[*original as usize] = sorted as u32;
        }
        let tenants = order
            .iter()
            .map(|index| {
                let row = &self.tenants[*index as usize];
                SnapshotTenant {
                    tenant: row.tenant.clone(),
                    initial_microunits: row.initial_microunits,
                    remaining_microunits: row.remaining_microunits,
                    reserved_microunits: row.reserved_microunits,
                    committed_microunits: row.committed_microunits,
                    max_reserved_microunits: row.max_reserved_microunits,
                    max_open_reservations: row.max_open_reservations,
                }
            })
            .collect();
        let open = self
            .open
            .iter()
            .map(|(sequence, hold)| OpenHold {
                decision_sequence: *sequence,
                tenant_index: position[hold.tenant_index as usize],
                held_microunits: hold.held_microunits.unsigned_abs(),
            })
            .collect();
        let (budget_nodes, budget_holds) = self.windows.snapshot();
        BookSnapshot {
            format_version: GATE_FORMAT_VERSION,
            policy_digest,
            tenants,
            open,
            budget_nodes,
            budget_holds,
        }
    }

    /// The books in the budget engine's form (ascending byte order of name), for the
    /// ledger digest and conservation proofs. Amounts stay in microunits.
    #[must_use]
    pub fn budget_snapshot(&self, version: u64) -> BudgetSnapshot {
        let mut tenants: Vec<TenantLedger> = self
            .tenants
            .iter()
            .map(|row| TenantLedger {
                tenant_id: row.tenant.clone(),
                initial_microcents: row.initial_microunits,
                remaining_microcents: row.remaining_microunits,
                reserved_microcents: row.reserved_microunits,
                committed_microcents: row.committed_microunits,
            })
            .collect();
        tenants.sort_unstable_by(|a, b| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()));
        BudgetSnapshot {
            version,
            tenants,
            active_reservations: self
                .open
                .values()
                .filter(|hold| hold.held_microunits > 0)
                .count() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::LogHeader;

    fn header() -> GateRecord {
        GateRecord::Header(LogHeader {
            format_version: GATE_FORMAT_VERSION,
        })
    }

    #[test]
    fn the_log_must_open_with_a_header() {
        let mut books = Books::new();
        let create = GateRecord::TenantCreated(TenantCreated {
            tenant: "a".into(),
            initial_microunits: 5,
        });
        assert!(matches!(
            books.apply(0, &create),
            Err(BooksError::BadHeader { .. })
        ));
        books.apply(0, &header()).expect("header");
        books.apply(1, &create).expect("create");
        assert_eq!(books.apply(2, &header()), Err(BooksError::MisplacedHeader));
        assert!(matches!(
            books.apply(2, &create),
            Err(BooksError::DuplicateTenant { .. })
        ));
        assert_eq!(books.tenant("a").map(|t| t.remaining_microunits), Some(5));
    }

    #[test]
    fn a_refused_record_leaves_the_books_unchanged() {
        let mut books = Books::new();
        books.apply(0, &header()).expect("header");
        books
            .apply(
                1,
                &GateRecord::TenantCreated(TenantCreated {
                    tenant: "a".into(),
                    initial_microunits: i64::MAX as u64,
                }),
            )
            .expect("create");
        let before = books.clone();
        let top_up = GateRecord::TopUp(TopUp {
            tenant: "a".into(),
            amount_microunits: 1,
        });
        assert!(matches!(
            books.apply(2, &top_up),
            Err(BooksError::AmountOutOfRange { .. })
        ));
        assert_eq!(books, before);
        let settle = GateRecord::Settlement(SettlementRecord {
            decision_sequence: 7,
            tenant: "a".into(),
            kind: SettlementKind::Release,
        });
        assert!(matches!(
            books.apply(2, &settle),
            Err(BooksError::SettlementUnknownDecision {
                decision_sequence: 7
            })
        ));
        assert_eq!(books, before);
    }
}
