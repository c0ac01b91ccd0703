//! The lake's storage: a local folder, GCS or S3 through object_store.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::aws::AmazonS3Builder;
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig, StaticCredentialProvider,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;

use crate::dlq::{DeadLetter, parse_dead_letters};
use crate::error::LakeError;
use crate::layout::{self, FileName, Hour, JSONL_EXT, PARQUET_EXT};
use crate::topic::{Topic, col};

/// Rows per Parquet row group: large enough for good compression and fast scans, small enough
/// that readers of one hour never hold much in memory.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The zstd level of Parquet pages: zstd's default, a good balance of size and speed.
pub const ZSTD_LEVEL: i32 = 3;

/// The zstd level of the streaming workers' files: zstd's fastest, about twice as fast as
/// [`ZSTD_LEVEL`] for files a few percent larger. These small files live until hour compaction
/// rewrites them at [`ZSTD_LEVEL`].
pub const STREAMING_ZSTD_LEVEL: i32 = 1;

/// Bytes read from the end of a Parquet file for its footer: enough for the footers the lake
/// writes (a few KB), so that one ranged read usually does.
const FOOTER_READ: u64 = 64 * 1024;

/// How a lake is opened, beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct LakeOptions {
    /// The endpoint of an emulator or compatible store: for `gs://`, e.g. fake-gcs-server at
    /// `http://127.0.0.1:4443` (default: `STORAGE_EMULATOR_HOST`, as Google's clients do); for
    /// `s3://`, e.g. MinIO (default: `AWS_ENDPOINT`). With a GCS emulator, requests are sent
    /// without credentials, adapted to fake-gcs-server (see `emulator.rs`); start it with its
    /// default `-public-host`.
    pub endpoint: Option<String>,
    /// How long a request to an object store is retried before it fails (default: object_store's,
    /// 3 minutes).
    pub retry_timeout: Option<Duration>,
}

/// A file written to the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Its path relative to the lake's root, e.g. `raw/listen_events/date=.../hour=10/x.parquet`.
    pub path: String,
    /// Rows (events, or dead letters) in it.
    pub rows: usize,
    /// Its size.
    pub bytes: u64,
}

/// A lake file encoded in memory, not yet written: its path, rows and bytes. Encoding is CPU
/// work (Parquet with zstd), putting it IO: the streaming workers do the first on a blocking
/// thread and commit the file's name before the second.
#[derive(Debug, Clone)]
pub struct EncodedFile {
    /// Its path relative to the lake's root.
    pub path: String,
    pub rows: usize,
    pub bytes: Bytes,
}

impl EncodedFile {
    /// `batches` of `topic` as the Parquet file `raw/{topic}/date=.../hour=.../{name}.parquet`:
    /// checked to have the topic's schema and only rows of `hour` (by `ts`).
    pub fn parquet(
        topic: Topic,
        hour: Hour,
        name: &FileName,
        batches: &[RecordBatch],
    ) -> Result<EncodedFile, LakeError> {
        EncodedFile::parquet_at(topic, hour, name, batches, ZSTD_LEVEL)
    }

    /// [`EncodedFile::parquet`] at zstd level `zstd_level` (1 to 22): the streaming workers write their
    /// small files at [`STREAMING_ZSTD_LEVEL`], and hour compaction rewrites them at
    /// [`ZSTD_LEVEL`].
    pub fn parquet_at(
        topic: Topic,
        hour: Hour,
        name: &FileName,
        batches: &[RecordBatch],
        zstd_level: i32,
    ) -> Result<EncodedFile, LakeError> {
        let path = layout::raw_file(topic, hour, name);
        let rows = check_batches(topic, hour, &path, batches)?;
        let bytes =
            encode_parquet(topic, batches, zstd_level).map_err(|e| LakeError::BadBatch {
                path: path.clone(),
                detail: format!("Parquet encoding failed: {e}"),
            })?;
        Ok(EncodedFile { path, rows, bytes })
    }

