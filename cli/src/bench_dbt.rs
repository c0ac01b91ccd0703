//! `orch bench dbt`: the cost of the dbt step of one hour, build after build, in one process
//! (as the daemon runs them). Run in a platform project whose hour is loaded. The first build
//! pays dbt's start-up (and, with workers, starts the worker that parses the project); the
//! next ones show what each build of a running platform costs. `ORCH_DBT_WORKER=0` runs the
//! same builds with one `dbt` process each, for the comparison.

use std::path::Path;
use std::time::Instant;

use clap::Args;
use orch::RunRequest;
use orch::plan::PartitionRequest;

use crate::{CmdResult, Failure, materialize, project};

#[derive(Debug, Args)]
pub struct DbtBenchArgs {
    /// The hour to build (a partition key: `2026-11-22-18:00`).
    #[arg(long)]
    partition: String,
    /// The assets to build.
    #[arg(long, default_value = "kind:dbt")]
    select: String,
    /// Builds to time.
    #[arg(long, default_value_t = 5)]
    builds: usize,
}

pub async fn dbt(dir: Option<&Path>, args: DbtBenchArgs) -> CmdResult {
    if args.builds == 0 {
        return Err(Failure::Usage("--builds must be at least 1".into()));
    }
    let config = project::config(dir)?;
    let (defs, graph) = project::graph(&config)?;
    let storage = project::storage(&config).await?;
    let request = RunRequest::new(
        args.select.as_str(),
        PartitionRequest::Key(args.partition.clone()),
    );
    let plan = request
        .plan(&graph)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let mode = if orch_dbt::worker_enabled_by_env() {
        "a long-lived dbt worker".to_owned()
    } else {
        format!("one dbt process per build ({}=0)", orch_dbt::WORKER_ENV)
    };
    println!(
        "orch bench dbt: {} step(s) of `{}` for {}, {} builds, {}, {} cores",
        plan.steps.len(),
        args.select,
        args.partition,
        args.builds,
        mode,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("{:<6} {:>9}", "BUILD", "SECONDS");
    let mut later = Vec::new();
    for build in 1..=args.builds {
        let executor = materialize::executor(&config, &defs, graph.clone(), storage.clone());
        let run = executor.create_run(&plan, &request).await?;
        let started = Instant::now();
        let outcome = executor
            .execute(run.run_id, &plan, Default::default(), Vec::new())
            .await?;
        let took = started.elapsed().as_secs_f64();
        if outcome.run.status != orch::RunStatus::Success {
            return Err(Failure::Work(format!(
                "build {build} failed; see `orch runs show {}`",
                run.run_id
            )));
        }
        println!("{build:<6} {took:>9.2}");
        if build > 1 {
            later.push(took);
        }
    }
    if !later.is_empty() {
        later.sort_by(f64::total_cmp);
        println!(
            "after the first: median {:.2} s, max {:.2} s",
            later[later.len() / 2],
            later[later.len() - 1]
        );
    }
    Ok(())
}
