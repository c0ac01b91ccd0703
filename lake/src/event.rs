//! Decoding and validating one event of a topic from eventsim's JSON.
//!
//! The rules, each failure with a precise reason and the field it concerns:
//! - the input is one JSON object (UTF-8);
//! - required fields are present and not null, with their JSON type: integers for `ts`,
//!   `sessionId`, `itemInSession`, `status`, `registration` (no fractions, no strings), numbers
//!   for `lat`, `lon`, `duration`, strings for the rest, a boolean for `success`;
//! - values are in range: `ts` within the plausible window ([`Validation`], by default
//!   2000-01-01 to 2100-01-01 UTC), `sessionId` and `itemInSession` not negative, `lat` in
//!   -90..=90, `lon` in -180..=180, `duration` above 0 and at most a day, `status` an HTTP status
//!   (100..=599), `level` `free` or `paid`, `auth` one of eventsim's four states, `method` an
//!   HTTP method, `gender` `M` or `F`, `registration` not after `ts`;
//! - user fields come all together or not at all: a logged-in event has `userId`, `firstName`,
//!   `lastName`, `gender` and `registration`; a guest's has none of them (eventsim omits them,
//!   and its file output writes `"userId": ""`, which counts as absent);
//! - on page views, `artist`, `song` and `duration` come together or not at all.
//!
//! Leniencies, for eventsim's own variations: `zip` may be a string or a non-negative integer
//! (kept as a string), `userId` may be an integer or a string of digits, and fields that no
//! topic knows (eventsim's `tag`, say) are ignored. `_event_id`, when present, is a non-empty
//! string of at most 200 characters.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::layout::Hour;
use crate::topic::{Topic, col};

/// A valid event, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub topic: Topic,
    /// Milliseconds since the epoch, UTC.
    pub ts: i64,
    pub session_id: i64,
    /// `free` or `paid`; on a status change, the new level.
    pub level: String,
    pub item_in_session: i32,
    pub city: String,
    pub zip: String,
    pub state: String,
    pub lat: f64,
    pub lon: f64,
    pub user_agent: String,
    /// `None` for guests.
    pub user: Option<User>,
    /// The producer's id of the event (`_event_id` in the input), if it gave one.
    pub event_id: Option<String>,
    /// The topic's own fields.
    pub payload: Payload,
}

/// The fields of a known user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: i64,
    pub first_name: String,
    pub last_name: String,
    /// `M` or `F`.
    pub gender: String,
    /// Milliseconds since the epoch, UTC.
    pub registration: i64,
}

/// A played song.
#[derive(Debug, Clone, PartialEq)]
pub struct Song {
    pub artist: String,
    pub song: String,
    /// Seconds.
    pub duration: f64,
}

/// The fields of one topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Listen {
        auth: String,
        song: Song,
    },
    PageView {
        page: String,
        auth: String,
        method: String,
        status: i32,
        /// Set on `NextSong` page views.
        song: Option<Song>,
    },
    Auth {
        success: bool,
    },
    StatusChange {
        auth: String,
    },
}

impl Event {
    /// The hour of the event's own time, its partition in the lake.
    pub fn hour(&self) -> Hour {
        Hour::from_ts_ms(self.ts).expect("decoded timestamps are within the plausible window")
    }
}

/// Why an input is not a valid event. Goes to the dead-letter area with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEvent {
    /// What is wrong, precisely enough to fix the producer.
    pub reason: String,
    /// The field concerned, when one is.
    pub field: Option<String>,
    /// The event's `ts`, when it could be read as an integer: places the dead letter in the
    /// event's own hour.
    pub ts: Option<i64>,
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for InvalidEvent {}

/// The bounds of plausible event times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validation {
    /// The earliest plausible `ts` (inclusive).
    pub ts_min: DateTime<Utc>,
    /// The first implausible `ts` (exclusive).
    pub ts_max: DateTime<Utc>,
}

impl Default for Validation {
    /// 2000-01-01 to 2100-01-01 (UTC). A streaming worker can narrow the window around its clock.
    fn default() -> Validation {
        Validation {
            ts_min: Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
            ts_max: Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap(),
        }
    }
}

/// Decodes and validates one event of `topic` with the default [`Validation`].
pub fn decode(topic: Topic, bytes: &[u8]) -> Result<Event, InvalidEvent> {
    decode_with(topic, bytes, &Validation::default())
}

/// Decodes and validates one event of `topic`.
pub fn decode_with(
    topic: Topic,
    bytes: &[u8],
    validation: &Validation,
) -> Result<Event, InvalidEvent> {
    let fail = |reason: String| InvalidEvent {
        reason,
        field: None,
        ts: None,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(fail("empty message: expected a JSON object".to_owned()));
    }
    let value: Top<'_> = serde_json::from_slice(bytes).map_err(|e| {
        fail(match e.classify() {
            serde_json::error::Category::Eof => {
                format!("malformed JSON: the input ends early ({e})")
            }
            _ if std::str::from_utf8(bytes).is_err() => {
                format!("malformed JSON: the input is not valid UTF-8 ({e})")
            }
            _ => format!("malformed JSON: {e}"),
        })
    })?;
    let map = match value {
        Top::Object(fields) => fields,
        Top::Other(value) => {
            return Err(fail(format!(
                "expected a JSON object, found {}",
                describe(&Val::Other(value))
            )));
        }
    };
    // Read `ts` first, so that every later failure can carry it (a `ts` outside the window is
    // not carried: it would place the dead letter in an implausible hour).
    let obj = Obj {
        map: &map,
        ts: None,
    };
    let ts = obj.ts_integer(col::TS)?;
    obj.check_ts(ts, validation)?;
    let obj = Obj {
        map: &map,
        ts: Some(ts),
    };
    Decoder { obj: &obj, topic }.decode(ts)
}

