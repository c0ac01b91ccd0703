//! Evaluating conditions: pure, from [`Facts`], the time and the previous [`AutomationState`].
//!
//! Each asset with a condition is evaluated over its *candidates*: the newest
//! [`Window::partitions`] partitions of a time-partitioned asset (and the open one when
//! [`Window::include_current`]), every key of a statically partitioned one, the one
//! materialization of an unpartitioned one. Assets are evaluated in dependency order, so that
//! a partition requested upstream in this evaluation counts as updated (and not missing)
//! downstream when both will run in the same run (same partition key); requested under another
//! key it counts as in progress, and the downstream waits for it to land.
//!
//! "Newly" is exact, not a matter of clocks: the state keeps, per asset partition, the event id
//! of the materialization the previous evaluation saw; a partition is newly updated when its
//! latest materialization is another one. The state also keeps what `newly_true` and `since`
//! nodes need (their sets at the previous evaluation) and what was requested.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Condition;
use crate::asset::AssetKey;
use crate::graph::AssetGraph;
use crate::partitions::{PartitionMapping, PartitionsDefinition, UpstreamPartitions};
use crate::plan::PartitionRequest;

/// The slot of an unpartitioned asset in partition sets.
pub const UNPARTITIONED: &str = "";

/// An asset partition's latest materialization.
#[derive(Clone, Debug, PartialEq)]
pub struct Materialized {
    /// The event's id in the event log: what tells one materialization from the next.
    pub event_id: i64,
    pub at: DateTime<Utc>,
    pub code_version: Option<String>,
}

/// What the evaluation reads about asset partitions. `partition` is `None` for an
/// unpartitioned asset.
pub trait Facts {
    fn materialized(&self, asset: &AssetKey, partition: Option<&str>) -> Option<&Materialized>;
    /// A queued or running run will materialize it.
    fn in_progress(&self, asset: &AssetKey, partition: Option<&str>) -> bool;
    /// When its latest failed attempt failed.
    fn failed_at(&self, asset: &AssetKey, partition: Option<&str>) -> Option<DateTime<Utc>>;
    /// Every blocking check on its latest materialization passed (true when it has none).
    fn blocking_checks_passed(&self, asset: &AssetKey, partition: Option<&str>) -> bool;
}

/// [`Facts`] held in memory: what the runtime fills from the run history, and what tests
/// write by hand. Partition keys are the empty string for unpartitioned assets.
#[derive(Clone, Debug, Default)]
pub struct FactsTable {
    pub materialized: HashMap<AssetKey, HashMap<String, Materialized>>,
    pub in_progress: HashMap<AssetKey, BTreeSet<String>>,
    pub failed: HashMap<AssetKey, HashMap<String, DateTime<Utc>>>,
    /// Partitions whose latest materialization has a failed blocking check.
    pub checks_failed: HashMap<AssetKey, BTreeSet<String>>,
}

impl FactsTable {
    /// Records a materialization, keeping the newest (highest event id) per partition.
    pub fn materialize(&mut self, asset: &AssetKey, partition: &str, m: Materialized) {
        let slot = self
            .materialized
            .entry(asset.clone())
            .or_default()
            .entry(partition.to_owned());
        match slot {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if o.get().event_id < m.event_id {
                    o.insert(m);
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(m);
            }
        }
    }
}

impl Facts for FactsTable {
    fn materialized(&self, asset: &AssetKey, partition: Option<&str>) -> Option<&Materialized> {
        self.materialized
            .get(asset)?
            .get(partition.unwrap_or(UNPARTITIONED))
    }
    fn in_progress(&self, asset: &AssetKey, partition: Option<&str>) -> bool {
        self.in_progress
            .get(asset)
            .is_some_and(|s| s.contains(partition.unwrap_or(UNPARTITIONED)))
    }
    fn failed_at(&self, asset: &AssetKey, partition: Option<&str>) -> Option<DateTime<Utc>> {
        self.failed
            .get(asset)?
            .get(partition.unwrap_or(UNPARTITIONED))
            .copied()
    }
    fn blocking_checks_passed(&self, asset: &AssetKey, partition: Option<&str>) -> bool {
        !self
            .checks_failed
            .get(asset)
            .is_some_and(|s| s.contains(partition.unwrap_or(UNPARTITIONED)))
    }
}

/// Which partitions of a time-partitioned asset are evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The newest this many partitions.
    pub partitions: usize,
    /// Also the partition still open now (the current hour): for data that arrives as it
    /// happens and is loaded again as it grows.
    pub include_current: bool,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            partitions: 48,
            include_current: false,
        }
    }
}

/// What one asset's evaluation remembers for the next.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetState {
    /// The condition text this state belongs to: a changed condition starts afresh.
    pub condition: String,
    /// Per node path (`0.1.0`), the partitions where the node was true (`since`) or where its
    /// inner condition was true (`newly_true`) at the previous evaluation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, BTreeSet<String>>,
    /// Partitions requested by the previous evaluation.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub requested: BTreeSet<String>,
    /// Per partition, the materialization event id the previous evaluation saw.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seen: BTreeMap<String, i64>,
}

/// Every asset's [`AssetState`], keyed by asset key (user form).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AutomationState {
    pub assets: BTreeMap<String, AssetState>,
}

