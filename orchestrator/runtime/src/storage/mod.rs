//! Run history: one storage interface, two backends (Postgres for production, SQLite as the
//! embedded default), both through sqlx. Only this module speaks SQL.
//!
//! [`open`] picks the backend from the URL and applies the migrations under `migrations/`.
//! Everything above this module sees only the [`Storage`] trait.

pub mod automation;
mod postgres;
pub mod schema;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::asset::AssetKey;
use crate::event::{CheckEvaluation, Event, EventKind, LogLine, StoredEvent};
use crate::metadata::Metadata;
use crate::run::{NewRun, Run, RunId, RunStatus};

pub use automation::{
    AutomationEvaluationRecord, AutomationStateRecord, AutomationTick, AutomationTickWrite,
    NewAutomationTick,
};
pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

/// What can go wrong in run history. Messages say what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "cannot connect to the run history at {url}: {source}\n  (set ORCH_DATABASE_URL, or `database_url` in orch.toml, to a reachable postgres:// or sqlite:// URL)"
    )]
    Connect {
        /// The URL with any password removed.
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("unsupported database URL `{url}`: use postgres://... or sqlite://PATH")]
    UnsupportedUrl { url: String },
    #[error("cannot apply the run-history migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("run {0} does not exist")]
    RunNotFound(RunId),
    #[error("run {0} already exists")]
    RunExists(RunId),
    #[error("run {run_id} cannot go from {from} to {to}")]
    IllegalTransition {
        run_id: RunId,
        from: RunStatus,
        to: RunStatus,
    },
    #[error("run history holds data this version cannot read: {0}")]
    Corrupt(String),
    #[error("run history query failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot prepare the run-history file: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Which backend a storage is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

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
    /// At most this many runs; `None` means no limit.
    pub limit: Option<u32>,
}

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

/// A run claimed from the queue by a worker: the run (now STARTING) and its lease. Every write
/// the worker makes about the run's lease is fenced by `attempt`, so a worker whose lease
/// expired and was resolved by someone else cannot write over the new state.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub run: Run,
    /// Increases with every claim of the run.
    pub attempt: i64,
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

/// Limits checked when claiming a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueLimits {
    /// Runs that may be STARTING, STARTED or CANCELING at once, across all workers.
    pub max_concurrent_runs: Option<u32>,
}

/// What renewing a lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed; the run is in this (non-terminal) status. CANCELING means someone asked to
    /// cancel it.
    Held(RunStatus),
    /// The lease is no longer this worker's (another attempt, or the run ended): stop.
    Lost,
}

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

/// A daemon's heartbeat row.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonHeartbeat {
    pub daemon_id: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// What the daemon reports about itself (pid, host, runs in flight...).
    pub info: serde_json::Value,
}

/// A freshness violation: an asset whose latest materialization is older than its policy
/// allows. One row per asset (the latest violation): open until resolved, and reopened as a
/// new violation if the asset goes stale again.
#[derive(Clone, Debug, PartialEq)]
pub struct FreshnessViolation {
    pub asset_key: AssetKey,
    /// When the violation was opened.
    pub detected_at: DateTime<Utc>,
    /// The latest materialized partition when it was detected (`None` for an unpartitioned
    /// asset, or one never materialized).
    pub latest_partition: Option<String>,
    /// The latest materialization's time when it was detected (`None`: never materialized).
    pub latest_materialized_at: Option<DateTime<Utc>>,
    /// The policy's allowed lag.
    pub max_lag_secs: i64,
    pub message: String,
    /// When someone was told about it (by the daemon's alerting), if anyone was.
    pub notified_at: Option<DateTime<Utc>>,
    /// When the asset became fresh again; `None` while the violation is open.
    pub resolved_at: Option<DateTime<Utc>>,
}

impl FreshnessViolation {
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// A streaming worker's heartbeat row: what it consumes and how well it keeps up. Written by
/// the workers, read by the web UI.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamWorker {
    pub worker_id: String,
    /// Its consumer group.
    pub group_id: String,
    pub topics: Vec<String>,
    /// The partitions it holds, as `topic:partition`.
    pub partitions: Vec<String>,
    /// Records behind the end of its partitions, summed (`None`: not known yet).
    pub lag: Option<i64>,
    /// Records read, written to the lake and dead-lettered since it started.
    pub events_in: i64,
    pub events_written: i64,
    pub dead_lettered: i64,
    /// Records read per second between its last two heartbeats.
    pub events_per_sec: f64,
    /// The last lake file it wrote.
    pub last_file: Option<String>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

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

/// The run-history interface. Both backends pass the same conformance suite
/// (`tests/storage.rs`).
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Stores a new run in the status it carries (normally QUEUED).
    async fn create_run(&self, run: &NewRun) -> Result<Run>;

    async fn get_run(&self, run_id: RunId) -> Result<Option<Run>>;

    /// Runs matching the filter, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;

