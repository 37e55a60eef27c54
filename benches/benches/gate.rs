//! The decision gate (`calybris-gate`): durable decisions with settlement from 1, 4
//! and 16 threads next to `DurableAuditWal` alone, buffered decisions next to the
//! audited append alone, and reopening a gate log of a million decisions.
//!
//! `cargo bench -p calybris-benches --bench gate -- --warm-up-time 1 --measurement-time 3`
//! (or one family: `-- gate_durable`, `-- gate_buffered`, `-- gate_reopen`). The
//! durable throughput, the acknowledgement latencies and the reopen time are printed
//! as `gate-figure:` lines; calybris-core 1.3.0 has no gate, so there is no
//! calybris-core column here.
//!
//! Workload: the 22-candidate policy of `benches/common/workload.rs`, its 64 mixed
//! requests cycled, 8 tenants with budgets large enough that every priced selection is
//! admitted. Every admitted decision is settled: 31 in 32 committed at 60-100 % of the
//! hold, 1 in 32 released, so a decision's life is two records.

// criterion's group macros generate public functions without docs.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "../common/durable.rs"]
mod durable;
#[path = "../common/workload.rs"]
mod workload;

use calybris_digest::SealedPolicy;
use calybris_gate::{Admission, CheckpointConfig, Gate, GateConfig, ReopenHolds};
use calybris_kernel::KernelInput;
use calybris_wal::{AuditWriter, DEFAULT_WINDOW, DecisionMeta, DurableAuditWal, DurableConfig};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use durable::percentile;
use std::hint::black_box;

/// Admissions (or tickets) each thread keeps in flight in the durable group.
const IN_FLIGHT: usize = 64;
/// Decisions per thread in one durable run.
const DURABLE_PER_THREAD: u64 = 5_000;
/// Durable runs per configuration for the `gate-figure` lines.
const DURABLE_RUNS: usize = 5;
/// Tenants of every gate.
const TENANTS: usize = 8;
/// Each tenant's opening budget, in microunits: far above what a run can hold.
const BUDGET_MICROUNITS: u64 = 1 << 52;
/// Decisions made in one gate (or records in one file) before a timed buffered chunk
/// ends, so a long criterion run never grows a log without bound.
const CHUNK: u64 = 40_000;
/// Batch of decisions timed together in the buffered `decide` bench (their
/// settlements are not timed).
const BATCH: usize = 64;
/// Group-commit window of the buffered group: long, so nobody waits for the disk.
const LONG_WINDOW: Duration = Duration::from_millis(100);
/// Decisions in the log that the reopen group opens.
const REOPEN_DECISIONS: u64 = 1_000_000;
/// One admitted decision in this many is left open in the reopen log.
const REOPEN_LEFT_OPEN_EVERY: u64 = 1_000;
/// Timed reopen runs.
const REOPEN_RUNS: usize = 3;

