//! Text for people: RFC 3339 timestamps, exact money, percentages that add up,
//! grouped counts, coloured outcome words, and progress bars.
//!
//! Everything here is pure formatting except [`paint_outcome`] (which only adds
//! escape codes that the output stream strips again when it is not a colour
//! terminal or `NO_COLOR` is set) and [`progress_bar`] / [`spinner`] (hidden
//! unless stderr is a terminal).

use std::fmt::Write as _;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Milliseconds per day.
const MS_PER_DAY: u64 = 86_400_000;

/// The civil (proleptic Gregorian) date of `days` days after 1970-01-01, as
/// (year, month 1-12, day 1-31). Integer arithmetic only, exact for every `i64`
/// day count that keeps the year in range (the eras are 400 years of 146,097 days).
#[must_use]
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let year = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = if month <= 2 { year + 1 } else { year };
    // Both are in small ranges, so the casts are exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (year, month as u32, day as u32)
}

/// The number of days from 1970-01-01 to the civil date (the inverse of
/// [`civil_from_days`]); `month` is 1-12, `day` 1-31.
#[must_use]
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = month as i64;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time in milliseconds since the Unix epoch as an RFC 3339 UTC timestamp with
/// milliseconds, `2026-01-01T00:00:00.000Z`. Every `u64` is accepted (years after
/// 9999 are printed with more digits, as RFC 3339 has no form for them).
#[must_use]
pub fn rfc3339_utc(unix_ms: u64) -> String {
    // u64::MAX / MS_PER_DAY fits an i64 with room to spare.
    let days = i64::try_from(unix_ms / MS_PER_DAY).unwrap_or(i64::MAX / 2);
    let in_day = unix_ms % MS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    let seconds = in_day / 1_000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60,
        in_day % 1_000
    )
}

/// Microunits as exact decimal units with six decimals (`-0.000123`, `12.500000`):
/// no rounding, so columns printed this way add up exactly as printed.
#[must_use]
pub fn units(microunits: i128) -> String {
    let sign = if microunits < 0 { "-" } else { "" };
    let magnitude = microunits.unsigned_abs();
    format!(
        "{sign}{}.{:06}",
        grouped(magnitude / 1_000_000),
        magnitude % 1_000_000
    )
}

/// A count with thousands separators: `20,000`.
#[must_use]
pub fn grouped(n: impl Into<u128>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The shares of `parts` in their sum, in tenths of a percent, rounded by the
/// largest-remainder method so that they add up to exactly 1,000 (100.0 %)
/// whenever the sum is not zero (all zero when it is). Ties in the remainder go
/// to the earlier part.
#[must_use]
pub fn shares_tenths(parts: &[u64]) -> Vec<u64> {
    let whole: u128 = parts.iter().map(|&p| u128::from(p)).sum();
    if whole == 0 {
        return vec![0; parts.len()];
    }
    let scaled: Vec<(u128, u128)> = parts
        .iter()
        .map(|&p| {
            let x = u128::from(p) * 1_000;
            (x / whole, x % whole)
        })
        .collect();
    let mut tenths: Vec<u64> = scaled
        .iter()
        .map(|(floor, _)| u64::try_from(*floor).unwrap_or(1_000))
        .collect();
    let missing = 1_000u64.saturating_sub(tenths.iter().sum());
    let mut order: Vec<usize> = (0..parts.len()).collect();
    // Largest remainder first; the stable sort keeps earlier parts first on ties.
    order.sort_by(|&a, &b| scaled[b].1.cmp(&scaled[a].1));
    for &index in order.iter().take(usize::try_from(missing).unwrap_or(0)) {
        tenths[index] += 1;
    }
    tenths
}

/// Tenths of a percent as text: `33.4 %`.
#[must_use]
pub fn percent_text(tenths: u64) -> String {
    format!("{}.{} %", tenths / 10, tenths % 10)
}

/// A duration in milliseconds, for people: `347 ms`, `1.204 s`.
#[must_use]
pub fn duration_text(elapsed: Duration) -> String {
    let ms = elapsed.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        format!("{}.{:03} s", ms / 1_000, ms % 1_000)
    }
}

/// The style of an outcome word: green for success, red for failure, yellow for
/// an invalid input file.
fn outcome_style(word: &str) -> Option<Style> {
    let colour = match word {
        "VERIFIED" | "VALID" => AnsiColor::Green,
        "DIVERGED" | "ERROR" => AnsiColor::Red,
        "INVALID" => AnsiColor::Yellow,
        _ => return None,
    };
    Some(Style::new().fg_color(Some(colour.into())).bold())
}

/// `line` with its leading outcome word (after any indentation) in colour. The
/// escape codes are removed again by the output stream (the crate writes through `anstream`)
/// when stdout is not a colour terminal or `NO_COLOR` is set.
#[must_use]
pub fn paint_outcome(line: &str) -> String {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let word = body.split([' ', ':']).next().unwrap_or_default();
    match outcome_style(word) {
        Some(style) => {
            let mut out = String::with_capacity(line.len() + 16);
            let _ = write!(
                out,
                "{indent}{}{word}{}{}",
                style.render(),
                style.render_reset(),
                &body[word.len()..]
            );
            out
        }
        None => line.to_owned(),
    }
}