struct Decoder<'a> {
    obj: &'a Obj<'a>,
    topic: Topic,
}

impl Decoder<'_> {
    fn decode(&self, ts: i64) -> Result<Event, InvalidEvent> {
        let o = self.obj;
        let session_id = o.req_int(col::SESSION_ID)?;
        o.at_least(col::SESSION_ID, session_id, 0)?;
        let level = o.req_enum(col::LEVEL, &["free", "paid"])?;
        let item_in_session = o.req_int(col::ITEM_IN_SESSION)?;
        o.at_least(col::ITEM_IN_SESSION, item_in_session, 0)?;
        let item_in_session = o.fits_i32(col::ITEM_IN_SESSION, item_in_session)?;
        let city = o.req_str(col::CITY)?;
        let zip = o.req_zip()?;
        let state = o.req_str(col::STATE)?;
        let lat = o.req_number(col::LAT)?;
        o.within(col::LAT, lat, -90.0, 90.0)?;
        let lon = o.req_number(col::LON)?;
        o.within(col::LON, lon, -180.0, 180.0)?;
        let user_agent = o.req_str(col::USER_AGENT)?;
        let user = self.user(ts)?;
        let event_id = o.opt_str(col::EVENT_ID)?;
        if let Some(id) = &event_id
            && (id.is_empty() || id.chars().count() > 200)
        {
            return Err(o.invalid(
                col::EVENT_ID,
                format!(
                    "`{}` must be a non-empty string of at most 200 characters, found {} \
                     characters",
                    col::EVENT_ID,
                    id.chars().count()
                ),
            ));
        }
        let payload = self.payload()?;
        Ok(Event {
            topic: self.topic,
            ts,
            session_id,
            level,
            item_in_session,
            city,
            zip,
            state,
            lat,
            lon,
            user_agent,
            user,
            event_id,
            payload,
        })
    }

    fn user(&self, ts: i64) -> Result<Option<User>, InvalidEvent> {
        let o = self.obj;
        let user_id = o.opt_user_id()?;
        let others = [
            col::FIRST_NAME,
            col::LAST_NAME,
            col::GENDER,
            col::REGISTRATION,
        ];
        let Some(user_id) = user_id else {
            if let Some(set) = others.iter().find(|name| o.present(name)) {
                return Err(o.invalid(
                    set,
                    format!(
                        "`{set}` is set but `userId` is missing: a guest's event has no user \
                         fields, a logged-in user's has all of userId, firstName, lastName, \
                         gender and registration"
                    ),
                ));
            }
            return Ok(None);
        };
        if let Some(missing) = others.iter().find(|name| !o.present(name)) {
            return Err(o.invalid(
                missing,
                format!(
                    "`{missing}` is missing although `userId` is set: a logged-in user's event \
                     has all of userId, firstName, lastName, gender and registration"
                ),
            ));
        }
        let first_name = o.req_str(col::FIRST_NAME)?;
        let last_name = o.req_str(col::LAST_NAME)?;
        let gender = o.req_enum(col::GENDER, &["M", "F"])?;
        let registration = o.req_int(col::REGISTRATION)?;
        if registration < 0 || registration > ts {
            return Err(o.invalid(
                col::REGISTRATION,
                format!(
                    "`registration` {registration} ({}) must be between the epoch and the \
                     event's `ts` {ts} ({})",
                    show_ms(registration),
                    show_ms(ts)
                ),
            ));
        }
        Ok(Some(User {
            user_id,
            first_name,
            last_name,
            gender,
            registration,
        }))
    }

    fn payload(&self) -> Result<Payload, InvalidEvent> {
        let o = self.obj;
        Ok(match self.topic {
            Topic::ListenEvents => Payload::Listen {
                auth: o.req_auth()?,
                song: Song {
                    artist: o.req_nonempty(col::ARTIST)?,
                    song: o.req_nonempty(col::SONG)?,
                    duration: o.req_duration()?,
                },
            },
            Topic::PageViewEvents => {
                let page = o.req_nonempty(col::PAGE)?;
                let auth = o.req_auth()?;
                let method = o.req_enum(
                    col::METHOD,
                    &["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"],
                )?;
                let status = o.req_int(col::STATUS)?;
                if !(100..=599).contains(&status) {
                    return Err(o.invalid(
                        col::STATUS,
                        format!("`status` must be an HTTP status (100..=599), found {status}"),
                    ));
                }
                let song_fields = [col::ARTIST, col::SONG, col::DURATION];
                let song = if song_fields.iter().any(|f| o.present(f)) {
                    if let Some(missing) = song_fields.iter().find(|f| !o.present(f)) {
                        return Err(o.invalid(
                            missing,
                            format!(
                                "`{missing}` is missing although the page view names a song: \
                                 artist, song and duration come together"
                            ),
                        ));
                    }
                    Some(Song {
                        artist: o.req_nonempty(col::ARTIST)?,
                        song: o.req_nonempty(col::SONG)?,
                        duration: o.req_duration()?,
                    })
                } else {
                    None
                };
                Payload::PageView {
                    page,
                    auth,
                    method,
                    status: status as i32,
                    song,
                }
            }
            Topic::AuthEvents => Payload::Auth {
                success: o.req_bool(col::SUCCESS)?,
            },
            Topic::StatusChangeEvents => Payload::StatusChange {
                auth: o.req_auth()?,
            },
        })
    }
}

