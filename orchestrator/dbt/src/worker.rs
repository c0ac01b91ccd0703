//! Long-lived dbt processes: a `dbt build` without dbt's start-up.
//!
//! The command line pays about 10 s (two busy cores, the platform's project) to start Python,
//! import dbt and parse the project before any SQL runs, on every build. A worker
//! (`worker.py`, run by the Python of the dbt installation) parses once and then runs each build
//! through dbt's programmatic API (dbtRunner) over the parsed manifest: about a second for an
//! hour's incremental build. The builds are the same `dbt build` arguments and the same JSON
//! log, read by the same handler.
//!
//! Workers are pooled per project: a step takes an idle worker or starts one, and gives it back
//! when its build ends (a build that fails in dbt leaves the worker usable). A worker parsed
//! one state of the project; when the project's files change (its digest), idle workers are
//! dropped and the next build starts a new one. A canceled step kills its worker, as it kills a
//! `dbt` process. A worker that cannot start (no Python dbt, an old dbt) makes the project fall
//! back to the command line, saying why once. `ORCH_DBT_WORKER=0` turns workers off.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The worker's program, written beside the project's artifacts when first needed.
const SCRIPT: &str = include_str!("worker.py");

/// How many idle workers a project keeps (each holds a parsed project: about 150 MB).
const MAX_IDLE: usize = 2;

/// The environment variable that turns workers off (`0`, `false`, `off`, `no`).
pub const WORKER_ENV: &str = "ORCH_DBT_WORKER";

/// One running worker. Its output is read by a thread of its own into a channel, so that a
/// worker started under one Tokio runtime serves builds under another (tests, and `orch`
/// commands, make several). Dropping it kills the process.
pub(crate) struct Worker {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    /// The project's digest when the worker parsed it.
    digest: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How an invocation ended.
pub(crate) struct Done {
    pub success: bool,
    pub error: Option<String>,
}

impl Worker {
    /// Starts a worker with `python` and waits until it has parsed the project.
    pub(crate) async fn start(
        python: &Path,
        script: &Path,
        common: &[String],
        envs: &[(String, String)],
        project_dir: &Path,
        digest: String,
    ) -> Result<Worker, String> {
        let mut command = std::process::Command::new(python);
        command
            .arg(script)
            .arg(serde_json::to_string(common).map_err(|e| e.to_string())?)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(project_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("cannot talk to the dbt worker".to_owned());
        };
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("dbt-worker-out".into())
            .spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let mut worker = Worker {
            child,
            stdin,
            lines,
            digest,
        };
        loop {
            let Some(line) = worker.lines.recv().await else {
                let status = worker.child.wait().ok();
                return Err(format!(
                    "the dbt worker exited while parsing the project ({})",
                    status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
                ));
            };
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(ready) = message.get("orch_ready").and_then(Value::as_bool) {
                if ready {
                    return Ok(worker);
                }
                return Err(message
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("the dbt worker could not parse the project")
                    .to_owned());
            }
        }
    }

    /// Runs dbt with `args` and the variables `env` (`None`: unset), handing each line dbt
    /// prints to `on_line`.
    pub(crate) async fn invoke(
        &mut self,
        args: &[String],
        env: &[(&str, Option<String>)],
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Done, String> {
        let env: serde_json::Map<String, Value> = env
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    v.clone().map_or(Value::Null, Value::String),
                )
            })
            .collect();
        let mut request = json!({ "args": args, "env": env }).to_string();
        request.push('\n');
        // A line of a few hundred bytes to an idle worker, which reads its stdin: the pipe's
        // buffer takes it at once.
        self.stdin
            .write_all(request.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("the dbt worker stopped: {e}"))?;
        loop {
            let Some(line) = self.lines.recv().await else {
                let status = self.child.wait().ok();
                return Err(format!(
                    "the dbt worker exited during the build ({})",
                    status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
                ));
            };
            if line.starts_with("{\"orch_done\"")
                && let Ok(done) = serde_json::from_str::<Value>(&line)
            {
                return Ok(Done {
                    success: done.get("success").and_then(Value::as_bool) == Some(true),
                    error: done.get("error").and_then(Value::as_str).map(str::to_owned),
                });
            }
            on_line(&line);
        }
    }
}

/// The idle workers of one project, and whether workers work for it at all.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Worker>>,
    /// The project's digest when a worker could not start: until the project changes, its
    /// builds run the command line (which then says what is wrong, if the project is).
    off: Mutex<Option<String>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map(|v| v.len()).unwrap_or_default();
        write!(f, "Pool {{ idle: {idle} }}")
    }
}

impl Pool {
    /// An idle worker that parsed the project as it is now (`digest`); drops those that parsed
    /// an older state.
    pub(crate) fn take(&self, digest: &str) -> Option<Worker> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|w| w.digest == digest);
        idle.pop()
    }

    /// Keeps `worker` for the next build (up to [`MAX_IDLE`]; more are stopped).
    pub(crate) fn give_back(&self, worker: Worker) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(worker);
        }
    }

    /// Whether workers are off for the project as it is (`digest`).
    pub(crate) fn off(&self, digest: &str) -> bool {
        self.off
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            == Some(digest)
    }

    pub(crate) fn turn_off(&self, digest: String) {
        *self.off.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
    }
}

/// Whether [`WORKER_ENV`] leaves workers on (anything but `0`, `false`, `off`, `no`).
pub fn enabled_by_env() -> bool {
    !std::env::var(WORKER_ENV).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        )
    })
}

/// The Python that runs `dbt`, when `dbt` is the console script pip installs (its first line
/// is `#!/path/to/python`); `None` for anything else (a wrapper, a fake in tests, a binary).
pub(crate) fn python_of(dbt: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 512];
    let n = std::fs::File::open(dbt).ok()?.read(&mut head).ok()?;
    let first = std::str::from_utf8(&head[..n]).ok()?.lines().next()?;
    let interpreter = first.strip_prefix("#!")?.trim();
    // `#!/usr/bin/env python3` or `#!/venv/bin/python3.11 -X ...`: the last word naming Python.
    let program = interpreter
        .split_whitespace()
        .find(|w| {
            Path::new(w)
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("python"))
        })?
        .to_owned();
    Some(PathBuf::from(program))
}

/// Writes the worker's program to `dir` (when missing or different) and returns its path.
pub(crate) fn script_in(dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(".orch-dbt-worker.py");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(SCRIPT) {
        // Written whole under another name, then moved: a worker starting meanwhile reads
        // either the old program or the new one, never half of one.
        let partial = dir.join(format!(".orch-dbt-worker.py.{}", std::process::id()));
        std::fs::write(&partial, SCRIPT)
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        std::fs::rename(&partial, &path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_of_a_console_script() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let venv = write(
            "dbt",
            "#!/venv/bin/python3\n# -*- coding: utf-8 -*-\nimport sys\n",
        );
        assert_eq!(python_of(&venv), Some(PathBuf::from("/venv/bin/python3")));
        let env = write("dbt-env", "#!/usr/bin/env python3\n");
        assert_eq!(python_of(&env), Some(PathBuf::from("python3")));
        let shell = write("dbt-sh", "#!/bin/sh\necho fake dbt\n");
        assert_eq!(python_of(&shell), None);
        assert_eq!(python_of(&dir.path().join("missing")), None);
    }
}
