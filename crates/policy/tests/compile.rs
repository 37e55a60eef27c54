//! Compiling policy files: defaults, id assignment, every refusal, the request by
//! name, and (property) determinism and the name round trip.

use calybris_policy::{
    Format, ModelEntry, PolicyFile, PolicyFileError, Price, PriceError, RequestError, compile,
    compile_bytes, parse, request_from_json,
};
use proptest::prelude::*;

const TOML: &str = r#"
policy_epoch = 3
capabilities = ["function_calling", "vision"]
regions = ["us", "eu"]

[[models]]
name = "big"
provider = "openai"
quality_bps = 5746
p95_latency_ms = 900
capabilities = ["function_calling", "vision"]
regions = ["us", "eu"]
input_usd_per_mtok = "5"
output_usd_per_mtok = 15

[[models]]
name = "small"
provider = "meta"
quality_bps = 2000
enabled = false
regions = ["eu"]
input_usd_per_mtok = 0.18
output_usd_per_mtok = "0.180000"

[[models]]
name = "mid"
provider = "openai"
quality_bps = 4000
risk_ceiling_bps = 5000
input_usd_per_mtok = "0.000001"
output_usd_per_mtok = "0"
"#;

fn compiled() -> calybris_policy::CompiledPolicy {
    compile_bytes(TOML.as_bytes(), Format::Toml).expect("the example compiles")
}

fn error_of(text: &str) -> PolicyFileError {
    match compile_bytes(text.as_bytes(), Format::Toml) {
        Ok(_) => panic!("expected a refusal of {text}"),
        Err(error) => error,
    }
}

/// The example with `from` replaced by `to` (which must occur).
fn edited(from: &str, to: &str) -> String {
    assert!(TOML.contains(from), "{from}");
    TOML.replacen(from, to, 1)
}

#[test]
fn the_example_compiles_with_ids_bits_defaults_and_exact_prices() {
    let compiled = compiled();
    let models = compiled.policy.models();
    assert_eq!(compiled.policy.policy_epoch(), 3);
    assert_eq!(compiled.policy.params().hard_risk_limit_bps, 10_000);
    assert_eq!(models.len(), 3);
    let [big, small, mid] = [models[0], models[1], models[2]];
    assert_eq!((big.model_id, small.model_id, mid.model_id), (1, 2, 3));
    assert_eq!(
        (big.provider_id, small.provider_id, mid.provider_id),
        (0, 1, 0)
    );
    assert_eq!(big.capabilities, 0b11);
    assert_eq!(big.region_mask, 0b11);
    assert_eq!(small.region_mask, 0b10);
    assert_eq!(mid.capabilities, 0);
    assert_eq!(big.input_cost_microunits_per_million_tokens, 5_000_000);
    assert_eq!(big.output_cost_microunits_per_million_tokens, 15_000_000);
    assert_eq!(small.input_cost_microunits_per_million_tokens, 180_000);
    assert_eq!(small.output_cost_microunits_per_million_tokens, 180_000);
    assert_eq!(mid.input_cost_microunits_per_million_tokens, 1);
    assert_eq!((big.enabled, small.enabled), (1, 0));
    assert_eq!(
        (big.risk_ceiling_bps, mid.risk_ceiling_bps),
        (10_000, 5_000)
    );
    assert_eq!((big.p95_latency_ms, mid.p95_latency_ms), (900, 0));
    let names = &compiled.names;
    assert_eq!(names.model_name(2), Some("small"));
    assert_eq!(names.provider_name(1), Some("meta"));
    assert_eq!(names.region_names(small.region_mask), vec!["eu"]);
    let text = compiled.to_string();
    assert!(text.starts_with(&format!("digest {}\n", compiled.digest_hex())));
    assert!(text.contains("small") && text.contains("meta") && text.contains("0.18"));
    assert!(text.contains("function_calling,vision"));
}

#[test]
fn the_same_policy_in_json_has_the_same_digest() {
    let file = parse(TOML.as_bytes(), Format::Toml).expect("toml");
    let json = serde_json::to_vec(&file).expect("serializes");
    let again = compile_bytes(&json, Format::Json).expect("json compiles");
    assert_eq!(again.policy.digest(), compiled().policy.digest());
    assert_eq!(again.names, compiled().names);
}

