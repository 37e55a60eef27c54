//! The keyed pseudo-random function every learning draw comes from.
//!
//! A decision's randomness is a pure function of three things an auditor has: the
//! engine key (a replay seed recorded with the engine's configuration), the digest of
//! the engine state the decision saw, and the digest of the decision's input. There is
//! no clock and no OS randomness.
//!
//! - Seed: `HMAC-SHA-256(key, PRF_DOMAIN_TAG ‖ state_digest ‖ input_digest)`.
//! - Block `b` of stream `(purpose, index)`:
//!   `SHA-256(seed ‖ purpose (u32 BE) ‖ index (u64 BE) ‖ b (u64 BE))`, 52 bytes, so
//!   one SHA-256 compression per block.
//! - Each block gives four 64-bit words, read big-endian in order.
//!
//! On the words: [`Stream::below`] draws a uniform integer in `[0, n)` by rejection
//! (no modulo bias), [`Stream::unit_f64`] a uniform multiple of 2^-53 in `[0, 1)`,
//! [`Stream::unit_open_f64`] an odd multiple of 2^-53 in `(0, 1)` and
//! [`Stream::fixed_unit`] a `bits`-bit fixed-point fraction. All conversions are exact.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::LearnError;

/// The domain-separation prefix of the seed derivation (21 ASCII bytes).
pub const PRF_DOMAIN_TAG: &[u8; 21] = b"calybris/adapt/prf/v1";

/// The length of a PRF key, in bytes.
pub const PRF_KEY_LEN: usize = 32;

/// The length of a digest (state or input) in the context, in bytes.
pub const DIGEST_LEN: usize = 32;

/// The most words [`Stream::below`] may reject in a row (each with probability below
/// n / 2^64 ≤ 1/2) before it gives up.
pub const REJECTED_WORDS_MAX: u32 = 128;

/// The number of 64-bit words one SHA-256 block output gives.
const WORDS_PER_BLOCK: usize = 4;

/// The scale 2^-53 of [`Stream::unit_f64`], exact.
const TWO_POW_MINUS_53: f64 = 1.0 / 9_007_199_254_740_992.0;

/// What a stream is used for: distinct purposes never share words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Purpose {
    /// Thompson draws: index 0 is the decision's draw, 1..=K the propensity re-draws.
    Thompson = 1,
    /// The epsilon-greedy baseline's explore coin and uniform arm.
    EpsilonGreedy = 2,
    /// The engine's exploration gate (explore with `exploration_bps`).
    Exploration = 3,
    /// Free for tests, benches and callers outside the engine.
    External = 0xFFFF_FFFF,
}

/// The key of the PRF. `Debug` prints only that it is a key.
#[derive(Clone, PartialEq, Eq)]
pub struct PrfKey([u8; PRF_KEY_LEN]);

impl core::fmt::Debug for PrfKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PrfKey(..)")
    }
}

impl PrfKey {
    /// A key from its 32 bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; PRF_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key's bytes (for recording the replay seed with the configuration).
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; PRF_KEY_LEN] {
        &self.0
    }
}

/// The PRF bound to one context (state digest, input digest): a factory of streams.
#[derive(Clone, PartialEq, Eq)]
pub struct Prf {
    seed: [u8; 32],
}

impl core::fmt::Debug for Prf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Prf(..)")
    }
}

impl Prf {
    /// Binds `key` to a decision context: the digest of the engine state the decision
    /// sees and the digest of the decision's input.
    #[must_use]
    pub fn new(
        key: &PrfKey,
        state_digest: &[u8; DIGEST_LEN],
        input_digest: &[u8; DIGEST_LEN],
    ) -> Self {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail on 32 bytes.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(PRF_DOMAIN_TAG);
        mac.update(state_digest);
        mac.update(input_digest);
        Self {
            seed: mac.finalize().into_bytes().into(),
        }
    }

    /// The stream `(purpose, index)`, positioned at its first word.
    #[must_use]
    pub const fn stream(&self, purpose: Purpose, index: u64) -> Stream {
        Stream {
            seed: self.seed,
            purpose: purpose as u32,
            index,
            block: 0,
            words: [0; WORDS_PER_BLOCK],
            next_word: WORDS_PER_BLOCK,
        }
    }
}

/// A sequence of 64-bit words, taken in order; the same PRF, purpose and index give
/// the same words everywhere.
#[derive(Clone, Debug)]
pub struct Stream {
    seed: [u8; 32],
    purpose: u32,
    index: u64,
    block: u64,
    words: [u64; WORDS_PER_BLOCK],
    next_word: usize,
}

impl Stream {
    /// Computes the next block of words.
    fn refill(&mut self) {
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(self.purpose.to_be_bytes());
        h.update(self.index.to_be_bytes());
        h.update(self.block.to_be_bytes());
        let out: [u8; 32] = h.finalize().into();
        for (word, chunk) in self.words.iter_mut().zip(out.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            *word = u64::from_be_bytes(bytes);
        }
        // 2^64 blocks of 32 bytes are beyond any bound of this crate; wrapping would
        // only repeat words, never misbehave.
        self.block = self.block.wrapping_add(1);
        self.next_word = 0;
    }

    /// The next word.
    pub fn next_u64(&mut self) -> u64 {
        if self.next_word == WORDS_PER_BLOCK {
            self.refill();
        }
        debug_assert!(self.next_word < WORDS_PER_BLOCK);
        let w = self.words[self.next_word];
        self.next_word += 1;
        w
    }

