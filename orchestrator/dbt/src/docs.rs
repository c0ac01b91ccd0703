//! The project's documentation of each model, as the asset page and `orch assets show` print
//! it (like dbt docs): the model's columns with their types, descriptions, constraints and the
//! tests on each. The documented part comes from `manifest.json` and is stored in the asset's
//! spec (`dbt/columns`); the types come from `catalog.json` (`dbt/catalog`), which orch writes
//! after a build when it is missing, lacks a relation built, or was written for other project
//! files (once per change of the project), and are read when shown, so a
//! catalog written after the definitions were loaded is seen at once.

use std::collections::HashMap;
use std::path::Path;

use orch_core::metadata::{Metadata, MetadataValue};
use serde_json::{Value, json};

use crate::manifest::{DbtNode, Manifest};

/// The spec metadata holding the documented columns (JSON).
pub const COLUMNS_KEY: &str = "dbt/columns";
/// The spec metadata holding the path of `catalog.json`.
pub const CATALOG_KEY: &str = "dbt/catalog";
/// The spec metadata holding the node's unique id.
pub const UNIQUE_ID_KEY: &str = "dbt/unique_id";

/// A column as shown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnDoc {
    pub name: String,
    /// The warehouse's type (catalog), or the declared one (contract).
    pub data_type: Option<String>,
    pub description: Option<String>,
    pub constraints: Vec<String>,
    /// The tests on the column (`primary_key`, `not_null`, `accepted_values`, ...).
    pub tests: Vec<String>,
}

/// `node`'s documented columns with the tests on each, as stored in its spec.
pub fn node_columns(manifest: &Manifest, node: &DbtNode) -> Value {
    let mut tests: HashMap<String, Vec<String>> = HashMap::new();
    for test in &manifest.tests {
        if test.attached_node.as_deref() == Some(node.unique_id.as_str())
            && let Some(column) = &test.column_name
        {
            tests
                .entry(column.to_ascii_lowercase())
                .or_default()
                .push(test.test_name.clone());
        }
    }
    let mut columns: Vec<Value> = node
        .columns
        .iter()
        .map(|c| {
            let mut t = tests
                .remove(&c.name.to_ascii_lowercase())
                .unwrap_or_default();
            t.sort();
            t.dedup();
            json!({
                "name": c.name,
                "description": c.description,
                "data_type": c.data_type,
                "constraints": c.constraints,
                "tests": t,
            })
        })
        .collect();
    // Tests on columns the yml does not list.
    let mut rest: Vec<_> = tests.into_iter().collect();
    rest.sort();
    for (name, mut t) in rest {
        t.sort();
        t.dedup();
        columns.push(json!({"name": name, "tests": t}));
    }
    Value::Array(columns)
}

/// The columns of an asset's spec metadata, with the catalog's types and order when there is
/// a catalog; empty for an asset that is not a dbt model.
pub fn columns(metadata: &Metadata) -> Vec<ColumnDoc> {
    let documented = match metadata.get(COLUMNS_KEY) {
        Some(MetadataValue::Json(Value::Array(a))) => a.clone(),
        _ => Vec::new(),
    };
    let mut out: Vec<ColumnDoc> = documented
        .iter()
        .map(|c| ColumnDoc {
            name: c["name"].as_str().unwrap_or_default().to_owned(),
            data_type: c["data_type"].as_str().map(str::to_owned),
            description: c["description"].as_str().map(str::to_owned),
            constraints: strings(&c["constraints"]),
            tests: strings(&c["tests"]),
        })
        .collect();
    let unique_id = match metadata.get(UNIQUE_ID_KEY) {
        Some(MetadataValue::Text(s)) => s.clone(),
        _ => return out,
    };
    let catalog = match metadata.get(CATALOG_KEY) {
        Some(MetadataValue::Path(p) | MetadataValue::Text(p)) => {
            catalog_columns(Path::new(p), &unique_id)
        }
        _ => None,
    };
    let Some(catalog) = catalog else {
        return out;
    };
    // The warehouse's order and types; documented columns the table lacks stay at the end.
    let mut ordered = Vec::new();
    for (name, data_type) in catalog {
        let doc = match out.iter().position(|c| c.name.eq_ignore_ascii_case(&name)) {
            Some(i) => out.remove(i),
            None => ColumnDoc {
                name: name.clone(),
                ..ColumnDoc::default()
            },
        };
        ordered.push(ColumnDoc {
            data_type: Some(data_type),
            ..doc
        });
    }
    ordered.extend(out);
    ordered
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A node's columns in `catalog.json`: (name, type), in the table's order.
fn catalog_columns(path: &Path, unique_id: &str) -> Option<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: Value = serde_json::from_str(&text).ok()?;
    let columns = doc
        .pointer(&format!(
            "/nodes/{}/columns",
            unique_id.replace('~', "~0").replace('/', "~1")
        ))?
        .as_object()?;
    let mut out: Vec<(i64, String, String)> = columns
        .values()
        .map(|c| {
            (
                c["index"].as_i64().unwrap_or(i64::MAX),
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    Some(out.into_iter().map(|(_, n, t)| (n, t)).collect())
}

/// The columns as text, one per line (`orch assets show`).
pub fn render_columns(columns: &[ColumnDoc]) -> String {
    let mut out = String::new();
    for c in columns {
        out.push_str(&format!(
            "  {}  {}\n",
            c.name,
            c.data_type.as_deref().unwrap_or("?")
        ));
        if let Some(d) = &c.description {
            out.push_str(&format!("      {d}\n"));
        }
        let mut extra = Vec::new();
        if !c.constraints.is_empty() {
            extra.push(format!("constraints: {}", c.constraints.join(", ")));
        }
        if !c.tests.is_empty() {
            extra.push(format!("tests: {}", c.tests.join(", ")));
        }
        if !extra.is_empty() {
            out.push_str(&format!("      {}\n", extra.join("; ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_types_and_order_over_documented_columns() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = dir.path().join("catalog.json");
        std::fs::write(
            &catalog,
            r#"{"nodes": {"model.p.m": {"columns": {
                "B": {"name": "b", "type": "BIGINT", "index": 2},
                "A": {"name": "a", "type": "VARCHAR", "index": 1}}}}}"#,
        )
        .unwrap();
        let mut md = Metadata::new();
        md.insert(UNIQUE_ID_KEY, "model.p.m");
        md.insert(
            CATALOG_KEY,
            MetadataValue::Path(catalog.display().to_string()),
        );
        md.insert(
            COLUMNS_KEY,
            json!([{"name": "b", "description": "Bees.", "data_type": "int64", "constraints": ["not_null"], "tests": ["primary_key"]},
                   {"name": "gone", "description": "Not in the table."}]),
        );
        let cols = columns(&md);
        let names: Vec<_> = cols
            .iter()
            .map(|c| (c.name.as_str(), c.data_type.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("a", Some("VARCHAR")),
                ("b", Some("BIGINT")),
                ("gone", None)
            ]
        );
        assert_eq!(cols[1].description.as_deref(), Some("Bees."));
        assert_eq!(cols[1].tests, ["primary_key"]);
        let text = render_columns(&cols);
        assert!(
            text.contains(
                "  b  BIGINT\n      Bees.\n      constraints: not_null; tests: primary_key\n"
            ),
            "{text}"
        );
        // Without a catalog, the declared types.
        md.insert(
            CATALOG_KEY,
            MetadataValue::Path(dir.path().join("none.json").display().to_string()),
        );
        assert_eq!(columns(&md)[0].data_type.as_deref(), Some("int64"));
    }
}
