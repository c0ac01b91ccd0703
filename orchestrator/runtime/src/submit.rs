//! The one way from a request to a stored run: plan the [`RunRequest`] against the graph
//! ([`RunRequest::plan`], in the core), make its run with a fresh id and the time now, store it
//! with its first event, and wake the daemons when it is queued. The CLI, the web UI, `orch
//! dev`, re-execution and backfills all come through here; schedule ticks and sensors plan
//! and make their run the same way and store it in the transaction that records their tick.

use chrono::Utc;

use crate::event::EventKind;
use crate::execute::now_event;
use crate::graph::AssetGraph;
use crate::plan::Plan;
use crate::request::{RequestError, RunRequest};
use crate::run::{Run, RunStatus};
use crate::storage::{Storage, StorageError};

/// Who executes the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submit {
    /// Stored QUEUED: a daemon claims and executes it.
    Queue,
    /// Stored STARTING: this process executes it next, so no daemon claims it.
    Here,
}

/// Why a request could not become a run.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request itself is wrong (bad input): its message says what and where.
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A stored run and the plan it executes.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub run: Run,
    pub plan: Plan,
}

/// Plans `request` in `graph` and stores its run (see the module documentation).
pub async fn submit(
    storage: &dyn Storage,
    graph: &AssetGraph,
    request: &RunRequest,
    how: Submit,
) -> Result<Submitted, SubmitError> {
    let plan = request.plan(graph)?;
    let run = store(storage, &plan, request, how).await?;
    Ok(Submitted { run, plan })
}

/// Stores the run of `request` whose plan the caller made already (`request.plan(graph)`).
pub async fn store(
    storage: &dyn Storage,
    plan: &Plan,
    request: &RunRequest,
    how: Submit,
) -> Result<Run, StorageError> {
    let now = Utc::now();
    let mut new_run = request.new_run(plan, crate::new_run_id(), now);
    new_run.status = match how {
        Submit::Queue => RunStatus::Queued,
        Submit::Here => RunStatus::Starting,
    };
    let run = storage.create_run(&new_run).await?;
    storage
        .append_events(&[now_event(
            run.run_id,
            EventKind::for_run_status(new_run.status),
        )])
        .await?;
    if how == Submit::Queue {
        storage.notify_queue().await?;
    }
    Ok(run)
}
