//! The analysts' warehouse (issue 17), end to end on the embedded defaults: eventsim writes
//! three hours into the lake, `orch materialize --select '*'` builds every model, and each mart
//! that answers at every grain (logins, plays, active users, top songs and artists, locations)
//! and the user segments are checked against counts computed here, in Rust, straight from the
//! lake's events (every count, stream hours and popularity score), and the dashboards' API
//! answers at the grain asked. Then the documentation: `orch assets show` prints a mart's
//! columns with their types (from the catalog written after the build), descriptions and
//! tests, and the staging loads carry the dbt source freshness check.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use orch_lake::arrow_array::cast::AsArray;
use orch_lake::arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use orch_lake::arrow_array::{Array, RecordBatch};
use orch_lake::{Hour, Lake, Topic};
use orch_warehouse::{DuckDbWarehouse, Warehouse};
use serde_json::Value;

use crate::util::Project;

const FROM: &str = "2026-11-22-22:00";
const TO: &str = "2026-11-23-00:00";
/// 2026-11-22 22:00 UTC: three hours across midnight (two days, in one ISO week).
const FIRST_HOUR_MS: i64 = 1_795_384_800_000;
const GRAINS: [&str; 6] = ["minute", "hour", "day", "week", "month", "year"];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// The start of `grain`'s period holding `ts`, as `YYYY-MM-DD HH:MM:SS` (weeks from Monday).
fn period(grain: &str, ts: DateTime<Utc>) -> String {
    let d = ts.date_naive();
    let start = match grain {
        "minute" => ts.with_second(0).unwrap().with_nanosecond(0).unwrap(),
        "hour" => Utc.from_utc_datetime(&d.and_hms_opt(ts.hour(), 0, 0).unwrap()),
        "day" => Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap()),
        "week" => Utc.from_utc_datetime(
            &(d - chrono::Days::new(u64::from(d.weekday().num_days_from_monday())))
                .and_hms_opt(0, 0, 0)
                .unwrap(),
        ),
        "month" => Utc
            .with_ymd_and_hms(d.year(), d.month(), 1, 0, 0, 0)
            .unwrap(),
        "year" => Utc.with_ymd_and_hms(d.year(), 1, 1, 0, 0, 0).unwrap(),
        other => panic!("grain {other}"),
    };
    start.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// One event of the lake, as much of it as the checks need.
#[derive(Debug, Clone)]
struct Event {
    ts: DateTime<Utc>,
    user: Option<i64>,
    session: i64,
    registration: Option<i64>,
    text: BTreeMap<&'static str, Option<String>>,
    success: Option<bool>,
    /// The song's length in seconds (listens; `NextSong` page views).
    duration: Option<f64>,
}

fn events(lake: &Lake, topic: Topic) -> Vec<Event> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let batches: Vec<RecordBatch> = rt().block_on(async {
        let mut all = Vec::new();
        for h in 0..3 {
            let hour = Hour::from_ts_ms(FIRST_HOUR_MS + h * 3_600_000).unwrap();
            all.extend(lake.read_hour(topic, hour).await.unwrap());
        }
        all
    });
    for b in batches {
        let ts = b.column_by_name("ts").unwrap();
        let ts = ts.as_primitive::<TimestampMillisecondType>();
        let reg = b.column_by_name("registration").unwrap();
        let reg = reg.as_primitive::<TimestampMillisecondType>();
        let users = b.column_by_name("userId").unwrap();
        let users = users.as_primitive::<Int64Type>();
        let sessions = b.column_by_name("sessionId").unwrap();
        let sessions = sessions.as_primitive::<Int64Type>();
        let success = b.column_by_name("success").map(|c| c.as_boolean().clone());
        let durations = b
            .column_by_name("duration")
            .map(|c| c.as_primitive::<Float64Type>().clone());
        let ids = b.column_by_name("_event_id").unwrap();
        let ids = ids.as_string::<i32>();
        let text = |name: &str, i: usize| {
            b.column_by_name(name).and_then(|c| {
                let c = c.as_string::<i32>();
                (!c.is_null(i)).then(|| c.value(i).to_owned())
            })
        };
        for i in 0..b.num_rows() {
            if !seen.insert(ids.value(i).to_owned()) {
                continue;
            }
            let mut t = BTreeMap::new();
            for name in ["artist", "song", "state", "level"] {
                t.insert(name, text(name, i));
            }
            out.push(Event {
                ts: DateTime::from_timestamp_millis(ts.value(i)).unwrap(),
                user: (!users.is_null(i)).then(|| users.value(i)),
                session: sessions.value(i),
                registration: (!reg.is_null(i)).then(|| reg.value(i)),
                text: t,
                success: success.as_ref().map(|s| s.value(i)),
                duration: durations
                    .as_ref()
                    .and_then(|d| (!d.is_null(i)).then(|| d.value(i))),
            });
        }
    }
    out
}

