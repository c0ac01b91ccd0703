//! Metadata attached to materializations, observations and check results: typed values under
//! string keys, with well-known keys for row count, bytes and duration.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Well-known metadata key: rows written by a materialization.
pub const ROW_COUNT: &str = "row_count";
/// Well-known metadata key: bytes written by a materialization.
pub const BYTES: &str = "bytes";
/// Well-known metadata key: wall-clock duration of the compute, in milliseconds.
pub const DURATION_MS: &str = "duration_ms";

/// A typed metadata value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum MetadataValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Path(String),
    Url(String),
    /// A duration in milliseconds.
    DurationMs(f64),
    Json(serde_json::Value),
}

impl MetadataValue {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            MetadataValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetadataValue::Int(v) => Some(*v as f64),
            MetadataValue::Float(v) | MetadataValue::DurationMs(v) => Some(*v),
            _ => None,
        }
    }
}

impl std::fmt::Display for MetadataValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetadataValue::Int(v) => write!(f, "{v}"),
            MetadataValue::Float(v) => write!(f, "{v}"),
            MetadataValue::Bool(v) => write!(f, "{v}"),
            MetadataValue::Text(v) | MetadataValue::Path(v) | MetadataValue::Url(v) => {
                f.write_str(v)
            }
            MetadataValue::DurationMs(v) => write!(f, "{v:.1}ms"),
            MetadataValue::Json(v) => write!(f, "{v}"),
        }
    }
}

impl From<i64> for MetadataValue {
    fn from(v: i64) -> Self {
        MetadataValue::Int(v)
    }
}
impl From<u64> for MetadataValue {
    fn from(v: u64) -> Self {
        MetadataValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<usize> for MetadataValue {
    fn from(v: usize) -> Self {
        MetadataValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for MetadataValue {
    fn from(v: f64) -> Self {
        MetadataValue::Float(v)
    }
}
impl From<bool> for MetadataValue {
    fn from(v: bool) -> Self {
        MetadataValue::Bool(v)
    }
}
impl From<&str> for MetadataValue {
    fn from(v: &str) -> Self {
        MetadataValue::Text(v.to_owned())
    }
}
impl From<String> for MetadataValue {
    fn from(v: String) -> Self {
        MetadataValue::Text(v)
    }
}
impl From<Duration> for MetadataValue {
    fn from(v: Duration) -> Self {
        MetadataValue::DurationMs(v.as_secs_f64() * 1000.0)
    }
}
impl From<serde_json::Value> for MetadataValue {
    fn from(v: serde_json::Value) -> Self {
        MetadataValue::Json(v)
    }
}

/// Metadata: an ordered map so that it prints and serializes deterministically.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata(pub BTreeMap<String, MetadataValue>);

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<MetadataValue>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<MetadataValue>) -> Self {
        self.insert(key, value);
        self
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.0.get(key)
    }

    pub fn row_count(&self) -> Option<i64> {
        self.get(ROW_COUNT).and_then(MetadataValue::as_i64)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &MetadataValue)> {
        self.0.iter()
    }
}
