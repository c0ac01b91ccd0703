//! Cron expressions as cron writes them (five fields, Sunday as 0 or 7), in a timezone: what
//! schedules and the `on_cron` automation condition tick on. Parsing and stepping are the
//! `cron` crate's; this module reads the five-field form into it.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A cron schedule in a timezone.
#[derive(Clone, Debug)]
pub struct Cron {
    schedule: cron::Schedule,
    timezone: Tz,
}

impl Cron {
    /// Parses `expression` (see [`parse_cron`]) in the IANA `timezone`.
    pub fn parse(expression: &str, timezone: &str) -> Result<Cron, String> {
        let schedule = parse_cron(expression)?;
        let timezone = timezone
            .parse::<Tz>()
            .map_err(|_| format!("unknown timezone `{timezone}`"))?;
        Ok(Cron { schedule, timezone })
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&t.with_timezone(&self.timezone))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The latest tick at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = (t + chrono::Duration::seconds(1)).with_timezone(&self.timezone);
        self.schedule
            .after(&after)
            .next_back()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Parses a cron expression: 5 fields as cron writes them (minute hour day-of-month month
/// day-of-week, with Sunday as 0 or 7), or 6 and 7 fields with seconds first as the `cron`
/// crate reads them. A 5-field expression is checked field by field first, so that an error
/// names the field, quotes the user's own text, points at its position and states the real
/// rule (`minutes are 0-59`); an expression that can never fire (`0 0 30 2 *`) is refused.
pub fn parse_cron(expression: &str) -> Result<cron::Schedule, String> {
    if expression.len() > MAX_EXPRESSION {
        return Err(format!(
            "a cron expression has at most {MAX_EXPRESSION} characters; this one has {}",
            expression.chars().count()
        ));
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let full = match fields.len() {
        5 => {
            check_fields(expression)?;
            let dow = standard_day_of_week(fields[4])?;
            format!(
                "0 {} {} {} {} {}",
                fields[0], fields[1], fields[2], fields[3], dow
            )
        }
        6 | 7 => fields.join(" "),
        n => {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {n}"
            ));
        }
    };
    let schedule = cron::Schedule::from_str(&full).map_err(|e| e.to_string())?;
    // The `cron` crate knows the years 1970 to 2100: a schedule with no tick from 2000 on
    // never fires.
    let from = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc());
    if from.is_some_and(|t| schedule.after(&t).next().is_none()) {
        return Err(never_fires(&fields));
    }
    Ok(schedule)
}

/// The longest cron expression read (a real one is a few dozen characters).
pub const MAX_EXPRESSION: usize = 200;

/// One field of the five: its name, its range and the names its values may have.
struct Field {
    name: &'static str,
    plural: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        plural: "minutes are 0-59",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        plural: "hours are 0-23",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day-of-month",
        plural: "days of the month are 1-31",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        plural: "months are 1-12 or JAN-DEC",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    Field {
        name: "day-of-week",
        plural: "days of the week are 0-7 (Sunday is 0 or 7) or SUN-SAT",
        min: 0,
        max: 7,
        names: &DAYS,
    },
];

/// `message` about the expression, with a caret under character `position` (0-based).
fn at(expression: &str, position: usize, message: String) -> String {
    format!(
        "{message} at position {position}\n  {expression}\n  {}^",
        " ".repeat(position)
    )
}

