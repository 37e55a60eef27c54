//! Budget hierarchies with scopes, windows and alerts: [`BudgetTree`].
//!
//! A tree holds **nodes**. A chain node has an optional parent chain node, up to
//! [`MAX_CHAIN_DEPTH`] levels (organisation -> team -> key, one spare level). A
//! scope node (per model, per provider, per tag) stands alone. A reservation
//! names one chain node and any scope nodes; the [`HoldPlan`] resolves that to
//! the chain node, its ancestors and the scopes, in ascending node id order.
//!
//! # All or none
//!
//! [`BudgetTree::try_reserve`] takes the amount from each node of the plan in
//! ascending id order with a compare-and-swap on the node's spendable balance;
//! if a node cannot cover it, the nodes already taken are given back (a release
//! in the window they were taken in) and the refusal names the node, its scope
//! and its depth. No lock is taken. A racing reader can see a partial hold (some
//! nodes taken, the rest not yet, or being rolled back). That is safe: a partial
//! hold only ever lowers spendable balances, so it can make a concurrent
//! reservation be refused, never let one overspend; and each node's own books
//! balance at every step. [`BudgetTree::stats`] counts the rollbacks so the
//! cost of those spurious refusals can be measured.
//!
//! # Windows
//!
//! Each node has a current window id. [`BudgetTree::advance_window`] moves a
//! node to a later window: the node is held still for the copy (operations in
//! flight on it finish first), the spendable rest of the old window is
//! **expired**, and the new window opens with the node's limit. A reservation
//! remembers the window of every node it holds, and is settled against those
//! windows: a hold open across a reset commits into the old window, and its
//! refund goes to the old window's `expired` (it cannot be spent in a window
//! that is over). Per node and per window, after every operation,
//! `remaining + reserved + committed == limit + top-ups - expired + overrun`.
//!
//! # Overruns
//!
//! Work that cost more than its hold settles with
//! [`TreeReservation::commit_with_overrun`]: every node commits the actual cost;
//! its excess over the hold comes out of the node's spendable balance as far as it
//! goes (once the hold's window is closed, out of that window's expired rest), and
//! the rest is recorded as [`WindowBooks::overrun_microcents`], so that per node and
//! window `remaining + reserved + committed == limit + top-ups - expired + overrun`.
//! The split depends on what is spendable when it runs: a caller that must
//! reproduce it from a log runs it while nothing else is in flight (the gate does).
//!
//! # Alerts
//!
//! A node has up to [`MAX_ALERT_THRESHOLDS`] thresholds in basis points of its
//! window's grant (limit + top-ups). When a commit takes the window's committed
//! spend to or past a threshold, the alert fires: exactly once per node and
//! window, decided by an atomic fetch-or on a fired mask that the reset clears
//! while the node is held still. Alerts are returned in the [`TreeSettlement`]
//! and sent to every channel from [`BudgetTree::subscribe`].

use crate::calendar::WindowSpec;
use crate::sync::{Arc, AtomicI64, AtomicU64, Mutex, Ordering, RwLock, reload, wait_a_little};
use std::collections::{BTreeMap, HashMap};

/// The deepest chain (organisation -> team -> key, plus one).
pub const MAX_CHAIN_DEPTH: usize = 4;
/// The most scope nodes one plan may name.
pub const MAX_PLAN_SCOPES: usize = 4;
/// The most nodes one plan holds.
pub const MAX_PLAN_NODES: usize = MAX_CHAIN_DEPTH + MAX_PLAN_SCOPES;
/// The most alert thresholds per node.
pub const MAX_ALERT_THRESHOLDS: usize = 16;
/// The most nodes one tree holds.
pub const MAX_TREE_NODES: usize = 1 << 20;
/// The longest node name, in bytes.
pub const MAX_NODE_NAME_BYTES: usize = 256;

// The gate word of a node: bits 0..32 count operations in flight, bits 32..62 the
// holds open in the current window, bit 62 is set while a reset or a copy holds the
// node still. Counting open holds in the word the operation already writes saves a
// read-modify-write per node on reserve and on settle.
const IN_FLIGHT_ONE: u64 = 1;
const IN_FLIGHT_MASK: u64 = 0xFFFF_FFFF;
const OPEN_SHIFT: u32 = 32;
const OPEN_ONE: u64 = 1 << OPEN_SHIFT;
const OPEN_MASK: u64 = ((1 << 30) - 1) << OPEN_SHIFT;
const FROZEN: u64 = 1 << 62;

/// A node's position in its tree (assigned in definition order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeId(pub u32);

/// What a node budgets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum NodeScope {
    /// A level of the tenant chain (organisation, team, key).
    Chain,
    /// Spend on one model, by name.
    Model(String),
    /// Spend on one provider, by name.
    Provider(String),
    /// Spend under one tag (a project label, for instance).
    Tag(String),
}

impl NodeScope {
    /// A short lowercase name of the scope kind.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Chain => "chain",
            Self::Model(_) => "model",
            Self::Provider(_) => "provider",
            Self::Tag(_) => "tag",
        }
    }
}

/// The definition of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeSpec {
    /// The node's name, unique in the tree (1 to [`MAX_NODE_NAME_BYTES`] bytes).
    pub name: String,
    /// The parent chain node (chain nodes only; `None` for a root).
    pub parent: Option<NodeId>,
    /// What the node budgets.
    pub scope: NodeScope,
    /// The grant each window opens with, in microcents (not negative).
    pub limit_microcents: i64,
    /// How its windows are cut (used by callers holding a clock; the tree only
    /// checks it).
    pub window: WindowSpec,
    /// The id of the window the node starts in.
    pub start_window: u64,
    /// Alert thresholds in basis points (1 to 10,000), at most
    /// [`MAX_ALERT_THRESHOLDS`], strictly ascending.
    pub alert_thresholds_bps: Vec<u16>,
}

