//! The keyed pseudo-random function every learning draw comes from.
//!
//! A decision's randomness is a pure function of three things an auditor has: the
//! engine key (a replay seed recorded with the engine's configuration), the digest of
//! the engine state the decision saw, and the digest of the decision's input. There is
//! no clock and no OS randomness.
//!
//! - Seed, once per decision: `HMAC-SHA-256(key, PRF_DOMAIN_TAG ‖ state_digest ‖
//!   input_digest)` ([`PrfKeyed`] keys the HMAC once, so a decision costs three
//!   SHA-256 compressions).
//! - Stream `(purpose, index)`: the ChaCha12 block function (RFC 8439's layout with 12
//!   rounds instead of 20) keyed by the seed, with the block counter from 0 and the
//!   nonce `purpose (u32 LE) ‖ index (u64 LE)`. Each 64-byte block gives eight 64-bit
//!   words, read little-endian in order.
//!
//! On the words: [`Stream::below`] draws a uniform integer in `[0, n)` by rejection
//! (no modulo bias), [`Stream::unit_f64`] a uniform multiple of 2^-53 in `[0, 1)`,
//! [`Stream::unit_open_f64`] an odd multiple of 2^-53 in `(0, 1)` and
//! [`Stream::fixed_unit`] a `bits`-bit fixed-point fraction. All conversions are exact.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::LearnError;

/// The domain-separation prefix of the seed derivation (21 ASCII bytes).
pub const PRF_DOMAIN_TAG: &[u8; 21] = b"calybris/adapt/prf/v2";

/// The length of a PRF key, in bytes.
pub const PRF_KEY_LEN: usize = 32;

/// The length of a digest (state or input) in the context, in bytes.
pub const DIGEST_LEN: usize = 32;

/// The most words [`Stream::below`] may reject in a row (each with probability below
/// n / 2^64 ≤ 1/2) before it gives up.
pub const REJECTED_WORDS_MAX: u32 = 128;

/// The number of ChaCha rounds of a block (six double rounds).
pub const CHACHA_ROUNDS: usize = 12;

/// The number of 64-bit words one ChaCha block gives.
const WORDS_PER_BLOCK: usize = 8;

/// "expand 32-byte k", RFC 8439's constants.
const CHACHA_CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

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
    /// A column of the engine's Thompson table: the keyed posterior draws of one arm
    /// in one regime ([`StateStreams::column`]).
    Table = 4,
    /// A decision of the engine ([`StateStreams::decision`]).
    Decision = 6,
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

/// A [`PrfKey`] with its HMAC keyed once: binding it to a decision context costs the
/// HMAC of the context only (three SHA-256 compressions, against five for
/// [`Prf::new`]); the seed is the same.
#[derive(Clone)]
pub struct PrfKeyed {
    mac: Hmac<Sha256>,
}

impl core::fmt::Debug for PrfKeyed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PrfKeyed(..)")
    }
}

impl PrfKeyed {
    /// Keys the HMAC with `key`.
    #[must_use]
    pub fn new(key: &PrfKey) -> Self {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail on 32 bytes.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        Self { mac }
    }

    /// The PRF of one decision context (see [`Prf::new`]).
    #[must_use]
    pub fn context(&self, state_digest: &[u8; DIGEST_LEN], input_digest: &[u8; DIGEST_LEN]) -> Prf {
        let mut mac = self.mac.clone();
        mac.update(PRF_DOMAIN_TAG);
        mac.update(state_digest);
        mac.update(input_digest);
        let seed: [u8; 32] = mac.finalize().into_bytes().into();
        Prf::from_seed(seed)
    }
}

