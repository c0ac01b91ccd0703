//! One step over dbt assets: a `dbt build` (in a worker or on the command line), its JSON
//! log read line by line into materializations and check results, and the catalog refreshed
//! when the build changed what it describes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use orch_core::asset::Severity;
use orch_core::context::{AssetContext, CheckResult, ComputeError, Materialization, Output};
use orch_core::event::LogLevel;

use super::{DbtProject, Index};

/// What the log of one `dbt build` said so far.
#[derive(Debug, Default)]
struct BuildLog {
    rows: HashMap<String, u64>,
    /// Metadata a model's post-hooks logged (`orch:meta <unique_id> <key> <text>`), in order.
    meta: HashMap<String, Vec<(String, String)>>,
    errors: Vec<String>,
    /// The models, seeds and snapshots built, by unique id.
    built: Vec<String>,
}

/// The environment variables that carry a build's partition window (`dbt/macros/window.sql`).
const WINDOW_START_ENV: &str = "ORCH_WINDOW_START";
const WINDOW_END_ENV: &str = "ORCH_WINDOW_END";

/// One `dbt build` for the step's assets.
pub(crate) async fn build(
    project: Arc<DbtProject>,
    index: Arc<Index>,
    ctx: AssetContext,
) -> Result<Output, ComputeError> {
    let dbt = {
        let project = Arc::clone(&project);
        tokio::task::spawn_blocking(move || project.dbt())
            .await
            .map_err(|e| ComputeError::new(format!("finding dbt: {e}")))?
            .map_err(ComputeError::fatal)?
    };
    let mut names: Vec<&str> = ctx
        .asset_keys()
        .iter()
        .filter_map(|k| index.name_of.get(k).map(String::as_str))
        .collect();
    names.sort_unstable();
    let mut args = project.args("build");
    args.push("--log-format".into());
    args.push("json".into());
    args.push("--select".into());
    args.extend(names.iter().map(|n| (*n).to_owned()));
    // A test runs when every model it reads is built here or upstream of what is (dbt's
    // default, eager, would also run a test over a model this step does not build).
    args.push("--indirect-selection".into());
    args.push("buildable".into());
    // The window goes in the environment, not --vars: dbt reparses the whole project when
    // --vars change, and only the files that read an env_var when it does (an hour's build of
    // the platform: 7.0 s instead of 8.1 s).
    let window: Vec<(&str, String)> = match ctx.partition_window() {
        Some(window) => vec![
            (
                WINDOW_START_ENV,
                window.start.format("%Y-%m-%d %H:%M:%S").to_string(),
            ),
            (
                WINDOW_END_ENV,
                window.end.format("%Y-%m-%d %H:%M:%S").to_string(),
            ),
        ],
        None => Vec::new(),
    };
    ctx.log().info(format!(
        "dbt build of {} model(s){}",
        names.len(),
        ctx.partition_window()
            .map(|w| format!(" for {} to {}", w.start, w.end))
            .unwrap_or_default()
    ));
    let state = Arc::new(Mutex::new(BuildLog::default()));
    let handler = {
        let state = Arc::clone(&state);
        let ctx = ctx.clone();
        let index = Arc::clone(&index);
        move |line: &str| on_log_line(&ctx, &index, &state, line)
    };
    let result: Result<(), String> = match project.checkout_worker(&dbt, &ctx).await {
        Some(mut worker) => {
            let logger = ctx.log().clone();
            let mut on_line = move |line: &str| {
                if let Some((level, text)) = handler(line) {
                    logger.stdout(level, text);
                }
            };
            let env: Vec<(&str, Option<String>)> = [WINDOW_START_ENV, WINDOW_END_ENV]
                .into_iter()
                .map(|name| {
                    let value = window
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| v.clone());
                    (name, value)
                })
                .collect();
            let outcome = tokio::select! {
                outcome = worker.invoke(&args, &env, &mut on_line) => Some(outcome),
                () = ctx.canceled() => None,
            };
            match outcome {
                // Dropping the worker kills it, as a canceled step kills its `dbt`.
                None => Err("canceled".to_owned()),
                Some(Ok(done)) => {
                    project.workers.give_back(worker);
                    if done.success {
                        Ok(())
                    } else {
                        Err(done
                            .error
                            .unwrap_or_else(|| "dbt reported a failure".to_owned()))
                    }
                }
                Some(Err(e)) => Err(e),
            }
        }
        None if ctx.is_canceled() => Err("canceled".to_owned()),
        None => {
            let mut command = std::process::Command::new(&dbt);
            command
                .args(&args)
                .envs(project.envs())
                .env_remove(WINDOW_START_ENV)
                .env_remove(WINDOW_END_ENV)
                .envs(window)
                .current_dir(&project.project_dir);
            ctx.run_command_with(command, handler)
                .await
                .map(|_| ())
                .map_err(|e| e.message().to_owned())
        }
    };
    let log = std::mem::take(&mut *state.lock().unwrap_or_else(|e| e.into_inner()));
    match result {
        Ok(_) => {
            ctx.log()
                .info(format!("dbt built {} node(s)", log.built.len()));
            match refresh_catalog(&project, &dbt, &log.built).await {
                Ok(None) => {}
                Ok(Some(written)) => ctx.log().info(written),
                Err(e) => ctx.log().warn(e),
            }
            Ok(Output::Reported)
        }
        Err(_) if ctx.is_canceled() => Err(ComputeError::canceled()),
        Err(e) if log.errors.is_empty() => {
            Err(ComputeError::fatal(format!("dbt build failed: {e}")))
        }
        Err(_) => Err(ComputeError::fatal(format!(
            "dbt build failed: {}",
            log.errors.join("\n")
        ))),
    }
}

