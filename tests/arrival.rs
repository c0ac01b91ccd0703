//! Load order does not matter: for the same lake, the marts (and the star schema under them)
//! equal those of a full rebuild from an empty warehouse, whatever happened before.
//!
//! eventsim writes twelve hours with level changes. The lake every scenario ends with is made
//! from them: one user's earliest events moved to a file of their own (they arrive last),
//! events duplicated into another file (same event ids, same source positions), and a file
//! that first arrives half written and is later rewritten whole under the same name. The full
//! rebuild materializes that lake in one run. Then each scenario starts from an empty
//! warehouse and an empty lake and runs the real `orch materialize` over hours in a random
//! order (single hours, ranges, two runs at once, reloads) while the files arrive in a random
//! order (late files for hours already built, the hour of a level change held back until later
//! hours are built, the user's earliest events last); once every hour has been materialized
//! since its files last changed (what the lake sensor guarantees), every table of the marts and
//! of the star schema is compared with the full rebuild's, row by row.
//!
//! The first scenario is the issue's: hours out of order (03, 00, 01, 05, 02) while hour 01's
//! files are missing, hour 01 built again once they arrive, then hour 04. `ORCH_ARRIVAL_SEEDS` (default `1,2`) picks the random scenarios
//! and `ORCH_ARRIVAL_RUNS` (default 6) how many runs each makes before catching up, for a
//! longer run: `ORCH_ARRIVAL_SEEDS=1,2,3,4,5,6 ORCH_ARRIVAL_RUNS=12`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use orch_lake::arrow_array::cast::AsArray;
use orch_lake::arrow_array::types::Int64Type;
use orch_lake::arrow_array::{Array, BooleanArray, RecordBatch};
use orch_lake::{FileName, Hour, Lake, Topic};
use orch_warehouse::{DuckDbWarehouse, Warehouse};
use serde_json::Value;

use crate::util::Project;

/// 2026-11-22 14:00 UTC: twelve hours of US daytime, across midnight UTC (two days).
const FIRST_HOUR_MS: i64 = 1_795_356_000_000;
const HOURS: i64 = 12;
const EVENTSIM_TO: &str = "2026-11-23-02:00";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn hour(i: i64) -> Hour {
    Hour::from_ts_ms(FIRST_HOUR_MS + i * 3_600_000).unwrap()
}

/// Hour `i` as orch's partition key (`2026-11-22-14:00`).
fn key(i: i64) -> String {
    hour(i).to_string()
}

fn platform_project() -> Project {
    let dbt = crate::dbt::dbt();
    let project = Project::empty();
    project.write(
        "orch.toml",
        &format!(
            "[platform]\ndbt_project = {:?}\ndbt_executable = {:?}\n",
            crate::dbt::repo().join("dbt").display().to_string(),
            dbt.display().to_string()
        ),
    );
    project
}

fn lake_root(project: &Project) -> PathBuf {
    project.path().join(".orch/lake")
}

/// xorshift64*: the scenarios' own random numbers, the same for a seed on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A file of the final lake: its path under the lake's root and its hour.
#[derive(Debug, Clone)]
struct LakeFile {
    path: String,
    hour: i64,
}

/// The lake every scenario ends with, and what was done to it.
struct FinalLake {
    root: PathBuf,
    files: Vec<LakeFile>,
    /// The files holding the earliest events of one user: they arrive last.
    late_user: Vec<String>,
    /// A file that arrives half written first (these bytes), then whole.
    half: (String, Vec<u8>),
    /// An hour holding level changes, held back until later hours are built.
    level_hour: i64,
    /// The hours holding level changes.
    level_hours: Vec<i64>,
}

fn user_ids(batch: &RecordBatch) -> Vec<Option<i64>> {
    let col = batch.column_by_name("userId").unwrap();
    let col = col.as_primitive::<Int64Type>();
    (0..col.len())
        .map(|i| (!col.is_null(i)).then(|| col.value(i)))
        .collect()
}

fn file_name(path: &str) -> FileName {
    let stem = Path::new(path).file_stem().unwrap().to_str().unwrap();
    FileName::new(stem).unwrap()
}

