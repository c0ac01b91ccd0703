//! The executor in process, on a real run history: retries with backoff, skip on failure,
//! cancellation, concurrency limits and pools (within a run, and across runs and processes),
//! checks, multi-asset steps.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use orch::RunRequest;
use orch::asset::{AssetSpec, Backoff, CheckSpec, RetryPolicy, Severity, asset};
use orch::config::ExecutionConfig;
use orch::event::{EventKind, StoredEvent};
use orch::execute::{Executor, RunOutcome, StepState};
use orch::plan::{self, PartitionRequest};
use orch::storage::{EventFilter, PoolSlot, Storage};
use orch::{
    AssetContext, AssetGraph, AssetKey, AssetsDefinition, CheckResult, ComputeError,
    Materialization, Output, Resources, RunId, RunStatus, Selection,
};
use tokio_util::sync::CancellationToken;

use crate::util::db;

type Def = AssetsDefinition;

/// How long the slots these tests take for other processes last.
const SLOT_TTL: Duration = Duration::from_secs(60);

fn noop(key: &str, deps: &[&str]) -> Def {
    asset(key)
        .deps(deps)
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
        .unwrap()
}

fn failing(key: &str, deps: &[&str], message: &'static str) -> Def {
    asset(key)
        .deps(deps)
        .compute(move |_ctx| async move { Err::<Materialization, _>(ComputeError::new(message)) })
        .unwrap()
}

struct Harness {
    storage: Arc<dyn Storage>,
    /// The test's own database, if the harness made it.
    _db: Option<db::TestDb>,
    config: ExecutionConfig,
    pools: BTreeMap<String, usize>,
    slot_ttl: Option<Duration>,
}

impl Harness {
    /// A harness on a new SQLite run history.
    async fn new() -> Harness {
        let db = db::sqlite().await;
        Harness::on(db.storage.clone()).owning(db)
    }

    /// A harness on `storage`, which the caller cleans up.
    fn on(storage: Arc<dyn Storage>) -> Harness {
        Harness {
            storage,
            _db: None,
            config: ExecutionConfig {
                max_concurrent: 8,
                cancel_grace: Duration::from_secs(5),
            },
            pools: BTreeMap::new(),
            slot_ttl: None,
        }
    }

    fn owning(mut self, db: db::TestDb) -> Harness {
        self._db = Some(db);
        self
    }

    async fn run(
        &self,
        defs: Vec<Def>,
        selection: &str,
        cancel: CancellationToken,
    ) -> (RunOutcome, Vec<StoredEvent>) {
        self.run_partition(defs, selection, PartitionRequest::None, cancel)
            .await
    }

    async fn run_partition(
        &self,
        defs: Vec<Def>,
        selection: &str,
        request: PartitionRequest,
        cancel: CancellationToken,
    ) -> (RunOutcome, Vec<StoredEvent>) {
        let graph = Arc::new(AssetGraph::new(defs).expect("valid graph"));
        let selected = Selection::parse(selection)
            .unwrap()
            .resolve(&graph)
            .unwrap();
        let plan = plan::plan(&graph, &selected, &request).expect("plan");
        let mut executor = Executor::new(
            graph,
            self.storage.clone(),
            Resources::new(),
            self.config.clone(),
            self.pools.clone(),
        );
        if let Some(ttl) = self.slot_ttl {
            executor = executor.with_pool_slot_ttl(ttl);
        }
        let run = executor
            .create_run(
                &plan,
                &RunRequest::new(selection, orch::plan::PartitionRequest::None),
            )
            .await
            .unwrap();
        let outcome = executor
            .execute(run.run_id, &plan, cancel, Vec::new())
            .await
            .expect("execute");
        let events = self
            .storage
            .run_events(run.run_id, &EventFilter::default())
            .await
            .unwrap();
        (outcome, events)
    }
}

fn status_of(outcome: &RunOutcome, key: &str) -> StepState {
    outcome
        .steps
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("no step {key}"))
        .status
}

fn kinds(events: &[StoredEvent], step: &str) -> Vec<EventKind> {
    events
        .iter()
        .filter(|e| e.event.step_key.as_deref() == Some(step))
        .map(|e| e.event.kind)
        .collect()
}

