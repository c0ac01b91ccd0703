//! `GET /metrics`: Prometheus metrics of the web server (requests by route and status, their
//! durations), of the run history (runs by status, the queue's depth, heartbeat ages, the
//! latest ticks: read from the storage at each scrape), and, when the daemon runs in the same
//! process (`orch dev`), of the daemon. [`serve_metrics`] serves the same document alone, for
//! `orch daemon --metrics-addr`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use orch::metrics::{CONTENT_TYPE, DaemonMetrics, history_metrics, render};
use orch::storage::Storage;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route's pattern (`/runs/{run_id}`), never the path itself: one series per route.
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// The web server's own metrics.
#[derive(Debug)]
pub struct WebMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram>,
}

impl Default for WebMetrics {
    fn default() -> Self {
        WebMetrics::new()
    }
}

impl WebMetrics {
    pub fn new() -> WebMetrics {
        let mut registry = Registry::with_prefix("orch_web");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.1 ms to about 3 minutes (live tails of runs last as long as the run).
            Histogram::new(exponential_buckets(0.0001, 2.0, 22))
        });
        registry.register(
            "requests",
            "Requests answered, by method, route and status",
            requests.clone(),
        );
        registry.register(
            "request_seconds",
            "Time to answer a request, by route",
            request_seconds.clone(),
        );
        WebMetrics {
            registry,
            requests,
            request_seconds,
        }
    }
}

/// Counts and times every request that matched a route.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let began = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics
        .request_seconds
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(began.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

/// The names whose latest ticks are reported: schedules and sensors.
fn tick_names(state: &AppState) -> Vec<String> {
    state
        .schedules
        .iter()
        .map(|s| s.name.clone())
        .chain(state.sensors.iter().cloned())
        .collect()
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut own = vec![&state.metrics.registry];
    if let Some(daemon) = &state.daemon_metrics {
        own.push(daemon.registry());
    }
    scrape(state.storage.as_ref(), &tick_names(&state), &own).await
}

/// `own` registries and the run history's gauges as one document, or 503 if the run history
/// cannot be read.
async fn scrape(storage: &dyn Storage, tick_names: &[String], own: &[&Registry]) -> Response {
    match history_metrics(storage, tick_names, &[crate::STREAM_WORKER], Utc::now()).await {
        Ok(history) => {
            let mut all = own.to_vec();
            all.push(&history);
            ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&all)).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the run history");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the run history: {e}\n"),
            )
                .into_response()
        }
    }
}

/// Serves a daemon's metrics and the run history's on `listener` (`GET /metrics`, and `GET
/// /healthz` answering `ok`) until `shutdown` fires: `orch daemon --metrics-addr`. No token:
/// like the stream workers' endpoint, it shows counts and names, no run's data or logs.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    storage: Arc<dyn Storage>,
    daemon: DaemonMetrics,
    tick_names: Vec<String>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::routing::get;
    let tick_names = Arc::new(tick_names);
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let (storage, daemon, names) =
                    (storage.clone(), daemon.clone(), tick_names.clone());
                async move { scrape(storage.as_ref(), &names, &[daemon.registry()]).await }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
