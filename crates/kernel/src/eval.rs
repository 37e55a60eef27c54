//! The one evaluation that `prescribe`, the trace, `explain` and `utility_for_model`
//! share, so that they cannot disagree.
//!
//! This is the scalar loop: the borrowed `PolicyView`, `explain`, catalogs of at most
//! 12 candidates and requests on the wide path run it, and it is the reference the
//! owned snapshot's structure-of-arrays evaluation (`soa.rs`, which reuses its request
//! set-up, ranking order and conclusion) is tested against.
//!
//! Layout of the hot loop: every candidate is first tested against the seven gates that
//! need no arithmetic, in gate order, stopping at the first it fails. Only a candidate
//! that passes all seven is priced. (A branch-free variant that priced every candidate
//! and built the failure mask without branches measured slower on the benchmark
//! workload: pricing costs more than the branches it saves.)
//! Pricing runs in `u64` when the request's figures and the policy's maxima prove that
//! no product can overflow (the common case), and in `u128` otherwise; the two paths
//! give the same value on every input, which the crate's tests check against a plain
//! reference implementation.

use crate::trace::RejectionHistogram;
use crate::types::{
    BPS_SQUARED, KernelAction, KernelDecision, KernelInput, KernelModel, KernelReason,
    MAX_PROVIDER_ID, NO_MODEL_INDEX, RESERVED_MODEL_ID, TOKENS_PER_PRICE_UNIT,
};
use core::borrow::Borrow;

/// The policy-wide scalars of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct PolicyParams {
    /// Version of the decision rules.
    pub policy_epoch: u64,
    /// Version of the catalog.
    pub catalog_epoch: u64,
    /// Requests with `risk_bps` at or above this are refused outright (`0..=10_000`).
    pub hard_risk_limit_bps: u16,
    /// Requests with `confidence_bps` below this are refused outright (`0..=10_000`).
    pub minimum_confidence_bps: u16,
    /// Scales the request's risk into a penalty on value (`0..=50_000`).
    pub risk_penalty_multiplier_bps: u16,
    /// Utility charged per millisecond of a candidate's p95 latency, in microunits.
    pub latency_penalty_microunits_per_ms: u64,
}

impl Default for PolicyParams {
    /// Epochs 0, a hard risk limit of 10_000 bps (only a request at 100 % risk is
    /// refused), no confidence floor, and no risk or latency penalty.
    fn default() -> Self {
        Self {
            policy_epoch: 0,
            catalog_epoch: 0,
            hard_risk_limit_bps: crate::MAX_BPS,
            minimum_confidence_bps: 0,
            risk_penalty_multiplier_bps: 0,
            latency_penalty_microunits_per_ms: 0,
        }
    }
}

/// Gate numbers, in evaluation order; also the bit of a gate in a failure mask and the
/// slot of its counter.
pub(crate) mod gate {
    pub(crate) const DISABLED: u32 = 0;
    pub(crate) const QUALITY: u32 = 1;
    pub(crate) const LATENCY: u32 = 2;
    pub(crate) const CAPABILITY: u32 = 3;
    pub(crate) const PROVIDER: u32 = 4;
    pub(crate) const REGION: u32 = 5;
    pub(crate) const RISK_CEILING: u32 = 6;
    pub(crate) const BUDGET: u32 = 7;
    pub(crate) const UTILITY: u32 = 8;
    /// How many gates (and counters) there are.
    pub(crate) const COUNT: usize = 9;
}

/// A candidate as the hot loop reads it: the fields it compares, plus what can be
/// derived once per policy (the provider's mask bit and the exact latency penalty).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    /// `p95_latency_ms * latency_penalty_microunits_per_ms`, saturated; exact whenever
    /// the policy's [`Bounds::latency_penalty_fits`] holds.
    pub(crate) latency_penalty: u64,
    pub(crate) capabilities: u64,
    /// `1 << provider_id`, or 0 when the provider cannot be represented in a mask.
    pub(crate) provider_bit: u64,
    pub(crate) region_mask: u64,
    pub(crate) input_rate: u64,
    pub(crate) output_rate: u64,
    pub(crate) model_id: u32,
    pub(crate) p95_latency_ms: u32,
    pub(crate) quality_bps: u16,
    pub(crate) risk_ceiling_bps: u16,
    pub(crate) enabled: bool,
}

