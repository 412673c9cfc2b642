//! The embedded SQLite backend: one database file in WAL mode, one writer connection and
//! a small pool of reader connections, all used from tokio's blocking threads.
//!
//! Durability: `journal_mode=WAL` with `synchronous=FULL`. In WAL mode `NORMAL` only
//! syncs at checkpoints, so a power loss or kernel crash can roll back transactions that
//! were already acknowledged; that would break "a 2xx means committed". `FULL` syncs the
//! WAL at every commit, and since an append is one transaction per batch, the cost is one
//! `fsync` per batch rather than per event (batches of hundreds to thousands of events
//! amortise it).
//!
//! Checkpoints (copying the WAL back into the database file, with two more `fsync`s) run
//! on a thread of their own with its own connection, woken after appends, so the writer
//! does not stop for them; the writer only checkpoints itself when the WAL has grown past
//! [`WRITER_CHECKPOINT_PAGES`] because the background thread cannot keep up. Checkpoints
//! only move committed data, so they do not change what a commit guarantees.
//!
//! Concurrency: appends and retention passes take the writer connection (a mutex), one at
//! a time. Queries use their own connections: WAL lets readers see the last committed
//! state while a write is in progress, so a long batch never delays a journey lookup.
//!
//! Layout (see `migrations/sqlite/`): frames have an integer key in order of first
//! sight, and events carry that key instead of the frame id text, so the log's unique
//! (frame key, event id) index stays small; a journey resolves the key through
//! `frames_by_id` first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use frame_tracking::FrameId;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};

use crate::model::{
    AppendOutcome, CameraStats, Event, FrameCursor, FramePage, FrameQuery, FrameStatus,
    FrameSummary, StoredEvent,
};
use crate::store::projection::{
    CameraRow, EventRow, FrameRow, Histogram, apply_frame_change, corrupt, status_code,
};
use crate::store::{
    PreparedEvents, RETENTION_CHUNK, Retention, RetentionOutcome, StoreError, StoreStatus,
    cutoff_unix_nanos,
};

/// Reader connections kept open between queries (more are opened under load, then closed).
const IDLE_READERS: usize = 8;

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The event columns every read selects, in the order [`decode_event`] expects.
const EVENT_COLUMNS: &str = "position, event_id, service, stage, start_ns, end_ns, status, \
                             error_message, parent_span_id, camera_id, attributes";

/// The frame columns every read selects, in the order [`decode_frame`] expects.
const FRAME_COLUMNS: &str =
    "frame_key, frame_id, camera_id, first_seen, last_seen, events, errors, stages";

/// WAL size (pages) at which the writer checkpoints by itself (SQLite's autocheckpoint):
/// 128 MiB with 4 KiB pages. Normally the checkpoint thread has copied most of the WAL
/// already, so this only bounds the WAL when that thread falls behind, and lets the WAL
/// start over from its beginning under sustained load (it can only restart once every
/// frame in it has been copied, which a concurrent checkpoint rarely finishes between two
/// commits).
const WRITER_CHECKPOINT_PAGES: i64 = 32_768;

