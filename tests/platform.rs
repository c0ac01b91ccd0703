//! The platform end to end on the embedded defaults (local lake, DuckDB, dbt-duckdb): eventsim
//! writes hours of events into the lake, `orch materialize --select '*'` observes the raw
//! hours, loads them into the warehouse and builds every dbt model, and the marts' numbers are
//! checked against counts computed here from the events in the lake. Then a late file for a
//! loaded hour: the daemon's lake sensor re-materializes that hour and the marts count it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use orch_lake::arrow_array::cast::AsArray;
use orch_lake::arrow_array::types::{Float64Type, Int64Type};
use orch_lake::arrow_array::{Array, RecordBatch};
use orch_lake::{BatchBuilder, FileName, Hour, Lake, Lineage, Topic, decode};
use orch_warehouse::{DuckDbWarehouse, Warehouse};
use serde_json::Value;

use crate::util::{Project, wait_until};

// US afternoon (eventsim's users live in US time zones and sleep at night).
const FROM: &str = "2026-11-22-18:00";
const TO: &str = "2026-11-22-20:00";
const LATE_HOUR: &str = "2026-11-22-19:00";
/// 2026-11-22 18:00 UTC.
const FIRST_HOUR_MS: i64 = 1_795_370_400_000;

/// The three hours a test generates, from the first one's start (ms since the epoch).
#[derive(Clone, Copy)]
struct Hours {
    first_ms: i64,
}

impl Hours {
    const FIXED: Hours = Hours {
        first_ms: FIRST_HOUR_MS,
    };

    fn start(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.first_ms).unwrap()
    }

    fn date(self) -> String {
        self.start().format("%Y-%m-%d").to_string()
    }

    fn first_hour_of_day(self) -> i64 {
        i64::from(chrono::Timelike::hour(&self.start()))
    }

    /// The partition key of hour `h` (0, 1 or 2).
    fn key(self, h: i64) -> String {
        (self.start() + chrono::Duration::hours(h))
            .format("%Y-%m-%d-%H:00")
            .to_string()
    }
}

fn platform_project() -> Project {
    let dbt = crate::dbt::dbt();
    let project = Project::empty();
    project.write(
        "orch.toml",
        &format!(
            "[platform]\ndbt_project = {:?}\ndbt_executable = {:?}\nsensor_interval_secs = 1\nlate_files_lookback_hours = 1000000\nautomation = false\n",
            crate::dbt::repo().join("dbt").display().to_string(),
            dbt.display().to_string()
        ),
    );
    project
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// Every row of `topic` in the lake over the three hours, one batch list.
fn lake_rows(lake: &Lake, topic: Topic, w: Hours) -> Vec<RecordBatch> {
    rt().block_on(async {
        let mut all = Vec::new();
        for h in 0..3 {
            let hour = Hour::from_ts_ms(w.first_ms + h * 3_600_000).unwrap();
            all.extend(lake.read_hour(topic, hour).await.unwrap());
        }
        all
    })
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let col = batch.column_by_name(name).unwrap();
    let col = col.as_string::<i32>();
    (0..col.len())
        .map(|i| (!col.is_null(i)).then(|| col.value(i).to_owned()))
        .collect()
}

fn user_ids(batch: &RecordBatch) -> Vec<Option<i64>> {
    let col = batch.column_by_name("userId").unwrap();
    let col = col.as_primitive::<Int64Type>();
    (0..col.len())
        .map(|i| (!col.is_null(i)).then(|| col.value(i)))
        .collect()
}

fn floats(batch: &RecordBatch, name: &str) -> Vec<f64> {
    let col = batch.column_by_name(name).unwrap();
    let col = col.as_primitive::<Float64Type>();
    (0..col.len()).map(|i| col.value(i)).collect()
}

/// What the marts must say, computed from the lake's events.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    plays_by_song: BTreeMap<(String, String), i64>,
    plays_by_city: BTreeMap<(String, String), i64>,
    active_users: usize,
    active_by_hour: BTreeMap<i64, usize>,
    listeners: usize,
    stream_hours: f64,
}