impl Candidate {
    #[inline(always)]
    pub(crate) fn compile(model: &KernelModel, latency_penalty_microunits_per_ms: u64) -> Self {
        let provider_bit = if model.provider_id <= MAX_PROVIDER_ID {
            1u64 << model.provider_id
        } else {
            0
        };
        let compiled = Self {
            latency_penalty: u64::from(model.p95_latency_ms)
                .saturating_mul(latency_penalty_microunits_per_ms),
            capabilities: model.capabilities,
            provider_bit,
            region_mask: model.region_mask,
            input_rate: model.input_cost_microunits_per_million_tokens,
            output_rate: model.output_cost_microunits_per_million_tokens,
            model_id: model.model_id,
            p95_latency_ms: model.p95_latency_ms,
            quality_bps: model.quality_bps,
            risk_ceiling_bps: model.risk_ceiling_bps,
            // Validation guarantees 0 or 1; any other value counts as disabled, the
            // conservative reading.
            enabled: model.enabled == 1,
        };
        // Postconditions: at most one provider bit, and an exact penalty when it fits.
        debug_assert!(compiled.provider_bit.count_ones() <= 1);
        debug_assert!(
            u128::from(compiled.latency_penalty)
                == (u128::from(model.p95_latency_ms)
                    * u128::from(latency_penalty_microunits_per_ms))
                .min(u128::from(u64::MAX))
        );
        compiled
    }
}

/// Per-policy maxima that decide, per request, whether `u64` pricing is exact, and the
/// limits derived from them once per policy, so that the per-request proof is a few
/// comparisons instead of wide multiplications.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) max_input_rate: u64,
    pub(crate) max_output_rate: u64,
    pub(crate) max_quality_bps: u16,
    /// Every candidate's latency penalty is below [`NARROW_TERM_LIMIT`].
    pub(crate) latency_penalty_fits: bool,
    /// The most input tokens for which `tokens * max_input_rate <= NARROW_PRICE_MAX`.
    pub(crate) narrow_input_tokens: u64,
    /// The same for output tokens and `max_output_rate`.
    pub(crate) narrow_output_tokens: u64,
    /// The largest `value * confidence` for which `value * confidence * max_quality_bps`
    /// fits in `u64`.
    pub(crate) narrow_value_confidence: u128,
}

/// Every term of a narrow utility is below this, so `qa - rp - cost - lp` is exact in
/// `i64` (the sum of three terms stays below 2^63) and never needs clamping.
pub(crate) const NARROW_TERM_LIMIT: u64 = 1 << 61;

/// The most `tokens` for which `tokens * rate <= NARROW_PRICE_MAX` (every count when
/// the rate is 0).
fn narrow_tokens(rate: u64) -> u64 {
    NARROW_PRICE_MAX.checked_div(rate).unwrap_or(u64::MAX)
}

impl Bounds {
    pub(crate) fn of(models: &[KernelModel], latency_penalty_microunits_per_ms: u64) -> Self {
        let max_p95 = models.iter().map(|m| m.p95_latency_ms).max().unwrap_or(0);
        let max_latency_penalty =
            u128::from(max_p95) * u128::from(latency_penalty_microunits_per_ms);
        let max_input_rate = models
            .iter()
            .map(|m| m.input_cost_microunits_per_million_tokens)
            .max()
            .unwrap_or(0);
        let max_output_rate = models
            .iter()
            .map(|m| m.output_cost_microunits_per_million_tokens)
            .max()
            .unwrap_or(0);
        let max_quality_bps = models.iter().map(|m| m.quality_bps).max().unwrap_or(0);
        let bounds = Self {
            max_input_rate,
            max_output_rate,
            max_quality_bps,
            latency_penalty_fits: max_latency_penalty < u128::from(NARROW_TERM_LIMIT),
            narrow_input_tokens: narrow_tokens(max_input_rate),
            narrow_output_tokens: narrow_tokens(max_output_rate),
            narrow_value_confidence: u128::from(u64::MAX)
                .checked_div(u128::from(max_quality_bps))
                .unwrap_or(u128::MAX),
        };
        // Postconditions: each limit is the largest value whose product stays in range.
        debug_assert!(
            u128::from(bounds.narrow_input_tokens) * u128::from(max_input_rate)
                <= u128::from(NARROW_PRICE_MAX)
        );
        debug_assert!(
            max_input_rate == 0
                || (u128::from(bounds.narrow_input_tokens) + 1) * u128::from(max_input_rate)
                    > u128::from(NARROW_PRICE_MAX)
        );
        debug_assert!(
            max_quality_bps == 0
                || bounds.narrow_value_confidence * u128::from(max_quality_bps)
                    <= u128::from(u64::MAX)
        );
        bounds
    }
}

