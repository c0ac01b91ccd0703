//! The assets compiled into the `orch` binary. Until the streaming platform lands, this is the
//! example graph: a small music service's plays, generated deterministically per hour, counted
//! per song and rolled up into a daily top list.

mod example;

use orch::Definitions;
use orch::config::Config;
use orch::daemon::{Catchup, PartitionRule, ScheduleDefinition};

/// Everything this crate defines, for the project described by `config`.
pub fn definitions(config: &Config) -> Definitions {
    example::definitions(&config.state_dir.join("example")).schedule(hourly_pipeline())
}

/// At ten past every hour, the hour that just ended, for every compiled-in asset. Off until
/// `orch schedules on hourly_pipeline`.
fn hourly_pipeline() -> ScheduleDefinition {
    ScheduleDefinition::new("hourly_pipeline", "10 * * * *", "UTC", "*")
        .expect("a valid schedule")
        .partition_rule(PartitionRule::LastComplete)
        .catchup(Catchup::Latest(1))
}
