//! The example graph:
//!
//! ```text
//! example/songs ─▶ example/plays (hourly) ─▶ example/plays_by_song (hourly) ─▶ example/daily_top_songs (daily)
//! ```
//!
//! Files go under `.orch/example/`. The data is generated from the partition key, so a
//! re-materialization gives the same numbers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orch::asset::{AssetsDefinition, CheckSpec, Severity, asset};
use orch::context::{AssetContext, CheckResult, ComputeError, Materialization};
use orch::partitions::{PartitionMapping, PartitionsDefinition};
use orch::{Definitions, Metadata};

/// Songs in the generated catalogue.
const SONGS: u64 = 200;
/// The first partition of the hourly and daily assets.
const START_HOUR: &str = "2026-11-01-00:00";
const START_DAY: &str = "2026-11-01";

pub fn definitions(dir: &Path) -> Definitions {
    let dir = Arc::new(dir.to_path_buf());
    let defs = [
        songs(dir.clone()),
        plays(dir.clone()),
        plays_by_song(dir.clone()),
        daily_top_songs(dir),
    ];
    Definitions::new().assets(
        defs.into_iter()
            .map(|d| d.expect("the example definitions are valid")),
    )
}

fn hourly() -> PartitionsDefinition {
    PartitionsDefinition::hourly(START_HOUR, "UTC").expect("valid start")
}

fn daily() -> PartitionsDefinition {
    PartitionsDefinition::daily(START_DAY, "UTC").expect("valid start")
}

/// A small deterministic generator (splitmix64), so that data depends only on its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn seed_of(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

async fn write_json(path: &Path, value: &serde_json::Value) -> Result<u64, ComputeError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let bytes = serde_json::to_vec(value).map_err(|e| ComputeError::fatal(e.to_string()))?;
    let len = bytes.len() as u64;
    // Write then rename, so that a reader never sees half a file.
    let tmp = path.with_extension("json.tmp");
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await?;
    Ok(len)
}

