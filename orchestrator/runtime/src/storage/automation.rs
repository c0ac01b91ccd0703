//! The automation tick's records: ticks, evaluations and per-asset state (migration 0009).
//! The SQL is in the backends (`sql.rs`); these are the values that cross the trait.

use chrono::{DateTime, Utc};

use crate::run::RunId;

/// A recorded automation tick.
#[derive(Clone, Debug, PartialEq)]
pub struct AutomationTick {
    pub id: i64,
    pub tick_time: DateTime<Utc>,
    /// The tick this one followed (0 for the first).
    pub previous_id: i64,
    /// The daemon that evaluated it.
    pub daemon: String,
    pub evaluated_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub assets_evaluated: u32,
    /// Asset partitions requested.
    pub requested: u32,
    pub run_ids: Vec<RunId>,
}

/// A tick to record: `previous_id` must be the latest recorded tick's id (0 if none), or the
/// tick is refused.
#[derive(Clone, Debug)]
pub struct NewAutomationTick {
    pub tick_time: DateTime<Utc>,
    pub previous_id: i64,
    pub daemon: String,
    pub evaluated_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub assets_evaluated: u32,
    pub requested: u32,
}

/// One asset's evaluation at a tick.
#[derive(Clone, Debug, PartialEq)]
pub struct AutomationEvaluationRecord {
    pub tick_id: i64,
    pub tick_time: Option<DateTime<Utc>>,
    /// The asset key (user form, `a/b`).
    pub asset_key: String,
    /// The partitions requested (empty string: the unpartitioned asset).
    pub requested: Vec<String>,
    /// The runs that materialize them.
    pub run_ids: Vec<RunId>,
    /// The evaluated condition tree (`orch_core::automation::NodeEvaluation`) as JSON.
    pub tree: String,
}

/// The state an asset's next evaluation starts from (`orch_core::automation::AssetState` as
/// JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct AutomationStateRecord {
    pub asset_key: String,
    pub tick_id: i64,
    pub state: String,
}

/// Everything one tick writes, in one transaction.
#[derive(Clone, Debug)]
pub struct AutomationTickWrite<'a> {
    pub tick: &'a NewAutomationTick,
    pub runs: &'a [crate::run::NewRun],
    /// Evaluations, with `tick_id` ignored (the new tick's id is used).
    pub evaluations: &'a [AutomationEvaluationRecord],
    /// Changed states, with `tick_id` ignored.
    pub states: &'a [AutomationStateRecord],
}
