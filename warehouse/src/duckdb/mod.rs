//! The embedded warehouse: a DuckDB file (`.orch/warehouse.duckdb` by default), the same file
//! dbt-duckdb builds the models in.
//!
//! DuckDB lets one process at a time open a file for writing. Every operation here opens the
//! file, works and closes it, so that dbt can open it between two loads; operations of one
//! process on one file take turns, and an operation that finds the file held by another
//! process (dbt, another orch) waits for it, up to [`DuckDbWarehouse::lock_timeout`].

mod ffi;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arrow_schema::DataType;
use async_trait::async_trait;
use orch_lake::{Hour, Lake, Topic, col};

use crate::{LoadReport, QueryResult, TableRef, Warehouse, WarehouseError, hour_key};

pub use ffi::{Connection, Database, ident, quote};

/// How long an operation waits for a file another process holds, by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// Lake files fetched at once when a load copies an object store's files for DuckDB.
const DOWNLOADS: usize = 16;

/// The DuckDB warehouse in one file.
#[derive(Debug, Clone)]
pub struct DuckDbWarehouse {
    path: PathBuf,
    lock_timeout: Duration,
}

impl DuckDbWarehouse {
    /// The warehouse in the file at `path` (created, with its folder, on first use).
    pub fn new(path: impl Into<PathBuf>) -> DuckDbWarehouse {
        DuckDbWarehouse {
            path: path.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// How long to wait for the file when another process holds it.
    pub fn lock_timeout(mut self, timeout: Duration) -> DuckDbWarehouse {
        self.lock_timeout = timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on a connection to the file, on a blocking thread, after the operations of
    /// this process on the same file that came first.
    pub async fn with_connection<T, F>(&self, work: F) -> Result<T, WarehouseError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection<'_>) -> Result<T, WarehouseError> + Send + 'static,
    {
        let turn = file_turn(&self.path);
        let _guard = turn.lock_owned().await;
        let path = self.path.clone();
        let timeout = self.lock_timeout;
        tokio::task::spawn_blocking(move || {
            let db = open_waiting(&path, timeout)?;
            let con = db.connect().map_err(|reason| WarehouseError::Open {
                target: path.display().to_string(),
                reason,
            })?;
            work(&con)
        })
        .await
        .map_err(|e| WarehouseError::Io(format!("a warehouse operation panicked: {e}")))?
    }
}

/// One async lock per file, so that operations of this process take turns (DuckDB refuses a
/// second open of a file in one process, too).
fn file_turn(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static TURNS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut turns = TURNS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Arc::clone(turns.entry(key).or_default())
}

/// Opens the file, waiting while another process holds it.
fn open_waiting(path: &Path, timeout: Duration) -> Result<Database, WarehouseError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| WarehouseError::Open {
            target: path.display().to_string(),
            reason: format!("cannot create {}: {e}", parent.display()),
        })?;
    }
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match Database::open(path) {
            Ok(db) => return Ok(db),
            Err(reason) if is_lock_conflict(&reason) && started.elapsed() < timeout => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(reason) => {
                let reason = if is_lock_conflict(&reason) {
                    format!(
                        "another process held it for {} s: {reason}",
                        started.elapsed().as_secs()
                    )
                } else {
                    reason
                };
                return Err(WarehouseError::Open {
                    target: path.display().to_string(),
                    reason,
                });
            }
        }
    }
}

fn is_lock_conflict(reason: &str) -> bool {
    reason.contains("Could not set lock") || reason.contains("Conflicting lock")
}

fn run(con: &Connection<'_>, sql: &str) -> Result<u64, WarehouseError> {
    con.execute(sql).map_err(|m| WarehouseError::query(m, sql))
}

fn select(con: &Connection<'_>, sql: &str) -> Result<QueryResult, WarehouseError> {
    con.query(sql).map_err(|m| WarehouseError::query(m, sql))
}

/// The timestamp columns the raw tables keep as eventsim sends them, epoch milliseconds (the
/// dbt project types them); `_ingested_at` becomes a TIMESTAMP (UTC).
fn is_epoch_ms(name: &str) -> bool {
    name == col::TS || name == col::REGISTRATION
}

