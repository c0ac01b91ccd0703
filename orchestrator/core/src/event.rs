//! The event log's vocabulary: what happened in a run, to which step, asset and partition.
//!
//! Events are the source of truth for a run's history; the storage derives the latest
//! materialization per asset partition and the check results from them, in the same
//! transaction that appends them.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::asset::{AssetKey, Severity};
use crate::metadata::Metadata;
use crate::run::{RunId, RunStatus};

/// The kinds of events, named as in Dagster's event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    RunEnqueued,
    RunStarting,
    RunStart,
    RunSuccess,
    RunFailure,
    RunCanceling,
    RunCanceled,
    StepStart,
    StepSuccess,
    StepFailure,
    StepUpForRetry,
    StepSkipped,
    StepCanceled,
    AssetMaterialization,
    AssetFailed,
    AssetCheckEvaluation,
    EngineEvent,
}

impl EventKind {
    pub const ALL: [EventKind; 17] = [
        EventKind::RunEnqueued,
        EventKind::RunStarting,
        EventKind::RunStart,
        EventKind::RunSuccess,
        EventKind::RunFailure,
        EventKind::RunCanceling,
        EventKind::RunCanceled,
        EventKind::StepStart,
        EventKind::StepSuccess,
        EventKind::StepFailure,
        EventKind::StepUpForRetry,
        EventKind::StepSkipped,
        EventKind::StepCanceled,
        EventKind::AssetMaterialization,
        EventKind::AssetFailed,
        EventKind::AssetCheckEvaluation,
        EventKind::EngineEvent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunEnqueued => "RUN_ENQUEUED",
            EventKind::RunStarting => "RUN_STARTING",
            EventKind::RunStart => "RUN_START",
            EventKind::RunSuccess => "RUN_SUCCESS",
            EventKind::RunFailure => "RUN_FAILURE",
            EventKind::RunCanceling => "RUN_CANCELING",
            EventKind::RunCanceled => "RUN_CANCELED",
            EventKind::StepStart => "STEP_START",
            EventKind::StepSuccess => "STEP_SUCCESS",
            EventKind::StepFailure => "STEP_FAILURE",
            EventKind::StepUpForRetry => "STEP_UP_FOR_RETRY",
            EventKind::StepSkipped => "STEP_SKIPPED",
            EventKind::StepCanceled => "STEP_CANCELED",
            EventKind::AssetMaterialization => "ASSET_MATERIALIZATION",
            EventKind::AssetFailed => "ASSET_FAILED",
            EventKind::AssetCheckEvaluation => "ASSET_CHECK_EVALUATION",
            EventKind::EngineEvent => "ENGINE_EVENT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The event that records a run entering `status`.
    pub fn for_run_status(status: RunStatus) -> EventKind {
        match status {
            RunStatus::Queued => EventKind::RunEnqueued,
            RunStatus::Starting => EventKind::RunStarting,
            RunStatus::Started => EventKind::RunStart,
            RunStatus::Success => EventKind::RunSuccess,
            RunStatus::Failure => EventKind::RunFailure,
            RunStatus::Canceling => EventKind::RunCanceling,
            RunStatus::Canceled => EventKind::RunCanceled,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as recorded in the event log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub message: String,
    /// The chain of causes, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
}

/// What an event says, beyond its kind and coordinates. Stored as the event's JSON body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// The step's attempt number, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// For STEP_UP_FOR_RETRY: the wait before the next attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay_ms: Option<u64>,
    /// For step and run ends: how long it took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// For ASSET_MATERIALIZATION: the code version that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_version: Option<String>,
    /// For ASSET_CHECK_EVALUATION.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckEvaluation>,
    /// For events about a range of partitions, the last key (`partition_key` holds the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key_end: Option<String>,
}

/// A check's outcome, as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckEvaluation {
    pub check_name: String,
    pub passed: bool,
    pub severity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl CheckEvaluation {
    pub fn severity(&self) -> Severity {
        Severity::parse(&self.severity).unwrap_or(Severity::Error)
    }
}

/// An event to append.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub run_id: RunId,
    pub step_key: Option<String>,
    pub asset_key: Option<AssetKey>,
    pub partition_key: Option<String>,
    pub kind: EventKind,
    pub timestamp: DateTime<Utc>,
    pub body: EventBody,
}

impl Event {
    /// A run-level event at `timestamp`.
    pub fn new(run_id: RunId, kind: EventKind, timestamp: DateTime<Utc>) -> Self {
        Event {
            run_id,
            step_key: None,
            asset_key: None,
            partition_key: None,
            kind,
            timestamp,
            body: EventBody::default(),
        }
    }

    pub fn step(mut self, step_key: impl Into<String>) -> Self {
        self.step_key = Some(step_key.into());
        self
    }

    pub fn asset(mut self, asset_key: AssetKey) -> Self {
        self.asset_key = Some(asset_key);
        self
    }

    pub fn partition(mut self, partition_key: Option<String>) -> Self {
        self.partition_key = partition_key;
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.body.message = Some(message.into());
        self
    }

    pub fn body(mut self, body: EventBody) -> Self {
        self.body = body;
        self
    }
}

/// An event as stored, with its position in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Increases with every append, across runs.
    pub id: i64,
    pub event: Event,
}

/// Where a step log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// The context's logger.
    Log,
    /// A child process's standard output.
    Stdout,
    /// A child process's standard error.
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Log => "log",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "log" => Some(LogStream::Log),
            "stdout" => Some(LogStream::Stdout),
            "stderr" => Some(LogStream::Stderr),
            _ => None,
        }
    }
}

/// Severity of a logger line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "DEBUG" => Some(LogLevel::Debug),
            "INFO" => Some(LogLevel::Info),
            "WARN" => Some(LogLevel::Warn),
            "ERROR" => Some(LogLevel::Error),
            _ => None,
        }
    }
}

/// One line of a step's logs: the logger's lines and its child processes' output.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub run_id: RunId,
    pub step_key: String,
    pub stream: LogStream,
    pub level: LogLevel,
    pub timestamp: DateTime<Utc>,
    pub message: String,
}
