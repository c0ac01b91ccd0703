//! Asset selection, compatible with Dagster's CLI syntax: `key`, `+key`, `key+`, `++key`,
//! `*key`, `key*`, `group:NAME`, `tag:K=V`, `kind:K`, and `,` for union.
//!
//! Pure: no IO.
//!
//! A selection is a comma-separated union of clauses. A clause is a term with an optional
//! prefix and suffix:
//!
//! - terms: an asset key `a/b/c`, `group:NAME`, `tag:K=V` (the tag `K` with value `V`),
//!   `tag:K` (any value), `kind:K`; a lone `*` selects every asset;
//! - prefix: `+` adds the parents of each matched asset, `++` two levels up and so on, `*`
//!   every ancestor;
//! - suffix: the same downstream (`key+`, `key++`, `key*`).
//!
//! So `*marts/top_songs` is the asset and everything it depends on, and `group:marts+` the
//! `marts` group and the assets that read from it.

use std::collections::BTreeSet;
use std::fmt;

use crate::asset::{AssetKey, KeyError};
use crate::graph::AssetGraph;

/// A parsed asset selection. Resolve it against a graph with [`Selection::resolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    text: String,
    clauses: Vec<Clause>,
}

/// One clause: a term and how far to extend its matches up and down the graph.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    upstream: Option<Depth>,
    term: Term,
    /// The term as written, for messages.
    term_text: String,
    downstream: Option<Depth>,
}

/// How many levels a `+` run or a `*` reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    Levels(usize),
    All,
}

impl Depth {
    fn limit(self) -> Option<usize> {
        match self {
            Depth::Levels(n) => Some(n),
            Depth::All => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    All,
    Key(AssetKey),
    Group(String),
    Tag { key: String, value: Option<String> },
    Kind(String),
    Status(AssetStatus),
}

/// An asset's state in the run history, for `status:` terms (`status:stale`): what only the
/// runtime knows, so such a selection resolves with [`Selection::resolve_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetStatus {
    /// A partition was materialized before an upstream one, or with another code version.
    Stale,
    /// Never materialized (no partition of it, for a partitioned asset).
    Missing,
    /// The latest attempt of a partition failed.
    Failed,
    /// Materialized at least once.
    Materialized,
}

impl AssetStatus {
    pub const ALL: [AssetStatus; 4] = [
        AssetStatus::Stale,
        AssetStatus::Missing,
        AssetStatus::Failed,
        AssetStatus::Materialized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AssetStatus::Stale => "stale",
            AssetStatus::Missing => "missing",
            AssetStatus::Failed => "failed",
            AssetStatus::Materialized => "materialized",
        }
    }
}

/// Whether an asset has a status: what [`Selection::resolve_with`] asks the run history.
pub trait StatusLookup {
    fn has_status(&self, asset: &AssetKey, status: AssetStatus) -> bool;
}

/// Why a selection could not be parsed or resolved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectionError {
    /// The text is not a selection; `position` is the 0-based index of the offending
    /// character (in characters, not bytes).
    #[error("invalid selection: {message} at position {position}\n{}", excerpt(.input, *.position))]
    Parse {
        input: String,
        position: usize,
        message: String,
    },
    #[error("unknown asset key `{key}`{}", did_you_mean(.suggestion.as_ref()))]
    UnknownKey {
        key: String,
        suggestion: Option<AssetKey>,
    },
    #[error("`{clause}` matches no asset ({hint})")]
    NoMatch { clause: String, hint: String },
    #[error("`{clause}` needs the run history: this command cannot select by status")]
    NeedsStatus { clause: String },
}

