//! The assets compiled into the `orch` binary. Until the streaming platform lands, this is the
//! example graph: a small music service's plays, generated deterministically per hour, counted
//! per song and rolled up into a daily top list.

mod example;

use orch::Definitions;
use orch::config::Config;

/// Everything this crate defines, for the project described by `config`.
pub fn definitions(config: &Config) -> Definitions {
    example::definitions(&config.state_dir.join("example"))
}