/// Everything about a request that is the same for every candidate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    /// `max(business_value, 0) * confidence_bps`, exact.
    pub(crate) value_confidence: u128,
    /// The request's risk penalty, exact.
    pub(crate) risk_penalty: u128,
    /// The policy's latency penalty rate, for the exact wide path.
    pub(crate) latency_rate: u64,
    /// The latency cap, with "no limit" turned into `u32::MAX`, which no latency exceeds.
    pub(crate) latency_cap_ms: u32,
    pub(crate) input_tokens: u32,
    pub(crate) output_tokens: u32,
    pub(crate) budget_limit: u64,
    pub(crate) required_capabilities: u64,
    pub(crate) allowed_provider_mask: u64,
    pub(crate) required_region_mask: u64,
    pub(crate) minimum_quality_bps: u16,
    pub(crate) risk_bps: u16,
    /// Whether the `u64` pricing path is exact for every candidate of the policy.
    pub(crate) narrow: bool,
}

/// Exact `floor(x / d)` that takes the cheap `u64` division when `x` fits in 64 bits.
#[inline(always)]
fn div_floor(x: u128, d: u64) -> u128 {
    match u64::try_from(x) {
        Ok(small) => u128::from(small / d),
        Err(_) => x / u128::from(d),
    }
}

/// The largest product for which `(p + TOKENS_PER_PRICE_UNIT - 1)` cannot overflow.
const NARROW_PRICE_MAX: u64 = u64::MAX - (TOKENS_PER_PRICE_UNIT - 1);

impl Request {
    #[inline(always)]
    pub(crate) fn new(input: &KernelInput, params: &PolicyParams, bounds: &Bounds) -> Self {
        let value = input.business_value_microunits.max(0).unsigned_abs();
        let value_confidence = u128::from(value) * u128::from(input.confidence_bps);
        // `risk_bps * multiplier` is below 2^32, so the product is one wide multiply.
        let risk_factor = u64::from(input.risk_bps) * u64::from(params.risk_penalty_multiplier_bps);
        let risk_penalty = div_floor(u128::from(value) * u128::from(risk_factor), BPS_SQUARED);
        // One comparison per product against the policy's precomputed limits: the same
        // proof as multiplying by the policy's maxima, without the multiplications.
        let narrow = bounds.latency_penalty_fits
            & (value_confidence <= bounds.narrow_value_confidence)
            & (u64::from(input.input_tokens) <= bounds.narrow_input_tokens)
            & (u64::from(input.output_tokens) <= bounds.narrow_output_tokens)
            & (risk_penalty < u128::from(NARROW_TERM_LIMIT));
        debug_assert!(
            !narrow
                || (value_confidence * u128::from(bounds.max_quality_bps) <= u128::from(u64::MAX)
                    && u128::from(input.input_tokens) * u128::from(bounds.max_input_rate)
                        <= u128::from(NARROW_PRICE_MAX)
                    && u128::from(input.output_tokens) * u128::from(bounds.max_output_rate)
                        <= u128::from(NARROW_PRICE_MAX)),
            "the narrow path is proven exact for every candidate"
        );
        Self {
            value_confidence,
            risk_penalty,
            latency_rate: params.latency_penalty_microunits_per_ms,
            latency_cap_ms: if input.max_p95_latency_ms == 0 {
                u32::MAX
            } else {
                input.max_p95_latency_ms
            },
            input_tokens: input.input_tokens,
            output_tokens: input.output_tokens,
            budget_limit: input.budget_limit_microunits,
            required_capabilities: input.required_capabilities,
            allowed_provider_mask: input.allowed_provider_mask,
            required_region_mask: input.required_region_mask,
            minimum_quality_bps: input.minimum_quality_bps,
            risk_bps: input.risk_bps,
            narrow,
        }
    }

    /// The first of the seven gates that need no arithmetic that the candidate fails.
    #[inline(always)]
    fn first_cheap_failure(&self, c: &Candidate) -> Option<u32> {
        Some(if !c.enabled {
            gate::DISABLED
        } else if c.quality_bps < self.minimum_quality_bps {
            gate::QUALITY
        } else if c.p95_latency_ms > self.latency_cap_ms {
            gate::LATENCY
        } else if c.capabilities & self.required_capabilities != self.required_capabilities {
            gate::CAPABILITY
        } else if c.provider_bit & self.allowed_provider_mask == 0 {
            gate::PROVIDER
        } else if (self.required_region_mask != 0)
            & (c.region_mask & self.required_region_mask == 0)
        {
            gate::REGION
        } else if self.risk_bps > c.risk_ceiling_bps {
            gate::RISK_CEILING
        } else {
            return None;
        })
    }

