//! Run history: one storage interface, two backends (Postgres for production, SQLite as the
//! embedded default), both through sqlx. Only this module speaks SQL.
//!
//! The interface is split by concern, as Dagster splits run, event-log and schedule storage;
//! [`Storage`] is their union, and each concern is one file with its records, its trait and
//! its SQL:
//!
//! - [`runs`]: runs, their statuses and cancellation ([`RunStorage`]);
//! - [`events`]: the event log and step logs ([`EventLogStorage`]), and [`derived`], what the
//!   events derive in the same transaction (asset partitions, check results);
//! - [`queue`]: the run queue, whose claim returns a [`ClaimedRun`] carrying the [`Lease`]
//!   that fences every later write about it ([`QueueStorage`]);
//! - [`schedules`]: schedules, ticks, sensor cursors, backfills ([`ScheduleStorage`]);
//! - [`pools`]: pool slots shared across processes ([`PoolStorage`]);
//! - [`health`]: daemon and component heartbeats ([`HealthStorage`]);
//! - [`freshness`]: freshness violations ([`FreshnessStorage`]);
//! - [`automation`]: automation ticks, evaluations and per-asset state ([`AutomationStorage`]).
//!
//! All of them are implemented once, for [`SqlStorage`], over [`db`]: the SQL text is the same
//! for both backends except where [`db`] says it must differ, and [`postgres`] and [`sqlite`]
//! hold what is particular to each (connecting, migrating, ids, locks, wake-ups).
//!
//! [`open`] picks the backend from the URL and applies the migrations under `migrations/`.
//! Everything above this module sees only the [`Storage`] trait.

pub mod automation;
mod convert;
mod db;
pub mod derived;
pub mod events;
pub mod freshness;
pub mod health;
pub mod pools;
mod postgres;
pub mod queue;
pub mod runs;
pub mod schedules;
pub mod schema;
mod sqlite;

use std::sync::Arc;

use crate::run::{RunId, RunStatus};

pub use automation::{
    AutomationEvaluationRecord, AutomationStateRecord, AutomationStorage, AutomationTick,
    AutomationTickWrite, NewAutomationTick,
};
pub use derived::{AssetPartitionRecord, CheckRecord, FailureRecord, MaterializationRecord};
pub use events::{EventFilter, EventLogStorage};
pub use freshness::{FreshnessStorage, FreshnessViolation, NewViolation};
pub use health::{ComponentHeartbeat, DaemonHeartbeat, HealthStorage};
pub use pools::{PoolSlot, PoolStorage};
pub use queue::{ClaimedRun, Lease, LeaseState, QueueLimits, QueueStorage};
pub use runs::{Pruned, RunFilter, RunStorage};
pub use schedules::{
    Backfill, NewTick, ScheduleState, ScheduleStorage, Tick, TickRecord, TickStatus,
};

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

/// The run-history interface: every concern's. Both backends pass the same conformance suite
/// (`tests/storage/`).
pub trait Storage:
    RunStorage
    + EventLogStorage
    + QueueStorage
    + ScheduleStorage
    + PoolStorage
    + HealthStorage
    + FreshnessStorage
    + AutomationStorage
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;
}

/// Run history in Postgres or SQLite. Cloning it shares its connections.
#[derive(Clone, Debug)]
pub struct SqlStorage {
    db: db::Db,
}

impl SqlStorage {
    fn new(db: db::Db) -> SqlStorage {
        SqlStorage { db }
    }

    /// Connects to Postgres at `url` (`postgres://...`) and applies pending migrations. Migrations
    /// take an advisory lock, so several processes may start at once. A URL may set the schema
    /// with `?options=-c%20search_path%3D<schema>` (the schema must exist).
    pub async fn connect_postgres(url: &str) -> Result<SqlStorage> {
        postgres::connect(url).await
    }

    /// Opens the SQLite database at `url` (`sqlite://PATH`, `sqlite:PATH` or
    /// `sqlite::memory:`), creating the file and its folder if needed, and applies pending
    /// migrations. Several processes may open one new file at once.
    pub async fn connect_sqlite(url: &str) -> Result<SqlStorage> {
        sqlite::connect(url).await
    }

    /// Closes the connections, waiting for those in use to come back.
    pub async fn close(&self) {
        self.db.close().await
    }
}

impl Storage for SqlStorage {
    fn backend(&self) -> Backend {
        self.db.backend()
    }
}

/// Opens the storage at `url` (`postgres://...` or `sqlite://PATH`), creating the SQLite file
/// and its folder if needed, and applies pending migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Storage>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(SqlStorage::connect_postgres(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqlStorage::connect_sqlite(url).await?))
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

/// Retention: deletes the runs that ended before `before` ([`RunStorage::prune_runs`]), then
/// the schedule, sensor and automation ticks recorded before it (each keeping what the next
/// evaluation starts from), `batch` at a time in one transaction each, until none is left or
/// `max_batches` batches of each passed (the next call goes on).
pub async fn prune_in_batches(
    storage: &(impl Storage + ?Sized),
    before: chrono::DateTime<chrono::Utc>,
    batch: u32,
    max_batches: usize,
) -> Result<Pruned> {
    let mut total = Pruned::default();
    for _ in 0..max_batches {
        let pruned = storage.prune_runs(before, batch).await?;
        total += pruned;
        if pruned.runs < u64::from(batch) {
            break;
        }
    }
    for _ in 0..max_batches {
        let n = storage.prune_schedule_ticks(before, batch).await?;
        total.ticks += n;
        if n < u64::from(batch) {
            break;
        }
    }
    for _ in 0..max_batches {
        let n = storage.prune_automation_ticks(before, batch).await?;
        total.ticks += n;
        if n < u64::from(batch) {
            break;
        }
    }
    Ok(total)
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
