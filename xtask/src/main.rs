//! Developer tasks of the Calybris workspace, run as `cargo xtask <task>`.
//!
//! `cargo xtask ci` is the one gate: it runs every check in order and stops at the
//! first failure. CI (`.ci/run`, `.github/workflows/ci.yml`) only calls it, so a green
//! local run means a green CI run. The other tasks run one part on its own.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod catalog;

/// The bare-metal target the `no_std` crates must build for.
const EMBEDDED_TARGET: &str = "thumbv7em-none-eabihf";
/// The crates that must stay `no_std`.
const NO_STD_CRATES: [&str; 2] = ["calybris-kernel", "calybris-digest"];
/// Loom's preemption bound in CI: enough to find ordering bugs, small enough to finish.
const LOOM_MAX_PREEMPTIONS: &str = "2";
/// Seconds each fuzz target runs in the CI smoke run.
const FUZZ_SMOKE_SECONDS: u32 = 20;
/// The examples `ci` runs so they cannot rot: (package, example, features).
const EXAMPLES: [(&str, &str, &str); 4] = [
    ("calybris", "quickstart", ""),
    ("calybris", "llm_routing", "gate"),
    ("calybris", "pretrade_guard", "gate"),
    ("calybris", "replay_audit", "gate"),
];
/// The oldest toolchain each published crate builds on, as measured, with the cargo
/// arguments that select it: (toolchain, package, features arguments). Each package's
/// `rust-version` says the same; what sets it is named in a comment.
const MSRV_BUILDS: [(&str, &str, &[&str]); 15] = [
    // `core::hint::select_unpredictable` (1.88); no dependencies.
    ("1.88", "calybris-kernel", &["--no-default-features"]),
    ("1.88", "calybris-kernel", &["--all-features"]),
    // `sha2` 0.11 declares 1.88 (it uses `slice::as_chunks`).
    ("1.88", "calybris-digest", &["--no-default-features"]),
    ("1.88", "calybris-digest", &["--all-features"]),
    // Builds on the digest crate.
    ("1.88", "calybris-workload", &[]),
    // `let` chains (1.88).
    ("1.88", "calybris-budget", &[]),
    // `File::try_lock` (1.89), and everything that builds on the log.
    ("1.89", "calybris-wal", &["--all-features"]),
    ("1.89", "calybris-finance", &[]),
    // The Merkle tree and notes (ed25519-dalek), which the gate's checkpoints use.
    ("1.89", "calybris-tlog", &["--all-features"]),
    ("1.89", "calybris-gate", &["--all-features"]),
    // Builds on the gate (its name map).
    ("1.89", "calybris-policy", &["--all-features"]),
    ("1.89", "calybris", &["--all-features"]),
    ("1.89", "calybris-adapt", &[]),
    ("1.89", "calybris-gateway", &[]),
    ("1.89", "calybris-cli", &[]),
];
/// The crates that go to crates.io, in dependency order.
const PUBLISHED: [&str; 13] = [
    "calybris-kernel",
    "calybris-digest",
    // Before the crates whose tests draw from its generator (wal, gate) and the CLI
    // (the demo's workload).
    "calybris-workload",
    "calybris-wal",
    "calybris-tlog",
    "calybris-budget",
    "calybris-finance",
    "calybris-gate",
    "calybris-adapt",
    "calybris-policy",
    "calybris-gateway",
    "calybris",
    "calybris-cli",
];

