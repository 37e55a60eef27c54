//! Tools (function calling): what a request offers and what an answer calls, in
//! OpenAI's chat-completions shape at the gateway's edge, and their translations to
//! each provider's shape.
//!
//! # At the edge (OpenAI's shape)
//! - `tools`: at most [`MAX_TOOLS`] entries `{"type": "function", "function": {"name",
//!   "description"?, "parameters"?, "strict"?}}`; a name is 1 to
//!   [`MAX_TOOL_NAME_BYTES`] of `a-z A-Z 0-9 _ -`, unique in the request; `parameters`
//!   a JSON object (a JSON Schema; default `{"type": "object", "properties": {}}`).
//! - `tool_choice`: `"none"`, `"auto"`, `"required"`, or `{"type": "function",
//!   "function": {"name": N}}` naming one of the tools; only `"none"` and `"auto"`
//!   without tools.
//! - an assistant message's `tool_calls`: at most [`MAX_TOOL_CALLS`] entries `{"id",
//!   "type": "function", "function": {"name", "arguments"}}`, `id` 1 to
//!   [`MAX_TOOL_ID_BYTES`] bytes, `arguments` the text of a JSON object (an empty text
//!   counts as `{}`);
//! - a `tool` message: its `tool_call_id` (1 to [`MAX_TOOL_ID_BYTES`] bytes) and its
//!   content (the result, as text).
//!
//! Anything else in these fields is a 400 with an OpenAI-style error body: codes
//! `invalid_tools`, `invalid_tool_choice`, `invalid_tool_calls`,
//! `invalid_tool_message`; the legacy `functions` / `function_call` fields are
//! refused (`unsupported_parameter`) rather than silently dropped.
//!
//! # Routing
//! A request with tools requires the policy's `tools` capability (or, when the policy
//! names none so, its `function_calling` one): the kernel's input carries that bit in
//! `required_capabilities`, so only models with the capability are selected, and the
//! fallback chain skips models without it. A policy that declares neither capability
//! cannot serve tools: 400 `tools_unsupported`.
//!
//! # Providers
//! - OpenAI-compatible: forwarded as they are.
//! - Anthropic messages: tools as `{"name", "description", "input_schema"}`;
//!   `tool_choice` `auto` / `none` / `required` -> `{"type": "auto" | "none" |
//!   "any"}`, a named function -> `{"type": "tool", "name"}`; an assistant's tool
//!   calls as `tool_use` content blocks (`input` the parsed arguments), each `tool`
//!   message as a `tool_result` block of a user message (consecutive results share
//!   one message). Answers: `tool_use` blocks become tool calls (arguments: `input`
//!   as canonical JSON text, keys sorted), `stop_reason` `tool_use` becomes
//!   `finish_reason` `tool_calls`; streamed, `content_block_start` of a `tool_use`
//!   block opens a call and its `input_json_delta` pieces are its arguments.
//! - Ollama `/api/chat`: tools in OpenAI's shape; an assistant's tool calls as
//!   `{"function": {"name", "arguments": OBJECT}}`; a `tool` message carries
//!   `tool_name`, the name of the call its `tool_call_id` answers in the nearest
//!   earlier assistant message (none when no earlier call has that id; Ollama
//!   itself then cannot tell which tool answered); `tool_choice` `none` sends no
//!   tools (Ollama has no `tool_choice`; `required` and a named function are sent as
//!   plain tools). Answers: `message.tool_calls` become tool calls (id
//!   `call_<n>` when Ollama gives none, arguments as canonical JSON text).
//!
//! Streamed to the client as OpenAI does: `delta.tool_calls` pieces with the call's
//! `index`, its `id`, `type` and `function.name` on the first piece, then
//! `function.arguments` pieces; the finish reason is then `tool_calls`.

use serde::ser::{SerializeMap as _, SerializeStruct as _};
use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// The capability names a request with tools requires, the first the policy declares.
pub const CAPABILITY_NAMES: [&str; 2] = ["tools", "function_calling"];
/// The most tools one request may offer.
pub const MAX_TOOLS: usize = 128;
/// The most tool calls in one message or one answer.
pub const MAX_TOOL_CALLS: usize = 128;
/// The longest tool name, bytes.
pub const MAX_TOOL_NAME_BYTES: usize = 64;
/// The longest tool-call id, bytes.
pub const MAX_TOOL_ID_BYTES: usize = 256;

/// One tool a request offers.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// Its parameters' JSON Schema (an object).
    pub parameters: Value,
    /// OpenAI's `strict`, passed through to OpenAI-compatible providers.
    pub strict: Option<bool>,
}

