//! The subcommands other than `demo`: `verify`, `inspect`, `show`, `explain` and
//! `policy check`. Each returns its exit code; each prints its result on stdout
//! and any error as one line on stderr.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use calybris::digest::{Digest, SealedPolicy, digest_to_hex, policy_digest};
use calybris::gate::record::SettlementKind;
use calybris::gate::{BudgetOutcome, GateRecord, ModelSelections, SelectionTally};
use calybris::kernel::{KernelAction, KernelReason};
use calybris::wal::{DecisionRecord, PolicyRecord};
use serde::Serialize;

use crate::files::{self, FileError};
use crate::report::{
    Code, EXIT_DIVERGED, EXIT_ERROR, EXIT_OK, Finding, Outcome, Reason, Report, parse_anchor,
};
use crate::scan::{self, NoVisitor, Target, Visitor};
use crate::{human, render};
use crate::{stderr_line, stdout_text};

/// Where a log is and how to read it, as given on the command line.
#[derive(Debug, Clone)]
pub struct LogArgs {
    /// Segment file or segment directory.
    pub file: PathBuf,
    /// File holding the HMAC key.
    pub key_file: Option<PathBuf>,
    /// Trusted anchor, `NEXT_SEQUENCE:HEAD_HASH_HEX`.
    pub anchor: Option<String>,
    /// Trusted start of a retained log, `NEXT_SEQUENCE:HEAD_HASH_HEX`.
    pub start_anchor: Option<String>,
    /// File holding a gate's holdout key (gate directories only).
    pub holdout_key_file: Option<PathBuf>,
}

impl LogArgs {
    fn target(&self) -> Result<Target, Finding> {
        let key = self
            .key_file
            .as_deref()
            .map(scan::read_key_file)
            .transpose()?;
        let anchor = self.anchor.as_deref().map(parse_anchor).transpose()?;
        let start_anchor = self.start_anchor.as_deref().map(parse_anchor).transpose()?;
        Ok(Target {
            path: self.file.clone(),
            key,
            anchor,
            start_anchor,
        })
    }
}

/// A report for a target that could not even be set up (bad key file or anchor).
fn setup_report(args: &LogArgs, finding: Finding) -> Report {
    Report {
        path: args.file.clone(),
        keyed: args.key_file.is_some(),
        anchored: args.anchor.is_some(),
        counts: crate::report::Counts::default(),
        anchor: None,
        finding: Some(finding),
        gate: None,
    }
}

/// Prints a verification report: VERIFIED and DIVERGED on stdout, ERROR on
/// stderr; with `json`, the JSON object on stdout in every case (and the ERROR
/// line on stderr too).
fn print_report(report: &Report, json: bool) -> u8 {
    let outcome = report.outcome();
    if json {
        stdout_text(&format!("{}\n", report.json()));
    } else if outcome != Outcome::Error {
        let gate = report
            .gate
            .as_ref()
            .map(|gate| gate.text())
            .unwrap_or_default();
        stdout_text(&format!(
            "{}\n{gate}",
            crate::human::paint_outcome(&report.line())
        ));
    }
    if outcome == Outcome::Error {
        stderr_line(&report.line());
    }
    outcome.exit_code()
}

/// Scans the log for `visitor`; for a gate directory whose log scans clean, the
/// report is then `verify`'s (books included), so `inspect` and `show` end with
/// exactly what `verify` says.
fn scan_args(args: &LogArgs, visitor: &mut impl Visitor) -> Report {
    match args.target() {
        Ok(target) => {
            let report = scan::scan(&target, visitor);
            if report.finding.is_none() && scan::is_gate_dir(&target.path) {
                match holdout_key(args) {
                    Ok(key) => crate::gate::verify_with(&target, key),
                    Err(finding) => setup_report(args, finding),
                }
            } else {
                report
            }
        }
        Err(finding) => setup_report(args, finding),
    }
}

/// The holdout key of `--holdout-key-file`, if given.
fn holdout_key(args: &LogArgs) -> Result<Option<calybris::gate::HoldoutKey>, Finding> {
    let Some(path) = &args.holdout_key_file else {
        return Ok(None);
    };
    let bytes = crate::files::read_at_most(path, scan::MAX_KEY_FILE_BYTES).map_err(|_| {
        Finding::new(
            Reason::Unreadable,
            format!("cannot read holdout key file {}", path.display()),
        )
    })?;
    calybris::gate::HoldoutKey::new(&bytes)
        .map(Some)
        .map_err(|e| {
            Finding::new(
                Reason::BadArgument,
                format!("holdout key file {}: {e}", path.display()),
            )
        })
}

