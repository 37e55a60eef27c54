//! What `calybris replay` needs of the gateway: re-deriving a logged request's kernel
//! input from its archived body, exactly as the pipeline derived it, and re-executing
//! it against the provider that served it, rebuilding the answer's bytes to compare
//! their SHA-256 with the logged one.
//!
//! A streamed answer is rebuilt from the provider's stream with the server's own event
//! renderers, so its bytes match only when the provider cuts its reply into the same
//! pieces again (a deterministic provider does).

use calybris_kernel::{KernelDecision, KernelInput};

use crate::answer::{Piece, StreamAnswer, Whole, whole_body};
use crate::config::{Compiled, GatewayConfig, ProviderKind, sha256};
use crate::provider::{AttemptError, Provider, UpstreamRequest};
use crate::server::{Interpreted, interpret, kernel_input, max_output_within};

/// A logged request's body, read again.
#[derive(Debug, Clone)]
pub struct Rederived {
    /// The kernel input the pipeline builds from the body (`request_sequence` taken
    /// from the log: it is the gateway's counter, not part of the body).
    pub input: KernelInput,
    /// Whether the request asked for a streamed answer.
    pub stream: bool,
    /// The sampling temperature it asked for.
    pub temperature: Option<f64>,
    interpreted: InterpretedParts,
}

#[derive(Debug, Clone)]
struct InterpretedParts {
    requested: usize,
    output_tokens: u32,
    input_estimate: u64,
    messages: Vec<crate::provider::ChatMessage>,
    tools: Vec<crate::tools::ToolSpec>,
    tool_choice: Option<crate::tools::ToolChoice>,
}

/// Re-derives the kernel input of `body` under `compiled` and its routing contract,
/// with the logged `request_sequence`.
///
/// # Errors
/// The gateway's error for the body (it was refused before any decision, so a logged
/// decision cannot have come from it).
pub fn rederive(
    config: &GatewayConfig,
    compiled: &Compiled,
    body: &[u8],
    request_sequence: u64,
) -> Result<Rederived, crate::ApiError> {
    let Interpreted {
        requested,
        output_tokens,
        stream,
        temperature,
        messages,
        input_estimate,
        tools,
        tool_choice,
        required_capabilities,
        ..
    } = interpret(compiled, &config.routing, body)?;
    Ok(Rederived {
        input: kernel_input(
            compiled,
            requested,
            input_estimate,
            output_tokens,
            required_capabilities,
            request_sequence,
        ),
        stream,
        temperature,
        interpreted: InterpretedParts {
            requested,
            output_tokens,
            input_estimate,
            messages,
            tools,
            tool_choice,
        },
    })
}

/// What a re-execution produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reexecuted {
    /// The answer's bytes, as the gateway would have sent them.
    pub body: String,
    /// Their SHA-256.
    pub response_sha256: [u8; 32],
    /// Prompt tokens (the provider's count, or the estimate).
    pub input_tokens: u64,
    /// Completion tokens (the provider's count, or the text's bytes / 4).
    pub output_tokens: u64,
    /// The cost at the served model's prices, microunits.
    pub cost_microunits: u64,
}

/// Why a re-execution could not run or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReexecuteError {
    /// The served model is not in the configuration.
    #[error("the model {0:?} that served is not in the configuration")]
    UnknownModel(String),
    /// The served model's provider is not in the configuration.
    #[error("the provider {0:?} that served is not in the configuration")]
    UnknownProvider(String),
    /// The provider failed.
    #[error("the provider failed: {0}")]
    Attempt(#[from] AttemptError),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
}

