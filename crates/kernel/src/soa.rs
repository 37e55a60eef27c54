//! The structure-of-arrays form of an owned policy's catalog, built once per policy, and
//! the mask evaluation of `prescribe` over it.
//!
//! The catalog, ordered cheapest first (see [`Index::new`]), is cut into blocks of 64
//! candidates; each lane records its candidate's catalog position. For every block the index holds what turns each of
//! the seven arithmetic-free gates into a few word operations per request, whatever the
//! number of candidates:
//! - disabled: one fixed mask;
//! - quality, latency, risk ceiling: the block's values sorted, with the mask of the
//!   first `k` sorted lanes for every `k`. The lanes a threshold turns away are a prefix
//!   (or, for latency, a suffix) of that order, so one branch-free binary search finds
//!   them;
//! - capability: for each bit, the lanes that lack it (a request fails the lanes that
//!   lack any of its required bits);
//! - provider: for each provider, its lanes (a request fails those of the providers it
//!   does not allow);
//! - region: for each bit, the lanes that serve it.
//!
//! Only the lanes that pass all seven are priced, one after the other, on the narrow
//! (`u64`) path. A request that needs the wide path, and `explain`, run the scalar loop
//! of [`crate::eval`], which stays the reference: the crate's tests compare both with a
//! plain implementation of the semantics on random policies.
//!
//! The per-gate counters, which only a trace or a rejection reads, are taken from the
//! masks by popcount, and only when needed: `prescribe` skips them once a candidate is
//! eligible.

use crate::eval::{
    self, Bounds, Candidate, Counts, Observer, PolicyParams, Ranked, Request, Tally, gate,
};
use crate::types::{
    BPS_SQUARED, KernelDecision, KernelInput, KernelModel, MAX_PROVIDER_ID, NO_MODEL_INDEX,
    TOKENS_PER_PRICE_UNIT,
};
use alloc::vec::Vec;

/// Candidates per block: one bit each of a `u64` mask.
pub(crate) const LANES: usize = 64;

/// The seven arithmetic-free gates, in evaluation order (their numbers in [`gate`]).
const CHEAP_GATES: usize = 7;
const _: () = assert!(gate::RISK_CEILING as usize == CHEAP_GATES - 1);

/// One threshold field of a block: its values in ascending order and, for every `k`, the
/// lanes holding the `k` smallest.
#[derive(Clone, Debug)]
struct Threshold<T> {
    /// Ascending; positions past the block's length hold the type's maximum.
    keys: [T; LANES],
    /// `prefix[k]`: the lanes of `keys[..k]`; every `k` past the length gives all lanes.
    prefix: [u64; LANES + 1],
    /// The block's largest value (`keys[len - 1]`; the padding for an empty block).
    last: T,
    /// The block has at most 32 lanes, so five halvings cover its keys.
    short: bool,
}

impl<T: Copy + Ord> Threshold<T> {
    fn new(values: &[T], pad: T) -> Self {
        debug_assert!(values.len() <= LANES, "a block holds at most 64 lanes");
        let mut order: [u8; LANES] = core::array::from_fn(|i| i as u8);
        let order = &mut order[..values.len()];
        order.sort_unstable_by_key(|&lane| values[usize::from(lane)]);
        let mut keys = [pad; LANES];
        let mut prefix = [0u64; LANES + 1];
        let mut mask = 0u64;
        for (k, &lane) in order.iter().enumerate() {
            keys[k] = values[usize::from(lane)];
            mask |= 1u64 << lane;
            prefix[k + 1] = mask;
        }
        for p in prefix.iter_mut().skip(values.len() + 1) {
            *p = mask;
        }
        debug_assert!(keys.windows(2).all(|w| w[0] <= w[1]), "keys are sorted");
        Self {
            keys,
            prefix,
            last: values.len().checked_sub(1).map_or(pad, |i| keys[i]),
            short: values.len() <= LANES / 2,
        }
    }

    /// The lanes whose value satisfies `holds`, a predicate that holds for a prefix of
    /// the ascending keys (padding included): a branch-free binary search, over 32 keys
    /// for a short block and 64 otherwise.
    #[inline(always)]
    fn leading(&self, holds: impl Fn(T) -> bool) -> u64 {
        // The common cases of a threshold that turns nobody away, or every lane, cost
        // one comparison each.
        if !holds(self.keys[0]) {
            return 0;
        }
        if holds(self.last) {
            // Every lane holds (`prefix[LANES]` is every lane in use).
            return self.prefix[LANES];
        }
        // From here the largest key fails, so no padding holds: the prefix ends inside
        // the block, and a search over the block's power-of-two span finds its end.
        let mut base = 0usize;
        let mut probe = |step: usize| {
            // Invariant: `holds` is true for every key below `base`.
            // Branch-free: the outcome of each probe is data, not control flow.
            let hit = holds(self.keys[(base + step - 1) % LANES]);
            base += core::hint::select_unpredictable(hit, step, 0);
        };
        // Unrolled into straight-line code; the branch is the same for every request.
        if !self.short {
            probe(32);
        }
        for step in [16, 8, 4, 2, 1] {
            probe(step);
        }
        let n = base + usize::from(holds(self.keys[base % LANES]));
        debug_assert!(n <= LANES);
        debug_assert!(!self.short || n <= LANES / 2);
        self.prefix[n.min(LANES)]
    }
}

