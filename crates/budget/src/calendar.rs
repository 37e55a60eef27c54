//! Window calendars: which budget window a caller's clock value falls in.
//!
//! The budget engine reads no clock. A caller (the gate) passes its own clock
//! value, in milliseconds since the Unix epoch, and [`WindowSpec::window_at`]
//! maps it to a **window id**: a number that only grows with time and changes
//! exactly at the window's boundaries. The engine is told of a boundary by an
//! explicit [`BudgetTree::advance_window`](crate::BudgetTree::advance_window)
//! with the new id.
//!
//! Calendars are civil-time windows (day, week starting Monday, month) in a
//! fixed UTC offset or in a time zone with daylight saving ([`ZoneRule`]: the
//! rule of an IANA zone, read from its POSIX `TZ` string or its TZif file and
//! fixed by the configuration, so no zone database is consulted at run time), or
//! fixed durations from an origin. In a zone, the day a change happens lasts 23
//! or 25 hours.

use crate::zone::ZoneRule;

/// Milliseconds in one day.
const MS_PER_DAY: i64 = 86_400_000;
/// The largest UTC offset accepted, in minutes (UTC+18:00, the ISO 8601 bound).
pub const MAX_UTC_OFFSET_MINUTES: i16 = 18 * 60;

/// How a budget's windows are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WindowSpec {
    /// One window forever: the budget never resets (window id always 0).
    Lifetime,
    /// Fixed-length windows of `duration_ms` starting at `origin_unix_ms`.
    Fixed {
        /// Length of a window, in milliseconds (positive).
        duration_ms: u64,
        /// Start of window 0, in milliseconds since the Unix epoch.
        origin_unix_ms: u64,
    },
    /// Calendar days in a fixed UTC offset: window id = days since 1970-01-01 local.
    Daily {
        /// Offset of local time from UTC, in minutes (east positive).
        utc_offset_minutes: i16,
    },
    /// Calendar weeks starting Monday 00:00 local: id = weeks since the Monday
    /// 1969-12-29 local.
    Weekly {
        /// Offset of local time from UTC, in minutes (east positive).
        utc_offset_minutes: i16,
    },
    /// Calendar months: id = months since 1970-01 local.
    Monthly {
        /// Offset of local time from UTC, in minutes (east positive).
        utc_offset_minutes: i16,
    },
    /// Calendar days in a time zone with daylight saving: as [`Self::Daily`], in
    /// the zone's local time (a 23- or 25-hour day at a change).
    ZonedDaily {
        /// The zone's rule.
        zone: ZoneRule,
    },
    /// Calendar weeks from Monday in a time zone.
    ZonedWeekly {
        /// The zone's rule.
        zone: ZoneRule,
    },
    /// Calendar months in a time zone.
    ZonedMonthly {
        /// The zone's rule.
        zone: ZoneRule,
    },
}

/// Why a window could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CalendarError {
    /// A fixed window of zero length.
    #[error("a fixed window must last at least one millisecond")]
    ZeroDuration,
    /// A zone rule is out of range ([`ZoneRule::validate`]).
    #[error("the zone rule is out of range")]
    BadZone,
    /// The UTC offset is beyond +-18:00.
    #[error("UTC offset {minutes} minutes is beyond +-18:00")]
    OffsetOutOfRange {
        /// The refused offset.
        minutes: i16,
    },
    /// The clock value lies before the first window (before the origin, or
    /// before 1970 in local time).
    #[error("clock value {unix_ms} ms lies before the first window")]
    BeforeFirstWindow {
        /// The refused clock value.
        unix_ms: u64,
    },
}

impl WindowSpec {
    /// Checks the spec's parameters.
    ///
    /// # Errors
    ///
    /// [`CalendarError::ZeroDuration`] or [`CalendarError::OffsetOutOfRange`].
    pub fn validate(&self) -> Result<(), CalendarError> {
        match *self {
            Self::Lifetime => Ok(()),
            Self::Fixed { duration_ms, .. } => {
                if duration_ms == 0 {
                    Err(CalendarError::ZeroDuration)
                } else {
                    Ok(())
                }
            }
            Self::Daily { utc_offset_minutes }
            | Self::Weekly { utc_offset_minutes }
            | Self::Monthly { utc_offset_minutes } => {
                if utc_offset_minutes.unsigned_abs() > MAX_UTC_OFFSET_MINUTES.unsigned_abs() {
                    Err(CalendarError::OffsetOutOfRange {
                        minutes: utc_offset_minutes,
                    })
                } else {
                    Ok(())
                }
            }
            Self::ZonedDaily { zone }
            | Self::ZonedWeekly { zone }
            | Self::ZonedMonthly { zone } => zone.validate().map_err(|_| CalendarError::BadZone),
        }
    }