#[test]
fn explicit_ids_are_used_and_mixing_is_refused() {
    let text = TOML
        .replacen("name = \"big\"", "name = \"big\"\nid = 70", 1)
        .replacen("name = \"small\"", "name = \"small\"\nid = 9", 1)
        .replacen("name = \"mid\"", "name = \"mid\"\nid = 10", 1);
    let compiled = compile_bytes(text.as_bytes(), Format::Toml).expect("compiles");
    let ids: Vec<u32> = compiled
        .policy
        .models()
        .iter()
        .map(|m| m.model_id)
        .collect();
    assert_eq!(ids, [9, 10, 70]);
    assert_eq!(compiled.names.model_id("big"), Some(70));
    assert_eq!(
        error_of(&edited("name = \"mid\"", "name = \"mid\"\nid = 4")),
        PolicyFileError::MixedIds {
            model: "mid".into()
        }
    );
    let twice = text.replacen("id = 10", "id = 9", 1);
    assert!(matches!(
        error_of(&twice),
        PolicyFileError::DuplicateId { id: 9, .. }
    ));
    let zero = text.replacen("id = 70", "id = 0", 1);
    assert!(matches!(
        error_of(&zero),
        PolicyFileError::ReservedId { .. }
    ));
}

#[test]
fn every_refusal_names_the_model_and_field() {
    assert_eq!(
        error_of(&edited(
            "input_usd_per_mtok = \"5\"",
            "input_usd_per_mtok = \"5.0000001\""
        )),
        PolicyFileError::Price {
            model: "big".into(),
            field: "input_usd_per_mtok",
            text: "5.0000001".into(),
            error: PriceError::TooPrecise,
        }
    );
    assert!(matches!(
        error_of(&edited(
            "output_usd_per_mtok = 15",
            "output_usd_per_mtok = \"1e3\""
        )),
        PolicyFileError::Price {
            field: "output_usd_per_mtok",
            error: PriceError::NotADecimal,
            ..
        }
    ));
    assert!(matches!(
        error_of(&edited(
            "output_usd_per_mtok = 15",
            "output_usd_per_mtok = \"99999999999999\""
        )),
        PolicyFileError::Price {
            error: PriceError::Overflow,
            ..
        }
    ));
    assert!(matches!(
        error_of(&edited(
            "output_usd_per_mtok = 15",
            "output_usd_per_mtok = -1"
        )),
        PolicyFileError::Price {
            error: PriceError::Negative,
            ..
        }
    ));
    assert_eq!(
        error_of(&edited("regions = [\"eu\"]", "regions = [\"mars\"]")),
        PolicyFileError::Undeclared {
            model: "small".into(),
            field: "regions",
            name: "mars".into(),
        }
    );
    assert_eq!(
        error_of(&edited("quality_bps = 4000", "quality_bps = 10001")),
        PolicyFileError::BpsOutOfRange {
            model: "mid".into(),
            field: "quality_bps",
            value: 10_001,
            max: 10_000,
        }
    );
    assert_eq!(
        error_of(&edited("name = \"mid\"", "name = \"big\"")),
        PolicyFileError::DuplicateModel {
            model: "big".into()
        }
    );
    assert!(matches!(
        error_of(&edited(
            "regions = [\"us\", \"eu\"]\n",
            "regions = [\"us\", \"us\"]\n"
        )),
        PolicyFileError::BadDeclaration {
            list: "regions",
            ..
        }
    ));
    assert!(matches!(
        error_of(&edited("provider = \"meta\"", "provider = \"\"")),
        PolicyFileError::BadProviderName { .. }
    ));
    assert!(matches!(
        error_of(&edited("policy_epoch = 3", "format_version = 2")),
        PolicyFileError::UnsupportedVersion { found: 2, .. }
    ));
    assert!(matches!(
        error_of(&edited("policy_epoch = 3", "hard_risk_limit_bps = 10001")),
        PolicyFileError::Kernel(_)
    ));
}