/// `calybris verify`: a gate directory (one holding `log/`) with
/// `calybris_gate::verify_dir` (chain, replay, books; every holdout assignment
/// recomputed with `--holdout-key-file`); a file or a segment directory with the scan
/// (chain, replay).
pub fn verify(args: &LogArgs, json: bool) -> u8 {
    let report = match args.target() {
        Ok(target) if scan::is_gate_dir(&target.path) => match holdout_key(args) {
            Ok(key) => crate::gate::verify_with(&target, key),
            Err(finding) => setup_report(args, finding),
        },
        Ok(target) => scan::scan(&target, &mut NoVisitor),
        Err(finding) => setup_report(args, finding),
    };
    print_report(&report, json)
}

/// What `inspect` gathers.
#[derive(Default)]
struct Inventory {
    first_sequence: Option<u64>,
    last_sequence: Option<u64>,
    policies: Vec<(u64, Digest, u64, u64, usize)>,
    by_action: BTreeMap<KernelAction, u64>,
    by_reason: BTreeMap<KernelReason, u64>,
    /// Decisions and estimated cost of selections, by tenant (the tenant number of
    /// an audited log, the name of a gate log).
    by_tenant: BTreeMap<String, (u64, u128)>,
    by_budget: BTreeMap<&'static str, u64>,
    /// Records of a gate log by kind (empty for an audited log).
    by_kind: BTreeMap<&'static str, u64>,
    /// The earliest and latest `recorded_at_unix_ms` of the decisions.
    recorded: Option<(u64, u64)>,
    /// Selections by selected model, named by the log's policy-names records.
    by_model: SelectionTally,
}

impl Inventory {
    fn seen(&mut self, sequence: u64) {
        self.first_sequence.get_or_insert(sequence);
        self.last_sequence = Some(sequence);
    }

    fn count_decision(&mut self, sequence: u64, record: &DecisionRecord, tenant: String) {
        self.seen(sequence);
        self.by_model.decision(record);
        let at = record.meta.recorded_at_unix_ms;
        self.recorded = Some(match self.recorded {
            Some((first, last)) => (first.min(at), last.max(at)),
            None => (at, at),
        });
        *self.by_action.entry(record.decision.action).or_default() += 1;
        *self.by_reason.entry(record.decision.reason).or_default() += 1;
        let tenant = self.by_tenant.entry(tenant).or_default();
        tenant.0 += 1;
        if record.decision.is_selection() {
            tenant.1 += u128::from(record.decision.estimated_cost_microunits);
        }
    }
}

impl Visitor for Inventory {
    fn policy(&mut self, sequence: u64, record: &PolicyRecord) {
        self.seen(sequence);
        self.by_model.policy(record.policy_digest, &record.policy);
        self.policies.push((
            sequence,
            record.policy_digest,
            record.policy.policy_epoch(),
            record.policy.catalog_epoch(),
            record.policy.models().len(),
        ));
    }

    fn decision(&mut self, sequence: u64, record: &DecisionRecord) {
        self.count_decision(sequence, record, record.meta.tenant_id.to_string());
    }

    fn gate(&mut self, sequence: u64, record: &GateRecord) {
        self.seen(sequence);
        *self.by_kind.entry(record.kind()).or_default() += 1;
        match record {
            GateRecord::Policy(policy) => self.policy(sequence, policy),
            GateRecord::Decision(decision) => {
                *self
                    .by_budget
                    .entry(budget_word(decision.budget))
                    .or_default() += 1;
                self.count_decision(sequence, &decision.audit, decision.tenant.clone());
            }
            GateRecord::PolicyNames(names) => {
                self.by_model.names(&names.policy_digest, &names.names);
            }
            // A staged policy (a holdout baseline decides some requests): its models
            // are labelled like the policy in force's; it is not listed as one.
            GateRecord::Staged(staged) => {
                self.by_model
                    .policy(staged.policy.policy_digest, &staged.policy.policy);
            }
            _ => {}
        }
    }
}

