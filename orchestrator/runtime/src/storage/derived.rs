//! What the event log derives, written in the transaction that appends the events: the latest
//! materialization and the latest failure per asset partition (`asset_partitions`) and check
//! results (`asset_check_results`), and how they are read back.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::Result;
use super::convert::{
    IN_CHUNK, asset_key, db_partition, json, micros, partition_from_db, rows_per_statement, run_id,
    time, unique_keys,
};
use super::db::{Db, Sql, Tx};
use crate::asset::AssetKey;
use crate::event::{CheckEvaluation, Event, EventKind};
use crate::metadata::Metadata;
use crate::run::RunId;

/// The state of one partition of one asset (the partition is `None` for unpartitioned
/// assets), derived from the event log.
#[derive(Clone, Debug, PartialEq)]
pub struct AssetPartitionRecord {
    pub asset_key: AssetKey,
    pub partition_key: Option<String>,
    /// The latest materialization, if any.
    pub materialization: Option<MaterializationRecord>,
    /// The latest failure, if any (it may be older than the latest materialization).
    pub last_failure: Option<FailureRecord>,
}

impl AssetPartitionRecord {
    /// Whether the latest thing that happened to this partition is a failure.
    pub fn is_failed(&self) -> bool {
        match (&self.materialization, &self.last_failure) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(m), Some(f)) => f.timestamp > m.timestamp,
        }
    }
}

/// The latest materialization of an asset partition.
#[derive(Clone, Debug, PartialEq)]
pub struct MaterializationRecord {
    pub run_id: RunId,
    pub event_id: i64,
    pub timestamp: DateTime<Utc>,
    pub metadata: Metadata,
    pub code_version: Option<String>,
}

/// The latest failure to materialize an asset partition.
#[derive(Clone, Debug, PartialEq)]
pub struct FailureRecord {
    pub run_id: RunId,
    pub timestamp: DateTime<Utc>,
    pub message: Option<String>,
}

/// One stored check result.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckRecord {
    pub event_id: i64,
    pub run_id: RunId,
    pub asset_key: AssetKey,
    pub partition_key: Option<String>,
    pub evaluation: CheckEvaluation,
    pub metadata: Metadata,
    pub timestamp: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------------
// Writing

/// The latest materialization of an asset partition within one append.
struct MaterializationUpsert<'a> {
    asset_key: String,
    partition_key: &'a str,
    run_id: String,
    event_id: i64,
    timestamp: i64,
    metadata: &'a Metadata,
    code_version: Option<&'a str>,
}

/// The latest failure of an asset partition within one append.
struct FailureUpsert<'a> {
    asset_key: String,
    partition_key: &'a str,
    run_id: String,
    event_id: i64,
    timestamp: i64,
    message: Option<&'a str>,
}

/// A check result to insert.
struct CheckInsert<'a> {
    event_id: i64,
    run_id: String,
    asset_key: String,
    partition_key: &'a str,
    check: &'a CheckEvaluation,
    metadata: &'a Metadata,
    timestamp: i64,
}

/// What one append derives. Upserts hold one row per asset partition (the last in the batch),
/// since Postgres refuses to update one row twice in one `ON CONFLICT` statement.
#[derive(Default)]
pub(super) struct Derived<'a> {
    materializations: Vec<MaterializationUpsert<'a>>,
    failures: Vec<FailureUpsert<'a>>,
    checks: Vec<CheckInsert<'a>>,
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