/// Makes the final lake out of eventsim's in `project` (changed in place).
fn make_final_lake(project: &Project) -> FinalLake {
    let root = lake_root(project);
    let lake = Lake::open(root.to_str().unwrap()).unwrap();
    let rt = rt();
    // Hours with level changes, and who changed level when.
    let mut level_hours = Vec::new();
    let mut changed: BTreeMap<i64, i64> = BTreeMap::new();
    for h in 0..HOURS {
        let batches = rt
            .block_on(lake.read_hour(Topic::StatusChangeEvents, hour(h)))
            .unwrap();
        let mut any = false;
        for b in &batches {
            for user in user_ids(b).into_iter().flatten() {
                changed.entry(user).or_insert(h);
                any = true;
            }
        }
        if any {
            level_hours.push(h);
        }
    }
    assert!(
        level_hours.len() >= 2,
        "eventsim wrote level changes in {level_hours:?} only: raise --users"
    );
    // Each user's first hour, from their page views.
    let mut first_hour: BTreeMap<i64, i64> = BTreeMap::new();
    for h in 0..HOURS {
        for b in rt
            .block_on(lake.read_hour(Topic::PageViewEvents, hour(h)))
            .unwrap()
        {
            for user in user_ids(&b).into_iter().flatten() {
                first_hour.entry(user).or_insert(h);
            }
        }
    }
    // A user who changes level in a later hour than their first: their first hour's events
    // go to files of their own.
    let (&user, &change_hour) = changed
        .iter()
        .find(|&(u, h)| first_hour.get(u).is_some_and(|f| f < h))
        .expect("a user who changes level after their first hour");
    let user_hour = first_hour[&user];
    let mut late_user = Vec::new();
    for topic in Topic::ALL {
        let files = rt
            .block_on(lake.list_files(topic, hour(user_hour)))
            .unwrap();
        let mut theirs = Vec::new();
        for f in files {
            let batches = rt.block_on(lake.read_parquet(&f.path)).unwrap();
            let mut rest = Vec::new();
            let mut moved = false;
            for b in batches {
                let mine: BooleanArray = user_ids(&b)
                    .iter()
                    .map(|u| Some(*u == Some(user)))
                    .collect();
                let others: BooleanArray = mine.iter().map(|m| m.map(|m| !m)).collect();
                let picked = arrow_select::filter::filter_record_batch(&b, &mine).unwrap();
                if picked.num_rows() > 0 {
                    moved = true;
                    theirs.push(picked);
                }
                rest.push(arrow_select::filter::filter_record_batch(&b, &others).unwrap());
            }
            if moved && rest.iter().all(|b| b.num_rows() == 0) {
                std::fs::remove_file(root.join(&f.path)).unwrap();
            } else if moved {
                rt.block_on(lake.write_parquet(topic, hour(user_hour), &file_name(&f.path), &rest))
                    .unwrap();
            }
        }
        if !theirs.is_empty() {
            let written = rt
                .block_on(lake.write_parquet(
                    topic,
                    hour(user_hour),
                    &FileName::new(format!("late-user-{user}")).unwrap(),
                    &theirs,
                ))
                .unwrap();
            late_user.push(written.path);
        }
    }
    assert!(!late_user.is_empty(), "user {user} has no events to move");
    // Events delivered twice: a copy of a file under another name (same event ids, same
    // partition and offsets).
    for topic in [Topic::ListenEvents, Topic::PageViewEvents] {
        let files = rt.block_on(lake.list_files(topic, hour(5))).unwrap();
        let f = files.first().expect("listens and page views at hour 5");
        let copy = f.path.replace(".parquet", "-redelivered.parquet");
        std::fs::copy(root.join(&f.path), root.join(&copy)).unwrap();
    }
    // A file that first arrives half written.
    let files = rt
        .block_on(lake.list_files(Topic::PageViewEvents, hour(7)))
        .unwrap();
    let whole = files.first().expect("page views at hour 7");
    let batches = rt.block_on(lake.read_parquet(&whole.path)).unwrap();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut half = Vec::new();
    let mut left = rows / 2;
    for b in batches {
        let n = b.num_rows().min(left);
        half.push(b.slice(0, n));
        left -= n;
    }
    let scratch = tempfile::tempdir().unwrap();
    let scratch_lake = Lake::open(scratch.path().to_str().unwrap()).unwrap();
    let written = rt
        .block_on(scratch_lake.write_parquet(
            Topic::PageViewEvents,
            hour(7),
            &file_name(&whole.path),
            &half,
        ))
        .unwrap();
    let half = (
        whole.path.clone(),
        std::fs::read(scratch.path().join(&written.path)).unwrap(),
    );
    // Every file, by hour.
    let mut files = Vec::new();
    for h in 0..HOURS {
        for topic in Topic::ALL {
            for f in rt.block_on(lake.list_files(topic, hour(h))).unwrap() {
                files.push(LakeFile {
                    path: f.path,
                    hour: h,
                });
            }
        }
    }
    let level_hour = *level_hours
        .iter()
        .find(|&&h| (2..HOURS - 2).contains(&h))
        .unwrap_or(&change_hour);
    FinalLake {
        root,
        files,
        late_user,
        half,
        level_hour,
        level_hours,
    }
}

