//! The HTTP server: routes, the per-request pipeline, streaming.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use calybris_digest::SealedPolicy;
use calybris_gate::{
    Admission, AttemptSkip, BudgetOutcome, CallerMeta, ExecutionAttempt, ExecutionRecord,
    ExecutionStatus, Gate, GateConfig, GateError, LeaseRefusal, MAX_EXECUTION_ATTEMPTS,
    MAX_EXECUTION_NAME_BYTES, ReservationId,
};
use calybris_kernel::KernelInput;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{Semaphore, mpsc};

use crate::answer::Piece;
use crate::config::{Compiled, CompiledModel, GatewayConfig, sha256};
use crate::error::ApiError;
use crate::health::{Admit, ProviderHealth, Transition, counts_as_failure};
use crate::limits::RateLimiter;
use crate::metrics::{Metrics, escape};
use crate::provider::{AttemptError, ChatMessage, Provider, UpstreamRequest};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The gate could not be opened.
    #[error("gate: {0}")]
    Gate(#[from] GateError),
    /// Other handles still share the gateway.
    #[error("other handles still share the gateway")]
    StillShared,
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
    /// The request-body archive could not be opened.
    #[error("request archive: {0}")]
    Archive(String),
    /// The log's key file could not be read, or holds no usable key.
    #[error("log key file: {0}")]
    Key(String),
}

/// The most bytes of a lease, in a header or the body.
const MAX_LEASE_BYTES: usize = 4_096;
/// The most bytes a request's head (request line and headers) may take; a larger
/// head is answered `431` and its connection closed. Per connection, the server
/// buffers at most this much before the body.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most headers a request may carry (`431` beyond).
pub const MAX_HEADERS: usize = 100;
/// The smallest `[server] segment_limit_bytes` taken (a smaller one is raised to it).
pub const MIN_SEGMENT_LIMIT_BYTES: u64 = 4_096;
/// The wait after an accept error other than a connection's own (for instance no
/// file descriptor left), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

struct Inner {
    gate: Gate,
    compiled: Compiled,
    providers: HashMap<String, Provider>,
    client: reqwest::Client,
    metrics: Metrics,
    limiter: RateLimiter,
    keys: Vec<(usize, usize, [u8; 32])>,
    max_body_bytes: usize,
    head_timeout: Duration,
    concurrency: Semaphore,
    health: HashMap<String, ProviderHealth>,
    local_slot_wait: Duration,
    #[cfg(test)]
    fault: parking_lot::Mutex<Option<Fault>>,
    sequence: AtomicU64,
    nonce: [u8; 16],
    routing: crate::config::RoutingConfig,
    archive: Option<crate::archive::ArchiveWriter>,
    durable_before_provider: bool,
}

/// A running gateway: the gate, the compiled contract, the providers. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("gate_dir", &self.inner.gate.dir())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn elapsed_ms(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_millis()).unwrap_or(u32::MAX)
}

