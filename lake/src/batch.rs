//! Valid events into Arrow record batches, one topic at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use chrono::{DateTime, Utc};

use crate::error::LakeError;
use crate::event::{Event, Payload};
use crate::layout::Hour;
use crate::topic::{Topic, col};

/// Where an event came from: the lineage columns of its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// `kafka`, `eventsim`, ...: `_source`.
    pub source: String,
    /// The Kafka partition: `_source_partition`.
    pub partition: Option<i32>,
    /// The Kafka offset, or a generator's sequence number: `_source_offset`.
    pub offset: Option<i64>,
    /// When the event was decoded: `_ingested_at`.
    pub ingested_at: DateTime<Utc>,
}

impl Lineage {
    /// A record at `offset` of Kafka partition `partition`.
    pub fn kafka(partition: i32, offset: i64, ingested_at: DateTime<Utc>) -> Lineage {
        Lineage {
            source: "kafka".to_owned(),
            partition: Some(partition),
            offset: Some(offset),
            ingested_at,
        }
    }

    /// The `seq`-th event of a generator (eventsim writing straight to the lake).
    pub fn generator(source: &str, seq: i64, ingested_at: DateTime<Utc>) -> Lineage {
        Lineage {
            source: source.to_owned(),
            partition: None,
            offset: Some(seq),
            ingested_at,
        }
    }
}

/// Appends valid events of one topic into a [`RecordBatch`] of the topic's schema.
#[derive(Debug)]
pub struct BatchBuilder {
    topic: Topic,
    len: usize,
    ts: TimestampMillisecondBuilder,
    session_id: Int64Builder,
    level: StringBuilder,
    item_in_session: Int32Builder,
    city: StringBuilder,
    zip: StringBuilder,
    state: StringBuilder,
    lat: Float64Builder,
    lon: Float64Builder,
    user_agent: StringBuilder,
    user_id: Int64Builder,
    first_name: StringBuilder,
    last_name: StringBuilder,
    gender: StringBuilder,
    registration: TimestampMillisecondBuilder,
    auth: StringBuilder,
    artist: StringBuilder,
    song: StringBuilder,
    duration: Float64Builder,
    page: StringBuilder,
    method: StringBuilder,
    status: Int32Builder,
    success: BooleanBuilder,
    event_id: StringBuilder,
    source: StringBuilder,
    source_partition: Int32Builder,
    source_offset: Int64Builder,
    ingested_at: TimestampMillisecondBuilder,
}

impl BatchBuilder {
    /// An empty builder for `topic`.
    pub fn new(topic: Topic) -> BatchBuilder {
        let ts = || TimestampMillisecondBuilder::new().with_timezone("UTC");
        BatchBuilder {
            topic,
            len: 0,
            ts: ts(),
            session_id: Int64Builder::new(),
            level: StringBuilder::new(),
            item_in_session: Int32Builder::new(),
            city: StringBuilder::new(),
            zip: StringBuilder::new(),
            state: StringBuilder::new(),
            lat: Float64Builder::new(),
            lon: Float64Builder::new(),
            user_agent: StringBuilder::new(),
            user_id: Int64Builder::new(),
            first_name: StringBuilder::new(),
            last_name: StringBuilder::new(),
            gender: StringBuilder::new(),
            registration: ts(),
            auth: StringBuilder::new(),
            artist: StringBuilder::new(),
            song: StringBuilder::new(),
            duration: Float64Builder::new(),
            page: StringBuilder::new(),
            method: StringBuilder::new(),
            status: Int32Builder::new(),
            success: BooleanBuilder::new(),
            event_id: StringBuilder::new(),
            source: StringBuilder::new(),
            source_partition: Int32Builder::new(),
            source_offset: Int64Builder::new(),
            ingested_at: ts(),
        }
    }

    pub fn topic(&self) -> Topic {
        self.topic
    }