fn expected(lake: &Lake, w: Hours) -> Expected {
    let mut e = Expected::default();
    let mut listeners = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for batch in lake_rows(lake, Topic::ListenEvents, w) {
        let ids = strings(&batch, "_event_id");
        let artists = strings(&batch, "artist");
        let songs = strings(&batch, "song");
        let users = user_ids(&batch);
        let cities = strings(&batch, "city");
        let states = strings(&batch, "state");
        let durations = floats(&batch, "duration");
        for i in 0..batch.num_rows() {
            if !seen.insert(ids[i].clone().expect("eventsim sets event ids")) {
                continue;
            }
            let (Some(artist), Some(song)) = (&artists[i], &songs[i]) else {
                continue;
            };
            *e.plays_by_song
                .entry((artist.clone(), song.clone()))
                .or_default() += 1;
            if let (Some(city), Some(state)) = (&cities[i], &states[i]) {
                *e.plays_by_city
                    .entry((state.clone(), city.clone()))
                    .or_default() += 1;
            }
            if let Some(user) = users[i] {
                listeners.insert(user);
            }
            e.stream_hours += durations[i] / 3600.0;
        }
    }
    e.listeners = listeners.len();
    let mut active = BTreeSet::new();
    let mut by_hour: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for batch in lake_rows(lake, Topic::PageViewEvents, w) {
        let users = user_ids(&batch);
        let ts = batch.column_by_name("ts").unwrap();
        let ts = orch_lake::arrow_array::cast::as_primitive_array::<
            orch_lake::arrow_array::types::TimestampMillisecondType,
        >(ts);
        for (i, user) in users.into_iter().enumerate() {
            if let Some(user) = user {
                active.insert(user);
                let hour = (ts.value(i) - w.first_ms).div_euclid(3_600_000);
                by_hour.entry(hour).or_default().insert(user);
            }
        }
    }
    e.active_users = active.len();
    e.active_by_hour = by_hour.into_iter().map(|(h, u)| (h, u.len())).collect();
    e
}

