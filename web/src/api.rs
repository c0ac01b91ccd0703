//! The JSON API under `/api/v1`: everything the pages show and do, described by
//! `openapi.rs`. Errors are `{"error": "...", "status": N}` with a 4xx for bad input.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::actions::{self, BackfillRequest, MaterializeRequest};
use crate::error::{ApiError, WebError};
use crate::lineage;
use crate::marts::Chart;
use crate::views::{
    self, EventView, EventsQuery, LogView, RunView, RunsQuery, asset_state, get_run,
};

type ApiResult = Result<Json<Value>, ApiError>;

fn to_json<T: serde::Serialize>(v: &T) -> Json<Value> {
    Json(serde_json::to_value(v).unwrap_or(Value::Null))
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| {
        ApiError(WebError::BadRequest(format!(
            "bad request body: {}",
            e.body_text()
        )))
    })
}

/// A query string that does not read (a repeated or mistyped parameter) is a JSON 400, like
/// every other error of the API, not axum's plain-text rejection.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError(WebError::BadRequest(format!(
            "bad query string: {}",
            e.body_text()
        )))
    })
}

/// A path segment that does not read (not UTF-8 once decoded) is a JSON 400.
fn path(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(p)| p).map_err(|e| {
        ApiError(WebError::BadRequest(format!(
            "bad path: {}",
            orch::text::shorten(&e.body_text(), orch::text::SHOWN_CHARS)
        )))
    })
}

pub async fn not_found() -> ApiError {
    ApiError(WebError::NotFound(
        "no such API route: see /api/v1/openapi.json".into(),
    ))
}

pub async fn overview(State(state): State<AppState>) -> ApiResult {
    Ok(to_json(&views::overview(&state).await?))
}

pub async fn runs(
    State(state): State<AppState>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    Ok(to_json(&views::runs_page(&state, &q).await?))
}

pub async fn run(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path(id)?;
    let run = get_run(&state, &id).await?;
    let events = state
        .storage
        .run_events(run.run_id, &Default::default())
        .await?;
    let steps = views::steps_of(&state, &run, &events);
    Ok(Json(json!({ "run": RunView::new(&run), "steps": steps })))
}

pub async fn run_events(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult {
    let id = path(id)?;
    let q = query(q)?;
    let filter = q.filter()?;
    let run = get_run(&state, &id).await?;
    let events = state.storage.run_events(run.run_id, &filter).await?;
    let list: Vec<EventView> = events.iter().map(EventView::new).collect();
    Ok(Json(json!({ "events": list })))
}

#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    pub step: Option<String>,
}

pub async fn run_logs(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> ApiResult {
    let id = path(id)?;
    let q = query(q)?;
    let run = get_run(&state, &id).await?;
    let step = q.step.as_deref().filter(|s| !s.is_empty());
    let logs = state.storage.step_logs(run.run_id, step).await?;
    let list: Vec<LogView> = logs.iter().map(LogView::new).collect();
    Ok(Json(json!({ "logs": list })))
}

pub async fn materialize(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Result<Json<MaterializeRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.security.check_api(&headers)?;
    let request = body(request)?;
    let run = actions::materialize(&state, &request).await?;
    Ok((StatusCode::CREATED, to_json(&RunView::new(&run))))
}

pub async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path(id)?;
    state.security.check_api(&headers)?;
    Ok(to_json(&RunView::new(&actions::cancel(&state, &id).await?)))
}

#[derive(Debug, Default, Deserialize)]
pub struct ReexecuteRequest {
    #[serde(default)]
    pub from_failure: bool,
}

pub async fn reexecute(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    request: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let id = path(id)?;
    state.security.check_api(&headers)?;
    // The body is optional: none means a whole re-execution.
    let from_failure = if request.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        serde_json::from_slice::<ReexecuteRequest>(&request)
            .map_err(|e| WebError::BadRequest(format!("bad request body: {e}")))?
            .from_failure
    };
    let run = actions::reexecute(&state, &id, from_failure).await?;
    Ok((StatusCode::CREATED, to_json(&RunView::new(&run))))
}

#[derive(Debug, Default, Deserialize)]
pub struct SelectQuery {
    pub select: Option<String>,
}

async fn selected(
    state: &AppState,
    q: &SelectQuery,
) -> Result<Option<BTreeSet<orch::AssetKey>>, WebError> {
    match q.select.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Ok(Some(views::resolve_selection_now(state, s).await?)),
        None => Ok(None),
    }
}