/// One node of an evaluated condition: whether it held, for which partitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeEvaluation {
    /// The node alone (`and`, `since`, `missing`, `cron_tick_passed('0 * * * *', 'UTC')`).
    pub label: String,
    /// The whole sub-condition in text form.
    pub condition: String,
    /// How many candidate partitions it was true for.
    pub true_count: usize,
    /// Those partitions (the first 100; empty string for an unpartitioned asset). Stored with
    /// runs of successive hours or days as ranges (see [`key_runs`]).
    #[serde(with = "key_runs")]
    pub true_partitions: Vec<String>,
    pub children: Vec<NodeEvaluation>,
}

/// One asset's evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct AssetEvaluation {
    pub asset: AssetKey,
    pub condition: String,
    /// How many partitions were evaluated.
    pub candidates: usize,
    /// The partitions to materialize (empty string for an unpartitioned asset).
    pub requested: Vec<String>,
    pub tree: NodeEvaluation,
}

/// The serde form of a list of partition keys that stores each run of three or more successive
/// hourly (`YYYY-MM-DD-HH:MM`, an hour apart) or daily (`YYYY-MM-DD`, a day apart) keys as
/// `{"from": FIRST, "to": LAST, "step": "hour"|"day"}`, and every other key as itself: an
/// evaluation's tree over a week of hourly partitions takes a few hundred bytes instead of a few
/// kilobytes a node. Successive means the next key as text, so reading expands exactly the
/// keys that were written; plain lists (as stored before) read as they are.
pub mod key_runs {
    use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    const HOUR: &str = "%Y-%m-%d-%H:%M";
    const DAY: &str = "%Y-%m-%d";

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Item {
        Key(String),
        Run {
            from: String,
            to: String,
            step: Step,
        },
    }

    #[derive(Clone, Copy, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Step {
        Hour,
        Day,
    }

    /// The key after `key` by `step`, if `key` is one of that step's keys.
    fn next(key: &str, step: Step) -> Option<String> {
        match step {
            Step::Hour => {
                let t = NaiveDateTime::parse_from_str(key, HOUR).ok()?;
                (t.format(HOUR).to_string() == key)
                    .then(|| (t + TimeDelta::hours(1)).format(HOUR).to_string())
            }
            Step::Day => {
                let d = NaiveDate::parse_from_str(key, DAY).ok()?;
                (d.format(DAY).to_string() == key).then(|| {
                    d.succ_opt()
                        .map(|n| n.format(DAY).to_string())
                        .unwrap_or_default()
                })
            }
        }
    }

    pub fn serialize<S: Serializer>(keys: &[String], serializer: S) -> Result<S::Ok, S::Error> {
        let mut items = Vec::new();
        let mut i = 0;
        while i < keys.len() {
            let mut best = (i, Step::Hour);
            for step in [Step::Hour, Step::Day] {
                let mut j = i;
                while j + 1 < keys.len() && next(&keys[j], step).as_deref() == Some(&keys[j + 1]) {
                    j += 1;
                }
                if j > best.0 {
                    best = (j, step);
                }
            }
            let (end, step) = best;
            if end >= i + 2 {
                items.push(Item::Run {
                    from: keys[i].clone(),
                    to: keys[end].clone(),
                    step,
                });
                i = end + 1;
            } else {
                items.push(Item::Key(keys[i].clone()));
                i += 1;
            }
        }
        items.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        let items = Vec::<Item>::deserialize(deserializer)?;
        let mut keys = Vec::new();
        for item in items {
            match item {
                Item::Key(key) => keys.push(key),
                Item::Run { from, to, step } => {
                    let mut key = from;
                    loop {
                        let after = next(&key, step);
                        let done = key == to;
                        keys.push(key);
                        if done {
                            break;
                        }
                        match after {
                            // Bounded: a run never holds more keys than an evaluation lists.
                            Some(n) if keys.len() <= 100_000 => key = n,
                            _ => {
                                return Err(serde::de::Error::custom(format!(
                                    "the run of partitions ending at `{to}` does not reach it"
                                )));
                            }
                        }
                    }
                }
            }
        }
        Ok(keys)
    }
}

/// An evaluation of every automated asset.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub assets: Vec<AssetEvaluation>,
    pub state: AutomationState,
}

/// What an evaluation reads.
pub struct EvaluationInput<'a> {
    pub graph: &'a AssetGraph,
    /// The automated assets and their conditions.
    pub conditions: &'a BTreeMap<AssetKey, Condition>,
    pub facts: &'a dyn Facts,
    pub now: DateTime<Utc>,
    /// When the previous evaluation ran (`None`: this is the first).
    pub previous: Option<DateTime<Utc>>,
    pub state: &'a AutomationState,
    pub window: Window,
}

/// A set of candidate partitions, by index.
type Set = Vec<bool>;

struct AssetCtx<'a> {
    key: &'a AssetKey,
    code_version: Option<&'a str>,
    slots: Vec<String>,
    partitioned: bool,
    /// Per dependency, per candidate: the dependency and the partitions it needs.
    deps: Vec<(&'a AssetKey, bool, Vec<Vec<String>>)>,
    prev: Option<&'a AssetState>,
}

impl AssetCtx<'_> {
    fn part<'s>(&self, slot: &'s str) -> Option<&'s str> {
        self.partitioned.then_some(slot)
    }
}

/// The reset of `since_last_handled`, to recognize it in a tree.
static HANDLED: std::sync::LazyLock<Condition> = std::sync::LazyLock::new(Condition::handled);

