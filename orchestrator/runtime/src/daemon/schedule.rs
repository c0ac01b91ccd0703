//! Schedules: a cron expression in a timezone, a selection, and which partition each tick
//! materializes (the platform's `hourly_pipeline`: at :10, the hour that just ended).
//!
//! Pure: which ticks fall in an interval and which partition a tick asks for are computed
//! without IO; the daemon records them (exactly once per tick, by the storage's unique key).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::graph::AssetGraph;
use crate::partitions::{Cadence, PartitionsDefinition};
use crate::plan::PartitionRequest;
use crate::request::{Launcher, RunRequest};
use crate::selection::Selection;

/// Which partition a tick materializes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionRule {
    /// No partition (the selection is unpartitioned).
    None,
    /// The latest partition that is complete at the tick's time (the finest cadence among the
    /// selected assets decides: at 11:10 an hourly selection gets 10:00).
    LastComplete,
}

/// What the daemon does with ticks missed while no daemon ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Catchup {
    /// Run every missed tick, oldest first.
    All,
    /// Run only the latest N missed ticks; record the others as skipped.
    Latest(u32),
}

impl FromStr for Catchup {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Catchup::All),
            "latest" => Ok(Catchup::Latest(1)),
            _ => match s.strip_prefix("latest:").map(str::parse::<u32>) {
                Some(Ok(n)) if n > 0 => Ok(Catchup::Latest(n)),
                _ => Err(format!(
                    "unknown catch-up policy `{s}` (use `all`, `latest` or `latest:N`)"
                )),
            },
        }
    }
}

impl fmt::Display for Catchup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Catchup::All => f.write_str("all"),
            Catchup::Latest(1) => f.write_str("latest"),
            Catchup::Latest(n) => write!(f, "latest:{n}"),
        }
    }
}

/// A bad schedule definition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule `{schedule}`: invalid cron expression `{cron}`: {reason}")]
    Cron {
        schedule: String,
        cron: String,
        reason: String,
    },
    #[error(
        "schedule `{schedule}`: unknown timezone `{timezone}` (use an IANA name such as UTC or Europe/Paris)"
    )]
    Timezone { schedule: String, timezone: String },
    #[error("schedule `{schedule}`: {reason}")]
    Invalid { schedule: String, reason: String },
}

/// A schedule as defined in code or in `orch.toml`.
#[derive(Clone, Debug)]
pub struct ScheduleDefinition {
    pub name: String,
    /// The expression as written (5 fields, as cron; or 6 with seconds first).
    pub cron: String,
    schedule: cron::Schedule,
    pub timezone: Tz,
    pub selection: Selection,
    pub partition: PartitionRule,
    pub catchup: Catchup,
    /// Whether the schedule runs before anyone switches it on or off.
    pub default_enabled: bool,
}

