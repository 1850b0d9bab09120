//! Budgets: whether a team or key may spend more, given what it has spent
//! in the current UTC day and month. Sans-IO: spend and time come in as
//! integers (micro-dollars, Unix seconds).

use std::fmt;

use crate::calendar;
use crate::team::{Budget, MicroUsd};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Day,
    Month,
}

/// Spend in the current windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spend {
    pub day: MicroUsd,
    pub month: MicroUsd,
}

/// A hard limit reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverBudget {
    /// `team "search"` or `key "search-prod"`.
    pub owner: String,
    pub window: Window,
    pub spent: MicroUsd,
    pub limit: MicroUsd,
    /// The request's estimated cost, when that is what would cross.
    pub estimate: MicroUsd,
    /// Of `spent`, what requests in flight hold (their estimates, until
    /// they end): the caller's to fill, 0 from [`check`].
    pub held: MicroUsd,
    /// Unix seconds when the window starts again.
    pub resets_at: u64,
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let window = match self.window {
            Window::Day => "daily",
            Window::Month => "monthly",
        };
        // Held spend comes back when the requests holding it end: a
        // refusal for it says so, and that a retry may pass.
        let held = if self.held > 0 {
            format!(
                " (${} of it held by requests in flight until they end, when what they cost is billed instead)",
                usd(self.held)
            )
        } else {
            String::new()
        };
        if self.spent < self.limit {
            return write!(
                f,
                "{} cannot afford this request within its {window} budget: spent ${} of ${}{held}, and the request is estimated at ${}; it resets at {} UTC",
                self.owner,
                usd(self.spent),
                usd(self.limit),
                usd(self.estimate),
                utc_time(self.resets_at)
            );
        }
        write!(
            f,
            "{} has reached its {window} budget: spent ${}, limit ${}{held}; it resets at {} UTC",
            self.owner,
            usd(self.spent),
            usd(self.limit),
            utc_time(self.resets_at)
        )
    }
}

fn usd(micro: MicroUsd) -> String {
    format!("{}.{:02}", micro / 1_000_000, micro % 1_000_000 / 10_000)
}

/// Days since 1970-01-01 for a Unix time.
pub fn day_number(unix: u64) -> u64 {
    unix / 86_400
}

/// (year, month) of a day number, for the month window.
///
/// Remembered for the last day asked on this thread: every request asks
/// it several times (its budgets, its owners' spend), always for today,
/// and the calendar's divisions were 0.6% of a cache hit's time.
pub fn year_month(day: u64) -> (i64, u32) {
    thread_local! {
        static LAST: std::cell::Cell<Option<(u64, (i64, u32))>> = const { std::cell::Cell::new(None) };
    }
    LAST.with(|last| match last.get() {
        Some((d, ym)) if d == day => ym,
        _ => {
            let (y, m, _) = calendar::civil_from_days(day as i64);
            last.set(Some((day, (y, m))));
            (y, m)
        }
    })
}

/// Unix seconds at the start of a (year, month).
pub fn month_start(year: i64, month: u32) -> u64 {
    (calendar::days_from_civil(year, month, 1) * 86_400) as u64
}

/// Unix seconds at the end of a (year, month): the next month's start.
pub fn month_end(year: i64, month: u32) -> u64 {
    if month == 12 {
        month_start(year + 1, 1)
    } else {
        month_start(year, month + 1)
    }
}

fn utc_time(unix: u64) -> String {
    let (y, m, d) = calendar::civil_from_days(day_number(unix) as i64);
    format!("{y:04}-{m:02}-{d:02} 00:00")
}

/// Checks `spend` against `budget` at `now` (Unix seconds), for a request
/// estimated to cost `estimate` (0 when not estimated). `Err` names the
/// first hard limit reached, or that the request would cross; `Ok(true)`
/// means a soft threshold is passed (log it, count it), `Ok(false)` all is
/// well.
pub fn check(
    owner: impl FnOnce() -> String,
    budget: &Budget,
    spend: Spend,
    estimate: MicroUsd,
    now: u64,
) -> Result<bool, OverBudget> {
    let day = day_number(now);
    // When the window ends: found only for a refusal, which names it.
    let resets_at = |window| match window {
        Window::Day => (day + 1) * 86_400,
        Window::Month => {
            let (y, m) = year_month(day);
            month_end(y, m)
        }
    };
    let mut owner = Some(owner);
    for (limit, spent, window) in [(budget.daily, spend.day, Window::Day), (budget.monthly, spend.month, Window::Month)]
    {
        let Some(limit) = limit else { continue };
        if spent >= limit || spent.saturating_add(estimate) > limit {
            let owner = owner.take().map_or_else(String::new, |f| f());
            return Err(OverBudget { owner, window, spent, limit, estimate, held: 0, resets_at: resets_at(window) });
        }
    }
    Ok(soft_passed(budget, spend))
}

