//! Planning, pure (no IO): a selection of assets plus the requested partition(s) give a plan of
//! steps and their dependencies.

use crate::partitions::TimeWindow;

/// The partition(s) a step covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum StepPartition {
    /// The asset is not partitioned.
    #[default]
    None,
    /// One partition, with its time window for time partitions.
    Key {
        key: String,
        window: Option<TimeWindow>,
    },
    /// A range of partitions in one step (assets with a single-run backfill policy).
    Range {
        keys: Vec<String>,
        window: Option<TimeWindow>,
    },
}

impl StepPartition {
    /// The key of a single-partition step.
    pub fn key(&self) -> Option<&str> {
        match self {
            StepPartition::Key { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The first key (the only one, for a single partition).
    pub fn first_key(&self) -> Option<&str> {
        match self {
            StepPartition::None => None,
            StepPartition::Key { key, .. } => Some(key),
            StepPartition::Range { keys, .. } => keys.first().map(String::as_str),
        }
    }

    /// The last key of a range.
    pub fn last_key(&self) -> Option<&str> {
        match self {
            StepPartition::Range { keys, .. } => keys.last().map(String::as_str),
            _ => None,
        }
    }

    /// Every key the step covers.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            StepPartition::None => Vec::new(),
            StepPartition::Key { key, .. } => vec![key.as_str()],
            StepPartition::Range { keys, .. } => keys.iter().map(String::as_str).collect(),
        }
    }

    pub fn window(&self) -> Option<TimeWindow> {
        match self {
            StepPartition::None => None,
            StepPartition::Key { window, .. } | StepPartition::Range { window, .. } => *window,
        }
    }
}

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use crate::asset::{AssetKey, BackfillPolicy};
use crate::graph::AssetGraph;
use crate::partitions::{
    PartitionError, PartitionMapping, PartitionsDefinition, UpstreamPartitions,
};

/// The partition(s) a run asks for.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum PartitionRequest {
    /// No partition: only unpartitioned assets can be planned.
    #[default]
    None,
    /// One key (`2026-11-22-10:00`). Assets partitioned differently get the partitions whose
    /// time windows overlap this key's window (a daily asset gets its day).
    Key(String),
    /// An inclusive range of keys.
    Range { from: String, to: String },
}

impl PartitionRequest {
    /// The request stored with a run as its first and last keys.
    pub fn from_bounds(first: Option<String>, last: Option<String>) -> PartitionRequest {
        match (first, last) {
            (Some(from), Some(to)) => PartitionRequest::Range { from, to },
            (Some(key), None) => PartitionRequest::Key(key),
            _ => PartitionRequest::None,
        }
    }

    /// The first key and, for a range, the last, as stored with the run.
    pub fn bounds(&self) -> (Option<String>, Option<String>) {
        match self {
            PartitionRequest::None => (None, None),
            PartitionRequest::Key(k) => (Some(k.clone()), None),
            PartitionRequest::Range { from, to } => (Some(from.clone()), Some(to.clone())),
        }
    }
}

impl std::fmt::Display for PartitionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartitionRequest::None => f.write_str("no partition"),
            PartitionRequest::Key(k) => write!(f, "partition {k}"),
            PartitionRequest::Range { from, to } => write!(f, "partitions {from} to {to}"),
        }
    }
}

/// One unit of execution: one definition over one partition (or range), materializing some of
/// its assets.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// `asset/key`, `asset/key[2026-11-22-10:00]` or `name[from...to]`.
    pub key: String,
    /// Index into the graph's definitions.
    pub definition: usize,
    /// The assets it materializes, in topological order.
    pub assets: Vec<AssetKey>,
    pub partition: StepPartition,
    /// Steps (indices into the plan) that must succeed first.
    pub upstream: Vec<usize>,
}

/// Steps in an order where each comes after its upstream steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// The selected assets, in topological order.
    pub asset_keys: Vec<AssetKey>,
    pub partition: PartitionRequest,
}

