//! The dbt project (`dbt/`) on DuckDB: installed into orch's own venv by `scripts/dbt-venv`,
//! built over a small fixture of raw events, with every dbt test passing, the marts' numbers
//! and the snapshot's history checked, and every model, source and column documented.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

/// The venv's `dbt`, installing it if needed (PyPI only).
pub(crate) fn dbt() -> PathBuf {
    let out = Command::new(repo().join("scripts/dbt-venv"))
        .output()
        .expect("run scripts/dbt-venv");
    assert!(
        out.status.success(),
        "cannot install dbt (scripts/dbt-venv needs python3 with venv and pip, and PyPI):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("start");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dbt_build(dbt: &Path, dir: &Path, vars: Option<&str>) -> String {
    let project = repo().join("dbt");
    let mut cmd = Command::new(dbt);
    cmd.arg("build")
        .arg("--project-dir")
        .arg(&project)
        .arg("--profiles-dir")
        .arg(&project)
        .arg("--target-path")
        .arg(dir.join("target"))
        .arg("--log-path")
        .arg(dir.join("logs"))
        .env("ORCH_DUCKDB_PATH", dir.join("warehouse.duckdb"))
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false");
    if let Some(vars) = vars {
        cmd.arg("--vars").arg(vars);
    }
    run(&mut cmd)
}

fn query(python: &Path, db: &Path, sql: &str) -> serde_json::Value {
    let script = format!(
        "import duckdb, json\nc = duckdb.connect({db:?}, read_only=True)\nprint(json.dumps(c.execute({sql:?}).fetchall(), default=str))",
        db = db.display().to_string(),
    );
    serde_json::from_str(&run(Command::new(python).arg("-c").arg(script))).expect("json")
}

#[test]
fn the_dbt_project_builds_on_duckdb_with_every_test_passing() {
    let dbt = dbt();
    let python = dbt.with_file_name("python");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.duckdb");
    run(Command::new(&python)
        .arg(repo().join("tests/fixtures/dbt_raw.py"))
        .arg(&db));
    let out = dbt_build(&dbt, dir.path(), None);
    assert!(out.contains("Completed successfully"), "{out}");
    assert!(out.contains("ERROR=0"), "{out}");

    // One hour again, as orch's hourly run does: nothing doubles.
    let out = dbt_build(
        &dbt,
        dir.path(),
        Some(r#"{"window_start": "2026-11-22T11:00:00", "window_end": "2026-11-22T12:00:00"}"#),
    );
    assert!(out.contains("Completed successfully"), "{out}");

    let counts = query(
        &python,
        &db,
        "select (select count(*) from raw.listen_events), (select count(*) from core.fact_listens)",
    );
    assert_eq!(
        counts,
        serde_json::json!([[121, 120]]),
        "the event delivered twice is counted once"
    );
    let levels = query(
        &python,
        &db,
        "select level, is_current from core.dim_users where user_id = '3' order by valid_from",
    );
    assert_eq!(levels, serde_json::json!([["free", false], ["paid", true]]));
    let daily = query(
        &python,
        &db,
        "select active_users, listeners, round(stream_hours, 3) from marts.mart_active_users where grain = 'day'",
    );
    assert_eq!(daily, serde_json::json!([[20, 20, 6.05]]));
    let hours = query(
        &python,
        &db,
        "select hour_of_day, plays from marts.mart_listening_by_hour order by 1",
    );
    assert_eq!(hours, serde_json::json!([[10, 60], [11, 60]]));

    // The marts at every grain: user 1 logs in once in each hour.
    let logins = query(
        &python,
        &db,
        "select grain, logins, users_logged_in from marts.mart_logins where grain in ('hour', 'day', 'week', 'month', 'year') order by period_start, grain",
    );
    assert_eq!(
        logins,
        serde_json::json!([
            ["year", 2, 1],
            ["month", 2, 1],
            ["week", 2, 1],
            ["day", 2, 1],
            ["hour", 1, 1],
            ["hour", 1, 1]
        ])
    );
    let plays = query(
        &python,
        &db,
        "select grain, count(*), sum(plays) from marts.mart_plays group by 1 order by 1",
    );
    assert_eq!(
        plays,
        serde_json::json!([
            ["day", 1, 120],
            ["hour", 2, 120],
            ["minute", 40, 120],
            ["month", 1, 120],
            ["week", 1, 120],
            ["year", 1, 120]
        ])
    );
    let segments = query(
        &python,
        &db,
        "select segment, count(*) from marts.mart_user_segments group by 1",
    );
    assert_eq!(
        segments,
        serde_json::json!([["new", 20]]),
        "registered the day before"
    );

    // The snapshot keeps the profile's history: user 5 (free) upgrades in a third hour, and
    // the next build's snapshot closes the free version and opens a paid one.
    let profile = |python: &Path| {
        query(
            python,
            &db,
            "select level, dbt_valid_to is not null from snapshots.snap_user_profile where user_id = '5' order by dbt_valid_from",
        )
    };
    assert_eq!(profile(&python), serde_json::json!([["free", false]]));
    run(Command::new(&python).arg("-c").arg(format!(
        "import duckdb\nc = duckdb.connect({db:?})\n\
         c.execute(\"insert into raw.status_change_events select * exclude (page, method, status, artist, song, duration) \
         replace (ts + 7200000 as ts, 'paid' as level, 'e-up5' as _event_id, 9001 as _source_offset) \
         from raw.page_view_events where userId = '5' order by ts limit 1\")\n\
         c.execute(\"insert into raw.page_view_events select * replace (ts + 7200000 + 1000 as ts, 'paid' as level, 'e-pv5' as _event_id, 9002 as _source_offset) \
         from raw.page_view_events where userId = '5' order by ts limit 1\")\n",
        db = db.display().to_string()
    )));
    let out = dbt_build(&dbt, dir.path(), None);
    assert!(out.contains("Completed successfully"), "{out}");
    assert_eq!(
        profile(&python),
        serde_json::json!([["free", true], ["paid", false]]),
        "two versions of user 5, the older one closed (dbt_valid_to set)"
    );
    let versions = query(
        &python,
        &db,
        "select count(*), count(distinct user_id) from snapshots.snap_user_profile",
    );
    assert_eq!(
        versions,
        serde_json::json!([[21, 20]]),
        "only user 5 changed"
    );

    // Every model and every column of the warehouse is described (manifest against catalog).
    let project = repo().join("dbt");
    run(Command::new(&dbt)
        .args(["docs", "generate", "--no-compile", "--project-dir"])
        .arg(&project)
        .arg("--profiles-dir")
        .arg(&project)
        .arg("--target-path")
        .arg(dir.path().join("target"))
        .arg("--log-path")
        .arg(dir.path().join("logs"))
        .env("ORCH_DUCKDB_PATH", &db)
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false"));
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("target").join(name)).unwrap(),
        )
        .unwrap()
    };
    let (manifest, catalog) = (read("manifest.json"), read("catalog.json"));
    let mut undocumented = Vec::new();
    for (id, node) in catalog["nodes"].as_object().unwrap() {
        let documented = &manifest["nodes"][id];
        if documented["description"].as_str().unwrap_or("").is_empty() {
            undocumented.push(id.clone());
        }
        for column in node["columns"].as_object().unwrap().keys() {
            let c = &documented["columns"][column.to_lowercase()];
            if c["description"].as_str().unwrap_or("").is_empty() {
                undocumented.push(format!("{id}.{column}"));
            }
        }
    }
    assert!(
        catalog["nodes"].as_object().unwrap().len() > 40,
        "every model and the snapshot"
    );
    // The raw sources too: each table and each column the warehouse has (the catalog), and
    // each column of the lake's Parquet schema for its topic, shared or the topic's own.
    let source_column = |id: &str, column: &str| -> String {
        let columns = manifest["sources"][id]["columns"].as_object().unwrap();
        columns
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(column))
            .and_then(|(_, c)| c["description"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    let sources = catalog["sources"].as_object().unwrap();
    assert_eq!(
        sources.len(),
        4,
        "the four raw tables: {:?}",
        sources.keys()
    );
    for (id, source) in sources {
        if manifest["sources"][id]["description"]
            .as_str()
            .unwrap_or("")
            .is_empty()
        {
            undocumented.push(id.clone());
        }
        for column in source["columns"].as_object().unwrap().keys() {
            if source_column(id, column).is_empty() {
                undocumented.push(format!("{id}.{column}"));
            }
        }
    }
    for topic in orch_lake::Topic::ALL {
        let id = format!("source.orch_platform.raw.{}", topic.as_str());
        assert!(manifest["sources"][&id].is_object(), "{id} in the manifest");
        for field in topic.schema().fields() {
            if source_column(&id, field.name()).is_empty() {
                undocumented.push(format!("{id}.{} (lake schema)", field.name()));
            }
        }
    }
    assert_eq!(
        undocumented,
        Vec::<String>::new(),
        "models and columns without a description"
    );

    // A broken contract and a failing unit test each fail the build with dbt's message.
    let broken = dir.path().join("broken");
    copy_dir(&project, &broken);
    let marts_yml = broken.join("models/marts/marts.yml");
    let text = std::fs::read_to_string(&marts_yml).unwrap().replace(
        "      - name: sessions\n        data_type: int64\n        description: \"Distinct sessions",
        "      - name: sessions\n        data_type: date\n        description: \"Distinct sessions",
    );
    assert!(text.contains("data_type: date\n        description: \"Distinct sessions"));
    std::fs::write(&marts_yml, text).unwrap();
    let unit_yml = broken.join("models/unit_tests.yml");
    let text = std::fs::read_to_string(&unit_yml)
        .unwrap()
        .replace("sessions: 2, plays: 4", "sessions: 3, plays: 4");
    std::fs::write(&unit_yml, text).unwrap();
    let out = Command::new(&dbt)
        .args([
            "build",
            "--select",
            "mart_plays",
            "mart_session_stats",
            "--project-dir",
        ])
        .arg(&broken)
        .arg("--profiles-dir")
        .arg(&broken)
        .arg("--target-path")
        .arg(dir.path().join("broken-target"))
        .arg("--log-path")
        .arg(dir.path().join("logs"))
        .env("ORCH_DUCKDB_PATH", &db)
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("contract"),
        "the contract's message:\n{stdout}"
    );
    assert!(
        stdout.contains("Failure in unit_test mart_session_stats_sessions"),
        "the unit test's failure:\n{stdout}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if matches!(name.to_str(), Some("target" | "logs")) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// The BigQuery side, as far as this machine allows: every model and test compiles for the
/// `prod` target (dbt-bigquery, connection stubbed), as a first build and as an hourly build
/// over existing tables, and parses as BigQuery SQL (`scripts/check-dbt-bigquery`).
#[test]
fn the_dbt_project_compiles_to_bigquery_sql() {
    let out = Command::new(repo().join("scripts/check-dbt-bigquery"))
        .output()
        .expect("run scripts/check-dbt-bigquery");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/check-dbt-bigquery failed (it installs dbt-bigquery and sqlglot from PyPI):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("parsed as BigQuery SQL, 0 failed").count(),
        2,
        "{stdout}"
    );
}

/// One process's dbt builds (a daemon's): the first starts a long-lived dbt worker, which
/// parses the project once, and the next builds reuse it; the warehouse and the
/// materializations are those the command line (`workers(false)`) gives, build by build, over
/// hours built out of order and one built again; a changed project starts a new worker.
#[test]
fn dbt_builds_in_one_process_share_a_worker_and_match_the_command_line() {
    use std::sync::Arc;

    use orch::event::EventKind;
    use orch::execute::Executor;
    use orch::partitions::PartitionsDefinition;
    use orch::plan::{self, PartitionRequest};
    use orch::storage::EventFilter;
    use orch::{
        AssetGraph, ComputeError, Materialization, Resources, RunRequest, RunStatus, Selection,
        asset,
    };
    use orch_dbt::{DbtAssetOptions, DbtProject, dbt_assets};

    let dbt = dbt();
    let python = dbt.with_file_name("python");
    let hours = ["2026-11-22-10:00", "2026-11-22-11:00", "2026-11-22-10:00"];
    let rt = tokio::runtime::Runtime::new().unwrap();
    // (worker on?) -> (per build: the assets' row counts and scope metadata; step log lines)
    let mut results = Vec::new();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for (dir, workers) in dirs.iter().zip([true, false]) {
        // A copy of the project, so that this test can change it without touching `dbt/`.
        let project_dir = dir.path().join("project");
        copy_dir(&repo().join("dbt"), &project_dir);
        let warehouse = dir.path().join("warehouse.duckdb");
        run(Command::new(&python)
            .arg(repo().join("tests/fixtures/dbt_raw.py"))
            .arg(&warehouse));
        let project = DbtProject::new(&project_dir, &dir.path().join("state"))
            .executable(&dbt)
            .env("ORCH_DUCKDB_PATH", warehouse.display().to_string())
            .workers(workers);
        let manifest = project.manifest().expect("manifest");
        let project = Arc::new(project);
        let partitions = PartitionsDefinition::hourly("2026-11-22-00:00", "UTC").unwrap();
        let mut defs = vec![
            dbt_assets(
                Arc::clone(&project),
                &manifest,
                &DbtAssetOptions {
                    partitions: Some(partitions.clone()),
                    ..DbtAssetOptions::default()
                },
            )
            .unwrap(),
        ];
        for topic in ["listen", "page_view", "auth", "status_change"] {
            defs.push(
                asset(&format!("staging/{topic}_events"))
                    .partitions(partitions.clone())
                    .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
                    .unwrap(),
            );
        }
        let graph = Arc::new(AssetGraph::new(defs).unwrap());
        let mut builds = Vec::new();
        let mut logs = Vec::new();
        rt.block_on(async {
            let db = crate::util::db::sqlite().await;
            for (i, hour) in hours.iter().enumerate() {
                if i == 2 {
                    // A change to the project: the worker that parsed it before is not reused.
                    let readme = project_dir.join("models/marts/marts.yml");
                    let text = std::fs::read_to_string(&readme).unwrap();
                    std::fs::write(&readme, format!("{text}\n# changed\n")).unwrap();
                }
                let request = PartitionRequest::Key((*hour).to_owned());
                let selected = Selection::all().resolve(&graph).unwrap();
                let plan = plan::plan(&graph, &selected, &request).unwrap();
                let executor = Executor::new(
                    graph.clone(),
                    db.storage.clone(),
                    Resources::new(),
                    orch::config::ExecutionConfig::default(),
                    Default::default(),
                );
                let created = executor
                    .create_run(&plan, &RunRequest::new("*", request.clone()))
                    .await
                    .unwrap();
                let outcome = executor
                    .execute(created.run_id, &plan, Default::default(), Vec::new())
                    .await
                    .unwrap();
                let lines = db.storage.step_logs(created.run_id, None).await.unwrap();
                assert_eq!(
                    outcome.run.status,
                    RunStatus::Success,
                    "build {i} ({hour}, workers {workers}):\n{}",
                    lines
                        .iter()
                        .map(|l| l.message.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                let events = db
                    .storage
                    .run_events(created.run_id, &EventFilter::default())
                    .await
                    .unwrap();
                let mut built = std::collections::BTreeMap::new();
                for e in events
                    .iter()
                    .filter(|e| e.event.kind == EventKind::AssetMaterialization)
                {
                    let meta = &e.event.body.metadata;
                    built.insert(
                        e.event.asset_key.as_ref().unwrap().to_string(),
                        format!(
                            "{:?} {:?} {:?}",
                            meta.get(orch::metadata::ROW_COUNT),
                            meta.get("orch/scope"),
                            meta.get("dbt/status")
                        ),
                    );
                }
                builds.push(built);
                logs.push(
                    lines
                        .into_iter()
                        .map(|l| l.message)
                        .filter(|m| m.contains("dbt worker"))
                        .collect::<Vec<_>>(),
                );
            }
            db.cleanup().await;
        });
        results.push((builds, logs));
    }
    let (with_worker, worker_logs) = &results[0];
    let (command_line, cli_logs) = &results[1];
    assert_eq!(with_worker, command_line);
    assert!(with_worker[0].len() > 30, "{:?}", with_worker[0]);
    let started = |i: usize| {
        worker_logs[i]
            .iter()
            .filter(|l| l.starts_with("started a dbt worker"))
            .count()
    };
    assert_eq!(
        (started(0), started(1), started(2)),
        (1, 0, 1),
        "{worker_logs:?}"
    );
    assert!(cli_logs.iter().all(Vec::is_empty), "{cli_logs:?}");
    let tables = "select table_schema || '.' || table_name from information_schema.tables where table_schema in ('core', 'marts') and table_type = 'BASE TABLE' order by 1";
    let a = dirs[0].path().join("warehouse.duckdb");
    let b = dirs[1].path().join("warehouse.duckdb");
    let names = query(&python, &a, tables);
    assert_eq!(names, query(&python, &b, tables));
    for name in names.as_array().unwrap() {
        let name = name[0].as_str().unwrap();
        let sql = format!("select * from {name} order by all");
        assert_eq!(query(&python, &a, &sql), query(&python, &b, &sql), "{name}");
    }
}
