//! LLM routing through the gate: three tenants with budgets share one catalog of six
//! models; every request is decided, held against its tenant's budget, logged with
//! every other record of the gate in one chained log, and settled with what it
//! actually cost. At the end the gate directory is verified from disk alone
//! (`verify_dir`: chain, replay, books rebuilt in log order) and the budget's
//! conservation proof is printed. Every amount is in microunits (millionths of a
//! dollar here); the tables show cents.
//!
//! Run with `cargo run -p calybris --example llm_routing --features gate`.

use calybris::gate::{BudgetOutcome, Gate, GateConfig, VerifyOptions, verify_dir};
use calybris::prelude::*;

/// One cent, in microunits (millionths of a dollar).
const CENT: u64 = 10_000;

/// Cents, for display only.
fn cents(microunits: i64) -> f64 {
    microunits as f64 / CENT as f64
}

/// A catalog row. Prices are in microunits (millionths of a dollar) per million tokens.
fn model(model_id: u32, provider_id: u16, quality_bps: u16, p95_latency_ms: u32) -> KernelModel {
    KernelModel {
        model_id,
        provider_id,
        quality_bps,
        risk_ceiling_bps: 7_000,
        enabled: 1,
        p95_latency_ms,
        capabilities: 0b11, // bit 0: chat, bit 1: tools
        region_mask: 0b11,  // bit 0: EU, bit 1: US
        input_cost_microunits_per_million_tokens: 0,
        output_cost_microunits_per_million_tokens: 0,
    }
}

fn priced(mut row: KernelModel, input_price: u64, output_price: u64) -> KernelModel {
    row.input_cost_microunits_per_million_tokens = input_price;
    row.output_cost_microunits_per_million_tokens = output_price;
    row
}