    /// Dead letters of `topic` as the JSON Lines file
    /// `dlq/{topic}/date=.../hour=.../{name}.jsonl`.
    pub fn dead_letters(
        topic: Topic,
        hour: Hour,
        name: &FileName,
        letters: &[DeadLetter],
    ) -> Result<EncodedFile, LakeError> {
        let path = layout::dlq_file(topic, hour, name);
        if let Some(other) = letters.iter().find(|l| l.topic != topic) {
            return Err(LakeError::BadBatch {
                path,
                detail: format!("a dead letter of {} is among those of {topic}", other.topic),
            });
        }
        let text: String = letters.iter().map(DeadLetter::to_json_line).collect();
        Ok(EncodedFile {
            path,
            rows: letters.len(),
            bytes: Bytes::from(text),
        })
    }
}

/// A file in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Its path relative to the lake's root.
    pub path: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

#[derive(Debug, Clone)]
enum Kind {
    Local { root: PathBuf },
    Gcs { bucket: String, prefix: String },
    S3 { bucket: String, prefix: String },
}

/// The lake: `raw/` and `dlq/` areas (see [`crate::layout`]) in a local folder, on GCS or on S3.
#[derive(Clone)]
pub struct Lake {
    pub(crate) store: Arc<dyn ObjectStore>,
    kind: Kind,
    /// The URL as shown to users: credentials redacted.
    shown: String,
    /// Compaction manifests read so far, by path: they never change once written.
    pub(crate) manifests:
        Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<crate::compact::Manifest>>>>,
}

impl fmt::Debug for Lake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lake").field("url", &self.shown).finish()
    }
}

impl Lake {
    /// Opens the lake at `url` with the environment's settings: a local folder path (relative or
    /// absolute) or `file:///...` (created if missing), `gs://BUCKET[/PREFIX]` (credentials as
    /// Google's clients find them; `STORAGE_EMULATOR_HOST` for an emulator) or
    /// `s3://BUCKET[/PREFIX]` (credentials and region from `AWS_*`).
    pub fn open(url: &str) -> Result<Lake, LakeError> {
        Lake::open_with(url, LakeOptions::default())
    }