struct Evaluator<'a> {
    input: &'a EvaluationInput<'a>,
    /// Partitions requested in this evaluation so far, per asset.
    requested: HashMap<AssetKey, BTreeSet<String>>,
    /// The partitions of each dependency that some evaluated asset reads (whose
    /// materializations the next state remembers).
    windows: HashMap<AssetKey, (Vec<String>, HashSet<String>)>,
    /// The previous state of each asset, looked up once.
    previous: HashMap<&'a AssetKey, &'a AssetState>,
    /// Candidate partitions per partitions definition, computed once per evaluation.
    candidates: Vec<(Option<&'a PartitionsDefinition>, Vec<String>)>,
}

/// Evaluates every automated asset (see the [module documentation](self)).
pub fn evaluate(input: &EvaluationInput<'_>) -> Evaluation {
    let previous = input
        .graph
        .toposorted()
        .iter()
        .filter_map(|k| input.state.assets.get(&k.to_user_string()).map(|s| (k, s)))
        .collect();
    let mut ev = Evaluator {
        input,
        requested: HashMap::new(),
        windows: HashMap::new(),
        previous,
        candidates: Vec::new(),
    };
    let mut assets = Vec::new();
    let mut next = AutomationState::default();
    for key in input.graph.toposorted() {
        let Some(condition) = input.conditions.get(key) else {
            continue;
        };
        let (evaluation, state) = ev.asset(key, condition);
        if !evaluation.requested.is_empty() {
            ev.requested
                .insert(key.clone(), evaluation.requested.iter().cloned().collect());
        }
        next.assets.insert(key.to_user_string(), state);
        assets.push(evaluation);
    }
    // Remember what dependencies' materializations were seen, for assets without conditions
    // too (their updates are what `any_deps_updated` reads).
    for (key, (slots, _)) in &ev.windows {
        let state = next.assets.entry(key.to_user_string()).or_default();
        for slot in slots {
            let part = (!slot.is_empty()).then_some(slot.as_str());
            if let Some(m) = input.facts.materialized(key, part) {
                state.seen.insert(slot.clone(), m.event_id);
            }
        }
    }
    Evaluation {
        assets,
        state: next,
    }
}

impl<'a> Evaluator<'a> {
    fn candidates(&mut self, def: Option<&'a PartitionsDefinition>) -> Vec<String> {
        if let Some((_, slots)) = self.candidates.iter().find(|(d, _)| *d == def) {
            return slots.clone();
        }
        let slots = match def {
            None => vec![UNPARTITIONED.to_owned()],
            Some(def) => def.latest_keys(
                self.input.now,
                self.input.window.partitions,
                self.input.window.include_current,
            ),
        };
        self.candidates.push((def, slots.clone()));
        slots
    }

    fn asset(&mut self, key: &'a AssetKey, condition: &Condition) -> (AssetEvaluation, AssetState) {
        let graph = self.input.graph;
        let spec = graph.spec(key).expect("automated assets are in the graph");
        let def = spec.partitions.as_ref();
        let slots = self.candidates(def);
        let condition_text = condition.to_string();
        let prev = self
            .previous
            .get(key)
            .copied()
            .filter(|s| s.condition == condition_text);
        let mut deps = Vec::new();
        for dep in &spec.deps {
            let Some(up) = graph.spec(&dep.key) else {
                continue;
            };
            let up_def = up.partitions.as_ref();
            let mapping = dep
                .mapping
                .clone()
                .unwrap_or_else(|| PartitionMapping::default_for(def, up_def));
            let up_window = self.candidates(up_def);
            // The same partitioning on both sides (the common case): the same key upstream.
            let same = def.is_some()
                && def == up_def
                && matches!(
                    mapping,
                    PartitionMapping::Identity | PartitionMapping::TimeWindow
                );
            let per_slot: Vec<Vec<String>> = slots
                .iter()
                .map(|slot| {
                    if same {
                        return vec![slot.clone()];
                    }
                    let keys: Vec<&str> = if def.is_some() { vec![slot] } else { vec![] };
                    match mapping.upstream_keys(def, &keys, up_def) {
                        Ok(UpstreamPartitions::Unpartitioned) => vec![UNPARTITIONED.to_owned()],
                        Ok(UpstreamPartitions::Keys(keys)) => keys,
                        Ok(UpstreamPartitions::All) | Err(_) => up_window.clone(),
                    }
                })
                .collect();
            let (window, known) = self.windows.entry(dep.key.clone()).or_default();
            for keys in &per_slot {
                for k in keys {
                    if known.insert(k.clone()) {
                        window.push(k.clone());
                    }
                }
            }
            deps.push((&dep.key, up_def.is_some(), per_slot));
        }
        let ctx = AssetCtx {
            key,
            code_version: spec.code_version.as_deref(),
            partitioned: def.is_some(),
            slots,
            deps,
            prev,
        };
        let mut state = AssetState {
            condition: condition_text.clone(),
            ..AssetState::default()
        };
        let (set, tree) = self.node(&ctx, condition, "0", &mut state);
        let requested: Vec<String> = ctx
            .slots
            .iter()
            .zip(&set)
            .filter(|(_, t)| **t)
            .map(|(s, _)| s.clone())
            .collect();
        state.requested = requested.iter().cloned().collect();
        for slot in &ctx.slots {
            if let Some(m) = self.input.facts.materialized(key, ctx.part(slot)) {
                state.seen.insert(slot.clone(), m.event_id);
            }
        }
        (
            AssetEvaluation {
                asset: key.clone(),
                condition: condition_text,
                candidates: ctx.slots.len(),
                requested,
                tree,
            },
            state,
        )
    }

