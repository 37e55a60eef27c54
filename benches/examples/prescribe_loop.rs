//! A fixed loop of `prescribe` calls, for counting instructions with callgrind, which
//! is repeatable where wall-clock time on a shared machine is not:
//!
//! ```sh
//! cargo build --release -p calybris-benches --example prescribe_loop
//! valgrind --tool=callgrind target/release/examples/prescribe_loop 22 calybris
//! valgrind --tool=callgrind target/release/examples/prescribe_loop 22 calybris-core
//! ```
//!
//! Divide the "Collected" total by the number of calls (200,000) for instructions per
//! call (the loop itself adds about ten).

#[path = "../common/workload.rs"]
mod workload;

use std::hint::black_box;
use workload::{REQUESTS, pair, requests, to_core_input};

const CALLS: usize = 200_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(22);
    let which = args.next().unwrap_or_else(|| "calybris".to_owned());
    let p = pair(n);
    let ours_in = requests(p.ours.models(), false);
    let theirs_in: Vec<_> = ours_in.iter().map(to_core_input).collect();
    let mut acc = 0u64;
    for k in 0..CALLS {
        let cost = match which.as_str() {
            "calybris-core" => {
                p.theirs
                    .prescribe(black_box(theirs_in[k % REQUESTS]))
                    .estimated_cost_microunits
            }
            _ => {
                p.ours
                    .prescribe(black_box(ours_in[k % REQUESTS]))
                    .estimated_cost_microunits
            }
        };
        acc = acc.wrapping_add(cost);
    }
    println!("{which}: {CALLS} calls over {n} candidates (checksum {acc})");
}
