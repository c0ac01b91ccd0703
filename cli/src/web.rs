//! `orch web` (the UI and JSON API on 127.0.0.1:3000) and `orch dev` (the UI, a daemon and
//! the embedded defaults in one process, schedules on; on first start, a few hours of
//! generated events in the lake and their materialization queued).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use clap::Args;
use orch_web::{AppState, MartSource, NoMarts, Security};
use tokio_util::sync::CancellationToken;

use crate::{CmdResult, Failure, project};

#[derive(Debug, Args)]
pub struct WebArgs {
    /// The address to listen on. Anything but loopback needs ORCH_WEB_TOKEN.
    #[arg(long, default_value = "127.0.0.1:3000", env = "ORCH_WEB_ADDR")]
    addr: SocketAddr,
    /// A host name the server answers to beside localhost, the loopback addresses and the
    /// bound address (a proxy's name, the machine's DNS name); repeat or comma-separate. Any
    /// other Host header is refused (DNS rebinding).
    #[arg(
        long = "allowed-host",
        env = "ORCH_WEB_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
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
    /// Keep generating events in real time into the lake (eventsim at real speed, its open
    /// hour written every minute), so that automation carries them to the dashboards while you
    /// watch; `--users 20000` makes them move visibly.
    #[arg(long)]
    realtime: bool,
}

fn token() -> Option<String> {
    std::env::var(orch_web::TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
}

/// The optional read-only token (`ORCH_WEB_READ_TOKEN`): reads only, and only with a token.
fn read_token(token: Option<&str>) -> Result<Option<String>, Failure> {
    let read = std::env::var(orch_web::READ_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty());
    match (&read, token) {
        (Some(_), None) => Err(Failure::Usage(format!(
            "{} is set without {}: a read-only token only makes sense beside the access token",
            orch_web::READ_TOKEN_ENV,
            orch_web::TOKEN_ENV
        ))),
        (Some(r), Some(_)) if r.len() < 16 => Err(Failure::Usage(format!(
            "{} is too short: use at least 16 characters",
            orch_web::READ_TOKEN_ENV
        ))),
        _ => Ok(read),
    }
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
#[allow(clippy::too_many_arguments)]
fn app_state(
    config: &orch::config::Config,
    storage: Arc<dyn orch::Storage>,
    graph: Arc<orch::AssetGraph>,
    schedules: Vec<orch::daemon::ScheduleDefinition>,
    sensors: &[Arc<dyn orch::daemon::Sensor>],
    token: Option<String>,
    bound: SocketAddr,
    args: &WebArgs,
) -> Result<AppState, Failure> {
    let read = read_token(token.as_deref())?;
    let security = Security::new(token)
        .with_read_token(read)
        .bound_to(bound)
        .allow_hosts(&args.allowed_hosts);
    Ok(
        AppState::new(storage, graph, schedules, marts(config), security)
            .with_sensors(sensors.iter().map(|s| s.name().to_owned()).collect())
            .with_max_range_partitions(config.limits.max_range_partitions)
            .with_confirm_runs_above(config.limits.confirm_runs_above),
    )
}

pub async fn web(dir: Option<&Path>, args: WebArgs) -> CmdResult {
    let config = project::config(dir)?;
    let (defs, graph) = project::graph(&config)?;
    let schedules = project::schedules(&config, &defs)?;
    let sensors = project::sensors(&config, &defs)?;
    let token = token();
    let listener = bind(args.addr, token.as_deref()).await?;
    let storage = project::storage(&config).await?;
    let bound = listener.local_addr().unwrap_or(args.addr);
    let state = app_state(
        &config, storage, graph, schedules, &sensors, token, bound, &args,
    )?;
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
    let platform = orch_platform::PlatformConfig::from_config(&config).map_err(Failure::Usage)?;
    let seed = orch_platform::dev::Seed {
        hours: args.hours,
        users: args.users,
    };
    eprintln!("orch dev: checking the lake at {}", platform.lake);
    let bootstrap = orch_platform::dev::bootstrap(&platform, &graph, storage.as_ref(), seed, now)
        .await
        .map_err(Failure::Work)?;
    if let orch_platform::dev::Bootstrap::Seeded {
        from,
        to,
        files,
        rows,
        run_id,
        steps,
    } = bootstrap
    {
        eprintln!(
            "orch dev: the lake was empty: generated events for {} users from {from} to {to} ({files} file(s), {rows} rows) and queued run {run_id} materializing every asset ({steps} steps)",
            args.users
        );
    }
    let daemon = project::daemon(
        &defs,
        graph.clone(),
        storage.clone(),
        schedules.clone(),
        sensors.clone(),
        project::automation(&config, &graph)?,
        project::daemon_config(&config),
    )?;
    let bound = listener.local_addr().unwrap_or(args.web.addr);
    let state = app_state(
        &config, storage, graph, schedules, &sensors, token, bound, &args.web,
    )?
    .with_daemon_metrics(daemon.metrics().clone());
    let shutdown = CancellationToken::new();
    let cancel_runs = CancellationToken::new();
    let daemon_task = tokio::spawn(Arc::new(daemon).run(shutdown.clone(), cancel_runs.clone()));
    let web_shutdown = shutdown.clone();
    eprintln!(
        "orch dev: http://{} · daemon on, schedules on · run history at {} · lake at {}; Ctrl-C stops",
        listener.local_addr().unwrap_or(args.web.addr),
        orch::storage::redact_url(&config.database_url),
        platform.lake
    );
    let web_task = tokio::spawn(orch_web::serve(listener, state, web_shutdown));
    let realtime = args.realtime.then(|| {
        eprintln!(
            "orch dev: generating events for {} users in real time into {} (the open hour is written every minute)",
            args.users, platform.lake
        );
        let (platform, stop) = (platform.clone(), shutdown.clone());
        tokio::spawn(async move {
            orch_platform::dev::realtime(&platform, args.users, Utc::now(), stop).await
        })
    });
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
    if let Some(task) = realtime {
        match task.await {
            Ok(Ok((files, rows))) => {
                eprintln!("orch dev: real-time events: {rows} rows in {files} file(s)")
            }
            Ok(Err(e)) => eprintln!("orch dev: real-time events stopped: {e}"),
            Err(e) => eprintln!("orch dev: real-time events stopped: {e}"),
        }
    }
    match daemon_task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::Work(e.to_string())),
        Err(e) => Err(Failure::Work(format!("the daemon stopped: {e}"))),
    }
}

/// The dashboards' source: the project's warehouse, or none.
fn marts(config: &orch::config::Config) -> Arc<dyn MartSource> {
    let marts = orch_platform::PlatformConfig::from_config(config)
        .ok()
        .and_then(|p| orch_platform::marts::WarehouseMarts::for_platform(&p));
    match marts {
        Some(marts) => Arc::new(marts),
        None => Arc::new(NoMarts),
    }
}
