//! `orch runs`: list, show, logs, cancel and re-execute runs from the run history.

use std::path::Path;

use clap::Args;
use orch::event::EventKind;
use orch::storage::{EventFilter, RunFilter};
use orch::{Run, RunId, RunStatus};

use crate::table::{Table, duration_ms, time};
use crate::{CmdResult, Failure, OutputArgs, project};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs in this status (queued, starting, started, success, failure, canceling,
    /// canceled).
    #[arg(long, value_parser = parse_status)]
    status: Option<RunStatus>,
    /// At most this many runs.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run's id.
    run_id: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run's id.
    run_id: String,
    /// Only this step's lines.
    #[arg(long)]
    step: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

fn parse_run_id(s: &str) -> Result<RunId, Failure> {
    RunId::parse(s.trim())
        .map_err(|_| Failure::Usage(format!("`{s}` is not a run id (runs list shows them)")))
}

/// A step's stored log lines: the logger's and its child processes' stdout and stderr.
pub async fn logs(dir: Option<&Path>, args: LogsArgs) -> CmdResult {
    let run_id = parse_run_id(&args.run_id)?;
    let config = project::config(dir)?;
    let storage = project::storage(&config).await?;
    if storage.get_run(run_id).await?.is_none() {
        return Err(Failure::Work(format!("run {run_id} does not exist")));
    }
    let lines = storage.step_logs(run_id, args.step.as_deref()).await?;
    if args.output.json {
        let list: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| {
                serde_json::json!({
                    "timestamp": l.timestamp.to_rfc3339(),
                    "step_key": l.step_key,
                    "stream": l.stream.as_str(),
                    "level": l.level.as_str(),
                    "message": l.message,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    for line in &lines {
        println!(
            "{} {} {:<6} {}",
            line.timestamp.format("%H:%M:%S%.3f"),
            line.step_key,
            line.stream.as_str(),
            line.message
        );
    }
    Ok(())
}

fn parse_status(s: &str) -> Result<RunStatus, String> {
    RunStatus::parse(s).ok_or_else(|| {
        let all: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!(
            "unknown status `{s}` (one of {})",
            all.join(", ").to_lowercase()
        )
    })
}

pub async fn list(dir: Option<&Path>, args: ListArgs) -> CmdResult {
    let config = project::config(dir)?;
    let storage = project::storage(&config).await?;
    let runs = storage
        .list_runs(&RunFilter {
            statuses: args.status.into_iter().collect(),
            limit: Some(args.limit),
            ..RunFilter::default()
        })
        .await?;
    if args.output.json {
        let list: Vec<serde_json::Value> = runs.iter().map(run_json).collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs");
        return Ok(());
    }
    let mut table = Table::new(&[
        "RUN ID",
        "STATUS",
        "SELECTION",
        "PARTITION",
        "CREATED",
        "DURATION",
    ]);
    for run in &runs {
        table.row(vec![
            run.run_id.to_string(),
            run.status.to_string(),
            run.selection.clone(),
            run.partition_display(),
            time(run.created_at),
            run_duration(run),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

fn run_duration(run: &Run) -> String {
    match (run.started_at, run.ended_at) {
        (Some(s), Some(e)) => {
            duration_ms((e - s).num_microseconds().unwrap_or_default() as f64 / 1000.0)
        }
        (Some(_), None) => "running".to_owned(),
        _ => String::new(),
    }
}

fn run_json(run: &Run) -> serde_json::Value {
    serde_json::json!({
        "run_id": run.run_id.to_string(),
        "status": run.status.as_str(),
        "selection": run.selection,
        "asset_keys": run.asset_keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "partition_key": run.partition_key,
        "partition_key_end": run.partition_key_end,
        "tags": run.tags,
        "parent_run_id": run.parent_run_id.map(|r| r.to_string()),
        "root_run_id": run.root_run_id.map(|r| r.to_string()),
        "created_at": run.created_at.to_rfc3339(),
        "started_at": run.started_at.map(|t| t.to_rfc3339()),
        "ended_at": run.ended_at.map(|t| t.to_rfc3339()),
    })
}

pub async fn show(dir: Option<&Path>, args: ShowArgs) -> CmdResult {
    let run_id = parse_run_id(&args.run_id)?;
    let config = project::config(dir)?;
    let storage = project::storage(&config).await?;
    let Some(run) = storage.get_run(run_id).await? else {
        return Err(Failure::Work(format!("run {run_id} does not exist")));
    };
    let events = storage.run_events(run_id, &EventFilter::default()).await?;
    let steps = orch::steps::fold_steps(
        std::iter::empty::<String>(),
        events.iter().map(|e| &e.event),
        run.status,
    );
    if args.output.json {
        let mut value = run_json(&run);
        value["steps"] = steps
            .iter()
            .map(|step| {
                serde_json::json!({
                    "key": step.key, "status": step.state.as_str(), "attempts": step.attempts,
                    "duration_ms": step.duration_ms, "error": step.error,
                })
            })
            .collect();
        value["events"] = events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.id,
                    "type": e.event.kind.as_str(),
                    "timestamp": e.event.timestamp.to_rfc3339(),
                    "step_key": e.event.step_key,
                    "asset_key": e.event.asset_key.as_ref().map(ToString::to_string),
                    "partition_key": e.event.partition_key,
                    "message": e.event.body.message,
                    "error": e.event.body.error.as_ref().map(|e| e.message.clone()),
                })
            })
            .collect();
        println!("{value}");
        return Ok(());
    }
    println!("run {}  {}", run.run_id, run.status);
    println!("  selection  {}", run.selection);
    if !run.partition_display().is_empty() {
        println!("  partition  {}", run.partition_display());
    }
    println!("  created    {} UTC", time(run.created_at));
    if let Some(t) = run.started_at {
        println!("  started    {} UTC", time(t));
    }
    if let Some(t) = run.ended_at {
        println!("  ended      {} UTC ({})", time(t), run_duration(&run));
    }
    if !run.tags.is_empty() {
        let tags: Vec<String> = run.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  tags       {}", tags.join(" "));
    }
    if let Some(parent) = run.parent_run_id {
        println!("  parent     {parent}");
    }
    println!();
    let mut table = Table::new(&["STEP", "STATUS", "ATTEMPTS", "DURATION", "ERROR"]);
    for step in &steps {
        table.row(vec![
            step.key.clone(),
            step.state.as_str().to_owned(),
            step.attempts.to_string(),
            step.duration_ms.map(duration_ms).unwrap_or_default(),
            step.error
                .as_deref()
                .map(|e| e.lines().next().unwrap_or("").to_owned())
                .unwrap_or_default(),
        ]);
    }
    print!("{}", table.render());
    println!();
    let mut table = Table::new(&["TIME", "EVENT", "STEP", "DETAIL"]);
    for stored in &events {
        let e = &stored.event;
        let mut detail = Vec::new();
        if let Some(m) = &e.body.message {
            detail.push(m.clone());
        }
        if let Some(err) = &e.body.error {
            detail.push(err.message.lines().next().unwrap_or("").to_owned());
        }
        if let Some(check) = &e.body.check {
            detail.push(format!(
                "{} {}",
                check.check_name,
                if check.passed { "passed" } else { "failed" }
            ));
        }
        if e.kind == EventKind::AssetMaterialization {
            let meta: Vec<String> = e
                .body
                .metadata
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            detail.push(meta.join(" "));
        }
        table.row(vec![
            e.timestamp.format("%H:%M:%S%.3f").to_string(),
            e.kind.to_string(),
            e.step_key.clone().unwrap_or_default(),
            detail.join("; "),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run's id.
    run_id: String,
}

/// Asks to cancel a run, whichever process runs it: a queued run is canceled at once; a
/// running one becomes CANCELING and its process stops it.
pub async fn cancel(dir: Option<&Path>, args: CancelArgs) -> CmdResult {
    let run_id = parse_run_id(&args.run_id)?;
    let config = project::config(dir)?;
    let storage = project::storage(&config).await?;
    match storage.request_cancel(run_id, chrono::Utc::now()).await {
        Ok(run) => {
            println!("run {} is {}", run.run_id, run.status);
            Ok(())
        }
        Err(orch::StorageError::IllegalTransition { from, .. }) => Err(Failure::Work(format!(
            "run {run_id} has already ended ({from}); nothing to cancel"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete the runs that ended longer ago than this (`30d`, `12h`, `90m`).
    #[arg(long, value_name = "AGE")]
    older_than: String,
    /// Runs deleted per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
}

/// Event-log retention: deletes the runs that ended before `--older-than`, with their events,
/// step logs and index rows, in batches; assets keep their latest state.
pub async fn prune(dir: Option<&Path>, args: PruneArgs) -> CmdResult {
    let age = orch::daemon::freshness::parse_duration(&args.older_than)
        .map_err(|e| Failure::Usage(format!("--older-than: {e}")))?;
    let age = chrono::Duration::from_std(age)
        .map_err(|_| Failure::Usage(format!("--older-than `{}` is too long", args.older_than)))?;
    let before = chrono::Utc::now()
        .checked_sub_signed(age)
        .ok_or_else(|| Failure::Usage(format!("--older-than `{}` is too long", args.older_than)))?;
    let config = project::config(dir)?;
    let storage = project::storage(&config).await?;
    let total =
        orch::storage::prune_in_batches(storage.as_ref(), before, args.batch, usize::MAX).await?;
    println!(
        "pruned {} runs that ended before {}: {} events, {} log lines; and {} schedule, sensor and automation ticks",
        total.runs,
        before.format("%Y-%m-%d %H:%M:%S UTC"),
        total.events,
        total.logs,
        total.ticks
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct ReexecuteArgs {
    /// The run to execute again.
    run_id: String,
    /// Only the steps that did not succeed (failed, skipped, canceled or never started).
    #[arg(long)]
    from_failure: bool,
    /// Queue the run for the daemons instead of running it here.
    #[arg(long)]
    queue: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Executes a finished run again as a new run (its parent), whole or from its failure.
pub async fn reexecute(dir: Option<&Path>, args: ReexecuteArgs) -> CmdResult {
    let parent_id = parse_run_id(&args.run_id)?;
    let config = project::config(dir)?;
    let (defs, graph) = project::graph(&config)?;
    let storage = project::storage(&config).await?;
    let Some(parent) = storage.get_run(parent_id).await? else {
        return Err(Failure::Work(format!("run {parent_id} does not exist")));
    };
    let request = orch::execute::reexecution(storage.as_ref(), &graph, &parent, args.from_failure)
        .await
        .map_err(|e| match e {
            orch::execute::ReexecuteError::Storage(e) => e.into(),
            e => Failure::Usage(e.to_string()),
        })?;
    let plan = request
        .plan(&graph)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    if args.queue {
        let run = orch::submit::store(
            storage.as_ref(),
            &plan,
            &request,
            orch::submit::Submit::Queue,
        )
        .await?;
        println!(
            "queued run {} re-executing {parent_id} ({} steps)",
            run.run_id,
            plan.steps.len()
        );
        return Ok(());
    }
    crate::materialize::execute_here(&config, &defs, graph, &plan, &request, args.json).await
}
