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

/// The file as written. Unknown keys are refused, so that a typo is not silently ignored:
/// tables that no part of the engine reads (`[platform]`) are kept in `sections` for the code
/// that defines the assets, which must claim them (see [`Config::check_sections`]).
#[derive(Debug, Default, Deserialize)]
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
    automation: AutomationConfig,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(flatten)]
    sections: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_range_partitions: Option<usize>,
    confirm_runs_above: Option<usize>,
}

/// `[limits]` of `orch.toml`: bounds on the inputs that size work.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// The most partitions one materialization or backfill range may cover (default 10,000;
    /// at most 100,000).
    pub max_range_partitions: usize,
    /// A backfill of more runs than this needs `--yes` (default 100).
    pub confirm_runs_above: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_range_partitions: orch_core::partitions::DEFAULT_MAX_RANGE_PARTITIONS,
            confirm_runs_above: 100,
        }
    }
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
    /// Finished runs older than this are deleted (`30d`).
    retention: Option<String>,
    /// Where the daemon serves Prometheus metrics (`127.0.0.1:9465`).
    metrics_addr: Option<String>,
}

/// `[automation]` in `orch.toml`: how the daemon's automation tick runs, and conditions for
/// the assets a selection picks (`[[automation.condition]]`, which override conditions
/// declared in code).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutomationConfig {
    /// Off: the daemon does not evaluate conditions.
    pub enabled: Option<bool>,
    /// Seconds between ticks (default 2).
    pub interval_secs: Option<f64>,
    /// How many recent partitions of a time-partitioned asset are evaluated (default 48).
    pub window_partitions: Option<usize>,
    /// Whether the partition still open (the current hour) is evaluated too (default false).
    pub include_current: Option<bool>,
    #[serde(default, rename = "condition")]
    pub conditions: Vec<AutomationRule>,
}

/// One `[[automation.condition]]`: a condition for the assets `select` picks.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutomationRule {
    pub select: String,
    /// The condition's text form (`eager`, `on_cron('0 * * * *', 'UTC')`, ...).
    pub condition: String,
}