    /// Opens the lake at `url` (see [`Lake::open`]) with `options`.
    pub fn open_with(url: &str, options: LakeOptions) -> Result<Lake, LakeError> {
        let shown = redact_url(url);
        let invalid = |reason: &str| LakeError::InvalidUrl {
            url: shown.clone(),
            reason: reason.to_owned(),
        };
        let Some((scheme, _)) = url.split_once("://") else {
            return Lake::open_local(PathBuf::from(url), shown);
        };
        if url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.split(['/', '?', '#']).any(|p| p == "." || p == ".."))
        {
            return Err(invalid("the path may not contain `.` or `..`"));
        }
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                "credentials do not belong in the lake URL: use GOOGLE_APPLICATION_CREDENTIALS \
                 for gs://, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3://",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid(
                "a lake URL has no query (`?...`) or fragment (`#...`)",
            ));
        }
        match scheme {
            "file" => {
                let path = parsed.to_file_path().map_err(|()| {
                    invalid("a file URL needs an absolute path, e.g. file:///var/lib/orch/lake")
                })?;
                Lake::open_local(path, shown)
            }
            "gs" | "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| invalid("the bucket is missing, e.g. gs://my-bucket/lake"))?
                    .to_owned();
                let prefix = parsed.path().trim_matches('/').to_owned();
                let open_err = |e: object_store::Error| LakeError::Open {
                    url: shown.clone(),
                    message: e.to_string(),
                };
                let mut retry = RetryConfig::default();
                if let Some(timeout) = options.retry_timeout {
                    retry.retry_timeout = timeout;
                }
                let store: Arc<dyn ObjectStore> = if scheme == "gs" {
                    let endpoint = options
                        .endpoint
                        .clone()
                        .or_else(|| std::env::var("STORAGE_EMULATOR_HOST").ok())
                        .filter(|e| !e.trim().is_empty());
                    let mut builder = GoogleCloudStorageBuilder::from_env()
                        .with_bucket_name(&bucket)
                        .with_retry(retry);
                    if let Some(endpoint) = endpoint {
                        let endpoint = if endpoint.contains("://") {
                            endpoint
                        } else {
                            format!("http://{endpoint}")
                        };
                        builder = builder
                            .with_base_url(endpoint.trim_end_matches('/'))
                            .with_skip_signature(true)
                            .with_credentials(Arc::new(StaticCredentialProvider::new(
                                GcpCredential {
                                    bearer: String::new(),
                                },
                            )))
                            .with_client_options(ClientOptions::new().with_allow_http(true))
                            .with_http_connector(crate::emulator::FakeGcsConnector);
                    }
                    wrap(builder.build().map_err(open_err)?, &prefix)
                } else {
                    let mut builder = AmazonS3Builder::from_env()
                        .with_bucket_name(&bucket)
                        .with_retry(retry);
                    if let Some(endpoint) = &options.endpoint {
                        builder = builder
                            .with_endpoint(endpoint.trim_end_matches('/'))
                            .with_allow_http(endpoint.starts_with("http://"));
                    }
                    wrap(builder.build().map_err(open_err)?, &prefix)
                };
                let kind = if scheme == "gs" {
                    Kind::Gcs { bucket, prefix }
                } else {
                    Kind::S3 { bucket, prefix }
                };
                Ok(Lake {
                    store,
                    kind,
                    shown,
                    manifests: Arc::default(),
                })
            }
            other => Err(invalid(&format!(
                "unsupported scheme `{other}://`: use a local folder, file:///PATH, \
                 gs://BUCKET/PREFIX or s3://BUCKET/PREFIX"
            ))),
        }
    }

    fn open_local(path: PathBuf, shown: String) -> Result<Lake, LakeError> {
        if path.as_os_str().is_empty() {
            return Err(LakeError::InvalidUrl {
                url: shown,
                reason: "the lake folder is empty: give a path, e.g. .orch/lake".to_owned(),
            });
        }
        let root = std::path::absolute(&path).map_err(|source| LakeError::CreateDir {
            path: path.clone(),
            source,
        })?;
        std::fs::create_dir_all(&root).map_err(|source| LakeError::CreateDir {
            path: root.clone(),
            source,
        })?;
        let root = root.canonicalize().map_err(|source| LakeError::CreateDir {
            path: root.clone(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| LakeError::Open {
            url: shown.clone(),
            message: e.to_string(),
        })?;
        Ok(Lake {
            store: Arc::new(store),
            kind: Kind::Local { root: root.clone() },
            shown: root.display().to_string(),
            manifests: Arc::default(),
        })
    }

    /// The lake's URL as shown to users (a local lake by its absolute folder), without
    /// credentials.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The local folder of a local lake.
    pub fn local_root(&self) -> Option<&FsPath> {
        match &self.kind {
            Kind::Local { root } => Some(root),
            _ => None,
        }
    }

    /// The full URI of `path` (relative to the lake's root) as other tools take it:
    /// `gs://bucket/prefix/path` for a BigQuery load job, `file:///...` for a local lake.
    pub fn uri(&self, path: &str) -> String {
        let join = |scheme: &str, bucket: &str, prefix: &str| {
            if prefix.is_empty() {
                format!("{scheme}://{bucket}/{path}")
            } else {
                format!("{scheme}://{bucket}/{prefix}/{path}")
            }
        };
        match &self.kind {
            Kind::Local { root } => url::Url::from_file_path(root.join(path))
                .map(String::from)
                .unwrap_or_else(|()| root.join(path).display().to_string()),
            Kind::Gcs { bucket, prefix } => join("gs", bucket, prefix),
            Kind::S3 { bucket, prefix } => join("s3", bucket, prefix),
        }
    }

    /// Writes `batches` of `topic` as one Parquet file
    /// `raw/{topic}/date=.../hour=.../{name}.parquet`, replacing a file of the same name. The
    /// batches must have the topic's schema and only rows of `hour` (by `ts`). Durable when it
    /// returns: on a local lake the file is written under a temporary name, synced, renamed and
    /// its folder synced; on an object store it is one upload.
    pub async fn write_parquet(
        &self,
        topic: Topic,
        hour: Hour,
        name: &FileName,
        batches: &[RecordBatch],
    ) -> Result<WrittenFile, LakeError> {
        let batches = batches.to_vec();
        let path = layout::raw_file(topic, hour, name);
        let name = name.clone();
        let file =
            tokio::task::spawn_blocking(move || EncodedFile::parquet(topic, hour, &name, &batches))
                .await
                .map_err(|e| LakeError::BadBatch {
                    path,
                    detail: join_failure("Parquet encoding", e),
                })??;
        self.put_file(&file).await
    }

    /// Puts an encoded file at its path, replacing a file of the same name; as durable as
    /// [`Lake::write_parquet`].
    pub async fn put_file(&self, file: &EncodedFile) -> Result<WrittenFile, LakeError> {
        self.put(&file.path, file.bytes.clone()).await?;
        Ok(WrittenFile {
            path: file.path.clone(),
            rows: file.rows,
            bytes: file.bytes.len() as u64,
        })
    }

    /// Writes dead letters of `topic` as one JSON Lines file
    /// `dlq/{topic}/date=.../hour=.../{name}.jsonl`, replacing a file of the same name; as
    /// durable as [`Lake::write_parquet`].
    pub async fn write_dead_letters(
        &self,
        topic: Topic,
        hour: Hour,
        name: &FileName,
        letters: &[DeadLetter],
    ) -> Result<WrittenFile, LakeError> {
        let file = EncodedFile::dead_letters(topic, hour, name, letters)?;
        self.put_file(&file).await
    }

    /// The hours of `topic` that have a folder in `raw/`, in order.
    pub async fn list_hours(&self, topic: Topic) -> Result<Vec<Hour>, LakeError> {
        self.hours_below(&layout::raw_topic_dir(topic)).await
    }

    /// The hours of `topic` that have a folder in `dlq/`, in order.
    pub async fn list_dead_letter_hours(&self, topic: Topic) -> Result<Vec<Hour>, LakeError> {
        self.hours_below(&layout::dlq_topic_dir(topic)).await
    }

    /// The days (UTC) that have a folder of `topic`'s raw files, sorted.
    pub async fn list_raw_days(&self, topic: Topic) -> Result<Vec<chrono::NaiveDate>, LakeError> {
        let listed = self.list_dir(&layout::raw_topic_dir(topic)).await?;
        let mut days: Vec<chrono::NaiveDate> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.strip_prefix("date=")?.parse().ok())
            .collect();
        days.sort();
        days.dedup();
        Ok(days)
    }

    /// The newest modification time of `topic`'s raw files in each hour of `day` (UTC), with
    /// one listing of the day's folder.
    pub async fn newest_raw_files_of_day(
        &self,
        topic: Topic,
        day: chrono::NaiveDate,
    ) -> Result<BTreeMap<Hour, DateTime<Utc>>, LakeError> {
        // A compaction's outputs stand for their inputs' time: compacting is not new data.
        Ok(self
            .visible_raw_files_of_day(topic, day)
            .await?
            .into_iter()
            .filter_map(|(hour, files)| Some((hour, files.iter().map(|(_, t)| *t).max()?)))
            .collect())
    }

    /// The Parquet files of one hour of `topic`, by path.
    pub async fn list_files(&self, topic: Topic, hour: Hour) -> Result<Vec<FileMeta>, LakeError> {
        self.files_in(&layout::raw_hour_dir(topic, hour), PARQUET_EXT)
            .await
    }

    /// The dead-letter files of one hour of `topic`, by path.
    pub async fn list_dead_letter_files(
        &self,
        topic: Topic,
        hour: Hour,
    ) -> Result<Vec<FileMeta>, LakeError> {
        self.files_in(&layout::dlq_hour_dir(topic, hour), JSONL_EXT)
            .await
    }

    /// Every row of one hour of `topic`: the batches of its files, in path order.
    pub async fn read_hour(&self, topic: Topic, hour: Hour) -> Result<Vec<RecordBatch>, LakeError> {
        let mut batches = Vec::new();
        for file in self.list_files(topic, hour).await? {
            batches.extend(self.read_parquet(&file.path).await?);
        }
        Ok(batches)
    }

    /// Every dead letter of one hour of `topic`, in path and line order.
    pub async fn read_dead_letters(
        &self,
        topic: Topic,
        hour: Hour,
    ) -> Result<Vec<DeadLetter>, LakeError> {
        let mut letters = Vec::new();
        for file in self.list_dead_letter_files(topic, hour).await? {
            let bytes = self.get(&file.path).await?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| self.corrupt(&file.path, "JSON Lines", e))?;
            letters.extend(
                parse_dead_letters(text).map_err(|e| self.corrupt(&file.path, "JSON Lines", e))?,
            );
        }
        Ok(letters)
    }

    /// The rows of one Parquet file, from its footer alone: one ranged read of the file's
    /// last [`FOOTER_READ`] bytes (a second one when the footer is larger), not the whole file.
    pub async fn parquet_rows(&self, path: &str) -> Result<u64, LakeError> {
        let location = Path::from(path);
        let read_err = |e| self.store_err("read", path, e);
        let tail = self
            .store
            .get_opts(
                &location,
                GetOptions {
                    range: Some(GetRange::Suffix(FOOTER_READ)),
                    ..GetOptions::default()
                },
            )
            .await
            .map_err(read_err)?;
        let size = tail.meta.size;
        let tail = tail.bytes().await.map_err(read_err)?;
        let corrupt = |what: String| self.corrupt(path, "Parquet", what);
        // A Parquet file ends with its metadata, the metadata's length (4 bytes, little
        // endian) and the magic `PAR1`.
        let n = tail.len();
        if n < 8 || &tail[n - 4..] != b"PAR1" {
            return Err(corrupt("no Parquet footer (PAR1) at the end".into()));
        }
        let len = u32::from_le_bytes([tail[n - 8], tail[n - 7], tail[n - 6], tail[n - 5]]) as u64;
        if len + 8 > size {
            return Err(corrupt(format!(
                "footer of {len} bytes in a file of {size}"
            )));
        }
        let metadata = if len + 8 <= n as u64 {
            tail.slice(n - 8 - len as usize..n - 8)
        } else {
            self.store
                .get_range(&location, size - 8 - len..size - 8)
                .await
                .map_err(read_err)?
        };
        let rows = ParquetMetaDataReader::decode_metadata(&metadata)
            .map_err(|e| corrupt(e.to_string()))?
            .file_metadata()
            .num_rows();
        Ok(rows.max(0) as u64)
    }

    /// The batches of one Parquet file (`path` relative to the lake's root).
    pub async fn read_parquet(&self, path: &str) -> Result<Vec<RecordBatch>, LakeError> {
        let bytes = self.get(path).await?;
        tokio::task::spawn_blocking(move || -> Result<Vec<RecordBatch>, String> {
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .map_err(|e| e.to_string())?
                .build()
                .map_err(|e| e.to_string())?;
            reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| join_failure("Parquet decoding", e))
        .and_then(|r| r)
        .map_err(|e| self.corrupt(path, "Parquet", e))
    }

    async fn hours_below(&self, topic_dir: &str) -> Result<Vec<Hour>, LakeError> {
        let mut hours = Vec::new();
        let dates = self.list_dir(topic_dir).await?;
        for date in dates.common_prefixes {
            let Some(date_name) = date.filename().map(str::to_owned) else {
                continue;
            };
            if !date_name.starts_with("date=") {
                continue;
            }
            let listed = self.list_dir(date.as_ref()).await?;
            hours.extend(
                listed
                    .common_prefixes
                    .iter()
                    .filter_map(|h| Hour::from_dirs(&date_name, h.filename()?)),
            );
        }
        hours.sort();
        hours.dedup();
        Ok(hours)
    }

    /// The files a reader sees in the hour folder `dir`: those with extension `ext`, less what
    /// compactions replaced (see [`crate::compact`]), by path.
    async fn files_in(&self, dir: &str, ext: &str) -> Result<Vec<FileMeta>, LakeError> {
        let objects = self.list_all(dir).await?;
        let view = self.hour_view(dir, ext, objects).await?;
        Ok(view.visible.into_iter().map(|(file, _)| file).collect())
    }

    async fn list_dir(&self, dir: &str) -> Result<object_store::ListResult, LakeError> {
        let prefix = Path::from(dir);
        match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(listed) => Ok(listed),
            Err(object_store::Error::NotFound { .. }) => Ok(object_store::ListResult {
                common_prefixes: Vec::new(),
                objects: Vec::new(),
            }),
            Err(e) => Err(self.store_err("list", &format!("{dir}/"), e)),
        }
    }

    /// The bytes of the file at `path` (relative to the lake's root).
    pub async fn get(&self, path: &str) -> Result<Bytes, LakeError> {
        let location = Path::from(path);
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|e| self.store_err("read", path, e))?;
        result
            .bytes()
            .await
            .map_err(|e| self.store_err("read", path, e))
    }

    pub(crate) async fn put(&self, path: &str, bytes: Bytes) -> Result<(), LakeError> {
        self.put_with(path, bytes, PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    /// Writes `bytes` at `path` only if nothing is there yet: `Ok(false)` when something was
    /// (another writer got there first). Atomic on every store: a hard link on a local lake, a
    /// generation precondition (`ifGenerationMatch=0`) on GCS, `If-None-Match` on S3.
    pub(crate) async fn put_new(&self, path: &str, bytes: Bytes) -> Result<bool, LakeError> {
        self.put_with(path, bytes, PutMode::Create).await
    }

    async fn put_with(&self, path: &str, bytes: Bytes, mode: PutMode) -> Result<bool, LakeError> {
        let location = Path::from(path);
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&location, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            Err(e) => return Err(self.store_err("write", path, e)),
        }
        if let Kind::Local { root } = &self.kind {
            // object_store wrote a temporary file and renamed (or linked) it; make both survive
            // a crash.
            let file = root.join(path);
            tokio::task::spawn_blocking(move || sync_file_and_dir(&file))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(join_failure("fsync", e))))
                .map_err(|e| LakeError::Store {
                    action: "sync",
                    path: path.to_owned(),
                    lake: self.shown.clone(),
                    message: e.to_string(),
                    hint: "",
                })?;
        }
        Ok(true)
    }

    /// Deletes the object at `path`; one that is not there is no error.
    pub(crate) async fn delete(&self, path: &str) -> Result<(), LakeError> {
        match self.store.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_err("delete", path, e)),
        }
    }

    /// Every object below `dir` (recursively), `[]` when there is none.
    pub(crate) async fn list_all(
        &self,
        dir: &str,
    ) -> Result<Vec<object_store::ObjectMeta>, LakeError> {
        use futures::TryStreamExt;
        let prefix = Path::from(dir);
        match self.store.list(Some(&prefix)).try_collect().await {
            Ok(objects) => Ok(objects),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.store_err("list", &format!("{dir}/"), e)),
        }
    }

    pub(crate) fn store_err(
        &self,
        action: &'static str,
        path: &str,
        e: object_store::Error,
    ) -> LakeError {
        let hint = match &self.kind {
            Kind::Local { .. } => "",
            Kind::Gcs { .. } => {
                " (check that the bucket exists and that the credentials may use it: \
                 GOOGLE_APPLICATION_CREDENTIALS, or STORAGE_EMULATOR_HOST for an emulator)"
            }
            Kind::S3 { .. } => {
                " (check that the bucket exists and the AWS_* credentials, region and endpoint)"
            }
        };
        LakeError::Store {
            action,
            path: path.to_owned(),
            lake: self.shown.clone(),
            message: error_chain(&e),
            hint,
        }
    }

    pub(crate) fn corrupt(
        &self,
        path: &str,
        format: &'static str,
        e: impl fmt::Display,
    ) -> LakeError {
        LakeError::Corrupt {
            path: path.to_owned(),
            lake: self.shown.clone(),
            format,
            message: e.to_string(),
        }
    }
}

