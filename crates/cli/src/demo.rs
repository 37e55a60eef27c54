//! `calybris demo`: a realistic LLM-routing workload through the decision gate
//! (`calybris::gate`) into one gate directory (one chained log, `DIR/log/`, holding
//! every decision, reservation, settlement and budget change), verified at the end
//! with `calybris_gate::verify_dir`, with a summary a person can read at a glance.
//!
//! # The workload
//! 22 models from 6 (fictional) providers, with prices, p95 latencies, qualities,
//! capabilities and regions in the range of today's hosted LLMs; 8 tenants, each
//! with its own request profile (sizes, value, quality floor, latency limit,
//! capabilities, region and provider restrictions, risk). The prices are
//! illustrative, not any vendor's list price.
//!
//! # Determinism
//! Requests come from a SplitMix64 generator with a fixed seed ([`SEED`]); the
//! clock written into the log is fixed ([`DEMO_CLOCK_UNIX_MS`]). The tenants are
//! split into [`WORKERS`] fixed groups, one worker thread each, and a worker serves
//! its tenants' requests each in request order, so every budget outcome, every
//! count, every spend and the ledger's conservation-proof digest depend only on
//! `--requests`. What depends on thread scheduling is the interleaving of
//! tenants in the log (and so its bytes and its anchor), never its content per
//! tenant.
//!
//! # Throughput
//! `decide` does not wait for the disk: a worker decides and settles at once (the
//! settlement follows its decision in the same log, so it can never outlive it) and
//! waits for durability once per batch of [`BATCH`] decisions, on the batch's last
//! ticket, so many admissions are in flight and each group commit is large.
//!
//! # Budgets
//! Each tenant's opening budget is a fixed share of what its own requests would
//! cost if every selection were admitted (computed with `prescribe`, which is
//! pure): most tenants get more than they need, one (`stark-analytics`) gets
//! too little and is refused by the budget once it runs dry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use calybris::digest::SealedPolicy;
use calybris::gate::{BudgetOutcome, Gate, GateConfig, GateError, LOG_DIR, TenantBooks, Ticket};
use calybris::kernel::{
    ALL_PROVIDERS, KernelAction, KernelInput, KernelModel, KernelReason, PolicyError,
    PolicySnapshot,
};

use crate::human::{self, grouped as thousands};
use crate::report::{Code, EXIT_ERROR, EXIT_OK, Reason, Report, anchor_text};
use crate::scan::Target;
use crate::{stderr_line, stdout_text};

/// Requests routed when `--requests` is not given.
pub const DEFAULT_REQUESTS: u64 = 20_000;
/// Directory used when `--dir` is not given.
pub const DEFAULT_DIR: &str = "./calybris-demo";
/// The most requests one run routes (the workload is generated in memory first).
pub const MAX_REQUESTS: u64 = 1_000_000;
/// Seed of the request generator.
pub const SEED: u64 = 0xCA1B_0015_DE30_2026;
/// The fixed clock written into every decision record (2026-01-01T00:00:00Z).
pub const DEMO_CLOCK_UNIX_MS: u64 = 1_767_225_600_000;
/// Group-commit window of the log.
const GROUP_COMMIT_WINDOW: Duration = Duration::from_micros(200);
/// Worker threads; tenant `t` is served by worker `t % WORKERS`.
pub const WORKERS: usize = 4;
/// Decisions a worker makes between two waits for durability.
pub const BATCH: usize = 1_024;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// `--requests` out of range.
    #[error("--requests must be between 1 and {MAX_REQUESTS}, not {0}")]
    Requests(u64),
    /// The directory already holds a demo.
    #[error("{0} already holds a demo log; pass --fresh to replace it, or another --dir")]
    Exists(PathBuf),
    /// A previous demo could not be removed.
    #[error("cannot remove the previous demo in {path}: {source}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The embedded policy is invalid (a bug in the demo).
    #[error("the demo policy is invalid: {0}")]
    Policy(PolicyError),
    /// The gate failed.
    #[error("{0}")]
    Gate(#[from] GateError),
    /// A worker thread panicked (a bug).
    #[error("a worker thread stopped unexpectedly")]
    Worker,
    /// The log written does not verify, or disagrees with what was decided.
    #[error("the demo log does not check out: {0}")]
    Check(String),
}

impl DemoError {
    /// The reason code printed with the error (see docs/CLI.md).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Requests(_) => Reason::BadArgument.code(),
            Self::Exists(_) => Code::DirNotEmpty.code(),
            Self::Check(_) => Code::DemoCheckFailed.code(),
            Self::Remove { .. } => Reason::Unreadable.code(),
            Self::Policy(_) | Self::Gate(_) | Self::Worker => Code::DemoFailed.code(),
        }
    }
}

/// Capability bits of the demo catalog.
mod cap {
    pub const CHAT: u64 = 1 << 0;
    pub const TOOLS: u64 = 1 << 1;
    pub const VISION: u64 = 1 << 2;
    pub const LONG_CONTEXT: u64 = 1 << 3;
}

