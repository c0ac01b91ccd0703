//! The four topics of eventsim's Kafka fork and their JSON, field for field.
//!
//! Every event carries `ts` (epoch milliseconds), `sessionId`, `level`, `itemInSession`, the
//! device's `city`, `zip`, `state`, `lat`, `lon` and `userAgent`, and, when the visitor is
//! logged in (or has just cancelled), the user's `userId`, `firstName`, `lastName`, `gender`
//! and `registration` (epoch milliseconds). Guests and logged-out visitors have no user
//! fields at all: the fork leaves them out rather than writing them empty. Per topic:
//!
//! - `listen_events`: `artist`, `song`, `duration`, and `auth`; one per `NextSong` page.
//! - `page_view_events`: `page`, `method`, `status`, `auth`, and on `NextSong` pages the
//!   song's `artist`, `song` and `duration`; one per request.
//! - `auth_events`: `success` (and no `auth`); one per `Login`, which succeeds unless the
//!   next page is an error.
//! - `status_change_events`: `auth`; one per `Submit Upgrade` and `Submit Downgrade` page,
//!   with the level *before* the change as eventsim writes it (the user's next event has the
//!   new one), and one per `Cancellation Confirmation` (`auth` `Cancelled`).
//!
//! The event id is not part of the JSON (eventsim has none): it travels beside it, as the
//! Kafka record key or a column of the lake, so that downstream can drop duplicates.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::site::{Auth, Level, Method, Page};
use crate::tables::Gender;

/// One of the four topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    ListenEvents,
    PageViewEvents,
    AuthEvents,
    StatusChangeEvents,
}

impl Topic {
    pub const ALL: [Topic; 4] = [
        Topic::ListenEvents,
        Topic::PageViewEvents,
        Topic::AuthEvents,
        Topic::StatusChangeEvents,
    ];

    /// The topic's name, which is also the Kafka topic's and the lake folder's.
    pub fn name(self) -> &'static str {
        match self {
            Topic::ListenEvents => "listen_events",
            Topic::PageViewEvents => "page_view_events",
            Topic::AuthEvents => "auth_events",
            Topic::StatusChangeEvents => "status_change_events",
        }
    }

    /// Position in [`Topic::ALL`], for per-topic arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The JSON keys an event of this topic may have; the user's fields are among them and
    /// are absent for anonymous visitors, as are a page view's song fields off `NextSong`.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Topic::ListenEvents => &[
                "artist",
                "song",
                "duration",
                "ts",
                "sessionId",
                "auth",
                "level",
                "itemInSession",
                "city",
                "zip",
                "state",
                "userAgent",
                "lon",
                "lat",
                "userId",
                "lastName",
                "firstName",
                "gender",
                "registration",
            ],
            Topic::PageViewEvents => &[
                "ts",
                "sessionId",
                "page",
                "auth",
                "method",
                "status",
                "level",
                "itemInSession",
                "city",
                "zip",
                "state",
                "userAgent",
                "lon",
                "lat",
                "userId",
                "lastName",
                "firstName",
                "gender",
                "registration",
                "artist",
                "song",
                "duration",
            ],
            Topic::AuthEvents => &[
                "ts",
                "sessionId",
                "level",
                "itemInSession",
                "city",
                "zip",
                "state",
                "userAgent",
                "lon",
                "lat",
                "userId",
                "lastName",
                "firstName",
                "gender",
                "registration",
                "success",
            ],
            Topic::StatusChangeEvents => &[
                "ts",
                "sessionId",
                "auth",
                "level",
                "itemInSession",
                "city",
                "zip",
                "state",
                "userAgent",
                "lon",
                "lat",
                "userId",
                "lastName",
                "firstName",
                "gender",
                "registration",
            ],
        }
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Topic {
    type Err = String;

    fn from_str(s: &str) -> Result<Topic, String> {
        Topic::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown topic {s:?}"))
    }
}

/// A stable, unique id of an event: a 128-bit hash of the run (seed and start), the user,
/// their session, the item in the session and the topic. The same run writes the same ids;
/// shown as a UUID (version 8, "custom").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u128);

impl EventId {
    pub(crate) fn from_halves(high: u64, low: u64) -> EventId {
        let mut v = (u128::from(high) << 64) | u128::from(low);
        // Version 8 and the RFC 4122 variant, so that it reads as a valid UUID.
        v = (v & !(0xF << 76)) | (0x8 << 76);
        v = (v & !(0x3 << 62)) | (0x2 << 62);
        EventId(v)
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xFFFF_FFFF_FFFF
        )
    }
}

/// A song play (`listen_events`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenEvent {
    pub artist: Arc<str>,
    pub song: Arc<str>,
    pub duration: f64,
    pub ts: i64,
    pub session_id: u64,
    pub auth: Auth,
    pub level: Level,
    pub item_in_session: u32,
    pub city: Arc<str>,
    pub zip: Arc<str>,
    pub state: Arc<str>,
    pub user_agent: Arc<str>,
    pub lon: f64,
    pub lat: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<i64>,
    /// Not in the JSON: see [`Event::event_id`].
    #[serde(skip)]
    pub event_id: EventId,
}

