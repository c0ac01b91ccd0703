//! One partition's records between two commits: decoded and validated as they come, valid
//! events grouped by their hour, invalid ones kept as dead letters. No IO.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orch_lake::{DeadLetter, HourBatch, HourlyBatches, LakeError, Lineage, Topic, decode};

/// The records of one partition read since its last flush.
#[derive(Debug)]
pub struct PartitionBuffer {
    topic: Topic,
    partition: i32,
    epoch: u64,
    batches: HourlyBatches,
    dead_letters: Vec<DeadLetter>,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    opened_at: Option<Instant>,
    produced_ms: Vec<i64>,
    records: usize,
    /// The lineage of the record being appended (kept, not rebuilt per record).
    lineage: Lineage,
}

/// A closed batch, ready for the lake: the next commit of its partition is `last_offset + 1`.
#[derive(Debug)]
pub struct Flush {
    pub topic: Topic,
    pub partition: i32,
    /// The partition's assignment epoch the records were read in (see the worker).
    pub epoch: u64,
    pub first_offset: i64,
    pub last_offset: i64,
    /// Valid events, one batch per event hour.
    pub hours: Vec<HourBatch>,
    pub dead_letters: Vec<DeadLetter>,
    /// The Kafka timestamps (ms) of the records, for the event-to-lake latency.
    pub produced_ms: Vec<i64>,
    /// Records in the batch (valid and dead).
    pub records: usize,
}

impl Flush {
    /// Valid events in the batch.
    pub fn events(&self) -> usize {
        self.hours.iter().map(|h| h.batch.num_rows()).sum()
    }
}

/// What became of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    Valid,
    /// Refused, with the reason.
    Dead(String),
}

impl PartitionBuffer {
    pub fn new(topic: Topic, partition: i32, epoch: u64) -> PartitionBuffer {
        PartitionBuffer {
            topic,
            partition,
            epoch,
            batches: HourlyBatches::new(topic),
            dead_letters: Vec::new(),
            first_offset: None,
            last_offset: None,
            opened_at: None,
            produced_ms: Vec::new(),
            records: 0,
            lineage: Lineage::kafka(partition, 0, DateTime::<Utc>::UNIX_EPOCH),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records held (valid and dead).
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The offset of the last record held.
    pub fn last_offset(&self) -> Option<i64> {
        self.last_offset
    }

    /// How long ago the first record held was read.
    pub fn age(&self, now: Instant) -> Duration {
        self.opened_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Decodes and keeps the record at `offset`. `key` is the producer's event id (eventsim's
    /// Kafka sink keys each record by it), `timestamp_ms` the record's Kafka timestamp. An
    /// offset must come after those held (the worker starts a new buffer when it does not).
    pub fn append(
        &mut self,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        timestamp_ms: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Appended, LakeError> {
        debug_assert!(self.last_offset.is_none_or(|last| offset > last));
        self.lineage.offset = Some(offset);
        self.lineage.ingested_at = now;
        let lineage = &self.lineage;
        let appended = match decode(self.topic, payload) {
            Ok(mut event) => {
                if event.event_id.is_none() {
                    event.event_id = key
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned);
                }
                self.batches.append(&event, lineage)?;
                Appended::Valid
            }
            Err(invalid) => {
                let reason = invalid.reason.clone();
                let mut letter = DeadLetter::new(self.topic, payload, &invalid, lineage);
                // Filed by the record's own time when it has no readable `ts`: reading it again
                // files it in the same hour.
                letter.source_ts = timestamp_ms;
                self.dead_letters.push(letter);
                Appended::Dead(reason)
            }
        };
        if self.records == 0 {
            self.opened_at = Some(Instant::now());
            self.first_offset = Some(offset);
        }
        self.last_offset = Some(offset);
        self.records += 1;
        if let Some(ts) = timestamp_ms {
            self.produced_ms.push(ts);
        }
        Ok(appended)
    }

    /// The records held as a [`Flush`], leaving the buffer empty; `None` when it is empty.
    pub fn take(&mut self) -> Option<Flush> {
        let (first_offset, last_offset) = (self.first_offset?, self.last_offset?);
        let flush = Flush {
            topic: self.topic,
            partition: self.partition,
            epoch: self.epoch,
            first_offset,
            last_offset,
            hours: self.batches.drain(),
            dead_letters: std::mem::take(&mut self.dead_letters),
            produced_ms: std::mem::take(&mut self.produced_ms),
            records: self.records,
        };
        self.first_offset = None;
        self.last_offset = None;
        self.opened_at = None;
        self.records = 0;
        Some(flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTEN: &str = r#"{"ts":1795342500000,"sessionId":7,"level":"paid","itemInSession":3,"city":"Boston","zip":"02134","state":"MA","lat":42.35,"lon":-71.06,"userAgent":"Mozilla/5.0","userId":12,"firstName":"Ada","lastName":"L","gender":"F","registration":1790000000000,"auth":"Logged In","artist":"A","song":"S","duration":201.5}"#;

    fn now() -> DateTime<Utc> {
        "2026-11-22T12:00:05Z".parse().unwrap()
    }

    #[test]
    fn valid_and_invalid_records_flush_with_their_offsets() {
        let mut buffer = PartitionBuffer::new(Topic::ListenEvents, 3, 1);
        let a = buffer
            .append(100, Some(b"id-1"), LISTEN.as_bytes(), Some(5), now())
            .unwrap();
        assert_eq!(a, Appended::Valid);
        let b = buffer
            .append(101, None, b"{not json", Some(6), now())
            .unwrap();
        assert!(
            matches!(b, Appended::Dead(ref reason) if reason.contains("JSON")),
            "{b:?}"
        );
        let later = LISTEN.replace("1795342500000", "1795346100000");
        buffer
            .append(105, Some(b"id-3"), later.as_bytes(), Some(7), now())
            .unwrap();
        assert_eq!(buffer.len(), 3);

        let flush = buffer.take().unwrap();
        assert!(buffer.is_empty());
        assert!(buffer.take().is_none());
        assert_eq!((flush.first_offset, flush.last_offset), (100, 105));
        assert_eq!(flush.records, 3);
        assert_eq!(flush.events(), 2);
        // Two event hours, each with its own offsets.
        let hours: Vec<_> = flush
            .hours
            .iter()
            .map(|h| {
                (
                    h.hour.to_string(),
                    h.min_offset,
                    h.max_offset,
                    h.first_event_id.clone(),
                )
            })
            .collect();
        assert_eq!(
            hours,
            [
                (
                    "2026-11-22-10:00".to_owned(),
                    Some(100),
                    Some(100),
                    Some("id-1".to_owned())
                ),
                (
                    "2026-11-22-11:00".to_owned(),
                    Some(105),
                    Some(105),
                    Some("id-3".to_owned())
                ),
            ]
        );
        assert_eq!(flush.dead_letters.len(), 1);
        assert_eq!(flush.dead_letters[0].offset, Some(101));
        assert_eq!(flush.dead_letters[0].partition, Some(3));
        assert_eq!(flush.produced_ms, [5, 6, 7]);
    }

    #[test]
    fn age_counts_from_the_first_record() {
        let mut buffer = PartitionBuffer::new(Topic::ListenEvents, 0, 1);
        assert_eq!(buffer.age(Instant::now()), Duration::ZERO);
        buffer
            .append(0, None, LISTEN.as_bytes(), None, now())
            .unwrap();
        let later = Instant::now() + Duration::from_secs(3);
        assert!(buffer.age(later) >= Duration::from_secs(3));
    }
}
