//! `orch daemon`, `orch schedules` and `orch backfill`: the commands around the run queue.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use orch::backfill::{launch_backfill, plan_backfill};
use orch::daemon::ExpiredPolicy;
use orch::request::tags;
use orch::storage::Storage;
use orch::{RunStatus, Selection};
use tokio_util::sync::CancellationToken;

use crate::table::{Table, time};
use crate::{CmdResult, Failure, OutputArgs, project};

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// This daemon's name in leases and heartbeats (default: daemon-PID-RANDOM).
    #[arg(long)]
    id: Option<String>,
    /// Runs started at once across every daemon of this run history.
    #[arg(long)]
    max_concurrent_runs: Option<u32>,
    /// Runs this daemon executes at once.
    #[arg(long)]
    local_runs: Option<usize>,
    /// How long a run's lease lasts without renewal, in seconds.
    #[arg(long)]
    lease_secs: Option<u64>,
    /// How often leases are renewed, in seconds.
    #[arg(long)]
    heartbeat_secs: Option<u64>,
    /// What to do with a run whose daemon died: `fail` it, or `requeue` it as a new run.
    #[arg(long, value_parser = ["fail", "requeue"])]
    expired_runs: Option<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics (the daemon's and the run history's;
    /// `metrics_addr` under [daemon] in orch.toml).
    #[arg(long)]
    metrics_addr: Option<String>,
}

/// `orch.toml`'s path for messages, or `orch.toml` when there is none.
fn config_file(config: &orch::config::Config) -> String {
    config
        .file
        .as_ref()
        .map_or_else(|| "orch.toml".to_owned(), |p| p.display().to_string())
}

/// One daemon owns a SQLite run history: the queue's wake-ups do not cross processes there,
/// and a second daemon would only compete for the file. The lock lives as long as the file
/// handle, so a killed daemon releases it.
pub fn own_sqlite_file(database_url: &str) -> Result<Option<std::fs::File>, Failure> {
    let Some(path) = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
    else {
        return Ok(None);
    };
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.starts_with(':') {
        return Ok(None);
    }
    let lock_path = format!("{path}.daemon.lock");
    if let Some(parent) = Path::new(&lock_path).parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::Work(format!("cannot create {}: {e}", parent.display())))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Failure::Work(format!("cannot open {lock_path}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Failure::Usage(format!(
            "another daemon already runs on {path}: one daemon owns a SQLite run history (use Postgres, ORCH_DATABASE_URL=postgres://..., for several)"
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Failure::Work(format!("cannot lock {lock_path}: {e}")))
        }
    }
}