impl ScheduleDefinition {
    pub fn new(
        name: &str,
        cron_expression: &str,
        timezone: &str,
        selection: &str,
    ) -> Result<ScheduleDefinition, ScheduleError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ScheduleError::Invalid {
                schedule: name.to_owned(),
                reason: "a schedule name holds ASCII letters, digits, `_` and `-`".into(),
            });
        }
        let schedule = parse_cron(cron_expression).map_err(|reason| ScheduleError::Cron {
            schedule: name.to_owned(),
            cron: crate::text::shorten(cron_expression, crate::text::SHOWN_CHARS),
            reason,
        })?;
        let tz: Tz = timezone.parse().map_err(|_| ScheduleError::Timezone {
            schedule: name.to_owned(),
            timezone: timezone.to_owned(),
        })?;
        let selection = Selection::parse(selection).map_err(|e| ScheduleError::Invalid {
            schedule: name.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(ScheduleDefinition {
            name: name.to_owned(),
            cron: cron_expression.to_owned(),
            schedule,
            timezone: tz,
            selection,
            partition: PartitionRule::LastComplete,
            catchup: Catchup::Latest(1),
            default_enabled: false,
        })
    }

    pub fn partition_rule(mut self, rule: PartitionRule) -> Self {
        self.partition = rule;
        self
    }

    pub fn catchup(mut self, catchup: Catchup) -> Self {
        self.catchup = catchup;
        self
    }

    pub fn enabled_by_default(mut self, enabled: bool) -> Self {
        self.default_enabled = enabled;
        self
    }

    /// The ticks after `after` up to and including `until`, oldest first.
    pub fn ticks_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let start = after.with_timezone(&self.timezone);
        self.schedule
            .after(&start)
            .map(|t| t.with_timezone(&Utc))
            .take_while(|t| *t <= until)
            .take(100_000)
            .collect()
    }

    /// The first tick after `after`.
    pub fn next_tick(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&after.with_timezone(&self.timezone))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The request of the tick at `tick`: the schedule's selection over the partition its rule
    /// picks, launched by this schedule.
    pub fn run_request(
        &self,
        graph: &AssetGraph,
        tick: DateTime<Utc>,
    ) -> Result<RunRequest, String> {
        let partitions = self.partitions_for(graph, tick)?;
        Ok(
            RunRequest::new(self.selection.as_str(), partitions).launched_by(&Launcher::Schedule {
                name: self.name.clone(),
                tick,
            }),
        )
    }

    /// The partitions of the tick at `tick`, by the schedule's partition rule.
    fn partitions_for(
        &self,
        graph: &AssetGraph,
        tick: DateTime<Utc>,
    ) -> Result<PartitionRequest, String> {
        match self.partition {
            PartitionRule::None => Ok(PartitionRequest::None),
            PartitionRule::LastComplete => {
                let selected = self.selection.resolve(graph).map_err(|e| e.to_string())?;
                let finest = selected
                    .iter()
                    .filter_map(|k| graph.spec(k).and_then(|s| s.partitions.as_ref()))
                    .filter(|p| p.is_time())
                    .min_by_key(|p| match p.cadence() {
                        Some(Cadence::Hourly) => 0,
                        Some(Cadence::Daily) => 1,
                        None => 2,
                    });
                match finest {
                    None => Ok(PartitionRequest::None),
                    Some(def) => last_complete(def, tick),
                }
            }
        }
    }
}

/// Builds a schedule from its `[[schedule]]` table in `orch.toml`.
pub fn from_config(
    config: &crate::config::ScheduleConfig,
) -> Result<ScheduleDefinition, ScheduleError> {
    let invalid = |reason: String| ScheduleError::Invalid {
        schedule: config.name.clone(),
        reason,
    };
    let mut schedule = ScheduleDefinition::new(
        &config.name,
        &config.cron,
        &config.timezone,
        &config.selection,
    )?
    .enabled_by_default(config.enabled);
    schedule.partition = match config.partition.as_deref().unwrap_or("last_complete") {
        "last_complete" => PartitionRule::LastComplete,
        "none" => PartitionRule::None,
        other => {
            return Err(invalid(format!(
                "unknown partition rule `{other}` (use last_complete or none)"
            )));
        }
    };
    if let Some(catchup) = &config.catchup {
        schedule.catchup = catchup.parse().map_err(invalid)?;
    }
    Ok(schedule)
}

/// Refuses two schedules of one name, naming where each comes from (`origin(i)` says where the
/// `i`th of `schedules` is defined): every command that loads the schedules (`schedules list`,
/// `schedules on`, `web`, `daemon`) refuses them the same way.
pub fn check_unique_names(
    schedules: &[ScheduleDefinition],
    origin: impl Fn(usize) -> String,
) -> Result<(), ScheduleError> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, s) in schedules.iter().enumerate() {
        if let Some(&first) = seen.get(s.name.as_str()) {
            return Err(ScheduleError::Invalid {
                schedule: s.name.clone(),
                reason: format!(
                    "the name is used twice: by {} and by {}; give each schedule its own name",
                    origin(first),
                    origin(i)
                ),
            });
        }
        seen.insert(&s.name, i);
    }
    Ok(())
}

fn last_complete(
    def: &PartitionsDefinition,
    tick: DateTime<Utc>,
) -> Result<PartitionRequest, String> {
    def.last_complete_key(tick)
        .map(PartitionRequest::Key)
        .ok_or_else(|| format!("no partition of {} is complete at {tick}", def.describe()))
}

