//! The durable-producer loop shared by the wal and gate benches: threads that each
//! start operations with a bounded number in flight, retiring the oldest when the
//! window is full, and the latency percentiles of what they measured.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// `threads` threads each start `per_thread` operations (`start(thread, k)`), keeping
/// at most `in_flight` outstanding: when the window is full the oldest is retired
/// (`retire(operation, started_at)`, which waits for it to be durable and returns its
/// start-to-acknowledgement latency in nanoseconds), and the rest are retired at the
/// end. Returns the time until every operation is retired and every latency.
pub fn producers<T>(
    threads: u64,
    per_thread: u64,
    in_flight: usize,
    start: impl Fn(u64, u64) -> T + Sync,
    retire: impl Fn(T, Instant) -> u64 + Sync,
) -> (Duration, Vec<u64>) {
    assert!(in_flight > 0, "at least one operation in flight");
    let begun = Instant::now();
    let latencies: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (start, retire) = (&start, &retire);
                scope.spawn(move || {
                    let mut latencies = Vec::with_capacity(per_thread as usize);
                    let mut flight = VecDeque::with_capacity(in_flight);
                    for k in 0..per_thread {
                        let t0 = Instant::now();
                        flight.push_back((start(thread, k), t0));
                        if flight.len() >= in_flight {
                            let (operation, t0) = flight.pop_front().expect("in flight");
                            latencies.push(retire(operation, t0));
                        }
                    }
                    for (operation, t0) in flight {
                        latencies.push(retire(operation, t0));
                    }
                    latencies
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("producer"))
            .collect()
    });
    (begun.elapsed(), latencies)
}

/// The `per_mille`th value of `sorted` (ascending; 500 = the median).
pub fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    sorted[(sorted.len() * per_mille / 1_000).min(sorted.len() - 1)]
}

/// Nanoseconds since `t0`.
pub fn nanos_since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
