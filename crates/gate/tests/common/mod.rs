//! Shared helpers of the gate's test binaries.
#![allow(dead_code)]

pub mod kill;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use calybris_digest::{Digest, SealedPolicy, decision_digest, input_digest};
use calybris_gate::record::GateDecision;
use calybris_gate::{BudgetOutcome, GateRecord};
use calybris_kernel::{
    KernelAction, KernelDecision, KernelInput, KernelModel, KernelReason, PolicySnapshot,
};
use calybris_wal::{DecisionMeta, DecisionRecord};

/// A model with the given id and input price (output price four times it).
pub fn model(model_id: u32, quality_bps: u16, input_price: u64) -> KernelModel {
    KernelModel {
        model_id,
        provider_id: 0,
        quality_bps,
        risk_ceiling_bps: 9_000,
        enabled: 1,
        p95_latency_ms: 300,
        capabilities: 0,
        region_mask: 0b1,
        input_cost_microunits_per_million_tokens: input_price,
        output_cost_microunits_per_million_tokens: input_price * 4,
    }
}

/// Two models: 1 (dear, good) and 2 (cheap); and a free model 3 when `with_free`.
pub fn policy(with_free: bool) -> SealedPolicy {
    let mut models = vec![model(1, 9_300, 2_000_000), model(2, 8_100, 250_000)];
    if with_free {
        models.push(model(3, 7_000, 0));
    }
    SealedPolicy::new(
        PolicySnapshot::builder()
            .models(models)
            .build()
            .expect("valid policy"),
    )
}

/// The holdout's baseline of the holdout tests: model 1 priced ten times higher than
/// in [`policy`].
pub fn baseline() -> SealedPolicy {
    SealedPolicy::new(
        PolicySnapshot::builder()
            .models(vec![model(1, 9_300, 20_000_000), model(2, 8_100, 250_000)])
            .build()
            .expect("valid baseline"),
    )
}

/// A shadow candidate that differs from [`policy`]: model 1 priced ten times lower.
pub fn candidate() -> SealedPolicy {
    SealedPolicy::new(
        PolicySnapshot::builder()
            .models(vec![model(1, 9_300, 200_000), model(2, 8_100, 250_000)])
            .build()
            .expect("valid candidate"),
    )
}

/// The holdout key of the holdout tests.
pub fn holdout_key() -> calybris_gate::HoldoutKey {
    calybris_gate::HoldoutKey::new(&[0x5a; 32]).expect("long enough")
}

/// A request for `model_id`: 2,000 tokens in, 1,000 out (12,000 microunits on model 1).
pub fn request(sequence: u64, model_id: u32) -> KernelInput {
    KernelInput {
        request_sequence: sequence,
        requested_model_id: model_id,
        input_tokens: 2_000,
        output_tokens: 1_000,
        business_value_microunits: 50_000,
        ..KernelInput::default()
    }
}

static DIRS: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "calybris-gate-test-{name}-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The workspace's seeded generator (SplitMix64, from `calybris-workload`: these tests
/// run from the published package too, so not from the unpublished testkit).
#[allow(unused_imports)]
pub use calybris_workload::SplitMix64 as Rng;

/// The seed of a randomised test: `CALYBRIS_SEED` if set (decimal or 0x-hex), else a
/// fixed default.
pub fn seed(default: u64) -> u64 {
    calybris_workload::seed_from_env(default)
}

/// The audit part of a decision record: `input` and `decision` under `policy_digest`,
/// with both digests computed from them.
pub fn audit(
    input: KernelInput,
    decision: KernelDecision,
    policy_digest: Digest,
    meta: DecisionMeta,
) -> DecisionRecord {
    DecisionRecord {
        input,
        decision,
        policy_digest,
        input_digest: input_digest(&input),
        decision_digest: decision_digest(&decision),
        meta,
    }
}

/// The gate's decision record of `audit` for `tenant` with the budget outcome `budget`.
pub fn gate_decision(audit: DecisionRecord, tenant: &str, budget: BudgetOutcome) -> GateRecord {
    GateRecord::Decision(GateDecision {
        audit,
        tenant: tenant.into(),
        budget,
        scopes: Vec::new(),
        holdout: None,
        shadow: None,
        adaptive: None,
    })
}