/// Typed access to the fields of one JSON object, with eventsim-aware error messages.
struct Obj<'a> {
    map: &'a Fields<'a>,
    ts: Option<i64>,
}

impl Obj<'_> {
    fn invalid(&self, field: &str, reason: String) -> InvalidEvent {
        InvalidEvent {
            reason,
            field: Some(field.to_owned()),
            ts: self.ts,
        }
    }

    /// Present and not null.
    fn present(&self, name: &str) -> bool {
        !matches!(self.map.get(name), None | Some(Val::Null))
    }

    fn required(&self, name: &str) -> Result<&Val<'_>, InvalidEvent> {
        match self.map.get(name) {
            None => Err(self.invalid(name, format!("missing required field `{name}`"))),
            Some(Val::Null) => Err(self.invalid(name, format!("`{name}` must not be null"))),
            Some(value) => Ok(value),
        }
    }

    fn wrong_type(&self, name: &str, expected: &str, value: &Val<'_>) -> InvalidEvent {
        self.invalid(
            name,
            format!("`{name}` must be {expected}, found {}", describe(value)),
        )
    }

    fn integer(&self, name: &str, value: &Val<'_>, expected: &str) -> Result<i64, InvalidEvent> {
        match value {
            Val::Number(n) => n.as_i64().ok_or_else(|| {
                if n.is_f64() {
                    self.wrong_type(name, expected, value)
                } else {
                    self.invalid(
                        name,
                        format!("`{name}` {n} is out of range (at most {})", i64::MAX),
                    )
                }
            }),
            _ => Err(self.wrong_type(name, expected, value)),
        }
    }

    fn ts_integer(&self, name: &str) -> Result<i64, InvalidEvent> {
        let value = self.required(name)?;
        self.integer(name, value, "an integer (milliseconds since the epoch)")
    }

    fn check_ts(&self, ts: i64, validation: &Validation) -> Result<(), InvalidEvent> {
        let (min, max) = (
            validation.ts_min.timestamp_millis(),
            validation.ts_max.timestamp_millis(),
        );
        if ts < min || ts >= max {
            return Err(self.invalid(
                col::TS,
                format!(
                    "`ts` {ts} ({}) is outside the plausible window {} to {} (milliseconds \
                     since the epoch expected)",
                    show_ms(ts),
                    validation.ts_min.format("%Y-%m-%dT%H:%M:%SZ"),
                    validation.ts_max.format("%Y-%m-%dT%H:%M:%SZ"),
                ),
            ));
        }
        Ok(())
    }

    fn req_int(&self, name: &str) -> Result<i64, InvalidEvent> {
        let value = self.required(name)?;
        self.integer(name, value, "an integer")
    }

    fn at_least(&self, name: &str, value: i64, min: i64) -> Result<(), InvalidEvent> {
        if value < min {
            return Err(self.invalid(
                name,
                format!("`{name}` must not be below {min}, found {value}"),
            ));
        }
        Ok(())
    }

    fn fits_i32(&self, name: &str, value: i64) -> Result<i32, InvalidEvent> {
        i32::try_from(value).map_err(|_| {
            self.invalid(
                name,
                format!("`{name}` {value} is out of range (at most {})", i32::MAX),
            )
        })
    }

    fn req_number(&self, name: &str) -> Result<f64, InvalidEvent> {
        let value = self.required(name)?;
        match value {
            Val::Number(n) => Ok(n.as_f64().expect("serde_json numbers convert to f64")),
            _ => Err(self.wrong_type(name, "a number", value)),
        }
    }

    fn within(&self, name: &str, value: f64, min: f64, max: f64) -> Result<(), InvalidEvent> {
        if !(min..=max).contains(&value) {
            return Err(self.invalid(
                name,
                format!("`{name}` must be between {min} and {max}, found {value}"),
            ));
        }
        Ok(())
    }

    fn req_duration(&self) -> Result<f64, InvalidEvent> {
        let duration = self.req_number(col::DURATION)?;
        if !(duration > 0.0 && duration <= 86_400.0) {
            return Err(self.invalid(
                col::DURATION,
                format!(
                    "`duration` must be above 0 and at most 86400 seconds (a day), found \
                     {duration}"
                ),
            ));
        }
        Ok(duration)
    }

    fn req_str(&self, name: &str) -> Result<String, InvalidEvent> {
        let value = self.required(name)?;
        match value {
            Val::String(s) => Ok(s.as_ref().to_owned()),
            _ => Err(self.wrong_type(name, "a string", value)),
        }
    }

    fn req_nonempty(&self, name: &str) -> Result<String, InvalidEvent> {
        let s = self.req_str(name)?;
        if s.trim().is_empty() {
            return Err(self.invalid(name, format!("`{name}` must not be empty")));
        }
        Ok(s)
    }

    fn opt_str(&self, name: &str) -> Result<Option<String>, InvalidEvent> {
        if !self.present(name) {
            return Ok(None);
        }
        self.req_str(name).map(Some)
    }

    fn req_enum(&self, name: &str, allowed: &[&str]) -> Result<String, InvalidEvent> {
        let s = self.req_str(name)?;
        if !allowed.contains(&s.as_str()) {
            let list = allowed
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(self.invalid(
                name,
                format!(
                    "`{name}` must be one of {list}, found {}",
                    describe(&Val::String(Cow::Owned(s)))
                ),
            ));
        }
        Ok(s)
    }

    fn req_auth(&self) -> Result<String, InvalidEvent> {
        self.req_enum(
            col::AUTH,
            &["Logged In", "Logged Out", "Guest", "Cancelled"],
        )
    }

    fn req_bool(&self, name: &str) -> Result<bool, InvalidEvent> {
        let value = self.required(name)?;
        match value {
            Val::Bool(b) => Ok(*b),
            _ => Err(self.wrong_type(name, "a boolean", value)),
        }
    }

    /// `zip`: a string, or a non-negative integer kept as its digits.
    fn req_zip(&self) -> Result<String, InvalidEvent> {
        let value = self.required(col::ZIP)?;
        match value {
            Val::String(s) => Ok(s.as_ref().to_owned()),
            Val::Number(n) if n.as_u64().is_some() => Ok(n.to_string()),
            _ => Err(self.wrong_type(col::ZIP, "a string (or a non-negative integer)", value)),
        }
    }

    /// `userId`: absent, null or `""` for guests; else a positive integer, or a string of its
    /// digits.
    fn opt_user_id(&self) -> Result<Option<i64>, InvalidEvent> {
        let name = col::USER_ID;
        let expected = "a positive integer (or a string of its digits; absent or \"\" for guests)";
        let id = match self.map.get(name) {
            None | Some(Val::Null) => return Ok(None),
            Some(Val::String(s)) if s.is_empty() => return Ok(None),
            Some(Val::String(s)) if s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse::<i64>()
                .map_err(|_| self.invalid(name, format!("`{name}` {s} is out of range")))?,
            Some(value @ Val::Number(_)) => self.integer(name, value, expected)?,
            Some(value) => return Err(self.wrong_type(name, expected, value)),
        };
        if id <= 0 {
            return Err(self.invalid(name, format!("`{name}` must be positive, found {id}")));
        }
        Ok(Some(id))
    }
}

