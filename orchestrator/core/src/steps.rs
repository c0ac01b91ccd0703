//! A run's steps as its event log tells them: one fold from events to step states, with one
//! vocabulary, for everyone who shows or reports steps (the executor's outcome, `orch runs
//! show`, the web UI and its API).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::event::{Event, EventKind};
use crate::metadata::MetadataValue;
use crate::run::RunStatus;

/// Where a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepState {
    /// Planned, not started yet; the run may still start it.
    Pending,
    /// An attempt is running.
    Running,
    /// An attempt failed and the step waits to try again.
    Retrying,
    Succeeded,
    Failed,
    /// An upstream step failed.
    Skipped,
    /// The run was canceled while the step ran or waited to retry.
    Canceled,
    /// Planned, never started: the run ended first.
    NotStarted,
}

impl StepState {
    pub const ALL: [StepState; 8] = [
        StepState::Pending,
        StepState::Running,
        StepState::Retrying,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Skipped,
        StepState::Canceled,
        StepState::NotStarted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "PENDING",
            StepState::Running => "RUNNING",
            StepState::Retrying => "RETRYING",
            StepState::Succeeded => "SUCCESS",
            StepState::Failed => "FAILURE",
            StepState::Skipped => "SKIPPED",
            StepState::Canceled => "CANCELED",
            StepState::NotStarted => "NOT_STARTED",
        }
    }

    /// Whether nothing more will happen to the step.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepState::Succeeded
                | StepState::Failed
                | StepState::Skipped
                | StepState::Canceled
                | StepState::NotStarted
        )
    }

    /// The state a step event puts a step in, if it is a step event.
    fn after(kind: EventKind) -> Option<StepState> {
        Some(match kind {
            EventKind::StepStart => StepState::Running,
            EventKind::StepUpForRetry => StepState::Retrying,
            EventKind::StepSuccess => StepState::Succeeded,
            EventKind::StepFailure => StepState::Failed,
            EventKind::StepSkipped => StepState::Skipped,
            EventKind::StepCanceled => StepState::Canceled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for StepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step as its events tell it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub key: String,
    pub state: StepState,
    /// Attempts started.
    pub attempts: u32,
    /// When its first attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (its last terminal event).
    pub ended_at: Option<DateTime<Utc>>,
    /// From its first start to its end, or what its last event reported.
    pub duration_ms: Option<f64>,
    /// The last error or reason its events gave (a failure, a retry's cause, why it was
    /// skipped).
    pub error: Option<String>,
}

impl StepRecord {
    fn new(key: String) -> Self {
        StepRecord {
            key,
            state: StepState::Pending,
            attempts: 0,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            error: None,
        }
    }
}

/// Folds a run's events into its steps, in plan order (steps first seen in events after the
/// planned ones). Feed it the planned step keys when known, then events in log order.
#[derive(Clone, Debug, Default)]
pub struct StepFold {
    order: Vec<String>,
    steps: HashMap<String, StepRecord>,
}

impl StepFold {
    /// A fold over the steps `planned` (in plan order).
    pub fn new<I, S>(planned: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut fold = StepFold::default();
        for key in planned {
            fold.step(key.into());
        }
        fold
    }

    fn step(&mut self, key: String) -> &mut StepRecord {
        if !self.steps.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.steps
            .entry(key.clone())
            .or_insert_with(|| StepRecord::new(key))
    }

    /// Takes one event into account. The executor's plan event (an ENGINE_EVENT whose `plan`
    /// metadata lists the steps) adds the planned steps when the caller did not know them.
    pub fn apply(&mut self, event: &Event) {
        if event.kind == EventKind::EngineEvent {
            if let Some(MetadataValue::Json(serde_json::Value::Array(steps))) =
                event.body.metadata.get("plan")
            {
                for step in steps {
                    if let Some(key) = step.get("key").and_then(|k| k.as_str()) {
                        self.step(key.to_owned());
                    }
                }
            }
            return;
        }
        let Some(key) = &event.step_key else { return };
        let Some(state) = StepState::after(event.kind) else {
            return;
        };
        let at = event.timestamp;
        let step = self.step(key.clone());
        step.state = state;
        match state {
            StepState::Running => {
                step.attempts = event.body.attempt.unwrap_or(step.attempts + 1);
                step.started_at.get_or_insert(at);
                step.ended_at = None;
                step.duration_ms = None;
            }
            StepState::Retrying => {
                step.error = event.body.error.as_ref().map(|e| e.message.clone());
            }
            _ => {
                step.ended_at = Some(at);
                step.duration_ms = match step.started_at {
                    Some(start) => Some((at - start).num_microseconds().unwrap_or(0) as f64 / 1e3),
                    None => event.body.duration_ms,
                };
                if let Some(error) = &event.body.error {
                    step.error = Some(error.message.clone());
                } else if state == StepState::Skipped {
                    step.error = event.body.message.clone();
                }
            }
        }
    }

    /// The steps, once every event is in: steps never started are [`StepState::NotStarted`]
    /// if the run is over (`run_status` terminal), [`StepState::Pending`] otherwise.
    pub fn finish(mut self, run_status: RunStatus) -> Vec<StepRecord> {
        let over = run_status.is_terminal();
        self.order
            .into_iter()
            .filter_map(|key| self.steps.remove(&key))
            .map(|mut step| {
                if over && step.state == StepState::Pending {
                    step.state = StepState::NotStarted;
                }
                step
            })
            .collect()
    }
}

/// The steps of a run in `run_status`, planned as `planned`, from its `events` in log order.
pub fn fold_steps<'a, I, S>(
    planned: I,
    events: impl IntoIterator<Item = &'a Event>,
    run_status: RunStatus,
) -> Vec<StepRecord>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut fold = StepFold::new(planned);
    for event in events {
        fold.apply(event);
    }
    fold.finish(run_status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ErrorInfo, EventBody};
    use crate::run::RunId;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + secs, 0).unwrap()
    }

    fn step_event(key: &str, kind: EventKind, secs: i64, body: EventBody) -> Event {
        Event::new(RunId::from_parts(at(0), [0; 10]), kind, at(secs))
            .step(key)
            .body(body)
    }

    #[test]
    fn events_fold_into_one_vocabulary() {
        let boom = EventBody {
            error: Some(ErrorInfo {
                message: "boom".into(),
                causes: vec![],
            }),
            ..EventBody::default()
        };
        let events = vec![
            step_event("a", EventKind::StepStart, 1, EventBody::default()),
            step_event("a", EventKind::StepUpForRetry, 2, boom.clone()),
            step_event("a", EventKind::StepStart, 3, EventBody::default()),
            step_event("a", EventKind::StepFailure, 5, boom),
            step_event(
                "b",
                EventKind::StepSkipped,
                5,
                EventBody {
                    message: Some("upstream a failed".into()),
                    ..EventBody::default()
                },
            ),
            step_event("c", EventKind::StepStart, 1, EventBody::default()),
        ];
        let running = fold_steps(["a", "b", "c", "d"], &events, RunStatus::Started);
        let states: Vec<(&str, StepState)> =
            running.iter().map(|s| (s.key.as_str(), s.state)).collect();
        assert_eq!(
            states,
            vec![
                ("a", StepState::Failed),
                ("b", StepState::Skipped),
                ("c", StepState::Running),
                ("d", StepState::Pending),
            ]
        );
        assert_eq!(running[0].attempts, 2);
        assert_eq!(running[0].duration_ms, Some(4000.0));
        assert_eq!(running[0].error.as_deref(), Some("boom"));
        assert_eq!(running[1].error.as_deref(), Some("upstream a failed"));

        let over = fold_steps(["a", "b", "c", "d"], &events, RunStatus::Failure);
        assert_eq!(over[3].state, StepState::NotStarted);
        assert_eq!(over[3].state.as_str(), "NOT_STARTED");
        assert!(StepState::ALL.iter().filter(|s| s.is_terminal()).count() == 5);
    }
}
