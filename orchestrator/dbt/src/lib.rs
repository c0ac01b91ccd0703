//! dbt as assets, the way dagster-dbt does it.
//!
//! [`DbtProject::manifest`] reads `manifest.json` (running `dbt parse` when it is missing or
//! older than the project); [`dbt_assets`] turns each model, seed and snapshot into an asset
//! (the manifest's deps, its folder as group, kind `dbt`, dbt's checksum as code version) and
//! each data test into a check on the model it tests; sources map onto the assets that load
//! them (`meta.orch_asset`). A step over some of those assets makes one
//! `dbt build --select ...` call, with the partition window in `ORCH_WINDOW_START`/`_END`, reads dbt's JSON log
//! line by line and records each model's materialization (rows, duration) and each test's
//! result as they happen. A failing model fails the step with dbt's own message. A model's
//! post-hook may log `orch:meta <unique_id> <key> <text>` lines, which become metadata of its
//! materialization (the platform's project says so what each build rebuilt and why).

pub mod docs;
mod manifest;
mod step;
mod worker;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde_json::Value;

pub use manifest::{DbtColumn, DbtNode, DbtSource, DbtTest, Manifest};
pub use worker::{WORKER_ENV, enabled_by_env as worker_enabled_by_env};

use step::build;

use orch_core::asset::{
    AssetDep, AssetKey, AssetSpec, AssetsDefinition, BackfillPolicy, CheckSpec, Severity,
};
use orch_core::context::AssetContext;
use orch_core::partitions::PartitionsDefinition;

/// A dbt project and how orch runs it.
#[derive(Debug)]
pub struct DbtProject {
    /// The folder holding `dbt_project.yml`.
    pub project_dir: PathBuf,
    /// The folder holding `profiles.yml` (default: the project's).
    pub profiles_dir: PathBuf,
    /// dbt's `--target-path`: where `manifest.json` is written.
    pub target_path: PathBuf,
    /// dbt's `--log-path`.
    pub log_path: PathBuf,
    /// The profile's target (`dev`, `prod`), or the profile's default.
    pub target: Option<String>,
    /// Environment for dbt (e.g. `ORCH_DUCKDB_PATH`).
    pub env: Vec<(String, String)>,
    executable: Executable,
    resolved: OnceLock<Result<PathBuf, String>>,
    /// Whether builds run in long-lived dbt workers (`worker.rs`) rather than one `dbt`
    /// process each.
    use_workers: bool,
    workers: worker::Pool,
}

#[derive(Debug, Clone)]
enum Executable {
    /// This program.
    Path(PathBuf),
    /// A script that installs dbt when missing and prints the path of its `dbt`.
    Installer(PathBuf),
}

impl DbtProject {
    /// The project in `project_dir`, writing its artifacts under `state_dir`
    /// (`target/`, `logs/`), run with `dbt` from the PATH.
    pub fn new(project_dir: impl Into<PathBuf>, state_dir: &Path) -> DbtProject {
        let project_dir = project_dir.into();
        DbtProject {
            profiles_dir: project_dir.clone(),
            project_dir,
            target_path: state_dir.join("target"),
            log_path: state_dir.join("logs"),
            target: None,
            env: Vec::new(),
            executable: Executable::Path(PathBuf::from("dbt")),
            resolved: OnceLock::new(),
            use_workers: true,
            workers: worker::Pool::default(),
        }
    }

    /// Whether builds run in long-lived dbt workers (the default; `ORCH_DBT_WORKER=0` turns
    /// them off too) or one `dbt` process each.
    pub fn workers(mut self, on: bool) -> DbtProject {
        self.use_workers = on;
        self
    }

    /// Runs this `dbt` program.
    pub fn executable(mut self, path: impl Into<PathBuf>) -> DbtProject {
        self.executable = Executable::Path(path.into());
        self
    }

    /// Finds dbt by running `script`, which installs it when missing and prints its path.
    pub fn installer(mut self, script: impl Into<PathBuf>) -> DbtProject {
        self.executable = Executable::Installer(script.into());
        self
    }

