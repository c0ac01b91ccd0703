//! orch's web UI and JSON API (`orch web`, and the UI of `orch dev`): axum routes over the run
//! history and the asset graph, askama templates, htmx and a little hand-written JS served from
//! the binary. Only this crate knows HTTP.
//!
//! [`router`] builds the whole application from an [`AppState`]; [`serve`] runs it on a
//! listener until a shutdown token fires; [`check_bind`] refuses a non-loopback address without
//! a token. Pages and the API share the views of `views.rs`.

mod actions;
mod api;
mod charts;
mod error;
mod lineage;
pub mod marts;
mod metrics;
mod openapi;
mod pages;
mod security;
mod views;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use orch::AssetGraph;
use orch::daemon::ScheduleDefinition;
use orch::storage::Storage;
use tokio_util::sync::CancellationToken;

pub use error::WebError;
pub use marts::{Chart, ChartData, Grain, InMemoryMarts, LastGood, MartError, MartSource, NoMarts};
pub use metrics::{WebMetrics, serve_metrics};
pub use security::Security;
pub use views::{STREAM_WORKER, StreamWorkerDetail, WorkerView};

/// The environment variable holding the token that write actions need when the server is
/// bound to a non-loopback address.
pub const TOKEN_ENV: &str = "ORCH_WEB_TOKEN";

/// The environment variable holding an optional read-only token: it opens every page and the
/// API's reads, never a write.
pub const READ_TOKEN_ENV: &str = "ORCH_WEB_READ_TOKEN";

/// The environment variable listing more host names the server answers to (comma separated),
/// beside `localhost`, the loopback addresses and the bound address.
pub const ALLOWED_HOSTS_ENV: &str = "ORCH_WEB_ALLOWED_HOSTS";

/// Everything the handlers read: the run history, the definitions, the marts.
#[derive(Clone)]
pub struct AppState {
    pub storage: Arc<dyn Storage>,
    pub graph: Arc<AssetGraph>,
    pub schedules: Arc<Vec<ScheduleDefinition>>,
    /// The sensors' names, whose ticks the schedules page shows.
    pub sensors: Arc<Vec<String>>,
    pub marts: Arc<dyn MartSource>,
    pub security: Arc<Security>,
    /// The most partitions one materialization or backfill range may cover.
    pub max_range_partitions: usize,
    /// A backfill of more runs than this needs `confirm`.
    pub confirm_runs_above: usize,
    /// The server's own metrics (`/metrics`).
    pub metrics: Arc<WebMetrics>,
    /// The daemon's metrics, when it runs in this process (`orch dev`).
    pub daemon_metrics: Option<orch::metrics::DaemonMetrics>,
}

impl AppState {
    pub fn new(
        storage: Arc<dyn Storage>,
        graph: Arc<AssetGraph>,
        schedules: Vec<ScheduleDefinition>,
        marts: Arc<dyn MartSource>,
        security: Security,
    ) -> AppState {
        AppState {
            storage,
            graph,
            schedules: Arc::new(schedules),
            sensors: Arc::new(Vec::new()),
            marts: Arc::new(marts::LastGood::new(marts)),
            security: Arc::new(security),
            max_range_partitions: orch::partitions::DEFAULT_MAX_RANGE_PARTITIONS,
            confirm_runs_above: orch::config::Limits::default().confirm_runs_above,
            metrics: Arc::new(WebMetrics::new()),
            daemon_metrics: None,
        }
    }

    /// Adds the metrics of a daemon running in this process to `/metrics`.
    pub fn with_daemon_metrics(mut self, metrics: orch::metrics::DaemonMetrics) -> AppState {
        self.daemon_metrics = Some(metrics);
        self
    }

    /// The limit on a range's partitions (`[limits] max_range_partitions` of `orch.toml`).
    pub fn with_max_range_partitions(mut self, max: usize) -> AppState {
        self.max_range_partitions = max;
        self
    }

    /// How many runs a backfill may queue without `confirm` (`[limits] confirm_runs_above`).
    pub fn with_confirm_runs_above(mut self, runs: usize) -> AppState {
        self.confirm_runs_above = runs;
        self
    }