    /// A uniform integer in `[0, n)`: words at or above the largest multiple of `n`
    /// not above 2^64 are rejected, then the word is reduced modulo `n`.
    ///
    /// # Errors
    /// [`LearnError::EmptyRange`] for `n = 0`; [`LearnError::Exhausted`] after
    /// [`REJECTED_WORDS_MAX`] rejections in a row.
    pub fn below(&mut self, n: u64) -> Result<u64, LearnError> {
        if n == 0 {
            return Err(LearnError::EmptyRange);
        }
        // 2^64 mod n: accepted words are those below 2^64 - (2^64 mod n).
        let excess = (u64::MAX % n + 1) % n;
        let accept_max = u64::MAX - excess;
        for _ in 0..REJECTED_WORDS_MAX {
            let w = self.next_u64();
            if w <= accept_max {
                let r = w % n;
                debug_assert!(r < n);
                return Ok(r);
            }
        }
        Err(LearnError::Exhausted {
            what: "uniform integer",
            attempts: REJECTED_WORDS_MAX,
        })
    }

    /// A uniform `k · 2^-53` in `[0, 1)` from the top 53 bits of one word (exact).
    pub fn unit_f64(&mut self) -> f64 {
        let k = self.next_u64() >> 11;
        // k < 2^53, so the conversion and the scaling are exact.
        (k as f64) * TWO_POW_MINUS_53
    }

    /// A uniform `(2k + 1) · 2^-53` in `(0, 1)` from the top 52 bits of one word
    /// (exact; never 0, never 1).
    pub fn unit_open_f64(&mut self) -> f64 {
        let k = self.next_u64() >> 12;
        let odd = 2 * k + 1;
        debug_assert!(odd < (1u64 << 53));
        (odd as f64) * TWO_POW_MINUS_53
    }

    /// A uniform fixed-point fraction `k / 2^bits`, returned as `k` (the top `bits`
    /// bits of one word), for `bits` in 1..=64.
    ///
    /// # Errors
    /// [`LearnError::EmptyRange`] for `bits` outside 1..=64.
    pub fn fixed_unit(&mut self, bits: u32) -> Result<u64, LearnError> {
        if !(1..=64).contains(&bits) {
            return Err(LearnError::EmptyRange);
        }
        Ok(self.next_u64() >> (64 - bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prf() -> Prf {
        Prf::new(&PrfKey::from_bytes([9; 32]), &[1; 32], &[2; 32])
    }

    #[test]
    fn streams_replay_and_separate() {
        let p = prf();
        let a: Vec<u64> = {
            let mut s = p.stream(Purpose::Thompson, 0);
            (0..9).map(|_| s.next_u64()).collect()
        };
        let mut s = p.stream(Purpose::Thompson, 0);
        let b: Vec<u64> = (0..9).map(|_| s.next_u64()).collect();
        assert_eq!(a, b);
        let mut other = p.stream(Purpose::Thompson, 1);
        assert_ne!(a[0], other.next_u64());
        let mut other = p.stream(Purpose::Exploration, 0);
        assert_ne!(a[0], other.next_u64());
        let q = Prf::new(&PrfKey::from_bytes([9; 32]), &[1; 32], &[3; 32]);
        assert_ne!(a[0], q.stream(Purpose::Thompson, 0).next_u64());
    }

    #[test]
    fn the_first_word_is_the_documented_hash() {
        // Recompute the layout by hand: HMAC seed, then SHA-256 of the 52-byte block.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[9; 32]).unwrap();
        mac.update(b"calybris/adapt/prf/v1");
        mac.update(&[1; 32]);
        mac.update(&[2; 32]);
        let seed: [u8; 32] = mac.finalize().into_bytes().into();
        let mut block = Vec::new();
        block.extend_from_slice(&seed);
        block.extend_from_slice(&3u32.to_be_bytes());
        block.extend_from_slice(&5u64.to_be_bytes());
        block.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(block.len(), 52);
        let out: [u8; 32] = Sha256::digest(&block).into();
        let expected = u64::from_be_bytes(out[..8].try_into().unwrap());
        assert_eq!(prf().stream(Purpose::Exploration, 5).next_u64(), expected);
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut s = prf().stream(Purpose::External, 0);
        assert_eq!(s.below(0), Err(LearnError::EmptyRange));
        assert_eq!(s.below(1), Ok(0));
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            let r = s.below(3).unwrap();
            counts[usize::try_from(r).unwrap()] += 1;
        }
        // Each count is Binomial(30000, 1/3): mean 10000, sd 82; 6 sd is 490.
        for c in counts {
            assert!((9_510..=10_490).contains(&c), "{counts:?}");
        }
        // n just above 2^63 rejects about half of the words and stays in range.
        let n = (1u64 << 63) + 1;
        for _ in 0..100 {
            assert!(s.below(n).unwrap() < n);
        }
    }

    #[test]
    fn unit_fractions_are_exact_and_in_range() {
        let mut s = prf().stream(Purpose::External, 1);
        for _ in 0..1000 {
            let u = s.unit_f64();
            assert!((0.0..1.0).contains(&u));
            assert_eq!((u * 9_007_199_254_740_992.0).fract(), 0.0);
            let o = s.unit_open_f64();
            assert!(o > 0.0 && o < 1.0);
            let k = o * 9_007_199_254_740_992.0;
            assert_eq!(k.fract(), 0.0);
            assert_eq!(k % 2.0, 1.0);
            assert!(s.fixed_unit(10).unwrap() < 1024);
        }
        assert_eq!(s.fixed_unit(0), Err(LearnError::EmptyRange));
        assert_eq!(s.fixed_unit(65), Err(LearnError::EmptyRange));
    }
}
