//! `orch bench stream`: the streaming worker's throughput and latency, from a broker to Parquet
//! in the lake. Two phases on one broker (a tansu it starts, or `--brokers`):
//! 1. throughput: `--events` eventsim events are produced first, then one worker drains them;
//!    events per second of wall time and per CPU-second of this process (the worker; the broker
//!    is another process);
//! 2. latency: a worker runs while events are produced at `--rate` for `--seconds`; the
//!    event-to-lake latency (Kafka timestamp to durable file) at p50 and p99;
//! 3. compaction: the hours written so far compacted, files before and after;
//! 4. takeover: two workers share the partitions, one stops (a clean leave of the group), then
//!    a worker process is killed (SIGKILL, found out by the session timeout): how long until the
//!    other worker holds every partition.
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
    /// Skip the takeover phase.
    #[arg(long)]
    no_takeover: bool,
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
        summary.events_in + summary.redelivered,
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

    compact(&lake).await?;
    if !args.no_takeover {
        takeover(
            &brokers,
            &format!("{group}-takeover"),
            &lake,
            limits,
            args.partitions,
        )
        .await?;
    }
    Ok(())
}

/// Phase 3: every hour written so far compacted at once (as a worker does once an hour is
/// closed).
async fn compact(lake: &Lake) -> Result<(), Failure> {
    let options = orch_lake::CompactionOptions::default();
    let work = |e: orch_lake::LakeError| Failure::Work(e.to_string());
    let (mut before, mut after, mut hours) = (0, 0, 0);
    let began = Instant::now();
    let cpu_before = cpu_seconds();
    for topic in Topic::ALL {
        for hour in lake.list_hours(topic).await.map_err(work)? {
            before += lake.list_files(topic, hour).await.map_err(work)?.len();
            lake.compact_hour(topic, hour, options)
                .await
                .map_err(work)?;
            after += lake.list_files(topic, hour).await.map_err(work)?.len();
            hours += 1;
        }
    }
    println!(
        "compaction: {hours} hours, {before} files became {after} in {:.1} s ({:.1} CPU-seconds)",
        began.elapsed().as_secs_f64(),
        cpu_seconds() - cpu_before
    );
    Ok(())
}

/// Phase 4: how long until one worker holds every partition, after the other stopped cleanly
/// and after another was killed.
async fn takeover(
    brokers: &str,
    group: &str,
    lake: &Lake,
    limits: BatchLimits,
    partitions: u32,
) -> Result<(), Failure> {
    let all = (partitions * Topic::ALL.len() as u32) as i64;
    let start_worker = |id: &str| {
        let mut config = WorkerConfig::new(brokers, group);
        config.batch = limits;
        config.compaction = None;
        config.worker_id = id.to_owned();
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(orch_streaming::run_worker(
            config,
            lake.clone(),
            metrics.clone(),
            Arc::new(NoHeartbeats),
            shutdown.clone(),
        ));
        (metrics, shutdown, worker)
    };
    let wait_for = |metrics: Metrics, held: i64, limit: Duration| async move {
        let began = Instant::now();
        while metrics.partitions_held.get() != held {
            if began.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(began.elapsed())
    };
    println!("takeover: {all} partitions, two workers");
    let (b_metrics, b_stop, b) = start_worker("bench-takeover-b");
    wait_for(b_metrics.clone(), all, Duration::from_secs(60))
        .await
        .ok_or_else(|| Failure::Work("worker B never held every partition".into()))?;
    // A clean stop: the stopping worker leaves the group.
    let (a_metrics, a_stop, a) = start_worker("bench-takeover-a");
    wait_for(a_metrics.clone(), all / 2, Duration::from_secs(60))
        .await
        .ok_or_else(|| Failure::Work("worker A never got half the partitions".into()))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = Instant::now();
    a_stop.cancel();
    let took = wait_for(b_metrics.clone(), all, Duration::from_secs(60)).await;
    a.await.map_err(|e| Failure::Work(e.to_string()))??;
    match took {
        Some(_) => println!(
            "  a worker stops: the other holds every partition {} ms later",
            stopped.elapsed().as_millis()
        ),
        None => println!("  a worker stops: the other did not get every partition within 60 s"),
    }
    // A killed worker: a separate process, SIGKILLed.
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .current_dir(dir.path())
        .args([
            "stream",
            "--brokers",
            brokers,
            "--group",
            group,
            "--lake",
            lake.url(),
        ])
        .args([
            "--worker-id",
            "bench-takeover-killed",
            "--compact-after-secs",
            "0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let shared = wait_for(b_metrics.clone(), all / 2, Duration::from_secs(60)).await;
    if shared.is_none() {
        let _ = child.kill();
        return Err(Failure::Work(
            "the worker process never took half the partitions".into(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    child.kill()?;
    child.wait()?;
    let took = wait_for(b_metrics.clone(), all, Duration::from_secs(120)).await;
    match took {
        Some(_) => println!(
            "  a worker is killed: the other holds every partition {} ms later (session timeout 6 s)",
            killed.elapsed().as_millis()
        ),
        None => {
            println!("  a worker is killed: the other did not get every partition within 120 s")
        }
    }
    b_stop.cancel();
    b.await.map_err(|e| Failure::Work(e.to_string()))??;
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
    config.compaction = None;
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
