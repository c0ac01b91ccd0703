//! `orch stream`: one streaming worker (Kafka topics into the lake) until SIGINT or SIGTERM,
//! with its heartbeat in the run history and, with `--metrics-addr`, Prometheus metrics.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;
use orch::storage::ComponentHeartbeat;
use orch_lake::{Lake, Topic};
use orch_streaming::{BatchLimits, HeartbeatSink, Metrics, WorkerConfig, WorkerStatus};
use orch_web::{STREAM_WORKER, StreamWorkerDetail};
use tokio_util::sync::CancellationToken;

use crate::{CmdResult, Failure};

pub const STREAM_EXAMPLES: &str = "\
Examples:
  orch stream --brokers 127.0.0.1:9092 --lake gs://my-bucket/lake --metrics-addr 0.0.0.0:9464
  orch stream --brokers redpanda:9092 --group orch-stream --topics listen_events,auth_events
  orch stream --max-batch-events 50000 --max-batch-age-ms 2000 -X session.timeout.ms=6000";

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// The Kafka (Redpanda) bootstrap servers.
    #[arg(long, env = "ORCH_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The consumer group: workers of one group share the topics' partitions.
    #[arg(long, env = "ORCH_STREAM_GROUP", default_value = "orch-stream")]
    group: String,
    /// The topics to read, comma-separated (default: eventsim's four).
    #[arg(long, value_delimiter = ',', value_parser = parse_topic)]
    topics: Vec<Topic>,
    /// The lake: a folder (default `.orch/lake` in the project), `gs://BUCKET/PREFIX` or
    /// `s3://BUCKET/PREFIX`.
    #[arg(long, env = "ORCH_LAKE_URL", value_name = "URL")]
    lake: Option<String>,
    /// A batch closes when it holds this many records...
    #[arg(long, default_value_t = BatchLimits::default().max_events)]
    max_batch_events: usize,
    /// ... or when its first record is this old (milliseconds).
    #[arg(long, default_value_t = BatchLimits::default().max_age.as_millis() as u64)]
    max_batch_age_ms: u64,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, env = "ORCH_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// This worker's id in heartbeats (default: HOSTNAME-PID).
    #[arg(long, env = "ORCH_WORKER_ID")]
    worker_id: Option<String>,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 5)]
    heartbeat_secs: u64,
    /// A librdkafka setting for the consumer, KEY=VALUE (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_setting)]
    kafka: Vec<(String, String)>,
    /// Compact an hour's raw files once its newest file is this many seconds old (0: never
    /// compact). The worker holding a topic's partition 0 compacts that topic.
    #[arg(long, env = "ORCH_COMPACT_AFTER_SECS", default_value_t = 600)]
    compact_after_secs: u64,
    /// The size compaction aims at for each file, in MB.
    #[arg(long, env = "ORCH_COMPACT_TARGET_MB", default_value_t = 128)]
    compact_target_mb: u64,
    /// How long compacted (replaced) files are kept for readers that listed them, in seconds.
    #[arg(long, default_value_t = 600)]
    compact_grace_secs: u64,
    /// Seconds between looks for closed hours.
    #[arg(long, default_value_t = 60)]
    compact_every_secs: u64,
}

fn parse_topic(s: &str) -> Result<Topic, String> {
    s.parse::<Topic>().map_err(|e| e.to_string())
}

/// `KEY=VALUE`.
pub fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!(
            "expected KEY=VALUE (a librdkafka setting), found {s:?}"
        )),
    }
}

/// The first beat's time, and the previous beat's time and events in.
type BeatClock = (
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    u64,
);

/// Heartbeats into the run history, as components of kind `stream_worker` whose detail is the
/// web UI's [`StreamWorkerDetail`], which its workers page shows.
struct RunHistoryHeartbeats {
    storage: Arc<dyn orch::storage::Storage>,
    /// The first beat's time, and the previous beat's time and events in (for the rate).
    started: std::sync::Mutex<Option<BeatClock>>,
}