/// The kind and base URL of the provider that serves `model` in `config`.
///
/// # Errors
/// [`ReexecuteError::UnknownModel`] or [`ReexecuteError::UnknownProvider`].
pub fn provider_of<'a>(
    config: &'a GatewayConfig,
    compiled: &Compiled,
    model: &str,
    provider: &str,
) -> Result<(ProviderKind, &'a str), ReexecuteError> {
    let compiled_model = compiled
        .models
        .iter()
        .find(|m| m.name == model)
        .ok_or_else(|| ReexecuteError::UnknownModel(model.to_owned()))?;
    if compiled_model.provider != provider {
        return Err(ReexecuteError::UnknownProvider(provider.to_owned()));
    }
    let config = config
        .providers
        .get(provider)
        .ok_or_else(|| ReexecuteError::UnknownProvider(provider.to_owned()))?;
    Ok((config.kind, config.base_url.as_str()))
}

/// Asks the provider that served (`model`, by name) for the answer again, with the
/// request the pipeline made of it (the output cap the reservation allowed that model;
/// streamed when the request was), and rebuilds the answer's bytes with `logged`: the
/// decision record's log sequence (the answer's `id`) and the decision's
/// `recorded_at_unix_ms` (its `created`).
///
/// # Errors
/// [`ReexecuteError`].
pub async fn reexecute(
    config: &GatewayConfig,
    compiled: &Compiled,
    rederived: &Rederived,
    decision: &KernelDecision,
    held_microunits: u64,
    model: &str,
    logged: (u64, u64),
) -> Result<Reexecuted, ReexecuteError> {
    let (sequence, recorded_at_unix_ms) = logged;
    let parts = &rederived.interpreted;
    let index = compiled
        .models
        .iter()
        .position(|m| m.name == model)
        .ok_or_else(|| ReexecuteError::UnknownModel(model.to_owned()))?;
    let served = &compiled.models[index];
    let selected = compiled
        .models
        .iter()
        .position(|m| m.id == decision.selected_model_id)
        .unwrap_or(parts.requested);
    // The chain's cap for this model: the decision's own model gets what was asked,
    // a fallback what the hold covers at its prices.
    let max_tokens = if index == selected {
        parts.output_tokens
    } else {
        max_output_within(
            served,
            parts.input_estimate,
            held_microunits,
            parts.output_tokens,
        )
    };
    let provider_config = config
        .providers
        .get(&served.provider)
        .ok_or_else(|| ReexecuteError::UnknownProvider(served.provider.clone()))?;
    let provider = Provider::from_config(&served.provider, provider_config);
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| ReexecuteError::Client(e.to_string()))?;
    let request = UpstreamRequest {
        model: served.upstream.clone(),
        messages: parts.messages.clone(),
        max_tokens,
        temperature: rederived.temperature,
        tools: parts.tools.clone(),
        tool_choice: parts.tool_choice.clone(),
    };
    let created = recorded_at_unix_ms / 1_000;
    let (body, input_tokens, output_tokens) = if rederived.stream {
        // As the server's pump: the role, each piece, then the finish and the usage.
        let mut stream = provider.stream(&client, &request).await?;
        let mut answer = StreamAnswer::new(sequence, created, &served.name);
        let mut body = answer.first();
        loop {
            match answer.feed(stream.next().await?)? {
                Piece::Send(piece) => body.push_str(&piece),
                Piece::Quiet => {}
                Piece::End => break,
            }
        }
        let (input_tokens, output_tokens) = answer.tokens(parts.input_estimate, max_tokens);
        body.push_str(&answer.tail(input_tokens, output_tokens));
        (body, input_tokens, output_tokens)
    } else {
        let completion = provider.complete(&client, &request).await?;
        let input_tokens = completion.input_tokens.unwrap_or(parts.input_estimate);
        let output_tokens = completion
            .output_tokens
            .unwrap_or_else(|| crate::answer::estimate_output(&completion));
        let body = whole_body(&Whole {
            sequence,
            created,
            model: &served.name,
            text: &completion.text,
            tool_calls: &completion.tool_calls,
            finish_reason: &completion.finish_reason,
            input_tokens,
            output_tokens,
        });
        (body, input_tokens, output_tokens)
    };
    Ok(Reexecuted {
        response_sha256: sha256(body.as_bytes()),
        body,
        input_tokens,
        output_tokens,
        cost_microunits: served.cost_microunits(input_tokens, output_tokens),
    })
}
