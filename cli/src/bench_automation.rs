//! `orch bench automation`: the cost of one automation tick over a large graph. ASSETS hourly
//! assets (chains of CHAIN assets, each `eager`), every one materialized over the last
//! HISTORY hours; each tick a few upstream partitions change and the evaluation decides what to
//! request. Prints the time per tick (p50, p99, max) and the process's memory.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use clap::Args;
use orch::asset::asset;
use orch::automation::Condition;
use orch::automation::{
    AutomationState, EvaluationInput, FactsTable, Materialized, Window, batch_requests, evaluate,
};
use orch::partitions::PartitionsDefinition;
use orch::{AssetGraph, AssetKey, ComputeError, Materialization};

use crate::{CmdResult, Failure};

#[derive(Debug, Args)]
pub struct AutomationBenchArgs {
    /// Assets in the graph.
    #[arg(long, default_value_t = 2500)]
    assets: usize,
    /// Assets per dependency chain.
    #[arg(long, default_value_t = 10)]
    chain: usize,
    /// Hours of materialized history per asset (a year by default).
    #[arg(long, default_value_t = 8760)]
    history: usize,
    /// Partitions evaluated per asset.
    #[arg(long, default_value_t = 48)]
    window: usize,
    /// Ticks to time.
    #[arg(long, default_value_t = 30)]
    ticks: usize,
}

pub async fn automation(args: AutomationBenchArgs) -> CmdResult {
    if args.assets == 0 || args.chain == 0 || args.ticks == 0 {
        return Err(Failure::Usage(
            "--assets, --chain and --ticks must be at least 1".into(),
        ));
    }
    let start = Utc.with_ymd_and_hms(2025, 11, 1, 0, 0, 0).unwrap();
    let hourly = PartitionsDefinition::hourly("2025-11-01-00:00", "UTC")
        .map_err(|e| Failure::Work(e.to_string()))?;
    let mut defs = Vec::with_capacity(args.assets);
    let key = |i: usize| format!("c{}/a{}", i / args.chain, i % args.chain);
    for i in 0..args.assets {
        let mut b = asset(&key(i))
            .partitions(hourly.clone())
            .automation(Condition::eager());
        if i % args.chain != 0 {
            b = b.deps([key(i - 1)]);
        }
        defs.push(
            b.compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
                .map_err(|e| Failure::Work(e.to_string()))?,
        );
    }
    let graph = AssetGraph::new(defs).map_err(|e| Failure::Work(e.to_string()))?;
    let conditions: BTreeMap<AssetKey, Condition> = graph
        .specs()
        .filter_map(|s| s.automation.clone().map(|c| (s.key.clone(), c)))
        .collect();
    // A year of history: every asset materialized every hour.
    let began = Instant::now();
    let mut facts = FactsTable::default();
    let mut id = 0;
    let keys: Vec<String> = (0..args.history)
        .map(|h| {
            (start + Duration::hours(h as i64))
                .format("%Y-%m-%d-%H:%M")
                .to_string()
        })
        .collect();
    for spec in graph.specs() {
        for (h, k) in keys.iter().enumerate() {
            id += 1;
            facts.materialize(
                &spec.key,
                k,
                Materialized {
                    event_id: id,
                    at: start + Duration::hours(h as i64 + 1),
                    code_version: None,
                },
            );
        }
    }
    let load = began.elapsed();
    let (rss_loaded, _) = crate::bench::memory_mib();
    let mut now = start + Duration::hours(args.history as i64) + Duration::minutes(5);
    let window = Window {
        partitions: args.window,
        include_current: false,
    };
    let mut state = AutomationState::default();
    let mut previous = None;
    let mut times = Vec::with_capacity(args.ticks + 1);
    let mut requested_total = 0;
    let mut runs_total = 0;
    for tick in 0..=args.ticks {
        // Between ticks: a late file for one hour of the first asset of a few chains.
        for c in 0..5.min(args.assets / args.chain.max(1)) {
            id += 1;
            let asset = AssetKey::parse(&key(c * args.chain)).expect("valid key");
            let k = &keys[keys.len() - 1 - (tick % args.window.max(1))];
            facts.materialize(
                &asset,
                k,
                Materialized {
                    event_id: id,
                    at: now,
                    code_version: None,
                },
            );
        }
        let t = Instant::now();
        let evaluation = evaluate(&EvaluationInput {
            graph: &graph,
            conditions: &conditions,
            facts: &facts,
            now,
            previous,
            state: &state,
            window,
        });
        let runs = batch_requests(&graph, &evaluation.assets);
        let elapsed = t.elapsed();
        if tick > 0 {
            // The first tick is the first evaluation of every asset: not a steady-state tick.
            times.push(elapsed.as_secs_f64() * 1000.0);
            requested_total += evaluation
                .assets
                .iter()
                .map(|a| a.requested.len())
                .sum::<usize>();
            runs_total += runs.len();
        }
        state = evaluation.state;
        previous = Some(now);
        now += Duration::seconds(2);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let (rss, peak) = crate::bench::memory_mib();
    println!(
        "automation tick: {} assets ({} per chain), {} hours of history each ({} materializations, loaded in {:.1} s), {} partitions evaluated per asset",
        args.assets,
        args.chain,
        args.history,
        id,
        load.as_secs_f64(),
        args.window
    );
    println!(
        "  per tick over {} ticks: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} partitions requested in {} runs",
        times.len(),
        pct(0.5),
        pct(0.99),
        times[times.len() - 1],
        requested_total,
        runs_total
    );
    println!(
        "  memory: {rss_loaded:.0} MiB with the facts loaded, {rss:.0} MiB after the ticks, peak {peak:.0} MiB"
    );
    Ok(())
}
