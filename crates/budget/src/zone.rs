//! Time-zone rules for calendar windows: [`ZoneRule`].
//!
//! The budget engine reads no clock and no zone database. A zone's rule is fixed by
//! the configuration: a standard offset and, for a zone with daylight saving, the
//! daylight offset and the yearly start and end of daylight time. That is exactly
//! what a POSIX `TZ` string says (`CET-1CEST,M3.5.0,M10.5.0/3` for Berlin), and what
//! the footer of a version 2+ TZif file (RFC 8536, the files under
//! `/usr/share/zoneinfo`) carries for every time after its last listed transition.
//! [`ZoneRule::parse_posix`] and [`ZoneRule::from_tzif`] read them, with no
//! dependency; the parsed rule is plain data (`Copy`), so a budget that logs it
//! computes the same windows on every machine, whatever that machine's zone files
//! say.
//!
//! The rule applies to every year alike: the historic changes a TZif file lists
//! before its footer are not used (a budget's windows start now, not in 1970).
//!
//! # Windows across a change
//!
//! Local time jumps forward at the start of daylight time (a 23-hour day) and back
//! at its end (a 25-hour day). A window id must never decrease as the clock runs, so
//! during the repeated interval after a backward jump the local clock is held at
//! the last instant before the jump: the repeated hour belongs to the window the
//! first pass of it was in.

/// Seconds in one day.
const SECONDS_PER_DAY: i64 = 86_400;
/// The largest offset from UTC accepted, in seconds (25 hours, RFC 8536's bound is
/// 24:59:59).
pub const MAX_ZONE_OFFSET_SECONDS: i32 = 25 * 3_600 - 1;
/// The largest transition time of day accepted, in seconds (RFC 8536 allows -167 to
/// 167 hours).
const MAX_TRANSITION_SECONDS: i32 = 167 * 3_600;
/// The longest POSIX `TZ` string read, in bytes.
pub const MAX_POSIX_TZ_BYTES: usize = 128;

/// A zone's offset rule (see the [module](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ZoneRule {
    /// The standard offset from UTC, in seconds east.
    pub std_offset_seconds: i32,
    /// Daylight saving, if the zone has it.
    pub dst: Option<DstRule>,
}

/// The daylight-saving part of a [`ZoneRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DstRule {
    /// The daylight offset from UTC, in seconds east.
    pub offset_seconds: i32,
    /// When daylight time starts each year, in standard local time.
    pub start: Transition,
    /// When it ends each year, in daylight local time.
    pub end: Transition,
}

/// A yearly change of offset: a day of the year and a local time of that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Transition {
    /// The day.
    pub date: TransitionDate,
    /// Seconds after local midnight of that day (may be negative or past 24 hours,
    /// -167 to 167 hours).
    pub time_seconds: i32,
}

/// The day of a [`Transition`], as POSIX `TZ` strings give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TransitionDate {
    /// `Mm.w.d`: weekday `weekday` (0 Sunday to 6) of week `week` (1 to 5, 5 the
    /// last) of month `month` (1 to 12).
    MonthWeekDay {
        /// The month, 1 to 12.
        month: u8,
        /// The week, 1 to 5 (5: the last such weekday of the month).
        week: u8,
        /// The weekday, 0 (Sunday) to 6.
        weekday: u8,
    },
    /// `Jn`: day `n` of the year, 1 to 365, never counting 29 February.
    JulianNoLeap(u16),
    /// `n`: day `n` of the year, 0 to 365, counting 29 February.
    ZeroBased(u16),
}

/// Why a zone rule could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    /// The `TZ` string is malformed (at byte `at`).
    #[error("malformed POSIX TZ string at byte {at}")]
    Malformed {
        /// Where reading stopped.
        at: usize,
    },
    /// The `TZ` string is longer than [`MAX_POSIX_TZ_BYTES`].
    #[error("POSIX TZ string of {len} bytes is too long")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// An offset, a date or a time is out of range.
    #[error("a zone offset, date or time is out of range")]
    OutOfRange,
    /// The bytes are not a TZif file of version 2 or later with a footer rule.
    #[error("not a TZif file of version 2 or later with a footer rule")]
    NotTzif,
}