    /// `ceil(in_tokens * in_rate / 1e6) + ceil(out_tokens * out_rate / 1e6)`, saturating.
    #[inline(always)]
    pub(crate) fn cost<const NARROW: bool>(&self, c: &Candidate) -> u64 {
        const ROUND_UP: u64 = TOKENS_PER_PRICE_UNIT - 1;
        if NARROW {
            // Proven by `Request::new`: both products are at most NARROW_PRICE_MAX, so
            // neither the rounding addition nor the sum of two quotients overflows.
            let input =
                (u64::from(self.input_tokens) * c.input_rate + ROUND_UP) / TOKENS_PER_PRICE_UNIT;
            let output =
                (u64::from(self.output_tokens) * c.output_rate + ROUND_UP) / TOKENS_PER_PRICE_UNIT;
            input + output
        } else {
            let input = div_floor(
                u128::from(self.input_tokens) * u128::from(c.input_rate) + u128::from(ROUND_UP),
                TOKENS_PER_PRICE_UNIT,
            );
            let output = div_floor(
                u128::from(self.output_tokens) * u128::from(c.output_rate) + u128::from(ROUND_UP),
                TOKENS_PER_PRICE_UNIT,
            );
            u64::try_from(input + output).unwrap_or(u64::MAX)
        }
    }

    /// `floor(value * confidence * quality / 1e8)`.
    #[inline(always)]
    pub(crate) fn quality_adjusted<const NARROW: bool>(&self, c: &Candidate) -> u128 {
        if NARROW {
            // Proven by `Request::new`: value * confidence * max_quality fits in u64.
            let vc = self.value_confidence as u64;
            u128::from(vc * u64::from(c.quality_bps) / BPS_SQUARED)
        } else {
            div_floor(
                self.value_confidence * u128::from(c.quality_bps),
                BPS_SQUARED,
            )
        }
    }

    /// Evaluates one candidate through every gate, in order.
    #[inline(always)]
    pub(crate) fn assess<const NARROW: bool>(&self, c: &Candidate) -> Assessment {
        if let Some(g) = self.first_cheap_failure(c) {
            return Assessment::Gated(g);
        }
        let cost = self.cost::<NARROW>(c);
        if cost > self.budget_limit {
            return Assessment::OverBudget(cost);
        }
        let quality_adjusted = self.quality_adjusted::<NARROW>(c);
        let utility = if NARROW {
            self.narrow_utility(c, quality_adjusted, cost)
        } else {
            // Every term is below 2^97, so the exact difference fits in i128.
            let exact = quality_adjusted.cast_signed()
                - self.risk_penalty.cast_signed()
                - i128::from(cost)
                - self.latency_penalty(c).cast_signed();
            clamp_to_i64(exact)
        };
        Assessment::Priced {
            quality_adjusted,
            cost,
            utility,
        }
    }

    /// The exact latency penalty of a candidate.
    #[inline(always)]
    fn latency_penalty(&self, c: &Candidate) -> u128 {
        u128::from(c.p95_latency_ms) * u128::from(self.latency_rate)
    }

    /// Utility on the narrow path: every term is below [`NARROW_TERM_LIMIT`] (proven by
    /// `Request::new`), so the `i64` arithmetic is exact and needs no clamp.
    #[inline(always)]
    pub(crate) fn narrow_utility(&self, c: &Candidate, quality_adjusted: u128, cost: u64) -> i64 {
        let term = |x: u64| x.cast_signed();
        term(quality_adjusted as u64)
            - term(self.risk_penalty as u64)
            - term(cost)
            - term(c.latency_penalty)
    }

    /// On the narrow path, for a candidate that passed the seven arithmetic-free gates:
    /// the slot it lands in (budget, utility, or [`ELIGIBLE_SLOT`]), its cost and its
    /// utility. Gate for gate the same outcome as [`Request::assess`].
    #[inline(always)]
    fn narrow_priced(&self, c: &Candidate) -> (u32, u64, i64) {
        let cost = self.cost::<true>(c);
        if cost > self.budget_limit {
            return (gate::BUDGET, cost, 0);
        }
        let utility = self.narrow_utility(c, self.quality_adjusted::<true>(c), cost);
        let slot = if utility <= 0 {
            gate::UTILITY
        } else {
            ELIGIBLE_SLOT
        };
        (slot, cost, utility)
    }

