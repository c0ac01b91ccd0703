//! The assets compiled into the `orch` binary: the music-streaming platform (the lake's raw
//! hours, the warehouse's staging loads, the dbt project's models and marts) and its hourly
//! schedule; with `[assets] example = true`, also a small example graph that needs neither a
//! lake nor a warehouse.

mod example;
pub mod platform;

use orch::Definitions;
use orch::config::Config;
use orch::daemon::{Catchup, PartitionRule, ScheduleDefinition};

/// Everything this crate defines, for the project described by `config`.
pub fn definitions(config: &Config) -> Result<Definitions, String> {
    let mut defs = platform::definitions(config)?;
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
