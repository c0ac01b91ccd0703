//! The HTML pages: each handler gathers its view (`views.rs`) and renders an askama template
//! from `web/templates/`. Askama escapes every value; the SVG of charts and lineage is built
//! by `charts.rs` and `lineage.rs`, which escape their text themselves.

use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use futures::Stream;
use orch::storage::EventFilter;
use serde::Deserialize;

use crate::AppState;
use crate::api::{SelectQuery, lineage_layout};
use crate::charts;
use crate::error::{PageError, WebError};
use crate::marts::{Chart, Grain};
use crate::views::{
    self, AssetDetail, AssetRow, BackfillView, EventView, EventsQuery, LogView, Overview, RunView,
    RunsQuery, ScheduleView, SensorView, StepGroup, WorkerView, get_run,
};

type PageResult = Result<Html<String>, PageError>;

fn render(t: &impl Template) -> PageResult {
    Ok(Html(t.render()?))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    csrf: &'a str,
    status: u16,
    message: &'a str,
}

pub fn error_page(status: StatusCode, message: &str) -> String {
    ErrorPage {
        title: "Error",
        csrf: "",
        status: status.as_u16(),
        message,
    }
    .render()
    .unwrap_or_else(|_| "error".to_owned())
}

pub async fn not_found() -> PageError {
    PageError(WebError::NotFound("no such page".into()))
}

