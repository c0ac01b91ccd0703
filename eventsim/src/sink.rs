//! Where events go. A [`Sink`] takes events one at a time, in timestamp order, and may
//! buffer them as it likes until [`Sink::flush`]; the runner flushes before it waits (in
//! real-time mode) and at the end. This crate has a JSON-lines sink (one file per topic, for
//! tests and debugging), a counting sink and an in-memory one; the lake and Kafka sinks
//! implement the same trait elsewhere (the Kafka sink keys each record by
//! [`Event::event_id`], the lake sink writes it as a column).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use crate::event::{Event, Topic};

/// A sink's failure.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialize an event: {0}")]
    Serialize(#[from] serde_json::Error),
    /// Any other sink's failure (a broker, an object store), with its message.
    #[error("{0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl SinkError {
    pub fn other(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SinkError {
        SinkError::Other(error.into())
    }

    fn io(path: &Path, source: std::io::Error) -> SinkError {
        SinkError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Takes the simulation's events.
#[async_trait]
pub trait Sink: Send {
    /// Takes one event. Events come in timestamp order.
    async fn send(&mut self, event: &Event) -> Result<(), SinkError>;

    /// Makes everything sent so far durable or visible (written out, acknowledged).
    async fn flush(&mut self) -> Result<(), SinkError>;
}

#[async_trait]
impl<S: Sink + ?Sized> Sink for Box<S> {
    async fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        (**self).send(event).await
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        (**self).flush().await
    }
}

#[async_trait]
impl<S: Sink + ?Sized> Sink for &mut S {
    async fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        (**self).send(event).await
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        (**self).flush().await
    }
}

/// One JSON-lines file per topic in a folder, `{topic}.jsonl`, as eventsim writes its
/// output folder (it names the files after the topics, without an extension).
pub struct JsonlSink {
    dir: PathBuf,
    files: Vec<(PathBuf, tokio::io::BufWriter<tokio::fs::File>)>,
    line: Vec<u8>,
}

impl JsonlSink {
    /// Creates the folder if needed and the four files, replacing files of an earlier run.
    pub async fn create(dir: impl AsRef<Path>) -> Result<JsonlSink, SinkError> {
        let dir = dir.as_ref().to_owned();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| SinkError::io(&dir, e))?;
        let mut files = Vec::with_capacity(Topic::ALL.len());
        for topic in Topic::ALL {
            let path = Self::path_in(&dir, topic);
            let file = tokio::fs::File::create(&path)
                .await
                .map_err(|e| SinkError::io(&path, e))?;
            files.push((path, tokio::io::BufWriter::with_capacity(1 << 18, file)));
        }
        Ok(JsonlSink {
            dir,
            files,
            line: Vec::with_capacity(1024),
        })
    }

    /// The file a topic's events go to in `dir`.
    pub fn path_in(dir: &Path, topic: Topic) -> PathBuf {
        dir.join(format!("{}.jsonl", topic.name()))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Sink for JsonlSink {
    async fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        self.line.clear();
        event.write_json(&mut self.line)?;
        self.line.push(b'\n');
        let (path, file) = &mut self.files[event.topic().index()];
        file.write_all(&self.line)
            .await
            .map_err(|e| SinkError::io(path, e))
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        for (path, file) in &mut self.files {
            file.flush().await.map_err(|e| SinkError::io(path, e))?;
        }
        Ok(())
    }
}

/// Counts events per topic and writes nothing: for benchmarks and dry runs.
#[derive(Debug, Default, Clone)]
pub struct CountingSink {
    counts: [u64; 4],
}

impl CountingSink {
    pub fn new() -> CountingSink {
        CountingSink::default()
    }

    pub fn count(&self, topic: Topic) -> u64 {
        self.counts[topic.index()]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[async_trait]
impl Sink for CountingSink {
    async fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        self.counts[event.topic().index()] += 1;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Keeps the events in memory: for tests.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    pub events: Vec<Event>,
    /// How many events had been sent at each flush.
    pub flushes: Vec<usize>,
}

#[async_trait]
impl Sink for MemorySink {
    async fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        self.events.push(event.clone());
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.flushes.push(self.events.len());
        Ok(())
    }
}
