//! The journey store: an append-only event log with a global position, plus the
//! projections the query API reads (frame summaries, per-camera statistics).
//!
//! Every backend passes the same test suite. Guarantees every backend gives:
//! - [`JourneyStore::append`] returns only once the events are durable (a 2xx to the
//!   producer means committed), in one transaction: all of the batch or none of it;
//! - an event whose id is already stored (for its frame: an event id names one span, and a
//!   span belongs to one frame, so a re-delivery always repeats both) is ignored and counted
//!   as a duplicate;
//! - positions strictly increase in append order and are never reused;
//! - projections are updated in the same transaction as the append, so a query never
//!   sees an event without its projection.
//!
//! Open a backend with [`open`] and a [`StoreConfig`]; keep history bounded with
//! [`spawn_retention`]:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use tracker::store::{self, Retention, StoreConfig};
//!
//! # async fn example() -> Result<(), tracker::store::StoreError> {
//! let store = store::open(&StoreConfig::Sqlite {
//!     path: "data/tracker.db".into(),
//! })
//! .await?;
//! let retention = Retention {
//!     max_age: Some(Duration::from_secs(7 * 24 * 3600)),
//!     max_events: None,
//!     max_bytes: Some(10 << 30),
//! };
//! let _task = store::spawn_retention(store.clone(), retention, Duration::from_secs(60));
//! # Ok(())
//! # }
//! ```
//!
//! Backends:
//! - [`StoreConfig::Sqlite`]: one file, WAL with `synchronous=FULL` (an acknowledged
//!   append survives a power loss; one `fsync` per batch), a writer connection and a pool
//!   of readers that never wait behind a write.
//! - [`StoreConfig::Postgres`]: a small pool of connections that reconnects by itself; a
//!   lost server is [`StoreError::Unavailable`] until it is back. Appends lock one counters
//!   row first, so they commit one at a time in position order: a reader that sees
//!   position `p` sees every smaller position too.
//!
//! Both apply their schema migrations (numbered SQL files under
//! `services/tracker/migrations/`, recorded in `schema_migrations`) when opened.
//!
//! Queries: [`JourneyStore::search_frames`] orders by first seen, newest first, then by frame
//! id, descending too (ids of one millisecond come newest first as well). Camera latency
//! percentiles come from a log-linear histogram of frame durations and are within 1/32
//! (about 3 %) of the true value at that rank.
//!
//! Retention: [`Retention::max_bytes`] bounds the log's estimated size, each event counted as
//! its variable-length fields plus a fixed overhead for its row and index entries (about
//! what it occupies on disk), so it does not depend on when the database reclaims space.
//! Deletion goes oldest first (for age: the events that ended before the cutoff, taken
//! frame by frame in order of first seen, since such an event's frame was first seen
//! before the cutoff too; for count and size: by position), in transactions of at most
//! [`RETENTION_CHUNK`] events, each fixing the projections of the frames it touched.

mod migrate;
mod postgres;
mod projection;
mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use frame_tracking::FrameId;
use serde::Serialize;

use crate::model::{
    AppendOutcome, CameraStats, Event, FramePage, FrameQuery, FrameSummary, StoredEvent,
};