/// The PRF bound to one context (state digest, input digest): a factory of streams.
#[derive(Clone, PartialEq, Eq)]
pub struct Prf {
    /// The ChaCha key: the seed as eight little-endian words.
    key: [u32; 8],
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
        PrfKeyed::new(key).context(state_digest, input_digest)
    }

    fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: words_le(&seed),
        }
    }

    /// The stream `(purpose, index)`, positioned at its first word.
    #[must_use]
    pub const fn stream(&self, purpose: Purpose, index: u64) -> Stream {
        // The nonce purpose ‖ index (u64 LE) as three little-endian words.
        Stream::chacha(
            self.key,
            0,
            [purpose as u32, index as u32, (index >> 32) as u32],
        )
    }
}

/// The engine's streams (PRF v3, `docs/ADAPT.md` section 1): ChaCha12 keyed once with
/// the engine key itself, every stream named by the block function's four input words
/// (counter and nonce), so no SHA-256 is computed per decision.
///
/// - [`column`](Self::column): the draws of one column of the Thompson table, named by
///   the state (regime, arm, the regime's update count at the refresh): counter from
///   0, nonce `[4, regime · 2^16 + arm, refreshed_at]`.
/// - [`decision`](Self::decision): a decision's words, named by the state version `v`
///   (the count of applied updates, below 2^40) and the first 8 bytes of the input
///   digest: counter `(v mod 2^24) · 2^8 + block` (blocks 0..256 of the stream), nonce
///   `[6 + ⌊v / 2^24⌋ · 2^16, input word 0, input word 1]` (words `u32` LE). The low 16
///   bits of the first nonce word (4 or 6) keep the two kinds apart.
#[derive(Clone, PartialEq, Eq)]
pub struct StateStreams {
    key: [u32; 8],
}

impl core::fmt::Debug for StateStreams {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("StateStreams(..)")
    }
}

/// The largest state version a decision stream can name (exclusive): 2^40. An engine
/// applies at most 64 regimes × (2^31 − 1) updates, below 2^37.
pub const VERSION_LIMIT: u64 = 1 << 40;

/// The blocks of one decision stream: 2^8 (2,048 words). A decision takes at most four
/// uniform integers of at most [`REJECTED_WORDS_MAX`] words each (512 words).
pub const DECISION_BLOCKS: u32 = 1 << 8;

impl StateStreams {
    /// The streams of `key` (its 32 bytes read as eight `u32` LE: the ChaCha key).
    #[must_use]
    pub fn new(key: &PrfKey) -> Self {
        Self {
            key: words_le(&key.0),
        }
    }

    /// The stream of the Thompson table column of `arm` in `regime`, refreshed when the
    /// regime had applied `refreshed_at` updates.
    #[must_use]
    pub const fn column(&self, regime: u16, arm: u16, refreshed_at: u32) -> Stream {
        let named = ((regime as u32) << 16) | arm as u32;
        Stream::chacha(self.key, 0, [Purpose::Table as u32, named, refreshed_at])
    }

    /// The stream of the decision on `input_digest` under state version `version`
    /// (below [`VERSION_LIMIT`]).
    #[must_use]
    pub fn decision(&self, version: u64, input_digest: &[u8; DIGEST_LEN]) -> Stream {
        debug_assert!(version < VERSION_LIMIT);
        let word = |i: usize| {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(&input_digest[4 * i..4 * i + 4]);
            u32::from_le_bytes(bytes)
        };
        // Truncations intended: the version's low 24 bits and its next 16 bits.
        let low = ((version & 0xFF_FFFF) as u32) << 8;
        let high = (((version >> 24) & 0xFFFF) as u32) << 16;
        Stream::chacha(
            self.key,
            low,
            [Purpose::Decision as u32 | high, word(0), word(1)],
        )
    }
}

/// 32 bytes as eight little-endian words.
fn words_le(bytes: &[u8; 32]) -> [u32; 8] {
    let mut key = [0u32; 8];
    for (word, chunk) in key.iter_mut().zip(bytes.chunks_exact(4)) {
        let mut b = [0u8; 4];
        b.copy_from_slice(chunk);
        *word = u32::from_le_bytes(b);
    }
    key
}

