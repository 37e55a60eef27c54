//! The `calybris` binary: see the `calybris_cli` crate docs and docs/CLI.md.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::process::ExitCode;

/// mimalloc as the binary's allocator (default feature `mimalloc`; the library crates
/// never choose an allocator): `calybris serve` allocates per request, and the
/// gateway's load figures in docs/BENCHMARKS.md were measured with it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ExitCode::from(calybris_cli::run(std::env::args_os()))
}
