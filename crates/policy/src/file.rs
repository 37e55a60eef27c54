//! The human policy file: [`PolicyFile`] and its [`ModelEntry`] rows, as read from
//! TOML or JSON. Every level refuses unknown keys, so a typo is an error, not a
//! silently ignored setting.

use serde::{Deserialize, Serialize};

use crate::decimal::Price;

/// The only `format_version` this crate reads.
pub const FORMAT_VERSION: u32 = 1;

const fn format_version() -> u32 {
    FORMAT_VERSION
}

const fn full_bps() -> u16 {
    calybris_kernel::BASIS_POINTS
}

const fn yes() -> bool {
    true
}

/// A policy as people write it: the decision parameters, the names of the capability
/// and region bits, and the models by name.
///
/// Defaults (a key left out takes them): `format_version` 1, epochs 0,
/// `hard_risk_limit_bps` 10,000 (only a request at 100 % risk is refused),
/// `minimum_confidence_bps` 0, `risk_penalty_multiplier_bps` 0,
/// `latency_penalty_microunits_per_ms` 0, no capabilities, no regions. `models` is
/// required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The version of this format; only [`FORMAT_VERSION`] is read.
    #[serde(default = "format_version")]
    pub format_version: u32,
    /// Version of the decision rules (the kernel's `policy_epoch`).
    #[serde(default)]
    pub policy_epoch: u64,
    /// Version of the catalog (the kernel's `catalog_epoch`).
    #[serde(default)]
    pub catalog_epoch: u64,
    /// Requests with `risk_bps` at or above this are refused (`0..=10_000`).
    #[serde(default = "full_bps")]
    pub hard_risk_limit_bps: u16,
    /// Requests with `confidence_bps` below this are refused (`0..=10_000`).
    #[serde(default)]
    pub minimum_confidence_bps: u16,
    /// Scales a request's risk into a penalty on value (`0..=50_000`).
    #[serde(default)]
    pub risk_penalty_multiplier_bps: u16,
    /// Utility charged per millisecond of a model's p95 latency, in microunits.
    #[serde(default)]
    pub latency_penalty_microunits_per_ms: u64,
    /// Capability names; the n-th (from 0) is capability bit n. At most 64.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Region names; the n-th (from 0) is region bit n. At most 64.
    #[serde(default)]
    pub regions: Vec<String>,
    /// The models, at least one enabled.
    pub models: Vec<ModelEntry>,
}

/// One model of a [`PolicyFile`].
///
/// Defaults: `id` assigned (see the crate documentation), `risk_ceiling_bps` 10,000
/// (accepts any request risk), `enabled` true, `p95_latency_ms` 0 (unknown: no
/// latency penalty, and it passes any latency limit), no capabilities, no regions.
/// `name`, `provider`, `quality_bps` and both prices are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The model's name, unique in the file (1 to 256 bytes).
    pub name: String,
    /// The kernel's `model_id` (non-zero). Either every model sets it or none does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// The provider's name (1 to 256 bytes); at most 64 providers in a file.
    pub provider: String,
    /// Quality in basis points, `0..=10_000`.
    pub quality_bps: u16,
    /// The highest request risk the model accepts, in basis points, `0..=10_000`.
    #[serde(default = "full_bps")]
    pub risk_ceiling_bps: u16,
    /// Whether the model may be selected.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// 95th percentile latency in milliseconds.
    #[serde(default)]
    pub p95_latency_ms: u32,
    /// Capabilities the model offers, by name (each declared in
    /// [`PolicyFile::capabilities`]).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Regions the model serves, by name (each declared in [`PolicyFile::regions`]).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Price of input, in currency units per million tokens (an exact decimal:
    /// `"0.15"`, `5` or `0.15`).
    pub input_usd_per_mtok: Price,
    /// Price of output, in currency units per million tokens.
    pub output_usd_per_mtok: Price,
}