/// A JSON value in an error message: its type, and the value itself when short.
fn describe(value: &Val<'_>) -> String {
    let value = value.to_value();
    let kind = match &value {
        Value::Null => return "null".to_owned(),
        Value::Bool(b) => return format!("boolean {b}"),
        Value::Number(n) => return format!("number {n}"),
        Value::String(_) => "string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let text = value.to_string();
    if text.chars().count() <= 60 {
        format!("{kind} {text}")
    } else {
        let short: String = text.chars().take(57).collect();
        format!("{kind} {short}...")
    }
}

// The input, parsed without copying: the fields an event can have, each in its own slot, its
// string borrowed from the input unless it holds escapes; other fields are skipped unread.
// `serde_json::Value` would allocate every key and string and keep them in a map, and a list of
// fields would be searched for each of the twenty-odd names; this is the hot path of the
// streaming workers. A field given twice counts with its last value, as in `Value`.

/// The top-level JSON value: the object an event is, or anything else (for the message).
#[allow(
    clippy::large_enum_variant,
    reason = "one value on the stack per decoded event; a box would be an allocation per event"
)]
enum Top<'a> {
    Object(Fields<'a>),
    Other(Value),
}

/// The names an event's fields can have: a field's slot is its place here.
const KNOWN: [&str; 24] = [
    col::TS,
    col::SESSION_ID,
    col::LEVEL,
    col::ITEM_IN_SESSION,
    col::CITY,
    col::ZIP,
    col::STATE,
    col::LAT,
    col::LON,
    col::USER_AGENT,
    col::USER_ID,
    col::FIRST_NAME,
    col::LAST_NAME,
    col::GENDER,
    col::REGISTRATION,
    col::AUTH,
    col::ARTIST,
    col::SONG,
    col::DURATION,
    col::PAGE,
    col::METHOD,
    col::STATUS,
    col::SUCCESS,
    col::EVENT_ID,
];

