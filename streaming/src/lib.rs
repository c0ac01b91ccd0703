//! orch's streaming workers: Kafka (Redpanda) topics into the data lake.
//!
//! A [`Worker`] ([`run_worker`]) joins a consumer group over eventsim's four topics, decodes and
//! validates each record with the lake's rules, buffers each partition's records
//! ([`PartitionBuffer`]) until a batch closes on size or age, commits the batch's files in the
//! partition's commit log in the lake ([`orch_lake::commit`]) and then writes them: Parquet files
//! by event hour, the invalid records as dead letters. Each record is in the lake exactly once,
//! whatever happens to the workers: a zombie's commit is fenced, a crash's missing files are
//! written again by the partition's next owner. In the background it compacts closed hours
//! ([`orch_lake::compact`]).
//!
//! Around it: [`Metrics`] (Prometheus text on `/metrics`, [`serve_metrics`]), heartbeats through
//! a [`HeartbeatSink`], and a [`Producer`] / [`KafkaSink`] that sends eventsim's events (or any
//! bytes) to the topics at a target rate.

mod buffer;
mod compactor;
mod config;
mod consumer;
mod error;
mod faults;
mod heartbeat;
mod metrics;
mod partition;
mod produce;
pub mod tansu;
mod worker;
mod writer;

pub use buffer::{Flush, PartitionBuffer};
pub use config::{BatchLimits, CompactionConfig, WorkerConfig};
pub use error::StreamError;
pub use heartbeat::{HeartbeatSink, HeldPartition, WorkerStatus};
pub use metrics::{Metrics, serve_metrics};
pub use produce::{KafkaSink, Producer};
pub use worker::{LatencySummary, Worker, WorkerSummary, run_worker};
pub use writer::{SOURCE, encode_flush};
