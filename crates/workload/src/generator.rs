//! The seeded request generator and the opening budgets it implies.

use calybris_digest::SealedPolicy;
use calybris_kernel::KernelInput;

use crate::rng::SplitMix64;
use crate::tenants::{MIN_BUDGET_MICROUNITS, PROFILES, TEAMS_PER_ORG, TENANTS, WEIGHT_TOTAL};

/// The seed of `calybris demo`.
pub const SEED: u64 = 0xCA1B_0015_DE30_2026;

/// One request of the workload and what its work will actually cost, as a
/// percentage of the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// The request.
    pub input: KernelInput,
    /// The actual cost as a percentage of the estimate (60 to 100).
    pub actual_percent: u64,
}

fn narrow<T: TryFrom<u64>>(value: u64, max: T) -> T {
    T::try_from(value).unwrap_or(max)
}

/// Generates `requests` requests from `seed`: the jobs of each tenant (index `org *
/// TEAMS_PER_ORG + team`, [`TENANTS`] of them), each in request order.
#[must_use]
pub fn generate(requests: u64, seed: u64) -> Vec<Vec<Job>> {
    let mut rng = SplitMix64::new(seed);
    let mut jobs: Vec<Vec<Job>> = (0..TENANTS).map(|_| Vec::new()).collect();
    for sequence in 0..requests {
        let mut pick = rng.next_u64() % WEIGHT_TOTAL;
        let org = PROFILES
            .iter()
            .position(|p| {
                let hit = pick < p.weight;
                pick = pick.saturating_sub(p.weight);
                hit
            })
            .unwrap_or(0);
        let team = narrow(rng.next_u64() % TEAMS_PER_ORG as u64, 0usize);
        let p = &PROFILES[org];
        let preferred = p.preferred[narrow(rng.next_u64() % p.preferred.len() as u64, 0usize)];
        let risk_bps = if rng.percent(p.risky_percent) {
            rng.between(6_000, 9_800)
        } else {
            rng.between(0, 3_000)
        };
        let confidence_bps = if rng.percent(4) {
            rng.between(1_000, 3_500)
        } else {
            rng.between(6_000, 10_000)
        };
        let input = KernelInput {
            request_sequence: sequence,
            requested_model_id: preferred,
            input_tokens: narrow(rng.between(p.input_tokens.0, p.input_tokens.1), u32::MAX),
            output_tokens: narrow(rng.between(p.output_tokens.0, p.output_tokens.1), u32::MAX),
            business_value_microunits: narrow(
                rng.between(p.value_microunits.0, p.value_microunits.1),
                i64::MAX,
            ),
            budget_limit_microunits: p.budget_limit_microunits,
            risk_bps: narrow(risk_bps, u16::MAX),
            confidence_bps: narrow(confidence_bps, u16::MAX),
            minimum_quality_bps: p.minimum_quality_bps,
            max_p95_latency_ms: p.max_p95_latency_ms,
            required_capabilities: p.required_capabilities,
            allowed_provider_mask: p.allowed_provider_mask,
            required_region_mask: p.required_region_mask,
        };
        let actual_percent = rng.between(60, 100);
        jobs[org * TEAMS_PER_ORG + team].push(Job {
            input,
            actual_percent,
        });
    }
    jobs
}

/// Each tenant's opening budget: its profile's `budget_percent` of what its
/// selections would cost under `policy`, at least [`MIN_BUDGET_MICROUNITS`].
#[must_use]
pub fn budgets(policy: &SealedPolicy, jobs: &[Vec<Job>]) -> Vec<u64> {
    jobs.iter()
        .enumerate()
        .map(|(tenant, jobs)| {
            let budget_percent = PROFILES
                .get(tenant / TEAMS_PER_ORG)
                .map_or(100, |profile| profile.budget_percent);
            let cost_microunits: u64 = jobs
                .iter()
                .map(|job| policy.prescribe(job.input))
                .filter(|decision| decision.is_selection())
                .map(|decision| decision.estimated_cost_microunits)
                .fold(0u64, u64::saturating_add);
            let budget_microunits = (cost_microunits / 100).saturating_mul(budget_percent);
            budget_microunits.max(MIN_BUDGET_MICROUNITS)
        })
        .collect()
}