/// The words `inspect` and `show` give a budget outcome recorded by the gate.
#[must_use]
pub fn budget_word(outcome: BudgetOutcome) -> &'static str {
    match outcome {
        BudgetOutcome::RejectedByKernel => "not priced: rejected by the kernel",
        BudgetOutcome::NotPriced => "admitted, nothing to hold (free)",
        BudgetOutcome::Reserved { .. } => "admitted, cost reserved",
        BudgetOutcome::Insufficient { .. } => "refused: insufficient budget",
        BudgetOutcome::ReservedCapExceeded { .. } => "refused: reservation cap",
        BudgetOutcome::TooManyOpenReservations => "refused: too many open reservations",
    }
}

/// A budget outcome in words, with its amount.
fn budget_text(outcome: BudgetOutcome) -> String {
    match outcome {
        BudgetOutcome::Reserved { amount_microunits } => format!(
            "{}: {} held",
            budget_word(outcome),
            amount_u64(amount_microunits)
        ),
        BudgetOutcome::Insufficient {
            remaining_microunits,
        } => format!(
            "{}: {} spendable",
            budget_word(outcome),
            amount_text(remaining_microunits)
        ),
        BudgetOutcome::ReservedCapExceeded {
            reserved_microunits,
        } => format!(
            "{}: {} already held",
            budget_word(outcome),
            amount_text(reserved_microunits)
        ),
        _ => budget_word(outcome).to_owned(),
    }
}

/// The largest number of tenants `inspect` lists one by one.
const MAX_TENANTS_LISTED: usize = 64;

fn inventory_text(
    path: &Path,
    report: &Report,
    inv: &Inventory,
    models: &[ModelSelections],
) -> String {
    let c = &report.counts;
    let mut out = String::new();
    let _ = writeln!(out, "log: {}", path.display());
    let range = match (inv.first_sequence, inv.last_sequence) {
        (Some(first), Some(last)) => format!("sequence {first}..={last}"),
        _ => "no verified record".to_owned(),
    };
    let _ = writeln!(
        out,
        "records: {} ({range}), policies {}, decisions {}",
        c.records, c.policies, c.decisions
    );
    if let Some((first, last)) = inv.recorded {
        let _ = writeln!(
            out,
            "decisions recorded from {} to {}",
            human::rfc3339_utc(first),
            human::rfc3339_utc(last)
        );
    }
    let _ = writeln!(out, "policies:");
    for (sequence, digest, policy_epoch, catalog_epoch, models) in &inv.policies {
        let _ = writeln!(
            out,
            "  record {sequence}: digest {}, policy epoch {policy_epoch}, catalog epoch {catalog_epoch}, {models} models",
            digest_to_hex(digest)
        );
    }
    let decisions: u64 = inv.by_action.values().sum();
    let shares = human::shares_tenths(&inv.by_action.values().copied().collect::<Vec<_>>());
    let _ = writeln!(out, "decisions by action:");
    for ((action, count), share) in inv.by_action.iter().zip(shares) {
        let _ = writeln!(
            out,
            "  {:<12} {:<32} {:>12} {:>8}",
            render::action_word(*action),
            action.to_string(),
            human::grouped(*count),
            human::percent_text(share)
        );
    }
    let shares = human::shares_tenths(&inv.by_reason.values().copied().collect::<Vec<_>>());
    let _ = writeln!(out, "decisions by reason:");
    for ((reason, count), share) in inv.by_reason.iter().zip(shares) {
        let _ = writeln!(
            out,
            "  {:<56} {:>10} {:>8}",
            format!("{reason} (code {})", reason.code()),
            human::grouped(*count),
            human::percent_text(share)
        );
    }
    if decisions > 0 {
        let _ = writeln!(
            out,
            "  {:<56} {:>10} {:>8}",
            "total",
            human::grouped(decisions),
            human::percent_text(1_000)
        );
    }
    if !models.is_empty() {
        let _ = writeln!(
            out,
            "selections by model: {} (model, provider, selections, estimated cost in units)",
            models.len()
        );
        for row in models {
            let _ = writeln!(
                out,
                "  {:<32} {:<24} {:>10} {:>20}",
                crate::report::model_label(row.model_id, row.model.as_deref()),
                crate::report::provider_label(row.provider_id, row.provider.as_deref()),
                human::grouped(row.selections),
                human::units(i128::try_from(row.estimated_cost_microunits).unwrap_or(i128::MAX))
            );
        }
    }
    if !inv.by_kind.is_empty() {
        let _ = writeln!(out, "gate records by kind:");
        for (kind, count) in &inv.by_kind {
            let _ = writeln!(out, "  {kind:<16} {count}");
        }
    }
    if !inv.by_budget.is_empty() {
        let _ = writeln!(out, "budget outcomes (recorded by the gate):");
        for (word, count) in &inv.by_budget {
            let _ = writeln!(out, "  {word:<40} {count}");
        }
    }
    let _ = writeln!(
        out,
        "tenants: {} (decisions; estimated cost of selections in units, 1 unit = 1,000,000 microunits)",
        inv.by_tenant.len()
    );
    for (tenant, (count, cost)) in inv.by_tenant.iter().take(MAX_TENANTS_LISTED) {
        let _ = writeln!(
            out,
            "  tenant {tenant:<24} {:>10} {:>20}",
            human::grouped(*count),
            human::units(i128::try_from(*cost).unwrap_or(i128::MAX))
        );
    }
    if inv.by_tenant.len() > MAX_TENANTS_LISTED {
        let _ = writeln!(
            out,
            "  ... and {} more (all of them with --json)",
            inv.by_tenant.len() - MAX_TENANTS_LISTED
        );
    }
    out
}

