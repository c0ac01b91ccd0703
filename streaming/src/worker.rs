//! One streaming worker: a consumer in the group, a [`Partition`] per partition held, batches
//! written to the lake as tokio tasks (one in flight per partition), exactly once through each
//! partition's commit log in the lake (see [`orch_lake::commit`]).
//!
//! [`Worker`] is the state; [`Worker::run`] is its loop, which hands each input to one method:
//! [`Worker::on_rebalance`] (partitions assigned or revoked, sent by the consumer's callbacks over
//! a channel), [`Worker::on_synced`] (a partition's log head read), [`Worker::on_message`] (a
//! record), [`Worker::on_written`] (a batch's task finished) and, when it stops,
//! [`Worker::drain`].
//!
//! Where a partition starts is the head of its log, not Kafka's committed offset: a partition
//! newly assigned is paused until its head is read, then records before the head's end are
//! skipped (counted as read again), and the next batch commits the next place of the log. A
//! commit that finds its place taken (a zombie, or the worker itself after losing the
//! partition) is fenced: the batch is dropped and the head read again. Kafka's offsets are
//! committed after each batch, for lag and tools.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use hdrhistogram::Histogram;
use orch_lake::{CommitEntry, Lake, Topic, WrittenFile};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::buffer::{Appended, Flush};
use crate::compactor::Compactor;
use crate::config::WorkerConfig;
use crate::consumer::{Held, Key, Rebalanced, WorkerContext, client_config, resume};
use crate::error::StreamError;
use crate::faults::Faults;
use crate::heartbeat::{HeartbeatSink, HeldPartition, WorkerStatus};
use crate::metrics::{AreaLabels, Metrics, PartitionLabels, TopicLabels};
use crate::partition::{Partition, Phase, Verdict};
use crate::writer::{SOURCE, WriteSettings, Written, write};

/// Records handled in one turn of the loop when they are ready (then timers, finished batches
/// and rebalances get their turn).
const MESSAGES_PER_TURN: usize = 256;

