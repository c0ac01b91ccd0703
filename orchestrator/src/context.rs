//! What an asset's compute receives and returns: the [`AssetContext`] (run id, partition and
//! time window, a logger whose lines are stored, a cancellation token, resources) and the
//! [`Materialization`] it produces, with its metadata and check results.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::asset::{AssetKey, Severity};
use crate::event::{LogLevel, LogLine, LogStream};
use crate::execute::sink::EventSink;
use crate::execute::step::StepRecorder;
use crate::metadata::{self, Metadata, MetadataValue};
use crate::partitions::TimeWindow;
use crate::plan::StepPartition;
use crate::run::RunId;

/// Shared resources (clients, paths, settings) that computes look up by type.
#[derive(Clone, Default)]
pub struct Resources {
    map: Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resources({} entries)", self.map.len())
    }
}

impl Resources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a resource, replacing any of the same type.
    pub fn with<T: Any + Send + Sync>(mut self, value: T) -> Self {
        Arc::make_mut(&mut self.map).insert(TypeId::of::<T>(), Arc::new(value));
        self
    }

    /// These resources with `other`'s added (`other` wins on a clash).
    pub fn merge(&self, other: &Resources) -> Resources {
        let mut map = (*self.map).clone();
        map.extend(other.map.iter().map(|(k, v)| (*k, v.clone())));
        Resources { map: Arc::new(map) }
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.map
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }
}

/// The result of a check, returned by a check's evaluate function or reported by a compute.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub check_name: String,
    /// The asset checked; `None` means the step's only asset.
    pub asset_key: Option<AssetKey>,
    pub passed: bool,
    /// `None` takes the severity declared in the check's spec.
    pub severity: Option<Severity>,
    pub description: Option<String>,
    pub metadata: Metadata,
}

impl CheckResult {
    pub fn new(check_name: impl Into<String>, passed: bool) -> Self {
        CheckResult {
            check_name: check_name.into(),
            asset_key: None,
            passed,
            severity: None,
            description: None,
            metadata: Metadata::new(),
        }
    }

    pub fn passed(check_name: impl Into<String>) -> Self {
        Self::new(check_name, true)
    }

    pub fn failed(check_name: impl Into<String>) -> Self {
        Self::new(check_name, false)
    }

    pub fn for_asset(mut self, asset_key: AssetKey) -> Self {
        self.asset_key = Some(asset_key);
        self
    }

    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    pub fn meta(mut self, key: &str, value: impl Into<MetadataValue>) -> Self {
        self.metadata.insert(key, value);
        self
    }
}

/// One asset's materialization: its metadata and any check results computed with it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Materialization {
    pub metadata: Metadata,
    pub checks: Vec<CheckResult>,
}

impl Materialization {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn row_count(self, rows: u64) -> Self {
        self.meta(metadata::ROW_COUNT, rows)
    }

    pub fn bytes(self, bytes: u64) -> Self {
        self.meta(metadata::BYTES, bytes)
    }

    pub fn meta(mut self, key: &str, value: impl Into<MetadataValue>) -> Self {
        self.metadata.insert(key, value);
        self
    }

    pub fn check(mut self, result: CheckResult) -> Self {
        self.checks.push(result);
        self
    }
}

/// What a compute returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The materialization of the step's only asset.
    Asset(Materialization),
    /// Materializations of some of the step's assets.
    Assets(Vec<(AssetKey, Materialization)>),
    /// Everything was reported through [`AssetContext::report_materialization`].
    Reported,
}

impl From<Materialization> for Output {
    fn from(m: Materialization) -> Self {
        Output::Asset(m)
    }
}

impl From<()> for Output {
    fn from((): ()) -> Self {
        Output::Reported
    }
}

/// An asset compute's failure. Any error converts into one (`?` works on any error type);
/// [`ComputeError::fatal`] marks one that retrying cannot fix.
pub struct ComputeError {
    message: String,
    causes: Vec<String>,
    retryable: bool,
}

impl ComputeError {
    /// A failure that the step's retry policy may retry.
    pub fn new(message: impl Into<String>) -> Self {
        ComputeError {
            message: message.into(),
            causes: Vec::new(),
            retryable: true,
        }
    }

    /// A failure that no retry can fix: the step fails at once.
    pub fn fatal(message: impl Into<String>) -> Self {
        ComputeError {
            retryable: false,
            ..ComputeError::new(message)
        }
    }

