//! `calybris demo` (placeholder until the gate lands).

use std::path::Path;

/// Requests routed when `--requests` is not given.
pub const DEFAULT_REQUESTS: u64 = 20_000;
/// Directory used when `--dir` is not given.
pub const DEFAULT_DIR: &str = "./calybris-demo";

/// Runs the demo; returns the exit code.
pub fn run(_requests: u64, _dir: &Path) -> u8 {
    2
}
