//! The demo catalog: 22 models from 6 fictional providers, with prices, p95
//! latencies, qualities, capabilities and regions in the range of today's hosted LLMs
//! (illustrative, not any vendor's list price), and the policy built on it.

use calybris_digest::SealedPolicy;
use calybris_kernel::{KernelModel, PolicyError, PolicySnapshot};

/// Capability bits of the catalog.
pub mod cap {
    /// Chat completion.
    pub const CHAT: u64 = 1 << 0;
    /// Tool (function) calls.
    pub const TOOLS: u64 = 1 << 1;
    /// Image input.
    pub const VISION: u64 = 1 << 2;
    /// Long context windows.
    pub const LONG_CONTEXT: u64 = 1 << 3;
}

/// Region bits of the catalog.
pub mod region {
    /// The United States.
    pub const US: u64 = 1 << 0;
    /// The European Union.
    pub const EU: u64 = 1 << 1;
    /// Asia-Pacific.
    pub const APAC: u64 = 1 << 2;
    /// Every region.
    pub const ALL: u64 = US | EU | APAC;
}

/// The six providers' names, by `provider_id`.
pub const PROVIDERS: [&str; 6] = ["northwind", "helix", "aurora", "basalt", "cirrus", "delta"];

/// Microunits (10^-6 USD) per cent.
pub const MICROUNITS_PER_CENT: u64 = 10_000;

/// One model of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogModel {
    /// The model's name.
    pub name: &'static str,
    /// The kernel's `model_id`.
    pub model_id: u32,
    /// The provider, an index into [`PROVIDERS`].
    pub provider_id: u16,
    /// Quality, in basis points.
    pub quality_bps: u16,
    /// The highest request risk the model accepts, in basis points.
    pub risk_ceiling_bps: u16,
    /// 1 when the model may be selected, 0 when it is switched off.
    pub enabled: u8,
    /// p95 latency, in milliseconds.
    pub p95_latency_ms: u32,
    /// Capability bits ([`cap`]).
    pub capabilities: u64,
    /// Region bits ([`region`]).
    pub region_mask: u64,
    /// Input price, in US cents per million tokens.
    pub input_cents_per_million_tokens: u64,
    /// Output price, in US cents per million tokens.
    pub output_cents_per_million_tokens: u64,
}

impl CatalogModel {
    /// The kernel's form of the model (prices in microunits per million tokens).
    #[must_use]
    pub const fn kernel_model(&self) -> KernelModel {
        KernelModel {
            model_id: self.model_id,
            provider_id: self.provider_id,
            quality_bps: self.quality_bps,
            risk_ceiling_bps: self.risk_ceiling_bps,
            enabled: self.enabled,
            p95_latency_ms: self.p95_latency_ms,
            capabilities: self.capabilities,
            region_mask: self.region_mask,
            input_cost_microunits_per_million_tokens: self.input_cents_per_million_tokens
                * MICROUNITS_PER_CENT,
            output_cost_microunits_per_million_tokens: self.output_cents_per_million_tokens
                * MICROUNITS_PER_CENT,
        }
    }
}

/// One catalog row, in the order of the table below.
#[allow(clippy::too_many_arguments)]
const fn row(
    name: &'static str,
    model_id: u32,
    provider_id: u16,
    quality_bps: u16,
    risk_ceiling_bps: u16,
    enabled: u8,
    p95_latency_ms: u32,
    capabilities: u64,
    region_mask: u64,
    input_cents_per_million_tokens: u64,
    output_cents_per_million_tokens: u64,
) -> CatalogModel {
    CatalogModel {
        name,
        model_id,
        provider_id,
        quality_bps,
        risk_ceiling_bps,
        enabled,
        p95_latency_ms,
        capabilities,
        region_mask,
        input_cents_per_million_tokens,
        output_cents_per_million_tokens,
    }
}

