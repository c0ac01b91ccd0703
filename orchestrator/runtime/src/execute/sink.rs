//! The event sink: a writer task that stores events and log lines as they happen, in batches.
//!
//! Steps hand events to the sink without waiting; the writer takes whatever has accumulated
//! while its previous write was in flight and stores it in one transaction (group commit).
//! So a quiet run writes each event at once, and a busy one (a thousand no-op steps) writes
//! a few large batches instead of thousands of small ones. `flush` waits until everything
//! handed over before it is stored.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::event::{Event, LogLine};
use crate::storage::Storage;

/// Called for every event as it is handed to the sink (the CLI's progress display).
pub type EventObserver = Arc<dyn Fn(&Event) + Send + Sync>;

enum Message {
    Event(Box<Event>),
    Log(LogLine),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// A handle on the writer task. Cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Message>,
    observers: Arc<Vec<EventObserver>>,
}

/// Most rows one write takes, so that a transaction stays small.
const MAX_BATCH: usize = 2000;

impl EventSink {
    /// Starts the writer task on `storage`. The task ends when every handle is dropped, after
    /// storing what it holds; its result says whether any write failed for good.
    pub fn spawn(
        storage: Arc<dyn Storage>,
        observers: Vec<EventObserver>,
    ) -> (EventSink, JoinHandle<Result<(), String>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(writer(storage, rx));
        (
            EventSink {
                tx,
                observers: Arc::new(observers),
            },
            handle,
        )
    }

    /// Hands an event over to be stored.
    pub fn event(&self, event: Event) {
        for observer in self.observers.iter() {
            observer(&event);
        }
        // The writer only stops once every sender is gone, so this cannot fail while `self`
        // exists.
        let _ = self.tx.send(Message::Event(Box::new(event)));
    }

    /// Hands a log line over to be stored.
    pub fn log(&self, line: LogLine) {
        let _ = self.tx.send(Message::Log(line));
    }

    /// Waits until everything handed over so far is stored. Fails if a write failed for good.
    pub async fn flush(&self) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Message::Flush(done))
            .map_err(|_| "the event writer has stopped".to_owned())?;
        wait.await
            .map_err(|_| "the event writer has stopped".to_owned())?
    }
}

async fn writer(
    storage: Arc<dyn Storage>,
    mut rx: mpsc::UnboundedReceiver<Message>,
) -> Result<(), String> {
    let mut failure: Option<String> = None;
    let mut events = Vec::new();
    let mut logs = Vec::new();
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(e) => events.push(*e),
                Message::Log(l) => logs.push(l),
                Message::Flush(done) => flushes.push(done),
            }
            if events.len() + logs.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !events.is_empty() {
            if let Err(e) = with_retries(|| storage.append_events(&events)).await {
                tracing::error!(error = %e, count = events.len(), "cannot store events");
                failure.get_or_insert(format!("cannot store events: {e}"));
            }
            events.clear();
        }
        if !logs.is_empty() {
            if let Err(e) = with_retries(|| storage.append_logs(&logs)).await {
                tracing::error!(error = %e, count = logs.len(), "cannot store step logs");
                failure.get_or_insert(format!("cannot store step logs: {e}"));
            }
            logs.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(match &failure {
                Some(f) => Err(f.clone()),
                None => Ok(()),
            });
        }
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// Retries a write a few times over about two seconds, for a database that blips.
async fn with_retries<'a, F, Fut>(mut write: F) -> crate::storage::Result<()>
where
    F: FnMut() -> Fut + 'a,
    Fut: std::future::Future<Output = crate::storage::Result<()>> + 'a,
{
    let mut delay = Duration::from_millis(50);
    let mut tries = 0;
    loop {
        match write().await {
            Ok(()) => return Ok(()),
            Err(e) if tries < 5 => {
                tracing::warn!(error = %e, "run-history write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
