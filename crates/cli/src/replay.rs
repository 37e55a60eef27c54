//! `calybris replay DIR --seq N`: re-derives one request the gateway logged, and, for
//! a local deterministic provider and when allowed, re-executes it. The outcomes,
//! reason codes and their order are in [`crate::report::ReplayReason`] and
//! `docs/CLI.md` ("replay"); the JSON report's schema is
//! `docs/schemas/replay-report.schema.json`.
//!
//! The checks, in order (the first that fails ends the replay):
//! 1. the whole directory verifies (`verify_dir`: chain, every decision replayed,
//!    books folded);
//! 2. record `N` is a gateway decision, or the execution record of one;
//! 3. the decision: the kernel re-run under the logged policy gives the logged
//!    decision, and its input and decision digests are its own;
//! 4. a decision the budget or the kernel refused: nothing executed (no execution
//!    record) -> VERIFIED;
//! 5. the execution record (code 10) is bound to the decision, and the settlement
//!    follows from it (the cost, or the whole hold when an overrun was not covered);
//! 6. the execution served a whole answer (not a failure or a disconnect);
//! 7. the input pointer: the archived body, which must hash to the logged request
//!    SHA-256;
//! 8. the environment: `--config FILE` or `--demo` compiles to the logged policy, and
//!    the body re-derives the logged kernel input under it;
//! 9. the provider that served is local and deterministic;
//! 10. `--allow-side-effects`, then `--allow-network`;
//! 11. the re-execution, whose answer must hash to the logged response SHA-256.

use std::path::{Path, PathBuf};

use calybris::digest::{Digest, SealedPolicy, decision_digest, digest_to_hex, input_digest};
use calybris::gate::record::GateDecision;
use calybris::gate::{
    BudgetOutcome, ExecutionRecord, ExecutionStatus, GateRecord, LOG_DIR, SettlementKind,
    VerifyError, VerifyOptions, verify_dir,
};
use calybris::wal::{AuditError, SegmentedReader, WalError, WalKey};
use calybris_gateway::GatewayConfig;
use calybris_gateway::archive::{ArchiveError, RequestArchive};
use calybris_gateway::config::{Compiled, ProviderKind};
use serde::Serialize;

use crate::report::{Code, EXIT_ERROR, ReplayOutcome, ReplayReason};
use crate::serve::{DEMO_ARCHIVE, demo_config, demo_mocks};
use crate::{stderr_line, stdout_text};

/// What `calybris replay` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The gate directory.
    pub dir: PathBuf,
    /// The record to replay: a decision, or an execution record.
    pub seq: u64,
    /// Allow opening connections (even to loopback).
    pub allow_network: bool,
    /// Allow calling a provider.
    pub allow_side_effects: bool,
    /// Print the report as JSON.
    pub json: bool,
    /// The gateway configuration that served.
    pub config: Option<PathBuf>,
    /// The gateway ran with `serve --demo`.
    pub demo: bool,
    /// The request-body archive (default: the configuration's, else
    /// `DIR/request-archive`).
    pub archive: Option<PathBuf>,
    /// The file holding the log's HMAC key (a gateway with `[server] log_key_file`),
    /// read as `calybris verify --key-file` reads it.
    pub key_file: Option<PathBuf>,
}

/// How one check of a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// It ran and held.
    Passed,
    /// It ran and failed (the report's reason says how).
    Failed,
    /// It did not run (an earlier check ended the replay, or it does not apply).
    NotRun,
}

/// The checks of a replay, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Checks {
    /// The directory verifies (chain, replays, books).
    pub log: Check,
    /// The kernel re-run under the logged policy, and the decision's digests.
    pub decision: Check,
    /// The execution record's binding and the settlement.
    pub settlement: Check,
    /// The archived body's hash and the kernel input re-derived from it.
    pub input: Check,
    /// The configuration's policy is the logged one.
    pub environment: Check,
    /// The re-executed answer's hash.
    pub output: Check,
}

impl Default for Checks {
    fn default() -> Self {
        Self {
            log: Check::NotRun,
            decision: Check::NotRun,
            settlement: Check::NotRun,
            input: Check::NotRun,
            environment: Check::NotRun,
            output: Check::NotRun,
        }
    }
}

