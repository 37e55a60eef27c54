//! What the adaptive engine (issue 11, feature `adaptive` of `calybris-gate`) adds to
//! the gate's buffered path on the 22-candidate workload: `decide` + `record_outcome`
//! against `decide_adaptive` + `record_outcome` (classify, Thompson table draw,
//! propensity, the note in the decision record, the update on the outcome), in
//! interleaved rounds, reported beside the plain figure.
//!
//! `cargo bench -p calybris-benches --bench adaptive -- --warm-up-time 1 --measurement-time 3`
//! prints a `gate-figure: adaptive` line (medians of interleaved rounds and the added
//! nanoseconds per decision) and the criterion group `gate_adaptive`. Target (issue
//! 11): at most 200 ns added per decision. calybris-core has no adaptive engine, so
//! there is no calybris-core column.

// criterion's group macros generate public functions without docs.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

#[path = "../common/workload.rs"]
mod workload;

use calybris_digest::SealedPolicy;
use calybris_gate::adaptive::{AdaptivePolicy, AdaptiveRegime, AdaptiveSetup, AdaptiveTier};
use calybris_gate::{AdaptiveRequest, Admission, CallerMeta, Gate, GateConfig, Outcome};
use calybris_kernel::KernelInput;
use calybris_testkit::TempDir;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

/// Decisions made in one gate before a timed chunk ends (a long run never grows one
/// log without bound, nor the engine's posteriors to their shape bound).
const CHUNK: u64 = 40_000;
/// Decisions timed together.
const BATCH: usize = 64;
/// Group-commit window: long, so nobody waits for the disk.
const LONG_WINDOW: Duration = Duration::from_millis(100);
/// Decisions per variant in one round of the interleaved figure.
const ROUND: u64 = 20_000;
/// Rounds of the interleaved figure.
const ROUNDS: usize = 5;
/// The engine's default labels: the eight regimes.
const LABELS: [&str; 8] = [
    "support",
    "coding",
    "compliance",
    "security",
    "analysis",
    "writing",
    "extraction",
    "other",
];

struct Workload {
    policy: SealedPolicy,
    inputs: Vec<KernelInput>,
}

fn workload() -> Workload {
    let pair = workload::pair(22);
    let inputs = workload::requests(pair.ours.models(), false);
    Workload {
        policy: SealedPolicy::new(pair.ours),
        inputs,
    }
}

/// How the engine starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// No engine: `decide_with`.
    Off,
    /// Uniform priors (day one): every outcome redraws its arm's column until the
    /// arm's count reaches 128, which a 20,000-decision round over 8 × 22 arms hardly
    /// leaves.
    DayOne,
    /// Priors worth 1,000 outcomes (600, 400): a column is redrawn every 15th outcome
    /// of its arm, plus the round robin.
    Warm,
}

/// One tier per model (its floor 0, the model requested), Thompson with 16 re-draws
/// (a table of 17 rows), always exploring, eight regimes.
fn setup(w: &Workload, engine: Engine) -> AdaptiveSetup {
    let domains = [1, 2, 3, 4, 5, 5, 5, 5];
    let models = w.policy.snapshot().models();
    AdaptiveSetup {
        format_version: 1,
        regimes: LABELS
            .iter()
            .zip(domains)
            .map(|(label, domain)| AdaptiveRegime {
                label: (*label).to_owned(),
                domain,
                custom_floor_bps: 5_500,
            })
            .collect(),
        features: 4,
        floor_min_bps: 0,
        floor_max_bps: 0,
        step_bps: 10,
        min_observations: 8,
        fallback: 7,
        priors: vec![
            if engine == Engine::Warm {
                (600, 400)
            } else {
                (1, 1)
            };
            models.len()
        ],
        policy: AdaptivePolicy::Thompson { redraws: 16 },
        exploration_bps: 10_000,
        key: [0x5a; 32],
        tiers: models
            .iter()
            .map(|m| AdaptiveTier {
                floor_bps: 0,
                requested_model_id: Some(m.model_id),
            })
            .collect(),
        static_tier: 0,
        snapshot_every_updates: 10_000,
        feedback: Default::default(),
    }
}