    /// The terms of a priced candidate, for explanations.
    #[cfg(feature = "alloc")]
    pub(crate) fn terms(
        &self,
        c: &Candidate,
        quality_adjusted: u128,
        cost: u64,
        utility: i64,
    ) -> crate::trace::UtilityTerms {
        crate::trace::UtilityTerms {
            quality_adjusted: quality_adjusted.cast_signed(),
            risk_penalty: self.risk_penalty.cast_signed(),
            cost_microunits: cost,
            latency_penalty: self.latency_penalty(c).cast_signed(),
            utility,
        }
    }
}

/// Clamps (never wraps) an exact utility into the `i64` range.
#[inline(always)]
fn clamp_to_i64(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x > 0 { i64::MAX } else { i64::MIN })
}

/// Where one candidate ended. Without `alloc` nothing reads the priced figures of a
/// rejected candidate (only `explain` reports them).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "alloc"), allow(dead_code))]
pub(crate) enum Assessment {
    /// Failed the gate with this number (one of the seven arithmetic-free gates).
    Gated(u32),
    /// Priced above the request's budget.
    OverBudget(u64),
    /// Priced and within budget; eligible when `utility > 0`.
    Priced {
        quality_adjusted: u128,
        cost: u64,
        utility: i64,
    },
}

/// Receives each candidate's assessment; `prescribe` passes one that does nothing, so
/// the compiler removes the calls.
pub(crate) trait Observer {
    /// Whether the observer needs every candidate's assessment; when it does not, the
    /// branch-free narrow loop runs instead.
    const DETAILED: bool;
    /// Whether the caller reads the per-gate counters of the evaluation (a trace does,
    /// a plain `prescribe` does not once a candidate is eligible).
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    const COUNTS: bool;
    fn observe(&mut self, index: usize, candidate: &Candidate, request: &Request, a: &Assessment);
}

/// The observer of the plain `prescribe` path.
pub(crate) struct Silent;

impl Observer for Silent {
    const DETAILED: bool = false;
    const COUNTS: bool = false;
    #[inline(always)]
    fn observe(&mut self, _: usize, _: &Candidate, _: &Request, _: &Assessment) {}
}

/// The observer of `prescribe_with_trace`: no per-candidate detail, every counter.
pub(crate) struct Counting;

impl Observer for Counting {
    const DETAILED: bool = false;
    const COUNTS: bool = true;
    #[inline(always)]
    fn observe(&mut self, _: usize, _: &Candidate, _: &Request, _: &Assessment) {}
}

/// A ranked, eligible candidate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ranked {
    pub(crate) utility: i64,
    pub(crate) cost: u64,
    pub(crate) quality_bps: u16,
    pub(crate) model_id: u32,
    pub(crate) index: u16,
}

impl Ranked {
    /// Stands for "nobody": every eligible candidate (utility >= 1) beats it, and its
    /// id and utility are what a decision reports when there is no counterfactual.
    pub(crate) const NOBODY: Self = Self {
        utility: 0,
        cost: u64::MAX,
        quality_bps: 0,
        model_id: RESERVED_MODEL_ID,
        index: NO_MODEL_INDEX,
    };

    /// Higher utility, then lower cost, then higher quality. Candidates arrive in
    /// ascending `model_id`, so a full tie keeps the earlier one: the lower id.
    #[inline(always)]
    pub(crate) fn beats(&self, other: &Self) -> bool {
        (self.utility, other.cost, self.quality_bps) > (other.utility, self.cost, other.quality_bps)
    }
}

/// The per-gate counters of one evaluation.
pub(crate) type Counts = [u32; gate::COUNT];

/// What one evaluation produced besides the decision.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tally {
    pub(crate) counts: Counts,
    pub(crate) evaluated: u16,
    pub(crate) eligible: u16,
}

impl Tally {
    pub(crate) fn histogram(&self) -> RejectionHistogram {
        let at = |g: u32| u16::try_from(self.counts[g as usize]).unwrap_or(u16::MAX);
        RejectionHistogram {
            disabled: at(gate::DISABLED),
            quality: at(gate::QUALITY),
            risk_ceiling: at(gate::RISK_CEILING),
            latency: at(gate::LATENCY),
            capability: at(gate::CAPABILITY),
            provider: at(gate::PROVIDER),
            region: at(gate::REGION),
            budget: at(gate::BUDGET),
            utility: at(gate::UTILITY),
        }
    }
}