/// Why a tree operation was refused; the books are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// A node name is empty, too long or already used.
    #[error("invalid or duplicate node name of {len_bytes} bytes")]
    InvalidName {
        /// Length of the refused name.
        len_bytes: usize,
    },
    /// No node has this id or name.
    #[error("unknown node {0}")]
    UnknownNode(String),
    /// The parent is not a chain node, a scope node has a parent, or the chain
    /// would be deeper than [`MAX_CHAIN_DEPTH`].
    #[error("invalid parent: {0}")]
    InvalidParent(&'static str),
    /// The spec is invalid (negative limit, bad thresholds or window).
    #[error("invalid node spec: {0}")]
    InvalidSpec(&'static str),
    /// The tree holds [`MAX_TREE_NODES`] nodes.
    #[error("the tree is full")]
    TooManyNodes,
    /// A plan names a chain node where a scope is expected, or the reverse, or
    /// too many scopes.
    #[error("invalid plan: {0}")]
    InvalidPlan(&'static str),
    /// An amount was zero or negative where a positive one is needed, or negative.
    #[error("invalid amount {amount_microcents}")]
    InvalidAmount {
        /// The refused amount.
        amount_microcents: i64,
    },
    /// A node could not cover the reservation (or already has 2^30 - 1 holds open
    /// in its window): the refusal names it.
    #[error(
        "node {node_name:?} ({scope_kind}, depth {depth}) has {remaining_microcents} of {requested_microcents} requested"
    )]
    Refused {
        /// The refusing node.
        node: NodeId,
        /// Its name.
        node_name: String,
        /// Its scope kind (`chain`, `model`, `provider`, `tag`).
        scope_kind: &'static str,
        /// Its depth in the chain (0 for a root or a scope node).
        depth: u8,
        /// What it had spendable when it refused.
        remaining_microcents: i64,
        /// The amount requested.
        requested_microcents: i64,
    },
    /// The commit is above the hold ([`TreeReservation::commit`]; the overrun path
    /// is [`TreeReservation::commit_with_overrun`]).
    #[error("actual {actual_microcents} exceeds the hold of {held_microcents}")]
    ActualExceedsHold {
        /// The hold.
        held_microcents: i64,
        /// The refused actual cost.
        actual_microcents: i64,
    },
    /// A reset names a window before the node's current one.
    #[error("window {to} is before the node's current window {current}")]
    WindowBehind {
        /// The node's window.
        current: u64,
        /// The refused target.
        to: u64,
    },
    /// A total would overflow an `i64`.
    #[error("a total would overflow")]
    Overflow,
}

/// An alert that fired: a node's committed spend in a window reached a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AlertEvent {
    /// The node.
    pub node: NodeId,
    /// The window it fired in.
    pub window: u64,
    /// The threshold reached, in basis points of the window's grant.
    pub threshold_bps: u16,
    /// The window's committed spend right after the commit that fired it.
    pub committed_microcents: i64,
    /// The window's grant (limit + top-ups) when it fired.
    pub granted_microcents: i64,
}

/// What [`BudgetTree::advance_window`] did to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WindowReset {
    /// The node.
    pub node: NodeId,
    /// The window closed.
    pub from_window: u64,
    /// The window opened.
    pub to_window: u64,
    /// The spendable rest of the closed window, expired.
    pub expired_microcents: i64,
    /// Holds still open in the closed window (they settle against it).
    pub open_holds: u64,
}

/// One node's books in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WindowBooks {
    /// The window id.
    pub window: u64,
    /// Limit + top-ups in this window.
    pub granted_microcents: i64,
    /// Spendable (zero once the window is closed).
    pub remaining_microcents: i64,
    /// Held by open reservations taken in this window.
    pub reserved_microcents: i64,
    /// Spent in this window.
    pub committed_microcents: i64,
    /// Expired at the reset, plus refunds of holds settled after it, less the
    /// excess of overruns settled after it that it covered.
    pub expired_microcents: i64,
    /// Spent beyond the window's budget: the part of overruns (commits above their
    /// hold) that the spendable balance (or, once closed, the expired rest) could
    /// not cover.
    pub overrun_microcents: i64,
    /// Open reservations taken in this window.
    pub open_holds: u64,
    /// Which thresholds have fired (bit i = threshold i).
    pub fired_mask: u32,
}

impl WindowBooks {
    /// `remaining + reserved + committed - (granted - expired + overrun)`, exactly.
    #[must_use]
    pub fn imbalance(&self) -> i128 {
        i128::from(self.remaining_microcents)
            + i128::from(self.reserved_microcents)
            + i128::from(self.committed_microcents)
            - i128::from(self.granted_microcents)
            + i128::from(self.expired_microcents)
            - i128::from(self.overrun_microcents)
    }
}

/// Counters of the all-or-none path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeStats {
    /// Reservations refused after at least one node had been taken.
    pub rollbacks: u64,
    /// Node holds given back by those rollbacks.
    pub nodes_rolled_back: u64,
}

/// The hot part of a node, alone on its cache lines.
#[repr(align(128))]
struct Hot {
    gate: AtomicU64,
    window: AtomicU64,
    remaining: AtomicI64,
    // No `reserved` word: while the node is still, `reserved == granted + overrun -
    // remaining - committed` (the conservation identity of the current window, which
    // has nothing expired), so reserve and settle save one read-modify-write each.
    committed: AtomicI64,
    granted: AtomicI64,
    /// Spent beyond the window's budget (written on the overrun path only).
    overrun: AtomicI64,
    fired: AtomicU64,
}

struct Node {
    hot: Hot,
    id: NodeId,
    spec: NodeSpec,
    depth: u8,
    /// Closed windows that still have open holds, by window id.
    closed: Mutex<BTreeMap<u64, WindowBooks>>,
}

