//! The commit log of one Kafka partition, kept in the lake: how the streaming workers put each
//! record into the lake exactly once, whatever happens to them.
//!
//! ```text
//! _log/{source}/{topic}/p{partition}/{seq:020}.json    one entry per batch, created once
//! ```
//!
//! An entry says: "offsets `first_offset..=last_offset` of this partition are in the lake, as
//! these files". Entries form a chain: entry `seq + 1` starts where entry `seq` ended, and is
//! created with a create-only put ([`Lake::log_commit`]), so of two writers that both read
//! `seq` as the head, one commits and the other is *fenced*: it drops its batch and reads the
//! head again. The log, not Kafka's committed offset, says where a partition's next batch
//! starts; Kafka's offset is committed after, for lag and tools.
//!
//! A worker writes a batch in this order: encode its files, commit the entry (the commit
//! point), then put the files. Only committed files are ever put, so a zombie (a worker paused
//! past its session timeout, still holding a batch) never leaves a file behind: its commit
//! fails. A crash between the commit and the puts leaves an entry whose files are missing; the
//! partition's next owner finds it at the head ([`Lake::log_missing_files`]) and writes those
//! files again from the same offsets. File names and contents are a pure function of the
//! offsets (the records of the partition in that range whose event hour is the file's hour),
//! so writing a file again, by anyone, replaces it with the same rows.
//!
//! Entries below the last [`KEEP`] are deleted. A zombie whose stale head was deleted can
//! create that old slot again; it then sees newer entries above it and gives up, and readers
//! of the log only ever take the highest entry.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::LakeError;
use crate::store::Lake;
use crate::topic::Topic;

/// The lake's folder of commit logs.
pub const LOG: &str = "_log";

/// Entries kept per partition (older ones are deleted).
pub const KEEP: u64 = 16;

/// A file a commit put in the lake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedFile {
    /// Its path relative to the lake's root.
    pub path: String,
    pub rows: usize,
}

/// One committed batch of a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitEntry {
    /// Its place in the partition's chain, from 1.
    pub seq: u64,
    pub topic: Topic,
    pub partition: i32,
    /// The batch's offsets: every record of the partition in this range is in `files`.
    pub first_offset: i64,
    pub last_offset: i64,
    pub files: Vec<LoggedFile>,
    /// Who committed it (a worker id), for people reading the log.
    pub writer: String,
    pub committed_at: DateTime<Utc>,
}

impl CommitEntry {
    /// Where the partition's next batch starts.
    pub fn next_offset(&self) -> i64 {
        self.last_offset + 1
    }
}

/// What became of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The entry is the partition's head: put its files.
    Committed,
    /// Another writer committed this place in the chain (or a later one): read the head again.
    Fenced,
}

/// `_log/{source}/{topic}/p{partition}`.
pub fn log_dir(source: &str, topic: Topic, partition: i32) -> String {
    format!("{LOG}/{source}/{topic}/p{partition}")
}

fn entry_path(dir: &str, seq: u64) -> String {
    format!("{dir}/{seq:020}.json")
}

fn seq_of(path: &str) -> Option<u64> {
    path.rsplit('/').next()?.strip_suffix(".json")?.parse().ok()
}

impl Lake {
    /// The last committed entry of a partition's log, `None` when the log is empty. Also
    /// deletes entries below the last [`KEEP`] (best effort).
    pub async fn log_head(
        &self,
        source: &str,
        topic: Topic,
        partition: i32,
    ) -> Result<Option<CommitEntry>, LakeError> {
        let dir = log_dir(source, topic, partition);
        let mut seqs: Vec<u64> = self
            .list_all(&dir)
            .await?
            .iter()
            .filter_map(|m| seq_of(m.location.as_ref()))
            .collect();
        seqs.sort_unstable();
        let Some(&head) = seqs.last() else {
            return Ok(None);
        };
        let path = entry_path(&dir, head);
        let bytes = self.get(&path).await?;
        let entry: CommitEntry =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt(&path, "commit log", e))?;
        for old in seqs.iter().filter(|s| **s + KEEP <= head) {
            let _ = self.delete(&entry_path(&dir, *old)).await;
        }
        Ok(Some(entry))
    }

    /// Commits `entry` as the next place of its partition's chain: created only if that place
    /// is free, and only then the head (no later entry exists).
    pub async fn log_commit(
        &self,
        source: &str,
        entry: &CommitEntry,
    ) -> Result<CommitOutcome, LakeError> {
        use futures::TryStreamExt;
        let dir = log_dir(source, entry.topic, entry.partition);
        let path = entry_path(&dir, entry.seq);
        let json = serde_json::to_vec(entry).expect("log entries serialize");
        if !self.put_new(&path, Bytes::from(json)).await? {
            return Ok(CommitOutcome::Fenced);
        }
        // A place can be free because it was deleted long ago (a zombie's stale head): then
        // later entries exist above it.
        let prefix = object_store::path::Path::from(dir.as_str());
        let offset = object_store::path::Path::from(path.as_str());
        let later: Vec<object_store::ObjectMeta> = match self
            .store
            .list_with_offset(Some(&prefix), &offset)
            .try_collect()
            .await
        {
            Ok(later) => later,
            Err(e) => return Err(self.store_err("list", &format!("{dir}/"), e)),
        };
        if later
            .iter()
            .any(|m| seq_of(m.location.as_ref()).is_some_and(|s| s > entry.seq))
        {
            return Ok(CommitOutcome::Fenced);
        }
        if entry.seq > KEEP {
            let _ = self.delete(&entry_path(&dir, entry.seq - KEEP)).await;
        }
        Ok(CommitOutcome::Committed)
    }

    /// The files of `entry` that are not in the lake for readers (see [`Lake::is_in_lake`]):
    /// a writer stopped between its commit and its puts. The partition's next owner writes
    /// them again from the entry's offsets.
    pub async fn log_missing_files(&self, entry: &CommitEntry) -> Result<Vec<String>, LakeError> {
        let mut missing = Vec::new();
        for file in &entry.files {
            if !self.is_in_lake(&file.path).await? {
                missing.push(file.path.clone());
            }
        }
        Ok(missing)
    }
}
