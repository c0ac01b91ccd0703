//! Partitions: hourly and daily time windows with a start and a timezone, keys in Dagster's
//! formats (`2026-11-22-10:00`, `2026-11-22`), static key sets, ranges, and the mappings
//! between an asset's partitions and its upstream's (a daily partition depends on its 24 hours).
//!
//! Pure: no IO, no clock (callers pass `now`).
//!
//! # Local time and daylight saving time
//!
//! Time partitions follow the local time of their timezone: a key names a local hour or a
//! local day, and its window is converted to UTC. Partitions are enumerated in local time:
//!
//! - a local hour the clocks skip (spring forward) has no hourly partition, and the hour before
//!   it ends where the next existing hour starts (so a spring-forward day in `Europe/Paris` has
//!   23 hourly partitions);
//! - a local time that happens twice (fall back) starts at its earliest instant, and its window
//!   runs to the next partition's start (so the hourly partition `02:00` of a fall-back day in
//!   `Europe/Paris` is two hours long, and that day has 24 hourly partitions over 25 hours);
//! - a day whose midnight is skipped starts at the first local time that exists that day.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike,
    Utc,
};
use chrono_tz::Tz;

use crate::text::{SHOWN_CHARS, shorten};

/// A half-open interval of time, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl TimeWindow {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        TimeWindow { start, end }
    }

    /// Whether the two windows share an instant. An empty window overlaps nothing.
    pub fn overlaps(&self, other: &TimeWindow) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether `t` is in `[start, end)`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    pub fn duration(&self) -> chrono::Duration {
        self.end - self.start
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.start.format("%Y-%m-%dT%H:%M:%SZ"),
            self.end.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

/// The length of a time partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cadence {
    Hourly,
    Daily,
}

impl Cadence {
    pub fn as_str(self) -> &'static str {
        match self {
            Cadence::Hourly => "hourly",
            Cadence::Daily => "daily",
        }
    }

    /// The `strftime` format of this cadence's keys.
    pub fn key_format(self) -> &'static str {
        match self {
            Cadence::Hourly => HOURLY_FORMAT,
            Cadence::Daily => DAILY_FORMAT,
        }
    }

    fn example_key(self) -> &'static str {
        match self {
            Cadence::Hourly => "2026-11-22-10:00",
            Cadence::Daily => "2026-11-22",
        }
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const HOURLY_FORMAT: &str = "%Y-%m-%d-%H:%M";
const DAILY_FORMAT: &str = "%Y-%m-%d";

/// Time-window partitions: one partition per hour or per day of local time in `timezone`,
/// from `start` on. See the [module documentation](self) for daylight saving time.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeWindowPartitions {
    pub cadence: Cadence,
    /// The first partition's start.
    pub start: DateTime<Utc>,
    pub timezone: chrono_tz::Tz,
}

/// How an asset is partitioned.
#[derive(Clone, Debug, PartialEq)]
pub enum PartitionsDefinition {
    Time(TimeWindowPartitions),
    Static(Vec<String>),
}

/// How a downstream partition maps onto upstream partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionMapping {
    /// The same key upstream.
    Identity,
    /// The upstream partitions whose windows overlap the downstream window (hourly to daily:
    /// a day depends on its 24 hours; daily to hourly: an hour depends on its day).
    TimeWindow,
    /// Every upstream partition.
    All,
}

/// Which upstream partitions one downstream partition needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamPartitions {
    /// The upstream is not partitioned: its one materialization.
    Unpartitioned,
    /// These upstream keys.
    Keys(Vec<String>),
    /// All of the upstream's partitions.
    All,
}

/// A bad partition key, range or definition, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("invalid partitions definition: {0}")]
    Definition(String),
    #[error("`{key}` is not a partition of {definition}: {expected}")]
    InvalidKey {
        key: String,
        definition: String,
        expected: String,
    },
    #[error("invalid partition range `{from}` to `{to}`: {reason}")]
    InvalidRange {
        from: String,
        to: String,
        reason: String,
    },
    #[error("invalid partition mapping: {0}")]
    Mapping(String),
    #[error(
        "the partition range `{from}` to `{to}` holds more than {max} partitions, the most one request may cover: narrow the range, or raise `max_range_partitions` under [limits] in orch.toml"
    )]
    TooMany {
        from: String,
        to: String,
        max: usize,
    },
}

/// How many years after its start a time partitions definition has keys: keys beyond are
/// refused.
pub const MAX_YEARS: i32 = 100;

/// The most partitions any range may hold, whatever the configured limit: 100,000 hours is
/// over eleven years. Ranges are checked against the configured limit
/// ([`DEFAULT_MAX_RANGE_PARTITIONS`] unless `orch.toml` says otherwise) before planning.
pub const HARD_MAX_RANGE_PARTITIONS: usize = 100_000;

/// The default limit on the partitions of one range (`[limits] max_range_partitions`): a
/// year and a bit of hours.
pub const DEFAULT_MAX_RANGE_PARTITIONS: usize = 10_000;

/// How many local times in a row may be skipped before giving up (a whole day of hours, as
/// when Samoa skipped 2011-12-30, is 24).
const MAX_SKIPPED: usize = 48;

impl TimeWindowPartitions {
    /// The first partition's local label (its key as a naive local time).
    fn start_label(&self) -> NaiveDateTime {
        let local = self.start.with_timezone(&self.timezone).naive_local();
        self.truncate(local)
    }

    /// The last label a key may have: the definition's window ends [`MAX_YEARS`] years after
    /// its start (a key in year 9999 is a typo, not a plan).
    fn last_label(&self) -> NaiveDateTime {
        let first = self.start_label();
        let end = first
            .date()
            .with_year(first.year() + MAX_YEARS)
            .unwrap_or(NaiveDate::MAX)
            .and_time(NaiveTime::MIN);
        match self.cadence {
            Cadence::Hourly => end - TimeDelta::hours(1),
            Cadence::Daily => end - TimeDelta::days(1),
        }
    }

    /// The label of the partition that local time `local` falls in, ignoring skipped times.
    fn truncate(&self, local: NaiveDateTime) -> NaiveDateTime {
        match self.cadence {
            Cadence::Hourly => local
                .date()
                .and_time(NaiveTime::from_hms_opt(local.hour(), 0, 0).unwrap_or(NaiveTime::MIN)),
            Cadence::Daily => local.date().and_time(NaiveTime::MIN),
        }
    }

