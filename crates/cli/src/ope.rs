//! Off-policy evaluation on a gate directory: the library behind `calybris regret`,
//! `calybris shadow` and `calybris promote` (the commands are in [`crate::ope_cmd`]).
//!
//! [`load`] verifies the directory with `calybris_gate::verify_dir` first, then reads
//! its records and [`join`]s every outcome record to its decision by decision
//! sequence **and** decision digest. Bad input is counted, never guessed at:
//!
//! - an outcome naming no decision, or a decision of another digest: counted
//!   ([`JoinCounts::unknown_decision`], [`JoinCounts::digest_mismatch`]), not joined
//!   (a verified directory holds none; [`join`] on raw records may);
//! - a second (third, ...) outcome of the same decision: the first counts, the others
//!   are counted as [`JoinCounts::duplicates`];
//! - a reward whose magnitude is above [`REWARD_LIMIT_MICROUNITS`]: the decision's
//!   outcome is counted as [`JoinCounts::reward_out_of_range`] and the decision is
//!   used by no estimate;
//! - an admitted selection without an outcome: [`JoinCounts::missing`].
//!
//! Every figure is a mean over rows taken in log order, with the 95 % normal interval
//! of `calybris_adapt::ope` (IPS with all weights 1 is the sample mean, so its
//! interval is `mean ± Z_95 · s / √n`); the estimators, sums and intervals are those
//! of `docs/SPECIFICATION.md` ("Off-policy estimators"), so the same directory gives the same figures on every machine.

use std::collections::BTreeMap;
use std::path::Path;

use calybris::digest::{Digest, SealedPolicy};
use calybris::gate::record::{GateDecision, OutcomeRecord, PromotionRecord};
use calybris::gate::{
    BudgetOutcome, GateRecord, HoldoutNote, LOG_DIR, NameMap, ShadowNote, VerifyError,
    VerifyOptions, verify_dir,
};
use calybris::kernel::{KernelDecision, KernelInput};
use calybris::wal::{SegmentedReader, WalAnchor, WalError};
use calybris_adapt::ope::{
    Estimate, Estimator, EstimatorConfig, Interval, LoggedRound, OpeError, Probability, estimate,
};

/// The largest reward magnitude an outcome may carry to be used, in microunits
/// (10^12: one million currency units). Larger ones are counted as out of range.
pub const REWARD_LIMIT_MICROUNITS: i64 = 1_000_000_000_000;

/// The outcome joined to a decision: the first valid outcome record naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinedOutcome {
    /// The outcome record's own sequence number.
    pub sequence: u64,
    /// The observed reward, in microunits.
    pub reward_microunits: i64,
    /// Whether the execution succeeded.
    pub success: bool,
}

/// One logged decision with its outcome, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedDecision {
    /// The decision record's sequence number.
    pub sequence: u64,
    /// The tenant, by name.
    pub tenant: String,
    /// The request.
    pub input: KernelInput,
    /// The kernel's decision as logged.
    pub decision: KernelDecision,
    /// The decision digest (`calydcn1`) the outcomes must name.
    pub decision_digest: Digest,
    /// The policy that decided.
    pub policy_digest: Digest,
    /// What the budget made of it.
    pub budget: BudgetOutcome,
    /// Whether the first outcome naming it had a reward out of range.
    pub reward_out_of_range: bool,
    /// The joined outcome (`None`: no outcome, or one out of range).
    pub outcome: Option<JoinedOutcome>,
    /// The holdout assignment recorded with it, when the gate had a holdout on.
    pub holdout: Option<HoldoutNote>,
    /// The live shadow note recorded with it, when a candidate was staged.
    pub shadow: Option<ShadowNote>,
}

impl LoggedDecision {
    /// Whether the decision was held out (decided by the holdout's baseline).
    #[must_use]
    pub fn is_held_out(&self) -> bool {
        self.holdout.is_some_and(|note| note.held_out)
    }
}

