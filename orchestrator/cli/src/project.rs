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
    Config::load(&start).map_err(|e| Failure::Usage(e.to_string()))
}

/// Everything the project defines.
pub fn definitions(config: &Config) -> Result<Definitions, Failure> {
    let mut defs = Definitions::new();
    if config.builtin_assets {
        defs = defs.merge(orch_assets::definitions(config));
    }
    let commands = orch::command::definitions(&config.command_assets, &config.root)
        .map_err(|e| Failure::Usage(format!("in {}: {e}", config_name(config))))?;
    Ok(defs.assets(commands))
}

/// Every schedule: the compiled-in ones and those of orch.toml.
pub fn schedules(
    config: &Config,
    defs: &Definitions,
) -> Result<Vec<orch::daemon::ScheduleDefinition>, Failure> {
    let mut schedules = defs.schedules.clone();
    for schedule in &config.schedules {
        schedules.push(
            orch::daemon::schedule::from_config(schedule)
                .map_err(|e| Failure::Usage(format!("in {}: {e}", config_name(config))))?,
        );
    }
    Ok(schedules)
}

/// The validated asset graph.
pub fn graph(config: &Config) -> Result<(Definitions, Arc<AssetGraph>), Failure> {
    let defs = definitions(config)?;
    let graph = defs
        .graph()
        .map_err(|e| Failure::Usage(format!("invalid asset definitions: {e}")))?;
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
