//! The keyed, replayable percentile bootstrap.
//!
//! Resampling indices come from SHA-256 in counter mode over a caller key, the
//! replicate number and a block counter: no OS randomness, no clock, no
//! platform-dependent generator. The same key, rows and configuration give the same
//! interval bit for bit everywhere. The key is a replay seed, not a secret: this is
//! not a MAC, and nothing here depends on the key staying private.

use sha2::{Digest, Sha256};

use super::OpeError;
use super::estimate::{Estimator, EstimatorConfig, Interval, Prepared, Store, Summand, mean_only};
use super::round::LoggedRound;

/// The domain-separation prefix of the seed derivation (25 ASCII bytes).
pub const BOOTSTRAP_DOMAIN_TAG: &[u8; 25] = b"calybris/ope/bootstrap/v1";

/// The length of a bootstrap key, in bytes.
pub const BOOTSTRAP_KEY_LEN: usize = 32;

/// The largest number of replicates one call may ask for: bounds the time
/// (replicates × used rounds resampled) and the memory of the sorted replicates.
pub const BOOTSTRAP_REPLICATES_MAX: u32 = 100_000;

/// The lower percentile of the 95 % interval, in per mille.
pub const PERCENTILE_LOWER_PER_MILLE: u64 = 25;

/// The upper percentile of the 95 % interval, in per mille.
pub const PERCENTILE_UPPER_PER_MILLE: u64 = 975;

/// The most words [`IndexStream`] may reject in a row (each with probability below
/// n / 2^64) before it gives up.
const REJECTED_WORDS_MAX: u32 = 64;

/// The number of 64-bit words one SHA-256 block output gives.
const WORDS_PER_BLOCK: usize = 4;

/// The key that fixes every resampling of a bootstrap.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapKey([u8; BOOTSTRAP_KEY_LEN]);

impl BootstrapKey {
    /// A key from its 32 bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; BOOTSTRAP_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; BOOTSTRAP_KEY_LEN] {
        &self.0
    }

    /// The derived seed `SHA-256(BOOTSTRAP_DOMAIN_TAG ‖ key)`.
    fn seed(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(BOOTSTRAP_DOMAIN_TAG);
        h.update(self.0);
        h.finalize().into()
    }
}

impl core::fmt::Debug for BootstrapKey {
    /// Shows only the length, so that keys do not end up in logs by accident.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "BootstrapKey({BOOTSTRAP_KEY_LEN} bytes)")
    }
}

/// The stream of resampling indices of one replicate.
///
/// Block `c` is `SHA-256(seed ‖ LE64(replicate) ‖ LE64(c))` for `c = 0, 1, …`; each
/// block gives four words, bytes `8j..8j+8` read little-endian. A word `x` maps to
/// index `x mod n` if `x ≤ 2^64 − 1 − (2^64 mod n)`, and is skipped otherwise, so
/// every index in `0..n` is exactly equally likely.
pub struct IndexStream {
    seed: [u8; 32],
    replicate: u64,
    counter: u64,
    words: [u64; WORDS_PER_BLOCK],
    next_word: usize,
    n: u64,
    accept_max: u64,
}

impl IndexStream {
    /// The stream of indices into `0..n` for one replicate under one key.
    ///
    /// # Panics
    /// If `n` is zero.
    #[must_use]
    pub fn new(key: &BootstrapKey, replicate: u64, n: u64) -> Self {
        Self::from_seed(key.seed(), replicate, n)
    }

    fn from_seed(seed: [u8; 32], replicate: u64, n: u64) -> Self {
        assert!(n > 0, "resampling needs at least one round");
        // 2^64 mod n, computed without 128-bit arithmetic.
        let wrap = (u64::MAX % n + 1) % n;
        Self {
            seed,
            replicate,
            counter: 0,
            words: [0; WORDS_PER_BLOCK],
            next_word: WORDS_PER_BLOCK,
            n,
            accept_max: u64::MAX - wrap,
        }
    }

    fn refill(&mut self) {
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(self.replicate.to_le_bytes());
        h.update(self.counter.to_le_bytes());
        let block: [u8; 32] = h.finalize().into();
        for (j, word) in self.words.iter_mut().enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&block[8 * j..8 * j + 8]);
            *word = u64::from_le_bytes(bytes);
        }
        self.counter += 1;
        self.next_word = 0;
    }

    fn next_word(&mut self) -> u64 {
        if self.next_word == WORDS_PER_BLOCK {
            self.refill();
        }
        let word = self.words[self.next_word];
        self.next_word += 1;
        word
    }
}