/// The JSON form of `inspect` (docs/schemas/inspect-report.schema.json).
#[derive(Serialize)]
struct InspectJson<'a> {
    path: String,
    records: u64,
    first_sequence: Option<u64>,
    last_sequence: Option<u64>,
    first_recorded_at: Option<String>,
    last_recorded_at: Option<String>,
    policies: Vec<PolicyJson>,
    by_action: Vec<ActionJson>,
    by_reason: Vec<ReasonJson>,
    by_kind: BTreeMap<&'static str, u64>,
    by_budget: BTreeMap<&'static str, u64>,
    by_model: Vec<ModelJson<'a>>,
    tenants: Vec<TenantJson>,
    verify: serde_json::Value,
}

/// Selections of one model, named where the log holds the names.
#[derive(Serialize)]
struct ModelJson<'a> {
    model_id: u32,
    model: Option<&'a str>,
    provider_id: u16,
    provider: Option<&'a str>,
    selections: u64,
    estimated_cost_microunits: u128,
    estimated_cost_units: String,
}

#[derive(Serialize)]
struct PolicyJson {
    sequence: u64,
    digest: String,
    policy_epoch: u64,
    catalog_epoch: u64,
    models: usize,
}

#[derive(Serialize)]
struct ActionJson {
    action: &'static str,
    words: &'static str,
    count: u64,
    share_tenths_percent: u64,
}

#[derive(Serialize)]
struct ReasonJson {
    reason: &'static str,
    code: u16,
    words: &'static str,
    count: u64,
    share_tenths_percent: u64,
}

#[derive(Serialize)]
struct TenantJson {
    tenant: String,
    decisions: u64,
    estimated_cost_microunits: u128,
    estimated_cost_units: String,
}

fn inventory_json(
    path: &Path,
    report: &Report,
    inv: &Inventory,
    models: &[ModelSelections],
) -> String {
    let action_shares = human::shares_tenths(&inv.by_action.values().copied().collect::<Vec<_>>());
    let reason_shares = human::shares_tenths(&inv.by_reason.values().copied().collect::<Vec<_>>());
    let body = InspectJson {
        path: path.display().to_string(),
        records: report.counts.records,
        first_sequence: inv.first_sequence,
        last_sequence: inv.last_sequence,
        first_recorded_at: inv.recorded.map(|(first, _)| human::rfc3339_utc(first)),
        last_recorded_at: inv.recorded.map(|(_, last)| human::rfc3339_utc(last)),
        policies: inv
            .policies
            .iter()
            .map(
                |(sequence, digest, policy_epoch, catalog_epoch, models)| PolicyJson {
                    sequence: *sequence,
                    digest: digest_to_hex(digest),
                    policy_epoch: *policy_epoch,
                    catalog_epoch: *catalog_epoch,
                    models: *models,
                },
            )
            .collect(),
        by_action: inv
            .by_action
            .iter()
            .zip(action_shares)
            .map(|((action, count), share)| ActionJson {
                action: render::action_word(*action),
                words: action.words(),
                count: *count,
                share_tenths_percent: share,
            })
            .collect(),
        by_reason: inv
            .by_reason
            .iter()
            .zip(reason_shares)
            .map(|((reason, count), share)| ReasonJson {
                reason: reason.name(),
                code: reason.code(),
                words: reason.words(),
                count: *count,
                share_tenths_percent: share,
            })
            .collect(),
        by_kind: inv.by_kind.clone(),
        by_budget: inv.by_budget.clone(),
        by_model: models
            .iter()
            .map(|row| ModelJson {
                model_id: row.model_id,
                model: row.model.as_deref(),
                provider_id: row.provider_id,
                provider: row.provider.as_deref(),
                selections: row.selections,
                estimated_cost_microunits: row.estimated_cost_microunits,
                estimated_cost_units: human::units(
                    i128::try_from(row.estimated_cost_microunits).unwrap_or(i128::MAX),
                )
                .replace(',', ""),
            })
            .collect(),
        tenants: inv
            .by_tenant
            .iter()
            .map(|(tenant, (count, cost))| TenantJson {
                tenant: tenant.clone(),
                decisions: *count,
                estimated_cost_microunits: *cost,
                estimated_cost_units: human::units(i128::try_from(*cost).unwrap_or(i128::MAX))
                    .replace(',', ""),
            })
            .collect(),
        verify: report.json_value(),
    };
    to_json(&body)
}