/// A request for a page (`page_view_events`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageViewEvent {
    pub ts: i64,
    pub session_id: u64,
    pub page: Page,
    pub auth: Auth,
    pub method: Method,
    pub status: u16,
    pub level: Level,
    pub item_in_session: u32,
    pub city: Arc<str>,
    pub zip: Arc<str>,
    pub state: Arc<str>,
    pub user_agent: Arc<str>,
    pub lon: f64,
    pub lat: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artist: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub song: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Not in the JSON: see [`Event::event_id`].
    #[serde(skip)]
    pub event_id: EventId,
}

/// A login attempt (`auth_events`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthEvent {
    pub ts: i64,
    pub session_id: u64,
    pub level: Level,
    pub item_in_session: u32,
    pub city: Arc<str>,
    pub zip: Arc<str>,
    pub state: Arc<str>,
    pub user_agent: Arc<str>,
    pub lon: f64,
    pub lat: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<i64>,
    pub success: bool,
    /// Not in the JSON: see [`Event::event_id`].
    #[serde(skip)]
    pub event_id: EventId,
}

/// An upgrade, a downgrade or a cancellation (`status_change_events`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusChangeEvent {
    pub ts: i64,
    pub session_id: u64,
    pub auth: Auth,
    pub level: Level,
    pub item_in_session: u32,
    pub city: Arc<str>,
    pub zip: Arc<str>,
    pub state: Arc<str>,
    pub user_agent: Arc<str>,
    pub lon: f64,
    pub lat: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<i64>,
    /// Not in the JSON: see [`Event::event_id`].
    #[serde(skip)]
    pub event_id: EventId,
}

/// An event of one of the four topics. Serializes as its topic's JSON object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    Listen(ListenEvent),
    PageView(PageViewEvent),
    Auth(AuthEvent),
    StatusChange(StatusChangeEvent),
}

macro_rules! common {
    ($self:ident, $e:ident => $field:expr) => {
        match $self {
            Event::Listen($e) => $field,
            Event::PageView($e) => $field,
            Event::Auth($e) => $field,
            Event::StatusChange($e) => $field,
        }
    };
}

impl Event {
    pub fn topic(&self) -> Topic {
        match self {
            Event::Listen(_) => Topic::ListenEvents,
            Event::PageView(_) => Topic::PageViewEvents,
            Event::Auth(_) => Topic::AuthEvents,
            Event::StatusChange(_) => Topic::StatusChangeEvents,
        }
    }

    /// Event time, epoch milliseconds (UTC).
    pub fn ts(&self) -> i64 {
        common!(self, e => e.ts)
    }

    /// The event's stable, unique id. Set on generated events; an event parsed from JSON has
    /// none (the default, all zeros) until its reader sets the field from where the id
    /// travelled (the Kafka key, the lake column).
    pub fn event_id(&self) -> EventId {
        common!(self, e => e.event_id)
    }

    pub fn session_id(&self) -> u64 {
        common!(self, e => e.session_id)
    }

    pub fn item_in_session(&self) -> u32 {
        common!(self, e => e.item_in_session)
    }

    pub fn level(&self) -> Level {
        common!(self, e => e.level)
    }

    /// The user's id; `None` for guests and logged-out visitors.
    pub fn user_id(&self) -> Option<u64> {
        common!(self, e => e.user_id)
    }

    /// The visitor's auth; auth events have none in their JSON, and are `Logged In` when the
    /// login succeeded and `Logged Out` when it failed.
    pub fn auth(&self) -> Auth {
        match self {
            Event::Listen(e) => e.auth,
            Event::PageView(e) => e.auth,
            Event::Auth(e) if e.success => Auth::LoggedIn,
            Event::Auth(_) => Auth::LoggedOut,
            Event::StatusChange(e) => e.auth,
        }
    }

    /// Appends the event's JSON (one line, no newline) to `buf`.
    pub fn write_json(&self, buf: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(buf, self)
    }

    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no I/O.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one event of `topic` from its JSON. Its [`Event::event_id`] is unset.
    pub fn from_json(topic: Topic, json: &str) -> Result<Event, serde_json::Error> {
        Ok(match topic {
            Topic::ListenEvents => Event::Listen(serde_json::from_str(json)?),
            Topic::PageViewEvents => Event::PageView(serde_json::from_str(json)?),
            Topic::AuthEvents => Event::Auth(serde_json::from_str(json)?),
            Topic::StatusChangeEvents => Event::StatusChange(serde_json::from_str(json)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_read_as_version_8_uuids() {
        let id = EventId::from_halves(u64::MAX, u64::MAX).to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "8");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_eq!(
            EventId::from_halves(0, 0).to_string(),
            "00000000-0000-8000-8000-000000000000"
        );
    }

    #[test]
    fn topics_have_their_names() {
        for topic in Topic::ALL {
            assert_eq!(topic.name().parse::<Topic>(), Ok(topic));
            assert_eq!(Topic::ALL[topic.index()], topic);
        }
        assert!("clicks".parse::<Topic>().is_err());
    }
}
