//! Prints the man page of the `calybris` command (roff) on stdout, generated from
//! its clap definition by `calybris_cli::man::man_page()`. `cargo xtask man` runs
//! this and writes the output to `docs/calybris.1`, so xtask itself needs no
//! dependency. Needs feature `man`:
//!
//! ```sh
//! cargo run -p calybris-cli --features man --example man > docs/calybris.1
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let written = calybris_cli::man::man_page().and_then(|page| {
        let mut out = std::io::stdout().lock();
        out.write_all(&page)?;
        out.flush()
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ERROR: cannot write the man page: {error}");
            ExitCode::FAILURE
        }
    }
}
