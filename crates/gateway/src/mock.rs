//! Mock providers: real HTTP servers on loopback answering in the OpenAI
//! (`/v1/chat/completions`), Anthropic (`/v1/messages`) and Ollama (`/api/chat`)
//! shapes, for `calybris serve --demo` and for tests. Nothing here reaches a network.
//!
//! Tools: a request that offers tools (and does not say `none`) and whose last message
//! is not a tool's result is answered, by every well-behaved variant, with one call of
//! the tool the choice names (else the first tool), arguments
//! `{"query":"Hello from NAME."}`, in the provider's own shape (OpenAI `tool_calls`,
//! Anthropic `tool_use` with `stop_reason` `tool_use`, Ollama `message.tool_calls`),
//! whole or streamed (OpenAI's arguments in two `delta.tool_calls` pieces, Anthropic's
//! in two `input_json_delta` pieces). A request whose last message is a tool's result
//! gets a text answer. [`MockBehavior::BadToolCall`] answers a malformed tool call.
//! The Ollama mock refuses (400, Ollama's `{"error"}` body) a `tool` message without a
//! non-empty `tool_name`, the field Ollama needs to know which tool's result it is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::config::ProviderKind;

/// How a mock answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockBehavior {
    /// A good answer at once.
    Ok,
    /// A good answer after this many milliseconds.
    Slow(u64),
    /// This HTTP status with an error body.
    Fail(u16),
    /// A body that is not the expected JSON.
    Malformed,
    /// A stream cut before its end marker (a whole answer: a body cut short).
    Truncated,
    /// Accept and never answer.
    Hang,
    /// A good stream, one event every this many milliseconds (a whole answer: at once).
    Drip(u64),
    /// A tool call the gateway must refuse as malformed: OpenAI's without an id (a
    /// stream's with an index out of range), Anthropic's `tool_use` without a name
    /// (a stream's `input_json_delta` for no tool block), Ollama's without a function.
    BadToolCall,
}

#[derive(Debug)]
struct MockState {
    name: String,
    behavior: parking_lot::Mutex<MockBehavior>,
    calls: AtomicU64,
    probes: AtomicU64,
    words: usize,
    last_request: parking_lot::Mutex<Option<Value>>,
}

/// A running mock provider; stopped when dropped.
#[derive(Debug)]
pub struct MockProvider {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<MockState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MockProvider {
    /// Starts a mock on `127.0.0.1` (a free port) that answers with `behavior`, naming
    /// itself `name` in its answers, `words` words long.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start(name: &str, behavior: MockBehavior, words: usize) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState {
            name: name.to_owned(),
            behavior: parking_lot::Mutex::new(behavior),
            calls: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            words: words.max(1),
            last_request: parking_lot::Mutex::new(None),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/api/chat", post(ollama))
            .route("/v1/models", get(probe))
            .route("/api/tags", get(probe))
            .with_state(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
        })
    }

    /// The base URL a provider of `kind` is configured with.
    #[must_use]
    pub fn base_url(&self, kind: ProviderKind) -> String {
        match kind {
            ProviderKind::Openai => format!("http://{}/v1", self.addr),
            ProviderKind::Anthropic | ProviderKind::Ollama => format!("http://{}", self.addr),
        }
    }

    /// Changes how it answers from now on (chat requests and health probes).
    pub fn set_behavior(&self, behavior: MockBehavior) {
        *self.state.behavior.lock() = behavior;
    }

    /// Health probes received so far (`GET /v1/models`, `GET /api/tags`).
    #[must_use]
    pub fn probes(&self) -> u64 {
        self.state.probes.load(Ordering::Relaxed)
    }

    /// The JSON body of the last chat request received (what the gateway sent, in
    /// this provider's shape).
    #[must_use]
    pub fn last_request(&self) -> Option<Value> {
        self.state.last_request.lock().clone()
    }

    /// Requests received so far.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::Relaxed)
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl MockState {
    fn behavior(&self) -> MockBehavior {
        *self.behavior.lock()
    }
}

