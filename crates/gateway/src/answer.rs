//! The bytes of an answer, whole or streamed, in one place: the server sends them and
//! `calybris replay` rebuilds them to check the logged response hash.
//!
//! Every field is a function of the log and of the provider's reply: `id` is
//! `chatcmpl-<decision sequence>`, `created` the decision's timestamp in seconds (the
//! caller's `recorded_at_unix_ms / 1000`), `model` the model that served, and the text,
//! finish reason and usage are the provider's.

use serde_json::json;

use crate::provider::{AttemptError, MAX_PROVIDER_BYTES, StreamEvent};
use crate::tools::{MAX_TOOL_CALLS, ToolCall};

/// What a whole answer says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Whole<'a> {
    /// The decision's log sequence.
    pub sequence: u64,
    /// The decision's timestamp, Unix seconds.
    pub created: u64,
    /// The model that served, by name.
    pub model: &'a str,
    /// The text.
    pub text: &'a str,
    /// The tools it calls.
    pub tool_calls: &'a [ToolCall],
    /// Why it stopped.
    pub finish_reason: &'a str,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

/// The JSON body of a whole answer, exactly as sent.
pub(crate) fn whole_body(answer: &Whole<'_>) -> String {
    // Serialized straight from typed parts (no intermediate JSON tree), keys in sorted
    // order whatever serde_json's features, so the bytes (and their logged hash) do
    // not depend on how the binary was built.
    serde_json::to_string(&Answer {
        choices: [AnswerChoice {
            finish_reason: answer.finish_reason,
            index: 0,
            message: AnswerMessage {
                // OpenAI's shape: an answer that only calls tools has no content.
                content: (!answer.text.is_empty() || answer.tool_calls.is_empty())
                    .then_some(answer.text),
                role: "assistant",
                tool_calls: answer.tool_calls,
            },
        }],
        created: answer.created,
        id: format_args!("chatcmpl-{}", answer.sequence),
        model: answer.model,
        object: "chat.completion",
        usage: AnswerUsage {
            completion_tokens: answer.output_tokens,
            prompt_tokens: answer.input_tokens,
            total_tokens: answer.input_tokens.saturating_add(answer.output_tokens),
        },
    })
    .expect("serialising borrowed strings and integers cannot fail")
}

#[derive(serde::Serialize)]
struct Answer<'a> {
    choices: [AnswerChoice<'a>; 1],
    created: u64,
    #[serde(serialize_with = "display")]
    id: std::fmt::Arguments<'a>,
    model: &'a str,
    object: &'static str,
    usage: AnswerUsage,
}

#[derive(serde::Serialize)]
struct AnswerChoice<'a> {
    finish_reason: &'a str,
    index: u32,
    message: AnswerMessage<'a>,
}

#[derive(serde::Serialize)]
struct AnswerMessage<'a> {
    content: Option<&'a str>,
    role: &'static str,
    #[serde(skip_serializing_if = "<[ToolCall]>::is_empty")]
    tool_calls: &'a [ToolCall],
}

#[derive(serde::Serialize)]
struct AnswerUsage {
    completion_tokens: u64,
    prompt_tokens: u64,
    total_tokens: u64,
}

fn display<S: serde::Serializer>(
    value: &std::fmt::Arguments<'_>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// One server-sent event of a stream: a chunk with `delta` and `finish_reason`.
fn chunk(
    id: &str,
    created: u64,
    model: &str,
    delta: &serde_json::Value,
    finish: Option<&str>,
) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": id, "object": "chat.completion.chunk", "created": created,
               "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    )
}

/// A stream's first event: the assistant's role.
pub(crate) fn stream_first(id: &str, created: u64, model: &str) -> String {
    chunk(
        id,
        created,
        model,
        &json!({"role": "assistant", "content": ""}),
        None,
    )
}

/// One piece of the text.
pub(crate) fn stream_delta(id: &str, created: u64, model: &str, text: &str) -> String {
    chunk(id, created, model, &json!({"content": text}), None)
}

/// One piece of a tool call: OpenAI's `delta.tool_calls` with the call's index, its
/// id, type and name on its first piece, and a piece of its arguments.
pub(crate) fn stream_tool_call(
    id: &str,
    created: u64,
    model: &str,
    call: &crate::tools::ToolCallDelta,
) -> String {
    let mut function = json!({"arguments": call.arguments});
    if let Some(name) = &call.name {
        function["name"] = json!(name);
    }
    let mut piece = json!({"index": call.index, "function": function});
    if let Some(call_id) = &call.id {
        piece["id"] = json!(call_id);
        piece["type"] = json!("function");
    }
    chunk(id, created, model, &json!({"tool_calls": [piece]}), None)
}