impl Node {
    /// Enters as one more operation in flight, and with `open` one more open hold;
    /// `false` if the node already has the most open holds the word counts.
    fn enter(&self, open: bool) -> bool {
        let gate = &self.hot.gate;
        let mut current = gate.load(Ordering::Relaxed);
        let mut attempt = 0_u32;
        let delta = if open {
            IN_FLIGHT_ONE + OPEN_ONE
        } else {
            IN_FLIGHT_ONE
        };
        loop {
            if current & FROZEN != 0 || current & IN_FLIGHT_MASK == IN_FLIGHT_MASK {
                wait_a_little(attempt);
                attempt = attempt.saturating_add(1);
                current = reload(gate, Ordering::Relaxed);
                continue;
            }
            if open && current & OPEN_MASK == OPEN_MASK {
                return false;
            }
            match gate.compare_exchange_weak(
                current,
                current + delta,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Leaves, closing one open hold of the current window when `close` is set.
    fn leave(&self, close: bool) {
        let delta = if close {
            IN_FLIGHT_ONE + OPEN_ONE
        } else {
            IN_FLIGHT_ONE
        };
        let before = self.hot.gate.fetch_sub(delta, Ordering::Release);
        debug_assert!(before & IN_FLIGHT_MASK >= 1);
        debug_assert!(!close || before & OPEN_MASK >= OPEN_ONE);
    }

    fn freeze(&self) {
        let _still = crate::cas::freeze_gate(&self.hot.gate, FROZEN, IN_FLIGHT_MASK);
    }

    fn thaw(&self) {
        let before = self.hot.gate.fetch_and(!FROZEN, Ordering::Release);
        debug_assert!(before & FROZEN != 0);
    }

    /// Takes `amount` from the current window; returns the window, or what was
    /// spendable.
    fn hold(&self, amount: i64) -> Result<u64, i64> {
        debug_assert!(amount > 0);
        if !self.enter(true) {
            return Err(self.hot.remaining.load(Ordering::Relaxed));
        }
        let window = self.hot.window.load(Ordering::Relaxed);
        if let Err(seen) = crate::cas::take_if_covered(&self.hot.remaining, amount) {
            self.leave(true);
            return Err(seen);
        }
        self.leave(false);
        Ok(window)
    }

    /// Settles a hold of `held` taken in `window`, spending `actual`. Above the hold
    /// (the overrun path) the excess is taken from the spendable balance as far as
    /// it goes and the rest recorded as overrun.
    #[inline]
    fn settle(&self, window: u64, held: i64, actual: i64, alerts: &mut Vec<AlertEvent>) {
        debug_assert!(0 <= actual && 0 < held);
        let entered = self.enter(false);
        debug_assert!(entered, "only an opening entry can be refused");
        if self.hot.window.load(Ordering::Relaxed) != window {
            self.leave(false);
            self.settle_closed(window, held, actual, alerts);
            return;
        }
        if held > actual {
            self.hot
                .remaining
                .fetch_add(held - actual, Ordering::Relaxed);
        } else if actual > held {
            self.take_excess(actual - held);
        }
        if actual > 0 {
            let committed = self.hot.committed.fetch_add(actual, Ordering::Relaxed) + actual;
            let granted = self.hot.granted.load(Ordering::Relaxed);
            let seen = self.hot.fired.load(Ordering::Relaxed);
            if self.may_cross(committed, granted, seen) {
                self.fire(window, committed, granted, seen, alerts);
            }
        }
        self.leave(true);
    }

    /// The overrun path on the current window: `excess` comes out of `remaining` as
    /// far as it goes, the rest is overrun.
    #[cold]
    #[inline(never)]
    fn take_excess(&self, excess: i64) {
        let taken = crate::cas::take_up_to(&self.hot.remaining, excess);
        if excess > taken {
            self.hot
                .overrun
                .fetch_add(excess - taken, Ordering::Relaxed);
        }
    }

    /// Fires the thresholds `committed` of `granted` reaches that no other thread
    /// fired first (one fetch-or per bit decides); only while in flight on the
    /// current window, so a reset cannot clear the mask in between.
    #[cold]
    #[inline(never)]
    fn fire(
        &self,
        window: u64,
        committed: i64,
        granted: i64,
        seen: u64,
        alerts: &mut Vec<AlertEvent>,
    ) {
        let fired = &self.hot.fired;
        for bit in self.crossed(committed, granted, seen) {
            let mask = 1_u64 << bit;
            if fired.fetch_or(mask, Ordering::Relaxed) & mask == 0 {
                alerts.push(self.alert(window, bit, committed, granted));
            }
        }
    }

    /// Settles a hold whose window was closed by a reset after it was taken, in the
    /// record the reset filed before letting anyone in again.
    #[cold]
    #[inline(never)]
    fn settle_closed(&self, window: u64, held: i64, actual: i64, alerts: &mut Vec<AlertEvent>) {
        let mut closed = self.closed.lock();
        let Some(books) = closed.get_mut(&window) else {
            debug_assert!(false, "a closed window with open holds is kept");
            return;
        };
        books.reserved_microcents -= held;
        books.committed_microcents += actual;
        if actual <= held {
            books.expired_microcents += held - actual;
        } else {
            // An overrun after the reset: the expired rest covers what it can.
            let excess = actual - held;
            let covered = excess.min(books.expired_microcents);
            books.expired_microcents -= covered;
            books.overrun_microcents += excess - covered;
        }
        books.open_holds -= 1;
        if actual > 0 {
            let crossed: Vec<usize> = self
                .crossed(
                    books.committed_microcents,
                    books.granted_microcents,
                    u64::from(books.fired_mask),
                )
                .collect();
            for bit in crossed {
                books.fired_mask |= 1 << bit;
                alerts.push(self.alert(
                    window,
                    bit,
                    books.committed_microcents,
                    books.granted_microcents,
                ));
            }
        }
        debug_assert_eq!(books.imbalance(), 0);
        if books.open_holds == 0 {
            closed.remove(&window);
        }
    }

    /// Whether `committed` of `granted` reaches the lowest threshold not in `fired`
    /// (thresholds ascend, so no other unfired one can be reached otherwise): one
    /// multiplication on the common path instead of a pass over every threshold.
    fn may_cross(&self, committed: i64, granted: i64, fired: u64) -> bool {
        let thresholds = &self.spec.alert_thresholds_bps;
        let lowest = (!fired).trailing_zeros() as usize;
        thresholds.get(lowest).is_some_and(|bps| {
            i128::from(committed) * 10_000 >= i128::from(*bps) * i128::from(granted)
        })
    }

    /// Threshold bits not yet in `fired` that `committed` of `granted` reaches.
    fn crossed(&self, committed: i64, granted: i64, fired: u64) -> impl Iterator<Item = usize> {
        let thresholds = &self.spec.alert_thresholds_bps;
        thresholds
            .iter()
            .enumerate()
            .filter(move |(bit, bps)| {
                fired & (1 << bit) == 0
                    && i128::from(committed) * 10_000 >= i128::from(**bps) * i128::from(granted)
            })
            .map(|(bit, _)| bit)
    }

    fn alert(&self, window: u64, bit: usize, committed: i64, granted: i64) -> AlertEvent {
        AlertEvent {
            node: self.id,
            window,
            threshold_bps: self.spec.alert_thresholds_bps[bit],
            committed_microcents: committed,
            granted_microcents: granted,
        }
    }

    /// The current window's books; exact only while the node is held still (every
    /// caller freezes it).
    fn current_books(&self) -> WindowBooks {
        let granted = self.hot.granted.load(Ordering::Relaxed);
        let remaining = self.hot.remaining.load(Ordering::Relaxed);
        let committed = self.hot.committed.load(Ordering::Relaxed);
        let overrun = self.hot.overrun.load(Ordering::Relaxed);
        let open_holds = (self.hot.gate.load(Ordering::Relaxed) & OPEN_MASK) >> OPEN_SHIFT;
        // Cannot overflow: remaining + committed <= granted + overrun, each at least zero.
        let reserved = granted + overrun - remaining - committed;
        // Every tree hold is of a positive amount: something is reserved exactly
        // when a hold is open.
        debug_assert!(reserved >= 0 && remaining >= 0 && committed >= 0);
        debug_assert_eq!(
            reserved > 0,
            open_holds > 0,
            "reserved {reserved} with {open_holds} holds"
        );
        WindowBooks {
            window: self.hot.window.load(Ordering::Relaxed),
            granted_microcents: granted,
            remaining_microcents: remaining,
            reserved_microcents: reserved,
            committed_microcents: committed,
            expired_microcents: 0,
            overrun_microcents: overrun,
            open_holds,
            fired_mask: u32::try_from(self.hot.fired.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
        }
    }
}

/// A resolved set of nodes a reservation takes, in ascending id order.
///
/// Build it once per (key, scopes) with [`BudgetTree::plan`] and reuse it: the
/// reservation path then does no lookup.
#[derive(Clone)]
pub struct HoldPlan {
    // A plain std `Arc`: the plan is immutable once built, so Loom has nothing
    // to model in it (and loom's `Arc` does not hold slices).
    nodes: std::sync::Arc<[Arc<Node>]>,
}

impl std::fmt::Debug for HoldPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.nodes.iter().map(|n| n.id))
            .finish()
    }
}

impl HoldPlan {
    /// The nodes held, ascending.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.iter().map(|node| node.id)
    }
}

