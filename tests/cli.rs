//! The `orch` binary as users run it: exit codes, progress, runs list and show, dry runs,
//! Ctrl-C, bad input, and concurrent processes on one run history.

use std::time::Duration;

use expect_test::expect;

use crate::util::{Project, db, process_alive, wait_until};

const PIPELINE: &str = r#"
[[asset]]
key = "raw/events"
group = "raw"
command = "echo 'orch:metadata {\"row_count\": 42}'; echo fetched $ORCH_PARTITION_KEY"
partitions = { hourly = "2026-11-01-00:00" }

[[asset]]
key = "staging/events"
deps = ["raw/events"]
group = "staging"
kinds = ["sql"]
command = "echo staged; echo 'a warning' >&2"
partitions = { hourly = "2026-11-01-00:00" }

[[asset]]
key = "marts/daily"
deps = ["staging/events"]
group = "marts"
command = "echo rolled up $ORCH_PARTITION_KEY"
partitions = { daily = "2026-11-01" }
"#;

#[test]
fn materialize_prints_progress_exits_0_and_records_every_step() {
    let project = Project::new(PIPELINE);
    let run = project.run(&[
        "materialize",
        "--select",
        "*",
        "--partition",
        "2026-11-22-10:00",
    ]);
    run.expect_code(0);
    let out = run.stdout();
    assert!(
        out.contains("started    raw/events[2026-11-22-10:00]"),
        "{out}"
    );
    assert!(
        out.contains("succeeded  staging/events[2026-11-22-10:00]"),
        "{out}"
    );
    assert!(out.contains("succeeded  marts/daily[2026-11-22]"), "{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    let runs = project.run(&["runs", "list", "--json"]);
    runs.expect_code(0);
    let runs = runs.json();
    assert_eq!(runs.as_array().map(Vec::len), Some(1));
    assert_eq!(runs[0]["status"], "SUCCESS");
    let run_id = runs[0]["run_id"].as_str().expect("run id").to_owned();

    let show = project.run(&["runs", "show", &run_id]);
    show.expect_code(0);
    let text = show.stdout();
    for step in [
        "raw/events[2026-11-22-10:00]",
        "staging/events[2026-11-22-10:00]",
        "marts/daily[2026-11-22]",
    ] {
        assert!(text.contains(step), "runs show lacks {step}:\n{text}");
    }
    for event in [
        "RUN_STARTING",
        "RUN_START",
        "STEP_START",
        "ASSET_MATERIALIZATION",
        "STEP_SUCCESS",
        "RUN_SUCCESS",
    ] {
        assert!(text.contains(event), "runs show lacks {event}:\n{text}");
    }
    assert!(
        text.contains("row_count=42"),
        "the command's metadata is recorded:\n{text}"
    );

    let json = project.run(&["runs", "show", &run_id, "--json"]).json();
    let steps = json["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3);
    assert!(
        steps
            .iter()
            .all(|s| s["status"] == "SUCCESS" && s["attempts"] == 1),
        "{json}"
    );

    let logs = project.run(&[
        "runs",
        "logs",
        &run_id,
        "--step",
        "staging/events[2026-11-22-10:00]",
    ]);
    logs.expect_code(0);
    let text = logs.stdout();
    assert!(
        text.contains("staging/events[2026-11-22-10:00] stdout staged"),
        "{text}"
    );
    assert!(text.contains("stderr a warning"), "{text}");
    assert!(
        !text.contains("raw/events"),
        "only the step asked for: {text}"
    );

    let assets = project.run(&["assets", "list"]);
    assets.expect_code(0);
    let text = assets.stdout();
    assert!(
        text.lines().any(|l| l.starts_with("raw/events")
            && l.contains("42")
            && l.contains("1 MATERIALIZED")),
        "{text}"
    );
}

#[test]
fn a_failing_asset_exits_1_naming_the_step_and_its_error() {
    let project = Project::new(
        r#"
[[asset]]
key = "a"
command = "echo 'cannot reach the warehouse' >&2; exit 3"

[[asset]]
key = "b"
deps = ["a"]
command = "echo never"

[[asset]]
key = "c"
command = "echo independent"
"#,
    );
    let run = project.run(&["materialize", "--select", "*"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("step `a` failed"), "{err}");
    assert!(err.contains("cannot reach the warehouse"), "{err}");
    let out = run.stdout();
    assert!(
        out.contains("skipped    b: skipped: upstream step `a` failed"),
        "{out}"
    );
    assert!(out.contains("succeeded  c"), "{out}");
    let runs = project
        .run(&["runs", "list", "--status", "failure", "--json"])
        .json();
    assert_eq!(runs[0]["status"], "FAILURE");
}

#[test]
fn retries_with_backoff_from_orch_toml() {
    let project = Project::new(
        r#"
[[asset]]
key = "flaky"
command = "n=$(cat tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > tries; [ $n -ge 3 ]"
retry = { max_attempts = 3, delay_ms = 50, backoff = "exponential" }
"#,
    );
    let run = project.run(&["materialize", "--select", "flaky", "--json"]);
    run.expect_code(0);
    let json = run.json();
    assert_eq!(json["steps"][0]["attempts"], 3, "{json}");
    let err = run.stderr();
    assert!(err.contains("retrying   flaky: attempt 1 failed"), "{err}");
    assert!(err.contains("next in 50 ms"), "{err}");
    assert!(err.contains("next in 100 ms"), "{err}");
}

/// Runs `orch ARGS`, expects exit 2 and a message containing `needle`.
#[track_caller]
fn expect_usage_error(project: &Project, args: &[&str], needle: &str) {
    let run = project.run(args);
    run.expect_code(2);
    assert!(
        run.stderr().contains(needle),
        "`{needle}` is not in:\n{}",
        run.stderr()
    );
}

#[test]
fn bad_usage_exits_2_with_a_precise_message() {
    let p = Project::new(PIPELINE);
    let hour = "2026-11-22-10:00";
    expect_usage_error(
        &p,
        &[
            "materialize",
            "--select",
            "staging/event",
            "--partition",
            hour,
        ],
        "did you mean `staging/events`?",
    );
    expect_usage_error(
        &p,
        &["materialize", "--select", "raw/events,,marts/daily"],
        "position 11",
    );
    // The message shows the expected format.
    expect_usage_error(
        &p,
        &[
            "materialize",
            "--select",
            "*",
            "--partition",
            "2026-11-22 10:00",
        ],
        hour,
    );
    expect_usage_error(
        &p,
        &["materialize", "--select", "raw/events"],
        "pass --partition",
    );
    expect_usage_error(&p, &["materialize"], "--select");
    expect_usage_error(&p, &["runs", "show", "not-a-run"], "is not a run id");
    expect_usage_error(
        &p,
        &["runs", "list", "--status", "done"],
        "unknown status `done`",
    );

    p.write(
        "orch.toml",
        "[assets]\nbuiltin = false\n[[asset]]\nkey = 'a'\ncommand = 'true'\ndeps = ['b']\n",
    );
    expect_usage_error(
        &p,
        &["materialize", "--select", "*"],
        "depends on `b`, which no definition provides",
    );
    p.write("orch.toml", "databse_url = 'x'\n");
    expect_usage_error(&p, &["assets", "list"], "unknown field `databse_url`");
}

/// Issue 14, items 1 and 5, as a user meets them: the unbounded range of the issue refused at
/// once, a large backfill needing --yes, a month 13, a bad cron in the user's own words,
/// duplicate schedules refused by every command, duplicate assets naming both tables, a
/// setting named as written in orch.toml.
#[test]
fn limits_and_precise_messages() {
    let p = Project::new(PIPELINE);
    // The issue's command grew past 650 MB and did not finish: each is refused within seconds.
    let bounded = |args: &[&str], needle: &str| {
        let mut child = p
            .command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run orch");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`orch {}` did not finish within 20 s", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "`{needle}` is not in:\n{stderr}");
    };
    bounded(
        &[
            "materialize",
            "--select",
            "*",
            "--from",
            "2026-11-01-00:00",
            "--to",
            "9999-12-31-23:00",
            "--dry-run",
        ],
        "after the last partition the definition allows",
    );
    bounded(
        &[
            "materialize",
            "--select",
            "*",
            "--from",
            "2026-11-01-00:00",
            "--to",
            "2028-11-01-00:00",
            "--dry-run",
        ],
        "more than 10000 partitions",
    );
    expect_usage_error(
        &p,
        &[
            "backfill",
            "--select",
            "raw/events",
            "--from",
            "2026-11-01-00:00",
            "--to",
            "2026-11-08-00:00",
        ],
        "would queue 169 runs, more than 100",
    );
    let queued = p.run(&[
        "backfill",
        "--select",
        "raw/events",
        "--from",
        "2026-11-01-00:00",
        "--to",
        "2026-11-08-00:00",
        "--yes",
    ]);
    queued.expect_code(0);
    expect_usage_error(
        &p,
        &[
            "materialize",
            "--select",
            "raw/events",
            "--partition",
            "2026-13-01-00:00",
        ],
        "month 13 does not exist (months are 01-12)",
    );
    let long = "x".repeat(50_000);
    let run = p.run(&["materialize", "--select", &long]);
    run.expect_code(2);
    assert!(run.stderr().len() < 2_000, "{}", run.stderr().len());

    let with = |extra: &str| {
        p.write(
            "orch.toml",
            &format!("[assets]\nbuiltin = false\n{extra}\n{PIPELINE}"),
        );
    };
    with("[[schedule]]\nname = 'h'\ncron = '61 * * * *'\nselection = '*'\n");
    expect_usage_error(
        &p,
        &["schedules", "list"],
        "minute `61` is out of range: minutes are 0-59 at position 0\n  61 * * * *\n  ^",
    );
    with("[[schedule]]\nname = 'h'\ncron = '0 0 30 2 *'\nselection = '*'\n");
    expect_usage_error(&p, &["schedules", "list"], "February has no day 30");
    let twice = "[[schedule]]\nname = 'h'\ncron = '10 * * * *'\nselection = '*'\n[[schedule]]\nname = 'h'\ncron = '20 * * * *'\nselection = '*'\n";
    with(twice);
    for args in [&["schedules", "list"][..], &["schedules", "on", "h"][..]] {
        expect_usage_error(&p, args, "the name is used twice: by [[schedule]] number 1");
    }
    with("[daemon]\nlease_secs = 0\n");
    expect_usage_error(&p, &["daemon"], "`lease_secs` in [daemon] of");
    p.write(
        "orch.toml",
        "[assets]\nbuiltin = false\n[[asset]]\nkey = 'a'\ncommand = 'true'\n[[asset]]\nkey = 'a'\ncommand = 'false'\n",
    );
    expect_usage_error(&p, &["assets", "list"], "defined by [[asset]] number 1 in");
}

#[test]
fn an_unreachable_database_is_one_clear_error() {
    let project = Project::new(PIPELINE).with_database("postgres://orch:secret@127.0.0.1:1/orch");
    let run = project.run(&["runs", "list"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(
        err.contains("cannot connect to the run history at postgres://orch:***@127.0.0.1:1/orch"),
        "{err}"
    );
    assert!(!err.contains("secret"), "the password leaked: {err}");
}

#[test]
fn dry_run_prints_the_plan() {
    let project = Project::new(PIPELINE);
    let run = project.run(&[
        "materialize",
        "--select",
        "*",
        "--from",
        "2026-11-22-22:00",
        "--to",
        "2026-11-23-01:00",
        "--dry-run",
    ]);
    run.expect_code(0);
    expect![[r#"
        Plan: 10 steps for 3 assets, partitions 2026-11-22-22:00 to 2026-11-23-01:00
           1. raw/events[2026-11-22-22:00]
           2. raw/events[2026-11-22-23:00]
           3. raw/events[2026-11-23-00:00]
           4. raw/events[2026-11-23-01:00]
           5. staging/events[2026-11-22-22:00]  after 1
           6. staging/events[2026-11-22-23:00]  after 2
           7. staging/events[2026-11-23-00:00]  after 3
           8. staging/events[2026-11-23-01:00]  after 4
           9. marts/daily[2026-11-22]  after 5, 6
          10. marts/daily[2026-11-23]  after 7, 8
    "#]]
    .assert_eq(&run.stdout());
    assert_eq!(
        project.run(&["runs", "list", "--json"]).json(),
        serde_json::json!([])
    );
}

#[test]
fn ctrl_c_cancels_the_run_and_kills_its_child_processes() {
    let project = Project::new(
        r#"
[[asset]]
key = "slow"
command = "sleep 60 & echo $! > child.pid; wait"

[[asset]]
key = "after"
deps = ["slow"]
command = "true"
"#,
    );
    let child = project
        .command(&["materialize", "--select", "*"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start orch");
    let pid_file = project.path().join("child.pid");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(
            &pid_file
        )
        .is_ok_and(|s| !s.trim().is_empty())),
        "the slow asset never started"
    );
    let sleeper: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_alive(sleeper));
    send_sigint(child.id());
    let output = child.wait_with_output().expect("wait for orch");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("was canceled"), "{stderr}");
    assert!(
        wait_until(Duration::from_secs(5), || !process_alive(sleeper)),
        "the child process {sleeper} survived"
    );

    let runs = project.run(&["runs", "list", "--json"]).json();
    assert_eq!(runs[0]["status"], "CANCELED");
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    let show = project.run(&["runs", "show", &run_id, "--json"]).json();
    let kinds: Vec<&str> = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let canceling = kinds
        .iter()
        .position(|k| *k == "RUN_CANCELING")
        .expect("RUN_CANCELING");
    let canceled = kinds
        .iter()
        .position(|k| *k == "RUN_CANCELED")
        .expect("RUN_CANCELED");
    assert!(canceling < canceled, "{kinds:?}");
    assert!(kinds.contains(&"STEP_CANCELED"), "{kinds:?}");
    let steps = show["steps"].as_array().unwrap();
    assert_eq!(steps[1]["key"], "after");
    assert_eq!(steps[1]["status"], "NOT_STARTED");
}

#[allow(unsafe_code)]
fn send_sigint(pid: u32) {
    // SAFETY: kill(2) has no memory effects on this process.
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
}

/// Assets for the concurrency tests: many small steps that all write run history.
fn busy_project() -> String {
    let mut toml = String::new();
    for i in 0..25 {
        toml.push_str(&format!(
            "[[asset]]\nkey = \"a{i}\"\ncommand = \"echo {i}\"\n"
        ));
        if i > 0 {
            toml.push_str(&format!("deps = [\"a{}\"]\n", i - 1));
        }
    }
    for i in 0..25 {
        toml.push_str(&format!(
            "[[asset]]\nkey = \"b{i}\"\ncommand = \"echo {i}\"\n"
        ));
    }
    toml
}

fn run_concurrently(project: &Project, processes: usize) {
    let children: Vec<_> = (0..processes)
        .map(|_| {
            project
                .command(&["materialize", "--select", "*", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start orch")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
        assert!(!stderr.contains("locked"), "{stderr}");
    }
    let runs = project.run(&["runs", "list", "--json"]).json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), processes);
    assert!(runs.iter().all(|r| r["status"] == "SUCCESS"));
}

#[test]
fn concurrent_processes_share_one_sqlite_file() {
    let project = Project::new(&busy_project());
    run_concurrently(&project, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_processes_share_one_postgres() {
    let db = db::postgres().await;
    let project = Project::new(&busy_project()).with_database(&db.url);
    tokio::task::spawn_blocking(move || run_concurrently(&project, 3))
        .await
        .expect("processes");
    db.cleanup().await;
}

#[test]
fn the_example_graph_materializes_with_one_line_of_config() {
    let project = Project::empty();
    project.write("orch.toml", "[assets]\nexample = true\n");
    let run = project.run(&[
        "materialize",
        "--select",
        "group:example",
        "--partition",
        "2026-11-22-10:00",
    ]);
    run.expect_code(0);
    let list = project
        .run(&["assets", "list", "--select", "group:example", "--json"])
        .json();
    let states: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap(), a["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("example/songs", "MATERIALIZED"),
            ("example/plays", "1 MATERIALIZED"),
            ("example/plays_by_song", "1 MATERIALIZED"),
            ("example/daily_top_songs", "1 MATERIALIZED"),
        ]
    );
    assert!(project.path().join(".orch/orch.db").is_file());
    assert!(
        project
            .path()
            .join(".orch/example/daily_top_songs/2026-11-22.json")
            .is_file()
    );
}
