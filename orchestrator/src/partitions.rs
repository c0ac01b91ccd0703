//! Partitions: hourly and daily time windows with a start and a timezone, keys in Dagster's
//! formats (`2026-11-22-10:00`, `2026-11-22`), static key sets, ranges, and the mappings
//! between an asset's partitions and its upstream's (a daily partition depends on its 24 hours).
//!
//! Pure: no IO, no clock (callers pass `now`).

use chrono::{DateTime, Utc};

/// A half-open interval of time, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The length of a time partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cadence {
    Hourly,
    Daily,
}

/// Time-window partitions: one partition per hour or per day of local time in `timezone`,
/// from `start` on.
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
}
