//! The automation tick: evaluates every automated asset's condition (`orch_core::automation`)
//! against facts read from the run history, requests the runs, and records the tick, its runs,
//! its evaluations and the next state in one transaction.
//!
//! Exactly once per tick across daemons and restarts: a tick is identified by its time (the
//! evaluation time rounded down to the interval) and by the tick it follows; both are unique
//! in storage, so of two daemons evaluating the same tick, or two ticks built on the same
//! state, one records and the other's runs are dropped with its transaction. A daemon killed
//! mid-tick recorded nothing; the next tick, by any daemon, starts from the last recorded one.
//!
//! The facts are cached in memory and kept up to date from the event log incrementally (the
//! events after a cursor, re-reading a minute behind it, since on Postgres ids can become
//! visible out of order); runs in progress are read at each tick.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orch_core::automation::{self, AssetState};
pub use orch_core::automation::{
    AssetEvaluation, AutomationState, Condition, EvaluationInput, Facts, FactsTable, Materialized,
    NodeEvaluation, ParseError, StaleReason, Window, batch_requests, evaluate, stale_partitions,
    stale_reason,
};

use crate::asset::AssetKey;
use crate::event::EventKind;
use crate::graph::AssetGraph;
use crate::plan::StepPartition;
use crate::request::{Launcher, RunRequest};
use crate::run::{RunId, RunStatus};
use crate::storage::{
    AutomationEvaluationRecord, AutomationStateRecord, AutomationTick, AutomationTickWrite,
    NewAutomationTick, RunFilter, Storage, StorageError,
};

/// Set to a number of milliseconds, the tick pauses that long between its evaluation and its
/// record: what the tests use to kill a daemon mid-tick.
pub const FAULT_PAUSE_ENV: &str = "ORCH_FAULT_AUTOMATION_PAUSE_MS";

/// How the automation tick runs.
#[derive(Clone, Debug)]
pub struct AutomationSettings {
    /// How often the daemon evaluates (and the granularity of tick times).
    pub interval: Duration,
    pub window: Window,
    /// A fault to inject: pause this long between a tick's evaluation and its record (from
    /// [`FAULT_PAUSE_ENV`] by default). Tests kill a daemon in that pause.
    pub fault_pause: Option<Duration>,
}

impl Default for AutomationSettings {
    fn default() -> Self {
        AutomationSettings {
            interval: Duration::from_secs(2),
            window: Window::default(),
            fault_pause: std::env::var(FAULT_PAUSE_ENV)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis),
        }
    }
}

/// What a tick did.
#[derive(Clone, Debug, PartialEq)]
pub enum TickOutcome {
    /// This daemon recorded the tick.
    Recorded(AutomationTick),
    /// The tick at this time was already recorded (by another daemon, or before).
    AlreadyDone,
    /// Another daemon recorded a tick while this one evaluated: nothing was written.
    Lost,
}

/// The automation of one daemon: its conditions, its facts cache and the state it last saw.
pub struct Automation {
    storage: Arc<dyn Storage>,
    graph: Arc<AssetGraph>,
    conditions: BTreeMap<AssetKey, Condition>,
    settings: AutomationSettings,
    daemon: String,
    facts: FactsCache,
    state: AutomationState,
    /// The id of the tick `state` is the result of (`None`: load it from storage).
    state_tick: Option<i64>,
    last_trees: HashMap<AssetKey, NodeEvaluation>,
}

impl Automation {
    /// The automation of `conditions` (every asset must be in `graph`).
    pub fn new(
        storage: Arc<dyn Storage>,
        graph: Arc<AssetGraph>,
        conditions: BTreeMap<AssetKey, Condition>,
        settings: AutomationSettings,
        daemon: impl Into<String>,
    ) -> Result<Automation, String> {
        for (key, condition) in &conditions {
            if !graph.contains(key) {
                return Err(format!(
                    "automation condition on `{key}`, which is not a defined asset"
                ));
            }
            for (cron, tz) in condition.crons() {
                orch_core::cron::Cron::parse(cron, tz)
                    .map_err(|e| format!("automation condition on `{key}`: cron `{cron}`: {e}"))?;
            }
        }
        Ok(Automation {
            storage,
            graph,
            conditions,
            settings,
            daemon: daemon.into(),
            facts: FactsCache::default(),
            state: AutomationState::default(),
            state_tick: None,
            last_trees: HashMap::new(),
        })
    }

    /// The conditions of every asset in `graph` that declares one.
    pub fn conditions_of(graph: &AssetGraph) -> BTreeMap<AssetKey, Condition> {
        graph
            .specs()
            .filter_map(|s| s.automation.clone().map(|c| (s.key.clone(), c)))
            .collect()
    }