    /// The instant the partition labelled `label` starts, or `None` if the clocks skip it.
    fn resolve(&self, label: NaiveDateTime) -> Option<DateTime<Utc>> {
        let tz = self.timezone;
        if let Some(t) = tz.from_local_datetime(&label).earliest() {
            return Some(t.with_timezone(&Utc));
        }
        match self.cadence {
            Cadence::Hourly => None,
            Cadence::Daily => {
                // Midnight is skipped: the day starts at its first local time that exists.
                // Transitions happen on quarter hours.
                let mut t = label;
                while let Some(next) = t.checked_add_signed(TimeDelta::minutes(15)) {
                    if next.date() != label.date() {
                        return None;
                    }
                    if let Some(start) = tz.from_local_datetime(&next).earliest() {
                        return Some(start.with_timezone(&Utc));
                    }
                    t = next;
                }
                None
            }
        }
    }

    fn step(&self, label: NaiveDateTime, forward: bool) -> Option<NaiveDateTime> {
        match (self.cadence, forward) {
            (Cadence::Hourly, true) => label.checked_add_signed(TimeDelta::hours(1)),
            (Cadence::Hourly, false) => label.checked_sub_signed(TimeDelta::hours(1)),
            (Cadence::Daily, true) => label.checked_add_days(Days::new(1)),
            (Cadence::Daily, false) => label.checked_sub_days(Days::new(1)),
        }
    }

    /// The next (or previous) label that exists, with its start.
    fn neighbour(
        &self,
        label: NaiveDateTime,
        forward: bool,
    ) -> Option<(NaiveDateTime, DateTime<Utc>)> {
        let mut label = label;
        for _ in 0..MAX_SKIPPED {
            label = self.step(label, forward)?;
            if let Some(start) = self.resolve(label) {
                return Some((label, start));
            }
        }
        None
    }

    fn next(&self, label: NaiveDateTime) -> Option<(NaiveDateTime, DateTime<Utc>)> {
        self.neighbour(label, true)
    }

    fn prev(&self, label: NaiveDateTime) -> Option<(NaiveDateTime, DateTime<Utc>)> {
        self.neighbour(label, false)
    }

    /// The window of an existing label.
    fn window_of(&self, label: NaiveDateTime) -> Option<TimeWindow> {
        let start = self.resolve(label)?;
        let (_, end) = self.next(label)?;
        Some(TimeWindow { start, end })
    }

    /// The label whose window contains `t` (maybe before the first partition).
    fn label_containing(&self, t: DateTime<Utc>) -> Option<NaiveDateTime> {
        let mut label = self.truncate(t.with_timezone(&self.timezone).naive_local());
        for _ in 0..MAX_SKIPPED {
            match self.resolve(label) {
                Some(start) if start <= t => return Some(label),
                _ => label = self.prev(label)?.0,
            }
        }
        None
    }

    fn format(&self, label: NaiveDateTime) -> String {
        label.format(self.cadence.key_format()).to_string()
    }

    fn describe(&self) -> String {
        format!(
            "{} partitions from {} ({})",
            self.cadence,
            self.format(self.start_label()),
            self.timezone.name()
        )
    }

    fn invalid(&self, key: &str, expected: String) -> PartitionError {
        PartitionError::InvalidKey {
            key: shorten(key, SHOWN_CHARS),
            definition: self.describe(),
            expected,
        }
    }

    /// Parses and validates a key into its label.
    fn parse_key(&self, key: &str) -> Result<NaiveDateTime, PartitionError> {
        let cadence = self.cadence;
        let label = parse_label(key, cadence).ok_or_else(|| {
            let why = explain_bad_label(key, cadence)
                .map(|why| format!("{why}; "))
                .unwrap_or_default();
            self.invalid(
                key,
                format!("{why}{cadence} keys look like {}", cadence.example_key()),
            )
        })?;
        if label.minute() != 0 {
            let on_the_hour = self.format(self.truncate(label));
            return Err(self.invalid(
                key,
                format!("hourly partitions start on the hour; did you mean {on_the_hour}?"),
            ));
        }
        let first = self.start_label();
        if label < first {
            return Err(self.invalid(
                key,
                format!("it is before the first partition, {}", self.format(first)),
            ));
        }
        let last = self.last_label();
        if label > last {
            return Err(self.invalid(
                key,
                format!(
                    "it is after the last partition the definition allows, {} (partitions run {MAX_YEARS} years from their start)",
                    self.format(last)
                ),
            ));
        }
        if self.resolve(label).is_none() {
            return Err(self.invalid(
                key,
                format!(
                    "the clocks skip that {} in {} (daylight saving time), so it has no partition",
                    match cadence {
                        Cadence::Hourly => "hour",
                        Cadence::Daily => "day",
                    },
                    self.timezone.name()
                ),
            ));
        }
        Ok(label)
    }

    /// Labels from `first` while `keep(label, window)` holds.
    fn labels_while(
        &self,
        first: NaiveDateTime,
        mut keep: impl FnMut(NaiveDateTime, TimeWindow) -> bool,
    ) -> Vec<String> {
        let mut keys = Vec::new();
        let Some(mut start) = self.resolve(first) else {
            return keys;
        };
        let mut label = first;
        while let Some((next, end)) = self.next(label) {
            if !keep(label, TimeWindow { start, end }) {
                break;
            }
            keys.push(self.format(label));
            label = next;
            start = end;
        }
        keys
    }
}

/// What is wrong with a key that does not parse, when its shape is right but a part is out
/// of range: `month 13 does not exist (months are 01-12)`.
fn explain_bad_label(key: &str, cadence: Cadence) -> Option<String> {
    let b = key.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = key.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let shape = match cadence {
        Cadence::Hourly => {
            b.len() == 16 && b[4] == b'-' && b[7] == b'-' && b[10] == b'-' && b[13] == b':'
        }
        Cadence::Daily => b.len() == 10 && b[4] == b'-' && b[7] == b'-',
    };
    if !shape {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !(1..=12).contains(&month) {
        return Some(format!(
            "month {month:02} does not exist (months are 01-12)"
        ));
    }
    let days = NaiveDate::from_ymd_opt(year as i32, month, 1)
        .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())?;
    if day == 0 || day > days {
        return Some(format!(
            "day {day:02} does not exist in {year:04}-{month:02} (it has {days} days)"
        ));
    }
    if cadence == Cadence::Hourly {
        let (hour, minute) = (digits(11..13)?, digits(14..16)?);
        if hour > 23 {
            return Some(format!("hour {hour:02} does not exist (hours are 00-23)"));
        }
        if minute > 59 {
            return Some(format!(
                "minute {minute:02} does not exist (minutes are 00-59)"
            ));
        }
    }
    None
}

