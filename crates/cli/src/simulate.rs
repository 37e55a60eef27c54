//! `calybris simulate`: a seeded routing simulation on the real prices and the real
//! AlpacaEval quality of the shared catalog (`examples/policies/catalog.toml`, 31
//! models), through the decision gate with the adaptive engine
//! (`calybris-adapt`), comparing five strategies on the same requests.
//!
//! # Design (normative text: `docs/ADAPT.md`, section "Simulation")
//! - **Workload.** `N` requests (default 100,000) from a SplitMix64 generator with a
//!   printed seed, over eight regimes ([`REGIMES`]), each with its share, value per
//!   success, ease, token ranges and hard limits (a quality minimum, required
//!   capabilities, allowed providers, a per-request budget limit).
//! - **Tiers.** A floor tier is a quality floor (0, or the win rate of a model of the
//!   catalog's Pareto frontier); a model tier `m` is the floor `q_m` and the price
//!   ceiling `cost_m(request)`. The kernel decides under the tier (hard gates stay
//!   in the kernel) and picks the model of highest utility it allows. The engine's
//!   arms are the floor tiers (an `AdaptiveTier` each); the random baseline draws
//!   among the eligible model tiers (every model of the catalog).
//! - **Link function.** A model of length-controlled win rate `q` succeeds in a
//!   regime of ease `A` with probability `p = A·q² / (A·q² + (1 − q)²)`, i.e. success
//!   odds `A·(q / (1 − q))²`: exact integers in basis points.
//! - **Reward** `= value × success − cost` (microunits), recorded with
//!   `Gate::record_outcome`. The gate's engine learns from that record with reward
//!   feedback (`AdaptiveFeedback::Reward`): the reward normalised on the request's
//!   scale becomes a dithered bit (`calybris_adapt::reward`), so each tier's
//!   posterior is over its expected reward, not its success rate.
//! - **Strategies:** static (the best fixed floor in hindsight; the engine with
//!   exploration off), uniform random among eligible models, epsilon-greedy at 2 %
//!   and Thompson sampling (the engine exploring, per regime), all three through
//!   `Gate::decide_adaptive`, so their logs carry every adaptive note and
//!   `calybris verify` re-derives every step; random and the oracle (the best floor
//!   of each regime, in closed form) through `Gate::decide_with`. Each writes its own
//!   gate directory `DIR/<strategy>`, verified with `verify_dir`.
//!
//! # Determinism
//! Everything (requests, success draws, the random baseline, the engine's keyed
//! draws, the log's clock) derives from the seed, so two runs write the same logs
//! byte for byte: the same anchors (a test checks it).

use calybris_workload::SplitMix64;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use calybris::digest::SealedPolicy;
use calybris::gate::adaptive::{
    ADAPTIVE_FORMAT_VERSION, AdaptiveFeedback, AdaptivePolicy, AdaptiveRegime, AdaptiveSetup,
    AdaptiveTier,
};
use calybris::gate::record::GateRecord;
use calybris::gate::{AdaptiveRequest, CallerMeta, Gate, GateConfig, GateError, LOG_DIR, Outcome};
use calybris::kernel::{KernelInput, KernelModel};
use calybris::wal::{SegmentedReader, WalAnchor, WalError};
use calybris_policy::{Format, NameMap};

use crate::report::{Code, EXIT_ERROR, EXIT_OK, Reason, anchor_text};
use crate::scan::Target;
use crate::{stderr_line, stdout_text};

/// Requests routed when `--requests` is not given.
pub const DEFAULT_REQUESTS: u64 = 100_000;
/// The fewest requests a run routes (the last-window figure needs 10,000).
pub const MIN_REQUESTS: u64 = 1_000;
/// The most requests one run routes.
pub const MAX_REQUESTS: u64 = 1_000_000;
/// The seed used when `--seed` is not given.
pub const DEFAULT_SEED: u64 = 0x5EED_CA1B_2026_0ADA;
/// The output directory used when `--dir` is not given.
pub const DEFAULT_DIR: &str = "./calybris-simulate";
/// The catalog used when `--catalog` is not given (from the repository root).
pub const DEFAULT_CATALOG: &str = "examples/policies/catalog.toml";
/// The fixed clock written into every decision record (2026-01-01T00:00:00Z).
pub const CLOCK_UNIX_MS: u64 = 1_767_225_600_000;
/// Epsilon of the epsilon-greedy baseline, in basis points (2 %).
pub const EPSILON_BPS: u32 = 200;
/// `K` of the Thompson policy's logged propensity `(c + 1) / (K + 1)`.
pub const THOMPSON_REDRAWS: u32 = 16;
/// The prior `(α, β)` of every tier: uniform.
pub const PRIOR: (u32, u32) = (1, 1);
/// Observations the engine counts per outcome (reward feedback): the dithered bits
/// carry only the reward's own variance, about half of the Bernoulli variance a Beta
/// posterior assumes on this workload (see `docs/ADAPT.md` section 9).
pub const OBSERVATIONS: u32 = 2;
/// An engine snapshot record follows every this many engine updates.
pub const SNAPSHOT_EVERY_UPDATES: u64 = 10_000;
/// The per-request regret window at the end of the run.
pub const LAST_WINDOW: u64 = 10_000;
/// The confidence every request declares to the kernel (whose utility is value ×
/// confidence × quality − cost): full, so the kernel weighs quality at the regime's
/// value (linearly in the win rate; the floor corrects where the link is steeper).
pub const DECLARED_CONFIDENCE_BPS: u16 = 10_000;
/// The one tenant of every gate directory.
pub const TENANT: &str = "simulation";
/// Its opening budget: far above what any run spends (10^6 units).
const TENANT_BUDGET_MICROUNITS: u64 = 1_000_000_000_000;
/// Points on each regret curve.
const CURVE_POINTS: u64 = 200;
/// Microunits per million tokens: prices are per million tokens.
const TOKENS_PER_PRICE_UNIT: u64 = 1_000_000;
/// One in basis points.
const BPS: u64 = 10_000;
/// 2^53: success draws are 53-bit integers.
const UNIT_53: u128 = 1 << 53;

/// One regime of the workload.
#[derive(Debug, Clone, Copy)]
pub struct Regime {
    /// The label (the engine's regime of the same name).
    pub label: &'static str,
    /// Share of requests, in percent.
    pub share: u64,
    /// The value of one success, in microunits.
    pub value_microunits: u64,
    /// The ease `A` of the link function, in hundredths (`A = 1` is 100).
    pub ease_centi: u64,
    /// Input tokens, inclusive range.
    pub input_tokens: (u32, u32),
    /// Output tokens, inclusive range.
    pub output_tokens: (u32, u32),
    /// Hard limit: the lowest quality admitted, in basis points.
    pub min_quality_bps: u16,
    /// Hard limit: capabilities required, by name.
    pub capabilities: &'static [&'static str],
    /// Hard limit: the providers allowed, by name (empty: all).
    pub providers: &'static [&'static str],
    /// Hard limit: the per-request budget, in microunits.
    pub budget_limit_microunits: u64,
}