/// Where the decisions and outcome records went. Every outcome record is counted in
/// exactly one of `joined`, `duplicates`, `unknown_decision`, `digest_mismatch`,
/// `reward_out_of_range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JoinCounts {
    /// Decision records.
    pub decisions: u64,
    /// Outcome records.
    pub outcome_records: u64,
    /// Outcomes joined to their decision (the first of each decision, in range).
    pub joined: u64,
    /// Outcomes of a decision that already had one (ignored).
    pub duplicates: u64,
    /// Outcomes naming no decision record.
    pub unknown_decision: u64,
    /// Outcomes whose decision digest is not that decision's.
    pub digest_mismatch: u64,
    /// First outcomes whose reward magnitude is above [`REWARD_LIMIT_MICROUNITS`].
    pub reward_out_of_range: u64,
    /// Admitted selections with no outcome record.
    pub missing: u64,
}

/// A gate log read for evaluation.
#[derive(Debug, Clone)]
pub struct JoinedLog {
    /// Every decision, in log order.
    pub decisions: Vec<LoggedDecision>,
    /// Every policy recorded, by digest (the staged ones included: shadow candidates
    /// and holdout baselines).
    pub policies: BTreeMap<[u8; 32], SealedPolicy>,
    /// The last names recorded for each policy, by digest.
    pub names: BTreeMap<[u8; 32], NameMap>,
    /// The policy in force at the end of the log (the last policy record).
    pub current_policy: Option<Digest>,
    /// Every promotion and rollback record, in log order.
    pub promotions: Vec<PromotionRecord>,
    /// The counts of the join.
    pub counts: JoinCounts,
    /// The position after the last record (from the verifier; zero for [`join`]).
    pub anchor: WalAnchor,
}

/// Why a gate directory could not be read for evaluation.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory does not verify.
    #[error("the gate directory does not verify: {0}")]
    Verify(#[from] VerifyError),
    /// The verified log could not be read again.
    #[error("log: {0}")]
    Read(#[from] WalError),
}

/// Joins outcome records to decisions, from `(sequence, record)` pairs in log order.
#[must_use]
pub fn join(records: impl IntoIterator<Item = (u64, GateRecord)>) -> JoinedLog {
    let mut log = JoinedLog {
        decisions: Vec::new(),
        policies: BTreeMap::new(),
        names: BTreeMap::new(),
        current_policy: None,
        promotions: Vec::new(),
        counts: JoinCounts::default(),
        anchor: WalAnchor {
            next_sequence: 0,
            head_hash: [0; 32],
        },
    };
    for (sequence, record) in records {
        match record {
            GateRecord::Policy(policy) => {
                log.current_policy = Some(policy.policy_digest);
                log.policies
                    .entry(policy.policy_digest.0)
                    .or_insert(policy.policy);
            }
            GateRecord::PolicyNames(names) => {
                log.names.insert(names.policy_digest.0, names.names);
            }
            GateRecord::Decision(decision) => log.push_decision(sequence, &decision),
            GateRecord::Outcome(outcome) => log.push_outcome(sequence, &outcome),
            GateRecord::Promotion(promotion) => log.promotions.push(promotion),
            // Staged policies decide nothing in force; they are known by digest.
            GateRecord::Staged(staged) => {
                log.policies
                    .entry(staged.policy.policy_digest.0)
                    .or_insert(staged.policy.policy);
            }
            _ => {}
        }
    }
    log.counts.missing = log
        .decisions
        .iter()
        .filter(|d| d.decision.is_selection() && d.budget.is_admitted())
        .filter(|d| d.outcome.is_none() && !d.reward_out_of_range)
        .count() as u64;
    log
}

impl JoinedLog {
    fn push_decision(&mut self, sequence: u64, record: &GateDecision) {
        self.counts.decisions += 1;
        self.decisions.push(LoggedDecision {
            sequence,
            tenant: record.tenant.clone(),
            input: record.audit.input,
            decision: record.audit.decision,
            decision_digest: record.audit.decision_digest,
            policy_digest: record.audit.policy_digest,
            budget: record.budget,
            reward_out_of_range: false,
            outcome: None,
            holdout: record.holdout,
            shadow: record.shadow,
        });
    }

    fn push_outcome(&mut self, sequence: u64, record: &OutcomeRecord) {
        self.counts.outcome_records += 1;
        // Decisions are pushed in ascending sequence order.
        let Ok(found) = self
            .decisions
            .binary_search_by_key(&record.decision_sequence, |d| d.sequence)
        else {
            self.counts.unknown_decision += 1;
            return;
        };
        let decision = &mut self.decisions[found];
        if decision.decision_digest != record.decision_digest {
            self.counts.digest_mismatch += 1;
        } else if decision.outcome.is_some() || decision.reward_out_of_range {
            self.counts.duplicates += 1;
        } else if record.reward_microunits.unsigned_abs() > REWARD_LIMIT_MICROUNITS.unsigned_abs() {
            decision.reward_out_of_range = true;
            self.counts.reward_out_of_range += 1;
        } else {
            decision.outcome = Some(JoinedOutcome {
                sequence,
                reward_microunits: record.reward_microunits,
                success: record.success,
            });
            self.counts.joined += 1;
        }
    }

    /// The policy in force at the end of the log.
    #[must_use]
    pub fn current(&self) -> Option<&SealedPolicy> {
        self.current_policy
            .and_then(|digest| self.policies.get(&digest.0))
    }
}

/// Verifies `dir` with `verify_dir`, then reads and [`join`]s its records.
///
/// # Errors
/// [`LoadError::Verify`] when the directory does not verify, [`LoadError::Read`]
/// when it cannot be read again.
pub fn load(dir: &Path, options: &VerifyOptions) -> Result<JoinedLog, LoadError> {
    let report = verify_dir(dir, options)?;
    let mut reader = SegmentedReader::<GateRecord>::open(
        &dir.join(LOG_DIR),
        options.key.as_ref(),
        options.anchor,
    )?
    .with_start_anchor(options.start_anchor);
    let mut records = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        records.push((entry.sequence, entry.record));
    }
    let mut log = join(records);
    log.anchor = report.anchor;
    Ok(log)
}

