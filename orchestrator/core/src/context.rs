//! What an asset's compute receives and returns: the [`AssetContext`] (run id, partition and
//! time window, a logger whose lines are stored, cancellation, resources, child processes) and
//! the [`Materialization`] it produces, with its metadata and check results.
//!
//! The context is a handle on a [`StepHost`], which the runtime implements: this crate says
//! what a compute may ask for, the runtime does it (stores log lines and events, kills child
//! processes on cancellation). So asset definitions depend on no runtime.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::process::ExitStatus;
use std::sync::Arc;

use crate::asset::{AssetKey, BoxFuture, Severity};
use crate::event::{LogLevel, LogStream};
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

/// What a step's compute may ask of the runtime that executes it. The runtime implements it
/// (`orch::execute`); tests may too.
pub trait StepHost: Send + Sync {
    /// Stores one line of the step's logs.
    fn log(&self, stream: LogStream, level: LogLevel, message: String);
    /// Records an asset's materialization now.
    fn report_materialization(&self, asset_key: AssetKey, materialization: Materialization);
    /// Records a check result now.
    fn report_check(&self, result: CheckResult);
    /// Whether the run was canceled.
    fn is_canceled(&self) -> bool;
    /// Resolves when the run is canceled.
    fn canceled(&self) -> BoxFuture<()>;
    /// Runs a child process to completion, its output stored as the step's logs (stdout lines
    /// through `on_stdout`), killed with its whole process group on cancellation.
    fn run_command(
        &self,
        command: std::process::Command,
        on_stdout: StdoutFilter,
    ) -> BoxFuture<Result<ExitStatus, ComputeError>>;
    /// The stdout lines of the step's child processes that start with `orch:`, so far.
    fn captured_stdout(&self) -> Vec<String>;
}

/// What to store of a child's stdout line: its level and text, or nothing.
pub type StdoutFilter = Box<dyn FnMut(&str) -> Option<(LogLevel, String)> + Send>;

/// A step's logger: each line is stored with the step.
#[derive(Clone)]
pub struct StepLogger {
    step_key: Arc<str>,
    host: Arc<dyn StepHost>,
}

impl fmt::Debug for StepLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepLogger({})", self.step_key)
    }
}

impl StepLogger {
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

    /// A line a tool printed on its standard output, at `level`: what
    /// [`AssetContext::run_command_with`] stores, for a tool the compute talks to otherwise
    /// (a long-lived process serving several steps).
    pub fn stdout(&self, level: LogLevel, message: impl Into<String>) {
        self.line(LogStream::Stdout, level, message.into());
    }

    fn line(&self, stream: LogStream, level: LogLevel, message: String) {
        self.host.log(stream, level, message);
    }
}

/// Where a step is: its run, key, assets, partition and attempt.
#[derive(Clone, Debug)]
pub struct StepInfo {
    pub run_id: RunId,
    pub step_key: Arc<str>,
    pub assets: Vec<AssetKey>,
    pub partition: StepPartition,
    /// From 1.
    pub attempt: u32,
}

/// Everything a compute gets: where it is (run, step, assets, partition) and what it may use
/// (logger, cancellation, resources, child processes). Cheap to clone.
#[derive(Clone)]
pub struct AssetContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    info: StepInfo,
    log: StepLogger,
    resources: Resources,
    host: Arc<dyn StepHost>,
}

impl fmt::Debug for AssetContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssetContext")
            .field("run_id", &self.inner.info.run_id)
            .field("step_key", &self.inner.info.step_key)
            .field("partition", &self.inner.info.partition)
            .field("attempt", &self.inner.info.attempt)
            .finish()
    }
}

impl AssetContext {
    /// A context for one attempt of a step, served by `host`.
    pub fn new(info: StepInfo, resources: Resources, host: Arc<dyn StepHost>) -> Self {
        let log = StepLogger {
            step_key: info.step_key.clone(),
            host: host.clone(),
        };
        AssetContext {
            inner: Arc::new(ContextInner {
                info,
                log,
                resources,
                host,
            }),
        }
    }

    pub fn run_id(&self) -> RunId {
        self.inner.info.run_id
    }

    pub fn step_key(&self) -> &str {
        &self.inner.info.step_key
    }

    /// The step's asset when it materializes exactly one (the usual case).
    pub fn asset_key(&self) -> &AssetKey {
        &self.inner.info.assets[0]
    }

    /// The assets this step is to materialize (a subset of a multi-asset definition).
    pub fn asset_keys(&self) -> &[AssetKey] {
        &self.inner.info.assets
    }

    pub fn partition(&self) -> &StepPartition {
        &self.inner.info.partition
    }

    /// The partition key, for a step over one partition.
    pub fn partition_key(&self) -> Option<&str> {
        self.inner.info.partition.key()
    }

    /// The time window the step covers, for time-partitioned assets (a range's whole window).
    pub fn partition_window(&self) -> Option<TimeWindow> {
        self.inner.info.partition.window()
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.info.attempt
    }

    pub fn log(&self) -> &StepLogger {
        &self.inner.log
    }

    /// Resolves when the run is canceled. Long computes should select on it.
    pub fn canceled(&self) -> BoxFuture<()> {
        self.inner.host.canceled()
    }

    pub fn is_canceled(&self) -> bool {
        self.inner.host.is_canceled()
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
        self.inner
            .host
            .report_materialization(asset_key, materialization);
    }

    /// Records a check result now.
    pub fn report_check(&self, result: CheckResult) {
        self.inner.host.report_check(result);
    }

    /// The stdout lines of this step's child processes that start with `orch:` (a channel
    /// for commands to report metadata), so far.
    pub fn captured_stdout(&self) -> Vec<String> {
        self.inner.host.captured_stdout()
    }

    /// Runs a child process to completion. Its stdout and stderr lines are stored as the
    /// step's logs; cancellation kills its whole process group. A non-zero exit is an error
    /// carrying the last lines of stderr.
    pub async fn run_command(
        &self,
        command: std::process::Command,
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
        command: std::process::Command,
        on_stdout: F,
    ) -> Result<ExitStatus, ComputeError>
    where
        F: FnMut(&str) -> Option<(LogLevel, String)> + Send + 'static,
    {
        self.inner
            .host
            .run_command(command, Box::new(on_stdout))
            .await
    }
}
