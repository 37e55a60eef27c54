//! Health gating over real loopback HTTP: the circuit breaker (open, half-open,
//! closed), health probes, and the single local inference slot, each visible in
//! `/metrics` and in the execution records' attempts.

mod common;

use std::time::{Duration, Instant};

use calybris_gate::{AttemptSkip, ExecutionStatus, VerifyOptions, verify_dir};
use calybris_gateway::health::BreakerState;
use calybris_gateway::mock::MockBehavior;
use common::{Harness, KEY, Options, Upstream, body, executions};

fn verified(dir: &std::path::Path) {
    let report = verify_dir(dir, &VerifyOptions::default()).expect("the directory verifies");
    assert!(report.conservation.balanced, "the books balance");
    assert_eq!(report.open_holds, 0, "no reservation left open");
}

fn served_by(value: &serde_json::Value) -> &str {
    value["model"].as_str().unwrap_or_default()
}

/// Waits (bounded) until the breaker of `provider` is in `state`.
async fn until_state(harness: &Harness, provider: &str, state: BreakerState) {
    let gateway = harness.gateway.as_ref().expect("running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.breaker_state(provider) != Some(state) {
        assert!(
            Instant::now() < deadline,
            "the breaker of {provider} did not reach {state:?}: {:?}",
            gateway.breaker_state(provider)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A local Ollama model `llama-mock` (the better one: the kernel selects it) behaving
/// as `behavior`, `provider_lines` in its provider section, then a remote OpenAI
/// fallback `gpt-mock`; `routing_lines` in the routing section.
async fn local_then_remote(
    name: &str,
    behavior: MockBehavior,
    provider_lines: &str,
    routing_lines: &str,
) -> Harness {
    Harness::start(
        name,
        vec![
            Upstream::new("local", "ollama", "llama-mock")
                .quality("0.9")
                .behaving(behavior)
                .extra(provider_lines),
            Upstream::new("remote", "openai", "gpt-mock"),
        ],
        Options {
            routing_extra: routing_lines.to_owned(),
            ..Options::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_local_provider_opens_its_breaker_and_requests_go_straight_to_the_fallback() {
    let harness = local_then_remote(
        "breaker-open",
        MockBehavior::Fail(503),
        "breaker_failures = 2\nbreaker_cooldown_ms = 600000",
        "",
    )
    .await;
    for _ in 0..2 {
        let (status, value) = harness.chat(Some(KEY), &body("llama-mock", false)).await;
        assert_eq!(status, 200, "{value}");
        assert_eq!(served_by(&value), "gpt-mock");
    }
    let gateway = harness.gateway.as_ref().expect("running");
    assert_eq!(gateway.breaker_state("local"), Some(BreakerState::Open));
    assert_eq!(harness.mocks[0].calls(), 2);
    for _ in 0..3 {
        let (status, value) = harness.chat(Some(KEY), &body("llama-mock", false)).await;
        assert_eq!(status, 200, "{value}");
        assert_eq!(served_by(&value), "gpt-mock");
    }
    assert_eq!(
        harness.mocks[0].calls(),
        2,
        "an open breaker skips the call"
    );
    let metrics = harness.metrics().await;
    for series in [
        "calybris_gateway_breaker_state{provider=\"local\"} 1",
        "calybris_gateway_breaker_state{provider=\"remote\"} 0",
        "calybris_gateway_breaker_transitions_total{provider=\"local\",from=\"closed\",to=\"open\"} 1",
        "calybris_gateway_attempts_skipped_total{provider=\"local\",reason=\"circuit_open\"} 3",
        "calybris_gateway_fallbacks_total{model=\"gpt-mock\"} 5",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    let dir = harness.stop().await;
    let executions = executions(&dir);
    assert_eq!(executions.len(), 5);
    for execution in &executions[..2] {
        assert_eq!(execution.attempts[0].http_status, 503);
        assert_eq!(execution.attempts[0].skipped, None);
    }
    for execution in &executions[2..] {
        assert_eq!(execution.status, ExecutionStatus::Served);
        assert_eq!(execution.model, "gpt-mock");
        let first = &execution.attempts[0];
        assert_eq!(
            (
                first.provider.as_str(),
                first.skipped,
                first.success,
                first.http_status
            ),
            ("local", Some(AttemptSkip::CircuitOpen), false, 0)
        );
        assert!(execution.attempts[1].success);
    }
    verified(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_recovers_through_half_open() {
    let harness = local_then_remote(
        "breaker-recover",
        MockBehavior::Fail(500),
        "breaker_failures = 1\nbreaker_cooldown_ms = 1000",
        "",
    )
    .await;
    let chat = async || harness.chat(Some(KEY), &body("llama-mock", false)).await;
    let (_, value) = chat().await;
    assert_eq!(served_by(&value), "gpt-mock");
    until_state(&harness, "local", BreakerState::Open).await;
    let (_, value) = chat().await;
    assert_eq!(served_by(&value), "gpt-mock");
    assert_eq!(harness.mocks[0].calls(), 1, "skipped while open");
    // After the cool-down one trial goes; it fails: open again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (_, value) = chat().await;
    assert_eq!(served_by(&value), "gpt-mock");
    assert_eq!(harness.mocks[0].calls(), 2, "the half-open trial called it");
    until_state(&harness, "local", BreakerState::Open).await;
    // The provider recovers; the next trial closes the breaker.
    harness.mocks[0].set_behavior(MockBehavior::Ok);
    let (_, value) = chat().await;
    assert_eq!(served_by(&value), "gpt-mock", "still cooling down");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, value) = chat().await;
    assert_eq!(status, 200);
    assert_eq!(served_by(&value), "llama-mock", "the trial served");
    until_state(&harness, "local", BreakerState::Closed).await;
    let (_, value) = chat().await;
    assert_eq!(served_by(&value), "llama-mock");
    let metrics = harness.metrics().await;
    for series in [
        "calybris_gateway_breaker_transitions_total{provider=\"local\",from=\"closed\",to=\"open\"} 1",
        "calybris_gateway_breaker_transitions_total{provider=\"local\",from=\"open\",to=\"half_open\"} 2",
        "calybris_gateway_breaker_transitions_total{provider=\"local\",from=\"half_open\",to=\"open\"} 1",
        "calybris_gateway_breaker_transitions_total{provider=\"local\",from=\"half_open\",to=\"closed\"} 1",
        "calybris_gateway_attempts_skipped_total{provider=\"local\",reason=\"circuit_open\"} 2",
        "calybris_gateway_breaker_state{provider=\"local\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    let dir = harness.stop().await;
    let skipped: Vec<Option<AttemptSkip>> = executions(&dir)
        .iter()
        .map(|e| e.attempts[0].skipped)
        .collect();
    assert_eq!(
        skipped,
        [
            None,
            Some(AttemptSkip::CircuitOpen),
            None,
            Some(AttemptSkip::CircuitOpen),
            None,
            None
        ]
    );
    verified(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_open_the_breaker_before_any_request_and_close_it_on_recovery() {
    let harness = local_then_remote(
        "probes",
        MockBehavior::Fail(503),
        "probe_interval_ms = 40\nprobe_timeout_ms = 500\nbreaker_failures = 2\nbreaker_cooldown_ms = 150",
        "",
    )
    .await;
    until_state(&harness, "local", BreakerState::Open).await;
    assert!(harness.mocks[0].probes() >= 2);
    assert_eq!(
        harness.mocks[1].probes(),
        0,
        "a provider without an interval is not probed"
    );
    let (_, value) = harness.chat(Some(KEY), &body("llama-mock", false)).await;
    // Either skipped (open) or, if a probe's trial is out, skipped as well.
    assert_eq!(served_by(&value), "gpt-mock");
    assert_eq!(
        harness.mocks[0].calls(),
        0,
        "no request reached the failing local"
    );
    harness.mocks[0].set_behavior(MockBehavior::Ok);
    until_state(&harness, "local", BreakerState::Closed).await;
    let (_, value) = harness.chat(Some(KEY), &body("llama-mock", false)).await;
    assert_eq!(served_by(&value), "llama-mock");
    let metrics = harness.metrics().await;
    for series in [
        "calybris_gateway_probes_total{provider=\"local\",outcome=\"failed\"}",
        "calybris_gateway_probes_total{provider=\"local\",outcome=\"ok\"}",
        "calybris_gateway_breaker_transitions_total{provider=\"local\",from=\"half_open\",to=\"closed\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    let dir = harness.stop().await;
    let executions = executions(&dir);
    assert_eq!(
        executions[0].attempts[0].skipped,
        Some(AttemptSkip::CircuitOpen)
    );
    assert_eq!(executions[1].attempts.len(), 1);
    verified(&dir);
}

async fn two_at_once(harness: &Harness) -> [(u16, serde_json::Value); 2] {
    let request = body("llama-mock", false);
    let (a, b) = tokio::join!(
        harness.chat(Some(KEY), &request),
        harness.chat(Some(KEY), &request)
    );
    [a, b]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_local_request_falls_back_when_the_slot_stays_busy() {
    let harness = local_then_remote(
        "slot-busy",
        MockBehavior::Slow(600),
        "",
        "local_slot_wait_ms = 50",
    )
    .await;
    let answers = two_at_once(&harness).await;
    let mut models: Vec<&str> = answers
        .iter()
        .map(|(status, value)| {
            assert_eq!(*status, 200, "{value}");
            served_by(value)
        })
        .collect();
    models.sort_unstable();
    assert_eq!(models, ["gpt-mock", "llama-mock"]);
    assert_eq!(harness.mocks[0].calls(), 1, "one local call at a time");
    let metrics = harness.metrics().await;
    let series =
        "calybris_gateway_attempts_skipped_total{provider=\"local\",reason=\"local_slot_busy\"} 1";
    assert!(metrics.contains(series), "{series} in\n{metrics}");
    let dir = harness.stop().await;
    let executions = executions(&dir);
    let fell_back = executions
        .iter()
        .find(|e| e.model == "gpt-mock")
        .expect("one fell back");
    let skip = &fell_back.attempts[0];
    assert_eq!(
        (skip.provider.as_str(), skip.skipped, skip.http_status),
        ("local", Some(AttemptSkip::LocalSlotBusy), 0)
    );
    assert!(
        skip.latency_ms >= 40,
        "it waited first: {}",
        skip.latency_ms
    );
    assert!(fell_back.attempts[1].success);
    verified(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_local_request_waits_for_the_slot_within_the_wait() {
    let harness = local_then_remote(
        "slot-wait",
        MockBehavior::Slow(300),
        "",
        "local_slot_wait_ms = 10000",
    )
    .await;
    let started = Instant::now();
    let answers = two_at_once(&harness).await;
    for (status, value) in &answers {
        assert_eq!(*status, 200, "{value}");
        assert_eq!(served_by(value), "llama-mock");
    }
    // One after the other: the second waited for the first's slot.
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(harness.mocks[1].calls(), 0, "nothing fell back");
    let harness_calls = harness.mocks[0].calls();
    let dir = harness.stop().await;
    let mut latencies: Vec<u32> = executions(&dir).iter().map(|e| e.latency_ms).collect();
    latencies.sort_unstable();
    assert!(latencies[1] >= 300, "the second waited: {latencies:?}");
    assert_eq!(
        harness_calls, 2,
        "both called the local provider, one after the other"
    );
    verified(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_stream_holds_the_slot_until_it_ends() {
    let harness = local_then_remote(
        "slot-stream",
        MockBehavior::Drip(100),
        "",
        "local_slot_wait_ms = 50",
    )
    .await;
    let stream_body = body("llama-mock", true);
    let streaming = harness.chat(Some(KEY), &stream_body);
    let whole = async {
        // Well inside the stream's ten 100 ms events.
        tokio::time::sleep(Duration::from_millis(300)).await;
        harness.chat(Some(KEY), &body("llama-mock", false)).await
    };
    let ((stream_status, streamed), (status, value)) = tokio::join!(streaming, whole);
    assert_eq!(stream_status, 200);
    let streamed = streamed.as_str().unwrap_or_default().to_owned();
    assert!(streamed.ends_with("data: [DONE]\n\n"), "{streamed}");
    assert_eq!(status, 200, "{value}");
    assert_eq!(
        served_by(&value),
        "gpt-mock",
        "the slot was held by the stream"
    );
    let dir = harness.stop().await;
    let executions = executions(&dir);
    let fell_back = executions
        .iter()
        .find(|e| e.model == "gpt-mock")
        .expect("one fell back");
    assert_eq!(
        fell_back.attempts[0].skipped,
        Some(AttemptSkip::LocalSlotBusy)
    );
    verified(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_cut_midway_count_as_provider_failures_and_open_the_breaker() {
    let harness = Harness::start(
        "breaker-cut-streams",
        vec![
            Upstream::new("primary", "openai", "gpt-mock")
                .quality("0.9")
                .behaving(MockBehavior::Truncated)
                .extra("breaker_failures = 2\nbreaker_cooldown_ms = 600000"),
            Upstream::new("secondary", "anthropic", "claude-mock"),
        ],
        Options::default(),
    )
    .await;
    // Each stream opens (its first events arrive) and is then cut: a provider failure
    // for the breaker, even though the first event counted as an answer.
    for _ in 0..2 {
        let response = harness.post_chat(body("gpt-mock", true)).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("body");
        assert!(text.contains("Hello from primary."), "{text}");
        assert!(!text.contains("[DONE]"), "{text}");
    }
    until_state(&harness, "primary", BreakerState::Open).await;
    // The breaker is open: the next stream goes straight to the fallback.
    let response = harness.post_chat(body("gpt-mock", true)).await;
    let text = response.text().await.expect("body");
    assert!(text.contains("Hello from secondary."), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(harness.mocks[0].calls(), 2);
    let metrics = harness.metrics().await;
    // A cut between events is `truncated`, one inside an event `malformed`.
    let cut: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("calybris_gateway_provider_streams_cut_total{provider=\"primary\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(cut, 2, "{metrics}");
    for series in [
        "calybris_gateway_breaker_transitions_total{provider=\"primary\",from=\"closed\",to=\"open\"} 1",
        "calybris_gateway_attempts_skipped_total{provider=\"primary\",reason=\"circuit_open\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    let dir = harness.stop().await;
    let executions = executions(&dir);
    assert_eq!(executions.len(), 3);
    for execution in &executions[..2] {
        assert_eq!(execution.status, ExecutionStatus::StreamCut);
        assert_eq!(execution.model, "gpt-mock");
        assert_eq!(execution.attempts.len(), 1);
        assert!(!execution.attempts[0].success);
        assert!(execution.output_tokens > 0, "what was relayed is settled");
        assert!(execution.cost_microunits > 0);
    }
    assert_eq!(executions[2].status, ExecutionStatus::Served);
    assert_eq!(
        executions[2].attempts[0].skipped,
        Some(AttemptSkip::CircuitOpen)
    );
    verified(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_streams_keep_the_breaker_closed() {
    // A success is reported at the end of each stream (not at its first event), and
    // a clean end resets the failure count.
    let harness = Harness::start(
        "breaker-streams-ok",
        vec![
            Upstream::new("primary", "openai", "gpt-mock")
                .extra("breaker_failures = 2\nbreaker_cooldown_ms = 600000"),
        ],
        Options::default(),
    )
    .await;
    harness.mocks[0].set_behavior(MockBehavior::Truncated);
    let _ = harness.post_chat(body("gpt-mock", true)).await.text().await;
    harness.mocks[0].set_behavior(MockBehavior::Ok);
    let text = harness
        .post_chat(body("gpt-mock", true))
        .await
        .text()
        .await
        .expect("body");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    harness.mocks[0].set_behavior(MockBehavior::Truncated);
    let _ = harness.post_chat(body("gpt-mock", true)).await.text().await;
    let gateway = harness.gateway.as_ref().expect("running");
    assert_eq!(
        gateway.breaker_state("primary"),
        Some(BreakerState::Closed),
        "cut, whole, cut: never two failures in a row"
    );
    let dir = harness.stop().await;
    verified(&dir);
}
