//! dbt's `manifest.json`, read for what orch needs: the models, seeds and snapshots (assets),
//! their dependencies on each other and on sources, and the tests on them (checks).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

/// A model, seed or snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct DbtNode {
    /// `model.orch_platform.fact_listens`.
    pub unique_id: String,
    /// `fact_listens`.
    pub name: String,
    /// `model`, `seed` or `snapshot`.
    pub resource_type: String,
    /// The folder below `models/` (`core`), or the resource type at the top level.
    pub group: String,
    /// `table`, `view`, `incremental`, `ephemeral`, `seed`, `snapshot`.
    pub materialized: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// dbt's checksum of the file: the asset's code version.
    pub checksum: String,
    /// `models/core/fact_listens.sql`.
    pub path: String,
    /// The SQL as written (Jinja included).
    pub raw_code: String,
    /// `schema.alias` in the warehouse.
    pub relation: String,
    /// Models, seeds, snapshots and sources it reads (unique ids).
    pub depends_on: Vec<String>,
    pub meta: serde_json::Map<String, Value>,
    /// The columns the project documents (`columns:` in its yml), by name.
    pub columns: Vec<DbtColumn>,
}

/// A column as the project documents it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DbtColumn {
    pub name: String,
    pub description: Option<String>,
    /// The declared type (`data_type`, required by an enforced contract).
    pub data_type: Option<String>,
    /// Constraint types (`not_null`, `primary_key`, ...).
    pub constraints: Vec<String>,
}

/// A source table, which the platform's staging loads fill.
#[derive(Debug, Clone, PartialEq)]
pub struct DbtSource {
    /// `source.orch_platform.raw.listen_events`.
    pub unique_id: String,
    pub source_name: String,
    pub name: String,
    /// `meta.orch_asset`: the orch asset that produces the table, if the project says.
    pub orch_asset: Option<String>,
    pub description: Option<String>,
    /// `schema.identifier` in the warehouse.
    pub relation: String,
    /// The column whose newest value says when the table was last loaded (`loaded_at_field`).
    pub loaded_at_field: Option<String>,
    /// `freshness.warn_after`, in seconds.
    pub warn_after_secs: Option<u64>,
    /// `freshness.error_after`, in seconds.
    pub error_after_secs: Option<u64>,
}

/// A data test.
#[derive(Debug, Clone, PartialEq)]
pub struct DbtTest {
    pub unique_id: String,
    /// `not_null_stg_listen_events_event_id`.
    pub name: String,
    /// The node it is attached to (generic tests), if any.
    pub attached_node: Option<String>,
    /// The nodes it reads.
    pub depends_on: Vec<String>,
    /// `error` or `warn`.
    pub severity: String,
    pub description: Option<String>,
    /// The column a generic test is on (`column_name`), if any.
    pub column_name: Option<String>,
    /// The generic test's name (`not_null`, `primary_key`, ...), or the test's name.
    pub test_name: String,
}

/// The parts of a manifest orch uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    pub project_name: String,
    /// The adapter (`duckdb`, `bigquery`).
    pub adapter_type: String,
    /// By unique id, in a stable order.
    pub nodes: BTreeMap<String, DbtNode>,
    pub sources: BTreeMap<String, DbtSource>,
    pub tests: Vec<DbtTest>,
}