/// The least time between two background checkpoints: each copies every page changed
/// since the last, so running them less often copies often-changed pages fewer times.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// A [`JourneyStore`] in one SQLite file.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Wakes the checkpoint thread; dropping it (with the store) stops the thread.
    checkpoints: SyncSender<()>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path` and migrates it.
    pub(crate) fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| {
                StoreError::Open(format!("cannot create {}: {error}", dir.display()))
            })?;
        }
        let open = |error: rusqlite::Error| {
            StoreError::Open(format!("SQLite database {}: {error}", path.display()))
        };
        let mut writer = Connection::open(path).map_err(open)?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(open)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open(format!(
                "SQLite database {}: cannot switch to WAL mode (got {mode})",
                path.display()
            )));
        }
        writer
            .execute_batch(&format!(
                "PRAGMA synchronous = FULL;
                 PRAGMA cache_size = -131072;
                 PRAGMA temp_store = MEMORY;
                 PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES};
                 PRAGMA journal_size_limit = 67108864;
                 PRAGMA mmap_size = 268435456;"
            ))
            .map_err(open)?;
        writer.set_prepared_statement_cache_capacity(32);
        crate::store::migrate::sqlite(&mut writer)?;
        let checkpoints = spawn_checkpointer(path).map_err(open)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                checkpoints,
            }),
        })
    }

    /// Asks the checkpoint thread to run (it coalesces requests and rests between runs).
    fn request_checkpoint(&self) {
        match self.inner.checkpoints.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::warn!("the SQLite checkpoint thread has stopped");
            }
        }
    }

    /// Runs `work` on the writer connection, on a blocking thread.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut writer)
        })
        .await
        .map_err(|error| StoreError::Failed(Box::new(error)))?
    }

    /// Runs `work` on a reader connection, on a blocking thread.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let idle = inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let connection = match idle {
                Some(connection) => connection,
                None => open_reader(&inner.path)?,
            };
            let result = work(&connection);
            let mut readers = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if readers.len() < IDLE_READERS {
                readers.push(connection);
            }
            result
        })
        .await
        .map_err(|error| StoreError::Failed(Box::new(error)))?
    }
}

#[async_trait]
impl crate::store::JourneyStore for SqliteStore {
    async fn append(&self, events: &[Event]) -> Result<AppendOutcome, StoreError> {
        if events.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let prepared = Arc::new(PreparedEvents::new(events.to_vec()));
        self.append_prepared(&[prepared]).await
    }

    async fn append_prepared(
        &self,
        batches: &[Arc<PreparedEvents>],
    ) -> Result<AppendOutcome, StoreError> {
        if batches.iter().all(|batch| batch.is_empty()) {
            return Ok(AppendOutcome::default());
        }
        let batches = batches.to_vec();
        let outcome = self
            .write(move |connection| append(connection, &batches))
            .await?;
        self.request_checkpoint();
        Ok(outcome)
    }

    async fn journey(&self, frame_id: &FrameId) -> Result<Vec<StoredEvent>, StoreError> {
        let frame_id = *frame_id;
        self.read(move |connection| journey(connection, &frame_id))
            .await
    }

    async fn frame_summary(&self, frame_id: &FrameId) -> Result<Option<FrameSummary>, StoreError> {
        let frame_id = *frame_id;
        self.read(move |connection| {
            load_frame(connection, frame_id.as_str())?
                .map(|(_, frame)| frame.summary())
                .transpose()
        })
        .await
    }

    async fn search_frames(&self, query: &FrameQuery) -> Result<FramePage, StoreError> {
        let query = query.clone();
        self.read(move |connection| search_frames(connection, &query))
            .await
    }

    async fn camera_stats(&self, camera_id: &str) -> Result<Option<CameraStats>, StoreError> {
        let camera_id = camera_id.to_owned();
        self.read(move |connection| {
            Ok(load_camera(connection, &camera_id)?.map(|camera| camera.stats()))
        })
        .await
    }

    async fn apply_retention(&self, retention: &Retention) -> Result<RetentionOutcome, StoreError> {
        let retention = *retention;
        let mut outcome = RetentionOutcome::default();
        // One transaction per chunk, each taking the writer afresh, so appends interleave
        // with a long retention pass instead of waiting for all of it.
        loop {
            let cutoff = cutoff_unix_nanos(&retention);
            let chunk = self
                .write(move |connection| retention_chunk(connection, &retention, cutoff))
                .await?;
            outcome.events_deleted += chunk.events_deleted;
            outcome.frames_deleted += chunk.frames_deleted;
            if chunk.events_deleted == 0 {
                return Ok(outcome);
            }
            self.request_checkpoint();
        }
    }

    async fn status(&self) -> Result<StoreStatus, StoreError> {
        self.read(status).await
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(sqlite_error)?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_error)?;
    connection
        .execute_batch(
            "PRAGMA query_only = ON;
             PRAGMA cache_size = -16384;
             PRAGMA mmap_size = 268435456;",
        )
        .map_err(sqlite_error)?;
    Ok(connection)
}

/// Starts the checkpoint thread on a connection of its own; it runs a `PASSIVE` checkpoint
/// (which never waits for the writer or readers) whenever asked, at most once per
/// [`CHECKPOINT_INTERVAL`], and stops when the sender is dropped.
fn spawn_checkpointer(path: &Path) -> Result<SyncSender<()>, rusqlite::Error> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // The checkpointing connection's `synchronous` decides the syncs around the copy.
    connection.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA journal_size_limit = 67108864;",
    )?;
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".to_owned())
        .spawn(move || checkpoint_loop(&connection, &receiver));
    if let Err(error) = spawned {
        // Without the thread the writer's own checkpoints still bound the WAL.
        tracing::warn!(error = %error, "cannot start the SQLite checkpoint thread");
    }
    Ok(sender)
}

fn checkpoint_loop(connection: &Connection, requests: &Receiver<()>) {
    let mut last: Option<Instant> = None;
    while requests.recv().is_ok() {
        // Rest until the interval since the last run is over, still noticing a store
        // that is being closed.
        if let Some(last) = last {
            let deadline = last + CHECKPOINT_INTERVAL;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match requests.recv_timeout(left) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
        let result = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match result {
            Ok((wal_pages, copied)) => {
                tracing::trace!(wal_pages, copied, "background checkpoint");
            }
            Err(error) => tracing::warn!(error = %error, "background checkpoint failed"),
        }
        last = Some(Instant::now());
    }
}

/// Maps a SQLite error: locks held too long and files that cannot be opened are
/// [`StoreError::Unavailable`], the rest [`StoreError::Failed`].
fn sqlite_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;

    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            StoreError::Unavailable(Box::new(error))
        }
        _ => StoreError::Failed(Box::new(error)),
    }
}

/// A frame an append touches: its id and key, its summary before, the events of this
/// append that were stored.
struct FrameSlot<'a> {
    frame_id: &'a str,
    key: i64,
    old: Option<FrameRow>,
    inserted: Vec<&'a Event>,
}

fn append(
    connection: &mut Connection,
    batches: &[Arc<PreparedEvents>],
) -> Result<AppendOutcome, StoreError> {
    let total: u64 = batches.iter().map(|batch| batch.len() as u64).sum();
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let counters = load_counters(&transaction)?;

    // Every frame of the batch with its key: the stored one, or the next free one for a
    // frame seen for the first time; and for every event, its frame's slot. A frame's
    // events usually come one after the other, so the previous event's slot is tried
    // before the map.
    let mut slots: Vec<FrameSlot<'_>> = Vec::new();
    let mut slot_of: HashMap<&str, usize> = HashMap::new();
    let mut event_slots: Vec<usize> = Vec::with_capacity(total as usize);
    let mut next_key: Option<i64> = None;
    let mut previous: Option<(&str, usize)> = None;
    for event in batches.iter().flat_map(|batch| batch.events()) {
        let frame_id = event.frame_id.as_str();
        let slot = match previous {
            Some((previous_id, slot)) if previous_id == frame_id => slot,
            _ => match slot_of.get(frame_id) {
                Some(slot) => *slot,
                None => {
                    let (key, old) = match load_frame(&transaction, frame_id)? {
                        Some((key, old)) => (key, Some(old)),
                        None => {
                            let key = match next_key {
                                Some(key) => key,
                                None => max_frame_key(&transaction)? + 1,
                            };
                            next_key = Some(key + 1);
                            (key, None)
                        }
                    };
                    let inserted = Vec::new();
                    slots.push(FrameSlot {
                        frame_id,
                        key,
                        old,
                        inserted,
                    });
                    slot_of.insert(frame_id, slots.len() - 1);
                    slots.len() - 1
                }
            },
        };
        previous = Some((frame_id, slot));
        event_slots.push(slot);
    }

    // The events, in the order given, so that positions follow it.
    let mut position = counters.last_position;
    let mut bytes = 0;
    let mut inserted_count = 0u64;
    {
        let mut insert = transaction
            .prepare_cached(
                "INSERT INTO events (position, event_id, frame_key, service, stage, start_ns,
                     end_ns, status, error_message, parent_span_id, camera_id, attributes,
                     size_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (frame_key, event_id) DO NOTHING",
            )
            .map_err(sqlite_error)?;
        let rows = batches.iter().flat_map(|batch| batch.rows());
        for (row, slot) in rows.zip(&event_slots) {
            let event = row.event;
            let slot = &mut slots[*slot];
            let parent = event.parent_span_id.map(|id| id.to_bytes());
            let changed = insert
                .execute(params![
                    position + 1,
                    &event.event_id.to_bytes()[..],
                    slot.key,
                    event.service,
                    event.stage,
                    event.start_unix_nanos,
                    event.end_unix_nanos,
                    status_code(event.status),
                    event.error_message,
                    parent.as_ref().map(|bytes| &bytes[..]),
                    event.camera_id,
                    row.attributes,
                    row.size,
                ])
                .map_err(sqlite_error)?;
            if changed == 1 {
                position += 1;
                bytes += row.size;
                inserted_count += 1;
                slot.inserted.push(event);
            }
        }
    }

    // The projections: merge the new events into their frames (in frame id order, which
    // is roughly the order of the frames' index entries), then move each frame's
    // contribution to its camera from the old row to the new one.
    let mut touched: Vec<FrameSlot<'_>> = slots
        .into_iter()
        .filter(|slot| !slot.inserted.is_empty())
        .collect();
    touched.sort_unstable_by_key(|slot| slot.frame_id);
    let mut changes = Vec::with_capacity(touched.len());
    let mut keys = Vec::with_capacity(touched.len());
    for slot in touched {
        let new = match &slot.old {
            Some(old) => {
                let mut new = old.clone();
                slot.inserted.iter().for_each(|event| new.add(event));
                new
            }
            None => FrameRow::from_events(slot.inserted.iter().copied())
                .ok_or_else(|| corrupt("a frame without events".to_owned()))?,
        };
        changes.push((slot.old, Some(new)));
        keys.push(slot.key);
    }
    let new_frames = changes.iter().filter(|(old, _)| old.is_none()).count() as i64;
    let mut cameras = load_cameras_for(&transaction, &changes)?;
    for (old, new) in &changes {
        apply_frame_change(&mut cameras, old.as_ref(), new.as_ref());
    }
    for ((old, new), key) in changes.iter().zip(&keys) {
        if let Some(new) = new {
            save_frame(&transaction, *key, old.as_ref(), new)?;
        }
    }
    for camera in cameras.values() {
        save_camera(&transaction, camera)?;
    }
    transaction
        .prepare_cached(
            "UPDATE counters SET events = events + ?1, frames = frames + ?2,
                 bytes = bytes + ?3, last_position = ?4 WHERE id = 1",
        )
        .and_then(|mut update| {
            update.execute(params![inserted_count as i64, new_frames, bytes, position])
        })
        .map_err(sqlite_error)?;
    transaction.commit().map_err(sqlite_error)?;
    Ok(AppendOutcome {
        inserted: inserted_count,
        duplicates: total - inserted_count,
    })
}

/// The largest frame key in use, 0 when there are no frames.
fn max_frame_key(connection: &Connection) -> Result<i64, StoreError> {
    connection
        .prepare_cached("SELECT coalesce(max(frame_key), 0) FROM frames")
        .and_then(|mut select| select.query_row([], |row| row.get(0)))
        .map_err(sqlite_error)
}

fn journey(connection: &Connection, frame_id: &FrameId) -> Result<Vec<StoredEvent>, StoreError> {
    let mut select = connection
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE frame_key = (SELECT frame_key FROM frames WHERE frame_id = ?1)
             ORDER BY start_ns, position"
        ))
        .map_err(sqlite_error)?;
    let rows = select.query([frame_id.as_str()]).map_err(sqlite_error)?;
    decode_events(rows, frame_id)
}

/// The events of the frame with `key` (whose id is `frame_id`), as [`journey`] orders them.
fn journey_by_key(
    connection: &Connection,
    key: i64,
    frame_id: &FrameId,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut select = connection
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE frame_key = ?1
             ORDER BY start_ns, position"
        ))
        .map_err(sqlite_error)?;
    let rows = select.query([key]).map_err(sqlite_error)?;
    decode_events(rows, frame_id)
}

fn decode_events(
    mut rows: rusqlite::Rows<'_>,
    frame_id: &FrameId,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        events.push(decode_event(row, frame_id)?);
    }
    Ok(events)
}

fn decode_event(row: &Row<'_>, frame_id: &FrameId) -> Result<StoredEvent, StoreError> {
    let get = |error: rusqlite::Error| sqlite_error(error);
    EventRow {
        position: row.get(0).map_err(get)?,
        event_id: row.get(1).map_err(get)?,
        service: row.get(2).map_err(get)?,
        stage: row.get(3).map_err(get)?,
        start_unix_nanos: row.get(4).map_err(get)?,
        end_unix_nanos: row.get(5).map_err(get)?,
        status: row.get(6).map_err(get)?,
        error_message: row.get(7).map_err(get)?,
        parent_span_id: row.get(8).map_err(get)?,
        camera_id: row.get(9).map_err(get)?,
        attributes: row.get(10).map_err(get)?,
    }
    .decode(*frame_id)
}

/// A frame's key and summary from a row of [`FRAME_COLUMNS`].
fn decode_frame(row: &Row<'_>) -> Result<(i64, FrameRow), StoreError> {
    let get = |error: rusqlite::Error| sqlite_error(error);
    let stages: String = row.get(7).map_err(get)?;
    let frame = FrameRow {
        frame_id: row.get(1).map_err(get)?,
        camera_id: row.get(2).map_err(get)?,
        first_seen: row.get(3).map_err(get)?,
        last_seen: row.get(4).map_err(get)?,
        events: row.get(5).map_err(get)?,
        errors: row.get(6).map_err(get)?,
        stages: FrameRow::parse_stages(&stages)?,
    };
    Ok((row.get(0).map_err(get)?, frame))
}

fn load_frame(
    connection: &Connection,
    frame_id: &str,
) -> Result<Option<(i64, FrameRow)>, StoreError> {
    let mut select = connection
        .prepare_cached(&format!(
            "SELECT {FRAME_COLUMNS} FROM frames WHERE frame_id = ?1"
        ))
        .map_err(sqlite_error)?;
    let mut rows = select.query([frame_id]).map_err(sqlite_error)?;
    match rows.next().map_err(sqlite_error)? {
        Some(row) => decode_frame(row).map(Some),
        None => Ok(None),
    }
}

fn load_frame_by_key(connection: &Connection, key: i64) -> Result<Option<FrameRow>, StoreError> {
    let mut select = connection
        .prepare_cached(&format!(
            "SELECT {FRAME_COLUMNS} FROM frames WHERE frame_key = ?1"
        ))
        .map_err(sqlite_error)?;
    let mut rows = select.query([key]).map_err(sqlite_error)?;
    match rows.next().map_err(sqlite_error)? {
        Some(row) => decode_frame(row).map(|(_, frame)| Some(frame)),
        None => Ok(None),
    }
}

/// Writes a frame's new summary: an insert for a new frame, else an update that leaves
/// the frame's index entries alone unless first seen or the camera changed.
fn save_frame(
    connection: &Connection,
    key: i64,
    old: Option<&FrameRow>,
    new: &FrameRow,
) -> Result<(), StoreError> {
    let result = match old {
        None => connection
            .prepare_cached(
                "INSERT INTO frames (frame_key, frame_id, camera_id, first_seen, last_seen,
                     duration, events, errors, stages)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    key,
                    new.frame_id,
                    new.camera_id,
                    new.first_seen,
                    new.last_seen,
                    new.duration(),
                    new.events,
                    new.errors,
                    new.stages_json(),
                ])
            }),
        Some(old) if old.first_seen == new.first_seen && old.camera_id == new.camera_id => {
            connection
                .prepare_cached(
                    "UPDATE frames SET last_seen = ?2, duration = ?3, events = ?4,
                         errors = ?5, stages = ?6
                     WHERE frame_key = ?1",
                )
                .and_then(|mut update| {
                    update.execute(params![
                        key,
                        new.last_seen,
                        new.duration(),
                        new.events,
                        new.errors,
                        new.stages_json(),
                    ])
                })
        }
        Some(_) => connection
            .prepare_cached(
                "UPDATE frames SET camera_id = ?2, first_seen = ?3, last_seen = ?4,
                     duration = ?5, events = ?6, errors = ?7, stages = ?8
                 WHERE frame_key = ?1",
            )
            .and_then(|mut update| {
                update.execute(params![
                    key,
                    new.camera_id,
                    new.first_seen,
                    new.last_seen,
                    new.duration(),
                    new.events,
                    new.errors,
                    new.stages_json(),
                ])
            }),
    };
    result.map_err(sqlite_error)?;
    Ok(())
}

fn load_camera(connection: &Connection, camera_id: &str) -> Result<Option<CameraRow>, StoreError> {
    let row = connection
        .prepare_cached(
            "SELECT frames, failed_frames, events, first_seen, last_seen, histogram
             FROM cameras WHERE camera_id = ?1",
        )
        .and_then(|mut select| {
            select
                .query_row([camera_id], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, Vec<u8>>(5)?,
                    ))
                })
                .optional()
        })
        .map_err(sqlite_error)?;
    row.map(
        |(frames, failed_frames, events, first_seen, last_seen, histogram)| {
            Ok(CameraRow {
                camera_id: camera_id.to_owned(),
                frames,
                failed_frames,
                events,
                first_seen,
                last_seen,
                histogram: Histogram::decode(&histogram)?,
            })
        },
    )
    .transpose()
}

/// The camera rows of every frame in `changes`, before and after.
fn load_cameras_for(
    connection: &Connection,
    changes: &[(Option<FrameRow>, Option<FrameRow>)],
) -> Result<BTreeMap<String, CameraRow>, StoreError> {
    let mut cameras = BTreeMap::new();
    let camera_ids = changes
        .iter()
        .flat_map(|(old, new)| [old.as_ref(), new.as_ref()])
        .flatten()
        .filter_map(|frame| frame.camera_id.as_deref());
    for camera_id in camera_ids {
        if !cameras.contains_key(camera_id)
            && let Some(camera) = load_camera(connection, camera_id)?
        {
            cameras.insert(camera_id.to_owned(), camera);
        }
    }
    Ok(cameras)
}

fn save_camera(connection: &Connection, camera: &CameraRow) -> Result<(), StoreError> {
    if camera.frames <= 0 {
        connection
            .prepare_cached("DELETE FROM cameras WHERE camera_id = ?1")
            .and_then(|mut delete| delete.execute([&camera.camera_id]))
            .map_err(sqlite_error)?;
        return Ok(());
    }
    connection
        .prepare_cached(
            "INSERT INTO cameras (camera_id, frames, failed_frames, events, first_seen,
                 last_seen, histogram)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (camera_id) DO UPDATE SET frames = excluded.frames,
                 failed_frames = excluded.failed_frames, events = excluded.events,
                 first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                 histogram = excluded.histogram",
        )
        .and_then(|mut upsert| {
            upsert.execute(params![
                camera.camera_id,
                camera.frames,
                camera.failed_frames,
                camera.events,
                camera.first_seen,
                camera.last_seen,
                camera.histogram.encode(),
            ])
        })
        .map_err(sqlite_error)?;
    Ok(())
}

/// The store-wide counters.
#[derive(Debug, Clone, Copy)]
struct Counters {
    events: i64,
    frames: i64,
    bytes: i64,
    last_position: i64,
}

fn load_counters(connection: &Connection) -> Result<Counters, StoreError> {
    connection
        .prepare_cached("SELECT events, frames, bytes, last_position FROM counters WHERE id = 1")
        .and_then(|mut select| {
            select.query_row([], |row| {
                Ok(Counters {
                    events: row.get(0)?,
                    frames: row.get(1)?,
                    bytes: row.get(2)?,
                    last_position: row.get(3)?,
                })
            })
        })
        .map_err(sqlite_error)
}

fn search_frames(connection: &Connection, query: &FrameQuery) -> Result<FramePage, StoreError> {
    use rusqlite::types::Value;

    let mut sql = format!("SELECT {FRAME_COLUMNS} FROM frames WHERE 1 = 1");
    let mut values: Vec<Value> = Vec::new();
    if let Some(camera_id) = &query.camera_id {
        values.push(Value::Text(camera_id.clone()));
        sql.push_str(&format!(" AND camera_id = ?{}", values.len()));
    }
    match query.status {
        Some(FrameStatus::Failed) => sql.push_str(" AND errors > 0"),
        Some(FrameStatus::Ok) => sql.push_str(" AND errors = 0"),
        None => {}
    }
    if let Some(min) = query.min_duration_nanos {
        values.push(Value::Integer(min));
        sql.push_str(&format!(" AND duration >= ?{}", values.len()));
    }
    if let Some(since) = query.since_unix_nanos {
        values.push(Value::Integer(since));
        sql.push_str(&format!(" AND first_seen >= ?{}", values.len()));
    }
    if let Some(until) = query.until_unix_nanos {
        values.push(Value::Integer(until));
        sql.push_str(&format!(" AND first_seen < ?{}", values.len()));
    }
    if let Some(cursor) = &query.cursor {
        values.push(Value::Integer(cursor.first_seen_unix_nanos));
        values.push(Value::Text(cursor.frame_id.clone()));
        sql.push_str(&format!(
            " AND (first_seen, frame_id) < (?{}, ?{})",
            values.len() - 1,
            values.len()
        ));
    }
    let limit = i64::from(query.limit);
    values.push(Value::Integer(limit + 1));
    sql.push_str(&format!(
        " ORDER BY first_seen DESC, frame_id DESC LIMIT ?{}",
        values.len()
    ));
    let mut select = connection.prepare_cached(&sql).map_err(sqlite_error)?;
    let mut rows = select
        .query(rusqlite::params_from_iter(values))
        .map_err(sqlite_error)?;
    let mut frames = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        frames.push(decode_frame(row)?.1);
    }
    page(frames, query.limit)
}

/// A page from up to `limit + 1` rows: the extra row only says there is a next page.
pub(crate) fn page(mut frames: Vec<FrameRow>, limit: u32) -> Result<FramePage, StoreError> {
    let more = frames.len() > limit as usize;
    frames.truncate(limit as usize);
    let next_cursor = match frames.last() {
        Some(last) if more => Some(FrameCursor {
            first_seen_unix_nanos: last.first_seen,
            frame_id: last.frame_id.clone(),
        }),
        _ => None,
    };
    Ok(FramePage {
        frames: frames
            .iter()
            .map(FrameRow::summary)
            .collect::<Result<_, _>>()?,
        next_cursor,
    })
}

fn status(connection: &Connection) -> Result<StoreStatus, StoreError> {
    let counters = load_counters(connection)?;
    let pragma = |name: &str| -> Result<i64, StoreError> {
        connection
            .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .map_err(sqlite_error)
    };
    let pages = pragma("page_count")? - pragma("freelist_count")?;
    let size_bytes = pages * pragma("page_size")?;
    Ok(StoreStatus {
        events: u64::try_from(counters.events).unwrap_or_default(),
        frames: u64::try_from(counters.frames).unwrap_or_default(),
        last_position: counters.last_position,
        projected_position: counters.last_position,
        size_bytes: u64::try_from(size_bytes).unwrap_or_default(),
    })
}

/// Deletes up to [`RETENTION_CHUNK`] events beyond the policy in one transaction and fixes
/// the projections of their frames. Age goes first, then count, then size.
///
/// Age finds old events through their frames: an event that ended before the cutoff
/// started before it, so its frame was first seen before it. Frames are taken oldest first
/// along `frames_by_recent`, and only their events that ended before the cutoff are
/// deleted; a frame whose events all end later is skipped (its events are read, which
/// stays cheap as long as few frames straddle the cutoff).
fn retention_chunk(
    connection: &mut Connection,
    retention: &Retention,
    cutoff: Option<i64>,
) -> Result<RetentionOutcome, StoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let counters = load_counters(&transaction)?;
    let chunk = RETENTION_CHUNK as i64;
    let mut deleted: Vec<(i64, i64)> = Vec::new();
    let delete = |sql: &str, parameters: &[&dyn rusqlite::ToSql]| {
        let mut statement = transaction.prepare_cached(sql).map_err(sqlite_error)?;
        let rows = statement
            .query_map(parameters, |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sqlite_error)?;
        rows.collect::<Result<Vec<(i64, i64)>, _>>()
            .map_err(sqlite_error)
    };
    let oldest = "DELETE FROM events WHERE position IN
                      (SELECT position FROM events ORDER BY position LIMIT ?1)
                  RETURNING frame_key, size_bytes";
    if let Some(cutoff) = cutoff {
        // CROSS JOIN keeps frames the outer loop, walked in index order.
        deleted = delete(
            "DELETE FROM events WHERE position IN
                 (SELECT events.position FROM frames CROSS JOIN events
                      ON events.frame_key = frames.frame_key
                  WHERE frames.first_seen < ?1 AND events.end_ns < ?1
                  ORDER BY frames.first_seen, frames.frame_id LIMIT ?2)
             RETURNING frame_key, size_bytes",
            &[&cutoff, &chunk],
        )?;
    }
    if deleted.is_empty()
        && let Some(max) = retention.max_events
    {
        let excess = counters.events - i64::try_from(max).unwrap_or(i64::MAX);
        if excess > 0 {
            deleted = delete(oldest, &[&excess.min(chunk)])?;
        }
    }
    if deleted.is_empty()
        && let Some(max) = retention.max_bytes
    {
        let excess = counters.bytes - i64::try_from(max).unwrap_or(i64::MAX);
        if excess > 0 {
            let count = oldest_covering(&transaction, excess, chunk)?;
            deleted = delete(oldest, &[&count])?;
        }
    }
    if deleted.is_empty() {
        return Ok(RetentionOutcome::default());
    }

    let bytes: i64 = deleted.iter().map(|(_, size)| size).sum();
    let keys: BTreeSet<i64> = deleted.iter().map(|(key, _)| *key).collect();
    let mut changes = Vec::with_capacity(keys.len());
    for key in &keys {
        let old = load_frame_by_key(&transaction, *key)?;
        let new = match &old {
            Some(old) => {
                let parsed: FrameId = old.frame_id.parse().map_err(|error| {
                    corrupt(format!("stored frame id {:?}: {error}", old.frame_id))
                })?;
                let remaining = journey_by_key(&transaction, *key, &parsed)?;
                FrameRow::from_events(remaining.iter().map(|stored| &stored.event))
            }
            None => None,
        };
        changes.push((old, new));
    }
    let frames_deleted = changes
        .iter()
        .filter(|(old, new)| old.is_some() && new.is_none())
        .count() as i64;
    let mut cameras = load_cameras_for(&transaction, &changes)?;
    for (old, new) in &changes {
        apply_frame_change(&mut cameras, old.as_ref(), new.as_ref());
    }
    for ((old, new), key) in changes.iter().zip(&keys) {
        match new {
            Some(new) => save_frame(&transaction, *key, old.as_ref(), new)?,
            None if old.is_some() => {
                transaction
                    .prepare_cached("DELETE FROM frames WHERE frame_key = ?1")
                    .and_then(|mut delete| delete.execute([key]))
                    .map_err(sqlite_error)?;
            }
            None => {}
        }
    }
    // Removing frames can move a camera's first and last seen inwards: read them back
    // from the remaining frames (the camera index makes both lookups short).
    for camera in cameras.values_mut().filter(|camera| camera.frames > 0) {
        let (first, last): (Option<i64>, Option<i64>) = transaction
            .prepare_cached(
                "SELECT (SELECT first_seen FROM frames WHERE camera_id = ?1
                         ORDER BY first_seen LIMIT 1),
                        (SELECT max(last_seen) FROM frames WHERE camera_id = ?1)",
            )
            .and_then(|mut select| {
                select.query_row([&camera.camera_id], |row| Ok((row.get(0)?, row.get(1)?)))
            })
            .map_err(sqlite_error)?;
        camera.first_seen = first.unwrap_or(camera.first_seen);
        camera.last_seen = last.unwrap_or(camera.last_seen);
    }
    for camera in cameras.values() {
        save_camera(&transaction, camera)?;
    }
    transaction
        .prepare_cached(
            "UPDATE counters SET events = events - ?1, frames = frames - ?2,
                 bytes = bytes - ?3 WHERE id = 1",
        )
        .and_then(|mut update| update.execute(params![deleted.len() as i64, frames_deleted, bytes]))
        .map_err(sqlite_error)?;
    transaction.commit().map_err(sqlite_error)?;
    Ok(RetentionOutcome {
        events_deleted: deleted.len() as u64,
        frames_deleted: frames_deleted as u64,
    })
}

/// How many of the oldest events (at most `chunk`) add up to at least `excess` bytes.
fn oldest_covering(connection: &Connection, excess: i64, chunk: i64) -> Result<i64, StoreError> {
    let mut select = connection
        .prepare_cached("SELECT size_bytes FROM events ORDER BY position LIMIT ?1")
        .map_err(sqlite_error)?;
    let mut rows = select.query([chunk]).map_err(sqlite_error)?;
    let (mut count, mut covered) = (0, 0);
    while covered < excess
        && let Some(row) = rows.next().map_err(sqlite_error)?
    {
        covered += row.get::<_, i64>(0).map_err(sqlite_error)?;
        count += 1;
    }
    Ok(count)
}
