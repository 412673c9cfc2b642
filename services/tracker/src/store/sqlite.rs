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
//! Concurrency: appends and retention passes take the writer connection (a mutex), one at
//! a time. Queries use their own connections: WAL lets readers see the last committed
//! state while a write is in progress, so a long batch never delays a journey lookup.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use frame_tracking::FrameId;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};

use crate::model::{
    AppendOutcome, CameraStats, Event, FrameCursor, FramePage, FrameQuery, FrameStatus,
    FrameSummary, StoredEvent,
};
use crate::store::projection::{
    CameraRow, EventRow, FrameRow, Histogram, apply_frame_change, attributes_json, corrupt, dedup,
    event_size, status_code,
};
use crate::store::{
    RETENTION_CHUNK, Retention, RetentionOutcome, StoreError, StoreStatus, cutoff_unix_nanos,
};

/// Reader connections kept open between queries (more are opened under load, then closed).
const IDLE_READERS: usize = 8;

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The event columns every read selects, in the order [`decode_event`] expects.
const EVENT_COLUMNS: &str = "position, event_id, service, stage, start_ns, end_ns, status, \
                             error_message, parent_span_id, camera_id, attributes";

/// The frame columns every read selects, in the order [`decode_frame`] expects.
const FRAME_COLUMNS: &str = "frame_id, camera_id, first_seen, last_seen, events, errors, stages";

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
            .execute_batch(
                "PRAGMA synchronous = FULL;
                 PRAGMA cache_size = -131072;
                 PRAGMA temp_store = MEMORY;
                 PRAGMA wal_autocheckpoint = 8192;
                 PRAGMA journal_size_limit = 67108864;
                 PRAGMA mmap_size = 268435456;",
            )
            .map_err(open)?;
        writer.set_prepared_statement_cache_capacity(32);
        crate::store::migrate::sqlite(&mut writer)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            }),
        })
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
        let events = events.to_vec();
        self.write(move |connection| append(connection, &events))
            .await
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
                .map(|frame| frame.summary())
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

fn append(connection: &mut Connection, events: &[Event]) -> Result<AppendOutcome, StoreError> {
    let (unique, repeats) = dedup(events);
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let counters = load_counters(&transaction)?;
    let mut position = counters.last_position;
    let mut bytes = 0;
    let mut inserted: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    let mut inserted_count = 0u64;
    {
        let mut insert = transaction
            .prepare_cached(
                "INSERT INTO events (position, event_id, frame_id, service, stage, start_ns,
                     end_ns, status, error_message, parent_span_id, camera_id, attributes,
                     size_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (frame_id, event_id) DO NOTHING",
            )
            .map_err(sqlite_error)?;
        for event in unique {
            let attributes = attributes_json(event);
            let size = event_size(event, attributes.as_deref());
            let parent = event.parent_span_id.map(|id| id.to_bytes());
            let changed = insert
                .execute(params![
                    position + 1,
                    &event.event_id.to_bytes()[..],
                    event.frame_id.as_str(),
                    event.service,
                    event.stage,
                    event.start_unix_nanos,
                    event.end_unix_nanos,
                    status_code(event.status),
                    event.error_message,
                    parent.as_ref().map(|bytes| &bytes[..]),
                    event.camera_id,
                    attributes,
                    size,
                ])
                .map_err(sqlite_error)?;
            if changed == 1 {
                position += 1;
                bytes += size;
                inserted_count += 1;
                inserted
                    .entry(event.frame_id.as_str())
                    .or_default()
                    .push(event);
            }
        }
    }

    // The projections: merge the new events into their frames, then move each frame's
    // contribution to its camera from the old row to the new one.
    let mut changes = Vec::with_capacity(inserted.len());
    for (frame_id, frame_events) in &inserted {
        let old = load_frame(&transaction, frame_id)?;
        let new = match &old {
            Some(old) => {
                let mut new = old.clone();
                frame_events.iter().for_each(|event| new.add(event));
                new
            }
            None => FrameRow::from_events(frame_events.iter().copied())
                .ok_or_else(|| corrupt("a frame without events".to_owned()))?,
        };
        changes.push((old, Some(new)));
    }
    let new_frames = changes.iter().filter(|(old, _)| old.is_none()).count() as i64;
    let mut cameras = load_cameras_for(&transaction, &changes)?;
    for (old, new) in &changes {
        apply_frame_change(&mut cameras, old.as_ref(), new.as_ref());
    }
    for (_, new) in &changes {
        if let Some(new) = new {
            save_frame(&transaction, new)?;
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
        duplicates: repeats + (events.len() as u64 - repeats - inserted_count),
    })
}

