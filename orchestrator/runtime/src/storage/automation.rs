//! The automation tick's records: ticks, evaluations and per-asset state (migration 0009).
//! Tables `automation_ticks`, `automation_evaluations` and `automation_state`. A tick is
//! recorded exactly once across daemons by two unique keys: its time, and the tick it follows.
//! An asset's evaluations that requested runs are kept (until retention); of those that
//! requested nothing only the latest, which replaces the one before.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::convert::{micros, opt_time, run_id, time};
use super::db::Sql;
use super::queue::enqueue_runs;
use super::{Result, SqlStorage, StorageError};
use crate::request::tags;
use crate::run::RunId;

/// A recorded automation tick.
#[derive(Clone, Debug, PartialEq)]
pub struct AutomationTick {
    pub id: i64,
    pub tick_time: DateTime<Utc>,
    /// The tick this one followed (0 for the first).
    pub previous_id: i64,
    /// The daemon that evaluated it.
    pub daemon: String,
    pub evaluated_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub assets_evaluated: u32,
    /// Asset partitions requested.
    pub requested: u32,
    pub run_ids: Vec<RunId>,
}

/// A tick to record: `previous_id` must be the latest recorded tick's id (0 if none), or the
/// tick is refused.
#[derive(Clone, Debug)]
pub struct NewAutomationTick {
    pub tick_time: DateTime<Utc>,
    pub previous_id: i64,
    pub daemon: String,
    pub evaluated_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub assets_evaluated: u32,
    pub requested: u32,
}

/// One asset's evaluation at a tick.
#[derive(Clone, Debug, PartialEq)]
pub struct AutomationEvaluationRecord {
    pub tick_id: i64,
    pub tick_time: Option<DateTime<Utc>>,
    /// The asset key (user form, `a/b`).
    pub asset_key: String,
    /// The partitions requested (empty string: the unpartitioned asset).
    pub requested: Vec<String>,
    /// The runs that materialize them.
    pub run_ids: Vec<RunId>,
    /// The evaluated condition tree (`orch_core::automation::NodeEvaluation`) as JSON.
    pub tree: String,
}

/// The state an asset's next evaluation starts from (`orch_core::automation::AssetState` as
/// JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct AutomationStateRecord {
    pub asset_key: String,
    pub tick_id: i64,
    pub state: String,
}

/// Everything one tick writes, in one transaction.
#[derive(Clone, Debug)]
pub struct AutomationTickWrite<'a> {
    pub tick: &'a NewAutomationTick,
    pub runs: &'a [crate::run::NewRun],
    /// Evaluations, with `tick_id` ignored (the new tick's id is used).
    pub evaluations: &'a [AutomationEvaluationRecord],
    /// Changed states, with `tick_id` ignored.
    pub states: &'a [AutomationStateRecord],
}

/// Automation ticks, their evaluations and the state each asset's next evaluation starts from.
#[async_trait]
pub trait AutomationStorage: Send + Sync {
    /// Records a tick with its runs (queued, tagged with the tick), evaluations and changed
    /// states, in one transaction. `None` if another daemon recorded this tick time, or a tick
    /// after `previous_id`, first: then nothing is written.
    async fn record_automation_tick(
        &self,
        write: &AutomationTickWrite<'_>,
    ) -> Result<Option<AutomationTick>>;

    /// The latest ticks, newest first.
    async fn automation_ticks(&self, limit: u32) -> Result<Vec<AutomationTick>>;

    /// Every asset's stored state.
    async fn automation_states(&self) -> Result<Vec<AutomationStateRecord>>;

    /// The asset's latest evaluations, newest first.
    async fn automation_evaluations(
        &self,
        asset_key: &str,
        limit: u32,
    ) -> Result<Vec<AutomationEvaluationRecord>>;

