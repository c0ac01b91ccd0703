//! Asset definitions: keys, specs (deps, group, kinds, tags, owners, partitions), checks,
//! retry policies and the compute function that materializes them.
//!
//! One [`AssetsDefinition`] is one unit of computation. Most define a single asset (built with
//! [`asset`]); some, like a dbt project, define many assets that one call materializes
//! together, in which case the compute reports each asset through its context.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::context::{AssetContext, CheckResult, ComputeError, Output};
use crate::metadata::Metadata;
use crate::partitions::{PartitionMapping, PartitionsDefinition};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An asset's identity: one or more path segments, shown joined with `/`
/// (`staging/listen_events`). Segments hold ASCII letters, digits, `_` and `-`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssetKey(Vec<String>);

/// Why a string is not a valid asset key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("asset key is empty")]
    Empty,
    #[error("asset key `{key}` has an empty segment (keys look like `staging/listen_events`)")]
    EmptySegment { key: String },
    #[error(
        "asset key `{key}` has an invalid character {ch:?} at position {position}: segments may hold ASCII letters, digits, `_` and `-`"
    )]
    InvalidChar {
        key: String,
        ch: char,
        position: usize,
    },
}

impl AssetKey {
    /// Parses `a/b/c`.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.is_empty() {
            return Err(KeyError::Empty);
        }
        for (position, ch) in s.char_indices() {
            if !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '/') {
                return Err(KeyError::InvalidChar {
                    key: s.to_owned(),
                    ch,
                    position,
                });
            }
        }
        let parts: Vec<String> = s.split('/').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(KeyError::EmptySegment { key: s.to_owned() });
        }
        Ok(AssetKey(parts))
    }

    /// Builds a key from segments, validating each.
    pub fn from_parts<I, S>(parts: I) -> Result<Self, KeyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined: Vec<String> = parts.into_iter().map(|p| p.as_ref().to_owned()).collect();
        if joined.iter().any(|p| p.contains('/')) {
            let key = joined.join("/");
            let position = key.find("//").unwrap_or(0);
            return Err(KeyError::InvalidChar {
                key,
                ch: '/',
                position,
            });
        }
        Self::parse(&joined.join("/"))
    }

    pub fn parts(&self) -> &[String] {
        &self.0
    }

    /// The last segment (`listen_events` for `staging/listen_events`).
    pub fn name(&self) -> &str {
        self.0.last().map(String::as_str).unwrap_or_default()
    }

    /// The key as shown to users, `a/b`.
    pub fn to_user_string(&self) -> String {
        self.0.join("/")
    }
}

impl fmt::Display for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

impl fmt::Debug for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssetKey({self})")
    }
}

impl std::str::FromStr for AssetKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An edge from an asset to one it reads.
#[derive(Clone, Debug, PartialEq)]
pub struct AssetDep {
    pub key: AssetKey,
    /// How the downstream asset's partitions map onto this upstream's. `None` picks the
    /// default for the two partitions definitions (see [`PartitionMapping::default_for`]).
    pub mapping: Option<PartitionMapping>,
}

/// How bad a failed check is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warn,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "WARN" | "WARNING" => Some(Severity::Warn),
            "ERROR" => Some(Severity::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A function that evaluates a check after its asset materialized. It gets the step's context
/// and the materialization's metadata.
pub type CheckFn = Arc<
    dyn Fn(AssetContext, Metadata) -> BoxFuture<Result<CheckResult, ComputeError>> + Send + Sync,
>;

/// A check declared on an asset. Its result comes either from its own `evaluate` function, run
/// right after the asset materializes, or from the asset's compute, which reports it.
#[derive(Clone)]
pub struct CheckSpec {
    pub name: String,
    pub severity: Severity,
    /// A failed blocking check fails the step, so that downstream assets are skipped.
    pub blocking: bool,
    pub description: Option<String>,
    pub evaluate: Option<CheckFn>,
}

impl fmt::Debug for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckSpec")
            .field("name", &self.name)
            .field("severity", &self.severity)
            .field("blocking", &self.blocking)
            .field("evaluate", &self.evaluate.is_some())
            .finish()
    }
}

