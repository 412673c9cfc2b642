//! The PostgreSQL backend: tokio-postgres without TLS, a small pool of connections that
//! reconnects by itself, and the same projections as SQLite (see `projection`).
//!
//! - Appends lock the `counters` row first, then insert the batch with one
//!   `INSERT ... SELECT FROM unnest(...) ON CONFLICT (frame_id, event_id) DO NOTHING`, upsert the
//!   touched frames and cameras from arrays, and commit: one round trip per statement, a
//!   handful per batch. Holding the counters lock makes appends commit in position order.
//! - A connection that breaks (server restart, network) is dropped from the pool and the
//!   call fails with [`StoreError::Unavailable`]; the next call connects afresh, so the
//!   store recovers when the server is back without anyone restarting it.
//! - Statements are prepared once per connection and reused.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use frame_tracking::FrameId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, NoTls, Row, Statement};

use crate::model::{
    AppendOutcome, CameraStats, Event, FramePage, FrameQuery, FrameStatus, FrameSummary,
    StoredEvent,
};
use crate::store::migrate::describe_postgres;
use crate::store::projection::{
    CameraRow, EventRow, FrameRow, Histogram, apply_frame_change, attributes_json, corrupt,
    event_size, status_code,
};
use crate::store::sqlite::page;
use crate::store::{
    PreparedEvents, PreparedRow, RETENTION_CHUNK, Retention, RetentionOutcome, StoreError,
    StoreStatus, cutoff_unix_nanos,
};

/// Connections open at most.
const POOL_SIZE: usize = 8;

/// How long connecting may take before the store counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The event columns every read selects, in the order [`decode_event`] expects.
const EVENT_COLUMNS: &str = "position, event_id, service, stage, start_ns, end_ns, status, \
                             error_message, parent_span_id, camera_id, attributes, frame_id";

/// The frame columns every read selects, in the order [`decode_frame`] expects.
const FRAME_COLUMNS: &str = "frame_id, camera_id, first_seen, last_seen, events, errors, stages";

/// A [`JourneyStore`](crate::store::JourneyStore) in a PostgreSQL database.
#[derive(Debug, Clone)]
pub(crate) struct PostgresStore {
    pool: Arc<Pool>,
}

