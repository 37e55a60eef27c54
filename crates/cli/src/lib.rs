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
//! - `inspect FILE [--json]`: records, policies, sequence range, counts by action and
//!   reason (and, for a gate log, by record kind and budget outcome).
//! - `show FILE --seq N`: one decision with its explanation, or a gate record.
//! - `explain --policy P --request R` and `policy check P`: decide or validate
//!   from JSON files ([`files`]) or human policy files in TOML or JSON, by name
//!   ([`policy_file`]).
//! - `demo [--requests N] [--dir DIR]`: an LLM-routing workload through the
//!   decision gate into one gate directory, verified at the end with `verify_dir`.
//! - `regret DIR`, `shadow DIR [--candidate P]`, `promote DIR --candidate P --report R`,
//!   `rollback DIR`: off-policy evaluation of a gate directory's outcomes and the
//!   promotion gate ([`ope`], [`promotion`], [`ope_cmd`]).
//! - `counterfactual DIR --seq N`: the winner's margin and the nearest change of each
//!   numeric request field that changes a logged decision ([`counterfactual`]).
//! - `simulate [--requests N] [--seed S] [--dir DIR]`: a routing simulation on the
//!   real catalog through the gate with the adaptive engine ([`simulate`]).
//! - `completions SHELL`: a shell completion script generated from [`command`],
//!   the clap definition (which `cargo xtask man` also turns into `docs/calybris.1`).
//! - `serve --config FILE | --demo [--listen ADDR] [--dir DIR]`: the OpenAI-compatible
//!   gateway ([`serve`]).
//! - `replay DIR --seq N [--allow-network] [--allow-side-effects] [--config FILE | --demo]
//!   [--archive DIR] [--json]`: re-derive, and where allowed re-execute, one gateway
//!   request ([`replay`]).
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
//! - `man` (off): `man::man_page()`, the man page rendered from [`command`] with
//!   `clap_mangen` (what `cargo xtask man` writes to `docs/calybris.1`).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod adaptive_text;
pub mod commands;
pub mod counterfactual;
pub mod demo;
pub mod files;
pub mod gate;
pub mod human;
#[cfg(feature = "man")]
#[cfg_attr(docsrs, doc(cfg(feature = "man")))]
pub mod man;
pub mod ope;
pub mod ope_cmd;
pub mod policy_file;
pub mod promotion;
pub mod render;
pub mod replay;
pub mod report;
pub mod scan;
pub mod serve;
pub mod simulate;
pub mod tlog;

