//! SIGKILL the gateway process under load, again and again: after each kill, every
//! answer a client received (a 200, or a stream that reached `data: [DONE]`) has its
//! decision and its execution record in the log, and its request body in the
//! request-body archive (appended unsynced, made durable by the log's group commit);
//! at the end the books balance and the directory verifies. With the default
//! `durable_before_provider`, no provider call is made for a reservation that is not
//! on disk: the mock provider never counts more calls than the log holds admitted
//! decisions, kills or not; and the holds the kills left open are spent in full at
//! reopen (`reopen_holds = "commit"`, the default).
//!
//! The test binary is its own gateway: run with `CALYBRIS_GATEWAY_CRASH_CONFIG` set, it
//! serves that configuration on a free loopback port, prints the address, and waits to
//! be killed.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use calybris_gate::{ExecutionStatus, GateRecord, VerifyOptions, verify_dir};
use calybris_gateway::archive::RequestArchive;
use calybris_gateway::config::{ProviderKind, key_hash_hex};
use calybris_gateway::mock::{MockBehavior, MockProvider};
use calybris_gateway::{Gateway, GatewayConfig};
use calybris_wal::{LogFrames, LogReader};

const CHILD: &str = "CALYBRIS_GATEWAY_CRASH_CONFIG";
const KILLS: usize = 20;
const KEY: &str = "sk-crash";

fn main() {
    if let Ok(path) = std::env::var(CHILD) {
        child(&path);
        return;
    }
    parent();
    println!("1 passed, 0 failed");
}

fn child(path: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = GatewayConfig::load(std::path::Path::new(path)).expect("config");
        let gateway = Gateway::open(&config).expect("gateway opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("LISTEN {}", listener.local_addr().expect("addr"));
        gateway
            .serve(listener, std::future::pending())
            .await
            .expect("serve");
    });
}

fn records(dir: &std::path::Path) -> Vec<(u64, GateRecord)> {
    let frames = LogFrames::open(&dir.join("log"), None, None).expect("log opens");
    let mut reader = LogReader::<GateRecord>::new(frames);
    let mut out = Vec::new();
    while let Ok(Some(entry)) = reader.next_entry() {
        out.push((entry.sequence, entry.record));
    }
    out
}

