//! The Calybris gateway: an OpenAI-compatible HTTP router that cannot overspend, always
//! knows and logs what served, and proves every routing decision.
//!
//! Endpoints: `POST /v1/chat/completions` (OpenAI's request and response; `stream: true`
//! as server-sent events in OpenAI's chunk format, ending with `data: [DONE]`),
//! `GET /v1/models`, `GET /healthz`, `GET /metrics` (Prometheus text).
//!
//! # One request
//! ```text
//! head over 64 KiB or 100 headers?           431 (hyper; see Gateway::serve)
//! head not sent in head_timeout_ms (30 s)?  connection closed (an idle one too)
//! body over the limit?                       413
//! body badly framed (a bad chunk, cut short)? 400 (invalid_body)
//! Authorization: Bearer KEY -> tenant         401 (SHA-256 of the key, constant-time compare)
//! JSON of the chat shape?                     400 (invalid_json / invalid_type)
//! tools, tool_choice, tool calls well formed? 400 (invalid_tools, ...; see [`tools`])
//! model configured (or "auto")?              404
//! rate limits (key, tenant; requests, tokens) 429
//! authority lease, when the contract wants it 403 + a logged LeaseRefused record
//! gate.decide_with(tenant, input, request id) 402 when the budget refuses (logged),
//!                                             400 request_rejected when the policy does
//!   -> the estimated cost is HELD before any provider is called
//! providers along the chain: the decision's model, then the contract's order
//!   each later model asked for no more output than the hold covers at its prices
//!   a provider whose breaker is open, or a local one whose single slot stays busy,
//!   is skipped (a skipped attempt in the record; see [`health`])
//! settle the actual cost from the provider's usage (a stream: at its end)
//! log an Execution record bound to the decision (what served, every attempt)
//! wait until that record is durable, then answer     502 / 504 when nothing served
//! ```
//! A streamed answer's first byte goes out only once the decision is durable, and its
//! `data: [DONE]` only once the execution record is: nothing is acknowledged to a client
//! that is not in the log.
//!
//! # Token estimate
//! [`estimate_input_tokens`]: a quarter of each message's bytes (text and tool calls),
//! rounded up, plus 4 per message and 3, plus a quarter of the offered tools' bytes;
//! output: the request's `max_tokens` (or `max_completion_tokens`, or the contract's
//! `default_max_tokens`), which is also what the provider is asked for.
//!
//! # Money
//! Microunits (10^-6 USD) throughout, as in the gate. A settlement above the hold goes
//! through the gate's overrun path; an overrun the tenant cannot cover commits the whole
//! hold, and the execution record keeps the real cost.
//!
//! # Which model serves
//! The kernel decides among the configured models with the requested one (or, for
//! `"auto"`, the contract's default) as the request's model: it may substitute a model
//! of better utility, and says so in the logged decision. The answer's `model` field,
//! the `x-calybris-served-by` header and the execution record name the model that
//! actually served; `x-calybris-decision` gives the decision's log sequence.
//!
//! Tools (function calling) are forwarded to every provider shape, whole and streamed,
//! and a request with tools is routed only to models with the `tools` capability: see
//! [`tools`]. A stream the provider cuts after its first event is a provider failure
//! for the breaker, and its execution record says `StreamCut` (see [`health`]).
//!
//! The configuration is described in [`config`]; the optional request-body archive,
//! which `calybris replay` re-executes from, in [`archive`]; what replay needs of the
//! pipeline in [`replay`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod answer;
pub mod archive;
pub mod config;
mod error;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod mock;
pub mod provider;
pub mod replay;
mod server;
pub mod tools;

pub use config::{ConfigError, GatewayConfig};
pub use error::ApiError;
pub use server::{
    Gateway, GatewayError, MAX_HEAD_BYTES, MAX_HEADERS, MIN_SEGMENT_LIMIT_BYTES,
    estimate_input_tokens,
};
