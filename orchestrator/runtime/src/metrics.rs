//! Prometheus metrics of the orchestrator: what one daemon process did ([`DaemonMetrics`],
//! counters and histograms kept in memory) and what the run history holds
//! ([`history_metrics`], gauges read from the storage at each scrape: runs by status, the
//! queue, heartbeat ages, the latest tick of each schedule). Both are rendered in the
//! OpenMetrics text format; serving them over HTTP is the web crate's part (`/metrics` on the
//! web server, and `orch daemon --metrics-addr`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::event::{Event, EventKind};
use crate::run::RunStatus;
use crate::storage::{Storage, StorageError};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TickLabels {
    /// `schedule`, `sensor` or `automation`.
    pub kind: String,
    /// The tick's status (`requested`, `skipped`, ...).
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoopLabels {
    /// `schedules`, `sensors`, `freshness`, `reaper` or `automation`.
    pub evaluation: String,
}

/// What this daemon process did since it started. Cheap to clone: metrics are shared handles.
#[derive(Debug, Clone)]
pub struct DaemonMetrics {
    registry: Arc<Registry>,
    /// Ticks this daemon recorded (another daemon that recorded the same tick first counts it
    /// there, not here).
    pub ticks: Family<TickLabels, Counter>,
    /// From a schedule tick's time to its record: how late the run was queued.
    pub tick_lag_seconds: Histogram,
    /// How long one evaluation of each loop took.
    pub evaluation_seconds: Family<LoopLabels, Histogram>,
    pub runs_claimed: Counter,
    pub runs_in_flight: Gauge,
    /// Runs this daemon executed, by the status they ended in.
    pub runs_ended: Family<StatusLabels, Counter>,
    /// From the claim to the end of a run.
    pub run_seconds: Family<StatusLabels, Histogram>,
    /// From the claim to the first step's start.
    pub first_step_seconds: Histogram,
    /// Steps by the status they ended in, with their durations.
    pub step_seconds: Family<StatusLabels, Histogram>,
    /// Runs failed because their daemon stopped renewing the lease.
    pub leases_expired: Counter,
    /// Runs queued again after their daemon died.
    pub requeued: Counter,
}

impl Default for DaemonMetrics {
    fn default() -> Self {
        DaemonMetrics::new()
    }
}

/// 5 ms to about 23 hours, doubling: steps and runs last from milliseconds to hours.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 25))
}