#[derive(Default)]
struct Registry {
    nodes: Vec<Arc<Node>>,
    by_name: HashMap<String, NodeId>,
}

type Subscribers = Vec<std::sync::mpsc::Sender<AlertEvent>>;

/// A budget hierarchy with scopes, windows and alerts (see the [crate documentation](crate)).
pub struct BudgetTree {
    registry: RwLock<Registry>,
    subscribers: Mutex<Subscribers>,
    rollbacks: AtomicU64,
    nodes_rolled_back: AtomicU64,
}

impl std::fmt::Debug for BudgetTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetTree")
            .field("nodes", &self.registry.read().nodes.len())
            .finish_non_exhaustive()
    }
}

impl Default for BudgetTree {
    fn default() -> Self {
        Self::new()
    }
}

/// An open hold on every node of a plan. Dropping it releases it.
#[must_use = "dropping a tree reservation releases it at once"]
pub struct TreeReservation {
    plan: Option<HoldPlan>,
    windows: [u64; MAX_PLAN_NODES],
    held_microcents: i64,
}

impl std::fmt::Debug for TreeReservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeReservation")
            .field("plan", &self.plan)
            .field("held_microcents", &self.held_microcents)
            .finish_non_exhaustive()
    }
}

/// What settling a [`TreeReservation`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TreeSettlement {
    /// Spent, on every node of the plan.
    pub committed_microcents: i64,
    /// Given back, on every node (to `remaining`, or to `expired` for a node
    /// whose window closed meanwhile).
    pub refunded_microcents: i64,
    /// Alerts this settlement fired.
    pub alerts: Vec<AlertEvent>,
}

impl TreeReservation {
    /// The amount held on every node.
    pub fn held_microcents(&self) -> i64 {
        self.held_microcents
    }

    /// The window each node of the plan was held in, in plan order.
    pub fn windows(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        let nodes = self.plan.as_ref().map_or(&[][..], |plan| &plan.nodes[..]);
        nodes
            .iter()
            .zip(self.windows.iter())
            .map(|(node, window)| (node.id, *window))
    }

    /// Each node of the plan with its name and the window it was held in, in plan
    /// order; no lookup and no copy (the plan holds the nodes).
    pub fn held(&self) -> impl Iterator<Item = (NodeId, &str, u64)> + '_ {
        let nodes = self.plan.as_ref().map_or(&[][..], |plan| &plan.nodes[..]);
        nodes
            .iter()
            .zip(self.windows.iter())
            .map(|(node, window)| (node.id, node.spec.name.as_str(), *window))
    }

    /// Spends `actual_microcents` (0 to the hold) on every node and refunds the rest.
    ///
    /// # Errors
    ///
    /// [`TreeError::InvalidAmount`] for a negative cost and
    /// [`TreeError::ActualExceedsHold`]; the reservation is then released.
    pub fn commit(mut self, actual_microcents: i64) -> Result<TreeSettlement, TreeError> {
        if actual_microcents < 0 {
            return Err(TreeError::InvalidAmount {
                amount_microcents: actual_microcents,
            });
        }
        if actual_microcents > self.held_microcents {
            return Err(TreeError::ActualExceedsHold {
                held_microcents: self.held_microcents,
                actual_microcents,
            });
        }
        Ok(self.settle(actual_microcents))
    }

    /// Spends `actual_microcents`, which may exceed the hold, on every node: the
    /// overrun path, for work already done that cost more than its estimate. Each
    /// node takes the excess from its spendable balance as far as it goes (once its
    /// window has closed, from the expired rest) and records the rest as
    /// [`WindowBooks::overrun_microcents`], so every window still balances:
    /// `remaining + reserved + committed == granted - expired + overrun`. A cost
    /// up to the hold is a plain [`commit`](Self::commit).
    ///
    /// The split between spendable and overrun depends on the order of operations
    /// on the node; a caller that must reproduce it from a log (the gate) runs the
    /// overrun while no other operation is in flight.
    ///
    /// # Errors
    ///
    /// [`TreeError::InvalidAmount`] for a negative cost; the reservation is then
    /// released.
    pub fn commit_with_overrun(
        mut self,
        actual_microcents: i64,
    ) -> Result<TreeSettlement, TreeError> {
        if actual_microcents < 0 {
            return Err(TreeError::InvalidAmount {
                amount_microcents: actual_microcents,
            });
        }
        Ok(self.settle(actual_microcents))
    }

    /// Releases the hold on every node.
    pub fn release(mut self) -> TreeSettlement {
        self.settle(0)
    }

    fn settle(&mut self, actual: i64) -> TreeSettlement {
        let mut settlement = TreeSettlement {
            committed_microcents: actual,
            refunded_microcents: (self.held_microcents - actual).max(0),
            alerts: Vec::new(),
        };
        if let Some(plan) = self.plan.take() {
            for (node, window) in plan.nodes.iter().zip(self.windows.iter()) {
                node.settle(
                    *window,
                    self.held_microcents,
                    actual,
                    &mut settlement.alerts,
                );
            }
        }
        settlement
    }
}