impl Manifest {
    /// Reads and parses `manifest.json`.
    pub fn load(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Manifest::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Manifest, String> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("not a dbt manifest: {e}"))?;
        let metadata = doc.get("metadata").unwrap_or(&Value::Null);
        let mut manifest = Manifest {
            project_name: str_at(metadata, "project_name").unwrap_or_default(),
            adapter_type: str_at(metadata, "adapter_type").unwrap_or_default(),
            ..Manifest::default()
        };
        let nodes = doc
            .get("nodes")
            .and_then(Value::as_object)
            .ok_or("the manifest has no `nodes`")?;
        for (id, node) in nodes {
            let resource_type = str_at(node, "resource_type").unwrap_or_default();
            match resource_type.as_str() {
                "model" | "seed" | "snapshot" => {
                    manifest.nodes.insert(id.clone(), parse_node(id, node)?);
                }
                "test" => manifest.tests.push(parse_test(id, node)),
                _ => {}
            }
        }
        if let Some(sources) = doc.get("sources").and_then(Value::as_object) {
            for (id, source) in sources {
                manifest.sources.insert(
                    id.clone(),
                    DbtSource {
                        unique_id: id.clone(),
                        source_name: str_at(source, "source_name").unwrap_or_default(),
                        name: str_at(source, "name").unwrap_or_default(),
                        orch_asset: source
                            .pointer("/meta/orch_asset")
                            .or_else(|| source.pointer("/config/meta/orch_asset"))
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        description: str_at(source, "description").filter(|d| !d.trim().is_empty()),
                        relation: format!(
                            "{}.{}",
                            str_at(source, "schema").unwrap_or_default(),
                            str_at(source, "identifier")
                                .or_else(|| str_at(source, "name"))
                                .unwrap_or_default()
                        ),
                        loaded_at_field: str_at(source, "loaded_at_field").or_else(|| {
                            source
                                .pointer("/config/loaded_at_field")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        }),
                        warn_after_secs: freshness_secs(source, "warn_after"),
                        error_after_secs: freshness_secs(source, "error_after"),
                    },
                );
            }
        }
        manifest.tests.sort_by(|a, b| a.unique_id.cmp(&b.unique_id));
        Ok(manifest)
    }

    /// The node each test checks: the node it is attached to, or, for a test reading several
    /// nodes, the one furthest downstream (a singular test that a total adds up checks the
    /// model that reports the total).
    pub fn test_targets(&self) -> Vec<(&DbtTest, &DbtNode)> {
        let depth = self.depths();
        let mut out = Vec::new();
        for test in &self.tests {
            let target = test
                .attached_node
                .as_ref()
                .and_then(|id| self.nodes.get(id))
                .or_else(|| {
                    test.depends_on
                        .iter()
                        .filter_map(|id| self.nodes.get(id))
                        .max_by_key(|n| (depth.get(n.unique_id.as_str()).copied(), &n.unique_id))
                });
            if let Some(node) = target {
                out.push((test, node));
            }
        }
        out
    }

    /// Each node's distance from the sources (longest path).
    fn depths(&self) -> HashMap<&str, usize> {
        fn visit<'a>(
            m: &'a Manifest,
            id: &'a str,
            memo: &mut HashMap<&'a str, usize>,
            stack: &mut Vec<&'a str>,
        ) -> usize {
            if let Some(&d) = memo.get(id) {
                return d;
            }
            if stack.contains(&id) {
                return 0;
            }
            stack.push(id);
            let d = m.nodes.get(id).map_or(0, |node| {
                node.depends_on
                    .iter()
                    .map(|dep| visit(m, dep, memo, stack) + 1)
                    .max()
                    .unwrap_or(0)
            });
            stack.pop();
            memo.insert(id, d);
            d
        }
        let mut memo = HashMap::new();
        for id in self.nodes.keys() {
            visit(self, id, &mut memo, &mut Vec::new());
        }
        memo
    }
}

