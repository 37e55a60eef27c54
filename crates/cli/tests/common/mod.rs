//! Helpers shared by the tests that run the built `calybris` binary: temporary
//! directories, small audited logs, frame positions, and running the command.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use calybris::digest::SealedPolicy;
use calybris::kernel::{KernelInput, KernelModel, PolicySnapshot};
use calybris::wal::storage::FileStorage;
use calybris::wal::{AuditWriter, DecisionMeta, FrameReader, WalAnchor, WalKey};

/// A fresh, empty directory under the system temp dir, removed with everything in it
/// when the guard is dropped (at the end of the test, and when an assertion fails).
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.path().as_os_str()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A fresh, empty directory for this call, named after `name`, removed on drop.
pub fn temp_dir(name: &str) -> TempDir {
    TempDir(
        tempfile::Builder::new()
            .prefix(&format!("calybris-cli-test-{name}-"))
            .tempdir()
            .expect("create temp dir"),
    )
}

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the run ended cleanly by the contract: a known exit code, no panic,
    /// and at most one line on stderr.
    pub fn assert_contract(&self) {
        assert!(
            [0, 1, 2].contains(&self.code),
            "exit code {} outside the contract: {self:?}",
            self.code
        );
        assert!(!self.stderr.contains("panicked"), "panic: {self:?}");
        assert!(
            self.stderr.lines().count() <= 1,
            "more than one stderr line: {self:?}"
        );
    }

    /// The JSON object printed on stdout.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).expect("stdout is one JSON object")
    }
}

/// Runs `calybris` with `args`, without the colour variables of the caller's
/// environment.
pub fn calybris(args: &[&str]) -> Run {
    calybris_env(args, &[])
}

/// Runs `calybris` with `args` and the environment variables `env` (the colour
/// variables of the caller's environment removed first).
pub fn calybris_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_calybris"));
    for name in ["NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE"] {
        command.env_remove(name);
    }
    let output = command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run the calybris binary");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    run.assert_contract();
    run
}

/// Runs `calybris verify --json PATH extra...` and returns the run and its report.
pub fn verify_json(path: &Path, extra: &[&str]) -> (Run, serde_json::Value) {
    let path = path.to_str().expect("utf-8 path");
    let mut args = vec!["verify", "--json", path];
    args.extend_from_slice(extra);
    let run = calybris(&args);
    let json = run.json();
    (run, json)
}

pub fn model(model_id: u32, provider_id: u16, quality_bps: u16, price: u64) -> KernelModel {
    KernelModel {
        model_id,
        provider_id,
        quality_bps,
        risk_ceiling_bps: 8_000,
        enabled: 1,
        p95_latency_ms: 300 + 100 * model_id,
        capabilities: 0b1,
        region_mask: 0b1,
        input_cost_microunits_per_million_tokens: price,
        output_cost_microunits_per_million_tokens: price * 4,
    }
}

/// A small valid policy; `epoch` makes policies with distinct digests.
pub fn policy(epoch: u64) -> SealedPolicy {
    policy_of(
        vec![
            model(1, 0, 9_300, 3_000_000),
            model(2, 1, 8_100, 250_000),
            model(3, 2, 7_000, 100_000),
        ],
        epoch,
    )
}

/// The policy of [`policy`]'s parameters over `models`, at `epoch`.
pub fn policy_of(models: Vec<KernelModel>, epoch: u64) -> SealedPolicy {
    SealedPolicy::new(
        PolicySnapshot::builder()
            .policy_epoch(epoch)
            .catalog_epoch(1)
            .hard_risk_limit_bps(9_000)
            .risk_penalty_multiplier_bps(10_000)
            .latency_penalty_microunits_per_ms(1)
            .models(models)
            .build()
            .expect("valid policy"),
    )
}

/// The kernel's numeric JSON of `policy` (docs/schemas/policy.schema.json).
pub fn policy_json(policy: &PolicySnapshot) -> serde_json::Value {
    let p = policy.params();
    serde_json::json!({
        "params": {
            "policy_epoch": p.policy_epoch, "catalog_epoch": p.catalog_epoch,
            "hard_risk_limit_bps": p.hard_risk_limit_bps,
            "minimum_confidence_bps": p.minimum_confidence_bps,
            "risk_penalty_multiplier_bps": p.risk_penalty_multiplier_bps,
            "latency_penalty_microunits_per_ms": p.latency_penalty_microunits_per_ms,
        },
        "models": policy.models().iter().map(|m| serde_json::json!({
            "model_id": m.model_id, "provider_id": m.provider_id, "quality_bps": m.quality_bps,
            "risk_ceiling_bps": m.risk_ceiling_bps, "enabled": m.enabled,
            "p95_latency_ms": m.p95_latency_ms, "capabilities": m.capabilities,
            "region_mask": m.region_mask,
            "input_cost_microunits_per_million_tokens": m.input_cost_microunits_per_million_tokens,
            "output_cost_microunits_per_million_tokens": m.output_cost_microunits_per_million_tokens,
        })).collect::<Vec<_>>(),
    })
}

/// The `i`-th request of the test logs: a mix of executions, substitutions and
/// rejections.
pub fn request(i: u64) -> KernelInput {
    KernelInput {
        request_sequence: i,
        requested_model_id: 1 + (i % 3) as u32,
        input_tokens: 500 + (i as u32 % 7) * 300,
        output_tokens: 200,
        business_value_microunits: 40_000,
        risk_bps: if i % 5 == 4 { 9_500 } else { 1_000 },
        confidence_bps: 9_000,
        ..KernelInput::default()
    }
}

pub const KEY: &[u8] = b"calybris cli test key, 32 bytes or more";

pub fn key() -> WalKey {
    WalKey::new(KEY).expect("key")
}

/// Writes an audited log of one policy (record 0) and `decisions` decisions
/// (records 1..=decisions); returns its anchor.
pub fn write_log(path: &Path, key: Option<WalKey>, decisions: u64) -> WalAnchor {
    let policy = policy(1);
    let mut writer = AuditWriter::create(path, key).expect("create log");
    for i in 0..decisions {
        let input = request(i);
        let decision = policy.prescribe(input);
        let meta = DecisionMeta {
            recorded_at_unix_ms: 1_700_000_000_000 + i,
            tenant_id: i % 2,
            request_id: [0; 16],
        };
        writer
            .append_verified(&policy, input, &decision, meta)
            .expect("append");
    }
    writer.sync().expect("sync")
}

/// (offset, length) in bytes of every frame of a log file.
pub fn frames(path: &Path, key: Option<&WalKey>) -> Vec<(u64, u64)> {
    let storage = FileStorage::open_read(path).expect("open");
    let mut reader = FrameReader::new(storage, key).expect("reader");
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame().expect("frame") {
        let overhead = calybris::wal::format::FRAME_OVERHEAD_BYTES as u64;
        out.push((frame.offset_bytes, frame.payload.len() as u64 + overhead));
    }
    out
}

pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x5a;
    std::fs::write(path, bytes).expect("write");
}

pub fn cut(path: &Path, start: u64, end: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes.drain(start as usize..end as usize);
    std::fs::write(path, bytes).expect("write");
}

pub fn truncate(path: &Path, len: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes.truncate(len as usize);
    std::fs::write(path, bytes).expect("write");
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
