//! orch's streaming workers: Kafka (Redpanda) topics into the data lake.
//!
//! A worker ([`run_worker`]) joins a consumer group over eventsim's four topics, decodes and
//! validates each record with the lake's rules, buffers each partition's records
//! ([`PartitionBuffer`]) until a batch closes on size or age, writes it as Parquet files by event
//! hour (and the invalid records as dead letters) through [`orch_lake::Lake`], and only then
//! commits the partition's offset. File names come from topic, partition and offsets, and every
//! row carries its partition and offset: at least once into the lake, de-duplicable by the
//! staging loads.
//!
//! Around it: [`Metrics`] (Prometheus text on `/metrics`, [`serve_metrics`]), heartbeats through
//! a [`HeartbeatSink`], and a [`Producer`] / [`KafkaSink`] that sends eventsim's events (or any
//! bytes) to the topics at a target rate.

mod buffer;
mod config;
mod error;
mod heartbeat;
mod metrics;
mod produce;
pub mod tansu;
mod worker;
mod writer;

pub use buffer::{Flush, PartitionBuffer};
pub use config::{BatchLimits, WorkerConfig};
pub use error::StreamError;
pub use heartbeat::{HeartbeatSink, HeldPartition, WorkerStatus};
pub use metrics::{Metrics, serve_metrics};
pub use produce::{KafkaSink, Producer};
pub use worker::{LatencySummary, WorkerSummary, run_worker};
pub use writer::write_flush;