static DIRS: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the system temp dir, removed when dropped (also when a
/// run panics).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "calybris-bench-gate-{}-{name}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The 22-candidate policy, its 64 requests and the tenant names.
struct Workload {
    policy: SealedPolicy,
    inputs: Vec<KernelInput>,
    tenants: Vec<String>,
}

fn workload() -> Workload {
    let pair = workload::pair(22);
    let inputs = workload::requests(pair.ours.models(), false);
    Workload {
        policy: SealedPolicy::new(pair.ours),
        inputs,
        tenants: (0..TENANTS).map(|t| format!("tenant-{t}")).collect(),
    }
}

impl Workload {
    fn config(&self, dir: &Path, window: Duration) -> GateConfig {
        let mut config = GateConfig::new(dir, self.policy.clone()).group_commit_window(window);
        for tenant in &self.tenants {
            config = config.tenant(tenant.as_str(), BUDGET_MICROUNITS);
        }
        config
    }

    /// Decision `k` of thread `p`: its tenant and request.
    fn request(&self, p: u64, k: u64) -> (&str, KernelInput) {
        let tenant = &self.tenants[((p * 3 + k) % TENANTS as u64) as usize];
        let input = self.inputs[((p * 17 + k) % self.inputs.len() as u64) as usize];
        (tenant, input)
    }
}

fn meta(k: u64) -> DecisionMeta {
    DecisionMeta {
        recorded_at_unix_ms: 1_763_800_000_000 + k,
        tenant_id: k % 97,
        request_id: [(k % 251) as u8; 16],
    }
}

/// Settles admission `k`: 1 in 32 released, the rest committed at 60-100 % of the
/// hold (a refused or free decision settles at zero, which logs nothing).
fn settle(gate: &Gate, admission: Admission, k: u64) {
    if k % 32 == 31 {
        gate.release(admission).expect("release");
    } else {
        let held = admission.budget().held_microunits();
        let actual = held / 100 * (60 + k % 41);
        gate.settle(admission, actual).expect("settle");
    }
}

/// One durable run: `threads` threads each make `per_thread` decisions with up to
/// `IN_FLIGHT` admissions in flight (decide; when the window is full, wait for the
/// oldest ticket, then settle it). Returns the time until every decision is
/// acknowledged and every decide-to-acknowledgement latency in nanoseconds. The gate
/// is opened and closed outside the timed part.
fn gate_durable_run(w: &Workload, threads: u64, per_thread: u64) -> (Duration, Vec<u64>) {
    let dir = Scratch::new("durable");
    let gate = Gate::open(w.config(dir.path(), DEFAULT_WINDOW)).expect("open");
    let result = durable::producers(
        threads,
        per_thread,
        IN_FLIGHT,
        |p, k| {
            let (tenant, input) = w.request(p, k);
            (k, gate.decide(tenant, input).expect("decide"))
        },
        |(k, admission): (u64, Admission), t0| {
            admission.wait_durable().expect("durable");
            let latency = durable::nanos_since(t0);
            settle(&gate, admission, k);
            latency
        },
    );
    gate.close().expect("close");
    result
}

/// The same shape of run with `DurableAuditWal::append_verified` alone (as the wal
/// bench does it): one record per decision, nothing settled.
fn audit_durable_run(w: &Workload, threads: u64, per_thread: u64) -> (Duration, Vec<u64>) {
    let dir = Scratch::new("durable-audit");
    let log = DurableAuditWal::open(dir.path(), DurableConfig::default()).expect("open");
    let result = durable::producers(
        threads,
        per_thread,
        IN_FLIGHT,
        |p, k| {
            let (_, input) = w.request(p, k);
            log.append_verified(&w.policy, input, &w.policy.prescribe(input), meta(k))
                .expect("append")
        },
        |ticket: calybris_wal::Ticket, t0| {
            ticket.wait().expect("durable");
            durable::nanos_since(t0)
        },
    );
    log.close().expect("close");
    result
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs of one configuration: rates (decisions/s) and pooled latencies.
#[derive(Default)]
struct Runs {
    rates: Vec<f64>,
    latencies: Vec<u64>,
}

impl Runs {
    fn add(&mut self, (elapsed, lat): (Duration, Vec<u64>)) {
        self.rates.push(lat.len() as f64 / elapsed.as_secs_f64());
        self.latencies.extend(lat);
    }

    /// Median rate, p50 and p99 in microseconds.
    fn summary(&mut self) -> (f64, u64, u64) {
        self.latencies.sort_unstable();
        (
            median(&mut self.rates),
            percentile(&self.latencies, 500) / 1_000,
            percentile(&self.latencies, 990) / 1_000,
        )
    }
}

/// Whether a benchmark named `name` is selected by the command line's filter (a
/// plain substring of criterion's filter, or one of its `|` alternatives), for the
/// figure runs criterion does not drive. Never in criterion's test or list modes
/// (`cargo test --benches`, `-- --test`, `-- --list`), which only check that every
/// benchmark runs.
fn selected(name: &str) -> bool {
    let flags: Vec<String> = std::env::args().collect();
    if !flags.iter().any(|arg| arg == "--bench")
        || flags.iter().any(|arg| arg == "--test" || arg == "--list")
    {
        return false;
    }
    const VALUED: [&str; 16] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--baseline-lenient",
        "--output-format",
        "--color",
        "--profile-time",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
        "--plotting-backend",
        "--format",
    ];
    let mut args = std::env::args().skip(1);
    let mut filter = None;
    while let Some(arg) = args.next() {
        if VALUED.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filter = Some(arg);
        }
    }
    filter.is_none_or(|filter| {
        filter
            .trim_matches(|c| c == '^' || c == '$' || c == '(' || c == ')')
            .split('|')
            .any(|part| name.contains(part))
    })
}