/// The report of one replay (one JSON object with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The outcome.
    pub outcome: ReplayOutcome,
    /// Why it is not VERIFIED (`null` when it is).
    pub reason: Option<ReplayReason>,
    /// One human sentence.
    pub detail: String,
    /// The record asked for.
    pub seq: u64,
    /// The decision replayed.
    pub decision_sequence: Option<u64>,
    /// Its execution record.
    pub execution_sequence: Option<u64>,
    /// Its settlement record.
    pub settlement_sequence: Option<u64>,
    /// The provider that served, by name.
    pub provider: Option<String>,
    /// The model that served, by name.
    pub model: Option<String>,
    /// The logged request SHA-256, hex.
    pub request_sha256: Option<String>,
    /// The logged response SHA-256, hex.
    pub response_sha256: Option<String>,
    /// The re-executed answer's SHA-256, hex.
    pub replayed_response_sha256: Option<String>,
    /// Whether the request was executed again.
    pub reexecuted: bool,
    /// The checks.
    pub checks: Checks,
}

impl ReplayReport {
    fn new(seq: u64) -> Self {
        Self {
            outcome: ReplayOutcome::Verified,
            reason: None,
            detail: String::new(),
            seq,
            decision_sequence: None,
            execution_sequence: None,
            settlement_sequence: None,
            provider: None,
            model: None,
            request_sha256: None,
            response_sha256: None,
            replayed_response_sha256: None,
            reexecuted: false,
            checks: Checks::default(),
        }
    }

    /// The one-line human form: `OUTCOME [CODE]: detail`.
    #[must_use]
    pub fn line(&self) -> String {
        match self.reason {
            Some(reason) => format!("{} {}: {}", self.outcome.word(), reason.code(), self.detail),
            None => format!("{}: {}", self.outcome.word(), self.detail),
        }
    }
}

/// Ends a replay: the reason and its sentence.
struct Stop(ReplayReason, String);

fn stop(reason: ReplayReason, detail: impl Into<String>) -> Stop {
    Stop(reason, detail.into())
}

/// Runs `calybris replay`; returns the exit code.
#[must_use]
pub fn run(options: &Options) -> u8 {
    let key = match options.key_file.as_deref().map(crate::scan::read_key_file) {
        None => None,
        Some(Ok(key)) => Some(key),
        Some(Err(finding)) => {
            stderr_line(&format!(
                "{} {}: {}",
                ReplayOutcome::Error.word(),
                finding.reason.code(),
                finding.detail
            ));
            return EXIT_ERROR;
        }
    };
    let config = match load_config(options) {
        Ok(config) => config,
        Err((code, message)) => {
            stderr_line(&format!(
                "{} {}: {message}",
                ReplayOutcome::Error.word(),
                code.code()
            ));
            return EXIT_ERROR;
        }
    };
    let mut report = ReplayReport::new(options.seq);
    match replay(options, key.as_ref(), config.as_ref(), &mut report) {
        Ok(detail) => report.detail = detail,
        Err(Stop(reason, detail)) => {
            report.outcome = reason.outcome();
            report.reason = Some(reason);
            report.detail = detail;
        }
    }
    if options.json {
        stdout_text(&format!(
            "{}\n",
            serde_json::to_string(&report).unwrap_or_default()
        ));
    } else if report.outcome == ReplayOutcome::Verified {
        stdout_text(&format!("{}\n", report.line()));
    } else {
        stderr_line(&report.line());
    }
    report.outcome.exit_code()
}

