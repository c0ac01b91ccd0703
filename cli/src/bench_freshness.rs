//! `orch bench freshness`: how far behind the wall clock the marts are while the platform runs
//! on automation alone. In a platform project on DuckDB, it runs what `orch dev --realtime`
//! runs (the daemon with the lake sensor and automation; eventsim at real speed writing the open
//! hour into the lake every minute), and every `--sample-secs` reads the newest minute in
//! `mart_plays` (what the dashboards show) and the newest listen in the star schema
//! (`fact_listens`). After the warm-up, each sample's age (the wall clock minus that time) is
//! kept; the figures are their p50, p99 and max.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Args;
use orch_warehouse::{DuckDbWarehouse, Warehouse};
use tokio_util::sync::CancellationToken;

use crate::{CmdResult, Failure, project};

#[derive(Debug, Args)]
pub struct FreshnessBenchArgs {
    /// Minutes of samples after the warm-up.
    #[arg(long, default_value_t = 15)]
    minutes: u64,
    /// Seconds between two samples.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Seconds from the start before the first kept sample (the first files land after a
    /// minute; the first builds of an empty warehouse build everything).
    #[arg(long, default_value_t = 180)]
    warmup_secs: u64,
    /// Users of the generated site.
    #[arg(long, default_value_t = 20_000)]
    users: u32,
}

/// The newest minute of `mart_plays` and the newest listen of the star schema, in epoch
/// seconds (the warehouse's timestamps are UTC).
const NEWEST: &str = "select \
     (select cast(epoch(max(period_start)) as bigint) from marts.mart_plays where grain = 'minute'), \
     (select cast(epoch(max(event_ts)) as bigint) from core.fact_listens)";

