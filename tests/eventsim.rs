//! `orch eventsim` as users run it: the four topics' files with eventsim's fields, the
//! summary, determinism across runs and speeds, Ctrl-C, and bad input.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use crate::util::{Project, process_alive, wait_until};

const TOPICS: [&str; 4] = [
    "listen_events",
    "page_view_events",
    "auth_events",
    "status_change_events",
];

const USER: [&str; 5] = ["userId", "firstName", "lastName", "gender", "registration"];

/// The key sets of the fork's topics, for a logged-in visitor (anonymous visitors lack the
/// user's keys; page views off `NextSong` lack the song's).
fn expected_keys(topic: &str) -> HashSet<&'static str> {
    let common = [
        "ts",
        "sessionId",
        "level",
        "itemInSession",
        "city",
        "zip",
        "state",
        "lat",
        "lon",
        "userAgent",
        "userId",
        "firstName",
        "lastName",
        "gender",
        "registration",
    ];
    let own: &[&str] = match topic {
        "listen_events" => &["artist", "song", "duration", "auth"],
        "page_view_events" => &[
            "page", "method", "status", "auth", "artist", "song", "duration",
        ],
        "auth_events" => &["success"],
        "status_change_events" => &["auth"],
        _ => unreachable!("no topic {topic}"),
    };
    common.iter().chain(own).copied().collect()
}

fn read_topic(dir: &Path, topic: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join(format!("{topic}.jsonl")))
        .unwrap_or_else(|e| panic!("{topic}.jsonl: {e}"));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{topic}: {e}: {l}")))
        .collect()
}

/// 300 users from Friday to Sunday noon with this seed, into `out`.
fn eventsim(project: &Project, out: &str, seed: &str, extra: &[&str]) -> crate::util::Run {
    let mut args = vec![
        "eventsim",
        "--users",
        "300",
        "--from",
        "2026-11-20",
        "--to",
        "2026-11-22-12:00",
        "--seed",
        seed,
        "--out",
        out,
    ];
    args.extend(extra);
    project.run(&args)
}

#[test]
fn eventsim_writes_the_four_topics_with_eventsims_fields_and_prints_a_summary() {
    let project = Project::empty();
    let run = eventsim(&project, "events", "3", &[]);
    run.expect_code(0);
    let out = run.stdout();
    for needle in TOPICS
        .iter()
        .copied()
        .chain(["total", "users: 300 at the start", "events/s"])
    {
        assert!(out.contains(needle), "summary lacks {needle}:\n{out}");
    }

    let dir = project.path().join("events");
    let from = 1_795_132_800_000_i64; // 2026-11-20T00:00:00Z
    let to = from + 60 * 3_600_000; // 2026-11-22T12:00:00Z
    let cities: HashSet<(String, String, String)> = orch_eventsim::cities()
        .iter()
        .map(|c| (c.city.to_string(), c.state.to_string(), c.zip.to_string()))
        .collect();
    let mut total = 0;
    let mut anonymous = 0;
    for topic in TOPICS {
        let events = read_topic(&dir, topic);
        assert!(!events.is_empty(), "{topic} is empty");
        total += events.len();
        // The summary's count for the topic.
        let line = out.lines().find(|l| l.starts_with(topic)).expect("row");
        let counted: usize = line
            .split_whitespace()
            .last()
            .map(|n| n.replace(',', ""))
            .and_then(|n| n.parse().ok())
            .expect("count");
        assert_eq!(counted, events.len(), "{topic}");

        let allowed = expected_keys(topic);
        let mut widest = HashSet::new();
        let mut last_ts = 0;
        for e in &events {
            let keys: HashSet<&str> = e
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            assert!(keys.is_subset(&allowed), "{topic}: {keys:?}");
            if keys.len() > widest.len() {
                widest = keys.clone();
            }
            let ts = e["ts"].as_i64().expect("ts in ms");
            assert!(
                (from..to).contains(&ts),
                "{topic}: ts {ts} outside the range"
            );
            assert!(ts >= last_ts, "{topic} is not in time order");
            last_ts = ts;
            let place = (
                e["city"].as_str().expect("city").to_owned(),
                e["state"].as_str().expect("state").to_owned(),
                e["zip"].as_str().expect("zip").to_owned(),
            );
            assert!(cities.contains(&place), "{place:?} is not in the table");
            // Guests and logged-out visitors carry no user fields at all.
            let anonymous_visitor =
                matches!(e["auth"].as_str(), Some("Guest" | "Logged Out")) || e["success"] == false;
            for field in USER {
                assert_eq!(keys.contains(field), !anonymous_visitor, "{topic}: {e}");
            }
            if anonymous_visitor {
                anonymous += 1;
            }
            if topic == "listen_events" {
                assert!(e["artist"].is_string() && e["song"].is_string());
                assert!(e["duration"].as_f64().is_some_and(|d| d > 0.0));
            }
        }
        if topic != "status_change_events" {
            assert_eq!(widest, allowed, "{topic}: the fork's full key set");
        }
    }
    assert!(anonymous > 0, "no guest or logged-out visitor");
    let total_row = out
        .lines()
        .find(|l| l.starts_with("total"))
        .expect("total row");
    assert_eq!(
        total_row
            .split_whitespace()
            .last()
            .map(|n| n.replace(',', "")),
        Some(total.to_string())
    );
}

