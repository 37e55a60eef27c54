//! `calybris regret`, `shadow`, `promote` and `rollback` through the built binary, on
//! gate directories written by `calybris::gate::Gate` with outcomes recorded through
//! `Gate::record_outcome`; and the join on raw records with bad outcomes.

mod common;

use std::path::{Path, PathBuf};

use calybris::digest::{Digest, SealedPolicy};
use calybris::gate::record::OutcomeRecord;
use calybris::gate::{Gate, GateConfig, GateRecord, LOG_DIR, Outcome};
use calybris::kernel::KernelInput;
use calybris::wal::SegmentedReader;
use common::path_str as s;
use common::*;
use serde_json::{Value, json};

/// The `i`-th request: `common::request` with a spread of business values.
fn varied(i: u64) -> KernelInput {
    KernelInput {
        business_value_microunits: 20_000 + ((i * 7_919) % 60_000) as i64,
        ..request(i)
    }
}

/// What `write` made.
struct Made {
    /// Decision sequences with an outcome.
    with_outcome: u64,
    /// Admitted selections.
    admitted: u64,
}

/// A gate directory of `n` decisions under `policy(1)`; every admitted selection
/// except those of requests `i % 7 == 3` gets an outcome whose reward is its expected
/// utility plus `bias` and a deterministic noise of amplitude `noise`. The first
/// outcome is recorded twice (a duplicate); the first admitted decision after
/// request 10 gets a reward out of range.
fn write(dir: &Path, n: u64, bias: i64, noise: i64) -> Made {
    let gate = Gate::open(
        GateConfig::new(dir, policy(1))
            .tenant("acme", 1_000_000_000)
            .tenant("globex", 1_000_000_000)
            .clock(|| 1_700_000_000_000),
    )
    .expect("open");
    let mut made = Made {
        with_outcome: 0,
        admitted: 0,
    };
    let mut out_of_range_done = false;
    for i in 0..n {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        let admission = gate.decide(tenant, varied(i)).expect("decide");
        if !admission.is_admitted() {
            continue;
        }
        made.admitted += 1;
        let reference = admission.decision_ref();
        let utility = admission.decision().expected_utility_microunits;
        let cost = admission.decision().estimated_cost_microunits;
        gate.settle(admission, cost).expect("settle");
        if i % 7 == 3 {
            continue;
        }
        let wobble = if noise == 0 {
            0
        } else {
            (i as i64 * 7_919) % (2 * noise + 1) - noise
        };
        let mut reward = utility + bias + wobble;
        if i > 10 && !out_of_range_done {
            reward = i64::MAX;
            out_of_range_done = true;
        } else {
            made.with_outcome += 1;
        }
        let outcome = Outcome {
            reward_microunits: reward,
            success: true,
            latency_ms: 100,
            detail: Vec::new(),
        };
        let _ticket = gate
            .record_outcome(reference, outcome.clone())
            .expect("outcome");
        if made.with_outcome == 1 {
            let _ticket = gate.record_outcome(reference, outcome).expect("duplicate");
        }
    }
    gate.close().expect("close");
    made
}

/// `policy(1)` changed by `edit`, written to `dir/name`.
fn candidate(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut value = policy_json(policy(1).snapshot());
    edit(&mut value);
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).expect("write candidate");
    path
}