    fn node(
        &self,
        ctx: &AssetCtx<'_>,
        c: &Condition,
        path: &str,
        state: &mut AssetState,
    ) -> (Set, NodeEvaluation) {
        let n = ctx.slots.len();
        let mut children = Vec::new();
        let mut child = |i: usize, c: &Condition, state: &mut AssetState| {
            let (set, tree) = self.node(ctx, c, &format!("{path}.{i}"), state);
            children.push(tree);
            set
        };
        let set: Set = match c {
            Condition::And(cs) => {
                let mut acc = vec![true; n];
                for (i, c) in cs.iter().enumerate() {
                    let s = child(i, c, state);
                    acc.iter_mut().zip(s).for_each(|(a, b)| *a &= b);
                }
                acc
            }
            Condition::Or(cs) => {
                let mut acc = vec![false; n];
                for (i, c) in cs.iter().enumerate() {
                    let s = child(i, c, state);
                    acc.iter_mut().zip(s).for_each(|(a, b)| *a |= b);
                }
                acc
            }
            Condition::Not(inner) => child(0, inner, state).into_iter().map(|b| !b).collect(),
            Condition::NewlyTrue(inner) => {
                let now = child(0, inner, state);
                let before = ctx.prev.and_then(|p| p.nodes.get(path));
                let out = ctx
                    .slots
                    .iter()
                    .zip(&now)
                    .map(|(slot, t)| *t && !before.is_some_and(|b| b.contains(slot)))
                    .collect();
                remember(state, path, &ctx.slots, &now);
                out
            }
            Condition::Since { trigger, reset } => {
                let t = child(0, trigger, state);
                let r = child(1, reset, state);
                let before = ctx.prev.and_then(|p| p.nodes.get(path));
                let handled = **reset == *HANDLED;
                let out: Set = ctx
                    .slots
                    .iter()
                    .enumerate()
                    .map(|(i, slot)| {
                        if r[i] {
                            // A trigger and a reset in the same tick: the reset wins, unless it
                            // is "handled" and a dependency was materialized after the asset
                            // (its run read the older data, so that update handled nothing).
                            t[i] && handled && self.deps_newer(ctx, i, slot)
                        } else {
                            t[i] || before.is_some_and(|b| b.contains(slot))
                        }
                    })
                    .collect();
                remember(state, path, &ctx.slots, &out);
                out
            }
            leaf => ctx
                .slots
                .iter()
                .enumerate()
                .map(|(i, slot)| self.leaf(ctx, leaf, i, slot))
                .collect(),
        };
        let true_partitions: Vec<String> = ctx
            .slots
            .iter()
            .zip(&set)
            .filter(|(_, t)| **t)
            .map(|(s, _)| s.clone())
            .collect();
        let tree = NodeEvaluation {
            label: c.label(),
            condition: c.to_string(),
            true_count: true_partitions.len(),
            true_partitions: true_partitions.into_iter().take(100).collect(),
            children,
        };
        (set, tree)
    }

    /// Whether a dependency of candidate `i` was materialized after the asset's own latest
    /// materialization (by event id: the order the run history stored them in).
    fn deps_newer(&self, ctx: &AssetCtx<'_>, i: usize, slot: &str) -> bool {
        let facts = self.input.facts;
        let Some(own) = facts.materialized(ctx.key, ctx.part(slot)) else {
            return false;
        };
        ctx.deps.iter().any(|(dep, p, slots)| {
            slots[i].iter().any(|s| {
                facts
                    .materialized(dep, dep_part(*p, s))
                    .is_some_and(|m| m.event_id > own.event_id)
            })
        })
    }

    fn newly_updated(&self, asset: &AssetKey, slot: &str) -> bool {
        let part = (!slot.is_empty()).then_some(slot);
        let Some(m) = self.input.facts.materialized(asset, part) else {
            return false;
        };
        // An asset seen for the first time has nothing "newly" about it.
        let Some(prev) = self.previous.get(asset) else {
            return false;
        };
        prev.seen.get(slot) != Some(&m.event_id)
    }

