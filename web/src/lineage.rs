//! The lineage graph as data: the visible assets (in topological order) with their group,
//! state and staleness, and the edges between them. `static/app.js` lays it out with dagre
//! (vendored under `static/vendor/`) and draws it as SVG with arrowheads, group boxes, zoom,
//! pan and search. Pure: the caller passes the graph's keys, states and stale assets.

use std::collections::{BTreeSet, HashMap};

use orch::{AssetGraph, AssetKey};
use serde::Serialize;

/// A node of the lineage.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub key: String,
    pub group: String,
    /// MATERIALIZED, FAILED or NEVER.
    pub state: String,
    /// A materialized partition is older than its upstream or its code version.
    pub stale: bool,
    pub kinds: Vec<String>,
    pub description: Option<String>,
    /// Its depth: one more than its deepest visible upstream.
    pub layer: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Layout {
    pub nodes: Vec<Node>,
    /// Edges as indexes into `nodes`, upstream first.
    pub edges: Vec<(usize, usize)>,
    /// The groups of the visible nodes, sorted.
    pub groups: Vec<String>,
}

/// The `visible` assets of `graph` (in its topological order), with their states.
pub fn layout(
    graph: &AssetGraph,
    visible: &BTreeSet<AssetKey>,
    state_of: impl Fn(&AssetKey) -> &'static str,
    stale: &BTreeSet<AssetKey>,
) -> Layout {
    let order: Vec<&AssetKey> = graph
        .toposorted()
        .iter()
        .filter(|k| visible.contains(*k))
        .collect();
    let index: HashMap<&AssetKey, usize> = order.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let parents: Vec<Vec<usize>> = order
        .iter()
        .map(|k| {
            graph
                .parents(k)
                .into_iter()
                .filter_map(|p| index.get(p).copied())
                .collect()
        })
        .collect();
    let mut layer = vec![0usize; order.len()];
    for i in 0..order.len() {
        layer[i] = parents[i].iter().map(|&p| layer[p] + 1).max().unwrap_or(0);
    }
    let mut groups = BTreeSet::new();
    let nodes: Vec<Node> = order
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let spec = graph.spec(k);
            let group = spec.map(|s| s.group.clone()).unwrap_or_default();
            groups.insert(group.clone());
            Node {
                key: k.to_string(),
                group,
                state: state_of(k).to_owned(),
                stale: stale.contains(*k),
                kinds: spec
                    .map(|s| s.kinds.iter().cloned().collect())
                    .unwrap_or_default(),
                description: spec.and_then(|s| s.description.clone()),
                layer: layer[i],
            }
        })
        .collect();
    let edges = parents
        .iter()
        .enumerate()
        .flat_map(|(i, ps)| ps.iter().map(move |&p| (p, i)))
        .collect();
    Layout {
        nodes,
        edges,
        groups: groups.into_iter().collect(),
    }
}
