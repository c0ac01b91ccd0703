//! Loading a project: its configuration, its definitions (compiled-in and from orch.toml),
//! the validated graph, and the run history.

use std::path::Path;
use std::sync::Arc;

use orch::config::Config;
use orch::storage::Storage;
use orch::{AssetGraph, Definitions};

use crate::Failure;

/// The configuration for `dir` (or the current folder).
pub fn config(dir: Option<&Path>) -> Result<Config, Failure> {
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::Work(format!("cannot read the current folder: {e}")))?;
    let start = match dir {
        Some(d) => cwd.join(d),
        None => cwd,
    };
    // ORCH_PROJECT_DIR is read by clap into `dir`, so Config::load sees the folder itself.
    let mut config = Config::load(&start).map_err(|e| Failure::Usage(e.to_string()))?;
    config
        .check_sections(&[orch_platform::config::SECTION])
        .map_err(|e| Failure::Usage(e.to_string()))?;
    if config.builtin_assets {
        let platform = orch_platform::PlatformConfig::from_config(&config)
            .map_err(|e| Failure::Usage(format!("in {}: {e}", config_name(&config))))?;
        for (pool, limit) in platform.pool_defaults() {
            config.pools.entry(pool).or_insert(limit);
        }
    }
    Ok(config)
}

/// Everything the project defines.
/// The definitions, and how many of their assets are compiled in (the rest are orch.toml's
/// `[[asset]]` tables, in order), for messages that say where a definition comes from.
fn definitions_with_origins(config: &Config) -> Result<(Definitions, usize), Failure> {
    let mut defs = Definitions::new();
    if config.builtin_assets {
        defs = defs.merge(orch_platform::definitions(config).map_err(Failure::Usage)?);
    }
    let compiled = defs.assets.len();
    let commands = orch::command::definitions(&config.command_assets, &config.root)
        .map_err(|e| Failure::Usage(format!("in {}: {e}", config_name(config))))?;
    Ok((defs.assets(commands), compiled))
}

/// Every schedule: the compiled-in ones and those of orch.toml.
pub fn schedules(
    config: &Config,
    defs: &Definitions,
) -> Result<Vec<orch::daemon::ScheduleDefinition>, Failure> {
    let mut schedules = defs.schedules.clone();
    let compiled = schedules.len();
    for schedule in &config.schedules {
        schedules.push(
            orch::daemon::schedule::from_config(schedule)
                .map_err(|e| Failure::Usage(format!("in {}: {e}", config_name(config))))?,
        );
    }
    orch::daemon::schedule::check_unique_names(&schedules, |i| {
        if i < compiled {
            "a schedule compiled into orch".to_owned()
        } else {
            format!(
                "[[schedule]] number {} in {}",
                i - compiled + 1,
                config_name(config)
            )
        }
    })
    .map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(schedules)
}

/// The sensors of orch.toml.
pub fn sensors(
    config: &Config,
    defs: &Definitions,
) -> Result<Vec<std::sync::Arc<dyn orch::daemon::Sensor>>, Failure> {
    use orch::daemon::RunFailureSensor;
    let mut out: Vec<std::sync::Arc<dyn orch::daemon::Sensor>> = defs.sensors.clone();
    for sensor in &config.sensors {
        let invalid = |message: String| {
            Failure::Usage(format!(
                "in {}: sensor `{}`: {message}",
                config_name(config),
                sensor.name
            ))
        };
        let interval = sensor.interval_secs.map(std::time::Duration::from_secs);
        match sensor.kind.as_str() {
            "lake" => {
                let path = sensor.path.as_ref().ok_or_else(|| {
                    invalid("a lake sensor needs `path`, the lake's root folder".into())
                })?;
                // A folder (relative to the project) or a lake URL (gs://, s3://).
                let text = path.display().to_string();
                let root = if text.contains("://") {
                    text
                } else {
                    config.root.join(path).display().to_string()
                };
                let mut lake =
                    orch_platform::LakeFiles::sensor_at(&sensor.name, &root).map_err(invalid)?;
                if let Some(template) = &sensor.asset {
                    lake = lake.asset_template(template);
                }
                if let Some(template) = &sensor.selection {
                    lake = lake.selection_template(template);
                }
                if let Some(every) = interval {
                    lake = lake.interval(every);
                }
                if let Some(hours) = sensor.lookback_hours {
                    lake = lake.lookback_hours(hours);
                }
                out.push(std::sync::Arc::new(lake));
            }
            "run_failure" => {
                if config.webhook_url.is_none() {
                    return Err(invalid(
                        "a run_failure sensor posts to a webhook: set [notifications] webhook_url or ORCH_WEBHOOK_URL".into(),
                    ));
                }
                let mut failures = RunFailureSensor::new(&sensor.name);
                if let Some(every) = interval {
                    failures = failures.interval(every);
                }
                out.push(std::sync::Arc::new(failures));
            }
            other => {
                return Err(invalid(format!(
                    "unknown sensor type `{other}` (use lake or run_failure)"
                )));
            }
        }
    }
    Ok(out)
}