/// The eight regimes: value per success, ease (difficulty) and hard limits differ.
#[rustfmt::skip]
pub const REGIMES: [Regime; 8] = [
    Regime { label: "support", share: 24, value_microunits: 6_000, ease_centi: 600,
        input_tokens: (300, 1_500), output_tokens: (100, 400), min_quality_bps: 0,
        capabilities: &[], providers: &[], budget_limit_microunits: 20_000 },
    Regime { label: "coding", share: 16, value_microunits: 120_000, ease_centi: 80,
        input_tokens: (1_000, 6_000), output_tokens: (300, 1_500), min_quality_bps: 0,
        capabilities: &["function_calling"], providers: &[], budget_limit_microunits: 150_000 },
    Regime { label: "compliance", share: 8, value_microunits: 250_000, ease_centi: 100,
        input_tokens: (2_000, 12_000), output_tokens: (200, 800), min_quality_bps: 3_000,
        capabilities: &[], providers: &["openai", "anthropic", "mistral"], budget_limit_microunits: 300_000 },
    Regime { label: "security", share: 6, value_microunits: 300_000, ease_centi: 60,
        input_tokens: (1_000, 8_000), output_tokens: (200, 1_000), min_quality_bps: 4_000,
        capabilities: &["function_calling"], providers: &[], budget_limit_microunits: 300_000 },
    Regime { label: "analysis", share: 12, value_microunits: 30_000, ease_centi: 250,
        input_tokens: (2_000, 16_000), output_tokens: (300, 1_200), min_quality_bps: 0,
        capabilities: &[], providers: &[], budget_limit_microunits: 100_000 },
    Regime { label: "writing", share: 14, value_microunits: 12_000, ease_centi: 400,
        input_tokens: (200, 1_500), output_tokens: (300, 1_500), min_quality_bps: 0,
        capabilities: &[], providers: &[], budget_limit_microunits: 40_000 },
    Regime { label: "extraction", share: 12, value_microunits: 3_000, ease_centi: 800,
        input_tokens: (500, 4_000), output_tokens: (50, 300), min_quality_bps: 0,
        capabilities: &[], providers: &[], budget_limit_microunits: 10_000 },
    Regime { label: "other", share: 8, value_microunits: 8_000, ease_centi: 300,
        input_tokens: (100, 2_000), output_tokens: (100, 600), min_quality_bps: 0,
        capabilities: &[], providers: &[], budget_limit_microunits: 30_000 },
];

/// The five strategies, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The best fixed tier for every request (chosen in hindsight).
    Static,
    /// A uniformly random eligible tier.
    Random,
    /// The engine with epsilon-greedy at [`EPSILON_BPS`].
    EpsilonGreedy,
    /// The engine with Thompson sampling.
    Thompson,
    /// The best tier of each request, in closed form.
    Oracle,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Self; 5] = [
        Self::Static,
        Self::Random,
        Self::EpsilonGreedy,
        Self::Thompson,
        Self::Oracle,
    ];

    /// Its name (also its gate directory under `DIR`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Random => "random",
            Self::EpsilonGreedy => "epsilon-greedy",
            Self::Thompson => "thompson",
            Self::Oracle => "oracle",
        }
    }

    const fn colour(self) -> plotters::style::RGBColor {
        use plotters::style::RGBColor;
        match self {
            Self::Static => RGBColor(128, 128, 128),
            Self::Random => RGBColor(214, 39, 40),
            Self::EpsilonGreedy => RGBColor(255, 127, 14),
            Self::Thompson => RGBColor(31, 119, 180),
            Self::Oracle => RGBColor(44, 160, 44),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests to route.
    pub requests: u64,
    /// The seed of everything.
    pub seed: u64,
    /// The output directory: one gate directory per strategy, the plots, the summary.
    pub dir: PathBuf,
    /// The policy file of the catalog.
    pub catalog: PathBuf,
    /// Delete the gate directories of a previous run first.
    pub fresh: bool,
    /// Print the summary as JSON.
    pub json: bool,
}

/// Why a simulation stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulateError {
    /// `--requests` out of range.
    #[error("--requests must be between {MIN_REQUESTS} and {MAX_REQUESTS}, not {0}")]
    Requests(u64),
    /// The directory already holds a run.
    #[error("{0} already holds a simulation log; pass --fresh to replace it, or another --dir")]
    Exists(PathBuf),
    /// A file could not be read, written or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The catalog does not compile, or lacks what the workload needs.
    #[error("{0}")]
    Catalog(String),
    /// The gate failed.
    #[error("{0}")]
    Gate(#[from] GateError),
    /// A strategy's thread panicked (a bug).
    #[error("a strategy thread stopped unexpectedly")]
    Worker,
    /// A log does not verify, or the gate decided otherwise than the table says.
    #[error("the simulation does not check out: {0}")]
    Check(String),
}

impl SimulateError {
    /// The reason code printed with the error (see docs/CLI.md).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Requests(_) => Reason::BadArgument.code(),
            Self::Exists(_) => Code::DirNotEmpty.code(),
            Self::Io { .. } => Reason::Unreadable.code(),
            Self::Catalog(_) => Code::InvalidPolicy.code(),
            Self::Check(_) => Code::SimulateCheckFailed.code(),
            Self::Gate(_) | Self::Worker => Code::SimulateFailed.code(),
        }
    }
}

/// The catalog as the simulation uses it.
struct Catalog {
    policy: SealedPolicy,
    names: NameMap,
    /// Per regime: capability mask, provider mask.
    masks: Vec<(u64, u64)>,
    /// The levels of the floor tiers: 0, then the quality of each frontier model.
    floors: Vec<u16>,
    /// The highest quality of an enabled model, in bps: the kernel's positive-utility
    /// gate (value × confidence × quality − cost > 0, confidence 100 %) keeps every
    /// admitted cost below this share of the request's value, so it bounds the
    /// engine's reward scale from below.
    cost_bound_bps: u32,
}

