//! Runs `N` adaptive steps (decide with 22 arms, its propensity, update) for
//! instruction counts under callgrind:
//! `valgrind --tool=callgrind target/release/examples/step 2000`, then divide by N
//! (and subtract a run with N = 0 for the set-up). A second argument `greedy` runs
//! the epsilon-greedy baseline instead of Thompson.

use calybris_adapt::engine::{Engine, EngineConfig, Request};
use calybris_adapt::prf::PrfKey;
use calybris_adapt::regime::RegimeConfig;
use calybris_adapt::thompson::{Policy, Posterior};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map_or(Ok(1000), |a| a.parse())?;
    let greedy = std::env::args().nth(2).as_deref() == Some("greedy");
    let priors = (0..22u32)
        .map(|i| Posterior::new(600 + 15 * i, 400 - 15 * i))
        .collect::<Result<Vec<_>, _>>()?;
    let config = EngineConfig {
        regimes: RegimeConfig::default(),
        priors,
        policy: if greedy {
            Policy::EpsilonGreedy { epsilon_bps: 500 }
        } else {
            Policy::Thompson { redraws: 100 }
        },
        exploration_bps: 10_000,
    };
    let mut engine = Engine::new(config, PrfKey::from_bytes([7; 32]))?;
    let mut arms = 0u64;
    for i in 0..n {
        let features = [(i % 50) as i32, 100 + (i % 7) as i32, (i % 3) as i32, 4];
        let mut input_digest = [0u8; 32];
        input_digest[..8].copy_from_slice(&i.to_be_bytes());
        let request = Request {
            input_digest,
            label: Some(["support", "coding", "compliance", "security"][(i % 4) as usize]),
            features: &features,
            client_floor_bps: None,
            static_arm: 0,
        };
        let d = engine.decide(&request)?;
        let p = engine.propensity(&request, &d)?;
        arms += u64::from(d.arm) + p.numerator;
        engine.update(&d, &features, i % 3 != 0)?;
    }
    println!(
        "{n} steps, arm sum {arms}, digest {:02x?}",
        &engine.state_digest()[..4]
    );
    Ok(())
}
