//! The dashboards' data: a [`MartSource`] answers each [`Chart`] with rows read from the marts
//! (dbt's tables in the warehouse). The web crate does not know the warehouse: the binary hands
//! it a source. [`InMemoryMarts`] holds rows given to it (tests, demos); [`NoMarts`] says that
//! the marts are not built.

use std::collections::BTreeMap;
use std::sync::RwLock;

use async_trait::async_trait;
use serde::Serialize;

/// The dashboards, one per business question of the marts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Chart {
    /// `mart_top_songs`: plays per song.
    TopSongs,
    /// `mart_top_artists`: plays per artist.
    TopArtists,
    /// `mart_active_users`: active users per day.
    ActiveUsers,
    /// `mart_active_users`: stream hours per day.
    StreamHours,
    /// `mart_location_analytics`: plays per state.
    ListeningByLocation,
    /// `mart_listening_by_hour`: plays per hour of the day.
    ListeningByHour,
    /// `mart_listening_by_hour`: plays in each hour, over time (the hourly trend).
    HourlyPlays,
    /// `mart_user_demographics`: users per gender.
    Gender,
    /// `mart_user_demographics`: users per level (free, paid).
    Level,
    /// `mart_logins`: users who logged in, per period of the chosen grain.
    Logins,
    /// `mart_plays`: plays per period of the chosen grain.
    Plays,
    /// `mart_active_users`: active users per period of the chosen grain.
    ActiveUsersByPeriod,
    /// `mart_top_songs_by_period`: the latest period's top songs at the chosen grain.
    TopSongsInPeriod,
    /// `mart_top_artists_by_period`: the latest period's top artists at the chosen grain.
    TopArtistsInPeriod,
    /// `mart_locations_by_period`: the latest period's plays per state at the chosen grain.
    LocationsInPeriod,
    /// `mart_user_segments`: users per segment (new, casual, regular, power, dormant).
    Segments,
}

impl Chart {
    pub const ALL: [Chart; 9] = [
        Chart::TopSongs,
        Chart::TopArtists,
        Chart::ActiveUsers,
        Chart::StreamHours,
        Chart::ListeningByLocation,
        Chart::ListeningByHour,
        Chart::HourlyPlays,
        Chart::Gender,
        Chart::Level,
    ];

    /// The charts of the "by period" section, drawn at the grain the picker chooses.
    pub const BY_GRAIN: [Chart; 6] = [
        Chart::Logins,
        Chart::Plays,
        Chart::ActiveUsersByPeriod,
        Chart::TopSongsInPeriod,
        Chart::TopArtistsInPeriod,
        Chart::LocationsInPeriod,
    ];

    /// Every chart: [`Chart::ALL`], [`Chart::BY_GRAIN`] and the segments.
    pub fn every() -> impl Iterator<Item = Chart> {
        Chart::ALL
            .into_iter()
            .chain(Chart::BY_GRAIN)
            .chain([Chart::Segments])
    }