    /// Moves a run to `to` if that is legal from its current status, atomically, and returns
    /// it as updated. STARTED sets `started_at`; a terminal status sets `ended_at`. An illegal
    /// move fails with [`StorageError::IllegalTransition`] and changes nothing.
    async fn transition_run(&self, run_id: RunId, to: RunStatus, at: DateTime<Utc>) -> Result<Run>;

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
    // --- The run queue (several workers, possibly in several processes) ---

    /// Claims the oldest QUEUED run, if the limits allow one more to start: in one transaction
    /// it becomes STARTING with a lease of `lease_for` owned by `owner` and its attempt
    /// number increased. Concurrent claimers never get the same run (Postgres: `FOR UPDATE
    /// SKIP LOCKED`; SQLite: `BEGIN IMMEDIATE`). Also wakes nobody: see `notify_queue`.
    async fn claim_run(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
        limits: &QueueLimits,
    ) -> Result<Option<Lease>>;

    /// Extends the lease of `run_id` to `now + lease_for` if `attempt` still holds it and the
    /// run has not ended.
    async fn renew_lease(
        &self,
        run_id: RunId,
        attempt: i64,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
    ) -> Result<LeaseState>;

    /// Non-terminal runs whose lease expired before `now` (their worker died or hangs).
    async fn expired_leases(&self, now: DateTime<Utc>) -> Result<Vec<Lease>>;

