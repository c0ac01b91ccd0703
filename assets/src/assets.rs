//! The platform's assets: the lake's raw hours, the hourly staging loads into the warehouse,
//! and the dbt project's models, every one partitioned by hour.
//!
//! ```text
//! raw/{topic} ──▶ staging/{topic} ──▶ stg_{topic} ──▶ fact_* / dim_* ──▶ mart_*
//!  (lake files      (warehouse load,    (dbt: staging,   core,             marts)
//!   observed)        idempotent)
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use orch::Definitions;
use orch::asset::{AssetsDefinition, asset};
use orch::automation::Condition;
use orch::config::Config;
use orch::context::{AssetContext, ComputeError, Materialization};
use orch::partitions::PartitionsDefinition;
use orch::{CheckResult, CheckSpec, Severity};
use orch_dbt::{DbtAssetOptions, DbtProject, DbtSource, Manifest, dbt_assets};
use orch_lake::{Hour, Lake, Topic, layout};
use orch_warehouse::{BigQueryConfig, BigQueryWarehouse, DuckDbWarehouse, Warehouse};

use crate::config::{PlatformConfig, WarehouseKind};
use crate::sensor::LakeFiles;
use crate::{DBT_POOL, WAREHOUSE_POOL};

/// The platform's assets and its late-file sensor, for the project described by `config`.
pub fn definitions(config: &Config, settings: &PlatformConfig) -> Result<Definitions, String> {
    let partitions = PartitionsDefinition::hourly(&settings.start, "UTC")
        .map_err(|e| format!("platform.start `{}`: {e}", settings.start))?;
    let lake = Arc::new(Lake::open(&settings.lake).map_err(|e| e.to_string())?);
    let warehouse: Arc<dyn Warehouse> = match settings.warehouse {
        WarehouseKind::DuckDb => Arc::new(DuckDbWarehouse::new(&settings.duckdb_path)),
        WarehouseKind::BigQuery => Arc::new(BigQueryWarehouse::new(
            BigQueryConfig::from_env().map_err(|e| format!("platform.warehouse bigquery: {e}"))?,
        )),
    };
    let dbt = dbt_project(config, settings)?;
    let mut defs = Definitions::new();
    for topic in Topic::ALL {
        defs = defs.asset(raw_asset(topic, &partitions, Arc::clone(&lake))?);
        let mut staging = staging_asset(
            topic,
            &partitions,
            Arc::clone(&lake),
            Arc::clone(&warehouse),
        )?;
        // The dbt source's freshness, as a check on the asset that loads the table.
        let source = dbt.as_ref().and_then(|(_, manifest)| {
            manifest
                .sources
                .values()
                .find(|s| s.orch_asset.as_deref() == Some(&format!("staging/{topic}")))
        });
        if let Some(check) = source.and_then(|s| freshness_check(s, topic, Arc::clone(&warehouse)))
        {
            for spec in &mut staging.specs {
                spec.checks.push(check.clone());
            }
        }
        if settings.automation {
            for spec in &mut staging.specs {
                spec.automation = Some(staging_condition(settings.warehouse));
            }
        }
        defs = defs.asset(staging);
    }
    if let Some(mut dbt) = dbt_definition(dbt, settings, &partitions, warehouse.kind())? {
        if settings.automation {
            for spec in &mut dbt.specs {
                spec.automation = Some(Condition::eager());
            }
        }
        defs = defs.asset(dbt);
    }
    // Late events: files that change for an hour already loaded re-materialize that hour of
    // the raw asset and everything downstream, on a local folder, GCS or S3 alike.
    // With automation, the sensor observes every hour's files (new hours and the current one
    // as it grows) and materializes only the raw assets of that hour; staging and dbt follow by
    // their conditions.
    let mut sensor = LakeFiles::sensor("lake_late_files", Arc::clone(&lake))
        .interval(Duration::from_secs(settings.sensor_interval_secs))
        .lookback_hours(settings.late_files_lookback_hours);
    if settings.automation {
        // Every topic's raw hour, so that a topic without events in that hour is observed
        // (empty) rather than missing, which would hold back every model that reads it.
        sensor = sensor.new_hours(true).selection_template("group:raw");
    }
    defs = defs.sensor(Arc::new(sensor));
    Ok(defs)
}

/// When a staging load runs: as soon as its hour's files change. On BigQuery, at most once
/// in five minutes per hour, since each load job counts against the table's daily limit of
/// modifications (ARCHITECTURE.md, "Capacity").
fn staging_condition(warehouse: WarehouseKind) -> Condition {
    match warehouse {
        WarehouseKind::DuckDb => Condition::eager(),
        WarehouseKind::BigQuery => {
            Condition::eager() & !Condition::UpdatedWithin(Duration::from_secs(300))
        }
    }
}

