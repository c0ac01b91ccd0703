//! `orch automation`: why an asset was or was not requested (its latest evaluations, as trees
//! with the partitions each node held for), and the ticks.

use std::path::Path;

use clap::{Args, Subcommand};
use orch::automation::NodeEvaluation;

use crate::table::{Table, time};
use crate::{CmdResult, Failure, OutputArgs, project};

#[derive(Debug, Subcommand)]
pub enum AutomationCommand {
    /// An asset's condition and its latest evaluations: each node true or false, for which
    /// partitions, and the runs requested.
    Explain(ExplainArgs),
    /// The latest automation ticks.
    Ticks(TicksArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The asset key (`staging/listen_events`).
    asset: String,
    /// Only what concerns this partition.
    #[arg(long)]
    partition: Option<String>,
    /// How many evaluations.
    #[arg(long, default_value_t = 3)]
    limit: u32,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct TicksArgs {
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(dir: Option<&Path>, cmd: AutomationCommand) -> CmdResult {
    match cmd {
        AutomationCommand::Explain(args) => explain(dir, args).await,
        AutomationCommand::Ticks(args) => ticks(dir, args).await,
    }
}

async fn explain(dir: Option<&Path>, args: ExplainArgs) -> CmdResult {
    let config = project::config(dir)?;
    let (_, graph) = project::graph(&config)?;
    let key = orch::AssetKey::parse(&args.asset).map_err(|e| Failure::Usage(e.to_string()))?;
    if !graph.contains(&key) {
        let hint = graph
            .nearest_key(&args.asset)
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        return Err(Failure::Usage(format!("no asset `{}`{hint}", args.asset)));
    }
    let (conditions, _) = project::automation(&config, &graph)?;
    let storage = project::storage(&config).await?;
    let user_key = key.to_user_string();
    let evaluations = storage
        .automation_evaluations(&user_key, args.limit.clamp(1, 1000))
        .await?;
    let partition = args.partition.as_deref();
    if args.output.json {
        let list: Vec<serde_json::Value> = evaluations
            .iter()
            .map(|e| {
                let tree: serde_json::Value =
                    serde_json::from_str(&e.tree).unwrap_or(serde_json::Value::Null);
                serde_json::json!({
                    "tick_id": e.tick_id,
                    "tick_time": e.tick_time.map(|t| t.to_rfc3339()),
                    "requested": e.requested,
                    "run_ids": e.run_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "tree": tree,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "asset": user_key,
                "condition": conditions.get(&key).map(ToString::to_string),
                "evaluations": list,
            })
        );
        return Ok(());
    }
    match conditions.get(&key) {
        None => println!("{user_key}: no automation condition (materialized only when asked)"),
        Some(c) if c.short() != c.to_string() => println!("{user_key}: {} = {c}", c.short()),
        Some(c) => println!("{user_key}: {c}"),
    }
    if evaluations.is_empty() {
        println!("no evaluation recorded yet (is a daemon running?)");
    }
    for e in &evaluations {
        let when = e.tick_time.map(time).unwrap_or_default();
        let requested = if e.requested.is_empty() {
            "requested nothing".to_owned()
        } else {
            format!(
                "requested {} in run(s) {}",
                describe(&e.requested),
                e.run_ids
                    .iter()
                    .map(|r| r.short())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        println!("\ntick {} at {when}: {requested}", e.tick_id);
        match serde_json::from_str::<NodeEvaluation>(&e.tree) {
            Ok(tree) => print_tree(&tree, 1, partition),
            Err(err) => println!("  (unreadable evaluation: {err})"),
        }
    }
    Ok(())
}

fn describe(partitions: &[String]) -> String {
    match partitions {
        [one] if one.is_empty() => "the asset".to_owned(),
        [one] => one.clone(),
        [first, .., last] => format!("{} partitions ({first} ... {last})", partitions.len()),
        [] => "nothing".to_owned(),
    }
}

fn print_tree(node: &NodeEvaluation, depth: usize, partition: Option<&str>) {
    let indent = "  ".repeat(depth);
    let verdict = match partition {
        Some(p) => {
            if node.true_partitions.iter().any(|t| t == p) {
                "true".to_owned()
            } else {
                "false".to_owned()
            }
        }
        None if node.true_count == 0 => "false".to_owned(),
        None if node.true_partitions == [""] => "true".to_owned(),
        None => format!(
            "true for {}",
            describe_true(&node.true_partitions, node.true_count)
        ),
    };
    let label = if node.children.is_empty() {
        node.condition.clone()
    } else {
        node.label.clone()
    };
    println!("{indent}{label}: {verdict}");
    for child in &node.children {
        print_tree(child, depth + 1, partition);
    }
}

fn describe_true(partitions: &[String], count: usize) -> String {
    match partitions {
        [one] => one.clone(),
        [first, .., last] => format!("{count} partitions ({first} ... {last})"),
        [] => format!("{count} partitions"),
    }
}

async fn ticks(dir: Option<&Path>, args: TicksArgs) -> CmdResult {
    let config = project::config(dir)?;
    let storage = project::storage(&config).await?;
    let ticks = storage.automation_ticks(args.limit.clamp(1, 1000)).await?;
    if args.output.json {
        let list: Vec<serde_json::Value> = ticks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.id,
                    "tick_time": t.tick_time.to_rfc3339(),
                    "daemon": t.daemon,
                    "duration_ms": t.duration_ms,
                    "assets_evaluated": t.assets_evaluated,
                    "requested": t.requested,
                    "run_ids": t.run_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    let mut table = Table::new(&[
        "TICK",
        "TIME",
        "DAEMON",
        "MS",
        "ASSETS",
        "REQUESTED",
        "RUNS",
    ]);
    for t in ticks {
        table.row(vec![
            t.id.to_string(),
            time(t.tick_time),
            t.daemon,
            format!("{:.1}", t.duration_ms),
            t.assets_evaluated.to_string(),
            t.requested.to_string(),
            t.run_ids
                .iter()
                .map(|r| r.short())
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}