impl CheckSpec {
    pub fn new(name: impl Into<String>) -> Self {
        CheckSpec {
            name: name.into(),
            severity: Severity::Error,
            blocking: false,
            description: None,
            evaluate: None,
        }
    }

    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    pub fn blocking(mut self, blocking: bool) -> Self {
        self.blocking = blocking;
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the function that evaluates the check after each materialization.
    pub fn evaluate<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(AssetContext, Metadata) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CheckResult, ComputeError>> + Send + 'static,
    {
        self.evaluate = Some(Arc::new(move |ctx, md| Box::pin(f(ctx, md))));
        self
    }
}

/// How the delay between attempts grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// The same delay before every retry.
    Constant,
    /// `delay * n` before the n-th retry.
    Linear,
    /// `delay * 2^(n-1)` before the n-th retry.
    Exponential,
}

/// Randomness added to a retry delay so that retries of many steps do not line up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    None,
    /// A uniformly random delay between zero and the computed delay.
    Full,
    /// The computed delay plus or minus up to this fraction of it (0.0 to 1.0).
    PlusMinus(f64),
}

/// How often and how patiently a failed step is retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included. 1 means no retry.
    pub max_attempts: u32,
    pub delay: Duration,
    pub backoff: Backoff,
    pub jitter: Jitter,
    /// No retry waits longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            delay: Duration::from_secs(1),
            backoff: Backoff::Constant,
            jitter: Jitter::None,
            max_delay: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts with a constant delay.
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts,
            ..RetryPolicy::default()
        }
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before retry number `retry` (1 for the second attempt), before jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let retry = retry.max(1);
        let delay = match self.backoff {
            Backoff::Constant => self.delay,
            Backoff::Linear => self.delay.saturating_mul(retry),
            Backoff::Exponential => {
                let factor = 2u32.saturating_pow(retry - 1);
                self.delay.saturating_mul(factor)
            }
        };
        delay.min(self.max_delay)
    }

    /// The delay before retry number `retry`, with jitter drawn from `unit`, a number in [0, 1).
    pub fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let base = self.base_delay(retry);
        let unit = unit.clamp(0.0, 1.0);
        match self.jitter {
            Jitter::None => base,
            Jitter::Full => base.mul_f64(unit),
            Jitter::PlusMinus(fraction) => {
                let fraction = fraction.clamp(0.0, 1.0);
                let factor = 1.0 + fraction * (2.0 * unit - 1.0);
                base.mul_f64(factor.max(0.0)).min(self.max_delay)
            }
        }
    }
}

/// Everything orch knows about one asset, apart from how to compute it.
#[derive(Clone, Debug)]
pub struct AssetSpec {
    pub key: AssetKey,
    pub deps: Vec<AssetDep>,
    pub group: String,
    pub kinds: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
    pub owners: Vec<String>,
    pub description: Option<String>,
    /// Changes when the code that computes the asset changes; recorded with each
    /// materialization so that a changed version shows the asset as stale.
    pub code_version: Option<String>,
    pub partitions: Option<PartitionsDefinition>,
    /// Definition metadata shown in the catalog (a dbt model's SQL path, say).
    pub metadata: Metadata,
    pub checks: Vec<CheckSpec>,
    /// How stale the asset may become before the daemon reports it.
    pub freshness: Option<FreshnessPolicy>,
    /// When the daemon's automation materializes it (none: only when asked).
    pub automation: Option<crate::automation::Condition>,
}

/// How old an asset's data may become: for a time-partitioned asset, how long after a
/// partition's window ends it must be materialized (the latest materialized partition must end
/// within `max_lag` of now); for any other asset, the age of its latest materialization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreshnessPolicy {
    pub max_lag: Duration,
}

/// The group of assets that name none.
pub const DEFAULT_GROUP: &str = "default";

impl AssetSpec {
    pub fn new(key: AssetKey) -> Self {
        AssetSpec {
            key,
            deps: Vec::new(),
            group: DEFAULT_GROUP.to_owned(),
            kinds: BTreeSet::new(),
            tags: BTreeMap::new(),
            owners: Vec::new(),
            description: None,
            code_version: None,
            partitions: None,
            metadata: Metadata::new(),
            checks: Vec::new(),
            freshness: None,
            automation: None,
        }
    }
}

/// The compute of an assets definition: an async function of the step's context.
pub trait Compute: Send + Sync + 'static {
    fn call(&self, ctx: AssetContext) -> BoxFuture<Result<Output, ComputeError>>;
}

impl<F, Fut, O> Compute for F
where
    F: Fn(AssetContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ComputeError>> + Send + 'static,
    O: Into<Output>,
{
    fn call(&self, ctx: AssetContext) -> BoxFuture<Result<Output, ComputeError>> {
        let fut = self(ctx);
        Box::pin(async move { fut.await.map(Into::into) })
    }
}

/// How a run over a range of partitions is split into steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackfillPolicy {
    /// One step per partition.
    #[default]
    MultiRun,
    /// One step over the whole range (the compute reads the range from its context).
    SingleRun,
}