/// An error and its causes on one line ("error sending request: ... Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string().trim().to_owned();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        let text = text.trim();
        if !text.is_empty() && !message.contains(text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

fn wrap<T: ObjectStore>(store: T, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

fn sync_file_and_dir(file: &FsPath) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Checks that `batches` fit `topic` and `hour`; returns their rows.
fn check_batches(
    topic: Topic,
    hour: Hour,
    path: &str,
    batches: &[RecordBatch],
) -> Result<usize, LakeError> {
    let schema = topic.schema();
    let bad = |detail: String| LakeError::BadBatch {
        path: path.to_owned(),
        detail,
    };
    let (start, end) = (
        hour.start().timestamp_millis(),
        hour.end().timestamp_millis(),
    );
    let mut rows = 0;
    for batch in batches {
        if batch.schema().fields() != schema.fields() {
            return Err(bad(format!(
                "the batch does not have the schema of {topic} (build it with \
                 orch_lake::BatchBuilder)"
            )));
        }
        let ts = batch
            .column_by_name(col::TS)
            .expect("the schema has ts")
            .as_primitive::<TimestampMillisecondType>();
        if let Some((row, &t)) = ts
            .values()
            .iter()
            .enumerate()
            .find(|(_, t)| !(start..end).contains(*t))
        {
            let shown = DateTime::<Utc>::from_timestamp_millis(t)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                .unwrap_or_else(|| t.to_string());
            return Err(bad(format!(
                "row {} has ts {shown}, outside the hour {hour} (split batches by event hour, \
                 e.g. with orch_lake::HourlyBatches)",
                rows + row
            )));
        }
        rows += batch.num_rows();
    }
    Ok(rows)
}

/// The batches as one Parquet file: zstd, row groups of [`ROW_GROUP_ROWS`], the topic in the
/// file's metadata.
pub(crate) fn encode_parquet(
    topic: Topic,
    batches: &[RecordBatch],
    zstd_level: i32,
) -> parquet::errors::Result<Bytes> {
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        topic.schema(),
        Some(writer_properties(topic, zstd_level)),
    )?;
    for batch in batches {
        writer.write(batch)?;
    }
    Ok(Bytes::from(writer.into_inner()?))
}

/// How the lake's Parquet files are written: zstd, row groups of [`ROW_GROUP_ROWS`], the topic
/// in the file's metadata.
pub(crate) fn writer_properties(topic: Topic, zstd_level: i32) -> WriterProperties {
    // zstd's levels are 1 to 22.
    let level = ZstdLevel::try_new(zstd_level.clamp(1, 22)).expect("a valid zstd level");
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "orch.lake.topic".to_owned(),
            topic.as_str().to_owned(),
        )]))
        .build()
}

