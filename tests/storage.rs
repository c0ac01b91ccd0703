//! The run-history conformance suite: every case runs against SQLite and Postgres, so that
//! the two backends behave the same (in the manner of Dagster's `TestRunStorage`): runs,
//! events, logs, and the daemon's run queue, schedule ticks, backfills, sensors and
//! heartbeats, pool slots, events across runs and freshness violations. Then the
//! backend-specific cases: several SQLite pools on one file, concurrent migrations,
//! unreadable rows, URLs.

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
    Backend, Backfill, DaemonHeartbeat, EventFilter, FreshnessViolation, Lease, LeaseState,
    QueueLimits, RunFilter, ScheduleState, SqliteStorage, Storage, StorageError, Tick, TickRecord,
    TickStatus,
};
use orch::{AssetKey, Metadata, MetadataValue, RunId, RunStatus};

use crate::util::db;
use orch::request::tags::{BACKFILL as BACKFILL_TAG, SCHEDULE as SCHEDULE_TAG};

/// Generates one `#[tokio::test]` per backend for each `case_*` function. The database is
/// cleaned up even if the case fails.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::run_case(super::db::sqlite().await, super::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::run_case(super::db::postgres().await, super::$case).await;
                }
            )*
        }
    };
}

conformance!(
    case_run_round_trip,
    case_duplicate_run_id,
    case_list_runs_filters,
    case_every_transition,
    case_transition_path_keeps_times,
    case_unknown_run,
    case_events_round_trip,
    case_materializations,
    case_failure_after_success,
    case_check_results,
    case_logs_round_trip,
    case_big_batch,
    case_concurrent_appends,
    case_claim_oldest_first,
    case_claim_respects_max_concurrent_runs,
    case_renew_lease_is_fenced,
    case_expired_leases_and_fail_expired,
    case_terminal_transitions_clear_the_lease,
    case_request_cancel,
    case_cancel_a_claimed_run,
    case_schedule_states,
    case_record_tick_once,
    case_record_tick_is_atomic,
    case_backfill_round_trip,
    case_backfill_is_atomic,
    case_sensor_cursors,
    case_daemon_heartbeats,
    case_queue_wakeups,
    case_pool_slots_acquire_and_release,
    case_pool_slots_renew_and_expire,
    case_pool_slots_concurrent_acquirers,
    case_events_after,
    case_freshness_violations,
    case_asset_events_newest_first,
    case_run_status_counts,
    case_stream_workers,
);

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

// ---------------------------------------------------------------------------------------------
// Runs

async fn case_run_round_trip(storage: Arc<dyn Storage>) {
    let parent = create(&storage, new_run(RunStatus::Failure, &["raw/events"], 0)).await;
    let run = NewRun {
        run_id: orch::new_run_id(),
        status: RunStatus::Queued,
        selection: "raw/events+ tag:team=data".to_owned(),
        asset_keys: vec![key("raw/events"), key("staging/sessions"), key("report")],
        partition_key: Some("2024-01-01".to_owned()),
        partition_key_end: Some("2024-01-31".to_owned()),
        step_subset: Some(["report[2024-01-01...2024-01-31]".to_owned()].into()),
        tags: BTreeMap::from([
            ("team".to_owned(), "data".to_owned()),
            ("orch/backfill".to_owned(), "b-1 é ✓".to_owned()),
        ]),
        parent_run_id: Some(parent.run_id),
        root_run_id: Some(parent.run_id),
        created_at: at(10),
    };
    let stored = storage.create_run(&run).await.unwrap();
    assert!(
        stored.id > parent.id,
        "ids grow: {} then {}",
        parent.id,
        stored.id
    );
    let expected = orch::Run {
        id: stored.id,
        run_id: run.run_id,
        status: RunStatus::Queued,
        selection: run.selection.clone(),
        asset_keys: run.asset_keys.clone(),
        partition_key: run.partition_key.clone(),
        partition_key_end: run.partition_key_end.clone(),
        step_subset: run.step_subset.clone(),
        tags: run.tags.clone(),
        parent_run_id: Some(parent.run_id),
        root_run_id: Some(parent.run_id),
        created_at: at(10),
        started_at: None,
        ended_at: None,
        updated_at: at(10),
    };
    assert_eq!(stored, expected);
    assert_eq!(storage.get_run(run.run_id).await.unwrap(), Some(expected));

    // The parent: no partition, no tags, a status other than QUEUED.
    let got = storage.get_run(parent.run_id).await.unwrap().unwrap();
    assert_eq!(got, parent);
    assert_eq!(got.status, RunStatus::Failure);
    assert_eq!(got.partition_key, None);
    assert!(got.tags.is_empty());
    assert_eq!(got.parent_run_id, None);

    // A run of no assets.
    let empty = create(&storage, new_run(RunStatus::Queued, &[], 20)).await;
    assert!(empty.asset_keys.is_empty());
    assert_eq!(storage.get_run(empty.run_id).await.unwrap(), Some(empty));

    assert_eq!(storage.get_run(orch::new_run_id()).await.unwrap(), None);
}

async fn case_duplicate_run_id(storage: Arc<dyn Storage>) {
    let run = new_run(RunStatus::Queued, &["a"], 0);
    let first = create(&storage, run.clone()).await;
    let again = NewRun {
        selection: "something else".to_owned(),
        asset_keys: vec![key("b")],
        tags: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        ..run.clone()
    };
    match storage.create_run(&again).await {
        Err(StorageError::RunExists(id)) => assert_eq!(id, run.run_id),
        other => panic!("expected RunExists, got {other:?}"),
    }
    assert_eq!(storage.get_run(run.run_id).await.unwrap(), Some(first));
    let all = storage.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(run_ids(&all), vec![run.run_id]);
    // Nothing of the refused run leaked into the asset and tag indexes.
    let by_b = RunFilter {
        asset_key: Some(key("b")),
        ..RunFilter::default()
    };
    assert!(storage.list_runs(&by_b).await.unwrap().is_empty());
    let by_tag = RunFilter {
        tag: Some(("k".to_owned(), "v".to_owned())),
        ..RunFilter::default()
    };
    assert!(storage.list_runs(&by_tag).await.unwrap().is_empty());
    // And the storage still works after the refusal.
    create(&storage, new_run(RunStatus::Queued, &["b"], 1)).await;
}

async fn case_list_runs_filters(storage: Arc<dyn Storage>) {
    let tagged = |mut run: NewRun, k: &str, v: &str| {
        run.tags.insert(k.to_owned(), v.to_owned());
        run
    };
    let partitioned = |mut run: NewRun, p: &str| {
        run.partition_key = Some(p.to_owned());
        run
    };
    let r0 = create(&storage, new_run(RunStatus::Success, &["a", "b"], 0)).await;
    let r1 = create(
        &storage,
        tagged(new_run(RunStatus::Failure, &["b"], 1), "team", "x"),
    )
    .await;
    let r2 = create(
        &storage,
        partitioned(new_run(RunStatus::Queued, &["a"], 2), "2024-01-01"),
    )
    .await;
    let r3 = create(
        &storage,
        tagged(
            partitioned(new_run(RunStatus::Started, &["c"], 3), "2024-01-02"),
            "team",
            "y",
        ),
    )
    .await;
    let r4 = create(
        &storage,
        tagged(
            partitioned(new_run(RunStatus::Success, &["a", "c"], 4), "2024-01-01"),
            "team",
            "x",
        ),
    )
    .await;
    let r5 = create(&storage, new_run(RunStatus::Canceled, &["b/c"], 5)).await;

    let list = async |filter: RunFilter| run_ids(&storage.list_runs(&filter).await.unwrap());
    let ids = |runs: &[&orch::Run]| runs.iter().map(|r| r.run_id).collect::<Vec<_>>();

    // Newest first, complete.
    let all = storage.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(run_ids(&all), ids(&[&r5, &r4, &r3, &r2, &r1, &r0]));
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all[1], r4);

    let f = RunFilter {
        statuses: vec![RunStatus::Success],
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r4, &r0]));
    let f = RunFilter {
        statuses: vec![RunStatus::Failure, RunStatus::Canceled, RunStatus::Started],
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r5, &r3, &r1]));
    let f = RunFilter {
        statuses: vec![RunStatus::Canceling],
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[]));

    let f = RunFilter {
        asset_key: Some(key("a")),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r4, &r2, &r0]));
    let f = RunFilter {
        asset_key: Some(key("b/c")),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r5]));
    let f = RunFilter {
        asset_key: Some(key("nope")),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[]));

    let f = RunFilter {
        partition_key: Some("2024-01-01".to_owned()),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r4, &r2]));

    let f = RunFilter {
        tag: Some(("team".to_owned(), "x".to_owned())),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r4, &r1]));
    let f = RunFilter {
        tag: Some(("team".to_owned(), "z".to_owned())),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[]));

    // Filters combine.
    let f = RunFilter {
        statuses: vec![RunStatus::Success, RunStatus::Queued],
        asset_key: Some(key("a")),
        partition_key: Some("2024-01-01".to_owned()),
        tag: Some(("team".to_owned(), "x".to_owned())),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r4]));

    // Limit, and keyset pagination through everything.
    let f = RunFilter {
        limit: Some(2),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r5, &r4]));
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = storage
            .list_runs(&RunFilter {
                before_id: before,
                limit: Some(4),
                ..RunFilter::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = Some(page.last().unwrap().id);
        pages.push(run_ids(&page));
    }
    assert_eq!(
        pages,
        vec![ids(&[&r5, &r4, &r3, &r2]), ids(&[&r1, &r0])],
        "pages of 4"
    );
    let f = RunFilter {
        asset_key: Some(key("a")),
        before_id: Some(r4.id),
        limit: Some(1),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r2]));
    let f = RunFilter {
        limit: Some(0),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[]));
}