    pub fn name(self) -> &'static str {
        match self {
            Chart::TopSongs => "top_songs",
            Chart::TopArtists => "top_artists",
            Chart::ActiveUsers => "active_users",
            Chart::StreamHours => "stream_hours",
            Chart::ListeningByLocation => "listening_by_location",
            Chart::ListeningByHour => "listening_by_hour",
            Chart::HourlyPlays => "hourly_plays",
            Chart::Gender => "gender",
            Chart::Level => "level",
            Chart::Logins => "logins",
            Chart::Plays => "plays",
            Chart::ActiveUsersByPeriod => "active_users_by_period",
            Chart::TopSongsInPeriod => "top_songs_in_period",
            Chart::TopArtistsInPeriod => "top_artists_in_period",
            Chart::LocationsInPeriod => "locations_in_period",
            Chart::Segments => "segments",
        }
    }

    pub fn parse(s: &str) -> Option<Chart> {
        Chart::every().find(|c| c.name() == s)
    }

    pub fn title(self) -> &'static str {
        match self {
            Chart::TopSongs => "Top songs",
            Chart::TopArtists => "Top artists",
            Chart::ActiveUsers => "Active users per day",
            Chart::StreamHours => "Stream hours per day",
            Chart::ListeningByLocation => "Listening by location",
            Chart::ListeningByHour => "Listening by hour of day",
            Chart::HourlyPlays => "Plays per hour",
            Chart::Gender => "Users by gender",
            Chart::Level => "Users by level",
            Chart::Logins => "Users who logged in",
            Chart::Plays => "Plays",
            Chart::ActiveUsersByPeriod => "Active users",
            Chart::TopSongsInPeriod => "Top songs of the latest period",
            Chart::TopArtistsInPeriod => "Top artists of the latest period",
            Chart::LocationsInPeriod => "Plays by state, latest period",
            Chart::Segments => "Users by segment",
        }
    }

    /// What its values count, for the axis and the tooltip.
    pub fn value_name(self) -> &'static str {
        match self {
            Chart::TopSongs | Chart::TopArtists | Chart::ListeningByLocation => "plays",
            Chart::ListeningByHour | Chart::HourlyPlays => "plays",
            Chart::ActiveUsers | Chart::Gender | Chart::Level => "users",
            Chart::StreamHours => "stream hours",
            Chart::Plays
            | Chart::TopSongsInPeriod
            | Chart::TopArtistsInPeriod
            | Chart::LocationsInPeriod => "plays",
            Chart::Logins | Chart::ActiveUsersByPeriod | Chart::Segments => "users",
        }
    }

    /// How it is drawn.
    pub fn shape(self) -> Shape {
        match self {
            Chart::ActiveUsers
            | Chart::StreamHours
            | Chart::HourlyPlays
            | Chart::Logins
            | Chart::Plays
            | Chart::ActiveUsersByPeriod => Shape::Line,
            Chart::ListeningByHour => Shape::Columns,
            Chart::Gender | Chart::Level | Chart::Segments => Shape::Share,
            _ => Shape::Bars,
        }
    }

    /// The mart it reads.
    pub fn mart(self) -> &'static str {
        match self {
            Chart::TopSongs => "mart_top_songs",
            Chart::TopArtists => "mart_top_artists",
            Chart::ActiveUsers | Chart::StreamHours => "mart_active_users",
            Chart::ListeningByLocation => "mart_location_analytics",
            Chart::ListeningByHour | Chart::HourlyPlays => "mart_listening_by_hour",
            Chart::Gender | Chart::Level => "mart_user_demographics",
            Chart::Logins => "mart_logins",
            Chart::Plays => "mart_plays",
            Chart::ActiveUsersByPeriod => "mart_active_users",
            Chart::TopSongsInPeriod => "mart_top_songs_by_period",
            Chart::TopArtistsInPeriod => "mart_top_artists_by_period",
            Chart::LocationsInPeriod => "mart_locations_by_period",
            Chart::Segments => "mart_user_segments",
        }
    }
}

/// The grains of the time-series marts (their `grain` column), which the dashboards' grain
/// picker chooses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    Minute,
    Hour,
    #[default]
    Day,
    Week,
    Month,
    Year,
}

impl Grain {
    pub const ALL: [Grain; 6] = [
        Grain::Minute,
        Grain::Hour,
        Grain::Day,
        Grain::Week,
        Grain::Month,
        Grain::Year,
    ];

    /// The value of the marts' `grain` column.
    pub fn name(self) -> &'static str {
        match self {
            Grain::Minute => "minute",
            Grain::Hour => "hour",
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
            Grain::Year => "year",
        }
    }

    pub fn parse(s: &str) -> Option<Grain> {
        Grain::ALL.into_iter().find(|g| g.name() == s)
    }
}

/// How a chart is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Horizontal bars, largest first.
    Bars,
    /// Vertical columns in label order.
    Columns,
    /// A line over time.
    Line,
    /// One stacked bar of shares.
    Share,
}

/// A chart's rows: a label and a value each.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChartData {
    pub rows: Vec<(String, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum MartError {
    #[error(
        "the mart {mart} is not built yet: materialize it (orch materialize --select '{mart}')"
    )]
    NotBuilt { mart: String },
    #[error("cannot read the mart {mart}: {message}")]
    Query { mart: String, message: String },
}

/// Where the dashboards read the marts.
#[async_trait]
pub trait MartSource: Send + Sync + 'static {
    /// A chart at a grain (for [`Chart::BY_GRAIN`]; the others ignore it). Required, so that
    /// a source or a wrapper cannot drop the grain by forgetting it.
    async fn chart_at(&self, chart: Chart, grain: Grain) -> Result<ChartData, MartError>;

    /// A chart at the default grain.
    async fn chart(&self, chart: Chart) -> Result<ChartData, MartError> {
        self.chart_at(chart, Grain::default()).await
    }
}

/// Rows held in memory.
#[derive(Debug, Default)]
pub struct InMemoryMarts {
    charts: RwLock<BTreeMap<Chart, ChartData>>,
}

impl InMemoryMarts {
    pub fn new() -> InMemoryMarts {
        InMemoryMarts::default()
    }

    pub fn set(&self, chart: Chart, rows: Vec<(String, f64)>) {
        self.charts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(chart, ChartData { rows });
    }
}

#[async_trait]
impl MartSource for InMemoryMarts {
    /// The rows set for `chart`, whatever the grain.
    async fn chart_at(&self, chart: Chart, _grain: Grain) -> Result<ChartData, MartError> {
        self.charts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&chart)
            .cloned()
            .ok_or_else(|| MartError::NotBuilt {
                mart: chart.mart().to_owned(),
            })
    }
}

