//! Who is alive: the daemons' heartbeats, and the heartbeats of any other component that
//! reports to the run history (streaming workers, ...), kept by kind and name with a JSON
//! detail the engine does not read. Tables `daemon_heartbeats` and `component_heartbeats`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::convert::{micros, opt_time, time};
use super::db::Sql;
use super::{Result, SqlStorage};

/// A daemon's heartbeat row.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonHeartbeat {
    pub daemon_id: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// What the daemon reports about itself (pid, host, runs in flight...).
    pub info: serde_json::Value,
}

/// The last heartbeat of a component outside the engine (a streaming worker, ...): one row per
/// kind and name, replaced at every beat.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentHeartbeat {
    /// What sort of component it is (`stream_worker`, ...): the readers of its detail go by
    /// it.
    pub kind: String,
    /// Which one, unique within its kind.
    pub name: String,
    /// What the component reports about itself; its kind's readers know its shape.
    pub detail: serde_json::Value,
    pub started_at: DateTime<Utc>,
    /// Its latest beat.
    pub last_seen: DateTime<Utc>,
    /// When it said it stopped (`None` while it runs, or if it died without saying so).
    pub stopped_at: Option<DateTime<Utc>>,
}

/// Heartbeats.
#[async_trait]
pub trait HealthStorage: Send + Sync {
    /// Records that a daemon is alive (upsert).
    async fn daemon_heartbeat(&self, heartbeat: &DaemonHeartbeat) -> Result<()>;

    /// Daemons that sent a heartbeat at or after `since`.
    async fn daemon_heartbeats(&self, since: DateTime<Utc>) -> Result<Vec<DaemonHeartbeat>>;

    /// Records a component's beat (upsert by kind and name): every field replaces the stored
    /// one, so a component that stopped and beats again is running again.
    async fn component_heartbeat(&self, beat: &ComponentHeartbeat) -> Result<()>;

    /// Records that a component stopped at `at`, keeping its last beat. Returns false if it
    /// never sent one.
    async fn component_stopped(&self, kind: &str, name: &str, at: DateTime<Utc>) -> Result<bool>;

    /// The components of `kind` last seen at or after `since`, by name.
    async fn component_heartbeats(
        &self,
        kind: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ComponentHeartbeat>>;
}

/// A `daemon_heartbeats` row.
#[derive(sqlx::FromRow)]
struct DaemonRow {
    daemon_id: String,
    started_at: i64,
    heartbeat_at: i64,
    info: Json<serde_json::Value>,
}

impl DaemonRow {
    fn into_heartbeat(self) -> Result<DaemonHeartbeat> {
        Ok(DaemonHeartbeat {
            daemon_id: self.daemon_id,
            started_at: time(self.started_at)?,
            heartbeat_at: time(self.heartbeat_at)?,
            info: self.info.0,
        })
    }
}

/// A `component_heartbeats` row.
#[derive(sqlx::FromRow)]
struct ComponentRow {
    kind: String,
    name: String,
    detail: Json<serde_json::Value>,
    started_at: i64,
    last_seen_at: i64,
    stopped_at: Option<i64>,
}

impl ComponentRow {
    fn into_heartbeat(self) -> Result<ComponentHeartbeat> {
        Ok(ComponentHeartbeat {
            kind: self.kind,
            name: self.name,
            detail: self.detail.0,
            started_at: time(self.started_at)?,
            last_seen: time(self.last_seen_at)?,
            stopped_at: opt_time(self.stopped_at)?,
        })
    }
}

#[async_trait]
impl HealthStorage for SqlStorage {
    async fn daemon_heartbeat(&self, heartbeat: &DaemonHeartbeat) -> Result<()> {
        self.db
            .execute(
                Sql::new(
                    "INSERT INTO daemon_heartbeats (daemon_id, started_at, heartbeat_at, info) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (daemon_id) DO UPDATE SET \
                     started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
                     info = excluded.info",
                )
                .bind(heartbeat.daemon_id.as_str())
                .bind(micros(heartbeat.started_at))
                .bind(micros(heartbeat.heartbeat_at))
                .bind_json(&heartbeat.info),
            )
            .await?;
        Ok(())
    }

    async fn daemon_heartbeats(&self, since: DateTime<Utc>) -> Result<Vec<DaemonHeartbeat>> {
        let rows: Vec<DaemonRow> = self
            .db
            .fetch_all(
                Sql::new(
                    "SELECT daemon_id, started_at, heartbeat_at, info FROM daemon_heartbeats \
                     WHERE heartbeat_at >= $1 ORDER BY daemon_id",
                )
                .bind(micros(since)),
            )
            .await?;
        rows.into_iter().map(DaemonRow::into_heartbeat).collect()
    }

    async fn component_heartbeat(&self, beat: &ComponentHeartbeat) -> Result<()> {
        self.db
            .execute(
                Sql::new(
                    "INSERT INTO component_heartbeats (kind, name, detail, started_at, \
                     last_seen_at, stopped_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (kind, name) DO UPDATE SET detail = excluded.detail, \
                     started_at = excluded.started_at, last_seen_at = excluded.last_seen_at, \
                     stopped_at = excluded.stopped_at",
                )
                .bind(beat.kind.as_str())
                .bind(beat.name.as_str())
                .bind_json(&beat.detail)
                .bind(micros(beat.started_at))
                .bind(micros(beat.last_seen))
                .bind(beat.stopped_at.map(micros)),
            )
            .await?;
        Ok(())
    }

    async fn component_stopped(&self, kind: &str, name: &str, at: DateTime<Utc>) -> Result<bool> {
        let stopped = self
            .db
            .execute(
                Sql::new(
                    "UPDATE component_heartbeats SET stopped_at = $1 \
                     WHERE kind = $2 AND name = $3",
                )
                .bind(micros(at))
                .bind(kind)
                .bind(name),
            )
            .await?;
        Ok(stopped > 0)
    }

    async fn component_heartbeats(
        &self,
        kind: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ComponentHeartbeat>> {
        let rows: Vec<ComponentRow> = self
            .db
            .fetch_all(
                Sql::new(
                    "SELECT kind, name, detail, started_at, last_seen_at, stopped_at \
                     FROM component_heartbeats WHERE kind = $1 AND last_seen_at >= $2 \
                     ORDER BY name",
                )
                .bind(kind)
                .bind(micros(since)),
            )
            .await?;
        let mut beats = rows
            .into_iter()
            .map(ComponentRow::into_heartbeat)
            .collect::<Result<Vec<_>>>()?;
        // By name, whatever the database's collation.
        beats.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(beats)
    }
}
