//! Two SHA-256 compressions side by side.
//!
//! A tree is built from many independent hashes: the leaf hashes of a tile, and
//! the pairs of each of its levels. One SHA-256 compression is a chain of 64
//! dependent rounds, so a single stream leaves the SHA extension's unit idle for
//! most of each round's latency (on the x86-64 machines this project measures,
//! `sha256rnds2` has a latency of about twice its issue interval). Running two
//! independent streams round by round fills that gap: [`compress_pair`] computes
//! two compressions in about the time of one when the CPU has the SHA extension,
//! and falls back to two calls of `sha2`'s compression otherwise (other
//! architectures, a CPU without the extension, and Miri).
//!
//! This is the crate's only `unsafe`: the call into the function compiled with
//! the SHA extension, made only after the running CPU was seen to have it. The
//! function itself is safe code (its intrinsics take no pointers), and
//! `tests::pair_matches_sha2` checks it against `sha2` on random input.

/// One 64-byte SHA-256 message block.
pub(crate) type Block = [u8; 64];

/// Compresses `blocks_a` into `state_a` and `blocks_b` into `state_b`, exactly as
/// `sha2::block_api::compress256` would one after the other.
///
/// Both streams have the same number of blocks (the callers hash pairs of
/// inputs of one shape: two leaves, or two nodes).
pub(crate) fn compress_pair(
    state_a: &mut [u32; 8],
    blocks_a: &[Block],
    state_b: &mut [u32; 8],
    blocks_b: &[Block],
) {
    debug_assert_eq!(blocks_a.len(), blocks_b.len(), "the streams are paired");
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        if shani::available() {
            for (a, b) in blocks_a.iter().zip(blocks_b) {
                shani::compress_pair(state_a, a, state_b, b);
            }
            return;
        }
    }
    sha2::block_api::compress256(state_a, blocks_a);
    sha2::block_api::compress256(state_b, blocks_b);
}

