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
/// crate reads them.
pub fn parse_cron(expression: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let full = match fields.len() {
        5 => {
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
    cron::Schedule::from_str(&full).map_err(|e| e.to_string())
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
}
