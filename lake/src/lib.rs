//! The data lake of orch's music-streaming platform, shared by eventsim (writing straight to
//! the lake), the streaming workers (Kafka to the lake) and the staging loads (the lake to the
//! warehouse).
//!
//! - [`Topic`]: eventsim's four topics and their Arrow schemas (eventsim's field names, typed,
//!   plus the lineage columns `_event_id`, `_source`, `_source_partition`, `_source_offset`,
//!   `_ingested_at`).
//! - [`decode`]: one JSON event to a typed [`Event`], or an [`InvalidEvent`] with a precise
//!   reason for the dead-letter area.
//! - [`BatchBuilder`], [`HourlyBatches`]: valid events into Arrow record batches.
//! - [`layout`]: `raw/{topic}/date=YYYY-MM-DD/hour=HH/{name}.parquet` and
//!   `dlq/{topic}/date=.../hour=.../{name}.jsonl`, with deterministic [`FileName`]s.
//! - [`Lake`]: Parquet and dead letters in a local folder, on GCS or on S3 (object_store).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use orch_lake::{FileName, HourlyBatches, Lake, Lineage, Topic, decode};
//!
//! let lake = Lake::open(".orch/lake")?;
//! let mut batches = HourlyBatches::new(Topic::ListenEvents);
//! let now = chrono::Utc::now();
//! for (offset, message) in [br#"{"ts": 1795342500000, "...": "..."}"#].iter().enumerate() {
//!     match decode(Topic::ListenEvents, *message) {
//!         Ok(event) => batches.append(&event, &Lineage::kafka(0, offset as i64, now))?,
//!         Err(invalid) => eprintln!("dead letter: {invalid}"),
//!     }
//! }
//! for hour in batches.drain() {
//!     let (first, last) = (hour.min_offset.unwrap(), hour.max_offset.unwrap());
//!     let name = FileName::kafka("kafka", 0, first, last)?;
//!     lake.write_parquet(Topic::ListenEvents, hour.hour, &name, &[hour.batch]).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod batch;
pub mod commit;
pub mod compact;
mod dlq;
mod emulator;
mod error;
mod event;
pub mod layout;
mod store;
mod topic;

pub use batch::{BatchBuilder, HourBatch, HourlyBatches, Lineage};
pub use commit::{CommitEntry, CommitOutcome, LoggedFile};
pub use compact::{Compacted, CompactionOptions, Manifest};
pub use dlq::{DeadLetter, parse_dead_letters};
pub use error::LakeError;
pub use event::{Event, InvalidEvent, Payload, Song, User, Validation, decode, decode_with};
pub use layout::{FileName, Hour};
pub use store::{
    EncodedFile, FileMeta, Lake, LakeOptions, ROW_GROUP_ROWS, STREAMING_ZSTD_LEVEL, WrittenFile,
    ZSTD_LEVEL, redact_url,
};
pub use topic::{Topic, col, timestamp_type};

/// The Arrow crates the lake's batches are made of, for callers that build or read them.
pub use arrow_array;
pub use arrow_schema;