/// Exact for a validated catalog: the lanes of every table bit in `bits`, OR-ed.
#[inline(always)]
fn union(table: &[u64; LANES], mut bits: u64) -> u64 {
    let mut mask = 0;
    while bits != 0 {
        mask |= table[bits.trailing_zeros() as usize % LANES];
        bits &= bits - 1;
    }
    mask
}

/// Up to 64 consecutive candidates of the catalog, as masks and sorted keys.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    /// One bit per lane in use.
    all: u64,
    disabled: u64,
    /// Lanes whose provider no mask bit can name (none in a validated catalog).
    unrepresentable: u64,
    /// The providers with at least one lane here.
    providers: u64,
    by_provider: [u64; LANES],
    /// The capability bits at least one lane lacks.
    lacked: u64,
    lacking: [u64; LANES],
    /// The region bits at least one lane serves.
    served: u64,
    serving: [u64; LANES],
    quality: Threshold<u16>,
    latency: Threshold<u32>,
    ceiling: Threshold<u16>,
    /// What pricing reads, lane by lane.
    prices: Prices,
    /// The lowest rates (and multipliers) of the block's lanes: since the cost grows
    /// with each rate, the cost of this pseudo-lane is at most any lane's.
    low: Corner,
}

/// The priced fields of a block's lanes, one array each, so the survivor loop indexes
/// them directly by lane.
#[derive(Clone, Debug)]
struct Prices {
    /// [`cost_multiplier`] of each rate (0 where it does not fit; the policy's limits
    /// then keep the reciprocal path off).
    input_multiplier: [u64; LANES],
    output_multiplier: [u64; LANES],
    input_rate: [u64; LANES],
    output_rate: [u64; LANES],
    /// As [`Candidate::latency_penalty`]: exact on the narrow path.
    latency_penalty: [u64; LANES],
    /// Each lane's position in the catalog (the lanes are in the index's order).
    position: [u16; LANES],
    quality: [u16; LANES],
}

/// The lowest (with `pick = min`) of each rate and multiplier over a block's lanes.
#[derive(Clone, Copy, Debug, Default)]
struct Corner {
    input_multiplier: u64,
    output_multiplier: u64,
    input_rate: u64,
    output_rate: u64,
}

impl Corner {
    fn of(compiled: &[Candidate], pick: fn(u64, u64) -> u64) -> Self {
        let field = |f: fn(&Candidate) -> u64| compiled.iter().map(f).reduce(pick).unwrap_or(0);
        Self {
            input_multiplier: field(|c| cost_multiplier(c.input_rate).unwrap_or(0)),
            output_multiplier: field(|c| cost_multiplier(c.output_rate).unwrap_or(0)),
            input_rate: field(|c| c.input_rate),
            output_rate: field(|c| c.output_rate),
        }
    }
}

