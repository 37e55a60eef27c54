//! The write-ahead log, side by side with the published `calybris-core` 1.3.0 where
//! it has an equivalent: buffered appends (plain and audited), chain verification,
//! full audited replay, and durable group-commit appends from 4 producer threads
//! with p50/p99 acknowledgement latency.
//!
//! `cargo bench -p calybris-benches --bench wal` (or `cargo xtask bench --bench wal`).
//! Bytes per record and the latency percentiles are printed as `wal-figure:` lines.

// criterion's group macros generate public functions without docs.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "../common/durable.rs"]
mod durable;
#[path = "../common/workload.rs"]
mod workload;

use calybris_core::{kernel as core_k, wal as core_w};
use calybris_digest::SealedPolicy;
use calybris_kernel::{KernelInput, KernelModel};
use calybris_wal::DEFAULT_WINDOW;
use calybris_wal::storage::FileStorage;
use calybris_wal::{
    AuditRecord, AuditWriter, DecisionMeta, DurableAuditWal, DurableConfig, DurableWal, Ticket,
    WalReader, WalWriter, replay_audited, replay_audited_file, scan_frames,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use durable::percentile;
use std::hint::black_box;
use workload::to_core_input;

/// Records written into one file before a timed chunk ends, so a long criterion run
/// never grows a log without bound.
const CHUNK_RECORDS: u64 = 20_000;
/// Records in the logs that the verification groups read.
const VERIFY_RECORDS: u64 = 10_000;
/// Producer threads of the durable group.
const PRODUCERS: u64 = 4;
/// Tickets each producer keeps in flight.
const IN_FLIGHT: usize = 64;
/// Records per producer in one durable measurement.
const DURABLE_RECORDS_PER_PRODUCER: u64 = 5_000;

/// The plain record of the generic-log groups: a typical small event.
type Event = (u64, String, Vec<u8>);

fn event(k: u64) -> Event {
    (k, format!("tenant-{}", k % 97), vec![(k % 251) as u8; 24])
}

static FILES: AtomicU64 = AtomicU64::new(0);

/// A fresh path in a per-process scratch directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("calybris-bench-wal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(format!("{name}-{}", FILES.fetch_add(1, Ordering::Relaxed)))
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_dir_all(path);
}

fn requests(models: &[KernelModel]) -> Vec<KernelInput> {
    (0..64u64)
        .map(|k| KernelInput {
            request_sequence: k,
            requested_model_id: models[(k as usize * 5) % models.len()].model_id,
            input_tokens: 500 + (k as u32 * 911) % 8_000,
            output_tokens: 100 + (k as u32 * 331) % 2_000,
            business_value_microunits: 20_000 + (k as i64 * 7_919) % 200_000,
            budget_limit_microunits: 50_000 + (k * 3_001) % 100_000,
            risk_bps: (k as u16 * 97) % 3_000,
            confidence_bps: 7_000 + (k as u16 * 53) % 3_000,
            minimum_quality_bps: 6_000 + (k as u16 * 71) % 2_000,
            max_p95_latency_ms: if k % 3 == 0 {
                0
            } else {
                1_500 + (k as u32 * 37) % 2_000
            },
            required_capabilities: 0b0011,
            allowed_provider_mask: u64::MAX,
            required_region_mask: 0,
        })
        .collect()
}

/// The 22-candidate policy and 64 requests, on both sides.
struct Workload {
    ours: SealedPolicy,
    theirs: core_k::PolicySnapshot,
    inputs: Vec<KernelInput>,
    core_inputs: Vec<core_k::KernelInput>,
}

fn workload() -> Workload {
    let workload::Pair { ours, theirs } = workload::pair(22);
    let inputs = requests(ours.models());
    let core_inputs = inputs.iter().map(to_core_input).collect();
    Workload {
        ours: SealedPolicy::new(ours),
        theirs,
        inputs,
        core_inputs,
    }
}

fn meta(k: u64) -> DecisionMeta {
    DecisionMeta {
        recorded_at_unix_ms: 1_763_800_000_000 + k,
        tenant_id: k % 97,
        request_id: [(k % 251) as u8; 16],
    }
}