/// The daemon's settings from `orch.toml` (`[daemon]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonSettings {
    pub max_concurrent_runs: Option<u32>,
    pub local_runs: Option<usize>,
    pub lease_secs: Option<u64>,
    pub heartbeat_secs: Option<u64>,
    pub expired_runs: Option<String>,
    /// Event-log retention: finished runs older than this are deleted with their events.
    pub retention: Option<String>,
    /// Where the daemon serves Prometheus metrics.
    pub metrics_addr: Option<String>,
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
    /// The tables of `orch.toml` that the engine does not read, by name (`platform`), for the
    /// code that defines the assets.
    pub sections: BTreeMap<String, toml::Table>,
    /// Whether settings may come from the process's environment (not for `from_toml`).
    read_env: bool,
    /// Schedules declared in `orch.toml`.
    pub schedules: Vec<ScheduleConfig>,
    pub daemon: DaemonSettings,
    pub automation: AutomationConfig,
    /// Sensors declared in `orch.toml`.
    pub sensors: Vec<SensorConfig>,
    /// Where notifications are posted (`ORCH_WEBHOOK_URL` overrides it).
    pub webhook_url: Option<Secret>,
    /// Bounds on the inputs that size work (`[limits]`).
    pub limits: Limits,
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
        Self::resolve(root, file, parsed, &env, true)
    }

    /// Parses a config from text, as if it were `root/orch.toml`, with no environment.
    pub fn from_toml(root: &Path, text: &str) -> Result<Config, ConfigError> {
        let path = root.join(CONFIG_FILE);
        let parsed = toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Self::resolve(root.to_path_buf(), Some(path), parsed, &|_| None, false)
    }

    fn resolve(
        root: PathBuf,
        file: Option<PathBuf>,
        parsed: FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
        read_env: bool,
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
                message: if env("ORCH_MAX_CONCURRENT").is_some() {
                    "ORCH_MAX_CONCURRENT must be at least 1".into()
                } else {
                    "`max_concurrent` under [execution] must be at least 1".into()
                },
            });
        }
        if let Some((name, _)) = parsed.pools.iter().find(|(_, limit)| **limit == 0) {
            return Err(ConfigError::Parse {
                path,
                message: format!("pool `{name}` has a limit of 0: no step in it could ever run"),
            });
        }
        let mut limits = Limits::default();
        if let Some(n) = parsed.limits.max_range_partitions {
            let hard = orch_core::partitions::HARD_MAX_RANGE_PARTITIONS;
            if n == 0 || n > hard {
                return Err(ConfigError::Parse {
                    path,
                    message: format!(
                        "`max_range_partitions` under [limits] is {n}: use 1 to {hard}"
                    ),
                });
            }
            limits.max_range_partitions = n;
        }
        if let Some(n) = parsed.limits.confirm_runs_above {
            limits.confirm_runs_above = n;
        }
        let mut sections = BTreeMap::new();
        for (name, value) in parsed.sections {
            match value {
                toml::Value::Table(table) => {
                    sections.insert(name, table);
                }
                other => {
                    return Err(ConfigError::Parse {
                        path,
                        message: format!(
                            "unknown field `{name}` (a {}); see the README's orch.toml reference",
                            other.type_str()
                        ),
                    });
                }
            }
        }
        Ok(Config {
            root,
            file,
            state_dir,
            database_url,
            execution,
            pools: parsed.pools,
            builtin_assets: parsed.assets.builtin.unwrap_or(true),
            example_assets: parsed.assets.example.unwrap_or(false),
            command_assets: parsed.command_assets,
            sections,
            read_env,
            schedules: parsed.schedules,
            daemon: DaemonSettings {
                max_concurrent_runs: parsed.daemon.max_concurrent_runs,
                local_runs: parsed.daemon.local_runs,
                lease_secs: parsed.daemon.lease_secs,
                heartbeat_secs: parsed.daemon.heartbeat_secs,
                expired_runs: parsed.daemon.expired_runs,
                retention: parsed.daemon.retention,
                metrics_addr: parsed.daemon.metrics_addr,
            },
            sensors: parsed.sensors,
            automation: parsed.automation,
            webhook_url: env("ORCH_WEBHOOK_URL")
                .or(parsed.notifications.webhook_url)
                .map(Secret),
            limits,
        })
    }
}

impl Config {
    /// An environment variable, when settings may come from the environment (a config read
    /// with [`Config::load`]); empty values count as unset.
    pub fn env(&self, name: &str) -> Option<String> {
        if !self.read_env {
            return None;
        }
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    /// The table `[name]` of `orch.toml`, empty when the file has none.
    pub fn section(&self, name: &str) -> toml::Table {
        self.sections.get(name).cloned().unwrap_or_default()
    }

    /// Refuses tables that nothing reads (`claimed` are those the loaded code reads), naming
    /// the nearest known one: a typo in a table's name is not silently ignored.
    pub fn check_sections(&self, claimed: &[&str]) -> Result<(), ConfigError> {
        for name in self.sections.keys() {
            if claimed.contains(&name.as_str()) {
                continue;
            }
            let nearest = claimed
                .iter()
                .chain(KNOWN_TABLES)
                .min_by_key(|known| strsim::levenshtein(known, name))
                .filter(|known| strsim::levenshtein(known, name) <= 3);
            return Err(ConfigError::Parse {
                path: self
                    .file
                    .clone()
                    .unwrap_or_else(|| self.root.join(CONFIG_FILE)),
                message: match nearest {
                    Some(known) => format!("unknown table `[{name}]`: did you mean `[{known}]`?"),
                    None => format!("unknown table `[{name}]`"),
                },
            });
        }
        Ok(())
    }
}

/// The tables the engine reads itself.
const KNOWN_TABLES: &[&str] = &[
    "execution",
    "limits",
    "pools",
    "assets",
    "asset",
    "schedule",
    "daemon",
    "sensor",
    "notifications",
];

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
    fn unread_tables_are_kept_for_their_code_and_unclaimed_ones_refused() {
        let config =
            Config::from_toml(Path::new("/p"), "[platform]\nwarehouse = 'bigquery'").unwrap();
        assert_eq!(
            config.section("platform").get("warehouse"),
            Some(&toml::Value::String("bigquery".into()))
        );
        config.check_sections(&["platform"]).unwrap();
        let typo = Config::from_toml(Path::new("/p"), "[plaform]\nlake = 'x'").unwrap();
        let err = typo.check_sections(&["platform"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown table `[plaform]`: did you mean `[platform]`?"),
            "{err}"
        );
        let err = Config::from_toml(Path::new("/p"), "databse_url = 'x'").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `databse_url`"),
            "{err}"
        );
    }

