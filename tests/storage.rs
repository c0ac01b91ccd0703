//! The run-history conformance suite: every case runs against SQLite and Postgres, so that
//! the two backends behave the same (in the manner of Dagster's `TestRunStorage`). Then the
//! backend-specific cases: several SQLite pools on one file, concurrent migrations, unreadable
//! rows, URLs.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use orch::event::{
    CheckEvaluation, ErrorInfo, Event, EventBody, EventKind, LogLevel, LogLine, LogStream,
    StoredEvent,
};
use orch::run::NewRun;
use orch::storage::{Backend, EventFilter, RunFilter, SqliteStorage, Storage, StorageError};
use orch::{AssetKey, Metadata, MetadataValue, RunId, RunStatus};

use crate::util::db;

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
        run_id: RunId::new(),
        status,
        selection: keys.join(" "),
        asset_keys: keys.iter().map(|k| key(k)).collect(),
        created_at: at(created),
        ..NewRun::default()
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
        run_id: RunId::new(),
        status: RunStatus::Queued,
        selection: "raw/events+ tag:team=data".to_owned(),
        asset_keys: vec![key("raw/events"), key("staging/sessions"), key("report")],
        partition_key: Some("2024-01-01".to_owned()),
        partition_key_end: Some("2024-01-31".to_owned()),
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

    assert_eq!(storage.get_run(RunId::new()).await.unwrap(), None);
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
    let nobody = RunId::new();
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
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/sqlite"
    ))
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
