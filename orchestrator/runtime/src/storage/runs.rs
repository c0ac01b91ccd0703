//! Runs: creating them, reading and listing them, moving them through their statuses, and
//! asking to cancel them. Tables `runs`, `run_assets` and `run_tags`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::convert::{
    asset_key, json, literal_list, micros, opt_run_id, opt_time, rows_per_statement, run_id,
    run_status, status_counts, time,
};
use super::db::{Db, Sql, Tx};
use super::events::insert_events;
use super::{Result, SqlStorage, StorageError};
use crate::asset::AssetKey;
use crate::event::{Event, EventKind};
use crate::run::{NewRun, Run, RunId, RunStatus};

/// Which runs to list, newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFilter {
    /// Any of these statuses; empty means all.
    pub statuses: Vec<RunStatus>,
    /// Runs that selected this asset.
    pub asset_key: Option<AssetKey>,
    /// Runs over this partition key (the first key, for ranges).
    pub partition_key: Option<String>,
    /// Runs carrying this tag with this value.
    pub tag: Option<(String, String)>,
    /// Keyset pagination: only runs with `id` below this.
    pub before_id: Option<i64>,
    /// Keyset pagination the other way: only runs with `id` above this, the `limit` nearest
    /// to it (still listed newest first).
    pub after_id: Option<i64>,
    /// At most this many runs; `None` means no limit.
    pub limit: Option<u32>,
}

/// Runs and their statuses.
#[async_trait]
pub trait RunStorage: Send + Sync {
    /// Stores a new run in the status it carries (normally QUEUED).
    async fn create_run(&self, run: &NewRun) -> Result<Run>;

    async fn get_run(&self, run_id: RunId) -> Result<Option<Run>>;

    /// Runs matching the filter, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;

    /// Moves a run to `to` if that is legal from its current status, atomically, and returns
    /// it as updated. STARTED sets `started_at`; a terminal status sets `ended_at`. An illegal
    /// move fails with [`StorageError::IllegalTransition`] and changes nothing.
    async fn transition_run(&self, run_id: RunId, to: RunStatus, at: DateTime<Utc>) -> Result<Run>;

    /// Asks to cancel a run from any process: QUEUED becomes CANCELED at once; STARTING and
    /// STARTED become CANCELING (the worker sees it when it renews its lease, and stops).
    /// The matching RUN_CANCELING or RUN_CANCELED event is appended in the same transaction.
    /// A run already CANCELING is returned unchanged; a finished run is an IllegalTransition.
    async fn request_cancel(&self, run_id: RunId, now: DateTime<Utc>) -> Result<Run>;

    /// The number of runs carrying tag `key=value`, per status.
    async fn count_runs_by_status(
        &self,
        tag_key: &str,
        tag_value: &str,
    ) -> Result<Vec<(RunStatus, u64)>>;

    /// The number of runs in each status, over the whole history.
    async fn run_status_counts(&self) -> Result<Vec<(RunStatus, u64)>>;

    /// Deletes at most `limit` runs that ended before `before` (SUCCESS, FAILURE, CANCELED),
    /// oldest first, with their events, step logs, asset and tag rows, in one transaction.
    /// What the events derived stays (each asset partition's latest materialization, failure
    /// and check results), so assets keep their state. Runs in flight are never deleted.
    async fn prune_runs(&self, before: DateTime<Utc>, limit: u32) -> Result<Pruned>;
}

/// What [`RunStorage::prune_runs`] (and [`super::prune_in_batches`]) deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub runs: u64,
    pub events: u64,
    pub logs: u64,
    /// Schedule, sensor and automation ticks.
    pub ticks: u64,
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, other: Pruned) {
        self.runs += other.runs;
        self.events += other.events;
        self.logs += other.logs;
        self.ticks += other.ticks;
    }
}

/// The columns of `runs` that make a [`Run`], in [`RunRow`]'s order.
pub(super) const RUN_COLUMNS: &str = "id, run_id, status, selection, asset_keys, partition_key, \
     partition_key_end, step_subset, tags, parent_run_id, root_run_id, created_at, started_at, \
     ended_at, updated_at";

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
            status: run_status(&self.status)?,
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