fn settle(gate: &Gate, admission: Admission, k: u64) {
    let held = admission.budget().held_microunits();
    gate.settle(admission, held / 100 * (60 + k % 41))
        .expect("settle");
}

/// Times `iters` decisions with their outcomes (settlements untimed), adaptive or
/// plain, over fresh gates of at most `CHUNK` decisions.
fn run(w: &Workload, iters: u64, engine: Engine) -> Duration {
    let adaptive = engine != Engine::Off;
    let mut total = Duration::ZERO;
    let mut done = 0;
    let mut batch = Vec::with_capacity(BATCH);
    while done < iters {
        let n = (iters - done).min(CHUNK);
        let dir = TempDir::new("bench-adaptive");
        let mut config = GateConfig::new(dir.path(), w.policy.clone())
            .group_commit_window(LONG_WINDOW)
            .tenant("acme", 1 << 52);
        if adaptive {
            config = config.adaptive(setup(w, engine));
        }
        let gate = Gate::open(config).expect("open");
        let mut k = done;
        while k < done + n {
            let end = (k + BATCH as u64).min(done + n);
            let start = Instant::now();
            for j in k..end {
                let input = KernelInput {
                    request_sequence: j,
                    ..w.inputs[(j % w.inputs.len() as u64) as usize]
                };
                let caller = CallerMeta {
                    request_id: [0; 16],
                    recorded_at_unix_ms: 1_764_620_000_000,
                };
                let admission = if adaptive {
                    // One request in eight without a label: classified by its features.
                    let label = (j % 8 != 7).then(|| LABELS[(j % 8) as usize]);
                    let features = [
                        (input.input_tokens / 100) as i32,
                        (input.output_tokens / 100) as i32,
                        (j % 8) as i32,
                        1,
                    ];
                    gate.decide_adaptive(
                        "acme",
                        input,
                        caller,
                        AdaptiveRequest {
                            label,
                            features: &features,
                        },
                    )
                } else {
                    gate.decide_with("acme", input, caller)
                }
                .expect("decide");
                let success = j % 3 != 0;
                let _ticket = gate
                    .record_outcome(
                        admission.decision_ref(),
                        Outcome {
                            reward_microunits: i64::from(success),
                            success,
                            latency_ms: 0,
                            detail: Vec::new(),
                        },
                    )
                    .expect("outcome");
                batch.push((j, admission));
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Whether the figure line should run: only under `cargo bench`, and when the
/// criterion filter (if any) names `name` (the gate bench's rule).
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

fn adaptive(c: &mut Criterion) {
    let w = workload();
    if selected("gate_adaptive") {
        let mut per = [const { Vec::new() }; 3];
        let mut added = [const { Vec::new() }; 2];
        for _ in 0..ROUNDS {
            let ns = |d: Duration| d.as_nanos() as f64 / ROUND as f64;
            let round = [Engine::Off, Engine::DayOne, Engine::Warm].map(|e| ns(run(&w, ROUND, e)));
            for (all, value) in per.iter_mut().zip(round) {
                all.push(value);
            }
            for (all, value) in added.iter_mut().zip(&round[1..]) {
                all.push(value - round[0]);
            }
        }
        let [p, day_one, warm] = per.map(|mut v| median(&mut v));
        let [added_day_one, added_warm] = added.map(|mut v| median(&mut v));
        println!(
            "gate-figure: adaptive, 1 thread, buffered, 22 models, medians of {ROUNDS} interleaved rounds of {ROUND}: decide_with + record_outcome {p:.0} ns; decide_adaptive + record_outcome, uniform priors {day_one:.0} ns (added {added_day_one:.0} ns), priors worth 1,000 outcomes {warm:.0} ns (added {added_warm:.0} ns)"
        );
    }
    let mut g = c.benchmark_group("gate_adaptive");
    g.throughput(Throughput::Elements(1));
    for (name, engine) in [
        ("decide+outcome", Engine::Off),
        ("decide_adaptive+outcome/uniform-priors", Engine::DayOne),
        ("decide_adaptive+outcome/warm-priors", Engine::Warm),
    ] {
        g.bench_function(BenchmarkId::new("calybris-gate", name), |b| {
            b.iter_custom(|iters| run(&w, iters, engine))
        });
    }
    g.finish();
}

criterion_group!(benches, adaptive);
criterion_main!(benches);
