//! The run queue under real concurrency, as several daemons would use it: each worker with
//! its own storage (its own pool, as a separate process would have) on one run history.
//! Postgres for real, and SQLite where several processes on one file make sense too.
//!
//! - concurrent claimers over a full queue never claim one run twice,
//! - a concurrency limit holds across all claimers,
//! - one asset partition is never in two runs at once, over generated queues claimed
//!   concurrently and drained in random order (`ORCH_QUEUE_CASES`, 20 by default),
//! - a schedule tick evaluated by several daemons at once produces exactly one run,
//! - a pool's limit holds across all acquirers of its slots,
//! - `NOTIFY` wakes a waiter on another storage (Postgres), and only for its own schema,
//!   and a listener whose connection dies is replaced.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use orch::event::EventKind;
use orch::run::NewRun;
use orch::storage::{
    Backfill, EventFilter, NewTick, PoolSlot, QueueLimits, RunFilter, Storage, TickRecord,
};
use orch::{AssetKey, RunId, RunStatus};
use tokio::sync::Barrier;

use crate::util::db::{self, TestDb};
use orch::request::tags::{BACKFILL as BACKFILL_TAG, SCHEDULE as SCHEDULE_TAG};

/// Runs `case` on `db`, then drops the database even if the case failed.
async fn run(db: TestDb, case: impl AsyncFnOnce(&TestDb)) {
    let result = AssertUnwindSafe(case(&db)).catch_unwind().await;
    db.cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
}

/// A queued run of `a`, each of its own partition (runs of one asset partition are never
/// claimed at once).
fn new_run(created: i64) -> NewRun {
    let run_id = orch::new_run_id();
    NewRun {
        status: RunStatus::Queued,
        selection: "a".to_owned(),
        asset_keys: vec![AssetKey::parse("a").unwrap()],
        partition_key: Some(run_id.to_string()),
        ..NewRun::new(run_id, at(created))
    }
}

/// `n` other storages on `db`'s run history, opened one after the other.
async fn storages(db: &TestDb, n: usize) -> Vec<Arc<dyn Storage>> {
    let mut storages = Vec::with_capacity(n);
    for _ in 0..n {
        storages.push(db.reopen().await);
    }
    storages
}

