//! The combinations of gate features refused by design, and how retention combines
//! with the adaptive engine, are documented where a user looks (`tests/combos.rs`
//! asserts the typed errors and the behaviour). Reads the repository's docs,
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
        "`Retention::SinceLastSnapshot` with checkpoints is refused by `Gate::open` before anything is written (`GateError::RetentionConflict`)",
        "A retained log replays the engine from its first complete state record",
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
    for sentence in [
        "under retention every book snapshot is followed, in the same barrier",
        "The segments before the book snapshot are retired only once that last record is durable.",
        "`ADAPTIVE_STATE_RECORD_MISMATCH`",
    ] {
        assert!(adapt.contains(sentence), "ADAPT.md lacks: {sentence}");
    }
}
