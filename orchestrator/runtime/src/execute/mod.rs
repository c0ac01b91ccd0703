//! Execution: runs a plan on tokio. Steps start as soon as their upstream steps succeed, up to
//! the run's concurrency limit and their pools' limits; a failed step's downstream steps are
//! skipped; cancellation stops new steps, fires the steps' cancellation token and waits for
//! them (CANCELING, then CANCELED). Every event is handed to the [`sink::EventSink`] as it
//! happens.
//!
//! A pool's limit holds across every run sharing the run history, in any process: a step of
//! a limited pool takes one of its slots through the storage before it starts, renews it while
//! it runs (for [`POOL_SLOT_TTL`], renewed every third of it) and gives it back when it ends.
//! A step waiting for a slot does not hold up the others; the run asks again every
//! [`POOL_RETRY`], and at once when one of its own steps gives a slot back.

mod host;
mod reexecute;
pub mod sink;
pub mod step;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::asset::AssetsDefinition;
use crate::config::ExecutionConfig;
use crate::context::Resources;
use crate::event::{Event, EventKind};
use crate::graph::AssetGraph;
use crate::metadata::{Metadata, MetadataValue};
use crate::plan::{Plan, Step};
use crate::request::RunRequest;
use crate::run::{Run, RunId, RunStatus};
use crate::storage::{PoolSlot, Storage, StorageError};
use crate::submit::Submit;

pub use crate::steps::StepState;
pub use reexecute::{ReexecuteError, reexecution};
pub use sink::{EventObserver, EventSink};
pub use step::{StepOutcome, StepRecorder, now_event};

use step::StepJob;

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
        self.steps.iter().filter(|s| s.status == StepState::Failed)
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
    slot_ttl: Duration,
}

/// How long a pool slot stays held without renewal, unless [`Executor::with_pool_slot_ttl`]
/// says otherwise: the slots of a process that dies are free again after this. Slots are
/// renewed every third of it.
pub const POOL_SLOT_TTL: Duration = Duration::from_secs(30);
/// How often steps waiting for a pool slot ask again (a step of the same run that ends and
/// gives its slot back makes them ask at once).
pub const POOL_RETRY: Duration = Duration::from_millis(200);

