//! A gateway and its mock providers on loopback, started and stopped by each test.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use calybris_gate::GateRecord;
use calybris_gateway::config::key_hash_hex;
use calybris_gateway::mock::{MockBehavior, MockProvider};
use calybris_gateway::{Gateway, GatewayConfig};
use calybris_wal::{LogFrames, LogReader};

pub const KEY: &str = "sk-test-acme";
pub const OTHER_KEY: &str = "sk-test-beta";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the system's temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "calybris-gateway-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// One provider section and one model on it.
pub struct Upstream {
    pub provider: &'static str,
    pub kind: &'static str,
    pub model: &'static str,
    pub behavior: MockBehavior,
    pub timeout_ms: u64,
    pub quality: &'static str,
    /// More lines of the provider's section (breaker, probes).
    pub provider_extra: String,
    /// The model's capabilities, by name (declared in [`Options::capabilities`]).
    pub capabilities: Vec<&'static str>,
}

impl Upstream {
    pub fn new(provider: &'static str, kind: &'static str, model: &'static str) -> Self {
        Self {
            provider,
            kind,
            model,
            behavior: MockBehavior::Ok,
            timeout_ms: 5_000,
            quality: "0.5",
            provider_extra: String::new(),
            capabilities: Vec::new(),
        }
    }
    pub fn capable(mut self, capabilities: &[&'static str]) -> Self {
        self.capabilities = capabilities.to_vec();
        self
    }
    pub fn behaving(mut self, behavior: MockBehavior) -> Self {
        self.behavior = behavior;
        self
    }
    pub fn quality(mut self, quality: &'static str) -> Self {
        self.quality = quality;
        self
    }
    pub fn extra(mut self, lines: &str) -> Self {
        self.provider_extra = lines.to_owned();
        self
    }
    pub fn timeout(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }
}

pub struct Harness {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub gateway: Option<Gateway>,
    pub mocks: Vec<MockProvider>,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Settings of [`Harness::start`] beyond the upstreams.
pub struct Options {
    pub budget_usd: &'static str,
    pub routing_extra: String,
    pub tenant_extra: String,
    pub max_body_bytes: usize,
    /// More lines of the `[server]` section.
    pub server_extra: String,
    pub price: &'static str,
    /// The policy's capability names.
    pub capabilities: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            budget_usd: "10",
            routing_extra: String::new(),
            tenant_extra: String::new(),
            max_body_bytes: 65_536,
            server_extra: String::new(),
            price: "1",
            capabilities: Vec::new(),
        }
    }
}

impl Harness {
    /// Mocks for `upstreams` (in that order: the first model is the default, the rest
    /// the fallback order), a gateway in a fresh directory, on 127.0.0.1.
    pub async fn start(name: &str, upstreams: Vec<Upstream>, options: Options) -> Self {
        // The quality of a model, "0.5", as the policy file's basis points.
        fn quality_bps(quality: &str) -> u16 {
            let value: f64 = quality.parse().expect("a quality from 0 to 1");
            (value * 10_000.0).round() as u16
        }
        let dir = scratch(name);
        let mut mocks = Vec::new();
        let mut text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ngate_dir = {:?}\nmax_body_bytes = {}\n{}\n\n",
            dir.join("gate").display().to_string(),
            options.max_body_bytes,
            options.server_extra
        );
        if !options.capabilities.is_empty() {
            text.push_str(&format!(
                "[policy]\ncapabilities = {:?}\n\n",
                options.capabilities
            ));
        }
        for upstream in &upstreams {
            let mock = MockProvider::start(upstream.provider, upstream.behavior, 1_000)
                .await
                .expect("mock starts");
            let kind = match upstream.kind {
                "openai" => calybris_gateway::config::ProviderKind::Openai,
                "anthropic" => calybris_gateway::config::ProviderKind::Anthropic,
                _ => calybris_gateway::config::ProviderKind::Ollama,
            };
            text.push_str(&format!(
                "[providers.{}]\nkind = {:?}\nbase_url = {:?}\ntimeout_ms = {}\n{}\n\n",
                upstream.provider,
                upstream.kind,
                mock.base_url(kind),
                upstream.timeout_ms,
                upstream.provider_extra
            ));
            text.push_str(&format!(
                "[[policy.models]]\nname = {:?}\nprovider = {:?}\ninput_usd_per_mtok = {:?}\noutput_usd_per_mtok = {:?}\nquality_bps = {}\np95_latency_ms = 0\ncapabilities = {:?}\n\n",
                upstream.model, upstream.provider, options.price, options.price, quality_bps(upstream.quality),
                upstream.capabilities
            ));
            mocks.push(mock);
        }
        text.push_str(&format!(
            "[tenants.acme]\nbudget_usd = {:?}\napi_key_sha256 = [{:?}]\n{}\n\n[tenants.beta]\nbudget_usd = \"1\"\napi_key_sha256 = [{:?}]\n\n",
            options.budget_usd,
            key_hash_hex(KEY),
            options.tenant_extra,
            key_hash_hex(OTHER_KEY)
        ));
        let fallback: Vec<String> = upstreams.iter().map(|u| format!("{:?}", u.model)).collect();
        text.push_str(&format!(
            "[routing]\ndefault_model = {:?}\nfallback = [{}]\nvalue_usd_per_request = \"1\"\ndefault_max_tokens = 16\n{}\n",
            upstreams[0].model,
            fallback.join(", "),
            options.routing_extra
        ));
        let config = GatewayConfig::from_toml(&text).expect("config parses");
        let gateway = Gateway::open(&config).expect("gateway opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
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
        Self {
            addr,
            dir,
            gateway: Some(gateway),
            mocks,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` to the chat route with [`KEY`]: the response as it comes (status,
    /// headers, a body that may stream).
    pub async fn post_chat(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .body(body)
            .send()
            .await
            .expect("the gateway answers")
    }

    /// POSTs `body` to the chat route with `key`.
    pub async fn chat(&self, key: Option<&str>, body: &str) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .post(self.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, value)
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Stops the server, waits for in-flight work, closes the gate; the returned
    /// directory is removed when dropped.
    pub async fn stop(mut self) -> GateDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
        }
        // Streams still settling hold clones; wait for them, bounded.
        if let Some(gateway) = self.gateway.take() {
            for _ in 0..1_000 {
                if gateway.handles() == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            gateway.close().expect("the gate closes cleanly");
        }
        GateDir {
            root: self.dir.clone(),
            gate: self.dir.join("gate"),
        }
    }
}

/// A stopped gateway's gate directory; its scratch root is removed on drop.
pub struct GateDir {
    root: PathBuf,
    gate: PathBuf,
}

impl std::ops::Deref for GateDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.gate
    }
}

impl Drop for GateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A chat body asking for `model`.
pub fn body(model: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model, "stream": stream, "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    })
    .to_string()
}

/// Every record of the gate log in `dir`.
pub fn records(dir: &std::path::Path) -> Vec<(u64, GateRecord)> {
    let frames = LogFrames::open(&dir.join("log"), None, None).expect("log opens");
    let mut reader = LogReader::<GateRecord>::new(frames);
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry().expect("log reads") {
        out.push((entry.sequence, entry.record));
    }
    out
}

/// The execution records, in log order.
pub fn executions(dir: &std::path::Path) -> Vec<calybris_gate::ExecutionRecord> {
    records(dir)
        .into_iter()
        .filter_map(|(_, record)| match record {
            GateRecord::Execution(execution) => Some(execution),
            _ => None,
        })
        .collect()
}
