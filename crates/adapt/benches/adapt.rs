//! The adaptive step for 22 arms: classify, draw (a row of the Thompson table), its
//! propensity (the row share), update (posterior, Welford, floor, state digest, the
//! table's due redraws), and its parts; a fresh 22-arm Thompson draw
//! (22 keyed Beta samples) for comparison; the epsilon-greedy baseline.
//!
//! `steady_*` run a sequence of steps on one engine (fresh every 50,000 steps,
//! outside the timed part), so the table's redraws are counted at their real rate;
//! `step_*` time one step on a clone of the same warmed engine.
//!
//! Target (issue "The adaptive engine"): at most 200 ns added per decision.
//! `cargo bench -p calybris-adapt --bench adapt`.

// criterion's group macros generate public functions without docs.
#![allow(missing_docs)]

use calybris_adapt::engine::{Engine, EngineConfig, Request};
use calybris_adapt::prf::{Prf, PrfKey, PrfKeyed, Purpose};
use calybris_adapt::regime::RegimeConfig;
use calybris_adapt::thompson::{Policy, Posterior, thompson_draw};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

/// Arms (tiers) of the benchmarked engine.
const ARMS: u32 = 22;

/// Re-draws of the propensity group (its cost is linear in them).
const REDRAWS: u32 = 100;

fn engine(policy: Policy) -> Engine {
    // Tiers with a few thousand outcomes each, success rates from 0.6 to 0.9.
    let priors = (0..ARMS)
        .map(|i| Posterior::new(600 + 15 * i, 400 - 15 * i).expect("shapes in range"))
        .collect();
    let config = EngineConfig {
        regimes: RegimeConfig::default(),
        priors,
        policy,
        exploration_bps: 10_000,
    };
    let mut e = Engine::new(config, PrfKey::from_bytes([7; 32])).expect("valid configuration");
    // Warm every regime so that classification compares real statistics.
    for i in 0..64u8 {
        let features = [i32::from(i), 100 + i32::from(i % 7), i32::from(i % 3), 4];
        let request = Request {
            input_digest: [i; 32],
            label: Some(["support", "coding", "compliance", "security"][usize::from(i % 4)]),
            features: &features,
            client_floor_bps: None,
            static_arm: 0,
        };
        let d = e.decide(&request).expect("decide");
        e.update(&d, &features, i % 3 != 0).expect("update");
    }
    e
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("adapt");
    group.measurement_time(Duration::from_secs(4));
    let features = [17, 103, 2, 4];
    let request = Request {
        input_digest: [0xab; 32],
        label: None,
        features: &features,
        client_floor_bps: Some(6_000),
        static_arm: 3,
    };
    let thompson = engine(Policy::Thompson { redraws: REDRAWS });
    let greedy = engine(Policy::EpsilonGreedy { epsilon_bps: 500 });

    group.bench_function("step_thompson_22_arms", |b| {
        b.iter_batched_ref(
            || thompson.clone(),
            |e| {
                let d = e.decide(black_box(&request)).expect("decide");
                e.update(&d, &features, true).expect("update");
                d
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("step_epsilon_greedy_22_arms", |b| {
        b.iter_batched_ref(
            || greedy.clone(),
            |e| {
                let d = e.decide(black_box(&request)).expect("decide");
                e.update(&d, &features, true).expect("update");
                d
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("classify", |b| {
        b.iter(|| {
            thompson
                .regimes()
                .classify(black_box(None), black_box(&features))
        });
    });
    let posteriors = thompson.posteriors(0).expect("regime 0").to_vec();
    let prf = Prf::new(&PrfKey::from_bytes([7; 32]), &[1; 32], &[2; 32]);
    group.bench_function("draw_22_arms", |b| {
        b.iter(|| thompson_draw(black_box(&prf), 0, black_box(&posteriors)));
    });
    group.bench_function("prf_context", |b| {
        b.iter(|| Prf::new(black_box(&PrfKey::from_bytes([7; 32])), &[1; 32], &[2; 32]));
    });
    let keyed = PrfKeyed::new(&PrfKey::from_bytes([7; 32]));
    group.bench_function("prf_context_keyed_once", |b| {
        b.iter(|| keyed.context(black_box(&[1; 32]), black_box(&[2; 32])));
    });
    group.bench_function("words_1000", |b| {
        b.iter(|| {
            let mut s = prf.stream(Purpose::External, black_box(0));
            (0..1000).fold(0u64, |acc, _| acc ^ s.next_u64())
        });
    });
    // The v1 stream's cost for the same 1,000 words: one 52-byte SHA-256 per 4 words.
    group.bench_function("v1_sha256_words_1000", |b| {
        use sha2::{Digest, Sha256};
        b.iter(|| {
            let mut acc = 0u64;
            for block in 0..250u64 {
                let mut h = Sha256::new();
                h.update([1u8; 32]);
                h.update(0xFFFF_FFFFu32.to_be_bytes());
                h.update(black_box(0u64).to_be_bytes());
                h.update(block.to_be_bytes());
                let out: [u8; 32] = h.finalize().into();
                acc ^= u64::from_be_bytes(out[..8].try_into().expect("8 bytes"));
            }
            acc
        });
    });
    group.bench_function("update_with_digest", |b| {
        let d = thompson.decide(&request).expect("decide");
        b.iter_batched_ref(
            || thompson.clone(),
            |e| e.update(black_box(&d), &features, false),
            BatchSize::SmallInput,
        );
    });
    for (name, engine) in [
        ("steady_step_thompson_22_arms", &thompson),
        ("steady_step_epsilon_greedy_22_arms", &greedy),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| steady(engine, iters));
        });
    }
    group.bench_function("propensity_table_101_rows_22_arms", |b| {
        let d = thompson.decide(&request).expect("decide");
        b.iter(|| thompson.propensity(black_box(&request), black_box(&d)));
    });
    group.finish();
}

/// Steps per fresh engine in the steady benches.
const STEADY_CHUNK: u64 = 50_000;

/// Times `iters` steps (decide, propensity, update) on clones of `warm`, one per
/// `STEADY_CHUNK` steps: labels for seven in eight requests, features and outcomes
/// varying with the step.
fn steady(warm: &Engine, iters: u64) -> Duration {
    const LABELS: [&str; 7] = [
        "support",
        "coding",
        "compliance",
        "security",
        "analysis",
        "writing",
        "extraction",
    ];
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(STEADY_CHUNK);
        let mut e = warm.clone();
        let start = std::time::Instant::now();
        for i in done..done + n {
            let mut input_digest = [0u8; 32];
            input_digest[..8].copy_from_slice(&i.to_le_bytes());
            let features = [(i % 50) as i32, 100 + (i % 7) as i32, (i % 3) as i32, 4];
            let request = Request {
                input_digest,
                label: (i % 8 != 7).then(|| LABELS[(i % 8) as usize]),
                features: &features,
                client_floor_bps: None,
                static_arm: 0,
            };
            let d = e.decide(black_box(&request)).expect("decide");
            let p = e.propensity(&request, &d).expect("propensity");
            black_box(p);
            e.update(&d, &features, i % 3 != 0).expect("update");
        }
        total += start.elapsed();
        done += n;
    }
    total
}

criterion_group!(benches, bench);
criterion_main!(benches);
