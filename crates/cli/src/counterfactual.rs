//! `calybris counterfactual DIR --seq N`: for one logged decision, the margin by which
//! the winner won and, for each numeric request field, the nearest value at which the
//! real kernel, under the decision's own policy, decides otherwise.
//!
//! **Margin**: `utility_for_model(winner) − utility_for_model(runner-up)`, or the
//! winner's utility when no runner-up was eligible (the alternative is to execute
//! nothing, worth 0); none for a rejection.
//!
//! **Nearest change**: a decision "changes" when its action or selected model does.
//! - `risk_bps`, `confidence_bps`, `minimum_quality_bps` (0 to 10,000): every value is
//!   tried, up and down from the logged one; the nearest change is exact.
//! - `input_tokens`, `output_tokens`, `max_p95_latency_ms` (`u32`),
//!   `budget_limit_microunits` (`u64`, searched up to 2^53) and
//!   `business_value_microunits` (`i64`, searched within ±2^53): in each direction,
//!   offsets 1, 2, 4, ... until the decision changes, then a binary search between the
//!   last unchanged offset and the first changed one. The value found is verified by
//!   re-running `prescribe` at it (changed) and one step nearer the logged value
//!   (unchanged), so it is an exact boundary; that no nearer change exists between
//!   the probed offsets relies on the decision being piecewise monotone in the field.
//!
//! Fields not searched: the ids, masks and bit sets (not ordered quantities).

use std::path::Path;

use calybris::digest::SealedPolicy;
use calybris::kernel::{KernelAction, KernelDecision, KernelInput};
use serde_json::{Value, json};

use crate::ope::{self, LoggedDecision};
use crate::report::{Code, EXIT_ERROR, EXIT_OK};
use crate::{stderr_line, stdout_text};

/// The nearest value of one field at which the decision changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The field.
    pub field: &'static str,
    /// The logged value.
    pub from: i128,
    /// The nearest value found that changes the decision.
    pub to: i128,
    /// Whether the search was exhaustive (the bps fields).
    pub exhaustive: bool,
    /// The decision there.
    pub action: KernelAction,
    /// The model selected there (0 for a rejection).
    pub model_id: u32,
}

/// What the counterfactual search found.
#[derive(Debug, Clone, PartialEq)]
pub struct Counterfactual {
    /// The margin of the winner, in microunits (`None` for a rejection).
    pub margin_microunits: Option<i64>,
    /// The runner-up, if one was eligible.
    pub runner_up: Option<(u32, i64)>,
    /// For each searched field, the nearest change, if any in its range.
    pub changes: Vec<Change>,
}

fn key(d: &KernelDecision) -> (KernelAction, u32) {
    (d.action, d.selected_model_id)
}

/// A numeric field: its name, range, getter and setter.
struct Field {
    name: &'static str,
    lo: i128,
    hi: i128,
    exhaustive: bool,
    get: fn(&KernelInput) -> i128,
    set: fn(&mut KernelInput, i128),
}

const BPS: i128 = 10_000;
const WIDE: i128 = 1 << 53;

