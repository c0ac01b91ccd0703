//! The structure ARCHITECTURE.md describes, checked by the build's own metadata rather than
//! kept by convention: the crates in layers (no cycle, no edge upward), `orch-core` with no
//! runtime crate anywhere in its dependency tree, no source file over 900 lines outside tests
//! and fixtures, and no `macro_rules!` hiding a storage backend.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The workspace's root (the integration tests belong to `cli/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// `cargo metadata` of the workspace's own packages, offline.
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--locked",
            "--no-deps",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Each workspace crate's layer: a crate may depend only on crates of a lower layer. A new
/// crate must be given its place here (and in ARCHITECTURE.md's map).
const LAYERS: &[(&str, u32)] = &[
    // Pure: no runtime, no IO of their own beyond what their data needs.
    ("orch-core", 0),
    ("orch-eventsim", 0),
    ("orch-lake", 0),
    // The engine's runtime and integrations, the warehouse over the lake.
    ("orch", 1),
    ("orch-dbt", 1),
    ("orch-warehouse", 1),
    // Servers and workers.
    ("orch-web", 2),
    ("orch-streaming", 2),
    // The platform, on all of them.
    ("orch-platform", 3),
    // The binary, at the top.
    ("orch-cli", 4),
];

#[test]
fn crates_depend_only_on_lower_layers() {
    let meta = metadata();
    let layers: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("a name"))
        .collect();
    let mut wrong = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let Some(&layer) = layers.get(name) else {
            wrong.push(format!("{name} has no layer in tests/structure.rs"));
            continue;
        };
        for dep in p["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            // Dev-dependencies (tests) may reach anywhere below the binary.
            if !names.contains(dep_name) || dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep_layer = layers.get(dep_name).copied().unwrap_or(u32::MAX);
            if dep_layer >= layer {
                wrong.push(format!(
                    "{name} (layer {layer}) depends on {dep_name} (layer {dep_layer})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "edges against the layers:\n{}",
        wrong.join("\n")
    );
}

/// Crates that would bring a runtime, a database, a network client or a server.
const RUNTIME_CRATES: &[&str] = &[
    "tokio",
    "sqlx",
    "sqlx-core",
    "reqwest",
    "hyper",
    "axum",
    "tower",
    "rdkafka",
    "duckdb",
    "object_store",
    "orch",
];

#[test]
fn core_has_no_runtime_in_its_dependency_tree() {
    // Everything orch-core needs to build on this platform: normal and build dependencies,
    // transitively, one package a line.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "-p",
            "orch-core",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--offline",
            "--locked",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let tree: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        tree.contains("orch-core") && tree.contains("chrono"),
        "the walk found orch-core's dependencies: {tree:?}"
    );
    let found: Vec<&&str> = RUNTIME_CRATES
        .iter()
        .filter(|c| tree.contains(**c))
        .collect();
    assert!(
        found.is_empty(),
        "orch-core's dependency tree holds {found:?}: {tree:?}"
    );
}

/// Most lines a source file may have, not counting its `#[cfg(test)]` module.
const MAX_LINES: usize = 900;

/// Files allowed past [`MAX_LINES`], with why.
const FIXTURES: &[(&str, &str)] = &[(
    "warehouse/src/bigquery/fake_api.rs",
    "a test fixture: BigQuery's REST API as the tests' stand-in, one table of routes",
)];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | "tests" | "fixtures" | ".git" | "node_modules"
            ) {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_source_file_is_over_900_lines() {
    let root = root();
    let mut files = Vec::new();
    for dir in [
        "orchestrator",
        "assets",
        "cli",
        "web",
        "lake",
        "eventsim",
        "warehouse",
        "streaming",
    ] {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found the sources: {}", files.len());
    let mut long = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if FIXTURES.iter().any(|(f, _)| *f == rel) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let lines = text
            .lines()
            .take_while(|l| !l.starts_with("#[cfg(test)]"))
            .count();
        if lines > MAX_LINES {
            long.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by concern):\n{}",
        long.join("\n")
    );
}

#[test]
fn no_macro_hides_a_storage_backend() {
    let mut files = Vec::new();
    sources(&root().join("orchestrator/runtime/src/storage"), &mut files);
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("macro_rules!"),
            "{}: storage is plain functions over one SQL handle, not a macro",
            file.display()
        );
    }
}
