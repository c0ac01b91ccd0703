//! Dead letters: inputs that are not valid events, kept with their reason and position.
//!
//! A dead-letter file is JSON Lines, one object per input:
//!
//! ```json
//! {"topic":"listen_events","raw":"{\"ts\": 1","reason":"malformed JSON: ...","field":null,
//!  "ts":null,"source":"kafka","partition":3,"offset":1207,"ingested_at":"2026-11-22T10:15:02Z"}
//! ```
//!
//! `raw` is the input as text; when the input is not valid UTF-8, `raw` has replacement
//! characters and `raw_base64` holds the exact bytes, so nothing is lost.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::batch::Lineage;
use crate::event::InvalidEvent;
use crate::layout::Hour;
use crate::topic::Topic;

/// One input that is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub topic: Topic,
    /// The input as text (invalid UTF-8 replaced by U+FFFD).
    pub raw: String,
    /// The input's exact bytes, in standard base64, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    /// Why it was refused.
    pub reason: String,
    /// The field concerned, when one is.
    pub field: Option<String>,
    /// The input's `ts`, when it could be read and is plausible.
    pub ts: Option<i64>,
    /// Where it came from: as the lineage columns of a valid row.
    pub source: String,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// The record's time at its source (Kafka's timestamp, ms), when it has one: the hour of a
    /// dead letter without a readable `ts`, so that reading the record again files it in the
    /// same hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ts: Option<i64>,
    pub ingested_at: DateTime<Utc>,
}

impl DeadLetter {
    /// The dead letter of `raw`, refused for `invalid`, read at `lineage`.
    pub fn new(topic: Topic, raw: &[u8], invalid: &InvalidEvent, lineage: &Lineage) -> DeadLetter {
        let (text, raw_base64) = match std::str::from_utf8(raw) {
            Ok(text) => (text.to_owned(), None),
            Err(_) => (
                String::from_utf8_lossy(raw).into_owned(),
                Some(BASE64.encode(raw)),
            ),
        };
        DeadLetter {
            topic,
            raw: text,
            raw_base64,
            reason: invalid.reason.clone(),
            field: invalid.field.clone(),
            ts: invalid.ts,
            source: lineage.source.clone(),
            partition: lineage.partition,
            offset: lineage.offset,
            source_ts: None,
            ingested_at: lineage.ingested_at,
        }
    }

    /// The hour the dead letter is filed under: the event's own hour when its `ts` could be
    /// read, else the hour of its source timestamp, else the hour it was read in.
    pub fn hour(&self) -> Hour {
        self.ts
            .and_then(Hour::from_ts_ms)
            .or_else(|| self.source_ts.and_then(Hour::from_ts_ms))
            .unwrap_or_else(|| Hour::containing(self.ingested_at))
    }

    /// The input's exact bytes.
    pub fn raw_bytes(&self) -> Vec<u8> {
        self.raw_base64
            .as_deref()
            .and_then(|b| BASE64.decode(b).ok())
            .unwrap_or_else(|| self.raw.clone().into_bytes())
    }

    /// One JSON line, with its newline.
    pub fn to_json_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("dead letters serialize");
        line.push('\n');
        line
    }
}

/// Parses a dead-letter file (JSON Lines); blank lines are skipped.
pub fn parse_dead_letters(text: &str) -> Result<Vec<DeadLetter>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode;

    fn now() -> DateTime<Utc> {
        "2026-11-22T12:00:05Z".parse().unwrap()
    }

    #[test]
    fn lines_round_trip_and_keep_the_input() {
        let raw = br#"{"ts": 1795342500000, "sessionId": "x"}"#;
        let invalid = decode(Topic::ListenEvents, raw).unwrap_err();
        let letter = DeadLetter::new(
            Topic::ListenEvents,
            raw,
            &invalid,
            &Lineage::kafka(2, 99, now()),
        );
        assert_eq!(letter.field.as_deref(), Some("sessionId"));
        assert_eq!(letter.raw_base64, None);
        // Filed under the event's own hour, not the hour it was read in.
        assert_eq!(letter.hour().to_string(), "2026-11-22-10:00");
        let line = letter.to_json_line();
        assert!(line.ends_with("}\n"));
        assert!(!line[..line.len() - 1].contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["topic"], "listen_events");
        assert_eq!(value["raw"], std::str::from_utf8(raw).unwrap());
        assert_eq!(
            value["reason"],
            "`sessionId` must be an integer, found string \"x\""
        );
        assert_eq!(value["partition"], 2);
        assert_eq!(value["offset"], 99);
        assert_eq!(value["source"], "kafka");
        assert_eq!(value["ingested_at"], "2026-11-22T12:00:05Z");
        let text = format!("{line}\n{line}");
        assert_eq!(
            parse_dead_letters(&text).unwrap(),
            vec![letter.clone(), letter]
        );
        let err = parse_dead_letters("{}\n").unwrap_err();
        assert!(err.starts_with("line 1: missing field"), "{err}");
    }

    #[test]
    fn bytes_that_are_not_utf8_survive() {
        let raw = b"\xff\xfe{\"ts\":";
        let invalid = decode(Topic::AuthEvents, raw).unwrap_err();
        let letter = DeadLetter::new(
            Topic::AuthEvents,
            raw,
            &invalid,
            &Lineage::generator("eventsim", 5, now()),
        );
        assert!(letter.raw.starts_with('\u{fffd}'));
        assert_eq!(letter.raw_bytes(), raw);
        // No readable ts: filed under the hour it was read in.
        assert_eq!(letter.hour().to_string(), "2026-11-22-12:00");
        let back = parse_dead_letters(&letter.to_json_line()).unwrap();
        assert_eq!(back[0].raw_bytes(), raw);
    }
}
