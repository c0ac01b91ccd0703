//! Re-execution: a finished run's plan again, whole or only the steps that did not succeed,
//! as a new run whose parent is the old one. `orch runs reexecute` and the web UI both plan it
//! here.

use std::collections::BTreeSet;

use crate::event::EventKind;
use crate::graph::AssetGraph;
use crate::plan::{Plan, STEP_SELECTION_TAG};
use crate::run::{Run, RunId, RunStatus};
use crate::storage::{BACKFILL_TAG, EventFilter, SCHEDULE_TAG, Storage, StorageError};

use super::RunRequest;

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

/// The plan and request of `parent`'s re-execution. The parent's tags are kept but for those
/// that tie a run to a schedule tick, a backfill or a step subset; `from_failure` keeps only
/// the steps without a STEP_SUCCESS event and records them as the run's step subset.
pub async fn reexecution(
    storage: &dyn Storage,
    graph: &AssetGraph,
    parent: &Run,
    from_failure: bool,
) -> Result<(Plan, RunRequest), ReexecuteError> {
    if !parent.status.is_terminal() {
        return Err(ReexecuteError::NotEnded {
            run_id: parent.run_id,
            status: parent.status,
        });
    }
    let mut plan =
        crate::daemon::plan_for_run(graph, parent).map_err(|e| ReexecuteError::Plan {
            run_id: parent.run_id,
            reason: e.to_string(),
        })?;
    let mut tags = parent.tags.clone();
    for tag in [
        STEP_SELECTION_TAG,
        SCHEDULE_TAG,
        crate::daemon::TICK_TAG,
        BACKFILL_TAG,
    ] {
        tags.remove(tag);
    }
    if from_failure {
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
        plan.retain_steps(&remaining);
        let keys: Vec<&String> = remaining.iter().collect();
        tags.insert(
            STEP_SELECTION_TAG.to_owned(),
            serde_json::to_string(&keys).expect("strings serialize"),
        );
    }
    let request = RunRequest {
        selection: parent.selection.clone(),
        tags,
        parent_run_id: Some(parent.run_id),
        root_run_id: Some(parent.root_run_id.unwrap_or(parent.run_id)),
    };
    Ok((plan, request))
}
