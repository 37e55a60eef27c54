//! Text forms of decisions and explanations, for `show` and `explain`.

use std::fmt::Write as _;

use calybris::digest::{Digest, decision_digest, digest_to_hex, input_digest};
use calybris::kernel::{
    CandidateVerdict, Explanation, GateKind, KernelAction, KernelDecision, KernelInput,
    UtilityTerms,
};
use serde::Serialize;

/// The upper-case word of an action, as printed.
#[must_use]
pub const fn action_word(action: KernelAction) -> &'static str {
    match action {
        KernelAction::ExecuteRequested => "EXECUTE",
        KernelAction::Substitute => "SUBSTITUTE",
        KernelAction::Reject => "REJECT",
    }
}

fn gate_text(gate: GateKind, measured: u64, limit: u64) -> String {
    match gate {
        GateKind::Disabled => "disabled: the candidate is switched off".to_owned(),
        GateKind::Quality => format!("quality: {measured} bps below the minimum {limit} bps"),
        GateKind::Latency => format!("latency: p95 {measured} ms above the limit {limit} ms"),
        GateKind::Capability => {
            format!("capability: offers {measured:#b}, the request needs {limit:#b}")
        }
        GateKind::ProviderUnrepresentable => {
            format!("provider: id {measured} is above the maximum {limit}")
        }
        GateKind::ProviderNotAllowed => {
            format!("provider: bit {measured:#x} is not in the allowed mask {limit:#x}")
        }
        GateKind::Region => {
            format!("region: serves {measured:#b}, the request needs one of {limit:#b}")
        }
        GateKind::RiskCeiling => {
            format!("risk ceiling: accepts {measured} bps, the request carries {limit} bps")
        }
    }
}

fn terms_text(t: &UtilityTerms) -> String {
    format!(
        "utility {} = quality-adjusted value {} - risk penalty {} - cost {} - latency penalty {}",
        t.utility, t.quality_adjusted, t.risk_penalty, t.cost_microunits, t.latency_penalty
    )
}

fn verdict_text(verdict: &CandidateVerdict) -> String {
    match verdict {
        CandidateVerdict::Rejected {
            gate,
            measured,
            limit,
        } => format!(
            "turned away by gate {}",
            gate_text(*gate, *measured, *limit)
        ),
        CandidateVerdict::OverBudget {
            cost_microunits,
            limit_microunits,
        } => format!(
            "turned away by gate budget: costs {cost_microunits}, the request allows {limit_microunits}"
        ),
        CandidateVerdict::NonPositiveUtility(terms) => {
            format!("not eligible, {}", terms_text(terms))
        }
        CandidateVerdict::Eligible(terms) => format!("eligible, {}", terms_text(terms)),
    }
}

/// The decision in one line.
#[must_use]
pub fn decision_line(d: &KernelDecision) -> String {
    let mut line = format!("{} ({})", action_word(d.action), d.reason);
    if d.is_selection() {
        let _ = write!(
            line,
            ": model {} at an estimated cost of {} microunits, utility {}",
            d.selected_model_id, d.estimated_cost_microunits, d.expected_utility_microunits
        );
    }
    if d.counterfactual_model_id != 0 {
        let _ = write!(
            line,
            "; runner-up model {} (utility {})",
            d.counterfactual_model_id, d.counterfactual_utility_microunits
        );
    }
    line
}

/// The full text of an explanation: the decision, the digests and one line per
/// candidate.
#[must_use]
pub fn explanation_text(
    policy_digest: &Digest,
    input: &KernelInput,
    explanation: &Explanation,
) -> String {
    let d = &explanation.decision;
    let mut out = String::new();
    let _ = writeln!(out, "decision: {}", decision_line(d));
    let _ = writeln!(
        out,
        "request {}: model {} asked for, {} input + {} output tokens, value {}, budget {}, risk {} bps",
        input.request_sequence,
        input.requested_model_id,
        input.input_tokens,
        input.output_tokens,
        input.business_value_microunits,
        input.budget_limit_microunits,
        input.risk_bps
    );
    let _ = writeln!(
        out,
        "policy epoch {}, catalog epoch {}, policy digest {}",
        d.policy_epoch,
        d.catalog_epoch,
        digest_to_hex(policy_digest)
    );
    let _ = writeln!(
        out,
        "input digest {}, decision digest {}",
        digest_to_hex(&input_digest(input)),
        digest_to_hex(&decision_digest(d))
    );
    if explanation.candidates.is_empty() {
        let _ = writeln!(
            out,
            "no candidate was evaluated: the request was refused as a whole ({})",
            d.reason
        );
        return out;
    }
    let _ = writeln!(
        out,
        "candidates: {} evaluated, {} eligible",
        explanation.trace.evaluated_models, explanation.trace.eligible_models
    );
    for row in &explanation.candidates {
        let mark = if d.is_selection() && row.model_id == d.selected_model_id {
            "* "
        } else {
            "  "
        };
        let _ = writeln!(
            out,
            "{mark}model {:>6}: {}",
            row.model_id,
            verdict_text(&row.verdict)
        );
    }
    out
}

/// The JSON form of an explanation with its digests.
#[derive(Serialize)]
pub struct ExplanationJson<'a> {
    /// The policy digest, hex.
    pub policy_digest: String,
    /// The input digest, hex.
    pub input_digest: String,
    /// The decision digest, hex.
    pub decision_digest: String,
    /// The request.
    pub input: &'a KernelInput,
    /// The decision, trace and candidate verdicts.
    pub explanation: &'a Explanation,
}

impl<'a> ExplanationJson<'a> {
    /// Gathers the parts.
    #[must_use]
    pub fn new(
        policy_digest: &Digest,
        input: &'a KernelInput,
        explanation: &'a Explanation,
    ) -> Self {
        Self {
            policy_digest: digest_to_hex(policy_digest),
            input_digest: digest_to_hex(&input_digest(input)),
            decision_digest: digest_to_hex(&decision_digest(&explanation.decision)),
            input,
            explanation,
        }
    }
}