/// Region bits of the demo catalog.
mod region {
    pub const US: u64 = 1 << 0;
    pub const EU: u64 = 1 << 1;
    pub const APAC: u64 = 1 << 2;
    pub const ALL: u64 = US | EU | APAC;
}

/// The six providers, by `provider_id`.
const PROVIDERS: [&str; 6] = ["northwind", "helix", "aurora", "basalt", "cirrus", "delta"];

/// One catalog row: name, id, provider, quality, risk ceiling, enabled, p95 ms,
/// capabilities, regions, and prices in US cents per million tokens (in, out).
type Row = (
    &'static str,
    u32,
    u16,
    u16,
    u16,
    u8,
    u32,
    u64,
    u64,
    u64,
    u64,
);

/// The 22 models. Prices are in cents per million tokens.
#[rustfmt::skip]
const CATALOG: [Row; 22] = [
    ("nw-ultra",      101, 0, 9_600, 7_000, 1, 4_200, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::US | region::EU, 1_500, 6_000),
    ("nw-pro",        102, 0, 9_300, 8_000, 1, 2_100, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::US | region::EU, 250, 1_000),
    ("nw-mini",       103, 0, 8_400, 8_500, 1,   900, cap::CHAT | cap::TOOLS | cap::VISION, region::ALL, 15, 60),
    ("nw-nano",       104, 0, 7_200, 9_000, 1,   450, cap::CHAT | cap::TOOLS, region::ALL, 5, 20),
    ("hx-opus",       201, 1, 9_700, 6_500, 1, 5_200, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::US | region::EU, 1_500, 7_500),
    ("hx-sonnet",     202, 1, 9_400, 7_500, 1, 2_400, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::US | region::EU, 300, 1_500),
    ("hx-haiku",      203, 1, 8_500, 8_500, 1,   800, cap::CHAT | cap::TOOLS | cap::VISION, region::US | region::EU, 80, 400),
    ("hx-lite",       204, 1, 7_600, 9_000, 1,   500, cap::CHAT | cap::TOOLS, region::US, 25, 125),
    ("au-ultra",      301, 2, 9_500, 7_000, 1, 3_000, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::ALL, 125, 1_000),
    ("au-flash",      302, 2, 8_700, 8_500, 1,   700, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::ALL, 30, 250),
    ("au-flash-lite", 303, 2, 7_900, 9_000, 1,   400, cap::CHAT | cap::TOOLS | cap::VISION, region::ALL, 10, 40),
    ("bs-large",      401, 3, 9_000, 8_000, 1, 1_800, cap::CHAT | cap::TOOLS | cap::LONG_CONTEXT, region::EU, 200, 600),
    ("bs-medium",     402, 3, 8_600, 8_500, 1, 1_000, cap::CHAT | cap::TOOLS, region::EU, 40, 200),
    ("bs-small",      403, 3, 7_700, 9_000, 1,   500, cap::CHAT | cap::TOOLS, region::EU | region::US, 10, 30),
    ("bs-code",       404, 3, 8_800, 8_500, 0,   900, cap::CHAT | cap::TOOLS, region::EU, 30, 90),
    ("cr-llama-405b", 501, 4, 9_000, 8_000, 1, 2_600, cap::CHAT | cap::TOOLS, region::US, 350, 350),
    ("cr-llama-70b",  502, 4, 8_500, 8_500, 1,   900, cap::CHAT | cap::TOOLS, region::US | region::EU, 88, 88),
    ("cr-llama-8b",   503, 4, 7_300, 9_000, 1,   300, cap::CHAT, region::US | region::EU, 18, 18),
    ("cr-mixtral",    504, 4, 8_000, 8_500, 1,   700, cap::CHAT | cap::TOOLS, region::US, 60, 60),
    ("dl-reasoner",   601, 5, 9_200, 7_500, 1, 6_000, cap::CHAT | cap::TOOLS | cap::LONG_CONTEXT, region::APAC | region::US, 55, 219),
    ("dl-chat",       602, 5, 8_700, 8_500, 1, 1_200, cap::CHAT | cap::TOOLS, region::APAC | region::US, 27, 110),
    ("dl-vl",         603, 5, 8_200, 8_500, 1, 1_500, cap::CHAT | cap::VISION, region::APAC, 15, 60),
];

/// The smallest opening budget of a team: one cent, in microunits.
const MIN_BUDGET_MICROUNITS: u64 = 10_000;

/// Microunits (10^-6 USD) per cent.
const MICROUNITS_PER_CENT: u64 = 10_000;

fn models() -> Vec<KernelModel> {
    CATALOG
        .iter()
        .map(
            |&(
                _,
                model_id,
                provider_id,
                quality,
                risk_ceiling,
                enabled,
                p95,
                caps,
                regions,
                input,
                output,
            )| KernelModel {
                model_id,
                provider_id,
                quality_bps: quality,
                risk_ceiling_bps: risk_ceiling,
                enabled,
                p95_latency_ms: p95,
                capabilities: caps,
                region_mask: regions,
                input_cost_microunits_per_million_tokens: input * MICROUNITS_PER_CENT,
                output_cost_microunits_per_million_tokens: output * MICROUNITS_PER_CENT,
            },
        )
        .collect()
}

