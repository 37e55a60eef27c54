//! The adaptive layer of Calybris. For now it holds one module, [`ope`]: off-policy
//! estimators that say what a new policy would have earned, from rounds logged under
//! the policy that actually ran.
//!
//! The estimators are IPS, self-normalised IPS, the direct method, doubly robust,
//! self-normalised DR, switch-DR and DR with optimistic shrinkage, each with an
//! optional weight cap (20 by default). Each report carries the estimate, where every
//! round went (used, excluded, unsupported, clipped), the largest weight, the
//! effective sample size and a 95 % normal interval; a percentile bootstrap whose
//! resampling is keyed replays bit for bit. Results are bit-identical on every
//! platform: sums run left to right in the given order, and only correctly rounded
//! operations are used. The formulas are in `docs/OPE.md`; they agree with obp 0.4.1
//! on the Open Bandit Dataset to within 1e-12 (see `tests/obd.rs`).
//!
//! # What it deliberately does not do
//! - Read files or decision logs: the caller turns them into [`ope::LoggedRound`]s.
//! - Fit reward models: `q̂` and the DM term come with each round.
//! - Use randomness: the bootstrap's "random" indices are a keyed hash stream.
//! - Regimes, Thompson sampling, calibration, shadow evaluation and promotion: later.
//!
//! # Main types
//! - [`ope::LoggedRound`] with [`ope::Probability`] (binary64 or an exact fraction)
//!   and an optional [`ope::RewardModel`].
//! - [`ope::Estimator`], [`ope::EstimatorConfig`] (cap, [`ope::RowPolicy`]),
//!   [`ope::estimate`] returning an [`ope::Estimate`].
//! - [`ope::bootstrap`] with a [`ope::BootstrapKey`], returning an [`ope::Bootstrap`].
//! - [`ope::OpeError`] and [`ope::RowDefect`]: typed reasons.
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
//! # Features
//! None. The crate needs `std` (vectors for the bootstrap), `sha2` for the keyed
//! stream and `thiserror`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod beta;
pub mod engine;
pub mod error;
pub mod ope;
pub mod prf;
pub mod regime;
pub mod thompson;
