//! What pages and the API show, gathered from the run history and the graph: serializable
//! view types (the API's JSON) and the queries that fill them, with the request parameters
//! parsed into typed filters (bad input becomes a [`WebError::BadRequest`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use orch::event::{EventKind, StoredEvent};
use orch::storage::{Backfill, ComponentHeartbeat, EventFilter, RunFilter, Tick};
use orch::{AssetKey, Run, RunId, Selection};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::WebError;

mod assets;
mod runs;
pub use assets::*;
pub use runs::*;

/// Most runs on one page of the runs list.
pub const MAX_PAGE: u32 = 500;
/// Runs on one page unless `limit` says otherwise.
pub const DEFAULT_PAGE: u32 = 50;

pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A time with milliseconds, for event logs (events a few ms apart read in their order).
pub fn fmt_time_ms(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// A run id as tables show it: the last 8 hex digits of the UUIDv7, its random tail. (The head
/// is the creation time, the same for runs created in the same minute.)
pub fn short_run_id(id: &RunId) -> String {
    id.short()
}

/// What launched a run, from its tags: `schedule hourly`, `sensor x`, `backfill b-1`,
/// `automation`, `web`, `cli`, ...
pub fn launched_by(tags: &BTreeMap<String, String>) -> String {
    use orch::request::tags;
    let by = tags.get(tags::LAUNCHED_BY).map(String::as_str);
    let named = |tag: &str| tags.get(tag).map(String::as_str).unwrap_or_default();
    match by {
        Some("schedule") => format!("schedule {}", named(tags::SCHEDULE)),
        Some("sensor") => format!("sensor {}", named(tags::SENSOR)),
        Some("backfill") => format!("backfill {}", named(tags::BACKFILL)),
        Some(other) => other.to_owned(),
        None if tags.contains_key(tags::AUTOMATION_TICK) => "automation".to_owned(),
        None if tags.contains_key(tags::BACKFILL) => {
            format!("backfill {}", named(tags::BACKFILL))
        }
        None => String::new(),
    }
}

pub fn fmt_duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0) as u64;
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

pub fn parse_run_id(s: &str) -> Result<RunId, WebError> {
    RunId::parse(s).map_err(|_| {
        WebError::BadRequest(format!(
            "`{s}` is not a run id (a UUID, as `orch runs list` prints)"
        ))
    })
}

pub fn parse_asset_key(s: &str) -> Result<AssetKey, WebError> {
    AssetKey::parse(s).map_err(|e| WebError::BadRequest(format!("bad asset key `{s}`: {e}")))
}

/// A key of the graph, or a 404 naming the nearest key.
pub fn known_asset(state: &AppState, s: &str) -> Result<AssetKey, WebError> {
    let key = parse_asset_key(s)?;
    if state.graph.contains(&key) {
        return Ok(key);
    }
    let hint = state
        .graph
        .nearest_key(s)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    Err(WebError::NotFound(format!("no asset `{s}`{hint}")))
}

/// A selection parsed and resolved against the graph; errors say what is wrong.
pub fn resolve_selection(state: &AppState, input: &str) -> Result<BTreeSet<AssetKey>, WebError> {
    let selection =
        Selection::parse(input).map_err(|e| WebError::BadRequest(format!("bad selection: {e}")))?;
    selection
        .resolve(&state.graph)
        .map_err(|e| WebError::BadRequest(format!("bad selection: {e}")))
}

/// [`resolve_selection`], with `status:` terms (`status:stale`, `status:missing`, ...)
/// answered from the run history as it is now.
pub async fn resolve_selection_now(
    state: &AppState,
    input: &str,
) -> Result<BTreeSet<AssetKey>, WebError> {
    if !input.contains("status:") {
        return resolve_selection(state, input);
    }
    let selection =
        Selection::parse(input).map_err(|e| WebError::BadRequest(format!("bad selection: {e}")))?;
    let facts = orch::automation::current_facts(state.storage.as_ref(), &state.graph).await?;
    let status = orch::automation::FactsStatus {
        graph: &state.graph,
        facts: &facts,
    };
    selection
        .resolve_with(&state.graph, &status)
        .map_err(|e| WebError::BadRequest(format!("bad selection: {e}")))
}

