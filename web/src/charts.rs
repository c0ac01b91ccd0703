//! Charts drawn as inline SVG on the server: bars, columns, a line over time, a share bar,
//! the Gantt chart of a run's steps and the scatter of an asset's materializations. Every text
//! that reaches the SVG goes through [`esc`].

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::marts::Shape;
use crate::views::{MaterializationView, StepView};

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

const PALETTE: [&str; 6] = [
    "#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2",
];

fn fmt_value(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A mart chart in its shape.
pub fn chart(shape: Shape, rows: &[(String, f64)]) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">no rows</p>".to_owned();
    }
    match shape {
        Shape::Bars => bars(rows),
        Shape::Columns => columns(rows),
        Shape::Line => line(rows),
        Shape::Share => share(rows),
    }
}

fn max_of(rows: &[(String, f64)]) -> f64 {
    rows.iter().map(|r| r.1).fold(0.0_f64, f64::max).max(1e-9)
}

fn bars(rows: &[(String, f64)]) -> String {
    let rows = &rows[..rows.len().min(15)];
    let max = max_of(rows);
    let h = rows.len() * 22 + 4;
    let mut s = format!(
        "<svg class=\"chart\" viewBox=\"0 0 520 {h}\" width=\"520\" height=\"{h}\" role=\"img\">"
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = i * 22 + 2;
        let w = (v / max * 300.0).max(1.0);
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\" class=\"lbl\">{}</text><rect x=\"170\" y=\"{y}\" width=\"{w:.1}\" height=\"18\" fill=\"{}\"><title>{}: {}</title></rect><text x=\"{:.1}\" y=\"{}\" class=\"val\">{}</text>",
            y + 14,
            esc(&truncate(label, 26)),
            PALETTE[0],
            esc(label),
            fmt_value(*v),
            175.0 + w,
            y + 14,
            fmt_value(*v)
        );
    }
    s.push_str("</svg>");
    s
}

fn columns(rows: &[(String, f64)]) -> String {
    let max = max_of(rows);
    let n = rows.len();
    let bw = (480.0 / n as f64).min(40.0);
    let mut s = String::from(
        "<svg class=\"chart\" viewBox=\"0 0 520 200\" width=\"520\" height=\"200\" role=\"img\">",
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let h = v / max * 160.0;
        let x = 20.0 + i as f64 * bw;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{}: {}</title></rect><text x=\"{:.1}\" y=\"195\" class=\"tick\">{}</text>",
            175.0 - h,
            (bw - 2.0).max(1.0),
            PALETTE[1],
            esc(label),
            fmt_value(*v),
            x + bw / 2.0,
            esc(&truncate(label, 5))
        );
    }
    s.push_str("</svg>");
    s
}

fn line(rows: &[(String, f64)]) -> String {
    let max = max_of(rows);
    let n = rows.len().max(2) - 1;
    let points: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            format!(
                "{:.1},{:.1}",
                40.0 + i as f64 * 460.0 / n as f64,
                170.0 - v / max * 150.0
            )
        })
        .collect();
    let mut s = String::from(
        "<svg class=\"chart\" viewBox=\"0 0 520 200\" width=\"520\" height=\"200\" role=\"img\">",
    );
    let _ = write!(
        s,
        "<line x1=\"40\" y1=\"170\" x2=\"500\" y2=\"170\" class=\"axis\"/><text x=\"0\" y=\"24\" class=\"tick\">{}</text><polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
        fmt_value(max),
        PALETTE[2],
        points.join(" ")
    );
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let _ = write!(
            s,
            "<text x=\"40\" y=\"190\" class=\"tick\">{}</text><text x=\"440\" y=\"190\" class=\"tick\">{}</text>",
            esc(&first.0),
            esc(&last.0)
        );
    }
    s.push_str("</svg>");
    s
}

fn share(rows: &[(String, f64)]) -> String {
    let total: f64 = rows.iter().map(|r| r.1).sum::<f64>().max(1e-9);
    let mut s = String::from(
        "<svg class=\"chart\" viewBox=\"0 0 520 70\" width=\"520\" height=\"70\" role=\"img\">",
    );
    let mut x = 0.0;
    for (i, (label, v)) in rows.iter().enumerate() {
        let w = v / total * 520.0;
        let pct = v / total * 100.0;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"30\" fill=\"{}\"><title>{}: {} ({pct:.0}%)</title></rect><text x=\"{:.1}\" y=\"50\" class=\"lbl\">{} {pct:.0}%</text>",
            PALETTE[i % PALETTE.len()],
            esc(label),
            fmt_value(*v),
            x + 2.0,
            esc(&truncate(label, 12))
        );
        x += w;
    }
    s.push_str("</svg>");
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn status_colour(status: &str) -> &'static str {
    match status {
        "SUCCESS" | "MATERIALIZED" | "PASSED" => "#54a24b",
        "FAILURE" | "FAILED" => "#e45756",
        "RUNNING" | "RETRYING" | "STARTED" => "#4c78a8",
        "CANCELED" | "SKIPPED" => "#9d9d9d",
        _ => "#d0d0d0",
    }
}