pub async fn static_file(Path(file): Path<String>) -> Response {
    let (body, mime): (&'static [u8], &str) = match file.as_str() {
        "htmx.min.js" => (include_bytes!("../static/htmx.min.js"), "text/javascript"),
        "app.js" => (include_bytes!("../static/app.js"), "text/javascript"),
        "app.css" => (include_bytes!("../static/app.css"), "text/css"),
        "echarts.min.js" => (
            include_bytes!("../static/vendor/echarts.min.js"),
            "text/javascript",
        ),
        "dagre.min.js" => (
            include_bytes!("../static/vendor/dagre.min.js"),
            "text/javascript",
        ),
        "echarts.LICENSE" => (
            include_bytes!("../static/vendor/echarts.LICENSE"),
            "text/plain",
        ),
        "zrender.LICENSE" => (
            include_bytes!("../static/vendor/zrender.LICENSE"),
            "text/plain",
        ),
        "dagre.LICENSE" => (
            include_bytes!("../static/vendor/dagre.LICENSE"),
            "text/plain",
        ),
        _ => {
            return PageError(WebError::NotFound(format!("no static file `{file}`")))
                .into_response();
        }
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    title: &'a str,
    csrf: &'a str,
    o: Overview,
}

pub async fn overview(State(state): State<AppState>) -> PageResult {
    let o = views::overview(&state).await?;
    render(&OverviewPage {
        title: "Overview",
        csrf: state.security.csrf(),
        o,
    })
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage<'a> {
    title: &'a str,
    csrf: &'a str,
    q: RunsQuery,
    runs: Vec<RunView>,
    next: Option<String>,
    prev: Option<String>,
    /// This page's own query string, for its live refresh (first page only).
    refresh: Option<String>,
    error: Option<String>,
}

/// A page answered with the form's error beside the form (400), or a server error.
fn inline_error(e: WebError) -> Result<String, PageError> {
    match e {
        WebError::BadRequest(m) | WebError::NotFound(m) => Ok(m),
        e => Err(PageError(e)),
    }
}

fn status_of(error: &Option<String>) -> StatusCode {
    if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

pub async fn runs(
    State(state): State<AppState>,
    Query(q): Query<RunsQuery>,
) -> Result<Response, PageError> {
    let (runs, next, prev, error) = match views::runs_page(&state, &q).await {
        Ok(page) => (
            page.runs,
            page.next.map(|n| q.with_before(n)),
            page.prev.map(|p| q.with_after(p)),
            None,
        ),
        Err(e) => (Vec::new(), None, None, Some(inline_error(e)?)),
    };
    let first_page = [&q.before, &q.after]
        .iter()
        .all(|c| c.as_deref().is_none_or(str::is_empty));
    let refresh = (error.is_none() && first_page).then(|| q.query_string());
    let page = RunsPage {
        title: "Runs",
        csrf: state.security.csrf(),
        next,
        prev,
        runs,
        refresh,
        error,
        q,
    };
    Ok((status_of(&page.error), render(&page)?).into_response())
}

/// Most events a run page lists (the newest); the filters and the API give the rest.
const EVENTS_MAX: usize = 500;
/// Most log lines a run page shows (the newest).
const LOGS_MAX: usize = 1000;

/// The live part of a run page: the header, the timeline and the steps, refreshed every two
/// seconds while the run is not over (`/runs/{id}/live`).
#[derive(Template)]
#[template(path = "run_live.html")]
struct RunLive {
    run: RunView,
    groups: Vec<StepGroup>,
    gantt: Option<String>,
    step_count: usize,
    /// Each asset's evaluation that requested this run: (asset, tick id).
    evaluations: Vec<(String, i64)>,
}

impl RunLive {
    async fn of(
        state: &AppState,
        run: &orch::Run,
        all: &[orch::event::StoredEvent],
    ) -> Result<RunLive, WebError> {
        let steps = views::steps_of(state, run, all);
        let groups = views::group_steps(&steps);
        let gantt = charts::gantt(&groups, Utc::now()).map(|v| v.to_string());
        let mut evaluations = Vec::new();
        if run.tags.contains_key(orch::request::tags::AUTOMATION_TICK) {
            for key in &run.asset_keys {
                let user_key = key.to_user_string();
                let found = state
                    .storage
                    .automation_evaluations(&user_key, 50)
                    .await?
                    .into_iter()
                    .find(|e| e.run_ids.contains(&run.run_id));
                if let Some(e) = found {
                    evaluations.push((key.to_string(), e.tick_id));
                }
            }
        }
        Ok(RunLive {
            run: RunView::new(run),
            step_count: steps.len(),
            groups,
            gantt,
            evaluations,
        })
    }
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage<'a> {
    title: &'a str,
    csrf: &'a str,
    live_html: String,
    run: RunView,
    events: Vec<EventView>,
    events_total: usize,
    logs: Vec<LogView>,
    logs_total: usize,
    kind: String,
    step: String,
    level: String,
    last_event_id: i64,
    can_reexecute_from_failure: bool,
}

pub async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> PageResult {
    let filter = q.filter()?;
    let min_level = q.min_level()?;
    let run = get_run(&state, &id).await?;
    let all = state
        .storage
        .run_events(run.run_id, &EventFilter::default())
        .await?;
    let live = RunLive::of(&state, &run, &all).await?;
    let mut events = state.storage.run_events(run.run_id, &filter).await?;
    views::in_time_order(&mut events);
    let events_total = events.len();
    let events: Vec<EventView> = events
        .iter()
        .skip(events_total.saturating_sub(EVENTS_MAX))
        .map(EventView::new)
        .collect();
    let mut logs = state
        .storage
        .step_logs(run.run_id, filter.step_key.as_deref())
        .await?;
    if let Some(min) = min_level {
        logs.retain(|l| level_rank(l.level) >= level_rank(min));
    }
    let logs_total = logs.len();
    let logs = logs
        .iter()
        .skip(logs_total.saturating_sub(LOGS_MAX))
        .map(LogView::new)
        .collect();
    let can_reexecute_from_failure = run.status.is_terminal()
        && live
            .groups
            .iter()
            .flat_map(|g| &g.steps)
            .any(|s| s.status != "SUCCESS");
    render(&RunPage {
        title: "Run",
        csrf: state.security.csrf(),
        last_event_id: all.iter().map(|e| e.id).max().unwrap_or(0),
        run: live.run.clone(),
        live_html: live.render()?,
        events,
        events_total,
        logs,
        logs_total,
        kind: q.kind.unwrap_or_default(),
        step: q.step.unwrap_or_default(),
        level: q.level.unwrap_or_default(),
        can_reexecute_from_failure,
    })
}

fn level_rank(l: orch::event::LogLevel) -> u8 {
    use orch::event::LogLevel;
    match l {
        LogLevel::Debug => 0,
        LogLevel::Info => 1,
        LogLevel::Warn => 2,
        LogLevel::Error => 3,
    }
}

/// The live part of a run page alone (header, timeline, steps), for its refresh.
pub async fn run_live(State(state): State<AppState>, Path(id): Path<String>) -> PageResult {
    let run = get_run(&state, &id).await?;
    let all = state
        .storage
        .run_events(run.run_id, &EventFilter::default())
        .await?;
    render(&RunLive::of(&state, &run, &all).await?)
}

/// The Gantt chart's spec alone (JSON), as the live part draws it.
pub async fn run_gantt(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let run = get_run(&state, &id).await?;
    let all = state
        .storage
        .run_events(run.run_id, &EventFilter::default())
        .await?;
    let steps = views::steps_of(&state, &run, &all);
    let spec = charts::gantt(&views::group_steps(&steps), Utc::now());
    Ok(axum::Json(spec.unwrap_or(serde_json::Value::Null)).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    after: Option<String>,
}

/// A run's live tail as server-sent events: `event` (each new event, JSON), `log` (each new
/// log line), `status` (when the status changes) and `end` (once the run is over).
pub async fn run_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>, PageError> {
    let run = get_run(&state, &id).await?;
    let after = match q.after.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => a
            .parse::<i64>()
            .map_err(|_| WebError::BadRequest(format!("bad `after={a}`: use an event id")))?,
        None => 0,
    };
    struct Tail {
        state: AppState,
        run_id: orch::RunId,
        after: i64,
        logs_sent: usize,
        status: Option<orch::RunStatus>,
        ended: bool,
        first: bool,
    }
    let logs_sent = state.storage.step_logs(run.run_id, None).await?.len();
    let tail = Tail {
        state,
        run_id: run.run_id,
        after,
        logs_sent,
        status: None,
        ended: false,
        first: true,
    };
    let stream = futures::stream::unfold(tail, |mut t| async move {
        if t.ended {
            return None;
        }
        if !t.first {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        t.first = false;
        let mut out: Vec<SseEvent> = Vec::new();
        let filter = EventFilter {
            after_id: Some(t.after),
            ..EventFilter::default()
        };
        let run = t.state.storage.get_run(t.run_id).await.ok().flatten();
        if let Ok(events) = t.state.storage.run_events(t.run_id, &filter).await {
            for e in &events {
                t.after = e.id;
                let data = serde_json::to_string(&EventView::new(e)).unwrap_or_default();
                out.push(
                    SseEvent::default()
                        .event("event")
                        .id(e.id.to_string())
                        .data(data),
                );
            }
        }
        if let Ok(logs) = t.state.storage.step_logs(t.run_id, None).await {
            for l in logs.iter().skip(t.logs_sent) {
                let data = serde_json::to_string(&LogView::new(l)).unwrap_or_default();
                out.push(SseEvent::default().event("log").data(data));
            }
            t.logs_sent = t.logs_sent.max(logs.len());
        }
        if let Some(run) = run {
            if t.status != Some(run.status) {
                t.status = Some(run.status);
                out.push(
                    SseEvent::default()
                        .event("status")
                        .data(run.status.as_str()),
                );
            }
            if run.status.is_terminal() {
                t.ended = true;
                out.push(SseEvent::default().event("end").data(run.status.as_str()));
            }
        } else {
            t.ended = true;
        }
        Some((futures::stream::iter(out.into_iter().map(Ok)), t))
    });
    use futures::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::default()))
}

#[derive(Template)]
#[template(path = "assets.html")]
struct AssetsPage<'a> {
    title: &'a str,
    csrf: &'a str,
    select: String,
    assets: Vec<AssetRow>,
    /// The groups, in order, each with its rows.
    groups: Vec<(String, Vec<AssetRow>)>,
    error: Option<String>,
}

