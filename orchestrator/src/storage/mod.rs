//! Run history: one storage interface, two backends (Postgres for production, SQLite as the
//! embedded default), both through sqlx. Only this module speaks SQL.
//!
//! [`open`] picks the backend from the URL and applies the migrations under `migrations/`.
//! Everything above this module sees only the [`Storage`] trait.

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