    pub fn target(mut self, target: Option<String>) -> DbtProject {
        self.target = target;
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> DbtProject {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.target_path.join("manifest.json")
    }

    /// Where `dbt docs generate` writes the catalog: the warehouse's columns and types.
    pub fn catalog_path(&self) -> PathBuf {
        self.target_path.join("catalog.json")
    }

    /// Where the catalog's key is kept: the [`DbtProject::project_digest`] it was written for.
    fn catalog_key_path(&self) -> PathBuf {
        self.target_path.join("catalog.key")
    }

    /// Why the catalog must be written again after a build that built the nodes `built`, if it
    /// must: it is missing, it was written for another state of the project (its key, beside
    /// it, is not today's digest), or it lacks a relation built (a model built for the first
    /// time since). Not because the build rewrote `manifest.json`, which every build does.
    fn catalog_stale(&self, built: &[String]) -> Option<&'static str> {
        let Ok(text) = std::fs::read_to_string(self.catalog_path()) else {
            return Some("it was missing");
        };
        let key = std::fs::read_to_string(self.catalog_key_path()).unwrap_or_default();
        if key.trim() != self.project_digest() {
            return Some("the project changed since it was written");
        }
        let catalog: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let Some(nodes) = catalog.get("nodes").and_then(Value::as_object) else {
            return Some("it was not a catalog");
        };
        if built.iter().any(|id| !nodes.contains_key(id)) {
            return Some("a relation built was not in it");
        }
        None
    }

