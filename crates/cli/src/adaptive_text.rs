//! `calybris show --seq N` on an adaptive decision: the engine's suggestion in words
//! (regime, why the floor, the tier drawn, the propensity), and the adaptive records.

use std::fmt::Write as _;

use calybris::digest::digest_to_hex;
use calybris::gate::adaptive::{
    AdaptiveFeedback, AdaptiveNote, AdaptivePolicy, AdaptiveSetup, EnginePending, EngineSnapshot,
    EngineState,
};

/// Basis points as a fraction with two decimals (`7200` → `0.72`).
fn bps(value: u32) -> String {
    format!("{}.{:02}", value / 10_000, (value % 10_000) / 100)
}

/// The explanation of `note`; `setup` (the log's adaptive setup, if it was read
/// before the decision) names the regime and the tier.
#[must_use]
pub fn note_text(note: &AdaptiveNote, setup: Option<&AdaptiveSetup>) -> String {
    let mut text = String::from("adaptive engine:\n");
    let regime_label = setup
        .and_then(|s| s.regimes.get(note.regime as usize))
        .map_or_else(
            || format!("regime {}", note.regime),
            |r| format!("regime {} ({:?})", note.regime, r.label),
        );
    let how = match &note.label {
        Some(label)
            if setup.is_some_and(|s| {
                s.regimes
                    .get(note.regime as usize)
                    .is_some_and(|r| r.label == *label)
            }) =>
        {
            format!("the caller labelled the request {label:?}")
        }
        Some(label) => format!(
            "the caller's label {label:?} names no regime, so by its features {:?} (the regime of the lowest anomaly score among those with enough observations, or the fallback)",
            note.features
        ),
        None => format!(
            "no label; by its features {:?} (the regime of the lowest anomaly score among those with enough observations, or the fallback)",
            note.features
        ),
    };
    let _ = writeln!(text, "  {regime_label}: {how}");
    let exploring = note.draw.is_some();
    let own = if exploring {
        "the regime's calibrated floor (a success lowers it one step, a failure raises it two)"
    } else {
        "the regime's warm-start floor (exploration is off: the static policy)"
    };
    let _ = writeln!(
        text,
        "  floor {}: the engine suggested {} ({own})",
        bps(note.floor_bps),
        bps(note.floor_suggested_bps)
    );
    match note.client_floor_bps {
        Some(client) if note.client_floor_overrode => {
            let _ = writeln!(
                text,
                "    the client's floor {} is higher and wins (a client floor is never lowered)",
                bps(client)
            );
        }
        Some(client) => {
            let _ = writeln!(
                text,
                "    the client's floor {} is not higher, so the engine's stands",
                bps(client)
            );
        }
        None => {
            let _ = writeln!(text, "    no client floor");
        }
    }
    let tier = setup.and_then(|s| s.tiers.get(note.tier as usize));
    let tier_words = tier.map_or_else(String::new, |t| {
        let model = t
            .requested_model_id
            .map_or_else(|| "the caller's model".to_owned(), |m| format!("model {m}"));
        format!(" (asks for {model}, floor {})", bps(u32::from(t.floor_bps)))
    });
    let policy = setup.map(|s| match s.policy {
        AdaptivePolicy::Thompson { redraws } => format!("Thompson sampling over the regime's Beta posteriors, a table of {} keyed draws per regime, propensity the share of its rows the tier wins", u64::from(redraws) + 1),
        AdaptivePolicy::EpsilonGreedy { epsilon_bps } => format!("epsilon-greedy at {}", bps(epsilon_bps)),
    });
    match note.draw {
        None => {
            let _ = writeln!(
                text,
                "  tier {}{tier_words}: the static policy's tier (exploration off, no draw)",
                note.tier
            );
        }
        Some(draw) if note.explored => {
            let _ = writeln!(
                text,
                "  tier {}{tier_words}: drawn by the learning policy{} (the keyed exploration draw {draw} of 10,000 opened the gate)",
                note.tier,
                policy.map_or_else(String::new, |p| format!(", {p}"))
            );
        }
        Some(draw) => {
            let _ = writeln!(
                text,
                "  tier {}{tier_words}: the static policy's tier (the keyed exploration draw {draw} of 10,000 kept the gate shut)",
                note.tier
            );
        }
    }
    let p = if note.propensity_denominator == 0 {
        0.0
    } else {
        note.propensity_numerator as f64 / note.propensity_denominator as f64
    };
    let _ = writeln!(
        text,
        "  propensity {}/{} (about {p:.6}), exact: `calybris verify` re-derives it",
        note.propensity_numerator, note.propensity_denominator
    );
    let _ = writeln!(
        text,
        "  engine state before the step: {}",
        digest_to_hex(&note.state_digest)
    );
    text
}