/// The [`Field`] of the input field `$name` of type `$ty`, searched in `$lo..=$hi`
/// (every value when `exhaustive`, else by doubling then bisection). The name in the
/// report is the field's own.
macro_rules! field {
    ($name:ident: $ty:ty, $lo:expr, $hi:expr, exhaustive: $exhaustive:expr) => {
        Field {
            name: stringify!($name),
            lo: $lo,
            hi: $hi,
            exhaustive: $exhaustive,
            get: |i| i128::from(i.$name),
            // The search stays within lo..=hi, which the type holds.
            set: |i, v| i.$name = v as $ty,
        }
    };
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn fields() -> [Field; 8] {
    let tokens = i128::from(u32::MAX);
    [
        field!(risk_bps: u16, 0, BPS, exhaustive: true),
        field!(confidence_bps: u16, 0, BPS, exhaustive: true),
        field!(minimum_quality_bps: u16, 0, BPS, exhaustive: true),
        field!(input_tokens: u32, 0, tokens, exhaustive: false),
        field!(output_tokens: u32, 0, tokens, exhaustive: false),
        field!(max_p95_latency_ms: u32, 0, tokens, exhaustive: false),
        field!(budget_limit_microunits: u64, 0, WIDE, exhaustive: false),
        field!(business_value_microunits: i64, -WIDE, WIDE, exhaustive: false),
    ]
}

/// The nearest change of `field` in direction `dir` (+1 or −1), as an offset.
fn search(policy: &SealedPolicy, input: KernelInput, field: &Field, dir: i128) -> Option<i128> {
    let logged = key(&policy.snapshot().prescribe(input));
    let from = (field.get)(&input);
    let limit = if dir > 0 {
        field.hi - from
    } else {
        from - field.lo
    };
    let changed = |offset: i128| {
        let mut probe = input;
        (field.set)(&mut probe, from + dir * offset);
        key(&policy.snapshot().prescribe(probe)) != logged
    };
    if limit <= 0 {
        return None;
    }
    if field.exhaustive {
        return (1..=limit).find(|&o| changed(o));
    }
    let (mut unchanged, mut step) = (0i128, 1i128);
    let hit = loop {
        let offset = step.min(limit);
        if changed(offset) {
            break offset;
        }
        if offset == limit {
            return None;
        }
        unchanged = offset;
        step *= 2;
    };
    let (mut lo, mut hi) = (unchanged, hit);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if changed(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    // Exact boundary: changed at `hi`, unchanged one step nearer.
    (changed(hi) && !changed(hi - 1)).then_some(hi)
}

/// The margin and nearest changes of `decision` under `policy`.
#[must_use]
pub fn counterfactual(policy: &SealedPolicy, decision: &LoggedDecision) -> Counterfactual {
    let snapshot = policy.snapshot();
    let input = decision.input;
    let logged = &decision.decision;
    let winner = logged
        .is_selection()
        .then(|| snapshot.utility_for_model(input, logged.selected_model_id))
        .flatten();
    let runner_up = (logged.eligible_models >= 2)
        .then(|| {
            snapshot
                .utility_for_model(input, logged.counterfactual_model_id)
                .map(|u| (logged.counterfactual_model_id, u))
        })
        .flatten();
    let margin_microunits = winner.map(|w| w.saturating_sub(runner_up.map_or(0, |(_, u)| u)));
    let mut changes = Vec::new();
    for field in fields() {
        let from = (field.get)(&input);
        let up = search(policy, input, &field, 1);
        let down = search(policy, input, &field, -1);
        let best = match (up, down) {
            (Some(u), Some(d)) if d < u => Some(from - d),
            (Some(u), _) => Some(from + u),
            (None, Some(d)) => Some(from - d),
            (None, None) => None,
        };
        if let Some(to) = best {
            let mut probe = input;
            (field.set)(&mut probe, to);
            let there = snapshot.prescribe(probe);
            changes.push(Change {
                field: field.name,
                from,
                to,
                exhaustive: field.exhaustive,
                action: there.action,
                model_id: there.selected_model_id,
            });
        }
    }
    Counterfactual {
        margin_microunits,
        runner_up,
        changes,
    }
}

fn action_name(action: KernelAction) -> &'static str {
    match action {
        KernelAction::ExecuteRequested => "execute-requested",
        KernelAction::Substitute => "substitute",
        KernelAction::Reject => "reject",
    }
}

/// `calybris counterfactual DIR --seq N`.
#[must_use]
pub fn run(dir: &Path, sequence: u64, keys: &crate::ope_cmd::Keys, json: bool) -> u8 {
    let options = match keys.options() {
        Ok(options) => options,
        Err(code) => return code,
    };
    let log = match ope::load(dir, &options) {
        Ok(log) => log,
        Err(e) => {
            stderr_line(&format!(
                "ERROR {}: {}: {e}",
                Code::LogNotVerified.code(),
                dir.display()
            ));
            return EXIT_ERROR;
        }
    };
    let Some(decision) = log.decisions.iter().find(|d| d.sequence == sequence) else {
        stderr_line(&format!(
            "ERROR {}: record {sequence} is not a decision",
            Code::NotFound.code()
        ));
        return EXIT_ERROR;
    };
    let Some(policy) = log.policies.get(&decision.policy_digest.0) else {
        stderr_line(&format!(
            "ERROR {}: the decision's policy is not in the log",
            Code::LogNotVerified.code()
        ));
        return EXIT_ERROR;
    };
    let cf = counterfactual(policy, decision);
    let logged = &decision.decision;
    if json {
        let value: Value = json!({
            "sequence": sequence,
            "action": action_name(logged.action),
            "model_id": logged.selected_model_id,
            "margin_microunits": cf.margin_microunits,
            "runner_up": cf.runner_up.map(|(m, u)| json!({"model_id": m, "utility_microunits": u})),
            "changes": cf.changes.iter().map(|c| json!({
                "field": c.field, "from": c.from.to_string(), "to": c.to.to_string(),
                "exhaustive": c.exhaustive, "action": action_name(c.action), "model_id": c.model_id,
            })).collect::<Vec<_>>(),
        });
        stdout_text(&format!("{value}\n"));
        return EXIT_OK;
    }
    let mut text = format!(
        "decision {sequence}: {} model {}",
        action_name(logged.action),
        logged.selected_model_id
    );
    match (cf.margin_microunits, cf.runner_up) {
        (Some(m), Some((r, u))) => text.push_str(&format!(
            ", won by {m} microunits over model {r} (utility {u})\n"
        )),
        (Some(m), None) => text.push_str(&format!(
            ", won by {m} microunits over executing nothing (no runner-up eligible)\n"
        )),
        _ => text.push_str(", a rejection: no margin\n"),
    }
    for c in &cf.changes {
        text.push_str(&format!(
            "  {} {} -> {}: {} model {} ({})\n",
            c.field,
            c.from,
            c.to,
            action_name(c.action),
            c.model_id,
            if c.exhaustive {
                "exhaustive"
            } else {
                "boundary verified"
            }
        ));
    }
    stdout_text(&text);
    EXIT_OK
}
