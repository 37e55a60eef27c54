//! The `calybris` binary: see the `calybris_cli` crate docs and docs/CLI.md.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(calybris_cli::run(std::env::args_os()))
}
