//! The daemon: schedules, the run queue's workers and the reaper of expired leases, in one
//! process. Several daemons may share one Postgres; one daemon owns a SQLite file.
//!
//! - Schedules: every `schedule_interval`, each enabled schedule's ticks since its last
//!   recorded tick are recorded with their run, through `Storage::record_tick`, whose unique
//!   (schedule, tick time) makes a tick produce exactly one run however many daemons race.
//! - Workers: claim QUEUED runs (`Storage::claim_run`, `FOR UPDATE SKIP LOCKED` on Postgres)
//!   up to `local_runs` at once, execute them, and renew their lease every `heartbeat`; a run
//!   asked to cancel (CANCELING) is seen at renewal and canceled; a lost lease stops the run.
//! - Reaper: runs whose lease expired (their daemon died) are failed with the reason in their
//!   events, and re-queued as a new run when the policy says so.

pub mod freshness;
pub mod schedule;
pub mod sensor;
mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ExecutionConfig;
use crate::context::Resources;
use crate::event::{Event, EventKind};
use crate::graph::AssetGraph;
use crate::plan::Plan;
use crate::request::{Launcher, RequestError, RunRequest, tags};
use crate::run::Run;
use crate::storage::{DaemonHeartbeat, NewTick, NewViolation, Storage, StorageError, TickRecord};

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use schedule::{Catchup, PartitionRule, ScheduleDefinition, ScheduleError};
pub use sensor::{LakeListing, LakeSensor, RunFailureSensor, Sensor, SensorContext, SensorOutput};

use crate::metrics::DaemonMetrics;
use crate::notify::{Notification, Notifier};

/// What to do with a run whose daemon died (its lease expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiredPolicy {
    /// Fail it.
    Fail,
    /// Fail it and queue a new run of the same selection and partitions, up to this many
    /// times in a chain.
    Requeue { max: u32 },
}

/// How a daemon behaves.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// This daemon's name in leases and heartbeats.
    pub id: String,
    /// Runs started at once across all daemons (`None`: no limit).
    pub max_concurrent_runs: Option<u32>,
    /// Runs this daemon executes at once.
    pub local_runs: usize,
    /// How long a claimed run's lease lasts without renewal.
    pub lease: Duration,
    /// How often leases are renewed and the daemon's heartbeat written.
    pub heartbeat: Duration,
    /// The longest a worker waits before looking at the queue again (a NOTIFY wakes it
    /// sooner).
    pub poll: Duration,
    /// How often schedules are evaluated and expired leases reaped.
    pub schedule_interval: Duration,
    /// How often assets' freshness policies are checked.
    pub freshness_interval: Duration,
    /// Event-log retention: finished runs that ended longer ago than this are deleted with
    /// their events and logs, once an hour (`None`: kept for ever).
    pub retention: Option<Duration>,
    pub expired: ExpiredPolicy,
    pub execution: ExecutionConfig,
    pub pools: BTreeMap<String, usize>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            id: format!(
                "daemon-{}-{}",
                std::process::id(),
                &uuid::Uuid::now_v7().simple().to_string()[24..]
            ),
            max_concurrent_runs: None,
            local_runs: 4,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            poll: Duration::from_secs(1),
            schedule_interval: Duration::from_secs(1),
            freshness_interval: Duration::from_secs(30),
            retention: None,
            expired: ExpiredPolicy::Fail,
            execution: ExecutionConfig::default(),
            pools: BTreeMap::new(),
        }
    }
}

/// How often the retention pass runs, and how many runs it deletes per transaction and pass.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
const RETENTION_BATCH: u32 = 500;
const RETENTION_BATCHES: usize = 20;

/// A daemon's failure to start or to reach its storage for good.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("schedule `{name}` is defined twice")]
    DuplicateSchedule { name: String },
    #[error("schedule `{name}` cannot be used with these assets: {reason}")]
    InvalidSchedule { name: String, reason: String },
    #[error("{0}")]
    Automation(String),
}