pub async fn run(dir: Option<&Path>, args: DaemonArgs) -> CmdResult {
    let config = project::config(dir)?;
    let _owner = own_sqlite_file(&config.database_url)?;
    let (defs, graph) = project::graph(&config)?;
    let schedules = project::schedules(&config, &defs)?;
    let storage = project::storage(&config).await?;
    let settings = &config.daemon;
    let mut daemon_config = project::daemon_config(&config);
    if let Some(id) = args.id {
        daemon_config.id = id;
    }
    daemon_config.max_concurrent_runs = args.max_concurrent_runs.or(settings.max_concurrent_runs);
    // A bad value is named as the user wrote it: the flag, or the key in orch.toml.
    let named = |flag_given: bool, flag: &str, key: &str| {
        if flag_given {
            format!("--{flag}")
        } else {
            format!("`{key}` in [daemon] of {}", config_file(&config))
        }
    };
    if let Some(n) = args.local_runs.or(settings.local_runs) {
        if n == 0 {
            return Err(Failure::Usage(format!(
                "{} must be at least 1",
                named(args.local_runs.is_some(), "local-runs", "local_runs")
            )));
        }
        daemon_config.local_runs = n;
    }
    if let Some(secs) = args.lease_secs.or(settings.lease_secs) {
        if secs == 0 {
            return Err(Failure::Usage(format!(
                "{} must be at least 1 (seconds)",
                named(args.lease_secs.is_some(), "lease-secs", "lease_secs")
            )));
        }
        daemon_config.lease = Duration::from_secs(secs);
        daemon_config.heartbeat = daemon_config.lease / 3;
    }
    if let Some(secs) = args.heartbeat_secs.or(settings.heartbeat_secs) {
        daemon_config.heartbeat = Duration::from_secs(secs.max(1));
    }
    if daemon_config.heartbeat >= daemon_config.lease {
        return Err(Failure::Usage(format!(
            "the heartbeat ({:?}) must be shorter than the lease ({:?})",
            daemon_config.heartbeat, daemon_config.lease
        )));
    }
    if let Some(age) = settings.retention.as_deref() {
        let keep = orch::daemon::freshness::parse_duration(age)
            .map_err(|e| Failure::Usage(format!("retention under [daemon] in orch.toml: {e}")))?;
        if keep.is_zero() {
            return Err(Failure::Usage(
                "retention under [daemon] in orch.toml must be more than 0".into(),
            ));
        }
        daemon_config.retention = Some(keep);
    }
    daemon_config.expired = match args
        .expired_runs
        .as_deref()
        .or(settings.expired_runs.as_deref())
    {
        None | Some("fail") => ExpiredPolicy::Fail,
        Some("requeue") => ExpiredPolicy::Requeue { max: 3 },
        Some(other) => {
            return Err(Failure::Usage(format!(
                "{}: unknown policy `{}` (use fail or requeue)",
                named(args.expired_runs.is_some(), "expired-runs", "expired_runs"),
                orch::text::shorten(other, orch::text::SHOWN_CHARS)
            )));
        }
    };
    let id = daemon_config.id.clone();
    let sensors = project::sensors(&config, &defs)?;
    let automation = project::automation(&config, &graph)?;
    let automated = automation.0.len();
    let mut daemon = project::daemon(
        &defs,
        graph,
        storage.clone(),
        schedules,
        sensors,
        automation,
        daemon_config,
    )?;
    if let Some(url) = &config.webhook_url {
        let notifier = orch::notify::WebhookNotifier::new(url.expose())
            .map_err(|e| Failure::Usage(format!("[notifications] webhook_url: {e}")))?;
        daemon = daemon.with_notifier(Arc::new(notifier));
    }
    eprintln!(
        "orch daemon {id}: run history at {}, {} schedule(s), {} sensor(s), {automated} automated asset(s); Ctrl-C stops claiming and waits for runs in flight, a second Ctrl-C cancels them",
        orch::storage::redact_url(&config.database_url),
        daemon.schedules().len(),
        daemon.sensors().len()
    );
    let shutdown = CancellationToken::new();
    let cancel_runs = CancellationToken::new();
    let metrics = match args
        .metrics_addr
        .as_deref()
        .or(settings.metrics_addr.as_deref())
    {
        Some(addr) => {
            let what = named(args.metrics_addr.is_some(), "metrics-addr", "metrics_addr");
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Failure::Usage(format!("{what}: cannot listen on {addr}: {e}")))?;
            eprintln!(
                "orch daemon {id}: metrics on http://{}/metrics",
                listener.local_addr()?
            );
            let names = daemon
                .schedules()
                .iter()
                .map(|s| s.name.clone())
                .chain(daemon.sensors().iter().map(|s| s.name().to_owned()))
                .collect();
            let serving = orch_web::serve_metrics(
                listener,
                storage.clone(),
                daemon.metrics().clone(),
                names,
                shutdown.clone(),
            );
            Some(tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::warn!(error = %e, "the metrics server stopped");
                }
            }))
        }
        None => None,
    };
    let signals = tokio::spawn(stop_on_signals(shutdown.clone(), cancel_runs.clone()));
    let result = Arc::new(daemon).run(shutdown, cancel_runs).await;
    signals.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    result.map_err(|e| Failure::Work(e.to_string()))
}

/// First SIGINT/SIGTERM: stop claiming and drain. Second: cancel the runs in flight.
async fn stop_on_signals(shutdown: CancellationToken, cancel_runs: CancellationToken) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if round == 0 {
            eprintln!(
                "stopping: no new runs; waiting for the runs in flight (again to cancel them)"
            );
            shutdown.cancel();
        } else {
            eprintln!("canceling the runs in flight");
            cancel_runs.cancel();
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Every schedule with its state, last and next tick.
    List(OutputArgs),
    /// Switch a schedule on (stored: every daemon sees it).
    On { name: String },
    /// Switch a schedule off.
    Off { name: String },
    /// A schedule's (or a sensor's) tick history, newest first.
    Ticks {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        output: OutputArgs,
    },
}

