//! Execution: runs a plan on tokio. Steps start as soon as their upstream steps succeed, up to
//! the run's concurrency limit and their pools' limits; a failed step's downstream steps are
//! skipped; cancellation stops new steps, fires the steps' cancellation token and waits for
//! them (CANCELING, then CANCELED). Every event is handed to the [`sink::EventSink`] as it
//! happens.

pub mod sink;
pub mod step;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ExecutionConfig;
use crate::context::Resources;
use crate::event::{ErrorInfo, EventKind};
use crate::graph::AssetGraph;
use crate::metadata::{Metadata, MetadataValue};
use crate::plan::Plan;
use crate::run::{NewRun, Run, RunId, RunStatus};
use crate::storage::{Storage, StorageError};

pub use sink::{EventObserver, EventSink};
pub use step::{StepOutcome, StepRecorder, StepStatus};

use step::{StepJob, now_event};

/// Why a run could not be carried out (as opposed to a run that ran and failed).
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the run's events could not all be stored: {0}")]
    EventLog(String),
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub run: Run,
    /// One outcome per planned step, in plan order.
    pub steps: Vec<StepOutcome>,
}

impl RunOutcome {
    pub fn failed_steps(&self) -> impl Iterator<Item = &StepOutcome> {
        self.steps.iter().filter(|s| s.status == StepStatus::Failed)
    }
}

/// What to run a plan with.
#[derive(Clone)]
pub struct Executor {
    graph: Arc<AssetGraph>,
    storage: Arc<dyn Storage>,
    resources: Resources,
    config: ExecutionConfig,
    pools: BTreeMap<String, usize>,
}

/// What a run is asked with, as stored.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// The selection as typed.
    pub selection: String,
    pub tags: BTreeMap<String, String>,
    pub parent_run_id: Option<RunId>,
    pub root_run_id: Option<RunId>,
}

