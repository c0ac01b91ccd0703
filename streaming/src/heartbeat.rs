//! A worker's heartbeat: what it holds and how far it is. Where beats go is the caller's choice
//! through [`HeartbeatSink`] (`orch stream` writes them to the run history).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A partition a worker holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct HeldPartition {
    pub topic: String,
    pub partition: i32,
}

/// A worker's state at one heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    pub worker_id: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub partitions: Vec<HeldPartition>,
    /// Records behind the ends of the partitions held (from the broker's high watermarks and
    /// the committed offsets), once the client has reported it.
    pub lag: Option<i64>,
    /// Records read for the first time.
    pub events_in: u64,
    /// Records read again (already in the lake, or re-fetched): not in `events_in`.
    pub redelivered: u64,
    pub events_written: u64,
    pub dead_lettered: u64,
    /// The lake path of the last file written.
    pub last_file: Option<String>,
    /// The worker's last beat: it has stopped, holds nothing and has no lag.
    pub stopped: bool,
    pub updated_at: DateTime<Utc>,
}

/// Where a worker's heartbeats go. A failed beat is logged; the worker goes on.
#[async_trait]
pub trait HeartbeatSink: Send + Sync {
    async fn beat(
        &self,
        status: &WorkerStatus,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}
