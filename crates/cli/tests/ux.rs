//! What a person sees: `--help` with an example and the exit codes of every
//! subcommand, shell completions, colour only where it is wanted, money columns
//! that add up as printed, shares that add up to 100.0 %, and the verify line
//! saying whether the run was anchored.

mod common;

use common::*;

/// Every subcommand path of the command (`["verify"]`, `["policy", "check"]`, ...).
fn subcommand_paths() -> Vec<Vec<String>> {
    fn walk(command: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in command.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_owned());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&calybris_cli::command(), &[], &mut out);
    out
}

#[test]
fn every_subcommand_help_shows_an_example_and_its_exit_codes() {
    let paths = subcommand_paths();
    for expected in [
        "verify",
        "inspect",
        "show",
        "explain",
        "demo",
        "completions",
    ] {
        assert!(
            paths.iter().any(|p| p == &[expected.to_owned()]),
            "{expected}"
        );
    }
    assert!(paths.iter().any(|p| p == &["policy", "check"]));
    for path in &paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let run = calybris(&args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        let help = &run.stdout;
        assert!(help.contains("Exit codes:\n  0  "), "{args:?}: {help}");
        assert!(help.contains("\n  2  "), "{args:?}: {help}");
        assert!(
            help.contains(&format!("Example:\n  calybris {}", path[0])),
            "{args:?}: {help}"
        );
    }
    // The commands that check a log also name exit code 1 and its word.
    for sub in ["verify", "inspect", "show"] {
        let run = calybris(&[sub, "--help"]);
        assert!(
            run.stdout.contains("\n  1  DIVERGED"),
            "{sub}: {}",
            run.stdout
        );
    }
    let top = calybris(&["--help"]);
    assert!(top.stdout.contains("completions"), "{}", top.stdout);
    assert!(top.stdout.contains("Exit codes"), "{}", top.stdout);
}