/// The input with a caret under character `position`: the whole input when short, else the
/// stretch around the position, elided on each side.
fn excerpt(input: &str, position: usize) -> String {
    const AROUND: usize = 40;
    let chars: Vec<char> = input.chars().collect();
    let from = position.saturating_sub(AROUND);
    let to = (position + AROUND).min(chars.len());
    let (lead, tail) = (
        if from > 0 { "…" } else { "" },
        if to < chars.len() { "…" } else { "" },
    );
    let shown: String = chars[from.min(to)..to].iter().collect();
    let pad = " ".repeat(position - from + usize::from(from > 0));
    format!("  {lead}{shown}{tail}\n  {pad}^")
}

/// The longest selection read, in characters (two hundred long keys, comma separated).
pub const MAX_SELECTION_CHARS: usize = 10_000;

fn did_you_mean(suggestion: Option<&AssetKey>) -> String {
    suggestion
        .map(|key| format!("; did you mean `{key}`?"))
        .unwrap_or_default()
}

const TERMS: &str =
    "an asset key, `group:NAME`, `tag:K=V`, `tag:K`, `kind:K`, `status:STATUS` or `*`";

struct Parser<'a> {
    input: &'a str,
    chars: Vec<char>,
}

impl Parser<'_> {
    fn error(&self, position: usize, message: impl Into<String>) -> SelectionError {
        SelectionError::Parse {
            input: self.input.to_owned(),
            position,
            message: message.into(),
        }
    }

    fn text(&self, from: usize, to: usize) -> String {
        self.chars[from..to].iter().collect()
    }

    fn clause(&self, start: usize, end: usize) -> Result<Clause, SelectionError> {
        let chars = &self.chars;
        let mut from = start;
        while from < end && chars[from].is_whitespace() {
            from += 1;
        }
        let mut to = end;
        while to > from && chars[to - 1].is_whitespace() {
            to -= 1;
        }
        if from == to {
            let message = if end == chars.len() {
                format!("expected {TERMS} after the last `,`")
            } else if start == 0 {
                format!("expected {TERMS} before `,`")
            } else {
                format!("empty clause: expected {TERMS} between the commas")
            };
            return Err(self.error(end, message));
        }
        if to - from == 1 && chars[from] == '*' {
            return Ok(Clause {
                upstream: None,
                term: Term::All,
                term_text: "*".to_owned(),
                downstream: None,
            });
        }

        let is_op = |c: char| c == '*' || c == '+';
        let mut term_start = from;
        while term_start < to && is_op(chars[term_start]) {
            term_start += 1;
        }
        let upstream = self.operators(from, term_start, "ancestors")?;
        let mut term_end = to;
        while term_end > term_start && is_op(chars[term_end - 1]) {
            term_end -= 1;
        }
        if term_start == term_end {
            let after = chars[term_start - 1];
            return Err(self.error(term_start, format!("expected {TERMS} after `{after}`")));
        }
        let downstream = self.operators(term_end, to, "descendants")?;
        let term = self.term(term_start, term_end)?;
        Ok(Clause {
            upstream,
            term,
            term_text: self.text(term_start, term_end),
            downstream,
        })
    }

    /// A run of `+` (one level each) or a single `*` (all levels).
    fn operators(
        &self,
        from: usize,
        to: usize,
        relatives: &str,
    ) -> Result<Option<Depth>, SelectionError> {
        let run = &self.chars[from..to];
        let Some(&first) = run.first() else {
            return Ok(None);
        };
        if first == '+' {
            if let Some(star) = run.iter().position(|&c| c == '*') {
                return Err(self.error(
                    from + star,
                    format!(
                        "`*` and `+` cannot be mixed: use `*` for all {relatives} or one `+` per level"
                    ),
                ));
            }
            return Ok(Some(Depth::Levels(run.len())));
        }
        match run.get(1) {
            None => Ok(Some(Depth::All)),
            Some('*') => Err(self.error(
                from + 1,
                format!("`*` cannot be repeated: a single `*` selects all {relatives}"),
            )),
            Some(_) => Err(self.error(
                from + 1,
                format!(
                    "`*` and `+` cannot be mixed: use `*` for all {relatives} or one `+` per level"
                ),
            )),
        }
    }

    fn term(&self, from: usize, to: usize) -> Result<Term, SelectionError> {
        let text = self.text(from, to);
        let Some(colon) = text.find(':') else {
            return self.key(&text, from, to).map(Term::Key);
        };
        let prefix = &text[..colon];
        let value_start = from + prefix.chars().count() + 1;
        let value: String = self.chars[value_start..to].iter().collect();
        match prefix {
            "group" => {
                self.word(&value, value_start, "group name", |c| {
                    c.is_ascii_alphanumeric() || c == '_' || c == '-'
                })?;
                Ok(Term::Group(value))
            }
            "kind" => {
                self.word(&value, value_start, "kind", free_char)?;
                Ok(Term::Kind(value))
            }
            "status" => AssetStatus::ALL
                .into_iter()
                .find(|s| s.as_str() == value)
                .map(Term::Status)
                .ok_or_else(|| {
                    self.error(
                        value_start,
                        format!(
                            "unknown status `{value}`: expected stale, missing, failed or materialized"
                        ),
                    )
                }),
            "tag" => {
                let (key, tag_value) = match value.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (value.clone(), None),
                };
                self.word(&key, value_start, "tag key", |c| free_char(c) && c != '=')?;
                if let Some(tag_value) = &tag_value {
                    let at = value_start + key.chars().count() + 1;
                    if tag_value.is_empty() {
                        return Err(self.error(
                            at,
                            format!("empty tag value: write `tag:{key}` to select any value"),
                        ));
                    }
                    self.word(tag_value, at, "tag value", |c| free_char(c) || c == ':')?;
                }
                Ok(Term::Tag {
                    key,
                    value: tag_value,
                })
            }
            _ => Err(self.error(
                from,
                format!(
                    "unknown prefix `{prefix}:`: expected `group:`, `tag:`, `kind:` or `status:`, or an asset key without `:`"
                ),
            )),
        }
    }

    fn word(
        &self,
        word: &str,
        at: usize,
        what: &str,
        allowed: impl Fn(char) -> bool,
    ) -> Result<(), SelectionError> {
        if word.is_empty() {
            return Err(self.error(at, format!("empty {what}")));
        }
        if let Some((i, ch)) = word.chars().enumerate().find(|&(_, c)| !allowed(c)) {
            return Err(self.error(at + i, format!("invalid character {ch:?} in {what}")));
        }
        Ok(())
    }

    fn key(&self, text: &str, from: usize, to: usize) -> Result<AssetKey, SelectionError> {
        AssetKey::parse(text).map_err(|e| match e {
            // Every character before an invalid one is ASCII: its byte position is its
            // character position.
            KeyError::InvalidChar { ch, position, .. } if ch == '*' || ch == '+' => self.error(
                from + position,
                format!("`{ch}` may only come before or after an asset key, group, tag or kind"),
            ),
            KeyError::InvalidChar { ch, position, .. } => self.error(
                from + position,
                format!(
                    "invalid character {ch:?} in asset key: segments hold ASCII letters, digits, `_` and `-`"
                ),
            ),
            KeyError::EmptySegment { .. } | KeyError::Empty => {
                let position = if text.starts_with('/') {
                    from
                } else if let Some(i) = text.find("//") {
                    from + i + 1
                } else {
                    to
                };
                self.error(
                    position,
                    format!("empty segment in asset key `{text}` (keys look like `staging/listen_events`)"),
                )
            }
        })
    }
}