/// Why a request cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("the selection matches no asset")]
    Empty,
    #[error("`{asset}` is partitioned ({partitions}); pass --partition KEY or --from KEY --to KEY")]
    PartitionRequired { asset: AssetKey, partitions: String },
    #[error("{0}")]
    Partition(#[from] PartitionError),
    #[error("`{key}` is not a partition of any selected asset: {reason}")]
    UnknownPartition { key: String, reason: String },
    #[error("the selection has no partitioned asset, but a partition was given ({request})")]
    NothingPartitioned { request: PartitionRequest },
    #[error(
        "`{definition}` computes {all} together and cannot run only {selected}; select all of them"
    )]
    CannotSubset {
        definition: String,
        all: String,
        selected: String,
    },
    #[error("the selected assets' computations depend on each other in a cycle: {0}")]
    StepCycle(String),
    #[error("the run's assets {0} are no longer defined")]
    UndefinedAssets(String),
}

/// Plans the materialization of `selected` (keys of `graph`) over `request`.
pub fn plan(
    graph: &AssetGraph,
    selected: &BTreeSet<AssetKey>,
    request: &PartitionRequest,
) -> Result<Plan, PlanError> {
    if selected.is_empty() {
        return Err(PlanError::Empty);
    }
    let ordered: Vec<AssetKey> = graph
        .toposorted()
        .iter()
        .filter(|k| selected.contains(*k))
        .cloned()
        .collect();
    check_subsets(graph, selected)?;

    let any_partitioned = ordered
        .iter()
        .any(|k| graph.spec(k).and_then(|s| s.partitions.as_ref()).is_some());
    if !any_partitioned && *request != PartitionRequest::None {
        return Err(PlanError::NothingPartitioned {
            request: request.clone(),
        });
    }
    let window = request_window(graph, &ordered, request)?;

    // Which partitions each selected asset gets.
    let mut keys_of: HashMap<&AssetKey, Vec<String>> = HashMap::new();
    for key in &ordered {
        let spec = graph.spec(key).expect("selected keys are in the graph");
        let keys = match (&spec.partitions, request) {
            (None, _) => Vec::new(),
            (Some(def), PartitionRequest::None) => {
                return Err(PlanError::PartitionRequired {
                    asset: key.clone(),
                    partitions: def.describe(),
                });
            }
            (Some(def), PartitionRequest::Key(k)) => match def.validate_key(k) {
                Ok(()) => vec![k.clone()],
                Err(e) => overlapping(def, window.as_ref(), e)?,
            },
            (Some(def), PartitionRequest::Range { from, to }) => {
                match def.keys_in_range(from, to) {
                    Ok(keys) => keys,
                    Err(e @ PartitionError::TooMany { .. }) => return Err(e.into()),
                    Err(e) => overlapping(def, window.as_ref(), e)?,
                }
            }
        };
        keys_of.insert(key, keys);
    }

    // Group assets into steps: one per (definition, partition), or per definition over the
    // whole range for single-run backfills.
    let mut step_index: BTreeMap<(usize, Option<String>), usize> = BTreeMap::new();
    let mut steps: Vec<Step> = Vec::new();
    // (asset, partition key) -> step; unpartitioned assets use "".
    let mut step_of: HashMap<(&AssetKey, String), usize> = HashMap::new();
    for key in &ordered {
        let def_index = graph
            .definition_index(key)
            .expect("selected keys are in the graph");
        let definition = &graph.definitions()[def_index];
        let spec = graph.spec(key).expect("selected keys are in the graph");
        let keys = &keys_of[key];
        let single_run = definition.backfill == BackfillPolicy::SingleRun
            && matches!(request, PartitionRequest::Range { .. })
            && !keys.is_empty();
        let partitions: Vec<(Option<String>, StepPartition)> = if keys.is_empty() {
            vec![(None, StepPartition::None)]
        } else if single_run {
            let def = spec.partitions.as_ref().expect("partitioned");
            let window = range_window(def, keys)?;
            vec![(
                Some(format!("{}...{}", keys[0], keys[keys.len() - 1])),
                StepPartition::Range {
                    keys: keys.clone(),
                    window,
                },
            )]
        } else {
            let def = spec.partitions.as_ref().expect("partitioned");
            keys.iter()
                .map(|k| {
                    let window = def.window(k)?;
                    Ok((
                        Some(k.clone()),
                        StepPartition::Key {
                            key: k.clone(),
                            window,
                        },
                    ))
                })
                .collect::<Result<_, PartitionError>>()?
        };
        for (label, partition) in partitions {
            let index = *step_index
                .entry((def_index, label.clone()))
                .or_insert_with(|| {
                    steps.push(Step {
                        key: String::new(),
                        definition: def_index,
                        assets: Vec::new(),
                        partition: partition.clone(),
                        upstream: Vec::new(),
                    });
                    steps.len() - 1
                });
            steps[index].assets.push(key.clone());
            for k in partition.keys() {
                step_of.insert((key, k.to_owned()), index);
            }
            if partition == StepPartition::None {
                step_of.insert((key, String::new()), index);
            }
        }
    }
    for step in &mut steps {
        let definition = &graph.definitions()[step.definition];
        let name = if definition.specs.len() == 1 {
            step.assets[0].to_string()
        } else {
            definition.name.clone()
        };
        step.key = match &step.partition {
            StepPartition::None => name,
            StepPartition::Key { key, .. } => format!("{name}[{key}]"),
            StepPartition::Range { keys, .. } => {
                format!("{name}[{}...{}]", keys[0], keys[keys.len() - 1])
            }
        };
    }

    // Step dependencies through each asset's deps and their partition mappings.
    let mut steps_of_asset: HashMap<&AssetKey, BTreeSet<usize>> = HashMap::new();
    for ((asset, _), index) in &step_of {
        steps_of_asset.entry(*asset).or_default().insert(*index);
    }
    let mut upstream: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); steps.len()];
    for (index, step) in steps.iter().enumerate() {
        for asset in &step.assets {
            let spec = graph.spec(asset).expect("planned assets are in the graph");
            for dep in &spec.deps {
                let Some(dep_steps) = steps_of_asset.get(&dep.key) else {
                    continue; // not selected: its latest materialization is used
                };
                let dep_spec = graph.spec(&dep.key).expect("deps are in the graph");
                let mapping = dep.mapping.clone().unwrap_or_else(|| {
                    PartitionMapping::default_for(
                        spec.partitions.as_ref(),
                        dep_spec.partitions.as_ref(),
                    )
                });
                let needed = mapping.upstream_keys(
                    spec.partitions.as_ref(),
                    &step.partition.keys(),
                    dep_spec.partitions.as_ref(),
                )?;
                let targets: Vec<usize> = match needed {
                    UpstreamPartitions::Unpartitioned | UpstreamPartitions::All => {
                        dep_steps.iter().copied().collect()
                    }
                    UpstreamPartitions::Keys(keys) => keys
                        .iter()
                        .filter_map(|k| step_of.get(&(&dep.key, k.clone())).copied())
                        .collect(),
                };
                upstream[index].extend(targets.into_iter().filter(|t| *t != index));
            }
        }
    }
    for (step, up) in steps.iter_mut().zip(upstream) {
        step.upstream = up.into_iter().collect();
    }
    let steps = order_steps(steps)?;
    Ok(Plan {
        steps,
        asset_keys: ordered,
        partition: request.clone(),
    })
}