pub use orch_core::cron::parse_cron;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn hourly_at_ten_past() {
        let s = ScheduleDefinition::new("hourly", "10 * * * *", "UTC", "*").unwrap();
        let ticks = s.ticks_between(utc(2026, 11, 22, 9, 10), utc(2026, 11, 22, 12, 10));
        assert_eq!(
            ticks,
            [
                utc(2026, 11, 22, 10, 10),
                utc(2026, 11, 22, 11, 10),
                utc(2026, 11, 22, 12, 10)
            ]
        );
        assert_eq!(
            s.next_tick(utc(2026, 11, 22, 12, 10)),
            Some(utc(2026, 11, 22, 13, 10))
        );
    }

    #[test]
    fn timezones_shift_the_ticks() {
        let s = ScheduleDefinition::new("daily", "0 6 * * *", "Europe/Paris", "*").unwrap();
        let ticks = s.ticks_between(utc(2026, 11, 22, 0, 0), utc(2026, 11, 23, 0, 0));
        assert_eq!(ticks, [utc(2026, 11, 22, 5, 0)]);
    }

    #[test]
    fn days_of_week_read_as_cron_writes_them() {
        // 2026-11-22 is a Sunday.
        let weekdays = ScheduleDefinition::new("w", "0 9 * * 1-5", "UTC", "*").unwrap();
        let ticks = weekdays.ticks_between(utc(2026, 11, 21, 0, 0), utc(2026, 11, 28, 23, 0));
        assert_eq!(ticks.len(), 5);
        assert_eq!(ticks[0], utc(2026, 11, 23, 9, 0));
        let sunday = ScheduleDefinition::new("s", "0 9 * * 0", "UTC", "*").unwrap();
        assert_eq!(
            sunday.next_tick(utc(2026, 11, 21, 0, 0)),
            Some(utc(2026, 11, 22, 9, 0))
        );
        let seven = ScheduleDefinition::new("s", "0 9 * * 7", "UTC", "*").unwrap();
        assert_eq!(
            seven.next_tick(utc(2026, 11, 21, 0, 0)),
            Some(utc(2026, 11, 22, 9, 0))
        );
        let weekend = ScheduleDefinition::new("e", "0 9 * * 6-7", "UTC", "*").unwrap();
        assert_eq!(
            weekend
                .ticks_between(utc(2026, 11, 20, 0, 0), utc(2026, 11, 23, 0, 0))
                .len(),
            2
        );
        let named = ScheduleDefinition::new("n", "0 9 * * MON-FRI", "UTC", "*").unwrap();
        assert_eq!(
            named.next_tick(utc(2026, 11, 22, 0, 0)),
            Some(utc(2026, 11, 23, 9, 0))
        );
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        let err = ScheduleDefinition::new("x", "10 * * *", "UTC", "*").unwrap_err();
        assert_eq!(
            err.to_string(),
            "schedule `x`: invalid cron expression `10 * * *`: expected 5 fields (minute hour day-of-month month day-of-week), found 4"
        );
        let err = ScheduleDefinition::new("x", "61 * * * *", "UTC", "*").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("schedule `x`: invalid cron expression `61 * * * *`"),
            "{err}"
        );
        let err = ScheduleDefinition::new("x", "0 * * * *", "Mars/Olympus", "*").unwrap_err();
        assert!(
            err.to_string().contains("unknown timezone `Mars/Olympus`"),
            "{err}"
        );
        assert!(ScheduleDefinition::new("x y", "0 * * * *", "UTC", "*").is_err());
        assert!(ScheduleDefinition::new("x", "0 * * * *", "UTC", "a,,b").is_err());
    }

    /// Issue 14: duplicate names passed `schedules list` and `schedules on` and failed only in
    /// `daemon`; they are refused at load, with where each comes from.
    #[test]
    fn duplicate_names_are_refused_with_their_origins() {
        let a = ScheduleDefinition::new("hourly", "10 * * * *", "UTC", "*").unwrap();
        let b = ScheduleDefinition::new("daily", "0 1 * * *", "UTC", "*").unwrap();
        let origin = |i: usize| format!("[[schedule]] number {} in orch.toml", i + 1);
        assert!(check_unique_names(&[a.clone(), b.clone()], origin).is_ok());
        let err = check_unique_names(&[a.clone(), b, a], origin).unwrap_err();
        assert_eq!(
            err.to_string(),
            "schedule `hourly`: the name is used twice: by [[schedule]] number 1 in orch.toml and by [[schedule]] number 3 in orch.toml; give each schedule its own name"
        );
    }

    #[test]
    fn catchup_policies_parse() {
        assert_eq!("all".parse::<Catchup>(), Ok(Catchup::All));
        assert_eq!("latest".parse::<Catchup>(), Ok(Catchup::Latest(1)));
        assert_eq!("latest:3".parse::<Catchup>(), Ok(Catchup::Latest(3)));
        assert!("latest:0".parse::<Catchup>().is_err());
        assert_eq!(Catchup::Latest(3).to_string(), "latest:3");
    }
}