impl Block {
    /// The block of the given candidates, at the given catalog positions.
    fn new(models: &[KernelModel], compiled: &[Candidate], positions: &[u16]) -> Self {
        debug_assert!(!models.is_empty() && models.len() <= LANES);
        debug_assert_eq!(models.len(), compiled.len());
        debug_assert_eq!(models.len(), positions.len());
        let mut b = Self {
            all: u64::MAX >> (LANES - models.len()),
            disabled: 0,
            unrepresentable: 0,
            providers: 0,
            by_provider: [0; LANES],
            lacked: 0,
            lacking: [0; LANES],
            served: 0,
            serving: [0; LANES],
            quality: Threshold::new(&[], u16::MAX),
            latency: Threshold::new(&[], u32::MAX),
            ceiling: Threshold::new(&[], u16::MAX),
            low: Corner::of(compiled, u64::min),
            prices: Prices {
                input_multiplier: [0; LANES],
                output_multiplier: [0; LANES],
                input_rate: [0; LANES],
                output_rate: [0; LANES],
                latency_penalty: [0; LANES],
                position: [0; LANES],
                quality: [0; LANES],
            },
        };
        b.prices.position[..positions.len()].copy_from_slice(positions);
        for (lane, c) in compiled.iter().enumerate() {
            b.prices.input_multiplier[lane] = cost_multiplier(c.input_rate).unwrap_or(0);
            b.prices.output_multiplier[lane] = cost_multiplier(c.output_rate).unwrap_or(0);
            b.prices.input_rate[lane] = c.input_rate;
            b.prices.output_rate[lane] = c.output_rate;
            b.prices.latency_penalty[lane] = c.latency_penalty;
            b.prices.quality[lane] = c.quality_bps;
        }
        let mut quality = [0u16; LANES];
        let mut latency = [0u32; LANES];
        let mut ceiling = [0u16; LANES];
        for (lane, m) in models.iter().enumerate() {
            let bit = 1u64 << lane;
            // The scalar loop reads any `enabled` other than 1 as disabled.
            if m.enabled != 1 {
                b.disabled |= bit;
            }
            if m.provider_id <= MAX_PROVIDER_ID {
                b.providers |= 1 << m.provider_id;
                b.by_provider[usize::from(m.provider_id)] |= bit;
            } else {
                b.unrepresentable |= bit;
            }
            for cap in 0..LANES {
                if m.capabilities & (1 << cap) == 0 {
                    b.lacking[cap] |= bit;
                    b.lacked |= 1 << cap;
                }
                if m.region_mask & (1 << cap) != 0 {
                    b.serving[cap] |= bit;
                    b.served |= 1 << cap;
                }
            }
            quality[lane] = m.quality_bps;
            latency[lane] = m.p95_latency_ms;
            ceiling[lane] = m.risk_ceiling_bps;
        }
        let n = models.len();
        b.quality = Threshold::new(&quality[..n], u16::MAX);
        b.latency = Threshold::new(&latency[..n], u32::MAX);
        b.ceiling = Threshold::new(&ceiling[..n], u16::MAX);
        b
    }

    /// For each of the seven arithmetic-free gates, the lanes that fail it (a lane may
    /// fail several; it counts under the first).
    #[inline(always)]
    fn failures(&self, r: &Request) -> [u64; CHEAP_GATES] {
        let quality = self.quality.leading(|q| q < r.minimum_quality_bps);
        let latency = self.all & !self.latency.leading(|l| l <= r.latency_cap_ms);
        let capability = union(&self.lacking, r.required_capabilities & self.lacked);
        let provider = self.unrepresentable
            | union(&self.by_provider, self.providers & !r.allowed_provider_mask);
        let region = if r.required_region_mask == 0 {
            0
        } else {
            self.all & !union(&self.serving, r.required_region_mask & self.served)
        };
        let risk = self.ceiling.leading(|c| c < r.risk_bps);
        [
            self.disabled,
            quality,
            latency,
            capability,
            provider,
            region,
            risk,
        ]
    }
}

/// Catalogs this small are faster through the scalar loop, whose per-candidate cost
/// undercuts the index's fixed per-request cost (about 400 instructions: the threshold
/// searches, the narrow proof, the reciprocal setup). Measured with callgrind on both
/// bench workloads: at 4 and 9 candidates the scalar loop wins (512 against 563, 380
/// against 548 instructions), at 22 the index (929 against about 1,400).
const SCALAR_MAX: usize = 12;

/// The fixed-point shift of the reciprocal pricing: a multiplier scaled by 2^40.
const SHIFT: u32 = 40;
/// `2^SHIFT / 1e6` rounded down: the most tokens the reciprocal cost is exact for.
const FIXED_TOKENS_MAX: u64 = (1 << SHIFT) / TOKENS_PER_PRICE_UNIT;
/// Added before the shift to turn the reciprocal floor into the exact ceiling.
const CEIL_BIAS: u64 = (1 << SHIFT) - FIXED_TOKENS_MAX;
/// Qualities below `2^SHIFT / 1e8` (about 10_995) are exact with a request's reciprocal
/// quality multiplier; validation caps them at 10_000.
const FIXED_QUALITY_MAX: u64 = (1 << SHIFT) / BPS_SQUARED;
const _: () = assert!(crate::types::MAX_BPS as u64 <= FIXED_QUALITY_MAX);

/// `ceil(rate * 2^SHIFT / 1e6)`, the per-candidate multiplier of the reciprocal cost, if
/// it fits in `u64`.
///
/// With `M` this multiplier, for every `tokens <= FIXED_TOKENS_MAX` with
/// `tokens * M + CEIL_BIAS < 2^64`:
/// `(tokens * M + CEIL_BIAS) >> SHIFT == ceil(tokens * rate / 1e6)`. Proof: write
/// `tokens * rate = q * 1e6 + f` and `M * 1e6 = rate * 2^SHIFT + d`, `0 <= d < 1e6`;
/// then `tokens * M = q * 2^SHIFT + R` with `R = (2^SHIFT * f + tokens * d) / 1e6`.
/// If `f == 0`, `R < tokens <= 2^SHIFT - CEIL_BIAS`, so the bias leaves the quotient
/// at `q`; if `f >= 1`, `2^SHIFT / 1e6 <= R < 2^SHIFT + tokens`, so with the bias it is
/// `q + 1`.
fn cost_multiplier(rate: u64) -> Option<u64> {
    let scaled = u128::from(rate) << SHIFT;
    u64::try_from(scaled.div_ceil(u128::from(TOKENS_PER_PRICE_UNIT))).ok()
}

