//! `BigQueryWarehouse` against [`FakeBigQuery`] (BigQuery's REST API, checked request by
//! request) and a `gs://` lake on the real fake-gcs-server (installed by
//! `scripts/ensure-fake-gcs-server`, started here in memory on a free port).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orch_lake::{BatchBuilder, FileName, LakeOptions, Lineage, decode};
use serde_json::json;

use super::fake_api::{Canned, FakeBigQuery, TOKEN};
use super::*;

const PROJECT: &str = "orch-test-project";
const BUCKET: &str = "orch-bq-test";
/// 2026-11-22 10:00 UTC.
const HOUR_MS: i64 = 1_795_341_600_000;

fn hour() -> Hour {
    Hour::from_ts_ms(HOUR_MS).unwrap()
}

// ---------------------------------------------------------------------------------------------
// fake-gcs-server

struct FakeGcs {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fake_gcs_binary() -> PathBuf {
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
    panic!(
        "fake-gcs-server is not installed, and the BigQuery load tests read a gs:// lake on it. \
         Install it with `scripts/ensure-fake-gcs-server` (scripts/test does), or set \
         ORCH_FAKE_GCS_SERVER to a fake-gcs-server binary."
    );
}

async fn start_fake_gcs() -> FakeGcs {
    let binary = fake_gcs_binary();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join(BUCKET)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let child = Command::new(&binary)
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
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let gcs = FakeGcs {
        child,
        endpoint,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let http = reqwest::Client::new();
    loop {
        let up = http
            .get(format!("{}/storage/v1/b", gcs.endpoint))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return gcs;
        }
        assert!(
            Instant::now() < deadline,
            "fake-gcs-server did not answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes a lake file through the emulator's JSON API.
async fn delete_object(gcs: &FakeGcs, lake: &Lake, path: &str) {
    let object = lake.uri(path);
    let object = object
        .strip_prefix(&format!("gs://{BUCKET}/"))
        .unwrap()
        .replace('/', "%2F");
    let status = reqwest::Client::new()
        .delete(format!("{}/storage/v1/b/{BUCKET}/o/{object}", gcs.endpoint))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "delete {path}: {status}");
}

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Setup {
    gcs: FakeGcs,
    lake: Lake,
    fake: FakeBigQuery,
    wh: BigQueryWarehouse,
}

fn config(fake: &FakeBigQuery) -> BigQueryConfig {
    let mut config = BigQueryConfig::new(PROJECT);
    config.location = Some("EU".into());
    config.credentials = Credentials::AccessToken(TOKEN.into());
    config.endpoint = Some(fake.endpoint.clone());
    config.poll_interval = Duration::from_millis(10);
    config
}

async fn setup() -> Setup {
    let gcs = start_fake_gcs().await;
    let lake = Lake::open_with(
        &format!("gs://{BUCKET}/team/lake"),
        LakeOptions {
            endpoint: Some(gcs.endpoint.clone()),
            retry_timeout: Some(Duration::from_secs(20)),
        },
    )
    .unwrap();
    let fake = FakeBigQuery::start(PROJECT, Some(lake.clone())).await;
    let wh = BigQueryWarehouse::new(config(&fake));
    Setup {
        gcs,
        lake,
        fake,
        wh,
    }
}

fn listen(ts: i64, song: &str) -> orch_lake::Event {
    let json = format!(
        r#"{{"ts":{ts},"sessionId":5,"level":"free","itemInSession":2,"city":"Austin","zip":"78701","state":"TX","lat":30.27,"lon":-97.74,"userAgent":"UA","userId":7,"firstName":"Ada","lastName":"L","gender":"F","registration":1700000000000,"auth":"Logged In","artist":"A","song":"{song}","duration":200.5}}"#
    );
    decode(Topic::ListenEvents, json.as_bytes()).unwrap()
}

/// Kafka-sourced listens at `offsets` of partition 0, as one file of the hour.
async fn write_kafka(lake: &Lake, offsets: std::ops::RangeInclusive<i64>) {
    let now = DateTime::<Utc>::from_timestamp_millis(HOUR_MS + 3_600_000).unwrap();
    let mut b = BatchBuilder::new(Topic::ListenEvents);
    for offset in offsets.clone() {
        let e = listen(HOUR_MS + offset * 1000, &format!("S{offset}"));
        b.append(&e, &Lineage::kafka(0, offset, now)).unwrap();
    }
    let name = FileName::kafka("kafka", 0, *offsets.start(), *offsets.end()).unwrap();
    lake.write_parquet(Topic::ListenEvents, hour(), &name, &[b.finish()])
        .await
        .unwrap();
}

fn load_jobs(fake: &FakeBigQuery) -> Vec<serde_json::Value> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/jobs"))
        .map(|r| r.body)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Loads

#[tokio::test]
async fn a_load_sends_the_documented_job_and_reports_its_rows() {
    let s = setup().await;
    write_kafka(&s.lake, 0..=9).await;
    write_kafka(&s.lake, 10..=14).await;
    let files = s
        .lake
        .list_files(Topic::ListenEvents, hour())
        .await
        .unwrap();
    assert_eq!(files.len(), 2);

    let report =
        s.wh.load_hour(&s.lake, Topic::ListenEvents, hour())
            .await
            .unwrap();
    assert_eq!(s.fake.problems(), Vec::<String>::new());
    assert_eq!(report.table.to_string(), "raw.listen_events");
    assert_eq!(report.hour, "2026-11-22-10:00");
    assert_eq!(
        (
            report.files,
            report.rows,
            report.duplicates,
            report.replaced
        ),
        (2, 15, 0, 0)
    );
    assert_eq!(report.bytes, files.iter().map(|f| f.size).sum::<u64>());

    // The calls, in order: the table is missing, so its dataset and the table are made first.
    let calls: Vec<String> = s
        .fake
        .requests()
        .iter()
        .map(|r| {
            let mut call = format!("{} {}", r.method, r.path);
            if let Some(location) = r.query.get("location") {
                call.push_str(&format!("?location={location}"));
            }
            call
        })
        .collect();
    let base = format!("/bigquery/v2/projects/{PROJECT}");
    let job = load_jobs(&s.fake).remove(0);
    let job_id = job["jobReference"]["jobId"].as_str().unwrap().to_owned();
    assert!(
        job_id.starts_with("orch_load_listen_events_2026112210_"),
        "{job_id}"
    );
    assert_eq!(
        calls,
        vec![
            format!("GET {base}/datasets/raw/tables/listen_events"),
            format!("GET {base}/datasets/raw"),
            format!("POST {base}/datasets"),
            format!("POST {base}/datasets/raw/tables"),
            format!("POST {base}/jobs"),
            format!("GET {base}/jobs/{job_id}?location=EU"),
            format!("GET {base}/jobs/{job_id}?location=EU"),
        ]
    );

    let uris: Vec<String> = files.iter().map(|f| s.lake.uri(&f.path)).collect();
    assert!(uris.iter().all(|u| {
        u.starts_with("gs://orch-bq-test/team/lake/raw/listen_events/date=2026-11-22/hour=10/")
    }));
    let load = &job["configuration"]["load"];
    assert_eq!(job["jobReference"]["projectId"], PROJECT);
    assert_eq!(job["jobReference"]["location"], "EU");
    assert_eq!(load["sourceUris"], json!(uris));
    assert_eq!(load["sourceFormat"], "PARQUET");
    assert_eq!(
        load["destinationTable"],
        json!({"projectId": PROJECT, "datasetId": "raw", "tableId": "listen_events$2026112210"})
    );
    assert_eq!(load["writeDisposition"], "WRITE_TRUNCATE");
    assert_eq!(load["createDisposition"], "CREATE_IF_NEEDED");
    assert_eq!(
        load["timePartitioning"],
        json!({"type": "HOUR", "field": "ts"})
    );
    let fields = load["schema"]["fields"].as_array().unwrap();
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no field {name}"))
            .clone()
    };
    assert_eq!(
        field("ts"),
        json!({"name": "ts", "type": "TIMESTAMP", "mode": "REQUIRED"})
    );
    assert_eq!(field("sessionId")["type"], "INTEGER");
    assert_eq!(field("lat")["type"], "FLOAT");
    assert_eq!(field("song")["type"], "STRING");
    assert_eq!(field("userId")["mode"], "NULLABLE");
    assert_eq!(field("registration")["type"], "TIMESTAMP");
    assert_eq!(field("_ingested_at")["type"], "TIMESTAMP");
    assert_eq!(fields.len(), Topic::ListenEvents.schema().fields().len());

    // The table made before the load has the same schema and partitioning.
    let table = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/tables"))
        .unwrap()
        .body;
    assert_eq!(table["schema"], load["schema"]);
    assert_eq!(table["timePartitioning"], load["timePartitioning"]);
    let dataset = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/datasets"))
        .unwrap()
        .body;
    assert_eq!(
        dataset,
        json!({"datasetReference": {"projectId": PROJECT, "datasetId": "raw"}, "location": "EU"})
    );

    assert_eq!(
        s.wh.row_count(&TableRef::new("raw", "listen_events"))
            .await
            .unwrap(),
        Some(15)
    );
    drop(s.gcs);
}

#[tokio::test]
async fn a_reload_replaces_its_hour_and_an_empty_hour_empties_it() {
    let s = setup().await;
    write_kafka(&s.lake, 0..=9).await;
    write_kafka(&s.lake, 10..=14).await;
    let first =
        s.wh.load_hour(&s.lake, Topic::ListenEvents, hour())
            .await
            .unwrap();
    let again =
        s.wh.load_hour(&s.lake, Topic::ListenEvents, hour())
            .await
            .unwrap();
    assert_eq!(s.fake.problems(), Vec::<String>::new());
    assert_eq!((first.rows, first.replaced), (15, 0));
    assert_eq!((again.rows, again.replaced), (15, 15));
    assert_eq!(
        s.fake.partition_rows("raw", "listen_events", "2026112210"),
        Some(15)
    );

    // Both loads: one job each, same destination partition, same disposition; new job ids.
    let jobs = load_jobs(&s.fake);
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["configuration"], jobs[1]["configuration"]);
    assert_ne!(
        jobs[0]["jobReference"]["jobId"],
        jobs[1]["jobReference"]["jobId"]
    );
    // The second load counted the hour before replacing it.
    let queries: Vec<String> = s
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/queries"))
        .map(|r| {
            assert_eq!(r.body["useLegacySql"], false);
            assert_eq!(r.body["location"], "EU");
            r.body["query"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        queries,
        vec![format!(
            "SELECT COUNT(*) FROM `{PROJECT}.raw.listen_events` WHERE ts >= TIMESTAMP_MILLIS({HOUR_MS}) AND ts < TIMESTAMP_MILLIS({})",
            HOUR_MS + 3_600_000
        )]
    );

    // The hour's files are gone: the reload empties the partition (no job: DML).
    for file in s
        .lake
        .list_files(Topic::ListenEvents, hour())
        .await
        .unwrap()
    {
        delete_object(&s.gcs, &s.lake, &file.path).await;
    }
    let empty =
        s.wh.load_hour(&s.lake, Topic::ListenEvents, hour())
            .await
            .unwrap();
    assert_eq!(s.fake.problems(), Vec::<String>::new());
    assert_eq!((empty.files, empty.rows, empty.replaced), (0, 0, 15));
    assert_eq!(load_jobs(&s.fake).len(), 2);
    assert_eq!(
        s.fake.partition_rows("raw", "listen_events", "2026112210"),
        None
    );
    let last = s.fake.requests().pop().unwrap();
    assert!(
        last.body["query"].as_str().unwrap().starts_with(&format!(
            "DELETE FROM `{PROJECT}.raw.listen_events` WHERE ts >= "
        )),
        "{last:?}"
    );
}

#[tokio::test]
async fn a_failed_load_job_surfaces_bigquerys_error() {
    let s = setup().await;
    write_kafka(&s.lake, 0..=4).await;
    s.fake.fail_next_load(
        "invalid",
        "Error while reading data, error message: Parquet column 'ts' has type INT64 which does not match the target cpp_type TIMESTAMP",
    );
    let err =
        s.wh.load_hour(&s.lake, Topic::ListenEvents, hour())
            .await
            .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, WarehouseError::BigQuery(_)), "{err:?}");
    assert!(text.contains("Parquet column 'ts' has type INT64 which does not match the target cpp_type TIMESTAMP (invalid)"), "{text}");
    assert!(text.contains("raw.listen_events$2026112210"), "{text}");
    assert!(
        text.contains("job orch_load_listen_events_2026112210_"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(s.fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn a_lake_that_is_not_on_gcs_is_refused() {
    let fake = FakeBigQuery::start(PROJECT, None).await;
    let wh = BigQueryWarehouse::new(config(&fake));
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let err = wh
        .load_hour(&lake, Topic::ListenEvents, hour())
        .await
        .unwrap_err();
    assert!(matches!(err, WarehouseError::Unsupported(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("BigQuery loads from a gs:// lake"),
        "{err}"
    );
    assert!(fake.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Queries and metadata

#[tokio::test]
async fn a_query_pages_through_its_results_and_types_its_values() {
    let fake = FakeBigQuery::start(PROJECT, None).await;
    let wh = BigQueryWarehouse::new(config(&fake));
    let sql = "SELECT * FROM marts.mart_top_songs";
    let schema = json!({"fields": [
        {"name": "plays", "type": "INTEGER", "mode": "NULLABLE"},
        {"name": "hours", "type": "FLOAT", "mode": "NULLABLE"},
        {"name": "paid", "type": "BOOLEAN", "mode": "NULLABLE"},
        {"name": "song", "type": "STRING", "mode": "NULLABLE"},
        {"name": "last_ts", "type": "TIMESTAMP", "mode": "NULLABLE"},
        {"name": "revenue", "type": "NUMERIC", "mode": "NULLABLE"},
        {"name": "day", "type": "DATE", "mode": "NULLABLE"},
        {"name": "ids", "type": "INT64", "mode": "REPEATED"},
        {"name": "artist", "type": "RECORD", "mode": "NULLABLE", "fields": [
            {"name": "name", "type": "STRING"}, {"name": "rank", "type": "INTEGER"}]},
    ]});
    let row = |plays: &str, ts: serde_json::Value| {
        json!({"f": [{"v": plays}, {"v": "1.5"}, {"v": "true"}, {"v": "Yellow"}, {"v": ts},
            {"v": "12.30"}, {"v": "2026-11-22"}, {"v": [{"v": "1"}, {"v": "2"}]},
            {"v": {"f": [{"v": "Coldplay"}, {"v": "1"}]}}]})
    };
    let null_row = json!({"f": [{"v": null}, {"v": null}, {"v": "false"}, {"v": null},
        {"v": null}, {"v": null}, {"v": null}, {"v": []}, {"v": null}]});
    fake.can_query(
        sql,
        Canned {
            schema,
            pages: vec![
                vec![row("9007199254740993", json!("1.7953416E9"))],
                vec![row("-3", json!("1.795341600123456E9")), null_row],
            ],
            slow: true,
        },
    );
    let result = wh.query(sql).await.unwrap();
    assert_eq!(fake.problems(), Vec::<String>::new());
    assert_eq!(
        result.columns,
        [
            "plays", "hours", "paid", "song", "last_ts", "revenue", "day", "ids", "artist"
        ]
    );
    assert_eq!(
        result.rows,
        vec![
            vec![
                json!(9_007_199_254_740_993_i64),
                json!(1.5),
                json!(true),
                json!("Yellow"),
                json!("2026-11-22 10:00:00+00"),
                json!("12.30"),
                json!("2026-11-22"),
                json!([1, 2]),
                json!({"name": "Coldplay", "rank": 1}),
            ],
            vec![
                json!(-3),
                json!(1.5),
                json!(true),
                json!("Yellow"),
                json!("2026-11-22 10:00:00.123456+00"),
                json!("12.30"),
                json!("2026-11-22"),
                json!([1, 2]),
                json!({"name": "Coldplay", "rank": 1}),
            ],
            vec![
                json!(null),
                json!(null),
                json!(false),
                json!(null),
                json!(null),
                json!(null),
                json!(null),
                json!([]),
                json!(null),
            ],
        ]
    );
    assert_eq!(result.scalar_i64(), Some(9_007_199_254_740_993));

    // jobs.query, then getQueryResults until the job is complete, then the next page.
    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(
        requests[0].path,
        format!("/bigquery/v2/projects/{PROJECT}/queries")
    );
    assert_eq!(requests[0].body["query"], sql);
    assert_eq!(requests[0].body["useLegacySql"], false);
    assert!(requests[0].body["timeoutMs"].is_u64());
    let results = format!("/bigquery/v2/projects/{PROJECT}/queries/job_q1");
    assert_eq!(
        (requests[1].method.as_str(), requests[1].path.as_str()),
        ("GET", results.as_str())
    );
    assert_eq!(requests[1].query.get("pageToken"), None);
    assert_eq!(requests[2].path, results);
    assert_eq!(
        requests[2].query.get("pageToken").map(String::as_str),
        Some("page1")
    );
    assert_eq!(
        requests[2].query.get("location").map(String::as_str),
        Some("US")
    );
}

#[tokio::test]
async fn a_refused_query_says_what_bigquery_said() {
    let fake = FakeBigQuery::start(PROJECT, None).await;
    let wh = BigQueryWarehouse::new(config(&fake));
    let sql = "SELEC 1";
    fake.refuse_query(
        sql,
        "Syntax error: Unexpected identifier \"SELEC\" at [1:1]",
    );
    let err = wh.query(sql).await.unwrap_err();
    match &err {
        WarehouseError::Query {
            message,
            sql: shown,
        } => {
            assert_eq!(
                message,
                "Syntax error: Unexpected identifier \"SELEC\" at [1:1] (HTTP 400, invalidQuery)"
            );
            assert_eq!(shown, sql);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn row_count_of_a_missing_table_is_none() {
    let fake = FakeBigQuery::start(PROJECT, None).await;
    let wh = BigQueryWarehouse::new(config(&fake));
    let count = wh
        .row_count(&TableRef::new("raw", "listen_events"))
        .await
        .unwrap();
    assert_eq!(count, None);
    let requests = fake.requests();
    assert_eq!(
        requests[0].path,
        format!("/bigquery/v2/projects/{PROJECT}/datasets/raw/tables/listen_events")
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn secrets_stay_out_of_debug_output() {
    let fake = FakeBigQuery::start(PROJECT, None).await;
    let mut config = config(&fake);
    config.credentials = Credentials::AccessToken("ya29.secret-token".into());
    let wh = BigQueryWarehouse::new(config);
    let shown = format!("{wh:?}");
    assert!(!shown.contains("ya29"), "{shown}");
    assert!(shown.contains("AccessToken(<redacted>)"), "{shown}");
    // The fake refuses the token: the error says so without it.
    let err = wh.query("SELECT 1").await.unwrap_err().to_string();
    assert!(!err.contains("ya29"), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
}

#[test]
fn timestamps_read_as_bigquery_prints_them() {
    assert_eq!(
        timestamp_text("1.7953416E9").unwrap(),
        "2026-11-22 10:00:00+00"
    );
    assert_eq!(
        timestamp_text("1.795341600123456E9").unwrap(),
        "2026-11-22 10:00:00.123456+00"
    );
    assert_eq!(
        timestamp_text("1795341600.5").unwrap(),
        "2026-11-22 10:00:00.5+00"
    );
    assert_eq!(
        timestamp_text("1795341600250000").unwrap(),
        "2026-11-22 10:00:00.25+00"
    );
    assert_eq!(timestamp_text("-1.0E0").unwrap(), "1969-12-31 23:59:59+00");
    assert_eq!(timestamp_text("soon"), None);
}

#[test]
fn the_partition_decorator_names_the_hour() {
    assert_eq!(
        partition_table(Topic::PageViewEvents, hour()),
        "page_view_events$2026112210"
    );
}
