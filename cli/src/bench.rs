//! `orch bench overhead`: the orchestration overhead of a LAYERS x WIDTH graph of no-op assets,
//! where asset (l, i) depends on (l-1, i) and (l-1, (i+1) mod WIDTH), with run history in
//! SQLite and in Postgres. Prints the figures; asserts nothing.

use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use orch::config::ExecutionConfig;
use orch::execute::{Executor, StepState};
use orch::plan::PartitionRequest;
use orch::request::{Launcher, RunRequest};
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
    #[command(flatten)]
    db: BenchDb,
    /// Steps running at once.
    #[arg(long, default_value_t = 16)]
    max_concurrent: usize,
}

/// Where a benchmark keeps its run history.
#[derive(Debug, Args)]
pub struct BenchDb {
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
}

/// A throwaway run history for one benchmark round; `cleanup` removes it.
struct Scratch {
    backend: &'static str,
    url: String,
    cleanup: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>,
}

impl BenchDb {
    /// One scratch run history per chosen backend.
    async fn scratches(&self) -> Result<Vec<Scratch>, Failure> {
        let mut out = Vec::new();
        if matches!(self.backend, BackendChoice::Sqlite | BackendChoice::Both) {
            let dir = tempfile_dir()?;
            let url = format!("sqlite://{}", dir.join("orch.db").display());
            out.push(Scratch {
                backend: "sqlite",
                url,
                cleanup: Box::new(move || {
                    Box::pin(async move {
                        let _ = std::fs::remove_dir_all(&dir);
                    })
                }),
            });
        }
        if matches!(self.backend, BackendChoice::Postgres | BackendChoice::Both) {
            let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
            orch::storage::schema::create_schema(&self.postgres_url, &schema)
                .await
                .map_err(|e| Failure::Work(format!("{e}\n  (pass --postgres-url or set ORCH_BENCH_DATABASE_URL; --backend sqlite skips Postgres)")))?;
            let url = orch::storage::schema::url_with_schema(&self.postgres_url, &schema);
            let admin = self.postgres_url.clone();
            out.push(Scratch {
                backend: "postgres",
                url,
                cleanup: Box::new(move || {
                    Box::pin(async move {
                        let _ = orch::storage::schema::drop_schema(&admin, &schema).await;
                    })
                }),
            });
        }
        Ok(out)
    }
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
    for scratch in args.db.scratches().await? {
        let result = measure(scratch.backend, &scratch.url, &args).await;
        (scratch.cleanup)().await;
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
    let request = RunRequest::new("*", PartitionRequest::None).launched_by(&Launcher::Cli);
    let plan = request
        .plan(&graph)
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
    let run = executor.create_run(&plan, &request).await?;
    let outcome = executor
        .execute(run.run_id, &plan, CancellationToken::new(), Vec::new())
        .await?;
    let execute_ms = exec_start.elapsed().as_secs_f64() * 1000.0;
    let succeeded = outcome
        .steps
        .iter()
        .filter(|s| s.status == StepState::Succeeded)
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

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Runs to launch, one after the other.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    #[command(flatten)]
    db: BenchDb,
}

/// Latencies in milliseconds, summarized.
pub(crate) fn summary(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (pick(0.5), pick(0.99), ms[ms.len() - 1])
}

/// `orch bench launch`: a daemon idles on an empty queue; runs are queued one at a time the
/// way `orch materialize --queue` does, and a schedule ticks every second; each latency is
/// measured to the moment the run's first step starts its compute.
pub async fn launch(args: LaunchArgs) -> CmdResult {
    use orch::daemon::{Daemon, DaemonConfig, ScheduleDefinition, SystemClock};
    if args.runs == 0 {
        return Err(Failure::Usage("--runs must be at least 1".into()));
    }
    println!(
        "orch bench launch: {} queued runs and {} schedule ticks per backend, through one daemon",
        args.runs,
        args.runs.min(5)
    );
    let mut table = Table::new(&["BACKEND", "FROM", "SAMPLES", "P50", "P99", "MAX"]);
    for scratch in args.db.scratches().await? {
        let result = async {
            let (queued, ticks) = launch_round(&scratch.url, args.runs).await?;
            let (upstream, requested) = automation_round(&scratch.url, args.runs.min(10)).await?;
            Ok::<_, Failure>((queued, ticks, upstream, requested))
        }
        .await;
        (scratch.cleanup)().await;
        let (queued, ticks, upstream, requested) = result?;
        for (from, samples) in [
            ("queued run", queued),
            ("schedule tick", ticks),
            ("automation request", requested),
            ("upstream change (eager)", upstream),
        ] {
            let n = samples.len();
            let (p50, p99, max) = summary(samples);
            table.row(vec![
                scratch.backend.to_owned(),
                from.to_owned(),
                n.to_string(),
                duration_ms(p50),
                duration_ms(p99),
                duration_ms(max),
            ]);
        }
    }
    print!("{}", table.render());
    println!(
        "automation: an eager asset downstream of one materialized by a queued run; its tick every {} ms \
         (\"automation request\": from the tick that requested the run, \"upstream change\": from the upstream's \
         materialization, which waits for the next tick)",
        orch::automation::AutomationSettings::default()
            .interval
            .as_millis()
    );
    return Ok(());

    /// An asset `bench/up` materialized by queued runs and an eager `bench/down`: for each
    /// upstream materialization, the time to the downstream run's first step from the
    /// upstream's compute and from the automation tick that requested the run.
    async fn automation_round(url: &str, runs: usize) -> Result<(Vec<f64>, Vec<f64>), Failure> {
        use orch::automation::{AutomationSettings, Condition};
        use orch::daemon::{Daemon, DaemonConfig, SystemClock};
        let storage = orch::storage::open(url).await?;
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(&'static str, chrono::DateTime<chrono::Utc>)>();
        let work = |name: &'static str| {
            let tx = tx.clone();
            move |_ctx: orch::AssetContext| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((name, chrono::Utc::now()));
                    Ok::<_, ComputeError>(Materialization::new())
                }
            }
        };
        let up = asset("bench/up")
            .compute(work("up"))
            .map_err(|e| Failure::Work(e.to_string()))?;
        let down = asset("bench/down")
            .deps(["bench/up"])
            .automation(Condition::eager())
            .compute(work("down"))
            .map_err(|e| Failure::Work(e.to_string()))?;
        let graph =
            Arc::new(AssetGraph::new(vec![up, down]).map_err(|e| Failure::Work(e.to_string()))?);
        let conditions = graph
            .specs()
            .filter_map(|s| s.automation.clone().map(|c| (s.key.clone(), c)))
            .collect();
        let daemon = Daemon::new(
            storage.clone(),
            graph.clone(),
            Resources::new(),
            Vec::new(),
            DaemonConfig {
                local_runs: 2,
                ..DaemonConfig::default()
            },
            Arc::new(SystemClock),
        )
        .and_then(|d| d.with_automation(conditions, AutomationSettings::default()))
        .map_err(|e| Failure::Work(e.to_string()))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(Arc::new(daemon).run(stop.clone(), CancellationToken::new()));
        let request =
            RunRequest::new("bench/up", PartitionRequest::None).launched_by(&Launcher::Cli);
        let (mut upstream, mut requested) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        let ms = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or_default() as f64 / 1000.0;
        let next = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<_>| {
            rx.recv()
                .await
                .ok_or_else(|| Failure::Work("the daemon stopped".into()))
        };
        while upstream.len() < runs {
            orch::submit::submit(
                storage.as_ref(),
                &graph,
                &request,
                orch::submit::Submit::Queue,
            )
            .await
            .map_err(|e| Failure::Work(e.to_string()))?;
            let (_, changed) = next(&mut rx).await?;
            let (name, first_step) = next(&mut rx).await?;
            if name != "down" {
                return Err(Failure::Work(format!(
                    "expected bench/down to run, not bench/{name}"
                )));
            }
            let tick = storage
                .automation_ticks(5)
                .await?
                .into_iter()
                .find(|t| t.requested > 0)
                .ok_or_else(|| Failure::Work("no automation tick requested the run".into()))?;
            upstream.push(ms(first_step - changed));
            requested.push(ms(first_step - tick.evaluated_at));
            // The next change once this run ended: a change while `bench/down` runs may be
            // read by that run, and counts as handled by it.
            while storage
                .run_status_counts()
                .await?
                .iter()
                .any(|(status, n)| {
                    *n > 0
                        && matches!(
                            status,
                            orch::RunStatus::Queued
                                | orch::RunStatus::Starting
                                | orch::RunStatus::Started
                        )
                })
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        stop.cancel();
        let _ = task.await;
        Ok((upstream, requested))
    }