pub async fn schedules(dir: Option<&Path>, command: SchedulesCommand) -> CmdResult {
    let config = project::config(dir)?;
    let (defs, graph) = project::graph(&config)?;
    let schedules = project::schedules(&config, &defs)?;
    let storage = project::storage(&config).await?;
    let find = |name: &str| {
        schedules.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = schedules.iter().map(|s| s.name.as_str()).collect();
            Failure::Usage(format!(
                "no schedule `{name}` (schedules: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ))
        })
    };
    match command {
        SchedulesCommand::On { name } => switch(storage.as_ref(), find(&name)?, true).await,
        SchedulesCommand::Off { name } => switch(storage.as_ref(), find(&name)?, false).await,
        SchedulesCommand::Ticks {
            name,
            limit,
            output,
        } => {
            find(&name)?;
            let ticks = storage.schedule_ticks(&name, limit).await?;
            if output.json {
                let list: Vec<serde_json::Value> = ticks
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "tick_time": t.tick_time.to_rfc3339(),
                            "status": t.status.as_str(),
                            "run_id": t.run_id.map(|r| r.to_string()),
                            "message": t.message,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
                return Ok(());
            }
            let mut table = Table::new(&["TICK", "STATUS", "RUN", "MESSAGE"]);
            for t in &ticks {
                table.row(vec![
                    time(t.tick_time),
                    t.status.as_str().to_owned(),
                    t.run_id.map(|r| r.to_string()).unwrap_or_default(),
                    t.message.clone().unwrap_or_default(),
                ]);
            }
            print!("{}", table.render());
            Ok(())
        }
        SchedulesCommand::List(output) => {
            let states = storage.schedule_states().await?;
            let now = Utc::now();
            let mut rows = Vec::new();
            for s in &schedules {
                let enabled = states
                    .iter()
                    .find(|st| st.name == s.name)
                    .map(|st| st.enabled)
                    .unwrap_or(s.default_enabled);
                let last = storage.schedule_ticks(&s.name, 1).await?.into_iter().next();
                let next = enabled.then(|| s.next_tick(now)).flatten();
                let selected = s.selection.resolve(&graph).map(|k| k.len()).unwrap_or(0);
                rows.push((s, enabled, last, next, selected));
            }
            if output.json {
                let list: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(s, enabled, last, next, selected)| {
                        serde_json::json!({
                            "name": s.name, "cron": s.cron, "timezone": s.timezone.name(),
                            "selection": s.selection.as_str(), "assets": selected,
                            "catchup": s.catchup.to_string(), "enabled": enabled,
                            "last_tick": last.as_ref().map(|t| t.tick_time.to_rfc3339()),
                            "next_tick": next.map(|t| t.to_rfc3339()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
                return Ok(());
            }
            if rows.is_empty() {
                println!("no schedules");
                return Ok(());
            }
            let mut table = Table::new(&[
                "NAME",
                "CRON",
                "TIMEZONE",
                "SELECTION",
                "STATE",
                "LAST TICK",
                "NEXT TICK",
            ]);
            for (s, enabled, last, next, _) in rows {
                table.row(vec![
                    s.name.clone(),
                    s.cron.clone(),
                    s.timezone.name().to_owned(),
                    s.selection.as_str().to_owned(),
                    if enabled { "ON" } else { "OFF" }.to_owned(),
                    last.map(|t| format!("{} {}", time(t.tick_time), t.status.as_str()))
                        .unwrap_or_default(),
                    next.map(time).unwrap_or_default(),
                ]);
            }
            print!("{}", table.render());
            Ok(())
        }
    }
}

/// Switches a defined schedule on or off in storage.
async fn switch(
    storage: &dyn Storage,
    schedule: &orch::daemon::ScheduleDefinition,
    enabled: bool,
) -> CmdResult {
    storage
        .set_schedule_enabled(&schedule.name, enabled, Utc::now())
        .await?;
    println!(
        "schedule {} is {}",
        schedule.name,
        if enabled { "on" } else { "off" }
    );
    Ok(())
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackfillArgs {
    #[command(subcommand)]
    command: Option<BackfillCommand>,
    /// Which assets (selection syntax).
    #[arg(long, short, required = true)]
    select: Option<String>,
    /// The first partition key.
    #[arg(long, required = true)]
    from: Option<String>,
    /// The last partition key, included.
    #[arg(long, required = true)]
    to: Option<String>,
    /// One run over the whole range instead of one run per partition (the default when
    /// every selected asset's definition has a single-run backfill policy).
    #[arg(long)]
    single_run: bool,
    /// Queue a large backfill (more runs than `confirm_runs_above` under [limits]).
    #[arg(long)]
    yes: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// A backfill's progress: its runs by status.
    Status {
        id: String,
        /// Refresh until every run has ended.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Backfills, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub async fn backfill(dir: Option<&Path>, args: BackfillArgs) -> CmdResult {
    let config = project::config(dir)?;
    match args.command {
        Some(BackfillCommand::Status { id, watch, output }) => {
            let storage = project::storage(&config).await?;
            status(storage.as_ref(), &id, watch, output.json).await
        }
        Some(BackfillCommand::List { limit }) => {
            let storage = project::storage(&config).await?;
            let list = storage.list_backfills(limit).await?;
            let mut table = Table::new(&["ID", "SELECTION", "FROM", "TO", "RUNS", "CREATED"]);
            for b in list {
                table.row(vec![
                    b.id,
                    b.selection,
                    b.partition_from,
                    b.partition_to,
                    b.run_count.to_string(),
                    time(b.created_at),
                ]);
            }
            print!("{}", table.render());
            Ok(())
        }
        None => {
            let (select, from, to) = match (args.select, args.from, args.to) {
                (Some(s), Some(f), Some(t)) => (s, f, t),
                _ => {
                    return Err(Failure::Usage(
                        "orch backfill needs --select, --from and --to".into(),
                    ));
                }
            };
            let (_, graph) = project::graph(&config)?;
            let selection = Selection::parse(&select).map_err(|e| Failure::Usage(e.to_string()))?;
            let selected = selection
                .resolve(&graph)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let planned = plan_backfill(
                &graph,
                &orch::backfill::BackfillRequest {
                    selection: &select,
                    selected: &selected,
                    from: &from,
                    to: &to,
                    single_run: args.single_run,
                    max_partitions: config.limits.max_range_partitions,
                    tags: BTreeMap::new(),
                },
            )
            .map_err(|e| Failure::Usage(e.to_string()))?;
            let limit = config.limits.confirm_runs_above;
            if planned.runs.len() > limit && !args.yes {
                return Err(Failure::Usage(format!(
                    "this backfill would queue {} runs, more than {limit} (`confirm_runs_above` under [limits] in orch.toml): pass --yes to queue them, or narrow --from/--to",
                    planned.runs.len()
                )));
            }
            let storage = project::storage(&config).await?;
            launch_backfill(storage.as_ref(), &planned).await?;
            let (id, runs) = (&planned.id, planned.runs.len());
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "backfill_id": id, "runs": runs, "steps": planned.steps })
                );
            } else {
                println!(
                    "backfill {id}: queued {runs} run(s) over {} step(s); the daemons run them.\n  progress: orch backfill status {id} --watch",
                    planned.steps
                );
            }
            Ok(())
        }
    }
}

async fn status(storage: &dyn Storage, id: &str, watch: bool, json: bool) -> CmdResult {
    let Some(backfill) = storage.get_backfill(id).await? else {
        return Err(Failure::Work(format!("backfill {id} does not exist")));
    };
    let total = u64::from(backfill.run_count);
    let bar = (!json).then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} runs ended  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    loop {
        let counts: BTreeMap<RunStatus, u64> = storage
            .count_runs_by_status(tags::BACKFILL, id)
            .await?
            .into_iter()
            .collect();
        let ended: u64 = counts
            .iter()
            .filter(|(s, _)| s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        if json {
            let by_status: BTreeMap<&str, u64> =
                counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
            println!(
                "{}",
                serde_json::json!({
                    "backfill_id": backfill.id, "selection": backfill.selection,
                    "from": backfill.partition_from, "to": backfill.partition_to,
                    "runs": total, "ended": ended, "by_status": by_status,
                })
            );
        } else if let Some(bar) = &bar {
            bar.set_position(ended);
            bar.set_message(summary.join(", "));
        }
        if !watch || ended >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    Ok(())
}
