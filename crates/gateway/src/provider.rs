//! Calls to providers: OpenAI-compatible chat completions, Anthropic messages, Ollama
//! chat; whole responses and streams, each with a timeout and bounded reads.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{ProviderConfig, ProviderKind};
use crate::tools::{self, MAX_TOOL_CALLS, ToolCall, ToolCallDelta, ToolChoice, ToolSpec};

/// The most bytes read from one provider response (whole body, or one stream line).
pub const MAX_PROVIDER_BYTES: usize = 16 << 20;

/// One message of a conversation, content flattened to text (serialized in OpenAI's
/// shape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text (for a `tool` message: the tool's result).
    pub content: String,
    /// An assistant message's tool calls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message's answer to this call id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message of text only.
    #[must_use]
    pub fn text(role: &str, content: &str) -> Self {
        Self {
            role: role.to_owned(),
            content: content.to_owned(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// What one attempt asks of a provider.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// The provider's name of the model.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// The most output tokens (the estimate the reservation was made for).
    pub max_tokens: u32,
    /// Sampling temperature, passed through.
    pub temperature: Option<f64>,
    /// The tools offered (see [`crate::tools`]).
    pub tools: Vec<ToolSpec>,
    /// The request's `tool_choice`, if it gave one.
    pub tool_choice: Option<ToolChoice>,
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The text (empty when the answer only calls tools).
    pub text: String,
    /// The tools the answer calls.
    pub tool_calls: Vec<ToolCall>,
    /// Prompt tokens the provider reported.
    pub input_tokens: Option<u64>,
    /// Completion tokens the provider reported.
    pub output_tokens: Option<u64>,
    /// Why it stopped, OpenAI's vocabulary.
    pub finish_reason: String,
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// The provider answered with a non-success status.
    #[error("provider answered HTTP {0}")]
    Status(u16),
    /// No answer (or no next chunk) in time.
    #[error("provider timed out")]
    Timeout,
    /// The connection failed.
    #[error("provider unreachable")]
    Connect,
    /// The answer is not of the expected shape.
    #[error("provider answer malformed: {0}")]
    Malformed(&'static str),
    /// A stream ended before its end marker.
    #[error("provider stream cut short")]
    Truncated,
    /// The provider's key variable is not set.
    #[error("provider key variable not set")]
    MissingKey,
}

impl AttemptError {
    /// The HTTP status to log for the attempt (0 when no answer came).
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Status(status) => *status,
            _ => 0,
        }
    }
}

/// One configured provider.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Its name.
    pub name: String,
    /// Its API kind.
    pub kind: ProviderKind,
    base_url: String,
    /// `{base_url}/chat/completions`, formatted once.
    chat_url: String,
    api_key: Option<String>,
    key_missing: bool,
    /// The whole-call timeout, and the wait for each stream chunk.
    pub timeout: Duration,
}