fn model_name(model_id: u32) -> &'static str {
    CATALOG
        .iter()
        .find(|row| row.1 == model_id)
        .map_or("?", |row| row.0)
}

/// The demo policy: the catalog and the policy-wide limits.
///
/// # Errors
/// Never for the embedded catalog; the error is kept typed all the same.
pub fn policy() -> Result<SealedPolicy, PolicyError> {
    Ok(SealedPolicy::new(
        PolicySnapshot::builder()
            .policy_epoch(1)
            .catalog_epoch(202_601)
            .hard_risk_limit_bps(9_000)
            .minimum_confidence_bps(3_000)
            .risk_penalty_multiplier_bps(10_000)
            .latency_penalty_microunits_per_ms(2)
            .models(models())
            .build()?,
    ))
}

/// How one tenant's requests look.
struct Profile {
    name: &'static str,
    /// Share of all requests, in parts of [`WEIGHT_TOTAL`].
    weight: u64,
    /// Opening budget as a percentage of what its requests would cost.
    budget_percent: u64,
    preferred: &'static [u32],
    input_tokens: (u64, u64),
    output_tokens: (u64, u64),
    value_microunits: (u64, u64),
    budget_limit_microunits: u64,
    minimum_quality_bps: u16,
    max_p95_latency_ms: u32,
    required_capabilities: u64,
    allowed_provider_mask: u64,
    required_region_mask: u64,
    /// Percentage of requests carrying elevated risk.
    risky_percent: u64,
}

const fn providers(ids: &[u16]) -> u64 {
    let mut mask = 0;
    let mut i = 0;
    while i < ids.len() {
        mask |= 1 << ids[i];
        i += 1;
    }
    mask
}

const WEIGHT_TOTAL: u64 = 100;

#[rustfmt::skip]
const PROFILES: [Profile; 8] = [
    Profile { name: "acme-support", weight: 30, budget_percent: 150, preferred: &[103, 203, 302],
        input_tokens: (300, 3_000), output_tokens: (100, 600), value_microunits: (20_000, 80_000),
        budget_limit_microunits: 20_000, minimum_quality_bps: 8_000, max_p95_latency_ms: 1_500,
        required_capabilities: cap::CHAT, allowed_provider_mask: ALL_PROVIDERS,
        required_region_mask: region::US, risky_percent: 3 },
    Profile { name: "globex-legal", weight: 10, budget_percent: 140, preferred: &[202, 401, 102],
        input_tokens: (8_000, 60_000), output_tokens: (500, 3_000), value_microunits: (500_000, 2_000_000),
        budget_limit_microunits: 2_000_000, minimum_quality_bps: 9_000, max_p95_latency_ms: 0,
        required_capabilities: cap::CHAT | cap::LONG_CONTEXT, allowed_provider_mask: providers(&[0, 1, 2, 3]),
        required_region_mask: region::EU, risky_percent: 5 },
    Profile { name: "initech-dev", weight: 20, budget_percent: 130, preferred: &[102, 202, 502, 404],
        input_tokens: (1_000, 12_000), output_tokens: (200, 2_000), value_microunits: (50_000, 300_000),
        budget_limit_microunits: 200_000, minimum_quality_bps: 8_500, max_p95_latency_ms: 3_000,
        required_capabilities: cap::TOOLS, allowed_provider_mask: ALL_PROVIDERS,
        required_region_mask: region::US | region::EU, risky_percent: 5 },
    Profile { name: "umbrella-research", weight: 8, budget_percent: 200, preferred: &[201, 101, 301],
        input_tokens: (2_000, 20_000), output_tokens: (500, 4_000), value_microunits: (200_000, 1_000_000),
        budget_limit_microunits: 1_000_000, minimum_quality_bps: 9_000, max_p95_latency_ms: 0,
        required_capabilities: cap::VISION, allowed_provider_mask: ALL_PROVIDERS,
        required_region_mask: 0, risky_percent: 10 },
    Profile { name: "hooli-search", weight: 15, budget_percent: 120, preferred: &[104, 303, 503],
        input_tokens: (100, 1_500), output_tokens: (20, 200), value_microunits: (5_000, 20_000),
        budget_limit_microunits: 5_000, minimum_quality_bps: 7_500, max_p95_latency_ms: 800,
        required_capabilities: cap::CHAT, allowed_provider_mask: ALL_PROVIDERS,
        required_region_mask: 0, risky_percent: 2 },
    Profile { name: "stark-analytics", weight: 7, budget_percent: 55, preferred: &[101, 201, 501],
        input_tokens: (4_000, 30_000), output_tokens: (500, 3_000), value_microunits: (200_000, 600_000),
        budget_limit_microunits: 500_000, minimum_quality_bps: 8_800, max_p95_latency_ms: 0,
        required_capabilities: cap::TOOLS, allowed_provider_mask: ALL_PROVIDERS,
        required_region_mask: region::US, risky_percent: 5 },
    Profile { name: "wayne-finance", weight: 5, budget_percent: 150, preferred: &[102, 202],
        input_tokens: (1_000, 8_000), output_tokens: (200, 1_500), value_microunits: (100_000, 500_000),
        budget_limit_microunits: 300_000, minimum_quality_bps: 9_000, max_p95_latency_ms: 3_000,
        required_capabilities: cap::CHAT | cap::TOOLS, allowed_provider_mask: providers(&[0, 1]),
        required_region_mask: region::US, risky_percent: 40 },
    Profile { name: "tyrell-bio", weight: 5, budget_percent: 150, preferred: &[601, 602, 302],
        input_tokens: (500, 5_000), output_tokens: (100, 1_000), value_microunits: (30_000, 150_000),
        budget_limit_microunits: 100_000, minimum_quality_bps: 8_000, max_p95_latency_ms: 0,
        required_capabilities: cap::CHAT, allowed_provider_mask: providers(&[2, 5]),
        required_region_mask: region::APAC, risky_percent: 5 },
];

