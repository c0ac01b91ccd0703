//! One way from a request to a run. Whoever asks for a run (the CLI, the web UI, a schedule
//! tick, a sensor, a backfill, a re-execution, the re-queue of a run that lost its daemon)
//! builds a [`RunRequest`]; [`RunRequest::plan`] resolves it against the graph into a
//! [`Plan`], and [`RunRequest::new_run`] makes the run to store, with the id and time the
//! caller passes in. The daemon rebuilds a stored run's plan the same way
//! ([`RunRequest::of_run`]), so what runs is what was planned.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::asset::AssetKey;
use crate::graph::AssetGraph;
use crate::plan::{self, PartitionRequest, Plan, PlanError};
use crate::run::{NewRun, Run, RunId, RunStatus};
use crate::selection::{Selection, SelectionError};

/// The tags orch puts on runs, and what they mean.
pub mod tags {
    /// Who launched the run: `cli`, `web`, `dev`, `schedule`, `sensor`, `backfill`, `requeue`
    /// (see [`super::Launcher`]).
    pub const LAUNCHED_BY: &str = "orch/launched_by";
    /// The schedule whose tick made the run.
    pub const SCHEDULE: &str = "orch/schedule";
    /// That tick's time (RFC 3339).
    pub const TICK: &str = "orch/tick";
    /// The sensor that requested the run.
    pub const SENSOR: &str = "orch/sensor";
    /// The backfill the run belongs to.
    pub const BACKFILL: &str = "orch/backfill";
    /// The automation tick that requested the run (its time, RFC 3339).
    pub const AUTOMATION_TICK: &str = "orch/automation_tick";
    /// For a re-queued run: the run that lost its daemon.
    pub const RETRY_OF: &str = "orch/retry_of";
    /// For a re-queued run: how many re-queues led to it.
    pub const REQUEUE_COUNT: &str = "orch/requeue_count";

    /// The tags that tie a run to what launched it, which its re-execution does not inherit.
    pub const OF_LAUNCH: [&str; 8] = [
        LAUNCHED_BY,
        SCHEDULE,
        TICK,
        SENSOR,
        BACKFILL,
        AUTOMATION_TICK,
        RETRY_OF,
        REQUEUE_COUNT,
    ];
}

/// What launched a run, recorded in its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launcher {
    Cli,
    Web,
    /// `orch dev`'s first start.
    Dev,
    Schedule {
        name: String,
        tick: DateTime<Utc>,
    },
    Sensor {
        name: String,
    },
    Backfill {
        id: String,
    },
    /// The automation tick at `tick`.
    Automation {
        tick: DateTime<Utc>,
    },
    /// A re-execution of another run (its parent).
    Reexecution,
    /// A new run for one that lost its daemon.
    Requeue {
        of: RunId,
        count: u32,
    },
}

impl Launcher {
    /// The value of the [`tags::LAUNCHED_BY`] tag.
    pub fn as_str(&self) -> &'static str {
        match self {
            Launcher::Cli => "cli",
            Launcher::Web => "web",
            Launcher::Dev => "dev",
            Launcher::Schedule { .. } => "schedule",
            Launcher::Sensor { .. } => "sensor",
            Launcher::Backfill { .. } => "backfill",
            Launcher::Automation { .. } => "automation",
            Launcher::Reexecution => "reexecution",
            Launcher::Requeue { .. } => "requeue",
        }
    }

    fn tags(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![(tags::LAUNCHED_BY, self.as_str().to_owned())];
        match self {
            Launcher::Schedule { name, tick } => {
                out.push((tags::SCHEDULE, name.clone()));
                out.push((tags::TICK, tick.to_rfc3339()));
            }
            Launcher::Sensor { name } => out.push((tags::SENSOR, name.clone())),
            Launcher::Backfill { id } => out.push((tags::BACKFILL, id.clone())),
            Launcher::Automation { tick } => out.push((tags::AUTOMATION_TICK, tick.to_rfc3339())),
            Launcher::Requeue { of, count } => {
                out.push((tags::RETRY_OF, of.to_string()));
                out.push((tags::REQUEUE_COUNT, count.to_string()));
            }
            Launcher::Cli | Launcher::Web | Launcher::Dev | Launcher::Reexecution => {}
        }
        out
    }
}

