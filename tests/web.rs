//! The web UI and JSON API through the router (in process, no socket), on SQLite and on
//! Postgres: every page and API route, bad input answered with a clear 4xx, keyset pagination,
//! CSRF and token checks on actions, escaping, the OpenAPI document, the live tail.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{Duration, Utc};
use futures::FutureExt;
use orch::event::{Event, EventBody, EventKind, LogLevel, LogLine, LogStream};
use orch::run::NewRun;
use orch::storage::{Backfill, ComponentHeartbeat, NewTick, Storage, TickStatus};
use orch::{
    AssetGraph, ComputeError, Materialization, Metadata, PartitionsDefinition, RunId, RunStatus,
    asset,
};
use orch_web::StreamWorkerDetail;
use orch_web::{AppState, Chart, InMemoryMarts, Security};
use tower::ServiceExt;

use crate::util::db;

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_case(super::db::sqlite().await, super::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_case(super::db::postgres().await, super::$case).await;
                }
            )*
        }
    };
}

both_backends!(
    case_every_page_renders,
    case_every_api_route_answers,
    case_bad_input_is_a_clear_4xx,
    case_runs_keyset_pagination_and_filters,
    case_actions_need_csrf_and_queue_runs,
    case_api_writes_need_the_token_when_set,
    case_user_data_is_escaped,
    case_live_tail_ends_with_the_run,
    case_runs_of_one_minute_have_distinct_ids,
    case_events_in_true_order,
    case_form_errors_keep_the_input,
    case_a_large_run_page_stays_small,
    case_stale_and_automation_evaluations_show,
    case_rebinding_reads_without_token_and_unbounded_ranges_are_refused,
    case_metrics_count_requests_and_read_the_run_history,
);

