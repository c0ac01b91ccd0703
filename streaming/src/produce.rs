//! Sending records to the topics: [`Producer`] (any bytes, for tests and tools) and
//! [`KafkaSink`], eventsim's Kafka sink (each event as its JSON, keyed by its id, at a target
//! rate).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orch_eventsim::{Event, Sink, SinkError};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};

use crate::error::StreamError;

/// Counts deliveries as the broker acknowledges them.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Per topic and partition: one past the highest offset the broker acknowledged.
    ends: Mutex<HashMap<String, HashMap<i32, i64>>>,
}

struct DeliveryContext(Arc<Deliveries>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
                let mut ends = self.0.ends.lock().expect("not poisoned");
                let partitions = match ends.get_mut(message.topic()) {
                    Some(partitions) => partitions,
                    None => ends.entry(message.topic().to_owned()).or_default(),
                };
                let end = partitions.entry(message.partition()).or_default();
                *end = (*end).max(message.offset() + 1);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.0.first_error.lock().expect("not poisoned");
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A Kafka producer that counts acknowledged and failed deliveries.
#[derive(Clone)]
pub struct Producer {
    brokers: String,
    inner: Arc<ThreadedProducer<DeliveryContext>>,
    deliveries: Arc<Deliveries>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("brokers", &self.brokers)
            .finish()
    }
}

impl Producer {
    /// A producer to `brokers` with librdkafka's defaults, then `settings` (e.g.
    /// `batch.num.messages=1`).
    pub fn new(brokers: &str, settings: &[(String, String)]) -> Result<Producer, StreamError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000");
        for (key, value) in settings {
            config.set(key, value);
        }
        let deliveries = Arc::new(Deliveries::default());
        let inner = config
            .create_with_context(DeliveryContext(deliveries.clone()))
            .map_err(|source| StreamError::Kafka {
                brokers: brokers.to_owned(),
                source,
            })?;
        Ok(Producer {
            brokers: brokers.to_owned(),
            inner: Arc::new(inner),
            deliveries,
        })
    }

    /// Queues one record (to `partition`, or the partitioner's choice by key), waiting while
    /// the client's queue is full.
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), StreamError> {
        loop {
            let mut record = BaseRecord::to(topic).payload(payload);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((source, _)) => {
                    return Err(StreamError::Kafka {
                        brokers: self.brokers.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Waits until every queued record is acknowledged or failed; an error if any failed.
    pub async fn flush(&self) -> Result<(), StreamError> {
        // Waits on the delivery count rather than rdkafka 0.37's `flush`, which counts its
        // timeout down per poll and gives up early while the producer's thread serves events.
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.inner.in_flight_count() > 0 {
            if Instant::now() > deadline {
                return Err(StreamError::Delivery {
                    delivered: self.delivered(),
                    failed: self.failed(),
                    first_error: format!(
                        "{} record(s) still unacknowledged after 120 s",
                        self.inner.in_flight_count()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let failed = self.failed();
        if failed > 0 {
            let first_error = self
                .deliveries
                .first_error
                .lock()
                .expect("not poisoned")
                .clone()
                .unwrap_or_default();
            return Err(StreamError::Delivery {
                delivered: self.delivered(),
                failed,
                first_error,
            });
        }
        Ok(())
    }

    /// Records the broker acknowledged.
    pub fn delivered(&self) -> u64 {
        self.deliveries.delivered.load(Ordering::Relaxed)
    }

    /// Per (topic, partition) written to: one past the highest offset the broker acknowledged,
    /// the partition's end as far as this producer knows (a broker's high watermark may lag or,
    /// on tansu, be wrong).
    pub fn acknowledged_ends(&self) -> BTreeMap<(String, i32), i64> {
        let ends = self.deliveries.ends.lock().expect("not poisoned");
        ends.iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .map(|(partition, end)| ((topic.clone(), *partition), *end))
            })
            .collect()
    }

    /// Records that could not be delivered.
    pub fn failed(&self) -> u64 {
        self.deliveries.failed.load(Ordering::Relaxed)
    }
}

/// eventsim's Kafka sink: each event's JSON to its topic, keyed by its event id, at most
/// `rate` events per second when a rate is set (whatever eventsim's own speed).
#[derive(Debug)]
pub struct KafkaSink {
    producer: Producer,
    rate: Option<f64>,
    started: Option<Instant>,
    sent: u64,
    line: Vec<u8>,
}

impl KafkaSink {
    pub fn new(producer: Producer, rate: Option<f64>) -> KafkaSink {
        KafkaSink {
            producer,
            rate: rate.filter(|r| *r > 0.0),
            started: None,
            sent: 0,
            line: Vec::with_capacity(1024),
        }
    }

    /// Events sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn producer(&self) -> &Producer {
        &self.producer
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        let started = *self.started.get_or_insert_with(Instant::now);
        if let Some(rate) = self.rate {
            let due = started + Duration::from_secs_f64(self.sent as f64 / rate);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        self.line.clear();
        event.write_json(&mut self.line)?;
        let key = event.event_id().to_string();
        self.producer
            .send(event.topic().name(), None, Some(key.as_bytes()), &self.line)
            .await
            .map_err(SinkError::other)?;
        self.sent += 1;
        if self.sent.is_multiple_of(1024) {
            // Queuing does not wait while the producer has room: let the caller's other
            // futures (a signal, a shutdown) run now and then.
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.producer.flush().await.map_err(SinkError::other)
    }
}