/// Checks the five fields of `expression`: each a comma-separated list of `*`, a value or a
/// range `a-b`, each with an optional `/step`.
fn check_fields(expression: &str) -> Result<(), String> {
    let mut fields = Vec::new();
    let mut start = None;
    for (i, c) in expression.char_indices().chain([(expression.len(), ' ')]) {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                fields.push((s, &expression[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    let char_pos = |byte: usize| expression[..byte].chars().count();
    for ((offset, text), field) in fields.into_iter().zip(FIELDS.iter()) {
        let mut item_start = offset;
        for item in text.split(',') {
            check_item(item, field).map_err(|(within, message)| {
                at(expression, char_pos(item_start + within), message)
            })?;
            item_start += item.len() + 1;
        }
    }
    Ok(())
}

/// Checks one item of a list; on error, the byte offset within the item and the message.
fn check_item(item: &str, field: &Field) -> Result<(), (usize, String)> {
    let name = field.name;
    if item.is_empty() {
        return Err((
            0,
            format!("the {name} field has an empty item (two commas, or a comma at an end)"),
        ));
    }
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    let value = |text: &str, at: usize| -> Result<u32, (usize, String)> {
        if let Some(i) = field
            .names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(text))
        {
            return Ok(i as u32 + field.min);
        }
        match text.parse::<u32>() {
            Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
            Ok(_) => Err((
                at,
                format!("{name} `{text}` is out of range: {}", field.plural),
            )),
            Err(_) => Err((
                at,
                format!("{name} `{text}` is not a number: {}", field.plural),
            )),
        }
    };
    let wildcard = range == "*" || (range == "?" && matches!(name, "day-of-month" | "day-of-week"));
    if !wildcard {
        match range.split_once('-') {
            Some((a, b)) => {
                let first = value(a, 0)?;
                let last = value(b, a.len() + 1)?;
                // Sunday as 7 ends a range (`5-7`); any other backwards range is an error.
                if first > last {
                    return Err((
                        0,
                        format!(
                            "{name} range `{range}` goes backwards: put the smaller value first"
                        ),
                    ));
                }
            }
            None => {
                value(range, 0)?;
            }
        }
    }
    if let Some(step) = step {
        let span = field.max - field.min + 1;
        match step.parse::<u32>() {
            Ok(s) if (1..=span).contains(&s) => {}
            _ => {
                return Err((
                    range.len() + 1,
                    format!("{name} step `/{step}` is not a number from 1 to {span}"),
                ));
            }
        }
    }
    Ok(())
}

/// Why an expression that parses never fires: a day of the month no selected month has, or
/// no day matching both the day of the month and the day of the week.
fn never_fires(fields: &[&str]) -> String {
    if let [_, _, dom, month, dow] = fields {
        let days: Vec<u32> = dom
            .split(',')
            .filter_map(|d| d.split('/').next()?.split('-').next()?.parse().ok())
            .collect();
        let months: Vec<u32> = month
            .split(',')
            .filter_map(|m| {
                let m = m.split('/').next()?.split('-').next()?;
                m.parse().ok().or_else(|| {
                    MONTHS
                        .iter()
                        .position(|n| n.eq_ignore_ascii_case(m))
                        .map(|i| i as u32 + 1)
                })
            })
            .collect();
        let longest = |m: u32| match m {
            2 => 29,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if let (Some(&day), Some(&m)) = (days.iter().min(), months.first())
            && months.iter().all(|&m| longest(m) < day)
        {
            const NAMES: [&str; 12] = [
                "January",
                "February",
                "March",
                "April",
                "May",
                "June",
                "July",
                "August",
                "September",
                "October",
                "November",
                "December",
            ];
            return format!(
                "it never fires: {} has no day {day} (at most {})",
                NAMES[(m as usize).saturating_sub(1).min(11)],
                longest(m)
            );
        }
        if *dow != "*" && *dow != "?" {
            return format!(
                "it never fires: no date has both day of the month `{dom}`, month `{month}` and day of the week `{dow}`"
            );
        }
    }
    "it never fires: no date matches it".to_owned()
}

/// Rewrites a cron day-of-week field (0-7, Sunday 0 or 7) into the `cron` crate's numbering
/// (1-7, Sunday 1). Names (`MON-FRI`) and `*` pass through.
fn standard_day_of_week(field: &str) -> Result<String, String> {
    let shift = |n: &str| -> Result<u32, String> {
        match n.parse::<u32>() {
            Ok(v @ 0..=6) => Ok(v + 1),
            Ok(7) => Ok(1),
            _ => Err(format!("day of week `{n}` is not 0-7 or a name")),
        }
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let translated = if range == "*" || range.chars().any(|c| c.is_ascii_alphabetic()) {
            range.to_owned()
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b_raw) = (
                shift(a)?,
                b.parse::<u32>()
                    .map_err(|_| format!("day of week `{b}` is not 0-7"))?,
            );
            if b_raw == 7 {
                // `5-7` is Friday to Sunday: Friday to Saturday, plus Sunday.
                if a == 1 {
                    "1-7".to_owned()
                } else {
                    out.push("1".to_owned());
                    format!("{a}-7")
                }
            } else {
                format!("{a}-{}", shift(b)?)
            }
        } else {
            shift(range)?.to_string()
        };
        out.push(match step {
            Some(s) => format!("{translated}/{s}"),
            None => translated,
        });
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn steps_forward_and_back() {
        let c = Cron::parse("10 * * * *", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap();
        assert_eq!(
            c.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 22, 10, 10, 0).unwrap())
        );
        assert_eq!(
            c.latest_at_or_before(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 22, 9, 10, 0).unwrap())
        );
        let on = Utc.with_ymd_and_hms(2026, 11, 22, 9, 10, 0).unwrap();
        assert_eq!(c.latest_at_or_before(on), Some(on));
        assert!(Cron::parse("10 * * * *", "Mars/Olympus").is_err());
    }

    /// Issue 14: `61 * * * *` said "Minutes must be less than 59" about the internal six-field
    /// form, with a caret in the wrong place.
    #[test]
    fn errors_quote_the_users_text_point_at_it_and_state_the_rule() {
        let err = parse_cron("61 * * * *").unwrap_err();
        assert_eq!(
            err,
            "minute `61` is out of range: minutes are 0-59 at position 0\n  61 * * * *\n  ^"
        );
        let err = parse_cron("0  24 * * *").unwrap_err();
        assert!(
            err.starts_with("hour `24` is out of range: hours are 0-23 at position 3"),
            "{err}"
        );
        assert!(err.ends_with("\n  0  24 * * *\n     ^"), "{err}");
        let err = parse_cron("0 0 1,32 * *").unwrap_err();
        assert!(
            err.contains("day-of-month `32`") && err.contains("position 6"),
            "{err}"
        );
        let err = parse_cron("0 0 * 13 *").unwrap_err();
        assert!(err.contains("months are 1-12 or JAN-DEC"), "{err}");
        let err = parse_cron("0 0 * * 8").unwrap_err();
        assert!(err.contains("Sunday is 0 or 7"), "{err}");
        let err = parse_cron("*/0 * * * *").unwrap_err();
        assert!(
            err.contains("step `/0`") && err.contains("position 2"),
            "{err}"
        );
        let err = parse_cron("0 10-5 * * *").unwrap_err();
        assert!(err.contains("goes backwards"), "{err}");
        let err = parse_cron("x * * * *").unwrap_err();
        assert!(err.contains("minute `x` is not a number"), "{err}");
        assert!(!err.contains("0 x"), "no internal six-field form: {err}");
        let err = parse_cron("0 0 * JUNE *").unwrap_err();
        assert!(err.contains("month `JUNE`"), "{err}");
        assert!(
            parse_cron(&"1,".repeat(1000))
                .unwrap_err()
                .contains("at most 200")
        );
        for ok in [
            "*/15 * * * *",
            "0 9 * * MON-FRI",
            "0 0 1 jan,jul *",
            "5-7 0 * * 5-7",
            "0 0 29 2 *",
        ] {
            assert!(parse_cron(ok).is_ok(), "{ok}: {:?}", parse_cron(ok).err());
        }
    }

    #[test]
    fn schedules_that_never_fire_are_refused() {
        assert_eq!(
            parse_cron("0 0 30 2 *").unwrap_err(),
            "it never fires: February has no day 30 (at most 29)"
        );
        assert!(
            parse_cron("0 0 31 4,6 *")
                .unwrap_err()
                .contains("April has no day 31")
        );
        assert!(
            parse_cron("0 0 31 APR *")
                .unwrap_err()
                .contains("April has no day 31")
        );
        assert!(parse_cron("0 0 31 1,4 *").is_ok(), "January has a 31st");
    }
}