#[tokio::test]
async fn retries_wait_with_exponential_backoff_then_succeed() {
    let h = Harness::new().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let flaky = asset("flaky")
        .retry(
            RetryPolicy::attempts(4)
                .with_delay(Duration::from_millis(40))
                .with_backoff(Backoff::Exponential),
        )
        .compute(move |ctx: AssetContext| {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(ctx.attempt() as usize, n);
                if n < 3 {
                    Err(ComputeError::new(format!("attempt {n} failed")))
                } else {
                    Ok(Materialization::new())
                }
            }
        })
        .unwrap();
    let start = Instant::now();
    let (outcome, events) = h.run(vec![flaky], "*", CancellationToken::new()).await;
    assert!(
        start.elapsed() >= Duration::from_millis(120),
        "waited 40 ms then 80 ms"
    );
    assert_eq!(outcome.run.status, RunStatus::Success);
    assert_eq!(outcome.steps[0].attempts, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    use EventKind::*;
    assert_eq!(
        kinds(&events, "flaky"),
        [
            StepStart,
            StepUpForRetry,
            StepStart,
            StepUpForRetry,
            StepStart,
            AssetMaterialization,
            StepSuccess
        ]
    );
    let delays: Vec<u64> = events
        .iter()
        .filter_map(|e| e.event.body.retry_delay_ms)
        .collect();
    assert_eq!(delays, [40, 80]);
    let retry = events
        .iter()
        .find(|e| e.event.kind == StepUpForRetry)
        .unwrap();
    assert_eq!(
        retry.event.body.error.as_ref().unwrap().message,
        "attempt 1 failed"
    );
}

#[tokio::test]
async fn retries_run_out_and_fatal_errors_are_not_retried() {
    let h = Harness::new().await;
    let always = asset("always")
        .retry(RetryPolicy::attempts(2).with_delay(Duration::from_millis(1)))
        .compute(|_ctx| async { Err::<Materialization, _>(ComputeError::new("nope")) })
        .unwrap();
    let fatal = asset("fatal")
        .retry(RetryPolicy::attempts(5).with_delay(Duration::from_millis(1)))
        .compute(|_ctx| async { Err::<Materialization, _>(ComputeError::fatal("bad config")) })
        .unwrap();
    let (outcome, events) = h
        .run(vec![always, fatal], "*", CancellationToken::new())
        .await;
    assert_eq!(outcome.run.status, RunStatus::Failure);
    let step = |k: &str| outcome.steps.iter().find(|s| s.key == k).unwrap().clone();
    assert_eq!(
        (step("always").status, step("always").attempts),
        (StepState::Failed, 2)
    );
    assert_eq!(
        (step("fatal").status, step("fatal").attempts),
        (StepState::Failed, 1)
    );
    assert!(kinds(&events, "fatal").contains(&EventKind::AssetFailed));
    let failures = h
        .storage
        .asset_partitions(&[AssetKey::parse("fatal").unwrap()])
        .await
        .unwrap();
    assert!(failures[0].is_failed());
    assert_eq!(
        failures[0]
            .last_failure
            .as_ref()
            .unwrap()
            .message
            .as_deref(),
        Some("bad config")
    );
}

#[tokio::test]
async fn a_failed_step_skips_its_downstream_only() {
    let h = Harness::new().await;
    let defs = vec![
        failing("a", &[], "boom"),
        noop("b", &["a"]),
        noop("c", &["b"]),
        noop("d", &[]),
        noop("e", &["d"]),
    ];
    let (outcome, events) = h.run(defs, "*", CancellationToken::new()).await;
    assert_eq!(outcome.run.status, RunStatus::Failure);
    assert_eq!(status_of(&outcome, "a"), StepState::Failed);
    assert_eq!(status_of(&outcome, "b"), StepState::Skipped);
    assert_eq!(status_of(&outcome, "c"), StepState::Skipped);
    assert_eq!(status_of(&outcome, "d"), StepState::Succeeded);
    assert_eq!(status_of(&outcome, "e"), StepState::Succeeded);
    assert_eq!(kinds(&events, "c"), [EventKind::StepSkipped]);
    let run_failure = events
        .iter()
        .find(|e| e.event.kind == EventKind::RunFailure)
        .unwrap();
    assert_eq!(
        run_failure.event.body.message.as_deref(),
        Some("1 step failed: a")
    );
}

