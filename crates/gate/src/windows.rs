//! Budget hierarchies, scopes, windows and alerts in the gate log (issue 14).
//!
//! The record types of codes 13 to 16 and the fold of them, [`WindowFold`], which
//! [`crate::Books::apply`] runs beside the tenant books so that the gate (on reopen)
//! and the verifier (offline) derive every budget node's books, per window, from the
//! log alone:
//!
//! - 13 [`BudgetDefined`]: a node (chain level or model / provider / tag scope), its
//!   parent, limit, window calendar, starting window and alert thresholds;
//! - 14 [`WindowResetRecord`]: a node moves from one window to a later one; the
//!   spendable rest of the old window expires;
//! - 15 [`AlertFiredRecord`]: a threshold of a node was reached in a window;
//! - 16 [`BudgetTopUp`]: a node's current window grows.
//!
//! A decision names the nodes it held, with the window of each, in
//! [`crate::record::GateDecision::scopes`]; its settlement settles every one of them against
//! that window. After every record, for every node and every window:
//! `remaining + reserved + committed == limit + top-ups - expired + overrun` (the
//! excess of overruns the window could not cover), and no balance is
//! negative.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::record::MAX_TENANT_NAME_BYTES;

/// The most alert thresholds a node may have (the budget tree's bound).
pub const MAX_BUDGET_ALERTS: usize = calybris_budget::MAX_ALERT_THRESHOLDS;

/// What a budget node budgets, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BudgetScope {
    /// A level of the tenant chain (organisation, team, key).
    Chain,
    /// One model, by name.
    Model(String),
    /// One provider, by name.
    Provider(String),
    /// One tag, by name.
    Tag(String),
}

/// How a node's windows are cut, as logged (the calendar itself is
/// `calybris_budget::WindowSpec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BudgetWindow {
    /// Never resets.
    Lifetime,
    /// Fixed-length windows from an origin.
    Fixed {
        /// Length, in milliseconds.
        duration_ms: u64,
        /// Start of window 0, in Unix milliseconds.
        origin_unix_ms: u64,
    },
    /// Calendar days in a fixed UTC offset.
    Daily {
        /// Offset from UTC, in minutes.
        utc_offset_minutes: i16,
    },
    /// Calendar weeks from Monday in a fixed UTC offset.
    Weekly {
        /// Offset from UTC, in minutes.
        utc_offset_minutes: i16,
    },
    /// Calendar months in a fixed UTC offset.
    Monthly {
        /// Offset from UTC, in minutes.
        utc_offset_minutes: i16,
    },
    /// Calendar days in a time zone with daylight saving, whose rule is logged
    /// with the node (so every machine cuts the same windows).
    ZonedDaily {
        /// The zone's rule (`calybris_budget::ZoneRule`).
        zone: calybris_budget::ZoneRule,
    },
    /// Calendar weeks from Monday in a time zone.
    ZonedWeekly {
        /// The zone's rule.
        zone: calybris_budget::ZoneRule,
    },
    /// Calendar months in a time zone.
    ZonedMonthly {
        /// The zone's rule.
        zone: calybris_budget::ZoneRule,
    },
}

impl From<BudgetWindow> for calybris_budget::WindowSpec {
    fn from(window: BudgetWindow) -> Self {
        match window {
            BudgetWindow::Lifetime => Self::Lifetime,
            BudgetWindow::Fixed {
                duration_ms,
                origin_unix_ms,
            } => Self::Fixed {
                duration_ms,
                origin_unix_ms,
            },
            BudgetWindow::Daily { utc_offset_minutes } => Self::Daily { utc_offset_minutes },
            BudgetWindow::Weekly { utc_offset_minutes } => Self::Weekly { utc_offset_minutes },
            BudgetWindow::Monthly { utc_offset_minutes } => Self::Monthly { utc_offset_minutes },
            BudgetWindow::ZonedDaily { zone } => Self::ZonedDaily { zone },
            BudgetWindow::ZonedWeekly { zone } => Self::ZonedWeekly { zone },
            BudgetWindow::ZonedMonthly { zone } => Self::ZonedMonthly { zone },
        }
    }
}

impl TryFrom<calybris_budget::WindowSpec> for BudgetWindow {
    type Error = WindowError;

