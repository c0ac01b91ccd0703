//! Hour compaction: the many small files the streaming workers write into an hour become a few
//! large ones once the hour is closed, atomically for readers.
//!
//! An hour folder may hold, besides its data files, compaction manifests:
//!
//! ```text
//! raw/{topic}/date=.../hour=HH/kafka-p3-o1200-1799.parquet      data files
//! raw/{topic}/date=.../hour=HH/compact-g000001-5f2a-000.parquet  a compaction's output
//! raw/{topic}/date=.../hour=HH/_compacted/000001.json            its manifest (the commit)
//! ```
//!
//! A compaction writes its outputs under names no one else uses (`compact-g{generation}-{token}-
//! {i}`), then commits by creating the manifest of the next generation with a create-only put
//! (two compactors of one hour race for it: one wins, the loser deletes its outputs). The rule
//! every reader of the lake applies ([`Lake::list_files`], the sensor's listing, the staging
//! loads through them):
//!
//! - a file named as an *input* of a committed manifest is not listed (its rows are in the
//!   outputs), even while it still exists, and whenever it is written again: a name always
//!   denotes the same rows (a Kafka file holds exactly the records of its partition and offset
//!   range whose event hour is that hour), so a rewrite adds nothing;
//! - a compaction output is listed only when a committed manifest names it;
//! - everything else is listed as before, so late files written after a compaction are read
//!   beside its outputs, and a later compaction takes them in (with the earlier outputs).
//!
//! Inputs are deleted only `grace` after their manifest was committed, by a later run: a load
//! that listed the hour before the commit still finds every file it listed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};

use crate::error::LakeError;
use crate::layout::{self, Hour, PARQUET_EXT};
use crate::store::{FileMeta, Lake, join_failure};
use crate::topic::Topic;

/// The folder of an hour's compaction manifests.
pub const MANIFESTS: &str = "_compacted";
/// The first part of a compaction output's name.
pub const OUTPUT_PREFIX: &str = "compact-g";

/// A committed compaction of one hour: which files it replaced by which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: u64,
    /// File names (in the hour's folder) whose rows are now in `outputs`.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub rows: u64,
    /// The newest modification time of the inputs' data: what the outputs stand for to the
    /// lake sensor, so that compacting an hour does not look like new data.
    pub data_modified: DateTime<Utc>,
    pub committed_at: DateTime<Utc>,
}

/// How compaction chooses and shapes an hour's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionOptions {
    /// The size an output file aims at; files at least half of it are left alone.
    pub target_bytes: u64,
    /// How long inputs (and the outputs of a compaction that lost a race) are kept after the
    /// commit, for readers that listed the hour before it.
    pub grace: Duration,
}

impl Default for CompactionOptions {
    /// 128 MB files (an hour of the benchmark's million events is about 70 MB: one file), inputs
    /// kept 10 minutes.
    fn default() -> Self {
        CompactionOptions {
            target_bytes: 128 * 1024 * 1024,
            grace: Duration::from_secs(600),
        }
    }
}

/// What a compaction of one hour did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compacted {
    /// Fewer than two small files: nothing to do.
    Nothing,
    /// `inputs` files became `outputs` under manifest `generation`.
    Done {
        generation: u64,
        inputs: usize,
        outputs: usize,
        rows: u64,
    },
    /// Another compactor committed this generation first; ours was removed.
    Lost { generation: u64 },
}

