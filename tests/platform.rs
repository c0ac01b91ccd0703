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

fn platform_project() -> Project {
    let dbt = crate::dbt::dbt();
    let project = Project::empty();
    project.write(
        "orch.toml",
        &format!(
            "[platform]\ndbt_project = {:?}\ndbt_executable = {:?}\nsensor_interval_secs = 1\nlate_files_lookback_hours = 1000000\n",
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
fn lake_rows(lake: &Lake, topic: Topic) -> Vec<RecordBatch> {
    rt().block_on(async {
        let mut all = Vec::new();
        for h in 0..3 {
            let hour = Hour::from_ts_ms(FIRST_HOUR_MS + h * 3_600_000).unwrap();
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

fn expected(lake: &Lake) -> Expected {
    let mut e = Expected::default();
    let mut listeners = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for batch in lake_rows(lake, Topic::ListenEvents) {
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
    for batch in lake_rows(lake, Topic::PageViewEvents) {
        let users = user_ids(&batch);
        let ts = batch.column_by_name("ts").unwrap();
        let ts = orch_lake::arrow_array::cast::as_primitive_array::<
            orch_lake::arrow_array::types::TimestampMillisecondType,
        >(ts);
        for (i, user) in users.into_iter().enumerate() {
            if let Some(user) = user {
                active.insert(user);
                let hour = (ts.value(i) - FIRST_HOUR_MS).div_euclid(3_600_000);
                by_hour.entry(hour).or_default().insert(user);
            }
        }
    }
    e.active_users = active.len();
    e.active_by_hour = by_hour.into_iter().map(|(h, u)| (h, u.len())).collect();
    e
}

fn query(db: &Path, sql: &str) -> Vec<Vec<Value>> {
    let wh = DuckDbWarehouse::new(db);
    rt().block_on(wh.query(sql))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows
}

fn marts(db: &Path) -> Expected {
    let mut m = Expected::default();
    for row in query(
        db,
        "select artist, song, plays from marts.mart_top_songs where date_key = '2026-11-22'",
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
        "select state, city, plays from marts.mart_location_analytics where date_key = '2026-11-22'",
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
            row[0].as_i64().unwrap() - 18,
            row[1].as_i64().unwrap() as usize,
        );
    }
    m
}

fn assert_marts_match(db: &Path, lake: &Lake) -> Expected {
    let want = expected(lake);
    let got = marts(db);
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
    let hour = Hour::from_ts_ms(FIRST_HOUR_MS + 3_600_000).unwrap();
    let mut b = BatchBuilder::new(Topic::ListenEvents);
    for i in 0..n {
        let json = format!(
            r#"{{"ts":{},"sessionId":900,"level":"paid","itemInSession":{i},"city":"Late Town","zip":"00001","state":"ZZ","lat":1.0,"lon":2.0,"userAgent":"UA","userId":999999,"firstName":"Late","lastName":"Comer","gender":"F","registration":1700000000000,"auth":"Logged In","artist":"The Late Band","song":"Too Late","duration":180.0,"_event_id":"late-{i}"}}"#,
            FIRST_HOUR_MS + 3_600_000 + 60_000 + i
        );
        let event = decode(Topic::ListenEvents, json.as_bytes()).unwrap();
        b.append(&event, &Lineage::generator("late", i, chrono::Utc::now()))
            .unwrap();
    }
    rt().block_on(lake.write_parquet(
        Topic::ListenEvents,
        hour,
        &FileName::new("late-arrivals").unwrap(),
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
}
