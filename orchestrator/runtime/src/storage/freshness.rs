//! Freshness violations: assets whose latest materialization is older than their policy
//! allows, opened once across daemons, notified, and resolved when the asset is fresh again.
//! Table `freshness_violations`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::convert::{asset_key, micros, opt_time, time};
use super::db::Sql;
use super::{Result, SqlStorage};
use crate::asset::AssetKey;

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

/// A violation to open (see [`FreshnessStorage::open_freshness_violation`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NewViolation<'a> {
    pub asset_key: &'a AssetKey,
    pub detected_at: DateTime<Utc>,
    /// The latest materialized partition, if any.
    pub latest_partition: Option<&'a str>,
    /// The latest materialization's time (`None`: never materialized).
    pub latest_materialized_at: Option<DateTime<Utc>>,
    /// The policy's allowed lag.
    pub max_lag_secs: i64,
    pub message: &'a str,
}

/// Freshness violations.
#[async_trait]
pub trait FreshnessStorage: Send + Sync {
    /// Opens `violation` unless its asset has one open: returns true if this call opened it.
    /// An open violation is left as it is (its detection time and message stay the first
    /// ones); a resolved one is replaced by the new violation (not notified, not resolved).
    async fn open_freshness_violation(&self, violation: &NewViolation<'_>) -> Result<bool>;

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

/// The columns of `freshness_violations` that make a [`FreshnessViolation`], in
/// [`ViolationRow`]'s order.
const VIOLATION_COLUMNS: &str = "asset_key, detected_at, latest_partition, \
     latest_materialized_at, max_lag_secs, message, notified_at, resolved_at";

/// A `freshness_violations` row.
#[derive(sqlx::FromRow)]
struct ViolationRow {
    asset_key: String,
    detected_at: i64,
    latest_partition: Option<String>,
    latest_materialized_at: Option<i64>,
    max_lag_secs: i64,
    message: String,
    notified_at: Option<i64>,
    resolved_at: Option<i64>,
}

impl ViolationRow {
    fn into_violation(self) -> Result<FreshnessViolation> {
        Ok(FreshnessViolation {
            asset_key: asset_key(&self.asset_key)?,
            detected_at: time(self.detected_at)?,
            latest_partition: self.latest_partition,
            latest_materialized_at: opt_time(self.latest_materialized_at)?,
            max_lag_secs: self.max_lag_secs,
            message: self.message,
            notified_at: opt_time(self.notified_at)?,
            resolved_at: opt_time(self.resolved_at)?,
        })
    }
}

#[async_trait]
impl FreshnessStorage for SqlStorage {
    async fn open_freshness_violation(&self, violation: &NewViolation<'_>) -> Result<bool> {
        // An open violation is left alone (the update's WHERE refuses it, and then nothing is
        // returned); a resolved one is replaced.
        let opened: Option<(String,)> = self
            .db
            .fetch_optional(
                Sql::new(
                    "INSERT INTO freshness_violations (asset_key, detected_at, latest_partition, \
                     latest_materialized_at, max_lag_secs, message, notified_at, resolved_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL) \
                     ON CONFLICT (asset_key) DO UPDATE SET detected_at = excluded.detected_at, \
                     latest_partition = excluded.latest_partition, \
                     latest_materialized_at = excluded.latest_materialized_at, \
                     max_lag_secs = excluded.max_lag_secs, message = excluded.message, \
                     notified_at = NULL, resolved_at = NULL \
                     WHERE freshness_violations.resolved_at IS NOT NULL \
                     RETURNING asset_key",
                )
                .bind(violation.asset_key.to_string())
                .bind(micros(violation.detected_at))
                .bind(violation.latest_partition)
                .bind(violation.latest_materialized_at.map(micros))
                .bind(violation.max_lag_secs)
                .bind(violation.message),
            )
            .await?;
        Ok(opened.is_some())
    }

    async fn resolve_freshness_violation(
        &self,
        asset_key: &AssetKey,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let resolved = self
            .db
            .execute(
                Sql::new(
                    "UPDATE freshness_violations SET resolved_at = $1 \
                     WHERE asset_key = $2 AND resolved_at IS NULL",
                )
                .bind(micros(at))
                .bind(asset_key.to_string()),
            )
            .await?;
        Ok(resolved > 0)
    }

    async fn freshness_violations(&self, open_only: bool) -> Result<Vec<FreshnessViolation>> {
        let open = if open_only {
            " WHERE resolved_at IS NULL"
        } else {
            ""
        };
        let rows: Vec<ViolationRow> = self
            .db
            .fetch_all(Sql::new(format!(
                "SELECT {VIOLATION_COLUMNS} FROM freshness_violations{open}"
            )))
            .await?;
        let mut violations = rows
            .into_iter()
            .map(ViolationRow::into_violation)
            .collect::<Result<Vec<_>>>()?;
        // By asset key, whatever the database's collation.
        violations.sort_by(|a, b| a.asset_key.cmp(&b.asset_key));
        Ok(violations)
    }

    async fn mark_violation_notified(
        &self,
        asset_key: &AssetKey,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let marked = self
            .db
            .execute(
                Sql::new("UPDATE freshness_violations SET notified_at = $1 WHERE asset_key = $2")
                    .bind(micros(at))
                    .bind(asset_key.to_string()),
            )
            .await?;
        Ok(marked > 0)
    }
}