/// `(tokens * multiplier + CEIL_BIAS) >> SHIFT`: the exact ceiling of `tokens * rate /
/// 1e6` under the conditions of [`cost_multiplier`].
#[inline(always)]
fn fixed_cost(tokens: u64, multiplier: u64) -> u64 {
    (tokens * multiplier + CEIL_BIAS) >> SHIFT
}

/// `ceil(value_confidence * 2^SHIFT / 1e8)` in `u64` arithmetic, if it fits: with it,
/// `(quality * M) >> SHIFT == floor(value_confidence * quality / 1e8)` for every
/// quality below [`FIXED_QUALITY_MAX`] (the rounding error of `M` adds less than
/// `quality / 2^SHIFT < 1e-8` to a quotient whose fraction is at most `1 - 1e-8`).
#[inline(always)]
fn quality_multiplier(value_confidence: u64) -> Option<u64> {
    // 1e8 = 2^8 * 390_625, so `x * 2^40 / 1e8 = x * 2^32 / 390_625`; split `x` at 1e8 so
    // that every step stays in 64 bits.
    let whole = value_confidence / BPS_SQUARED;
    let rest = value_confidence % BPS_SQUARED;
    let rest_scaled = (rest << 32).div_ceil(BPS_SQUARED >> 8);
    whole
        .checked_mul(1 << SHIFT)
        .and_then(|w| w.checked_add(rest_scaled))
}

/// The structure-of-arrays index of a policy's catalog: its blocks, and the per-policy
/// limits under which the reciprocal (multiply-and-shift) pricing is exact.
#[derive(Clone, Debug)]
pub(crate) struct Index {
    blocks: Vec<Block>,
    /// Requests with at most this many input tokens are priced by reciprocal (0 when a
    /// multiplier does not fit, which only the token count 0 then satisfies, exactly).
    fixed_input_tokens: u64,
    fixed_output_tokens: u64,
    /// The largest quality multiplier whose product with every quality fits in `u64`.
    fixed_quality_multiplier: u64,
}

impl Index {
    /// Builds the index of a catalog sorted by ascending `model_id`, and its compiled
    /// candidates in the same order.
    ///
    /// The index orders candidates cheapest first (by the sum of their two rates, then
    /// by catalog position), so that the survivor loop tends to meet the winners early:
    /// the runner-up's utility, below which nothing is ranked, rises sooner, and fewer
    /// survivors take the ranking branch. On the bench workload that is 3.4 instead of
    /// 4.9 entries a request at 22 candidates and 4.4 instead of 6.7 at 64. The order
    /// changes no result: the ranking compares catalog positions on a full tie.
    pub(crate) fn new(models: &[KernelModel], compiled: &[Candidate]) -> Self {
        debug_assert_eq!(models.len(), compiled.len());
        debug_assert!(models.len() <= usize::from(u16::MAX));
        let mut order: Vec<u16> = (0..models.len())
            .map(|i| u16::try_from(i).unwrap_or(u16::MAX))
            .collect();
        order.sort_unstable_by_key(|&i| {
            let c = &compiled[usize::from(i)];
            (c.input_rate.saturating_add(c.output_rate), i)
        });
        let ordered_models: Vec<KernelModel> =
            order.iter().map(|&i| models[usize::from(i)]).collect();
        let ordered: Vec<Candidate> = order.iter().map(|&i| compiled[usize::from(i)]).collect();
        let blocks = ordered_models
            .chunks(LANES)
            .zip(ordered.chunks(LANES))
            .zip(order.chunks(LANES))
            .map(|((m, c), p)| Block::new(m, c, p))
            .collect();
        let limit = |rate: fn(&KernelModel) -> u64| {
            let worst = models.iter().map(rate).max().unwrap_or(0);
            match cost_multiplier(worst) {
                Some(0) => FIXED_TOKENS_MAX,
                Some(m) => FIXED_TOKENS_MAX.min((u64::MAX - CEIL_BIAS) / m),
                None => 0,
            }
        };
        let max_quality = models.iter().map(|m| m.quality_bps).max().unwrap_or(0);
        Self {
            blocks,
            fixed_input_tokens: limit(|m| m.input_cost_microunits_per_million_tokens),
            fixed_output_tokens: limit(|m| m.output_cost_microunits_per_million_tokens),
            fixed_quality_multiplier: if u64::from(max_quality) > FIXED_QUALITY_MAX {
                0
            } else {
                u64::MAX
                    .checked_div(u64::from(max_quality))
                    .unwrap_or(u64::MAX)
            },
        }
    }
}