    /// Rows appended since the last [`BatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one event with its lineage. Refuses an event of another topic.
    pub fn append(&mut self, event: &Event, lineage: &Lineage) -> Result<(), LakeError> {
        if event.topic != self.topic {
            return Err(LakeError::WrongTopic {
                event: event.topic,
                batch: self.topic,
            });
        }
        self.ts.append_value(event.ts);
        self.session_id.append_value(event.session_id);
        self.level.append_value(&event.level);
        self.item_in_session.append_value(event.item_in_session);
        self.city.append_value(&event.city);
        self.zip.append_value(&event.zip);
        self.state.append_value(&event.state);
        self.lat.append_value(event.lat);
        self.lon.append_value(event.lon);
        self.user_agent.append_value(&event.user_agent);
        let user = event.user.as_ref();
        self.user_id.append_option(user.map(|u| u.user_id));
        self.first_name
            .append_option(user.map(|u| u.first_name.as_str()));
        self.last_name
            .append_option(user.map(|u| u.last_name.as_str()));
        self.gender.append_option(user.map(|u| u.gender.as_str()));
        self.registration
            .append_option(user.map(|u| u.registration));
        match &event.payload {
            Payload::Listen { auth, song } => {
                self.auth.append_value(auth);
                self.artist.append_value(&song.artist);
                self.song.append_value(&song.song);
                self.duration.append_value(song.duration);
            }
            Payload::PageView {
                page,
                auth,
                method,
                status,
                song,
            } => {
                self.page.append_value(page);
                self.auth.append_value(auth);
                self.method.append_value(method);
                self.status.append_value(*status);
                let song = song.as_ref();
                self.artist.append_option(song.map(|s| s.artist.as_str()));
                self.song.append_option(song.map(|s| s.song.as_str()));
                self.duration.append_option(song.map(|s| s.duration));
            }
            Payload::Auth { success } => self.success.append_value(*success),
            Payload::StatusChange { auth } => self.auth.append_value(auth),
        }
        self.event_id.append_option(event.event_id.as_deref());
        self.source.append_value(&lineage.source);
        self.source_partition.append_option(lineage.partition);
        self.source_offset.append_option(lineage.offset);
        self.ingested_at
            .append_value(lineage.ingested_at.timestamp_millis());
        self.len += 1;
        Ok(())
    }

    /// The rows appended so far as one batch; the builder starts over empty.
    pub fn finish(&mut self) -> RecordBatch {
        let schema = self.topic.schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| self.finish_column(field.name()))
            .collect();
        self.len = 0;
        RecordBatch::try_new(schema, columns).expect("the builder follows the topic's schema")
    }

    fn finish_column(&mut self, name: &str) -> ArrayRef {
        match name {
            col::TS => Arc::new(self.ts.finish()),
            col::SESSION_ID => Arc::new(self.session_id.finish()),
            col::LEVEL => Arc::new(self.level.finish()),
            col::ITEM_IN_SESSION => Arc::new(self.item_in_session.finish()),
            col::CITY => Arc::new(self.city.finish()),
            col::ZIP => Arc::new(self.zip.finish()),
            col::STATE => Arc::new(self.state.finish()),
            col::LAT => Arc::new(self.lat.finish()),
            col::LON => Arc::new(self.lon.finish()),
            col::USER_AGENT => Arc::new(self.user_agent.finish()),
            col::USER_ID => Arc::new(self.user_id.finish()),
            col::FIRST_NAME => Arc::new(self.first_name.finish()),
            col::LAST_NAME => Arc::new(self.last_name.finish()),
            col::GENDER => Arc::new(self.gender.finish()),
            col::REGISTRATION => Arc::new(self.registration.finish()),
            col::AUTH => Arc::new(self.auth.finish()),
            col::ARTIST => Arc::new(self.artist.finish()),
            col::SONG => Arc::new(self.song.finish()),
            col::DURATION => Arc::new(self.duration.finish()),
            col::PAGE => Arc::new(self.page.finish()),
            col::METHOD => Arc::new(self.method.finish()),
            col::STATUS => Arc::new(self.status.finish()),
            col::SUCCESS => Arc::new(self.success.finish()),
            col::EVENT_ID => Arc::new(self.event_id.finish()),
            col::SOURCE => Arc::new(self.source.finish()),
            col::SOURCE_PARTITION => Arc::new(self.source_partition.finish()),
            col::SOURCE_OFFSET => Arc::new(self.source_offset.finish()),
            col::INGESTED_AT => Arc::new(self.ingested_at.finish()),
            other => unreachable!("no builder for column {other}"),
        }
    }
}

/// Events of one topic from one producer position (a Kafka partition, a generator), grouped by
/// their own hour: one batch per hour, with what names its file.
#[derive(Debug)]
pub struct HourlyBatches {
    topic: Topic,
    hours: BTreeMap<Hour, Pending>,
    len: usize,
}

#[derive(Debug)]
struct Pending {
    builder: BatchBuilder,
    min_offset: Option<i64>,
    max_offset: Option<i64>,
    first_event_id: Option<String>,
}

