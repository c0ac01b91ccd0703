//! The four eventsim topics and their Arrow schemas.
//!
//! Field names are eventsim's (the fork that writes four Kafka topics), so that the lake, the
//! staging loads and the dbt models speak one vocabulary. Every schema starts with the fields
//! all events share, continues with the topic's own and ends with the lineage columns.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::LakeError;

/// One of eventsim's topics. The name is the Kafka topic and the lake folder `raw/{topic}/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// A song played (`NextSong`): `artist`, `song`, `duration`.
    ListenEvents,
    /// Every page a user or guest opens: `page`, `method`, `status`, and for `NextSong` the song.
    PageViewEvents,
    /// The outcome of a login: `success`.
    AuthEvents,
    /// A level change (`Submit Upgrade`, `Submit Downgrade`): the event's `level` is the new one.
    StatusChangeEvents,
}

impl Topic {
    /// Every topic, in a fixed order.
    pub const ALL: [Topic; 4] = [
        Topic::ListenEvents,
        Topic::PageViewEvents,
        Topic::AuthEvents,
        Topic::StatusChangeEvents,
    ];

    /// The topic's name: `listen_events`, `page_view_events`, `auth_events`, `status_change_events`.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::ListenEvents => "listen_events",
            Topic::PageViewEvents => "page_view_events",
            Topic::AuthEvents => "auth_events",
            Topic::StatusChangeEvents => "status_change_events",
        }
    }

    /// The topic's Arrow schema: shared fields, the topic's fields, lineage columns.
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 4]> = OnceLock::new();
        let schemas = SCHEMAS.get_or_init(|| Topic::ALL.map(build_schema));
        Arc::clone(&schemas[self as usize])
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Topic {
    type Err = LakeError;

    fn from_str(s: &str) -> Result<Topic, LakeError> {
        Topic::ALL
            .into_iter()
            .find(|topic| topic.as_str() == s)
            .ok_or_else(|| LakeError::UnknownTopic(s.to_owned()))
    }
}

impl serde::Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Topic, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Column names, as eventsim writes the JSON fields.
pub mod col {
    pub const TS: &str = "ts";
    pub const SESSION_ID: &str = "sessionId";
    pub const LEVEL: &str = "level";
    pub const ITEM_IN_SESSION: &str = "itemInSession";
    pub const CITY: &str = "city";
    pub const ZIP: &str = "zip";
    pub const STATE: &str = "state";
    pub const LAT: &str = "lat";
    pub const LON: &str = "lon";
    pub const USER_AGENT: &str = "userAgent";
    pub const USER_ID: &str = "userId";
    pub const FIRST_NAME: &str = "firstName";
    pub const LAST_NAME: &str = "lastName";
    pub const GENDER: &str = "gender";
    pub const REGISTRATION: &str = "registration";
    pub const AUTH: &str = "auth";
    pub const ARTIST: &str = "artist";
    pub const SONG: &str = "song";
    pub const DURATION: &str = "duration";
    pub const PAGE: &str = "page";
    pub const METHOD: &str = "method";
    pub const STATUS: &str = "status";
    pub const SUCCESS: &str = "success";

    /// Lineage: the producer's id of the event (eventsim sets it; optional in the input).
    pub const EVENT_ID: &str = "_event_id";
    /// Lineage: where the event came from (`kafka`, `eventsim`).
    pub const SOURCE: &str = "_source";
    /// Lineage: the Kafka partition (null when the source has none). Not `_partition`:
    /// BigQuery refuses column names that start with `_PARTITION` (in any case).
    pub const SOURCE_PARTITION: &str = "_source_partition";
    /// Lineage: the Kafka offset, or the generator's sequence number (null when neither).
    pub const SOURCE_OFFSET: &str = "_source_offset";
    /// Lineage: when the event was decoded for the lake (UTC).
    pub const INGESTED_AT: &str = "_ingested_at";
}

