//! Backfills: a selection over a range of partitions, as runs that the daemons execute. One
//! function plans them for every way a backfill is launched (`orch backfill`, the web UI and
//! its API), so that all of them honour the assets' backfill policies; each run is a
//! [`RunRequest`] made the one way every request is.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::AssetKey;
use crate::asset::BackfillPolicy;
use crate::graph::AssetGraph;
use crate::partitions::{Cadence, PartitionError, PartitionsDefinition};
use crate::plan::{self, PartitionRequest, PlanError};
use crate::request::{Launcher, RequestError, RunRequest};
use crate::run::{NewRun, RunId};

/// What to backfill.
#[derive(Clone, Debug)]
pub struct BackfillRequest<'a> {
    /// The selection as the user typed it (stored on the backfill and its runs).
    pub selection: &'a str,
    /// The keys it resolved to.
    pub selected: &'a BTreeSet<AssetKey>,
    /// First and last partition keys of the range (both included).
    pub from: &'a str,
    pub to: &'a str,
    /// One run over the whole range, whatever the assets' policies.
    pub single_run: bool,
    /// The most partitions the range may cover (`[limits] max_range_partitions`).
    pub max_partitions: usize,
    /// Tags for every run, beside the backfill's own.
    pub tags: BTreeMap<String, String>,
}

/// A backfill ready to be stored: what it is, its runs and the steps of the whole range.
#[derive(Clone, Debug)]
pub struct PlannedBackfill {
    pub id: String,
    pub selection: String,
    pub from: String,
    pub to: String,
    pub created_at: DateTime<Utc>,
    pub runs: Vec<NewRun>,
    /// Steps of the whole range's plan (what the runs do between them).
    pub steps: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("the selection has no partitioned asset to backfill")]
    NotPartitioned,
}

/// Plans backfill `id`: one run over the whole range when asked or when every selected asset's
/// policy is [`BackfillPolicy::SingleRun`] (as dbt's assets are), else one run per key of the
/// finest time partitioning among the selected assets. Checks the whole range first, so that a
/// bad key or range fails before anything is stored. Each run gets its id from `new_run_id`
/// and is made at `now`.
pub fn plan_backfill(
    graph: &AssetGraph,
    request: &BackfillRequest<'_>,
    id: &str,
    new_run_id: &mut dyn FnMut() -> RunId,
    now: DateTime<Utc>,
) -> Result<PlannedBackfill, BackfillError> {
    let range = PartitionRequest::Range {
        from: request.from.to_owned(),
        to: request.to.to_owned(),
    };
    plan::check_range_size(graph, request.selected, &range, request.max_partitions)?;
    let whole = plan::plan(graph, request.selected, &range)?;
    let all_single_run = request.selected.iter().all(|k| {
        graph
            .definition_of(k)
            .is_some_and(|d| d.backfill == BackfillPolicy::SingleRun)
    });
    let requests: Vec<PartitionRequest> = if request.single_run || all_single_run {
        vec![range]
    } else {
        range_keys(graph, request.selected, request.from, request.to)?
            .into_iter()
            .map(PartitionRequest::Key)
            .collect()
    };
    let mut runs = Vec::with_capacity(requests.len());
    for partitions in requests {
        let run_request = RunRequest {
            assets: Some(request.selected.clone()),
            ..RunRequest::new(request.selection, partitions)
        }
        .with_tags(request.tags.clone())
        .launched_by(&Launcher::Backfill { id: id.to_owned() });
        let plan = run_request.plan(graph)?;
        runs.push(run_request.new_run(&plan, new_run_id(), now));
    }
    Ok(PlannedBackfill {
        id: id.to_owned(),
        selection: request.selection.to_owned(),
        from: request.from.to_owned(),
        to: request.to.to_owned(),
        created_at: now,
        runs,
        steps: whole.steps.len(),
    })
}