/// Load for `duration`: each answer acknowledged to the client, by decision sequence.
async fn load(addr: String, duration: Duration, nonce: usize) -> Vec<u64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..16u64 {
        let (client, stop, addr) = (client.clone(), stop.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut count = 0u64;
            // Bounded: at most 10,000 requests per worker per round.
            while !stop.load(Ordering::Relaxed) && count < 10_000 {
                count += 1;
                let stream = (worker + count).is_multiple_of(3);
                // Every body different: the archive must hold each acknowledged one.
                let body =
                    serde_json::json!({"model": "gpt-mock", "stream": stream, "max_tokens": 8,
                    "messages": [{"role": "user", "content": format!("crash me {worker} {count} {nonce}")}]})
                    .to_string();
                let Ok(response) = client
                    .post(format!("http://{addr}/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .body(body)
                    .send()
                    .await
                else {
                    continue;
                };
                if response.status() != 200 {
                    continue;
                }
                let sequence: Option<u64> = response
                    .headers()
                    .get("x-calybris-decision")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let Ok(text) = response.text().await else {
                    continue;
                };
                let complete = if stream {
                    text.ends_with("data: [DONE]\n\n")
                } else {
                    text.contains("\"chat.completion\"")
                };
                if complete && let Some(sequence) = sequence {
                    acknowledged.push(sequence);
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    // The kill comes while requests are in flight: collect what was acknowledged so
    // far without waiting for the stragglers.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut acknowledged = Vec::new();
    for task in tasks {
        if let Ok(Ok(found)) = tokio::time::timeout(Duration::from_secs(10), task).await {
            acknowledged.extend(found);
        }
    }
    acknowledged
}

fn parent() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mock = runtime
        .block_on(MockProvider::start("primary", MockBehavior::Ok, 8))
        .expect("mock");
    let dir = std::env::temp_dir().join(format!("calybris-gateway-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let gate_dir = dir.join("gate");
    let archive_dir = dir.join("archive");
    let config_path = dir.join("gateway.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\ngate_dir = {:?}\nrequest_archive = {:?}\n\n[providers.p]\nkind = \"openai\"\nbase_url = {:?}\n\n\
             [[policy.models]]\nname = \"gpt-mock\"\nprovider = \"p\"\ninput_usd_per_mtok = \"1\"\noutput_usd_per_mtok = \"1\"\nquality_bps = 5000\n\n\
             [tenants.acme]\nbudget_usd = \"100\"\napi_key_sha256 = [{:?}]\n\n\
             [routing]\nfallback = [\"gpt-mock\"]\n",
            gate_dir.display().to_string(),
            archive_dir.display().to_string(),
            mock.base_url(ProviderKind::Openai),
            key_hash_hex(KEY)
        ),
    )
    .expect("config");
    let started = Instant::now();
    let mut all_acknowledged = 0usize;
    for round in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .env(CHILD, &config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("child starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("child prints its address");
        let addr = line
            .trim()
            .strip_prefix("LISTEN ")
            .expect("LISTEN line")
            .to_owned();
        let duration = Duration::from_millis(150 + (round as u64 * 37) % 200);
        let acknowledged = runtime.block_on(async {
            let load = tokio::spawn(load(addr, duration + Duration::from_millis(50), round));
            tokio::time::sleep(duration).await;
            // SIGKILL while requests are in flight.
            child.kill().expect("kill");
            load.await.expect("load")
        });
        let _ = child.wait();
        let records = records(&gate_dir);
        let decisions: HashSet<u64> = records
            .iter()
            .filter_map(|(sequence, record)| {
                matches!(record, GateRecord::Decision(_)).then_some(*sequence)
            })
            .collect();
        let executions: HashMap<u64, (ExecutionStatus, [u8; 32])> = records
            .iter()
            .filter_map(|(_, record)| match record {
                GateRecord::Execution(e) => {
                    Some((e.decision_sequence, (e.status, e.request_sha256)))
                }
                _ => None,
            })
            .collect();
        let mut archived = HashSet::new();
        RequestArchive::at(&archive_dir)
            .scan(|hash, _| {
                archived.insert(*hash);
            })
            .expect("the archive reads back after a kill");
        for sequence in &acknowledged {
            assert!(
                decisions.contains(sequence),
                "round {round}: acknowledged decision {sequence} is missing"
            );
            let execution = executions.get(sequence);
            assert_eq!(
                execution.map(|e| e.0),
                Some(ExecutionStatus::Served),
                "round {round}: the execution of acknowledged decision {sequence} is missing"
            );
            assert!(
                execution.is_some_and(|e| archived.contains(&e.1)),
                "round {round}: the body of acknowledged decision {sequence} is not archived"
            );
        }
        all_acknowledged += acknowledged.len();
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "bounded in time"
        );
    }
    assert!(all_acknowledged > 0, "some requests were acknowledged");
    // Reopen once more (holds left open by the kills are spent in full, logged) and close.
    let config = GatewayConfig::load(&config_path).expect("config");
    let gateway = runtime
        .block_on(async { Gateway::open(&config) })
        .expect("reopens");
    gateway.close().expect("closes");
    let report = verify_dir(&gate_dir, &VerifyOptions::default()).expect("verifies");
    assert!(report.conservation.balanced);
    assert_eq!(report.open_holds, 0);
    assert!(report.counts.executions as usize >= all_acknowledged);
    let acme = &report.tenants[0];
    assert!(acme.committed_microunits <= acme.initial_microunits);
    // One model, no other fallback: each admitted decision calls the provider at most
    // once, and only after the decision is durable. A call whose reservation was still
    // in the log's memory when the process died would make calls exceed admissions.
    let calls = mock.calls();
    assert!(
        calls <= report.counts.admitted,
        "{calls} provider calls, but only {} admitted decisions in the log",
        report.counts.admitted
    );
    assert_eq!(
        report.counts.released_at_reopen, 0,
        "the default spends interrupted holds rather than refunding them"
    );
    println!(
        "{KILLS} kills, {all_acknowledged} acknowledged answers all in the log with their bodies archived ({} entries), {} decisions ({} admitted), {calls} provider calls, {} holds spent in full at reopen",
        RequestArchive::at(&archive_dir)
            .scan(|_, _| {})
            .expect("archive"),
        report.counts.decisions,
        report.counts.admitted,
        report.counts.committed_at_reopen
    );
    drop(mock);
    let _ = std::fs::remove_dir_all(&dir);
}