/// Writes text to stdout. A closed pipe (`calybris inspect | head`) is not an
/// error worth a panic, so write failures are ignored. Colour escape codes (see
/// [`human::paint_outcome`]) are removed unless stdout is a colour terminal and
/// `NO_COLOR` is not set (`CLICOLOR_FORCE=1` keeps them).
pub(crate) fn stdout_text(text: &str) {
    let mut out = anstream::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes one line to stderr, its outcome word in colour under the same rules as
/// [`stdout_text`].
pub(crate) fn stderr_line(line: &str) {
    let mut err = anstream::stderr().lock();
    let _ = writeln!(err, "{}", human::paint_outcome(line));
}

/// The clap definition of the whole command line, for shell completions
/// (`calybris completions SHELL`) and the man page (`cargo xtask man`).
///
/// ```
/// let command = calybris_cli::command();
/// assert_eq!(command.get_name(), "calybris");
/// assert!(command.get_subcommands().any(|sub| sub.get_name() == "verify"));
/// ```
#[must_use]
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// The exit codes of the commands that check a log, for `--help`.
macro_rules! log_exit_codes {
    () => {
        "Exit codes:\n  0  VERIFIED: the log verifies (and the command did its job)\n  1  DIVERGED: the log is readable but is not what was written\n  2  ERROR: the log could not be checked (unreadable, unknown format, wrong key), a bad argument"
    };
}

/// The exit codes of the commands that read JSON files, for `--help`.
macro_rules! file_exit_codes {
    () => {
        "Exit codes:\n  0  success (VALID, or the explanation was printed)\n  1  INVALID: the file is not a valid policy or request\n  2  ERROR: the file cannot be read, or a bad argument"
    };
}

/// `--help` text after the options: one example, then the exit codes.
macro_rules! after {
    ($example:literal, $codes:expr) => {
        concat!("Example:\n  ", $example, "\n\n", $codes)
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "calybris",
    version,
    about = "Verify, inspect and explain audited Calybris decision logs; run the demo",
    long_about = None,
    after_help = "Exit codes (every subcommand):\n  0  success (VERIFIED, VALID, the output asked for)\n  1  DIVERGED (a log) or INVALID (a JSON file): read, and not what it should be\n  2  ERROR: the job could not be done (unreadable, unknown format, wrong key, usage)\n\nEach subcommand's --help shows an example. The contract: docs/CLI.md; the manual: man calybris.",
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
    /// File holding a gate's holdout key: `verify` then recomputes every decision's
    /// holdout assignment (without it they are only counted).
    #[arg(long, value_name = "F")]
    holdout_key_file: Option<PathBuf>,
}

impl LogOptions {
    fn into_args(self) -> commands::LogArgs {
        commands::LogArgs {
            file: self.file,
            key_file: self.key_file,
            anchor: self.anchor,
            start_anchor: self.start_anchor,
            holdout_key_file: self.holdout_key_file,
        }
    }
}

/// The subcommands. A new subcommand is a new variant here (with its `after_help`:
/// an example and its exit codes) and one arm in [`run`]; its logic lives in its
/// own module.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check the chain and replay every decision against its policy from the log
    /// (for a gate directory, also rebuild and check the budget books).
    #[command(after_help = after!(
        "calybris verify ./calybris-demo --anchor 38160:67fd942d274feff9670c521bf01102263b51602cf4b948456f1af37994b7041a",
        log_exit_codes!()
    ))]
    Verify {
        #[command(flatten)]
        log: LogOptions,
        /// Print one JSON report on stdout (docs/schemas/verify-report.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// Records, policies, sequence range, decision counts by action and reason.
    #[command(after_help = after!("calybris inspect ./calybris-demo --json", log_exit_codes!()))]
    Inspect {
        #[command(flatten)]
        log: LogOptions,
        /// Print one JSON report on stdout (docs/schemas/inspect-report.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// One record; for a decision, its explanation.
    #[command(after_help = after!(
        "calybris show ./calybris-demo --seq 2",
        concat!(log_exit_codes!(), "; also a sequence number the log does not hold (NOT_FOUND)")
    ))]
    Show {
        #[command(flatten)]
        log: LogOptions,
        /// Sequence number of the record.
        #[arg(long, value_name = "N")]
        seq: u64,
        /// Print the explanation as JSON, on one line.
        #[arg(long)]
        json: bool,
    },
    /// Decide one request from JSON files and explain the decision.
    #[command(after_help = after!(
        "calybris explain --policy crates/cli/examples-data/policy.json --request crates/cli/examples-data/request.json",
        file_exit_codes!()
    ))]
    Explain {
        /// Policy file: TOML or JSON by name (docs/schemas/policy-file.schema.json), or
        /// the kernel's numeric JSON (docs/schemas/policy.schema.json).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Request file (docs/schemas/request.schema.json).
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        /// Print the explanation as JSON, on one line.
        #[arg(long)]
        json: bool,
    },
    /// Policy files.
    #[command(after_help = after!(
        "calybris policy check crates/cli/examples-data/policy.json",
        file_exit_codes!()
    ))]
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Route a realistic LLM workload through the gate into one gate directory (one
    /// log), verify it, and print a summary.
    #[command(after_help = after!(
        "calybris demo --requests 20000 --dir ./calybris-demo --fresh",
        "Exit codes:\n  0  the demo ran and its log verified\n  2  ERROR: a bad argument, a directory that already holds a demo, or the gate failed"
    ))]
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
        /// Print the summary as one JSON object on one line.
        #[arg(long)]
        json: bool,
    },
    /// Route a seeded workload over the real catalog through the gate with the
    /// adaptive engine, comparing static, random, epsilon-greedy, Thompson and oracle
    /// routing: regret, cost, success, plots (SVG) and one verified gate directory
    /// per strategy (docs/ADAPT.md, "Simulation").
    #[command(after_help = after!(
        "calybris simulate --requests 100000 --seed 0x5eedca1b20260ada --dir ./calybris-simulate --fresh",
        "Exit codes:\n  0  the simulation ran and every strategy's log verified (the targets are reported, not enforced)\n  2  ERROR: a bad argument, a directory that already holds a run, an unreadable catalog, or the gate failed"
    ))]
    Simulate {
        /// Requests to route (at least 1,000).
        #[arg(long, value_name = "N", default_value_t = simulate::DEFAULT_REQUESTS)]
        requests: u64,
        /// The seed of the workload, the outcomes and the engine key (decimal or 0x hex).
        #[arg(long, value_name = "SEED", default_value = "0x5eedca1b20260ada", value_parser = parse_seed)]
        seed: u64,
        /// The output directory: DIR/<strategy>/ gate directories, plots, summary.json.
        #[arg(long, value_name = "DIR", default_value = simulate::DEFAULT_DIR)]
        dir: PathBuf,
        /// The catalog policy file (TOML).
        #[arg(long, value_name = "FILE", default_value = simulate::DEFAULT_CATALOG)]
        catalog: PathBuf,
        /// Delete the logs of a previous run in DIR first.
        #[arg(long)]
        fresh: bool,
        /// Print the summary as one JSON object on one line.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script on stdout.
    #[command(after_help = after!(
        "calybris completions bash > ~/.local/share/bash-completion/completions/calybris",
        "Exit codes:\n  0  the script was printed\n  2  ERROR: an unknown shell (a usage error)"
    ))]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Estimated regret per tenant and selected model from the outcomes bound to
    /// decisions, and the calibration of the kernel's expected utility.
    #[command(after_help = after!(
        "calybris regret ./calybris-demo --json",
        "Exit codes:\n  0  the report was printed\n  2  ERROR: the directory does not verify (LOG_NOT_VERIFIED), holds no outcome (NO_OUTCOMES), or a bad argument"
    ))]
    Regret {
        /// The gate directory.
        dir: PathBuf,
        #[command(flatten)]
        keys: GateKeys,
        /// Print one JSON object on one line.
        #[arg(long)]
        json: bool,
    },
    /// Replay every logged request under a candidate policy, count the mismatches,
    /// estimate its value and judge it for promotion.
    #[command(after_help = after!(
        "calybris shadow ./calybris-demo --candidate candidate.toml --json > report.json",
        "Exit codes:\n  0  the report was printed (whether or not the candidate is promotable)\n  1  INVALID: the candidate policy file is invalid\n  2  ERROR: the directory does not verify (LOG_NOT_VERIFIED), an unreadable file, or a bad argument"
    ))]
    Shadow {
        /// The gate directory.
        dir: PathBuf,
        #[command(flatten)]
        criteria: CriteriaArgs,
        #[command(flatten)]
        keys: GateKeys,
        /// Print one JSON object on one line (what `promote --report` reads).
        #[arg(long)]
        json: bool,
    },
    /// Install a candidate policy when its promotion report passes and its digest
    /// matches the report recomputed from the directory.
    #[command(after_help = after!(
        "calybris promote ./calybris-demo --candidate candidate.toml --report report.json",
        "Exit codes:\n  0  PROMOTED: installed, and the promotion recorded in the log\n  1  REFUSED: the report does not pass (NOT_PROMOTABLE) or its digest does not match (REPORT_MISMATCH); INVALID: a bad file\n  2  ERROR: the directory does not verify, the gate failed (GATE_FAILED), or a bad argument"
    ))]
    Promote {
        /// The gate directory.
        dir: PathBuf,
        /// The candidate policy: TOML or JSON by name, or the kernel's numeric JSON.
        #[arg(long, value_name = "POLICY")]
        candidate: PathBuf,
        /// The report (`shadow --json` output).
        #[arg(long, value_name = "R")]
        report: PathBuf,
        #[command(flatten)]
        keys: GateKeys,
        /// Print the promotion recorded as one JSON object on one line.
        #[arg(long)]
        json: bool,
    },
    /// Reinstall the policy in force before the last promotion.
    #[command(after_help = after!(
        "calybris rollback ./calybris-demo",
        "Exit codes:\n  0  ROLLED_BACK: reinstalled, and recorded in the log\n  2  ERROR: nothing to roll back (NOTHING_TO_ROLL_BACK), the directory does not verify, or the gate failed"
    ))]
    Rollback {
        /// The gate directory.
        dir: PathBuf,
        #[command(flatten)]
        keys: GateKeys,
        /// Print the rollback recorded as one JSON object on one line.
        #[arg(long)]
        json: bool,
    },
    /// For one logged decision: the margin by which the winner won, and for each
    /// numeric request field the nearest value that changes the decision.
    #[command(after_help = after!(
        "calybris counterfactual ./calybris-demo --seq 5",
        "Exit codes:\n  0  the answer was printed\n  2  ERROR: the directory does not verify (LOG_NOT_VERIFIED), the record is not a decision (NOT_FOUND), or a bad argument"
    ))]
    Counterfactual {
        /// The gate directory.
        dir: PathBuf,
        /// Sequence number of the decision record.
        #[arg(long, value_name = "N")]
        seq: u64,
        #[command(flatten)]
        keys: GateKeys,
        /// Print one JSON object on one line.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Tlog(tlog::TlogCommand),
    /// Re-derive one request the gateway logged (the kernel re-run under the logged
    /// policy, the execution record and the settlement, the request's hash) and, for a
    /// local deterministic provider and when allowed, re-execute it and compare the
    /// answer's hash.
    #[command(after_help = after!(
        "calybris replay ./calybris-serve-demo --seq 5 --demo --allow-side-effects --allow-network",
        "Exit codes:\n  0  VERIFIED: everything the request did re-derives and matches the log\n  1  DIVERGED: something re-derived differs from the log (INPUT_HASH_MISMATCH, OUTPUT_HASH_MISMATCH, DECISION_CORE_MISMATCH, EDR_HASH_MISMATCH, ENVIRONMENT_MISMATCH)\n  2  ERROR: the replay could not be done (REPLAY_NOT_REPLAYABLE, INPUT_POINTER_MISSING, PROVIDER_NOT_SUPPORTED, EXECUTION_ERROR), or a bad argument\n  3  REFUSED: re-executing needs --allow-side-effects (SIDE_EFFECTS_NOT_ALLOWED) or --allow-network (NETWORK_NOT_ALLOWED)"
    ))]
    Replay {
        /// The gate directory.
        dir: PathBuf,
        /// Sequence number of the decision record, or of its execution record.
        #[arg(long, value_name = "N")]
        seq: u64,
        /// Allow re-executing to open connections (even to loopback).
        #[arg(long)]
        allow_network: bool,
        /// Allow re-executing to call a provider.
        #[arg(long)]
        allow_side_effects: bool,
        /// The gateway configuration that served (its providers and policy).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The gateway ran as `calybris serve --demo` (its mock providers).
        #[arg(long)]
        demo: bool,
        /// The request-body archive (default: the configuration's
        /// `request_archive`, else DIR/request-archive).
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
        /// File holding the log's HMAC key (a gateway configured with
        /// `[server] log_key_file`), as for `verify --key-file`.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// Print one JSON object on one line.
        #[arg(long)]
        json: bool,
    },
    #[command(after_help = after!(
        "calybris serve --demo --listen 127.0.0.1:8080",
        "Exit codes:\n  0  the gateway stopped cleanly (Ctrl-C)\n  2  ERROR: the configuration or the gate directory could not be opened, or a usage error"
    ))]
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