#[async_trait]
impl HeartbeatSink for RunHistoryHeartbeats {
    async fn beat(
        &self,
        status: &WorkerStatus,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let (started_at, events_per_sec) = {
            let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
            let (first, last, events) =
                started.unwrap_or((status.updated_at, status.updated_at, status.events_in));
            let secs = (status.updated_at - last).num_milliseconds() as f64 / 1000.0;
            let rate = if status.stopped {
                0.0
            } else if secs > 0.0 {
                status.events_in.saturating_sub(events) as f64 / secs
            } else {
                0.0
            };
            *started = Some((first, status.updated_at, status.events_in));
            (first, rate)
        };
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let detail = StreamWorkerDetail {
            group_id: status.group_id.clone(),
            topics: status.topics.clone(),
            partitions: status
                .partitions
                .iter()
                .map(|p| format!("{}:{}", p.topic, p.partition))
                .collect(),
            lag: status.lag,
            events_in: count(status.events_in),
            events_written: count(status.events_written),
            dead_lettered: count(status.dead_lettered),
            events_per_sec,
            last_file: status.last_file.clone(),
        };
        self.storage
            // A stopped worker's last beat holds nothing (`status.partitions` is empty then).
            .component_heartbeat(&ComponentHeartbeat {
                kind: STREAM_WORKER.to_owned(),
                name: status.worker_id.clone(),
                detail: serde_json::to_value(&detail)?,
                started_at,
                last_seen: status.updated_at,
                stopped_at: None,
            })
            .await?;
        Ok(())
    }
}

/// The lake of a command: `--lake`, else `.orch/lake` in the project.
pub fn lake_url(dir: Option<&std::path::Path>, lake: Option<&str>) -> Result<String, Failure> {
    Ok(match lake {
        Some(url) => url.to_owned(),
        None => crate::project::config(dir)?
            .state_dir
            .join("lake")
            .display()
            .to_string(),
    })
}

pub async fn run(dir: Option<&std::path::Path>, args: StreamArgs) -> CmdResult {
    let project = crate::project::config(dir)?;
    let url = lake_url(dir, args.lake.as_deref())?;
    let lake = Lake::open(&url).map_err(|e| Failure::Usage(e.to_string()))?;
    if args.max_batch_events == 0 || args.max_batch_age_ms == 0 {
        return Err(Failure::Usage(
            "--max-batch-events and --max-batch-age-ms must be above 0".into(),
        ));
    }
    let storage = crate::project::storage(&project).await?;
    let mut config = WorkerConfig::new(&args.brokers, &args.group);
    if !args.topics.is_empty() {
        config.topics = args.topics;
    }
    if let Some(id) = args.worker_id {
        config.worker_id = id;
    }
    config.batch = BatchLimits {
        max_events: args.max_batch_events,
        max_age: Duration::from_millis(args.max_batch_age_ms),
    };
    config.heartbeat_interval = Duration::from_secs(args.heartbeat_secs.max(1));
    config.kafka = args.kafka;
    config.compaction = (args.compact_after_secs > 0).then(|| orch_streaming::CompactionConfig {
        closed_after: Duration::from_secs(args.compact_after_secs),
        every: Duration::from_secs(args.compact_every_secs.max(1)),
        options: orch_lake::CompactionOptions {
            target_bytes: args.compact_target_mb.max(1) * 1024 * 1024,
            grace: Duration::from_secs(args.compact_grace_secs),
        },
        ..orch_streaming::CompactionConfig::default()
    });

    let shutdown = CancellationToken::new();
    let metrics = Metrics::new();
    if let Some(addr) = &args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::Usage(format!("--metrics-addr {addr}: {e}")))?;
        eprintln!("metrics on http://{}/metrics", listener.local_addr()?);
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = orch_streaming::serve_metrics(listener, metrics, shutdown).await {
                tracing::error!(%error, "metrics endpoint stopped");
            }
        });
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        stop.cancel();
    });
    eprintln!(
        "stream worker {} in group {} from {} into {} (Ctrl-C stops after flushing)",
        config.worker_id,
        config.group_id,
        config.brokers,
        lake.url()
    );
    let heartbeats = Arc::new(RunHistoryHeartbeats {
        storage: storage.clone(),
        started: std::sync::Mutex::new(None),
    });
    let worker_id = config.worker_id.clone();
    let summary =
        orch_streaming::run_worker(config, lake, metrics, heartbeats, shutdown.clone()).await;
    shutdown.cancel();
    // The workers page shows it stopped rather than stale (a worker killed says nothing).
    if let Err(error) = storage
        .component_stopped(STREAM_WORKER, &worker_id, chrono::Utc::now())
        .await
    {
        tracing::warn!(%error, "cannot record that the worker stopped");
    }
    let summary = summary?;
    println!(
        "read {} records ({} more read again): {} events written, {} dead letters, {} files ({} bytes), {} commits ({} fenced); event-to-lake p50 {} ms, p99 {} ms",
        summary.events_in,
        summary.redelivered,
        summary.events_written,
        summary.dead_lettered,
        summary.files,
        summary.bytes,
        summary.commits,
        summary.fenced,
        summary.latency.p50_ms,
        summary.latency.p99_ms
    );
    Ok(())
}
