//! The asset views: the catalog's rows, an asset's page (history, partitions grid, checks,
//! automation evaluations, SQL), gathered from the run history and the graph.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;
use orch::AssetKey;
use orch::storage::AssetPartitionRecord;
use serde::Serialize;

use super::*;
use crate::AppState;
use crate::error::WebError;

/// An asset's state, from its latest materialization and failure.
pub fn asset_state(record: Option<&AssetPartitionRecord>) -> &'static str {
    match record {
        None => "NEVER",
        Some(r) if r.is_failed() => "FAILED",
        Some(r) if r.materialization.is_some() => "MATERIALIZED",
        Some(_) => "NEVER",
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AssetRow {
    pub key: String,
    pub group: String,
    pub kinds: Vec<String>,
    pub description: Option<String>,
    pub partitions: Option<String>,
    pub state: String,
    pub last_materialized_at: Option<String>,
    pub last_run_id: Option<String>,
    pub last_partition: Option<String>,
    pub checks: Vec<String>,
    /// Materialized partitions older than an upstream or the code version (see `orch assets
    /// list --stale`).
    pub stale: usize,
}

pub async fn asset_rows(
    state: &AppState,
    keys: Option<&BTreeSet<AssetKey>>,
) -> Result<Vec<AssetRow>, WebError> {
    let latest = state.storage.latest_by_asset(&[]).await?;
    let latest: HashMap<&AssetKey, &AssetPartitionRecord> =
        latest.iter().map(|r| (&r.asset_key, r)).collect();
    let facts = orch::automation::current_facts(state.storage.as_ref(), &state.graph).await?;
    Ok(state
        .graph
        .specs()
        .filter(|s| keys.is_none_or(|k| k.contains(&s.key)))
        .map(|spec| {
            let record = latest.get(&spec.key).copied();
            let mat = record.and_then(|r| r.materialization.as_ref());
            AssetRow {
                key: spec.key.to_string(),
                group: spec.group.clone(),
                kinds: spec.kinds.iter().cloned().collect(),
                description: spec.description.clone(),
                partitions: spec.partitions.as_ref().map(|p| p.describe()),
                state: asset_state(record).to_owned(),
                last_materialized_at: mat.map(|m| fmt_time(m.timestamp)),
                last_run_id: mat.map(|m| m.run_id.to_string()),
                last_partition: record
                    .filter(|r| r.materialization.is_some())
                    .and_then(|r| r.partition_key.clone()),
                checks: spec.checks.iter().map(|c| c.name.clone()).collect(),
                stale: orch::automation::stale_partitions(&state.graph, &facts, &spec.key).len(),
            }
        })
        .collect())
}

#[derive(Clone, Debug, Serialize)]
pub struct MaterializationView {
    pub event_id: i64,
    pub run_id: String,
    pub partition: Option<String>,
    pub timestamp: String,
    pub row_count: Option<i64>,
    /// The row count is the whole table's (a dbt model's), not the partition's.
    pub table_rows: bool,
    pub duration_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PartitionCell {
    pub key: String,
    /// MATERIALIZED, STALE, FAILED or MISSING.
    pub state: String,
}

/// One day of an hourly asset's partitions: a row of the day × hour grid.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionDay {
    /// `2026-11-22`.
    pub day: String,
    /// Hours 0 to 23; `None` where the day has no such partition (before the first, after now).
    pub hours: Vec<Option<PartitionCell>>,
}

/// The day × hour grid of hourly keys (`2026-11-22-10:00`); empty for other partitionings.
pub fn partition_days(cells: &[PartitionCell]) -> Vec<PartitionDay> {
    let mut days: Vec<PartitionDay> = Vec::new();
    for cell in cells {
        let k = cell.key.as_str();
        let hour = match (
            k.get(..10),
            k.get(11..13).and_then(|h| h.parse::<usize>().ok()),
        ) {
            (Some(day), Some(h)) if k.len() == 16 && h < 24 && k.ends_with(":00") => (day, h),
            _ => return Vec::new(),
        };
        if days.last().is_none_or(|d| d.day != hour.0) {
            days.push(PartitionDay {
                day: hour.0.to_owned(),
                hours: vec![None; 24],
            });
        }
        if let Some(d) = days.last_mut() {
            d.hours[hour.1] = Some(cell.clone());
        }
    }
    // The newest day on top.
    days.reverse();
    days
}

/// Materializations of one run: a row of an asset's history. A run over many partitions is one
/// row with its range, not one row per partition repeating a table-wide row count.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryRow {
    pub run_id: String,
    pub short_id: String,
    pub timestamp: String,
    /// `2026-11-22-10:00`, or `2026-11-22-00:00 … 2026-11-22-23:00 (24)`.
    pub partitions: String,
    pub row_count: Option<i64>,
    /// The row count is the whole table's (a dbt model), not the partition's.
    pub table_rows: bool,
    pub duration_ms: Option<f64>,
}