    async fn launch_round(url: &str, runs: usize) -> Result<(Vec<f64>, Vec<f64>), Failure> {
        let storage = orch::storage::open(url).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(
            chrono::DateTime<chrono::Utc>,
            std::time::Instant,
        )>();
        let step = asset("bench/launch")
            .compute(move |_ctx| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((chrono::Utc::now(), Instant::now()));
                    Ok::<_, ComputeError>(Materialization::new())
                }
            })
            .map_err(|e| Failure::Work(e.to_string()))?;
        let graph =
            Arc::new(AssetGraph::new(vec![step]).map_err(|e| Failure::Work(e.to_string()))?);
        let every_second = ScheduleDefinition::new("bench_every_second", "* * * * * *", "UTC", "*")
            .map_err(|e| Failure::Work(e.to_string()))?
            .partition_rule(orch::daemon::PartitionRule::None)
            .catchup(orch::daemon::Catchup::Latest(1));
        let daemon = Daemon::new(
            storage.clone(),
            graph.clone(),
            Resources::new(),
            vec![every_second],
            DaemonConfig {
                local_runs: 1,
                ..DaemonConfig::default()
            },
            Arc::new(SystemClock),
        )
        .map_err(|e| Failure::Work(e.to_string()))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(Arc::new(daemon).run(stop.clone(), CancellationToken::new()));
        // Let the daemon settle into waiting on the queue.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let executor = Executor::new(
            graph.clone(),
            storage.clone(),
            Resources::new(),
            ExecutionConfig::default(),
            Default::default(),
        );
        let request = RunRequest::new("*", PartitionRequest::None).launched_by(&Launcher::Cli);
        let mut queued = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            orch::submit::submit(
                executor.storage().as_ref(),
                executor.graph(),
                &request,
                orch::submit::Submit::Queue,
            )
            .await
            .map_err(|e| Failure::Work(e.to_string()))?;
            let (_, at) = rx
                .recv()
                .await
                .ok_or_else(|| Failure::Work("the daemon stopped".into()))?;
            queued.push(at.duration_since(started).as_secs_f64() * 1000.0);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Schedule ticks: switch the every-second schedule on and time each tick's first step
        // from the tick's own time.
        while rx.try_recv().is_ok() {}
        storage
            .set_schedule_enabled("bench_every_second", true, chrono::Utc::now())
            .await?;
        let mut ticks = Vec::new();
        while ticks.len() < runs.min(5) {
            let (wall, _) = rx
                .recv()
                .await
                .ok_or_else(|| Failure::Work("the daemon stopped".into()))?;
            let tick = storage.schedule_ticks("bench_every_second", 1).await?;
            if let Some(tick) = tick.first() {
                let ms = (wall - tick.tick_time)
                    .num_microseconds()
                    .unwrap_or_default() as f64
                    / 1000.0;
                if (0.0..1000.0).contains(&ms) {
                    ticks.push(ms);
                }
            }
        }
        storage
            .set_schedule_enabled("bench_every_second", false, chrono::Utc::now())
            .await?;
        stop.cancel();
        let _ = task.await;
        Ok((queued, ticks))
    }
}

