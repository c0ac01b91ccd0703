//! Sensors and freshness: late lake files re-materialize their hour; failed runs and stale
//! assets are posted to a webhook, each once across daemons.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use orch::RunRequest;
use orch::asset::asset;
use orch::config::ExecutionConfig;
use orch::daemon::{Daemon, DaemonConfig, ManualClock, RunFailureSensor, Sensor};
use orch::execute::Executor;
use orch::notify::WebhookNotifier;
use orch::partitions::PartitionsDefinition;
use orch::plan::{self, PartitionRequest};
use orch::storage::{QueueLimits, Storage, TickRecord};
use orch::{
    AssetContext, AssetGraph, AssetKey, ComputeError, Materialization, Resources, RunStatus,
};
use tokio_util::sync::CancellationToken;

use crate::util::{Webhook, db};

fn hourly() -> PartitionsDefinition {
    PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap()
}

/// raw/listen_events counts the lake files of its hour; staging/listen_events follows it.
fn lake_graph(lake: &Path) -> Arc<AssetGraph> {
    let lake = lake.to_path_buf();
    let raw = asset("raw/listen_events")
        .partitions(hourly())
        .compute(move |ctx: AssetContext| {
            let lake = lake.clone();
            async move {
                let key = ctx.partition_key().unwrap().to_owned();
                let (day, hour) = key.split_at(10);
                let dir = lake.join(format!("raw/listen_events/date={day}/hour={}", &hour[1..3]));
                let files = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
                Ok::<_, ComputeError>(Materialization::new().row_count(files as u64))
            }
        })
        .unwrap();
    let staging = asset("staging/listen_events")
        .deps(["raw/listen_events"])
        .partitions(hourly())
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
        .unwrap();
    Arc::new(AssetGraph::new(vec![raw, staging]).unwrap())
}

