//! One handle over both databases: SQL text with its arguments ([`Sql`]), run on the pool of
//! either backend ([`Db`]) or inside a write transaction ([`Tx`]), and the few statements that
//! must differ between them.
//!
//! Both backends run the same SQL text: sqlx-sqlite accepts `$1` placeholders, and `ON
//! CONFLICT ... DO UPDATE`, `RETURNING` and window functions work in both. What differs is
//! here, and only here:
//!
//! - the placeholders of statements built piece by piece ([`Sql::push_bind`]): `$n` for
//!   Postgres, `?` for SQLite, which reads `$n` as a name;
//! - a write transaction: SQLite takes the write lock up front with `BEGIN IMMEDIATE`
//!   ([`Db::begin_write`]), so that concurrent processes never fail with "database is locked";
//! - the ids of appended rows ([`Tx::allocate_ids`]), taken inside the write transaction so
//!   that rows get ids in append order whatever the database does with a multi-row insert;
//! - the most bind parameters one statement may hold ([`Db::max_params`]);
//! - row locks that end a `SELECT` inside a write transaction ([`Db::for_update`]): Postgres
//!   locks rows, while SQLite's `BEGIN IMMEDIATE` already holds the whole database;
//! - the locks that serialize the queue's claimers and the acquirers of one pool's slots
//!   ([`Db::queue_lock`], [`Db::pool_lock`]): Postgres takes a transaction-scoped advisory
//!   lock, SQLite needs none;
//! - how the queue's waiters are woken ([`Db::queue_notification`] inside the transaction that
//!   queued runs, [`Db::queue_committed`] after it commits, [`Db::notify_queue`],
//!   [`Db::wait_for_queue`]): Postgres `NOTIFY`, across processes; SQLite, within the process.

use std::borrow::Cow;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::types::Json;
use sqlx::{Arguments, FromRow, Postgres, Sqlite};

use super::{Backend, Result, postgres, sqlite};

/// One bind argument, typed as the column it goes to; text is borrowed where it can be.
#[derive(Debug)]
pub(super) enum Arg<'a> {
    Int(Option<i64>),
    Float(f64),
    Bool(bool),
    Text(Option<Cow<'a, str>>),
    /// JSON, already serialized (a `JSONB` column on Postgres, `TEXT` on SQLite).
    Json(Option<Box<RawValue>>),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Float(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Some(Cow::Owned(v)))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v.map(Cow::Borrowed))
    }
}

impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v.map(Cow::Owned))
    }
}

/// A statement and its arguments, in order. Either written with its placeholders (`$1`, `$2`,
/// ...) and then given [`bind`](Sql::bind)s, or built piece by piece with
/// [`push_bind`](Sql::push_bind), which writes the next placeholder; not both.
///
/// SQLite reads `$1` as a named parameter, and looks names up in a list, so that a statement
/// with thousands of them (a multi-row insert) takes quadratic time to prepare and bind. The
/// placeholders `push_bind` writes are therefore sent to SQLite as plain `?` (positional, each
/// used once, in order), and as `$n` to Postgres.
#[derive(Debug)]
pub(super) struct Sql<'a> {
    text: String,
    args: Vec<Arg<'a>>,
    /// Where `push_bind` wrote its placeholders in `text`: (offset, length).
    pushed: Vec<(usize, usize)>,
    /// Whether the database may cache the prepared statement: not for statements whose text
    /// depends on how many rows they carry.
    persistent: bool,
    /// An argument that could not be serialized; reported when the statement runs.
    error: Option<serde_json::Error>,
}

