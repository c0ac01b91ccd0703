//! The run queue's workers: claim QUEUED runs up to `local_runs` at once, execute each while
//! renewing its lease, and stop a run whose lease is lost or whose cancel was requested.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Clock, Daemon, plan_for_run};
use crate::event::{Event, EventKind};
use crate::execute::Executor;
use crate::metrics::DaemonMetrics;
use crate::run::RunStatus;
use crate::storage::{ClaimedRun, LeaseState, QueueLimits, Storage};

impl Daemon {
    pub(super) async fn worker_loop(
        self: &Arc<Self>,
        shutdown: CancellationToken,
        cancel_runs: CancellationToken,
    ) {
        let mut running: JoinSet<()> = JoinSet::new();
        let limits = QueueLimits {
            max_concurrent_runs: self.config.max_concurrent_runs,
        };
        loop {
            while !shutdown.is_cancelled() && running.len() < self.config.local_runs {
                match self
                    .storage
                    .claim_run(
                        &self.config.id,
                        self.clock.now(),
                        self.config.lease,
                        &limits,
                    )
                    .await
                {
                    Ok(Some(claim)) => {
                        self.metrics.runs_claimed.inc();
                        let me = self.clone();
                        let cancel = cancel_runs.child_token();
                        running.spawn(async move { me.execute_claimed(claim, cancel).await });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming a run failed; retrying");
                        break;
                    }
                }
            }
            if shutdown.is_cancelled() && running.is_empty() {
                return;
            }
            let room = running.len() < self.config.local_runs;
            tokio::select! {
                () = shutdown.cancelled(), if !shutdown.is_cancelled() => {
                    tracing::info!(runs = running.len(), "shutting down: waiting for runs in flight");
                }
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = self.storage.wait_for_queue(self.config.poll), if room && !shutdown.is_cancelled() => {}
                () = tokio::time::sleep(self.config.poll), if !room => {}
            }
        }
    }

    /// Executes a claimed run, renewing its lease until it ends.
    async fn execute_claimed(self: Arc<Self>, claim: ClaimedRun, cancel: CancellationToken) {
        let run = claim.run.clone();
        let run_id = run.run_id;
        let launched = Instant::now();
        self.metrics.runs_in_flight.inc();
        let _in_flight = InFlight(&self.metrics);
        let plan = match plan_for_run(&self.graph, &run) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(run = %run_id, error = %e, "cannot plan a claimed run");
                let _ = self
                    .storage
                    .append_events(&[crate::execute::now_event(run_id, EventKind::EngineEvent)
                        .message(format!("cannot plan this run: {e}"))])
                    .await;
                let _ = self
                    .storage
                    .transition_run(run_id, RunStatus::Failure, Utc::now())
                    .await;
                return;
            }
        };
        let _ =
            self.storage
                .append_events(&[crate::execute::now_event(run_id, EventKind::EngineEvent)
                    .message(format!(
                        "claimed by daemon `{}` (attempt {})",
                        claim.owner,
                        claim.attempt()
                    ))])
                .await;
        let renewals = tokio::spawn(renew_until_done(
            self.storage.clone(),
            self.clock.clone(),
            claim,
            self.config.lease,
            self.config.heartbeat,
            cancel.clone(),
        ));
        let mut execution = self.config.execution.clone();
        // A run must stop before its lease could expire and be handed to another daemon.
        execution.cancel_grace = execution.cancel_grace.min(self.config.lease / 4);
        let executor = Executor::new(
            self.graph.clone(),
            self.storage.clone(),
            self.resources.clone(),
            execution,
            self.config.pools.clone(),
        );
        let first_step = Arc::new(std::sync::OnceLock::new());
        let seen = first_step.clone();
        let metrics = self.metrics.clone();
        let observer: crate::execute::EventObserver = Arc::new(move |event: &Event| {
            if event.kind == EventKind::StepStart {
                let took = launched.elapsed();
                if seen.set(took).is_ok() {
                    metrics.first_step_seconds.observe(took.as_secs_f64());
                }
            }
            metrics.observe_event(event);
        });
        match executor
            .execute(run_id, &plan, cancel.clone(), vec![observer])
            .await
        {
            Ok(outcome) => {
                self.metrics
                    .run_ended(outcome.run.status, launched.elapsed());
                tracing::info!(
                    run = %run_id,
                    status = %outcome.run.status,
                    first_step_ms = first_step.get().map(|d| d.as_secs_f64() * 1000.0),
                    "run ended"
                )
            }
            Err(e) => tracing::error!(run = %run_id, error = %e, "run could not be carried out"),
        }
        renewals.abort();
    }
}

/// Counts a run out of `runs_in_flight` however its execution ends.
struct InFlight<'a>(&'a DaemonMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.runs_in_flight.dec();
    }
}

/// Renews a claim's lease every `every` until the task is aborted. CANCELING or a lost lease fires
/// `cancel`; so does failing to renew for two thirds of the lease (the lease could expire and
/// the run be handed to another daemon, so this one must stop first).
async fn renew_until_done(
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    claim: ClaimedRun,
    lease_for: Duration,
    every: Duration,
    cancel: CancellationToken,
) {
    let (run_id, lease) = (claim.run.run_id, claim.lease());
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match storage.renew_lease(&lease, clock.now(), lease_for).await {
            Ok(LeaseState::Held(RunStatus::Canceling)) => {
                last_ok = Instant::now();
                if !cancel.is_cancelled() {
                    tracing::info!(run = %run_id, "cancel requested");
                    cancel.cancel();
                }
            }
            Ok(LeaseState::Held(_)) => last_ok = Instant::now(),
            Ok(LeaseState::Lost) => {
                tracing::warn!(run = %run_id, "lease lost; stopping the run");
                cancel.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(run = %run_id, error = %e, "cannot renew the lease");
                if last_ok.elapsed() > lease_for * 2 / 3 {
                    tracing::error!(run = %run_id, "lease about to expire; stopping the run");
                    cancel.cancel();
                    return;
                }
            }
        }
    }
}
