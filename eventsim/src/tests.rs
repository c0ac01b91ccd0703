//! The simulation as a whole: determinism, eventsim's JSON per topic, anonymous visitors,
//! ordering, levels, cancellations, popularity, the daily cycle, locations, ids, pacing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Timelike, Utc};

use crate::*;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

/// Friday to Monday, so that a weekend is in it.
fn config(seed: u64, users: u32) -> Config {
    let mut c = Config::new(
        seed,
        users,
        t("2026-11-20T00:00:00Z"),
        t("2026-11-23T00:00:00Z"),
    );
    c.songs = 3_000;
    c
}

fn generate(config: &Config) -> Vec<Event> {
    Simulation::new(config).expect("config").collect()
}

/// One sample shared by the tests that only read it: 600 users over three days, with enough
/// growth that new users (guests) arrive.
static SAMPLE: LazyLock<Vec<Event>> = LazyLock::new(|| {
    let mut c = config(7, 600);
    c.growth_rate = 40.0;
    generate(&c)
});

fn json_lines(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::to_json).collect()
}

fn keys(event: &Event) -> HashSet<String> {
    let value: serde_json::Value = serde_json::from_str(&event.to_json()).expect("json");
    value.as_object().expect("object").keys().cloned().collect()
}

const USER_FIELDS: [&str; 5] = ["userId", "firstName", "lastName", "gender", "registration"];
const DEVICE_FIELDS: [&str; 6] = ["city", "zip", "state", "lat", "lon", "userAgent"];

