//! The text form of `Digest`: 64 lowercase hex characters, written by `Display`
//! (and `Debug`), read back by `FromStr`; everything else is refused with a typed
//! reason. Generated cases use a fixed seed (override with `CALYBRIS_SEED`), printed
//! on failure.

use calybris_digest::{DIGEST_HEX_LEN, Digest, HexError};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

fn runner(cases: u32) -> (TestRunner, u64) {
    let seed = std::env::var("CALYBRIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xD16E_57E7);
    let config = Config {
        cases: if cfg!(miri) { 8 } else { cases },
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    (TestRunner::new(config), seed)
}

#[test]
fn every_digest_round_trips_through_its_text() {
    let (mut runner, seed) = runner(512);
    let result = runner.run(&any::<[u8; 32]>(), |bytes| {
        let digest = Digest(bytes);
        let text = digest.to_string();
        prop_assert_eq!(text.len(), DIGEST_HEX_LEN);
        prop_assert!(text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        prop_assert_eq!(&text, &format!("{digest:x}"));
        let hex_bytes = calybris_digest::digest_hex(&bytes);
        prop_assert_eq!(text.as_bytes(), &hex_bytes[..]);
        prop_assert_eq!(format!("{digest:?}"), format!("Digest({text})"));
        prop_assert_eq!(text.parse::<Digest>(), Ok(digest));
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}

#[test]
fn the_text_is_the_bytes_in_order_high_nibble_first() {
    let mut bytes = [0u8; 32];
    bytes[0] = 0x01;
    bytes[1] = 0xab;
    bytes[31] = 0xf0;
    let text = Digest(bytes).to_string();
    assert!(text.starts_with("01ab00"), "{text}");
    assert!(text.ends_with("00f0"), "{text}");
}

#[test]
fn malformed_texts_are_refused_with_their_reason() {
    let good = "ab".repeat(32);
    assert_eq!("".parse::<Digest>(), Err(HexError::Length(0)));
    assert_eq!(good[1..].parse::<Digest>(), Err(HexError::Length(63)));
    assert_eq!(
        format!("{good}0").parse::<Digest>(),
        Err(HexError::Length(65))
    );
    assert_eq!(
        good.to_ascii_uppercase().parse::<Digest>(),
        Err(HexError::Character { position: 0 })
    );
    let mut bad = good.clone();
    bad.replace_range(40..41, "g");
    assert_eq!(
        bad.parse::<Digest>(),
        Err(HexError::Character { position: 40 })
    );
}

#[test]
fn any_text_either_parses_to_a_digest_that_prints_it_back_or_is_refused() {
    let (mut runner, seed) = runner(512);
    let texts = prop_oneof!["[0-9a-f]{64}", "[0-9a-fA-Fg-z ]{0,70}"];
    let result = runner.run(&texts, |text| {
        match text.parse::<Digest>() {
            Ok(digest) => prop_assert_eq!(digest.to_string(), text),
            Err(HexError::Length(n)) => prop_assert!(n == text.len() && n != DIGEST_HEX_LEN),
            Err(_) => prop_assert_eq!(text.len(), DIGEST_HEX_LEN),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}

#[test]
fn a_digest_converts_to_and_from_its_bytes() {
    let bytes = [7u8; 32];
    let digest = Digest::from(bytes);
    assert_eq!(<[u8; 32]>::from(digest), bytes);
    assert_eq!(digest, bytes);
    assert_eq!(*digest, bytes);
    assert_eq!(Digest::try_from(&bytes[..]).ok(), Some(digest));
    assert!(Digest::try_from(&bytes[1..]).is_err());
}