/// SplitMix64: small, seeded, and the same on every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high` (the modulo bias is irrelevant for a demo).
    fn between(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high);
        low + self.next() % (high - low + 1)
    }

    /// True with probability `percent` / 100.
    fn percent(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn narrow<T: TryFrom<u64>>(value: u64, max: T) -> T {
    T::try_from(value).unwrap_or(max)
}

/// One request of the workload and what its work will actually cost, as a
/// percentage of the estimate.
#[derive(Clone, Copy)]
struct Job {
    input: KernelInput,
    actual_percent: u64,
}

/// Teams (tenants) per organisation: each team has its own budget and its own
/// worker thread, so the number of decisions waiting on an fsync at once (and
/// so the size of each group commit) is `PROFILES.len() * TEAMS_PER_ORG`.
pub const TEAMS_PER_ORG: usize = 12;

/// The tenant id of a team.
fn tenant_name(org: usize, team: usize) -> String {
    format!("{}/team-{team:02}", PROFILES[org].name)
}

/// Generates the workload: the jobs of each tenant (index `org *
/// TEAMS_PER_ORG + team`), in request order.
fn workload(requests: u64) -> Vec<Vec<Job>> {
    let mut rng = SplitMix64(SEED);
    let mut jobs: Vec<Vec<Job>> = (0..PROFILES.len() * TEAMS_PER_ORG)
        .map(|_| Vec::new())
        .collect();
    for sequence in 0..requests {
        let mut pick = rng.next() % WEIGHT_TOTAL;
        let org = PROFILES
            .iter()
            .position(|p| {
                let hit = pick < p.weight;
                pick = pick.saturating_sub(p.weight);
                hit
            })
            .unwrap_or(0);
        let team = narrow(rng.next() % TEAMS_PER_ORG as u64, 0usize);
        let p = &PROFILES[org];
        let preferred = p.preferred[narrow(rng.next() % p.preferred.len() as u64, 0usize)];
        let risk_bps = if rng.percent(p.risky_percent) {
            rng.between(6_000, 9_800)
        } else {
            rng.between(0, 3_000)
        };
        let confidence_bps = if rng.percent(4) {
            rng.between(1_000, 3_500)
        } else {
            rng.between(6_000, 10_000)
        };
        let input = KernelInput {
            request_sequence: sequence,
            requested_model_id: preferred,
            input_tokens: narrow(rng.between(p.input_tokens.0, p.input_tokens.1), u32::MAX),
            output_tokens: narrow(rng.between(p.output_tokens.0, p.output_tokens.1), u32::MAX),
            business_value_microunits: narrow(
                rng.between(p.value_microunits.0, p.value_microunits.1),
                i64::MAX,
            ),
            budget_limit_microunits: p.budget_limit_microunits,
            risk_bps: narrow(risk_bps, u16::MAX),
            confidence_bps: narrow(confidence_bps, u16::MAX),
            minimum_quality_bps: p.minimum_quality_bps,
            max_p95_latency_ms: p.max_p95_latency_ms,
            required_capabilities: p.required_capabilities,
            allowed_provider_mask: p.allowed_provider_mask,
            required_region_mask: p.required_region_mask,
        };
        let actual_percent = rng.between(60, 100);
        jobs[org * TEAMS_PER_ORG + team].push(Job {
            input,
            actual_percent,
        });
    }
    jobs
}

/// Each tenant's opening budget: its `budget_percent` of what its selections
/// would cost, at least one cent.
fn budgets(policy: &SealedPolicy, jobs: &[Vec<Job>]) -> Vec<u64> {
    jobs.iter()
        .enumerate()
        .map(|(tenant, jobs)| {
            let profile = &PROFILES[tenant / TEAMS_PER_ORG];
            let cost_microunits: u64 = jobs
                .iter()
                .map(|job| policy.prescribe(job.input))
                .filter(|decision| decision.is_selection())
                .map(|decision| decision.estimated_cost_microunits)
                .fold(0u64, u64::saturating_add);
            let budget_microunits = (cost_microunits / 100).saturating_mul(profile.budget_percent);
            budget_microunits.max(MIN_BUDGET_MICROUNITS)
        })
        .collect()
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    by_action: BTreeMap<KernelAction, u64>,
    by_reason: BTreeMap<KernelReason, u64>,
    budget_refused: BTreeMap<&'static str, u64>,
    admitted: u64,
    by_model: BTreeMap<u32, u64>,
    committed_microunits: u64,
}

impl Tally {
    fn merge(&mut self, other: Self) {
        for (k, v) in other.by_action {
            *self.by_action.entry(k).or_default() += v;
        }
        for (k, v) in other.by_reason {
            *self.by_reason.entry(k).or_default() += v;
        }
        for (k, v) in other.budget_refused {
            *self.budget_refused.entry(k).or_default() += v;
        }
        for (k, v) in other.by_model {
            *self.by_model.entry(k).or_default() += v;
        }
        self.admitted += other.admitted;
        self.committed_microunits = self
            .committed_microunits
            .saturating_add(other.committed_microunits);
    }
}

fn budget_refusal_name(outcome: BudgetOutcome) -> &'static str {
    match outcome {
        BudgetOutcome::Insufficient { .. } => "insufficient budget",
        BudgetOutcome::ReservedCapExceeded { .. } => "reservation cap",
        BudgetOutcome::TooManyOpenReservations => "too many open reservations",
        _ => "other",
    }
}

