//! The streaming workers' heartbeats (`stream_worker_heartbeats`): one row per worker, replaced
//! at each beat, read by the UI and by `orch stream status`. Kept apart from the [`Storage`]
//! trait: the workers need only this table, not the run history's engine.
//!
//! [`Storage`]: super::Storage

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row, SqlitePool};

use super::{PostgresStorage, Result, SqliteStorage, StorageError, redact_url};

/// One worker's last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamWorkerHeartbeat {
    pub worker_id: String,
    pub group_id: String,
    /// A JSON array of topic names.
    pub topics: String,
    /// A JSON array of `{"topic": ..., "partition": ...}` held now.
    pub partitions: String,
    pub lag: Option<i64>,
    pub events_in: i64,
    pub events_written: i64,
    pub dead_lettered: i64,
    pub last_file: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Where heartbeats are written: the run history's database, migrated on connect.
#[derive(Debug, Clone)]
pub enum StreamHeartbeatStore {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

const UPSERT: &str = "INSERT INTO stream_worker_heartbeats (worker_id, group_id, topics, \
     partitions, lag, events_in, events_written, dead_lettered, last_file, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (worker_id) DO UPDATE SET group_id = excluded.group_id, \
     topics = excluded.topics, partitions = excluded.partitions, lag = excluded.lag, \
     events_in = excluded.events_in, events_written = excluded.events_written, \
     dead_lettered = excluded.dead_lettered, last_file = excluded.last_file, \
     updated_at = excluded.updated_at";

const SELECT: &str = "SELECT worker_id, group_id, topics, partitions, lag, events_in, \
     events_written, dead_lettered, last_file, updated_at FROM stream_worker_heartbeats \
     ORDER BY worker_id";

impl StreamHeartbeatStore {
    /// Connects to the run history at `url` (`postgres://...` or `sqlite://PATH`) and applies
    /// pending migrations.
    pub async fn connect(url: &str) -> Result<StreamHeartbeatStore> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StreamHeartbeatStore::Postgres(
                PostgresStorage::connect(url).await?.pool().clone(),
            ))
        } else if url.starts_with("sqlite:") {
            Ok(StreamHeartbeatStore::Sqlite(
                SqliteStorage::connect(url).await?.pool().clone(),
            ))
        } else {
            Err(StorageError::UnsupportedUrl {
                url: redact_url(url),
            })
        }
    }

    /// Replaces the worker's row.
    pub async fn upsert(&self, beat: &StreamWorkerHeartbeat) -> Result<()> {
        let at = beat.updated_at.timestamp_micros();
        match self {
            StreamHeartbeatStore::Postgres(pool) => {
                sqlx::query(UPSERT)
                    .bind(&beat.worker_id)
                    .bind(&beat.group_id)
                    .bind(&beat.topics)
                    .bind(&beat.partitions)
                    .bind(beat.lag)
                    .bind(beat.events_in)
                    .bind(beat.events_written)
                    .bind(beat.dead_lettered)
                    .bind(&beat.last_file)
                    .bind(at)
                    .execute(pool)
                    .await?;
            }
            StreamHeartbeatStore::Sqlite(pool) => {
                sqlx::query(UPSERT)
                    .bind(&beat.worker_id)
                    .bind(&beat.group_id)
                    .bind(&beat.topics)
                    .bind(&beat.partitions)
                    .bind(beat.lag)
                    .bind(beat.events_in)
                    .bind(beat.events_written)
                    .bind(beat.dead_lettered)
                    .bind(&beat.last_file)
                    .bind(at)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Every worker's last heartbeat, by worker id.
    pub async fn list(&self) -> Result<Vec<StreamWorkerHeartbeat>> {
        let rows = match self {
            StreamHeartbeatStore::Postgres(pool) => sqlx::query(SELECT)
                .fetch_all(pool)
                .await?
                .iter()
                .map(read_row)
                .collect::<Result<Vec<_>>>()?,
            StreamHeartbeatStore::Sqlite(pool) => sqlx::query(SELECT)
                .fetch_all(pool)
                .await?
                .iter()
                .map(read_row)
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(rows)
    }
}

fn read_row<'r, R>(row: &'r R) -> Result<StreamWorkerHeartbeat>
where
    R: Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let micros: i64 = row.try_get("updated_at")?;
    Ok(StreamWorkerHeartbeat {
        worker_id: row.try_get("worker_id")?,
        group_id: row.try_get("group_id")?,
        topics: row.try_get("topics")?,
        partitions: row.try_get("partitions")?,
        lag: row.try_get("lag")?,
        events_in: row.try_get("events_in")?,
        events_written: row.try_get("events_written")?,
        dead_lettered: row.try_get("dead_lettered")?,
        last_file: row.try_get("last_file")?,
        updated_at: DateTime::from_timestamp_micros(micros).ok_or_else(|| {
            StorageError::Corrupt(format!(
                "stream worker heartbeat time {micros} is out of range"
            ))
        })?,
    })
}