fn load_catalog(path: &Path) -> Result<Catalog, SimulateError> {
    let bytes = std::fs::read(path).map_err(|source| SimulateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let compiled = calybris_policy::compile_bytes(&bytes, Format::Toml)
        .map_err(|e| SimulateError::Catalog(format!("{}: {e}", path.display())))?;
    let names = compiled.names;
    let models = compiled.policy.models();
    if models.len() + models.len() + 1 > 64 {
        return Err(SimulateError::Catalog(format!(
            "{}: at most 31 models (tiers are a 64-bit mask), not {}",
            path.display(),
            models.len()
        )));
    }
    let mut masks = Vec::new();
    for regime in &REGIMES {
        let mut caps = 0u64;
        for name in regime.capabilities {
            let bit = names.capability_bit(name).ok_or_else(|| {
                SimulateError::Catalog(format!("{}: no capability {name}", path.display()))
            })?;
            caps |= 1 << bit;
        }
        let mut providers = if regime.providers.is_empty() {
            calybris::kernel::ALL_PROVIDERS
        } else {
            0
        };
        for name in regime.providers {
            let id = names.provider_id(name).ok_or_else(|| {
                SimulateError::Catalog(format!("{}: no provider {name}", path.display()))
            })?;
            providers |= 1 << id;
        }
        masks.push((caps, providers));
    }
    let mut floors: Vec<u16> = std::iter::once(0)
        .chain(
            pareto_models(models)
                .into_iter()
                .map(|i| models[i].quality_bps),
        )
        .collect();
    floors.sort_unstable();
    floors.dedup();
    debug_assert_eq!(
        floors.first(),
        Some(&0),
        "floor tier 0 is the caller's request"
    );
    let cost_bound_bps = models
        .iter()
        .filter(|m| m.enabled != 0)
        .map(|m| u32::from(m.quality_bps))
        .max()
        .unwrap_or(10_000);
    Ok(Catalog {
        policy: compiled.policy,
        names,
        masks,
        floors,
        cost_bound_bps,
    })
}

/// Uniform in `low..=high` from the workspace's generator (the modulo bias, below
/// 2^-40, is irrelevant here).
fn between(rng: &mut SplitMix64, low: u32, high: u32) -> u32 {
    u32::try_from(rng.between(u64::from(low), u64::from(high))).unwrap_or(low)
}

/// One request of the workload, with its common random numbers (the same for every
/// strategy).
#[derive(Debug, Clone, Copy)]
struct Job {
    regime: usize,
    input_tokens: u32,
    output_tokens: u32,
    /// 53-bit uniform: success iff `u < p` of the model that runs.
    u_success: u64,
    /// The random baseline's draw.
    u_random: u64,
}

fn workload(requests: u64, seed: u64) -> Vec<Job> {
    let mut rng = SplitMix64::new(seed);
    let total: u64 = REGIMES.iter().map(|r| r.share).sum();
    (0..requests)
        .map(|_| {
            let mut pick = rng.next_u64() % total;
            let regime = REGIMES
                .iter()
                .position(|r| {
                    let hit = pick < r.share;
                    pick = pick.saturating_sub(r.share);
                    hit
                })
                .unwrap_or(0);
            let r = &REGIMES[regime];
            Job {
                regime,
                input_tokens: between(&mut rng, r.input_tokens.0, r.input_tokens.1),
                output_tokens: between(&mut rng, r.output_tokens.0, r.output_tokens.1),
                u_success: rng.next_u64() >> 11,
                u_random: rng.next_u64(),
            }
        })
        .collect()
}

/// The kernel's cost of a model for a request: `ceil(in·rate/10^6) + ceil(out·rate/10^6)`.
fn cost_of(m: &KernelModel, job: &Job) -> u64 {
    let part = |tokens: u32, rate: u64| {
        (u128::from(tokens) * u128::from(rate)).div_ceil(u128::from(TOKENS_PER_PRICE_UNIT))
    };
    u64::try_from(
        part(job.input_tokens, m.input_cost_microunits_per_million_tokens)
            + part(
                job.output_tokens,
                m.output_cost_microunits_per_million_tokens,
            ),
    )
    .unwrap_or(u64::MAX)
}

/// The link function as an exact fraction: `(A·q², A·q² + (1 − q)²)` with `q` in bps
/// and `A` in hundredths (the second term scaled by 100 to match).
fn success_fraction(quality_bps: u16, ease_centi: u64) -> (u128, u128) {
    let q = u128::from(quality_bps);
    let miss = u128::from(BPS) - q;
    let num = u128::from(ease_centi) * q * q;
    (num, num + 100 * miss * miss)
}

fn success_probability(quality_bps: u16, ease_centi: u64) -> f64 {
    let (num, den) = success_fraction(quality_bps, ease_centi);
    num as f64 / den as f64
}

/// The request under tier `arm`. A model tier (`arm` below the catalog's length):
/// floor `max(regime minimum, q_arm)`, budget `min(regime limit, cost_arm)`. A floor
/// tier: floor `max(regime minimum, its level)`, the regime's budget limit. Both with
/// the regime's value, capabilities and providers.
fn tier_input(catalog: &Catalog, job: &Job, sequence: u64, arm: usize) -> KernelInput {
    let regime = &REGIMES[job.regime];
    let models = catalog.policy.models();
    let (model, floor, budget) = match models.get(arm) {
        Some(model) => (
            model,
            model.quality_bps,
            regime.budget_limit_microunits.min(cost_of(model, job)),
        ),
        None => {
            let level = catalog.floors[arm - models.len()];
            (
                floor_model(models, level),
                level,
                regime.budget_limit_microunits,
            )
        }
    };
    let (caps, providers) = catalog.masks[job.regime];
    KernelInput {
        request_sequence: sequence,
        requested_model_id: model.model_id,
        input_tokens: job.input_tokens,
        output_tokens: job.output_tokens,
        business_value_microunits: i64::try_from(regime.value_microunits).unwrap_or(i64::MAX),
        budget_limit_microunits: budget,
        risk_bps: 0,
        confidence_bps: DECLARED_CONFIDENCE_BPS,
        minimum_quality_bps: regime.min_quality_bps.max(floor),
        max_p95_latency_ms: 0,
        required_capabilities: caps,
        allowed_provider_mask: providers,
        required_region_mask: 0,
    }
}

/// The model a floor tier requests: the first of the catalog at the level (the kernel
/// still selects the eligible model of highest utility).
fn floor_model(models: &[KernelModel], level: u16) -> &KernelModel {
    models
        .iter()
        .find(|m| m.quality_bps >= level)
        .unwrap_or(&models[0])
}

/// What the kernel does with one tier of one request: the model index it selects
/// (`None`: rejected) and its estimated cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TierOutcome {
    model: Option<u8>,
    cost: u64,
}

/// The closed-form table: every tier of every request, as the kernel decides it.
struct Table {
    /// Tiers: one per catalog model, then the floor tiers.
    arms: usize,
    /// Catalog models (the model tiers come first).
    models: usize,
    outcomes: Vec<TierOutcome>,
    /// `p[model * 8 + regime]`.
    p: Vec<f64>,
    /// The learners' arms (the engine's tiers, in order): the floor tiers, less those
    /// under which the kernel selects exactly what a lower floor tier selects on every
    /// request (the same action under another name).
    tiers: Vec<usize>,
    /// Per request: the oracle's tier (the best arm of its regime, in closed form) and
    /// its expected reward on this request.
    oracle: Vec<(u32, f64)>,
    /// The best tier of each request (of every tier, in closed form), summed: the
    /// bound of a router that would know each request's best tier.
    per_request_oracle: f64,
    /// Per request: the mask of tiers the kernel admits.
    eligible: Vec<u64>,
    /// The best fixed arm over the whole workload.
    static_arm: u32,
    /// Per regime: its requests, and each floor tier's mean expected reward per
    /// request (closed form), in microunits.
    regimes: Vec<(u64, Vec<f64>)>,
}

impl Table {
    fn outcome(&self, job: usize, arm: usize) -> TierOutcome {
        self.outcomes[job * self.arms + arm]
    }

    /// The engine tier (index into [`Table::tiers`]) of floor arm `arm`.
    fn tier_of(&self, arm: usize) -> u32 {
        let tier = self.tiers.iter().position(|&a| a == arm);
        debug_assert!(tier.is_some(), "arm {arm} is an engine tier");
        u32::try_from(tier.unwrap_or(0)).unwrap_or(0)
    }

    fn expected_reward(&self, job: &Job, outcome: TierOutcome) -> f64 {
        match outcome.model {
            None => 0.0,
            Some(m) => {
                REGIMES[job.regime].value_microunits as f64
                    * self.p[usize::from(m) * REGIMES.len() + job.regime]
                    - outcome.cost as f64
            }
        }
    }
}

/// The catalog's Pareto frontier: the models that no other model dominates (at least
/// the quality, no higher input or output price, at least the capabilities, enabled;
/// better in one of them). Under a link increasing in quality, a dominated model is
/// never strictly better for a request its dominator may serve.
fn pareto_models(models: &[KernelModel]) -> Vec<usize> {
    let dominates = |b: &KernelModel, a: &KernelModel| {
        b.enabled != 0
            && b.quality_bps >= a.quality_bps
            && b.input_cost_microunits_per_million_tokens
                <= a.input_cost_microunits_per_million_tokens
            && b.output_cost_microunits_per_million_tokens
                <= a.output_cost_microunits_per_million_tokens
            && b.capabilities & a.capabilities == a.capabilities
            && (b.quality_bps > a.quality_bps
                || b.input_cost_microunits_per_million_tokens
                    < a.input_cost_microunits_per_million_tokens
                || b.output_cost_microunits_per_million_tokens
                    < a.output_cost_microunits_per_million_tokens
                || b.capabilities != a.capabilities)
    };
    (0..models.len())
        .filter(|&a| models[a].enabled != 0 && !models.iter().any(|b| dominates(b, &models[a])))
        .collect()
}

fn index_of(catalog: &Catalog, model_id: u32) -> Option<u8> {
    catalog
        .policy
        .models()
        .binary_search_by_key(&model_id, |m| m.model_id)
        .ok()
        .and_then(|i| u8::try_from(i).ok())
}

