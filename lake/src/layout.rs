//! Where things live in the lake, and what files are called.
//!
//! ```text
//! raw/{topic}/date=YYYY-MM-DD/hour=HH/{name}.parquet   valid events, by each event's own hour (UTC)
//! dlq/{topic}/date=YYYY-MM-DD/hour=HH/{name}.jsonl     dead letters: raw input, reason, position
//! ```
//!
//! File names are deterministic from the producer's position, so that writing the same events
//! again (after a crash, before the position was committed) replaces a file instead of adding
//! one:
//!
//! - Kafka: `{source}-p{partition}-o{first_offset}-{last_offset}`, the offsets of the first and
//!   last event of that partition in the file (`kafka-p3-o1200-1799.parquet`);
//! - a generator writing straight to the lake: `{source}-{seed}-{first}`, with the generator's
//!   seed and the sequence number (or event id) of the file's first event
//!   (`eventsim-42-000000001200.parquet`; sequence numbers are zero-padded to 12 digits so that
//!   names sort in order).
//!
//! Names use only ASCII letters, digits, `.`, `_` and `-`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};

use crate::error::LakeError;
use crate::topic::Topic;

/// The top folder of valid events.
pub const RAW: &str = "raw";
/// The top folder of dead letters.
pub const DLQ: &str = "dlq";
/// The extension of event files.
pub const PARQUET_EXT: &str = "parquet";
/// The extension of dead-letter files.
pub const JSONL_EXT: &str = "jsonl";

/// One hour of UTC time, the lake's partition. Shown as orch's hourly partition key
/// (`2026-11-22-10:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour(DateTime<Utc>);

impl Hour {
    /// The hour that contains `ts` (milliseconds since the epoch), or `None` if `ts` is outside
    /// chrono's range.
    pub fn from_ts_ms(ts: i64) -> Option<Hour> {
        DateTime::<Utc>::from_timestamp_millis(ts).map(Hour::containing)
    }

    /// The hour that contains `time`.
    pub fn containing(time: DateTime<Utc>) -> Hour {
        let start = Utc
            .with_ymd_and_hms(time.year(), time.month(), time.day(), time.hour(), 0, 0)
            .single()
            .expect("UTC has no gaps");
        Hour(start)
    }

    /// The hour starting at `date` `hour`:00 UTC.
    pub fn new(date: NaiveDate, hour: u32) -> Option<Hour> {
        date.and_hms_opt(hour, 0, 0).map(|t| Hour(t.and_utc()))
    }

    /// The first instant of the hour.
    pub fn start(self) -> DateTime<Utc> {
        self.0
    }

    /// The first instant after the hour.
    pub fn end(self) -> DateTime<Utc> {
        self.0 + chrono::Duration::hours(1)
    }

    /// The next hour.
    pub fn next(self) -> Hour {
        Hour(self.end())
    }

    /// `date=YYYY-MM-DD/hour=HH`, the hour's folder below a topic.
    pub fn dir(self) -> String {
        format!(
            "date={}/hour={:02}",
            self.0.format("%Y-%m-%d"),
            self.0.hour()
        )
    }

    /// Parses the hour of a `date=YYYY-MM-DD` and an `hour=HH` folder name.
    pub fn from_dirs(date_dir: &str, hour_dir: &str) -> Option<Hour> {
        let date = date_dir.strip_prefix("date=")?;
        let hour = hour_dir.strip_prefix("hour=")?;
        if date.len() != 10 || hour.len() != 2 || !hour.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        Hour::new(date, hour.parse().ok()?)
    }
}

impl fmt::Display for Hour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d-%H:00"))
    }
}

impl FromStr for Hour {
    type Err = LakeError;

    /// Accepts orch's hourly partition key, `2026-11-22-10:00`.
    fn from_str(s: &str) -> Result<Hour, LakeError> {
        let invalid = || LakeError::InvalidHour(s.to_owned());
        let (date, time) = s.split_at_checked(10).ok_or_else(invalid)?;
        let time = time.strip_prefix('-').ok_or_else(invalid)?;
        let hour = time.strip_suffix(":00").ok_or_else(invalid)?;
        if hour.len() != 2 || !hour.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| invalid())?;
        Hour::new(date, hour.parse().map_err(|_| invalid())?).ok_or_else(invalid)
    }
}

/// A file's name without extension: deterministic from the producer's position (see the
/// module's documentation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(String);

