//! The lake's commit logs (exactly-once files for the streaming workers) and hour compaction,
//! on a local folder and on GCS through fake-gcs-server: fencing of a second writer and of a
//! zombie, missing files found, racing compactors, late files after a compaction, and staging
//! loads while an hour is compacted.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use orch_lake::arrow_array::cast::AsArray;
use orch_lake::arrow_array::types::Int64Type;
use orch_lake::{
    CommitEntry, CommitOutcome, Compacted, CompactionOptions, FileName, Hour, Lake, LoggedFile,
    Topic, col,
};

use orch_lake::arrow_array::RecordBatch;
use orch_lake::{BatchBuilder, Lineage, decode};

use crate::lake::{TestLake, event_json, gcs_lake, hour, kafka_batch, local_lake, rows};

/// Events `first..first + n` of `TOPIC` in `hour` (distinct ids and times), at Kafka partition
/// `partition` offsets `first..first + n`.
fn distinct_batch(h: Hour, n: usize, partition: i32, first: i64) -> RecordBatch {
    let mut builder = BatchBuilder::new(TOPIC);
    for i in first as usize..first as usize + n {
        let event = decode(TOPIC, event_json(TOPIC, h, i).as_bytes()).unwrap();
        builder
            .append(&event, &Lineage::kafka(partition, i as i64, Utc::now()))
            .unwrap();
    }
    builder.finish()
}

const TOPIC: Topic = Topic::ListenEvents;

fn entry(seq: u64, first: i64, last: i64, files: &[&str]) -> CommitEntry {
    CommitEntry {
        seq,
        topic: TOPIC,
        partition: 3,
        first_offset: first,
        last_offset: last,
        files: files
            .iter()
            .map(|p| LoggedFile {
                path: (*p).to_owned(),
                rows: 1,
            })
            .collect(),
        writer: "test".into(),
        committed_at: Utc::now(),
    }
}

/// Two writers that read the same head: one commits, the other is fenced. A zombie whose
/// stale place was deleted long ago is fenced too. The head is the last entry.
async fn commits_are_fenced(t: &TestLake) {
    let lake = &t.lake;
    assert_eq!(lake.log_head("kafka", TOPIC, 3).await.unwrap(), None);
    let first = entry(1, 0, 9, &[]);
    assert_eq!(
        lake.log_commit("kafka", &first).await.unwrap(),
        CommitOutcome::Committed
    );
    let rival = entry(1, 0, 14, &[]);
    assert_eq!(
        lake.log_commit("kafka", &rival).await.unwrap(),
        CommitOutcome::Fenced
    );
    assert_eq!(lake.log_head("kafka", TOPIC, 3).await.unwrap(), Some(first));
    // Forty more batches: the oldest entries are deleted.
    for seq in 2..=41 {
        let e = entry(seq, seq as i64 * 10, seq as i64 * 10 + 9, &[]);
        assert_eq!(
            lake.log_commit("kafka", &e).await.unwrap(),
            CommitOutcome::Committed
        );
    }
    let head = lake.log_head("kafka", TOPIC, 3).await.unwrap().unwrap();
    assert_eq!((head.seq, head.next_offset()), (41, 420));
    // A zombie that read seq 2 as the head before its pause: seq 3 was deleted, its create
    // succeeds, and it sees the later entries.
    let zombie = entry(3, 30, 39, &[]);
    assert_eq!(
        lake.log_commit("kafka", &zombie).await.unwrap(),
        CommitOutcome::Fenced
    );
    assert_eq!(
        lake.log_head("kafka", TOPIC, 3).await.unwrap().unwrap().seq,
        41
    );
}

/// Files an entry names and nobody wrote are missing; written, or compacted away, they are not.
async fn missing_files_are_found(t: &TestLake) {
    let lake = &t.lake;
    let h = hour("2026-11-22-10:00");
    let (a, b) = (
        FileName::kafka("kafka", 3, 0, 9).unwrap(),
        FileName::kafka("kafka", 3, 10, 19).unwrap(),
    );
    let path = |n: &FileName| orch_lake::layout::raw_file(TOPIC, h, n);
    let e = entry(1, 0, 19, &[&path(&a), &path(&b)]);
    assert_eq!(
        lake.log_missing_files(&e).await.unwrap(),
        [path(&a), path(&b)]
    );
    lake.write_parquet(TOPIC, h, &a, &[kafka_batch(TOPIC, h, 10, 3, 0)])
        .await
        .unwrap();
    assert_eq!(lake.log_missing_files(&e).await.unwrap(), [path(&b)]);
    lake.write_parquet(TOPIC, h, &b, &[kafka_batch(TOPIC, h, 10, 3, 10)])
        .await
        .unwrap();
    assert!(lake.log_missing_files(&e).await.unwrap().is_empty());
    // Compacted, with no grace: the inputs are gone, and still in the lake for readers.
    let options = CompactionOptions {
        grace: Duration::ZERO,
        ..CompactionOptions::default()
    };
    assert!(matches!(
        lake.compact_hour(TOPIC, h, options).await.unwrap(),
        Compacted::Done {
            inputs: 2,
            outputs: 1,
            rows: 20,
            ..
        }
    ));
    // The next pass removes the replaced inputs (no grace): still in the lake for readers.
    lake.compact_hour(TOPIC, h, options).await.unwrap();
    assert!(lake.get(&path(&a)).await.is_err(), "the input was removed");
    assert!(lake.is_in_lake(&path(&a)).await.unwrap());
    assert!(lake.log_missing_files(&e).await.unwrap().is_empty());
}