impl ZoneRule {
    /// A zone with a fixed offset and no daylight saving.
    #[must_use]
    pub const fn fixed(offset_seconds: i32) -> Self {
        Self {
            std_offset_seconds: offset_seconds,
            dst: None,
        }
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ZoneError::OutOfRange`].
    pub fn validate(&self) -> Result<(), ZoneError> {
        let offset_ok = |o: i32| o.unsigned_abs() <= MAX_ZONE_OFFSET_SECONDS.unsigned_abs();
        let transition_ok = |t: &Transition| {
            t.time_seconds.unsigned_abs() <= MAX_TRANSITION_SECONDS.unsigned_abs()
                && match t.date {
                    TransitionDate::MonthWeekDay {
                        month,
                        week,
                        weekday,
                    } => (1..=12).contains(&month) && (1..=5).contains(&week) && weekday <= 6,
                    TransitionDate::JulianNoLeap(day) => (1..=365).contains(&day),
                    TransitionDate::ZeroBased(day) => day <= 365,
                }
        };
        let ok = offset_ok(self.std_offset_seconds)
            && self.dst.is_none_or(|dst| {
                offset_ok(dst.offset_seconds)
                    && dst.offset_seconds != self.std_offset_seconds
                    && transition_ok(&dst.start)
                    && transition_ok(&dst.end)
            });
        if ok {
            Ok(())
        } else {
            Err(ZoneError::OutOfRange)
        }
    }

    /// Reads a POSIX `TZ` rule string such as `CET-1CEST,M3.5.0,M10.5.0/3`,
    /// `EST5EDT,M3.2.0,M11.1.0`, `<+0330>-3:30` or `UTC0` (POSIX signs: an offset is
    /// west of UTC unless negative). A daylight name without rules is refused (its
    /// dates would be a guess).
    ///
    /// # Errors
    /// [`ZoneError::Malformed`], [`ZoneError::TooLong`] or [`ZoneError::OutOfRange`].
    ///
    /// ```
    /// use calybris_budget::ZoneRule;
    /// let berlin = ZoneRule::parse_posix("CET-1CEST,M3.5.0,M10.5.0/3")?;
    /// assert_eq!(berlin.std_offset_seconds, 3_600);
    /// // 2026-07-01T12:00:00Z is summer time in Berlin: UTC+2.
    /// assert_eq!(berlin.offset_at(1_782_907_200), 7_200);
    /// # Ok::<(), calybris_budget::ZoneError>(())
    /// ```
    pub fn parse_posix(text: &str) -> Result<Self, ZoneError> {
        if text.len() > MAX_POSIX_TZ_BYTES {
            return Err(ZoneError::TooLong { len: text.len() });
        }
        let mut reader = Reader {
            bytes: text.as_bytes(),
            at: 0,
        };
        reader.name()?;
        let std_offset_seconds = -reader.offset()?;
        let dst = if reader.done() {
            None
        } else {
            reader.name()?;
            let offset_seconds = if reader.peek() == Some(b',') {
                std_offset_seconds + 3_600
            } else {
                -reader.offset()?
            };
            reader.expect(b',')?;
            let start = reader.transition()?;
            reader.expect(b',')?;
            let end = reader.transition()?;
            Some(DstRule {
                offset_seconds,
                start,
                end,
            })
        };
        if !reader.done() {
            return Err(reader.malformed());
        }
        let rule = Self {
            std_offset_seconds,
            dst,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Reads the rule of a TZif file (RFC 8536) of version 2 or later: the POSIX
    /// `TZ` string of its footer, which holds for every time after its last listed
    /// transition. Only the file's structure is read; no header count is trusted
    /// beyond the bytes given.
    ///
    /// # Errors
    /// [`ZoneError::NotTzif`] for other bytes, a version 1 file or an empty footer;
    /// the errors of [`parse_posix`](Self::parse_posix).
    pub fn from_tzif(bytes: &[u8]) -> Result<Self, ZoneError> {
        let v1 = tzif_block_len(bytes, 4).ok_or(ZoneError::NotTzif)?;
        if bytes.get(4).is_none_or(|version| *version < b'2') {
            return Err(ZoneError::NotTzif);
        }
        let second = bytes.get(v1..).ok_or(ZoneError::NotTzif)?;
        let v2 = tzif_block_len(second, 8).ok_or(ZoneError::NotTzif)?;
        let footer = second.get(v2..).ok_or(ZoneError::NotTzif)?;
        let rest = footer.strip_prefix(b"\n").ok_or(ZoneError::NotTzif)?;
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(ZoneError::NotTzif)?;
        let text = std::str::from_utf8(&rest[..end]).map_err(|_| ZoneError::NotTzif)?;
        if text.is_empty() {
            return Err(ZoneError::NotTzif);
        }
        Self::parse_posix(text)
    }

    /// The offset from UTC, in seconds east, in force at `unix_seconds`.
    #[must_use]
    pub fn offset_at(&self, unix_seconds: i64) -> i32 {
        match self.dst {
            None => self.std_offset_seconds,
            Some(dst) => {
                if self.in_dst(&dst, unix_seconds) {
                    dst.offset_seconds
                } else {
                    self.std_offset_seconds
                }
            }
        }
    }

    fn in_dst(&self, dst: &DstRule, unix_seconds: i64) -> bool {
        let year = year_of(unix_seconds + i64::from(self.std_offset_seconds));
        let (start, end) = self.transitions_of(dst, year);
        if start < end {
            (start..end).contains(&unix_seconds)
        } else {
            !(end..start).contains(&unix_seconds)
        }
    }

    /// The UTC instants daylight time starts and ends in `year`.
    fn transitions_of(&self, dst: &DstRule, year: i64) -> (i64, i64) {
        let start = local_instant(year, &dst.start) - i64::from(self.std_offset_seconds);
        let end = local_instant(year, &dst.end) - i64::from(dst.offset_seconds);
        (start, end)
    }

    /// Local time at `unix_ms`, in milliseconds since 1970-01-01 local, held still
    /// through the repeated interval after a backward change, so it never
    /// decreases as `unix_ms` grows.
    #[must_use]
    pub fn local_ms(&self, unix_ms: u64) -> i128 {
        let t = i128::from(unix_ms);
        let seconds = i64::try_from(unix_ms / 1_000).unwrap_or(i64::MAX);
        let local = t + i128::from(self.offset_at(seconds)) * 1_000;
        let Some(dst) = self.dst else {
            return local;
        };
        // The backward change nearest before `unix_ms` (there is one per year).
        let (before, after, year_of_change) = if dst.offset_seconds > self.std_offset_seconds {
            (dst.offset_seconds, self.std_offset_seconds, true)
        } else {
            (self.std_offset_seconds, dst.offset_seconds, false)
        };
        let year = year_of(seconds + i64::from(self.std_offset_seconds));
        for candidate in [year - 1, year, year + 1] {
            let (start, end) = self.transitions_of(&dst, candidate);
            let change = if year_of_change { end } else { start };
            let change_ms = i128::from(change) * 1_000;
            let repeat_ms = i128::from(before - after) * 1_000;
            if change_ms <= t && t < change_ms + repeat_ms {
                // Held at the last local instant before the change.
                return change_ms + i128::from(before) * 1_000 - 1;
            }
        }
        local
    }
}

/// Length of the TZif header plus data block starting at `bytes` (`time_size` 4 for
/// the version 1 block, 8 for the version 2+ block), if the bytes hold it.
fn tzif_block_len(bytes: &[u8], time_size: usize) -> Option<usize> {
    if bytes.get(..4) != Some(b"TZif") || bytes.len() < 44 {
        return None;
    }
    let count = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(raw)).ok()
    };
    let (isutcnt, isstdcnt, leapcnt) = (count(20)?, count(24)?, count(28)?);
    let (timecnt, typecnt, charcnt) = (count(32)?, count(36)?, count(40)?);
    let data = timecnt
        .checked_mul(time_size + 1)?
        .checked_add(typecnt.checked_mul(6)?)?
        .checked_add(charcnt)?
        .checked_add(leapcnt.checked_mul(time_size + 4)?)?
        .checked_add(isstdcnt)?
        .checked_add(isutcnt)?;
    let len = data.checked_add(44)?;
    (len <= bytes.len()).then_some(len)
}

/// The proleptic Gregorian year of `seconds` since 1970-01-01.
fn year_of(seconds: i64) -> i64 {
    crate::calendar::civil_from_days(seconds.div_euclid(SECONDS_PER_DAY)).0
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Seconds from 1970-01-01 00:00 local to `transition` of `year`, in local time.
fn local_instant(year: i64, transition: &Transition) -> i64 {
    let jan1 = crate::calendar::days_from_civil(year, 1, 1);
    let day = match transition.date {
        TransitionDate::ZeroBased(n) => jan1 + i64::from(n),
        TransitionDate::JulianNoLeap(n) => {
            let n = i64::from(n) - 1;
            // From 1 March on, a leap year's day n is one later.
            jan1 + n + i64::from(is_leap(year) && n >= 59)
        }
        TransitionDate::MonthWeekDay {
            month,
            week,
            weekday,
        } => {
            let first = crate::calendar::days_from_civil(year, u32::from(month), 1);
            // 1970-01-01 was a Thursday (weekday 4).
            let first_weekday = (first + 4).rem_euclid(7);
            let mut day = first
                + (i64::from(weekday) - first_weekday).rem_euclid(7)
                + 7 * (i64::from(week) - 1);
            let next_month = if month == 12 {
                crate::calendar::days_from_civil(year + 1, 1, 1)
            } else {
                crate::calendar::days_from_civil(year, u32::from(month) + 1, 1)
            };
            while day >= next_month {
                day -= 7;
            }
            day
        }
    };
    day * SECONDS_PER_DAY + i64::from(transition.time_seconds)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn malformed(&self) -> ZoneError {
        ZoneError::Malformed { at: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn expect(&mut self, byte: u8) -> Result<(), ZoneError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    /// A zone abbreviation: three or more letters, or `<...>` of letters, digits,
    /// `+` and `-`.
    fn name(&mut self) -> Result<(), ZoneError> {
        let start = self.at;
        if self.peek() == Some(b'<') {
            self.at += 1;
            while self
                .peek()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-')
            {
                self.at += 1;
            }
            let inner = self.at - start - 1;
            self.expect(b'>')?;
            return if inner >= 3 {
                Ok(())
            } else {
                Err(self.malformed())
            };
        }
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.at += 1;
        }
        if self.at - start >= 3 {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    fn number(&mut self, max_digits: usize) -> Result<i32, ZoneError> {
        let start = self.at;
        let mut value = 0_i32;
        while let Some(digit) = self.peek().filter(u8::is_ascii_digit) {
            if self.at - start == max_digits {
                return Err(self.malformed());
            }
            value = value * 10 + i32::from(digit - b'0');
            self.at += 1;
        }
        if self.at == start {
            return Err(self.malformed());
        }
        Ok(value)
    }

    /// `[+-]hh[:mm[:ss]]` in seconds (hours up to `max_hours`).
    fn clock(&mut self, max_hours: i32) -> Result<i32, ZoneError> {
        let sign = match self.peek() {
            Some(b'-') => {
                self.at += 1;
                -1
            }
            Some(b'+') => {
                self.at += 1;
                1
            }
            _ => 1,
        };
        let hours = self.number(3)?;
        let mut seconds = hours * 3_600;
        for unit in [60, 1] {
            if self.peek() != Some(b':') {
                break;
            }
            self.at += 1;
            let part = self.number(2)?;
            if part > 59 {
                return Err(ZoneError::OutOfRange);
            }
            seconds += part * unit;
        }
        if hours > max_hours {
            return Err(ZoneError::OutOfRange);
        }
        Ok(sign * seconds)
    }

    fn offset(&mut self) -> Result<i32, ZoneError> {
        self.clock(24)
    }

    fn transition(&mut self) -> Result<Transition, ZoneError> {
        let date = match self.peek() {
            Some(b'M') => {
                self.at += 1;
                let month = self.number(2)?;
                self.expect(b'.')?;
                let week = self.number(1)?;
                self.expect(b'.')?;
                let weekday = self.number(1)?;
                TransitionDate::MonthWeekDay {
                    month: u8::try_from(month).map_err(|_| ZoneError::OutOfRange)?,
                    week: u8::try_from(week).map_err(|_| ZoneError::OutOfRange)?,
                    weekday: u8::try_from(weekday).map_err(|_| ZoneError::OutOfRange)?,
                }
            }
            Some(b'J') => {
                self.at += 1;
                let day = self.number(3)?;
                TransitionDate::JulianNoLeap(u16::try_from(day).map_err(|_| ZoneError::OutOfRange)?)
            }
            _ => {
                let day = self.number(3)?;
                TransitionDate::ZeroBased(u16::try_from(day).map_err(|_| ZoneError::OutOfRange)?)
            }
        };
        let time_seconds = if self.peek() == Some(b'/') {
            self.at += 1;
            self.clock(167)?
        } else {
            2 * 3_600
        };
        Ok(Transition { date, time_seconds })
    }
}

#[cfg(test)]
mod tests {
    use super::{TransitionDate, ZoneError, ZoneRule};

    const BERLIN: &str = "CET-1CEST,M3.5.0,M10.5.0/3";
    const NEW_YORK: &str = "EST5EDT,M3.2.0,M11.1.0";
    const SYDNEY: &str = "AEST-10AEDT,M10.1.0,M4.1.0/3";

    /// Unix seconds of a UTC date and time.
    fn utc(year: i64, month: u32, day: u32, hour: i64, minute: i64) -> i64 {
        crate::calendar::days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60
    }

    #[test]
    fn rules_parse_and_give_known_offsets() {
        let berlin = ZoneRule::parse_posix(BERLIN).expect("valid");
        // 2026: CEST from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(berlin.offset_at(utc(2026, 3, 29, 0, 59)), 3_600);
        assert_eq!(berlin.offset_at(utc(2026, 3, 29, 1, 0)), 7_200);
        assert_eq!(berlin.offset_at(utc(2026, 10, 25, 0, 59)), 7_200);
        assert_eq!(berlin.offset_at(utc(2026, 10, 25, 1, 0)), 3_600);
        let new_york = ZoneRule::parse_posix(NEW_YORK).expect("valid");
        // 2026: EDT from 8 March 07:00 UTC to 1 November 06:00 UTC.
        assert_eq!(new_york.offset_at(utc(2026, 3, 8, 6, 59)), -18_000);
        assert_eq!(new_york.offset_at(utc(2026, 3, 8, 7, 0)), -14_400);
        assert_eq!(new_york.offset_at(utc(2026, 11, 1, 5, 59)), -14_400);
        assert_eq!(new_york.offset_at(utc(2026, 11, 1, 6, 0)), -18_000);
        // Southern hemisphere: daylight time spans the new year.
        let sydney = ZoneRule::parse_posix(SYDNEY).expect("valid");
        assert_eq!(sydney.offset_at(utc(2026, 1, 15, 0, 0)), 39_600);
        assert_eq!(sydney.offset_at(utc(2026, 7, 15, 0, 0)), 36_000);
        assert_eq!(sydney.offset_at(utc(2026, 12, 31, 20, 0)), 39_600);
        let tehran = ZoneRule::parse_posix("<+0330>-3:30").expect("valid");
        assert_eq!(tehran, ZoneRule::fixed(12_600));
        let julian = ZoneRule::parse_posix("XXX3YYY,J60/0,300/25:30").expect("valid");
        let dst = julian.dst.expect("has daylight time");
        assert_eq!(dst.start.date, TransitionDate::JulianNoLeap(60));
        assert_eq!(
            (dst.end.date, dst.end.time_seconds),
            (TransitionDate::ZeroBased(300), 91_800)
        );
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in [
            "",
            "C1",
            "CET",
            "CET-1CEST",
            "CET-1CEST,M3.5.0",
            "CET-1CEST,M13.5.0,M10.5.0",
            "CET-1CEST,M3.6.0,M10.5.0",
            "CET-1CEST,M3.5.7,M10.5.0",
            "CET-26",
            "CET-1CEST,M3.5.0,M10.5.0/168",
            "CET-1:60",
            "CET-1 ",
            "<AB>1",
            "CET-1CET-1,J1,J2",
        ] {
            assert!(ZoneRule::parse_posix(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            ZoneRule::parse_posix(&"A".repeat(200)),
            Err(ZoneError::TooLong { len: 200 })
        ));
    }

    /// A minimal version 2 TZif file: empty data blocks and the footer.
    fn tzif(footer: &str) -> Vec<u8> {
        let mut header = b"TZif2".to_vec();
        header.extend([0; 15]);
        // isutcnt, isstdcnt, leapcnt, timecnt 0; typecnt 1; charcnt 4.
        for count in [0_u32, 0, 0, 0, 1, 4] {
            header.extend(count.to_be_bytes());
        }
        let data = [0, 0, 14, 16, 0, 0, b'L', b'M', b'T', 0];
        let mut file = header.clone();
        file.extend(data);
        file.extend(&header);
        file.extend(data);
        file.push(b'\n');
        file.extend(footer.as_bytes());
        file.push(b'\n');
        file
    }

    #[test]
    fn tzif_footers_are_read() {
        let file = tzif(BERLIN);
        assert_eq!(ZoneRule::from_tzif(&file), ZoneRule::parse_posix(BERLIN));
        // Every truncation, and a version 1 file, is refused without panicking.
        for len in 0..file.len() - 1 {
            assert!(ZoneRule::from_tzif(&file[..len]).is_err(), "{len}");
        }
        let mut v1 = file.clone();
        v1[4] = 0;
        assert_eq!(ZoneRule::from_tzif(&v1), Err(ZoneError::NotTzif));
        assert_eq!(ZoneRule::from_tzif(&tzif("")), Err(ZoneError::NotTzif));
        // The machine's own zone files, when it has them, read the same way.
        if let Ok(bytes) = std::fs::read("/usr/share/zoneinfo/Europe/Berlin") {
            assert_eq!(ZoneRule::from_tzif(&bytes), ZoneRule::parse_posix(BERLIN));
        }
    }

    #[test]
    fn local_time_never_goes_back() {
        let berlin = ZoneRule::parse_posix(BERLIN).expect("valid");
        let start = u64::try_from(utc(2026, 10, 24, 22, 0)).expect("after 1970") * 1_000;
        let mut previous = berlin.local_ms(start);
        for minute in 1..(6 * 60) {
            let local = berlin.local_ms(start + minute * 60_000);
            assert!(local >= previous, "minute {minute}");
            previous = local;
        }
    }
}