fn build_table(catalog: &Catalog, jobs: &[Job]) -> Table {
    let models = catalog.policy.models();
    let arms = models.len() + catalog.floors.len();
    let p: Vec<f64> = models
        .iter()
        .flat_map(|m| {
            REGIMES
                .iter()
                .map(|r| success_probability(m.quality_bps, r.ease_centi))
        })
        .collect();
    // The learners' arms: the frontier models' tiers, then every floor tier.
    let tiers = (models.len()..arms).collect();
    let mut table = Table {
        arms,
        models: models.len(),
        outcomes: Vec::with_capacity(jobs.len() * arms),
        p,
        tiers,
        oracle: Vec::with_capacity(jobs.len()),
        per_request_oracle: 0.0,
        eligible: Vec::with_capacity(jobs.len()),
        static_arm: 0,
        regimes: Vec::new(),
    };
    let mut totals = vec![0f64; arms];
    let mut regime_totals = vec![vec![0f64; arms]; REGIMES.len()];
    for (i, job) in jobs.iter().enumerate() {
        let mut best = f64::NEG_INFINITY;
        let mut eligible = 0u64;
        for (arm, total) in totals.iter_mut().enumerate() {
            let decision = catalog
                .policy
                .prescribe(tier_input(catalog, job, i as u64, arm));
            let outcome = if decision.is_selection() {
                if arm < models.len() {
                    eligible |= 1 << arm;
                }
                TierOutcome {
                    model: index_of(catalog, decision.selected_model_id),
                    cost: decision.estimated_cost_microunits,
                }
            } else {
                TierOutcome {
                    model: None,
                    cost: 0,
                }
            };
            table.outcomes.push(outcome);
            let reward = table.expected_reward(job, outcome);
            *total += reward;
            regime_totals[job.regime][arm] += reward;
            best = best.max(reward);
        }
        table.per_request_oracle += best;
        table.eligible.push(eligible);
    }
    // A floor tier the kernel treats as a lower one on every request is not an arm of
    // its own (this compares the kernel's selections only, not outcomes or rewards).
    let all: Vec<usize> = std::mem::take(&mut table.tiers);
    for &arm in &all {
        let same =
            |kept: usize| (0..jobs.len()).all(|i| table.outcome(i, arm) == table.outcome(i, kept));
        if !table.tiers.iter().any(|&kept| same(kept)) {
            table.tiers.push(arm);
        }
    }
    debug_assert_eq!(
        table.tiers.first(),
        Some(&models.len()),
        "floor 0 is always an arm"
    );
    let argmax = |totals: &[f64]| {
        let mut best = table.tiers[0];
        for &arm in &table.tiers {
            if totals[arm] > totals[best] {
                best = arm;
            }
        }
        best
    };
    let static_arm = argmax(&totals);
    let oracle_arms: Vec<usize> = regime_totals.iter().map(|t| argmax(t)).collect();
    table.static_arm = u32::try_from(static_arm).unwrap_or(0);
    for (r, totals) in regime_totals.iter().enumerate() {
        let requests = jobs.iter().filter(|j| j.regime == r).count() as u64;
        let means = table
            .tiers
            .iter()
            .map(|&arm| totals[arm] / requests.max(1) as f64)
            .collect();
        table.regimes.push((requests, means));
    }
    for (i, job) in jobs.iter().enumerate() {
        let arm = oracle_arms[job.regime];
        let reward = table.expected_reward(job, table.outcome(i, arm));
        table.oracle.push((u32::try_from(arm).unwrap_or(0), reward));
    }
    table
}

/// What one strategy did.
#[derive(Debug, Clone)]
pub struct StrategyRun {
    /// The strategy.
    pub strategy: Strategy,
    /// Cumulative (pseudo-)regret against the oracle's expected reward, in microunits.
    pub regret_microunits: f64,
    /// Regret over the last [`LAST_WINDOW`] requests, per request.
    pub last_window_regret_per_request: f64,
    /// Expected reward summed over all requests (closed form), in microunits.
    pub expected_reward_microunits: f64,
    /// Realised reward (`value × success − cost`), as recorded in the log.
    pub realised_reward_microunits: i128,
    /// What was spent (settled), in microunits.
    pub cost_microunits: u128,
    /// Requests that succeeded.
    pub successes: u64,
    /// Expected successes (sum of the success probabilities of the models run).
    pub expected_successes: f64,
    /// Requests the kernel rejected under the chosen tier.
    pub rejected: u64,
    /// Decisions that broke a hard limit of the policy (checked independently).
    pub violations: u64,
    /// The regret curve: (requests routed, cumulative regret in microunits).
    pub curve: Vec<(u64, f64)>,
    /// Regret per regime, in microunits.
    pub regime_regret: Vec<f64>,
    /// Requests per regime per floor tier (`pulls[regime][tier]`): from the log's
    /// adaptive notes for the engine strategies, from the table for the oracle; empty
    /// for random (its tiers are models).
    pub pulls: Vec<Vec<u64>>,
    /// The anchor of its gate directory.
    pub anchor: WalAnchor,
    /// Records in its log, as `verify_dir` counted them.
    pub records: u64,
    /// Adaptive decisions `verify_dir` re-derived (every request, for the engine
    /// strategies).
    pub adaptive_decisions: u64,
    /// Engine snapshot records `verify_dir` checked.
    pub engine_snapshots: u64,
}

/// The hard limits of a request, checked on a decision without the kernel.
fn violates(catalog: &Catalog, job: &Job, decision: &calybris::kernel::KernelDecision) -> bool {
    if !decision.is_selection() {
        return false;
    }
    let regime = &REGIMES[job.regime];
    let (caps, providers) = catalog.masks[job.regime];
    let Some(m) = catalog
        .policy
        .models()
        .iter()
        .find(|m| m.model_id == decision.selected_model_id)
    else {
        return true;
    };
    m.enabled == 0
        || m.quality_bps < regime.min_quality_bps
        || m.capabilities & caps != caps
        || (1u64 << m.provider_id) & providers == 0
        || cost_of(m, job) != decision.estimated_cost_microunits
        || decision.estimated_cost_microunits > regime.budget_limit_microunits
}

/// The adaptive setup of a strategy the engine runs (static with exploration off,
/// epsilon-greedy, Thompson): eight regimes by label, two features (input and output
/// hundreds of tokens), one tier per floor level with uniform priors, reward feedback
/// on the catalog's cost bound; `None` for random and the oracle.
fn adaptive_setup(
    strategy: Strategy,
    seed: u64,
    catalog: &Catalog,
    table: &Table,
) -> Option<AdaptiveSetup> {
    let (policy, exploration_bps) = match strategy {
        Strategy::EpsilonGreedy => (
            AdaptivePolicy::EpsilonGreedy {
                epsilon_bps: EPSILON_BPS,
            },
            10_000,
        ),
        Strategy::Thompson => (
            AdaptivePolicy::Thompson {
                redraws: THOMPSON_REDRAWS,
            },
            10_000,
        ),
        // Exploration off: every decision is the static tier's, propensity 1.
        Strategy::Static => (
            AdaptivePolicy::Thompson {
                redraws: THOMPSON_REDRAWS,
            },
            0,
        ),
        Strategy::Random | Strategy::Oracle => return None,
    };
    let models = catalog.policy.models();
    Some(AdaptiveSetup {
        format_version: ADAPTIVE_FORMAT_VERSION,
        regimes: REGIMES
            .iter()
            .map(|r| AdaptiveRegime {
                label: r.label.to_owned(),
                domain: 5,
                custom_floor_bps: 0,
            })
            .collect(),
        features: 2,
        // The floor is the tier's: the engine's own calibrated floor is pinned at 0.
        floor_min_bps: 0,
        floor_max_bps: 0,
        step_bps: 0,
        min_observations: 8,
        fallback: 7,
        priors: vec![PRIOR; table.tiers.len()],
        policy,
        exploration_bps,
        key: engine_key(seed),
        tiers: table
            .tiers
            .iter()
            .map(|&arm| {
                let level = catalog.floors[arm - table.models];
                AdaptiveTier {
                    floor_bps: level,
                    requested_model_id: Some(floor_model(models, level).model_id),
                }
            })
            .collect(),
        static_tier: table.tier_of(table.static_arm as usize),
        snapshot_every_updates: SNAPSHOT_EVERY_UPDATES,
        feedback: AdaptiveFeedback::Reward {
            cost_bound_bps: catalog.cost_bound_bps,
            observations: OBSERVATIONS,
        },
    })
}

