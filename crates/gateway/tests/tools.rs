//! Tools (function calling) over real loopback HTTP, for each provider shape, whole
//! and streamed: the tools reach the provider in its own shape, its tool calls come
//! back in OpenAI's, a second turn with the tool's result is translated back, only
//! models with the tools capability serve, malformed tool payloads get typed 400s, and
//! a provider's malformed tool call is a provider failure.

mod common;

use calybris_gate::{ExecutionStatus, VerifyOptions, verify_dir};
use calybris_gateway::mock::MockBehavior;
use common::{Harness, KEY, Options, Upstream, executions, records};
use serde_json::{Value, json};

fn verified(dir: &std::path::Path) {
    let report = verify_dir(dir, &VerifyOptions::default()).expect("the directory verifies");
    assert!(report.conservation.balanced, "the books balance");
    assert_eq!(report.open_holds, 0, "no reservation left open");
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                       "required": ["query"]}}})
}

fn tools_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 10,
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Weather in Paris?"}],
           "tools": [weather_tool(), {"type": "function", "function": {"name": "other"}}],
           "tool_choice": "auto"})
}

/// The data lines of a server-sent event stream, `[DONE]` included.
fn events(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// A streamed answer's tool calls put together by index (id, name, arguments), and
/// its finish reason.
fn assembled(text: &str) -> (Vec<(String, String, String)>, Option<String>) {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = None;
    for data in events(text) {
        if data == "[DONE]" {
            continue;
        }
        let value: Value = serde_json::from_str(&data).expect("a JSON event");
        let Some(choice) = value["choices"].get(0) else {
            continue;
        };
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        }
        for piece in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = piece["index"].as_u64().expect("an index") as usize;
            if index == calls.len() {
                calls.push(Default::default());
            }
            let call = &mut calls[index];
            if let Some(id) = piece["id"].as_str() {
                assert!(call.0.is_empty(), "the id comes once: {data}");
                assert_eq!(piece["type"], "function");
                call.0 = id.to_owned();
            }
            if let Some(name) = piece["function"]["name"].as_str() {
                call.1 = name.to_owned();
            }
            call.2
                .push_str(piece["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    (calls, finish)
}

/// One request with tools, then the second turn with the tool's result, against one
/// provider of `kind`, whole or streamed.
async fn round_trip(kind: &'static str, stream: bool) {
    let harness = Harness::start(
        &format!("tools-{kind}-{stream}"),
        vec![Upstream::new("p", kind, "m").capable(&["tools"])],
        Options {
            capabilities: vec!["vision", "tools"],
            ..Options::default()
        },
    )
    .await;
    let response = harness.post_chat(tools_body("m", stream).to_string()).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    let (id, name, arguments) = if stream {
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let (calls, finish) = assembled(&text);
        assert_eq!(finish.as_deref(), Some("tool_calls"), "{text}");
        assert_eq!(calls.len(), 1, "{text}");
        calls.into_iter().next().expect("one call")
    } else {
        let value: Value = serde_json::from_str(&text).expect("JSON");
        let choice = &value["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{value}");
        assert_eq!(choice["message"]["content"], Value::Null, "{value}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(
            choice["message"]["tool_calls"].as_array().map(Vec::len),
            Some(1)
        );
        (
            call["id"].as_str().expect("id").to_owned(),
            call["function"]["name"].as_str().expect("name").to_owned(),
            call["function"]["arguments"]
                .as_str()
                .expect("arguments")
                .to_owned(),
        )
    };
    assert!(!id.is_empty());
    assert_eq!(name, "get_weather");
    let arguments: Value = serde_json::from_str(&arguments).expect("the arguments are JSON");
    assert_eq!(arguments, json!({"query": "Hello from p."}));
    // What the provider received, in its own shape.
    let sent = harness.mocks[0].last_request().expect("a request");
    match kind {
        "anthropic" => {
            assert_eq!(sent["tools"][0]["name"], "get_weather", "{sent}");
            assert_eq!(
                sent["tools"][0]["input_schema"]["required"],
                json!(["query"]),
                "{sent}"
            );
            assert_eq!(sent["tool_choice"], json!({"type": "auto"}), "{sent}");
            assert_eq!(sent["system"], "Be brief.", "{sent}");
        }
        _ => {
            assert_eq!(sent["tools"][0], weather_tool(), "{sent}");
            assert_eq!(sent["tools"][1]["function"]["parameters"]["type"], "object");
            if kind == "openai" {
                assert_eq!(sent["tool_choice"], "auto", "{sent}");
            } else {
                assert!(sent.get("tool_choice").is_none(), "{sent}");
            }
        }
    }
    // The second turn: the assistant's call and the tool's result.
    let mut second = tools_body("m", stream);
    second["messages"]
        .as_array_mut()
        .expect("messages")
        .extend([
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": id, "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"query\": \"Paris\"}"}}]}),
            json!({"role": "tool", "tool_call_id": id, "content": "18 C, sunny"}),
        ]);
    let response = harness.post_chat(second.to_string()).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    if stream {
        let (calls, finish) = assembled(&text);
        assert!(calls.is_empty(), "{text}");
        assert_eq!(finish.as_deref(), Some("stop"), "{text}");
        assert!(text.contains("Hello from p."), "{text}");
    } else {
        let value: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["choices"][0]["finish_reason"], "stop", "{value}");
        assert!(value["choices"][0]["message"].get("tool_calls").is_none());
        assert!(
            value["choices"][0]["message"]["content"]
                .as_str()
                .is_some_and(|t| t.starts_with("Hello from p.")),
            "{value}"
        );
    }
    let sent = harness.mocks[0].last_request().expect("a request");
    let messages = sent["messages"].as_array().expect("messages");
    match kind {
        "anthropic" => {
            let assistant = &messages[messages.len() - 2];
            assert_eq!(assistant["role"], "assistant", "{sent}");
            assert_eq!(
                assistant["content"][0],
                json!({"type": "tool_use", "id": id, "name": "get_weather",
                       "input": {"query": "Paris"}}),
                "{sent}"
            );
            let result = &messages[messages.len() - 1];
            assert_eq!(result["role"], "user", "{sent}");
            assert_eq!(
                result["content"][0],
                json!({"type": "tool_result", "tool_use_id": id, "content": "18 C, sunny"}),
                "{sent}"
            );
        }
        "ollama" => {
            let assistant = &messages[messages.len() - 2];
            assert_eq!(
                assistant["tool_calls"][0]["function"],
                json!({"name": "get_weather", "arguments": {"query": "Paris"}}),
                "{sent}"
            );
            assert_eq!(messages[messages.len() - 1]["role"], "tool");
            // Ollama learns which tool answered from `tool_name` (the mock refuses a
            // tool message without it).
            assert_eq!(
                messages[messages.len() - 1]["tool_name"],
                "get_weather",
                "{sent}"
            );
        }
        _ => {
            let assistant = &messages[messages.len() - 2];
            assert_eq!(assistant["tool_calls"][0]["id"], id.as_str(), "{sent}");
            assert_eq!(
                assistant["tool_calls"][0]["function"]["arguments"],
                "{\"query\": \"Paris\"}"
            );
            assert_eq!(messages[messages.len() - 1]["tool_call_id"], id.as_str());
        }
    }
    let dir = harness.stop().await;
    let executions = executions(&dir);
    assert_eq!(executions.len(), 2);
    for execution in &executions {
        assert_eq!(execution.status, ExecutionStatus::Served, "{execution:?}");
        assert!(execution.cost_microunits > 0);
    }
    // The kernel was asked for the tools capability (bit 1: "tools" is the policy's
    // second capability name).
    let required: Vec<u64> = records(&dir)
        .into_iter()
        .filter_map(|(_, record)| match record {
            calybris_gate::GateRecord::Decision(d) => Some(d.audit.input.required_capabilities),
            _ => None,
        })
        .collect();
    assert_eq!(required, [0b10, 0b10]);
    verified(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_tool_calls_whole() {
    round_trip("openai", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_tool_calls_streamed() {
    round_trip("openai", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_tool_use_whole() {
    round_trip("anthropic", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_tool_use_streamed() {
    round_trip("anthropic", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_tool_calls_whole() {
    round_trip("ollama", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_tool_calls_streamed() {
    round_trip("ollama", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_tools_routes_only_to_models_with_the_capability() {
    let harness = Harness::start(
        "tools-routing",
        vec![
            // The default and better model cannot call tools.
            Upstream::new("plain", "openai", "plain-mock").quality("0.9"),
            Upstream::new("tooly", "anthropic", "tooly-mock")
                .quality("0.5")
                .capable(&["tools"]),
        ],
        Options {
            capabilities: vec!["tools"],
            ..Options::default()
        },
    )
    .await;
    let (status, value) = harness
        .chat(Some(KEY), &tools_body("plain-mock", false).to_string())
        .await;
    assert_eq!(status, 200, "{value}");
    assert_eq!(value["model"], "tooly-mock", "{value}");
    let plain = json!({"model": "plain-mock", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "hi"}]});
    let (status, value) = harness.chat(Some(KEY), &plain.to_string()).await;
    assert_eq!(status, 200, "{value}");
    assert_eq!(
        value["model"], "plain-mock",
        "without tools the better model serves"
    );
    // The capable model failing: the fallback chain has no other capable model, so
    // nothing serves rather than a model that cannot call tools.
    harness.mocks[1].set_behavior(MockBehavior::Fail(500));
    let (status, value) = harness
        .chat(Some(KEY), &tools_body("tooly-mock", false).to_string())
        .await;
    assert_eq!(status, 502, "{value}");
    assert_eq!(
        harness.mocks[0].calls(),
        1,
        "the plain model was never asked"
    );
    let dir = harness.stop().await;
    let executions = executions(&dir);
    assert_eq!(executions.len(), 3);
    assert_eq!(executions[2].status, ExecutionStatus::ProviderFailed);
    assert_eq!(executions[2].attempts.len(), 1, "{:?}", executions[2]);
    verified(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tool_payloads_get_typed_errors_and_nothing_is_reserved() {
    let harness = Harness::start(
        "tools-bad-input",
        vec![Upstream::new("p", "openai", "m").capable(&["tools"])],
        Options {
            capabilities: vec!["tools"],
            ..Options::default()
        },
    )
    .await;
    let user = json!({"role": "user", "content": "hi"});
    let cases = [
        (json!({"tools": {"type": "function"}}), "invalid_tools"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}),
            "invalid_tools",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}),
            "invalid_tools",
        ),
        (
            json!({"tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "invalid_tool_choice",
        ),
        (json!({"tool_choice": "required"}), "invalid_tool_choice"),
        (
            json!({"functions": [{"name": "f"}]}),
            "unsupported_parameter",
        ),
        (
            json!({"messages": [user, {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]}),
            "invalid_tool_calls",
        ),
        (
            json!({"messages": [user, {"role": "assistant", "tool_calls": [
                {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}),
            "invalid_tool_calls",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}),
            "invalid_tool_calls",
        ),
        (
            json!({"messages": [user, {"role": "tool", "content": "18 C"}]}),
            "invalid_tool_message",
        ),
    ];
    for (extra, code) in &cases {
        let mut body = json!({"model": "m", "max_tokens": 10, "messages": [user]});
        for (key, value) in extra.as_object().expect("an object") {
            body[key] = value.clone();
        }
        let (status, value) = harness.chat(Some(KEY), &body.to_string()).await;
        assert_eq!(status, 400, "{body}: {value}");
        assert_eq!(value["error"]["code"], *code, "{body}: {value}");
        assert_eq!(value["error"]["type"], "invalid_request_error");
    }
    // A request with tools where the user message carried empty tool calls is fine.
    let mut ok = tools_body("m", false);
    ok["messages"][1]["tool_calls"] = json!([]);
    let (status, value) = harness.chat(Some(KEY), &ok.to_string()).await;
    assert_eq!(status, 200, "{value}");
    assert_eq!(
        harness.mocks[0].calls(),
        1,
        "no bad request reached the provider"
    );
    let dir = harness.stop().await;
    let report = verify_dir(&dir, &VerifyOptions::default()).expect("verifies");
    assert_eq!(report.counts.decisions, 1, "no bad request was decided");
    verified(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_the_tools_capability_refuses_tools() {
    let harness = Harness::start(
        "tools-unsupported",
        vec![Upstream::new("p", "openai", "m")],
        Options::default(),
    )
    .await;
    let (status, value) = harness
        .chat(Some(KEY), &tools_body("m", false).to_string())
        .await;
    assert_eq!(status, 400, "{value}");
    assert_eq!(value["error"]["code"], "tools_unsupported", "{value}");
    let dir = harness.stop().await;
    verified(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_tool_call_from_a_provider_is_a_provider_failure() {
    for kind in ["openai", "anthropic", "ollama"] {
        for stream in [false, true] {
            let harness = Harness::start(
                &format!("tools-bad-call-{kind}-{stream}"),
                vec![
                    Upstream::new("bad", kind, "bad-mock")
                        .quality("0.9")
                        .behaving(MockBehavior::BadToolCall)
                        .capable(&["tools"]),
                    Upstream::new("good", "openai", "good-mock").capable(&["tools"]),
                ],
                Options {
                    capabilities: vec!["tools"],
                    ..Options::default()
                },
            )
            .await;
            let response = harness
                .post_chat(tools_body("bad-mock", stream).to_string())
                .await;
            assert_eq!(response.status(), 200);
            let text = response.text().await.expect("body");
            let dir = harness.stop().await;
            let execution = executions(&dir).pop().expect("an execution");
            assert!(
                !execution.attempts[0].success,
                "{kind} {stream}: {execution:?}"
            );
            if stream && kind == "anthropic" {
                // Its tool block opened (the first event), then a delta for no block:
                // garbage after the first event cuts the stream.
                assert_eq!(execution.status, ExecutionStatus::StreamCut, "{text}");
                assert!(!text.contains("[DONE]"), "{text}");
                assert_eq!(execution.attempts.len(), 1);
            } else {
                // Refused at the answer or the first event: the fallback served.
                assert_eq!(execution.status, ExecutionStatus::Served, "{kind} {stream}");
                assert_eq!(execution.model, "good-mock", "{kind} {stream}: {text}");
                assert!(execution.attempts[1].success);
            }
            verified(&dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ollama_mock_refuses_a_tool_message_without_its_tool_name() {
    use calybris_gateway::config::ProviderKind;
    use calybris_gateway::mock::MockProvider;
    let mock = MockProvider::start("p", MockBehavior::Ok, 4)
        .await
        .expect("mock");
    let url = format!("{}/api/chat", mock.base_url(ProviderKind::Ollama));
    let client = reqwest::Client::new();
    let conversation = |tool_name: Option<&str>| {
        let mut result = json!({"role": "tool", "content": "18 C, sunny"});
        if let Some(name) = tool_name {
            result["tool_name"] = json!(name);
        }
        json!({"model": "m", "stream": false, "options": {"num_predict": 8}, "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"query": "Paris"}}}]},
            result,
        ]})
    };
    for (tool_name, expected) in [(None, 400), (Some(""), 400), (Some("get_weather"), 200)] {
        let response = client
            .post(&url)
            .body(conversation(tool_name).to_string())
            .send()
            .await
            .expect("the mock answers");
        assert_eq!(
            response.status().as_u16(),
            expected,
            "tool_name {tool_name:?}"
        );
    }
}
