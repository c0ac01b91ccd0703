//! The warehouse: where the hourly staging loads put the lake's events, where dbt builds the
//! models, and what orch queries for row counts, checks and dashboards.
//!
//! Two implementations of one [`Warehouse`] trait: DuckDB (the embedded default, a file under
//! `.orch/`) and BigQuery (production, loading from a `gs://` lake). A staging load is
//! idempotent: loading an hour of a topic replaces that hour of its raw table, never adds to it.

pub mod bigquery;
pub mod duckdb;

use std::fmt;

use async_trait::async_trait;
use orch_lake::{Hour, Lake, LakeError, Topic};
use serde::Serialize;
use serde_json::Value;

pub use crate::bigquery::{BigQueryConfig, BigQueryWarehouse};
pub use crate::duckdb::DuckDbWarehouse;

/// The dataset (DuckDB: schema) of the raw event tables, as the dbt project's `raw` source
/// expects it (`vars: raw_schema`).
pub const RAW_DATASET: &str = "raw";

/// A table: `dataset.table` (a DuckDB schema, a BigQuery dataset).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TableRef {
    pub dataset: String,
    pub table: String,
}

impl TableRef {
    pub fn new(dataset: impl Into<String>, table: impl Into<String>) -> TableRef {
        TableRef {
            dataset: dataset.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.dataset, self.table)
    }
}

/// Rows of a query: integers and floats as JSON numbers, booleans, NULL as null, other types
/// as text.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl QueryResult {
    /// The index of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }

    /// The first column of the first row as an integer (a `count(*)`, say).
    pub fn scalar_i64(&self) -> Option<i64> {
        let value = self.rows.first()?.first()?;
        value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
    }

    /// Each row as a JSON object keyed by column name.
    pub fn objects(&self) -> Vec<serde_json::Map<String, Value>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect()
            })
            .collect()
    }
}

/// What a staging load did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    pub table: TableRef,
    /// The hour loaded, as its partition key (`2026-11-22-10:00`).
    pub hour: String,
    /// Lake files read.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Rows in the table's hour after the load.
    pub rows: u64,
    /// Rows read but not loaded because another row has the same source position (a file
    /// rewritten after a crash, an event delivered twice).
    pub duplicates: u64,
    /// Rows of that hour the load replaced (0 on a first load).
    pub replaced: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("cannot open the warehouse {target}: {reason}")]
    Open { target: String, reason: String },
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{message}\n  in: {sql}")]
    Query { message: String, sql: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("BigQuery: {0}")]
    BigQuery(String),
    #[error("{0}")]
    Io(String),
}

impl WarehouseError {
    pub(crate) fn query(message: impl Into<String>, sql: &str) -> WarehouseError {
        // The statement, on one line and short enough for a log line.
        let mut shown: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        if shown.len() > 300 {
            let mut cut = 300;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push_str("...");
        }
        WarehouseError::Query {
            message: message.into(),
            sql: shown,
        }
    }
}

/// A warehouse the platform loads into and dbt builds in.
#[async_trait]
pub trait Warehouse: Send + Sync + fmt::Debug {
    /// `duckdb` or `bigquery`: the dbt adapter, and the asset kind of the staging loads.
    fn kind(&self) -> &'static str;

    /// Where the staging load of `topic` puts its rows.
    fn raw_table(&self, topic: Topic) -> TableRef {
        TableRef::new(RAW_DATASET, topic.as_str())
    }

    /// Loads one hour of `topic` from `lake` into [`Warehouse::raw_table`], replacing the rows
    /// of that hour that an earlier load put there.
    async fn load_hour(
        &self,
        lake: &Lake,
        topic: Topic,
        hour: Hour,
    ) -> Result<LoadReport, WarehouseError>;

    /// Runs a query and returns its rows.
    async fn query(&self, sql: &str) -> Result<QueryResult, WarehouseError>;

    /// The rows of `table`, or `None` when it does not exist.
    async fn row_count(&self, table: &TableRef) -> Result<Option<u64>, WarehouseError>;
}

/// The partition key of `hour`, as orch's hourly partitions spell it.
pub fn hour_key(hour: Hour) -> String {
    hour.start().format("%Y-%m-%d-%H:%M").to_string()
}