/// The engine key of a run: the seed, spread over 32 bytes.
fn engine_key(seed: u64) -> [u8; 32] {
    let mut rng = SplitMix64::new(seed ^ 0xE4_61AE);
    let mut key = [0u8; 32];
    for chunk in key.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
    }
    key
}

fn clock() -> u64 {
    CLOCK_UNIX_MS
}

/// The random baseline's tier for request `i`: a uniform model tier among those the
/// kernel admits.
fn random_arm(table: &Table, i: usize, job: &Job) -> usize {
    let eligible = table.eligible[i];
    let count = u64::from(eligible.count_ones());
    if count == 0 {
        return 0;
    }
    let mut k = job.u_random % count;
    for bit in 0..table.models {
        if eligible & (1 << bit) != 0 {
            if k == 0 {
                return bit;
            }
            k -= 1;
        }
    }
    0
}

/// Runs one strategy into `dir/<name>`: the engine strategies through
/// `Gate::decide_adaptive` (the gate's engine draws the tier, logs its note and learns
/// from the outcome record), the others through `Gate::decide_with` under their tier.
fn run_strategy(
    strategy: Strategy,
    seed: u64,
    dir: &Path,
    catalog: &Catalog,
    jobs: &[Job],
    table: &Table,
) -> Result<StrategyRun, SimulateError> {
    let gate_dir = dir.join(strategy.name());
    let setup = adaptive_setup(strategy, seed, catalog, table);
    let mut config = GateConfig::new(&gate_dir, catalog.policy.clone())
        .policy_names(catalog.names.clone())
        .clock(clock)
        .tenant(TENANT, TENANT_BUDGET_MICROUNITS);
    if let Some(setup) = &setup {
        config = config.adaptive(setup.clone());
    }
    let gate = Gate::open(config)?;
    let n = jobs.len() as u64;
    let stride = (n / CURVE_POINTS).max(1);
    let window_start = n.saturating_sub(LAST_WINDOW);
    let mut run = StrategyRun {
        strategy,
        regret_microunits: 0.0,
        last_window_regret_per_request: 0.0,
        expected_reward_microunits: 0.0,
        realised_reward_microunits: 0,
        cost_microunits: 0,
        successes: 0,
        expected_successes: 0.0,
        rejected: 0,
        violations: 0,
        curve: vec![(0, 0.0)],
        regime_regret: vec![0.0; REGIMES.len()],
        pulls: Vec::new(),
        anchor: WalAnchor {
            next_sequence: 0,
            head_hash: [0; 32],
        },
        records: 0,
        adaptive_decisions: 0,
        engine_snapshots: 0,
    };
    let mut window_regret = 0.0;
    for (i, job) in jobs.iter().enumerate() {
        let sequence = i as u64;
        let regime = &REGIMES[job.regime];
        let features = [
            i32::try_from(job.input_tokens / 100).unwrap_or(i32::MAX),
            i32::try_from(job.output_tokens / 100).unwrap_or(i32::MAX),
        ];
        let mut request_id = [0u8; 16];
        request_id[8..].copy_from_slice(&sequence.to_be_bytes());
        let caller = CallerMeta {
            request_id,
            recorded_at_unix_ms: CLOCK_UNIX_MS,
        };
        // The engine strategies' tier is the engine's (read back from the log after
        // the run); the others' is known here.
        let (admission, arm) = if setup.is_some() {
            // The caller's request is floor tier 0 (level 0): the regime's own limits.
            let input = tier_input(catalog, job, sequence, table.models);
            let request = AdaptiveRequest {
                label: Some(regime.label),
                features: &features,
            };
            (gate.decide_adaptive(TENANT, input, caller, request)?, None)
        } else {
            let arm = match strategy {
                Strategy::Random => random_arm(table, i, job),
                _ => table.oracle[i].0 as usize,
            };
            let input = tier_input(catalog, job, sequence, arm);
            (gate.decide_with(TENANT, input, caller)?, Some(arm))
        };
        let decision = *admission.decision();
        if violates(catalog, job, &decision) {
            run.violations += 1;
        }
        let selected = if decision.is_selection() {
            index_of(catalog, decision.selected_model_id)
        } else {
            None
        };
        let cost = if decision.is_selection() {
            decision.estimated_cost_microunits
        } else {
            0
        };
        let got = TierOutcome {
            model: selected,
            cost,
        };
        if let Some(arm) = arm {
            check_tier(table, i, arm, got)?;
        }
        let success = match selected {
            Some(m) => {
                let model = &catalog.policy.models()[usize::from(m)];
                let (num, den) = success_fraction(model.quality_bps, regime.ease_centi);
                u128::from(job.u_success) * den < num * UNIT_53
            }
            None => false,
        };
        let value = if success { regime.value_microunits } else { 0 };
        let reward =
            i64::try_from(value).unwrap_or(i64::MAX) - i64::try_from(cost).unwrap_or(i64::MAX);
        let decision_ref = admission.decision_ref();
        if admission.is_admitted() {
            let settled = gate.settle(admission, cost)?;
            run.cost_microunits += u128::from(settled.committed_microunits);
        } else {
            run.rejected += 1;
            drop(admission);
        }
        // The engine learns from this record (durable at `close`, which waits for
        // every record before it).
        let _ticket = gate.record_outcome(
            decision_ref,
            Outcome {
                reward_microunits: reward,
                success,
                latency_ms: 0,
                detail: Vec::new(),
            },
        )?;
        if success {
            run.successes += 1;
        }
        if let Some(m) = selected {
            run.expected_successes += table.p[usize::from(m) * REGIMES.len() + job.regime];
        }
        run.realised_reward_microunits += i128::from(reward);
        let expected_reward = table.expected_reward(job, got);
        run.expected_reward_microunits += expected_reward;
        let regret = table.oracle[i].1 - expected_reward;
        run.regret_microunits += regret;
        run.regime_regret[job.regime] += regret;
        if sequence >= window_start {
            window_regret += regret;
        }
        if (sequence + 1).is_multiple_of(stride) || sequence + 1 == n {
            run.curve.push((sequence + 1, run.regret_microunits));
        }
    }
    run.last_window_regret_per_request = window_regret / (n - window_start).max(1) as f64;
    run.anchor = gate.close()?;
    let report = crate::gate::verify(&Target {
        path: gate_dir.clone(),
        key: None,
        anchor: Some(run.anchor),
        start_anchor: None,
    });
    if report.finding.is_some() {
        return Err(SimulateError::Check(format!(
            "{}: {}",
            gate_dir.display(),
            report.line()
        )));
    }
    run.records = report.counts.records;
    if let Some(gate_summary) = &report.gate {
        run.adaptive_decisions = gate_summary.counts.adaptive_decisions;
        run.engine_snapshots = gate_summary.counts.engine_snapshots;
    }
    run.pulls = if setup.is_some() {
        if run.adaptive_decisions != n {
            return Err(SimulateError::Check(format!(
                "{}: {} adaptive decisions verified, {n} routed",
                gate_dir.display(),
                run.adaptive_decisions
            )));
        }
        engine_pulls(&gate_dir, run.anchor, catalog, jobs, table)?
    } else if strategy == Strategy::Oracle {
        let mut pulls = vec![vec![0u64; table.tiers.len()]; REGIMES.len()];
        for (job, &(arm, _)) in jobs.iter().zip(&table.oracle) {
            pulls[job.regime][table.tier_of(arm as usize) as usize] += 1;
        }
        pulls
    } else {
        Vec::new()
    };
    Ok(run)
}