/// The gates in the order that breaks ties for the dominant rejection reason: when two
/// gates turned away equally many candidates, the later one in this list wins.
const DOMINANCE_ORDER: [(u32, KernelReason); gate::COUNT] = [
    (gate::CAPABILITY, KernelReason::CapabilityConstraint),
    (gate::REGION, KernelReason::RegionConstraint),
    (gate::PROVIDER, KernelReason::ProviderConstraint),
    (gate::QUALITY, KernelReason::QualityConstraint),
    (gate::RISK_CEILING, KernelReason::RiskCeilingConstraint),
    (gate::LATENCY, KernelReason::LatencyConstraint),
    (gate::BUDGET, KernelReason::BudgetConstraint),
    (gate::UTILITY, KernelReason::NonPositiveUtility),
    (gate::DISABLED, KernelReason::NoEnabledModel),
];

fn dominant_reason(counts: &Counts) -> KernelReason {
    let mut best = (0u32, KernelReason::NoEnabledModel);
    for (g, reason) in DOMINANCE_ORDER {
        let count = counts[g as usize];
        if count >= best.0 {
            best = (count, reason);
        }
    }
    best.1
}

/// A rejection decision with the given reason and counters.
fn rejection(
    input: &KernelInput,
    params: &PolicyParams,
    reason: KernelReason,
    evaluated: u16,
) -> KernelDecision {
    KernelDecision {
        request_sequence: input.request_sequence,
        action: KernelAction::Reject,
        reason,
        selected_model_id: RESERVED_MODEL_ID,
        selected_model_index: NO_MODEL_INDEX,
        estimated_cost_microunits: 0,
        expected_utility_microunits: 0,
        counterfactual_model_id: RESERVED_MODEL_ID,
        counterfactual_utility_microunits: 0,
        evaluated_models: evaluated,
        eligible_models: 0,
        policy_epoch: params.policy_epoch,
        catalog_epoch: params.catalog_epoch,
    }
}

/// The request-level refusal of `input`, if any.
#[inline(always)]
pub(crate) fn request_refusal(input: &KernelInput, params: &PolicyParams) -> Option<KernelReason> {
    if input.risk_bps >= params.hard_risk_limit_bps {
        Some(KernelReason::RiskHardLimit)
    } else if input.confidence_bps < params.minimum_confidence_bps {
        Some(KernelReason::ConfidenceHardLimit)
    } else {
        None
    }
}

/// The decision and (empty) tally of a request refused before any candidate, if it is.
#[inline(always)]
pub(crate) fn refusal(
    input: &KernelInput,
    params: &PolicyParams,
) -> Option<(KernelDecision, Tally)> {
    let reason = request_refusal(input, params)?;
    let tally = Tally {
        counts: [0; gate::COUNT],
        evaluated: 0,
        eligible: 0,
    };
    Some((rejection(input, params, reason, 0), tally))
}

/// Evaluates `input` against a catalog given as candidates in ascending `model_id`.
#[inline(always)]
pub(crate) fn evaluate<I, C, O>(
    params: &PolicyParams,
    bounds: &Bounds,
    candidates: I,
    models: &[KernelModel],
    input: &KernelInput,
    observer: &mut O,
) -> (KernelDecision, Tally)
where
    I: Iterator<Item = C>,
    C: Borrow<Candidate>,
    O: Observer,
{
    if let Some(refused) = refusal(input, params) {
        return refused;
    }
    let request = Request::new(input, params, bounds);
    if request.narrow && !O::DETAILED {
        rank_narrow(params, &request, candidates, models, input)
    } else if request.narrow {
        rank::<true, I, C, O>(params, &request, candidates, input, observer)
    } else {
        rank::<false, I, C, O>(params, &request, candidates, input, observer)
    }
}