pub async fn assets(
    State(state): State<AppState>,
    Query(q): Query<SelectQuery>,
) -> Result<Response, PageError> {
    let select = q.select.clone().unwrap_or_default();
    let (keys, error) = match select.trim() {
        "" => (None, None),
        s => match views::resolve_selection_now(&state, s).await {
            Ok(keys) => (Some(keys), None),
            Err(e) => (Some(Default::default()), Some(inline_error(e)?)),
        },
    };
    let assets = views::asset_rows(&state, keys.as_ref()).await?;
    let mut groups: Vec<(String, Vec<AssetRow>)> = Vec::new();
    for row in &assets {
        match groups.iter_mut().find(|(g, _)| *g == row.group) {
            Some((_, rows)) => rows.push(row.clone()),
            None => groups.push((row.group.clone(), vec![row.clone()])),
        }
    }
    let page = AssetsPage {
        title: "Assets",
        csrf: state.security.csrf(),
        select,
        assets,
        groups,
        error,
    };
    Ok((status_of(&page.error), render(&page)?).into_response())
}

#[derive(Template)]
#[template(path = "asset.html")]
struct AssetPage<'a> {
    title: &'a str,
    csrf: &'a str,
    a: AssetDetail,
    plot: Option<String>,
    /// The model's columns as the dbt project documents them (empty for other assets).
    columns: Vec<orch_dbt::docs::ColumnDoc>,
}

