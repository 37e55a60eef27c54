//! `calybris regret`, `calybris shadow`, `calybris promote` and `calybris rollback`:
//! the commands over [`crate::ope`] and [`crate::promotion`]. What each figure is, is
//! written in `docs/CLI.md`.

use std::path::{Path, PathBuf};

use calybris::digest::{Digest, SealedPolicy, digest_to_hex, parse_digest_hex};
use calybris::gate::record::PromotionRecord;
use calybris::gate::{Gate, GateConfig, HoldoutKey, ReopenHolds, VerifyOptions};
use calybris_adapt::ope::Interval;
use serde_json::{Value, json};

use crate::ope::{self, JoinedLog, LiveShadow, Mean, MismatchKind, Regret, Shadow};
use crate::policy_file::{self, LoadedPolicy};
use crate::promotion::{Criteria, PromotionReport};
use crate::report::{Code, EXIT_DIVERGED, EXIT_ERROR, EXIT_OK};
use crate::{stderr_line, stdout_text};

fn fail(word: &str, code: Code, detail: &str, exit: u8) -> u8 {
    stderr_line(&format!("{word} {}: {detail}", code.code()));
    exit
}

fn error(code: Code, detail: &str) -> u8 {
    fail("ERROR", code, detail, EXIT_ERROR)
}

/// The keys of a gate directory, as given on the command line (`--key-file`,
/// `--holdout-key-file`): each file's bytes are the key, used as they are.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// The log's HMAC key (a keyed gate: `calybris verify --key-file`).
    pub key_file: Option<PathBuf>,
    /// The holdout key, to recompute every decision's holdout assignment.
    pub holdout_key_file: Option<PathBuf>,
}

impl Keys {
    /// The verifier's options from the key files.
    ///
    /// # Errors
    /// The exit code after printing why a key file is unreadable or not a key.
    pub fn options(&self) -> Result<VerifyOptions, u8> {
        let mut options = VerifyOptions::default();
        if let Some(path) = &self.key_file {
            let key = crate::scan::read_key_file(path)
                .map_err(|f| fail("ERROR", Code::Usage, &f.detail, EXIT_ERROR))?;
            options.key = Some(key);
        }
        if let Some(path) = &self.holdout_key_file {
            let bytes = crate::files::read_at_most(path, crate::scan::MAX_KEY_FILE_BYTES).map_err(
                |_| {
                    error(
                        Code::Usage,
                        &format!("holdout key file {} cannot be read", path.display()),
                    )
                },
            )?;
            let key = HoldoutKey::new(&bytes).map_err(|e| {
                error(
                    Code::Usage,
                    &format!("holdout key file {}: {e}", path.display()),
                )
            })?;
            options.holdout_key = Some(key);
        }
        Ok(options)
    }
}

fn load(dir: &Path, keys: &Keys) -> Result<(JoinedLog, VerifyOptions), u8> {
    let options = keys.options()?;
    let log = ope::load(dir, &options)
        .map_err(|e| error(Code::LogNotVerified, &format!("{}: {e}", dir.display())))?;
    Ok((log, options))
}

fn candidate(path: &Path) -> Result<LoadedPolicy, u8> {
    policy_file::read_policy(path).map_err(|e| {
        let word = if e.exit_code() == EXIT_ERROR {
            "ERROR"
        } else {
            "INVALID"
        };
        stderr_line(&format!("{word} {}: {e}", e.code()));
        e.exit_code()
    })
}

fn interval_json(i: Option<Interval>) -> Value {
    i.map_or(Value::Null, |i| json!([i.lower, i.upper]))
}

fn mean_json(m: &Mean) -> Value {
    json!({"n": m.n, "value": m.value, "interval": interval_json(m.interval)})
}

fn mean_text(m: &Mean) -> String {
    match m.interval {
        Some(i) => format!("{:.1} [{:.1}, {:.1}]", m.value, i.lower, i.upper),
        None => format!("{:.1} [no interval]", m.value),
    }
}