#[inline(always)]
const fn quarter_round(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

/// The ChaCha block function with [`CHACHA_ROUNDS`] rounds: RFC 8439 section 2.3's
/// state (constants, key, counter, nonce), the rounds, the input added back.
#[must_use]
pub fn chacha_block(key: &[u32; 8], counter: u32, nonce: &[u32; 3]) -> [u32; 16] {
    chacha_block_rounds(key, counter, nonce, CHACHA_ROUNDS)
}

/// The block function with `rounds` rounds (even): 20 is RFC 8439's ChaCha20.
#[inline(always)]
fn chacha_block_rounds(key: &[u32; 8], counter: u32, nonce: &[u32; 3], rounds: usize) -> [u32; 16] {
    debug_assert!(rounds.is_multiple_of(2));
    let mut input = [0u32; 16];
    input[..4].copy_from_slice(&CHACHA_CONSTANTS);
    input[4..12].copy_from_slice(key);
    input[12] = counter;
    input[13..].copy_from_slice(nonce);
    let mut s = input;
    for _ in 0..rounds / 2 {
        quarter_round(&mut s, 0, 4, 8, 12);
        quarter_round(&mut s, 1, 5, 9, 13);
        quarter_round(&mut s, 2, 6, 10, 14);
        quarter_round(&mut s, 3, 7, 11, 15);
        quarter_round(&mut s, 0, 5, 10, 15);
        quarter_round(&mut s, 1, 6, 11, 12);
        quarter_round(&mut s, 2, 7, 8, 13);
        quarter_round(&mut s, 3, 4, 9, 14);
    }
    for (out, x) in s.iter_mut().zip(input) {
        *out = out.wrapping_add(x);
    }
    s
}

/// A sequence of 64-bit words, taken in order; the same PRF, purpose and index give
/// the same words everywhere.
#[derive(Clone, Debug)]
pub struct Stream {
    key: [u32; 8],
    nonce: [u32; 3],
    block: u32,
    words: [u64; WORDS_PER_BLOCK],
    next_word: usize,
}

impl Stream {
    /// The stream of ChaCha12 blocks `first`, `first + 1`, ... under `key` and `nonce`.
    const fn chacha(key: [u32; 8], first: u32, nonce: [u32; 3]) -> Self {
        Self {
            key,
            nonce,
            block: first,
            words: [0; WORDS_PER_BLOCK],
            next_word: WORDS_PER_BLOCK,
        }
    }

    /// Computes the next block of words.
    fn refill(&mut self) {
        let out = chacha_block(&self.key, self.block, &self.nonce);
        // Bytes 8i..8i+8 little-endian: the low word first.
        for (word, pair) in self.words.iter_mut().zip(out.chunks_exact(2)) {
            *word = u64::from(pair[0]) | (u64::from(pair[1]) << 32);
        }
        // 2^32 blocks (2^35 words) are beyond any bound of this crate (a draw takes a
        // few words per arm); wrapping would only repeat words, never misbehave.
        self.block = self.block.wrapping_add(1);
        self.next_word = 0;
    }

    /// The next word.
    #[inline]
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
    fn the_block_function_is_rfc_8439s() {
        // RFC 8439 section 2.3.2: key 00..1f, counter 1, nonce 00 00 00 09 00 00 00 4a
        // 00 00 00 00, with 20 rounds.
        let mut key = [0u32; 8];
        for (i, w) in key.iter_mut().enumerate() {
            let b = u8::try_from(4 * i).unwrap();
            *w = u32::from_le_bytes([b, b + 1, b + 2, b + 3]);
        }
        let out = chacha_block_rounds(&key, 1, &[0x0900_0000, 0x4a00_0000, 0], 20);
        let expected = [
            0xe4e7_f110,
            0x1559_3bd1,
            0x1fdd_0f50,
            0xc471_20a3,
            0xc7f4_d1c7,
            0x0368_c033,
            0x9aaa_2204,
            0x4e6c_d4c3,
            0x4664_82d2,
            0x09aa_9f07,
            0x05d7_c214,
            0xa202_8bd9,
            0xd19c_12b5,
            0xb94e_16de,
            0xe883_d0cb,
            0x4e3c_50a2,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn the_first_word_is_the_documented_block() {
        // By hand: the HMAC seed, then ChaCha12 with the seed as key, counter 0 and
        // the nonce purpose ‖ index (little-endian); word 0 is bytes 0..8 LE.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[9; 32]).unwrap();
        mac.update(b"calybris/adapt/prf/v2");
        mac.update(&[1; 32]);
        mac.update(&[2; 32]);
        let seed: [u8; 32] = mac.finalize().into_bytes().into();
        let mut key = [0u32; 8];
        for (w, c) in key.iter_mut().zip(seed.chunks_exact(4)) {
            *w = u32::from_le_bytes(c.try_into().unwrap());
        }
        let block = chacha_block_rounds(&key, 0, &[3, 5, 0], 12);
        let expected = u64::from(block[0]) | (u64::from(block[1]) << 32);
        let mut s = prf().stream(Purpose::Exploration, 5);
        assert_eq!(s.next_u64(), expected);
        // Word 8 is the first of block 1.
        for _ in 1..8 {
            let _ = s.next_u64();
        }
        let block1 = chacha_block_rounds(&key, 1, &[3, 5, 0], 12);
        assert_eq!(
            s.next_u64(),
            u64::from(block1[0]) | (u64::from(block1[1]) << 32)
        );
        // The pre-keyed HMAC gives the same seed.
        let keyed = PrfKeyed::new(&PrfKey::from_bytes([9; 32])).context(&[1; 32], &[2; 32]);
        assert_eq!(keyed, prf());
    }

    #[test]
    fn the_state_streams_are_the_documented_blocks() {
        // v3: ChaCha12 keyed with the engine key itself (eight u32 LE).
        let key_bytes: [u8; 32] = core::array::from_fn(|i| u8::try_from(i * 7 % 256).unwrap());
        let key = words_le(&key_bytes);
        assert_eq!(key[0], u32::from_le_bytes([0, 7, 14, 21]));
        let streams = StateStreams::new(&PrfKey::from_bytes(key_bytes));
        let word = |b: &[u32; 16], i: usize| u64::from(b[2 * i]) | (u64::from(b[2 * i + 1]) << 32);
        // A column: counter from 0, nonce [4, regime · 2^16 + arm, refreshed_at].
        let block = chacha_block_rounds(&key, 0, &[4, (3 << 16) | 17, 250], 12);
        let mut column = streams.column(3, 17, 250);
        assert_eq!(column.next_u64(), word(&block, 0));
        // A decision: counter (v mod 2^24)·2^8 + block, nonce [6 + ⌊v/2^24⌋·2^16,
        // input words 0 and 1]; the rest of the input digest is not named.
        let version = (5u64 << 24) | 0x00_0102;
        let mut input = [0xeeu8; 32];
        input[..8].copy_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        let nonce = [6 | (5 << 16), 1, 2];
        let first = chacha_block_rounds(&key, 0x0102 << 8, &nonce, 12);
        let second = chacha_block_rounds(&key, (0x0102 << 8) + 1, &nonce, 12);
        let mut decision = streams.decision(version, &input);
        assert_eq!(decision.next_u64(), word(&first, 0));
        for _ in 1..8 {
            let _ = decision.next_u64();
        }
        assert_eq!(decision.next_u64(), word(&second, 0));
        // Distinct names, distinct words.
        assert_ne!(
            streams.column(3, 17, 250).next_u64(),
            streams.column(3, 17, 251).next_u64()
        );
        assert_ne!(
            streams.decision(1, &input).next_u64(),
            streams.decision(2, &input).next_u64()
        );
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
