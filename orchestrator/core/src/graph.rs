//! The asset graph: definitions validated into a DAG on petgraph. Duplicate keys, unknown deps
//! (with the nearest existing key suggested) and cycles (with the cycle's path) are refused.
//!
//! Pure: no IO.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::asset::{AssetKey, AssetSpec, AssetsDefinition};

/// Why definitions do not form a valid asset graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// Two definitions (or one, twice) define the same asset.
    #[error("duplicate asset key `{key}`: defined by `{first}` and by `{second}`")]
    DuplicateKey {
        key: AssetKey,
        first: String,
        second: String,
    },
    /// An asset depends on a key no definition provides.
    #[error(
        "asset `{asset}` depends on `{dep}`, which no definition provides{}",
        did_you_mean(.suggestion.as_ref())
    )]
    UnknownDep {
        asset: AssetKey,
        dep: AssetKey,
        suggestion: Option<AssetKey>,
    },
    /// The dependencies loop: `path[0] == path[path.len() - 1]`.
    #[error("dependency cycle: {}", join_path(.path))]
    Cycle { path: Vec<AssetKey> },
}

fn did_you_mean(suggestion: Option<&AssetKey>) -> String {
    suggestion
        .map(|key| format!("; did you mean `{key}`?"))
        .unwrap_or_default()
}

fn join_path(path: &[AssetKey]) -> String {
    let mut out = String::new();
    for (i, key) in path.iter().enumerate() {
        if i > 0 {
            out.push_str(" -> ");
        }
        let _ = write!(out, "{key}");
    }
    out
}

/// The validated asset graph. Edges run from upstream to downstream.
#[derive(Debug, Clone)]
pub struct AssetGraph {
    graph: DiGraph<AssetKey, ()>,
    nodes: HashMap<AssetKey, NodeIndex>,
    definitions: Vec<AssetsDefinition>,
    /// For each node (by index): its definition and the spec's index in it.
    locations: Vec<(usize, usize)>,
    topo_keys: Vec<AssetKey>,
    topo_nodes: Vec<NodeIndex>,
}

/// How close a string must be to a key to be suggested, from 0 to 1.
const SUGGESTION_THRESHOLD: f64 = 0.7;

/// How similar `input` is to `key`, from 0 to 1: the normalized Damerau-Levenshtein
/// similarity of the `a/b` forms, or, for an input without `/`, of the input and the key's
/// last segment (slightly discounted, so that `listen_events` suggests
/// `staging/listen_events`).
fn similarity(input: &str, key: &AssetKey) -> f64 {
    let full = strsim::normalized_damerau_levenshtein(input, &key.to_string());
    if input.contains('/') || key.parts().len() == 1 {
        full
    } else {
        full.max(0.95 * strsim::normalized_damerau_levenshtein(input, key.name()))
    }
}

impl AssetGraph {
    /// Validates the definitions into a graph: every key defined once, every dependency
    /// defined, no cycle.
    pub fn new(definitions: Vec<AssetsDefinition>) -> Result<Self, GraphError> {
        let count: usize = definitions.iter().map(|d| d.specs.len()).sum();
        let mut graph = DiGraph::with_capacity(count, count);
        let mut nodes: HashMap<AssetKey, NodeIndex> = HashMap::with_capacity(count);
        let mut locations: Vec<(usize, usize)> = Vec::with_capacity(count);
        for (d, definition) in definitions.iter().enumerate() {
            for (s, spec) in definition.specs.iter().enumerate() {
                if let Some(&existing) = nodes.get(&spec.key) {
                    let (first, _) = locations[existing.index()];
                    return Err(GraphError::DuplicateKey {
                        key: spec.key.clone(),
                        first: definitions[first].name.clone(),
                        second: definition.name.clone(),
                    });
                }
                let node = graph.add_node(spec.key.clone());
                nodes.insert(spec.key.clone(), node);
                locations.push((d, s));
            }
        }

        let mut graph_so_far = AssetGraph {
            graph,
            nodes,
            definitions: Vec::new(),
            locations,
            topo_keys: Vec::new(),
            topo_nodes: Vec::new(),
        };
        let mut seen = HashSet::new();
        for definition in &definitions {
            for spec in &definition.specs {
                let to = graph_so_far.nodes[&spec.key];
                seen.clear();
                for dep in &spec.deps {
                    let Some(&from) = graph_so_far.nodes.get(&dep.key) else {
                        return Err(GraphError::UnknownDep {
                            asset: spec.key.clone(),
                            dep: dep.key.clone(),
                            suggestion: graph_so_far.nearest_key(&dep.key.to_string()).cloned(),
                        });
                    };
                    if seen.insert(from) {
                        graph_so_far.graph.add_edge(from, to, ());
                    }
                }
            }
        }
        graph_so_far.definitions = definitions;
        graph_so_far.sort()?;
        Ok(graph_so_far)
    }

