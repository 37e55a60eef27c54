//! `calybris demo` end to end: a small run through the gate, then `verify` and
//! `inspect` of what it wrote.

mod common;

use common::*;

/// The lines of a demo summary that must not depend on timing or on thread
/// interleaving.
fn deterministic_part(stdout: &str, dir: &str) -> String {
    stdout
        .lines()
        .filter(|line| {
            !line.starts_with("Speed:")
                && !line.starts_with("Verified:")
                && !line.contains("VERIFIED")
                && !line.contains("--anchor")
        })
        .map(|line| line.replace(dir, "DIR"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_small_demo_writes_a_log_that_verifies_and_repeats_exactly() {
    let root = temp_dir("demo");
    let dir = root.join("run");
    let run = calybris(&["demo", "--requests", "200", "--dir", path_str(&dir)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
    assert!(
        run.stdout.contains("Calybris demo: 200 LLM requests"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Conservation: balanced"));
    assert!(run.stdout.contains("decisions/s"));

    // The summary ends with the exact command that re-checks the log.
    let command = run
        .stdout
        .lines()
        .rev()
        .find(|line| line.trim_start().starts_with("calybris verify "))
        .expect("a verify command")
        .trim()
        .to_owned();
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    assert_eq!(args.len(), 4, "{command}");
    let check = calybris(&args);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.starts_with("VERIFIED "));
    assert!(check.stdout.contains("200 decisions replayed"), "{check:?}");

    let inspect = calybris(&["inspect", args[1]]);
    assert_eq!(inspect.code, 0, "{inspect:?}");
    assert!(inspect.stdout.contains("22 models"), "{}", inspect.stdout);
    assert!(
        inspect
            .stdout
            .contains("budget outcomes (recorded by the gate):"),
        "{}",
        inspect.stdout
    );
    assert!(inspect.stdout.contains("\ntenants: "), "{}", inspect.stdout);

    // Same arguments, another directory: the same figures.
    let again_dir = root.join("again");
    let again = calybris(&["demo", "--requests", "200", "--dir", path_str(&again_dir)]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        deterministic_part(&run.stdout, path_str(&dir)),
        deterministic_part(&again.stdout, path_str(&again_dir))
    );

    // A directory that already holds a demo is refused, not appended to...
    let twice = calybris(&["demo", "--requests", "200", "--dir", path_str(&dir)]);
    assert_eq!(twice.code, 2);
    assert!(
        twice.stderr.starts_with("ERROR DIR_NOT_EMPTY: "),
        "{twice:?}"
    );

    // ...unless asked to start afresh, which gives exactly the same figures.
    let fresh = calybris(&[
        "demo",
        "--requests",
        "200",
        "--dir",
        path_str(&dir),
        "--fresh",
    ]);
    assert_eq!(fresh.code, 0, "{fresh:?}");
    let summary = deterministic_part(&run.stdout, path_str(&dir));
    assert!(summary.contains("Conservation: balanced"));
    assert_eq!(summary, deterministic_part(&fresh.stdout, path_str(&dir)));
    let zero = calybris(&[
        "demo",
        "--requests",
        "0",
        "--dir",
        path_str(&root.join("zero")),
    ]);
    assert_eq!(zero.code, 2);
    assert!(zero.stderr.starts_with("ERROR BAD_ARGUMENT: "), "{zero:?}");
}