    /// The id of the window that contains the caller's clock value `unix_ms`.
    ///
    /// Monotone: a later clock value never gives a smaller id.
    ///
    /// # Errors
    ///
    /// The errors of [`validate`](Self::validate), and
    /// [`CalendarError::BeforeFirstWindow`].
    ///
    /// ```
    /// use calybris_budget::WindowSpec;
    /// // 2026-12-01T00:30:00Z is already December in UTC, still November in UTC-05:00.
    /// let t = 1_796_085_000_000;
    /// let utc = WindowSpec::Monthly { utc_offset_minutes: 0 };
    /// let new_york = WindowSpec::Monthly { utc_offset_minutes: -300 };
    /// assert_eq!(utc.window_at(t)?, new_york.window_at(t)? + 1);
    /// assert_eq!(utc.window_at(t)?, (2026 - 1970) * 12 + 11);
    /// # Ok::<(), calybris_budget::CalendarError>(())
    /// ```
    pub fn window_at(&self, unix_ms: u64) -> Result<u64, CalendarError> {
        self.validate()?;
        let before = CalendarError::BeforeFirstWindow { unix_ms };
        match *self {
            Self::Lifetime => Ok(0),
            Self::Fixed {
                duration_ms,
                origin_unix_ms,
            } => unix_ms
                .checked_sub(origin_unix_ms)
                .map(|since| since / duration_ms)
                .ok_or(before),
            Self::Daily { utc_offset_minutes } => {
                daily(fixed_local_ms(unix_ms, utc_offset_minutes)).ok_or(before)
            }
            Self::Weekly { utc_offset_minutes } => {
                weekly(fixed_local_ms(unix_ms, utc_offset_minutes)).ok_or(before)
            }
            Self::Monthly { utc_offset_minutes } => {
                monthly(fixed_local_ms(unix_ms, utc_offset_minutes)).ok_or(before)
            }
            Self::ZonedDaily { zone } => daily(zone.local_ms(unix_ms)).ok_or(before),
            Self::ZonedWeekly { zone } => weekly(zone.local_ms(unix_ms)).ok_or(before),
            Self::ZonedMonthly { zone } => monthly(zone.local_ms(unix_ms)).ok_or(before),
        }
    }
}

/// Local milliseconds since 1970-01-01 local in a fixed offset.
fn fixed_local_ms(unix_ms: u64, utc_offset_minutes: i16) -> i128 {
    i128::from(unix_ms) + i128::from(utc_offset_minutes) * 60_000
}

/// Whole local days since 1970-01-01 (may be negative just after the epoch west of
/// UTC).
fn local_days_signed(local_ms: i128) -> i64 {
    // |local_ms| < 2^65: the quotient fits an i64.
    i64::try_from(local_ms.div_euclid(i128::from(MS_PER_DAY))).unwrap_or(i64::MAX)
}

fn daily(local_ms: i128) -> Option<u64> {
    u64::try_from(local_days_signed(local_ms)).ok()
}

fn weekly(local_ms: i128) -> Option<u64> {
    // 1970-01-01 was a Thursday: day 0 is 3 days after Monday 1969-12-29.
    u64::try_from((local_days_signed(local_ms) + 3).div_euclid(7)).ok()
}

fn monthly(local_ms: i128) -> Option<u64> {
    let days = daily(local_ms)?;
    let (year, month, _) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    u64::try_from((year - 1970) * 12 + i64::from(month) - 1).ok()
}