pub async fn freshness(dir: Option<&Path>, args: FreshnessBenchArgs) -> CmdResult {
    if args.minutes == 0 || args.sample_secs == 0 {
        return Err(Failure::Usage(
            "--minutes and --sample-secs must be at least 1".into(),
        ));
    }
    let config = project::config(dir)?;
    let _owner = crate::daemon::own_sqlite_file(&config.database_url)?;
    let platform = orch_platform::PlatformConfig::from_config(&config).map_err(Failure::Usage)?;
    if platform.warehouse != orch_platform::config::WarehouseKind::DuckDb {
        return Err(Failure::Usage(
            "orch bench freshness reads the DuckDB warehouse: run it in a project with `warehouse = \"duckdb\"`".into(),
        ));
    }
    if !platform.automation {
        return Err(Failure::Usage(
            "orch bench freshness measures the platform on automation: `automation = false` in [platform] (or ORCH_PLATFORM_AUTOMATION=0) turns it off".into(),
        ));
    }
    let (defs, graph) = project::graph(&config)?;
    let sensors = project::sensors(&config, &defs)?;
    let storage = project::storage(&config).await?;
    let automation = project::automation(&config, &graph)?;
    let daemon = project::daemon(
        &defs,
        graph,
        storage.clone(),
        Vec::new(),
        sensors,
        automation,
        project::daemon_config(&config),
    )?;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "orch bench freshness: {} users in real time into {}, the platform on automation (lake sensor every {} s), \
         {} min of samples every {} s after {} s of warm-up, {cores} cores",
        args.users,
        platform.lake,
        platform.sensor_interval_secs,
        args.minutes,
        args.sample_secs,
        args.warmup_secs
    );
    let stop = CancellationToken::new();
    let cancel_runs = CancellationToken::new();
    let daemon_task = tokio::spawn(Arc::new(daemon).run(stop.clone(), cancel_runs.clone()));
    let started = Utc::now();
    let realtime = {
        let (platform, stop, users) = (platform.clone(), stop.clone(), args.users);
        tokio::spawn(
            async move { orch_platform::dev::realtime(&platform, users, started, stop).await },
        )
    };
    let interrupted = CancellationToken::new();
    {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            interrupted.cancel();
        });
    }
    let warehouse =
        DuckDbWarehouse::new(&platform.duckdb_path).lock_timeout(Duration::from_secs(30));
    let (mut marts, mut star) = (Vec::new(), Vec::new());
    let clock = Instant::now();
    let end = Duration::from_secs(args.warmup_secs + args.minutes * 60);
    let mut tick = tokio::time::interval(Duration::from_secs(args.sample_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    println!(
        "{:>7}  {:>20}  {:>9}  {:>20}  {:>9}",
        "ELAPSED", "NEWEST MINUTE (MARTS)", "AGE", "NEWEST LISTEN (STAR)", "AGE"
    );
    let mut failure = None;
    while clock.elapsed() < end {
        tokio::select! {
            _ = tick.tick() => {}
            _ = interrupted.cancelled() => {
                failure = Some("interrupted".to_owned());
                break;
            }
        }
        let now = Utc::now();
        // Before the first build the tables do not exist: nothing is visible yet. Any other
        // error is shown, and the sample counts as seeing nothing.
        let (minute, listen) = match warehouse.query(NEWEST).await {
            Ok(result) => {
                let at = |i: usize| {
                    result
                        .rows
                        .first()
                        .and_then(|row| row.get(i))
                        .and_then(serde_json::Value::as_i64)
                        .and_then(|s| DateTime::from_timestamp(s, 0))
                };
                (at(0), at(1))
            }
            Err(e) => {
                let e = e.to_string();
                if !e.contains("does not exist") {
                    eprintln!("orch bench freshness: reading the marts: {e}");
                }
                (None, None)
            }
        };
        // What the real-time events are missing from counts as old as the start.
        let age = |t: Option<DateTime<Utc>>| {
            (now - t.map_or(started, |t| t.max(started)))
                .to_std()
                .unwrap_or_default()
                .as_secs_f64()
        };
        let kept = clock.elapsed() >= Duration::from_secs(args.warmup_secs);
        let shown = |t: Option<DateTime<Utc>>| {
            t.map_or_else(|| "-".to_owned(), |t| t.format("%H:%M:%S").to_string())
        };
        println!(
            "{:>6}s  {:>20}  {:>8.0}s  {:>20}  {:>8.0}s{}",
            clock.elapsed().as_secs(),
            shown(minute),
            age(minute),
            shown(listen),
            age(listen),
            if kept { "" } else { "  (warm-up)" }
        );
        if kept {
            marts.push(age(minute));
            star.push(age(listen));
        }
        if realtime.is_finished() {
            failure = Some("the real-time events stopped".to_owned());
            break;
        }
    }
    stop.cancel();
    match realtime.await {
        Ok(Ok((files, rows))) => println!("real-time events: {rows} rows in {files} file(s)"),
        Ok(Err(e)) => failure = Some(format!("the real-time events stopped: {e}")),
        Err(e) => failure = Some(format!("the real-time events stopped: {e}")),
    }
    cancel_runs.cancel();
    let _ = daemon_task.await;
    let counts = storage.run_status_counts().await?;
    println!(
        "runs: {}",
        counts
            .iter()
            .map(|(status, n)| format!("{n} {status}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(why) = failure {
        return Err(Failure::Work(why));
    }
    if marts.is_empty() {
        return Err(Failure::Work("no sample after the warm-up".into()));
    }
    let n = marts.len();
    let (p50, p99, max) = crate::bench::summary(marts);
    println!(
        "marts (newest minute of mart_plays, up to 60 s older than its newest listen), {n} samples: p50 {p50:.0} s, p99 {p99:.0} s, max {max:.0} s"
    );
    let (p50, p99, max) = crate::bench::summary(star);
    println!(
        "star schema (newest listen of fact_listens), {n} samples: p50 {p50:.0} s, p99 {p99:.0} s, max {max:.0} s"
    );
    Ok(())
}