/// `calybris inspect`; with `json`, one JSON object on one line on stdout whatever
/// the outcome (an `ERROR` also as its line on stderr).
pub fn inspect(args: &LogArgs, json: bool) -> u8 {
    let mut inventory = Inventory::default();
    let report = scan_args(args, &mut inventory);
    let models = std::mem::take(&mut inventory.by_model).into_selections();
    if json {
        stdout_text(&format!(
            "{}\n",
            inventory_json(&args.file, &report, &inventory, &models)
        ));
        if report.outcome() == Outcome::Error {
            stderr_line(&report.line());
        }
        return report.outcome().exit_code();
    }
    if report.outcome() != Outcome::Error {
        stdout_text(&inventory_text(&args.file, &report, &inventory, &models));
    }
    print_report(&report, false)
}

/// What `show` looks for.
struct Finder {
    sequence: u64,
    policies: HashMap<Digest, SealedPolicy>,
    /// The names of those policies, from the log's policy-names records.
    names: HashMap<Digest, calybris::gate::NameMap>,
    found: Option<Found>,
    /// The log's adaptive setup, to name an adaptive decision's regime and tier.
    adaptive_setup: Option<calybris::gate::adaptive::AdaptiveSetup>,
}

enum Found {
    Policy(u64, Box<SealedPolicy>),
    /// A decision, its policy, and for a gate log its tenant name, request id and
    /// budget outcome.
    Decision(
        Box<DecisionRecord>,
        Box<SealedPolicy>,
        Option<GateDecisionInfo>,
        Option<Box<calybris::gate::NameMap>>,
    ),
    /// A gate record other than a policy or a decision, described in words.
    GateOther(String),
}

/// What a gate log adds to a decision.
struct GateDecisionInfo {
    tenant: String,
    budget: BudgetOutcome,
    adaptive: Option<calybris::gate::adaptive::AdaptiveNote>,
}

impl Finder {
    fn found_decision(
        &mut self,
        sequence: u64,
        record: &DecisionRecord,
        gate: Option<GateDecisionInfo>,
    ) {
        if sequence != self.sequence {
            return;
        }
        if let Some(policy) = self.policies.get(&record.policy_digest) {
            let names = self.names.remove(&record.policy_digest).map(Box::new);
            self.found = Some(Found::Decision(
                Box::new(*record),
                Box::new(policy.clone()),
                gate,
                names,
            ));
        }
        // Once found, no more policies need keeping.
        self.policies.clear();
        self.names.clear();
    }
}

impl Visitor for Finder {
    fn policy(&mut self, sequence: u64, record: &PolicyRecord) {
        if sequence == self.sequence {
            self.found = Some(Found::Policy(sequence, Box::new(record.policy.clone())));
        }
        if self.found.is_none() {
            self.policies
                .entry(record.policy_digest)
                .or_insert_with(|| record.policy.clone());
        }
    }

    fn decision(&mut self, sequence: u64, record: &DecisionRecord) {
        self.found_decision(sequence, record, None);
    }