/// One of the two best candidates so far: its utility and its place in the index's
/// order (`64 * block + lane`).
#[derive(Clone, Copy, Debug)]
struct Place {
    utility: i64,
    slot: usize,
}

impl Place {
    /// Nobody: utility 0, which every eligible candidate (utility >= 1) beats.
    const EMPTY: Self = Self {
        utility: 0,
        slot: usize::MAX,
    };
}

/// The cost of lane `lane` of a block on the narrow path; `FIXED`: by reciprocal.
#[inline(always)]
fn price<const FIXED: bool>(p: &Prices, lane: usize, input_tokens: u64, output_tokens: u64) -> u64 {
    price_of::<FIXED>(
        [p.input_multiplier[lane], p.output_multiplier[lane]],
        [p.input_rate[lane], p.output_rate[lane]],
        [input_tokens, output_tokens],
    )
}

/// The narrow cost of given rates (and their multipliers) for given token counts.
#[inline(always)]
fn price_of<const FIXED: bool>(multipliers: [u64; 2], rates: [u64; 2], tokens: [u64; 2]) -> u64 {
    const ROUND_UP: u64 = TOKENS_PER_PRICE_UNIT - 1;
    if FIXED {
        fixed_cost(tokens[0], multipliers[0]) + fixed_cost(tokens[1], multipliers[1])
    } else {
        (tokens[0] * rates[0] + ROUND_UP) / TOKENS_PER_PRICE_UNIT
            + (tokens[1] * rates[1] + ROUND_UP) / TOKENS_PER_PRICE_UNIT
    }
}

/// What the block's bounds prove about all its survivors at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Nothing: price each.
    Open,
    /// Even the cheapest costs more than the budget.
    AllOverBudget,
}

impl Index {
    /// The catalog position of the candidate at `slot` of the index (`usize::MAX` past
    /// the catalog).
    fn position(&self, slot: usize) -> usize {
        self.blocks.get(slot / LANES).map_or(usize::MAX, |block| {
            usize::from(block.prices.position[slot % LANES])
        })
    }

    /// The cost and quality of the candidate at `slot` (0 and 0 past the catalog).
    fn cost_and_quality<const FIXED: bool>(
        &self,
        slot: usize,
        input_tokens: u64,
        output_tokens: u64,
    ) -> (u64, u16) {
        match self.blocks.get(slot / LANES) {
            Some(block) => {
                let lane = slot % LANES;
                (
                    price::<FIXED>(&block.prices, lane, input_tokens, output_tokens),
                    block.prices.quality[lane],
                )
            }
            None => (0, 0),
        }
    }
}

/// Decides `input` over the index (and the compiled candidates, in the same order) of a
/// policy: the same decision and, when `O::COUNTS`, the same counters as the scalar
/// [`eval::evaluate`], which `O::DETAILED` observers get instead.
#[inline(always)]
pub(crate) fn evaluate<O: Observer>(
    params: &PolicyParams,
    bounds: &Bounds,
    index: &Index,
    compiled: &[Candidate],
    models: &[KernelModel],
    input: &KernelInput,
    observer: &mut O,
) -> (KernelDecision, Tally) {
    debug_assert_eq!(compiled.len(), models.len());
    debug_assert_eq!(index.blocks.len(), models.len().div_ceil(LANES));
    if O::DETAILED || models.len() <= SCALAR_MAX {
        return eval::evaluate(params, bounds, compiled.iter(), models, input, observer);
    }
    if let Some(refused) = eval::refusal(input, params) {
        return refused;
    }
    let request = Request::new(input, params, bounds);
    if !request.narrow {
        return eval::rank::<false, _, _, _>(params, &request, compiled.iter(), input, observer);
    }
    // Narrow: `value * confidence` fits in u64 (its product with every quality does).
    let value_confidence = request.value_confidence as u64;
    let quality =
        quality_multiplier(value_confidence).filter(|&m| m <= index.fixed_quality_multiplier);
    let (decision, tally) = match quality {
        Some(quality_multiplier)
            if u64::from(request.input_tokens) <= index.fixed_input_tokens
                && u64::from(request.output_tokens) <= index.fixed_output_tokens =>
        {
            rank_blocks::<O, true>(params, &request, index, quality_multiplier, models, input)
        }
        _ => rank_blocks::<O, false>(params, &request, index, 0, models, input),
    };
    (decision, tally)
}

/// What pricing a survivor needs from the request, on the narrow path.
#[derive(Clone, Copy, Debug)]
struct Terms {
    input_tokens: u64,
    output_tokens: u64,
    value_confidence: u64,
    quality_multiplier: u64,
    risk_penalty: u64,
    budget: u64,
    /// [`CEIL_BIAS`], read from memory: as an operand it costs no register in the
    /// survivor loop, where the constant took one and an instruction per survivor.
    ceil_bias: u64,
}