impl Provider {
    /// A provider from its configuration, its key read from the environment variable
    /// the configuration names (a key variable named but unset fails every attempt).
    #[must_use]
    pub fn from_config(name: &str, config: &ProviderConfig) -> Self {
        let api_key = config
            .api_key_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok());
        Self {
            name: name.to_owned(),
            kind: config.kind,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            chat_url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            key_missing: config.api_key_env.is_some() && api_key.is_none(),
            api_key,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
        }
    }

    fn request(
        &self,
        client: &reqwest::Client,
        request: &UpstreamRequest,
        stream: bool,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        if self.key_missing {
            return Err(AttemptError::MissingKey);
        }
        let builder = match self.kind {
            ProviderKind::Openai => {
                // Serialized straight from the request (no intermediate JSON tree).
                let body = serde_json::to_vec(&OpenaiBody {
                    model: &request.model,
                    messages: &request.messages,
                    max_tokens: request.max_tokens,
                    stream,
                    stream_options: stream.then_some(StreamOptions {
                        include_usage: true,
                    }),
                    temperature: request.temperature,
                    tools: (!request.tools.is_empty()).then(|| tools::openai_tools(&request.tools)),
                    tool_choice: request.tool_choice.as_ref().map(tools::openai_tool_choice),
                })
                .map_err(|_| AttemptError::Malformed("request not serializable"))?;
                let mut builder = client
                    .post(&self.chat_url)
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(key) = &self.api_key {
                    builder = builder.bearer_auth(key);
                }
                builder
            }
            ProviderKind::Anthropic => {
                let body = anthropic_body(request, stream);
                let mut builder = client
                    .post(format!("{}/v1/messages", self.base_url))
                    .header("anthropic-version", "2023-06-01")
                    .header("content-type", "application/json")
                    .body(body.to_string());
                if let Some(key) = &self.api_key {
                    builder = builder.header("x-api-key", key);
                }
                builder
            }
            ProviderKind::Ollama => client
                .post(format!("{}/api/chat", self.base_url))
                .header("content-type", "application/json")
                .body(ollama_body(request, stream).to_string()),
        };
        Ok(builder)
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        request: &UpstreamRequest,
        stream: bool,
    ) -> Result<reqwest::Response, AttemptError> {
        let builder = self.request(client, request, stream)?;
        let response = tokio::time::timeout(self.timeout, builder.send())
            .await
            .map_err(|_| AttemptError::Timeout)?
            .map_err(|error| {
                if error.is_timeout() {
                    AttemptError::Timeout
                } else {
                    AttemptError::Connect
                }
            })?;
        if !response.status().is_success() {
            return Err(AttemptError::Status(response.status().as_u16()));
        }
        Ok(response)
    }

    /// Asks for a whole answer.
    ///
    /// # Errors
    /// The [`AttemptError`] of the attempt.
    pub async fn complete(
        &self,
        client: &reqwest::Client,
        request: &UpstreamRequest,
    ) -> Result<Completion, AttemptError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut response = self.send(client, request, false).await?;
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .map_err(|_| AttemptError::Timeout)?
                .map_err(|_| AttemptError::Truncated)?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > MAX_PROVIDER_BYTES {
                return Err(AttemptError::Malformed("answer too large"));
            }
            body.extend_from_slice(&chunk);
        }
        if self.kind == ProviderKind::Openai
            && let Some(completion) = openai_fast(&body)
        {
            return Ok(completion);
        }
        let value: Value =
            serde_json::from_slice(&body).map_err(|_| AttemptError::Malformed("not JSON"))?;
        parse_completion(self.kind, &value)
    }

    /// Opens a stream.
    ///
    /// # Errors
    /// The [`AttemptError`] of the attempt.
    pub async fn stream(
        &self,
        client: &reqwest::Client,
        request: &UpstreamRequest,
    ) -> Result<UpstreamStream, AttemptError> {
        let response = self.send(client, request, true).await?;
        Ok(UpstreamStream {
            kind: self.kind,
            response,
            buffer: Vec::new(),
            pending: VecDeque::new(),
            timeout: self.timeout,
            finished: false,
            tool_blocks: Vec::new(),
            tool_count: 0,
        })
    }
}

/// Anthropic's messages body: system messages joined into `system`, tool calls and
/// results as content blocks (see [`crate::tools`]).
fn anthropic_body(request: &UpstreamRequest, stream: bool) -> Value {
    let mut system: Vec<&str> = Vec::new();
    let mut rest: Vec<Value> = Vec::new();
    for m in &request.messages {
        match m.role.as_str() {
            "system" => system.push(&m.content),
            "tool" => {
                let block = json!({"type": "tool_result",
                                   "tool_use_id": m.tool_call_id.as_deref().unwrap_or(""),
                                   "content": m.content});
                // Consecutive results answer one assistant turn: one user message.
                let joined = rest.last_mut().and_then(|last| {
                    let results = last["role"] == "user"
                        && last["content"].as_array().is_some_and(|blocks| {
                            blocks.iter().all(|b| b["type"] == "tool_result")
                        });
                    results.then(|| last["content"].as_array_mut()).flatten()
                });
                match joined {
                    Some(blocks) => blocks.push(block),
                    None => rest.push(json!({"role": "user", "content": [block]})),
                }
            }
            "assistant" if !m.tool_calls.is_empty() => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                blocks.extend(tools::anthropic_tool_use(&m.tool_calls));
                rest.push(json!({"role": "assistant", "content": blocks}));
            }
            _ => rest.push(json!({"role": m.role, "content": m.content})),
        }
    }
    let mut body = json!({
        "model": request.model, "messages": rest,
        "max_tokens": request.max_tokens, "stream": stream,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n"));
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if !request.tools.is_empty() {
        body["tools"] = Value::Array(tools::anthropic_tools(&request.tools));
        if let Some(choice) = &request.tool_choice {
            body["tool_choice"] = tools::anthropic_tool_choice(choice);
        }
    }
    body
}

/// Ollama's chat body: tools in OpenAI's shape unless the choice is `none`, tool
/// calls with structured arguments, a `tool` message with the `tool_name` of the call
/// it answers.
fn ollama_body(request: &UpstreamRequest, stream: bool) -> Value {
    let mut options = json!({"num_predict": request.max_tokens});
    if let Some(t) = request.temperature {
        options["temperature"] = json!(t);
    }
    let messages: Vec<Value> = request
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut message = json!({"role": m.role, "content": m.content});
            if !m.tool_calls.is_empty() {
                message["tool_calls"] = Value::Array(tools::ollama_tool_calls(&m.tool_calls));
            }
            if let Some(name) = answered_tool_name(&request.messages[..i], m) {
                message["tool_name"] = json!(name);
            }
            message
        })
        .collect();
    let mut body = json!({
        "model": request.model, "messages": messages,
        "stream": stream, "options": options,
    });
    if !request.tools.is_empty() && request.tool_choice != Some(ToolChoice::None) {
        body["tools"] = Value::Array(tools::openai_tools(&request.tools));
    }
    body
}

