//! The structure-of-arrays form of an owned policy's catalog, built once per policy, and
//! the mask evaluation of `prescribe` over it.
//!
//! The catalog is cut into blocks of 64 candidates in `model_id` order, so lane `i` of
//! block `b` is candidate `64 b + i`. For every block the index holds what turns each of
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

use crate::eval::{self, Bounds, Candidate, Counts, Observer, PolicyParams, Request, Tally, gate};
use crate::types::{
    BPS_SQUARED, KernelDecision, KernelInput, KernelModel, MAX_PROVIDER_ID, TOKENS_PER_PRICE_UNIT,
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
        Self { keys, prefix }
    }

    /// The lanes whose value satisfies `holds`, a predicate that holds for a prefix of
    /// the ascending keys (padding included): a branch-free binary search over the first
    /// `width` keys, `width` a power of two covering the block.
    #[inline(always)]
    fn leading(&self, width: usize, holds: impl Fn(T) -> bool) -> u64 {
        debug_assert!(width.is_power_of_two() && width <= LANES);
        let mut base = 0usize;
        let mut step = width / 2;
        while step > 0 {
            // Invariant: `holds` is true for every key below `base`.
            // Branch-free: the outcome of each probe is data, not control flow.
            let probe = usize::from(holds(self.keys[(base + step - 1) % LANES]));
            base += step & probe.wrapping_neg();
            step /= 2;
        }
        let n = base + usize::from(holds(self.keys[base % LANES]));
        debug_assert!(n <= width);
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
    /// The binary-search width: the lane count rounded up to a power of two.
    width: usize,
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
}

/// The priced fields of a block's lanes, one array each, so the survivor loop indexes
/// them directly by lane.
#[derive(Clone, Debug)]
struct Prices {
    input_rate: [u64; LANES],
    output_rate: [u64; LANES],
    /// As [`Candidate::latency_penalty`]: exact on the narrow path.
    latency_penalty: [u64; LANES],
    quality: [u16; LANES],
}

