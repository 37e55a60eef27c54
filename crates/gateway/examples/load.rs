//! A load figure: requests per second through the gateway against a loopback mock
//! provider, and the latency the gateway adds (p50, p99) over calling the mock directly.
//!
//! `cargo run --release -p calybris-gateway --example load -- [REQUESTS] [CONCURRENCY]`
//! (defaults 5,000 and 32). Everything runs on 127.0.0.1 in this one process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use calybris_gateway::config::{ProviderKind, key_hash_hex};
use calybris_gateway::mock::{MockBehavior, MockProvider};
use calybris_gateway::{Gateway, GatewayConfig};

const KEY: &str = "sk-load";

async fn run(
    client: &reqwest::Client,
    url: Arc<String>,
    body: Arc<String>,
    requests: usize,
    concurrency: usize,
    auth: bool,
) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let per_worker = requests / concurrency;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let begun = Instant::now();
                let mut request = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned());
                if auth {
                    request = request.bearer_auth(KEY);
                }
                let response = request.send().await.expect("answer");
                assert_eq!(response.status(), 200);
                let _ = response.bytes().await.expect("body");
                latencies.push(begun.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("worker"));
    }
    latencies.sort_unstable();
    (started.elapsed(), latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let concurrency: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(32)
        .max(1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mock = MockProvider::start("mock", MockBehavior::Ok, 16).await.expect("mock");
        let dir = std::env::temp_dir().join(format!("calybris-gateway-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "[server]\ngate_dir = {:?}\n\n[providers.p]\nkind = \"openai\"\nbase_url = {:?}\n\n\
             [models.m]\nprovider = \"p\"\ninput_usd_per_mtok = \"0.15\"\noutput_usd_per_mtok = \"0.6\"\nquality = \"0.5\"\n\n\
             [tenants.t]\nbudget_usd = \"1000000\"\napi_key_sha256 = [{:?}]\n\n[routing]\nfallback = [\"m\"]\n",
            dir.display().to_string(),
            mock.base_url(ProviderKind::Openai),
            key_hash_hex(KEY)
        );
        let config = GatewayConfig::from_toml(&text).expect("config");
        let gateway = Gateway::open(&config).expect("gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = gateway.clone();
        let server = tokio::spawn(async move {
            serving
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
        });
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .expect("client");
        let body = Arc::new(
            serde_json::json!({"model": "m", "max_tokens": 16,
                "messages": [{"role": "user", "content": "How fast is the gateway?"}]})
            .to_string(),
        );
        let direct_url = Arc::new(format!("{}/chat/completions", mock.base_url(ProviderKind::Openai)));
        let gateway_url = Arc::new(format!("http://{addr}/v1/chat/completions"));
        // Warm both paths (connections, allocator).
        let _ = run(&client, direct_url.clone(), body.clone(), concurrency * 4, concurrency, false).await;
        let _ = run(&client, gateway_url.clone(), body.clone(), concurrency * 4, concurrency, true).await;
        let (direct_time, direct) = run(&client, direct_url, body.clone(), requests, concurrency, false).await;
        let (gateway_time, through) = run(&client, gateway_url, body, requests, concurrency, true).await;
        let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
        println!("{} requests, {concurrency} concurrent, loopback", direct.len());
        println!(
            "mock directly:    {:>8.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
            rate(direct.len(), direct_time),
            percentile(&direct, 0.5).as_secs_f64() * 1e3,
            percentile(&direct, 0.99).as_secs_f64() * 1e3
        );
        println!(
            "through gateway:  {:>8.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
            rate(through.len(), gateway_time),
            percentile(&through, 0.5).as_secs_f64() * 1e3,
            percentile(&through, 0.99).as_secs_f64() * 1e3
        );
        println!(
            "added by the gateway: p50 {:.3} ms, p99 {:.3} ms (each request: auth, parse, decide + hold, provider call, settle, execution record, durable wait)",
            (percentile(&through, 0.5).as_secs_f64() - percentile(&direct, 0.5).as_secs_f64()) * 1e3,
            (percentile(&through, 0.99).as_secs_f64() - percentile(&direct, 0.99).as_secs_f64()) * 1e3
        );
        let _ = stop.send(());
        let _ = server.await;
        for _ in 0..500 {
            if gateway.handles() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        gateway.close().expect("close");
        let report = calybris_gate::verify_dir(&dir, &calybris_gate::VerifyOptions::default())
            .expect("verifies");
        println!(
            "gate directory verified: {} decisions, {} executions, books balanced: {}",
            report.counts.decisions, report.counts.executions, report.conservation.balanced
        );
        drop(mock);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
