//! The gateway's configuration: one TOML file, compiled to the kernel's numeric policy.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"        # address to serve on
//! gate_dir = "gateway-gate"        # the gate directory (one chained log)
//! max_body_bytes = 1048576         # larger request bodies get 413
//! request_archive = "requests"     # optional: keep request bodies for `calybris replay`
//! request_archive_keep_segments = 16 # optional: the archive keeps its newest 16 segments
//! group_commit_window_us = 200     # the gate log's group-commit window
//! log_key_file = "gate.key"        # optional: HMAC-key the gate log (the key's FILE, never the key)
//! group_commit_syncs = 2            # data fdatasyncs in flight at once
//! durable_before_provider = true   # a provider is called only once its reservation is durable
//! reopen_holds = "commit"          # holds a crash left open: "commit" (spent in full) or "release"
//! watermark_interval_ms = 10       # least time between two writes of the log's ACK watermark
//! head_timeout_ms = 30000          # a request head (or an idle keep-alive gap) longer: closed
//! retention = "keep_all"           # or "since_last_snapshot": older log segments deleted
//! snapshot_every_records = 65536   # a book snapshot (and, with retention, a retirement) this often
//! segment_limit_bytes = 67108864   # the gate log's segment size
//!
//! [providers.openai]
//! kind = "openai"                  # openai | anthropic | ollama
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"   # the NAME of an environment variable, never a key
//! timeout_ms = 30000
//! probe_interval_ms = 0            # health probes (0: none)
//! probe_timeout_ms = 1000
//! breaker_failures = 3             # consecutive failures that open the breaker
//! breaker_cooldown_ms = 10000      # open, then one trial (half-open)
//!
//! [policy]                         # a calybris-policy policy file, inline
//! capabilities = ["function_calling", "vision"]
//!
//! [[policy.models]]
//! name = "gpt-4o-mini-2024-07-18"
//! provider = "openai"              # one of [providers]
//! quality_bps = 5073               # 0 to 10000
//! p95_latency_ms = 900
//! capabilities = ["function_calling", "vision"]
//! input_usd_per_mtok = "0.15"      # exact decimals
//! output_usd_per_mtok = "0.6"
//!
//! [upstream]                       # optional: the provider's own model names
//! "gpt-4o-mini-2024-07-18" = "gpt-4o-mini"
//!
//! [tenants.acme]
//! budget_usd = "10"
//! api_key_sha256 = ["<64 hex digits: SHA-256 of the key>"]
//! requests_per_minute = 600        # per tenant (0: no limit)
//! tokens_per_minute = 200000
//! key_requests_per_minute = 300    # per key
//! key_tokens_per_minute = 100000
//!
//! [routing]
//! default_model = "gpt-4o-mini-2024-07-18"   # what "auto" asks for
//! local_first = true                          # ollama models first
//! fallback = ["claude-3-5-sonnet-20240620"]   # tried in order after the decision's
//! authority_required = false
//! required_scope = "chat"
//! lease_issuers = ["ops"]
//! value_usd_per_request = "0.05"
//! default_max_tokens = 256
//! max_output_tokens = 4096
//! local_slot_wait_ms = 250                    # wait for the single local slot
//! ```
//!
//! # The models: a policy file
//! The `[policy]` table is a policy file of `calybris-policy` (its [`PolicyFile`]:
//! the same keys, defaults and checks as a `.toml` policy file, documented in
//! `docs/CLI.md`, "Policy files"), with `[[policy.models]]` rows. Each model's
//! `provider` must be one of `[providers]`; `[upstream]` maps a model's name to the
//! provider's own name of it (default: the same name).
//!
//! # Names to numbers
//! `calybris_policy::compile`: model ids are the models' `id`s or their positions in
//! the file from 1, provider ids by first appearance from 0, capability and region bits
//! by position in the policy's lists; prices are exact microunits per million tokens
//! (more than six decimals is refused, not rounded). The names are logged after the
//! policy (a `PolicyNames` record), so reports on the gate directory speak in names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use calybris_gate::NameMap;
use calybris_kernel::PolicySnapshot;
use calybris_policy::PolicyFile;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("parsing the configuration: {0}")]
    Parse(String),
    /// A value is out of range or refers to something undefined.
    #[error("{0}")]
    Invalid(String),
    /// The compiled policy is refused by the kernel.
    #[error("the compiled policy: {0}")]
    Policy(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// The kind of a provider's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// An OpenAI-compatible API (`POST {base_url}/chat/completions`).
    Openai,
    /// Anthropic's messages API (`POST {base_url}/v1/messages`).
    Anthropic,
    /// Ollama's chat API (`POST {base_url}/api/chat`); counts as local.
    Ollama,
}