fn durable(c: &mut Criterion) {
    let w = workload();
    if selected("gate_durable") {
        // Side by side and interleaved, so the machine's load hits both alike.
        let mut gate_runs: Vec<(u64, Runs)> = [1u64, 4, 16]
            .into_iter()
            .map(|t| (t, Runs::default()))
            .collect();
        let mut audit = Runs::default();
        for _ in 0..DURABLE_RUNS {
            for (threads, runs) in &mut gate_runs {
                runs.add(gate_durable_run(&w, *threads, DURABLE_PER_THREAD));
            }
            audit.add(audit_durable_run(&w, 4, DURABLE_PER_THREAD));
        }
        let (audit_rate, audit_p50, audit_p99) = audit.summary();
        for (threads, runs) in &mut gate_runs {
            let (rate, p50, p99) = runs.summary();
            println!(
                "gate-figure: durable gate, {threads} threads, window 200 us, {IN_FLIGHT} in flight each, decide + settle: {rate:.0} decisions/s (median of {DURABLE_RUNS} runs of {} decisions), ack latency p50 {p50} us, p99 {p99} us; {:.0} % of DurableAuditWal at 4 threads",
                *threads * DURABLE_PER_THREAD,
                100.0 * rate / audit_rate
            );
        }
        println!(
            "gate-figure: durable DurableAuditWal::append_verified alone, 4 threads, window 200 us, {IN_FLIGHT} in flight each: {audit_rate:.0} decisions/s (median of {DURABLE_RUNS} runs of {} decisions), ack latency p50 {audit_p50} us, p99 {audit_p99} us",
            4 * DURABLE_PER_THREAD
        );
    }

    let mut g = c.benchmark_group("gate_durable");
    g.sample_size(10);
    for threads in [1u64, 4, 16] {
        g.throughput(Throughput::Elements(threads * DURABLE_PER_THREAD));
        g.bench_function(
            BenchmarkId::new("calybris-gate-decide-settle", format!("{threads}-threads")),
            |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| gate_durable_run(&w, threads, DURABLE_PER_THREAD).0)
                        .sum()
                })
            },
        );
    }
    g.throughput(Throughput::Elements(4 * DURABLE_PER_THREAD));
    g.bench_function(
        BenchmarkId::new("calybris-wal-audited-decisions", "4-threads"),
        |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| audit_durable_run(&w, 4, DURABLE_PER_THREAD).0)
                    .sum()
            })
        },
    );
    g.finish();
}

/// Times `iters` buffered gate decisions over fresh gates of at most `CHUNK`
/// decisions (open and close untimed), in batches of `BATCH`; `timed_settle` says
/// whether the settlements are inside the timed part.
fn gate_buffered(w: &Workload, iters: u64, timed_settle: bool, tree: bool) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    let mut batch = Vec::with_capacity(BATCH);
    while done < iters {
        let n = (iters - done).min(CHUNK);
        let dir = Scratch::new("buffered");
        let mut config = w.config(dir.path(), LONG_WINDOW);
        if tree {
            // The Merkle tree's right edge kept over every record appended
            // (a leaf hash and its merges per record), no checkpoint taken.
            let signer = calybris_tlog::Ed25519Signer::from_seed("bench.example/gate", &[9; 32])
                .expect("signer");
            config = config.checkpoints(CheckpointConfig::new(
                "bench.example/gate",
                std::sync::Arc::new(signer),
            ));
        }
        let gate = Gate::open(config).expect("open");
        let mut k = done;
        while k < done + n {
            let end = (k + BATCH as u64).min(done + n);
            let start = Instant::now();
            for j in k..end {
                let (tenant, input) = w.request(0, j);
                batch.push((j, gate.decide(tenant, input).expect("decide")));
            }
            if !timed_settle {
                total += start.elapsed();
            }
            for (j, admission) in batch.drain(..) {
                settle(&gate, black_box(admission), j);
            }
            if timed_settle {
                total += start.elapsed();
            }
            k = end;
        }
        gate.close().expect("close");
        done += n;
    }
    total
}

