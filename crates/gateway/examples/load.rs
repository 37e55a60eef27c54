//! A load figure: requests per second through the gateway against a loopback mock
//! provider, the latency the gateway adds over calling the mock directly (p50, p99), the
//! gateway's CPU time per request, and its memory per idle connection.
//!
//! ```text
//! cargo run --release -p calybris-gateway --example load -- \
//!     [REQUESTS] [CONNECTIONS] [PACED_RATE] [GATEWAY_THREADS] [WINDOW_US] [SYNCS]
//! ```
//! (defaults 20,000 requests, 256 connections, 2,000 requests/s for the paced phase, 2
//! gateway worker threads, the default group-commit window of 200 microseconds, 2
//! data fdatasyncs in flight at once: `[server] group_commit_syncs`).
//!
//! Three processes, so that each one's CPU time can be read apart: this one drives the
//! load (a lean keep-alive HTTP/1 client, hyper, one task per connection, one tokio
//! thread), a child runs the mock provider (one thread) and a child runs the gateway
//! (`GATEWAY_THREADS` threads) with durable logging (group commit, fdatasync, the
//! acknowledgement watermark) in a temporary gate directory.
//!
//! Phases, each first against the mock directly, then through the gateway:
//! 1. saturation: every connection sends its next request as soon as the last answer
//!    came (closed loop); the rate is the throughput, and the latency is mostly queueing
//!    (connections / rate);
//! 2. paced: the connections together send `PACED_RATE` requests per second on a fixed
//!    schedule (open loop); latency counts from the scheduled send time, so a stall is
//!    not hidden (no coordinated omission). This is the added-latency figure.
//!
//! Then it opens 1,000 idle keep-alive connections to the gateway (each after one
//! request) and reports the growth of the gateway's resident memory per connection.
//! At the end the gateway child closes its gate and verifies the directory (every
//! decision and execution chained, the books balanced).
//!
//! `CALYBRIS_LOAD_ARCHIVE=1` runs the gateway with a request-body archive
//! (`[server] request_archive`: each body appended to a segment before its decision,
//! made durable by the log's group commit), to compare with a run without it;
//! `CALYBRIS_LOAD_UNIQUE=1` makes every request body different (same length), as
//! measured before (the archive of earlier versions was content-addressed and wrote a
//! repeated body once; the segment archive appends every body).
//!
//! `CALYBRIS_LOAD_WATERMARK_MS=N` sets `[server] watermark_interval_ms` (the least time
//! between two writes of the gate log's acknowledgement watermark; default 10, 0: one
//! after every data fdatasync).
//!
//! `CALYBRIS_LOAD_DURABLE_BEFORE=0` sets `[server] durable_before_provider = false`
//! (the provider called without waiting for the decision's sync; default `true`).
//!
//! `CALYBRIS_LOAD_TIMELINE=PREFIX` writes each paced phase's requests (scheduled send
//! time and latency, ms, one per line) to `PREFIX-1.txt` (direct) and `PREFIX-2.txt`
//! (through the gateway): slow requests that share one stall show as a run of
//! consecutive send times.
//!
//! `CALYBRIS_LOAD_GATEWAY_WRAP="valgrind --tool=callgrind --callgrind-out-file=F"` runs
//! the gateway child under that command (instruction counts per request: run twice
//! with different request counts and divide the difference).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use calybris_gateway::config::{ProviderKind, key_hash_hex};
use calybris_gateway::mock::{MockBehavior, MockProvider};
use calybris_gateway::{Gateway, GatewayConfig};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

/// The allocator of the `calybris` binary (its default `mimalloc` feature), so these
/// figures are the served binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "sk-load";
const IDLE_CONNECTIONS: usize = 1_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--role-mock") => role_mock(),
        Some("--role-gateway") => role_gateway(&args[1], &args[2], &args[3], &args[4], &args[5]),
        _ => drive(&args),
    }
}