/// An append-only store of lifecycle events that answers journey queries by frame id.
#[async_trait]
pub trait JourneyStore: Send + Sync + 'static {
    /// Appends a batch durably; events whose id is already stored are skipped.
    async fn append(&self, events: &[Event]) -> Result<AppendOutcome, StoreError>;

    /// Appends the events of several ingest requests as one transaction, exactly as
    /// [`append`](JourneyStore::append) of all of them in order would. The group-commit
    /// writer uses this: the requests prepared their events in parallel and share them,
    /// so the single writer neither copies them nor serializes their attributes.
    async fn append_prepared(
        &self,
        batches: &[Arc<PreparedEvents>],
    ) -> Result<AppendOutcome, StoreError> {
        let events: Vec<Event> = batches
            .iter()
            .flat_map(|batch| batch.events().iter().cloned())
            .collect();
        self.append(&events).await
    }

    /// A frame's events ordered by start time (then position); empty when unknown.
    async fn journey(&self, frame_id: &FrameId) -> Result<Vec<StoredEvent>, StoreError>;

    /// A frame's summary projection.
    async fn frame_summary(&self, frame_id: &FrameId) -> Result<Option<FrameSummary>, StoreError>;

    /// Frames matching a query, newest first, one page.
    async fn search_frames(&self, query: &FrameQuery) -> Result<FramePage, StoreError>;

    /// A camera's statistics; `None` when the camera has no stored frames.
    async fn camera_stats(&self, camera_id: &str) -> Result<Option<CameraStats>, StoreError>;

    /// Deletes the oldest events (and their frames' projections) beyond the policy.
    async fn apply_retention(&self, retention: &Retention) -> Result<RetentionOutcome, StoreError>;

    /// What the store holds; an error means the store is unreachable.
    async fn status(&self) -> Result<StoreStatus, StoreError>;
}

/// A request's events together with what every backend stores for each besides the
/// event itself (its attributes as JSON and the size it counts for in retention),
/// computed once when the request is handled rather than on the single writer.
///
/// ```
/// use tracker::store::PreparedEvents;
///
/// let prepared = PreparedEvents::new(Vec::new());
/// assert!(prepared.is_empty());
/// ```
#[derive(Debug)]
pub struct PreparedEvents {
    events: Vec<Event>,
    stored: Vec<StoredForm>,
}

/// What a backend writes for an event besides its fields.
#[derive(Debug)]
struct StoredForm {
    attributes: Option<String>,
    size: i64,
}

/// One event of a [`PreparedEvents`] with its stored form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreparedRow<'a> {
    pub(crate) event: &'a Event,
    /// The attributes as stored: JSON, `None` when there are none.
    pub(crate) attributes: Option<&'a str>,
    /// What the event counts for against [`Retention::max_bytes`].
    pub(crate) size: i64,
}

impl PreparedEvents {
    /// Computes the stored form of `events`.
    pub fn new(events: Vec<Event>) -> PreparedEvents {
        let stored = events
            .iter()
            .map(|event| {
                let attributes = projection::attributes_json(event);
                let size = projection::event_size(event, attributes.as_deref());
                StoredForm { attributes, size }
            })
            .collect();
        PreparedEvents { events, stored }
    }

    /// The events, in the order they were given.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events with their stored form, in order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = PreparedRow<'_>> {
        self.events
            .iter()
            .zip(&self.stored)
            .map(|(event, stored)| PreparedRow {
                event,
                attributes: stored.attributes.as_deref(),
                size: stored.size,
            })
    }
}

/// How much history to keep; enforced in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Delete events that ended longer ago than this.
    pub max_age: Option<Duration>,
    /// Delete the oldest events beyond this many.
    pub max_events: Option<u64>,
    /// Delete the oldest events while the store is larger than this many bytes.
    pub max_bytes: Option<u64>,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionOutcome {
    /// Events deleted.
    pub events_deleted: u64,
    /// Frames whose every event was deleted.
    pub frames_deleted: u64,
}

/// What the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    /// Events stored.
    pub events: u64,
    /// Frames with a summary.
    pub frames: u64,
    /// The highest position assigned so far (0 when empty).
    pub last_position: i64,
    /// The position the projections have caught up to; `last_position - projected_position`
    /// is the projection lag.
    pub projected_position: i64,
    /// Approximate size on disk, bytes.
    pub size_bytes: u64,
}

/// Errors of a journey store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached right now (database down, connection lost): the caller
    /// may retry later; the API answers 503.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store is reachable but the operation failed (a bug, corruption, a full disk).
    #[error("store failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Opening the store failed: bad path, bad URL, migration failure.
    #[error("cannot open the store: {0}")]
    Open(String),
}