/// The DuckDB type of a lake column in a raw table.
fn column_type(name: &str, data_type: &DataType) -> Result<&'static str, WarehouseError> {
    Ok(match data_type {
        DataType::Timestamp(_, _) if is_epoch_ms(name) => "BIGINT",
        DataType::Timestamp(_, _) => "TIMESTAMP",
        DataType::Utf8 | DataType::LargeUtf8 => "VARCHAR",
        DataType::Int64 => "BIGINT",
        DataType::Int32 => "INTEGER",
        DataType::Float64 => "DOUBLE",
        DataType::Boolean => "BOOLEAN",
        other => {
            return Err(WarehouseError::Unsupported(format!(
                "the lake column {name} has type {other}, which the DuckDB load does not map"
            )));
        }
    })
}

/// The raw table of `topic`: the lake's columns, timestamps as above.
fn create_table_sql(table: &TableRef, topic: Topic) -> Result<String, WarehouseError> {
    let schema = topic.schema();
    let mut columns = Vec::new();
    for field in schema.fields() {
        columns.push(format!(
            "{} {}",
            ident(field.name()),
            column_type(field.name(), field.data_type())?
        ));
    }
    Ok(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema_name}; CREATE TABLE IF NOT EXISTS {schema_name}.{table_name} ({columns})",
        schema_name = ident(&table.dataset),
        table_name = ident(&table.table),
        columns = columns.join(", ")
    ))
}

