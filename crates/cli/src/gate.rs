//! `calybris verify` of a gate directory: [`calybris::gate::verify_dir`] checks the
//! chain, replays every decision and rebuilds the books in log order; this module
//! turns its [`GateReport`] into a [`Report`] and its typed error into a [`Finding`].
//!
//! [`finding`] is the one place where gate errors ([`VerifyError`], [`BooksError`])
//! become reason codes.

use calybris::finance::LedgerDigestError;
use calybris::gate::{
    BooksError, GateReport, LOG_DIR, StageRole, VerifyError, VerifyOptions, verify_dir,
};

use crate::report::{Counts, Finding, GateCounts, GateSummary, Reason, Report, TenantTotals};
use crate::scan::{self, Target};

/// The reason code and the sentence of a books error.
fn books_reason(error: &BooksError) -> Reason {
    match error {
        BooksError::BadHeader { .. } => Reason::BooksBadHeader,
        BooksError::MisplacedHeader => Reason::BooksMisplacedHeader,
        BooksError::UnknownTenant { .. } => Reason::TenantUnknown,
        BooksError::DuplicateTenant { .. } => Reason::TenantDuplicate,
        BooksError::InvalidTenantName { .. } => Reason::TenantNameInvalid,
        BooksError::AmountOutOfRange { .. } => Reason::AmountOutOfRange,
        BooksError::OutcomeMismatch { .. } => Reason::BudgetOutcomeMismatch,
        BooksError::Overspend { .. } => Reason::Overspend,
        BooksError::SettlementUnknownDecision { .. } => Reason::SettlementUnknownDecision,
        BooksError::SettlementWrongTenant { .. } => Reason::SettlementWrongTenant,
        BooksError::SettlementExceedsHold { .. } => Reason::SettlementExceedsHold,
        BooksError::SnapshotMismatch { .. } => Reason::BooksSnapshotMismatch,
        BooksError::Unbalanced { .. } => Reason::BooksUnbalanced,
        // A books error this version does not know: the log is newer than the tool.
        _ => Reason::UnknownFormat,
    }
}

/// The finding of a failed gate verification of `target`. The record's byte offset
/// and segment are looked up in the log when the error names a record but no offset.
#[must_use]
pub fn finding(error: &VerifyError, target: &Target) -> Finding {
    let located = |sequence: u64, finding: Finding| {
        let (offset, segment) = scan::locate(target, sequence);
        let mut finding = finding.at(Some(sequence), offset);
        finding.segment = segment;
        finding
    };
    match error {
        VerifyError::Log(error) => scan::wal_finding(error),
        VerifyError::Chain(recovery) => {
            let mut finding = scan::recovery_finding(recovery)
                .unwrap_or_else(|| Finding::new(Reason::ChainBroken, "the chain does not verify"));
            if let Some(sequence) = finding.sequence {
                finding.segment = scan::locate(target, sequence).1;
            }
            finding
        }
        VerifyError::Replay(audit) => match error.sequence() {
            Some(sequence) => {
                let (offset, segment) = scan::locate(target, sequence);
                let mut finding = scan::audit_finding(audit, sequence, offset);
                finding.segment = segment;
                finding
            }
            None => scan::audit_finding(audit, 0, None).at(None, None),
        },
        VerifyError::Books {
            sequence, error, ..
        } => located(
            *sequence,
            Finding::new(books_reason(error), format!("record {sequence}: {error}")),
        ),
        VerifyError::OutcomeUnknownDecision { sequence, .. } => located(
            *sequence,
            Finding::new(Reason::OutcomeUnknownDecision, error.to_string()),
        ),
        VerifyError::OutcomeDigestMismatch { sequence, .. } => located(
            *sequence,
            Finding::new(Reason::OutcomeDigestMismatch, error.to_string()),
        ),
        VerifyError::OutcomeTooLarge { sequence, .. } => located(
            *sequence,
            Finding::new(Reason::OutcomeTooLarge, error.to_string()),
        ),
        // The final books cannot be digested: named by the cause (the fold checks
        // names and repeats first, so this does not occur in a log that folded).
        VerifyError::Digest(digest) => Finding::new(
            match digest {
                LedgerDigestError::TenantIdTooLong { .. } => Reason::TenantNameInvalid,
                _ => Reason::TenantDuplicate,
            },
            error.to_string(),
        ),
        // A retained log with no snapshot to start the books from.
        VerifyError::NoSnapshotInSuffix { first_sequence } => located(
            *first_sequence,
            Finding::new(Reason::BooksSnapshotMismatch, error.to_string()),
        ),
        // A names or promotion record of a policy no earlier record holds.
        VerifyError::NamesUnknownPolicy { sequence, .. }
        | VerifyError::PromotionUnknownPolicy { sequence, .. } => located(
            *sequence,
            Finding::new(Reason::PolicyMissing, error.to_string()),
        ),
        // A checkpoint record (code 17) whose tree head is not the tree over the
        // records before it: the log is not consistent with what it published.
        VerifyError::CheckpointMismatch { sequence, .. } => located(
            *sequence,
            Finding::new(Reason::NotConsistent, error.to_string()),
        ),
        VerifyError::HoldoutNotUnderBaseline { sequence }
        | VerifyError::HoldoutMismatch { sequence, .. }
        | VerifyError::NotStaged {
            sequence,
            role: StageRole::Baseline,
            ..
        } => located(
            *sequence,
            Finding::new(Reason::HoldoutMismatch, error.to_string()),
        ),
        // The holdout key given is another key than the gate's.
        VerifyError::HoldoutKeyMismatch { sequence } => {
            located(*sequence, Finding::new(Reason::WrongKey, error.to_string()))
        }
        VerifyError::ShadowAlreadyStaged { sequence, .. }
        | VerifyError::NotStaged { sequence, .. }
        | VerifyError::ShadowNoteMissing { sequence, .. }
        | VerifyError::ShadowMismatch { sequence } => located(
            *sequence,
            Finding::new(Reason::ShadowMismatch, error.to_string()),
        ),
        VerifyError::Adaptive { sequence, kind, .. } => {
            use calybris::gate::adaptive::AdaptiveMismatch;
            let reason = match kind {
                AdaptiveMismatch::Setup => Reason::AdaptiveSetupInvalid,
                AdaptiveMismatch::State => Reason::AdaptiveStateMismatch,
                AdaptiveMismatch::Regime => Reason::AdaptiveRegimeMismatch,
                AdaptiveMismatch::Draw => Reason::AdaptiveDrawMismatch,
                AdaptiveMismatch::Floor => Reason::AdaptiveFloorMismatch,
                AdaptiveMismatch::Propensity => Reason::AdaptivePropensityMismatch,
                AdaptiveMismatch::Input => Reason::AdaptiveInputMismatch,
                AdaptiveMismatch::StateRecord => Reason::AdaptiveStateRecordMismatch,
                _ => Reason::AdaptiveUnsupported,
            };
            located(*sequence, Finding::new(reason, error.to_string()))
        }
        _ => Finding::new(Reason::UnknownFormat, error.to_string()),
    }
}