/// The `[server]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The gate directory, relative to the configuration file's directory.
    #[serde(default = "default_gate_dir")]
    pub gate_dir: PathBuf,
    /// The largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The most requests processed at once (others wait in the accept queue).
    #[serde(default = "default_concurrency")]
    pub max_concurrent_requests: usize,
    /// Where to keep the request-body archive (see [`crate::archive`]), relative to the
    /// configuration file's directory; none by default. `calybris replay` re-executes
    /// a request only from its archived body.
    #[serde(default)]
    pub request_archive: Option<PathBuf>,
    /// How many of the request archive's segments (about 64 MiB each) to keep, the
    /// newest included (absent: all). Older ones are deleted as new ones start; a
    /// request whose body went with them replays as `INPUT_POINTER_MISSING`. With
    /// it, the archive's disk use is bounded whatever the traffic.
    #[serde(default)]
    pub request_archive_keep_segments: Option<u64>,
    /// The gate log's group-commit window, microseconds. Adaptive: a record that
    /// finds no sync in flight is written and synced at once; while syncs are in
    /// flight, a batch waits up to this long after its first record before it starts
    /// another, overlapping sync (records arriving while every sync slot is busy join
    /// the next batch whatever the window). Smaller: less latency under load; larger:
    /// fewer, bigger syncs.
    #[serde(default = "default_window_us")]
    pub group_commit_window_us: u64,
    /// A file holding the gate log's HMAC key (32 bytes or more, used as they are),
    /// relative to the configuration file's directory; none by default (the log is
    /// chained by SHA-256 only). The file is named here, never the key; `calybris
    /// verify`, `show` and `replay` then need `--key-file` with the same file.
    #[serde(default)]
    pub log_key_file: Option<PathBuf>,
    /// How many of the gate log's data fdatasyncs may be in flight at once (default
    /// 2; 0: one at a time, inline). A sync covers every batch written before it, so
    /// a second sync lets a batch become durable without waiting for the previous
    /// batch's sync to return.
    #[serde(default = "default_syncs")]
    pub group_commit_syncs: usize,
    /// Whether an admitted request waits until its decision record (the reservation)
    /// is durable before any provider is called (default `true`). With it, every
    /// provider call the gateway makes has its reservation on disk first, so after a
    /// crash the books hold every admission that may have been paid for (see
    /// [`ServerConfig::reopen_holds`]); without it, the call starts at once and the
    /// decision's sync overlaps the provider's latency, at the price of losing the
    /// in-flight admissions' spending from the log if the process dies (at most
    /// `max_concurrent_requests` of them, each within its hold).
    #[serde(default = "default_durable_before_provider")]
    pub durable_before_provider: bool,
    /// What reopening the gate does with the holds a stop left open: `"commit"`
    /// (default: each is spent in full, by a logged `CommittedAtReopen` settlement,
    /// since its provider may have served before the stop and the hold is the most
    /// that could cost) or `"release"` (each is refunded, `ReleasedAtReopen`).
    #[serde(default)]
    pub reopen_holds: ReopenHoldsSetting,
    /// The least time between two writes of the gate log's acknowledgement watermark,
    /// milliseconds (default 10; 0: one after every data fdatasync). No answer waits
    /// for the watermark; a longer interval saves watermark writes under load, and
    /// the watermark then trails the acknowledged records by up to the interval plus
    /// one write (recovery keeps the verified records after it; see
    /// `calybris_wal::DurableConfig::watermark_interval`).
    #[serde(default = "default_watermark_interval_ms")]
    pub watermark_interval_ms: u64,
    /// How long a connection may wait for a request's whole head, milliseconds
    /// (default 30,000; at least 1): from when it opened, or on a kept-alive
    /// connection from when the previous answer went out. A slower head, or a
    /// kept-alive connection idle that long, is closed, so neither slow heads nor idle
    /// connections hold the server's connections for ever.
    #[serde(default = "default_head_timeout_ms")]
    pub head_timeout_ms: u64,
    /// How much of the gate log is kept on disk: `"keep_all"` (default: every record
    /// from genesis) or `"since_last_snapshot"`: after each book snapshot is durable,
    /// the segments wholly before it are deleted and where the log now starts is
    /// written to the gate directory's `log-start.anchor`
    /// (`calybris verify --start-anchor` checks the retained log from there). With it,
    /// the log of a gateway that refuses a flood of requests stays within about
    /// `snapshot_every_records` records plus two segments. The request archive is not
    /// pruned with it: the operator removes its old segments (see [`crate::archive`]).
    #[serde(default)]
    pub retention: RetentionSetting,
    /// Records between two book snapshots of the gate (default 65,536; at least 1).
    #[serde(default = "default_snapshot_every_records")]
    pub snapshot_every_records: u64,
    /// The size after which the gate log starts a new segment file, bytes (default
    /// 64 MiB; at least 4,096): the unit of retention.
    #[serde(default = "default_segment_limit_bytes")]
    pub segment_limit_bytes: u64,
}

