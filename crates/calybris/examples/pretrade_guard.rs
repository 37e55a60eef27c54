//! A pre-trade guard: child orders of one instrument are routed to a venue, or
//! rejected, under venue limits (latency, order types, region, operator, risk, a
//! per-order notional cap), and admitted only within the desk's exposure budget.
//!
//! The kernel knows nothing about trading. A venue is a candidate: its "price per
//! million tokens" is the reference price of a share plus the venue's fee, times a
//! million, so a child order of N shares costs its notional plus fees, and the desk's
//! budget is its exposure limit. An admitted order goes out at once, so its cost is
//! committed on admission (exposure taken, fee charged). Every amount, the desks'
//! budgets included, is in the kernel's microunits (millionths of a dollar here).
//!
//! Run with `cargo run -p calybris --example pretrade_guard --features gate`.

use calybris::gate::{BudgetOutcome, Gate, GateConfig, VerifyOptions, verify_dir};
use calybris::prelude::*;

/// One dollar in the kernel's microunits.
const DOLLAR_MICROUNITS: u64 = 1_000_000;

/// Dollars, for display only.
fn dollars(microunits: i64) -> f64 {
    microunits as f64 / DOLLAR_MICROUNITS as f64
}
/// The instrument's reference price: $50.00 a share.
const PRICE_MICROUNITS_PER_SHARE: u64 = 50 * DOLLAR_MICROUNITS;

/// Order-type bits a venue supports.
const LIMIT: u64 = 0b001;
const IOC: u64 = 0b010;
const MIDPOINT_PEG: u64 = 0b100;
/// Region bits.
const US: u64 = 0b01;
const EU: u64 = 0b10;

const VENUE_NAMES: [(u32, &str); 5] = [
    (1, "LIT-A"),
    (2, "LIT-B"),
    (3, "INVERTED"),
    (4, "DARK-MID"),
    (5, "EU-MTF"),
];

fn venue_name(venue_id: u32) -> &'static str {
    VENUE_NAMES
        .iter()
        .find(|(id, _)| *id == venue_id)
        .map_or("-", |(_, name)| name)
}

/// A venue: fill quality, the riskiest order its limits accept, latency, order
/// types, region, and its fee in microunits per share.
#[allow(clippy::too_many_arguments)]
fn venue(
    venue_id: u32,
    operator: u16,
    fill_quality_bps: u16,
    risk_ceiling_bps: u16,
    p95_latency_ms: u32,
    order_types: u64,
    region: u64,
    fee_microunits_per_share: u64,
) -> KernelModel {
    KernelModel {
        model_id: venue_id,
        provider_id: operator,
        quality_bps: fill_quality_bps,
        risk_ceiling_bps,
        enabled: 1,
        p95_latency_ms,
        capabilities: order_types,
        region_mask: region,
        // Per million shares: (price + fee) * 1,000,000.
        input_cost_microunits_per_million_tokens: (PRICE_MICROUNITS_PER_SHARE
            + fee_microunits_per_share)
            * 1_000_000,
        output_cost_microunits_per_million_tokens: 0,
    }
}

/// A child order, as the parent-order algorithm hands it to the guard.
struct Child {
    desk: &'static str,
    shares: u32,
    order_type: u64,
    /// Order risk (size against liquidity, volatility), in basis points.
    risk_bps: u16,
    /// An IOC order needs a fast venue.
    max_latency_ms: u32,
    region: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let venues = SealedPolicy::new(
        PolicySnapshot::builder()
            .policy_epoch(1)
            .catalog_epoch(7)
            .hard_risk_limit_bps(9_000) // no order this risky goes anywhere
            // Risk costs 1% of the order's value per 100% of risk; latency $0.001 a ms.
            .risk_penalty_multiplier_bps(100)
            .latency_penalty_microunits_per_ms(1_000)
            .models([
                venue(1, 0, 9_700, 6_000, 2, LIMIT | IOC, US, 3_000),
                venue(2, 1, 9_650, 7_000, 3, LIMIT | IOC, US, 2_500),
                venue(3, 2, 9_600, 5_000, 4, LIMIT, US, 1_000),
                venue(4, 3, 9_800, 8_000, 12, MIDPOINT_PEG, US, 1_500),
                venue(5, 4, 9_650, 7_000, 6, LIMIT | IOC, EU, 2_000),
            ])
            .build()?,
    );