/// The name of the tool whose result `message` is (a `tool` message): that of the
/// call with its `tool_call_id` in the nearest earlier assistant message calling it.
/// `None` for another role, or when no earlier call has that id.
fn answered_tool_name<'a>(earlier: &'a [ChatMessage], message: &ChatMessage) -> Option<&'a str> {
    if message.role != "tool" {
        return None;
    }
    let id = message.tool_call_id.as_deref()?;
    earlier
        .iter()
        .rev()
        .filter(|m| m.role == "assistant")
        .flat_map(|m| m.tool_calls.iter())
        .find(|call| call.id == id)
        .map(|call| call.name.as_str())
}

#[derive(serde::Serialize)]
struct OpenaiBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    max_tokens: u32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
}

#[derive(serde::Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(serde::Deserialize)]
struct FastAnswer<'a> {
    #[serde(borrow)]
    choices: Vec<FastChoice<'a>>,
    #[serde(default)]
    usage: Option<FastUsage>,
}

#[derive(serde::Deserialize)]
struct FastChoice<'a> {
    #[serde(borrow)]
    message: FastMessage<'a>,
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct FastMessage<'a> {
    #[serde(borrow)]
    content: std::borrow::Cow<'a, str>,
    /// Present (even empty): the general path reads the answer.
    #[serde(default)]
    tool_calls: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct FastUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// An OpenAI answer of the usual shape, read without building a JSON tree; `None` for
/// anything else (which then takes the general path, with its errors).
fn openai_fast(body: &[u8]) -> Option<Completion> {
    let answer: FastAnswer<'_> = serde_json::from_slice(body).ok()?;
    let choice = answer.choices.into_iter().next()?;
    if choice.message.tool_calls.is_some() {
        return None;
    }
    let usage = answer.usage;
    Some(Completion {
        text: choice.message.content.into_owned(),
        tool_calls: Vec::new(),
        input_tokens: usage.as_ref().and_then(|u| u.prompt_tokens),
        output_tokens: usage.as_ref().and_then(|u| u.completion_tokens),
        finish_reason: finish(choice.finish_reason.as_deref()),
    })
}

fn u64_at(value: &Value, path: &[&str]) -> Option<u64> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_u64)
}

/// A provider's stop reason in OpenAI's vocabulary: `length`, `tool_calls` or `stop`.
pub(crate) fn finish(reason: Option<&str>) -> String {
    match reason {
        Some("max_tokens" | "length") => "length".to_owned(),
        Some("tool_use" | "tool_calls") => "tool_calls".to_owned(),
        _ => "stop".to_owned(),
    }
}

/// The finish of an answer that calls tools is `tool_calls`, whatever the provider
/// said (Ollama says `stop`).
fn finish_with(reason: Option<&str>, calls: &[ToolCall]) -> String {
    if calls.is_empty() {
        finish(reason)
    } else {
        "tool_calls".to_owned()
    }
}

