//! The group-commit writer: one task owns appends to the store, so concurrent ingest
//! requests share one durable transaction instead of paying one each.
//!
//! A request hands its events and a oneshot to the writer ([`IngestWriter::commit`]) and
//! waits. The writer takes the first waiting job, then every job already queued (up to
//! `max_events` events), lingers at most `max_wait` for more while below `max_events`,
//! appends them all with one [`JourneyStore::append`] and answers every job with the same
//! outcome. So a request is answered only after its events are committed, and a failed
//! append fails every request in it: nothing is acknowledged that is not durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics::TrackerMetrics;
use crate::model::Event;
use crate::store::{JourneyStore, StoreError};

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
    events: Vec<Event>,
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
        let (reply, answer) = oneshot::channel();
        self.queued_events.fetch_add(count, Ordering::Relaxed);
        if self.jobs.send(Job { events, reply }).await.is_err() {
            self.queued_events.fetch_sub(count, Ordering::Relaxed);
            return Err(CommitError::Stopped);
        }
        answer.await.unwrap_or(Err(CommitError::Stopped))
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
    let mut batch: Vec<Event> = Vec::new();
    let mut replies: Vec<oneshot::Sender<Result<(), CommitError>>> = Vec::new();
    while let Some(first) = receiver.recv().await {
        add(&mut batch, &mut replies, first);
        // Everything already waiting joins this append.
        while batch.len() < max_events {
            match receiver.try_recv() {
                Ok(job) => add(&mut batch, &mut replies, job),
                Err(_) => break,
            }
        }
        // Then linger briefly for concurrent requests about to arrive.
        if batch.len() < max_events && !config.max_wait.is_zero() {
            let deadline = tokio::time::Instant::now() + config.max_wait;
            while batch.len() < max_events {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(job)) => add(&mut batch, &mut replies, job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let result = append(store.as_ref(), &batch, &metrics).await;
        let appended = batch.len() as u64;
        let left = queued_events
            .fetch_sub(appended, Ordering::Relaxed)
            .saturating_sub(appended);
        metrics.set_queue_events(left);
        for reply in replies.drain(..) {
            // A request that gave up (client disconnected) no longer listens.
            let _ = reply.send(result.clone());
        }
        batch.clear();
    }
}

fn add(
    batch: &mut Vec<Event>,
    replies: &mut Vec<oneshot::Sender<Result<(), CommitError>>>,
    job: Job,
) {
    batch.extend(job.events);
    replies.push(job.reply);
}

async fn append(
    store: &dyn JourneyStore,
    batch: &[Event],
    metrics: &TrackerMetrics,
) -> Result<(), CommitError> {
    let started = Instant::now();
    match store.append(batch).await {
        Ok(outcome) => {
            metrics.append(
                batch.len(),
                started.elapsed(),
                outcome.inserted,
                outcome.duplicates,
            );
            Ok(())
        }
        Err(StoreError::Unavailable(error)) => {
            tracing::warn!(error = %error, events = batch.len(), "store unavailable; batch not committed");
            Err(CommitError::Unavailable(error.to_string()))
        }
        Err(error) => {
            tracing::error!(error = %error, events = batch.len(), "store append failed; batch not committed");
            Err(CommitError::Failed(error.to_string()))
        }
    }
}
