//! eventsim's sink into the lake: generated events become Parquet files in the layout the
//! streaming workers write (`raw/{topic}/date=YYYY-MM-DD/hour=HH/`), the embedded default of
//! the platform.
//!
//! Every event goes through the lake's own decoder and validation, so what eventsim writes is
//! held to the same rules as what the streaming workers read from Kafka. Rows carry the
//! generator's lineage (`_source` `eventsim`, a per-topic sequence number as `_source_offset`,
//! the event id), and files are named from the seed and their first sequence number, so that
//! generating the same events again replaces the same files.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use orch_eventsim::{Event, Sink, SinkError};
use orch_lake::{FileName, Hour, HourlyBatches, Lake, Lineage};

/// The `_source` of generated rows.
const SOURCE: &str = "eventsim";
/// Rows held before they are written, over all topics and hours.
const MAX_BUFFERED: usize = 200_000;
/// How often a paced run writes its open hours anyway.
const WRITE_EVERY: Duration = Duration::from_secs(60);

/// eventsim's sink into the lake (see the module documentation).
pub struct LakeSink {
    lake: Lake,
    seed: u64,
    /// Rows waiting, per topic and hour.
    pending: BTreeMap<(orch_lake::Topic, Hour), HourlyBatches>,
    /// The next sequence number of each topic.
    next_seq: BTreeMap<orch_lake::Topic, i64>,
    buffered: usize,
    last_write: Instant,
    /// The newest event time seen: the hours before its hour are complete.
    newest_ms: i64,
    pub files: usize,
    pub rows: usize,
    pub bytes: u64,
}

impl LakeSink {
    pub fn new(lake: Lake, seed: u64) -> LakeSink {
        LakeSink {
            lake,
            seed,
            pending: BTreeMap::new(),
            next_seq: BTreeMap::new(),
            buffered: 0,
            last_write: Instant::now(),
            newest_ms: i64::MIN,
            files: 0,
            rows: 0,
            bytes: 0,
        }
    }

    /// Writes every buffered row. Call once the run is over.
    pub async fn finish(&mut self) -> Result<(), SinkError> {
        self.write(None).await
    }

    /// Writes the hours before `before`'s hour (every hour if `None`).
    async fn write(&mut self, before: Option<Hour>) -> Result<(), SinkError> {
        let ready: Vec<(orch_lake::Topic, Hour)> = self
            .pending
            .keys()
            .filter(|(_, hour)| before.is_none_or(|b| *hour < b))
            .copied()
            .collect();
        for key in ready {
            let Some(mut batches) = self.pending.remove(&key) else {
                continue;
            };
            for hour_batch in batches.drain() {
                let written = self
                    .lake
                    .write_parquet(
                        key.0,
                        hour_batch.hour,
                        &name(self.seed, &hour_batch)?,
                        &[hour_batch.batch],
                    )
                    .await
                    .map_err(|e| SinkError::Other(Box::new(e)))?;
                self.files += 1;
                self.rows += written.rows;
                self.bytes += written.bytes;
            }
        }
        self.buffered = self.pending.values().map(HourlyBatches::len).sum();
        self.last_write = Instant::now();
        Ok(())
    }
}

/// `eventsim-{seed}-{first sequence number}`.
fn name(seed: u64, batch: &orch_lake::HourBatch) -> Result<FileName, SinkError> {
    let first = u64::try_from(batch.min_offset.unwrap_or(0)).unwrap_or(0);
    FileName::generator(SOURCE, seed, first).map_err(|e| SinkError::Other(Box::new(e)))
}

#[async_trait::async_trait]
impl Sink for LakeSink {
    async fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        let topic: orch_lake::Topic = event
            .topic()
            .name()
            .parse()
            .map_err(|e: orch_lake::LakeError| SinkError::Other(Box::new(e)))?;
        let mut row = orch_lake::decode(topic, event.to_json().as_bytes()).map_err(|e| {
            SinkError::Other(
                format!(
                    "eventsim made an event the lake refuses ({topic}): {}",
                    e.reason
                )
                .into(),
            )
        })?;
        row.event_id = Some(event.event_id().to_string());
        let hour = Hour::from_ts_ms(event.ts()).ok_or_else(|| {
            SinkError::Other(format!("event time {} is out of range", event.ts()).into())
        })?;
        let seq = self.next_seq.entry(topic).or_insert(0);
        let lineage = Lineage::generator(SOURCE, *seq, Utc::now());
        *seq += 1;
        self.pending
            .entry((topic, hour))
            .or_insert_with(|| HourlyBatches::new(topic))
            .append(&row, &lineage)
            .map_err(|e| SinkError::Other(Box::new(e)))?;
        self.buffered += 1;
        self.newest_ms = self.newest_ms.max(event.ts());
        if self.buffered >= MAX_BUFFERED {
            self.write(None).await?;
        }
        Ok(())
    }

    /// Writes the hours that are complete, and every open hour at most once a minute, so that a
    /// paced run does not leave a file per flush.
    async fn flush(&mut self) -> Result<(), SinkError> {
        if self.last_write.elapsed() >= WRITE_EVERY {
            self.write(None).await
        } else {
            self.write(Hour::from_ts_ms(self.newest_ms)).await
        }
    }
}