#[test]
fn the_sample_has_every_kind_of_event() {
    let mut counts = BTreeMap::new();
    for e in SAMPLE.iter() {
        *counts.entry(e.topic()).or_insert(0) += 1;
    }
    for topic in Topic::ALL {
        assert!(
            counts.get(&topic).copied().unwrap_or(0) > 0,
            "{topic}: {counts:?}"
        );
    }
    let pages: HashSet<Page> = SAMPLE
        .iter()
        .filter_map(|e| match e {
            Event::PageView(p) => Some(p.page),
            _ => None,
        })
        .collect();
    for page in [
        Page::Home,
        Page::NextSong,
        Page::Login,
        Page::Logout,
        Page::Register,
        Page::SubmitRegistration,
        Page::SubmitUpgrade,
        Page::ThumbsUp,
        Page::RollAdvert,
    ] {
        assert!(pages.contains(&page), "no {page} in {pages:?}");
    }
    assert!(counts[&Topic::ListenEvents] > counts[&Topic::AuthEvents] * 5);
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_others() {
    let a = json_lines(&generate(&config(11, 150)));
    let b = json_lines(&generate(&config(11, 150)));
    assert!(a.len() > 1_000, "{}", a.len());
    assert_eq!(a, b);
    let ids_a: Vec<EventId> = generate(&config(11, 150))
        .iter()
        .map(Event::event_id)
        .collect();
    let ids_b: Vec<EventId> = generate(&config(11, 150))
        .iter()
        .map(Event::event_id)
        .collect();
    assert_eq!(ids_a, ids_b);
    let c = json_lines(&generate(&config(12, 150)));
    assert_ne!(a, c);
    let ids_c: HashSet<EventId> = generate(&config(12, 150))
        .iter()
        .map(Event::event_id)
        .collect();
    assert!(
        ids_a.iter().all(|id| !ids_c.contains(id)),
        "ids differ between seeds"
    );
}

#[test]
fn a_longer_run_begins_with_the_events_of_a_shorter_one() {
    let long = json_lines(&generate(&config(5, 150)));
    let mut c = config(5, 150);
    c.end = t("2026-11-21T09:30:00Z");
    let short = json_lines(&generate(&c));
    assert!(!short.is_empty() && short.len() < long.len());
    assert_eq!(short[..], long[..short.len()]);
}

#[tokio::test]
async fn sinks_and_speeds_see_the_same_events_as_the_iterator() {
    let c = config(3, 120);
    let expected = json_lines(&generate(&c));

    let mut memory = MemorySink::default();
    let summary = run(&c, &mut memory, &Default::default())
        .await
        .expect("run");
    assert_eq!(json_lines(&memory.events), expected);
    assert_eq!(summary.events() as usize, expected.len());
    assert!(!summary.interrupted);

    let dir = tempfile::tempdir().expect("dir");
    let mut jsonl = JsonlSink::create(dir.path()).await.expect("sink");
    run(&c, &mut jsonl, &Default::default()).await.expect("run");
    let mut from_files = Vec::new();
    for topic in Topic::ALL {
        let text = std::fs::read_to_string(JsonlSink::path_in(dir.path(), topic)).expect("file");
        for line in text.lines() {
            let event = Event::from_json(topic, line).expect("parses back");
            assert_eq!(event.to_json(), line, "round trip");
            from_files.push(line.to_owned());
        }
    }
    let mut sorted = expected.clone();
    sorted.sort();
    from_files.sort();
    assert_eq!(from_files, sorted);

    let mut counting = CountingSink::new();
    let summary = run(&c, &mut counting, &Default::default())
        .await
        .expect("run");
    assert_eq!(counting.total() as usize, expected.len());
    for topic in Topic::ALL {
        assert_eq!(counting.count(topic), summary.count(topic));
    }
}

#[tokio::test(start_paused = true)]
async fn real_time_mode_tracks_event_time_at_its_speed_and_writes_the_same_events() {
    let mut c = config(3, 400);
    c.end = t("2026-11-20T12:00:00Z");
    let expected = json_lines(&generate(&c));
    assert!(expected.len() > 100, "{}", expected.len());
    // Twelve hours at 3600x: twelve seconds of (paused, auto-advancing) tokio time.
    c.speed = Speed::RealTime { factor: 3600.0 };
    let mut sink = MemorySink::default();
    let summary = run(&c, &mut sink, &Default::default()).await.expect("run");
    assert_eq!(json_lines(&sink.events), expected);
    let last = summary.last_ts.expect("events") - c.start.timestamp_millis();
    let paced = std::time::Duration::from_secs_f64(last as f64 / 1000.0 / 3600.0);
    assert!(
        summary.elapsed >= paced,
        "{:?} < {paced:?}",
        summary.elapsed
    );
    assert!(summary.elapsed < paced + std::time::Duration::from_millis(100));
    // It flushed while it waited, not only at the end.
    assert!(sink.flushes.len() > 10, "{:?}", sink.flushes.len());
}

#[tokio::test]
async fn a_cancelled_run_stops_and_says_so() {
    let cancel = tokio_util::sync::CancellationToken::new();
    cancel.cancel();
    let mut sink = MemorySink::default();
    let summary = run(&config(1, 50), &mut sink, &cancel).await.expect("run");
    assert!(summary.interrupted);
    assert_eq!(summary.events(), 0);
    assert_eq!(sink.flushes, vec![0]);
}

#[test]
fn every_topic_has_eventsims_fields_and_no_others() {
    for e in SAMPLE.iter() {
        let keys = keys(e);
        let allowed: HashSet<&str> = e.topic().fields().iter().copied().collect();
        for k in &keys {
            assert!(
                allowed.contains(k.as_str()),
                "{}: unexpected {k}",
                e.topic()
            );
        }
        let mut required: Vec<&str> = vec!["ts", "sessionId", "level", "itemInSession"];
        required.extend(DEVICE_FIELDS);
        match e.topic() {
            Topic::ListenEvents => required.extend(["artist", "song", "duration", "auth"]),
            Topic::PageViewEvents => required.extend(["page", "method", "status", "auth"]),
            Topic::AuthEvents => required.push("success"),
            Topic::StatusChangeEvents => required.push("auth"),
        }
        if e.user_id().is_some() {
            required.extend(USER_FIELDS);
        }
        for k in required {
            assert!(
                keys.contains(k),
                "{}: missing {k} in {}",
                e.topic(),
                e.to_json()
            );
        }
    }
    // Exactly the fork's key sets, for a logged-in visitor's events.
    let full = |topic: Topic| {
        SAMPLE
            .iter()
            .filter(|e| e.topic() == topic && e.user_id().is_some())
            .map(keys)
            .max_by_key(HashSet::len)
            .expect("an event")
    };
    for topic in Topic::ALL {
        let expected: HashSet<String> = topic.fields().iter().map(|s| s.to_string()).collect();
        assert_eq!(full(topic), expected, "{topic}");
    }
}

#[test]
fn json_values_have_eventsims_types() {
    let listen = SAMPLE
        .iter()
        .find(|e| e.topic() == Topic::ListenEvents)
        .expect("a listen");
    let v: serde_json::Value = serde_json::from_str(&listen.to_json()).expect("json");
    assert!(v["ts"].is_i64() && v["sessionId"].is_u64() && v["itemInSession"].is_u64());
    assert!(v["userId"].is_u64() && v["registration"].is_i64());
    assert!(v["duration"].is_f64() && v["lat"].is_f64() && v["lon"].is_f64());
    assert!(v["zip"].is_string() && v["zip"].as_str().map(str::len) == Some(5));
    assert!(matches!(v["gender"].as_str(), Some("M" | "F")));
    assert!(matches!(v["level"].as_str(), Some("free" | "paid")));
    assert_eq!(v["auth"], "Logged In");
    let auth = SAMPLE
        .iter()
        .find(|e| e.topic() == Topic::AuthEvents)
        .expect("an auth event");
    let v: serde_json::Value = serde_json::from_str(&auth.to_json()).expect("json");
    assert!(v["success"].is_boolean());
    let view = SAMPLE
        .iter()
        .find(|e| matches!(e, Event::PageView(p) if p.page == Page::Login))
        .expect("a login");
    let v: serde_json::Value = serde_json::from_str(&view.to_json()).expect("json");
    assert_eq!(
        (v["method"].as_str(), v["status"].as_u64()),
        (Some("PUT"), Some(307))
    );
}

#[test]
fn guests_and_logged_out_visitors_have_no_user_fields() {
    let mut anonymous = 0;
    let mut guests = 0;
    for e in SAMPLE.iter() {
        let keys = keys(e);
        let shown = e.auth().shows_user();
        for field in USER_FIELDS {
            assert_eq!(keys.contains(field), shown, "{field} in {}", e.to_json());
        }
        if !shown {
            anonymous += 1;
            assert!(DEVICE_FIELDS.iter().all(|f| keys.contains(*f)));
        }
        if e.auth() == Auth::Guest {
            guests += 1;
        }
    }
    assert!(anonymous > 50, "{anonymous}");
    assert!(guests > 10, "{guests}");
}

#[test]
fn every_listen_has_its_song_and_its_page_view() {
    let mut views = HashMap::new();
    for e in SAMPLE.iter() {
        if let Event::PageView(p) = e {
            views.insert((p.session_id, p.item_in_session), p);
        }
    }
    let mut listens = 0;
    for e in SAMPLE.iter() {
        if let Event::Listen(l) = e {
            listens += 1;
            assert!(!l.artist.is_empty() && !l.song.is_empty());
            assert!(l.duration > 0.0);
            assert_eq!(l.auth, Auth::LoggedIn);
            let view = views[&(l.session_id, l.item_in_session)];
            assert_eq!(view.page, Page::NextSong);
            assert_eq!(view.artist.as_deref(), Some(&*l.artist));
            assert_eq!(view.song.as_deref(), Some(&*l.song));
            assert_eq!(view.duration, Some(l.duration));
            assert_eq!((view.ts, view.user_id), (l.ts, l.user_id));
        }
    }
    for view in views.values() {
        assert_eq!(view.artist.is_some(), view.page == Page::NextSong);
    }
    assert!(listens > 1_000, "{listens}");
}

#[test]
fn timestamps_are_ordered_and_inside_the_range() {
    let c = config(7, 600);
    let (start, end) = (c.start.timestamp_millis(), c.end.timestamp_millis());
    assert!(SAMPLE.windows(2).all(|w| w[0].ts() <= w[1].ts()));
    assert!(SAMPLE.iter().all(|e| (start..end).contains(&e.ts())));
    // The run starts with users mid-life: events from the first hour on.
    assert!(SAMPLE[0].ts() < start + 3_600_000);
}

/// Each user's events in order (ts, then item in session, page views last at a tie).
fn by_user(events: &[Event]) -> BTreeMap<u64, Vec<&Event>> {
    let mut users: BTreeMap<u64, Vec<&Event>> = BTreeMap::new();
    for e in events {
        if let Some(user) = e.user_id() {
            users.entry(user).or_default().push(e);
        }
    }
    users
}

#[test]
fn sessions_belong_to_one_visitor_and_count_their_items() {
    let mut sessions: HashMap<u64, (Option<u64>, u32)> = HashMap::new();
    for e in SAMPLE.iter().filter(|e| e.topic() == Topic::PageViewEvents) {
        let entry = sessions.entry(e.session_id()).or_insert((e.user_id(), 0));
        if let (Some(a), Some(b)) = (entry.0, e.user_id()) {
            assert_eq!(a, b, "session {} has two users", e.session_id());
        }
        entry.0 = entry.0.or(e.user_id());
        assert!(e.item_in_session() >= entry.1, "items go forward");
        entry.1 = e.item_in_session();
    }
    // Registration is fixed for a user once they are registered.
    for (user, events) in by_user(&SAMPLE) {
        let regs: HashSet<i64> = events
            .iter()
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.to_json()).ok())
            .filter_map(|v| v["registration"].as_i64())
            .collect();
        assert_eq!(regs.len(), 1, "user {user}: {regs:?}");
    }
}