fn in_flight() -> RunFilter {
    RunFilter {
        statuses: vec![
            RunStatus::Starting,
            RunStatus::Started,
            RunStatus::Canceling,
        ],
        ..RunFilter::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent claimers over a full queue

/// Queues `runs` runs, then `claimers` workers, each on its own storage, claim until the queue
/// is empty: every run is claimed exactly once, by one worker, at attempt 1.
async fn claimers_never_claim_a_run_twice(db: &TestDb, runs: usize, claimers: usize) {
    let queued: Vec<NewRun> = (0..runs).map(|i| new_run(i as i64)).collect();
    let backfill = Backfill {
        id: "everything".to_owned(),
        selection: "a".to_owned(),
        partition_from: "0".to_owned(),
        partition_to: runs.to_string(),
        run_count: runs as u32,
        created_at: at(0),
    };
    db.storage
        .create_backfill(&backfill, &queued)
        .await
        .unwrap();

    let barrier = Arc::new(Barrier::new(claimers));
    let tasks: Vec<_> = storages(db, claimers)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, storage)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let owner = format!("worker-{i}");
                barrier.wait().await;
                let mut claimed = Vec::new();
                while let Some(lease) = storage
                    .claim_run(
                        &owner,
                        Utc::now(),
                        Duration::from_secs(600),
                        &QueueLimits::default(),
                    )
                    .await
                    .unwrap()
                {
                    assert_eq!(lease.owner, owner);
                    assert_eq!(lease.attempt(), 1);
                    assert_eq!(lease.run.status, RunStatus::Starting);
                    claimed.push(lease.run);
                }
                (owner, claimed)
            })
        })
        .collect();

    let mut claimed_by: HashMap<RunId, String> = HashMap::new();
    let mut busy_workers = 0;
    for task in tasks {
        let (owner, claimed) = task.await.unwrap();
        if !claimed.is_empty() {
            busy_workers += 1;
        }
        // Oldest first: each worker's claims come in queue order.
        assert!(
            claimed.windows(2).all(|w| w[0].id < w[1].id),
            "{owner} claimed out of order"
        );
        for run in claimed {
            if let Some(first) = claimed_by.insert(run.run_id, owner.clone()) {
                panic!("run {} claimed by both {first} and {owner}", run.run_id);
            }
        }
    }
    assert_eq!(claimed_by.len(), runs, "every queued run is claimed");
    let expected: BTreeSet<RunId> = queued.iter().map(|r| r.run_id).collect();
    assert_eq!(
        claimed_by.keys().copied().collect::<BTreeSet<_>>(),
        expected
    );
    assert!(busy_workers > 1, "the claimers ran concurrently");

    // The history agrees: all STARTING, each leased once, to the worker that claimed it.
    let queued_left = RunFilter {
        statuses: vec![RunStatus::Queued],
        ..RunFilter::default()
    };
    assert!(db.storage.list_runs(&queued_left).await.unwrap().is_empty());
    let leases = db
        .storage
        .expired_leases(Utc::now() + Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(leases.len(), runs);
    for lease in leases {
        assert_eq!(lease.attempt(), 1);
        assert_eq!(lease.run.status, RunStatus::Starting);
        assert_eq!(claimed_by[&lease.run.run_id], lease.owner);
    }
    assert_eq!(
        db.storage
            .count_runs_by_status(BACKFILL_TAG, "everything")
            .await
            .unwrap(),
        vec![(RunStatus::Starting, runs as u64)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_claimers_never_claim_a_run_twice() {
    run(db::postgres().await, async |db| {
        claimers_never_claim_a_run_twice(db, 500, 16).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_claimers_never_claim_a_run_twice() {
    run(db::sqlite().await, async |db| {
        claimers_never_claim_a_run_twice(db, 200, 8).await
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// A concurrency limit shared by every claimer

/// `claimers` workers, each on its own storage, claim with `max_concurrent_runs = max`, hold
/// each run a moment, then finish it (STARTED, SUCCESS). In-flight runs never exceed `max`,
/// counted both by the workers (between a claim's return and the finish) and in the history
/// right after each claim; and the limit is reached, so it is not stricter than asked.
async fn max_concurrent_runs_holds(db: &TestDb, runs: usize, claimers: usize, max: u32) {
    for i in 0..runs {
        db.storage.create_run(&new_run(i as i64)).await.unwrap();
    }
    let limits = QueueLimits {
        max_concurrent_runs: Some(max),
    };
    let holding = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let peak_in_history = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(claimers));
    let deadline = Instant::now() + Duration::from_secs(120);
    let tasks: Vec<_> = storages(db, claimers)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, storage)| {
            let (limits, barrier) = (limits.clone(), barrier.clone());
            let (holding, peak, peak_in_history, finished) = (
                holding.clone(),
                peak.clone(),
                peak_in_history.clone(),
                finished.clone(),
            );
            tokio::spawn(async move {
                let owner = format!("worker-{i}");
                barrier.wait().await;
                while finished.load(Ordering::SeqCst) < runs {
                    assert!(Instant::now() < deadline, "the runs never all finished");
                    let lease = storage
                        .claim_run(&owner, Utc::now(), Duration::from_secs(600), &limits)
                        .await
                        .unwrap();
                    let Some(lease) = lease else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let now_holding = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now_holding, Ordering::SeqCst);
                    let counted = storage.list_runs(&in_flight()).await.unwrap().len();
                    peak_in_history.fetch_max(counted, Ordering::SeqCst);

                    let id = lease.run.run_id;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    storage
                        .transition_run(id, RunStatus::Started, Utc::now())
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    // Counted out before the run ends, so this count never exceeds the
                    // history's.
                    holding.fetch_sub(1, Ordering::SeqCst);
                    storage
                        .transition_run(id, RunStatus::Success, Utc::now())
                        .await
                        .unwrap();
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let max = max as usize;
    let (peak, peak_in_history) = (
        peak.load(Ordering::SeqCst),
        peak_in_history.load(Ordering::SeqCst),
    );
    assert!(peak <= max, "{peak} runs in flight at once, limit {max}");
    assert!(
        peak_in_history <= max,
        "{peak_in_history} runs STARTING/STARTED in the history at once, limit {max}"
    );
    assert_eq!(
        peak, max,
        "the limit is reached with {claimers} hungry claimers"
    );
    let all = db.storage.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(all.len(), runs);
    assert!(all.iter().all(|r| r.status == RunStatus::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_max_concurrent_runs_holds_across_claimers() {
    run(db::postgres().await, async |db| {
        max_concurrent_runs_holds(db, 60, 16, 5).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_max_concurrent_runs_holds_across_claimers() {
    run(db::sqlite().await, async |db| {
        max_concurrent_runs_holds(db, 30, 6, 3).await
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Schedule ticks evaluated by several daemons at once

/// `daemons` storages record the same `ticks` ticks at once (half of them in reverse order),
/// each with a run of its own: exactly one recording, and one run, per tick.
async fn one_run_per_tick(db: &TestDb, daemons: usize, ticks: i64) {
    const SCHEDULE: &str = "every-minute";
    let barrier = Arc::new(Barrier::new(daemons));
    let tasks: Vec<_> = storages(db, daemons)
        .await
        .into_iter()
        .enumerate()
        .map(|(d, storage)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let order: Vec<i64> = if d % 2 == 0 {
                    (0..ticks).collect()
                } else {
                    (0..ticks).rev().collect()
                };
                let mut results = Vec::new();
                for t in order {
                    let run = new_run(60 * t);
                    let record = storage
                        .record_tick(&NewTick::requested(SCHEDULE, at(60 * t), &run), Utc::now())
                        .await
                        .unwrap();
                    results.push((t, run.run_id, record));
                }
                results
            })
        })
        .collect();

    // tick -> the run of the daemon that recorded it
    let mut recorded: BTreeMap<i64, RunId> = BTreeMap::new();
    let mut answers: Vec<(i64, RunId)> = Vec::new();
    for task in tasks {
        for (t, offered, record) in task.await.unwrap() {
            match record {
                TickRecord::Recorded(tick) => {
                    assert_eq!(tick.run_id, Some(offered));
                    assert_eq!(tick.tick_time, at(60 * t));
                    if let Some(other) = recorded.insert(t, offered) {
                        panic!("tick {t} recorded twice, with runs {other} and {offered}");
                    }
                }
                TickRecord::AlreadyRecorded(tick) => {
                    assert_eq!(tick.tick_time, at(60 * t));
                    answers.push((t, tick.run_id.expect("a requested tick has a run")));
                }
            }
        }
    }
    assert_eq!(recorded.len(), ticks as usize, "every tick recorded once");
    assert_eq!(answers.len(), (daemons - 1) * ticks as usize);
    for (t, run_id) in answers {
        assert_eq!(
            recorded[&t], run_id,
            "tick {t}: the others are told the first run"
        );
    }

    let all = db.storage.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(all.len(), ticks as usize, "exactly one run per tick");
    let by_schedule = RunFilter {
        tag: Some((SCHEDULE_TAG.to_owned(), SCHEDULE.to_owned())),
        ..RunFilter::default()
    };
    let scheduled: BTreeSet<RunId> = db
        .storage
        .list_runs(&by_schedule)
        .await
        .unwrap()
        .iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(scheduled, recorded.values().copied().collect());
    for run_id in recorded.values() {
        let events = db
            .storage
            .run_events(*run_id, &EventFilter::default())
            .await
            .unwrap();
        assert_eq!(
            events.iter().map(|e| e.event.kind).collect::<Vec<_>>(),
            vec![EventKind::RunEnqueued]
        );
    }
    let stored = db.storage.schedule_ticks(SCHEDULE, 1000).await.unwrap();
    assert_eq!(stored.len(), ticks as usize);
    assert!(stored.windows(2).all(|w| w[0].tick_time > w[1].tick_time));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_record_tick_from_many_daemons_makes_one_run_per_tick() {
    run(db::postgres().await, async |db| {
        one_run_per_tick(db, 8, 24).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_record_tick_from_many_daemons_makes_one_run_per_tick() {
    run(db::sqlite().await, async |db| {
        one_run_per_tick(db, 8, 24).await
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// A pool's slots shared by every process

/// `acquirers` workers, each on its own storage, take slots of one pool of limit `limit` for
/// steps of their own runs, hold each a moment, then give it back, until `total` slots were
/// taken. Slots held never exceed the limit, counted both by the workers (between an
/// acquisition's return and the release) and in the history right after each acquisition;
/// and the limit is reached, so it is not stricter than asked.
async fn pool_limit_holds(db: &TestDb, acquirers: usize, limit: u32, total: usize) {
    const POOL: &str = "warehouse";
    let holding = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let peak_in_history = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(acquirers));
    let deadline = Instant::now() + Duration::from_secs(120);
    let tasks: Vec<_> = storages(db, acquirers)
        .await
        .into_iter()
        .map(|storage| {
            let barrier = barrier.clone();
            let (holding, peak, peak_in_history, taken) = (
                holding.clone(),
                peak.clone(),
                peak_in_history.clone(),
                taken.clone(),
            );
            tokio::spawn(async move {
                let run_id = orch::new_run_id();
                let mut mine = 0;
                barrier.wait().await;
                while taken.load(Ordering::SeqCst) < total {
                    assert!(Instant::now() < deadline, "the slots were never all taken");
                    let step = format!("step-{mine}");
                    let acquired = storage
                        .try_acquire_pool_slot(
                            &PoolSlot {
                                pool: POOL,
                                run_id,
                                step_key: &step,
                            },
                            limit,
                            Utc::now(),
                            Duration::from_secs(30),
                        )
                        .await
                        .unwrap();
                    if !acquired {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    mine += 1;
                    taken.fetch_add(1, Ordering::SeqCst);
                    let now_holding = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now_holding, Ordering::SeqCst);
                    let usage = storage.pool_usage(Utc::now()).await.unwrap();
                    let counted = usage
                        .iter()
                        .find(|(pool, _)| pool == POOL)
                        .map_or(0, |(_, n)| *n as usize);
                    peak_in_history.fetch_max(counted, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    // Counted out before the release, so this count never exceeds the
                    // history's.
                    holding.fetch_sub(1, Ordering::SeqCst);
                    storage
                        .release_pool_slot(&PoolSlot {
                            pool: POOL,
                            run_id,
                            step_key: &step,
                        })
                        .await
                        .unwrap();
                }
                mine
            })
        })
        .collect();
    let mut busy = 0;
    for task in tasks {
        if task.await.unwrap() > 0 {
            busy += 1;
        }
    }
    let limit = limit as usize;
    let (peak, peak_in_history) = (
        peak.load(Ordering::SeqCst),
        peak_in_history.load(Ordering::SeqCst),
    );
    assert!(peak <= limit, "{peak} slots held at once, limit {limit}");
    assert!(
        peak_in_history <= limit,
        "{peak_in_history} slots in the history at once, limit {limit}"
    );
    assert_eq!(
        peak, limit,
        "the limit is reached with {acquirers} hungry acquirers"
    );
    assert!(busy > limit, "only {busy} acquirers ever got a slot");
    assert!(db.storage.pool_usage(Utc::now()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_pool_limit_holds_across_storages() {
    run(db::postgres().await, async |db| {
        pool_limit_holds(db, 16, 2, 100).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_pool_limit_holds_across_storages() {
    run(db::sqlite().await, async |db| {
        pool_limit_holds(db, 6, 2, 40).await
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Waking waiters across storages

/// How long a wait on `waiter` with a 30 s timeout lasts while `poke` runs every 50 ms (a
/// waiter not yet listening would miss a single poke).
async fn woken_by(waiter: &Arc<dyn Storage>, mut poke: impl AsyncFnMut()) -> Duration {
    let task = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            waiter.wait_for_queue(Duration::from_secs(30)).await;
            start.elapsed()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while !task.is_finished() && Instant::now() < deadline {
        poke().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.await.unwrap()
}

/// Waits out any wake-up already pending.
async fn settle(storage: &Arc<dyn Storage>) {
    for _ in 0..50 {
        let start = Instant::now();
        storage.wait_for_queue(Duration::from_millis(200)).await;
        if start.elapsed() >= Duration::from_millis(190) {
            return;
        }
    }
    panic!("the queue keeps waking up with nothing happening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_notify_wakes_a_waiter_on_another_storage() {
    run(db::postgres().await, async |db| {
        let waiter = db.storage.clone();
        let other = db.reopen().await;

        let waited = woken_by(&waiter, async || other.notify_queue().await.unwrap()).await;
        assert!(waited < Duration::from_secs(5), "woken after {waited:?}");

        // A run queued by the other storage wakes it too.
        settle(&waiter).await;
        let mut n = 0;
        let waited = woken_by(&waiter, async || {
            n += 1;
            other.create_run(&new_run(n)).await.unwrap();
        })
        .await;
        assert!(waited < Duration::from_secs(5), "woken after {waited:?}");

        // One notification wakes every waiter of the storage, not only the one listening.
        settle(&waiter).await;
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let waiter = waiter.clone();
                tokio::spawn(async move {
                    let start = Instant::now();
                    waiter.wait_for_queue(Duration::from_secs(20)).await;
                    start.elapsed()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        other.notify_queue().await.unwrap();
        for task in waiters {
            let waited = task.await.unwrap();
            assert!(waited < Duration::from_secs(5), "a waiter slept {waited:?}");
        }

        // Another run history in the same database (another schema) does not wake it.
        settle(&waiter).await;
        let elsewhere = db::postgres().await;
        let stop = Arc::new(AtomicBool::new(false));
        let noise = {
            let (storage, stop) = (elsewhere.storage.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    storage.notify_queue().await.unwrap();
                    storage.create_run(&new_run(0)).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let start = Instant::now();
        waiter.wait_for_queue(Duration::from_millis(800)).await;
        let waited = start.elapsed();
        stop.store(true, Ordering::SeqCst);
        noise.await.unwrap();
        elsewhere.cleanup().await;
        assert!(
            waited >= Duration::from_millis(800),
            "woken after {waited:?} by another schema's queue"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_waiting_survives_a_dropped_listener() {
    let db = db::postgres().await;
    // A name for this test's connections, to end the listener's and no one else's.
    let name = format!("orch_listener_{}", uuid::Uuid::now_v7().simple());
    let url = format!("{}&application_name={name}", db.url);
    run(db, async |db| {
        let waiter: Arc<dyn Storage> = Arc::new(
            orch::storage::SqlStorage::connect_postgres(&url)
                .await
                .unwrap(),
        );
        let notifier = db.storage.clone();
        let waited = woken_by(&waiter, async || notifier.notify_queue().await.unwrap()).await;
        assert!(waited < Duration::from_secs(5), "woken after {waited:?}");

        let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND query LIKE 'LISTEN%'",
        )
        .bind(&name)
        .fetch_all(&admin)
        .await
        .unwrap();
        admin.close().await;
        assert_eq!(ended, vec![true], "the listener's connection was ended");

        // Notifications keep coming; within a few waits, they wake the waiter again (the
        // first wait may time out while the listener is replaced). Five quick wake-ups in a
        // row cannot come from notifications buffered before the connection died.
        let stop = Arc::new(AtomicBool::new(false));
        let noise = {
            let (notifier, stop) = (notifier.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    notifier.notify_queue().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let mut quick = 0;
        for _ in 0..30 {
            let start = Instant::now();
            waiter.wait_for_queue(Duration::from_secs(1)).await;
            if start.elapsed() < Duration::from_millis(500) {
                quick += 1;
                if quick == 5 {
                    break;
                }
            } else {
                quick = 0;
            }
        }
        stop.store(true, Ordering::SeqCst);
        noise.await.unwrap();
        assert_eq!(
            quick, 5,
            "waiting recovered after the listener's connection died"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_wakeups_stay_in_process() {
    run(db::sqlite().await, async |db| {
        let waiter = db.storage.clone();
        // Another process (another storage on the file) cannot wake it: the timeout does.
        let other = db.reopen().await;
        let stop = Arc::new(AtomicBool::new(false));
        let noise = {
            let (other, stop) = (other.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    other.notify_queue().await.unwrap();
                    other.create_run(&new_run(n)).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let start = Instant::now();
        waiter.wait_for_queue(Duration::from_millis(500)).await;
        let waited = start.elapsed();
        stop.store(true, Ordering::SeqCst);
        noise.await.unwrap();
        assert!(
            waited >= Duration::from_millis(500),
            "woken after {waited:?}"
        );

        // Within the process, a clone of the storage wakes it.
        let clone = waiter.clone();
        let waited = woken_by(&waiter, async || clone.notify_queue().await.unwrap()).await;
        assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// One asset partition, one run at a time: a property over generated queues

/// A small deterministic generator (xorshift64*), so that a failing case names its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A generated run: its assets and what it covers, as the independent model sees it (the
/// hours of 2026-11-22 it may materialize).
fn generated_run(g: &mut Gen, created: i64) -> (NewRun, BTreeSet<u32>) {
    let assets: Vec<AssetKey> = ["a", "b", "c"]
        .into_iter()
        .filter(|_| g.below(2) == 0)
        .map(|k| AssetKey::parse(k).unwrap())
        .collect();
    let assets = if assets.is_empty() {
        vec![AssetKey::parse("a").unwrap()]
    } else {
        assets
    };
    let hour = |h: u32| format!("2026-11-22-{h:02}:00");
    let (from, to, hours): (Option<String>, Option<String>, BTreeSet<u32>) = match g.below(10) {
        // No partition: the whole asset.
        0 => (None, None, (0..24).collect()),
        // The day: its 24 hours.
        1 => (Some("2026-11-22".into()), None, (0..24).collect()),
        // A range of hours.
        2..=4 => {
            let start = g.below(6) as u32;
            let end = start + g.below(3) as u32;
            (Some(hour(start)), Some(hour(end)), (start..=end).collect())
        }
        // One hour.
        _ => {
            let h = g.below(6) as u32;
            (Some(hour(h)), None, BTreeSet::from([h]))
        }
    };
    let run = NewRun {
        status: RunStatus::Queued,
        selection: "generated".into(),
        asset_keys: assets,
        partition_key: from,
        partition_key_end: to,
        ..NewRun::new(orch::new_run_id(), at(created))
    };
    (run, hours)
}

/// Whether two generated runs may materialize one asset partition (the model: shared asset,
/// shared hour).
fn model_overlaps(a: &(NewRun, BTreeSet<u32>), b: &(NewRun, BTreeSet<u32>)) -> bool {
    a.0.asset_keys.iter().any(|k| b.0.asset_keys.contains(k)) && !a.1.is_disjoint(&b.1)
}

/// Checks that no two runs in flight share an asset partition, and returns them.
async fn check_in_flight(
    storage: &Arc<dyn Storage>,
    model: &HashMap<RunId, (NewRun, BTreeSet<u32>)>,
    seed: u64,
) -> Vec<RunId> {
    let busy: Vec<RunId> = storage
        .list_runs(&in_flight())
        .await
        .unwrap()
        .iter()
        .map(|r| r.run_id)
        .collect();
    for (i, a) in busy.iter().enumerate() {
        for b in &busy[i + 1..] {
            assert!(
                !model_overlaps(&model[a], &model[b]),
                "seed {seed}: runs {a} and {b} share an asset partition and are both in flight"
            );
        }
    }
    busy
}

/// Generated queues (random assets, hours, ranges, days and whole assets), claimed by four
/// concurrent claimers each on its own storage, then by random claims and ends: never two runs
/// of one asset partition in flight, a claim that finds nothing leaves no queued run that was
/// free, and every run is claimed in the end. `ORCH_QUEUE_CASES` sets the number of cases.
async fn one_asset_partition_one_run_at_a_time(db: &TestDb, cases: u64) {
    let claimers = storages(db, 4).await;
    let lease = Duration::from_secs(600);
    for seed in 1..=cases {
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut model = HashMap::new();
        for i in 0..10 {
            let (run, hours) = generated_run(&mut g, i);
            db.storage.create_run(&run).await.unwrap();
            model.insert(run.run_id, (run, hours));
        }
        // Concurrent claimers, each until the queue gives it nothing.
        let barrier = Arc::new(Barrier::new(claimers.len()));
        let tasks: Vec<_> = claimers
            .iter()
            .enumerate()
            .map(|(i, storage)| {
                let (storage, barrier) = (storage.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let owner = format!("w{i}");
                    let limits = QueueLimits::default();
                    while storage
                        .claim_run(&owner, at(1_000), lease, &limits)
                        .await
                        .unwrap()
                        .is_some()
                    {}
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let mut claimed: BTreeSet<RunId> = BTreeSet::new();
        let mut busy = check_in_flight(&db.storage, &model, seed).await;
        claimed.extend(busy.iter().copied());
        // Random ends and claims until every run has run.
        let mut step = 0;
        while claimed.len() < model.len() || !busy.is_empty() {
            step += 1;
            assert!(step < 1_000, "seed {seed}: the queue does not drain");
            if !busy.is_empty() && g.below(2) == 0 {
                let done = busy[g.below(busy.len() as u64) as usize];
                db.storage
                    .transition_run(done, RunStatus::Failure, at(1_000 + step))
                    .await
                    .unwrap();
            } else {
                let lease = db
                    .storage
                    .claim_run("w", at(1_000 + step), lease, &QueueLimits::default())
                    .await
                    .unwrap();
                match lease {
                    Some(l) => {
                        claimed.insert(l.run.run_id);
                    }
                    None => {
                        // Nothing free: every queued run overlaps a run in flight.
                        for (id, run) in &model {
                            if !claimed.contains(id) {
                                assert!(
                                    busy.iter().any(|b| model_overlaps(run, &model[b])),
                                    "seed {seed}: run {id} was free but not claimed"
                                );
                            }
                        }
                    }
                }
            }
            busy = check_in_flight(&db.storage, &model, seed).await;
        }
    }
}

fn queue_cases() -> u64 {
    std::env::var("ORCH_QUEUE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_one_asset_partition_is_never_in_two_runs_at_once() {
    run(db::postgres().await, async |db| {
        one_asset_partition_one_run_at_a_time(db, queue_cases()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_one_asset_partition_is_never_in_two_runs_at_once() {
    run(db::sqlite().await, async |db| {
        one_asset_partition_one_run_at_a_time(db, queue_cases()).await
    })
    .await;
}