#[test]
fn unknown_keys_are_refused_at_every_level_with_their_place() {
    for (from, to, key) in [
        ("policy_epoch = 3", "policy_epoh = 3", "policy_epoh"),
        (
            "quality_bps = 4000",
            "quality_bps = 4000\nqualty_bps = 1",
            "qualty_bps",
        ),
    ] {
        match error_of(&edited(from, to)) {
            PolicyFileError::Toml { message } => {
                assert!(message.contains(key), "{message}");
                assert!(message.contains("line"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    let json = br#"{"models": [{"name": "a", "provider": "p", "quality_bps": 1,
        "input_usd_per_mtok": "1", "output_usd_per_mtok": "1", "enabled": 1}]}"#;
    assert!(matches!(
        compile_bytes(json, Format::Json),
        Err(PolicyFileError::Json { .. })
    ));
    assert!(matches!(
        compile_bytes(b"models = 3", Format::Toml),
        Err(PolicyFileError::Toml { .. })
    ));
    assert!(matches!(
        compile_bytes(b"models = []", Format::Toml),
        Err(PolicyFileError::NoModels)
    ));
    assert!(matches!(
        compile_bytes(&[0xff, 0xfe], Format::Toml),
        Err(PolicyFileError::NotUtf8)
    ));
    let huge = vec![b' '; calybris_policy::MAX_POLICY_FILE_BYTES + 1];
    assert!(matches!(
        compile_bytes(&huge, Format::Json),
        Err(PolicyFileError::TooLarge { .. })
    ));
}

#[test]
fn a_policy_of_only_disabled_models_is_refused() {
    let text = TOML.replace(
        "provider = \"openai\"",
        "provider = \"openai\"\nenabled = false",
    );
    assert_eq!(error_of(&text), PolicyFileError::NoEnabledModel);
}

#[test]
fn a_65th_provider_is_refused() {
    let mut text = String::new();
    for i in 0..65 {
        text.push_str(&format!(
            "[[models]]\nname = \"m{i}\"\nprovider = \"p{i}\"\nquality_bps = 1\n\
             input_usd_per_mtok = 1\noutput_usd_per_mtok = 1\n"
        ));
    }
    assert_eq!(
        error_of(&text),
        PolicyFileError::TooManyProviders {
            model: "m64".into(),
            provider: "p64".into()
        }
    );
}

#[test]
fn requests_name_models_providers_capabilities_and_regions() {
    let compiled = compiled();
    let names = Some(&compiled.names);
    let input = request_from_json(
        br#"{"requested_model": "mid", "allowed_providers": ["meta"],
            "required_capabilities": ["vision"], "required_regions": ["eu"], "risk_bps": 5}"#,
        names,
    )
    .expect("a request by names");
    assert_eq!(input.requested_model_id, 3);
    assert_eq!(input.allowed_provider_mask, 0b10);
    assert_eq!(input.required_capabilities, 0b10);
    assert_eq!(input.required_region_mask, 0b10);
    assert_eq!(input.risk_bps, 5);
    let numeric = request_from_json(
        br#"{"requested_model_id": 2, "required_capabilities": 3}"#,
        None,
    )
    .expect("numeric");
    assert_eq!(
        (numeric.requested_model_id, numeric.required_capabilities),
        (2, 3)
    );
    assert_eq!(
        request_from_json(br#"{"requested_model": "nope"}"#, names),
        Err(RequestError::UnknownName {
            field: "requested_model",
            what: "model",
            name: "nope".into()
        })
    );
    assert!(matches!(
        request_from_json(
            br#"{"requested_model": "mid", "requested_model_id": 3}"#,
            names
        ),
        Err(RequestError::Both { .. })
    ));
    assert!(matches!(
        request_from_json(br#"{"requested_model": "mid"}"#, None),
        Err(RequestError::NoNames { .. })
    ));
    assert!(matches!(
        request_from_json(br#"{"requested_modle": "mid"}"#, names),
        Err(RequestError::Json { .. })
    ));
    assert!(matches!(
        request_from_json(br#"{"required_regions": [1]}"#, names),
        Err(RequestError::WrongType { .. })
    ));
}

fn name_strategy() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._-]{0,12}"
}

fn price_strategy() -> impl Strategy<Value = Price> {
    (0u64..100_000_000_000).prop_map(|micro| Price(calybris_policy::microunits_to_decimal(micro)))
}

fn file_strategy() -> impl Strategy<Value = PolicyFile> {
    let capabilities = proptest::collection::btree_set(name_strategy(), 0..6);
    let regions = proptest::collection::btree_set(name_strategy(), 0..6);
    (capabilities, regions, 1usize..12).prop_flat_map(|(capabilities, regions, count)| {
        let capabilities: Vec<String> = capabilities.into_iter().collect();
        let regions: Vec<String> = regions.into_iter().collect();
        let caps = capabilities.clone();
        let regs = regions.clone();
        let model = (
            name_strategy(),
            0usize..5,
            0u16..=10_000,
            0u16..=10_000,
            any::<bool>(),
            any::<u32>(),
            proptest::sample::subsequence(caps.clone(), 0..=caps.len()),
            proptest::sample::subsequence(regs.clone(), 0..=regs.len()),
            price_strategy(),
            price_strategy(),
        );
        proptest::collection::vec(model, count).prop_map(move |rows| {
            let mut seen = std::collections::BTreeSet::new();
            let mut models: Vec<ModelEntry> = rows
                .into_iter()
                .filter(|row| seen.insert(row.0.clone()))
                .map(|row| ModelEntry {
                    name: row.0,
                    id: None,
                    provider: format!("provider-{}", row.1),
                    quality_bps: row.2,
                    risk_ceiling_bps: row.3,
                    enabled: row.4,
                    p95_latency_ms: row.5,
                    capabilities: row.6,
                    regions: row.7,
                    input_usd_per_mtok: row.8,
                    output_usd_per_mtok: row.9,
                })
                .collect();
            models[0].enabled = true;
            PolicyFile {
                format_version: 1,
                policy_epoch: 1,
                catalog_epoch: 2,
                hard_risk_limit_bps: 9_000,
                minimum_confidence_bps: 0,
                risk_penalty_multiplier_bps: 10_000,
                latency_penalty_microunits_per_ms: 0,
                capabilities: capabilities.clone(),
                regions: regions.clone(),
                models,
            }
        })
    })
}

proptest! {
    #[test]
    fn names_round_trip_and_compiling_is_deterministic(file in file_strategy()) {
        let compiled = compile(&file).expect("a generated file compiles");
        let again = compile(&file).expect("compiles again");
        prop_assert_eq!(compiled.policy.digest(), again.policy.digest());
        prop_assert_eq!(&compiled.names, &again.names);
        // Through JSON text and back: the same digest.
        let json = serde_json::to_vec(&file).expect("serializes");
        let from_json = compile_bytes(&json, Format::Json).expect("json compiles");
        prop_assert_eq!(compiled.policy.digest(), from_json.policy.digest());
        let names = &compiled.names;
        for model in &file.models {
            // names -> ids -> names, for every model of the file.
            let id = names.model_id(&model.name).expect("every model has an id");
            prop_assert_eq!(names.model_name(id), Some(model.name.as_str()));
            let kernel = compiled
                .policy
                .models()
                .iter()
                .find(|m| m.model_id == id)
                .expect("the id is in the snapshot");
            prop_assert_eq!(names.provider_name(kernel.provider_id), Some(model.provider.as_str()));
            let mut caps: Vec<&str> = model.capabilities.iter().map(String::as_str).collect();
            caps.sort_by_key(|c| names.capability_bit(c));
            caps.dedup();
            prop_assert_eq!(names.capability_names(kernel.capabilities), caps);
            let mut regs: Vec<&str> = model.regions.iter().map(String::as_str).collect();
            regs.sort_by_key(|r| names.region_bit(r));
            regs.dedup();
            prop_assert_eq!(names.region_names(kernel.region_mask), regs);
            prop_assert_eq!(
                kernel.input_cost_microunits_per_million_tokens,
                model.input_usd_per_mtok.microunits().expect("a generated price converts")
            );
            prop_assert_eq!(kernel.enabled == 1, model.enabled);
        }
        // ids -> names -> ids, for every model of the snapshot.
        for kernel in compiled.policy.models() {
            let name = names.model_name(kernel.model_id).expect("every id has a name");
            prop_assert_eq!(names.model_id(name), Some(kernel.model_id));
        }
        prop_assert!(names.validate_for(&compiled.policy).is_ok());
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = compile_bytes(text.as_bytes(), Format::Toml);
        let _ = compile_bytes(text.as_bytes(), Format::Json);
    }

    #[test]
    fn prices_print_and_parse_back(micro in any::<u64>()) {
        let text = calybris_policy::microunits_to_decimal(micro);
        prop_assert_eq!(calybris_policy::decimal_to_microunits(&text), Ok(micro));
    }
}

#[test]
fn the_catalog_example_compiles_to_31_models_of_10_providers() {
    // The example is in the repository, not in the crate's package: built from the
    // package (crates.io, `cargo xtask package`) this test does not apply. Inside the
    // workspace a missing example fails it.
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !std::fs::read_to_string(workspace.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("crates/policy"))
    {
        eprintln!("not inside the Calybris workspace: the catalog example does not apply");
        return;
    }
    let path = workspace.join("examples/policies/catalog.toml");
    let bytes = std::fs::read(&path).expect("examples/policies/catalog.toml");
    let compiled = compile_bytes(&bytes, Format::Toml).expect("the catalog compiles");
    assert_eq!(compiled.policy.models().len(), 31);
    assert_eq!(compiled.names.providers.len(), 10);
    let mini = compiled
        .names
        .model_id("gpt-4o-mini-2024-07-18")
        .expect("gpt-4o-mini is in the catalog");
    let model = compiled
        .policy
        .models()
        .iter()
        .find(|m| m.model_id == mini)
        .expect("in the snapshot");
    assert_eq!(model.input_cost_microunits_per_million_tokens, 150_000);
    assert_eq!(model.output_cost_microunits_per_million_tokens, 600_000);
    assert_eq!(model.quality_bps, 5_073);
    assert_eq!(
        compiled.names.capability_names(model.capabilities),
        ["function_calling", "vision"]
    );
}