    fn leaf(&self, ctx: &AssetCtx<'_>, c: &Condition, i: usize, slot: &str) -> bool {
        let facts = self.input.facts;
        let part = ctx.part(slot);
        let requested_here = |dep: &AssetKey, s: &str| {
            self.requested
                .get(dep)
                .is_some_and(|r| r.contains(s) && s == slot)
        };
        let requested_elsewhere = |dep: &AssetKey, s: &str| {
            self.requested
                .get(dep)
                .is_some_and(|r| r.contains(s) && s != slot)
        };
        match c {
            Condition::Missing => facts.materialized(ctx.key, part).is_none(),
            Condition::NewlyUpdated => self.newly_updated(ctx.key, slot),
            Condition::NewlyRequested => ctx.prev.is_some_and(|p| p.requested.contains(slot)),
            Condition::InProgress => facts.in_progress(ctx.key, part),
            Condition::ExecutionFailed => match facts.failed_at(ctx.key, part) {
                None => false,
                Some(failed) => facts
                    .materialized(ctx.key, part)
                    .is_none_or(|m| m.at < failed),
            },
            Condition::CodeVersionChanged => {
                match (ctx.code_version, facts.materialized(ctx.key, part)) {
                    (Some(v), Some(m)) => m.code_version.as_deref() != Some(v),
                    _ => false,
                }
            }
            Condition::UpdatedWithin(d) => facts
                .materialized(ctx.key, part)
                .is_some_and(|m| within(m.at, self.input.now, *d)),
            Condition::InLatestPartition => i + 1 == ctx.slots.len(),
            Condition::AnyDepsUpdated => ctx.deps.iter().any(|(dep, _, slots)| {
                slots[i]
                    .iter()
                    .any(|s| requested_here(dep, s) || self.newly_updated(dep, s))
            }),
            Condition::AnyDepsMissing => ctx.deps.iter().any(|(dep, p, slots)| {
                slots[i].iter().any(|s| {
                    facts.materialized(dep, dep_part(*p, s)).is_none()
                        && !self.requested.get(*dep).is_some_and(|r| r.contains(s))
                })
            }),
            Condition::AnyDepsInProgress => ctx.deps.iter().any(|(dep, p, slots)| {
                slots[i]
                    .iter()
                    .any(|s| facts.in_progress(dep, dep_part(*p, s)) || requested_elsewhere(dep, s))
            }),
            Condition::AllDepsBlockingChecksPassed => ctx.deps.iter().all(|(dep, p, slots)| {
                slots[i]
                    .iter()
                    .all(|s| facts.blocking_checks_passed(dep, dep_part(*p, s)))
            }),
            Condition::CronTickPassed { cron, timezone } => match self.input.previous {
                None => false,
                Some(prev) => crate::cron::Cron::parse(cron, timezone)
                    .ok()
                    .and_then(|c| c.next_after(prev))
                    .is_some_and(|t| t <= self.input.now),
            },
            Condition::AllDepsUpdatedSinceCron { cron, timezone } => {
                let Some(tick) = crate::cron::Cron::parse(cron, timezone)
                    .ok()
                    .and_then(|c| c.latest_at_or_before(self.input.now))
                else {
                    return false;
                };
                ctx.deps.iter().all(|(dep, p, slots)| {
                    slots[i].iter().all(|s| {
                        requested_here(dep, s)
                            || facts
                                .materialized(dep, dep_part(*p, s))
                                .is_some_and(|m| m.at >= tick)
                    })
                })
            }
            Condition::And(_)
            | Condition::Or(_)
            | Condition::Not(_)
            | Condition::NewlyTrue(_)
            | Condition::Since { .. } => unreachable!("combinators are evaluated by `node`"),
        }
    }
}

fn dep_part(partitioned: bool, s: &str) -> Option<&str> {
    partitioned.then_some(s)
}

fn within(at: DateTime<Utc>, now: DateTime<Utc>, d: Duration) -> bool {
    chrono::Duration::from_std(d).is_ok_and(|d| at >= now - d)
}

fn remember(state: &mut AssetState, path: &str, slots: &[String], set: &Set) {
    let true_slots: BTreeSet<String> = slots
        .iter()
        .zip(set)
        .filter(|(_, t)| **t)
        .map(|(s, _)| s.clone())
        .collect();
    if !true_slots.is_empty() {
        state.nodes.insert(path.to_owned(), true_slots);
    }
}