#[test]
fn levels_change_only_through_upgrades_and_downgrades_which_status_changes_record() {
    let status_changes: HashSet<(u64, u32)> = SAMPLE
        .iter()
        .filter(|e| e.topic() == Topic::StatusChangeEvents)
        .map(|e| (e.session_id(), e.item_in_session()))
        .collect();
    let mut changes = 0;
    for (user, events) in by_user(&SAMPLE) {
        let views: Vec<&PageViewEvent> = events
            .iter()
            .filter_map(|e| match e {
                Event::PageView(p) => Some(p),
                _ => None,
            })
            .collect();
        for w in views.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.level != b.level {
                changes += 1;
                let expected = match a.level {
                    Level::Free => Page::SubmitUpgrade,
                    Level::Paid => Page::SubmitDowngrade,
                };
                assert_eq!(a.page, expected, "user {user}: {a:?} -> {b:?}");
                assert!(status_changes.contains(&(a.session_id, a.item_in_session)));
            }
            if matches!(a.page, Page::SubmitUpgrade | Page::SubmitDowngrade) {
                assert_ne!(a.level, b.level, "user {user}: a submitted change happens");
            }
        }
    }
    assert!(changes > 0);
    for e in SAMPLE.iter() {
        if let Event::StatusChange(s) = e {
            assert!(matches!(s.auth, Auth::LoggedIn | Auth::Cancelled));
            assert!(s.user_id.is_some());
        }
    }
}