fn query(db: &Path, sql: &str) -> Vec<Vec<Value>> {
    try_query(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn try_query(db: &Path, sql: &str) -> Result<Vec<Vec<Value>>, String> {
    let wh = DuckDbWarehouse::new(db);
    rt().block_on(wh.query(sql))
        .map(|r| r.rows)
        .map_err(|e| e.to_string())
}

fn marts(db: &Path, w: Hours) -> Expected {
    let date = w.date();
    let mut m = Expected::default();
    for row in query(
        db,
        &format!("select artist, song, plays from marts.mart_top_songs where date_key = '{date}'"),
    ) {
        m.plays_by_song.insert(
            (
                row[0].as_str().unwrap().into(),
                row[1].as_str().unwrap().into(),
            ),
            row[2].as_i64().unwrap(),
        );
    }
    for row in query(
        db,
        &format!(
            "select state, city, plays from marts.mart_location_analytics where date_key = '{date}'"
        ),
    ) {
        m.plays_by_city.insert(
            (
                row[0].as_str().unwrap().into(),
                row[1].as_str().unwrap().into(),
            ),
            row[2].as_i64().unwrap(),
        );
    }
    let day = query(
        db,
        "select active_users, listeners, stream_hours from marts.mart_active_users where grain = 'day'",
    );
    assert_eq!(day.len(), 1, "one day: {day:?}");
    m.active_users = day[0][0].as_i64().unwrap() as usize;
    m.listeners = day[0][1].as_i64().unwrap() as usize;
    m.stream_hours = day[0][2].as_f64().unwrap();
    for row in query(
        db,
        "select hour(period_start), active_users from marts.mart_active_users where grain = 'hour' order by 1",
    ) {
        m.active_by_hour.insert(
            row[0].as_i64().unwrap() - w.first_hour_of_day(),
            row[1].as_i64().unwrap() as usize,
        );
    }
    m
}

fn assert_marts_match(db: &Path, lake: &Lake) -> Expected {
    assert_marts_match_on(db, lake, Hours::FIXED)
}

fn assert_marts_match_on(db: &Path, lake: &Lake, w: Hours) -> Expected {
    let want = expected(lake, w);
    let got = marts(db, w);
    assert!(
        !want.plays_by_song.is_empty(),
        "eventsim generated no listens"
    );
    assert_eq!(got.plays_by_song, want.plays_by_song, "mart_top_songs");
    assert_eq!(
        got.plays_by_city, want.plays_by_city,
        "mart_location_analytics"
    );
    assert_eq!(got.active_users, want.active_users, "daily active users");
    assert_eq!(
        got.active_by_hour, want.active_by_hour,
        "hourly active users"
    );
    assert_eq!(got.listeners, want.listeners, "listeners");
    assert!(
        (got.stream_hours - want.stream_hours).abs() < 1e-6,
        "stream hours: {} vs {}",
        got.stream_hours,
        want.stream_hours
    );
    want
}

/// Late listens for 19:00, written as a file of their own.
fn write_late_listens(lake: &Lake, n: i64) {
    write_listens_at(
        lake,
        n,
        FIRST_HOUR_MS + 3_600_000,
        "Too Late",
        "late-arrivals",
    );
}

/// `n` listens of `song` a minute after `hour_ms`, as a file of their own.
fn write_listens_at(lake: &Lake, n: i64, hour_ms: i64, song: &str, file: &str) {
    let hour = Hour::from_ts_ms(hour_ms).unwrap();
    let mut b = BatchBuilder::new(Topic::ListenEvents);
    for i in 0..n {
        let json = format!(
            r#"{{"ts":{},"sessionId":900,"level":"paid","itemInSession":{i},"city":"Late Town","zip":"00001","state":"ZZ","lat":1.0,"lon":2.0,"userAgent":"UA","userId":999999,"firstName":"Late","lastName":"Comer","gender":"F","registration":1700000000000,"auth":"Logged In","artist":"The Late Band","song":"{song}","duration":180.0,"_event_id":"{file}-{i}"}}"#,
            hour_ms + 60_000 + i
        );
        let event = decode(Topic::ListenEvents, json.as_bytes()).unwrap();
        b.append(&event, &Lineage::generator("late", i, chrono::Utc::now()))
            .unwrap();
    }
    rt().block_on(lake.write_parquet(
        Topic::ListenEvents,
        hour,
        &FileName::new(file).unwrap(),
        &[b.finish()],
    ))
    .unwrap();
}

#[test]
fn eventsim_to_marts_matches_the_events_and_late_events_are_counted() {
    let project = platform_project();
    project
        .run(&[
            "eventsim",
            "--sink",
            "lake",
            "--users",
            "150",
            "--from",
            FROM,
            "--to",
            "2026-11-22-21:00",
            "--seed",
            "11",
        ])
        .expect_code(0);

    project
        .run(&["materialize", "--select", "*", "--from", FROM, "--to", TO])
        .expect_code(0);

    let lake = Lake::open(project.path().join(".orch/lake").to_str().unwrap()).unwrap();
    let db = project.path().join(".orch/warehouse.duckdb");
    let first = assert_marts_match(&db, &lake);

    // Every asset shows materialized, with row counts.
    let list = project
        .run(&["assets", "list", "--json"])
        .expect_code(0)
        .json();
    let assets = list.as_array().expect("a list of assets");
    for key in [
        "raw/listen_events",
        "staging/listen_events",
        "stg_listen_events",
        "fact_listens",
        "dim_users",
        "mart_top_songs",
        "mart_active_users",
    ] {
        let asset = assets
            .iter()
            .find(|a| a["key"] == key)
            .unwrap_or_else(|| panic!("{key} in {list}"));
        assert!(
            asset["last_materialization"]["row_count"]
                .as_i64()
                .unwrap_or(0)
                > 0,
            "{key}: {asset}"
        );
    }

    // An hour loaded again replaces itself: the marts do not change.
    project
        .run(&["materialize", "--select", "*", "--partition", LATE_HOUR])
        .expect_code(0);
    assert_eq!(assert_marts_match(&db, &lake), first);

    // Late events for 11:00: the daemon's lake sensor re-materializes the hour.
    write_late_listens(&lake, 7);
    let mut daemon = project
        .command(&["daemon"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the sensor's run to finish (the warehouse is not touched meanwhile: DuckDB
    // admits one process, and dbt in the daemon's run needs it).
    let mut outcome = None;
    let finished = wait_until(Duration::from_secs(300), || {
        let runs = project.run(&["runs", "list", "--json"]);
        if runs.code() != 0 {
            return false;
        }
        outcome = runs
            .json()
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["tags"].to_string().contains("lake_late_files"))
            .filter(|r| {
                matches!(
                    r["status"].as_str(),
                    Some("SUCCESS" | "FAILURE" | "CANCELED")
                )
            })
            .cloned();
        if outcome.is_none() {
            std::thread::sleep(Duration::from_millis(500));
        }
        outcome.is_some()
    });
    daemon.kill().ok();
    daemon.wait().ok();
    assert!(
        finished,
        "the lake sensor never re-materialized the late hour"
    );
    let run = outcome.unwrap();
    assert_eq!(run["partition_key"], LATE_HOUR, "{run}");
    assert_eq!(
        run["status"],
        "SUCCESS",
        "{run}\n{}",
        project
            .run(&["runs", "logs", run["run_id"].as_str().unwrap()])
            .stdout()
    );
    let late = query(
        &db,
        "select coalesce(sum(plays), 0) from marts.mart_top_songs where song = 'Too Late'",
    );
    assert_eq!(
        late[0][0],
        serde_json::json!(7),
        "the late listens are counted"
    );
    let after = assert_marts_match(&db, &lake);
    assert_eq!(
        after.plays_by_song.values().sum::<i64>(),
        first.plays_by_song.values().sum::<i64>() + 7
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if matches!(name.to_str(), Some("target" | "logs" | "dbt_packages")) {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn a_broken_dbt_model_fails_its_step_with_dbts_own_message() {
    let dbt = crate::dbt::dbt();
    let project = Project::empty();
    copy_dir(&crate::dbt::repo().join("dbt"), &project.path().join("dbt"));
    project.write(
        "dbt/models/marts/mart_top_songs.sql",
        "select no_such_column from {{ ref('fact_listens') }}\n",
    );
    project.write(
        "orch.toml",
        &format!(
            "[platform]\ndbt_project = \"dbt\"\ndbt_executable = {:?}\n",
            dbt.display().to_string()
        ),
    );
    project
        .run(&[
            "eventsim",
            "--sink",
            "lake",
            "--users",
            "50",
            "--from",
            FROM,
            "--to",
            "2026-11-22-19:00",
            "--seed",
            "3",
        ])
        .expect_code(0);
    let run = project.run(&["materialize", "--select", "*", "--partition", FROM]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("dbt build failed"), "{err}");
    assert!(err.contains("mart_top_songs"), "{err}");
    assert!(err.contains("no_such_column"), "dbt's own message: {err}");
    // The models before it were built and recorded; the broken one was not.
    let list = project.run(&["assets", "list", "--json"]).json();
    let state = |key: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["state"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(state("fact_listens"), "1 MATERIALIZED");
    let broken = state("mart_top_songs");
    assert!(!broken.contains("1 MATERIALIZED"), "{broken}");

    // A subset: one staging model. Its own tests run; a singular test that also reads
    // dim_users (not built by this step, nor upstream of it) does not, as it would with dbt's
    // default eager test selection.
    project
        .run(&[
            "materialize",
            "--select",
            "stg_status_change_events",
            "--partition",
            FROM,
        ])
        .expect_code(0);
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join(".orch/dbt/target/run_results.json")).unwrap(),
    )
    .unwrap();
    let ran: Vec<&str> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["unique_id"].as_str().unwrap())
        .collect();
    assert!(
        ran.contains(&"model.orch_platform.stg_status_change_events"),
        "{ran:?}"
    );
    assert!(
        ran.iter()
            .any(|id| id.starts_with("test.") && id.contains("stg_status_change_events")),
        "{ran:?}"
    );
    assert!(
        !ran.iter()
            .any(|id| id.contains("assert_level_changes_follow_status_events")),
        "{ran:?}"
    );

    // A broken contract fails its step with dbt's message: a mart's declared type no longer
    // matches what its SQL returns.
    let yml = project.path().join("dbt/models/marts/marts.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    let broken = text.replace(
        "      - name: sessions\n        data_type: int64\n",
        "      - name: sessions\n        data_type: date\n",
    );
    assert_ne!(broken, text, "mart_plays declares sessions as int64");
    std::fs::write(&yml, broken).unwrap();
    let run = project.run(&["materialize", "--select", "mart_plays", "--partition", FROM]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("dbt build failed"), "{err}");
    assert!(
        err.contains("mart_plays") && err.contains("enforced contract"),
        "dbt's own message: {err}"
    );
}

/// Whether the marts equal the lake's events over `w` now (the warehouse may be busy: then
/// not yet).
fn marts_match(db: &Path, lake: &Lake, w: Hours) -> bool {
    let want = expected(lake, w);
    match std::panic::catch_unwind(|| marts(db, w)) {
        Ok(got) => {
            got.plays_by_song == want.plays_by_song
                && got.plays_by_city == want.plays_by_city
                && got.active_users == want.active_users
                && got.active_by_hour == want.active_by_hour
                && got.listeners == want.listeners
        }
        Err(_) => false,
    }
}

fn plays_of(db: &Path, song: &str, date: &str) -> Option<i64> {
    try_query(
        db,
        &format!(
            "select coalesce(sum(plays), 0) from marts.mart_top_songs where song = '{song}' and date_key = '{date}'"
        ),
    )
    .ok()
    .and_then(|rows| rows.first().and_then(|r| r[0].as_i64()))
}

/// The platform on declarative automation, with no schedule and no `orch materialize`:
/// eventsim writes yesterday's 18:00 to 20:00 into the lake and a daemon runs; its lake sensor
/// observes the new hours, the staging loads and dbt models follow by their `eager`
/// conditions, and the marts come to equal the lake. Then late listens for a loaded hour, and
/// listens in the current hour (a partial hour): both reach the marts.
#[test]
fn marts_catch_up_on_automation_without_a_schedule() {
    let dbt = crate::dbt::dbt();
    let project = Project::empty();
    project.write(
        "orch.toml",
        &format!(
            "[platform]\ndbt_project = {:?}\ndbt_executable = {:?}\nsensor_interval_secs = 1\n\n[automation]\ninterval_secs = 0.5\n",
            crate::dbt::repo().join("dbt").display().to_string(),
            dbt.display().to_string()
        ),
    );
    let now = chrono::Utc::now();
    let yesterday = (now - chrono::Duration::days(1)).date_naive();
    let first = yesterday.and_hms_opt(18, 0, 0).unwrap().and_utc();
    let w = Hours {
        first_ms: first.timestamp_millis(),
    };
    project
        .run(&[
            "eventsim",
            "--sink",
            "lake",
            "--users",
            "150",
            "--from",
            &w.key(0),
            "--to",
            &w.key(3),
            "--seed",
            "11",
        ])
        .expect_code(0);
    let lake = Lake::open(project.path().join(".orch/lake").to_str().unwrap()).unwrap();
    let db = project.path().join(".orch/warehouse.duckdb");
    let mut daemon = project
        .command(&["daemon"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let logs = |project: &Project| {
        project
            .run(&["runs", "list", "--json"])
            .stdout()
            .chars()
            .take(4000)
            .collect::<String>()
    };
    let caught_up = wait_until(Duration::from_secs(600), || {
        let ok = db.exists() && marts_match(&db, &lake, w);
        if !ok {
            std::thread::sleep(Duration::from_secs(1));
        }
        ok
    });
    if !caught_up {
        daemon.kill().ok();
        daemon.wait().ok();
        panic!("the marts never caught up: {}", logs(&project));
    }

    // Late listens for the middle hour.
    write_listens_at(
        &lake,
        7,
        w.first_ms + 3_600_000,
        "Too Late",
        "late-arrivals",
    );
    let late = wait_until(Duration::from_secs(300), || {
        let ok = plays_of(&db, "Too Late", &w.date()) == Some(7) && marts_match(&db, &lake, w);
        if !ok {
            std::thread::sleep(Duration::from_secs(1));
        }
        ok
    });
    // Listens in the hour still open.
    let current = Hour::containing(chrono::Utc::now());
    let today = current.start().format("%Y-%m-%d").to_string();
    write_listens_at(
        &lake,
        5,
        current.start().timestamp_millis(),
        "Right Now",
        "now-listens",
    );
    let partial = late
        && wait_until(Duration::from_secs(300), || {
            let ok = plays_of(&db, "Right Now", &today) == Some(5);
            if !ok {
                std::thread::sleep(Duration::from_secs(1));
            }
            ok
        });
    let runs = project.run(&["runs", "list", "--json"]).json();
    daemon.kill().ok();
    daemon.wait().ok();
    assert!(
        late,
        "the late listens never reached the marts: {}",
        logs(&project)
    );
    assert!(
        partial,
        "the current hour never reached the marts: {}",
        logs(&project)
    );
    let runs = runs.as_array().unwrap();
    assert!(
        runs.iter()
            .all(|r| r["tags"]["orch/schedule"] != "hourly_pipeline"),
        "no schedule ran"
    );
    assert!(
        runs.iter()
            .any(|r| r["tags"].to_string().contains("orch/automation_tick")),
        "automation requested runs"
    );
    // Runs still going (the current hour is built again as it grows) are fine; none failed.
    assert!(
        runs.iter()
            .all(|r| !matches!(r["status"].as_str(), Some("FAILURE" | "CANCELED"))),
        "no run failed: {runs:?}"
    );
}
