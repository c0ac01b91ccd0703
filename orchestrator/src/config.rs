//! Configuration: `orch.toml` at the project root, overridden by environment variables
//! (`ORCH_DATABASE_URL` first among them). Every setting has a default, so orch works with no
//! file at all: run history in `.orch/orch.db` (SQLite) under the project root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::command::CommandAssetConfig;

/// The config file's name, looked for in the current folder and its parents.
pub const CONFIG_FILE: &str = "orch.toml";

/// Why the configuration cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid environment variable {name}={value:?}: {message}")]
    Env {
        name: &'static str,
        value: String,
        message: String,
    },
}

/// The file as written. Unknown keys are refused, so that a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    execution: ExecutionFile,
    #[serde(default)]
    pools: BTreeMap<String, usize>,
    #[serde(default)]
    assets: AssetsFile,
    #[serde(default, rename = "asset")]
    command_assets: Vec<CommandAssetConfig>,
    #[serde(default, rename = "schedule")]
    schedules: Vec<ScheduleConfig>,
    #[serde(default)]
    daemon: DaemonFile,
    #[serde(default, rename = "sensor")]
    sensors: Vec<SensorConfig>,
    #[serde(default)]
    notifications: NotificationsFile,
    #[serde(default)]
    platform: PlatformFile,
}

/// `[platform]`: where the compiled-in platform's lake, warehouse and dbt project are.
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
}

/// The compiled-in platform's settings (`[platform]`, overridden by `ORCH_LAKE_URL`,
/// `ORCH_WAREHOUSE`, `ORCH_DUCKDB_PATH`, `ORCH_DBT_TARGET`, `ORCH_DBT`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformConfig {
    /// The lake: a folder (default `.orch/lake`), `gs://...` or `s3://...`.
    pub lake: String,
    /// `duckdb` (default) or `bigquery`.
    pub warehouse: String,
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
}

/// One `[[sensor]]` table of `orch.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    pub name: String,
    /// `lake` (late files re-materialize their hour) or `run_failure` (failed runs go to the
    /// webhook).
    #[serde(rename = "type")]
    pub kind: String,
    /// For `lake`: the lake's root folder (relative to the project).
    pub path: Option<PathBuf>,
    /// For `lake`: the asset of a topic's raw partitions (default `raw/{topic}`).
    pub asset: Option<String>,
    /// For `lake`: what to re-materialize (default `{asset}*`).
    pub selection: Option<String>,
    /// How often it is evaluated, in seconds.
    pub interval_secs: Option<u64>,
    /// For `lake`: how far back, by event hour, late files are looked for (default a week).
    pub lookback_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationsFile {
    webhook_url: Option<String>,
}

/// One `[[schedule]]` table of `orch.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub name: String,
    /// Five fields as cron writes them: `10 * * * *` is ten past every hour.
    pub cron: String,
    #[serde(default = "utc")]
    pub timezone: String,
    pub selection: String,
    /// `last_complete` (the default: the partition that just ended) or `none`.
    pub partition: Option<String>,
    /// `all`, `latest` (the default) or `latest:N`.
    pub catchup: Option<String>,
    /// Whether it runs before anyone switches it on or off (`orch schedules on|off`).
    #[serde(default)]
    pub enabled: bool,
}