fn journey(connection: &Connection, frame_id: &FrameId) -> Result<Vec<StoredEvent>, StoreError> {
    let mut select = connection
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE frame_id = ?1
             ORDER BY start_ns, position"
        ))
        .map_err(sqlite_error)?;
    let mut rows = select.query([frame_id.as_str()]).map_err(sqlite_error)?;
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

fn decode_frame(row: &Row<'_>) -> Result<FrameRow, StoreError> {
    let get = |error: rusqlite::Error| sqlite_error(error);
    let stages: String = row.get(6).map_err(get)?;
    Ok(FrameRow {
        frame_id: row.get(0).map_err(get)?,
        camera_id: row.get(1).map_err(get)?,
        first_seen: row.get(2).map_err(get)?,
        last_seen: row.get(3).map_err(get)?,
        events: row.get(4).map_err(get)?,
        errors: row.get(5).map_err(get)?,
        stages: FrameRow::parse_stages(&stages)?,
    })
}

fn load_frame(connection: &Connection, frame_id: &str) -> Result<Option<FrameRow>, StoreError> {
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

fn save_frame(connection: &Connection, frame: &FrameRow) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO frames (frame_id, camera_id, first_seen, last_seen, duration, events,
                 errors, stages)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (frame_id) DO UPDATE SET camera_id = excluded.camera_id,
                 first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                 duration = excluded.duration, events = excluded.events,
                 errors = excluded.errors, stages = excluded.stages",
        )
        .and_then(|mut upsert| {
            upsert.execute(params![
                frame.frame_id,
                frame.camera_id,
                frame.first_seen,
                frame.last_seen,
                frame.duration(),
                frame.events,
                frame.errors,
                frame.stages_json(),
            ])
        })
        .map_err(sqlite_error)?;
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
        frames.push(decode_frame(row)?);
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
    let mut deleted: Vec<(String, i64)> = Vec::new();
    let delete = |sql: &str, parameters: &[&dyn rusqlite::ToSql]| {
        let mut statement = transaction.prepare_cached(sql).map_err(sqlite_error)?;
        let rows = statement
            .query_map(parameters, |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sqlite_error)?;
        rows.collect::<Result<Vec<(String, i64)>, _>>()
            .map_err(sqlite_error)
    };
    let oldest = "DELETE FROM events WHERE position IN
                      (SELECT position FROM events ORDER BY position LIMIT ?1)
                  RETURNING frame_id, size_bytes";
    if let Some(cutoff) = cutoff {
        deleted = delete(
            "DELETE FROM events WHERE position IN
                 (SELECT position FROM events WHERE end_ns < ?1 ORDER BY end_ns LIMIT ?2)
             RETURNING frame_id, size_bytes",
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
    let frame_ids: BTreeSet<String> = deleted.iter().map(|(frame, _)| frame.clone()).collect();
    let mut changes = Vec::with_capacity(frame_ids.len());
    for frame_id in &frame_ids {
        let old = load_frame(&transaction, frame_id)?;
        let parsed: FrameId = frame_id
            .parse()
            .map_err(|error| corrupt(format!("stored frame id {frame_id:?}: {error}")))?;
        let remaining = journey(&transaction, &parsed)?;
        let new = FrameRow::from_events(remaining.iter().map(|stored| &stored.event));
        changes.push((old, new));
    }
    let frames_deleted = changes.iter().filter(|(_, new)| new.is_none()).count() as i64;
    let mut cameras = load_cameras_for(&transaction, &changes)?;
    for (old, new) in &changes {
        apply_frame_change(&mut cameras, old.as_ref(), new.as_ref());
    }
    for ((old, new), frame_id) in changes.iter().zip(&frame_ids) {
        match new {
            Some(new) => save_frame(&transaction, new)?,
            None if old.is_some() => {
                transaction
                    .prepare_cached("DELETE FROM frames WHERE frame_id = ?1")
                    .and_then(|mut delete| delete.execute([frame_id]))
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