    /// Kahn's algorithm, taking the smallest ready key first, so that the order only depends
    /// on the graph. On a cycle, reports one.
    fn sort(&mut self) -> Result<(), GraphError> {
        let graph = &self.graph;
        let mut in_degree: Vec<usize> = graph
            .node_indices()
            .map(|n| graph.neighbors_directed(n, Direction::Incoming).count())
            .collect();
        let mut ready: BinaryHeap<Reverse<(&AssetKey, NodeIndex)>> = graph
            .node_indices()
            .filter(|n| in_degree[n.index()] == 0)
            .map(|n| Reverse((&graph[n], n)))
            .collect();
        let mut order = Vec::with_capacity(graph.node_count());
        while let Some(Reverse((_, node))) = ready.pop() {
            order.push(node);
            for child in graph.neighbors_directed(node, Direction::Outgoing) {
                in_degree[child.index()] -= 1;
                if in_degree[child.index()] == 0 {
                    ready.push(Reverse((&graph[child], child)));
                }
            }
        }
        if order.len() < graph.node_count() {
            return Err(GraphError::Cycle {
                path: self.find_cycle(),
            });
        }
        self.topo_keys = order.iter().map(|&n| graph[n].clone()).collect();
        self.topo_nodes = order;
        Ok(())
    }

    /// A cycle through the smallest key that is on one: the shortest path from that key back
    /// to itself, within its strongly connected component. Kosaraju's algorithm, because
    /// petgraph's is iterative where its Tarjan is recursive (a 10,000-asset cycle would
    /// overflow the stack).
    fn find_cycle(&self) -> Vec<AssetKey> {
        let graph = &self.graph;
        let on_cycle = |scc: &Vec<NodeIndex>| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
        let Some((scc, start)) = petgraph::algo::kosaraju_scc(graph)
            .into_iter()
            .filter(on_cycle)
            .filter_map(|scc| {
                let start = *scc.iter().min_by_key(|&&n| &graph[n])?;
                Some((scc, start))
            })
            .min_by(|a, b| graph[a.1].cmp(&graph[b.1]))
        else {
            return Vec::new();
        };
        let members: HashSet<NodeIndex> = scc.into_iter().collect();
        // Breadth-first from `start`, children in key order, until an edge back to `start`.
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(node) = queue.pop_front() {
            let mut children: Vec<NodeIndex> = graph
                .neighbors_directed(node, Direction::Outgoing)
                .filter(|c| members.contains(c))
                .collect();
            children.sort_by(|a, b| graph[*a].cmp(&graph[*b]));
            children.dedup();
            for child in children {
                if child == start {
                    last = Some(node);
                    break 'search;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(child) {
                    e.insert(node);
                    queue.push_back(child);
                }
            }
        }
        let mut back = Vec::new();
        let mut node = last.unwrap_or(start);
        while node != start {
            back.push(graph[node].clone());
            node = parent[&node];
        }
        let mut path = Vec::with_capacity(back.len() + 2);
        path.push(graph[start].clone());
        path.extend(back.into_iter().rev());
        path.push(graph[start].clone());
        path
    }

    pub fn definitions(&self) -> &[AssetsDefinition] {
        &self.definitions
    }

    /// The index in [`definitions`](Self::definitions) of the definition of `key`.
    pub fn definition_index(&self, key: &AssetKey) -> Option<usize> {
        let node = self.nodes.get(key)?;
        Some(self.locations[node.index()].0)
    }

    pub fn definition_of(&self, key: &AssetKey) -> Option<&AssetsDefinition> {
        self.definition_index(key).map(|i| &self.definitions[i])
    }

    pub fn spec(&self, key: &AssetKey) -> Option<&AssetSpec> {
        let node = self.nodes.get(key)?;
        Some(self.spec_at(*node))
    }

    fn spec_at(&self, node: NodeIndex) -> &AssetSpec {
        let (d, s) = self.locations[node.index()];
        &self.definitions[d].specs[s]
    }

    pub fn contains(&self, key: &AssetKey) -> bool {
        self.nodes.contains_key(key)
    }

    /// The number of assets.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Every key, upstream before downstream; among assets that could come next, the smallest
    /// key first, so the order depends only on the graph.
    pub fn toposorted(&self) -> &[AssetKey] {
        &self.topo_keys
    }