/// `url` with any password and query replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Not a URL (a local path), or unparsable: hide what looks like credentials.
        return match (url.find("://"), url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
            }
            _ => url.to_owned(),
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        parsed.set_query(Some("***"));
    }
    parsed.to_string()
}

/// A blocking task that panicked (a foreign file that trips a decoder, say) or was cancelled,
/// as an error with context: the caller fails the one file, not the process.
pub(crate) fn join_failure(what: &str, e: tokio::task::JoinError) -> String {
    if e.is_panic() {
        let panic = e.into_panic();
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        format!("{what} panicked: {message}")
    } else {
        format!("{what} was cancelled")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_blocking_task_is_an_error_with_context() {
        let e = tokio::task::spawn_blocking(|| -> u8 { panic!("bad page header") })
            .await
            .unwrap_err();
        assert_eq!(
            join_failure("Parquet decoding", e),
            "Parquet decoding panicked: bad page header"
        );
    }

    #[tokio::test]
    async fn row_counts_read_footers_larger_than_one_read() {
        // Thousands of one-row groups: a footer far beyond FOOTER_READ.
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "n",
            arrow_schema::DataType::Int64,
            false,
        )]));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1))
            .build();
        let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).unwrap();
        let rows = 3_000;
        let column = arrow_array::Int64Array::from_iter_values(0..rows);
        writer
            .write(&RecordBatch::try_new(schema, vec![Arc::new(column)]).unwrap())
            .unwrap();
        let bytes = writer.into_inner().unwrap();
        let footer =
            u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
        assert!(u64::from(footer) > FOOTER_READ, "footer of {footer} bytes");

        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&dir.path().display().to_string()).unwrap();
        std::fs::write(dir.path().join("many-groups.parquet"), &bytes).unwrap();
        assert_eq!(
            lake.parquet_rows("many-groups.parquet").await.unwrap(),
            rows as u64
        );
    }

    #[test]
    fn parquet_files_are_zstd_with_bounded_row_groups() {
        let json = r#"{"ts":1795342500000,"sessionId":1,"level":"free","itemInSession":0,
            "city":"Austin","zip":"78701","state":"TX","lat":30.2,"lon":-97.7,"userAgent":"UA",
            "success":true}"#;
        let event = crate::decode(Topic::AuthEvents, json.as_bytes()).unwrap();
        let mut builder = crate::BatchBuilder::new(Topic::AuthEvents);
        let rows = ROW_GROUP_ROWS + 10;
        for i in 0..rows {
            let lineage = crate::Lineage::kafka(0, i as i64, Utc::now());
            builder.append(&event, &lineage).unwrap();
        }
        let bytes = encode_parquet(Topic::AuthEvents, &[builder.finish()], ZSTD_LEVEL).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), rows as i64);
        let groups: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, [ROW_GROUP_ROWS as i64, 10]);
        for column in meta.row_group(0).columns() {
            assert!(
                matches!(column.compression(), Compression::ZSTD(_)),
                "{:?}",
                column.compression()
            );
        }
        let kv = meta.file_metadata().key_value_metadata().unwrap();
        assert!(
            kv.iter()
                .any(|kv| kv.key == "orch.lake.topic" && kv.value.as_deref() == Some("auth_events"))
        );
        assert_eq!(
            reader.schema().fields(),
            Topic::AuthEvents.schema().fields()
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("gs://user:secret@bucket/lake"),
            "gs://user:***@bucket/lake"
        );
        assert_eq!(
            redact_url("s3://bucket/lake?access_key=AKIA&secret=x"),
            "s3://bucket/lake?***"
        );
        assert_eq!(redact_url("gs://bucket/lake"), "gs://bucket/lake");
        assert_eq!(redact_url(".orch/lake"), ".orch/lake");
        assert_eq!(redact_url("gs://us:er:pw@[bad/x"), "gs://***@[bad/x");
    }

    #[test]
    fn opening_checks_urls_without_showing_secrets() {
        let err = Lake::open("gs://user:secret@bucket/lake")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("credentials do not belong in the lake URL"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
        let err = Lake::open("gs:///lake").unwrap_err().to_string();
        assert!(err.contains("the bucket is missing"), "{err}");
        let err = Lake::open("gs://bucket/lake?token=abc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no query"), "{err}");
        assert!(!err.contains("abc"), "{err}");
        let err = Lake::open("http://example.com/lake")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported scheme `http://`"), "{err}");
        let err = Lake::open("gs://bucket/a/../b").unwrap_err().to_string();
        assert!(err.contains("may not contain"), "{err}");
        let err = Lake::open("").unwrap_err().to_string();
        assert!(err.contains("the lake folder is empty"), "{err}");
    }

    #[test]
    fn object_store_lakes_open_without_network() {
        let options = LakeOptions {
            endpoint: Some("127.0.0.1:1".to_owned()),
            retry_timeout: Some(Duration::from_secs(1)),
        };
        let lake = Lake::open_with("gs://bucket/some/prefix/", options.clone()).unwrap();
        assert_eq!(lake.url(), "gs://bucket/some/prefix/");
        assert_eq!(
            lake.uri("raw/auth_events/date=2026-11-22/hour=10/x.parquet"),
            "gs://bucket/some/prefix/raw/auth_events/date=2026-11-22/hour=10/x.parquet"
        );
        assert_eq!(lake.local_root(), None);
        let lake = Lake::open_with("gs://bucket", options.clone()).unwrap();
        assert_eq!(lake.uri("raw/x"), "gs://bucket/raw/x");
        let lake = Lake::open_with(
            "s3://bucket/lake",
            LakeOptions {
                endpoint: Some("http://127.0.0.1:1".to_owned()),
                ..options
            },
        )
        .unwrap();
        assert_eq!(lake.uri("dlq/x"), "s3://bucket/lake/dlq/x");
        assert_eq!(format!("{lake:?}"), "Lake { url: \"s3://bucket/lake\" }");
    }

    #[test]
    fn local_lakes_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b/lake");
        let lake = Lake::open(root.to_str().unwrap()).unwrap();
        assert!(root.is_dir());
        let canonical = root.canonicalize().unwrap();
        assert_eq!(lake.local_root(), Some(canonical.as_path()));
        assert_eq!(lake.url(), canonical.display().to_string());
        let url = format!("file://{}", canonical.display());
        let same = Lake::open(&url).unwrap();
        assert_eq!(same.local_root(), Some(canonical.as_path()));
        assert_eq!(
            same.uri("raw/x.parquet"),
            format!("file://{}/raw/x.parquet", canonical.display())
        );
        let err = Lake::open("file://relative/lake").unwrap_err().to_string();
        assert!(err.contains("absolute path"), "{err}");
        // A file where the folder should be.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = Lake::open(file.join("lake").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot create the lake folder"), "{err}");
    }
}
