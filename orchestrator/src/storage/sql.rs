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
//! - `const MAX_PARAMS: usize`: the most bind parameters one statement may hold.
//!
//! Times are microseconds since the epoch; an unpartitioned asset has partition key `''` in
//! the derived tables.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::types::Json;

use super::{
    AssetPartitionRecord, CheckRecord, FailureRecord, MaterializationRecord, Result, StorageError,
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
        "id, run_id, status, selection, asset_keys, partition_key, partition_key_end, tags, \
         parent_run_id, root_run_id, created_at, started_at, ended_at, updated_at"
    };
}
pub(super) use run_columns;

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
/// `sqlx::Pool<$db>`, from the backend's inherent `begin_write`, `allocate_ids` and
/// `MAX_PARAMS` (see the module documentation).
macro_rules! impl_storage {
    ($storage:ty, $db:ty, $backend:expr) => {
        #[::async_trait::async_trait]
        impl $crate::storage::Storage for $storage {
            fn backend(&self) -> $crate::storage::Backend {
                $backend
            }

            async fn create_run(
                &self,
                run: &$crate::run::NewRun,
            ) -> $crate::storage::Result<$crate::run::Run> {
                use $crate::storage::sql::{RunRow, micros, rows_per_statement, run_columns};
                use $crate::storage::StorageError;
                use sqlx::types::Json;

                let keys: Vec<String> = run.asset_keys.iter().map(|k| k.to_string()).collect();
                let mut tx = self.begin_write().await?;
                let row: Option<RunRow> = sqlx::query_as(concat!(
                    "INSERT INTO runs (run_id, status, selection, asset_keys, partition_key, \
                     partition_key_end, tags, parent_run_id, root_run_id, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
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
                .fetch_optional(&mut *tx)
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
                    qb.build().persistent(false).execute(&mut *tx).await?;
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
                    qb.build().persistent(false).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                row.into_run()
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
                let sql = format!(
                    "UPDATE runs SET status = $1, updated_at = $2, \
                     started_at = COALESCE($3, started_at), ended_at = COALESCE($4, ended_at) \
                     WHERE run_id = $5 AND status IN ({}) RETURNING {}",
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
                use $crate::storage::sql::{derive, micros, rows_per_statement};
                use sqlx::types::Json;

                if events.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                let ids = Self::allocate_ids(&mut tx, "event_log", events.len()).await?;
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
                    qb.build().persistent(false).execute(&mut *tx).await?;
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
                    qb.build().persistent(false).execute(&mut *tx).await?;
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
                    qb.build().persistent(false).execute(&mut *tx).await?;
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
                    qb.build().persistent(false).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn run_events(
                &self,
                run_id: $crate::run::RunId,
                filter: &$crate::storage::EventFilter,
            ) -> $crate::storage::Result<Vec<$crate::event::StoredEvent>> {
                use $crate::storage::sql::{EventRow, literal_list};

                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, run_id, step_key, asset_key, partition_key, event_type, \
                     timestamp, body FROM event_log WHERE run_id = ",
                );
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
        }
    };
}
pub(super) use impl_storage;
