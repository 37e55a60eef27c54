//! The byte layouts field by field: lengths, offsets and order, and that each digest is
//! exactly SHA-256 of its tagged preimage. (Agreement with the published implementation
//! is checked by the conformance crate.)

use calybris_digest::{
    Canon, DECISION_DIGEST_TAG, INPUT_DIGEST_TAG, POLICY_DIGEST_TAG, Sink, TAG_LEN,
    decision_digest, input_digest, policy_digest_of, write_decision, write_input, write_policy,
};
use calybris_kernel::{
    KernelAction, KernelDecision, KernelInput, KernelModel, KernelReason, PolicyParams,
};
use sha2::{Digest as _, Sha256};

#[derive(Default)]
struct Bytes(Vec<u8>);

impl Sink for Bytes {
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn input() -> KernelInput {
    KernelInput {
        request_sequence: 0x0102_0304_0506_0708,
        requested_model_id: 0x0A0B_0C0D,
        input_tokens: 3,
        output_tokens: 4,
        business_value_microunits: -2,
        budget_limit_microunits: 5,
        risk_bps: 6,
        confidence_bps: 7,
        minimum_quality_bps: 8,
        max_p95_latency_ms: 9,
        required_capabilities: 10,
        allowed_provider_mask: 11,
        required_region_mask: 12,
    }
}

#[test]
fn input_layout_is_79_bytes_little_endian_in_field_order() {
    let mut c = Canon::with_sink(INPUT_DIGEST_TAG, Bytes::default());
    write_input(&mut c, &input());
    let b = c.into_sink().0;
    assert_eq!(b.len(), TAG_LEN + 70);
    assert_eq!(&b[..TAG_LEN], b"calyinp1\0");
    assert_eq!(&b[9..17], &0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&b[17..21], &0x0A0B_0C0Du32.to_le_bytes());
    assert_eq!(&b[29..37], &(-2i64).to_le_bytes());
    assert_eq!(&b[45..47], &6u16.to_le_bytes());
    assert_eq!(&b[71..79], &12u64.to_le_bytes());
    assert_eq!(input_digest(&input()), sha(&b));
}

#[test]
fn decision_layout_is_74_bytes_with_enum_codes() {
    let d = KernelDecision {
        request_sequence: 1,
        action: KernelAction::Reject,
        reason: KernelReason::RiskCeilingConstraint,
        selected_model_id: 0,
        selected_model_index: u16::MAX,
        estimated_cost_microunits: 0,
        expected_utility_microunits: -1,
        counterfactual_model_id: 0,
        counterfactual_utility_microunits: i64::MIN,
        evaluated_models: 3,
        eligible_models: 0,
        policy_epoch: 4,
        catalog_epoch: 5,
    };
    let mut c = Canon::with_sink(DECISION_DIGEST_TAG, Bytes::default());
    write_decision(&mut c, &d);
    let b = c.into_sink().0;
    assert_eq!(b.len(), TAG_LEN + 65);
    assert_eq!(b[17], 3, "action code");
    assert_eq!(&b[18..20], &110u16.to_le_bytes(), "reason code");
    assert_eq!(&b[24..26], &u16::MAX.to_le_bytes());
    assert_eq!(decision_digest(&d), sha(&b));
}

#[test]
fn policy_layout_has_no_count_and_47_bytes_per_candidate() {
    let p = PolicyParams {
        policy_epoch: 1,
        catalog_epoch: 2,
        hard_risk_limit_bps: 3,
        minimum_confidence_bps: 4,
        risk_penalty_multiplier_bps: 5,
        latency_penalty_microunits_per_ms: 6,
    };
    let m = |model_id| KernelModel {
        model_id,
        provider_id: 1,
        quality_bps: 2,
        risk_ceiling_bps: 3,
        enabled: 1,
        p95_latency_ms: 4,
        capabilities: 5,
        region_mask: 6,
        input_cost_microunits_per_million_tokens: 7,
        output_cost_microunits_per_million_tokens: 8,
    };
    for n in [1u32, 2, 5] {
        let models: Vec<_> = (1..=n).map(m).collect();
        let mut c = Canon::with_sink(POLICY_DIGEST_TAG, Bytes::default());
        write_policy(&mut c, &p, &models);
        let b = c.into_sink().0;
        assert_eq!(b.len(), TAG_LEN + 30 + 47 * n as usize);
        assert_eq!(
            &b[39..43],
            &1u32.to_le_bytes(),
            "first candidate's id follows the scalars"
        );
        assert_eq!(policy_digest_of(&p, &models), sha(&b));
    }
}

#[test]
fn optionals_are_a_presence_byte_then_the_value() {
    let mut c = Canon::with_sink(b"testtag1\0", Bytes::default());
    c.opt(None::<u16>, |c, v| {
        c.u16(v);
    })
    .opt(Some(0x0102u16), |c, v| {
        c.u16(v);
    });
    assert_eq!(c.into_sink().0[TAG_LEN..], [0, 1, 0x02, 0x01]);
}

#[test]
fn hex_round_trips_and_refuses_bad_text() {
    let d = input_digest(&input());
    let text = calybris_digest::digest_hex(&d);
    let s = core::str::from_utf8(&text).expect("ascii");
    assert_eq!(calybris_digest::parse_digest_hex(s), Ok(d.to_bytes()));
    assert_eq!(calybris_digest::Hex(d.as_slice()).to_string(), s);
    assert_eq!(
        calybris_digest::parse_digest_hex(&s[1..]),
        Err(calybris_digest::HexError::Length(63))
    );
    let upper = s
        .to_ascii_uppercase()
        .replace(|c: char| c.is_ascii_digit(), "A");
    assert!(matches!(
        calybris_digest::parse_digest_hex(&upper),
        Err(calybris_digest::HexError::Character { .. })
    ));
}
