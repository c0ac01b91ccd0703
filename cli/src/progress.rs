//! The progress display of a run: a live bar on a terminal, plain lines otherwise (one per
//! step event, on stdout, or on stderr when stdout carries JSON).

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use orch::event::{Event, EventKind};
use orch::execute::{RunOutcome, StepState};
use orch::{Plan, RunId};

use crate::table::duration_ms;

pub struct Progress {
    bar: Option<ProgressBar>,
    to_stderr: bool,
    started: Instant,
    running: Mutex<BTreeSet<String>>,
}

impl Progress {
    pub fn new(run_id: &RunId, plan: &Plan, terminal: bool, to_stderr: bool) -> Progress {
        let steps = plan.steps.len();
        let header = format!(
            "run {run_id}: {steps} step{}, {}",
            if steps == 1 { "" } else { "s" },
            plan.partition
        );
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps  {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar.println(&header);
            bar
        });
        let progress = Progress {
            bar,
            to_stderr,
            started: Instant::now(),
            running: Mutex::new(BTreeSet::new()),
        };
        if progress.bar.is_none() {
            progress.line(&header);
        }
        progress
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if self.to_stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
            None => {
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }
        }
    }

    /// A message outside the event stream.
    pub fn note(&self, text: &str) {
        self.line(text);
    }

    pub fn on_event(&self, event: &Event) {
        let step = event.step_key.as_deref().unwrap_or("");
        let body = &event.body;
        let text = match event.kind {
            EventKind::StepStart => {
                self.running
                    .lock()
                    .expect("progress lock")
                    .insert(step.to_owned());
                match body.attempt {
                    Some(n) if n > 1 => format!("  started    {step} (attempt {n})"),
                    _ => format!("  started    {step}"),
                }
            }
            EventKind::StepSuccess => {
                self.done(step);
                format!(
                    "  succeeded  {step} ({})",
                    duration_ms(body.duration_ms.unwrap_or_default())
                )
            }
            EventKind::StepFailure => {
                self.done(step);
                let error = body
                    .error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("");
                format!("  FAILED     {step}: {}", first_line(error))
            }
            EventKind::StepUpForRetry => {
                self.running.lock().expect("progress lock").remove(step);
                let error = body
                    .error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("");
                format!(
                    "  retrying   {step}: attempt {} failed ({}); next in {}",
                    body.attempt.unwrap_or(1),
                    first_line(error),
                    duration_ms(body.retry_delay_ms.unwrap_or_default() as f64)
                )
            }
            EventKind::StepSkipped => {
                self.done(step);
                format!(
                    "  skipped    {step}: {}",
                    body.message.as_deref().unwrap_or("")
                )
            }
            EventKind::StepCanceled => {
                self.done(step);
                format!("  canceled   {step}")
            }
            EventKind::AssetCheckEvaluation => match &body.check {
                Some(check) if !check.passed => format!(
                    "  check      {} on {}: FAILED ({})",
                    check.check_name,
                    event
                        .asset_key
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    check.severity
                ),
                _ => return,
            },
            EventKind::RunCanceling => "  canceling  the run".to_owned(),
            _ => return,
        };
        self.line(&text);
        if let Some(bar) = &self.bar {
            let running = self.running.lock().expect("progress lock");
            let names: Vec<&str> = running.iter().map(String::as_str).take(3).collect();
            let more = running.len().saturating_sub(3);
            let mut msg = names.join(", ");
            if more > 0 {
                msg.push_str(&format!(" +{more}"));
            }
            bar.set_message(msg);
        }
    }

    fn done(&self, step: &str) {
        self.running.lock().expect("progress lock").remove(step);
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    pub fn finish(&self, outcome: &RunOutcome) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let count = |status| outcome.steps.iter().filter(|s| s.status == status).count();
        let mut parts = vec![format!("{} succeeded", count(StepState::Succeeded))];
        for (status, label) in [
            (StepState::Failed, "failed"),
            (StepState::Skipped, "skipped"),
            (StepState::Canceled, "canceled"),
            (StepState::NotStarted, "not started"),
        ] {
            let n = count(status);
            if n > 0 {
                parts.push(format!("{n} {label}"));
            }
        }
        let summary = format!(
            "run {} {} in {}: {}",
            outcome.run.run_id,
            outcome.run.status,
            duration_ms(self.started.elapsed().as_secs_f64() * 1000.0),
            parts.join(", ")
        );
        match &self.bar {
            Some(_) => println!("{summary}"),
            None => self.line(&summary),
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
