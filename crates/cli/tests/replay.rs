//! `calybris replay`: every outcome it can reach deterministically, on gate directories
//! written by a real gateway (`calybris serve`) answering over loopback, replayed by
//! the built binary.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use calybris::gate::{GateRecord, LOG_DIR};
use calybris::wal::SegmentedReader;
use calybris_gateway::archive::{ENTRY_HEADER_BYTES, RequestArchive};
use calybris_gateway::config::key_hash_hex;
use calybris_gateway::mock::{MockBehavior, MockProvider};
use common::{Run, calybris, path_str, temp_dir};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// A `calybris serve` child and the address it listens on; killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_calybris"))
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("a first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Self { child, addr }
    }

    /// POSTs a chat request; returns the status, the `x-calybris-decision` header and
    /// the body.
    fn chat(&self, key: &str, body: &str) -> (u16, Option<u64>, String) {
        let mut stream = std::net::TcpStream::connect(&self.addr).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            stream,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("writes");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("reads");
        let (head, rest) = response.split_once("\r\n\r\n").expect("a head");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        let decision = head
            .lines()
            .find_map(|l| l.strip_prefix("x-calybris-decision: "))
            .and_then(|v| v.trim().parse().ok());
        (status, decision, rest.to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replay(dir: &Path, seq: u64, extra: &[&str]) -> Run {
    let seq = seq.to_string();
    let mut args = vec!["replay", path_str(dir), "--seq", &seq, "--json"];
    args.extend_from_slice(extra);
    let run = calybris_raw(&args);
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert!((0..=3).contains(&run.code), "{run:?}");
    run
}

/// Runs the binary without the common contract check (replay also exits 3).
fn calybris_raw(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_calybris"))
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .args(args)
        .output()
        .expect("run the calybris binary");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Asserts the run's outcome, reason and exit code; returns the report.
fn expect(run: &Run, outcome: &str, reason: Option<&str>, code: i32) -> Value {
    let report = run.json();
    assert_eq!(report["outcome"], outcome, "{run:?}");
    assert_eq!(
        report["reason"],
        reason.map_or(Value::Null, Value::from),
        "{run:?}"
    );
    assert_eq!(run.code, code, "{run:?}");
    report
}

fn records(dir: &Path) -> Vec<(u64, GateRecord)> {
    let mut reader =
        SegmentedReader::<GateRecord>::open(&dir.join(LOG_DIR), None, None).expect("the log");
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry().expect("a record") {
        out.push((entry.sequence, entry.record));
    }
    out
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(LOG_DIR))
        .expect("log dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The workspace's docs folder (`None` when built from the package alone).
fn workspace_docs() -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let inside = std::fs::read_to_string(workspace.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("crates/cli"));
    inside.then(|| workspace.join("docs"))
}

fn keys(value: &Value) -> std::collections::BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

fn check_schema(report: &Value) {
    let Some(docs) = workspace_docs() else {
        return;
    };
    let text = std::fs::read_to_string(docs.join("schemas/replay-report.schema.json"))
        .expect("docs/schemas/replay-report.schema.json");
    let schema: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(keys(&schema["properties"]), keys(report));
    let required: std::collections::BTreeSet<String> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(required, keys(report));
    assert_eq!(
        keys(&schema["properties"]["checks"]["properties"]),
        keys(&report["checks"])
    );
    let listed: std::collections::BTreeSet<String> = schema["properties"]["reason"]["enum"]
        .as_array()
        .expect("the reason enum")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let codes: std::collections::BTreeSet<String> = calybris_cli::report::ReplayReason::ALL
        .iter()
        .map(|r| r.code().to_owned())
        .collect();
    assert_eq!(listed, codes);
    let doc = std::fs::read_to_string(docs.join("CLI.md")).expect("docs/CLI.md");
    for reason in calybris_cli::report::ReplayReason::ALL {
        let row = format!("| `{}` | {} |", reason.code(), reason.outcome().word());
        assert!(doc.contains(&row), "docs/CLI.md lacks {row}");
    }
}

const DEMO_KEY: &str = "sk-calybris-demo";

#[test]
fn a_demo_request_replays_and_every_tampering_is_named() {
    let dir = temp_dir("replay-demo");
    let gate = dir.join("gate");
    let whole = r#"{"model": "gpt-4o-mini-2024-07-18", "messages": [{"role": "user", "content": "Hello replay"}]}"#;
    let streamed =
        r#"{"model": "auto", "stream": true, "messages": [{"role": "user", "content": "Hello"}]}"#;
    let (decision, stream_decision) = {
        let server = Server::start(&["--demo", "--dir", path_str(&gate)]);
        let (status, decision, body) = server.chat(DEMO_KEY, whole);
        assert_eq!(status, 200, "{body}");
        let (status, stream_decision, body) = server.chat(DEMO_KEY, streamed);
        assert_eq!(status, 200, "{body}");
        (
            decision.expect("a decision header"),
            stream_decision.expect("a decision header"),
        )
    };
    // Re-execution needs the demo's providers, then both permissions, in this order.
    let run = replay(&gate, decision, &[]);
    expect(&run, "ERROR", Some("PROVIDER_NOT_SUPPORTED"), 2);
    let run = replay(&gate, decision, &["--demo"]);
    expect(&run, "REFUSED", Some("SIDE_EFFECTS_NOT_ALLOWED"), 3);
    let run = replay(&gate, decision, &["--demo", "--allow-side-effects"]);
    expect(&run, "REFUSED", Some("NETWORK_NOT_ALLOWED"), 3);
    let all = ["--demo", "--allow-side-effects", "--allow-network"];
    let run = replay(&gate, decision, &all);
    let report = expect(&run, "VERIFIED", None, 0);
    check_schema(&report);
    assert_eq!(report["reexecuted"], true);
    assert_eq!(
        report["response_sha256"],
        report["replayed_response_sha256"]
    );
    assert_eq!(report["request_sha256"], hex(&sha256(whole.as_bytes())));
    for check in [
        "log",
        "decision",
        "settlement",
        "input",
        "environment",
        "output",
    ] {
        assert_eq!(report["checks"][check], "passed", "{check}: {report}");
    }
    // The execution record's sequence replays the same decision.
    let execution = report["execution_sequence"].as_u64().expect("an execution");
    let run = replay(&gate, execution, &all);
    let again = expect(&run, "VERIFIED", None, 0);
    assert_eq!(again["decision_sequence"], decision);
    // The human form: one line on stdout.
    let seq = decision.to_string();
    let run = calybris(&[
        "replay",
        path_str(&gate),
        "--seq",
        &seq,
        "--demo",
        "--allow-side-effects",
        "--allow-network",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("VERIFIED: decision "), "{run:?}");
    // Not a request: the header record, and a sequence past the end.
    let run = replay(&gate, 0, &all);
    expect(&run, "ERROR", Some("REPLAY_NOT_REPLAYABLE"), 2);
    let run = replay(&gate, 1_000_000, &all);
    expect(&run, "ERROR", Some("REPLAY_NOT_REPLAYABLE"), 2);
    // A streamed answer is re-executed as a stream: the same events, the same bytes.
    let run = replay(&gate, stream_decision, &all);
    let report = expect(&run, "VERIFIED", None, 0);
    assert_eq!(report["reexecuted"], true);
    assert_eq!(
        report["response_sha256"],
        report["replayed_response_sha256"]
    );
    // A configuration whose policy is not the logged one.
    let other = dir.join("other.toml");
    std::fs::write(
        &other,
        demo_like_config("http://127.0.0.1:9", "0.16", "archive"),
    )
    .expect("write");
    let archive = gate.join("request-archive");
    let run = replay(
        &gate,
        decision,
        &[
            "--config",
            path_str(&other),
            "--archive",
            path_str(&archive),
            "--allow-side-effects",
            "--allow-network",
        ],
    );
    let report = expect(&run, "DIVERGED", Some("ENVIRONMENT_MISMATCH"), 1);
    assert_eq!(report["checks"]["environment"], "failed");
    // The same body in an archive of the old layout (one `<sha256>.json` file per
    // body, before segments): still replayed.
    let legacy = dir.join("legacy-archive");
    std::fs::create_dir_all(&legacy).expect("dir");
    std::fs::write(
        legacy.join(format!("{}.json", hex(&sha256(whole.as_bytes())))),
        whole,
    )
    .expect("write");
    let run = replay(
        &gate,
        decision,
        &[&all[..], &["--archive", path_str(&legacy)][..]].concat(),
    );
    let report = expect(&run, "VERIFIED", None, 0);
    assert_eq!(report["checks"]["input"], "passed");
    // The archived body altered in its segment, then gone.
    let segment = RequestArchive::at(&archive).segment_path(1);
    let original = std::fs::read(&segment).expect("the archive's first segment");
    let at = original
        .windows(whole.len())
        .position(|w| w == whole.as_bytes())
        .expect("the body is in the segment");
    let mut altered = original.clone();
    altered[at + whole.find("Hello").expect("hello")] = b'J';
    std::fs::write(&segment, &altered).expect("alter");
    let run = replay(&gate, decision, &all);
    let report = expect(&run, "DIVERGED", Some("INPUT_HASH_MISMATCH"), 1);
    assert_eq!(report["checks"]["input"], "failed");
    // Cut before the body's entry (its header is just before it).
    let entry_start = at - usize::try_from(ENTRY_HEADER_BYTES).expect("small");
    std::fs::write(&segment, &original[..entry_start]).expect("cut");
    let run = replay(&gate, decision, &all);
    expect(&run, "ERROR", Some("INPUT_POINTER_MISSING"), 2);
    // One byte flipped inside the execution record (in its request SHA-256).
    let hash = sha256(whole.as_bytes());
    let mut flipped = false;
    for segment in segments(&gate) {
        let mut bytes = std::fs::read(&segment).expect("read");
        if let Some(at) = bytes.windows(32).position(|w| w == hash) {
            bytes[at + 7] ^= 0x01;
            std::fs::write(&segment, &bytes).expect("write");
            flipped = true;
            break;
        }
    }
    assert!(flipped, "the execution record holds the request hash");
    let run = replay(&gate, decision, &all);
    let report = expect(&run, "DIVERGED", Some("EDR_HASH_MISMATCH"), 1);
    assert_eq!(report["checks"]["log"], "failed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A configuration with the demo's shape: an Ollama-kind provider `local` and an
/// OpenAI-kind provider `remote`, at the given URL, with `price` for `llama`'s input.
/// `llama` is better and cheaper, so the kernel selects it for every request.
fn demo_like_config(url: &str, price: &str, archive: &str) -> String {
    demo_like(url, url, price, archive)
}

/// As [`demo_like_config`], the local provider at `local`.
fn demo_like(local: &str, url: &str, price: &str, archive: &str) -> String {
    format!(
        r#"[server]
gate_dir = "gate"
request_archive = "{archive}"

[providers.local]
kind = "ollama"
base_url = "{local}"

[providers.remote]
kind = "openai"
base_url = "{url}/v1"

[[policy.models]]
name = "llama"
provider = "local"
input_usd_per_mtok = "{price}"
output_usd_per_mtok = "0.06"
quality_bps = 9000

[[policy.models]]
name = "gpt"
provider = "remote"
input_usd_per_mtok = "0.15"
output_usd_per_mtok = "0.6"
quality_bps = 5000

[tenants.acme]
budget_usd = "0.001"
api_key_sha256 = ["{key}"]

[routing]
default_model = "llama"
value_usd_per_request = "0.05"
default_max_tokens = 16
max_output_tokens = 100000
"#,
        key = key_hash_hex("sk-acme"),
    )
}

#[test]
fn an_ollama_request_replays_against_the_provider_and_a_changed_one_diverges() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (good, short, failing) = runtime.block_on(async {
        (
            MockProvider::start("mock", MockBehavior::Ok, 12)
                .await
                .expect("mock"),
            MockProvider::start("mock", MockBehavior::Ok, 5)
                .await
                .expect("mock"),
            MockProvider::start("mock", MockBehavior::Fail(500), 12)
                .await
                .expect("mock"),
        )
    });
    let url = |mock: &MockProvider| format!("http://{}", mock.addr);
    let dir = temp_dir("replay-ollama");
    let config = dir.join("gateway.toml");
    std::fs::write(&config, demo_like_config(&url(&good), "0.03", "archive")).expect("write");
    let gate = dir.join("gate");
    let greedy = r#"{"model": "llama", "temperature": 0, "messages": [{"role": "user", "content": "Say hi"}]}"#;
    let sampled = r#"{"model": "llama", "messages": [{"role": "user", "content": "Say hi"}]}"#;
    let too_big = r#"{"model": "gpt", "max_tokens": 99999, "messages": [{"role": "user", "content": "Say hi"}]}"#;
    let (greedy_seq, sampled_seq) = {
        let server = Server::start(&["--config", path_str(&config)]);
        let (status, greedy_seq, body) = server.chat("sk-acme", greedy);
        assert_eq!(status, 200, "{body}");
        let (status, sampled_seq, body) = server.chat("sk-acme", sampled);
        assert_eq!(status, 200, "{body}");
        let (status, _, body) = server.chat("sk-acme", too_big);
        assert_eq!(status, 402, "{body}");
        (
            greedy_seq.expect("decision"),
            sampled_seq.expect("decision"),
        )
    };
    let cfg = path_str(&config);
    let all = ["--config", cfg, "--allow-side-effects", "--allow-network"];
    let run = replay(&gate, greedy_seq, &all);
    let report = expect(&run, "VERIFIED", None, 0);
    assert_eq!(report["provider"], "local");
    assert_eq!(report["model"], "llama");
    let run = replay(
        &gate,
        greedy_seq,
        &["--config", cfg, "--allow-side-effects"],
    );
    expect(&run, "REFUSED", Some("NETWORK_NOT_ALLOWED"), 3);
    let run = replay(&gate, greedy_seq, &["--config", cfg]);
    expect(&run, "REFUSED", Some("SIDE_EFFECTS_NOT_ALLOWED"), 3);
    // Not deterministic: no temperature 0, or not a local provider.
    let run = replay(&gate, sampled_seq, &all);
    expect(&run, "ERROR", Some("PROVIDER_NOT_SUPPORTED"), 2);
    let far = dir.join("far.toml");
    std::fs::write(
        &far,
        demo_like("http://192.0.2.1:11434", &url(&good), "0.03", "archive"),
    )
    .expect("write");
    let run = replay(
        &gate,
        greedy_seq,
        &[
            "--config",
            path_str(&far),
            "--allow-side-effects",
            "--allow-network",
        ],
    );
    expect(&run, "ERROR", Some("PROVIDER_NOT_SUPPORTED"), 2);
    // The budget refused the last request: its decision re-derives, nothing executed.
    let refused = records(&gate)
        .into_iter()
        .filter_map(|(seq, record)| match record {
            GateRecord::Decision(d) if !d.budget.is_admitted() => Some(seq),
            _ => None,
        })
        .next_back()
        .expect("a refused decision");
    let run = replay(&gate, refused, &all);
    let report = expect(&run, "VERIFIED", None, 0);
    assert_eq!(report["reexecuted"], false);
    assert_eq!(report["execution_sequence"], Value::Null);
    // The same policy on a provider that now answers otherwise, or fails.
    let changed = dir.join("changed.toml");
    std::fs::write(&changed, demo_like_config(&url(&short), "0.03", "archive")).expect("write");
    let run = replay(
        &gate,
        greedy_seq,
        &[
            "--config",
            path_str(&changed),
            "--allow-side-effects",
            "--allow-network",
        ],
    );
    let report = expect(&run, "DIVERGED", Some("OUTPUT_HASH_MISMATCH"), 1);
    assert_eq!(report["checks"]["output"], "failed");
    assert_ne!(
        report["replayed_response_sha256"],
        report["response_sha256"]
    );
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, demo_like_config(&url(&failing), "0.03", "archive")).expect("write");
    let run = replay(
        &gate,
        greedy_seq,
        &[
            "--config",
            path_str(&broken),
            "--allow-side-effects",
            "--allow-network",
        ],
    );
    expect(&run, "ERROR", Some("EXECUTION_ERROR"), 2);
    assert!(failing.calls() >= 1);
    // Forged logs, each rewritten whole so that its chain verifies: an execution
    // whose cost the settlement does not follow, and a decision that does not replay.
    let forged = |name: &str, forge: &dyn Fn(u64, &mut GateRecord)| {
        let copy = dir.join(name);
        let wal = calybris::wal::DurableWal::<GateRecord>::open(
            &copy.join(LOG_DIR),
            calybris::wal::DurableConfig::default(),
        )
        .expect("a new log");
        for (seq, mut record) in records(&gate) {
            forge(seq, &mut record);
            wal.append_durable(&record).expect("append");
        }
        wal.close().expect("close");
        copy
    };
    let overcharged = forged("overcharged", &|_, record| {
        if let GateRecord::Execution(execution) = record
            && execution.decision_sequence == greedy_seq
        {
            execution.cost_microunits += 1;
        }
    });
    let archive = dir.join("archive");
    let archive_args = ["--archive", path_str(&archive)];
    let run = replay(
        &overcharged,
        greedy_seq,
        &[&all[..], &archive_args[..]].concat(),
    );
    let report = expect(&run, "DIVERGED", Some("DECISION_CORE_MISMATCH"), 1);
    assert_eq!(report["checks"]["log"], "passed");
    assert_eq!(report["checks"]["settlement"], "failed");
    let misdecided = forged("misdecided", &|seq, record| {
        if let GateRecord::Decision(decision) = record
            && seq == greedy_seq
        {
            decision.audit.decision.expected_utility_microunits += 1;
            decision.audit.decision_digest =
                calybris::digest::decision_digest(&decision.audit.decision);
        }
    });
    let run = replay(
        &misdecided,
        greedy_seq,
        &[&all[..], &archive_args[..]].concat(),
    );
    let report = expect(&run, "DIVERGED", Some("DECISION_CORE_MISMATCH"), 1);
    assert_eq!(report["checks"]["log"], "failed");
    drop((good, short, failing));
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_keyed_gateway_log_replays_with_its_key_file_only() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mock = runtime.block_on(async {
        MockProvider::start("mock", MockBehavior::Ok, 6)
            .await
            .expect("mock")
    });
    let url = format!("http://{}", mock.addr);
    let dir = temp_dir("replay-keyed");
    // The configuration names the key's file (relative to itself), never the key.
    std::fs::write(dir.join("gate.key"), [7u8; 40]).expect("key");
    std::fs::write(dir.join("other.key"), [8u8; 40]).expect("key");
    std::fs::write(dir.join("short.key"), [7u8; 8]).expect("key");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        demo_like_config(&url, "0.03", "archive").replacen(
            "[server]\n",
            "[server]\nlog_key_file = \"gate.key\"\n",
            1,
        ),
    )
    .expect("write");
    let gate = dir.join("gate");
    let greedy = r#"{"model": "llama", "temperature": 0, "messages": [{"role": "user", "content": "Say hi"}]}"#;
    let seq = {
        let server = Server::start(&["--config", path_str(&config)]);
        let (status, seq, body) = server.chat("sk-acme", greedy);
        assert_eq!(status, 200, "{body}");
        seq.expect("decision")
    };
    // The log is keyed: an unkeyed reader refuses it.
    let unkeyed = SegmentedReader::<GateRecord>::open(&gate.join(LOG_DIR), None, None)
        .and_then(|mut reader| reader.next_entry().map(|_| ()));
    assert!(unkeyed.is_err(), "an unkeyed reader read a keyed log");
    let cfg = path_str(&config);
    let key = dir.join("gate.key");
    let all = [
        "--config",
        cfg,
        "--allow-side-effects",
        "--allow-network",
        "--key-file",
        path_str(&key),
    ];
    let run = replay(&gate, seq, &all);
    let report = expect(&run, "VERIFIED", None, 0);
    assert_eq!(report["reexecuted"], true, "{report}");
    assert_eq!(report["checks"]["output"], "passed");
    // Without the key, or with another one, the log does not verify.
    let run = replay(&gate, seq, &all[..4]);
    let report = expect(&run, "DIVERGED", Some("EDR_HASH_MISMATCH"), 1);
    assert_eq!(report["checks"]["log"], "failed");
    assert!(
        report["detail"]
            .as_str()
            .is_some_and(|d| d.contains("KeyRequired")),
        "{report}"
    );
    let other = dir.join("other.key");
    let run = replay(
        &gate,
        seq,
        &[&all[..4], &["--key-file", path_str(&other)][..]].concat(),
    );
    let report = expect(&run, "DIVERGED", Some("EDR_HASH_MISMATCH"), 1);
    assert!(
        report["detail"]
            .as_str()
            .is_some_and(|d| d.contains("DifferentKey")),
        "{report}"
    );
    // A key file too short to be a key is a bad argument, before any check.
    let short = dir.join("short.key");
    let run = replay(&gate, seq, &["--key-file", path_str(&short)]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.starts_with("ERROR BAD_ARGUMENT"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    // And `calybris verify` reads the same file the same way.
    let run = calybris_raw(&["verify", path_str(&gate), "--key-file", path_str(&key)]);
    assert_eq!(run.code, 0, "{run:?}");
    drop(mock);
    drop(runtime);
}

#[test]
fn a_demo_tool_call_replays_whole_and_streamed() {
    let dir = temp_dir("replay-tools");
    let gate = dir.join("gate");
    let tools = r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]"#;
    let whole = format!(
        r#"{{"model": "gpt-4o-mini-2024-07-18", "tools": {tools}, "messages": [{{"role": "user", "content": "Weather?"}}]}}"#
    );
    let streamed = format!(
        r#"{{"model": "gpt-4o-mini-2024-07-18", "stream": true, "tools": {tools}, "tool_choice": "required", "messages": [{{"role": "user", "content": "Weather?"}}]}}"#
    );
    let decisions = {
        let server = Server::start(&["--demo", "--dir", path_str(&gate)]);
        let (status, whole_seq, body) = server.chat(DEMO_KEY, &whole);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""finish_reason":"tool_calls""#), "{body}");
        assert!(body.contains("get_weather"), "{body}");
        let (status, stream_seq, body) = server.chat(DEMO_KEY, &streamed);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("tool_calls"), "{body}");
        assert!(body.contains("data: [DONE]"), "{body}");
        [whole_seq.expect("decision"), stream_seq.expect("decision")]
    };
    let all = ["--demo", "--allow-side-effects", "--allow-network"];
    for decision in decisions {
        let run = replay(&gate, decision, &all);
        let report = expect(&run, "VERIFIED", None, 0);
        assert_eq!(report["reexecuted"], true, "{report}");
        assert_eq!(report["checks"]["output"], "passed", "{report}");
    }
}