type Result = std::result::Result<(), String>;
/// One named gate of `ci`.
type Step = (&'static str, fn() -> Result);

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map_or("help", String::as_str);
    let rest = args.get(1..).unwrap_or_default();
    let outcome = match task {
        "ci" => ci(),
        "fmt" => fmt_check(),
        "clippy" => clippy(),
        "test" => test(),
        "miri" => miri(),
        "loom" => loom(),
        "embedded" => embedded(),
        "doc" => doc(),
        "examples" => examples(),
        "msrv" => msrv(),
        "package" => package(),
        "interop" => interop(),
        "fuzz" => fuzz(rest.first().and_then(|s| s.parse().ok()).unwrap_or(60)),
        "bench" => bench(rest),
        "man" => man(),
        "openai" => openai_client(),
        "catalog" => catalog::run(&root(), rest.iter().any(|a| a == "--check")),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 ci        every gate below, in order (what CI runs)\n\
                 fmt       cargo fmt --check\n\
                 clippy    clippy on all targets and features, warnings denied\n\
                 test      workspace tests (all features), no_std crates without defaults, the gate race and the adaptive replay in release\n\
                 embedded  build the no_std crates for {EMBEDDED_TARGET}\n\
                 doc       cargo doc with warnings denied, then as docs.rs builds it (nightly)\n\
                 miri      the kernel and digest tests under Miri (nightly)\n\
                 loom      the Loom models of the budget engine\n\
                 examples  run every example\n\
                 msrv      build each published crate on its minimum supported Rust\n\
                 package   cargo package of every published crate, then its tests from the package\n\
                 interop   the Go interop check of calybris-tlog (installs golang-go and golang-golang-x-mod-dev when missing)
                 fuzz [S]  run each cargo-fuzz target for S seconds (default 60; nightly)\n\
                 bench [ARGS]  criterion benchmarks, side by side with calybris-core\n\
                 openai    the official `openai` Python client against `calybris serve --demo`, then replay\n\
                 man       write docs/calybris.1, the man page of the calybris command, from its clap definition\n\
                 catalog [--check]  write (or check) examples/policies/catalog.toml from ../shared/data/catalog/models.csv"
            );
            return if task == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ci() -> Result {
    let steps: [Step; 13] = [
        ("fmt", fmt_check),
        ("clippy", clippy),
        ("test", test),
        ("embedded", embedded),
        ("doc", doc),
        ("examples", examples),
        ("openai client", openai_client),
        ("msrv", msrv),
        ("package", package),
        ("loom", loom),
        ("miri", miri),
        ("interop", interop),
        ("fuzz smoke", || fuzz(FUZZ_SMOKE_SECONDS)),
    ];
    for (name, step) in steps {
        eprintln!("\n==> xtask ci: {name}");
        step().map_err(|e| format!("{name}: {e}"))?;
    }
    eprintln!("\n==> xtask ci: every gate passed");
    Ok(())
}

/// The `openai` package version `.ci/run` installs and this step expects.
const OPENAI_PY_VERSION: &str = "3.51.0";
/// The longest the Python client may take before the step fails.
const OPENAI_CLIENT_TIMEOUT_SECONDS: u64 = 60;

/// The official `openai` Python client (`xtask/py/openai_client.py`) against
/// `calybris serve --demo` on a free loopback port: models, a whole answer, a stream,
/// and typed errors (401, 404, 400). Then the gate directory must verify and the whole
/// answer's decision must replay (`calybris replay --demo`, re-executed) VERIFIED.
fn openai_client() -> Result {
    let version = Command::new("python3")
        .args(["-c", "import openai; print(openai.__version__)"])
        .output()
        .map_err(|e| format!("python3 is needed: {e}"))?;
    let found = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    if !version.status.success() || found != OPENAI_PY_VERSION {
        return Err(format!(
            "the Python package openai=={OPENAI_PY_VERSION} is needed (found {:?}); .ci/run installs it: python3 -m pip install openai=={OPENAI_PY_VERSION}",
            if found.is_empty() { "none" } else { &found }
        ));
    }
    let mut c = cargo();
    c.args([
        "build",
        "--quiet",
        "-p",
        "calybris-cli",
        "--bin",
        "calybris",
    ]);
    run(c)?;
    let target =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let calybris = target.join("debug").join("calybris");
    let scratch = env::temp_dir().join(format!("calybris-xtask-openai-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let gate = scratch.join("gate");
    let result = openai_against(&calybris, &gate);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn openai_against(calybris: &Path, gate: &Path) -> Result {
    use std::io::BufRead as _;
    let mut server = Command::new(calybris)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--dir"])
        .arg(gate)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", calybris.display()))?;
    let mut line = String::new();
    if let Some(stdout) = server.stdout.take() {
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    }
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned);
    let outcome = match addr {
        Some(addr) => python_client(&format!("http://{addr}/v1")),
        None => Err(format!("the gateway printed no address: {line:?}")),
    };
    // Every answer's records were durable before it went out: a kill loses nothing.
    let _ = server.kill();
    let _ = server.wait();
    let decision = outcome?;
    let mut c = Command::new(calybris);
    c.arg("verify").arg(gate);
    run(c)?;
    let mut c = Command::new(calybris);
    c.arg("replay").arg(gate).args([
        "--seq",
        &decision.to_string(),
        "--demo",
        "--allow-side-effects",
        "--allow-network",
    ]);
    run(c)
}

/// Runs the script against `base_url`; returns the decision sequence it printed last.
fn python_client(base_url: &str) -> std::result::Result<u64, String> {
    let script = root().join("xtask/py/openai_client.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args([base_url, "sk-calybris-demo"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting python3: {e}"))?;
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if started.elapsed().as_secs() > OPENAI_CLIENT_TIMEOUT_SECONDS {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the Python client took over {OPENAI_CLIENT_TIMEOUT_SECONDS} s"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    eprint!("{text}");
    if !output.status.success() {
        return Err(format!(
            "{} exited with {}",
            script.display(),
            output.status
        ));
    }
    text.lines()
        .last()
        .and_then(|l| l.strip_prefix("decision "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("the client's last line is not `decision N`: {text:?}"))
}

fn root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// A cargo run on a given toolchain, bypassing the outer cargo's own toolchain choice.
fn cargo_on(toolchain: &str) -> Command {
    let mut c = Command::new("cargo");
    c.arg(format!("+{toolchain}")).current_dir(root());
    // The outer `cargo xtask` exports these for its own toolchain; a nested run on
    // another toolchain must pick its own.
    for var in ["RUSTC", "RUSTDOC", "CARGO", "RUSTUP_TOOLCHAIN"] {
        c.env_remove(var);
    }
    c
}

fn run(mut cmd: Command) -> Result {
    eprintln!("    $ {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} exited with {status}"))
    }
}

fn succeeds(mut cmd: Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn rustup(args: &[&str]) -> Result {
    let mut c = Command::new("rustup");
    c.args(args);
    run(c)
}

fn fmt_check() -> Result {
    let mut c = cargo();
    c.args(["fmt", "--all", "--check"]);
    run(c)
}

fn clippy() -> Result {
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    run(c)
}

fn test() -> Result {
    let mut c = cargo();
    c.args(["test", "--workspace", "--all-features"]);
    run(c)?;
    for krate in NO_STD_CRATES {
        let mut c = cargo();
        c.args([
            "test",
            "-p",
            krate,
            "--no-default-features",
            "--lib",
            "--tests",
        ]);
        run(c)?;
    }
    // The gate's budget race at full size (a million decide+settle pairs from 64
    // threads) needs an optimised build to finish in seconds; the debug run above
    // does a tenth of it.
    let mut c = cargo();
    c.args(["test", "--release", "-p", "calybris-gate", "--test", "race"]);
    c.env("CALYBRIS_RACE_PAIRS", "1000000");
    run(c)?;
    // The adaptive replay at full size: 10^6 adaptive decisions on 22 tiers written
    // and re-derived by the verifier (the debug run above does 20,000).
    let mut c = cargo();
    c.args([
        "test",
        "--release",
        "-p",
        "calybris-gate",
        "--features",
        "adaptive",
        "--test",
        "adaptive",
    ]);
    run(c)
}

fn embedded() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(EMBEDDED_TARGET))
        .unwrap_or(false);
    if !installed {
        rustup(&["target", "add", EMBEDDED_TARGET])?;
    }
    for krate in NO_STD_CRATES {
        let mut c = cargo();
        c.args([
            "build",
            "-p",
            krate,
            "--no-default-features",
            "--target",
            EMBEDDED_TARGET,
        ]);
        run(c)?;
    }
    Ok(())
}

fn doc() -> Result {
    let mut c = cargo();
    c.args(["doc", "--workspace", "--all-features", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(c)?;
    // What docs.rs runs (`[package.metadata.docs.rs]`): nightly with `--cfg docsrs`,
    // which turns on the `doc_cfg` feature badges. Built here so a change that only
    // breaks under that cfg is caught before a release, not on docs.rs.
    let mut c = cargo_on("nightly");
    c.args(["doc", "--all-features", "--no-deps"])
        .args(PUBLISHED.iter().flat_map(|k| ["-p", k]))
        .env("RUSTDOCFLAGS", "--cfg docsrs -D warnings")
        .env("CARGO_TARGET_DIR", root().join("target/docsrs"));
    run(c)
}

/// The man page of the `calybris` command, generated from its clap definition by
/// `calybris_cli::man::man_page()` (run through the CLI's `man` example, so xtask
/// needs no dependency), written to `docs/calybris.1`. The CLI's tests render it
/// again and compare it with the committed page, so the page cannot drift.
fn man() -> Result {
    let mut c = cargo();
    c.args([
        "run",
        "--quiet",
        "-p",
        "calybris-cli",
        "--features",
        "man",
        "--example",
        "man",
    ]);
    eprintln!("    $ {c:?}");
    let output = c.output().map_err(|e| format!("cannot start {c:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{c:?} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let path = root().join("docs").join("calybris.1");
    std::fs::write(&path, &output.stdout)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn examples() -> Result {
    for (package, example, features) in EXAMPLES {
        let mut c = cargo();
        c.args(["run", "--quiet", "-p", package, "--example", example]);
        if !features.is_empty() {
            c.args(["--features", features]);
        }
        run(c)?;
    }
    Ok(())
}

fn msrv() -> Result {
    let mut installed: Vec<&str> = Vec::new();
    for (toolchain, package, args) in MSRV_BUILDS {
        if !installed.contains(&toolchain) {
            let mut probe = cargo_on(toolchain);
            probe.arg("--version");
            if !succeeds(probe) {
                rustup(&["toolchain", "install", toolchain, "--profile", "minimal"])?;
            }
            installed.push(toolchain);
        }
        let mut c = cargo_on(toolchain);
        // The workspace Cargo.lock is used as it is, so a dependency version whose own
        // MSRV is above ours fails here rather than on a user's machine.
        c.args(["build", "--locked", "-p", package])
            .args(args)
            // One target directory for every old toolchain, apart from the normal one.
            .env("CARGO_TARGET_DIR", root().join("target/msrv"));
        run(c)?;
    }
    Ok(())
}

/// `cargo package` of every published crate, then each crate's tests run from its
/// packaged sources.
///
/// What is checked: that every package can be made (a manifest crates.io accepts,
/// the README and LICENSE inside it, the files the build needs); that each one
/// builds from its `.crate` alone (cargo's verification, which builds the crates
/// that depend on other workspace crates against the freshly packaged ones through
/// a temporary local registry, since they are not on crates.io yet); and that each
/// crate's tests pass from the unpacked package, every workspace dependency patched
/// to its unpacked package too. That last part is what catches a test reading a
/// file the package does not contain.
///
/// What is not checked: the upload itself, name ownership on crates.io, and
/// resolution against what crates.io will hold at publish time (the dependency
/// versions come from the workspace Cargo.lock, `--locked`).
fn package() -> Result {
    // Outside the workspace: cargo would take an unpacked package below the
    // workspace root for a member that is missing from it.
    // A fresh directory per run: cargo extracts the packaged crates into
    // $CARGO_HOME/registry/src under a name derived from this path, and would reuse an
    // extraction from an earlier run of the same version (stale sources) if the path
    // repeated.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let target = env::temp_dir().join(format!(
        "calybris-xtask-package-{}-{stamp}",
        std::process::id()
    ));
    let outcome = package_in(&target);
    let _ = std::fs::remove_dir_all(&target);
    outcome
}

/// `package` in the scratch directory `target`.
fn package_in(target: &Path) -> Result {
    let mut c = cargo();
    // `--allow-dirty`: package what is on disk, so a local run checks uncommitted
    // work too (CI runs on a clean clone either way).
    c.args(["package", "--locked", "--allow-dirty"])
        .args(PUBLISHED.iter().flat_map(|k| ["-p", k]))
        .env("CARGO_TARGET_DIR", target);
    run(c)?;
    let unpacked = target.join("package");
    let version = env!("CARGO_PKG_VERSION");
    let dir_of = |krate: &str| unpacked.join(format!("{krate}-{version}"));
    for krate in PUBLISHED {
        let mut c = cargo();
        c.current_dir(dir_of(krate))
            .args(["test", "--all-features"])
            .env("CARGO_TARGET_DIR", target.join("tests"));
        for dependency in PUBLISHED.into_iter().filter(|d| *d != krate) {
            let path = dir_of(dependency);
            let path = path.to_str().ok_or("temporary directory is not UTF-8")?;
            c.arg("--config")
                .arg(format!("patch.crates-io.{dependency}.path={path:?}"));
        }
        run(c)?;
    }
    Ok(())
}

fn miri() -> Result {
    let mut probe = cargo_on("nightly");
    probe.args(["miri", "--version"]);
    if !succeeds(probe) {
        rustup(&[
            "component",
            "add",
            "--toolchain",
            "nightly",
            "miri",
            "rust-src",
        ])?;
    }
    let mut setup = cargo_on("nightly");
    setup.args(["miri", "setup"]);
    run(setup)?;
    // The tests shrink their generated cases under `cfg(miri)` themselves: Miri does not
    // forward the environment by default, and runs code about a thousand times slower.
    let mut c = cargo_on("nightly");
    c.args(["miri", "test"])
        .args(NO_STD_CRATES.iter().flat_map(|k| ["-p", k]))
        // Separate target directory: Miri's artifacts never mix with normal builds.
        .env("CARGO_TARGET_DIR", root().join("target/miri"));
    run(c)
}

fn loom() -> Result {
    let model = root().join("crates/budget/tests/loom.rs");
    if !model.exists() {
        eprintln!(
            "    no Loom models yet ({} is missing); nothing to run",
            model.display()
        );
        return Ok(());
    }
    let mut c = cargo();
    c.args([
        "test",
        "-p",
        "calybris-budget",
        "--test",
        "loom",
        "--release",
    ])
    .env("RUSTFLAGS", "--cfg loom")
    .env("LOOM_MAX_PREEMPTIONS", LOOM_MAX_PREEMPTIONS)
    .env("CARGO_TARGET_DIR", root().join("target/loom"));
    run(c)
}

fn fuzz_targets() -> Vec<String> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.strip_suffix(".rs").map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    targets.sort();
    targets
}

fn fuzz(seconds: u32) -> Result {
    let targets = fuzz_targets();
    if targets.is_empty() {
        eprintln!("    no fuzz targets under fuzz/fuzz_targets; nothing to run");
        return Ok(());
    }
    let mut probe = cargo_on("nightly");
    probe.args(["fuzz", "--version"]);
    if !succeeds(probe) {
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        run(install)?;
    }
    for target in targets {
        let corpus = root().join("fuzz/corpus").join(&target);
        // Fuzzing writes new inputs into the corpus; work on a scratch copy so a run
        // never dirties the committed seed corpus.
        let scratch = root().join("target/fuzz-corpus").join(&target);
        std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        if let Ok(entries) = std::fs::read_dir(&corpus) {
            for entry in entries.filter_map(|e| e.ok()) {
                let to = scratch.join(entry.file_name());
                std::fs::copy(entry.path(), &to).map_err(|e| format!("{}: {e}", to.display()))?;
            }
        }
        let mut c = cargo_on("nightly");
        c.current_dir(root().join("fuzz"))
            .args(["fuzz", "run", &target])
            .arg(&scratch)
            .args(["--", &format!("-max_total_time={seconds}")]);
        run(c)?;
    }
    Ok(())
}

/// The Debian packages of the Go interop check: the compiler and the reference
/// `golang.org/x/mod/sumdb/{note,tlog}`.
const GO_PACKAGES: [&str; 2] = ["golang-go", "golang-golang-x-mod-dev"];
/// The seed of the interop fixtures unless `CALYBRIS_SEED` says otherwise.
const INTEROP_SEED: &str = "0x13579bdf2468ace0";

/// The GOPATH folder that `golang-golang-x-mod-dev` installs (the one holding
/// `src/golang.org/x/mod`), or `None` when the package is missing.
fn x_mod_gopath() -> Option<PathBuf> {
    let out = Command::new("dpkg")
        .args(["-L", "golang-golang-x-mod-dev"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .find(|p| p.join("src/golang.org/x/mod/sumdb/note").is_dir())
}

/// Installs the Go packages with apt-get when `go` or x/mod is missing.
fn ensure_go() -> std::result::Result<PathBuf, String> {
    let have_go = succeeds({
        let mut c = Command::new("go");
        c.arg("version");
        c
    });
    if !have_go || x_mod_gopath().is_none() {
        // As root directly; otherwise through sudo when there is one.
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        let apt = |args: &[&str]| {
            let mut c = if root_user {
                Command::new("apt-get")
            } else {
                let mut c = Command::new("sudo");
                c.arg("apt-get");
                c
            };
            c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            run(c)
        };
        apt(&["update"])?;
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(GO_PACKAGES);
        apt(&args)?;
    }
    x_mod_gopath().ok_or_else(|| {
        "golang-golang-x-mod-dev installs no GOPATH folder with golang.org/x/mod".to_owned()
    })
}

/// The Go interop check of calybris-tlog (interop/README.md): the Rust example
/// writes a log's tiles, signed checkpoints and proofs; the Go program verifies
/// them with `sumdb/note` and `sumdb/tlog` and signs notes and makes proofs of
/// its own; the Rust example verifies those. Both sides reject every single-byte
/// change. Built in GOPATH mode with no network.
fn interop() -> Result {
    let gopath = ensure_go()?;
    let work = root().join("target/interop");
    let data = work.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    }
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "calybris-tlog",
        "--example",
        "interop",
    ]);
    run(build)?;
    let rust_side = root().join("target/release/examples/interop");
    let go_side = work.join("interop-go");
    let mut go = Command::new("go");
    go.current_dir(root())
        .args(["build", "-o"])
        .arg(&go_side)
        .arg("./interop/go")
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOCACHE", work.join("gocache"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0");
    run(go)?;
    let seed = env::var("CALYBRIS_SEED").unwrap_or_else(|_| INTEROP_SEED.to_owned());
    for (program, first) in [
        (&rust_side, "generate"),
        (&go_side, seed.as_str()),
        (&rust_side, "check"),
    ] {
        let mut c = Command::new(program);
        c.arg(first).arg(&data).env("CALYBRIS_SEED", &seed);
        run(c)?;
    }
    std::fs::remove_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))
}

fn bench(args: &[String]) -> Result {
    let mut c = cargo();
    c.args(["bench", "-p", "calybris-benches"]).args(args);
    run(c)
}