/// Characters allowed in kinds and tag keys: anything but whitespace, `,`, `*`, `+` and `:`
/// (tag values may also hold `:`).
fn free_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, ',' | '*' | '+' | ':'))
}

/// At most this many names are listed in a hint.
const HINT_LIMIT: usize = 20;

fn list_hint<I: IntoIterator<Item = String>>(label: &str, items: I, none: &str) -> String {
    let items: Vec<String> = items.into_iter().collect();
    if items.is_empty() {
        return none.to_owned();
    }
    let shown = items[..items.len().min(HINT_LIMIT)].join(", ");
    if items.len() > HINT_LIMIT {
        format!("{label}: {shown}, … {} more", items.len() - HINT_LIMIT)
    } else {
        format!("{label}: {shown}")
    }
}

impl Selection {
    /// Parses a selection; errors point at the offending character.
    pub fn parse(input: &str) -> Result<Selection, SelectionError> {
        if input.len() > MAX_SELECTION_CHARS && input.chars().count() > MAX_SELECTION_CHARS {
            return Err(SelectionError::Parse {
                input: input.chars().take(MAX_SELECTION_CHARS + 1).collect(),
                position: MAX_SELECTION_CHARS,
                message: format!(
                    "a selection has at most {MAX_SELECTION_CHARS} characters; this one has {} (select by group:, tag: or kind: instead of listing keys)",
                    input.chars().count()
                ),
            });
        }
        let parser = Parser {
            input,
            chars: input.chars().collect(),
        };
        if parser.chars.iter().all(|c| c.is_whitespace()) {
            return Err(parser.error(0, format!("empty selection: expected {TERMS}")));
        }
        let mut clauses = Vec::new();
        let mut start = 0;
        loop {
            let end = parser.chars[start..]
                .iter()
                .position(|&c| c == ',')
                .map_or(parser.chars.len(), |i| start + i);
            clauses.push(parser.clause(start, end)?);
            if end == parser.chars.len() {
                break;
            }
            start = end + 1;
        }
        Ok(Selection {
            text: input.to_owned(),
            clauses,
        })
    }