/// The configuration the replay compares with: `--config FILE`, `--demo` (its
/// provider URLs filled in when the mocks start), or none.
fn load_config(options: &Options) -> Result<Option<(GatewayConfig, Compiled)>, (Code, String)> {
    let config = match (&options.config, options.demo) {
        (Some(_), true) => {
            return Err((
                Code::Usage,
                "give at most one of --config and --demo".to_owned(),
            ));
        }
        (Some(path), false) => match GatewayConfig::load(path) {
            Ok(config) => config,
            Err(calybris_gateway::ConfigError::Read { path, source }) => {
                return Err((Code::NotFound, format!("{}: {source}", path.display())));
            }
            Err(error) => return Err((Code::InvalidToml, error.to_string())),
        },
        (None, true) => {
            let placeholder = [
                "http://127.0.0.1:9".to_owned(),
                "http://127.0.0.1:9".to_owned(),
                "http://127.0.0.1:9".to_owned(),
            ];
            let text = demo_config(&placeholder, &options.dir, "127.0.0.1:0");
            GatewayConfig::from_toml(&text).map_err(|e| (Code::InvalidToml, e.to_string()))?
        }
        (None, false) => return Ok(None),
    };
    let compiled = config
        .compile()
        .map_err(|e| (Code::InvalidPolicy, e.to_string()))?;
    Ok(Some((config, compiled)))
}

/// The records of one request, found in the log.
struct Found {
    decision: (u64, GateDecision),
    policy: Option<SealedPolicy>,
    execution: Option<(u64, ExecutionRecord)>,
    settlement: Option<(u64, SettlementKind)>,
}

fn verify_stop(error: &VerifyError) -> Stop {
    let at = error
        .sequence()
        .map_or_else(String::new, |s| format!(" (record {s})"));
    let reason = match error {
        VerifyError::Log(WalError::NotFound { .. }) => ReplayReason::ReplayNotReplayable,
        VerifyError::Replay(AuditError::DoesNotReplay { .. }) | VerifyError::Books { .. } => {
            ReplayReason::DecisionCoreMismatch
        }
        VerifyError::Replay(AuditError::PolicyMissing { .. })
        | VerifyError::NamesUnknownPolicy { .. }
        | VerifyError::PromotionUnknownPolicy { .. } => ReplayReason::EnvironmentMismatch,
        _ => ReplayReason::EdrHashMismatch,
    };
    stop(
        reason,
        format!("the directory does not verify{at}: {error}"),
    )
}

fn read_error(error: &WalError) -> Stop {
    stop(
        ReplayReason::EdrHashMismatch,
        format!("reading the log again: {error}"),
    )
}

/// Finds the decision that record `seq` is or executes, with its policy, execution
/// and settlement.
fn find(dir: &Path, seq: u64, key: Option<&WalKey>) -> Result<Found, Stop> {
    let log = dir.join(LOG_DIR);
    let open = || SegmentedReader::<GateRecord>::open(&log, key, None).map_err(|e| read_error(&e));
    // Pass 1: what record `seq` is.
    let mut reader = open()?;
    let mut target = None;
    while let Some(entry) = reader.next_entry().map_err(|e| read_error(&e))? {
        if entry.sequence < seq {
            continue;
        }
        if entry.sequence == seq {
            target = Some(match &entry.record {
                GateRecord::Decision(_) => seq,
                GateRecord::Execution(execution) => execution.decision_sequence,
                other => {
                    return Err(stop(
                        ReplayReason::ReplayNotReplayable,
                        format!(
                            "record {seq} is a {} record, not a decision or an execution",
                            other.kind()
                        ),
                    ));
                }
            });
        }
        break;
    }
    let Some(target) = target else {
        return Err(stop(
            ReplayReason::ReplayNotReplayable,
            format!("the log holds no record {seq}"),
        ));
    };
    // Pass 2: the decision, the policy it names, its execution and settlement.
    let mut reader = open()?;
    let mut policies: Vec<SealedPolicy> = Vec::new();
    let mut decision = None;
    let mut execution = None;
    let mut settlement = None;
    while let Some(entry) = reader.next_entry().map_err(|e| read_error(&e))? {
        match entry.record {
            GateRecord::Policy(record)
                if decision.is_none()
                    && !policies
                        .iter()
                        .any(|p| p.digest() == record.policy.digest()) =>
            {
                policies.push(record.policy);
            }
            GateRecord::Decision(record) if entry.sequence == target => {
                decision = Some((entry.sequence, record));
            }
            GateRecord::Execution(record) if record.decision_sequence == target => {
                execution = Some((entry.sequence, record));
            }
            GateRecord::Settlement(record) if record.decision_sequence == target => {
                settlement = Some((entry.sequence, record.kind));
            }
            _ => {}
        }
        if decision.is_some() && execution.is_some() && settlement.is_some() {
            break;
        }
    }
    let Some(decision) = decision else {
        return Err(stop(
            ReplayReason::ReplayNotReplayable,
            format!("execution record {seq} names decision {target}, which is not a decision"),
        ));
    };
    let digest = decision.1.audit.policy_digest;
    let policy = policies.into_iter().find(|p| *p.digest() == digest);
    Ok(Found {
        decision,
        policy,
        execution,
        settlement,
    })
}