/// A mean with its 95 % normal interval (`None` below two rows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mean {
    /// Rows.
    pub n: u64,
    /// The mean.
    pub value: f64,
    /// `value ± Z_95 · s / √n`.
    pub interval: Option<Interval>,
}

/// The sample mean of `values` (in order) with its 95 % normal interval, through
/// `calybris_adapt::ope::estimate` (IPS with every weight 1); `None` for no values.
#[must_use]
pub fn mean(values: &[f64]) -> Option<Mean> {
    let rows: Vec<LoggedRound> = values
        .iter()
        .map(|&v| LoggedRound::without_model(v, Probability::float(1.0), Probability::float(1.0)))
        .collect();
    let e = estimate(&rows, Estimator::Ips, &EstimatorConfig::uncapped()).ok()?;
    Some(Mean {
        n: e.counts.used,
        value: e.value,
        interval: e.normal_interval,
    })
}

/// Microunits as `f64` (exact below 2^53, which every in-range reward is).
#[allow(clippy::cast_precision_loss)]
const fn f(microunits: i64) -> f64 {
    microunits as f64
}

/// The regret of one group of decisions (a tenant and a selected model).
#[derive(Debug, Clone, PartialEq)]
pub struct RegretRow {
    /// The tenant.
    pub tenant: String,
    /// The selected model.
    pub model_id: u32,
    /// The observed reward of the selected model.
    pub observed: Mean,
    /// The kernel's expected utility of the selected model.
    pub predicted: Mean,
    /// The kernel's expected utility of the best alternative: the runner-up's, or 0
    /// (doing nothing) where there is no runner-up.
    pub alternative_predicted: Mean,
    /// Regret: `alternative_predicted − observed`, per decision, then the mean.
    pub regret: Mean,
}

