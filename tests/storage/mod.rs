//! The run-history conformance suite: every case runs against SQLite and Postgres, so that
//! the two backends behave the same (in the manner of Dagster's `TestRunStorage`). One module
//! per concern of `orch::storage`: runs, the event log, the run queue, schedules (ticks,
//! backfills, sensor cursors), pools, heartbeats and freshness violations. Then, here, the
//! backend-specific cases: several SQLite pools on one file, concurrent migrations, unreadable
//! rows, URLs.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use orch::event::{
    CheckEvaluation, ErrorInfo, Event, EventBody, EventKind, LogLevel, LogLine, LogStream,
    StoredEvent,
};
use orch::run::NewRun;
use orch::storage::{
    Backend, Backfill, ClaimedRun, ComponentHeartbeat, DaemonHeartbeat, EventFilter,
    FreshnessViolation, Lease, LeaseState, NewTick, NewViolation, PoolSlot, Pruned, QueueLimits,
    RunFilter, RunStorage, ScheduleState, SqlStorage, Storage, StorageError, Tick, TickRecord,
    TickStatus,
};
use orch::{AssetKey, Metadata, MetadataValue, RunId, RunStatus};

use crate::util::db;
use orch::request::tags::{BACKFILL as BACKFILL_TAG, SCHEDULE as SCHEDULE_TAG};

/// Generates, in the module that calls it, one `#[tokio::test]` per backend for each `case_*`
/// function of that module. The database is cleaned up even if the case fails.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    $crate::storage::run_case($crate::util::db::sqlite().await, super::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    $crate::storage::run_case($crate::util::db::postgres().await, super::$case).await;
                }
            )*
        }
    };
}

mod events;
mod freshness;
mod health;
mod pools;
mod queue;
mod runs;
mod schedules;

async fn run_case<F, Fut>(db: db::TestDb, case: F)
where
    F: FnOnce(Arc<dyn Storage>) -> Fut,
    Fut: Future<Output = ()>,
{
    let result = AssertUnwindSafe(case(db.storage.clone()))
        .catch_unwind()
        .await;
    db.cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fixed instant plus `secs` (microsecond precision, as stored).
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + secs, 123_456_000).unwrap()
}

fn key(s: &str) -> AssetKey {
    AssetKey::parse(s).unwrap()
}

fn new_run(status: RunStatus, keys: &[&str], created: i64) -> NewRun {
    NewRun {
        status,
        selection: keys.join(" "),
        asset_keys: keys.iter().map(|k| key(k)).collect(),
        ..NewRun::new(orch::new_run_id(), at(created))
    }
}

fn event(run_id: RunId, kind: EventKind, secs: i64) -> Event {
    Event {
        run_id,
        step_key: None,
        asset_key: None,
        partition_key: None,
        kind,
        timestamp: at(secs),
        body: EventBody::default(),
    }
}

fn materialization(run_id: RunId, asset: &str, partition: Option<&str>, secs: i64) -> Event {
    Event {
        step_key: Some(asset.replace('/', "__")),
        asset_key: Some(key(asset)),
        partition_key: partition.map(str::to_owned),
        ..event(run_id, EventKind::AssetMaterialization, secs)
    }
}

fn failure(run_id: RunId, asset: &str, partition: Option<&str>, secs: i64) -> Event {
    Event {
        step_key: Some(asset.replace('/', "__")),
        asset_key: Some(key(asset)),
        partition_key: partition.map(str::to_owned),
        ..event(run_id, EventKind::AssetFailed, secs)
    }
}

fn check(run_id: RunId, asset: &str, name: &str, passed: bool, secs: i64) -> Event {
    Event {
        step_key: Some(asset.replace('/', "__")),
        asset_key: Some(key(asset)),
        body: EventBody {
            check: Some(CheckEvaluation {
                check_name: name.to_owned(),
                passed,
                severity: "WARN".to_owned(),
                description: Some(format!("{name} at {secs}")),
            }),
            metadata: Metadata::new().with("secs", secs),
            ..EventBody::default()
        },
        ..event(run_id, EventKind::AssetCheckEvaluation, secs)
    }
}

async fn create(storage: &Arc<dyn Storage>, run: NewRun) -> orch::Run {
    storage.create_run(&run).await.unwrap()
}