impl FileName {
    /// A name checked to be non-empty, at most 200 bytes, made of ASCII letters, digits, `.`, `_`
    /// and `-`, and not starting with `.`.
    pub fn new(stem: impl Into<String>) -> Result<FileName, LakeError> {
        let stem = stem.into();
        let reason = if stem.is_empty() {
            Some("it is empty")
        } else if stem.len() > 200 {
            Some("it is longer than 200 bytes")
        } else if stem.starts_with('.') {
            Some("it starts with `.` (hidden and temporary files do)")
        } else if !stem.bytes().all(is_name_byte) {
            Some("only ASCII letters, digits, `.`, `_` and `-` are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(LakeError::InvalidFileName {
                name: stem,
                reason: reason.to_owned(),
            }),
            None => Ok(FileName(stem)),
        }
    }

    /// The name of a file holding offsets `first_offset..=last_offset` of one Kafka partition:
    /// `{source}-p{partition}-o{first_offset}-{last_offset}`.
    pub fn kafka(
        source: &str,
        partition: i32,
        first_offset: i64,
        last_offset: i64,
    ) -> Result<FileName, LakeError> {
        if partition < 0 || first_offset < 0 || last_offset < first_offset {
            return Err(LakeError::InvalidFileName {
                name: format!("{source}-p{partition}-o{first_offset}-{last_offset}"),
                reason: "a partition and offsets are non-negative, and the last offset is not \
                         before the first"
                    .to_owned(),
            });
        }
        FileName::new(format!(
            "{source}-p{partition}-o{first_offset}-{last_offset}"
        ))
    }

    /// The name of a file written by a generator with `seed` whose first event has sequence
    /// number `first_seq`: `{source}-{seed}-{first_seq:012}`.
    pub fn generator(source: &str, seed: u64, first_seq: u64) -> Result<FileName, LakeError> {
        FileName::new(format!("{source}-{seed}-{first_seq:012}"))
    }

    /// The name of a file written by a generator with `seed` whose first event has the id
    /// `first_event_id`: `{source}-{seed}-{first_event_id}` (the id must be a valid name part).
    pub fn generator_event(
        source: &str,
        seed: u64,
        first_event_id: &str,
    ) -> Result<FileName, LakeError> {
        FileName::new(format!("{source}-{seed}-{first_event_id}"))
    }

    /// The name, without extension.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// `raw/{topic}`.
pub fn raw_topic_dir(topic: Topic) -> String {
    format!("{RAW}/{topic}")
}

/// `dlq/{topic}`.
pub fn dlq_topic_dir(topic: Topic) -> String {
    format!("{DLQ}/{topic}")
}

/// `raw/{topic}/date=YYYY-MM-DD/hour=HH`.
pub fn raw_hour_dir(topic: Topic, hour: Hour) -> String {
    format!("{RAW}/{topic}/{}", hour.dir())
}

/// `dlq/{topic}/date=YYYY-MM-DD/hour=HH`.
pub fn dlq_hour_dir(topic: Topic, hour: Hour) -> String {
    format!("{DLQ}/{topic}/{}", hour.dir())
}

/// `raw/{topic}/date=YYYY-MM-DD/hour=HH/{name}.parquet`.
pub fn raw_file(topic: Topic, hour: Hour, name: &FileName) -> String {
    format!("{}/{name}.{PARQUET_EXT}", raw_hour_dir(topic, hour))
}

/// `dlq/{topic}/date=YYYY-MM-DD/hour=HH/{name}.jsonl`.
pub fn dlq_file(topic: Topic, hour: Hour, name: &FileName) -> String {
    format!("{}/{name}.{JSONL_EXT}", dlq_hour_dir(topic, hour))
}

/// What a path in the lake is, when it follows the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakePath {
    /// `raw` or `dlq`.
    pub area: &'static str,
    pub topic: Topic,
    pub hour: Hour,
    /// The file name with its extension.
    pub file: String,
}