    /// A digest of what the catalog documents: the project's own files (their paths and
    /// contents, as [`newest_source`] chooses them), the profile's target and dbt's
    /// environment. FNV-1a, written out so that it stays the same across Rust releases.
    fn project_digest(&self) -> String {
        let mut files = Vec::new();
        source_files(&self.project_dir, &mut |path, _| {
            files.push(path.to_path_buf())
        });
        files.sort();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes.iter().chain([&0xff]) {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for file in &files {
            let relative = file.strip_prefix(&self.project_dir).unwrap_or(file);
            feed(relative.to_string_lossy().as_bytes());
            feed(&std::fs::read(file).unwrap_or_default());
        }
        feed(self.target.as_deref().unwrap_or_default().as_bytes());
        for (k, v) in &self.env {
            feed(k.as_bytes());
            feed(v.as_bytes());
        }
        format!("{hash:016x}")
    }

    /// Locks the file that serializes the work on the manifest (and the catalog) between
    /// processes, until the returned file is dropped.
    fn lock_manifest(&self) -> Result<std::fs::File, String> {
        std::fs::create_dir_all(&self.target_path)
            .map_err(|e| format!("cannot create {}: {e}", self.target_path.display()))?;
        let lock_path = self.target_path.join(".manifest.lock");
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        Ok(lock)
    }

    /// The `dbt` to run, installing it first if the project says how.
    pub fn dbt(&self) -> Result<PathBuf, String> {
        self.resolved
            .get_or_init(|| match &self.executable {
                Executable::Path(p) => Ok(p.clone()),
                Executable::Installer(script) => {
                    let out = std::process::Command::new(script)
                        .stderr(std::process::Stdio::inherit())
                        .output()
                        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
                    if !out.status.success() {
                        return Err(format!(
                            "{} could not install dbt (see its messages above)",
                            script.display()
                        ));
                    }
                    let text = String::from_utf8_lossy(&out.stdout);
                    let path = text.lines().last().unwrap_or_default().trim();
                    if path.is_empty() {
                        return Err(format!("{} printed no path", script.display()));
                    }
                    Ok(PathBuf::from(path))
                }
            })
            .clone()
    }

    /// A worker for a build with `dbt`, when workers are on and `dbt` is a Python console
    /// script: an idle one that parsed the project as it is, or a new one (which parses it).
    /// `None` means: run the command line. A worker that cannot start turns workers off for
    /// this state of the project, with a warning saying why.
    async fn checkout_worker(&self, dbt: &Path, ctx: &AssetContext) -> Option<worker::Worker> {
        if !self.use_workers || !worker::enabled_by_env() {
            return None;
        }
        let python = worker::python_of(dbt)?;
        let digest = self.project_digest();
        if self.workers.off(&digest) {
            return None;
        }
        if let Some(worker) = self.workers.take(&digest) {
            return Some(worker);
        }
        let script = match worker::script_in(&self.target_path) {
            Ok(script) => script,
            Err(e) => {
                ctx.log()
                    .warn(format!("no dbt worker ({e}): running the dbt command line"));
                return None;
            }
        };
        let started = std::time::Instant::now();
        let mut common = self.args("parse");
        common.remove(0);
        let envs = self.envs();
        let start = worker::Worker::start(
            &python,
            &script,
            &common,
            &envs,
            &self.project_dir,
            digest.clone(),
        );
        let started_worker = tokio::select! {
            w = start => w,
            () = ctx.canceled() => return None,
        };
        match started_worker {
            Ok(worker) => {
                ctx.log().info(format!(
                    "started a dbt worker in {:.1} s (it parsed the project; later builds reuse it)",
                    started.elapsed().as_secs_f64()
                ));
                Some(worker)
            }
            Err(e) => {
                ctx.log().warn(format!(
                    "the dbt worker could not start ({e}): running the dbt command line until the project changes"
                ));
                self.workers.turn_off(digest);
                None
            }
        }
    }

    /// The common arguments of every dbt command.
    fn args(&self, command: &str) -> Vec<String> {
        self.args_in(command, &self.target_path)
    }

    /// The common arguments, with the artifacts written to `target`.
    fn args_in(&self, command: &str, target: &Path) -> Vec<String> {
        let mut args = vec![
            command.to_owned(),
            "--project-dir".into(),
            self.project_dir.display().to_string(),
            "--profiles-dir".into(),
            self.profiles_dir.display().to_string(),
            "--target-path".into(),
            target.display().to_string(),
            "--log-path".into(),
            self.log_path.display().to_string(),
        ];
        if let Some(target) = &self.target {
            args.push("--target".into());
            args.push(target.clone());
        }
        args
    }

    fn envs(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "DBT_SEND_ANONYMOUS_USAGE_STATS".to_owned(),
            "false".to_owned(),
        )];
        env.extend(self.env.iter().cloned());
        env
    }

    /// The manifest, after `dbt parse` if it is missing or older than a file of the project.
    pub fn manifest(&self) -> Result<Manifest, String> {
        let path = self.manifest_path();
        // One process at a time checks, parses and reads: two `orch` commands started together
        // would both parse, one reading what the other writes.
        let _lock = self.lock_manifest()?;
        let stale = match std::fs::metadata(&path).and_then(|m| m.modified()) {
            Err(_) => Some("missing"),
            Ok(written) => newest_source(&self.project_dir)
                .filter(|&newest| newest > written)
                .map(|_| "older than the project"),
        };
        if let Some(why) = stale {
            eprintln!("orch: running dbt parse ({} is {why})", path.display());
            self.parse()?;
        }
        // A dbt step of another process rewrites manifest.json in place as it builds: a read
        // that finds half a file waits for the rest (10 s at most).
        let mut tries = 0;
        loop {
            match Manifest::load(&path) {
                Err(e) if tries < 40 && e.contains("not a dbt manifest") => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                result => return result,
            }
        }
    }

    /// Runs `dbt parse`, which writes `manifest.json`: into a folder of its own, then moved
    /// into place at once, so that a reader never sees half of it.
    pub fn parse(&self) -> Result<(), String> {
        let dbt = self.dbt()?;
        let private = self
            .target_path
            .join(format!(".parse-{}", std::process::id()));
        let out = std::process::Command::new(&dbt)
            .args(self.args_in("parse", &private))
            .envs(self.envs())
            .output()
            .map_err(|e| {
                format!(
                    "cannot run {}: {e} (install dbt, e.g. with scripts/dbt-venv, and set [platform] dbt_executable or ORCH_DBT)",
                    dbt.display()
                )
            })?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&private);
            let text = String::from_utf8_lossy(&out.stdout);
            let detail: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(format!(
                "dbt parse failed in {}:\n{}{}",
                self.project_dir.display(),
                detail.join("\n"),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let written = private.join("manifest.json");
        let moved = std::fs::rename(&written, self.manifest_path()).map_err(|e| {
            format!(
                "cannot move {} into {}: {e}",
                written.display(),
                self.target_path.display()
            )
        });
        let _ = std::fs::remove_dir_all(&private);
        moved
    }
}