/// The keys of the range in the finest time partitioning among the selected assets.
fn range_keys(
    graph: &AssetGraph,
    selected: &BTreeSet<AssetKey>,
    from: &str,
    to: &str,
) -> Result<Vec<String>, BackfillError> {
    let mut defs: Vec<&PartitionsDefinition> = selected
        .iter()
        .filter_map(|k| graph.spec(k).and_then(|s| s.partitions.as_ref()))
        .collect();
    defs.sort_by_key(|d| match d.cadence() {
        Some(Cadence::Hourly) => 0,
        Some(Cadence::Daily) => 1,
        None => 2,
    });
    let mut first_error = None;
    for def in defs {
        match def.keys_in_range(from, to) {
            Ok(keys) => return Ok(keys),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.map_or(BackfillError::NotPartitioned, BackfillError::Partition))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{def, hourly};
    use crate::request::tags;
    use crate::run::RunStatus;

    fn plan_backfill(
        graph: &AssetGraph,
        request: &BackfillRequest<'_>,
    ) -> Result<PlannedBackfill, BackfillError> {
        let now = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut n = 0u8;
        let mut ids = || {
            n += 1;
            RunId::from_parts(now, [n; 10])
        };
        super::plan_backfill(graph, request, "b1", &mut ids, now)
    }

    fn keys(list: &[&str]) -> BTreeSet<AssetKey> {
        list.iter().map(|k| AssetKey::parse(k).unwrap()).collect()
    }

    fn request<'a>(
        selected: &'a BTreeSet<AssetKey>,
        from: &'a str,
        to: &'a str,
    ) -> BackfillRequest<'a> {
        BackfillRequest {
            selection: "*",
            selected,
            from,
            to,
            single_run: false,
            max_partitions: crate::partitions::DEFAULT_MAX_RANGE_PARTITIONS,
            tags: BTreeMap::from([("by".to_owned(), "test".to_owned())]),
        }
    }

    /// Issue 14: a range to year 9999 grew without bound; a range over the configured limit is
    /// refused before anything is planned, in bounded time.
    #[test]
    #[allow(clippy::disallowed_methods)] // the test's own stopwatch
    fn ranges_over_the_limit_are_refused_quickly() {
        let g = AssetGraph::new(vec![def("raw", &[], hourly())]).unwrap();
        let raw = keys(&["raw"]);
        let started = std::time::Instant::now();
        let mut big = request(&raw, "2026-11-22-00:00", "2126-10-31-23:00");
        big.max_partitions = 10_000;
        let e = plan_backfill(&g, &big).unwrap_err().to_string();
        assert!(e.contains("more than 10000 partitions"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let e = plan_backfill(&g, &request(&raw, "2026-11-22-00:00", "9999-12-31-23:00"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("after the last partition the definition allows"),
            "{e}"
        );
        let mut small = request(&raw, "2026-11-22-00:00", "2026-11-22-03:00");
        small.max_partitions = 4;
        assert_eq!(plan_backfill(&g, &small).unwrap().runs.len(), 4);
        small.max_partitions = 3;
        assert!(plan_backfill(&g, &small).is_err());
    }

    #[test]
    fn one_run_per_hour_unless_every_asset_is_single_run() {
        let bulk = def("bulk", &["raw"], hourly()).with_backfill_policy(BackfillPolicy::SingleRun);
        let g = AssetGraph::new(vec![def("raw", &[], hourly()), bulk]).unwrap();

        let both = keys(&["raw", "bulk"]);
        let planned =
            plan_backfill(&g, &request(&both, "2026-11-22-00:00", "2026-11-22-02:00")).unwrap();
        assert_eq!(planned.runs.len(), 3);

        // raw per hour, bulk once over the range.
        assert_eq!(planned.steps, 4);
        let first = &planned.runs[0];
        assert_eq!(first.partition_key.as_deref(), Some("2026-11-22-00:00"));
        assert_eq!(first.tags[tags::BACKFILL], planned.id);
        assert_eq!(first.tags["by"], "test");
        assert_eq!(first.status, RunStatus::Queued);

        let bulk_only = keys(&["bulk"]);
        let planned = plan_backfill(
            &g,
            &request(&bulk_only, "2026-11-22-00:00", "2026-11-22-02:00"),
        )
        .unwrap();
        assert_eq!(planned.runs.len(), 1);
        assert_eq!(
            (
                planned.runs[0].partition_key.as_deref(),
                planned.runs[0].partition_key_end.as_deref()
            ),
            (Some("2026-11-22-00:00"), Some("2026-11-22-02:00"))
        );

        let mut forced = request(&both, "2026-11-22-00:00", "2026-11-22-02:00");
        forced.single_run = true;
        assert_eq!(plan_backfill(&g, &forced).unwrap().runs.len(), 1);
    }

    #[test]
    fn bad_ranges_and_unpartitioned_selections_are_refused() {
        let g = AssetGraph::new(vec![def("raw", &[], hourly()), def("dim", &[], None)]).unwrap();
        let raw = keys(&["raw"]);
        let backwards = plan_backfill(&g, &request(&raw, "2026-11-22-02:00", "2026-11-22-00:00"))
            .unwrap_err()
            .to_string();
        assert!(backwards.contains("comes after"), "{backwards}");
        let dim = keys(&["dim"]);
        let error =
            plan_backfill(&g, &request(&dim, "2026-11-22-00:00", "2026-11-22-02:00")).unwrap_err();
        assert!(
            matches!(
                error,
                BackfillError::Plan(_) | BackfillError::NotPartitioned
            ),
            "{error}"
        );
    }
}