async fn run_case<F, Fut>(db: db::TestDb, case: F)
where
    F: FnOnce(Arc<dyn Storage>) -> Fut,
    Fut: Future<Output = ()>,
{
    let result = AssertUnwindSafe(case(db.storage.clone()))
        .catch_unwind()
        .await;
    db.cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// raw/plays (hourly) -> staging/plays (hourly) -> marts/top_songs (with a check).
fn test_graph() -> Arc<AssetGraph> {
    let hourly = || PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap();
    let noop = |_ctx| async { Ok::<_, ComputeError>(Materialization::new()) };
    let defs = vec![
        asset("raw/plays")
            .group("raw")
            .kind("lake")
            .partitions(hourly())
            .compute(noop)
            .unwrap(),
        asset("staging/plays")
            .deps(["raw/plays"])
            .group("staging")
            .kind("duckdb")
            .description("plays, <typed> & cleaned")
            .partitions(hourly())
            .compute(noop)
            .unwrap(),
        asset("marts/top_songs")
            .deps(["staging/plays"])
            .group("marts")
            .kind("dbt")
            .check(orch::CheckSpec::new("not_empty"))
            // The dbt project's documentation of the model (orch_dbt::docs).
            .metadata("dbt/unique_id", "model.p.top_songs")
            .metadata(
                "dbt/columns",
                serde_json::json!([{"name": "song_key", "description": "The song <key>.",
                    "data_type": "string", "constraints": ["not_null"], "tests": ["primary_key"]}]),
            )
            .compute(noop)
            .unwrap(),
    ];
    Arc::new(AssetGraph::new(defs).unwrap())
}

fn state(storage: Arc<dyn Storage>, token: Option<&str>) -> AppState {
    let marts = InMemoryMarts::new();
    marts.set(
        Chart::TopSongs,
        vec![("Song <A>".into(), 42.0), ("Song B".into(), 7.0)],
    );
    marts.set(
        Chart::ActiveUsers,
        vec![("2026-11-21".into(), 10.0), ("2026-11-22".into(), 12.0)],
    );
    let schedule =
        orch::daemon::ScheduleDefinition::new("hourly_pipeline", "10 * * * *", "UTC", "*").unwrap();
    AppState::new(
        storage,
        test_graph(),
        vec![schedule],
        Arc::new(marts),
        Security::new(token.map(str::to_owned)),
    )
    .with_sensors(vec!["lake_late_files".into()])
}

/// One request through the router: its status and body.
async fn check(
    state: &AppState,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:3000");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(
            body.map(|b| Body::from(b.to_owned()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let response = orch_web::router(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    )
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, String) {
    let (s, b, _) = check(state, "GET", uri, &[], None).await;
    (s, b)
}

async fn get_json(state: &AppState, uri: &str) -> serde_json::Value {
    let (status, body) = get(state, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri} is not JSON ({e}): {body}"))
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("content-type", "application/json");

/// A finished run of staging/plays with a step, a materialization, a check and logs.
async fn seed(storage: &Arc<dyn Storage>) -> RunId {
    let now = Utc::now();
    let run = storage
        .create_run(&NewRun {
            status: RunStatus::Queued,
            selection: "staging/plays".into(),
            asset_keys: vec![orch::AssetKey::parse("staging/plays").unwrap()],
            partition_key: Some("2026-11-22-10:00".into()),
            ..NewRun::new(orch::new_run_id(), now)
        })
        .await
        .unwrap();
    for to in [RunStatus::Starting, RunStatus::Started] {
        storage.transition_run(run.run_id, to, now).await.unwrap();
    }
    let step = "staging/plays[2026-11-22-10:00]";
    let key = orch::AssetKey::parse("staging/plays").unwrap();
    let at = |ms| now + Duration::milliseconds(ms);
    let ev = |kind, ms| Event {
        timestamp: at(ms),
        ..orch::execute::now_event(run.run_id, kind)
    };
    storage
        .append_events(&[
            ev(EventKind::RunStart, 0),
            ev(EventKind::StepStart, 1).step(step),
            Event {
                body: EventBody {
                    metadata: Metadata::new()
                        .with("row_count", 1234_i64)
                        .with("duration_ms", 250.0),
                    ..EventBody::default()
                },
                ..ev(EventKind::AssetMaterialization, 200)
                    .step(step)
                    .asset(key.clone())
                    .partition(Some("2026-11-22-10:00".into()))
            },
            ev(EventKind::StepSuccess, 250).step(step),
            ev(EventKind::RunSuccess, 260),
        ])
        .await
        .unwrap();
    storage
        .append_logs(&[LogLine {
            run_id: run.run_id,
            step_key: step.into(),
            stream: LogStream::Stdout,
            level: LogLevel::Info,
            timestamp: at(100),
            message: "loaded 1234 rows".into(),
        }])
        .await
        .unwrap();
    storage
        .transition_run(run.run_id, RunStatus::Success, at(260))
        .await
        .unwrap();
    storage
        .record_tick(
            &NewTick::skipped("hourly_pipeline", now, "nothing to do"),
            now,
        )
        .await
        .unwrap();
    // The lake sensor saw a late file for an hour already loaded.
    storage
        .record_tick(
            &NewTick {
                schedule: "lake_late_files",
                tick_time: now,
                status: TickStatus::Requested,
                message: Some("files of listen_events for 2026-11-22-10:00 changed at 2026-11-22T12:00:00+00:00 after the hour was loaded"),
                run: None,
            },
            now,
        )
        .await
        .unwrap();
    storage
        .create_backfill(
            &Backfill {
                id: "bf-1".into(),
                selection: "raw/plays".into(),
                partition_from: "2026-11-22-00:00".into(),
                partition_to: "2026-11-22-01:00".into(),
                run_count: 1,
                created_at: now,
            },
            &[NewRun {
                status: RunStatus::Queued,
                selection: "raw/plays".into(),
                tags: BTreeMap::from([(
                    orch::request::tags::BACKFILL.to_owned(),
                    "bf-1".to_owned(),
                )]),
                ..NewRun::new(orch::new_run_id(), now)
            }],
        )
        .await
        .unwrap();
    storage
        .component_heartbeat(&ComponentHeartbeat {
            kind: orch_web::STREAM_WORKER.into(),
            name: "worker-7".into(),
            detail: serde_json::to_value(StreamWorkerDetail {
                group_id: "orch-stream".into(),
                topics: vec!["listen_events".into()],
                partitions: vec!["listen_events:0".into()],
                lag: Some(12),
                events_in: 1000,
                events_written: 990,
                dead_lettered: 10,
                events_per_sec: 345.0,
                last_file: Some("raw/listen_events/date=2026-11-22/hour=10/x.parquet".into()),
            })
            .unwrap(),
            started_at: now,
            last_seen: now,
            stopped_at: None,
        })
        .await
        .unwrap();
    run.run_id
}

/// The run id as tables show it: its random tail.
fn short_id(run_id: RunId) -> String {
    let s = run_id.to_string();
    s[s.len() - 8..].to_owned()
}

async fn case_every_page_renders(storage: Arc<dyn Storage>) {
    let run_id = seed(&storage).await;
    let s = state(storage, None);
    let short = short_id(run_id);
    let runs_expect = [short.as_str(), "SUCCESS", "2026-11-22-10:00"];
    let pages: Vec<(String, &[&str])> = vec![
        (
            "/".into(),
            &["Overview", "staging/plays", "hourly_pipeline", "worker-7"],
        ),
        ("/runs".into(), &runs_expect),
        (
            format!("/runs/{run_id}"),
            &[
                "class=\"echart gantt\"",
                "STEP_SUCCESS",
                "loaded 1234 rows",
                "Re-execute",
            ],
        ),
        (
            format!("/runs/{run_id}?kind=STEP_SUCCESS"),
            &["STEP_SUCCESS"],
        ),
        (
            format!("/runs/{run_id}/gantt"),
            &["\"kind\":\"gantt\"", "staging/plays"],
        ),
        (
            format!("/runs/{run_id}/live"),
            &["id=\"run-live\"", "SUCCESS", "steps: 1"],
        ),
        (
            "/assets".into(),
            &[
                "raw/plays",
                "staging/plays",
                "marts/top_songs",
                "MATERIALIZED",
            ],
        ),
        ("/assets?select=group:staging".into(), &["staging/plays"]),
        (
            "/assets/staging/plays".into(),
            &[
                "1234",
                "Materialize",
                "raw/plays",
                "marts/top_songs",
                "id=\"partition-grid\"",
                "2026-11-22",
                "id=\"history-chart\"",
            ],
        ),
        (
            "/assets/marts/top_songs".into(),
            &[
                "not_empty",
                "staging/plays",
                "<h2 id=\"columns\">Columns</h2>",
                "song_key",
                "The song &#60;key&#62;.",
                "primary_key",
            ],
        ),
        (
            "/lineage".into(),
            &[
                "data-src=\"/api/v1/lineage?select=\"",
                "3 assets",
                "/static/dagre.min.js",
            ],
        ),
        (
            "/lineage?select=%2Bmarts%2Ftop_songs".into(),
            &["marts/top_songs", "2 assets"],
        ),
        (
            "/schedules".into(),
            &[
                "hourly_pipeline",
                "SKIPPED",
                "nothing to do",
                "Sensors",
                "lake_late_files",
                "files of listen_events for 2026-11-22-10:00 changed",
            ],
        ),
        ("/backfills".into(), &["bf-1", "raw/plays"]),
        ("/backfills/bf-1".into(), &["bf-1", "QUEUED"]),
        ("/workers".into(), &["worker-7", "listen_events:0", "345.0"]),
        (
            "/dashboards".into(),
            &[
                "Top songs",
                "Song B",
                "class=\"echart\"",
                "/static/echarts.min.js",
                "mart_top_artists is not built yet",
                "id=\"grain-picker\"",
                "<strong class=\"mono\">day</strong>",
                "mart_logins is not built yet",
                "mart_user_segments is not built yet",
            ],
        ),
        (
            "/dashboards?grain=minute".into(),
            &[
                "<strong class=\"mono\">minute</strong>",
                "href=\"/dashboards?grain=year#by-period\"",
            ],
        ),
        ("/login".into(), &["needs no token"]),
        ("/static/htmx.min.js".into(), &["htmx"]),
        ("/static/app.js".into(), &["EventSource"]),
        ("/static/echarts.min.js".into(), &["echarts"]),
        ("/static/dagre.min.js".into(), &["dagre"]),
        ("/static/echarts.LICENSE".into(), &["Apache License"]),
        ("/static/dagre.LICENSE".into(), &["Chris Pettitt"]),
        ("/static/app.css".into(), &["body"]),
    ];
    for (uri, expected) in pages {
        let (status, body) = get(&s, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        for e in expected {
            assert!(body.contains(e), "{uri} should show {e:?}");
        }
    }
    // The log level filter keeps lines at or above the level.
    let (_, body) = get(&s, &format!("/runs/{run_id}?level=warn")).await;
    assert!(
        !body.contains("loaded 1234 rows"),
        "an INFO line below WARN"
    );
    let (_, body) = get(&s, &format!("/runs/{run_id}?level=info")).await;
    assert!(body.contains("loaded 1234 rows"));
    // The chart's spec sits escaped in an attribute.
    let (_, body) = get(&s, "/dashboards").await;
    assert!(!body.contains("Song <A>"), "escaped");
    // The lineage filter keeps only what the selection names.
    let lineage = get_json(&s, "/api/v1/lineage?select=%2Bmarts%2Ftop_songs").await;
    let keys: Vec<&str> = lineage["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["staging/plays", "marts/top_songs"]);
}

async fn case_every_api_route_answers(storage: Arc<dyn Storage>) {
    let run_id = seed(&storage).await;
    let s = state(storage, None);
    let o = get_json(&s, "/api/v1/overview").await;
    assert_eq!(o["run_counts"]["SUCCESS"], 1);
    assert_eq!(o["asset_count"], 3);
    let runs = get_json(&s, "/api/v1/runs").await;
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        2,
        "the seeded run and the backfill's"
    );
    let run = get_json(&s, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["run"]["status"], "SUCCESS");
    assert_eq!(run["steps"][0]["status"], "SUCCESS");
    let events = get_json(
        &s,
        &format!("/api/v1/runs/{run_id}/events?kind=asset_materialization"),
    )
    .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1);
    let logs = get_json(&s, &format!("/api/v1/runs/{run_id}/logs")).await;
    assert_eq!(logs["logs"][0]["message"], "loaded 1234 rows");
    let assets = get_json(&s, "/api/v1/assets?select=kind:dbt").await;
    assert_eq!(assets["assets"].as_array().unwrap().len(), 1);
    let a = get_json(&s, "/api/v1/assets/staging/plays").await;
    assert_eq!(a["history"][0]["row_count"], 1234);
    assert_eq!(a["upstream"][0], "raw/plays");
    let lineage = get_json(&s, "/api/v1/lineage").await;
    assert_eq!(lineage["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(lineage["edges"].as_array().unwrap().len(), 2);
    let layers: Vec<u64> = lineage["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["layer"].as_u64().unwrap())
        .collect();
    assert_eq!(layers, [0, 1, 2]);
    let schedules = get_json(&s, "/api/v1/schedules").await;
    assert_eq!(schedules["schedules"][0]["ticks"][0]["status"], "SKIPPED");
    assert_eq!(schedules["sensors"][0]["name"], "lake_late_files");
    assert_eq!(schedules["sensors"][0]["ticks"][0]["status"], "REQUESTED");
    let backfills = get_json(&s, "/api/v1/backfills").await;
    assert_eq!(backfills["backfills"][0]["id"], "bf-1");
    let b = get_json(&s, "/api/v1/backfills/bf-1").await;
    assert_eq!(b["by_status"]["QUEUED"], 1);
    let w = get_json(&s, "/api/v1/stream-workers").await;
    assert_eq!(w["workers"][0]["lag"], 12);
    let m = get_json(&s, "/api/v1/marts/top_songs").await;
    assert_eq!(m["rows"][0][1], 42.0);
    let doc = get_json(&s, "/api/v1/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    // Every API route is documented.
    for path in [
        "/api/v1/overview",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/events",
        "/api/v1/runs/{run_id}/logs",
        "/api/v1/runs/{run_id}/cancel",
        "/api/v1/runs/{run_id}/reexecute",
        "/api/v1/assets",
        "/api/v1/assets/{key}",
        "/api/v1/lineage",
        "/api/v1/schedules",
        "/api/v1/schedules/{name}",
        "/api/v1/backfills",
        "/api/v1/backfills/{id}",
        "/api/v1/stream-workers",
        "/api/v1/marts/{chart}",
        "/api/v1/openapi.json",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} is missing from the OpenAPI document"
        );
    }
    // Writes through the API: schedule off and on, a backfill, a materialization, a cancel.
    let (status, body, _) = check(
        &s,
        "POST",
        "/api/v1/schedules/hourly_pipeline",
        &[JSON],
        Some(r#"{"enabled": true}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(s.storage.schedule_states().await.unwrap()[0].enabled);
    let (status, body, _) = check(
        &s,
        "POST",
        "/api/v1/backfills",
        &[JSON],
        Some(r#"{"selection": "raw/plays", "from": "2026-11-22-00:00", "to": "2026-11-22-02:00"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["run_count"], 3);
    let (status, body, _) = check(
        &s,
        "POST",
        "/api/v1/runs",
        &[JSON],
        Some(r#"{"selection": "raw/plays+", "partition": "2026-11-22-10:00"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let queued: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(queued["status"], "QUEUED");
    assert_eq!(
        queued["assets"],
        serde_json::json!(["raw/plays", "staging/plays"])
    );
    let id = queued["run_id"].as_str().unwrap();
    let (status, body, _) =
        check(&s, "POST", &format!("/api/v1/runs/{id}/cancel"), &[], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("CANCELED"));
    let (status, body, _) = check(
        &s,
        "POST",
        &format!("/api/v1/runs/{run_id}/reexecute"),
        &[JSON],
        Some(r#"{"from_failure": false}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        body.contains(&run_id.to_string()),
        "the new run names its parent: {body}"
    );
}

async fn case_bad_input_is_a_clear_4xx(storage: Arc<dyn Storage>) {
    let run_id = seed(&storage).await;
    let s = state(storage, None);
    let unknown = orch::new_run_id();
    let cases: Vec<(&str, String, Option<&str>, StatusCode, &str)> = vec![
        (
            "GET",
            format!("/runs/{unknown}"),
            None,
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "GET",
            format!("/api/v1/runs/{unknown}"),
            None,
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "GET",
            "/runs/not-a-run".into(),
            None,
            StatusCode::BAD_REQUEST,
            "is not a run id",
        ),
        (
            "GET",
            "/api/v1/runs/not-a-run/events".into(),
            None,
            StatusCode::BAD_REQUEST,
            "is not a run id",
        ),
        (
            "GET",
            "/runs?status=bogus".into(),
            None,
            StatusCode::BAD_REQUEST,
            "unknown run status `bogus`",
        ),
        (
            "GET",
            "/api/v1/runs?limit=0".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad limit",
        ),
        (
            "GET",
            "/api/v1/runs?before=abc".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad cursor",
        ),
        (
            "GET",
            "/api/v1/runs?tag=novalue".into(),
            None,
            StatusCode::BAD_REQUEST,
            "key=value",
        ),
        (
            "GET",
            format!("/api/v1/runs/{run_id}/events?kind=NOPE"),
            None,
            StatusCode::BAD_REQUEST,
            "unknown event kind",
        ),
        (
            "GET",
            "/lineage?select=staging%2Fplayz".into(),
            None,
            StatusCode::BAD_REQUEST,
            "did you mean",
        ),
        (
            "GET",
            "/api/v1/lineage?select=%2B%2B%2B".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad selection",
        ),
        (
            "GET",
            "/assets/staging/playz".into(),
            None,
            StatusCode::NOT_FOUND,
            "did you mean `staging/plays`",
        ),
        (
            "GET",
            "/api/v1/assets/nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "no asset `nope`",
        ),
        (
            "GET",
            "/api/v1/marts/nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "no chart `nope`",
        ),
        (
            "GET",
            "/api/v1/marts/top_artists".into(),
            None,
            StatusCode::CONFLICT,
            "not built yet",
        ),
        (
            "GET",
            "/api/v1/backfills/nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "GET",
            "/backfills/nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "GET",
            "/api/v1/nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "openapi.json",
        ),
        (
            "GET",
            "/nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "no such page",
        ),
        (
            "GET",
            "/static/nope.js".into(),
            None,
            StatusCode::NOT_FOUND,
            "no static file",
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            Some(r#"{"selection": "raw/plays", "partition": "2026-13-45"}"#),
            StatusCode::BAD_REQUEST,
            "2026-13-45",
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            Some(r#"{"selection": "raw/plays"}"#),
            StatusCode::BAD_REQUEST,
            "partition",
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            Some(r#"{"selection": "raw//plays"}"#),
            StatusCode::BAD_REQUEST,
            "bad selection",
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            Some(r#"{"selection": "raw/plays", "from": "2026-11-22-00:00"}"#),
            StatusCode::BAD_REQUEST,
            "both `from` and `to`",
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            Some("{not json"),
            StatusCode::BAD_REQUEST,
            "bad request body",
        ),
        (
            "POST",
            "/api/v1/backfills".into(),
            Some(r#"{"selection": "raw/plays", "from": "2026-11-22-05:00", "to": "nope"}"#),
            StatusCode::BAD_REQUEST,
            "nope",
        ),
        (
            "POST",
            format!("/api/v1/runs/{run_id}/cancel"),
            None,
            StatusCode::CONFLICT,
            "only a queued or running run",
        ),
        (
            "POST",
            format!("/api/v1/runs/{unknown}/reexecute"),
            None,
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "POST",
            format!("/api/v1/runs/{run_id}/reexecute"),
            Some(r#"{"from_failure": true}"#),
            StatusCode::CONFLICT,
            "nothing to re-execute",
        ),
        (
            "POST",
            "/api/v1/schedules/nope".into(),
            Some(r#"{"enabled": true}"#),
            StatusCode::NOT_FOUND,
            "no schedule `nope`",
        ),
    ];
    for (method, uri, body, expected, message) in cases {
        let (status, text, _) = check(&s, method, &uri, &[JSON], body).await;
        assert_eq!(status, expected, "{method} {uri}: {text}");
        assert!(
            text.contains(message),
            "{method} {uri} should say {message:?}: {text}"
        );
    }
}

async fn case_runs_keyset_pagination_and_filters(storage: Arc<dyn Storage>) {
    let now = Utc::now();
    let mut all = Vec::new();
    for i in 0..120 {
        let run = storage
            .create_run(&NewRun {
                status: if i % 3 == 0 {
                    RunStatus::Failure
                } else {
                    RunStatus::Queued
                },
                selection: "raw/plays".into(),
                asset_keys: vec![
                    orch::AssetKey::parse(if i % 2 == 0 {
                        "raw/plays"
                    } else {
                        "staging/plays"
                    })
                    .unwrap(),
                ],
                partition_key: Some(format!("2026-11-22-{:02}:00", i % 24)),
                tags: BTreeMap::from([("team".to_owned(), format!("t{}", i % 4))]),
                ..NewRun::new(orch::new_run_id(), now + Duration::seconds(i))
            })
            .await
            .unwrap();
        all.push(run.run_id.to_string());
    }
    let s = state(storage, None);
    let mut seen = Vec::new();
    let mut uri = "/api/v1/runs?limit=50".to_owned();
    loop {
        let page = get_json(&s, &uri).await;
        let ids: Vec<String> = page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_owned())
            .collect();
        seen.extend(ids);
        match page["next"].as_i64() {
            Some(next) => uri = format!("/api/v1/runs?limit=50&before={next}"),
            None => break,
        }
    }
    all.reverse();
    assert_eq!(seen, all, "pages cover every run once, newest first");
    // And back: from the last page, `prev` cursors walk to the newest run.
    let ids_of = |page: &serde_json::Value| -> Vec<String> {
        page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = get_json(&s, "/api/v1/runs?limit=50").await;
    assert!(first["prev"].is_null(), "the first page has no newer page");
    let second = get_json(
        &s,
        &format!("/api/v1/runs?limit=50&before={}", first["next"]),
    )
    .await;
    let third = get_json(
        &s,
        &format!("/api/v1/runs?limit=50&before={}", second["next"]),
    )
    .await;
    assert_eq!(ids_of(&third), all[100..].to_vec());
    let back = get_json(
        &s,
        &format!("/api/v1/runs?limit=50&after={}", third["prev"]),
    )
    .await;
    assert_eq!(
        ids_of(&back),
        ids_of(&second),
        "one page back is the page before"
    );
    let back = get_json(&s, &format!("/api/v1/runs?limit=50&after={}", back["prev"])).await;
    assert_eq!(ids_of(&back), all[..50].to_vec());
    assert!(back["prev"].is_null(), "nothing newer than the newest");
    assert_eq!(back["next"], first["next"]);
    let (status, text) = get(&s, "/api/v1/runs?after=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("bad cursor `after=x`"), "{text}");
    let failed = get_json(&s, "/api/v1/runs?status=failure&limit=500").await;
    assert_eq!(failed["runs"].as_array().unwrap().len(), 40);
    let by_asset = get_json(
        &s,
        "/api/v1/runs?asset=staging/plays&status=failure,queued&limit=500",
    )
    .await;
    assert_eq!(by_asset["runs"].as_array().unwrap().len(), 60);
    let by_partition = get_json(&s, "/api/v1/runs?partition=2026-11-22-05:00").await;
    assert_eq!(by_partition["runs"].as_array().unwrap().len(), 5);
    let by_tag = get_json(&s, "/api/v1/runs?tag=team=t1&limit=500").await;
    assert_eq!(by_tag["runs"].as_array().unwrap().len(), 30);
    // The page links to the next page with the same filters.
    let (_, body) = get(&s, "/runs?status=queued&limit=10").await;
    assert!(body.contains("id=\"next-page\""));
    assert!(
        body.contains("status=queued&#38;limit=10&#38;before="),
        "the next link keeps the filter"
    );
    assert!(
        !body.contains("id=\"prev-page\""),
        "no newer page on the first"
    );
    let next = body
        .split("id=\"next-page\" href=\"/runs?")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .replace("&#38;", "&");
    let (_, second) = get(&s, &format!("/runs?{next}")).await;
    assert!(
        second.contains("status=queued&#38;limit=10&#38;after="),
        "the second page links back with the filter"
    );
}

async fn case_actions_need_csrf_and_queue_runs(storage: Arc<dyn Storage>) {
    let s = state(storage.clone(), None);
    let csrf = s.security.csrf().to_owned();
    let form = format!("csrf={csrf}&selection=staging%2Fplays&partition=2026-11-22-10%3A00");
    let (status, body, _) = check(
        &s,
        "POST",
        "/materialize",
        &[FORM],
        Some("csrf=wrong&selection=staging%2Fplays&partition=2026-11-22-10%3A00"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("CSRF"));
    let (status, body, _) = check(
        &s,
        "POST",
        "/materialize",
        &[FORM, ("origin", "http://evil.example")],
        Some(&form),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("cross-site"));
    assert!(
        storage
            .list_runs(&Default::default())
            .await
            .unwrap()
            .is_empty(),
        "refused forms queue nothing"
    );
    let (status, body, headers) = check(
        &s,
        "POST",
        "/materialize",
        &[FORM, ("origin", "http://127.0.0.1:3000")],
        Some(&form),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    let runs = storage.list_runs(&Default::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(location, format!("/runs/{}", runs[0].run_id));
    assert_eq!(runs[0].status, RunStatus::Queued);
    assert_eq!(runs[0].partition_key.as_deref(), Some("2026-11-22-10:00"));
    assert_eq!(
        runs[0].tags.get("orch/launched_by").map(String::as_str),
        Some("web")
    );
    // A bad partition in the form is a 400 page that says what is wrong.
    let (status, body, _) = check(
        &s,
        "POST",
        "/materialize",
        &[FORM],
        Some(&format!(
            "csrf={csrf}&selection=staging%2Fplays&partition=yesterday"
        )),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("yesterday"), "{body}");
    // Cancel, then re-execute, through the forms.
    let id = runs[0].run_id;
    let (status, _, _) = check(
        &s,
        "POST",
        &format!("/runs/{id}/cancel"),
        &[FORM],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        storage.get_run(id).await.unwrap().unwrap().status,
        RunStatus::Canceled
    );
    let (status, _, headers) = check(
        &s,
        "POST",
        &format!("/runs/{id}/reexecute"),
        &[FORM],
        Some(&format!("csrf={csrf}&from_failure=true")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let child = headers[header::LOCATION]
        .to_str()
        .unwrap()
        .trim_start_matches("/runs/")
        .to_owned();
    let child = storage
        .get_run(RunId::parse(&child).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.parent_run_id, Some(id));
    // Backfill and schedule forms.
    let (status, _, headers) = check(
        &s,
        "POST",
        "/backfill",
        &[FORM],
        Some(&format!(
            "csrf={csrf}&selection=raw%2Fplays&from=2026-11-22-00%3A00&to=2026-11-22-03%3A00"
        )),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let backfill = headers[header::LOCATION]
        .to_str()
        .unwrap()
        .trim_start_matches("/backfills/")
        .to_owned();
    assert_eq!(
        storage
            .get_backfill(&backfill)
            .await
            .unwrap()
            .unwrap()
            .run_count,
        4
    );
    let (status, _, _) = check(
        &s,
        "POST",
        "/schedules/hourly_pipeline/toggle",
        &[FORM],
        Some(&format!("csrf={csrf}&enabled=true")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(storage.schedule_states().await.unwrap()[0].enabled);
    let (status, _, _) = check(
        &s,
        "POST",
        "/schedules/hourly_pipeline/toggle",
        &[FORM],
        Some(&format!("csrf={csrf}&enabled=maybe")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn case_api_writes_need_the_token_when_set(storage: Arc<dyn Storage>) {
    let token = "s3cret-token-0123456789";
    let s = state(storage.clone(), Some(token));
    let body = r#"{"selection": "marts/top_songs"}"#;
    let (status, text, _) = check(&s, "POST", "/api/v1/runs", &[JSON], Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("ORCH_WEB_TOKEN"));
    let (status, _, _) = check(
        &s,
        "POST",
        "/api/v1/runs",
        &[JSON, ("authorization", "Bearer wrong")],
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let bearer = format!("Bearer {token}");
    let (status, text, _) = check(
        &s,
        "POST",
        "/api/v1/runs",
        &[JSON, ("authorization", &bearer)],
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    // Forms need the token too: /login checks it and keeps it in a strict cookie.
    let csrf = s.security.csrf().to_owned();
    let form = format!("csrf={csrf}&selection=marts%2Ftop_songs");
    let (status, _, _) = check(&s, "POST", "/materialize", &[FORM], Some(&form)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, headers) = check(
        &s,
        "POST",
        "/login",
        &[FORM],
        Some(&format!("csrf={csrf}&token={token}")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let (status, _, _) = check(
        &s,
        "POST",
        "/materialize",
        &[FORM, ("cookie", &cookie)],
        Some(&form),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The token never reaches a page.
    for uri in ["/", "/runs", "/login", "/assets/marts/top_songs"] {
        let (_, page) = get(&s, uri).await;
        assert!(!page.contains(token), "{uri} shows the token");
    }
    // Refusing to start beyond loopback without a token.
    let public: std::net::SocketAddr = "0.0.0.0:3000".parse().unwrap();
    let err = orch_web::check_bind(public, None).unwrap_err().to_string();
    assert!(err.contains("ORCH_WEB_TOKEN"), "{err}");
    assert!(orch_web::check_bind(public, Some("short")).is_err());
    assert!(orch_web::check_bind(public, Some(token)).is_ok());
    assert!(orch_web::check_bind("127.0.0.1:3000".parse().unwrap(), None).is_ok());
}

async fn case_user_data_is_escaped(storage: Arc<dyn Storage>) {
    let run = storage
        .create_run(&NewRun {
            status: RunStatus::Queued,
            selection: "<script>alert(1)</script>".into(),
            tags: BTreeMap::from([(
                "note".to_owned(),
                "\"><img src=x onerror=alert(1)>".to_owned(),
            )]),
            ..NewRun::new(orch::new_run_id(), Utc::now())
        })
        .await
        .unwrap();
    storage
        .append_events(&[
            orch::execute::now_event(run.run_id, EventKind::EngineEvent).message("<b>bold</b>")
        ])
        .await
        .unwrap();
    let s = state(storage, None);
    for uri in [
        "/runs".to_owned(),
        format!("/runs/{}", run.run_id),
        "/".to_owned(),
    ] {
        let (status, body) = get(&s, &uri).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !body.contains("<script>alert"),
            "{uri} must escape the selection"
        );
        assert!(!body.contains("<b>bold"), "{uri} must escape messages");
        assert!(body.contains("&#60;script&#62;") || uri == "/", "{uri}");
    }
    let (_, body) = get(&s, "/assets/staging/plays").await;
    assert!(body.contains("plays, &#60;typed&#62; &#38; cleaned"));
    let (_, _, headers) = check(&s, "GET", "/", &[], None).await;
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
}

async fn case_live_tail_ends_with_the_run(storage: Arc<dyn Storage>) {
    let run_id = seed(&storage).await;
    let s = state(storage, None);
    let (status, body) = get(&s, &format!("/runs/{run_id}/stream")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("event: event"), "{body}");
    assert!(body.contains("STEP_SUCCESS"));
    assert!(body.contains("event: status\ndata: SUCCESS"));
    assert!(body.contains("event: end"));
    let (status, body) = get(&s, &format!("/runs/{run_id}/stream?after=x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

async fn case_runs_of_one_minute_have_distinct_ids(storage: Arc<dyn Storage>) {
    let now = Utc::now();
    let mut ids = Vec::new();
    for _ in 0..11 {
        let run = storage
            .create_run(&NewRun {
                status: RunStatus::Queued,
                selection: "raw/plays".into(),
                ..NewRun::new(orch::new_run_id(), now)
            })
            .await
            .unwrap();
        ids.push(run.run_id);
    }
    let s = state(storage, None);
    let (status, body) = get(&s, "/runs").await;
    assert_eq!(status, StatusCode::OK);
    let shown: std::collections::BTreeSet<&str> = body
        .split("class=\"mono run-id\" title=\"")
        .skip(1)
        .map(|rest| rest.split_once("\">").unwrap().1.split('<').next().unwrap())
        .collect();
    assert_eq!(
        shown.len(),
        11,
        "11 runs of one minute, 11 distinct ids: {shown:?}"
    );
    for id in &ids {
        assert!(shown.contains(short_id(*id).as_str()));
    }
    // The same minute's UUIDv7 share their head: the head alone would collide.
    let heads: std::collections::BTreeSet<String> = ids
        .iter()
        .map(|id| id.to_string()[..8].to_owned())
        .collect();
    assert!(heads.len() < 11);
}

async fn case_events_in_true_order(storage: Arc<dyn Storage>) {
    let now = Utc::now();
    let run = storage
        .create_run(&NewRun {
            status: RunStatus::Queued,
            selection: "raw/plays".into(),
            ..NewRun::new(orch::new_run_id(), now)
        })
        .await
        .unwrap();
    // A fast daemon's first step is stored before the submitter's RUN_ENQUEUED.
    let ev = |kind, ms| Event {
        timestamp: now + Duration::milliseconds(ms),
        ..orch::execute::now_event(run.run_id, kind)
    };
    storage
        .append_events(&[ev(EventKind::StepStart, 5).step("raw/plays")])
        .await
        .unwrap();
    storage
        .append_events(&[ev(EventKind::RunEnqueued, 0)])
        .await
        .unwrap();
    let s = state(storage, None);
    let (_, body) = get(&s, &format!("/runs/{}", run.run_id)).await;
    let log = &body[body.find("id=\"events\"").unwrap()..];
    let enqueued = log.find("RUN_ENQUEUED").unwrap();
    let started = log.find("STEP_START").unwrap();
    assert!(enqueued < started, "RUN_ENQUEUED comes first");
    // The log level filter: a bad level is a 400, a good one filters.
    let (status, _) = get(&s, &format!("/runs/{}?level=loud", run.run_id)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&s, &format!("/runs/{}?level=warn", run.run_id)).await;
    assert_eq!(status, StatusCode::OK);
    // Milliseconds tell events apart.
    let ms = (now + Duration::milliseconds(5))
        .format("%H:%M:%S%.3f")
        .to_string();
    assert!(log.contains(&ms), "{ms} in the event log");
}

async fn case_form_errors_keep_the_input(storage: Arc<dyn Storage>) {
    let s = state(storage, None);
    let csrf = s.security.csrf().to_owned();
    // An htmx form post: the error comes back as a fragment for beside the form.
    let body = format!("csrf={csrf}&selection=staging%2Fplays&partition=2026-13-45");
    let (status, text, _) = check(
        &s,
        "POST",
        "/materialize",
        &[FORM, ("hx-request", "true")],
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.starts_with("<p class=\"error form-error\""), "{text}");
    assert!(text.contains("2026-13-45"), "{text}");
    assert!(!text.contains("<html"), "a fragment, not a page: {text}");
    // Its success is a redirect htmx follows.
    let body = format!("csrf={csrf}&selection=staging%2Fplays&partition=2026-11-22-10:00");
    let (status, _, headers) = check(
        &s,
        "POST",
        "/materialize",
        &[FORM, ("hx-request", "true")],
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["hx-redirect"]
            .to_str()
            .unwrap()
            .starts_with("/runs/")
    );
    // A bad selection in a GET form: the page again, with the error and the input.
    for uri in [
        "/assets?select=staging%2Fplayz",
        "/lineage?select=staging%2Fplayz",
    ] {
        let (status, text) = get(&s, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            text.contains("value=\"staging/playz\""),
            "{uri} keeps the input"
        );
        assert!(text.contains("did you mean"), "{uri}: {text}");
        assert!(text.contains("id=\"error-message\""), "{uri}");
    }
    let (status, text) = get(&s, "/runs?status=bogus&asset=staging%2Fplays").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("value=\"bogus\"") && text.contains("value=\"staging/plays\""));
    // No page links to `javascript:` (the CSP blocks it).
    let (_, text) = get(&s, "/runs/not-a-run").await;
    assert!(!text.contains("javascript:"), "{text}");
    // The API names its fields, not the CLI's flags.
    let (status, text, _) = check(
        &s,
        "POST",
        "/api/v1/runs",
        &[JSON],
        Some(r#"{"selection": "raw/plays"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!text.contains("--"), "{text}");
    assert!(
        text.contains("`partition`") && text.contains("`from`"),
        "{text}"
    );
}

async fn case_a_large_run_page_stays_small(storage: Arc<dyn Storage>) {
    // A 24-hour range run over 8 assets: 192 steps, each with its events and a log line.
    let now = Utc::now();
    let run = storage
        .create_run(&NewRun {
            status: RunStatus::Queued,
            selection: "*".into(),
            ..NewRun::new(orch::new_run_id(), now)
        })
        .await
        .unwrap();
    for to in [RunStatus::Starting, RunStatus::Started] {
        storage.transition_run(run.run_id, to, now).await.unwrap();
    }
    let mut events = Vec::new();
    let mut logs = Vec::new();
    for a in 0..8 {
        for h in 0..24 {
            let step = format!("asset_{a}[2026-11-22-{h:02}:00]");
            let t = now + Duration::milliseconds((a * 24 + h) * 10);
            let ev = |kind| Event {
                timestamp: t,
                ..orch::execute::now_event(run.run_id, kind)
            };
            events.push(ev(EventKind::StepStart).step(&step));
            events.push(ev(EventKind::StepSuccess).step(&step));
            logs.push(LogLine {
                run_id: run.run_id,
                step_key: step.clone(),
                stream: LogStream::Stdout,
                level: LogLevel::Info,
                timestamp: t,
                message: format!("step {step} loaded its rows"),
            });
        }
    }
    storage.append_events(&events).await.unwrap();
    storage.append_logs(&logs).await.unwrap();
    let s = state(storage, None);
    let (status, body) = get(&s, &format!("/runs/{}", run.run_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.len() < 200_000, "{} bytes", body.len());
    assert_eq!(
        body.matches("class=\"step-group\"").count(),
        8,
        "one row per asset"
    );
    let gantt = get_json(&s, &format!("/runs/{}/gantt", run.run_id)).await;
    assert_eq!(gantt["rows"].as_array().unwrap().len(), 8);
    assert!(body.contains("24 partitions: 24 SUCCESS"));
}

async fn case_stale_and_automation_evaluations_show(storage: Arc<dyn Storage>) {
    use orch::storage::{AutomationEvaluationRecord, AutomationTickWrite, NewAutomationTick};
    let now = Utc::now();
    let key = |k: &str| orch::AssetKey::parse(k).unwrap();
    // marts/top_songs materialized, then staging/plays after it: the mart is stale.
    let run = storage
        .create_run(&NewRun {
            status: RunStatus::Queued,
            selection: "*".into(),
            ..NewRun::new(orch::new_run_id(), now)
        })
        .await
        .unwrap();
    let mat = |k: &str, p: Option<&str>, ms| Event {
        timestamp: now + Duration::milliseconds(ms),
        ..orch::execute::now_event(run.run_id, EventKind::AssetMaterialization)
            .asset(key(k))
            .partition(p.map(str::to_owned))
    };
    storage
        .append_events(&[
            mat("staging/plays", Some("2026-11-22-10:00"), 0),
            mat("marts/top_songs", None, 10),
            mat("staging/plays", Some("2026-11-22-10:00"), 20),
        ])
        .await
        .unwrap();
    // An automation tick requested a run of the mart.
    let requested = NewRun {
        status: RunStatus::Queued,
        selection: "marts/top_songs".into(),
        asset_keys: vec![key("marts/top_songs")],
        ..NewRun::new(orch::new_run_id(), now)
    };
    let tree = serde_json::json!({
        "label": "and", "condition": "eager", "true_count": 1, "true_partitions": [""],
        "children": [
            {"label": "any_deps_updated", "condition": "any_deps_updated", "true_count": 1,
             "true_partitions": [""], "children": []},
            {"label": "not", "condition": "not any_deps_in_progress", "true_count": 0,
             "true_partitions": [], "children": []}
        ]
    });
    storage
        .record_automation_tick(&AutomationTickWrite {
            tick: &NewAutomationTick {
                tick_time: now,
                previous_id: 0,
                daemon: "d1".into(),
                evaluated_at: now,
                duration_ms: 1.0,
                assets_evaluated: 1,
                requested: 1,
            },
            runs: std::slice::from_ref(&requested),
            evaluations: &[AutomationEvaluationRecord {
                tick_id: 0,
                tick_time: Some(now),
                asset_key: "marts/top_songs".into(),
                requested: vec![String::new()],
                run_ids: vec![requested.run_id],
                tree: tree.to_string(),
            }],
            states: &[],
        })
        .await
        .unwrap()
        .expect("the first tick is recorded");
    let s = state(storage, None);
    let (_, catalog) = get(&s, "/assets").await;
    assert!(catalog.contains("s-STALE"), "the catalog shows STALE");
    let lineage = get_json(&s, "/api/v1/lineage").await;
    let stale: Vec<&str> = lineage["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["stale"] == true)
        .map(|n| n["key"].as_str().unwrap())
        .collect();
    assert_eq!(stale, ["marts/top_songs"]);
    let (_, selected) = get(&s, "/assets?select=status:stale").await;
    assert!(selected.contains("href=\"/assets/marts/top_songs\""));
    assert!(!selected.contains("href=\"/assets/raw/plays\""));
    let (_, page) = get(&s, "/assets/marts/top_songs").await;
    assert!(page.contains("id=\"evaluation-"), "{page}");
    assert!(
        page.contains("any_deps_updated") && page.contains("v-true") && page.contains("v-false")
    );
    assert!(page.contains(&format!("/runs/{}", requested.run_id)));
    // The requested run links back to its evaluation.
    let (_, run_page) = get(&s, &format!("/runs/{}", requested.run_id)).await;
    assert!(
        run_page.contains("href=\"/assets/marts/top_songs#evaluation-"),
        "{run_page}"
    );
}

/// One request with its own Host header (`check` sends 127.0.0.1:3000).
pub(crate) async fn with_host(
    state: &AppState,
    method: &str,
    uri: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, host);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(
            body.map(|b| Body::from(b.to_owned()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let response = orch_web::router(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Issue 14, items 1, 2 and 7, through the router: the DNS rebinding request replayed (it
/// queued a run, 201, before), reads beyond loopback without the token, ranges to year 9999 and
/// over the configured limit, and a server that stops on its shutdown signal with a live tail
/// open.
async fn case_rebinding_reads_without_token_and_unbounded_ranges_are_refused(
    storage: Arc<dyn Storage>,
) {
    let body = r#"{"selection": "raw/plays", "partition": "2026-11-22-10:00"}"#;
    let local = {
        let mut s = state(storage.clone(), None);
        s.security = Arc::new(Security::new(None).bound_to("127.0.0.1:39300".parse().unwrap()));
        s
    };
    let rebinding = [JSON, ("origin", "http://evil.example:39300")];
    let (status, text) = with_host(
        &local,
        "POST",
        "/api/v1/runs",
        "evil.example:39300",
        &rebinding,
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(
        text.contains("does not answer to host `evil.example:39300`"),
        "{text}"
    );
    let (status, _) = with_host(
        &local,
        "GET",
        "/api/v1/runs",
        "evil.example:39300",
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "reads are refused too");
    let (status, _) = with_host(&local, "GET", "/", "evil.example:39300", &[], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The same request on the real host goes through; an Origin of another site does not.
    let (status, text) = with_host(
        &local,
        "POST",
        "/api/v1/runs",
        "localhost:39300",
        &[JSON, ("origin", "http://localhost:39300")],
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let queued: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (status, _) = with_host(
        &local,
        "POST",
        "/api/v1/runs",
        "127.0.0.1:39300",
        &[JSON, ("origin", "http://evil.example:39300")],
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Beyond loopback (a token set), reads need it too, or the read-only token.
    let token = "s3cret-token-0123456789";
    let public = {
        let mut s = state(storage.clone(), Some(token));
        s.security = Arc::new(
            Security::new(Some(token.into()))
                .with_read_token(Some("reader-token-0123456789".into()))
                .bound_to("0.0.0.0:3000".parse().unwrap()),
        );
        s
    };
    let run_id = queued["run_id"].as_str().unwrap();
    for uri in [
        "/api/v1/runs".to_owned(),
        format!("/api/v1/runs/{run_id}/logs"),
        "/api/v1/assets".to_owned(),
    ] {
        let (status, text) = with_host(&public, "GET", &uri, "10.0.0.7:3000", &[], None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {text}");
        assert!(text.contains("ORCH_WEB_TOKEN"), "{text}");
    }
    let (status, text) = with_host(
        &public,
        "GET",
        &format!("/runs/{run_id}"),
        "10.0.0.7:3000",
        &[],
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "pages send to /login: {text}"
    );
    let (status, _) = with_host(&public, "GET", "/login", "10.0.0.7:3000", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let bearer = format!("Bearer {token}");
    let (status, _) = with_host(
        &public,
        "GET",
        "/api/v1/runs",
        "10.0.0.7:3000",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let reader = [("authorization", "Bearer reader-token-0123456789")];
    let (status, _) = with_host(
        &public,
        "GET",
        "/api/v1/runs",
        "10.0.0.7:3000",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = with_host(
        &public,
        "POST",
        "/api/v1/runs",
        "10.0.0.7:3000",
        &[JSON, reader[0]],
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("read-only"), "{text}");

    // Ranges: a key in year 9999, and more partitions than the limit.
    let limited = state(storage.clone(), None).with_max_range_partitions(24);
    let far = r#"{"selection": "raw/plays", "from": "2026-11-01-00:00", "to": "9999-12-31-23:00"}"#;
    let (status, text, _) = check(&limited, "POST", "/api/v1/runs", &[JSON], Some(far)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("after the last partition the definition allows"),
        "{text}"
    );
    let two_days = r#"{"selection": "*", "from": "2026-11-01-00:00", "to": "2026-11-02-23:00"}"#;
    for uri in ["/api/v1/runs", "/api/v1/backfills"] {
        let (status, text, _) = check(&limited, "POST", uri, &[JSON], Some(two_days)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
        assert!(text.contains("more than 24 partitions"), "{uri}: {text}");
    }
    // A backfill of more runs than `confirm_runs_above` needs `confirm`.
    let confirming = state(storage.clone(), None).with_confirm_runs_above(3);
    let six = r#"{"selection": "raw/plays", "from": "2026-11-01-00:00", "to": "2026-11-01-05:00"}"#;
    let (status, text, _) =
        check(&confirming, "POST", "/api/v1/backfills", &[JSON], Some(six)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("would queue 6 runs, more than 3"), "{text}");
    let confirmed = six.replace('}', r#", "confirm": true}"#);
    let (status, text, _) = check(
        &confirming,
        "POST",
        "/api/v1/backfills",
        &[JSON],
        Some(&confirmed),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert!(text.contains(r#""run_count":6"#), "{text}");
    let month = r#"{"selection": "raw/plays", "partition": "2026-13-01-00:00"}"#;
    let (status, text, _) = check(&limited, "POST", "/api/v1/runs", &[JSON], Some(month)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("month 13 does not exist"), "{text}");

    // A query string that does not read is a JSON 400 (schemathesis found it plain text).
    for uri in [
        "/api/v1/runs?limit=1&limit=2".to_owned(),
        format!("/api/v1/runs/{run_id}/events?after=1&after=2"),
    ] {
        let (status, text, headers) = check(&limited, "GET", &uri, &[], None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
        assert!(text.contains("duplicate field"), "{text}");
    }

    // The server stops on its signal though a live tail (of the queued run) never ends.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(orch_web::serve(listener, local.clone(), shutdown.clone()));
    let mut tail = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tail.write_all(
        format!("GET /runs/{run_id}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut first = [0u8; 64];
    let n = tail.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let stopped = std::time::Instant::now();
    shutdown.cancel();
    tokio::time::timeout(
        orch_web::SHUTDOWN_GRACE + std::time::Duration::from_secs(2),
        server,
    )
    .await
    .expect("the server stops within its grace period")
    .unwrap()
    .unwrap();
    assert!(stopped.elapsed() < orch_web::SHUTDOWN_GRACE + std::time::Duration::from_secs(2));
}

/// `/metrics`: requests by route pattern and status, the run history's gauges (runs by status,
/// heartbeats, latest ticks), in the OpenMetrics format; with a token, only for its holders.
async fn case_metrics_count_requests_and_read_the_run_history(storage: Arc<dyn Storage>) {
    let run_id = seed(&storage).await;
    let s = state(storage.clone(), None);
    for uri in [
        "/runs",
        "/runs",
        &format!("/runs/{run_id}"),
        "/api/v1/runs/nope",
    ] {
        get(&s, uri).await;
    }
    let (status, text, headers) = check(&s, "GET", "/metrics", &[], None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{headers:?}"
    );
    for line in [
        r#"orch_web_requests_total{method="GET",route="/runs",status="200"} 2"#,
        r#"orch_web_requests_total{method="GET",route="/runs/{run_id}",status="200"} 1"#,
        r#"orch_web_requests_total{method="GET",route="/api/v1/runs/{run_id}",status="400"} 1"#,
        r#"orch_web_request_seconds_count{route="/runs"} 2"#,
        r#"orch_runs{status="SUCCESS"} 1"#,
        r#"orch_runs{status="QUEUED"} 1"#,
        r#"orch_runs{status="FAILURE"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    for prefix in [
        r#"orch_component_heartbeat_age_seconds{kind="stream_worker",name="worker-7"} "#,
        r#"orch_last_tick_timestamp_seconds{schedule="hourly_pipeline"} "#,
        r#"orch_last_tick_timestamp_seconds{schedule="lake_late_files"} "#,
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(prefix)),
            "no `{prefix}` in:\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    // No daemon in this process: no daemon metrics.
    assert!(!text.contains("orch_daemon_runs"), "{text}");
    // The daemon's, when it runs in the same process (`orch dev`).
    let daemon = orch::metrics::DaemonMetrics::new();
    daemon.runs_claimed.inc();
    let with_daemon = s.clone().with_daemon_metrics(daemon);
    let (_, text) = get(&with_daemon, "/metrics").await;
    assert!(
        text.lines()
            .any(|l| l == "orch_daemon_runs_claimed_total 1"),
        "{text}"
    );
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");

    // With a token, scrapers send it; without it they get a 401, not the sign-in page.
    let token = "s3cret-token-0123456789";
    let guarded = state(storage.clone(), Some(token));
    let (status, text, _) = check(&guarded, "GET", "/metrics", &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    let bearer = format!("Bearer {token}");
    let (status, text, _) = check(
        &guarded,
        "GET",
        "/metrics",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

/// A request whose client goes away is dropped with its work: a chart that never finishes is
/// abandoned as soon as its client closes the connection (the server does not run it on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_leaves_is_dropped_with_its_work() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncWriteExt;
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    struct Forever {
        started: Arc<AtomicBool>,
        dropped: Arc<AtomicBool>,
    }
    #[async_trait::async_trait]
    impl orch_web::MartSource for Forever {
        async fn chart_at(
            &self,
            _: Chart,
            _: orch_web::Grain,
        ) -> Result<orch_web::ChartData, orch_web::MartError> {
            let _guard = Dropped(self.dropped.clone());
            self.started.store(true, Ordering::SeqCst);
            std::future::pending().await
        }
    }
    let (started, dropped) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let db = db::sqlite().await;
    let state = AppState::new(
        db.storage.clone(),
        test_graph(),
        vec![],
        Arc::new(Forever {
            started: started.clone(),
            dropped: dropped.clone(),
        }),
        Security::new(None),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(orch_web::serve(listener, state, shutdown.clone()));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /api/v1/marts/top_songs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let until = |flag: Arc<AtomicBool>| async move {
        for _ in 0..100 {
            if flag.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    };
    assert!(until(started.clone()).await, "the chart never started");
    assert!(!dropped.load(Ordering::SeqCst));
    drop(client);
    assert!(
        until(dropped.clone()).await,
        "the request's work went on after its client left"
    );
    shutdown.cancel();
    let _ = server.await;
    db.cleanup().await;
}

/// The grain picker reaches the marts: a source that answers each grain with its own rows is
/// read at the grain asked, by the API and by the dashboards (through the last-good cache the
/// state wraps every source in).
#[tokio::test]
async fn the_grain_asked_is_the_grain_read() {
    struct PerGrain;
    #[async_trait::async_trait]
    impl orch_web::MartSource for PerGrain {
        async fn chart_at(
            &self,
            _: Chart,
            grain: orch_web::Grain,
        ) -> Result<orch_web::ChartData, orch_web::MartError> {
            Ok(orch_web::ChartData {
                rows: vec![(format!("period of grain {}", grain.name()), 1.0)],
            })
        }
    }
    let db = db::sqlite().await;
    let s = AppState::new(
        db.storage.clone(),
        test_graph(),
        vec![],
        Arc::new(PerGrain),
        Security::new(None),
    );
    for grain in ["minute", "hour", "week", "year"] {
        let m = get_json(&s, &format!("/api/v1/marts/plays?grain={grain}")).await;
        assert_eq!(m["grain"], grain);
        assert_eq!(m["rows"][0][0], format!("period of grain {grain}"), "{m}");
        let (status, page) = get(&s, &format!("/dashboards?grain={grain}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains(&format!("period of grain {grain}")),
            "/dashboards?grain={grain} draws the rows of its grain"
        );
    }
    let m = get_json(&s, "/api/v1/marts/plays").await;
    assert_eq!(m["rows"][0][0], "period of grain day", "day by default");
    db.cleanup().await;
}
