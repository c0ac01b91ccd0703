//! What the UI and the API can change: materialize a selection (one partition, a range or
//! none), launch a backfill, cancel a run, re-execute one (whole or from its failure), switch a
//! schedule. Runs are queued: the daemon (in `orch dev`, or `orch daemon`) executes them.
//! The form handlers check the CSRF token and redirect; the API handlers live in `api.rs`.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use orch::Run;
use orch::backfill::{self, launch_backfill, plan_backfill};
use orch::execute::{ReexecuteError, reexecution};
use orch::plan::{PartitionRequest, PlanError};
use orch::request::{Launcher, RequestError, RunRequest};
use orch::storage::{Backfill, StorageError};
use orch::submit::{Submit, SubmitError, submit};
use serde::Deserialize;

use crate::AppState;
use crate::error::{PageError, WebError};
use crate::security::TOKEN_COOKIE;
use crate::views::{get_run, resolve_selection};

/// A materialization request, from the form or the API.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct MaterializeRequest {
    pub selection: String,
    /// One partition key.
    #[serde(default)]
    pub partition: Option<String>,
    /// A range of partition keys, both included.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl MaterializeRequest {
    fn partitions(&self) -> Result<PartitionRequest, WebError> {
        match (
            nonempty(&self.partition),
            nonempty(&self.from),
            nonempty(&self.to),
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(WebError::BadRequest(
                "give either a partition or a range (from, to), not both".into(),
            )),
            (Some(key), None, None) => Ok(PartitionRequest::Key(key)),
            (None, Some(from), Some(to)) => Ok(PartitionRequest::Range { from, to }),
            (None, Some(_), None) | (None, None, Some(_)) => Err(WebError::BadRequest(
                "a range needs both `from` and `to`".into(),
            )),
            (None, None, None) => Ok(PartitionRequest::None),
        }
    }
}

fn plan_error(e: impl std::fmt::Display) -> WebError {
    WebError::BadRequest(e.to_string())
}

/// Queues the run of `request`: a bad request is the user's to fix (400), in the words of the
/// form and the API (their fields), not the CLI's flags.
async fn queue(state: &AppState, request: &RunRequest) -> Result<Run, WebError> {
    match submit(state.storage.as_ref(), &state.graph, request, Submit::Queue).await {
        Ok(submitted) => Ok(submitted.run),
        Err(SubmitError::Request(e @ RequestError::Selection(_))) => {
            Err(WebError::BadRequest(format!("bad selection: {e}")))
        }
        Err(SubmitError::Request(RequestError::Plan(PlanError::PartitionRequired {
            asset,
            partitions,
        }))) => Err(WebError::BadRequest(format!(
            "`{asset}` is partitioned ({partitions}): give a `partition` key, or a range with `from` and `to`"
        ))),
        Err(SubmitError::Request(e)) => Err(plan_error(e)),
        Err(SubmitError::Storage(e)) => Err(e.into()),
    }
}

/// Plans `request` and queues its run.
pub async fn materialize(state: &AppState, request: &MaterializeRequest) -> Result<Run, WebError> {
    let partitions = request.partitions()?;
    if matches!(partitions, PartitionRequest::Range { .. }) {
        let selected = resolve_selection(state, &request.selection)?;
        orch::plan::check_range_size(
            &state.graph,
            &selected,
            &partitions,
            state.max_range_partitions,
        )
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    }
    let run = RunRequest::new(request.selection.as_str(), partitions).launched_by(&Launcher::Web);
    queue(state, &run).await
}

/// A backfill request: one queued run per partition of the range.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct BackfillRequest {
    pub selection: String,
    pub from: String,
    pub to: String,
    /// Queue it even if it makes more runs than `confirm_runs_above`.
    #[serde(default)]
    pub confirm: bool,
}

pub async fn backfill(state: &AppState, request: &BackfillRequest) -> Result<Backfill, WebError> {
    let selection = request.selection.trim();
    let (from, to) = (request.from.trim(), request.to.trim());
    if from.is_empty() || to.is_empty() {
        return Err(WebError::BadRequest(
            "a backfill needs `from` and `to` partition keys".into(),
        ));
    }
    let selected = resolve_selection(state, selection)?;
    let planned = plan_backfill(
        &state.graph,
        &backfill::BackfillRequest {
            selection,
            selected: &selected,
            from,
            to,
            single_run: false,
            max_partitions: state.max_range_partitions,
            tags: BTreeMap::new(),
        },
    )
    .map_err(plan_error)?;
    let limit = state.confirm_runs_above;
    if planned.runs.len() > limit && !request.confirm {
        return Err(WebError::BadRequest(format!(
            "this backfill would queue {} runs, more than {limit} (`confirm_runs_above` under [limits] in orch.toml): confirm it (`\"confirm\": true`, or the form's checkbox), or narrow from/to",
            planned.runs.len()
        )));
    }
    Ok(launch_backfill(state.storage.as_ref(), &planned).await?)
}

