//! The combinations of gate features refused by design are documented where a user
//! looks (`tests/combos.rs` asserts the typed errors). Reads the repository's docs,
//! so it is excluded from the package.

fn doc(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The whitespace-folded text of `text`, so a sentence may wrap anywhere.
fn folded(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_refused_combinations_are_documented() {
    let spec = folded(&doc("SPECIFICATION.md"));
    for sentence in [
        "`Retention::SinceLastSnapshot` with checkpoints or with the adaptive engine is refused by `Gate::open` before anything is written (`GateError::RetentionConflict`)",
        "book snapshots carry the nodes, their windows and the holds on them (record 8)",
        "a checkpoint falling due on the snapshot record is written after the policy record",
        "`crates/gate/tests/combos.rs`",
    ] {
        assert!(
            spec.contains(sentence),
            "SPECIFICATION.md lacks: {sentence}"
        );
    }
    let adapt = folded(&doc("ADAPT.md"));
    assert!(
        adapt.contains("`Retention::SinceLastSnapshot` is therefore refused at open, before anything is written (`GateError::RetentionConflict`)"),
        "ADAPT.md lacks the retention refusal"
    );
}