/// Times `iters` verified appends to a `DurableAuditWal` with the long window, not
/// waiting (the same group-commit machinery as the gate, without the gate).
fn durable_audit_buffered(w: &Workload, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(CHUNK);
        let dir = Scratch::new("buffered-durable-audit");
        let log = DurableAuditWal::open(
            dir.path(),
            DurableConfig {
                window: LONG_WINDOW,
                ..DurableConfig::default()
            },
        )
        .expect("open");
        let start = Instant::now();
        for k in done..done + n {
            let (_, input) = w.request(0, k);
            let decision = w.policy.prescribe(input);
            let _ticket = black_box(
                log.append_verified(&w.policy, input, &decision, meta(k))
                    .expect("append"),
            );
        }
        total += start.elapsed();
        log.close().expect("close");
        done += n;
    }
    total
}

/// Times `iters` buffered `AuditWriter::append_verified` calls, as the wal bench's
/// `wal_audited_append_buffered` does (one file per chunk, flush timed).
fn audit_writer_buffered(w: &Workload, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(CHUNK);
        let file = Scratch::new("buffered-audit-writer");
        let mut writer = AuditWriter::create(file.path(), None).expect("create");
        let start = Instant::now();
        for k in done..done + n {
            let (_, input) = w.request(0, k);
            let decision = w.policy.prescribe(input);
            black_box(
                writer
                    .append_verified(&w.policy, input, &decision, meta(k))
                    .expect("append"),
            );
        }
        writer.flush().expect("flush");
        total += start.elapsed();
        done += n;
    }
    total
}

/// Decisions per variant in one round of the interleaved buffered figure.
const BUFFERED_ROUND: u64 = 20_000;
/// Rounds of the interleaved buffered figure.
const BUFFERED_ROUNDS: usize = 5;

fn buffered(c: &mut Criterion) {
    let w = workload();
    if selected("gate_buffered") {
        // Interleaved rounds, so the machine's load hits every variant alike; the
        // ratios are medians of the per-round ratios.
        let mut per = [const { Vec::new() }; 5];
        let mut ratios = [const { Vec::new() }; 4];
        for _ in 0..BUFFERED_ROUNDS {
            let ns = |d: Duration| d.as_nanos() as f64 / BUFFERED_ROUND as f64;
            let round = [
                ns(gate_buffered(&w, BUFFERED_ROUND, false, false)),
                ns(gate_buffered(&w, BUFFERED_ROUND, true, false)),
                ns(durable_audit_buffered(&w, BUFFERED_ROUND)),
                ns(audit_writer_buffered(&w, BUFFERED_ROUND)),
                ns(gate_buffered(&w, BUFFERED_ROUND, false, true)),
            ];
            for (all, value) in per.iter_mut().zip(round) {
                all.push(value);
            }
            ratios[0].push(round[0] / round[3]);
            ratios[1].push(round[1] / round[3]);
            ratios[2].push(round[0] / round[2]);
            ratios[3].push(round[4] / round[0]);
        }
        let [decide, life, durable_audit, writer, with_tree] = per.map(|mut v| median(&mut v));
        let [decide_ratio, life_ratio, same_machinery, tree_ratio] =
            ratios.map(|mut v| median(&mut v));
        println!(
            "gate-figure: buffered, 1 thread, medians of {BUFFERED_ROUNDS} interleaved rounds of {BUFFERED_ROUND}: gate decide {decide:.0} ns, gate decide + settle {life:.0} ns, DurableAuditWal::append_verified (same window, not waiting) {durable_audit:.0} ns, AuditWriter::append_verified {writer:.0} ns; decide / AuditWriter {decide_ratio:.2}x, decide + settle / AuditWriter {life_ratio:.2}x, decide / DurableAuditWal {same_machinery:.2}x; gate decide with the Merkle tree kept {with_tree:.0} ns, {tree_ratio:.3}x without"
        );
    }

    let mut g = c.benchmark_group("gate_buffered");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("calybris-gate", "decide"), |b| {
        b.iter_custom(|iters| gate_buffered(&w, iters, false, false))
    });
    g.bench_function(BenchmarkId::new("calybris-gate", "decide+settle"), |b| {
        b.iter_custom(|iters| gate_buffered(&w, iters, true, false))
    });
    g.bench_function(
        BenchmarkId::new("calybris-gate", "decide-with-merkle-tree"),
        |b| b.iter_custom(|iters| gate_buffered(&w, iters, false, true)),
    );
    g.bench_function(
        BenchmarkId::new("calybris-wal-durable-audit", "append_verified"),
        |b| b.iter_custom(|iters| durable_audit_buffered(&w, iters)),
    );
    g.bench_function(BenchmarkId::new("calybris-wal", "audited-append"), |b| {
        b.iter_custom(|iters| audit_writer_buffered(&w, iters))
    });
    g.finish();
}

