//! Drives a simulation into a sink: as fast as possible, or paced so that event time tracks
//! wall time (eventsim's `--continuous`), and stops early when asked to.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, Speed};
use crate::event::Topic;
use crate::sim::Simulation;
use crate::sink::{Sink, SinkError};

/// What a run wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Events per topic, in the order of [`Topic::ALL`].
    pub counts: [u64; 4],
    /// Users simulated: those at the start and those who arrived during the run.
    pub users: usize,
    pub initial_users: u32,
    /// Distinct `userId`s in the events (anonymous visitors have none).
    pub users_seen: usize,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Timestamps of the first and the last event written, epoch milliseconds.
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    /// Wall time the run took.
    pub elapsed: Duration,
    /// True when the run was cancelled before it reached the end.
    pub interrupted: bool,
}

impl Summary {
    pub fn count(&self, topic: Topic) -> u64 {
        self.counts[topic.index()]
    }

    pub fn events(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn events_per_second(&self) -> f64 {
        self.events() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A run's failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// In real-time mode, what was sent is flushed at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const FOREVER: Duration = Duration::from_secs(30 * 365 * 86_400);
/// In fast mode, the runner lets other tasks run every so many events.
const YIELD_EVERY: u32 = 4096;

/// Simulates `config` into `sink` and flushes it. In [`Speed::RealTime`] mode the event at
/// `start + d` is sent `d / factor` after the run began (so a run from now at factor 1
/// follows the wall clock); the sink is flushed before each wait. Cancelling `cancel` stops
/// the run between two events; what was sent is flushed and the summary says so.
pub async fn run<S: Sink + ?Sized>(
    config: &Config,
    sink: &mut S,
    cancel: &CancellationToken,
) -> Result<Summary, RunError> {
    let began = Instant::now();
    let mut sim = Simulation::new(config)?;
    let start_ms = config.start.timestamp_millis();
    let mut summary = Summary {
        counts: [0; 4],
        users: 0,
        initial_users: config.users,
        users_seen: 0,
        start: config.start,
        end: config.end,
        first_ts: None,
        last_ts: None,
        elapsed: Duration::ZERO,
        interrupted: false,
    };
    let mut seen = HashSet::new();
    let mut unflushed = false;
    let mut last_flush = Instant::now();
    let mut since_yield = 0u32;
    let paced_from = Instant::now();
    for event in sim.by_ref() {
        if cancel.is_cancelled() {
            summary.interrupted = true;
            break;
        }
        match config.speed {
            Speed::Fast => {
                since_yield += 1;
                if since_yield == YIELD_EVERY {
                    since_yield = 0;
                    tokio::task::yield_now().await;
                }
            }
            Speed::RealTime { factor } => {
                let offset = (event.ts() - start_ms).max(0) as f64 / 1000.0 / factor;
                // A factor so small that the event is due past any clock: wait until
                // cancelled (decades, as far as tokio is concerned).
                let due = Duration::try_from_secs_f64(offset)
                    .ok()
                    .and_then(|d| paced_from.checked_add(d))
                    .unwrap_or_else(|| Instant::now() + FOREVER);
                let now = Instant::now();
                if due > now || (unflushed && now - last_flush >= FLUSH_EVERY) {
                    if unflushed {
                        sink.flush().await?;
                        last_flush = Instant::now();
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = cancel.cancelled() => {
                            summary.interrupted = true;
                            break;
                        }
                    }
                }
            }
        }
        sink.send(&event).await?;
        unflushed = true;
        summary.counts[event.topic().index()] += 1;
        summary.first_ts.get_or_insert(event.ts());
        summary.last_ts = Some(event.ts());
        if let Some(user) = event.user_id() {
            seen.insert(user);
        }
    }
    sink.flush().await?;
    summary.users = sim.users();
    summary.users_seen = seen.len();
    summary.elapsed = began.elapsed();
    Ok(summary)
}