/// Which tools the model may or must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// None: answer in text.
    None,
    /// The model decides.
    Auto,
    /// At least one tool must be called.
    Required,
    /// This tool must be called.
    Function(String),
}

/// One tool call, whole: in an assistant message of the conversation, or in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// Its id (a `tool` message answers it by this id).
    pub id: String,
    /// The tool called.
    pub name: String,
    /// The arguments, the text of a JSON object.
    pub arguments: String,
}

/// A piece of a streamed tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallDelta {
    /// Which call of the answer (from 0).
    pub index: u32,
    /// Its id, on its first piece.
    pub id: Option<String>,
    /// The tool's name, on its first piece.
    pub name: Option<String>,
    /// A piece of the arguments' text.
    pub arguments: String,
}

/// OpenAI's shape, keys in sorted order (so answer bytes do not depend on how
/// serde_json was built): `{"function": {"arguments", "name"}, "id", "type"}`.
impl serde::Serialize for ToolCall {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Function<'a> {
            arguments: &'a str,
            name: &'a str,
        }
        let mut call = serializer.serialize_struct("ToolCall", 3)?;
        call.serialize_field(
            "function",
            &Function {
                arguments: &self.arguments,
                name: &self.name,
            },
        )?;
        call.serialize_field("id", &self.id)?;
        call.serialize_field("type", "function")?;
        call.end()
    }
}

/// A JSON value serialized with every object's keys in sorted order.
struct Sorted<'a>(&'a Value);

impl serde::Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Sorted(value))?;
                }
                out.end()
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            other => other.serialize(serializer),
        }
    }
}

/// The compact JSON text of `value`, object keys sorted at every depth: what a
/// provider's structured arguments become in an answer (a function of the value, not
/// of the provider's key order or of serde_json's features).
#[must_use]
pub fn canonical_json(value: &Value) -> String {
    serde_json::to_string(&Sorted(value)).unwrap_or_else(|_| "{}".to_owned())
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn shown(text: &str) -> String {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}", &text[..end])
}

/// Reads a request's `tools` (see the module docs).
///
/// # Errors
/// 400 `invalid_tools`.
pub fn parse_tools(value: Option<Value>) -> Result<Vec<ToolSpec>, ApiError> {
    let code = "invalid_tools";
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad(code, "tools must be an array")),
    };
    if items.len() > MAX_TOOLS {
        return Err(bad(
            code,
            format!("at most {MAX_TOOLS} tools, not {}", items.len()),
        ));
    }
    let mut tools: Vec<ToolSpec> = Vec::with_capacity(items.len());
    for (at, item) in items.into_iter().enumerate() {
        let Value::Object(mut item) = item else {
            return Err(bad(code, format!("tools[{at}] must be an object")));
        };
        if item.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad(code, format!("tools[{at}].type must be \"function\"")));
        }
        let Some(Value::Object(mut function)) = item.remove("function") else {
            return Err(bad(code, format!("tools[{at}].function must be an object")));
        };
        let name = match function.remove("name") {
            Some(Value::String(name)) if valid_name(&name) => name,
            _ => {
                return Err(bad(
                    code,
                    format!(
                        "tools[{at}].function.name must be 1 to {MAX_TOOL_NAME_BYTES} of a-z, A-Z, 0-9, _ and -"
                    ),
                ));
            }
        };
        if tools.iter().any(|t| t.name == name) {
            return Err(bad(code, format!("tool {} is offered twice", shown(&name))));
        }
        let description = match function.remove("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text),
            Some(_) => {
                return Err(bad(
                    code,
                    format!("tools[{at}].function.description must be a string"),
                ));
            }
        };
        let parameters = match function.remove("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(schema @ Value::Object(_)) => schema,
            Some(_) => {
                return Err(bad(
                    code,
                    format!("tools[{at}].function.parameters must be a JSON Schema object"),
                ));
            }
        };
        let strict = match function.remove("strict") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(strict)) => Some(strict),
            Some(_) => {
                return Err(bad(
                    code,
                    format!("tools[{at}].function.strict must be a boolean"),
                ));
            }
        };
        tools.push(ToolSpec {
            name,
            description,
            parameters,
            strict,
        });
    }
    Ok(tools)
}

