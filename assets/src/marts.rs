//! The dashboards' data from the platform's warehouse: each chart is one query over a mart.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orch_warehouse::{DuckDbWarehouse, TableRef, Warehouse};
use orch_web::{Chart, ChartData, Grain, MartError, MartSource};

use crate::config::{PlatformConfig, WarehouseKind};

/// The marts in the project's warehouse.
#[derive(Debug)]
pub struct WarehouseMarts {
    warehouse: Arc<dyn Warehouse>,
}

impl WarehouseMarts {
    /// The marts of the project's DuckDB warehouse; a page waits at most a few seconds for a
    /// file that a load or a dbt build holds.
    pub fn for_platform(config: &PlatformConfig) -> Option<WarehouseMarts> {
        (config.warehouse == WarehouseKind::DuckDb).then(|| WarehouseMarts {
            warehouse: Arc::new(
                DuckDbWarehouse::new(&config.duckdb_path).lock_timeout(Duration::from_secs(3)),
            ),
        })
    }
}

/// How many periods a time-series chart shows at most (the latest ones).
const PERIODS: usize = 120;

/// The query behind a chart at a grain: a label and a value per row. The charts of
/// [`Chart::BY_GRAIN`] read the marts' `grain` column; the others ignore the grain.
fn sql_at(chart: Chart, grain: Grain) -> String {
    let g = grain.name();
    // The latest PERIODS periods, oldest first.
    let series = |mart: &str, value: &str| {
        format!(
            "select label, value from (select cast(period_start as varchar) as label, {value} as value, period_start \
             from marts.{mart} where grain = '{g}' order by period_start desc limit {PERIODS}) recent order by period_start"
        )
    };
    // The rows of the latest period.
    let latest = |mart: &str, label: &str, order: &str, limit: usize| {
        format!(
            "select {label} as label, plays as value from marts.{mart} \
             where grain = '{g}' and period_start = (select max(period_start) from marts.{mart} where grain = '{g}') \
             order by {order} limit {limit}"
        )
    };
    match chart {
        Chart::Logins => series("mart_logins", "users_logged_in"),
        Chart::Plays => series("mart_plays", "plays"),
        Chart::ActiveUsersByPeriod => series("mart_active_users", "active_users"),
        Chart::TopSongsInPeriod => latest(
            "mart_top_songs_by_period",
            "song || ' (' || artist || ')'",
            "rank_in_period",
            10,
        ),
        Chart::TopArtistsInPeriod => {
            latest("mart_top_artists_by_period", "artist", "rank_in_period", 10)
        }
        Chart::LocationsInPeriod => latest(
            "mart_locations_by_period",
            "coalesce(state, 'unknown')",
            "plays desc, state",
            15,
        ),
        Chart::Segments => {
            "select segment as label, count(*) as value from marts.mart_user_segments \
             group by 1 order by 1"
                .to_owned()
        }
        other => sql(other).to_owned(),
    }
}

/// The query behind a chart of [`Chart::ALL`]: a label and a value per row.
fn sql(chart: Chart) -> &'static str {
    match chart {
        Chart::TopSongs => {
            "select song || ' (' || artist || ')' as label, sum(plays) as value \
             from marts.mart_top_songs group by 1 order by 2 desc, 1 limit 10"
        }
        Chart::TopArtists => {
            "select artist as label, sum(plays) as value from marts.mart_top_artists \
             group by 1 order by 2 desc, 1 limit 10"
        }
        Chart::ActiveUsers => {
            "select cast(cast(period_start as date) as varchar) as label, active_users as value \
             from marts.mart_active_users where grain = 'day' order by period_start"
        }
        Chart::StreamHours => {
            "select cast(cast(period_start as date) as varchar) as label, stream_hours as value \
             from marts.mart_active_users where grain = 'day' order by period_start"
        }
        Chart::ListeningByLocation => {
            "select state as label, sum(plays) as value from marts.mart_location_analytics \
             group by 1 order by 2 desc, 1 limit 15"
        }
        Chart::ListeningByHour => {
            "select lpad(cast(hour_of_day as varchar), 2, '0') || ':00' as label, sum(plays) as value \
             from marts.mart_listening_by_hour group by hour_of_day order by hour_of_day"
        }
        Chart::HourlyPlays => {
            "select cast(date_key as varchar) || ' ' || lpad(cast(hour_of_day as varchar), 2, '0') || ':00' as label, \
             sum(plays) as value from marts.mart_listening_by_hour \
             group by date_key, hour_of_day order by date_key, hour_of_day"
        }
        Chart::Gender => {
            "select coalesce(gender, 'unknown') as label, sum(users) as value \
             from marts.mart_user_demographics where segment = 'all_active_users' \
             group by 1 order by 1"
        }
        Chart::Level => {
            "select coalesce(level, 'unknown') as label, sum(users) as value \
             from marts.mart_user_demographics where segment = 'all_active_users' \
             group by 1 order by 1"
        }
        // The charts at a grain: drawn by sql_at.
        Chart::Logins
        | Chart::Plays
        | Chart::ActiveUsersByPeriod
        | Chart::TopSongsInPeriod
        | Chart::TopArtistsInPeriod
        | Chart::LocationsInPeriod
        | Chart::Segments => "",
    }
}

#[async_trait]
impl MartSource for WarehouseMarts {
    async fn chart_at(&self, chart: Chart, grain: Grain) -> Result<ChartData, MartError> {
        let mart = chart.mart().to_owned();
        let table = TableRef::new("marts", &mart);
        let query_error = |e: orch_warehouse::WarehouseError| MartError::Query {
            mart: mart.clone(),
            message: e.to_string(),
        };
        // One query on the happy path; only a failed one asks whether the mart exists.
        let result = match self.warehouse.query(&sql_at(chart, grain)).await {
            Ok(result) => result,
            Err(e) => {
                return Err(match self.warehouse.row_count(&table).await {
                    Ok(None) => MartError::NotBuilt { mart: mart.clone() },
                    _ => query_error(e),
                });
            }
        };
        let rows = result
            .rows
            .into_iter()
            .map(|row| {
                let label = match row.first() {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let value = row
                    .get(1)
                    .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
                    .unwrap_or(0.0);
                (label, value)
            })
            .collect();
        Ok(ChartData { rows })
    }
}
