//! The worker's Kafka consumer: its settings, and the callbacks librdkafka calls while the
//! worker polls it. Rebalances are sent to the worker as [`Rebalanced`] events over a channel (as
//! vector's Kafka source does) rather than handled in the callback; lag from librdkafka's
//! statistics is kept only for the partitions the worker holds.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use orch_lake::Topic;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::WorkerConfig;
use crate::metrics::{Metrics, PartitionLabels};

/// A partition of one of the worker's topics.
pub(crate) type Key = (Topic, i32);

/// A change of the partitions the worker holds, from librdkafka's rebalance callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rebalanced {
    /// Newly assigned (paused until the worker has read their commit logs).
    Assigned(Vec<Key>),
    /// Taken away: whatever the worker holds of them is dropped.
    Revoked(Vec<Key>),
}

/// The partitions held and their lag, shared by the worker and the statistics callback under
/// one lock, so that a revoked partition's lag gauge is removed once and never comes back.
#[derive(Default)]
pub(crate) struct Held {
    pub partitions: HashSet<(String, i32)>,
    pub lag: HashMap<(String, i32), i64>,
}

pub(crate) struct WorkerContext {
    pub held: Arc<Mutex<Held>>,
    pub metrics: Metrics,
    pub events: UnboundedSender<Rebalanced>,
}

fn keys(list: &TopicPartitionList) -> Vec<Key> {
    list.elements()
        .iter()
        .filter_map(|e| Some((e.topic().parse::<Topic>().ok()?, e.partition())))
        .collect()
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        let mut held = self.held.lock().expect("not poisoned");
        let held = &mut *held;
        held.lag.clear();
        for (topic, stats) in &statistics.topics {
            for (id, partition) in &stats.partitions {
                let key = (topic.clone(), *id);
                if *id < 0 || !held.partitions.contains(&key) || partition.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .consumer_lag
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition: id.to_string(),
                    })
                    .set(partition.consumer_lag);
                held.lag.insert(key, partition.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            tracing::info!(partitions = list.count(), "partitions revoked");
            let _ = self.events.send(Rebalanced::Revoked(keys(list)));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                // Nothing is fetched for a new partition until the worker has read where its
                // commit log ends.
                if let Err(error) = consumer.pause(list) {
                    tracing::warn!(%error, "cannot pause newly assigned partitions");
                }
                tracing::info!(partitions = list.count(), "partitions assigned");
                let _ = self.events.send(Rebalanced::Assigned(keys(list)));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::debug!(%error, partitions = offsets.count(), "offset commit refused (the lake's commit log is what counts)");
        }
    }
}

/// The consumer's librdkafka settings: the worker's own, then `config.kafka` over them.
///
/// Takeover is fast by default: the cooperative-sticky assignor (a rebalance moves only the
/// partitions that change owner, the others keep being read), a 6-second session timeout with
/// a heartbeat every second (a dead worker's partitions move after about 6 s instead of 45 s),
/// and a clean leave of the group when a worker stops (its partitions move at once).
pub(crate) fn client_config(config: &WorkerConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("client.id", &config.worker_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("statistics.interval.ms", "1000");
    for (key, value) in &config.kafka {
        client.set(key, value);
    }
    client
}

/// Resumes fetching `keys` (paused when they were assigned).
pub(crate) fn resume<C: Consumer<WorkerContext>>(consumer: &C, keys: &[Key]) {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in keys {
        list.add_partition(topic.as_str(), *partition);
    }
    if let Err(error) = consumer.resume(&list) {
        tracing::warn!(%error, "cannot resume partitions");
    }
}