/// Whether the gate decided request `i` as the table says for tier `arm`.
fn check_tier(table: &Table, i: usize, arm: usize, got: TierOutcome) -> Result<(), SimulateError> {
    let expected = table.outcome(i, arm);
    if got != expected {
        return Err(SimulateError::Check(format!(
            "request {i}: the gate selected {:?} at {} under tier {arm}, the table says {:?} at {}",
            got.model, got.cost, expected.model, expected.cost
        )));
    }
    Ok(())
}

/// Reads a verified engine log back: every decision's adaptive note (its regime must
/// be the request's, and the kernel's selection under its tier the table's), counted
/// per regime and tier.
fn engine_pulls(
    gate_dir: &Path,
    anchor: WalAnchor,
    catalog: &Catalog,
    jobs: &[Job],
    table: &Table,
) -> Result<Vec<Vec<u64>>, SimulateError> {
    let log = gate_dir.join(LOG_DIR);
    let read_error = |e: WalError| SimulateError::Check(format!("{}: {e}", log.display()));
    let mut reader =
        SegmentedReader::<GateRecord>::open(&log, None, Some(anchor)).map_err(read_error)?;
    let mut pulls = vec![vec![0u64; table.tiers.len()]; REGIMES.len()];
    while let Some(entry) = reader.next_entry().map_err(read_error)? {
        let GateRecord::Decision(record) = entry.record else {
            continue;
        };
        let i = usize::try_from(record.audit.input.request_sequence).unwrap_or(usize::MAX);
        let (Some(job), Some(note)) = (jobs.get(i), record.adaptive.as_ref()) else {
            return Err(SimulateError::Check(format!(
                "{}: record {} is not an adaptive decision of a routed request",
                log.display(),
                entry.sequence
            )));
        };
        let tier = note.tier as usize;
        if note.regime as usize != job.regime || tier >= table.tiers.len() {
            return Err(SimulateError::Check(format!(
                "{}: record {}: regime {} tier {tier}, the request's regime is {}",
                log.display(),
                entry.sequence,
                note.regime,
                job.regime
            )));
        }
        let decision = &record.audit.decision;
        let got = if decision.is_selection() {
            TierOutcome {
                model: index_of(catalog, decision.selected_model_id),
                cost: decision.estimated_cost_microunits,
            }
        } else {
            TierOutcome {
                model: None,
                cost: 0,
            }
        };
        check_tier(table, i, table.tiers[tier], got)?;
        pulls[job.regime][tier] += 1;
    }
    Ok(pulls)
}

/// One point of the cost–quality frontier: mean cost per request (microunits) and
/// expected success rate.
pub type FrontierPoint = (f64, f64);

/// The closed-form cost–quality frontier: for each trade-off weight `k`, every request
/// runs the tier maximising `k·value·p − cost`.
fn frontier(table: &Table, jobs: &[Job]) -> Vec<FrontierPoint> {
    let n = jobs.len().max(1) as f64;
    (-24..=40)
        .map(|j| {
            let k = 2f64.powf(f64::from(j) / 4.0);
            let (mut cost, mut success) = (0.0, 0.0);
            for (i, job) in jobs.iter().enumerate() {
                let mut best = (f64::NEG_INFINITY, 0.0, 0.0);
                for arm in 0..table.arms {
                    let o = table.outcome(i, arm);
                    let Some(m) = o.model else { continue };
                    let p = table.p[usize::from(m) * REGIMES.len() + job.regime];
                    let score = k * REGIMES[job.regime].value_microunits as f64 * p - o.cost as f64;
                    if score > best.0 {
                        best = (score, o.cost as f64, p);
                    }
                }
                if best.0 > f64::NEG_INFINITY {
                    cost += best.1;
                    success += best.2;
                }
            }
            (cost / n, success / n)
        })
        .collect()
}

/// Always the best quality: every request runs the eligible tier of highest success
/// probability (the cheaper on ties). Mean cost and expected success rate.
fn always_best(table: &Table, jobs: &[Job]) -> FrontierPoint {
    let n = jobs.len().max(1) as f64;
    let (mut cost, mut success) = (0.0, 0.0);
    for (i, job) in jobs.iter().enumerate() {
        let mut best: Option<(f64, u64)> = None;
        for arm in 0..table.arms {
            let o = table.outcome(i, arm);
            let Some(m) = o.model else { continue };
            let p = table.p[usize::from(m) * REGIMES.len() + job.regime];
            if best.is_none_or(|(bp, bc)| p > bp || (p == bp && o.cost < bc)) {
                best = Some((p, o.cost));
            }
        }
        if let Some((p, c)) = best {
            success += p;
            cost += c as f64;
        }
    }
    (cost / n, success / n)
}

/// The lowest mean cost on the frontier that reaches `target` success (linear
/// interpolation between frontier points).
fn cost_at(frontier: &[FrontierPoint], target: f64) -> Option<f64> {
    let mut points = frontier.to_vec();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut previous: Option<FrontierPoint> = None;
    for &(cost, success) in &points {
        if success >= target {
            return Some(match previous {
                Some((c0, s0)) if success > s0 => c0 + (cost - c0) * (target - s0) / (success - s0),
                _ => cost,
            });
        }
        if previous.is_none_or(|(_, s)| success > s) {
            previous = Some((cost, success));
        }
    }
    None
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Requests routed.
    pub requests: u64,
    /// The seed.
    pub seed: u64,
    /// Tiers: one per catalog model, then the floor tiers.
    pub tiers: usize,
    /// Catalog models (the model tiers).
    pub models: usize,
    /// The static strategy's tier (its model's name).
    pub static_tier: String,
    /// The oracle's expected reward, in microunits.
    pub oracle_reward_microunits: f64,
    /// The per-request bound (each request's best tier of all), in microunits.
    pub per_request_oracle_microunits: f64,
    /// The oracle's expected reward per request over the last window.
    pub oracle_last_window_per_request: f64,
    /// Always the best quality: mean cost per request and expected success rate.
    pub always_best: FrontierPoint,
    /// The closed-form frontier.
    pub frontier: Vec<FrontierPoint>,
    /// The frontier's mean cost at 95 % of always-the-best quality.
    pub cost_at_95: Option<f64>,
    /// Each strategy, in [`Strategy::ALL`] order.
    pub runs: Vec<StrategyRun>,
    /// The floor tiers' levels, in bps (the learners' arms, in order).
    pub floors: Vec<u16>,
    /// Per regime (in [`REGIMES`] order): its requests and each floor tier's mean
    /// expected reward per request (closed form), in microunits.
    pub regimes: Vec<(u64, Vec<f64>)>,
    /// Wall time of the strategies (routing and verification).
    pub elapsed: Duration,
}

impl Summary {
    fn run(&self, strategy: Strategy) -> Option<&StrategyRun> {
        self.runs.iter().find(|r| r.strategy == strategy)
    }

    /// The targets of the issue: (name, met, figure).
    #[must_use]
    pub fn targets(&self) -> Vec<(&'static str, bool, String)> {
        let regret = |s| self.run(s).map_or(f64::NAN, |r| r.regret_microunits);
        let ts = regret(Strategy::Thompson);
        let eg = regret(Strategy::EpsilonGreedy);
        let random = regret(Strategy::Random);
        let last = self
            .run(Strategy::Thompson)
            .map_or(f64::NAN, |r| r.last_window_regret_per_request);
        let violations: u64 = self.runs.iter().map(|r| r.violations).sum();
        vec![
            (
                "Thompson regret <= 1/3 of epsilon-greedy's",
                ts <= eg / 3.0,
                format!("{:.3}", ts / eg),
            ),
            (
                "Thompson regret <= 10 % of random's",
                ts <= random / 10.0,
                format!("{:.3}", ts / random),
            ),
            (
                "Thompson per-request regret, last 10,000 <= 2 % of the oracle's reward",
                last <= 0.02 * self.oracle_last_window_per_request,
                format!("{:.4}", last / self.oracle_last_window_per_request),
            ),
            (
                "zero hard-gate violations",
                violations == 0,
                violations.to_string(),
            ),
        ]
    }
}