/// Parses a key in the cadence's exact format (zero-padded, four-digit year).
fn parse_label(key: &str, cadence: Cadence) -> Option<NaiveDateTime> {
    let format = cadence.key_format();
    let label = match cadence {
        Cadence::Hourly if key.len() == 16 => NaiveDateTime::parse_from_str(key, format).ok()?,
        Cadence::Daily if key.len() == 10 => NaiveDate::parse_from_str(key, format)
            .ok()?
            .and_time(NaiveTime::MIN),
        _ => return None,
    };
    (label.format(format).to_string() == key).then_some(label)
}

fn parse_timezone(timezone: &str) -> Result<Tz, PartitionError> {
    if let Ok(tz) = timezone.parse::<Tz>() {
        return Ok(tz);
    }
    let suggestion = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .find(|name| name.eq_ignore_ascii_case(timezone))
        .or_else(|| {
            chrono_tz::TZ_VARIANTS
                .iter()
                .map(|tz| (strsim::jaro_winkler(timezone, tz.name()), tz.name()))
                .filter(|(score, _)| *score >= 0.9)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, name)| name)
        });
    Err(PartitionError::Definition(format!(
        "unknown timezone `{timezone}`: expected an IANA name like `UTC` or `Europe/Paris`{}",
        suggestion
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default()
    )))
}

impl PartitionsDefinition {
    /// Hourly partitions from `start` (`2026-11-01-00:00` or `2026-11-01`, local time in
    /// `timezone`, an IANA name like `UTC` or `Europe/Paris`).
    pub fn hourly(start: &str, timezone: &str) -> Result<Self, PartitionError> {
        Self::time(Cadence::Hourly, start, timezone)
    }

    /// Daily partitions from `start` (`2026-11-01`, local time in `timezone`).
    pub fn daily(start: &str, timezone: &str) -> Result<Self, PartitionError> {
        Self::time(Cadence::Daily, start, timezone)
    }

    fn time(cadence: Cadence, start: &str, timezone: &str) -> Result<Self, PartitionError> {
        let tz = parse_timezone(timezone)?;
        let label = parse_label(start, Cadence::Hourly)
            .or_else(|| parse_label(start, Cadence::Daily))
            .ok_or_else(|| {
                PartitionError::Definition(format!(
                    "start `{start}` is not a date: expected `2026-11-01` or `2026-11-01-00:00`"
                ))
            })?;
        match cadence {
            Cadence::Hourly if label.minute() != 0 => {
                return Err(PartitionError::Definition(format!(
                    "hourly partitions start on the hour, not at `{start}`; try `{}`",
                    label.format("%Y-%m-%d-%H:00")
                )));
            }
            Cadence::Daily if label.time() != NaiveTime::MIN => {
                return Err(PartitionError::Definition(format!(
                    "daily partitions start at midnight, not at `{start}`; try `{}`",
                    label.format(DAILY_FORMAT)
                )));
            }
            _ => {}
        }
        let mut partitions = TimeWindowPartitions {
            cadence,
            start: DateTime::<Utc>::MIN_UTC,
            timezone: tz,
        };
        partitions.start = partitions.resolve(label).ok_or_else(|| {
            PartitionError::Definition(format!(
                "start `{start}` does not exist in {} (the clocks skip it for daylight saving time)",
                tz.name()
            ))
        })?;
        Ok(PartitionsDefinition::Time(partitions))
    }

    /// Static partitions: a fixed, ordered list of keys. Keys must be non-empty, unique and
    /// free of `,`, `[` and `]`.
    pub fn static_keys<I: IntoIterator<Item = S>, S: Into<String>>(
        keys: I,
    ) -> Result<Self, PartitionError> {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        if keys.is_empty() {
            return Err(PartitionError::Definition(
                "static partitions need at least one key".to_owned(),
            ));
        }
        let mut seen = HashSet::with_capacity(keys.len());
        for key in &keys {
            if key.is_empty() {
                return Err(PartitionError::Definition(
                    "static partition keys must not be empty".to_owned(),
                ));
            }
            if let Some(ch) = key.chars().find(|c| matches!(c, ',' | '[' | ']')) {
                return Err(PartitionError::Definition(format!(
                    "static partition key `{key}` contains `{ch}`; keys may not contain `,`, `[` or `]`"
                )));
            }
            if !seen.insert(key.as_str()) {
                return Err(PartitionError::Definition(format!(
                    "static partition key `{key}` is listed twice"
                )));
            }
        }
        Ok(PartitionsDefinition::Static(keys))
    }

    pub fn is_time(&self) -> bool {
        matches!(self, PartitionsDefinition::Time(_))
    }

    pub fn cadence(&self) -> Option<Cadence> {
        match self {
            PartitionsDefinition::Time(t) => Some(t.cadence),
            PartitionsDefinition::Static(_) => None,
        }
    }

    /// For messages: `hourly partitions from 2026-11-01-00:00 (UTC)`,
    /// `daily partitions from 2026-11-01 (Europe/Paris)`, `static partitions [a, b, c]`.
    pub fn describe(&self) -> String {
        match self {
            PartitionsDefinition::Time(t) => t.describe(),
            PartitionsDefinition::Static(keys) => {
                const SHOWN: usize = 10;
                if keys.len() <= SHOWN + 2 {
                    format!("static partitions [{}]", keys.join(", "))
                } else {
                    format!(
                        "static partitions [{}, … {} more]",
                        keys[..SHOWN].join(", "),
                        keys.len() - SHOWN
                    )
                }
            }
        }
    }

    fn static_position(
        keys: &[String],
        key: &str,
        definition: &Self,
    ) -> Result<usize, PartitionError> {
        keys.iter().position(|k| k == key).ok_or_else(|| {
            let suggestion = keys
                .iter()
                .map(|k| (strsim::normalized_damerau_levenshtein(key, k), k))
                .filter(|(score, _)| *score >= 0.6)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            PartitionError::InvalidKey {
                key: shorten(key, SHOWN_CHARS),
                definition: definition.describe(),
                expected: format!("no such key{suggestion}"),
            }
        })
    }

    /// Checks that `key` is one of this definition's partitions: the exact key format, not
    /// before the first partition, on an hour boundary for hourly partitions, not skipped by
    /// daylight saving time.
    pub fn validate_key(&self, key: &str) -> Result<(), PartitionError> {
        match self {
            PartitionsDefinition::Time(t) => t.parse_key(key).map(drop),
            PartitionsDefinition::Static(keys) => Self::static_position(keys, key, self).map(drop),
        }
    }

