//! A SQLite database written with the first schema (frame ids in the event log, an index
//! on end times) still opens: the store migrates it and everything reads back the same.

use rusqlite::{Connection, params};
use tracker::model::{Event, EventStatus, FrameQuery, FrameStatus};
use tracker::store::{self, Retention, StoreConfig};

use crate::support::{camera, event, failed, frame, summary, unique_name};

/// The first schema, as `0001_event_log.sql` created it.
const SCHEMA_V1: &str = include_str!("../../migrations/sqlite/0001_event_log.sql");

/// Writes `events` (each with its position) the way the first schema stored them.
fn insert_v1_event(connection: &Connection, position: i64, event: &Event) {
    let status = match event.status {
        EventStatus::Unset => 0,
        EventStatus::Ok => 1,
        EventStatus::Error => 2,
    };
    connection
        .execute(
            "INSERT INTO events (position, event_id, frame_id, service, stage, start_ns, end_ns,
                 status, error_message, parent_span_id, camera_id, attributes, size_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, NULL, 200)",
            params![
                position,
                &event.event_id.to_bytes()[..],
                event.frame_id.as_str(),
                event.service,
                event.stage,
                event.start_unix_nanos,
                event.end_unix_nanos,
                status,
                event.error_message,
                event.camera_id,
            ],
        )
        .expect("insert a version 1 event");
}

/// A camera histogram blob: (bucket u16, count u64) little-endian pairs. Durations below
/// 16 ns are their own bucket.
fn histogram(buckets: &[(u16, u64)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (bucket, count) in buckets {
        bytes.extend_from_slice(&bucket.to_le_bytes());
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_sqlite_database_is_migrated_and_keeps_everything() {
    let dir = std::env::temp_dir().join(unique_name());
    std::fs::create_dir_all(&dir).expect("a test directory");
    let path = dir.join("tracker.db");
    let (a, b) = (frame("cam01"), frame("cam01"));
    let a_events = [event(&a, "capture", 1, 3), event(&a, "process", 3, 5)];
    let b_event = failed(event(&b, "capture", 10, 12), "boom");
    {
        let connection = Connection::open(&path).expect("open the version 1 database");
        connection
            .execute_batch(SCHEMA_V1)
            .expect("the version 1 schema");
        connection
            .execute_batch(
                "CREATE TABLE schema_migrations (
                     version INTEGER PRIMARY KEY,
                     name TEXT NOT NULL,
                     applied_unix_seconds INTEGER NOT NULL
                 );
                 INSERT INTO schema_migrations VALUES (1, 'event_log', 0);",
            )
            .expect("the migration record");
        insert_v1_event(&connection, 1, &a_events[0]);
        insert_v1_event(&connection, 2, &a_events[1]);
        insert_v1_event(&connection, 3, &b_event);
        let insert_frame = "INSERT INTO frames (frame_id, camera_id, first_seen, last_seen,
                                duration, events, errors, stages)
                            VALUES (?1, 'cam01', ?2, ?3, ?4, ?5, ?6, ?7)";
        connection
            .execute(
                insert_frame,
                params![
                    a.as_str(),
                    1,
                    5,
                    4,
                    2,
                    0,
                    r#"[["capture",1],["process",3]]"#
                ],
            )
            .expect("frame a");
        connection
            .execute(
                insert_frame,
                params![b.as_str(), 10, 12, 2, 1, 1, r#"[["capture",10]]"#],
            )
            .expect("frame b");
        connection
            .execute(
                "INSERT INTO cameras VALUES ('cam01', 2, 1, 3, 1, 12, ?1)",
                [histogram(&[(2, 1), (4, 1)])],
            )
            .expect("camera");
        connection
            .execute(
                "UPDATE counters SET events = 3, frames = 2, bytes = 600, last_position = 3",
                [],
            )
            .expect("counters");
    }

    let store = store::open(&StoreConfig::Sqlite { path: path.clone() })
        .await
        .expect("the store opens and migrates the version 1 database");

    let journey = store.journey(&a).await.expect("journey");
    let positions: Vec<i64> = journey.iter().map(|stored| stored.position).collect();
    assert_eq!(positions, [1, 2]);
    let events: Vec<Event> = journey.into_iter().map(|stored| stored.event).collect();
    assert_eq!(events, a_events);
    let summary = summary(&store, &b).await;
    assert_eq!(summary.status, FrameStatus::Failed);
    assert_eq!(summary.total_duration_nanos, 2);
    let camera = camera(&store, "cam01").await;
    assert_eq!(
        (camera.frames, camera.failed_frames, camera.events),
        (2, 1, 3)
    );
    assert_eq!(camera.latency_p99_nanos, 4);
    let page = store
        .search_frames(&FrameQuery {
            camera_id: Some("cam01".to_owned()),
            limit: 10,
            ..FrameQuery::default()
        })
        .await
        .expect("search");
    let found: Vec<_> = page.frames.iter().map(|frame| frame.frame_id).collect();
    assert_eq!(found, [b, a]);
    let status = store.status().await.expect("status");
    assert_eq!(
        (status.events, status.frames, status.last_position),
        (3, 2, 3)
    );

    // Appends go on: re-delivered events are recognised, new ones get later positions,
    // and a new frame gets a key of its own.
    let outcome = store.append(&a_events).await.expect("append");
    assert_eq!((outcome.inserted, outcome.duplicates), (0, 2));
    let c = frame("cam01");
    let outcome = store
        .append(&[event(&a, "store", 5, 6), event(&c, "capture", 20, 21)])
        .await
        .expect("append");
    assert_eq!((outcome.inserted, outcome.duplicates), (2, 0));
    let journey = store.journey(&a).await.expect("journey");
    assert_eq!(journey.len(), 3);
    assert_eq!(journey[2].position, 4);
    assert_eq!(store.journey(&c).await.expect("journey")[0].position, 5);
    assert_eq!(store.journey(&b).await.expect("journey").len(), 1);

    // Retention works on the migrated layout.
    let outcome = store
        .apply_retention(&Retention {
            max_age: None,
            max_events: Some(2),
            max_bytes: None,
        })
        .await
        .expect("retention");
    assert_eq!((outcome.events_deleted, outcome.frames_deleted), (3, 1));
    assert_eq!(store.journey(&a).await.expect("journey").len(), 1);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
