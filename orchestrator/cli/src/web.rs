//! `orch web` (the UI and JSON API on 127.0.0.1:3000) and `orch dev` (the UI, a daemon and
//! the embedded defaults in one process, schedules on; on first start, a few hours of
//! generated events in the lake and their materialization queued).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use clap::Args;
use orch::daemon::{Daemon, DaemonConfig, SystemClock};
use orch_web::{AppState, MartSource, NoMarts, Security};
use tokio_util::sync::CancellationToken;

use crate::{CmdResult, Failure, project};

#[derive(Debug, Args)]
pub struct WebArgs {
    /// The address to listen on. Anything but loopback needs ORCH_WEB_TOKEN.
    #[arg(long, default_value = "127.0.0.1:3000", env = "ORCH_WEB_ADDR")]
    addr: SocketAddr,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(flatten)]
    web: WebArgs,
    /// Hours of events generated into an empty lake at first start (0: none).
    #[arg(long, default_value_t = 3)]
    hours: u32,
    /// Users of the generated site.
    #[arg(long, default_value_t = 1000)]
    users: u32,
}

fn token() -> Option<String> {
    std::env::var(orch_web::TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
}

async fn bind(addr: SocketAddr, token: Option<&str>) -> Result<tokio::net::TcpListener, Failure> {
    orch_web::check_bind(addr, token).map_err(|e| Failure::Usage(e.to_string()))?;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Failure::Work(format!(
            "cannot listen on {addr}: {e} (is another orch web running? pass --addr)"
        ))
    })
}

/// The UI's state for a project: its graph, schedules and sensors over its run history.
fn app_state(
    config: &orch::config::Config,
    storage: Arc<dyn orch::Storage>,
    graph: Arc<orch::AssetGraph>,
    schedules: Vec<orch::daemon::ScheduleDefinition>,
    sensors: &[Arc<dyn orch::daemon::Sensor>],
    token: Option<String>,
) -> AppState {
    AppState::new(
        storage,
        graph,
        schedules,
        marts(config),
        Security::new(token),
    )
    .with_sensors(sensors.iter().map(|s| s.name().to_owned()).collect())
}

pub async fn web(dir: Option<&Path>, args: WebArgs) -> CmdResult {
    let config = project::config(dir)?;
    let (defs, graph) = project::graph(&config)?;
    let schedules = project::schedules(&config, &defs)?;
    let sensors = project::sensors(&config, &defs)?;
    let token = token();
    let listener = bind(args.addr, token.as_deref()).await?;
    let storage = project::storage(&config).await?;
    let state = app_state(&config, storage, graph, schedules, &sensors, token);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    eprintln!(
        "orch web: http://{} (run history at {}); Ctrl-C stops",
        listener.local_addr().unwrap_or(args.addr),
        orch::storage::redact_url(&config.database_url)
    );
    orch_web::serve(listener, state, shutdown).await?;
    Ok(())
}

