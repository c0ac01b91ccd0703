//! Command assets: assets declared in `orch.toml` whose compute is a shell command, run in the
//! project root by `sh -c`, with its output stored as the step's logs.
//!
//! ```toml
//! [[asset]]
//! key = "reports/daily"
//! deps = ["marts/top_songs"]
//! command = "python make_report.py"
//! partitions = { daily = "2026-11-01", timezone = "UTC" }
//! retry = { max_attempts = 3, delay_ms = 500, backoff = "exponential", jitter = "full" }
//! ```
//!
//! The command sees `ORCH_RUN_ID`, `ORCH_ASSET_KEY`, `ORCH_STEP_KEY`, `ORCH_ATTEMPT`,
//! `ORCH_PARTITION_KEY`, `ORCH_PARTITION_START` and `ORCH_PARTITION_END` (RFC 3339) and
//! `ORCH_PROJECT_DIR`. A stdout line `orch:metadata {"row_count": 12}` adds metadata to the
//! materialization.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::asset::{
    AssetsDefinition, Backoff, CheckSpec, DefinitionError, Jitter, RetryPolicy, Severity, asset,
};
use crate::context::{AssetContext, CheckResult, ComputeError, Materialization};
use crate::metadata::{self, Metadata, MetadataValue};
use crate::partitions::{PartitionError, PartitionsDefinition};

/// The prefix of a stdout line that carries metadata.
pub const METADATA_PREFIX: &str = "orch:metadata ";

/// One `[[asset]]` table of `orch.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandAssetConfig {
    pub key: String,
    pub command: String,
    #[serde(default)]
    pub deps: Vec<String>,
    pub group: Option<String>,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub owners: Vec<String>,
    pub description: Option<String>,
    pub code_version: Option<String>,
    pub partitions: Option<PartitionsConfig>,
    pub retry: Option<RetryConfig>,
    pub pool: Option<String>,
    #[serde(default)]
    pub checks: Vec<CommandCheckConfig>,
    /// How stale the asset may become before the daemon reports it: `90s`, `15m`, `2h`, `1d`.
    pub freshness: Option<String>,
}

/// `partitions = { hourly = "2026-11-01-00:00", timezone = "UTC" }`, `{ daily = ... }` or
/// `{ static = ["a", "b"] }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartitionsConfig {
    pub hourly: Option<String>,
    pub daily: Option<String>,
    #[serde(rename = "static")]
    pub static_keys: Option<Vec<String>>,
    pub timezone: Option<String>,
}

/// `retry = { max_attempts = 3, delay_ms = 500, backoff = "linear", jitter = "full" }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub max_attempts: u32,
    #[serde(default)]
    pub delay_ms: u64,
    pub backoff: Option<String>,
    pub jitter: Option<String>,
}

/// A check run as a command after the asset materializes; exit 0 passes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandCheckConfig {
    pub name: String,
    pub command: String,
    pub severity: Option<String>,
    #[serde(default)]
    pub blocking: bool,
    pub description: Option<String>,
}

impl PartitionsConfig {
    pub fn to_definition(&self) -> Result<PartitionsDefinition, PartitionError> {
        let tz = self.timezone.as_deref().unwrap_or("UTC");
        match (&self.hourly, &self.daily, &self.static_keys) {
            (Some(start), None, None) => PartitionsDefinition::hourly(start, tz),
            (None, Some(start), None) => PartitionsDefinition::daily(start, tz),
            (None, None, Some(keys)) => PartitionsDefinition::static_keys(keys.clone()),
            _ => Err(PartitionError::Definition(
                "give exactly one of `hourly = START`, `daily = START` or `static = [KEYS]`".into(),
            )),
        }
    }
}

impl RetryConfig {
    pub fn to_policy(&self) -> Result<RetryPolicy, String> {
        let backoff = match self.backoff.as_deref().unwrap_or("constant") {
            "constant" => Backoff::Constant,
            "linear" => Backoff::Linear,
            "exponential" => Backoff::Exponential,
            other => {
                return Err(format!(
                    "unknown backoff `{other}` (use constant, linear or exponential)"
                ));
            }
        };
        let jitter = match self.jitter.as_deref().unwrap_or("none") {
            "none" => Jitter::None,
            "full" => Jitter::Full,
            "plus_minus" => Jitter::PlusMinus(0.5),
            other => {
                return Err(format!(
                    "unknown jitter `{other}` (use none, full or plus_minus)"
                ));
            }
        };
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        Ok(RetryPolicy::attempts(self.max_attempts)
            .with_delay(Duration::from_millis(self.delay_ms))
            .with_backoff(backoff)
            .with_jitter(jitter))
    }
}

/// Builds the command assets declared in `orch.toml`, run in `root`.
pub fn definitions(
    configs: &[CommandAssetConfig],
    root: &Path,
) -> Result<Vec<AssetsDefinition>, DefinitionError> {
    configs.iter().map(|c| definition(c, root)).collect()
}