/// Blocks until the parent closes our standard input.
fn wait_for_parent() {
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        line.clear();
    }
}

fn role_mock() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mock = MockProvider::start("mock", MockBehavior::Ok, 16)
            .await
            .expect("mock");
        println!("{}", mock.base_url(ProviderKind::Openai));
        tokio::task::spawn_blocking(wait_for_parent)
            .await
            .expect("stdin");
        drop(mock);
    });
}

fn role_gateway(mock_url: &str, dir: &str, threads: &str, window_us: &str, syncs: &str) {
    let threads: usize = threads.parse().expect("threads");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::path::PathBuf::from(dir);
    runtime.block_on(async {
        // CALYBRIS_LOAD_ARCHIVE=1: keep every request body in a request-body archive
        // (`[server] request_archive`), to measure what it costs.
        let archive = std::env::var_os("CALYBRIS_LOAD_ARCHIVE")
            .is_some_and(|v| v == "1")
            .then(|| dir.join("request-archive"));
        let archive_line = archive
            .as_ref()
            .map(|a| format!("request_archive = {:?}\n", a.display().to_string()))
            .unwrap_or_default();
        // CALYBRIS_LOAD_WATERMARK_MS=N: `[server] watermark_interval_ms` (else its default).
        let watermark_line = std::env::var("CALYBRIS_LOAD_WATERMARK_MS")
            .ok()
            .map(|ms| {
                let ms: u64 = ms.parse().expect("CALYBRIS_LOAD_WATERMARK_MS: milliseconds");
                format!("watermark_interval_ms = {ms}\n")
            })
            .unwrap_or_default();
        // CALYBRIS_LOAD_DURABLE_BEFORE=0: `[server] durable_before_provider = false`.
        let durable_line = if std::env::var_os("CALYBRIS_LOAD_DURABLE_BEFORE")
            .is_some_and(|v| v == "0")
        {
            "durable_before_provider = false\n"
        } else {
            ""
        };
        let text = format!(
            "[server]\ngate_dir = {:?}\ngroup_commit_window_us = {window_us}\ngroup_commit_syncs = {syncs}\n{watermark_line}{durable_line}{archive_line}\n[providers.p]\nkind = \"openai\"\nbase_url = {:?}\n\n\
             [[policy.models]]\nname = \"m\"\nprovider = \"p\"\ninput_usd_per_mtok = \"0.15\"\noutput_usd_per_mtok = \"0.6\"\nquality_bps = 5000\np95_latency_ms = 0\n\n\
             [tenants.t]\nbudget_usd = \"1000000\"\napi_key_sha256 = [{:?}]\n\n[routing]\nfallback = [\"m\"]\n",
            dir.join("gate").display().to_string(),
            mock_url,
            key_hash_hex(KEY)
        );
        let config = GatewayConfig::from_toml(&text).expect("config");
        let gateway = Gateway::open(&config).expect("gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        let serving = gateway.clone();
        let server = tokio::spawn(async move {
            serving
                .serve(listener, async {
                    let _ = tokio::task::spawn_blocking(wait_for_parent).await;
                })
                .await
        });
        let _ = server.await;
        for _ in 0..500 {
            if gateway.handles() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = gateway.gate().log_stats();
        let per = |total: u64, n: u64| total as f64 / n.max(1) as f64;
        println!(
            "log: {} batches, {:.1} records per batch, {} data fdatasyncs (mean {:.3} ms), {} watermark writes (write+fdatasync mean {:.3} ms)",
            stats.batches,
            per(stats.records, stats.batches),
            stats.data_syncs,
            per(stats.data_sync_nanos, stats.data_syncs) / 1e6,
            stats.watermarks,
            per(stats.watermark_sync_nanos, stats.watermarks) / 1e6
        );
        // The slow syncs, from the latency buckets (bounds in microseconds).
        let above = |us: u64| -> u64 {
            calybris_wal::DATA_SYNC_BUCKET_BOUNDS_US
                .iter()
                .position(|&bound| bound == us)
                .map_or(0, |i| stats.data_sync_buckets[i + 1..].iter().sum())
        };
        println!(
            "data fdatasyncs over 1 ms: {}, over 5 ms: {}, over 25 ms: {}",
            above(1_000),
            above(5_000),
            above(25_000)
        );
        gateway.close().expect("close");
    });
    let report =
        calybris_gate::verify_dir(&dir.join("gate"), &calybris_gate::VerifyOptions::default())
            .expect("verifies");
    println!(
        "gate directory verified: {} decisions, {} executions, books balanced: {}",
        report.counts.decisions, report.counts.executions, report.conservation.balanced
    );
    let _ = std::fs::remove_dir_all(&dir);
}

struct Proc {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Proc {
    /// Starts this executable with `args`; the gateway child under the command in
    /// `CALYBRIS_LOAD_GATEWAY_WRAP` when set (e.g. `valgrind --tool=callgrind`).
    fn spawn(args: &[&str]) -> (Self, String) {
        let exe = std::env::current_exe().expect("exe");
        let wrap = std::env::var("CALYBRIS_LOAD_GATEWAY_WRAP")
            .ok()
            .filter(|_| args.first() == Some(&"--role-gateway"));
        let mut command = match &wrap {
            Some(wrap) => {
                let mut words = wrap.split_whitespace();
                let mut command = Command::new(words.next().expect("a wrapper command"));
                command.args(words).arg(&exe);
                command
            }
            None => Command::new(&exe),
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("address");
        (Self { child, out }, line.trim().to_owned())
    }

    /// User + system CPU time so far (from /proc, clock ticks of 10 ms).
    fn cpu(&self) -> Duration {
        cpu_of(&self.child.id().to_string())
    }

    /// Resident memory, bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }

    fn finish(mut self) -> Vec<String> {
        drop(self.child.stdin.take());
        let mut lines = Vec::new();
        let mut line = String::new();
        while self.out.read_line(&mut line).is_ok_and(|n| n > 0) {
            lines.push(line.trim().to_owned());
            line.clear();
        }
        let _ = self.child.wait();
        lines
    }
}

/// User + system CPU time of process `pid` (`self` for this one) so far, from /proc
/// (clock ticks of 10 ms).
fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

struct Target {
    addr: std::net::SocketAddr,
    path: &'static str,
    auth: bool,
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> Sender {
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

async fn one(sender: &mut Sender, target: &Target, body: &Bytes) {
    sender.ready().await.expect("ready");
    let mut request = hyper::Request::post(target.path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json");
    if target.auth {
        request = request.header("authorization", concat!("Bearer ", "sk-load"));
    }
    let request = request.body(Full::new(body.clone())).expect("request");
    let response = sender.send_request(request).await.expect("answer");
    assert_eq!(response.status(), 200, "status");
    let _ = response.into_body().collect().await.expect("body");
}

/// `requests` requests over `connections` connections; `rate` None: closed loop, Some:
/// that many requests per second in all, on a fixed schedule. Returns the wall time and
/// the sorted latencies.
async fn run(
    target: Arc<Target>,
    body: Bytes,
    requests: usize,
    connections: usize,
    rate: Option<f64>,
) -> (Duration, Vec<Duration>) {
    let per = (requests / connections).max(1);
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(&target).await);
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for (c, mut sender) in senders.into_iter().enumerate() {
        let (target, body) = (target.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per);
            // Paced: connection c sends at offset c/rate, then every connections/rate.
            let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
            let offset = rate.map(|r| Duration::from_secs_f64(c as f64 / r));
            for i in 0..per {
                let begun = match (interval, offset) {
                    (Some(interval), Some(offset)) => {
                        let at = started + offset + interval * u32::try_from(i).expect("i");
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    _ => Instant::now(),
                };
                if unique_bodies() {
                    // Same length every time, a different body (and SHA-256) each.
                    let text = String::from_utf8_lossy(&body).replacen(
                        "gateway?",
                        &format!("g{c:06}-{i:08}?"),
                        1,
                    );
                    one(&mut sender, &target, &Bytes::from(text)).await;
                } else {
                    one(&mut sender, &target, &body).await;
                }
                latencies.push((begun - started, begun.elapsed()));
            }
            latencies
        }));
    }
    let mut timeline = Vec::with_capacity(requests);
    for task in tasks {
        timeline.extend(task.await.expect("worker"));
    }
    write_timeline(rate, &timeline);
    let mut latencies: Vec<Duration> = timeline.iter().map(|&(_, latency)| latency).collect();
    latencies.sort_unstable();
    (started.elapsed(), latencies)
}

/// `CALYBRIS_LOAD_TIMELINE=PREFIX`: each paced phase's requests as lines
/// `SCHEDULED_MS LATENCY_MS`, in `PREFIX-1.txt` (direct) and `PREFIX-2.txt` (through
/// the gateway), to see whether the slow ones cluster in time (one stall) or spread.
fn write_timeline(rate: Option<f64>, timeline: &[(Duration, Duration)]) {
    static PHASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (Some(_), Some(prefix)) = (rate, std::env::var_os("CALYBRIS_LOAD_TIMELINE")) else {
        return;
    };
    let phase = PHASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let mut sorted = timeline.to_vec();
    sorted.sort_unstable();
    let mut text = String::with_capacity(sorted.len() * 20);
    for (at, latency) in sorted {
        text.push_str(&format!("{:.3} {:.3}\n", ms(at), ms(latency)));
    }
    let path = format!("{}-{phase}.txt", prefix.to_string_lossy());
    std::fs::write(&path, text).expect("timeline file");
}

/// `CALYBRIS_LOAD_UNIQUE=1`: every request's body differs (what a real load looks like
/// to the archive).
fn unique_bodies() -> bool {
    static UNIQUE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *UNIQUE.get_or_init(|| std::env::var_os("CALYBRIS_LOAD_UNIQUE").is_some_and(|v| v == "1"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn drive(args: &[String]) {
    let arg = |i: usize, default: f64| {
        args.get(i)
            .and_then(|a| a.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let requests = arg(0, 20_000.0) as usize;
    let connections = (arg(1, 256.0) as usize).max(1);
    let paced = arg(2, 2_000.0).max(1.0);
    let threads = (arg(3, 2.0) as usize).max(1);
    let window_us = arg(4, 200.0) as u64;
    let syncs = arg(5, 2.0) as usize;
    let dir = std::env::temp_dir().join(format!("calybris-gateway-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mock, mock_url) = Proc::spawn(&["--role-mock"]);
    let (gateway, gateway_addr) = Proc::spawn(&[
        "--role-gateway",
        &mock_url,
        &dir.display().to_string(),
        &threads.to_string(),
        &window_us.to_string(),
        &syncs.to_string(),
    ]);
    let mock_addr = mock_url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .parse()
        .expect("mock address");
    let direct = Arc::new(Target {
        addr: mock_addr,
        path: "/v1/chat/completions",
        auth: false,
    });
    let through = Arc::new(Target {
        addr: gateway_addr.parse().expect("gateway address"),
        path: "/v1/chat/completions",
        auth: true,
    });
    let body = Bytes::from(
        serde_json::json!({"model": "m", "max_tokens": 16,
            "messages": [{"role": "user", "content": "How fast is the gateway?"}]})
        .to_string(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Warm both paths (connections, allocators, the gate's first segment).
        let _ = run(direct.clone(), body.clone(), connections * 8, connections, None).await;
        let _ = run(through.clone(), body.clone(), connections * 8, connections, None).await;
        println!(
            "{requests} requests per phase, {connections} connections, loopback, gateway threads {threads}, group-commit window {window_us} us, {syncs} syncs in flight"
        );
        let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
        let mock_cpu = mock.cpu();
        let (direct_time, direct_lat) =
            run(direct.clone(), body.clone(), requests, connections, None).await;
        let mock_cpu = mock.cpu() - mock_cpu;
        let (gateway_cpu, mock_cpu2, driver_cpu) = (gateway.cpu(), mock.cpu(), cpu_of("self"));
        let (through_time, through_lat) =
            run(through.clone(), body.clone(), requests, connections, None).await;
        let (gateway_cpu, mock_cpu2, driver_cpu) = (
            gateway.cpu() - gateway_cpu,
            mock.cpu() - mock_cpu2,
            cpu_of("self") - driver_cpu,
        );
        println!(
            "saturation, mock directly:   {:>7.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms   mock CPU {:>5.1} us/req",
            rate(direct_lat.len(), direct_time),
            ms(percentile(&direct_lat, 0.5)),
            ms(percentile(&direct_lat, 0.99)),
            mock_cpu.as_secs_f64() * 1e6 / direct_lat.len() as f64
        );
        println!(
            "saturation, through gateway: {:>7.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms   gateway CPU {:>5.1} us/req (mock {:.1})",
            rate(through_lat.len(), through_time),
            ms(percentile(&through_lat, 0.5)),
            ms(percentile(&through_lat, 0.99)),
            gateway_cpu.as_secs_f64() * 1e6 / through_lat.len() as f64,
            mock_cpu2.as_secs_f64() * 1e6 / through_lat.len() as f64
        );
        let per_request = |d: Duration| d.as_secs_f64() * 1e6 / through_lat.len() as f64;
        let total = per_request(gateway_cpu + mock_cpu2 + driver_cpu);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "CPU per request through the gateway: gateway {:.1} + mock {:.1} + load generator {:.1} = {total:.1} us; \
             CPU-bound capacity of {cores} cores for all three: {:.0} req/s (gateway alone: {:.0} req/s)",
            per_request(gateway_cpu),
            per_request(mock_cpu2),
            per_request(driver_cpu),
            cores as f64 * 1e6 / total,
            cores as f64 * 1e6 / per_request(gateway_cpu)
        );
        let paced_requests = ((paced * 5.0) as usize).max(connections);
        let (_, direct_lat) =
            run(direct.clone(), body.clone(), paced_requests, connections, Some(paced)).await;
        let (_, through_lat) =
            run(through.clone(), body.clone(), paced_requests, connections, Some(paced)).await;
        println!(
            "paced {paced:.0} req/s, mock directly:   p50 {:>7.3} ms   p99 {:>7.3} ms",
            ms(percentile(&direct_lat, 0.5)),
            ms(percentile(&direct_lat, 0.99))
        );
        println!(
            "paced {paced:.0} req/s, through gateway: p50 {:>7.3} ms   p99 {:>7.3} ms",
            ms(percentile(&through_lat, 0.5)),
            ms(percentile(&through_lat, 0.99))
        );
        println!(
            "added by the gateway (paced): p50 {:.3} ms, p99 {:.3} ms",
            ms(percentile(&through_lat, 0.5)) - ms(percentile(&direct_lat, 0.5)),
            ms(percentile(&through_lat, 0.99)) - ms(percentile(&direct_lat, 0.99))
        );
        // Idle connections: each sends one request, then stays open.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = gateway.rss();
        let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
        for _ in 0..IDLE_CONNECTIONS {
            let mut sender = connect(&through).await;
            one(&mut sender, &through, &body).await;
            idle.push(sender);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = gateway.rss();
        println!(
            "idle keep-alive connections: {IDLE_CONNECTIONS}, gateway RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per idle connection",
            before as f64 / 1_048_576.0,
            after as f64 / 1_048_576.0,
            after.saturating_sub(before) as f64 / 1024.0 / IDLE_CONNECTIONS as f64
        );
        drop(idle);
    });
    for line in gateway.finish() {
        println!("{line}");
    }
    let _ = mock.finish();
    let _ = std::io::stdout().flush();
}