/// The calibration of the kernel's expected utility against observed rewards.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Ten deciles by predicted utility (ascending; ties by log order): rows, mean
    /// predicted, mean observed, in microunits.
    pub deciles: Vec<(u64, f64, f64)>,
    /// The mean of `observed − predicted` over every row, with its interval.
    pub bias: Option<Mean>,
    /// Deciles whose mean residual has the sign of the overall bias.
    pub deciles_same_sign: u64,
    /// Whether the bias is systematic: its 95 % interval excludes zero **and** at
    /// least [`SYSTEMATIC_DECILES`] of the ten deciles lean the same way.
    pub systematic: bool,
}

/// Deciles that must share the bias's sign for [`Calibration::systematic`].
pub const SYSTEMATIC_DECILES: u64 = 8;

/// The regret report.
#[derive(Debug, Clone, PartialEq)]
pub struct Regret {
    /// One row per (tenant, selected model), tenants by byte order, then model id.
    pub rows: Vec<RegretRow>,
    /// Over every used decision.
    pub total: Option<RegretRow>,
    /// The calibration check.
    pub calibration: Calibration,
    /// The policy against the holdout's baseline, when the log has held-out rows.
    pub holdout: Option<HoldoutComparison>,
}

/// The observed value of the policy against the holdout's baseline on the same
/// traffic: the keyed hash that holds a request out reads nothing the policy reads,
/// so each group is an unbiased sample of its policy's value.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutComparison {
    /// The share held out (of the last decision with a note), in basis points.
    pub share_bps: u16,
    /// Decisions held out, of every decision with a holdout note.
    pub held_out: u64,
    /// Decisions with a holdout note.
    pub assigned: u64,
    /// The mean observed reward of the held-out rows with an outcome (the baseline).
    pub baseline: Mean,
    /// The mean observed reward of the other rows with an outcome (the policy).
    pub policy: Mean,
    /// `policy − baseline`, with the 95 % normal interval of a difference of two
    /// independent means (`± Z_95 · √(s₁²/n₁ + s₂²/n₂)`; `None` below two rows in
    /// either group).
    pub uplift: Mean,
}

/// The policy against the holdout's baseline (`None` when no row with an outcome was
/// held out, or none was not).
#[must_use]
pub fn holdout_comparison(log: &JoinedLog) -> Option<HoldoutComparison> {
    let assigned: Vec<&LoggedDecision> = log
        .decisions
        .iter()
        .filter(|d| d.holdout.is_some())
        .collect();
    let share_bps = assigned.last()?.holdout?.share_bps;
    let reward = |held: bool| -> Vec<f64> {
        assigned
            .iter()
            .filter(|d| d.is_held_out() == held && d.decision.is_selection())
            .filter_map(|d| d.outcome.map(|o| f(o.reward_microunits)))
            .collect()
    };
    let (baseline_rows, policy_rows) = (reward(true), reward(false));
    let baseline = mean(&baseline_rows)?;
    let policy = mean(&policy_rows)?;
    let variance_of_mean = |rows: &[f64], m: f64| -> Option<f64> {
        let n = rows.len();
        (n >= 2).then(|| {
            let ss: f64 = rows.iter().map(|r| (r - m) * (r - m)).sum();
            ss / (n - 1) as f64 / n as f64
        })
    };
    let value = policy.value - baseline.value;
    let interval = variance_of_mean(&policy_rows, policy.value)
        .zip(variance_of_mean(&baseline_rows, baseline.value))
        .map(|(a, b)| {
            let half = calybris_adapt::ope::Z_95 * (a + b).sqrt();
            Interval {
                lower: value - half,
                upper: value + half,
            }
        });
    Some(HoldoutComparison {
        share_bps,
        held_out: assigned.iter().filter(|d| d.is_held_out()).count() as u64,
        assigned: assigned.len() as u64,
        baseline,
        policy,
        uplift: Mean {
            n: baseline.n + policy.n,
            value,
            interval,
        },
    })
}

