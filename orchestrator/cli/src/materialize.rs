//! `orch materialize`: select, plan, run with a progress display, and report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use clap::Args;
use orch::execute::{Executor, RunOutcome, RunRequest, StepStatus};
use orch::plan::{self, PartitionRequest};
use orch::{RunStatus, Selection};
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::{CmdResult, Failure, project};

#[derive(Debug, Args)]
pub struct MaterializeArgs {
    /// Which assets, in Dagster's selection syntax (`*` for all).
    #[arg(long, short, value_name = "SELECTION")]
    select: String,
    /// One partition key (`2026-11-22-10:00` hourly, `2026-11-22` daily).
    #[arg(long, value_name = "KEY", conflicts_with_all = ["from", "to"])]
    partition: Option<String>,
    /// The first partition of a range (with --to).
    #[arg(long, value_name = "KEY", requires = "to")]
    from: Option<String>,
    /// The last partition of a range, included (with --from).
    #[arg(long, value_name = "KEY", requires = "from")]
    to: Option<String>,
    /// Print the plan and stop.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON (progress then goes to stderr).
    #[arg(long)]
    json: bool,
    /// A tag for the run, `KEY=VALUE` (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub async fn run(dir: Option<&Path>, args: MaterializeArgs) -> CmdResult {
    let config = project::config(dir)?;
    let (defs, graph) = project::graph(&config)?;
    let selection = Selection::parse(&args.select).map_err(|e| Failure::Usage(e.to_string()))?;
    let selected = selection
        .resolve(&graph)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let request = match (args.partition, args.from, args.to) {
        (Some(k), _, _) => PartitionRequest::Key(k),
        (None, Some(from), Some(to)) => PartitionRequest::Range { from, to },
        _ => PartitionRequest::None,
    };
    let plan =
        plan::plan(&graph, &selected, &request).map_err(|e| Failure::Usage(e.to_string()))?;
    if args.dry_run {
        if args.json {
            println!("{}", serde_json::json!({ "steps": plan.steps_json() }));
        } else {
            print!("{}", plan.render());
        }
        return Ok(());
    }

    let storage = project::storage(&config).await?;
    let executor = Executor::new(
        graph.clone(),
        storage,
        defs.resources.clone(),
        config.execution.clone(),
        config.pools.clone(),
    );
    let request_info = RunRequest {
        selection: args.select.clone(),
        tags: args.tags.into_iter().collect::<BTreeMap<_, _>>(),
        ..RunRequest::default()
    };
    let run = executor.create_run(&plan, &request_info).await?;
    let to_terminal = !args.json && std::io::stdout().is_terminal();
    let progress = Arc::new(Progress::new(&run.run_id, &plan, to_terminal, args.json));
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(cancel.clone(), progress.clone()));
    let observer = {
        let progress = progress.clone();
        Arc::new(move |event: &orch::event::Event| progress.on_event(event))
            as orch::execute::EventObserver
    };
    let outcome = executor
        .execute(run.run_id, &plan, cancel, vec![observer])
        .await;
    signals.abort();
    let outcome = outcome?;
    progress.finish(&outcome);
    if args.json {
        println!("{}", outcome_json(&outcome));
    }
    match outcome.run.status {
        RunStatus::Success => Ok(()),
        RunStatus::Canceled => {
            eprintln!("run {} was canceled", outcome.run.run_id);
            Err(Failure::Reported)
        }
        _ => {
            for step in outcome.failed_steps() {
                eprintln!(
                    "error: step `{}` failed: {}",
                    step.key,
                    step.error.as_deref().unwrap_or("(no message)")
                );
            }
            eprintln!(
                "run {} failed; see `orch runs show {}`",
                outcome.run.run_id, outcome.run.run_id
            );
            Err(Failure::Reported)
        }
    }
}

/// Ctrl-C (SIGINT) or SIGTERM cancels the run: no new step starts, running steps see their
/// cancellation token fire and their child processes are killed.
async fn cancel_on_signal(cancel: CancellationToken, progress: Arc<Progress>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            cancel.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    progress.note("canceling the run: waiting for running steps to stop...");
    cancel.cancel();
}

fn outcome_json(outcome: &RunOutcome) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = outcome
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "key": s.key,
                "status": s.status.as_str(),
                "attempts": s.attempts,
                "error": s.error,
                "duration_ms": s.duration.map(|d| d.as_secs_f64() * 1000.0),
            })
        })
        .collect();
    serde_json::json!({
        "run_id": outcome.run.run_id.to_string(),
        "status": outcome.run.status.as_str(),
        "steps": steps,
        "succeeded": outcome.steps.iter().filter(|s| s.status == StepStatus::Succeeded).count(),
        "failed": outcome.steps.iter().filter(|s| s.status == StepStatus::Failed).count(),
    })
}
