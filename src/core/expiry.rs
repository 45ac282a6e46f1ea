//! Expiry reminders (SPEC §8.5): at which daily-check midnight a license is reminded.
//!
//! Owns the rule: at a UTC midnight M that its customer's daily check runs for, an active
//! license with an email and an expiry E with M < E ≤ M + N days is reminded at M, unless
//! E is already past when the check runs (E is not after the `ts` of the event whose
//! arrival ran it; for a wall-clock tick, M itself), or the license's latest reminder was
//! for this same E. Since one run of the check covers a range of midnights with nothing
//! changing in between, the first midnight of the range that fires is computed directly
//! ([`first_reminder_day`]) rather than found by walking the midnights: a jump of years
//! costs the same as one day.
//!
//! Guarantees: [`first_reminder_day`] is the smallest day of the range for which
//! [`reminds_at`] holds, and never overflows on any instant.

use super::time::{Day, Micros, DAY, NEVER};

/// When the check runs, for the "already past" exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckRun {
    /// Run by the arrival of an event with this `ts`.
    Event(Micros),
    /// Run by wall-clock ticks: each midnight counts for itself.
    Tick,
}

/// Whether an expiry `expiry` is reminded at the midnight of `day` with `notice_days` of
/// notice, when the check is run by `run`. (The license's status, email and latest
/// reminder are the caller's to check.)
pub fn reminds_at(day: Day, expiry: Micros, notice_days: u32, run: CheckRun) -> bool {
    if expiry == NEVER {
        return false;
    }
    let m = (day as i64).saturating_mul(DAY);
    let not_past = match run {
        CheckRun::Event(ts) => expiry > ts,
        CheckRun::Tick => expiry > m,
    };
    not_past && m < expiry && expiry <= m.saturating_add(notice(notice_days))
}

/// The first day in `first..=last` whose midnight reminds of `expiry` (see
/// [`reminds_at`]), if any.
pub fn first_reminder_day(
    expiry: Micros,
    notice_days: u32,
    first: Day,
    last: Day,
    run: CheckRun,
) -> Option<Day> {
    if expiry == NEVER || first > last || notice_days == 0 {
        return None;
    }
    if let CheckRun::Event(ts) = run {
        if expiry <= ts {
            return None;
        }
    }
    // M < E, i.e. day ≤ (E − 1) / DAY.
    let from = notice_opens(expiry, notice_days);
    let to = expiry.saturating_sub(1).div_euclid(DAY);
    let d = from.max(first as i64);
    (d <= to && d <= last as i64).then_some(d as Day)
}

/// The first day whose midnight M is within the notice of `expiry`: M ≥ E − N days, i.e.
/// day ≥ ceil((E − N days) / DAY). Grows with `expiry` (the expiry index relies on it).
pub fn notice_opens(expiry: Micros, notice_days: u32) -> i64 {
    let lo = expiry.saturating_sub(notice(notice_days));
    lo.div_euclid(DAY) + (lo.rem_euclid(DAY) != 0) as i64
}

fn notice(days: u32) -> Micros {
    (days as i64).saturating_mul(DAY)
}

#[cfg(test)]
mod tests {
    use super::super::time::{day_of, midnight, parse_rfc3339, HOUR};
    use super::*;

    fn t(s: &str) -> Micros {
        parse_rfc3339(s).unwrap()
    }

    fn d(s: &str) -> Day {
        day_of(t(s))
    }

    /// The first firing day by walking every midnight: the definition.
    fn walk(expiry: Micros, n: u32, first: Day, last: Day, run: CheckRun) -> Option<Day> {
        (first..=last).find(|&day| reminds_at(day, expiry, n, run))
    }

    #[test]
    fn an_expiry_exactly_n_days_after_a_midnight_fires_at_that_midnight() {
        let e = t("2026-10-30T00:00:00Z");
        let run = CheckRun::Event(t("2026-10-23T00:00:00Z"));
        assert!(reminds_at(d("2026-10-23T00:00:00Z"), e, 7, run));
        assert!(!reminds_at(d("2026-10-22T00:00:00Z"), e, 7, run));
        assert_eq!(
            first_reminder_day(
                e,
                7,
                d("2026-10-02T00:00:00Z"),
                d("2026-10-23T00:00:00Z"),
                run
            ),
            Some(d("2026-10-23T00:00:00Z"))
        );
    }