/// The assets among `keys` with a stale materialized partition (an upstream materialized after
/// it, or its code version changed).
pub async fn stale_assets(
    state: &AppState,
    keys: &BTreeSet<AssetKey>,
) -> Result<BTreeSet<AssetKey>, WebError> {
    let facts = orch::automation::current_facts(state.storage.as_ref(), &state.graph).await?;
    Ok(keys
        .iter()
        .filter(|k| !orch::automation::stale_partitions(&state.graph, &facts, k).is_empty())
        .cloned()
        .collect())
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

#[derive(Clone, Debug, Serialize)]
pub struct RunView {
    pub run_id: String,
    pub short_id: String,
    /// The run's position in the history: the keyset cursor.
    pub position: i64,
    pub status: String,
    pub selection: String,
    pub assets: Vec<String>,
    pub partition: Option<String>,
    pub partition_end: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// What launched it (schedule, sensor, backfill, automation, web, cli).
    pub launched_by: String,
    pub parent_run_id: Option<String>,
    pub root_run_id: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration: Option<String>,
    pub is_terminal: bool,
}

impl RunView {
    pub fn new(run: &Run) -> RunView {
        let duration = match (run.started_at, run.ended_at) {
            (Some(s), Some(e)) => Some(fmt_duration((e - s).num_milliseconds() as f64)),
            (Some(s), None) => Some(format!(
                "{} so far",
                fmt_duration((Utc::now() - s).num_milliseconds() as f64)
            )),
            _ => None,
        };
        RunView {
            run_id: run.run_id.to_string(),
            short_id: short_run_id(&run.run_id),
            position: run.id,
            status: run.status.as_str().to_owned(),
            selection: run.selection.clone(),
            assets: run.asset_keys.iter().map(|k| k.to_string()).collect(),
            partition: run.partition_key.clone(),
            partition_end: run.partition_key_end.clone(),
            tags: run.tags.clone(),
            launched_by: launched_by(&run.tags),
            parent_run_id: run.parent_run_id.map(|r| r.to_string()),
            root_run_id: run.root_run_id.map(|r| r.to_string()),
            created_at: fmt_time(run.created_at),
            started_at: run.started_at.map(fmt_time),
            ended_at: run.ended_at.map(fmt_time),
            duration,
            is_terminal: run.status.is_terminal(),
        }
    }

    /// The assets, shortened for a table cell.
    pub fn assets_summary(&self) -> String {
        match self.assets.len() {
            0 => String::new(),
            1..=3 => self.assets.join(", "),
            n => format!("{}, {} and {} more", self.assets[0], self.assets[1], n - 2),
        }
    }

    pub fn partition_display(&self) -> String {
        match (&self.partition, &self.partition_end) {
            (Some(a), Some(b)) => format!("{a} … {b}"),
            (Some(a), None) => a.clone(),
            _ => String::new(),
        }
    }
}

pub async fn get_run(state: &AppState, id: &str) -> Result<Run, WebError> {
    let run_id = parse_run_id(id)?;
    state
        .storage
        .get_run(run_id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("run {run_id} does not exist")))
}

#[derive(Clone, Debug, Serialize)]
pub struct EventView {
    pub id: i64,
    pub kind: String,
    pub step_key: Option<String>,
    pub asset_key: Option<String>,
    pub partition: Option<String>,
    pub timestamp: String,
    pub message: String,
    pub error: Option<String>,
}