#[tokio::test]
async fn cancellation_fires_the_token_and_ends_canceled() {
    let h = Harness::new().await;
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let flag = saw_cancel.clone();
    let started = Arc::new(tokio::sync::Notify::new());
    let notify = started.clone();
    let waiting = asset("waiting")
        .compute(move |ctx: AssetContext| {
            let (flag, notify) = (flag.clone(), notify.clone());
            async move {
                notify.notify_one();
                ctx.canceled().await;
                flag.fetch_add(1, Ordering::SeqCst);
                Err::<Materialization, _>(ComputeError::canceled())
            }
        })
        .unwrap();
    let defs = vec![waiting, noop("after", &["waiting"])];
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        started.notified().await;
        trigger.cancel();
    });
    let (outcome, events) = h.run(defs, "*", cancel).await;
    assert_eq!(outcome.run.status, RunStatus::Canceled);
    assert_eq!(saw_cancel.load(Ordering::SeqCst), 1);
    assert_eq!(status_of(&outcome, "waiting"), StepState::Canceled);
    assert_eq!(status_of(&outcome, "after"), StepState::NotStarted);
    let run_kinds: Vec<EventKind> = events
        .iter()
        .filter(|e| e.event.step_key.is_none())
        .map(|e| e.event.kind)
        .collect();
    use EventKind::*;
    assert_eq!(
        run_kinds,
        // Created STARTING: a run executed in its own process never waits in the queue.
        [
            RunStarting,
            RunStart,
            EngineEvent,
            RunCanceling,
            RunCanceled
        ]
    );
}

#[tokio::test]
async fn a_compute_that_ignores_cancellation_is_abandoned_after_the_grace() {
    let mut h = Harness::new().await;
    h.config.cancel_grace = Duration::from_millis(100);
    let stubborn = asset("stubborn")
        .compute(|_ctx| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, ComputeError>(Materialization::new())
        })
        .unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.cancel();
    });
    let start = Instant::now();
    let (outcome, _) = h.run(vec![stubborn], "*", cancel).await;
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(outcome.run.status, RunStatus::Canceled);
}

