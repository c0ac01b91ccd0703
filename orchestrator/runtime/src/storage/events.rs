//! The event log: a run's events and step logs as they happen, and what derives from the
//! events in the same transaction (the latest materialization and failure per asset partition,
//! check results: see [`super::derived`]). Tables `event_log` and `step_logs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::convert::{asset_key, literal_list, micros, rows_per_statement, run_id, time};
use super::db::{Db, Sql, Tx};
use super::derived::{self, AssetPartitionRecord, CheckRecord};
use super::{Result, SqlStorage, StorageError};
use crate::asset::AssetKey;
use crate::event::{Event, EventBody, EventKind, LogLevel, LogLine, LogStream, StoredEvent};
use crate::run::RunId;

/// Which event-log entries to read for a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFilter {
    /// Only events with an id above this (for tailing a live run).
    pub after_id: Option<i64>,
    /// Only these kinds; empty means all.
    pub kinds: Vec<EventKind>,
    pub step_key: Option<String>,
    pub limit: Option<u32>,
}

/// Events, logs, and the asset state derived from the events.
#[async_trait]
pub trait EventLogStorage: Send + Sync {
    /// Appends events in order, in one transaction, and updates what derives from them: the
    /// latest materialization and failure per asset partition, and check results.
    async fn append_events(&self, events: &[Event]) -> Result<()>;

    /// A run's events in the order they were appended.
    async fn run_events(&self, run_id: RunId, filter: &EventFilter) -> Result<Vec<StoredEvent>>;

    /// Appends step log lines in order.
    async fn append_logs(&self, lines: &[LogLine]) -> Result<()>;

    /// A run's log lines (one step's, if given) in the order they were appended.
    async fn step_logs(&self, run_id: RunId, step_key: Option<&str>) -> Result<Vec<LogLine>>;

    /// The state of every recorded partition of the given assets (all assets if empty).
    async fn asset_partitions(&self, asset_keys: &[AssetKey]) -> Result<Vec<AssetPartitionRecord>>;

    /// The latest materialization of each given asset over all its partitions (all assets if
    /// empty), one record per asset that has ever been materialized or failed.
    async fn latest_by_asset(&self, asset_keys: &[AssetKey]) -> Result<Vec<AssetPartitionRecord>>;

    /// An asset's check results, newest first.
    async fn check_results(&self, asset_key: &AssetKey, limit: u32) -> Result<Vec<CheckRecord>>;

