//! Heartbeats: daemons, and components of any kind (stream workers).

use super::*;

conformance!(case_daemon_heartbeats, case_component_heartbeats,);

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

async fn case_component_heartbeats(storage: Arc<dyn Storage>) {
    let beat = |kind: &str, name: &str, seen: i64, detail: serde_json::Value| ComponentHeartbeat {
        kind: kind.to_owned(),
        name: name.to_owned(),
        detail,
        started_at: at(0),
        last_seen: at(seen),
        stopped_at: None,
    };
    let worker = |name: &str, seen: i64, lag: Option<i64>| {
        beat(
            "stream_worker",
            name,
            seen,
            serde_json::json!({
                "group_id": "orch-stream",
                "topics": ["listen_events", "auth_events"],
                "partitions": ["listen_events:0", "auth_events:1"],
                "lag": lag,
                "events_in": seen * 100,
                "events_written": seen * 99,
                "dead_lettered": seen,
                "events_per_sec": 1234.5,
                "last_file": format!("raw/listen_events/date=2026-11-22/hour=10/{name}.parquet"),
                "é": {"nested": [1, 2.5, null, true]},
            }),
        )
    };
    let workers = |since: i64| {
        let storage = storage.clone();
        async move {
            storage
                .component_heartbeats("stream_worker", at(since))
                .await
                .unwrap()
        }
    };
    assert!(workers(0).await.is_empty());
    for beat in [
        worker("w-2", 10, None),
        worker("w-1", 20, Some(3)),
        beat("compactor", "w-1", 20, serde_json::json!({})),
        // A later beat replaces the row.
        worker("w-2", 30, Some(0)),
    ] {
        storage.component_heartbeat(&beat).await.unwrap();
    }
    // By name; other kinds apart.
    assert_eq!(
        workers(0).await,
        vec![worker("w-1", 20, Some(3)), worker("w-2", 30, Some(0))]
    );
    assert_eq!(workers(25).await, vec![worker("w-2", 30, Some(0))]);
    assert_eq!(
        storage
            .component_heartbeats("compactor", at(0))
            .await
            .unwrap(),
        vec![beat("compactor", "w-1", 20, serde_json::json!({}))]
    );

    // A stop keeps the last beat and says when.
    assert!(
        storage
            .component_stopped("stream_worker", "w-2", at(31))
            .await
            .unwrap()
    );
    assert_eq!(
        workers(25).await,
        vec![ComponentHeartbeat {
            stopped_at: Some(at(31)),
            ..worker("w-2", 30, Some(0))
        }]
    );
    assert!(
        !storage
            .component_stopped("stream_worker", "nobody", at(31))
            .await
            .unwrap(),
        "never seen"
    );
    // A stopped component that beats again runs again.
    storage
        .component_heartbeat(&worker("w-2", 40, Some(1)))
        .await
        .unwrap();
    assert_eq!(workers(25).await, vec![worker("w-2", 40, Some(1))]);
}

/// A run history migrated up to 0007 with a streaming worker's row in `stream_workers` keeps
/// that worker, as a component heartbeat of kind `stream_worker` whose detail the web UI reads,
/// once migrated further. `url` is an empty database.
async fn stream_workers_become_component_heartbeats(backend: Backend, url: &str) {
    let dir = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let path =
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")).join(dir);
    let mut migrator = sqlx::migrate::Migrator::new(path).await.unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= 7)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    // JSONB columns on Postgres, text on SQLite.
    let json = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => "::jsonb",
    };
    let insert = format!(
        "INSERT INTO stream_workers (worker_id, group_id, topics, partitions, lag, events_in, \
         events_written, dead_lettered, events_per_sec, last_file, started_at, heartbeat_at) \
         VALUES ('w-1', 'orch-stream', '[\"listen_events\"]'{json}, \
         '[\"listen_events:0\", \"listen_events:3\"]'{json}, NULL, 1000, 990, 10, 12.5, \
         'raw/x.parquet', 1750000000000000, 1750000060000000)"
    );
    match backend {
        Backend::Sqlite => {
            let options = url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            migrator.run(&pool).await.unwrap();
            sqlx::query(&insert).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            migrator.run(&pool).await.unwrap();
            sqlx::query(&insert).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
    let storage = orch::storage::open(url).await.unwrap();
    assert_eq!(storage.backend(), backend);
    let beats = storage
        .component_heartbeats("stream_worker", DateTime::<Utc>::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(
        beats,
        vec![ComponentHeartbeat {
            kind: "stream_worker".into(),
            name: "w-1".into(),
            detail: serde_json::json!({
                "group_id": "orch-stream",
                "topics": ["listen_events"],
                "partitions": ["listen_events:0", "listen_events:3"],
                "lag": null,
                "events_in": 1000,
                "events_written": 990,
                "dead_lettered": 10,
                "events_per_sec": 12.5,
                "last_file": "raw/x.parquet",
            }),
            started_at: DateTime::from_timestamp(1_750_000_000, 0).unwrap(),
            last_seen: DateTime::from_timestamp(1_750_000_060, 0).unwrap(),
            stopped_at: None,
        }]
    );
    let shown = orch_web::WorkerView::from_heartbeat(beats[0].clone(), beats[0].last_seen);
    assert_eq!(
        (
            shown.worker_id.as_str(),
            shown.group_id.as_str(),
            shown.partitions.len()
        ),
        ("w-1", "orch-stream", 2)
    );
    assert_eq!(
        (shown.events_written, shown.events_per_sec, shown.lag),
        (990, 12.5, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stream_workers_become_component_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orch.db").display());
    stream_workers_become_component_heartbeats(Backend::Sqlite, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stream_workers_become_component_heartbeats() {
    let (schema, url) = db::empty_postgres_schema().await;
    let result = AssertUnwindSafe(stream_workers_become_component_heartbeats(
        Backend::Postgres,
        &url,
    ))
    .catch_unwind()
    .await;
    db::drop_postgres_schema(&schema).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
