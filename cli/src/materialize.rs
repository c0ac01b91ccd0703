//! `orch materialize`: select, plan, and run here with a progress display (or queue the run
//! for the daemons with `--queue`), and report.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use orch::config::Config;
use orch::execute::{Executor, RunOutcome, StepState};
use orch::plan::{PartitionRequest, Plan};
use orch::request::{Launcher, RunRequest};
use orch::storage::Storage;
use orch::submit::Submit;
use orch::{Definitions, RunId, RunStatus};
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
    /// Only the steps whose asset partitions are missing or stale (an upstream partition was
    /// materialized after them, or their code version changed).
    #[arg(long)]
    stale_only: bool,
    /// Queue the run for the daemons (`orch daemon`) instead of running it here.
    #[arg(long, conflicts_with = "dry_run")]
    queue: bool,
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
    let partitions = match (args.partition, args.from, args.to) {
        (Some(k), _, _) => PartitionRequest::Key(k),
        (None, Some(from), Some(to)) => PartitionRequest::Range { from, to },
        _ => PartitionRequest::None,
    };
    let mut request = RunRequest::new(args.select.as_str(), partitions)
        .with_tags(args.tags)
        .launched_by(&Launcher::Cli);
    let selection =
        orch::Selection::parse(&args.select).map_err(|e| Failure::Usage(e.to_string()))?;
    if selection.needs_status() {
        let storage = project::storage(&config).await?;
        let facts = orch::automation::current_facts(storage.as_ref(), &graph).await?;
        let status = orch::automation::FactsStatus {
            graph: &graph,
            facts: &facts,
        };
        let assets = selection
            .resolve_with(&graph, &status)
            .map_err(|e| Failure::Usage(e.to_string()))?;
        if assets.is_empty() {
            println!("`{}` selects no asset now", args.select);
            return Ok(());
        }
        request.assets = Some(assets);
    }
    if matches!(request.partitions, PartitionRequest::Range { .. }) {
        let selected = request
            .resolve(&graph)
            .map_err(|e| Failure::Usage(e.to_string()))?;
        orch::plan::check_range_size(
            &graph,
            &selected,
            &request.partitions,
            config.limits.max_range_partitions,
        )
        .map_err(|e| Failure::Usage(e.to_string()))?;
    }
    let mut plan = request
        .plan(&graph)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    if args.stale_only {
        let storage = project::storage(&config).await?;
        let facts = orch::automation::current_facts(storage.as_ref(), &graph).await?;
        let keep = orch::automation::stale_or_missing_steps(&graph, &facts, &plan);
        if keep.is_empty() {
            if args.json {
                println!("{}", serde_json::json!({ "steps": [] }));
            } else {
                println!("nothing in the selection is missing or stale");
            }
            return Ok(());
        }
        if keep.len() < plan.steps.len() {
            request.step_subset = Some(keep);
            plan = request
                .plan(&graph)
                .map_err(|e| Failure::Usage(e.to_string()))?;
        }
    }
    if args.dry_run {
        if args.json {
            println!("{}", serde_json::json!({ "steps": plan.steps_json() }));
        } else {
            print!("{}", plan.render());
        }
        return Ok(());
    }
    if args.queue {
        let storage = project::storage(&config).await?;
        let run = orch::submit::store(storage.as_ref(), &plan, &request, Submit::Queue).await?;
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "run_id": run.run_id.to_string(), "status": run.status.as_str() })
            );
        } else {
            println!(
                "queued run {} ({} steps); a daemon (`orch daemon`) will run it",
                run.run_id,
                plan.steps.len()
            );
        }
        return Ok(());
    }
    execute_here(&config, &defs, graph, &plan, &request, args.json).await
}

pub fn executor(
    config: &Config,
    defs: &Definitions,
    graph: Arc<orch::AssetGraph>,
    storage: Arc<dyn Storage>,
) -> Executor {
    Executor::new(
        graph,
        storage,
        defs.resources.clone(),
        config.execution.clone(),
        config.pools.clone(),
    )
}

/// Creates the run and executes it in this process, with progress, Ctrl-C and cancellation
/// from other processes (`orch runs cancel`), then reports and maps the outcome to an exit
/// code.
pub async fn execute_here(
    config: &Config,
    defs: &Definitions,
    graph: Arc<orch::AssetGraph>,
    plan: &Plan,
    request: &RunRequest,
    json: bool,
) -> CmdResult {
    let storage = project::storage(config).await?;
    let executor = executor(config, defs, graph, storage.clone());
    let run = executor.create_run(plan, request).await?;
    let to_terminal = !json && std::io::stdout().is_terminal();
    let progress = Arc::new(Progress::new(&run.run_id, plan, to_terminal, json));
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(cancel.clone(), progress.clone()));
    let watcher = tokio::spawn(cancel_when_requested(
        storage.clone(),
        run.run_id,
        cancel.clone(),
    ));
    let observer = {
        let progress = progress.clone();
        Arc::new(move |event: &orch::event::Event| progress.on_event(event))
            as orch::execute::EventObserver
    };
    let outcome = executor
        .execute(run.run_id, plan, cancel, vec![observer])
        .await;
    signals.abort();
    watcher.abort();
    let outcome = outcome?;
    progress.finish(&outcome);
    if json {
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

/// Watches the run's status: `orch runs cancel` in another process marks it CANCELING.
async fn cancel_when_requested(
    storage: Arc<dyn Storage>,
    run_id: RunId,
    cancel: CancellationToken,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(Some(run)) = storage.get_run(run_id).await
            && run.status == RunStatus::Canceling
        {
            cancel.cancel();
            return;
        }
    }
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
        "succeeded": outcome.steps.iter().filter(|s| s.status == StepState::Succeeded).count(),
        "failed": outcome.steps.iter().filter(|s| s.status == StepState::Failed).count(),
    })
}