#[inline(always)]
pub(crate) fn rank<const NARROW: bool, I, C, O>(
    params: &PolicyParams,
    request: &Request,
    candidates: I,
    input: &KernelInput,
    observer: &mut O,
) -> (KernelDecision, Tally)
where
    I: Iterator<Item = C>,
    C: Borrow<Candidate>,
    O: Observer,
{
    let mut counts: Counts = [0; gate::COUNT];
    let mut best = Ranked::NOBODY;
    let mut second = Ranked::NOBODY;
    let mut evaluated: u32 = 0;
    let mut eligible: u32 = 0;
    for (index, c) in candidates.enumerate() {
        let c = c.borrow();
        evaluated += 1;
        let assessment = request.assess::<NARROW>(c);
        observer.observe(index, c, request, &assessment);
        let (utility, cost) = match assessment {
            Assessment::Gated(g) => {
                counts[g as usize] += 1;
                continue;
            }
            Assessment::OverBudget(_) => {
                counts[gate::BUDGET as usize] += 1;
                continue;
            }
            Assessment::Priced { utility, cost, .. } if utility > 0 => (utility, cost),
            Assessment::Priced { .. } => {
                counts[gate::UTILITY as usize] += 1;
                continue;
            }
        };
        eligible += 1;
        let ranked = Ranked {
            utility,
            cost,
            quality_bps: c.quality_bps,
            model_id: c.model_id,
            index: u16::try_from(index).unwrap_or(NO_MODEL_INDEX),
        };
        if ranked.beats(&best) {
            second = best;
            best = ranked;
        } else if ranked.beats(&second) {
            second = ranked;
        }
        // Invariant: the two places stay ordered.
        debug_assert!(second.index == NO_MODEL_INDEX || !second.beats(&best));
    }
    conclude(params, input, best, second, counts, evaluated, eligible)
}

/// The slot `narrow_priced` reports for a candidate that passed every gate.
const ELIGIBLE_SLOT: u32 = gate::COUNT as u32;

/// The narrow loop ranks every candidate by one `u128` key that encodes the whole order:
/// utility (higher first), then cost (lower first), then quality (higher first), then
/// index (lower first, which is the lower `model_id`). It fits because on the narrow
/// path a positive utility is below 2^38 (it is at most `u64::MAX / 1e8`), a cost is
/// below 2^46 (two quotients of at most `u64::MAX / 1e6`) and a quality below 2^14.
pub(crate) mod key {
    pub(super) const INDEX_BITS: u32 = 16;
    pub(super) const QUALITY_BITS: u32 = 14;
    pub(super) const COST_BITS: u32 = 46;
    pub(super) const UTILITY_BITS: u32 = 38;
    pub(super) const QUALITY_SHIFT: u32 = INDEX_BITS;
    pub(super) const COST_SHIFT: u32 = QUALITY_SHIFT + QUALITY_BITS;
    pub(super) const UTILITY_SHIFT: u32 = COST_SHIFT + COST_BITS;
    pub(crate) const COST_MAX: u64 = (1 << COST_BITS) - 1;
    pub(super) const INDEX_MAX: u64 = (1 << INDEX_BITS) - 1;
    const _: () = assert!(UTILITY_SHIFT + UTILITY_BITS <= 128);
}

/// The rank key of an eligible candidate; every eligible key is above 0, the key of
/// "nobody".
#[inline(always)]
pub(crate) fn rank_key(utility: i64, cost: u64, quality_bps: u16, index: u16) -> u128 {
    u128::from(utility.cast_unsigned()) << key::UTILITY_SHIFT
        | u128::from(key::COST_MAX - cost) << key::COST_SHIFT
        | u128::from(quality_bps) << key::QUALITY_SHIFT
        | u128::from(key::INDEX_MAX - u64::from(index))
}

/// The utility encoded in a rank key (0 for the empty key).
#[inline(always)]
pub(crate) fn utility_of(k: u128) -> i64 {
    ((k >> key::UTILITY_SHIFT) as u64).cast_signed()
}

/// Decodes a rank key; `Ranked::NOBODY` for the empty key.
pub(crate) fn ranked_of(k: u128, models: &[KernelModel]) -> Ranked {
    if k == 0 {
        return Ranked::NOBODY;
    }
    let field = |shift: u32, bits: u32| ((k >> shift) as u64) & ((1u64 << bits) - 1);
    let index = (key::INDEX_MAX - field(0, key::INDEX_BITS)) as u16;
    Ranked {
        utility: field(key::UTILITY_SHIFT, key::UTILITY_BITS).cast_signed(),
        cost: key::COST_MAX - field(key::COST_SHIFT, key::COST_BITS),
        quality_bps: field(key::QUALITY_SHIFT, key::QUALITY_BITS) as u16,
        model_id: models
            .get(usize::from(index))
            .map_or(RESERVED_MODEL_ID, |m| m.model_id),
        index,
    }
}