/// The two best candidates so far, and the lowest utility that can still enter.
#[derive(Clone, Copy, Debug)]
struct Top {
    best: Place,
    second: Place,
    /// Every eligible utility is at least 1, and below the runner-up's nothing enters.
    floor: i64,
}

/// Prices the lanes of `todo` (survivors of block `base / 64`, whose prices are `p`),
/// ranks them into `top`, and returns how many are eligible. Inlined into the block
/// loop: out of line, its call (saving registers, loading the terms, storing the two
/// places) cost about 50 instructions a block, more than the spills it avoided
/// (callgrind at 22 candidates: 951 out of line, 903 inlined).
#[inline(always)]
fn survey<const FIXED: bool>(
    index: &Index,
    p: &Prices,
    base: usize,
    mut todo: u64,
    terms: &Terms,
    top: &mut Top,
) -> u32 {
    const ROUND_UP: u64 = TOKENS_PER_PRICE_UNIT - 1;
    let Terms {
        input_tokens,
        output_tokens,
        value_confidence,
        quality_multiplier,
        risk_penalty,
        budget,
        ceil_bias,
    } = *terms;
    let Top {
        mut best,
        mut second,
        mut floor,
    } = *top;
    let cost_of = |lane: usize| {
        if FIXED {
            let term = |tokens: u64, m: u64| (tokens * m + ceil_bias) >> SHIFT;
            term(input_tokens, p.input_multiplier[lane])
                + term(output_tokens, p.output_multiplier[lane])
        } else {
            price::<FIXED>(p, lane, input_tokens, output_tokens)
        }
    };
    if todo == 0 {
        return 0;
    }
    // The sign of `-ranked` is the whole eligibility test (1 exactly when `ranked >= 1`),
    // with no flag to materialise and no popcount (software on baseline x86-64).
    let priced = todo;
    let mut eligible: u64 = 0;
    while todo != 0 {
        let lane = todo.trailing_zeros() as usize % LANES;
        todo &= todo - 1;
        let cost = cost_of(lane);
        let quality_adjusted = if FIXED {
            (u64::from(p.quality[lane]) * quality_multiplier) >> SHIFT
        } else {
            value_confidence * u64::from(p.quality[lane]) / BPS_SQUARED
        };
        // Three terms below 2^61 each: the sum and the difference are exact in i64,
        // so the utility is exact even for a candidate over budget, and computing it
        // for every survivor saves a branch.
        let utility = quality_adjusted.cast_signed()
            - (risk_penalty + p.latency_penalty[lane] + cost).cast_signed();
        debug_assert_eq!(
            (cost, utility),
            {
                let exact_cost = (input_tokens * p.input_rate[lane] + ROUND_UP)
                    / TOKENS_PER_PRICE_UNIT
                    + (output_tokens * p.output_rate[lane] + ROUND_UP) / TOKENS_PER_PRICE_UNIT;
                let exact_quality = value_confidence * u64::from(p.quality[lane]) / BPS_SQUARED;
                (
                    exact_cost,
                    exact_quality.cast_signed()
                        - (risk_penalty + p.latency_penalty[lane] + exact_cost).cast_signed(),
                )
            },
            "the reciprocal pricing is exact"
        );
        // Zero stands for "not eligible": over budget, or a utility of 0 or below.
        let ranked = core::hint::select_unpredictable(cost <= budget, utility, 0);
        // `|ranked|` is below 2^62, so `-ranked` cannot overflow; its sign bit is 1
        // exactly when the lane is eligible.
        eligible += ranked.wrapping_neg().cast_unsigned() >> 63;
        if ranked >= floor {
            // Rare (a new best or runner-up): only the utility and the place are kept;
            // the tie-breaks recompute the cost, and the decision the rest.
            let place = Place {
                utility,
                slot: base + lane,
            };
            // Lower cost, then higher quality, then the lower catalog position (the
            // lower `model_id`) wins a tie.
            let tie_wins = |other: Place| {
                debug_assert!(other.slot != Place::EMPTY.slot);
                let (cost, quality) = (cost, p.quality[lane]);
                let (other_cost, other_quality) =
                    index.cost_and_quality::<FIXED>(other.slot, input_tokens, output_tokens);
                (cost, other_quality, usize::from(p.position[lane]))
                    < (other_cost, quality, index.position(other.slot))
            };
            if ranked > best.utility || (ranked == best.utility && tie_wins(best)) {
                second = best;
                best = place;
            } else if ranked > second.utility || tie_wins(second) {
                second = place;
            }
            floor = second.utility.max(1);
        }
    }
    *top = Top {
        best,
        second,
        floor,
    };
    // At most 64 lanes, so the count fits.
    let block_eligible = eligible as u32;
    debug_assert!(block_eligible <= priced.count_ones());
    block_eligible
}

