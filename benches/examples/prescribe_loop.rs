//! A fixed loop of kernel calls, for counting instructions with callgrind, which is
//! repeatable where wall-clock time on a shared machine is not:
//!
//! ```sh
//! cargo build --release -p calybris-benches --example prescribe_loop
//! valgrind --tool=callgrind target/release/examples/prescribe_loop 22 calybris
//! valgrind --tool=callgrind target/release/examples/prescribe_loop 22 calybris-core
//! ```
//!
//! Arguments: the catalog size, then what to run, then the workload.
//! - what: `calybris` (`prescribe` on the owned snapshot), `calybris-view` (the same
//!   policy through the borrowed `PolicyView`, the scalar reference loop),
//!   `calybris-batch` (`prescribe_batch_into` over bursts of 1,024 requests),
//!   `calybris-verify` (`verify_decision` of a recorded decision), and the same four
//!   prefixed `calybris-core` for the published crate where it has them
//!   (`calybris-core`, `calybris-core-batch` — a loop of `prescribe`, as it has no batch
//!   entry point — and `calybris-core-verify`);
//! - workload: `llm` (default: `benches/common/workload.rs`, sizes 4, 22, 64),
//!   `llm-reject` (the same with every budget at 1 microunit, as `prescribe_reject`) or
//!   `stress` (`benches/common/stress.rs`, sizes 9, 40, 128).
//!
//! Every variant makes 204,800 calls (200 bursts of 1,024 for the batches); divide the
//! "Collected" total by 204,800 for instructions per decision (this loop adds about 45
//! on either side, most of it matching the mode string on every call).

#[path = "../common/workload.rs"]
mod workload;

#[path = "../common/stress.rs"]
mod stress;

use calybris_core::verify as core_v;
use calybris_kernel::KernelDecision;
use std::hint::black_box;
use workload::to_core_input;

const CALLS: usize = 204_800;
const BURST: usize = 1_024;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(22);
    let which = args.next().unwrap_or_else(|| "calybris".to_owned());
    let load = args.next().unwrap_or_else(|| "llm".to_owned());
    let (p, ours_in) = match load.as_str() {
        "stress" => {
            let p = stress::pair(n);
            let i = stress::requests(p.ours.models());
            (p, i)
        }
        load => {
            let p = workload::pair(n);
            let i = workload::requests(p.ours.models(), load == "llm-reject");
            (p, i)
        }
    };
    let theirs_in: Vec<_> = ours_in.iter().map(to_core_input).collect();
    let cycle = ours_in.len();
    let ours_out: Vec<_> = ours_in.iter().map(|i| p.ours.prescribe(*i)).collect();
    let theirs_out: Vec<_> = theirs_in.iter().map(|i| p.theirs.prescribe(*i)).collect();
    let view = p.ours.view();
    let burst: Vec<_> = (0..BURST).map(|k| ours_in[k % cycle]).collect();
    let theirs_burst: Vec<_> = burst.iter().map(to_core_input).collect();
    let mut out = vec![ours_out[0]; BURST];
    let mut acc = 0u64;
    match which.as_str() {
        "calybris-batch" => {
            for _ in 0..CALLS / BURST {
                let done = p.ours.prescribe_batch_into(black_box(&burst), &mut out);
                acc = acc.wrapping_add(checksum(&out[..done]));
            }
        }
        "calybris-core-batch" => {
            for _ in 0..CALLS / BURST {
                for i in black_box(&theirs_burst) {
                    acc = acc.wrapping_add(p.theirs.prescribe(*i).estimated_cost_microunits);
                }
            }
        }
        _ => {
            for k in 0..CALLS {
                let j = k % cycle;
                acc = acc.wrapping_add(match which.as_str() {
                    "calybris-core" => {
                        p.theirs
                            .prescribe(black_box(theirs_in[j]))
                            .estimated_cost_microunits
                    }
                    "calybris-view" => {
                        view.prescribe(black_box(ours_in[j]))
                            .estimated_cost_microunits
                    }
                    "calybris-verify" => u64::from(
                        p.ours
                            .verify_decision(black_box(ours_in[j]), &ours_out[j])
                            .is_ok(),
                    ),
                    "calybris-core-verify" => u64::from(matches!(
                        core_v::verify_decision(&p.theirs, black_box(theirs_in[j]), &theirs_out[j]),
                        core_v::VerifyResult::Valid
                    )),
                    _ => {
                        p.ours
                            .prescribe(black_box(ours_in[j]))
                            .estimated_cost_microunits
                    }
                });
            }
        }
    }
    println!("{which} ({load}): {CALLS} decisions over {n} candidates (checksum {acc})");
}

fn checksum(decisions: &[KernelDecision]) -> u64 {
    decisions
        .iter()
        .fold(0, |a, d| a.wrapping_add(d.estimated_cost_microunits))
}