/// `freshness.<which>` of a source (`{count, period}`) in seconds.
fn freshness_secs(source: &Value, which: &str) -> Option<u64> {
    let f = source
        .get("freshness")
        .filter(|f| !f.is_null())
        .or_else(|| source.pointer("/config/freshness"))?
        .get(which)?;
    let count = f.get("count").and_then(Value::as_u64)?;
    let unit = match f.get("period").and_then(Value::as_str)? {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    // A count past any duration (it would overflow) is no freshness rule.
    count.checked_mul(unit)
}

/// The documented columns of a node, by name.
fn parse_columns(node: &Value) -> Vec<DbtColumn> {
    let Some(columns) = node.get("columns").and_then(Value::as_object) else {
        return Vec::new();
    };
    columns
        .iter()
        .map(|(name, c)| DbtColumn {
            name: str_at(c, "name").unwrap_or_else(|| name.clone()),
            description: str_at(c, "description").filter(|d| !d.trim().is_empty()),
            data_type: str_at(c, "data_type").filter(|d| !d.trim().is_empty()),
            constraints: c
                .get("constraints")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|k| str_at(k, "type")).collect())
                .unwrap_or_default(),
        })
        .collect()
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn parse_node(id: &str, node: &Value) -> Result<DbtNode, String> {
    let name = str_at(node, "name").ok_or_else(|| format!("node {id} has no name"))?;
    let resource_type = str_at(node, "resource_type").unwrap_or_default();
    // fqn: [project, folder..., name]; the first folder is the group.
    let fqn = strings(node.get("fqn"));
    let group = if fqn.len() > 2 {
        fqn[1].clone()
    } else {
        resource_type.clone()
    };
    let schema = str_at(node, "schema").unwrap_or_default();
    let alias = str_at(node, "alias").unwrap_or_else(|| name.clone());
    Ok(DbtNode {
        unique_id: id.to_owned(),
        name,
        resource_type,
        group,
        materialized: node
            .pointer("/config/materialized")
            .and_then(Value::as_str)
            .unwrap_or("view")
            .to_owned(),
        description: str_at(node, "description").filter(|d| !d.trim().is_empty()),
        tags: strings(node.get("tags")),
        checksum: node
            .pointer("/checksum/checksum")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        path: str_at(node, "original_file_path").unwrap_or_default(),
        raw_code: str_at(node, "raw_code").unwrap_or_default(),
        relation: format!("{schema}.{alias}"),
        depends_on: strings(node.pointer("/depends_on/nodes")),
        meta: node
            .get("meta")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        columns: parse_columns(node),
    })
}