/// The survivors' ranking over every block. `FIXED`: price by reciprocal multipliers
/// (the caller checked their conditions); otherwise by the compiler's exact division by
/// the constants.
#[inline(always)]
fn rank_blocks<O: Observer, const FIXED: bool>(
    params: &PolicyParams,
    request: &Request,
    index: &Index,
    quality_multiplier: u64,
    models: &[KernelModel],
    input: &KernelInput,
) -> (KernelDecision, Tally) {
    debug_assert!(request.narrow);
    let mut counts: Counts = [0; gate::COUNT];
    let mut eligible: u32 = 0;
    let mut top = Top {
        best: Place::EMPTY,
        second: Place::EMPTY,
        floor: 1,
    };
    // Proven by `Request::new` on the narrow path: `value * confidence * quality` fits
    // in u64, both token products stay at most `u64::MAX - ROUND_UP`, and every term
    // of a utility is below 2^61.
    let input_tokens = u64::from(request.input_tokens);
    let output_tokens = u64::from(request.output_tokens);
    let value_confidence = request.value_confidence as u64;
    let risk_penalty = request.risk_penalty as u64;
    let budget = request.budget_limit;
    let terms = Terms {
        input_tokens,
        output_tokens,
        value_confidence,
        quality_multiplier,
        risk_penalty,
        budget,
        ceil_bias: CEIL_BIAS,
    };
    for (b, block) in index.blocks.iter().enumerate() {
        let fails = block.failures(request);
        let survivors = block.all & !fails.iter().fold(0, |acc, f| acc | f);
        let base = b * LANES;
        let p = &block.prices;
        let cost_of = |lane: usize| price::<FIXED>(p, lane, input_tokens, output_tokens);
        let corner_cost = |c: &Corner| {
            price_of::<FIXED>(
                [c.input_multiplier, c.output_multiplier],
                [c.input_rate, c.output_rate],
                [input_tokens, output_tokens],
            )
        };
        // Bounds first: the cost grows with each rate, so the cost of the block's lowest
        // corner bounds every survivor's from below; when even that is over the
        // budget (the reject workload), nothing is priced. (An upper bound on the
        // utility, to skip blocks that cannot reach 1, cost more on the selecting
        // workload than it saved on the others: about 50 instructions a request.)
        let verdict = if survivors == 0 {
            Verdict::Open
        } else if corner_cost(&block.low) > budget {
            Verdict::AllOverBudget
        } else {
            Verdict::Open
        };
        let todo = if verdict == Verdict::Open {
            survivors
        } else {
            0
        };
        let block_eligible = survey::<FIXED>(index, p, base, todo, &terms, &mut top);
        eligible += block_eligible;
        // The counters decide only a trace and a rejection's reason; once a candidate is
        // eligible, a plain `prescribe` no longer needs them.
        if O::COUNTS || eligible == 0 {
            let mut rest = block.all;
            for (slot, f) in counts.iter_mut().zip(fails) {
                *slot += (rest & f).count_ones();
                rest &= !f;
            }
            debug_assert_eq!(rest, survivors);
            // A second, cheaper pass over the survivors splits the ineligible ones
            // between the budget and the utility gates.
            let priced = survivors.count_ones();
            let over_budget = match verdict {
                Verdict::AllOverBudget => priced,
                Verdict::Open => {
                    let mut over: u32 = 0;
                    let mut todo = survivors;
                    while todo != 0 {
                        let lane = todo.trailing_zeros() as usize % LANES;
                        todo &= todo - 1;
                        over += u32::from(cost_of(lane) > budget);
                    }
                    over
                }
            };
            debug_assert!(
                verdict == Verdict::Open || {
                    let mut agree = true;
                    let mut todo = survivors;
                    while todo != 0 {
                        let lane = todo.trailing_zeros() as usize % LANES;
                        todo &= todo - 1;
                        let over = cost_of(lane) > budget;
                        agree &= over == (verdict == Verdict::AllOverBudget);
                    }
                    agree
                },
                "the block's bounds hold for each survivor"
            );
            debug_assert!(over_budget + block_eligible <= priced);
            counts[gate::BUDGET as usize] += over_budget;
            counts[gate::UTILITY as usize] += priced - over_budget - block_eligible;
        }
    }
    let ranked = |place: Place| {
        if place.slot == Place::EMPTY.slot {
            return Ranked::NOBODY;
        }
        let (cost, quality_bps) =
            index.cost_and_quality::<FIXED>(place.slot, input_tokens, output_tokens);
        let position = index.position(place.slot);
        Ranked {
            utility: place.utility,
            cost,
            quality_bps,
            model_id: models.get(position).map_or(0, |m| m.model_id),
            // Catalogs hold at most 65,535 candidates, so the position fits.
            index: u16::try_from(position).unwrap_or(NO_MODEL_INDEX),
        }
    };
    let (best, second) = (ranked(top.best), ranked(top.second));
    debug_assert!(second.index == NO_MODEL_INDEX || !second.beats(&best));
    let evaluated = u32::try_from(models.len()).unwrap_or(u32::MAX);
    debug_assert!(eligible <= evaluated);
    debug_assert!(
        !O::COUNTS || counts.iter().sum::<u32>() + eligible == evaluated,
        "every candidate lands in exactly one slot"
    );
    eval::conclude(params, input, best, second, counts, evaluated, eligible)
}