async fn case_every_transition(storage: Arc<dyn Storage>) {
    let mut legal = 0;
    for from in RunStatus::ALL {
        for to in RunStatus::ALL {
            let run = create(&storage, new_run(from, &["a"], 0)).await;
            let result = storage.transition_run(run.run_id, to, at(60)).await;
            if from.can_become(to) {
                legal += 1;
                let moved = result.unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
                assert_eq!(moved.status, to, "{from} -> {to}");
                assert_eq!(moved.updated_at, at(60), "{from} -> {to}");
                assert_eq!(moved.created_at, at(0), "{from} -> {to}");
                let started = (to == RunStatus::Started).then(|| at(60));
                assert_eq!(moved.started_at, started, "{from} -> {to}: started_at");
                let ended = to.is_terminal().then(|| at(60));
                assert_eq!(moved.ended_at, ended, "{from} -> {to}: ended_at");
                assert_eq!(storage.get_run(run.run_id).await.unwrap(), Some(moved));
            } else {
                match result {
                    Err(StorageError::IllegalTransition {
                        run_id,
                        from: f,
                        to: t,
                    }) => {
                        assert_eq!((run_id, f, t), (run.run_id, from, to));
                    }
                    other => panic!("{from} -> {to} must be refused, got {other:?}"),
                }
                assert_eq!(
                    storage.get_run(run.run_id).await.unwrap(),
                    Some(run),
                    "{from} -> {to} changed nothing"
                );
            }
        }
    }
    assert_eq!(legal, 13, "the legal transitions of run.rs");
}

async fn case_transition_path_keeps_times(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let id = run.run_id;
    let r = storage
        .transition_run(id, RunStatus::Starting, at(1))
        .await
        .unwrap();
    assert_eq!((r.started_at, r.ended_at), (None, None));
    let r = storage
        .transition_run(id, RunStatus::Started, at(2))
        .await
        .unwrap();
    assert_eq!((r.started_at, r.ended_at), (Some(at(2)), None));
    let r = storage
        .transition_run(id, RunStatus::Canceling, at(3))
        .await
        .unwrap();
    assert_eq!((r.started_at, r.ended_at), (Some(at(2)), None));
    let r = storage
        .transition_run(id, RunStatus::Canceled, at(4))
        .await
        .unwrap();
    assert_eq!((r.started_at, r.ended_at), (Some(at(2)), Some(at(4))));
    assert_eq!(r.updated_at, at(4));
    // Over: nothing more.
    for to in RunStatus::ALL {
        assert!(matches!(
            storage.transition_run(id, to, at(5)).await,
            Err(StorageError::IllegalTransition {
                from: RunStatus::Canceled,
                ..
            })
        ));
    }
    assert_eq!(storage.get_run(id).await.unwrap(), Some(r));
}