impl Drop for TreeReservation {
    fn drop(&mut self) {
        if self.plan.is_some() {
            let _released = self.settle(0);
        }
    }
}

impl BudgetTree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self {
            registry: RwLock::new(Registry::default()),
            subscribers: Mutex::new(Vec::new()),
            rollbacks: AtomicU64::new(0),
            nodes_rolled_back: AtomicU64::new(0),
        }
    }

    /// Defines a node and returns its id.
    ///
    /// # Errors
    ///
    /// [`TreeError::InvalidName`], [`TreeError::InvalidParent`],
    /// [`TreeError::InvalidSpec`] or [`TreeError::TooManyNodes`].
    pub fn define(&self, spec: NodeSpec) -> Result<NodeId, TreeError> {
        if spec.name.is_empty() || spec.name.len() > MAX_NODE_NAME_BYTES {
            return Err(TreeError::InvalidName {
                len_bytes: spec.name.len(),
            });
        }
        if spec.limit_microcents < 0 {
            return Err(TreeError::InvalidSpec("negative limit"));
        }
        if spec.window.validate().is_err() {
            return Err(TreeError::InvalidSpec("window spec"));
        }
        let thresholds = &spec.alert_thresholds_bps;
        if thresholds.len() > MAX_ALERT_THRESHOLDS
            || thresholds.iter().any(|bps| *bps == 0 || *bps > 10_000)
            || thresholds.windows(2).any(|pair| pair[0] >= pair[1])
        {
            return Err(TreeError::InvalidSpec(
                "thresholds must be 1..=10000 bps, strictly ascending, at most 16",
            ));
        }
        let mut registry = self.registry.write();
        if registry.by_name.contains_key(&spec.name) {
            return Err(TreeError::InvalidName {
                len_bytes: spec.name.len(),
            });
        }
        let depth = match (&spec.scope, spec.parent) {
            (_, None) => 0,
            (NodeScope::Chain, Some(parent)) => {
                let parent = registry
                    .nodes
                    .get(parent.0 as usize)
                    .ok_or_else(|| TreeError::UnknownNode(format!("#{}", parent.0)))?;
                if parent.spec.scope != NodeScope::Chain {
                    return Err(TreeError::InvalidParent("the parent is a scope node"));
                }
                if usize::from(parent.depth) + 1 >= MAX_CHAIN_DEPTH {
                    return Err(TreeError::InvalidParent("the chain would be too deep"));
                }
                parent.depth + 1
            }
            (_, Some(_)) => return Err(TreeError::InvalidParent("a scope node has no parent")),
        };
        if registry.nodes.len() >= MAX_TREE_NODES {
            return Err(TreeError::TooManyNodes);
        }
        let id = NodeId(u32::try_from(registry.nodes.len()).map_err(|_| TreeError::TooManyNodes)?);
        let node = Node {
            hot: Hot {
                gate: AtomicU64::new(0),
                window: AtomicU64::new(spec.start_window),
                remaining: AtomicI64::new(spec.limit_microcents),
                committed: AtomicI64::new(0),
                granted: AtomicI64::new(spec.limit_microcents),
                overrun: AtomicI64::new(0),
                fired: AtomicU64::new(0),
            },
            id,
            depth,
            spec,
            closed: Mutex::new(BTreeMap::new()),
        };
        registry.by_name.insert(node.spec.name.clone(), id);
        registry.nodes.push(Arc::new(node));
        Ok(id)
    }

    /// The id of the node called `name`.
    ///
    /// # Errors
    ///
    /// [`TreeError::UnknownNode`].
    pub fn node_id(&self, name: &str) -> Result<NodeId, TreeError> {
        self.registry
            .read()
            .by_name
            .get(name)
            .copied()
            .ok_or_else(|| TreeError::UnknownNode(name.to_owned()))
    }

    /// The name of `node` (a copy of the name alone; [`spec`](Self::spec) copies the
    /// whole definition).
    ///
    /// # Errors
    ///
    /// [`TreeError::UnknownNode`].
    pub fn name(&self, node: NodeId) -> Result<String, TreeError> {
        self.registry
            .read()
            .nodes
            .get(node.0 as usize)
            .map(|node| node.spec.name.clone())
            .ok_or_else(|| TreeError::UnknownNode(format!("#{}", node.0)))
    }

    /// The spec `node` was defined with.
    ///
    /// # Errors
    ///
    /// [`TreeError::UnknownNode`].
    pub fn spec(&self, node: NodeId) -> Result<NodeSpec, TreeError> {
        Ok(self.node(node)?.spec.clone())
    }

    /// How many nodes the tree holds.
    pub fn len(&self) -> usize {
        self.registry.read().nodes.len()
    }

    /// Whether the tree has no nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn node(&self, node: NodeId) -> Result<Arc<Node>, TreeError> {
        self.registry
            .read()
            .nodes
            .get(node.0 as usize)
            .cloned()
            .ok_or_else(|| TreeError::UnknownNode(format!("#{}", node.0)))
    }

    /// Resolves chain node `key` (with its ancestors) and the `scopes` into a plan.
    ///
    /// # Errors
    ///
    /// [`TreeError::UnknownNode`], or [`TreeError::InvalidPlan`] if `key` is a
    /// scope node, a scope is a chain node or repeated, or more than
    /// [`MAX_PLAN_SCOPES`] scopes are named.
    pub fn plan(&self, key: NodeId, scopes: &[NodeId]) -> Result<HoldPlan, TreeError> {
        if scopes.len() > MAX_PLAN_SCOPES {
            return Err(TreeError::InvalidPlan("too many scopes"));
        }
        let registry = self.registry.read();
        let get = |id: NodeId| {
            registry
                .nodes
                .get(id.0 as usize)
                .ok_or_else(|| TreeError::UnknownNode(format!("#{}", id.0)))
        };
        // Ids first, on the stack; the plan's one allocation holds the nodes.
        let mut ids = [NodeId(0); MAX_PLAN_NODES];
        let mut len = 0;
        let mut at = get(key)?;
        if at.spec.scope != NodeScope::Chain {
            return Err(TreeError::InvalidPlan("the key is a scope node"));
        }
        loop {
            // A chain is at most MAX_CHAIN_DEPTH deep (checked at definition).
            debug_assert!(len < MAX_CHAIN_DEPTH);
            ids[len] = at.id;
            len += 1;
            match at.spec.parent {
                Some(parent) => at = get(parent)?,
                None => break,
            }
        }
        for scope in scopes {
            let node = get(*scope)?;
            if node.spec.scope == NodeScope::Chain {
                return Err(TreeError::InvalidPlan("a scope is a chain node"));
            }
            if ids[..len].contains(&node.id) {
                return Err(TreeError::InvalidPlan("a scope is named twice"));
            }
            ids[len] = node.id;
            len += 1;
        }
        let ids = &mut ids[..len];
        ids.sort_unstable();
        let nodes: std::sync::Arc<[Arc<Node>]> = ids
            .iter()
            .map(|id| Arc::clone(&registry.nodes[id.0 as usize]))
            .collect();
        Ok(HoldPlan { nodes })
    }

    /// Holds `amount_microcents` on every node of `plan`, or on none.
    ///
    /// # Errors
    ///
    /// [`TreeError::InvalidAmount`] for a non-positive amount, or
    /// [`TreeError::Refused`] naming the first node (in id order) that could not
    /// cover it; every node taken before it is given back.
    pub fn try_reserve(
        &self,
        plan: &HoldPlan,
        amount_microcents: i64,
    ) -> Result<TreeReservation, TreeError> {
        if amount_microcents <= 0 {
            return Err(TreeError::InvalidAmount { amount_microcents });
        }
        let mut windows = [0_u64; MAX_PLAN_NODES];
        for (index, node) in plan.nodes.iter().enumerate() {
            match node.hold(amount_microcents) {
                Ok(window) => windows[index] = window,
                Err(remaining) => {
                    let mut alerts = Vec::new();
                    for (taken, window) in plan.nodes[..index].iter().zip(windows.iter()) {
                        taken.settle(*window, amount_microcents, 0, &mut alerts);
                    }
                    debug_assert!(alerts.is_empty());
                    if index > 0 {
                        self.rollbacks.fetch_add(1, Ordering::Relaxed);
                        self.nodes_rolled_back
                            .fetch_add(index as u64, Ordering::Relaxed);
                    }
                    return Err(TreeError::Refused {
                        node: node.id,
                        node_name: node.spec.name.clone(),
                        scope_kind: node.spec.scope.kind(),
                        depth: node.depth,
                        remaining_microcents: remaining,
                        requested_microcents: amount_microcents,
                    });
                }
            }
        }
        Ok(TreeReservation {
            plan: Some(plan.clone()),
            windows,
            held_microcents: amount_microcents,
        })
    }

    /// Adds `amount_microcents` to `node`'s current window.
    ///
    /// # Errors
    ///
    /// [`TreeError::UnknownNode`], [`TreeError::InvalidAmount`] or
    /// [`TreeError::Overflow`].
    pub fn top_up(&self, node: NodeId, amount_microcents: i64) -> Result<(), TreeError> {
        if amount_microcents <= 0 {
            return Err(TreeError::InvalidAmount { amount_microcents });
        }
        let node = self.node(node)?;
        let entered = node.enter(false);
        debug_assert!(entered, "only an opening entry can be refused");
        if crate::cas::add_unless_overflow(&node.hot.granted, amount_microcents).is_err() {
            node.leave(false);
            return Err(TreeError::Overflow);
        }
        node.hot
            .remaining
            .fetch_add(amount_microcents, Ordering::Relaxed);
        node.leave(false);
        Ok(())
    }

    /// Moves `node` to window `to_window`, expiring the old window's spendable rest.
    ///
    /// Returns `None` if the node is already in `to_window` (so a caller that
    /// races others to the same boundary resets it once).
    ///
    /// # Errors
    ///
    /// [`TreeError::UnknownNode`], or [`TreeError::WindowBehind`] for an
    /// earlier window.
    pub fn advance_window(
        &self,
        node: NodeId,
        to_window: u64,
    ) -> Result<Option<WindowReset>, TreeError> {
        let node = self.node(node)?;
        node.freeze();
        let old = node.current_books();
        if to_window <= old.window {
            node.thaw();
            return if to_window == old.window {
                Ok(None)
            } else {
                Err(TreeError::WindowBehind {
                    current: old.window,
                    to: to_window,
                })
            };
        }
        debug_assert_eq!(old.imbalance(), 0);
        if old.open_holds > 0 {
            let closed = WindowBooks {
                remaining_microcents: 0,
                expired_microcents: old.remaining_microcents,
                ..old
            };
            debug_assert_eq!(closed.imbalance(), 0);
            node.closed.lock().insert(old.window, closed);
        }
        let limit = node.spec.limit_microcents;
        node.hot.window.store(to_window, Ordering::Relaxed);
        node.hot.granted.store(limit, Ordering::Relaxed);
        node.hot.remaining.store(limit, Ordering::Relaxed);
        node.hot.committed.store(0, Ordering::Relaxed);
        node.hot.overrun.store(0, Ordering::Relaxed);
        // The open holds moved to the closed window's record: none is open in the
        // new window (nothing is in flight while the node is frozen).
        node.hot.gate.fetch_and(!OPEN_MASK, Ordering::Relaxed);
        node.hot.fired.store(0, Ordering::Relaxed);
        node.thaw();
        Ok(Some(WindowReset {
            node: node.id,
            from_window: old.window,
            to_window,
            expired_microcents: old.remaining_microcents,
            open_holds: old.open_holds,
        }))
    }

    /// Sets `node`'s books, for recovery from a log: `windows` ascending, the last
    /// one the current window, the others closed windows that still have open holds
    /// (the holds themselves are re-made with [`adopt`](Self::adopt)).
    ///
    /// Only for a node with no open hold in any window; every window must balance
    /// with no balance negative, reserve something exactly when it has open holds,
    /// and, unless it is the current one, have nothing spendable; the current one
    /// has nothing expired.
    ///
    /// # Errors
    ///
    /// [`TreeError::UnknownNode`], or [`TreeError::InvalidSpec`] when the node has
    /// open holds or `windows` is not such a state.
    pub fn restore_window(&self, node: NodeId, windows: &[WindowBooks]) -> Result<(), TreeError> {
        let node = self.node(node)?;
        let invalid = TreeError::InvalidSpec(
            "restored windows must ascend to the current one and each balance",
        );
        let Some((current, closed)) = windows.split_last() else {
            return Err(invalid);
        };
        let bad = |books: &WindowBooks| {
            books.imbalance() != 0
                || books.remaining_microcents < 0
                || books.reserved_microcents < 0
                || books.committed_microcents < 0
                || books.expired_microcents < 0
                || books.overrun_microcents < 0
                || (books.reserved_microcents > 0) != (books.open_holds > 0)
        };
        if bad(current)
            || current.expired_microcents != 0
            || current.open_holds >= OPEN_MASK >> OPEN_SHIFT
            || closed.iter().any(|books| {
                bad(books)
                    || books.remaining_microcents != 0
                    || books.open_holds == 0
                    || books.window >= current.window
            })
            || closed
                .windows(2)
                .any(|pair| pair[0].window >= pair[1].window)
        {
            return Err(invalid);
        }
        node.freeze();
        let busy = node.current_books().open_holds != 0 || !node.closed.lock().is_empty();
        if !busy {
            let hot = &node.hot;
            hot.window.store(current.window, Ordering::Relaxed);
            hot.granted
                .store(current.granted_microcents, Ordering::Relaxed);
            hot.remaining
                .store(current.remaining_microcents, Ordering::Relaxed);
            hot.committed
                .store(current.committed_microcents, Ordering::Relaxed);
            hot.overrun
                .store(current.overrun_microcents, Ordering::Relaxed);
            hot.fired
                .store(u64::from(current.fired_mask), Ordering::Relaxed);
            // Nothing is in flight while frozen: the word is the frozen bit alone.
            hot.gate.store(
                FROZEN | (current.open_holds << OPEN_SHIFT),
                Ordering::Relaxed,
            );
            let mut kept = node.closed.lock();
            for books in closed {
                kept.insert(books.window, *books);
            }
            debug_assert_eq!(node.current_books(), *current);
        }
        node.thaw();
        if busy {
            return Err(TreeError::InvalidSpec("the node has open holds"));
        }
        Ok(())
    }

    /// Re-makes a reservation of `amount_microcents` on every node of `plan`, held
    /// in the windows `windows` names (one per node of the plan), for recovery from
    /// a log: the books [`restore_window`](Self::restore_window) set already count
    /// it, so no balance changes. Settling it settles those windows as the original
    /// reservation would have.
    ///
    /// # Errors
    ///
    /// [`TreeError::InvalidAmount`] for a non-positive amount, or
    /// [`TreeError::InvalidPlan`] when `windows` does not name each node of the
    /// plan once, or names a window the node neither is in nor keeps open holds of.
    pub fn adopt(
        &self,
        plan: &HoldPlan,
        windows: &[(NodeId, u64)],
        amount_microcents: i64,
    ) -> Result<TreeReservation, TreeError> {
        if amount_microcents <= 0 {
            return Err(TreeError::InvalidAmount { amount_microcents });
        }
        if windows.len() != plan.nodes.len() {
            return Err(TreeError::InvalidPlan("one window per node of the plan"));
        }
        let mut held = [0_u64; MAX_PLAN_NODES];
        for (slot, node) in held.iter_mut().zip(plan.nodes.iter()) {
            let mut named = windows.iter().filter(|(id, _)| *id == node.id);
            let (Some((_, window)), None) = (named.next(), named.next()) else {
                return Err(TreeError::InvalidPlan("one window per node of the plan"));
            };
            let current = node.hot.window.load(Ordering::Relaxed);
            if *window != current && !node.closed.lock().contains_key(window) {
                return Err(TreeError::InvalidPlan("a window the node does not hold"));
            }
            *slot = *window;
        }
        Ok(TreeReservation {
            plan: Some(plan.clone()),
            windows: held,
            held_microcents: amount_microcents,
        })
    }

    /// Whether any of `nodes` is in a window earlier than the one its calendar puts
    /// `unix_ms` in (so a reset is due); one registry lookup for all of them. Unknown
    /// nodes and clock values before a calendar's first window count as not behind.
    pub fn any_behind(&self, nodes: &[NodeId], unix_ms: u64) -> bool {
        let registry = self.registry.read();
        nodes.iter().any(|id| {
            registry.nodes.get(id.0 as usize).is_some_and(|node| {
                node.spec
                    .window
                    .window_at(unix_ms)
                    .is_ok_and(|due| due > node.hot.window.load(Ordering::Relaxed))
            })
        })
    }

    /// The calendar `node`'s windows follow.
    ///
    /// # Errors
    ///
    /// [`TreeError::UnknownNode`].
    pub fn window_spec(&self, node: NodeId) -> Result<WindowSpec, TreeError> {
        Ok(self.node(node)?.spec.window)
    }

    /// `node`'s current window id (one relaxed read).
    ///
    /// # Errors
    ///
    /// [`TreeError::UnknownNode`].
    pub fn current_window(&self, node: NodeId) -> Result<u64, TreeError> {
        Ok(self.node(node)?.hot.window.load(Ordering::Relaxed))
    }

    /// The books of `node`'s current window (a consistent copy) and of every
    /// closed window that still has open holds, current first.
    ///
    /// # Errors
    ///
    /// [`TreeError::UnknownNode`].
    pub fn books(&self, node: NodeId) -> Result<Vec<WindowBooks>, TreeError> {
        let node = self.node(node)?;
        node.freeze();
        let current = node.current_books();
        node.thaw();
        let mut books = vec![current];
        books.extend(node.closed.lock().values().copied());
        Ok(books)
    }

    /// Checks that every window of every node balances.
    ///
    /// # Errors
    ///
    /// The first node and window that does not (a bug in this crate).
    pub fn verify_conservation(&self) -> Result<(), (NodeId, WindowBooks)> {
        let count = self.len();
        for index in 0..count {
            let id = NodeId(u32::try_from(index).unwrap_or(u32::MAX));
            let Ok(books) = self.books(id) else { continue };
            for window in books {
                if window.imbalance() != 0 {
                    return Err((id, window));
                }
            }
        }
        Ok(())
    }

    /// A channel that receives every alert fired from now on.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<AlertEvent> {
        let (sender, receiver) = std::sync::mpsc::channel();
        self.subscribers.lock().push(sender);
        receiver
    }

    /// Sends `alerts` to the subscribers (dropping those that hung up).
    ///
    /// The settlement paths return alerts to the caller; the caller passes
    /// them here (the gate does, after logging them), so that the subscribers
    /// see them in log order.
    pub fn publish(&self, alerts: &[AlertEvent]) {
        if alerts.is_empty() {
            return;
        }
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|sender| alerts.iter().all(|alert| sender.send(*alert).is_ok()));
    }

    /// Counters of the all-or-none path.
    pub fn stats(&self) -> TreeStats {
        TreeStats {
            rollbacks: self.rollbacks.load(Ordering::Relaxed),
            nodes_rolled_back: self.nodes_rolled_back.load(Ordering::Relaxed),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{BudgetTree, NodeScope, NodeSpec, TreeError};
    use crate::WindowSpec;

    fn spec(name: &str, parent: Option<super::NodeId>, limit: i64) -> NodeSpec {
        NodeSpec {
            name: name.to_owned(),
            parent,
            scope: NodeScope::Chain,
            limit_microcents: limit,
            window: WindowSpec::Lifetime,
            start_window: 0,
            alert_thresholds_bps: vec![5_000, 10_000],
        }
    }

    #[test]
    fn the_team_refuses_and_is_named() {
        let tree = BudgetTree::new();
        let org = tree.define(spec("org", None, 1_000)).expect("valid");
        let team = tree.define(spec("team", Some(org), 100)).expect("valid");
        let key = tree.define(spec("key", Some(team), 500)).expect("valid");
        let plan = tree.plan(key, &[]).expect("valid");
        let refused = tree.try_reserve(&plan, 150).expect_err("team binds");
        assert!(
            matches!(refused, TreeError::Refused { ref node_name, depth: 1, .. } if node_name == "team"),
            "{refused:?}"
        );
        assert_eq!(tree.stats().rollbacks, 1);
        for node in [org, team, key] {
            let books = tree.books(node).expect("exists");
            assert_eq!(books[0].reserved_microcents, 0);
        }
        let hold = tree.try_reserve(&plan, 60).expect("fits");
        let settled = hold.commit(60).expect("within");
        // 60 of team's 100 crosses 50 %; 60 of key's 500 and org's 1000 does not.
        assert_eq!(settled.alerts.len(), 1);
        assert_eq!(settled.alerts[0].node, team);
        tree.verify_conservation().expect("balanced");
    }

    #[test]
    fn a_hold_across_a_reset_settles_in_its_window() {
        let tree = BudgetTree::new();
        let key = tree.define(spec("key", None, 100)).expect("valid");
        let plan = tree.plan(key, &[]).expect("valid");
        let hold = tree.try_reserve(&plan, 40).expect("fits");
        let reset = tree
            .advance_window(key, 1)
            .expect("forward")
            .expect("a new window");
        assert_eq!(reset.expired_microcents, 60);
        assert_eq!(reset.open_holds, 1);
        assert_eq!(tree.advance_window(key, 1), Ok(None));
        assert!(tree.advance_window(key, 0).is_err());
        let settled = hold.commit(30).expect("within");
        // 30 of the old window's 100 does not reach 50 %.
        assert!(settled.alerts.is_empty());
        let books = tree.books(key).expect("exists");
        assert_eq!(books.len(), 1, "the closed window is gone once settled");
        assert_eq!(books[0].window, 1);
        assert_eq!(books[0].remaining_microcents, 100);
        tree.verify_conservation().expect("balanced");
    }

    #[test]
    fn an_overrun_takes_what_is_spendable_and_records_the_rest() {
        let tree = BudgetTree::new();
        let key = tree.define(spec("key", None, 100)).expect("valid");
        let plan = tree.plan(key, &[]).expect("valid");
        let hold = tree.try_reserve(&plan, 60).expect("fits");
        let settled = hold.commit_with_overrun(130).expect("the overrun path");
        assert_eq!(settled.alerts.len(), 2, "50 % and 100 % both reached");
        let books = tree.books(key).expect("exists")[0];
        assert_eq!(
            (
                books.remaining_microcents,
                books.reserved_microcents,
                books.committed_microcents,
                books.overrun_microcents
            ),
            (0, 0, 130, 30)
        );
        assert_eq!(books.imbalance(), 0);
        // Once the window is closed, the expired rest covers what it can.
        let next = tree.try_reserve(&plan, 1).expect_err("nothing spendable");
        assert!(matches!(next, TreeError::Refused { .. }));
        let _reset = tree.advance_window(key, 1).expect("forward");
        let hold = tree.try_reserve(&plan, 40).expect("a fresh window");
        let _reset = tree.advance_window(key, 2).expect("forward");
        let _settled = hold.commit_with_overrun(120).expect("the overrun path");
        let books = tree.books(key).expect("exists");
        assert_eq!(books.len(), 1, "the closed window is settled and forgotten");
        tree.verify_conservation().expect("balanced");
    }

    #[test]
    fn restored_books_and_adopted_holds_settle_as_the_originals() {
        let first = BudgetTree::new();
        let second = BudgetTree::new();
        let mut plans = Vec::new();
        for tree in [&first, &second] {
            let org = tree.define(spec("org", None, 1_000)).expect("valid");
            let key = tree.define(spec("key", Some(org), 500)).expect("valid");
            plans.push((key, tree.plan(key, &[]).expect("valid")));
        }
        let (key, plan) = &plans[0];
        let old = first.try_reserve(plan, 70).expect("fits");
        let _reset = first.advance_window(*key, 3).expect("forward");
        let new = first.try_reserve(plan, 20).expect("fits");
        let windows_old: Vec<_> = old.windows().collect();
        let windows_new: Vec<_> = new.windows().collect();
        for id in [super::NodeId(0), super::NodeId(1)] {
            let mut books = first.books(id).expect("exists");
            books.rotate_left(1);
            second.restore_window(id, &books).expect("valid books");
            assert!(second.restore_window(id, &books).is_err(), "only once");
        }
        let (_, plan) = &plans[1];
        let adopted_old = second.adopt(plan, &windows_old, 70).expect("held");
        let adopted_new = second.adopt(plan, &windows_new, 20).expect("held");
        assert!(second.adopt(plan, &windows_old[..1], 70).is_err());
        for (original, adopted, actual) in [(old, adopted_old, 90), (new, adopted_new, 5)] {
            let a = original.commit_with_overrun(actual).expect("settles");
            let b = adopted.commit_with_overrun(actual).expect("settles");
            assert_eq!(a.alerts.len(), b.alerts.len());
        }
        for id in [super::NodeId(0), super::NodeId(1)] {
            assert_eq!(first.books(id), second.books(id));
        }
        second.verify_conservation().expect("balanced");
    }
}
