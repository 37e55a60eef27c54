//! Fixed loops over the decision gate, for profiling (`perf record`, or callgrind for
//! instruction counts, which are repeatable where wall-clock time on a shared machine
//! is not):
//!
//! ```sh
//! cargo build --release -p calybris-benches --example gate_loop
//! # one thread, nobody waits for the disk (100 ms group-commit window):
//! valgrind --tool=callgrind target/release/examples/gate_loop decide 100000
//! valgrind --tool=callgrind target/release/examples/gate_loop budgeted 100000
//! valgrind --tool=callgrind target/release/examples/gate_loop audit 100000
//! valgrind --tool=callgrind target/release/examples/gate_loop writer 100000
//! # durable, 4 threads, 64 admissions in flight each (for perf):
//! perf record -g target/release/examples/gate_loop durable 4 20000
//! # build a log of N decisions in DIR, then open it R times:
//! target/release/examples/gate_loop build DIR 1000000
//! valgrind --tool=callgrind target/release/examples/gate_loop open DIR 1
//! # the parts of an open, timed one by one (see `parts` below):
//! target/release/examples/gate_loop parts DIR
//! ```
//!
//! `decide` makes N gate decisions and settles each at once (two records each);
//! `audit` appends N verified decisions to a `DurableAuditWal` without waiting;
//! `writer` appends them to a buffered `AuditWriter`. Divide callgrind's "Collected"
//! total by N for instructions per decision. Every directory but `build`'s is a fresh
//! one under the system temp dir, removed at the end.

#[path = "../common/workload.rs"]
mod workload;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use calybris_digest::SealedPolicy;
use calybris_gate::windows::{BudgetDefined, BudgetScope, BudgetWindow};
use calybris_gate::{
    Admission, Books, BudgetRoute, CallerMeta, Gate, GateConfig, GateRecord, LOG_DIR, ReopenHolds,
};
use calybris_kernel::KernelInput;
use calybris_wal::storage::FsDirectory;
use calybris_wal::{
    AuditWriter, DEFAULT_WINDOW, DecisionMeta, DurableAuditWal, DurableConfig, DurableWal, Entry,
    SegmentedFrames, SegmentedReader,
};