    /// The run was canceled while the compute ran.
    pub fn canceled() -> Self {
        ComputeError::fatal("canceled")
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn causes(&self) -> &[String] {
        &self.causes
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ComputeError {
    fn from(e: E) -> Self {
        let mut causes = Vec::new();
        let mut source = e.source();
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        ComputeError {
            message: e.to_string(),
            causes,
            retryable: true,
        }
    }
}

impl fmt::Display for ComputeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for cause in &self.causes {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ComputeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ComputeError({self})")
    }
}

/// A step's logger: each line is stored with the step (and also goes to `tracing`).
#[derive(Clone)]
pub struct StepLogger {
    run_id: RunId,
    step_key: Arc<str>,
    sink: EventSink,
}

impl fmt::Debug for StepLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepLogger({})", self.step_key)
    }
}

impl StepLogger {
    pub(crate) fn new(run_id: RunId, step_key: Arc<str>, sink: EventSink) -> Self {
        StepLogger {
            run_id,
            step_key,
            sink,
        }
    }

    pub fn debug(&self, message: impl Into<String>) {
        self.line(LogStream::Log, LogLevel::Debug, message.into());
    }

    pub fn info(&self, message: impl Into<String>) {
        self.line(LogStream::Log, LogLevel::Info, message.into());
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.line(LogStream::Log, LogLevel::Warn, message.into());
    }

    pub fn error(&self, message: impl Into<String>) {
        self.line(LogStream::Log, LogLevel::Error, message.into());
    }

    pub(crate) fn line(&self, stream: LogStream, level: LogLevel, message: String) {
        tracing::debug!(step = %self.step_key, stream = stream.as_str(), "{message}");
        self.sink.log(LogLine {
            run_id: self.run_id,
            step_key: self.step_key.to_string(),
            stream,
            level,
            timestamp: Utc::now(),
            message,
        });
    }
}

/// Everything a compute gets: where it is (run, step, assets, partition) and what it may use
/// (logger, cancellation, resources). Cheap to clone.
#[derive(Clone)]
pub struct AssetContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    run_id: RunId,
    step_key: Arc<str>,
    assets: Vec<AssetKey>,
    partition: StepPartition,
    attempt: u32,
    log: StepLogger,
    cancel: CancellationToken,
    resources: Resources,
    recorder: Arc<StepRecorder>,
    /// Child-process stdout lines that start with `orch:`, for computes that read them back.
    captured: Arc<Mutex<Vec<String>>>,
}

impl fmt::Debug for AssetContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssetContext")
            .field("run_id", &self.inner.run_id)
            .field("step_key", &self.inner.step_key)
            .field("partition", &self.inner.partition)
            .field("attempt", &self.inner.attempt)
            .finish()
    }
}

/// The parts of a context, as the executor builds it.
pub(crate) struct ContextParts {
    pub run_id: RunId,
    pub step_key: Arc<str>,
    pub assets: Vec<AssetKey>,
    pub partition: StepPartition,
    pub attempt: u32,
    pub sink: EventSink,
    pub cancel: CancellationToken,
    pub resources: Resources,
    pub recorder: Arc<StepRecorder>,
}

impl AssetContext {
    pub(crate) fn new(parts: ContextParts) -> Self {
        let log = StepLogger::new(parts.run_id, parts.step_key.clone(), parts.sink);
        AssetContext {
            inner: Arc::new(ContextInner {
                run_id: parts.run_id,
                step_key: parts.step_key,
                assets: parts.assets,
                partition: parts.partition,
                attempt: parts.attempt,
                log,
                cancel: parts.cancel,
                resources: parts.resources,
                recorder: parts.recorder,
                captured: Arc::new(Mutex::new(Vec::new())),
            }),
        }
    }

    pub fn run_id(&self) -> RunId {
        self.inner.run_id
    }

    pub fn step_key(&self) -> &str {
        &self.inner.step_key
    }

    /// The step's asset when it materializes exactly one (the usual case).
    pub fn asset_key(&self) -> &AssetKey {
        &self.inner.assets[0]
    }

    /// The assets this step is to materialize (a subset of a multi-asset definition).
    pub fn asset_keys(&self) -> &[AssetKey] {
        &self.inner.assets
    }

    pub fn partition(&self) -> &StepPartition {
        &self.inner.partition
    }

    /// The partition key, for a step over one partition.
    pub fn partition_key(&self) -> Option<&str> {
        self.inner.partition.key()
    }

    /// The time window the step covers, for time-partitioned assets (a range's whole window).
    pub fn partition_window(&self) -> Option<TimeWindow> {
        self.inner.partition.window()
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    pub fn log(&self) -> &StepLogger {
        &self.inner.log
    }

    /// Fires when the run is canceled. Long computes should select on it.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    pub fn is_canceled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    pub fn resources(&self) -> &Resources {
        &self.inner.resources
    }