/// Runs the whole simulation (no printing); writes the gate directories, the plots and
/// `summary.json` under `options.dir`.
///
/// # Errors
/// Every [`SimulateError`].
pub fn simulate(options: &Options) -> Result<Summary, SimulateError> {
    if options.requests < MIN_REQUESTS || options.requests > MAX_REQUESTS {
        return Err(SimulateError::Requests(options.requests));
    }
    let dir = &options.dir;
    for strategy in Strategy::ALL {
        let log = dir.join(strategy.name()).join(LOG_DIR);
        if log.exists() {
            if !options.fresh {
                return Err(SimulateError::Exists(dir.clone()));
            }
            // Only the log directories the simulation itself creates are removed.
            std::fs::remove_dir_all(&log).map_err(|source| SimulateError::Io {
                path: log.clone(),
                source,
            })?;
        }
    }
    let catalog = load_catalog(&options.catalog)?;
    let jobs = workload(options.requests, options.seed);
    let table = build_table(&catalog, &jobs);
    let started = Instant::now();
    let results: Vec<Result<StrategyRun, SimulateError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = Strategy::ALL
            .iter()
            .map(|&strategy| {
                let (catalog, jobs, table) = (&catalog, &jobs, &table);
                scope.spawn(move || run_strategy(strategy, options.seed, dir, catalog, jobs, table))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(SimulateError::Worker)))
            .collect()
    });
    let runs = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let elapsed = started.elapsed();
    let n = jobs.len() as u64;
    let window_start = usize::try_from(n.saturating_sub(LAST_WINDOW)).unwrap_or(0);
    let oracle_last: f64 = table.oracle[window_start..].iter().map(|o| o.1).sum();
    let always_best = always_best(&table, &jobs);
    let frontier = frontier(&table, &jobs);
    let cost_at_95 = cost_at(&frontier, 0.95 * always_best.1);
    let static_arm = table.static_arm as usize;
    let static_tier = match catalog.policy.models().get(static_arm) {
        Some(m) => format!(
            "model tier {}",
            catalog.names.model_name(m.model_id).unwrap_or("?")
        ),
        None => format!(
            "floor tier {} bps",
            catalog.floors[static_arm - table.models]
        ),
    };
    let summary = Summary {
        requests: n,
        seed: options.seed,
        tiers: table.arms,
        models: table.models,
        static_tier,
        oracle_reward_microunits: table.oracle.iter().map(|o| o.1).sum(),
        per_request_oracle_microunits: table.per_request_oracle,
        oracle_last_window_per_request: oracle_last / (jobs.len() - window_start).max(1) as f64,
        always_best,
        frontier,
        cost_at_95,
        runs,
        floors: table
            .tiers
            .iter()
            .map(|&arm| catalog.floors[arm - table.models])
            .collect(),
        regimes: table.regimes.clone(),
        elapsed,
    };
    write_file(&dir.join("regret.svg"), &regret_svg(&summary))?;
    write_file(&dir.join("cost-quality.svg"), &cost_quality_svg(&summary))?;
    write_file(
        &dir.join("summary.json"),
        &format!("{}\n", summary_json(&summary)),
    )?;
    Ok(summary)
}