/// The hour a step covers.
fn step_hour(ctx: &AssetContext) -> Result<Hour, ComputeError> {
    let window = ctx
        .partition_window()
        .ok_or_else(|| ComputeError::fatal("the step has no hourly partition"))?;
    Ok(Hour::containing(window.start))
}

/// `raw/{topic}`: which files the lake holds for an hour, their rows and bytes.
fn raw_asset(
    topic: Topic,
    partitions: &PartitionsDefinition,
    lake: Arc<Lake>,
) -> Result<AssetsDefinition, String> {
    asset(&format!("raw/{topic}"))
        .group("raw")
        .kind("lake")
        .kind("parquet")
        .partitions(partitions.clone())
        .description(&format!(
            "The {topic} events of an hour in the lake (raw/{topic}/date=.../hour=.../*.parquet), as eventsim or the streaming workers wrote them: observed, not computed."
        ))
        .compute(move |ctx: AssetContext| {
            let lake = Arc::clone(&lake);
            async move {
                let hour = step_hour(&ctx)?;
                let files = lake.list_files(topic, hour).await?;
                let mut rows = 0;
                for file in &files {
                    rows += lake.parquet_rows(&file.path).await?;
                }
                let bytes: u64 = files.iter().map(|f| f.size).sum();
                if files.is_empty() {
                    ctx.log().warn(format!(
                        "no {topic} files for {} in the lake yet",
                        hour.start().format("%Y-%m-%d %H:00")
                    ));
                }
                Ok(Materialization::new()
                    .row_count(rows)
                    .bytes(bytes)
                    .meta("files", files.len())
                    .meta(
                        "uri",
                        lake.uri(&layout::raw_hour_dir(topic, hour)).as_str(),
                    ))
            }
        })
        .map_err(|e| e.to_string())
}

/// `staging/{topic}`: the hour loaded into the warehouse's raw table, replacing that hour.
fn staging_asset(
    topic: Topic,
    partitions: &PartitionsDefinition,
    lake: Arc<Lake>,
    warehouse: Arc<dyn Warehouse>,
) -> Result<AssetsDefinition, String> {
    let table = warehouse.raw_table(topic);
    asset(&format!("staging/{topic}"))
        .deps([format!("raw/{topic}")])
        .group("staging")
        .kind(warehouse.kind())
        .pool(WAREHOUSE_POOL)
        .partitions(partitions.clone())
        .description(&format!(
            "The hour's {topic} events loaded into {table}: a reload replaces the hour, rows with the same event id or source position count once."
        ))
        .compute(move |ctx: AssetContext| {
            let lake = Arc::clone(&lake);
            let warehouse = Arc::clone(&warehouse);
            async move {
                let hour = step_hour(&ctx)?;
                let report = warehouse.load_hour(&lake, topic, hour).await?;
                ctx.log().info(format!(
                    "loaded {} rows of {} from {} file(s) into {} ({} replaced, {} duplicates dropped)",
                    report.rows, report.hour, report.files, report.table, report.replaced, report.duplicates
                ));
                Ok(Materialization::new()
                    .row_count(report.rows)
                    .bytes(report.bytes)
                    .meta("files", report.files)
                    .meta("duplicates", report.duplicates)
                    .meta("replaced", report.replaced)
                    .meta("table", report.table.to_string()))
            }
        })
        .map_err(|e| e.to_string())
}

/// The dbt project and its manifest, when the project has one.
fn dbt_project(
    config: &Config,
    settings: &PlatformConfig,
) -> Result<Option<(Arc<DbtProject>, Manifest)>, String> {
    let dir = &settings.dbt_project;
    if !dir.join("dbt_project.yml").is_file() {
        if settings.dbt_project_set {
            return Err(format!(
                "platform.dbt_project: no dbt_project.yml in {}",
                dir.display()
            ));
        }
        return Ok(None);
    }
    let mut project = DbtProject::new(dir, &config.state_dir.join("dbt"))
        .target(settings.dbt_target.clone())
        .env(
            "ORCH_DUCKDB_PATH",
            settings.duckdb_path.display().to_string(),
        );
    project = match (&settings.dbt_executable, installer(&config.root)) {
        (Some(dbt), _) => project.executable(dbt),
        (None, Some(script)) => project.installer(script),
        (None, None) => project,
    };
    let manifest = project.manifest()?;
    Ok(Some((Arc::new(project), manifest)))
}

/// The dbt project's models as assets, when the project has one.
fn dbt_definition(
    dbt: Option<(Arc<DbtProject>, Manifest)>,
    settings: &PlatformConfig,
    partitions: &PartitionsDefinition,
    warehouse_kind: &str,
) -> Result<Option<AssetsDefinition>, String> {
    let Some((project, manifest)) = dbt else {
        return Ok(None);
    };
    let pool = match settings.warehouse {
        WarehouseKind::BigQuery => DBT_POOL,
        WarehouseKind::DuckDb => WAREHOUSE_POOL,
    };
    let options = DbtAssetOptions {
        partitions: Some(partitions.clone()),
        pool: Some(pool.to_owned()),
        kinds: vec![warehouse_kind.to_owned()],
    };
    dbt_assets(project, &manifest, &options).map(Some)
}