/// Writes what an append derives, in its transaction. An upsert never replaces a row derived
/// from a later event (a higher event id).
pub(super) async fn write(db: &Db, tx: &mut Tx, derived: &Derived<'_>) -> Result<()> {
    for chunk in derived
        .materializations
        .chunks(rows_per_statement(db.max_params(), 8))
    {
        let mut sql = Sql::new(
            "INSERT INTO asset_partitions (asset_key, partition_key, mat_run_id, mat_event_id, \
             mat_timestamp, mat_metadata, mat_code_version, updated_at)",
        );
        sql.push_values(chunk, |row, m| {
            row.bind(m.asset_key.as_str())
                .bind(m.partition_key)
                .bind(m.run_id.as_str())
                .bind(m.event_id)
                .bind(m.timestamp)
                .bind_json(m.metadata)
                .bind(m.code_version)
                .bind(m.timestamp);
        });
        sql.push(
            " ON CONFLICT (asset_key, partition_key) DO UPDATE SET \
             mat_run_id = excluded.mat_run_id, mat_event_id = excluded.mat_event_id, \
             mat_timestamp = excluded.mat_timestamp, mat_metadata = excluded.mat_metadata, \
             mat_code_version = excluded.mat_code_version, updated_at = excluded.updated_at \
             WHERE asset_partitions.mat_event_id IS NULL \
             OR asset_partitions.mat_event_id < excluded.mat_event_id",
        );
        tx.execute(sql.not_persistent()).await?;
    }
    for chunk in derived
        .failures
        .chunks(rows_per_statement(db.max_params(), 7))
    {
        let mut sql = Sql::new(
            "INSERT INTO asset_partitions (asset_key, partition_key, failure_run_id, \
             failure_event_id, failure_timestamp, failure_message, updated_at)",
        );
        sql.push_values(chunk, |row, f| {
            row.bind(f.asset_key.as_str())
                .bind(f.partition_key)
                .bind(f.run_id.as_str())
                .bind(f.event_id)
                .bind(f.timestamp)
                .bind(f.message)
                .bind(f.timestamp);
        });
        sql.push(
            " ON CONFLICT (asset_key, partition_key) DO UPDATE SET \
             failure_run_id = excluded.failure_run_id, \
             failure_event_id = excluded.failure_event_id, \
             failure_timestamp = excluded.failure_timestamp, \
             failure_message = excluded.failure_message, updated_at = excluded.updated_at \
             WHERE asset_partitions.failure_event_id IS NULL \
             OR asset_partitions.failure_event_id < excluded.failure_event_id",
        );
        tx.execute(sql.not_persistent()).await?;
    }
    for chunk in derived
        .checks
        .chunks(rows_per_statement(db.max_params(), 10))
    {
        let mut sql = Sql::new(
            "INSERT INTO asset_check_results (event_id, run_id, asset_key, partition_key, \
             check_name, passed, severity, description, metadata, timestamp)",
        );
        sql.push_values(chunk, |row, c| {
            row.bind(c.event_id)
                .bind(c.run_id.as_str())
                .bind(c.asset_key.as_str())
                .bind(c.partition_key)
                .bind(c.check.check_name.as_str())
                .bind(c.check.passed)
                .bind(c.check.severity.as_str())
                .bind(c.check.description.as_deref())
                .bind_json(c.metadata)
                .bind(c.timestamp);
        });
        tx.execute(sql.not_persistent()).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading

/// The columns of `asset_partitions` that make an [`AssetPartitionRecord`].
const PARTITION_COLUMNS: &str = "asset_key, partition_key, mat_run_id, mat_event_id, \
     mat_timestamp, mat_metadata, mat_code_version, failure_run_id, failure_timestamp, \
     failure_message";

/// An `asset_partitions` row.
#[derive(sqlx::FromRow)]
struct PartitionRow {
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
    fn into_record(self) -> Result<AssetPartitionRecord> {
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
struct CheckRow {
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
    fn into_record(self) -> Result<CheckRecord> {
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

/// Every recorded partition of `asset_keys` (all if empty), by asset key, then partition
/// (unpartitioned first), independently of the database's collation.
pub(super) async fn asset_partitions(
    db: &Db,
    asset_keys: &[AssetKey],
) -> Result<Vec<AssetPartitionRecord>> {
    let select = format!("SELECT {PARTITION_COLUMNS} FROM asset_partitions");
    let mut rows: Vec<PartitionRow> = Vec::new();
    if asset_keys.is_empty() {
        rows = db.fetch_all(Sql::new(select)).await?;
    } else {
        for chunk in unique_keys(asset_keys).chunks(IN_CHUNK) {
            let mut sql = Sql::new(select.as_str());
            sql.push(" WHERE asset_key IN (")
                .push_bind_list(chunk.iter().map(String::as_str))
                .push(")");
            rows.extend(db.fetch_all::<PartitionRow>(sql.not_persistent()).await?);
        }
    }
    let mut records = rows
        .into_iter()
        .map(PartitionRow::into_record)
        .collect::<Result<Vec<_>>>()?;
    records.sort_by(|a, b| (&a.asset_key, &a.partition_key).cmp(&(&b.asset_key, &b.partition_key)));
    Ok(records)
}

/// One record per asset of `asset_keys` (all if empty): its latest materialization and its
/// latest failure over all partitions.
pub(super) async fn latest_by_asset(
    db: &Db,
    asset_keys: &[AssetKey],
) -> Result<Vec<AssetPartitionRecord>> {
    // The latest row per asset by `column` (an event id), over all partitions.
    let latest = async |column: &str, keys: &[String]| {
        let mut sql = Sql::new(format!(
            "SELECT {PARTITION_COLUMNS} FROM (SELECT {PARTITION_COLUMNS}, ROW_NUMBER() OVER \
             (PARTITION BY asset_key ORDER BY {column} DESC) AS rn \
             FROM asset_partitions WHERE {column} IS NOT NULL",
        ));
        if !keys.is_empty() {
            sql.push(" AND asset_key IN (")
                .push_bind_list(keys.iter().map(String::as_str))
                .push(")");
        }
        sql.push(") AS latest WHERE rn = 1");
        db.fetch_all::<PartitionRow>(sql.persistent(keys.is_empty()))
            .await
    };
    let mut materialized = Vec::new();
    let mut failed = Vec::new();
    if asset_keys.is_empty() {
        materialized = latest("mat_event_id", &[]).await?;
        failed = latest("failure_event_id", &[]).await?;
    } else {
        for chunk in unique_keys(asset_keys).chunks(IN_CHUNK) {
            materialized.extend(latest("mat_event_id", chunk).await?);
            failed.extend(latest("failure_event_id", chunk).await?);
        }
    }
    merge_latest(materialized, failed)
}

/// One record per asset from its latest materialization row and its latest failure row (by
/// event id, over all partitions). The record's partition is the latest materialization's, or
/// the latest failure's if it was never materialized.
fn merge_latest(
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

/// An asset's check results, newest first.
pub(super) async fn check_results(
    db: &Db,
    asset_key: &AssetKey,
    limit: u32,
) -> Result<Vec<CheckRecord>> {
    let rows: Vec<CheckRow> = db
        .fetch_all(
            Sql::new(
                "SELECT event_id, run_id, asset_key, partition_key, check_name, passed, \
                 severity, description, metadata, timestamp FROM asset_check_results \
                 WHERE asset_key = $1 ORDER BY event_id DESC LIMIT $2",
            )
            .bind(asset_key.to_string())
            .bind(i64::from(limit)),
        )
        .await?;
    rows.into_iter().map(CheckRow::into_record).collect()
}