#[test]
fn eventsim_gives_the_same_files_for_a_seed_at_any_speed_and_others_for_another_seed() {
    let project = Project::empty();
    eventsim(&project, "a", "3", &[]).expect_code(0);
    eventsim(&project, "b", "3", &[]).expect_code(0);
    // Sixty hours at 500,000x: under half a second, paced.
    eventsim(&project, "paced", "3", &["--speed", "500000x"]).expect_code(0);
    eventsim(&project, "other", "4", &[]).expect_code(0);
    let read = |dir: &str, topic: &str| {
        std::fs::read(project.path().join(dir).join(format!("{topic}.jsonl"))).expect("file")
    };
    for topic in TOPICS {
        assert_eq!(read("a", topic), read("b", topic), "{topic}");
        assert_eq!(read("a", topic), read("paced", topic), "{topic}");
    }
    assert_ne!(read("a", "listen_events"), read("other", "listen_events"));
}

#[test]
fn eventsim_levels_change_through_status_changes_and_cancellations_end_users() {
    let project = Project::empty();
    project
        .run(&[
            "eventsim",
            "--users",
            "2500",
            "--from",
            "2026-11-20",
            "--to",
            "2026-11-24",
            "--seed",
            "21",
            "--out",
            "events",
        ])
        .expect_code(0);
    let dir = project.path().join("events");
    let views = read_topic(&dir, "page_view_events");
    let changes: HashSet<(u64, u64)> = read_topic(&dir, "status_change_events")
        .iter()
        .map(|e| {
            (
                e["sessionId"].as_u64().unwrap(),
                e["itemInSession"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut by_user: HashMap<u64, Vec<&serde_json::Value>> = HashMap::new();
    for v in &views {
        if let Some(user) = v["userId"].as_u64() {
            by_user.entry(user).or_default().push(v);
        }
    }
    let mut level_changes = 0;
    let mut cancellations = 0;
    for (user, views) in &by_user {
        for w in views.windows(2) {
            if w[0]["level"] != w[1]["level"] {
                level_changes += 1;
                let page = w[0]["page"].as_str().unwrap();
                assert!(
                    matches!(page, "Submit Upgrade" | "Submit Downgrade"),
                    "user {user}: level changed after {page}"
                );
                let key = (
                    w[0]["sessionId"].as_u64().unwrap(),
                    w[0]["itemInSession"].as_u64().unwrap(),
                );
                assert!(
                    changes.contains(&key),
                    "user {user}: no status change recorded"
                );
            }
        }
        if let Some(pos) = views
            .iter()
            .position(|v| v["page"] == "Cancellation Confirmation")
        {
            cancellations += 1;
            assert_eq!(
                pos,
                views.len() - 1,
                "user {user} came back after cancelling"
            );
        }
    }
    assert!(
        level_changes > 0 && cancellations > 0,
        "{level_changes} {cancellations}"
    );
}

#[test]
fn eventsim_count_sink_prints_a_json_summary() {
    let project = Project::empty();
    // A day of 500 users, counted.
    let count = |extra: &[&str]| {
        let mut args = vec![
            "eventsim",
            "--users",
            "500",
            "--from",
            "2026-11-23T00:00:00Z",
            "--to",
            "2026-11-24T00:00:00Z",
            "--sink",
            "count",
            "--json",
        ];
        args.extend_from_slice(extra);
        let run = project.run(&args);
        run.expect_code(0);
        run.json()
    };
    let summary = count(&[]);
    let total: u64 = TOPICS
        .iter()
        .map(|t| summary["events"][t].as_u64().expect("count"))
        .sum();
    assert_eq!(summary["total"].as_u64(), Some(total));
    assert!(total > 500, "{summary}");
    assert_eq!(summary["initial_users"], 500);
    assert!(summary["users"].as_u64().unwrap() >= 500);
    assert!(summary["events_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["interrupted"], false);
    assert!(!project.path().join("events").exists());

    // Sessions every day instead of every week: a busier service from the same users.
    let busier = count(&["--session-interval", "86400"])["total"]
        .as_u64()
        .unwrap();
    assert!(busier > 3 * total, "{busier} events against {total}");
}

#[test]
fn eventsim_stops_on_ctrl_c_with_complete_files_and_says_so() {
    let project = Project::empty();
    // Four days at 3600x would take 96 s.
    let child = project
        .command(&[
            "eventsim",
            "--users",
            "2000",
            "--from",
            "2026-11-20",
            "--to",
            "2026-11-24",
            "--speed",
            "3600x",
            "--out",
            "events",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let listens = project.path().join("events/listen_events.jsonl");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::metadata(&listens)
            .is_ok_and(|m| m.len() > 0)),
        "no events flushed while pacing"
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait");
    assert!(!process_alive(pid as i32));
    let run = crate::util::Run { output };
    run.expect_code(0);
    assert!(run.stdout().contains("interrupted"), "{}", run.stdout());
    // Every line written is whole.
    for topic in TOPICS {
        read_topic(&project.path().join("events"), topic);
    }
}

#[test]
fn eventsim_refuses_bad_input_with_exit_2() {
    let project = Project::empty();
    for (args, message) in [
        (
            vec!["eventsim", "--from", "yesterday", "--sink", "count"],
            "--from \"yesterday\"",
        ),
        (
            vec![
                "eventsim",
                "--from",
                "2026-11-22",
                "--to",
                "2026-11-21",
                "--sink",
                "count",
            ],
            "the time range is empty",
        ),
        (vec!["eventsim", "--from", "2026-11-22"], "pass --out DIR"),
        (
            vec!["eventsim", "--speed", "quick", "--sink", "count"],
            "speed must be fast, realtime or a factor",
        ),
        (
            vec![
                "eventsim",
                "--growth-rate=-1",
                "--sink",
                "count",
                "--from",
                "2026-11-22",
            ],
            "growth rate",
        ),
        (
            vec![
                "eventsim",
                "--session-interval",
                "0",
                "--sink",
                "count",
                "--from",
                "2026-11-22",
            ],
            "--session-interval must be a number of seconds above 0",
        ),
    ] {
        let run = project.run(&args);
        run.expect_code(2);
        assert!(run.stderr().contains(message), "{args:?}: {}", run.stderr());
    }
}

/// Every event of the lake, per topic: rows and distinct event ids, read back from Parquet.
async fn lake_rows(dir: &Path) -> HashMap<String, (usize, HashSet<String>)> {
    let lake = orch_lake::Lake::open(&dir.display().to_string()).unwrap();
    let mut out = HashMap::new();
    for topic in orch_lake::Topic::ALL {
        let mut rows = 0;
        let mut ids = HashSet::new();
        for hour in lake.list_hours(topic).await.unwrap() {
            for batch in lake.read_hour(topic, hour).await.unwrap() {
                rows += batch.num_rows();
                let column = batch
                    .column_by_name(orch_lake::col::EVENT_ID)
                    .expect("event id column");
                let strings = column
                    .as_any()
                    .downcast_ref::<orch_lake::arrow_array::StringArray>()
                    .expect("event ids are strings");
                ids.extend(strings.iter().flatten().map(str::to_owned));
            }
        }
        out.insert(topic.to_string(), (rows, ids));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn eventsim_writes_the_lake_by_topic_and_hour_and_a_rerun_replaces_its_files() {
    let project = Project::empty();
    let lake = project.path().join("lake");
    let lake_arg = lake.display().to_string();
    let args = [
        "eventsim",
        "--users",
        "300",
        "--from",
        "2026-11-22-00:00",
        "--to",
        "2026-11-22-06:00",
        "--seed",
        "7",
        "--sink",
        "lake",
        "--lake",
        &lake_arg,
        "--json",
    ];
    let first = project.run(&args);
    first.expect_code(0);
    let summary = first.json();
    let rows = lake_rows(&lake).await;
    for topic in [
        "listen_events",
        "page_view_events",
        "auth_events",
        "status_change_events",
    ] {
        let expected = summary["events"][topic].as_u64().unwrap_or_default() as usize;
        let (count, ids) = &rows[topic];
        assert_eq!(
            *count, expected,
            "{topic}: rows in the lake vs the summary {summary}"
        );
        assert_eq!(ids.len(), *count, "{topic}: every row has its own event id");
    }
    assert!(rows["listen_events"].0 > 0, "some songs were played");
    let files = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = walk(dir)
            .into_iter()
            .filter(|p| p.ends_with(".parquet"))
            .collect();
        names.sort();
        names
    };
    let before = files(&lake);
    assert!(
        before
            .iter()
            .all(|f| f.contains("/date=2026-11-22/hour=0") && f.contains("eventsim-7-")),
        "{before:?}"
    );
    // The same events again: the same files, replaced, nothing doubled.
    project.run(&args).expect_code(0);
    assert_eq!(files(&lake), before);
    let again = lake_rows(&lake).await;
    for (topic, (count, _)) in &rows {
        assert_eq!(again[topic].0, *count, "{topic} doubled");
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}
