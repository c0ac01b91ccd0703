//! The `orch` command line: parses arguments and hands each command to its module. Exit codes:
//! 0 success, 1 the work failed, 2 bad usage.

mod assets;
mod automation;
mod bench;
mod bench_automation;
mod bench_dbt;
mod bench_freshness;
mod bench_stream;
mod daemon;
mod eventsim;
mod materialize;
mod progress;
mod project;
mod runs;
mod stream;
mod table;
mod web;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  orch materialize --select '*' --partition 2026-11-22-10:00
  orch materialize --select 'mart_top_songs+' --partition 2026-11-22-10:00
  orch materialize --select 'group:staging,kind:dbt' --from 2026-11-22-00:00 --to 2026-11-22-23:00
  orch materialize --select '*example/plays_by_song' --partition 2026-11-22-10:00 --dry-run
  orch assets list --select 'group:example'
  orch runs list --status failure --limit 10
  orch runs show 0193a5f2-...
  orch runs cancel 0193a5f2-...
  orch runs reexecute 0193a5f2-... --from-failure
  orch daemon
  orch schedules on hourly_pipeline
  orch backfill --select '*' --from 2026-11-01-00:00 --to 2026-11-01-23:00
  orch backfill status 0193a5f2-...
  orch runs logs 0193a5f2-... --step 'example/plays[2026-11-22-10:00]'
  orch bench overhead --layers 10 --width 100
  orch eventsim --users 2000 --from 2026-11-22 --to 2026-11-23 --out events
  orch dev                                   # UI on http://127.0.0.1:3000 + daemon, schedules on
  orch web --addr 127.0.0.1:3000
  orch bench web --runs 100000 --assets 2500
  orch eventsim --users 2000 --speed realtime --sink kafka --brokers 127.0.0.1:9092 --rate 1000
  orch stream --brokers 127.0.0.1:9092 --lake gs://my-bucket/lake --metrics-addr 0.0.0.0:9464
  orch bench stream --events 1000000 --rate 10000

Selection syntax (as Dagster's): key, +key (one level up), ++key, *key (all upstream),
key+, key*, group:NAME, tag:K=V, kind:K, status:stale|missing|failed|materialized; a comma is a union.

Configuration: orch.toml at the project root; ORCH_DATABASE_URL overrides its database_url
(postgres://... or sqlite://PATH; default sqlite://.orch/orch.db).";

/// orch: an asset orchestrator.
#[derive(Debug, Parser)]
#[command(
    name = "orch",
    version,
    about = "orch: an asset orchestrator. Plans and runs the materialization of data assets and records every run.",
    after_help = EXAMPLES
)]
struct Cli {
    /// The project folder (default: the nearest folder above holding orch.toml, or the
    /// current folder).
    #[arg(long, global = true, env = "ORCH_PROJECT_DIR", value_name = "DIR")]
    project_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plan and run the materialization of selected assets.
    #[command(after_help = EXAMPLES)]
    Materialize(materialize::MaterializeArgs),
    /// The asset catalog.
    #[command(subcommand)]
    Assets(AssetsCommand),
    /// Run history.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Apply the run-history migrations (orch also applies them at start).
    Migrate,
    /// Run schedules and queued runs: several daemons may share one Postgres.
    Daemon(daemon::DaemonArgs),
    /// Schedules: list them, switch them on and off, see their ticks.
    #[command(subcommand)]
    Schedules(daemon::SchedulesCommand),
    /// Declarative automation: why an asset was or was not requested, the ticks.
    #[command(subcommand)]
    Automation(automation::AutomationCommand),
    /// Backfill a range of partitions: one queued run per partition, run by the daemons.
    Backfill(daemon::BackfillArgs),
    /// Benchmarks that print their figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Generate the music-streaming site's events (eventsim's four topics) for N users.
    Eventsim(eventsim::EventsimArgs),
    /// The web UI and JSON API (default http://127.0.0.1:3000).
    Web(web::WebArgs),
    /// Web UI, daemon and embedded defaults in one process, schedules on; fills an empty lake
    /// with a few hours of generated events and materializes them.
    Dev(web::DevArgs),
    /// A streaming worker: Kafka (Redpanda) topics into the lake, committing offsets only after
    /// durable writes; malformed events go to the dead-letter area.
    #[command(after_help = stream::STREAM_EXAMPLES)]
    Stream(stream::StreamArgs),
}