#[tokio::test]
async fn concurrency_limit_and_pools_hold() {
    let mut h = Harness::new().await;
    h.config.max_concurrent = 3;
    h.pools.insert("warehouse".into(), 1);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let pool_running = Arc::new(AtomicUsize::new(0));
    let pool_peak = Arc::new(AtomicUsize::new(0));
    let mut defs = Vec::new();
    for i in 0..12 {
        let in_pool = i % 3 == 0;
        let (running, peak) = (running.clone(), peak.clone());
        let (pool_running, pool_peak) = (pool_running.clone(), pool_peak.clone());
        let mut builder = asset(&format!("s{i:02}"));
        if in_pool {
            builder = builder.pool("warehouse");
        }
        defs.push(
            builder
                .compute(move |_ctx| {
                    let (running, peak, pool_running, pool_peak) = (
                        running.clone(),
                        peak.clone(),
                        pool_running.clone(),
                        pool_peak.clone(),
                    );
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        if in_pool {
                            let p = pool_running.fetch_add(1, Ordering::SeqCst) + 1;
                            pool_peak.fetch_max(p, Ordering::SeqCst);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        if in_pool {
                            pool_running.fetch_sub(1, Ordering::SeqCst);
                        }
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, ComputeError>(Materialization::new())
                    }
                })
                .unwrap(),
        );
    }
    let (outcome, _) = h.run(defs, "*", CancellationToken::new()).await;
    assert_eq!(outcome.run.status, RunStatus::Success);
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert_eq!(pool_peak.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// Pools across runs and processes

/// Counts the steps of a pool that run at once, and how many ran.
#[derive(Clone, Default)]
struct PoolGauge {
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    ran: Arc<AtomicUsize>,
}

impl PoolGauge {
    /// `n` independent assets `{prefix}{i}` in `pool`, each running for `hold`.
    fn assets(&self, prefix: &str, n: usize, pool: &str, hold: Duration) -> Vec<Def> {
        (0..n)
            .map(|i| {
                let gauge = self.clone();
                asset(&format!("{prefix}{i}"))
                    .pool(pool)
                    .compute(move |_ctx| {
                        let gauge = gauge.clone();
                        async move {
                            let now = gauge.running.fetch_add(1, Ordering::SeqCst) + 1;
                            gauge.peak.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(hold).await;
                            gauge.running.fetch_sub(1, Ordering::SeqCst);
                            gauge.ran.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, ComputeError>(Materialization::new())
                        }
                    })
                    .unwrap()
            })
            .collect()
    }
}

const WAITING: &str = "waiting for a slot in pool `warehouse`";

/// The steps announced as waiting for a slot of `warehouse`, once each.
#[track_caller]
fn announced_waiting(events: &[StoredEvent]) -> Vec<String> {
    let steps: Vec<String> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::EngineEvent)
        .filter(|e| e.event.body.message.as_deref() == Some(WAITING))
        .map(|e| e.event.step_key.clone().expect("a step's event"))
        .collect();
    let unique: BTreeSet<&String> = steps.iter().collect();
    assert_eq!(
        unique.len(),
        steps.len(),
        "a step announced twice: {steps:?}"
    );
    steps
}

/// The position of the first event of `kind` of `step`.
#[track_caller]
fn position(events: &[StoredEvent], step: &str, kind: EventKind) -> usize {
    events
        .iter()
        .position(|e| e.event.step_key.as_deref() == Some(step) && e.event.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} of {step}"))
}

/// Two processes (two storages on one Postgres schema) each run the same four steps of a
/// pool of limit 1 at the same time: never two of them at once, and both runs succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_limit_holds_across_runs_in_two_processes() {
    let db = db::postgres().await;
    let other = db.reopen().await;
    let storage = db.storage.clone();
    let result = AssertUnwindSafe(async move {
        let gauge = PoolGauge::default();
        let hold = Duration::from_millis(50);
        let mut first = Harness::on(storage.clone());
        let mut second = Harness::on(other);
        for h in [&mut first, &mut second] {
            h.pools.insert("warehouse".into(), 1);
        }
        let mut defs_first = gauge.assets("load_", 4, "warehouse", hold);
        defs_first.push(noop("unpooled", &[]));
        let defs_second = gauge.assets("load_", 4, "warehouse", hold);
        let ((outcome_1, events_1), (outcome_2, events_2)) = tokio::join!(
            first.run(defs_first, "*", CancellationToken::new()),
            second.run(defs_second, "*", CancellationToken::new()),
        );
        assert_eq!(outcome_1.run.status, RunStatus::Success);
        assert_eq!(outcome_2.run.status, RunStatus::Success);
        assert_eq!(gauge.ran.load(Ordering::SeqCst), 8);
        assert_eq!(
            gauge.peak.load(Ordering::SeqCst),
            1,
            "two steps of a pool of limit 1 ran at once"
        );
        // Each run's steps of the pool but the one that got the slot first waited (for the
        // other run, or for their own run's step), and said so once.
        let waited_1 = announced_waiting(&events_1);
        let waited_2 = announced_waiting(&events_2);
        assert!(
            waited_1.len() >= 3 && waited_2.len() >= 3 && waited_1.len() + waited_2.len() >= 7,
            "waited: {waited_1:?} and {waited_2:?}"
        );
        assert!(!waited_1.contains(&"unpooled".to_owned()));
        assert!(storage.pool_usage(Utc::now()).await.unwrap().is_empty());
    })
    .catch_unwind()
    .await;
    db.cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// `step` of `run_id`'s slot in pool `warehouse`.
fn slot(run_id: RunId, step: &str) -> PoolSlot<'_> {
    PoolSlot {
        pool: "warehouse",
        run_id,
        step_key: step,
    }
}

/// Another process holds the pool's only slot: the pool's step waits (announced once,
/// though it asks several times) while the other steps run, and starts once the slot is
/// given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_waiting_for_a_slot_does_not_hold_up_the_others() {
    let mut h = Harness::new().await;
    h.pools.insert("warehouse".into(), 1);
    let elsewhere = orch::new_run_id();
    assert!(
        h.storage
            .try_acquire_pool_slot(&slot(elsewhere, "x"), 1, Utc::now(), SLOT_TTL)
            .await
            .unwrap()
    );
    let storage = h.storage.clone();
    let released_at = Arc::new(std::sync::OnceLock::new());
    let released = released_at.clone();
    // Once the unpooled steps are done, the other process gives the slot back.
    let after = asset("after")
        .deps(["free"])
        .compute(move |_ctx| {
            let (storage, released) = (storage.clone(), released.clone());
            async move {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    released.set(Instant::now()).unwrap();
                    storage
                        .release_pool_slot(&slot(elsewhere, "x"))
                        .await
                        .unwrap();
                });
                Ok::<_, ComputeError>(Materialization::new())
            }
        })
        .unwrap();
    let started = Arc::new(std::sync::OnceLock::new());
    let start = started.clone();
    let pooled = asset("pooled")
        .pool("warehouse")
        .compute(move |_ctx| {
            let start = start.clone();
            async move {
                start.set(Instant::now()).unwrap();
                Ok::<_, ComputeError>(Materialization::new())
            }
        })
        .unwrap();
    let defs = vec![pooled, noop("free", &[]), after];
    let (outcome, events) = h.run(defs, "*", CancellationToken::new()).await;
    assert_eq!(outcome.run.status, RunStatus::Success);
    assert!(started.get().unwrap() > released_at.get().unwrap());
    assert_eq!(announced_waiting(&events), ["pooled"]);
    let waiting = position(&events, "pooled", EventKind::EngineEvent);
    assert_eq!(
        events[waiting].event.body.metadata.get("pool"),
        Some(&"warehouse".into())
    );
    // Announced in the first pass over the ready steps, before `after` could be ready.
    assert!(waiting < position(&events, "after", EventKind::StepStart));
    assert!(
        position(&events, "after", EventKind::StepSuccess)
            < position(&events, "pooled", EventKind::StepStart)
    );
    assert!(h.storage.pool_usage(Utc::now()).await.unwrap().is_empty());
}