fn utc() -> String {
    "UTC".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonFile {
    max_concurrent_runs: Option<u32>,
    local_runs: Option<usize>,
    lease_secs: Option<u64>,
    heartbeat_secs: Option<u64>,
    /// `fail` or `requeue`.
    expired_runs: Option<String>,
}

/// The daemon's settings from `orch.toml` (`[daemon]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonSettings {
    pub max_concurrent_runs: Option<u32>,
    pub local_runs: Option<usize>,
    pub lease_secs: Option<u64>,
    pub heartbeat_secs: Option<u64>,
    pub expired_runs: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutionFile {
    max_concurrent: Option<usize>,
    cancel_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssetsFile {
    builtin: Option<bool>,
    example: Option<bool>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The project root: the folder holding `orch.toml`, or the current folder.
    pub root: PathBuf,
    /// The config file, if one was found.
    pub file: Option<PathBuf>,
    /// Where orch keeps local state (`.orch/` under the root by default).
    pub state_dir: PathBuf,
    /// The run history: `postgres://...` or `sqlite://PATH`.
    pub database_url: String,
    pub execution: ExecutionConfig,
    /// Concurrency limits of named pools.
    pub pools: BTreeMap<String, usize>,
    /// Whether to load the assets compiled into the `orch` binary.
    pub builtin_assets: bool,
    /// Whether to add the small example graph to the compiled-in assets.
    pub example_assets: bool,
    /// Assets declared in `orch.toml` whose compute is a shell command.
    pub command_assets: Vec<CommandAssetConfig>,
    /// The compiled-in platform's settings.
    pub platform: PlatformConfig,
    /// Schedules declared in `orch.toml`.
    pub schedules: Vec<ScheduleConfig>,
    pub daemon: DaemonSettings,
    /// Sensors declared in `orch.toml`.
    pub sensors: Vec<SensorConfig>,
    /// Where notifications are posted (`ORCH_WEBHOOK_URL` overrides it).
    pub webhook_url: Option<Secret>,
}

/// A secret setting: its `Debug` and `Display` print `***`, so it cannot reach a log by
/// accident; `expose` gives the value to the one place that uses it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How runs execute.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionConfig {
    /// Steps running at once in one run.
    pub max_concurrent: usize,
    /// How long canceled steps get to stop before they are abandoned.
    pub cancel_grace: std::time::Duration,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            max_concurrent: 16,
            cancel_grace: std::time::Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Loads the configuration for a process started in `cwd`: `ORCH_PROJECT_DIR` or the
    /// nearest folder holding `orch.toml` is the root; the environment overrides the file.
    pub fn load(cwd: &Path) -> Result<Config, ConfigError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (root, file) = match env("ORCH_PROJECT_DIR") {
            Some(dir) => {
                let root = cwd.join(dir);
                let file = root.join(CONFIG_FILE);
                let file = file.is_file().then_some(file);
                (root, file)
            }
            None => match find_config(cwd) {
                Some(file) => (
                    file.parent().map(Path::to_path_buf).unwrap_or_default(),
                    Some(file),
                ),
                None => (cwd.to_path_buf(), None),
            },
        };
        let parsed = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        Self::resolve(root, file, parsed, &env)
    }

    /// Parses a config from text, as if it were `root/orch.toml`, with no environment.
    pub fn from_toml(root: &Path, text: &str) -> Result<Config, ConfigError> {
        let path = root.join(CONFIG_FILE);
        let parsed = toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Self::resolve(root.to_path_buf(), Some(path), parsed, &|_| None)
    }

    fn resolve(
        root: PathBuf,
        file: Option<PathBuf>,
        parsed: FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let state_dir = env("ORCH_STATE_DIR")
            .map(PathBuf::from)
            .or(parsed.state_dir)
            .unwrap_or_else(|| PathBuf::from(".orch"));
        let state_dir = root.join(state_dir);
        let database_url = env("ORCH_DATABASE_URL")
            .or(parsed.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", state_dir.join("orch.db").display()));
        let mut execution = ExecutionConfig::default();
        if let Some(n) = parsed.execution.max_concurrent {
            execution.max_concurrent = n;
        }
        if let Some(secs) = parsed.execution.cancel_grace_secs {
            execution.cancel_grace = std::time::Duration::from_secs(secs);
        }
        if let Some(value) = env("ORCH_MAX_CONCURRENT") {
            execution.max_concurrent = value.parse().map_err(|_| ConfigError::Env {
                name: "ORCH_MAX_CONCURRENT",
                value: value.clone(),
                message: "expected a positive whole number".into(),
            })?;
        }
        let path = file.clone().unwrap_or_else(|| root.join(CONFIG_FILE));
        if execution.max_concurrent == 0 {
            return Err(ConfigError::Parse {
                path,
                message: "execution.max_concurrent must be at least 1".into(),
            });
        }
        if let Some((name, _)) = parsed.pools.iter().find(|(_, limit)| **limit == 0) {
            return Err(ConfigError::Parse {
                path,
                message: format!("pool `{name}` has a limit of 0: no step in it could ever run"),
            });
        }
        let platform_file = parsed.platform;
        let dbt_project_set = platform_file.dbt_project.is_some();
        let platform = PlatformConfig {
            lake: env("ORCH_LAKE_URL")
                .or(platform_file.lake)
                .unwrap_or_else(|| state_dir.join("lake").display().to_string()),
            warehouse: env("ORCH_WAREHOUSE")
                .or(platform_file.warehouse)
                .unwrap_or_else(|| "duckdb".to_owned()),
            duckdb_path: root.join(
                env("ORCH_DUCKDB_PATH")
                    .map(PathBuf::from)
                    .or(platform_file.duckdb_path)
                    .unwrap_or_else(|| state_dir.join("warehouse.duckdb")),
            ),
            dbt_project: root.join(platform_file.dbt_project.unwrap_or_else(|| "dbt".into())),
            dbt_project_set,
            dbt_target: env("ORCH_DBT_TARGET").or(platform_file.dbt_target),
            dbt_executable: env("ORCH_DBT")
                .map(PathBuf::from)
                .or(platform_file.dbt_executable),
            start: platform_file
                .start
                .unwrap_or_else(|| "2026-01-01-00:00".to_owned()),
            sensor_interval_secs: platform_file.sensor_interval_secs.unwrap_or(30).max(1),
            late_files_lookback_hours: platform_file
                .late_files_lookback_hours
                .unwrap_or(7 * 24)
                .max(1),
        };
        if !matches!(platform.warehouse.as_str(), "duckdb" | "bigquery") {
            return Err(ConfigError::Parse {
                path,
                message: format!(
                    "platform.warehouse is `{}`: use duckdb or bigquery",
                    platform.warehouse
                ),
            });
        }
        let mut pools = parsed.pools;
        if platform.warehouse == "duckdb" {
            // The embedded warehouse admits one writing process at a time: the platform's
            // loads and dbt builds (pool `warehouse`) take turns unless the project says
            // otherwise. BigQuery takes them concurrently.
            pools.entry("warehouse".to_owned()).or_insert(1);
        } else {
            // BigQuery takes loads concurrently, but dbt builds (pool `dbt`) one at a time:
            // two builds at once could both insert a new hub key, and a mart replaced by an
            // older build could lose what a newer one saw (ARCHITECTURE.md, "Load order").
            pools.entry("dbt".to_owned()).or_insert(1);
        }
        Ok(Config {
            root,
            file,
            state_dir,
            database_url,
            execution,
            pools,
            builtin_assets: parsed.assets.builtin.unwrap_or(true),
            example_assets: parsed.assets.example.unwrap_or(false),
            command_assets: parsed.command_assets,
            platform,
            schedules: parsed.schedules,
            daemon: DaemonSettings {
                max_concurrent_runs: parsed.daemon.max_concurrent_runs,
                local_runs: parsed.daemon.local_runs,
                lease_secs: parsed.daemon.lease_secs,
                heartbeat_secs: parsed.daemon.heartbeat_secs,
                expired_runs: parsed.daemon.expired_runs,
            },
            sensors: parsed.sensors,
            webhook_url: env("ORCH_WEBHOOK_URL")
                .or(parsed.notifications.webhook_url)
                .map(Secret),
        })
    }
}

fn find_config(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(CONFIG_FILE))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let config = Config::from_toml(Path::new("/p"), "").unwrap();
        assert_eq!(config.database_url, "sqlite:///p/.orch/orch.db");
        assert_eq!(config.execution.max_concurrent, 16);
        assert!(config.builtin_assets);
    }

    #[test]
    fn secrets_do_not_print() {
        let config = Config::from_toml(
            Path::new("/p"),
            "[notifications]\nwebhook_url = 'https://hooks.example/T000/s3cret'",
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            config.webhook_url.as_ref().map(Secret::expose),
            Some("https://hooks.example/T000/s3cret")
        );
    }

    #[test]
    fn typos_and_zero_limits_are_refused() {
        let err = Config::from_toml(Path::new("/p"), "databse_url = 'x'").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `databse_url`"),
            "{err}"
        );
        let err = Config::from_toml(Path::new("/p"), "[pools]\nwarehouse = 0").unwrap_err();
        assert!(
            err.to_string()
                .contains("pool `warehouse` has a limit of 0"),
            "{err}"
        );
    }

    #[test]
    fn the_warehouse_pool_defaults_to_one_on_duckdb_only() {
        let duckdb = Config::from_toml(Path::new("/p"), "").unwrap();
        assert_eq!(duckdb.pools.get("warehouse"), Some(&1));
        let set = Config::from_toml(Path::new("/p"), "[pools]\nwarehouse = 3").unwrap();
        assert_eq!(set.pools.get("warehouse"), Some(&3));
        let bigquery =
            Config::from_toml(Path::new("/p"), "[platform]\nwarehouse = 'bigquery'").unwrap();
        assert_eq!(bigquery.pools.get("warehouse"), None);
        assert_eq!(bigquery.pools.get("dbt"), Some(&1));
    }
}