fn write_file(lake: &Path, hour: &str, name: &str) -> PathBuf {
    let dir = lake.join(format!("raw/listen_events/date=2026-11-22/hour={hour}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, "{}").unwrap();
    path
}

async fn materialize(
    storage: &Arc<dyn Storage>,
    graph: &Arc<AssetGraph>,
    selection: &str,
    key: &str,
) -> RunStatus {
    let selected = orch::Selection::parse(selection)
        .unwrap()
        .resolve(graph)
        .unwrap();
    let plan = plan::plan(graph, &selected, &PartitionRequest::Key(key.into())).unwrap();
    let executor = Executor::new(
        graph.clone(),
        storage.clone(),
        Resources::new(),
        ExecutionConfig::default(),
        Default::default(),
    );
    let run = executor
        .create_run(
            &plan,
            &RunRequest::new("", orch::plan::PartitionRequest::None),
        )
        .await
        .unwrap();
    executor
        .execute(run.run_id, &plan, CancellationToken::new(), Vec::new())
        .await
        .unwrap()
        .run
        .status
}

async fn raw_rows(storage: &dyn Storage, key: &str) -> Option<i64> {
    storage
        .asset_partitions(&[AssetKey::parse("raw/listen_events").unwrap()])
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.partition_key.as_deref() == Some(key))
        .and_then(|p| p.materialization)
        .and_then(|m| m.metadata.row_count())
}

fn daemon(
    storage: Arc<dyn Storage>,
    graph: Arc<AssetGraph>,
    sensors: Vec<Arc<dyn Sensor>>,
    clock: &ManualClock,
) -> Daemon {
    Daemon::new(
        storage,
        graph,
        Resources::new(),
        Vec::new(),
        DaemonConfig::default(),
        Arc::new(clock.clone()),
    )
    .unwrap()
    .with_sensors(sensors)
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn late_lake_files_rematerialize_their_hour_once() {
    let db = db::postgres().await;
    let lake = tempfile::tempdir().unwrap();
    let graph = lake_graph(lake.path());
    write_file(lake.path(), "10", "part-0.parquet");
    write_file(lake.path(), "10", "part-1.parquet");
    assert_eq!(
        materialize(&db.storage, &graph, "*", "2026-11-22-10:00").await,
        RunStatus::Success
    );
    assert_eq!(
        raw_rows(db.storage.as_ref(), "2026-11-22-10:00").await,
        Some(2)
    );

    tokio::time::sleep(Duration::from_millis(20)).await;
    write_file(lake.path(), "10", "late-0.parquet");
    write_file(lake.path(), "11", "part-0.parquet"); // an hour never loaded: the schedule's job
    let clock = ManualClock::new(Utc::now());
    let sensor = || -> Vec<Arc<dyn Sensor>> {
        vec![Arc::new(
            orch_platform::LakeFiles::sensor_at("late_files", &lake.path().display().to_string())
                .unwrap()
                .interval(Duration::ZERO)
                // The lake's hours are fixed dates, behind the clock by more than the default.
                .lookback(chrono::Duration::days(100_000)),
        )]
    };
    // Two daemons (two storages, as two processes) evaluate the sensor at once.
    let other = db.reopen().await;
    let a = daemon(db.storage.clone(), graph.clone(), sensor(), &clock);
    let b = daemon(other, graph.clone(), sensor(), &clock);
    let (ra, rb) = tokio::join!(a.evaluate_sensors(), b.evaluate_sensors());
    // Each call returns only the ticks it recorded itself.
    let recorded: Vec<TickRecord> = ra.unwrap().into_iter().chain(rb.unwrap()).collect();
    let created: Vec<_> = recorded
        .iter()
        .filter_map(|r| match r {
            TickRecord::Recorded(t) => t.run_id,
            TickRecord::AlreadyRecorded(_) => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "{recorded:?}");
    let run = db.storage.get_run(created[0]).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.partition_key.as_deref(), Some("2026-11-22-10:00"));
    assert_eq!(run.selection, "raw/listen_events*");
    let keys: BTreeSet<String> = run.asset_keys.iter().map(ToString::to_string).collect();
    assert_eq!(
        keys,
        ["raw/listen_events", "staging/listen_events"]
            .map(String::from)
            .into()
    );

    // The daemon's worker runs it; the hour now counts the late file.
    let lease = db
        .storage
        .claim_run(
            "test",
            Utc::now(),
            Duration::from_secs(30),
            &QueueLimits::default(),
        )
        .await
        .unwrap()
        .expect("the requested run is queued");
    let plan = orch::daemon::plan_for_run(&graph, &lease.run).unwrap();
    let executor = Executor::new(
        graph.clone(),
        db.storage.clone(),
        Resources::new(),
        ExecutionConfig::default(),
        Default::default(),
    );
    let outcome = executor
        .execute(
            lease.run.run_id,
            &plan,
            CancellationToken::new(),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.run.status, RunStatus::Success);
    assert_eq!(
        raw_rows(db.storage.as_ref(), "2026-11-22-10:00").await,
        Some(3)
    );

    // Nothing new: no second request.
    assert!(a.evaluate_sensors().await.unwrap().is_empty());
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_runs_are_posted_to_the_webhook_once() {
    let db = db::sqlite().await;
    let hook = Webhook::start().await;
    let failing = asset("boom")
        .compute(|_ctx| async {
            Err::<Materialization, _>(ComputeError::fatal("the warehouse refused the load"))
        })
        .unwrap();
    let graph = Arc::new(AssetGraph::new(vec![failing]).unwrap());
    let run_once = || async {
        let selected: BTreeSet<AssetKey> = graph.toposorted().iter().cloned().collect();
        let plan = plan::plan(&graph, &selected, &PartitionRequest::None).unwrap();
        let executor = Executor::new(
            graph.clone(),
            db.storage.clone(),
            Resources::new(),
            ExecutionConfig::default(),
            Default::default(),
        );
        let run = executor
            .create_run(
                &plan,
                &RunRequest::new("boom", orch::plan::PartitionRequest::None),
            )
            .await
            .unwrap();
        executor
            .execute(run.run_id, &plan, CancellationToken::new(), Vec::new())
            .await
            .unwrap()
            .run
    };
    let old = run_once().await; // before the sensor starts: not posted
    assert_eq!(old.status, RunStatus::Failure);
    let clock = ManualClock::new(Utc::now());
    let sensor: Arc<dyn Sensor> =
        Arc::new(RunFailureSensor::new("run_failures").interval(Duration::ZERO));
    let d = daemon(db.storage.clone(), graph.clone(), vec![sensor], &clock)
        .with_notifier(Arc::new(WebhookNotifier::new(&hook.url).unwrap()));
    assert!(d.evaluate_sensors().await.unwrap().is_empty());
    let failed = run_once().await;
    let recorded = d.evaluate_sensors().await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert!(d.evaluate_sensors().await.unwrap().is_empty());
    let posts = hook.received();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let text = posts[0]["text"].as_str().unwrap();
    assert!(text.contains(&failed.run_id.to_string()), "{text}");
    assert!(text.contains("1 step failed: boom"), "{text}");
    assert_eq!(posts[0]["kind"], "run_failure");
    assert_eq!(posts[0]["details"]["selection"], "boom");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_assets_open_a_violation_and_notify_once_then_recover() {
    let db = db::sqlite().await;
    let hook = Webhook::start().await;
    let fresh_hourly = asset("raw/plays")
        .partitions(hourly())
        .freshness(Duration::from_secs(90 * 60))
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
        .unwrap();
    let graph = Arc::new(AssetGraph::new(vec![fresh_hourly]).unwrap());
    assert_eq!(
        materialize(&db.storage, &graph, "*", "2026-11-22-10:00").await,
        RunStatus::Success
    );
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap());
    let d = daemon(db.storage.clone(), graph.clone(), Vec::new(), &clock)
        .with_notifier(Arc::new(WebhookNotifier::new(&hook.url).unwrap()));
    assert!(
        d.check_freshness().await.unwrap().is_empty(),
        "10:00 ended an hour ago: fresh"
    );
    clock.set(Utc.with_ymd_and_hms(2026, 11, 22, 12, 31, 0).unwrap());
    let sent = d.check_freshness().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, "freshness_violation");
    assert!(
        d.check_freshness().await.unwrap().is_empty(),
        "an open violation is not notified again"
    );
    let open = db.storage.freshness_violations(true).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        materialize(&db.storage, &graph, "*", "2026-11-22-11:00").await,
        RunStatus::Success
    );
    let sent = d.check_freshness().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, "freshness_recovered");
    assert!(
        db.storage
            .freshness_violations(true)
            .await
            .unwrap()
            .is_empty()
    );
    let kinds: Vec<String> = hook
        .received()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["freshness_violation", "freshness_recovered"]);
    assert!(
        hook.received()[0]["text"]
            .as_str()
            .unwrap()
            .contains("2026-11-22-10:00")
    );
}

#[test]
fn a_run_failure_sensor_without_a_webhook_is_refused_at_start() {
    let project =
        crate::util::Project::new("[[sensor]]\nname = 'run_failures'\ntype = 'run_failure'\n");
    let run = project.run(&["daemon"]);
    run.expect_code(2);
    assert!(
        run.stderr()
            .contains("sensor `run_failures`: a run_failure sensor posts to a webhook"),
        "{}",
        run.stderr()
    );
}