/// Every table of the marts and the star schema, each as sorted rows.
type Snapshot = BTreeMap<String, Vec<Vec<Value>>>;

fn snapshot(project: &Project) -> Snapshot {
    let wh = DuckDbWarehouse::new(project.path().join(".orch/warehouse.duckdb"));
    let rt = rt();
    let tables = rt
        .block_on(wh.query(
            "select table_schema || '.' || table_name from information_schema.tables \
             where table_schema in ('core', 'marts') order by 1",
        ))
        .unwrap()
        .rows;
    let mut out = Snapshot::new();
    for t in tables {
        let name = t[0].as_str().unwrap().to_owned();
        let mut rows = rt
            .block_on(wh.query(&format!("select * from {name}")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .rows;
        rows.sort_by_cached_key(|r| r.iter().map(sort_text).collect::<Vec<_>>());
        out.insert(name, rows);
    }
    out
}

/// Level periods not preceded by a status change of their user: none once the lake is
/// complete (dbt's `assert_level_changes_follow_status_events`, a warning while hours arrive).
fn unexplained_level_changes(project: &Project) -> i64 {
    let wh = DuckDbWarehouse::new(project.path().join(".orch/warehouse.duckdb"));
    let rows = rt()
        .block_on(wh.query(
            "with p as (select user_id, valid_from, lag(valid_from) over (partition by user_id order by valid_from) as previous_from from core.dim_users) \
             select count(*) from p where previous_from is not null and not exists (\
             select 1 from staging.stg_status_change_events s where s.user_id = p.user_id \
             and s.event_ts >= p.previous_from and s.event_ts <= p.valid_from)",
        ))
        .unwrap()
        .rows;
    rows[0][0].as_i64().unwrap()
}

/// A value as text for sorting, floats rounded so that summation order does not reorder rows.
fn sort_text(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => format!("{:.6}", n.as_f64().unwrap()),
        other => other.to_string(),
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        _ => a == b,
    }
}

#[track_caller]
fn assert_same(reference: &Snapshot, got: &Snapshot, scenario: &str, log: &[String]) {
    let names: Vec<&String> = reference.keys().collect();
    assert_eq!(
        names,
        got.keys().collect::<Vec<_>>(),
        "{scenario}: the tables differ"
    );
    for (name, want) in reference {
        let have = &got[name];
        let diff = want.len() != have.len()
            || want.iter().zip(have).any(|(w, h)| {
                w.len() != h.len() || w.iter().zip(h).any(|(a, b)| !same_value(a, b))
            });
        if diff {
            let first = want.iter().zip(have).find(|(w, h)| {
                w.len() != h.len() || w.iter().zip(h.iter()).any(|(a, b)| !same_value(a, b))
            });
            panic!(
                "{scenario}: {name} differs from the full rebuild ({} rows, {} rows in the full rebuild); first difference: {first:?}\nwhat happened:\n{}",
                have.len(),
                want.len(),
                log.join("\n")
            );
        }
    }
}

/// One scenario: an empty warehouse, files arriving and runs going in some order.
struct Scenario<'a> {
    name: String,
    project: Project,
    lake: &'a FinalLake,
    /// Files revealed so far (their path), and whether each is whole.
    revealed: BTreeMap<String, bool>,
    /// Hours materialized since their files last changed.
    current: BTreeSet<i64>,
    log: Vec<String>,
}

