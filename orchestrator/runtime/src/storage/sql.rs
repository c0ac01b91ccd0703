//! SQL shared by both backends: the rows as read, their conversion to records, what an append
//! derives, and [`impl_storage!`], which writes the [`Storage`](super::Storage) methods once
//! for a backend's pool type.
//!
//! Both backends run the same SQL text: sqlx-sqlite accepts `$1` placeholders, and `ON
//! CONFLICT ... DO UPDATE`, `RETURNING` and window functions work in both. A backend provides
//! the few things that differ as inherent items used by the macro:
//!
//! - `async fn begin_write(&self) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error>`
//!   (SQLite takes the write lock up front with `BEGIN IMMEDIATE`),
//! - `async fn allocate_ids(conn, table, n) -> Result<Vec<i64>>`: `n` fresh ids of `table`,
//!   ascending, called inside the write transaction, so that appended rows get ids in append
//!   order whatever the database does with a multi-row insert,
//! - `const MAX_PARAMS: usize`: the most bind parameters one statement may hold,
//! - `const SKIP_LOCKED: &str` and `const FOR_UPDATE: &str`: the row-locking clauses that end a
//!   `SELECT` inside a write transaction (Postgres locks rows; SQLite's `BEGIN IMMEDIATE`
//!   already holds the whole database, so they are empty),
//! - `async fn lock_queue(&self, conn)`: serializes claimers that check a concurrency limit
//!   (Postgres: a transaction-scoped advisory lock; SQLite: nothing, `BEGIN IMMEDIATE` does),
//! - `async fn lock_pool(&self, conn, pool)`: likewise serializes the acquirers of one pool's
//!   slots,
//! - `async fn queue_changed(&self, conn)`, called inside a write transaction that queued
//!   runs, and `fn queue_committed(&self)`, called after it commits: together they wake the
//!   queue's waiters (Postgres: `pg_notify` in the transaction, delivered on commit; SQLite:
//!   the in-process `Notify` after the commit),
//! - `async fn send_queue_notification(&self)` and `async fn wait_queue_notification(&self,
//!   timeout)`, behind `notify_queue` and `wait_for_queue`.
//!
//! Times are microseconds since the epoch; an unpartitioned asset has partition key `''` in
//! the derived tables.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::types::Json;

use super::{
    AssetPartitionRecord, Backfill, CheckRecord, DaemonHeartbeat, FailureRecord,
    FreshnessViolation, Lease, MaterializationRecord, Result, ScheduleState, StorageError,
    StreamWorker, Tick, TickStatus,
};
use crate::asset::AssetKey;
use crate::event::{
    CheckEvaluation, Event, EventBody, EventKind, LogLevel, LogLine, LogStream, StoredEvent,
};
use crate::metadata::Metadata;
use crate::run::{Run, RunId, RunStatus};

/// The columns of `runs` that make a [`Run`], in [`RunRow`]'s order.
macro_rules! run_columns {
    () => {
        "id, run_id, status, selection, asset_keys, partition_key, partition_key_end, \
         step_subset, tags, parent_run_id, root_run_id, created_at, started_at, ended_at, \
         updated_at"
    };
}
pub(super) use run_columns;

/// The columns of `runs` that make a [`Lease`], in [`LeaseRow`]'s order.
macro_rules! lease_columns {
    () => {
        concat!(
            $crate::storage::sql::run_columns!(),
            ", attempt, lease_owner, lease_expires_at"
        )
    };
}
pub(super) use lease_columns;

/// The columns of `schedule_ticks` that make a [`Tick`], in [`TickRow`]'s order.
macro_rules! tick_columns {
    () => {
        "schedule, tick_time, status, run_id, message, created_at"
    };
}
pub(super) use tick_columns;

/// The columns of `backfills` that make a [`Backfill`], in [`BackfillRow`]'s order.
macro_rules! backfill_columns {
    () => {
        "id, selection, partition_from, partition_to, run_count, created_at"
    };
}
pub(super) use backfill_columns;

/// The columns of `freshness_violations` that make a [`FreshnessViolation`], in
/// [`ViolationRow`]'s order.
macro_rules! violation_columns {
    () => {
        "asset_key, detected_at, latest_partition, latest_materialized_at, max_lag_secs, \
         message, notified_at, resolved_at"
    };
}
pub(super) use violation_columns;

/// The columns of `event_log` that make a [`StoredEvent`], in [`EventRow`]'s order.
macro_rules! event_columns {
    () => {
        "id, run_id, step_key, asset_key, partition_key, event_type, timestamp, body"
    };
}
pub(super) use event_columns;

/// The columns of `asset_partitions` that make an [`AssetPartitionRecord`].
macro_rules! partition_columns {
    () => {
        "asset_key, partition_key, mat_run_id, mat_event_id, mat_timestamp, mat_metadata, \
         mat_code_version, failure_run_id, failure_timestamp, failure_message"
    };
}
pub(super) use partition_columns;

/// Most keys one `IN (...)` list holds, far below both backends' parameter limits.
pub(super) const IN_CHUNK: usize = 1000;

/// How many rows of `columns` bind parameters fit in one statement.
pub(super) fn rows_per_statement(max_params: usize, columns: usize) -> usize {
    (max_params / columns).max(1)
}

pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StorageError::Corrupt(format!("timestamp {us}µs is out of range")))
}

fn opt_time(us: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    us.map(time).transpose()
}

fn run_id(s: &str) -> Result<RunId> {
    RunId::parse(s).map_err(|e| StorageError::Corrupt(format!("bad run id `{s}`: {e}")))
}

fn opt_run_id(s: Option<String>) -> Result<Option<RunId>> {
    s.as_deref().map(run_id).transpose()
}

fn asset_key(s: &str) -> Result<AssetKey> {
    AssetKey::parse(s).map_err(|e| StorageError::Corrupt(format!("bad asset key `{s}`: {e}")))
}

fn json<T: DeserializeOwned>(value: Json<serde_json::Value>, what: &str) -> Result<T> {
    serde_json::from_value(value.0).map_err(|e| StorageError::Corrupt(format!("bad {what}: {e}")))
}

/// The partition key as stored in derived tables: `''` for an unpartitioned asset.
pub(super) fn db_partition(partition: Option<&str>) -> &str {
    partition.unwrap_or("")
}

fn partition_from_db(partition: String) -> Option<String> {
    (!partition.is_empty()).then_some(partition)
}

/// The statuses of a run that a worker holds: claimed and not yet over. Only these carry a
/// lease that can be renewed or expire.
pub(super) const IN_FLIGHT: [RunStatus; 3] = [
    RunStatus::Starting,
    RunStatus::Started,
    RunStatus::Canceling,
];

/// `'STARTING', 'STARTED', 'CANCELING'`, for `status IN (...)`, optionally only the in-flight
/// statuses that may become `to`.
pub(super) fn in_flight_list(to: Option<RunStatus>) -> String {
    literal_list(
        IN_FLIGHT
            .into_iter()
            .filter(|s| to.is_none_or(|to| s.can_become(to)))
            .map(RunStatus::as_str),
    )
}

/// A duration in microseconds, saturating.
pub(super) fn duration_micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
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

/// A `runs` row.
#[derive(sqlx::FromRow)]
pub(super) struct RunRow {
    id: i64,
    run_id: String,
    status: String,
    selection: String,
    asset_keys: Json<serde_json::Value>,
    partition_key: Option<String>,
    partition_key_end: Option<String>,
    step_subset: Option<Json<serde_json::Value>>,
    tags: Json<serde_json::Value>,
    parent_run_id: Option<String>,
    root_run_id: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    updated_at: i64,
}

impl RunRow {
    pub(super) fn into_run(self) -> Result<Run> {
        let keys: Vec<String> = json(self.asset_keys, "run asset keys")?;
        Ok(Run {
            id: self.id,
            run_id: run_id(&self.run_id)?,
            status: RunStatus::parse(&self.status).ok_or_else(|| {
                StorageError::Corrupt(format!("unknown run status `{}`", self.status))
            })?,
            selection: self.selection,
            asset_keys: keys.iter().map(|k| asset_key(k)).collect::<Result<_>>()?,
            partition_key: self.partition_key,
            partition_key_end: self.partition_key_end,
            step_subset: self
                .step_subset
                .map(|v| json(v, "run step subset"))
                .transpose()?,
            tags: json::<BTreeMap<String, String>>(self.tags, "run tags")?,
            parent_run_id: opt_run_id(self.parent_run_id)?,
            root_run_id: opt_run_id(self.root_run_id)?,
            created_at: time(self.created_at)?,
            started_at: opt_time(self.started_at)?,
            ended_at: opt_time(self.ended_at)?,
            updated_at: time(self.updated_at)?,
        })
    }
}

/// A `runs` row with its lease.
#[derive(sqlx::FromRow)]
pub(super) struct LeaseRow {
    #[sqlx(flatten)]
    run: RunRow,
    attempt: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
}

impl LeaseRow {
    pub(super) fn into_lease(self) -> Result<Lease> {
        let run = self.run.into_run()?;
        let expires_at = self.lease_expires_at.ok_or_else(|| {
            StorageError::Corrupt(format!("run {} is leased without an expiry", run.run_id))
        })?;
        Ok(Lease {
            run,
            attempt: self.attempt,
            owner: self.lease_owner.unwrap_or_default(),
            expires_at: time(expires_at)?,
        })
    }
}

/// A `schedules` row.
#[derive(sqlx::FromRow)]
pub(super) struct ScheduleRow {
    name: String,
    enabled: bool,
    updated_at: i64,
}