/// Inserts `run` (its row and its asset and tag index rows) in the transaction `tx`: what
/// `create_run` does, shared with the methods that queue runs.
pub(super) async fn insert_run(db: &Db, tx: &mut Tx, run: &NewRun) -> Result<Run> {
    let keys: Vec<String> = run.asset_keys.iter().map(|k| k.to_string()).collect();
    let row: Option<RunRow> = tx
        .fetch_optional(
            Sql::new(format!(
                "INSERT INTO runs (run_id, status, selection, asset_keys, partition_key, \
                 partition_key_end, tags, parent_run_id, root_run_id, created_at, updated_at, \
                 step_subset) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) \
                 ON CONFLICT (run_id) DO NOTHING RETURNING {RUN_COLUMNS}"
            ))
            .bind(run.run_id.to_string())
            .bind(run.status.as_str())
            .bind(run.selection.as_str())
            .bind_json(&keys)
            .bind(run.partition_key.as_deref())
            .bind(run.partition_key_end.as_deref())
            .bind_json(&run.tags)
            .bind(run.parent_run_id.map(|id| id.to_string()))
            .bind(run.root_run_id.map(|id| id.to_string()))
            .bind(micros(run.created_at))
            .bind_opt_json(run.step_subset.as_ref()),
        )
        .await?;
    let Some(row) = row else {
        return Err(StorageError::RunExists(run.run_id));
    };
    let id = run.run_id.to_string();

    let mut unique_keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    unique_keys.sort_unstable();
    unique_keys.dedup();
    for chunk in unique_keys.chunks(rows_per_statement(db.max_params(), 2)) {
        let mut sql = Sql::new("INSERT INTO run_assets (run_id, asset_key)");
        sql.push_values(chunk, |row, key| {
            row.bind(id.as_str()).bind(*key);
        });
        tx.execute(sql.not_persistent()).await?;
    }

    let tags: Vec<(&String, &String)> = run.tags.iter().collect();
    for chunk in tags.chunks(rows_per_statement(db.max_params(), 3)) {
        let mut sql = Sql::new("INSERT INTO run_tags (run_id, key, value)");
        sql.push_values(chunk, |row, (key, value)| {
            row.bind(id.as_str())
                .bind(key.as_str())
                .bind(value.as_str());
        });
        tx.execute(sql.not_persistent()).await?;
    }
    row.into_run()
}

#[async_trait]
impl RunStorage for SqlStorage {
    async fn create_run(&self, run: &NewRun) -> Result<Run> {
        let queued = run.status == RunStatus::Queued;
        let mut tx = self.db.begin_write().await?;
        let created = insert_run(&self.db, &mut tx, run).await?;
        if queued && let Some(notify) = self.db.queue_notification() {
            tx.execute(notify).await?;
        }
        tx.commit().await?;
        if queued {
            self.db.queue_committed();
        }
        Ok(created)
    }

    async fn get_run(&self, run_id: RunId) -> Result<Option<Run>> {
        let row: Option<RunRow> = self
            .db
            .fetch_optional(
                Sql::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"))
                    .bind(run_id.to_string()),
            )
            .await?;
        row.map(RunRow::into_run).transpose()
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut sql = Sql::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1"));
        if !filter.statuses.is_empty() {
            sql.push(" AND status IN (")
                .push(&literal_list(filter.statuses.iter().map(|s| s.as_str())))
                .push(")");
        }
        if let Some(key) = &filter.asset_key {
            sql.push(" AND run_id IN (SELECT run_id FROM run_assets WHERE asset_key = ")
                .push_bind(key.to_string())
                .push(")");
        }
        if let Some(partition) = &filter.partition_key {
            sql.push(" AND partition_key = ")
                .push_bind(partition.as_str());
        }
        if let Some((key, value)) = &filter.tag {
            sql.push(" AND run_id IN (SELECT run_id FROM run_tags WHERE key = ")
                .push_bind(key.as_str())
                .push(" AND value = ")
                .push_bind(value.as_str())
                .push(")");
        }
        if let Some(before) = filter.before_id {
            sql.push(" AND id < ").push_bind(before);
        }
        if let Some(after) = filter.after_id {
            sql.push(" AND id > ").push_bind(after);
        }
        // Paging towards newer runs takes the nearest ones first, then lists them newest
        // first like every page.
        sql.push(if filter.after_id.is_some() {
            " ORDER BY id ASC"
        } else {
            " ORDER BY id DESC"
        });
        if let Some(limit) = filter.limit {
            sql.push(" LIMIT ").push_bind(i64::from(limit));
        }
        let rows: Vec<RunRow> = self.db.fetch_all(sql).await?;
        let mut runs = rows
            .into_iter()
            .map(RunRow::into_run)
            .collect::<Result<Vec<_>>>()?;
        if filter.after_id.is_some() {
            runs.reverse();
        }
        Ok(runs)
    }