#[test]
fn a_cancellation_is_a_users_last_event() {
    // Enough users and time for cancellations to happen.
    let mut c = config(21, 2_500);
    c.end = t("2026-11-24T00:00:00Z");
    let events = generate(&c);
    let mut cancelled = 0;
    for (user, events) in by_user(&events) {
        if let Some(pos) = events.iter().position(
            |e| matches!(e, Event::PageView(p) if p.page == Page::CancellationConfirmation),
        ) {
            cancelled += 1;
            let at = events[pos].ts();
            assert!(
                events.iter().all(|e| e.ts() <= at),
                "user {user} has events after cancelling"
            );
            assert!(events.iter().any(|e| matches!(e,
                Event::StatusChange(s) if s.auth == Auth::Cancelled && s.ts == at)));
        }
    }
    assert!(cancelled > 0, "no cancellation in the sample");
}

#[test]
fn logins_write_auth_events_that_succeed_unless_the_next_page_is_an_error() {
    let mut views = HashMap::new();
    for e in SAMPLE.iter() {
        if let Event::PageView(p) = e {
            views.insert((p.session_id, p.item_in_session), p);
        }
    }
    let mut logins = 0;
    for e in SAMPLE.iter() {
        if let Event::Auth(a) = e {
            logins += 1;
            let login = views
                .get(&(a.session_id, a.item_in_session - 1))
                .expect("the login page before");
            assert_eq!(login.page, Page::Login);
            let after = views[&(a.session_id, a.item_in_session)];
            assert_eq!(a.success, after.page != Page::Error);
            assert_eq!(a.user_id.is_some(), a.success);
        }
    }
    assert!(logins > 10, "{logins}");
}

#[test]
fn song_popularity_is_long_tailed() {
    let mut plays: HashMap<(&str, &str), usize> = HashMap::new();
    let mut total = 0;
    for e in SAMPLE.iter() {
        if let Event::Listen(l) = e {
            *plays.entry((&*l.artist, &*l.song)).or_default() += 1;
            total += 1;
        }
    }
    let mut counts: Vec<usize> = plays.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    // The top 1% of the catalogue's songs get a large share of the plays.
    let top: usize = counts.iter().take(3_000 / 100).sum();
    let share = top as f64 / total as f64;
    assert!(share > 0.2, "top 1% of songs: {share:.2} of {total} plays");
    // And a long tail: many songs played once.
    assert!(counts.iter().filter(|&&c| c == 1).count() > counts.len() / 5);
}