/// The slot of the field `name`, or `None` for a field no topic knows.
fn slot(name: &str) -> Option<usize> {
    Some(match name {
        col::TS => 0,
        col::SESSION_ID => 1,
        col::LEVEL => 2,
        col::ITEM_IN_SESSION => 3,
        col::CITY => 4,
        col::ZIP => 5,
        col::STATE => 6,
        col::LAT => 7,
        col::LON => 8,
        col::USER_AGENT => 9,
        col::USER_ID => 10,
        col::FIRST_NAME => 11,
        col::LAST_NAME => 12,
        col::GENDER => 13,
        col::REGISTRATION => 14,
        col::AUTH => 15,
        col::ARTIST => 16,
        col::SONG => 17,
        col::DURATION => 18,
        col::PAGE => 19,
        col::METHOD => 20,
        col::STATUS => 21,
        col::SUCCESS => 22,
        col::EVENT_ID => 23,
        _ => return None,
    })
}

/// A JSON object's known fields, each in its slot.
struct Fields<'a>([Option<Val<'a>>; KNOWN.len()]);

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&Val<'a>> {
        slot(name).and_then(|i| self.0[i].as_ref())
    }
}

/// A field's value: scalars as they are, arrays and objects (never valid here) as a `Value`.
enum Val<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Other(Value),
}

impl Val<'_> {
    fn to_value(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Number(n) => Value::Number(n.clone()),
            Val::String(s) => Value::String(s.as_ref().to_owned()),
            Val::Other(v) => v.clone(),
        }
    }
}

