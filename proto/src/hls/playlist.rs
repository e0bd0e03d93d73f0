//! Text formats of playlist values: decimal seconds and ISO 8601 dates.
//!
//! Defined by: RFC 8216bis 4.2 (decimal-floating-point attribute values),
//! 4.4.4.6 (EXT-X-PROGRAM-DATE-TIME: an ISO/IEC 8601:2004 date/time with
//! time zone and fractional seconds).

use std::fmt;

/// Milliseconds written as decimal seconds with three decimals
/// (`2000` → `2.000`): exact, since every duration here is whole
/// milliseconds.
pub(crate) struct Secs(pub u64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1_000, self.0 % 1_000)
    }
}

/// Milliseconds since the Unix epoch as an ISO 8601 UTC date and time with
/// milliseconds, e.g. `2023-11-14T22:13:20.123Z`.
pub fn format_program_date_time(unix_ms: u64) -> String {
    DateTime(unix_ms).to_string()
}

/// See [`format_program_date_time`]; writes without an allocation.
pub(crate) struct DateTime(pub u64);

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MS_PER_DAY: u64 = 86_400_000;
        let days = self.0 / MS_PER_DAY;
        let ms_of_day = self.0 % MS_PER_DAY;
        let (year, month, day) = civil_date(days);
        let secs = ms_of_day / 1_000;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            secs / 3_600,
            secs / 60 % 60,
            secs % 60,
            ms_of_day % 1_000
        )
    }
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01.
///
/// The calendar repeats every 400 years (146 097 days). Counting years from
/// 1 March makes the leap day the last day of a year, so within a 400-year
/// era the year follows from the day by removing the leap days
/// (every 4th year, but not every 100th, but every 400th), and the month
/// from the day of the year by the 153-days-per-5-months rhythm of
/// March..July and August..December.
fn civil_date(days_since_epoch: u64) -> (u64, u32, u32) {
    // 1970-01-01 is day 719 468 counted from 0000-03-01.
    let days = days_since_epoch + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // 0 = March .. 11 = February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    // Both fit: month is 1..=12 and day 1..=31 by construction.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_seconds() {
        assert_eq!(Secs(0).to_string(), "0.000");
        assert_eq!(Secs(500).to_string(), "0.500");
        assert_eq!(Secs(2_000).to_string(), "2.000");
        assert_eq!(Secs(12_345).to_string(), "12.345");
        assert_eq!(Secs(1_007).to_string(), "1.007");
    }

    #[test]
    fn program_date_time() {
        assert_eq!(format_program_date_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_program_date_time(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        // A leap day, and the day after it.
        assert_eq!(
            format_program_date_time(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_program_date_time(951_782_400_000 + 86_400_000 - 1),
            "2000-02-29T23:59:59.999Z"
        );
        assert_eq!(
            format_program_date_time(951_868_800_000),
            "2000-03-01T00:00:00.000Z"
        );
        // 1900 was not a leap year, 2100 will not be: 2100-02-28 + 1 day.
        assert_eq!(
            format_program_date_time(4_107_456_000_000),
            "2100-02-28T00:00:00.000Z"
        );
        assert_eq!(
            format_program_date_time(4_107_542_400_000),
            "2100-03-01T00:00:00.000Z"
        );
        assert_eq!(
            format_program_date_time(1_704_067_199_999),
            "2023-12-31T23:59:59.999Z"
        );
    }

    /// Every day of 1970..2400 follows the previous one.
    #[test]
    fn dates_are_consecutive() {
        let mut prev = civil_date(0);
        assert_eq!(prev, (1970, 1, 1));
        for d in 1..157_000 {
            let cur = civil_date(d);
            let next_day = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(
                cur == next_day || cur == next_month || cur == next_year,
                "{prev:?} then {cur:?}"
            );
            if cur == next_month || cur == next_year {
                let leap = (prev.0.is_multiple_of(4) && !prev.0.is_multiple_of(100))
                    || prev.0.is_multiple_of(400);
                let len = match prev.1 {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(prev.2, len, "{prev:?}");
            }
            prev = cur;
        }
    }
}
