//! `calybris serve`: the OpenAI-compatible gateway (`calybris-gateway`) on one gate
//! directory, from a TOML file (`--config FILE`) or with built-in mock providers on
//! loopback (`--demo`), until Ctrl-C.

use std::path::{Path, PathBuf};

use calybris_gateway::config::{ProviderKind, key_hash_hex};
use calybris_gateway::mock::{MockBehavior, MockProvider};
use calybris_gateway::{Gateway, GatewayConfig};

use crate::{report, stderr_line, stdout_text};

/// The API key of the demo tenant.
pub const DEMO_KEY: &str = "sk-calybris-demo";

/// The default gate directory of `serve --demo`.
pub const DEFAULT_DEMO_DIR: &str = "calybris-serve-demo";

/// The request-body archive of `serve --demo`, inside its gate directory.
pub const DEMO_ARCHIVE: &str = "request-archive";

/// The demo's three mock providers (OpenAI, Anthropic and Ollama shapes), started on
/// loopback, and their base URLs.
///
/// # Errors
/// A message when a mock cannot bind.
pub(crate) async fn demo_mocks() -> Result<([MockProvider; 3], [String; 3]), String> {
    let mut mocks = Vec::new();
    for name in ["openai-mock", "anthropic-mock", "ollama-mock"] {
        mocks.push(
            MockProvider::start(name, MockBehavior::Ok, 12)
                .await
                .map_err(|e| format!("starting a mock provider: {e}"))?,
        );
    }
    let [openai, anthropic, ollama]: [MockProvider; 3] = mocks
        .try_into()
        .map_err(|_| "three mock providers".to_owned())?;
    let urls = [
        openai.base_url(ProviderKind::Openai),
        anthropic.base_url(ProviderKind::Anthropic),
        ollama.base_url(ProviderKind::Ollama),
    ];
    Ok(([openai, anthropic, ollama], urls))
}

/// Runs the gateway; returns the exit code.
#[must_use]
pub fn run(config: Option<&Path>, demo: bool, listen: Option<&str>, dir: Option<&Path>) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            stderr_line(&format!("ERROR SERVE: starting the runtime: {error}"));
            return report::EXIT_ERROR;
        }
    };
    match runtime.block_on(serve(config, demo, listen, dir)) {
        Ok(()) => report::EXIT_OK,
        Err(message) => {
            stderr_line(&format!("ERROR SERVE: {message}"));
            report::EXIT_ERROR
        }
    }
}

/// The demo's configuration: three real catalog models (prices from
/// `shared/data/catalog/models.csv`, which takes them from litellm 1.110.2; quality
/// from AlpacaEval 2.0 length-controlled win rates), each served by a mock provider.
///
/// `urls` are the base URLs of the three mocks (OpenAI, Anthropic and Ollama shapes).
/// The request-body archive is kept in `DIR/request-archive`, so that
/// `calybris replay DIR --seq N --demo` can re-execute any request of the demo.
pub(crate) fn demo_config(urls: &[String; 3], dir: &Path, listen: &str) -> String {
    format!(
        r#"[server]
listen = "{listen}"
gate_dir = {dir:?}
request_archive = {archive:?}

[providers.openai-mock]
kind = "openai"
base_url = "{openai}"

[providers.anthropic-mock]
kind = "anthropic"
base_url = "{anthropic}"

[providers.ollama-mock]
kind = "ollama"
base_url = "{ollama}"

[policy]
capabilities = ["function_calling", "vision"]

[[policy.models]]
name = "gpt-4o-mini-2024-07-18"
provider = "openai-mock"
input_usd_per_mtok = "0.15"
output_usd_per_mtok = "0.6"
quality_bps = 5073
capabilities = ["function_calling", "vision"]

[[policy.models]]
name = "claude-3-5-sonnet-20240620"
provider = "anthropic-mock"
input_usd_per_mtok = "3"
output_usd_per_mtok = "15"
quality_bps = 5237
capabilities = ["function_calling", "vision"]

[[policy.models]]
name = "Meta-Llama-3-8B-Instruct"
provider = "ollama-mock"
input_usd_per_mtok = "0.03"
output_usd_per_mtok = "0.06"
quality_bps = 2292

[tenants.demo]
budget_usd = "1"
api_key_sha256 = ["{key}"]
requests_per_minute = 600

[routing]
default_model = "gpt-4o-mini-2024-07-18"
fallback = ["gpt-4o-mini-2024-07-18", "claude-3-5-sonnet-20240620", "Meta-Llama-3-8B-Instruct"]
value_usd_per_request = "0.05"
default_max_tokens = 64
"#,
        dir = dir.display().to_string(),
        archive = dir.join(DEMO_ARCHIVE).display().to_string(),
        openai = urls[0],
        anthropic = urls[1],
        ollama = urls[2],
        key = key_hash_hex(DEMO_KEY),
    )
}

async fn serve(
    config: Option<&Path>,
    demo: bool,
    listen: Option<&str>,
    dir: Option<&Path>,
) -> Result<(), String> {
    let mut config = match (config, demo) {
        (Some(path), false) => GatewayConfig::load(path).map_err(|e| e.to_string())?,
        (None, true) => {
            let (mocks, urls) = demo_mocks().await?;
            let dir = dir.map_or_else(|| PathBuf::from(DEFAULT_DEMO_DIR), Path::to_path_buf);
            let text = demo_config(&urls, &dir, listen.unwrap_or("127.0.0.1:8080"));
            let config = GatewayConfig::from_toml(&text).map_err(|e| e.to_string())?;
            return run_gateway(config, Some(mocks)).await;
        }
        _ => return Err("give exactly one of --config FILE and --demo".to_owned()),
    };
    if let Some(listen) = listen {
        config.server.listen = listen.to_owned();
    }
    if let Some(dir) = dir {
        config.server.gate_dir = dir.to_path_buf();
    }
    run_gateway(config, None).await
}

async fn run_gateway(
    config: GatewayConfig,
    mocks: Option<[MockProvider; 3]>,
) -> Result<(), String> {
    let gateway = Gateway::open(&config).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.server.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut text = format!(
        "calybris gateway on http://{addr} (gate directory {})\n",
        config.server.gate_dir.display()
    );
    if mocks.is_some() {
        text.push_str(&format!(
            "demo: mock providers on loopback, tenant `demo` with 1 USD, key {DEMO_KEY}\n\
             try:\n  curl -s http://{addr}/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' \\\n    \
             -H 'Content-Type: application/json' \\\n    \
             -d '{{\"model\": \"auto\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'\n  \
             curl -s http://{addr}/metrics\n"
        ));
    }
    text.push_str("Ctrl-C stops it; then `calybris verify DIR` checks the gate directory.\n");
    stdout_text(&text);
    gateway
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())?;
    drop(mocks);
    for _ in 0..500 {
        if gateway.handles() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    gateway.close().map_err(|e| e.to_string())?;
    stdout_text("stopped; every record is durable\n");
    Ok(())
}