fn join_json(log: &JoinedLog) -> Value {
    let c = &log.counts;
    json!({
        "decisions": c.decisions, "outcome_records": c.outcome_records, "joined": c.joined,
        "duplicates": c.duplicates, "unknown_decision": c.unknown_decision,
        "digest_mismatch": c.digest_mismatch, "reward_out_of_range": c.reward_out_of_range,
        "missing": c.missing,
    })
}

fn join_text(log: &JoinedLog) -> String {
    let c = &log.counts;
    format!(
        "decisions {}, outcome records {}: joined {}, duplicates {}, unknown decision {}, digest mismatch {}, reward out of range {}; admitted selections without an outcome {}\n",
        c.decisions,
        c.outcome_records,
        c.joined,
        c.duplicates,
        c.unknown_decision,
        c.digest_mismatch,
        c.reward_out_of_range,
        c.missing
    )
}

fn regret_json(log: &JoinedLog, r: &Regret) -> Value {
    let row = |row: &ope::RegretRow| {
        json!({
            "tenant": row.tenant, "model_id": row.model_id,
            "observed_reward": mean_json(&row.observed),
            "predicted_utility": mean_json(&row.predicted),
            "alternative_predicted_utility": mean_json(&row.alternative_predicted),
            "regret": mean_json(&row.regret),
        })
    };
    let cal = &r.calibration;
    json!({
        "join": join_json(log),
        "rows": r.rows.iter().map(row).collect::<Vec<_>>(),
        "total": r.total.as_ref().map(row),
        "calibration": {
            "deciles": cal.deciles.iter().map(|(n, p, o)| json!({"n": n, "predicted": p, "observed": o})).collect::<Vec<_>>(),
            "bias": cal.bias.as_ref().map(mean_json),
            "deciles_same_sign": cal.deciles_same_sign,
            "systematic": cal.systematic,
        },
        "holdout": r.holdout.as_ref().map(|h| json!({
            "share_bps": h.share_bps, "held_out": h.held_out, "assigned": h.assigned,
            "baseline_reward": mean_json(&h.baseline), "policy_reward": mean_json(&h.policy),
            "uplift": mean_json(&h.uplift),
        })),
    })
}

/// `calybris regret DIR`: the regret per tenant and selected model, and the
/// calibration of the kernel's expected utility.
#[must_use]
pub fn regret(dir: &Path, keys: &Keys, json: bool) -> u8 {
    let log = match load(dir, keys) {
        Ok((log, _)) => log,
        Err(code) => return code,
    };
    let r = ope::regret(&log);
    if r.total.is_none() {
        return error(Code::NoOutcomes, "no selection with an outcome in the log");
    }
    if json {
        stdout_text(&format!("{}\n", regret_json(&log, &r)));
        return EXIT_OK;
    }
    let mut text = join_text(&log);
    text.push_str("regret = alternative's predicted utility - selected model's observed reward (microunits per decision, 95% interval)\n");
    for row in r.rows.iter().chain(r.total.iter()) {
        let group = if row.model_id == 0 {
            "all tenants, all models".to_owned()
        } else {
            format!("tenant {} model {}", row.tenant, row.model_id)
        };
        text.push_str(&format!(
            "  {group}: n {}, observed {}, predicted {}, alternative {}, regret {}\n",
            row.observed.n,
            mean_text(&row.observed),
            mean_text(&row.predicted),
            mean_text(&row.alternative_predicted),
            mean_text(&row.regret),
        ));
    }
    let cal = &r.calibration;
    text.push_str("calibration (deciles by predicted utility: n, predicted, observed):\n");
    for (k, (n, p, o)) in cal.deciles.iter().enumerate() {
        text.push_str(&format!("  {}: {n}, {p:.1}, {o:.1}\n", k + 1));
    }
    if let Some(bias) = &cal.bias {
        text.push_str(&format!(
            "  bias (observed - predicted): {}; {} of 10 deciles lean the same way\n",
            mean_text(bias),
            cal.deciles_same_sign
        ));
    }
    if cal.systematic {
        text.push_str("WARNING systematic calibration bias: the bias interval excludes 0 and at least 8 of 10 deciles share its sign\n");
    }
    if let Some(h) = &r.holdout {
        text.push_str(&format!(
            "holdout ({} bps): {} of {} decisions held out; observed reward of the baseline {}, of the policy {}, uplift {}\n",
            h.share_bps,
            h.held_out,
            h.assigned,
            mean_text(&h.baseline),
            mean_text(&h.policy),
            mean_text(&h.uplift)
        ));
    }
    stdout_text(&text);
    EXIT_OK
}

