//! The adaptive layer of Calybris: replayable learning primitives and off-policy
//! estimators.
//!
//! The learning modules propose a regime, a quality floor and a tier (arm) for each
//! request, so that an auditor can re-derive every suggestion, draw and propensity
//! from the log and a state snapshot alone (definitions in `docs/ADAPT.md`):
//! - [`prf`]: the keyed PRF: ChaCha12 streams keyed by an HMAC-SHA-256 seed over the
//!   engine-state digest and the input digest (`Prf`), or, for the engine, keyed once
//!   with the engine key and named by the state and the input (`StateStreams`):
//!   unbiased uniform integers, exact uniform fractions; no clock, no OS randomness.
//! - [`beta`]: Beta draws bit-identical on every platform (Marsaglia–Tsang Gamma
//!   pairs, polar normals, our own logarithm; only correctly rounded `+ − × ÷ sqrt`).
//! - [`thompson`]: Thompson selection over Beta posteriors with the exact propensity
//!   `(c + 1)/(K + 1)` over `K` keyed re-draws; the engine's Thompson table (`K + 1`
//!   state-keyed draws per regime, redrawn lazily) whose row shares are exact
//!   propensities; and a keyed epsilon-greedy baseline.
//! - [`regime`]: exact integer Welford statistics, an anomaly score, classification,
//!   and floors calibrated by outcomes (failures count twice) within bounds.
//! - [`engine`]: the engine tying them together, with its SHA-256 state digest
//!   (the layout digest of the initial state, chained through every update).
//! - [`reward`]: learning from a bounded reward: the reward normalised on a known
//!   scale becomes a dithered observation bit whose mean is the normalised reward.
//!
//! The other module, [`ope`], holds off-policy estimators that say what a new policy
//! would have earned, from rounds logged under the policy that actually ran.
//!
//! The estimators are IPS, self-normalised IPS, the direct method, doubly robust,
//! self-normalised DR, switch-DR and DR with optimistic shrinkage, each with an
//! optional weight cap (20 by default). Each report carries the estimate, where every
//! round went (used, excluded, unsupported, clipped), the largest weight, the
//! effective sample size and a 95 % normal interval; a percentile bootstrap whose
//! resampling is keyed replays bit for bit. Results are bit-identical on every
//! platform: sums run left to right in the given order, and only correctly rounded
//! operations are used. The formulas are in `docs/SPECIFICATION.md` ("Off-policy estimators"); they agree with obp 0.4.1
//! on the Open Bandit Dataset to within 1e-12 (see `tests/obd.rs`).
//!
//! # What it deliberately does not do
//! - Read files or decision logs: the caller turns them into [`ope::LoggedRound`]s.
//! - Fit reward models: `q̂` and the DM term come with each round.
//! - Use randomness: the bootstrap's "random" indices are a keyed hash stream.
//! - Call the gate or log decisions: the gate integration, `calybris verify`
//!   re-deriving draws from the log, `calybris show` and the routing simulator come
//!   next. Shadow evaluation and promotion: later.
//! - Use libm: no `ln`, `exp` or `pow` of the platform anywhere in the draws.
//!
//! # Main types
//! - [`ope::LoggedRound`] with [`ope::Probability`] (binary64 or an exact fraction)
//!   and an optional [`ope::RewardModel`].
//! - [`ope::Estimator`], [`ope::EstimatorConfig`] (cap, [`ope::RowPolicy`]),
//!   [`ope::estimate`] returning an [`ope::Estimate`].
//! - [`ope::bootstrap`] with a [`ope::BootstrapKey`], returning an [`ope::Bootstrap`].
//! - [`ope::OpeError`] and [`ope::RowDefect`]: typed reasons.
//! - [`engine::Engine`] with [`engine::EngineConfig`], [`engine::Request`] and
//!   [`engine::Decision`]; its whole state [`engine::EngineState`]
//!   ([`engine::Engine::export_state`], [`engine::Engine::from_state`]); [`thompson::Posterior`], [`thompson::Policy`],
//!   [`thompson::Propensity`]; [`regime::RegimeConfig`], [`regime::Welford`];
//!   [`prf::Prf`] and [`beta::Sampler`]; [`error::LearnError`].
//!
//! # Example
//! ```
//! use calybris_adapt::ope::{
//!     BootstrapKey, Estimator, EstimatorConfig, LoggedRound, Probability, bootstrap, estimate,
//! };
//!
//! // Four rounds logged by a policy that picked the shown action with 1/2 or 1/4
//! // (exact fractions), evaluated for a policy that picks it with 0.5 (a float).
//! let half = Probability::ratio(1, 2);
//! let quarter = Probability::ratio(1, 4);
//! let pi_e = Probability::float(0.5);
//! let rows = [
//!     LoggedRound::new(1.0, half, pi_e, 0.6, 0.55),
//!     LoggedRound::new(0.0, quarter, pi_e, 0.2, 0.40),
//!     LoggedRound::new(1.0, quarter, pi_e, 0.7, 0.50),
//!     LoggedRound::new(0.0, Probability::ratio(0, 4), pi_e, 0.1, 0.30), // unsupported
//! ];
//! let config = EstimatorConfig::default(); // weight cap 20, bad rounds excluded
//!
//! let ips = estimate(&rows, Estimator::Ips, &config)?;
//! assert_eq!(ips.value, (1.0 * 1.0 + 2.0 * 0.0 + 2.0 * 1.0) / 3.0);
//! assert_eq!((ips.counts.used, ips.counts.unsupported), (3, 1));
//! assert_eq!(ips.weight_max, 2.0);
//!
//! let dr = estimate(&rows, Estimator::Dr, &config)?;
//! assert!(dr.normal_interval.is_some());
//!
//! // The same key gives the same interval, bit for bit, on every platform.
//! let key = BootstrapKey::from_bytes([7; 32]);
//! let a = bootstrap(&rows, Estimator::Dr, &config, &key, 200)?;
//! let b = bootstrap(&rows, Estimator::Dr, &config, &key, 200)?;
//! assert_eq!(a, b);
//! # Ok::<(), calybris_adapt::ope::OpeError>(())
//! ```
//!
//! A learning decision, its exact propensity and its update:
//! ```
//! use calybris_adapt::engine::{Engine, EngineConfig, Request};
//! use calybris_adapt::prf::PrfKey;
//! use calybris_adapt::regime::RegimeConfig;
//! use calybris_adapt::thompson::{Policy, Posterior};
//!
//! let config = EngineConfig {
//!     regimes: RegimeConfig::default(), // 8 regimes, 4 features
//!     priors: vec![Posterior::new(60, 40)?, Posterior::new(80, 20)?, Posterior::UNIFORM],
//!     policy: Policy::Thompson { redraws: 999 },
//!     exploration_bps: 2_000, // explore 20 % of the time
//! };
//! let mut engine = Engine::new(config, PrfKey::from_bytes([7; 32]))?;
//! let features = [120, 3, 0, 1];
//! let request = Request {
//!     input_digest: [1; 32], // the digest of the decision's input
//!     label: Some("coding"),
//!     features: &features,
//!     client_floor_bps: Some(8_000),
//!     static_arm: 0,
//! };
//! let decision = engine.decide(&request)?;
//! assert_eq!(decision.regime, 1); // "coding"
//! assert_eq!(decision.floor_bps, 8_000); // the client floor wins over 0.72
//! let p = engine.propensity(&request, &decision)?; // an exact fraction
//! assert!(p.numerator > 0 && p.numerator <= p.denominator);
//! // The same key, state and request give the same decision, bit for bit.
//! assert_eq!(engine.decide(&request)?, decision);
//! engine.update(&decision, &features, true)?;
//! assert_ne!(engine.state_digest(), decision.state_digest);
//! # Ok::<(), calybris_adapt::error::LearnError>(())
//! ```
//!
//! # Features
//! None. The crate needs `std` (vectors), `sha2` for the state digest and the `Prf`
//! seed, `hmac` for the `Prf` seed and `thiserror`; the ChaCha12 block function of the
//! word streams is its own (written from RFC 8439, tested on its vector).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod beta;
pub mod engine;
pub mod error;
pub mod ope;
pub mod prf;
pub mod regime;
pub mod reward;
pub mod thompson;