/// What a `gate_notes` run adds to every decision.
#[derive(Clone, Copy)]
enum Notes {
    Plain,
    Holdout,
    Shadow,
    Both,
}

/// The workload's policy rebuilt at another epoch: another digest, the same rules.
fn variant(w: &Workload, epoch: u64) -> SealedPolicy {
    SealedPolicy::new(
        calybris_kernel::PolicySnapshot::builder()
            .models(w.policy.snapshot().models().to_vec())
            .policy_epoch(epoch)
            .build()
            .expect("valid variant"),
    )
}

/// Times `iters` decisions (settlements untimed) on a buffered gate with a 20 %
/// holdout, a staged shadow candidate, both or neither.
fn gate_notes_run(w: &Workload, iters: u64, notes: Notes) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    let mut batch = Vec::with_capacity(BATCH);
    let key = calybris_gate::HoldoutKey::new(&[0x5a; 32]).expect("key");
    while done < iters {
        let n = (iters - done).min(CHUNK);
        let dir = Scratch::new("notes");
        let mut config = w.config(dir.path(), LONG_WINDOW);
        if matches!(notes, Notes::Holdout | Notes::Both) {
            config = config.holdout(calybris_gate::HoldoutConfig::new(
                key.clone(),
                variant(w, 101),
            ));
        }
        let gate = Gate::open(config).expect("open");
        if matches!(notes, Notes::Shadow | Notes::Both) {
            let _staged = gate.stage_shadow(variant(w, 102)).expect("stage");
        }
        let mut k = done;
        while k < done + n {
            let end = (k + BATCH as u64).min(done + n);
            let start = Instant::now();
            for j in k..end {
                let (tenant, input) = w.request(0, j);
                let input = KernelInput {
                    request_sequence: j,
                    ..input
                };
                batch.push((j, gate.decide(tenant, input).expect("decide")));
            }
            total += start.elapsed();
            for (j, admission) in batch.drain(..) {
                settle(&gate, black_box(admission), j);
            }
            k = end;
        }
        gate.close().expect("close");
        done += n;
    }
    total
}