async fn events_of(storage: &Arc<dyn Storage>, run_id: RunId) -> Vec<StoredEvent> {
    storage
        .run_events(run_id, &EventFilter::default())
        .await
        .unwrap()
}

fn run_ids(runs: &[orch::Run]) -> Vec<RunId> {
    runs.iter().map(|r| r.run_id).collect()
}

const LEASE: Duration = Duration::from_secs(30);

fn no_limits() -> QueueLimits {
    QueueLimits::default()
}

async fn claim(
    storage: &Arc<dyn Storage>,
    owner: &str,
    now: i64,
    limits: &QueueLimits,
) -> Option<ClaimedRun> {
    storage
        .claim_run(owner, at(now), LEASE, limits)
        .await
        .unwrap()
}

/// A tick of `schedule` at `tick_time`, as `record_tick` takes it.
fn new_tick<'a>(
    schedule: &'a str,
    tick_time: DateTime<Utc>,
    run: Option<&'a NewRun>,
    status: TickStatus,
    message: Option<&'a str>,
) -> NewTick<'a> {
    NewTick {
        schedule,
        tick_time,
        status,
        message,
        run,
    }
}

/// `step_key` of `run_id`'s slot in `pool`.
fn slot<'a>(pool: &'a str, run_id: RunId, step_key: &'a str) -> PoolSlot<'a> {
    PoolSlot {
        pool,
        run_id,
        step_key,
    }
}

fn kinds(events: &[StoredEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.event.kind).collect()
}

fn backfill(id: &str, runs: u32, created: i64) -> Backfill {
    Backfill {
        id: id.to_owned(),
        selection: "daily/*".to_owned(),
        partition_from: "2025-01-01".to_owned(),
        partition_to: "2025-01-31".to_owned(),
        run_count: runs,
        created_at: at(created),
    }
}