fn hex(digest: &Digest) -> String {
    digest_to_hex(digest.as_ref())
}

fn hex32(bytes: &[u8; 32]) -> String {
    digest_to_hex(bytes)
}

/// The replay; `Ok` is VERIFIED with its sentence.
fn replay(
    options: &Options,
    key: Option<&WalKey>,
    config: Option<&(GatewayConfig, Compiled)>,
    report: &mut ReplayReport,
) -> Result<String, Stop> {
    // 1. The directory (under its key, when it is keyed).
    let verify = VerifyOptions {
        key: key.cloned(),
        ..VerifyOptions::default()
    };
    if let Err(error) = verify_dir(&options.dir, &verify) {
        report.checks.log = Check::Failed;
        return Err(verify_stop(&error));
    }
    report.checks.log = Check::Passed;
    // 2. The records.
    let found = find(&options.dir, options.seq, key)?;
    let (decision_seq, decision) = &found.decision;
    report.decision_sequence = Some(*decision_seq);
    // 3. The decision.
    let audit = &decision.audit;
    let Some(policy) = &found.policy else {
        report.checks.decision = Check::Failed;
        return Err(stop(
            ReplayReason::EnvironmentMismatch,
            format!(
                "decision {decision_seq} names policy {}, which the log does not hold",
                hex(&audit.policy_digest)
            ),
        ));
    };
    if input_digest(&audit.input) != audit.input_digest
        || decision_digest(&audit.decision) != audit.decision_digest
    {
        report.checks.decision = Check::Failed;
        return Err(stop(
            ReplayReason::EdrHashMismatch,
            format!("decision {decision_seq}: its input or decision digest is not its own"),
        ));
    }
    if let Err(mismatch) = policy.verify_decision(audit.input, &audit.decision) {
        report.checks.decision = Check::Failed;
        return Err(stop(
            ReplayReason::DecisionCoreMismatch,
            format!("decision {decision_seq}: {mismatch}"),
        ));
    }
    report.checks.decision = Check::Passed;
    report.execution_sequence = found.execution.as_ref().map(|(s, _)| *s);
    report.settlement_sequence = found.settlement.as_ref().map(|(s, _)| *s);
    // 4. A refused decision: nothing may have executed.
    if !decision.budget.is_admitted() {
        if found.execution.is_some() || found.settlement.is_some() {
            report.checks.settlement = Check::Failed;
            return Err(stop(
                ReplayReason::DecisionCoreMismatch,
                format!(
                    "decision {decision_seq} was not admitted, yet the log executes or settles it"
                ),
            ));
        }
        report.checks.settlement = Check::Passed;
        let why = match decision.budget {
            BudgetOutcome::RejectedByKernel => "the kernel rejected it",
            _ => "the budget refused it",
        };
        return Ok(format!(
            "decision {decision_seq} re-derives under policy {}; {why}, so nothing executed",
            hex(&audit.policy_digest)
        ));
    }
    // 5. The execution and the settlement.
    let Some((_, execution)) = &found.execution else {
        return Err(stop(
            ReplayReason::ReplayNotReplayable,
            format!(
                "decision {decision_seq} was admitted but has no execution record (not a gateway request, or the gateway stopped before it finished)"
            ),
        ));
    };
    report.provider = Some(execution.provider.clone());
    report.model = Some(execution.model.clone());
    report.request_sha256 = Some(hex32(&execution.request_sha256));
    report.response_sha256 = Some(hex32(&execution.response_sha256));
    if execution.decision_digest != audit.decision_digest {
        report.checks.settlement = Check::Failed;
        return Err(stop(
            ReplayReason::EdrHashMismatch,
            format!(
                "the execution record of decision {decision_seq} is bound to another decision digest"
            ),
        ));
    }
    let held = decision.budget.held_microunits();
    let settled = found.settlement.as_ref().map(|(_, kind)| match kind {
        SettlementKind::Commit { actual_microunits }
        | SettlementKind::CommitWithOverrun { actual_microunits } => *actual_microunits,
        SettlementKind::CommittedAtReopen => held,
        SettlementKind::Release | SettlementKind::Abandon | SettlementKind::ReleasedAtReopen => 0,
    });
    let cost = execution.cost_microunits;
    let follows = settled.is_some_and(|s| s == cost || (cost > held && s == held))
        || (settled.is_none() && held == 0 && cost == 0);
    if !follows {
        report.checks.settlement = Check::Failed;
        return Err(stop(
            ReplayReason::DecisionCoreMismatch,
            format!(
                "decision {decision_seq}: the settlement ({}) does not follow from the execution's cost of {cost} microunits (held {held})",
                settled.map_or_else(|| "none".to_owned(), |s| format!("{s} microunits"))
            ),
        ));
    }
    report.checks.settlement = Check::Passed;
    // 6. A whole answer that served.
    if execution.status != ExecutionStatus::Served {
        return Err(stop(
            ReplayReason::ReplayNotReplayable,
            format!(
                "decision {decision_seq} did not serve a whole answer ({:?}): there is no output to reproduce",
                execution.status
            ),
        ));
    }
    // 7. The input pointer.
    let archive_dir = options
        .archive
        .clone()
        .or_else(|| config.and_then(|(c, _)| c.server.request_archive.clone()))
        .unwrap_or_else(|| options.dir.join(DEMO_ARCHIVE));
    let body = match RequestArchive::at(&archive_dir).load(&execution.request_sha256) {
        Ok(body) => body,
        Err(error @ ArchiveError::HashMismatch { .. }) => {
            report.checks.input = Check::Failed;
            return Err(stop(ReplayReason::InputHashMismatch, error.to_string()));
        }
        Err(error) => {
            return Err(stop(
                ReplayReason::InputPointerMissing,
                format!("the request body cannot be read from the archive: {error}"),
            ));
        }
    };
    // 8. The environment, and the input under it.
    let Some((config, compiled)) = config else {
        return Err(stop(
            ReplayReason::ProviderNotSupported,
            format!(
                "provider {:?} is not known to this replay: give the gateway's --config FILE, or --demo",
                execution.provider
            ),
        ));
    };
    let configured = SealedPolicy::new(compiled.policy.clone());
    if *configured.digest() != audit.policy_digest {
        report.checks.environment = Check::Failed;
        return Err(stop(
            ReplayReason::EnvironmentMismatch,
            format!(
                "the configuration compiles to policy {}, but decision {decision_seq} was made under {}",
                hex(configured.digest()),
                hex(&audit.policy_digest)
            ),
        ));
    }
    report.checks.environment = Check::Passed;
    let rederived = match calybris_gateway::replay::rederive(
        config,
        compiled,
        &body,
        audit.input.request_sequence,
    ) {
        Ok(rederived) => rederived,
        Err(error) => {
            report.checks.input = Check::Failed;
            return Err(stop(
                ReplayReason::InputHashMismatch,
                format!("the archived body is not a request the gateway decides: {error}"),
            ));
        }
    };
    if input_digest(&rederived.input) != audit.input_digest {
        report.checks.input = Check::Failed;
        return Err(stop(
            ReplayReason::InputHashMismatch,
            format!(
                "the kernel input re-derived from the archived body has digest {}, the logged one {}",
                hex(&input_digest(&rederived.input)),
                hex(&audit.input_digest)
            ),
        ));
    }
    report.checks.input = Check::Passed;
    // 9. A local deterministic provider.
    let (kind, base_url) = calybris_gateway::replay::provider_of(
        config,
        compiled,
        &execution.model,
        &execution.provider,
    )
    .map_err(|error| {
        report.checks.environment = Check::Failed;
        stop(ReplayReason::EnvironmentMismatch, error.to_string())
    })?;
    if !options.demo {
        let local = kind == ProviderKind::Ollama && is_loopback(base_url);
        let greedy = rederived.temperature == Some(0.0);
        if !local || !greedy {
            return Err(stop(
                ReplayReason::ProviderNotSupported,
                format!(
                    "provider {:?} ({kind:?} at {base_url}) is not local and deterministic: only an Ollama on loopback asked for temperature 0, or the demo's mocks, are re-executed{}",
                    execution.provider,
                    if local {
                        " (this request did not ask for temperature 0)"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    // 10. What the caller allowed.
    if !options.allow_side_effects {
        return Err(stop(
            ReplayReason::SideEffectsNotAllowed,
            format!(
                "re-executing decision {decision_seq} calls provider {:?}; pass --allow-side-effects",
                execution.provider
            ),
        ));
    }
    if !options.allow_network {
        return Err(stop(
            ReplayReason::NetworkNotAllowed,
            format!(
                "re-executing decision {decision_seq} connects to {}; pass --allow-network",
                if options.demo {
                    "the demo's mock providers on loopback"
                } else {
                    base_url
                }
            ),
        ));
    }
    // 11. The re-execution.
    report.reexecuted = true;
    let again = reexecute(
        options,
        config,
        compiled,
        &rederived,
        (*decision_seq, decision),
        execution,
    )?;
    report.replayed_response_sha256 = Some(hex32(&again.response_sha256));
    if again.response_sha256 != execution.response_sha256 {
        report.checks.output = Check::Failed;
        return Err(stop(
            ReplayReason::OutputHashMismatch,
            format!(
                "the re-executed answer hashes to {}, the logged one to {} ({} output tokens again, {} logged)",
                hex32(&again.response_sha256),
                hex32(&execution.response_sha256),
                again.output_tokens,
                execution.output_tokens
            ),
        ));
    }
    report.checks.output = Check::Passed;
    Ok(format!(
        "decision {decision_seq} re-derives under policy {}, and re-executing it on {}/{} gives the logged answer (SHA-256 {})",
        hex(&audit.policy_digest),
        execution.provider,
        execution.model,
        hex32(&execution.response_sha256)
    ))
}

/// Whether a base URL's host is a loopback address.
fn is_loopback(base_url: &str) -> bool {
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn reexecute(
    options: &Options,
    config: &GatewayConfig,
    compiled: &Compiled,
    rederived: &calybris_gateway::replay::Rederived,
    (decision_seq, decision): (u64, &GateDecision),
    execution: &ExecutionRecord,
) -> Result<calybris_gateway::replay::Reexecuted, Stop> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            stop(
                ReplayReason::ExecutionError,
                format!("starting the runtime: {e}"),
            )
        })?;
    // The answer's id names the decision record's log sequence.
    let logged = (decision_seq, decision.audit.meta.recorded_at_unix_ms);
    let held = decision.budget.held_microunits();
    runtime.block_on(async {
        let (mocks, config) = if options.demo {
            let (mocks, urls) = demo_mocks()
                .await
                .map_err(|e| stop(ReplayReason::ExecutionError, e))?;
            let text = demo_config(&urls, &options.dir, "127.0.0.1:0");
            let config = GatewayConfig::from_toml(&text)
                .map_err(|e| stop(ReplayReason::ExecutionError, e.to_string()))?;
            (Some(mocks), std::borrow::Cow::Owned(config))
        } else {
            (None, std::borrow::Cow::Borrowed(config))
        };
        let result = calybris_gateway::replay::reexecute(
            &config,
            compiled,
            rederived,
            &decision.audit.decision,
            held,
            &execution.model,
            logged,
        )
        .await
        .map_err(|e| {
            stop(
                ReplayReason::ExecutionError,
                format!("re-executing on {}: {e}", execution.provider),
            )
        });
        drop(mocks);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:11434"));
        assert!(is_loopback("http://localhost:11434/"));
        assert!(is_loopback("http://[::1]:11434"));
        assert!(!is_loopback("https://api.openai.com/v1"));
        assert!(!is_loopback("http://10.0.0.2:11434"));
        assert!(!is_loopback("http://127.0.0.1.example.com"));
    }
}