/// The end of a stream that served: the finish, the usage, then `data: [DONE]`.
pub(crate) fn stream_tail(
    id: &str,
    created: u64,
    model: &str,
    finish: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> String {
    let mut tail = chunk(id, created, model, &json!({}), Some(finish));
    tail.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"id": id, "object": "chat.completion.chunk", "model": model,
               "choices": [],
               "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                         "total_tokens": input_tokens + output_tokens}})
    ));
    tail
}

/// What one provider event asks of the relay.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Send these bytes to the client.
    Send(String),
    /// Nothing to send (usage, a finish reason).
    Quiet,
    /// The provider's stream ended cleanly.
    End,
}

/// A streamed answer as it is relayed: the events the server sends (and `calybris
/// replay` rebuilds) from a provider's stream events, and what it counts (bytes
/// relayed, usage, the finish, the tool calls), in one place.
#[derive(Debug)]
pub(crate) struct StreamAnswer<'a> {
    id: String,
    created: u64,
    model: &'a str,
    generated: u64,
    input: Option<u64>,
    output: Option<u64>,
    finish: Option<String>,
    tool_calls: bool,
}

impl<'a> StreamAnswer<'a> {
    /// The answer of decision `sequence`, created at `created`, by `model`.
    pub(crate) fn new(sequence: u64, created: u64, model: &'a str) -> Self {
        Self {
            id: format!("chatcmpl-{sequence}"),
            created,
            model,
            generated: 0,
            input: None,
            output: None,
            finish: None,
            tool_calls: false,
        }
    }

    /// The first event: the assistant's role.
    pub(crate) fn first(&self) -> String {
        stream_first(&self.id, self.created, self.model)
    }

    /// What to do with the provider's next event (`None`: the stream is over).
    ///
    /// # Errors
    /// [`AttemptError::Malformed`] when the relayed text and arguments pass
    /// [`MAX_PROVIDER_BYTES`] (a provider that never stops), or a tool call's index
    /// is out of range.
    pub(crate) fn feed(&mut self, event: Option<StreamEvent>) -> Result<Piece, AttemptError> {
        let count = |bytes: usize, generated: &mut u64| {
            *generated += bytes as u64;
            if *generated > MAX_PROVIDER_BYTES as u64 {
                Err(AttemptError::Malformed("answer too large"))
            } else {
                Ok(())
            }
        };
        Ok(match event {
            Some(StreamEvent::Delta(text)) => {
                count(text.len(), &mut self.generated)?;
                Piece::Send(stream_delta(&self.id, self.created, self.model, &text))
            }
            Some(StreamEvent::ToolCall(call)) => {
                if call.index as usize >= MAX_TOOL_CALLS {
                    return Err(AttemptError::Malformed("tool call index"));
                }
                let bytes = call.arguments.len()
                    + call.name.as_ref().map_or(0, String::len)
                    + call.id.as_ref().map_or(0, String::len);
                count(bytes, &mut self.generated)?;
                self.tool_calls = true;
                Piece::Send(stream_tool_call(&self.id, self.created, self.model, &call))
            }
            Some(StreamEvent::Usage { input, output }) => {
                self.input = input.or(self.input);
                self.output = output.or(self.output);
                Piece::Quiet
            }
            Some(StreamEvent::Finish(reason)) => {
                self.finish = Some(reason);
                Piece::Quiet
            }
            Some(StreamEvent::Done) | None => Piece::End,
        })
    }

    /// The tokens to settle: the provider's counts when it sent them; otherwise the
    /// input estimate, and the relayed bytes / 4 rounded up, never more than the
    /// attempt asked for.
    pub(crate) fn tokens(&self, input_estimate: u64, max_tokens: u32) -> (u64, u64) {
        (
            self.input.unwrap_or(input_estimate),
            self.output
                .unwrap_or_else(|| self.generated.div_ceil(4).min(u64::from(max_tokens))),
        )
    }

    /// The end of a stream that served: the finish (`length` when the provider says
    /// so, else `tool_calls` when it called tools, else the provider's, else `stop`), the usage, `data: [DONE]`.
    pub(crate) fn tail(&self, input_tokens: u64, output_tokens: u64) -> String {
        let finish = match self.finish.as_deref() {
            Some("length") => "length",
            _ if self.tool_calls => "tool_calls",
            Some(reason) => reason,
            None => "stop",
        };
        stream_tail(
            &self.id,
            self.created,
            self.model,
            finish,
            input_tokens,
            output_tokens,
        )
    }
}

/// The output tokens of a whole answer whose provider reported none: its text's and
/// tool calls' bytes / 4, rounded up.
pub(crate) fn estimate_output(completion: &crate::provider::Completion) -> u64 {
    let calls: usize = completion
        .tool_calls
        .iter()
        .map(|c| c.id.len() + c.name.len() + c.arguments.len())
        .sum();
    ((completion.text.len() + calls) as u64).div_ceil(4)
}