/// A daemon: schedules, queue workers and reaper over one storage.
pub struct Daemon {
    storage: Arc<dyn Storage>,
    graph: Arc<AssetGraph>,
    resources: Resources,
    schedules: Vec<ScheduleDefinition>,
    config: DaemonConfig,
    clock: Arc<dyn Clock>,
    started_at: DateTime<Utc>,
    sensors: Vec<Arc<dyn Sensor>>,
    notifier: Option<Arc<dyn Notifier>>,
    /// When each sensor, and the freshness check, last ran in this daemon.
    last_evaluated: std::sync::Mutex<BTreeMap<String, DateTime<Utc>>>,
    /// The automation tick's state, when assets have conditions.
    automation: Option<tokio::sync::Mutex<crate::automation::Automation>>,
    metrics: DaemonMetrics,
}

/// Builds the plan of a stored run: its resolved asset keys over its partitions, only its step
/// subset if it has one.
pub fn plan_for_run(graph: &AssetGraph, run: &Run) -> Result<Plan, RequestError> {
    RunRequest::of_run(run).plan(graph)
}

impl Daemon {
    pub fn new(
        storage: Arc<dyn Storage>,
        graph: Arc<AssetGraph>,
        resources: Resources,
        schedules: Vec<ScheduleDefinition>,
        config: DaemonConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Daemon, DaemonError> {
        let mut names = BTreeSet::new();
        for schedule in &schedules {
            if !names.insert(schedule.name.clone()) {
                return Err(DaemonError::DuplicateSchedule {
                    name: schedule.name.clone(),
                });
            }
            schedule
                .selection
                .resolve(&graph)
                .map_err(|e| DaemonError::InvalidSchedule {
                    name: schedule.name.clone(),
                    reason: e.to_string(),
                })?;
        }
        let started_at = clock.now();
        Ok(Daemon {
            storage,
            graph,
            resources,
            schedules,
            config,
            clock,
            started_at,
            sensors: Vec::new(),
            notifier: None,
            last_evaluated: std::sync::Mutex::new(BTreeMap::new()),
            automation: None,
            metrics: DaemonMetrics::new(),
        })
    }

    /// Adds sensors (their names must differ from each other and from the schedules').
    pub fn with_sensors(mut self, sensors: Vec<Arc<dyn Sensor>>) -> Result<Daemon, DaemonError> {
        let mut names: BTreeSet<String> = self.schedules.iter().map(|s| s.name.clone()).collect();
        for sensor in &sensors {
            if !names.insert(sensor.name().to_owned()) {
                return Err(DaemonError::DuplicateSchedule {
                    name: sensor.name().to_owned(),
                });
            }
        }
        self.sensors = sensors;
        Ok(self)
    }

    /// Evaluates these automation conditions every `settings.interval` (see
    /// [`crate::automation`]); no conditions, no tick.
    pub fn with_automation(
        mut self,
        conditions: BTreeMap<crate::asset::AssetKey, crate::automation::Condition>,
        settings: crate::automation::AutomationSettings,
    ) -> Result<Daemon, DaemonError> {
        if conditions.is_empty() {
            return Ok(self);
        }
        let automation = crate::automation::Automation::new(
            self.storage.clone(),
            self.graph.clone(),
            conditions,
            settings,
            self.config.id.clone(),
        )
        .map_err(DaemonError::Automation)?;
        self.automation = Some(tokio::sync::Mutex::new(automation));
        Ok(self)
    }

    /// One automation tick now (see [`crate::automation`]); `None` without conditions.
    pub async fn tick_automation(
        &self,
    ) -> Result<Option<crate::automation::TickOutcome>, StorageError> {
        let Some(automation) = &self.automation else {
            return Ok(None);
        };
        let mut automation = automation.lock().await;
        automation.tick(self.clock.now()).await.map(Some)
    }

    async fn automation_loop(&self, stop: CancellationToken) {
        let Some(automation) = &self.automation else {
            return;
        };
        let interval = automation.lock().await.settings().interval;
        loop {
            let began = Instant::now();
            let outcome = self.tick_automation().await;
            self.metrics.evaluated("automation", began.elapsed());
            match outcome {
                Ok(Some(crate::automation::TickOutcome::Recorded(tick))) => {
                    self.metrics.tick("automation", "recorded");
                    tracing::debug!(tick = %tick.tick_time, ms = tick.duration_ms, "automation tick")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "automation tick failed; retrying"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// What this daemon did since it started, for `/metrics`.
    pub fn metrics(&self) -> &DaemonMetrics {
        &self.metrics
    }

    /// Where notifications (sensors', freshness violations) go.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Daemon {
        self.notifier = Some(notifier);
        self
    }

    pub fn sensors(&self) -> &[Arc<dyn Sensor>] {
        &self.sensors
    }

    /// Whether `name` is due (its interval has passed since this daemon last ran it), and if
    /// so marks it as run now.
    fn due(&self, name: &str, every: Duration, now: DateTime<Utc>) -> bool {
        let mut last = self.last_evaluated.lock().expect("evaluation times lock");
        let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
        match last.get(name) {
            Some(t) if now - *t < every => false,
            _ => {
                last.insert(name.to_owned(), now);
                true
            }
        }
    }

    async fn send(&self, notification: &Notification) -> Result<(), String> {
        match &self.notifier {
            Some(notifier) => notifier
                .notify(notification)
                .await
                .map_err(|e| e.to_string()),
            None => {
                tracing::info!(kind = %notification.kind, "{}", notification.text);
                Ok(())
            }
        }
    }

    /// Evaluates the sensors that are due: their run requests are queued and their
    /// notifications sent, each once across daemons (as a tick of the sensor). Returns the
    /// ticks this call recorded.
    pub async fn evaluate_sensors(&self) -> Result<Vec<TickRecord>, StorageError> {
        let now = self.clock.now();
        let mut recorded = Vec::new();
        for sensor in &self.sensors {
            if !self.due(sensor.name(), sensor.interval(), now) {
                continue;
            }
            let cursor = self.storage.sensor_cursor(sensor.name()).await?;
            let ctx = SensorContext {
                storage: self.storage.as_ref(),
                graph: &self.graph,
                now,
            };
            let output = match sensor.evaluate(&ctx, cursor).await {
                Ok(output) => output,
                Err(e) => {
                    tracing::warn!(sensor = sensor.name(), error = %e, "sensor evaluation failed");
                    continue;
                }
            };
            for request in &output.run_requests {
                let record = self.record_sensor_run(sensor.name(), request, now).await?;
                if let TickRecord::Recorded(tick) = &record {
                    self.metrics.tick("sensor", tick.status.as_str());
                    tracing::info!(sensor = sensor.name(), run = ?tick.run_id.map(|r| r.to_string()), reason = %request.reason, "sensor requested a run");
                }
                if matches!(record, TickRecord::Recorded(_)) {
                    recorded.push(record);
                }
            }
            for item in &output.notifications {
                let record = self
                    .storage
                    .record_tick(
                        &NewTick::notified(sensor.name(), item.key_time, &item.notification.text),
                        now,
                    )
                    .await?;
                if let TickRecord::Recorded(tick) = &record {
                    self.metrics.tick("sensor", tick.status.as_str());
                }
                if matches!(record, TickRecord::Recorded(_))
                    && let Err(e) = self.send(&item.notification).await
                {
                    tracing::warn!(sensor = sensor.name(), error = %e, "notification not delivered");
                }
                if matches!(record, TickRecord::Recorded(_)) {
                    recorded.push(record);
                }
            }
            if let Some(cursor) = &output.cursor {
                self.storage
                    .set_sensor_cursor(sensor.name(), cursor, now)
                    .await?;
            }
        }
        Ok(recorded)
    }

    async fn record_sensor_run(
        &self,
        sensor: &str,
        sensor_request: &sensor::SensorRunRequest,
        now: DateTime<Utc>,
    ) -> Result<TickRecord, StorageError> {
        let request = RunRequest::new(
            sensor_request.selection.as_str(),
            sensor_request.partition.clone(),
        )
        .launched_by(&Launcher::Sensor {
            name: sensor.to_owned(),
        });
        let planned = request.plan(&self.graph).map_err(|e| e.to_string());
        match planned {
            Ok(plan) => {
                let run = request.new_run(&plan, crate::new_run_id(), now);
                self.storage
                    .record_tick(
                        &NewTick::requested(sensor, sensor_request.key_time, &run)
                            .message(&sensor_request.reason),
                        now,
                    )
                    .await
            }
            Err(reason) => {
                self.storage
                    .record_tick(
                        &NewTick::skipped(sensor, sensor_request.key_time, &reason),
                        now,
                    )
                    .await
            }
        }
    }

    /// Checks every asset that has a freshness policy: a newly stale asset opens a violation
    /// (once across daemons) and is notified; a violation whose asset is fresh again is
    /// resolved and notified. Returns the notifications this call sent.
    pub async fn check_freshness(&self) -> Result<Vec<Notification>, StorageError> {
        let now = self.clock.now();
        let mut sent = Vec::new();
        for spec in self.graph.specs() {
            let Some(policy) = spec.freshness else {
                continue;
            };
            let partitions = self
                .storage
                .asset_partitions(std::slice::from_ref(&spec.key))
                .await?;
            let notification = match freshness::evaluate(spec, policy, &partitions, now) {
                freshness::Freshness::Fresh => {
                    if !self
                        .storage
                        .resolve_freshness_violation(&spec.key, now)
                        .await?
                    {
                        continue;
                    }
                    Notification {
                        kind: "freshness_recovered".into(),
                        text: format!("orch: `{}` is fresh again", spec.key),
                        details: serde_json::json!({ "asset_key": spec.key.to_string() }),
                    }
                }
                freshness::Freshness::Stale {
                    latest_partition,
                    latest_materialized_at,
                    message,
                } => {
                    let max_lag = i64::try_from(policy.max_lag.as_secs()).unwrap_or(i64::MAX);
                    let opened = self
                        .storage
                        .open_freshness_violation(&NewViolation {
                            asset_key: &spec.key,
                            detected_at: now,
                            latest_partition: latest_partition.as_deref(),
                            latest_materialized_at,
                            max_lag_secs: max_lag,
                            message: &message,
                        })
                        .await?;
                    if !opened {
                        continue;
                    }
                    Notification {
                        kind: "freshness_violation".into(),
                        text: format!("orch: {message}"),
                        details: serde_json::json!({
                            "asset_key": spec.key.to_string(),
                            "latest_partition": latest_partition,
                            "latest_materialized_at": latest_materialized_at.map(|t| t.to_rfc3339()),
                            "max_lag_secs": max_lag,
                        }),
                    }
                }
            };
            match self.send(&notification).await {
                Ok(()) => {
                    if notification.kind == "freshness_violation" {
                        self.storage.mark_violation_notified(&spec.key, now).await?;
                    }
                }
                Err(e) => {
                    tracing::warn!(asset = %spec.key, error = %e, "freshness notification not delivered")
                }
            }
            sent.push(notification);
        }
        Ok(sent)
    }

    pub fn config(&self) -> &DaemonConfig {
        &self.config
    }

    pub fn schedules(&self) -> &[ScheduleDefinition] {
        &self.schedules
    }

    /// Runs until `shutdown` fires: then it stops claiming and waits for its runs to end.
    /// `cancel_runs` cancels the runs in flight (a second Ctrl-C).
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        cancel_runs: CancellationToken,
    ) -> Result<(), DaemonError> {
        tracing::info!(daemon = %self.config.id, schedules = self.schedules.len(), "daemon started");
        let mut background = JoinSet::new();
        {
            let me = self.clone();
            let stop = shutdown.clone();
            background.spawn(async move { me.scheduler_loop(stop).await });
        }
        {
            let me = self.clone();
            let stop = shutdown.clone();
            background.spawn(async move { me.heartbeat_loop(stop).await });
        }
        if self.automation.is_some() {
            let me = self.clone();
            let stop = shutdown.clone();
            background.spawn(async move { me.automation_loop(stop).await });
        }
        self.worker_loop(shutdown, cancel_runs).await;
        while background.join_next().await.is_some() {}
        tracing::info!(daemon = %self.config.id, "daemon stopped");
        Ok(())
    }

    async fn scheduler_loop(&self, stop: CancellationToken) {
        loop {
            let began = Instant::now();
            if let Err(e) = self.tick_schedules().await {
                tracing::warn!(error = %e, "evaluating schedules failed; retrying");
            }
            self.metrics.evaluated("schedules", began.elapsed());
            let began = Instant::now();
            if let Err(e) = self.reap_expired().await {
                tracing::warn!(error = %e, "reaping expired leases failed; retrying");
            }
            self.metrics.evaluated("reaper", began.elapsed());
            let began = Instant::now();
            if let Err(e) = self.evaluate_sensors().await {
                tracing::warn!(error = %e, "evaluating sensors failed; retrying");
            }
            self.metrics.evaluated("sensors", began.elapsed());
            if self.due(
                "orch/freshness",
                self.config.freshness_interval,
                self.clock.now(),
            ) {
                let began = Instant::now();
                if let Err(e) = self.check_freshness().await {
                    tracing::warn!(error = %e, "checking freshness failed; retrying");
                }
                self.metrics.evaluated("freshness", began.elapsed());
            }
            if let Some(keep) = self.config.retention
                && self.due("orch/retention", RETENTION_INTERVAL, self.clock.now())
                && let Err(e) = self.apply_retention(keep).await
            {
                tracing::warn!(error = %e, "applying the event-log retention failed; retrying");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.until_next_evaluation()) => {}
            }
        }
    }

    /// Deletes the runs that ended more than `keep` ago, a bounded number per pass (the next
    /// pass goes on), so that the event log does not grow without end.
    pub async fn apply_retention(
        &self,
        keep: Duration,
    ) -> Result<crate::storage::Pruned, DaemonError> {
        let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        let before = self
            .clock
            .now()
            .checked_sub_signed(keep)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let total = crate::storage::prune_in_batches(
            self.storage.as_ref(),
            before,
            RETENTION_BATCH,
            RETENTION_BATCHES,
        )
        .await?;
        if total.runs > 0 || total.ticks > 0 {
            tracing::info!(
                runs = total.runs,
                events = total.events,
                logs = total.logs,
                ticks = total.ticks,
                "retention: deleted runs that ended and ticks recorded before {before}"
            );
        }
        Ok(total)
    }

    /// The interval, or less if a schedule's next tick comes sooner, so that a tick's run is
    /// queued within milliseconds of its time.
    fn until_next_evaluation(&self) -> Duration {
        let now = self.clock.now();
        let next = self.schedules.iter().filter_map(|s| s.next_tick(now)).min();
        match next.and_then(|t| (t - now).to_std().ok()) {
            Some(until) => (until + Duration::from_millis(1)).min(self.config.schedule_interval),
            None => self.config.schedule_interval,
        }
    }

    async fn heartbeat_loop(&self, stop: CancellationToken) {
        loop {
            let beat = DaemonHeartbeat {
                daemon_id: self.config.id.clone(),
                started_at: self.started_at,
                heartbeat_at: self.clock.now(),
                info: serde_json::json!({
                    "pid": std::process::id(),
                    "schedules": self.schedules.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
                    "assets": self.graph.len(),
                }),
            };
            if let Err(e) = self.storage.daemon_heartbeat(&beat).await {
                tracing::warn!(error = %e, "cannot write the daemon heartbeat");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.config.heartbeat) => {}
            }
        }
    }

    /// Whether a schedule is on: its stored state, or its default.
    async fn enabled_schedules(
        &self,
    ) -> Result<Vec<(&ScheduleDefinition, DateTime<Utc>)>, StorageError> {
        let states = self.storage.schedule_states().await?;
        let mut out = Vec::new();
        for schedule in &self.schedules {
            match states.iter().find(|s| s.name == schedule.name) {
                Some(state) if state.enabled => out.push((schedule, state.updated_at)),
                Some(_) => {}
                None if schedule.default_enabled => out.push((schedule, self.started_at)),
                None => {}
            }
        }
        Ok(out)
    }

    /// One evaluation of every enabled schedule: records each tick due since the schedule's
    /// last recorded tick (or since it was switched on), by its catch-up policy. Returns what
    /// was recorded by this call.
    pub async fn tick_schedules(&self) -> Result<Vec<TickRecord>, StorageError> {
        let now = self.clock.now();
        let mut recorded = Vec::new();
        for (schedule, enabled_since) in self.enabled_schedules().await? {
            let last = self.storage.schedule_ticks(&schedule.name, 1).await?;
            let after = last.first().map(|t| t.tick_time).unwrap_or(enabled_since);
            let due = schedule.ticks_between(after, now);
            if due.is_empty() {
                continue;
            }
            let keep_from = match schedule.catchup {
                Catchup::All => 0,
                Catchup::Latest(n) => due.len().saturating_sub(n as usize),
            };
            for (i, tick) in due.iter().enumerate() {
                let record = if i < keep_from {
                    self.storage
                        .record_tick(
                            &NewTick::skipped(
                                &schedule.name,
                                *tick,
                                &format!(
                                    "missed while no daemon ran; catch-up policy `{}`",
                                    schedule.catchup
                                ),
                            ),
                            now,
                        )
                        .await?
                } else {
                    self.record_tick_run(schedule, *tick, now).await?
                };
                if let TickRecord::Recorded(tick) = &record {
                    self.metrics.tick("schedule", tick.status.as_str());
                    let lag = (now - tick.tick_time).to_std().unwrap_or_default();
                    self.metrics.tick_lag_seconds.observe(lag.as_secs_f64());
                    tracing::info!(schedule = %tick.schedule, tick = %tick.tick_time, status = tick.status.as_str(), run = ?tick.run_id.map(|r| r.to_string()), "tick recorded");
                }
                if matches!(record, TickRecord::Recorded(_)) {
                    recorded.push(record);
                }
            }
        }
        Ok(recorded)
    }

    async fn record_tick_run(
        &self,
        schedule: &ScheduleDefinition,
        tick: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<TickRecord, StorageError> {
        let planned = schedule.run_request(&self.graph, tick).and_then(|request| {
            let plan = request.plan(&self.graph).map_err(|e| e.to_string())?;
            Ok((request, plan))
        });
        match planned {
            Ok((request, plan)) => {
                let run = request.new_run(&plan, crate::new_run_id(), now);
                self.storage
                    .record_tick(&NewTick::requested(&schedule.name, tick, &run), now)
                    .await
            }
            Err(reason) => {
                self.storage
                    .record_tick(&NewTick::skipped(&schedule.name, tick, &reason), now)
                    .await
            }
        }
    }

    /// Fails the runs whose lease expired (and re-queues them if the policy says so).
    /// Returns how many this call resolved.
    pub async fn reap_expired(&self) -> Result<usize, StorageError> {
        let now = self.clock.now();
        let mut resolved = 0;
        for expired in self.storage.expired_leases(now).await? {
            let reason = format!(
                "the daemon `{}` running this run stopped renewing its lease, which expired at {}",
                expired.owner,
                expired.expires_at.to_rfc3339()
            );
            let Some(failed) = self
                .storage
                .fail_expired(&expired.lease(), now, &reason)
                .await?
            else {
                continue;
            };
            resolved += 1;
            self.metrics.leases_expired.inc();
            tracing::warn!(run = %failed.run_id, owner = %expired.owner, "failed a run whose lease expired");
            if let ExpiredPolicy::Requeue { max } = self.config.expired {
                let chain: u32 = failed
                    .tags
                    .get(tags::REQUEUE_COUNT)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if chain < max {
                    let mut request = RunRequest::of_run(&failed).launched_by(&Launcher::Requeue {
                        of: failed.run_id,
                        count: chain + 1,
                    });
                    request.parent_run_id = Some(failed.run_id);
                    request.root_run_id = failed.root_run_id.or(Some(failed.run_id));
                    let plan = match request.plan(&self.graph) {
                        Ok(plan) => plan,
                        Err(e) => {
                            tracing::warn!(run = %failed.run_id, error = %e, "cannot re-queue a run whose assets changed");
                            continue;
                        }
                    };
                    let run = request.new_run(&plan, crate::new_run_id(), now);
                    let created = self.storage.create_run(&run).await?;
                    self.storage
                        .append_events(&[Event::new(created.run_id, EventKind::RunEnqueued, now)
                            .message(format!("re-queued: run {} lost its daemon", failed.run_id))])
                        .await?;
                    self.storage.notify_queue().await?;
                    self.metrics.requeued.inc();
                }
            }
        }
        Ok(resolved)
    }
}