/// The Arrow type of every timestamp in the lake: milliseconds since the epoch, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn build_schema(topic: Topic) -> SchemaRef {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let mut fields = vec![
        Field::new(col::TS, timestamp_type(), false),
        Field::new(col::SESSION_ID, DataType::Int64, false),
        utf8(col::LEVEL, false),
        Field::new(col::ITEM_IN_SESSION, DataType::Int32, false),
        utf8(col::CITY, false),
        utf8(col::ZIP, false),
        utf8(col::STATE, false),
        Field::new(col::LAT, DataType::Float64, false),
        Field::new(col::LON, DataType::Float64, false),
        utf8(col::USER_AGENT, false),
        // Guests (auth `Guest` or `Logged Out`) have no user fields.
        Field::new(col::USER_ID, DataType::Int64, true),
        utf8(col::FIRST_NAME, true),
        utf8(col::LAST_NAME, true),
        utf8(col::GENDER, true),
        Field::new(col::REGISTRATION, timestamp_type(), true),
    ];
    match topic {
        Topic::ListenEvents => fields.extend([
            utf8(col::AUTH, false),
            utf8(col::ARTIST, false),
            utf8(col::SONG, false),
            Field::new(col::DURATION, DataType::Float64, false),
        ]),
        Topic::PageViewEvents => fields.extend([
            utf8(col::PAGE, false),
            utf8(col::AUTH, false),
            utf8(col::METHOD, false),
            Field::new(col::STATUS, DataType::Int32, false),
            // Only `NextSong` page views carry the song.
            utf8(col::ARTIST, true),
            utf8(col::SONG, true),
            Field::new(col::DURATION, DataType::Float64, true),
        ]),
        Topic::AuthEvents => fields.push(Field::new(col::SUCCESS, DataType::Boolean, false)),
        Topic::StatusChangeEvents => fields.push(utf8(col::AUTH, false)),
    }
    fields.extend([
        utf8(col::EVENT_ID, true),
        utf8(col::SOURCE, false),
        Field::new(col::SOURCE_PARTITION, DataType::Int32, true),
        Field::new(col::SOURCE_OFFSET, DataType::Int64, true),
        Field::new(col::INGESTED_AT, timestamp_type(), false),
    ]);
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for topic in Topic::ALL {
            assert_eq!(topic.as_str().parse::<Topic>().unwrap(), topic);
            assert_eq!(topic.to_string(), topic.as_str());
        }
        let err = "listen".parse::<Topic>().unwrap_err().to_string();
        assert!(err.contains("unknown topic `listen`"), "{err}");
        assert!(err.contains("listen_events"), "{err}");
    }

    #[test]
    fn schemas_share_fields_and_lineage() {
        for topic in Topic::ALL {
            let schema = topic.schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(names[0], "ts");
            assert_eq!(
                &names[names.len() - 5..],
                [
                    "_event_id",
                    "_source",
                    "_source_partition",
                    "_source_offset",
                    "_ingested_at"
                ]
            );
            assert!(schema.field_with_name("userId").unwrap().is_nullable());
            assert!(!schema.field_with_name("sessionId").unwrap().is_nullable());
            assert_eq!(
                schema.field_with_name("ts").unwrap().data_type(),
                &timestamp_type()
            );
            // BigQuery refuses these prefixes in column names, case-insensitively.
            for name in &names {
                let upper = name.to_ascii_uppercase();
                for reserved in [
                    "_PARTITION",
                    "_TABLE_",
                    "_FILE_",
                    "_ROW_TIMESTAMP",
                    "__ROOT__",
                ] {
                    assert!(!upper.starts_with(reserved), "{name}");
                }
            }
        }
        let listen = Topic::ListenEvents.schema();
        assert!(!listen.field_with_name("duration").unwrap().is_nullable());
        let page = Topic::PageViewEvents.schema();
        assert!(page.field_with_name("duration").unwrap().is_nullable());
        assert!(
            Topic::AuthEvents
                .schema()
                .field_with_name("success")
                .is_ok()
        );
        assert!(Topic::AuthEvents.schema().field_with_name("auth").is_err());
        assert!(
            Topic::StatusChangeEvents
                .schema()
                .field_with_name("auth")
                .is_ok()
        );
    }
}