    /// Events of every run with an id above `after_id`, of the given kinds (all if empty), in
    /// id order, at most `limit`: what sensors read, keeping the last id as their cursor.
    ///
    /// Ids grow in append order, but on Postgres they are taken from a sequence before the
    /// appending transaction commits, so two concurrent appends may become visible out of id
    /// order: an event may appear just below an id already read. A reader that must not miss
    /// one re-reads a short window behind its cursor (and skips the ids it has seen).
    async fn events_after(
        &self,
        after_id: i64,
        kinds: &[EventKind],
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    /// Events about one asset of the given kinds (all if empty), newest first, with ids below
    /// `before_id` if given (keyset pagination), at most `limit`: its materialization history.
    async fn asset_events(
        &self,
        asset_key: &AssetKey,
        kinds: &[EventKind],
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;
}

/// The columns of `event_log` that make a [`StoredEvent`], in [`EventRow`]'s order.
const EVENT_COLUMNS: &str =
    "id, run_id, step_key, asset_key, partition_key, event_type, timestamp, body";

/// An `event_log` row.
#[derive(sqlx::FromRow)]
struct EventRow {
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
    fn into_event(self) -> Result<StoredEvent> {
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

fn events(rows: Vec<EventRow>) -> Result<Vec<StoredEvent>> {
    rows.into_iter().map(EventRow::into_event).collect()
}

/// A `step_logs` row.
#[derive(sqlx::FromRow)]
struct LogRow {
    run_id: String,
    step_key: String,
    stream: String,
    level: String,
    timestamp: i64,
    message: String,
}

impl LogRow {
    fn into_line(self) -> Result<LogLine> {
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

/// Appends `events` and what derives from them in the transaction `tx`: what `append_events`
/// does, shared with the methods that record run events (queueing, cancelling, failing).
pub(super) async fn insert_events(db: &Db, tx: &mut Tx, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids = tx.allocate_ids("event_log", events.len()).await?;
    let rows = rows_per_statement(db.max_params(), 8);
    for (events, ids) in events.chunks(rows).zip(ids.chunks(rows)) {
        let mut sql = Sql::new(
            "INSERT INTO event_log (id, run_id, step_key, asset_key, partition_key, event_type, \
             timestamp, body)",
        );
        sql.push_values(events.iter().zip(ids), |row, (event, id)| {
            row.bind(*id)
                .bind(event.run_id.to_string())
                .bind(event.step_key.as_deref())
                .bind(event.asset_key.as_ref().map(|k| k.to_string()))
                .bind(event.partition_key.as_deref())
                .bind(event.kind.as_str())
                .bind(micros(event.timestamp))
                .bind_json(&event.body);
        });
        tx.execute(sql.not_persistent()).await?;
    }
    derived::write(db, tx, &derived::derive(events, &ids)).await
}

/// Ends, in the transaction `tx`, every step of `run_id` whose latest step event leaves it in
/// flight (started, or up for retry): a `kind` event (`STEP_FAILURE` or `STEP_CANCELED`) at
/// `at` saying `why`, with the step's asset and partitions. For runs that end without their
/// executor (its process died and the lease expired), so that no step stays STARTED after its
/// run ended. Returns how many steps it ended.
pub(super) async fn end_open_steps(
    db: &Db,
    tx: &mut Tx,
    run_id: RunId,
    at: DateTime<Utc>,
    kind: EventKind,
    why: &str,
) -> Result<usize> {
    let step_kinds = [
        EventKind::StepStart,
        EventKind::StepSuccess,
        EventKind::StepFailure,
        EventKind::StepUpForRetry,
        EventKind::StepSkipped,
        EventKind::StepCanceled,
    ];
    let rows: Vec<EventRow> = tx
        .fetch_all(
            Sql::new(format!(
                "SELECT {EVENT_COLUMNS} FROM event_log WHERE run_id = $1 \
                 AND step_key IS NOT NULL AND event_type IN ({}) ORDER BY id",
                literal_list(step_kinds.iter().map(|k| k.as_str()))
            ))
            .bind(run_id.to_string()),
        )
        .await?;
    // The latest step event of each step, and the step's start (for its asset and partitions).
    let mut latest: std::collections::BTreeMap<String, (EventKind, Option<Event>)> =
        std::collections::BTreeMap::new();
    for stored in events(rows)? {
        let event = stored.event;
        let Some(step) = event.step_key.clone() else {
            continue;
        };
        let entry = latest.entry(step).or_insert((event.kind, None));
        entry.0 = event.kind;
        if event.kind == EventKind::StepStart {
            entry.1 = Some(event);
        }
    }
    let ended: Vec<Event> = latest
        .into_iter()
        .filter(|(_, (last, _))| matches!(last, EventKind::StepStart | EventKind::StepUpForRetry))
        .map(|(step, (_, start))| {
            let mut end = Event::new(run_id, kind, at).step(step).message(why);
            if let Some(start) = start {
                end.asset_key = start.asset_key;
                end.partition_key = start.partition_key;
                end.body.partition_key_end = start.body.partition_key_end;
                end.body.attempt = start.body.attempt;
            }
            end
        })
        .collect();
    insert_events(db, tx, &ended).await?;
    Ok(ended.len())
}

#[async_trait]
impl EventLogStorage for SqlStorage {
    async fn append_events(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await?;
        insert_events(&self.db, &mut tx, events).await?;
        tx.commit().await
    }

    async fn run_events(&self, run_id: RunId, filter: &EventFilter) -> Result<Vec<StoredEvent>> {
        let mut sql = Sql::new(format!(
            "SELECT {EVENT_COLUMNS} FROM event_log WHERE run_id = "
        ));
        sql.push_bind(run_id.to_string());
        if let Some(after) = filter.after_id {
            sql.push(" AND id > ").push_bind(after);
        }
        if !filter.kinds.is_empty() {
            sql.push(" AND event_type IN (")
                .push(&literal_list(filter.kinds.iter().map(|k| k.as_str())))
                .push(")");
        }
        if let Some(step) = &filter.step_key {
            sql.push(" AND step_key = ").push_bind(step.as_str());
        }
        sql.push(" ORDER BY id");
        if let Some(limit) = filter.limit {
            sql.push(" LIMIT ").push_bind(i64::from(limit));
        }
        events(self.db.fetch_all(sql).await?)
    }

    async fn append_logs(&self, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await?;
        let ids = tx.allocate_ids("step_logs", lines.len()).await?;
        let rows = rows_per_statement(self.db.max_params(), 7);
        for (lines, ids) in lines.chunks(rows).zip(ids.chunks(rows)) {
            let mut sql = Sql::new(
                "INSERT INTO step_logs (id, run_id, step_key, stream, level, timestamp, message)",
            );
            sql.push_values(lines.iter().zip(ids), |row, (line, id)| {
                row.bind(*id)
                    .bind(line.run_id.to_string())
                    .bind(line.step_key.as_str())
                    .bind(line.stream.as_str())
                    .bind(line.level.as_str())
                    .bind(micros(line.timestamp))
                    .bind(line.message.as_str());
            });
            tx.execute(sql.not_persistent()).await?;
        }
        tx.commit().await
    }

    async fn step_logs(&self, run_id: RunId, step_key: Option<&str>) -> Result<Vec<LogLine>> {
        const SELECT: &str = "SELECT run_id, step_key, stream, level, timestamp, message \
                              FROM step_logs WHERE run_id = $1";
        let sql = match step_key {
            Some(step) => Sql::new(format!("{SELECT} AND step_key = $2 ORDER BY id"))
                .bind(run_id.to_string())
                .bind(step),
            None => Sql::new(format!("{SELECT} ORDER BY id")).bind(run_id.to_string()),
        };
        let rows: Vec<LogRow> = self.db.fetch_all(sql).await?;
        rows.into_iter().map(LogRow::into_line).collect()
    }

    async fn asset_partitions(&self, asset_keys: &[AssetKey]) -> Result<Vec<AssetPartitionRecord>> {
        derived::asset_partitions(&self.db, asset_keys).await
    }

    async fn latest_by_asset(&self, asset_keys: &[AssetKey]) -> Result<Vec<AssetPartitionRecord>> {
        derived::latest_by_asset(&self.db, asset_keys).await
    }

    async fn check_results(&self, asset_key: &AssetKey, limit: u32) -> Result<Vec<CheckRecord>> {
        derived::check_results(&self.db, asset_key, limit).await
    }

    async fn events_after(
        &self,
        after_id: i64,
        kinds: &[EventKind],
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let mut sql = Sql::new(format!("SELECT {EVENT_COLUMNS} FROM event_log WHERE id > "));
        sql.push_bind(after_id);
        if !kinds.is_empty() {
            sql.push(" AND event_type IN (")
                .push(&literal_list(kinds.iter().map(|k| k.as_str())))
                .push(")");
        }
        sql.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
        events(self.db.fetch_all(sql).await?)
    }

    async fn asset_events(
        &self,
        asset_key: &AssetKey,
        kinds: &[EventKind],
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let mut sql = Sql::new(format!(
            "SELECT {EVENT_COLUMNS} FROM event_log WHERE asset_key = "
        ));
        sql.push_bind(asset_key.to_string());
        if !kinds.is_empty() {
            sql.push(" AND event_type IN (")
                .push(&literal_list(kinds.iter().map(|k| k.as_str())))
                .push(")");
        }
        if let Some(before) = before_id {
            sql.push(" AND id < ").push_bind(before);
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit));
        events(self.db.fetch_all(sql).await?)
    }
}