#[derive(Debug, Subcommand)]
enum AssetsCommand {
    /// List assets with their group, kinds, last materialization and state.
    List(assets::ListArgs),
    /// Show an asset: description, group, kinds, upstream and downstream, checks, and for a
    /// dbt model its columns (types, descriptions, constraints, tests), as on its page.
    Show(assets::ShowArgs),
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// List runs, newest first.
    List(runs::ListArgs),
    /// Show a run: its steps, their statuses, durations and errors, and its events.
    Show(runs::ShowArgs),
    /// Print a run's step logs: the logger's lines and child processes' stdout and stderr.
    Logs(runs::LogsArgs),
    /// Cancel a run, whichever process runs it.
    Cancel(runs::CancelArgs),
    /// Execute a finished run again, whole or from its failure (`--from-failure`).
    Reexecute(runs::ReexecuteArgs),
    /// Delete finished runs older than an age, with their events and logs (retention).
    Prune(runs::PruneArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Orchestration overhead: materialize LAYERS x WIDTH no-op assets with run history in
    /// SQLite and in Postgres.
    Overhead(bench::OverheadArgs),
    /// Launch latency: from a queued run (CLI or API) and from a schedule tick to its first
    /// step running, through a daemon.
    Launch(bench::LaunchArgs),
    /// A daemon's memory at rest with a large asset graph.
    DaemonMemory(bench::MemoryArgs),
    /// The UI with a large history: p50/p99 latency of the runs page (RUNS runs) and the
    /// lineage page (ASSETS assets).
    Web(bench::WebBenchArgs),
    /// Streaming: events per second per core from the broker to Parquet in the lake, and the
    /// event-to-lake latency at p50 and p99 at a stated rate (starts its own tansu broker).
    Stream(bench_stream::StreamBenchArgs),
    /// Declarative automation: the time and memory of one tick over ASSETS hourly assets with
    /// a year of history each, every one with a condition.
    Automation(bench_automation::AutomationBenchArgs),
    /// dbt: the time of one hour's dbt build, build after build in one process (with the
    /// long-lived dbt worker, or one dbt process each with ORCH_DBT_WORKER=0).
    Dbt(bench_dbt::DbtBenchArgs),
    /// Freshness: the platform on automation with events in real time; the age of the newest
    /// event in the marts, sampled every few seconds, at p50, p99 and max.
    Freshness(bench_freshness::FreshnessBenchArgs),
}

/// Output switches shared by listing commands.
#[derive(Debug, Args, Clone, Copy)]
pub struct OutputArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A command's failure, with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Bad input: exit 2.
    Usage(String),
    /// The work failed: exit 1.
    Work(String),
    /// The work failed and already said why: exit 1 with nothing more printed.
    Reported,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Work(e.to_string())
    }
}

pub type CmdResult = Result<(), Failure>;

fn main() -> ExitCode {
    reset_sigpipe();
    let cli = Cli::parse();
    // A daemon reports what it does; one-shot commands only warn.
    let default_level = match cli.command {
        Command::Daemon(_) | Command::Dev(_) | Command::Web(_) | Command::Stream(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Steps abandoned after a cancellation must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Work(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Reported) => ExitCode::from(1),
    }
}

/// Lets `orch ... | head` end quietly when the reader goes away, as other command-line tools
/// do, instead of panicking on a failed print.
#[allow(unsafe_code)]
fn reset_sigpipe() {
    // SAFETY: setting a signal's disposition to its default at start, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn run(cli: Cli) -> CmdResult {
    let dir = cli.project_dir.as_deref();
    match cli.command {
        Command::Materialize(args) => materialize::run(dir, args).await,
        Command::Assets(AssetsCommand::List(args)) => assets::list(dir, args).await,
        Command::Assets(AssetsCommand::Show(args)) => assets::show(dir, args),
        Command::Runs(RunsCommand::List(args)) => runs::list(dir, args).await,
        Command::Runs(RunsCommand::Show(args)) => runs::show(dir, args).await,
        Command::Runs(RunsCommand::Logs(args)) => runs::logs(dir, args).await,
        Command::Runs(RunsCommand::Cancel(args)) => runs::cancel(dir, args).await,
        Command::Runs(RunsCommand::Reexecute(args)) => runs::reexecute(dir, args).await,
        Command::Runs(RunsCommand::Prune(args)) => runs::prune(dir, args).await,
        Command::Daemon(args) => daemon::run(dir, args).await,
        Command::Schedules(cmd) => daemon::schedules(dir, cmd).await,
        Command::Automation(cmd) => automation::run(dir, cmd).await,
        Command::Backfill(args) => daemon::backfill(dir, args).await,
        Command::Migrate => {
            let config = project::config(dir)?;
            project::storage(&config).await?;
            println!(
                "run history at {} is up to date",
                orch::storage::redact_url(&config.database_url)
            );
            Ok(())
        }
        Command::Bench(BenchCommand::Overhead(args)) => bench::overhead(args).await,
        Command::Bench(BenchCommand::Launch(args)) => bench::launch(args).await,
        Command::Bench(BenchCommand::DaemonMemory(args)) => bench::daemon_memory(args).await,
        Command::Bench(BenchCommand::Stream(args)) => bench_stream::stream(args).await,
        Command::Bench(BenchCommand::Automation(args)) => bench_automation::automation(args).await,
        Command::Bench(BenchCommand::Dbt(args)) => bench_dbt::dbt(dir, args).await,
        Command::Bench(BenchCommand::Freshness(args)) => {
            bench_freshness::freshness(dir, args).await
        }
        Command::Eventsim(args) => eventsim::run_eventsim(args).await,
        Command::Web(args) => web::web(dir, args).await,
        Command::Dev(args) => web::dev(dir, args).await,
        Command::Bench(BenchCommand::Web(args)) => bench::web(args).await,
        Command::Stream(args) => stream::run(dir, args).await,
    }
}