fn kind_names() -> [MismatchKind; 4] {
    [
        MismatchKind::Same,
        MismatchKind::OtherModel,
        MismatchKind::NewlyRejected,
        MismatchKind::NewlyAdmitted,
    ]
}

fn shadow_json(s: &Shadow) -> Value {
    let kinds: serde_json::Map<String, Value> = kind_names()
        .iter()
        .zip(s.by_kind)
        .map(|(k, n)| (k.name().to_owned(), json!(n)))
        .collect();
    json!({
        "candidate_digest": digest_to_hex(&s.candidate_digest.0),
        "decisions": s.decisions,
        "by_kind": kinds,
        "by_reason": s.by_reason.iter().map(|((k, r), n)| json!({"kind": k.name(), "reason": r, "count": n})).collect::<Vec<_>>(),
        "rows": s.rows, "supported": s.supported, "unsupported": s.unsupported,
        "unsupported_no_outcome": s.unsupported_no_outcome,
        "incumbent_value": s.incumbent.as_ref().map(mean_json),
        "baseline_value": s.baseline.as_ref().map(mean_json),
        "estimates": s.estimates.iter().map(|e| json!({
            "estimator": e.estimator.name(), "value": e.value,
            "interval": interval_json(e.normal_interval), "used": e.counts.used,
            "effective_sample_size": e.effective_sample_size,
        })).collect::<Vec<_>>(),
        "gain": s.gain.as_ref().map(mean_json),
    })
}