/// Days from 1970-01-01 to the proleptic Gregorian date (`month` 1..=12), the
/// inverse of [`civil_from_days`].
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let march_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * march_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date (year, month 1..=12, day 1..=31) of `days`
/// since 1970-01-01, by counting 400-year eras of 146,097 days starting on
/// 1 March (so the leap day ends a year).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097); // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month in 1..=12 and day in 1..=31 by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::{WindowSpec, civil_from_days, days_from_civil};
    use crate::ZoneRule;

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        for days in -800_000..800_000_i64 {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(
                days_from_civil(year, month, day),
                days,
                "{year}-{month}-{day}"
            );
        }
    }

    /// A day of 23 hours and a day of 25 hours in Berlin (2026-03-29 and
    /// 2026-10-25), and the weeks and months around them, hour by hour.
    #[test]
    fn zoned_days_last_23_and_25_hours_at_the_changes() {
        let zone = ZoneRule::parse_posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("valid");
        let daily = WindowSpec::ZonedDaily { zone };
        let hour = 3_600_000_u64;
        let length_of = |local_day: i64| {
            // The UTC hours whose window is `local_day`.
            let from = u64::try_from(local_day - 1).expect("after 1970") * 24 * hour;
            (0..72)
                .filter(|h| daily.window_at(from + h * hour) == Ok(local_day.unsigned_abs()))
                .count()
        };
        let spring = days_from_civil(2026, 3, 29);
        let autumn = days_from_civil(2026, 10, 25);
        assert_eq!(length_of(spring - 1), 24);
        assert_eq!(length_of(spring), 23);
        assert_eq!(length_of(autumn), 25);
        assert_eq!(length_of(autumn + 1), 24);
        // Local midnight of 2026-03-30 is 22:00 UTC (CEST); of 2026-10-26, 23:00 UTC.
        let at = |days: i64, h: u64| u64::try_from(days).expect("positive") * 24 * hour + h * hour;
        assert_eq!(
            daily.window_at(at(spring, 22) - 1),
            Ok(spring.unsigned_abs())
        );
        assert_eq!(
            daily.window_at(at(spring, 22)),
            Ok(spring.unsigned_abs() + 1)
        );
        assert_eq!(
            daily.window_at(at(autumn, 23) - 1),
            Ok(autumn.unsigned_abs())
        );
        assert_eq!(
            daily.window_at(at(autumn, 23)),
            Ok(autumn.unsigned_abs() + 1)
        );
        // Every id is monotone over the year, minute by minute through each change.
        for spec in [
            daily,
            WindowSpec::ZonedWeekly { zone },
            WindowSpec::ZonedMonthly { zone },
        ] {
            let mut previous = 0;
            for m in 0..(366 * 24 * 4) {
                let t = at(days_from_civil(2026, 1, 1), 0) + m * 15 * 60_000;
                let id = spec.window_at(t).expect("after 1970");
                assert!(
                    id == previous || id == previous + 1 || previous == 0,
                    "{spec:?} {m}"
                );
                previous = id;
            }
        }
        // A fall-back at local midnight (the repeated hour crosses the day boundary)
        // holds the old day through the repeated hour instead of going back.
        let midnight = ZoneRule::parse_posix("AAA3BBB,M3.2.0/0,M11.1.0/0").expect("valid");
        let spec = WindowSpec::ZonedDaily { zone: midnight };
        let mut previous = 0;
        for m in 0..(366 * 24 * 12) {
            let t = at(days_from_civil(2026, 1, 1), 0) + m * 5 * 60_000;
            let id = spec.window_at(t).expect("after 1970");
            assert!(id >= previous, "minute {}", m * 5);
            previous = id;
        }
        assert!(
            WindowSpec::ZonedDaily {
                zone: ZoneRule::fixed(30 * 3_600)
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_789), (2026, 12, 2));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn day_by_day_months_advance_by_at_most_one_at_the_first() {
        let spec = WindowSpec::Monthly {
            utc_offset_minutes: 60,
        };
        let mut previous = spec.window_at(0).unwrap_or(u64::MAX);
        for day in 1..40_000_u64 {
            // Local midnight + 1 ms of each day in UTC+01:00.
            let t = day * 86_400_000 - 3_600_000 + 1;
            let id = spec.window_at(t).expect("after the epoch");
            let (_, _, dom) = civil_from_days(i64::try_from(day).expect("small"));
            if dom == 1 {
                assert_eq!(id, previous + 1, "day {day}");
            } else {
                assert_eq!(id, previous, "day {day}");
            }
            previous = id;
        }
    }

    #[test]
    fn weeks_start_on_monday() {
        let spec = WindowSpec::Weekly {
            utc_offset_minutes: 0,
        };
        // 1970-01-05 was a Monday.
        let sunday = 4 * 86_400_000 - 1;
        let monday = 4 * 86_400_000;
        assert_eq!(spec.window_at(sunday), Ok(0));
        assert_eq!(spec.window_at(monday), Ok(1));
    }

    #[test]
    fn fixed_windows_and_bad_specs() {
        let spec = WindowSpec::Fixed {
            duration_ms: 1_000,
            origin_unix_ms: 500,
        };
        assert_eq!(spec.window_at(1_499), Ok(0));
        assert_eq!(spec.window_at(1_500), Ok(1));
        assert!(spec.window_at(499).is_err());
        let zero = WindowSpec::Fixed {
            duration_ms: 0,
            origin_unix_ms: 0,
        };
        assert!(zero.window_at(1).is_err());
        let far = WindowSpec::Daily {
            utc_offset_minutes: 19 * 60,
        };
        assert!(far.validate().is_err());
        assert_eq!(WindowSpec::Lifetime.window_at(u64::MAX), Ok(0));
    }
}