    /// The sensors the daemons evaluate (their ticks, with each request's reason, show under
    /// the schedules).
    pub fn with_sensors(mut self, names: Vec<String>) -> AppState {
        self.sensors = Arc::new(names);
        self
    }
}

/// Why the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "refusing to serve on {addr} without a token: a non-loopback address exposes write actions to the network; set {TOKEN_ENV} to a secret (at least 16 characters), or bind to 127.0.0.1"
    )]
    TokenRequired { addr: SocketAddr },
    #[error("{TOKEN_ENV} is too short: use at least 16 characters")]
    TokenTooShort,
}

/// Checks that the server may listen on `addr`: a loopback address needs nothing, any other
/// needs a token of at least 16 characters.
pub fn check_bind(addr: SocketAddr, token: Option<&str>) -> Result<(), BindError> {
    match token {
        Some(t) if t.len() < 16 => Err(BindError::TokenTooShort),
        Some(_) => Ok(()),
        None if addr.ip().is_loopback() => Ok(()),
        None => Err(BindError::TokenRequired { addr }),
    }
}

/// The whole application: pages, actions, the JSON API, static files.
pub fn router(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/runs", get(pages::runs))
        .route("/runs/{run_id}", get(pages::run))
        .route("/runs/{run_id}/stream", get(pages::run_stream))
        .route("/runs/{run_id}/gantt", get(pages::run_gantt))
        .route("/runs/{run_id}/live", get(pages::run_live))
        .route("/runs/{run_id}/cancel", post(actions::cancel_form))
        .route("/runs/{run_id}/reexecute", post(actions::reexecute_form))
        .route("/assets", get(pages::assets))
        .route("/assets/{*key}", get(pages::asset))
        .route("/lineage", get(pages::lineage))
        .route("/schedules", get(pages::schedules))
        .route(
            "/schedules/{name}/toggle",
            post(actions::toggle_schedule_form),
        )
        .route("/backfills", get(pages::backfills))
        .route("/backfills/{id}", get(pages::backfill))
        .route("/workers", get(pages::workers))
        .route("/dashboards", get(pages::dashboards))
        .route("/materialize", post(actions::materialize_form))
        .route("/backfill", post(actions::backfill_form))
        .route("/login", get(pages::login).post(actions::login_form))
        .route("/static/{file}", get(pages::static_file))
        .route("/metrics", get(metrics::metrics));
    let api = Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/overview", get(api::overview))
        .route("/runs", get(api::runs).post(api::materialize))
        .route("/runs/{run_id}", get(api::run))
        .route("/runs/{run_id}/events", get(api::run_events))
        .route("/runs/{run_id}/logs", get(api::run_logs))
        .route("/runs/{run_id}/cancel", post(api::cancel))
        .route("/runs/{run_id}/reexecute", post(api::reexecute))
        .route("/assets", get(api::assets))
        .route("/assets/{*key}", get(api::asset))
        .route("/lineage", get(api::lineage))
        .route("/schedules", get(api::schedules))
        .route("/schedules/{name}", post(api::set_schedule))
        .route("/backfills", get(api::backfills).post(api::create_backfill))
        .route("/backfills/{id}", get(api::backfill))
        .route("/stream-workers", get(api::workers))
        .route("/marts/{chart}", get(api::mart))
        .fallback(api::not_found);
    pages
        .nest("/api/v1", api)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::gate,
        ))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(state)
}

/// How long requests in flight get to finish once the server is told to stop (live tails of
/// runs never finish on their own).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Serves `router(state)` on `listener` until `shutdown` fires: it stops accepting at once and
/// returns when the requests in flight are done, or after [`SHUTDOWN_GRACE`] at the latest,
/// dropping (so cancelling) whatever still runs. A request whose client goes away is dropped
/// by the server as soon as the connection is seen closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stop = shutdown.clone();
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stop.cancelled().await });
    tokio::select! {
        result = server.into_future() => result,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}: dropped");
            Ok(())
        }
    }
}