impl ScheduleRow {
    pub(super) fn into_state(self) -> Result<ScheduleState> {
        Ok(ScheduleState {
            name: self.name,
            enabled: self.enabled,
            updated_at: time(self.updated_at)?,
        })
    }
}

/// A `schedule_ticks` row.
#[derive(sqlx::FromRow)]
pub(super) struct TickRow {
    schedule: String,
    tick_time: i64,
    status: String,
    run_id: Option<String>,
    message: Option<String>,
    created_at: i64,
}

impl TickRow {
    pub(super) fn into_tick(self) -> Result<Tick> {
        let status = [
            TickStatus::Requested,
            TickStatus::Skipped,
            TickStatus::Notified,
        ]
        .into_iter()
        .find(|s| s.as_str() == self.status)
        .ok_or_else(|| StorageError::Corrupt(format!("unknown tick status `{}`", self.status)))?;
        Ok(Tick {
            schedule: self.schedule,
            tick_time: time(self.tick_time)?,
            status,
            run_id: opt_run_id(self.run_id)?,
            message: self.message,
            created_at: time(self.created_at)?,
        })
    }
}

/// A `backfills` row.
#[derive(sqlx::FromRow)]
pub(super) struct BackfillRow {
    id: String,
    selection: String,
    partition_from: String,
    partition_to: String,
    run_count: i64,
    created_at: i64,
}

impl BackfillRow {
    pub(super) fn into_backfill(self) -> Result<Backfill> {
        Ok(Backfill {
            run_count: u32::try_from(self.run_count).map_err(|_| {
                StorageError::Corrupt(format!("backfill {} has {} runs", self.id, self.run_count))
            })?,
            id: self.id,
            selection: self.selection,
            partition_from: self.partition_from,
            partition_to: self.partition_to,
            created_at: time(self.created_at)?,
        })
    }
}

/// A `daemon_heartbeats` row.
#[derive(sqlx::FromRow)]
pub(super) struct HeartbeatRow {
    daemon_id: String,
    started_at: i64,
    heartbeat_at: i64,
    info: Json<serde_json::Value>,
}

impl HeartbeatRow {
    pub(super) fn into_heartbeat(self) -> Result<DaemonHeartbeat> {
        Ok(DaemonHeartbeat {
            daemon_id: self.daemon_id,
            started_at: time(self.started_at)?,
            heartbeat_at: time(self.heartbeat_at)?,
            info: self.info.0,
        })
    }
}

/// A `stream_workers` row.
#[derive(sqlx::FromRow)]
pub(super) struct StreamWorkerRow {
    worker_id: String,
    group_id: String,
    topics: Json<serde_json::Value>,
    partitions: Json<serde_json::Value>,
    lag: Option<i64>,
    events_in: i64,
    events_written: i64,
    dead_lettered: i64,
    events_per_sec: f64,
    last_file: Option<String>,
    started_at: i64,
    heartbeat_at: i64,
}

impl StreamWorkerRow {
    pub(super) fn into_worker(self) -> Result<StreamWorker> {
        Ok(StreamWorker {
            worker_id: self.worker_id,
            group_id: self.group_id,
            topics: json(self.topics, "stream worker topics")?,
            partitions: json(self.partitions, "stream worker partitions")?,
            lag: self.lag,
            events_in: self.events_in,
            events_written: self.events_written,
            dead_lettered: self.dead_lettered,
            events_per_sec: self.events_per_sec,
            last_file: self.last_file,
            started_at: time(self.started_at)?,
            heartbeat_at: time(self.heartbeat_at)?,
        })
    }
}

/// A `freshness_violations` row.
#[derive(sqlx::FromRow)]
pub(super) struct ViolationRow {
    asset_key: String,
    detected_at: i64,
    latest_partition: Option<String>,
    latest_materialized_at: Option<i64>,
    max_lag_secs: i64,
    message: String,
    notified_at: Option<i64>,
    resolved_at: Option<i64>,
}

impl ViolationRow {
    pub(super) fn into_violation(self) -> Result<FreshnessViolation> {
        Ok(FreshnessViolation {
            asset_key: asset_key(&self.asset_key)?,
            detected_at: time(self.detected_at)?,
            latest_partition: self.latest_partition,
            latest_materialized_at: opt_time(self.latest_materialized_at)?,
            max_lag_secs: self.max_lag_secs,
            message: self.message,
            notified_at: opt_time(self.notified_at)?,
            resolved_at: opt_time(self.resolved_at)?,
        })
    }
}

/// Violations by asset key, independently of the database's collation.
pub(super) fn violations(rows: Vec<ViolationRow>) -> Result<Vec<FreshnessViolation>> {
    let mut violations = rows
        .into_iter()
        .map(ViolationRow::into_violation)
        .collect::<Result<Vec<_>>>()?;
    violations.sort_by(|a, b| a.asset_key.cmp(&b.asset_key));
    Ok(violations)
}

/// Who holds the pool slots this process takes: `host:pid`, for people reading `pool_slots`.
pub(super) fn slot_owner() -> &'static str {
    static OWNER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host}:{}", std::process::id())
    });
    &OWNER
}

/// `(pool, count)` rows of `pool_usage`, by pool name whatever the database's collation.
pub(super) fn pool_counts(rows: Vec<(String, i64)>) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = rows
        .into_iter()
        .map(|(pool, n)| (pool, u64::try_from(n).unwrap_or(0)))
        .collect();
    counts.sort_unstable();
    counts
}

/// A `(status, count)` row of `count_runs_by_status`.
pub(super) fn status_counts(rows: Vec<(String, i64)>) -> Result<Vec<(RunStatus, u64)>> {
    let mut counts = rows
        .into_iter()
        .map(|(status, n)| {
            let status = RunStatus::parse(&status)
                .ok_or_else(|| StorageError::Corrupt(format!("unknown run status `{status}`")))?;
            Ok((status, u64::try_from(n).unwrap_or(0)))
        })
        .collect::<Result<Vec<_>>>()?;
    counts.sort_unstable();
    Ok(counts)
}

/// An `event_log` row.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    id: i64,
    run_id: String,
    step_key: Option<String>,
    asset_key: Option<String>,
    partition_key: Option<String>,
    event_type: String,
    timestamp: i64,
    body: Json<serde_json::Value>,
}

impl EventRow {
    pub(super) fn into_event(self) -> Result<StoredEvent> {
        let kind = EventKind::parse(&self.event_type).ok_or_else(|| {
            StorageError::Corrupt(format!(
                "event {} has unknown type `{}`",
                self.id, self.event_type
            ))
        })?;
        let body: EventBody = serde_json::from_value(self.body.0).map_err(|e| {
            StorageError::Corrupt(format!("event {} has an unreadable body: {e}", self.id))
        })?;
        Ok(StoredEvent {
            id: self.id,
            event: Event {
                run_id: run_id(&self.run_id)?,
                step_key: self.step_key,
                asset_key: self.asset_key.as_deref().map(asset_key).transpose()?,
                partition_key: self.partition_key,
                kind,
                timestamp: time(self.timestamp)?,
                body,
            },
        })
    }
}

/// A `step_logs` row.
#[derive(sqlx::FromRow)]
pub(super) struct LogRow {
    run_id: String,
    step_key: String,
    stream: String,
    level: String,
    timestamp: i64,
    message: String,
}

impl LogRow {
    pub(super) fn into_line(self) -> Result<LogLine> {
        Ok(LogLine {
            run_id: run_id(&self.run_id)?,
            step_key: self.step_key,
            stream: LogStream::parse(&self.stream).ok_or_else(|| {
                StorageError::Corrupt(format!("unknown log stream `{}`", self.stream))
            })?,
            level: LogLevel::parse(&self.level).ok_or_else(|| {
                StorageError::Corrupt(format!("unknown log level `{}`", self.level))
            })?,
            timestamp: time(self.timestamp)?,
            message: self.message,
        })
    }
}

/// An `asset_partitions` row.
#[derive(sqlx::FromRow)]
pub(super) struct PartitionRow {
    asset_key: String,
    partition_key: String,
    mat_run_id: Option<String>,
    mat_event_id: Option<i64>,
    mat_timestamp: Option<i64>,
    mat_metadata: Option<Json<serde_json::Value>>,
    mat_code_version: Option<String>,
    failure_run_id: Option<String>,
    failure_timestamp: Option<i64>,
    failure_message: Option<String>,
}

impl PartitionRow {
    pub(super) fn into_record(self) -> Result<AssetPartitionRecord> {
        let materialization = match (self.mat_run_id, self.mat_event_id, self.mat_timestamp) {
            (Some(run), Some(event_id), Some(at)) => Some(MaterializationRecord {
                run_id: run_id(&run)?,
                event_id,
                timestamp: time(at)?,
                metadata: match self.mat_metadata {
                    Some(m) => json(m, "materialization metadata")?,
                    None => Metadata::default(),
                },
                code_version: self.mat_code_version,
            }),
            _ => None,
        };
        let last_failure = match (self.failure_run_id, self.failure_timestamp) {
            (Some(run), Some(at)) => Some(FailureRecord {
                run_id: run_id(&run)?,
                timestamp: time(at)?,
                message: self.failure_message,
            }),
            _ => None,
        };
        Ok(AssetPartitionRecord {
            asset_key: asset_key(&self.asset_key)?,
            partition_key: partition_from_db(self.partition_key),
            materialization,
            last_failure,
        })
    }
}

/// An `asset_check_results` row.
#[derive(sqlx::FromRow)]
pub(super) struct CheckRow {
    event_id: i64,
    run_id: String,
    asset_key: String,
    partition_key: String,
    check_name: String,
    passed: bool,
    severity: String,
    description: Option<String>,
    metadata: Json<serde_json::Value>,
    timestamp: i64,
}