fn query(db: &std::path::Path, sql: &str) -> Vec<Vec<Value>> {
    rt().block_on(DuckDbWarehouse::new(db).query(sql))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows
}

/// `(grain, period) -> numbers` from a mart.
fn by_period(
    db: &std::path::Path,
    mart: &str,
    columns: &str,
) -> BTreeMap<(String, String), Vec<i64>> {
    query(
        db,
        &format!(
            "select grain, strftime(period_start, '%Y-%m-%d %H:%M:%S'), {columns} from marts.{mart}"
        ),
    )
    .into_iter()
    .map(|r| {
        (
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
            ),
            r[2..].iter().map(|v| v.as_i64().unwrap()).collect(),
        )
    })
    .collect()
}

/// `key -> values` from a query whose last `n` columns are numbers (read as `f64`) and whose
/// other columns, joined by `|`, are the key.
fn numbers(db: &std::path::Path, sql: &str, n: usize) -> BTreeMap<String, Vec<f64>> {
    query(db, sql)
        .into_iter()
        .map(|r| {
            let (key, values) = r.split_at(r.len() - n);
            let key: Vec<String> = key
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect();
            let values = values
                .iter()
                .map(|v| {
                    v.as_f64()
                        .unwrap_or_else(|| panic!("{sql}: {v} is not a number"))
                })
                .collect();
            (key.join("|"), values)
        })
        .collect()
}

/// `got` equals `want` key for key, each number within `tolerance`.
fn assert_close(
    got: &BTreeMap<String, Vec<f64>>,
    want: &BTreeMap<String, Vec<f64>>,
    tolerance: f64,
    what: &str,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: the same rows"
    );
    for (key, values) in got {
        let expected = &want[key];
        assert_eq!(values.len(), expected.len(), "{what} {key}");
        for (g, w) in values.iter().zip(expected) {
            assert!(
                (g - w).abs() <= tolerance,
                "{what} {key}: {values:?}, computed from the lake {expected:?}"
            );
        }
    }
}