pub async fn asset(State(state): State<AppState>, Path(key): Path<String>) -> PageResult {
    let key = views::known_asset(&state, &key)?;
    let a = views::asset_detail(&state, &key).await?;
    let plot = charts::history(&a.history).map(|v| v.to_string());
    let columns = asset_columns(&state, &key);
    render(&AssetPage {
        title: "Asset",
        csrf: state.security.csrf(),
        a,
        plot,
        columns,
    })
}

/// The documented columns of a dbt model (`templates/asset_docs.html`): names, types from the
/// catalog, descriptions, constraints and tests.
fn asset_columns(state: &AppState, key: &orch::AssetKey) -> Vec<orch_dbt::docs::ColumnDoc> {
    state
        .graph
        .spec(key)
        .map(|spec| orch_dbt::docs::columns(&spec.metadata))
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "lineage.html")]
struct LineagePage<'a> {
    title: &'a str,
    csrf: &'a str,
    select: String,
    /// The API's URL of this lineage (what the page's script lays out and refreshes).
    src: String,
    count: usize,
    error: Option<String>,
}

pub async fn lineage(
    State(state): State<AppState>,
    Query(q): Query<SelectQuery>,
) -> Result<Response, PageError> {
    let select = q.select.clone().unwrap_or_default();
    let (count, error) = match lineage_layout(&state, &q).await {
        Ok(layout) => (layout.nodes.len(), None),
        Err(e) => (0, Some(inline_error(e)?)),
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("select", &select)
        .finish();
    let page = LineagePage {
        title: "Lineage",
        csrf: state.security.csrf(),
        count,
        src: format!("/api/v1/lineage?{query}"),
        select,
        error,
    };
    Ok((status_of(&page.error), render(&page)?).into_response())
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage<'a> {
    title: &'a str,
    csrf: &'a str,
    schedules: Vec<ScheduleView>,
    sensors: Vec<SensorView>,
}

pub async fn schedules(State(state): State<AppState>) -> PageResult {
    let schedules = views::schedules(&state, 10).await?;
    let sensors = views::sensors(&state, 10).await?;
    render(&SchedulesPage {
        title: "Schedules",
        csrf: state.security.csrf(),
        schedules,
        sensors,
    })
}

#[derive(Template)]
#[template(path = "backfills.html")]
struct BackfillsPage<'a> {
    title: &'a str,
    csrf: &'a str,
    backfills: Vec<BackfillView>,
}

pub async fn backfills(State(state): State<AppState>) -> PageResult {
    let mut list = Vec::new();
    for b in state.storage.list_backfills(50).await? {
        list.push(views::backfill_view(&state, &b).await?);
    }
    render(&BackfillsPage {
        title: "Backfills",
        csrf: state.security.csrf(),
        backfills: list,
    })
}

