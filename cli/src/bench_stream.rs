//! `orch bench stream`: the streaming worker's throughput and latency, from a broker to Parquet
//! in the lake. Two phases on one broker (a tansu it starts, or `--brokers`):
//! 1. throughput: `--events` eventsim events are produced first, then one worker drains them;
//!    events per second of wall time and per CPU-second of this process (the worker; the broker
//!    is another process);
//! 2. latency: a worker runs while events are produced at `--rate` for `--seconds`; the
//!    event-to-lake latency (Kafka timestamp to durable file) at p50 and p99.
//!
//! Prints the figures; asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clap::Args;
use orch_eventsim::{Config, Sink, Speed};
use orch_lake::{Lake, Topic};
use orch_streaming::tansu::Tansu;
use orch_streaming::{
    BatchLimits, HeartbeatSink, KafkaSink, LatencySummary, Metrics, Producer, WorkerConfig,
    WorkerStatus, WorkerSummary,
};
use tokio_util::sync::CancellationToken;

use crate::{CmdResult, Failure};

#[derive(Debug, Args)]
pub struct StreamBenchArgs {
    /// Events for the throughput phase.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events per second in the latency phase.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Length of the latency phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Partitions per topic (on the broker this command starts).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Use these brokers (topics created beforehand) instead of starting tansu.
    #[arg(long)]
    brokers: Option<String>,
    /// The lake (default: a temporary folder, removed after).
    #[arg(long)]
    lake: Option<String>,
    #[arg(long, default_value_t = BatchLimits::default().max_events)]
    max_batch_events: usize,
    #[arg(long, default_value_t = BatchLimits::default().max_age.as_millis() as u64)]
    max_batch_age_ms: u64,
}

/// The benchmark keeps no heartbeats.
struct NoHeartbeats;