impl CheckRow {
    pub(super) fn into_record(self) -> Result<CheckRecord> {
        Ok(CheckRecord {
            event_id: self.event_id,
            run_id: run_id(&self.run_id)?,
            asset_key: asset_key(&self.asset_key)?,
            partition_key: partition_from_db(self.partition_key),
            evaluation: CheckEvaluation {
                check_name: self.check_name,
                passed: self.passed,
                severity: self.severity,
                description: self.description,
            },
            metadata: json(self.metadata, "check metadata")?,
            timestamp: time(self.timestamp)?,
        })
    }
}

/// Sorts records by asset key, then partition (unpartitioned first), independently of the
/// database's collation.
pub(super) fn sort_records(records: &mut [AssetPartitionRecord]) {
    records.sort_by(|a, b| (&a.asset_key, &a.partition_key).cmp(&(&b.asset_key, &b.partition_key)));
}

/// One record per asset from its latest materialization row and its latest failure row (by
/// event id, over all partitions). The record's partition is the latest materialization's,
/// or the latest failure's if it was never materialized.
pub(super) fn merge_latest(
    materialized: Vec<PartitionRow>,
    failed: Vec<PartitionRow>,
) -> Result<Vec<AssetPartitionRecord>> {
    let mut by_asset: BTreeMap<AssetKey, AssetPartitionRecord> = BTreeMap::new();
    for row in materialized {
        let mut record = row.into_record()?;
        record.last_failure = None;
        by_asset.insert(record.asset_key.clone(), record);
    }
    for row in failed {
        let record = row.into_record()?;
        match by_asset.get_mut(&record.asset_key) {
            Some(existing) => existing.last_failure = record.last_failure,
            None => {
                by_asset.insert(
                    record.asset_key.clone(),
                    AssetPartitionRecord {
                        materialization: None,
                        ..record
                    },
                );
            }
        }
    }
    Ok(by_asset.into_values().collect())
}

/// The latest materialization of an asset partition within one append.
pub(super) struct MaterializationUpsert<'a> {
    pub asset_key: String,
    pub partition_key: &'a str,
    pub run_id: String,
    pub event_id: i64,
    pub timestamp: i64,
    pub metadata: &'a Metadata,
    pub code_version: Option<&'a str>,
}

/// The latest failure of an asset partition within one append.
pub(super) struct FailureUpsert<'a> {
    pub asset_key: String,
    pub partition_key: &'a str,
    pub run_id: String,
    pub event_id: i64,
    pub timestamp: i64,
    pub message: Option<&'a str>,
}

/// A check result to insert.
pub(super) struct CheckInsert<'a> {
    pub event_id: i64,
    pub run_id: String,
    pub asset_key: String,
    pub partition_key: &'a str,
    pub check: &'a CheckEvaluation,
    pub metadata: &'a Metadata,
    pub timestamp: i64,
}

/// What one append derives. Upserts hold one row per asset partition (the last in the
/// batch), since Postgres refuses to update one row twice in one `ON CONFLICT` statement.
#[derive(Default)]
pub(super) struct Derived<'a> {
    pub materializations: Vec<MaterializationUpsert<'a>>,
    pub failures: Vec<FailureUpsert<'a>>,
    pub checks: Vec<CheckInsert<'a>>,
}

/// Keeps the last of several rows with the same key, in place of the first.
fn keep_last<'a, T>(
    rows: &mut Vec<T>,
    index: &mut HashMap<(&'a AssetKey, &'a str), usize>,
    key: (&'a AssetKey, &'a str),
    row: T,
) {
    match index.get(&key) {
        Some(&i) => rows[i] = row,
        None => {
            index.insert(key, rows.len());
            rows.push(row);
        }
    }
}

/// What `events`, stored with `ids`, derive.
pub(super) fn derive<'a>(events: &'a [Event], ids: &[i64]) -> Derived<'a> {
    let mut derived = Derived::default();
    let mut materialized = HashMap::new();
    let mut failed = HashMap::new();
    for (event, &event_id) in events.iter().zip(ids) {
        let Some(key) = &event.asset_key else {
            continue;
        };
        let partition_key = db_partition(event.partition_key.as_deref());
        match event.kind {
            EventKind::AssetMaterialization => keep_last(
                &mut derived.materializations,
                &mut materialized,
                (key, partition_key),
                MaterializationUpsert {
                    asset_key: key.to_string(),
                    partition_key,
                    run_id: event.run_id.to_string(),
                    event_id,
                    timestamp: micros(event.timestamp),
                    metadata: &event.body.metadata,
                    code_version: event.body.code_version.as_deref(),
                },
            ),
            EventKind::AssetFailed => keep_last(
                &mut derived.failures,
                &mut failed,
                (key, partition_key),
                FailureUpsert {
                    asset_key: key.to_string(),
                    partition_key,
                    run_id: event.run_id.to_string(),
                    event_id,
                    timestamp: micros(event.timestamp),
                    message: event
                        .body
                        .error
                        .as_ref()
                        .map(|e| e.message.as_str())
                        .or(event.body.message.as_deref()),
                },
            ),
            EventKind::AssetCheckEvaluation => {
                if let Some(check) = &event.body.check {
                    derived.checks.push(CheckInsert {
                        event_id,
                        run_id: event.run_id.to_string(),
                        asset_key: key.to_string(),
                        partition_key,
                        check,
                        metadata: &event.body.metadata,
                        timestamp: micros(event.timestamp),
                    });
                }
            }
            _ => {}
        }
    }
    derived
}

/// Implements [`Storage`](crate::storage::Storage) for `$storage`, whose field `pool` is a
/// `sqlx::Pool<$db>`, from the backend's inherent items listed in the module documentation.
#[derive(sqlx::FromRow)]
pub(super) struct AutomationTickRow {
    id: i64,
    tick_time: i64,
    previous_id: i64,
    daemon: String,
    evaluated_at: i64,
    duration_ms: f64,
    assets_evaluated: i64,
    requested: i64,
    run_ids: String,
}

fn run_id_list(json: &str) -> Result<Vec<RunId>> {
    let ids: Vec<String> = serde_json::from_str(json)
        .map_err(|e| StorageError::Corrupt(format!("bad run id list `{json}`: {e}")))?;
    ids.iter().map(|s| run_id(s)).collect()
}