fn live_json(live: &[LiveShadow]) -> Value {
    Value::Array(
        live.iter()
            .map(|l| {
                let kinds: serde_json::Map<String, Value> = kind_names()
                    .iter()
                    .zip(l.by_kind)
                    .map(|(k, n)| (k.name().to_owned(), json!(n)))
                    .collect();
                json!({
                    "candidate_digest": digest_to_hex(&l.candidate_digest.0),
                    "decisions": l.decisions,
                    "by_kind": kinds,
                    "by_reason": l.by_reason.iter().map(|((k, r), n)| json!({"kind": k.name(), "reason": r, "count": n})).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn live_text(live: &[LiveShadow]) -> String {
    let mut text = String::new();
    if live.is_empty() {
        text.push_str("live shadow: no decision in the log carries a shadow note\n");
    }
    for l in live {
        let lead = format!(
            "live shadow of candidate {}: {} decisions:",
            digest_to_hex(&l.candidate_digest.0),
            l.decisions
        );
        comparison_text(&mut text, &lead, &l.by_kind, &l.by_reason);
    }
    text
}

/// A candidate's decisions against the logged ones: `lead`, the counts by kind on
/// the same line, then one line per mismatch kind and reason.
fn comparison_text(
    text: &mut String,
    lead: &str,
    by_kind: &[u64; 4],
    by_reason: &std::collections::BTreeMap<(MismatchKind, &'static str), u64>,
) {
    text.push_str(&format!(
        "{lead} same {}, other model {}, newly rejected {}, newly admitted {}\n",
        by_kind[0], by_kind[1], by_kind[2], by_kind[3]
    ));
    for ((kind, reason), n) in by_reason {
        text.push_str(&format!("  {} {reason}: {n}\n", kind.name()));
    }
}

fn report_json(report: &PromotionReport) -> Value {
    json!({
        "incumbent_digest": digest_to_hex(&report.incumbent_digest.0),
        "candidate_digest": digest_to_hex(&report.candidate_digest.0),
        "anchor": crate::report::anchor_text(&report.anchor),
        "criteria": report.criteria,
        "checks": {
            "support": report.checks[0], "value": report.checks[1],
            "mismatch_rate": report.checks[2], "no_loosening": report.checks[3],
        },
        "loosened": report.loosened.iter().map(|l| json!({
            "gate": l.name(), "model_id": l.model_id, "incumbent": l.incumbent, "candidate": l.candidate,
        })).collect::<Vec<_>>(),
        "passed": report.passed(),
        "report_digest": digest_to_hex(&report.digest().0),
    })
}

fn evaluate(
    dir: &Path,
    candidate_path: &Path,
    criteria: Criteria,
    keys: &Keys,
) -> Result<(JoinedLog, LoadedPolicy, PromotionReport, VerifyOptions), u8> {
    let (log, options) = load(dir, keys)?;
    let loaded = candidate(candidate_path)?;
    let Some(incumbent) = log.current().cloned() else {
        return Err(error(Code::LogNotVerified, "the log holds no policy"));
    };
    let shadow =
        ope::shadow(&log, &loaded.policy).map_err(|e| error(Code::NoOutcomes, &e.to_string()))?;
    let report = PromotionReport::new(&incumbent, &loaded.policy, log.anchor, criteria, shadow);
    Ok((log, loaded, report, options))
}

/// `calybris shadow DIR [--candidate P]`: the live shadow results recorded in the log
/// and, with a candidate, the offline replay under it, its value by every estimator,
/// and the promotion report.
#[must_use]
pub fn shadow(
    dir: &Path,
    candidate_path: Option<&Path>,
    criteria: Criteria,
    keys: &Keys,
    json: bool,
) -> u8 {
    let Some(candidate_path) = candidate_path else {
        let log = match load(dir, keys) {
            Ok((log, _)) => log,
            Err(code) => return code,
        };
        let live = ope::live_shadow(&log);
        if json {
            let out = json!({
                "join": join_json(&log), "shadow": null, "promotion": null, "live": live_json(&live),
            });
            stdout_text(&format!("{out}\n"));
        } else {
            stdout_text(&format!("{}{}", join_text(&log), live_text(&live)));
        }
        return EXIT_OK;
    };
    let (log, _, report, _) = match evaluate(dir, candidate_path, criteria, keys) {
        Ok(done) => done,
        Err(code) => return code,
    };
    let live = ope::live_shadow(&log);
    let s = &report.shadow;
    if json {
        let out = json!({
            "join": join_json(&log), "shadow": shadow_json(s), "promotion": report_json(&report),
            "live": live_json(&live),
        });
        stdout_text(&format!("{out}\n"));
        return EXIT_OK;
    }
    let mut text = join_text(&log);
    let lead = format!(
        "candidate {}: {} decisions replayed:",
        digest_to_hex(&s.candidate_digest.0),
        s.decisions
    );
    comparison_text(&mut text, &lead, &s.by_kind, &s.by_reason);
    text.push_str(&format!(
        "rows with an outcome {}: supported (candidate takes the logged action) {}, unsupported {}; newly admitted (no outcome possible) {}\n",
        s.rows, s.supported, s.unsupported, s.unsupported_no_outcome
    ));
    if let Some(m) = &s.incumbent {
        text.push_str(&format!("incumbent (logged) value: {}\n", mean_text(m)));
    }
    if let Some(m) = &s.baseline {
        text.push_str(&format!(
            "holdout baseline (held-out rows) value: {}\n",
            mean_text(m)
        ));
    }
    for e in &s.estimates {
        let m = Mean {
            n: e.counts.used,
            value: e.value,
            interval: e.normal_interval,
        };
        text.push_str(&format!("  {}: {}\n", e.estimator.name(), mean_text(&m)));
    }
    if let Some(g) = &s.gain {
        text.push_str(&format!(
            "gain per decision (DR - logged): {}\n",
            mean_text(g)
        ));
    }
    let words = [
        "support",
        "value",
        "mismatch rate",
        "no hard-gate loosening",
    ];
    for (word, ok) in words.iter().zip(report.checks) {
        text.push_str(&format!("  {word}: {}\n", if ok { "pass" } else { "FAIL" }));
    }
    for l in &report.loosened {
        let model = if l.gate == 3 {
            format!(" of model {}", l.model_id)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "  loosened {}{model}: {} -> {}\n",
            l.name(),
            l.incumbent,
            l.candidate
        ));
    }
    text.push_str(&format!(
        "{} report digest {}\n",
        if report.passed() {
            "PROMOTABLE"
        } else {
            Code::NotPromotable.code()
        },
        digest_to_hex(&report.digest().0)
    ));
    text.push_str(&live_text(&live));
    stdout_text(&text);
    EXIT_OK
}

/// The criteria and digest a saved report (a `shadow --json` output, or its
/// `promotion` object) carries.
fn saved_report(path: &Path) -> Result<(Criteria, Digest), String> {
    let bytes = crate::files::read_at_most(path, crate::files::MAX_JSON_FILE_BYTES)
        .map_err(|_| format!("{}: cannot be read", path.display()))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let promotion = value.get("promotion").unwrap_or(&value);
    let criteria: Criteria = serde_json::from_value(promotion["criteria"].clone())
        .map_err(|e| format!("{}: criteria: {e}", path.display()))?;
    let digest = promotion["report_digest"]
        .as_str()
        .and_then(|text| parse_digest_hex(text).ok())
        .ok_or_else(|| format!("{}: no report_digest", path.display()))?;
    Ok((criteria, Digest(digest)))
}

fn open_gate(
    dir: &Path,
    log: &JoinedLog,
    policy: &SealedPolicy,
    options: &VerifyOptions,
) -> Result<Gate, u8> {
    let mut config = GateConfig::new(dir, policy.clone()).reopen_holds(ReopenHolds::Keep);
    if let Some(key) = &options.key {
        config = config.key(key.clone());
    }
    if let Some(names) = log.names.get(&policy.digest().0) {
        config = config.policy_names(names.clone());
    }
    Gate::open(config).map_err(|e| error(Code::GateFailed, &e.to_string()))
}

fn install(gate: &Gate, log: &JoinedLog, loaded: LoadedPolicy) -> Result<(), u8> {
    let names = loaded
        .names
        .or_else(|| log.names.get(&loaded.policy.digest().0).cloned());
    match names {
        Some(names) => gate.install_policy_with_names(loaded.policy, names),
        None => gate.install_policy(loaded.policy),
    }
    .map(drop)
    .map_err(|e| error(Code::GateFailed, &e.to_string()))
}

fn finish(gate: Gate, record: PromotionRecord) -> Result<(), u8> {
    let ticket = gate
        .record_promotion(record)
        .map_err(|e| error(Code::GateFailed, &e.to_string()))?;
    ticket
        .wait()
        .map_err(|e| error(Code::GateFailed, &e.to_string()))?;
    gate.close()
        .map(drop)
        .map_err(|e| error(Code::GateFailed, &e.to_string()))
}

/// `calybris promote DIR --candidate P --report R`: recomputes the report from the
/// directory and the candidate under the criteria R names; installs the candidate and
/// records the promotion only when the recomputed digest is R's and it passes.
#[must_use]
pub fn promote(
    dir: &Path,
    candidate_path: &Path,
    report_path: &Path,
    keys: &Keys,
    json: bool,
) -> u8 {
    let (criteria, digest) = match saved_report(report_path) {
        Ok(saved) => saved,
        Err(detail) => return fail("INVALID", Code::InvalidJson, &detail, EXIT_DIVERGED),
    };
    let (log, loaded, report, options) = match evaluate(dir, candidate_path, criteria, keys) {
        Ok(done) => done,
        Err(code) => return code,
    };
    let recomputed = report.digest();
    if recomputed != digest {
        return fail(
            "REFUSED",
            Code::ReportMismatch,
            &format!(
                "the report's digest {} is not the recomputed {} (the log, the candidate or the criteria differ)",
                digest_to_hex(&digest.0),
                digest_to_hex(&recomputed.0)
            ),
            EXIT_DIVERGED,
        );
    }
    if !report.passed() {
        return fail(
            "REFUSED",
            Code::NotPromotable,
            "the report does not pass its criteria",
            EXIT_DIVERGED,
        );
    }
    let Some(incumbent) = log.current().cloned() else {
        return error(Code::LogNotVerified, "the log holds no policy");
    };
    let record = PromotionRecord {
        policy_digest: *loaded.policy.digest(),
        previous_policy_digest: *incumbent.digest(),
        report_digest: recomputed,
        rollback: false,
    };
    let promotion = Promotion {
        dir,
        log: &log,
        in_force: &incumbent,
        options: &options,
    };
    promotion.write(loaded, &record, json, || {
        format!(
            "PROMOTED {} (previous {}), report digest {}\n",
            digest_to_hex(&record.policy_digest.0),
            digest_to_hex(&record.previous_policy_digest.0),
            digest_to_hex(&recomputed.0)
        )
    })
}

/// `calybris rollback DIR`: reinstalls the policy in force before the last promotion
/// that installed the current policy, recorded as a promotion with the rollback flag.
#[must_use]
pub fn rollback(dir: &Path, keys: &Keys, json: bool) -> u8 {
    let (log, options) = match load(dir, keys) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let Some(current) = log.current().cloned() else {
        return error(Code::LogNotVerified, "the log holds no policy");
    };
    let Some(last) = log
        .promotions
        .iter()
        .rev()
        .find(|p| !p.rollback && p.policy_digest == *current.digest())
    else {
        return error(
            Code::NothingToRollBack,
            "no promotion installed the policy in force",
        );
    };
    let Some(previous) = log.policies.get(&last.previous_policy_digest.0).cloned() else {
        return error(
            Code::NothingToRollBack,
            "the previous policy is not in the log",
        );
    };
    let record = PromotionRecord {
        policy_digest: *previous.digest(),
        previous_policy_digest: *current.digest(),
        report_digest: Digest([0; 32]),
        rollback: true,
    };
    let loaded = LoadedPolicy {
        policy: previous,
        names: None,
    };
    let promotion = Promotion {
        dir,
        log: &log,
        in_force: &current,
        options: &options,
    };
    promotion.write(loaded, &record, json, || {
        format!(
            "ROLLED_BACK to {} (from {})\n",
            digest_to_hex(&record.policy_digest.0),
            digest_to_hex(&record.previous_policy_digest.0)
        )
    })
}

/// Where `promote` and `rollback` install a policy: the gate directory, its joined
/// log, the policy in force there and the options it verified with.
struct Promotion<'a> {
    dir: &'a Path,
    log: &'a JoinedLog,
    in_force: &'a SealedPolicy,
    options: &'a VerifyOptions,
}

impl Promotion<'_> {
    /// Installs `loaded` through a gate opened on the directory, logs `record` and
    /// waits for it, then prints its `--json` line or `text()`; returns the exit code.
    fn write(
        &self,
        loaded: LoadedPolicy,
        record: &PromotionRecord,
        json: bool,
        text: impl FnOnce() -> String,
    ) -> u8 {
        let result = open_gate(self.dir, self.log, self.in_force, self.options)
            .and_then(|gate| install(&gate, self.log, loaded).map(|()| gate))
            .and_then(|gate| finish(gate, record.clone()));
        if let Err(code) = result {
            return code;
        }
        if json {
            stdout_text(&format!("{}\n", promotion_json(record)));
        } else {
            stdout_text(&text());
        }
        EXIT_OK
    }
}

/// The `--json` line of `promote` and `rollback`: the promotion record written.
fn promotion_json(record: &PromotionRecord) -> Value {
    json!({
        "result": if record.rollback { "ROLLED_BACK" } else { "PROMOTED" },
        "policy_digest": digest_to_hex(&record.policy_digest.0),
        "previous_policy_digest": digest_to_hex(&record.previous_policy_digest.0),
        "report_digest": if record.rollback { Value::Null } else { json!(digest_to_hex(&record.report_digest.0)) },
    })
}
