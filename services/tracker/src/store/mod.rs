//! The journey store: an append-only event log with a global position, plus the
//! projections the query API reads (frame summaries, per-camera statistics).
//!
//! Every backend passes the same test suite. Guarantees every backend gives:
//! - [`JourneyStore::append`] returns only once the events are durable (a 2xx to the
//!   producer means committed), in one transaction: all of the batch or none of it;
//! - an event whose id is already stored is ignored and counted as a duplicate;
//! - positions strictly increase in append order and are never reused;
//! - projections are updated in the same transaction as the append, so a query never
//!   sees an event without its projection.

use std::time::Duration;

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