    fn gate(&mut self, sequence: u64, record: &GateRecord) {
        match record {
            GateRecord::Policy(policy) => self.policy(sequence, policy),
            GateRecord::Decision(decision) => {
                let info = GateDecisionInfo {
                    tenant: decision.tenant.clone(),
                    budget: decision.budget,
                    adaptive: decision.adaptive.clone(),
                };
                self.found_decision(sequence, &decision.audit, Some(info));
            }
            GateRecord::PolicyNames(names) if sequence != self.sequence && self.found.is_none() => {
                self.names.insert(names.policy_digest, names.names.clone());
            }
            // A held-out decision names the staged baseline.
            GateRecord::Staged(staged) if sequence != self.sequence && self.found.is_none() => {
                self.policies
                    .entry(staged.policy.policy_digest)
                    .or_insert_with(|| staged.policy.policy.clone());
            }
            GateRecord::AdaptiveSetup(setup)
                if sequence != self.sequence && self.found.is_none() =>
            {
                self.adaptive_setup = Some(setup.clone());
            }
            other if sequence == self.sequence => {
                self.found = Some(Found::GateOther(gate_record_text(sequence, other)));
            }
            _ => {}
        }
    }
}

/// Microunits, and the same as decimal units.
fn amount_text(microunits: i64) -> String {
    format!(
        "{microunits} microunits ({} units)",
        crate::report::units_text(microunits)
    )
}

fn amount_u64(microunits: u64) -> String {
    amount_text(i64::try_from(microunits).unwrap_or(i64::MAX))
}

/// One gate record other than a policy or a decision, in words.
fn gate_record_text(sequence: u64, record: &GateRecord) -> String {
    let head = format!("record {sequence} is a gate {} record", record.kind());
    match record {
        GateRecord::Header(header) => {
            format!("{head}: gate format version {}\n", header.format_version)
        }
        GateRecord::TenantCreated(created) => format!(
            "{head}: tenant {} created with {}\n",
            created.tenant,
            amount_u64(created.initial_microunits)
        ),
        GateRecord::TopUp(top_up) => format!(
            "{head}: tenant {} tops up by {}\n",
            top_up.tenant,
            amount_u64(top_up.amount_microunits)
        ),
        GateRecord::LimitsChanged(limits) => format!(
            "{head}: tenant {}, cap on open holds {}, cap on open reservations {}\n",
            limits.tenant,
            limits
                .max_reserved_microunits
                .map_or_else(|| "none".to_owned(), amount_u64),
            limits
                .max_open_reservations
                .map_or_else(|| "none".to_owned(), |cap| cap.to_string())
        ),
        GateRecord::Settlement(settlement) => {
            let how = match settlement.kind {
                SettlementKind::Commit { actual_microunits } => {
                    format!(
                        "committed {} (the rest of the hold refunded)",
                        amount_u64(actual_microunits)
                    )
                }
                SettlementKind::CommitWithOverrun { actual_microunits } => format!(
                    "committed {} through the overrun path (more than the hold)",
                    amount_u64(actual_microunits)
                ),
                SettlementKind::Release => "released: nothing spent".to_owned(),
                SettlementKind::Abandon => "abandoned: nothing spent".to_owned(),
                SettlementKind::ReleasedAtReopen => {
                    "released when the gate was reopened: nothing spent".to_owned()
                }
                SettlementKind::CommittedAtReopen => {
                    "spent in full when the gate was reopened (the hold is the most the interrupted admission could cost)".to_owned()
                }
            };
            format!(
                "{head}: settles decision {} (record {}) of tenant {}: {how}\n",
                settlement.decision_sequence, settlement.decision_sequence, settlement.tenant
            )
        }
        GateRecord::Outcome(outcome) => format!(
            "{head}: outcome of decision {} (decision digest {}): {}, reward {}, latency {} ms, {} bytes of detail\n",
            outcome.decision_sequence,
            digest_to_hex(&outcome.decision_digest),
            if outcome.success {
                "success"
            } else {
                "failure"
            },
            amount_text(outcome.reward_microunits),
            outcome.latency_ms,
            outcome.detail.len()
        ),
        GateRecord::BookSnapshot(snapshot) => format!(
            "{head}: {} tenants, {} open holds, {} budget nodes ({} holding), policy {}\n",
            snapshot.tenants.len(),
            snapshot.open.len(),
            snapshot.budget_nodes.len(),
            snapshot.budget_holds.len(),
            digest_to_hex(&snapshot.policy_digest)
        ),
        GateRecord::PolicyNames(names) => crate::policy_file::names_record_text(&head, names),
        GateRecord::Execution(execution) => format!(
            "{head}: executes decision {} ({:?}, HTTP {}): served by {} model {}, {} attempts, {} ms, cost {}\n",
            execution.decision_sequence,
            execution.status,
            execution.http_status,
            execution.provider,
            execution.model,
            execution.attempts.len(),
            execution.latency_ms,
            amount_u64(execution.cost_microunits)
        ),
        GateRecord::LeaseRefused(refusal) => format!(
            "{head}: tenant {} refused for its lease ({}), lease {:?} issued by {:?}\n",
            refusal.tenant, refusal.reason, refusal.lease_id, refusal.issued_by
        ),
        GateRecord::Promotion(promotion) => format!(
            "{head}: {} policy {} (previous {}), report digest {}\n",
            if promotion.rollback {
                "rollback to"
            } else {
                "promotes"
            },
            digest_to_hex(&promotion.policy_digest),
            digest_to_hex(&promotion.previous_policy_digest),
            digest_to_hex(&promotion.report_digest)
        ),
        GateRecord::BudgetDefined(node) => format!(
            "{head}: budget node {} ({:?}, parent {}) with {} per {:?} window, from window {}, alerts at {:?} bps\n",
            node.node,
            node.scope,
            node.parent.as_deref().unwrap_or("none"),
            amount_u64(node.limit_microunits),
            node.window,
            node.start_window,
            node.alert_thresholds_bps
        ),
        GateRecord::WindowReset(reset) => format!(
            "{head}: budget node {} moves from window {} to {}, {} expires\n",
            reset.node,
            reset.from_window,
            reset.to_window,
            amount_u64(reset.expired_microunits)
        ),
        GateRecord::AlertFired(alert) => format!(
            "{head}: budget node {} reached {} bps in window {} ({} of {})\n",
            alert.node,
            alert.threshold_bps,
            alert.window,
            amount_u64(alert.committed_microunits),
            amount_u64(alert.granted_microunits)
        ),
        GateRecord::BudgetTopUp(top_up) => format!(
            "{head}: budget node {} tops up window {} by {}\n",
            top_up.node,
            top_up.window,
            amount_u64(top_up.amount_microunits)
        ),
        GateRecord::Checkpoint(checkpoint) => format!(
            "{head}: tree size {}, root {}, signed note of {} bytes\n",
            checkpoint.tree_size,
            calybris_tlog::note::encode_base64(&checkpoint.root),
            checkpoint.note.len()
        ),
        GateRecord::Staged(staged) => format!(
            "{head}: policy {} staged as the {} ({} models)\n",
            digest_to_hex(&staged.policy.policy_digest),
            staged.role.name(),
            staged.policy.policy.models().len()
        ),
        GateRecord::Unstaged(unstaged) => format!(
            "{head}: the {} policy {} is unstaged\n",
            unstaged.role.name(),
            digest_to_hex(&unstaged.policy_digest)
        ),
        GateRecord::AdaptiveSetup(setup) => crate::adaptive_text::setup_text(&head, setup),
        GateRecord::EngineSnapshot(snapshot) => {
            crate::adaptive_text::snapshot_text(&head, snapshot)
        }
        GateRecord::EngineState(state) => crate::adaptive_text::state_text(&head, state),
        GateRecord::EnginePending(pending) => crate::adaptive_text::pending_text(&head, pending),
        GateRecord::Policy(_) | GateRecord::Decision(_) => format!("{head}\n"),
    }
}

