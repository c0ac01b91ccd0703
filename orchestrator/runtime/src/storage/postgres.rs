//! The Postgres backend: connection pool, migrations, and what its SQL does differently from
//! SQLite's (see [`super::db`]): ids from the tables' sequences, advisory locks, `NOTIFY`.
//!
//! A URL may set the schema with `?options=-c%20search_path%3D<schema>`; migrations and
//! queries then use that schema (the schema must exist).
//!
//! The run queue wakes its waiters across processes with `NOTIFY orch_queue`, whose payload
//! is the schema the run history lives in (the database's channels are shared by all its
//! schemas): a waiter ignores other schemas' notifications. A notification with an empty
//! payload wakes every schema's waiters.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use super::db::{Db, Sql};
use super::{Result, SqlStorage, StorageError, redact_url};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Postgres allows 65535 bind parameters per statement.
pub(super) const MAX_PARAMS: usize = 65535;

/// The channel that says "a run was queued".
const QUEUE_CHANNEL: &str = "orch_queue";

/// The high half of the advisory-lock key that serializes claimers under a concurrency limit
/// (`orch` in ASCII); the low half is a hash of the schema, so that run histories in different
/// schemas of one database do not wait for each other.
const QUEUE_LOCK_CLASS: i64 = 0x6f72_6368;

/// The high half of the advisory-lock keys that serialize the acquirers of one pool's slots
/// (`pool` in ASCII); the low half is a hash of the schema and the pool's name.
const POOL_LOCK_CLASS: i64 = 0x706f_6f6c;

/// Run history in Postgres: the pool, the schema it lives in, and the queue's wake-ups.
#[derive(Debug)]
pub(super) struct Pg {
    pub(super) pool: PgPool,
    queue: QueueSignal,
}

/// What the queue's wake-ups need: the schema (the notifications' payload), the advisory-lock
/// key, and one listener, created on the first wait and shared by this storage's waiters.
#[derive(Debug)]
struct QueueSignal {
    schema: String,
    lock_key: i64,
    /// A pool of one connection for the listener, apart from the storage's pool so that
    /// closing that pool does not wait for the listener.
    listener_pool: PgPool,
    listener: Mutex<Option<PgListener>>,
    /// Wakes this storage's other waiters when the one holding the listener is notified.
    woken: Notify,
}

impl Drop for QueueSignal {
    fn drop(&mut self) {
        // A dropped listener hands its connection back from a new task, which needs a
        // runtime; without one (the process is ending) the connection just goes.
        if let Some(listener) = self.listener.get_mut().take()
            && tokio::runtime::Handle::try_current().is_err()
        {
            std::mem::forget(listener);
        }
    }
}

/// Connects to `url` (`postgres://...`) and applies pending migrations. Migrations take an
/// advisory lock, so several processes may start at once.
pub(super) async fn connect(url: &str) -> Result<SqlStorage> {
    let connect_error = |source| StorageError::Connect {
        url: redact_url(url),
        source,
    };
    let options = PgConnectOptions::from_str(url).map_err(connect_error)?;
    // One connection first, so that an unreachable server fails at once with its own error (a
    // pool would retry until its acquire timeout and report only that).
    let mut conn = options.connect().await.map_err(connect_error)?;
    MIGRATOR.run(&mut conn).await?;
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    let schema = schema.unwrap_or_else(|| "public".to_owned());
    let listener_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.clone());
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options);
    Ok(SqlStorage::new(Db::Postgres(Arc::new(Pg {
        pool,
        queue: QueueSignal {
            lock_key: queue_lock_key(&schema),
            schema,
            listener_pool,
            listener: Mutex::new(None),
            woken: Notify::new(),
        },
    }))))
}

/// `n` ids from `table`'s sequence, ascending. Other writers may take ids in between, so they
/// need not be consecutive.
pub(super) async fn allocate_ids(
    conn: &mut PgConnection,
    table: &'static str,
    n: usize,
) -> Result<Vec<i64>> {
    let mut ids: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT nextval('{table}_id_seq') FROM generate_series(1, $1)"
    ))
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

impl Pg {
    /// Serializes the claimers that check a concurrency limit, until the transaction ends.
    pub(super) fn queue_lock(&self) -> Sql<'static> {
        Sql::new("SELECT pg_advisory_xact_lock($1)").bind(self.queue.lock_key)
    }

    /// Serializes the acquirers of `pool`'s slots, until the transaction ends. Pools whose
    /// keys collide only wait for each other a little more.
    pub(super) fn pool_lock(&self, pool: &str) -> Sql<'static> {
        Sql::new("SELECT pg_advisory_xact_lock($1)").bind(pool_lock_key(&self.queue.schema, pool))
    }

    /// `NOTIFY orch_queue, '<schema>'` (in a transaction: delivered on its commit).
    pub(super) fn notification(&self) -> Sql<'_> {
        Sql::new("SELECT pg_notify($1, $2)")
            .bind(QUEUE_CHANNEL)
            .bind(self.queue.schema.as_str())
    }

    /// Closes the storage's pool (not the listener's, which would wait for the listener).
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    /// Waits for a notification about this schema, or another waiter of this storage being
    /// woken by one, or the timeout. One waiter at a time holds the listener; the others wait
    /// for the lock or for `woken`. Notifications that arrived since the last wait are
    /// buffered by the listener and end the wait at once, so none is lost between two waits
    /// (after the first, which starts listening).
    pub(super) async fn wait_for_queue(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let woken = self.queue.woken.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let listen = async {
            let mut listener = self.queue.listener.lock().await;
            match self.queue.next_notification(&mut listener).await {
                Ok(()) => self.queue.woken.notify_waiters(),
                Err(error) => {
                    // A new listener next time; until then the timeout stands in for it.
                    *listener = None;
                    drop(listener);
                    tracing::warn!(%error, "cannot listen for queued runs; polling instead");
                    tokio::time::sleep_until(deadline).await;
                }
            }
        };
        tokio::select! {
            () = woken => {}
            () = listen => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

impl QueueSignal {
    /// Waits for the next notification about this schema on `listener`, listening first if
    /// there is no listener yet, then drops any others the listener already buffered (one
    /// wake-up is enough for any number of queued runs).
    async fn next_notification(
        &self,
        listener: &mut Option<PgListener>,
    ) -> Result<(), sqlx::Error> {
        let listener = match listener {
            Some(listener) => listener,
            None => {
                let mut new = PgListener::connect_with(&self.listener_pool).await?;
                new.ignore_pool_close_event(true);
                new.listen(QUEUE_CHANNEL).await?;
                listener.insert(new)
            }
        };
        loop {
            let notification = listener.recv().await?;
            if self.is_ours(notification.payload()) {
                break;
            }
        }
        while listener.next_buffered().is_some() {}
        Ok(())
    }

    fn is_ours(&self, payload: &str) -> bool {
        payload.is_empty() || payload == self.schema
    }
}

/// The advisory-lock key of the queue of the run history in `schema`.
fn queue_lock_key(schema: &str) -> i64 {
    (QUEUE_LOCK_CLASS << 32) | i64::from(fnv1a(schema.bytes()))
}

/// The advisory-lock key of `pool` in the run history in `schema`.
fn pool_lock_key(schema: &str, pool: &str) -> i64 {
    let bytes = schema.bytes().chain([0]).chain(pool.bytes());
    (POOL_LOCK_CLASS << 32) | i64::from(fnv1a(bytes))
}

/// FNV-1a, so that every process and version computes the same keys.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}