impl<'a> Scenario<'a> {
    fn new(name: String, lake: &'a FinalLake) -> Scenario<'a> {
        Scenario {
            name,
            project: platform_project(),
            lake,
            revealed: BTreeMap::new(),
            current: BTreeSet::new(),
            log: Vec::new(),
        }
    }

    /// Puts a file of the final lake into this scenario's lake (the half-written version of
    /// the half file the first time).
    fn reveal(&mut self, file: &LakeFile) {
        let to = lake_root(&self.project).join(&file.path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let whole = file.path != self.lake.half.0 || self.revealed.contains_key(&file.path);
        let tmp = to.with_extension("tmp");
        if whole {
            std::fs::copy(self.lake.root.join(&file.path), &tmp).unwrap();
        } else {
            std::fs::write(&tmp, &self.lake.half.1).unwrap();
        }
        std::fs::rename(&tmp, &to).unwrap();
        let late = if self.current.remove(&file.hour) {
            " (late: its hour was built)"
        } else {
            ""
        };
        self.log.push(format!(
            "file {}{}{late}",
            file.path,
            if whole { "" } else { " (half written)" }
        ));
        self.revealed.insert(file.path.clone(), whole);
    }

    fn materialize_args(first: i64, last: i64) -> Vec<String> {
        let mut args = vec!["materialize".to_owned(), "--select".into(), "*".into()];
        if first == last {
            args.extend(["--partition".into(), key(first)]);
        } else {
            args.extend(["--from".into(), key(first), "--to".into(), key(last)]);
        }
        args
    }

    /// `orch materialize` over hours `first..=last`, which must succeed.
    fn run(&mut self, first: i64, last: i64) {
        let args = Self::materialize_args(first, last);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.log.push(format!("orch {}", args.join(" ")));
        let run = self.project.run(&args);
        assert_eq!(
            run.code(),
            0,
            "{}: orch {} failed\n--- stderr\n{}\nwhat happened:\n{}",
            self.name,
            args.join(" "),
            run.stderr(),
            self.log.join("\n")
        );
        self.current.extend(first..=last);
    }

    /// Two runs at once (separate processes sharing the run history and the warehouse pool).
    fn run_two(&mut self, a: i64, b: i64) {
        self.log
            .push(format!("at once: hour {} and hour {}", key(a), key(b)));
        let children: Vec<_> = [a, b]
            .iter()
            .map(|&h| {
                let args = Self::materialize_args(h, h);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.project
                    .command(&args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}: a run of two at once failed\n{}\nwhat happened:\n{}",
                self.name,
                String::from_utf8_lossy(&out.stderr),
                self.log.join("\n")
            );
        }
        self.current.extend([a, b]);
    }

    /// Reveals whatever is left (the late user's files last) and materializes every hour not
    /// built since its files changed: contiguous hours in one run, the runs in `order`.
    fn catch_up(&mut self, rng: Option<&mut Rng>) {
        let mut pending: Vec<LakeFile> = self
            .lake
            .files
            .iter()
            .filter(|f| self.revealed.get(&f.path) != Some(&true))
            .filter(|f| !self.lake.late_user.contains(&f.path))
            .cloned()
            .collect();
        pending.extend(
            self.lake
                .files
                .iter()
                .filter(|f| self.lake.late_user.contains(&f.path))
                .cloned(),
        );
        for f in &pending {
            self.reveal(f);
            if f.path == self.lake.half.0 && !self.revealed[&f.path] {
                self.reveal(f);
            }
        }
        let stale: Vec<i64> = (0..HOURS).filter(|h| !self.current.contains(h)).collect();
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for h in stale {
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 == h => *last = h,
                _ => ranges.push((h, h)),
            }
        }
        if let Some(rng) = rng {
            rng.shuffle(&mut ranges);
        }
        for (first, last) in ranges {
            self.run(first, last);
        }
    }
}

/// The issue's scenario: hours 03, 00, 01, 05, 02 out of order while hour 01's files are not
/// in the lake; they arrive; hour 01 is built again, then hour 04; then the rest.
fn issue_scenario(lake: &FinalLake) -> Scenario<'_> {
    let mut s = Scenario::new("the issue's scenario".into(), lake);
    let early: Vec<LakeFile> = lake
        .files
        .iter()
        .filter(|f| f.hour != 1 && !lake.late_user.contains(&f.path))
        .cloned()
        .collect();
    for f in &early {
        s.reveal(f);
    }
    for h in [3, 0, 1, 5, 2] {
        s.run(h, h);
    }
    let late: Vec<LakeFile> = lake.files.iter().filter(|f| f.hour == 1).cloned().collect();
    for f in &late {
        s.reveal(f);
    }
    s.run(1, 1);
    s.run(4, 4);
    s.run(6, HOURS - 1);
    s.catch_up(None);
    s
}