/// What a worker did, when it stops.
#[derive(Debug, Clone)]
pub struct WorkerSummary {
    /// Records read for the first time (kept in a batch).
    pub events_in: u64,
    /// Records read again: already in the lake (written before a rebalance or a crash) or
    /// re-fetched after a seek.
    pub redelivered: u64,
    pub events_written: u64,
    pub dead_lettered: u64,
    pub files: u64,
    pub bytes: u64,
    pub commits: u64,
    /// Batches whose commit another writer's fenced.
    pub fenced: u64,
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

/// Counters for heartbeats and the summary.
#[derive(Default)]
struct Counters {
    events_in: AtomicU64,
    redelivered: AtomicU64,
    events_written: AtomicU64,
    dead_lettered: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
    commits: AtomicU64,
    fenced: AtomicU64,
}

/// A batch's task, finished.
struct WrittenBatch {
    key: Key,
    epoch: u64,
    result: Result<(Flush, Written, Instant), StreamError>,
}

/// A partition's log head, read.
struct Synced {
    key: Key,
    epoch: u64,
    result: Result<(Option<CommitEntry>, bool), orch_lake::LakeError>,
}

/// A streaming worker. See the module's documentation.
pub struct Worker {
    config: WorkerConfig,
    lake: Lake,
    metrics: Metrics,
    heartbeats: Arc<dyn HeartbeatSink>,
    consumer: Arc<StreamConsumer<WorkerContext>>,
    rebalances: UnboundedReceiver<Rebalanced>,
    held: Arc<Mutex<Held>>,
    partitions: HashMap<Key, Partition>,
    /// Partitions with a batch in flight (of any epoch).
    in_flight: HashMap<Key, u64>,
    /// The highest offset read per partition, over every assignment: what is below it is read
    /// again.
    read_up_to: HashMap<Key, i64>,
    next_epoch: u64,
    batches: JoinSet<WrittenBatch>,
    syncs: JoinSet<Synced>,
    settings: WriteSettings,
    counters: Counters,
    events_in: HashMap<Topic, prometheus_client::metrics::counter::Counter>,
    latency: Histogram<u64>,
    last_file: Option<String>,
    /// Kafka offsets to commit when the worker stops: per partition, (epoch, offset).
    committed: HashMap<Key, (u64, i64)>,
    compactor: Compactor,
}

impl Worker {
    /// A worker subscribed to `config.topics` (nothing is read before [`Worker::run`]).
    pub fn new(
        config: WorkerConfig,
        lake: Lake,
        metrics: Metrics,
        heartbeats: Arc<dyn HeartbeatSink>,
    ) -> Result<Worker, StreamError> {
        let kafka_error = |source| StreamError::Kafka {
            brokers: config.brokers.clone(),
            source,
        };
        let held = Arc::new(Mutex::new(Held::default()));
        let (events, rebalances) = unbounded_channel();
        let consumer: StreamConsumer<WorkerContext> = client_config(&config)
            .create_with_context(WorkerContext {
                held: held.clone(),
                metrics: metrics.clone(),
                events,
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
        let events_in = Topic::ALL
            .iter()
            .map(|t| {
                let labels = TopicLabels {
                    topic: t.as_str().to_owned(),
                };
                (*t, metrics.events_in.get_or_create(&labels).clone())
            })
            .collect();
        let settings = WriteSettings {
            lake: lake.clone(),
            writer: config.worker_id.clone(),
            retry_for: config.write_retry,
            metrics: metrics.clone(),
            faults: Faults::from_env(),
        };
        let compactor = Compactor::new(config.compaction, lake.clone(), metrics.clone());
        Ok(Worker {
            config,
            lake,
            metrics,
            heartbeats,
            consumer: Arc::new(consumer),
            rebalances,
            held,
            partitions: HashMap::new(),
            in_flight: HashMap::new(),
            read_up_to: HashMap::new(),
            next_epoch: 0,
            batches: JoinSet::new(),
            syncs: JoinSet::new(),
            settings,
            counters: Counters::default(),
            events_in,
            // Fixed bounds (1 ms to a day): `saturating_record` clamps to the histogram's
            // current range, and an auto-resizing one starts at about 2 s.
            latency: Histogram::<u64>::new_with_bounds(1, 24 * 3600 * 1000, 3)
                .expect("valid bounds and 3 significant digits"),
            last_file: None,
            committed: HashMap::new(),
            compactor,
        })
    }

    /// Runs until `shutdown` fires, then drains: writes what it holds, commits, leaves the
    /// group, and returns what it did. An error when a batch cannot be written within
    /// `config.write_retry` (nothing of it is committed) or a task fails.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<WorkerSummary, StreamError> {
        let consumer = self.consumer.clone();
        let mut tick = tokio::time::interval(
            (self.config.batch.max_age / 4)
                .clamp(Duration::from_millis(10), Duration::from_millis(250)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(self.config.heartbeat_interval);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failure = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(event) = self.rebalances.recv() => self.on_rebalance(event),
                Some(done) = self.batches.join_next(), if !self.batches.is_empty() => {
                    let done = done.map_err(|e| StreamError::task("writing a batch", e));
                    if let Err(e) = done.and_then(|done| self.on_written(done)) {
                        failure = Some(e);
                        break;
                    }
                }
                Some(synced) = self.syncs.join_next(), if !self.syncs.is_empty() => {
                    match synced {
                        Ok(synced) => self.on_synced(synced),
                        Err(e) => {
                            failure = Some(StreamError::task("reading a commit log", e));
                            break;
                        }
                    }
                }
                message = consumer.recv() => {
                    // One reading of the clock for the records of a turn (their lineage's
                    // ingestion time).
                    let now = Utc::now();
                    match message {
                        Ok(message) => self.on_message(&message, now),
                        Err(error) => tracing::warn!(%error, "consumer error"),
                    }
                    // Then what else is ready, without going round the loop for each record.
                    for _ in 0..MESSAGES_PER_TURN {
                        match consumer.recv().now_or_never() {
                            Some(Ok(message)) => self.on_message(&message, now),
                            Some(Err(error)) => tracing::warn!(%error, "consumer error"),
                            None => break,
                        }
                    }
                }
                _ = tick.tick() => {
                    self.close_old_batches();
                    let leading = self.leading_topics();
                    self.compactor.tick(&leading);
                }
                _ = beat.tick() => {
                    // Kafka's offsets follow the lake's logs: a commit refused during a
                    // rebalance is made good here.
                    self.commit_offsets(CommitMode::Async);
                    let status = self.status(false);
                    if let Err(error) = self.heartbeats.beat(&status).await {
                        tracing::warn!(%error, "cannot write the heartbeat");
                    }
                }
            }
        }
        let drained = match failure {
            Some(e) => Err(e),
            None => self.drain().await,
        };
        self.stop(drained).await
    }

    /// Partitions assigned or revoked.
    fn on_rebalance(&mut self, event: Rebalanced) {
        match event {
            Rebalanced::Assigned(keys) => {
                for key in keys {
                    self.next_epoch += 1;
                    let mut partition = Partition::new(key.0, key.1, self.next_epoch);
                    self.held
                        .lock()
                        .expect("not poisoned")
                        .partitions
                        .insert((key.0.as_str().to_owned(), key.1));
                    if self.in_flight.contains_key(&key) {
                        // Its batch of before the revocation first: its commit moves the head.
                        partition.sync_pending = true;
                    } else {
                        self.start_sync(key, partition.epoch);
                    }
                    self.partitions.insert(key, partition);
                }
            }
            Rebalanced::Revoked(keys) => {
                let mut held = self.held.lock().expect("not poisoned");
                for key in keys {
                    self.partitions.remove(&key);
                    let name = (key.0.as_str().to_owned(), key.1);
                    held.partitions.remove(&name);
                    held.lag.remove(&name);
                    self.metrics.consumer_lag.remove(&PartitionLabels {
                        topic: name.0,
                        partition: key.1.to_string(),
                    });
                }
            }
        }
        self.metrics
            .partitions_held
            .set(self.partitions.len() as i64);
    }

    fn start_sync(&mut self, key: Key, epoch: u64) {
        let lake = self.lake.clone();
        self.syncs.spawn(async move {
            let mut delay = Duration::from_millis(100);
            let result = loop {
                let result = async {
                    let head = lake.log_head(SOURCE, key.0, key.1).await?;
                    let missing = match &head {
                        Some(entry) => !lake.log_missing_files(entry).await?.is_empty(),
                        None => false,
                    };
                    Ok((head, missing))
                }
                .await;
                match result {
                    Err(error) if delay < Duration::from_secs(10) => {
                        tracing::warn!(%error, topic = key.0.as_str(), partition = key.1, "cannot read the commit log; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    other => break other,
                }
            };
            Synced { key, epoch, result }
        });
    }

    /// A partition's log head was read: go on from it.
    fn on_synced(&mut self, synced: Synced) {
        let Some(partition) = self.partitions.get_mut(&synced.key) else {
            return;
        };
        if partition.epoch != synced.epoch {
            return;
        }
        let (head, missing) = match synced.result {
            Ok(head) => head,
            Err(error) => {
                tracing::error!(%error, topic = synced.key.0.as_str(), partition = synced.key.1, "cannot read the commit log; trying again");
                self.start_sync(synced.key, synced.epoch);
                return;
            }
        };
        if missing && let Some(entry) = &head {
            tracing::info!(
                topic = synced.key.0.as_str(),
                partition = synced.key.1,
                seq = entry.seq,
                first = entry.first_offset,
                last = entry.last_offset,
                "the log's last batch has files missing: writing them again"
            );
        }
        if let Some(entry) = head.as_ref().filter(|_| !missing) {
            self.committed
                .insert(synced.key, (synced.epoch, entry.next_offset()));
        }
        if let Some(offset) = partition.synced(head, missing)
            && !seek(&self.consumer, synced.key, offset)
        {
            partition.seeked = false;
        }
        resume(&*self.consumer, &[synced.key]);
    }

    /// A record: kept in its partition's buffer, or skipped.
    fn on_message(&mut self, message: &BorrowedMessage<'_>, now: DateTime<Utc>) {
        let Ok(topic) = message.topic().parse::<Topic>() else {
            return;
        };
        let key = (topic, message.partition());
        if !self.partitions.contains_key(&key) {
            // Assigned a moment ago, and the event is still in the channel?
            while let Ok(event) = self.rebalances.try_recv() {
                self.on_rebalance(event);
            }
        }
        let Some(partition) = self.partitions.get_mut(&key) else {
            // Read just before a revocation: the partition's next owner reads it.
            return;
        };
        let offset = message.offset();
        let first_read = self.read_up_to.get(&key).is_none_or(|up| offset > *up);
        match partition.judge(offset) {
            Verdict::Keep => {}
            Verdict::Wait => return,
            Verdict::Again => {
                self.counters.redelivered.fetch_add(1, Ordering::Relaxed);
                self.metrics.redelivered.inc();
                return;
            }
            Verdict::Seek(to) => {
                if !seek(&self.consumer, key, to) {
                    partition.seeked = false;
                }
                return;
            }
        }
        if first_read {
            self.read_up_to.insert(key, offset);
            self.counters.events_in.fetch_add(1, Ordering::Relaxed);
            if let Some(counter) = self.events_in.get(&topic) {
                counter.inc();
            }
        } else {
            self.counters.redelivered.fetch_add(1, Ordering::Relaxed);
            self.metrics.redelivered.inc();
        }
        let appended = partition.buffer.append(
            offset,
            message.key(),
            message.payload().unwrap_or_default(),
            message.timestamp().to_millis(),
            now,
        );
        match appended {
            Ok(Appended::Valid) => {}
            Ok(Appended::Dead(reason)) => {
                tracing::debug!(topic = topic.as_str(), partition = key.1, offset, %reason, "dead letter");
            }
            Err(error) => {
                // The lake refused a decoded event (a bug): keep going, loudly.
                tracing::error!(%error, topic = topic.as_str(), partition = key.1, offset, "cannot buffer a decoded event");
            }
        }
        self.maybe_flush(key, false);
    }

    /// Starts the partition's next batch when it is due (full, old with `old`, or a redo
    /// complete) and none is in flight.
    fn maybe_flush(&mut self, key: Key, old: bool) {
        if self.in_flight.contains_key(&key) {
            return;
        }
        let Some(partition) = self.partitions.get_mut(&key) else {
            return;
        };
        if let Some((flush, entry)) = partition.take_redo() {
            let seq = entry.seq;
            self.spawn_batch(key, flush, seq, Some(entry));
            return;
        }
        if partition.phase != Phase::Active || partition.buffer.is_empty() {
            return;
        }
        let due = partition.buffer.len() >= self.config.batch.max_events
            || (old && partition.buffer.age(Instant::now()) >= self.config.batch.max_age);
        if !due {
            return;
        }
        let seq = partition.seq;
        if let Some(flush) = partition.buffer.take() {
            self.spawn_batch(key, flush, seq, None);
        }
    }

    fn spawn_batch(&mut self, key: Key, flush: Flush, seq: u64, redo: Option<CommitEntry>) {
        let epoch = flush.epoch;
        self.in_flight.insert(key, epoch);
        let settings = self.settings.clone();
        self.batches.spawn(async move {
            let result = write(&settings, flush, seq, redo).await;
            WrittenBatch { key, epoch, result }
        });
    }

    fn close_old_batches(&mut self) {
        let keys: Vec<Key> = self.partitions.keys().copied().collect();
        for key in keys {
            self.maybe_flush(key, true);
        }
    }

    /// A batch's task finished: count it, commit its offset to Kafka, go on.
    fn on_written(&mut self, done: WrittenBatch) -> Result<(), StreamError> {
        self.in_flight.remove(&done.key);
        let (flush, written, at) = done.result?;
        let current = self
            .partitions
            .get_mut(&done.key)
            .filter(|p| p.epoch == done.epoch);
        let (entry, files) = match written {
            Written::Committed(entry, files) => {
                if let Some(partition) = current {
                    partition.seq = entry.seq + 1;
                }
                (entry, files)
            }
            Written::Redone(entry, files) => (entry, files),
            Written::Fenced => {
                self.counters.fenced.fetch_add(1, Ordering::Relaxed);
                self.metrics.fenced.inc();
                tracing::info!(
                    topic = done.key.0.as_str(),
                    partition = done.key.1,
                    first = flush.first_offset,
                    last = flush.last_offset,
                    "another writer committed these offsets first: batch dropped, reading the log again"
                );
                if let Some(partition) = current {
                    partition.resync();
                    let epoch = partition.epoch;
                    self.start_sync(done.key, epoch);
                } else {
                    self.sync_if_pending(done.key);
                }
                return Ok(());
            }
        };
        self.account(&flush, &files, at);
        if self
            .partitions
            .get(&done.key)
            .is_some_and(|p| p.epoch == done.epoch)
        {
            let offset = entry.next_offset();
            self.committed.insert(done.key, (done.epoch, offset));
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(done.key.0.as_str(), done.key.1, Offset::Offset(offset))
                .expect("a valid offset");
            if let Err(error) = self.consumer.commit(&list, CommitMode::Async) {
                tracing::debug!(%error, "cannot commit the offset to Kafka (the lake's log is what counts)");
            }
            self.counters.commits.fetch_add(1, Ordering::Relaxed);
            self.metrics.commits.inc();
            self.maybe_flush(done.key, true);
        } else {
            self.sync_if_pending(done.key);
        }
        Ok(())
    }

    fn sync_if_pending(&mut self, key: Key) {
        if let Some(partition) = self.partitions.get_mut(&key)
            && partition.sync_pending
        {
            partition.sync_pending = false;
            let epoch = partition.epoch;
            self.start_sync(key, epoch);
        }
    }

    /// Counts, bytes and latency of a written batch.
    fn account(&mut self, flush: &Flush, files: &[WrittenFile], at: Instant) {
        let topic = TopicLabels {
            topic: flush.topic.as_str().to_owned(),
        };
        let events = files
            .iter()
            .filter(|f| f.path.starts_with("raw/"))
            .map(|f| f.rows as u64)
            .sum::<u64>();
        let dead = files
            .iter()
            .filter(|f| f.path.starts_with("dlq/"))
            .map(|f| f.rows as u64)
            .sum::<u64>();
        self.counters
            .events_written
            .fetch_add(events, Ordering::Relaxed);
        self.counters
            .dead_lettered
            .fetch_add(dead, Ordering::Relaxed);
        self.metrics
            .events_written
            .get_or_create(&topic)
            .inc_by(events);
        self.metrics
            .dead_lettered
            .get_or_create(&topic)
            .inc_by(dead);
        for file in files {
            let area = if file.path.starts_with("dlq/") {
                "dlq"
            } else {
                "raw"
            };
            let labels = AreaLabels {
                area: area.to_owned(),
            };
            self.metrics.files_written.get_or_create(&labels).inc();
            self.metrics
                .bytes_written
                .get_or_create(&labels)
                .inc_by(file.bytes);
            self.counters.files.fetch_add(1, Ordering::Relaxed);
            self.counters.bytes.fetch_add(file.bytes, Ordering::Relaxed);
        }
        if let Some(file) = files.last() {
            self.last_file = Some(file.path.clone());
        }
        // Event-to-lake latency: from the record's Kafka timestamp to when its files were
        // durable (`at`, a moment ago).
        let done_ms = Utc::now().timestamp_millis() - at.elapsed().as_millis() as i64;
        for produced in &flush.produced_ms {
            let ms = (done_ms - produced).max(0) as u64;
            self.latency.saturating_record(ms);
            self.metrics
                .event_to_lake_seconds
                .observe(ms as f64 / 1000.0);
        }
    }

    /// The graceful stop: no more reading; every partition's held records are written in
    /// order, their offsets committed.
    pub async fn drain(&mut self) -> Result<(), StreamError> {
        tracing::info!(
            partitions = self.partitions.len(),
            "stopping: writing what is held"
        );
        self.compactor.stop();
        loop {
            let keys: Vec<Key> = self.partitions.keys().copied().collect();
            for key in keys {
                if self.in_flight.contains_key(&key) {
                    continue;
                }
                let Some(partition) = self.partitions.get_mut(&key) else {
                    continue;
                };
                if partition.phase == Phase::Active
                    && let Some(flush) = partition.buffer.take()
                {
                    let seq = partition.seq;
                    self.spawn_batch(key, flush, seq, None);
                }
            }
            let Some(done) = self.batches.join_next().await else {
                break;
            };
            let done = done.map_err(|e| StreamError::task("writing a batch", e))?;
            self.on_written(done)?;
        }
        Ok(())
    }

    /// Commits the offsets written, leaves the group and writes the last heartbeat.
    async fn stop(
        mut self,
        drained: Result<(), StreamError>,
    ) -> Result<WorkerSummary, StreamError> {
        self.batches.shutdown().await;
        self.syncs.shutdown().await;
        if drained.is_ok() {
            self.commit_offsets(CommitMode::Sync);
        }
        // Leave the group now, so that the partitions move at once.
        self.consumer.unsubscribe();
        self.partitions.clear();
        {
            let mut held = self.held.lock().expect("not poisoned");
            held.partitions.clear();
            held.lag.clear();
        }
        self.metrics.consumer_lag.clear();
        self.metrics.partitions_held.set(0);
        let status = self.status(true);
        if let Err(error) = self.heartbeats.beat(&status).await {
            tracing::warn!(%error, "cannot write the last heartbeat");
        }
        drained?;
        let counters = &self.counters;
        let latency = &self.latency;
        Ok(WorkerSummary {
            events_in: counters.events_in.load(Ordering::Relaxed),
            redelivered: counters.redelivered.load(Ordering::Relaxed),
            events_written: counters.events_written.load(Ordering::Relaxed),
            dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
            files: counters.files.load(Ordering::Relaxed),
            bytes: counters.bytes.load(Ordering::Relaxed),
            commits: counters.commits.load(Ordering::Relaxed),
            fenced: counters.fenced.load(Ordering::Relaxed),
            latency: LatencySummary {
                count: latency.len(),
                p50_ms: latency.value_at_quantile(0.50),
                p99_ms: latency.value_at_quantile(0.99),
                max_ms: latency.max(),
            },
        })
    }

    /// Commits to Kafka, for the partitions held, the offsets where their logs end.
    fn commit_offsets(&self, mode: CommitMode) {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), (epoch, offset)) in &self.committed {
            if self
                .partitions
                .get(&(*topic, *partition))
                .is_some_and(|p| p.epoch == *epoch)
            {
                list.add_partition_offset(topic.as_str(), *partition, Offset::Offset(*offset))
                    .expect("a valid offset");
            }
        }
        if list.count() > 0
            && let Err(error) = self.consumer.commit(&list, mode)
        {
            tracing::debug!(%error, "offset commit failed (the lake's log is what counts)");
        }
    }

    /// The topics whose partition 0 this worker holds: it compacts their hours.
    fn leading_topics(&self) -> Vec<Topic> {
        let mut topics: Vec<Topic> = self
            .partitions
            .keys()
            .filter(|(_, p)| *p == 0)
            .map(|(t, _)| *t)
            .collect();
        topics.sort();
        topics
    }

    fn status(&self, stopped: bool) -> WorkerStatus {
        let partitions: BTreeSet<HeldPartition> = self
            .partitions
            .keys()
            .map(|(topic, partition)| HeldPartition {
                topic: topic.as_str().to_owned(),
                partition: *partition,
            })
            .collect();
        let lag = {
            let held = self.held.lock().expect("not poisoned");
            (!held.lag.is_empty() && !stopped).then(|| held.lag.values().sum())
        };
        WorkerStatus {
            worker_id: self.config.worker_id.clone(),
            group_id: self.config.group_id.clone(),
            topics: self
                .config
                .topics
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            partitions: partitions.into_iter().collect(),
            lag,
            events_in: self.counters.events_in.load(Ordering::Relaxed),
            redelivered: self.counters.redelivered.load(Ordering::Relaxed),
            events_written: self.counters.events_written.load(Ordering::Relaxed),
            dead_lettered: self.counters.dead_lettered.load(Ordering::Relaxed),
            last_file: self.last_file.clone(),
            stopped,
            updated_at: Utc::now(),
        }
    }
}

/// Moves the consumer of `key` to `offset` (what comes after is read from there); `false` when
/// it could not (asked again at the next record).
fn seek(consumer: &StreamConsumer<WorkerContext>, key: Key, offset: i64) -> bool {
    match consumer.seek(
        key.0.as_str(),
        key.1,
        Offset::Offset(offset),
        Duration::from_secs(5),
    ) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, topic = key.0.as_str(), partition = key.1, offset, "cannot seek (tried again at the next record)");
            false
        }
    }
}

/// Runs one worker until `shutdown` fires (see [`Worker`]).
pub async fn run_worker(
    config: WorkerConfig,
    lake: Lake,
    metrics: Metrics,
    heartbeats: Arc<dyn HeartbeatSink>,
    shutdown: CancellationToken,
) -> Result<WorkerSummary, StreamError> {
    Worker::new(config, lake, metrics, heartbeats)?
        .run(shutdown)
        .await
}
