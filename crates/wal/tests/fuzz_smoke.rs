//! Runs the fuzz entry points over seeded random and mutated inputs, so the
//! invariants the fuzzers check are exercised by every `cargo test` too.

mod common;

use calybris_wal::fuzzing;
use common::{Rng, seed};

const GOLDEN: &[u8] = include_bytes!("data/unkeyed-3-records.cwal");
const GOLDEN_KEYED: &[u8] = include_bytes!("data/keyed-3-records.cwal");
const ROUNDS: u64 = 3_000;

#[test]
fn frame_entry_point_survives_mutated_logs() {
    let seed = seed(0x00F0_220E);
    let mut rng = Rng::new(seed);
    for round in 0..ROUNDS {
        let base = if round % 2 == 0 { GOLDEN } else { GOLDEN_KEYED };
        // Mode byte 0: the rest is a raw segment.
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(base);
        for _ in 0..1 + rng.below(4) {
            match rng.below(3) {
                0 => {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] = rng.next_u64() as u8;
                }
                1 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
                _ => bytes.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8)),
            }
            if bytes.is_empty() {
                break;
            }
        }
        let result = std::panic::catch_unwind(|| fuzzing::frames(&bytes));
        assert!(result.is_ok(), "seed {seed} round {round}: {bytes:02x?}");
    }
}

#[test]
fn frame_entry_point_survives_damaged_built_logs() {
    let seed = seed(0x0B1D_DA6E);
    let mut rng = Rng::new(seed);
    for round in 0..ROUNDS {
        let len = 6 + rng.below(200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        // Odd mode byte: build a valid log from the rest, then damage it.
        bytes[0] |= 1;
        let result = std::panic::catch_unwind(|| fuzzing::frames(&bytes));
        assert!(result.is_ok(), "seed {seed} round {round}: {bytes:02x?}");
    }
}

#[test]
fn record_entry_point_survives_random_payloads() {
    let seed = seed(0x0DEC_0DE5);
    let mut rng = Rng::new(seed);
    for round in 0..ROUNDS {
        let len = rng.below(300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let result = std::panic::catch_unwind(|| fuzzing::record(&bytes));
        assert!(result.is_ok(), "seed {seed} round {round}: {bytes:02x?}");
    }
}

#[test]
fn watermark_entry_point_survives_mutated_watermarks() {
    use calybris_wal::format::{AckPoint, AckSlot, HEADER_LEN_BYTES};
    let seed = seed(0x0AC4_0AC4);
    let mut rng = Rng::new(seed);
    let point = AckPoint {
        segment_first_sequence: 0,
        end_offset_bytes: HEADER_LEN_BYTES as u64,
        anchor: calybris_wal::WalAnchor::GENESIS,
    };
    let mut base = Vec::new();
    for generation in 0..2 {
        base.extend_from_slice(&AckSlot { generation, point }.encode(None));
    }
    for round in 0..ROUNDS {
        let mut bytes = base.clone();
        for _ in 0..rng.below(4) {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] ^= (rng.next_u64() as u8) | 1;
        }
        if rng.below(4) == 0 {
            bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
        }
        let result = std::panic::catch_unwind(|| fuzzing::watermark(&bytes));
        assert!(result.is_ok(), "seed {seed} round {round}: {bytes:02x?}");
    }
}