/// Idle connections plus a semaphore bounding how many exist.
struct Pool {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

/// A connection with the statements prepared on it.
struct Connection {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// A connection taken from the pool; goes back on drop unless it broke.
struct Pooled {
    connection: Option<Connection>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password: show only where it points.
        f.debug_struct("Pool")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("size", &POOL_SIZE)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url`, applies the migrations and keeps the connection for the pool.
    pub(crate) async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| StoreError::Open(format!("invalid PostgreSQL URL: {error}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tracker");
        }
        let pool = Arc::new(Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(POOL_SIZE)),
        });
        let mut pooled = pool
            .get()
            .await
            .map_err(|error| StoreError::Open(format!("cannot connect to PostgreSQL: {error}")))?;
        crate::store::migrate::postgres(&mut pooled.client).await?;
        drop(pooled);
        Ok(PostgresStore { pool })
    }
}

impl Pool {
    async fn get(self: &Arc<Pool>) -> Result<Pooled, StoreError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|error| StoreError::Failed(Box::new(error)))?;
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                // A connection whose server went away is closed by now: drop it.
                Some(connection) if connection.client.is_closed() => continue,
                Some(connection) => {
                    return Ok(Pooled {
                        connection: Some(connection),
                        pool: Arc::clone(self),
                        _permit: permit,
                    });
                }
                None => break,
            }
        }
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|error| StoreError::Unavailable(describe(&error).into()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "PostgreSQL connection closed");
            }
        });
        Ok(Pooled {
            connection: Some(Connection {
                client,
                statements: HashMap::new(),
            }),
            pool: Arc::clone(self),
            _permit: permit,
        })
    }
}

impl Deref for Pooled {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // Only `drop` takes the connection out.
        self.connection.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Connection {
        self.connection.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take()
            && !connection.client.is_closed()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
    }
}

/// Prepares `sql` on `client` once per connection.
async fn statement(
    statements: &mut HashMap<String, Statement>,
    client: &impl GenericClient,
    sql: &str,
) -> Result<Statement, StoreError> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql).await.map_err(postgres_error)?;
    statements.insert(sql.to_owned(), statement.clone());
    Ok(statement)
}

/// The error with the server's message, for logs.
fn describe(error: &tokio_postgres::Error) -> String {
    describe_postgres(error)
}

/// Maps a PostgreSQL error: a lost or refused connection, a server shutting down or out of
/// connections is [`StoreError::Unavailable`]; anything the server rejected otherwise is
/// [`StoreError::Failed`].
fn postgres_error(error: tokio_postgres::Error) -> StoreError {
    let unavailable = match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || *error.code().unwrap_or(&SqlState::SUCCESSFUL_COMPLETION)
                    == SqlState::TOO_MANY_CONNECTIONS
        }
        // No server error: the connection broke (closed, I/O error, timed out).
        None => {
            error.is_closed()
                || std::error::Error::source(&error)
                    .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some())
                || error.to_string().contains("connect")
        }
    };
    let message = describe(&error);
    if unavailable {
        StoreError::Unavailable(message.into())
    } else {
        StoreError::Failed(message.into())
    }
}

#[async_trait]
impl crate::store::JourneyStore for PostgresStore {
    async fn append(&self, events: &[Event]) -> Result<AppendOutcome, StoreError> {
        if events.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let stored: Vec<(Option<String>, i64)> = events
            .iter()
            .map(|event| {
                let attributes = attributes_json(event);
                let size = event_size(event, attributes.as_deref());
                (attributes, size)
            })
            .collect();
        let rows: Vec<PreparedRow<'_>> = events
            .iter()
            .zip(&stored)
            .map(|(event, (attributes, size))| PreparedRow {
                event,
                attributes: attributes.as_deref(),
                size: *size,
            })
            .collect();
        let mut pooled = self.pool.get().await?;
        append(&mut pooled, &rows).await
    }

    async fn append_prepared(
        &self,
        batches: &[Arc<PreparedEvents>],
    ) -> Result<AppendOutcome, StoreError> {
        let rows: Vec<PreparedRow<'_>> = batches.iter().flat_map(|batch| batch.rows()).collect();
        if rows.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let mut pooled = self.pool.get().await?;
        append(&mut pooled, &rows).await
    }

    async fn journey(&self, frame_id: &FrameId) -> Result<Vec<StoredEvent>, StoreError> {
        let mut pooled = self.pool.get().await?;
        let Connection { client, statements } = &mut *pooled;
        let select = statement(
            statements,
            client,
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE frame_id = $1
                 ORDER BY start_ns, position"
            ),
        )
        .await?;
        let rows = client
            .query(&select, &[&frame_id.as_str()])
            .await
            .map_err(postgres_error)?;
        rows.iter().map(|row| decode_event(row, frame_id)).collect()
    }

    async fn frame_summary(&self, frame_id: &FrameId) -> Result<Option<FrameSummary>, StoreError> {
        let mut pooled = self.pool.get().await?;
        let Connection { client, statements } = &mut *pooled;
        let frames = load_frames(statements, client, &[frame_id.as_str()]).await?;
        frames.values().next().map(FrameRow::summary).transpose()
    }

    async fn search_frames(&self, query: &FrameQuery) -> Result<FramePage, StoreError> {
        let mut pooled = self.pool.get().await?;
        let Connection { client, statements } = &mut *pooled;
        let status_filter = match query.status {
            Some(FrameStatus::Failed) => " AND errors > 0",
            Some(FrameStatus::Ok) => " AND errors = 0",
            None => "",
        };
        let cursor = query
            .cursor
            .as_ref()
            .map(|cursor| (cursor.first_seen_unix_nanos, cursor.frame_id.as_str()));
        let limit = i64::from(query.limit) + 1;
        let mut sql = format!("SELECT {FRAME_COLUMNS} FROM frames WHERE true{status_filter}");
        let mut parameters: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(camera_id) = &query.camera_id {
            parameters.push(camera_id);
            sql.push_str(&format!(" AND camera_id = ${}", parameters.len()));
        }
        if let Some(min) = &query.min_duration_nanos {
            parameters.push(min);
            sql.push_str(&format!(" AND duration >= ${}", parameters.len()));
        }
        if let Some(since) = &query.since_unix_nanos {
            parameters.push(since);
            sql.push_str(&format!(" AND first_seen >= ${}", parameters.len()));
        }
        if let Some(until) = &query.until_unix_nanos {
            parameters.push(until);
            sql.push_str(&format!(" AND first_seen < ${}", parameters.len()));
        }
        if let Some((first_seen, frame_id)) = &cursor {
            parameters.push(first_seen);
            parameters.push(frame_id);
            sql.push_str(&format!(
                " AND (first_seen, frame_id) < (${}, ${})",
                parameters.len() - 1,
                parameters.len()
            ));
        }
        parameters.push(&limit);
        sql.push_str(&format!(
            " ORDER BY first_seen DESC, frame_id DESC LIMIT ${}",
            parameters.len()
        ));
        let select = statement(statements, client, &sql).await?;
        let rows = client
            .query(&select, &parameters)
            .await
            .map_err(postgres_error)?;
        let frames = rows.iter().map(decode_frame).collect::<Result<_, _>>()?;
        page(frames, query.limit)
    }

    async fn camera_stats(&self, camera_id: &str) -> Result<Option<CameraStats>, StoreError> {
        let mut pooled = self.pool.get().await?;
        let Connection { client, statements } = &mut *pooled;
        let cameras = load_cameras(statements, client, &[camera_id]).await?;
        Ok(cameras.values().next().map(CameraRow::stats))
    }

    async fn apply_retention(&self, retention: &Retention) -> Result<RetentionOutcome, StoreError> {
        let mut outcome = RetentionOutcome::default();
        loop {
            let cutoff = cutoff_unix_nanos(retention);
            let mut pooled = self.pool.get().await?;
            let chunk = retention_chunk(&mut pooled, retention, cutoff).await?;
            outcome.events_deleted += chunk.events_deleted;
            outcome.frames_deleted += chunk.frames_deleted;
            if chunk.events_deleted == 0 {
                return Ok(outcome);
            }
        }
    }

    async fn status(&self) -> Result<StoreStatus, StoreError> {
        let mut pooled = self.pool.get().await?;
        let Connection { client, statements } = &mut *pooled;
        let select = statement(
            statements,
            client,
            "SELECT events, frames, last_position, pg_database_size(current_database())
             FROM counters WHERE id = 1",
        )
        .await?;
        let row = client
            .query_one(&select, &[])
            .await
            .map_err(postgres_error)?;
        let get = |index: usize| -> Result<i64, StoreError> {
            row.try_get(index).map_err(postgres_error)
        };
        let last_position = get(2)?;
        Ok(StoreStatus {
            events: u64::try_from(get(0)?).unwrap_or_default(),
            frames: u64::try_from(get(1)?).unwrap_or_default(),
            last_position,
            projected_position: last_position,
            size_bytes: u64::try_from(get(3)?).unwrap_or_default(),
        })
    }
}

/// The store-wide counters, locked for the rest of the transaction.
#[derive(Debug, Clone, Copy)]
struct Counters {
    events: i64,
    bytes: i64,
}

async fn lock_counters(
    statements: &mut HashMap<String, Statement>,
    client: &impl GenericClient,
) -> Result<Counters, StoreError> {
    let select = statement(
        statements,
        client,
        "SELECT events, bytes FROM counters WHERE id = 1 FOR UPDATE",
    )
    .await?;
    let row = client
        .query_one(&select, &[])
        .await
        .map_err(postgres_error)?;
    Ok(Counters {
        events: row.try_get(0).map_err(postgres_error)?,
        bytes: row.try_get(1).map_err(postgres_error)?,
    })
}

async fn append(
    pooled: &mut Pooled,
    batch: &[PreparedRow<'_>],
) -> Result<AppendOutcome, StoreError> {
    // The first occurrence of every (event id, frame): one statement may not insert a key
    // twice.
    let mut seen = HashSet::with_capacity(batch.len());
    let (unique, prepared): (Vec<&Event>, Vec<&PreparedRow<'_>>) = batch
        .iter()
        .filter(|row| seen.insert((row.event.event_id, row.event.frame_id)))
        .map(|row| (row.event, row))
        .unzip();
    let Connection { client, statements } = &mut **pooled;
    let transaction = client.transaction().await.map_err(postgres_error)?;
    lock_counters(statements, &transaction).await?;

    let attributes: Vec<Option<&str>> = prepared.iter().map(|row| row.attributes).collect();
    let sizes: Vec<i64> = prepared.iter().map(|row| row.size).collect();
    let event_ids: Vec<Vec<u8>> = unique
        .iter()
        .map(|e| e.event_id.to_bytes().to_vec())
        .collect();
    let frame_ids: Vec<&str> = unique.iter().map(|e| e.frame_id.as_str()).collect();
    let services: Vec<&str> = unique.iter().map(|e| e.service.as_str()).collect();
    let stages: Vec<&str> = unique.iter().map(|e| e.stage.as_str()).collect();
    let starts: Vec<i64> = unique.iter().map(|e| e.start_unix_nanos).collect();
    let ends: Vec<i64> = unique.iter().map(|e| e.end_unix_nanos).collect();
    let statuses: Vec<i16> = unique.iter().map(|e| status_code(e.status)).collect();
    let errors: Vec<Option<&str>> = unique.iter().map(|e| e.error_message.as_deref()).collect();
    let parents: Vec<Option<Vec<u8>>> = unique
        .iter()
        .map(|e| e.parent_span_id.map(|id| id.to_bytes().to_vec()))
        .collect();
    let cameras: Vec<Option<&str>> = unique.iter().map(|e| e.camera_id.as_deref()).collect();
    let insert = statement(
        statements,
        &transaction,
        "INSERT INTO events (event_id, frame_id, service, stage, start_ns, end_ns, status,
             error_message, parent_span_id, camera_id, attributes, size_bytes)
         SELECT event_id, frame_id, service, stage, start_ns, end_ns, status, error_message,
             parent_span_id, camera_id, attributes, size_bytes
         FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[],
             $7::int2[], $8::text[], $9::bytea[], $10::text[], $11::text[], $12::int8[])
             WITH ORDINALITY AS batch (event_id, frame_id, service, stage, start_ns, end_ns,
             status, error_message, parent_span_id, camera_id, attributes, size_bytes, n)
         ORDER BY n
         ON CONFLICT (frame_id, event_id) DO NOTHING
         RETURNING position, event_id, frame_id",
    )
    .await?;
    let rows = transaction
        .query(
            &insert,
            &[
                &event_ids,
                &frame_ids,
                &services,
                &stages,
                &starts,
                &ends,
                &statuses,
                &errors,
                &parents,
                &cameras,
                &attributes,
                &sizes,
            ],
        )
        .await
        .map_err(postgres_error)?;
    let mut inserted_ids = HashSet::with_capacity(rows.len());
    let mut last_position = 0i64;
    for row in &rows {
        last_position = last_position.max(row.try_get(0).map_err(postgres_error)?);
        let id: Vec<u8> = row.try_get(1).map_err(postgres_error)?;
        let frame_id: String = row.try_get(2).map_err(postgres_error)?;
        inserted_ids.insert((id, frame_id));
    }
    let mut inserted: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    let mut bytes = 0;
    for ((event, id), size) in unique.iter().zip(event_ids).zip(&sizes) {
        if inserted_ids.contains(&(id, event.frame_id.as_str().to_owned())) {
            inserted
                .entry(event.frame_id.as_str())
                .or_default()
                .push(event);
            bytes += size;
        }
    }

    let frame_keys: Vec<&str> = inserted.keys().copied().collect();
    let mut old_frames = load_frames(statements, &transaction, &frame_keys).await?;
    let mut changes = Vec::with_capacity(inserted.len());
    for (frame_id, frame_events) in &inserted {
        let old = old_frames.remove(*frame_id);
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
    save_projections(statements, &transaction, &changes, None).await?;
    let update = statement(
        statements,
        &transaction,
        "UPDATE counters SET events = events + $1, frames = frames + $2, bytes = bytes + $3,
             last_position = greatest(last_position, $4) WHERE id = 1",
    )
    .await?;
    let inserted_count = rows.len() as i64;
    transaction
        .execute(
            &update,
            &[&inserted_count, &new_frames, &bytes, &last_position],
        )
        .await
        .map_err(postgres_error)?;
    transaction.commit().await.map_err(postgres_error)?;
    let inserted_count = inserted_count as u64;
    Ok(AppendOutcome {
        inserted: inserted_count,
        duplicates: batch.len() as u64 - inserted_count,
    })
}

/// Writes the frames and cameras a change set touches. `removed_frames` (for retention)
/// are frames whose last event was deleted; then the touched cameras also get their first
/// and last seen read back from the remaining frames.
async fn save_projections(
    statements: &mut HashMap<String, Statement>,
    client: &impl GenericClient,
    changes: &[(Option<FrameRow>, Option<FrameRow>)],
    removed_frames: Option<&[&str]>,
) -> Result<(), StoreError> {
    let camera_ids: BTreeSet<&str> = changes
        .iter()
        .flat_map(|(old, new)| [old.as_ref(), new.as_ref()])
        .flatten()
        .filter_map(|frame| frame.camera_id.as_deref())
        .collect();
    let camera_ids: Vec<&str> = camera_ids.into_iter().collect();
    let mut cameras = load_cameras(statements, client, &camera_ids).await?;
    for (old, new) in changes {
        apply_frame_change(&mut cameras, old.as_ref(), new.as_ref());
    }

    let frames: Vec<&FrameRow> = changes.iter().filter_map(|(_, new)| new.as_ref()).collect();
    if !frames.is_empty() {
        let upsert = statement(
            statements,
            client,
            "INSERT INTO frames (frame_id, camera_id, first_seen, last_seen, duration, events,
                 errors, stages)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[],
                 $6::int8[], $7::int8[], $8::text[])
             ON CONFLICT (frame_id) DO UPDATE SET camera_id = excluded.camera_id,
                 first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                 duration = excluded.duration, events = excluded.events,
                 errors = excluded.errors, stages = excluded.stages",
        )
        .await?;
        let ids: Vec<&str> = frames.iter().map(|f| f.frame_id.as_str()).collect();
        let cameras_of: Vec<Option<&str>> = frames.iter().map(|f| f.camera_id.as_deref()).collect();
        let firsts: Vec<i64> = frames.iter().map(|f| f.first_seen).collect();
        let lasts: Vec<i64> = frames.iter().map(|f| f.last_seen).collect();
        let durations: Vec<i64> = frames.iter().map(|f| f.duration()).collect();
        let counts: Vec<i64> = frames.iter().map(|f| f.events).collect();
        let errors: Vec<i64> = frames.iter().map(|f| f.errors).collect();
        let stages: Vec<String> = frames.iter().map(|f| f.stages_json()).collect();
        client
            .execute(
                &upsert,
                &[
                    &ids,
                    &cameras_of,
                    &firsts,
                    &lasts,
                    &durations,
                    &counts,
                    &errors,
                    &stages,
                ],
            )
            .await
            .map_err(postgres_error)?;
    }
    if let Some(removed) = removed_frames {
        if !removed.is_empty() {
            let delete = statement(
                statements,
                client,
                "DELETE FROM frames WHERE frame_id = ANY($1)",
            )
            .await?;
            client
                .execute(&delete, &[&removed])
                .await
                .map_err(postgres_error)?;
        }
        // Deleting events can move a camera's first and last seen inwards.
        let bounds = statement(
            statements,
            client,
            "SELECT (SELECT first_seen FROM frames WHERE camera_id = $1
                     ORDER BY first_seen LIMIT 1),
                    (SELECT max(last_seen) FROM frames WHERE camera_id = $1)",
        )
        .await?;
        for camera in cameras.values_mut().filter(|camera| camera.frames > 0) {
            let row = client
                .query_one(&bounds, &[&camera.camera_id])
                .await
                .map_err(postgres_error)?;
            let first: Option<i64> = row.try_get(0).map_err(postgres_error)?;
            let last: Option<i64> = row.try_get(1).map_err(postgres_error)?;
            camera.first_seen = first.unwrap_or(camera.first_seen);
            camera.last_seen = last.unwrap_or(camera.last_seen);
        }
    }

    let (kept, emptied): (Vec<&CameraRow>, Vec<&CameraRow>) =
        cameras.values().partition(|camera| camera.frames > 0);
    if !kept.is_empty() {
        let upsert = statement(
            statements,
            client,
            "INSERT INTO cameras (camera_id, frames, failed_frames, events, first_seen,
                 last_seen, histogram)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[],
                 $6::int8[], $7::bytea[])
             ON CONFLICT (camera_id) DO UPDATE SET frames = excluded.frames,
                 failed_frames = excluded.failed_frames, events = excluded.events,
                 first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                 histogram = excluded.histogram",
        )
        .await?;
        let ids: Vec<&str> = kept.iter().map(|c| c.camera_id.as_str()).collect();
        let frames: Vec<i64> = kept.iter().map(|c| c.frames).collect();
        let failed: Vec<i64> = kept.iter().map(|c| c.failed_frames).collect();
        let events: Vec<i64> = kept.iter().map(|c| c.events).collect();
        let firsts: Vec<i64> = kept.iter().map(|c| c.first_seen).collect();
        let lasts: Vec<i64> = kept.iter().map(|c| c.last_seen).collect();
        let histograms: Vec<Vec<u8>> = kept.iter().map(|c| c.histogram.encode()).collect();
        client
            .execute(
                &upsert,
                &[
                    &ids,
                    &frames,
                    &failed,
                    &events,
                    &firsts,
                    &lasts,
                    &histograms,
                ],
            )
            .await
            .map_err(postgres_error)?;
    }
    if !emptied.is_empty() {
        let delete = statement(
            statements,
            client,
            "DELETE FROM cameras WHERE camera_id = ANY($1)",
        )
        .await?;
        let ids: Vec<&str> = emptied.iter().map(|c| c.camera_id.as_str()).collect();
        client
            .execute(&delete, &[&ids])
            .await
            .map_err(postgres_error)?;
    }
    Ok(())
}

async fn load_frames(
    statements: &mut HashMap<String, Statement>,
    client: &impl GenericClient,
    frame_ids: &[&str],
) -> Result<HashMap<String, FrameRow>, StoreError> {
    if frame_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let select = statement(
        statements,
        client,
        &format!("SELECT {FRAME_COLUMNS} FROM frames WHERE frame_id = ANY($1)"),
    )
    .await?;
    let rows = client
        .query(&select, &[&frame_ids])
        .await
        .map_err(postgres_error)?;
    rows.iter()
        .map(|row| decode_frame(row).map(|frame| (frame.frame_id.clone(), frame)))
        .collect()
}

async fn load_cameras(
    statements: &mut HashMap<String, Statement>,
    client: &impl GenericClient,
    camera_ids: &[&str],
) -> Result<BTreeMap<String, CameraRow>, StoreError> {
    if camera_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let select = statement(
        statements,
        client,
        "SELECT camera_id, frames, failed_frames, events, first_seen, last_seen, histogram
         FROM cameras WHERE camera_id = ANY($1)",
    )
    .await?;
    let rows = client
        .query(&select, &[&camera_ids])
        .await
        .map_err(postgres_error)?;
    let mut cameras = BTreeMap::new();
    for row in rows {
        let get_i64 = |index: usize| -> Result<i64, StoreError> {
            row.try_get(index).map_err(postgres_error)
        };
        let camera_id: String = row.try_get(0).map_err(postgres_error)?;
        let histogram: Vec<u8> = row.try_get(6).map_err(postgres_error)?;
        let camera = CameraRow {
            camera_id: camera_id.clone(),
            frames: get_i64(1)?,
            failed_frames: get_i64(2)?,
            events: get_i64(3)?,
            first_seen: get_i64(4)?,
            last_seen: get_i64(5)?,
            histogram: Histogram::decode(&histogram)?,
        };
        cameras.insert(camera_id, camera);
    }
    Ok(cameras)
}

fn decode_frame(row: &Row) -> Result<FrameRow, StoreError> {
    let stages: String = row.try_get(6).map_err(postgres_error)?;
    Ok(FrameRow {
        frame_id: row.try_get(0).map_err(postgres_error)?,
        camera_id: row.try_get(1).map_err(postgres_error)?,
        first_seen: row.try_get(2).map_err(postgres_error)?,
        last_seen: row.try_get(3).map_err(postgres_error)?,
        events: row.try_get(4).map_err(postgres_error)?,
        errors: row.try_get(5).map_err(postgres_error)?,
        stages: FrameRow::parse_stages(&stages)?,
    })
}

fn decode_event(row: &Row, frame_id: &FrameId) -> Result<StoredEvent, StoreError> {
    let get = postgres_error;
    let status: i16 = row.try_get(6).map_err(get)?;
    EventRow {
        position: row.try_get(0).map_err(get)?,
        event_id: row.try_get(1).map_err(get)?,
        service: row.try_get(2).map_err(get)?,
        stage: row.try_get(3).map_err(get)?,
        start_unix_nanos: row.try_get(4).map_err(get)?,
        end_unix_nanos: row.try_get(5).map_err(get)?,
        status: i64::from(status),
        error_message: row.try_get(7).map_err(get)?,
        parent_span_id: row.try_get(8).map_err(get)?,
        camera_id: row.try_get(9).map_err(get)?,
        attributes: row.try_get(10).map_err(get)?,
    }
    .decode(*frame_id)
}

/// Deletes up to [`RETENTION_CHUNK`] events beyond the policy in one transaction and fixes
/// the projections of their frames. Age goes first, then count, then size.
async fn retention_chunk(
    pooled: &mut Pooled,
    retention: &Retention,
    cutoff: Option<i64>,
) -> Result<RetentionOutcome, StoreError> {
    let Connection { client, statements } = &mut **pooled;
    let transaction = client.transaction().await.map_err(postgres_error)?;
    let counters = lock_counters(statements, &transaction).await?;
    let chunk = RETENTION_CHUNK as i64;
    let oldest = "DELETE FROM events WHERE position IN
                      (SELECT position FROM events ORDER BY position LIMIT $1)
                  RETURNING frame_id, size_bytes";
    let mut deleted: Vec<Row> = Vec::new();
    if let Some(cutoff) = cutoff {
        // Old events are found through their frames: an event that ended before the
        // cutoff started before it, so its frame was first seen before it (see the SQLite
        // backend, which does the same).
        let delete = statement(
            statements,
            &transaction,
            "DELETE FROM events WHERE position IN
                 (SELECT events.position FROM frames
                      JOIN events ON events.frame_id = frames.frame_id
                  WHERE frames.first_seen < $1 AND events.end_ns < $1
                  ORDER BY frames.first_seen, frames.frame_id LIMIT $2)
             RETURNING frame_id, size_bytes",
        )
        .await?;
        deleted = transaction
            .query(&delete, &[&cutoff, &chunk])
            .await
            .map_err(postgres_error)?;
    }
    if deleted.is_empty()
        && let Some(max) = retention.max_events
    {
        let excess = counters.events - i64::try_from(max).unwrap_or(i64::MAX);
        if excess > 0 {
            let delete = statement(statements, &transaction, oldest).await?;
            deleted = transaction
                .query(&delete, &[&excess.min(chunk)])
                .await
                .map_err(postgres_error)?;
        }
    }
    if deleted.is_empty()
        && let Some(max) = retention.max_bytes
    {
        let excess = counters.bytes - i64::try_from(max).unwrap_or(i64::MAX);
        if excess > 0 {
            let sizes = statement(
                statements,
                &transaction,
                "SELECT size_bytes FROM events ORDER BY position LIMIT $1",
            )
            .await?;
            let rows = transaction
                .query(&sizes, &[&chunk])
                .await
                .map_err(postgres_error)?;
            let (mut count, mut covered) = (0i64, 0i64);
            for row in rows {
                if covered >= excess {
                    break;
                }
                covered += row.try_get::<_, i64>(0).map_err(postgres_error)?;
                count += 1;
            }
            let delete = statement(statements, &transaction, oldest).await?;
            deleted = transaction
                .query(&delete, &[&count])
                .await
                .map_err(postgres_error)?;
        }
    }
    if deleted.is_empty() {
        return Ok(RetentionOutcome::default());
    }

    let mut bytes = 0i64;
    let mut frame_ids = BTreeSet::new();
    for row in &deleted {
        frame_ids.insert(row.try_get::<_, String>(0).map_err(postgres_error)?);
        bytes += row.try_get::<_, i64>(1).map_err(postgres_error)?;
    }
    let frame_keys: Vec<&str> = frame_ids.iter().map(String::as_str).collect();
    let mut old_frames = load_frames(statements, &transaction, &frame_keys).await?;
    let select = statement(
        statements,
        &transaction,
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE frame_id = ANY($1)
             ORDER BY frame_id, start_ns, position"
        ),
    )
    .await?;
    let rows = transaction
        .query(&select, &[&frame_keys])
        .await
        .map_err(postgres_error)?;
    let mut remaining: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for row in &rows {
        let frame_id: String = row.try_get(11).map_err(postgres_error)?;
        let parsed: FrameId = frame_id
            .parse()
            .map_err(|error| corrupt(format!("stored frame id {frame_id:?}: {error}")))?;
        remaining
            .entry(frame_id)
            .or_default()
            .push(decode_event(row, &parsed)?.event);
    }
    let mut changes = Vec::with_capacity(frame_ids.len());
    let mut removed = Vec::new();
    for frame_id in &frame_keys {
        let old = old_frames.remove(*frame_id);
        let new = remaining.get(*frame_id).and_then(FrameRow::from_events);
        if new.is_none() && old.is_some() {
            removed.push(*frame_id);
        }
        changes.push((old, new));
    }
    save_projections(statements, &transaction, &changes, Some(&removed)).await?;
    let update = statement(
        statements,
        &transaction,
        "UPDATE counters SET events = events - $1, frames = frames - $2, bytes = bytes - $3
         WHERE id = 1",
    )
    .await?;
    let events_deleted = deleted.len() as i64;
    let frames_deleted = removed.len() as i64;
    transaction
        .execute(&update, &[&events_deleted, &frames_deleted, &bytes])
        .await
        .map_err(postgres_error)?;
    transaction.commit().await.map_err(postgres_error)?;
    Ok(RetentionOutcome {
        events_deleted: events_deleted as u64,
        frames_deleted: frames_deleted as u64,
    })
}