    /// Every spec, in topological order.
    pub fn specs(&self) -> impl Iterator<Item = &AssetSpec> {
        self.topo_nodes.iter().map(|&n| self.spec_at(n))
    }

    fn neighbours(&self, key: &AssetKey, direction: Direction) -> Vec<&AssetKey> {
        let Some(&node) = self.nodes.get(key) else {
            return Vec::new();
        };
        let mut keys: Vec<&AssetKey> = self
            .graph
            .neighbors_directed(node, direction)
            .map(|n| &self.graph[n])
            .collect();
        keys.sort();
        keys
    }

    /// The assets `key` depends on directly, sorted.
    pub fn parents(&self, key: &AssetKey) -> Vec<&AssetKey> {
        self.neighbours(key, Direction::Incoming)
    }

    /// The assets that depend on `key` directly, sorted.
    pub fn children(&self, key: &AssetKey) -> Vec<&AssetKey> {
        self.neighbours(key, Direction::Outgoing)
    }

    /// Breadth-first from every start at once: each node reached within `depth` edges
    /// (`None`: any number), the starts included.
    fn reach(
        &self,
        starts: impl IntoIterator<Item = NodeIndex>,
        direction: Direction,
        depth: Option<usize>,
    ) -> Vec<NodeIndex> {
        let mut seen = vec![false; self.graph.node_count()];
        let mut queue = VecDeque::new();
        let mut reached = Vec::new();
        for start in starts {
            if !seen[start.index()] {
                seen[start.index()] = true;
                queue.push_back((start, 0usize));
                reached.push(start);
            }
        }
        while let Some((node, distance)) = queue.pop_front() {
            if depth.is_some_and(|d| distance >= d) {
                continue;
            }
            for next in self.graph.neighbors_directed(node, direction) {
                if !seen[next.index()] {
                    seen[next.index()] = true;
                    queue.push_back((next, distance + 1));
                    reached.push(next);
                }
            }
        }
        reached
    }

    fn relatives(
        &self,
        key: &AssetKey,
        direction: Direction,
        depth: Option<usize>,
    ) -> BTreeSet<AssetKey> {
        let Some(&node) = self.nodes.get(key) else {
            return BTreeSet::new();
        };
        self.reach([node], direction, depth)
            .into_iter()
            .filter(|&n| n != node)
            .map(|n| self.graph[n].clone())
            .collect()
    }