/// Why a request cannot be planned. Messages name what the user gave.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the selection is empty: name an asset, or `*` for all")]
    EmptySelection,
    #[error(transparent)]
    Selection(#[from] SelectionError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("the run's step subset names no step of its plan: {0}")]
    UnknownSteps(String),
}

/// A request for a run: what to materialize, over which partitions, launched by whom.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRequest {
    /// The selection as the user typed it (stored with the run).
    pub selection: String,
    /// The assets when already resolved (a stored run's); otherwise `selection` is resolved
    /// against the graph.
    pub assets: Option<BTreeSet<AssetKey>>,
    pub partitions: PartitionRequest,
    /// Only these steps of the plan (a re-execution from failure); `None` runs them all.
    pub step_subset: Option<BTreeSet<String>>,
    pub tags: BTreeMap<String, String>,
    pub parent_run_id: Option<RunId>,
    pub root_run_id: Option<RunId>,
}

impl RunRequest {
    /// A request to materialize `selection` over `partitions`.
    pub fn new(selection: impl Into<String>, partitions: PartitionRequest) -> Self {
        RunRequest {
            selection: selection.into().trim().to_owned(),
            assets: None,
            partitions,
            step_subset: None,
            tags: BTreeMap::new(),
            parent_run_id: None,
            root_run_id: None,
        }
    }

    /// The request behind a stored run: its resolved assets, its partitions and step subset,
    /// its tags and lineage. Planning it gives the plan the run was created with.
    pub fn of_run(run: &Run) -> Self {
        RunRequest {
            selection: run.selection.clone(),
            assets: Some(run.asset_keys.iter().cloned().collect()),
            partitions: PartitionRequest::from_bounds(
                run.partition_key.clone(),
                run.partition_key_end.clone(),
            ),
            step_subset: run.step_subset.clone(),
            tags: run.tags.clone(),
            parent_run_id: run.parent_run_id,
            root_run_id: run.root_run_id,
        }
    }

    /// Records who launched the run in its tags.
    pub fn launched_by(mut self, launcher: &Launcher) -> Self {
        for (key, value) in launcher.tags() {
            self.tags.insert(key.to_owned(), value);
        }
        self
    }

