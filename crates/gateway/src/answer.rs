//! The bytes of an answer, whole or streamed, in one place: the server sends them and
//! `calybris replay` rebuilds them to check the logged response hash.
//!
//! Every field is a function of the log and of the provider's reply: `id` is
//! `chatcmpl-<decision sequence>`, `created` the decision's timestamp in seconds (the
//! caller's `recorded_at_unix_ms / 1000`), `model` the model that served, and the text,
//! finish reason and usage are the provider's.

use serde_json::json;

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
                content: answer.text,
                role: "assistant",
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
    content: &'a str,
    role: &'static str,
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

/// The end of a stream that served: the finish, the usage, then `data: [DONE]`.
pub(crate) fn stream_tail(
    id: &str,
    created: u64,
    model: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> String {
    let mut tail = chunk(id, created, model, &json!({}), Some("stop"));
    tail.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"id": id, "object": "chat.completion.chunk", "model": model,
               "choices": [],
               "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                         "total_tokens": input_tokens + output_tokens}})
    ));
    tail
}
