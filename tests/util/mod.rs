//! Test fixtures: a throwaway orch project that runs the real `orch` binary, and databases.

pub mod db;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary project folder with its own `orch.toml` and run history.
pub struct Project {
    dir: tempfile::TempDir,
    database_url: Option<String>,
}

impl Project {
    /// A project with only the command assets in `assets_toml` (no compiled-in assets).
    pub fn new(assets_toml: &str) -> Project {
        let project = Project::empty();
        project.write(
            "orch.toml",
            &format!("[assets]\nbuiltin = false\n\n{assets_toml}"),
        );
        project
    }

    /// A project with no orch.toml: the compiled-in assets and every default.
    pub fn empty() -> Project {
        Project {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: None,
        }
    }

    /// Uses this run history instead of the default SQLite file.
    pub fn with_database(mut self, url: &str) -> Project {
        self.database_url = Some(url.to_owned());
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// `orch ARGS` in this project, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        // A target directory shared by several worktrees holds in `debug/orch` whichever built
        // last: ORCH_TEST_BIN names this worktree's binary (`debug/deps/orch-<hash>`) instead.
        let bin =
            std::env::var_os("ORCH_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_orch").into());
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("ORCH_PROJECT_DIR", self.dir.path())
            .env_remove("ORCH_DATABASE_URL")
            .env_remove("ORCH_MAX_CONCURRENT")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        if let Some(url) = &self.database_url {
            cmd.env("ORCH_DATABASE_URL", url);
        }
        cmd
    }

    /// Runs `orch ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("run orch");
        Run { output }
    }
}

/// A finished `orch` process.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts the exit code, showing both streams when it is wrong.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            code,
            "orch exited {} instead of {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout().trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }
}

/// Whether a process is still alive (and not a zombie).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the command name in parentheses.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}

/// A webhook receiver on 127.0.0.1: answers 200 to every POST and keeps the JSON bodies.
pub struct Webhook {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    pub async fn start() -> Webhook {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/hooks/T000/secret-token",
            listener.local_addr().unwrap()
        );
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read the headers, then the body by its Content-Length.
                    let (head_end, length) = loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = &buf[head_end..(head_end + length).min(buf.len())];
                    if let Ok(json) = serde_json::from_slice(body) {
                        store.lock().unwrap().push(json);
                    }
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        Webhook {
            url,
            received,
            task,
        }
    }

    pub fn received(&self) -> Vec<serde_json::Value> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}