/// A decision record made up for the fold (no policy prescribed it; the books do not
/// replay): request `sequence` of `tenant`, a selection of model 1 at `cost` when
/// `selection`, else a rejection, with the budget outcome `budget`.
pub fn synthetic_decision(
    sequence: u64,
    tenant: &str,
    cost: u64,
    selection: bool,
    budget: BudgetOutcome,
) -> GateRecord {
    let input = KernelInput {
        request_sequence: sequence,
        requested_model_id: 1,
        input_tokens: 1,
        ..KernelInput::default()
    };
    let (action, reason) = if selection {
        (
            KernelAction::ExecuteRequested,
            KernelReason::RequestedModelMaximizesUtility,
        )
    } else {
        (KernelAction::Reject, KernelReason::BudgetConstraint)
    };
    let decision = KernelDecision {
        request_sequence: sequence,
        action,
        reason,
        selected_model_id: 1,
        selected_model_index: 0,
        estimated_cost_microunits: cost,
        expected_utility_microunits: 1,
        counterfactual_model_id: 0,
        counterfactual_utility_microunits: 0,
        evaluated_models: 1,
        eligible_models: 1,
        policy_epoch: 0,
        catalog_epoch: 0,
    };
    gate_decision(
        audit(
            input,
            decision,
            Digest::from([0; 32]),
            DecisionMeta::default(),
        ),
        tenant,
        budget,
    )
}

/// Every record of the gate log in `dir` (the gate directory) with its sequence
/// number, offset in its segment and entry hash.
pub fn log_entries(dir: &std::path::Path) -> Vec<calybris_wal::Entry<GateRecord>> {
    let mut reader =
        calybris_wal::SegmentedReader::<GateRecord>::open(&dir.join("log"), None, None)
            .expect("the log opens");
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry().expect("a clean entry") {
        out.push(entry);
    }
    out
}

/// Every record of the gate log in `dir`, in order.
pub fn log_records(dir: &std::path::Path) -> Vec<GateRecord> {
    log_entries(dir).into_iter().map(|e| e.record).collect()
}

/// Writes `records` as the whole (unkeyed) log of the empty gate directory `dir`:
/// a forged log, well chained, whose records say what the caller made them say.
pub fn rewrite_log(dir: &std::path::Path, records: &[GateRecord]) {
    std::fs::create_dir_all(dir).expect("dir");
    let wal = calybris_wal::DurableWal::<GateRecord>::open(
        &dir.join("log"),
        calybris_wal::DurableConfig::default(),
    )
    .expect("open the forged log");
    for record in records {
        let _ = wal.append(record).expect("append");
    }
    wal.close().expect("close");
}

/// Flips one bit in the middle of the frame of record `sequence` of the log in `dir`
/// (a log of one segment file).
pub fn flip_bit_in_record(dir: &std::path::Path, sequence: u64) {
    let entries = log_entries(dir);
    let index = entries
        .iter()
        .position(|e| e.sequence == sequence)
        .expect("the record is in the log");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .expect("log dir")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cwal"))
        .collect();
    assert_eq!(segments.len(), 1, "a log of one segment");
    let segment = segments.pop().expect("one segment");
    let mut bytes = std::fs::read(&segment).expect("segment");
    let start = entries[index].offset_bytes as usize;
    let end = entries
        .get(index + 1)
        .map_or(bytes.len(), |next| next.offset_bytes as usize);
    assert!(end > start + 1, "a frame of more than one byte");
    bytes[start + (end - start) / 2] ^= 0x10;
    std::fs::write(&segment, &bytes).expect("write the segment");
}

/// An outcome that is a success or not, rewarded 1 or 0, with no latency or detail.
pub fn binary_outcome(success: bool) -> calybris_gate::Outcome {
    calybris_gate::Outcome {
        reward_microunits: i64::from(success),
        success,
        latency_ms: 0,
        detail: Vec::new(),
    }
}