    fn try_from(spec: calybris_budget::WindowSpec) -> Result<Self, Self::Error> {
        use calybris_budget::WindowSpec;
        Ok(match spec {
            WindowSpec::Lifetime => Self::Lifetime,
            WindowSpec::Fixed {
                duration_ms,
                origin_unix_ms,
            } => Self::Fixed {
                duration_ms,
                origin_unix_ms,
            },
            WindowSpec::Daily { utc_offset_minutes } => Self::Daily { utc_offset_minutes },
            WindowSpec::Weekly { utc_offset_minutes } => Self::Weekly { utc_offset_minutes },
            WindowSpec::Monthly { utc_offset_minutes } => Self::Monthly { utc_offset_minutes },
            WindowSpec::ZonedDaily { zone } => Self::ZonedDaily { zone },
            WindowSpec::ZonedWeekly { zone } => Self::ZonedWeekly { zone },
            WindowSpec::ZonedMonthly { zone } => Self::ZonedMonthly { zone },
        })
    }
}

/// 13: a budget node is defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetDefined {
    /// The node's name, unique among budget nodes.
    pub node: String,
    /// The parent chain node, by name (chain nodes only).
    pub parent: Option<String>,
    /// What it budgets.
    pub scope: BudgetScope,
    /// The grant each window opens with, in microunits.
    pub limit_microunits: u64,
    /// How its windows are cut.
    pub window: BudgetWindow,
    /// The window it starts in.
    pub start_window: u64,
    /// Alert thresholds in basis points, strictly ascending, 1 to 10,000.
    pub alert_thresholds_bps: Vec<u16>,
}

/// 14: a node moves to a later window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowResetRecord {
    /// The node.
    pub node: String,
    /// The window closed (the node's current window).
    pub from_window: u64,
    /// The window opened (later than `from_window`).
    pub to_window: u64,
    /// The spendable rest of the closed window, which expires.
    pub expired_microunits: u64,
    /// The caller's clock value that crossed the boundary, in Unix milliseconds.
    pub recorded_at_unix_ms: u64,
}

/// 15: a node's committed spend in a window reached an alert threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertFiredRecord {
    /// The node.
    pub node: String,
    /// The window.
    pub window: u64,
    /// The threshold, in basis points of the window's grant.
    pub threshold_bps: u16,
    /// The window's committed spend when it fired.
    pub committed_microunits: u64,
    /// The window's grant when it fired.
    pub granted_microunits: u64,
}

/// 16: a node's current window grows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetTopUp {
    /// The node.
    pub node: String,
    /// Its current window (checked).
    pub window: u64,
    /// The amount added, in microunits (positive).
    pub amount_microunits: u64,
}

/// One node a decision held, and the window it held it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeHold {
    /// The node, by name.
    pub node: String,
    /// The window of the hold.
    pub window: u64,
}

/// One budget node in a [`crate::record::BookSnapshot`]: its definition restated
/// with `start_window` set to the node's current window, and the books of that
/// window and of every closed window still kept (open holds, or an alert due).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBudgetNode {
    /// The definition; `start_window` is the current window at the snapshot.
    pub definition: BudgetDefined,
    /// The books per window, ascending by window; the last is the current one.
    pub windows: Vec<NodeWindowBooks>,
}

/// The budget nodes one open hold holds, in a [`crate::record::BookSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotNodeHolds {
    /// The decision record's sequence number (the reservation id); its tenant hold
    /// is in [`crate::record::BookSnapshot::open`] with the same amount.
    pub decision_sequence: u64,
    /// The amount held on every node, in microunits.
    pub held_microunits: u64,
    /// The nodes held, ascending by position.
    pub nodes: Vec<SnapshotHeldNode>,
}

/// One node of a [`SnapshotNodeHolds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeldNode {
    /// The node's position in [`crate::record::BookSnapshot::budget_nodes`].
    pub node_index: u32,
    /// The window the hold was taken in.
    pub window: u64,
}

/// One node's books in one window, in microunits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeWindowBooks {
    /// The window.
    pub window: u64,
    /// Limit + top-ups.
    pub granted_microunits: i64,
    /// Spendable (zero once closed).
    pub remaining_microunits: i64,
    /// Held by open decisions of this window.
    pub reserved_microunits: i64,
    /// Spent in this window.
    pub committed_microunits: i64,
    /// Expired at the reset, plus refunds of holds settled after it, less the
    /// excess of overruns settled after it that it covered.
    pub expired_microunits: i64,
    /// Spent beyond the window's budget: the part of overruns (settlements above
    /// their hold) that the spendable balance, or once closed the expired rest, did
    /// not cover.
    pub overrun_microunits: i64,
    /// Open holds of this window.
    pub open_holds: u64,
    /// Alert thresholds fired (bit i = threshold i).
    pub fired_mask: u32,
}