impl Iterator for IndexStream {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        // A word is rejected with probability below n / 2^64, so a run of
        // `REJECTED_WORDS_MAX` rejections in a row would mean SHA-256 is broken; the
        // bound turns that into a loud failure instead of a silent hang.
        for _ in 0..=REJECTED_WORDS_MAX {
            let word = self.next_word();
            if word <= self.accept_max {
                return Some(word % self.n);
            }
        }
        panic!("{REJECTED_WORDS_MAX} index words rejected in a row");
    }
}

/// A bootstrap's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Bootstrap {
    /// The 95 % percentile interval: sorted replicates at positions
    /// `⌈0.025·B⌉ − 1` and `⌈0.975·B⌉ − 1` (0-based).
    pub interval: Interval,
    /// Every replicate's estimate, sorted ascending (by `f64::total_cmp`).
    pub replicates: Vec<f64>,
}

/// The 0-based position of the `per_mille` percentile among `count` sorted values,
/// by nearest rank: `⌈per_mille · count / 1000⌉ − 1`, at least 0.
fn percentile_position(count: u64, per_mille: u64) -> usize {
    debug_assert!(count > 0 && per_mille <= 1000);
    let rank = (count * per_mille).div_ceil(1000).max(1);
    (rank - 1) as usize
}

/// A keyed percentile bootstrap of an estimator.
///
/// The used rounds (after the same checks as [`estimate`](super::estimate)) are
/// resampled `replicates` times with replacement, `n_used` draws each, from
/// [`IndexStream`]s of replicate numbers `0..replicates`. Each replicate's estimate
/// is the estimator applied to the resample in draw order (normalised estimators
/// re-normalise within the resample).
///
/// # Errors
/// [`OpeError::Replicates`] unless `1 ≤ replicates ≤ BOOTSTRAP_REPLICATES_MAX`, and
/// every error of [`estimate`](super::estimate).
pub fn bootstrap(
    rows: &[LoggedRound],
    estimator: Estimator,
    config: &EstimatorConfig,
    key: &BootstrapKey,
    replicates: u32,
) -> Result<Bootstrap, OpeError> {
    if replicates == 0 || replicates > BOOTSTRAP_REPLICATES_MAX {
        return Err(OpeError::Replicates {
            replicates,
            max: BOOTSTRAP_REPLICATES_MAX,
        });
    }
    let prepared = Prepared::new(rows, estimator, config)?;
    let seed = key.seed();
    let mut values = match &prepared.store {
        Store::Plain(terms) => replicate_values(terms, seed, replicates),
        Store::Normalised(parts) => replicate_values(parts, seed, replicates),
    };
    values.sort_by(f64::total_cmp);
    let count = u64::from(replicates);
    let interval = Interval {
        lower: values[percentile_position(count, PERCENTILE_LOWER_PER_MILLE)],
        upper: values[percentile_position(count, PERCENTILE_UPPER_PER_MILLE)],
    };
    debug_assert!(interval.lower.total_cmp(&interval.upper).is_le());
    Ok(Bootstrap {
        interval,
        replicates: values,
    })
}

/// Every replicate's estimate, in replicate order: replicate `b` draws `n` indices
/// from its own stream and takes the mean over the resample in draw order.
fn replicate_values<T: Summand>(items: &[T], seed: [u8; 32], replicates: u32) -> Vec<f64> {
    let n = items.len() as u64;
    let mut resample: Vec<T> = Vec::with_capacity(items.len());
    let mut values = Vec::with_capacity(replicates as usize);
    for replicate in 0..u64::from(replicates) {
        resample.clear();
        let stream = IndexStream::from_seed(seed, replicate, n);
        resample.extend(stream.take(items.len()).map(|i| items[i as usize]));
        debug_assert_eq!(resample.len(), items.len());
        values.push(mean_only(&resample));
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_positions_follow_nearest_rank() {
        assert_eq!(percentile_position(1, 25), 0);
        assert_eq!(percentile_position(1, 975), 0);
        assert_eq!(percentile_position(1000, 25), 24);
        assert_eq!(percentile_position(1000, 975), 974);
        assert_eq!(percentile_position(200, 25), 4);
        assert_eq!(percentile_position(200, 975), 194);
    }

    #[test]
    fn rejection_threshold_is_exact() {
        let s = IndexStream::from_seed([0; 32], 0, 3);
        // 2^64 mod 3 = 1, so the largest accepted word is 2^64 - 2.
        assert_eq!(s.accept_max, u64::MAX - 1);
        let s = IndexStream::from_seed([0; 32], 0, 1 << 32);
        assert_eq!(s.accept_max, u64::MAX);
    }
}