/// Serves the jobs of a group of tenants, each tenant's in request order (the
/// tenants take turns), settling every admission at once and waiting for
/// durability once per [`BATCH`] decisions.
fn serve(
    gate: &Gate,
    group: &[(&str, &[Job])],
    progress: &indicatif::ProgressBar,
) -> Result<Tally, GateError> {
    let mut tally = Tally::default();
    let mut last_ticket: Option<Ticket> = None;
    let mut in_batch = 0;
    let longest = group.iter().map(|(_, jobs)| jobs.len()).max().unwrap_or(0);
    for index in 0..longest {
        for (tenant, jobs) in group {
            let Some(job) = jobs.get(index) else {
                continue;
            };
            let admission = gate.decide(tenant, job.input)?;
            let decision = *admission.decision();
            *tally.by_action.entry(decision.action).or_default() += 1;
            *tally.by_reason.entry(decision.reason).or_default() += 1;
            last_ticket = Some(admission.ticket().clone());
            if admission.is_admitted() {
                tally.admitted += 1;
                *tally
                    .by_model
                    .entry(decision.selected_model_id)
                    .or_default() += 1;
                // Floor division: the actual cost never exceeds the estimate.
                let actual =
                    (decision.estimated_cost_microunits / 100).saturating_mul(job.actual_percent);
                let settled = gate.settle(admission, actual)?;
                tally.committed_microunits = tally
                    .committed_microunits
                    .saturating_add(settled.committed_microunits);
            } else {
                if decision.is_selection() {
                    *tally
                        .budget_refused
                        .entry(budget_refusal_name(admission.budget()))
                        .or_default() += 1;
                }
                // Nothing is held: nothing to settle, nothing more logged.
                drop(admission);
            }
            in_batch += 1;
            progress.inc(1);
            if in_batch == BATCH {
                in_batch = 0;
                if let Some(ticket) = last_ticket.take() {
                    ticket.wait()?;
                }
            }
        }
    }
    if let Some(ticket) = last_ticket {
        ticket.wait()?;
    }
    Ok(tally)
}

fn demo_clock() -> u64 {
    DEMO_CLOCK_UNIX_MS
}

/// US dollars from microunits, exact (six decimals, no rounding), so that the
/// columns of the budget table add up exactly as printed.
fn dollars(microunits: i64) -> String {
    let text = human::units(i128::from(microunits));
    match text.strip_prefix('-') {
        Some(magnitude) => format!("-${magnitude}"),
        None => format!("${text}"),
    }
}

/// Runs the demo (after deleting a previous one in `dir` when `fresh`);
/// returns the exit code.
/// With `json`, the summary is one JSON object on one line (same figures).
pub fn run(requests: u64, dir: &Path, fresh: bool, json: bool) -> u8 {
    match run_demo(requests, dir, fresh, json) {
        Ok(text) => {
            stdout_text(&text);
            EXIT_OK
        }
        Err(error) => {
            stderr_line(&format!("ERROR {}: {error}", error.code()));
            EXIT_ERROR
        }
    }
}