impl<'a> Sql<'a> {
    pub(super) fn new(text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            args: Vec::new(),
            pushed: Vec::new(),
            persistent: true,
            error: None,
        }
    }

    /// Adds the next argument (for the next `$n` already in the text).
    pub(super) fn bind(mut self, arg: impl Into<Arg<'a>>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds the next argument as JSON.
    pub(super) fn bind_json(mut self, value: &(impl Serialize + ?Sized)) -> Self {
        let arg = self.json(Some(value));
        self.args.push(arg);
        self
    }

    /// Adds the next argument as JSON, or `NULL`.
    pub(super) fn bind_opt_json(mut self, value: Option<&(impl Serialize + ?Sized)>) -> Self {
        let arg = self.json(value);
        self.args.push(arg);
        self
    }

    /// Appends text.
    pub(super) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends the next placeholder and its argument.
    pub(super) fn push_bind(&mut self, arg: impl Into<Arg<'a>>) -> &mut Self {
        self.args.push(arg.into());
        let at = self.text.len();
        // Writing to a String cannot fail.
        let _ = write!(self.text, "${}", self.args.len());
        self.pushed.push((at, self.text.len() - at));
        self
    }

    /// Appends `$i, $j, ...` for `args`.
    pub(super) fn push_bind_list<A: Into<Arg<'a>>>(
        &mut self,
        args: impl IntoIterator<Item = A>,
    ) -> &mut Self {
        for (i, arg) in args.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(arg);
        }
        self
    }

    /// Appends `VALUES (...), (...)`, one tuple per item, whose arguments `row` binds.
    pub(super) fn push_values<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut row: impl FnMut(&mut Values<'_, 'a>, T),
    ) -> &mut Self {
        self.push(" VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            self.push(if i == 0 { "(" } else { ", (" });
            row(
                &mut Values {
                    sql: &mut *self,
                    first: true,
                },
                item,
            );
            self.push(")");
        }
        self
    }

    /// Marks the statement as not worth caching (its text depends on its number of rows).
    pub(super) fn not_persistent(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Marks the statement as cacheable or not.
    pub(super) fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    fn json(&mut self, value: Option<&(impl Serialize + ?Sized)>) -> Arg<'a> {
        match value.map(serde_json::value::to_raw_value).transpose() {
            Ok(raw) => Arg::Json(raw),
            Err(e) => {
                self.error.get_or_insert(e);
                Arg::Json(None)
            }
        }
    }

    /// The text for SQLite: `push_bind`'s placeholders as `?`.
    fn sqlite_text(&self) -> Cow<'_, str> {
        if self.pushed.is_empty() {
            return self.text.as_str().into();
        }
        debug_assert_eq!(
            self.pushed.len(),
            self.args.len(),
            "a statement mixes bind and push_bind: {}",
            self.text
        );
        let mut text = String::with_capacity(self.text.len());
        let mut from = 0;
        for &(at, len) in &self.pushed {
            text.push_str(&self.text[from..at]);
            text.push('?');
            from = at + len;
        }
        text.push_str(&self.text[from..]);
        text.into()
    }

    fn check(&self) -> Result<(), sqlx::Error> {
        match &self.error {
            Some(e) => Err(sqlx::Error::Encode(e.to_string().into())),
            None => Ok(()),
        }
    }

    fn pg_arguments(&self) -> Result<PgArguments, sqlx::Error> {
        self.check()?;
        let mut out = PgArguments::default();
        for arg in &self.args {
            match arg {
                Arg::Int(v) => out.add(*v),
                Arg::Float(v) => out.add(*v),
                Arg::Bool(v) => out.add(*v),
                Arg::Text(v) => out.add(v.as_deref()),
                Arg::Json(v) => out.add(v.as_deref().map(Json)),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        Ok(out)
    }

    fn sqlite_arguments(&self) -> Result<SqliteArguments<'_>, sqlx::Error> {
        self.check()?;
        let mut out = SqliteArguments::default();
        for arg in &self.args {
            match arg {
                Arg::Int(v) => out.add(*v),
                Arg::Float(v) => out.add(*v),
                Arg::Bool(v) => out.add(*v),
                Arg::Text(v) => out.add(v.as_deref()),
                Arg::Json(v) => out.add(v.as_deref().map(Json)),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        Ok(out)
    }
}

/// The arguments of one `VALUES` tuple (see [`Sql::push_values`]).
pub(super) struct Values<'s, 'a> {
    sql: &'s mut Sql<'a>,
    first: bool,
}

impl<'a> Values<'_, 'a> {
    pub(super) fn bind(&mut self, arg: impl Into<Arg<'a>>) -> &mut Self {
        if !std::mem::take(&mut self.first) {
            self.sql.push(", ");
        }
        self.sql.push_bind(arg);
        self
    }

    pub(super) fn bind_json(&mut self, value: &(impl Serialize + ?Sized)) -> &mut Self {
        let arg = self.sql.json(Some(value));
        self.bind(arg)
    }
}

/// A row type both backends can decode (`#[derive(sqlx::FromRow)]`, or a tuple).
pub(super) trait Record:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// A connection of either backend, from the pool or inside a transaction.
pub(super) enum Conn<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

impl Conn<'_> {
    /// Runs `sql`; returns the number of rows it changed.
    pub(super) async fn execute(self, sql: &Sql<'_>) -> Result<u64> {
        Ok(match self {
            Conn::Postgres(c) => sqlx::query_with::<Postgres, _>(&sql.text, sql.pg_arguments()?)
                .persistent(sql.persistent)
                .execute(c)
                .await?
                .rows_affected(),
            Conn::Sqlite(c) => {
                let text = sql.sqlite_text();
                sqlx::query_with::<Sqlite, _>(&text, sql.sqlite_arguments()?)
                    .persistent(sql.persistent)
                    .execute(c)
                    .await?
                    .rows_affected()
            }
        })
    }

    pub(super) async fn fetch_all<T: Record>(self, sql: &Sql<'_>) -> Result<Vec<T>> {
        Ok(match self {
            Conn::Postgres(c) => {
                sqlx::query_as_with::<Postgres, T, _>(&sql.text, sql.pg_arguments()?)
                    .persistent(sql.persistent)
                    .fetch_all(c)
                    .await?
            }
            Conn::Sqlite(c) => {
                let text = sql.sqlite_text();
                sqlx::query_as_with::<Sqlite, T, _>(&text, sql.sqlite_arguments()?)
                    .persistent(sql.persistent)
                    .fetch_all(c)
                    .await?
            }
        })
    }

    pub(super) async fn fetch_optional<T: Record>(self, sql: &Sql<'_>) -> Result<Option<T>> {
        Ok(match self {
            Conn::Postgres(c) => {
                sqlx::query_as_with::<Postgres, T, _>(&sql.text, sql.pg_arguments()?)
                    .persistent(sql.persistent)
                    .fetch_optional(c)
                    .await?
            }
            Conn::Sqlite(c) => {
                let text = sql.sqlite_text();
                sqlx::query_as_with::<Sqlite, T, _>(&text, sql.sqlite_arguments()?)
                    .persistent(sql.persistent)
                    .fetch_optional(c)
                    .await?
            }
        })
    }

    pub(super) async fn fetch_one<T: Record>(self, sql: &Sql<'_>) -> Result<T> {
        Ok(match self {
            Conn::Postgres(c) => {
                sqlx::query_as_with::<Postgres, T, _>(&sql.text, sql.pg_arguments()?)
                    .persistent(sql.persistent)
                    .fetch_one(c)
                    .await?
            }
            Conn::Sqlite(c) => {
                let text = sql.sqlite_text();
                sqlx::query_as_with::<Sqlite, T, _>(&text, sql.sqlite_arguments()?)
                    .persistent(sql.persistent)
                    .fetch_one(c)
                    .await?
            }
        })
    }
}

/// The run history's database: its pool and what its backend does differently.
#[derive(Clone, Debug)]
pub(super) enum Db {
    Postgres(Arc<postgres::Pg>),
    Sqlite(Arc<sqlite::Lite>),
}

/// A connection taken from the pool for one statement.
enum Pooled {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Pooled {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Postgres(c) => Conn::Postgres(c),
            Pooled::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

impl Db {
    pub(super) fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    async fn acquire(&self) -> Result<Pooled> {
        Ok(match self {
            Db::Postgres(pg) => Pooled::Postgres(pg.pool.acquire().await?),
            Db::Sqlite(lite) => Pooled::Sqlite(lite.pool.acquire().await?),
        })
    }

    /// Runs `sql` on a pooled connection; returns the number of rows it changed.
    pub(super) async fn execute(&self, sql: Sql<'_>) -> Result<u64> {
        self.acquire().await?.conn().execute(&sql).await
    }

    pub(super) async fn fetch_all<T: Record>(&self, sql: Sql<'_>) -> Result<Vec<T>> {
        self.acquire().await?.conn().fetch_all(&sql).await
    }

    pub(super) async fn fetch_optional<T: Record>(&self, sql: Sql<'_>) -> Result<Option<T>> {
        self.acquire().await?.conn().fetch_optional(&sql).await
    }

    pub(super) async fn fetch_one<T: Record>(&self, sql: Sql<'_>) -> Result<T> {
        self.acquire().await?.conn().fetch_one(&sql).await
    }

    /// Starts a write transaction. SQLite takes the database's write lock at once (`BEGIN
    /// IMMEDIATE`, waiting for it), so that no read inside the transaction has to be upgraded
    /// to a write later, which could fail with "database is locked".
    pub(super) async fn begin_write(&self) -> Result<Tx> {
        Ok(match self {
            Db::Postgres(pg) => Tx::Postgres(pg.pool.begin().await?),
            Db::Sqlite(lite) => Tx::Sqlite(lite.pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// The most bind parameters one statement may hold.
    pub(super) fn max_params(&self) -> usize {
        match self {
            Db::Postgres(_) => postgres::MAX_PARAMS,
            Db::Sqlite(_) => sqlite::MAX_PARAMS,
        }
    }

    /// Ends a `SELECT` inside a write transaction whose rows must not change until it commits:
    /// Postgres locks them; SQLite already holds the whole database.
    pub(super) fn for_update(&self) -> &'static str {
        match self {
            Db::Postgres(_) => " FOR UPDATE",
            Db::Sqlite(_) => "",
        }
    }

    /// The statement that serializes, until their transactions end, the claimers that check a
    /// concurrency limit (`None`: `BEGIN IMMEDIATE` already does).
    pub(super) fn queue_lock(&self) -> Option<Sql<'static>> {
        match self {
            Db::Postgres(pg) => Some(pg.queue_lock()),
            Db::Sqlite(_) => None,
        }
    }

    /// The statement that serializes, until their transactions end, the acquirers of `pool`'s
    /// slots (`None`: `BEGIN IMMEDIATE` already does).
    pub(super) fn pool_lock(&self, pool: &str) -> Option<Sql<'static>> {
        match self {
            Db::Postgres(pg) => Some(pg.pool_lock(pool)),
            Db::Sqlite(_) => None,
        }
    }

    /// The statement that, inside a transaction that queued runs, wakes the queue's waiters
    /// when it commits (`None`: see [`Db::queue_committed`]).
    pub(super) fn queue_notification(&self) -> Option<Sql<'_>> {
        match self {
            Db::Postgres(pg) => Some(pg.notification()),
            Db::Sqlite(_) => None,
        }
    }

    /// Called after a transaction that queued runs commits: wakes this process's waiters on
    /// SQLite (Postgres delivered its notification on commit).
    pub(super) fn queue_committed(&self) {
        match self {
            Db::Postgres(_) => {}
            Db::Sqlite(lite) => lite.queued.notify(),
        }
    }

    /// Wakes the queue's waiters now.
    pub(super) async fn notify_queue(&self) -> Result<()> {
        match self {
            Db::Postgres(pg) => {
                self.execute(pg.notification()).await?;
            }
            Db::Sqlite(lite) => lite.queued.notify(),
        }
        Ok(())
    }

    /// Waits for a wake-up or the timeout.
    pub(super) async fn wait_for_queue(&self, timeout: Duration) {
        match self {
            Db::Postgres(pg) => pg.wait_for_queue(timeout).await,
            Db::Sqlite(lite) => lite.queued.wait(timeout).await,
        }
    }

    /// Closes the pools: waits for connections in use to come back, then closes them all.
    pub(super) async fn close(&self) {
        match self {
            Db::Postgres(pg) => pg.close().await,
            Db::Sqlite(lite) => lite.pool.close().await,
        }
    }
}

/// A write transaction of either backend (see [`Db::begin_write`]). Dropped without
/// [`commit`](Tx::commit), it rolls back.
pub(super) enum Tx {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

impl Tx {
    pub(super) fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Postgres(tx) => Conn::Postgres(tx),
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
        }
    }

    pub(super) async fn execute(&mut self, sql: Sql<'_>) -> Result<u64> {
        self.conn().execute(&sql).await
    }

    pub(super) async fn fetch_all<T: Record>(&mut self, sql: Sql<'_>) -> Result<Vec<T>> {
        self.conn().fetch_all(&sql).await
    }

    pub(super) async fn fetch_optional<T: Record>(&mut self, sql: Sql<'_>) -> Result<Option<T>> {
        self.conn().fetch_optional(&sql).await
    }

    pub(super) async fn fetch_one<T: Record>(&mut self, sql: Sql<'_>) -> Result<T> {
        self.conn().fetch_one(&sql).await
    }

    /// `n` fresh ids for rows of `table`, ascending.
    pub(super) async fn allocate_ids(&mut self, table: &'static str, n: usize) -> Result<Vec<i64>> {
        match self {
            Tx::Postgres(tx) => postgres::allocate_ids(tx, table, n).await,
            Tx::Sqlite(tx) => sqlite::allocate_ids(tx, table, n).await,
        }
    }

    pub(super) async fn commit(self) -> Result<()> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Sql;

    #[test]
    fn built_placeholders_are_positional_on_sqlite() {
        let mut sql = Sql::new("INSERT INTO t (a, b)");
        sql.push_values([(1_i64, "x"), (2, "y")], |row, (a, b)| {
            row.bind(a).bind(b);
        });
        assert_eq!(sql.text, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
        assert_eq!(
            sql.sqlite_text(),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );

        let mut list = Sql::new("SELECT 1 FROM t WHERE a IN (");
        list.push_bind_list(["a", "b", "c"]).push(") AND b > ");
        list.push_bind(10_i64);
        assert_eq!(
            list.sqlite_text(),
            "SELECT 1 FROM t WHERE a IN (?, ?, ?) AND b > ?"
        );

        // Written placeholders may repeat: they stay numbered.
        let written = Sql::new("UPDATE t SET a = $1, b = $1 WHERE c = $2")
            .bind(1_i64)
            .bind("c");
        assert_eq!(written.sqlite_text(), written.text);
    }
}
