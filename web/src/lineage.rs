//! The lineage graph as SVG: a layered layout (each asset one layer right of its deepest
//! upstream, ordered in its layer by the mean position of its upstreams), nodes coloured by
//! state and linked to their asset pages. Pure: the caller passes the graph's keys and states.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use orch::{AssetGraph, AssetKey};
use serde::Serialize;

use crate::charts::{esc, state_colour};

const NODE_W: f64 = 190.0;
const NODE_H: f64 = 26.0;
const COL: f64 = 250.0;
const ROW: f64 = 34.0;

/// A laid-out node.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub key: String,
    pub group: String,
    pub state: String,
    pub layer: usize,
    pub x: f64,
    pub y: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Layout {
    pub nodes: Vec<Node>,
    /// Edges as indexes into `nodes`, upstream first.
    pub edges: Vec<(usize, usize)>,
    pub width: f64,
    pub height: f64,
}

/// Lays out the `visible` assets of `graph` (in its topological order), with their states.
pub fn layout(
    graph: &AssetGraph,
    visible: &BTreeSet<AssetKey>,
    state_of: impl Fn(&AssetKey) -> &'static str,
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
    let layers = layer.iter().max().map_or(0, |m| m + 1);
    let mut by_layer: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (i, &l) in layer.iter().enumerate() {
        by_layer[l].push(i);
    }
    let mut pos = vec![0.0f64; order.len()];
    for members in &mut by_layer {
        let mut keyed: Vec<(f64, usize)> = members
            .iter()
            .map(|&i| {
                let ps = &parents[i];
                let bary = if ps.is_empty() {
                    f64::MAX / 2.0
                } else {
                    ps.iter().map(|&p| pos[p]).sum::<f64>() / ps.len() as f64
                };
                (bary, i)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(order[a.1].cmp(order[b.1])));
        for (row, (_, i)) in keyed.iter().enumerate() {
            pos[*i] = row as f64;
        }
        *members = keyed.into_iter().map(|(_, i)| i).collect();
    }
    let tallest = by_layer.iter().map(Vec::len).max().unwrap_or(0);
    let nodes: Vec<Node> = order
        .iter()
        .enumerate()
        .map(|(i, k)| Node {
            key: k.to_string(),
            group: graph.spec(k).map(|s| s.group.clone()).unwrap_or_default(),
            state: state_of(k).to_owned(),
            layer: layer[i],
            x: 10.0 + layer[i] as f64 * COL,
            y: 10.0 + pos[i] * ROW,
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
        width: 20.0 + layers as f64 * COL,
        height: 20.0 + tallest as f64 * ROW,
    }
}

/// The layout as an SVG document fragment.
pub fn svg(layout: &Layout) -> String {
    let mut s = String::with_capacity(layout.nodes.len() * 400 + layout.edges.len() * 120);
    let _ = write!(
        s,
        "<svg id=\"lineage-svg\" class=\"lineage\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w:.0} {h:.0}\" width=\"{w:.0}\" height=\"{h:.0}\" role=\"img\"><g class=\"edges\">",
        w = layout.width.max(200.0),
        h = layout.height.max(60.0)
    );
    for &(from, to) in &layout.edges {
        let a = &layout.nodes[from];
        let b = &layout.nodes[to];
        let (x1, y1) = (a.x + NODE_W, a.y + NODE_H / 2.0);
        let (x2, y2) = (b.x, b.y + NODE_H / 2.0);
        let mid = (x1 + x2) / 2.0;
        let _ = write!(
            s,
            "<path d=\"M{x1:.0},{y1:.0} C{mid:.0},{y1:.0} {mid:.0},{y2:.0} {x2:.0},{y2:.0}\"/>"
        );
    }
    s.push_str("</g><g class=\"nodes\">");
    for n in &layout.nodes {
        let key = esc(&n.key);
        let label = if n.key.chars().count() > 28 {
            let tail: String = n
                .key
                .chars()
                .rev()
                .take(27)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{tail}")
        } else {
            n.key.clone()
        };
        let _ = write!(
            s,
            "<a href=\"/assets/{key}\" class=\"node\" data-key=\"{key}\" data-state=\"{state}\"><rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"5\" fill=\"{fill}\"/><text x=\"{tx:.0}\" y=\"{ty:.0}\">{label}</text><title>{key} ({group}): {state}</title></a>",
            state = esc(&n.state),
            x = n.x,
            y = n.y,
            fill = state_colour(&n.state),
            tx = n.x + 8.0,
            ty = n.y + 17.0,
            label = esc(&label),
            group = esc(&n.group),
        );
    }
    s.push_str("</g></svg>");
    s
}