fn regret_row(tenant: &str, model_id: u32, rows: &[&LoggedDecision]) -> Option<RegretRow> {
    let reward = |d: &LoggedDecision| d.outcome.map_or(0.0, |o| f(o.reward_microunits));
    let alternative = |d: &LoggedDecision| {
        if d.decision.eligible_models >= 2 {
            f(d.decision.counterfactual_utility_microunits)
        } else {
            0.0
        }
    };
    let observed: Vec<f64> = rows.iter().map(|d| reward(d)).collect();
    let predicted: Vec<f64> = rows
        .iter()
        .map(|d| f(d.decision.expected_utility_microunits))
        .collect();
    let alt: Vec<f64> = rows.iter().map(|d| alternative(d)).collect();
    let regret: Vec<f64> = rows.iter().map(|d| alternative(d) - reward(d)).collect();
    Some(RegretRow {
        tenant: tenant.to_owned(),
        model_id,
        observed: mean(&observed)?,
        predicted: mean(&predicted)?,
        alternative_predicted: mean(&alt)?,
        regret: mean(&regret)?,
    })
}

/// The decisions an estimate of the logged policy may use: selections with a
/// joined outcome, in log order.
fn with_outcomes(log: &JoinedLog) -> Vec<&LoggedDecision> {
    log.decisions
        .iter()
        .filter(|d| d.decision.is_selection() && d.outcome.is_some())
        .collect()
}

/// The regret per tenant and selected model, and the calibration check.
#[must_use]
pub fn regret(log: &JoinedLog) -> Regret {
    let used = with_outcomes(log);
    let mut groups: BTreeMap<(Vec<u8>, u32), Vec<&LoggedDecision>> = BTreeMap::new();
    for d in &used {
        groups
            .entry((d.tenant.as_bytes().to_vec(), d.decision.selected_model_id))
            .or_default()
            .push(d);
    }
    let rows = groups
        .iter()
        .filter_map(|((tenant, model), rows)| {
            regret_row(&String::from_utf8_lossy(tenant), *model, rows)
        })
        .collect();
    let total = regret_row("*", 0, &used);
    Regret {
        rows,
        total,
        calibration: calibration(&used),
        holdout: holdout_comparison(log),
    }
}

fn calibration(used: &[&LoggedDecision]) -> Calibration {
    let mut pairs: Vec<(i64, u64, i64)> = used
        .iter()
        .map(|d| {
            (
                d.decision.expected_utility_microunits,
                d.sequence,
                d.outcome.map_or(0, |o| o.reward_microunits),
            )
        })
        .collect();
    pairs.sort_unstable();
    let n = pairs.len();
    let residuals: Vec<f64> = pairs.iter().map(|&(p, _, r)| f(r) - f(p)).collect();
    let bias = mean(&residuals);
    let mut deciles = Vec::new();
    let mut same = 0;
    let sign = bias.map_or(0.0, |b| b.value.signum());
    for k in 0..10 {
        let (lo, hi) = (k * n / 10, (k + 1) * n / 10);
        let slice = &pairs[lo..hi];
        if slice.is_empty() {
            deciles.push((0, 0.0, 0.0));
            continue;
        }
        let predicted =
            mean(&slice.iter().map(|p| f(p.0)).collect::<Vec<_>>()).map_or(0.0, |m| m.value);
        let observed =
            mean(&slice.iter().map(|p| f(p.2)).collect::<Vec<_>>()).map_or(0.0, |m| m.value);
        if sign != 0.0 && (observed - predicted).signum() == sign && observed != predicted {
            same += 1;
        }
        deciles.push((slice.len() as u64, predicted, observed));
    }
    let excludes_zero = bias
        .and_then(|b| b.interval)
        .is_some_and(|i| i.lower > 0.0 || i.upper < 0.0);
    Calibration {
        deciles,
        bias,
        deciles_same_sign: same,
        systematic: excludes_zero && same >= SYSTEMATIC_DECILES,
    }
}

/// How the candidate's decision on a logged request compares with the log's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MismatchKind {
    /// The same action and model (or both reject).
    Same,
    /// Both select, another model.
    OtherModel,
    /// The log selected; the candidate rejects.
    NewlyRejected,
    /// The log rejected; the candidate selects.
    NewlyAdmitted,
}

impl MismatchKind {
    /// The kind's name in reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Same => "same",
            Self::OtherModel => "other-model",
            Self::NewlyRejected => "newly-rejected",
            Self::NewlyAdmitted => "newly-admitted",
        }
    }
}

