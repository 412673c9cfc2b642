//! Test stores (a temporary SQLite file or a temporary PostgreSQL database, removed on
//! drop) and event builders.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use frame_tracking::FrameId;
use opentelemetry::trace::{SpanId, TraceId};
use tracker::model::{CameraStats, Event, EventId, EventStatus, FrameSummary};
use tracker::store::{self, JourneyStore, StoreConfig};

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A store on fresh storage, removed when dropped.
pub(crate) struct TestStore {
    pub(crate) store: Arc<dyn JourneyStore>,
    pub(crate) config: StoreConfig,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Database { admin_url: String, name: String },
}

impl TestStore {
    pub(crate) async fn new(backend: Backend) -> TestStore {
        let name = unique_name();
        let (config, cleanup) = match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                let config = StoreConfig::Sqlite {
                    path: dir.join("data").join("tracker.db"),
                };
                (config, Cleanup::Dir(dir))
            }
            Backend::Postgres => {
                let admin_url = testkit::POSTGRES.require();
                execute(&admin_url, &format!("CREATE DATABASE {name}")).await;
                let config = StoreConfig::Postgres {
                    url: with_database(&admin_url, &name),
                };
                (config, Cleanup::Database { admin_url, name })
            }
        };
        let store = store::open(&config)
            .await
            .unwrap_or_else(|error| panic!("open {config:?}: {error}"));
        TestStore {
            store,
            config,
            cleanup,
        }
    }

    /// Opens the same storage again, as a restarted service would, and closes the old
    /// store.
    pub(crate) async fn restart(&mut self) {
        let reopened = store::open(&self.config)
            .await
            .unwrap_or_else(|error| panic!("reopen {:?}: {error}", self.config));
        drop(std::mem::replace(&mut self.store, reopened));
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop may run inside the test's runtime: drop the database from a thread
                // with its own runtime.
                let dropper = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for dropping the test database");
                    runtime.block_on(execute(
                        &admin_url,
                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    ));
                });
                let _ = dropper.join();
            }
        }
    }
}

/// A name no other test (of this run or an earlier one) uses.
pub(crate) fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!(
        "tracker_store_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs one statement on the server at `url`.
pub(crate) async fn execute(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connect to PostgreSQL: {error}"));
    let task = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error:?}"));
    drop(client);
    let _ = task.await;
}

/// `url` pointing at database `name` instead of its own.
pub(crate) fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |index| &tail[index..]);
    format!("{scheme}://{authority}/{name}{query}")
}

/// A new frame id of `camera`.
pub(crate) fn frame(camera: &str) -> FrameId {
    FrameId::generate(camera, "rgb").expect("a valid camera id")
}

/// An event of `frame` with fresh ids, status unset, the frame's camera.
pub(crate) fn event(frame: &FrameId, stage: &str, start: i64, end: i64) -> Event {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut trace = [0u8; 16];
    trace[..4].copy_from_slice(&std::process::id().to_be_bytes());
    trace[8..].copy_from_slice(&n.to_be_bytes());
    let trace_id = TraceId::from_bytes(trace);
    let span_id = SpanId::from_bytes(n.to_be_bytes());
    Event {
        event_id: EventId::from_span(trace_id, span_id),
        frame_id: *frame,
        service: "frame-processor".to_owned(),
        stage: stage.to_owned(),
        start_unix_nanos: start,
        end_unix_nanos: end,
        status: EventStatus::Unset,
        error_message: None,
        trace_id,
        span_id,
        parent_span_id: None,
        camera_id: Some(frame.camera_id().to_owned()),
        attributes: BTreeMap::new(),
    }
}

/// `event` marked failed.
pub(crate) fn failed(mut event: Event, message: &str) -> Event {
    event.status = EventStatus::Error;
    event.error_message = Some(message.to_owned());
    event
}

/// Now, Unix nanoseconds.
pub(crate) fn now_nanos() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(elapsed.as_nanos()).expect("before 2262")
}

/// The summary of a frame the store must know.
pub(crate) async fn summary(store: &Arc<dyn JourneyStore>, frame: &FrameId) -> FrameSummary {
    store
        .frame_summary(frame)
        .await
        .expect("frame_summary")
        .expect("the frame has a summary")
}

/// The statistics of a camera the store must know.
pub(crate) async fn camera(store: &Arc<dyn JourneyStore>, camera_id: &str) -> CameraStats {
    store
        .camera_stats(camera_id)
        .await
        .expect("camera_stats")
        .unwrap_or_else(|| panic!("the store has statistics for {camera_id}"))
}