    /// Every asset: `*`.
    pub fn all() -> Selection {
        Selection {
            text: "*".to_owned(),
            clauses: vec![Clause {
                upstream: None,
                term: Term::All,
                term_text: "*".to_owned(),
                downstream: None,
            }],
        }
    }

    /// The selection as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The keys the selection picks in `graph`. An unknown key, or a group, tag or kind that
    /// matches nothing, is an error, so that a typo does not silently select less.
    pub fn resolve(&self, graph: &AssetGraph) -> Result<BTreeSet<AssetKey>, SelectionError> {
        self.resolve_inner(graph, None)
    }

    /// [`Selection::resolve`], with `status:` terms answered by `status`. A `status:` term
    /// that matches nothing selects nothing (no error: being stale is not a typo).
    pub fn resolve_with(
        &self,
        graph: &AssetGraph,
        status: &dyn StatusLookup,
    ) -> Result<BTreeSet<AssetKey>, SelectionError> {
        self.resolve_inner(graph, Some(status))
    }

    /// Whether the selection has a `status:` term (and so needs [`Selection::resolve_with`]).
    pub fn needs_status(&self) -> bool {
        self.clauses
            .iter()
            .any(|c| matches!(c.term, Term::Status(_)))
    }

    fn resolve_inner(
        &self,
        graph: &AssetGraph,
        status: Option<&dyn StatusLookup>,
    ) -> Result<BTreeSet<AssetKey>, SelectionError> {
        let mut selected = BTreeSet::new();
        for clause in &self.clauses {
            let matched = clause.matches(graph, status)?;
            if let Some(depth) = clause.upstream {
                selected.extend(graph.with_ancestors(matched.iter().copied(), depth.limit()));
            }
            if let Some(depth) = clause.downstream {
                selected.extend(graph.with_descendants(matched.iter().copied(), depth.limit()));
            }
            selected.extend(matched.into_iter().cloned());
        }
        Ok(selected)
    }
}