fn hex16(bytes: &[u8; 16]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(32), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// `calybris show`.
pub fn show(args: &LogArgs, sequence: u64, json: bool) -> u8 {
    let mut finder = Finder {
        sequence,
        policies: HashMap::new(),
        names: HashMap::new(),
        found: None,
        adaptive_setup: None,
    };
    let report = scan_args(args, &mut finder);
    match finder.found {
        None if report.outcome() == Outcome::Verified => {
            stderr_line(&format!(
                "{} {}: {} holds {} records; there is no record {sequence}",
                Outcome::Error.word(),
                Code::NotFound.code(),
                args.file.display(),
                report.counts.records
            ));
            return EXIT_ERROR;
        }
        None => return print_report(&report, false),
        Some(Found::Policy(sequence, policy)) => {
            stdout_text(&format!(
                "record {sequence} is a policy record: digest {}, policy epoch {}, catalog epoch {}, {} models\n",
                digest_to_hex(policy.digest()),
                policy.policy_epoch(),
                policy.catalog_epoch(),
                policy.models().len()
            ));
        }
        Some(Found::GateOther(text)) => stdout_text(&text),
        Some(Found::Decision(record, policy, gate, names)) => {
            let explanation = policy.explain(record.input);
            let named = names.as_deref().map(|names| {
                crate::policy_file::NamedDecision::new(names, &record.input, &explanation)
            });
            if json {
                let body =
                    render::ExplanationJson::new(policy.digest(), &record.input, &explanation);
                let mut value = serde_json::to_value(&body).unwrap_or_default();
                if let (Some(named), Some(object)) = (&named, value.as_object_mut()) {
                    object.insert(
                        "names".into(),
                        serde_json::to_value(named).unwrap_or_default(),
                    );
                }
                stdout_text(&format!("{}\n", to_json(&value)));
            } else {
                let mut text = match &gate {
                    Some(gate) => format!(
                        "record {sequence}: tenant {} (number {}), request id {}, recorded at {}\n",
                        gate.tenant,
                        record.meta.tenant_id,
                        hex16(&record.meta.request_id),
                        human::rfc3339_utc(record.meta.recorded_at_unix_ms)
                    ),
                    None => format!(
                        "record {sequence}: tenant {}, recorded at {}\n",
                        record.meta.tenant_id,
                        human::rfc3339_utc(record.meta.recorded_at_unix_ms)
                    ),
                };
                if let Some(gate) = &gate {
                    let _ = writeln!(text, "budget outcome (gate): {}", budget_text(gate.budget));
                }
                if let Some(note) = gate.as_ref().and_then(|g| g.adaptive.as_ref()) {
                    text.push_str(&crate::adaptive_text::note_text(
                        note,
                        finder.adaptive_setup.as_ref(),
                    ));
                }
                text.push_str(&render::explanation_text(
                    policy.digest(),
                    &record.input,
                    &explanation,
                ));
                if let Some(named) = &named {
                    text.push_str(&named.text());
                }
                stdout_text(&text);
            }
        }
    }
    if json {
        // The explanation was the JSON output; report a failed verification on
        // stderr only.
        if report.outcome() != Outcome::Verified {
            stderr_line(&report.line());
        }
        return report.outcome().exit_code();
    }
    print_report(&report, false)
}

/// One JSON value on one line.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|error| format!("{{\"error\":\"cannot encode: {error}\"}}"))
}