/// The 22 models: name, id, provider, quality, risk ceiling, enabled, p95 ms,
/// capabilities, regions, and prices in US cents per million tokens (in, out).
#[rustfmt::skip]
pub const CATALOG: [CatalogModel; 22] = [
    row("nw-ultra",      101, 0, 9_600, 7_000, 1, 4_200, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::US | region::EU, 1_500, 6_000),
    row("nw-pro",        102, 0, 9_300, 8_000, 1, 2_100, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::US | region::EU, 250, 1_000),
    row("nw-mini",       103, 0, 8_400, 8_500, 1,   900, cap::CHAT | cap::TOOLS | cap::VISION, region::ALL, 15, 60),
    row("nw-nano",       104, 0, 7_200, 9_000, 1,   450, cap::CHAT | cap::TOOLS, region::ALL, 5, 20),
    row("hx-opus",       201, 1, 9_700, 6_500, 1, 5_200, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::US | region::EU, 1_500, 7_500),
    row("hx-sonnet",     202, 1, 9_400, 7_500, 1, 2_400, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::US | region::EU, 300, 1_500),
    row("hx-haiku",      203, 1, 8_500, 8_500, 1,   800, cap::CHAT | cap::TOOLS | cap::VISION, region::US | region::EU, 80, 400),
    row("hx-lite",       204, 1, 7_600, 9_000, 1,   500, cap::CHAT | cap::TOOLS, region::US, 25, 125),
    row("au-ultra",      301, 2, 9_500, 7_000, 1, 3_000, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::ALL, 125, 1_000),
    row("au-flash",      302, 2, 8_700, 8_500, 1,   700, cap::CHAT | cap::TOOLS | cap::VISION | cap::LONG_CONTEXT, region::ALL, 30, 250),
    row("au-flash-lite", 303, 2, 7_900, 9_000, 1,   400, cap::CHAT | cap::TOOLS | cap::VISION, region::ALL, 10, 40),
    row("bs-large",      401, 3, 9_000, 8_000, 1, 1_800, cap::CHAT | cap::TOOLS | cap::LONG_CONTEXT, region::EU, 200, 600),
    row("bs-medium",     402, 3, 8_600, 8_500, 1, 1_000, cap::CHAT | cap::TOOLS, region::EU, 40, 200),
    row("bs-small",      403, 3, 7_700, 9_000, 1,   500, cap::CHAT | cap::TOOLS, region::EU | region::US, 10, 30),
    row("bs-code",       404, 3, 8_800, 8_500, 0,   900, cap::CHAT | cap::TOOLS, region::EU, 30, 90),
    row("cr-llama-405b", 501, 4, 9_000, 8_000, 1, 2_600, cap::CHAT | cap::TOOLS, region::US, 350, 350),
    row("cr-llama-70b",  502, 4, 8_500, 8_500, 1,   900, cap::CHAT | cap::TOOLS, region::US | region::EU, 88, 88),
    row("cr-llama-8b",   503, 4, 7_300, 9_000, 1,   300, cap::CHAT, region::US | region::EU, 18, 18),
    row("cr-mixtral",    504, 4, 8_000, 8_500, 1,   700, cap::CHAT | cap::TOOLS, region::US, 60, 60),
    row("dl-reasoner",   601, 5, 9_200, 7_500, 1, 6_000, cap::CHAT | cap::TOOLS | cap::LONG_CONTEXT, region::APAC | region::US, 55, 219),
    row("dl-chat",       602, 5, 8_700, 8_500, 1, 1_200, cap::CHAT | cap::TOOLS, region::APAC | region::US, 27, 110),
    row("dl-vl",         603, 5, 8_200, 8_500, 1, 1_500, cap::CHAT | cap::VISION, region::APAC, 15, 60),
];

/// The catalog in the kernel's form.
#[must_use]
pub fn models() -> Vec<KernelModel> {
    CATALOG.iter().map(CatalogModel::kernel_model).collect()
}

/// The name of the model `model_id`, if the catalog holds it.
#[must_use]
pub fn model_name(model_id: u32) -> Option<&'static str> {
    CATALOG
        .iter()
        .find(|model| model.model_id == model_id)
        .map(|model| model.name)
}

/// The demo policy: the catalog and the policy-wide limits.
///
/// # Errors
/// Never for the embedded catalog; the error is kept typed all the same.
pub fn policy() -> Result<SealedPolicy, PolicyError> {
    Ok(SealedPolicy::new(
        PolicySnapshot::builder()
            .policy_epoch(1)
            .catalog_epoch(202_601)
            .hard_risk_limit_bps(9_000)
            .minimum_confidence_bps(3_000)
            .risk_penalty_multiplier_bps(10_000)
            .latency_penalty_microunits_per_ms(2)
            .models(models())
            .build()?,
    ))
}
