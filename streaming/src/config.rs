//! A worker's configuration: where it reads, as whom, and when a batch closes.

use std::time::Duration;

use orch_lake::Topic;

/// When a partition's batch closes and goes to the lake: whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Records (valid or not) in the batch.
    pub max_events: usize,
    /// Time since the batch's first record was read.
    pub max_age: Duration,
}

impl Default for BatchLimits {
    /// 10,000 records or 1 second: at 10k events/s spread over a few partitions, batches close
    /// on age, so an event waits at most a second plus one upload (p99 well under 5 s), and
    /// files hold thousands of rows rather than a handful.
    fn default() -> Self {
        BatchLimits {
            max_events: 10_000,
            max_age: Duration::from_secs(1),
        }
    }
}

/// One worker of a consumer group.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `host:port[,host:port...]` of the brokers.
    pub brokers: String,
    /// The consumer group; workers of one group share the partitions.
    pub group_id: String,
    pub topics: Vec<Topic>,
    /// This worker's name in heartbeats and as Kafka's `client.id`.
    pub worker_id: String,
    pub batch: BatchLimits,
    /// How often the worker writes its heartbeat.
    pub heartbeat_interval: Duration,
    /// How long a batch that cannot be written is retried before the worker stops with an
    /// error (nothing is committed, so a restarted worker reads it again).
    pub write_retry: Duration,
    /// More librdkafka settings (`session.timeout.ms`, `security.protocol`, ...), applied last.
    pub kafka: Vec<(String, String)>,
    /// Compaction of closed hours (`None`: the worker does not compact).
    pub compaction: Option<CompactionConfig>,
}

/// When and how a worker compacts the hours of the topics whose partition 0 it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionConfig {
    /// An hour is closed when its newest file is this old.
    pub closed_after: Duration,
    /// How often the worker looks for closed hours.
    pub every: Duration,
    /// Days (UTC, counted back from today) whose hours are looked at.
    pub lookback_days: u32,
    /// Output size and how long replaced files are kept.
    pub options: orch_lake::CompactionOptions,
}

impl Default for CompactionConfig {
    /// Hours closed for 10 minutes, looked for every minute over today and the two days
    /// before; 128 MB files; replaced files kept 10 minutes.
    fn default() -> Self {
        CompactionConfig {
            closed_after: Duration::from_secs(600),
            every: Duration::from_secs(60),
            lookback_days: 2,
            options: orch_lake::CompactionOptions::default(),
        }
    }
}

impl WorkerConfig {
    /// A worker with the default batch limits, a 5-second heartbeat and a minute of retries.
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            brokers: brokers.into(),
            group_id: group_id.into(),
            topics: Topic::ALL.to_vec(),
            worker_id: default_worker_id(),
            batch: BatchLimits::default(),
            heartbeat_interval: Duration::from_secs(5),
            write_retry: Duration::from_secs(60),
            kafka: Vec::new(),
            compaction: Some(CompactionConfig::default()),
        }
    }
}

/// `HOSTNAME-PID`, unique among the workers of a deployment.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}