#[async_trait]
impl HeartbeatSink for NoHeartbeats {
    async fn beat(&self, _: &WorkerStatus) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

pub async fn stream(args: StreamBenchArgs) -> CmdResult {
    // The broker this command starts is dropped (killed) on every way out, SIGINT and SIGTERM
    // included.
    let (_broker, brokers) = match &args.brokers {
        Some(brokers) => (None, brokers.clone()),
        None => {
            let broker = Tansu::start().map_err(|e| Failure::Work(e.to_string()))?;
            for topic in Topic::ALL {
                broker
                    .create_topic(topic.as_str(), args.partitions)
                    .map_err(|e| Failure::Work(e.to_string()))?;
            }
            let brokers = broker.brokers();
            (Some(broker), brokers)
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = run(args, brokers) => result,
        _ = tokio::signal::ctrl_c() => Err(Failure::Work("interrupted".into())),
        _ = term.recv() => Err(Failure::Work("terminated".into())),
    }
}

async fn run(args: StreamBenchArgs, brokers: String) -> CmdResult {
    let tmp = tempfile::tempdir()?;
    let lake_url = args
        .lake
        .clone()
        .unwrap_or_else(|| tmp.path().join("lake").display().to_string());
    let lake = Lake::open(&lake_url).map_err(|e| Failure::Usage(e.to_string()))?;
    let limits = BatchLimits {
        max_events: args.max_batch_events.max(1),
        max_age: Duration::from_millis(args.max_batch_age_ms.max(1)),
    };
    let group = format!("orch-bench-{}", std::process::id());
    println!(
        "broker {brokers}, {} partitions per topic, lake {}, batches of {} events or {} ms",
        args.partitions,
        lake.url(),
        limits.max_events,
        limits.max_age.as_millis()
    );

    // Phase 1: a backlog, drained by one worker.
    let start: DateTime<Utc> = "2026-11-22T00:00:00Z".parse().expect("a valid time");
    let produced = produce(&brokers, start, args.events, None).await?;
    println!("throughput: {produced} events produced; draining with one worker");
    let cpu_before = cpu_seconds();
    let began = Instant::now();
    let summary = drain(&brokers, &group, &lake, limits, produced, None).await?;
    let wall = began.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "  {} events in {:.1} s: {:.0} events/s, {:.0} events per CPU-second ({:.2} cores busy), {} files, {:.1} MB",
        summary.events_in,
        wall,
        summary.events_in as f64 / wall,
        summary.events_in as f64 / cpu.max(1e-9),
        cpu / wall,
        summary.files,
        summary.bytes as f64 / 1e6
    );

    // Phase 2: a steady rate, with the worker keeping up.
    let events = (args.rate * args.seconds as f64).round() as u64;
    println!(
        "latency: {events} events at {} events/s over {} s",
        args.rate, args.seconds
    );
    let summary = drain(
        &brokers,
        &group,
        &lake,
        limits,
        events,
        Some(ProduceWhile {
            brokers: brokers.clone(),
            start: start + chrono::Duration::days(1),
            rate: args.rate,
        }),
    )
    .await?;
    let LatencySummary {
        count,
        p50_ms,
        p99_ms,
        max_ms,
    } = summary.latency;
    println!(
        "  event to lake over {count} events: p50 {p50_ms} ms, p99 {p99_ms} ms, max {max_ms} ms"
    );
    Ok(())
}

/// Produces `events` eventsim events from `start`, at `rate` if given; returns how many.
async fn produce(
    brokers: &str,
    start: DateTime<Utc>,
    events: u64,
    rate: Option<f64>,
) -> Result<u64, Failure> {
    let producer = Producer::new(brokers, &[])?;
    let mut sink = KafkaSink::new(producer, rate);
    let mut config = Config::new(1, 200_000, start, start + chrono::Duration::days(7));
    config.speed = Speed::Fast;
    let simulation =
        orch_eventsim::Simulation::new(&config).map_err(|e| Failure::Usage(e.to_string()))?;
    for event in simulation.take(events as usize) {
        sink.send(&event).await?;
    }
    sink.flush().await?;
    Ok(sink.sent())
}

/// What `drain` produces while its worker reads: to the brokers, events from `start`, at `rate`
/// per second.
struct ProduceWhile {
    brokers: String,
    start: DateTime<Utc>,
    rate: f64,
}

/// Runs one worker until it has read `expected` more records (while `produce` sends them, if
/// given), then stops it gracefully.
async fn drain(
    brokers: &str,
    group: &str,
    lake: &Lake,
    limits: BatchLimits,
    expected: u64,
    produce_while: Option<ProduceWhile>,
) -> Result<WorkerSummary, Failure> {
    let mut config = WorkerConfig::new(brokers, group);
    config.batch = limits;
    config.worker_id = format!("bench-{}", std::process::id());
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(orch_streaming::run_worker(
        config,
        lake.clone(),
        metrics.clone(),
        Arc::new(NoHeartbeats),
        shutdown.clone(),
    ));
    if produce_while.is_some() {
        // Produce once the worker holds its partitions: the group's join is not latency.
        let joined_by = Instant::now() + Duration::from_secs(60);
        while metrics.partitions_held.get() == 0 && Instant::now() < joined_by {
            if worker.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let producer = produce_while.map(|p| {
        let ProduceWhile {
            brokers,
            start,
            rate,
        } = p;
        tokio::spawn(async move { produce(&brokers, start, expected, Some(rate)).await })
    });
    let deadline = Instant::now() + Duration::from_secs(3600);
    while metrics.records_written() < expected {
        if worker.is_finished() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(producer) = producer {
        producer.await.map_err(|e| Failure::Work(e.to_string()))??;
    }
    shutdown.cancel();
    let summary = worker.await.map_err(|e| Failure::Work(e.to_string()))??;
    Ok(summary)
}

/// CPU time (user and system) of this process so far, in seconds.
#[allow(unsafe_code)]
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
