//! Sensors: evaluated by the daemon on an interval with a stored cursor, they request runs or
//! send notifications. Every request and notification is recorded as a tick of the sensor,
//! keyed by the time of what caused it, so that several daemons evaluating one sensor act on
//! it once (the tick's key is unique, as a schedule's is).
//!
//! Built in: [`LakeSensor`] (late files in an hour of the lake that was already loaded request
//! that hour's re-materialization) and [`RunFailureSensor`] (failed runs are posted to the
//! webhook).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::asset::AssetKey;
use crate::event::EventKind;
use crate::graph::AssetGraph;
use crate::notify::Notification;
use crate::plan::PartitionRequest;
use crate::storage::Storage;

/// A run a sensor asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorRunRequest {
    /// The selection, in the selection syntax.
    pub selection: String,
    pub partition: PartitionRequest,
    /// The tick key: the time of what caused the request (unique per sensor).
    pub key_time: DateTime<Utc>,
    /// Why, for the tick history.
    pub reason: String,
}

/// A notification a sensor asks to send, with its tick key.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorNotification {
    pub key_time: DateTime<Utc>,
    pub notification: Notification,
}

/// What one evaluation produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SensorOutput {
    /// The cursor to store (unchanged if `None`).
    pub cursor: Option<String>,
    pub run_requests: Vec<SensorRunRequest>,
    pub notifications: Vec<SensorNotification>,
}

/// What a sensor sees.
pub struct SensorContext<'a> {
    pub storage: &'a dyn Storage,
    pub graph: &'a AssetGraph,
    pub now: DateTime<Utc>,
}

/// A sensor.
#[async_trait]
pub trait Sensor: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn interval(&self) -> Duration;
    /// Evaluates once from `cursor` (the last stored one).
    async fn evaluate(
        &self,
        ctx: &SensorContext<'_>,
        cursor: Option<String>,
    ) -> Result<SensorOutput, String>;
}

/// What a [`LakeSensor`] watches: a lake of files by topic and hour. The lake's own crate knows
/// its layout; the platform implements this over it (a folder, GCS or S3 alike).
#[async_trait]
pub trait LakeListing: Send + Sync + 'static {
    /// Where it is, for messages.
    fn describe(&self) -> String;
    /// The newest modification time of the raw files of each (topic, hour key `YYYY-MM-DD-HH:00`),
    /// for the hours of `since`'s day and later.
    async fn newest_files(
        &self,
        since: DateTime<Utc>,
    ) -> Result<BTreeMap<(String, String), DateTime<Utc>>, String>;
}

/// Watches a lake (the layout the streaming workers and eventsim write). When files of an hour
/// change after that hour's raw asset was materialized (late events), it requests the hour's
/// re-materialization of `selection` (by default the raw asset and everything downstream).
/// Hours never loaded are left to the schedule, and hours older than the lookback (a week by
/// default) are not listed, so that a month of streamed files is not walked every interval.
#[derive(Clone)]
pub struct LakeSensor {
    name: String,
    lake: std::sync::Arc<dyn LakeListing>,
    /// The asset of a topic's raw partitions: `{topic}` is replaced (`raw/{topic}`).
    asset_template: String,
    /// What to re-materialize: `{asset}` is replaced (`{asset}*`).
    selection_template: String,
    interval: Duration,
    lookback: chrono::Duration,
    /// Also request hours never loaded (with declarative automation, the sensor is what
    /// observes new hours; without it, the schedule loads them).
    new_hours: bool,
}

impl std::fmt::Debug for LakeSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeSensor")
            .field("name", &self.name)
            .field("lake", &self.lake.describe())
            .field("asset_template", &self.asset_template)
            .field("selection_template", &self.selection_template)
            .field("interval", &self.interval)
            .field("lookback", &self.lookback)
            .field("new_hours", &self.new_hours)
            .finish()
    }
}

impl LakeSensor {
    /// A sensor over any lake (an object store's, for one).
    pub fn over(name: &str, lake: std::sync::Arc<dyn LakeListing>) -> LakeSensor {
        LakeSensor {
            name: name.to_owned(),
            lake,
            asset_template: "raw/{topic}".to_owned(),
            selection_template: "{asset}*".to_owned(),
            interval: Duration::from_secs(30),
            lookback: chrono::Duration::days(7),
            new_hours: false,
        }
    }

