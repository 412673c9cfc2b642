//! The group-commit writer: one task owns appends to the store, so concurrent ingest
//! requests share one durable transaction instead of paying one each.
//!
//! A request prepares its events for the store ([`PreparedEvents`]: attributes as JSON,
//! retention sizes, computed on the request's task, in parallel), hands them and a oneshot
//! to the writer ([`IngestWriter::commit`]) and waits. The writer takes the first waiting
//! job, then every job already queued (up to `max_events` events), lingers at most
//! `max_wait` for more while below `max_events`, appends them all with one
//! [`JourneyStore::append_prepared`] and answers every job with the same outcome. So a
//! request is answered only after its events are committed, and a failed append fails
//! every request in it: nothing is acknowledged that is not durable.
//!
//! The events are shared with the writer, not moved: the request drops them after its
//! answer, so freeing them happens on the request's task too, off the writer's path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics::TrackerMetrics;
use crate::model::Event;
use crate::store::{JourneyStore, PreparedEvents, StoreError};

/// How the writer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Append at most about this many events at once (a single request larger than this
    /// is appended alone, never split, so that it stays all or nothing).
    pub max_events: usize,
    /// How long to wait for more requests once one is waiting (0 = append what is
    /// queued right away).
    pub max_wait: Duration,
}

/// Why events were not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The store is unreachable: retry later.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// The store failed.
    #[error("the event store failed: {0}")]
    Failed(String),
    /// The writer has stopped (the service is shutting down).
    #[error("the tracker is shutting down")]
    Stopped,
}

/// The handle requests use to commit events; cheap to clone.
#[derive(Debug, Clone)]
pub struct IngestWriter {
    jobs: mpsc::Sender<Job>,
    queued_events: Arc<AtomicU64>,
}

/// The running writer task; finishes once every [`IngestWriter`] is dropped and the
/// queue is drained.
#[derive(Debug)]
pub struct WriterTask {
    handle: JoinHandle<()>,
}

#[derive(Debug)]
struct Job {
    events: Arc<PreparedEvents>,
    reply: oneshot::Sender<Result<(), CommitError>>,
}

/// At most this many requests wait for the writer; further ones wait to enqueue, which
/// slows producers down instead of growing memory without bound.
const QUEUE_JOBS: usize = 4096;

impl IngestWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(
        store: Arc<dyn JourneyStore>,
        config: BatchConfig,
        metrics: Arc<TrackerMetrics>,
    ) -> (IngestWriter, WriterTask) {
        let (jobs, receiver) = mpsc::channel(QUEUE_JOBS);
        let queued_events = Arc::new(AtomicU64::new(0));
        let handle = tokio::spawn(run(
            store,
            config,
            metrics,
            receiver,
            Arc::clone(&queued_events),
        ));
        (
            IngestWriter {
                jobs,
                queued_events,
            },
            WriterTask { handle },
        )
    }

    /// Commits `events` durably, together with whatever other requests are waiting;
    /// returns once they are in the store (or failed to get there).
    pub async fn commit(&self, events: Vec<Event>) -> Result<(), CommitError> {
        if events.is_empty() {
            return Ok(());
        }
        let count = events.len() as u64;
        let prepared = Arc::new(PreparedEvents::new(events));
        let (reply, answer) = oneshot::channel();
        self.queued_events.fetch_add(count, Ordering::Relaxed);
        let job = Job {
            events: Arc::clone(&prepared),
            reply,
        };
        if self.jobs.send(job).await.is_err() {
            self.queued_events.fetch_sub(count, Ordering::Relaxed);
            return Err(CommitError::Stopped);
        }
        let result = answer.await.unwrap_or(Err(CommitError::Stopped));
        // The writer has let go of its share before answering, so the events are freed
        // here, on this request's task.
        drop(prepared);
        result
    }

    /// Events handed to the writer and not yet appended (the ingest lag).
    pub fn queued_events(&self) -> u64 {
        self.queued_events.load(Ordering::Relaxed)
    }
}

impl WriterTask {
    /// Waits for the writer to drain its queue and stop.
    pub async fn finished(self) {
        if let Err(error) = self.handle.await {
            tracing::error!(error = %error, "the ingest writer task failed");
        }
    }
}

async fn run(
    store: Arc<dyn JourneyStore>,
    config: BatchConfig,
    metrics: Arc<TrackerMetrics>,
    mut receiver: mpsc::Receiver<Job>,
    queued_events: Arc<AtomicU64>,
) {
    let max_events = config.max_events.max(1);
    let mut batch = Batch::default();
    while let Some(first) = receiver.recv().await {
        batch.add(first);
        // Everything already waiting joins this append.
        while batch.events < max_events {
            match receiver.try_recv() {
                Ok(job) => batch.add(job),
                Err(_) => break,
            }
        }
        // Then linger briefly for concurrent requests about to arrive.
        if batch.events < max_events && !config.max_wait.is_zero() {
            let deadline = tokio::time::Instant::now() + config.max_wait;
            while batch.events < max_events {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(job)) => batch.add(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let result = append(store.as_ref(), &batch.parts, batch.events, &metrics).await;
        let appended = batch.events as u64;
        let left = queued_events
            .fetch_sub(appended, Ordering::Relaxed)
            .saturating_sub(appended);
        metrics.set_queue_events(left);
        // Let go of the events before answering, so that each request frees its own.
        batch.parts.clear();
        batch.events = 0;
        for reply in batch.replies.drain(..) {
            // A request that gave up (client disconnected) no longer listens.
            let _ = reply.send(result.clone());
        }
    }
}

/// The jobs of one append.
#[derive(Default)]
struct Batch {
    parts: Vec<Arc<PreparedEvents>>,
    replies: Vec<oneshot::Sender<Result<(), CommitError>>>,
    events: usize,
}

impl Batch {
    fn add(&mut self, job: Job) {
        self.events += job.events.len();
        self.parts.push(job.events);
        self.replies.push(job.reply);
    }
}

async fn append(
    store: &dyn JourneyStore,
    parts: &[Arc<PreparedEvents>],
    events: usize,
    metrics: &TrackerMetrics,
) -> Result<(), CommitError> {
    let started = Instant::now();
    match store.append_prepared(parts).await {
        Ok(outcome) => {
            metrics.append(
                events,
                started.elapsed(),
                outcome.inserted,
                outcome.duplicates,
            );
            Ok(())
        }
        Err(StoreError::Unavailable(error)) => {
            tracing::warn!(error = %error, events, "store unavailable; batch not committed");
            Err(CommitError::Unavailable(error.to_string()))
        }
        Err(error) => {
            tracing::error!(error = %error, events, "store append failed; batch not committed");
            Err(CommitError::Failed(error.to_string()))
        }
    }
}