fn bounded(name: &str) -> String {
    let mut end = name.len().min(MAX_EXECUTION_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

impl Gateway {
    /// Compiles `config`, opens its gate directory (creating each tenant the log does not
    /// hold yet with its configured budget) and sets up the providers.
    ///
    /// # Errors
    /// [`GatewayError`].
    pub fn open(config: &GatewayConfig) -> Result<Self, GatewayError> {
        let compiled = config.compile()?;
        let mut gate_config = GateConfig::new(
            &config.server.gate_dir,
            SealedPolicy::new(compiled.policy.clone()),
        )
        .policy_names(compiled.names.clone())
        .group_commit_window(Duration::from_micros(config.server.group_commit_window_us))
        .sync_concurrency(config.server.group_commit_syncs)
        .reopen_holds(config.server.reopen_holds.to_gate())
        .watermark_interval(Duration::from_millis(config.server.watermark_interval_ms))
        .retention(config.server.retention.to_gate())
        .snapshot_every_records(config.server.snapshot_every_records)
        .segment_limit_bytes(
            config
                .server
                .segment_limit_bytes
                .max(MIN_SEGMENT_LIMIT_BYTES),
        );
        for tenant in &compiled.tenants {
            gate_config = gate_config.tenant(&tenant.name, tenant.budget_microunits);
        }
        if let Some(path) = &config.server.log_key_file {
            gate_config = gate_config.key(crate::config::read_log_key(path)?);
        }
        // The archive first: the log is opened through it, so that each of the log's
        // data syncs makes the bodies appended before it durable.
        let archive = match &config.server.request_archive {
            Some(dir) => Some(
                crate::archive::ArchiveWriter::open(
                    dir,
                    crate::archive::ArchiveOptions {
                        max_body_bytes: u64::try_from(config.server.max_body_bytes)
                            .unwrap_or(u64::MAX),
                        keep_segments: config.server.request_archive_keep_segments,
                        ..crate::archive::ArchiveOptions::default()
                    },
                )
                .map_err(|e| GatewayError::Archive(e.to_string()))?,
            ),
            None => None,
        };
        let gate = match &archive {
            Some(archive) => Gate::open_wrapping(gate_config, |dir| archive.synced(dir))?,
            None => Gate::open(gate_config)?,
        };
        let providers = config
            .providers
            .iter()
            .map(|(name, provider)| (name.clone(), Provider::from_config(name, provider)))
            .collect();
        let health = config
            .providers
            .iter()
            .map(|(name, provider)| (name.clone(), ProviderHealth::from_config(provider)))
            .collect();
        // Keep-alive connections to providers are kept for as many requests as may run at
        // once (a smaller pool closes and reopens connections under load); no proxy
        // lookup from the environment per request; Nagle off.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(config.server.max_concurrent_requests.max(1))
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|error| GatewayError::Client(error.to_string()))?;
        let keys = compiled
            .tenants
            .iter()
            .enumerate()
            .flat_map(|(tenant, t)| {
                t.key_hashes
                    .iter()
                    .enumerate()
                    .map(move |(key, hash)| (tenant, key, *hash))
            })
            .collect();
        let sequence = gate.appended_anchor().next_sequence;
        let mut nonce_source = Sha256::new();
        nonce_source.update(now_ms().to_le_bytes());
        nonce_source.update(std::process::id().to_le_bytes());
        let nonce_full: [u8; 32] = nonce_source.finalize().into();
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&nonce_full[..16]);
        Ok(Self {
            inner: Arc::new(Inner {
                gate,
                limiter: RateLimiter::new(compiled.tenants.len()),
                compiled,
                providers,
                client,
                metrics: Metrics::default(),
                keys,
                max_body_bytes: config.server.max_body_bytes,
                head_timeout: Duration::from_millis(config.server.head_timeout_ms.max(1)),
                concurrency: Semaphore::new(config.server.max_concurrent_requests.max(1)),
                health,
                local_slot_wait: Duration::from_millis(config.routing.local_slot_wait_ms),
                #[cfg(test)]
                fault: parking_lot::Mutex::new(None),
                sequence: AtomicU64::new(sequence),
                nonce,
                routing: config.routing.clone(),
                archive,
                durable_before_provider: config.server.durable_before_provider,
            }),
        })
    }

    /// How many handles share this gateway (clones, and streams still settling).
    #[must_use]
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// Closes the gate once this is the last handle (every record durable).
    ///
    /// # Errors
    /// [`GatewayError::StillShared`] while other handles live; [`GatewayError::Gate`].
    pub fn close(self) -> Result<(), GatewayError> {
        let inner = Arc::try_unwrap(self.inner).map_err(|_| GatewayError::StillShared)?;
        inner.gate.close()?;
        Ok(())
    }

    /// The gate the gateway decides through.
    #[must_use]
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// The routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /healthz`,
    /// `GET /metrics`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .method_not_allowed_fallback(|| async {
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "invalid_request_error",
                    "method_not_allowed",
                    "method not allowed on this route",
                )
            })
            .fallback(|| async {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "not_found",
                    "no such route",
                )
            })
            .with_state(self.clone())
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` completes, then stops accepting,
    /// lets the requests in flight finish and closes idle connections before it
    /// returns.
    ///
    /// Each connection's request heads are bounded: at most [`MAX_HEAD_BYTES`] and
    /// [`MAX_HEADERS`] (else `431`), sent within `[server] head_timeout_ms` of the
    /// connection opening or of the previous answer (else the connection closes: a
    /// slow head and an idle kept-alive connection alike); bodies are bounded by `[server] max_body_bytes` (`413`).
    ///
    /// # Errors
    /// None today (accept errors are retried, a connection's errors end that
    /// connection only); the `Result` is kept for I/O that may fail in future.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let probes = self.spawn_probes();
        let router = self.router();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.inner.head_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            // A connection that failed before it was taken
                            // (reset, aborted) costs nothing; anything else (out of
                            // file descriptors, say) is waited out, not spun on.
                            if !matches!(
                                error.kind(),
                                std::io::ErrorKind::ConnectionAborted
                                    | std::io::ErrorKind::ConnectionReset
                                    | std::io::ErrorKind::ConnectionRefused
                                    | std::io::ErrorKind::Interrupted
                            ) {
                                tokio::time::sleep(ACCEPT_BACKOFF).await;
                            }
                            continue;
                        }
                    };
                    // Answers are written whole; Nagle would only hold them back.
                    let _ = stream.set_nodelay(true);
                    let service = hyper_util::service::TowerToHyperService::new(router.clone());
                    let connection = graceful.watch(
                        http.serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                    );
                    tokio::spawn(async move {
                        // A connection's own error (a client that went away, a head
                        // too large or too slow: hyper answered it) ends only it.
                        let _ = connection.await;
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        // In-flight requests finish; idle keep-alive connections close at once.
        graceful.shutdown().await;
        for probe in probes {
            probe.abort();
        }
        Ok(())
    }

    /// Starts one task per provider with a probe interval: every interval it asks the
    /// provider's health URL (within the probe timeout) and reports the outcome to the
    /// provider's breaker (while the breaker is open and cooling down, it does not
    /// probe). The tasks hold the gateway weakly and end with it (or when aborted).
    pub fn spawn_probes(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        for (name, health) in &self.inner.health {
            let Some(interval) = health.probe_interval else {
                continue;
            };
            let weak = Arc::downgrade(&self.inner);
            let name = name.clone();
            handles.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    let gateway = Gateway { inner };
                    gateway.probe(&name).await;
                }
            }));
        }
        handles
    }

    /// One health probe of provider `name` (see [`Gateway::spawn_probes`]).
    pub async fn probe(&self, name: &str) {
        let Some(health) = self.inner.health.get(name) else {
            return;
        };
        let (counts, transition) = health.breaker.probe_counts(Instant::now());
        self.breaker_moved(name, transition);
        if !counts {
            return;
        }
        let healthy = matches!(
            tokio::time::timeout(
                health.probe_timeout,
                self.inner.client.get(&health.probe_url).send()
            )
            .await,
            Ok(Ok(response)) if response.status().is_success()
        );
        self.inner.metrics.inc(
            "calybris_gateway_probes_total",
            format!(
                "provider=\"{}\",outcome=\"{}\"",
                escape(name),
                if healthy { "ok" } else { "failed" }
            ),
        );
        let transition = health.breaker.record(healthy, Instant::now());
        self.breaker_moved(name, transition);
    }

    fn breaker_moved(&self, provider: &str, transition: Transition) {
        if let Some((from, to)) = transition {
            self.inner.metrics.inc(
                "calybris_gateway_breaker_transitions_total",
                format!(
                    "provider=\"{}\",from=\"{}\",to=\"{}\"",
                    escape(provider),
                    from.label(),
                    to.label()
                ),
            );
        }
    }

    /// The breaker state of provider `name`, if it is configured.
    #[must_use]
    pub fn breaker_state(&self, name: &str) -> Option<crate::health::BreakerState> {
        self.inner.health.get(name).map(|h| h.breaker.state())
    }

    /// The Prometheus text of the counters and of every tenant's books.
    #[must_use]
    pub fn metrics_text(&self) -> String {
        let mut gauges = Vec::new();
        for tenant in &self.inner.compiled.tenants {
            if let Ok(books) = self.inner.gate.tenant_books(&tenant.name) {
                let labels = format!("tenant=\"{}\"", escape(&tenant.name));
                gauges.push((
                    "calybris_gateway_tenant_spent_microunits",
                    "Committed spend per tenant, microunits (10^-6 USD).",
                    labels.clone(),
                    books.committed_microunits,
                ));
                gauges.push((
                    "calybris_gateway_tenant_remaining_microunits",
                    "Spendable budget per tenant, microunits (10^-6 USD).",
                    labels.clone(),
                    books.remaining_microunits,
                ));
                gauges.push((
                    "calybris_gateway_tenant_reserved_microunits",
                    "Budget held by open reservations per tenant, microunits.",
                    labels,
                    books.reserved_microunits,
                ));
            }
        }
        for (name, health) in &self.inner.health {
            gauges.push((
                "calybris_gateway_breaker_state",
                "Circuit breaker state per provider: 0 closed, 1 open, 2 half-open.",
                format!("provider=\"{}\"", escape(name)),
                i64::from(health.breaker.state().code()),
            ));
        }
        gauges.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.2.cmp(&b.2)));
        let mut text = self.inner.metrics.render(&gauges);
        let stats = self.inner.gate.log_stats();
        for (name, help, value) in [
            (
                "calybris_gateway_log_batches_total",
                "Group-commit batches written (each covered by a data fdatasync).",
                stats.batches,
            ),
            (
                "calybris_gateway_log_records_total",
                "Records in those batches (records / batches: the mean batch size).",
                stats.records,
            ),
            (
                "calybris_gateway_log_bytes_total",
                "Bytes in those batches.",
                stats.bytes,
            ),
            (
                "calybris_gateway_log_data_sync_nanoseconds_total",
                "Time in the data fdatasyncs (overlapping ones each counted), nanoseconds.",
                stats.data_sync_nanos,
            ),
            (
                "calybris_gateway_log_data_syncs_total",
                "Data fdatasyncs (one covers every batch written before it began).",
                stats.data_syncs,
            ),
            (
                "calybris_gateway_log_watermarks_total",
                "Acknowledgement watermark writes (each fdatasynced).",
                stats.watermarks,
            ),
            (
                "calybris_gateway_log_watermark_sync_nanoseconds_total",
                "Time in watermark writes and fdatasyncs, nanoseconds.",
                stats.watermark_sync_nanos,
            ),
        ] {
            use std::fmt::Write as _;
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        render_sync_histogram(&mut text, &stats);
        text
    }

    fn refuse(&self, error: ApiError) -> Response {
        self.inner.metrics.inc(
            "calybris_gateway_refusals_total",
            format!(
                "status=\"{}\",code=\"{}\"",
                error.status.as_u16(),
                error.code
            ),
        );
        error.into_response()
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(usize, usize), ApiError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("missing API key (Authorization: Bearer ...)"))?;
        let key = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("the Authorization header is not Bearer"))?
            .trim();
        let hash = sha256(key.as_bytes());
        let mut found = None;
        // Every configured key is compared, each in constant time.
        for (tenant, index, stored) in &self.inner.keys {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some((*tenant, *index));
            }
        }
        found.ok_or_else(|| ApiError::unauthorized("invalid API key"))
    }

    fn request_id(&self, headers: &HeaderMap, sequence: u64) -> [u8; 16] {
        let mut hasher = Sha256::new();
        match headers
            .get("x-request-id")
            .map(HeaderValue::as_bytes)
            .filter(|v| !v.is_empty() && v.len() <= 128)
        {
            Some(id) => hasher.update(id),
            None => {
                hasher.update(self.inner.nonce);
                hasher.update(sequence.to_le_bytes());
            }
        }
        let full: [u8; 32] = hasher.finalize().into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&full[..16]);
        id
    }
}

/// The gate log's data fdatasyncs as a Prometheus histogram in seconds (cumulative
/// buckets from [`calybris_wal::DATA_SYNC_BUCKET_BOUNDS_US`]; `_count` is the sum of
/// the buckets, so it always equals the `+Inf` bucket).
fn render_sync_histogram(text: &mut String, stats: &calybris_wal::DurableStats) {
    use std::fmt::Write as _;
    const NAME: &str = "calybris_gateway_log_data_sync_seconds";
    let _ = writeln!(
        text,
        "# HELP {NAME} Data fdatasync latency of the gate log (a slow one delays every \
         answer waiting on it).\n# TYPE {NAME} histogram"
    );
    let mut cumulative = 0u64;
    for (i, &count) in stats.data_sync_buckets.iter().enumerate() {
        cumulative = cumulative.saturating_add(count);
        match calybris_wal::DATA_SYNC_BUCKET_BOUNDS_US.get(i) {
            Some(&bound_us) => {
                #[allow(clippy::cast_precision_loss)] // bounds of at most 10^5 us
                let bound = bound_us as f64 / 1e6;
                let _ = writeln!(text, "{NAME}_bucket{{le=\"{bound}\"}} {cumulative}");
            }
            None => {
                let _ = writeln!(text, "{NAME}_bucket{{le=\"+Inf\"}} {cumulative}");
            }
        }
    }
    #[allow(clippy::cast_precision_loss)] // a sum of nanoseconds, shown in seconds
    let seconds = stats.data_sync_nanos as f64 / 1e9;
    let _ = writeln!(text, "{NAME}_sum {seconds}\n{NAME}_count {cumulative}");
}

async fn healthz(State(gateway): State<Gateway>) -> Response {
    if gateway.inner.gate.is_poisoned() {
        return ApiError::internal("the gate log failed").into_response();
    }
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(gateway): State<Gateway>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gateway.metrics_text(),
    )
        .into_response()
}

async fn models(State(gateway): State<Gateway>) -> Response {
    let data: Vec<Value> = gateway
        .inner
        .compiled
        .models
        .iter()
        .map(|m| json!({"id": m.name, "object": "model", "created": 0, "owned_by": m.provider}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

// ---- the request ----

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
    /// Read by [`crate::tools::parse_tools`].
    #[serde(default)]
    tools: Option<Value>,
    /// Read by [`crate::tools::parse_tool_choice`].
    #[serde(default)]
    tool_choice: Option<Value>,
    /// The legacy function-calling fields: refused, never silently dropped.
    #[serde(default)]
    functions: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    function_call: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    /// An assistant message's calls (read by [`crate::tools::parse_tool_calls`]).
    #[serde(default)]
    tool_calls: Option<Value>,
    /// A tool message's call id.
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// An authority lease as presented.
#[derive(Debug, Deserialize)]
struct Lease {
    lease_id: String,
    issued_by: String,
    scope: Scope,
    /// Seconds of validity from `issued_at`.
    ttl: u64,
    /// Unix seconds.
    issued_at: u64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scope {
    One(String),
    Many(Vec<String>),
}

/// The estimate of a request's input tokens: a quarter of each message's bytes
/// (its text, and its tool calls' ids, names and arguments), rounded up, plus 4 per
/// message and 3 for the reply's priming. Simple, documented, and not a tokenizer:
/// the provider's usage settles the real cost. (Tools offered add a quarter of their
/// bytes, [`crate::tools::tools_bytes`], rounded up.)
#[must_use]
pub fn estimate_input_tokens(messages: &[ChatMessage]) -> u64 {
    messages
        .iter()
        .map(|m| {
            let calls: usize = m
                .tool_calls
                .iter()
                .map(|c| c.id.len() + c.name.len() + c.arguments.len())
                .sum();
            ((m.content.len() + calls) as u64).div_ceil(4) + 4
        })
        .sum::<u64>()
        + 3
}

fn parse_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    serde_json::from_slice::<ChatRequest>(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => {
            ApiError::bad_request("invalid_type", format!("invalid request: {error}"))
        }
        _ => ApiError::bad_request("invalid_json", format!("malformed JSON: {error}")),
    })
}

fn flatten(messages: Vec<InMessage>) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_messages",
            "messages must not be empty",
        ));
    }
    messages
        .into_iter()
        .map(|m| {
            if !matches!(
                m.role.as_str(),
                "system" | "developer" | "user" | "assistant" | "tool"
            ) {
                return Err(ApiError::bad_request(
                    "invalid_role",
                    format!("unknown role {:?}", bounded(&m.role)),
                ));
            }
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(text)) => text,
                Some(Content::Parts(parts)) => parts
                    .into_iter()
                    .filter(|p| p.kind == "text")
                    .filter_map(|p| p.text)
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            let tool_calls = crate::tools::parse_tool_calls(m.tool_calls)?;
            if !tool_calls.is_empty() && m.role != "assistant" {
                return Err(ApiError::bad_request(
                    "invalid_tool_calls",
                    "only an assistant message has tool_calls",
                ));
            }
            let tool_call_id = if m.role == "tool" {
                Some(crate::tools::tool_call_id(m.tool_call_id)?)
            } else {
                None
            };
            let role = if m.role == "developer" {
                "system".to_owned()
            } else {
                m.role
            };
            Ok(ChatMessage {
                role,
                content,
                tool_calls,
                tool_call_id,
            })
        })
        .collect()
}

/// A request body as the pipeline reads it (also what `calybris replay` re-derives).
pub(crate) struct Interpreted {
    /// The model asked for, as an index into the compiled models (`"auto"` resolved).
    pub(crate) requested: usize,
    /// Output tokens estimated and asked for.
    pub(crate) output_tokens: u32,
    /// Whether the answer is streamed.
    pub(crate) stream: bool,
    /// The sampling temperature, passed through.
    pub(crate) temperature: Option<f64>,
    /// The request's `metadata` (where a lease may be).
    pub(crate) metadata: Option<serde_json::Map<String, Value>>,
    /// The conversation, flattened.
    pub(crate) messages: Vec<ChatMessage>,
    /// [`estimate_input_tokens`] of it, plus the tools' share.
    pub(crate) input_estimate: u64,
    /// The tools offered.
    pub(crate) tools: Vec<crate::tools::ToolSpec>,
    /// The `tool_choice`.
    pub(crate) tool_choice: Option<crate::tools::ToolChoice>,
    /// The capability bits the model must have (the tools capability, with tools).
    pub(crate) required_capabilities: u64,
}

/// Parses and checks a request body against the contract.
pub(crate) fn interpret(
    compiled: &Compiled,
    routing: &crate::config::RoutingConfig,
    body: &[u8],
) -> Result<Interpreted, ApiError> {
    let request = parse_request(body)?;
    let requested = if request.model == "auto" {
        compiled.default_model
    } else {
        compiled
            .models
            .iter()
            .position(|m| m.name == request.model)
            .ok_or_else(|| ApiError::unknown_model(&bounded(&request.model)))?
    };
    let output_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .unwrap_or(routing.default_max_tokens);
    if output_tokens == 0 || output_tokens > routing.max_output_tokens {
        return Err(ApiError::bad_request(
            "invalid_max_tokens",
            format!("max_tokens must be 1 to {}", routing.max_output_tokens),
        ));
    }
    if request.functions.is_some() || request.function_call.is_some() {
        return Err(ApiError::bad_request(
            "unsupported_parameter",
            "functions and function_call are not supported; use tools and tool_choice",
        ));
    }
    let tools = crate::tools::parse_tools(request.tools)?;
    let tool_choice = crate::tools::parse_tool_choice(request.tool_choice, &tools)?;
    let required_capabilities = if tools.is_empty() {
        0
    } else {
        compiled.tools_capability.ok_or_else(|| {
            ApiError::bad_request(
                "tools_unsupported",
                "the request offers tools, and no model of this gateway has the tools capability",
            )
        })?
    };
    let messages = flatten(request.messages)?;
    let input_estimate =
        estimate_input_tokens(&messages) + crate::tools::tools_bytes(&tools).div_ceil(4);
    Ok(Interpreted {
        requested,
        output_tokens,
        stream: request.stream.unwrap_or(false),
        temperature: request.temperature,
        metadata: request.metadata,
        messages,
        input_estimate,
        tools,
        tool_choice,
        required_capabilities,
    })
}

/// The kernel's input for an interpreted request.
pub(crate) fn kernel_input(
    compiled: &Compiled,
    requested: usize,
    input_estimate: u64,
    output_tokens: u32,
    required_capabilities: u64,
    sequence: u64,
) -> KernelInput {
    KernelInput {
        request_sequence: sequence,
        requested_model_id: compiled.models[requested].id,
        input_tokens: u32::try_from(input_estimate).unwrap_or(u32::MAX),
        output_tokens,
        business_value_microunits: compiled.value_microunits,
        required_capabilities,
        ..KernelInput::default()
    }
}

enum LeaseCheck {
    Ok,
    Refused {
        reason: &'static str,
        lease_id: String,
        issued_by: String,
    },
}

fn check_lease(
    routing: &crate::config::RoutingConfig,
    headers: &HeaderMap,
    metadata: Option<&serde_json::Map<String, Value>>,
) -> LeaseCheck {
    let refused = |reason, lease_id: &str, issued_by: &str| LeaseCheck::Refused {
        reason,
        lease_id: bounded(lease_id),
        issued_by: bounded(issued_by),
    };
    let raw: Option<Value> = match headers.get("x-calybris-lease") {
        Some(value) if value.len() > MAX_LEASE_BYTES => return refused("malformed", "", ""),
        Some(value) => match serde_json::from_slice(value.as_bytes()) {
            Ok(v) => Some(v),
            Err(_) => return refused("malformed", "", ""),
        },
        None => match metadata.and_then(|m| m.get("lease")) {
            Some(Value::String(text)) => match serde_json::from_str(text) {
                Ok(v) => Some(v),
                Err(_) => return refused("malformed", "", ""),
            },
            Some(other) => Some(other.clone()),
            None => None,
        },
    };
    let Some(raw) = raw else {
        return refused("missing", "", "");
    };
    let Ok(lease) = serde_json::from_value::<Lease>(raw) else {
        return refused("malformed", "", "");
    };
    if !routing.lease_issuers.contains(&lease.issued_by) {
        return refused("unknown-issuer", &lease.lease_id, &lease.issued_by);
    }
    let now_s = now_ms() / 1_000;
    if lease.issued_at > now_s.saturating_add(60)
        || now_s >= lease.issued_at.saturating_add(lease.ttl)
    {
        return refused("expired", &lease.lease_id, &lease.issued_by);
    }
    let scopes: Vec<&str> = match &lease.scope {
        Scope::One(scope) => scope.split_whitespace().collect(),
        Scope::Many(scopes) => scopes.iter().map(String::as_str).collect(),
    };
    if !scopes
        .iter()
        .any(|s| *s == routing.required_scope || *s == "*")
    {
        return refused("out-of-scope", &lease.lease_id, &lease.issued_by);
    }
    LeaseCheck::Ok
}

async fn chat(State(gateway): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    let Ok(_permit) = gateway.inner.concurrency.acquire().await else {
        return gateway.refuse(ApiError::internal("shutting down"));
    };
    let limit = gateway.inner.max_body_bytes;
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > limit as u64)
    {
        return gateway.refuse(ApiError::too_large(limit));
    }
    let (tenant, key) = match gateway.authenticate(&headers) {
        Ok(found) => found,
        Err(error) => return gateway.refuse(error),
    };
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(error) => {
            // Over the limit (a chunked body has no length to check up front), or a
            // body the client framed badly or cut off: told apart.
            let over = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            return gateway.refuse(if over {
                ApiError::too_large(limit)
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_body",
                    format!("the request body could not be read: {error}"),
                )
            });
        }
    };
    // The rest runs in its own task: a client that goes away does not cut the
    // settlement and the execution record short.
    let progress = Progress::shared();
    let request_sha256 = sha256(&body);
    let task = tokio::spawn(handle(
        gateway.clone(),
        headers,
        body,
        (tenant, key),
        request_sha256,
        progress.clone(),
    ));
    match task.await {
        Ok(Ok(response)) => response,
        // An internal error after an admitted decision whose execution was not logged
        // yet (a failed settlement, say): the failure record still goes to the log.
        Ok(Err(error)) if error.status == StatusCode::INTERNAL_SERVER_ERROR => {
            match gateway
                .log_internal_failure(&progress, request_sha256, &error)
                .await
            {
                Ok(()) => gateway.refuse(error),
                Err(logged) => gateway.refuse(logged),
            }
        }
        Ok(Err(error)) => gateway.refuse(error),
        Err(_) => {
            // The task failed unexpectedly (a bug): its admission was abandoned as it
            // unwound (logged); log a failure record bound to the decision, if any.
            let error = ApiError::internal("internal failure; nothing was served");
            match gateway
                .log_internal_failure(&progress, request_sha256, &error)
                .await
            {
                Ok(()) => gateway.refuse(error),
                Err(logged) => gateway.refuse(logged),
            }
        }
    }
}

/// How far a request got: its admitted decision, and whether its execution record
/// was handed to the log (so an internal failure logs one exactly when none was).
#[derive(Debug, Default)]
struct Progress {
    decision: Option<calybris_gate::DecisionRef>,
    executed: bool,
}

type SharedProgress = Arc<parking_lot::Mutex<Progress>>;

impl Progress {
    fn shared() -> SharedProgress {
        Arc::new(parking_lot::Mutex::new(Self::default()))
    }
}

/// Places where a unit test makes the gateway fail on purpose (compiled only for the
/// crate's own tests): the internal-failure path must still log a failure record and
/// answer with a clean error body.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Panic in the request task after the provider served, before settling.
    PanicAfterProvider,
    /// The settlement reports an internal error.
    FailSettle,
    /// Panic in a stream's relay task before it settles.
    PanicInStream,
}

#[cfg(test)]
fn inject(gateway: &Gateway, at: Fault) -> Result<(), ApiError> {
    if *gateway.inner.fault.lock() == Some(at) {
        if at == Fault::FailSettle {
            return Err(ApiError::internal("settling: injected failure"));
        }
        panic!("injected failure at {at:?}");
    }
    Ok(())
}

struct Plan {
    chain: Vec<(usize, u32)>,
    progress: SharedProgress,
    input_estimate: u64,
    request_sha256: [u8; 32],
    messages: Vec<ChatMessage>,
    temperature: Option<f64>,
    tools: Vec<crate::tools::ToolSpec>,
    tool_choice: Option<crate::tools::ToolChoice>,
    started: Instant,
    /// The answer's `created`: the decision's timestamp, in seconds (so the whole
    /// answer is a function of the log and the provider's reply; see `answer`).
    created: u64,
}

async fn handle(
    gateway: Gateway,
    headers: HeaderMap,
    body: Bytes,
    (tenant_index, key_index): (usize, usize),
    request_sha256: [u8; 32],
    progress: SharedProgress,
) -> Result<Response, ApiError> {
    let inner = &gateway.inner;
    let started = Instant::now();
    let routing = &inner.routing;
    let compiled = &inner.compiled;
    let Interpreted {
        requested,
        output_tokens,
        stream,
        temperature,
        metadata,
        messages,
        input_estimate,
        tools,
        tool_choice,
        required_capabilities,
    } = interpret(compiled, routing, &body)?;
    let tenant = &compiled.tenants[tenant_index];
    if let Err(limited) = inner.limiter.admit(
        tenant_index,
        key_index,
        tenant.limits,
        input_estimate + u64::from(output_tokens),
    ) {
        inner.metrics.inc(
            "calybris_gateway_rate_limited_total",
            format!("scope=\"{}\",kind=\"{}\"", limited.scope(), limited.what()),
        );
        return Err(ApiError::rate_limited(format!(
            "the {} limit of {} per minute is reached",
            limited.scope(),
            limited.what()
        )));
    }
    let sequence = inner.sequence.fetch_add(1, Ordering::Relaxed);
    let request_id = gateway.request_id(&headers, sequence);
    let recorded_at_unix_ms = now_ms();
    if routing.authority_required
        && let LeaseCheck::Refused {
            reason,
            lease_id,
            issued_by,
        } = check_lease(routing, &headers, metadata.as_ref())
    {
        let ticket = inner
            .gate
            .record_lease_refusal(LeaseRefusal {
                tenant: tenant.name.clone(),
                request_id,
                recorded_at_unix_ms,
                lease_id,
                issued_by,
                reason: reason.to_owned(),
            })
            .map_err(|e| ApiError::internal(format!("logging the refusal: {e}")))?;
        ticket
            .await
            .map_err(|e| ApiError::internal(format!("logging the refusal: {e}")))?;
        return Err(ApiError::lease(format!(
            "authority lease refused: {reason}"
        )));
    }
    // The input pointer of `calybris replay`: the body, written before its decision
    // (the log's data sync that acknowledges the decision syncs the archive first).
    // A write to the page cache, not a sync: done here, not on a blocking thread.
    if let Some(archive) = &inner.archive {
        archive
            .append(&request_sha256, &body)
            .map_err(|e| ApiError::internal(format!("archiving the request: {e}")))?;
    }
    let input = kernel_input(
        compiled,
        requested,
        input_estimate,
        output_tokens,
        required_capabilities,
        sequence,
    );
    let admission = inner
        .gate
        .decide_with(
            &tenant.name,
            input,
            CallerMeta {
                request_id,
                recorded_at_unix_ms,
            },
        )
        .map_err(|e| ApiError::internal(format!("the gate refused to decide: {e}")))?;
    let decision = *admission.decision();
    inner.metrics.inc(
        "calybris_gateway_decisions_total",
        format!(
            "action=\"{:?}\",reason=\"{:?}\",budget=\"{}\"",
            decision.action,
            decision.reason,
            budget_label(admission.budget())
        ),
    );
    if !admission.is_admitted() {
        let budget = admission.budget();
        admission
            .ticket()
            .clone()
            .await
            .map_err(|e| ApiError::internal(format!("logging the decision: {e}")))?;
        return Err(match budget {
            BudgetOutcome::RejectedByKernel => ApiError::bad_request(
                "request_rejected",
                format!("the policy rejected the request: {:?}", decision.reason),
            ),
            BudgetOutcome::Insufficient {
                remaining_microunits,
            } => ApiError::budget(format!(
                "budget refused: {remaining_microunits} microunits left, {} needed",
                decision.estimated_cost_microunits
            )),
            _ => ApiError::budget(format!("budget refused: {}", budget_label(budget))),
        });
    }
    progress.lock().decision = Some(admission.decision_ref());
    if inner.durable_before_provider {
        // The reservation is on disk before anything is spent on its behalf: an error
        // here drops the admission (abandoned, logged when the log still takes
        // records) and the caller logs the failure record.
        admission
            .ticket()
            .clone()
            .await
            .map_err(|e| ApiError::internal(format!("logging the decision: {e}")))?;
    }
    // The chain: the decision's model, then the contract's order; each model asked for
    // no more output than the hold covers at its own prices.
    let held = admission.budget().held_microunits();
    // An admitted decision selected a model: the gate's policy was compiled from the
    // same contract, so the model is one of the contract's.
    debug_assert!(
        decision.is_selection()
            && compiled
                .models
                .iter()
                .any(|m| m.id == decision.selected_model_id),
        "admitted decision selects model {}, which the contract does not hold",
        decision.selected_model_id
    );
    let selected = compiled
        .models
        .iter()
        .position(|m| m.id == decision.selected_model_id)
        .unwrap_or(requested);
    let mut chain = vec![(selected, output_tokens)];
    for &index in &compiled.order {
        if chain.len() >= MAX_EXECUTION_ATTEMPTS {
            break;
        }
        // A fallback has what the request requires (tools) as the decision's has.
        if chain.iter().any(|(i, _)| *i == index)
            || compiled.models[index].capabilities & required_capabilities != required_capabilities
        {
            continue;
        }
        let cap = max_output_within(&compiled.models[index], input_estimate, held, output_tokens);
        if cap > 0 {
            chain.push((index, cap));
        }
    }
    let plan = Plan {
        chain,
        input_estimate,
        request_sha256,
        progress,
        messages,
        temperature,
        tools,
        tool_choice,
        started,
        created: recorded_at_unix_ms / 1_000,
    };
    if stream {
        Ok(run_stream(gateway.clone(), admission, plan).await)
    } else {
        run_whole(&gateway, admission, plan).await
    }
}

/// The most output tokens (at most `wanted`) whose cost at `model`'s prices, with
/// `input` tokens, stays within `held` (so a decision that held nothing falls back only
/// to models that cost nothing).
pub(crate) fn max_output_within(model: &CompiledModel, input: u64, held: u64, wanted: u32) -> u32 {
    let input_cost = model.cost_microunits(input, 0);
    if input_cost > held {
        return 0;
    }
    if model.output_micro_per_mtok == 0 {
        return wanted;
    }
    let room = u128::from(held - input_cost) * 1_000_000 / u128::from(model.output_micro_per_mtok);
    u32::try_from(room.min(u128::from(wanted))).unwrap_or(wanted)
}

fn budget_label(budget: BudgetOutcome) -> &'static str {
    match budget {
        BudgetOutcome::RejectedByKernel => "rejected_by_kernel",
        BudgetOutcome::NotPriced => "not_priced",
        BudgetOutcome::Reserved { .. } => "reserved",
        BudgetOutcome::Insufficient { .. } => "insufficient",
        BudgetOutcome::ReservedCapExceeded { .. } => "reserved_cap_exceeded",
        BudgetOutcome::TooManyOpenReservations => "too_many_open_reservations",
    }
}

fn upstream(plan: &Plan, model: &CompiledModel, max_tokens: u32) -> UpstreamRequest {
    UpstreamRequest {
        model: model.upstream.clone(),
        messages: plan.messages.clone(),
        max_tokens,
        temperature: plan.temperature,
        tools: plan.tools.clone(),
        tool_choice: plan.tool_choice.clone(),
    }
}

impl Gateway {
    /// Reports an attempt's outcome to its provider's breaker and metrics; the attempt.
    fn attempt_done(
        &self,
        model: &CompiledModel,
        started: Instant,
        result: Result<(), &AttemptError>,
    ) -> ExecutionAttempt {
        self.report_health(model, result);
        self.attempt_metrics(model, started, result)
    }

    /// Reports an outcome to `model`'s provider's breaker.
    fn report_health(&self, model: &CompiledModel, result: Result<(), &AttemptError>) {
        if let Some(health) = self.inner.health.get(&model.provider) {
            let now = Instant::now();
            let transition = match result {
                Ok(()) => health.breaker.record(true, now),
                Err(error) if counts_as_failure(error) => health.breaker.record(false, now),
                Err(_) => {
                    health.breaker.abandon_trial();
                    None
                }
            };
            self.breaker_moved(&model.provider, transition);
        }
    }

    /// Counts an attempt in the provider metrics; the attempt.
    fn attempt_metrics(
        &self,
        model: &CompiledModel,
        started: Instant,
        result: Result<(), &AttemptError>,
    ) -> ExecutionAttempt {
        let latency_ms = elapsed_ms(started);
        let provider = escape(&model.provider);
        self.inner.metrics.inc(
            "calybris_gateway_provider_requests_total",
            format!(
                "provider=\"{provider}\",outcome=\"{}\"",
                match result {
                    Ok(()) => "ok",
                    Err(AttemptError::Timeout) => "timeout",
                    Err(AttemptError::Status(_)) => "status",
                    Err(_) => "error",
                }
            ),
        );
        self.inner.metrics.add(
            "calybris_gateway_provider_latency_ms_sum",
            format!("provider=\"{provider}\""),
            u64::from(latency_ms),
        );
        self.inner.metrics.inc(
            "calybris_gateway_provider_latency_ms_count",
            format!("provider=\"{provider}\""),
        );
        ExecutionAttempt {
            provider: bounded(&model.provider),
            model: bounded(&model.name),
            http_status: match result {
                Ok(()) => 200,
                Err(error) => error.http_status(),
            },
            success: result.is_ok(),
            latency_ms,
            skipped: None,
        }
    }

    /// Whether `model`'s provider may be called now: its breaker admits the attempt and,
    /// for a local provider, its single slot was free within the configured wait (the
    /// permit is then held for the attempt). Otherwise the skipped attempt to record.
    async fn gate_attempt(
        &self,
        model: &CompiledModel,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ExecutionAttempt> {
        let Some(health) = self.inner.health.get(&model.provider) else {
            return Ok(None);
        };
        let started = Instant::now();
        let (admit, transition) = health.breaker.admit(started);
        self.breaker_moved(&model.provider, transition);
        if admit == Admit::Skip {
            return Err(self.attempt_skipped(model, started, AttemptSkip::CircuitOpen));
        }
        match health.take_slot(self.inner.local_slot_wait).await {
            Ok(permit) => Ok(permit),
            Err(()) => {
                if admit == Admit::Trial {
                    health.breaker.abandon_trial();
                }
                Err(self.attempt_skipped(model, started, AttemptSkip::LocalSlotBusy))
            }
        }
    }

    fn attempt_skipped(
        &self,
        model: &CompiledModel,
        started: Instant,
        skip: AttemptSkip,
    ) -> ExecutionAttempt {
        self.inner.metrics.inc(
            "calybris_gateway_attempts_skipped_total",
            format!(
                "provider=\"{}\",reason=\"{}\"",
                escape(&model.provider),
                match skip {
                    AttemptSkip::CircuitOpen => "circuit_open",
                    AttemptSkip::LocalSlotBusy => "local_slot_busy",
                }
            ),
        );
        ExecutionAttempt {
            provider: bounded(&model.provider),
            model: bounded(&model.name),
            http_status: 0,
            success: false,
            latency_ms: elapsed_ms(started),
            skipped: Some(skip),
        }
    }

    /// A stream that had opened is over: its provider's breaker hears of it (a clean
    /// end, or a client that went away while the provider was streaming, is a
    /// success; a cut is a failure, as for a whole answer), a cut is counted in
    /// `calybris_gateway_provider_streams_cut_total` and its attempt marked failed.
    fn stream_ended(
        &self,
        model: &CompiledModel,
        attempt: Option<&mut ExecutionAttempt>,
        end: &StreamEnd,
    ) {
        match end {
            StreamEnd::Ended | StreamEnd::ClientGone => self.report_health(model, Ok(())),
            StreamEnd::Cut(error) => {
                self.report_health(model, Err(error));
                self.inner.metrics.inc(
                    "calybris_gateway_provider_streams_cut_total",
                    format!(
                        "provider=\"{}\",reason=\"{}\"",
                        escape(&model.provider),
                        match error {
                            AttemptError::Timeout => "timeout",
                            AttemptError::Truncated => "truncated",
                            _ => "malformed",
                        }
                    ),
                );
                // The attempt that opened the stream is the chain's last one.
                debug_assert!(attempt.as_ref().is_some_and(|a| a.success));
                if let Some(attempt) = attempt {
                    attempt.success = false;
                }
            }
        }
    }

    fn fallback_served(&self, attempts: &[ExecutionAttempt], model: &CompiledModel) {
        if attempts.len() > 1 {
            self.inner.metrics.inc(
                "calybris_gateway_fallbacks_total",
                format!("model=\"{}\"", escape(&model.name)),
            );
        }
    }

    /// Settles `admission` at `cost`; an overrun the budget cannot cover commits the
    /// whole hold instead (the execution record keeps the real cost). Returns what was
    /// settled.
    fn settle(&self, admission: Admission, cost: u64) -> Result<u64, ApiError> {
        // Only an admitted decision has something to settle.
        debug_assert!(admission.is_admitted(), "settling a refused decision");
        let gate = &self.inner.gate;
        let sequence = admission.log_sequence();
        let held = admission.budget().held_microunits();
        let result = if cost == 0 {
            gate.release(admission).map(|_| 0)
        } else {
            gate.settle(admission, cost).map(|_| cost)
        };
        match result {
            Ok(settled) => Ok(settled),
            Err(GateError::OverrunNotCovered { .. }) => gate
                .settle_by_id(ReservationId(sequence), held)
                .map(|_| held)
                .map_err(|e| ApiError::internal(format!("settling: {e}"))),
            Err(e) => Err(ApiError::internal(format!("settling: {e}"))),
        }
    }

    /// Logs the failure record of an internal error, bound to the request's admitted
    /// decision, unless its execution was already handed to the log (or no decision
    /// was admitted: a refused decision's record is its own account).
    async fn log_internal_failure(
        &self,
        progress: &SharedProgress,
        request_sha256: [u8; 32],
        error: &ApiError,
    ) -> Result<(), ApiError> {
        let decision = {
            let mut progress = progress.lock();
            match progress.decision {
                Some(decision) if !progress.executed => {
                    progress.executed = true;
                    decision
                }
                _ => return Ok(()),
            }
        };
        self.inner
            .metrics
            .inc("calybris_gateway_internal_failures_total", String::new());
        let mut record = blank_execution(request_sha256, ExecutionStatus::InternalError, 500);
        record.response_sha256 = sha256(error.body().to_string().as_bytes());
        self.log_execution(decision, record).await
    }

    /// Marks the request's execution as logged, then logs it (see
    /// [`Gateway::log_execution`]).
    async fn log_execution_of(
        &self,
        plan: &Plan,
        decision: calybris_gate::DecisionRef,
        record: ExecutionRecord,
    ) -> Result<(), ApiError> {
        plan.progress.lock().executed = true;
        self.log_execution(decision, record).await
    }

    /// Records the execution and waits until it, and so everything before it, is durable.
    async fn log_execution(
        &self,
        decision: calybris_gate::DecisionRef,
        record: ExecutionRecord,
    ) -> Result<(), ApiError> {
        // The chain is cut at MAX_EXECUTION_ATTEMPTS and every name is bounded, so the
        // gate never refuses the record for its size (a refused one would leave an
        // answered request without its execution record).
        debug_assert!(
            record.within_bounds(),
            "execution record over its bounds: {} attempts",
            record.attempts.len()
        );
        let ticket = self
            .inner
            .gate
            .record_execution(decision, record)
            .map_err(|e| ApiError::internal(format!("logging the execution: {e}")))?;
        ticket
            .await
            .map(|_| ())
            .map_err(|e| ApiError::internal(format!("logging the execution: {e}")))
    }
}

/// How a relayed stream ended.
#[derive(Debug)]
enum StreamEnd {
    /// The provider's end marker came.
    Ended,
    /// The provider failed after its first event.
    Cut(AttemptError),
    /// The client went away.
    ClientGone,
}

impl StreamEnd {
    const fn status(&self) -> ExecutionStatus {
        match self {
            Self::Ended => ExecutionStatus::Served,
            Self::Cut(_) => ExecutionStatus::StreamCut,
            Self::ClientGone => ExecutionStatus::ClientDisconnected,
        }
    }
}

/// What walking a plan's chain found ([`Gateway::walk_chain`]).
struct Walked<T> {
    /// Every attempt, skipped ones too, in order.
    attempts: Vec<ExecutionAttempt>,
    /// The last attempt's error, if any failed.
    last_error: Option<AttemptError>,
    /// The attempt that succeeded: its model (an index), its output cap, what it
    /// gave, and a local provider's slot, still held.
    found: Option<(usize, u32, T, Option<tokio::sync::OwnedSemaphorePermit>)>,
}

impl Gateway {
    /// Walks `plan`'s chain in order: a model whose provider's breaker is open, or
    /// whose local slot stays busy, is skipped (a skipped attempt); each other is
    /// asked with `call` until one succeeds. Failures go to the breaker at once; a
    /// success too, unless `defer_success` (a stream reports at its end, see
    /// [`Gateway::stream_ended`]).
    async fn walk_chain<'a, T, Call, Attempt>(
        &'a self,
        plan: &Plan,
        defer_success: bool,
        call: Call,
    ) -> Walked<T>
    where
        Call: Fn(&'a Provider, UpstreamRequest) -> Attempt,
        Attempt: std::future::Future<Output = Result<T, AttemptError>>,
    {
        let inner = &self.inner;
        let mut walked = Walked {
            attempts: Vec::with_capacity(plan.chain.len()),
            last_error: None,
            found: None,
        };
        for &(index, max_tokens) in &plan.chain {
            let model = &inner.compiled.models[index];
            let Some(provider) = inner.providers.get(&model.provider) else {
                continue;
            };
            let slot = match self.gate_attempt(model).await {
                Ok(slot) => slot,
                Err(skipped) => {
                    walked.attempts.push(skipped);
                    continue;
                }
            };
            let started = Instant::now();
            match call(provider, upstream(plan, model, max_tokens)).await {
                Ok(value) => {
                    walked.attempts.push(if defer_success {
                        self.attempt_metrics(model, started, Ok(()))
                    } else {
                        self.attempt_done(model, started, Ok(()))
                    });
                    walked.found = Some((index, max_tokens, value, slot));
                    break;
                }
                Err(error) => {
                    walked
                        .attempts
                        .push(self.attempt_done(model, started, Err(&error)));
                    walked.last_error = Some(error);
                }
            }
        }
        debug_assert!(walked.attempts.len() <= plan.chain.len());
        walked
    }
}

struct Served {
    model: usize,
    text: String,
    tool_calls: Vec<crate::tools::ToolCall>,
    input_tokens: u64,
    output_tokens: u64,
    finish_reason: String,
}

fn failure(last: Option<&AttemptError>, attempts: &[ExecutionAttempt]) -> ApiError {
    if last.is_none()
        && let Some(skip) = attempts.iter().rev().find_map(|a| a.skipped)
    {
        return ApiError::provider(format!(
            "no provider could be called (last {})",
            skip.as_str()
        ));
    }
    match last {
        Some(AttemptError::Timeout) => {
            ApiError::timeout("every provider attempt timed out or failed")
        }
        Some(error) => ApiError::provider(format!("every provider attempt failed; last: {error}")),
        None => ApiError::provider("no provider could serve within the reservation"),
    }
}

/// The execution record of an answer `model` gave (whole, or a stream however it
/// ended): HTTP 200, its tokens and cost, every attempt.
fn served_record(
    plan: &Plan,
    status: ExecutionStatus,
    model: &CompiledModel,
    response_sha256: [u8; 32],
    (input_tokens, output_tokens, cost_microunits): (u64, u64, u64),
    attempts: Vec<ExecutionAttempt>,
) -> ExecutionRecord {
    ExecutionRecord {
        provider: bounded(&model.provider),
        model: bounded(&model.name),
        response_sha256,
        latency_ms: elapsed_ms(plan.started),
        input_tokens,
        output_tokens,
        cost_microunits,
        attempts,
        ..execution(plan, status, 200)
    }
}

impl Gateway {
    /// Nothing served: the hold is released and a `ProviderFailed` record with every
    /// attempt and the hash of the error body the client gets is logged.
    async fn log_nothing_served(
        &self,
        admission: Admission,
        plan: &Plan,
        attempts: Vec<ExecutionAttempt>,
        error: &ApiError,
    ) -> Result<(), ApiError> {
        let decision = admission.decision_ref();
        self.settle(admission, 0)?;
        let record = ExecutionRecord {
            response_sha256: sha256(error.body().to_string().as_bytes()),
            latency_ms: elapsed_ms(plan.started),
            attempts,
            ..execution(plan, ExecutionStatus::ProviderFailed, error.status.as_u16())
        };
        self.log_execution_of(plan, decision, record).await
    }
}

fn execution(plan: &Plan, status: ExecutionStatus, http_status: u16) -> ExecutionRecord {
    blank_execution(plan.request_sha256, status, http_status)
}

fn blank_execution(
    request_sha256: [u8; 32],
    status: ExecutionStatus,
    http_status: u16,
) -> ExecutionRecord {
    ExecutionRecord {
        decision_sequence: 0,
        decision_digest: calybris_digest::Digest::default(),
        provider: String::new(),
        model: String::new(),
        request_sha256,
        response_sha256: [0; 32],
        latency_ms: 0,
        status,
        http_status,
        input_tokens: 0,
        output_tokens: 0,
        cost_microunits: 0,
        attempts: Vec::new(),
    }
}

async fn run_whole(
    gateway: &Gateway,
    admission: Admission,
    plan: Plan,
) -> Result<Response, ApiError> {
    let inner = &gateway.inner;
    let decision = admission.decision_ref();
    let client = &inner.client;
    let Walked {
        attempts,
        last_error,
        found,
    } = gateway
        .walk_chain(&plan, false, |provider, request| async move {
            provider.complete(client, &request).await
        })
        .await;
    // A local provider's slot is free again once the whole answer is in.
    let served = found.map(|(index, _, completion, _slot)| Served {
        model: index,
        input_tokens: completion.input_tokens.unwrap_or(plan.input_estimate),
        output_tokens: completion
            .output_tokens
            .unwrap_or_else(|| crate::answer::estimate_output(&completion)),
        text: completion.text,
        tool_calls: completion.tool_calls,
        finish_reason: completion.finish_reason,
    });
    let sequence = admission.log_sequence();
    let Some(served) = served else {
        let error = failure(last_error.as_ref(), &attempts);
        gateway
            .log_nothing_served(admission, &plan, attempts, &error)
            .await?;
        return Err(error);
    };
    let model = &inner.compiled.models[served.model];
    gateway.fallback_served(&attempts, model);
    let cost = model.cost_microunits(served.input_tokens, served.output_tokens);
    #[cfg(test)]
    inject(gateway, Fault::PanicAfterProvider)?;
    #[cfg(test)]
    inject(gateway, Fault::FailSettle)?;
    gateway.settle(admission, cost)?;
    let body = crate::answer::whole_body(&crate::answer::Whole {
        sequence,
        created: plan.created,
        model: &model.name,
        text: &served.text,
        tool_calls: &served.tool_calls,
        finish_reason: &served.finish_reason,
        input_tokens: served.input_tokens,
        output_tokens: served.output_tokens,
    });
    let record = served_record(
        &plan,
        ExecutionStatus::Served,
        model,
        sha256(body.as_bytes()),
        (served.input_tokens, served.output_tokens, cost),
        attempts,
    );
    gateway.log_execution_of(&plan, decision, record).await?;
    Ok(with_headers(
        ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        sequence,
        model,
    ))
}

fn with_headers(mut response: Response, sequence: u64, model: &CompiledModel) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&sequence.to_string()) {
        headers.insert("x-calybris-decision", value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{}/{}", model.provider, model.name)) {
        headers.insert("x-calybris-served-by", value);
    }
    response
}

async fn run_stream(gateway: Gateway, admission: Admission, plan: Plan) -> Response {
    let inner = &gateway.inner;
    let decision = admission.decision_ref();
    let sequence = admission.log_sequence();
    let client = &inner.client;
    // A stream is open once its first event came; the breaker hears of it at its end.
    let Walked {
        mut attempts,
        last_error,
        found,
    } = gateway
        .walk_chain(&plan, true, |provider, request| async move {
            let mut stream = provider.stream(client, &request).await?;
            let first = stream.next().await?;
            Ok((stream, first))
        })
        .await;
    // A local provider's slot is held until its stream ends.
    let Some((index, max_tokens, (mut stream, first), slot)) = found else {
        let error = failure(last_error.as_ref(), &attempts);
        let result = gateway
            .log_nothing_served(admission, &plan, attempts, &error)
            .await;
        return match result {
            Ok(()) => gateway.refuse(error),
            Err(internal) => {
                // A failed settlement, say: the failure record still goes to the log.
                let logged = gateway
                    .log_internal_failure(&plan.progress, plan.request_sha256, &internal)
                    .await;
                gateway.refuse(logged.err().unwrap_or(internal))
            }
        };
    };
    // Nothing reaches the client before the decision is durable.
    if let Err(e) = admission.ticket().clone().await {
        drop(admission);
        let error = ApiError::internal(format!("logging the decision: {e}"));
        let logged = gateway
            .log_internal_failure(&plan.progress, plan.request_sha256, &error)
            .await;
        return gateway.refuse(logged.err().unwrap_or(error));
    }
    let model = inner.compiled.models[index].clone();
    gateway.fallback_served(&attempts, &model);
    let (sender, receiver) = mpsc::channel::<Bytes>(16);
    let created = plan.created;
    let pump_gateway = gateway.clone();
    let (supervisor_gateway, progress, request_sha256) =
        (gateway.clone(), plan.progress.clone(), plan.request_sha256);
    let pump = tokio::spawn(async move {
        let gateway = pump_gateway;
        let mut answer = crate::answer::StreamAnswer::new(sequence, created, &model.name);
        let mut hasher = Sha256::new();
        let mut connected = true;
        let send = async |text: String, hasher: &mut Sha256, connected: &mut bool| {
            if *connected {
                hasher.update(text.as_bytes());
                if sender.send(Bytes::from(text)).await.is_err() {
                    *connected = false;
                }
            }
        };
        send(answer.first(), &mut hasher, &mut connected).await;
        let mut next = first;
        // Until the provider's end marker, the provider failing (a cut, garbage, a
        // provider that never stops), or the client going away.
        let mut end = StreamEnd::ClientGone;
        while connected {
            match answer.feed(next) {
                Ok(Piece::Send(bytes)) => send(bytes, &mut hasher, &mut connected).await,
                Ok(Piece::Quiet) => {}
                Ok(Piece::End) => {
                    end = StreamEnd::Ended;
                    break;
                }
                Err(error) => {
                    end = StreamEnd::Cut(error);
                    break;
                }
            }
            match stream.next().await {
                Ok(event) => next = event,
                Err(error) => {
                    end = StreamEnd::Cut(error);
                    break;
                }
            }
        }
        drop(stream);
        drop(slot);
        let status = end.status();
        gateway.stream_ended(&model, attempts.last_mut(), &end);
        let ended = matches!(end, StreamEnd::Ended);
        // What was relayed is what is settled (the provider's counts when it sent them).
        let (input_tokens, output_tokens) = answer.tokens(plan.input_estimate, max_tokens);
        debug_assert_eq!(ended, status == ExecutionStatus::Served);
        let cost = model.cost_microunits(input_tokens, output_tokens);
        let tail = if ended {
            answer.tail(input_tokens, output_tokens)
        } else {
            format!(
                "data: {}\n\n",
                ApiError::provider("the provider stream failed").body()
            )
        };
        hasher.update(tail.as_bytes());
        let response_sha256: [u8; 32] = hasher.finalize().into();
        #[cfg(test)]
        let _ = inject(&gateway, Fault::PanicInStream);
        let logged = async {
            gateway.settle(admission, cost)?;
            let record = served_record(
                &plan,
                status,
                &model,
                response_sha256,
                (input_tokens, output_tokens, cost),
                attempts,
            );
            gateway.log_execution_of(&plan, decision, record).await
        }
        .await;
        match logged {
            // The end marker goes out only once the execution is in the log.
            Ok(()) if connected => {
                let _ = sender.send(Bytes::from(tail)).await;
            }
            Ok(()) => {}
            Err(error) => {
                // The client sees the stream end without its end marker.
                let _ = gateway
                    .log_internal_failure(&plan.progress, plan.request_sha256, &error)
                    .await;
            }
        }
    });
    // A relay task that fails unexpectedly (a bug) dropped its admission as it unwound
    // (abandoned, logged) and its sender (the client's stream ends without its end
    // marker); its failure record is logged here.
    tokio::spawn(async move {
        if pump.await.is_err() {
            let error = ApiError::internal("internal failure; the stream was cut");
            let _ = supervisor_gateway
                .log_internal_failure(&progress, request_sha256, &error)
                .await;
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(
        receiver,
        |mut receiver| async {
            receiver
                .recv()
                .await
                .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), receiver))
        },
    ));
    let response = (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    with_headers(response, sequence, &gateway.inner.compiled.models[index])
}

#[cfg(test)]
mod tests {
    //! The internal-failure path, driven by the typed [`Fault`] hook over real loopback
    //! HTTP: a failure record is logged, bound to the admitted decision, the client
    //! gets a clean OpenAI-style error body, the hold is released and the log verifies.

    use super::*;
    use crate::config::{ProviderKind, key_hash_hex};
    use crate::mock::{MockBehavior, MockProvider};
    use calybris_gate::GateRecord;

    const KEY: &str = "sk-fault";

    struct Running {
        gateway: Gateway,
        addr: std::net::SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
        _mock: MockProvider,
    }

    async fn start(dir: &std::path::Path) -> Running {
        let mock = MockProvider::start("mock", MockBehavior::Ok, 8)
            .await
            .expect("mock");
        let text = format!(
            "[server]\ngate_dir = {:?}\n\n[providers.p]\nkind = \"openai\"\nbase_url = {:?}\n\n\
             [[policy.models]]\nname = \"m\"\nprovider = \"p\"\ninput_usd_per_mtok = \"1\"\noutput_usd_per_mtok = \"1\"\nquality_bps = 5000\np95_latency_ms = 0\n\n\
             [tenants.t]\nbudget_usd = \"10\"\napi_key_sha256 = [{:?}]\n\n[routing]\nfallback = [\"m\"]\n",
            dir.join("gate").display().to_string(),
            mock.base_url(ProviderKind::Openai),
            key_hash_hex(KEY)
        );
        let config = GatewayConfig::from_toml(&text).expect("config");
        let gateway = Gateway::open(&config).expect("gateway");
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
        Running {
            gateway,
            addr,
            stop,
            server,
            _mock: mock,
        }
    }

    async fn stop(running: Running) {
        let _ = running.stop.send(());
        let _ = running.server.await;
        for _ in 0..500 {
            if running.gateway.handles() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running.gateway.close().expect("the gate closes");
    }

    async fn chat(addr: std::net::SocketAddr, stream: bool) -> (u16, String) {
        let response = reqwest::Client::new()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(
                json!({"model": "m", "max_tokens": 8, "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
            )
            .send()
            .await
            .expect("answer");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    fn executions(gate_dir: &std::path::Path) -> Vec<ExecutionRecord> {
        let frames =
            calybris_wal::LogFrames::open(&gate_dir.join("log"), None, None).expect("log opens");
        let mut reader = calybris_wal::LogReader::<GateRecord>::new(frames);
        let mut out = Vec::new();
        while let Some(entry) = reader.next_entry().expect("log reads") {
            if let GateRecord::Execution(execution) = entry.record {
                out.push(execution);
            }
        }
        out
    }

    fn verified(gate_dir: &std::path::Path) {
        let report = calybris_gate::verify_dir(gate_dir, &calybris_gate::VerifyOptions::default())
            .expect("the directory verifies");
        assert!(report.conservation.balanced, "the books balance");
        assert_eq!(report.open_holds, 0, "no reservation left open");
        assert_eq!(
            report.tenants[0].committed_microunits, 0,
            "nothing served, nothing spent"
        );
    }

    async fn whole_request_fails_cleanly(fault: Fault) {
        let dir = tempfile::Builder::new()
            .prefix("gateway-fault")
            .tempdir()
            .expect("temp dir");
        let running = start(dir.path()).await;
        *running.gateway.inner.fault.lock() = Some(fault);
        let (status, body) = chat(running.addr, false).await;
        assert_eq!(status, 500, "{body}");
        let value: Value = serde_json::from_str(&body).expect("a JSON error body");
        assert_eq!(value["error"]["code"], "internal_error", "{value}");
        assert_eq!(value["error"]["type"], "api_error", "{value}");
        // The next request, without the fault, is served: the gate is not poisoned.
        *running.gateway.inner.fault.lock() = None;
        let (status, body) = chat(running.addr, false).await;
        assert_eq!(status, 200, "{body}");
        let metrics = running.gateway.metrics_text();
        assert!(
            metrics.contains("calybris_gateway_internal_failures_total{} 1"),
            "{metrics}"
        );
        stop(running).await;
        let gate_dir = dir.path().join("gate");
        let executions = executions(&gate_dir);
        assert_eq!(executions.len(), 2, "{executions:?}");
        let failed = &executions[0];
        assert_eq!(failed.status, ExecutionStatus::InternalError);
        assert_eq!(failed.http_status, 500);
        assert_eq!(failed.cost_microunits, 0);
        assert_eq!(
            failed.response_sha256,
            sha256(body_of_internal(&value).as_bytes()),
            "the record hashes the error body the client got"
        );
        assert_eq!(executions[1].status, ExecutionStatus::Served);
        let report = calybris_gate::verify_dir(&gate_dir, &calybris_gate::VerifyOptions::default())
            .expect("verifies");
        assert!(report.conservation.balanced);
        assert_eq!(report.open_holds, 0);
    }

    fn body_of_internal(value: &Value) -> String {
        value.to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_after_the_provider_logs_a_failure_record_and_answers_cleanly() {
        whole_request_fails_cleanly(Fault::PanicAfterProvider).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_settlement_logs_a_failure_record_and_answers_cleanly() {
        whole_request_fails_cleanly(Fault::FailSettle).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_a_stream_logs_a_failure_record_and_no_end_marker() {
        let dir = tempfile::Builder::new()
            .prefix("gateway-fault-stream")
            .tempdir()
            .expect("temp dir");
        let running = start(dir.path()).await;
        *running.gateway.inner.fault.lock() = Some(Fault::PanicInStream);
        let (status, body) = chat(running.addr, true).await;
        assert_eq!(status, 200, "the stream had started");
        assert!(body.starts_with("data: "), "{body}");
        assert!(
            !body.contains("[DONE]"),
            "no end marker without an execution record: {body}"
        );
        stop(running).await;
        let gate_dir = dir.path().join("gate");
        let executions = executions(&gate_dir);
        assert_eq!(executions.len(), 1, "{executions:?}");
        assert_eq!(executions[0].status, ExecutionStatus::InternalError);
        verified(&gate_dir);
    }
}