/// The history grouped by run (newest first, as stored).
pub fn history_rows(history: &[MaterializationView]) -> Vec<HistoryRow> {
    let mut rows: Vec<(HistoryRow, Vec<&str>)> = Vec::new();
    for m in history {
        match rows.last_mut() {
            Some((row, parts)) if row.run_id == m.run_id => {
                parts.extend(m.partition.as_deref());
                row.duration_ms = match (row.duration_ms, m.duration_ms) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            _ => rows.push((
                HistoryRow {
                    run_id: m.run_id.clone(),
                    short_id: m
                        .run_id
                        .get(m.run_id.len().saturating_sub(8)..)
                        .unwrap_or_default()
                        .to_owned(),
                    timestamp: m.timestamp.clone(),
                    partitions: String::new(),
                    row_count: m.row_count,
                    table_rows: m.table_rows,
                    duration_ms: m.duration_ms,
                },
                m.partition.iter().map(String::as_str).collect(),
            )),
        }
    }
    rows.into_iter()
        .map(|(mut row, mut parts)| {
            parts.sort_unstable();
            parts.dedup();
            row.partitions = match parts.as_slice() {
                [] => String::new(),
                [one] => (*one).to_owned(),
                [first, .., last] => format!("{first} … {last} ({})", parts.len()),
            };
            row
        })
        .collect()
}

/// One line of an automation evaluation's tree.
#[derive(Clone, Debug, Serialize)]
pub struct TreeLine {
    pub depth: usize,
    pub label: String,
    pub value: bool,
    /// For which partitions it held: `2026-11-22-10:00`, `24 partitions (a … b)`.
    pub held_for: String,
}

/// One stored automation evaluation of an asset (`orch automation explain`).
#[derive(Clone, Debug, Serialize)]
pub struct EvaluationView {
    pub tick_id: i64,
    pub tick_time: Option<String>,
    /// `nothing`, `the asset`, `2026-11-22-10:00`, `3 partitions (a … b)`.
    pub requested: String,
    pub run_ids: Vec<String>,
    pub tree: Vec<TreeLine>,
}

impl EvaluationView {
    pub fn new(e: &orch::storage::AutomationEvaluationRecord) -> EvaluationView {
        let mut tree = Vec::new();
        match serde_json::from_str::<orch::automation::NodeEvaluation>(&e.tree) {
            Ok(root) => flatten_tree(&root, 0, &mut tree),
            Err(err) => tree.push(TreeLine {
                depth: 0,
                label: format!("unreadable evaluation: {err}"),
                value: false,
                held_for: String::new(),
            }),
        }
        EvaluationView {
            tick_id: e.tick_id,
            tick_time: e.tick_time.map(fmt_time),
            requested: describe_partitions(&e.requested, e.requested.len()),
            run_ids: e.run_ids.iter().map(ToString::to_string).collect(),
            tree,
        }
    }
}

fn describe_partitions(partitions: &[String], count: usize) -> String {
    match partitions {
        [] => "nothing".to_owned(),
        [one] if one.is_empty() => "the asset".to_owned(),
        [one] if count <= 1 => one.clone(),
        [first, .., last] => format!("{count} partitions ({first} … {last})"),
        [_] => format!("{count} partitions"),
    }
}

fn flatten_tree(node: &orch::automation::NodeEvaluation, depth: usize, out: &mut Vec<TreeLine>) {
    out.push(TreeLine {
        depth,
        label: if node.children.is_empty() {
            node.condition.clone()
        } else {
            node.label.clone()
        },
        value: node.true_count > 0,
        held_for: if node.true_count == 0 || node.true_partitions == [""] {
            String::new()
        } else {
            describe_partitions(&node.true_partitions, node.true_count)
        },
    });
    for child in &node.children {
        flatten_tree(child, depth + 1, out);
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckView {
    pub name: String,
    pub severity: String,
    pub blocking: bool,
    pub description: Option<String>,
    /// The latest result: PASSED, FAILED or NONE.
    pub latest: String,
    pub latest_at: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AssetDetail {
    #[serde(flatten)]
    pub row: AssetRow,
    pub owners: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub code_version: Option<String>,
    pub upstream: Vec<String>,
    pub downstream: Vec<String>,
    pub history: Vec<MaterializationView>,
    /// The history grouped by run.
    pub history_rows: Vec<HistoryRow>,
    pub partition_grid: Vec<PartitionCell>,
    /// The grid by day and hour, for hourly assets.
    pub partition_days: Vec<PartitionDay>,
    /// Partitions per state (MATERIALIZED, STALE, FAILED, MISSING) over the grid.
    pub partition_counts: BTreeMap<String, usize>,
    /// The latest automation evaluations, newest first.
    pub evaluations: Vec<EvaluationView>,
    pub checks: Vec<CheckView>,
    /// The model's SQL, for dbt models (the spec's `sql` metadata).
    pub sql: Option<String>,
    /// A partition key to suggest in the Materialize form.
    pub suggested_partition: Option<String>,
}

/// Most partitions in an asset's grid: the newest ones.
const GRID_MAX: usize = 24 * 14;

pub async fn asset_detail(state: &AppState, key: &AssetKey) -> Result<AssetDetail, WebError> {
    let spec = state
        .graph
        .spec(key)
        .ok_or_else(|| WebError::NotFound(format!("no asset `{key}`")))?;
    let keys = BTreeSet::from([key.clone()]);
    let row = asset_rows(state, Some(&keys)).await?.remove(0);
    let history: Vec<MaterializationView> = state
        .storage
        .asset_events(key, &[EventKind::AssetMaterialization], None, 100)
        .await?
        .into_iter()
        .map(|e| MaterializationView {
            event_id: e.id,
            run_id: e.event.run_id.to_string(),
            partition: e.event.partition_key.clone(),
            timestamp: fmt_time(e.event.timestamp),
            row_count: e.event.body.metadata.row_count(),
            table_rows: e.event.body.metadata.get("dbt/unique_id").is_some(),
            duration_ms: e
                .event
                .body
                .metadata
                .get(orch::metadata::DURATION_MS)
                .and_then(|v| v.as_f64())
                .or(e.event.body.duration_ms),
        })
        .collect();
    let records = state
        .storage
        .asset_partitions(std::slice::from_ref(key))
        .await?;
    let by_partition: HashMap<String, &AssetPartitionRecord> = records
        .iter()
        .map(|r| (r.partition_key.clone().unwrap_or_default(), r))
        .collect();
    let now = Utc::now();
    let facts = orch::automation::current_facts(state.storage.as_ref(), &state.graph).await?;
    let stale: BTreeSet<String> = orch::automation::stale_partitions(&state.graph, &facts, key)
        .into_iter()
        .map(|(slot, _)| slot)
        .collect();
    let (partition_grid, suggested_partition) = match &spec.partitions {
        Some(def) => {
            let mut all = def.keys_until(now);
            if all.len() > GRID_MAX {
                all.drain(..all.len() - GRID_MAX);
            }
            let grid = all
                .iter()
                .map(|k| PartitionCell {
                    key: k.clone(),
                    state: match by_partition.get(k) {
                        Some(r) if r.is_failed() => "FAILED",
                        Some(r) if r.materialization.is_some() && stale.contains(k) => "STALE",
                        Some(r) if r.materialization.is_some() => "MATERIALIZED",
                        _ => "MISSING",
                    }
                    .to_owned(),
                })
                .collect();
            (
                grid,
                def.last_complete_key(now).or_else(|| all.last().cloned()),
            )
        }
        None => (Vec::new(), None),
    };
    let results = state.storage.check_results(key, 200).await?;
    let checks = spec
        .checks
        .iter()
        .map(|c| {
            let latest = results.iter().find(|r| r.evaluation.check_name == c.name);
            CheckView {
                name: c.name.clone(),
                severity: c.severity.as_str().to_owned(),
                blocking: c.blocking,
                description: c.description.clone(),
                latest: match latest {
                    Some(r) if r.evaluation.passed => "PASSED",
                    Some(_) => "FAILED",
                    None => "NONE",
                }
                .to_owned(),
                latest_at: latest.map(|r| fmt_time(r.timestamp)),
            }
        })
        .collect();
    let sql = ["sql", "dbt/sql", "raw_sql"].iter().find_map(|k| {
        spec.metadata
            .get(k)
            .and_then(|v| match serde_json::to_value(v).ok()? {
                serde_json::Value::String(s) => Some(s),
                other => other
                    .get("value")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
            })
    });
    let mut partition_counts = BTreeMap::new();
    for cell in &partition_grid {
        *partition_counts.entry(cell.state.clone()).or_insert(0) += 1;
    }
    let evaluations = state
        .storage
        .automation_evaluations(&key.to_user_string(), 5)
        .await?
        .iter()
        .map(EvaluationView::new)
        .collect();
    Ok(AssetDetail {
        row,
        history_rows: history_rows(&history),
        partition_days: partition_days(&partition_grid),
        partition_counts,
        evaluations,
        owners: spec.owners.clone(),
        tags: spec.tags.clone(),
        code_version: spec.code_version.clone(),
        upstream: state
            .graph
            .parents(key)
            .iter()
            .map(|k| k.to_string())
            .collect(),
        downstream: state
            .graph
            .children(key)
            .iter()
            .map(|k| k.to_string())
            .collect(),
        history,
        partition_grid,
        checks,
        sql,
        suggested_partition,
    })
}
