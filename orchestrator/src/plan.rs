//! Planning, pure (no IO): a selection of assets plus the requested partition(s) give a plan of
//! steps and their dependencies.

use crate::partitions::TimeWindow;

/// The partition(s) a step covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum StepPartition {
    /// The asset is not partitioned.
    #[default]
    None,
    /// One partition, with its time window for time partitions.
    Key {
        key: String,
        window: Option<TimeWindow>,
    },
    /// A range of partitions in one step (assets with a single-run backfill policy).
    Range {
        keys: Vec<String>,
        window: Option<TimeWindow>,
    },
}

impl StepPartition {
    /// The key of a single-partition step.
    pub fn key(&self) -> Option<&str> {
        match self {
            StepPartition::Key { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The first key (the only one, for a single partition).
    pub fn first_key(&self) -> Option<&str> {
        match self {
            StepPartition::None => None,
            StepPartition::Key { key, .. } => Some(key),
            StepPartition::Range { keys, .. } => keys.first().map(String::as_str),
        }
    }

    /// The last key of a range.
    pub fn last_key(&self) -> Option<&str> {
        match self {
            StepPartition::Range { keys, .. } => keys.last().map(String::as_str),
            _ => None,
        }
    }

    /// Every key the step covers.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            StepPartition::None => Vec::new(),
            StepPartition::Key { key, .. } => vec![key.as_str()],
            StepPartition::Range { keys, .. } => keys.iter().map(String::as_str).collect(),
        }
    }

    pub fn window(&self) -> Option<TimeWindow> {
        match self {
            StepPartition::None => None,
            StepPartition::Key { window, .. } | StepPartition::Range { window, .. } => *window,
        }
    }
}