/// `[server] retention`: how much of the gate log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetentionSetting {
    /// Every segment ([`calybris_gate::Retention::KeepAll`]).
    #[default]
    KeepAll,
    /// Segments before the last book snapshot are deleted
    /// ([`calybris_gate::Retention::SinceLastSnapshot`]).
    SinceLastSnapshot,
}

impl RetentionSetting {
    /// The gate's setting.
    #[must_use]
    pub const fn to_gate(self) -> calybris_gate::Retention {
        match self {
            Self::KeepAll => calybris_gate::Retention::KeepAll,
            Self::SinceLastSnapshot => calybris_gate::Retention::SinceLastSnapshot,
        }
    }
}

/// `[server] reopen_holds`: what reopening does with holds left open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ReopenHoldsSetting {
    /// Spend each in full ([`calybris_gate::ReopenHolds::CommitHeld`]).
    #[default]
    Commit,
    /// Refund each ([`calybris_gate::ReopenHolds::Release`]).
    Release,
}

impl ReopenHoldsSetting {
    /// The gate's setting.
    #[must_use]
    pub const fn to_gate(self) -> calybris_gate::ReopenHolds {
        match self {
            Self::Commit => calybris_gate::ReopenHolds::CommitHeld,
            Self::Release => calybris_gate::ReopenHolds::Release,
        }
    }
}

const fn default_durable_before_provider() -> bool {
    true
}

#[allow(clippy::cast_possible_truncation)] // 10 ms fits
const fn default_watermark_interval_ms() -> u64 {
    calybris_wal::DEFAULT_WATERMARK_INTERVAL.as_millis() as u64
}

const fn default_snapshot_every_records() -> u64 {
    calybris_gate::DEFAULT_SNAPSHOT_EVERY_RECORDS
}

const fn default_segment_limit_bytes() -> u64 {
    calybris_wal::DEFAULT_SEGMENT_LIMIT_BYTES
}

const fn default_head_timeout_ms() -> u64 {
    30_000
}

const fn default_syncs() -> usize {
    calybris_wal::DEFAULT_SYNC_CONCURRENCY
}