async fn read_json(path: &Path) -> Result<serde_json::Value, ComputeError> {
    let bytes = tokio::fs::read(path).await.map_err(|e| {
        ComputeError::new(format!(
            "cannot read {}: {e} (materialize its upstream first)",
            path.display()
        ))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ComputeError::fatal(format!("{} is corrupt: {e}", path.display())))
}

fn partition(ctx: &AssetContext) -> Result<String, ComputeError> {
    ctx.partition_key()
        .map(str::to_owned)
        .ok_or_else(|| ComputeError::fatal("this asset needs a partition key"))
}

fn songs(dir: Arc<PathBuf>) -> Result<AssetsDefinition, orch::asset::DefinitionError> {
    asset("example/songs")
        .group("example")
        .kind("json")
        .owner("team:platform")
        .description("The song catalogue: ids, titles and artists.")
        .code_version("1")
        .check(
            CheckSpec::new("not_empty")
                .severity(Severity::Error)
                .blocking(true)
                .evaluate(|_ctx, metadata: Metadata| async move {
                    let rows = metadata.row_count().unwrap_or(0);
                    Ok(CheckResult::new("not_empty", rows > 0).meta("row_count", rows))
                }),
        )
        .compute(move |ctx: AssetContext| {
            let dir = dir.clone();
            async move {
                let mut rng = Rng::new(7);
                let songs: Vec<serde_json::Value> = (0..SONGS)
                    .map(|id| {
                        serde_json::json!({
                            "song_id": id,
                            "title": format!("Song {id}"),
                            "artist": format!("Artist {}", rng.next() % 40),
                        })
                    })
                    .collect();
                let bytes =
                    write_json(&dir.join("songs.json"), &serde_json::Value::Array(songs)).await?;
                ctx.log().info(format!("wrote {SONGS} songs"));
                Ok(Materialization::new().row_count(SONGS).bytes(bytes))
            }
        })
}

fn plays(dir: Arc<PathBuf>) -> Result<AssetsDefinition, orch::asset::DefinitionError> {
    asset("example/plays")
        .deps(["example/songs"])
        .group("example")
        .kind("json")
        .tag("layer", "raw")
        .description("Plays of one hour: which song, by which user. Popularity is long-tailed and traffic follows the time of day.")
        .code_version("1")
        .partitions(hourly())
        .compute(move |ctx: AssetContext| {
            let dir = dir.clone();
            async move {
                let key = partition(&ctx)?;
                let window = ctx.partition_window().ok_or_else(|| ComputeError::fatal("no time window"))?;
                let hour = chrono::Timelike::hour(&window.start) as f64;
                // Busiest in the evening, quietest before dawn.
                let cycle = 0.55 + 0.45 * ((hour - 20.0) / 24.0 * std::f64::consts::TAU).cos();
                let mut rng = Rng::new(seed_of(&key));
                let count = (400.0 * cycle) as u64 + rng.next() % 50;
                let plays: Vec<serde_json::Value> = (0..count)
                    .map(|_| {
                        // Zipf-like: small ids are much more popular.
                        let song = ((SONGS as f64).powf(rng.unit()) - 1.0) as u64;
                        serde_json::json!({ "song_id": song.min(SONGS - 1), "user_id": rng.next() % 500 })
                    })
                    .collect();
                let bytes = write_json(&dir.join("plays").join(format!("{key}.json")), &serde_json::Value::Array(plays)).await?;
                Ok(Materialization::new().row_count(count).bytes(bytes))
            }
        })
}

fn plays_by_song(dir: Arc<PathBuf>) -> Result<AssetsDefinition, orch::asset::DefinitionError> {
    let check_dir = dir.clone();
    asset("example/plays_by_song")
        .deps(["example/plays"])
        .group("example")
        .kind("json")
        .tag("layer", "mart")
        .description("Plays per song in one hour.")
        .code_version("1")
        .partitions(hourly())
        .check(
            CheckSpec::new("counts_add_up")
                .description("The per-song counts add up to the hour's plays.")
                .blocking(true)
                .evaluate(move |ctx: AssetContext, _metadata| {
                    let dir = check_dir.clone();
                    async move {
                        let key = partition(&ctx)?;
                        let plays =
                            read_json(&dir.join("plays").join(format!("{key}.json"))).await?;
                        let counts =
                            read_json(&dir.join("plays_by_song").join(format!("{key}.json")))
                                .await?;
                        let expected = plays.as_array().map_or(0, Vec::len) as u64;
                        let total: u64 = counts
                            .as_object()
                            .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
                            .unwrap_or(0);
                        Ok(CheckResult::new("counts_add_up", total == expected)
                            .meta("plays", expected)
                            .meta("counted", total))
                    }
                }),
        )
        .compute(move |ctx: AssetContext| {
            let dir = dir.clone();
            async move {
                let key = partition(&ctx)?;
                let plays = read_json(&dir.join("plays").join(format!("{key}.json"))).await?;
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for play in plays.as_array().into_iter().flatten() {
                    let song = play["song_id"].as_u64().unwrap_or_default();
                    *counts.entry(song.to_string()).or_default() += 1;
                }
                let rows = counts.len() as u64;
                let value = serde_json::to_value(&counts)
                    .map_err(|e| ComputeError::fatal(e.to_string()))?;
                let bytes = write_json(
                    &dir.join("plays_by_song").join(format!("{key}.json")),
                    &value,
                )
                .await?;
                Ok(Materialization::new().row_count(rows).bytes(bytes))
            }
        })
}

fn daily_top_songs(dir: Arc<PathBuf>) -> Result<AssetsDefinition, orch::asset::DefinitionError> {
    asset("example/daily_top_songs")
        .dep_mapped("example/plays_by_song", PartitionMapping::TimeWindow)
        .group("example")
        .kind("json")
        .tag("layer", "mart")
        .description("The day's ten most played songs, from the hours materialized so far.")
        .code_version("1")
        .partitions(daily())
        .compute(move |ctx: AssetContext| {
            let dir = dir.clone();
            async move {
                let window = ctx
                    .partition_window()
                    .ok_or_else(|| ComputeError::fatal("no time window"))?;
                let hours = hourly().keys_overlapping(&window);
                let mut totals: BTreeMap<u64, u64> = BTreeMap::new();
                let mut included = 0u64;
                for hour in &hours {
                    let path = dir.join("plays_by_song").join(format!("{hour}.json"));
                    if !tokio::fs::try_exists(&path).await? {
                        continue;
                    }
                    included += 1;
                    let counts = read_json(&path).await?;
                    for (song, n) in counts.as_object().into_iter().flatten() {
                        let song: u64 = song.parse().unwrap_or_default();
                        *totals.entry(song).or_default() += n.as_u64().unwrap_or_default();
                    }
                }
                if included < hours.len() as u64 {
                    ctx.log().warn(format!(
                        "{} of {} hours are not materialized yet",
                        hours.len() as u64 - included,
                        hours.len()
                    ));
                }
                let mut ranked: Vec<(u64, u64)> = totals.into_iter().collect();
                ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                ranked.truncate(10);
                let top: Vec<serde_json::Value> = ranked
                    .iter()
                    .map(|(song, plays)| serde_json::json!({ "song_id": song, "plays": plays }))
                    .collect();
                let key = partition(&ctx)?;
                let bytes = write_json(
                    &dir.join("daily_top_songs").join(format!("{key}.json")),
                    &serde_json::Value::Array(top),
                )
                .await?;
                Ok(Materialization::new()
                    .row_count(ranked.len() as u64)
                    .bytes(bytes)
                    .meta("hours_included", included))
            }
        })
}