fn run_demo(requests: u64, dir: &Path, fresh: bool, json: bool) -> Result<String, DemoError> {
    if requests == 0 || requests > MAX_REQUESTS {
        return Err(DemoError::Requests(requests));
    }
    let log_dir = dir.join(LOG_DIR);
    if log_dir.exists() {
        if !fresh {
            return Err(DemoError::Exists(dir.to_path_buf()));
        }
        // Only the log directory the demo itself creates is removed.
        std::fs::remove_dir_all(&log_dir).map_err(|source| DemoError::Remove {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let policy = policy().map_err(DemoError::Policy)?;
    let policy_digest = *policy.digest();
    let jobs = workload(requests);
    let budgets = budgets(&policy, &jobs);

    let mut config = GateConfig::new(dir, policy)
        .group_commit_window(GROUP_COMMIT_WINDOW)
        .clock(demo_clock);
    let tenants: Vec<String> = (0..jobs.len())
        .map(|tenant| tenant_name(tenant / TEAMS_PER_ORG, tenant % TEAMS_PER_ORG))
        .collect();
    for (tenant, budget) in tenants.iter().zip(&budgets) {
        config = config.tenant(tenant.as_str(), *budget);
    }
    let gate = Gate::open(config)?;

    let groups: Vec<Vec<(&str, &[Job])>> = (0..WORKERS)
        .map(|worker| {
            tenants
                .iter()
                .zip(&jobs)
                .skip(worker)
                .step_by(WORKERS)
                .map(|(tenant, jobs)| (tenant.as_str(), jobs.as_slice()))
                .collect()
        })
        .collect();
    let progress = human::progress_bar(requests, "deciding", false);
    let started = Instant::now();
    let results: Vec<Result<Tally, DemoError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .iter()
            .map(|group| {
                let gate = &gate;
                let progress = &progress;
                scope.spawn(move || serve(gate, group, progress))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle.join() {
                Ok(result) => result.map_err(DemoError::Gate),
                Err(_) => Err(DemoError::Worker),
            })
            .collect()
    });
    let mut tally = Tally::default();
    for result in results {
        tally.merge(result?);
    }
    let decide_elapsed = started.elapsed();
    progress.finish_and_clear();

    let proof = gate.prove_conservation()?;
    let books: Vec<TenantBooks> = tenants
        .iter()
        .map(|tenant| gate.tenant_books(tenant))
        .collect::<Result<_, _>>()?;
    let anchor = gate.close()?;

    // Verify the whole directory against the anchor the gate handed back, with
    // `verify_dir` (chain, replay, books rebuilt in log order), and check that it
    // holds exactly what the workers decided.
    let verify_started = Instant::now();
    let report = crate::gate::verify(&Target {
        path: dir.to_path_buf(),
        key: None,
        anchor: Some(anchor),
        start_anchor: None,
    });
    let verify_elapsed = verify_started.elapsed();

    check(&report, requests, &tally, &books, &proof)?;

    let render = if json { summary_json } else { summary };
    Ok(render(&Summary {
        requests,
        dir,
        tally: &tally,
        books: &books,
        proof: &proof,
        decide_elapsed,
        verify_elapsed,
        report: &report,
        anchor: &anchor,
        policy_digest: &policy_digest,
    }))
}

/// The verified directory holds what the workers decided, and its books are the
/// gate's.
fn check(
    report: &Report,
    requests: u64,
    tally: &Tally,
    books: &[TenantBooks],
    proof: &calybris::finance::ConservationProof,
) -> Result<(), DemoError> {
    if report.finding.is_some() {
        return Err(DemoError::Check(report.line()));
    }
    let Some(gate) = &report.gate else {
        return Err(DemoError::Check("no books were rebuilt".to_owned()));
    };
    let rejected = tally
        .by_action
        .get(&KernelAction::Reject)
        .copied()
        .unwrap_or(0);
    let refused: u64 = tally.budget_refused.values().sum();
    let c = &gate.counts;
    if c.decisions != requests
        || c.rejected_by_kernel != rejected
        || c.admitted != tally.admitted
        || c.refused_by_budget != refused
        || c.settlements != tally.admitted
    {
        return Err(DemoError::Check(format!(
            "the log holds {} decisions ({} admitted, {} settlements), {requests} were made ({} admitted)",
            c.decisions, c.admitted, c.settlements, tally.admitted
        )));
    }
    let mut sorted: Vec<&TenantBooks> = books.iter().collect();
    sorted.sort_unstable_by(|a, b| a.tenant.as_bytes().cmp(b.tenant.as_bytes()));
    let same_books = gate.tenants.len() == sorted.len()
        && gate.tenants.iter().zip(&sorted).all(|(logged, live)| {
            logged.tenant == live.tenant
                && logged.initial_microunits == live.initial_microunits
                && logged.committed_microunits == live.committed_microunits
                && logged.reserved_microunits == live.reserved_microunits
                && logged.remaining_microunits == live.remaining_microunits
        });
    if !same_books
        || gate.open_holds != 0
        || !proof.balanced
        || gate.ledger_digest != proof.ledger_digest
    {
        return Err(DemoError::Check(
            "the books rebuilt from the log are not the gate's".to_owned(),
        ));
    }
    Ok(())
}

struct Summary<'a> {
    requests: u64,
    dir: &'a Path,
    tally: &'a Tally,
    books: &'a [TenantBooks],
    proof: &'a calybris::finance::ConservationProof,
    decide_elapsed: Duration,
    verify_elapsed: Duration,
    report: &'a Report,
    anchor: &'a calybris::wal::WalAnchor,
    policy_digest: &'a calybris::digest::Digest,
}

fn per_second(count: u64, elapsed: Duration) -> u64 {
    let micros = elapsed.as_micros().max(1);
    narrow(
        u64::try_from(u128::from(count) * 1_000_000 / micros).unwrap_or(u64::MAX),
        u64::MAX,
    )
}

/// Each organisation's teams' books summed: (budget, spent, remaining, teams dry).
fn organisation_books(books: &[TenantBooks], org: usize) -> (i64, i64, i64, usize) {
    let teams = books
        .get(org * TEAMS_PER_ORG..(org + 1) * TEAMS_PER_ORG)
        .unwrap_or_default();
    let sum =
        |field: fn(&TenantBooks) -> i64| teams.iter().map(field).fold(0i64, i64::saturating_add);
    let dry = teams
        .iter()
        .filter(|l| l.remaining_microunits.unsigned_abs() < MIN_BUDGET_MICROUNITS)
        .count();
    (
        sum(|l| l.initial_microunits),
        sum(|l| l.committed_microunits),
        sum(|l| l.remaining_microunits),
        dry,
    )
}

/// The most used models, most used first (ties by model id).
fn most_used(t: &Tally) -> Vec<(u32, u64)> {
    let mut top: Vec<(u32, u64)> = t.by_model.iter().map(|(m, c)| (*m, *c)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(5);
    top
}

/// The summary as one JSON object on one line.
fn summary_json(s: &Summary<'_>) -> String {
    use serde_json::json;
    let t = s.tally;
    let count = |action| t.by_action.get(&action).copied().unwrap_or(0);
    let refused: u64 = t.budget_refused.values().sum();
    let rejected = count(KernelAction::Reject);
    let shares = human::shares_tenths(&[t.admitted, refused, rejected]);
    let organisations: Vec<serde_json::Value> = PROFILES
        .iter()
        .enumerate()
        .map(|(org, profile)| {
            let (budget, spent, remaining, dry) = organisation_books(s.books, org);
            json!({
                "organisation": profile.name,
                "budget_microunits": budget,
                "spent_microunits": spent,
                "remaining_microunits": remaining,
                "budget_units": crate::report::units_text(budget),
                "spent_units": crate::report::units_text(spent),
                "remaining_units": crate::report::units_text(remaining),
                "teams_dry": dry,
            })
        })
        .collect();
    let rejected_by_reason: Vec<serde_json::Value> = t
        .by_reason
        .iter()
        .filter(|(reason, _)| !reason.is_selection())
        .map(|(reason, count)| json!({"reason": reason.name(), "words": reason.words(), "count": count}))
        .collect();
    let most_used: Vec<serde_json::Value> = most_used(t)
        .iter()
        .map(|(model, count)| json!({"model": model_name(*model), "model_id": model, "count": count}))
        .collect();
    let body = json!({
        "requests": s.requests,
        "tenants": PROFILES.len() * TEAMS_PER_ORG,
        "organisations": organisations,
        "models": CATALOG.len(),
        "providers": PROVIDERS.len(),
        "seed": format!("{SEED:#x}"),
        "dir": s.dir.display().to_string(),
        "policy_digest": calybris::digest::digest_to_hex(s.policy_digest),
        "admitted": t.admitted,
        "refused_by_budget": refused,
        "rejected_by_kernel": rejected,
        "shares_tenths_percent": {
            "admitted": shares[0],
            "refused_by_budget": shares[1],
            "rejected_by_kernel": shares[2],
        },
        "executed_as_requested": count(KernelAction::ExecuteRequested),
        "substituted": count(KernelAction::Substitute),
        "refused_by_budget_by_cause": t.budget_refused,
        "rejected_by_reason": rejected_by_reason,
        "most_used": most_used,
        "balanced": s.proof.balanced,
        "proof_digest": s.proof.ledger_digest.to_hex(),
        "decide_ms": u64::try_from(s.decide_elapsed.as_millis()).unwrap_or(u64::MAX),
        "decisions_per_second": per_second(s.requests, s.decide_elapsed),
        "verify_ms": u64::try_from(s.verify_elapsed.as_millis()).unwrap_or(u64::MAX),
        "records_per_second": per_second(s.report.counts.records, s.verify_elapsed),
        "anchor": anchor_text(s.anchor),
        "verify": s.report.json_value(),
    });
    format!("{body}\n")
}

fn summary(s: &Summary<'_>) -> String {
    let t = s.tally;
    let n = s.requests;
    let count = |action| t.by_action.get(&action).copied().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Calybris demo: {} LLM requests from {} tenants ({} organisations) routed over {} models of {} providers",
        thousands(n),
        PROFILES.len() * TEAMS_PER_ORG,
        PROFILES.len(),
        CATALOG.len(),
        PROVIDERS.len()
    );
    let _ = writeln!(
        out,
        "  policy {} (seed {SEED:#x}); one gate log in {}",
        calybris::digest::digest_to_hex(s.policy_digest),
        s.dir.display()
    );
    let _ = writeln!(out);
    let refused: u64 = t.budget_refused.values().sum();
    let rejected = count(KernelAction::Reject);
    // One partition of the requests, so its shares add up to 100.0 %.
    let shares = human::shares_tenths(&[t.admitted, refused, rejected]);
    let _ = writeln!(out, "{:<38} {:>9}  {:>7}", "Decisions", "count", "share");
    let row = |out: &mut String, label: &str, value: u64, share: u64| {
        let _ = writeln!(
            out,
            "  {label:<36} {:>9}  {:>7}",
            thousands(value),
            human::percent_text(share)
        );
    };
    let detail = |out: &mut String, label: &str, value: u64| {
        let _ = writeln!(out, "    {label:<34} {:>9}", thousands(value));
    };
    row(&mut out, "admitted and settled", t.admitted, shares[0]);
    row(
        &mut out,
        "selected, then refused by the budget",
        refused,
        shares[1],
    );
    for (why, value) in &t.budget_refused {
        detail(&mut out, why, *value);
    }
    row(&mut out, "rejected by the kernel", rejected, shares[2]);
    for (reason, value) in &t.by_reason {
        if !reason.is_selection() {
            detail(&mut out, &reason.to_string(), *value);
        }
    }
    row(&mut out, "total", n, if n == 0 { 0 } else { 1_000 });
    let executed = count(KernelAction::ExecuteRequested);
    let substituted = count(KernelAction::Substitute);
    let selection_shares = human::shares_tenths(&[executed, substituted]);
    let _ = writeln!(
        out,
        "  of the {} selections: {} executed as requested ({}), {} substituted by a better model ({})",
        thousands(executed + substituted),
        thousands(executed),
        human::percent_text(selection_shares[0]),
        thousands(substituted),
        human::percent_text(selection_shares[1])
    );
    let top: Vec<String> = most_used(t)
        .iter()
        .map(|(model, c)| format!("{} {}", model_name(*model), thousands(*c)))
        .collect();
    let _ = writeln!(out, "  most used: {}", top.join(", "));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<19} {:>14} {:>14} {:>14} {:>10}",
        format!("Budgets ({TEAMS_PER_ORG} teams)"),
        "budget",
        "spent",
        "remaining",
        "teams dry"
    );
    for (org, profile) in PROFILES.iter().enumerate() {
        let (budget, spent, remaining, dry) = organisation_books(s.books, org);
        let _ = writeln!(
            out,
            "  {:<17} {:>14} {:>14} {:>14} {:>10}",
            profile.name,
            dollars(budget),
            dollars(spent),
            dollars(remaining),
            dry
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Conservation: {} (remaining + reserved + committed == initial for every tenant)",
        if s.proof.balanced {
            "balanced"
        } else {
            "NOT BALANCED"
        }
    );
    let _ = writeln!(
        out,
        "  proof digest {} (verify_dir rebuilt the same books from the log, in log order)",
        s.proof.ledger_digest.to_hex()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Speed: {} decisions in {} = {} decisions/s ({WORKERS} threads; decided and settled at once, durable by group commit, waited on every {BATCH} decisions)",
        thousands(n),
        human::duration_text(s.decide_elapsed),
        thousands(per_second(n, s.decide_elapsed))
    );
    let _ = writeln!(
        out,
        "Verified: {} records (chain, replay of every decision, books rebuilt in log order) in {} = {} records/s",
        thousands(s.report.counts.records),
        human::duration_text(s.verify_elapsed),
        thousands(per_second(s.report.counts.records, s.verify_elapsed))
    );
    let _ = writeln!(out, "  {}", human::paint_outcome(&s.report.line()));
    let _ = writeln!(out);
    let verify_args = format!(
        "verify {} --anchor {}",
        s.dir.display(),
        anchor_text(s.anchor)
    );
    let _ = writeln!(out, "Re-check it yourself:");
    let _ = writeln!(out, "  calybris {verify_args}");
    let _ = writeln!(
        out,
        "  (from a checkout: cargo run --release -p calybris-cli -- {verify_args})"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_22_valid_models_of_6_providers() {
        let policy = policy().expect("valid demo policy");
        assert_eq!(policy.models().len(), 22);
        let mut providers: Vec<u16> = policy.models().iter().map(|m| m.provider_id).collect();
        providers.dedup();
        assert_eq!(providers.len(), PROVIDERS.len());
        assert_eq!(PROFILES.iter().map(|p| p.weight).sum::<u64>(), WEIGHT_TOTAL);
    }

    #[test]
    fn the_workload_is_the_same_on_every_run() {
        let a = workload(500);
        let b = workload(500);
        let flat = |jobs: &[Vec<Job>]| -> Vec<KernelInput> {
            jobs.iter().flatten().map(|job| job.input).collect()
        };
        assert_eq!(flat(&a), flat(&b));
        assert_eq!(flat(&a).len(), 500);
        assert_eq!(a.len(), PROFILES.len() * TEAMS_PER_ORG);
    }

    #[test]
    fn the_workload_exercises_every_action() {
        let policy = policy().expect("valid demo policy");
        let mut seen = std::collections::BTreeSet::new();
        for job in workload(2_000).iter().flatten() {
            seen.insert(policy.prescribe(job.input).action);
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn money_and_counts_format_exactly() {
        assert_eq!(dollars(1_234_567), "$1.234567");
        assert_eq!(dollars(0), "$0.000000");
        assert_eq!(dollars(-5), "-$0.000005");
        assert_eq!(thousands(20_000u64), "20,000");
        assert_eq!(thousands(999u64), "999");
    }
}
