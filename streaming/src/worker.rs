//! One streaming worker: a consumer in the group, per-partition buffers, flushes to the lake as
//! tokio tasks, and commits that follow durable writes.
//!
//! Delivery: a partition's offset is committed only when a flush holding every record before it
//! has been written (one flush per partition in flight at a time, so commits go in order).
//! Records read but not yet written are simply not committed: when a worker dies, or a partition
//! moves to another worker, the new owner reads them again from the committed offset. That is
//! at least once; the file names (partition and offsets) and the rows' `_source_partition` and
//! `_source_offset` let the staging load keep each record once.
//!
//! Rebalances: every partition has an epoch, bumped when it is revoked or assigned. A buffer
//! remembers the epoch it was opened in; a buffer of an older epoch is dropped unwritten (its
//! records come again from the committed offset), and a flush of an older epoch, already
//! written, is not committed (the new owner may already be further).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use hdrhistogram::Histogram;
use orch_lake::{Lake, Topic, WrittenFile};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::buffer::{Appended, Flush, PartitionBuffer};
use crate::config::WorkerConfig;
use crate::error::StreamError;
use crate::heartbeat::{HeartbeatSink, HeldPartition, WorkerStatus};
use crate::metrics::{AreaLabels, Metrics, PartitionLabels, TopicLabels};
use crate::writer::write_flush;

/// What a worker did, when it stops.
#[derive(Debug, Clone)]
pub struct WorkerSummary {
    pub events_in: u64,
    pub events_written: u64,
    pub dead_lettered: u64,
    pub files: u64,
    pub bytes: u64,
    pub commits: u64,
    /// Event-to-lake latency of the records written, in milliseconds.
    pub latency: LatencySummary,
}

/// Percentiles of the event-to-lake latency (ms): from a record's Kafka timestamp to the moment
/// its file was durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

type Key = (Topic, i32);

/// What the consumer's callbacks share with the loop.
#[derive(Default)]
struct Shared {
    assignment: Mutex<Assignment>,
    lag: Mutex<HashMap<(String, i32), i64>>,
}

#[derive(Default)]
struct Assignment {
    next_epoch: u64,
    held: HashMap<(String, i32), u64>,
}

impl Assignment {
    fn bump(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }
}

struct WorkerContext {
    shared: Arc<Shared>,
    metrics: Metrics,
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        let held: HashSet<(String, i32)> = {
            let assignment = self.shared.assignment.lock().expect("not poisoned");
            assignment.held.keys().cloned().collect()
        };
        let mut lag = self.shared.lag.lock().expect("not poisoned");
        lag.clear();
        for (topic, stats) in &statistics.topics {
            for (id, partition) in &stats.partitions {
                let key = (topic.clone(), *id);
                if *id < 0 || !held.contains(&key) || partition.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .consumer_lag
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition: id.to_string(),
                    })
                    .set(partition.consumer_lag);
                lag.insert(key, partition.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut assignment = self.shared.assignment.lock().expect("not poisoned");
            for element in list.elements() {
                assignment
                    .held
                    .remove(&(element.topic().to_owned(), element.partition()));
                assignment.bump();
            }
            self.metrics
                .partitions_held
                .set(assignment.held.len() as i64);
            tracing::info!(partitions = list.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let mut assignment = self.shared.assignment.lock().expect("not poisoned");
            for element in list.elements() {
                let epoch = assignment.bump();
                assignment
                    .held
                    .insert((element.topic().to_owned(), element.partition()), epoch);
            }
            self.metrics
                .partitions_held
                .set(assignment.held.len() as i64);
            tracing::info!(
                partitions = list.count(),
                held = assignment.held.len(),
                "partitions assigned"
            );
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(%error, partitions = offsets.count(), "offset commit refused (the records will be read again)");
        }
    }
}

/// What `finish` records a written flush in.
#[derive(Clone, Copy)]
struct Books<'a> {
    shared: &'a Shared,
    metrics: &'a Metrics,
    counters: &'a Counters,
    latency: &'a Mutex<Histogram<u64>>,
    last_file: &'a Mutex<Option<String>>,
}

/// A flush's outcome, back from its task.
struct Done {
    key: Key,
    epoch: u64,
    last_offset: i64,
    result: Result<(Vec<WrittenFile>, Instant), StreamError>,
    flush: Flush,
}

/// Counters for heartbeats and the summary.
#[derive(Default)]
struct Counters {
    events_in: AtomicU64,
    events_written: AtomicU64,
    dead_lettered: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
    commits: AtomicU64,
}

