//! Re-execution: a finished run's plan again, whole or only the steps that did not succeed,
//! as a new run whose parent is the old one. `orch runs reexecute` and the web UI both ask for
//! it here; the request then goes the one way every request goes (`crate::submit`).

use std::collections::BTreeSet;

use crate::event::EventKind;
use crate::graph::AssetGraph;
use crate::request::RunRequest;
use crate::run::{Run, RunId, RunStatus};
use crate::storage::{EventFilter, Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ReexecuteError {
    #[error("run {run_id} is {status}: re-execute it once it has ended")]
    NotEnded { run_id: RunId, status: RunStatus },
    #[error("cannot re-execute run {run_id}: {reason}")]
    Plan { run_id: RunId, reason: String },
    #[error("every step of run {0} succeeded: nothing to re-execute from failure")]
    NothingFailed(RunId),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The request of `parent`'s re-execution. The parent's tags are kept but for those that tie a
/// run to its launch (a schedule tick, a sensor, a backfill); `from_failure` keeps only the
/// steps without a STEP_SUCCESS event, as the run's step subset.
pub async fn reexecution(
    storage: &dyn Storage,
    graph: &AssetGraph,
    parent: &Run,
    from_failure: bool,
) -> Result<RunRequest, ReexecuteError> {
    if !parent.status.is_terminal() {
        return Err(ReexecuteError::NotEnded {
            run_id: parent.run_id,
            status: parent.status,
        });
    }
    let whole = RunRequest::reexecution(parent, parent.step_subset.clone());
    let plan = whole.plan(graph).map_err(|e| ReexecuteError::Plan {
        run_id: parent.run_id,
        reason: e.to_string(),
    })?;
    if !from_failure {
        return Ok(whole);
    }
    let filter = EventFilter {
        kinds: vec![EventKind::StepSuccess],
        ..EventFilter::default()
    };
    let succeeded: BTreeSet<String> = storage
        .run_events(parent.run_id, &filter)
        .await?
        .into_iter()
        .filter_map(|e| e.event.step_key)
        .collect();
    let remaining: BTreeSet<String> = plan
        .steps
        .iter()
        .map(|s| s.key.clone())
        .filter(|k| !succeeded.contains(k))
        .collect();
    if remaining.is_empty() {
        return Err(ReexecuteError::NothingFailed(parent.run_id));
    }
    Ok(RunRequest::reexecution(parent, Some(remaining)))
}