impl AutomationTickRow {
    pub(super) fn into_tick(self) -> Result<super::AutomationTick> {
        Ok(super::AutomationTick {
            id: self.id,
            tick_time: time(self.tick_time)?,
            previous_id: self.previous_id,
            daemon: self.daemon,
            evaluated_at: time(self.evaluated_at)?,
            duration_ms: self.duration_ms,
            assets_evaluated: u32::try_from(self.assets_evaluated).unwrap_or(u32::MAX),
            requested: u32::try_from(self.requested).unwrap_or(u32::MAX),
            run_ids: run_id_list(&self.run_ids)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AutomationEvaluationRow {
    tick_id: i64,
    tick_time: Option<i64>,
    asset_key: String,
    requested: String,
    run_ids: String,
    tree: String,
}

impl AutomationEvaluationRow {
    pub(super) fn into_record(self) -> Result<super::AutomationEvaluationRecord> {
        Ok(super::AutomationEvaluationRecord {
            tick_id: self.tick_id,
            tick_time: opt_time(self.tick_time)?,
            asset_key: self.asset_key,
            requested: serde_json::from_str(&self.requested).map_err(|e| {
                StorageError::Corrupt(format!("bad partition list `{}`: {e}", self.requested))
            })?,
            run_ids: run_id_list(&self.run_ids)?,
            tree: self.tree,
        })
    }
}

macro_rules! impl_storage {
    ($storage:ty, $db:ty, $backend:expr) => {
        impl $storage {
            /// Inserts `run` (its row and its asset and tag index rows) in the transaction on
            /// `conn`: what `create_run` does, shared with the methods that queue runs.
            async fn insert_run(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                run: &$crate::run::NewRun,
            ) -> $crate::storage::Result<$crate::run::Run> {
                use $crate::storage::sql::{RunRow, micros, rows_per_statement, run_columns};
                use $crate::storage::StorageError;
                use sqlx::types::Json;

                let keys: Vec<String> = run.asset_keys.iter().map(|k| k.to_string()).collect();
                let row: Option<RunRow> = sqlx::query_as(concat!(
                    "INSERT INTO runs (run_id, status, selection, asset_keys, partition_key, \
                     partition_key_end, tags, parent_run_id, root_run_id, created_at, \
                     updated_at, step_subset) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) \
                     ON CONFLICT (run_id) DO NOTHING RETURNING ",
                    run_columns!()
                ))
                .bind(run.run_id.to_string())
                .bind(run.status.as_str())
                .bind(run.selection.as_str())
                .bind(Json(&keys))
                .bind(run.partition_key.as_deref())
                .bind(run.partition_key_end.as_deref())
                .bind(Json(&run.tags))
                .bind(run.parent_run_id.map(|id| id.to_string()))
                .bind(run.root_run_id.map(|id| id.to_string()))
                .bind(micros(run.created_at))
                .bind(run.step_subset.as_ref().map(Json))
                .fetch_optional(&mut *conn)
                .await?;
                let Some(row) = row else {
                    return Err(StorageError::RunExists(run.run_id));
                };
                let id = run.run_id.to_string();

                let mut unique_keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                unique_keys.sort_unstable();
                unique_keys.dedup();
                for chunk in unique_keys.chunks(rows_per_statement(Self::MAX_PARAMS, 2)) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO run_assets (run_id, asset_key) ",
                    );
                    qb.push_values(chunk, |mut b, key| {
                        b.push_bind(id.as_str()).push_bind(*key);
                    });
                    qb.build().persistent(false).execute(&mut *conn).await?;
                }

                let tags: Vec<(&String, &String)> = run.tags.iter().collect();
                for chunk in tags.chunks(rows_per_statement(Self::MAX_PARAMS, 3)) {
                    let mut qb =
                        sqlx::QueryBuilder::<$db>::new("INSERT INTO run_tags (run_id, key, value) ");
                    qb.push_values(chunk, |mut b, (key, value)| {
                        b.push_bind(id.as_str())
                            .push_bind(key.as_str())
                            .push_bind(value.as_str());
                    });
                    qb.build().persistent(false).execute(&mut *conn).await?;
                }
                row.into_run()
            }

            /// Appends `events` and what derives from them in the transaction on `conn`: what
            /// `append_events` does, shared with the methods that record run events.
            async fn insert_events(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                events: &[$crate::event::Event],
            ) -> $crate::storage::Result<()> {
                use $crate::storage::sql::{derive, micros, rows_per_statement};
                use sqlx::types::Json;

                if events.is_empty() {
                    return Ok(());
                }
                let ids = Self::allocate_ids(&mut *conn, "event_log", events.len()).await?;
                let rows = rows_per_statement(Self::MAX_PARAMS, 8);
                for (events, ids) in events.chunks(rows).zip(ids.chunks(rows)) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO event_log (id, run_id, step_key, asset_key, partition_key, \
                         event_type, timestamp, body) ",
                    );
                    qb.push_values(events.iter().zip(ids), |mut b, (event, id)| {
                        b.push_bind(*id)
                            .push_bind(event.run_id.to_string())
                            .push_bind(event.step_key.as_deref())
                            .push_bind(event.asset_key.as_ref().map(|k| k.to_string()))
                            .push_bind(event.partition_key.as_deref())
                            .push_bind(event.kind.as_str())
                            .push_bind(micros(event.timestamp))
                            .push_bind(Json(&event.body));
                    });
                    qb.build().persistent(false).execute(&mut *conn).await?;
                }

                let derived = derive(events, &ids);
                for chunk in derived
                    .materializations
                    .chunks(rows_per_statement(Self::MAX_PARAMS, 8))
                {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO asset_partitions (asset_key, partition_key, mat_run_id, \
                         mat_event_id, mat_timestamp, mat_metadata, mat_code_version, \
                         updated_at) ",
                    );
                    qb.push_values(chunk, |mut b, m| {
                        b.push_bind(m.asset_key.as_str())
                            .push_bind(m.partition_key)
                            .push_bind(m.run_id.as_str())
                            .push_bind(m.event_id)
                            .push_bind(m.timestamp)
                            .push_bind(Json(m.metadata))
                            .push_bind(m.code_version)
                            .push_bind(m.timestamp);
                    });
                    qb.push(
                        " ON CONFLICT (asset_key, partition_key) DO UPDATE SET \
                         mat_run_id = excluded.mat_run_id, \
                         mat_event_id = excluded.mat_event_id, \
                         mat_timestamp = excluded.mat_timestamp, \
                         mat_metadata = excluded.mat_metadata, \
                         mat_code_version = excluded.mat_code_version, \
                         updated_at = excluded.updated_at \
                         WHERE asset_partitions.mat_event_id IS NULL \
                         OR asset_partitions.mat_event_id < excluded.mat_event_id",
                    );
                    qb.build().persistent(false).execute(&mut *conn).await?;
                }
                for chunk in derived.failures.chunks(rows_per_statement(Self::MAX_PARAMS, 7)) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO asset_partitions (asset_key, partition_key, failure_run_id, \
                         failure_event_id, failure_timestamp, failure_message, updated_at) ",
                    );
                    qb.push_values(chunk, |mut b, f| {
                        b.push_bind(f.asset_key.as_str())
                            .push_bind(f.partition_key)
                            .push_bind(f.run_id.as_str())
                            .push_bind(f.event_id)
                            .push_bind(f.timestamp)
                            .push_bind(f.message)
                            .push_bind(f.timestamp);
                    });
                    qb.push(
                        " ON CONFLICT (asset_key, partition_key) DO UPDATE SET \
                         failure_run_id = excluded.failure_run_id, \
                         failure_event_id = excluded.failure_event_id, \
                         failure_timestamp = excluded.failure_timestamp, \
                         failure_message = excluded.failure_message, \
                         updated_at = excluded.updated_at \
                         WHERE asset_partitions.failure_event_id IS NULL \
                         OR asset_partitions.failure_event_id < excluded.failure_event_id",
                    );
                    qb.build().persistent(false).execute(&mut *conn).await?;
                }
                for chunk in derived.checks.chunks(rows_per_statement(Self::MAX_PARAMS, 10)) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO asset_check_results (event_id, run_id, asset_key, \
                         partition_key, check_name, passed, severity, description, metadata, \
                         timestamp) ",
                    );
                    qb.push_values(chunk, |mut b, c| {
                        b.push_bind(c.event_id)
                            .push_bind(c.run_id.as_str())
                            .push_bind(c.asset_key.as_str())
                            .push_bind(c.partition_key)
                            .push_bind(c.check.check_name.as_str())
                            .push_bind(c.check.passed)
                            .push_bind(c.check.severity.as_str())
                            .push_bind(c.check.description.as_deref())
                            .push_bind(Json(c.metadata))
                            .push_bind(c.timestamp);
                    });
                    qb.build().persistent(false).execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// Queues `runs` in the transaction on `conn`, as `create_run` and the executor do
            /// for one run: each stored QUEUED (whatever status it carries) and tagged
            /// `tag` (its schedule or backfill), with its RUN_ENQUEUED event; the queue's
            /// waiters wake when it commits.
            async fn enqueue_runs(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                runs: &[$crate::run::NewRun],
                tag: (&str, &str),
            ) -> $crate::storage::Result<Vec<$crate::run::Run>> {
                use $crate::event::{Event, EventKind};
                use $crate::run::RunStatus;

                let mut created = Vec::with_capacity(runs.len());
                let mut events = Vec::with_capacity(runs.len());
                for run in runs {
                    let mut run = run.clone();
                    run.status = RunStatus::Queued;
                    run.tags.insert(tag.0.to_owned(), tag.1.to_owned());
                    created.push(Self::insert_run(conn, &run).await?);
                    events.push(Event::new(run.run_id, EventKind::RunEnqueued, run.created_at));
                }
                Self::insert_events(conn, &events).await?;
                if !runs.is_empty() {
                    self.queue_changed(conn).await?;
                }
                Ok(created)
            }
        }

        #[::async_trait::async_trait]
        impl $crate::storage::Storage for $storage {
            fn backend(&self) -> $crate::storage::Backend {
                $backend
            }

            async fn create_run(
                &self,
                run: &$crate::run::NewRun,
            ) -> $crate::storage::Result<$crate::run::Run> {
                let queued = run.status == $crate::run::RunStatus::Queued;
                let mut tx = self.begin_write().await?;
                let created = Self::insert_run(&mut tx, run).await?;
                if queued {
                    self.queue_changed(&mut tx).await?;
                }
                tx.commit().await?;
                if queued {
                    self.queue_committed();
                }
                Ok(created)
            }

            async fn get_run(
                &self,
                run_id: $crate::run::RunId,
            ) -> $crate::storage::Result<Option<$crate::run::Run>> {
                use $crate::storage::sql::{RunRow, run_columns};

                let row: Option<RunRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM runs WHERE run_id = $1"
                ))
                .bind(run_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.map(RunRow::into_run).transpose()
            }

            async fn list_runs(
                &self,
                filter: &$crate::storage::RunFilter,
            ) -> $crate::storage::Result<Vec<$crate::run::Run>> {
                use $crate::storage::sql::{RunRow, literal_list, run_columns};

                let mut qb = sqlx::QueryBuilder::<$db>::new(concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM runs WHERE 1 = 1"
                ));
                if !filter.statuses.is_empty() {
                    qb.push(" AND status IN (")
                        .push(literal_list(filter.statuses.iter().map(|s| s.as_str())))
                        .push(")");
                }
                if let Some(key) = &filter.asset_key {
                    qb.push(" AND run_id IN (SELECT run_id FROM run_assets WHERE asset_key = ")
                        .push_bind(key.to_string())
                        .push(")");
                }
                if let Some(partition) = &filter.partition_key {
                    qb.push(" AND partition_key = ").push_bind(partition.as_str());
                }
                if let Some((key, value)) = &filter.tag {
                    qb.push(" AND run_id IN (SELECT run_id FROM run_tags WHERE key = ")
                        .push_bind(key.as_str())
                        .push(" AND value = ")
                        .push_bind(value.as_str())
                        .push(")");
                }
                if let Some(before) = filter.before_id {
                    qb.push(" AND id < ").push_bind(before);
                }
                qb.push(" ORDER BY id DESC");
                if let Some(limit) = filter.limit {
                    qb.push(" LIMIT ").push_bind(i64::from(limit));
                }
                let rows: Vec<RunRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(RunRow::into_run).collect()
            }

            async fn transition_run(
                &self,
                run_id: $crate::run::RunId,
                to: $crate::run::RunStatus,
                at: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<$crate::run::Run> {
                use $crate::run::RunStatus;
                use $crate::storage::sql::{RunRow, literal_list, micros, run_columns};
                use $crate::storage::{Storage, StorageError};

                let from = to.predecessors();
                // A run that is over holds no lease: the reaper never sees it.
                let lease = if to.is_terminal() {
                    ", lease_owner = NULL, lease_expires_at = NULL"
                } else {
                    ""
                };
                let sql = format!(
                    "UPDATE runs SET status = $1, updated_at = $2, \
                     started_at = COALESCE($3, started_at), ended_at = COALESCE($4, ended_at)\
                     {lease} WHERE run_id = $5 AND status IN ({}) RETURNING {}",
                    literal_list(from.iter().map(|s| s.as_str())),
                    run_columns!()
                );
                let at = micros(at);
                // A run that changes between the refused update and the read is tried again,
                // so that the error names a status from which `to` is really illegal.
                for _ in 0..8 {
                    if !from.is_empty() {
                        let row: Option<RunRow> = sqlx::query_as(&sql)
                            .bind(to.as_str())
                            .bind(at)
                            .bind((to == RunStatus::Started).then_some(at))
                            .bind(to.is_terminal().then_some(at))
                            .bind(run_id.to_string())
                            .fetch_optional(&self.pool)
                            .await?;
                        if let Some(row) = row {
                            return row.into_run();
                        }
                    }
                    match Storage::get_run(self, run_id).await? {
                        None => return Err(StorageError::RunNotFound(run_id)),
                        Some(run) if run.status.can_become(to) => continue,
                        Some(run) => {
                            return Err(StorageError::IllegalTransition {
                                run_id,
                                from: run.status,
                                to,
                            });
                        }
                    }
                }
                Err(StorageError::Corrupt(format!(
                    "run {run_id} keeps changing status; cannot move it to {to}"
                )))
            }

            async fn append_events(
                &self,
                events: &[$crate::event::Event],
            ) -> $crate::storage::Result<()> {
                if events.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                Self::insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn run_events(
                &self,
                run_id: $crate::run::RunId,
                filter: &$crate::storage::EventFilter,
            ) -> $crate::storage::Result<Vec<$crate::event::StoredEvent>> {
                use $crate::storage::sql::{EventRow, literal_list};

                let mut qb = sqlx::QueryBuilder::<$db>::new(concat!(
                    "SELECT ",
                    $crate::storage::sql::event_columns!(),
                    " FROM event_log WHERE run_id = "
                ));
                qb.push_bind(run_id.to_string());
                if let Some(after) = filter.after_id {
                    qb.push(" AND id > ").push_bind(after);
                }
                if !filter.kinds.is_empty() {
                    qb.push(" AND event_type IN (")
                        .push(literal_list(filter.kinds.iter().map(|k| k.as_str())))
                        .push(")");
                }
                if let Some(step) = &filter.step_key {
                    qb.push(" AND step_key = ").push_bind(step.as_str());
                }
                qb.push(" ORDER BY id");
                if let Some(limit) = filter.limit {
                    qb.push(" LIMIT ").push_bind(i64::from(limit));
                }
                let rows: Vec<EventRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(EventRow::into_event).collect()
            }

            async fn append_logs(
                &self,
                lines: &[$crate::event::LogLine],
            ) -> $crate::storage::Result<()> {
                use $crate::storage::sql::{micros, rows_per_statement};

                if lines.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                let ids = Self::allocate_ids(&mut tx, "step_logs", lines.len()).await?;
                let rows = rows_per_statement(Self::MAX_PARAMS, 7);
                for (lines, ids) in lines.chunks(rows).zip(ids.chunks(rows)) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO step_logs (id, run_id, step_key, stream, level, timestamp, \
                         message) ",
                    );
                    qb.push_values(lines.iter().zip(ids), |mut b, (line, id)| {
                        b.push_bind(*id)
                            .push_bind(line.run_id.to_string())
                            .push_bind(line.step_key.as_str())
                            .push_bind(line.stream.as_str())
                            .push_bind(line.level.as_str())
                            .push_bind(micros(line.timestamp))
                            .push_bind(line.message.as_str());
                    });
                    qb.build().persistent(false).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn step_logs(
                &self,
                run_id: $crate::run::RunId,
                step_key: Option<&str>,
            ) -> $crate::storage::Result<Vec<$crate::event::LogLine>> {
                use $crate::storage::sql::LogRow;

                const COLUMNS: &str = "SELECT run_id, step_key, stream, level, timestamp, message \
                                       FROM step_logs WHERE run_id = $1";
                let rows: Vec<LogRow> = match step_key {
                    Some(step) => {
                        sqlx::query_as(&format!("{COLUMNS} AND step_key = $2 ORDER BY id"))
                            .bind(run_id.to_string())
                            .bind(step)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => {
                        sqlx::query_as(&format!("{COLUMNS} ORDER BY id"))
                            .bind(run_id.to_string())
                            .fetch_all(&self.pool)
                            .await?
                    }
                };
                rows.into_iter().map(LogRow::into_line).collect()
            }

            async fn asset_partitions(
                &self,
                asset_keys: &[$crate::asset::AssetKey],
            ) -> $crate::storage::Result<Vec<$crate::storage::AssetPartitionRecord>> {
                use $crate::storage::sql::{
                    IN_CHUNK, PartitionRow, partition_columns, sort_records,
                };

                const SELECT: &str =
                    concat!("SELECT ", partition_columns!(), " FROM asset_partitions");
                let mut rows: Vec<PartitionRow> = Vec::new();
                if asset_keys.is_empty() {
                    rows = sqlx::query_as(SELECT).fetch_all(&self.pool).await?;
                } else {
                    let mut keys: Vec<String> = asset_keys.iter().map(|k| k.to_string()).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    for chunk in keys.chunks(IN_CHUNK) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new(SELECT);
                        qb.push(" WHERE asset_key IN (");
                        let mut list = qb.separated(", ");
                        for key in chunk {
                            list.push_bind(key.as_str());
                        }
                        qb.push(")");
                        rows.extend(
                            qb.build_query_as::<PartitionRow>()
                                .persistent(false)
                                .fetch_all(&self.pool)
                                .await?,
                        );
                    }
                }
                let mut records = rows
                    .into_iter()
                    .map(PartitionRow::into_record)
                    .collect::<$crate::storage::Result<Vec<_>>>()?;
                sort_records(&mut records);
                Ok(records)
            }

            async fn latest_by_asset(
                &self,
                asset_keys: &[$crate::asset::AssetKey],
            ) -> $crate::storage::Result<Vec<$crate::storage::AssetPartitionRecord>> {
                use $crate::storage::sql::{IN_CHUNK, PartitionRow, merge_latest, partition_columns};

                // The latest row per asset by `column` (an event id), over all partitions.
                let latest = async |column: &str, keys: &[String]| {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                        "SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER \
                         (PARTITION BY asset_key ORDER BY {column} DESC) AS rn \
                         FROM asset_partitions WHERE {column} IS NOT NULL",
                        cols = partition_columns!(),
                    ));
                    if !keys.is_empty() {
                        qb.push(" AND asset_key IN (");
                        let mut list = qb.separated(", ");
                        for key in keys {
                            list.push_bind(key.as_str());
                        }
                        qb.push(")");
                    }
                    qb.push(") AS latest WHERE rn = 1");
                    qb.build_query_as::<PartitionRow>()
                        .persistent(keys.is_empty())
                        .fetch_all(&self.pool)
                        .await
                };
                let mut materialized = Vec::new();
                let mut failed = Vec::new();
                if asset_keys.is_empty() {
                    materialized = latest("mat_event_id", &[]).await?;
                    failed = latest("failure_event_id", &[]).await?;
                } else {
                    let mut keys: Vec<String> = asset_keys.iter().map(|k| k.to_string()).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    for chunk in keys.chunks(IN_CHUNK) {
                        materialized.extend(latest("mat_event_id", chunk).await?);
                        failed.extend(latest("failure_event_id", chunk).await?);
                    }
                }
                merge_latest(materialized, failed)
            }

            async fn check_results(
                &self,
                asset_key: &$crate::asset::AssetKey,
                limit: u32,
            ) -> $crate::storage::Result<Vec<$crate::storage::CheckRecord>> {
                use $crate::storage::sql::CheckRow;

                let rows: Vec<CheckRow> = sqlx::query_as(
                    "SELECT event_id, run_id, asset_key, partition_key, check_name, passed, \
                     severity, description, metadata, timestamp FROM asset_check_results \
                     WHERE asset_key = $1 ORDER BY event_id DESC LIMIT $2",
                )
                .bind(asset_key.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(CheckRow::into_record).collect()
            }

            // --- The run queue ---

            async fn claim_run(
                &self,
                owner: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
                lease_for: ::std::time::Duration,
                limits: &$crate::storage::QueueLimits,
            ) -> $crate::storage::Result<Option<$crate::storage::Lease>> {
                use $crate::run::RunStatus;
                use $crate::storage::sql::{
                    LeaseRow, duration_micros, in_flight_list, lease_columns, micros,
                };

                debug_assert!(RunStatus::Queued.can_become(RunStatus::Starting));
                let now = micros(now);
                let mut tx = self.begin_write().await?;
                if let Some(max) = limits.max_concurrent_runs {
                    // Claimers that check the limit go one at a time, so that two of them
                    // cannot both see room for one more run.
                    self.lock_queue(&mut tx).await?;
                    let in_flight: i64 = sqlx::query_scalar(&format!(
                        "SELECT COUNT(*) FROM runs WHERE status IN ({})",
                        in_flight_list(None)
                    ))
                    .fetch_one(&mut *tx)
                    .await?;
                    if in_flight >= i64::from(max) {
                        tx.commit().await?;
                        return Ok(None);
                    }
                }
                let row: Option<LeaseRow> = sqlx::query_as(&format!(
                    "UPDATE runs SET status = 'STARTING', attempt = attempt + 1, \
                     lease_owner = $1, lease_expires_at = $2, updated_at = $3 \
                     WHERE id = (SELECT id FROM runs WHERE status = 'QUEUED' \
                     ORDER BY id LIMIT 1{}) AND status = 'QUEUED' RETURNING {}",
                    Self::SKIP_LOCKED,
                    lease_columns!()
                ))
                .bind(owner)
                .bind(now.saturating_add(duration_micros(lease_for)))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                row.map(LeaseRow::into_lease).transpose()
            }

            async fn renew_lease(
                &self,
                run_id: $crate::run::RunId,
                attempt: i64,
                now: ::chrono::DateTime<::chrono::Utc>,
                lease_for: ::std::time::Duration,
            ) -> $crate::storage::Result<$crate::storage::LeaseState> {
                use $crate::run::RunStatus;
                use $crate::storage::sql::{duration_micros, in_flight_list, micros};
                use $crate::storage::{LeaseState, StorageError};

                let status: Option<String> = sqlx::query_scalar(&format!(
                    "UPDATE runs SET lease_expires_at = $1 WHERE run_id = $2 AND attempt = $3 \
                     AND status IN ({}) RETURNING status",
                    in_flight_list(None)
                ))
                .bind(micros(now).saturating_add(duration_micros(lease_for)))
                .bind(run_id.to_string())
                .bind(attempt)
                .fetch_optional(&self.pool)
                .await?;
                match status {
                    None => Ok(LeaseState::Lost),
                    Some(status) => RunStatus::parse(&status).map(LeaseState::Held).ok_or_else(
                        || StorageError::Corrupt(format!("unknown run status `{status}`")),
                    ),
                }
            }

            async fn expired_leases(
                &self,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<Vec<$crate::storage::Lease>> {
                use $crate::storage::sql::{LeaseRow, in_flight_list, lease_columns, micros};

                // The same `status IN` list as the partial index `runs_lease_expires_at`.
                let rows: Vec<LeaseRow> = sqlx::query_as(&format!(
                    "SELECT {} FROM runs WHERE status IN ({}) AND lease_expires_at < $1 \
                     ORDER BY lease_expires_at, id",
                    lease_columns!(),
                    in_flight_list(None)
                ))
                .bind(micros(now))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(LeaseRow::into_lease).collect()
            }

            async fn fail_expired(
                &self,
                run_id: $crate::run::RunId,
                attempt: i64,
                now: ::chrono::DateTime<::chrono::Utc>,
                reason: &str,
            ) -> $crate::storage::Result<Option<$crate::run::Run>> {
                use $crate::event::{Event, EventKind};
                use $crate::run::RunStatus;
                use $crate::storage::sql::{RunRow, in_flight_list, micros, run_columns};

                let mut tx = self.begin_write().await?;
                let row: Option<RunRow> = sqlx::query_as(&format!(
                    "UPDATE runs SET status = 'FAILURE', ended_at = $1, updated_at = $1, \
                     lease_owner = NULL, lease_expires_at = NULL \
                     WHERE run_id = $2 AND attempt = $3 AND status IN ({}) \
                     AND lease_expires_at < $1 RETURNING {}",
                    in_flight_list(Some(RunStatus::Failure)),
                    run_columns!()
                ))
                .bind(micros(now))
                .bind(run_id.to_string())
                .bind(attempt)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.commit().await?;
                    return Ok(None);
                };
                let run = row.into_run()?;
                let event = Event::new(run_id, EventKind::RunFailure, now).message(reason);
                Self::insert_events(&mut tx, &[event]).await?;
                tx.commit().await?;
                Ok(Some(run))
            }

            async fn request_cancel(
                &self,
                run_id: $crate::run::RunId,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<$crate::run::Run> {
                use $crate::event::{Event, EventKind};
                use $crate::run::RunStatus;
                use $crate::storage::StorageError;
                use $crate::storage::sql::{RunRow, micros, run_columns};

                let mut tx = self.begin_write().await?;
                // The status read here fences the update: the row stays locked (Postgres) or
                // the database stays locked (SQLite) until the commit.
                let row: Option<RunRow> = sqlx::query_as(&format!(
                    "SELECT {} FROM runs WHERE run_id = $1{}",
                    run_columns!(),
                    Self::FOR_UPDATE
                ))
                .bind(run_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(StorageError::RunNotFound(run_id));
                };
                let run = row.into_run()?;
                let (to, message) = match run.status {
                    RunStatus::Queued => (RunStatus::Canceled, "canceled before it started"),
                    RunStatus::Starting | RunStatus::Started => {
                        (RunStatus::Canceling, "cancel requested")
                    }
                    RunStatus::Canceling => {
                        tx.commit().await?;
                        return Ok(run);
                    }
                    from @ (RunStatus::Success | RunStatus::Failure | RunStatus::Canceled) => {
                        return Err(StorageError::IllegalTransition {
                            run_id,
                            from,
                            to: RunStatus::Canceling,
                        });
                    }
                };
                debug_assert!(run.status.can_become(to));
                let at = micros(now);
                let lease = if to.is_terminal() {
                    ", lease_owner = NULL, lease_expires_at = NULL"
                } else {
                    ""
                };
                let row: Option<RunRow> = sqlx::query_as(&format!(
                    "UPDATE runs SET status = $1, updated_at = $2, \
                     ended_at = COALESCE($3, ended_at){lease} \
                     WHERE run_id = $4 AND status = $5 RETURNING {}",
                    run_columns!()
                ))
                .bind(to.as_str())
                .bind(at)
                .bind(to.is_terminal().then_some(at))
                .bind(run_id.to_string())
                .bind(run.status.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(StorageError::Corrupt(format!(
                        "run {run_id} changed status while it was locked for cancellation"
                    )));
                };
                let event =
                    Event::new(run_id, EventKind::for_run_status(to), now).message(message);
                Self::insert_events(&mut tx, &[event]).await?;
                tx.commit().await?;
                row.into_run()
            }

            async fn notify_queue(&self) -> $crate::storage::Result<()> {
                self.send_queue_notification().await?;
                Ok(())
            }

            async fn wait_for_queue(&self, timeout: ::std::time::Duration) {
                self.wait_queue_notification(timeout).await
            }

            // --- Schedules ---

            async fn set_schedule_enabled(
                &self,
                name: &str,
                enabled: bool,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<$crate::storage::ScheduleState> {
                use $crate::storage::sql::{ScheduleRow, micros};

                let row: ScheduleRow = sqlx::query_as(
                    "INSERT INTO schedules (name, enabled, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, \
                     updated_at = excluded.updated_at RETURNING name, enabled, updated_at",
                )
                .bind(name)
                .bind(enabled)
                .bind(micros(now))
                .fetch_one(&self.pool)
                .await?;
                row.into_state()
            }

            async fn schedule_states(
                &self,
            ) -> $crate::storage::Result<Vec<$crate::storage::ScheduleState>> {
                use $crate::storage::sql::ScheduleRow;

                let rows: Vec<ScheduleRow> =
                    sqlx::query_as("SELECT name, enabled, updated_at FROM schedules ORDER BY name")
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter().map(ScheduleRow::into_state).collect()
            }

            async fn record_tick(
                &self,
                schedule: &str,
                tick_time: ::chrono::DateTime<::chrono::Utc>,
                run: Option<&$crate::run::NewRun>,
                status: $crate::storage::TickStatus,
                message: Option<&str>,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<$crate::storage::TickRecord> {
                use $crate::storage::sql::{TickRow, micros, tick_columns};
                use $crate::storage::{StorageError, TickRecord};

                let mut tx = self.begin_write().await?;
                // The primary key decides: a concurrent recorder of the same tick waits here
                // (Postgres) or for the write lock (SQLite) until this transaction ends.
                let inserted: Option<TickRow> = sqlx::query_as(concat!(
                    "INSERT INTO schedule_ticks (schedule, tick_time, status, run_id, message, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (schedule, tick_time) DO NOTHING RETURNING ",
                    tick_columns!()
                ))
                .bind(schedule)
                .bind(micros(tick_time))
                .bind(status.as_str())
                .bind(run.map(|r| r.run_id.to_string()))
                .bind(message)
                .bind(micros(now))
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = inserted {
                    let tick = row.into_tick()?;
                    if let Some(run) = run {
                        let runs = std::slice::from_ref(run);
                        let tag = ($crate::request::tags::SCHEDULE, schedule);
                        self.enqueue_runs(&mut tx, runs, tag).await?;
                    }
                    tx.commit().await?;
                    if run.is_some() {
                        self.queue_committed();
                    }
                    return Ok(TickRecord::Recorded(tick));
                }
                let existing: Option<TickRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    tick_columns!(),
                    " FROM schedule_ticks WHERE schedule = $1 AND tick_time = $2"
                ))
                .bind(schedule)
                .bind(micros(tick_time))
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                match existing {
                    Some(row) => Ok(TickRecord::AlreadyRecorded(row.into_tick()?)),
                    None => Err(StorageError::Corrupt(format!(
                        "the tick of {schedule} at {tick_time} is neither new nor recorded"
                    ))),
                }
            }

            async fn schedule_ticks(
                &self,
                schedule: &str,
                limit: u32,
            ) -> $crate::storage::Result<Vec<$crate::storage::Tick>> {
                use $crate::storage::sql::{TickRow, tick_columns};

                let rows: Vec<TickRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    tick_columns!(),
                    " FROM schedule_ticks WHERE schedule = $1 ORDER BY tick_time DESC LIMIT $2"
                ))
                .bind(schedule)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(TickRow::into_tick).collect()
            }

            // --- Automation ---

            async fn record_automation_tick(
                &self,
                write: &$crate::storage::AutomationTickWrite<'_>,
            ) -> $crate::storage::Result<Option<$crate::storage::AutomationTick>> {
                use $crate::storage::sql::{AutomationTickRow, micros};

                let tick = write.tick;
                let run_ids: Vec<String> =
                    write.runs.iter().map(|r| r.run_id.to_string()).collect();
                let mut tx = self.begin_write().await?;
                // Both unique keys decide: the tick time, and the tick it follows.
                let inserted: Option<AutomationTickRow> = sqlx::query_as(
                    "INSERT INTO automation_ticks (tick_time, previous_id, daemon, evaluated_at, \
                     duration_ms, assets_evaluated, requested, run_ids) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING \
                     RETURNING id, tick_time, previous_id, daemon, evaluated_at, duration_ms, \
                     assets_evaluated, requested, run_ids",
                )
                .bind(micros(tick.tick_time))
                .bind(tick.previous_id)
                .bind(&tick.daemon)
                .bind(micros(tick.evaluated_at))
                .bind(tick.duration_ms)
                .bind(i64::from(tick.assets_evaluated))
                .bind(i64::from(tick.requested))
                .bind(serde_json::to_string(&run_ids).expect("strings serialize"))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = inserted else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let recorded = row.into_tick()?;
                if !write.runs.is_empty() {
                    let at = tick.tick_time.to_rfc3339();
                    let tag = ($crate::request::tags::AUTOMATION_TICK, at.as_str());
                    self.enqueue_runs(&mut tx, write.runs, tag).await?;
                }
                for e in write.evaluations {
                    let run_ids: Vec<String> = e.run_ids.iter().map(|r| r.to_string()).collect();
                    sqlx::query(
                        "INSERT INTO automation_evaluations (tick_id, asset_key, requested, \
                         run_ids, tree) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(recorded.id)
                    .bind(&e.asset_key)
                    .bind(serde_json::to_string(&e.requested).expect("strings serialize"))
                    .bind(serde_json::to_string(&run_ids).expect("strings serialize"))
                    .bind(&e.tree)
                    .execute(&mut *tx)
                    .await?;
                }
                for st in write.states {
                    sqlx::query(
                        "INSERT INTO automation_state (asset_key, tick_id, state) \
                         VALUES ($1, $2, $3) ON CONFLICT (asset_key) DO UPDATE \
                         SET tick_id = excluded.tick_id, state = excluded.state",
                    )
                    .bind(&st.asset_key)
                    .bind(recorded.id)
                    .bind(&st.state)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                if !write.runs.is_empty() {
                    self.queue_committed();
                }
                Ok(Some(recorded))
            }

            async fn automation_ticks(
                &self,
                limit: u32,
            ) -> $crate::storage::Result<Vec<$crate::storage::AutomationTick>> {
                use $crate::storage::sql::AutomationTickRow;

                let rows: Vec<AutomationTickRow> = sqlx::query_as(
                    "SELECT id, tick_time, previous_id, daemon, evaluated_at, duration_ms, \
                     assets_evaluated, requested, run_ids FROM automation_ticks \
                     ORDER BY id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(AutomationTickRow::into_tick).collect()
            }

            async fn automation_states(
                &self,
            ) -> $crate::storage::Result<Vec<$crate::storage::AutomationStateRecord>> {
                let rows: Vec<(String, i64, String)> =
                    sqlx::query_as("SELECT asset_key, tick_id, state FROM automation_state")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(asset_key, tick_id, state)| $crate::storage::AutomationStateRecord {
                        asset_key,
                        tick_id,
                        state,
                    })
                    .collect())
            }

            async fn automation_evaluations(
                &self,
                asset_key: &str,
                limit: u32,
            ) -> $crate::storage::Result<Vec<$crate::storage::AutomationEvaluationRecord>> {
                use $crate::storage::sql::AutomationEvaluationRow;

                let rows: Vec<AutomationEvaluationRow> = sqlx::query_as(
                    "SELECT e.tick_id, t.tick_time, e.asset_key, e.requested, e.run_ids, e.tree \
                     FROM automation_evaluations e \
                     LEFT JOIN automation_ticks t ON t.id = e.tick_id \
                     WHERE e.asset_key = $1 ORDER BY e.tick_id DESC LIMIT $2",
                )
                .bind(asset_key)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(AutomationEvaluationRow::into_record)
                    .collect()
            }

            // --- Backfills, sensors, daemons ---

            async fn create_backfill(
                &self,
                backfill: &$crate::storage::Backfill,
                runs: &[$crate::run::NewRun],
            ) -> $crate::storage::Result<()> {
                use $crate::storage::sql::micros;

                let mut tx = self.begin_write().await?;
                // `run_count` is the number of runs queued here, whatever the caller counted.
                sqlx::query(
                    "INSERT INTO backfills (id, selection, partition_from, partition_to, \
                     run_count, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(backfill.id.as_str())
                .bind(backfill.selection.as_str())
                .bind(backfill.partition_from.as_str())
                .bind(backfill.partition_to.as_str())
                .bind(i64::try_from(runs.len()).unwrap_or(i64::MAX))
                .bind(micros(backfill.created_at))
                .execute(&mut *tx)
                .await?;
                let tag = ($crate::request::tags::BACKFILL, backfill.id.as_str());
                self.enqueue_runs(&mut tx, runs, tag).await?;
                tx.commit().await?;
                if !runs.is_empty() {
                    self.queue_committed();
                }
                Ok(())
            }

            async fn get_backfill(
                &self,
                id: &str,
            ) -> $crate::storage::Result<Option<$crate::storage::Backfill>> {
                use $crate::storage::sql::{BackfillRow, backfill_columns};

                let row: Option<BackfillRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    backfill_columns!(),
                    " FROM backfills WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(BackfillRow::into_backfill).transpose()
            }

            async fn list_backfills(
                &self,
                limit: u32,
            ) -> $crate::storage::Result<Vec<$crate::storage::Backfill>> {
                use $crate::storage::sql::{BackfillRow, backfill_columns};

                let rows: Vec<BackfillRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    backfill_columns!(),
                    " FROM backfills ORDER BY created_at DESC, id DESC LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(BackfillRow::into_backfill).collect()
            }

            async fn count_runs_by_status(
                &self,
                tag_key: &str,
                tag_value: &str,
            ) -> $crate::storage::Result<Vec<($crate::run::RunStatus, u64)>> {
                use $crate::storage::sql::status_counts;

                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT runs.status, COUNT(*) FROM run_tags \
                     JOIN runs ON runs.run_id = run_tags.run_id \
                     WHERE run_tags.key = $1 AND run_tags.value = $2 GROUP BY runs.status",
                )
                .bind(tag_key)
                .bind(tag_value)
                .fetch_all(&self.pool)
                .await?;
                status_counts(rows)
            }

            async fn sensor_cursor(&self, sensor: &str) -> $crate::storage::Result<Option<String>> {
                let cursor: Option<String> =
                    sqlx::query_scalar("SELECT cursor FROM sensor_cursors WHERE name = $1")
                        .bind(sensor)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(cursor)
            }

            async fn set_sensor_cursor(
                &self,
                sensor: &str,
                cursor: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<()> {
                use $crate::storage::sql::micros;

                sqlx::query(
                    "INSERT INTO sensor_cursors (name, cursor, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, \
                     updated_at = excluded.updated_at",
                )
                .bind(sensor)
                .bind(cursor)
                .bind(micros(now))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn asset_events(
                &self,
                asset_key: &$crate::asset::AssetKey,
                kinds: &[$crate::event::EventKind],
                before_id: Option<i64>,
                limit: u32,
            ) -> $crate::storage::Result<Vec<$crate::event::StoredEvent>> {
                use $crate::storage::sql::{EventRow, event_columns, literal_list};

                let mut qb = sqlx::QueryBuilder::<$db>::new(concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM event_log WHERE asset_key = "
                ));
                qb.push_bind(asset_key.to_string());
                if !kinds.is_empty() {
                    qb.push(" AND event_type IN (")
                        .push(literal_list(kinds.iter().map(|k| k.as_str())))
                        .push(")");
                }
                if let Some(before) = before_id {
                    qb.push(" AND id < ").push_bind(before);
                }
                qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
                let rows: Vec<EventRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(EventRow::into_event).collect()
            }

            async fn run_status_counts(
                &self,
            ) -> $crate::storage::Result<Vec<($crate::run::RunStatus, u64)>> {
                use $crate::storage::StorageError;

                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter()
                    .map(|(status, n)| {
                        let status = $crate::run::RunStatus::parse(&status).ok_or_else(|| {
                            StorageError::Corrupt(format!("unknown run status `{status}`"))
                        })?;
                        Ok((status, u64::try_from(n).unwrap_or(0)))
                    })
                    .collect()
            }

            async fn stream_worker_heartbeat(
                &self,
                worker: &$crate::storage::StreamWorker,
            ) -> $crate::storage::Result<()> {
                use $crate::storage::sql::micros;
                use sqlx::types::Json;

                sqlx::query(
                    "INSERT INTO stream_workers (worker_id, group_id, topics, partitions, lag, \
                     events_in, events_written, dead_lettered, events_per_sec, last_file, \
                     started_at, heartbeat_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (worker_id) DO UPDATE \
                     SET group_id = excluded.group_id, topics = excluded.topics, \
                     partitions = excluded.partitions, lag = excluded.lag, \
                     events_in = excluded.events_in, events_written = excluded.events_written, \
                     dead_lettered = excluded.dead_lettered, \
                     events_per_sec = excluded.events_per_sec, \
                     last_file = excluded.last_file, started_at = excluded.started_at, \
                     heartbeat_at = excluded.heartbeat_at",
                )
                .bind(worker.worker_id.as_str())
                .bind(worker.group_id.as_str())
                .bind(Json(&worker.topics))
                .bind(Json(&worker.partitions))
                .bind(worker.lag)
                .bind(worker.events_in)
                .bind(worker.events_written)
                .bind(worker.dead_lettered)
                .bind(worker.events_per_sec)
                .bind(worker.last_file.as_deref())
                .bind(micros(worker.started_at))
                .bind(micros(worker.heartbeat_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn stream_workers(
                &self,
                since: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<Vec<$crate::storage::StreamWorker>> {
                use $crate::storage::sql::{StreamWorkerRow, micros};

                let rows: Vec<StreamWorkerRow> = sqlx::query_as(
                    "SELECT worker_id, group_id, topics, partitions, lag, events_in, \
                     events_written, dead_lettered, events_per_sec, last_file, started_at, \
                     heartbeat_at FROM stream_workers WHERE heartbeat_at >= $1 \
                     ORDER BY worker_id",
                )
                .bind(micros(since))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(StreamWorkerRow::into_worker).collect()
            }

            async fn daemon_heartbeat(
                &self,
                heartbeat: &$crate::storage::DaemonHeartbeat,
            ) -> $crate::storage::Result<()> {
                use $crate::storage::sql::micros;
                use sqlx::types::Json;

                sqlx::query(
                    "INSERT INTO daemon_heartbeats (daemon_id, started_at, heartbeat_at, info) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (daemon_id) DO UPDATE SET \
                     started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
                     info = excluded.info",
                )
                .bind(heartbeat.daemon_id.as_str())
                .bind(micros(heartbeat.started_at))
                .bind(micros(heartbeat.heartbeat_at))
                .bind(Json(&heartbeat.info))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn daemon_heartbeats(
                &self,
                since: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<Vec<$crate::storage::DaemonHeartbeat>> {
                use $crate::storage::sql::{HeartbeatRow, micros};

                let rows: Vec<HeartbeatRow> = sqlx::query_as(
                    "SELECT daemon_id, started_at, heartbeat_at, info FROM daemon_heartbeats \
                     WHERE heartbeat_at >= $1 ORDER BY daemon_id",
                )
                .bind(micros(since))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(HeartbeatRow::into_heartbeat).collect()
            }

            async fn events_after(
                &self,
                after_id: i64,
                kinds: &[$crate::event::EventKind],
                limit: u32,
            ) -> $crate::storage::Result<Vec<$crate::event::StoredEvent>> {
                use $crate::storage::sql::{EventRow, event_columns, literal_list};

                let mut qb = sqlx::QueryBuilder::<$db>::new(concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM event_log WHERE id > "
                ));
                qb.push_bind(after_id);
                if !kinds.is_empty() {
                    qb.push(" AND event_type IN (")
                        .push(literal_list(kinds.iter().map(|k| k.as_str())))
                        .push(")");
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
                let rows: Vec<EventRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(EventRow::into_event).collect()
            }

            // --- Pools ---

            async fn try_acquire_pool_slot(
                &self,
                pool: &str,
                limit: u32,
                run_id: $crate::run::RunId,
                step_key: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
                ttl: ::std::time::Duration,
            ) -> $crate::storage::Result<bool> {
                use $crate::storage::sql::{duration_micros, micros, slot_owner};

                let now = micros(now);
                let expires_at = now.saturating_add(duration_micros(ttl));
                let run_id = run_id.to_string();
                let mut tx = self.begin_write().await?;
                // Acquirers of this pool go one at a time, so that two of them cannot both see
                // room for one more slot.
                self.lock_pool(&mut tx, pool).await?;
                let renewed = sqlx::query(
                    "UPDATE pool_slots SET expires_at = $1, owner = $2                      WHERE pool = $3 AND run_id = $4 AND step_key = $5 AND expires_at > $6",
                )
                .bind(expires_at)
                .bind(slot_owner())
                .bind(pool)
                .bind(run_id.as_str())
                .bind(step_key)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if renewed > 0 {
                    tx.commit().await?;
                    return Ok(true);
                }
                // The slots of processes that stopped renewing them.
                sqlx::query("DELETE FROM pool_slots WHERE pool = $1 AND expires_at <= $2")
                    .bind(pool)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pool_slots WHERE pool = $1")
                    .bind(pool)
                    .fetch_one(&mut *tx)
                    .await?;
                if held >= i64::from(limit) {
                    tx.commit().await?;
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO pool_slots (pool, run_id, step_key, owner, acquired_at,                      expires_at) VALUES ($1, $2, $3, $4, $5, $6)                      ON CONFLICT (pool, run_id, step_key) DO UPDATE SET owner = excluded.owner,                      acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                )
                .bind(pool)
                .bind(run_id.as_str())
                .bind(step_key)
                .bind(slot_owner())
                .bind(now)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn renew_pool_slot(
                &self,
                pool: &str,
                run_id: $crate::run::RunId,
                step_key: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
                ttl: ::std::time::Duration,
            ) -> $crate::storage::Result<bool> {
                use $crate::storage::sql::{duration_micros, micros};

                // An expired slot is not renewed: an acquirer may have deleted it and taken
                // its place (the row lock orders this update and that delete on Postgres).
                let now = micros(now);
                let renewed = sqlx::query(
                    "UPDATE pool_slots SET expires_at = $1                      WHERE pool = $2 AND run_id = $3 AND step_key = $4 AND expires_at > $5",
                )
                .bind(now.saturating_add(duration_micros(ttl)))
                .bind(pool)
                .bind(run_id.to_string())
                .bind(step_key)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(renewed > 0)
            }

            async fn release_pool_slot(
                &self,
                pool: &str,
                run_id: $crate::run::RunId,
                step_key: &str,
            ) -> $crate::storage::Result<()> {
                sqlx::query(
                    "DELETE FROM pool_slots WHERE pool = $1 AND run_id = $2 AND step_key = $3",
                )
                .bind(pool)
                .bind(run_id.to_string())
                .bind(step_key)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn pool_usage(
                &self,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<Vec<(String, u64)>> {
                use $crate::storage::sql::{micros, pool_counts};

                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT pool, COUNT(*) FROM pool_slots WHERE expires_at > $1 GROUP BY pool",
                )
                .bind(micros(now))
                .fetch_all(&self.pool)
                .await?;
                Ok(pool_counts(rows))
            }

            // --- Freshness violations ---

            async fn open_freshness_violation(
                &self,
                asset_key: &$crate::asset::AssetKey,
                detected_at: ::chrono::DateTime<::chrono::Utc>,
                latest_partition: Option<&str>,
                latest_materialized_at: Option<::chrono::DateTime<::chrono::Utc>>,
                max_lag_secs: i64,
                message: &str,
            ) -> $crate::storage::Result<bool> {
                use $crate::storage::sql::micros;

                // An open violation is left alone (the update's WHERE refuses it, and then
                // nothing is returned); a resolved one is replaced.
                let opened: Option<String> = sqlx::query_scalar(
                    "INSERT INTO freshness_violations (asset_key, detected_at, latest_partition,                      latest_materialized_at, max_lag_secs, message, notified_at, resolved_at)                      VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)                      ON CONFLICT (asset_key) DO UPDATE SET detected_at = excluded.detected_at,                      latest_partition = excluded.latest_partition,                      latest_materialized_at = excluded.latest_materialized_at,                      max_lag_secs = excluded.max_lag_secs, message = excluded.message,                      notified_at = NULL, resolved_at = NULL                      WHERE freshness_violations.resolved_at IS NOT NULL                      RETURNING asset_key",
                )
                .bind(asset_key.to_string())
                .bind(micros(detected_at))
                .bind(latest_partition)
                .bind(latest_materialized_at.map(micros))
                .bind(max_lag_secs)
                .bind(message)
                .fetch_optional(&self.pool)
                .await?;
                Ok(opened.is_some())
            }

            async fn resolve_freshness_violation(
                &self,
                asset_key: &$crate::asset::AssetKey,
                at: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<bool> {
                use $crate::storage::sql::micros;

                let resolved = sqlx::query(
                    "UPDATE freshness_violations SET resolved_at = $1                      WHERE asset_key = $2 AND resolved_at IS NULL",
                )
                .bind(micros(at))
                .bind(asset_key.to_string())
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(resolved > 0)
            }

            async fn freshness_violations(
                &self,
                open_only: bool,
            ) -> $crate::storage::Result<Vec<$crate::storage::FreshnessViolation>> {
                use $crate::storage::sql::{ViolationRow, violation_columns, violations};

                const SELECT: &str =
                    concat!("SELECT ", violation_columns!(), " FROM freshness_violations");
                let rows: Vec<ViolationRow> = if open_only {
                    sqlx::query_as(&format!("{SELECT} WHERE resolved_at IS NULL"))
                        .fetch_all(&self.pool)
                        .await?
                } else {
                    sqlx::query_as(SELECT).fetch_all(&self.pool).await?
                };
                violations(rows)
            }

            async fn mark_violation_notified(
                &self,
                asset_key: &$crate::asset::AssetKey,
                at: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::storage::Result<bool> {
                use $crate::storage::sql::micros;

                let marked = sqlx::query(
                    "UPDATE freshness_violations SET notified_at = $1 WHERE asset_key = $2",
                )
                .bind(micros(at))
                .bind(asset_key.to_string())
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(marked > 0)
            }
        }
    };
}
pub(super) use impl_storage;