impl Block {
    fn new(models: &[KernelModel], compiled: &[Candidate]) -> Self {
        debug_assert!(!models.is_empty() && models.len() <= LANES);
        debug_assert_eq!(models.len(), compiled.len());
        let mut b = Self {
            all: u64::MAX >> (LANES - models.len()),
            width: models.len().next_power_of_two(),
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
            prices: Prices {
                input_rate: [0; LANES],
                output_rate: [0; LANES],
                latency_penalty: [0; LANES],
                quality: [0; LANES],
            },
        };
        for (lane, c) in compiled.iter().enumerate() {
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
        let quality = self
            .quality
            .leading(self.width, |q| q < r.minimum_quality_bps);
        let latency = self.all & !self.latency.leading(self.width, |l| l <= r.latency_cap_ms);
        let capability = union(&self.lacking, r.required_capabilities & self.lacked);
        let provider = self.unrepresentable
            | union(&self.by_provider, self.providers & !r.allowed_provider_mask);
        let region = if r.required_region_mask == 0 {
            0
        } else {
            self.all & !union(&self.serving, r.required_region_mask & self.served)
        };
        let risk = self.ceiling.leading(self.width, |c| c < r.risk_bps);
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

/// The blocks of a catalog sorted by ascending `model_id`.
pub(crate) fn build(models: &[KernelModel], compiled: &[Candidate]) -> Vec<Block> {
    models
        .chunks(LANES)
        .zip(compiled.chunks(LANES))
        .map(|(m, c)| Block::new(m, c))
        .collect()
}

/// Decides `input` over the blocks (and the compiled candidates, in the same order) of a
/// policy: the same decision and, when `O::COUNTS`, the same counters as the scalar
/// [`eval::evaluate`], which `O::DETAILED` observers get instead.
#[inline(always)]
pub(crate) fn evaluate<O: Observer>(
    params: &PolicyParams,
    bounds: &Bounds,
    blocks: &[Block],
    compiled: &[Candidate],
    models: &[KernelModel],
    input: &KernelInput,
    observer: &mut O,
) -> (KernelDecision, Tally) {
    debug_assert_eq!(compiled.len(), models.len());
    debug_assert_eq!(blocks.len(), models.len().div_ceil(LANES));
    if O::DETAILED {
        return eval::evaluate(params, bounds, compiled.iter(), models, input, observer);
    }
    if let Some(refused) = eval::refusal(input, params) {
        return refused;
    }
    let request = Request::new(input, params, bounds);
    if !request.narrow {
        return eval::rank::<false, _, _, _>(params, &request, compiled.iter(), input, observer);
    }
    let mut counts: Counts = [0; gate::COUNT];
    let mut eligible: u32 = 0;
    let mut best: u128 = 0;
    let mut second: u128 = 0;
    // The lowest utility that can still enter the top two: every eligible utility is at
    // least 1, and below the runner-up's nothing can.
    let mut floor: i64 = 1;
    const ROUND_UP: u64 = TOKENS_PER_PRICE_UNIT - 1;
    // Proven by `Request::new` on the narrow path: `value * confidence * quality` fits
    // in u64, both token products stay at most `u64::MAX - ROUND_UP`, and every term
    // of a utility is below 2^61.
    let input_tokens = u64::from(request.input_tokens);
    let output_tokens = u64::from(request.output_tokens);
    let value_confidence = request.value_confidence as u64;
    let risk_penalty = request.risk_penalty as u64;
    let budget = request.budget_limit;
    for (b, block) in blocks.iter().enumerate() {
        let fails = block.failures(&request);
        let survivors = block.all & !fails.iter().fold(0, |acc, f| acc | f);
        let base = b * LANES;
        let p = &block.prices;
        let mut within_budget: u32 = 0;
        let mut block_eligible: u32 = 0;
        let mut todo = survivors;
        while todo != 0 {
            let lane = todo.trailing_zeros() as usize % LANES;
            todo &= todo - 1;
            let cost = (input_tokens * p.input_rate[lane] + ROUND_UP) / TOKENS_PER_PRICE_UNIT
                + (output_tokens * p.output_rate[lane] + ROUND_UP) / TOKENS_PER_PRICE_UNIT;
            let quality_adjusted = value_confidence * u64::from(p.quality[lane]) / BPS_SQUARED;
            // Three terms below 2^61 each: the sum and the difference are exact in i64,
            // so the utility is exact even for a candidate over budget, and computing it
            // for every survivor saves a branch.
            let utility = quality_adjusted.cast_signed()
                - (risk_penalty + p.latency_penalty[lane] + cost).cast_signed();
            debug_assert_eq!(
                (cost, utility),
                {
                    let c = &compiled[base + lane];
                    let cost = request.cost::<true>(c);
                    (cost, request.narrow_utility(c, request.quality_adjusted::<true>(c), cost))
                },
                "the lane arrays price like the scalar loop"
            );
            let within = cost <= budget;
            within_budget += u32::from(within);
            block_eligible += u32::from(within & (utility > 0));
            let ranked = if within { utility } else { 0 };
            if ranked >= floor {
                debug_assert!(cost <= eval::key::COST_MAX && utility < 1 << 38);
                // Catalogs hold at most 65,535 candidates, so the index fits.
                let index = u16::try_from(base + lane).unwrap_or(u16::MAX);
                let k = eval::rank_key(utility, cost, p.quality[lane], index);
                if k > second {
                    if k > best {
                        second = best;
                        best = k;
                    } else {
                        second = k;
                    }
                    floor = eval::utility_of(second).max(1);
                }
            }
        }
        debug_assert!(block_eligible <= within_budget && within_budget <= survivors.count_ones());
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
            counts[gate::BUDGET as usize] += rest.count_ones() - within_budget;
            counts[gate::UTILITY as usize] += within_budget - block_eligible;
        }
    }
    debug_assert!(second <= best && (second == 0 || second < best));
    let evaluated = u32::try_from(models.len()).unwrap_or(u32::MAX);
    debug_assert!(eligible <= evaluated);
    debug_assert!(
        !O::COUNTS || counts.iter().sum::<u32>() + eligible == evaluated,
        "every candidate lands in exactly one slot"
    );
    eval::conclude(
        params,
        input,
        eval::ranked_of(best, models),
        eval::ranked_of(second, models),
        counts,
        evaluated,
        eligible,
    )
}

#[cfg(test)]
mod tests {
    use super::Threshold;

    #[test]
    fn leading_finds_every_prefix() {
        for len in 1..=super::LANES {
            let values: alloc::vec::Vec<u16> = (0..len).map(|i| ((i * 37) % 11) as u16).collect();
            let t = Threshold::new(&values, u16::MAX);
            let width = len.next_power_of_two();
            for x in 0..=12u16 {
                let expected = values
                    .iter()
                    .enumerate()
                    .filter(|&(_, v)| *v < x)
                    .fold(0u64, |m, (i, _)| m | 1 << i);
                assert_eq!(t.leading(width, |v| v < x), expected, "len {len} x {x}");
            }
            // A predicate true for the padding too gives every lane, and no more.
            let all = u64::MAX >> (64 - len);
            assert_eq!(t.leading(width, |_| true), all);
        }
    }
}