/// The pool slots held by a run's steps, and what was said about its waiting steps.
#[derive(Default)]
struct Slots {
    /// Step index → the pool whose slot it holds.
    held: HashMap<usize, String>,
    /// Steps that waited for a slot (each is announced once).
    announced: HashSet<usize>,
    /// Steps whose slot expired and could not be taken again (each is announced once).
    lost: HashSet<usize>,
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
            slot_ttl: POOL_SLOT_TTL,
        }
    }

    /// How long a pool slot stays held without renewal (renewals come every third of it).
    pub fn with_pool_slot_ttl(mut self, ttl: Duration) -> Executor {
        self.slot_ttl = ttl;
        self
    }

    /// How often held pool slots are renewed.
    fn slot_renewal(&self) -> Duration {
        self.slot_ttl / 3
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn graph(&self) -> &Arc<AssetGraph> {
        &self.graph
    }

    /// Stores the run of `request` (whose plan is `plan`) for this process to execute next
    /// (`execute`): it is created STARTING, so that no daemon claims it from the queue.
    pub async fn create_run(&self, plan: &Plan, request: &RunRequest) -> Result<Run, StorageError> {
        crate::submit::store(self.storage.as_ref(), plan, request, Submit::Here).await
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

        let mut slots = Slots::default();
        let stepped = self
            .run_steps(run_id, plan, &cancel, sink, &mut slots)
            .await;
        // Normally none is left; after an error, those of the steps abandoned with it.
        self.release_all(run_id, plan, &mut slots).await;
        let (outcomes, canceling) = stepped?;

        let steps = &plan.steps;
        let outcomes: Vec<StepOutcome> = outcomes
            .into_iter()
            .zip(steps)
            .map(|(o, step)| {
                o.unwrap_or_else(|| StepOutcome {
                    key: step.key.clone(),
                    status: StepState::NotStarted,
                    attempts: 0,
                    error: None,
                    duration: None,
                })
            })
            .collect();
        sink.flush().await.map_err(ExecuteError::EventLog)?;

        let failed: Vec<&StepOutcome> = outcomes
            .iter()
            .filter(|o| o.status == StepState::Failed)
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

    /// Runs the plan's steps until none is left to start (or the run is canceled and its
    /// running steps have ended). Returns each step's outcome (`None`: never started) and
    /// whether the run was canceled. The pool slots its steps hold are in `slots`.
    async fn run_steps(
        &self,
        run_id: RunId,
        plan: &Plan,
        cancel: &CancellationToken,
        sink: &EventSink,
        slots: &mut Slots,
    ) -> Result<(Vec<Option<StepOutcome>>, bool), ExecuteError> {
        let steps = &plan.steps;
        let n = steps.len();
        let mut remaining: Vec<usize> = steps.iter().map(|s| s.upstream.len()).collect();
        let downstream = crate::plan::downstream_of(steps);
        let mut outcomes: Vec<Option<StepOutcome>> = vec![None; n];
        let mut ready: VecDeque<usize> = (0..n).filter(|i| remaining[*i] == 0).collect();
        let mut running: JoinSet<(usize, StepOutcome)> = JoinSet::new();
        let mut task_steps: HashMap<tokio::task::Id, usize> = HashMap::new();
        let mut canceling = false;
        let mut renew_at = Instant::now() + self.slot_renewal();

        loop {
            if cancel.is_cancelled() && !canceling {
                canceling = true;
                self.begin_cancel(sink, run_id).await?;
            }
            let mut waiting = false;
            if !canceling {
                let had_slots = !slots.held.is_empty();
                waiting = self
                    .launch(
                        run_id,
                        plan,
                        &mut ready,
                        &mut running,
                        &mut task_steps,
                        slots,
                        cancel,
                        sink,
                    )
                    .await;
                if !had_slots && !slots.held.is_empty() {
                    renew_at = Instant::now() + self.slot_renewal();
                }
            }
            if running.is_empty() && !waiting {
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next(), if !running.is_empty() => joined,
                () = cancel.cancelled(), if !canceling => continue,
                // Slots freed by other runs are only seen by asking again.
                () = tokio::time::sleep(POOL_RETRY), if waiting => continue,
                () = tokio::time::sleep_until(renew_at), if !slots.held.is_empty() => {
                    self.renew_slots(run_id, plan, slots, sink).await;
                    renew_at = Instant::now() + self.slot_renewal();
                    continue;
                }
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
                            status: StepState::Failed,
                            attempts: 1,
                            error: Some(format!("the step's task failed: {e}")),
                            duration: None,
                        },
                    )
                }
            };
            if let Some(pool) = slots.held.remove(&index) {
                self.release_slot(&pool, run_id, &steps[index].key).await;
            }
            match outcome.status {
                StepState::Succeeded => {
                    for &d in &downstream[index] {
                        remaining[d] -= 1;
                        if remaining[d] == 0 && outcomes[d].is_none() {
                            ready.push_back(d);
                        }
                    }
                }
                StepState::Failed => {
                    self.skip_downstream(run_id, plan, index, &downstream, &mut outcomes, sink);
                }
                _ => {}
            }
            outcomes[index] = Some(outcome);
        }
        Ok((outcomes, canceling))
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

    /// Starts ready steps, in order, up to the run's concurrency limit. A step whose pool has
    /// a limit starts only once it holds one of the pool's slots (taken through the storage,
    /// so that the limit holds across runs and processes); until then it keeps its place and
    /// the steps behind it may start. Returns whether a step waits for a slot.
    #[allow(clippy::too_many_arguments)]
    async fn launch(
        &self,
        run_id: RunId,
        plan: &Plan,
        ready: &mut VecDeque<usize>,
        running: &mut JoinSet<(usize, StepOutcome)>,
        task_steps: &mut HashMap<tokio::task::Id, usize>,
        slots: &mut Slots,
        cancel: &CancellationToken,
        sink: &EventSink,
    ) -> bool {
        let mut held_back = Vec::new();
        // Pools that refused a slot in this pass: their other steps do not ask again.
        let mut full: HashSet<&str> = HashSet::new();
        while running.len() < self.config.max_concurrent {
            let Some(index) = ready.pop_front() else {
                break;
            };
            let step = &plan.steps[index];
            let definition = &self.graph.definitions()[step.definition];
            if let Some((pool, limit)) = self.pool_limit(definition) {
                let acquired =
                    !full.contains(pool) && self.acquire(run_id, step, pool, limit, slots).await;
                if !acquired {
                    full.insert(pool);
                    if slots.announced.insert(index) {
                        let mut event = step_event(run_id, step, EventKind::EngineEvent)
                            .message(format!("waiting for a slot in pool `{pool}`"));
                        event.body.metadata =
                            Metadata::new().with("pool", pool).with("limit", limit);
                        sink.event(event);
                    }
                    held_back.push(index);
                    continue;
                }
                slots.held.insert(index, pool.to_owned());
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
        let waiting = !held_back.is_empty();
        for index in held_back.into_iter().rev() {
            ready.push_front(index);
        }
        waiting
    }

    /// The pool of a definition and its limit, if the pool has one (a pool without a
    /// configured limit is unlimited).
    fn pool_limit<'d>(&self, definition: &'d AssetsDefinition) -> Option<(&'d str, usize)> {
        let pool = definition.pool.as_deref()?;
        self.pools.get(pool).map(|&limit| (pool, limit))
    }

    /// Takes a slot of `pool` for `step`, if the pool has room across every run sharing the
    /// run history. The storage's count includes this run's slots; the local count only
    /// saves asking when this run alone fills the pool. A storage error counts as no room
    /// (the step waits and asks again).
    async fn acquire(
        &self,
        run_id: RunId,
        step: &Step,
        pool: &str,
        limit: usize,
        slots: &Slots,
    ) -> bool {
        if slots.held.values().filter(|p| *p == pool).count() >= limit {
            return false;
        }
        match self
            .storage
            .try_acquire_pool_slot(
                &PoolSlot {
                    pool,
                    run_id,
                    step_key: &step.key,
                },
                u32::try_from(limit).unwrap_or(u32::MAX),
                Utc::now(),
                self.slot_ttl,
            )
            .await
        {
            Ok(acquired) => acquired,
            Err(error) => {
                tracing::warn!(%error, pool, step = %step.key, "cannot take a pool slot; trying again");
                false
            }
        }
    }

    /// Renews every slot the run's steps hold. A slot that expired (the process could not
    /// renew it in time) is taken again if the pool has room; otherwise the step runs on
    /// without it, and an ENGINE_EVENT says that the pool's limit may be exceeded.
    async fn renew_slots(&self, run_id: RunId, plan: &Plan, slots: &mut Slots, sink: &EventSink) {
        for (&index, pool) in &slots.held {
            let step = &plan.steps[index];
            let now = Utc::now();
            let slot = PoolSlot {
                pool,
                run_id,
                step_key: &step.key,
            };
            let renewed = match self
                .storage
                .renew_pool_slot(&slot, now, self.slot_ttl)
                .await
            {
                Ok(true) => true,
                Ok(false) => {
                    let limit = self.pools.get(pool).copied().unwrap_or(usize::MAX);
                    self.storage
                        .try_acquire_pool_slot(
                            &slot,
                            u32::try_from(limit).unwrap_or(u32::MAX),
                            now,
                            self.slot_ttl,
                        )
                        .await
                        .unwrap_or(false)
                }
                Err(error) => {
                    tracing::warn!(%error, pool, step = %step.key, "cannot renew a pool slot; trying again");
                    continue;
                }
            };
            if renewed {
                slots.lost.remove(&index);
            } else if slots.lost.insert(index) {
                sink.event(
                    step_event(run_id, step, EventKind::EngineEvent).message(format!(
                        "lost its slot in pool `{pool}` (not renewed in time) and the pool is \
                         full: the step runs on, beyond the pool's limit"
                    )),
                );
            }
        }
    }

    async fn release_slot(&self, pool: &str, run_id: RunId, step_key: &str) {
        let slot = PoolSlot {
            pool,
            run_id,
            step_key,
        };
        if let Err(error) = self.storage.release_pool_slot(&slot).await {
            // The slot expires on its own.
            tracing::warn!(%error, pool, step = step_key, "cannot give back a pool slot");
        }
    }

    async fn release_all(&self, run_id: RunId, plan: &Plan, slots: &mut Slots) {
        for (index, pool) in std::mem::take(&mut slots.held) {
            self.release_slot(&pool, run_id, &plan.steps[index].key)
                .await;
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
            let mut event = step_event(run_id, step, EventKind::StepSkipped);
            event.body.message = Some(message.clone());
            sink.event(event);
            outcomes[index] = Some(StepOutcome {
                key: step.key.clone(),
                status: StepState::Skipped,
                attempts: 0,
                error: Some(message),
                duration: None,
            });
            stack.extend(downstream[index].iter().copied());
        }
    }
}

/// An event about `step` (with its asset, if it has one, and its first partition), stamped
/// now.
fn step_event(run_id: RunId, step: &Step, kind: EventKind) -> Event {
    let mut event = now_event(run_id, kind).step(step.key.clone());
    if step.assets.len() == 1 {
        event.asset_key = Some(step.assets[0].clone());
    }
    event.partition_key = step.partition.first_key().map(str::to_owned);
    event
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
