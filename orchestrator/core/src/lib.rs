//! orch-core: what orch knows without running anything. Asset keys and specs, partitions,
//! the asset graph, selection, planning, run statuses and their transitions, and the event
//! log's vocabulary.
//!
//! The layers, from the bottom: [`asset`] and [`partitions`] describe what exists; [`graph`]
//! validates the definitions into a DAG; [`selection`] and [`plan`] turn a user's request into
//! steps. Nothing here does IO, reads a clock or draws a random number: ids and times are
//! passed in, so every function can be tested exhaustively without services. A compute
//! reaches the runtime that executes it through [`context::StepHost`], which the runtime
//! implements. `tests/structure.rs` checks that this crate's dependency tree holds no runtime
//! crate, and `clippy.toml` here forbids reading the clock.

pub mod asset;
pub mod automation;
pub mod backfill;
pub mod context;
pub mod cron;
pub mod event;
pub mod graph;
pub mod metadata;
pub mod partitions;
pub mod plan;
pub mod request;
pub mod run;
pub mod selection;
pub mod steps;
pub mod text;

#[cfg(test)]
mod fuzz;

pub use asset::{
    AssetDep, AssetKey, AssetSpec, AssetsDefinition, Backoff, CheckSpec, Jitter, RetryPolicy,
    Severity, asset,
};
pub use context::{AssetContext, CheckResult, ComputeError, Materialization, Output, Resources};
pub use graph::{AssetGraph, GraphError};
pub use metadata::{Metadata, MetadataValue};
pub use partitions::{
    Cadence, PartitionError, PartitionMapping, PartitionsDefinition, TimeWindow,
    TimeWindowPartitions, UpstreamPartitions,
};
pub use plan::{PartitionRequest, Plan, PlanError, Step, StepPartition};
pub use request::{Launcher, RequestError, RunRequest};
pub use run::{Run, RunId, RunStatus};
pub use selection::{AssetStatus, Selection, SelectionError, StatusLookup};

/// How many cases each fuzzing property of the test suites runs: `ORCH_FUZZ_CASES`, 256 by
/// default (a few seconds in all; set it higher for a longer run).
pub fn fuzz_cases() -> u32 {
    std::env::var("ORCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}
