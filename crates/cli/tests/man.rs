//! The committed man page, `docs/calybris.1`, is exactly what `cargo xtask man`
//! generates from the clap definition, so it cannot drift from the command.
//! (Built with feature `man` only: see `[[test]]` in Cargo.toml.)

use std::path::Path;

#[test]
fn the_committed_man_page_is_what_the_generator_produces() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let in_workspace = std::fs::read_to_string(workspace.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("crates/cli"));
    if !in_workspace {
        eprintln!("not inside the Calybris workspace: the man page check does not apply");
        return;
    }
    let committed = std::fs::read(workspace.join("docs/calybris.1"))
        .expect("docs/calybris.1 (write it with `cargo xtask man`)");
    let generated = calybris_cli::man::man_page().expect("render the man page");
    assert!(
        committed == generated,
        "docs/calybris.1 is stale: run `cargo xtask man` and commit the result"
    );
    let text = String::from_utf8(generated).expect("roff is text");
    for sub in [
        "CALYBRIS VERIFY",
        "CALYBRIS INSPECT",
        "CALYBRIS POLICY CHECK",
        "CALYBRIS COMPLETIONS",
    ] {
        assert!(
            text.contains(&format!(".SH \"{sub}\"")) || text.contains(&format!(".SH {sub}")),
            "{sub}"
        );
    }
    assert!(text.contains("Exit codes:"));
}