/// Times `iters` appends spread over fresh files of at most `CHUNK_RECORDS`
/// records; `open` (untimed) makes a writer, `append` appends record `k`, `finish`
/// (timed) flushes.
fn chunked<W>(
    iters: u64,
    open: impl Fn(&Path) -> W,
    mut append: impl FnMut(&mut W, u64),
    finish: impl Fn(W),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(CHUNK_RECORDS);
        let path = scratch("append");
        let mut writer = open(&path);
        let start = Instant::now();
        for k in done..done + n {
            append(&mut writer, k);
        }
        finish(writer);
        total += start.elapsed();
        remove(&path);
        done += n;
    }
    total
}

fn buffered_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_append_buffered");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("calybris", "event"), |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                |path| WalWriter::<Event>::create(path, None).expect("create"),
                |w, k| {
                    black_box(w.append(&event(k)).expect("append"));
                },
                |mut w| w.flush().expect("flush"),
            )
        })
    });
    g.bench_function(BenchmarkId::new("calybris-core", "event"), |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                |path| core_w::WalWriter::<Event>::open(path).expect("open"),
                |w, k| {
                    black_box(w.append(event(k)).expect("append"));
                },
                |mut w| w.flush().expect("flush"),
            )
        })
    });
    g.finish();
}

fn audited_append(c: &mut Criterion) {
    let w = workload();
    let mut g = c.benchmark_group("wal_audited_append_buffered");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("calybris", "22-candidates"), |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                |path| AuditWriter::create(path, None).expect("create"),
                |writer, k| {
                    let input = w.inputs[(k % 64) as usize];
                    let decision = w.ours.prescribe(input);
                    black_box(
                        writer
                            .append_verified(&w.ours, input, &decision, meta(k))
                            .expect("append"),
                    );
                },
                |mut writer| writer.flush().expect("flush"),
            )
        })
    });
    g.bench_function(BenchmarkId::new("calybris-core", "22-candidates"), |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                |path| core_w::WalWriter::<core_w::AuditedRecord<u64>>::open(path).expect("open"),
                |writer, k| {
                    let input = w.core_inputs[(k % 64) as usize];
                    let decision = w.theirs.prescribe(input);
                    black_box(
                        writer
                            .append_verified_audited(&w.theirs, input, decision, k)
                            .expect("append"),
                    );
                },
                |mut writer| writer.flush().expect("flush"),
            )
        })
    });
    g.finish();
}

/// Writes `VERIFY_RECORDS` audited decisions with each implementation; returns the
/// paths and prints bytes per record.
fn audited_logs(w: &Workload) -> (PathBuf, PathBuf) {
    let ours = scratch("verify-ours");
    let mut writer = AuditWriter::create(&ours, None).expect("create");
    writer.append_policy(&w.ours).expect("policy");
    writer.flush().expect("flush");
    let after_policy = std::fs::metadata(&ours).expect("size").len();
    for k in 0..VERIFY_RECORDS {
        let input = w.inputs[(k % 64) as usize];
        writer
            .append_verified(&w.ours, input, &w.ours.prescribe(input), meta(k))
            .expect("append");
    }
    writer.sync().expect("sync");
    drop(writer);
    let ours_bytes = std::fs::metadata(&ours).expect("size").len();

    let theirs = scratch("verify-theirs");
    let mut writer = core_w::WalWriter::<core_w::AuditedRecord<u64>>::open(&theirs).expect("open");
    for k in 0..VERIFY_RECORDS {
        let input = w.core_inputs[(k % 64) as usize];
        writer
            .append_verified_audited(&w.theirs, input, w.theirs.prescribe(input), k)
            .expect("append");
    }
    writer.flush_and_sync().expect("sync");
    drop(writer);
    let theirs_bytes = std::fs::metadata(&theirs).expect("size").len();
    println!(
        "wal-figure: bytes per audited decision record: calybris {} (policy record and header excluded), calybris-core {}",
        (ours_bytes - after_policy) / VERIFY_RECORDS,
        theirs_bytes / VERIFY_RECORDS
    );
    (ours, theirs)
}

