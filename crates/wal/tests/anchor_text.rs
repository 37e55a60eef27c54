//! The text form of `WalAnchor` (`SEQ:HEX`): every anchor prints as text that parses
//! back to it, and malformed texts are refused with a typed reason. The generated
//! cases use a fixed seed (override with `CALYBRIS_SEED`), printed on failure.

use calybris_wal::{AnchorTextError, WalAnchor};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

fn runner(cases: u32) -> (TestRunner, u64) {
    let seed = std::env::var("CALYBRIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xA2C4_07E7);
    let config = Config {
        cases: if cfg!(miri) { 8 } else { cases },
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    (TestRunner::new(config), seed)
}

#[test]
fn every_anchor_round_trips_through_its_text() {
    let (mut runner, seed) = runner(512);
    let result = runner.run(
        &(any::<u64>(), any::<[u8; 32]>()),
        |(next_sequence, head_hash)| {
            let anchor = WalAnchor {
                next_sequence,
                head_hash,
            };
            let text = anchor.to_string();
            let (sequence, hash) = text.split_once(':').expect("a separator");
            prop_assert_eq!(sequence, next_sequence.to_string());
            prop_assert_eq!(hash.len(), 64);
            prop_assert!(hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            prop_assert_eq!(text.parse::<WalAnchor>(), Ok(anchor));
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}

#[test]
fn the_text_is_the_sequence_and_the_hash_in_hex() {
    let anchor = WalAnchor {
        next_sequence: 12,
        head_hash: [0xab; 32],
    };
    assert_eq!(anchor.to_string(), format!("12:{}", "ab".repeat(32)));
    assert_eq!(
        WalAnchor::GENESIS.to_string(),
        format!("0:{}", "0".repeat(64))
    );
}

#[test]
fn malformed_texts_are_refused_with_their_reason() {
    let hash = "0".repeat(64);
    let cases = [
        (String::new(), AnchorTextError::NoSeparator),
        ("12".to_owned(), AnchorTextError::NoSeparator),
        (format!(":{hash}"), AnchorTextError::Sequence),
        (format!("x:{hash}"), AnchorTextError::Sequence),
        (format!("+1:{hash}"), AnchorTextError::Sequence),
        (format!("-1:{hash}"), AnchorTextError::Sequence),
        (
            format!("18446744073709551616:{hash}"),
            AnchorTextError::Sequence,
        ),
        ("1:00".to_owned(), AnchorTextError::HashLength(2)),
        (format!("1:{hash}0"), AnchorTextError::HashLength(65)),
        (
            format!("1:{}", "A".repeat(64)),
            AnchorTextError::HashCharacter { position: 0 },
        ),
        (
            format!("1:{}g", "0".repeat(63)),
            AnchorTextError::HashCharacter { position: 63 },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(text.parse::<WalAnchor>(), Err(expected), "{text:?}");
    }
}

#[test]
fn any_text_either_parses_to_an_anchor_that_prints_it_back_or_is_refused() {
    let (mut runner, seed) = runner(512);
    let result = runner.run(&"[0-9a-f:+x-]{0,70}", |text| {
        if let Ok(anchor) = text.parse::<WalAnchor>() {
            // Leading zeros are the one thing the canonical form drops.
            let (sequence, hash) = text.split_once(':').expect("parsed");
            let canonical = format!("{}:{hash}", sequence.trim_start_matches('0'));
            let printed = anchor.to_string();
            prop_assert!(
                printed == canonical || printed == format!("0:{hash}"),
                "{} printed as {}",
                text,
                printed
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}