/// The candidate and the promotion criteria of `shadow`.
#[derive(Debug, Args)]
struct CriteriaArgs {
    /// The candidate policy: TOML or JSON by name, or the kernel's numeric JSON.
    /// Without it, only the live shadow results recorded in the log are summarised.
    #[arg(long, value_name = "POLICY")]
    candidate: Option<PathBuf>,
    /// Fewest supported rows (the effective sample size).
    #[arg(long, value_name = "N", default_value_t = 30)]
    min_ess: u64,
    /// Least lower 95 % bound of the gain per decision, in microunits.
    #[arg(
        long,
        value_name = "M",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    margin: i64,
    /// Most decisions decided otherwise, per mille.
    #[arg(long, value_name = "K", default_value_t = 200)]
    max_mismatch_per_mille: u64,
}

/// The keys of a gate directory, for the commands that read one.
#[derive(Debug, Args)]
struct GateKeys {
    /// File holding the HMAC key of a keyed gate log, its bytes used as they are.
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
    /// File holding the gate's holdout key: every decision's holdout assignment is
    /// then recomputed (without it, only counted).
    #[arg(long, value_name = "F")]
    holdout_key_file: Option<PathBuf>,
}

impl GateKeys {
    fn into_keys(self) -> ope_cmd::Keys {
        ope_cmd::Keys {
            key_file: self.key_file,
            holdout_key_file: self.holdout_key_file,
        }
    }
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy file and print its digest (and, for a file with names, its
    /// models by name).
    #[command(after_help = after!(
        "calybris policy check crates/cli/examples-data/policy.json",
        file_exit_codes!()
    ))]
    Check {
        /// Policy file: TOML or JSON by name (docs/schemas/policy-file.schema.json), or
        /// the kernel's numeric JSON (docs/schemas/policy.schema.json).
        file: PathBuf,
        /// Print the result as one JSON object on one line.
        #[arg(long)]
        json: bool,
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
        Command::Inspect { log, json } => commands::inspect(&log.into_args(), json),
        Command::Show { log, seq, json } => commands::show(&log.into_args(), seq, json),
        Command::Explain {
            policy,
            request,
            json,
        } => policy_file::explain(&policy, &request, json),
        Command::Policy {
            command: PolicyCommand::Check { file, json },
        } => policy_file::policy_check(&file, json),
        Command::Demo {
            requests,
            dir,
            fresh,
            json,
        } => demo::run(requests, &dir, fresh, json),
        Command::Simulate {
            requests,
            seed,
            dir,
            catalog,
            fresh,
            json,
        } => simulate::run(&simulate::Options {
            requests,
            seed,
            dir,
            catalog,
            fresh,
            json,
        }),
        Command::Completions { shell } => completions(shell),
        Command::Regret { dir, keys, json } => ope_cmd::regret(&dir, &keys.into_keys(), json),
        Command::Shadow {
            dir,
            criteria,
            keys,
            json,
        } => ope_cmd::shadow(
            &dir,
            criteria.candidate.as_deref(),
            promotion::Criteria {
                min_ess: criteria.min_ess,
                margin_microunits: criteria.margin,
                max_mismatch_per_mille: criteria.max_mismatch_per_mille,
            },
            &keys.into_keys(),
            json,
        ),
        Command::Promote {
            dir,
            candidate,
            report,
            keys,
            json,
        } => ope_cmd::promote(&dir, &candidate, &report, &keys.into_keys(), json),
        Command::Rollback { dir, keys, json } => ope_cmd::rollback(&dir, &keys.into_keys(), json),
        Command::Counterfactual {
            dir,
            seq,
            keys,
            json,
        } => counterfactual::run(&dir, seq, &keys.into_keys(), json),
        Command::Tlog(command) => tlog::run(command),
        Command::Serve {
            config,
            demo,
            listen,
            dir,
        } => serve::run(config.as_deref(), demo, listen.as_deref(), dir.as_deref()),
        Command::Replay {
            dir,
            seq,
            allow_network,
            allow_side_effects,
            config,
            demo,
            archive,
            key_file,
            json,
        } => replay::run(&replay::Options {
            dir,
            seq,
            allow_network,
            allow_side_effects,
            json,
            config,
            demo,
            archive,
            key_file,
        }),
    }
}

/// A seed in decimal or `0x` hexadecimal.
fn parse_seed(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.replace('_', "").parse(),
    };
    parsed.map_err(|e| format!("not a 64-bit seed: {e}"))
}

/// `calybris completions SHELL`: the completion script, generated from [`command`].
fn completions(shell: clap_complete::Shell) -> u8 {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command(), "calybris", &mut script);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&script);
    let _ = out.flush();
    report::EXIT_OK
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
            stderr_line(&format!(
                "{} {}: {problem} (see `calybris --help`)",
                report::Outcome::Error.word(),
                report::Code::Usage.code()
            ));
            report::EXIT_ERROR
        }
    }
}
