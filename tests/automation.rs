//! Declarative automation through the daemon, on SQLite and Postgres: an eager chain follows
//! its upstream (late data included) with exactly one run per change, and two daemons, one
//! killed again and again in the middle of its ticks, request each partition exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use orch::asset::asset;
use orch::automation::{AutomationSettings, Condition, Window};
use orch::daemon::{Daemon, DaemonConfig, ManualClock};
use orch::partitions::PartitionsDefinition;
use orch::request::tags::AUTOMATION_TICK;
use orch::storage::{RunFilter, Storage};
use orch::submit::{Submit, submit};
use orch::{
    AssetGraph, AssetKey, ComputeError, Materialization, PartitionRequest, Resources, RunRequest,
    RunStatus,
};
use tokio_util::sync::CancellationToken;

use crate::util::db;

fn hourly() -> PartitionsDefinition {
    PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap()
}

fn graph(raw_eager: bool) -> Arc<AssetGraph> {
    let mut raw = asset("raw").partitions(hourly());
    if raw_eager {
        raw = raw.automation(Condition::eager());
    }
    let raw = raw
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
        .unwrap();
    let stg = asset("stg")
        .deps(["raw"])
        .partitions(hourly())
        .automation(Condition::eager())
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
        .unwrap();
    let report = asset("report")
        .deps(["stg"])
        .automation(Condition::eager())
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
        .unwrap();
    Arc::new(AssetGraph::new(vec![raw, stg, report]).unwrap())
}

fn conditions(g: &AssetGraph) -> BTreeMap<AssetKey, Condition> {
    orch::automation::Automation::conditions_of(g)
}

