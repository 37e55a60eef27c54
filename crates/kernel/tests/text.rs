//! The text forms of `KernelAction` and `KernelReason`: words and variant names both
//! parse back to the value, every other text is refused. Generated cases use a fixed
//! seed (override with `CALYBRIS_SEED`), printed on failure.

use calybris_kernel::{KernelAction, KernelReason, ParseActionError, ParseReasonError};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

fn runner(cases: u32) -> (TestRunner, u64) {
    let seed = std::env::var("CALYBRIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7E47_0001);
    let config = Config {
        cases: if cfg!(miri) { 8 } else { cases },
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    (TestRunner::new(config), seed)
}

#[test]
fn every_action_and_reason_round_trips_through_its_words_and_its_name() {
    for action in KernelAction::ALL {
        assert_eq!(action.to_string().parse(), Ok(action));
        assert_eq!(action.name().parse(), Ok(action));
        assert_eq!(format!("{action:?}"), action.name());
        assert_eq!(KernelAction::from_code(action.code()), Some(action));
    }
    for reason in KernelReason::ALL {
        assert_eq!(reason.to_string().parse(), Ok(reason));
        assert_eq!(reason.name().parse(), Ok(reason));
        assert_eq!(format!("{reason:?}"), reason.name());
        assert_eq!(KernelReason::from_code(reason.code()), Some(reason));
    }
}

#[test]
fn the_lists_hold_every_code_once() {
    let action_codes: Vec<u8> = (0..=u8::MAX)
        .filter(|c| KernelAction::from_code(*c).is_some())
        .collect();
    let listed: Vec<u8> = KernelAction::ALL.iter().map(|a| a.code()).collect();
    assert_eq!(listed, action_codes);
    let reason_codes: Vec<u16> = (0..=u16::MAX)
        .filter(|c| KernelReason::from_code(*c).is_some())
        .collect();
    let listed: Vec<u16> = KernelReason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(listed, reason_codes);
}

#[test]
fn no_two_values_share_a_text() {
    let mut texts: Vec<&str> = KernelReason::ALL
        .iter()
        .flat_map(|r| [r.words(), r.name()])
        .collect();
    let all = texts.len();
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(texts.len(), all);
}

#[test]
fn the_words_are_plain() {
    assert_eq!(
        KernelReason::RiskHardLimit.to_string(),
        "at or over the hard risk limit"
    );
    assert_eq!(
        KernelReason::BudgetConstraint.to_string(),
        "over the budget"
    );
    assert_eq!(KernelAction::Reject.to_string(), "reject");
    assert_eq!("Reject".parse(), Ok(KernelAction::Reject));
    assert_eq!("REJECT".parse::<KernelAction>(), Err(ParseActionError));
    assert_eq!(
        " over the budget".parse::<KernelReason>(),
        Err(ParseReasonError)
    );
}

#[test]
fn any_text_that_parses_is_exactly_the_words_or_the_name() {
    let (mut runner, seed) = runner(1_000);
    let texts = prop_oneof![
        prop::sample::select(KernelReason::ALL.to_vec()).prop_map(|r| r.words().to_owned()),
        prop::sample::select(KernelReason::ALL.to_vec()).prop_map(|r| r.name().to_owned()),
        prop::sample::select(KernelAction::ALL.to_vec()).prop_map(|a| a.words().to_owned()),
        "[a-zA-Z' ]{0,40}",
    ];
    let result = runner.run(&texts, |text| {
        if let Ok(reason) = text.parse::<KernelReason>() {
            prop_assert!(text == reason.words() || text == reason.name());
        }
        if let Ok(action) = text.parse::<KernelAction>() {
            prop_assert!(text == action.words() || text == action.name());
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}

#[test]
fn the_parse_errors_are_errors() {
    fn is_error<E: core::error::Error>(_: &E) {}
    is_error(&ParseActionError);
    is_error(&ParseReasonError);
    assert!(ParseReasonError.to_string().contains("not a kernel reason"));
}