/// An hour folder as readers see it.
#[derive(Debug, Default)]
pub(crate) struct HourView {
    /// Listed files: the visible data files, by path, with the time their data last changed.
    pub visible: Vec<(FileMeta, DateTime<Utc>)>,
    /// Data files not listed (compacted inputs, uncommitted outputs), with their metadata.
    pub hidden: Vec<(ObjectMeta, Hidden)>,
    /// Committed manifests, by generation.
    pub manifests: BTreeMap<u64, Arc<Manifest>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hidden {
    /// An input of the manifest of this generation.
    Input(u64),
    /// A compaction output no manifest names.
    Orphan,
}

fn manifest_path(dir: &str, generation: u64) -> String {
    format!("{dir}/{MANIFESTS}/{generation:06}.json")
}

impl Lake {
    /// The hour folder `dir` as readers see it, from `objects` (everything below `dir`): data
    /// files with extension `ext` directly in it, minus what compactions replaced.
    pub(crate) async fn hour_view(
        &self,
        dir: &str,
        ext: &str,
        objects: Vec<ObjectMeta>,
    ) -> Result<HourView, LakeError> {
        let mut view = HourView::default();
        let mut data = Vec::new();
        let manifest_dir = format!("{dir}/{MANIFESTS}/");
        for meta in objects {
            let path = meta.location.as_ref();
            if let Some(name) = path.strip_prefix(&manifest_dir) {
                if let Some(generation) = name
                    .strip_suffix(".json")
                    .and_then(|g| g.parse::<u64>().ok())
                {
                    let manifest = self.manifest(path).await?;
                    view.manifests.insert(generation, manifest);
                }
                continue;
            }
            let Some(parsed) = layout::parse_path(path) else {
                continue;
            };
            if !parsed.file.ends_with(&format!(".{ext}")) || !path.starts_with(dir) {
                continue;
            }
            data.push((parsed.file, meta));
        }
        let mut replaced: BTreeMap<&str, u64> = BTreeMap::new();
        let mut outputs: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
        for (generation, manifest) in &view.manifests {
            for input in &manifest.inputs {
                replaced.entry(input.as_str()).or_insert(*generation);
            }
            for output in &manifest.outputs {
                outputs.insert(output.as_str(), manifest.data_modified);
            }
        }
        for (name, meta) in data {
            if let Some(generation) = replaced.get(name.as_str()) {
                view.hidden.push((meta, Hidden::Input(*generation)));
            } else if name.starts_with(OUTPUT_PREFIX) {
                match outputs.get(name.as_str()) {
                    Some(modified) => view.visible.push((file_meta(&meta), *modified)),
                    None => view.hidden.push((meta, Hidden::Orphan)),
                }
            } else {
                let modified = meta.last_modified;
                view.visible.push((file_meta(&meta), modified));
            }
        }
        view.visible.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        Ok(view)
    }

    /// A manifest, read once and kept (manifests never change).
    async fn manifest(&self, path: &str) -> Result<Arc<Manifest>, LakeError> {
        if let Some(m) = self.manifests.lock().expect("not poisoned").get(path) {
            return Ok(m.clone());
        }
        let bytes = self.get(path).await?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt(path, "manifest", e))?;
        let manifest = Arc::new(manifest);
        self.manifests
            .lock()
            .expect("not poisoned")
            .insert(path.to_owned(), manifest.clone());
        Ok(manifest)
    }