/// Reads a request's `tool_choice` against its tools (see the module docs).
///
/// # Errors
/// 400 `invalid_tool_choice`.
pub fn parse_tool_choice(
    value: Option<Value>,
    tools: &[ToolSpec],
) -> Result<Option<ToolChoice>, ApiError> {
    let code = "invalid_tool_choice";
    let choice = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => match text.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            _ => {
                return Err(bad(
                    code,
                    format!(
                        "tool_choice {} is not \"none\", \"auto\", \"required\" or a function",
                        shown(&text)
                    ),
                ));
            }
        },
        Some(Value::Object(object)) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match (object.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) => ToolChoice::Function(name.to_owned()),
                _ => {
                    return Err(bad(
                        code,
                        "tool_choice must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    ));
                }
            }
        }
        Some(_) => return Err(bad(code, "tool_choice must be a string or an object")),
    };
    match &choice {
        ToolChoice::Required if tools.is_empty() => {
            Err(bad(code, "tool_choice \"required\" needs tools"))
        }
        ToolChoice::Function(name) if !tools.iter().any(|t| &t.name == name) => Err(bad(
            code,
            format!(
                "tool_choice names {}, which is not among the tools",
                shown(name)
            ),
        )),
        _ => Ok(Some(choice)),
    }
}

/// Reads an assistant message's `tool_calls` (see the module docs).
///
/// # Errors
/// 400 `invalid_tool_calls`.
pub fn parse_tool_calls(value: Option<Value>) -> Result<Vec<ToolCall>, ApiError> {
    let code = "invalid_tool_calls";
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad(code, "tool_calls must be an array")),
    };
    if items.len() > MAX_TOOL_CALLS {
        return Err(bad(
            code,
            format!("at most {MAX_TOOL_CALLS} tool calls, not {}", items.len()),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(at, item)| {
            let id = item.get("id").and_then(Value::as_str);
            let Some(id) = id.filter(|id| !id.is_empty() && id.len() <= MAX_TOOL_ID_BYTES) else {
                return Err(bad(
                    code,
                    format!("tool_calls[{at}].id must be 1 to {MAX_TOOL_ID_BYTES} bytes"),
                ));
            };
            if item
                .get("type")
                .is_some_and(|t| t.as_str() != Some("function"))
            {
                return Err(bad(
                    code,
                    format!("tool_calls[{at}].type must be \"function\""),
                ));
            }
            let function = item.get("function");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|name| valid_name(name))
                .ok_or_else(|| {
                    bad(
                        code,
                        format!("tool_calls[{at}].function.name must be a tool name"),
                    )
                })?;
            let arguments = function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    bad(
                        code,
                        format!("tool_calls[{at}].function.arguments must be a string"),
                    )
                })?;
            if arguments_object(arguments).is_none() {
                return Err(bad(
                    code,
                    format!("tool_calls[{at}].function.arguments must be a JSON object's text"),
                ));
            }
            Ok(ToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
                arguments: arguments.to_owned(),
            })
        })
        .collect()
}

/// A `tool` message's `tool_call_id`.
///
/// # Errors
/// 400 `invalid_tool_message`.
pub fn tool_call_id(id: Option<String>) -> Result<String, ApiError> {
    id.filter(|id| !id.is_empty() && id.len() <= MAX_TOOL_ID_BYTES)
        .ok_or_else(|| {
            bad(
                "invalid_tool_message",
                format!("a tool message needs a tool_call_id of 1 to {MAX_TOOL_ID_BYTES} bytes"),
            )
        })
}

/// The arguments' text as a JSON object (an empty text is `{}`); `None` when it is
/// not one.
#[must_use]
pub fn arguments_object(arguments: &str) -> Option<Map<String, Value>> {
    if arguments.trim().is_empty() {
        return Some(Map::new());
    }
    serde_json::from_str(arguments).ok()
}

/// The bytes the token estimate counts for the tools a request offers: their JSON.
#[must_use]
pub fn tools_bytes(tools: &[ToolSpec]) -> u64 {
    tools
        .iter()
        .map(|t| {
            (t.name.len()
                + t.description.as_ref().map_or(0, String::len)
                + canonical_json(&t.parameters).len()) as u64
        })
        .sum()
}

// ---- to the providers ----

/// The tools in OpenAI's shape.
#[must_use]
pub fn openai_tools(tools: &[ToolSpec]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| {
            let mut function = json!({"name": t.name, "parameters": t.parameters});
            if let Some(description) = &t.description {
                function["description"] = json!(description);
            }
            if let Some(strict) = t.strict {
                function["strict"] = json!(strict);
            }
            json!({"type": "function", "function": function})
        })
        .collect()
}

/// The choice in OpenAI's shape.
#[must_use]
pub fn openai_tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::None => json!("none"),
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

