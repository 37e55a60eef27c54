//! The gateway over real HTTP on loopback, against mock providers that are real HTTP
//! servers on 127.0.0.1. No network.

mod common;

use std::sync::Arc;
use std::time::Duration;

use calybris_gate::{ExecutionStatus, GateRecord, VerifyOptions, verify_dir};
use calybris_gateway::mock::MockBehavior;
use common::{Harness, KEY, OTHER_KEY, Options, Upstream, body, executions, records};

fn verified(dir: &std::path::Path) -> calybris_gate::GateReport {
    let report = verify_dir(dir, &VerifyOptions::default()).expect("the directory verifies");
    assert!(report.conservation.balanced, "the books balance");
    assert_eq!(report.open_holds, 0, "no reservation left open");
    report
}

fn content(value: &serde_json::Value) -> &str {
    value["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_shape_serves_and_the_execution_names_it() {
    for (kind, model) in [
        ("openai", "gpt-mock"),
        ("anthropic", "claude-mock"),
        ("ollama", "llama-mock"),
    ] {
        let harness = Harness::start(
            kind,
            vec![Upstream::new("primary", kind, model)],
            Options::default(),
        )
        .await;
        let (status, value) = harness.chat(Some(KEY), &body(model, false)).await;
        assert_eq!(status, 200, "{kind}: {value}");
        assert_eq!(value["object"], "chat.completion");
        assert_eq!(value["model"], model);
        assert!(
            content(&value).starts_with("Hello from primary."),
            "{value}"
        );
        // 10 output tokens asked, the mock answers 10 words: 10 + (1 + 4 + 3) input.
        assert_eq!(value["usage"]["completion_tokens"], 10);
        assert_eq!(value["usage"]["prompt_tokens"], 8);
        let dir = harness.stop().await;
        let report = verified(&dir);
        assert_eq!(report.counts.decisions, 1);
        assert_eq!(report.counts.executions, 1);
        // 18 tokens at 1 USD per million tokens: 18 microunits, exactly.
        assert_eq!(report.tenants[0].tenant, "acme");
        assert_eq!(report.tenants[0].committed_microunits, 18);
        let executions = executions(&dir);
        assert_eq!(executions[0].model, model);
        assert_eq!(executions[0].provider, "primary");
        assert_eq!(executions[0].status, ExecutionStatus::Served);
        assert_eq!(executions[0].cost_microunits, 18);
        assert_eq!(executions[0].attempts.len(), 1);
    }
}

/// Reads an SSE body into its `data:` payloads.
fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_openai_chunks_ending_with_done_for_each_shape() {
    for (kind, model) in [
        ("openai", "gpt-mock"),
        ("anthropic", "claude-mock"),
        ("ollama", "llama-mock"),
    ] {
        let harness = Harness::start(
            kind,
            vec![Upstream::new("primary", kind, model)],
            Options::default(),
        )
        .await;
        let response = harness.post_chat(body(model, true)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap_or(""),
            "text/event-stream"
        );
        let text = response.text().await.expect("body");
        let events = events(&text);
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{kind}: {text}"
        );
        let mut generated = String::new();
        let mut finished = false;
        let mut usage = None;
        for event in &events[..events.len() - 1] {
            let chunk: serde_json::Value = serde_json::from_str(event).expect("chunk JSON");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            if let Some(choice) = chunk["choices"].get(0) {
                generated.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
                finished |= choice["finish_reason"] == "stop";
            }
            if chunk["usage"].is_object() {
                usage = Some(chunk["usage"].clone());
            }
        }
        assert!(finished, "{kind}: a chunk carries finish_reason stop");
        assert!(generated.starts_with("Hello from primary."), "{generated}");
        assert_eq!(generated.matches(" word").count(), 9);
        assert_eq!(usage.expect("a usage chunk")["completion_tokens"], 10);
        let dir = harness.stop().await;
        let report = verified(&dir);
        assert_eq!(report.counts.executions, 1);
        assert_eq!(report.tenants[0].committed_microunits, 18);
        let execution = &executions(&dir)[0];
        assert_eq!(execution.status, ExecutionStatus::Served);
        assert_eq!(execution.model, model);
        // The response digest is of exactly the bytes sent.
        assert_eq!(
            execution.response_sha256,
            calybris_gateway::config::sha256(text.as_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_fails_the_secondary_serves_and_the_record_names_the_secondary() {
    for behavior in [
        MockBehavior::Fail(500),
        MockBehavior::Fail(429),
        MockBehavior::Malformed,
        MockBehavior::Truncated,
        MockBehavior::Hang,
        MockBehavior::Slow(1_500),
    ] {
        for stream in [false, true] {
            if behavior == MockBehavior::Truncated && stream {
                // A stream cut after its first event cannot fall back: see
                // `a_stream_cut_short_ends_without_done_and_is_charged_what_was_relayed`.
                continue;
            }
            let harness = Harness::start(
                "fallback",
                vec![
                    Upstream::new("primary", "openai", "gpt-mock")
                        .behaving(behavior)
                        .timeout(300),
                    Upstream::new("secondary", "anthropic", "claude-mock").quality("0.4"),
                ],
                Options::default(),
            )
            .await;
            let response = harness.post_chat(body("gpt-mock", stream)).await;
            assert_eq!(response.status(), 200, "{behavior:?} stream {stream}");
            assert_eq!(
                response.headers()["x-calybris-served-by"]
                    .to_str()
                    .unwrap_or(""),
                "secondary/claude-mock"
            );
            let text = response.text().await.expect("body");
            assert!(text.contains("Hello from secondary."), "{text}");
            let metrics = harness.metrics().await;
            assert!(
                metrics.contains("calybris_gateway_fallbacks_total{model=\"claude-mock\"} 1"),
                "{metrics}"
            );
            assert_eq!(harness.mocks[0].calls(), 1);
            let dir = harness.stop().await;
            verified(&dir);
            let execution = &executions(&dir)[0];
            assert_eq!(execution.provider, "secondary");
            assert_eq!(execution.model, "claude-mock");
            assert_eq!(execution.attempts.len(), 2);
            assert!(!execution.attempts[0].success);
            assert_eq!(execution.attempts[0].model, "gpt-mock");
            assert!(execution.attempts[1].success);
            if let MockBehavior::Fail(status) = behavior {
                assert_eq!(execution.attempts[0].http_status, status);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_provider_fails_the_client_gets_502_or_504_and_nothing_is_spent() {
    for (behavior, expected) in [(MockBehavior::Fail(503), 502), (MockBehavior::Hang, 504)] {
        for stream in [false, true] {
            let harness = Harness::start(
                "failing",
                vec![
                    Upstream::new("primary", "openai", "gpt-mock")
                        .behaving(behavior)
                        .timeout(200),
                    Upstream::new("secondary", "ollama", "llama-mock")
                        .behaving(behavior)
                        .timeout(200),
                ],
                Options::default(),
            )
            .await;
            let (status, value) = harness.chat(Some(KEY), &body("gpt-mock", stream)).await;
            assert_eq!(status, expected, "{behavior:?}: {value}");
            assert!(value["error"]["message"].is_string());
            assert!(value["error"]["type"].is_string());
            assert!(value["error"]["code"].is_string());
            let dir = harness.stop().await;
            let report = verified(&dir);
            assert_eq!(report.tenants[0].committed_microunits, 0);
            let execution = &executions(&dir)[0];
            assert_eq!(execution.status, ExecutionStatus::ProviderFailed);
            assert_eq!(execution.http_status, expected);
            assert_eq!(execution.attempts.len(), 2);
            assert_eq!(execution.model, "");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_body_and_leaves_nothing_open() {
    let harness = Harness::start(
        "bad-input",
        vec![Upstream::new("primary", "openai", "gpt-mock")],
        Options {
            max_body_bytes: 1_024,
            ..Options::default()
        },
    )
    .await;
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (Some(KEY), "{\"model\": ".to_owned(), 400, "invalid_json"),
        (Some(KEY), "not json at all".to_owned(), 400, "invalid_json"),
        (
            Some(KEY),
            "{\"model\": 7, \"messages\": []}".to_owned(),
            400,
            "invalid_type",
        ),
        (
            Some(KEY),
            "{\"model\": \"gpt-mock\", \"messages\": \"hi\"}".to_owned(),
            400,
            "invalid_type",
        ),
        (
            Some(KEY),
            "{\"model\": \"gpt-mock\", \"messages\": [], \"stream\": true}".to_owned(),
            400,
            "invalid_messages",
        ),
        (
            Some(KEY),
            "{\"model\": \"gpt-mock\", \"max_tokens\": -1, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}".to_owned(),
            400,
            "invalid_type",
        ),
        (
            Some(KEY),
            "{\"model\": \"gpt-mock\", \"max_tokens\": 100000, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}".to_owned(),
            400,
            "invalid_max_tokens",
        ),
        (
            Some(KEY),
            "{\"model\": \"gpt-mock\", \"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}".to_owned(),
            400,
            "invalid_role",
        ),
        (Some(KEY), body("no-such-model", false), 404, "model_not_found"),
        (None, body("gpt-mock", false), 401, "invalid_api_key"),
        (Some("sk-wrong"), body("gpt-mock", false), 401, "invalid_api_key"),
        (
            Some(KEY),
            serde_json::json!({"model": "gpt-mock",
                "messages": [{"role": "user", "content": "x".repeat(2_000)}]})
            .to_string(),
            413,
            "request_too_large",
        ),
    ];
    for (key, text, status, code) in &cases {
        let (got, value) = harness.chat(*key, text).await;
        assert_eq!(got, *status, "{text}: {value}");
        assert_eq!(value["error"]["code"], *code, "{text}: {value}");
        assert!(value["error"]["message"].is_string());
        assert!(value["error"]["type"].is_string());
    }
    // A body over the limit without a Content-Length header (chunked) is cut at the limit.
    // Just over the limit, so the gateway has read it all when it answers.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..2).map(|_| Ok(vec![b' '; 550])).collect();
    let response = harness
        .post_chat(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .await;
    assert_eq!(response.status(), 413);
    let metrics = harness.metrics().await;
    assert!(
        metrics
            .contains("calybris_gateway_refusals_total{status=\"401\",code=\"invalid_api_key\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "calybris_gateway_refusals_total{status=\"413\",code=\"request_too_large\"} 2"
        ),
        "{metrics}"
    );
    let dir = harness.stop().await;
    let report = verified(&dir);
    // Refused before the gate: nothing decided, nothing held, nothing spent.
    assert_eq!(report.counts.decisions, 0);
    assert_eq!(report.tenants[0].committed_microunits, 0);
}

fn lease(issued_by: &str, scope: serde_json::Value, issued_at: u64, ttl: u64) -> String {
    serde_json::json!({"lease_id": "L-1", "issued_by": issued_by, "scope": scope,
                       "issued_at": issued_at, "ttl": ttl})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_required_checked_and_refusals_logged() {
    let harness = Harness::start(
        "leases",
        vec![Upstream::new("primary", "openai", "gpt-mock")],
        Options {
            routing_extra:
                "authority_required = true\nrequired_scope = \"chat\"\nlease_issuers = [\"ops\"]\n"
                    .to_owned(),
            ..Options::default()
        },
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let send = |lease: Option<String>, in_body: bool| {
        let client = harness.client.clone();
        let url = harness.url("/v1/chat/completions");
        async move {
            let mut value: serde_json::Value =
                serde_json::from_str(&body("gpt-mock", false)).expect("json");
            let mut request = client.post(url).bearer_auth(KEY);
            if let Some(lease) = lease {
                if in_body {
                    value["metadata"] = serde_json::json!({"lease": lease});
                } else {
                    request = request.header("x-calybris-lease", lease);
                }
            }
            let response = request
                .body(value.to_string())
                .send()
                .await
                .expect("answers");
            let status = response.status().as_u16();
            let value: serde_json::Value = response.json().await.expect("json body");
            (status, value)
        }
    };
    let refused = [
        (None, "missing"),
        (
            Some(lease("ops", serde_json::json!("chat"), now - 100, 10)),
            "expired",
        ),
        (
            Some(lease("ops", serde_json::json!(["admin"]), now, 600)),
            "out-of-scope",
        ),
        (
            Some(lease("mallory", serde_json::json!("chat"), now, 600)),
            "unknown-issuer",
        ),
        (Some("{not json".to_owned()), "malformed"),
    ];
    for (lease, reason) in &refused {
        let (status, value) = send(lease.clone(), false).await;
        assert_eq!(status, 403, "{reason}: {value}");
        assert_eq!(value["error"]["code"], "lease_refused");
        assert!(
            value["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(reason)
        );
    }
    for in_body in [false, true] {
        let good = lease("ops", serde_json::json!(["read", "chat"]), now, 600);
        let (status, value) = send(Some(good), in_body).await;
        assert_eq!(status, 200, "{value}");
    }
    let (status, _) = send(
        Some(lease("ops", serde_json::json!("x chat"), now, 600)),
        true,
    )
    .await;
    assert_eq!(status, 200, "a space-separated scope string");
    let dir = harness.stop().await;
    let report = verified(&dir);
    assert_eq!(report.counts.lease_refusals, 5);
    assert_eq!(report.counts.decisions, 3);
    let reasons: Vec<String> = records(&dir)
        .into_iter()
        .filter_map(|(_, record)| match record {
            GateRecord::LeaseRefused(refusal) => Some(refusal.reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "missing",
            "expired",
            "out-of-scope",
            "unknown-issuer",
            "malformed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_key_and_tenant_refuse_with_429_before_the_gate() {
    let harness = Harness::start(
        "rates",
        vec![Upstream::new("primary", "openai", "gpt-mock")],
        Options {
            tenant_extra: "key_requests_per_minute = 3\ntokens_per_minute = 1000".to_owned(),
            ..Options::default()
        },
    )
    .await;
    // Tokens: 18 estimated for a small request; 2,000 output tokens asked is over the
    // tenant's 1,000 per minute, and a refusal consumes nothing.
    let big = serde_json::json!({"model": "gpt-mock", "max_tokens": 2000,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let (status, value) = harness.chat(Some(KEY), &big).await;
    assert_eq!(status, 429, "{value}");
    assert_eq!(value["error"]["code"], "rate_limited");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(harness.chat(Some(KEY), &body("gpt-mock", false)).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // Another tenant is not limited by acme's key.
    assert_eq!(
        harness
            .chat(Some(OTHER_KEY), &body("gpt-mock", false))
            .await
            .0,
        200
    );
    let metrics = harness.metrics().await;
    assert!(
        metrics.contains("calybris_gateway_rate_limited_total{scope=\"key\",kind=\"requests\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("calybris_gateway_rate_limited_total{scope=\"tenant\",kind=\"tokens\"} 1"),
        "{metrics}"
    );
    let dir = harness.stop().await;
    let report = verified(&dir);
    assert_eq!(
        report.counts.decisions, 4,
        "refused requests never reached the gate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_never_overspend_a_budget_for_a_hundred() {
    // Each request is estimated, held and charged at exactly 18 microunits;
    // the budget covers 100 of them.
    let harness = Arc::new(
        Harness::start(
            "race",
            vec![Upstream::new("primary", "openai", "gpt-mock")],
            Options {
                budget_usd: "0.0018",
                ..Options::default()
            },
        )
        .await,
    );
    let mut tasks = Vec::new();
    for index in 0..1_000 {
        let harness = harness.clone();
        tasks.push(tokio::spawn(async move {
            let stream = index % 4 == 0;
            let response = harness.post_chat(body("gpt-mock", stream)).await;
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            (status, text)
        }));
    }
    let (mut served, mut refused) = (0u64, 0u64);
    for task in tasks {
        let (status, text) = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("in time")
            .expect("task");
        match status {
            200 => {
                served += 1;
                assert!(text.contains("Hello from primary."));
            }
            402 => {
                refused += 1;
                let value: serde_json::Value = serde_json::from_str(&text).expect("json");
                assert_eq!(value["error"]["code"], "budget_refused");
                assert_eq!(value["error"]["type"], "insufficient_quota");
            }
            other => panic!("unexpected status {other}: {text}"),
        }
    }
    assert_eq!(served + refused, 1_000);
    assert_eq!(served, 100, "exactly what the budget covers is served");
    let metrics = harness.metrics().await;
    assert!(
        metrics.contains("calybris_gateway_tenant_spent_microunits{tenant=\"acme\"} 1800"),
        "{metrics}"
    );
    assert!(metrics.contains("calybris_gateway_tenant_remaining_microunits{tenant=\"acme\"} 0"));
    let harness = Arc::into_inner(harness).expect("the only handle");
    let dir = harness.stop().await;
    let report = verified(&dir);
    let acme = &report.tenants[0];
    assert_eq!(acme.tenant, "acme");
    assert!(acme.committed_microunits <= 1_800);
    assert_eq!(acme.committed_microunits, 1_800);
    assert_eq!(report.counts.decisions, 1_000);
    assert_eq!(report.counts.refused_by_budget, 900);
    assert_eq!(report.counts.executions, 100);
    assert_eq!(report.counts.overruns, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_stream_is_charged_what_was_generated() {
    let harness = Harness::start(
        "disconnect",
        vec![Upstream::new("primary", "openai", "gpt-mock").behaving(MockBehavior::Drip(5))],
        Options::default(),
    )
    .await;
    let long = serde_json::json!({"model": "gpt-mock", "stream": true, "max_tokens": 4000,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let mut response = harness.post_chat(long).await;
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.expect("a chunk");
    assert!(first.is_some());
    drop(response);
    let dir = harness.stop().await;
    let report = verified(&dir);
    let execution = &executions(&dir)[0];
    // The mock drips 1,000 words, 5 ms apart; the usage chunk never reached the
    // gateway's reader, so what was generated is counted from the text it relayed.
    assert_eq!(
        execution.status,
        ExecutionStatus::ClientDisconnected,
        "{execution:?}"
    );
    assert!(execution.output_tokens < 4_000);
    assert_eq!(
        report.tenants[0].committed_microunits,
        execution.cost_microunits as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_healthz_and_metrics_answer() {
    let harness = Harness::start(
        "routes",
        vec![
            Upstream::new("primary", "openai", "gpt-mock"),
            Upstream::new("local", "ollama", "llama-mock"),
        ],
        Options::default(),
    )
    .await;
    let models: serde_json::Value = harness
        .client
        .get(harness.url("/v1/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["gpt-mock", "llama-mock"]);
    let health = harness
        .client
        .get(harness.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let (status, value) = harness.chat(Some(KEY), &body("auto", false)).await;
    assert_eq!(status, 200);
    assert_eq!(
        value["model"], "gpt-mock",
        "auto asks for the default model"
    );
    let metrics = harness.metrics().await;
    for series in [
        "calybris_gateway_decisions_total{action=\"ExecuteRequested\",reason=\"RequestedModelMaximizesUtility\",budget=\"reserved\"} 1",
        "calybris_gateway_provider_requests_total{provider=\"primary\",outcome=\"ok\"} 1",
        "calybris_gateway_provider_latency_ms_count{provider=\"primary\"} 1",
        "calybris_gateway_tenant_spent_microunits{tenant=\"acme\"} 18",
        "calybris_gateway_tenant_remaining_microunits{tenant=\"beta\"} 1000000",
        "# TYPE calybris_gateway_fallbacks_total counter",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    // The log's fdatasync latency histogram: cumulative buckets, the +Inf one equal
    // to the count, and at least the syncs of the two answered requests.
    let value_of = |prefix: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in\n{metrics}"));
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a count")
    };
    let buckets: Vec<u64> = metrics
        .lines()
        .filter(|line| line.starts_with("calybris_gateway_log_data_sync_seconds_bucket{"))
        .map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("a count")
        })
        .collect();
    assert_eq!(buckets.len(), calybris_wal::DATA_SYNC_BUCKETS, "{metrics}");
    assert!(
        buckets.windows(2).all(|pair| pair[0] <= pair[1]),
        "{buckets:?}"
    );
    let count = value_of("calybris_gateway_log_data_sync_seconds_count ");
    assert_eq!(
        value_of("calybris_gateway_log_data_sync_seconds_bucket{le=\"+Inf\"}"),
        count
    );
    assert!(count >= 2, "{metrics}");
    let missing = harness
        .client
        .get(harness.url("/nope"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), 404);
    verified(&harness.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_short_ends_without_done_and_is_charged_what_was_relayed() {
    for kind in ["openai", "anthropic", "ollama"] {
        let harness = Harness::start(
            "truncated",
            vec![
                Upstream::new("primary", kind, "gpt-mock").behaving(MockBehavior::Truncated),
                Upstream::new("secondary", "openai", "other-mock").quality("0.4"),
            ],
            Options::default(),
        )
        .await;
        let response = harness.post_chat(body("gpt-mock", true)).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("body");
        assert!(!text.contains("[DONE]"), "{text}");
        assert!(text.contains("provider_error"), "{text}");
        let dir = harness.stop().await;
        let report = verified(&dir);
        let execution = &executions(&dir)[0];
        assert_eq!(execution.status, ExecutionStatus::StreamCut);
        assert_eq!(execution.provider, "primary");
        assert_eq!(execution.attempts.len(), 1);
        assert!(!execution.attempts[0].success, "the cut attempt failed");
        assert!(execution.cost_microunits > 0, "what was relayed is charged");
        // What was relayed, counted from the text, at most what was asked for.
        assert!(execution.output_tokens <= 10, "{execution:?}");
        assert!(text.contains("Hello from primary."), "{text}");
        assert!(text.matches(" word").count() < 9, "{text}");
        assert_eq!(
            report.tenants[0].committed_microunits,
            execution.cost_microunits as i64
        );
    }
}
