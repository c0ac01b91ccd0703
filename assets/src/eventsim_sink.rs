//! eventsim's sink into the lake: generated events become Parquet files in the layout the
//! streaming workers write (`raw/{topic}/date=YYYY-MM-DD/hour=HH/`), the embedded default of
//! the platform.
//!
//! Typed events go straight into the lake's typed rows and from there into Arrow ([`lake_event`]:
//! no JSON in between); a test holds the conversion to what the lake's own decoder makes of the
//! same event's JSON, so what eventsim writes is held to the rules the streaming workers apply
//! to Kafka. Rows carry the generator's lineage (`_source` `eventsim`, a per-topic sequence
//! number as `_source_offset`, the event id), and files are named from the seed and their
//! first sequence number, so that generating the same events again replaces the same files.

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
    /// How often a paced run writes its open hours (a minute).
    write_every: Duration,
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
            write_every: WRITE_EVERY,
            newest_ms: i64::MIN,
            files: 0,
            rows: 0,
            bytes: 0,
        }
    }

    /// Writes the open hours this often in a paced run (instead of once a minute).
    pub fn write_every(mut self, every: Duration) -> LakeSink {
        self.write_every = every;
        self
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
        // Only a write of every hour restarts the minute: writing the complete hours, as every
        // flush does, must not keep the open hour from being written once a minute.
        if before.is_none() {
            self.last_write = Instant::now();
        }
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
        let row = lake_event(event);
        let topic = row.topic;
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
        if self.last_write.elapsed() >= self.write_every {
            self.write(None).await
        } else {
            self.write(Hour::from_ts_ms(self.newest_ms)).await
        }
    }
}

/// The lake's typed row of an eventsim event, field for field, with its event id.
pub fn lake_event(event: &Event) -> orch_lake::Event {
    use orch_eventsim::Event as E;
    use orch_lake::{Payload, Song, Topic};

    let text = |s: &std::sync::Arc<str>| s.to_string();
    // The fields every topic has, and the user's when the visitor is known.
    macro_rules! row {
        ($e:expr, $topic:expr, $payload:expr) => {{
            let e = $e;
            let user = match (
                e.user_id,
                &e.first_name,
                &e.last_name,
                e.gender,
                e.registration,
            ) {
                (Some(user_id), Some(first), Some(last), Some(gender), Some(registration)) => {
                    Some(orch_lake::User {
                        user_id: i64::try_from(user_id).unwrap_or(i64::MAX),
                        first_name: first.to_string(),
                        last_name: last.to_string(),
                        gender: gender.name().to_owned(),
                        registration,
                    })
                }
                _ => None,
            };
            orch_lake::Event {
                topic: $topic,
                ts: e.ts,
                session_id: i64::try_from(e.session_id).unwrap_or(i64::MAX),
                level: e.level.name().to_owned(),
                item_in_session: i32::try_from(e.item_in_session).unwrap_or(i32::MAX),
                city: text(&e.city),
                zip: text(&e.zip),
                state: text(&e.state),
                lat: e.lat,
                lon: e.lon,
                user_agent: text(&e.user_agent),
                user,
                event_id: Some(e.event_id.to_string()),
                payload: $payload,
            }
        }};
    }
    match event {
        E::Listen(e) => row!(
            e,
            Topic::ListenEvents,
            Payload::Listen {
                auth: e.auth.name().to_owned(),
                song: Song {
                    artist: text(&e.artist),
                    song: text(&e.song),
                    duration: e.duration,
                },
            }
        ),
        E::PageView(e) => row!(
            e,
            Topic::PageViewEvents,
            Payload::PageView {
                page: e.page.name().to_owned(),
                auth: e.auth.name().to_owned(),
                method: e.method.name().to_owned(),
                status: i32::from(e.status),
                song: match (&e.artist, &e.song, e.duration) {
                    (Some(artist), Some(song), Some(duration)) => Some(Song {
                        artist: text(artist),
                        song: text(song),
                        duration,
                    }),
                    _ => None,
                },
            }
        ),
        E::Auth(e) => row!(e, Topic::AuthEvents, Payload::Auth { success: e.success }),
        E::StatusChange(e) => row!(
            e,
            Topic::StatusChangeEvents,
            Payload::StatusChange {
                auth: e.auth.name().to_owned(),
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    /// A paced run writes its open hour every `write_every` though it flushes every second
    /// (each flush writes the complete hours; that must not restart the wait).
    #[tokio::test]
    async fn a_paced_run_writes_its_open_hour_as_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let lake = orch_lake::Lake::open(&dir.path().display().to_string()).unwrap();
        let mut sink = LakeSink::new(lake, 7).write_every(Duration::from_millis(300));
        let start = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let config = orch_eventsim::Config::new(7, 5000, start, start + chrono::Duration::hours(1));
        let events: Vec<_> = orch_eventsim::Simulation::new(&config)
            .unwrap()
            .take(40)
            .collect();
        assert!(events.len() >= 20, "{} events", events.len());
        for event in &events {
            sink.send(event).await.unwrap();
            sink.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            sink.files > 0 && sink.rows > 0,
            "nothing written in {} ms of flushes: {} files",
            events.len() * 25,
            sink.files
        );
    }

    /// The typed conversion makes exactly what the lake's decoder makes of the event's JSON,
    /// for every event of a busy generated day (every page, guests, level changes).
    #[test]
    fn typed_events_become_the_rows_their_json_decodes_to() {
        let start = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap();
        let config = orch_eventsim::Config::new(3, 2000, start, start + chrono::Duration::days(1));
        let mut topics = std::collections::BTreeSet::new();
        let mut n = 0;
        for event in orch_eventsim::Simulation::new(&config).unwrap() {
            let topic: orch_lake::Topic = event.topic().name().parse().unwrap();
            let mut decoded = orch_lake::decode(topic, event.to_json().as_bytes())
                .unwrap_or_else(|e| panic!("{e}: {}", event.to_json()));
            decoded.event_id = Some(event.event_id().to_string());
            assert_eq!(lake_event(&event), decoded, "{}", event.to_json());
            topics.insert(topic);
            n += 1;
        }
        assert_eq!(topics.len(), 4, "every topic is covered");
        assert!(n > 1000, "{n} events");
    }
}