    async fn transition_run(&self, run_id: RunId, to: RunStatus, at: DateTime<Utc>) -> Result<Run> {
        let from = to.predecessors();
        // A run that is over holds no lease: the reaper never sees it.
        let lease = if to.is_terminal() {
            ", lease_owner = NULL, lease_expires_at = NULL"
        } else {
            ""
        };
        let text = format!(
            "UPDATE runs SET status = $1, updated_at = $2, \
             started_at = COALESCE($3, started_at), ended_at = COALESCE($4, ended_at){lease} \
             WHERE run_id = $5 AND status IN ({}) RETURNING {RUN_COLUMNS}",
            literal_list(from.iter().map(|s| s.as_str())),
        );
        let at = micros(at);
        // A run that changes between the refused update and the read is tried again, so that
        // the error names a status from which `to` is really illegal.
        for _ in 0..8 {
            if !from.is_empty() {
                let row: Option<RunRow> = self
                    .db
                    .fetch_optional(
                        Sql::new(text.as_str())
                            .bind(to.as_str())
                            .bind(at)
                            .bind((to == RunStatus::Started).then_some(at))
                            .bind(to.is_terminal().then_some(at))
                            .bind(run_id.to_string()),
                    )
                    .await?;
                if let Some(row) = row {
                    return row.into_run();
                }
            }
            match self.get_run(run_id).await? {
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

    async fn request_cancel(&self, run_id: RunId, now: DateTime<Utc>) -> Result<Run> {
        let mut tx = self.db.begin_write().await?;
        // The status read here fences the update: the row stays locked (Postgres) or the
        // database stays locked (SQLite) until the commit.
        let row: Option<RunRow> = tx
            .fetch_optional(
                Sql::new(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1{}",
                    self.db.for_update()
                ))
                .bind(run_id.to_string()),
            )
            .await?;
        let Some(row) = row else {
            return Err(StorageError::RunNotFound(run_id));
        };
        let run = row.into_run()?;
        let (to, message) = match run.status {
            RunStatus::Queued => (RunStatus::Canceled, "canceled before it started"),
            RunStatus::Starting | RunStatus::Started => (RunStatus::Canceling, "cancel requested"),
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
        let row: Option<RunRow> = tx
            .fetch_optional(
                Sql::new(format!(
                    "UPDATE runs SET status = $1, updated_at = $2, \
                     ended_at = COALESCE($3, ended_at){lease} \
                     WHERE run_id = $4 AND status = $5 RETURNING {RUN_COLUMNS}"
                ))
                .bind(to.as_str())
                .bind(at)
                .bind(to.is_terminal().then_some(at))
                .bind(run_id.to_string())
                .bind(run.status.as_str()),
            )
            .await?;
        let Some(row) = row else {
            return Err(StorageError::Corrupt(format!(
                "run {run_id} changed status while it was locked for cancellation"
            )));
        };
        let event = Event::new(run_id, EventKind::for_run_status(to), now).message(message);
        insert_events(&self.db, &mut tx, &[event]).await?;
        tx.commit().await?;
        row.into_run()
    }

    async fn count_runs_by_status(
        &self,
        tag_key: &str,
        tag_value: &str,
    ) -> Result<Vec<(RunStatus, u64)>> {
        let rows: Vec<(String, i64)> = self
            .db
            .fetch_all(
                Sql::new(
                    "SELECT runs.status, COUNT(*) FROM run_tags \
                     JOIN runs ON runs.run_id = run_tags.run_id \
                     WHERE run_tags.key = $1 AND run_tags.value = $2 GROUP BY runs.status",
                )
                .bind(tag_key)
                .bind(tag_value),
            )
            .await?;
        status_counts(rows)
    }

    async fn run_status_counts(&self) -> Result<Vec<(RunStatus, u64)>> {
        let rows: Vec<(String, i64)> = self
            .db
            .fetch_all(Sql::new(
                "SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status",
            ))
            .await?;
        rows.into_iter()
            .map(|(status, n)| Ok((run_status(&status)?, super::convert::count(n))))
            .collect()
    }

    async fn prune_runs(&self, before: DateTime<Utc>, limit: u32) -> Result<Pruned> {
        let mut tx = self.db.begin_write().await?;
        let ids: Vec<(String,)> = tx
            .fetch_all(
                Sql::new(
                    "SELECT run_id FROM runs WHERE status IN ('SUCCESS', 'FAILURE', 'CANCELED') \
                     AND ended_at < $1 ORDER BY ended_at, id LIMIT $2",
                )
                .bind(micros(before))
                .bind(i64::from(limit)),
            )
            .await?;
        if ids.is_empty() {
            return Ok(Pruned::default());
        }
        let mut pruned = Pruned::default();
        // The runs' check results, but the latest of each check on each partition (the
        // asset's current check state).
        let mut sql = Sql::new(
            "DELETE FROM asset_check_results WHERE EXISTS (SELECT 1 FROM asset_check_results n \
             WHERE n.asset_key = asset_check_results.asset_key \
             AND n.partition_key = asset_check_results.partition_key \
             AND n.check_name = asset_check_results.check_name \
             AND n.id > asset_check_results.id) AND run_id IN (",
        );
        sql.push_bind_list(ids.iter().map(|(id,)| id.as_str()))
            .push(")");
        tx.execute(sql.not_persistent()).await?;
        for table in ["run_assets", "run_tags", "step_logs", "event_log", "runs"] {
            let mut sql = Sql::new(format!("DELETE FROM {table} WHERE run_id IN ("));
            sql.push_bind_list(ids.iter().map(|(id,)| id.as_str()))
                .push(")");
            let n = tx.execute(sql.not_persistent()).await?;
            match table {
                "event_log" => pruned.events = n,
                "step_logs" => pruned.logs = n,
                "runs" => pruned.runs = n,
                _ => {}
            }
        }
        tx.commit().await?;
        Ok(pruned)
    }
}
