//! The tenants: 8 organisations, each with its own request profile (sizes, value,
//! quality floor, latency limit, capabilities, region and provider restrictions, risk)
//! and [`TEAMS_PER_ORG`] teams, each team a tenant with its own budget.

use calybris_kernel::ALL_PROVIDERS;

use crate::catalog::{cap, region};

/// How one organisation's requests look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// The organisation's name (its teams are `NAME/team-NN`).
    pub name: &'static str,
    /// Share of all requests, in parts of [`WEIGHT_TOTAL`].
    pub weight: u64,
    /// Opening budget as a percentage of what its requests would cost.
    pub budget_percent: u64,
    /// The models its requests ask for (one picked per request).
    pub preferred: &'static [u32],
    /// Input tokens, lowest and highest.
    pub input_tokens: (u64, u64),
    /// Output tokens, lowest and highest.
    pub output_tokens: (u64, u64),
    /// Business value of a request in microunits, lowest and highest.
    pub value_microunits: (u64, u64),
    /// The per-request budget limit, in microunits.
    pub budget_limit_microunits: u64,
    /// The quality floor, in basis points.
    pub minimum_quality_bps: u16,
    /// The p95 latency limit in milliseconds (0: none).
    pub max_p95_latency_ms: u32,
    /// Capability bits every request requires.
    pub required_capabilities: u64,
    /// The providers allowed, one bit per `provider_id`.
    pub allowed_provider_mask: u64,
    /// Region bits every request requires.
    pub required_region_mask: u64,
    /// Percentage of requests carrying elevated risk.
    pub risky_percent: u64,
}

/// The mask of the providers `ids`.
#[must_use]
pub const fn providers(ids: &[u16]) -> u64 {
    let mut mask = 0;
    let mut i = 0;
    while i < ids.len() {
        mask |= 1 << ids[i];
        i += 1;
    }
    mask
}

/// The sum of the profiles' weights.
pub const WEIGHT_TOTAL: u64 = 100;

/// Teams (tenants) per organisation.
pub const TEAMS_PER_ORG: usize = 12;

/// Tenants in all: `PROFILES.len() * TEAMS_PER_ORG`.
pub const TENANTS: usize = PROFILES.len() * TEAMS_PER_ORG;

/// The smallest opening budget of a team: one cent, in microunits.
pub const MIN_BUDGET_MICROUNITS: u64 = 10_000;

/// The 8 organisations.
#[rustfmt::skip]
pub const PROFILES: [Profile; 8] = [
    Profile { name: "acme-support", weight: 30, budget_percent: 150, preferred: &[103, 203, 302],
        input_tokens: (300, 3_000), output_tokens: (100, 600), value_microunits: (20_000, 80_000),
        budget_limit_microunits: 20_000, minimum_quality_bps: 8_000, max_p95_latency_ms: 1_500,
        required_capabilities: cap::CHAT, allowed_provider_mask: ALL_PROVIDERS,
        required_region_mask: region::US, risky_percent: 3 },
    Profile { name: "globex-legal", weight: 10, budget_percent: 140, preferred: &[202, 401, 102],
        input_tokens: (8_000, 60_000), output_tokens: (500, 3_000), value_microunits: (500_000, 2_000_000),
        budget_limit_microunits: 2_000_000, minimum_quality_bps: 9_000, max_p95_latency_ms: 0,
        required_capabilities: cap::CHAT | cap::LONG_CONTEXT, allowed_provider_mask: providers(&[0, 1, 2, 3]),
        required_region_mask: region::EU, risky_percent: 5 },
    Profile { name: "initech-dev", weight: 20, budget_percent: 130, preferred: &[102, 202, 502, 404],
        input_tokens: (1_000, 12_000), output_tokens: (200, 2_000), value_microunits: (50_000, 300_000),
        budget_limit_microunits: 200_000, minimum_quality_bps: 8_500, max_p95_latency_ms: 3_000,
        required_capabilities: cap::TOOLS, allowed_provider_mask: ALL_PROVIDERS,
        required_region_mask: region::US | region::EU, risky_percent: 5 },
    Profile { name: "umbrella-research", weight: 8, budget_percent: 200, preferred: &[201, 101, 301],
        input_tokens: (2_000, 20_000), output_tokens: (500, 4_000), value_microunits: (200_000, 1_000_000),
        budget_limit_microunits: 1_000_000, minimum_quality_bps: 9_000, max_p95_latency_ms: 0,
        required_capabilities: cap::VISION, allowed_provider_mask: ALL_PROVIDERS,
        required_region_mask: 0, risky_percent: 10 },
    Profile { name: "hooli-search", weight: 15, budget_percent: 120, preferred: &[104, 303, 503],
        input_tokens: (100, 1_500), output_tokens: (20, 200), value_microunits: (5_000, 20_000),
        budget_limit_microunits: 5_000, minimum_quality_bps: 7_500, max_p95_latency_ms: 800,
        required_capabilities: cap::CHAT, allowed_provider_mask: ALL_PROVIDERS,
        required_region_mask: 0, risky_percent: 2 },
    Profile { name: "stark-analytics", weight: 7, budget_percent: 55, preferred: &[101, 201, 501],
        input_tokens: (4_000, 30_000), output_tokens: (500, 3_000), value_microunits: (200_000, 600_000),
        budget_limit_microunits: 500_000, minimum_quality_bps: 8_800, max_p95_latency_ms: 0,
        required_capabilities: cap::TOOLS, allowed_provider_mask: ALL_PROVIDERS,
        required_region_mask: region::US, risky_percent: 5 },
    Profile { name: "wayne-finance", weight: 5, budget_percent: 150, preferred: &[102, 202],
        input_tokens: (1_000, 8_000), output_tokens: (200, 1_500), value_microunits: (100_000, 500_000),
        budget_limit_microunits: 300_000, minimum_quality_bps: 9_000, max_p95_latency_ms: 3_000,
        required_capabilities: cap::CHAT | cap::TOOLS, allowed_provider_mask: providers(&[0, 1]),
        required_region_mask: region::US, risky_percent: 40 },
    Profile { name: "tyrell-bio", weight: 5, budget_percent: 150, preferred: &[601, 602, 302],
        input_tokens: (500, 5_000), output_tokens: (100, 1_000), value_microunits: (30_000, 150_000),
        budget_limit_microunits: 100_000, minimum_quality_bps: 8_000, max_p95_latency_ms: 0,
        required_capabilities: cap::CHAT, allowed_provider_mask: providers(&[2, 5]),
        required_region_mask: region::APAC, risky_percent: 5 },
];

/// The tenant name of team `team` of organisation `org` (`NAME/team-NN`).
///
/// # Panics
/// When `org` is not an index into [`PROFILES`].
#[must_use]
pub fn tenant_name(org: usize, team: usize) -> String {
    format!("{}/team-{team:02}", PROFILES[org].name)
}
