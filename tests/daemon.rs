//! The daemon: schedules that tick exactly once with several daemons and restarts, queued
//! runs claimed by daemons, leases that expire when a daemon is killed, cancellation and
//! re-execution across processes, backfills.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use orch::asset::asset;
use orch::daemon::{Daemon, DaemonConfig, ManualClock, ScheduleDefinition};
use orch::partitions::PartitionsDefinition;
use orch::storage::{RunFilter, Storage, TickStatus};
use orch::{AssetGraph, ComputeError, Materialization, Resources, RunStatus};
use tokio_util::sync::CancellationToken;

use crate::util::{Project, db, process_alive, wait_until};
use orch::request::tags::SCHEDULE as SCHEDULE_TAG;

fn hourly_graph() -> Arc<AssetGraph> {
    let raw = asset("raw/events")
        .partitions(PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap())
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new().row_count(1)) })
        .unwrap();
    let staged = asset("staging/events")
        .deps(["raw/events"])
        .partitions(PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap())
        .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
        .unwrap();
    Arc::new(AssetGraph::new(vec![raw, staged]).unwrap())
}

fn fast_config(id: &str) -> DaemonConfig {
    DaemonConfig {
        id: id.to_owned(),
        poll: Duration::from_millis(50),
        schedule_interval: Duration::from_millis(20),
        heartbeat: Duration::from_millis(200),
        ..DaemonConfig::default()
    }
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(url: &str, id: &str, clock: &ManualClock) -> Running {
    let storage = orch::storage::open(url).await.expect("open storage");
    let schedule = ScheduleDefinition::new("hourly_pipeline", "10 * * * *", "UTC", "*")
        .unwrap()
        .enabled_by_default(true);
    let daemon = Daemon::new(
        storage,
        hourly_graph(),
        Resources::new(),
        vec![schedule],
        fast_config(id),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        Arc::new(daemon)
            .run(token, CancellationToken::new())
            .await
            .unwrap();
    });
    Running { stop, task }
}

