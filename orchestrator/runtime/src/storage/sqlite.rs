//! The SQLite backend, the embedded default (`sqlite://.orch/orch.db`): file and folder
//! creation, connection settings for several processes sharing one file, migrations under a
//! file lock, and what its SQL does differently from Postgres's (see [`super::db`]).
//!
//! Several processes may write one file: it is in WAL mode with a 30 s busy timeout, and
//! every write transaction starts with `BEGIN IMMEDIATE`, so that it takes the write lock
//! (waiting for it) before it reads anything, and never fails with "database is locked" when
//! upgrading a read to a write.
//!
//! The run queue's wake-ups (`notify_queue`, and the methods that queue runs) reach the
//! waiters of this storage and its clones only: SQLite has no way to signal another process.
//! A waiter in another process relies on its `wait_for_queue` timeout, so that timeout is how
//! long a run queued from elsewhere may wait before it is claimed. A wake-up while nobody
//! waits is kept for the next wait (as Postgres's listener keeps notifications), so that a
//! run queued between a worker's last claim and its wait is not left for the timeout.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::Notify;

use super::db::Db;
use super::{Result, SqlStorage, StorageError, redact_url};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// SQLite allows 32766 bind parameters per statement.
pub(super) const MAX_PARAMS: usize = 32766;

/// Run history in a SQLite file: the pool and the queue's in-process wake-ups.
#[derive(Debug)]
pub(super) struct Lite {
    pub(super) pool: SqlitePool,
    /// Wakes this process's queue waiters (see the module documentation).
    pub(super) queued: QueueSignal,
}

/// In-process queue wake-ups: the waiters, and whether a wake-up came while nobody waited.
#[derive(Debug, Default)]
pub(super) struct QueueSignal {
    waiters: Notify,
    pending: AtomicBool,
}

impl QueueSignal {
    pub(super) fn notify(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.waiters.notify_waiters();
    }

    pub(super) async fn wait(&self, timeout: Duration) {
        let woken = self.waiters.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // Registered first, so that a wake-up between this check and the wait is not lost.
        if !self.pending.swap(false, Ordering::SeqCst)
            && tokio::time::timeout(timeout, woken).await.is_ok()
        {
            // The wake-up that ended the wait is consumed by it.
            self.pending.store(false, Ordering::SeqCst);
        }
    }
}

/// Opens `url` (`sqlite://PATH`, `sqlite:PATH` or `sqlite::memory:`), creating the file and
/// its folder if needed, and applies pending migrations. Several processes may open one new
/// file at once: migrations run under an exclusive lock on `PATH.migrate.lock`.
pub(super) async fn connect(url: &str) -> Result<SqlStorage> {
    let connect_error = |source| StorageError::Connect {
        url: redact_url(url),
        source,
    };
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(StorageError::UnsupportedUrl {
            url: redact_url(url),
        });
    };
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory =
        path == ":memory:" || path.is_empty() || params.split('&').any(|p| p == "mode=memory");
    let options = SqliteConnectOptions::from_str(url)
        .map_err(connect_error)?
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30));

    let pool = if in_memory {
        // One connection that never closes: an in-memory database lives as long as it.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        MIGRATOR.run(&pool).await?;
        pool
    } else {
        let file = options.get_filename().to_path_buf();
        if let Some(parent) = file.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let lock = lock_exclusive(migrate_lock_path(&file)).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        MIGRATOR.run(&pool).await?;
        drop(lock);
        pool
    };
    Ok(SqlStorage::new(Db::Sqlite(Arc::new(Lite {
        pool,
        queued: QueueSignal::default(),
    }))))
}

/// `n` fresh ids for `table`, ascending. The write transaction holds the database's write
/// lock, so nobody else can take them before it commits.
pub(super) async fn allocate_ids(
    conn: &mut SqliteConnection,
    table: &'static str,
    n: usize,
) -> Result<Vec<i64>> {
    let last: i64 = sqlx::query_scalar(&format!(
        "SELECT COALESCE(MAX(last), 0) FROM (\
         SELECT seq AS last FROM sqlite_sequence WHERE name = '{table}' \
         UNION ALL SELECT MAX(id) AS last FROM {table}) AS ids"
    ))
    .fetch_one(conn)
    .await?;
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    Ok((last + 1..=last + n).collect())
}

/// `orch.db.migrate.lock` next to `orch.db`.
fn migrate_lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".migrate.lock");
    PathBuf::from(name)
}

/// Opens `path` and waits for an exclusive lock on it, held until the file is dropped.
async fn lock_exclusive(path: PathBuf) -> Result<File> {
    tokio::task::spawn_blocking(move || {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| StorageError::Io(std::io::Error::other(e)))?
}
