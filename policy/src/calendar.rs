//! The calendar: dates of the proleptic Gregorian calendar to day numbers
//! (days since 1970-01-01) and back, the one place that does it.
//!
//! Budget months ([`crate::budget`]), key expiry dates in the configuration,
//! the request records' daily file names and `tollgate report`'s times all
//! turn a day number into a date or a date into a day number; all of them
//! call this module.
//!
//! The two functions are Howard Hinnant's `days_from_civil` and
//! `civil_from_days`, from "`chrono`-Compatible Low-Level Date Algorithms"
//! (<http://howardhinnant.github.io/date_algorithms.html>), with his names.
//! They are exact for every date, need no table and no loop, and take a few
//! integer operations. The ideas, before the arithmetic:
//!
//! - Years are counted from March 1st, so that the leap day is the last day
//!   of the year and nothing after it depends on whether the year is leap.
//!   From March, the month lengths (31, 30, 31, 30, 31, 31, 30, 31, 30, 31,
//!   31, 28 or 29) make the day of the year where each month starts fit the
//!   line `(153 * month + 2) / 5`, month counted from March as 0.
//! - The Gregorian calendar repeats every 400 years (an era), and every era
//!   has exactly 146 097 days ([`DAYS_PER_ERA`]), so a date is its era plus
//!   its place in the era. Floor division (`div_euclid`) keeps dates before
//!   year 0 right.
//! - Day 0 of the count is 0000-03-01; 1970-01-01 is 719 468 days later
//!   ([`UNIX_EPOCH_DAYS`]), subtracted to land on Unix day numbers.

/// Days in 400 Gregorian years: 400 * 365 + 100 leap days - 3 centuries
/// that are not leap (only one century in four is).
const DAYS_PER_ERA: i64 = 146_097;

/// Days from 0000-03-01, where Hinnant's count starts, to 1970-01-01.
const UNIX_EPOCH_DAYS: i64 = 719_468;

/// Days since 1970-01-01 (negative before) of a proleptic Gregorian date:
/// `year` as written (no year 0 skipped: 1 BC is year 0), `month` 1 to 12,
/// `day` 1 to 31. A month or day out of range gives a number that is no
/// date, never a panic: callers validate dates before they rely on them.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    // January and February belong to the year before, counted from March.
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // year of the era: [0, 399]
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1; // day of the year: [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // day of the era: [0, 146096]
    era * DAYS_PER_ERA + doe - UNIX_EPOCH_DAYS
}

/// The UTC date of a Unix time, as `YYYY-MM-DD` (record files are named
/// by it; ClickHouse rows carry it).
pub fn utc_date(unix_secs: u64) -> String {
    let (y, m, d) = civil_from_days((unix_secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date `(year, month, day)` of a day number (days
/// since 1970-01-01, negative before): the inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + UNIX_EPOCH_DAYS;
    let era = z.div_euclid(DAYS_PER_ERA);
    let doe = z - era * DAYS_PER_ERA; // day of the era: [0, 146096]

    // A leap day ends every fourth year (day 1460 of each four), except
    // every hundredth (day 36 524 of each hundred), except the era's last
    // (day 146 096): take them out, and the years are all 365 days long.
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year: [0, 365]
    let mp = (5 * doy + 2) / 153; // month counted from March: [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]

    // January and February close the year counted from March.
    (yoe + era * 400 + i64::from(m <= 2), m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dates and their day numbers, from Python's `datetime.date` (an
    /// implementation that shares no code with this one).
    const KNOWN: &[((i64, u32, u32), i64)] = &[
        ((1970, 1, 1), 0),
        ((1969, 12, 31), -1),
        ((2000, 1, 1), 10_957),
        ((2000, 2, 29), 11_016),
        ((2000, 3, 1), 11_017),
        ((1900, 1, 1), -25_567),
        ((1900, 2, 28), -25_509),
        ((1900, 3, 1), -25_508),
        ((1600, 2, 29), -135_081),
        ((2024, 2, 29), 19_782),
        ((2024, 3, 1), 19_783),
        ((2026, 11, 23), 20_780),
        ((2038, 1, 19), 24_855),
        ((2100, 2, 28), 47_540),
        ((2100, 3, 1), 47_541),
        ((1, 1, 1), -719_162),
        ((0, 3, 1), -719_468),
        ((9999, 12, 31), 2_932_896),
    ];

    #[test]
    fn known_dates() {
        for &((y, m, d), days) in KNOWN {
            assert_eq!(days_from_civil(y, m, d), days, "{y:04}-{m:02}-{d:02}");
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
        }
    }

    fn is_leap(y: i64) -> bool {
        y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
    }

    fn month_days(y: i64, m: u32) -> u32 {
        match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// Walks day by day through ten eras (years -1001 to 3001, so negative
    /// years and day numbers too), checking each date against the one
    /// before with the calendar's rules spelled out plainly (month lengths,
    /// leap years), and the round trip back to the day number.
    #[test]
    fn every_day_follows_the_one_before() {
        let start = days_from_civil(-1001, 1, 1);
        let end = days_from_civil(3001, 1, 1);
        let mut date = civil_from_days(start);
        assert_eq!(date, (-1001, 1, 1));
        for days in start + 1..=end {
            let (y, m, d) = date;
            date = if d < month_days(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(civil_from_days(days), date, "day {days}");
            assert_eq!(days_from_civil(date.0, date.1, date.2), days, "{date:?}");
        }
        assert_eq!(date, (3001, 1, 1));
    }

    #[test]
    fn leap_days() {
        for y in [1600, 2000, 2004, 2024, 2400] {
            assert_eq!(civil_from_days(days_from_civil(y, 2, 28) + 1), (y, 2, 29), "{y}");
        }
        for y in [1700, 1800, 1900, 2023, 2100] {
            assert_eq!(civil_from_days(days_from_civil(y, 2, 28) + 1), (y, 3, 1), "{y}");
        }
    }
}