/// The tools in Anthropic's shape.
#[must_use]
pub fn anthropic_tools(tools: &[ToolSpec]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| {
            let mut tool = json!({"name": t.name, "input_schema": t.parameters});
            if let Some(description) = &t.description {
                tool["description"] = json!(description);
            }
            tool
        })
        .collect()
}

/// The choice in Anthropic's shape.
#[must_use]
pub fn anthropic_tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::None => json!({"type": "none"}),
        ToolChoice::Auto => json!({"type": "auto"}),
        ToolChoice::Required => json!({"type": "any"}),
        ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
    }
}

/// The arguments' text as a JSON value for providers that take structured arguments
/// (checked at the edge, so `{}` only for text that was never accepted).
fn arguments_value(arguments: &str) -> Value {
    Value::Object(arguments_object(arguments).unwrap_or_default())
}

/// An assistant's tool calls as Anthropic `tool_use` blocks.
#[must_use]
pub fn anthropic_tool_use(calls: &[ToolCall]) -> Vec<Value> {
    calls
        .iter()
        .map(|c| {
            json!({"type": "tool_use", "id": c.id, "name": c.name,
                   "input": arguments_value(&c.arguments)})
        })
        .collect()
}

/// An assistant's tool calls in Ollama's shape.
#[must_use]
pub fn ollama_tool_calls(calls: &[ToolCall]) -> Vec<Value> {
    calls
        .iter()
        .map(|c| json!({"function": {"name": c.name, "arguments": arguments_value(&c.arguments)}}))
        .collect()
}

// ---- from the providers ----

/// The arguments a provider gave as a value: a string is taken as it is, anything
/// else becomes its canonical JSON text.
#[must_use]
pub fn arguments_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => canonical_json(other),
    }
}

/// OpenAI's `message.tool_calls` of a whole answer; `None` when malformed.
#[must_use]
pub fn from_openai(value: Option<&Value>) -> Option<Vec<ToolCall>> {
    let Some(items) = value.filter(|v| !v.is_null()) else {
        return Some(Vec::new());
    };
    let items = items.as_array().filter(|i| i.len() <= MAX_TOOL_CALLS)?;
    items
        .iter()
        .map(|item| {
            let function = item.get("function")?;
            Some(ToolCall {
                id: item.get("id")?.as_str()?.to_owned(),
                name: function.get("name")?.as_str()?.to_owned(),
                arguments: arguments_text(function.get("arguments")),
            })
        })
        .collect()
}

/// Anthropic's `tool_use` content blocks of a whole answer; `None` when malformed.
#[must_use]
pub fn from_anthropic(blocks: &[Value]) -> Option<Vec<ToolCall>> {
    let calls: Option<Vec<ToolCall>> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .map(|b| {
            Some(ToolCall {
                id: b.get("id")?.as_str()?.to_owned(),
                name: b.get("name")?.as_str()?.to_owned(),
                arguments: arguments_text(b.get("input")),
            })
        })
        .collect();
    calls.filter(|c| c.len() <= MAX_TOOL_CALLS)
}

