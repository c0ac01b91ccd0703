//! eventsim's `TimeUtilities`: the daily cycle (a time warp that moves session starts towards
//! the afternoon and evening and away from the small hours) and the weekend damping (fewer
//! sessions on weekends and US holidays, ramping in and out around midnight). Both follow
//! the user's local time, from their city's time zone.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;

const SECONDS_PER_DAY: f64 = 86_400.0;
const THREE_AM: f64 = 3.0 * 3600.0;

/// The parameters of the daily and weekly cycles (eventsim's config keys in brackets).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cycle {
    /// How strongly the daily cycle warps session starts (`damping`).
    pub damping: f64,
    /// The share of sessions dropped on weekends and holidays (`weekend-damping`).
    pub weekend_damping: f64,
    /// Minutes before a day off begins (and after it ends) that the damping starts to ramp
    /// (`weekend-damping-offset`).
    pub weekend_damping_offset_minutes: i64,
    /// Minutes the ramp takes (`weekend-damping-scale`).
    pub weekend_damping_scale_minutes: i64,
}

impl Cycle {
    /// eventsim's `standardWarp`: moves a timestamp by up to `damping` of a day along a sine
    /// whose zero is at 3am local time. Starts after 3am move later and starts before it move
    /// earlier, so that sessions thin out in the small hours and gather in the afternoon and
    /// evening.
    pub(crate) fn warp(&self, ts_ms: i64, tz: Tz) -> i64 {
        let local = local_time(ts_ms, tz);
        let second_of_day = f64::from(local.num_seconds_from_midnight());
        let shift = self.damping
            * SECONDS_PER_DAY
            * ((second_of_day - THREE_AM) * std::f64::consts::TAU / SECONDS_PER_DAY).sin();
        ts_ms + (shift * 1000.0).round() as i64
    }

    /// eventsim's `weekendDamping`: the share of sessions to drop at this time, 0 on working
    /// days, `weekend_damping` on days off (weekends and US federal holidays), with linear
    /// ramps from `offset` before a run of days off begins and until `offset` after it ends.
    pub(crate) fn weekend_damping(&self, ts_ms: i64, tz: Tz) -> f64 {
        if self.weekend_damping <= 0.0 {
            return 0.0;
        }
        let t = local_time(ts_ms, tz);
        let offset = Duration::minutes(self.weekend_damping_offset_minutes);
        let scale = self.weekend_damping_scale_minutes.max(1) as f64;
        let mut damping: f64 = 0.0;
        let today = t.date();
        for day in [today.pred_opt(), Some(today), today.succ_opt()]
            .into_iter()
            .flatten()
        {
            if !is_day_off(day) {
                continue;
            }
            let (first, last) = run_of_days_off(day);
            let begins = first.and_hms_opt(0, 0, 0).expect("midnight") - offset;
            let ends = last
                .succ_opt()
                .unwrap_or(last)
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                + offset;
            if t < begins || t > ends {
                continue;
            }
            let ramp_in = (t - begins).num_seconds() as f64 / 60.0 / scale;
            let ramp_out = (ends - t).num_seconds() as f64 / 60.0 / scale;
            damping = damping.max(ramp_in.min(ramp_out).min(1.0));
        }
        self.weekend_damping * damping
    }
}

fn local_time(ts_ms: i64, tz: Tz) -> NaiveDateTime {
    let utc = DateTime::from_timestamp_millis(ts_ms).unwrap_or_default();
    tz.from_utc_datetime(&utc.naive_utc()).naive_local()
}

/// The run of consecutive days off that `day` (a day off) belongs to.
fn run_of_days_off(day: NaiveDate) -> (NaiveDate, NaiveDate) {
    let mut first = day;
    while let Some(prev) = first.pred_opt().filter(|d| is_day_off(*d)) {
        first = prev;
    }
    let mut last = day;
    while let Some(next) = last.succ_opt().filter(|d| is_day_off(*d)) {
        last = next;
    }
    (first, last)
}

/// Weekends and US federal holidays (eventsim asks jollyday for the US calendar).
pub fn is_day_off(day: NaiveDate) -> bool {
    matches!(day.weekday(), Weekday::Sat | Weekday::Sun) || is_us_holiday(day)
}

