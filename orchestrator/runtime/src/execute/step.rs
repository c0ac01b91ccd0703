//! One step's execution: attempts with retries and backoff, cancellation, and the recording
//! of its materializations and check results as they happen.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::asset::{AssetKey, AssetsDefinition, CheckSpec, Severity};
use crate::context::{
    AssetContext, CheckResult, ComputeError, Materialization, Output, Resources, StepInfo,
};
use crate::event::{CheckEvaluation, ErrorInfo, Event, EventBody, EventKind};
use crate::plan::{Step, StepPartition};
use crate::run::RunId;
use crate::steps::StepState;

use super::host::RuntimeHost;
use super::sink::EventSink;

/// A step's result.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutcome {
    pub key: String,
    /// How it ended (a terminal state).
    pub status: StepState,
    pub attempts: u32,
    pub error: Option<String>,
    pub duration: Option<Duration>,
}

/// Records what a step reports: materializations and check results become events at once.
pub struct StepRecorder {
    run_id: RunId,
    step_key: Arc<str>,
    partition: StepPartition,
    sink: EventSink,
    assets: Vec<AssetKey>,
    code_versions: HashMap<AssetKey, Option<String>>,
    checks: HashMap<(AssetKey, String), CheckSpec>,
    state: Mutex<RecorderState>,
}

#[derive(Default)]
struct RecorderState {
    materialized: std::collections::BTreeMap<AssetKey, crate::metadata::Metadata>,
    evaluated: BTreeSet<(AssetKey, String)>,
    blocking_failures: Vec<String>,
}

impl StepRecorder {
    fn new(
        run_id: RunId,
        step: &Step,
        definition: &AssetsDefinition,
        sink: EventSink,
    ) -> StepRecorder {
        let mut code_versions = HashMap::new();
        let mut checks = HashMap::new();
        for spec in &definition.specs {
            if step.assets.contains(&spec.key) {
                code_versions.insert(spec.key.clone(), spec.code_version.clone());
                for check in &spec.checks {
                    checks.insert((spec.key.clone(), check.name.clone()), check.clone());
                }
            }
        }
        StepRecorder {
            run_id,
            step_key: Arc::from(step.key.as_str()),
            partition: step.partition.clone(),
            sink,
            assets: step.assets.clone(),
            code_versions,
            checks,
            state: Mutex::new(RecorderState::default()),
        }
    }

    fn event(&self, kind: EventKind, asset: Option<&AssetKey>) -> Event {
        let mut event = now_event(self.run_id, kind).step(self.step_key.to_string());
        event.asset_key = asset.cloned();
        event.partition_key = self.partition.first_key().map(str::to_owned);
        event.body.partition_key_end = self.partition.last_key().map(str::to_owned);
        event
    }

    /// Records a materialization (one event per partition for a range step).
    pub fn materialized(&self, key: AssetKey, materialization: Materialization) {
        if !self.assets.contains(&key) {
            self.warn(format!(
                "ignoring a materialization of `{key}`, which this step does not materialize"
            ));
            return;
        }
        let body = EventBody {
            metadata: materialization.metadata.clone(),
            code_version: self.code_versions.get(&key).cloned().flatten(),
            ..EventBody::default()
        };
        let keys = self.partition.keys();
        if keys.len() > 1 {
            for partition in keys {
                let mut event = self.event(EventKind::AssetMaterialization, Some(&key));
                event.partition_key = Some(partition.to_owned());
                event.body = body.clone();
                self.sink.event(event);
            }
        } else {
            let mut event = self.event(EventKind::AssetMaterialization, Some(&key));
            event.body = EventBody {
                partition_key_end: event.body.partition_key_end.take(),
                ..body
            };
            self.sink.event(event);
        }
        self.state
            .lock()
            .expect("recorder lock")
            .materialized
            .insert(key.clone(), materialization.metadata.clone());
        for check in materialization.checks {
            let check = match check.asset_key {
                Some(_) => check,
                None => check.for_asset(key.clone()),
            };
            self.check(check);
        }
    }