/// Writes `catalog.json` (`dbt docs generate --no-compile`: the columns and types of every
/// relation, read from the warehouse) after a build of the nodes `built`, when
/// [`DbtProject::catalog_stale`] says so: once per change of the project, about 3.5 s on
/// DuckDB, most of it dbt's start-up, so not after every hourly build. Under the manifest's
/// lock, so that two steps ending together write it once. Returns what it wrote, or why it
/// could not; a failure is a warning: the documentation then shows the declared types.
pub(crate) async fn refresh_catalog(
    project: &Arc<DbtProject>,
    dbt: &Path,
    built: &[String],
) -> Result<Option<String>, String> {
    let built = built.to_vec();
    let checking = Arc::clone(project);
    let checked = tokio::task::spawn_blocking(move || {
        let lock = checking.lock_manifest()?;
        let why = checking.catalog_stale(&built);
        Ok::<_, String>((lock, why, checking.project_digest()))
    })
    .await
    .map_err(|e| format!("checking the catalog: {e}"))??;
    let (_lock, Some(why), digest) = checked else {
        return Ok(None);
    };
    let started = std::time::Instant::now();
    // `dbt docs generate` with the common flags after the subcommand.
    let mut command = tokio::process::Command::new(dbt);
    command
        .arg("docs")
        .args(project.args("generate"))
        .arg("--no-compile")
        .envs(project.envs())
        .current_dir(&project.project_dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = command
        .output()
        .await
        .map_err(|e| format!("cannot run dbt docs generate: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "dbt docs generate failed; the documentation shows declared types only:\n{}",
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    let key = project.catalog_key_path();
    std::fs::write(&key, format!("{digest}\n"))
        .map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    Ok(Some(format!(
        "wrote {} in {:.1} s (dbt docs generate --no-compile: {why})",
        project.catalog_path().display(),
        started.elapsed().as_secs_f64()
    )))
}

/// Handles one line of dbt's JSON log: records results, returns what to keep as the step's log.
fn on_log_line(
    ctx: &AssetContext,
    index: &Index,
    state: &Mutex<BuildLog>,
    line: &str,
) -> Option<(LogLevel, String)> {
    let Ok(event) = serde_json::from_str::<Value>(line) else {
        return Some((LogLevel::Info, line.to_owned()));
    };
    let name = event.pointer("/info/name").and_then(Value::as_str)?;
    let msg = strip_ansi(
        event
            .pointer("/info/msg")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    let level = match event.pointer("/info/level").and_then(Value::as_str) {
        Some("debug") => return None,
        Some("warn") => LogLevel::Warn,
        Some("error") => LogLevel::Error,
        _ => LogLevel::Info,
    };
    let data = event.get("data").unwrap_or(&Value::Null);
    let unique_id = data
        .pointer("/node_info/unique_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let status = data
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    match name {
        "JinjaLogInfo" if msg.starts_with("orch:row_count ") => {
            let mut parts = msg.split_whitespace().skip(1);
            if let (Some(id), Some(Ok(rows))) = (parts.next(), parts.next().map(str::parse)) {
                state.rows.insert(id.to_owned(), rows);
            }
            return None;
        }
        "JinjaLogInfo" if msg.starts_with("orch:meta ") => {
            let mut parts = msg.splitn(4, ' ').skip(1);
            if let (Some(id), Some(key), Some(text)) = (parts.next(), parts.next(), parts.next()) {
                state
                    .meta
                    .entry(id.to_owned())
                    .or_default()
                    .push((key.to_owned(), text.trim().to_owned()));
            }
            return None;
        }
        "LogModelResult" | "LogSeedResult" | "LogSnapshotResult" => {
            if let Some(key) = index.key_of.get(unique_id)
                && !matches!(status.as_str(), "error" | "skipped" | "fail")
            {
                let mut m = Materialization::new()
                    .meta("dbt/unique_id", unique_id)
                    .meta("dbt/status", status.as_str());
                if let Some(rows) = state.rows.get(unique_id) {
                    m = m.row_count(*rows);
                }
                for (k, v) in state.meta.remove(unique_id).unwrap_or_default() {
                    m = m.meta(&k, v);
                }
                if let Some(secs) = data.get("execution_time").and_then(Value::as_f64) {
                    m = m.meta("duration_ms", (secs * 1000.0).round() as i64);
                }
                if let Some(materialized) = data
                    .pointer("/node_info/materialized")
                    .and_then(Value::as_str)
                {
                    m = m.meta("dbt/materialized", materialized);
                }
                state.built.push(unique_id.to_owned());
                ctx.report_materialization(key.clone(), m);
            }
        }
        "LogTestResult" => {
            if let Some((check, key, severity)) = index.test_of.get(unique_id) {
                let passed = status == "pass";
                let mut result = CheckResult::new(check.clone(), passed)
                    .for_asset(key.clone())
                    .severity(if status == "warn" {
                        Severity::Warn
                    } else {
                        *severity
                    })
                    .meta("dbt/status", status.as_str());
                if let Some(n) = data.get("num_failures").and_then(Value::as_i64) {
                    result = result.meta("failing_rows", n);
                }
                if !passed {
                    result = result.description(msg.trim().to_owned());
                }
                ctx.report_check(result);
            }
        }
        "RunResultError" | "RunResultFailure" | "RunResultErrorNoMessage" => {
            state.errors.push(msg.trim().to_owned());
        }
        _ => {}
    }
    Some((level, msg))
}

/// `text` without terminal colour codes.
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
