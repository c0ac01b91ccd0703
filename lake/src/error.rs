//! The lake's errors. URLs in them are redacted (see [`crate::redact_url`]).

use std::path::PathBuf;

use crate::topic::Topic;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(
        "unknown topic `{0}`: the topics are listen_events, page_view_events, auth_events and \
         status_change_events"
    )]
    UnknownTopic(String),

    #[error("invalid hour `{0}`: expected YYYY-MM-DD-HH:00 (UTC), e.g. 2026-11-22-10:00")]
    InvalidHour(String),

    #[error("invalid lake file name `{name}`: {reason}")]
    InvalidFileName { name: String, reason: String },

    #[error("an event of {event} cannot go into a batch of {batch}")]
    WrongTopic { event: Topic, batch: Topic },

    #[error("cannot write {path}: {detail}")]
    BadBatch { path: String, detail: String },

    #[error("invalid lake URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("cannot create the lake folder {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot open the lake at {url}: {message}")]
    Open { url: String, message: String },

    #[error("cannot {action} {path} in the lake at {lake}: {message}{hint}")]
    Store {
        action: &'static str,
        path: String,
        lake: String,
        message: String,
        /// What to check, for the kind of store (starts with a separator, or is empty).
        hint: &'static str,
    },

    #[error("{path} in the lake at {lake} is not a valid {format} file: {message}")]
    Corrupt {
        path: String,
        lake: String,
        format: &'static str,
        message: String,
    },
}