    /// Whether the raw or dead-letter file at `path` holds its rows for readers: it exists, or
    /// a compaction of its hour replaced it.
    pub async fn is_in_lake(&self, path: &str) -> Result<bool, LakeError> {
        match self.store.head(&object_store::path::Path::from(path)).await {
            Ok(_) => return Ok(true),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.store_err("read", path, e)),
        }
        let Some((dir, name)) = path.rsplit_once('/') else {
            return Ok(false);
        };
        let objects = self.list_all(&format!("{dir}/{MANIFESTS}")).await?;
        for meta in objects {
            let manifest = self.manifest(meta.location.as_ref()).await?;
            if manifest.inputs.iter().any(|i| i == name) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Compacts the raw files of `topic` in `hour`: the visible files smaller than half the
    /// target become files of about `target_bytes`, committed by a new manifest; then removes
    /// what earlier compactions left behind for longer than `grace`. Safe to run from several
    /// processes at once, and while writers add late files and readers load the hour.
    pub async fn compact_hour(
        &self,
        topic: Topic,
        hour: Hour,
        options: CompactionOptions,
    ) -> Result<Compacted, LakeError> {
        let dir = layout::raw_hour_dir(topic, hour);
        let objects = self.list_all(&dir).await?;
        let view = self.hour_view(&dir, PARQUET_EXT, objects).await?;
        self.clean_up(&view, options.grace).await?;
        let small: Vec<&(FileMeta, DateTime<Utc>)> = view
            .visible
            .iter()
            .filter(|(f, _)| f.size < options.target_bytes / 2 && compactable(&f.path))
            .collect();
        if small.len() < 2 {
            return Ok(Compacted::Nothing);
        }
        let generation = view.manifests.keys().next_back().copied().unwrap_or(0) + 1;
        let token = token();
        let data_modified = small.iter().map(|(_, m)| *m).max().unwrap_or_else(Utc::now);
        // Read the inputs one at a time and cut outputs at the target size.
        let mut outputs: Vec<(String, Bytes)> = Vec::new();
        let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
        let mut rows = 0u64;
        let finish = |writer: ArrowWriter<Vec<u8>>,
                      outputs: &mut Vec<(String, Bytes)>|
         -> Result<(), LakeError> {
            let name = format!(
                "{OUTPUT_PREFIX}{generation:06}-{token}-{:03}",
                outputs.len()
            );
            let path = format!("{dir}/{name}.{PARQUET_EXT}");
            let bytes = writer.into_inner().map_err(|e| LakeError::BadBatch {
                path: path.clone(),
                detail: format!("Parquet encoding failed: {e}"),
            })?;
            outputs.push((path, Bytes::from(bytes)));
            Ok(())
        };
        for (file, _) in &small {
            let batches = self.read_parquet(&file.path).await?;
            let target = options.target_bytes;
            let path = file.path.clone();
            let current = writer.take();
            let (current, done, n) = tokio::task::spawn_blocking(move || {
                let mut current = current;
                let mut done = Vec::new();
                let mut n = 0u64;
                for batch in &batches {
                    let w = match current.as_mut() {
                        Some(w) => w,
                        None => current.insert(new_writer(topic, &path)?),
                    };
                    write_batch(w, batch, &path)?;
                    n += batch.num_rows() as u64;
                    if w.bytes_written() as u64 + w.in_progress_size() as u64 >= target {
                        done.push(current.take().expect("a writer"));
                    }
                }
                Ok::<_, LakeError>((current, done, n))
            })
            .await
            .map_err(|e| LakeError::BadBatch {
                path: file.path.clone(),
                detail: join_failure("compaction", e),
            })??;
            for full in done {
                finish(full, &mut outputs)?;
            }
            writer = current;
            rows += n;
        }
        if let Some(w) = writer.take() {
            finish(w, &mut outputs)?;
        }
        for (path, bytes) in &outputs {
            self.put(path, bytes.clone()).await?;
        }
        let manifest = Manifest {
            generation,
            inputs: small.iter().map(|(f, _)| file_name(&f.path)).collect(),
            outputs: outputs.iter().map(|(p, _)| file_name(p)).collect(),
            rows,
            data_modified,
            committed_at: Utc::now(),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialize");
        if !self
            .put_new(&manifest_path(&dir, generation), Bytes::from(json))
            .await?
        {
            for (path, _) in &outputs {
                self.delete(path).await?;
            }
            return Ok(Compacted::Lost { generation });
        }
        Ok(Compacted::Done {
            generation,
            inputs: small.len(),
            outputs: outputs.len(),
            rows,
        })
    }

    /// Deletes compacted inputs and orphan outputs older than `grace` (by their manifest's
    /// commit, or their own write).
    async fn clean_up(&self, view: &HourView, grace: Duration) -> Result<(), LakeError> {
        let now = Utc::now();
        let old = |t: DateTime<Utc>| (now - t).to_std().is_ok_and(|age| age >= grace);
        for (meta, hidden) in &view.hidden {
            let expired = match hidden {
                Hidden::Input(generation) => view
                    .manifests
                    .get(generation)
                    .is_some_and(|m| old(m.committed_at)),
                Hidden::Orphan => old(meta.last_modified),
            };
            if expired {
                self.delete(meta.location.as_ref()).await?;
            }
        }
        Ok(())
    }

    /// The raw hours of `topic` whose newest data is older than `closed_after` and that hold
    /// at least two files a compaction would take, among the days `days` (UTC).
    pub async fn hours_to_compact(
        &self,
        topic: Topic,
        days: &[chrono::NaiveDate],
        closed_after: Duration,
        options: CompactionOptions,
    ) -> Result<Vec<Hour>, LakeError> {
        let now = Utc::now();
        let mut due = Vec::new();
        for day in days {
            for (hour, files) in self.visible_raw_files_of_day(topic, *day).await? {
                let newest = files.iter().map(|(_, m)| *m).max();
                let closed =
                    newest.is_some_and(|t| (now - t).to_std().is_ok_and(|age| age >= closed_after));
                let small = files
                    .iter()
                    .filter(|(f, _)| f.size < options.target_bytes / 2 && compactable(&f.path))
                    .count();
                if closed && small >= 2 {
                    due.push(hour);
                }
            }
        }
        Ok(due)
    }

    /// The visible raw files of `topic` in each hour of `day`, with one listing of the day.
    pub(crate) async fn visible_raw_files_of_day(
        &self,
        topic: Topic,
        day: chrono::NaiveDate,
    ) -> Result<BTreeMap<Hour, Vec<(FileMeta, DateTime<Utc>)>>, LakeError> {
        let dir = format!(
            "{}/date={}",
            layout::raw_topic_dir(topic),
            day.format("%Y-%m-%d")
        );
        let mut by_hour: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        for meta in self.list_all(&dir).await? {
            let path = meta.location.as_ref();
            let Some(rest) = path.strip_prefix(&format!("{dir}/")) else {
                continue;
            };
            let Some((hour_dir, _)) = rest.split_once('/') else {
                continue;
            };
            by_hour
                .entry(format!("{dir}/{hour_dir}"))
                .or_default()
                .push(meta);
        }
        let mut out = BTreeMap::new();
        for (hour_dir, objects) in by_hour {
            let Some(hour) = hour_dir
                .rsplit_once('/')
                .and_then(|(d, h)| Hour::from_dirs(d.rsplit('/').next()?, h))
            else {
                continue;
            };
            let view = self.hour_view(&hour_dir, PARQUET_EXT, objects).await?;
            if !view.visible.is_empty() {
                out.insert(hour, view.visible);
            }
        }
        Ok(out)
    }
}

/// Only files whose name always denotes the same rows are compacted: the streaming workers'
/// (`kafka-p{partition}-o{first}-{last}`) and earlier compactions' outputs.
fn compactable(path: &str) -> bool {
    let name = file_name(path);
    name.starts_with("kafka-p") || name.starts_with(OUTPUT_PREFIX)
}

fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

fn file_meta(meta: &ObjectMeta) -> FileMeta {
    FileMeta {
        path: meta.location.to_string(),
        size: meta.size,
        last_modified: meta.last_modified,
    }
}

fn new_writer(topic: Topic, path: &str) -> Result<ArrowWriter<Vec<u8>>, LakeError> {
    ArrowWriter::try_new(
        Vec::new(),
        topic.schema(),
        Some(crate::store::writer_properties(
            topic,
            crate::store::ZSTD_LEVEL,
        )),
    )
    .map_err(|e| LakeError::BadBatch {
        path: path.to_owned(),
        detail: format!("Parquet encoding failed: {e}"),
    })
}

fn write_batch(
    writer: &mut ArrowWriter<Vec<u8>>,
    batch: &RecordBatch,
    path: &str,
) -> Result<(), LakeError> {
    writer.write(batch).map_err(|e| LakeError::BadBatch {
        path: path.to_owned(),
        detail: format!("Parquet encoding failed: {e}"),
    })
}

/// A short token that makes one compaction's output names its own.
fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Utc::now().timestamp_nanos_opt().unwrap_or(0) as u128);
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}