    /// A resource by type, or an error naming the missing type.
    pub fn resource<T: Any + Send + Sync>(&self) -> Result<Arc<T>, ComputeError> {
        self.inner.resources.get::<T>().ok_or_else(|| {
            ComputeError::fatal(format!(
                "resource {} is not configured",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Records an asset's materialization now, before the compute returns (for computes that
    /// materialize many assets, like a dbt build).
    pub fn report_materialization(&self, asset_key: AssetKey, materialization: Materialization) {
        self.inner.recorder.materialized(asset_key, materialization);
    }

    /// Records a check result now.
    pub fn report_check(&self, result: CheckResult) {
        self.inner.recorder.check(result);
    }

    /// The stdout lines of this step's child processes that start with `orch:` (a channel
    /// for commands to report metadata).
    pub fn captured_stdout(&self) -> Arc<Mutex<Vec<String>>> {
        self.inner.captured.clone()
    }

    /// Runs a child process to completion. Its stdout and stderr lines are stored as the
    /// step's logs; cancellation kills its whole process group (SIGTERM, then SIGKILL after
    /// `grace`). A non-zero exit is an error carrying the last lines of stderr.
    pub async fn run_command(
        &self,
        command: tokio::process::Command,
    ) -> Result<ExitStatus, ComputeError> {
        self.run_command_with(command, |line| Some((LogLevel::Info, line.to_owned())))
            .await
    }

    /// [`AssetContext::run_command`], with each stdout line handed to `on_stdout` as it
    /// arrives: it returns what to store as the step's log line (level and text), or `None`
    /// to store nothing. For tools whose output is a stream of structured events (dbt's JSON
    /// log), read while the tool runs.
    pub async fn run_command_with<F>(
        &self,
        mut command: tokio::process::Command,
        mut on_stdout: F,
    ) -> Result<ExitStatus, ComputeError>
    where
        F: FnMut(&str) -> Option<(LogLevel, String)> + Send + 'static,
    {
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| ComputeError::fatal(format!("cannot start {program}: {e}")))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let log_out = self.inner.log.clone();
        let log_err = self.inner.log.clone();
        let captured = self.inner.captured.clone();
        let out_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("orch:") {
                    captured.lock().expect("captured lock").push(line.clone());
                }
                if let Some((level, text)) = on_stdout(&line) {
                    log_out.line(LogStream::Stdout, level, text);
                }
            }
        });
        let err_task = tokio::spawn(async move {
            let mut tail: Vec<String> = Vec::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tail.push(line.clone());
                if tail.len() > 20 {
                    tail.remove(0);
                }
                log_err.line(LogStream::Stderr, LogLevel::Info, line);
            }
            tail
        });
        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| ComputeError::new(format!("waiting for {program}: {e}")))?,
            () = self.inner.cancel.cancelled() => {
                if let Some(pid) = pid {
                    kill_group(pid, Signal::Term);
                    let grace = Duration::from_secs(5);
                    if tokio::time::timeout(grace, child.wait()).await.is_err() {
                        kill_group(pid, Signal::Kill);
                        let _ = child.wait().await;
                    }
                    // Whatever the group's leader did, leave no member behind.
                    kill_group(pid, Signal::Kill);
                }
                let _ = out_task.await;
                let _ = err_task.await;
                return Err(ComputeError::canceled());
            }
        };
        let _ = out_task.await;
        let tail = err_task.await.unwrap_or_default();
        if status.success() {
            Ok(status)
        } else {
            Err(ComputeError::new(exit_message(&program, status, &tail)))
        }
    }
}

/// `sh exited with status 3: cannot reach the warehouse`, then the last lines of stderr if
/// there are more than one.
fn exit_message(program: &str, status: ExitStatus, tail: &[String]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    };
    let mut message = format!("{program} exited with {how}");
    if let Some(last) = tail.iter().rev().find(|l| !l.trim().is_empty()) {
        message.push_str(": ");
        message.push_str(last.trim());
    }
    if tail.len() > 1 {
        message.push_str("\nlast lines of stderr:\n");
        message.push_str(&tail.join("\n"));
    }
    message
}

/// Makes the child receive SIGKILL when orch dies (even by SIGKILL), so that a run whose
/// daemon was killed does not keep a step running while the run is re-queued elsewhere.
/// Linux only; grandchildren that the child starts are not covered.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(2) is async-signal-safe, the only kind of call allowed between fork and
    // exec; it touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// Sends a signal to a whole process group (the child made itself its group's leader).
#[allow(unsafe_code)]
fn kill_group(pid: u32, signal: Signal) {
    let sig = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group; it has no memory
        // effects on this process.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}