/// The validated asset graph.
pub fn graph(config: &Config) -> Result<(Definitions, Arc<AssetGraph>), Failure> {
    let (defs, compiled) = definitions_with_origins(config)?;
    let graph = defs.graph().map_err(|e| {
        let message = orch::definitions::describe_graph_error(&e, &defs.assets, |i| {
            if i < compiled {
                format!("`{}`, compiled into orch", defs.assets[i].name)
            } else {
                format!(
                    "[[asset]] number {} in {}",
                    i - compiled + 1,
                    config_name(config)
                )
            }
        });
        Failure::Usage(format!("invalid asset definitions: {message}"))
    })?;
    Ok((defs, Arc::new(graph)))
}

/// The run history, migrated.
pub async fn storage(config: &Config) -> Result<Arc<dyn Storage>, Failure> {
    orch::storage::open(&config.database_url)
        .await
        .map_err(|e| Failure::Work(e.to_string()))
}

fn config_name(config: &Config) -> String {
    config
        .file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "orch.toml".to_owned())
}

/// The automation conditions (declared in code, then `[[automation.condition]]` in orch.toml)
/// and the tick's settings (`[automation]`). No conditions when `[automation] enabled = false`.
pub fn automation(
    config: &Config,
    graph: &AssetGraph,
) -> Result<
    (
        std::collections::BTreeMap<orch::AssetKey, orch::automation::Condition>,
        orch::automation::AutomationSettings,
    ),
    Failure,
> {
    let file = &config.automation;
    let mut settings = orch::automation::AutomationSettings::default();
    // The platform on automation evaluates its recent hours, the current one included.
    if config.builtin_assets
        && let Ok(platform) = orch_platform::PlatformConfig::from_config(config)
        && platform.automation
    {
        settings.window.partitions = platform.automation_window_hours;
        settings.window.include_current = true;
    }
    if let Some(secs) = file.interval_secs {
        if !(secs.is_finite() && secs >= 0.05) {
            return Err(Failure::Usage(format!(
                "in {}: [automation] interval_secs must be at least 0.05, not {secs}",
                config_name(config)
            )));
        }
        settings.interval = std::time::Duration::from_secs_f64(secs);
    }
    if let Some(n) = file.window_partitions {
        if n == 0 || n > 10_000 {
            return Err(Failure::Usage(format!(
                "in {}: [automation] window_partitions must be 1 to 10000, not {n}",
                config_name(config)
            )));
        }
        settings.window.partitions = n;
    }
    if let Some(current) = file.include_current {
        settings.window.include_current = current;
    }
    if file.enabled == Some(false) {
        return Ok((Default::default(), settings));
    }
    let mut conditions = orch::automation::Automation::conditions_of(graph);
    let from_file = orch::automation::conditions_from_config(graph, &file.conditions)
        .map_err(|e| Failure::Usage(format!("in {}: {e}", config_name(config))))?;
    conditions.extend(from_file);
    Ok((conditions, settings))
}

/// The daemon settings from the project: its execution settings and pools, the rest default.
pub fn daemon_config(config: &Config) -> orch::daemon::DaemonConfig {
    orch::daemon::DaemonConfig {
        execution: config.execution.clone(),
        pools: config.pools.clone(),
        ..orch::daemon::DaemonConfig::default()
    }
}

/// The project's daemon (`orch daemon`, `orch dev`, `orch bench freshness`): these schedules,
/// sensors and automation (from [`automation`]), on the system clock.
pub fn daemon(
    defs: &Definitions,
    graph: Arc<AssetGraph>,
    storage: Arc<dyn Storage>,
    schedules: Vec<orch::daemon::ScheduleDefinition>,
    sensors: Vec<Arc<dyn orch::daemon::Sensor>>,
    automation: (
        std::collections::BTreeMap<orch::AssetKey, orch::automation::Condition>,
        orch::automation::AutomationSettings,
    ),
    daemon_config: orch::daemon::DaemonConfig,
) -> Result<orch::daemon::Daemon, Failure> {
    orch::daemon::Daemon::new(
        storage,
        graph,
        defs.resources.clone(),
        schedules,
        daemon_config,
        Arc::new(orch::daemon::SystemClock),
    )
    .and_then(|d| d.with_sensors(sensors))
    .and_then(|d| d.with_automation(automation.0, automation.1))
    .map_err(|e| Failure::Usage(e.to_string()))
}