/// Groups requested asset partitions into runs: the assets requested for the same partition
/// key go in one run, and keys requested for the same assets that follow each other in their
/// partitions definition merge into one range. Unpartitioned assets go in one run of their own.
pub fn batch_requests(
    graph: &AssetGraph,
    evaluations: &[AssetEvaluation],
) -> Vec<(BTreeSet<AssetKey>, PartitionRequest)> {
    let mut by_slot: BTreeMap<&str, BTreeSet<AssetKey>> = BTreeMap::new();
    for e in evaluations {
        for slot in &e.requested {
            by_slot.entry(slot).or_default().insert(e.asset.clone());
        }
    }
    let mut by_assets: BTreeMap<BTreeSet<AssetKey>, Vec<&str>> = BTreeMap::new();
    for (slot, assets) in by_slot {
        by_assets.entry(assets).or_default().push(slot);
    }
    let mut runs = Vec::new();
    for (assets, slots) in by_assets {
        if slots == [UNPARTITIONED] {
            runs.push((assets, PartitionRequest::None));
            continue;
        }
        // The definition the keys belong to: the first asset's that knows them all.
        let def = assets
            .iter()
            .filter_map(|k| graph.spec(k).and_then(|s| s.partitions.as_ref()))
            .find(|d| slots.iter().all(|s| d.validate_key(s).is_ok()));
        let mut i = 0;
        while i < slots.len() {
            if slots[i].is_empty() {
                runs.push((assets.clone(), PartitionRequest::None));
                i += 1;
                continue;
            }
            let mut j = i;
            if let Some(def) = def.filter(|d| d.is_time()) {
                while j + 1 < slots.len()
                    && def
                        .keys_in_range(slots[i], slots[j + 1])
                        .is_ok_and(|keys| keys.len() == j + 2 - i)
                {
                    j += 1;
                }
            }
            runs.push((
                assets.clone(),
                if i == j {
                    PartitionRequest::Key(slots[i].to_owned())
                } else {
                    PartitionRequest::Range {
                        from: slots[i].to_owned(),
                        to: slots[j].to_owned(),
                    }
                },
            ));
            i = j + 1;
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::{AssetDep, AssetSpec, AssetsDefinition};
    use chrono::TimeZone;

    fn node(keys: Vec<String>) -> NodeEvaluation {
        NodeEvaluation {
            label: "missing".into(),
            condition: "missing".into(),
            true_count: keys.len(),
            true_partitions: keys,
            children: vec![],
        }
    }

    #[test]
    fn a_week_of_hours_is_stored_as_one_run() {
        let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 24)
            .unwrap()
            .and_hms_opt(5, 0, 0)
            .unwrap();
        let week: Vec<String> = (0..168)
            .map(|h| {
                (start + chrono::TimeDelta::hours(h))
                    .format("%Y-%m-%d-%H:%M")
                    .to_string()
            })
            .collect();
        let json = serde_json::to_string(&node(week.clone())).unwrap();
        assert!(
            json.contains(r#"[{"from":"2026-11-24-05:00","to":"2026-12-01-04:00","step":"hour"}]"#),
            "{json}"
        );
        assert!(json.len() < 200, "{} bytes: {json}", json.len());
        let back: NodeEvaluation = serde_json::from_str(&json).unwrap();
        assert_eq!(back.true_partitions, week);
        // Lists stored before, plain, read as they are.
        let plain = r#"{"label":"a","condition":"a","true_count":2,"true_partitions":["x","2026-11-24"],"children":[]}"#;
        let old: NodeEvaluation = serde_json::from_str(plain).unwrap();
        assert_eq!(old.true_partitions, ["x", "2026-11-24"]);
        // A run that does not reach its end is refused, not looped on.
        let bad = r#"{"label":"a","condition":"a","true_count":2,"true_partitions":[{"from":"2026-11-24","to":"2026-11-23","step":"day"}],"children":[]}"#;
        let err = serde_json::from_str::<NodeEvaluation>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not reach"), "{err}");
    }

    proptest::proptest! {
        /// Any list of keys (runs of hours and days, gaps, repeats, unrelated and malformed
        /// keys, in any order) reads back exactly as written.
        #[test]
        fn partition_lists_round_trip(
            parts in proptest::collection::vec(
                (0u8..5, 0i64..400, 1usize..30, "[a-z0-9:-]{0,12}"),
                0..12,
            )
        ) {
            let base = chrono::NaiveDate::from_ymd_opt(2026, 2, 20)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap();
            let mut keys = Vec::new();
            for (kind, at, len, text) in parts {
                match kind {
                    0 => keys.extend((0..len as i64).map(|h| {
                        (base + chrono::TimeDelta::hours(at + h)).format("%Y-%m-%d-%H:%M").to_string()
                    })),
                    1 => keys.extend((0..len as i64).map(|d| {
                        (base + chrono::TimeDelta::days(at + d)).format("%Y-%m-%d").to_string()
                    })),
                    2 => keys.extend((0..len as i64).rev().map(|h| {
                        (base + chrono::TimeDelta::hours(at + 2 * h)).format("%Y-%m-%d-%H:%M").to_string()
                    })),
                    3 => keys.push(String::new()),
                    _ => keys.push(text),
                }
            }
            let json = serde_json::to_string(&node(keys.clone())).unwrap();
            let back: NodeEvaluation = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(back.true_partitions, keys);
        }
    }

    fn key(s: &str) -> AssetKey {
        AssetKey::parse(s).unwrap()
    }

    fn graph(specs: Vec<AssetSpec>) -> AssetGraph {
        AssetGraph::new(
            specs
                .into_iter()
                .map(|spec| {
                    AssetsDefinition::multi(spec.key.to_user_string(), vec![spec], |_ctx| async {
                        Ok::<_, crate::context::ComputeError>(crate::context::Materialization::new())
                    })
                })
                .collect(),
        )
        .unwrap()
    }

    fn spec(name: &str, deps: &[&str], hourly: bool) -> AssetSpec {
        let mut s = AssetSpec::new(key(name));
        s.deps = deps
            .iter()
            .map(|d| AssetDep {
                key: key(d),
                mapping: None,
            })
            .collect();
        if hourly {
            s.partitions = Some(PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap());
        }
        s
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap()
    }

    struct World {
        graph: AssetGraph,
        conditions: BTreeMap<AssetKey, Condition>,
        facts: FactsTable,
        state: AutomationState,
        previous: Option<DateTime<Utc>>,
        window: Window,
        next_id: i64,
    }

    impl World {
        fn new(graph: AssetGraph, conditions: &[(&str, Condition)]) -> World {
            World {
                graph,
                conditions: conditions
                    .iter()
                    .map(|(k, c)| (key(k), c.clone()))
                    .collect(),
                facts: FactsTable::default(),
                state: AutomationState::default(),
                previous: None,
                window: Window::default(),
                next_id: 1,
            }
        }

        fn tick(&mut self, now: DateTime<Utc>) -> Vec<(String, Vec<String>)> {
            let evaluation = evaluate(&EvaluationInput {
                graph: &self.graph,
                conditions: &self.conditions,
                facts: &self.facts,
                now,
                previous: self.previous,
                state: &self.state,
                window: self.window,
            });
            self.previous = Some(now);
            self.state = evaluation.state;
            evaluation
                .assets
                .into_iter()
                .filter(|a| !a.requested.is_empty())
                .map(|a| (a.asset.to_user_string(), a.requested))
                .collect()
        }

        fn materialize(&mut self, asset: &str, partition: &str, at: DateTime<Utc>) {
            let id = self.next_id;
            self.next_id += 1;
            self.facts.materialize(
                &key(asset),
                partition,
                Materialized {
                    event_id: id,
                    at,
                    code_version: None,
                },
            );
        }
    }

    fn req(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(a, ps)| {
                (
                    (*a).to_owned(),
                    ps.iter().map(|p| (*p).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn eager_runs_a_chain_once_per_change() {
        let g = graph(vec![spec("a", &[], false), spec("b", &["a"], false)]);
        let mut w = World::new(g, &[("a", Condition::eager()), ("b", Condition::eager())]);
        // Both missing: both requested, in one run.
        assert_eq!(w.tick(t(10, 0)), req(&[("a", &[""]), ("b", &[""])]));
        let ev = evaluate(&EvaluationInput {
            graph: &w.graph,
            conditions: &w.conditions,
            facts: &w.facts,
            now: t(10, 0),
            previous: None,
            state: &AutomationState::default(),
            window: w.window,
        });
        assert_eq!(
            batch_requests(&w.graph, &ev.assets),
            vec![(
                [key("a"), key("b")].into_iter().collect(),
                PartitionRequest::None
            )]
        );
        // In progress: nothing more.
        w.facts.in_progress.insert(key("a"), [String::new()].into());
        w.facts.in_progress.insert(key("b"), [String::new()].into());
        assert_eq!(w.tick(t(10, 1)), req(&[]));
        w.facts.in_progress.clear();
        w.materialize("a", "", t(10, 1));
        w.materialize("b", "", t(10, 1));
        assert_eq!(w.tick(t(10, 2)), req(&[]));
        assert_eq!(w.tick(t(10, 3)), req(&[]));
        // `a` updated by someone else: `b` follows, once.
        w.materialize("a", "", t(10, 3));
        assert_eq!(w.tick(t(10, 4)), req(&[("b", &[""])]));
        w.facts.in_progress.insert(key("b"), [String::new()].into());
        assert_eq!(w.tick(t(10, 5)), req(&[]));
        w.facts.in_progress.clear();
        w.materialize("b", "", t(10, 5));
        assert_eq!(w.tick(t(10, 6)), req(&[]));
    }

    /// `b`'s run ends and `a` is materialized again before the next tick: both are new in that
    /// tick. `b` read the older `a`, so it runs again; when `a` and then `b` are materialized
    /// (one run), it does not.
    #[test]
    fn an_upstream_newer_than_the_update_that_would_handle_it_still_triggers() {
        let g = graph(vec![spec("a", &[], false), spec("b", &["a"], false)]);
        let mut w = World::new(g, &[("b", Condition::eager())]);
        w.materialize("a", "", t(10, 0));
        w.materialize("b", "", t(10, 0));
        assert_eq!(w.tick(t(10, 1)), req(&[]));
        w.materialize("a", "", t(10, 1));
        assert_eq!(w.tick(t(10, 2)), req(&[("b", &[""])]));
        w.facts.in_progress.insert(key("b"), [String::new()].into());
        // While `b` runs, `a` changes; `b` ends, then `a` again, all before the next tick.
        w.materialize("a", "", t(10, 2));
        assert_eq!(w.tick(t(10, 3)), req(&[]));
        w.facts.in_progress.clear();
        w.materialize("b", "", t(10, 3));
        w.materialize("a", "", t(10, 3));
        assert_eq!(w.tick(t(10, 4)), req(&[("b", &[""])]));
        w.materialize("b", "", t(10, 4));
        assert_eq!(w.tick(t(10, 5)), req(&[]));
        // `a` then `b` in one run, seen in one tick: handled.
        w.materialize("a", "", t(10, 5));
        w.materialize("b", "", t(10, 5));
        assert_eq!(w.tick(t(10, 6)), req(&[]));
        assert_eq!(w.tick(t(10, 7)), req(&[]));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: crate::fuzz_cases(),
            ..Default::default()
        })]
        /// `a` changes, the daemon ticks and `b`'s requested runs execute (each reading `a`
        /// as it is then), in any interleaving; once `a` stops changing, `b` runs until it has
        /// read the newest `a`, and then no more.
        #[test]
        fn eager_ends_with_the_newest_upstream_whatever_the_interleaving(
            ops in proptest::collection::vec(0u8..3, 0..40)
        ) {
            let g = graph(vec![spec("a", &[], false), spec("b", &["a"], false)]);
            let mut w = World::new(g, &[("b", Condition::eager())]);
            w.materialize("a", "", t(9, 0));
            w.materialize("b", "", t(9, 0));
            // The daemon has been ticking: what it saw first is not "new".
            proptest::prop_assert_eq!(w.tick(t(9, 1)), req(&[]));
            let mut minute = 0u32;
            let mut pending = false;
            let mut step = |w: &mut World, op: u8, pending: &mut bool| {
                minute += 1;
                let now = t(10, 0) + chrono::Duration::minutes(i64::from(minute));
                match op {
                    0 => w.materialize("a", "", now),
                    1 => {
                        if !w.tick(now).is_empty() {
                            proptest::prop_assert!(!*pending, "b requested while its run is queued");
                            *pending = true;
                            w.facts.in_progress.insert(key("b"), [String::new()].into());
                        }
                    }
                    _ => {
                        if std::mem::take(pending) {
                            w.facts.in_progress.clear();
                            w.materialize("b", "", now);
                        }
                    }
                }
                Ok(())
            };
            for op in ops {
                step(&mut w, op, &mut pending)?;
            }
            // `a` is quiet: ticks and runs only, alternately.
            let mut runs = 0;
            for _ in 0..10 {
                step(&mut w, 1, &mut pending)?;
                if pending {
                    runs += 1;
                }
                step(&mut w, 2, &mut pending)?;
            }
            let id = |w: &World, k: &str| w.facts.materialized(&key(k), None).unwrap().event_id;
            proptest::prop_assert!(id(&w, "b") > id(&w, "a"), "b never read the newest a");
            proptest::prop_assert!(runs <= 1, "{runs} runs of b after a stopped changing");
        }
    }

    #[test]
    fn a_failed_run_is_not_retried_in_a_loop() {
        let g = graph(vec![spec("a", &[], false)]);
        let mut w = World::new(g, &[("a", Condition::eager())]);
        assert_eq!(w.tick(t(10, 0)), req(&[("a", &[""])]));
        w.facts
            .failed
            .insert(key("a"), [(String::new(), t(10, 0))].into());
        for m in 1..5 {
            assert_eq!(w.tick(t(10, m)), req(&[]));
        }
    }

    #[test]
    fn hourly_partitions_follow_their_upstream_and_batch_into_ranges() {
        let g = graph(vec![spec("raw", &[], true), spec("stg", &["raw"], true)]);
        let mut w = World::new(g, &[("stg", Condition::eager())]);
        w.window = Window {
            partitions: 3,
            include_current: true,
        };
        // Upstream not there yet: nothing.
        assert_eq!(w.tick(t(10, 30)), req(&[]));
        w.materialize("raw", "2026-11-22-09:00", t(10, 31));
        w.materialize("raw", "2026-11-22-10:00", t(10, 31));
        w.materialize("raw", "2026-11-22-08:00", t(10, 31));
        let got = w.tick(t(10, 32));
        assert_eq!(
            got,
            req(&[(
                "stg",
                &["2026-11-22-08:00", "2026-11-22-09:00", "2026-11-22-10:00"]
            )])
        );
        // A late file in hour 09 re-runs hour 09 only.
        w.materialize("stg", "2026-11-22-08:00", t(10, 33));
        w.materialize("stg", "2026-11-22-09:00", t(10, 33));
        w.materialize("stg", "2026-11-22-10:00", t(10, 33));
        assert_eq!(w.tick(t(10, 34)), req(&[]));
        w.materialize("raw", "2026-11-22-09:00", t(10, 35));
        assert_eq!(w.tick(t(10, 36)), req(&[("stg", &["2026-11-22-09:00"])]));
    }

    #[test]
    fn ranges_merge_only_consecutive_keys() {
        let g = graph(vec![spec("x", &[], true)]);
        let e = |keys: &[&str]| AssetEvaluation {
            asset: key("x"),
            condition: String::new(),
            candidates: 0,
            requested: keys.iter().map(|k| (*k).to_owned()).collect(),
            tree: NodeEvaluation {
                label: String::new(),
                condition: String::new(),
                true_count: 0,
                true_partitions: vec![],
                children: vec![],
            },
        };
        let runs = batch_requests(
            &g,
            &[e(&[
                "2026-11-22-01:00",
                "2026-11-22-02:00",
                "2026-11-22-03:00",
                "2026-11-22-05:00",
            ])],
        );
        let parts: Vec<PartitionRequest> = runs.into_iter().map(|(_, p)| p).collect();
        assert_eq!(
            parts,
            vec![
                PartitionRequest::Range {
                    from: "2026-11-22-01:00".into(),
                    to: "2026-11-22-03:00".into()
                },
                PartitionRequest::Key("2026-11-22-05:00".into())
            ]
        );
    }

    #[test]
    fn on_cron_waits_for_the_tick_and_the_deps() {
        let g = graph(vec![spec("a", &[], false), spec("daily", &["a"], false)]);
        let mut w = World::new(g, &[("daily", Condition::on_cron("0 * * * *", "UTC"))]);
        w.materialize("a", "", t(9, 0));
        assert_eq!(w.tick(t(9, 50)), req(&[]));
        // The 10:00 tick passes, but `a` was last updated before it: wait.
        assert_eq!(w.tick(t(10, 1)), req(&[]));
        assert_eq!(w.tick(t(10, 2)), req(&[]));
        w.materialize("a", "", t(10, 3));
        assert_eq!(w.tick(t(10, 4)), req(&[("daily", &[""])]));
        w.materialize("daily", "", t(10, 5));
        assert_eq!(w.tick(t(10, 6)), req(&[]));
        w.materialize("a", "", t(10, 7));
        assert_eq!(w.tick(t(10, 8)), req(&[]));
    }

    #[test]
    fn the_tree_says_which_nodes_held() {
        let g = graph(vec![spec("a", &[], false), spec("b", &["a"], false)]);
        let mut w = World::new(g, &[("b", Condition::eager())]);
        w.tick(t(10, 0));
        let ev = evaluate(&EvaluationInput {
            graph: &w.graph,
            conditions: &w.conditions,
            facts: &w.facts,
            now: t(10, 1),
            previous: w.previous,
            state: &w.state,
            window: w.window,
        });
        let tree = &ev.assets[0].tree;
        assert_eq!(tree.label, "and");
        assert_eq!(tree.true_count, 0);
        let missing_dep = &tree.children[1];
        assert_eq!(missing_dep.condition, "!any_deps_missing");
        assert_eq!(missing_dep.children[0].true_partitions, vec![String::new()]);
    }
}