#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Assets in the graph (a 25-layer graph as in `bench overhead`).
    #[arg(long, default_value_t = 2500)]
    assets: usize,
    /// How long the daemon idles before the reading, in seconds.
    #[arg(long, default_value_t = 3)]
    idle_secs: u64,
    #[command(flatten)]
    db: BenchDb,
}

/// This process's resident memory (VmRSS) and its peak (VmHWM), in MiB.
pub(crate) fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let read = |field: &str| {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (read("VmRSS:"), read("VmHWM:"))
}

/// `orch bench daemon-memory`: the memory of a daemon process at rest with a large graph.
pub async fn daemon_memory(args: MemoryArgs) -> CmdResult {
    use orch::daemon::{Daemon, DaemonConfig, SystemClock};
    let width = 100.min(args.assets.max(1));
    let layers = args.assets.div_ceil(width);
    let (before, _) = memory_mib();
    println!(
        "orch bench daemon-memory: {} assets ({layers} layers x {width}), idle {} s",
        layers * width,
        args.idle_secs
    );
    let mut table = Table::new(&["BACKEND", "RSS AT START", "RSS AT REST", "PEAK"]);
    for scratch in args.db.scratches().await? {
        let storage = orch::storage::open(&scratch.url).await?;
        let graph = Arc::new(graph(layers, width)?);
        let daemon = Daemon::new(
            storage,
            graph,
            Resources::new(),
            Vec::new(),
            DaemonConfig::default(),
            Arc::new(SystemClock),
        )
        .map_err(|e| Failure::Work(e.to_string()))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(Arc::new(daemon).run(stop.clone(), CancellationToken::new()));
        tokio::time::sleep(std::time::Duration::from_secs(args.idle_secs)).await;
        let (rss, peak) = memory_mib();
        stop.cancel();
        let _ = task.await;
        (scratch.cleanup)().await;
        table.row(vec![
            scratch.backend.to_owned(),
            format!("{before:.1} MiB"),
            format!("{rss:.1} MiB"),
            format!("{peak:.1} MiB"),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

#[path = "bench_web.rs"]
mod web_bench;
pub use web_bench::{WebBenchArgs, web};