#[test]
fn completions_are_generated_for_bash_and_the_other_shells() {
    let run = calybris(&["completions", "bash"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
    let script = &run.stdout;
    assert!(script.contains("_calybris()"), "{script}");
    assert!(script.contains("complete -F _calybris"), "{script}");
    for word in ["verify", "inspect", "completions", "--anchor", "--json"] {
        assert!(script.contains(word), "{word} missing from the bash script");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let run = calybris(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {run:?}");
        assert!(run.stdout.contains("verify"), "{shell}");
    }
    let run = calybris(&["completions", "tcsh"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.starts_with("ERROR USAGE: "), "{run:?}");
}

#[test]
fn colour_only_when_asked_and_never_with_no_color() {
    let dir = temp_dir("colour");
    let log = dir.join("audit.cwal");
    write_log(&log, None, 2);
    let log = path_str(&log);

    // A pipe: plain text.
    let plain = calybris(&["verify", log]);
    assert_eq!(plain.code, 0, "{plain:?}");
    assert!(plain.stdout.starts_with("VERIFIED "), "{plain:?}");
    assert!(!plain.stdout.contains('\u{1b}'), "{plain:?}");

    // Forced: VERIFIED in green (and nothing else of the line changes).
    let forced = calybris_env(&["verify", log], &[("CLICOLOR_FORCE", "1")]);
    assert_eq!(forced.code, 0);
    assert!(
        forced.stdout.contains("32mVERIFIED\u{1b}[0m "),
        "{forced:?}"
    );
    let stripped = forced
        .stdout
        .replace("\u{1b}[1m", "")
        .replace("\u{1b}[32m", "")
        .replace("\u{1b}[0m", "");
    assert_eq!(stripped, plain.stdout);

    // ERROR in red on stderr.
    let missing = dir.join("missing.cwal");
    let error = calybris_env(&["verify", path_str(&missing)], &[("CLICOLOR_FORCE", "1")]);
    assert_eq!(error.code, 2);
    assert!(
        error.stderr.contains("31mERROR\u{1b}[0m UNREADABLE"),
        "{error:?}"
    );

    // NO_COLOR wins over CLICOLOR_FORCE.
    let none = calybris_env(
        &["verify", log],
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
    );
    assert_eq!(none.stdout, plain.stdout);

    // JSON is never coloured.
    let json = calybris_env(&["verify", "--json", log], &[("CLICOLOR_FORCE", "1")]);
    assert!(!json.stdout.contains('\u{1b}'), "{json:?}");
}

#[test]
fn the_verify_line_says_whether_it_was_anchored() {
    let dir = temp_dir("anchored");
    let log = dir.join("audit.cwal");
    let anchor = write_log(&log, None, 3).to_string();
    let log = path_str(&log);
    let free = calybris(&["verify", log]);
    assert!(free.stdout.contains("(not anchored: "), "{free:?}");
    let anchored = calybris(&["verify", log, "--anchor", &anchor]);
    assert_eq!(anchored.code, 0, "{anchored:?}");
    assert!(
        anchored
            .stdout
            .contains("(checked against the given anchor)"),
        "{anchored:?}"
    );
    assert!(!anchored.stdout.contains("not anchored"));
}

/// `$1,234.567890` or `-$0.000001` as microunits.
fn dollars_microunits(text: &str) -> i128 {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    units_microunits(text.strip_prefix('$').expect("a dollar amount"), negative)
}

/// `1,234.567890` as microunits.
fn units_microunits(text: &str, negative: bool) -> i128 {
    let (whole, fraction) = text.split_once('.').expect("a decimal point");
    assert_eq!(fraction.len(), 6, "{text}");
    let whole: i128 = whole.replace(',', "").parse().expect("digits");
    let fraction: i128 = fraction.parse().expect("digits");
    let value = whole * 1_000_000 + fraction;
    if negative { -value } else { value }
}

#[test]
fn demo_and_verify_money_adds_up_as_printed_and_shares_make_100_percent() {
    let root = temp_dir("money");
    let dir = root.join("run");
    let run = calybris(&["demo", "--requests", "600", "--dir", path_str(&dir)]);
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.stdout;

    // Budgets: budget = spent + remaining, exactly as printed, for every row.
    let rows: Vec<&str> = out
        .lines()
        .skip_while(|line| !line.starts_with("Budgets ("))
        .skip(1)
        .take_while(|line| !line.is_empty())
        .collect();
    assert_eq!(rows.len(), 8, "{out}");
    for row in rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let [_, budget, spent, remaining, _] = cells[..] else {
            panic!("unexpected row {row:?}");
        };
        assert_eq!(
            dollars_microunits(budget),
            dollars_microunits(spent) + dollars_microunits(remaining),
            "{row}"
        );
    }

    // Decisions: the shares of the partition add up to 100.0 %, the total says so.
    let shares: Vec<u64> = out
        .lines()
        .skip_while(|line| !line.starts_with("Decisions "))
        .skip(1)
        .take_while(|line| !line.starts_with("  total"))
        .filter(|line| line.ends_with(" %"))
        .map(|line| {
            let share = line.split_whitespace().rev().nth(1).expect("a share");
            share.replace('.', "").parse().expect("tenths")
        })
        .collect();
    assert_eq!(shares.len(), 3, "{out}");
    assert_eq!(shares.iter().sum::<u64>(), 1_000, "{out}");
    assert!(
        out.lines()
            .any(|line| line.starts_with("  total") && line.ends_with("100.0 %")),
        "{out}"
    );
    // Reasons in words: no Rust variant names in the summary.
    assert!(
        !out.contains("Constraint") && !out.contains("HardLimit"),
        "{out}"
    );

    // verify of the gate directory: initial = committed + reserved + remaining for
    // every tenant, in microunits and in the units printed beside them.
    let verify = calybris(&["verify", path_str(&dir)]);
    assert_eq!(verify.code, 0, "{verify:?}");
    let tenants: Vec<&str> = verify
        .stdout
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("tenant "))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .collect();
    assert_eq!(tenants.len(), 96, "{}", verify.stdout);
    for row in tenants {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells.len(), 9, "{row}");
        let micro = |i: usize| -> i128 { cells[i].parse().expect("microunits") };
        let units = |i: usize| -> i128 {
            let text = cells[i].trim_start_matches('(').trim_end_matches(')');
            match text.strip_prefix('-') {
                Some(rest) => units_microunits(rest, true),
                None => units_microunits(text, false),
            }
        };
        assert_eq!(micro(1), micro(3) + micro(5) + micro(7), "{row}");
        assert_eq!(units(2), units(4) + units(6) + units(8), "{row}");
        for i in [1, 3, 5, 7] {
            assert_eq!(micro(i), units(i + 1), "{row}");
        }
    }

    // The demo logs its catalog's names: verify counts the names record (it is not
    // described as a record of its own) and names the selected models and providers.
    assert!(verify.stdout.starts_with("VERIFIED"), "{}", verify.stdout);
    assert!(
        verify
            .stdout
            .contains("1 policies (1 policy-names records)"),
        "{}",
        verify.stdout
    );
    assert!(
        !verify.stdout.contains("policy-names record:"),
        "{}",
        verify.stdout
    );
    let model_rows: Vec<&str> = verify
        .stdout
        .lines()
        .skip_while(|line| !line.starts_with("selections by model:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .collect();
    assert!(!model_rows.is_empty(), "{}", verify.stdout);
    for row in &model_rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let model = calybris_workload::catalog::CATALOG
            .iter()
            .find(|m| m.name == cells[0])
            .unwrap_or_else(|| panic!("no catalog model named in {row:?}"));
        assert_eq!(
            cells[1],
            calybris_workload::catalog::PROVIDERS[usize::from(model.provider_id)],
            "{row}"
        );
    }

    // inspect: every selected model and its provider by name; the time in RFC 3339
    // (the demo's fixed clock).
    let inspect = calybris(&["inspect", "--json", path_str(&dir)]);
    assert_eq!(inspect.code, 0, "{inspect:?}");
    let json = inspect.json();
    assert_eq!(json["first_recorded_at"], "2026-01-01T00:00:00.000Z");
    assert_eq!(json["by_kind"]["policy-names"], 1, "{json}");
    let by_model = json["by_model"].as_array().expect("by_model");
    assert_eq!(by_model.len(), model_rows.len(), "{json}");
    for row in by_model {
        assert!(
            row["model"].is_string() && row["provider"].is_string(),
            "{row}"
        );
    }
    // show: the names record right after the policy, then a decision by name.
    let policy = json["policies"][0]["sequence"].as_u64().expect("a policy");
    let names = calybris(&["show", path_str(&dir), "--seq", &(policy + 1).to_string()]);
    assert_eq!(names.code, 0, "{names:?}");
    assert!(
        names.stdout.contains("policy-names record")
            && names.stdout.contains("101 nw-ultra")
            && names.stdout.contains("1 helix")
            && names.stdout.contains("bit 3 long-context"),
        "{names:?}"
    );
    let decision = policy + 2;
    let show = calybris(&["show", path_str(&dir), "--seq", &decision.to_string()]);
    assert_eq!(show.code, 0, "{show:?}");
    assert!(
        show.stdout.contains("recorded at 2026-01-01T00:00:00.000Z"),
        "{show:?}"
    );
    let selected = show
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("by name: "))
        .unwrap_or_else(|| panic!("no names in {show:?}"));
    assert!(
        calybris_workload::catalog::CATALOG
            .iter()
            .any(|m| selected.contains(&format!("selected {}", m.name))),
        "{show:?}"
    );
}

#[test]
fn every_reporting_command_has_json_on_one_line() {
    let root = temp_dir("json-everywhere");
    let log = root.join("audit.cwal");
    write_log(&log, None, 4);
    let log = path_str(&log);
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/examples-data");
    let policy = format!("{data}/policy.json");
    let request = format!("{data}/request.json");
    let demo_dir = root.join("demo");
    let runs: Vec<Vec<&str>> = vec![
        vec!["verify", "--json", log],
        vec!["inspect", "--json", log],
        vec!["show", "--json", log, "--seq", "2"],
        vec![
            "explain",
            "--json",
            "--policy",
            &policy,
            "--request",
            &request,
        ],
        vec!["policy", "check", "--json", &policy],
        vec![
            "demo",
            "--json",
            "--requests",
            "300",
            "--dir",
            path_str(&demo_dir),
        ],
    ];
    for args in runs {
        let run = calybris(&args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        assert_eq!(run.stdout.lines().count(), 1, "{args:?}: {}", run.stdout);
        let value = run.json();
        assert!(value.is_object(), "{args:?}");
        match args[0] {
            "policy" => {
                assert_eq!(value["outcome"], "VALID");
                assert_eq!(value["digest"].as_str().map(str::len), Some(64));
            }
            "demo" => {
                assert_eq!(value["requests"], 300);
                assert_eq!(value["verify"]["outcome"], "VERIFIED");
                assert_eq!(value["balanced"], true);
                let decided = ["admitted", "refused_by_budget", "rejected_by_kernel"]
                    .iter()
                    .map(|key| value[*key].as_u64().expect("a count"))
                    .sum::<u64>();
                assert_eq!(decided, 300);
                let shares = &value["shares_tenths_percent"];
                let total: u64 = ["admitted", "refused_by_budget", "rejected_by_kernel"]
                    .iter()
                    .map(|key| shares[*key].as_u64().expect("a share"))
                    .sum();
                assert_eq!(total, 1_000);
                for org in value["organisations"].as_array().expect("organisations") {
                    let n = |key: &str| org[key].as_i64().expect("microunits");
                    assert_eq!(
                        n("budget_microunits"),
                        n("spent_microunits") + n("remaining_microunits")
                    );
                }
            }
            _ => {}
        }
    }
}
