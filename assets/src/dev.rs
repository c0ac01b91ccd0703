//! What `orch dev` does on first start: with an empty local lake, it generates a few hours of
//! events with eventsim into the lake and queues one run of every asset over them, so that the
//! UI opens on a living platform. A `gs://` or `s3://` lake is the streaming workers' to fill.

use std::path::Path;

use chrono::{DateTime, Duration, DurationRound, Utc};
use orch::AssetGraph;
use orch::storage::Storage;
use tokio_util::sync::CancellationToken;

use crate::PlatformConfig;
use crate::eventsim_sink::LakeSink;

/// How much to generate.
#[derive(Clone, Copy, Debug)]
pub struct Seed {
    /// Complete hours before now.
    pub hours: u32,
    pub users: u32,
}

/// What the bootstrap did.
#[derive(Clone, Debug, PartialEq)]
pub enum Bootstrap {
    /// Nothing: the lake is not local, already holds events, or no hours were asked for.
    Skipped,
    /// Generated events and queued their materialization.
    Seeded {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        files: usize,
        rows: usize,
        run_id: orch::RunId,
        steps: usize,
    },
}

/// Seeds an empty local lake and queues its materialization (see the module documentation).
pub async fn bootstrap(
    platform: &PlatformConfig,
    graph: &AssetGraph,
    storage: &dyn Storage,
    seed: Seed,
    now: DateTime<Utc>,
) -> Result<Bootstrap, String> {
    if !platform.local_lake() || seed.hours == 0 {
        return Ok(Bootstrap::Skipped);
    }
    let dir = Path::new(&platform.lake);
    if !lake_is_empty(dir).await? {
        return Ok(Bootstrap::Skipped);
    }
    let (from, to) = first_hours(seed.hours, now);
    let (files, rows) = seed_lake(dir, seed, from, to).await?;
    let (run_id, steps) = queue_hours(graph, storage, from, to).await?;
    Ok(Bootstrap::Seeded {
        from,
        to,
        files,
        rows,
        run_id,
        steps,
    })
}

/// `orch dev --realtime`: generates events for `users` users in real time into the platform's
/// lake until `cancel` fires, writing the open hour once a minute, so that the lake sensor and
/// automation carry them to the marts within a minute or two. Each start has its own seed
/// (from `now`), so its files never replace an earlier start's. Returns (files, rows) written.
pub async fn realtime(
    platform: &PlatformConfig,
    users: u32,
    now: DateTime<Utc>,
    cancel: CancellationToken,
) -> Result<(usize, usize), String> {
    let lake = orch_lake::Lake::open(&platform.lake).map_err(|e| e.to_string())?;
    let seed = u64::try_from(now.timestamp()).unwrap_or(1);
    let start = now.duration_trunc(Duration::seconds(1)).unwrap_or(now);
    let mut config = orch_eventsim::Config::new(seed, users, start, start + Duration::days(366));
    config.speed = orch_eventsim::Speed::RealTime { factor: 1.0 };
    config.validate().map_err(|e| e.to_string())?;
    let mut sink = LakeSink::new(lake, seed);
    let result = orch_eventsim::run(&config, &mut sink, &cancel).await;
    // What was generated before a stop is written either way.
    sink.finish().await.map_err(|e| e.to_string())?;
    result.map_err(|e| e.to_string())?;
    Ok((sink.files, sink.rows))
}

/// Whether the lake folder holds no raw file yet.
async fn lake_is_empty(dir: &Path) -> Result<bool, String> {
    let lake = orch_lake::Lake::open(&dir.display().to_string()).map_err(|e| e.to_string())?;
    for topic in orch_lake::Topic::ALL {
        if !lake
            .list_hours(topic)
            .await
            .map_err(|e| e.to_string())?
            .is_empty()
        {
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

/// Generates events for `seed.users` users over [from, to) into the lake: (files, rows).
async fn seed_lake(
    dir: &Path,
    seed: Seed,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(usize, usize), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lake = orch_lake::Lake::open(&dir.display().to_string()).map_err(|e| e.to_string())?;
    let config = orch_eventsim::Config::new(1, seed.users, from, to);
    config.validate().map_err(|e| e.to_string())?;
    let mut sink = LakeSink::new(lake, 1);
    orch_eventsim::run(&config, &mut sink, &CancellationToken::new())
        .await
        .map_err(|e| e.to_string())?;
    sink.finish().await.map_err(|e| e.to_string())?;
    Ok((sink.files, sink.rows))
}

/// Queues one run of every asset over [from, to): (its id, its steps).
async fn queue_hours(
    graph: &AssetGraph,
    storage: &dyn Storage,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(orch::RunId, usize), String> {
    let key = |t: DateTime<Utc>| t.format("%Y-%m-%d-%H:00").to_string();
    let partitions = orch::plan::PartitionRequest::Range {
        from: key(from),
        to: key(to - Duration::hours(1)),
    };
    let request = orch::RunRequest::new("*", partitions).launched_by(&orch::request::Launcher::Dev);
    let submitted = orch::submit::submit(storage, graph, &request, orch::submit::Submit::Queue)
        .await
        .map_err(|e| e.to_string())?;
    Ok((submitted.run.run_id, submitted.plan.steps.len()))
}
