//! The bytes of a whole (non-streamed) answer, in one place: the server sends them and
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
    json!({
        "id": format!("chatcmpl-{}", answer.sequence),
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [{"index": 0, "finish_reason": answer.finish_reason,
                     "message": {"role": "assistant", "content": answer.text}}],
        "usage": {"prompt_tokens": answer.input_tokens,
                  "completion_tokens": answer.output_tokens,
                  "total_tokens": answer.input_tokens + answer.output_tokens},
    })
    .to_string()
}