/// A run canceled while its step waits for a slot ends at once; the step never starts and
/// the slot held elsewhere is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_canceled_while_its_step_waits_for_a_slot_ends() {
    let mut h = Harness::new().await;
    h.pools.insert("warehouse".into(), 1);
    let elsewhere = orch::new_run_id();
    assert!(
        h.storage
            .try_acquire_pool_slot(&slot(elsewhere, "x"), 1, Utc::now(), SLOT_TTL)
            .await
            .unwrap()
    );
    let pooled = asset("pooled")
        .pool("warehouse")
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
        .unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let start = Instant::now();
    let (outcome, events) = h.run(vec![pooled], "*", cancel).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(outcome.run.status, RunStatus::Canceled);
    assert_eq!(status_of(&outcome, "pooled"), StepState::NotStarted);
    assert_eq!(announced_waiting(&events), ["pooled"]);
    assert_eq!(
        h.storage.pool_usage(Utc::now()).await.unwrap(),
        [("warehouse".to_owned(), 1)]
    );
}

/// A step gives its slot back however it ends: failed, panicked, succeeded or canceled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_are_given_back_however_steps_end() {
    let mut h = Harness::new().await;
    h.pools.insert("warehouse".into(), 1);
    let in_pool = |def: Def| def.with_pool("warehouse");
    let panicking = asset("panics")
        .compute(|_ctx| async {
            if true {
                panic!("boom");
            }
            Ok::<_, ComputeError>(Materialization::new())
        })
        .unwrap();
    let defs = vec![
        in_pool(failing("fails", &[], "no")),
        in_pool(panicking),
        in_pool(noop("succeeds", &[])),
        in_pool(noop("later", &["succeeds"])),
    ];
    let (outcome, _) = h.run(defs, "*", CancellationToken::new()).await;
    assert_eq!(outcome.run.status, RunStatus::Failure);
    assert_eq!(status_of(&outcome, "fails"), StepState::Failed);
    assert_eq!(status_of(&outcome, "panics"), StepState::Failed);
    assert_eq!(status_of(&outcome, "later"), StepState::Succeeded);
    assert!(h.storage.pool_usage(Utc::now()).await.unwrap().is_empty());

    let waiting = asset("waits_for_cancel")
        .pool("warehouse")
        .compute(|ctx: AssetContext| async move {
            ctx.canceled().await;
            Err::<Materialization, _>(ComputeError::canceled())
        })
        .unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let storage = h.storage.clone();
    tokio::spawn(async move {
        // Canceled once it holds the slot.
        while storage.pool_usage(Utc::now()).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        trigger.cancel();
    });
    let (outcome, _) = h.run(vec![waiting], "*", cancel).await;
    assert_eq!(outcome.run.status, RunStatus::Canceled);
    assert_eq!(status_of(&outcome, "waits_for_cancel"), StepState::Canceled);
    assert!(h.storage.pool_usage(Utc::now()).await.unwrap().is_empty());
}