/// Whether `dir` holds at least one segment file (unreadable: let `verify_dir` say why).
fn holds_a_segment(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    entries.filter_map(Result::ok).any(|entry| {
        entry.path().extension().and_then(|ext| ext.to_str())
            == Some(calybris::wal::storage::SEGMENT_EXTENSION)
    })
}

fn summary(report: &GateReport) -> GateSummary {
    let c = &report.counts;
    GateSummary {
        counts: GateCounts {
            policies: c.policies,
            decisions: c.decisions,
            admitted: c.admitted,
            refused_by_budget: c.refused_by_budget,
            rejected_by_kernel: c.rejected_by_kernel,
            settlements: c.settlements,
            overruns: c.overruns,
            released_at_reopen: c.released_at_reopen,
            committed_at_reopen: c.committed_at_reopen,
            outcomes: c.outcomes,
            snapshots: c.snapshots,
            budget_changes: c.budget_changes,
            policy_names: c.policy_names,
            executions: c.executions + c.executions_unchecked,
            executions_served: c.executions_served,
            executions_failed: (c.executions + c.executions_unchecked)
                .saturating_sub(c.executions_served),
            lease_refusals: c.lease_refusals,
            promotions: c.promotions,
            adaptive_decisions: c.adaptive_decisions,
            engine_snapshots: c.engine_snapshots,
            engine_states: c.engine_states,
            adaptive_unchecked: c.adaptive_unchecked,
            checkpoints: c.checkpoints,
        },
        tenants: report
            .tenants
            .iter()
            .map(|row| TenantTotals {
                tenant: row.tenant.clone(),
                initial_microunits: row.initial_microunits,
                committed_microunits: row.committed_microunits,
                reserved_microunits: row.reserved_microunits,
                remaining_microunits: row.remaining_microunits,
            })
            .collect(),
        open_holds: report.open_holds,
        ledger_digest: report.conservation.ledger_digest,
        balanced: report.conservation.balanced,
        models: report.selections.clone(),
    }
}

/// Verifies the gate directory `target.path` with `verify_dir`.
#[must_use]
pub fn verify(target: &Target) -> Report {
    verify_with(target, None)
}

/// Verifies the gate directory `target.path` with `verify_dir`, recomputing every
/// holdout assignment under `holdout_key` when given.
#[must_use]
pub fn verify_with(target: &Target, holdout_key: Option<calybris::gate::HoldoutKey>) -> Report {
    let options = VerifyOptions {
        key: target.key.clone(),
        anchor: target.anchor,
        start_anchor: target.start_anchor,
        holdout_key,
    };
    let mut report = Report {
        path: target.path.clone(),
        keyed: target.key.is_some(),
        anchored: target.anchor.is_some(),
        counts: Counts::default(),
        anchor: None,
        finding: None,
        gate: None,
    };
    if !holds_a_segment(&target.path.join(LOG_DIR)) {
        report.finding = Some(Finding::new(
            Reason::UnknownFormat,
            format!("the gate directory's {LOG_DIR}/ holds no log segment (*.cwal)"),
        ));
        return report;
    }
    // verify_dir reports no progress of its own: a spinner shows it is working.
    let spinner = crate::human::spinner("verifying the gate directory (chain, replay, books)");
    let verified = verify_dir(&target.path, &options);
    spinner.finish_and_clear();
    match verified {
        Ok(gate) => {
            report.counts = Counts {
                records: gate.anchor.next_sequence,
                policies: gate.counts.policies,
                decisions: gate.counts.decisions,
            };
            report.anchor = Some(gate.anchor);
            let summary = summary(&gate);
            if !summary.balanced {
                // verify_dir checks balance after every record; kept as a backstop.
                report.finding = Some(Finding::new(
                    Reason::BooksUnbalanced,
                    "the final books do not balance",
                ));
            }
            report.gate = Some(summary);
        }
        Err(error) => {
            let finding = finding(&error, target);
            // Every record before the one at fault verified.
            report.counts.records = finding.sequence.unwrap_or(0);
            report.finding = Some(finding);
        }
    }
    report
}