/// The time window a request covers, read with the first selected time-partitioned asset
/// whose definition accepts the key(s).
fn request_window(
    graph: &AssetGraph,
    ordered: &[AssetKey],
    request: &PartitionRequest,
) -> Result<Option<TimeWindow>, PlanError> {
    let defs = || {
        ordered
            .iter()
            .filter_map(|k| graph.spec(k).and_then(|s| s.partitions.as_ref()))
    };
    match request {
        PartitionRequest::None => Ok(None),
        PartitionRequest::Key(key) => {
            let mut first_error = None;
            for def in defs() {
                match def.window(key) {
                    Ok(window) => return Ok(window),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            Err(PlanError::UnknownPartition {
                key: crate::text::shorten(key, crate::text::SHOWN_CHARS),
                reason: first_error.map(|e| e.to_string()).unwrap_or_default(),
            })
        }
        PartitionRequest::Range { from, to } => {
            let mut first_error = None;
            for def in defs() {
                match def.keys_in_range(from, to) {
                    Ok(keys) => return Ok(range_window(def, &keys)?),
                    Err(e @ PartitionError::TooMany { .. }) => return Err(e.into()),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            Err(PlanError::UnknownPartition {
                key: format!(
                    "{}...{}",
                    crate::text::shorten(from, crate::text::SHOWN_CHARS),
                    crate::text::shorten(to, crate::text::SHOWN_CHARS)
                ),
                reason: first_error.map(|e| e.to_string()).unwrap_or_default(),
            })
        }
    }
}

fn range_window(
    def: &PartitionsDefinition,
    keys: &[String],
) -> Result<Option<TimeWindow>, PartitionError> {
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
        return Ok(None);
    };
    Ok(match (def.window(first)?, def.window(last)?) {
        (Some(a), Some(b)) => Some(TimeWindow {
            start: a.start,
            end: b.end,
        }),
        _ => None,
    })
}

/// An asset whose definition does not accept the requested key directly gets the partitions
/// overlapping the request's window; without a window (static keys), the key is invalid.
/// Refuses a range that covers more than `max` partitions of any selected asset (the limit
/// `[limits] max_range_partitions` of `orch.toml`), before anything is planned: the cost of
/// the check is O(`max`), however far apart the keys are. Keys that are not of an asset's
/// partitioning are left to the planner's messages.
pub fn check_range_size(
    graph: &AssetGraph,
    selected: &BTreeSet<AssetKey>,
    request: &PartitionRequest,
    max: usize,
) -> Result<(), PartitionError> {
    let PartitionRequest::Range { from, to } = request else {
        return Ok(());
    };
    let mut seen: Vec<&PartitionsDefinition> = Vec::new();
    for key in selected {
        let Some(def) = graph.spec(key).and_then(|s| s.partitions.as_ref()) else {
            continue;
        };
        if seen.contains(&def) {
            continue;
        }
        seen.push(def);
        if let Err(e @ PartitionError::TooMany { .. }) = def.keys_in_range_at_most(from, to, max) {
            return Err(e);
        }
    }
    Ok(())
}

fn overlapping(
    def: &PartitionsDefinition,
    window: Option<&TimeWindow>,
    error: PartitionError,
) -> Result<Vec<String>, PlanError> {
    match window {
        Some(w) if def.is_time() => {
            let keys = def.keys_overlapping(w);
            if keys.is_empty() {
                Err(error.into())
            } else {
                Ok(keys)
            }
        }
        _ => Err(error.into()),
    }
}

fn check_subsets(graph: &AssetGraph, selected: &BTreeSet<AssetKey>) -> Result<(), PlanError> {
    for definition in graph.definitions() {
        if definition.can_subset || definition.specs.len() < 2 {
            continue;
        }
        let chosen: Vec<&AssetKey> = definition
            .keys()
            .filter(|k| selected.contains(*k))
            .collect();
        if !chosen.is_empty() && chosen.len() < definition.specs.len() {
            let join = |keys: Vec<&AssetKey>| {
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(PlanError::CannotSubset {
                definition: definition.name.clone(),
                all: join(definition.keys().collect()),
                selected: join(chosen),
            });
        }
    }
    Ok(())
}

/// Orders steps so that each follows its upstream (Kahn's algorithm, stable), remapping the
/// upstream indices.
fn order_steps(steps: Vec<Step>) -> Result<Vec<Step>, PlanError> {
    let n = steps.len();
    let mut remaining: Vec<usize> = steps.iter().map(|s| s.upstream.len()).collect();
    let downstream = downstream_of(&steps);
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
        .filter(|i| remaining[*i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &downstream[i] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.push(std::cmp::Reverse(d));
            }
        }
    }
    if order.len() < n {
        let stuck: Vec<&str> = (0..n)
            .filter(|i| remaining[*i] > 0)
            .map(|i| steps[i].key.as_str())
            .collect();
        return Err(PlanError::StepCycle(stuck.join(", ")));
    }
    let mut new_index = vec![0; n];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    Ok(order
        .iter()
        .map(|&old| {
            let mut step = slots[old].take().expect("each step once");
            step.upstream = step.upstream.iter().map(|u| new_index[*u]).collect();
            step.upstream.sort_unstable();
            step
        })
        .collect())
}

/// For each step, the steps that wait for it.
pub fn downstream_of(steps: &[Step]) -> Vec<Vec<usize>> {
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, step) in steps.iter().enumerate() {
        for &u in &step.upstream {
            downstream[u].push(i);
        }
    }
    downstream
}

impl Plan {
    /// Keeps only the steps whose keys are in `keys`, dropping dependencies on the others
    /// (their results from an earlier run are used).
    pub fn retain_steps(&mut self, keys: &BTreeSet<String>) {
        let mut new_index = vec![None; self.steps.len()];
        let mut kept = Vec::new();
        for (old, step) in self.steps.iter().enumerate() {
            if keys.contains(&step.key) {
                new_index[old] = Some(kept.len());
                kept.push(step.clone());
            }
        }
        for step in &mut kept {
            step.upstream = step.upstream.iter().filter_map(|u| new_index[*u]).collect();
        }
        let assets: BTreeSet<&AssetKey> = kept.iter().flat_map(|s| &s.assets).collect();
        self.asset_keys.retain(|k| assets.contains(k));
        self.steps = kept;
    }

    /// The steps as JSON (key, assets, partitions, upstream step keys): printed by
    /// `--dry-run --json` and stored with each run.
    pub fn steps_json(&self) -> serde_json::Value {
        self.steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "key": s.key,
                    "assets": s.assets.iter().map(AssetKey::to_string).collect::<Vec<_>>(),
                    "partitions": s.partition.keys(),
                    "upstream": s.upstream.iter().map(|u| self.steps[*u].key.clone()).collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    /// The plan as printed by `orch materialize --dry-run`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan: {} step{} for {} asset{}, {}",
            self.steps.len(),
            if self.steps.len() == 1 { "" } else { "s" },
            self.asset_keys.len(),
            if self.asset_keys.len() == 1 { "" } else { "s" },
            self.partition
        );
        let width = self.steps.len().to_string().len();
        for (i, step) in self.steps.iter().enumerate() {
            let _ = write!(out, "  {:>width$}. {}", i + 1, step.key);
            if step.assets.len() > 1 {
                let keys: Vec<String> = step.assets.iter().map(ToString::to_string).collect();
                let _ = write!(out, " ({})", keys.join(", "));
            }
            if !step.upstream.is_empty() {
                let ups: Vec<String> = step.upstream.iter().map(|u| (u + 1).to_string()).collect();
                let _ = write!(out, "  after {}", ups.join(", "));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::asset::{AssetSpec, AssetsDefinition, BackfillPolicy, asset};
    use crate::context::{ComputeError, Materialization};

    /// A no-op asset, partitioned or not (shared with other modules' tests).
    pub(crate) fn def(
        key: &str,
        deps: &[&str],
        partitions: Option<PartitionsDefinition>,
    ) -> AssetsDefinition {
        let mut b = asset(key).deps(deps);
        if let Some(p) = partitions {
            b = b.partitions(p);
        }
        b.compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
            .unwrap()
    }

    pub(crate) fn hourly() -> Option<PartitionsDefinition> {
        Some(PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap())
    }

    fn daily() -> Option<PartitionsDefinition> {
        Some(PartitionsDefinition::daily("2026-11-01", "UTC").unwrap())
    }

    fn graph(defs: Vec<AssetsDefinition>) -> AssetGraph {
        AssetGraph::new(defs).unwrap()
    }

    fn all(g: &AssetGraph) -> BTreeSet<AssetKey> {
        g.toposorted().iter().cloned().collect()
    }

    fn key(k: &str) -> AssetKey {
        AssetKey::parse(k).unwrap()
    }

    #[test]
    fn an_hourly_key_gives_a_daily_asset_its_day() {
        let g = graph(vec![
            def("dim", &[], None),
            def("raw", &["dim"], hourly()),
            def("day", &["raw"], daily()),
        ]);
        let plan = plan(
            &g,
            &all(&g),
            &PartitionRequest::Key("2026-11-22-10:00".into()),
        )
        .unwrap();
        expect_test::expect![[r#"
            Plan: 3 steps for 3 assets, partition 2026-11-22-10:00
              1. dim
              2. raw[2026-11-22-10:00]  after 1
              3. day[2026-11-22]  after 2
        "#]]
        .assert_eq(&plan.render());
        let day = &plan.steps[2];
        assert_eq!(
            day.partition.window().unwrap().start.to_rfc3339(),
            "2026-11-22T00:00:00+00:00"
        );
    }

    #[test]
    fn a_daily_key_plans_all_24_hours_upstream() {
        let g = graph(vec![
            def("raw", &[], hourly()),
            def("day", &["raw"], daily()),
        ]);
        let plan = plan(&g, &all(&g), &PartitionRequest::Key("2026-11-22".into())).unwrap();
        assert_eq!(plan.steps.len(), 25);
        assert_eq!(plan.steps[24].key, "day[2026-11-22]");
        assert_eq!(plan.steps[24].upstream, (0..24).collect::<Vec<_>>());
        assert_eq!(plan.steps[0].key, "raw[2026-11-22-00:00]");
        assert_eq!(plan.steps[23].key, "raw[2026-11-22-23:00]");
    }

    #[test]
    fn ranges_plan_one_step_per_partition_or_one_for_single_run_assets() {
        let single =
            def("bulk", &["raw"], hourly()).with_backfill_policy(BackfillPolicy::SingleRun);
        let g = graph(vec![def("raw", &[], hourly()), single]);
        let request = PartitionRequest::Range {
            from: "2026-11-22-00:00".into(),
            to: "2026-11-22-02:00".into(),
        };
        let plan = plan(&g, &all(&g), &request).unwrap();
        let keys: Vec<&str> = plan.steps.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "raw[2026-11-22-00:00]",
                "raw[2026-11-22-01:00]",
                "raw[2026-11-22-02:00]",
                "bulk[2026-11-22-00:00...2026-11-22-02:00]"
            ]
        );
        assert_eq!(plan.steps[3].upstream, [0, 1, 2]);
        let window = plan.steps[3].partition.window().unwrap();
        assert_eq!(window.end.to_rfc3339(), "2026-11-22T03:00:00+00:00");
    }

    #[test]
    fn unselected_upstreams_are_not_planned() {
        let g = graph(vec![
            def("a", &[], None),
            def("b", &["a"], None),
            def("c", &["b"], None),
        ]);
        let selected: BTreeSet<AssetKey> = [key("c"), key("a")].into_iter().collect();
        let plan = plan(&g, &selected, &PartitionRequest::None).unwrap();
        assert_eq!(plan.steps.len(), 2);
        assert!(plan.steps.iter().all(|s| s.upstream.is_empty()));
    }

    #[test]
    fn bad_requests_are_refused_with_what_to_do() {
        let g = graph(vec![
            def("plain", &[], None),
            def("raw", &["plain"], hourly()),
        ]);
        let err = plan(&g, &all(&g), &PartitionRequest::None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`raw` is partitioned (hourly partitions from 2026-11-01-00:00 (UTC)); pass --partition KEY or --from KEY --to KEY"
        );
        let only_plain: BTreeSet<AssetKey> = [key("plain")].into_iter().collect();
        let err = plan(&g, &only_plain, &PartitionRequest::Key("2026-11-22".into())).unwrap_err();
        assert!(matches!(err, PlanError::NothingPartitioned { .. }), "{err}");
        let err = plan(&g, &all(&g), &PartitionRequest::Key("yesterday".into())).unwrap_err();
        assert!(err.to_string().contains("2026-11-22-10:00"), "{err}");
        assert!(matches!(
            plan(&g, &BTreeSet::new(), &PartitionRequest::None),
            Err(PlanError::Empty)
        ));
    }

    #[test]
    fn retaining_steps_keeps_their_order_and_inner_dependencies() {
        let g = graph(vec![
            def("a", &[], None),
            def("b", &["a"], None),
            def("c", &["b"], None),
        ]);
        let mut plan = plan(&g, &all(&g), &PartitionRequest::None).unwrap();
        plan.retain_steps(&["b".to_owned(), "c".to_owned()].into_iter().collect());
        assert_eq!(
            plan.render(),
            "Plan: 2 steps for 2 assets, no partition\n  1. b\n  2. c  after 1\n"
        );
    }

    #[test]
    fn multi_assets_that_cannot_subset_must_be_selected_whole() {
        let specs = vec![AssetSpec::new(key("m/a")), AssetSpec::new(key("m/b"))];
        let multi = AssetsDefinition::multi("models", specs, |_ctx| async {
            Ok::<_, ComputeError>(crate::context::Output::Reported)
        });
        let g = graph(vec![multi.clone()]);
        let part: BTreeSet<AssetKey> = [key("m/a")].into_iter().collect();
        let err = plan(&g, &part, &PartitionRequest::None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`models` computes `m/a`, `m/b` together and cannot run only `m/a`; select all of them"
        );
        let g = graph(vec![multi.with_subsetting(true)]);
        let plan = plan(&g, &part, &PartitionRequest::None).unwrap();
        assert_eq!(plan.steps[0].key, "models");
        assert_eq!(plan.steps[0].assets, [key("m/a")]);
    }
}