fn catalog() -> Result<SealedPolicy, PolicyError> {
    Ok(SealedPolicy::new(
        PolicySnapshot::builder()
            .policy_epoch(1)
            .catalog_epoch(1)
            .hard_risk_limit_bps(8_000)
            .minimum_confidence_bps(2_000)
            .risk_penalty_multiplier_bps(10_000)
            .latency_penalty_microunits_per_ms(2)
            .models([
                priced(model(101, 0, 9_400, 1_800), 3_000_000, 15_000_000), // large
                priced(model(102, 0, 8_200, 450), 250_000, 1_250_000),      // small
                priced(model(201, 1, 9_100, 1_200), 2_500_000, 10_000_000), // large
                priced(model(202, 1, 7_900, 350), 150_000, 600_000),        // small
                priced(model(301, 2, 8_800, 900), 900_000, 2_700_000),      // medium
                priced(model(401, 3, 7_400, 300), 100_000, 300_000),        // tiny, EU only
            ])
            .build()?,
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("calybris-llm-routing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // Budgets are in microunits. "startup" can afford only a handful of large requests.
    let tenants = [
        ("enterprise", 50 * CENT),
        ("team", 10 * CENT),
        ("startup", CENT),
    ];
    let mut config = GateConfig::new(&dir, catalog()?);
    for (tenant, budget) in tenants {
        config = config.tenant(tenant, budget);
    }
    let gate = Gate::open(config)?;

    // A deterministic workload: tenants take turns asking for a large model (101 or
    // 201) with a mix of request sizes, values, latency caps and risk.
    let mut counts = std::collections::BTreeMap::<&str, [u32; 4]>::new();
    println!(
        "{:>4}  {:<10}  {:>5}  {:<28}  {:>9}  budget",
        "seq", "tenant", "asked", "decision", "est. ¢"
    );
    for sequence in 0..30u64 {
        let tenant = tenants[usize::try_from(sequence % 3)?].0;
        let input = KernelInput {
            request_sequence: sequence,
            requested_model_id: if sequence % 2 == 0 { 101 } else { 201 },
            input_tokens: 500 + u32::try_from(sequence * 137 % 4_000)?,
            output_tokens: 200 + u32::try_from(sequence * 61 % 1_200)?,
            // What a perfect answer is worth: 4, 15 or 90 cents.
            business_value_microunits: [40_000, 150_000, 900_000]
                [usize::try_from(sequence / 3 % 3)?],
            risk_bps: if sequence % 11 == 10 { 8_500 } else { 1_500 },
            confidence_bps: 9_000,
            minimum_quality_bps: 7_500,
            max_p95_latency_ms: if sequence % 4 == 0 { 500 } else { 0 },
            required_capabilities: 0b01,
            ..KernelInput::default()
        };
        let admission = gate.decide(tenant, input)?;
        let decision = *admission.decision();
        let shown = match decision.action {
            KernelAction::Reject => format!("reject ({:?})", decision.reason),
            KernelAction::ExecuteRequested => format!("execute {}", decision.selected_model_id),
            KernelAction::Substitute => format!("substitute {}", decision.selected_model_id),
        };
        let budget = match admission.budget() {
            BudgetOutcome::Reserved { .. } => {
                format!("held (reservation #{})", admission.log_sequence())
            }
            BudgetOutcome::Insufficient {
                remaining_microunits,
            } => format!("REFUSED: {:.4}¢ left", cents(remaining_microunits)),
            BudgetOutcome::RejectedByKernel => "nothing to hold".to_owned(),
            other => format!("{other:?}"),
        };
        println!(
            "{sequence:>4}  {tenant:<10}  {:>5}  {shown:<28}  {:>9.4}  {budget}",
            input.requested_model_id,
            // Display only: one microunit is 1e-4 cent.
            decision.estimated_cost_microunits as f64 / CENT as f64,
        );

        let row = counts.entry(tenant).or_default();
        let column = match (decision.action, admission.is_admitted()) {
            (KernelAction::Reject, _) => 3,
            (_, false) => 2,
            (KernelAction::Substitute, true) => 1,
            (KernelAction::ExecuteRequested, true) => 0,
        };
        row[column] += 1;

        if admission.is_admitted() {
            // The provider bills a bit less than estimated (fewer output tokens
            // than the cap); settle commits that and refunds the rest of the hold.
            let actual_microunits = decision.estimated_cost_microunits * 9 / 10;
            gate.settle(admission, actual_microunits)?;
        } else {
            // Nothing ran: nothing to charge (and nothing is held).
            gate.abandon(admission)?;
        }
    }

    println!();
    println!(
        "{:<10}  {:>7}  {:>10}  {:>14}  {:>8}  {:>10}  {:>10}",
        "tenant", "execute", "substitute", "budget refused", "rejected", "spent ¢", "left ¢"
    );
    for (tenant, _) in tenants {
        let row = counts.get(tenant).copied().unwrap_or_default();
        let books = gate.tenant_books(tenant)?;
        println!(
            "{tenant:<10}  {:>7}  {:>10}  {:>14}  {:>8}  {:>10.4}  {:>10.4}",
            row[0],
            row[1],
            row[2],
            row[3],
            cents(books.committed_microunits),
            cents(books.remaining_microunits),
        );
    }

    let proof = gate.prove_conservation()?;
    println!();
    println!(
        "budget conservation: {} (ledger digest {})",
        if proof.balanced {
            "BALANCED"
        } else {
            "VIOLATED"
        },
        proof.ledger_digest
    );
    gate.close()?;

    // An auditor checks the directory alone: the chain, every decision replayed, the
    // books rebuilt in log order, every settlement matched to its decision.
    let report = verify_dir(&dir, &VerifyOptions::default())?;
    println!(
        "gate log: VERIFIED ({} policy, {} decisions replayed, {} settlements matched; ledger digest {})",
        report.counts.policies,
        report.counts.decisions,
        report.counts.settlements,
        report.conservation.ledger_digest
    );
    if report.conservation.ledger_digest != proof.ledger_digest {
        return Err("the books rebuilt from the log are not the gate's".into());
    }
    std::fs::remove_dir_all(&dir)?;
    if !proof.balanced {
        return Err("the budget does not balance".into());
    }
    Ok(())
}