    fn with_relatives<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a AssetKey>,
        direction: Direction,
        depth: Option<usize>,
    ) -> BTreeSet<AssetKey> {
        let starts: Vec<NodeIndex> = keys
            .into_iter()
            .filter_map(|k| self.nodes.get(k).copied())
            .collect();
        self.reach(starts, direction, depth)
            .into_iter()
            .map(|n| self.graph[n].clone())
            .collect()
    }

    /// The assets `key` depends on, directly or not, without `key`: `Some(1)` gives its
    /// parents, `Some(2)` adds their parents, `None` gives all.
    pub fn ancestors(&self, key: &AssetKey, depth: Option<usize>) -> BTreeSet<AssetKey> {
        self.relatives(key, Direction::Incoming, depth)
    }

    /// The assets that depend on `key`, directly or not, without `key`; `depth` as for
    /// [`ancestors`](Self::ancestors).
    pub fn descendants(&self, key: &AssetKey, depth: Option<usize>) -> BTreeSet<AssetKey> {
        self.relatives(key, Direction::Outgoing, depth)
    }

    /// `keys` (those in the graph) and their ancestors within `depth`, in one pass over the
    /// graph however many keys there are.
    pub fn with_ancestors<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a AssetKey>,
        depth: Option<usize>,
    ) -> BTreeSet<AssetKey> {
        self.with_relatives(keys, Direction::Incoming, depth)
    }

    /// `keys` (those in the graph) and their descendants within `depth`, in one pass.
    pub fn with_descendants<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a AssetKey>,
        depth: Option<usize>,
    ) -> BTreeSet<AssetKey> {
        self.with_relatives(keys, Direction::Outgoing, depth)
    }

    /// The existing key most like `input` (a mistyped key, for "did you mean"), if one is
    /// reasonably close. An input without `/` is also compared with each key's last segment.
    pub fn nearest_key(&self, input: &str) -> Option<&AssetKey> {
        let mut best: Option<(f64, &AssetKey)> = None;
        for key in self.nodes.keys() {
            let score = similarity(input, key);
            if score < SUGGESTION_THRESHOLD {
                continue;
            }
            let better = match best {
                None => true,
                Some((s, k)) => score > s || (score == s && key < k),
            };
            if better {
                best = Some((score, key));
            }
        }
        best.map(|(_, key)| key)
    }

    /// The names of the groups that have assets.
    pub fn groups(&self) -> BTreeSet<&str> {
        self.specs().map(|s| s.group.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::{AssetSpec, asset};
    use crate::context::{ComputeError, Materialization};

    fn def(key: &str, deps: &[&str]) -> AssetsDefinition {
        asset(key)
            .deps(deps.iter().copied())
            .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
            .unwrap()
    }

    fn key(s: &str) -> AssetKey {
        AssetKey::parse(s).unwrap()
    }

    fn keys(keys: &BTreeSet<AssetKey>) -> Vec<String> {
        keys.iter().map(ToString::to_string).collect()
    }

    fn strings(keys: &[&AssetKey]) -> Vec<String> {
        keys.iter().map(ToString::to_string).collect()
    }

    fn err(definitions: Vec<AssetsDefinition>) -> String {
        AssetGraph::new(definitions).unwrap_err().to_string()
    }

    /// raw/a -> staging/a -> marts/x -> reports/y, raw/b -> staging/b -> marts/x, and lone.
    fn fixture() -> AssetGraph {
        AssetGraph::new(vec![
            def("reports/y", &["marts/x"]),
            def("marts/x", &["staging/a", "staging/b"]),
            def("staging/b", &["raw/b"]),
            def("staging/a", &["raw/a"]),
            def("raw/b", &[]),
            def("raw/a", &[]),
            def("lone", &[]),
        ])
        .unwrap()
    }

    #[test]
    fn duplicate_keys_name_both_definitions() {
        let multi = AssetsDefinition::multi(
            "dbt_project",
            vec![AssetSpec::new(key("a/b")), AssetSpec::new(key("c"))],
            |_ctx| async { Ok::<_, ComputeError>(Materialization::new()) },
        );
        assert_eq!(
            err(vec![def("a/b", &[]), multi]),
            "duplicate asset key `a/b`: defined by `a/b` and by `dbt_project`"
        );
        assert_eq!(
            AssetGraph::new(vec![def("a/b", &[]), def("a/b", &[])]).unwrap_err(),
            GraphError::DuplicateKey {
                key: key("a/b"),
                first: "a/b".to_owned(),
                second: "a/b".to_owned()
            }
        );
    }

    #[test]
    fn unknown_deps_suggest_the_nearest_key() {
        assert_eq!(
            err(vec![
                def("staging/listen_events", &[]),
                def("marts/top_songs", &["staging/listen_event"]),
            ]),
            "asset `marts/top_songs` depends on `staging/listen_event`, which no definition provides; did you mean `staging/listen_events`?"
        );
        assert_eq!(
            err(vec![
                def("staging/listen_events", &[]),
                def("marts/top_songs", &["billing/invoices"]),
            ]),
            "asset `marts/top_songs` depends on `billing/invoices`, which no definition provides"
        );
    }

    #[test]
    fn cycles_are_shown_from_their_smallest_key() {
        assert_eq!(
            err(vec![
                def("c", &["b"]),
                def("b", &["a"]),
                def("a", &["c"]),
                def("d", &["a"]),
            ]),
            "dependency cycle: a -> b -> c -> a"
        );
        assert_eq!(
            err(vec![def("a", &[]), def("b", &["b", "a"])]),
            "dependency cycle: b -> b"
        );
        // Two cycles: the one with the smallest key is shown, by its shortest path.
        assert_eq!(
            AssetGraph::new(vec![
                def("x", &["y"]),
                def("y", &["x"]),
                def("m", &["q"]),
                def("n", &["m"]),
                def("p", &["n"]),
                def("q", &["p", "m"]),
            ])
            .unwrap_err(),
            GraphError::Cycle {
                path: vec![key("m"), key("q"), key("m")]
            }
        );
    }

    #[test]
    fn topological_order_is_deterministic() {
        let graph = fixture();
        let order: Vec<String> = graph.toposorted().iter().map(ToString::to_string).collect();
        assert_eq!(
            order,
            [
                "lone",
                "raw/a",
                "raw/b",
                "staging/a",
                "staging/b",
                "marts/x",
                "reports/y"
            ]
        );
        let specs: Vec<String> = graph.specs().map(|s| s.key.to_string()).collect();
        assert_eq!(specs, order);
        // The same graph defined in another order sorts the same.
        let mut definitions = graph.definitions().to_vec();
        definitions.reverse();
        let again = AssetGraph::new(definitions).unwrap();
        assert_eq!(again.toposorted(), graph.toposorted());
    }

    #[test]
    fn lookups() {
        let graph = fixture();
        assert_eq!(graph.len(), 7);
        assert!(!graph.is_empty());
        assert!(graph.contains(&key("marts/x")));
        assert!(!graph.contains(&key("marts/z")));
        assert_eq!(graph.definition_index(&key("marts/x")), Some(1));
        assert_eq!(graph.definition_of(&key("raw/a")).unwrap().name, "raw/a");
        assert_eq!(graph.spec(&key("staging/b")).unwrap().key, key("staging/b"));
        assert_eq!(graph.spec(&key("nope")).map(|s| &s.key), None);
        assert_eq!(graph.groups(), BTreeSet::from(["default"]));
        assert!(AssetGraph::new(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn parents_children_ancestors_descendants() {
        let graph = fixture();
        let x = key("marts/x");
        assert_eq!(strings(&graph.parents(&x)), ["staging/a", "staging/b"]);
        assert_eq!(strings(&graph.children(&x)), ["reports/y"]);
        assert!(graph.parents(&key("raw/a")).is_empty());
        assert_eq!(
            keys(&graph.ancestors(&x, Some(1))),
            ["staging/a", "staging/b"]
        );
        assert_eq!(
            keys(&graph.ancestors(&x, Some(2))),
            ["raw/a", "raw/b", "staging/a", "staging/b"]
        );
        assert_eq!(graph.ancestors(&x, None), graph.ancestors(&x, Some(2)));
        assert!(graph.ancestors(&x, Some(0)).is_empty());
        assert_eq!(
            keys(&graph.descendants(&key("raw/a"), Some(2))),
            ["marts/x", "staging/a"]
        );
        assert_eq!(
            keys(&graph.descendants(&key("raw/a"), None)),
            ["marts/x", "reports/y", "staging/a"]
        );
        assert!(graph.descendants(&key("lone"), None).is_empty());
        assert_eq!(
            keys(&graph.with_ancestors([&key("staging/a"), &key("lone")], Some(1))),
            ["lone", "raw/a", "staging/a"]
        );
        assert_eq!(
            keys(&graph.with_descendants([&key("staging/a"), &key("staging/b")], None)),
            ["marts/x", "reports/y", "staging/a", "staging/b"]
        );
    }

    #[test]
    fn nearest_keys() {
        let graph = fixture();
        assert_eq!(graph.nearest_key("marts/xx"), Some(&key("marts/x")));
        assert_eq!(graph.nearest_key("staging_a"), Some(&key("staging/a")));
        assert_eq!(graph.nearest_key("reports/y"), Some(&key("reports/y")));
        assert_eq!(graph.nearest_key("completely/different"), None);
        let graph = AssetGraph::new(vec![def("staging/listen_events", &[])]).unwrap();
        assert_eq!(
            graph.nearest_key("listen_events"),
            Some(&key("staging/listen_events"))
        );
    }

    #[test]
    fn ten_thousand_assets() {
        // A long chain plus a wide fan-in: construction, sorting and traversal stay linear.
        let n = 10_000;
        let mut definitions = Vec::with_capacity(n + 1);
        let names: Vec<String> = (0..n).map(|i| format!("chain/a{i:05}")).collect();
        for i in 0..n {
            let deps: Vec<&str> = if i == 0 { vec![] } else { vec![&names[i - 1]] };
            definitions.push(def(&names[i], &deps));
        }
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        definitions.push(def("sink", &all));
        let graph = AssetGraph::new(definitions).unwrap();
        assert_eq!(graph.len(), n + 1);
        assert_eq!(graph.toposorted().last(), Some(&key("sink")));
        assert_eq!(graph.ancestors(&key("sink"), None).len(), n);
        assert_eq!(graph.descendants(&key("chain/a00000"), None).len(), n);
        assert_eq!(graph.parents(&key("sink")).len(), n);

        // A cycle through all of them is found and shown whole.
        let mut definitions = graph.definitions().to_vec();
        definitions[0] = def(&names[0], &[&names[n - 1]]);
        let Err(GraphError::Cycle { path }) = AssetGraph::new(definitions) else {
            panic!("expected a cycle");
        };
        assert_eq!(path.len(), n + 1);
        assert_eq!(path[0], key("chain/a00000"));
        assert_eq!(path[1], key("chain/a00001"));
    }
}
