//! Quickstart: decide one LLM request, explain it, bind it to its inputs with digests,
//! and replay it the way an auditor would.
//!
//! Run with `cargo run --example quickstart`.

use calybris::digest::SealedPolicy;
use calybris::prelude::*;

/// One catalog row: a model with its provider, quality, latency and prices.
fn model(
    model_id: u32,
    provider_id: u16,
    quality_bps: u16,
    p95_latency_ms: u32,
    input_price: u64,
    output_price: u64,
) -> KernelModel {
    KernelModel {
        model_id,
        provider_id,
        quality_bps,
        risk_ceiling_bps: 7_000,
        enabled: 1,
        p95_latency_ms,
        capabilities: 0b011, // bit 0: chat, bit 1: tools
        region_mask: 0b01,   // bit 0: EU
        // Prices are in microunits (millionths of a dollar) per million tokens.
        input_cost_microunits_per_million_tokens: input_price,
        output_cost_microunits_per_million_tokens: output_price,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A frozen policy: four models, a hard risk limit, a confidence floor, and penalties
    // for risk and latency. Sealing computes the policy digest once.
    let policy = SealedPolicy::new(
        PolicySnapshot::builder()
            .policy_epoch(1)
            .catalog_epoch(1)
            .hard_risk_limit_bps(8_000)
            .minimum_confidence_bps(2_000)
            .risk_penalty_multiplier_bps(10_000)
            .latency_penalty_microunits_per_ms(2)
            .models([
                model(101, 0, 9_400, 1_800, 3_000_000, 15_000_000),
                model(102, 0, 8_200, 450, 250_000, 1_250_000),
                model(201, 1, 9_100, 1_200, 2_500_000, 10_000_000),
                model(301, 2, 7_600, 300, 150_000, 600_000),
            ])
            .build()?,
    );

    // The caller asks for model 101 for a request worth $0.05, with a 5,000 ms latency cap.
    let request = KernelInput {
        request_sequence: 1,
        requested_model_id: 101,
        input_tokens: 3_000,
        output_tokens: 800,
        business_value_microunits: 50_000,
        budget_limit_microunits: 30_000,
        risk_bps: 1_200,
        confidence_bps: 9_000,
        minimum_quality_bps: 8_000,
        max_p95_latency_ms: 5_000,
        required_capabilities: 0b010,
        ..KernelInput::default()
    };

    let explanation = policy.explain(request);
    let decision = explanation.decision;
    println!(
        "decision: {:?} (reason {:?})",
        decision.action, decision.reason
    );
    println!(
        "  selected model {} at index {}: cost {} microunits, utility {} microunits",
        decision.selected_model_id,
        decision.selected_model_index,
        decision.estimated_cost_microunits,
        decision.expected_utility_microunits
    );
    println!(
        "  runner-up model {} with utility {}; {} of {} candidates eligible",
        decision.counterfactual_model_id,
        decision.counterfactual_utility_microunits,
        decision.eligible_models,
        decision.evaluated_models
    );

    println!("explanation:");
    for row in &explanation.candidates {
        match row.verdict {
            CandidateVerdict::Eligible(t) | CandidateVerdict::NonPositiveUtility(t) => println!(
                "  model {:>3}: utility {:>6} = quality-adjusted {} - risk {} - cost {} - latency {}",
                row.model_id,
                t.utility,
                t.quality_adjusted,
                t.risk_penalty,
                t.cost_microunits,
                t.latency_penalty
            ),
            CandidateVerdict::OverBudget {
                cost_microunits,
                limit_microunits,
            } => {
                println!(
                    "  model {:>3}: over budget ({cost_microunits} > {limit_microunits})",
                    row.model_id
                );
            }
            CandidateVerdict::Rejected {
                gate,
                measured,
                limit,
            } => {
                println!(
                    "  model {:>3}: failed {gate:?} gate (has {measured}, needs {limit})",
                    row.model_id
                );
            }
        }
    }

    // The audit bundle binds the decision to the exact policy and request by digest.
    let bundle = policy.verified_audit_bundle(request, &decision)?;
    println!("audit bundle:");
    println!("  policy   {}", bundle.policy_digest);
    println!("  input    {}", bundle.input_digest);
    println!("  decision {}", bundle.decision_digest);

    // An auditor replays the same inputs and gets the identical decision...
    policy.verify_decision(request, &decision)?;
    println!("replay: VERIFIED");

    // ...and a tampered record is caught, naming the first field that differs.
    let tampered = KernelDecision {
        estimated_cost_microunits: decision.estimated_cost_microunits - 1,
        ..decision
    };
    match policy.verify_decision(request, &tampered) {
        Err(mismatch) => println!("tampered record: DIVERGED at field {}", mismatch.field),
        Ok(()) => return Err("a tampered decision replayed".into()),
    }
    Ok(())
}