fn parse_test(id: &str, node: &Value) -> DbtTest {
    DbtTest {
        unique_id: id.to_owned(),
        name: str_at(node, "name").unwrap_or_else(|| id.to_owned()),
        attached_node: str_at(node, "attached_node"),
        depends_on: strings(node.pointer("/depends_on/nodes")),
        severity: node
            .pointer("/config/severity")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_ascii_lowercase(),
        description: str_at(node, "description").filter(|d| !d.trim().is_empty()),
        column_name: str_at(node, "column_name"),
        test_name: node
            .pointer("/test_metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| str_at(node, "name"))
            .unwrap_or_else(|| id.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{
      "metadata": {"project_name": "p", "adapter_type": "duckdb"},
      "nodes": {
        "model.p.stg": {"name": "stg", "resource_type": "model", "fqn": ["p", "staging", "stg"],
          "config": {"materialized": "view"}, "checksum": {"checksum": "c1"},
          "original_file_path": "models/staging/stg.sql", "raw_code": "select 1",
          "schema": "staging", "alias": "stg", "depends_on": {"nodes": ["source.p.raw.events"]}},
        "model.p.fact": {"name": "fact", "resource_type": "model", "fqn": ["p", "core", "fact"],
          "config": {"materialized": "incremental"}, "checksum": {"checksum": "c2"},
          "schema": "core", "alias": "fact", "depends_on": {"nodes": ["model.p.stg"]}, "description": "Facts.",
          "columns": {"id": {"name": "id", "description": "The id.", "data_type": "string", "constraints": [{"type": "not_null"}]}}},
        "model.p.top": {"name": "top", "resource_type": "model", "fqn": ["p", "top"],
          "config": {"materialized": "table"}, "checksum": {"checksum": "c3"},
          "schema": "marts", "depends_on": {"nodes": ["model.p.fact"]}},
        "test.p.not_null_fact_id.1": {"name": "not_null_fact_id", "resource_type": "test",
          "attached_node": "model.p.fact", "config": {"severity": "ERROR"}, "column_name": "id",
          "test_metadata": {"name": "not_null"},
          "depends_on": {"nodes": ["model.p.fact"]}},
        "test.p.adds_up": {"name": "adds_up", "resource_type": "test", "config": {"severity": "warn"},
          "depends_on": {"nodes": ["model.p.fact", "model.p.top"]}},
        "analysis.p.x": {"name": "x", "resource_type": "analysis"}
      },
      "sources": {
        "source.p.raw.events": {"source_name": "raw", "name": "events", "meta": {"orch_asset": "staging/events"},
          "schema": "raw", "identifier": "events", "loaded_at_field": "_ingested_at",
          "freshness": {"warn_after": {"count": 2, "period": "hour"}, "error_after": {"count": 1, "period": "day"}}}
      }
    }"#;

    #[test]
    fn nodes_sources_and_tests() {
        let m = Manifest::parse(MANIFEST).unwrap();
        assert_eq!(m.adapter_type, "duckdb");
        assert_eq!(
            m.nodes.keys().collect::<Vec<_>>(),
            ["model.p.fact", "model.p.stg", "model.p.top"]
        );
        let fact = &m.nodes["model.p.fact"];
        assert_eq!(
            (fact.group.as_str(), fact.materialized.as_str()),
            ("core", "incremental")
        );
        assert_eq!(fact.relation, "core.fact");
        assert_eq!(fact.description.as_deref(), Some("Facts."));
        // A model at the top of models/ is grouped by its type.
        assert_eq!(m.nodes["model.p.top"].group, "model");
        assert_eq!(m.nodes["model.p.top"].relation, "marts.top");
        assert_eq!(
            m.sources["source.p.raw.events"].orch_asset.as_deref(),
            Some("staging/events")
        );
        assert_eq!(
            fact.columns,
            [DbtColumn {
                name: "id".into(),
                description: Some("The id.".into()),
                data_type: Some("string".into()),
                constraints: vec!["not_null".into()],
            }]
        );
        let source = &m.sources["source.p.raw.events"];
        assert_eq!(source.relation, "raw.events");
        assert_eq!(source.loaded_at_field.as_deref(), Some("_ingested_at"));
        assert_eq!(
            (source.warn_after_secs, source.error_after_secs),
            (Some(7200), Some(86_400))
        );
        let test = m
            .tests
            .iter()
            .find(|t| t.name == "not_null_fact_id")
            .unwrap();
        assert_eq!(
            (test.column_name.as_deref(), test.test_name.as_str()),
            (Some("id"), "not_null")
        );
        let targets: Vec<_> = m
            .test_targets()
            .into_iter()
            .map(|(t, n)| (t.name.as_str(), n.name.as_str(), t.severity.as_str()))
            .collect();
        // The singular test reading fact and top checks top, the one downstream.
        assert_eq!(
            targets,
            [
                ("adds_up", "top", "warn"),
                ("not_null_fact_id", "fact", "error")
            ]
        );
    }

    #[test]
    fn not_a_manifest() {
        assert!(
            Manifest::parse("{")
                .unwrap_err()
                .contains("not a dbt manifest")
        );
        assert!(Manifest::parse("{}").unwrap_err().contains("no `nodes`"));
    }

    /// Fuzzing: any text, and the manifest above with any of its values replaced by any JSON,
    /// parse or fail with an error; never a panic. `ORCH_FUZZ_CASES` cases per property
    /// (default 256).
    mod fuzz {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::{MANIFEST, Manifest};

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: orch_core::fuzz_cases(),
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                (-1e12f64..1e12).prop_map(Value::from),
                ".{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Every value's JSON pointer, the document's own included.
        fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    for (k, v) in map {
                        let key = k.replace('~', "~0").replace('/', "~1");
                        pointers(v, format!("{at}/{key}"), out);
                    }
                }
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        pointers(v, format!("{at}/{i}"), out);
                    }
                }
                _ => {}
            }
            out.push(at);
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn any_text_parses_or_fails_cleanly(text in ".{0,300}") {
                let _ = Manifest::parse(&text);
            }

            #[test]
            fn any_value_replaced_parses_or_fails_cleanly(
                edits in prop::collection::vec((any::<prop::sample::Index>(), any_json()), 1..6)
            ) {
                let mut doc: Value = serde_json::from_str(MANIFEST).unwrap();
                for (pick, value) in edits {
                    let mut all = Vec::new();
                    pointers(&doc, String::new(), &mut all);
                    let at = pick.get(&all).clone();
                    if at.is_empty() {
                        doc = value;
                    } else if let Some(slot) = doc.pointer_mut(&at) {
                        *slot = value;
                    }
                }
                let _ = Manifest::parse(&doc.to_string());
            }
        }
    }
}