fn parse_completion(kind: ProviderKind, value: &Value) -> Result<Completion, AttemptError> {
    let malformed = AttemptError::Malformed("no answer text");
    match kind {
        ProviderKind::Openai => {
            let choice = value
                .get("choices")
                .and_then(|c| c.get(0))
                .ok_or(malformed)?;
            let message = choice.get("message");
            let tool_calls = tools::from_openai(message.and_then(|m| m.get("tool_calls")))
                .ok_or(AttemptError::Malformed("tool calls malformed"))?;
            let text = match message.and_then(|m| m.get("content")) {
                Some(Value::String(text)) => text.as_str(),
                None | Some(Value::Null) if !tool_calls.is_empty() => "",
                _ => return Err(AttemptError::Malformed("no message content")),
            };
            Ok(Completion {
                text: text.to_owned(),
                input_tokens: u64_at(value, &["usage", "prompt_tokens"]),
                output_tokens: u64_at(value, &["usage", "completion_tokens"]),
                finish_reason: finish_with(
                    choice.get("finish_reason").and_then(Value::as_str),
                    &tool_calls,
                ),
                tool_calls,
            })
        }
        ProviderKind::Anthropic => {
            let blocks = value
                .get("content")
                .and_then(Value::as_array)
                .ok_or(malformed)?;
            let text: String = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            let tool_calls = tools::from_anthropic(blocks)
                .ok_or(AttemptError::Malformed("tool_use block malformed"))?;
            Ok(Completion {
                text,
                input_tokens: u64_at(value, &["usage", "input_tokens"]),
                output_tokens: u64_at(value, &["usage", "output_tokens"]),
                finish_reason: finish_with(
                    value.get("stop_reason").and_then(Value::as_str),
                    &tool_calls,
                ),
                tool_calls,
            })
        }
        ProviderKind::Ollama => {
            let message = value.get("message");
            let text = message
                .and_then(|m| m.get("content"))
                .and_then(Value::as_str)
                .ok_or(malformed)?;
            let tool_calls = tools::from_ollama(message.and_then(|m| m.get("tool_calls")), 0)
                .ok_or(AttemptError::Malformed("tool calls malformed"))?;
            Ok(Completion {
                text: text.to_owned(),
                input_tokens: u64_at(value, &["prompt_eval_count"]),
                output_tokens: u64_at(value, &["eval_count"]),
                finish_reason: finish_with(
                    value.get("done_reason").and_then(Value::as_str),
                    &tool_calls,
                ),
                tool_calls,
            })
        }
    }
}

/// One event of a provider stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Generated text.
    Delta(String),
    /// A piece of a tool call.
    ToolCall(ToolCallDelta),
    /// The provider's stop reason, in OpenAI's vocabulary (see [`Completion`]).
    Finish(String),
    /// Token counts the provider reported (either may be missing).
    Usage {
        /// Prompt tokens.
        input: Option<u64>,
        /// Completion tokens.
        output: Option<u64>,
    },
    /// The end marker.
    Done,
}

/// An open provider stream, read event by event.
#[derive(Debug)]
pub struct UpstreamStream {
    kind: ProviderKind,
    response: reqwest::Response,
    buffer: Vec<u8>,
    pending: VecDeque<StreamEvent>,
    timeout: Duration,
    finished: bool,
    /// Anthropic: the content-block index of each tool-use block, by call ordinal.
    tool_blocks: Vec<u64>,
    /// Ollama: tool calls seen so far (their ids when Ollama gives none).
    tool_count: usize,
}