/// Whether [`compress_pair`] runs the two streams interleaved on this CPU (for
/// the tests).
#[cfg(test)]
#[must_use]
pub(crate) fn interleaved() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        shani::available()
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        false
    }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod shani {
    use core::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_extract_epi32, _mm_set_epi32,
        _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi32,
    };
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::Block;

    /// 0: not yet detected; 1: absent; 2: present.
    static DETECTED: AtomicU8 = AtomicU8::new(0);

    pub(super) fn available() -> bool {
        match DETECTED.load(Ordering::Relaxed) {
            2 => true,
            1 => false,
            _ => {
                let present = std::arch::is_x86_feature_detected!("sha")
                    && std::arch::is_x86_feature_detected!("sse2")
                    && std::arch::is_x86_feature_detected!("ssse3")
                    && std::arch::is_x86_feature_detected!("sse4.1");
                DETECTED.store(if present { 2 } else { 1 }, Ordering::Relaxed);
                present
            }
        }
    }

    /// The 64 round constants of FIPS 180-4, four to a vector (lane 0 first).
    const K: [[u32; 4]; 16] = [
        [0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5],
        [0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5],
        [0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3],
        [0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174],
        [0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc],
        [0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da],
        [0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7],
        [0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967],
        [0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13],
        [0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85],
        [0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3],
        [0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070],
        [0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5],
        [0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3],
        [0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208],
        [0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2],
    ];

    #[allow(clippy::cast_possible_wrap)]
    #[target_feature(enable = "sse2")]
    fn vector(words: [u32; 4]) -> __m128i {
        _mm_set_epi32(
            words[3] as i32,
            words[2] as i32,
            words[1] as i32,
            words[0] as i32,
        )
    }

    /// The block's sixteen big-endian message words, four to a vector.
    #[target_feature(enable = "sse2")]
    fn message(block: &Block) -> [__m128i; 4] {
        let mut words = [[0u32; 4]; 4];
        for (group, bytes) in words.iter_mut().zip(block.chunks_exact(16)) {
            for (word, b) in group.iter_mut().zip(bytes.chunks_exact(4)) {
                *word = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        [
            vector(words[0]),
            vector(words[1]),
            vector(words[2]),
            vector(words[3]),
        ]
    }

    /// The state as the two vectors the round instruction works on:
    /// (A, B, E, F) and (C, D, G, H), A in the highest lane.
    #[target_feature(enable = "sse2,ssse3,sse4.1")]
    fn load_state(state: &[u32; 8]) -> (__m128i, __m128i) {
        let [a, b, c, d, e, f, g, h] = *state;
        (vector([f, e, b, a]), vector([h, g, d, c]))
    }

    #[allow(clippy::cast_sign_loss)]
    #[target_feature(enable = "sse2,ssse3,sse4.1")]
    fn store_state(abef: __m128i, cdgh: __m128i, state: &mut [u32; 8]) {
        *state = [
            _mm_extract_epi32::<3>(abef) as u32,
            _mm_extract_epi32::<2>(abef) as u32,
            _mm_extract_epi32::<3>(cdgh) as u32,
            _mm_extract_epi32::<2>(cdgh) as u32,
            _mm_extract_epi32::<1>(abef) as u32,
            _mm_extract_epi32::<0>(abef) as u32,
            _mm_extract_epi32::<1>(cdgh) as u32,
            _mm_extract_epi32::<0>(cdgh) as u32,
        ];
    }

    /// The next four schedule words from the previous sixteen (`w[t-16..t]`
    /// as `m0..m3`).
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(m0: __m128i, m1: __m128i, m2: __m128i, m3: __m128i) -> __m128i {
        let partial = _mm_add_epi32(_mm_sha256msg1_epu32(m0, m1), _mm_alignr_epi8::<4>(m3, m2));
        _mm_sha256msg2_epu32(partial, m3)
    }

    /// Four rounds, `wk` the four words plus their constants. The first
    /// instruction leaves (A, B, E, F) two rounds on in `cdgh`, whose old
    /// value (A, B, E, F) is by then (C, D, G, H); the second takes both two
    /// rounds further into `abef`, and `cdgh` holds the (C, D, G, H) of
    /// that point: the names are right again after the pair.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn rounds(abef: &mut __m128i, cdgh: &mut __m128i, wk: __m128i) {
        *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, wk);
        *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, _mm_shuffle_epi32::<0x0E>(wk));
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn compress_pair_inner(state_a: &mut [u32; 8], a: &Block, state_b: &mut [u32; 8], b: &Block) {
        let (start_abef_a, start_cdgh_a) = load_state(state_a);
        let (start_abef_b, start_cdgh_b) = load_state(state_b);
        let (mut abef_a, mut cdgh_a) = (start_abef_a, start_cdgh_a);
        let (mut abef_b, mut cdgh_b) = (start_abef_b, start_cdgh_b);
        // The schedule's last sixteen words in four vectors each, rotated as
        // the rounds consume them: locals rather than an indexed array, so
        // they stay in registers.
        let [mut a0, mut a1, mut a2, mut a3] = message(a);
        let [mut b0, mut b1, mut b2, mut b3] = message(b);
        for (group, k) in K.iter().enumerate() {
            let k = vector(*k);
            rounds(&mut abef_a, &mut cdgh_a, _mm_add_epi32(a0, k));
            rounds(&mut abef_b, &mut cdgh_b, _mm_add_epi32(b0, k));
            if group < 12 {
                let next_a = schedule(a0, a1, a2, a3);
                let next_b = schedule(b0, b1, b2, b3);
                (a0, a1, a2, a3) = (a1, a2, a3, next_a);
                (b0, b1, b2, b3) = (b1, b2, b3, next_b);
            } else {
                (a0, a1, a2) = (a1, a2, a3);
                (b0, b1, b2) = (b1, b2, b3);
            }
        }
        store_state(
            _mm_add_epi32(abef_a, start_abef_a),
            _mm_add_epi32(cdgh_a, start_cdgh_a),
            state_a,
        );
        store_state(
            _mm_add_epi32(abef_b, start_abef_b),
            _mm_add_epi32(cdgh_b, start_cdgh_b),
            state_b,
        );
    }

    pub(super) fn compress_pair(
        state_a: &mut [u32; 8],
        a: &Block,
        state_b: &mut [u32; 8],
        b: &Block,
    ) {
        debug_assert!(available(), "called only after detection");
        // SAFETY: `compress_pair_inner` needs the SHA, SSE2, SSSE3 and SSE4.1
        // extensions, and `available()` saw all four on this CPU (the callers
        // check it first). It is otherwise safe code: no pointers, no memory
        // access beyond its references.
        #[allow(unsafe_code)]
        unsafe {
            compress_pair_inner(state_a, a, state_b, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64, enough for test input.
    fn next(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The interleaved path is the one taken wherever the CPU has the
    /// extension, so `pair_matches_sha2` tests it here rather than the
    /// fallback.
    #[test]
    fn interleaved_where_the_cpu_allows() {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        assert_eq!(
            interleaved(),
            std::arch::is_x86_feature_detected!("sha")
                && std::arch::is_x86_feature_detected!("sse4.1")
        );
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        assert!(!interleaved());
    }

    #[test]
    fn pair_matches_sha2() {
        let seed0 = 0x05ee_d5a2_u64;
        let mut seed = seed0;
        for round in 0..2_000 {
            let blocks = 1 + (next(&mut seed) % 3) as usize;
            let make = |seed: &mut u64| -> Vec<Block> {
                (0..blocks)
                    .map(|_| {
                        let mut block = [0u8; 64];
                        for chunk in block.chunks_exact_mut(8) {
                            chunk.copy_from_slice(&next(seed).to_le_bytes());
                        }
                        block
                    })
                    .collect()
            };
            let a = make(&mut seed);
            let b = make(&mut seed);
            let mut start_a = [0u32; 8];
            let mut start_b = [0u32; 8];
            for word in start_a.iter_mut().chain(start_b.iter_mut()) {
                *word = next(&mut seed) as u32;
            }
            let (mut want_a, mut want_b) = (start_a, start_b);
            sha2::block_api::compress256(&mut want_a, &a);
            sha2::block_api::compress256(&mut want_b, &b);
            let (mut got_a, mut got_b) = (start_a, start_b);
            compress_pair(&mut got_a, &a, &mut got_b, &b);
            assert_eq!(
                (got_a, got_b),
                (want_a, want_b),
                "round {round}, seed {seed0:#x}, interleaved: {}",
                interleaved()
            );
        }
    }
}