#[test]
fn regret_joins_outcomes_counts_bad_ones_and_flags_a_systematic_bias() {
    let root = temp_dir("regret");
    let dir = root.join("gate");
    let made = write(&dir, 300, -4_000, 1_000);
    let run = calybris(&["regret", s(&dir), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    let join = &v["join"];
    assert_eq!(join["decisions"], 300);
    assert_eq!(join["joined"], made.with_outcome);
    assert_eq!(join["duplicates"], 1);
    assert_eq!(join["reward_out_of_range"], 1);
    let missing = join["missing"].as_u64().expect("missing");
    assert_eq!(missing, made.admitted - made.with_outcome - 1);
    assert!(missing > 0, "some admitted selections have no outcome");
    assert!(v["rows"].as_array().expect("rows").len() >= 2);
    let total = &v["total"];
    assert_eq!(total["observed_reward"]["n"], made.with_outcome);
    // Observed = predicted - 4,000 ± 1,000: the bias is -4,000 within the noise.
    let bias = v["calibration"]["bias"]["value"].as_f64().expect("bias");
    assert!((bias + 4_000.0).abs() < 200.0, "{bias}");
    assert_eq!(v["calibration"]["systematic"], true);
    assert_eq!(v["calibration"]["deciles_same_sign"], 10);
    let text = calybris(&["regret", s(&dir)]);
    assert!(
        text.stdout.contains("WARNING systematic calibration bias"),
        "{text:?}"
    );

    // Rewards equal to the predictions: no bias, no warning.
    let calibrated = root.join("calibrated");
    write(&calibrated, 120, 0, 0);
    let v = calybris(&["regret", s(&calibrated), "--json"]).json();
    assert_eq!(v["calibration"]["systematic"], false);
    assert_eq!(v["calibration"]["bias"]["value"], 0.0);
}

#[test]
fn shadow_of_the_same_rules_agrees_and_its_report_digest_is_stable() {
    let root = temp_dir("shadow");
    let dir = root.join("gate");
    let made = write(&dir, 200, 0, 2_000);
    // Same rules, another epoch: another digest, the same choices.
    let same = candidate(&root, "same.json", |v| {
        v["params"]["policy_epoch"] = json!(2)
    });
    let args = ["shadow", s(&dir), "--candidate", s(&same), "--json"];
    let first = calybris(&args);
    assert_eq!(first.code, 0, "{first:?}");
    let v = first.json();
    assert_eq!(v["shadow"]["decisions"], 200);
    assert_eq!(v["shadow"]["by_kind"]["same"], 200);
    assert_eq!(v["shadow"]["rows"], made.with_outcome);
    assert_eq!(v["shadow"]["supported"], made.with_outcome);
    assert_eq!(v["shadow"]["unsupported"], 0);
    assert_eq!(v["shadow"]["gain"]["value"], 0.0);
    assert_eq!(v["promotion"]["passed"], true);
    let second = calybris(&args).json();
    assert_eq!(
        v["promotion"]["report_digest"], second["promotion"]["report_digest"],
        "two runs give the same digest"
    );

    // A candidate that refuses every risk above 500 bps: newly rejected, unsupported,
    // and not promotable on the mismatch rate; a looser hard limit is named.
    let strict = candidate(&root, "strict.json", |v| {
        v["params"]["hard_risk_limit_bps"] = json!(500);
    });
    let v = calybris(&["shadow", s(&dir), "--candidate", s(&strict), "--json"]).json();
    let rejected = v["shadow"]["by_kind"]["newly-rejected"]
        .as_u64()
        .expect("n");
    assert!(rejected > 0);
    assert_eq!(v["shadow"]["supported"], 0);
    assert_eq!(v["shadow"]["unsupported"], made.with_outcome);
    assert_eq!(v["promotion"]["checks"]["support"], false);
    assert_eq!(v["promotion"]["checks"]["no_loosening"], true);
    let loose = candidate(&root, "loose.json", |v| {
        v["params"]["hard_risk_limit_bps"] = json!(9_900);
    });
    let v = calybris(&["shadow", s(&dir), "--candidate", s(&loose), "--json"]).json();
    assert_eq!(v["promotion"]["checks"]["no_loosening"], false);
    assert_eq!(v["promotion"]["loosened"][0]["gate"], "hard_risk_limit_bps");
    assert_eq!(v["promotion"]["passed"], false);
}

#[test]
fn promote_installs_a_passing_report_and_rollback_restores_the_incumbent() {
    let root = temp_dir("promote");
    let dir = root.join("gate");
    write(&dir, 120, 0, 500);
    let same = candidate(&root, "same.json", |v| {
        v["params"]["policy_epoch"] = json!(2)
    });
    let report = root.join("report.json");
    let run = calybris(&["shadow", s(&dir), "--candidate", s(&same), "--json"]);
    std::fs::write(&report, &run.stdout).expect("write report");
    let digest = run.json()["promotion"]["report_digest"]
        .as_str()
        .expect("digest")
        .to_owned();

    // A tampered digest is refused and nothing is written.
    let tampered = root.join("tampered.json");
    std::fs::write(
        &tampered,
        run.stdout.replace(&digest, &"0".repeat(digest.len())),
    )
    .expect("write");
    let refused = calybris(&[
        "promote",
        s(&dir),
        "--candidate",
        s(&same),
        "--report",
        s(&tampered),
    ]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("REPORT_MISMATCH"), "{refused:?}");
    // A failing report is refused too.
    let strict = candidate(&root, "strict.json", |v| {
        v["params"]["hard_risk_limit_bps"] = json!(500);
    });
    let failing = root.join("failing.json");
    let run = calybris(&["shadow", s(&dir), "--candidate", s(&strict), "--json"]);
    std::fs::write(&failing, &run.stdout).expect("write");
    let refused = calybris(&[
        "promote",
        s(&dir),
        "--candidate",
        s(&strict),
        "--report",
        s(&failing),
    ]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("NOT_PROMOTABLE"), "{refused:?}");
    assert_eq!(calybris(&["rollback", s(&dir)]).code, 2);

    let promoted = calybris(&[
        "promote",
        s(&dir),
        "--candidate",
        s(&same),
        "--report",
        s(&report),
    ]);
    assert_eq!(promoted.code, 0, "{promoted:?}");
    assert!(promoted.stdout.starts_with("PROMOTED"), "{promoted:?}");
    assert_eq!(calybris(&["verify", s(&dir)]).code, 0);
    let promotions = records(&dir)
        .into_iter()
        .filter_map(|record| match record {
            GateRecord::Promotion(p) => Some(p),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(promotions.len(), 1);
    let candidate_digest =
        *SealedPolicy::new(calybris_cli::files::read_policy(&same).expect("candidate")).digest();
    assert_eq!(promotions[0].policy_digest, candidate_digest);
    assert_eq!(promotions[0].previous_policy_digest, *policy(1).digest());
    assert_eq!(
        calybris::digest::digest_to_hex(&promotions[0].report_digest),
        digest
    );
    // The same report again: the log moved on, so its digest no longer matches.
    let again = calybris(&[
        "promote",
        s(&dir),
        "--candidate",
        s(&same),
        "--report",
        s(&report),
    ]);
    assert_eq!(again.code, 1, "{again:?}");

    let back = calybris(&["rollback", s(&dir)]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(calybris(&["verify", s(&dir)]).code, 0);
    let last = records(&dir)
        .into_iter()
        .filter_map(|record| match record {
            GateRecord::Promotion(p) => Some(p),
            _ => None,
        })
        .next_back()
        .expect("rollback record");
    assert!(last.rollback);
    assert_eq!(last.policy_digest, *policy(1).digest());
    let twice = calybris(&["rollback", s(&dir)]);
    assert_eq!(twice.code, 2, "{twice:?}");
    assert!(twice.stderr.contains("NOTHING_TO_ROLL_BACK"), "{twice:?}");
}

fn records(dir: &Path) -> Vec<GateRecord> {
    let mut reader =
        SegmentedReader::<GateRecord>::open(&dir.join(LOG_DIR), None, None).expect("reader");
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry().expect("entry") {
        out.push(entry.record);
    }
    out
}

#[test]
fn the_join_counts_unknown_decisions_and_wrong_digests_on_raw_records() {
    let root = temp_dir("join");
    let dir = root.join("gate");
    write(&dir, 40, 0, 0);
    let mut raw: Vec<(u64, GateRecord)> = records(&dir)
        .into_iter()
        .enumerate()
        .map(|(i, r)| (i as u64, r))
        .collect();
    let (first, digest) = raw
        .iter()
        .find_map(|(seq, r)| match r {
            GateRecord::Decision(d) => Some((*seq, d.audit.decision_digest)),
            _ => None,
        })
        .expect("a decision");
    let next = raw.len() as u64;
    let outcome = |decision_sequence, decision_digest| {
        GateRecord::Outcome(OutcomeRecord {
            decision_sequence,
            decision_digest,
            reward_microunits: 1,
            success: true,
            latency_ms: 1,
            detail: Vec::new(),
        })
    };
    raw.push((next, outcome(next + 100, digest)));
    raw.push((next + 1, outcome(first, Digest([9; 32]))));
    let log = calybris_cli::ope::join(raw);
    assert_eq!(log.counts.unknown_decision, 1);
    assert_eq!(log.counts.digest_mismatch, 1);
    assert_eq!(log.counts.duplicates, 1);
    assert_eq!(log.counts.reward_out_of_range, 1);
    assert_eq!(
        log.counts.outcome_records,
        log.counts.joined + 4,
        "every outcome record lands in one count"
    );
}

#[test]
fn counterfactual_names_the_margin_and_an_exact_nearest_change() {
    let root = temp_dir("counterfactual");
    let dir = root.join("gate");
    write(&dir, 20, 0, 0);
    let (sequence, input, decision) = records(&dir)
        .into_iter()
        .enumerate()
        .find_map(|(seq, r)| match r {
            GateRecord::Decision(d) if d.audit.decision.is_selection() => {
                Some((seq as u64, d.audit.input, d.audit.decision))
            }
            _ => None,
        })
        .expect("a selection");
    let run = calybris(&[
        "counterfactual",
        s(&dir),
        "--seq",
        &sequence.to_string(),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    let snapshot = policy(1).into_snapshot();
    let winner = snapshot
        .utility_for_model(input, decision.selected_model_id)
        .expect("winner utility");
    let runner = if decision.eligible_models >= 2 {
        decision.counterfactual_utility_microunits
    } else {
        0
    };
    assert_eq!(v["margin_microunits"], winner - runner);
    let changes = v["changes"].as_array().expect("changes");
    let risk = changes
        .iter()
        .find(|c| c["field"] == "risk_bps")
        .expect("risk changes the decision (the hard limit is 9,000)");
    // Exact: at the value found the decision differs, one step nearer it does not.
    let to: u16 = risk["to"].as_str().expect("to").parse().expect("u16");
    let at = snapshot.prescribe(KernelInput {
        risk_bps: to,
        ..input
    });
    let step = if to > input.risk_bps { to - 1 } else { to + 1 };
    let before = snapshot.prescribe(KernelInput {
        risk_bps: step,
        ..input
    });
    assert_ne!(
        (at.action, at.selected_model_id),
        (decision.action, decision.selected_model_id)
    );
    assert_eq!(
        (before.action, before.selected_model_id),
        (decision.action, decision.selected_model_id)
    );
    // Every boundary reported is verified the same way.
    for c in changes {
        assert_ne!(c["from"], c["to"], "{c}");
    }
    let missing = calybris(&["counterfactual", s(&dir), "--seq", "0"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("NOT_FOUND"), "{missing:?}");
}

#[test]
fn a_promotion_naming_an_unrecorded_policy_does_not_verify() {
    use calybris::gate::record::PromotionRecord;
    use calybris::wal::{DurableConfig, DurableWal};
    let root = temp_dir("forged-promotion");
    let dir = root.join("gate");
    write(&dir, 10, 0, 0);
    let mut forged = records(&dir);
    let at = forged.len();
    forged.push(GateRecord::Promotion(PromotionRecord {
        policy_digest: Digest([7; 32]),
        previous_policy_digest: *policy(1).digest(),
        report_digest: Digest([0; 32]),
        rollback: false,
    }));
    let copy = root.join("copy");
    std::fs::create_dir_all(&copy).expect("dir");
    let wal = DurableWal::<GateRecord>::open(&copy.join(LOG_DIR), DurableConfig::default())
        .expect("open the forged log");
    for record in &forged {
        let _ = wal.append(record).expect("append");
    }
    wal.close().expect("close");
    // Named like a names record of an unrecorded policy: POLICY_MISSING, exit 2.
    let run = calybris(&["verify", s(&copy), "--json"]);
    assert_eq!(run.code, 2, "{run:?}");
    let v = run.json();
    assert_eq!(v["reason"], "POLICY_MISSING", "{v}");
    assert_eq!(v["sequence"], at as u64, "{v}");
    // The evaluation commands refuse it too.
    let refused = calybris(&["regret", s(&copy)]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("LOG_NOT_VERIFIED"), "{refused:?}");
}