impl Executor {
    pub fn new(
        graph: Arc<AssetGraph>,
        storage: Arc<dyn Storage>,
        resources: Resources,
        config: ExecutionConfig,
        pools: BTreeMap<String, usize>,
    ) -> Executor {
        Executor {
            graph,
            storage,
            resources,
            config,
            pools,
        }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn graph(&self) -> &Arc<AssetGraph> {
        &self.graph
    }

    /// Stores a new run for `plan` that this process executes next (`execute`): it is created
    /// STARTING, so that no daemon claims it from the queue.
    pub async fn create_run(&self, plan: &Plan, request: &RunRequest) -> Result<Run, StorageError> {
        self.store_run(plan, request, RunStatus::Starting).await
    }

    /// Stores a new QUEUED run for `plan` and wakes the daemons: one of them will claim it.
    pub async fn queue_run(&self, plan: &Plan, request: &RunRequest) -> Result<Run, StorageError> {
        let run = self.store_run(plan, request, RunStatus::Queued).await?;
        self.storage.notify_queue().await?;
        Ok(run)
    }

    async fn store_run(
        &self,
        plan: &Plan,
        request: &RunRequest,
        status: RunStatus,
    ) -> Result<Run, StorageError> {
        let (partition_key, partition_key_end) = plan.partition.bounds();
        let run_id = RunId::new();
        let run = self
            .storage
            .create_run(&NewRun {
                run_id,
                status,
                selection: request.selection.clone(),
                asset_keys: plan.asset_keys.clone(),
                partition_key,
                partition_key_end,
                tags: request.tags.clone(),
                parent_run_id: request.parent_run_id,
                root_run_id: request.root_run_id.or(request.parent_run_id),
                created_at: Utc::now(),
            })
            .await?;
        self.storage
            .append_events(&[now_event(run_id, EventKind::for_run_status(status))])
            .await?;
        Ok(run)
    }

    /// Executes `plan` as run `run_id` (QUEUED or STARTING) to its end. `cancel` cancels it.
    /// `observers` see every event as it happens.
    pub async fn execute(
        &self,
        run_id: RunId,
        plan: &Plan,
        cancel: CancellationToken,
        observers: Vec<EventObserver>,
    ) -> Result<RunOutcome, ExecuteError> {
        let (sink, writer) = EventSink::spawn(self.storage.clone(), observers);
        let result = self.drive(run_id, plan, cancel, &sink).await;
        drop(sink);
        let written = writer
            .await
            .map_err(|e| ExecuteError::EventLog(e.to_string()))?;
        let outcome = result?;
        written.map_err(ExecuteError::EventLog)?;
        Ok(outcome)
    }

    async fn transition(
        &self,
        sink: &EventSink,
        run_id: RunId,
        to: RunStatus,
        message: Option<String>,
    ) -> Result<Run, StorageError> {
        let run = self.storage.transition_run(run_id, to, Utc::now()).await?;
        let mut event = now_event(run_id, EventKind::for_run_status(to));
        event.body.message = message;
        sink.event(event);
        Ok(run)
    }

    async fn drive(
        &self,
        run_id: RunId,
        plan: &Plan,
        cancel: CancellationToken,
        sink: &EventSink,
    ) -> Result<RunOutcome, ExecuteError> {
        let current = self
            .storage
            .get_run(run_id)
            .await?
            .ok_or(StorageError::RunNotFound(run_id))?;
        if current.status == RunStatus::Queued {
            self.transition(sink, run_id, RunStatus::Starting, None)
                .await?;
        }
        self.transition(sink, run_id, RunStatus::Started, None)
            .await?;
        sink.event(plan_event(run_id, plan));

        let steps = &plan.steps;
        let n = steps.len();
        let mut remaining: Vec<usize> = steps.iter().map(|s| s.upstream.len()).collect();
        let downstream = crate::plan::downstream_of(steps);
        let mut outcomes: Vec<Option<StepOutcome>> = vec![None; n];
        let mut ready: VecDeque<usize> = (0..n).filter(|i| remaining[*i] == 0).collect();
        let mut running: JoinSet<(usize, StepOutcome)> = JoinSet::new();
        let mut task_steps: HashMap<tokio::task::Id, usize> = HashMap::new();
        let mut pool_use: HashMap<String, usize> = HashMap::new();
        let mut canceling = false;

        loop {
            if cancel.is_cancelled() && !canceling {
                canceling = true;
                self.begin_cancel(sink, run_id).await?;
            }
            if !canceling {
                self.launch(
                    run_id,
                    plan,
                    &mut ready,
                    &mut running,
                    &mut task_steps,
                    &mut pool_use,
                    &cancel,
                    sink,
                );
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next() => joined,
                () = cancel.cancelled(), if !canceling => continue,
            };
            let Some(joined) = joined else { break };
            let (index, outcome) = match joined {
                Ok(pair) => pair,
                Err(e) => {
                    // Computes' panics are caught inside the step; this is the task itself.
                    let index = task_steps
                        .get(&e.id())
                        .copied()
                        .expect("every task is mapped");
                    tracing::error!(error = %e, step = %steps[index].key, "a step's task failed");
                    (
                        index,
                        StepOutcome {
                            key: steps[index].key.clone(),
                            status: StepStatus::Failed,
                            attempts: 1,
                            error: Some(format!("the step's task failed: {e}")),
                            duration: None,
                        },
                    )
                }
            };
            if let Some(used) = self.graph.definitions()[steps[index].definition]
                .pool
                .as_ref()
                .and_then(|pool| pool_use.get_mut(pool))
            {
                *used = used.saturating_sub(1);
            }
            match outcome.status {
                StepStatus::Succeeded => {
                    for &d in &downstream[index] {
                        remaining[d] -= 1;
                        if remaining[d] == 0 && outcomes[d].is_none() {
                            ready.push_back(d);
                        }
                    }
                }
                StepStatus::Failed => {
                    self.skip_downstream(run_id, plan, index, &downstream, &mut outcomes, sink);
                }
                _ => {}
            }
            outcomes[index] = Some(outcome);
        }

        let outcomes: Vec<StepOutcome> = outcomes
            .into_iter()
            .zip(steps)
            .map(|(o, step)| {
                o.unwrap_or_else(|| StepOutcome {
                    key: step.key.clone(),
                    status: StepStatus::NotStarted,
                    attempts: 0,
                    error: None,
                    duration: None,
                })
            })
            .collect();
        sink.flush().await.map_err(ExecuteError::EventLog)?;

        let failed: Vec<&StepOutcome> = outcomes
            .iter()
            .filter(|o| o.status == StepStatus::Failed)
            .collect();
        let run = if canceling {
            self.transition(sink, run_id, RunStatus::Canceled, None)
                .await?
        } else if !failed.is_empty() {
            let names: Vec<&str> = failed.iter().map(|o| o.key.as_str()).collect();
            let message = format!(
                "{} step{} failed: {}",
                failed.len(),
                if failed.len() == 1 { "" } else { "s" },
                names.join(", ")
            );
            self.finish(sink, run_id, RunStatus::Failure, Some(message))
                .await?
        } else {
            self.finish(sink, run_id, RunStatus::Success, None).await?
        };
        sink.flush().await.map_err(ExecuteError::EventLog)?;
        Ok(RunOutcome {
            run,
            steps: outcomes,
        })
    }

    /// Moves the run to its final status; if another process asked to cancel it meanwhile
    /// (CANCELING), it ends CANCELED instead.
    async fn finish(
        &self,
        sink: &EventSink,
        run_id: RunId,
        to: RunStatus,
        message: Option<String>,
    ) -> Result<Run, StorageError> {
        match self.transition(sink, run_id, to, message).await {
            Err(StorageError::IllegalTransition {
                from: RunStatus::Canceling,
                ..
            }) => {
                self.transition(sink, run_id, RunStatus::Canceled, None)
                    .await
            }
            other => other,
        }
    }

    async fn begin_cancel(&self, sink: &EventSink, run_id: RunId) -> Result<(), StorageError> {
        match self
            .transition(
                sink,
                run_id,
                RunStatus::Canceling,
                Some("cancel requested".into()),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Someone else (the CLI's signal handler, another process) already marked it.
            Err(StorageError::IllegalTransition {
                from: RunStatus::Canceling,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        run_id: RunId,
        plan: &Plan,
        ready: &mut VecDeque<usize>,
        running: &mut JoinSet<(usize, StepOutcome)>,
        task_steps: &mut HashMap<tokio::task::Id, usize>,
        pool_use: &mut HashMap<String, usize>,
        cancel: &CancellationToken,
        sink: &EventSink,
    ) {
        let mut waiting = VecDeque::new();
        while running.len() < self.config.max_concurrent {
            let Some(index) = ready.pop_front() else {
                break;
            };
            let step = &plan.steps[index];
            let definition = &self.graph.definitions()[step.definition];
            if let Some(pool) = &definition.pool {
                let limit = self.pools.get(pool).copied().unwrap_or(usize::MAX);
                let used = pool_use.entry(pool.clone()).or_default();
                if *used >= limit {
                    waiting.push_back(index);
                    continue;
                }
                *used += 1;
            }
            let job = StepJob {
                run_id,
                step: step.clone(),
                definition: definition.clone(),
                sink: sink.clone(),
                cancel: cancel.clone(),
                resources: self.resources.clone(),
                cancel_grace: self.config.cancel_grace,
            };
            let handle = running.spawn(async move { (index, job.run().await) });
            task_steps.insert(handle.id(), index);
        }
        // Steps held back by their pool keep their place at the front.
        while let Some(index) = waiting.pop_back() {
            ready.push_front(index);
        }
    }

    fn skip_downstream(
        &self,
        run_id: RunId,
        plan: &Plan,
        failed: usize,
        downstream: &[Vec<usize>],
        outcomes: &mut [Option<StepOutcome>],
        sink: &EventSink,
    ) {
        let failed_key = &plan.steps[failed].key;
        let mut stack: Vec<usize> = downstream[failed].clone();
        while let Some(index) = stack.pop() {
            if outcomes[index].is_some() {
                continue;
            }
            let step = &plan.steps[index];
            let message = format!("skipped: upstream step `{failed_key}` failed");
            let mut event = now_event(run_id, EventKind::StepSkipped).step(step.key.clone());
            if step.assets.len() == 1 {
                event.asset_key = Some(step.assets[0].clone());
            }
            event.partition_key = step.partition.first_key().map(str::to_owned);
            event.body.message = Some(message.clone());
            sink.event(event);
            outcomes[index] = Some(StepOutcome {
                key: step.key.clone(),
                status: StepStatus::Skipped,
                attempts: 0,
                error: Some(message),
                duration: None,
            });
            stack.extend(downstream[index].iter().copied());
        }
    }
}

/// An ENGINE_EVENT carrying the plan, so that a run's history shows steps that never started.
fn plan_event(run_id: RunId, plan: &Plan) -> crate::event::Event {
    let mut event = now_event(run_id, EventKind::EngineEvent);
    event.body.message = Some(format!(
        "planned {} step{}",
        plan.steps.len(),
        if plan.steps.len() == 1 { "" } else { "s" }
    ));
    event.body.metadata = Metadata::new().with("plan", MetadataValue::Json(plan.steps_json()));
    event
}

/// Formats an error for a RUN_FAILURE body.
pub fn error_info(message: impl Into<String>) -> ErrorInfo {
    ErrorInfo {
        message: message.into(),
        causes: Vec::new(),
    }
}

/// How long to wait, at most, for a canceled step before giving up on it.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(10);