const fn default_window_us() -> u64 {
    200
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_gate_dir() -> PathBuf {
    PathBuf::from("gateway-gate")
}
const fn default_max_body() -> usize {
    1 << 20
}
const fn default_concurrency() -> usize {
    1024
}
const fn default_timeout() -> u64 {
    30_000
}
const fn default_max_tokens() -> u32 {
    256
}
const fn default_max_output() -> u32 {
    4_096
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            gate_dir: default_gate_dir(),
            max_body_bytes: default_max_body(),
            max_concurrent_requests: default_concurrency(),
            request_archive: None,
            request_archive_keep_segments: None,
            group_commit_window_us: default_window_us(),
            log_key_file: None,
            group_commit_syncs: default_syncs(),
            durable_before_provider: default_durable_before_provider(),
            reopen_holds: ReopenHoldsSetting::default(),
            watermark_interval_ms: default_watermark_interval_ms(),
            head_timeout_ms: default_head_timeout_ms(),
            retention: RetentionSetting::KeepAll,
            snapshot_every_records: default_snapshot_every_records(),
            segment_limit_bytes: default_segment_limit_bytes(),
        }
    }
}

/// One `[providers.NAME]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The API's kind.
    pub kind: ProviderKind,
    /// The base URL (for OpenAI, up to and including `/v1`).
    pub base_url: String,
    /// The name of the environment variable holding the API key (none for Ollama).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The whole-call timeout (for a stream: the wait for each chunk), milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// How often the gateway probes the provider's health, milliseconds (0: never; a
    /// probe is `GET /api/tags` for Ollama, `GET {base_url}/models` for OpenAI,
    /// `GET /v1/models` for Anthropic, and any 2xx answer is healthy).
    #[serde(default)]
    pub probe_interval_ms: u64,
    /// How long a probe may take, milliseconds.
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout_ms: u64,
    /// Consecutive failures (attempts or probes) that open the provider's circuit
    /// breaker (at least 1).
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker skips the provider before letting one trial through
    /// (half-open), milliseconds.
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown_ms: u64,
}

const fn default_probe_timeout() -> u64 {
    1_000
}
const fn default_breaker_failures() -> u32 {
    3
}
const fn default_breaker_cooldown() -> u64 {
    10_000
}

/// One `[tenants.NAME]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The opening budget, USD as an exact decimal string (used when the gate log does
    /// not hold the tenant yet).
    pub budget_usd: String,
    /// SHA-256 of each API key, as 64 hex digits.
    pub api_key_sha256: Vec<String>,
    /// Requests per minute for the tenant (0: no limit).
    #[serde(default)]
    pub requests_per_minute: u32,
    /// Estimated tokens per minute for the tenant (0: no limit).
    #[serde(default)]
    pub tokens_per_minute: u32,
    /// Requests per minute for each key (0: no limit).
    #[serde(default)]
    pub key_requests_per_minute: u32,
    /// Estimated tokens per minute for each key (0: no limit).
    #[serde(default)]
    pub key_tokens_per_minute: u32,
}

/// The `[routing]` section: the routing contract.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// The model a request for `"auto"` asks for (default: the first of the order).
    #[serde(default)]
    pub default_model: Option<String>,
    /// Try local (Ollama) models before the others, and ask for one on `"auto"`.
    #[serde(default)]
    pub local_first: bool,
    /// Models tried, in order, after the one the decision selected fails.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Whether every request must carry a valid authority lease.
    #[serde(default)]
    pub authority_required: bool,
    /// The scope a lease must grant.
    #[serde(default = "default_scope")]
    pub required_scope: String,
    /// Issuers whose leases are accepted.
    #[serde(default)]
    pub lease_issuers: Vec<String>,
    /// What a good answer is worth to the caller, USD (the kernel's business value).
    #[serde(default = "default_value")]
    pub value_usd_per_request: String,
    /// Output tokens estimated (and asked for) when the request names none.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// The most output tokens a request may ask for.
    #[serde(default = "default_max_output")]
    pub max_output_tokens: u32,
    /// How long a request waits for a local (Ollama) provider's single inference slot
    /// before that attempt is skipped and the chain falls back, milliseconds.
    #[serde(default = "default_local_slot_wait")]
    pub local_slot_wait_ms: u64,
}