impl DaemonMetrics {
    pub fn new() -> DaemonMetrics {
        let mut registry = Registry::with_prefix("orch_daemon");
        let m = DaemonMetrics {
            registry: Arc::new(Registry::default()),
            ticks: Family::default(),
            tick_lag_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            evaluation_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 20))
            }),
            runs_claimed: Counter::default(),
            runs_in_flight: Gauge::default(),
            runs_ended: Family::default(),
            run_seconds: Family::new_with_constructor(duration_histogram),
            first_step_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            step_seconds: Family::new_with_constructor(duration_histogram),
            leases_expired: Counter::default(),
            requeued: Counter::default(),
        };
        registry.register(
            "ticks",
            "Schedule, sensor and automation ticks recorded by this daemon",
            m.ticks.clone(),
        );
        registry.register(
            "tick_lag_seconds",
            "From a schedule tick's time to the record of the tick and its run",
            m.tick_lag_seconds.clone(),
        );
        registry.register(
            "evaluation_seconds",
            "Time taken by one evaluation of the daemon's loops",
            m.evaluation_seconds.clone(),
        );
        registry.register(
            "runs_claimed",
            "Runs this daemon took from the queue",
            m.runs_claimed.clone(),
        );
        registry.register(
            "runs_in_flight",
            "Runs this daemon is executing",
            m.runs_in_flight.clone(),
        );
        registry.register(
            "runs_ended",
            "Runs this daemon executed, by final status",
            m.runs_ended.clone(),
        );
        registry.register(
            "run_seconds",
            "From the claim of a run to its end, by final status",
            m.run_seconds.clone(),
        );
        registry.register(
            "first_step_seconds",
            "From the claim of a run to the start of its first step",
            m.first_step_seconds.clone(),
        );
        registry.register(
            "step_seconds",
            "Durations of the steps this daemon executed, by final status",
            m.step_seconds.clone(),
        );
        registry.register(
            "leases_expired",
            "Runs failed by this daemon because their own daemon stopped renewing the lease",
            m.leases_expired.clone(),
        );
        registry.register(
            "requeued",
            "Runs queued again by this daemon after their daemon died",
            m.requeued.clone(),
        );
        DaemonMetrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    pub fn tick(&self, kind: &str, status: &str) {
        self.ticks
            .get_or_create(&TickLabels {
                kind: kind.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }

    pub fn evaluated(&self, evaluation: &str, took: Duration) {
        self.evaluation_seconds
            .get_or_create(&LoopLabels {
                evaluation: evaluation.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn run_ended(&self, status: RunStatus, took: Duration) {
        let labels = StatusLabels {
            status: status.as_str().to_owned(),
        };
        self.runs_ended.get_or_create(&labels).inc();
        self.run_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Observes a step's end event (its duration is in the event).
    pub fn observe_event(&self, event: &Event) {
        let status = match event.kind {
            EventKind::StepSuccess => "success",
            EventKind::StepFailure => "failure",
            EventKind::StepCanceled => "canceled",
            _ => return,
        };
        if let Some(ms) = event.body.duration_ms {
            self.step_seconds
                .get_or_create(&StatusLabels {
                    status: status.to_owned(),
                })
                .observe(ms / 1000.0);
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DaemonLabels {
    daemon: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    kind: String,
    name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    schedule: String,
}

/// Heartbeats older than this are not reported (their daemons or components are gone).
const HEARTBEAT_HORIZON: chrono::Duration = chrono::Duration::hours(24);

/// The run history's state at `now` as a registry of gauges (prefix `orch`): runs by status
/// (`orch_runs`, QUEUED is the queue's depth), the age of each daemon's and component's last
/// heartbeat within the last day (components of `component_kinds`), and the time of the latest
/// tick of each of `schedules` (schedules and sensors by name).
pub async fn history_metrics(
    storage: &dyn Storage,
    schedules: &[String],
    component_kinds: &[&str],
    now: DateTime<Utc>,
) -> Result<Registry, StorageError> {
    let mut registry = Registry::with_prefix("orch");
    let runs = Family::<StatusLabels, Gauge>::default();
    let mut counts = storage.run_status_counts().await?;
    // Every status is present, so that a status that empties reads 0 rather than vanishing.
    for status in RunStatus::ALL {
        if !counts.iter().any(|(s, _)| *s == status) {
            counts.push((status, 0));
        }
    }
    for (status, n) in counts {
        runs.get_or_create(&StatusLabels {
            status: status.as_str().to_owned(),
        })
        .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register(
        "runs",
        "Runs in the run history by status (QUEUED: the queue's depth)",
        runs,
    );

    let since = now - HEARTBEAT_HORIZON;
    let daemons = Family::<DaemonLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for beat in storage.daemon_heartbeats(since).await? {
        daemons
            .get_or_create(&DaemonLabels {
                daemon: beat.daemon_id,
            })
            .set(seconds_between(beat.heartbeat_at, now));
    }
    registry.register(
        "daemon_heartbeat_age_seconds",
        "Seconds since each daemon's last heartbeat (daemons seen in the last day)",
        daemons,
    );

    let components = Family::<ComponentLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for kind in component_kinds {
        for beat in storage.component_heartbeats(kind, since).await? {
            if beat.stopped_at.is_some() {
                continue;
            }
            components
                .get_or_create(&ComponentLabels {
                    kind: beat.kind,
                    name: beat.name,
                })
                .set(seconds_between(beat.last_seen, now));
        }
    }
    registry.register(
        "component_heartbeat_age_seconds",
        "Seconds since the last heartbeat of each running component (stream workers)",
        components,
    );

    let ticks = Family::<ScheduleLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for name in schedules {
        if let Some(tick) = storage.schedule_ticks(name, 1).await?.first() {
            ticks
                .get_or_create(&ScheduleLabels {
                    schedule: name.clone(),
                })
                .set(tick.tick_time.timestamp_micros() as f64 / 1e6);
        }
    }
    registry.register(
        "last_tick_timestamp_seconds",
        "The time of the latest recorded tick of each schedule and sensor",
        ticks,
    );
    Ok(registry)
}

fn seconds_between(then: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    ((now - then).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).max(0.0)
}

/// Renders registries as one OpenMetrics text document.
pub fn render(registries: &[&Registry]) -> String {
    let mut out = String::new();
    for registry in registries {
        encode_registry(&mut out, registry).expect("writing to a String does not fail");
    }
    encode_eof(&mut out).expect("writing to a String does not fail");
    out
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