/// Where the journeys live.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// An embedded SQLite database file (created with its directory when missing).
    Sqlite {
        /// The database file, e.g. `<data dir>/tracker.db`.
        path: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres {
        /// A `postgres://user[:password]@host[:port]/database[?options]` URL (or a
        /// `key=value` connection string); no TLS.
        url: String,
    },
}

/// How many events one retention transaction deletes at most.
pub const RETENTION_CHUNK: u64 = 5_000;

/// Opens the store `config` describes, applying its migrations.
///
/// PostgreSQL is reached once here, so a bad URL or a database that is down fails now,
/// as [`StoreError::Open`], rather than at the first request.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn JourneyStore>, StoreError> {
    match config {
        StoreConfig::Sqlite { path } => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&path))
                .await
                .map_err(|error| StoreError::Open(error.to_string()))??;
            Ok(Arc::new(store))
        }
        StoreConfig::Postgres { url } => Ok(Arc::new(postgres::PostgresStore::open(url).await?)),
    }
}

/// Starts a task that applies `retention` to `store` every `interval` (the first pass runs
/// at once), logging what each pass deleted and any error; the next pass retries.
/// Abort the handle to stop it.
pub fn spawn_retention(
    store: Arc<dyn JourneyStore>,
    retention: Retention,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match store.apply_retention(&retention).await {
                Ok(outcome) if outcome.events_deleted > 0 => tracing::info!(
                    events_deleted = outcome.events_deleted,
                    frames_deleted = outcome.frames_deleted,
                    "retention pass deleted old events"
                ),
                Ok(_) => tracing::debug!("retention pass: nothing to delete"),
                Err(error) => tracing::warn!(error = %error, "retention pass failed"),
            }
        }
    })
}

impl Retention {
    /// Whether the policy deletes anything at all.
    pub fn is_unbounded(&self) -> bool {
        self.max_age.is_none() && self.max_events.is_none() && self.max_bytes.is_none()
    }
}

impl fmt::Debug for StoreConfig {
    /// Shows the PostgreSQL URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            StoreConfig::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &redact_password(url))
                .finish(),
        }
    }
}

/// The URL with the password of its userinfo (or a `password=` option) replaced by `***`.
fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _password)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{}", redact_options(tail));
        }
        return format!("{scheme}://{authority}{}", redact_options(tail));
    }
    redact_options(url)
}

fn redact_options(text: &str) -> String {
    text.split_inclusive([' ', '&', '?'])
        .map(|part| match part.split_once('=') {
            Some((key, value)) if key.trim().eq_ignore_ascii_case("password") => {
                let end = if value.ends_with([' ', '&', '?']) {
                    &value[value.len() - 1..]
                } else {
                    ""
                };
                format!("{key}=***{end}")
            }
            _ => part.to_owned(),
        })
        .collect()
}

/// What `event` counts for against [`Retention::max_bytes`]: its variable-length fields
/// plus a fixed overhead for its row and index entries.
pub fn retained_size(event: &Event) -> u64 {
    let attributes = projection::attributes_json(event);
    u64::try_from(projection::event_size(event, attributes.as_deref())).unwrap_or_default()
}

/// The end time before which events are too old, when the policy has a maximum age.
fn cutoff_unix_nanos(retention: &Retention) -> Option<i64> {
    let max_age = retention.max_age?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let cutoff = now.checked_sub(max_age).unwrap_or_default();
    Some(i64::try_from(cutoff.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use crate::store::{StoreConfig, redact_password};

    #[test]
    fn debug_hides_the_postgres_password() {
        let config = StoreConfig::Postgres {
            url: "postgres://app:s3cret@db:5432/tracker".into(),
        };
        let shown = format!("{config:?}");
        assert!(
            shown.contains("postgres://app:***@db:5432/tracker"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            redact_password("host=db user=app password=s3cret dbname=t"),
            "host=db user=app password=*** dbname=t"
        );
        assert_eq!(
            redact_password("postgres://db/t?user=app&password=s3cret&x=1"),
            "postgres://db/t?user=app&password=***&x=1"
        );
    }
}