    pub fn conditions(&self) -> &BTreeMap<AssetKey, Condition> {
        &self.conditions
    }

    pub fn settings(&self) -> &AutomationSettings {
        &self.settings
    }

    /// The tick that `now` falls in.
    pub fn tick_time(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let step = i64::try_from(self.settings.interval.as_millis().max(1)).unwrap_or(1000);
        let ms = now.timestamp_millis();
        DateTime::from_timestamp_millis(ms - ms.rem_euclid(step)).unwrap_or(now)
    }

    /// Evaluates and records the tick that `now` falls in (see the [module
    /// documentation](self)).
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<TickOutcome, StorageError> {
        if self.conditions.is_empty() {
            return Ok(TickOutcome::AlreadyDone);
        }
        let started = Instant::now();
        let tick_time = self.tick_time(now);
        let latest = self.storage.automation_ticks(1).await?.into_iter().next();
        if latest.as_ref().is_some_and(|t| t.tick_time >= tick_time) {
            return Ok(TickOutcome::AlreadyDone);
        }
        let latest_id = latest.as_ref().map(|t| t.id);
        if self.state_tick != latest_id || self.state_tick.is_none() {
            self.load_state().await?;
            self.state_tick = latest_id;
        }
        self.facts
            .refresh(self.storage.as_ref(), &self.graph, now)
            .await?;
        let evaluation = automation::evaluate(&EvaluationInput {
            graph: &self.graph,
            conditions: &self.conditions,
            facts: &self.facts.table,
            now,
            previous: latest.as_ref().map(|t| t.tick_time),
            state: &self.state,
            window: self.settings.window,
        });

        // The runs, and which asset's partitions each carries.
        let launcher = Launcher::Automation { tick: tick_time };
        let mut runs = Vec::new();
        let mut run_of: HashMap<AssetKey, Vec<RunId>> = HashMap::new();
        for (assets, partitions) in automation::batch_requests(&self.graph, &evaluation.assets) {
            let selection = assets
                .iter()
                .map(AssetKey::to_user_string)
                .collect::<Vec<_>>()
                .join(",");
            let mut request = RunRequest::new(selection, partitions).launched_by(&launcher);
            request.assets = Some(assets.clone());
            match request.plan(&self.graph) {
                Ok(plan) => {
                    let run = request.new_run(&plan, crate::new_run_id(), now);
                    for asset in &assets {
                        run_of.entry(asset.clone()).or_default().push(run.run_id);
                    }
                    runs.push(run);
                }
                Err(e) => {
                    tracing::warn!(selection = %request.selection, error = %e, "automation cannot plan a requested run")
                }
            }
        }
        let mut evaluations = Vec::new();
        let mut requested = 0;
        for e in &evaluation.assets {
            requested += e.requested.len();
            let changed = self.last_trees.get(&e.asset) != Some(&e.tree);
            if e.requested.is_empty() && !changed {
                continue;
            }
            evaluations.push(AutomationEvaluationRecord {
                tick_id: 0,
                tick_time: Some(tick_time),
                asset_key: e.asset.to_user_string(),
                requested: e.requested.clone(),
                run_ids: run_of.get(&e.asset).cloned().unwrap_or_default(),
                tree: serde_json::to_string(&e.tree).expect("trees serialize"),
            });
        }
        let states: Vec<AutomationStateRecord> = evaluation
            .state
            .assets
            .iter()
            .filter(|(k, s)| self.state.assets.get(*k) != Some(*s))
            .map(|(k, s)| AutomationStateRecord {
                asset_key: k.clone(),
                tick_id: 0,
                state: serde_json::to_string(s).expect("states serialize"),
            })
            .collect();
        if let Some(pause) = self.settings.fault_pause {
            tokio::time::sleep(pause).await;
        }
        let tick = NewAutomationTick {
            tick_time,
            previous_id: latest_id.unwrap_or(0),
            daemon: self.daemon.clone(),
            evaluated_at: now,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            assets_evaluated: u32::try_from(evaluation.assets.len()).unwrap_or(u32::MAX),
            requested: u32::try_from(requested).unwrap_or(u32::MAX),
        };
        let recorded = self
            .storage
            .record_automation_tick(&AutomationTickWrite {
                tick: &tick,
                runs: &runs,
                evaluations: &evaluations,
                states: &states,
            })
            .await?;
        match recorded {
            Some(tick) => {
                if !runs.is_empty() {
                    tracing::info!(tick = %tick.tick_time, runs = runs.len(), partitions = requested, "automation requested runs");
                }
                self.state = evaluation.state;
                self.state_tick = Some(tick.id);
                for e in evaluation.assets {
                    self.last_trees.insert(e.asset, e.tree);
                }
                Ok(TickOutcome::Recorded(tick))
            }
            None => {
                self.state_tick = None;
                Ok(TickOutcome::Lost)
            }
        }
    }

