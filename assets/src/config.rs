//! The platform's settings: the `[platform]` table of `orch.toml`, overridden by
//! `ORCH_LAKE_URL`, `ORCH_WAREHOUSE`, `ORCH_DUCKDB_PATH`, `ORCH_DBT_TARGET` and `ORCH_DBT`.
//! The engine keeps the table for the platform (`Config::section`) and knows nothing of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use orch::config::Config;
use serde::Deserialize;

/// The name of the platform's table in `orch.toml`.
pub const SECTION: &str = "platform";

/// `[platform]` as written. Unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformFile {
    lake: Option<String>,
    warehouse: Option<String>,
    duckdb_path: Option<PathBuf>,
    dbt_project: Option<PathBuf>,
    dbt_target: Option<String>,
    dbt_executable: Option<PathBuf>,
    start: Option<String>,
    sensor_interval_secs: Option<u64>,
    late_files_lookback_hours: Option<u64>,
    automation: Option<bool>,
    automation_window_hours: Option<usize>,
}

/// Which warehouse the platform loads and builds in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarehouseKind {
    /// The embedded default: a DuckDB file.
    DuckDb,
    BigQuery,
}

/// The platform's settings, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformConfig {
    /// The lake: a folder (default `.orch/lake`), `gs://...` or `s3://...`.
    pub lake: String,
    pub warehouse: WarehouseKind,
    /// The DuckDB file (default `.orch/warehouse.duckdb`).
    pub duckdb_path: PathBuf,
    /// The dbt project (default `dbt/` under the root).
    pub dbt_project: PathBuf,
    /// Whether `dbt_project` was set (a missing project is then an error, not an absence).
    pub dbt_project_set: bool,
    /// The dbt profile's target (`dev` for DuckDB, `prod` for BigQuery).
    pub dbt_target: Option<String>,
    /// The `dbt` to run (default: the project's venv, installed by `scripts/dbt-venv`).
    pub dbt_executable: Option<PathBuf>,
    /// The first hourly partition of the platform's assets.
    pub start: String,
    /// How often the lake sensor looks for late files (default 30 s).
    pub sensor_interval_secs: u64,
    /// How far back, by event hour, it looks for them (default a week).
    pub late_files_lookback_hours: u64,
    /// Whether the platform runs on declarative automation (default on; `ORCH_PLATFORM_AUTOMATION=0`
    /// turns it off): the lake sensor observes every hour's files as they land, staging loads
    /// and dbt models follow eagerly, the current hour included.
    pub automation: bool,
    /// How many recent hours automation evaluates (default a week, the sensor's lookback).
    pub automation_window_hours: usize,
}

impl PlatformConfig {
    /// The platform's settings in `config`: its `[platform]` table and the environment.
    pub fn from_config(config: &Config) -> Result<PlatformConfig, String> {
        let file: PlatformFile = config
            .section(SECTION)
            .try_into()
            .map_err(|e: toml::de::Error| format!("invalid [{SECTION}] in orch.toml: {e}"))?;
        let state_dir = &config.state_dir;
        let root = &config.root;
        let warehouse = config
            .env("ORCH_WAREHOUSE")
            .or(file.warehouse)
            .unwrap_or_else(|| "duckdb".to_owned());
        let warehouse = match warehouse.as_str() {
            "duckdb" => WarehouseKind::DuckDb,
            "bigquery" => WarehouseKind::BigQuery,
            other => {
                return Err(format!(
                    "platform.warehouse is `{other}`: use duckdb or bigquery"
                ));
            }
        };
        Ok(PlatformConfig {
            lake: config
                .env("ORCH_LAKE_URL")
                .or(file.lake)
                .unwrap_or_else(|| state_dir.join("lake").display().to_string()),
            warehouse,
            duckdb_path: root.join(
                config
                    .env("ORCH_DUCKDB_PATH")
                    .map(PathBuf::from)
                    .or(file.duckdb_path)
                    .unwrap_or_else(|| state_dir.join("warehouse.duckdb")),
            ),
            dbt_project_set: file.dbt_project.is_some(),
            dbt_project: root.join(file.dbt_project.unwrap_or_else(|| "dbt".into())),
            dbt_target: config.env("ORCH_DBT_TARGET").or(file.dbt_target),
            dbt_executable: config
                .env("ORCH_DBT")
                .map(PathBuf::from)
                .or(file.dbt_executable),
            start: file.start.unwrap_or_else(|| "2026-01-01-00:00".to_owned()),
            sensor_interval_secs: file.sensor_interval_secs.unwrap_or(30).max(1),
            late_files_lookback_hours: file.late_files_lookback_hours.unwrap_or(7 * 24).max(1),
            automation: match config.env("ORCH_PLATFORM_AUTOMATION").as_deref() {
                Some("0" | "false" | "off") => false,
                Some(_) => true,
                None => file.automation.unwrap_or(true),
            },
            automation_window_hours: file
                .automation_window_hours
                .unwrap_or(7 * 24)
                .clamp(1, 10_000),
        })
    }

    /// Whether the lake is a local folder (not `gs://`, `s3://` or `file://`).
    pub fn local_lake(&self) -> bool {
        !self.lake.contains("://")
    }

    /// Pool limits the platform needs unless the project sets them: the embedded warehouse
    /// admits one writing process at a time, so its loads and dbt builds (pool `warehouse`)
    /// take turns. BigQuery takes loads concurrently, but dbt builds (pool `dbt`) one at a
    /// time: two builds at once could both insert a new hub key, and a mart replaced by an
    /// older build could lose what a newer one saw (ARCHITECTURE.md, "Load order").
    pub fn pool_defaults(&self) -> BTreeMap<String, usize> {
        match self.warehouse {
            WarehouseKind::DuckDb => BTreeMap::from([(crate::WAREHOUSE_POOL.to_owned(), 1)]),
            WarehouseKind::BigQuery => BTreeMap::from([(crate::DBT_POOL.to_owned(), 1)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn platform(toml: &str) -> Result<PlatformConfig, String> {
        PlatformConfig::from_config(&Config::from_toml(Path::new("/p"), toml).unwrap())
    }

    #[test]
    fn defaults_are_the_embedded_platform() {
        let config = platform("").unwrap();
        assert_eq!(config.lake, "/p/.orch/lake");
        assert_eq!(config.warehouse, WarehouseKind::DuckDb);
        assert_eq!(config.duckdb_path, Path::new("/p/.orch/warehouse.duckdb"));
        assert_eq!(config.pool_defaults().get("warehouse"), Some(&1));
    }

    #[test]
    fn the_warehouse_pool_defaults_to_one_on_duckdb_only() {
        let bigquery = platform("[platform]\nwarehouse = 'bigquery'").unwrap();
        assert_eq!(bigquery.pool_defaults().get("warehouse"), None);
        assert_eq!(bigquery.pool_defaults().get("dbt"), Some(&1));
        let err = platform("[platform]\nwarehouse = 'snowflake'").unwrap_err();
        assert!(err.contains("use duckdb or bigquery"), "{err}");
        let err = platform("[platform]\nlak = 'x'").unwrap_err();
        assert!(err.contains("unknown field `lak`"), "{err}");
    }
}