    /// Adds tags (the user's `--tag KEY=VALUE`).
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = (String, String)>) -> Self {
        self.tags.extend(tags);
        self
    }

    /// The same plan again as a new run whose parent is `parent` (whole, or only `steps`):
    /// the tags that tied the parent to its launch are dropped.
    pub fn reexecution(parent: &Run, steps: Option<BTreeSet<String>>) -> Self {
        let mut request = RunRequest::of_run(parent);
        for tag in tags::OF_LAUNCH {
            request.tags.remove(tag);
        }
        request.step_subset = steps;
        request.parent_run_id = Some(parent.run_id);
        request.root_run_id = Some(parent.root_run_id.unwrap_or(parent.run_id));
        request.launched_by(&Launcher::Reexecution)
    }

    /// The assets the request selects in `graph`.
    pub fn resolve(&self, graph: &AssetGraph) -> Result<BTreeSet<AssetKey>, RequestError> {
        if let Some(assets) = &self.assets {
            let missing: Vec<String> = assets
                .iter()
                .filter(|k| !graph.contains(k))
                .map(ToString::to_string)
                .collect();
            if !missing.is_empty() {
                return Err(PlanError::UndefinedAssets(missing.join(", ")).into());
            }
            return Ok(assets.clone());
        }
        if self.selection.is_empty() {
            return Err(RequestError::EmptySelection);
        }
        Ok(Selection::parse(&self.selection)?.resolve(graph)?)
    }

    /// The plan of this request in `graph`.
    pub fn plan(&self, graph: &AssetGraph) -> Result<Plan, RequestError> {
        let selected = self.resolve(graph)?;
        let mut plan = plan::plan(graph, &selected, &self.partitions)?;
        if let Some(steps) = &self.step_subset {
            let known: BTreeSet<&str> = plan.steps.iter().map(|s| s.key.as_str()).collect();
            let unknown: Vec<&str> = steps
                .iter()
                .map(String::as_str)
                .filter(|s| !known.contains(s))
                .collect();
            if !unknown.is_empty() {
                return Err(RequestError::UnknownSteps(unknown.join(", ")));
            }
            plan.retain_steps(steps);
        }
        Ok(plan)
    }

    /// The run to store for `plan` (this request's plan), as `run_id`, created at `now`.
    pub fn new_run(&self, plan: &Plan, run_id: RunId, now: DateTime<Utc>) -> NewRun {
        let (partition_key, partition_key_end) = plan.partition.bounds();
        NewRun {
            run_id,
            status: RunStatus::Queued,
            selection: self.selection.clone(),
            asset_keys: plan.asset_keys.clone(),
            partition_key,
            partition_key_end,
            step_subset: self.step_subset.clone(),
            tags: self.tags.clone(),
            parent_run_id: self.parent_run_id,
            root_run_id: self.root_run_id.or(self.parent_run_id),
            created_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::asset;
    use crate::context::{ComputeError, Materialization};
    use crate::partitions::PartitionsDefinition;

    fn graph() -> AssetGraph {
        let hourly = PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap();
        let a = asset("a")
            .partitions(hourly.clone())
            .compute(|_| async { Ok::<_, ComputeError>(Materialization::new()) })
            .unwrap();
        let b = asset("b")
            .deps(["a"])
            .partitions(hourly)
            .compute(|_| async { Ok::<_, ComputeError>(Materialization::new()) })
            .unwrap();
        AssetGraph::new(vec![a, b]).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_request_plans_and_stores_its_run_with_the_given_id_and_time() {
        let graph = graph();
        let request = RunRequest::new(" a+ ", PartitionRequest::Key("2026-11-22-10:00".into()))
            .launched_by(&Launcher::Sensor {
                name: "late".into(),
            });
        let plan = request.plan(&graph).unwrap();
        assert_eq!(plan.steps.len(), 2);
        let now = at("2026-11-22T11:00:00Z");
        let id = RunId::from_parts(now, [7; 10]);
        let run = request.new_run(&plan, id, now);
        assert_eq!(run.run_id, id);
        assert_eq!(run.created_at, now);
        assert_eq!(run.selection, "a+");
        assert_eq!(run.partition_key.as_deref(), Some("2026-11-22-10:00"));
        assert_eq!(
            run.tags.get(tags::LAUNCHED_BY).map(String::as_str),
            Some("sensor")
        );
        assert_eq!(run.tags.get(tags::SENSOR).map(String::as_str), Some("late"));
    }

    #[test]
    fn a_stored_run_plans_again_to_its_own_steps() {
        let graph = graph();
        let request = RunRequest::new("*", PartitionRequest::Key("2026-11-22-10:00".into()));
        let plan = request.plan(&graph).unwrap();
        let now = at("2026-11-22T11:00:00Z");
        let new = request.new_run(&plan, RunId::from_parts(now, [1; 10]), now);
        let run = Run::from_new(&new, 1);
        let steps: BTreeSet<String> = ["b[2026-11-22-10:00]".to_owned()].into();
        let again = RunRequest::reexecution(&run, Some(steps.clone()));
        let replanned = again.plan(&graph).unwrap();
        assert_eq!(replanned.steps.len(), 1);
        assert_eq!(replanned.steps[0].key, "b[2026-11-22-10:00]");
        let child = again.new_run(&replanned, RunId::from_parts(now, [2; 10]), now);
        assert_eq!(child.parent_run_id, Some(run.run_id));
        assert_eq!(child.root_run_id, Some(run.run_id));
        assert_eq!(child.step_subset, Some(steps));
        let stored = Run::from_new(&child, 2);
        assert_eq!(
            RunRequest::of_run(&stored)
                .plan(&graph)
                .unwrap()
                .steps
                .len(),
            1,
            "a stored run's plan keeps its step subset"
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let graph = graph();
        let empty = RunRequest::new("  ", PartitionRequest::None);
        assert!(matches!(
            empty.plan(&graph),
            Err(RequestError::EmptySelection)
        ));
        let typo = RunRequest::new("aa", PartitionRequest::Key("2026-11-22-10:00".into()));
        let err = typo.plan(&graph).unwrap_err().to_string();
        assert!(err.contains("unknown asset key `aa`"), "{err}");
        let mut steps = RunRequest::new("a", PartitionRequest::Key("2026-11-22-10:00".into()));
        steps.step_subset = Some(["nope".to_owned()].into());
        assert!(matches!(
            steps.plan(&graph),
            Err(RequestError::UnknownSteps(_))
        ));
    }
}