    async fn load_state(&mut self) -> Result<(), StorageError> {
        let mut state = AutomationState::default();
        for record in self.storage.automation_states().await? {
            match serde_json::from_str::<AssetState>(&record.state) {
                Ok(s) => {
                    state.assets.insert(record.asset_key, s);
                }
                Err(e) => {
                    tracing::warn!(asset = %record.asset_key, error = %e, "unreadable automation state; the asset starts afresh")
                }
            }
        }
        self.state = state;
        Ok(())
    }
}

/// The facts, cached and refreshed from the event log.
#[derive(Default)]
struct FactsCache {
    table: FactsTable,
    /// Events with ids up to here are in `table` and no earlier one can still appear.
    floor: i64,
    /// Ids above `floor` already applied, with their times.
    applied: BTreeMap<i64, DateTime<Utc>>,
}

/// How far behind its newest event the cache re-reads: longer than an append transaction
/// can stay open on Postgres.
const REREAD: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

impl FactsCache {
    async fn refresh(
        &mut self,
        storage: &dyn Storage,
        graph: &AssetGraph,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        const PAGE: u32 = 10_000;
        let kinds = [
            EventKind::AssetMaterialization,
            EventKind::AssetFailed,
            EventKind::AssetCheckEvaluation,
        ];
        let mut after = self.floor;
        while after < i64::MAX {
            let events = storage.events_after(after, &kinds, PAGE).await?;
            let n = events.len();
            for stored in events {
                after = after.max(stored.id);
                if self.applied.contains_key(&stored.id) {
                    continue;
                }
                self.applied.insert(stored.id, stored.event.timestamp);
                self.apply(graph, stored.id, &stored.event);
            }
            if n < PAGE as usize {
                break;
            }
        }
        // Advance the floor past events old enough that nothing before them can still appear.
        let old: Vec<i64> = self
            .applied
            .iter()
            .take_while(|(_, t)| **t < now - REREAD)
            .map(|(id, _)| *id)
            .collect();
        if let Some(last) = old.last() {
            self.floor = self.floor.max(*last);
        }
        self.applied.retain(|id, _| *id > self.floor);
        self.refresh_runs(storage, graph).await
    }