async fn scheduled_runs(storage: &dyn Storage) -> Vec<orch::Run> {
    storage
        .list_runs(&RunFilter {
            tag: Some((SCHEDULE_TAG.to_owned(), "hourly_pipeline".to_owned())),
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

async fn wait_for_successes(storage: &dyn Storage, n: usize) {
    for _ in 0..500 {
        let runs = scheduled_runs(storage).await;
        if runs.len() >= n && runs.iter().all(|r| r.status == RunStatus::Success) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let runs = scheduled_runs(storage).await;
    panic!(
        "expected {n} successful scheduled runs, found {:?}",
        runs.iter()
            .map(|r| (r.partition_key.clone(), r.status))
            .collect::<Vec<_>>()
    );
}

/// Two daemons on one Postgres and a clock driven by the test over 24 hourly ticks; one
/// daemon is killed (its task aborted mid-loop) and restarted halfway: exactly one run per
/// tick, each for the hour that had just ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_and_a_restart_give_exactly_one_run_per_tick() {
    let db = db::postgres().await;
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 30).unwrap());
    let a = start(&db.url, "a", &clock).await;
    let b = start(&db.url, "b", &clock).await;
    let mut a = Some(a);
    for hour in 0..24u32 {
        clock.set(Utc.with_ymd_and_hms(2026, 11, 22, hour, 10, 5).unwrap());
        wait_for_successes(db.storage.as_ref(), hour as usize + 1).await;
        if hour == 11 {
            // Kill daemon a without letting it clean up, then start a new one.
            let killed = a.take().unwrap();
            killed.task.abort();
            let _ = killed.task.await;
            a = Some(start(&db.url, "a-restarted", &clock).await);
        }
    }
    // Give both daemons time to tick again: nothing new may appear.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = scheduled_runs(db.storage.as_ref()).await;
    assert_eq!(runs.len(), 24);
    let mut keys: Vec<String> = runs
        .iter()
        .map(|r| r.partition_key.clone().unwrap())
        .collect();
    keys.sort();
    let expected: Vec<String> = std::iter::once("2026-11-21-23:00".to_owned())
        .chain((0..23).map(|h| format!("2026-11-22-{h:02}:00")))
        .collect();
    assert_eq!(keys, expected);
    let ticks = db
        .storage
        .schedule_ticks("hourly_pipeline", 100)
        .await
        .unwrap();
    assert_eq!(ticks.len(), 24);
    assert!(
        ticks
            .iter()
            .all(|t| t.status == TickStatus::Requested && t.run_id.is_some())
    );
    for running in [a.unwrap(), b] {
        running.stop.cancel();
        running.task.await.unwrap();
    }
    db.cleanup().await;
}

/// After downtime, the catch-up policy decides: `latest` runs the newest missed tick and
/// records the others as skipped.
#[tokio::test(flavor = "multi_thread")]
async fn missed_ticks_follow_the_catchup_policy() {
    let db = db::sqlite().await;
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap());
    let schedule = ScheduleDefinition::new("hourly_pipeline", "10 * * * *", "UTC", "*")
        .unwrap()
        .enabled_by_default(true);
    let daemon = Daemon::new(
        db.storage.clone(),
        hourly_graph(),
        Resources::new(),
        vec![schedule],
        fast_config("solo"),
        Arc::new(clock.clone()),
    )
    .unwrap();
    clock.set(Utc.with_ymd_and_hms(2026, 11, 22, 5, 30, 0).unwrap());
    let recorded = daemon.tick_schedules().await.unwrap();
    // Ticks at 00:10, 01:10, ... 05:10: six, of which the latest runs.
    assert_eq!(recorded.len(), 6);
    let ticks = db
        .storage
        .schedule_ticks("hourly_pipeline", 10)
        .await
        .unwrap();
    let statuses: Vec<TickStatus> = ticks.iter().map(|t| t.status).collect();
    use TickStatus::*;
    assert_eq!(
        statuses,
        [Requested, Skipped, Skipped, Skipped, Skipped, Skipped]
    );
    assert_eq!(
        scheduled_runs(db.storage.as_ref()).await[0]
            .partition_key
            .as_deref(),
        Some("2026-11-22-04:00")
    );
    assert!(
        daemon.tick_schedules().await.unwrap().is_empty(),
        "a second pass records nothing"
    );
}