    /// Records a check result.
    pub fn check(&self, result: CheckResult) {
        let Some(asset) = result.asset_key.clone().or_else(|| self.single_asset()) else {
            self.warn(format!(
                "ignoring check `{}`: a step of several assets must say which asset it checks",
                result.check_name
            ));
            return;
        };
        let spec = self.checks.get(&(asset.clone(), result.check_name.clone()));
        let severity = result
            .severity
            .or(spec.map(|s| s.severity))
            .unwrap_or(Severity::Error);
        let blocking = spec.is_some_and(|s| s.blocking);
        let mut event = self.event(EventKind::AssetCheckEvaluation, Some(&asset));
        event.body.metadata = result.metadata.clone();
        event.body.check = Some(CheckEvaluation {
            check_name: result.check_name.clone(),
            passed: result.passed,
            severity: severity.as_str().to_owned(),
            description: result.description.clone(),
        });
        self.sink.event(event);
        let mut state = self.state.lock().expect("recorder lock");
        state
            .evaluated
            .insert((asset.clone(), result.check_name.clone()));
        if !result.passed && blocking {
            state.blocking_failures.push(format!(
                "blocking check `{}` on `{asset}` failed",
                result.check_name
            ));
        }
    }

    fn single_asset(&self) -> Option<AssetKey> {
        (self.assets.len() == 1).then(|| self.assets[0].clone())
    }

    fn warn(&self, message: String) {
        self.sink
            .event(self.event(EventKind::EngineEvent, None).message(message));
    }
}

/// What every attempt of one step shares.
pub(crate) struct StepJob {
    pub run_id: RunId,
    pub step: Step,
    pub definition: AssetsDefinition,
    pub sink: EventSink,
    pub cancel: CancellationToken,
    pub resources: Resources,
    pub cancel_grace: Duration,
}