/// A random scenario: files arrive in a random order (the level hour's only once a later hour
/// is built; the late user's at the end), between `runs` random runs.
fn random_scenario(lake: &FinalLake, seed: u64, runs: usize) -> Scenario<'_> {
    let mut rng = Rng::new(seed);
    let mut s = Scenario::new(format!("seed {seed}"), lake);
    let mut pending: Vec<LakeFile> = lake
        .files
        .iter()
        .filter(|f| !lake.late_user.contains(&f.path))
        .cloned()
        .collect();
    rng.shuffle(&mut pending);
    // A share of the files arrives before the first run.
    let first = pending.len() / 2;
    for f in pending.drain(..first).collect::<Vec<_>>() {
        if f.hour != lake.level_hour {
            s.reveal(&f);
        } else {
            pending.push(f);
        }
    }
    for _ in 0..runs {
        let level_hour_held = !s.current.iter().any(|&h| h > lake.level_hour);
        let n = if pending.is_empty() {
            0
        } else {
            1 + rng.below(pending.len().div_ceil(2))
        };
        let mut i = 0;
        let mut revealed = 0;
        while revealed < n && i < pending.len() {
            if level_hour_held && pending[i].hour == lake.level_hour {
                i += 1;
                continue;
            }
            let f = pending.remove(i);
            s.reveal(&f);
            // The half file comes back whole later.
            if f.path == lake.half.0 {
                pending.push(f);
            }
            revealed += 1;
        }
        match rng.below(10) {
            0..=3 => {
                let h = rng.below(HOURS as usize) as i64;
                s.run(h, h);
            }
            4..=6 => {
                let len = 2 + rng.below(4) as i64;
                let start = rng.below((HOURS - len + 1) as usize) as i64;
                s.run(start, start + len - 1);
            }
            7 | 8 => {
                let a = rng.below(HOURS as usize) as i64;
                let b = (a + 1 + rng.below(HOURS as usize - 1) as i64) % HOURS;
                s.run_two(a, b);
            }
            _ => {
                // An hour built again, whether or not its files changed.
                let h = s
                    .current
                    .iter()
                    .copied()
                    .nth(rng.below(s.current.len().max(1)))
                    .unwrap_or(0);
                s.run(h, h);
            }
        }
    }
    s.catch_up(Some(&mut rng));
    s
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: `{s}` is not a number"))
        })
        .collect()
}

#[test]
fn marts_equal_a_full_rebuild_whatever_the_order_of_arrivals_and_loads() {
    let seeds = env_list("ORCH_ARRIVAL_SEEDS", "1,2");
    let runs = env_list("ORCH_ARRIVAL_RUNS", "6")[0] as usize;
    // The full rebuild: eventsim's lake made final, materialized in one run.
    let reference = platform_project();
    reference
        .run(&[
            "eventsim",
            "--sink",
            "lake",
            "--users",
            "3000",
            "--session-interval",
            "86400",
            "--from",
            &key(0),
            "--to",
            EVENTSIM_TO,
            "--seed",
            "23",
        ])
        .expect_code(0);
    let lake = make_final_lake(&reference);
    reference
        .run(&[
            "materialize",
            "--select",
            "*",
            "--from",
            &key(0),
            "--to",
            &key(HOURS - 1),
        ])
        .expect_code(0);
    let want = snapshot(&reference);
    // The data is what the test needs: level periods that change, two days, many users.
    let periods = &want["core.dim_users"];
    let users: BTreeSet<String> = periods.iter().map(|r| r[2].to_string()).collect();
    assert!(
        periods.len() > users.len() && !lake.level_hours.is_empty(),
        "no level changes in the data ({} periods of {} users)",
        periods.len(),
        users.len()
    );
    assert!(
        want["marts.mart_top_songs"]
            .iter()
            .map(|r| r[1].to_string())
            .collect::<BTreeSet<_>>()
            .len()
            == 2,
        "two days of plays"
    );

    assert_eq!(unexplained_level_changes(&reference), 0, "the full rebuild");

    let mut s = issue_scenario(&lake);
    assert_same(&want, &snapshot(&s.project), &s.name, &s.log);
    assert_eq!(unexplained_level_changes(&s.project), 0, "{}", s.name);
    for seed in seeds {
        s = random_scenario(&lake, seed, runs);
        assert_same(&want, &snapshot(&s.project), &s.name, &s.log);
        assert_eq!(unexplained_level_changes(&s.project), 0, "{}", s.name);
    }
}