/// The ten largest counts per (grain, period) of `key`'s values.
fn top_ten(
    events: &[Event],
    key: impl Fn(&Event) -> Option<String>,
) -> BTreeMap<(String, String), Vec<i64>> {
    let mut counts: BTreeMap<(String, String), BTreeMap<String, i64>> = BTreeMap::new();
    for e in events {
        let Some(k) = key(e) else { continue };
        for g in GRAINS {
            *counts
                .entry((g.to_owned(), period(g, e.ts)))
                .or_default()
                .entry(k.clone())
                .or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(p, c)| {
            let mut v: Vec<i64> = c.into_values().collect();
            v.sort_unstable_by(|a, b| b.cmp(a));
            v.truncate(10);
            (p, v)
        })
        .collect()
}

#[test]
fn every_grain_and_the_segments_match_the_lake_and_every_mart_is_documented() {
    let dbt = crate::dbt::dbt();
    let project = Project::empty();
    project.write(
        "orch.toml",
        &format!(
            "[platform]\ndbt_project = {:?}\ndbt_executable = {:?}\nautomation = false\n",
            crate::dbt::repo().join("dbt").display().to_string(),
            dbt.display().to_string()
        ),
    );
    project
        .run(&[
            "eventsim",
            "--sink",
            "lake",
            "--users",
            "800",
            "--from",
            FROM,
            "--to",
            "2026-11-23-01:00",
            "--seed",
            "17",
        ])
        .expect_code(0);
    project
        .run(&["materialize", "--select", "*", "--from", FROM, "--to", TO])
        .expect_code(0);
    let lake = Lake::open(project.path().join(".orch/lake").to_str().unwrap()).unwrap();
    let db = project.path().join(".orch/warehouse.duckdb");
    let listens = events(&lake, Topic::ListenEvents);
    let views = events(&lake, Topic::PageViewEvents);
    let auth = events(&lake, Topic::AuthEvents);
    let status = events(&lake, Topic::StatusChangeEvents);
    assert!(
        !listens.is_empty() && !auth.is_empty(),
        "eventsim wrote listens and log-ins"
    );

    // Logins: successful, failed, distinct users who logged in.
    let mut logins: BTreeMap<(String, String), (i64, i64, BTreeSet<i64>)> = BTreeMap::new();
    for e in &auth {
        for g in GRAINS {
            let p = logins.entry((g.to_owned(), period(g, e.ts))).or_default();
            if e.success == Some(true) {
                p.0 += 1;
                p.2.extend(e.user);
            } else {
                p.1 += 1;
            }
        }
    }
    let want: BTreeMap<_, _> = logins
        .into_iter()
        .map(|(k, (ok, failed, users))| (k, vec![ok, failed, users.len() as i64]))
        .collect();
    assert_eq!(
        by_period(&db, "mart_logins", "logins, failed_logins, users_logged_in"),
        want,
        "mart_logins"
    );

    // Plays: plays, listeners, sessions.
    /// Plays, listeners and sessions (session id, user id) of a period.
    type Played = (i64, BTreeSet<i64>, BTreeSet<(i64, Option<i64>)>);
    let mut plays: BTreeMap<(String, String), Played> = BTreeMap::new();
    for e in &listens {
        for g in GRAINS {
            let p = plays.entry((g.to_owned(), period(g, e.ts))).or_default();
            p.0 += 1;
            p.1.extend(e.user);
            p.2.insert((e.session, e.user));
        }
    }
    let want: BTreeMap<_, _> = plays
        .into_iter()
        .map(|(k, (n, users, sessions))| (k, vec![n, users.len() as i64, sessions.len() as i64]))
        .collect();
    assert_eq!(
        by_period(&db, "mart_plays", "plays, listeners, sessions"),
        want,
        "mart_plays"
    );

    // Active users: distinct users with a page view.
    let mut active: BTreeMap<(String, String), BTreeSet<i64>> = BTreeMap::new();
    for e in views.iter().filter(|e| e.user.is_some()) {
        for g in GRAINS {
            active
                .entry((g.to_owned(), period(g, e.ts)))
                .or_default()
                .extend(e.user);
        }
    }
    let got: BTreeMap<_, _> = by_period(&db, "mart_active_users", "active_users")
        .into_iter()
        .filter(|(_, v)| v[0] > 0)
        .collect();
    let want: BTreeMap<_, _> = active
        .into_iter()
        .map(|(k, u)| (k, vec![u.len() as i64]))
        .collect();
    assert_eq!(got, want, "mart_active_users");

    // Every column of mart_active_users, and the stream hours of mart_plays: paid and free
    // users among the active ones (their level at the page view), listeners (distinct users
    // with a play) and their stream hours; a period with plays but no page view counts too.
    #[derive(Default)]
    struct Activity {
        active: BTreeSet<i64>,
        paid: BTreeSet<i64>,
        free: BTreeSet<i64>,
        listeners: BTreeSet<i64>,
        seconds: f64,
    }
    let mut activity: BTreeMap<String, Activity> = BTreeMap::new();
    let mut streamed: BTreeMap<String, f64> = BTreeMap::new();
    for g in GRAINS {
        for e in &views {
            let Some(u) = e.user else { continue };
            let a = activity
                .entry(format!("{g}|{}", period(g, e.ts)))
                .or_default();
            a.active.insert(u);
            match e.text["level"].as_deref() {
                Some("paid") => a.paid.insert(u),
                Some("free") => a.free.insert(u),
                other => panic!("level {other:?}"),
            };
        }
        for e in &listens {
            let key = format!("{g}|{}", period(g, e.ts));
            *streamed.entry(key.clone()).or_default() += e.duration.unwrap();
            let Some(u) = e.user else { continue };
            let a = activity.entry(key).or_default();
            a.listeners.insert(u);
            a.seconds += e.duration.unwrap();
        }
    }
    let want: BTreeMap<String, Vec<f64>> = activity
        .into_iter()
        .map(|(k, a)| {
            let n = |s: &BTreeSet<i64>| s.len() as f64;
            let row = vec![
                n(&a.active),
                n(&a.paid),
                n(&a.free),
                n(&a.listeners),
                a.seconds / 3600.0,
            ];
            (k, row)
        })
        .collect();
    let got = numbers(
        &db,
        "select grain, strftime(period_start, '%Y-%m-%d %H:%M:%S'), active_users, paid_users, \
         free_users, listeners, cast(stream_hours as double) from marts.mart_active_users",
        5,
    );
    assert_close(&got, &want, 1e-6, "mart_active_users");
    let want: BTreeMap<String, Vec<f64>> = streamed
        .into_iter()
        .map(|(k, seconds)| (k, vec![seconds / 3600.0]))
        .collect();
    let got = numbers(
        &db,
        "select grain, strftime(period_start, '%Y-%m-%d %H:%M:%S'), cast(stream_hours as double) \
         from marts.mart_plays",
        1,
    );
    assert_close(&got, &want, 1e-6, "mart_plays stream_hours");

    // The dashboards' API reads the grain asked from the real marts, through the web layer
    // (which wraps the source in its last-good cache): `?grain=hour` answers the lake's plays
    // per hour, `?grain=minute` per minute (the latest 120), not the day's.
    let config = orch::config::Config::load(project.path()).unwrap();
    let platform = orch_platform::PlatformConfig::from_config(&config).unwrap();
    let source = orch_platform::marts::WarehouseMarts::for_platform(&platform).unwrap();
    let series = |grain: &str| -> BTreeMap<String, f64> {
        let mut plays: BTreeMap<String, f64> = BTreeMap::new();
        for e in &listens {
            *plays.entry(period(grain, e.ts)).or_default() += 1.0;
        }
        plays
    };
    let answered = rt().block_on(async {
        let storage = crate::util::db::sqlite().await;
        let state = orch_web::AppState::new(
            storage.storage.clone(),
            std::sync::Arc::new(orch::AssetGraph::new(vec![]).unwrap()),
            vec![],
            std::sync::Arc::new(source),
            orch_web::Security::new(None),
        );
        let mut answered = BTreeMap::new();
        for grain in ["minute", "hour", "day"] {
            let (status, body) = crate::web::with_host(
                &state,
                "GET",
                &format!("/api/v1/marts/plays?grain={grain}"),
                "127.0.0.1:3000",
                &[],
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let json: Value = serde_json::from_str(&body).unwrap();
            let rows: BTreeMap<String, f64> = json["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_f64().unwrap()))
                .collect();
            answered.insert(grain, rows);
        }
        storage.cleanup().await;
        answered
    });
    assert_eq!(answered["hour"], series("hour"), "?grain=hour");
    assert_eq!(answered["hour"].len(), 3, "three hours");
    assert_eq!(answered["day"], series("day"), "?grain=day");
    let minutes: BTreeMap<String, f64> = series("minute").into_iter().rev().take(120).collect();
    assert_eq!(
        answered["minute"], minutes,
        "?grain=minute: the latest 120 minutes"
    );

    // Top ten songs and artists of every period: the same play counts in rank order.
    let ranked = |mart: &str| {
        let mut m: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
        for r in query(
            &db,
            &format!(
                "select grain, strftime(period_start, '%Y-%m-%d %H:%M:%S'), plays from marts.{mart} order by grain, period_start, rank_in_period"
            ),
        ) {
            m.entry((
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
            ))
            .or_default()
            .push(r[2].as_i64().unwrap());
        }
        m
    };
    let song = |e: &Event| Some(format!("{:?}|{:?}", e.text["artist"], e.text["song"]));
    assert_eq!(
        ranked("mart_top_songs_by_period"),
        top_ten(&listens, song),
        "mart_top_songs_by_period"
    );
    let artist = |e: &Event| e.text["artist"].clone();
    assert_eq!(
        ranked("mart_top_artists_by_period"),
        top_ten(&listens, artist),
        "mart_top_artists_by_period"
    );
    let leaders = query(
        &db,
        "select count(*) from marts.mart_top_songs_by_period where rank_in_period = 1 and popularity_score <> 100 \
         and listeners = (select max(listeners) from marts.mart_top_songs_by_period t where t.grain = mart_top_songs_by_period.grain and t.period_start = mart_top_songs_by_period.period_start)",
    );
    assert_eq!(
        leaders[0][0],
        serde_json::json!(0),
        "a leader in plays and listeners scores 100"
    );

    // Every row of the top songs and artists: its plays, listeners, stream hours and
    // popularity score (macros/grains.sql: 60 x plays / the period's most plays + 40 x
    // listeners / the period's most listeners, over every song or artist of the period,
    // rounded to 2 places), recomputed from the lake's events.
    let popularity = |key: &dyn Fn(&Event) -> String| {
        /// Plays, listeners and seconds played of a song or artist in a period.
        type Played = (i64, BTreeSet<i64>, f64);
        let mut per: BTreeMap<String, BTreeMap<String, Played>> = BTreeMap::new();
        for e in &listens {
            for g in GRAINS {
                let p = per
                    .entry(format!("{g}|{}", period(g, e.ts)))
                    .or_default()
                    .entry(key(e))
                    .or_default();
                p.0 += 1;
                p.1.extend(e.user);
                p.2 += e.duration.unwrap();
            }
        }
        let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (period, items) in per {
            let most_plays = items.values().map(|p| p.0).max().unwrap() as f64;
            let most_listeners = items.values().map(|p| p.1.len()).max().unwrap() as f64;
            for (item, (plays, listeners, seconds)) in items {
                let (plays, listeners) = (plays as f64, listeners.len() as f64);
                let score = 60.0 * plays / most_plays
                    + if most_listeners > 0.0 {
                        40.0 * listeners / most_listeners
                    } else {
                        0.0
                    };
                out.insert(
                    format!("{period}|{item}"),
                    vec![plays, listeners, seconds / 3600.0, score],
                );
            }
        }
        out
    };
    let name = |v: &Option<String>| v.clone().unwrap_or_default();
    let songs =
        popularity(&|e: &Event| format!("{}|{}", name(&e.text["artist"]), name(&e.text["song"])));
    let artists = popularity(&|e: &Event| name(&e.text["artist"]));
    for (mart, item, all) in [
        ("mart_top_songs_by_period", "artist, song", &songs),
        ("mart_top_artists_by_period", "artist", &artists),
    ] {
        let got = numbers(
            &db,
            &format!(
                "select grain, strftime(period_start, '%Y-%m-%d %H:%M:%S'), {item}, plays, listeners, \
                 cast(stream_hours as double), cast(popularity_score as double) from marts.{mart}"
            ),
            4,
        );
        assert!(got.len() > 100, "{mart}: {} rows", got.len());
        let want: BTreeMap<String, Vec<f64>> = got
            .keys()
            .map(|k| {
                let row = all
                    .get(k)
                    .unwrap_or_else(|| panic!("{mart}: {k} is not in the lake"));
                (k.clone(), row.clone())
            })
            .collect();
        // Rounded to 2 places by the mart: within half a hundredth of the exact score.
        assert_close(&got, &want, 0.005 + 1e-9, mart);
    }

    // Plays per state.
    let mut states: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut state_hours: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in &listens {
        let Some(state) = &e.text["state"] else {
            continue;
        };
        for g in GRAINS {
            let p = format!("{g}|{}", period(g, e.ts));
            state_hours
                .entry(format!("{p}|{state}"))
                .or_insert_with(|| vec![0.0])[0] += e.duration.unwrap() / 3600.0;
            *states.entry((p, state.clone())).or_default() += 1;
        }
    }
    let got: BTreeMap<(String, String), i64> = query(
        &db,
        "select grain || '|' || strftime(period_start, '%Y-%m-%d %H:%M:%S'), state, plays from marts.mart_locations_by_period",
    )
    .into_iter()
    .map(|r| {
        (
            (r[0].as_str().unwrap().to_owned(), r[1].as_str().unwrap().to_owned()),
            r[2].as_i64().unwrap(),
        )
    })
    .collect();
    assert_eq!(got, states, "mart_locations_by_period");
    let got = numbers(
        &db,
        "select grain, strftime(period_start, '%Y-%m-%d %H:%M:%S'), state, \
         cast(stream_hours as double) from marts.mart_locations_by_period",
        1,
    );
    assert_close(
        &got,
        &state_hours,
        1e-6,
        "mart_locations_by_period stream_hours",
    );

    // Segments, by the rule written in the model, as of the latest event with a user id.
    let with_user: Vec<&Event> = views
        .iter()
        .chain(&listens)
        .chain(&auth)
        .filter(|e| e.user.is_some())
        .collect();
    let as_of = with_user.iter().map(|e| e.ts).max().unwrap();
    let week = chrono::Duration::days(7);
    // Per user: registration, first and last event, days active and plays in the last 7 days.
    #[derive(Default)]
    struct User {
        registration: Option<i64>,
        first_seen: Option<DateTime<Utc>>,
        last_seen: Option<DateTime<Utc>>,
        days: BTreeSet<chrono::NaiveDate>,
        plays_7: i64,
    }
    // The users of dim_users: those with a page view, a play or a level change.
    let mut users: BTreeMap<i64, User> = BTreeMap::new();
    for e in views.iter().chain(&listens).chain(&status) {
        if let Some(u) = e.user {
            let user = users.entry(u).or_default();
            if e.registration.is_some() {
                user.registration = e.registration;
            }
        }
    }
    for e in &with_user {
        let Some(u) = users.get_mut(&e.user.unwrap()) else {
            continue;
        };
        u.last_seen = u.last_seen.max(Some(e.ts));
        u.first_seen = Some(u.first_seen.map_or(e.ts, |t| t.min(e.ts)));
        if as_of - e.ts < week {
            u.days.insert(e.ts.date_naive());
        }
    }
    for e in listens.iter().filter(|e| as_of - e.ts < week) {
        if let Some(u) = e.user.and_then(|u| users.get_mut(&u)) {
            u.plays_7 += 1;
        }
    }
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for u in users.values() {
        let (last_seen, days, plays_7) = (&u.last_seen, &u.days, &u.plays_7);
        let registered = u
            .registration
            .and_then(DateTime::from_timestamp_millis)
            .or(u.first_seen)
            .unwrap_or(as_of);
        let segment = match last_seen {
            None => "dormant",
            Some(t) if as_of - *t >= week => "dormant",
            _ if as_of - registered < week => "new",
            _ if *plays_7 >= 100 => "power",
            _ if days.len() >= 3 => "regular",
            _ => "casual",
        };
        *want.entry(segment.to_owned()).or_default() += 1;
    }
    let got: BTreeMap<String, i64> = query(
        &db,
        "select segment, count(*) from marts.mart_user_segments group by 1",
    )
    .into_iter()
    .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
    .collect();
    assert_eq!(got, want, "mart_user_segments");

    // Documentation: the catalog was written after the build, and `orch assets show` prints a
    // mart's columns with types, descriptions and tests.
    assert!(
        project
            .path()
            .join(".orch/dbt/target/catalog.json")
            .is_file(),
        "catalog.json after the build"
    );
    let shown = project
        .run(&["assets", "show", "mart_user_segments"])
        .expect_code(0)
        .stdout();
    for text in [
        "Users segmented by activity and engagement",
        "segment  VARCHAR",
        "dormant, new, power, regular or casual",
        "tests: accepted_values",
        "plays_last_7  BIGINT",
        "upstream    dim_users, fact_auth, fact_listens, fact_page_views",
    ] {
        assert!(shown.contains(text), "`{text}` in:\n{shown}");
    }
    // The freshness checks ran after every load: the listens and page views (in every hour)
    // were just ingested, so they pass; a topic's table still empty when an hour without its
    // events is loaded warns instead ("no rows loaded yet").
    let runs = project
        .run(&["runs", "list", "--json"])
        .expect_code(0)
        .json();
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    let log = project
        .run(&["runs", "show", &run_id])
        .expect_code(0)
        .stdout();
    for topic in ["listen_events", "page_view_events"] {
        let passed = log
            .lines()
            .filter(|l| l.contains(&format!("staging/{topic}[")) && l.contains("freshness passed"))
            .count();
        assert_eq!(passed, 3, "{topic}: {log}");
    }
    let staging = project
        .run(&["assets", "show", "staging/auth_events", "--json"])
        .expect_code(0)
        .json();
    let freshness = staging["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "freshness")
        .unwrap_or_else(|| panic!("a freshness check: {staging}"));
    assert!(
        freshness["description"]
            .as_str()
            .unwrap()
            .contains("warn after 2 h, error after 6 h"),
        "{freshness}"
    );
}
