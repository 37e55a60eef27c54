//! Test support shared by the test suites and the benches of the workspace that are
//! not published: the seeded generator ([`SplitMix64`]) and the `CALYBRIS_SEED`
//! convention ([`seed_from_env`]), both from `calybris-workload` so that the demo, the
//! benches and the tests draw from one generator, and [`TempDir`].
//!
//! The published crates' own tests cannot depend on this crate (it is not published,
//! and their tests run from their packages): they take the generator from
//! `calybris-workload` directly.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use calybris_workload::{SEED_VAR, SplitMix64, parse_seed, seed_from_env};

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