fn event_logs() -> (PathBuf, PathBuf) {
    let ours = scratch("events-ours");
    let mut writer = WalWriter::<Event>::create(&ours, None).expect("create");
    for k in 0..VERIFY_RECORDS {
        writer.append(&event(k)).expect("append");
    }
    writer.sync().expect("sync");
    drop(writer);
    let theirs = scratch("events-theirs");
    let mut writer = core_w::WalWriter::<Event>::open(&theirs).expect("open");
    for k in 0..VERIFY_RECORDS {
        writer.append(event(k)).expect("append");
    }
    writer.flush_and_sync().expect("sync");
    drop(writer);
    println!(
        "wal-figure: bytes per event record: calybris {}, calybris-core {}",
        std::fs::metadata(&ours).expect("size").len() / VERIFY_RECORDS,
        std::fs::metadata(&theirs).expect("size").len() / VERIFY_RECORDS
    );
    (ours, theirs)
}

fn verification(c: &mut Criterion) {
    let (ours, theirs) = event_logs();
    let mut g = c.benchmark_group("wal_verify_chain");
    g.throughput(Throughput::Elements(VERIFY_RECORDS));
    g.sample_size(20);
    g.bench_function(BenchmarkId::new("calybris", "10k-events"), |b| {
        b.iter(|| {
            let outcome = scan_frames(FileStorage::open_read(&ours).expect("open"), None, None)
                .expect("scan");
            assert!(outcome.is_clean());
            black_box(outcome)
        })
    });
    g.bench_function(BenchmarkId::new("calybris-core", "10k-events"), |b| {
        b.iter(|| black_box(core_w::verify_wal(&theirs).expect("verifies")))
    });
    g.finish();
    remove(&ours);
    remove(&theirs);

    let w = workload();
    let (ours, theirs) = audited_logs(&w);
    let mut g = c.benchmark_group("wal_replay_audited");
    g.throughput(Throughput::Elements(VERIFY_RECORDS));
    g.sample_size(20);
    g.bench_function(BenchmarkId::new("calybris", "10k-decisions"), |b| {
        b.iter(|| {
            let summary = replay_audited_file(&ours, None, None).expect("replays");
            assert_eq!(summary.decisions, VERIFY_RECORDS);
            black_box(summary)
        })
    });
    g.bench_function(BenchmarkId::new("calybris-core", "10k-decisions"), |b| {
        b.iter(|| {
            let verdicts = core_w::replay_audited_wal(&theirs, &w.theirs).expect("replays");
            assert_eq!(verdicts.len() as u64, VERIFY_RECORDS);
            black_box(verdicts)
        })
    });
    // The same replay from an already-open reader, to separate file opening.
    g.bench_function(BenchmarkId::new("calybris-reader", "10k-decisions"), |b| {
        b.iter(|| {
            let reader = WalReader::<AuditRecord>::open(&ours, None).expect("open");
            black_box(replay_audited(reader).expect("replays"))
        })
    });
    g.finish();
    remove(&ours);
    remove(&theirs);
}

/// One durable run of plain events (see [`producers`]).
fn durable_run(per_producer: u64, window: Duration) -> (Duration, Vec<u64>) {
    let dir = scratch("durable");
    let wal = DurableWal::<Event>::open(
        &dir,
        DurableConfig {
            window,
            ..DurableConfig::default()
        },
    )
    .expect("open");
    let result = producers(per_producer, |p, k| {
        wal.append(&event(p * 1_000_000 + k)).expect("append")
    });
    wal.close().expect("close");
    remove(&dir);
    result
}