impl EventView {
    pub fn new(e: &StoredEvent) -> EventView {
        let body = &e.event.body;
        let mut message = body.message.clone().unwrap_or_default();
        if let Some(check) = &body.check {
            message = format!(
                "check {} {}{}",
                check.check_name,
                if check.passed { "passed" } else { "failed" },
                check
                    .description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
        }
        if message.is_empty() && !body.metadata.is_empty() {
            message = body
                .metadata
                .iter()
                .map(|(k, v)| match (v.as_i64(), v.as_f64()) {
                    (Some(i), _) => format!("{k}={i}"),
                    (None, Some(f)) => format!("{k}={f}"),
                    _ => {
                        let json = serde_json::to_value(v).unwrap_or_default();
                        format!("{k}={}", json.get("value").unwrap_or(&json))
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        }
        EventView {
            id: e.id,
            kind: e.event.kind.as_str().to_owned(),
            step_key: e.event.step_key.clone(),
            asset_key: e.event.asset_key.as_ref().map(|k| k.to_string()),
            partition: e.event.partition_key.clone(),
            timestamp: fmt_time_ms(e.event.timestamp),
            message,
            error: body.error.as_ref().map(|err| {
                std::iter::once(err.message.as_str())
                    .chain(err.causes.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(": ")
            }),
        }
    }
}

/// The event filter of the run page and its API: `kind` (comma separated) and `step`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct EventsQuery {
    pub kind: Option<String>,
    pub step: Option<String>,
    pub after: Option<String>,
    /// The least log level shown on the run page (`debug`, `info`, `warn`, `error`).
    pub level: Option<String>,
}

impl EventsQuery {
    /// The least log level asked for, if any.
    pub fn min_level(&self) -> Result<Option<orch::event::LogLevel>, WebError> {
        match self
            .level
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            None => Ok(None),
            Some(l) => orch::event::LogLevel::parse(&l.to_ascii_uppercase())
                .map(Some)
                .ok_or_else(|| {
                    WebError::BadRequest(format!(
                        "unknown log level `{l}` (use debug, info, warn or error)"
                    ))
                }),
        }
    }

    pub fn filter(&self) -> Result<EventFilter, WebError> {
        let mut filter = EventFilter::default();
        if let Some(kinds) = self.kind.as_deref().filter(|k| !k.trim().is_empty()) {
            for k in kinds.split(',').map(str::trim) {
                filter
                    .kinds
                    .push(EventKind::parse(&k.to_ascii_uppercase()).ok_or_else(|| {
                        WebError::BadRequest(format!(
                            "unknown event kind `{k}` (use one of {})",
                            EventKind::ALL.map(|k| k.as_str()).join(", ")
                        ))
                    })?);
            }
        }
        filter.step_key = self.step.clone().filter(|s| !s.trim().is_empty());
        if let Some(after) = self.after.as_deref().filter(|a| !a.is_empty()) {
            filter.after_id = Some(after.parse().map_err(|_| {
                WebError::BadRequest(format!("bad `after={after}`: use an event id"))
            })?);
        }
        Ok(filter)
    }
}

/// One step of a run, derived from its events (and its plan, for steps not started yet).
#[derive(Clone, Debug, Serialize)]
pub struct StepView {
    pub key: String,
    pub status: String,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub duration_ms: Option<f64>,
    pub error: Option<String>,
    #[serde(skip)]
    pub start: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub end: Option<DateTime<Utc>>,
}

pub fn steps_of(state: &AppState, run: &Run, events: &[StoredEvent]) -> Vec<StepView> {
    let planned: Vec<String> = orch::daemon::plan_for_run(&state.graph, run)
        .map(|plan| plan.steps.into_iter().map(|s| s.key).collect())
        .unwrap_or_default();
    orch::steps::fold_steps(planned, events.iter().map(|e| &e.event), run.status)
        .into_iter()
        .map(|step| StepView {
            key: step.key,
            status: step.state.as_str().to_owned(),
            attempts: step.attempts,
            started_at: step.started_at.map(fmt_time),
            duration_ms: step.duration_ms,
            error: step.error,
            start: step.started_at,
            end: step.ended_at,
        })
        .collect()
}

/// A run's events in the order they happened (their times, then the order they were stored
/// in): a run's RUN_ENQUEUED, stored just after the run itself, may land after a fast daemon's
/// first STEP_START.
pub fn in_time_order(events: &mut [StoredEvent]) {
    events.sort_by(|a, b| {
        a.event
            .timestamp
            .cmp(&b.event.timestamp)
            .then(a.id.cmp(&b.id))
    });
}

/// The steps of one asset (or multi-asset) over its partitions: one row of the Gantt chart and
/// one collapsible row of the steps table.
#[derive(Clone, Debug, Serialize)]
pub struct StepGroup {
    /// The step key without its partition.
    pub name: String,
    /// The group's status: FAILURE if one failed, else RUNNING if one runs, else SUCCESS if
    /// all succeeded, else the first other status.
    pub status: String,
    /// `3 SUCCESS, 1 RUNNING`.
    pub summary: String,
    pub steps: Vec<StepView>,
    #[serde(skip)]
    pub start: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub end: Option<DateTime<Utc>>,
    /// Still running (its end is now).
    pub open: bool,
}

impl StepGroup {
    pub fn is_single(&self) -> bool {
        self.steps.len() == 1
    }
}

/// The step key without its partition: `a/b[2026-11-22-10:00]` is `a/b`.
fn step_group_name(key: &str) -> &str {
    key.split_once('[').map_or(key, |(name, _)| name)
}

/// Groups steps by asset (their key without the partition), in the order of their first step.
pub fn group_steps(steps: &[StepView]) -> Vec<StepGroup> {
    let mut groups: Vec<StepGroup> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for step in steps {
        let name = step_group_name(&step.key);
        let i = *index.entry(name).or_insert_with(|| {
            groups.push(StepGroup {
                name: name.to_owned(),
                status: String::new(),
                summary: String::new(),
                steps: Vec::new(),
                start: None,
                end: None,
                open: false,
            });
            groups.len() - 1
        });
        groups[i].steps.push(step.clone());
    }
    for g in &mut groups {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &g.steps {
            *counts.entry(s.status.as_str()).or_default() += 1;
        }
        let has = |st: &str| counts.contains_key(st);
        g.status = if has("FAILURE") {
            "FAILURE"
        } else if has("RUNNING") || has("RETRYING") {
            "RUNNING"
        } else if counts.len() == 1 && has("SUCCESS") {
            "SUCCESS"
        } else {
            g.steps
                .iter()
                .map(|s| s.status.as_str())
                .find(|s| *s != "SUCCESS")
                .unwrap_or("SUCCESS")
        }
        .to_owned();
        g.summary = counts
            .iter()
            .map(|(st, n)| format!("{n} {st}"))
            .collect::<Vec<_>>()
            .join(", ");
        g.start = g.steps.iter().filter_map(|s| s.start).min();
        g.open = g.steps.iter().any(|s| s.start.is_some() && s.end.is_none());
        g.end = g.steps.iter().filter_map(|s| s.end).max();
    }
    groups
}

#[derive(Clone, Debug, Serialize)]
pub struct LogView {
    pub step_key: String,
    pub stream: String,
    pub level: String,
    pub timestamp: String,
    pub message: String,
}

impl LogView {
    pub fn new(l: &orch::event::LogLine) -> LogView {
        LogView {
            step_key: l.step_key.clone(),
            stream: l.stream.as_str().to_owned(),
            level: l.level.as_str().to_owned(),
            timestamp: fmt_time(l.timestamp),
            message: l.message.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TickView {
    pub tick_time: String,
    pub status: String,
    pub run_id: Option<String>,
    pub message: Option<String>,
}

impl TickView {
    pub fn new(t: &Tick) -> TickView {
        TickView {
            tick_time: fmt_time(t.tick_time),
            status: t.status.as_str().to_owned(),
            run_id: t.run_id.map(|r| r.to_string()),
            message: t.message.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ScheduleView {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub selection: String,
    pub enabled: bool,
    pub next_tick: Option<String>,
    pub ticks: Vec<TickView>,
}

pub async fn schedules(state: &AppState, ticks: u32) -> Result<Vec<ScheduleView>, WebError> {
    let states = state.storage.schedule_states().await?;
    let now = Utc::now();
    let mut out = Vec::new();
    for s in state.schedules.iter() {
        let enabled = states
            .iter()
            .find(|st| st.name == s.name)
            .map(|st| st.enabled)
            .unwrap_or(s.default_enabled);
        out.push(ScheduleView {
            name: s.name.clone(),
            cron: s.cron.clone(),
            timezone: s.timezone.name().to_owned(),
            selection: s.selection.as_str().to_owned(),
            enabled,
            next_tick: enabled.then(|| s.next_tick(now)).flatten().map(fmt_time),
            ticks: recent_ticks(state, &s.name, ticks).await?,
        });
    }
    Ok(out)
}

#[derive(Clone, Debug, Serialize)]
pub struct SensorView {
    pub name: String,
    /// Its latest ticks: each run it requested, with why (a late file's hour, a failed run).
    pub ticks: Vec<TickView>,
}

/// The latest `n` ticks of a schedule or sensor.
async fn recent_ticks(state: &AppState, name: &str, n: u32) -> Result<Vec<TickView>, WebError> {
    Ok(state
        .storage
        .schedule_ticks(name, n)
        .await?
        .iter()
        .map(TickView::new)
        .collect())
}

pub async fn sensors(state: &AppState, ticks: u32) -> Result<Vec<SensorView>, WebError> {
    let mut out = Vec::new();
    for name in state.sensors.iter() {
        out.push(SensorView {
            name: name.clone(),
            ticks: recent_ticks(state, name, ticks).await?,
        });
    }
    Ok(out)
}

#[derive(Clone, Debug, Serialize)]
pub struct BackfillView {
    pub id: String,
    pub selection: String,
    pub from: String,
    pub to: String,
    pub run_count: u32,
    pub created_at: String,
    pub by_status: BTreeMap<String, u64>,
    pub ended: u64,
    pub percent: u32,
}

pub async fn backfill_view(state: &AppState, b: &Backfill) -> Result<BackfillView, WebError> {
    let counts = state
        .storage
        .count_runs_by_status(orch::request::tags::BACKFILL, &b.id)
        .await?;
    let ended: u64 = counts
        .iter()
        .filter(|(s, _)| s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    let percent = if b.run_count == 0 {
        100
    } else {
        (ended * 100 / u64::from(b.run_count)).min(100) as u32
    };
    Ok(BackfillView {
        id: b.id.clone(),
        selection: b.selection.clone(),
        from: b.partition_from.clone(),
        to: b.partition_to.clone(),
        run_count: b.run_count,
        created_at: fmt_time(b.created_at),
        by_status: counts
            .iter()
            .map(|(s, n)| (s.as_str().to_owned(), *n))
            .collect(),
        ended,
        percent,
    })
}

/// The kind of the stream workers' heartbeats in the run history
/// ([`ComponentHeartbeat::kind`]).
pub const STREAM_WORKER: &str = "stream_worker";

/// What a stream worker's heartbeat says about it ([`ComponentHeartbeat::detail`] of kind
/// [`STREAM_WORKER`]): written by `orch stream`, shown by the workers page. Fields it lacks
/// read as empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamWorkerDetail {
    /// Its consumer group.
    pub group_id: String,
    pub topics: Vec<String>,
    /// The partitions it holds, as `topic:partition`.
    pub partitions: Vec<String>,
    /// Records behind the end of its partitions, summed (`None`: not known yet).
    pub lag: Option<i64>,
    /// Records read, written to the lake and dead-lettered since it started.
    pub events_in: i64,
    pub events_written: i64,
    pub dead_lettered: i64,
    /// Records read per second between its last two heartbeats.
    pub events_per_sec: f64,
    /// The last lake file it wrote.
    pub last_file: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkerView {
    pub worker_id: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub partitions: Vec<String>,
    /// `None` until the worker's client has reported it.
    pub lag: Option<i64>,
    pub events_in: i64,
    pub events_written: i64,
    pub dead_lettered: i64,
    pub events_per_sec: f64,
    pub last_file: Option<String>,
    pub started_at: String,
    pub heartbeat_at: String,
    /// It said it stopped.
    pub stopped: bool,
    /// Running, but no heartbeat for a minute.
    pub stale: bool,
}

impl WorkerView {
    /// A stream worker's heartbeat as shown at `now`. A detail that does not read as a
    /// [`StreamWorkerDetail`] shows as empty: the beat itself still says the worker lives.
    pub fn from_heartbeat(beat: ComponentHeartbeat, now: DateTime<Utc>) -> WorkerView {
        let detail: StreamWorkerDetail = serde_json::from_value(beat.detail).unwrap_or_default();
        let stopped = beat.stopped_at.is_some();
        WorkerView {
            stale: !stopped && now - beat.last_seen > Duration::minutes(1),
            stopped,
            worker_id: beat.name,
            group_id: detail.group_id,
            topics: detail.topics,
            partitions: detail.partitions,
            lag: detail.lag,
            events_in: detail.events_in,
            events_written: detail.events_written,
            dead_lettered: detail.dead_lettered,
            events_per_sec: detail.events_per_sec,
            last_file: detail.last_file,
            started_at: fmt_time(beat.started_at),
            heartbeat_at: fmt_time(beat.last_seen),
        }
    }
}

/// Workers seen in the last hour.
pub async fn workers(state: &AppState) -> Result<Vec<WorkerView>, WebError> {
    let now = Utc::now();
    let beats = state
        .storage
        .component_heartbeats(STREAM_WORKER, now - Duration::hours(1))
        .await?;
    Ok(beats
        .into_iter()
        .map(|beat| WorkerView::from_heartbeat(beat, now))
        .collect())
}

#[derive(Debug, Serialize)]
pub struct Overview {
    pub run_counts: BTreeMap<String, u64>,
    pub recent_runs: Vec<RunView>,
    pub failing_assets: Vec<AssetRow>,
    pub asset_count: usize,
    pub schedules: Vec<ScheduleView>,
    pub workers: Vec<WorkerView>,
    pub daemons: Vec<String>,
}

pub async fn overview(state: &AppState) -> Result<Overview, WebError> {
    let counts = state.storage.run_status_counts().await?;
    let recent = state
        .storage
        .list_runs(&RunFilter {
            limit: Some(10),
            ..RunFilter::default()
        })
        .await?;
    let rows = asset_rows(state, None).await?;
    let asset_count = rows.len();
    let daemons = state
        .storage
        .daemon_heartbeats(Utc::now() - Duration::minutes(1))
        .await?
        .into_iter()
        .map(|d| d.daemon_id)
        .collect();
    Ok(Overview {
        run_counts: counts
            .iter()
            .map(|(s, n)| (s.as_str().to_owned(), *n))
            .collect(),
        recent_runs: recent.iter().map(RunView::new).collect(),
        failing_assets: rows.into_iter().filter(|r| r.state == "FAILED").collect(),
        asset_count,
        schedules: schedules(state, 1).await?,
        workers: workers(state).await?,
        daemons,
    })
}
