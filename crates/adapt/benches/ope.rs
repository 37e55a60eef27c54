//! Throughput of every estimator over 10^6 synthetic logged rounds (one core).
//!
//! The rounds come from a fixed-seed xorshift generator, so every run measures the
//! same log. Target (DESIGN.md): at least 20 M rounds/s per estimator.
//!
//! `cargo bench -p calybris-adapt --bench ope`.

// criterion's group macros generate public functions without docs.
#![allow(missing_docs)]

use calybris_adapt::ope::{
    BootstrapKey, Estimator, EstimatorConfig, LoggedRound, Probability, bootstrap, estimate,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

/// Rounds per synthetic log.
const ROUNDS: usize = 1_000_000;

/// Rounds and replicates of the bootstrap group: 10^6 resampled rounds in all.
const BOOTSTRAP_ROUNDS: usize = 10_000;
const BOOTSTRAP_REPLICATES: u32 = 100;

/// A fixed-seed xorshift64* generator: deterministic synthetic data, no OS randomness.
struct XorShift(u64);

impl XorShift {
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn synthetic_log(rounds: usize) -> Vec<LoggedRound> {
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    (0..rounds)
        .map(|_| {
            let pi_b = 0.01 + 0.99 * rng.next_unit();
            let pi_e = rng.next_unit();
            let q = rng.next_unit();
            let reward = if rng.next_unit() < q { 1.0 } else { 0.0 };
            LoggedRound::new(
                reward,
                Probability::float(pi_b),
                Probability::float(pi_e),
                q,
                0.5 * q + 0.25,
            )
        })
        .collect()
}

fn estimators(c: &mut Criterion) {
    let rows = synthetic_log(ROUNDS);
    let config = EstimatorConfig::default();
    let mut group = c.benchmark_group("ope_1m_rounds");
    group.throughput(Throughput::Elements(ROUNDS as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for estimator in Estimator::ALL {
        group.bench_function(estimator.name(), |b| {
            b.iter(|| estimate(black_box(&rows), estimator, &config))
        });
    }
    group.finish();
}

/// The keyed bootstrap, timed per resampled round (index draw plus summation).
fn bootstraps(c: &mut Criterion) {
    let rows = synthetic_log(BOOTSTRAP_ROUNDS);
    let config = EstimatorConfig::default();
    let key = BootstrapKey::from_bytes([0x5A; 32]);
    let mut group = c.benchmark_group("ope_bootstrap_10k_rounds_100_replicates");
    group.throughput(Throughput::Elements(
        BOOTSTRAP_ROUNDS as u64 * u64::from(BOOTSTRAP_REPLICATES),
    ));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for estimator in [Estimator::Dr, Estimator::SnDr] {
        group.bench_function(estimator.name(), |b| {
            b.iter(|| {
                bootstrap(
                    black_box(&rows),
                    estimator,
                    &config,
                    &key,
                    BOOTSTRAP_REPLICATES,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, estimators, bootstraps);
criterion_main!(benches);