    /// The UTC window of a time partition; `None` for a static one.
    pub fn window(&self, key: &str) -> Result<Option<TimeWindow>, PartitionError> {
        match self {
            PartitionsDefinition::Time(t) => {
                let label = t.parse_key(key)?;
                Ok(t.window_of(label))
            }
            PartitionsDefinition::Static(_) => self.validate_key(key).map(|()| None),
        }
    }

    /// The keys from `from` to `to`, both included, in order (for static partitions, in the
    /// order of the list); at most [`HARD_MAX_RANGE_PARTITIONS`] of them.
    pub fn keys_in_range(&self, from: &str, to: &str) -> Result<Vec<String>, PartitionError> {
        self.keys_in_range_at_most(from, to, HARD_MAX_RANGE_PARTITIONS)
    }

    /// [`Self::keys_in_range`], refusing a range of more than `max` keys with a message that
    /// says how to narrow it. Costs O(`max`) at most, however far apart the keys are.
    pub fn keys_in_range_at_most(
        &self,
        from: &str,
        to: &str,
        max: usize,
    ) -> Result<Vec<String>, PartitionError> {
        let (from_shown, to_shown) = (shorten(from, SHOWN_CHARS), shorten(to, SHOWN_CHARS));
        let after = || PartitionError::InvalidRange {
            from: from_shown.clone(),
            to: to_shown.clone(),
            reason: format!("`{from_shown}` comes after `{to_shown}`; put the earlier key first"),
        };
        let too_many = || PartitionError::TooMany {
            from: from_shown.clone(),
            to: to_shown.clone(),
            max,
        };
        match self {
            PartitionsDefinition::Time(t) => {
                let first = t.parse_key(from)?;
                let last = t.parse_key(to)?;
                if first > last {
                    return Err(after());
                }
                let mut count = 0;
                let keys = t.labels_while(first, |label, _| {
                    count += 1;
                    label <= last && count <= max + 1
                });
                if keys.len() > max {
                    return Err(too_many());
                }
                Ok(keys)
            }
            PartitionsDefinition::Static(keys) => {
                let first = Self::static_position(keys, from, self)?;
                let last = Self::static_position(keys, to, self)?;
                if first > last {
                    return Err(after());
                }
                if last - first >= max {
                    return Err(too_many());
                }
                Ok(keys[first..=last].to_vec())
            }
        }
    }

    /// Every time partition whose window overlaps `window`, in order, none before the first
    /// partition. Empty for static partitions and for an empty window.
    pub fn keys_overlapping(&self, window: &TimeWindow) -> Vec<String> {
        let PartitionsDefinition::Time(t) = self else {
            return Vec::new();
        };
        if window.start >= window.end || window.end <= t.start {
            return Vec::new();
        }
        let first = if window.start <= t.start {
            t.start_label()
        } else {
            match t.label_containing(window.start) {
                Some(label) => label,
                None => return Vec::new(),
            }
        };
        t.labels_while(first, |_, w| w.start < window.end)
    }

    /// The newest `n` time partitions by `now`, oldest first: those whose window has ended,
    /// and also the one still open at `now` when `include_current`. Static partitions: every
    /// key. Costs O(n), however many partitions lie before.
    pub fn latest_keys(&self, now: DateTime<Utc>, n: usize, include_current: bool) -> Vec<String> {
        let t = match self {
            PartitionsDefinition::Static(keys) => return keys.clone(),
            PartitionsDefinition::Time(t) => t,
        };
        if n == 0 || now < t.start {
            return Vec::new();
        }
        let Some(current) = t.label_containing(now) else {
            return Vec::new();
        };
        let mut labels = Vec::with_capacity(n);
        let mut label = Some(current);
        if !include_current {
            label = if current <= t.start_label() {
                None
            } else {
                t.prev(current).map(|(l, _)| l)
            };
        }
        while let Some(l) = label {
            if labels.len() == n {
                break;
            }
            labels.push(l);
            label = if l <= t.start_label() {
                None
            } else {
                t.prev(l).map(|(p, _)| p)
            };
        }
        labels.reverse();
        labels.into_iter().map(|l| t.format(l)).collect()
    }

    /// The time partition whose window contains `t`; `None` before the first partition and
    /// for static partitions.
    pub fn key_containing(&self, t: DateTime<Utc>) -> Option<String> {
        let PartitionsDefinition::Time(p) = self else {
            return None;
        };
        if t < p.start {
            return None;
        }
        p.label_containing(t).map(|label| p.format(label))
    }

    /// The latest time partition whose window has ended by `now`: what a schedule that runs
    /// at 10:10 materializes for hourly partitions (the 09:00 hour). `None` if none has ended,
    /// and for static partitions.
    pub fn last_complete_key(&self, now: DateTime<Utc>) -> Option<String> {
        let PartitionsDefinition::Time(p) = self else {
            return None;
        };
        if now < p.start {
            return None;
        }
        let current = p.label_containing(now)?;
        if current <= p.start_label() {
            return None;
        }
        p.prev(current).map(|(label, _)| p.format(label))
    }

    /// Every partition complete by `now`, from the first on; every key for static partitions.
    pub fn keys_until(&self, now: DateTime<Utc>) -> Vec<String> {
        match self {
            PartitionsDefinition::Time(t) => {
                t.labels_while(t.start_label(), |_, window| window.end <= now)
            }
            PartitionsDefinition::Static(keys) => keys.clone(),
        }
    }
}

impl fmt::Display for PartitionsDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PartitionMapping {
    /// The default mapping for an edge: both time-partitioned => [`PartitionMapping::TimeWindow`];
    /// both static => [`PartitionMapping::Identity`]; otherwise [`PartitionMapping::All`].
    pub fn default_for(
        downstream: Option<&PartitionsDefinition>,
        upstream: Option<&PartitionsDefinition>,
    ) -> PartitionMapping {
        match (downstream, upstream) {
            (Some(PartitionsDefinition::Time(_)), Some(PartitionsDefinition::Time(_))) => {
                PartitionMapping::TimeWindow
            }
            (Some(PartitionsDefinition::Static(_)), Some(PartitionsDefinition::Static(_))) => {
                PartitionMapping::Identity
            }
            _ => PartitionMapping::All,
        }
    }