fn definition(
    config: &CommandAssetConfig,
    root: &Path,
) -> Result<AssetsDefinition, DefinitionError> {
    let invalid = |message: String| DefinitionError::Invalid {
        asset: config.key.clone(),
        message,
    };
    let mut builder = asset(&config.key).deps(&config.deps).kind("command");
    if let Some(group) = &config.group {
        builder = builder.group(group);
    }
    for kind in &config.kinds {
        builder = builder.kind(kind);
    }
    for (k, v) in &config.tags {
        builder = builder.tag(k, v);
    }
    for owner in &config.owners {
        builder = builder.owner(owner);
    }
    if let Some(d) = &config.description {
        builder = builder.description(d);
    }
    if let Some(v) = &config.code_version {
        builder = builder.code_version(v);
    }
    if let Some(p) = &config.partitions {
        builder = builder.partitions(p.to_definition().map_err(|e| invalid(e.to_string()))?);
    }
    if let Some(r) = &config.retry {
        builder = builder.retry(r.to_policy().map_err(invalid)?);
    }
    if let Some(pool) = &config.pool {
        builder = builder.pool(pool);
    }
    if let Some(freshness) = &config.freshness {
        builder = builder.freshness(
            crate::daemon::freshness::parse_duration(freshness)
                .map_err(|e| invalid(format!("freshness: {e}")))?,
        );
    }
    for check in &config.checks {
        let severity = match &check.severity {
            Some(s) => Severity::parse(s).ok_or_else(|| {
                invalid(format!(
                    "check `{}`: unknown severity `{s}` (use warn or error)",
                    check.name
                ))
            })?,
            None => Severity::Error,
        };
        let root = root.to_path_buf();
        let name = check.name.clone();
        let command = check.command.clone();
        let mut spec = CheckSpec::new(&check.name)
            .severity(severity)
            .blocking(check.blocking)
            .evaluate(move |ctx: AssetContext, _md: Metadata| {
                let (root, name, command) = (root.clone(), name.clone(), command.clone());
                async move {
                    let cmd = shell(&ctx, &root, &command);
                    match ctx.run_command(cmd).await {
                        Ok(_) => Ok(CheckResult::passed(name)),
                        Err(e) if ctx.is_canceled() => Err(e),
                        Err(e) => Ok(CheckResult::failed(name).description(e.to_string())),
                    }
                }
            });
        if let Some(d) = &check.description {
            spec = spec.description(d);
        }
        builder = builder.check(spec);
    }
    let root: PathBuf = root.to_path_buf();
    let command = config.command.clone();
    builder.compute(move |ctx: AssetContext| {
        let (root, command) = (root.clone(), command.clone());
        async move { run(ctx, root, command).await }
    })
}

fn shell(ctx: &AssetContext, root: &Path, command: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(command).current_dir(root);
    cmd.env("ORCH_RUN_ID", ctx.run_id().to_string())
        .env("ORCH_ASSET_KEY", ctx.asset_key().to_string())
        .env("ORCH_STEP_KEY", ctx.step_key())
        .env("ORCH_ATTEMPT", ctx.attempt().to_string())
        .env("ORCH_PROJECT_DIR", root);
    if let Some(key) = ctx.partition().first_key() {
        cmd.env("ORCH_PARTITION_KEY", key);
    }
    if let Some(key) = ctx.partition().last_key() {
        cmd.env("ORCH_PARTITION_KEY_END", key);
    }
    if let Some(window) = ctx.partition_window() {
        cmd.env("ORCH_PARTITION_START", window.start.to_rfc3339())
            .env("ORCH_PARTITION_END", window.end.to_rfc3339());
    }
    cmd
}

async fn run(
    ctx: AssetContext,
    root: PathBuf,
    command: String,
) -> Result<Materialization, ComputeError> {
    let started = Instant::now();
    let cmd = shell(&ctx, &root, &command);
    ctx.run_command(cmd).await?;
    let mut materialization = Materialization::new();
    for (k, v) in reported_metadata(&ctx) {
        materialization = materialization.meta(&k, v);
    }
    Ok(materialization.meta(metadata::DURATION_MS, started.elapsed()))
}

/// Metadata the command printed on `orch:metadata` lines, read back from the step's logs as
/// the context captured them.
fn reported_metadata(ctx: &AssetContext) -> Vec<(String, MetadataValue)> {
    let lines = ctx.captured_stdout();
    let mut out = Vec::new();
    for line in lines.iter() {
        let Some(json) = line.strip_prefix(METADATA_PREFIX) else {
            continue;
        };
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json) {
            Ok(map) => {
                for (k, v) in map {
                    let value = match v {
                        serde_json::Value::Number(n) if n.is_i64() => {
                            MetadataValue::Int(n.as_i64().unwrap_or_default())
                        }
                        serde_json::Value::Number(n) => {
                            MetadataValue::Float(n.as_f64().unwrap_or_default())
                        }
                        serde_json::Value::String(s) => MetadataValue::Text(s),
                        serde_json::Value::Bool(b) => MetadataValue::Bool(b),
                        other => MetadataValue::Json(other),
                    };
                    out.push((k, value));
                }
            }
            Err(e) => ctx.log().warn(format!(
                "ignoring a malformed `{}` line: {e}",
                METADATA_PREFIX.trim()
            )),
        }
    }
    out
}