#[cfg(test)]
mod tests {
    use super::{
        CEIL_BIAS, FIXED_TOKENS_MAX, Threshold, cost_multiplier, fixed_cost, quality_multiplier,
    };

    /// `x` with `x * r == 1 (mod 1e6)`, for `r` coprime to 10 (extended Euclid).
    fn inverse_mod_million(r: u64) -> u64 {
        let m = 1_000_000i128;
        let (mut a, mut b, mut x0, mut x1) = (i128::from(r) % m, m, 1i128, 0i128);
        while b != 0 {
            let q = a / b;
            (a, b) = (b, a - q * b);
            (x0, x1) = (x1, x0 - q * x1);
        }
        assert_eq!(a, 1, "{r} is not invertible modulo 1e6");
        x0.rem_euclid(m) as u64
    }

    #[test]
    fn reciprocal_cost_is_the_exact_ceiling_at_its_edges() {
        let rates = [
            1,
            3,
            7,
            999_999,
            1_000_001,
            3_000_007,
            123_457,
            9_999_991,
            60_000_001,
            4_999_999_999,
        ];
        let mut checked = 0;
        for rate in rates {
            let m = cost_multiplier(rate).expect("fits");
            let inverse = inverse_mod_million(rate);
            // Token counts that make the fraction 0, 1e-6 (the hardest case for the
            // bias), 1 - 1e-6, and the limit itself.
            let mut tokens = alloc::vec![0u64, 1, 2, FIXED_TOKENS_MAX - 1, FIXED_TOKENS_MAX];
            for k in 0..2 {
                tokens.push(inverse + k * 1_000_000);
                tokens.push(1_000_000 - inverse + k * 1_000_000);
                tokens.push(k * 1_000_000);
            }
            for t in tokens {
                if t > FIXED_TOKENS_MAX
                    || u128::from(t) * u128::from(m) + u128::from(CEIL_BIAS) > u128::from(u64::MAX)
                {
                    continue;
                }
                let exact = (u128::from(t) * u128::from(rate)).div_ceil(1_000_000);
                assert_eq!(
                    u128::from(fixed_cost(t, m)),
                    exact,
                    "rate {rate} tokens {t}"
                );
                checked += 1;
            }
        }
        assert!(checked > 60, "only {checked} edge cases were in range");
        // A multiplier that cannot fit is refused, not wrapped.
        assert_eq!(cost_multiplier(u64::MAX), None);
    }

    #[test]
    fn reciprocal_quality_is_the_exact_floor_for_every_quality() {
        let values = [
            0u64,
            1,
            99_999_999,
            100_000_000,
            100_000_001,
            123_456_789_012,
            (1 << 40) - 1,
            1_677_721_599_999,
        ];
        for vc in values {
            let m = quality_multiplier(vc).expect("fits");
            // Every quality natively; a sample under Miri, which is slow.
            let step = if cfg!(miri) { 499 } else { 1 };
            for q in (0..=10_000u64).step_by(step) {
                if u128::from(q) * u128::from(m) > u128::from(u64::MAX) {
                    continue;
                }
                assert_eq!((q * m) >> 40, vc * q / 100_000_000, "vc {vc} quality {q}");
            }
        }
        assert_eq!(quality_multiplier(u64::MAX), None);
    }

    #[test]
    fn leading_finds_every_prefix() {
        let step = if cfg!(miri) { 13 } else { 1 };
        for len in (1..=super::LANES).step_by(step) {
            let values: alloc::vec::Vec<u16> = (0..len).map(|i| ((i * 37) % 11) as u16).collect();
            let t = Threshold::new(&values, u16::MAX);
            for x in 0..=12u16 {
                let expected = values
                    .iter()
                    .enumerate()
                    .filter(|&(_, v)| *v < x)
                    .fold(0u64, |m, (i, _)| m | 1 << i);
                assert_eq!(t.leading(|v| v < x), expected, "len {len} x {x}");
            }
            // A predicate true for the padding too gives every lane, and no more.
            let all = u64::MAX >> (64 - len);
            assert_eq!(t.leading(|_| true), all);
        }
    }
}