    /// Whether hours never loaded are requested too (off by default).
    pub fn new_hours(mut self, new_hours: bool) -> Self {
        self.new_hours = new_hours;
        self
    }

    /// How far back, by event hour, late files are looked for.
    pub fn lookback(mut self, lookback: chrono::Duration) -> Self {
        self.lookback = lookback;
        self
    }

    /// [`LakeSensor::lookback`] in hours, as configuration gives it (beyond chrono's range:
    /// no limit).
    pub fn lookback_hours(self, hours: u64) -> Self {
        let lookback = i64::try_from(hours)
            .ok()
            .and_then(chrono::Duration::try_hours)
            .unwrap_or(chrono::Duration::MAX);
        self.lookback(lookback)
    }

    pub fn asset_template(mut self, template: &str) -> Self {
        template.clone_into(&mut self.asset_template);
        self
    }

    pub fn selection_template(mut self, template: &str) -> Self {
        template.clone_into(&mut self.selection_template);
        self
    }

    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

#[async_trait]
impl Sensor for LakeSensor {
    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn evaluate(
        &self,
        ctx: &SensorContext<'_>,
        cursor: Option<String>,
    ) -> Result<SensorOutput, String> {
        // The cursor: for each "topic|hour", the newest file time already acted on.
        let mut handled: BTreeMap<String, i64> = match &cursor {
            Some(c) => serde_json::from_str(c).map_err(|e| format!("unreadable cursor: {e}"))?,
            None => BTreeMap::new(),
        };
        let newest = self
            .lake
            .newest_files(
                ctx.now
                    .checked_sub_signed(self.lookback)
                    .unwrap_or(DateTime::<Utc>::MIN_UTC),
            )
            .await
            .map_err(|e| format!("cannot list the lake at {}: {e}", self.lake.describe()))?;
        let mut by_asset: BTreeMap<AssetKey, Vec<(String, String, DateTime<Utc>)>> =
            BTreeMap::new();
        for ((topic, key), modified) in newest {
            let asset = self.asset_template.replace("{topic}", &topic);
            let Ok(asset) = AssetKey::parse(&asset) else {
                continue;
            };
            if !ctx.graph.contains(&asset) {
                continue;
            }
            by_asset
                .entry(asset)
                .or_default()
                .push((topic, key, modified));
        }
        let mut output = SensorOutput::default();
        for (asset, hours) in by_asset {
            let loaded: BTreeMap<String, DateTime<Utc>> = ctx
                .storage
                .asset_partitions(std::slice::from_ref(&asset))
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter_map(|r| Some((r.partition_key?, r.materialization?.timestamp)))
                .collect();
            for (topic, key, modified) in hours {
                let loaded_at = loaded.get(&key);
                if loaded_at.is_none() && !self.new_hours {
                    continue;
                }
                let slot = format!("{topic}|{key}");
                let seen = handled.get(&slot).copied().unwrap_or(i64::MIN);
                let micros = modified.timestamp_micros();
                if loaded_at.is_none_or(|l| modified > *l) && micros > seen {
                    output.run_requests.push(SensorRunRequest {
                        selection: self.selection_template.replace("{asset}", &asset.to_string()),
                        partition: PartitionRequest::Key(key.clone()),
                        key_time: tick_key(modified, &slot),
                        reason: match loaded_at {
                            Some(loaded_at) => format!(
                                "files of {topic} for {key} changed at {} after the hour was loaded at {}",
                                modified.to_rfc3339(),
                                loaded_at.to_rfc3339()
                            ),
                            None => format!(
                                "new files of {topic} for {key} (newest at {})",
                                modified.to_rfc3339()
                            ),
                        },
                    });
                    handled.insert(slot, micros);
                }
            }
        }
        // Forget hours older than a month, so that the cursor stays small.
        let horizon = (ctx.now - chrono::Duration::days(31)).timestamp_micros();
        handled.retain(|_, t| *t >= horizon);
        output.cursor = Some(serde_json::to_string(&handled).map_err(|e| e.to_string())?);
        Ok(output)
    }
}

/// A request's tick key: the file time at millisecond precision, its microseconds taken from a
/// hash of the topic and hour, so that files of several hours written in the same millisecond
/// (eventsim writes many at once) do not share a key, which would record only one of them.
fn tick_key(modified: DateTime<Utc>, slot: &str) -> DateTime<Utc> {
    // FNV-1a: the same on every daemon and version.
    let hash = slot.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let ms = modified.timestamp_millis();
    let offset = i64::try_from(hash % 1000).unwrap_or(0);
    DateTime::from_timestamp_micros(ms * 1000 + offset).unwrap_or(modified)
}

/// How many event ids behind its cursor the run-failure sensor reads again.
const REREAD_WINDOW: i64 = 10_000;

/// Posts every failed run to the webhook (the run-status sensor). Its cursor holds the id of
/// the last RUN_FAILURE event it read; on its first evaluation it starts from the present.
#[derive(Clone, Debug)]
pub struct RunFailureSensor {
    name: String,
    interval: Duration,
}

impl RunFailureSensor {
    pub fn new(name: &str) -> RunFailureSensor {
        RunFailureSensor {
            name: name.to_owned(),
            interval: Duration::from_secs(5),
        }
    }

    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

#[async_trait]
impl Sensor for RunFailureSensor {
    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn evaluate(
        &self,
        ctx: &SensorContext<'_>,
        cursor: Option<String>,
    ) -> Result<SensorOutput, String> {
        let kinds = [EventKind::RunFailure];
        // The cursor: `FLOOR:LAST`. Failures at or below FLOOR (the present when the sensor
        // first ran) are never posted; LAST is the newest failure read.
        let (floor, mut after): (i64, i64) = match &cursor {
            Some(c) => {
                let parsed = c
                    .split_once(':')
                    .and_then(|(f, l)| Some((f.parse().ok()?, l.parse().ok()?)));
                parsed.ok_or_else(|| format!("unreadable cursor `{c}`"))?
            }
            None => {
                // Start from the present: skip the failures already in the history.
                let mut last = 0;
                loop {
                    let page = ctx
                        .storage
                        .events_after(last, &kinds, 1000)
                        .await
                        .map_err(|e| e.to_string())?;
                    match page.last() {
                        Some(e) => last = e.id,
                        None => break,
                    }
                }
                return Ok(SensorOutput {
                    cursor: Some(format!("{last}:{last}")),
                    ..SensorOutput::default()
                });
            }
        };
        let mut output = SensorOutput::default();
        // Postgres makes event ids visible out of order when writes overlap, so re-read a
        // window behind the cursor; a failure already notified is a tick already recorded.
        let from = after.saturating_sub(REREAD_WINDOW).max(floor);
        let events = ctx
            .storage
            .events_after(from, &kinds, 500)
            .await
            .map_err(|e| e.to_string())?;
        for stored in events {
            after = after.max(stored.id);
            let event = &stored.event;
            let run = ctx
                .storage
                .get_run(event.run_id)
                .await
                .map_err(|e| e.to_string())?;
            let reason = event
                .body
                .message
                .clone()
                .or_else(|| event.body.error.as_ref().map(|e| e.message.clone()))
                .unwrap_or_else(|| "no reason recorded".to_owned());
            let (selection, partition) = run
                .as_ref()
                .map(|r| (r.selection.clone(), r.partition_display()))
                .unwrap_or_default();
            let mut text = format!(
                "orch: run {} failed: {reason} (selection `{selection}`",
                event.run_id
            );
            if !partition.is_empty() {
                text.push_str(&format!(", partition {partition}"));
            }
            text.push(')');
            output.notifications.push(SensorNotification {
                key_time: event.timestamp,
                notification: Notification {
                    kind: "run_failure".into(),
                    text,
                    details: serde_json::json!({
                        "run_id": event.run_id.to_string(),
                        "reason": reason,
                        "selection": selection,
                        "partition": partition,
                        "failed_at": event.timestamp.to_rfc3339(),
                        "tags": run.map(|r| r.tags).unwrap_or_default(),
                    }),
                },
            });
        }
        output.cursor = Some(format!("{floor}:{after}"));
        Ok(output)
    }
}