    let dir = std::env::temp_dir().join(format!("calybris-pretrade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Exposure budgets, in microunits: $600k for the US desk, $100k for the EU desk.
    let desks = [
        ("us-desk", 600_000 * DOLLAR_MICROUNITS),
        ("eu-desk", 100_000 * DOLLAR_MICROUNITS),
    ];
    let gate = Gate::open(
        GateConfig::new(&dir, venues)
            .tenant(desks[0].0, desks[0].1)
            .tenant(desks[1].0, desks[1].1),
    )?;

    let child = |desk, shares, order_type, risk_bps, max_latency_ms, region| Child {
        desk,
        shares,
        order_type,
        risk_bps,
        max_latency_ms,
        region,
    };
    let children = [
        child("us-desk", 2_000, LIMIT, 2_000, 0, US),
        child("us-desk", 1_500, IOC, 3_000, 3, US),
        child("us-desk", 3_000, MIDPOINT_PEG, 4_000, 0, US),
        child("us-desk", 6_000, LIMIT, 2_500, 0, US), // $300k: over the per-order cap
        child("us-desk", 1_000, LIMIT, 9_200, 0, US), // risk over the hard limit
        child("us-desk", 2_500, IOC, 6_500, 3, US),   // only LIT-B takes this risk
        child("us-desk", 4_000, LIMIT, 1_500, 0, US), // over the desk's headroom
        child("us-desk", 1_000, LIMIT, 1_500, 0, US), // smaller: still fits
        child("eu-desk", 1_200, LIMIT, 2_000, 0, EU),
        child("eu-desk", 800, IOC, 2_000, 5, EU), // no EU venue is that fast
        child("eu-desk", 900, LIMIT, 3_000, 0, EU), // over the EU desk's headroom
    ];

    println!(
        "{:>3}  {:<8}  {:>6}  {:<12}  {:<30}  {:>12}  {:>8}  exposure budget",
        "#", "desk", "shares", "type", "decision", "exposure $", "fee $"
    );
    let mut fees_paid = std::collections::BTreeMap::<&str, u64>::new();
    for (sequence, order) in (0u64..).zip(&children) {
        let notional_microunits = u64::from(order.shares) * PRICE_MICROUNITS_PER_SHARE;
        let input = KernelInput {
            request_sequence: sequence,
            requested_model_id: 1, // the default venue; the guard may route elsewhere
            input_tokens: order.shares,
            output_tokens: 0,
            // What the fill is worth to the desk: the notional plus a 5% edge.
            business_value_microunits: i64::try_from(notional_microunits / 100 * 105)?,
            budget_limit_microunits: 250_000 * DOLLAR_MICROUNITS, // per-order notional cap
            risk_bps: order.risk_bps,
            required_capabilities: order.order_type,
            max_p95_latency_ms: order.max_latency_ms,
            required_region_mask: order.region,
            ..KernelInput::default()
        };
        let admission = gate.decide(order.desk, input)?;
        let decision = *admission.decision();
        let order_type = match order.order_type {
            LIMIT => "limit",
            IOC => "IOC",
            _ => "midpoint peg",
        };
        let shown = if decision.is_selection() {
            format!("route to {}", venue_name(decision.selected_model_id))
        } else {
            format!("reject ({:?})", decision.reason)
        };
        let (exposure, fee) = if decision.is_selection() {
            let fee = decision.estimated_cost_microunits - notional_microunits;
            (decision.estimated_cost_microunits, fee)
        } else {
            (0, 0)
        };
        let budget = match admission.budget() {
            BudgetOutcome::Reserved { .. } => "admitted".to_owned(),
            BudgetOutcome::RejectedByKernel => "-".to_owned(),
            BudgetOutcome::Insufficient {
                remaining_microunits,
            } => format!("REFUSED: ${:.2} headroom", dollars(remaining_microunits)),
            other => format!("{other:?}"),
        };
        println!(
            "{sequence:>3}  {:<8}  {:>6}  {order_type:<12}  {shown:<30}  {:>12.2}  {:>8.2}  {budget}",
            order.desk,
            order.shares,
            exposure as f64 / DOLLAR_MICROUNITS as f64,
            fee as f64 / DOLLAR_MICROUNITS as f64,
        );
        if admission.is_admitted() {
            // The order is sent now: commit its exposure and fee on admission.
            gate.settle(admission, exposure)?;
            *fees_paid.entry(order.desk).or_default() += fee;
        } else {
            gate.abandon(admission)?;
        }
    }

    println!();
    println!(
        "{:<8}  {:>14}  {:>14}  {:>14}  {:>10}",
        "desk", "limit $", "exposure $", "headroom $", "fees $"
    );
    for (desk, limit) in desks {
        let books = gate.tenant_books(desk)?;
        let fees = fees_paid.get(desk).copied().unwrap_or(0);
        println!(
            "{desk:<8}  {:>14.2}  {:>14.2}  {:>14.2}  {:>10.2}",
            limit as f64 / DOLLAR_MICROUNITS as f64,
            dollars(books.committed_microunits),
            dollars(books.remaining_microunits),
            fees as f64 / DOLLAR_MICROUNITS as f64,
        );
    }
    println!("(one unit from budget to report: 1 microunit = $0.000001, no conversion)");

    let proof = gate.prove_conservation()?;
    gate.close()?;
    // From the directory alone: the chain, every order replayed, the books rebuilt.
    let report = verify_dir(&dir, &VerifyOptions::default())?;
    println!(
        "exposure books: {}; gate log: VERIFIED ({} orders replayed, {} settlements matched)",
        if proof.balanced && report.conservation.ledger_digest == proof.ledger_digest {
            "BALANCED"
        } else {
            "VIOLATED"
        },
        report.counts.decisions,
        report.counts.settlements
    );
    std::fs::remove_dir_all(&dir)?;
    if !proof.balanced {
        return Err("the exposure books do not balance".into());
    }
    Ok(())
}