/// A health probe: 200 with an empty model list, or the failing behaviour's status
/// (hanging and slow behaviours hang and wait as for a chat request).
async fn probe(State(state): State<Arc<MockState>>) -> Response {
    state.probes.fetch_add(1, Ordering::Relaxed);
    match state.behavior() {
        MockBehavior::Fail(status) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        MockBehavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        MockBehavior::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            axum::Json(json!({"object": "list", "data": [], "models": []})).into_response()
        }
        _ => axum::Json(json!({"object": "list", "data": [], "models": []})).into_response(),
    }
}

struct Asked {
    stream: bool,
    max_tokens: u64,
    input_tokens: u64,
    /// The tool to call, when the answer is a tool call.
    tool: Option<String>,
}

/// The tool a request wants called (see the module docs), in any provider's shape.
fn tool_to_call(value: &Value) -> Option<String> {
    let tools = value.get("tools")?.as_array()?;
    let choice = value.get("tool_choice");
    let none = choice.is_some_and(|c| c == "none" || c.get("type") == Some(&json!("none")));
    let messages = value.get("messages")?.as_array()?;
    let last = messages.last()?;
    let answered = last.get("role") == Some(&json!("tool"))
        || last
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| {
                blocks
                    .iter()
                    .any(|b| b.get("type") == Some(&json!("tool_result")))
            });
    if none || answered {
        return None;
    }
    let named = choice.and_then(|c| {
        c.get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| c.get("name"))
            .and_then(Value::as_str)
    });
    let first = tools.first().and_then(|t| {
        t.get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| t.get("name"))
            .and_then(Value::as_str)
    });
    named.or(first).map(str::to_owned)
}

fn asked(state: &MockState, body: &[u8], max_path: &[&str]) -> Option<Asked> {
    let value: Value = serde_json::from_slice(body).ok()?;
    *state.last_request.lock() = Some(value.clone());
    // The gateway's own estimate, so that a mock's usage equals the reservation.
    let input_tokens: u64 = value
        .get("messages")?
        .as_array()?
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_str))
        .map(|content| (content.len() as u64).div_ceil(4) + 4)
        .sum::<u64>()
        + 3;
    let max_tokens = max_path
        .iter()
        .try_fold(&value, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(16);
    Some(Asked {
        stream: value.get("stream").and_then(Value::as_bool) == Some(true),
        max_tokens,
        input_tokens,
        tool: tool_to_call(&value),
    })
}

async fn prelude(state: &MockState) -> Option<Response> {
    state.calls.fetch_add(1, Ordering::Relaxed);
    match state.behavior() {
        MockBehavior::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        MockBehavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            None
        }
        MockBehavior::Fail(status) => Some(
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(json!({"error": {"message": "mock failure", "type": "server_error"}})),
            )
                .into_response(),
        ),
        MockBehavior::Malformed => Some(
            (
                [(header::CONTENT_TYPE, "application/json")],
                "{\"choices\": [tru",
            )
                .into_response(),
        ),
        MockBehavior::Ok
        | MockBehavior::Truncated
        | MockBehavior::Drip(_)
        | MockBehavior::BadToolCall => None,
    }
}

fn words(state: &MockState, max_tokens: u64) -> Vec<String> {
    let count = state
        .words
        .min(usize::try_from(max_tokens).unwrap_or(usize::MAX));
    (0..count.max(1))
        .map(|i| {
            if i == 0 {
                format!("Hello from {}.", state.name)
            } else {
                " word".to_owned()
            }
        })
        .collect()
}

fn sse(lines: Vec<String>, behavior: MockBehavior) -> Response {
    if let MockBehavior::Drip(ms) = behavior {
        let stream = futures_util::stream::unfold(lines.into_iter(), move |mut lines| async move {
            let line = lines.next()?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), lines))
        });
        return (
            [(header::CONTENT_TYPE, "text/event-stream")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    let truncated = behavior == MockBehavior::Truncated;
    let mut body: String = lines.concat();
    if truncated {
        let cut = body.len() / 2;
        let cut = (0..=cut)
            .rev()
            .find(|i| body.is_char_boundary(*i))
            .unwrap_or(0);
        body.truncate(cut);
    }
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from(body),
    )
        .into_response()
}