/// The replay of a log under a candidate policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    /// Digest of the candidate.
    pub candidate_digest: Digest,
    /// Decisions replayed.
    pub decisions: u64,
    /// Decisions by kind: same, other model, newly rejected, newly admitted.
    pub by_kind: [u64; 4],
    /// Mismatches by kind and the reason of the candidate's decision (for newly
    /// rejected, other model) or of the logged one (newly admitted).
    pub by_reason: BTreeMap<(MismatchKind, &'static str), u64>,
    /// Selections with a joined outcome (the rows of every estimate).
    pub rows: u64,
    /// Of those, where the candidate takes the logged action: supported.
    pub supported: u64,
    /// Of those, where it does not: the logging propensity of the candidate's action
    /// is 0, so the log holds no reward for it (unsupported).
    pub unsupported: u64,
    /// Newly admitted decisions: no outcome can exist; unsupported too.
    pub unsupported_no_outcome: u64,
    /// The logged policy's value: the mean observed reward of the rows it decided
    /// (every row but the held-out ones).
    pub incumbent: Option<Mean>,
    /// The holdout baseline's value: the mean observed reward of the held-out rows
    /// (`None` without a holdout).
    pub baseline: Option<Mean>,
    /// The candidate's value by estimator (IPS, SNIPS, DM, DR, SNDR, switch-DR, DRos).
    pub estimates: Vec<Estimate>,
    /// Per row, DR term minus observed reward: the candidate's gain over the log.
    pub gain: Option<Mean>,
}

/// How a candidate that selects (or not) `model_id` compares with the logged decision.
fn mismatch(logged: &KernelDecision, selects: bool, model_id: u32) -> MismatchKind {
    match (logged.is_selection(), selects) {
        (false, false) => MismatchKind::Same,
        (true, true) if model_id == logged.selected_model_id => MismatchKind::Same,
        (true, true) => MismatchKind::OtherModel,
        (true, false) => MismatchKind::NewlyRejected,
        (false, true) => MismatchKind::NewlyAdmitted,
    }
}

fn kind_index(kind: MismatchKind) -> usize {
    match kind {
        MismatchKind::Same => 0,
        MismatchKind::OtherModel => 1,
        MismatchKind::NewlyRejected => 2,
        MismatchKind::NewlyAdmitted => 3,
    }
}

