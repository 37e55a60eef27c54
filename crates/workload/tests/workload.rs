//! The workload is a pure function of its seed, and the one the demo promises.

use calybris_workload::catalog::{self, CATALOG, PROVIDERS};
use calybris_workload::tenants::{PROFILES, TEAMS_PER_ORG, TENANTS, WEIGHT_TOTAL, tenant_name};
use calybris_workload::{
    SEED, SplitMix64, budgets, generate, parse_seed, seed_from_env, tenants::MIN_BUDGET_MICROUNITS,
};

#[test]
fn splitmix64_gives_the_reference_sequence() {
    // The first outputs of SplitMix64 from seed 0 (the published reference values).
    let mut rng = SplitMix64::new(0);
    assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
}

#[test]
fn bounded_draws_stay_in_their_bounds() {
    let mut rng = SplitMix64::new(SEED);
    for _ in 0..10_000 {
        assert!(rng.below(7) < 7);
        let x = rng.between(60, 100);
        assert!((60..=100).contains(&x));
    }
    assert_eq!(rng.below(0), 0);
    assert_eq!(rng.between(5, 5), 5);
    assert_eq!(rng.between(9, 3), 9);
    let _full_range = rng.between(0, u64::MAX);
    assert!(!(0..1_000).any(|_| rng.percent(0)));
    assert!((0..1_000).all(|_| rng.percent(100)));
    assert_eq!(rng.pick::<u8>(&[]), None);
    assert_eq!(rng.pick(&[4]), Some(&4));
}

#[test]
fn seeds_read_as_decimal_or_hex() {
    assert_eq!(parse_seed(" 42 "), Some(42));
    assert_eq!(parse_seed("0x2a"), Some(42));
    assert_eq!(parse_seed("0X2A"), Some(42));
    assert_eq!(parse_seed("forty-two"), None);
    if std::env::var_os("CALYBRIS_SEED").is_none() {
        assert_eq!(seed_from_env(7), 7);
    }
}

#[test]
fn the_catalog_and_the_profiles_hold_what_the_demo_says() {
    let policy = catalog::policy().expect("the embedded catalog is valid");
    assert_eq!(policy.models().len(), CATALOG.len());
    assert_eq!(CATALOG.len(), 22);
    let mut providers: Vec<u16> = CATALOG.iter().map(|m| m.provider_id).collect();
    providers.sort_unstable();
    providers.dedup();
    assert_eq!(providers.len(), PROVIDERS.len());
    assert_eq!(PROFILES.iter().map(|p| p.weight).sum::<u64>(), WEIGHT_TOTAL);
    assert_eq!(catalog::model_name(302), Some("au-flash"));
    assert_eq!(catalog::model_name(1), None);
    for profile in &PROFILES {
        for model in profile.preferred {
            assert!(catalog::model_name(*model).is_some(), "{model}");
        }
    }
    assert_eq!(tenant_name(0, 3), "acme-support/team-03");
}

#[test]
fn the_workload_is_a_function_of_its_seed() {
    let a = generate(2_000, SEED);
    assert_eq!(a, generate(2_000, SEED));
    assert_ne!(a, generate(2_000, SEED ^ 1));
    assert_eq!(a.len(), TENANTS);
    assert_eq!(TENANTS, PROFILES.len() * TEAMS_PER_ORG);
    let mut sequences: Vec<u64> = a
        .iter()
        .flatten()
        .map(|j| j.input.request_sequence)
        .collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (0..2_000).collect::<Vec<_>>());
    for (tenant, jobs) in a.iter().enumerate() {
        let profile = &PROFILES[tenant / TEAMS_PER_ORG];
        for job in jobs {
            assert!(profile.preferred.contains(&job.input.requested_model_id));
            assert!((60..=100).contains(&job.actual_percent));
        }
    }
    let policy = catalog::policy().expect("valid");
    let budgets = budgets(&policy, &a);
    assert_eq!(budgets.len(), TENANTS);
    assert!(budgets.iter().all(|b| *b >= MIN_BUDGET_MICROUNITS));
}
