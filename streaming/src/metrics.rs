//! The worker's Prometheus metrics and the `/metrics` endpoint that serves them (Prometheus'
//! text format, served by axum).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AreaLabels {
    /// `raw` (Parquet) or `dlq` (dead letters).
    pub area: String,
}

/// Every metric of a worker process. Cheap to clone: metrics are shared handles.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub events_in: Family<TopicLabels, Counter>,
    pub redelivered: Counter,
    pub fenced: Counter,
    pub compactions: Counter,
    pub events_written: Family<TopicLabels, Counter>,
    pub dead_lettered: Family<TopicLabels, Counter>,
    pub bytes_written: Family<AreaLabels, Counter>,
    pub files_written: Family<AreaLabels, Counter>,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub partitions_held: Gauge,
    pub commits: Counter,
    pub write_errors: Counter,
    pub batch_write_seconds: Histogram,
    pub event_to_lake_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("orch_stream");
        let metrics = Metrics {
            registry: Arc::new(Registry::default()),
            events_in: Family::default(),
            redelivered: Counter::default(),
            fenced: Counter::default(),
            compactions: Counter::default(),
            events_written: Family::default(),
            dead_lettered: Family::default(),
            bytes_written: Family::default(),
            files_written: Family::default(),
            consumer_lag: Family::default(),
            partitions_held: Gauge::default(),
            commits: Counter::default(),
            write_errors: Counter::default(),
            // 5 ms to about 80 s.
            batch_write_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            event_to_lake_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
        };
        registry.register(
            "events_in",
            "Records read from the topics for the first time",
            metrics.events_in.clone(),
        );
        registry.register(
            "redelivered",
            "Records read again: already in the lake (after a rebalance or a restart) or \
             already read by this worker",
            metrics.redelivered.clone(),
        );
        registry.register(
            "fenced",
            "Batches dropped because another writer committed their offsets first",
            metrics.fenced.clone(),
        );
        registry.register(
            "compactions",
            "Hours compacted by this worker",
            metrics.compactions.clone(),
        );
        registry.register(
            "events_written",
            "Valid events written to the lake (raw area)",
            metrics.events_written.clone(),
        );
        registry.register(
            "dead_lettered",
            "Invalid records written to the dead-letter area",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "bytes_written",
            "Bytes of files written to the lake",
            metrics.bytes_written.clone(),
        );
        registry.register(
            "files_written",
            "Files written to the lake",
            metrics.files_written.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records behind the partition's end (high watermark minus committed offset)",
            metrics.consumer_lag.clone(),
        );
        registry.register(
            "partitions_held",
            "Partitions assigned to this worker",
            metrics.partitions_held.clone(),
        );
        registry.register(
            "commits",
            "Offset commits after durable writes",
            metrics.commits.clone(),
        );
        registry.register(
            "write_errors",
            "Failed attempts to write a batch to the lake (retried)",
            metrics.write_errors.clone(),
        );
        registry.register(
            "batch_write_seconds",
            "Time to write one closed batch to the lake",
            metrics.batch_write_seconds.clone(),
        );
        registry.register(
            "event_to_lake_seconds",
            "From a record's Kafka timestamp to its file being durable in the lake",
            metrics.event_to_lake_seconds.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..metrics
        }
    }

    /// Records written to the lake so far, valid or dead, over eventsim's topics.
    pub fn records_written(&self) -> u64 {
        orch_lake::Topic::ALL
            .iter()
            .map(|t| {
                let labels = TopicLabels {
                    topic: t.as_str().to_owned(),
                };
                self.events_written.get_or_create(&labels).get()
                    + self.dead_lettered.get_or_create(&labels).get()
            })
            .sum()
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }
}

/// Answers `GET /metrics` on `listener` with `metrics` (and `GET /healthz` with `ok`) until
/// `shutdown` fires.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            (StatusCode::NOT_FOUND, "not found: try /metrics\n").into_response()
        });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn metrics_are_served_until_shutdown() {
        let metrics = Metrics::new();
        metrics.redelivered.inc_by(3);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_metrics(listener, metrics, shutdown.clone()));
        let response = get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("application/openmetrics-text"),
            "{response}"
        );
        assert!(
            response.contains("orch_stream_redelivered_total 3"),
            "{response}"
        );
        assert!(
            response.contains("orch_stream_partitions_held"),
            "{response}"
        );
        assert!(get(addr, "/healthz").await.ends_with("ok\n"));
        let missing = get(addr, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
