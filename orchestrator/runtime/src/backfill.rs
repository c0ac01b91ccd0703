//! Launching a backfill: planned in the core ([`orch_core::backfill`], one function for
//! `orch backfill`, the web UI and its API), stored here with its runs in one transaction.

use chrono::Utc;

use crate::graph::AssetGraph;
use crate::storage::{Backfill, Storage, StorageError};

pub use orch_core::backfill::{BackfillError, BackfillRequest, PlannedBackfill};

/// Plans a backfill with a fresh id, its runs made now.
pub fn plan_backfill(
    graph: &AssetGraph,
    request: &BackfillRequest<'_>,
) -> Result<PlannedBackfill, BackfillError> {
    let id = crate::new_run_id().to_string();
    orch_core::backfill::plan_backfill(graph, request, &id, &mut crate::new_run_id, Utc::now())
}

/// Stores a planned backfill and its runs in one transaction, and wakes the daemons.
pub async fn launch_backfill(
    storage: &dyn Storage,
    planned: &PlannedBackfill,
) -> Result<Backfill, StorageError> {
    let backfill = Backfill {
        id: planned.id.clone(),
        selection: planned.selection.clone(),
        partition_from: planned.from.clone(),
        partition_to: planned.to.clone(),
        run_count: u32::try_from(planned.runs.len()).unwrap_or(u32::MAX),
        created_at: planned.created_at,
    };
    storage.create_backfill(&backfill, &planned.runs).await?;
    storage.notify_queue().await?;
    Ok(backfill)
}