#[derive(Template)]
#[template(path = "backfill.html")]
struct BackfillPage<'a> {
    title: &'a str,
    csrf: &'a str,
    b: BackfillView,
    runs: Vec<RunView>,
}

pub async fn backfill(State(state): State<AppState>, Path(id): Path<String>) -> PageResult {
    let b = state
        .storage
        .get_backfill(&id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("backfill {id} does not exist")))?;
    let view = views::backfill_view(&state, &b).await?;
    let runs = state
        .storage
        .list_runs(&orch::storage::RunFilter {
            tag: Some((orch::request::tags::BACKFILL.to_owned(), id)),
            limit: Some(200),
            ..Default::default()
        })
        .await?;
    render(&BackfillPage {
        title: "Backfill",
        csrf: state.security.csrf(),
        b: view,
        runs: runs.iter().map(RunView::new).collect(),
    })
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage<'a> {
    title: &'a str,
    csrf: &'a str,
    workers: Vec<WorkerView>,
}

pub async fn workers(State(state): State<AppState>) -> PageResult {
    let workers = views::workers(&state).await?;
    render(&WorkersPage {
        title: "Stream workers",
        csrf: state.security.csrf(),
        workers,
    })
}

/// One dashboard panel: a chart drawn, or why it cannot be.
struct Panel {
    name: &'static str,
    title: &'static str,
    mart: &'static str,
    /// The chart's spec (JSON) for `app.js`, when it has rows.
    spec: Option<String>,
    rows: usize,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboards.html")]
struct DashboardsPage<'a> {
    title: &'a str,
    csrf: &'a str,
    panels: Vec<Panel>,
    /// The "by period" section (`templates/dashboards_periods.html`).
    grain: &'static str,
    grains: Vec<&'static str>,
    period_panels: Vec<Panel>,
}

#[derive(Debug, serde::Deserialize)]
pub struct DashboardQuery {
    grain: Option<String>,
}

/// The "by period" charts at `grain`, and the segments.
async fn period_panels(state: &AppState, grain: Grain) -> Vec<Panel> {
    let mut panels = Vec::new();
    for chart in Chart::BY_GRAIN.into_iter().chain([Chart::Segments]) {
        let (spec, rows, error) = match state.marts.chart_at(chart, grain).await {
            Ok(data) if data.rows.is_empty() => (None, 0, Some("no rows yet".to_owned())),
            Ok(data) => (
                Some(charts::chart(chart.shape(), chart.value_name(), &data.rows).to_string()),
                data.rows.len(),
                None,
            ),
            Err(e) => (None, 0, Some(e.to_string())),
        };
        panels.push(Panel {
            name: chart.name(),
            title: chart.title(),
            mart: chart.mart(),
            spec,
            rows,
            error,
        });
    }
    panels
}

pub async fn dashboards(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<DashboardQuery>,
) -> PageResult {
    let grain = query
        .grain
        .as_deref()
        .and_then(Grain::parse)
        .unwrap_or_default();
    let mut panels = Vec::new();
    for chart in Chart::ALL {
        let (spec, rows, error) = match state.marts.chart(chart).await {
            Ok(data) if data.rows.is_empty() => (None, 0, Some("no rows yet".to_owned())),
            Ok(data) => (
                Some(charts::chart(chart.shape(), chart.value_name(), &data.rows).to_string()),
                data.rows.len(),
                None,
            ),
            Err(e) => (None, 0, Some(e.to_string())),
        };
        panels.push(Panel {
            name: chart.name(),
            title: chart.title(),
            mart: chart.mart(),
            spec,
            rows,
            error,
        });
    }
    let period_panels = period_panels(&state, grain).await;
    render(&DashboardsPage {
        title: "Dashboards",
        csrf: state.security.csrf(),
        panels,
        grain: grain.name(),
        grains: Grain::ALL.map(Grain::name).to_vec(),
        period_panels,
    })
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    title: &'a str,
    csrf: &'a str,
    required: bool,
}

pub async fn login(State(state): State<AppState>) -> PageResult {
    render(&LoginPage {
        title: "Sign in",
        csrf: state.security.csrf(),
        required: state.security.token_required(),
    })
}