async fn openai(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    if let Some(response) = prelude(&state).await {
        return response;
    }
    let Some(asked) = asked(&state, &body, &["max_tokens"]) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let words = words(&state, asked.max_tokens);
    let output = words.len() as u64;
    let bad = state.behavior() == MockBehavior::BadToolCall;
    if let Some(tool) = &asked.tool {
        let arguments = arguments(&state);
        let usage = json!({"prompt_tokens": asked.input_tokens, "completion_tokens": output});
        if asked.stream {
            let (first, rest) = arguments.split_at(arguments.len() / 2);
            let piece = |index: u64, call: Value| {
                let mut call = call;
                call["index"] = json!(index);
                format!(
                    "data: {}\n\n",
                    json!({"object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
                )
            };
            let index = if bad { 999 } else { 0 };
            let lines = vec![
                piece(
                    index,
                    json!({"id": "call_mock", "type": "function",
                           "function": {"name": tool, "arguments": first}}),
                ),
                piece(index, json!({"function": {"arguments": rest}})),
                format!(
                    "data: {}\n\n",
                    json!({"object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
                ),
                format!(
                    "data: {}\n\n",
                    json!({"object": "chat.completion.chunk", "choices": [], "usage": usage})
                ),
                "data: [DONE]\n\n".to_owned(),
            ];
            return sse(lines, state.behavior());
        }
        let mut call = json!({"id": "call_mock", "type": "function",
                              "function": {"name": tool, "arguments": arguments}});
        if bad {
            call.as_object_mut().map(|c| c.remove("id"));
        }
        let value = json!({
            "id": "mock", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": null, "tool_calls": [call]}}],
            "usage": usage,
        });
        return whole(&state, &value);
    }
    if asked.stream {
        let mut lines: Vec<String> = words
            .iter()
            .map(|w| {
                format!(
                    "data: {}\n\n",
                    json!({"object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {"content": w}}]})
                )
            })
            .collect();
        lines.push(format!(
            "data: {}\n\n",
            json!({"object": "chat.completion.chunk", "choices": [],
                   "usage": {"prompt_tokens": asked.input_tokens, "completion_tokens": output}})
        ));
        lines.push("data: [DONE]\n\n".to_owned());
        return sse(lines, state.behavior());
    }
    let value = json!({
        "id": "mock", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": words.concat()}}],
        "usage": {"prompt_tokens": asked.input_tokens, "completion_tokens": output},
    });
    whole(&state, &value)
}

/// The arguments of the mock's tool call.
fn arguments(state: &MockState) -> String {
    json!({"query": format!("Hello from {}.", state.name)}).to_string()
}

fn whole(state: &MockState, value: &Value) -> Response {
    let mut text = value.to_string();
    if state.behavior() == MockBehavior::Truncated {
        text.truncate(text.len() / 2);
    }
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn anthropic(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    if let Some(response) = prelude(&state).await {
        return response;
    }
    let Some(asked) = asked(&state, &body, &["max_tokens"]) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let words = words(&state, asked.max_tokens);
    let output = words.len() as u64;
    let bad = state.behavior() == MockBehavior::BadToolCall;
    if let Some(tool) = &asked.tool {
        let arguments = arguments(&state);
        if asked.stream {
            let (first, rest) = arguments.split_at(arguments.len() / 2);
            let block = if bad { 7 } else { 0 };
            let delta = |piece: &str| {
                format!(
                    "event: content_block_delta\ndata: {}\n\n",
                    json!({"type": "content_block_delta", "index": block,
                           "delta": {"type": "input_json_delta", "partial_json": piece}})
                )
            };
            let lines = vec![
                format!(
                    "event: message_start\ndata: {}\n\n",
                    json!({"type": "message_start",
                           "message": {"usage": {"input_tokens": asked.input_tokens, "output_tokens": 0}}})
                ),
                format!(
                    "event: content_block_start\ndata: {}\n\n",
                    json!({"type": "content_block_start", "index": 0,
                           "content_block": {"type": "tool_use", "id": "toolu_mock",
                                             "name": tool, "input": {}}})
                ),
                delta(first),
                delta(rest),
                "event: content_block_stop\ndata: {\"type\": \"content_block_stop\", \"index\": 0}\n\n"
                    .to_owned(),
                format!(
                    "event: message_delta\ndata: {}\n\n",
                    json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": output}})
                ),
                "event: message_stop\ndata: {\"type\": \"message_stop\"}\n\n".to_owned(),
            ];
            return sse(lines, state.behavior());
        }
        let input: Value = serde_json::from_str(&arguments).unwrap_or_default();
        let mut call =
            json!({"type": "tool_use", "id": "toolu_mock", "name": tool, "input": input});
        if bad {
            call.as_object_mut().map(|c| c.remove("name"));
        }
        let value = json!({
            "id": "mock", "type": "message", "role": "assistant",
            "content": [call],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": asked.input_tokens, "output_tokens": output},
        });
        return whole(&state, &value);
    }
    if asked.stream {
        let mut lines = vec![format!(
            "event: message_start\ndata: {}\n\n",
            json!({"type": "message_start",
                   "message": {"usage": {"input_tokens": asked.input_tokens, "output_tokens": 0}}})
        )];
        lines.extend(words.iter().map(|w| {
            format!(
                "event: content_block_delta\ndata: {}\n\n",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": w}})
            )
        }));
        lines.push(format!(
            "event: message_delta\ndata: {}\n\n",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                   "usage": {"output_tokens": output}})
        ));
        lines.push("event: message_stop\ndata: {\"type\": \"message_stop\"}\n\n".to_owned());
        return sse(lines, state.behavior());
    }
    let value = json!({
        "id": "mock", "type": "message", "role": "assistant",
        "content": [{"type": "text", "text": words.concat()}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": asked.input_tokens, "output_tokens": output},
    });
    whole(&state, &value)
}

/// Whether every `tool` message of an Ollama chat body names its tool (`tool_name`, a
/// non-empty string).
fn ollama_tool_messages_named(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    value
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(|messages| {
            messages
                .iter()
                .filter(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
                .all(|m| {
                    m.get("tool_name")
                        .and_then(Value::as_str)
                        .is_some_and(|name| !name.is_empty())
                })
        })
}

async fn ollama(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    if let Some(response) = prelude(&state).await {
        return response;
    }
    let Some(asked) = asked(&state, &body, &["options", "num_predict"]) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if !ollama_tool_messages_named(&body) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "a tool message needs its tool_name"})),
        )
            .into_response();
    }
    let words = words(&state, asked.max_tokens);
    let output = words.len() as u64;
    if let Some(tool) = &asked.tool {
        let input: Value = serde_json::from_str(&arguments(&state)).unwrap_or_default();
        let call = if state.behavior() == MockBehavior::BadToolCall {
            json!({"name": tool})
        } else {
            json!({"function": {"name": tool, "arguments": input}})
        };
        let message = json!({"role": "assistant", "content": "", "tool_calls": [call]});
        let done = |message: Value| {
            json!({"message": message, "done": true, "done_reason": "stop",
                   "prompt_eval_count": asked.input_tokens, "eval_count": output})
        };
        if asked.stream {
            let lines = vec![
                format!("{}\n", json!({"message": message, "done": false})),
                format!("{}\n", done(json!({"role": "assistant", "content": ""}))),
            ];
            return sse(lines, state.behavior());
        }
        return whole(&state, &done(message));
    }
    if asked.stream {
        let mut lines: Vec<String> = words
            .iter()
            .map(|w| {
                format!(
                    "{}\n",
                    json!({"message": {"role": "assistant", "content": w}, "done": false})
                )
            })
            .collect();
        lines.push(format!(
            "{}\n",
            json!({"message": {"role": "assistant", "content": ""}, "done": true,
                   "done_reason": "stop", "prompt_eval_count": asked.input_tokens,
                   "eval_count": output})
        ));
        return sse(lines, state.behavior());
    }
    let value = json!({
        "message": {"role": "assistant", "content": words.concat()}, "done": true,
        "done_reason": "stop", "prompt_eval_count": asked.input_tokens, "eval_count": output,
    });
    whole(&state, &value)
}
