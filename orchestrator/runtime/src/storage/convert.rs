//! Values as stored and back: times are microseconds since the epoch (UTC), run ids and asset
//! keys are text, structured values are JSON, an unpartitioned asset has partition key `''`
//! in the derived tables. A value that does not read back is [`StorageError::Corrupt`].

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::types::Json;

use super::{Result, StorageError};
use crate::asset::AssetKey;
use crate::run::{RunId, RunStatus};

/// Most keys one `IN (...)` list holds, far below both backends' parameter limits.
pub(super) const IN_CHUNK: usize = 1000;

/// How many rows of `columns` bind parameters fit in one statement.
pub(super) fn rows_per_statement(max_params: usize, columns: usize) -> usize {
    (max_params / columns).max(1)
}

pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A duration in microseconds, saturating.
pub(super) fn duration_micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

pub(super) fn time(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StorageError::Corrupt(format!("timestamp {us}µs is out of range")))
}

pub(super) fn opt_time(us: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    us.map(time).transpose()
}

pub(super) fn run_id(s: &str) -> Result<RunId> {
    RunId::parse(s).map_err(|e| StorageError::Corrupt(format!("bad run id `{s}`: {e}")))
}

pub(super) fn opt_run_id(s: Option<String>) -> Result<Option<RunId>> {
    s.as_deref().map(run_id).transpose()
}

pub(super) fn asset_key(s: &str) -> Result<AssetKey> {
    AssetKey::parse(s).map_err(|e| StorageError::Corrupt(format!("bad asset key `{s}`: {e}")))
}

pub(super) fn run_status(s: &str) -> Result<RunStatus> {
    RunStatus::parse(s).ok_or_else(|| StorageError::Corrupt(format!("unknown run status `{s}`")))
}

pub(super) fn json<T: DeserializeOwned>(value: Json<serde_json::Value>, what: &str) -> Result<T> {
    serde_json::from_value(value.0).map_err(|e| StorageError::Corrupt(format!("bad {what}: {e}")))
}

/// A count as stored (`COUNT(*)` is a signed integer).
pub(super) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// `(status, count)` rows, by status.
pub(super) fn status_counts(rows: Vec<(String, i64)>) -> Result<Vec<(RunStatus, u64)>> {
    let mut counts = rows
        .into_iter()
        .map(|(status, n)| Ok((run_status(&status)?, count(n))))
        .collect::<Result<Vec<_>>>()?;
    counts.sort_unstable();
    Ok(counts)
}

/// The partition key as stored in derived tables: `''` for an unpartitioned asset.
pub(super) fn db_partition(partition: Option<&str>) -> &str {
    partition.unwrap_or("")
}

pub(super) fn partition_from_db(partition: String) -> Option<String> {
    (!partition.is_empty()).then_some(partition)
}

/// `'A', 'B'`: an `IN` list of fixed vocabulary (statuses, event kinds). These strings are
/// compile-time constants of `[A-Z_]`, so inlining them is safe and keeps statements cacheable.
pub(super) fn literal_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|s| {
            debug_assert!(s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
            format!("'{s}'")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sorted and without duplicates, as text.
pub(super) fn unique_keys(keys: &[AssetKey]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}
