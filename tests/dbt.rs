//! The dbt project (`dbt/`) on DuckDB: installed into orch's own venv by `scripts/dbt-venv`,
//! built over a small fixture of raw events, with every dbt test passing and the marts' numbers
//! checked.

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