/// The hot loop of `prescribe` when `u64` arithmetic is proven exact: the seven
/// arithmetic-free gates are tested in order, only survivors are priced, and the
/// ranking keeps two integer keys. Same outcome, candidate for candidate, as `rank`.
#[inline(always)]
fn rank_narrow<I, C>(
    params: &PolicyParams,
    request: &Request,
    candidates: I,
    models: &[KernelModel],
    input: &KernelInput,
) -> (KernelDecision, Tally)
where
    I: Iterator<Item = C>,
    C: Borrow<Candidate>,
{
    let mut counts: Counts = [0; gate::COUNT];
    let mut eligible: u32 = 0;
    let mut best: u128 = 0;
    let mut second: u128 = 0;
    // The utility of `second` (0 for nobody; every eligible utility is above it).
    let mut second_utility: i64 = 0;
    for (index, c) in candidates.enumerate() {
        let c = c.borrow();
        if let Some(g) = request.first_cheap_failure(c) {
            counts[g as usize] += 1;
            continue;
        }
        let (slot, cost, utility) = request.narrow_priced(c);
        if slot != ELIGIBLE_SLOT {
            counts[slot as usize] += 1;
            continue;
        }
        eligible += 1;
        // A lower utility than the runner-up's can enter neither place; most candidates
        // stop here without building a key.
        if utility < second_utility {
            continue;
        }
        let index = u16::try_from(index).unwrap_or(NO_MODEL_INDEX);
        // Keys are unique (they end in the index), so plain comparisons give the order.
        let k = rank_key(utility, cost, c.quality_bps, index);
        if k > second {
            if k > best {
                second = best;
                best = k;
            } else {
                second = k;
            }
            second_utility = utility_of(second);
        }
    }
    // Every candidate of the catalog is evaluated; the catalog is at most 65,535 long.
    let evaluated = u32::try_from(models.len()).unwrap_or(u32::MAX);
    conclude(
        params,
        input,
        ranked_of(best, models),
        ranked_of(second, models),
        counts,
        evaluated,
        eligible,
    )
}

/// Turns the ranking and the counters into the decision.
#[inline(always)]
pub(crate) fn conclude(
    params: &PolicyParams,
    input: &KernelInput,
    best: Ranked,
    second: Ranked,
    counts: Counts,
    evaluated: u32,
    eligible: u32,
) -> (KernelDecision, Tally) {
    // Preconditions: the ranking is consistent with the counters.
    debug_assert!(eligible <= evaluated, "more eligible than evaluated");
    debug_assert_eq!(
        eligible == 0,
        best.index == NO_MODEL_INDEX,
        "a best iff eligible"
    );
    debug_assert!(eligible >= 2 || second.index == NO_MODEL_INDEX);
    debug_assert!(best.index == NO_MODEL_INDEX || best.utility > 0);
    debug_assert!(second.index == NO_MODEL_INDEX || !second.beats(&best));
    let tally = Tally {
        counts,
        evaluated: u16::try_from(evaluated).unwrap_or(u16::MAX),
        eligible: u16::try_from(eligible).unwrap_or(u16::MAX),
    };
    if eligible == 0 {
        let reason = dominant_reason(&counts);
        return (rejection(input, params, reason, tally.evaluated), tally);
    }
    let (action, reason) = if best.model_id == input.requested_model_id {
        (
            KernelAction::ExecuteRequested,
            KernelReason::RequestedModelMaximizesUtility,
        )
    } else {
        (
            KernelAction::Substitute,
            KernelReason::AlternativeMaximizesUtility,
        )
    };
    let decision = KernelDecision {
        request_sequence: input.request_sequence,
        action,
        reason,
        selected_model_id: best.model_id,
        selected_model_index: best.index,
        estimated_cost_microunits: best.cost,
        expected_utility_microunits: best.utility,
        counterfactual_model_id: second.model_id,
        counterfactual_utility_microunits: second.utility,
        evaluated_models: tally.evaluated,
        eligible_models: tally.eligible,
        policy_epoch: params.policy_epoch,
        catalog_epoch: params.catalog_epoch,
    };
    // Postconditions: a selection names a candidate and echoes the request and policy.
    debug_assert!(decision.is_selection() && decision.selected_model_id != RESERVED_MODEL_ID);
    debug_assert_eq!(decision.request_sequence, input.request_sequence);
    debug_assert!(decision.estimated_cost_microunits <= input.budget_limit_microunits);
    (decision, tally)
}

/// Assesses a single candidate the way `evaluate` would, for `utility_for_model`.
pub(crate) fn assess_one(
    params: &PolicyParams,
    bounds: &Bounds,
    candidate: &Candidate,
    input: &KernelInput,
) -> Option<(Request, Assessment)> {
    if request_refusal(input, params).is_some() {
        return None;
    }
    let request = Request::new(input, params, bounds);
    let assessment = if request.narrow {
        request.assess::<true>(candidate)
    } else {
        request.assess::<false>(candidate)
    };
    Some((request, assessment))
}