/// The offsets of every row of `hour`, with how often each is there.
async fn offsets(lake: &Lake, h: Hour) -> BTreeMap<i64, usize> {
    let mut seen = BTreeMap::new();
    for batch in lake.read_hour(TOPIC, h).await.unwrap() {
        let column = batch
            .column_by_name(col::SOURCE_OFFSET)
            .unwrap()
            .as_primitive::<Int64Type>();
        for offset in column.values() {
            *seen.entry(*offset).or_insert(0) += 1;
        }
    }
    seen
}

/// Small files become one; two compactors racing for an hour leave it whole; a late file
/// after the compaction is read beside its output and compacted in by the next one; a file of
/// a compacted hour written again adds nothing; newest times do not move.
async fn compaction(t: &TestLake) {
    let lake = &t.lake;
    let h = hour("2026-11-22-12:00");
    for i in 0..10 {
        let name = FileName::kafka("kafka", 3, i * 10, i * 10 + 9).unwrap();
        lake.write_parquet(TOPIC, h, &name, &[kafka_batch(TOPIC, h, 10, 3, i * 10)])
            .await
            .unwrap();
    }
    let day = h.start().date_naive();
    let newest = lake.newest_raw_files_of_day(TOPIC, day).await.unwrap()[&h];
    let options = CompactionOptions::default();
    assert_eq!(
        lake.hours_to_compact(TOPIC, &[day], Duration::from_secs(3600), options)
            .await
            .unwrap(),
        Vec::<Hour>::new(),
        "not closed yet"
    );
    assert_eq!(
        lake.hours_to_compact(TOPIC, &[day], Duration::ZERO, options)
            .await
            .unwrap(),
        [h]
    );
    // Two compactors at once: one generation, every row once.
    let (x, y) = tokio::join!(
        lake.compact_hour(TOPIC, h, options),
        lake.compact_hour(TOPIC, h, options)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let done = [&x, &y]
        .iter()
        .filter(|c| matches!(c, Compacted::Done { .. }))
        .count();
    assert!(done >= 1, "{x:?} {y:?}");
    let files = lake.list_files(TOPIC, h).await.unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let seen = offsets(lake, h).await;
    assert_eq!(seen.len(), 100);
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert_eq!(
        lake.newest_raw_files_of_day(TOPIC, day).await.unwrap()[&h],
        newest,
        "compaction is not new data"
    );
    // A file of the compacted hour written again (a worker redoing a batch): nothing more.
    let again = FileName::kafka("kafka", 3, 20, 29).unwrap();
    lake.write_parquet(TOPIC, h, &again, &[kafka_batch(TOPIC, h, 10, 3, 20)])
        .await
        .unwrap();
    assert_eq!(offsets(lake, h).await.len(), 100);
    assert_eq!(rows(&lake.read_hour(TOPIC, h).await.unwrap()), 100);
    // A late file: read beside the output, and taken in by the next compaction. (A second
    // later: stores keep modification times to the second.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = FileName::kafka("kafka", 3, 100, 104).unwrap();
    lake.write_parquet(TOPIC, h, &late, &[kafka_batch(TOPIC, h, 5, 3, 100)])
        .await
        .unwrap();
    assert_eq!(rows(&lake.read_hour(TOPIC, h).await.unwrap()), 105);
    assert!(lake.newest_raw_files_of_day(TOPIC, day).await.unwrap()[&h] > newest);
    assert!(matches!(
        lake.compact_hour(TOPIC, h, options).await.unwrap(),
        Compacted::Done {
            inputs: 2,
            outputs: 1,
            rows: 105,
            ..
        }
    ));
    assert_eq!(lake.list_files(TOPIC, h).await.unwrap().len(), 1);
    let seen = offsets(lake, h).await;
    assert_eq!(seen.len(), 105);
    assert!(seen.values().all(|n| *n == 1));
    assert_eq!(
        lake.compact_hour(TOPIC, h, options).await.unwrap(),
        Compacted::Nothing
    );
}

/// Staging loads of an hour while it is compacted, again and again: every load has every
/// row once.
async fn loads_during_compaction(t: &TestLake) {
    use orch_warehouse::Warehouse;
    let lake = t.lake.clone();
    let h = hour("2026-11-22-13:00");
    let mut next = 0;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = orch_warehouse::DuckDbWarehouse::new(dir.path().join("w.duckdb"));
    for round in 0..4 {
        for _ in 0..6 {
            let name = FileName::kafka("kafka", 1, next, next + 19).unwrap();
            lake.write_parquet(TOPIC, h, &name, &[distinct_batch(h, 20, 1, next)])
                .await
                .unwrap();
            next += 20;
        }
        let compactor = {
            let lake = lake.clone();
            tokio::spawn(async move {
                let options = CompactionOptions {
                    grace: Duration::from_secs(30),
                    ..CompactionOptions::default()
                };
                lake.compact_hour(TOPIC, h, options).await
            })
        };
        let mut loads = 0;
        while !compactor.is_finished() || loads < 2 {
            let report = warehouse.load_hour(&lake, TOPIC, h).await.unwrap();
            assert_eq!(report.rows, next as u64, "round {round}, load {loads}");
            loads += 1;
        }
        compactor.await.unwrap().unwrap();
    }
    assert_eq!(lake.list_files(TOPIC, h).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn local_commits_are_fenced() {
    commits_are_fenced(&local_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_commits_are_fenced() {
    commits_are_fenced(&gcs_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_missing_files_are_found() {
    missing_files_are_found(&local_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_missing_files_are_found() {
    missing_files_are_found(&gcs_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_compaction() {
    compaction(&local_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_compaction() {
    compaction(&gcs_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_loads_during_compaction() {
    loads_during_compaction(&local_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_loads_during_compaction() {
    loads_during_compaction(&gcs_lake()).await;
}