impl NodeWindowBooks {
    /// `remaining + reserved + committed - (granted - expired + overrun)`, exact.
    #[must_use]
    pub fn imbalance(&self) -> i128 {
        i128::from(self.remaining_microunits)
            + i128::from(self.reserved_microunits)
            + i128::from(self.committed_microunits)
            - i128::from(self.granted_microunits)
            + i128::from(self.expired_microunits)
            - i128::from(self.overrun_microunits)
    }

    fn balances(&self) -> bool {
        self.imbalance() == 0
            && self.remaining_microunits >= 0
            && self.reserved_microunits >= 0
            && self.committed_microunits >= 0
            && self.expired_microunits >= 0
            && self.overrun_microunits >= 0
    }
}

/// Why a budget record cannot follow the records before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WindowError {
    /// A node is defined twice, or its name is empty or too long.
    #[error("budget node {node:?} is invalid or defined twice")]
    BadNode {
        /// The name.
        node: String,
    },
    /// A record names a node never defined.
    #[error("unknown budget node {node:?}")]
    UnknownNode {
        /// The name.
        node: String,
    },
    /// A definition is not valid (parent, depth, thresholds, window, limit).
    #[error("budget node {node:?}: {why}")]
    BadDefinition {
        /// The name.
        node: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A record names a window other than the node's current one (or a reset goes
    /// backwards).
    #[error("budget node {node:?} is in window {current}, the record names {named}")]
    WrongWindow {
        /// The node.
        node: String,
        /// Its current window in log order.
        current: u64,
        /// The window named.
        named: u64,
    },
    /// A decision held a node in a window its caller's clock had passed: the reset
    /// was missed.
    #[error("budget node {node:?} held in window {held} at a time of window {due}: a missed reset")]
    MissedReset {
        /// The node.
        node: String,
        /// The window held.
        held: u64,
        /// The window of the decision's caller time.
        due: u64,
    },
    /// A reset to a window the caller's clock has not reached.
    #[error("budget node {node:?} reset to window {to} at a time of window {due}: too early")]
    EarlyReset {
        /// The node.
        node: String,
        /// The window opened.
        to: u64,
        /// The window of the reset's caller time.
        due: u64,
    },
    /// A reset's expired amount is not the old window's spendable rest.
    #[error("reset of {node:?} expires {logged}, the window had {remaining} spendable")]
    WrongExpiry {
        /// The node.
        node: String,
        /// The logged amount.
        logged: u64,
        /// The spendable rest in log order.
        remaining: i64,
    },
    /// A hold in log order exceeds a node's spendable budget.
    #[error("budget node {node:?} would overspend: {amount} held with {remaining} spendable")]
    Overspend {
        /// The node.
        node: String,
        /// The amount.
        amount: i64,
        /// Spendable in log order.
        remaining: i64,
    },
    /// A decision's scope list is not a key's chain plus distinct scope nodes, or does
    /// not fit its budget outcome.
    #[error("the decision's scopes are invalid: {why}")]
    BadScopes {
        /// What is wrong.
        why: &'static str,
    },
    /// An alert that is not reached, not a threshold of the node, or fired already.
    #[error("alert {threshold_bps} bps of {node:?} in window {window}: {why}")]
    BadAlert {
        /// The node.
        node: String,
        /// The window.
        window: u64,
        /// The threshold.
        threshold_bps: u16,
        /// What is wrong.
        why: &'static str,
    },
    /// An amount out of range (zero top-up, or beyond `i64`).
    #[error("budget amount {amount} out of range")]
    Amount {
        /// The amount.
        amount: u64,
    },
    /// A node's window does not balance after a record (a bug, or an edited log).
    #[error("budget node {node:?} window {window} is off by {delta}")]
    Unbalanced {
        /// The node.
        node: String,
        /// The window.
        window: u64,
        /// `remaining + reserved + committed - granted + expired`.
        delta: i128,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FoldNode {
    definition: BudgetDefined,
    depth: u8,
    parent: Option<usize>,
    current: u64,
    /// The current window and every closed window that still has open holds or a
    /// due alert.
    windows: BTreeMap<u64, NodeWindowBooks>,
}

/// The budget-node books folded from the log (see the [module](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowFold {
    nodes: Vec<FoldNode>,
    index: HashMap<String, usize>,
    /// Open decisions' holds: decision sequence -> (node, window, amount).
    holds: BTreeMap<u64, Vec<(usize, u64, i64)>>,
}

fn to_i64(amount: u64) -> Result<i64, WindowError> {
    i64::try_from(amount).map_err(|_| WindowError::Amount { amount })
}

impl WindowFold {
    fn node_index(&self, node: &str) -> Result<usize, WindowError> {
        self.index
            .get(node)
            .copied()
            .ok_or_else(|| WindowError::UnknownNode {
                node: node.to_owned(),
            })
    }

    /// The books of `node`: current window first, then closed windows with open holds
    /// or a due alert.
    #[must_use]
    pub fn books(&self, node: &str) -> Option<Vec<NodeWindowBooks>> {
        let node = &self.nodes[*self.index.get(node)?];
        let mut out = vec![node.windows[&node.current]];
        out.extend(
            node.windows
                .values()
                .filter(|books| books.window != node.current)
                .copied(),
        );
        Some(out)
    }

    /// The definitions in log order, with each node's current window.
    pub fn nodes(&self) -> impl Iterator<Item = (&BudgetDefined, u64)> {
        self.nodes.iter().map(|n| (&n.definition, n.current))
    }

    /// Holds still open, by decision sequence: (node name, window, amount).
    pub fn open_holds(&self) -> impl Iterator<Item = (u64, Vec<(&str, u64, i64)>)> + '_ {
        self.holds.iter().map(|(sequence, holds)| {
            (
                *sequence,
                holds
                    .iter()
                    .map(|(node, window, amount)| {
                        (self.nodes[*node].definition.node.as_str(), *window, *amount)
                    })
                    .collect(),
            )
        })
    }

    /// Thresholds reached in a node's current window whose alert is not logged yet
    /// (after a crash between a settlement and its alert record): node, window,
    /// threshold.
    #[must_use]
    pub fn pending_alerts(&self) -> Vec<(String, u64, u16)> {
        let mut out = Vec::new();
        for node in &self.nodes {
            for books in node.windows.values() {
                for (bit, bps) in node.definition.alert_thresholds_bps.iter().enumerate() {
                    if books.fired_mask & (1 << bit) == 0
                        && reached(books.committed_microunits, books.granted_microunits, *bps)
                    {
                        out.push((node.definition.node.clone(), books.window, *bps));
                    }
                }
            }
        }
        out
    }

    /// The fold as the budget section of a book snapshot: every node in definition
    /// order (its definition restated in its current window) with its kept windows
    /// ascending, and every open hold's nodes ascending by position.
    #[must_use]
    pub fn snapshot(&self) -> (Vec<SnapshotBudgetNode>, Vec<SnapshotNodeHolds>) {
        let nodes = self
            .nodes
            .iter()
            .map(|node| SnapshotBudgetNode {
                definition: BudgetDefined {
                    start_window: node.current,
                    ..node.definition.clone()
                },
                windows: node.windows.values().copied().collect(),
            })
            .collect();
        let holds = self
            .holds
            .iter()
            .map(|(sequence, holds)| {
                let mut nodes: Vec<SnapshotHeldNode> = holds
                    .iter()
                    .map(|(index, window, _)| SnapshotHeldNode {
                        node_index: u32::try_from(*index).unwrap_or(u32::MAX),
                        window: *window,
                    })
                    .collect();
                nodes.sort_unstable_by_key(|held| held.node_index);
                SnapshotNodeHolds {
                    decision_sequence: *sequence,
                    held_microunits: holds
                        .first()
                        .map_or(0, |(_, _, amount)| amount.unsigned_abs()),
                    nodes,
                }
            })
            .collect();
        (nodes, holds)
    }

    /// The fold a book snapshot's budget section describes, checked: definitions as
    /// [`define`](Self::define) checks them, windows ascending with the current one
    /// last, every window balanced, a closed window with nothing spendable and kept
    /// only for an open hold or a due alert, and every node window's reserved total
    /// and open-hold count exactly those of the holds listed (each a key's chain plus
    /// distinct scope nodes).
    ///
    /// # Errors
    /// The [`WindowError`] of the first thing that does not fit.
    pub fn from_snapshot(
        nodes: &[SnapshotBudgetNode],
        holds: &[SnapshotNodeHolds],
    ) -> Result<Self, WindowError> {
        let mut fold = Self::default();
        for entry in nodes {
            let definition = &entry.definition;
            let bad = |why| WindowError::BadDefinition {
                node: definition.node.clone(),
                why,
            };
            fold.define(definition)?;
            let current = definition.start_window;
            let thresholds = &definition.alert_thresholds_bps;
            let mut windows = BTreeMap::new();
            for (position, books) in entry.windows.iter().enumerate() {
                let last = position + 1 == entry.windows.len();
                if (last && books.window != current) || (!last && books.window >= current) {
                    return Err(bad("snapshot windows not ascending to the current one"));
                }
                if !books.balances()
                    || books.granted_microunits < 0
                    || u64::from(books.fired_mask) >> thresholds.len() != 0
                {
                    return Err(bad("a snapshot window does not balance"));
                }
                if last && books.expired_microunits != 0 {
                    return Err(bad("the current window has expired budget"));
                }
                if !last && (books.remaining_microunits != 0 || books.forgettable(thresholds)) {
                    return Err(bad("a closed snapshot window that is not kept"));
                }
                if windows.insert(books.window, *books).is_some() {
                    return Err(bad("a snapshot window is listed twice"));
                }
            }
            if windows.is_empty() {
                return Err(bad("a snapshot node has no current window"));
            }
            let index = fold.nodes.len() - 1;
            fold.nodes[index].current = current;
            fold.nodes[index].windows = windows;
        }
        // Every node window's holds, summed: (reserved, open holds).
        let mut held: HashMap<(usize, u64), (i128, u64)> = HashMap::new();
        let mut previous = None;
        for entry in holds {
            let bad = |why| WindowError::BadScopes { why };
            if previous.is_some_and(|before| before >= entry.decision_sequence) {
                return Err(bad("snapshot holds out of order or repeated"));
            }
            previous = Some(entry.decision_sequence);
            let amount = to_i64(entry.held_microunits)?;
            let mut resolved = Vec::with_capacity(entry.nodes.len());
            for node in &entry.nodes {
                let index = usize::try_from(node.node_index)
                    .ok()
                    .filter(|index| *index < fold.nodes.len())
                    .ok_or(bad("a snapshot hold names no node"))?;
                if resolved.iter().any(|(seen, _)| *seen == index) {
                    return Err(bad("a node is named twice"));
                }
                if !fold.nodes[index].windows.contains_key(&node.window) {
                    return Err(bad("a snapshot hold names a window not kept"));
                }
                let slot = held.entry((index, node.window)).or_default();
                slot.0 += i128::from(amount);
                slot.1 += 1;
                resolved.push((index, node.window));
            }
            if resolved.is_empty() || resolved.len() > calybris_budget::MAX_PLAN_NODES {
                return Err(bad("a snapshot hold holds no node or too many"));
            }
            fold.check_chain(resolved.iter().map(|(index, _)| *index))?;
            fold.holds.insert(
                entry.decision_sequence,
                resolved
                    .into_iter()
                    .map(|(index, window)| (index, window, amount))
                    .collect(),
            );
        }
        for (index, node) in fold.nodes.iter().enumerate() {
            for books in node.windows.values() {
                let (reserved, open) = held
                    .get(&(index, books.window))
                    .copied()
                    .unwrap_or_default();
                if i128::from(books.reserved_microunits) != reserved || books.open_holds != open {
                    return Err(WindowError::BadScopes {
                        why: "a snapshot window's reserved total is not the sum of its holds",
                    });
                }
            }
        }
        Ok(fold)
    }

    /// Folds a 13 record.
    ///
    /// # Errors
    /// [`WindowError`]; nothing changes on error.
    pub fn define(&mut self, record: &BudgetDefined) -> Result<(), WindowError> {
        let bad = |why| WindowError::BadDefinition {
            node: record.node.clone(),
            why,
        };
        if record.node.is_empty()
            || record.node.len() > MAX_TENANT_NAME_BYTES
            || self.index.contains_key(&record.node)
        {
            return Err(WindowError::BadNode {
                node: record.node.clone(),
            });
        }
        let limit = to_i64(record.limit_microunits)?;
        let thresholds = &record.alert_thresholds_bps;
        if thresholds.len() > MAX_BUDGET_ALERTS
            || thresholds.iter().any(|bps| *bps == 0 || *bps > 10_000)
            || thresholds.windows(2).any(|pair| pair[0] >= pair[1])
        {
            return Err(bad("thresholds"));
        }
        if calybris_budget::WindowSpec::from(record.window)
            .validate()
            .is_err()
        {
            return Err(bad("window calendar"));
        }
        let (parent, depth) = match (&record.scope, &record.parent) {
            (_, None) => (None, 0),
            (BudgetScope::Chain, Some(parent)) => {
                let index = self.node_index(parent)?;
                let parent = &self.nodes[index];
                if parent.definition.scope != BudgetScope::Chain {
                    return Err(bad("the parent is a scope node"));
                }
                if usize::from(parent.depth) + 1 >= calybris_budget::MAX_CHAIN_DEPTH {
                    return Err(bad("the chain is too deep"));
                }
                (Some(index), parent.depth + 1)
            }
            (_, Some(_)) => return Err(bad("a scope node has no parent")),
        };
        let mut windows = BTreeMap::new();
        windows.insert(
            record.start_window,
            NodeWindowBooks {
                window: record.start_window,
                granted_microunits: limit,
                remaining_microunits: limit,
                ..NodeWindowBooks::default()
            },
        );
        self.index.insert(record.node.clone(), self.nodes.len());
        self.nodes.push(FoldNode {
            definition: record.clone(),
            depth,
            parent,
            current: record.start_window,
            windows,
        });
        Ok(())
    }

    /// Folds a 14 record.
    ///
    /// # Errors
    /// [`WindowError`]; nothing changes on error.
    pub fn reset(&mut self, record: &WindowResetRecord) -> Result<(), WindowError> {
        let index = self.node_index(&record.node)?;
        let node = &mut self.nodes[index];
        if record.from_window != node.current || record.to_window <= record.from_window {
            return Err(WindowError::WrongWindow {
                node: record.node.clone(),
                current: node.current,
                named: record.to_window,
            });
        }
        if let Some(due) = window_of(&node.definition, record.recorded_at_unix_ms)
            && record.to_window > due
        {
            return Err(WindowError::EarlyReset {
                node: record.node.clone(),
                to: record.to_window,
                due,
            });
        }
        let old = node.windows[&node.current];
        if to_i64(record.expired_microunits)? != old.remaining_microunits {
            return Err(WindowError::WrongExpiry {
                node: record.node.clone(),
                logged: record.expired_microunits,
                remaining: old.remaining_microunits,
            });
        }
        let limit = to_i64(node.definition.limit_microunits)?;
        // A closed window is kept while a hold of it is open or an alert of it is
        // due (reached, not logged: a crash between a settlement and its alert
        // record), so the alert can still be logged, and checked, after the reset.
        let closed = NodeWindowBooks {
            remaining_microunits: 0,
            expired_microunits: old.remaining_microunits,
            ..old
        };
        if closed.forgettable(&node.definition.alert_thresholds_bps) {
            node.windows.remove(&old.window);
        } else {
            node.windows.insert(old.window, closed);
        }
        node.current = record.to_window;
        node.windows.insert(
            record.to_window,
            NodeWindowBooks {
                window: record.to_window,
                granted_microunits: limit,
                remaining_microunits: limit,
                ..NodeWindowBooks::default()
            },
        );
        self.check(index, old.window)?;
        self.check(index, record.to_window)
    }

    /// Folds a 15 record.
    ///
    /// # Errors
    /// [`WindowError`]; nothing changes on error.
    pub fn alert(&mut self, record: &AlertFiredRecord) -> Result<(), WindowError> {
        let index = self.node_index(&record.node)?;
        let node = &mut self.nodes[index];
        let bad = |why| WindowError::BadAlert {
            node: record.node.clone(),
            window: record.window,
            threshold_bps: record.threshold_bps,
            why,
        };
        let Some(bit) = node
            .definition
            .alert_thresholds_bps
            .iter()
            .position(|bps| *bps == record.threshold_bps)
        else {
            return Err(bad("not a threshold of the node"));
        };
        let Some(books) = node.windows.get_mut(&record.window) else {
            return Err(bad("the window is not open"));
        };
        if books.fired_mask & (1 << bit) != 0 {
            return Err(bad("fired already in this window"));
        }
        if !reached(
            books.committed_microunits,
            books.granted_microunits,
            record.threshold_bps,
        ) {
            return Err(bad("not reached in log order"));
        }
        books.fired_mask |= 1 << bit;
        if record.window != node.current && books.forgettable(&node.definition.alert_thresholds_bps)
        {
            node.windows.remove(&record.window);
        }
        Ok(())
    }

    /// Folds a 16 record.
    ///
    /// # Errors
    /// [`WindowError`]; nothing changes on error.
    pub fn top_up(&mut self, record: &BudgetTopUp) -> Result<(), WindowError> {
        let index = self.node_index(&record.node)?;
        let add = to_i64(record.amount_microunits)?;
        let out_of_range = WindowError::Amount {
            amount: record.amount_microunits,
        };
        let node = &mut self.nodes[index];
        if record.window != node.current {
            return Err(WindowError::WrongWindow {
                node: record.node.clone(),
                current: node.current,
                named: record.window,
            });
        }
        let books = node
            .windows
            .get_mut(&record.window)
            .ok_or(out_of_range.clone())?;
        let (Some(granted), Some(remaining), true) = (
            books.granted_microunits.checked_add(add),
            books.remaining_microunits.checked_add(add),
            add > 0,
        ) else {
            return Err(out_of_range);
        };
        books.granted_microunits = granted;
        books.remaining_microunits = remaining;
        self.check(index, record.window)
    }

    /// Resolves a decision's scopes and checks they form one key's chain (every
    /// chain node's parent is named too) plus distinct scope nodes, each in its
    /// node's current window.
    fn resolve(
        &self,
        scopes: &[ScopeHold],
        recorded_at_unix_ms: u64,
    ) -> Result<Vec<(usize, u64)>, WindowError> {
        if scopes.len() > calybris_budget::MAX_PLAN_NODES {
            return Err(WindowError::BadScopes {
                why: "too many nodes",
            });
        }
        let mut out = Vec::with_capacity(scopes.len());
        for scope in scopes {
            let index = self.node_index(&scope.node)?;
            if out.iter().any(|(seen, _)| *seen == index) {
                return Err(WindowError::BadScopes {
                    why: "a node is named twice",
                });
            }
            let node = &self.nodes[index];
            if scope.window != node.current {
                return Err(WindowError::WrongWindow {
                    node: scope.node.clone(),
                    current: node.current,
                    named: scope.window,
                });
            }
            if let Some(due) = window_of(&node.definition, recorded_at_unix_ms)
                && scope.window < due
            {
                return Err(WindowError::MissedReset {
                    node: scope.node.clone(),
                    held: scope.window,
                    due,
                });
            }
            out.push((index, scope.window));
        }
        self.check_chain(out.iter().map(|(index, _)| *index))?;
        Ok(out)
    }

    /// Checks that the chain nodes among `nodes` (distinct) are one key and all its
    /// ancestors.
    fn check_chain(&self, nodes: impl Iterator<Item = usize>) -> Result<(), WindowError> {
        let chain: Vec<usize> = nodes
            .filter(|index| self.nodes[*index].definition.scope == BudgetScope::Chain)
            .collect();
        let deepest = chain.iter().map(|index| self.nodes[*index].depth).max();
        let closed = chain
            .iter()
            .all(|index| self.nodes[*index].parent.is_none_or(|p| chain.contains(&p)));
        if !closed || deepest.map_or(0, |d| usize::from(d) + 1) != chain.len() {
            return Err(WindowError::BadScopes {
                why: "the chain nodes are not one key and its ancestors",
            });
        }
        Ok(())
    }

    /// Folds the holds of an admitted decision (`amount` is what it holds; zero for
    /// a decision that held nothing), timestamped `recorded_at_unix_ms` by its caller.
    ///
    /// # Errors
    /// [`WindowError`]; nothing changes on error.
    pub fn hold(
        &mut self,
        sequence: u64,
        scopes: &[ScopeHold],
        amount: i64,
        recorded_at_unix_ms: u64,
    ) -> Result<(), WindowError> {
        if scopes.is_empty() {
            return Ok(());
        }
        let resolved = self.resolve(scopes, recorded_at_unix_ms)?;
        for (index, window) in &resolved {
            let books = &self.nodes[*index].windows[window];
            if books.remaining_microunits < amount {
                return Err(WindowError::Overspend {
                    node: self.nodes[*index].definition.node.clone(),
                    amount,
                    remaining: books.remaining_microunits,
                });
            }
        }
        for (index, window) in &resolved {
            let books =
                self.nodes[*index]
                    .windows
                    .get_mut(window)
                    .ok_or(WindowError::BadScopes {
                        why: "window vanished",
                    })?;
            books.remaining_microunits -= amount;
            books.reserved_microunits += amount;
            books.open_holds += 1;
        }
        self.holds.insert(
            sequence,
            resolved
                .iter()
                .map(|(index, window)| (*index, *window, amount))
                .collect(),
        );
        for (index, window) in resolved {
            self.check(index, window)?;
        }
        Ok(())
    }

    /// Checks the scopes of a decision refused by a budget node: exactly the
    /// refusing node, in its current window.
    ///
    /// # Errors
    /// [`WindowError::BadScopes`], [`WindowError::UnknownNode`] or
    /// [`WindowError::WrongWindow`].
    pub fn check_refusal(&self, scopes: &[ScopeHold]) -> Result<(), WindowError> {
        let [scope] = scopes else {
            return Err(WindowError::BadScopes {
                why: "a node refusal names exactly the refusing node",
            });
        };
        let index = self.node_index(&scope.node)?;
        let current = self.nodes[index].current;
        if scope.window != current {
            return Err(WindowError::WrongWindow {
                node: scope.node.clone(),
                current,
                named: scope.window,
            });
        }
        Ok(())
    }

    /// Whether decision `sequence` holds budget nodes.
    #[must_use]
    pub fn holds(&self, sequence: u64) -> bool {
        self.holds.contains_key(&sequence)
    }

    /// Folds the settlement of decision `sequence`: `spent` of each hold is
    /// committed in the hold's window, the rest refunded (to `remaining` in the
    /// current window, to `expired` in a closed one). Above the hold (the overrun
    /// path; the caller checks the settlement kind) the excess comes out of that
    /// same balance as far as it goes and the rest is the window's overrun, so
    /// `remaining + reserved + committed == granted - expired + overrun` still holds.
    ///
    /// # Errors
    /// [`WindowError::Amount`] if `spent` is negative or a total would leave `i64`;
    /// nothing changes on error.
    pub fn settle(&mut self, sequence: u64, spent: i64) -> Result<(), WindowError> {
        let Some(holds) = self.holds.get(&sequence) else {
            return Ok(());
        };
        // Checked before anything changes: every total stays in range.
        for (index, window, _) in holds {
            let books = self.nodes[*index].windows.get(window);
            let fits = books.is_some_and(|books| {
                books.committed_microunits.checked_add(spent).is_some()
                    && books.overrun_microunits.checked_add(spent).is_some()
            });
            if spent < 0 || !fits {
                return Err(WindowError::Amount {
                    amount: spent.unsigned_abs(),
                });
            }
        }
        let holds = self.holds.remove(&sequence).unwrap_or_default();
        for (index, window, held) in holds {
            let node = &mut self.nodes[index];
            let current = node.current == window;
            let thresholds = &node.definition.alert_thresholds_bps;
            let Some(books) = node.windows.get_mut(&window) else {
                debug_assert!(false, "a window with open holds is kept");
                continue;
            };
            books.reserved_microunits -= held;
            books.committed_microunits += spent;
            // The refund goes back to the spendable balance, or to the expired rest
            // once the window is closed; an overrun's excess comes out of the same
            // place as far as it goes, the rest is overrun.
            let pool = if current {
                &mut books.remaining_microunits
            } else {
                &mut books.expired_microunits
            };
            if spent <= held {
                *pool += held - spent;
            } else {
                let excess = spent - held;
                let covered = excess.min(*pool);
                *pool -= covered;
                books.overrun_microunits += excess - covered;
            }
            books.open_holds -= 1;
            let drop_closed = !current && books.forgettable(thresholds);
            self.check(index, window)?;
            if drop_closed {
                self.nodes[index].windows.remove(&window);
            }
        }
        Ok(())
    }

    fn check(&self, index: usize, window: u64) -> Result<(), WindowError> {
        let node = &self.nodes[index];
        match node.windows.get(&window) {
            Some(books) if !books.balances() => Err(WindowError::Unbalanced {
                node: node.definition.node.clone(),
                window,
                delta: books.imbalance(),
            }),
            _ => Ok(()),
        }
    }
}

impl NodeWindowBooks {
    /// Whether a closed window can be forgotten: no hold of it is open, so nothing
    /// more settles in it, and every threshold it reached has fired, so no alert of
    /// it is due.
    fn forgettable(&self, thresholds: &[u16]) -> bool {
        self.open_holds == 0
            && thresholds.iter().enumerate().all(|(bit, bps)| {
                self.fired_mask & (1 << bit) != 0
                    || !reached(self.committed_microunits, self.granted_microunits, *bps)
            })
    }
}

/// The window of `definition`'s calendar at `unix_ms` (`None` before its first window).
fn window_of(definition: &BudgetDefined, unix_ms: u64) -> Option<u64> {
    calybris_budget::WindowSpec::from(definition.window)
        .window_at(unix_ms)
        .ok()
}

fn reached(committed: i64, granted: i64, bps: u16) -> bool {
    i128::from(committed) * 10_000 >= i128::from(bps) * i128::from(granted)
}
