//! Calls to providers: OpenAI-compatible chat completions, Anthropic messages, Ollama
//! chat; whole responses and streams, each with a timeout and bounded reads.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{ProviderConfig, ProviderKind};

/// The most bytes read from one provider response (whole body, or one stream line).
pub const MAX_PROVIDER_BYTES: usize = 16 << 20;

/// One message of a conversation, content flattened to text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
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
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The text.
    pub text: String,
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
        let messages = || -> Vec<Value> {
            request
                .messages
                .iter()
                .map(|m| json!({"role": m.role, "content": m.content}))
                .collect()
        };
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
                let system: Vec<&str> = request
                    .messages
                    .iter()
                    .filter(|m| m.role == "system")
                    .map(|m| m.content.as_str())
                    .collect();
                let rest: Vec<Value> = request
                    .messages
                    .iter()
                    .filter(|m| m.role != "system")
                    .map(|m| json!({"role": m.role, "content": m.content}))
                    .collect();
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
            ProviderKind::Ollama => {
                let mut options = json!({"num_predict": request.max_tokens});
                if let Some(t) = request.temperature {
                    options["temperature"] = json!(t);
                }
                client
                    .post(format!("{}/api/chat", self.base_url))
                    .header("content-type", "application/json")
                    .body(
                        json!({
                            "model": request.model, "messages": messages(),
                            "stream": stream, "options": options,
                        })
                        .to_string(),
                    )
            }
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
        })
    }
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
    let usage = answer.usage;
    Some(Completion {
        text: choice.message.content.into_owned(),
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

fn finish(reason: Option<&str>) -> String {
    match reason {
        Some("max_tokens" | "length") => "length".to_owned(),
        _ => "stop".to_owned(),
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
            let text = choice
                .get("message")
                .and_then(|m| m.get("content"))
                .and_then(Value::as_str)
                .ok_or(AttemptError::Malformed("no message content"))?;
            Ok(Completion {
                text: text.to_owned(),
                input_tokens: u64_at(value, &["usage", "prompt_tokens"]),
                output_tokens: u64_at(value, &["usage", "completion_tokens"]),
                finish_reason: finish(choice.get("finish_reason").and_then(Value::as_str)),
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
            Ok(Completion {
                text,
                input_tokens: u64_at(value, &["usage", "input_tokens"]),
                output_tokens: u64_at(value, &["usage", "output_tokens"]),
                finish_reason: finish(value.get("stop_reason").and_then(Value::as_str)),
            })
        }
        ProviderKind::Ollama => {
            let text = value
                .get("message")
                .and_then(|m| m.get("content"))
                .and_then(Value::as_str)
                .ok_or(malformed)?;
            Ok(Completion {
                text: text.to_owned(),
                input_tokens: u64_at(value, &["prompt_eval_count"]),
                output_tokens: u64_at(value, &["eval_count"]),
                finish_reason: finish(value.get("done_reason").and_then(Value::as_str)),
            })
        }
    }
}

/// One event of a provider stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Generated text.
    Delta(String),
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
                if let Some(text) = value
                    .get("choices")
                    .and_then(|c| c.get(0))
                    .and_then(|c| c.get("delta"))
                    .and_then(|d| d.get("content"))
                    .and_then(Value::as_str)
                    && !text.is_empty()
                {
                    self.pending.push_back(StreamEvent::Delta(text.to_owned()));
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
                    Some("content_block_delta") => {
                        if let Some(text) = value
                            .get("delta")
                            .and_then(|d| d.get("text"))
                            .and_then(Value::as_str)
                        {
                            self.pending.push_back(StreamEvent::Delta(text.to_owned()));
                        }
                    }
                    Some("message_delta") => self.pending.push_back(StreamEvent::Usage {
                        input: None,
                        output: u64_at(&value, &["usage", "output_tokens"]),
                    }),
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
                if value.get("done").and_then(Value::as_bool) == Some(true) {
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
    fn the_openai_request_body_is_the_documented_json() {
        let request = UpstreamRequest {
            model: "m".into(),
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "hi \"there\"".into(),
            }],
            max_tokens: 7,
            temperature: Some(0.5),
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