impl Clause {
    fn matches<'g>(
        &self,
        graph: &'g AssetGraph,
        status: Option<&dyn StatusLookup>,
    ) -> Result<Vec<&'g AssetKey>, SelectionError> {
        let specs = || graph.specs();
        let matched: Vec<&AssetKey> = match &self.term {
            Term::All => return Ok(graph.toposorted().iter().collect()),
            Term::Status(wanted) => {
                let Some(status) = status else {
                    return Err(SelectionError::NeedsStatus {
                        clause: crate::text::shorten(&self.term_text, crate::text::SHOWN_CHARS),
                    });
                };
                return Ok(graph
                    .toposorted()
                    .iter()
                    .filter(|k| status.has_status(k, *wanted))
                    .collect());
            }
            Term::Key(key) => {
                return match graph.spec(key) {
                    Some(spec) => Ok(vec![&spec.key]),
                    None => Err(SelectionError::UnknownKey {
                        key: crate::text::shorten(&key.to_string(), crate::text::SHOWN_CHARS),
                        suggestion: graph.nearest_key(&key.to_string()).cloned(),
                    }),
                };
            }
            Term::Group(group) => specs()
                .filter(|s| &s.group == group)
                .map(|s| &s.key)
                .collect(),
            Term::Kind(kind) => specs()
                .filter(|s| s.kinds.contains(kind))
                .map(|s| &s.key)
                .collect(),
            Term::Tag { key, value } => specs()
                .filter(|s| match (s.tags.get(key), value) {
                    (Some(v), Some(wanted)) => v == wanted,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
                .map(|s| &s.key)
                .collect(),
        };
        if !matched.is_empty() {
            return Ok(matched);
        }
        let hint = match &self.term {
            Term::Group(_) => list_hint(
                "groups",
                graph.groups().into_iter().map(str::to_owned),
                "the graph has no assets",
            ),
            Term::Kind(_) => list_hint(
                "kinds",
                specs()
                    .flat_map(|s| s.kinds.iter().cloned())
                    .collect::<BTreeSet<_>>(),
                "no asset has a kind",
            ),
            Term::Tag {
                key,
                value: Some(_),
            } if specs().any(|s| s.tags.contains_key(key)) => list_hint(
                &format!("values of tag `{key}`"),
                specs()
                    .filter_map(|s| s.tags.get(key).cloned())
                    .collect::<BTreeSet<_>>(),
                "",
            ),
            Term::Tag { value, .. } => {
                let tags: BTreeSet<String> = specs()
                    .flat_map(|s| s.tags.iter())
                    .map(|(k, v)| match value {
                        Some(_) => format!("{k}={v}"),
                        None => k.clone(),
                    })
                    .collect();
                list_hint("tags", tags, "no asset has tags")
            }
            Term::All | Term::Key(_) | Term::Status(_) => String::new(),
        };
        Err(SelectionError::NoMatch {
            clause: crate::text::shorten(&self.term_text, crate::text::SHOWN_CHARS),
            hint,
        })
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Selection {
    type Err = SelectionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selection::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::{AssetsDefinition, asset};
    use crate::context::{ComputeError, Materialization};
    use expect_test::expect;

    fn def(
        key: &str,
        deps: &[&str],
        group: &str,
        kind: &str,
        tags: &[(&str, &str)],
    ) -> AssetsDefinition {
        let mut builder = asset(key)
            .deps(deps.iter().copied())
            .group(group)
            .kind(kind);
        for (k, v) in tags {
            builder = builder.tag(k, v);
        }
        builder
            .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
            .unwrap()
    }

    /// raw/a -> staging/a -> marts/x -> reports/y
    /// raw/b -> staging/b -> marts/x
    /// raw/c -> staging/c (in the raw and staging groups, feeding nothing further)
    /// tools/lone
    fn graph() -> AssetGraph {
        AssetGraph::new(vec![
            def("raw/a", &[], "raw", "python", &[("tier", "bronze")]),
            def("raw/b", &[], "raw", "python", &[("tier", "bronze")]),
            def("raw/c", &[], "raw", "python", &[("tier", "bronze")]),
            def(
                "staging/a",
                &["raw/a"],
                "staging",
                "dbt",
                &[("tier", "silver")],
            ),
            def(
                "staging/b",
                &["raw/b"],
                "staging",
                "dbt",
                &[("tier", "silver"), ("pii", "true")],
            ),
            def(
                "staging/c",
                &["raw/c"],
                "staging",
                "dbt",
                &[("tier", "silver")],
            ),
            def(
                "marts/x",
                &["staging/a", "staging/b"],
                "marts",
                "dbt",
                &[("tier", "gold")],
            ),
            def(
                "reports/y",
                &["marts/x"],
                "marts",
                "python",
                &[("tier", "gold"), ("team", "bi")],
            ),
            def("tools/lone", &[], "tools", "duckdb", &[]),
        ])
        .unwrap()
    }

    fn select(text: &str) -> Vec<String> {
        Selection::parse(text)
            .unwrap()
            .resolve(&graph())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn resolve_err(text: &str) -> String {
        Selection::parse(text)
            .unwrap()
            .resolve(&graph())
            .unwrap_err()
            .to_string()
    }

    fn parse_err(text: &str) -> String {
        Selection::parse(text).unwrap_err().to_string()
    }

    fn position(text: &str) -> usize {
        match Selection::parse(text).unwrap_err() {
            SelectionError::Parse { position, .. } => position,
            other => panic!("expected a parse error, got {other}"),
        }
    }

    #[test]
    fn a_key() {
        assert_eq!(select("marts/x"), ["marts/x"]);
        assert_eq!(select("tools/lone"), ["tools/lone"]);
    }

    #[test]
    fn upstream_levels() {
        assert_eq!(select("+marts/x"), ["marts/x", "staging/a", "staging/b"]);
        assert_eq!(
            select("++marts/x"),
            ["marts/x", "raw/a", "raw/b", "staging/a", "staging/b"]
        );
        assert_eq!(
            select("++reports/y"),
            ["marts/x", "reports/y", "staging/a", "staging/b"]
        );
        assert_eq!(
            select("*reports/y"),
            [
                "marts/x",
                "raw/a",
                "raw/b",
                "reports/y",
                "staging/a",
                "staging/b"
            ]
        );
        assert_eq!(select("+raw/a"), ["raw/a"]);
    }

    #[test]
    fn downstream_levels() {
        assert_eq!(select("raw/a+"), ["raw/a", "staging/a"]);
        assert_eq!(select("raw/a++"), ["marts/x", "raw/a", "staging/a"]);
        assert_eq!(
            select("raw/a*"),
            ["marts/x", "raw/a", "reports/y", "staging/a"]
        );
        assert_eq!(select("reports/y*"), ["reports/y"]);
    }

    #[test]
    fn both_ways() {
        assert_eq!(
            select("*marts/x*"),
            [
                "marts/x",
                "raw/a",
                "raw/b",
                "reports/y",
                "staging/a",
                "staging/b"
            ]
        );
        assert_eq!(select("+staging/a+"), ["marts/x", "raw/a", "staging/a"]);
    }

    #[test]
    fn groups_tags_and_kinds() {
        assert_eq!(select("group:marts"), ["marts/x", "reports/y"]);
        assert_eq!(
            select("group:raw+"),
            [
                "raw/a",
                "raw/b",
                "raw/c",
                "staging/a",
                "staging/b",
                "staging/c"
            ]
        );
        assert_eq!(
            select("+group:marts"),
            ["marts/x", "reports/y", "staging/a", "staging/b"]
        );
        assert_eq!(select("tag:tier=gold"), ["marts/x", "reports/y"]);
        assert_eq!(select("tag:pii"), ["staging/b"]);
        assert_eq!(select("tag:pii=true+"), ["marts/x", "staging/b"]);
        assert_eq!(
            select("kind:python"),
            ["raw/a", "raw/b", "raw/c", "reports/y"]
        );
        assert_eq!(select("kind:duckdb"), ["tools/lone"]);
    }

    #[test]
    fn unions_and_everything() {
        assert_eq!(
            select(" raw/a , group:marts,tools/lone "),
            ["marts/x", "raw/a", "reports/y", "tools/lone"]
        );
        assert_eq!(select("raw/a+, raw/a"), ["raw/a", "staging/a"]);
        assert_eq!(select("*").len(), 9);
        assert_eq!(select(" * ").len(), 9);
        assert_eq!(select("*, raw/a").len(), 9);
        assert_eq!(
            Selection::all().resolve(&graph()).unwrap(),
            Selection::parse("*").unwrap().resolve(&graph()).unwrap()
        );
        assert_eq!(Selection::all(), "*".parse().unwrap());
        let selection: Selection = " raw/a , group:marts".parse().unwrap();
        assert_eq!(selection.as_str(), " raw/a , group:marts");
        assert_eq!(selection.to_string(), " raw/a , group:marts");
        assert!(
            Selection::all()
                .resolve(&AssetGraph::new(Vec::new()).unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn unknown_keys_suggest_the_nearest() {
        assert_eq!(
            resolve_err("marts/xx"),
            "unknown asset key `marts/xx`; did you mean `marts/x`?"
        );
        assert_eq!(
            resolve_err("+staging_b"),
            "unknown asset key `staging_b`; did you mean `staging/b`?"
        );
        assert_eq!(
            resolve_err("billing/invoices"),
            "unknown asset key `billing/invoices`"
        );
        assert_eq!(
            Selection::parse("raw/a, marts/xx")
                .unwrap()
                .resolve(&graph())
                .unwrap_err(),
            SelectionError::UnknownKey {
                key: "marts/xx".to_owned(),
                suggestion: Some(AssetKey::parse("marts/x").unwrap())
            }
        );
    }

    #[test]
    fn terms_that_match_nothing_list_what_exists() {
        expect!["`group:foo` matches no asset (groups: marts, raw, staging, tools)"]
            .assert_eq(&resolve_err("group:foo+"));
        expect!["`kind:spark` matches no asset (kinds: dbt, duckdb, python)"]
            .assert_eq(&resolve_err("kind:spark"));
        expect![
            "`tag:tier=platinum` matches no asset (values of tag `tier`: bronze, gold, silver)"
        ]
        .assert_eq(&resolve_err("tag:tier=platinum"));
        expect!["`tag:owner=me` matches no asset (tags: pii=true, team=bi, tier=bronze, tier=gold, tier=silver)"]
            .assert_eq(&resolve_err("tag:owner=me"));
        expect!["`tag:owner` matches no asset (tags: pii, team, tier)"]
            .assert_eq(&resolve_err("tag:owner"));
        let many = AssetGraph::new(
            (0..25)
                .map(|i| def(&format!("a{i:02}"), &[], &format!("g{i:02}"), "k", &[]))
                .collect(),
        )
        .unwrap();
        expect!["`group:nope` matches no asset (groups: g00, g01, g02, g03, g04, g05, g06, g07, g08, g09, g10, g11, g12, g13, g14, g15, g16, g17, g18, g19, … 5 more)"]
            .assert_eq(
                &Selection::parse("group:nope")
                    .unwrap()
                    .resolve(&many)
                    .unwrap_err()
                    .to_string(),
            );
    }

    #[test]
    fn parse_errors_point_at_the_character() {
        expect![[r#"
            invalid selection: empty clause: expected an asset key, `group:NAME`, `tag:K=V`, `tag:K`, `kind:K`, `status:STATUS` or `*` between the commas at position 2
              a,,b
                ^"#]]
        .assert_eq(&parse_err("a,,b"));
        expect![[r#"
            invalid selection: expected an asset key, `group:NAME`, `tag:K=V`, `tag:K`, `kind:K`, `status:STATUS` or `*` after the last `,` at position 6
              raw/a,
                    ^"#]]
        .assert_eq(&parse_err("raw/a,"));
        expect![[r#"
            invalid selection: `*` and `+` cannot be mixed: use `*` for all ancestors or one `+` per level at position 1
              *+raw/a
               ^"#]]
        .assert_eq(&parse_err("*+raw/a"));
        expect![[r#"
            invalid selection: unknown prefix `grp:`: expected `group:`, `tag:`, `kind:` or `status:`, or an asset key without `:` at position 7
              raw/a, grp:marts
                     ^"#]]
        .assert_eq(&parse_err("raw/a, grp:marts"));
        expect![[r#"
            invalid selection: invalid character ' ' in asset key: segments hold ASCII letters, digits, `_` and `-` at position 7
              staging listen_events
                     ^"#]]
        .assert_eq(&parse_err("staging listen_events"));
    }

    #[test]
    fn parse_error_positions_and_messages() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty selection"),
            ("   ", 0, "empty selection"),
            (",a", 0, "before `,`"),
            ("a, ,b", 3, "between the commas"),
            ("a, ", 3, "after the last `,`"),
            ("+*a", 1, "cannot be mixed"),
            ("a+*", 2, "cannot be mixed: use `*` for all descendants"),
            ("a*+", 2, "cannot be mixed"),
            ("**a", 1, "cannot be repeated"),
            (
                "a**",
                2,
                "cannot be repeated: a single `*` selects all descendants",
            ),
            ("+", 1, "after `+`"),
            ("++", 2, "after `+`"),
            ("a*b", 1, "`*` may only come before or after"),
            ("raw/é", 4, "invalid character 'é'"),
            ("é/raw", 0, "invalid character 'é'"),
            ("raw//a", 4, "empty segment in asset key `raw//a`"),
            ("/raw", 0, "empty segment"),
            ("raw/", 4, "empty segment"),
            ("group:", 6, "empty group name"),
            ("x, group:ma rts", 11, "invalid character ' ' in group name"),
            ("group:a.b", 7, "invalid character '.' in group name"),
            ("kind:", 5, "empty kind"),
            ("tag:", 4, "empty tag key"),
            ("tag:=v", 4, "empty tag key"),
            (
                "tag:k=",
                6,
                "empty tag value: write `tag:k` to select any value",
            ),
            ("tag:k=a b", 7, "invalid character ' ' in tag value"),
            ("éé:x", 0, "unknown prefix `éé:`"),
        ];
        for (input, expected_position, fragment) in cases {
            let message = parse_err(input);
            assert!(
                message.contains(fragment),
                "{input:?}: {message:?} does not contain {fragment:?}"
            );
            assert_eq!(position(input), *expected_position, "{input:?}: {message}");
        }
    }

    #[test]
    fn tag_values_may_hold_colons_and_equals() {
        let graph = AssetGraph::new(vec![def("a", &[], "g", "k", &[("url", "s3://b=1")])]).unwrap();
        let selection = Selection::parse("tag:url=s3://b=1").unwrap();
        assert_eq!(selection.resolve(&graph).unwrap().len(), 1);
    }

    #[test]
    fn status_terms_resolve_through_a_lookup() {
        struct Stale;
        impl StatusLookup for Stale {
            fn has_status(&self, asset: &AssetKey, status: AssetStatus) -> bool {
                status == AssetStatus::Stale && asset.to_string() == "staging/b"
            }
        }
        let g = graph();
        let selection = Selection::parse("status:stale+").unwrap();
        assert!(selection.needs_status());
        let picked: Vec<String> = selection
            .resolve_with(&g, &Stale)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(picked.contains(&"staging/b".to_owned()), "{picked:?}");
        assert!(!picked.contains(&"raw/a".to_owned()), "{picked:?}");
        assert!(
            Selection::parse("status:missing")
                .unwrap()
                .resolve_with(&g, &Stale)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            selection.resolve(&g).unwrap_err().to_string(),
            "`status:stale` needs the run history: this command cannot select by status"
        );
        let err = Selection::parse("status:old").unwrap_err().to_string();
        assert!(err.contains("unknown status `old`"), "{err}");
    }
}