/// One unit of computation: the specs of the assets it materializes and the compute that
/// does it, with its retry policy and concurrency pool.
#[derive(Clone)]
pub struct AssetsDefinition {
    /// The name of the computation; for a single asset, its key.
    pub name: String,
    pub specs: Vec<AssetSpec>,
    pub compute: Arc<dyn Compute>,
    pub retry: RetryPolicy,
    /// Steps in the same pool share the pool's concurrency limit (from the config).
    pub pool: Option<String>,
    /// Whether a run may materialize only some of `specs` (a dbt project can; most
    /// multi-asset computes cannot and are planned whole).
    pub can_subset: bool,
    pub backfill: BackfillPolicy,
}

impl fmt::Debug for AssetsDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssetsDefinition")
            .field("name", &self.name)
            .field(
                "keys",
                &self
                    .specs
                    .iter()
                    .map(|s| s.key.to_string())
                    .collect::<Vec<_>>(),
            )
            .field("retry", &self.retry)
            .field("pool", &self.pool)
            .finish()
    }
}

impl AssetsDefinition {
    /// A definition of several assets computed together.
    pub fn multi(
        name: impl Into<String>,
        specs: Vec<AssetSpec>,
        compute: impl Compute,
    ) -> AssetsDefinition {
        AssetsDefinition {
            name: name.into(),
            specs,
            compute: Arc::new(compute),
            retry: RetryPolicy::default(),
            pool: None,
            can_subset: false,
            backfill: BackfillPolicy::MultiRun,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &AssetKey> {
        self.specs.iter().map(|s| &s.key)
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_pool(mut self, pool: impl Into<String>) -> Self {
        self.pool = Some(pool.into());
        self
    }

    pub fn with_subsetting(mut self, can_subset: bool) -> Self {
        self.can_subset = can_subset;
        self
    }

    pub fn with_backfill_policy(mut self, policy: BackfillPolicy) -> Self {
        self.backfill = policy;
        self
    }
}

/// Why an asset definition could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DefinitionError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("asset `{asset}`: {message}")]
    Invalid { asset: String, message: String },
}

/// Starts the definition of one asset: `asset("staging/listen_events").deps([...])...compute(f)`.
pub fn asset(key: &str) -> AssetBuilder {
    let mut errors = Vec::new();
    let key = match AssetKey::parse(key) {
        Ok(key) => key,
        Err(e) => {
            errors.push(DefinitionError::Key(e));
            AssetKey(vec!["invalid".to_owned()])
        }
    };
    AssetBuilder {
        spec: AssetSpec::new(key),
        retry: RetryPolicy::default(),
        pool: None,
        backfill: BackfillPolicy::MultiRun,
        errors,
    }
}

/// Builds a single-asset [`AssetsDefinition`]. Invalid input is reported by
/// [`AssetBuilder::compute`], so that definitions read as one expression.
#[derive(Debug)]
pub struct AssetBuilder {
    spec: AssetSpec,
    retry: RetryPolicy,
    pool: Option<String>,
    backfill: BackfillPolicy,
    errors: Vec<DefinitionError>,
}

impl AssetBuilder {
    /// Adds dependencies with the default partition mapping.
    pub fn deps<I, S>(mut self, deps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for dep in deps {
            match AssetKey::parse(dep.as_ref()) {
                Ok(key) => self.spec.deps.push(AssetDep { key, mapping: None }),
                Err(e) => self.errors.push(e.into()),
            }
        }
        self
    }

    /// Adds one dependency with an explicit partition mapping.
    pub fn dep_mapped(mut self, dep: &str, mapping: PartitionMapping) -> Self {
        match AssetKey::parse(dep) {
            Ok(key) => self.spec.deps.push(AssetDep {
                key,
                mapping: Some(mapping),
            }),
            Err(e) => self.errors.push(e.into()),
        }
        self
    }

    pub fn group(mut self, group: &str) -> Self {
        if group.is_empty()
            || !group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.errors.push(DefinitionError::Invalid {
                asset: self.spec.key.to_string(),
                message: format!(
                    "group `{group}` must be non-empty ASCII letters, digits, `_` or `-`"
                ),
            });
        }
        self.spec.group = group.to_owned();
        self
    }

    pub fn kind(mut self, kind: &str) -> Self {
        self.spec.kinds.insert(kind.to_owned());
        self
    }

    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.spec.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn owner(mut self, owner: &str) -> Self {
        self.spec.owners.push(owner.to_owned());
        self
    }

    pub fn description(mut self, description: &str) -> Self {
        self.spec.description = Some(description.to_owned());
        self
    }

    pub fn code_version(mut self, version: &str) -> Self {
        self.spec.code_version = Some(version.to_owned());
        self
    }

    pub fn partitions(mut self, partitions: PartitionsDefinition) -> Self {
        self.spec.partitions = Some(partitions);
        self
    }

    pub fn metadata(mut self, key: &str, value: impl Into<crate::MetadataValue>) -> Self {
        self.spec.metadata.insert(key, value);
        self
    }

    pub fn check(mut self, check: CheckSpec) -> Self {
        self.spec.checks.push(check);
        self
    }

    /// Declares when the daemon's automation materializes the asset
    /// ([`crate::automation::Condition::eager`], say).
    pub fn automation(mut self, condition: crate::automation::Condition) -> Self {
        self.spec.automation = Some(condition);
        self
    }

    /// Declares how stale the asset may become before the daemon reports it.
    pub fn freshness(mut self, max_lag: Duration) -> Self {
        self.spec.freshness = Some(FreshnessPolicy { max_lag });
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn pool(mut self, pool: &str) -> Self {
        self.pool = Some(pool.to_owned());
        self
    }

    pub fn backfill_policy(mut self, policy: BackfillPolicy) -> Self {
        self.backfill = policy;
        self
    }

    /// The spec as built so far.
    pub fn spec(&self) -> &AssetSpec {
        &self.spec
    }

    /// Finishes the definition with its compute.
    pub fn compute(self, compute: impl Compute) -> Result<AssetsDefinition, DefinitionError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        let mut names = BTreeSet::new();
        for check in &self.spec.checks {
            if !names.insert(check.name.as_str()) {
                return Err(DefinitionError::Invalid {
                    asset: self.spec.key.to_string(),
                    message: format!("check `{}` is declared twice", check.name),
                });
            }
        }
        Ok(AssetsDefinition {
            name: self.spec.key.to_string(),
            specs: vec![self.spec],
            compute: Arc::new(compute),
            retry: self.retry,
            pool: self.pool,
            can_subset: false,
            backfill: self.backfill,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_display_with_slashes() {
        let key = AssetKey::parse("staging/listen_events").unwrap();
        assert_eq!(key.parts(), ["staging", "listen_events"]);
        assert_eq!(key.to_string(), "staging/listen_events");
        assert_eq!(key.name(), "listen_events");
    }

    #[test]
    fn bad_keys_are_refused_with_the_position() {
        assert_eq!(AssetKey::parse(""), Err(KeyError::Empty));
        assert!(matches!(
            AssetKey::parse("a//b"),
            Err(KeyError::EmptySegment { .. })
        ));
        let err = AssetKey::parse("raw/listen events").unwrap_err();
        assert_eq!(
            err.to_string(),
            "asset key `raw/listen events` has an invalid character ' ' at position 10: segments may hold ASCII letters, digits, `_` and `-`"
        );
        assert!(AssetKey::from_parts(["a/b", "c"]).is_err());
    }

    #[test]
    fn retry_delays_follow_the_backoff() {
        let base = RetryPolicy::attempts(5).with_delay(Duration::from_millis(100));
        assert_eq!(base.base_delay(3), Duration::from_millis(100));
        let linear = base.with_backoff(Backoff::Linear);
        assert_eq!(linear.base_delay(1), Duration::from_millis(100));
        assert_eq!(linear.base_delay(3), Duration::from_millis(300));
        let exp = base.with_backoff(Backoff::Exponential);
        assert_eq!(exp.base_delay(1), Duration::from_millis(100));
        assert_eq!(exp.base_delay(4), Duration::from_millis(800));
        let full = exp.with_jitter(Jitter::Full);
        assert_eq!(full.delay_with(2, 0.5), Duration::from_millis(100));
        let pm = exp.with_jitter(Jitter::PlusMinus(0.5));
        assert_eq!(pm.delay_with(2, 0.0), Duration::from_millis(100));
        assert_eq!(pm.delay_with(2, 1.0), Duration::from_millis(300));
        for i in 0..100 {
            let d = full.delay_with(3, f64::from(i) / 100.0);
            assert!(d <= Duration::from_millis(400));
        }
    }
}