fn write_file(path: &Path, text: &str) -> Result<(), SimulateError> {
    std::fs::write(path, text).map_err(|source| SimulateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `calybris simulate`: runs, prints the summary (text or JSON, both with the seed),
/// returns the exit code.
pub fn run(options: &Options) -> u8 {
    match simulate(options) {
        Ok(summary) => {
            if options.json {
                stdout_text(&format!("{}\n", summary_json(&summary)));
            } else {
                stdout_text(&summary_text(&summary, &options.dir));
            }
            EXIT_OK
        }
        Err(error) => {
            stderr_line(&format!("ERROR {}: {error}", error.code()));
            EXIT_ERROR
        }
    }
}

fn units(microunits: f64) -> String {
    format!("{:.2}", microunits / 1e6)
}

fn summary_text(s: &Summary, dir: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Calybris routing simulation: {} requests over {} regimes, seed {:#x}; {} tiers ({} model tiers, {} floor tiers of which {} select differently: the learners' arms)",
        crate::human::grouped(s.requests),
        REGIMES.len(),
        s.seed,
        s.tiers,
        s.models,
        s.tiers - s.models,
        s.floors.len()
    );
    let _ = writeln!(
        out,
        "  static: {} (the best fixed floor in hindsight); oracle expected reward {} units (each request's best of all {} tiers: {} units)",
        s.static_tier,
        units(s.oracle_reward_microunits),
        s.tiers,
        units(s.per_request_oracle_microunits)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<15} {:>12} {:>14} {:>12} {:>10} {:>9} {:>10} {:>11}",
        "strategy", "regret", "last10k/req", "cost", "success", "rejected", "violations", "records"
    );
    for r in &s.runs {
        let _ = writeln!(
            out,
            "{:<15} {:>12} {:>14.1} {:>12} {:>9.2}% {:>9} {:>10} {:>11}",
            r.strategy.name(),
            units(r.regret_microunits),
            r.last_window_regret_per_request,
            units(r.cost_microunits as f64),
            100.0 * r.successes as f64 / s.requests.max(1) as f64,
            r.rejected,
            r.violations,
            r.records
        );
    }
    let _ = writeln!(
        out,
        "  regret and cost in units (10^6 microunits); last10k/req in microunits, oracle {:.1}",
        s.oracle_last_window_per_request
    );
    let _ = writeln!(out);
    let (best_cost, best_success) = s.always_best;
    let _ = writeln!(
        out,
        "Always the best quality: expected success {:.2}% at {:.1} microunits/request",
        100.0 * best_success,
        best_cost
    );
    match s.cost_at_95 {
        Some(c) => {
            let _ = writeln!(
                out,
                "  cost at 95% of that quality (closed-form frontier): {c:.1} microunits/request = {:.1}% of its cost",
                100.0 * c / best_cost
            );
        }
        None => {
            let _ = writeln!(out, "  the frontier does not reach 95% of that quality");
        }
    }
    for r in &s.runs {
        let _ = writeln!(
            out,
            "  {:<15} quality {:>6.1}% of always-the-best at {:>6.1}% of its cost",
            r.strategy.name(),
            100.0 * r.expected_successes / s.requests.max(1) as f64 / best_success,
            100.0 * r.cost_microunits as f64 / s.requests.max(1) as f64 / best_cost
        );
    }
    let _ = writeln!(out);
    regime_text(&mut out, s);
    let _ = writeln!(out);
    let _ = writeln!(out, "Targets:");
    for (name, met, figure) in s.targets() {
        let _ = writeln!(
            out,
            "  [{}] {name}: {figure}",
            if met { "met" } else { "MISSED" }
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Wrote {0}/regret.svg, {0}/cost-quality.svg, {0}/summary.json and one verified gate directory per strategy ({1}) in {2}",
        dir.display(),
        crate::human::duration_text(s.elapsed),
        Strategy::ALL.map(Strategy::name).join(", ")
    );
    for r in &s.runs {
        let _ = writeln!(
            out,
            "  calybris verify {} --anchor {}",
            dir.join(r.strategy.name()).display(),
            anchor_text(&r.anchor)
        );
    }
    out
}

/// Per regime: each floor tier's gap to the regime's best tier, and how often each
/// learner pulled it.
fn regime_text(out: &mut String, s: &Summary) {
    let levels: Vec<String> = s.floors.iter().map(u16::to_string).collect();
    let _ = writeln!(
        out,
        "Per regime, floor tiers {} bps: each tier's expected reward per request below the regime's best (microunits), and the requests each strategy sent to it",
        levels.join(" / ")
    );
    let learners = [Strategy::Thompson, Strategy::EpsilonGreedy];
    for (r, (requests, means)) in s.regimes.iter().enumerate() {
        let best = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let gaps: Vec<String> = means.iter().map(|m| format!("{:.0}", best - m)).collect();
        let _ = writeln!(
            out,
            "  {:<11} {:>7} requests; gaps [{}]",
            REGIMES[r].label,
            crate::human::grouped(*requests),
            gaps.join(", ")
        );
        for strategy in learners {
            if let Some(run) = s.run(strategy)
                && let Some(pulls) = run.pulls.get(r)
            {
                let counts: Vec<String> = pulls.iter().map(u64::to_string).collect();
                let _ = writeln!(
                    out,
                    "    {:<15} pulls [{}], regret {} units",
                    strategy.name(),
                    counts.join(", "),
                    units(run.regime_regret.get(r).copied().unwrap_or(0.0))
                );
            }
        }
    }
}

/// The summary as one JSON object (what `--json` prints and `summary.json` holds;
/// no wall time, so two runs write the same file).
#[must_use]
pub fn summary_json(s: &Summary) -> serde_json::Value {
    use serde_json::json;
    let runs: Vec<serde_json::Value> = s
        .runs
        .iter()
        .map(|r| {
            json!({
                "strategy": r.strategy.name(),
                "regret_microunits": r.regret_microunits,
                "last_window_regret_per_request_microunits": r.last_window_regret_per_request,
                "expected_reward_microunits": r.expected_reward_microunits,
                "realised_reward_microunits": r.realised_reward_microunits.to_string(),
                "cost_microunits": r.cost_microunits.to_string(),
                "successes": r.successes,
                "success_rate": r.successes as f64 / s.requests.max(1) as f64,
                "expected_success_rate": r.expected_successes / s.requests.max(1) as f64,
                "rejected": r.rejected,
                "violations": r.violations,
                "records": r.records,
                "anchor": anchor_text(&r.anchor),
                "adaptive_decisions": r.adaptive_decisions,
                "engine_snapshots": r.engine_snapshots,
                "regime_regret_microunits": r.regime_regret,
                "pulls": r.pulls,
            })
        })
        .collect();
    let targets: Vec<serde_json::Value> = s
        .targets()
        .into_iter()
        .map(|(name, met, figure)| json!({"target": name, "met": met, "figure": figure}))
        .collect();
    json!({
        "requests": s.requests,
        "seed": format!("{:#x}", s.seed),
        "regimes": REGIMES.len(),
        "tiers": s.tiers,
        "static_tier": s.static_tier,
        "oracle_reward_microunits": s.oracle_reward_microunits,
        "per_request_oracle_microunits": s.per_request_oracle_microunits,
        "oracle_last_window_per_request_microunits": s.oracle_last_window_per_request,
        "always_best": {"cost_per_request_microunits": s.always_best.0, "success_rate": s.always_best.1},
        "cost_at_95_per_request_microunits": s.cost_at_95,
        "floor_tiers_bps": s.floors,
        "regimes": s.regimes.iter().enumerate().map(|(r, (requests, means))| json!({
            "regime": REGIMES[r].label,
            "requests": requests,
            "tier_mean_expected_reward_microunits": means,
        })).collect::<Vec<_>>(),
        "strategies": runs,
        "targets": targets,
    })
}

fn svg_error(e: impl std::fmt::Debug) -> String {
    format!("<!-- plot failed: {e:?} -->")
}

/// Cumulative regret per strategy against requests routed.
fn regret_svg(s: &Summary) -> String {
    use plotters::prelude::*;
    let mut text = String::new();
    let result = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut text, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let y_max = s
            .runs
            .iter()
            .map(|r| r.regret_microunits / 1e6)
            .fold(0.0f64, f64::max)
            .max(1e-6)
            * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Cumulative regret, {} requests (seed {:#x})",
                    s.requests, s.seed
                ),
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..s.requests as f64, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("requests routed")
            .y_desc("cumulative regret (units)")
            .draw()?;
        for r in &s.runs {
            let colour = r.strategy.colour();
            chart
                .draw_series(LineSeries::new(
                    r.curve.iter().map(|&(x, y)| (x as f64, y / 1e6)),
                    colour.stroke_width(2),
                ))?
                .label(r.strategy.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    match result {
        Ok(()) => text,
        Err(e) => svg_error(e),
    }
}

/// Cost against quality: the closed-form frontier, always-the-best, and each strategy.
fn cost_quality_svg(s: &Summary) -> String {
    use plotters::prelude::*;
    let n = s.requests.max(1) as f64;
    let mut text = String::new();
    let result = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut text, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let x_max = s
            .frontier
            .iter()
            .map(|p| p.0)
            .chain(s.runs.iter().map(|r| r.cost_microunits as f64 / n))
            .chain([s.always_best.0])
            .fold(0.0f64, f64::max)
            * 1.05
            + 1.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Cost vs quality (expected success rate)",
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("mean cost per request (microunits)")
            .y_desc("success rate (%)")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                s.frontier.iter().map(|&(c, q)| (c, 100.0 * q)),
                BLACK.stroke_width(1),
            ))?
            .label("closed-form frontier")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        let best = s.always_best;
        chart
            .draw_series([TriangleMarker::new(
                (best.0, 100.0 * best.1),
                7,
                BLACK.filled(),
            )])?
            .label("always the best quality")
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 5, BLACK.filled()));
        // The point RouteLLM reports: the frontier's cost at 95 % of that quality.
        if let Some(cost) = s.cost_at_95 {
            let point = (cost, 95.0 * best.1);
            chart
                .draw_series([Cross::new(point, 7, BLACK.stroke_width(2))])?
                .label(format!(
                    "95 % of its quality at {:.1} % of its cost",
                    100.0 * cost / best.0.max(f64::MIN_POSITIVE)
                ))
                .legend(|(x, y)| Cross::new((x + 10, y), 5, BLACK.stroke_width(2)));
        }
        for r in &s.runs {
            let colour = r.strategy.colour();
            let point = (
                r.cost_microunits as f64 / n,
                100.0 * r.expected_successes / n,
            );
            chart
                .draw_series([Circle::new(point, 6, colour.filled())])?
                .label(r.strategy.name())
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    match result {
        Ok(()) => text,
        Err(e) => svg_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_function_is_the_documented_fraction() {
        // q = 0.5, A = 1: odds 1, p = 1/2; A = 4: p = 4/5.
        let (n, d) = success_fraction(5_000, 100);
        assert_eq!(n * 2, d);
        let (n, d) = success_fraction(5_000, 400);
        assert_eq!(n * 5, d * 4);
        // Monotone in quality and in ease.
        assert!(success_probability(5_746, 120) > success_probability(5_073, 120));
        assert!(success_probability(3_000, 800) > success_probability(3_000, 200));
        assert_eq!(success_probability(0, 600), 0.0);
    }

    #[test]
    fn the_workload_is_seeded_and_covers_every_regime() {
        let a = workload(5_000, 7);
        let b = workload(5_000, 7);
        let c = workload(5_000, 8);
        let key = |j: &Job| (j.regime, j.input_tokens, j.output_tokens, j.u_success);
        assert!(a.iter().map(key).eq(b.iter().map(key)));
        assert!(!a.iter().map(key).eq(c.iter().map(key)));
        for r in 0..REGIMES.len() {
            assert!(a.iter().any(|j| j.regime == r), "regime {r}");
        }
        assert_eq!(REGIMES.iter().map(|r| r.share).sum::<u64>(), 100);
    }

    #[test]
    fn cost_at_interpolates_on_the_frontier() {
        let f = [(0.0, 0.1), (10.0, 0.5), (20.0, 0.9)];
        let c = cost_at(&f, 0.7).expect("reached");
        assert!((c - 15.0).abs() < 1e-9, "{c}");
        assert_eq!(cost_at(&f, 0.1), Some(0.0));
        assert_eq!(cost_at(&f, 0.95), None);
    }
}
