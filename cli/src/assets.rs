//! `orch assets list`: the catalog with each asset's last materialization and state.
//! `orch assets show KEY`: one asset's documentation.

use std::collections::HashMap;
use std::path::Path;

use clap::Args;
use orch::Selection;
use orch::storage::AssetPartitionRecord;

use crate::table::{Table, time};
use crate::{CmdResult, Failure, OutputArgs, project};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these assets (selection syntax).
    #[arg(long, short)]
    select: Option<String>,
    /// Only assets with stale partitions (upstream materialized after them, or their code
    /// version changed).
    #[arg(long)]
    stale: bool,
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn list(dir: Option<&Path>, args: ListArgs) -> CmdResult {
    let config = project::config(dir)?;
    let (_, graph) = project::graph(&config)?;
    let storage = project::storage(&config).await?;
    let facts = orch::automation::current_facts(storage.as_ref(), &graph).await?;
    let keys: Vec<orch::AssetKey> = match &args.select {
        Some(s) => {
            let selection = Selection::parse(s).map_err(|e| Failure::Usage(e.to_string()))?;
            let status = orch::automation::FactsStatus {
                graph: &graph,
                facts: &facts,
            };
            let selected = selection
                .resolve_with(&graph, &status)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            graph
                .toposorted()
                .iter()
                .filter(|k| selected.contains(*k))
                .cloned()
                .collect()
        }
        None => graph.toposorted().to_vec(),
    };
    let latest: HashMap<orch::AssetKey, AssetPartitionRecord> = storage
        .latest_by_asset(&keys)
        .await?
        .into_iter()
        .map(|r| (r.asset_key.clone(), r))
        .collect();
    let partitions = storage.asset_partitions(&keys).await?;
    let conditions = project::automation(&config, &graph)?.0;
    let mut counts: HashMap<&orch::AssetKey, (usize, usize)> = HashMap::new();
    for record in &partitions {
        let entry = counts.entry(&record.asset_key).or_default();
        if record.is_failed() {
            entry.1 += 1;
        } else if record.materialization.is_some() {
            entry.0 += 1;
        }
    }
    let mut rows = Vec::new();
    for key in &keys {
        let spec = graph.spec(key).expect("selected keys are in the graph");
        let record = latest.get(key);
        let materialization = record.and_then(|r| r.materialization.as_ref());
        let (ok, failed) = counts.get(key).copied().unwrap_or_default();
        let stale = orch::automation::stale_partitions(&graph, &facts, key);
        if args.stale && stale.is_empty() {
            continue;
        }
        let mut state = if spec.partitions.is_some() {
            match (ok, failed) {
                (0, 0) => "MISSING".to_owned(),
                (ok, 0) => format!("{ok} MATERIALIZED"),
                (ok, failed) => format!("{ok} MATERIALIZED, {failed} FAILED"),
            }
        } else if record.is_some_and(AssetPartitionRecord::is_failed) {
            "FAILED".to_owned()
        } else if materialization.is_some() {
            "MATERIALIZED".to_owned()
        } else {
            "MISSING".to_owned()
        };
        match stale.as_slice() {
            [] => {}
            [(slot, reason)] if slot.is_empty() => state = format!("STALE ({reason})"),
            [(slot, reason)] => state.push_str(&format!(", 1 STALE ({slot}: {reason})")),
            many => state.push_str(&format!(", {} STALE", many.len())),
        }
        let automation = conditions.get(key).map(orch::automation::Condition::short);
        rows.push((
            key,
            spec,
            materialization.cloned(),
            state,
            automation,
            stale.len(),
        ));
    }
    if args.output.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(key, spec, m, state, automation, stale)| {
                serde_json::json!({
                    "key": key.to_string(),
                    "group": spec.group,
                    "kinds": spec.kinds,
                    "partitions": spec.partitions.as_ref().map(|p| p.describe()),
                    "last_materialization": m.as_ref().map(|m| serde_json::json!({
                        "run_id": m.run_id.to_string(),
                        "timestamp": m.timestamp.to_rfc3339(),
                        "row_count": m.metadata.row_count(),
                    })),
                    "state": state,
                    "stale_partitions": stale,
                    "automation": automation,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    let mut table = Table::new(&[
        "KEY",
        "GROUP",
        "KINDS",
        "PARTITIONS",
        "LAST MATERIALIZATION",
        "ROWS",
        "STATE",
        "AUTOMATION",
    ]);
    for (key, spec, m, state, automation, _) in rows {
        table.row(vec![
            key.to_string(),
            spec.group.clone(),
            spec.kinds.iter().cloned().collect::<Vec<_>>().join(","),
            spec.partitions
                .as_ref()
                .and_then(|p| p.cadence())
                .map(|c| format!("{c:?}").to_lowercase())
                .or_else(|| spec.partitions.as_ref().map(|_| "static".to_owned()))
                .unwrap_or_default(),
            m.as_ref()
                .map(|m| time(m.timestamp))
                .unwrap_or_else(|| "never".to_owned()),
            m.as_ref()
                .and_then(|m| m.metadata.row_count())
                .map(|r| r.to_string())
                .unwrap_or_default(),
            state,
            automation
                .map(|a| {
                    if a.chars().count() > 40 {
                        "custom (orch automation explain)".to_owned()
                    } else {
                        a
                    }
                })
                .unwrap_or_default(),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The asset's key (`mart_top_songs`, `staging/listen_events`).
    key: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// An asset's documentation: what the definitions say (no run history needed).
pub fn show(dir: Option<&Path>, args: ShowArgs) -> CmdResult {
    let config = project::config(dir)?;
    let (_, graph) = project::graph(&config)?;
    let key = orch::AssetKey::parse(&args.key)
        .ok()
        .filter(|k| graph.contains(k))
        .ok_or_else(|| {
            let hint = graph
                .nearest_key(&args.key)
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            Failure::Usage(format!("no asset `{}`{hint}", args.key))
        })?;
    let spec = graph.spec(&key).expect("a key of the graph");
    let columns = orch_dbt::docs::columns(&spec.metadata);
    let upstream: Vec<String> = graph.parents(&key).iter().map(|k| k.to_string()).collect();
    let downstream: Vec<String> = graph.children(&key).iter().map(|k| k.to_string()).collect();
    if args.output.json {
        let doc = serde_json::json!({
            "key": key.to_string(),
            "description": spec.description,
            "group": spec.group,
            "kinds": spec.kinds,
            "partitions": spec.partitions.as_ref().map(|p| p.describe()),
            "upstream": upstream,
            "downstream": downstream,
            "checks": spec.checks.iter().map(|c| serde_json::json!({
                "name": c.name, "severity": c.severity.as_str(), "blocking": c.blocking,
                "description": c.description,
            })).collect::<Vec<_>>(),
            "columns": columns.iter().map(|c| serde_json::json!({
                "name": c.name, "data_type": c.data_type, "description": c.description,
                "constraints": c.constraints, "tests": c.tests,
            })).collect::<Vec<_>>(),
        });
        println!("{doc}");
        return Ok(());
    }
    println!("{key}");
    if let Some(d) = &spec.description {
        println!("  {}", d.trim());
    }
    println!();
    println!("group       {}", spec.group);
    println!(
        "kinds       {}",
        spec.kinds.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    if let Some(p) = &spec.partitions {
        println!("partitions  {}", p.describe());
    }
    println!("upstream    {}", upstream.join(", "));
    println!("downstream  {}", downstream.join(", "));
    if !spec.checks.is_empty() {
        println!("\nchecks");
        for c in &spec.checks {
            println!(
                "  {} ({}{}){}",
                c.name,
                c.severity.as_str(),
                if c.blocking { ", blocking" } else { "" },
                c.description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
        }
    }
    if !columns.is_empty() {
        println!("\ncolumns");
        print!("{}", orch_dbt::docs::render_columns(&columns));
    }
    Ok(())
}
