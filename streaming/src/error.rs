//! What can go wrong in a streaming worker or producer, said so that an operator can act.

use orch_lake::LakeError;

/// A streaming worker's or producer's failure.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("Kafka client for {brokers}: {source}\n  (check --brokers and that the broker is up)")]
    Kafka {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("invalid Kafka setting `{key}={value}`: {reason}")]
    Setting {
        key: String,
        value: String,
        reason: String,
    },
    #[error(
        "cannot write {topic} partition {partition} offsets {first}..={last} to the lake after {attempts} attempts: {source}\n  (nothing was committed: a restarted worker reads these offsets again)"
    )]
    Lake {
        topic: String,
        partition: i32,
        first: i64,
        last: i64,
        attempts: u32,
        #[source]
        source: Box<LakeError>,
    },
    #[error("{delivered} record(s) delivered, {failed} failed; first failure: {first_error}")]
    Delivery {
        delivered: u64,
        failed: u64,
        first_error: String,
    },
    #[error("metrics endpoint: {0}")]
    Io(#[from] std::io::Error),
    #[error("{what} {message}\n  (a bug: nothing of this batch was committed; please report it)")]
    Task { what: String, message: String },
}

impl StreamError {
    /// A task that panicked or was cancelled, as an error that says what it was doing.
    pub fn task(what: &str, e: tokio::task::JoinError) -> StreamError {
        let message = if e.is_panic() {
            let panic = e.into_panic();
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            format!("panicked: {text}")
        } else {
            "was cancelled".to_owned()
        };
        StreamError::Task {
            what: what.to_owned(),
            message,
        }
    }
}
