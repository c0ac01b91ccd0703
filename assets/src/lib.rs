//! The music-streaming platform on orch, in one crate: its settings (`[platform]` in
//! `orch.toml`), its assets (the lake's raw hours, the warehouse's staging loads, the dbt
//! project's models and marts) and hourly schedule, the lake as its late-file sensor lists it,
//! eventsim's sink into the lake, the queries behind the dashboards, and what `orch dev` does
//! on first start. With `[assets] example = true`, also a small example graph that needs
//! neither a lake nor a warehouse.
//!
//! The engine knows none of this: the `orch` binary loads these definitions beside those of
//! `orch.toml`.

pub mod assets;
pub mod config;
pub mod dev;
pub mod eventsim_sink;
mod example;
pub mod marts;
pub mod sensor;

use orch::Definitions;
use orch::daemon::{Catchup, PartitionRule, ScheduleDefinition};

pub use config::PlatformConfig;
pub use sensor::LakeFiles;

/// The pool every asset writing to the warehouse runs in (one at a time on DuckDB: see
/// [`PlatformConfig::pool_defaults`]).
pub const WAREHOUSE_POOL: &str = "warehouse";

/// The pool of dbt builds on BigQuery, where loads run concurrently but builds one at a time
/// (see [`PlatformConfig::pool_defaults`]): the vault's insert-only loads and the marts' full
/// rebuilds assume that each build starts after the one before it ended.
pub const DBT_POOL: &str = "dbt";

/// Everything this crate defines, for the project described by `config`.
pub fn definitions(config: &orch::config::Config) -> Result<Definitions, String> {
    let settings = PlatformConfig::from_config(config)?;
    let mut defs = assets::definitions(config, &settings)?;
    if config.example_assets {
        defs = defs.merge(example::definitions(&config.state_dir.join("example")));
    }
    Ok(defs.schedule(hourly_pipeline()))
}

/// At ten past every hour, the hour that just ended, for every compiled-in asset. Off until
/// `orch schedules on hourly_pipeline`.
fn hourly_pipeline() -> ScheduleDefinition {
    ScheduleDefinition::new("hourly_pipeline", "10 * * * *", "UTC", "*")
        .expect("a valid schedule")
        .partition_rule(PartitionRule::LastComplete)
        .catchup(Catchup::Latest(1))
}