/// The rows of one hour, ready to write.
#[derive(Debug, Clone)]
pub struct HourBatch {
    pub hour: Hour,
    pub batch: RecordBatch,
    /// The smallest and largest `_source_offset` in the batch (Kafka offsets or sequence
    /// numbers), when rows carry one: what [`crate::FileName::kafka`] and
    /// [`crate::FileName::generator`] take.
    pub min_offset: Option<i64>,
    pub max_offset: Option<i64>,
    /// The `_event_id` of the first row, if it has one.
    pub first_event_id: Option<String>,
}

impl HourlyBatches {
    pub fn new(topic: Topic) -> HourlyBatches {
        HourlyBatches {
            topic,
            hours: BTreeMap::new(),
            len: 0,
        }
    }

    /// Rows held, over all hours.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The hours that hold rows.
    pub fn hours(&self) -> impl Iterator<Item = Hour> + '_ {
        self.hours.keys().copied()
    }

    /// Appends an event to the batch of its own hour.
    pub fn append(&mut self, event: &Event, lineage: &Lineage) -> Result<(), LakeError> {
        let pending = self.hours.entry(event.hour()).or_insert_with(|| Pending {
            builder: BatchBuilder::new(self.topic),
            min_offset: None,
            max_offset: None,
            first_event_id: None,
        });
        pending.builder.append(event, lineage)?;
        if let Some(offset) = lineage.offset {
            pending.min_offset = Some(pending.min_offset.map_or(offset, |m| m.min(offset)));
            pending.max_offset = Some(pending.max_offset.map_or(offset, |m| m.max(offset)));
        }
        if pending.builder.len() == 1 {
            pending.first_event_id = event.event_id.clone();
        }
        self.len += 1;
        Ok(())
    }

    /// Every hour's batch, in hour order; the builder starts over empty.
    pub fn drain(&mut self) -> Vec<HourBatch> {
        self.len = 0;
        std::mem::take(&mut self.hours)
            .into_iter()
            .map(|(hour, mut pending)| HourBatch {
                hour,
                batch: pending.builder.finish(),
                min_offset: pending.min_offset,
                max_offset: pending.max_offset,
                first_event_id: pending.first_event_id,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
    use arrow_array::{Array, BooleanArray};

    const TS: i64 = 1_795_342_500_000; // 2026-11-22T10:15:00Z

    fn event(topic: Topic, json: &str) -> Event {
        decode(topic, json.as_bytes()).unwrap()
    }

    fn common(ts: i64, user: bool) -> String {
        let user = if user {
            r#","userId":7,"firstName":"Ada","lastName":"L","gender":"F","registration":1700000000000"#
        } else {
            ""
        };
        format!(
            r#""ts":{ts},"sessionId":5,"level":"free","itemInSession":2,"city":"Austin","zip":"78701","state":"TX","lat":30.27,"lon":-97.74,"userAgent":"UA"{user}"#
        )
    }

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(TS + 60_000).unwrap()
    }

    #[test]
    fn listen_rows_with_lineage() {
        let mut b = BatchBuilder::new(Topic::ListenEvents);
        let user = event(
            Topic::ListenEvents,
            &format!(
                r#"{{{},"auth":"Logged In","artist":"A","song":"S","duration":200.5,"_event_id":"e1"}}"#,
                common(TS, true)
            ),
        );
        let guest = event(
            Topic::ListenEvents,
            &format!(
                r#"{{{},"auth":"Guest","artist":"B","song":"T","duration":99}}"#,
                common(TS + 1, false)
            ),
        );
        b.append(&user, &Lineage::kafka(3, 41, now())).unwrap();
        b.append(&guest, &Lineage::generator("eventsim", 9, now()))
            .unwrap();
        assert_eq!(b.len(), 2);
        let batch = b.finish();
        assert!(b.is_empty());
        assert_eq!(batch.schema(), Topic::ListenEvents.schema());
        assert_eq!(batch.num_rows(), 2);
        let ts = batch
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.values(), &[TS, TS + 1]);
        let user_id = batch
            .column_by_name("userId")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!((user_id.value(0), user_id.is_null(1)), (7, true));
        let first = batch
            .column_by_name("firstName")
            .unwrap()
            .as_string::<i32>();
        assert_eq!((first.value(0), first.is_null(1)), ("Ada", true));
        let duration = batch
            .column_by_name("duration")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(duration.values(), &[200.5, 99.0]);
        let id = batch
            .column_by_name("_event_id")
            .unwrap()
            .as_string::<i32>();
        assert_eq!((id.value(0), id.is_null(1)), ("e1", true));
        let source = batch.column_by_name("_source").unwrap().as_string::<i32>();
        assert_eq!((source.value(0), source.value(1)), ("kafka", "eventsim"));
        let part = batch
            .column_by_name("_source_partition")
            .unwrap()
            .as_primitive::<Int32Type>();
        assert_eq!((part.value(0), part.is_null(1)), (3, true));
        let offset = batch
            .column_by_name("_source_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(offset.values(), &[41, 9]);
        let ingested = batch
            .column_by_name("_ingested_at")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        assert_eq!(ingested.value(0), TS + 60_000);
        // An empty builder gives an empty batch of the schema.
        assert_eq!(b.finish().num_rows(), 0);
    }

    #[test]
    fn every_topic_builds_its_schema() {
        let page = event(
            Topic::PageViewEvents,
            &format!(
                r#"{{{},"page":"NextSong","auth":"Logged In","method":"PUT","status":200,"artist":"A","song":"S","duration":3.5}}"#,
                common(TS, true)
            ),
        );
        let home = event(
            Topic::PageViewEvents,
            &format!(
                r#"{{{},"page":"Home","auth":"Guest","method":"GET","status":200}}"#,
                common(TS, false)
            ),
        );
        let mut b = BatchBuilder::new(Topic::PageViewEvents);
        b.append(&page, &Lineage::kafka(0, 0, now())).unwrap();
        b.append(&home, &Lineage::kafka(0, 1, now())).unwrap();
        let batch = b.finish();
        let artist = batch.column_by_name("artist").unwrap().as_string::<i32>();
        assert_eq!((artist.value(0), artist.is_null(1)), ("A", true));
        let status = batch
            .column_by_name("status")
            .unwrap()
            .as_primitive::<Int32Type>();
        assert_eq!(status.values(), &[200, 200]);

        let auth = event(
            Topic::AuthEvents,
            &format!(r#"{{{},"success":false}}"#, common(TS, false)),
        );
        let mut b = BatchBuilder::new(Topic::AuthEvents);
        b.append(&auth, &Lineage::kafka(0, 0, now())).unwrap();
        let batch = b.finish();
        let success = batch
            .column_by_name("success")
            .unwrap()
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert!(!success.value(0));

        let change = event(
            Topic::StatusChangeEvents,
            &format!(r#"{{{},"auth":"Logged In"}}"#, common(TS, true)),
        );
        let mut b = BatchBuilder::new(Topic::StatusChangeEvents);
        b.append(&change, &Lineage::kafka(0, 0, now())).unwrap();
        assert_eq!(b.finish().schema(), Topic::StatusChangeEvents.schema());

        let err = b
            .append(&auth, &Lineage::kafka(0, 0, now()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "an event of auth_events cannot go into a batch of status_change_events"
        );
    }

    #[test]
    fn hourly_batches_split_by_event_hour() {
        let make = |ts: i64, id: &str| {
            event(
                Topic::AuthEvents,
                &format!(
                    r#"{{{},"success":true,"_event_id":"{id}"}}"#,
                    common(ts, true)
                ),
            )
        };
        let mut h = HourlyBatches::new(Topic::AuthEvents);
        // A late event of the previous hour arrives in the middle.
        h.append(&make(TS, "a"), &Lineage::kafka(1, 10, now()))
            .unwrap();
        h.append(&make(TS - 3_600_000, "late"), &Lineage::kafka(1, 11, now()))
            .unwrap();
        h.append(&make(TS + 5, "b"), &Lineage::kafka(1, 12, now()))
            .unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.hours().map(|h| h.to_string()).collect::<Vec<_>>(),
            ["2026-11-22-09:00", "2026-11-22-10:00"]
        );
        let batches = h.drain();
        assert!(h.is_empty());
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].batch.num_rows(), 1);
        assert_eq!(
            (batches[0].min_offset, batches[0].max_offset),
            (Some(11), Some(11))
        );
        assert_eq!(batches[0].first_event_id.as_deref(), Some("late"));
        assert_eq!(batches[1].batch.num_rows(), 2);
        assert_eq!(
            (batches[1].min_offset, batches[1].max_offset),
            (Some(10), Some(12))
        );
        assert_eq!(batches[1].first_event_id.as_deref(), Some("a"));
        assert!(h.drain().is_empty());
    }
}
