//! The man page of the `calybris` command, generated from its clap definition
//! ([`crate::command`]) with `clap_mangen` (feature `man`). `cargo xtask man`
//! writes it to `docs/calybris.1`; a test renders it again and compares, so the
//! committed page cannot drift from the command.
//!
//! One page holds every subcommand: after the usual sections of the top-level
//! command comes one section per subcommand (nested ones included, such as
//! `calybris policy check`) with its usage, its arguments, its example and its
//! exit codes.

use std::io;

use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

/// The whole man page, as roff.
///
/// # Errors
/// Only if writing to memory fails, which it does not; the error is kept typed.
pub fn man_page() -> io::Result<Vec<u8>> {
    let mut command = crate::command();
    command.build();
    let man = Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut roff = Roff::new();
    for sub in command
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
    {
        subcommand(&mut roff, sub);
    }
    roff.to_writer(&mut page)?;
    man.render_extra_section(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// One section for `sub` (and, after it, one for each of its own subcommands).
fn subcommand(roff: &mut Roff, sub: &clap::Command) {
    let name = sub
        .get_bin_name()
        .map_or_else(|| sub.get_name().to_owned(), str::to_owned);
    roff.control("SH", [name.to_uppercase().as_str()]);
    if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
        roff.text([roman(about.to_string())]);
    }
    let usage = sub.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    roff.control("PP", []).text([bold("Usage: "), roman(usage)]);
    for arg in sub.get_arguments() {
        if arg.is_hide_set() || arg.get_id() == "help" {
            continue;
        }
        let mut head = Vec::new();
        if let Some(long) = arg.get_long() {
            head.push(bold(format!("--{long}")));
        }
        let values = arg.get_value_names().unwrap_or_default();
        match (arg.get_long(), values.first()) {
            (Some(_), Some(value)) if arg.get_action().takes_values() => {
                head.push(roman(" "));
                head.push(italic(value.to_string()));
            }
            (None, _) => head.push(italic(format!(
                "<{}>",
                arg.get_id().as_str().to_uppercase()
            ))),
            _ => {}
        }
        roff.control("TP", []).text(head);
        let mut help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        let defaults = arg.get_default_values();
        if !defaults.is_empty() && arg.get_action().takes_values() {
            let defaults: Vec<String> = defaults
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            help.push_str(&format!(" (default: {})", defaults.join(", ")));
        }
        let possible = arg.get_possible_values();
        if !possible.is_empty() {
            let names: Vec<&str> = possible
                .iter()
                .map(clap::builder::PossibleValue::get_name)
                .collect();
            help.push_str(&format!(" (one of: {})", names.join(", ")));
        }
        roff.text([roman(help)]);
    }
    if let Some(after) = sub.get_after_long_help().or_else(|| sub.get_after_help()) {
        roff.control("PP", []).control("nf", []);
        roff.text([roman(after.to_string())]);
        roff.control("fi", []);
    }
    for nested in sub.get_subcommands().filter(|sub| sub.get_name() != "help") {
        subcommand(roff, nested);
    }
}