/// Ollama's `message.tool_calls`, numbered from `first` for the ids Ollama does not
/// give; `None` when malformed.
#[must_use]
pub fn from_ollama(value: Option<&Value>, first: usize) -> Option<Vec<ToolCall>> {
    let Some(items) = value.filter(|v| !v.is_null()) else {
        return Some(Vec::new());
    };
    let items = items
        .as_array()
        .filter(|i| first + i.len() <= MAX_TOOL_CALLS)?;
    items
        .iter()
        .enumerate()
        .map(|(at, item)| {
            let function = item.get("function")?;
            let id = item
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{}", first + at), str::to_owned);
            Some(ToolCall {
                id,
                name: function.get("name")?.as_str()?.to_owned(),
                arguments: arguments_text(function.get("arguments")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": null}}"#)
                .expect("JSON");
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"c":null,"z":[{"x":2,"y":1}]},"b":1}"#
        );
    }

    #[test]
    fn a_tool_call_serializes_in_openai_shape_with_sorted_keys() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: r#"{"q":1}"#.into(),
        };
        assert_eq!(
            serde_json::to_string(&call).expect("serializes"),
            r#"{"function":{"arguments":"{\"q\":1}","name":"f"},"id":"call_1","type":"function"}"#
        );
    }

    #[test]
    fn malformed_tools_get_their_codes() {
        let cases = [
            (json!({"type": "function"}), "invalid_tools"),
            (json!([{"type": "retrieval"}]), "invalid_tools"),
            (
                json!([{"type": "function", "function": {"name": "a b"}}]),
                "invalid_tools",
            ),
            (
                json!([{"type": "function", "function": {"name": "x".repeat(65)}}]),
                "invalid_tools",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "parameters": []}}]),
                "invalid_tools",
            ),
            (
                json!([{"type": "function", "function": {"name": "f"}},
                       {"type": "function", "function": {"name": "f"}}]),
                "invalid_tools",
            ),
        ];
        for (value, code) in cases {
            let error = parse_tools(Some(value.clone())).expect_err(&value.to_string());
            assert_eq!(error.code, code, "{value}");
            assert_eq!(error.status.as_u16(), 400);
        }
        let many: Vec<Value> = (0..=MAX_TOOLS)
            .map(|i| json!({"type": "function", "function": {"name": format!("f{i}")}}))
            .collect();
        assert!(parse_tools(Some(Value::Array(many))).is_err());
        let tools = parse_tools(Some(
            json!([{"type": "function", "function": {"name": "f"}}]),
        ))
        .expect("one tool");
        assert_eq!(
            tools[0].parameters,
            json!({"type": "object", "properties": {}})
        );
        for (choice, ok) in [
            (json!("auto"), true),
            (json!("required"), true),
            (json!({"type": "function", "function": {"name": "f"}}), true),
            (
                json!({"type": "function", "function": {"name": "g"}}),
                false,
            ),
            (json!("sometimes"), false),
            (json!(3), false),
        ] {
            assert_eq!(
                parse_tool_choice(Some(choice.clone()), &tools).is_ok(),
                ok,
                "{choice}"
            );
        }
        assert!(parse_tool_choice(Some(json!("required")), &[]).is_err());
        for (calls, ok) in [
            (
                json!([{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]),
                true,
            ),
            (
                json!([{"id": "c", "function": {"name": "f", "arguments": ""}}]),
                true,
            ),
            (
                json!([{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]),
                false,
            ),
            (
                json!([{"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}]),
                false,
            ),
            (
                json!([{"function": {"name": "f", "arguments": "{}"}}]),
                false,
            ),
            (json!({"id": "c"}), false),
        ] {
            let result = parse_tool_calls(Some(calls.clone()));
            assert_eq!(result.is_ok(), ok, "{calls}");
            if let Err(error) = result {
                assert_eq!(error.code, "invalid_tool_calls");
            }
        }
        assert_eq!(
            tool_call_id(None).expect_err("no id").code,
            "invalid_tool_message"
        );
    }

    #[test]
    fn each_choice_in_each_provider_shape() {
        let named = ToolChoice::Function("f".into());
        let cases = [
            (ToolChoice::None, json!("none"), json!({"type": "none"})),
            (ToolChoice::Auto, json!("auto"), json!({"type": "auto"})),
            (
                ToolChoice::Required,
                json!("required"),
                json!({"type": "any"}),
            ),
            (
                named,
                json!({"type": "function", "function": {"name": "f"}}),
                json!({"type": "tool", "name": "f"}),
            ),
        ];
        for (choice, openai, anthropic) in cases {
            assert_eq!(openai_tool_choice(&choice), openai);
            assert_eq!(anthropic_tool_choice(&choice), anthropic);
            // What the edge reads back is what it would forward.
            let tools = parse_tools(Some(
                json!([{"type": "function", "function": {"name": "f"}}]),
            ))
            .expect("one tool");
            assert_eq!(parse_tool_choice(Some(openai), &tools), Ok(Some(choice)));
        }
    }

    #[test]
    fn provider_answers_become_tool_calls() {
        let anthropic = [
            json!({"type": "text", "text": "let me look"}),
            json!({"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"b": 2, "a": 1}}),
        ];
        assert_eq!(
            from_anthropic(&anthropic),
            Some(vec![ToolCall {
                id: "toolu_1".into(),
                name: "f".into(),
                arguments: r#"{"a":1,"b":2}"#.into(),
            }])
        );
        let ollama = json!([{"function": {"name": "f", "arguments": {"q": "x"}}}]);
        assert_eq!(
            from_ollama(Some(&ollama), 0),
            Some(vec![ToolCall {
                id: "call_0".into(),
                name: "f".into(),
                arguments: r#"{"q":"x"}"#.into(),
            }])
        );
        let openai = json!([{"id": "call_9", "type": "function",
                             "function": {"name": "f", "arguments": "{\"q\": 1}"}}]);
        assert_eq!(
            from_openai(Some(&openai)).expect("reads")[0].arguments,
            "{\"q\": 1}"
        );
        assert_eq!(from_openai(Some(&json!([{"function": {}}]))), None);
        assert_eq!(from_openai(None), Some(Vec::new()));
    }
}