struct Running {
    daemon: Arc<Daemon>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(
    storage: Arc<dyn Storage>,
    g: Arc<AssetGraph>,
    id: &str,
    clock: &ManualClock,
    pause: Option<Duration>,
) -> Running {
    // A daemon that pauses inside its ticks (and is killed there) runs no runs: killing it
    // would fail its runs, which is not what this test is about.
    let local_runs = if pause.is_some() { 0 } else { 4 };
    let config = DaemonConfig {
        id: id.to_owned(),
        local_runs,
        // The test's clock runs fast: one loop iteration (about 120 ms of real time) moves it by
        // an hour, while a lease is renewed every `heartbeat` of real time. An hour-long lease
        // therefore expired whenever a run outlived one iteration under load (CI), and the reaper
        // failed it. A day outlives the whole test (12 hours of clock); only `b` runs runs and
        // it is never killed, so no expiry is waited for.
        lease: Duration::from_secs(86_400),
        poll: Duration::from_millis(20),
        schedule_interval: Duration::from_millis(20),
        heartbeat: Duration::from_millis(200),
        ..DaemonConfig::default()
    };
    let settings = AutomationSettings {
        interval: Duration::from_millis(20),
        window: Window {
            partitions: 3,
            include_current: false,
        },
        fault_pause: pause,
    };
    let daemon = Daemon::new(
        storage,
        g.clone(),
        Resources::new(),
        vec![],
        config,
        Arc::new(clock.clone()),
    )
    .unwrap()
    .with_automation(conditions(&g), settings)
    .unwrap();
    let daemon = Arc::new(daemon);
    let stop = CancellationToken::new();
    let (d, token) = (daemon.clone(), stop.clone());
    let task = tokio::spawn(async move {
        d.run(token, CancellationToken::new()).await.unwrap();
    });
    Running { daemon, stop, task }
}

/// The automation's runs, oldest first, as (assets, partitions) in user form.
async fn automation_runs(storage: &dyn Storage) -> Vec<(String, String, RunStatus)> {
    let mut runs = storage.list_runs(&RunFilter::default()).await.unwrap();
    runs.retain(|r| r.tags.contains_key(AUTOMATION_TICK));
    runs.reverse();
    runs.into_iter()
        .map(|r| {
            let assets = r
                .asset_keys
                .iter()
                .map(|k| k.to_user_string())
                .collect::<Vec<_>>()
                .join(",");
            let parts = match (r.partition_key, r.partition_key_end) {
                (None, _) => String::new(),
                (Some(a), None) => a,
                (Some(a), Some(b)) if a == b => a,
                (Some(a), Some(b)) => format!("{a}...{b}"),
            };
            (assets, parts, r.status)
        })
        .collect()
}

/// Waits until every run is finished and `n` automation runs exist (then a few more ticks,
/// to see that nothing else comes).
async fn settle(storage: &dyn Storage, clock: &ManualClock, n: usize) -> Vec<(String, String)> {
    for _ in 0..1000 {
        clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(25)).await;
        let runs = automation_runs(storage).await;
        let all = storage.list_runs(&RunFilter::default()).await.unwrap();
        if runs.len() >= n && all.iter().all(|r| r.status.is_terminal()) {
            break;
        }
    }
    for _ in 0..10 {
        clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Runs those last ticks requested end too (the clock stands still: no new tick).
    for _ in 0..1000 {
        let all = storage.list_runs(&RunFilter::default()).await.unwrap();
        if all.iter().all(|r| r.status.is_terminal()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let runs = automation_runs(storage).await;
    assert!(
        runs.iter().all(|(_, _, s)| *s == RunStatus::Success),
        "{runs:?}"
    );
    runs.into_iter().map(|(a, p, _)| (a, p)).collect()
}

async fn materialize_raw(storage: &dyn Storage, g: &AssetGraph, from: &str, to: &str) {
    let request = RunRequest::new(
        "raw",
        PartitionRequest::Range {
            from: from.into(),
            to: to.into(),
        },
    );
    let run = submit(storage, g, &request, Submit::Queue)
        .await
        .unwrap()
        .run;
    // The clock stands still meanwhile, so no automation tick sees the run half done.
    for _ in 0..500 {
        let status = storage.get_run(run.run_id).await.unwrap().map(|r| r.status);
        if status == Some(RunStatus::Success) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the raw run did not succeed");
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, p)| ((*a).to_owned(), (*p).to_owned()))
        .collect()
}

async fn eager_chain_follows_upstream(db: db::TestDb) {
    let g = graph(false);
    let clock = ManualClock::new(at(10, 30));
    let d = start(db.storage.clone(), g.clone(), "solo", &clock, None);
    // Nothing upstream: nothing to do.
    assert!(settle(db.storage.as_ref(), &clock, 0).await.is_empty());
    // Three hours land: staging for the three in one run, then the report.
    materialize_raw(
        db.storage.as_ref(),
        &g,
        "2026-11-22-07:00",
        "2026-11-22-09:00",
    )
    .await;
    let runs = settle(db.storage.as_ref(), &clock, 2).await;
    assert_eq!(
        runs,
        pairs(&[
            ("stg", "2026-11-22-07:00...2026-11-22-09:00"),
            ("report", "")
        ])
    );
    // A late file for hour 08: that hour again, then the report; nothing else.
    materialize_raw(
        db.storage.as_ref(),
        &g,
        "2026-11-22-08:00",
        "2026-11-22-08:00",
    )
    .await;
    let runs = settle(db.storage.as_ref(), &clock, 4).await;
    assert_eq!(
        runs[2..],
        pairs(&[("stg", "2026-11-22-08:00"), ("report", "")])
    );
    // Every requested run links to the evaluation that requested it.
    let evaluations = db.storage.automation_evaluations("stg", 100).await.unwrap();
    let requested: Vec<&Vec<String>> = evaluations
        .iter()
        .filter(|e| !e.requested.is_empty())
        .map(|e| &e.requested)
        .collect();
    assert_eq!(requested.len(), 2, "{evaluations:?}");
    assert!(
        evaluations
            .iter()
            .all(|e| e.requested.is_empty() || e.run_ids.len() == 1)
    );
    let tree: orch::automation::NodeEvaluation =
        serde_json::from_str(&evaluations[0].tree).unwrap();
    assert_eq!(tree.label, "and");
    d.stop.cancel();
    d.task.await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eager_chain_follows_upstream_sqlite() {
    eager_chain_follows_upstream(db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eager_chain_follows_upstream_postgres() {
    eager_chain_follows_upstream(db::postgres().await).await;
}

/// Two daemons on one Postgres over twelve hours of new partitions; one pauses inside each of
/// its ticks (evaluated, not yet recorded) and is killed there again and again: every hour is
/// requested exactly once, and every tick is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_one_killed_mid_tick_request_each_partition_once() {
    let db = db::postgres().await;
    let g = graph(true);
    let clock = ManualClock::new(at(1, 0) + chrono::Duration::seconds(5));
    let b = start(db.reopen().await, g.clone(), "b", &clock, None);
    let mut a = start(
        db.reopen().await,
        g.clone(),
        "a",
        &clock,
        Some(Duration::from_millis(30)),
    );
    for hour in 1..=12u32 {
        clock.set(at(hour, 0) + chrono::Duration::seconds(5));
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(15)).await;
            clock.advance(chrono::Duration::seconds(1));
        }
        // Kill `a` wherever it is (often in its pause) and start it again.
        a.task.abort();
        let _ = a.task.await;
        a = start(
            db.reopen().await,
            g.clone(),
            &format!("a{hour}"),
            &clock,
            Some(Duration::from_millis(30)),
        );
    }
    let runs = settle(db.storage.as_ref(), &clock, 1).await;
    let mut per_hour: BTreeMap<String, usize> = BTreeMap::new();
    for (assets, parts) in &runs {
        if assets == "report" {
            continue;
        }
        assert_eq!(assets, "raw,stg", "{runs:?}");
        let keys = if let Some((a, b)) = parts.split_once("...") {
            hourly().keys_in_range(a, b).unwrap()
        } else {
            vec![parts.clone()]
        };
        for k in keys {
            *per_hour.entry(k).or_default() += 1;
        }
    }
    // The window holds 3 hours: the three before 01:00 at the start, then one per hour.
    let expected: BTreeMap<String, usize> = (-2..12)
        .map(|h: i32| {
            let t = at(0, 0) + chrono::Duration::hours(i64::from(h));
            (t.format("%Y-%m-%d-%H:00").to_string(), 1)
        })
        .collect();
    assert_eq!(per_hour, expected, "{runs:?}");
    let ticks = db.storage.automation_ticks(10_000).await.unwrap();
    let mut times: Vec<_> = ticks.iter().map(|t| t.tick_time).collect();
    times.dedup();
    assert_eq!(times.len(), ticks.len());
    let _ = a.daemon.tick_automation().await.unwrap();
    for r in [a, b] {
        r.stop.cancel();
        r.task.await.unwrap();
    }
    db.cleanup().await;
}