const fn default_local_slot_wait() -> u64 {
    250
}

fn default_scope() -> String {
    "chat".to_owned()
}
fn default_value() -> String {
    "1".to_owned()
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Server settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Providers, by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The models: a `calybris-policy` policy file.
    pub policy: PolicyFile,
    /// The provider's own name of a model, by the model's name (default: the same).
    #[serde(default)]
    pub upstream: BTreeMap<String, String>,
    /// Tenants, by name.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The routing contract.
    pub routing: RoutingConfig,
}

impl GatewayConfig {
    /// Parses a configuration from TOML text (nothing is checked beyond the shape; see
    /// [`GatewayConfig::compile`]).
    ///
    /// # Errors
    /// [`ConfigError::Parse`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse(error.to_string()))
    }

    /// Reads and parses a file; a relative `gate_dir`, `request_archive` or `log_key_file`
    /// is taken from the file's directory.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml(&text)?;
        if config.server.gate_dir.is_relative()
            && let Some(parent) = path.parent()
        {
            config.server.gate_dir = parent.join(&config.server.gate_dir);
        }
        if let (Some(archive), Some(parent)) = (&config.server.request_archive, path.parent())
            && archive.is_relative()
        {
            config.server.request_archive = Some(parent.join(archive));
        }
        if let (Some(key), Some(parent)) = (&config.server.log_key_file, path.parent())
            && key.is_relative()
        {
            config.server.log_key_file = Some(parent.join(key));
        }
        Ok(config)
    }

    /// Checks every reference and compiles the kernel policy.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] or [`ConfigError::Policy`].
    pub fn compile(&self) -> Result<Compiled, ConfigError> {
        let policy = calybris_policy::compile(&self.policy)
            .map_err(|error| ConfigError::Policy(error.to_string()))?;
        let mut models = Vec::new();
        for (entry, kernel) in self.policy.models.iter().zip(policy.policy.models()) {
            let provider = self.providers.get(&entry.provider).ok_or_else(|| {
                invalid(format!(
                    "model {:?} names provider {:?}, which is not in [providers]",
                    entry.name, entry.provider
                ))
            })?;
            debug_assert_eq!(policy.names.model_id(&entry.name), Some(kernel.model_id));
            models.push(CompiledModel {
                name: entry.name.clone(),
                id: kernel.model_id,
                provider: entry.provider.clone(),
                kind: provider.kind,
                upstream: self
                    .upstream
                    .get(&entry.name)
                    .cloned()
                    .unwrap_or_else(|| entry.name.clone()),
                input_micro_per_mtok: kernel.input_cost_microunits_per_million_tokens,
                output_micro_per_mtok: kernel.output_cost_microunits_per_million_tokens,
                capabilities: kernel.capabilities,
            });
        }
        if let Some(name) = self
            .upstream
            .keys()
            .find(|name| !models.iter().any(|m| &m.name == *name))
        {
            return Err(invalid(format!("[upstream] names unknown model {name:?}")));
        }
        models.sort_by_key(|m| m.id);
        let names = policy.names;
        let policy = (*policy.policy).clone();
        let by_name = |name: &str| models.iter().position(|m| m.name == name);
        let mut order = Vec::new();
        for name in &self.routing.fallback {
            let index = by_name(name)
                .ok_or_else(|| invalid(format!("fallback names unknown model {name:?}")))?;
            if !order.contains(&index) {
                order.push(index);
            }
        }
        if self.routing.local_first {
            order.sort_by_key(|&index| models[index].kind != ProviderKind::Ollama);
        }
        let default_model = match &self.routing.default_model {
            Some(name) => by_name(name)
                .ok_or_else(|| invalid(format!("default_model names unknown model {name:?}")))?,
            None => order.first().copied().unwrap_or(0),
        };
        let default_model = if self.routing.local_first {
            order
                .iter()
                .copied()
                .find(|&index| models[index].kind == ProviderKind::Ollama)
                .unwrap_or(default_model)
        } else {
            default_model
        };
        let mut tenants = Vec::new();
        for (name, tenant) in &self.tenants {
            if name.is_empty() || name.len() > calybris_gate::MAX_TENANT_NAME_BYTES {
                return Err(invalid(format!(
                    "tenant name {name:?} is empty or too long"
                )));
            }
            let budget = parse_fixed(&tenant.budget_usd, 6)
                .map_err(|e| invalid(format!("tenant {name:?} budget: {e}")))?;
            let mut keys = Vec::new();
            for hex in &tenant.api_key_sha256 {
                keys.push(parse_hex32(hex).ok_or_else(|| {
                    invalid(format!(
                        "tenant {name:?}: an api_key_sha256 is not 64 hex digits"
                    ))
                })?);
            }
            tenants.push(CompiledTenant {
                name: name.clone(),
                budget_microunits: budget,
                key_hashes: keys,
                limits: config_limits(tenant),
            });
        }
        let value = parse_fixed(&self.routing.value_usd_per_request, 6)
            .map_err(|e| invalid(format!("value_usd_per_request: {e}")))?;
        if self.routing.authority_required && self.routing.lease_issuers.is_empty() {
            return Err(invalid(
                "authority_required needs at least one entry in lease_issuers",
            ));
        }
        let tools_capability = crate::tools::CAPABILITY_NAMES
            .iter()
            .find_map(|name| names.capability_bit(name))
            .map(|bit| 1u64 << bit);
        Ok(Compiled {
            tools_capability,
            policy,
            names,
            models,
            order,
            default_model,
            tenants,
            value_microunits: i64::try_from(value).unwrap_or(i64::MAX),
        })
    }
}

