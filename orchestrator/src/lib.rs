//! orch: an asset orchestrator. This crate is the engine: asset definitions, the asset graph,
//! selection, partitions, planning, execution and run history.
//!
//! The layers, from the bottom: [`asset`] and [`partitions`] describe what exists; [`graph`]
//! validates the definitions into a DAG; [`selection`] and [`plan`] turn a user's request into
//! steps without doing any IO; [`execute`] runs a plan on tokio and records every [`event`] and
//! [`run`] transition through the [`storage`] interface.

pub mod asset;
pub mod backfill;
pub mod command;
pub mod config;
pub mod context;
pub mod daemon;
pub mod dbt;
pub mod definitions;
pub mod event;
pub mod execute;
pub mod graph;
pub mod metadata;
pub mod notify;
pub mod partitions;
pub mod plan;
pub mod run;
pub mod selection;
pub mod storage;

pub use asset::{
    AssetDep, AssetKey, AssetSpec, AssetsDefinition, Backoff, CheckSpec, Jitter, RetryPolicy,
    Severity, asset,
};
pub use context::{AssetContext, CheckResult, ComputeError, Materialization, Output, Resources};
pub use definitions::Definitions;
pub use graph::{AssetGraph, GraphError};
pub use metadata::{Metadata, MetadataValue};
pub use partitions::{
    Cadence, PartitionError, PartitionMapping, PartitionsDefinition, TimeWindow,
    TimeWindowPartitions, UpstreamPartitions,
};
pub use plan::{PartitionRequest, Plan, PlanError, Step, StepPartition};
pub use run::{Run, RunId, RunStatus};
pub use selection::{Selection, SelectionError};
pub use storage::{Storage, StorageError};
