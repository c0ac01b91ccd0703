//! What the charts show, as JSON specs that `static/app.js` draws with Apache ECharts (vendored
//! under `static/vendor/`): the dashboards' bars, columns, lines and shares, the Gantt chart of
//! a run's steps (one row per asset, partitions collapsed) and an asset's materializations.
//! A page puts a spec in a `data-chart` attribute (askama escapes it); nothing here is HTML.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::marts::Shape;
use crate::views::{MaterializationView, StepGroup, fmt_duration};

/// Escapes text for XML/HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A mart chart in its shape: `{kind, labels, values, name}`; a line over days becomes a time
/// axis with a marker on every point (one day of data is a visible point, not a blank chart).
pub fn chart(shape: Shape, value_name: &str, rows: &[(String, f64)]) -> Value {
    let rows = match shape {
        Shape::Bars => &rows[..rows.len().min(15)],
        _ => rows,
    };
    json!({
        "kind": match shape {
            Shape::Bars => "bars",
            Shape::Columns => "columns",
            Shape::Line => "line",
            Shape::Share => "share",
        },
        "name": value_name,
        "labels": rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        "values": rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    })
}

pub fn status_colour(status: &str) -> &'static str {
    match status {
        "SUCCESS" | "MATERIALIZED" | "PASSED" => "#54a24b",
        "FAILURE" | "FAILED" => "#e45756",
        "RUNNING" | "RETRYING" | "STARTED" => "#4c78a8",
        "STALE" => "#f58518",
        "CANCELED" | "SKIPPED" => "#9d9d9d",
        _ => "#d0d0d0",
    }
}

/// A run's steps as a Gantt chart, one row per group (an asset over its partitions), from its
/// first start to its last end (or now while one runs). `None` before any step started.
pub fn gantt(groups: &[StepGroup], now: DateTime<Utc>) -> Option<Value> {
    let t0 = groups.iter().filter_map(|g| g.start).min()?;
    let rows: Vec<Value> = groups
        .iter()
        .map(|g| {
            let (start, end) = match g.start {
                Some(s) => {
                    let end = if g.open { now } else { g.end.unwrap_or(now) };
                    (
                        (s - t0).num_milliseconds().max(0),
                        (end - t0).num_milliseconds().max(0),
                    )
                }
                None => (0, 0),
            };
            json!({
                "label": g.name,
                "start": start,
                "end": end,
                "colour": status_colour(&g.status),
                "tip": format!(
                    "{}: {} ({}){}",
                    g.name,
                    g.status,
                    g.summary,
                    if end > start { format!(", {}", fmt_duration((end - start) as f64)) } else { String::new() }
                ),
            })
        })
        .collect();
    Some(json!({ "kind": "gantt", "rows": rows }))
}

/// An asset's materializations over time: row count (bars, left axis) and duration (line,
/// right axis), oldest first.
pub fn history(history: &[MaterializationView]) -> Option<Value> {
    if history.is_empty() {
        return None;
    }
    let points: Vec<&MaterializationView> = history.iter().rev().collect();
    Some(json!({
        "kind": "history",
        "labels": points.iter().map(|p| match &p.partition {
            Some(part) => format!("{} ({part})", p.timestamp),
            None => p.timestamp.clone(),
        }).collect::<Vec<_>>(),
        "rows": points.iter().map(|p| p.row_count).collect::<Vec<_>>(),
        "durations": points.iter().map(|p| p.duration_ms).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_day_is_a_line_with_one_point() {
        let spec = chart(Shape::Line, "users", &[("2026-11-22".into(), 3.0)]);
        assert_eq!(spec["kind"], "line");
        assert_eq!(spec["values"], json!([3.0]));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a href='x'>"), "&lt;a href=&#39;x&#39;&gt;");
    }
}