/// One durable run of verified audited decisions (see [`producers`]).
fn durable_audited_run(w: &Workload, per_producer: u64, window: Duration) -> (Duration, Vec<u64>) {
    let dir = scratch("durable-audited");
    let log = DurableAuditWal::open(
        &dir,
        DurableConfig {
            window,
            ..DurableConfig::default()
        },
    )
    .expect("open");
    let result = producers(per_producer, |p, k| {
        let input = w.inputs[((p * 17 + k) % 64) as usize];
        log.append_verified(&w.ours, input, &w.ours.prescribe(input), meta(k))
            .expect("append")
    });
    log.close().expect("close");
    remove(&dir);
    result
}

/// `PRODUCERS` threads each append `per_producer` records with up to `IN_FLIGHT`
/// tickets outstanding ([`durable::producers`]); returns the elapsed time and every
/// append-to-acknowledgement latency in nanoseconds.
fn producers(
    per_producer: u64,
    append: impl Fn(u64, u64) -> Ticket + Sync,
) -> (Duration, Vec<u64>) {
    durable::producers(
        PRODUCERS,
        per_producer,
        IN_FLIGHT,
        append,
        |ticket: Ticket, t0| {
            ticket.wait().expect("durable");
            durable::nanos_since(t0)
        },
    )
}

fn durable(c: &mut Criterion) {
    // Latency percentiles from dedicated runs (criterion measures throughput below).
    for window_us in [200u64, 50] {
        let mut all = Vec::new();
        let mut records = 0;
        let mut time = Duration::ZERO;
        for _ in 0..5 {
            let (elapsed, lat) = durable_run(
                DURABLE_RECORDS_PER_PRODUCER,
                Duration::from_micros(window_us),
            );
            records += lat.len();
            time += elapsed;
            all.extend(lat);
        }
        all.sort_unstable();
        println!(
            "wal-figure: durable {PRODUCERS} producers, window {window_us} us, {IN_FLIGHT} in flight each: {:.0} records/s, ack latency p50 {} us, p99 {} us",
            records as f64 / time.as_secs_f64(),
            percentile(&all, 500) / 1_000,
            percentile(&all, 990) / 1_000
        );
    }

    let w = workload();
    let mut all = Vec::new();
    let mut time = Duration::ZERO;
    for _ in 0..5 {
        let (elapsed, lat) = durable_audited_run(&w, DURABLE_RECORDS_PER_PRODUCER, DEFAULT_WINDOW);
        time += elapsed;
        all.extend(lat);
    }
    all.sort_unstable();
    println!(
        "wal-figure: durable audited decisions, {PRODUCERS} producers, window 200 us, {IN_FLIGHT} in flight each: {:.0} decisions/s, ack latency p50 {} us, p99 {} us",
        all.len() as f64 / time.as_secs_f64(),
        percentile(&all, 500) / 1_000,
        percentile(&all, 990) / 1_000
    );

    let mut g = c.benchmark_group("wal_durable_4_producers");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(
        PRODUCERS * DURABLE_RECORDS_PER_PRODUCER,
    ));
    g.bench_function(BenchmarkId::new("calybris-group-commit", "200us"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| durable_run(DURABLE_RECORDS_PER_PRODUCER, DEFAULT_WINDOW).0)
                .sum()
        })
    });
    g.bench_function(
        BenchmarkId::new("calybris-audited-decisions", "200us"),
        |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        durable_audited_run(&w, DURABLE_RECORDS_PER_PRODUCER, DEFAULT_WINDOW).0
                    })
                    .sum()
            })
        },
    );
    g.finish();

    // The baseline the target is set against: one fsync per record.
    let mut g = c.benchmark_group("wal_durable_fsync_per_record");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("calybris-core", "1-thread"), |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                |path| core_w::WalWriter::<Event>::open(path).expect("open"),
                |w, k| {
                    w.append(event(k)).expect("append");
                    w.flush_and_sync().expect("sync");
                },
                |_| (),
            )
        })
    });
    g.bench_function(BenchmarkId::new("calybris", "1-thread"), |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                |path| WalWriter::<Event>::create(path, None).expect("create"),
                |w, k| {
                    w.append(&event(k)).expect("append");
                    w.sync().expect("sync");
                },
                |_| (),
            )
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    buffered_append,
    audited_append,
    verification,
    durable
);
criterion_main!(benches);