/// The check `freshness` on `staging/{topic}`, from the dbt source's `loaded_at_field` and
/// `freshness` (sources.yml), evaluated after every load like `dbt source freshness`: the age
/// of the table's newest `loaded_at_field` (the whole table, not the hour loaded) against
/// `warn_after` (a warning) and `error_after` (an error). Not blocking: a stale source says
/// so on the asset without holding back the models.
fn freshness_check(
    source: &DbtSource,
    topic: Topic,
    warehouse: Arc<dyn Warehouse>,
) -> Option<CheckSpec> {
    let field = source.loaded_at_field.clone()?;
    if source.warn_after_secs.is_none() && source.error_after_secs.is_none() {
        return None;
    }
    let (warn, error) = (source.warn_after_secs, source.error_after_secs);
    let limits = [("warn", warn), ("error", error)]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} after {}", human_secs(v))))
        .collect::<Vec<_>>()
        .join(", ");
    let description = format!(
        "dbt source freshness of {}.{}: the newest {field} ({limits})",
        source.source_name, source.name
    );
    Some(
        CheckSpec::new("freshness")
            .severity(if error.is_some() {
                Severity::Error
            } else {
                Severity::Warn
            })
            .description(description)
            .evaluate(move |_ctx, _metadata| {
                let warehouse = Arc::clone(&warehouse);
                let field = field.clone();
                async move {
                    let table = warehouse.raw_table(topic);
                    let sql = match warehouse.kind() {
                        "bigquery" => format!("select unix_seconds(max({field})) from {table}"),
                        _ => format!("select cast(epoch(max({field})) as bigint) from {table}"),
                    };
                    // A table the loads have not created yet is not fresh either: a
                    // warning, not a failed step.
                    let rows = match warehouse.query(&sql).await {
                        Ok(result) => result.rows,
                        Err(e) => {
                            return Ok(CheckResult::new("freshness", false)
                                .severity(Severity::Warn)
                                .description(format!("cannot read {table}: {e}")));
                        }
                    };
                    let newest = rows
                        .first()
                        .and_then(|r| r.first())
                        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
                    let now = chrono::Utc::now().timestamp();
                    Ok(freshness_result(newest.map(|t| now - t), warn, error))
                }
            }),
    )
}

/// The freshness check's result for the newest row's age (`None`: the table is empty).
fn freshness_result(age_secs: Option<i64>, warn: Option<u64>, error: Option<u64>) -> CheckResult {
    let Some(age) = age_secs else {
        return CheckResult::new("freshness", false)
            .severity(Severity::Warn)
            .description("no rows loaded yet");
    };
    let over = |limit: Option<u64>| limit.is_some_and(|l| age > l as i64);
    let result = if over(error) {
        CheckResult::new("freshness", false)
            .severity(Severity::Error)
            .description(format!(
                "the newest row is {} old: more than error_after ({})",
                human_secs(age.max(0) as u64),
                human_secs(error.unwrap_or_default())
            ))
    } else if over(warn) {
        CheckResult::new("freshness", false)
            .severity(Severity::Warn)
            .description(format!(
                "the newest row is {} old: more than warn_after ({})",
                human_secs(age.max(0) as u64),
                human_secs(warn.unwrap_or_default())
            ))
    } else {
        CheckResult::new("freshness", true)
    };
    result.meta("age_secs", age)
}

/// `2 h`, `45 min`, `3 d`.
fn human_secs(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s >= 3600 => format!("{:.1} h", s as f64 / 3600.0).replace(".0 h", " h"),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The script that installs dbt into orch's venv, when the project has it.
fn installer(root: &Path) -> Option<std::path::PathBuf> {
    let script = root.join("scripts/dbt-venv");
    script.is_file().then_some(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_levels() {
        let (warn, error) = (Some(7200), Some(6 * 3600));
        let fresh = freshness_result(Some(60), warn, error);
        assert!(fresh.passed);
        let late = freshness_result(Some(3 * 3600), warn, error);
        assert!(!late.passed);
        assert_eq!(late.severity, Some(Severity::Warn));
        assert!(
            late.description
                .as_deref()
                .unwrap()
                .contains("warn_after (2 h)")
        );
        let stale = freshness_result(Some(7 * 3600), warn, error);
        assert_eq!(
            (stale.passed, stale.severity),
            (false, Some(Severity::Error))
        );
        assert!(stale.description.as_deref().unwrap().contains("7 h old"));
        let empty = freshness_result(None, warn, error);
        assert_eq!(
            (empty.passed, empty.severity),
            (false, Some(Severity::Warn))
        );
    }
}