/// The newest modification time of the project's own files (not its artifacts).
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    source_files(dir, &mut |_, entry| {
        if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
            newest = newest.max(Some(modified));
        }
    });
    newest
}

/// Calls `f` with each of the project's own files under `dir`: its `.sql`, `.yml`, `.yaml`,
/// `.csv` and `.md` files outside `target`, `logs`, `dbt_packages` and hidden folders.
fn source_files(dir: &Path, f: &mut dyn FnMut(&Path, &std::fs::DirEntry)) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                if !matches!(name.as_ref(), "target" | "logs" | "dbt_packages") {
                    stack.push(path);
                }
                continue;
            }
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("sql" | "yml" | "yaml" | "csv" | "md")
            ) {
                f(&path, &entry);
            }
        }
    }
}

/// How the project's nodes become assets.
#[derive(Debug, Clone, Default)]
pub struct DbtAssetOptions {
    /// Partitions of every dbt asset (the window goes to dbt in `ORCH_WINDOW_START`/`_END`).
    pub partitions: Option<PartitionsDefinition>,
    /// The concurrency pool of the dbt step.
    pub pool: Option<String>,
    /// Kinds added to `dbt` (the warehouse: `duckdb`, `bigquery`).
    pub kinds: Vec<String>,
}

/// Who is who: asset keys, dbt nodes and tests.
#[derive(Debug, Default)]
struct Index {
    key_of: HashMap<String, AssetKey>,
    name_of: HashMap<AssetKey, String>,
    /// test unique id -> (check name, asset, declared severity)
    test_of: HashMap<String, (String, AssetKey, Severity)>,
}

/// The dbt project's models, seeds and snapshots as one subsettable multi-asset definition.
pub fn dbt_assets(
    project: Arc<DbtProject>,
    manifest: &Manifest,
    options: &DbtAssetOptions,
) -> Result<AssetsDefinition, String> {
    let mut index = Index::default();
    let buildable: BTreeMap<&str, &DbtNode> = manifest
        .nodes
        .iter()
        .filter(|(_, n)| n.materialized != "ephemeral")
        .map(|(id, n)| (id.as_str(), n))
        .collect();
    for (id, node) in &buildable {
        let key = AssetKey::parse(&node.name)
            .map_err(|e| format!("dbt node {id}: not an asset key: {e}"))?;
        index.key_of.insert((*id).to_owned(), key.clone());
        index.name_of.insert(key, node.name.clone());
    }
    let mut checks: HashMap<String, Vec<CheckSpec>> = HashMap::new();
    for (test, node) in manifest.test_targets() {
        let Some(key) = index.key_of.get(&node.unique_id) else {
            continue;
        };
        let severity = if test.severity == "warn" {
            Severity::Warn
        } else {
            Severity::Error
        };
        let mut spec = CheckSpec::new(&test.name).severity(severity);
        if let Some(d) = &test.description {
            spec = spec.description(d);
        }
        checks.entry(node.unique_id.clone()).or_default().push(spec);
        index.test_of.insert(
            test.unique_id.clone(),
            (test.name.clone(), key.clone(), severity),
        );
    }
    let mut specs = Vec::new();
    for (id, node) in &buildable {
        let mut spec = AssetSpec::new(index.key_of[*id].clone());
        spec.group = node.group.clone();
        spec.kinds.insert("dbt".to_owned());
        spec.kinds.extend(options.kinds.iter().cloned());
        spec.description = node.description.clone();
        spec.code_version = Some(node.checksum.chars().take(16).collect());
        spec.partitions = options.partitions.clone();
        for tag in &node.tags {
            spec.tags.insert(tag.clone(), String::new());
        }
        spec.metadata.insert("dbt/unique_id", *id);
        spec.metadata
            .insert("dbt/materialized", node.materialized.as_str());
        spec.metadata.insert("dbt/relation", node.relation.as_str());
        spec.metadata.insert("dbt/path", node.path.as_str());
        spec.metadata.insert("dbt/sql", node.raw_code.as_str());
        spec.metadata
            .insert(docs::COLUMNS_KEY, docs::node_columns(manifest, node));
        spec.metadata.insert(
            docs::CATALOG_KEY,
            orch_core::metadata::MetadataValue::Path(project.catalog_path().display().to_string()),
        );
        let mut deps = BTreeSet::new();
        collect_deps(manifest, &index, node, &mut deps, &mut Vec::new())?;
        spec.deps = deps
            .into_iter()
            .map(|key| AssetDep { key, mapping: None })
            .collect();
        spec.checks = checks.remove(*id).unwrap_or_default();
        specs.push(spec);
    }
    let project_for_compute = Arc::clone(&project);
    let index = Arc::new(index);
    let compute = move |ctx: AssetContext| {
        let project = Arc::clone(&project_for_compute);
        let index = Arc::clone(&index);
        async move { build(project, index, ctx).await }
    };
    let mut definition = AssetsDefinition::multi("dbt", specs, compute)
        .with_subsetting(true)
        .with_backfill_policy(BackfillPolicy::SingleRun);
    if let Some(pool) = &options.pool {
        definition = definition.with_pool(pool.clone());
    }
    Ok(definition)
}