async fn case_unknown_run(storage: Arc<dyn Storage>) {
    let nobody = orch::new_run_id();
    for to in RunStatus::ALL {
        match storage.transition_run(nobody, to, at(0)).await {
            Err(StorageError::RunNotFound(id)) => assert_eq!(id, nobody),
            other => panic!("transition of an unknown run to {to}: {other:?}"),
        }
    }
    assert!(events_of(&storage, nobody).await.is_empty());
    assert!(storage.step_logs(nobody, None).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Events

fn full_body() -> EventBody {
    EventBody {
        message: Some("step failed: ünïcödé \"quotes\" \\ and\nnewlines".to_owned()),
        error: Some(ErrorInfo {
            message: "boom".to_owned(),
            causes: vec!["cause one".to_owned(), "root cause".to_owned()],
        }),
        attempt: Some(3),
        retry_delay_ms: Some(1500),
        duration_ms: Some(12.5),
        metadata: Metadata::new()
            .with("row_count", 42_i64)
            .with("big", MetadataValue::Int(i64::MAX))
            .with("ratio", 0.1)
            .with("ok", true)
            .with("note", "text")
            .with("path", MetadataValue::Path("/tmp/x.parquet".to_owned()))
            .with(
                "url",
                MetadataValue::Url("https://example.com/x".to_owned()),
            )
            .with("took", MetadataValue::DurationMs(3.25))
            .with(
                "json",
                serde_json::json!({"z": [1, 2.5, null], "a": {"nested": "yes"}}),
            ),
        code_version: Some("v7".to_owned()),
        check: Some(CheckEvaluation {
            check_name: "not_null".to_owned(),
            passed: false,
            severity: "ERROR".to_owned(),
            description: Some("ids are never null".to_owned()),
        }),
        partition_key_end: Some("2024-01-31".to_owned()),
    }
}

async fn case_events_round_trip(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a", "b/c"], 0)).await;
    let other = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    let id = run.run_id;
    let first = vec![
        event(id, EventKind::RunStart, 1),
        Event {
            step_key: Some("a".to_owned()),
            ..event(id, EventKind::StepStart, 2)
        },
        Event {
            step_key: Some("a".to_owned()),
            asset_key: Some(key("a")),
            partition_key: Some("2024-01-01".to_owned()),
            body: full_body(),
            ..event(id, EventKind::StepFailure, 3)
        },
        Event {
            step_key: Some("b__c".to_owned()),
            ..event(id, EventKind::StepStart, 3)
        },
    ];
    let second = vec![
        materialization(id, "b/c", None, 4),
        Event {
            step_key: Some("b__c".to_owned()),
            ..event(id, EventKind::StepSuccess, 5)
        },
        // The same instant as the one before: order is append order, not time.
        event(id, EventKind::EngineEvent, 5).message("done"),
        event(id, EventKind::RunSuccess, 5),
    ];
    storage.append_events(&first).await.unwrap();
    storage
        .append_events(&[event(other.run_id, EventKind::RunStart, 1)])
        .await
        .unwrap();
    storage.append_events(&second).await.unwrap();
    storage.append_events(&[]).await.unwrap();

    let all = events_of(&storage, id).await;
    let expected: Vec<Event> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        all.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        expected,
        "every field round-trips, in order"
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids grow");
    let theirs = events_of(&storage, other.run_id).await;
    assert_eq!(theirs.len(), 1);
    assert!(
        theirs[0].id > all[3].id && theirs[0].id < all[4].id,
        "ids grow across runs"
    );

    let with = async |filter: EventFilter| {
        storage
            .run_events(id, &filter)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    let ids = |idx: &[usize]| idx.iter().map(|&i| all[i].id).collect::<Vec<_>>();

    let f = EventFilter {
        after_id: Some(all[4].id),
        ..EventFilter::default()
    };
    assert_eq!(with(f).await, ids(&[5, 6, 7]));
    let f = EventFilter {
        after_id: Some(all[7].id),
        ..EventFilter::default()
    };
    assert_eq!(with(f).await, ids(&[]));
    let f = EventFilter {
        kinds: vec![EventKind::StepStart, EventKind::RunSuccess],
        ..EventFilter::default()
    };
    assert_eq!(with(f).await, ids(&[1, 3, 7]));
    let f = EventFilter {
        step_key: Some("b__c".to_owned()),
        ..EventFilter::default()
    };
    assert_eq!(with(f).await, ids(&[3, 4, 5]));
    let f = EventFilter {
        limit: Some(3),
        ..EventFilter::default()
    };
    assert_eq!(with(f).await, ids(&[0, 1, 2]));
    let f = EventFilter {
        after_id: Some(all[1].id),
        kinds: vec![
            EventKind::StepStart,
            EventKind::StepSuccess,
            EventKind::StepFailure,
        ],
        step_key: Some("a".to_owned()),
        limit: Some(5),
    };
    assert_eq!(with(f).await, ids(&[2]));
}

async fn case_materializations(storage: Arc<dyn Storage>) {
    let r1 = create(
        &storage,
        new_run(RunStatus::Started, &["daily", "plain"], 0),
    )
    .await;
    let r2 = create(&storage, new_run(RunStatus::Started, &["daily"], 0)).await;
    let with_meta = |mut e: Event, rows: i64, version: &str| {
        e.body.metadata = Metadata::new().with("row_count", rows);
        e.body.code_version = Some(version.to_owned());
        e
    };
    storage
        .append_events(&[
            with_meta(
                materialization(r1.run_id, "daily", Some("2024-01-01"), 1),
                10,
                "v1",
            ),
            with_meta(
                materialization(r1.run_id, "daily", Some("2024-01-02"), 2),
                20,
                "v1",
            ),
            materialization(r1.run_id, "plain", None, 3),
            event(r1.run_id, EventKind::RunSuccess, 4),
        ])
        .await
        .unwrap();
    storage
        .append_events(&[
            with_meta(
                materialization(r2.run_id, "daily", Some("2024-01-01"), 5),
                11,
                "v2",
            ),
            with_meta(
                materialization(r2.run_id, "daily", Some("2024-01-01"), 6),
                12,
                "v3",
            ),
            // A partitioned event of another asset, and events without assets.
            materialization(r2.run_id, "nested/x", Some("k"), 7),
            event(r2.run_id, EventKind::RunSuccess, 8),
        ])
        .await
        .unwrap();

    let e1 = events_of(&storage, r1.run_id).await;
    let e2 = events_of(&storage, r2.run_id).await;

    let all = storage.asset_partitions(&[]).await.unwrap();
    let coordinates: Vec<(String, Option<String>)> = all
        .iter()
        .map(|r| (r.asset_key.to_string(), r.partition_key.clone()))
        .collect();
    assert_eq!(
        coordinates,
        vec![
            ("daily".to_owned(), Some("2024-01-01".to_owned())),
            ("daily".to_owned(), Some("2024-01-02".to_owned())),
            ("nested/x".to_owned(), Some("k".to_owned())),
            ("plain".to_owned(), None),
        ]
    );
    let jan1 = all[0].materialization.as_ref().unwrap();
    assert_eq!(jan1.run_id, r2.run_id, "the latest materialization wins");
    assert_eq!(jan1.event_id, e2[1].id, "and points at its own event");
    assert_eq!(jan1.timestamp, at(6));
    assert_eq!(jan1.metadata.row_count(), Some(12));
    assert_eq!(jan1.code_version.as_deref(), Some("v3"));
    let jan2 = all[1].materialization.as_ref().unwrap();
    assert_eq!(
        (jan2.run_id, jan2.event_id, jan2.timestamp),
        (r1.run_id, e1[1].id, at(2))
    );
    assert_eq!(jan2.metadata, Metadata::new().with("row_count", 20_i64));
    assert_eq!(jan2.code_version.as_deref(), Some("v1"));
    let plain = all[3].materialization.as_ref().unwrap();
    assert_eq!(
        (plain.event_id, plain.code_version.as_deref()),
        (e1[2].id, None)
    );
    assert!(plain.metadata.is_empty());
    assert!(
        all.iter()
            .all(|r| r.last_failure.is_none() && !r.is_failed())
    );

    // Filtered by key, in key order whatever the order asked.
    let some = storage
        .asset_partitions(&[key("plain"), key("daily"), key("missing")])
        .await
        .unwrap();
    assert_eq!(some, vec![all[0].clone(), all[1].clone(), all[3].clone()]);

    // Per asset: the latest over all partitions.
    let latest = storage.latest_by_asset(&[]).await.unwrap();
    assert_eq!(latest.len(), 3);
    assert_eq!(latest[0], all[0], "daily: 2024-01-01 was materialized last");
    assert_eq!(latest[1], all[2]);
    assert_eq!(latest[2], all[3]);
    let one = storage.latest_by_asset(&[key("plain")]).await.unwrap();
    assert_eq!(one, vec![all[3].clone()]);
    assert!(
        storage
            .latest_by_asset(&[key("missing")])
            .await
            .unwrap()
            .is_empty()
    );

    // Later: 2024-01-02 again, so it becomes the latest of `daily`.
    storage
        .append_events(&[materialization(r2.run_id, "daily", Some("2024-01-02"), 9)])
        .await
        .unwrap();
    let latest = storage.latest_by_asset(&[key("daily")]).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].partition_key.as_deref(), Some("2024-01-02"));
    assert_eq!(latest[0].materialization.as_ref().unwrap().timestamp, at(9));
}

async fn case_failure_after_success(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a", "b", "c"], 0)).await;
    let id = run.run_id;
    let mut with_error = failure(id, "a", None, 2);
    with_error.body.error = Some(ErrorInfo {
        message: "disk full".to_owned(),
        causes: vec![],
    });
    with_error.body.message = Some("the step failed".to_owned());
    storage
        .append_events(&[
            materialization(id, "a", None, 1),
            with_error,
            failure(id, "b", Some("p"), 3).message("only a message"),
            failure(id, "c", None, 4),
        ])
        .await
        .unwrap();
    let records = storage.asset_partitions(&[]).await.unwrap();
    let [a, b, c] = &records[..] else {
        panic!("three records: {records:?}");
    };
    assert!(a.is_failed(), "a failure after a success");
    assert_eq!(a.materialization.as_ref().unwrap().timestamp, at(1));
    let f = a.last_failure.as_ref().unwrap();
    assert_eq!((f.run_id, f.timestamp), (id, at(2)));
    assert_eq!(
        f.message.as_deref(),
        Some("disk full"),
        "the error's message first"
    );
    assert!(b.is_failed() && b.materialization.is_none());
    assert_eq!(b.partition_key.as_deref(), Some("p"));
    assert_eq!(
        b.last_failure.as_ref().unwrap().message.as_deref(),
        Some("only a message")
    );
    assert_eq!(c.last_failure.as_ref().unwrap().message, None);

    // A success after the failure: no longer failed, the failure is kept.
    storage
        .append_events(&[materialization(id, "a", None, 5)])
        .await
        .unwrap();
    let a = storage
        .asset_partitions(&[key("a")])
        .await
        .unwrap()
        .remove(0);
    assert!(!a.is_failed());
    assert_eq!(a.last_failure.as_ref().unwrap().timestamp, at(2));

    let latest = storage
        .latest_by_asset(&[key("a"), key("b")])
        .await
        .unwrap();
    assert_eq!(latest.len(), 2);
    assert!(!latest[0].is_failed());
    assert!(latest[1].is_failed() && latest[1].materialization.is_none());
    assert_eq!(latest[1].partition_key.as_deref(), Some("p"));
}

async fn case_check_results(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a", "b"], 0)).await;
    let id = run.run_id;
    let mut partitioned = check(id, "a", "fresh", true, 3);
    partitioned.partition_key = Some("2024-01-01".to_owned());
    storage
        .append_events(&[
            check(id, "a", "not_null", true, 1),
            check(id, "b", "unique", false, 2),
            // A check event without a result is stored but derives nothing.
            Event {
                asset_key: Some(key("a")),
                ..event(id, EventKind::AssetCheckEvaluation, 2)
            },
        ])
        .await
        .unwrap();
    storage
        .append_events(&[partitioned, check(id, "a", "not_null", false, 4)])
        .await
        .unwrap();
    let events = events_of(&storage, id).await;
    assert_eq!(events.len(), 5);

    let results = storage.check_results(&key("a"), 10).await.unwrap();
    let summary: Vec<(&str, bool, i64)> = results
        .iter()
        .map(|r| {
            (
                r.evaluation.check_name.as_str(),
                r.evaluation.passed,
                r.event_id,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("not_null", false, events[4].id),
            ("fresh", true, events[3].id),
            ("not_null", true, events[0].id),
        ],
        "newest first"
    );
    let newest = &results[0];
    assert_eq!(newest.run_id, id);
    assert_eq!(newest.asset_key, key("a"));
    assert_eq!(newest.partition_key, None);
    assert_eq!(newest.timestamp, at(4));
    assert_eq!(
        newest.evaluation,
        CheckEvaluation {
            check_name: "not_null".to_owned(),
            passed: false,
            severity: "WARN".to_owned(),
            description: Some("not_null at 4".to_owned()),
        }
    );
    assert_eq!(newest.metadata, Metadata::new().with("secs", 4_i64));
    assert_eq!(results[1].partition_key.as_deref(), Some("2024-01-01"));

    let limited = storage.check_results(&key("a"), 2).await.unwrap();
    assert_eq!(limited, results[..2].to_vec());
    let b = storage.check_results(&key("b"), 10).await.unwrap();
    assert_eq!(b.len(), 1);
    assert!(!b[0].evaluation.passed);
    assert!(
        storage
            .check_results(&key("c"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_logs_round_trip(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a", "b"], 0)).await;
    let other = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    let line = |run_id: RunId, step: &str, i: i64, stream: LogStream, level: LogLevel| LogLine {
        run_id,
        step_key: step.to_owned(),
        stream,
        level,
        // Not in time order: order is append order.
        timestamp: at(100 - i),
        message: format!("{step} line {i}\twith tab"),
    };
    let streams = [LogStream::Log, LogStream::Stdout, LogStream::Stderr];
    let levels = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];
    let mut lines = Vec::new();
    for i in 0..40 {
        let step = if i % 3 == 0 { "b" } else { "a" };
        lines.push(line(
            run.run_id,
            step,
            i,
            streams[i as usize % 3],
            levels[i as usize % 4],
        ));
    }
    storage.append_logs(&lines[..25]).await.unwrap();
    storage
        .append_logs(&[line(other.run_id, "a", 0, LogStream::Log, LogLevel::Info)])
        .await
        .unwrap();
    storage.append_logs(&lines[25..]).await.unwrap();
    storage.append_logs(&[]).await.unwrap();

    assert_eq!(storage.step_logs(run.run_id, None).await.unwrap(), lines);
    let a: Vec<LogLine> = lines
        .iter()
        .filter(|l| l.step_key == "a")
        .cloned()
        .collect();
    assert_eq!(storage.step_logs(run.run_id, Some("a")).await.unwrap(), a);
    assert_eq!(
        storage.step_logs(other.run_id, None).await.unwrap().len(),
        1
    );
    assert!(
        storage
            .step_logs(run.run_id, Some("zzz"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_big_batch(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["big"], 0)).await;
    let id = run.run_id;
    let partitions = ["p0", "p1", "p2", "p3", "p4", "p5", "p6"];
    let mut events = Vec::new();
    for i in 0..5000_i64 {
        let e = match i % 5 {
            0 | 3 => {
                let mut m = materialization(id, "big", Some(partitions[i as usize % 7]), i);
                m.body.metadata = Metadata::new().with("i", i);
                m
            }
            1 => materialization(id, "other", None, i),
            2 => Event {
                step_key: Some(format!("step_{}", i % 100)),
                ..event(id, EventKind::StepStart, i)
            },
            _ => check(id, "big", "c", i % 2 == 0, i),
        };
        events.push(e);
    }
    storage.append_events(&events).await.unwrap();

    let stored = events_of(&storage, id).await;
    assert_eq!(stored.len(), 5000);
    assert!(
        stored.iter().map(|s| &s.event).eq(events.iter()),
        "all stored, in order"
    );
    let event_ids: HashMap<i64, usize> =
        stored.iter().enumerate().map(|(i, s)| (s.id, i)).collect();

    let records = storage.asset_partitions(&[key("big")]).await.unwrap();
    assert_eq!(records.len(), partitions.len());
    for record in &records {
        let partition = record.partition_key.as_deref().unwrap();
        let last = (0..5000_i64)
            .rev()
            .find(|i| matches!(i % 5, 0 | 3) && partitions[*i as usize % 7] == partition)
            .unwrap();
        let m = record.materialization.as_ref().unwrap();
        assert_eq!(m.timestamp, at(last), "{partition}");
        assert_eq!(m.metadata.get("i"), Some(&MetadataValue::Int(last)));
        assert_eq!(
            event_ids[&m.event_id], last as usize,
            "{partition}: event id"
        );
    }
    let other = storage.asset_partitions(&[key("other")]).await.unwrap();
    assert_eq!(
        event_ids[&other[0].materialization.as_ref().unwrap().event_id],
        4996
    );
    let checks = storage.check_results(&key("big"), 2000).await.unwrap();
    assert_eq!(checks.len(), 1000);
    assert_eq!(event_ids[&checks[0].event_id], 4999);
    assert_eq!(checks[0].timestamp, at(4999));
}

async fn case_concurrent_appends(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    let id = run.run_id;
    const TASKS: usize = 8;
    const BATCHES: u32 = 25;
    const PER_BATCH: u32 = 8;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let storage = storage.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..BATCHES {
                let events: Vec<Event> = (0..PER_BATCH)
                    .map(|i| {
                        let seq = batch * PER_BATCH + i;
                        let mut e = if seq.is_multiple_of(4) {
                            materialization(id, "a", Some(&format!("t{task}")), i64::from(seq))
                        } else {
                            event(id, EventKind::EngineEvent, i64::from(seq))
                        };
                        e.step_key = Some(format!("task{task}"));
                        e.body.attempt = Some(seq);
                        e
                    })
                    .collect();
                storage.append_events(&events).await.unwrap();
                storage
                    .append_logs(&[LogLine {
                        run_id: id,
                        step_key: format!("task{task}"),
                        stream: LogStream::Log,
                        level: LogLevel::Info,
                        timestamp: at(i64::from(batch)),
                        message: batch.to_string(),
                    }])
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stored = events_of(&storage, id).await;
    assert_eq!(
        stored.len(),
        TASKS * (BATCHES * PER_BATCH) as usize,
        "nothing lost"
    );
    let mut ids: Vec<i64> = stored.iter().map(|s| s.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), stored.len(), "ids unique");
    for task in 0..TASKS {
        let step = format!("task{task}");
        let seqs: Vec<u32> = stored
            .iter()
            .filter(|s| s.event.step_key.as_deref() == Some(step.as_str()))
            .map(|s| s.event.body.attempt.unwrap())
            .collect();
        assert_eq!(
            seqs,
            (0..BATCHES * PER_BATCH).collect::<Vec<_>>(),
            "{step} in order"
        );
        let logs = storage.step_logs(id, Some(&step)).await.unwrap();
        let batches: Vec<String> = logs.into_iter().map(|l| l.message).collect();
        assert_eq!(
            batches,
            (0..BATCHES).map(|b| b.to_string()).collect::<Vec<_>>()
        );
        // Each task's partition holds its own last materialization.
        let record = storage.asset_partitions(&[key("a")]).await.unwrap();
        let mine = record
            .iter()
            .find(|r| r.partition_key.as_deref() == Some(format!("t{task}").as_str()))
            .unwrap();
        let m = mine.materialization.as_ref().unwrap();
        let last_seq = (0..BATCHES * PER_BATCH)
            .rev()
            .find(|s| s.is_multiple_of(4))
            .unwrap();
        assert_eq!(m.timestamp, at(i64::from(last_seq)));
        let event = stored.iter().find(|s| s.id == m.event_id).unwrap();
        assert_eq!(event.event.step_key.as_deref(), Some(step.as_str()));
        assert_eq!(event.event.body.attempt, Some(last_seq));
    }
}

// ---------------------------------------------------------------------------------------------
// The run queue

const LEASE: Duration = Duration::from_secs(30);

fn no_limits() -> QueueLimits {
    QueueLimits::default()
}

fn at_most(runs: u32) -> QueueLimits {
    QueueLimits {
        max_concurrent_runs: Some(runs),
    }
}

async fn claim(
    storage: &Arc<dyn Storage>,
    owner: &str,
    now: i64,
    limits: &QueueLimits,
) -> Option<Lease> {
    storage
        .claim_run(owner, at(now), LEASE, limits)
        .await
        .unwrap()
}

/// The run ids of the leases, in order.
fn leased(leases: &[Lease]) -> Vec<RunId> {
    leases.iter().map(|l| l.run.run_id).collect()
}

fn kinds(events: &[StoredEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.event.kind).collect()
}

async fn case_claim_oldest_first(storage: Arc<dyn Storage>) {
    assert_eq!(
        claim(&storage, "w", 0, &no_limits()).await,
        None,
        "nothing queued"
    );
    // Runs that are not QUEUED are never claimed.
    for status in RunStatus::ALL {
        if status != RunStatus::Queued {
            create(&storage, new_run(status, &["x"], 0)).await;
        }
    }
    let queued: Vec<orch::Run> = {
        let mut runs = Vec::new();
        for i in 0..3 {
            runs.push(create(&storage, new_run(RunStatus::Queued, &["a", "b"], i)).await);
        }
        runs
    };
    for (i, run) in queued.iter().enumerate() {
        let owner = format!("worker-{i}");
        let lease = claim(&storage, &owner, 100, &no_limits()).await.unwrap();
        let expected = orch::Run {
            status: RunStatus::Starting,
            updated_at: at(100),
            ..run.clone()
        };
        assert_eq!(
            lease,
            Lease {
                run: expected.clone(),
                attempt: 1,
                owner,
                expires_at: at(100) + LEASE,
            },
            "claim {i} takes the oldest QUEUED run"
        );
        assert_eq!(storage.get_run(run.run_id).await.unwrap(), Some(expected));
        // Claiming appends no event: the worker records RUN_STARTING itself.
        assert!(events_of(&storage, run.run_id).await.is_empty());
    }
    assert_eq!(
        claim(&storage, "w", 101, &no_limits()).await,
        None,
        "all claimed"
    );
    // A claimed run goes on through the usual transitions.
    let r = storage
        .transition_run(queued[0].run_id, RunStatus::Started, at(102))
        .await
        .unwrap();
    assert_eq!(r.started_at, Some(at(102)));
}

async fn case_claim_respects_max_concurrent_runs(storage: Arc<dyn Storage>) {
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(create(&storage, new_run(RunStatus::Queued, &["a"], i)).await);
    }
    assert_eq!(
        claim(&storage, "w", 10, &at_most(0)).await,
        None,
        "a limit of 0 starts nothing"
    );
    // A run already in flight (started by someone else) counts.
    let other = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    let first = claim(&storage, "w", 10, &at_most(2)).await.unwrap();
    assert_eq!(first.run.run_id, queued[0].run_id);
    assert_eq!(
        claim(&storage, "w", 10, &at_most(2)).await,
        None,
        "STARTING + STARTED = 2"
    );
    storage
        .transition_run(first.run.run_id, RunStatus::Started, at(11))
        .await
        .unwrap();
    assert_eq!(
        claim(&storage, "w", 11, &at_most(2)).await,
        None,
        "STARTED + STARTED = 2"
    );
    // CANCELING still counts; only the end of a run makes room.
    storage.request_cancel(other.run_id, at(12)).await.unwrap();
    assert_eq!(
        claim(&storage, "w", 12, &at_most(2)).await,
        None,
        "CANCELING counts"
    );
    storage
        .transition_run(other.run_id, RunStatus::Canceled, at(13))
        .await
        .unwrap();
    let second = claim(&storage, "w", 13, &at_most(2)).await.unwrap();
    assert_eq!(second.run.run_id, queued[1].run_id);
    assert_eq!(claim(&storage, "w", 13, &at_most(2)).await, None);
    // A larger limit, or none, lets more start.
    let third = claim(&storage, "w", 14, &at_most(3)).await.unwrap();
    assert_eq!(third.run.run_id, queued[2].run_id);
    let fourth = claim(&storage, "w", 14, &no_limits()).await.unwrap();
    assert_eq!(fourth.run.run_id, queued[3].run_id);
    storage
        .transition_run(first.run.run_id, RunStatus::Success, at(15))
        .await
        .unwrap();
    assert_eq!(
        claim(&storage, "w", 15, &at_most(4))
            .await
            .map(|l| l.run.run_id),
        Some(queued[4].run_id)
    );
}

async fn case_renew_lease_is_fenced(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let lease = claim(&storage, "w", 100, &no_limits()).await.unwrap();
    assert_eq!(lease.attempt, 1);
    let renew = |attempt: i64, now: i64| {
        let storage = storage.clone();
        async move {
            storage
                .renew_lease(run.run_id, attempt, at(now), Duration::from_secs(60))
                .await
                .unwrap()
        }
    };
    assert_eq!(renew(1, 120).await, LeaseState::Held(RunStatus::Starting));
    // Renewed until 180: not expired at 170 (the claim's lease ended at 130).
    assert!(storage.expired_leases(at(170)).await.unwrap().is_empty());
    let expired = storage.expired_leases(at(181)).await.unwrap();
    assert_eq!(leased(&expired), vec![run.run_id]);
    assert_eq!(expired[0].expires_at, at(180));
    // Another attempt's worker cannot renew, and changes nothing.
    assert_eq!(renew(2, 150).await, LeaseState::Lost);
    assert_eq!(renew(0, 150).await, LeaseState::Lost);
    assert_eq!(
        storage.expired_leases(at(181)).await.unwrap()[0].expires_at,
        at(180)
    );
    // Renewing does not touch the run.
    let before = storage.get_run(run.run_id).await.unwrap().unwrap();
    assert_eq!(renew(1, 121).await, LeaseState::Held(RunStatus::Starting));
    assert_eq!(storage.get_run(run.run_id).await.unwrap(), Some(before));

    storage
        .transition_run(run.run_id, RunStatus::Started, at(130))
        .await
        .unwrap();
    assert_eq!(renew(1, 131).await, LeaseState::Held(RunStatus::Started));
    // A cancel request reaches the worker through its renewal.
    storage.request_cancel(run.run_id, at(132)).await.unwrap();
    assert_eq!(renew(1, 133).await, LeaseState::Held(RunStatus::Canceling));
    storage
        .transition_run(run.run_id, RunStatus::Canceled, at(134))
        .await
        .unwrap();
    assert_eq!(renew(1, 135).await, LeaseState::Lost, "the run ended");
    // An unknown run has no lease.
    assert_eq!(
        storage
            .renew_lease(orch::new_run_id(), 1, at(0), LEASE)
            .await
            .unwrap(),
        LeaseState::Lost
    );
    // A run started without the queue (no claim) has no lease to renew.
    let direct = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    assert_eq!(
        storage
            .renew_lease(direct.run_id, 0, at(1), LEASE)
            .await
            .unwrap(),
        LeaseState::Held(RunStatus::Started),
        "attempt 0 is a run that was never claimed"
    );
    assert!(
        storage.expired_leases(at(1_000_000)).await.unwrap().len() == 1,
        "only the renewed unclaimed run has an expiry"
    );
}

async fn case_expired_leases_and_fail_expired(storage: Arc<dyn Storage>) {
    let short = Duration::from_secs(10);
    let a = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let b = create(&storage, new_run(RunStatus::Queued, &["b"], 1)).await;
    let c = create(&storage, new_run(RunStatus::Queued, &["c"], 2)).await;
    let lease_a = storage
        .claim_run("w1", at(100), short, &no_limits())
        .await
        .unwrap()
        .unwrap();
    let lease_b = storage
        .claim_run("w2", at(101), short, &no_limits())
        .await
        .unwrap()
        .unwrap();
    let lease_c = storage
        .claim_run("w3", at(102), short, &no_limits())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        leased(&[lease_a.clone(), lease_b.clone(), lease_c.clone()]),
        vec![a.run_id, b.run_id, c.run_id]
    );
    storage
        .transition_run(b.run_id, RunStatus::Started, at(103))
        .await
        .unwrap();
    storage.request_cancel(c.run_id, at(104)).await.unwrap();

    assert!(
        storage.expired_leases(at(110)).await.unwrap().is_empty(),
        "expiry is exclusive"
    );
    let expired = storage.expired_leases(at(111)).await.unwrap();
    assert_eq!(leased(&expired), vec![a.run_id]);
    assert_eq!(expired[0], lease_a);
    // Every in-flight status, oldest expiry first.
    let expired = storage.expired_leases(at(200)).await.unwrap();
    assert_eq!(leased(&expired), vec![a.run_id, b.run_id, c.run_id]);
    assert_eq!(
        expired
            .iter()
            .map(|l| (l.run.status, l.owner.as_str(), l.attempt))
            .collect::<Vec<_>>(),
        vec![
            (RunStatus::Starting, "w1", 1),
            (RunStatus::Started, "w2", 1),
            (RunStatus::Canceling, "w3", 1)
        ]
    );

    let reason = "worker w1 stopped renewing its lease";
    // Fenced by the attempt...
    assert_eq!(
        storage
            .fail_expired(a.run_id, 2, at(120), reason)
            .await
            .unwrap(),
        None
    );
    // ... and by the expiry: not yet expired, or renewed meanwhile.
    assert_eq!(
        storage
            .fail_expired(a.run_id, 1, at(110), reason)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage
            .renew_lease(b.run_id, 1, at(115), short)
            .await
            .unwrap(),
        LeaseState::Held(RunStatus::Started)
    );
    assert_eq!(
        storage
            .fail_expired(b.run_id, 1, at(120), reason)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage.get_run(a.run_id).await.unwrap().unwrap().status,
        RunStatus::Starting
    );
    assert!(
        events_of(&storage, a.run_id).await.is_empty(),
        "nothing recorded when refused"
    );

    let failed = storage
        .fail_expired(a.run_id, 1, at(120), reason)
        .await
        .unwrap()
        .expect("expired and still attempt 1");
    assert_eq!(failed.status, RunStatus::Failure);
    assert_eq!(
        (failed.ended_at, failed.updated_at),
        (Some(at(120)), at(120))
    );
    assert_eq!(storage.get_run(a.run_id).await.unwrap(), Some(failed));
    let events = events_of(&storage, a.run_id).await;
    assert_eq!(kinds(&events), vec![EventKind::RunFailure]);
    assert_eq!(events[0].event.body.message.as_deref(), Some(reason));
    assert_eq!(events[0].event.timestamp, at(120));
    // Resolved once: the second reaper finds nothing, and the worker has lost its lease.
    assert_eq!(
        storage
            .fail_expired(a.run_id, 1, at(121), reason)
            .await
            .unwrap(),
        None
    );
    assert_eq!(events_of(&storage, a.run_id).await.len(), 1);
    assert_eq!(
        storage
            .renew_lease(a.run_id, 1, at(121), short)
            .await
            .unwrap(),
        LeaseState::Lost
    );
    // b's renewal made its lease (until 125) outlast c's (until 112).
    assert_eq!(
        leased(&storage.expired_leases(at(200)).await.unwrap()),
        vec![c.run_id, b.run_id]
    );

    // A CANCELING run whose worker died fails too.
    let c_failed = storage
        .fail_expired(c.run_id, 1, at(200), "gone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c_failed.status, RunStatus::Failure);
    // A run that ends normally leaves the reaper's sight.
    storage
        .transition_run(b.run_id, RunStatus::Success, at(130))
        .await
        .unwrap();
    assert!(storage.expired_leases(at(10_000)).await.unwrap().is_empty());
    assert_eq!(
        storage
            .fail_expired(b.run_id, 1, at(10_000), reason)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage.get_run(b.run_id).await.unwrap().unwrap().status,
        RunStatus::Success
    );
    // Unknown runs: nothing to fail.
    assert_eq!(
        storage
            .fail_expired(orch::new_run_id(), 1, at(10_000), reason)
            .await
            .unwrap(),
        None
    );
}

async fn case_terminal_transitions_clear_the_lease(storage: Arc<dyn Storage>) {
    for to in [RunStatus::Success, RunStatus::Failure, RunStatus::Canceled] {
        let run = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
        let lease = claim(&storage, "w", 0, &no_limits()).await.unwrap();
        assert_eq!(lease.run.run_id, run.run_id);
        let path: &[RunStatus] = match to {
            RunStatus::Success => &[RunStatus::Started, RunStatus::Success],
            RunStatus::Failure => &[RunStatus::Failure],
            _ => &[RunStatus::Canceling, RunStatus::Canceled],
        };
        for &status in path {
            storage
                .transition_run(run.run_id, status, at(1))
                .await
                .unwrap();
        }
        assert!(
            storage.expired_leases(at(1_000)).await.unwrap().is_empty(),
            "a {to} run holds no lease"
        );
        assert_eq!(
            storage
                .renew_lease(run.run_id, 1, at(2), LEASE)
                .await
                .unwrap(),
            LeaseState::Lost
        );
    }
}

async fn case_request_cancel(storage: Arc<dyn Storage>) {
    for status in RunStatus::ALL {
        let run = create(&storage, new_run(status, &["a"], 0)).await;
        let result = storage.request_cancel(run.run_id, at(50)).await;
        let events = kinds(&events_of(&storage, run.run_id).await);
        match status {
            RunStatus::Queued => {
                let canceled = result.unwrap();
                assert_eq!(canceled.status, RunStatus::Canceled);
                assert_eq!(
                    (canceled.ended_at, canceled.updated_at),
                    (Some(at(50)), at(50))
                );
                assert_eq!(events, vec![EventKind::RunCanceled]);
            }
            RunStatus::Starting | RunStatus::Started => {
                let canceling = result.unwrap();
                assert_eq!(canceling.status, RunStatus::Canceling, "from {status}");
                assert_eq!((canceling.ended_at, canceling.updated_at), (None, at(50)));
                assert_eq!(events, vec![EventKind::RunCanceling]);
            }
            RunStatus::Canceling => {
                assert_eq!(result.unwrap(), run, "unchanged");
                assert!(events.is_empty());
            }
            RunStatus::Success | RunStatus::Failure | RunStatus::Canceled => {
                match result {
                    Err(StorageError::IllegalTransition { run_id, from, to }) => {
                        assert_eq!(
                            (run_id, from, to),
                            (run.run_id, status, RunStatus::Canceling)
                        );
                    }
                    other => panic!("canceling a {status} run: {other:?}"),
                }
                assert!(events.is_empty());
            }
        }
        let stored = storage.get_run(run.run_id).await.unwrap().unwrap();
        let expected = match status {
            RunStatus::Queued => RunStatus::Canceled,
            RunStatus::Starting | RunStatus::Started => RunStatus::Canceling,
            other => other,
        };
        assert_eq!(stored.status, expected, "from {status}");
    }
    // A second request for a CANCELING run changes nothing and records nothing more.
    let run = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    let first = storage.request_cancel(run.run_id, at(1)).await.unwrap();
    assert_eq!(
        storage.request_cancel(run.run_id, at(2)).await.unwrap(),
        first
    );
    assert_eq!(events_of(&storage, run.run_id).await.len(), 1);

    let nobody = orch::new_run_id();
    assert!(matches!(
        storage.request_cancel(nobody, at(0)).await,
        Err(StorageError::RunNotFound(id)) if id == nobody
    ));
}

async fn case_cancel_a_claimed_run(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let lease = claim(&storage, "w", 10, &no_limits()).await.unwrap();
    let canceling = storage.request_cancel(run.run_id, at(11)).await.unwrap();
    assert_eq!(canceling.status, RunStatus::Canceling);
    // The worker keeps its lease while it stops, then ends the run.
    assert_eq!(
        storage
            .renew_lease(run.run_id, lease.attempt, at(12), LEASE)
            .await
            .unwrap(),
        LeaseState::Held(RunStatus::Canceling)
    );
    let canceled = storage
        .transition_run(run.run_id, RunStatus::Canceled, at(13))
        .await
        .unwrap();
    assert_eq!(canceled.ended_at, Some(at(13)));
    // A canceled QUEUED run is never claimed.
    let queued = create(&storage, new_run(RunStatus::Queued, &["a"], 1)).await;
    storage.request_cancel(queued.run_id, at(14)).await.unwrap();
    assert_eq!(claim(&storage, "w", 15, &no_limits()).await, None);
}

// ---------------------------------------------------------------------------------------------
// Schedules

async fn case_schedule_states(storage: Arc<dyn Storage>) {
    assert!(storage.schedule_states().await.unwrap().is_empty());
    let on = storage
        .set_schedule_enabled("nightly", true, at(1))
        .await
        .unwrap();
    assert_eq!(
        on,
        ScheduleState {
            name: "nightly".to_owned(),
            enabled: true,
            updated_at: at(1),
        }
    );
    storage
        .set_schedule_enabled("hourly é", false, at(2))
        .await
        .unwrap();
    let off = storage
        .set_schedule_enabled("nightly", false, at(3))
        .await
        .unwrap();
    assert!(!off.enabled);
    assert_eq!(off.updated_at, at(3));
    let states = storage.schedule_states().await.unwrap();
    assert_eq!(
        states
            .iter()
            .map(|s| (s.name.as_str(), s.enabled, s.updated_at))
            .collect::<Vec<_>>(),
        vec![("hourly é", false, at(2)), ("nightly", false, at(3))]
    );
    storage
        .set_schedule_enabled("nightly", true, at(4))
        .await
        .unwrap();
    assert!(storage.schedule_states().await.unwrap()[1].enabled);
}

async fn case_record_tick_once(storage: Arc<dyn Storage>) {
    let mut run = new_run(RunStatus::Queued, &["daily/report"], 100);
    run.partition_key = Some("2025-06-01".to_owned());
    run.tags.insert("team".to_owned(), "data".to_owned());
    let recorded = storage
        .record_tick(
            "daily",
            at(100),
            Some(&run),
            TickStatus::Requested,
            None,
            at(101),
        )
        .await
        .unwrap();
    let tick = Tick {
        schedule: "daily".to_owned(),
        tick_time: at(100),
        status: TickStatus::Requested,
        run_id: Some(run.run_id),
        message: None,
        created_at: at(101),
    };
    assert_eq!(recorded, TickRecord::Recorded(tick.clone()));
    // The run is queued as create_run would, tagged with its schedule, with its event.
    let stored = storage.get_run(run.run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Queued);
    assert_eq!(stored.partition_key.as_deref(), Some("2025-06-01"));
    assert_eq!(stored.created_at, at(100));
    assert_eq!(
        stored.tags,
        BTreeMap::from([
            ("team".to_owned(), "data".to_owned()),
            (SCHEDULE_TAG.to_owned(), "daily".to_owned()),
        ])
    );
    assert_eq!(
        kinds(&events_of(&storage, run.run_id).await),
        vec![EventKind::RunEnqueued]
    );
    let by_asset = RunFilter {
        asset_key: Some(key("daily/report")),
        ..RunFilter::default()
    };
    assert_eq!(
        run_ids(&storage.list_runs(&by_asset).await.unwrap()),
        vec![run.run_id]
    );

    // The same tick again (another daemon, or after a restart), with a fresh run: nothing
    // changes, and the answer names the first run.
    let again = new_run(RunStatus::Queued, &["daily/report"], 100);
    let second = storage
        .record_tick(
            "daily",
            at(100),
            Some(&again),
            TickStatus::Requested,
            Some("dup"),
            at(150),
        )
        .await
        .unwrap();
    assert_eq!(second, TickRecord::AlreadyRecorded(tick.clone()));
    assert_eq!(storage.get_run(again.run_id).await.unwrap(), None);
    assert_eq!(
        storage
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    let skipped_again = storage
        .record_tick("daily", at(100), None, TickStatus::Skipped, None, at(150))
        .await
        .unwrap();
    assert_eq!(skipped_again, TickRecord::AlreadyRecorded(tick.clone()));

    // A skipped tick records no run.
    let skipped = storage
        .record_tick(
            "daily",
            at(200),
            None,
            TickStatus::Skipped,
            Some("no partition for this tick"),
            at(201),
        )
        .await
        .unwrap();
    let skipped_tick = Tick {
        schedule: "daily".to_owned(),
        tick_time: at(200),
        status: TickStatus::Skipped,
        run_id: None,
        message: Some("no partition for this tick".to_owned()),
        created_at: at(201),
    };
    assert_eq!(skipped, TickRecord::Recorded(skipped_tick.clone()));
    assert_eq!(
        storage
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );

    // The same tick time of another schedule is another tick.
    let other = new_run(RunStatus::Queued, &["a"], 100);
    assert!(matches!(
        storage
            .record_tick(
                "hourly",
                at(100),
                Some(&other),
                TickStatus::Requested,
                None,
                at(101)
            )
            .await
            .unwrap(),
        TickRecord::Recorded(_)
    ));
    let queued = claim(&storage, "w", 300, &no_limits()).await.unwrap();
    assert_eq!(
        queued.run.run_id, run.run_id,
        "a tick's run is queued like any other"
    );

    // Newest first, per schedule.
    let third = storage
        .record_tick("daily", at(150), None, TickStatus::Skipped, None, at(151))
        .await
        .unwrap();
    let TickRecord::Recorded(third) = third else {
        panic!("a new tick");
    };
    assert_eq!(
        storage.schedule_ticks("daily", 10).await.unwrap(),
        vec![skipped_tick.clone(), third, tick]
    );
    assert_eq!(
        storage.schedule_ticks("daily", 1).await.unwrap(),
        vec![skipped_tick]
    );
    assert_eq!(storage.schedule_ticks("hourly", 10).await.unwrap().len(), 1);
    assert!(
        storage
            .schedule_ticks("never", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_record_tick_is_atomic(storage: Arc<dyn Storage>) {
    // A tick whose run cannot be created (its id is taken) is not recorded either.
    let taken = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let clash = NewRun {
        run_id: taken.run_id,
        ..new_run(RunStatus::Queued, &["b"], 1)
    };
    assert!(matches!(
        storage
            .record_tick("s", at(1), Some(&clash), TickStatus::Requested, None, at(1))
            .await,
        Err(StorageError::RunExists(id)) if id == taken.run_id
    ));
    assert!(storage.schedule_ticks("s", 10).await.unwrap().is_empty());
    // So a later evaluation of the same tick can still record it.
    let run = new_run(RunStatus::Queued, &["b"], 1);
    assert!(matches!(
        storage
            .record_tick("s", at(1), Some(&run), TickStatus::Requested, None, at(2))
            .await
            .unwrap(),
        TickRecord::Recorded(Tick { run_id: Some(id), .. }) if id == run.run_id
    ));
}

// ---------------------------------------------------------------------------------------------
// Backfills, sensors, daemons

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

async fn case_backfill_round_trip(storage: Arc<dyn Storage>) {
    assert_eq!(storage.get_backfill("b1").await.unwrap(), None);
    assert!(storage.list_backfills(10).await.unwrap().is_empty());
    let runs = partition_runs(3, 10);
    let b1 = backfill("b1", 3, 10);
    storage.create_backfill(&b1, &runs).await.unwrap();
    assert_eq!(storage.get_backfill("b1").await.unwrap(), Some(b1.clone()));
    for run in &runs {
        let stored = storage.get_run(run.run_id).await.unwrap().unwrap();
        assert_eq!(stored.status, RunStatus::Queued);
        assert_eq!(stored.partition_key, run.partition_key);
        assert_eq!(
            stored.tags.get(BACKFILL_TAG).map(String::as_str),
            Some("b1")
        );
        assert_eq!(
            kinds(&events_of(&storage, run.run_id).await),
            vec![EventKind::RunEnqueued]
        );
    }
    let tagged = RunFilter {
        tag: Some((BACKFILL_TAG.to_owned(), "b1".to_owned())),
        ..RunFilter::default()
    };
    let mut expected: Vec<RunId> = runs.iter().map(|r| r.run_id).collect();
    expected.reverse();
    assert_eq!(
        run_ids(&storage.list_runs(&tagged).await.unwrap()),
        expected
    );
    assert_eq!(
        storage
            .count_runs_by_status(BACKFILL_TAG, "b1")
            .await
            .unwrap(),
        vec![(RunStatus::Queued, 3)]
    );

    // Its runs go through the queue; the counts follow.
    let first = claim(&storage, "w", 20, &no_limits()).await.unwrap();
    assert_eq!(first.run.run_id, runs[0].run_id);
    storage
        .transition_run(first.run.run_id, RunStatus::Started, at(21))
        .await
        .unwrap();
    storage
        .transition_run(first.run.run_id, RunStatus::Success, at(22))
        .await
        .unwrap();
    let second = claim(&storage, "w", 23, &no_limits()).await.unwrap();
    assert_eq!(second.run.run_id, runs[1].run_id);
    assert_eq!(
        storage
            .count_runs_by_status(BACKFILL_TAG, "b1")
            .await
            .unwrap(),
        vec![
            (RunStatus::Queued, 1),
            (RunStatus::Starting, 1),
            (RunStatus::Success, 1)
        ]
    );

    // A second backfill, an empty one; newest first.
    let b2 = backfill("b2", 2, 30);
    storage
        .create_backfill(&b2, &partition_runs(2, 30))
        .await
        .unwrap();
    let b0 = backfill("b0", 0, 40);
    storage.create_backfill(&b0, &[]).await.unwrap();
    assert_eq!(
        storage.list_backfills(10).await.unwrap(),
        vec![b0.clone(), b2.clone(), b1.clone()]
    );
    assert_eq!(storage.list_backfills(2).await.unwrap(), vec![b0, b2]);
    assert_eq!(
        storage
            .count_runs_by_status(BACKFILL_TAG, "b2")
            .await
            .unwrap(),
        vec![(RunStatus::Queued, 2)]
    );
    assert!(
        storage
            .count_runs_by_status(BACKFILL_TAG, "b0")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        storage
            .count_runs_by_status("team", "nobody")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        storage
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        5
    );
}

async fn case_backfill_is_atomic(storage: Arc<dyn Storage>) {
    let taken = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let mut runs = partition_runs(3, 1);
    runs[2].run_id = taken.run_id;
    assert!(matches!(
        storage.create_backfill(&backfill("b", 3, 1), &runs).await,
        Err(StorageError::RunExists(id)) if id == taken.run_id
    ));
    assert_eq!(storage.get_backfill("b").await.unwrap(), None);
    for run in &runs[..2] {
        assert_eq!(storage.get_run(run.run_id).await.unwrap(), None);
        assert!(events_of(&storage, run.run_id).await.is_empty());
    }
    assert_eq!(
        storage
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    // The same id again is refused.
    storage
        .create_backfill(&backfill("b", 1, 2), &partition_runs(1, 2))
        .await
        .unwrap();
    assert!(
        storage
            .create_backfill(&backfill("b", 1, 3), &partition_runs(1, 3))
            .await
            .is_err()
    );
    assert_eq!(
        storage
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn case_sensor_cursors(storage: Arc<dyn Storage>) {
    assert_eq!(storage.sensor_cursor("files").await.unwrap(), None);
    storage
        .set_sensor_cursor("files", "offset=10", at(1))
        .await
        .unwrap();
    storage.set_sensor_cursor("other", "", at(1)).await.unwrap();
    assert_eq!(
        storage.sensor_cursor("files").await.unwrap().as_deref(),
        Some("offset=10")
    );
    storage
        .set_sensor_cursor("files", "{\"offset\": 20, \"é\": true}", at(2))
        .await
        .unwrap();
    assert_eq!(
        storage.sensor_cursor("files").await.unwrap().as_deref(),
        Some("{\"offset\": 20, \"é\": true}")
    );
    assert_eq!(
        storage.sensor_cursor("other").await.unwrap().as_deref(),
        Some("")
    );
}

async fn case_daemon_heartbeats(storage: Arc<dyn Storage>) {
    let beat = |id: &str, started: i64, beat: i64, info: serde_json::Value| DaemonHeartbeat {
        daemon_id: id.to_owned(),
        started_at: at(started),
        heartbeat_at: at(beat),
        info,
    };
    assert!(storage.daemon_heartbeats(at(0)).await.unwrap().is_empty());
    let d1 = beat(
        "host-a:100",
        0,
        10,
        serde_json::json!({"pid": 100, "runs": []}),
    );
    let d2 = beat(
        "host-b:200",
        5,
        20,
        serde_json::json!({"pid": 200, "runs": ["x"], "ü": null}),
    );
    storage.daemon_heartbeat(&d2).await.unwrap();
    storage.daemon_heartbeat(&d1).await.unwrap();
    assert_eq!(
        storage.daemon_heartbeats(at(0)).await.unwrap(),
        vec![d1.clone(), d2.clone()]
    );
    assert_eq!(
        storage.daemon_heartbeats(at(10)).await.unwrap(),
        vec![d1.clone(), d2.clone()]
    );
    assert_eq!(
        storage.daemon_heartbeats(at(11)).await.unwrap(),
        vec![d2.clone()]
    );
    let d1_later = beat(
        "host-a:100",
        0,
        30,
        serde_json::json!({"pid": 100, "runs": [1, 2]}),
    );
    storage.daemon_heartbeat(&d1_later).await.unwrap();
    assert_eq!(
        storage.daemon_heartbeats(at(25)).await.unwrap(),
        vec![d1_later]
    );
}

// ---------------------------------------------------------------------------------------------
// Waking queue workers

/// Waits out any wake-up already pending (from the case's earlier steps), so that the next
/// wait starts clean.
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

/// Starts a waiter with a long timeout, then does `poke` every 50 ms (a waiter that is not yet
/// listening would miss a single one) until the waiter returns; returns how long it waited.
async fn woken_by(storage: &Arc<dyn Storage>, mut poke: impl AsyncFnMut()) -> Duration {
    let waiter = {
        let storage = storage.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            storage.wait_for_queue(Duration::from_secs(30)).await;
            start.elapsed()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while !waiter.is_finished() && Instant::now() < deadline {
        poke().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    waiter.await.unwrap()
}

async fn case_queue_wakeups(storage: Arc<dyn Storage>) {
    // Nobody notifies: the wait lasts its timeout.
    let start = Instant::now();
    storage.wait_for_queue(Duration::from_millis(300)).await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "waited {waited:?} for a 300 ms timeout"
    );

    let waited = woken_by(&storage, async || storage.notify_queue().await.unwrap()).await;
    assert!(
        waited < Duration::from_secs(5),
        "notify_queue woke the waiter after {waited:?}"
    );

    // Queuing a run wakes the waiters too.
    settle(&storage).await;
    let mut created = 0;
    let waited = woken_by(&storage, async || {
        created += 1;
        create(&storage, new_run(RunStatus::Queued, &["a"], created)).await;
    })
    .await;
    assert!(
        waited < Duration::from_secs(5),
        "create_run woke the waiter after {waited:?}"
    );

    settle(&storage).await;
    let mut backfills = 0;
    let waited = woken_by(&storage, async || {
        backfills += 1;
        let id = format!("b{backfills}");
        storage
            .create_backfill(&backfill(&id, 1, 0), &partition_runs(1, 0))
            .await
            .unwrap();
    })
    .await;
    assert!(
        waited < Duration::from_secs(5),
        "create_backfill woke the waiter after {waited:?}"
    );

    settle(&storage).await;
    let mut ticks = 0;
    let waited = woken_by(&storage, async || {
        ticks += 1;
        let run = new_run(RunStatus::Queued, &["a"], ticks);
        storage
            .record_tick(
                "s",
                at(ticks),
                Some(&run),
                TickStatus::Requested,
                None,
                at(ticks),
            )
            .await
            .unwrap();
    })
    .await;
    assert!(
        waited < Duration::from_secs(5),
        "record_tick woke the waiter after {waited:?}"
    );

    // A wake-up while nobody waits is kept for the next wait (once the storage has waited:
    // a Postgres storage starts listening on its first wait), then the queue is quiet again.
    settle(&storage).await;
    storage.notify_queue().await.unwrap();
    let start = Instant::now();
    storage.wait_for_queue(Duration::from_secs(20)).await;
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "a kept wake-up ended the wait after {waited:?}"
    );

    // After all that, a quiet queue waits out its timeout again.
    settle(&storage).await;
    let start = Instant::now();
    storage.wait_for_queue(Duration::from_millis(300)).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
}

// ---------------------------------------------------------------------------------------------
// Pools: concurrency slots shared by every process

const TTL: Duration = Duration::from_secs(30);

async fn acquire(
    storage: &Arc<dyn Storage>,
    pool: &str,
    limit: u32,
    run: RunId,
    step: &str,
    secs: i64,
) -> bool {
    storage
        .try_acquire_pool_slot(pool, limit, run, step, at(secs), TTL)
        .await
        .unwrap()
}

fn usage(pools: &[(&str, u64)]) -> Vec<(String, u64)> {
    pools.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()
}

async fn case_pool_slots_acquire_and_release(storage: Arc<dyn Storage>) {
    let (r1, r2, r3) = (orch::new_run_id(), orch::new_run_id(), orch::new_run_id());
    assert!(storage.pool_usage(at(0)).await.unwrap().is_empty());

    assert!(acquire(&storage, "warehouse", 2, r1, "a", 0).await);
    assert!(acquire(&storage, "warehouse", 2, r2, "a", 0).await);
    // Full: a third step waits, whatever its run.
    assert!(!acquire(&storage, "warehouse", 2, r3, "c", 1).await);
    assert!(!acquire(&storage, "warehouse", 2, r1, "b", 1).await);
    // A slot already held is held again, though the pool is full.
    assert!(acquire(&storage, "warehouse", 2, r1, "a", 1).await);
    // Pools are counted apart; a limit of 0 admits nobody.
    assert!(acquire(&storage, "api", 1, r3, "c", 1).await);
    assert!(!acquire(&storage, "api", 1, r3, "d", 1).await);
    assert!(!acquire(&storage, "empty", 0, r3, "c", 1).await);
    assert_eq!(
        storage.pool_usage(at(1)).await.unwrap(),
        usage(&[("api", 1), ("warehouse", 2)])
    );

    storage
        .release_pool_slot("warehouse", r1, "a")
        .await
        .unwrap();
    // Releasing what one does not hold changes nothing.
    storage
        .release_pool_slot("warehouse", r1, "a")
        .await
        .unwrap();
    storage.release_pool_slot("api", r1, "c").await.unwrap();
    storage
        .release_pool_slot("nowhere", orch::new_run_id(), "x")
        .await
        .unwrap();
    assert_eq!(
        storage.pool_usage(at(2)).await.unwrap(),
        usage(&[("api", 1), ("warehouse", 1)])
    );
    assert!(acquire(&storage, "warehouse", 2, r3, "c", 2).await);
    assert!(!acquire(&storage, "warehouse", 2, r1, "a", 2).await);
    // A higher limit (the configuration changed) admits more.
    assert!(acquire(&storage, "warehouse", 3, r1, "a", 2).await);
    assert_eq!(
        storage.pool_usage(at(2)).await.unwrap(),
        usage(&[("api", 1), ("warehouse", 3)])
    );

    for (pool, run, step) in [
        ("warehouse", r1, "a"),
        ("warehouse", r2, "a"),
        ("warehouse", r3, "c"),
        ("api", r3, "c"),
    ] {
        storage.release_pool_slot(pool, run, step).await.unwrap();
    }
    assert!(storage.pool_usage(at(3)).await.unwrap().is_empty());
}

async fn case_pool_slots_renew_and_expire(storage: Arc<dyn Storage>) {
    let (r1, r2, r3) = (orch::new_run_id(), orch::new_run_id(), orch::new_run_id());
    let renew = async |run: RunId, step: &str, secs: i64| {
        storage
            .renew_pool_slot("p", run, step, at(secs), TTL)
            .await
            .unwrap()
    };

    assert!(acquire(&storage, "p", 1, r1, "a", 0).await);
    // Renewed at 20: held until 50.
    assert!(renew(r1, "a", 20).await);
    assert!(!acquire(&storage, "p", 1, r2, "b", 40).await);
    assert_eq!(
        storage.pool_usage(at(49)).await.unwrap(),
        usage(&[("p", 1)])
    );
    // At its expiry a slot no longer counts.
    assert!(storage.pool_usage(at(50)).await.unwrap().is_empty());
    assert!(acquire(&storage, "p", 1, r2, "b", 50).await);
    // The expired slot was deleted by that acquirer: seen from before its expiry, only the
    // new slot is left.
    assert_eq!(
        storage.pool_usage(at(45)).await.unwrap(),
        usage(&[("p", 1)])
    );
    // An expired slot cannot be renewed (it is gone, or someone else may hold its place),
    // nor can a slot never held.
    assert!(!renew(r1, "a", 51).await);
    assert!(!renew(r3, "c", 51).await);
    assert!(!acquire(&storage, "p", 1, r1, "a", 51).await);

    // A slot that expired without anyone deleting it: not renewed, but taken again if there
    // is room.
    assert!(
        storage
            .try_acquire_pool_slot("q", 1, r3, "c", at(0), Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .renew_pool_slot("q", r3, "c", at(10), TTL)
            .await
            .unwrap()
    );
    assert!(acquire(&storage, "q", 1, r3, "c", 11).await);
    assert!(
        storage
            .renew_pool_slot("q", r3, "c", at(12), TTL)
            .await
            .unwrap()
    );
    assert_eq!(
        storage.pool_usage(at(41)).await.unwrap(),
        usage(&[("p", 1), ("q", 1)])
    );
    // Re-acquiring a held slot extends it too.
    assert!(acquire(&storage, "q", 1, r3, "c", 20).await);
    assert_eq!(
        storage.pool_usage(at(49)).await.unwrap(),
        usage(&[("p", 1), ("q", 1)])
    );
    assert_eq!(
        storage.pool_usage(at(50)).await.unwrap(),
        usage(&[("p", 1)])
    );

    storage.release_pool_slot("p", r2, "b").await.unwrap();
    assert!(!renew(r2, "b", 52).await);
    assert!(acquire(&storage, "p", 1, r1, "a", 52).await);
}

async fn case_pool_slots_concurrent_acquirers(storage: Arc<dyn Storage>) {
    // Acquirers on one storage, all at once: exactly the limit get a slot.
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let storage = storage.clone();
            tokio::spawn(async move {
                storage
                    .try_acquire_pool_slot("p", 3, orch::new_run_id(), &format!("s{i}"), at(0), TTL)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut acquired = 0;
    for task in tasks {
        acquired += usize::from(task.await.unwrap());
    }
    assert_eq!(acquired, 3);
    assert_eq!(storage.pool_usage(at(0)).await.unwrap(), usage(&[("p", 3)]));
}

// ---------------------------------------------------------------------------------------------
// Events across runs (sensors)

async fn case_events_after(storage: Arc<dyn Storage>) {
    assert!(storage.events_after(0, &[], 100).await.unwrap().is_empty());
    let (r1, r2) = (orch::new_run_id(), orch::new_run_id());
    storage
        .append_events(&[
            event(r1, EventKind::RunStart, 0),
            materialization(r1, "a", None, 1),
        ])
        .await
        .unwrap();
    storage
        .append_events(&[
            event(r2, EventKind::RunStart, 2),
            failure(r2, "b", Some("2024-01-01"), 3),
        ])
        .await
        .unwrap();
    storage
        .append_events(&[
            materialization(r1, "a/b", Some("2024-01-02"), 4),
            materialization(r2, "c", None, 5),
            event(r1, EventKind::RunSuccess, 6),
        ])
        .await
        .unwrap();

    let all = storage.events_after(0, &[], 100).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let mut expected = events_of(&storage, r1).await;
    expected.extend(events_of(&storage, r2).await);
    expected.sort_by_key(|e| e.id);
    assert_eq!(all, expected);
    assert_eq!(
        all.iter().map(|e| e.event.run_id).collect::<Vec<_>>(),
        [r1, r1, r2, r2, r1, r2, r1]
    );

    let materialized = storage
        .events_after(0, &[EventKind::AssetMaterialization], 100)
        .await
        .unwrap();
    assert_eq!(
        materialized
            .iter()
            .map(|e| e.event.asset_key.clone().unwrap())
            .collect::<Vec<_>>(),
        [key("a"), key("a/b"), key("c")]
    );
    let both = storage
        .events_after(
            0,
            &[EventKind::AssetMaterialization, EventKind::AssetFailed],
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        kinds(&both),
        [
            EventKind::AssetMaterialization,
            EventKind::AssetFailed,
            EventKind::AssetMaterialization,
            EventKind::AssetMaterialization
        ]
    );

    // A cursor: after an id, at most `limit`, resuming where the last page ended.
    let first = storage
        .events_after(0, &[EventKind::AssetMaterialization], 2)
        .await
        .unwrap();
    assert_eq!(first, materialized[..2]);
    let rest = storage
        .events_after(first[1].id, &[EventKind::AssetMaterialization], 2)
        .await
        .unwrap();
    assert_eq!(rest, materialized[2..]);
    let last = all.last().unwrap().id;
    assert!(
        storage
            .events_after(last, &[], 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        storage.events_after(all[4].id, &[], 100).await.unwrap(),
        all[5..]
    );
    assert!(
        storage
            .events_after(0, &[EventKind::StepStart], 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(storage.events_after(0, &[], 0).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Freshness violations

async fn case_freshness_violations(storage: Arc<dyn Storage>) {
    assert!(
        storage
            .freshness_violations(false)
            .await
            .unwrap()
            .is_empty()
    );
    let (a, b) = (key("raw/events"), key("report"));

    assert!(
        storage
            .open_freshness_violation(&a, at(10), Some("2024-01-01"), Some(at(0)), 3600, "stale")
            .await
            .unwrap()
    );
    // Already open: left as it is.
    assert!(
        !storage
            .open_freshness_violation(&a, at(20), Some("2024-01-02"), Some(at(5)), 60, "later")
            .await
            .unwrap()
    );
    assert!(
        storage
            .open_freshness_violation(&b, at(15), None, None, 60, "never materialized é")
            .await
            .unwrap()
    );
    let open_a = FreshnessViolation {
        asset_key: a.clone(),
        detected_at: at(10),
        latest_partition: Some("2024-01-01".to_owned()),
        latest_materialized_at: Some(at(0)),
        max_lag_secs: 3600,
        message: "stale".to_owned(),
        notified_at: None,
        resolved_at: None,
    };
    let open_b = FreshnessViolation {
        asset_key: b.clone(),
        detected_at: at(15),
        latest_partition: None,
        latest_materialized_at: None,
        max_lag_secs: 60,
        message: "never materialized é".to_owned(),
        notified_at: None,
        resolved_at: None,
    };
    assert_eq!(
        storage.freshness_violations(false).await.unwrap(),
        vec![open_a.clone(), open_b.clone()]
    );
    assert_eq!(
        storage.freshness_violations(true).await.unwrap(),
        vec![open_a.clone(), open_b.clone()]
    );
    assert!(open_a.is_open());

    assert!(storage.mark_violation_notified(&a, at(12)).await.unwrap());
    assert!(
        !storage
            .mark_violation_notified(&key("fresh"), at(12))
            .await
            .unwrap()
    );
    let notified_a = FreshnessViolation {
        notified_at: Some(at(12)),
        ..open_a.clone()
    };
    assert_eq!(
        storage.freshness_violations(true).await.unwrap(),
        vec![notified_a.clone(), open_b.clone()]
    );

    assert!(
        storage
            .resolve_freshness_violation(&a, at(30))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .resolve_freshness_violation(&a, at(31))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .resolve_freshness_violation(&key("fresh"), at(31))
            .await
            .unwrap()
    );
    let resolved_a = FreshnessViolation {
        resolved_at: Some(at(30)),
        ..notified_a
    };
    assert!(!resolved_a.is_open());
    assert_eq!(
        storage.freshness_violations(true).await.unwrap(),
        vec![open_b.clone()]
    );
    assert_eq!(
        storage.freshness_violations(false).await.unwrap(),
        vec![resolved_a, open_b.clone()]
    );

    // Stale again: a new violation, not yet notified.
    assert!(
        storage
            .open_freshness_violation(&a, at(40), Some("2024-01-03"), Some(at(35)), 3600, "again")
            .await
            .unwrap()
    );
    let reopened_a = FreshnessViolation {
        asset_key: a.clone(),
        detected_at: at(40),
        latest_partition: Some("2024-01-03".to_owned()),
        latest_materialized_at: Some(at(35)),
        max_lag_secs: 3600,
        message: "again".to_owned(),
        notified_at: None,
        resolved_at: None,
    };
    assert_eq!(
        storage.freshness_violations(true).await.unwrap(),
        vec![reopened_a, open_b]
    );
}

// ---------------------------------------------------------------------------------------------
// SQLite: several pools (like several processes) on one file

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_pools_write_one_file_concurrently() {
    let db = db::sqlite().await;
    let first: Arc<dyn Storage> = db.storage.clone();
    let second: Arc<dyn Storage> = Arc::new(SqliteStorage::connect(&db.url).await.unwrap());
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
            tokio::spawn(async move { SqliteStorage::connect(&url).await })
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
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(storages[0].pool())
        .await
        .unwrap();
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

// ---------------------------------------------------------------------------------------------
// What the web UI reads

async fn case_asset_events_newest_first(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a/x", "b"], 0)).await;
    let mut events = Vec::new();
    for i in 0..5 {
        let partition = format!("2026-11-22-0{i}:00");
        events.push(materialization(run.run_id, "a/x", Some(&partition), i));
        events.push(materialization(run.run_id, "b", None, i));
    }
    events.push(failure(run.run_id, "a/x", Some("2026-11-22-09:00"), 10));
    storage.append_events(&events).await.unwrap();

    let all = storage
        .asset_events(&key("a/x"), &[], None, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 6, "five materializations and one failure of a/x");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(all.iter().all(|e| e.event.asset_key == Some(key("a/x"))));
    assert_eq!(all[0].event.kind, EventKind::AssetFailed);

    let mats = storage
        .asset_events(&key("a/x"), &[EventKind::AssetMaterialization], None, 2)
        .await
        .unwrap();
    let partitions: Vec<_> = mats.iter().map(|e| e.event.partition_key.clone()).collect();
    assert_eq!(
        partitions,
        [
            Some("2026-11-22-04:00".to_owned()),
            Some("2026-11-22-03:00".to_owned())
        ]
    );
    // The next page starts below the last id seen.
    let next = storage
        .asset_events(
            &key("a/x"),
            &[EventKind::AssetMaterialization],
            Some(mats[1].id),
            10,
        )
        .await
        .unwrap();
    let partitions: Vec<_> = next.iter().map(|e| e.event.partition_key.clone()).collect();
    assert_eq!(
        partitions,
        ["2026-11-22-02:00", "2026-11-22-01:00", "2026-11-22-00:00"].map(|p| Some(p.to_owned()))
    );
    assert!(
        storage
            .asset_events(&key("nobody"), &[], None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_run_status_counts(storage: Arc<dyn Storage>) {
    assert!(storage.run_status_counts().await.unwrap().is_empty());
    for (i, status) in [
        RunStatus::Queued,
        RunStatus::Queued,
        RunStatus::Success,
        RunStatus::Failure,
        RunStatus::Queued,
    ]
    .into_iter()
    .enumerate()
    {
        create(&storage, new_run(status, &["a"], i as i64)).await;
    }
    let mut counts = storage.run_status_counts().await.unwrap();
    counts.sort();
    let mut expected = vec![
        (RunStatus::Queued, 3),
        (RunStatus::Success, 1),
        (RunStatus::Failure, 1),
    ];
    expected.sort();
    assert_eq!(counts, expected);
}

async fn case_stream_workers(storage: Arc<dyn Storage>) {
    use orch::storage::StreamWorker;
    let worker = |id: &str, beat: i64, lag: Option<i64>| StreamWorker {
        worker_id: id.to_owned(),
        group_id: "orch-stream".to_owned(),
        topics: vec!["listen_events".to_owned(), "auth_events".to_owned()],
        partitions: vec!["listen_events:0".to_owned(), "auth_events:1".to_owned()],
        lag,
        events_in: beat * 100,
        events_written: beat * 99,
        dead_lettered: beat,
        events_per_sec: 1234.5,
        last_file: Some(format!(
            "raw/listen_events/date=2026-11-22/hour=10/{id}.parquet"
        )),
        started_at: at(0),
        heartbeat_at: at(beat),
    };
    storage
        .stream_worker_heartbeat(&worker("w-2", 10, None))
        .await
        .unwrap();
    storage
        .stream_worker_heartbeat(&worker("w-1", 20, Some(3)))
        .await
        .unwrap();
    // A later heartbeat replaces the row.
    storage
        .stream_worker_heartbeat(&worker("w-2", 30, Some(0)))
        .await
        .unwrap();
    let all = storage.stream_workers(at(0)).await.unwrap();
    assert_eq!(
        all,
        vec![worker("w-1", 20, Some(3)), worker("w-2", 30, Some(0))]
    );
    let recent = storage.stream_workers(at(25)).await.unwrap();
    assert_eq!(recent, vec![worker("w-2", 30, Some(0))]);
}