/// Parses `raw/{topic}/date=.../hour=.../{file}.parquet` or
/// `dlq/{topic}/date=.../hour=.../{file}.jsonl` (relative to the lake's root).
pub fn parse_path(path: &str) -> Option<LakePath> {
    let parts: Vec<&str> = path.split('/').collect();
    let [area, topic, date, hour, file] = parts.as_slice() else {
        return None;
    };
    let (area, ext) = match *area {
        RAW => (RAW, PARQUET_EXT),
        DLQ => (DLQ, JSONL_EXT),
        _ => return None,
    };
    let stem = file.strip_suffix(ext)?.strip_suffix('.')?;
    FileName::new(stem).ok()?;
    Some(LakePath {
        area,
        topic: topic.parse().ok()?,
        hour: Hour::from_dirs(date, hour)?,
        file: (*file).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(s: &str) -> Hour {
        s.parse().unwrap()
    }

    #[test]
    fn hours_from_timestamps() {
        // 2026-11-22T10:59:59.999Z and the next millisecond.
        let h = Hour::from_ts_ms(1_795_345_199_999).unwrap();
        assert_eq!(h.to_string(), "2026-11-22-10:00");
        assert_eq!(h.dir(), "date=2026-11-22/hour=10");
        let next = Hour::from_ts_ms(1_795_345_200_000).unwrap();
        assert_eq!(next.to_string(), "2026-11-22-11:00");
        assert_eq!(h.next(), next);
        assert_eq!(h.end(), next.start());
        assert_eq!(Hour::from_ts_ms(0).unwrap().to_string(), "1970-01-01-00:00");
        assert_eq!(Hour::from_ts_ms(i64::MAX), None);
    }

    #[test]
    fn hours_parse_partition_keys_only() {
        let h = hour("2026-11-22-03:00");
        assert_eq!(h.to_string(), "2026-11-22-03:00");
        assert_eq!(Hour::from_dirs("date=2026-11-22", "hour=03"), Some(h));
        for bad in [
            "2026-11-22",
            "2026-11-22-3:00",
            "2026-11-22-24:00",
            "2026-11-22-10:30",
            "2026-13-22-10:00",
            "2026-11-22T10:00",
            "2026-11-22-10:00Z",
            "",
            "ü026-11-22-10:00",
        ] {
            let err = bad.parse::<Hour>().unwrap_err().to_string();
            assert!(err.contains("expected YYYY-MM-DD-HH:00"), "{bad}: {err}");
        }
        assert_eq!(Hour::from_dirs("date=2026-11-22", "hour=3"), None);
        assert_eq!(Hour::from_dirs("date=2026-11-22", "hour=24"), None);
        assert_eq!(Hour::from_dirs("day=2026-11-22", "hour=03"), None);
        assert_eq!(Hour::from_dirs("date=2026-11-2", "hour=03"), None);
    }

    #[test]
    fn paths() {
        let h = hour("2026-11-22-10:00");
        let name = FileName::kafka("kafka", 3, 1200, 1799).unwrap();
        assert_eq!(name.as_str(), "kafka-p3-o1200-1799");
        let raw = raw_file(Topic::ListenEvents, h, &name);
        assert_eq!(
            raw,
            "raw/listen_events/date=2026-11-22/hour=10/kafka-p3-o1200-1799.parquet"
        );
        let dlq = dlq_file(Topic::AuthEvents, h, &name);
        assert_eq!(
            dlq,
            "dlq/auth_events/date=2026-11-22/hour=10/kafka-p3-o1200-1799.jsonl"
        );
        assert_eq!(
            parse_path(&raw),
            Some(LakePath {
                area: RAW,
                topic: Topic::ListenEvents,
                hour: h,
                file: "kafka-p3-o1200-1799.parquet".into()
            })
        );
        assert_eq!(parse_path(&dlq).unwrap().area, DLQ);
        for bad in [
            "raw/listen_events/date=2026-11-22/hour=10/x.jsonl",
            "dlq/listen_events/date=2026-11-22/hour=10/x.parquet",
            "raw/listen/date=2026-11-22/hour=10/x.parquet",
            "raw/listen_events/date=2026-11-22/x.parquet",
            "raw/listen_events/date=2026-11-22/hour=10/x.parquet#1",
            "raw/listen_events/date=2026-11-22/hour=10/.x.parquet",
            "raw/listen_events/date=2026-11-22/hour=10/sub/x.parquet",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_are_deterministic_and_checked() {
        assert_eq!(
            FileName::generator("eventsim", 42, 1200).unwrap().as_str(),
            "eventsim-42-000000001200"
        );
        assert_eq!(
            FileName::generator_event("eventsim", 7, "e-00017")
                .unwrap()
                .as_str(),
            "eventsim-7-e-00017"
        );
        // Same position, same name.
        assert_eq!(
            FileName::kafka("kafka", 0, 5, 9).unwrap(),
            FileName::kafka("kafka", 0, 5, 9).unwrap()
        );
        // Sequence numbers sort as numbers.
        assert!(
            FileName::generator("eventsim", 1, 99).unwrap()
                < FileName::generator("eventsim", 1, 100).unwrap()
        );
        for (bad, reason) in [
            ("", "empty"),
            (".tmp", "starts with `.`"),
            ("a/b", "only ASCII letters"),
            ("a b", "only ASCII letters"),
            ("é", "only ASCII letters"),
        ] {
            let err = FileName::new(bad).unwrap_err().to_string();
            assert!(err.contains(reason), "{bad}: {err}");
        }
        assert!(FileName::new("x".repeat(201)).is_err());
        let err = FileName::kafka("kafka", 0, 10, 9).unwrap_err().to_string();
        assert!(err.contains("last offset is not before the first"), "{err}");
        assert!(FileName::kafka("kafka", -1, 0, 0).is_err());
        assert!(FileName::generator_event("eventsim", 1, "a/b").is_err());
    }
}