/// A key read as the slot of its field (`None` for a field no topic knows), without copying it.
struct Key(Option<usize>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(slot(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Visits any JSON value into a `Val` (`scalar`) or, at the top, a `Top`.
struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Val<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Val<'de>, E> {
        Ok(Val::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val<'de>, E> {
        Ok(Val::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val<'de>, E> {
        Ok(Val::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val<'de>, E> {
        Ok(Number::from_f64(v).map_or(Val::Null, Val::Number))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::String(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Val<'de>, E> {
        Ok(Val::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Val<'de>, E> {
        Ok(Val::String(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Val<'de>, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Val::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Val<'de>, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Val::Other)
    }
}

impl<'de> Deserialize<'de> for Val<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopVisitor;
        impl<'de> Visitor<'de> for TopVisitor {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut fields = Fields(std::array::from_fn(|_| None));
                while let Some(Key(slot)) = map.next_key::<Key>()? {
                    match slot {
                        Some(i) => fields.0[i] = Some(map.next_value::<Val<'de>>()?),
                        None => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Top::Object(fields))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Top<'de>, E> {
                Ok(Top::Other(Value::Null))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Top<'de>, E> {
                Ok(Top::Other(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Top<'de>, E> {
                Ok(Top::Other(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Top<'de>, E> {
                Ok(Top::Other(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Top<'de>, E> {
                Ok(Top::Other(
                    Number::from_f64(v).map_or(Value::Null, Value::Number),
                ))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Top<'de>, E> {
                Ok(Top::Other(Value::String(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top<'de>, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Top::Other)
            }
        }
        deserializer.deserialize_any(TopVisitor)
    }
}

/// Milliseconds since the epoch as an ISO time, or a note that it is out of range.
fn show_ms(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "out of range".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-11-22T10:15:00Z.
    const TS: i64 = 1_795_342_500_000;

    #[test]
    fn each_known_field_has_its_own_slot() {
        for (i, name) in KNOWN.iter().enumerate() {
            assert_eq!(slot(name), Some(i), "{name}");
        }
        assert_eq!(slot("tag"), None);
    }

    fn base(user: bool) -> Value {
        let mut v = json!({
            "ts": TS,
            "sessionId": 1042,
            "level": "paid",
            "itemInSession": 7,
            "city": "Tampa",
            "zip": "33614",
            "state": "FL",
            "lat": 28.0109,
            "lon": -82.4948,
            "userAgent": "Mozilla/5.0 (Windows NT 6.1; WOW64)",
        });
        if user {
            let m = v.as_object_mut().unwrap();
            m.insert("userId".into(), json!(1234));
            m.insert("firstName".into(), json!("Ada"));
            m.insert("lastName".into(), json!("Lovelace"));
            m.insert("gender".into(), json!("F"));
            m.insert("registration".into(), json!(1_760_000_000_000_i64));
        }
        v
    }

    fn with(mut v: Value, fields: Value) -> Value {
        for (k, val) in fields.as_object().unwrap() {
            v.as_object_mut().unwrap().insert(k.clone(), val.clone());
        }
        v
    }

    fn without(mut v: Value, field: &str) -> Value {
        v.as_object_mut().unwrap().remove(field);
        v
    }

    fn listen(user: bool) -> Value {
        with(
            base(user),
            json!({"auth": if user {"Logged In"} else {"Guest"}, "artist": "Kings of Leon",
                   "song": "Use Somebody", "duration": 230.81}),
        )
    }

    fn ok(topic: Topic, v: &Value) -> Event {
        decode(topic, v.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{topic} {v}: {}", e.reason))
    }

    fn err(topic: Topic, v: &Value) -> InvalidEvent {
        decode(topic, v.to_string().as_bytes()).expect_err(&v.to_string())
    }

    fn assert_err(topic: Topic, v: Value, field: &str, reason: &str) {
        let e = err(topic, &v);
        assert_eq!(e.field.as_deref(), Some(field), "{}", e.reason);
        assert_eq!(e.reason, reason);
    }

    #[test]
    fn listen_events_of_users_and_guests() {
        let e = ok(Topic::ListenEvents, &listen(true));
        assert_eq!(e.ts, TS);
        assert_eq!(e.hour().to_string(), "2026-11-22-10:00");
        assert_eq!(e.session_id, 1042);
        assert_eq!(e.level, "paid");
        assert_eq!(e.item_in_session, 7);
        assert_eq!(
            (e.city.as_str(), e.zip.as_str(), e.state.as_str()),
            ("Tampa", "33614", "FL")
        );
        assert_eq!((e.lat, e.lon), (28.0109, -82.4948));
        assert_eq!(
            e.user,
            Some(User {
                user_id: 1234,
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                gender: "F".into(),
                registration: 1_760_000_000_000,
            })
        );
        assert_eq!(e.event_id, None);
        assert_eq!(
            e.payload,
            Payload::Listen {
                auth: "Logged In".into(),
                song: Song {
                    artist: "Kings of Leon".into(),
                    song: "Use Somebody".into(),
                    duration: 230.81
                }
            }
        );
        let guest = ok(Topic::ListenEvents, &listen(false));
        assert_eq!(guest.user, None);
        // eventsim's file output writes an empty userId for guests; nulls count as absent.
        let g = ok(
            Topic::ListenEvents,
            &with(listen(false), json!({"userId": ""})),
        );
        assert_eq!(g.user, None);
        let g = ok(
            Topic::ListenEvents,
            &with(listen(false), json!({"userId": null, "firstName": null})),
        );
        assert_eq!(g.user, None);
    }

    #[test]
    fn page_view_auth_and_status_change_events() {
        let page = with(
            base(true),
            json!({"page": "Home", "auth": "Logged In", "method": "GET", "status": 200}),
        );
        let e = ok(Topic::PageViewEvents, &page);
        assert_eq!(
            e.payload,
            Payload::PageView {
                page: "Home".into(),
                auth: "Logged In".into(),
                method: "GET".into(),
                status: 200,
                song: None
            }
        );
        let next_song = with(
            page.clone(),
            json!({"page": "NextSong", "method": "PUT", "artist": "A", "song": "S",
                   "duration": 100.5}),
        );
        let Payload::PageView { song, .. } = ok(Topic::PageViewEvents, &next_song).payload else {
            panic!("not a page view")
        };
        assert_eq!(song.unwrap().duration, 100.5);
        let guest_page = with(
            base(false),
            json!({"page": "Login", "auth": "Logged Out", "method": "GET", "status": 307}),
        );
        assert_eq!(ok(Topic::PageViewEvents, &guest_page).user, None);

        let auth = with(base(true), json!({"success": true}));
        assert_eq!(
            ok(Topic::AuthEvents, &auth).payload,
            Payload::Auth { success: true }
        );
        let failed = with(base(false), json!({"success": false}));
        let e = ok(Topic::AuthEvents, &failed);
        assert_eq!(
            (e.payload, e.user),
            (Payload::Auth { success: false }, None)
        );

        let change = with(base(true), json!({"auth": "Logged In", "level": "free"}));
        let e = ok(Topic::StatusChangeEvents, &change);
        assert_eq!(e.level, "free");
        assert_eq!(
            e.payload,
            Payload::StatusChange {
                auth: "Logged In".into()
            }
        );
    }

    #[test]
    fn leniencies() {
        // zip as a number, userId as digits, event ids, unknown fields, whitespace.
        let v = with(
            listen(true),
            json!({"zip": 2134, "userId": "77", "_event_id": "es-1-000042", "tag": "x"}),
        );
        let text = format!("  \n{v}\n");
        let e = decode(Topic::ListenEvents, text.as_bytes()).unwrap();
        assert_eq!(e.zip, "2134");
        assert_eq!(e.user.unwrap().user_id, 77);
        assert_eq!(e.event_id.as_deref(), Some("es-1-000042"));
        // Integers are numbers too.
        let e = ok(
            Topic::ListenEvents,
            &with(listen(true), json!({"duration": 200, "lat": 0})),
        );
        assert_eq!((e.lat, e.payload.clone()), (0.0, e.payload));
    }

    #[test]
    fn malformed_input() {
        for (input, reason) in [
            (&b""[..], "empty message: expected a JSON object"),
            (b"  \n", "empty message: expected a JSON object"),
            (
                b"{\"ts\": 1",
                "malformed JSON: the input ends early (EOF while parsing an object at line 1 \
                 column 8)",
            ),
            (
                b"{ts: 1}",
                "malformed JSON: key must be a string at line 1 column 2",
            ),
            (
                b"{\"ts\": 1} {}",
                "malformed JSON: trailing characters at line 1 column 11",
            ),
            (b"[1, 2]", "expected a JSON object, found an array [1,2]"),
            (
                b"\"hello\"",
                "expected a JSON object, found string \"hello\"",
            ),
            (b"42", "expected a JSON object, found number 42"),
            (b"null", "expected a JSON object, found null"),
        ] {
            let e = decode(Topic::ListenEvents, input).unwrap_err();
            assert_eq!(e.reason, reason, "{}", String::from_utf8_lossy(input));
            assert_eq!((e.field, e.ts), (None, None));
        }
        let e = decode(Topic::ListenEvents, b"{\"ts\": \"\xff\"}").unwrap_err();
        assert!(
            e.reason
                .starts_with("malformed JSON: the input is not valid UTF-8"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn missing_and_null_fields() {
        for field in [
            "ts",
            "sessionId",
            "level",
            "itemInSession",
            "city",
            "zip",
            "state",
            "lat",
            "lon",
            "userAgent",
            "auth",
            "artist",
            "song",
            "duration",
        ] {
            let e = err(Topic::ListenEvents, &without(listen(true), field));
            assert_eq!(e.field.as_deref(), Some(field));
            assert_eq!(e.reason, format!("missing required field `{field}`"));
            let e = err(
                Topic::ListenEvents,
                &with(listen(true), json!({ field: null })),
            );
            assert_eq!(e.reason, format!("`{field}` must not be null"));
        }
        let page = with(
            base(false),
            json!({"page": "Home", "auth": "Guest", "method": "GET", "status": 200}),
        );
        for field in ["page", "method", "status"] {
            assert_err(
                Topic::PageViewEvents,
                without(page.clone(), field),
                field,
                &format!("missing required field `{field}`"),
            );
        }
        assert_err(
            Topic::AuthEvents,
            base(false),
            "success",
            "missing required field `success`",
        );
        assert_err(
            Topic::StatusChangeEvents,
            base(true),
            "auth",
            "missing required field `auth`",
        );
        // Once `ts` is known, failures carry it.
        let e = err(Topic::ListenEvents, &without(listen(true), "song"));
        assert_eq!(e.ts, Some(TS));
        assert_eq!(
            err(Topic::ListenEvents, &without(listen(true), "ts")).ts,
            None
        );
    }

    #[test]
    fn wrong_types() {
        let cases = [
            (
                json!({"ts": "1795342500000"}),
                "ts",
                "`ts` must be an integer (milliseconds since the epoch), found string \
                 \"1795342500000\"",
            ),
            (
                json!({"ts": 1.7953425e12}),
                "ts",
                "`ts` must be an integer (milliseconds since the epoch), found number \
                 1795342500000.0",
            ),
            (
                json!({"sessionId": 1.5}),
                "sessionId",
                "`sessionId` must be an integer, found number 1.5",
            ),
            (
                json!({"sessionId": 18446744073709551615_u64}),
                "sessionId",
                "`sessionId` 18446744073709551615 is out of range (at most 9223372036854775807)",
            ),
            (
                json!({"itemInSession": "7"}),
                "itemInSession",
                "`itemInSession` must be an integer, found string \"7\"",
            ),
            (
                json!({"city": 12}),
                "city",
                "`city` must be a string, found number 12",
            ),
            (
                json!({"zip": -1}),
                "zip",
                "`zip` must be a string (or a non-negative integer), found number -1",
            ),
            (
                json!({"lat": "28.0"}),
                "lat",
                "`lat` must be a number, found string \"28.0\"",
            ),
            (
                json!({"userAgent": ["a"]}),
                "userAgent",
                "`userAgent` must be a string, found an array [\"a\"]",
            ),
            (
                json!({"userId": true}),
                "userId",
                "`userId` must be a positive integer (or a string of its digits; absent or \"\" \
                 for guests), found boolean true",
            ),
            (
                json!({"userId": "u123"}),
                "userId",
                "`userId` must be a positive integer (or a string of its digits; absent or \"\" \
                 for guests), found string \"u123\"",
            ),
            (
                json!({"registration": "2025"}),
                "registration",
                "`registration` must be an integer, found string \"2025\"",
            ),
            (
                json!({"duration": "230"}),
                "duration",
                "`duration` must be a number, found string \"230\"",
            ),
            (
                json!({"artist": {"name": "x"}}),
                "artist",
                "`artist` must be a string, found an object {\"name\":\"x\"}",
            ),
        ];
        for (fields, field, reason) in cases {
            assert_err(
                Topic::ListenEvents,
                with(listen(true), fields),
                field,
                reason,
            );
        }
        assert_err(
            Topic::AuthEvents,
            with(base(true), json!({"success": "true"})),
            "success",
            "`success` must be a boolean, found string \"true\"",
        );
        assert_err(
            Topic::PageViewEvents,
            with(
                base(true),
                json!({"page": "Home", "auth": "Logged In", "method": "GET", "status": "200"}),
            ),
            "status",
            "`status` must be an integer, found string \"200\"",
        );
        let long = "x".repeat(100);
        let e = err(
            Topic::ListenEvents,
            &with(listen(true), json!({ "city": [long] })),
        );
        assert!(e.reason.ends_with("xxx..."), "{}", e.reason);
    }

    #[test]
    fn out_of_range_values() {
        let cases = [
            (
                json!({"ts": 1_795_342_500}),
                "ts",
                "`ts` 1795342500 (1970-01-21T18:42:22.500Z) is outside the plausible window \
                 2000-01-01T00:00:00Z to 2100-01-01T00:00:00Z (milliseconds since the epoch \
                 expected)",
            ),
            (
                json!({"ts": 4_102_444_800_000_i64}),
                "ts",
                "`ts` 4102444800000 (2100-01-01T00:00:00.000Z) is outside the plausible window \
                 2000-01-01T00:00:00Z to 2100-01-01T00:00:00Z (milliseconds since the epoch \
                 expected)",
            ),
            (
                json!({"ts": i64::MIN}),
                "ts",
                "`ts` -9223372036854775808 (out of range) is outside the plausible window \
                 2000-01-01T00:00:00Z to 2100-01-01T00:00:00Z (milliseconds since the epoch \
                 expected)",
            ),
            (
                json!({"duration": -3.5}),
                "duration",
                "`duration` must be above 0 and at most 86400 seconds (a day), found -3.5",
            ),
            (
                json!({"duration": 0}),
                "duration",
                "`duration` must be above 0 and at most 86400 seconds (a day), found 0",
            ),
            (
                json!({"duration": 86_400.5}),
                "duration",
                "`duration` must be above 0 and at most 86400 seconds (a day), found 86400.5",
            ),
            (
                json!({"sessionId": -1}),
                "sessionId",
                "`sessionId` must not be below 0, found -1",
            ),
            (
                json!({"itemInSession": -2}),
                "itemInSession",
                "`itemInSession` must not be below 0, found -2",
            ),
            (
                json!({"itemInSession": 3_000_000_000_i64}),
                "itemInSession",
                "`itemInSession` 3000000000 is out of range (at most 2147483647)",
            ),
            (
                json!({"lat": 91.0}),
                "lat",
                "`lat` must be between -90 and 90, found 91",
            ),
            (
                json!({"lon": -180.5}),
                "lon",
                "`lon` must be between -180 and 180, found -180.5",
            ),
            (
                json!({"level": "gold"}),
                "level",
                "`level` must be one of \"free\", \"paid\", found string \"gold\"",
            ),
            (
                json!({"auth": "logged in"}),
                "auth",
                "`auth` must be one of \"Logged In\", \"Logged Out\", \"Guest\", \"Cancelled\", \
                 found string \"logged in\"",
            ),
            (
                json!({"gender": "female"}),
                "gender",
                "`gender` must be one of \"M\", \"F\", found string \"female\"",
            ),
            (
                json!({"userId": 0}),
                "userId",
                "`userId` must be positive, found 0",
            ),
            (
                json!({"userId": "99999999999999999999"}),
                "userId",
                "`userId` 99999999999999999999 is out of range",
            ),
            (
                json!({"registration": TS + 1}),
                "registration",
                "`registration` 1795342500001 (2026-11-22T10:15:00.001Z) must be between the \
                 epoch and the event's `ts` 1795342500000 (2026-11-22T10:15:00.000Z)",
            ),
            (
                json!({"artist": "  "}),
                "artist",
                "`artist` must not be empty",
            ),
            (
                json!({"_event_id": ""}),
                "_event_id",
                "`_event_id` must be a non-empty string of at most 200 characters, found 0 \
                 characters",
            ),
        ];
        for (fields, field, reason) in cases {
            assert_err(
                Topic::ListenEvents,
                with(listen(true), fields),
                field,
                reason,
            );
        }
        let page = with(
            base(true),
            json!({"page": "Home", "auth": "Logged In", "method": "GET", "status": 200}),
        );
        assert_err(
            Topic::PageViewEvents,
            with(page.clone(), json!({"status": 99})),
            "status",
            "`status` must be an HTTP status (100..=599), found 99",
        );
        assert_err(
            Topic::PageViewEvents,
            with(page.clone(), json!({"method": "FETCH"})),
            "method",
            "`method` must be one of \"GET\", \"PUT\", \"POST\", \"DELETE\", \"PATCH\", \
             \"HEAD\", found string \"FETCH\"",
        );
        assert_err(
            Topic::PageViewEvents,
            with(page, json!({"artist": "A", "song": "S"})),
            "duration",
            "`duration` is missing although the page view names a song: artist, song and \
             duration come together",
        );
    }

    #[test]
    fn user_fields_come_together() {
        assert_err(
            Topic::ListenEvents,
            without(listen(true), "lastName"),
            "lastName",
            "`lastName` is missing although `userId` is set: a logged-in user's event has all \
             of userId, firstName, lastName, gender and registration",
        );
        assert_err(
            Topic::ListenEvents,
            without(listen(true), "userId"),
            "firstName",
            "`firstName` is set but `userId` is missing: a guest's event has no user fields, a \
             logged-in user's has all of userId, firstName, lastName, gender and registration",
        );
        assert_err(
            Topic::AuthEvents,
            with(base(false), json!({"success": false, "registration": 1})),
            "registration",
            "`registration` is set but `userId` is missing: a guest's event has no user \
             fields, a logged-in user's has all of userId, firstName, lastName, gender and \
             registration",
        );
    }

    #[test]
    fn custom_window() {
        let validation = Validation {
            ts_min: Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap(),
            ts_max: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
        };
        let e = decode_with(
            Topic::ListenEvents,
            listen(true).to_string().as_bytes(),
            &validation,
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ts"));
        assert!(
            e.reason.contains(
                "outside the plausible window 2026-11-22T00:00:00Z to 2026-11-22T10:00:00Z"
            ),
            "{}",
            e.reason
        );
        assert_eq!(e.ts, None);
    }
}
