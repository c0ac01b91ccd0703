//! A closed batch into the lake, exactly once: encode its files (one Parquet file per event
//! hour, one dead-letter file per hour of dead letters, each named from the partition and the
//! offsets it holds), commit them in the partition's log (see [`orch_lake::commit`]), then put
//! them. A fenced commit puts nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use orch_lake::{
    CommitEntry, CommitOutcome, DeadLetter, EncodedFile, FileName, Hour, Lake, LakeError,
    LoggedFile, STREAMING_ZSTD_LEVEL, WrittenFile,
};

use crate::buffer::Flush;
use crate::error::StreamError;
use crate::faults::Faults;
use crate::metrics::Metrics;

/// The `_source` of rows read from Kafka, the first part of their files' names, and the folder
/// of their commit logs.
pub const SOURCE: &str = "kafka";

/// The files of `flush`, encoded (CPU work: run it on a blocking thread). A file holds exactly
/// the records of the partition between the offsets in its name whose event hour is its hour,
/// so encoding the same offsets again gives the same names and the same rows.
pub fn encode_flush(flush: &Flush) -> Result<Vec<EncodedFile>, LakeError> {
    let mut files = Vec::with_capacity(flush.hours.len() + 1);
    for hour in &flush.hours {
        let (Some(first), Some(last)) = (hour.min_offset, hour.max_offset) else {
            continue;
        };
        let name = FileName::kafka(SOURCE, flush.partition, first, last)?;
        files.push(EncodedFile::parquet_at(
            flush.topic,
            hour.hour,
            &name,
            std::slice::from_ref(&hour.batch),
            STREAMING_ZSTD_LEVEL,
        )?);
    }
    let mut by_hour: BTreeMap<Hour, Vec<DeadLetter>> = BTreeMap::new();
    for letter in &flush.dead_letters {
        by_hour
            .entry(letter.hour())
            .or_default()
            .push(letter.clone());
    }
    for (hour, letters) in by_hour {
        let offsets = letters.iter().filter_map(|l| l.offset);
        let (first, last) = (
            offsets.clone().min().unwrap_or(flush.first_offset),
            offsets.max().unwrap_or(flush.last_offset),
        );
        let name = FileName::kafka(SOURCE, flush.partition, first, last)?;
        files.push(EncodedFile::dead_letters(
            flush.topic,
            hour,
            &name,
            &letters,
        )?);
    }
    Ok(files)
}

/// What became of a batch.
#[derive(Debug)]
pub(crate) enum Written {
    /// Committed as `entry` and its files put.
    Committed(CommitEntry, Vec<WrittenFile>),
    /// The files of an entry another writer committed but did not put, put again.
    Redone(CommitEntry, Vec<WrittenFile>),
    /// Another writer holds this place of the log: nothing was put.
    Fenced,
}

/// How a batch is written: by whom, retried for how long, with which faults (tests).
#[derive(Clone)]
pub(crate) struct WriteSettings {
    pub lake: Lake,
    pub writer: String,
    pub retry_for: Duration,
    pub metrics: Metrics,
    pub faults: Faults,
}

/// Encodes, commits as place `seq` of its partition's log and puts `flush`; or, with `redo`,
/// puts the files of that already committed entry again from the same offsets.
pub(crate) async fn write(
    settings: &WriteSettings,
    flush: Flush,
    seq: u64,
    redo: Option<CommitEntry>,
) -> Result<(Flush, Written, Instant), StreamError> {
    let started = Instant::now();
    let what = format!(
        "encoding {} partition {} offsets {}..={}",
        flush.topic, flush.partition, flush.first_offset, flush.last_offset
    );
    let (flush, files) = tokio::task::spawn_blocking(move || {
        let files = encode_flush(&flush);
        (flush, files)
    })
    .await
    .map_err(|e| StreamError::task(&what, e))?;
    let failed = |flush: &Flush, attempts, source| StreamError::Lake {
        topic: flush.topic.as_str().to_owned(),
        partition: flush.partition,
        first: flush.first_offset,
        last: flush.last_offset,
        attempts,
        source: Box::new(source),
    };
    let files = files.map_err(|e| failed(&flush, 1, e))?;
    let entry = match redo {
        Some(entry) => {
            let files: Vec<EncodedFile> = files
                .into_iter()
                .filter(|f| {
                    let logged = entry.files.iter().any(|l| l.path == f.path);
                    if !logged {
                        tracing::warn!(path = %f.path, seq = entry.seq, "a file of the redone offsets that the log does not name (records missing from the partition?): not written");
                    }
                    logged
                })
                .collect();
            let (written, done) = put_all(settings, &files, &flush, started, None)
                .await
                .map_err(|(attempts, e)| failed(&flush, attempts, e))?;
            return Ok((flush, Written::Redone(entry, written), done));
        }
        None => CommitEntry {
            seq,
            topic: flush.topic,
            partition: flush.partition,
            first_offset: flush.first_offset,
            last_offset: flush.last_offset,
            files: files
                .iter()
                .map(|f| LoggedFile {
                    path: f.path.clone(),
                    rows: f.rows,
                })
                .collect(),
            writer: settings.writer.clone(),
            committed_at: Utc::now(),
        },
    };
    let committed = retry(settings, &flush, started, || {
        settings.lake.log_commit(SOURCE, &entry)
    })
    .await;
    match committed.map_err(|(attempts, e)| failed(&flush, attempts, e))? {
        CommitOutcome::Committed => {}
        CommitOutcome::Fenced => return Ok((flush, Written::Fenced, Instant::now())),
    }
    let crash = settings.faults.crash_point(files.len());
    let (written, done) = put_all(settings, &files, &flush, started, crash)
        .await
        .map_err(|(attempts, e)| failed(&flush, attempts, e))?;
    Ok((flush, Written::Committed(entry, written), done))
}

async fn put_all(
    settings: &WriteSettings,
    files: &[EncodedFile],
    flush: &Flush,
    started: Instant,
    crash: Option<usize>,
) -> Result<(Vec<WrittenFile>, Instant), (u32, LakeError)> {
    let mut written = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        if crash == Some(i) {
            Faults::crash("after the commit, before putting every file");
        }
        written.push(
            retry(settings, flush, started, || async {
                settings.faults.put_error(&file.path)?;
                settings.lake.put_file(file).await
            })
            .await?,
        );
    }
    if crash == Some(files.len()) {
        Faults::crash("after putting every file, before the offset commit");
    }
    let done = Instant::now();
    settings
        .metrics
        .batch_write_seconds
        .observe(done.duration_since(started).as_secs_f64());
    Ok((written, done))
}

/// Runs `op` until it succeeds, with backoff, for up to `settings.retry_for` since `started`.
async fn retry<T, F, Fut>(
    settings: &WriteSettings,
    flush: &Flush,
    started: Instant,
    mut op: F,
) -> Result<T, (u32, LakeError)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LakeError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                settings.metrics.write_errors.inc();
                tracing::warn!(
                    %error,
                    topic = flush.topic.as_str(),
                    partition = flush.partition,
                    first = flush.first_offset,
                    last = flush.last_offset,
                    attempts,
                    "cannot write a batch to the lake; retrying"
                );
                if started.elapsed() + delay > settings.retry_for {
                    return Err((attempts, error));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