/// The lake's columns as the raw table stores them.
fn projection(topic: Topic) -> String {
    topic
        .schema()
        .fields()
        .iter()
        .map(|field| {
            let name = ident(field.name());
            match field.data_type() {
                DataType::Timestamp(_, _) if is_epoch_ms(field.name()) => {
                    format!("epoch_ms({name}) AS {name}")
                }
                DataType::Timestamp(_, _) => {
                    format!("make_timestamp(epoch_us({name})) AS {name}")
                }
                _ => name,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What identifies an event across rewrites of its file: the producer's id, or its source
/// position.
fn dedup_key() -> String {
    format!(
        "coalesce({id}, concat_ws(':', {source}, cast({partition} AS VARCHAR), cast({offset} AS VARCHAR)))",
        id = ident(col::EVENT_ID),
        source = ident(col::SOURCE),
        partition = ident(col::SOURCE_PARTITION),
        offset = ident(col::SOURCE_OFFSET),
    )
}

#[async_trait]
impl Warehouse for DuckDbWarehouse {
    fn kind(&self) -> &'static str {
        "duckdb"
    }

    async fn load_hour(
        &self,
        lake: &Lake,
        topic: Topic,
        hour: Hour,
    ) -> Result<LoadReport, WarehouseError> {
        let files = lake.list_files(topic, hour).await?;
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        // DuckDB reads the Parquet files itself: in place on a local lake, from a temporary
        // copy otherwise.
        let mut _copies = None;
        let paths: Vec<PathBuf> = match lake.local_root() {
            Some(root) => files.iter().map(|f| root.join(&f.path)).collect(),
            None => {
                let dir = tempfile::tempdir().map_err(|e| {
                    WarehouseError::Io(format!("cannot make a temporary folder: {e}"))
                })?;
                // Streaming workers write many small files an hour: fetch several at once.
                use futures::{StreamExt, TryStreamExt};
                let fetches: Vec<_> = files
                    .iter()
                    .enumerate()
                    .map(|(i, file)| {
                        let (lake, path) = (lake.clone(), file.path.clone());
                        let local = dir.path().join(format!("{i}.parquet"));
                        async move {
                            let data = lake.get(&path).await?;
                            tokio::fs::write(&local, &data).await.map_err(|e| {
                                WarehouseError::Io(format!("cannot write {}: {e}", local.display()))
                            })?;
                            Ok::<_, WarehouseError>(local)
                        }
                    })
                    .collect();
                let paths: Vec<PathBuf> = futures::stream::iter(fetches)
                    .buffered(DOWNLOADS)
                    .try_collect()
                    .await?;
                _copies = Some(dir);
                paths
            }
        };
        let table = self.raw_table(topic);
        let create = create_table_sql(&table, topic)?;
        let target = format!("{}.{}", ident(&table.dataset), ident(&table.table));
        let start_ms = hour.start().timestamp_millis();
        let end_ms = hour.end().timestamp_millis();
        let in_hour = format!(
            "{ts} >= {start_ms} AND {ts} < {end_ms}",
            ts = ident(col::TS)
        );
        let file_list = paths
            .iter()
            .map(|p| quote(&p.display().to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        let report_table = table.clone();
        let n_files = files.len();
        self.with_connection(move |con| {
            run(con, &create)?;
            run(con, "BEGIN TRANSACTION")?;
            let work = || -> Result<(u64, u64, u64), WarehouseError> {
                let replaced = run(con, &format!("DELETE FROM {target} WHERE {in_hour}"))?;
                if file_list.is_empty() {
                    return Ok((replaced, 0, 0));
                }
                let read = format!(
                    "SELECT {projection} FROM read_parquet([{file_list}], union_by_name = true)",
                    projection = projection(topic)
                );
                // The files are read once, into a temporary table of the hour's rows.
                run(
                    con,
                    &format!(
                        "CREATE OR REPLACE TEMP TABLE _orch_load AS SELECT * FROM ({read}) WHERE {in_hour}"
                    ),
                )?;
                let read_rows = select(con, "SELECT count(*) FROM _orch_load")?
                    .scalar_i64()
                    .unwrap_or(0) as u64;
                let inserted = run(
                    con,
                    &format!(
                        "INSERT INTO {target} BY NAME \
                         SELECT * EXCLUDE (_orch_rank) FROM ( \
                           SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {ingested} DESC) AS _orch_rank \
                           FROM _orch_load) \
                         WHERE _orch_rank = 1",
                        key = dedup_key(),
                        ingested = ident(col::INGESTED_AT),
                    ),
                )?;
                run(con, "DROP TABLE _orch_load")?;
                Ok((replaced, inserted, read_rows - inserted))
            };
            match work() {
                Ok((replaced, rows, duplicates)) => {
                    run(con, "COMMIT")?;
                    Ok(LoadReport {
                        table: report_table,
                        hour: hour_key(hour),
                        files: n_files,
                        bytes,
                        rows,
                        duplicates,
                        replaced,
                    })
                }
                Err(e) => {
                    let _ = run(con, "ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
    }

    async fn query(&self, sql: &str) -> Result<QueryResult, WarehouseError> {
        let sql = sql.to_owned();
        self.with_connection(move |con| select(con, &sql)).await
    }

    async fn row_count(&self, table: &TableRef) -> Result<Option<u64>, WarehouseError> {
        let exists = format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
            quote(&table.dataset),
            quote(&table.table)
        );
        let count = format!(
            "SELECT count(*) FROM {}.{}",
            ident(&table.dataset),
            ident(&table.table)
        );
        self.with_connection(move |con| {
            if select(con, &exists)?.scalar_i64().unwrap_or(0) == 0 {
                return Ok(None);
            }
            Ok(Some(select(con, &count)?.scalar_i64().unwrap_or(0) as u64))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use orch_lake::{BatchBuilder, FileName, Lineage, decode};

    /// 2026-11-22 10:00 UTC.
    const HOUR_MS: i64 = 1_795_341_600_000;

    fn hour() -> Hour {
        Hour::from_ts_ms(HOUR_MS).unwrap()
    }

    fn listen(ts: i64, song: &str, event_id: Option<&str>) -> orch_lake::Event {
        let id = event_id
            .map(|id| format!(r#","_event_id":"{id}""#))
            .unwrap_or_default();
        let json = format!(
            r#"{{"ts":{ts},"sessionId":5,"level":"free","itemInSession":2,"city":"Austin","zip":"78701","state":"TX","lat":30.27,"lon":-97.74,"userAgent":"UA","userId":7,"firstName":"Ada","lastName":"L","gender":"F","registration":1700000000000,"auth":"Logged In","artist":"A","song":"{song}","duration":200.5{id}}}"#
        );
        decode(Topic::ListenEvents, json.as_bytes()).unwrap()
    }

    /// Writes Kafka-sourced listens at `offsets` of partition 0 as one file.
    async fn write_kafka(lake: &Lake, offsets: std::ops::RangeInclusive<i64>) {
        let now = DateTime::<Utc>::from_timestamp_millis(HOUR_MS + 3_600_000).unwrap();
        let mut b = BatchBuilder::new(Topic::ListenEvents);
        for offset in offsets.clone() {
            let e = listen(HOUR_MS + offset * 1000, &format!("S{offset}"), None);
            b.append(&e, &Lineage::kafka(0, offset, now)).unwrap();
        }
        let name = FileName::kafka("kafka", 0, *offsets.start(), *offsets.end()).unwrap();
        lake.write_parquet(Topic::ListenEvents, hour(), &name, &[b.finish()])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_reloaded_hour_replaces_itself_and_duplicates_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
        let wh = DuckDbWarehouse::new(dir.path().join("wh.duckdb"));

        write_kafka(&lake, 0..=9).await;
        let first = wh
            .load_hour(&lake, Topic::ListenEvents, hour())
            .await
            .unwrap();
        assert_eq!(
            (first.files, first.rows, first.duplicates, first.replaced),
            (1, 10, 0, 0)
        );
        assert_eq!(first.hour, "2026-11-22-10:00");
        assert_eq!(first.table.to_string(), "raw.listen_events");

        // The same hour again: replaced, not doubled.
        let again = wh
            .load_hour(&lake, Topic::ListenEvents, hour())
            .await
            .unwrap();
        assert_eq!((again.rows, again.replaced), (10, 10));
        let table = TableRef::new("raw", "listen_events");
        assert_eq!(wh.row_count(&table).await.unwrap(), Some(10));

        // A worker that crashed wrote offsets 5..=14 again in a file of another name: the
        // overlap counts once.
        write_kafka(&lake, 5..=14).await;
        let after = wh
            .load_hour(&lake, Topic::ListenEvents, hour())
            .await
            .unwrap();
        assert_eq!(
            (after.files, after.rows, after.duplicates, after.replaced),
            (2, 15, 5, 10)
        );
        let distinct = wh
            .query("select count(distinct _source_offset) as n, min(ts) as first, max(_ingested_at) as ingested from raw.listen_events")
            .await
            .unwrap();
        assert_eq!(distinct.columns, ["n", "first", "ingested"]);
        assert_eq!(distinct.rows[0][0], serde_json::json!(15));
        // ts stays eventsim's epoch milliseconds; _ingested_at is a UTC timestamp.
        assert_eq!(distinct.rows[0][1], serde_json::json!(HOUR_MS));
        assert_eq!(
            distinct.rows[0][2],
            serde_json::json!("2026-11-22 11:00:00")
        );
    }

    #[tokio::test]
    async fn other_hours_stay_and_an_empty_hour_empties() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
        let wh = DuckDbWarehouse::new(dir.path().join("wh.duckdb"));
        write_kafka(&lake, 0..=2).await;
        wh.load_hour(&lake, Topic::ListenEvents, hour())
            .await
            .unwrap();
        // The next hour has no files: loading it keeps this hour's rows.
        let next = wh
            .load_hour(&lake, Topic::ListenEvents, hour().next())
            .await
            .unwrap();
        assert_eq!((next.files, next.rows, next.replaced), (0, 0, 0));
        let table = TableRef::new("raw", "listen_events");
        assert_eq!(wh.row_count(&table).await.unwrap(), Some(3));
        assert_eq!(
            wh.row_count(&TableRef::new("raw", "nope")).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn generator_events_are_keyed_by_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
        let wh = DuckDbWarehouse::new(dir.path().join("wh.duckdb"));
        let now = DateTime::<Utc>::from_timestamp_millis(HOUR_MS + 3_600_000).unwrap();
        // Two generator runs with the same sequence numbers but different events: both stay.
        for (seed, id) in [(1u64, "a"), (2, "b")] {
            let mut b = BatchBuilder::new(Topic::ListenEvents);
            for seq in 0..3 {
                let e = listen(HOUR_MS + seq, "S", Some(&format!("{id}{seq}")));
                b.append(&e, &Lineage::generator("eventsim", seq, now))
                    .unwrap();
            }
            let name = FileName::generator("eventsim", seed, 0).unwrap();
            lake.write_parquet(Topic::ListenEvents, hour(), &name, &[b.finish()])
                .await
                .unwrap();
        }
        let report = wh
            .load_hour(&lake, Topic::ListenEvents, hour())
            .await
            .unwrap();
        assert_eq!((report.rows, report.duplicates), (6, 0));
    }

    #[tokio::test]
    async fn a_bad_query_says_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let wh = DuckDbWarehouse::new(dir.path().join("wh.duckdb"));
        let err = wh.query("select * from missing_table").await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("missing_table"), "{text}");
        assert!(text.contains("in: select * from missing_table"), "{text}");
    }

    #[tokio::test]
    async fn another_process_holding_the_file_is_waited_for_then_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wh.duckdb");
        let wh = DuckDbWarehouse::new(&path).lock_timeout(Duration::from_millis(300));
        wh.query("select 1").await.unwrap();
        // Another process takes the POSIX lock DuckDB takes on its file (fcntl, whole file).
        let mut holder = std::process::Command::new("python3")
            .arg("-c")
            .arg("import fcntl, sys, time; f = open(sys.argv[1], 'r+'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(5)")
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 is installed");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        let err = wh.query("select 1").await;
        holder.kill().ok();
        holder.wait().ok();
        let text = err.expect_err("the file is held").to_string();
        assert!(text.contains("another process held it"), "{text}");
        wh.query("select 1").await.unwrap();
    }
}
