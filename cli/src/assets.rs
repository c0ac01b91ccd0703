//! `orch assets list`: the catalog with each asset's last materialization and state.

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
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn list(dir: Option<&Path>, args: ListArgs) -> CmdResult {
    let config = project::config(dir)?;
    let (_, graph) = project::graph(&config)?;
    let keys: Vec<orch::AssetKey> = match &args.select {
        Some(s) => {
            let selection = Selection::parse(s).map_err(|e| Failure::Usage(e.to_string()))?;
            let selected = selection
                .resolve(&graph)
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
    let storage = project::storage(&config).await?;
    let latest: HashMap<orch::AssetKey, AssetPartitionRecord> = storage
        .latest_by_asset(&keys)
        .await?
        .into_iter()
        .map(|r| (r.asset_key.clone(), r))
        .collect();
    let partitions = storage.asset_partitions(&keys).await?;
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
        let state = if spec.partitions.is_some() {
            match (ok, failed) {
                (0, 0) => "MISSING".to_owned(),
                (ok, 0) => format!("{ok} MATERIALIZED"),
                (ok, failed) => format!("{ok} MATERIALIZED, {failed} FAILED"),
            }
        } else if record.is_some_and(AssetPartitionRecord::is_failed) {
            "FAILED".to_owned()
        } else if let Some(m) = materialization {
            if spec.code_version.is_some() && m.code_version != spec.code_version {
                "STALE (code changed)".to_owned()
            } else {
                "MATERIALIZED".to_owned()
            }
        } else {
            "MISSING".to_owned()
        };
        rows.push((key, spec, materialization.cloned(), state));
    }
    if args.output.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(key, spec, m, state)| {
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
    ]);
    for (key, spec, m, state) in rows {
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
        ]);
    }
    print!("{}", table.render());
    Ok(())
}
