//! The `calybris` command: check an audited Calybris decision log or a decision
//! gate's directory without writing code, explain one decision, validate a policy file, and run the demo.
//!
//! This library holds the command's logic so it can be documented and unit
//! tested; the binary (`src/main.rs`) only calls [`run`]. The command-line
//! contract (outcome words, reason codes, exit codes, JSON report, anchor text,
//! file formats) is written down in `docs/CLI.md` and pinned by the tests in
//! `tests/`, which run the built binary.
//!
//! What it deliberately does not do: write or repair a log (verification is
//! read-only and takes no lock), trust anything in the log that it has not
//! re-derived (every digest is recomputed and every decision replayed), or print
//! a stack trace: every failure is one line on stderr and a non-zero exit code.
//!
//! # Subcommands
//! - `verify FILE [--key-file F] [--anchor A] [--json]`: VERIFIED (0), DIVERGED
//!   (1) or ERROR (2) with a reason code, a sequence number and a byte offset;
//!   see [`report`]. `FILE` may be a gate directory: then [`gate`] runs
//!   `calybris_gate::verify_dir`, books included.
//! - `inspect FILE`: records, policies, sequence range, counts by action and
//!   reason (and, for a gate log, by record kind and budget outcome).
//! - `show FILE --seq N`: one decision with its explanation, or a gate record.
//! - `explain --policy P --request R` and `policy check P`: decide or validate
//!   from JSON files ([`files`]).
//! - `demo [--requests N] [--dir DIR]`: an LLM-routing workload through the
//!   decision gate into one gate directory, verified at the end with `verify_dir`.
//! - `serve --config FILE | --demo [--listen ADDR] [--dir DIR]`: the OpenAI-compatible
//!   gateway ([`serve`]).
//!
//! # Example
//! ```
//! use calybris_cli::report::{anchor_text, parse_anchor};
//! use calybris::wal::WalAnchor;
//!
//! let anchor = WalAnchor { next_sequence: 3, head_hash: [7; 32] };
//! assert_eq!(parse_anchor(&anchor_text(&anchor)), Ok(anchor));
//! // The exit code of a run is what `run` returns.
//! assert_eq!(calybris_cli::run(["calybris", "--version"]), 0);
//! ```
//!
//! # Features
//! None.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod commands;
pub mod demo;
pub mod files;
pub mod gate;
pub mod render;
pub mod report;
pub mod scan;
pub mod serve;

/// Writes text to stdout. A closed pipe (`calybris inspect | head`) is not an
/// error worth a panic, so write failures are ignored.
pub(crate) fn stdout_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes one line to stderr.
pub(crate) fn stderr_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

#[derive(Debug, Parser)]
#[command(
    name = "calybris",
    version,
    about = "Verify, inspect and explain audited Calybris decision logs; run the demo",
    long_about = None,
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct LogOptions {
    /// A log segment file (*.cwal), a segment directory, or a gate directory (holding log/).
    file: PathBuf,
    /// File holding the HMAC key of a keyed log, its bytes used as they are.
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
    /// Trusted anchor NEXT_SEQUENCE:HEAD_HASH_HEX (as printed by a VERIFIED line).
    #[arg(long, value_name = "A")]
    anchor: Option<String>,
    /// Trusted start of a retained gate log, NEXT_SEQUENCE:HEAD_HASH_HEX (the gate
    /// writes it to DIR/log-start.anchor when it retires old segments).
    #[arg(long, value_name = "A")]
    start_anchor: Option<String>,
}

impl LogOptions {
    fn into_args(self) -> commands::LogArgs {
        commands::LogArgs {
            file: self.file,
            key_file: self.key_file,
            anchor: self.anchor,
            start_anchor: self.start_anchor,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the chain and replay every decision against its policy from the log
    /// (for a gate directory, also rebuild and check the budget books).
    Verify {
        #[command(flatten)]
        log: LogOptions,
        /// Print one JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Records, policies, sequence range, decision counts by action and reason.
    Inspect {
        #[command(flatten)]
        log: LogOptions,
    },
    /// One record; for a decision, its explanation.
    Show {
        #[command(flatten)]
        log: LogOptions,
        /// Sequence number of the record.
        #[arg(long, value_name = "N")]
        seq: u64,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decide one request from JSON files and explain the decision.
    Explain {
        /// Policy file (docs/schemas/policy.schema.json).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Request file (docs/schemas/request.schema.json).
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Route a realistic LLM workload through the gate into one gate directory (one
    /// log), verify it, and print a summary.
    Demo {
        /// Requests to route.
        #[arg(long, value_name = "N", default_value_t = demo::DEFAULT_REQUESTS)]
        requests: u64,
        /// The gate directory (created; must not hold a demo log yet).
        #[arg(long, value_name = "DIR", default_value = demo::DEFAULT_DIR)]
        dir: PathBuf,
        /// Delete a previous demo's DIR/log first.
        #[arg(long)]
        fresh: bool,
    },
    /// Serve the OpenAI-compatible gateway (budgets reserved through the gate, every
    /// routing decision and execution logged) from a TOML file, or `--demo` with mock
    /// providers on loopback.
    Serve {
        /// The gateway's TOML configuration.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Built-in mock providers on loopback and a demo tenant.
        #[arg(long)]
        demo: bool,
        /// Address to listen on (overrides the file's).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// The gate directory (overrides the file's).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy file and print its digest.
    Check {
        /// Policy file (docs/schemas/policy.schema.json).
        file: PathBuf,
    },
}

/// Runs the command line `args` (the program name first) and returns the exit
/// code. Never panics on any input.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    match cli.command {
        Command::Verify { log, json } => commands::verify(&log.into_args(), json),
        Command::Inspect { log } => commands::inspect(&log.into_args()),
        Command::Show { log, seq, json } => commands::show(&log.into_args(), seq, json),
        Command::Explain {
            policy,
            request,
            json,
        } => commands::explain(&policy, &request, json),
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => commands::policy_check(&file),
        Command::Demo {
            requests,
            dir,
            fresh,
        } => demo::run(requests, &dir, fresh),
        Command::Serve {
            config,
            demo,
            listen,
            dir,
        } => serve::run(config.as_deref(), demo, listen.as_deref(), dir.as_deref()),
    }
}

/// Help and version go to stdout with exit 0; a usage error is one line on
/// stderr with exit 2.
fn usage_error(error: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            stdout_text(&error.to_string());
            report::EXIT_OK
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            stderr_line(&error.to_string());
            report::EXIT_ERROR
        }
        _ => {
            // clap's message runs over several lines (the problem, then usage);
            // keep the problem, on one line.
            let text = error.to_string();
            let problem: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|line| !line.starts_with("Usage:"))
                .filter(|line| !line.is_empty() && !line.starts_with("tip:"))
                .collect();
            let problem = problem.join(" ");
            let problem = problem.trim_start_matches("error: ");
            stderr_line(&format!("ERROR USAGE: {problem} (see `calybris --help`)"));
            report::EXIT_ERROR
        }
    }
}
