//! Pools: concurrency slots shared by every process on the run history. A step of a limited
//! pool runs only while it holds a slot, taken in one serialized transaction, renewed while
//! it runs and given back when it ends; a dead process's slots expire. Table `pool_slots`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::convert::{count, duration_micros, micros};
use super::db::Sql;
use super::{Result, SqlStorage};
use crate::run::RunId;

/// One step's slot in one pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSlot<'a> {
    pub pool: &'a str,
    pub run_id: RunId,
    pub step_key: &'a str,
}

/// Pool slots.
#[async_trait]
pub trait PoolStorage: Send + Sync {
    /// Takes one of the `limit` slots of `slot.pool` for `slot`'s step, held until `now + ttl`
    /// unless renewed, if fewer than `limit` unexpired slots of the pool are held (by any run,
    /// in any process): one transaction, serialized with every other acquirer of the pool
    /// (Postgres: a transaction-scoped advisory lock on the schema and pool; SQLite: `BEGIN
    /// IMMEDIATE`), so that concurrent acquirers never hold more than `limit`. Returns whether
    /// the step holds the slot. Re-acquiring a slot the step already holds (unexpired)
    /// succeeds whatever the count, and extends it like `renew_pool_slot`. Expired slots
    /// (their process stopped renewing them) do not count; the acquirer deletes them. The
    /// slot's owner is recorded as this process (`host:pid`).
    async fn try_acquire_pool_slot(
        &self,
        slot: &PoolSlot<'_>,
        limit: u32,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool>;

    /// Extends a held slot to `now + ttl`. Returns false, changing nothing, if the step does
    /// not hold it or it expired before `now` (someone else may hold it since): the caller
    /// must acquire it again.
    async fn renew_pool_slot(
        &self,
        slot: &PoolSlot<'_>,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool>;

    /// Gives back a slot (nothing happens if the step does not hold it).
    async fn release_pool_slot(&self, slot: &PoolSlot<'_>) -> Result<()>;

    /// The number of unexpired slots held in each pool at `now`, by pool name; pools without
    /// any are left out.
    async fn pool_usage(&self, now: DateTime<Utc>) -> Result<Vec<(String, u64)>>;
}

/// Who holds the pool slots this process takes: `host:pid`, for people reading `pool_slots`.
fn slot_owner() -> &'static str {
    static OWNER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host}:{}", std::process::id())
    });
    &OWNER
}

#[async_trait]
impl PoolStorage for SqlStorage {
    async fn try_acquire_pool_slot(
        &self,
        slot: &PoolSlot<'_>,
        limit: u32,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let now = micros(now);
        let expires_at = now.saturating_add(duration_micros(ttl));
        let run_id = slot.run_id.to_string();
        let mut tx = self.db.begin_write().await?;
        // Acquirers of this pool go one at a time, so that two of them cannot both see room
        // for one more slot.
        if let Some(lock) = self.db.pool_lock(slot.pool) {
            tx.execute(lock).await?;
        }
        let renewed = tx
            .execute(
                Sql::new(
                    "UPDATE pool_slots SET expires_at = $1, owner = $2 \
                     WHERE pool = $3 AND run_id = $4 AND step_key = $5 AND expires_at > $6",
                )
                .bind(expires_at)
                .bind(slot_owner())
                .bind(slot.pool)
                .bind(run_id.as_str())
                .bind(slot.step_key)
                .bind(now),
            )
            .await?;
        if renewed > 0 {
            tx.commit().await?;
            return Ok(true);
        }
        // The slots of processes that stopped renewing them.
        tx.execute(
            Sql::new("DELETE FROM pool_slots WHERE pool = $1 AND expires_at <= $2")
                .bind(slot.pool)
                .bind(now),
        )
        .await?;
        let (held,): (i64,) = tx
            .fetch_one(Sql::new("SELECT COUNT(*) FROM pool_slots WHERE pool = $1").bind(slot.pool))
            .await?;
        if held >= i64::from(limit) {
            tx.commit().await?;
            return Ok(false);
        }
        tx.execute(
            Sql::new(
                "INSERT INTO pool_slots (pool, run_id, step_key, owner, acquired_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (pool, run_id, step_key) DO UPDATE SET owner = excluded.owner, \
                 acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
            )
            .bind(slot.pool)
            .bind(run_id.as_str())
            .bind(slot.step_key)
            .bind(slot_owner())
            .bind(now)
            .bind(expires_at),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn renew_pool_slot(
        &self,
        slot: &PoolSlot<'_>,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        // An expired slot is not renewed: an acquirer may have deleted it and taken its place
        // (the row lock orders this update and that delete on Postgres).
        let now = micros(now);
        let renewed = self
            .db
            .execute(
                Sql::new(
                    "UPDATE pool_slots SET expires_at = $1 \
                     WHERE pool = $2 AND run_id = $3 AND step_key = $4 AND expires_at > $5",
                )
                .bind(now.saturating_add(duration_micros(ttl)))
                .bind(slot.pool)
                .bind(slot.run_id.to_string())
                .bind(slot.step_key)
                .bind(now),
            )
            .await?;
        Ok(renewed > 0)
    }

    async fn release_pool_slot(&self, slot: &PoolSlot<'_>) -> Result<()> {
        self.db
            .execute(
                Sql::new(
                    "DELETE FROM pool_slots WHERE pool = $1 AND run_id = $2 AND step_key = $3",
                )
                .bind(slot.pool)
                .bind(slot.run_id.to_string())
                .bind(slot.step_key),
            )
            .await?;
        Ok(())
    }

    async fn pool_usage(&self, now: DateTime<Utc>) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = self
            .db
            .fetch_all(
                Sql::new(
                    "SELECT pool, COUNT(*) FROM pool_slots WHERE expires_at > $1 GROUP BY pool",
                )
                .bind(micros(now)),
            )
            .await?;
        // By pool name, whatever the database's collation.
        let mut counts: Vec<(String, u64)> =
            rows.into_iter().map(|(pool, n)| (pool, count(n))).collect();
        counts.sort_unstable();
        Ok(counts)
    }
}
