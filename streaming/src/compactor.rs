//! The worker's compaction of closed hours: every `every`, in the background, the hours of the
//! topics whose partition 0 the worker holds (one worker per topic, most of the time; two at
//! once during a rebalance is safe, see [`orch_lake::compact`]) whose newest file is older than
//! `closed_after` are compacted.

use std::time::Instant;

use futures::FutureExt;

use orch_lake::{Compacted, Lake, Topic};
use tokio::task::JoinHandle;

use crate::config::CompactionConfig;
use crate::metrics::Metrics;

pub(crate) struct Compactor {
    config: Option<CompactionConfig>,
    lake: Lake,
    metrics: Metrics,
    running: Option<JoinHandle<()>>,
    last: Option<Instant>,
}

impl Compactor {
    pub fn new(config: Option<CompactionConfig>, lake: Lake, metrics: Metrics) -> Compactor {
        Compactor {
            config,
            lake,
            metrics,
            running: None,
            last: None,
        }
    }

    /// Starts a pass over `topics` when one is due and none is running.
    pub fn tick(&mut self, topics: &[Topic]) {
        let Some(config) = self.config else {
            return;
        };
        if self.running.as_ref().is_some_and(|r| r.is_finished()) {
            let finished = self.running.take().expect("a pass");
            if let Some(Err(e)) = finished.now_or_never() {
                // A panic in a pass is reported with what it was doing; the worker goes on.
                let error = crate::error::StreamError::task("compacting closed hours", e);
                tracing::error!(%error, "compaction pass failed");
            }
        }
        if topics.is_empty()
            || self.running.is_some()
            || self.last.is_some_and(|t| t.elapsed() < config.every)
        {
            return;
        }
        self.last = Some(Instant::now());
        let (lake, metrics, topics) = (self.lake.clone(), self.metrics.clone(), topics.to_vec());
        self.running = Some(tokio::spawn(async move {
            for topic in topics {
                if let Err(error) = compact_topic(&lake, &metrics, topic, config).await {
                    tracing::warn!(%error, topic = topic.as_str(), "compaction failed (tried again later)");
                }
            }
        }));
    }

    /// Stops a pass in progress: what it wrote and did not commit is never read, and removed by
    /// a later pass.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }
}

async fn compact_topic(
    lake: &Lake,
    metrics: &Metrics,
    topic: Topic,
    config: CompactionConfig,
) -> Result<(), orch_lake::LakeError> {
    let days = lake.list_raw_days(topic).await?;
    let recent = &days[days.len().saturating_sub(config.lookback_days as usize + 1)..];
    let hours = lake
        .hours_to_compact(topic, recent, config.closed_after, config.options)
        .await?;
    for hour in hours {
        match lake.compact_hour(topic, hour, config.options).await? {
            Compacted::Done {
                generation,
                inputs,
                outputs,
                rows,
            } => {
                metrics.compactions.inc();
                tracing::info!(
                    topic = topic.as_str(),
                    %hour,
                    generation,
                    inputs,
                    outputs,
                    rows,
                    "hour compacted"
                );
            }
            Compacted::Lost { generation } => {
                tracing::info!(topic = topic.as_str(), %hour, generation, "another compactor compacted this hour first");
            }
            Compacted::Nothing => {}
        }
    }
    Ok(())
}