/// Replays every logged request under `candidate` and estimates its value.
///
/// Rows: logged selections with a joined outcome, in log order. The log is
/// deterministic, so `π_b(a_t) = 1`; `π_e(a_t)` is 1 where the candidate selects the
/// logged model and 0 elsewhere. The reward model is the kernel's expected utility:
/// `q̂(x_t, a_t)` the logged decision's, the DM term the candidate's (0 when the
/// candidate rejects: nothing is done). So IPS counts unsupported rows as reward 0,
/// SNIPS is the mean reward over the supported rows only, DM is the kernel's own
/// prediction, and DR corrects DM by the observed residual on supported rows.
///
/// # Errors
/// [`OpeError`] from an estimator (not for a log with at least one row).
pub fn shadow(log: &JoinedLog, candidate: &SealedPolicy) -> Result<Shadow, OpeError> {
    let mut by_kind = [0u64; 4];
    let mut by_reason = BTreeMap::new();
    let mut rounds = Vec::new();
    let mut observed = Vec::new();
    let mut held_out = Vec::new();
    let mut unsupported_no_outcome = 0;
    let snapshot = candidate.snapshot();
    for d in &log.decisions {
        let ours = snapshot.prescribe(d.input);
        let logged = &d.decision;
        let kind = mismatch(logged, ours.is_selection(), ours.selected_model_id);
        by_kind[kind_index(kind)] += 1;
        if kind != MismatchKind::Same {
            let reason = if kind == MismatchKind::NewlyAdmitted {
                logged.reason.name()
            } else {
                ours.reason.name()
            };
            *by_reason.entry((kind, reason)).or_insert(0) += 1;
        }
        if kind == MismatchKind::NewlyAdmitted {
            unsupported_no_outcome += 1;
        }
        let Some(outcome) = d.outcome.filter(|_| logged.is_selection()) else {
            continue;
        };
        let agree = kind == MismatchKind::Same;
        let dm = if ours.is_selection() {
            f(ours.expected_utility_microunits)
        } else {
            0.0
        };
        rounds.push(LoggedRound::new(
            f(outcome.reward_microunits),
            Probability::Ratio {
                numerator: 1,
                denominator: 1,
            },
            Probability::Ratio {
                numerator: u64::from(agree),
                denominator: 1,
            },
            f(logged.expected_utility_microunits),
            dm,
        ));
        if d.is_held_out() {
            held_out.push(f(outcome.reward_microunits));
        } else {
            observed.push(f(outcome.reward_microunits));
        }
    }
    let supported = rounds
        .iter()
        .filter(|r| !r.evaluation_probability.is_zero())
        .count() as u64;
    let mut estimates = Vec::new();
    if !rounds.is_empty() {
        for estimator in Estimator::ALL {
            match estimate(&rounds, estimator, &EstimatorConfig::uncapped()) {
                Ok(e) => estimates.push(e),
                // SNIPS has no mean weight to divide by when nothing is supported.
                Err(OpeError::NoUsableRows { .. }) => {}
                Err(error) => return Err(error),
            }
        }
    }
    let gain: Vec<f64> = rounds
        .iter()
        .map(|r| {
            let m = r
                .reward_model
                .map_or((0.0, 0.0), |m| (m.dm_term, m.prediction));
            let w = if r.evaluation_probability.is_zero() {
                0.0
            } else {
                1.0
            };
            m.0 + w * (r.reward - m.1) - r.reward
        })
        .collect();
    Ok(Shadow {
        candidate_digest: *candidate.digest(),
        decisions: log.decisions.len() as u64,
        by_kind,
        by_reason,
        rows: rounds.len() as u64,
        supported,
        unsupported: rounds.len() as u64 - supported,
        unsupported_no_outcome,
        incumbent: mean(&observed),
        baseline: mean(&held_out),
        estimates,
        gain: mean(&gain),
    })
}

/// The live shadow results of one staged candidate, from the notes in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveShadow {
    /// Digest of the candidate.
    pub candidate_digest: Digest,
    /// Decisions that carry its note.
    pub decisions: u64,
    /// Of those, by kind: same, other model, newly rejected, newly admitted.
    pub by_kind: [u64; 4],
    /// Mismatches by kind and reason (as in [`Shadow::by_reason`]).
    pub by_reason: BTreeMap<(MismatchKind, &'static str), u64>,
}

/// The live shadow results in the log, one per candidate, in the order each was
/// first noted. Needs no candidate file: each note holds the candidate's action,
/// model and reason (the verifier has re-derived it from the staged candidate).
#[must_use]
pub fn live_shadow(log: &JoinedLog) -> Vec<LiveShadow> {
    let mut out: Vec<LiveShadow> = Vec::new();
    for d in &log.decisions {
        let Some(note) = d.shadow else { continue };
        let at = match out
            .iter()
            .position(|s| s.candidate_digest == note.candidate_digest)
        {
            Some(at) => at,
            None => {
                out.push(LiveShadow {
                    candidate_digest: note.candidate_digest,
                    decisions: 0,
                    by_kind: [0; 4],
                    by_reason: BTreeMap::new(),
                });
                out.len() - 1
            }
        };
        let entry = &mut out[at];
        let logged = &d.decision;
        let kind = mismatch(logged, note.is_selection(), note.selected_model_id);
        entry.decisions += 1;
        entry.by_kind[kind_index(kind)] += 1;
        if kind != MismatchKind::Same {
            let reason = if kind == MismatchKind::NewlyAdmitted {
                logged.reason.name()
            } else {
                note.reason.name()
            };
            *entry.by_reason.entry((kind, reason)).or_insert(0) += 1;
        }
    }
    out
}