/// The daemon's retention deletes the runs that ended longer ago than its setting, by its
/// clock, and keeps the newer ones and those in flight.
#[tokio::test]
async fn retention_deletes_runs_that_ended_long_ago() {
    let db = db::sqlite().await;
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 12, 0, 0).unwrap();
    let clock = ManualClock::new(day(1));
    let daemon = Daemon::new(
        db.storage.clone(),
        hourly_graph(),
        Resources::new(),
        vec![],
        DaemonConfig {
            retention: Some(Duration::from_secs(7 * 86_400)),
            ..fast_config("keeper")
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    let mut runs = Vec::new();
    for (ended, status) in [
        (day(1), RunStatus::Success),
        (day(2), RunStatus::Failure),
        (day(20), RunStatus::Success),
    ] {
        let run = db
            .storage
            .create_run(&orch::run::NewRun {
                status: RunStatus::Queued,
                selection: "raw/events".into(),
                asset_keys: vec![orch::AssetKey::parse("raw/events").unwrap()],
                ..orch::run::NewRun::new(orch::new_run_id(), ended)
            })
            .await
            .unwrap();
        for to in [RunStatus::Starting, RunStatus::Started, status] {
            db.storage
                .transition_run(run.run_id, to, ended)
                .await
                .unwrap();
        }
        runs.push(run.run_id);
    }
    let in_flight = db
        .storage
        .create_run(&orch::run::NewRun {
            status: RunStatus::Queued,
            selection: "raw/events".into(),
            ..orch::run::NewRun::new(orch::new_run_id(), day(1))
        })
        .await
        .unwrap();
    clock.set(day(21));
    let pruned = daemon
        .apply_retention(Duration::from_secs(7 * 86_400))
        .await
        .unwrap();
    assert_eq!(
        pruned.runs, 2,
        "the runs of the 1st and the 2nd: {pruned:?}"
    );
    for (run, kept) in runs.iter().zip([false, false, true]) {
        assert_eq!(db.storage.get_run(*run).await.unwrap().is_some(), kept);
    }
    assert!(
        db.storage
            .get_run(in_flight.run_id)
            .await
            .unwrap()
            .is_some()
    );
}

const SLOW: &str = r#"
[[asset]]
key = "slow"
command = "echo started >> starts; echo $$ >> pids; exec sleep 30"
"#;

fn spawn_daemon(project: &Project, extra: &[&str]) -> std::process::Child {
    let mut args = vec!["daemon", "--lease-secs", "3", "--heartbeat-secs", "1"];
    args.extend_from_slice(extra);
    project
        .command(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the daemon")
}

fn lines(project: &Project, name: &str) -> Vec<String> {
    std::fs::read_to_string(project.path().join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[allow(unsafe_code)]
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory effects on this process.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A daemon killed with SIGKILL mid-run: when its lease expires another daemon fails the run
/// with the reason and, by policy, queues it again; the step never ran twice at once. The
/// re-queued run is then canceled from another process.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_daemon_s_run_is_resolved_when_its_lease_expires() {
    let db = db::postgres().await;
    let project = Project::new(SLOW).with_database(&db.url);
    let mut first = spawn_daemon(&project, &[]);
    project
        .run(&["materialize", "--select", "slow", "--queue"])
        .expect_code(0);
    assert!(
        wait_until(Duration::from_secs(20), || lines(&project, "starts").len()
            == 1),
        "the run never started"
    );
    let first_pid: i32 = wait_pid(&project, 0);
    // The daemon writes its events in batches: kill it once its STEP_START is stored (a step
    // whose start was never recorded has nothing to end; seen on a loaded machine).
    assert!(
        wait_until(Duration::from_secs(10), || {
            let runs = project.run(&["runs", "list", "--json"]).json();
            let id = runs[0]["run_id"].as_str().unwrap_or_default().to_owned();
            let shown = project.run(&["runs", "show", &id, "--json"]).json();
            shown["steps"].as_array().is_some_and(|s| s.len() == 1)
        }),
        "the step's start was never recorded"
    );
    signal(first.id(), libc::SIGKILL);
    let _ = first.wait();
    assert!(
        wait_until(Duration::from_secs(5), || !process_alive(first_pid)),
        "the step outlived its daemon"
    );

    let mut second = spawn_daemon(&project, &["--expired-runs", "requeue"]);
    assert!(
        wait_until(Duration::from_secs(30), || lines(&project, "starts").len()
            == 2),
        "the run was not re-queued and run again"
    );
    let runs = project.run(&["runs", "list", "--json"]).json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let (retry, failed) = (&runs[0], &runs[1]);
    assert_eq!(failed["status"], "FAILURE");
    assert_eq!(retry["parent_run_id"], failed["run_id"]);
    let show = project.run(&["runs", "show", failed["run_id"].as_str().unwrap()]);
    assert!(
        show.stdout().contains("stopped renewing its lease"),
        "{}",
        show.stdout()
    );
    // The step its killed daemon left in flight ended with the run, saying why.
    let shown = project
        .run(&["runs", "show", failed["run_id"].as_str().unwrap(), "--json"])
        .json();
    let steps = shown["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{shown}");
    assert_eq!(steps[0]["status"], "FAILURE", "{shown}");

    // Cancel the re-queued run from this process: its daemon stops it.
    let retry_id = retry["run_id"].as_str().unwrap().to_owned();
    project.run(&["runs", "cancel", &retry_id]).expect_code(0);
    let second_pid = wait_pid(&project, 1);
    assert!(
        wait_until(Duration::from_secs(15), || {
            project.run(&["runs", "list", "--json"]).json()[0]["status"] == "CANCELED"
        }),
        "the cancel request was not honoured"
    );
    assert!(wait_until(Duration::from_secs(5), || !process_alive(
        second_pid
    )));
    signal(second.id(), libc::SIGTERM);
    let status = second.wait().unwrap();
    assert!(
        status.success(),
        "the daemon did not stop cleanly: {status:?}"
    );
    db.cleanup().await;
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET path` from `addr` (HTTP/1.1, the connection closed by the server), once
/// the server answers; panics on any status but 200.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            stream = std::net::TcpStream::connect(addr).ok();
            stream.is_some()
        }),
        "nothing listens on {addr}"
    );
    let mut stream = stream.unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    body.to_owned()
}

fn wait_pid(project: &Project, index: usize) -> i32 {
    assert!(wait_until(Duration::from_secs(10), || lines(
        project, "pids"
    )
    .len()
        > index));
    lines(project, "pids")[index].trim().parse().unwrap()
}

#[test]
fn a_run_in_one_process_is_canceled_from_another() {
    let project = Project::new(SLOW);
    let child = project
        .command(&["materialize", "--select", "slow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || lines(
        &project, "starts"
    )
    .len()
        == 1));
    let pid = wait_pid(&project, 0);
    let runs = project
        .run(&["runs", "list", "--status", "started", "--json"])
        .json();
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    let cancel = project.run(&["runs", "cancel", &run_id]);
    cancel.expect_code(0);
    assert!(cancel.stdout().contains("CANCELING"), "{}", cancel.stdout());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("was canceled"));
    assert!(wait_until(Duration::from_secs(5), || !process_alive(pid)));
    let again = project.run(&["runs", "cancel", &run_id]);
    again.expect_code(1);
    assert!(
        again.stderr().contains("has already ended (CANCELED)"),
        "{}",
        again.stderr()
    );
}

#[test]
fn reexecution_from_failure_runs_only_what_did_not_succeed() {
    let project = Project::new(
        r#"
[[asset]]
key = "a"
command = "echo a >> ran"
[[asset]]
key = "b"
deps = ["a"]
command = "echo b >> ran; test ! -e broken"
[[asset]]
key = "c"
deps = ["b"]
command = "echo c >> ran"
[[asset]]
key = "d"
command = "echo d >> ran"
"#,
    );
    project.write("broken", "");
    project
        .run(&["materialize", "--select", "*"])
        .expect_code(1);
    let parent = project.run(&["runs", "list", "--json"]).json()[0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::remove_file(project.path().join("broken")).unwrap();
    std::fs::remove_file(project.path().join("ran")).unwrap();
    let run = project.run(&["runs", "reexecute", &parent, "--from-failure", "--json"]);
    run.expect_code(0);
    let json = run.json();
    let steps: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["b", "c"]);
    assert_eq!(lines(&project, "ran"), ["b", "c"]);
    let child = project.run(&["runs", "list", "--json"]).json()[0].clone();
    assert_eq!(child["parent_run_id"].as_str(), Some(parent.as_str()));
    assert_eq!(child["root_run_id"].as_str(), Some(parent.as_str()));
    let again = project.run(&[
        "runs",
        "reexecute",
        child["run_id"].as_str().unwrap(),
        "--from-failure",
    ]);
    again.expect_code(2);
    assert!(
        again.stderr().contains("nothing to re-execute"),
        "{}",
        again.stderr()
    );
}

#[test]
fn a_backfill_queues_one_run_per_partition_and_the_daemon_runs_them() {
    let project = Project::new(
        r#"
[[asset]]
key = "hourly"
command = "echo $ORCH_PARTITION_KEY >> done"
partitions = { hourly = "2026-11-01-00:00" }
"#,
    );
    let created = project.run(&[
        "backfill",
        "--select",
        "hourly",
        "--from",
        "2026-11-22-00:00",
        "--to",
        "2026-11-22-05:00",
        "--json",
    ]);
    created.expect_code(0);
    let id = created.json()["backfill_id"].as_str().unwrap().to_owned();
    let status = project.run(&["backfill", "status", &id, "--json"]).json();
    assert_eq!(status["runs"], 6);
    assert_eq!(status["by_status"]["QUEUED"], 6);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut daemon = spawn_daemon(&project, &["--metrics-addr", &addr]);
    assert!(
        wait_until(Duration::from_secs(30), || {
            project.run(&["backfill", "status", &id, "--json"]).json()["by_status"]["SUCCESS"] == 6
        }),
        "the backfill did not finish"
    );
    // The daemon's metrics say what it did, and the run history's what it holds.
    // (A run's status is stored before its daemon counts it as ended.)
    let mut metrics = String::new();
    wait_until(Duration::from_secs(10), || {
        metrics = http_get(&addr, "/metrics");
        // (And its first heartbeat is written by a task of its own, which may come later.)
        metrics.lines().any(|l| l == "orch_daemon_runs_in_flight 0")
            && metrics.contains("orch_daemon_heartbeat_age_seconds{daemon=\"daemon-")
    });
    for line in [
        "orch_daemon_runs_claimed_total 6",
        "orch_daemon_runs_ended_total{status=\"SUCCESS\"} 6",
        "orch_daemon_run_seconds_count{status=\"SUCCESS\"} 6",
        "orch_daemon_step_seconds_count{status=\"success\"} 6",
        "orch_daemon_first_step_seconds_count 6",
        "orch_daemon_runs_in_flight 0",
        "orch_runs{status=\"SUCCESS\"} 6",
        "orch_runs{status=\"QUEUED\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("orch_daemon_heartbeat_age_seconds{daemon=\"daemon-"),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    assert_eq!(http_get(&addr, "/healthz"), "ok\n");
    let mut done = lines(&project, "done");
    done.sort();
    assert_eq!(done.len(), 6);
    assert_eq!(done[0], "2026-11-22-00:00");
    let second = project.run(&["daemon"]);
    second.expect_code(2);
    assert!(
        second.stderr().contains("another daemon already runs on"),
        "{}",
        second.stderr()
    );
    signal(daemon.id(), libc::SIGTERM);
    assert!(daemon.wait().unwrap().success());
    let bad = project.run(&[
        "backfill",
        "--select",
        "hourly",
        "--from",
        "2026-11-22-05:00",
        "--to",
        "2026-11-22-00:00",
    ]);
    bad.expect_code(2);
}

#[test]
fn schedules_are_listed_and_switched_on_and_off_in_storage() {
    let project = Project::new(
        r#"
[[asset]]
key = "hourly"
command = "true"
partitions = { hourly = "2026-11-01-00:00" }

[[schedule]]
name = "hourly_pipeline"
cron = "10 * * * *"
selection = "*"
catchup = "latest:2"
"#,
    );
    let list = project.run(&["schedules", "list", "--json"]).json();
    assert_eq!(list[0]["name"], "hourly_pipeline");
    assert_eq!(list[0]["enabled"], false);
    assert_eq!(list[0]["catchup"], "latest:2");
    project
        .run(&["schedules", "on", "hourly_pipeline"])
        .expect_code(0);
    assert_eq!(
        project.run(&["schedules", "list", "--json"]).json()[0]["enabled"],
        true
    );
    project
        .run(&["schedules", "off", "hourly_pipeline"])
        .expect_code(0);
    assert_eq!(
        project.run(&["schedules", "list", "--json"]).json()[0]["enabled"],
        false
    );
    let unknown = project.run(&["schedules", "on", "hourly"]);
    unknown.expect_code(2);
    assert!(
        unknown
            .stderr()
            .contains("no schedule `hourly` (schedules: hourly_pipeline)"),
        "{}",
        unknown.stderr()
    );
    project.write(
        "orch.toml",
        "[assets]\nbuiltin = false\n[[schedule]]\nname = 'x'\ncron = '10 * * *'\nselection = '*'\n",
    );
    let bad = project.run(&["schedules", "list"]);
    bad.expect_code(2);
    assert!(
        bad.stderr().contains("invalid cron expression `10 * * *`"),
        "{}",
        bad.stderr()
    );
}