    /// Runs in progress, read afresh each tick.
    async fn refresh_runs(
        &mut self,
        storage: &dyn Storage,
        graph: &AssetGraph,
    ) -> Result<(), StorageError> {
        self.table.in_progress.clear();
        let runs = storage
            .list_runs(&RunFilter {
                statuses: vec![
                    RunStatus::Queued,
                    RunStatus::Starting,
                    RunStatus::Started,
                    RunStatus::Canceling,
                ],
                ..RunFilter::default()
            })
            .await?;
        for run in runs {
            let Ok(plan) = RunRequest::of_run(&run).plan(graph) else {
                continue;
            };
            for step in plan.steps {
                let slots: Vec<String> = match step.partition {
                    StepPartition::None => vec![String::new()],
                    StepPartition::Key { key, .. } => vec![key],
                    StepPartition::Range { keys, .. } => keys,
                };
                for asset in step.assets {
                    self.table
                        .in_progress
                        .entry(asset)
                        .or_default()
                        .extend(slots.iter().cloned());
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, graph: &AssetGraph, id: i64, event: &crate::event::Event) {
        let Some(asset) = &event.asset_key else {
            return;
        };
        let slots = slots_of(
            graph,
            asset,
            event.partition_key.as_deref(),
            event.body.partition_key_end.as_deref(),
        );
        match event.kind {
            EventKind::AssetMaterialization => {
                for slot in slots {
                    if let Some(failed) = self.table.checks_failed.get_mut(asset) {
                        failed.remove(&slot);
                    }
                    self.table.materialize(
                        asset,
                        &slot,
                        Materialized {
                            event_id: id,
                            at: event.timestamp,
                            code_version: event.body.code_version.clone(),
                        },
                    );
                }
            }
            EventKind::AssetFailed => {
                let failed = self.table.failed.entry(asset.clone()).or_default();
                for slot in slots {
                    let at = failed.entry(slot).or_insert(event.timestamp);
                    *at = (*at).max(event.timestamp);
                }
            }
            EventKind::AssetCheckEvaluation => {
                let Some(check) = &event.body.check else {
                    return;
                };
                let blocking = graph.spec(asset).is_some_and(|s| {
                    s.checks
                        .iter()
                        .any(|c| c.name == check.check_name && c.blocking)
                });
                if blocking && !check.passed {
                    self.table
                        .checks_failed
                        .entry(asset.clone())
                        .or_default()
                        .extend(slots);
                }
            }
            _ => {}
        }
    }
}

/// The partition slots an event covers: its key, or every key of its range.
fn slots_of(
    graph: &AssetGraph,
    asset: &AssetKey,
    first: Option<&str>,
    last: Option<&str>,
) -> Vec<String> {
    match (first, last) {
        (None, _) => vec![String::new()],
        (Some(k), None) => vec![k.to_owned()],
        (Some(a), Some(b)) if a == b => vec![a.to_owned()],
        (Some(a), Some(b)) => graph
            .spec(asset)
            .and_then(|s| s.partitions.as_ref())
            .and_then(|d| d.keys_in_range(a, b).ok())
            .unwrap_or_else(|| vec![a.to_owned(), b.to_owned()]),
    }
}

/// Conditions that apply to the assets a selection picks (`orch.toml`'s
/// `[[automation.condition]]`), added to (and overriding) those declared in code.
pub fn conditions_from_config(
    graph: &AssetGraph,
    rules: &[crate::config::AutomationRule],
) -> Result<BTreeMap<AssetKey, Condition>, String> {
    let mut out = BTreeMap::new();
    let mut seen = HashSet::new();
    for rule in rules {
        let condition = Condition::parse(&rule.condition).map_err(|e| e.to_string())?;
        let selected = crate::selection::Selection::parse(&rule.select)
            .and_then(|s| s.resolve(graph))
            .map_err(|e| format!("automation selection `{}`: {e}", rule.select))?;
        for key in selected {
            if !seen.insert(key.clone()) {
                return Err(format!(
                    "`{key}` is given an automation condition by two [[automation.condition]] tables"
                ));
            }
            out.insert(key, condition.clone());
        }
    }
    Ok(out)
}

/// The facts as the run history holds them now (every asset's latest materialization and
/// failure per partition, and the runs in progress): what `orch assets list` and the web UI
/// judge staleness from.
pub async fn current_facts(
    storage: &dyn Storage,
    graph: &AssetGraph,
) -> Result<FactsTable, StorageError> {
    let mut cache = FactsCache::default();
    for record in storage.asset_partitions(&[]).await? {
        let slot = record.partition_key.clone().unwrap_or_default();
        if let Some(m) = &record.materialization {
            cache.table.materialize(
                &record.asset_key,
                &slot,
                Materialized {
                    event_id: m.event_id,
                    at: m.timestamp,
                    code_version: m.code_version.clone(),
                },
            );
        }
        if let Some(f) = &record.last_failure {
            cache
                .table
                .failed
                .entry(record.asset_key.clone())
                .or_default()
                .insert(slot, f.timestamp);
        }
    }
    // Only the runs in progress: no events to read.
    cache.floor = i64::MAX;
    cache.refresh_runs(storage, graph).await?;
    Ok(cache.table)
}

/// The steps of `plan` with an asset partition that is missing or stale: what
/// `orch materialize --stale-only` keeps.
pub fn stale_or_missing_steps(
    graph: &AssetGraph,
    facts: &FactsTable,
    plan: &crate::plan::Plan,
) -> std::collections::BTreeSet<String> {
    use orch_core::automation::Facts as _;
    plan.steps
        .iter()
        .filter(|step| {
            let slots: Vec<String> = match &step.partition {
                StepPartition::None => vec![String::new()],
                StepPartition::Key { key, .. } => vec![key.clone()],
                StepPartition::Range { keys, .. } => keys.clone(),
            };
            step.assets.iter().any(|asset| {
                slots.iter().any(|slot| {
                    let part = (!slot.is_empty()).then_some(slot.as_str());
                    facts.materialized(asset, part).is_none()
                        || stale_reason(graph, facts, asset, slot).is_some()
                })
            })
        })
        .map(|step| step.key.clone())
        .collect()
}

/// `status:` selection terms answered from facts (see [`current_facts`]).
pub struct FactsStatus<'a> {
    pub graph: &'a AssetGraph,
    pub facts: &'a FactsTable,
}

impl crate::selection::StatusLookup for FactsStatus<'_> {
    fn has_status(&self, asset: &AssetKey, status: crate::selection::AssetStatus) -> bool {
        use crate::selection::AssetStatus;
        let materialized = self.facts.materialized.get(asset);
        match status {
            AssetStatus::Stale => !stale_partitions(self.graph, self.facts, asset).is_empty(),
            AssetStatus::Missing => materialized.is_none_or(|m| m.is_empty()),
            AssetStatus::Materialized => materialized.is_some_and(|m| !m.is_empty()),
            AssetStatus::Failed => self.facts.failed.get(asset).is_some_and(|failed| {
                failed.iter().any(|(slot, at)| {
                    materialized
                        .and_then(|m| m.get(slot))
                        .is_none_or(|m| m.at < *at)
                })
            }),
        }
    }
}