/// The assets `node` reads: other dbt assets, through ephemeral models, and the assets that
/// load its sources.
fn collect_deps(
    manifest: &Manifest,
    index: &Index,
    node: &DbtNode,
    out: &mut BTreeSet<AssetKey>,
    seen: &mut Vec<String>,
) -> Result<(), String> {
    for dep in &node.depends_on {
        if seen.contains(dep) {
            continue;
        }
        seen.push(dep.clone());
        if let Some(key) = index.key_of.get(dep) {
            out.insert(key.clone());
        } else if let Some(ephemeral) = manifest.nodes.get(dep) {
            collect_deps(manifest, index, ephemeral, out, seen)?;
        } else if let Some(source) = manifest.sources.get(dep) {
            let name = source
                .orch_asset
                .clone()
                .unwrap_or_else(|| format!("{}/{}", source.source_name, source.name));
            out.insert(AssetKey::parse(&name).map_err(|e| {
                format!("source {dep}: meta.orch_asset `{name}` is not an asset key: {e}")
            })?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{refresh_catalog, strip_ansi};

    /// Several processes load the manifest at once on a fresh checkout while a dbt step of
    /// another rewrites it in place: every load gets the whole manifest (a fake `dbt` writes it
    /// in two halves, 300 ms apart).
    #[test]
    fn concurrent_loads_never_read_half_a_manifest() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("dbt_project.yml"), "name: p\n").unwrap();
        let halves = (
            r#"{"metadata": {"project_name": "p", "adapter_type": "duckdb"},"#,
            r#" "nodes": {}, "sources": {}}"#,
        );
        let dbt = dir.path().join("dbt");
        std::fs::write(
            &dbt,
            format!(
                "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in --target-path) t=\"$2\"; shift 2;; *) shift;; esac; done\n\
                 mkdir -p \"$t\"\nprintf '%s' '{}' > \"$t/manifest.json\"\nsleep 0.3\nprintf '%s' '{}' >> \"$t/manifest.json\"\n",
                halves.0, halves.1
            ),
        )
        .unwrap();
        std::fs::set_permissions(&dbt, std::fs::Permissions::from_mode(0o755)).unwrap();
        let state = dir.path().join("state");
        let loads: Vec<_> = (0..4)
            .map(|_| {
                let dbt_project = DbtProject::new(&project, &state).executable(&dbt);
                std::thread::spawn(move || dbt_project.manifest())
            })
            .collect();
        for load in loads {
            let manifest = load.join().unwrap().expect("a whole manifest");
            assert_eq!(manifest.project_name, "p");
        }
        // A step rewriting it in place (as `dbt build` does) while another process loads it.
        let path = state.join("target").join("manifest.json");
        std::fs::write(&path, halves.0).unwrap();
        let finish = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(600));
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                std::io::Write::write_all(&mut f, halves.1.as_bytes()).unwrap();
            })
        };
        let manifest = DbtProject::new(&project, &state)
            .executable(&dbt)
            .manifest()
            .expect("the load waits for the rest");
        assert_eq!(manifest.project_name, "p");
        finish.join().unwrap();
    }

    /// The catalog is written once per change of the project, not after every build (each of
    /// which rewrites `manifest.json`): a fake `dbt docs generate` counts its calls and writes a
    /// catalog of the relations listed in a file.
    #[tokio::test]
    async fn the_catalog_is_written_once_per_change_of_the_project() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let project_dir = dir.path().join("project");
        std::fs::create_dir_all(project_dir.join("models")).unwrap();
        std::fs::write(project_dir.join("dbt_project.yml"), "name: p\n").unwrap();
        let model = project_dir.join("models").join("a.sql");
        std::fs::write(&model, "select 1 as x\n").unwrap();
        let (calls, relations) = (dir.path().join("calls"), dir.path().join("relations"));
        std::fs::write(&relations, r#""model.p.a": {}"#).unwrap();
        let dbt = dir.path().join("dbt");
        std::fs::write(
            &dbt,
            format!(
                "#!/bin/sh\necho \"$1 $2\" >> '{}'\n                 while [ $# -gt 0 ]; do case \"$1\" in --target-path) t=\"$2\"; shift 2;; *) shift;; esac; done\n                 mkdir -p \"$t\"\nprintf '{{\"nodes\": {{%s}}}}' \"$(cat '{}')\" > \"$t/catalog.json\"\n",
                calls.display(),
                relations.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&dbt, std::fs::Permissions::from_mode(0o755)).unwrap();
        let project =
            Arc::new(DbtProject::new(&project_dir, &dir.path().join("state")).executable(&dbt));
        let manifest = project.manifest_path();
        let generated = || {
            std::fs::read_to_string(&calls)
                .unwrap_or_default()
                .lines()
                .filter(|l| *l == "docs generate")
                .count()
        };
        // A build: dbt rewrites the manifest, then the step refreshes the catalog.
        let build = |built: &'static [&'static str]| {
            let project = Arc::clone(&project);
            let (dbt, manifest) = (dbt.clone(), manifest.clone());
            async move {
                std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
                std::fs::write(&manifest, "{}").unwrap();
                let built: Vec<String> = built.iter().map(|s| (*s).to_owned()).collect();
                refresh_catalog(&project, &dbt, &built).await.unwrap()
            }
        };
        let written = build(&["model.p.a"])
            .await
            .expect("the catalog was missing");
        assert!(written.contains("it was missing"), "{written}");
        assert_eq!(generated(), 1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(build(&["model.p.a"]).await, None, "an unchanged project");
        assert_eq!(build(&[]).await, None);
        assert_eq!(generated(), 1);
        std::fs::write(&model, "select 2 as x\n").unwrap();
        let written = build(&["model.p.a"]).await.expect("a changed model");
        assert!(written.contains("the project changed"), "{written}");
        assert_eq!(generated(), 2);
        assert_eq!(build(&["model.p.a"]).await, None);
        // A model added to the project, then built for the first time.
        std::fs::write(project_dir.join("models").join("b.sql"), "select 3 as y\n").unwrap();
        std::fs::write(&relations, r#""model.p.a": {}, "model.p.b": {}"#).unwrap();
        assert!(build(&["model.p.a"]).await.is_some(), "a new file");
        assert_eq!(build(&["model.p.a", "model.p.b"]).await, None);
        // A relation built that the catalog lacks (written before its first build).
        std::fs::write(&relations, r#""model.p.a": {}"#).unwrap();
        std::fs::write(project_dir.join("models").join("b.sql"), "select 4 as y\n").unwrap();
        assert!(build(&["model.p.a"]).await.is_some());
        std::fs::write(&relations, r#""model.p.a": {}, "model.p.b": {}"#).unwrap();
        let written = build(&["model.p.b"])
            .await
            .expect("b is not in the catalog");
        assert!(written.contains("not in it"), "{written}");
        assert_eq!(build(&["model.p.a", "model.p.b"]).await, None);
        assert_eq!(generated(), 5);
    }

    #[test]
    fn colour_codes_go() {
        assert_eq!(
            strip_ansi("1 of 2 OK [\u{1b}[32mOK\u{1b}[0m in 0.4s]"),
            "1 of 2 OK [OK in 0.4s]"
        );
    }
}