/// Whether `spend` has passed `budget`'s soft threshold in either window
/// ([`check`]'s `Ok(true)`; asked alone for spend the caller judges apart
/// from the hard limits: without what requests in flight hold, which is
/// not spent).
pub fn soft_passed(budget: &Budget, spend: Spend) -> bool {
    [(budget.daily, spend.day), (budget.monthly, spend.month)].iter().any(|&(limit, spent)| {
        limit.is_some_and(|l| spent as u128 * 1000 >= l as u128 * budget.soft_threshold_permille as u128)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(daily: Option<u64>, monthly: Option<u64>) -> Budget {
        Budget { daily, monthly, soft_threshold_permille: 800, ..Budget::default() }
    }

    #[test]
    fn year_month_is_the_calendars_whatever_day_came_before() {
        // The remembered day must never answer for another: alternate
        // days across month and year ends, and repeat them.
        for day in [0u64, 0, 30, 31, 30, 58, 59, 20_453, 20_454, 20_453, 0, 11_016, 11_016, 11_017] {
            let (y, m, _) = calendar::civil_from_days(day as i64);
            assert_eq!(year_month(day), (y, m), "day {day}");
        }
        assert_eq!(year_month(20_453), (2025, 12));
        assert_eq!(year_month(20_454), (2026, 1));
    }

    #[test]
    fn a_refusal_says_what_of_its_spend_is_held_and_the_soft_threshold_is_judged_apart() {
        let now = 1_795_435_200;
        let b = budget(Some(10_000_000), None);
        let mut e =
            check(|| "team \"t\"".into(), &b, Spend { day: 9_000_000, month: 9_000_000 }, 2_000_000, now).unwrap_err();
        assert!(!e.to_string().contains("held"), "{e}");
        e.held = 8_500_000;
        let text = e.to_string();
        assert!(text.contains("spent $9.00 of $10.00 ($8.50 of it held by requests in flight"), "{text}");
        // At the threshold and just under it, in either window.
        assert!(soft_passed(&b, Spend { day: 8_000_000, month: 0 }));
        assert!(!soft_passed(&b, Spend { day: 7_999_999, month: 0 }));
        let monthly = budget(None, Some(100_000_000));
        assert!(soft_passed(&monthly, Spend { day: 0, month: 80_000_000 }));
        assert!(!soft_passed(&monthly, Spend { day: 99_000_000, month: 79_999_999 }));
        assert!(!soft_passed(&budget(None, None), Spend { day: u64::MAX, month: u64::MAX }));
    }

    #[test]
    fn limits_soft_thresholds_and_reset_times() {
        // 2026-11-23 12:00 UTC.
        let now = 1_795_435_200;
        let b = budget(Some(10_000_000), Some(100_000_000));
        assert_eq!(check(|| "t".into(), &b, Spend { day: 1, month: 1 }, 0, now), Ok(false));
        assert_eq!(check(|| "t".into(), &b, Spend { day: 8_000_000, month: 9 }, 0, now), Ok(true));
        // A request estimated to cross the daily limit is refused before
        // it is sent; one that fits is not.
        assert!(check(|| "t".into(), &b, Spend { day: 9_500_000, month: 9 }, 600_000, now).is_err());
        assert!(check(|| "t".into(), &b, Spend { day: 9_500_000, month: 9 }, 500_000, now).is_ok());
        let over =
            check(|| "team \"search\"".into(), &b, Spend { day: 10_000_000, month: 20_000_000 }, 0, now).unwrap_err();
        assert_eq!(over.window, Window::Day);
        assert_eq!(over.resets_at, 1_795_478_400);
        assert_eq!(
            over.to_string(),
            "team \"search\" has reached its daily budget: spent $10.00, limit $10.00; it resets at 2026-11-24 00:00 UTC"
        );
        let over = check(|| "k".into(), &b, Spend { day: 0, month: 100_000_001 }, 0, now).unwrap_err();
        assert_eq!((over.window, utc_time(over.resets_at)), (Window::Month, "2026-12-01 00:00".to_string()));
        assert_eq!(
            check(|| "t".into(), &budget(None, None), Spend { day: u64::MAX, month: u64::MAX }, 0, now),
            Ok(false)
        );
    }

    #[test]
    fn december_rolls_into_january() {
        let dec_31 = month_start(2026, 12) + 30 * 86_400;
        let over = check(|| "k".into(), &budget(None, Some(1)), Spend { day: 0, month: 5 }, 0, dec_31).unwrap_err();
        assert_eq!(utc_time(over.resets_at), "2027-01-01 00:00");
    }
}