    /// `[limits]` is read, bounded and named in its errors.
    #[test]
    fn limits_are_read_and_bounded() {
        let root = Path::new("/project");
        let c = Config::from_toml(root, "").unwrap();
        assert_eq!(c.limits, Limits::default());
        let c = Config::from_toml(
            root,
            "[limits]\nmax_range_partitions = 24\nconfirm_runs_above = 5\n",
        )
        .unwrap();
        assert_eq!(
            (c.limits.max_range_partitions, c.limits.confirm_runs_above),
            (24, 5)
        );
        let e = Config::from_toml(root, "[limits]\nmax_range_partitions = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`max_range_partitions` under [limits] is 0: use 1 to 100000"),
            "{e}"
        );
        assert!(Config::from_toml(root, "[limits]\nmax_range = 1\n").is_err());
    }

    mod fuzz {
        //! orch.toml fuzzed (proptest): any text, and tables built from the file's own keys,
        //! load or fail with a message, never a panic. `ORCH_FUZZ_CASES` cases per property
        //! (default 256).
        use super::super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: orch_core::fuzz_cases(),
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        const TABLES: &[&str] = &[
            "",
            "[execution]",
            "[pools]",
            "[assets]",
            "[daemon]",
            "[limits]",
            "[automation]",
            "[notifications]",
            "[[asset]]",
            "[[schedule]]",
            "[[sensor]]",
            "[platform]",
            "[[automation.condition]]",
        ];
        const KEYS: &[&str] = &[
            "database_url",
            "state_dir",
            "max_concurrent",
            "cancel_grace_secs",
            "warehouse",
            "builtin",
            "example",
            "key",
            "deps",
            "command",
            "partitions",
            "retry",
            "checks",
            "name",
            "cron",
            "timezone",
            "selection",
            "partition",
            "catchup",
            "enabled",
            "lease_secs",
            "heartbeat_secs",
            "local_runs",
            "expired_runs",
            "retention",
            "metrics_addr",
            "max_range_partitions",
            "confirm_runs_above",
            "kind",
            "path",
            "interval_secs",
            "webhook_url",
            "select",
            "condition",
        ];
        const VALUES: &[&str] = &[
            "0",
            "1",
            "-1",
            "18446744073709551616",
            "1.5",
            "true",
            "\"\"",
            "\"x\"",
            "\"61 * * * *\"",
            "\"0 0 30 2 *\"",
            "\"*\"",
            "\"2026-11-01\"",
            "[]",
            "[\"a\"]",
            "{ daily = \"2026-11-01\", timezone = \"UTC\" }",
            "{ hourly = \"9999-12-31\" }",
            "{ max_attempts = 0 }",
            "\"latest:0\"",
            "\"requeue\"",
            "{}",
        ];

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn any_text_loads_or_fails_cleanly(text in "\\PC{0,300}") {
                let _ = Config::from_toml(Path::new("/project"), &text);
            }

            #[test]
            fn tables_of_known_keys_load_or_fail_cleanly(
                lines in prop::collection::vec(
                    (prop::sample::select(TABLES), prop::sample::select(KEYS), prop::sample::select(VALUES)),
                    0..8,
                )
            ) {
                let text: String = lines
                    .iter()
                    .map(|(t, k, v)| format!("{t}\n{k} = {v}\n"))
                    .collect();
                let root = Path::new("/project");
                if let Ok(c) = Config::from_toml(root, &text) {
                    for s in &c.schedules {
                        let _ = crate::daemon::schedule::from_config(s);
                    }
                    let _ = crate::command::definitions(&c.command_assets, root);
                    let _ = c.check_sections(&[]);
                }
            }
        }
    }
}
