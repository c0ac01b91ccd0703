//! orch: the runtime of the asset orchestrator. Execution on tokio, the run history
//! (SQLite or Postgres), the daemon (schedules, sensors, the run queue, freshness),
//! notifications and `orch.toml`.
//!
//! What the runtime works on (assets, partitions, the graph, selection, plans, runs and
//! events) is defined in `orch-core`, re-exported here under the same paths, so that an asset
//! written against `orch::asset` or `orch::context` compiles against either crate. The runtime
//! adds: [`execute`], which runs a plan and records every [`event`] and [`run`] transition
//! through the [`storage`] interfaces; [`submit`], the one way from a request to a stored run;
//! [`daemon`]; [`config`]; [`command`] assets; and [`clock`], where ids and times come from.

pub use orch_core::{
    asset, context, event, graph, metadata, partitions, plan, request, run, selection, steps, text,
};

pub mod automation;
pub mod backfill;
pub mod clock;
pub mod command;
pub mod config;
pub mod daemon;
pub mod definitions;
pub mod execute;
pub mod metrics;
pub mod notify;
pub mod storage;
pub mod submit;

pub use clock::new_run_id;
pub use definitions::Definitions;
pub use orch_core::{
    AssetContext, AssetDep, AssetGraph, AssetKey, AssetSpec, AssetsDefinition, Backoff, Cadence,
    CheckResult, CheckSpec, ComputeError, GraphError, Jitter, Materialization, Metadata,
    MetadataValue, Output, PartitionError, PartitionMapping, PartitionRequest,
    PartitionsDefinition, Plan, PlanError, Resources, RetryPolicy, Run, RunId, RunRequest,
    RunStatus, Selection, SelectionError, Severity, Step, StepPartition, TimeWindow,
    TimeWindowPartitions, UpstreamPartitions,
};
pub use storage::{Storage, StorageError};