/// `gate_notes`: what the holdout (an HMAC-SHA-256 per decision, a baseline deciding
/// a fifth of them) and a staged shadow candidate (a second `prescribe` and a
/// decision digest per decision) add to `decide`, against the plain gate, in
/// interleaved rounds.
fn notes(c: &mut Criterion) {
    let w = workload();
    if selected("gate_notes") {
        let mut per = [const { Vec::new() }; 4];
        let mut ratios = [const { Vec::new() }; 3];
        for _ in 0..BUFFERED_ROUNDS {
            let ns = |d: Duration| d.as_nanos() as f64 / BUFFERED_ROUND as f64;
            let round = [Notes::Plain, Notes::Holdout, Notes::Shadow, Notes::Both]
                .map(|notes| ns(gate_notes_run(&w, BUFFERED_ROUND, notes)));
            for (all, value) in per.iter_mut().zip(round) {
                all.push(value);
            }
            for (r, value) in ratios.iter_mut().zip(&round[1..]) {
                r.push(value / round[0]);
            }
        }
        let [plain, holdout, shadow, both] = per.map(|mut v| median(&mut v));
        let [holdout_ratio, shadow_ratio, both_ratio] = ratios.map(|mut v| median(&mut v));
        println!(
            "gate-figure: notes, 1 thread, buffered, medians of {BUFFERED_ROUNDS} interleaved rounds of {BUFFERED_ROUND}: decide {plain:.0} ns, with a 20 % holdout {holdout:.0} ns ({holdout_ratio:.2}x), with a staged shadow candidate {shadow:.0} ns ({shadow_ratio:.2}x), with both {both:.0} ns ({both_ratio:.2}x)"
        );
    }
    let mut g = c.benchmark_group("gate_notes");
    g.throughput(Throughput::Elements(1));
    for (name, notes) in [
        ("decide", Notes::Plain),
        ("decide+holdout", Notes::Holdout),
        ("decide+shadow", Notes::Shadow),
    ] {
        g.bench_function(BenchmarkId::new("calybris-gate", name), |b| {
            b.iter_custom(|iters| gate_notes_run(&w, iters, notes))
        });
    }
    g.finish();
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| match entry.file_type() {
                Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
                _ => entry.metadata().map_or(0, |m| m.len()),
            })
            .sum()
    })
}

/// Builds a gate log of `decisions` decisions from one thread (settled at once, one
/// admitted decision in `REOPEN_LEFT_OPEN_EVERY` left open); returns the number of
/// admitted decisions.
fn build_reopen_log(w: &Workload, dir: &Path, decisions: u64) -> u64 {
    let gate = Gate::open(w.config(dir, LONG_WINDOW)).expect("open");
    let mut admitted = 0u64;
    for k in 0..decisions {
        let (tenant, input) = w.request(0, k);
        let admission = gate.decide(tenant, input).expect("decide");
        if admission.is_admitted() {
            admitted += 1;
            if admitted.is_multiple_of(REOPEN_LEFT_OPEN_EVERY) {
                // Parked: open in the log, as a crash would leave it.
                let _ = admission.into_reservation_id();
                continue;
            }
        }
        settle(&gate, admission, k);
    }
    gate.close().expect("close");
    admitted
}

fn reopen(_c: &mut Criterion) {
    if !selected("gate_reopen") {
        return;
    }
    let w = workload();
    let dir = Scratch::new("reopen");
    let start = Instant::now();
    let admitted = build_reopen_log(&w, dir.path(), REOPEN_DECISIONS);
    let build = start.elapsed();
    let mut times = Vec::new();
    let mut found = None;
    for _ in 0..REOPEN_RUNS {
        // Keep: opening then appends nothing, so every run opens the same log.
        let config = w
            .config(dir.path(), DEFAULT_WINDOW)
            .reopen_holds(ReopenHolds::Keep);
        let start = Instant::now();
        let gate = Gate::open(config).expect("reopen");
        times.push(start.elapsed().as_secs_f64());
        found = Some(gate.recovery().clone());
        gate.close().expect("close");
    }
    let found = found.expect("at least one run");
    let mut sorted = times.clone();
    println!(
        "gate-figure: reopen a gate log of {REOPEN_DECISIONS} decisions ({admitted} admitted, {} open holds; {} records, {} MB; book snapshots every 65,536 records; built in {:.1} s): Gate::open median {:.0} ms over {REOPEN_RUNS} runs ({})",
        found.open_holds,
        found.records,
        dir_bytes(dir.path()) / 1_000_000,
        build.as_secs_f64(),
        median(&mut sorted) * 1_000.0,
        times
            .iter()
            .map(|t| format!("{:.0} ms", t * 1_000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "gate-figure: reopen replayed {} of {} records into the books",
        found.records_replayed, found.records
    );
}

criterion_group!(benches, durable, buffered, notes, reopen);
criterion_main!(benches);
