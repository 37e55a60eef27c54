//! The shipped example configuration, and the compilation of names to numbers.

use calybris_gateway::GatewayConfig;
use calybris_gateway::config::{ConfigError, ProviderKind};

#[test]
fn the_example_configuration_compiles_to_a_policy_of_every_catalog_model() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        // A packaged crate has no workspace around it: the example lives at the root.
        eprintln!("no {} (not a workspace checkout)", path.display());
        return;
    };
    let config = GatewayConfig::from_toml(&text).expect("parses");
    let compiled = config.compile().expect("compiles");
    assert_eq!(
        compiled.models.len(),
        32,
        "31 catalog rows and one local model"
    );
    assert_eq!(compiled.policy.models().len(), 32);
    // Ids follow the file order of the policy's models, from 1, and the names are
    // the policy's (logged after it).
    for (index, (model, entry)) in compiled
        .models
        .iter()
        .zip(&config.policy.models)
        .enumerate()
    {
        assert_eq!(model.id as usize, index + 1);
        assert_eq!(model.name, entry.name);
        assert_eq!(
            compiled.names.model_name(model.id),
            Some(entry.name.as_str())
        );
    }
    let hermes = compiled
        .models
        .iter()
        .find(|m| m.name == "OpenHermes-2.5-Mistral-7B")
        .expect("a model with an upstream name");
    assert_eq!(
        hermes.upstream,
        "accounts/fireworks/models/openhermes-2p5-mistral-7b"
    );
    let mini = compiled
        .models
        .iter()
        .find(|m| m.name == "gpt-4o-mini-2024-07-18")
        .expect("gpt-4o-mini");
    assert_eq!(mini.input_micro_per_mtok, 150_000);
    assert_eq!(mini.output_micro_per_mtok, 600_000);
    let kernel = compiled.policy.models()[mini.id as usize - 1];
    assert_eq!(kernel.quality_bps, 5_073);
    // local_first: the local model leads the order and answers "auto".
    let local = &compiled.models[compiled.default_model];
    assert_eq!(local.kind, ProviderKind::Ollama);
    assert_eq!(compiled.order[0], compiled.default_model);
    // No key is in the file, only the names of variables.
    assert!(!text.contains("sk-proj"));
}

#[test]
fn inexact_prices_unknown_references_and_bad_hashes_are_refused() {
    let base = |price: &str, provider: &str, hash: &str, fallback: &str| {
        format!(
            "[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\n\
             [[policy.models]]\nname = \"m\"\nprovider = {provider:?}\ninput_usd_per_mtok = {price:?}\n\
             output_usd_per_mtok = \"1\"\nquality_bps = 5000\n\n\
             [tenants.t]\nbudget_usd = \"1\"\napi_key_sha256 = [{hash:?}]\n\n\
             [routing]\nfallback = [{fallback:?}]\n"
        )
    };
    let good_hash = calybris_gateway::config::key_hash_hex("k");
    let ok = GatewayConfig::from_toml(&base("0.15", "p", &good_hash, "m")).expect("parses");
    ok.compile().expect("compiles");
    // The policy file's own checks: prices that are not exact microunits.
    for (text, what) in [
        (
            base("0.0000001", "p", &good_hash, "m"),
            "more than 6 decimals",
        ),
        (base("1e-7", "p", &good_hash, "m"), "not a plain decimal"),
    ] {
        let config = GatewayConfig::from_toml(&text).expect("parses");
        assert!(
            matches!(config.compile(), Err(ConfigError::Policy(_))),
            "{what}"
        );
    }
    let unknown_upstream = base("1", "p", &good_hash, "m")
        .replace("[routing]", "[upstream]\nnope = \"x\"\n\n[routing]");
    let config = GatewayConfig::from_toml(&unknown_upstream).expect("parses");
    assert!(
        matches!(config.compile(), Err(ConfigError::Invalid(_))),
        "an [upstream] entry naming no model"
    );
    for (text, what) in [
        (base("1", "q", &good_hash, "m"), "unknown provider"),
        (base("1", "p", "abc", "m"), "bad hash"),
        (base("1", "p", &good_hash, "nope"), "unknown fallback"),
    ] {
        let config = GatewayConfig::from_toml(&text).expect("parses");
        assert!(
            matches!(config.compile(), Err(ConfigError::Invalid(_))),
            "{what}"
        );
    }
    let typo = base("1", "p", &good_hash, "m").replace("base_url", "base_ur1");
    assert!(matches!(
        GatewayConfig::from_toml(&typo),
        Err(ConfigError::Parse(_))
    ));
}

#[test]
fn the_watermark_interval_defaults_to_ten_milliseconds() {
    let body = format!(
        "[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\n\
         [[policy.models]]\nname = \"m\"\nprovider = \"p\"\ninput_usd_per_mtok = \"1\"\n\
         output_usd_per_mtok = \"1\"\nquality_bps = 5000\n\n\
         [tenants.t]\nbudget_usd = \"1\"\napi_key_sha256 = [{:?}]\n\n\
         [routing]\nfallback = [\"m\"]\n",
        calybris_gateway::config::key_hash_hex("k")
    );
    let default = GatewayConfig::from_toml(&body).expect("parses");
    assert_eq!(default.server.watermark_interval_ms, 10);
    assert_eq!(
        u128::from(default.server.watermark_interval_ms),
        calybris_wal::DEFAULT_WATERMARK_INTERVAL.as_millis()
    );
    let zero = GatewayConfig::from_toml(&format!("[server]\nwatermark_interval_ms = 0\n\n{body}"))
        .expect("parses");
    assert_eq!(zero.server.watermark_interval_ms, 0);
    zero.compile().expect("compiles");
}