    /// Fails a run whose lease expired, if `attempt` still holds it and it is still expired
    /// at `now`, recording `reason` as a RUN_FAILURE event in the same transaction. Returns
    /// the failed run, or `None` if someone else resolved or renewed it first.
    async fn fail_expired(
        &self,
        run_id: RunId,
        attempt: i64,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Option<Run>>;

    /// Asks to cancel a run from any process: QUEUED becomes CANCELED at once; STARTING and
    /// STARTED become CANCELING (the worker sees it when it renews its lease, and stops).
    /// The matching RUN_CANCELING or RUN_CANCELED event is appended in the same transaction.
    /// A run already CANCELING is returned unchanged; a finished run is an IllegalTransition.
    async fn request_cancel(&self, run_id: RunId, now: DateTime<Utc>) -> Result<Run>;

    /// Wakes queue workers waiting in `wait_for_queue` (Postgres: `NOTIFY`, across processes;
    /// SQLite: within this process). Called after a run is queued.
    async fn notify_queue(&self) -> Result<()>;

    /// Waits until `notify_queue` is called (by any process, for Postgres) or `timeout`
    /// passes. Never fails: a dropped listener is reconnected and the timeout covers the gap.
    async fn wait_for_queue(&self, timeout: std::time::Duration);

    // --- Schedules ---

    /// Turns a schedule on or off (creating its row).
    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<ScheduleState>;

    /// Every schedule that has a stored state.
    async fn schedule_states(&self) -> Result<Vec<ScheduleState>>;

    /// Records a tick of `schedule` at `tick_time` and, if `run` is given, creates that run
    /// (QUEUED, with its RUN_ENQUEUED event) in the same transaction, unless the tick was
    /// already recorded, in which case nothing changes. This is what makes a tick produce
    /// exactly one run however many daemons evaluate it and however often they restart.
    async fn record_tick(
        &self,
        schedule: &str,
        tick_time: DateTime<Utc>,
        run: Option<&NewRun>,
        status: TickStatus,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<TickRecord>;

    /// A schedule's ticks, newest first.
    async fn schedule_ticks(&self, schedule: &str, limit: u32) -> Result<Vec<Tick>>;

    // --- Automation ---

    /// Records an automation tick with its runs (queued, with their RUN_ENQUEUED events),
    /// evaluations and changed asset states, in one transaction. `None` (and nothing written)
    /// when a tick at the same time, or another tick after `previous_id`, is already
    /// recorded: the tick was evaluated by another daemon, or from a stale state.
    async fn record_automation_tick(
        &self,
        write: &AutomationTickWrite<'_>,
    ) -> Result<Option<AutomationTick>>;

    /// Automation ticks, newest first.
    async fn automation_ticks(&self, limit: u32) -> Result<Vec<AutomationTick>>;

    /// Every asset's stored automation state.
    async fn automation_states(&self) -> Result<Vec<AutomationStateRecord>>;

    /// An asset's stored evaluations, newest first.
    async fn automation_evaluations(
        &self,
        asset_key: &str,
        limit: u32,
    ) -> Result<Vec<AutomationEvaluationRecord>>;

    // --- Backfills, sensors, daemons ---

    /// Records a backfill and queues its runs (each tagged `orch/backfill=<id>`, with their
    /// RUN_ENQUEUED events) in one transaction.
    async fn create_backfill(&self, backfill: &Backfill, runs: &[NewRun]) -> Result<()>;

    async fn get_backfill(&self, id: &str) -> Result<Option<Backfill>>;

    /// Backfills, newest first.
    async fn list_backfills(&self, limit: u32) -> Result<Vec<Backfill>>;

    /// The number of runs carrying tag `key=value`, per status.
    async fn count_runs_by_status(
        &self,
        tag_key: &str,
        tag_value: &str,
    ) -> Result<Vec<(RunStatus, u64)>>;

    async fn sensor_cursor(&self, sensor: &str) -> Result<Option<String>>;

    async fn set_sensor_cursor(&self, sensor: &str, cursor: &str, now: DateTime<Utc>)
    -> Result<()>;

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

    /// The number of runs in each status, over the whole history.
    async fn run_status_counts(&self) -> Result<Vec<(RunStatus, u64)>>;

    /// Records a streaming worker's heartbeat (upsert by worker id).
    async fn stream_worker_heartbeat(&self, worker: &StreamWorker) -> Result<()>;

    /// Streaming workers that sent a heartbeat at or after `since`, by worker id.
    async fn stream_workers(&self, since: DateTime<Utc>) -> Result<Vec<StreamWorker>>;

    /// Records that a daemon is alive (upsert).
    async fn daemon_heartbeat(&self, heartbeat: &DaemonHeartbeat) -> Result<()>;

    /// Daemons that sent a heartbeat at or after `since`.
    async fn daemon_heartbeats(&self, since: DateTime<Utc>) -> Result<Vec<DaemonHeartbeat>>;

    // --- Pools: concurrency slots shared by every process on this run history ---

    /// Takes one of the `limit` slots of `pool` for step `step_key` of run `run_id`, held until
    /// `now + ttl` unless renewed, if fewer than `limit` unexpired slots of the pool are held
    /// (by any run, in any process): one transaction, serialized with every other acquirer of
    /// the pool (Postgres: a transaction-scoped advisory lock on the schema and pool; SQLite:
    /// `BEGIN IMMEDIATE`), so that concurrent acquirers never hold more than `limit`. Returns
    /// whether the step holds the slot. Re-acquiring a slot the step already holds (unexpired)
    /// succeeds whatever the count, and extends it like `renew_pool_slot`. Expired slots (their
    /// process stopped renewing them) do not count; the acquirer deletes them. The slot's
    /// owner is recorded as this process (`host:pid`).
    async fn try_acquire_pool_slot(
        &self,
        pool: &str,
        limit: u32,
        run_id: RunId,
        step_key: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool>;

    /// Extends a held slot to `now + ttl`. Returns false, changing nothing, if the step does
    /// not hold it or it expired before `now` (someone else may hold it since): the caller
    /// must acquire it again.
    async fn renew_pool_slot(
        &self,
        pool: &str,
        run_id: RunId,
        step_key: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool>;

    /// Gives back a slot (nothing happens if the step does not hold it).
    async fn release_pool_slot(&self, pool: &str, run_id: RunId, step_key: &str) -> Result<()>;

    /// The number of unexpired slots held in each pool at `now`, by pool name; pools without
    /// any are left out.
    async fn pool_usage(&self, now: DateTime<Utc>) -> Result<Vec<(String, u64)>>;

    // --- Freshness violations ---

    /// Opens a violation for `asset_key` unless one is open: returns true if this call opened
    /// it. An open violation is left as it is (its detection time and message stay the first
    /// ones); a resolved one is replaced by the new violation (not notified, not resolved).
    async fn open_freshness_violation(
        &self,
        asset_key: &AssetKey,
        detected_at: DateTime<Utc>,
        latest_partition: Option<&str>,
        latest_materialized_at: Option<DateTime<Utc>>,
        max_lag_secs: i64,
        message: &str,
    ) -> Result<bool>;

    /// Resolves the asset's open violation at `at`: returns true if one was open.
    async fn resolve_freshness_violation(
        &self,
        asset_key: &AssetKey,
        at: DateTime<Utc>,
    ) -> Result<bool>;

    /// The latest violation of each asset (only the open ones if `open_only`), by asset key.
    async fn freshness_violations(&self, open_only: bool) -> Result<Vec<FreshnessViolation>>;

    /// Records that the asset's latest violation was notified at `at`: returns false if the
    /// asset has no violation.
    async fn mark_violation_notified(
        &self,
        asset_key: &AssetKey,
        at: DateTime<Utc>,
    ) -> Result<bool>;
}

/// Opens the storage at `url` (`postgres://...` or `sqlite://PATH`), creating the SQLite file
/// and its folder if needed, and applies pending migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Storage>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStorage::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStorage::connect(url).await?))
    } else {
        Err(StorageError::UnsupportedUrl {
            url: redact_url(url),
        })
    }
}

/// The URL with its password, if any, replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://orch:s3cret@db:5432/orch"),
            "postgres://orch:***@db:5432/orch"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(
            redact_url("sqlite://.orch/orch.db"),
            "sqlite://.orch/orch.db"
        );
    }
}
