//! `orch bench web`: the UI with a large history. Seeds RUNS runs (with events) and a graph of
//! ASSETS assets in a scratch run history (SQLite, Postgres or both), then requests the runs
//! page (first page, filtered, deep keyset page) and the lineage page through the web router
//! in process, and prints p50 and p99 latency. Asserts nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration, Utc};
use clap::Args;
use orch::event::EventKind;
use orch::run::NewRun;
use orch::storage::Backfill;
use orch_web::{AppState, NoMarts, Security};
use tower::ServiceExt;

use super::{BenchDb, graph, summary};
use crate::table::Table;
use crate::{CmdResult, Failure};

#[derive(Debug, Args)]
pub struct WebBenchArgs {
    /// Runs in the history.
    #[arg(long, default_value_t = 100_000)]
    runs: usize,
    /// Assets in the graph (rounded to layers of 100).
    #[arg(long, default_value_t = 2_500)]
    assets: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 50)]
    requests: usize,
    #[command(flatten)]
    db: BenchDb,
}

pub async fn web(args: WebBenchArgs) -> CmdResult {
    let width = 100.min(args.assets.max(1));
    let layers = args.assets.div_ceil(width);
    let graph = Arc::new(graph(layers, width)?);
    let keys: Vec<orch::AssetKey> = graph.toposorted().to_vec();
    let mut table = Table::new(&["BACKEND", "PAGE", "P50 MS", "P99 MS", "MAX MS"]);
    for scratch in args.db.scratches().await? {
        let result = round(
            &args,
            &graph,
            &keys,
            &scratch.url,
            scratch.backend,
            &mut table,
        )
        .await;
        (scratch.cleanup)().await;
        result?;
    }
    println!(
        "orch bench web: {} runs, {} assets ({layers} layers of {width}), {} requests per page, in process through the router",
        args.runs,
        graph.len(),
        args.requests
    );
    print!("{}", table.render());
    Ok(())
}

async fn round(
    args: &WebBenchArgs,
    graph: &Arc<orch::AssetGraph>,
    keys: &[orch::AssetKey],
    url: &str,
    backend: &'static str,
    table: &mut Table,
) -> CmdResult {
    let storage = orch::storage::open(url).await?;
    let seeded = Instant::now();
    let start = Utc::now() - Duration::days(30);
    let mut batch = Vec::new();
    let mut events = Vec::new();
    for i in 0..args.runs {
        let asset = keys[i % keys.len()].clone();
        let hour = start + Duration::hours((i / 24) as i64);
        let created_at = start + Duration::seconds(i as i64 * 20);
        let mut run = NewRun {
            selection: asset.to_string(),
            asset_keys: vec![asset.clone()],
            partition_key: Some(hour.format("%Y-%m-%d-%H:00").to_string()),
            ..NewRun::new(orch::new_run_id(), created_at)
        };
        run.tags = BTreeMap::from([("team".to_owned(), format!("t{}", i % 10))]);
        if i % 10 == 0 {
            events.push(
                orch::execute::now_event(run.run_id, EventKind::AssetMaterialization)
                    .asset(asset)
                    .step(run.selection.clone()),
            );
        }
        batch.push(run);
        if batch.len() == 2_000 || i + 1 == args.runs {
            let record = Backfill {
                id: orch::new_run_id().to_string(),
                selection: "*".to_owned(),
                partition_from: String::new(),
                partition_to: String::new(),
                run_count: batch.len() as u32,
                created_at: Utc::now(),
            };
            storage.create_backfill(&record, &batch).await?;
            storage.append_events(&events).await?;
            // Backfills queue their runs; one in ten is canceled, for the status filter.
            for run in batch.iter().step_by(10) {
                storage.request_cancel(run.run_id, Utc::now()).await?;
            }
            batch.clear();
            events.clear();
        }
    }
    eprintln!(
        "{backend}: seeded {} runs in {:.1} s",
        args.runs,
        seeded.elapsed().as_secs_f64()
    );
    let state = AppState::new(
        storage,
        graph.clone(),
        Vec::new(),
        Arc::new(NoMarts),
        Security::new(None),
    );
    let app = orch_web::router(state);
    let middle = args.runs / 2;
    let some_asset = keys[keys.len() / 2].to_string();
    let pages = [
        ("runs (first page)", "/runs".to_owned()),
        ("runs ?status=canceled", "/runs?status=canceled".to_owned()),
        ("runs ?asset=", format!("/runs?asset={some_asset}")),
        ("runs ?tag=team=t3", "/runs?tag=team%3Dt3".to_owned()),
        ("runs deep page (keyset)", format!("/runs?before={middle}")),
        ("api runs", "/api/v1/runs?limit=50".to_owned()),
        ("lineage (all assets)", "/lineage".to_owned()),
        ("api lineage", "/api/v1/lineage".to_owned()),
    ];
    for (name, uri) in pages {
        let mut ms = Vec::with_capacity(args.requests);
        for _ in 0..args.requests {
            let t = Instant::now();
            let response = app
                .clone()
                .oneshot(
                    Request::get(&uri)
                        .body(Body::empty())
                        .map_err(|e| Failure::Work(e.to_string()))?,
                )
                .await
                .map_err(|e| Failure::Work(e.to_string()))?;
            let status = response.status();
            let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
            if status != StatusCode::OK {
                return Err(Failure::Work(format!("{uri} answered {status}")));
            }
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let max = ms.iter().copied().fold(0.0, f64::max);
        let (p50, p99, _) = summary(ms);
        table.row(vec![
            backend.to_owned(),
            name.to_owned(),
            format!("{p50:.1}"),
            format!("{p99:.1}"),
            format!("{max:.1}"),
        ]);
    }
    Ok(())
}