/// A source that answers a chart it cannot read now (the warehouse file held by a load or a
/// dbt build: DuckDB admits one process) with the rows it read last, so that a dashboard does
/// not fail while dbt writes. A mart that is not built stays an error. The last rows are kept
/// per chart and grain: a chart asked at a grain is read at that grain, and its fallback is
/// the rows last read at that grain.
pub struct LastGood {
    inner: std::sync::Arc<dyn MartSource>,
    last: RwLock<BTreeMap<(Chart, Grain), ChartData>>,
}

impl LastGood {
    pub fn new(inner: std::sync::Arc<dyn MartSource>) -> LastGood {
        LastGood {
            inner,
            last: RwLock::new(BTreeMap::new()),
        }
    }

    /// Keeps a successful read, or answers a failed one with the rows last read under `key`.
    fn remember(
        &self,
        key: (Chart, Grain),
        read: Result<ChartData, MartError>,
    ) -> Result<ChartData, MartError> {
        match read {
            Ok(data) => {
                self.last
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, data.clone());
                Ok(data)
            }
            Err(e @ MartError::Query { .. }) => {
                let last = self.last.read().unwrap_or_else(|e| e.into_inner());
                match last.get(&key) {
                    Some(data) => {
                        let (chart, grain) = key;
                        tracing::info!(
                            chart = chart.name(),
                            grain = grain.name(),
                            error = %e,
                            "serving the last rows read"
                        );
                        Ok(data.clone())
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl MartSource for LastGood {
    async fn chart_at(&self, chart: Chart, grain: Grain) -> Result<ChartData, MartError> {
        let read = self.inner.chart_at(chart, grain).await;
        self.remember((chart, grain), read)
    }
}

/// No warehouse connected: every chart says its mart is not built.
#[derive(Debug, Default)]
pub struct NoMarts;

#[async_trait]
impl MartSource for NoMarts {
    async fn chart_at(&self, chart: Chart, _grain: Grain) -> Result<ChartData, MartError> {
        Err(MartError::NotBuilt {
            mart: chart.mart().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Answers until `busy` is set, then fails as a locked warehouse does.
    struct Flaky {
        busy: AtomicBool,
    }

    #[async_trait]
    impl MartSource for Flaky {
        async fn chart_at(&self, chart: Chart, _grain: Grain) -> Result<ChartData, MartError> {
            if self.busy.load(Ordering::SeqCst) {
                return Err(MartError::Query {
                    mart: chart.mart().to_owned(),
                    message: "cannot open the warehouse: the file is locked".into(),
                });
            }
            Ok(ChartData {
                rows: vec![("a".into(), 1.0)],
            })
        }
    }

    #[tokio::test]
    async fn a_busy_warehouse_serves_the_last_rows() {
        let flaky = Arc::new(Flaky {
            busy: AtomicBool::new(true),
        });
        let marts = LastGood::new(flaky.clone());
        assert!(
            marts.chart(Chart::TopSongs).await.is_err(),
            "nothing read yet"
        );
        flaky.busy.store(false, Ordering::SeqCst);
        assert_eq!(marts.chart(Chart::TopSongs).await.unwrap().rows.len(), 1);
        flaky.busy.store(true, Ordering::SeqCst);
        assert_eq!(marts.chart(Chart::TopSongs).await.unwrap().rows.len(), 1);
    }

    /// Answers each grain with its own rows until `busy` is set, then fails as a locked
    /// warehouse does.
    struct PerGrain {
        busy: AtomicBool,
    }

    #[async_trait]
    impl MartSource for PerGrain {
        async fn chart_at(&self, chart: Chart, grain: Grain) -> Result<ChartData, MartError> {
            if self.busy.load(Ordering::SeqCst) {
                return Err(MartError::Query {
                    mart: chart.mart().to_owned(),
                    message: "cannot open the warehouse: the file is locked".into(),
                });
            }
            Ok(ChartData {
                rows: vec![(grain.name().into(), 1.0)],
            })
        }
    }

    fn label(data: ChartData) -> String {
        data.rows[0].0.clone()
    }

    #[tokio::test]
    async fn the_grain_reaches_the_source_and_its_last_rows_are_kept_per_grain() {
        let source = Arc::new(PerGrain {
            busy: AtomicBool::new(false),
        });
        let marts = LastGood::new(source.clone());
        for grain in Grain::ALL {
            let data = marts.chart_at(Chart::Plays, grain).await.unwrap();
            assert_eq!(label(data), grain.name());
        }
        assert_eq!(label(marts.chart(Chart::Plays).await.unwrap()), "day");
        source.busy.store(true, Ordering::SeqCst);
        for grain in [Grain::Minute, Grain::Hour, Grain::Year] {
            let data = marts.chart_at(Chart::Plays, grain).await.unwrap();
            assert_eq!(label(data), grain.name(), "the last rows of its own grain");
        }
        assert!(
            marts.chart_at(Chart::Logins, Grain::Hour).await.is_err(),
            "nothing read yet for that chart"
        );
    }
}
