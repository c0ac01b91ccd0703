//! Test databases: a SQLite file in a temporary folder, or a fresh schema in the test
//! Postgres (`ORCH_TEST_DATABASE_URL`, by default `postgres://postgres@127.0.0.1:5432/orch_test`).
//!
//! Tests never skip a backend: if Postgres is unreachable they fail and say how to start it.

#![allow(dead_code)]

use std::str::FromStr;
use std::sync::Arc;

use orch::storage::{SqlStorage, Storage};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};
use tempfile::TempDir;

/// The test Postgres when `ORCH_TEST_DATABASE_URL` is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/orch_test";

/// A storage for one test, on its own database (SQLite) or schema (Postgres).
pub struct TestDb {
    pub storage: Arc<dyn Storage>,
    /// The URL the storage was opened with, for other processes or pools to open it too.
    pub url: String,
    place: Place,
}

enum Place {
    Sqlite {
        _dir: TempDir,
    },
    Postgres {
        base_url: String,
        schema: String,
        /// The storage's connections, closed before the schema is dropped.
        storage: SqlStorage,
    },
}

impl TestDb {
    /// Another storage on the same database (SQLite file or Postgres schema), with its own
    /// pool: what another process sharing the run history would have.
    pub async fn reopen(&self) -> Arc<dyn Storage> {
        match &self.place {
            Place::Sqlite { .. } => Arc::new(
                SqlStorage::connect_sqlite(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("cannot reopen {}: {e}", self.url)),
            ),
            Place::Postgres { .. } => Arc::new(
                SqlStorage::connect_postgres(&self.url)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "cannot reopen {}: {e}",
                            orch::storage::redact_url(&self.url)
                        )
                    }),
            ),
        }
    }

    /// Closes the storage's connections and drops the Postgres schema (SQLite's folder goes
    /// when the TestDb is dropped). Best effort: a failure only leaves a schema behind.
    pub async fn cleanup(self) {
        if let Place::Postgres {
            base_url,
            schema,
            storage,
        } = &self.place
        {
            storage.close().await;
            if let Ok(mut conn) = PgConnection::connect(base_url).await {
                let _ = conn
                    .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                    .await;
                let _ = conn.close().await;
            }
        }
    }
}

/// A SQLite storage on a new file in a temporary folder.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("cannot create a temporary folder");
    let url = format!("sqlite://{}", dir.path().join("orch.db").display());
    let storage = SqlStorage::connect_sqlite(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    TestDb {
        storage: Arc::new(storage),
        url,
        place: Place::Sqlite { _dir: dir },
    }
}

/// The test Postgres URL: `ORCH_TEST_DATABASE_URL` or [`DEFAULT_POSTGRES_URL`].
pub fn postgres_url() -> String {
    std::env::var("ORCH_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

fn unreachable(url: &str, error: impl std::fmt::Display) -> ! {
    panic!(
        "Postgres is not reachable at {}: {error}. Start it (on this machine: \
         pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or set \
         ORCH_TEST_DATABASE_URL to a reachable database.",
        orch::storage::redact_url(url)
    )
}

/// Connects to the test database, creating it first if it does not exist.
async fn connect_creating(url: &str) -> PgConnection {
    let options = PgConnectOptions::from_str(url)
        .unwrap_or_else(|e| panic!("bad ORCH_TEST_DATABASE_URL {url}: {e}"));
    match options.connect().await {
        Ok(conn) => return conn,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {}
        Err(e) => unreachable(url, e),
    }
    let database = options.get_database().unwrap_or("orch_test").to_owned();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .unwrap_or_else(|e| unreachable(url, e));
    if let Err(e) = admin
        .execute(format!("CREATE DATABASE \"{database}\"").as_str())
        .await
    {
        // Another test may have created it in the meantime.
        let concurrent = matches!(&e, sqlx::Error::Database(d)
            if matches!(d.code().as_deref(), Some("42P04") | Some("23505")));
        if !concurrent {
            panic!("cannot create the test database {database}: {e}");
        }
    }
    let _ = admin.close().await;
    options
        .connect()
        .await
        .unwrap_or_else(|e| unreachable(url, e))
}

/// A fresh, empty schema `t_<random>` of the test database (nothing migrated) and the URL
/// whose connections use it. [`drop_postgres_schema`] drops it.
pub async fn empty_postgres_schema() -> (String, String) {
    let base_url = postgres_url();
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut conn = connect_creating(&base_url).await;
    conn.execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create schema {schema}: {e}"));
    let _ = conn.close().await;
    let url = orch::storage::schema::url_with_schema(&base_url, &schema);
    (schema, url)
}

/// Drops a schema of [`empty_postgres_schema`] (best effort).
pub async fn drop_postgres_schema(schema: &str) {
    if let Ok(mut conn) = PgConnection::connect(&postgres_url()).await {
        let _ = conn
            .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
            .await;
        let _ = conn.close().await;
    }
}

/// A Postgres storage on a fresh schema `t_<random>` of the test database.
pub async fn postgres() -> TestDb {
    let base_url = postgres_url();
    let (schema, url) = empty_postgres_schema().await;
    let storage = SqlStorage::connect_postgres(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", orch::storage::redact_url(&url)));
    TestDb {
        storage: Arc::new(storage.clone()),
        url,
        place: Place::Postgres {
            base_url,
            schema,
            storage,
        },
    }
}