fn config_limits(tenant: &TenantConfig) -> RateLimits {
    RateLimits {
        tenant_requests_per_minute: tenant.requests_per_minute,
        tenant_tokens_per_minute: tenant.tokens_per_minute,
        key_requests_per_minute: tenant.key_requests_per_minute,
        key_tokens_per_minute: tenant.key_tokens_per_minute,
    }
}

/// Per-minute limits of one tenant and each of its keys (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// Requests per minute, the tenant as a whole.
    pub tenant_requests_per_minute: u32,
    /// Estimated tokens per minute, the tenant as a whole.
    pub tenant_tokens_per_minute: u32,
    /// Requests per minute, each key.
    pub key_requests_per_minute: u32,
    /// Estimated tokens per minute, each key.
    pub key_tokens_per_minute: u32,
}

/// A model as the gateway routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledModel {
    /// Its name.
    pub name: String,
    /// Its kernel id.
    pub id: u32,
    /// Its provider, by name.
    pub provider: String,
    /// The provider's kind.
    pub kind: ProviderKind,
    /// The provider's name of the model.
    pub upstream: String,
    /// Input price, microunits per million tokens.
    pub input_micro_per_mtok: u64,
    /// Output price, microunits per million tokens.
    pub output_micro_per_mtok: u64,
    /// Its capability bits (the policy's `capabilities` names, by position).
    pub capabilities: u64,
}