impl StepJob {
    /// Runs the step's attempts until one succeeds, retries run out, or the run is canceled.
    pub(crate) async fn run(self) -> StepOutcome {
        let started = Instant::now();
        let policy = self.definition.retry;
        let max_attempts = policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let recorder = Arc::new(StepRecorder::new(
                self.run_id,
                &self.step,
                &self.definition,
                self.sink.clone(),
            ));
            let mut start = recorder.event(EventKind::StepStart, self.single_asset());
            start.body.attempt = Some(attempt);
            self.sink.event(start);
            let attempt_started = Instant::now();
            let result = self.attempt(attempt, recorder.clone()).await;
            let elapsed = attempt_started.elapsed();
            let error = match result {
                Ok(()) => {
                    let mut success = recorder.event(EventKind::StepSuccess, self.single_asset());
                    success.body.attempt = Some(attempt);
                    success.body.duration_ms = Some(ms(elapsed));
                    self.sink.event(success);
                    return self.outcome(StepState::Succeeded, attempt, None, started);
                }
                Err(e) => e,
            };
            if self.cancel.is_cancelled() {
                let mut canceled = recorder.event(EventKind::StepCanceled, self.single_asset());
                canceled.body.attempt = Some(attempt);
                canceled.body.duration_ms = Some(ms(elapsed));
                canceled.body.message = Some("the run was canceled".into());
                self.sink.event(canceled);
                return self.outcome(
                    StepState::Canceled,
                    attempt,
                    Some("canceled".into()),
                    started,
                );
            }
            let info = ErrorInfo {
                message: error.message().to_owned(),
                causes: error.causes().to_vec(),
            };
            if error.is_retryable() && attempt < max_attempts {
                let delay = policy.delay_with(attempt, rand::random::<f64>());
                let mut retry = recorder.event(EventKind::StepUpForRetry, self.single_asset());
                retry.body.attempt = Some(attempt);
                retry.body.error = Some(info);
                retry.body.retry_delay_ms =
                    Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                retry.body.duration_ms = Some(ms(elapsed));
                self.sink.event(retry);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = self.cancel.cancelled() => {
                        let mut canceled = recorder.event(EventKind::StepCanceled, self.single_asset());
                        canceled.body.attempt = Some(attempt);
                        canceled.body.message = Some("the run was canceled while the step waited to retry".into());
                        self.sink.event(canceled);
                        return self.outcome(StepState::Canceled, attempt, Some("canceled".into()), started);
                    }
                }
                attempt += 1;
                continue;
            }
            let message = error.to_string();
            let mut failure = recorder.event(EventKind::StepFailure, self.single_asset());
            failure.body.attempt = Some(attempt);
            failure.body.error = Some(info.clone());
            failure.body.duration_ms = Some(ms(elapsed));
            self.sink.event(failure);
            let materialized = recorder
                .state
                .lock()
                .expect("recorder lock")
                .materialized
                .clone();
            for asset in self
                .step
                .assets
                .iter()
                .filter(|a| !materialized.contains_key(*a))
            {
                let mut failed = recorder.event(EventKind::AssetFailed, Some(asset));
                failed.body.error = Some(info.clone());
                self.sink.event(failed);
            }
            return self.outcome(StepState::Failed, attempt, Some(message), started);
        }
    }

    fn single_asset(&self) -> Option<&AssetKey> {
        (self.step.assets.len() == 1).then(|| &self.step.assets[0])
    }

    fn outcome(
        &self,
        status: StepState,
        attempts: u32,
        error: Option<String>,
        started: Instant,
    ) -> StepOutcome {
        StepOutcome {
            key: self.step.key.clone(),
            status,
            attempts,
            error,
            duration: Some(started.elapsed()),
        }
    }

    /// One attempt: the compute, then its outputs, then the checks it did not report.
    async fn attempt(&self, attempt: u32, recorder: Arc<StepRecorder>) -> Result<(), ComputeError> {
        let info = StepInfo {
            run_id: self.run_id,
            step_key: recorder.step_key.clone(),
            assets: self.step.assets.clone(),
            partition: self.step.partition.clone(),
            attempt,
        };
        let host = Arc::new(RuntimeHost {
            run_id: self.run_id,
            step_key: recorder.step_key.clone(),
            sink: self.sink.clone(),
            cancel: self.cancel.clone(),
            recorder: recorder.clone(),
            captured: Arc::new(Mutex::new(Vec::new())),
        });
        let ctx = AssetContext::new(info, self.resources.clone(), host);
        let compute = std::panic::AssertUnwindSafe(self.definition.compute.call(ctx.clone()));
        let output = self
            .call(async move {
                match futures::FutureExt::catch_unwind(compute).await {
                    Ok(result) => result,
                    Err(panic) => Err(ComputeError::fatal(format!(
                        "the compute panicked: {}",
                        panic_message(&panic)
                    ))),
                }
            })
            .await?;
        match output {
            Output::Asset(m) => match self.single_asset() {
                Some(key) => recorder.materialized(key.clone(), m),
                None => {
                    return Err(ComputeError::fatal(format!(
                        "the compute returned one materialization for a step of {} assets; return Output::Assets or report each",
                        self.step.assets.len()
                    )));
                }
            },
            Output::Assets(list) => {
                for (key, m) in list {
                    recorder.materialized(key, m);
                }
            }
            Output::Reported => {}
        }
        self.evaluate_checks(&ctx, &recorder).await?;
        let state = recorder.state.lock().expect("recorder lock");
        if let Some(failure) = state.blocking_failures.first() {
            return Err(ComputeError::fatal(failure.clone()));
        }
        Ok(())
    }

    /// Runs a future, giving it `cancel_grace` to finish once the run is canceled.
    async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ComputeError>>,
    ) -> Result<T, ComputeError> {
        tokio::pin!(fut);
        tokio::select! {
            result = &mut fut => result,
            () = self.cancel.cancelled() => {
                match tokio::time::timeout(self.cancel_grace, &mut fut).await {
                    Ok(result) => result,
                    Err(_) => Err(ComputeError::canceled()),
                }
            }
        }
    }

    async fn evaluate_checks(
        &self,
        ctx: &AssetContext,
        recorder: &Arc<StepRecorder>,
    ) -> Result<(), ComputeError> {
        let mut pending: Vec<(AssetKey, CheckSpec, crate::metadata::Metadata)> = {
            let state = recorder.state.lock().expect("recorder lock");
            recorder
                .checks
                .iter()
                .filter(|((asset, name), spec)| {
                    spec.evaluate.is_some()
                        && state.materialized.contains_key(asset)
                        && !state.evaluated.contains(&(asset.clone(), name.clone()))
                })
                .map(|((asset, _), spec)| {
                    (
                        asset.clone(),
                        spec.clone(),
                        state.materialized[asset].clone(),
                    )
                })
                .collect()
        };
        pending.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
        for (asset, spec, metadata) in pending {
            let evaluate = spec.evaluate.clone().expect("filtered on evaluate");
            let result = self.call(evaluate(ctx.clone(), metadata)).await;
            match result {
                Ok(result) => recorder.check(CheckResult {
                    asset_key: Some(asset.clone()),
                    ..result
                }),
                Err(e) if self.cancel.is_cancelled() => return Err(e),
                Err(e) => recorder.check(
                    CheckResult::failed(spec.name.clone())
                        .for_asset(asset.clone())
                        .description(format!("the check could not run: {e}")),
                ),
            }
        }
        Ok(())
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A run-level event stamped now.
pub fn now_event(run_id: RunId, kind: EventKind) -> Event {
    Event::new(run_id, kind, Utc::now())
}