fn file_error(error: &FileError) -> u8 {
    let outcome = if error.exit_code() == EXIT_ERROR {
        Outcome::Error.word()
    } else {
        "INVALID"
    };
    stderr_line(&format!("{outcome} {}: {error}", error.code()));
    error.exit_code()
}

/// `calybris explain`.
pub fn explain(policy_path: &Path, request_path: &Path, json: bool) -> u8 {
    let policy = match files::read_policy(policy_path) {
        Ok(policy) => SealedPolicy::new(policy),
        Err(error) => return file_error(&error),
    };
    let input = match files::read_request(request_path) {
        Ok(input) => input,
        Err(error) => return file_error(&error),
    };
    if let Err(source) = policy.prescribe_checked(input) {
        return file_error(&FileError::InvalidRequest {
            path: request_path.to_path_buf(),
            source,
        });
    }
    let explanation = policy.explain(input);
    if json {
        let body = render::ExplanationJson::new(policy.digest(), &input, &explanation);
        stdout_text(&format!("{}\n", to_json(&body)));
    } else {
        stdout_text(&render::explanation_text(
            policy.digest(),
            &input,
            &explanation,
        ));
    }
    EXIT_OK
}

/// `calybris policy check`; with `json`, one object on one line
/// (`outcome`, `path`, `policy_epoch`, `catalog_epoch`, `models`, `digest`), and
/// a failure as its one line on stderr.
pub fn policy_check(path: &Path, json: bool) -> u8 {
    match files::read_policy(path) {
        Ok(policy) => {
            let digest = digest_to_hex(&policy_digest(&policy));
            if json {
                stdout_text(&format!(
                    "{}\n",
                    to_json(&serde_json::json!({
                        "outcome": "VALID",
                        "path": path.display().to_string(),
                        "policy_epoch": policy.policy_epoch(),
                        "catalog_epoch": policy.catalog_epoch(),
                        "models": policy.models().len(),
                        "digest": digest,
                    }))
                ));
            } else {
                stdout_text(&crate::human::paint_outcome(&format!(
                    "VALID {}: policy epoch {}, catalog epoch {}, {} models, digest {digest}\n",
                    path.display(),
                    policy.policy_epoch(),
                    policy.catalog_epoch(),
                    policy.models().len(),
                )));
            }
            EXIT_OK
        }
        Err(error) => {
            debug_assert!(error.exit_code() == EXIT_DIVERGED || error.exit_code() == EXIT_ERROR);
            file_error(&error)
        }
    }
}
