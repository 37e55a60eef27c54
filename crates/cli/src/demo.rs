//! `calybris demo`: a realistic LLM-routing workload through the decision gate
//! (`calybris::gate`) into one gate directory (one chained log, `DIR/log/`, holding
//! every decision, reservation, settlement and budget change), verified at the end
//! with `calybris_gate::verify_dir`, with a summary a person can read at a glance.
//!
//! # The workload
//! The workload is `calybris-workload`'s (whose generator the test suites share):
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
//! # Outcomes
//! Every admitted selection also gets an outcome record, drawn from a generator
//! seeded by [`SEED`] and the request's sequence number ([`demo_outcome`]), so the
//! rewards are the same on every run and `calybris regret` and `calybris shadow` have
//! something to measure: the work succeeds with probability equal to the selected
//! model's quality, and the reward is the request's business value on success, less
//! the actual cost either way.
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
use calybris::gate::names::{BitName, ModelName, ProviderName};
use calybris::gate::{
    BudgetOutcome, Gate, GateConfig, GateError, LOG_DIR, NameMap, Outcome, TenantBooks, Ticket,
};
use calybris::kernel::{KernelAction, KernelReason, PolicyError};
use calybris_workload::catalog::{self, CATALOG, PROVIDERS};
use calybris_workload::tenants::{MIN_BUDGET_MICROUNITS, PROFILES, tenant_name};
use calybris_workload::{Job, budgets};

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
/// Seed of the request generator (the seed of `calybris-workload`).
pub const SEED: u64 = calybris_workload::SEED;
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

/// The teams (tenants) per organisation: each team has its own budget and its own
/// worker thread, so the number of decisions waiting on an fsync at once (and so the
/// size of each group commit) is `PROFILES.len() * TEAMS_PER_ORG`.
pub use calybris_workload::tenants::TEAMS_PER_ORG;

/// The name of a catalog model (`?` for an id the catalog does not hold).
fn model_name(model_id: u32) -> &'static str {
    catalog::model_name(model_id).unwrap_or("?")
}

/// The demo policy: the catalog of `calybris-workload` and the policy-wide limits.
///
/// # Errors
/// Never for the embedded catalog; the error is kept typed all the same.
pub fn policy() -> Result<SealedPolicy, PolicyError> {
    catalog::policy()
}

/// The names of the demo catalog's models, providers, capabilities and regions, logged
/// with its policy (a `PolicyNames` record) so that `inspect`, `verify` and `show` of a
/// demo directory speak in names.
#[must_use]
pub fn catalog_names() -> NameMap {
    let mut models: Vec<ModelName> = CATALOG
        .iter()
        .map(|m| ModelName {
            model_id: m.model_id,
            name: m.name.to_owned(),
        })
        .collect();
    models.sort_by_key(|m| m.model_id);
    let bit = |mask: u64, name: &str| BitName {
        // Each constant of the catalog is one bit.
        bit: u8::try_from(mask.trailing_zeros()).unwrap_or(u8::MAX),
        name: name.to_owned(),
    };
    NameMap {
        models,
        providers: (0u16..)
            .zip(PROVIDERS)
            .map(|(provider_id, name)| ProviderName {
                provider_id,
                name: name.to_owned(),
            })
            .collect(),
        capabilities: vec![
            bit(catalog::cap::CHAT, "chat"),
            bit(catalog::cap::TOOLS, "tools"),
            bit(catalog::cap::VISION, "vision"),
            bit(catalog::cap::LONG_CONTEXT, "long-context"),
        ],
        regions: vec![
            bit(catalog::region::US, "us"),
            bit(catalog::region::EU, "eu"),
            bit(catalog::region::APAC, "apac"),
        ],
    }
}

/// The demo's requests: the workload of `calybris-workload` from [`SEED`].
fn workload(requests: u64) -> Vec<Vec<Job>> {
    calybris_workload::generate(requests, SEED)
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

/// The outcome of an admitted demo request: success with probability `quality_bps` /
/// 10,000 (the selected model's quality), drawn from SplitMix64 seeded by [`SEED`]
/// xor the request's sequence number; the reward is the business value on success,
/// minus the actual cost either way; the latency is the model's p95 scaled by a draw
/// in 50..=100 %.
#[must_use]
pub fn demo_outcome(
    request_sequence: u64,
    business_value_microunits: i64,
    actual_microunits: u64,
    quality_bps: u16,
    p95_latency_ms: u32,
) -> Outcome {
    let mut rng = calybris_workload::SplitMix64::new(SEED ^ request_sequence);
    let success = rng.below(10_000) < u64::from(quality_bps);
    let cost = i64::try_from(actual_microunits).unwrap_or(i64::MAX);
    let value = if success {
        business_value_microunits
    } else {
        0
    };
    let latency = u64::from(p95_latency_ms) * rng.between(50, 100) / 100;
    Outcome {
        reward_microunits: value.saturating_sub(cost),
        success,
        latency_ms: u32::try_from(latency).unwrap_or(u32::MAX),
        detail: Vec::new(),
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
    let policy = gate.policy();
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
                let reference = admission.decision_ref();
                let settled = gate.settle(admission, actual)?;
                let model = policy
                    .models()
                    .iter()
                    .find(|m| m.model_id == decision.selected_model_id);
                let outcome = demo_outcome(
                    job.input.request_sequence,
                    job.input.business_value_microunits,
                    actual,
                    model.map_or(0, |m| m.quality_bps),
                    model.map_or(0, |m| m.p95_latency_ms),
                );
                last_ticket = Some(gate.record_outcome(reference, outcome)?);
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
        .policy_names(catalog_names())
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
        || c.outcomes != tally.admitted
    {
        return Err(DemoError::Check(format!(
            "the log holds {} decisions ({} admitted, {} settlements, {} outcomes), {requests} were made ({} admitted)",
            c.decisions, c.admitted, c.settlements, c.outcomes, tally.admitted
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
    u64::try_from(u128::from(count) * 1_000_000 / micros).unwrap_or(u64::MAX)
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
        "Speed: {} decisions in {} = {} decisions/s ({WORKERS} threads; decided, settled and its outcome recorded at once, durable by group commit, waited on every {BATCH} decisions)",
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
    use calybris::kernel::KernelInput;
    use calybris_workload::tenants::WEIGHT_TOTAL;

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
    fn the_catalog_names_fit_the_demo_policy() {
        let policy = policy().expect("valid demo policy");
        let names = catalog_names();
        names.validate_for(policy.snapshot()).expect("names fit");
        assert_eq!(names.models.len(), CATALOG.len());
        assert_eq!(names.providers.len(), PROVIDERS.len());
        assert_eq!(names.model_name(101), Some("nw-ultra"));
        assert_eq!(names.provider_name(1), Some("helix"));
        assert_eq!(
            names.capability_names(catalog::cap::TOOLS | catalog::cap::VISION),
            ["tools", "vision"]
        );
        assert_eq!(
            names.region_names(catalog::region::ALL),
            ["us", "eu", "apac"]
        );
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