pub async fn cancel(state: &AppState, id: &str) -> Result<Run, WebError> {
    let run = get_run(state, id).await?;
    match state.storage.request_cancel(run.run_id, Utc::now()).await {
        Ok(run) => Ok(run),
        Err(StorageError::IllegalTransition { from, .. }) => Err(WebError::Conflict(format!(
            "run {} is {from}: only a queued or running run can be canceled",
            run.run_id
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Queues a new run of a finished run's plan: whole, or only the steps that did not succeed.
pub async fn reexecute(state: &AppState, id: &str, from_failure: bool) -> Result<Run, WebError> {
    let parent = get_run(state, id).await?;
    let request = reexecution(state.storage.as_ref(), &state.graph, &parent, from_failure)
        .await
        .map_err(|e| match e {
            ReexecuteError::Storage(e) => e.into(),
            e => WebError::Conflict(e.to_string()),
        })?;
    queue(state, &request).await
}

pub async fn set_schedule(state: &AppState, name: &str, enabled: bool) -> Result<bool, WebError> {
    if !state.schedules.iter().any(|s| s.name == name) {
        let names: Vec<&str> = state.schedules.iter().map(|s| s.name.as_str()).collect();
        return Err(WebError::NotFound(format!(
            "no schedule `{name}` (schedules: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    }
    let st = state
        .storage
        .set_schedule_enabled(name, enabled, Utc::now())
        .await?;
    Ok(st.enabled)
}

// --- Form handlers: CSRF-checked, answered with a redirect (303) ---
//
// A form posted by htmx (`HX-Request`) gets its error as a fragment that htmx puts beside the
// form, which keeps what the user typed; its success is an `HX-Redirect`. Without JavaScript
// the browser gets the redirect, or an error page.

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// A form's answer: where to go next, or why not.
fn answer(headers: &HeaderMap, result: Result<String, WebError>) -> Response {
    let htmx = is_htmx(headers);
    match result {
        Ok(to) if htmx => ([("hx-redirect", to)], "").into_response(),
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) if htmx => {
            let status = e.status();
            let message = crate::charts::esc(&e.public_message());
            (
                status,
                Html(format!(
                    "<p class=\"error form-error\" role=\"alert\">{message}</p>"
                )),
            )
                .into_response()
        }
        Err(e) => PageError(e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct MaterializeForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    request: MaterializeRequest,
}

pub async fn materialize_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<MaterializeForm>,
) -> Response {
    let result = async {
        state.security.check_form(&headers, &form.csrf)?;
        let run = materialize(&state, &form.request).await?;
        Ok(format!("/runs/{}", run.run_id))
    };
    answer(&headers, result.await)
}

#[derive(Debug, Deserialize)]
pub struct BackfillForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    request: BackfillRequest,
}

pub async fn backfill_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<BackfillForm>,
) -> Response {
    let result = async {
        state.security.check_form(&headers, &form.csrf)?;
        let b = backfill(&state, &form.request).await?;
        Ok(format!("/backfills/{}", b.id))
    };
    answer(&headers, result.await)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    from_failure: Option<String>,
}

pub async fn cancel_form(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let result = async {
        state.security.check_form(&headers, &form.csrf)?;
        let run = cancel(&state, &run_id).await?;
        Ok(format!("/runs/{}", run.run_id))
    };
    answer(&headers, result.await)
}

pub async fn reexecute_form(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let result = async {
        state.security.check_form(&headers, &form.csrf)?;
        let from_failure = form
            .from_failure
            .as_deref()
            .is_some_and(|v| v == "true" || v == "on");
        let run = reexecute(&state, &run_id, from_failure).await?;
        Ok(format!("/runs/{}", run.run_id))
    };
    answer(&headers, result.await)
}

#[derive(Debug, Deserialize)]
pub struct ToggleForm {
    #[serde(default)]
    csrf: String,
    enabled: String,
}

pub async fn toggle_schedule_form(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ToggleForm>,
) -> Result<Redirect, PageError> {
    state.security.check_form(&headers, &form.csrf)?;
    let enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(
                WebError::BadRequest(format!("bad `enabled={other}`: use true or false")).into(),
            );
        }
    };
    set_schedule(&state, &name, enabled).await?;
    Ok(Redirect::to("/schedules"))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    token: String,
}

/// Checks the access token and keeps it in an HttpOnly, SameSite=Strict cookie.
pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    if form.csrf != state.security.csrf() {
        return Err(WebError::Forbidden(
            "this form is stale: reload the page and try again".into(),
        )
        .into());
    }
    let _ = headers;
    if !state.security.login_accepts(&form.token) {
        return Err(WebError::Forbidden("the access token is wrong".into()).into());
    }
    let cookie = format!(
        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        form.token
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