impl UpstreamStream {
    /// The next event; `Ok(None)` after [`StreamEvent::Done`].
    ///
    /// # Errors
    /// [`AttemptError::Timeout`] when no chunk comes in time,
    /// [`AttemptError::Truncated`] when the stream ends without its end marker,
    /// [`AttemptError::Malformed`] for a line over [`MAX_PROVIDER_BYTES`] or an error event.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, AttemptError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if event == StreamEvent::Done {
                    self.finished = true;
                }
                return Ok(Some(event));
            }
            if self.finished {
                return Ok(None);
            }
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                self.parse_line(line.trim())?;
                continue;
            }
            if self.buffer.len() > MAX_PROVIDER_BYTES {
                return Err(AttemptError::Malformed("stream line too long"));
            }
            let chunk = tokio::time::timeout(self.timeout, self.response.chunk())
                .await
                .map_err(|_| AttemptError::Timeout)?
                .map_err(|_| AttemptError::Truncated)?;
            match chunk {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => {
                    if !self.buffer.is_empty() {
                        let line = std::mem::take(&mut self.buffer);
                        let line = String::from_utf8_lossy(&line).into_owned();
                        self.parse_line(line.trim())?;
                        if !self.pending.is_empty() {
                            continue;
                        }
                    }
                    return Err(AttemptError::Truncated);
                }
            }
        }
    }

    fn parse_line(&mut self, line: &str) -> Result<(), AttemptError> {
        if line.is_empty() {
            return Ok(());
        }
        match self.kind {
            ProviderKind::Openai => {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    return Ok(());
                };
                if data == "[DONE]" {
                    self.pending.push_back(StreamEvent::Done);
                    return Ok(());
                }
                let value: Value = serde_json::from_str(data)
                    .map_err(|_| AttemptError::Malformed("stream event not JSON"))?;
                if value.get("error").is_some() {
                    return Err(AttemptError::Malformed("error event"));
                }
                let choice = value.get("choices").and_then(|c| c.get(0));
                let delta = choice.and_then(|c| c.get("delta"));
                if let Some(text) = delta.and_then(|d| d.get("content")).and_then(Value::as_str)
                    && !text.is_empty()
                {
                    self.pending.push_back(StreamEvent::Delta(text.to_owned()));
                }
                if let Some(calls) = delta
                    .and_then(|d| d.get("tool_calls"))
                    .filter(|calls| !calls.is_null())
                {
                    let calls = calls
                        .as_array()
                        .ok_or(AttemptError::Malformed("tool call delta malformed"))?;
                    for call in calls {
                        let index = call
                            .get("index")
                            .and_then(Value::as_u64)
                            .filter(|i| *i < MAX_TOOL_CALLS as u64)
                            .ok_or(AttemptError::Malformed("tool call index"))?;
                        let function = call.get("function");
                        let text = |key: &str| {
                            function
                                .and_then(|f| f.get(key))
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        };
                        self.pending.push_back(StreamEvent::ToolCall(ToolCallDelta {
                            index: u32::try_from(index).unwrap_or(u32::MAX),
                            id: call.get("id").and_then(Value::as_str).map(str::to_owned),
                            name: text("name"),
                            arguments: text("arguments").unwrap_or_default(),
                        }));
                    }
                }
                if let Some(reason) = choice
                    .and_then(|c| c.get("finish_reason"))
                    .and_then(Value::as_str)
                {
                    self.pending
                        .push_back(StreamEvent::Finish(finish(Some(reason))));
                }
                if value.get("usage").is_some_and(Value::is_object) {
                    self.pending.push_back(StreamEvent::Usage {
                        input: u64_at(&value, &["usage", "prompt_tokens"]),
                        output: u64_at(&value, &["usage", "completion_tokens"]),
                    });
                }
            }
            ProviderKind::Anthropic => {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    return Ok(());
                };
                let value: Value = serde_json::from_str(data)
                    .map_err(|_| AttemptError::Malformed("stream event not JSON"))?;
                match value.get("type").and_then(Value::as_str) {
                    Some("message_start") => self.pending.push_back(StreamEvent::Usage {
                        input: u64_at(&value, &["message", "usage", "input_tokens"]),
                        output: None,
                    }),
                    Some("content_block_start") => {
                        let block = value.get("content_block");
                        if block.and_then(|b| b.get("type")).and_then(Value::as_str)
                            == Some("tool_use")
                        {
                            let text = |key: &str| {
                                block
                                    .and_then(|b| b.get(key))
                                    .and_then(Value::as_str)
                                    .map(str::to_owned)
                            };
                            let (Some(index), Some(id), Some(name)) = (
                                value.get("index").and_then(Value::as_u64),
                                text("id"),
                                text("name"),
                            ) else {
                                return Err(AttemptError::Malformed("tool_use block malformed"));
                            };
                            if self.tool_blocks.len() >= MAX_TOOL_CALLS
                                || self.tool_blocks.contains(&index)
                            {
                                return Err(AttemptError::Malformed("tool_use blocks"));
                            }
                            let ordinal = self.tool_blocks.len();
                            self.tool_blocks.push(index);
                            self.pending.push_back(StreamEvent::ToolCall(ToolCallDelta {
                                index: u32::try_from(ordinal).unwrap_or(u32::MAX),
                                id: Some(id),
                                name: Some(name),
                                arguments: String::new(),
                            }));
                        }
                    }
                    Some("content_block_delta") => {
                        let delta = value.get("delta");
                        if delta.and_then(|d| d.get("type")).and_then(Value::as_str)
                            == Some("input_json_delta")
                        {
                            let ordinal = value
                                .get("index")
                                .and_then(Value::as_u64)
                                .and_then(|index| self.tool_blocks.iter().position(|b| *b == index))
                                .ok_or(AttemptError::Malformed("input_json_delta of no tool"))?;
                            let piece = delta
                                .and_then(|d| d.get("partial_json"))
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            self.pending.push_back(StreamEvent::ToolCall(ToolCallDelta {
                                index: u32::try_from(ordinal).unwrap_or(u32::MAX),
                                id: None,
                                name: None,
                                arguments: piece.to_owned(),
                            }));
                        } else if let Some(text) =
                            delta.and_then(|d| d.get("text")).and_then(Value::as_str)
                        {
                            self.pending.push_back(StreamEvent::Delta(text.to_owned()));
                        }
                    }
                    Some("message_delta") => {
                        if let Some(reason) = value
                            .get("delta")
                            .and_then(|d| d.get("stop_reason"))
                            .and_then(Value::as_str)
                        {
                            self.pending
                                .push_back(StreamEvent::Finish(finish(Some(reason))));
                        }
                        self.pending.push_back(StreamEvent::Usage {
                            input: None,
                            output: u64_at(&value, &["usage", "output_tokens"]),
                        });
                    }
                    Some("message_stop") => self.pending.push_back(StreamEvent::Done),
                    Some("error") => return Err(AttemptError::Malformed("error event")),
                    _ => {}
                }
            }
            ProviderKind::Ollama => {
                let value: Value = serde_json::from_str(line)
                    .map_err(|_| AttemptError::Malformed("stream line not JSON"))?;
                if value.get("error").is_some() {
                    return Err(AttemptError::Malformed("error event"));
                }
                if let Some(text) = value
                    .get("message")
                    .and_then(|m| m.get("content"))
                    .and_then(Value::as_str)
                    && !text.is_empty()
                {
                    self.pending.push_back(StreamEvent::Delta(text.to_owned()));
                }
                let calls = tools::from_ollama(
                    value.get("message").and_then(|m| m.get("tool_calls")),
                    self.tool_count,
                )
                .ok_or(AttemptError::Malformed("tool calls malformed"))?;
                for call in calls {
                    let index = u32::try_from(self.tool_count).unwrap_or(u32::MAX);
                    self.tool_count += 1;
                    self.pending.push_back(StreamEvent::ToolCall(ToolCallDelta {
                        index,
                        id: Some(call.id),
                        name: Some(call.name),
                        arguments: call.arguments,
                    }));
                }
                if value.get("done").and_then(Value::as_bool) == Some(true) {
                    if let Some(reason) = value.get("done_reason").and_then(Value::as_str) {
                        self.pending
                            .push_back(StreamEvent::Finish(finish(Some(reason))));
                    }
                    self.pending.push_back(StreamEvent::Usage {
                        input: u64_at(&value, &["prompt_eval_count"]),
                        output: u64_at(&value, &["eval_count"]),
                    });
                    self.pending.push_back(StreamEvent::Done);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openai_fast_path_reads_what_the_general_path_reads_or_steps_aside() {
        // (body, whether the fast path must take it): when it takes one, it must read
        // exactly what the general path reads; odd shapes it leaves to the general path.
        let bodies = [
            (
                r#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
                true,
            ),
            (
                r#"{"choices":[{"message":{"content":"a \"quoted\" \u00e9"},"finish_reason":"length"}]}"#,
                true,
            ),
            (
                r#"{"choices":[{"message":{"content":"x"},"finish_reason":null}],"usage":null}"#,
                true,
            ),
            (
                r#"{"choices":[{"message":{"content":"x"},"finish_reason":7}],"usage":{"prompt_tokens":-1}}"#,
                false,
            ),
            (
                r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":2.5,"completion_tokens":4}}"#,
                false,
            ),
            (r#"{"choices":[{"message":{"content":null}}]}"#, false),
            (r#"{"choices":[]}"#, false),
        ];
        for (body, plain) in bodies {
            let value: Value = serde_json::from_str(body).expect("JSON");
            let general = parse_completion(ProviderKind::Openai, &value);
            match openai_fast(body.as_bytes()) {
                Some(fast) => assert_eq!(Ok(fast), general, "{body}"),
                None => assert!(!plain, "{body}: the fast path stepped aside"),
            }
        }
    }

    #[test]
    fn anthropic_gets_tool_use_and_one_user_message_of_consecutive_results() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "f".into(),
            arguments: r#"{"q": 1}"#.into(),
        };
        let result = |id: &str, text: &str| ChatMessage {
            tool_call_id: Some(id.into()),
            ..ChatMessage::text("tool", text)
        };
        let request = UpstreamRequest {
            model: "claude".into(),
            messages: vec![
                ChatMessage::text("system", "be brief"),
                ChatMessage::text("user", "two lookups"),
                ChatMessage {
                    tool_calls: vec![call("a"), call("b")],
                    ..ChatMessage::text("assistant", "looking")
                },
                result("a", "1"),
                result("b", "2"),
                ChatMessage::text("user", "thanks"),
            ],
            max_tokens: 9,
            temperature: None,
            tools: vec![ToolSpec {
                name: "f".into(),
                description: None,
                parameters: json!({"type": "object"}),
                strict: Some(true),
            }],
            tool_choice: Some(ToolChoice::Required),
        };
        let body = anthropic_body(&request, false);
        assert_eq!(body["system"], "be brief");
        assert_eq!(
            body["tools"],
            json!([{"name": "f", "input_schema": {"type": "object"}}])
        );
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "two lookups"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "looking"},
                    {"type": "tool_use", "id": "a", "name": "f", "input": {"q": 1}},
                    {"type": "tool_use", "id": "b", "name": "f", "input": {"q": 1}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": "1"},
                    {"type": "tool_result", "tool_use_id": "b", "content": "2"}]},
                {"role": "user", "content": "thanks"}
            ])
        );
        // Ollama: structured arguments, and no tools when the choice is none.
        let body = ollama_body(&request, false);
        assert_eq!(
            body["messages"][2]["tool_calls"][0],
            json!({"function": {"name": "f", "arguments": {"q": 1}}})
        );
        assert_eq!(body["tools"][0]["function"]["strict"], true);
        // Each tool result names the tool of the call it answers; other roles do not.
        assert_eq!(body["messages"][3]["tool_name"], "f");
        assert_eq!(body["messages"][4]["tool_name"], "f");
        assert!(body["messages"][2].get("tool_name").is_none());
        let renamed = |id: &str, name: &str| ToolCall {
            name: name.into(),
            ..call(id)
        };
        let named = UpstreamRequest {
            messages: vec![
                ChatMessage {
                    tool_calls: vec![renamed("a", "old")],
                    ..ChatMessage::text("assistant", "")
                },
                ChatMessage {
                    tool_calls: vec![renamed("b", "g"), renamed("a", "h")],
                    ..ChatMessage::text("assistant", "")
                },
                result("a", "1"),
                result("b", "2"),
                result("zz", "3"),
            ],
            ..request.clone()
        };
        let body = ollama_body(&named, false);
        // The nearest earlier call with the id; none for an id no call has.
        assert_eq!(body["messages"][2]["tool_name"], "h");
        assert_eq!(body["messages"][3]["tool_name"], "g");
        assert!(body["messages"][4].get("tool_name").is_none());
        let none = UpstreamRequest {
            tool_choice: Some(ToolChoice::None),
            ..request
        };
        assert!(ollama_body(&none, false).get("tools").is_none());
    }

    #[test]
    fn the_openai_request_body_is_the_documented_json() {
        let request = UpstreamRequest {
            model: "m".into(),
            messages: vec![ChatMessage::text("user", "hi \"there\"")],
            max_tokens: 7,
            temperature: Some(0.5),
            tools: Vec::new(),
            tool_choice: None,
        };
        for stream in [false, true] {
            let body = serde_json::to_value(OpenaiBody {
                model: &request.model,
                messages: &request.messages,
                max_tokens: request.max_tokens,
                stream,
                stream_options: stream.then_some(StreamOptions {
                    include_usage: true,
                }),
                temperature: request.temperature,
                tools: None,
                tool_choice: None,
            })
            .expect("serializes");
            let mut expected = json!({
                "model": "m", "messages": [{"role": "user", "content": "hi \"there\""}],
                "max_tokens": 7, "stream": stream, "temperature": 0.5,
            });
            if stream {
                expected["stream_options"] = json!({"include_usage": true});
            }
            assert_eq!(body, expected);
        }
    }
}