pub async fn assets(
    State(state): State<AppState>,
    q: Result<Query<SelectQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let keys = selected(&state, &q).await?;
    let rows = views::asset_rows(&state, keys.as_ref()).await?;
    Ok(Json(json!({ "assets": rows })))
}

pub async fn asset(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let key = path(key)?;
    let key = views::known_asset(&state, &key)?;
    Ok(to_json(&views::asset_detail(&state, &key).await?))
}

pub async fn lineage(
    State(state): State<AppState>,
    q: Result<Query<SelectQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let layout = lineage_layout(&state, &q).await?;
    Ok(to_json(&layout))
}

pub async fn lineage_layout(
    state: &AppState,
    q: &SelectQuery,
) -> Result<lineage::Layout, WebError> {
    let visible = match selected(state, q).await? {
        Some(keys) => keys,
        None => state.graph.toposorted().iter().cloned().collect(),
    };
    let latest = state.storage.latest_by_asset(&[]).await?;
    let states: std::collections::HashMap<&orch::AssetKey, &'static str> = latest
        .iter()
        .map(|r| (&r.asset_key, asset_state(Some(r))))
        .collect();
    let stale = views::stale_assets(state, &visible).await?;
    Ok(lineage::layout(
        &state.graph,
        &visible,
        |k| states.get(k).copied().unwrap_or("NEVER"),
        &stale,
    ))
}

pub async fn schedules(State(state): State<AppState>) -> ApiResult {
    Ok(Json(json!({
        "schedules": views::schedules(&state, 20).await?,
        "sensors": views::sensors(&state, 20).await?,
    })))
}

#[derive(Debug, Deserialize)]
pub struct ScheduleRequest {
    pub enabled: bool,
}

pub async fn set_schedule(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    request: Result<Json<ScheduleRequest>, JsonRejection>,
) -> ApiResult {
    let name = path(name)?;
    state.security.check_api(&headers)?;
    let request = body(request)?;
    let enabled = actions::set_schedule(&state, &name, request.enabled).await?;
    Ok(Json(json!({ "name": name, "enabled": enabled })))
}

pub async fn backfills(State(state): State<AppState>) -> ApiResult {
    let mut list = Vec::new();
    for b in state.storage.list_backfills(50).await? {
        list.push(views::backfill_view(&state, &b).await?);
    }
    Ok(Json(json!({ "backfills": list })))
}

pub async fn backfill(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path(id)?;
    let b = state
        .storage
        .get_backfill(&id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("backfill {id} does not exist")))?;
    Ok(to_json(&views::backfill_view(&state, &b).await?))
}

pub async fn create_backfill(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Result<Json<BackfillRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.security.check_api(&headers)?;
    let request = body(request)?;
    let b = actions::backfill(&state, &request).await?;
    Ok((
        StatusCode::CREATED,
        to_json(&views::backfill_view(&state, &b).await?),
    ))
}

pub async fn workers(State(state): State<AppState>) -> ApiResult {
    Ok(Json(json!({ "workers": views::workers(&state).await? })))
}

/// `?grain=` of a chart: the grain of the by-period charts (default day).
#[derive(Debug, serde::Deserialize)]
pub struct MartQuery {
    grain: Option<String>,
}

pub async fn mart(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<MartQuery>, QueryRejection>,
) -> ApiResult {
    let name = path(name)?;
    let grain = match query(q)?.grain.as_deref() {
        None => crate::marts::Grain::default(),
        Some(g) => crate::marts::Grain::parse(g).ok_or_else(|| {
            WebError::BadRequest(format!(
                "no grain `{}` (grains: minute, hour, day, week, month, year)",
                orch::text::shorten(g, orch::text::SHOWN_CHARS)
            ))
        })?,
    };
    let chart = Chart::parse(&name).ok_or_else(|| {
        WebError::NotFound(format!(
            "no chart `{name}` (charts: {})",
            Chart::every()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    match state.marts.chart_at(chart, grain).await {
        Ok(data) => Ok(Json(json!({
            "chart": chart.name(), "title": chart.title(), "mart": chart.mart(),
            "shape": chart.shape(), "grain": grain.name(), "rows": data.rows,
        }))),
        Err(e) => Err(ApiError(WebError::Conflict(e.to_string()))),
    }
}