#[test]
fn there_is_a_daily_cycle_in_local_time() {
    let tz: HashMap<(&str, &str), chrono_tz::Tz> = cities()
        .iter()
        .map(|c| ((&*c.city, &*c.state), c.timezone))
        .collect();
    let mut by_hour = [0usize; 24];
    for e in SAMPLE.iter() {
        if let Event::PageView(p) = e {
            let zone = tz[&(&*p.city, &*p.state)];
            let utc = Utc.timestamp_millis_opt(p.ts).single().expect("time");
            by_hour[utc.with_timezone(&zone).hour() as usize] += 1;
        }
    }
    let evening = (18..22).map(|h| by_hour[h]).sum::<usize>() as f64 / 4.0;
    let small_hours = (3..5).map(|h| by_hour[h]).sum::<usize>() as f64 / 2.0;
    assert!(evening > 1.5 * small_hours, "by local hour: {by_hour:?}");
}

#[test]
fn weekends_are_quieter() {
    // Four weeks of sessions starting, counted by the day of week they start on.
    let mut c = config(2, 400);
    c.end = t("2026-12-18T00:00:00Z");
    c.growth_rate = 0.0;
    let mut weekday = 0usize;
    let mut weekend = 0usize;
    for e in Simulation::new(&c).expect("config") {
        if let Event::PageView(p) = &e
            && p.item_in_session == 0
        {
            let day = Utc
                .timestamp_millis_opt(p.ts)
                .single()
                .expect("time")
                .date_naive();
            if is_day_off(day) {
                weekend += 1;
            } else {
                weekday += 1;
            }
        }
    }
    // Per day: 20 working days (less Thanksgiving), 8 weekend days and a holiday.
    let per_weekday = weekday as f64 / 19.0;
    let per_weekend_day = weekend as f64 / 9.0;
    assert!(
        per_weekend_day < 0.8 * per_weekday,
        "{per_weekend_day:.0} a day off, {per_weekday:.0} a working day"
    );
}

#[test]
fn locations_come_from_the_table() {
    let table: HashSet<(String, String, String, u64, u64)> = cities()
        .iter()
        .map(|c| {
            (
                c.city.to_string(),
                c.state.to_string(),
                c.zip.to_string(),
                c.lat.to_bits(),
                c.lon.to_bits(),
            )
        })
        .collect();
    let mut seen = HashSet::new();
    for e in SAMPLE.iter() {
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).expect("json");
        let key = (
            v["city"].as_str().expect("city").to_owned(),
            v["state"].as_str().expect("state").to_owned(),
            v["zip"].as_str().expect("zip").to_owned(),
            v["lat"].as_f64().expect("lat").to_bits(),
            v["lon"].as_f64().expect("lon").to_bits(),
        );
        assert!(table.contains(&key), "{key:?}");
        seen.insert(key.0);
    }
    assert!(seen.len() > 50, "users spread over {} cities", seen.len());
}

#[test]
fn event_ids_are_unique() {
    let ids: HashSet<EventId> = SAMPLE.iter().map(Event::event_id).collect();
    assert_eq!(ids.len(), SAMPLE.len());
    assert!(!ids.contains(&EventId::default()));
}

#[test]
fn the_user_base_grows_and_wears_away() {
    let mut c = config(4, 200);
    c.growth_rate = 0.0;
    let mut sim = Simulation::new(&c).expect("config");
    let steady = sim.by_ref().count();
    assert_eq!(sim.users(), 200);

    c.growth_rate = 100.0;
    let mut sim = Simulation::new(&c).expect("config");
    sim.by_ref().count();
    assert!(sim.users() > 200, "{} users", sim.users());

    c.growth_rate = 0.0;
    c.attrition_rate = 200.0;
    let worn = Simulation::new(&c).expect("config").count();
    assert!(
        worn < steady * 9 / 10,
        "{worn} events with attrition, {steady} without"
    );
}

#[test]
fn new_users_arrive_as_guests_and_may_register() {
    let mut c = config(8, 100);
    c.growth_rate = 300.0;
    let events = generate(&c);
    // Users beyond the initial 100 appear logged in only after registering.
    let mut registered = HashSet::new();
    for e in &events {
        if let Event::PageView(p) = e
            && p.page == Page::SubmitRegistration
        {
            let user = p.user_id.expect("registration shows the user");
            assert!(user > 100, "an initial user registered");
            assert_eq!(p.registration, Some(p.ts));
            registered.insert(user);
        }
    }
    assert!(!registered.is_empty());
    for e in &events {
        if let Some(user) = e.user_id()
            && user > 100
        {
            assert!(registered.contains(&user), "user {user} never registered");
        }
    }
}