impl CompiledModel {
    /// The cost of `input` and `output` tokens, in microunits, rounded up.
    #[must_use]
    pub fn cost_microunits(&self, input: u64, output: u64) -> u64 {
        let total = u128::from(input) * u128::from(self.input_micro_per_mtok)
            + u128::from(output) * u128::from(self.output_micro_per_mtok);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// A tenant as the gateway serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledTenant {
    /// Its name.
    pub name: String,
    /// The opening budget, microunits.
    pub budget_microunits: u64,
    /// SHA-256 of each key.
    pub key_hashes: Vec<[u8; 32]>,
    /// Its rate limits.
    pub limits: RateLimits,
}

/// A configuration checked and compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The kernel policy.
    pub policy: PolicySnapshot,
    /// The names of its ids and bits (logged after the policy).
    pub names: NameMap,
    /// The models, in ascending id.
    pub models: Vec<CompiledModel>,
    /// The fallback order, as indexes into [`Compiled::models`].
    pub order: Vec<usize>,
    /// What `"auto"` asks for, as an index.
    pub default_model: usize,
    /// The tenants, in name order.
    pub tenants: Vec<CompiledTenant>,
    /// The business value of one request, microunits.
    pub value_microunits: i64,
    /// The capability bit a request offering tools requires: the policy's
    /// `tools` capability, else its `function_calling` one; `None` when the policy
    /// declares neither (then a request with tools is refused with 400
    /// `tools_unsupported`).
    pub tools_capability: Option<u64>,
}

/// An exact decimal USD amount as microunits (six decimals at most).
///
/// # Errors
/// A message when the text is not a non-negative decimal with at most six decimals.
pub fn parse_micro(text: &str) -> Result<u64, String> {
    parse_fixed(text, 6)
}

/// A non-negative decimal scaled by 10^`decimals`, exactly.
fn parse_fixed(text: &str, decimals: u32) -> Result<u64, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!fraction.is_empty() && !digits(fraction)) || text.ends_with('.') {
        return Err(format!("{text:?} is not a plain decimal number"));
    }
    if fraction.len() > decimals as usize {
        return Err(format!(
            "{text:?} has more than {decimals} decimals (refused rather than rounded)"
        ));
    }
    let scale = 10u64.pow(decimals);
    let whole: u64 = whole
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let mut frac: u64 = if fraction.is_empty() {
        0
    } else {
        fraction
            .parse()
            .map_err(|_| format!("{text:?} is malformed"))?
    };
    frac *= 10u64.pow(decimals - fraction.len() as u32);
    whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[index] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// SHA-256 of `bytes`.
#[must_use]
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// SHA-256 of an API key, as the 64 hex digits a configuration stores.
#[must_use]
pub fn key_hash_hex(key: &str) -> String {
    hex(&sha256(key.as_bytes()))
}

/// Lowercase hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// The most bytes of a log key file (the key is hashed by HMAC anyway; the bound keeps
/// a wrong path, a device say, from being read whole).
pub const MAX_LOG_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Reads the gate log's HMAC key from `path` (`[server] log_key_file`): the file's
/// bytes as they are, 32 to [`MAX_LOG_KEY_FILE_BYTES`] of them (the same rule as
/// `calybris verify --key-file`).
///
/// # Errors
/// [`crate::GatewayError::Key`] when the file cannot be read, is too large, or holds
/// fewer than 32 bytes.
pub fn read_log_key(path: &Path) -> Result<calybris_wal::WalKey, crate::GatewayError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|e| crate::GatewayError::Key(format!("{}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_LOG_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::GatewayError::Key(format!("{}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_LOG_KEY_FILE_BYTES {
        return Err(crate::GatewayError::Key(format!(
            "{}: more than {MAX_LOG_KEY_FILE_BYTES} bytes",
            path.display()
        )));
    }
    calybris_wal::WalKey::new(&bytes)
        .map_err(|e| crate::GatewayError::Key(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(parse_micro("0.15"), Ok(150_000));
        assert_eq!(parse_micro("15"), Ok(15_000_000));
        assert_eq!(parse_micro("0.000001"), Ok(1));
        assert!(parse_micro("0.0000001").is_err());
        assert!(parse_micro("-1").is_err());
        assert!(parse_micro("1e-7").is_err());
        assert!(parse_micro("1.").is_err());
        assert!(parse_micro("").is_err());
        assert!(parse_micro("99999999999999999999").is_err());
    }

    #[test]
    fn key_hashes_are_sha256() {
        assert_eq!(
            key_hash_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(parse_hex32(&key_hash_hex("abc")).is_some());
        assert!(parse_hex32("zz").is_none());
    }
}
