//! Test support shared by the test suites and the benches of the workspace that are
//! not published: the seeded generator ([`SplitMix64`]) and the `CALYBRIS_SEED`
//! convention ([`seed_from_env`]), both from `calybris-workload` so that the demo and the
//! tests draw from one generator, [`TempDir`], and (feature `oracle`)
//! the conversions of the kernel's types to those of `calybris-core`, the published
//! implementation the conformance tests and the benches compare against.
//!
//! The published crates' own tests cannot depend on this crate (it is not published,
//! and their tests run from their packages): they take the generator from
//! `calybris-workload` directly.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use calybris_workload::{SEED_VAR, SplitMix64, parse_seed, seed_from_env};

/// Conversions of the kernel's types to those of `calybris-core` 1.3.0.
#[cfg(feature = "oracle")]
pub mod oracle {
    use calybris_core::kernel as core_k;
    use calybris_kernel::{KernelInput, KernelModel};

    /// `m` as `calybris-core`'s model, field for field.
    #[must_use]
    pub fn to_core_model(m: &KernelModel) -> core_k::KernelModel {
        core_k::KernelModel {
            model_id: m.model_id,
            provider_id: m.provider_id,
            quality_bps: m.quality_bps,
            risk_ceiling_bps: m.risk_ceiling_bps,
            enabled: m.enabled,
            p95_latency_ms: m.p95_latency_ms,
            capabilities: m.capabilities,
            region_mask: m.region_mask,
            input_cost_microunits_per_million_tokens: m.input_cost_microunits_per_million_tokens,
            output_cost_microunits_per_million_tokens: m.output_cost_microunits_per_million_tokens,
        }
    }

    /// `i` as `calybris-core`'s request, field for field.
    #[must_use]
    pub fn to_core_input(i: &KernelInput) -> core_k::KernelInput {
        core_k::KernelInput {
            request_sequence: i.request_sequence,
            requested_model_id: i.requested_model_id,
            input_tokens: i.input_tokens,
            output_tokens: i.output_tokens,
            business_value_microunits: i.business_value_microunits,
            budget_limit_microunits: i.budget_limit_microunits,
            risk_bps: i.risk_bps,
            confidence_bps: i.confidence_bps,
            minimum_quality_bps: i.minimum_quality_bps,
            max_p95_latency_ms: i.max_p95_latency_ms,
            required_capabilities: i.required_capabilities,
            allowed_provider_mask: i.allowed_provider_mask,
            required_region_mask: i.required_region_mask,
        }
    }
}

static DIRS: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty directory under the system's temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory whose name holds `name`, the process id and a counter.
    ///
    /// # Panics
    /// When the directory cannot be created.
    #[must_use]
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "calybris-test-{name}-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("create {}: {error}", path.display()));
        Self(path)
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_the_workload_generator() {
        let mut ours = SplitMix64::new(42);
        let mut theirs = calybris_workload::SplitMix64::new(42);
        for _ in 0..8 {
            assert_eq!(ours.next_u64(), theirs.next_u64());
        }
    }

    #[test]
    fn a_temp_dir_exists_until_dropped() {
        let dir = TempDir::new("testkit");
        let path = dir.path().to_path_buf();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());
    }
}