/// Whether progress may be drawn: stderr is a terminal.
fn progress_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// A progress bar on stderr of `len` steps (bytes when `bytes`), labelled
/// `message`, or a hidden one (which costs next to nothing) when stderr is not a
/// terminal.
#[must_use]
pub fn progress_bar(len: u64, message: &'static str, bytes: bool) -> ProgressBar {
    if !progress_wanted() {
        return ProgressBar::hidden();
    }
    let template = if bytes {
        "{msg} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left)"
    } else {
        "{msg} [{bar:40}] {human_pos}/{human_len} ({rate}/s, {eta} left)"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                // A whole number of steps per second, grouped: `12,345`.
                let rate = state.per_sec();
                let whole = if rate.is_finite() && rate > 0.0 {
                    // Saturating float-to-integer conversion.
                    rate as u64
                } else {
                    0
                };
                let _ = w.write_str(&grouped(whole));
            },
        )
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(message)
}

/// A spinner on stderr for work whose length is not known, ticking on its own,
/// or a hidden one when stderr is not a terminal.
#[must_use]
pub fn spinner(message: &'static str) -> ProgressBar {
    if !progress_wanted() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_known_dates() {
        // (seconds since the epoch, as given by `date -u -d ... +%s`)
        let known: [(u64, &str); 7] = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_827_696, "2000-02-29T12:34:56.000Z"),
            (1_709_251_199, "2024-02-29T23:59:59.000Z"),
            (1_704_067_199, "2023-12-31T23:59:59.000Z"),
            (1_767_225_600, "2026-01-01T00:00:00.000Z"),
            (4_107_542_400, "2100-03-01T00:00:00.000Z"),
            (253_402_300_799, "9999-12-31T23:59:59.000Z"),
        ];
        for (seconds, text) in known {
            assert_eq!(rfc3339_utc(seconds * 1_000), text);
        }
        assert_eq!(rfc3339_utc(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(rfc3339_utc(86_399_999), "1970-01-01T23:59:59.999Z");
        // No panic at the end of the range.
        assert!(rfc3339_utc(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn leap_years_follow_the_gregorian_rules() {
        // 2000 and 2024 are leap years, 1900 and 2100 are not.
        assert_eq!(days_from_civil(1900, 3, 1), -2_203_891_200 / 86_400);
        assert_eq!(civil_from_days(-2_203_891_200 / 86_400 - 1), (1900, 2, 28));
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(
            civil_from_days(days_from_civil(2024, 2, 29) + 1),
            (2024, 3, 1)
        );
        assert_eq!(
            civil_from_days(days_from_civil(2100, 2, 28) + 1),
            (2100, 3, 1)
        );
        assert_eq!(
            days_from_civil(2024, 12, 31) - days_from_civil(2024, 1, 1),
            365
        );
        assert_eq!(
            days_from_civil(2023, 12, 31) - days_from_civil(2023, 1, 1),
            364
        );
        // Round trip over 800 years around the epoch, negative days included.
        for days in (-146_097..146_097).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn money_is_exact() {
        assert_eq!(units(0), "0.000000");
        assert_eq!(units(12_345_678), "12.345678");
        assert_eq!(units(-123), "-0.000123");
        assert_eq!(units(1_234_567_890_000), "1,234,567.890000");
    }

    #[test]
    fn shares_add_up_to_one_hundred_percent() {
        assert_eq!(shares_tenths(&[1, 1, 1]), vec![334, 333, 333]);
        assert_eq!(shares_tenths(&[0, 0]), vec![0, 0]);
        assert_eq!(shares_tenths(&[5]), vec![1_000]);
        assert_eq!(shares_tenths(&[2, 1, 0]), vec![667, 333, 0]);
        // Parts from the workspace's seeded generator (SplitMix64).
        let mut rng = calybris_workload::SplitMix64::new(7);
        for n in 1..40 {
            let parts: Vec<u64> = (0..n).map(|_| rng.next_u64() >> 40).collect();
            let shares = shares_tenths(&parts);
            assert_eq!(shares.iter().sum::<u64>(), 1_000, "{parts:?}");
            // Each share is within one tenth of the exact value.
            let whole: u64 = parts.iter().sum();
            for (part, share) in parts.iter().zip(&shares) {
                let exact = u128::from(*part) * 1_000;
                let share = u128::from(*share) * u128::from(whole);
                assert!(share + u128::from(whole) > exact && share < exact + u128::from(whole));
            }
        }
        assert_eq!(percent_text(334), "33.4 %");
    }

    #[test]
    fn outcome_words_are_painted_and_nothing_else() {
        let painted = paint_outcome("  VERIFIED x: 3 records");
        assert!(painted.starts_with("  \u{1b}["), "{painted:?}");
        assert!(painted.ends_with(" x: 3 records"));
        assert_eq!(paint_outcome("tenants: 3"), "tenants: 3");
        assert_eq!(grouped(1_234_567u64), "1,234,567");
        assert_eq!(duration_text(Duration::from_millis(1_204)), "1.204 s");
    }
}
