//! The Postgres backend: connection pool, migrations, and what differs from SQLite (id
//! allocation from the tables' sequences). The queries are shared, in [`super::sql`].
//!
//! A URL may set the schema with `?options=-c%20search_path%3D<schema>`; migrations and
//! queries then use that schema (the schema must exist).

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use super::{Backend, Result, StorageError, redact_url};

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// Run history in Postgres.
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    pool: PgPool,
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://...`) and applies pending migrations. Migrations take
    /// an advisory lock, so several processes may start at once.
    pub async fn connect(url: &str) -> Result<Self> {
        let connect_error = |source| StorageError::Connect {
            url: redact_url(url),
            source,
        };
        let options = PgConnectOptions::from_str(url).map_err(connect_error)?;
        // One connection first, so that an unreachable server fails at once with its own
        // error (a pool would retry until its acquire timeout and report only that).
        let mut conn = options.connect().await.map_err(connect_error)?;
        MIGRATOR.run(&mut conn).await?;
        conn.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options);
        Ok(PostgresStorage { pool })
    }

    /// The connection pool, for Postgres-specific SQL elsewhere (the run queue).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Postgres allows 65535 bind parameters per statement.
    const MAX_PARAMS: usize = 65535;

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// `n` ids from `table`'s sequence, ascending. Other writers may take ids in between, so
    /// they need not be consecutive.
    async fn allocate_ids(
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
}

super::sql::impl_storage!(PostgresStorage, sqlx::Postgres, Backend::Postgres);
