//! What the daemon's automation keeps: schedules switched on or off, schedule and sensor
//! ticks (each with the run it created), sensor cursors, and backfills (with the runs they
//! queued). Tables `schedules`, `schedule_ticks`, `sensor_cursors` and `backfills`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::convert::{micros, opt_run_id, time};
use super::db::Sql;
use super::queue::enqueue_runs;
use super::{Result, SqlStorage, StorageError};
use crate::request::tags;
use crate::run::{NewRun, RunId};

/// A schedule's stored state (on or off).
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleState {
    pub name: String,
    pub enabled: bool,
    pub updated_at: DateTime<Utc>,
}

/// What a schedule tick did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickStatus {
    /// A run was requested.
    Requested,
    /// No run: the tick's request could not be planned, or the policy skipped it.
    Skipped,
    /// A sensor's notification was sent (the tick's message says what).
    Notified,
}

impl TickStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TickStatus::Requested => "REQUESTED",
            TickStatus::Skipped => "SKIPPED",
            TickStatus::Notified => "NOTIFIED",
        }
    }
}

/// One recorded tick of a schedule. (schedule, tick_time) is unique: a tick is recorded, and
/// its run created, at most once however many daemons evaluate it.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    pub schedule: String,
    pub tick_time: DateTime<Utc>,
    pub status: TickStatus,
    pub run_id: Option<RunId>,
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A tick to record (see [`ScheduleStorage::record_tick`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NewTick<'a> {
    /// The schedule's (or sensor's) name.
    pub schedule: &'a str,
    pub tick_time: DateTime<Utc>,
    pub status: TickStatus,
    pub message: Option<&'a str>,
    /// The run the tick requests, created with it.
    pub run: Option<&'a NewRun>,
}

impl<'a> NewTick<'a> {
    /// A tick of `schedule` at `tick_time` that requests `run`.
    pub fn requested(schedule: &'a str, tick_time: DateTime<Utc>, run: &'a NewRun) -> Self {
        NewTick {
            schedule,
            tick_time,
            status: TickStatus::Requested,
            message: None,
            run: Some(run),
        }
    }

    /// A tick of `schedule` at `tick_time` that requests nothing, for `reason`.
    pub fn skipped(schedule: &'a str, tick_time: DateTime<Utc>, reason: &'a str) -> Self {
        NewTick {
            schedule,
            tick_time,
            status: TickStatus::Skipped,
            message: Some(reason),
            run: None,
        }
    }

    /// A tick of sensor `sensor` at `tick_time` that sent the notification `text`.
    pub fn notified(sensor: &'a str, tick_time: DateTime<Utc>, text: &'a str) -> Self {
        NewTick {
            schedule: sensor,
            tick_time,
            status: TickStatus::Notified,
            message: Some(text),
            run: None,
        }
    }

    /// With `message`.
    pub fn message(self, message: &'a str) -> Self {
        NewTick {
            message: Some(message),
            ..self
        }
    }
}

/// The outcome of recording a tick.
#[derive(Clone, Debug, PartialEq)]
pub enum TickRecord {
    /// This call recorded the tick (and created its run, if it carried one).
    Recorded(Tick),
    /// The tick was already recorded (by another daemon, or before a restart).
    AlreadyRecorded(Tick),
}

/// A backfill: runs over a range of partitions, queued together.
#[derive(Clone, Debug, PartialEq)]
pub struct Backfill {
    pub id: String,
    pub selection: String,
    pub partition_from: String,
    pub partition_to: String,
    /// How many runs it queued.
    pub run_count: u32,
    pub created_at: DateTime<Utc>,
}

/// Schedules, ticks, sensor cursors and backfills.
#[async_trait]
pub trait ScheduleStorage: Send + Sync {
    /// Turns a schedule on or off (creating its row).
    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<ScheduleState>;

    /// Every schedule that has a stored state.
    async fn schedule_states(&self) -> Result<Vec<ScheduleState>>;

    /// Records `tick` and, if it carries a run, creates that run (QUEUED, tagged with the
    /// schedule, with its RUN_ENQUEUED event) in the same transaction, unless the tick was
    /// already recorded, in which case nothing changes. This is what makes a tick produce
    /// exactly one run however many daemons evaluate it and however often they restart.
    async fn record_tick(&self, tick: &NewTick<'_>, now: DateTime<Utc>) -> Result<TickRecord>;

    /// A schedule's ticks, newest first.
    async fn schedule_ticks(&self, schedule: &str, limit: u32) -> Result<Vec<Tick>>;

    /// Records a backfill and queues its runs (each tagged `orch/backfill=<id>`, with their
    /// RUN_ENQUEUED events) in one transaction.
    async fn create_backfill(&self, backfill: &Backfill, runs: &[NewRun]) -> Result<()>;

    async fn get_backfill(&self, id: &str) -> Result<Option<Backfill>>;

    /// Backfills, newest first.
    async fn list_backfills(&self, limit: u32) -> Result<Vec<Backfill>>;

    async fn sensor_cursor(&self, sensor: &str) -> Result<Option<String>>;

    async fn set_sensor_cursor(&self, sensor: &str, cursor: &str, now: DateTime<Utc>)
    -> Result<()>;

    /// Retention: deletes up to `limit` schedule and sensor ticks recorded before `before`,
    /// never the latest of a schedule or sensor (where its next evaluation starts). Returns how
    /// many it deleted.
    async fn prune_schedule_ticks(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;
}

/// A `schedules` row.
#[derive(sqlx::FromRow)]
struct ScheduleRow {
    name: String,
    enabled: bool,
    updated_at: i64,
}

impl ScheduleRow {
    fn into_state(self) -> Result<ScheduleState> {
        Ok(ScheduleState {
            name: self.name,
            enabled: self.enabled,
            updated_at: time(self.updated_at)?,
        })
    }
}

/// The columns of `schedule_ticks` that make a [`Tick`], in [`TickRow`]'s order.
const TICK_COLUMNS: &str = "schedule, tick_time, status, run_id, message, created_at";

/// A `schedule_ticks` row.
#[derive(sqlx::FromRow)]
struct TickRow {
    schedule: String,
    tick_time: i64,
    status: String,
    run_id: Option<String>,
    message: Option<String>,
    created_at: i64,
}

impl TickRow {
    fn into_tick(self) -> Result<Tick> {
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

/// The columns of `backfills` that make a [`Backfill`], in [`BackfillRow`]'s order.
const BACKFILL_COLUMNS: &str = "id, selection, partition_from, partition_to, run_count, created_at";

/// A `backfills` row.
#[derive(sqlx::FromRow)]
struct BackfillRow {
    id: String,
    selection: String,
    partition_from: String,
    partition_to: String,
    run_count: i64,
    created_at: i64,
}

impl BackfillRow {
    fn into_backfill(self) -> Result<Backfill> {
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

#[async_trait]
impl ScheduleStorage for SqlStorage {
    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<ScheduleState> {
        let row: ScheduleRow = self
            .db
            .fetch_one(
                Sql::new(
                    "INSERT INTO schedules (name, enabled, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, \
                     updated_at = excluded.updated_at RETURNING name, enabled, updated_at",
                )
                .bind(name)
                .bind(enabled)
                .bind(micros(now)),
            )
            .await?;
        row.into_state()
    }

    async fn schedule_states(&self) -> Result<Vec<ScheduleState>> {
        let rows: Vec<ScheduleRow> = self
            .db
            .fetch_all(Sql::new(
                "SELECT name, enabled, updated_at FROM schedules ORDER BY name",
            ))
            .await?;
        rows.into_iter().map(ScheduleRow::into_state).collect()
    }

    async fn record_tick(&self, tick: &NewTick<'_>, now: DateTime<Utc>) -> Result<TickRecord> {
        let mut tx = self.db.begin_write().await?;
        // The primary key decides: a concurrent recorder of the same tick waits here
        // (Postgres) or for the write lock (SQLite) until this transaction ends.
        let inserted: Option<TickRow> = tx
            .fetch_optional(
                Sql::new(format!(
                    "INSERT INTO schedule_ticks (schedule, tick_time, status, run_id, message, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (schedule, tick_time) DO NOTHING RETURNING {TICK_COLUMNS}"
                ))
                .bind(tick.schedule)
                .bind(micros(tick.tick_time))
                .bind(tick.status.as_str())
                .bind(tick.run.map(|r| r.run_id.to_string()))
                .bind(tick.message)
                .bind(micros(now)),
            )
            .await?;
        if let Some(row) = inserted {
            let recorded = row.into_tick()?;
            if let Some(run) = tick.run {
                let runs = std::slice::from_ref(run);
                let tag = (tags::SCHEDULE, tick.schedule);
                enqueue_runs(&self.db, &mut tx, runs, tag).await?;
            }
            tx.commit().await?;
            if tick.run.is_some() {
                self.db.queue_committed();
            }
            return Ok(TickRecord::Recorded(recorded));
        }
        let existing: Option<TickRow> = tx
            .fetch_optional(
                Sql::new(format!(
                    "SELECT {TICK_COLUMNS} FROM schedule_ticks \
                     WHERE schedule = $1 AND tick_time = $2"
                ))
                .bind(tick.schedule)
                .bind(micros(tick.tick_time)),
            )
            .await?;
        tx.commit().await?;
        match existing {
            Some(row) => Ok(TickRecord::AlreadyRecorded(row.into_tick()?)),
            None => Err(StorageError::Corrupt(format!(
                "the tick of {} at {} is neither new nor recorded",
                tick.schedule, tick.tick_time
            ))),
        }
    }

    async fn schedule_ticks(&self, schedule: &str, limit: u32) -> Result<Vec<Tick>> {
        let rows: Vec<TickRow> = self
            .db
            .fetch_all(
                Sql::new(format!(
                    "SELECT {TICK_COLUMNS} FROM schedule_ticks WHERE schedule = $1 \
                     ORDER BY tick_time DESC LIMIT $2"
                ))
                .bind(schedule)
                .bind(i64::from(limit)),
            )
            .await?;
        rows.into_iter().map(TickRow::into_tick).collect()
    }

    async fn create_backfill(&self, backfill: &Backfill, runs: &[NewRun]) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        // `run_count` is the number of runs queued here, whatever the caller counted.
        tx.execute(
            Sql::new(
                "INSERT INTO backfills (id, selection, partition_from, partition_to, run_count, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(backfill.id.as_str())
            .bind(backfill.selection.as_str())
            .bind(backfill.partition_from.as_str())
            .bind(backfill.partition_to.as_str())
            .bind(i64::try_from(runs.len()).unwrap_or(i64::MAX))
            .bind(micros(backfill.created_at)),
        )
        .await?;
        let tag = (tags::BACKFILL, backfill.id.as_str());
        enqueue_runs(&self.db, &mut tx, runs, tag).await?;
        tx.commit().await?;
        if !runs.is_empty() {
            self.db.queue_committed();
        }
        Ok(())
    }

    async fn get_backfill(&self, id: &str) -> Result<Option<Backfill>> {
        let row: Option<BackfillRow> = self
            .db
            .fetch_optional(
                Sql::new(format!(
                    "SELECT {BACKFILL_COLUMNS} FROM backfills WHERE id = $1"
                ))
                .bind(id),
            )
            .await?;
        row.map(BackfillRow::into_backfill).transpose()
    }

    async fn list_backfills(&self, limit: u32) -> Result<Vec<Backfill>> {
        let rows: Vec<BackfillRow> = self
            .db
            .fetch_all(
                Sql::new(format!(
                    "SELECT {BACKFILL_COLUMNS} FROM backfills \
                     ORDER BY created_at DESC, id DESC LIMIT $1"
                ))
                .bind(i64::from(limit)),
            )
            .await?;
        rows.into_iter().map(BackfillRow::into_backfill).collect()
    }

    async fn sensor_cursor(&self, sensor: &str) -> Result<Option<String>> {
        let cursor: Option<(String,)> = self
            .db
            .fetch_optional(
                Sql::new("SELECT cursor FROM sensor_cursors WHERE name = $1").bind(sensor),
            )
            .await?;
        Ok(cursor.map(|(c,)| c))
    }

    async fn set_sensor_cursor(
        &self,
        sensor: &str,
        cursor: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.db
            .execute(
                Sql::new(
                    "INSERT INTO sensor_cursors (name, cursor, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, \
                     updated_at = excluded.updated_at",
                )
                .bind(sensor)
                .bind(cursor)
                .bind(micros(now)),
            )
            .await?;
        Ok(())
    }

    async fn prune_schedule_ticks(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        self.db
            .execute(
                Sql::new(
                    "DELETE FROM schedule_ticks WHERE (schedule, tick_time) IN (\
                     SELECT t.schedule, t.tick_time FROM schedule_ticks t \
                     WHERE t.created_at < $1 AND t.tick_time < (SELECT max(m.tick_time) \
                     FROM schedule_ticks m WHERE m.schedule = t.schedule) \
                     ORDER BY t.created_at LIMIT $2)",
                )
                .bind(micros(before))
                .bind(i64::from(limit)),
            )
            .await
    }
}