/// A step that runs longer than a slot's time to live keeps its slot: the executor renews
/// it, so another process never gets in meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_step_keeps_its_slot_by_renewing_it() {
    let mut h = Harness::new().await;
    h.pools.insert("warehouse".into(), 1);
    let ttl = Duration::from_secs(1);
    h.slot_ttl = Some(ttl);
    let running = Arc::new(AtomicUsize::new(0));
    let flag = running.clone();
    let long = asset("long")
        .pool("warehouse")
        .compute(move |_ctx| {
            let flag = flag.clone();
            async move {
                flag.store(1, Ordering::SeqCst);
                tokio::time::sleep(ttl * 5 / 2).await;
                flag.store(2, Ordering::SeqCst);
                Ok::<_, ComputeError>(Materialization::new())
            }
        })
        .unwrap();
    // Another process tries for the slot all along.
    let storage = h.storage.clone();
    let watched = running.clone();
    let intruder = tokio::spawn(async move {
        let (mut tries, mut got) = (0, 0);
        while watched.load(Ordering::SeqCst) < 2 {
            if watched.load(Ordering::SeqCst) == 1 {
                tries += 1;
                let step = format!("try-{tries}");
                let other = orch::new_run_id();
                if storage
                    .try_acquire_pool_slot(&slot(other, &step), 1, Utc::now(), ttl)
                    .await
                    .unwrap()
                {
                    got += 1;
                    storage
                        .release_pool_slot(&slot(other, &step))
                        .await
                        .unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (tries, got)
    });
    let (outcome, _) = h.run(vec![long], "*", CancellationToken::new()).await;
    assert_eq!(outcome.run.status, RunStatus::Success);
    let (tries, got) = intruder.await.unwrap();
    assert!(tries > 10, "the other process tried only {tries} times");
    assert_eq!(got, 0, "another process took the slot while the step ran");
    assert!(h.storage.pool_usage(Utc::now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn checks_record_results_and_blocking_failures_stop_downstream() {
    let h = Harness::new().await;
    let checked = asset("checked")
        .check(
            CheckSpec::new("rows_positive").evaluate(|_ctx, md: orch::Metadata| async move {
                Ok(CheckResult::new(
                    "rows_positive",
                    md.row_count().unwrap_or(0) > 0,
                ))
            }),
        )
        .check(CheckSpec::new("warn_only").severity(Severity::Warn))
        .compute(|_ctx| async {
            Ok::<_, ComputeError>(
                Materialization::new()
                    .row_count(5)
                    .check(CheckResult::failed("warn_only")),
            )
        })
        .unwrap();
    let blocked = asset("blocked")
        .check(
            CheckSpec::new("must_pass")
                .blocking(true)
                .evaluate(|_ctx, _md| async {
                    Ok(CheckResult::failed("must_pass").description("zero rows"))
                }),
        )
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
        .unwrap();
    let defs = vec![
        checked,
        noop("after_checked", &["checked"]),
        blocked,
        noop("after_blocked", &["blocked"]),
    ];
    let (outcome, _) = h.run(defs, "*", CancellationToken::new()).await;
    assert_eq!(status_of(&outcome, "checked"), StepState::Succeeded);
    assert_eq!(status_of(&outcome, "after_checked"), StepState::Succeeded);
    assert_eq!(status_of(&outcome, "blocked"), StepState::Failed);
    assert_eq!(status_of(&outcome, "after_blocked"), StepState::Skipped);
    let results = h
        .storage
        .check_results(&AssetKey::parse("checked").unwrap(), 10)
        .await
        .unwrap();
    let mut seen: Vec<(String, bool, String)> = results
        .iter()
        .map(|r| {
            (
                r.evaluation.check_name.clone(),
                r.evaluation.passed,
                r.evaluation.severity.clone(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("rows_positive".into(), true, "ERROR".into()),
            ("warn_only".into(), false, "WARN".into())
        ]
    );
    let blocked = h
        .storage
        .check_results(&AssetKey::parse("blocked").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(
        blocked[0].evaluation.description.as_deref(),
        Some("zero rows")
    );
}

#[tokio::test]
async fn multi_asset_steps_report_each_asset_as_it_happens() {
    let h = Harness::new().await;
    let specs = ["m/one", "m/two", "m/three"]
        .iter()
        .map(|k| AssetSpec::new(AssetKey::parse(k).unwrap()))
        .collect();
    let multi = AssetsDefinition::multi("models", specs, |ctx: AssetContext| async move {
        for key in ctx.asset_keys() {
            ctx.report_materialization(key.clone(), Materialization::new().row_count(1));
        }
        Ok::<_, ComputeError>(Output::Reported)
    });
    let (outcome, events) = h
        .run(
            vec![multi, noop("down", &["m/three"])],
            "*",
            CancellationToken::new(),
        )
        .await;
    assert_eq!(outcome.run.status, RunStatus::Success);
    assert_eq!(outcome.steps.len(), 2);
    let materialized: Vec<String> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::AssetMaterialization)
        .map(|e| e.event.asset_key.as_ref().unwrap().to_string())
        .collect();
    // A step's assets come in topological order (ties by key), as `ctx.asset_keys()` gives them.
    assert_eq!(materialized, ["m/one", "m/three", "m/two", "down"]);
}

#[tokio::test]
async fn a_panicking_compute_fails_its_step_not_the_run() {
    let h = Harness::new().await;
    let panics = asset("panics")
        .compute(|_ctx| async {
            if true {
                panic!("index out of bounds");
            }
            Ok::<_, ComputeError>(Materialization::new())
        })
        .unwrap();
    let (outcome, _) = h
        .run(
            vec![panics, noop("other", &[])],
            "*",
            CancellationToken::new(),
        )
        .await;
    assert_eq!(outcome.run.status, RunStatus::Failure);
    let step = outcome.steps.iter().find(|s| s.key == "panics").unwrap();
    assert!(
        step.error
            .as_deref()
            .unwrap()
            .contains("the compute panicked: index out of bounds")
    );
    assert_eq!(status_of(&outcome, "other"), StepState::Succeeded);
}

#[tokio::test]
async fn a_daily_step_waits_for_its_24_hours_and_sees_its_window() {
    use orch::partitions::PartitionsDefinition;
    let h = Harness::new().await;
    let windows = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = windows.clone();
    let hourly = asset("hourly")
        .partitions(PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap())
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new().row_count(1)) })
        .unwrap();
    let daily = asset("daily")
        .deps(["hourly"])
        .partitions(PartitionsDefinition::daily("2026-11-01", "UTC").unwrap())
        .compute(move |ctx: AssetContext| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((
                    ctx.partition_key().map(str::to_owned),
                    ctx.partition_window(),
                ));
                Ok::<_, ComputeError>(Materialization::new())
            }
        })
        .unwrap();
    let request = PartitionRequest::Range {
        from: "2026-11-22-00:00".into(),
        to: "2026-11-22-23:00".into(),
    };
    let (outcome, events) = h
        .run_partition(vec![hourly, daily], "*", request, CancellationToken::new())
        .await;
    assert_eq!(outcome.run.status, RunStatus::Success);
    assert_eq!(outcome.steps.len(), 25);
    assert_eq!(outcome.steps[24].key, "daily[2026-11-22]");
    let daily_start = events
        .iter()
        .position(|e| e.event.step_key.as_deref() == Some("daily[2026-11-22]"))
        .unwrap();
    let hourly_done = events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepSuccess)
        .take(24)
        .count();
    assert_eq!(hourly_done, 24);
    assert!(
        events[..daily_start]
            .iter()
            .filter(|e| e.event.kind == EventKind::StepSuccess)
            .count()
            >= 24
    );
    let windows = windows.lock().unwrap().clone();
    let (key, window) = &windows[0];
    assert_eq!(key.as_deref(), Some("2026-11-22"));
    let window = window.unwrap();
    assert_eq!(window.start.to_rfc3339(), "2026-11-22T00:00:00+00:00");
    assert_eq!(window.end.to_rfc3339(), "2026-11-23T00:00:00+00:00");
    let partitions = h
        .storage
        .asset_partitions(&[AssetKey::parse("hourly").unwrap()])
        .await
        .unwrap();
    assert_eq!(partitions.len(), 24);
}

#[tokio::test]
async fn step_logs_are_stored_with_child_output() {
    let h = Harness::new().await;
    let logs = asset("logs")
        .compute(|ctx: AssetContext| async move {
            ctx.log().info("starting");
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg("echo out; echo err >&2");
            ctx.run_command(cmd).await?;
            Ok::<_, ComputeError>(Materialization::new())
        })
        .unwrap();
    let (outcome, _) = h.run(vec![logs], "*", CancellationToken::new()).await;
    let lines = h
        .storage
        .step_logs(outcome.run.run_id, Some("logs"))
        .await
        .unwrap();
    let mut text: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.stream.as_str(), l.message.as_str()))
        .collect();
    text.sort();
    assert_eq!(
        text,
        [("log", "starting"), ("stderr", "err"), ("stdout", "out")]
    );
}
