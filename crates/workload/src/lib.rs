//! The seeded workload of Calybris: the LLM-routing catalog ([`catalog`]), the tenant
//! profiles ([`tenants`]), the request generator ([`generate`]) that `calybris demo`
//! runs through the decision gate, and the generator underneath ([`SplitMix64`], with
//! [`seed_from_env`], the `CALYBRIS_SEED` convention of the randomised tests).
//!
//! Everything is a pure function of its seed: the same seed gives the same requests on
//! every machine. The demo runs it, and the test suites draw their seeded cases from
//! its generator instead of each repeating one.
//!
//! ```
//! use calybris_workload::{SEED, SplitMix64, catalog, generate, tenants};
//!
//! let policy = catalog::policy()?;
//! let jobs = generate(1_000, SEED);
//! assert_eq!(jobs.len(), tenants::TENANTS);
//! assert_eq!(jobs, generate(1_000, SEED), "a pure function of the seed");
//! let selections = jobs
//!     .iter()
//!     .flatten()
//!     .filter(|job| policy.prescribe(job.input).is_selection())
//!     .count();
//! assert!(selections > 0);
//!
//! let mut rng = SplitMix64::new(7);
//! assert!(rng.between(10, 20) >= 10);
//! # Ok::<(), calybris_kernel::PolicyError>(())
//! ```
//!
//! # Features
//!
//! None. The crate needs `alloc` (it builds on `calybris-kernel` and `calybris-digest`).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod catalog;
mod generator;
mod rng;
pub mod tenants;

pub use generator::{Job, SEED, budgets, generate};
pub use rng::{SEED_VAR, SplitMix64, parse_seed, seed_from_env};

/// The README's example, compiled and run as a doctest so the crates.io page
/// cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