/// US federal holidays on their dates (not moved to a Friday or Monday when they fall on a
/// weekend, which is a day off anyway).
pub fn is_us_holiday(day: NaiveDate) -> bool {
    let (year, month, dom) = (day.year(), day.month(), day.day());
    let nth =
        |weekday: Weekday, n: u8| NaiveDate::from_weekday_of_month_opt(year, month, weekday, n);
    let last_monday_of_may = || {
        let mut d = NaiveDate::from_ymd_opt(year, 5, 31)?;
        while d.weekday() != Weekday::Mon {
            d = d.pred_opt()?;
        }
        Some(d)
    };
    match month {
        1 => dom == 1 || Some(day) == nth(Weekday::Mon, 3), // New Year, Martin Luther King
        2 => Some(day) == nth(Weekday::Mon, 3),             // Presidents' Day
        5 => Some(day) == last_monday_of_may(),             // Memorial Day
        6 => dom == 19 && year >= 2021,                     // Juneteenth
        7 => dom == 4,                                      // Independence Day
        9 => Some(day) == nth(Weekday::Mon, 1),             // Labor Day
        10 => Some(day) == nth(Weekday::Mon, 2),            // Columbus Day
        11 => dom == 11 || Some(day) == nth(Weekday::Thu, 4), // Veterans, Thanksgiving
        12 => dom == 25,                                    // Christmas
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::UTC;

    const CYCLE: Cycle = Cycle {
        damping: 0.09375,
        weekend_damping: 0.5,
        weekend_damping_offset_minutes: 180,
        weekend_damping_scale_minutes: 360,
    };

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp_millis()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    #[test]
    fn holidays_of_2026() {
        for (m, d) in [
            (1, 1),
            (1, 19),
            (2, 16),
            (5, 25),
            (6, 19),
            (7, 4),
            (9, 7),
            (10, 12),
            (11, 11),
            (11, 26),
            (12, 25),
        ] {
            assert!(is_us_holiday(date(2026, m, d)), "2026-{m}-{d}");
        }
        assert!(!is_us_holiday(date(2026, 11, 19)));
        assert!(!is_us_holiday(date(2026, 5, 18)));
        assert!(is_day_off(date(2026, 11, 22)), "a Sunday");
        assert!(!is_day_off(date(2026, 11, 23)), "a Monday");
    }

    #[test]
    fn the_warp_is_zero_at_3am_and_3pm_and_follows_local_time() {
        // 3am in New York is 8am UTC in November.
        let t = ms("2026-11-23T08:00:00Z");
        assert_eq!(CYCLE.warp(t, New_York), t);
        assert_ne!(CYCLE.warp(t, UTC), t);
        // 9am local: moved later by the full amplitude (0.09375 of a day = 2h15m).
        let nine = ms("2026-11-23T14:00:00Z");
        assert_eq!(CYCLE.warp(nine, New_York) - nine, 8_100_000);
        // 9pm local: moved earlier by as much.
        let nine_pm = ms("2026-11-24T02:00:00Z");
        assert_eq!(CYCLE.warp(nine_pm, New_York) - nine_pm, -8_100_000);
    }

    #[test]
    fn weekend_damping_ramps_in_on_friday_night_and_out_on_monday_morning() {
        let d = |s: &str| CYCLE.weekend_damping(ms(s), UTC);
        assert_eq!(d("2026-11-18T12:00:00Z"), 0.0, "Wednesday");
        assert_eq!(d("2026-11-20T20:00:00Z"), 0.0, "Friday before 9pm");
        assert!(
            (d("2026-11-21T00:00:00Z") - 0.25).abs() < 1e-9,
            "Saturday midnight"
        );
        assert_eq!(d("2026-11-21T12:00:00Z"), 0.5, "Saturday noon");
        assert_eq!(d("2026-11-22T12:00:00Z"), 0.5, "Sunday noon");
        assert!(
            (d("2026-11-23T00:00:00Z") - 0.25).abs() < 1e-9,
            "Monday midnight"
        );
        assert_eq!(d("2026-11-23T04:00:00Z"), 0.0, "Monday 4am");
        // Thanksgiving (a Thursday) is damped too.
        assert_eq!(d("2026-11-26T12:00:00Z"), 0.5);
        // Local time: Saturday 1am UTC is still Friday evening in New York.
        assert_eq!(
            CYCLE.weekend_damping(ms("2026-11-21T01:00:00Z"), New_York),
            0.0
        );
    }
}