/// A run's steps as a Gantt chart: one row per step, from its start to its end (or now).
pub fn gantt(steps: &[StepView], now: DateTime<Utc>) -> String {
    let started: Vec<&StepView> = steps.iter().filter(|s| s.start.is_some()).collect();
    let Some(t0) = started.iter().filter_map(|s| s.start).min() else {
        return "<p class=\"muted\">no step has started yet</p>".to_owned();
    };
    let t1 = steps
        .iter()
        .filter_map(|s| s.start.map(|_| s.end.unwrap_or(now)))
        .max()
        .unwrap_or(now);
    let span = ((t1 - t0).num_milliseconds() as f64).max(1.0);
    let row = 20;
    let h = steps.len() * row + 24;
    let mut s = format!(
        "<svg class=\"gantt\" viewBox=\"0 0 900 {h}\" width=\"900\" height=\"{h}\" role=\"img\">"
    );
    for (i, step) in steps.iter().enumerate() {
        let y = i * row;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\" class=\"lbl\">{}</text>",
            y + 14,
            esc(&truncate(&step.key, 44))
        );
        if let Some(start) = step.start {
            let x = 300.0 + (start - t0).num_milliseconds() as f64 / span * 580.0;
            let w = (((step.end.unwrap_or(now) - start).num_milliseconds() as f64) / span * 580.0)
                .max(2.0);
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{}\" width=\"{w:.1}\" height=\"14\" rx=\"2\" fill=\"{}\" data-step=\"{}\"><title>{} {} {}</title></rect>",
                y + 3,
                status_colour(&step.status),
                esc(&step.key),
                esc(&step.key),
                esc(&step.status),
                step.duration_ms
                    .map(crate::views::fmt_duration)
                    .unwrap_or_default()
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"300\" y=\"{}\" class=\"tick\">0</text><text x=\"840\" y=\"{}\" class=\"tick\">{}</text></svg>",
        h - 4,
        h - 4,
        crate::views::fmt_duration(span)
    );
    s
}

/// An asset's materializations over time: row count (bars) and duration (line).
pub fn history(history: &[MaterializationView]) -> String {
    let points: Vec<&MaterializationView> = history.iter().rev().collect();
    if points.is_empty() {
        return "<p class=\"muted\">never materialized</p>".to_owned();
    }
    let n = points.len().max(2) - 1;
    let max_rows = points
        .iter()
        .filter_map(|p| p.row_count)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_ms = points
        .iter()
        .filter_map(|p| p.duration_ms)
        .fold(0.0, f64::max)
        .max(1.0);
    let x = |i: usize| 40.0 + i as f64 * 460.0 / n as f64;
    let mut s = String::from(
        "<svg class=\"chart\" viewBox=\"0 0 520 190\" width=\"520\" height=\"190\" role=\"img\"><line x1=\"40\" y1=\"160\" x2=\"500\" y2=\"160\" class=\"axis\"/>",
    );
    for (i, p) in points.iter().enumerate() {
        if let Some(rows) = p.row_count {
            let h = rows as f64 / max_rows * 140.0;
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"{h:.1}\" fill=\"{}\" opacity=\"0.6\"><title>{} rows at {}</title></rect>",
                x(i) - 3.0,
                160.0 - h,
                PALETTE[0],
                rows,
                esc(&p.timestamp)
            );
        }
    }
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.duration_ms
                .map(|d| format!("{:.1},{:.1}", x(i), 160.0 - d / max_ms * 140.0))
        })
        .collect();
    let _ = write!(
        s,
        "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/><text x=\"0\" y=\"14\" class=\"tick\">rows ≤ {}</text><text x=\"380\" y=\"14\" class=\"tick\" fill=\"{}\">duration ≤ {}</text><text x=\"40\" y=\"180\" class=\"tick\">{}</text><text x=\"400\" y=\"180\" class=\"tick\">{}</text></svg>",
        PALETTE[1],
        line.join(" "),
        fmt_value(max_rows),
        PALETTE[1],
        crate::views::fmt_duration(max_ms),
        esc(&points[0].timestamp),
        esc(&points[points.len() - 1].timestamp)
    );
    s
}

pub fn state_colour(state: &str) -> &'static str {
    status_colour(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let svg = chart(Shape::Bars, &[("<script>alert(1)</script>".into(), 3.0)]);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }
}