/// Runs one worker until `shutdown` fires, then flushes what it holds, commits, and returns
/// what it did. Returns an error when the consumer cannot be created or a batch cannot be
/// written within `config.write_retry` (nothing of it is committed).
pub async fn run_worker(
    config: WorkerConfig,
    lake: Lake,
    metrics: Metrics,
    heartbeats: Arc<dyn HeartbeatSink>,
    shutdown: CancellationToken,
) -> Result<WorkerSummary, StreamError> {
    let shared = Arc::new(Shared::default());
    let kafka_error = |source| StreamError::Kafka {
        brokers: config.brokers.clone(),
        source,
    };
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("client.id", &config.worker_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("statistics.interval.ms", "1000");
    for (key, value) in &config.kafka {
        client.set(key, value);
    }
    let consumer: StreamConsumer<WorkerContext> = client
        .create_with_context(WorkerContext {
            shared: shared.clone(),
            metrics: metrics.clone(),
        })
        .map_err(kafka_error)?;
    let topic_names: Vec<&str> = config.topics.iter().map(|t| t.as_str()).collect();
    consumer.subscribe(&topic_names).map_err(kafka_error)?;
    tracing::info!(
        worker = %config.worker_id,
        group = %config.group_id,
        topics = ?topic_names,
        lake = %lake.url(),
        "stream worker started"
    );

    let counters = Counters::default();
    // Fixed bounds (1 ms to a day): `saturating_record` clamps to the histogram's current
    // range, and an auto-resizing one starts at about 2 s, which capped every figure there.
    let latency = Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 24 * 3600 * 1000, 3)
            .expect("valid bounds and 3 significant digits"),
    );
    let last_file: Mutex<Option<String>> = Mutex::new(None);
    let mut buffers: HashMap<Key, PartitionBuffer> = HashMap::new();
    let mut in_flight: HashSet<Key> = HashSet::new();
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut tick = tokio::time::interval(
        (config.batch.max_age / 4).clamp(Duration::from_millis(10), Duration::from_millis(250)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beat = tokio::time::interval(config.heartbeat_interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let epoch_of = |topic: &str, partition: i32| -> Option<u64> {
        shared
            .assignment
            .lock()
            .expect("not poisoned")
            .held
            .get(&(topic.to_owned(), partition))
            .copied()
    };
    let start_flush = |tasks: &mut JoinSet<Done>, flush: Flush| {
        let lake = lake.clone();
        let metrics = metrics.clone();
        let retry_for = config.write_retry;
        tasks.spawn(async move {
            let key = (flush.topic, flush.partition);
            let (epoch, last_offset) = (flush.epoch, flush.last_offset);
            let result = write_with_retry(&lake, &flush, &metrics, retry_for).await;
            Done {
                key,
                epoch,
                last_offset,
                result,
                flush,
            }
        });
    };
    let mut failure: Option<StreamError> = None;
    let mut committed: HashMap<Key, (u64, i64)> = HashMap::new();
    let books = || Books {
        shared: &shared,
        metrics: &metrics,
        counters: &counters,
        latency: &latency,
        last_file: &last_file,
    };

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let done = done.expect("flush tasks do not panic");
                let key = done.key;
                in_flight.remove(&key);
                if let Err(e) = finish(&consumer, done, &books(), &mut committed) {
                    failure = Some(e);
                    break;
                }
                if let Some(buffer) = buffers.get_mut(&key)
                    && buffer.len() >= config.batch.max_events
                    && let Some(flush) = buffer.take()
                {
                    in_flight.insert(key);
                    start_flush(&mut tasks, flush);
                }
            }
            message = consumer.recv() => {
                let message = match message {
                    Ok(m) => m,
                    Err(error) => {
                        tracing::warn!(%error, "consumer error");
                        continue;
                    }
                };
                let Ok(topic) = message.topic().parse::<Topic>() else {
                    continue;
                };
                let partition = message.partition();
                let Some(epoch) = epoch_of(message.topic(), partition) else {
                    // Read just before a revocation: the partition's new owner reads it again.
                    continue;
                };
                let key = (topic, partition);
                let offset = message.offset();
                let buffer = buffers.entry(key).or_insert_with(|| PartitionBuffer::new(topic, partition, epoch));
                if buffer.epoch() != epoch || buffer.last_offset().is_some_and(|last| offset <= last) {
                    // A new assignment, or the client went back to the committed offset:
                    // start over from this record; what the old buffer held comes again.
                    *buffer = PartitionBuffer::new(topic, partition, epoch);
                }
                let appended = buffer.append(
                    offset,
                    message.key(),
                    message.payload().unwrap_or_default(),
                    message.timestamp().to_millis(),
                    Utc::now(),
                );
                counters.events_in.fetch_add(1, Ordering::Relaxed);
                metrics.events_in.get_or_create(&TopicLabels { topic: topic.as_str().to_owned() }).inc();
                match appended {
                    Ok(Appended::Valid) => {}
                    Ok(Appended::Dead(reason)) => {
                        tracing::debug!(topic = topic.as_str(), partition, offset, %reason, "dead letter");
                    }
                    Err(error) => {
                        // The lake refused a decoded event (a bug): keep going, loudly.
                        tracing::error!(%error, topic = topic.as_str(), partition, offset, "cannot buffer a decoded event");
                    }
                }
                if buffer.len() >= config.batch.max_events
                    && !in_flight.contains(&key)
                    && let Some(flush) = buffer.take()
                {
                    in_flight.insert(key);
                    start_flush(&mut tasks, flush);
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let current: HashMap<(String, i32), u64> = shared.assignment.lock().expect("not poisoned").held.clone();
                buffers.retain(|(topic, partition), buffer| {
                    current.get(&(topic.as_str().to_owned(), *partition)) == Some(&buffer.epoch())
                });
                for (key, buffer) in &mut buffers {
                    if !in_flight.contains(key)
                        && !buffer.is_empty()
                        && buffer.age(now) >= config.batch.max_age
                        && let Some(flush) = buffer.take()
                    {
                        in_flight.insert(*key);
                        start_flush(&mut tasks, flush);
                    }
                }
            }
            _ = beat.tick() => {
                let status = status(&config, &shared, &counters, &last_file);
                if let Err(error) = heartbeats.beat(&status).await {
                    tracing::warn!(%error, "cannot write the heartbeat");
                }
            }
        }
    }

    if failure.is_none() {
        // Graceful stop: write what is held, in order per partition, then commit.
        tracing::info!(buffers = buffers.len(), "stopping: flushing what is held");
        loop {
            for (key, buffer) in &mut buffers {
                if !in_flight.contains(key)
                    && let Some(flush) = buffer.take()
                {
                    in_flight.insert(*key);
                    start_flush(&mut tasks, flush);
                }
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let done = done.expect("flush tasks do not panic");
            in_flight.remove(&done.key);
            if let Err(e) = finish(&consumer, done, &books(), &mut committed) {
                failure = Some(e);
                break;
            }
        }
    }
    tasks.shutdown().await;
    let status = status(&config, &shared, &counters, &last_file);
    if let Err(error) = heartbeats.beat(&status).await {
        tracing::warn!(%error, "cannot write the last heartbeat");
    }
    if let Some(e) = failure {
        return Err(e);
    }
    // The async commits made along the way are settled by a last synchronous one, for the
    // partitions still held in the epoch they were written in.
    let mut list = TopicPartitionList::new();
    {
        let assignment = shared.assignment.lock().expect("not poisoned");
        for ((topic, partition), (epoch, offset)) in &committed {
            if assignment
                .held
                .get(&(topic.as_str().to_owned(), *partition))
                == Some(epoch)
            {
                list.add_partition_offset(topic.as_str(), *partition, Offset::Offset(*offset))
                    .expect("a valid offset");
            }
        }
    }
    if list.count() > 0
        && let Err(error) = consumer.commit(&list, CommitMode::Sync)
    {
        tracing::warn!(%error, "last commit failed (the records will be read again)");
    }
    consumer.unsubscribe();
    let latency = latency.into_inner().expect("not poisoned");
    Ok(WorkerSummary {
        events_in: counters.events_in.load(Ordering::Relaxed),
        events_written: counters.events_written.load(Ordering::Relaxed),
        dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
        files: counters.files.load(Ordering::Relaxed),
        bytes: counters.bytes.load(Ordering::Relaxed),
        commits: counters.commits.load(Ordering::Relaxed),
        latency: LatencySummary {
            count: latency.len(),
            p50_ms: latency.value_at_quantile(0.50),
            p99_ms: latency.value_at_quantile(0.99),
            max_ms: latency.max(),
        },
    })
}

/// Writes a flush, retrying with backoff for up to `retry_for`.
async fn write_with_retry(
    lake: &Lake,
    flush: &Flush,
    metrics: &Metrics,
    retry_for: Duration,
) -> Result<(Vec<WrittenFile>, Instant), StreamError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match write_flush(lake, flush).await {
            Ok(written) => {
                let done = Instant::now();
                metrics
                    .batch_write_seconds
                    .observe(done.duration_since(started).as_secs_f64());
                return Ok((written, done));
            }
            Err(source) => {
                metrics.write_errors.inc();
                tracing::warn!(
                    error = %source,
                    topic = flush.topic.as_str(),
                    partition = flush.partition,
                    first = flush.first_offset,
                    last = flush.last_offset,
                    attempts,
                    "cannot write a batch to the lake; retrying"
                );
                if started.elapsed() + delay > retry_for {
                    return Err(StreamError::Lake {
                        topic: flush.topic.as_str().to_owned(),
                        partition: flush.partition,
                        first: flush.first_offset,
                        last: flush.last_offset,
                        attempts,
                        source: Box::new(source),
                    });
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// After a flush: counts, latency, and the commit when the partition is still held in the
/// flush's epoch.
fn finish(
    consumer: &StreamConsumer<WorkerContext>,
    done: Done,
    books: &Books<'_>,
    committed: &mut HashMap<Key, (u64, i64)>,
) -> Result<(), StreamError> {
    let Books {
        shared,
        metrics,
        counters,
        latency,
        last_file,
    } = *books;
    let (written, written_at) = done.result?;
    let topic = TopicLabels {
        topic: done.key.0.as_str().to_owned(),
    };
    let events = done.flush.events() as u64;
    let dead = done.flush.dead_letters.len() as u64;
    counters.events_written.fetch_add(events, Ordering::Relaxed);
    counters.dead_lettered.fetch_add(dead, Ordering::Relaxed);
    metrics.events_written.get_or_create(&topic).inc_by(events);
    metrics.dead_lettered.get_or_create(&topic).inc_by(dead);
    for file in &written {
        let area = if file.path.starts_with("dlq/") {
            "dlq"
        } else {
            "raw"
        };
        let labels = AreaLabels {
            area: area.to_owned(),
        };
        metrics.files_written.get_or_create(&labels).inc();
        metrics
            .bytes_written
            .get_or_create(&labels)
            .inc_by(file.bytes);
        counters.files.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(file.bytes, Ordering::Relaxed);
    }
    if let Some(file) = written.last() {
        *last_file.lock().expect("not poisoned") = Some(file.path.clone());
    }
    // Event-to-lake latency: from the record's Kafka timestamp to now (the write returned at
    // `written_at`, a moment ago).
    let done_ms = Utc::now().timestamp_millis() - written_at.elapsed().as_millis() as i64;
    {
        let mut histogram = latency.lock().expect("not poisoned");
        for produced in &done.flush.produced_ms {
            let ms = (done_ms - produced).max(0) as u64;
            histogram.saturating_record(ms);
            metrics.event_to_lake_seconds.observe(ms as f64 / 1000.0);
        }
    }
    let held = shared
        .assignment
        .lock()
        .expect("not poisoned")
        .held
        .get(&(done.key.0.as_str().to_owned(), done.key.1))
        .copied();
    if held != Some(done.epoch) {
        tracing::info!(
            topic = done.key.0.as_str(),
            partition = done.key.1,
            last = done.last_offset,
            "partition moved while its batch was written: written, not committed"
        );
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(
        done.key.0.as_str(),
        done.key.1,
        Offset::Offset(done.last_offset + 1),
    )
    .expect("a valid offset");
    committed.insert(done.key, (done.epoch, done.last_offset + 1));
    match consumer.commit(&list, CommitMode::Async) {
        Ok(()) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            metrics.commits.inc();
        }
        Err(error) => {
            tracing::warn!(%error, topic = done.key.0.as_str(), partition = done.key.1, "cannot commit (the records will be read again)");
        }
    }
    Ok(())
}

fn status(
    config: &WorkerConfig,
    shared: &Shared,
    counters: &Counters,
    last_file: &Mutex<Option<String>>,
) -> WorkerStatus {
    let partitions: BTreeSet<HeldPartition> = shared
        .assignment
        .lock()
        .expect("not poisoned")
        .held
        .keys()
        .map(|(topic, partition)| HeldPartition {
            topic: topic.clone(),
            partition: *partition,
        })
        .collect();
    let lag = {
        let lag = shared.lag.lock().expect("not poisoned");
        (!lag.is_empty()).then(|| lag.values().sum())
    };
    WorkerStatus {
        worker_id: config.worker_id.clone(),
        group_id: config.group_id.clone(),
        topics: config
            .topics
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
        partitions: partitions.into_iter().collect(),
        lag,
        events_in: counters.events_in.load(Ordering::Relaxed),
        events_written: counters.events_written.load(Ordering::Relaxed),
        dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
        last_file: last_file.lock().expect("not poisoned").clone(),
        updated_at: Utc::now(),
    }
}