    #[test]
    fn an_expiry_at_a_midnight_is_not_reminded_at_that_midnight() {
        let e = t("2026-10-30T00:00:00Z");
        assert!(!reminds_at(d("2026-10-30T00:00:00Z"), e, 7, CheckRun::Tick));
        assert!(reminds_at(d("2026-10-29T00:00:00Z"), e, 7, CheckRun::Tick));
    }

    #[test]
    fn mid_day_expiry_fires_at_the_first_midnight_within_n_days() {
        let e = t("2026-10-29T12:00:00Z");
        let run = CheckRun::Event(t("2026-10-23T15:00:00Z"));
        assert_eq!(
            first_reminder_day(
                e,
                7,
                d("2026-10-22T00:00:00Z"),
                d("2026-10-23T00:00:00Z"),
                run
            ),
            Some(d("2026-10-23T00:00:00Z"))
        );
        assert_eq!(
            first_reminder_day(
                e,
                7,
                d("2026-10-20T00:00:00Z"),
                d("2026-10-22T00:00:00Z"),
                run
            ),
            None
        );
    }

    #[test]
    fn an_expiry_already_past_when_the_check_runs_is_not_reminded() {
        // Quiet from Oct 10 to Oct 22; the expiry on Oct 20 went by meanwhile.
        let e = t("2026-10-20T00:00:00Z");
        let run = CheckRun::Event(t("2026-10-22T10:00:00Z"));
        assert_eq!(
            first_reminder_day(
                e,
                7,
                d("2026-10-11T00:00:00Z"),
                d("2026-10-22T00:00:00Z"),
                run
            ),
            None
        );
        // The same midnights passed by wall-clock ticks do remind, at the first one.
        assert_eq!(
            first_reminder_day(
                e,
                7,
                d("2026-10-11T00:00:00Z"),
                d("2026-10-22T00:00:00Z"),
                CheckRun::Tick
            ),
            Some(d("2026-10-13T00:00:00Z"))
        );
        // An event exactly at the expiry: not after it, so past.
        assert!(!reminds_at(
            d("2026-10-19T00:00:00Z"),
            e,
            7,
            CheckRun::Event(e)
        ));
        assert!(reminds_at(
            d("2026-10-19T00:00:00Z"),
            e,
            7,
            CheckRun::Event(e - 1)
        ));
    }

    #[test]
    fn no_expiry_or_no_notice_never_fires() {
        assert_eq!(first_reminder_day(NEVER, 7, 0, 100, CheckRun::Tick), None);
        assert!(!reminds_at(5, NEVER, 7, CheckRun::Tick));
        assert_eq!(
            first_reminder_day(10 * DAY, 0, 0, 100, CheckRun::Tick),
            None
        );
        assert!(!reminds_at(9, 10 * DAY, 0, CheckRun::Tick));
    }

    #[test]
    fn a_jump_of_years_is_computed_not_walked() {
        let e = t("2031-06-15T08:00:00Z");
        let first = d("2026-01-01T00:00:00Z");
        let last = d("2036-01-01T00:00:00Z");
        assert_eq!(
            first_reminder_day(e, 7, first, last, CheckRun::Tick),
            Some(d("2031-06-09T00:00:00Z"))
        );
    }

    #[test]
    fn agrees_with_walking_every_midnight() {
        let base = t("2026-10-01T00:00:00Z");
        for e_off in [
            -3 * DAY,
            0,
            1,
            HOUR,
            DAY - 1,
            DAY,
            5 * DAY + 7,
            9 * DAY,
            30 * DAY,
        ] {
            let e = base + e_off;
            for n in [0u32, 1, 3, 7, 40] {
                for (first, len) in [(-10, 5), (-10, 40), (0, 0), (3, 2), (-2, 4)] {
                    let first = day_of(base) + first;
                    let last = first + len;
                    for run in [
                        CheckRun::Tick,
                        CheckRun::Event(midnight(last) + HOUR),
                        CheckRun::Event(midnight(last)),
                        CheckRun::Event(e),
                    ] {
                        assert_eq!(
                            first_reminder_day(e, n, first, last, run),
                            walk(e, n, first, last, run),
                            "e {e_off} n {n} first {first} last {last} {run:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_instants_do_not_overflow() {
        for e in [i64::MIN + 1, i64::MAX, 0, -1] {
            for n in [1, u32::MAX] {
                let _ = first_reminder_day(e, n, Day::MIN, Day::MAX, CheckRun::Tick);
                let _ = first_reminder_day(e, n, -5, 5, CheckRun::Event(i64::MIN + 2));
                let _ = reminds_at(Day::MAX, e, n, CheckRun::Tick);
            }
        }
    }
}