    /// Which upstream partitions the downstream partitions `downstream_keys` need.
    ///
    /// - An unpartitioned upstream gives [`UpstreamPartitions::Unpartitioned`].
    /// - An unpartitioned downstream (no `downstream_keys`) needs all of a partitioned
    ///   upstream.
    /// - [`PartitionMapping::Identity`] gives the same keys (each validated against the
    ///   upstream), in the order given, without repeats.
    /// - [`PartitionMapping::TimeWindow`] gives every upstream key whose window overlaps a
    ///   downstream key's window, in time order, without repeats (none for a downstream
    ///   window wholly before the upstream's first partition).
    /// - [`PartitionMapping::All`] gives [`UpstreamPartitions::All`].
    pub fn upstream_keys(
        &self,
        downstream: Option<&PartitionsDefinition>,
        downstream_keys: &[&str],
        upstream: Option<&PartitionsDefinition>,
    ) -> Result<UpstreamPartitions, PartitionError> {
        let Some(upstream) = upstream else {
            return Ok(UpstreamPartitions::Unpartitioned);
        };
        let Some(downstream) = downstream else {
            if let Some(key) = downstream_keys.first() {
                return Err(PartitionError::InvalidKey {
                    key: (*key).to_owned(),
                    definition: "an unpartitioned asset".to_owned(),
                    expected: "it has no partitions, so pass no partition key".to_owned(),
                });
            }
            return Ok(UpstreamPartitions::All);
        };
        if downstream_keys.is_empty() {
            return Ok(UpstreamPartitions::All);
        }
        match self {
            PartitionMapping::All => {
                for key in downstream_keys {
                    downstream.validate_key(key)?;
                }
                Ok(UpstreamPartitions::All)
            }
            PartitionMapping::Identity => {
                let mut seen = HashSet::new();
                let mut keys = Vec::new();
                for key in downstream_keys {
                    downstream.validate_key(key)?;
                    upstream.validate_key(key)?;
                    if seen.insert(*key) {
                        keys.push((*key).to_owned());
                    }
                }
                Ok(UpstreamPartitions::Keys(keys))
            }
            PartitionMapping::TimeWindow => {
                for (side, def) in [("downstream", downstream), ("upstream", upstream)] {
                    if !def.is_time() {
                        return Err(PartitionError::Mapping(format!(
                            "a time-window mapping needs time partitions on both sides, but the {side} asset has {}; use the identity or all-partitions mapping",
                            def.describe()
                        )));
                    }
                }
                // Keys of one time definition sort in time order (fixed-width formats).
                let mut keys = BTreeSet::new();
                for key in downstream_keys {
                    if let Some(window) = downstream.window(key)? {
                        keys.extend(upstream.keys_overlapping(&window));
                    }
                }
                Ok(UpstreamPartitions::Keys(keys.into_iter().collect()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hourly() -> PartitionsDefinition {
        PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap()
    }

    fn daily() -> PartitionsDefinition {
        PartitionsDefinition::daily("2026-11-01", "UTC").unwrap()
    }

    fn err(r: Result<impl fmt::Debug, PartitionError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn window_overlap_contains_and_duration() {
        let a = TimeWindow::new(utc("2026-11-01T00:00:00Z"), utc("2026-11-01T02:00:00Z"));
        let b = TimeWindow::new(utc("2026-11-01T01:00:00Z"), utc("2026-11-01T03:00:00Z"));
        let c = TimeWindow::new(utc("2026-11-01T02:00:00Z"), utc("2026-11-01T03:00:00Z"));
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(
            !a.overlaps(&c),
            "half-open windows that touch do not overlap"
        );
        assert!(a.contains(a.start) && !a.contains(a.end));
        assert_eq!(a.duration(), TimeDelta::hours(2));
        assert_eq!(
            a.to_string(),
            "[2026-11-01T00:00:00Z, 2026-11-01T02:00:00Z)"
        );
    }

    #[test]
    fn keys_round_trip_through_windows() {
        let h = hourly();
        for key in ["2026-11-01-00:00", "2026-11-22-10:00", "2027-02-28-23:00"] {
            let window = h.window(key).unwrap().unwrap();
            assert_eq!(h.key_containing(window.start).as_deref(), Some(key));
            assert_eq!(
                h.key_containing(window.end - TimeDelta::seconds(1))
                    .as_deref(),
                Some(key)
            );
        }
        let d = daily();
        for key in ["2026-11-01", "2026-11-22", "2028-02-29"] {
            let window = d.window(key).unwrap().unwrap();
            assert_eq!(d.key_containing(window.start).as_deref(), Some(key));
        }
    }

    #[test]
    fn windows_in_utc() {
        assert_eq!(
            hourly().window("2026-11-22-10:00").unwrap(),
            Some(TimeWindow::new(
                utc("2026-11-22T10:00:00Z"),
                utc("2026-11-22T11:00:00Z")
            ))
        );
        assert_eq!(
            daily().window("2026-11-22").unwrap(),
            Some(TimeWindow::new(
                utc("2026-11-22T00:00:00Z"),
                utc("2026-11-23T00:00:00Z")
            ))
        );
    }

    #[test]
    fn windows_in_new_york_are_offset() {
        // November: EST, UTC-5.
        let h = PartitionsDefinition::hourly("2026-11-02", "America/New_York").unwrap();
        assert_eq!(
            h.window("2026-11-22-10:00").unwrap(),
            Some(TimeWindow::new(
                utc("2026-11-22T15:00:00Z"),
                utc("2026-11-22T16:00:00Z")
            ))
        );
        // July: EDT, UTC-4.
        let d = PartitionsDefinition::daily("2026-06-01", "America/New_York").unwrap();
        assert_eq!(
            d.window("2026-07-04").unwrap(),
            Some(TimeWindow::new(
                utc("2026-07-04T04:00:00Z"),
                utc("2026-07-05T04:00:00Z")
            ))
        );
        assert_eq!(
            d.key_containing(utc("2026-07-05T03:59:59Z")).as_deref(),
            Some("2026-07-04")
        );
        assert_eq!(
            d.describe(),
            "daily partitions from 2026-06-01 (America/New_York)"
        );
    }

    #[test]
    fn describe_each_kind() {
        assert_eq!(
            hourly().describe(),
            "hourly partitions from 2026-11-01-00:00 (UTC)"
        );
        assert_eq!(
            PartitionsDefinition::daily("2026-11-01", "Europe/Paris")
                .unwrap()
                .describe(),
            "daily partitions from 2026-11-01 (Europe/Paris)"
        );
        let s = PartitionsDefinition::static_keys(["a", "b", "c"]).unwrap();
        assert_eq!(s.describe(), "static partitions [a, b, c]");
        let many = PartitionsDefinition::static_keys((0..20).map(|i| format!("k{i}"))).unwrap();
        assert_eq!(
            many.describe(),
            "static partitions [k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, … 10 more]"
        );
    }

    #[test]
    fn a_range_of_24_hours() {
        let keys = hourly()
            .keys_in_range("2026-11-22-00:00", "2026-11-22-23:00")
            .unwrap();
        assert_eq!(keys.len(), 24);
        assert_eq!(keys[0], "2026-11-22-00:00");
        assert_eq!(keys[10], "2026-11-22-10:00");
        assert_eq!(keys[23], "2026-11-22-23:00");
        assert_eq!(
            hourly()
                .keys_in_range("2026-11-22-10:00", "2026-11-22-10:00")
                .unwrap(),
            ["2026-11-22-10:00"]
        );
    }

    #[test]
    fn bad_keys_say_what_was_expected() {
        let h = hourly();
        expect![[r#"`2026-11-22 10:00` is not a partition of hourly partitions from 2026-11-01-00:00 (UTC): hourly keys look like 2026-11-22-10:00"#]]
            .assert_eq(&err(h.validate_key("2026-11-22 10:00")));
        expect![[r#"`2026-10-31-23:00` is not a partition of hourly partitions from 2026-11-01-00:00 (UTC): it is before the first partition, 2026-11-01-00:00"#]]
            .assert_eq(&err(h.validate_key("2026-10-31-23:00")));
        expect![[r#"`2026-11-22-10:30` is not a partition of hourly partitions from 2026-11-01-00:00 (UTC): hourly partitions start on the hour; did you mean 2026-11-22-10:00?"#]]
            .assert_eq(&err(h.validate_key("2026-11-22-10:30")));
        expect![[r#"`2026-11-22` is not a partition of hourly partitions from 2026-11-01-00:00 (UTC): hourly keys look like 2026-11-22-10:00"#]]
            .assert_eq(&err(h.validate_key("2026-11-22")));
        // Not zero-padded.
        assert!(h.validate_key("2026-11-2-10:00").is_err());
        assert!(h.validate_key("2026-11-22-25:00").is_err());
        expect![[r#"`2026-11-22-10:00` is not a partition of daily partitions from 2026-11-01 (UTC): daily keys look like 2026-11-22"#]]
            .assert_eq(&err(daily().validate_key("2026-11-22-10:00")));
        assert!(daily().validate_key("2026-02-30").is_err());
    }

    /// Issue 14: a month 13 got the generic "keys look like" message.
    #[test]
    fn impossible_dates_say_which_part_is_wrong() {
        expect![[r#"`2026-13-01-00:00` is not a partition of hourly partitions from 2026-11-01-00:00 (UTC): month 13 does not exist (months are 01-12); hourly keys look like 2026-11-22-10:00"#]]
            .assert_eq(&err(hourly().validate_key("2026-13-01-00:00")));
        assert!(
            err(daily().validate_key("2026-02-30"))
                .contains("day 30 does not exist in 2026-02 (it has 28 days)")
        );
        assert!(err(daily().validate_key("2028-02-30")).contains("(it has 29 days)"));
        assert!(err(hourly().validate_key("2026-11-22-24:00")).contains("hour 24 does not exist"));
        assert!(
            err(hourly().validate_key("2026-11-22-10:60")).contains("minute 60 does not exist")
        );
        assert!(err(daily().validate_key("2026-00-10")).contains("month 00 does not exist"));
        // A long key comes back shortened.
        let long = "9".repeat(100_000);
        assert!(err(daily().validate_key(&long)).len() < 400);
    }

    /// Issue 14: keys in year 9999 were accepted.
    #[test]
    fn keys_stay_within_the_definitions_window() {
        expect![[r#"`9999-12-31-23:00` is not a partition of hourly partitions from 2026-11-01-00:00 (UTC): it is after the last partition the definition allows, 2126-10-31-23:00 (partitions run 100 years from their start)"#]]
            .assert_eq(&err(hourly().validate_key("9999-12-31-23:00")));
        assert!(hourly().validate_key("2126-10-31-23:00").is_ok());
        assert!(daily().validate_key("2126-11-01").is_err());
        assert!(daily().validate_key("2126-10-31").is_ok());
    }

    /// Issue 14: a range to year 9999 grew without bound.
    #[test]
    #[allow(clippy::disallowed_methods)] // the test's own stopwatch
    fn ranges_are_bounded() {
        let started = std::time::Instant::now();
        let e = err(hourly().keys_in_range("2026-11-01-00:00", "2126-10-31-23:00"));
        assert!(
            e.contains("more than 100000 partitions") && e.contains("max_range_partitions"),
            "{e}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let e = err(hourly().keys_in_range_at_most("2026-11-01-00:00", "2026-11-01-03:00", 3));
        assert!(e.contains("more than 3 partitions"), "{e}");
        assert_eq!(
            hourly()
                .keys_in_range_at_most("2026-11-01-00:00", "2026-11-01-02:00", 3)
                .unwrap()
                .len(),
            3
        );
        let s = PartitionsDefinition::static_keys(["a", "b", "c"]).unwrap();
        assert!(s.keys_in_range_at_most("a", "c", 2).is_err());
        assert_eq!(s.keys_in_range_at_most("a", "b", 2).unwrap(), ["a", "b"]);
    }

    #[test]
    fn bad_ranges_are_refused() {
        expect![[r#"invalid partition range `2026-11-23` to `2026-11-22`: `2026-11-23` comes after `2026-11-22`; put the earlier key first"#]]
            .assert_eq(&err(daily().keys_in_range("2026-11-23", "2026-11-22")));
        expect![[r#"`2026-10-01` is not a partition of daily partitions from 2026-11-01 (UTC): it is before the first partition, 2026-11-01"#]]
            .assert_eq(&err(daily().keys_in_range("2026-10-01", "2026-11-22")));
        assert!(daily().keys_in_range("2026-11-01", "tomorrow").is_err());
    }

    #[test]
    fn bad_definitions_are_refused() {
        expect!["invalid partitions definition: unknown timezone `Europe/Pari`: expected an IANA name like `UTC` or `Europe/Paris`; did you mean `Europe/Paris`?"]
            .assert_eq(&err(PartitionsDefinition::hourly("2026-11-01", "Europe/Pari")));
        expect!["invalid partitions definition: unknown timezone `utc`: expected an IANA name like `UTC` or `Europe/Paris`; did you mean `UTC`?"]
            .assert_eq(&err(PartitionsDefinition::daily("2026-11-01", "utc")));
        expect!["invalid partitions definition: start `November 1st` is not a date: expected `2026-11-01` or `2026-11-01-00:00`"]
            .assert_eq(&err(PartitionsDefinition::daily("November 1st", "UTC")));
        expect!["invalid partitions definition: daily partitions start at midnight, not at `2026-11-01-05:00`; try `2026-11-01`"]
            .assert_eq(&err(PartitionsDefinition::daily("2026-11-01-05:00", "UTC")));
        expect!["invalid partitions definition: hourly partitions start on the hour, not at `2026-11-01-05:30`; try `2026-11-01-05:00`"]
            .assert_eq(&err(PartitionsDefinition::hourly("2026-11-01-05:30", "UTC")));
        expect!["invalid partitions definition: start `2026-03-29-02:00` does not exist in Europe/Paris (the clocks skip it for daylight saving time)"]
            .assert_eq(&err(PartitionsDefinition::hourly("2026-03-29-02:00", "Europe/Paris")));
        // A date-only start means midnight.
        assert_eq!(
            PartitionsDefinition::hourly("2026-11-01", "UTC").unwrap(),
            hourly()
        );
    }

    #[test]
    fn hours_map_onto_days_and_back() {
        let (h, d) = (hourly(), daily());
        assert_eq!(
            PartitionMapping::default_for(Some(&d), Some(&h)),
            PartitionMapping::TimeWindow
        );
        let UpstreamPartitions::Keys(hours) = PartitionMapping::TimeWindow
            .upstream_keys(Some(&d), &["2026-11-22"], Some(&h))
            .unwrap()
        else {
            panic!("expected keys")
        };
        assert_eq!(hours.len(), 24);
        assert_eq!(hours.first().unwrap(), "2026-11-22-00:00");
        assert_eq!(hours.last().unwrap(), "2026-11-22-23:00");

        assert_eq!(
            PartitionMapping::TimeWindow
                .upstream_keys(Some(&h), &["2026-11-22-10:00"], Some(&d))
                .unwrap(),
            UpstreamPartitions::Keys(vec!["2026-11-22".to_owned()])
        );
        // Several hours of one day need that day once; hours in any order give days in order.
        assert_eq!(
            PartitionMapping::TimeWindow
                .upstream_keys(
                    Some(&h),
                    &["2026-11-23-01:00", "2026-11-22-10:00", "2026-11-22-11:00"],
                    Some(&d)
                )
                .unwrap(),
            UpstreamPartitions::Keys(vec!["2026-11-22".to_owned(), "2026-11-23".to_owned()])
        );
        // Across timezones: a November day in Paris runs from 23:00 UTC the day before.
        let paris = PartitionsDefinition::daily("2026-11-01", "Europe/Paris").unwrap();
        let UpstreamPartitions::Keys(hours) = PartitionMapping::TimeWindow
            .upstream_keys(Some(&paris), &["2026-11-22"], Some(&h))
            .unwrap()
        else {
            panic!("expected keys")
        };
        assert_eq!(hours.len(), 24);
        assert_eq!(hours.first().unwrap(), "2026-11-21-23:00");
    }

    #[test]
    fn mapping_rules() {
        let (h, d) = (hourly(), daily());
        let s = PartitionsDefinition::static_keys(["a", "b", "c"]).unwrap();
        let t = PartitionsDefinition::static_keys(["a", "b"]).unwrap();
        assert_eq!(
            PartitionMapping::default_for(Some(&s), Some(&t)),
            PartitionMapping::Identity
        );
        assert_eq!(
            PartitionMapping::default_for(Some(&s), Some(&d)),
            PartitionMapping::All
        );
        assert_eq!(
            PartitionMapping::default_for(None, Some(&d)),
            PartitionMapping::All
        );
        for mapping in [
            PartitionMapping::Identity,
            PartitionMapping::TimeWindow,
            PartitionMapping::All,
        ] {
            assert_eq!(
                mapping
                    .upstream_keys(Some(&d), &["2026-11-22"], None)
                    .unwrap(),
                UpstreamPartitions::Unpartitioned
            );
            assert_eq!(
                mapping.upstream_keys(None, &[], Some(&h)).unwrap(),
                UpstreamPartitions::All
            );
        }
        assert_eq!(
            PartitionMapping::Identity
                .upstream_keys(Some(&s), &["b", "a", "b"], Some(&t))
                .unwrap(),
            UpstreamPartitions::Keys(vec!["b".to_owned(), "a".to_owned()])
        );
        expect!["`c` is not a partition of static partitions [a, b]: no such key"].assert_eq(&err(
            PartitionMapping::Identity.upstream_keys(Some(&s), &["c"], Some(&t)),
        ));
        assert_eq!(
            PartitionMapping::All
                .upstream_keys(Some(&s), &["c"], Some(&t))
                .unwrap(),
            UpstreamPartitions::All
        );
        expect!["invalid partition mapping: a time-window mapping needs time partitions on both sides, but the downstream asset has static partitions [a, b, c]; use the identity or all-partitions mapping"]
            .assert_eq(&err(PartitionMapping::TimeWindow.upstream_keys(Some(&s), &["a"], Some(&d))));
        expect!["`2026-11-22` is not a partition of an unpartitioned asset: it has no partitions, so pass no partition key"]
            .assert_eq(&err(PartitionMapping::All.upstream_keys(None, &["2026-11-22"], Some(&d))));
        // A downstream window wholly before the upstream's first partition needs nothing.
        let later = PartitionsDefinition::daily("2026-12-01", "UTC").unwrap();
        assert_eq!(
            PartitionMapping::TimeWindow
                .upstream_keys(Some(&d), &["2026-11-22"], Some(&later))
                .unwrap(),
            UpstreamPartitions::Keys(vec![])
        );
    }

    #[test]
    fn spring_forward_in_paris_skips_an_hour() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST.
        let h = PartitionsDefinition::hourly("2026-03-01", "Europe/Paris").unwrap();
        let d = PartitionsDefinition::daily("2026-03-01", "Europe/Paris").unwrap();
        let day = d.window("2026-03-29").unwrap().unwrap();
        assert_eq!(day.start, utc("2026-03-28T23:00:00Z"));
        assert_eq!(day.duration(), TimeDelta::hours(23));
        let hours = h.keys_overlapping(&day);
        assert_eq!(hours.len(), 23);
        assert!(hours.contains(&"2026-03-29-01:00".to_owned()));
        assert!(!hours.contains(&"2026-03-29-02:00".to_owned()));
        assert!(hours.contains(&"2026-03-29-03:00".to_owned()));
        assert_eq!(
            h.window("2026-03-29-01:00").unwrap(),
            Some(TimeWindow::new(
                utc("2026-03-29T00:00:00Z"),
                utc("2026-03-29T01:00:00Z")
            ))
        );
        expect!["`2026-03-29-02:00` is not a partition of hourly partitions from 2026-03-01-00:00 (Europe/Paris): the clocks skip that hour in Europe/Paris (daylight saving time), so it has no partition"]
            .assert_eq(&err(h.validate_key("2026-03-29-02:00")));
        assert_eq!(
            h.keys_in_range("2026-03-29-00:00", "2026-03-29-23:00")
                .unwrap()
                .len(),
            23
        );
    }

    #[test]
    fn fall_back_in_paris_takes_the_earliest_instant() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:00-03:00 happens twice.
        let h = PartitionsDefinition::hourly("2026-10-01", "Europe/Paris").unwrap();
        let d = PartitionsDefinition::daily("2026-10-01", "Europe/Paris").unwrap();
        let day = d.window("2026-10-25").unwrap().unwrap();
        assert_eq!(day.duration(), TimeDelta::hours(25));
        assert_eq!(h.keys_overlapping(&day).len(), 24);
        let two = h.window("2026-10-25-02:00").unwrap().unwrap();
        assert_eq!(two.start, utc("2026-10-25T00:00:00Z"));
        assert_eq!(two.end, utc("2026-10-25T02:00:00Z"));
        // The second 02:30 is still in the 02:00 partition.
        assert_eq!(
            h.key_containing(utc("2026-10-25T01:30:00Z")).as_deref(),
            Some("2026-10-25-02:00")
        );
        assert_eq!(
            h.key_containing(utc("2026-10-25T02:00:00Z")).as_deref(),
            Some("2026-10-25-03:00")
        );
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_when_the_clocks_resume() {
        // Santiago springs forward at midnight: 2026-09-06 00:00 becomes 01:00.
        let d = PartitionsDefinition::daily("2026-09-01", "America/Santiago").unwrap();
        let day = d.window("2026-09-06").unwrap().unwrap();
        assert_eq!(day.start, utc("2026-09-06T04:00:00Z"));
        assert_eq!(day.duration(), TimeDelta::hours(23));
        assert_eq!(d.window("2026-09-05").unwrap().unwrap().end, day.start);
    }

    #[test]
    fn the_last_complete_hour() {
        let h = hourly();
        assert_eq!(
            h.last_complete_key(utc("2026-11-22T10:10:00Z")).as_deref(),
            Some("2026-11-22-09:00")
        );
        assert_eq!(
            h.last_complete_key(utc("2026-11-22T10:00:00Z")).as_deref(),
            Some("2026-11-22-09:00")
        );
        assert_eq!(h.last_complete_key(utc("2026-11-01T00:30:00Z")), None);
        assert_eq!(h.last_complete_key(utc("2026-10-01T00:00:00Z")), None);
        assert_eq!(
            h.last_complete_key(utc("2026-11-01T01:00:00Z")).as_deref(),
            Some("2026-11-01-00:00")
        );
        assert_eq!(
            daily()
                .last_complete_key(utc("2026-11-22T00:10:00Z"))
                .as_deref(),
            Some("2026-11-21")
        );
    }

    #[test]
    fn keys_until_now_and_containing() {
        let h = hourly();
        let keys = h.keys_until(utc("2026-11-02T00:10:00Z"));
        assert_eq!(keys.len(), 24);
        assert_eq!(keys.last().unwrap(), "2026-11-01-23:00");
        assert!(h.keys_until(utc("2026-11-01T00:59:00Z")).is_empty());
        assert_eq!(h.key_containing(utc("2026-10-31T23:59:59Z")), None);
        assert_eq!(
            h.key_containing(utc("2026-11-22T10:59:59Z")).as_deref(),
            Some("2026-11-22-10:00")
        );
    }

    #[test]
    fn keys_overlapping_is_clipped_to_the_start() {
        let h = hourly();
        let window = TimeWindow::new(utc("2026-10-31T22:00:00Z"), utc("2026-11-01T02:30:00Z"));
        assert_eq!(
            h.keys_overlapping(&window),
            ["2026-11-01-00:00", "2026-11-01-01:00", "2026-11-01-02:00"]
        );
        let before = TimeWindow::new(utc("2026-10-30T00:00:00Z"), utc("2026-11-01T00:00:00Z"));
        assert!(h.keys_overlapping(&before).is_empty());
        let empty = TimeWindow::new(window.start, window.start);
        assert!(h.keys_overlapping(&empty).is_empty());
    }

    #[test]
    fn static_keys() {
        let s = PartitionsDefinition::static_keys(["us", "eu", "apac"]).unwrap();
        assert!(!s.is_time());
        assert_eq!(s.cadence(), None);
        assert_eq!(hourly().cadence(), Some(Cadence::Hourly));
        s.validate_key("eu").unwrap();
        expect!["`apca` is not a partition of static partitions [us, eu, apac]: no such key; did you mean `apac`?"]
            .assert_eq(&err(s.validate_key("apca")));
        assert_eq!(s.window("eu").unwrap(), None);
        assert!(s.window("mars").is_err());
        assert_eq!(s.keys_in_range("eu", "apac").unwrap(), ["eu", "apac"]);
        assert!(s.keys_in_range("apac", "us").is_err());
        assert_eq!(
            s.keys_until(utc("2026-11-01T00:00:00Z")),
            ["us", "eu", "apac"]
        );
        assert_eq!(s.key_containing(utc("2026-11-01T00:00:00Z")), None);
        assert_eq!(s.last_complete_key(utc("2026-11-01T00:00:00Z")), None);
        let all = TimeWindow::new(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        assert!(s.keys_overlapping(&all).is_empty());

        expect!["invalid partitions definition: static partitions need at least one key"]
            .assert_eq(&err(
                PartitionsDefinition::static_keys(Vec::<String>::new()),
            ));
        expect!["invalid partitions definition: static partition key `a,b` contains `,`; keys may not contain `,`, `[` or `]`"]
            .assert_eq(&err(PartitionsDefinition::static_keys(["a,b"])));
        expect!["invalid partitions definition: static partition key `a` is listed twice"]
            .assert_eq(&err(PartitionsDefinition::static_keys(["a", "b", "a"])));
        expect!["invalid partitions definition: static partition keys must not be empty"]
            .assert_eq(&err(PartitionsDefinition::static_keys(["a", ""])));
    }
}