fn partition_runs(n: usize, created: i64) -> Vec<NewRun> {
    (0..n)
        .map(|i| NewRun {
            partition_key: Some(format!("2025-01-{:02}", i + 1)),
            ..new_run(RunStatus::Queued, &["daily/a", "daily/b"], created)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// SQLite: several pools (like several processes) on one file

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_pools_write_one_file_concurrently() {
    let db = db::sqlite().await;
    let first: Arc<dyn Storage> = db.storage.clone();
    let second: Arc<dyn Storage> = Arc::new(SqlStorage::connect_sqlite(&db.url).await.unwrap());
    let writer = |storage: Arc<dyn Storage>, name: &'static str| {
        tokio::spawn(async move {
            let mut run_ids = Vec::new();
            for i in 0..150_i64 {
                let mut run = new_run(RunStatus::Queued, &["a", name], i);
                run.tags.insert("writer".to_owned(), name.to_owned());
                let run = storage.create_run(&run).await.unwrap();
                let id = run.run_id;
                storage
                    .transition_run(id, RunStatus::Starting, at(i))
                    .await
                    .unwrap();
                storage
                    .transition_run(id, RunStatus::Started, at(i))
                    .await
                    .unwrap();
                storage
                    .append_events(&[
                        event(id, EventKind::RunStart, i),
                        materialization(id, name, Some(&i.to_string()), i),
                        check(id, name, "c", true, i),
                    ])
                    .await
                    .unwrap();
                storage
                    .append_logs(&[LogLine {
                        run_id: id,
                        step_key: name.to_owned(),
                        stream: LogStream::Stdout,
                        level: LogLevel::Info,
                        timestamp: at(i),
                        message: "hi".to_owned(),
                    }])
                    .await
                    .unwrap();
                storage
                    .transition_run(id, RunStatus::Success, at(i + 1))
                    .await
                    .unwrap();
                run_ids.push(id);
            }
            run_ids
        })
    };
    let (a, b) = tokio::join!(writer(first.clone(), "one"), writer(second.clone(), "two"));
    let (a, b) = (a.unwrap(), b.unwrap());
    for storage in [&first, &second] {
        let all = storage.list_runs(&RunFilter::default()).await.unwrap();
        assert_eq!(all.len(), 300);
        assert!(all.iter().all(|r| r.status == RunStatus::Success));
        for (ids, name) in [(&a, "one"), (&b, "two")] {
            let mine = storage
                .list_runs(&RunFilter {
                    tag: Some(("writer".to_owned(), name.to_owned())),
                    ..RunFilter::default()
                })
                .await
                .unwrap();
            let mut expected = ids.clone();
            expected.reverse();
            assert_eq!(run_ids(&mine), expected);
            assert_eq!(events_of(storage, ids[7]).await.len(), 3);
            assert_eq!(
                storage.asset_partitions(&[key(name)]).await.unwrap().len(),
                150
            );
            assert_eq!(
                storage.check_results(&key(name), 1000).await.unwrap().len(),
                150
            );
        }
    }
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_open_of_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("nested/dir/orch.db").display()
    );
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { SqlStorage::connect_sqlite(&url).await })
        })
        .collect();
    let mut storages = Vec::new();
    for open in opens {
        storages.push(open.await.unwrap().unwrap_or_else(|e| panic!("open: {e}")));
    }
    // All of them see one schema and each other's writes.
    for (i, storage) in storages.iter().enumerate() {
        storage
            .create_run(&new_run(RunStatus::Queued, &["a"], i as i64))
            .await
            .unwrap();
    }
    for storage in &storages {
        assert_eq!(
            storage
                .list_runs(&RunFilter::default())
                .await
                .unwrap()
                .len(),
            8
        );
    }
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let migrations =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite"))
            .unwrap()
            .count();
    assert_eq!(applied, i64::try_from(migrations).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Unreadable rows are reported, not guessed at

async fn corrupt_rows_are_reported(storage: Arc<dyn Storage>, corrupt: impl AsyncFnOnce()) {
    let run = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    storage
        .append_events(&[event(run.run_id, EventKind::RunStart, 1)])
        .await
        .unwrap();
    corrupt().await;
    match storage
        .run_events(run.run_id, &EventFilter::default())
        .await
    {
        Err(StorageError::Corrupt(message)) => {
            assert!(message.contains("NOT_A_KIND"), "{message}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_corrupt_event_is_reported() {
    let db = db::sqlite().await;
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    corrupt_rows_are_reported(db.storage.clone(), async || {
        sqlx::query("UPDATE event_log SET event_type = 'NOT_A_KIND'")
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
    pool.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn postgres_corrupt_event_is_reported() {
    let db = db::postgres().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    corrupt_rows_are_reported(db.storage.clone(), async || {
        sqlx::query("UPDATE event_log SET event_type = 'NOT_A_KIND'")
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
    pool.close().await;
    db.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Opening by URL

#[tokio::test]
async fn open_picks_the_backend_from_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/orch.db");
    for url in [
        format!("sqlite://{}", path.display()),
        format!("sqlite:{}", path.display()),
    ] {
        let storage = orch::storage::open(&url).await.unwrap();
        assert_eq!(storage.backend(), Backend::Sqlite);
        storage
            .create_run(&new_run(RunStatus::Queued, &["a"], 0))
            .await
            .unwrap();
    }
    assert!(path.exists(), "the file and its folders are created");
    let reopened = orch::storage::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(
        reopened
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );

    let memory = orch::storage::open("sqlite::memory:").await.unwrap();
    let run = memory
        .create_run(&new_run(RunStatus::Queued, &["a"], 0))
        .await
        .unwrap();
    memory
        .append_events(&[materialization(run.run_id, "a", None, 1)])
        .await
        .unwrap();
    assert_eq!(memory.asset_partitions(&[]).await.unwrap().len(), 1);

    let db = db::postgres().await;
    let postgres = orch::storage::open(&db.url).await.unwrap();
    assert_eq!(postgres.backend(), Backend::Postgres);
    drop(postgres);
    db.cleanup().await;

    assert!(matches!(
        orch::storage::open("mysql://u:pw@host/db").await,
        Err(StorageError::UnsupportedUrl { url }) if url == "mysql://u:***@host/db"
    ));
}

#[tokio::test]
async fn postgres_connect_error_hides_the_password() {
    // Nothing listens on port 1.
    let err = orch::storage::open("postgres://orch:s3cret@127.0.0.1:1/orch")
        .await
        .err()
        .expect("must fail");
    let message = err.to_string();
    assert!(matches!(err, StorageError::Connect { .. }), "{message}");
    assert!(
        message.contains("postgres://orch:***@127.0.0.1:1/orch"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}
