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
    /// `mart_user_demographics`: users per gender.
    Gender,
    /// `mart_user_demographics`: users per level (free, paid).
    Level,
}

impl Chart {
    pub const ALL: [Chart; 8] = [
        Chart::TopSongs,
        Chart::TopArtists,
        Chart::ActiveUsers,
        Chart::StreamHours,
        Chart::ListeningByLocation,
        Chart::ListeningByHour,
        Chart::Gender,
        Chart::Level,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Chart::TopSongs => "top_songs",
            Chart::TopArtists => "top_artists",
            Chart::ActiveUsers => "active_users",
            Chart::StreamHours => "stream_hours",
            Chart::ListeningByLocation => "listening_by_location",
            Chart::ListeningByHour => "listening_by_hour",
            Chart::Gender => "gender",
            Chart::Level => "level",
        }
    }

    pub fn parse(s: &str) -> Option<Chart> {
        Chart::ALL.into_iter().find(|c| c.name() == s)
    }

    pub fn title(self) -> &'static str {
        match self {
            Chart::TopSongs => "Top songs",
            Chart::TopArtists => "Top artists",
            Chart::ActiveUsers => "Active users per day",
            Chart::StreamHours => "Stream hours per day",
            Chart::ListeningByLocation => "Listening by location",
            Chart::ListeningByHour => "Listening by hour of day",
            Chart::Gender => "Users by gender",
            Chart::Level => "Users by level",
        }
    }

    /// What its values count, for the axis and the tooltip.
    pub fn value_name(self) -> &'static str {
        match self {
            Chart::TopSongs | Chart::TopArtists | Chart::ListeningByLocation => "plays",
            Chart::ListeningByHour => "plays",
            Chart::ActiveUsers | Chart::Gender | Chart::Level => "users",
            Chart::StreamHours => "stream hours",
        }
    }

    /// How it is drawn.
    pub fn shape(self) -> Shape {
        match self {
            Chart::ActiveUsers | Chart::StreamHours => Shape::Line,
            Chart::ListeningByHour => Shape::Columns,
            Chart::Gender | Chart::Level => Shape::Share,
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
            Chart::ListeningByHour => "mart_listening_by_hour",
            Chart::Gender | Chart::Level => "mart_user_demographics",
        }
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
    async fn chart(&self, chart: Chart) -> Result<ChartData, MartError>;
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
    async fn chart(&self, chart: Chart) -> Result<ChartData, MartError> {
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

/// No warehouse connected: every chart says its mart is not built.
#[derive(Debug, Default)]
pub struct NoMarts;

#[async_trait]
impl MartSource for NoMarts {
    async fn chart(&self, chart: Chart) -> Result<ChartData, MartError> {
        Err(MartError::NotBuilt {
            mart: chart.mart().to_owned(),
        })
    }
}