    /// Retention: deletes up to `limit` ticks older than `before` with their evaluations,
    /// keeping the latest tick (the next one extends it) and the tick of each asset's latest
    /// evaluation (the UI shows why it last ran or did not). Returns how many ticks it deleted.
    async fn prune_automation_ticks(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;
}

/// The columns of `automation_ticks` that make an [`AutomationTick`], in [`TickRow`]'s order.
const TICK_COLUMNS: &str = "id, tick_time, previous_id, daemon, evaluated_at, duration_ms, \
     assets_evaluated, requested, run_ids";

/// An `automation_ticks` row.
#[derive(sqlx::FromRow)]
struct TickRow {
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

impl TickRow {
    fn into_tick(self) -> Result<AutomationTick> {
        Ok(AutomationTick {
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

/// An `automation_evaluations` row with its tick's time.
#[derive(sqlx::FromRow)]
struct EvaluationRow {
    tick_id: i64,
    tick_time: Option<i64>,
    asset_key: String,
    requested: String,
    run_ids: String,
    tree: String,
}

impl EvaluationRow {
    fn into_record(self) -> Result<AutomationEvaluationRecord> {
        Ok(AutomationEvaluationRecord {
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

fn json_strings(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

#[async_trait]
impl AutomationStorage for SqlStorage {
    async fn record_automation_tick(
        &self,
        write: &AutomationTickWrite<'_>,
    ) -> Result<Option<AutomationTick>> {
        let tick = write.tick;
        let run_ids: Vec<String> = write.runs.iter().map(|r| r.run_id.to_string()).collect();
        let mut tx = self.db.begin_write().await?;
        // Both unique keys decide: the tick time, and the tick it follows.
        let inserted: Option<TickRow> = tx
            .fetch_optional(
                Sql::new(format!(
                    "INSERT INTO automation_ticks (tick_time, previous_id, daemon, evaluated_at, \
                     duration_ms, assets_evaluated, requested, run_ids) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING \
                     RETURNING {TICK_COLUMNS}"
                ))
                .bind(micros(tick.tick_time))
                .bind(tick.previous_id)
                .bind(tick.daemon.as_str())
                .bind(micros(tick.evaluated_at))
                .bind(tick.duration_ms)
                .bind(i64::from(tick.assets_evaluated))
                .bind(i64::from(tick.requested))
                .bind(json_strings(&run_ids)),
            )
            .await?;
        let Some(row) = inserted else {
            // Dropping the transaction rolls it back.
            return Ok(None);
        };
        let recorded = row.into_tick()?;
        if !write.runs.is_empty() {
            let at = tick.tick_time.to_rfc3339();
            enqueue_runs(
                &self.db,
                &mut tx,
                write.runs,
                (tags::AUTOMATION_TICK, at.as_str()),
            )
            .await?;
        }
        for e in write.evaluations {
            let run_ids: Vec<String> = e.run_ids.iter().map(|r| r.to_string()).collect();
            if e.requested.is_empty() {
                // An evaluation that requested nothing replaces the asset's previous such one:
                // the latest says why it does not run now; those that requested runs are kept
                // (until retention), each saying why its runs were requested.
                tx.execute(
                    Sql::new(
                        "DELETE FROM automation_evaluations WHERE asset_key = $1 \
                         AND requested = '[]'",
                    )
                    .bind(e.asset_key.as_str()),
                )
                .await?;
            }
            tx.execute(
                Sql::new(
                    "INSERT INTO automation_evaluations (tick_id, asset_key, requested, \
                     run_ids, tree) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(recorded.id)
                .bind(e.asset_key.as_str())
                .bind(json_strings(&e.requested))
                .bind(json_strings(&run_ids))
                .bind(e.tree.as_str()),
            )
            .await?;
        }
        for st in write.states {
            tx.execute(
                Sql::new(
                    "INSERT INTO automation_state (asset_key, tick_id, state) \
                     VALUES ($1, $2, $3) ON CONFLICT (asset_key) DO UPDATE \
                     SET tick_id = excluded.tick_id, state = excluded.state",
                )
                .bind(st.asset_key.as_str())
                .bind(recorded.id)
                .bind(st.state.as_str()),
            )
            .await?;
        }
        tx.commit().await?;
        if !write.runs.is_empty() {
            self.db.queue_committed();
        }
        Ok(Some(recorded))
    }

    async fn automation_ticks(&self, limit: u32) -> Result<Vec<AutomationTick>> {
        let rows: Vec<TickRow> = self
            .db
            .fetch_all(
                Sql::new(format!(
                    "SELECT {TICK_COLUMNS} FROM automation_ticks ORDER BY id DESC LIMIT $1"
                ))
                .bind(i64::from(limit)),
            )
            .await?;
        rows.into_iter().map(TickRow::into_tick).collect()
    }

    async fn automation_states(&self) -> Result<Vec<AutomationStateRecord>> {
        let rows: Vec<(String, i64, String)> = self
            .db
            .fetch_all(Sql::new(
                "SELECT asset_key, tick_id, state FROM automation_state",
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(asset_key, tick_id, state)| AutomationStateRecord {
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
    ) -> Result<Vec<AutomationEvaluationRecord>> {
        let rows: Vec<EvaluationRow> = self
            .db
            .fetch_all(
                Sql::new(
                    "SELECT e.tick_id, t.tick_time, e.asset_key, e.requested, e.run_ids, e.tree \
                     FROM automation_evaluations e \
                     LEFT JOIN automation_ticks t ON t.id = e.tick_id \
                     WHERE e.asset_key = $1 ORDER BY e.tick_id DESC LIMIT $2",
                )
                .bind(asset_key)
                .bind(i64::from(limit)),
            )
            .await?;
        rows.into_iter().map(EvaluationRow::into_record).collect()
    }

    async fn prune_automation_ticks(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        let mut tx = self.db.begin_write().await?;
        let ids: Vec<(i64,)> = tx
            .fetch_all(
                Sql::new(
                    "SELECT id FROM automation_ticks WHERE tick_time < $1 \
                     AND id < (SELECT max(id) FROM automation_ticks) \
                     AND id NOT IN (SELECT max(tick_id) FROM automation_evaluations \
                     GROUP BY asset_key) ORDER BY id LIMIT $2",
                )
                .bind(micros(before))
                .bind(i64::from(limit)),
            )
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut deleted = 0;
        for (table, column) in [
            ("automation_evaluations", "tick_id"),
            ("automation_ticks", "id"),
        ] {
            let mut sql = Sql::new(format!("DELETE FROM {table} WHERE {column} IN ("));
            sql.push_bind_list(ids.iter().map(|(id,)| *id)).push(")");
            deleted = tx.execute(sql.not_persistent()).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }
}