const TENANTS: u64 = 8;
const BUDGET_MICROUNITS: u64 = 1 << 52;
const LONG_WINDOW: Duration = Duration::from_millis(100);
const IN_FLIGHT: usize = 64;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let path =
        std::env::temp_dir().join(format!("calybris-gate-loop-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    Scratch(path)
}

struct Workload {
    policy: SealedPolicy,
    inputs: Vec<KernelInput>,
    tenants: Vec<String>,
}

impl Workload {
    fn new() -> Self {
        let pair = workload::pair(22);
        let inputs = workload::requests(pair.ours.models(), false);
        Self {
            policy: SealedPolicy::new(pair.ours),
            inputs,
            tenants: (0..TENANTS).map(|t| format!("tenant-{t}")).collect(),
        }
    }

    fn config(&self, dir: &Path, window: Duration) -> GateConfig {
        let mut config = GateConfig::new(dir, self.policy.clone()).group_commit_window(window);
        for tenant in &self.tenants {
            config = config.tenant(tenant.as_str(), BUDGET_MICROUNITS);
        }
        config
    }

    fn request(&self, p: u64, k: u64) -> (&str, KernelInput) {
        let tenant = &self.tenants[((p * 3 + k) % TENANTS) as usize];
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

fn settle(gate: &Gate, admission: Admission, k: u64) {
    if k % 32 == 31 {
        gate.release(admission).expect("release");
    } else {
        let held = admission.budget().held_microunits();
        gate.settle(admission, held / 100 * (60 + k % 41))
            .expect("settle");
    }
}

fn arg<T: std::str::FromStr>(args: &[String], at: usize, default: T) -> T {
    args.get(at).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("decide", String::as_str);
    let w = Workload::new();
    let start = Instant::now();
    let mut n = 0;
    match mode {
        "decide" => {
            n = arg(&args, 1, 100_000u64);
            let dir = scratch("decide");
            let gate = Gate::open(w.config(&dir.0, LONG_WINDOW)).expect("open");
            for k in 0..n {
                let (tenant, input) = w.request(0, k);
                let admission = gate.decide(tenant, input).expect("decide");
                settle(&gate, admission, k);
            }
            gate.close().expect("close");
        }
        "budgeted" => {
            // As `decide`, through org -> team -> key and the selected model's scope
            // node (`Gate::decide_budgeted`): compare the two per decision.
            n = arg(&args, 1, 100_000u64);
            let dir = scratch("budgeted");
            let gate = Gate::open(w.config(&dir.0, LONG_WINDOW)).expect("open");
            let node = |name: &str, parent: Option<&str>, scope| BudgetDefined {
                node: name.to_owned(),
                parent: parent.map(str::to_owned),
                scope,
                limit_microunits: BUDGET_MICROUNITS,
                window: BudgetWindow::Daily {
                    utc_offset_minutes: 0,
                },
                start_window: 0,
                alert_thresholds_bps: vec![5_000, 8_000, 10_000],
            };
            let mut nodes = vec![
                node("org", None, BudgetScope::Chain),
                node("team", Some("org"), BudgetScope::Chain),
                node("key", Some("team"), BudgetScope::Chain),
            ];
            for model in w.policy.snapshot().models() {
                let name = model.model_id.to_string();
                nodes.push(node(
                    &format!("model-{name}"),
                    None,
                    BudgetScope::Model(name),
                ));
            }
            for definition in &nodes {
                let _ticket = gate.define_budget(definition).expect("define");
            }
            let route = BudgetRoute {
                key: "key".to_owned(),
                scopes: Vec::new(),
            };
            for k in 0..n {
                let (tenant, input) = w.request(0, k);
                let admission = gate
                    .decide_budgeted(tenant, input, CallerMeta::default(), &route)
                    .expect("decide");
                settle(&gate, admission, k);
            }
            gate.close().expect("close");
        }
        "audit" => {
            n = arg(&args, 1, 100_000u64);
            let dir = scratch("audit");
            let log = DurableAuditWal::open(
                &dir.0,
                DurableConfig {
                    window: LONG_WINDOW,
                    ..DurableConfig::default()
                },
            )
            .expect("open");
            for k in 0..n {
                let (_, input) = w.request(0, k);
                let decision = w.policy.prescribe(input);
                let _ticket = log
                    .append_verified(&w.policy, input, &decision, meta(k))
                    .expect("append");
            }
            log.close().expect("close");
        }
        "writer" => {
            n = arg(&args, 1, 100_000u64);
            let file = scratch("writer");
            let mut writer = AuditWriter::create(&file.0, None).expect("create");
            for k in 0..n {
                let (_, input) = w.request(0, k);
                let decision = w.policy.prescribe(input);
                writer
                    .append_verified(&w.policy, input, &decision, meta(k))
                    .expect("append");
            }
            writer.flush().expect("flush");
        }
        "durable" => {
            let threads = arg(&args, 1, 4u64);
            let per_thread = arg(&args, 2, 20_000u64);
            n = threads * per_thread;
            let dir = scratch("durable");
            let gate = Gate::open(w.config(&dir.0, DEFAULT_WINDOW)).expect("open");
            std::thread::scope(|scope| {
                for p in 0..threads {
                    let (gate, w) = (&gate, &w);
                    scope.spawn(move || {
                        let mut flight = VecDeque::with_capacity(IN_FLIGHT);
                        for k in 0..per_thread {
                            let (tenant, input) = w.request(p, k);
                            flight.push_back((k, gate.decide(tenant, input).expect("decide")));
                            if flight.len() >= IN_FLIGHT {
                                let (k, admission) = flight.pop_front().expect("in flight");
                                admission.wait_durable().expect("durable");
                                settle(gate, admission, k);
                            }
                        }
                        for (k, admission) in flight {
                            admission.wait_durable().expect("durable");
                            settle(gate, admission, k);
                        }
                    });
                }
            });
            gate.close().expect("close");
        }
        "build" => {
            let dir = PathBuf::from(args.get(1).expect("DIR"));
            n = arg(&args, 2, 1_000_000u64);
            let gate = Gate::open(w.config(&dir, LONG_WINDOW)).expect("open");
            let mut admitted = 0u64;
            for k in 0..n {
                let (tenant, input) = w.request(0, k);
                let admission = gate.decide(tenant, input).expect("decide");
                if admission.is_admitted() {
                    admitted += 1;
                    if admitted.is_multiple_of(1_000) {
                        let _ = admission.into_reservation_id();
                        continue;
                    }
                }
                settle(&gate, admission, k);
            }
            gate.close().expect("close");
        }
        "open" => {
            let dir = PathBuf::from(args.get(1).expect("DIR"));
            let runs = arg(&args, 2, 1usize);
            for _ in 0..runs {
                let t0 = Instant::now();
                let gate = Gate::open(
                    w.config(&dir, DEFAULT_WINDOW)
                        .reopen_holds(ReopenHolds::Keep),
                )
                .expect("open");
                println!(
                    "open: {:.0} ms, {:?}",
                    t0.elapsed().as_secs_f64() * 1_000.0,
                    gate.recovery()
                );
                gate.close().expect("close");
                n += 1;
            }
        }
        "parts" => {
            let dir = PathBuf::from(args.get(1).expect("DIR"));
            parts(&dir.join(LOG_DIR));
            n = 1;
        }
        other => panic!(
            "unknown mode {other:?}: decide | audit | writer | durable | build | open | parts"
        ),
    }
    let elapsed = start.elapsed();
    println!(
        "{mode}: {n} in {:.3} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

fn reader(log: &Path) -> SegmentedReader<GateRecord, FsDirectory> {
    SegmentedReader::from_dir(FsDirectory::new(log).expect("dir"), None, None).expect("reader")
}

/// The parts of `Gate::open`, timed one by one on the log in `log`: the log's own open
/// (it verifies the chain to the end), reading and chain-checking the frames, decoding
/// them, folding every record into books (what the gate's rebuild does), and folding
/// only the records from the last book snapshot on.
fn parts(log: &Path) {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1_000.0;
    let t = Instant::now();
    let wal = DurableWal::<GateRecord>::open(log, DurableConfig::default()).expect("wal open");
    let wal_open = ms(t);
    wal.close().expect("close");

    let t = Instant::now();
    let mut frames =
        SegmentedFrames::new(FsDirectory::new(log).expect("dir"), None, None).expect("frames");
    let mut records = 0u64;
    while frames.next_frame().expect("frame").is_some() {
        records += 1;
    }
    let frames_ms = ms(t);

    let t = Instant::now();
    let mut last_snapshot = 0;
    for entry in reader(log) {
        let entry = entry.expect("entry");
        if matches!(entry.record, GateRecord::BookSnapshot(_)) {
            last_snapshot = entry.sequence;
        }
    }
    let decode_ms = ms(t);

    let t = Instant::now();
    let mut books = Books::new();
    for entry in reader(log) {
        let entry = entry.expect("entry");
        books.apply(entry.sequence, &entry.record).expect("fold");
    }
    let fold_all_ms = ms(t);

    let suffix: Vec<Entry<GateRecord>> = reader(log)
        .map(|entry| entry.expect("entry"))
        .filter(|entry| entry.sequence >= last_snapshot)
        .collect();
    let t = Instant::now();
    let GateRecord::BookSnapshot(snapshot) = &suffix[0].record else {
        panic!("the suffix starts at a book snapshot");
    };
    let mut from_snapshot = Books::from_snapshot(snapshot).expect("snapshot");
    for entry in &suffix[1..] {
        from_snapshot
            .apply(entry.sequence, &entry.record)
            .expect("fold");
    }
    let fold_suffix_ms = ms(t);
    assert_eq!(from_snapshot.tenants(), books.tenants());
    assert_eq!(from_snapshot.open_holds(), books.open_holds());
    println!(
        "parts of an open of {records} records: DurableWal::open {wal_open:.0} ms; frames (read + chain) {frames_ms:.0} ms; frames + decode {decode_ms:.0} ms; frames + decode + fold of every record {fold_all_ms:.0} ms; fold of the {} records from the last book snapshot (at {last_snapshot}) on, from memory, {fold_suffix_ms:.1} ms (same books)",
        suffix.len()
    );
}
