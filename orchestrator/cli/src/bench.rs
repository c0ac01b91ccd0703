//! `orch bench overhead`: the orchestration overhead of a LAYERS x WIDTH graph of no-op assets,
//! where asset (l, i) depends on (l-1, i) and (l-1, (i+1) mod WIDTH), with run history in
//! SQLite and in Postgres. Prints the figures; asserts nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use orch::config::ExecutionConfig;
use orch::execute::{Executor, RunRequest, StepStatus};
use orch::plan::{self, PartitionRequest};
use orch::{AssetGraph, AssetsDefinition, ComputeError, Materialization, Resources, asset};
use tokio_util::sync::CancellationToken;

use crate::table::{Table, duration_ms};
use crate::{CmdResult, Failure};

#[derive(Debug, Args)]
pub struct OverheadArgs {
    #[arg(long, default_value_t = 10)]
    layers: usize,
    #[arg(long, default_value_t = 100)]
    width: usize,
    /// Which run histories to measure.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    backend: BackendChoice,
    /// The Postgres database to use (a throwaway schema is created in it and dropped after).
    #[arg(
        long,
        env = "ORCH_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_url: String,
    /// Steps running at once.
    #[arg(long, default_value_t = 16)]
    max_concurrent: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

/// The benchmark's graph.
pub fn graph(layers: usize, width: usize) -> Result<AssetGraph, Failure> {
    let key = |l: usize, i: usize| format!("bench/l{l:03}_{i:04}");
    let mut defs: Vec<AssetsDefinition> = Vec::with_capacity(layers * width);
    for l in 0..layers {
        for i in 0..width {
            let mut builder = asset(&key(l, i)).group("bench");
            if l > 0 {
                let mut deps = vec![key(l - 1, i)];
                let other = key(l - 1, (i + 1) % width);
                if !deps.contains(&other) {
                    deps.push(other);
                }
                builder = builder.deps(deps);
            }
            defs.push(
                builder
                    .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
                    .map_err(|e| Failure::Work(e.to_string()))?,
            );
        }
    }
    AssetGraph::new(defs).map_err(|e| Failure::Work(e.to_string()))
}

struct Figures {
    backend: &'static str,
    steps: usize,
    build_ms: f64,
    execute_ms: f64,
    total_ms: f64,
}

pub async fn overhead(args: OverheadArgs) -> CmdResult {
    if args.layers == 0 || args.width == 0 {
        return Err(Failure::Usage(
            "--layers and --width must be at least 1".into(),
        ));
    }
    let process_start = Instant::now();
    println!(
        "orch bench overhead: {} layers x {} wide = {} no-op assets, up to {} steps at once",
        args.layers,
        args.width,
        args.layers * args.width,
        args.max_concurrent
    );
    let mut figures = Vec::new();
    if matches!(args.backend, BackendChoice::Sqlite | BackendChoice::Both) {
        let dir = tempfile_dir()?;
        let url = format!("sqlite://{}", dir.join("orch.db").display());
        let result = measure("sqlite", &url, &args).await;
        let _ = std::fs::remove_dir_all(&dir);
        figures.push(result?);
    }
    if matches!(args.backend, BackendChoice::Postgres | BackendChoice::Both) {
        let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
        orch::storage::schema::create_schema(&args.postgres_url, &schema)
            .await
            .map_err(|e| Failure::Work(format!("{e}\n  (pass --postgres-url or set ORCH_BENCH_DATABASE_URL; --backend sqlite skips Postgres)")))?;
        let url = orch::storage::schema::url_with_schema(&args.postgres_url, &schema);
        let result = measure("postgres", &url, &args).await;
        let _ = orch::storage::schema::drop_schema(&args.postgres_url, &schema).await;
        figures.push(result?);
    }
    let mut table = Table::new(&[
        "BACKEND",
        "STEPS",
        "GRAPH+PLAN",
        "EXECUTE+RECORD",
        "TOTAL",
        "PER STEP",
    ]);
    for f in &figures {
        table.row(vec![
            f.backend.to_owned(),
            f.steps.to_string(),
            duration_ms(f.build_ms),
            duration_ms(f.execute_ms),
            duration_ms(f.total_ms),
            format!("{:.3} ms", f.total_ms / f.steps as f64),
        ]);
    }
    print!("{}", table.render());
    println!(
        "whole command: {}",
        duration_ms(process_start.elapsed().as_secs_f64() * 1000.0)
    );
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("orch-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::Work(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// One measured run: build the graph, plan, open and migrate the run history (not counted),
/// then create the run and execute it with every event stored.
async fn measure(
    backend: &'static str,
    url: &str,
    args: &OverheadArgs,
) -> Result<Figures, Failure> {
    let storage = orch::storage::open(url).await?;
    let start = Instant::now();
    let graph = Arc::new(graph(args.layers, args.width)?);
    let selected: BTreeSet<_> = graph.toposorted().iter().cloned().collect();
    let plan = plan::plan(&graph, &selected, &PartitionRequest::None)
        .map_err(|e| Failure::Work(e.to_string()))?;
    let build_ms = start.elapsed().as_secs_f64() * 1000.0;
    let executor = Executor::new(
        graph,
        storage,
        Resources::new(),
        ExecutionConfig {
            max_concurrent: args.max_concurrent,
            ..ExecutionConfig::default()
        },
        Default::default(),
    );
    let exec_start = Instant::now();
    let run = executor
        .create_run(
            &plan,
            &RunRequest {
                selection: "*".into(),
                ..RunRequest::default()
            },
        )
        .await?;
    let outcome = executor
        .execute(run.run_id, &plan, CancellationToken::new(), Vec::new())
        .await?;
    let execute_ms = exec_start.elapsed().as_secs_f64() * 1000.0;
    let succeeded = outcome
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Succeeded)
        .count();
    if succeeded != plan.steps.len() {
        return Err(Failure::Work(format!(
            "{backend}: only {succeeded} of {} steps succeeded",
            plan.steps.len()
        )));
    }
    Ok(Figures {
        backend,
        steps: plan.steps.len(),
        build_ms,
        execute_ms,
        total_ms: build_ms + execute_ms,
    })
}