pub async fn dev(dir: Option<&Path>, args: DevArgs) -> CmdResult {
    let config = project::config(dir)?;
    let _owner = crate::daemon::own_sqlite_file(&config.database_url)?;
    let (defs, graph) = project::graph(&config)?;
    let schedules = project::schedules(&config, &defs)?;
    let sensors = project::sensors(&config, &defs)?;
    let token = token();
    let listener = bind(args.web.addr, token.as_deref()).await?;
    let storage = project::storage(&config).await?;
    let now = Utc::now();
    for s in &schedules {
        storage.set_schedule_enabled(&s.name, true, now).await?;
    }
    // Generated events go to a local lake only (a gs:// or s3:// lake is the streaming
    // workers' to fill).
    let lake_dir = std::path::PathBuf::from(&config.platform.lake);
    let local_lake = !config.platform.lake.contains("://");
    if local_lake && args.hours > 0 && lake_is_empty(&lake_dir).await? {
        seed_lake(&lake_dir, args.hours, args.users, now).await?;
        queue_first_hours(&graph, storage.as_ref(), args.hours, now).await?;
    }
    let daemon_config = DaemonConfig {
        execution: config.execution.clone(),
        pools: config.pools.clone(),
        ..DaemonConfig::default()
    };
    let daemon = Daemon::new(
        storage.clone(),
        graph.clone(),
        defs.resources.clone(),
        schedules.clone(),
        daemon_config,
        Arc::new(SystemClock),
    )
    .and_then(|d| d.with_sensors(sensors.clone()))
    .map_err(|e| Failure::Usage(e.to_string()))?;
    let state = app_state(&config, storage, graph, schedules, &sensors, token);
    let shutdown = CancellationToken::new();
    let cancel_runs = CancellationToken::new();
    let daemon_task = tokio::spawn(Arc::new(daemon).run(shutdown.clone(), cancel_runs.clone()));
    let web_shutdown = shutdown.clone();
    eprintln!(
        "orch dev: http://{} · daemon on, schedules on · run history at {} · lake at {}; Ctrl-C stops",
        listener.local_addr().unwrap_or(args.web.addr),
        orch::storage::redact_url(&config.database_url),
        lake_dir.display()
    );
    let web_task = tokio::spawn(orch_web::serve(listener, state, web_shutdown));
    let _ = tokio::signal::ctrl_c().await;
    eprintln!(
        "stopping: the web server now, the daemon after its runs in flight (Ctrl-C again cancels them)"
    );
    shutdown.cancel();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        cancel_runs.cancel();
    });
    let _ = web_task.await;
    match daemon_task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::Work(e.to_string())),
        Err(e) => Err(Failure::Work(format!("the daemon stopped: {e}"))),
    }
}

/// Whether the lake folder holds no raw file yet.
async fn lake_is_empty(dir: &Path) -> Result<bool, Failure> {
    let lake = orch_lake::Lake::open(&dir.display().to_string())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    for topic in orch_lake::Topic::ALL {
        if !lake.list_hours(topic).await?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The `hours` complete hours before `now`: (first hour's start, end of the last).
fn first_hours(hours: u32, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    (end - Duration::hours(i64::from(hours)), end)
}

async fn seed_lake(dir: &Path, hours: u32, users: u32, now: DateTime<Utc>) -> CmdResult {
    let (start, end) = first_hours(hours, now);
    eprintln!(
        "orch dev: the lake is empty: generating {hours} hour(s) of events for {users} users ({start} to {end})"
    );
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::Work(format!("cannot create {}: {e}", dir.display())))?;
    let lake = orch_lake::Lake::open(&dir.display().to_string())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let config = orch_eventsim::Config::new(1, users, start, end);
    config
        .validate()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let mut sink = crate::lake_sink::LakeSink::new(lake, 1);
    orch_eventsim::run(&config, &mut sink, &CancellationToken::new()).await?;
    sink.finish().await?;
    eprintln!("orch dev: lake: {} file(s), {} rows", sink.files, sink.rows);
    Ok(())
}

/// Queues one run of every asset over the generated hours.
async fn queue_first_hours(
    graph: &orch::AssetGraph,
    storage: &dyn orch::storage::Storage,
    hours: u32,
    now: DateTime<Utc>,
) -> CmdResult {
    let (start, end) = first_hours(hours, now);
    let key = |t: DateTime<Utc>| t.format("%Y-%m-%d-%H:00").to_string();
    let request = orch::plan::PartitionRequest::Range {
        from: key(start),
        to: key(end - Duration::hours(1)),
    };
    let selection = orch::Selection::all();
    let selected = selection
        .resolve(graph)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let plan =
        orch::plan::plan(graph, &selected, &request).map_err(|e| Failure::Usage(e.to_string()))?;
    let request_info = orch::execute::RunRequest {
        selection: "*".to_owned(),
        tags: std::collections::BTreeMap::from([(
            "orch/launched_by".to_owned(),
            "orch dev".to_owned(),
        )]),
        ..Default::default()
    };
    let run = orch::execute::queue_run(storage, &plan, &request_info).await?;
    eprintln!(
        "orch dev: queued run {} materializing every asset ({} steps) over {}",
        run.run_id,
        plan.steps.len(),
        request
    );
    Ok(())
}

/// The dashboards' source: the project's warehouse, or none.
fn marts(config: &orch::config::Config) -> Arc<dyn MartSource> {
    match crate::marts::WarehouseMarts::for_project(config) {
        Some(marts) => Arc::new(marts),
        None => Arc::new(NoMarts),
    }
}