/// An adaptive setup record in words.
#[must_use]
pub fn setup_text(head: &str, setup: &AdaptiveSetup) -> String {
    let policy = match setup.policy {
        AdaptivePolicy::Thompson { redraws } => {
            format!("Thompson, a table of {} rows", u64::from(redraws) + 1)
        }
        AdaptivePolicy::EpsilonGreedy { epsilon_bps } => {
            format!("epsilon-greedy at {}", bps(epsilon_bps))
        }
    };
    let feedback = match setup.feedback {
        AdaptiveFeedback::Success => "learns from each outcome's success bit".to_owned(),
        AdaptiveFeedback::Reward {
            cost_bound_bps,
            observations,
        } => format!(
            "learns from each outcome's reward on [-{} of the value, the value], {observations} dithered observations per outcome",
            bps(cost_bound_bps)
        ),
    };
    format!(
        "{head}: {} regimes, {} features, {} tiers (static tier {}), {policy}, exploration {}, floors in [{}, {}], step {}, a snapshot every {} updates; {feedback}\n",
        setup.regimes.len(),
        setup.features,
        setup.tiers.len(),
        setup.static_tier,
        bps(setup.exploration_bps),
        bps(setup.floor_min_bps),
        bps(setup.floor_max_bps),
        bps(setup.step_bps),
        setup.snapshot_every_updates
    )
}

/// An engine snapshot record in words.
#[must_use]
pub fn snapshot_text(head: &str, snapshot: &EngineSnapshot) -> String {
    format!(
        "{head}: engine state {} after {} updates ({} refused), {} decisions waiting for an outcome\n",
        digest_to_hex(&snapshot.state_digest),
        snapshot.updates,
        snapshot.refused_updates,
        snapshot.pending
    )
}

/// An engine state record in words.
#[must_use]
pub fn state_text(head: &str, state: &EngineState) -> String {
    let observed: u64 = state
        .regimes
        .iter()
        .map(|r| r.welford.first().map_or(0, |w| w.count))
        .sum();
    let floors = state
        .regimes
        .iter()
        .zip(&state.setup.regimes)
        .map(|(r, spec)| format!("{} {}", spec.label, bps(r.floor_bps)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{head}: the engine's whole state after {} updates ({} refused; {observed} observations over {} regimes), state {}, {} decisions waiting for an outcome in the pending records that follow; floors: {floors}\n",
        state.updates,
        state.refused_updates,
        state.regimes.len(),
        digest_to_hex(&state.state_digest),
        state.pending
    )
}

/// A pending record (the decisions waiting when an engine state record was written)
/// in words.
#[must_use]
pub fn pending_text(head: &str, pending: &EnginePending) -> String {
    let range = match (pending.decisions.first(), pending.decisions.last()) {
        (Some(first), Some(last)) => {
            format!(", decision records {} to {}", first.sequence, last.sequence)
        }
        _ => String::new(),
    };
    format!(
        "{head}: {} decisions waiting for an outcome when the engine state was written{range}\n",
        pending.decisions.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use calybris::gate::adaptive::PendingDecision;

    #[test]
    fn a_pending_record_names_its_decisions() {
        let pending = EnginePending {
            decisions: [41, 57]
                .into_iter()
                .map(|sequence| PendingDecision {
                    sequence,
                    regime: 0,
                    tier: 1,
                    features: vec![3],
                    business_value_microunits: 0,
                })
                .collect(),
        };
        assert_eq!(
            pending_text("record 90 (engine-pending)", &pending),
            "record 90 (engine-pending): 2 decisions waiting for an outcome when the engine state was written, decision records 41 to 57\n"
        );
        let empty = EnginePending {
            decisions: Vec::new(),
        };
        assert!(pending_text("r", &empty).starts_with("r: 0 decisions waiting"));
    }
}
