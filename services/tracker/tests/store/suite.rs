//! The behaviours every backend must have, one function per test; `main.rs` runs each
//! against every backend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tracker::model::{
    Event, EventStatus, FrameCursor, FrameQuery, FrameStatus, FrameSummary, StoredEvent,
};
use tracker::store::{self, JourneyStore, Retention, StoreError};

use crate::support::{TestStore, camera, event, failed, frame, now_nanos, summary};

const MS: i64 = 1_000_000;

fn no_retention() -> Retention {
    Retention {
        max_age: None,
        max_events: None,
        max_bytes: None,
    }
}

async fn append(store: &Arc<dyn JourneyStore>, events: &[Event]) {
    let outcome = store.append(events).await.expect("append");
    assert_eq!(outcome.inserted + outcome.duplicates, events.len() as u64);
}

async fn stages(store: &Arc<dyn JourneyStore>, frame: &frame_tracking::FrameId) -> Vec<String> {
    store
        .journey(frame)
        .await
        .expect("journey")
        .into_iter()
        .map(|stored| stored.event.stage)
        .collect()
}

pub(crate) async fn journey_is_ordered_by_start_time_then_position(test: TestStore) {
    let store = &test.store;
    let (frame, other) = (frame("cam01"), frame("cam01"));
    append(
        store,
        &[
            event(&frame, "c", 300, 310),
            event(&frame, "a", 100, 110),
            event(&other, "x", 50, 60),
        ],
    )
    .await;
    append(
        store,
        &[event(&frame, "b", 200, 210), event(&frame, "d", 100, 105)],
    )
    .await;

    assert_eq!(stages(store, &frame).await, ["a", "d", "b", "c"]);
    let journey = store.journey(&frame).await.expect("journey");
    assert!(
        journey[0].position < journey[1].position,
        "equal starts keep append order"
    );
    assert_eq!(stages(store, &other).await, ["x"]);
}

pub(crate) async fn stored_events_read_back_unchanged(test: TestStore) {
    let store = &test.store;
    let frame = frame("cam-7");
    let mut rich = failed(
        event(&frame, "detect_objects", 1_000, 2_500),
        "model timed out",
    );
    rich.parent_span_id = Some(event(&frame, "x", 0, 0).span_id);
    rich.service = "frame-processor".to_owned();
    rich.attributes = BTreeMap::from([
        ("frame.size_bytes".to_owned(), serde_json::json!(921_600)),
        ("messaging.system".to_owned(), serde_json::json!("redis")),
        ("detections".to_owned(), serde_json::json!([1, 2.5, null])),
    ]);
    let mut bare = event(&frame, "capture", 500, 900);
    bare.camera_id = None;
    bare.status = EventStatus::Ok;
    append(store, &[rich.clone(), bare.clone()]).await;

    let journey: Vec<Event> = store
        .journey(&frame)
        .await
        .expect("journey")
        .into_iter()
        .map(|stored| stored.event)
        .collect();
    assert_eq!(journey, [bare, rich]);
}

pub(crate) async fn unknown_ids_have_no_journey_summary_or_stats(test: TestStore) {
    let store = &test.store;
    append(store, &[event(&frame("cam01"), "capture", 1, 2)]).await;
    let unknown = frame("cam01");
    assert_eq!(store.journey(&unknown).await.expect("journey"), []);
    assert_eq!(store.frame_summary(&unknown).await.expect("summary"), None);
    assert_eq!(store.camera_stats("nope").await.expect("stats"), None);
    assert_eq!(
        store.append(&[]).await.expect("empty append"),
        Default::default()
    );
}

pub(crate) async fn duplicates_are_ignored_within_and_across_batches(test: TestStore) {
    let store = &test.store;
    let frame = frame("cam01");
    let (e1, e2, e3) = (
        event(&frame, "capture", 1, 2),
        event(&frame, "process", 3, 4),
        event(&frame, "store", 5, 6),
    );
    let first = store
        .append(&[e1.clone(), e2.clone(), e1.clone()])
        .await
        .expect("append");
    assert_eq!((first.inserted, first.duplicates), (2, 1));
    let second = store
        .append(&[e2.clone(), e3.clone()])
        .await
        .expect("append");
    assert_eq!((second.inserted, second.duplicates), (1, 1));
    // The same id with different content is still a duplicate: the first one wins.
    let mut changed = e3.clone();
    changed.stage = "changed".to_owned();
    let third = store.append(&[changed]).await.expect("append");
    assert_eq!((third.inserted, third.duplicates), (0, 1));

    assert_eq!(stages(store, &frame).await, ["capture", "process", "store"]);
    assert_eq!(summary(store, &frame).await.events, 3);
    let status = store.status().await.expect("status");
    assert_eq!((status.events, status.frames), (3, 1));
    let camera = camera(store, "cam01").await;
    assert_eq!((camera.frames, camera.events), (1, 3));
}

pub(crate) async fn a_failing_batch_stores_nothing(test: TestStore) {
    let store = &test.store;
    let frame = frame("cam01");
    append(store, &[event(&frame, "capture", 10, 20)]).await;
    let before = store.status().await.expect("status");
    let summary_before = summary(store, &frame).await;

    // The last event ends before it starts: the store refuses it, after having inserted
    // the events before it in the same transaction.
    let other = crate::support::frame("cam02");
    let batch = [
        event(&frame, "process", 30, 40),
        event(&other, "capture", 1, 2),
        event(&frame, "broken", 50, 49),
    ];
    let error = store
        .append(&batch)
        .await
        .expect_err("the batch is refused");
    assert!(matches!(error, StoreError::Failed(_)), "{error:?}");

    assert_eq!(stages(store, &frame).await, ["capture"]);
    assert_eq!(store.journey(&other).await.expect("journey"), []);
    assert_eq!(summary(store, &frame).await, summary_before);
    assert_eq!(store.camera_stats("cam02").await.expect("stats"), None);
    let after = store.status().await.expect("status");
    assert_eq!((after.events, after.frames), (before.events, before.frames));

    // The store still works, and the refused events can be sent again once fixed.
    append(store, &batch[..2]).await;
    assert_eq!(stages(store, &frame).await, ["capture", "process"]);
    assert_eq!(stages(store, &other).await, ["capture"]);
}

pub(crate) async fn positions_strictly_increase_in_append_order(test: TestStore) {
    let store = &test.store;
    let frames: Vec<_> = (0..4).map(|_| frame("cam01")).collect();
    let mut appended = Vec::new();
    for batch in 0..5i64 {
        let events: Vec<Event> = (0..20i64)
            .map(|n| {
                let frame = &frames[(n % 4) as usize];
                // Start times go backwards, so start order and append order differ.
                event(
                    frame,
                    &format!("s{batch}-{n}"),
                    10_000 - batch * 100 - n,
                    20_000,
                )
            })
            .collect();
        append(store, &events).await;
        appended.extend(events.into_iter().map(|event| event.event_id));
    }
    let mut stored: Vec<StoredEvent> = Vec::new();
    for frame in &frames {
        stored.extend(store.journey(frame).await.expect("journey"));
    }
    stored.sort_by_key(|stored| stored.position);
    let in_position_order: Vec<_> = stored.iter().map(|stored| stored.event.event_id).collect();
    assert_eq!(in_position_order, appended);
    assert!(
        stored
            .windows(2)
            .all(|pair| pair[0].position < pair[1].position)
    );
    assert!(stored[0].position > 0);
    let status = store.status().await.expect("status");
    let last = stored.last().expect("events").position;
    assert_eq!(status.last_position, last);
    assert_eq!(status.projected_position, last);
}

pub(crate) async fn frame_summary_tracks_stages_duration_and_status(test: TestStore) {
    let store = &test.store;
    let frame = frame("cam01");
    append(
        store,
        &[
            event(&frame, "capture", 1_000, 1_500),
            failed(event(&frame, "process", 1_600, 4_000), "decoder failed"),
            event(&frame, "detect", 2_000, 3_000),
        ],
    )
    .await;
    let first = summary(store, &frame).await;
    assert_eq!(first.frame_id, frame);
    assert_eq!(first.camera_id.as_deref(), Some("cam01"));
    assert_eq!(first.first_seen_unix_nanos, 1_000);
    assert_eq!(first.last_seen_unix_nanos, 4_000);
    assert_eq!(first.total_duration_nanos, 3_000);
    assert_eq!(first.events, 3);
    assert_eq!(first.stages, ["capture", "process", "detect"]);
    assert_eq!(first.status, FrameStatus::Failed);

    // A later batch with an earlier stage and a repeated stage name.
    append(
        store,
        &[
            event(&frame, "queue", 500, 900),
            event(&frame, "process", 3_500, 3_900),
        ],
    )
    .await;
    let second = summary(store, &frame).await;
    assert_eq!(second.first_seen_unix_nanos, 500);
    assert_eq!(second.total_duration_nanos, 3_500);
    assert_eq!(second.events, 5);
    assert_eq!(second.stages, ["queue", "capture", "process", "detect"]);
    assert_eq!(second.status, FrameStatus::Failed);

    let healthy = crate::support::frame("cam01");
    let mut no_camera = event(&healthy, "capture", 10, 20);
    no_camera.camera_id = None;
    append(store, &[no_camera]).await;
    let ok = summary(store, &healthy).await;
    assert_eq!(ok.status, FrameStatus::Ok);
    assert_eq!(ok.camera_id, None);
    // The camera becomes known with a later event.
    append(store, &[event(&healthy, "process", 30, 40)]).await;
    assert_eq!(
        summary(store, &healthy).await.camera_id.as_deref(),
        Some("cam01")
    );
    let camera = camera(store, "cam01").await;
    assert_eq!(
        (camera.frames, camera.failed_frames, camera.events),
        (2, 1, 7)
    );
}

pub(crate) async fn camera_stats_count_frames_failures_and_percentiles(test: TestStore) {
    let store = &test.store;
    let mut events = Vec::new();
    let mut frames = Vec::new();
    // Frame k (1..=100) lasts k ms, in two events; every tenth fails.
    for k in 1..=100i64 {
        let frame = frame("camA");
        let start = 1_000_000 * MS + k * 1_000 * MS;
        events.push(event(&frame, "capture", start, start + MS / 2));
        let last = event(&frame, "process", start + MS / 4, start + k * MS);
        events.push(if k % 10 == 0 {
            failed(last, "boom")
        } else {
            last
        });
        frames.push(frame);
    }
    for chunk in events.chunks(37) {
        append(store, chunk).await;
    }
    append(store, &[event(&frame("camB"), "capture", 5, 10)]).await;

    let stats = camera(store, "camA").await;
    assert_eq!(stats.camera_id, "camA");
    assert_eq!(
        (stats.frames, stats.failed_frames, stats.events),
        (100, 10, 200)
    );
    assert_eq!(stats.first_seen_unix_nanos, 1_000_000 * MS + 1_000 * MS);
    assert_eq!(
        stats.last_seen_unix_nanos,
        1_000_000 * MS + 100 * 1_000 * MS + 100 * MS
    );
    // Nearest rank over durations 1..=100 ms, within the histogram's 1/32.
    for (estimate, truth) in [
        (stats.latency_p50_nanos, 50 * MS),
        (stats.latency_p90_nanos, 90 * MS),
        (stats.latency_p99_nanos, 99 * MS),
    ] {
        let error = (estimate - truth).abs() as f64 / truth as f64;
        assert!(error <= 1.0 / 32.0, "{estimate} vs {truth}");
    }

    // Growing the ten shortest frames moves them in the histogram, not the frame count:
    // the durations become 11..=100 ms and ten of 1 to 10 s.
    let early: Vec<Event> = frames[..10]
        .iter()
        .map(|frame| event(frame, "queue", 1_000_000 * MS, 1_000_000 * MS + 1))
        .collect();
    append(store, &early).await;
    let after = camera(store, "camA").await;
    assert_eq!((after.frames, after.events), (100, 210));
    assert_eq!(after.first_seen_unix_nanos, 1_000_000 * MS);
    let p50_error = (after.latency_p50_nanos - 60 * MS).abs() as f64 / (60 * MS) as f64;
    assert!(p50_error <= 1.0 / 32.0, "{after:?}");
    assert!(after.latency_p99_nanos > 1_000 * MS, "{after:?}");

    let other = camera(store, "camB").await;
    assert_eq!((other.frames, other.failed_frames), (1, 0));
    assert_eq!(other.latency_p50_nanos, 5);
}

pub(crate) async fn search_pages_return_every_match_once_in_order(test: TestStore) {
    let store = &test.store;
    let cameras = ["north", "south", "east"];
    let mut events = Vec::new();
    for n in 0..150i64 {
        let frame = frame(cameras[(n % 3) as usize]);
        // Groups of four frames share a first-seen time: pages must break ties by id.
        let start = 1_000 + (n / 4) * 10;
        let duration = (n * 7) % 50 + 1;
        let last = event(&frame, "process", start + 1, start + duration);
        events.push(event(&frame, "capture", start, start + 1));
        events.push(if n % 5 == 0 {
            failed(last, "boom")
        } else {
            last
        });
    }
    for chunk in events.chunks(64) {
        append(store, chunk).await;
    }
    let mut summaries: Vec<FrameSummary> = Vec::new();
    for event in events.iter().step_by(2) {
        summaries.push(summary(store, &event.frame_id).await);
    }
    summaries.sort_by(|a, b| {
        (b.first_seen_unix_nanos, b.frame_id.as_str())
            .cmp(&(a.first_seen_unix_nanos, a.frame_id.as_str()))
    });

    let queries = [
        FrameQuery::default(),
        FrameQuery {
            camera_id: Some("south".to_owned()),
            ..FrameQuery::default()
        },
        FrameQuery {
            status: Some(FrameStatus::Failed),
            ..FrameQuery::default()
        },
        FrameQuery {
            status: Some(FrameStatus::Ok),
            min_duration_nanos: Some(30),
            ..FrameQuery::default()
        },
        FrameQuery {
            camera_id: Some("east".to_owned()),
            since_unix_nanos: Some(1_100),
            until_unix_nanos: Some(1_300),
            ..FrameQuery::default()
        },
        FrameQuery {
            camera_id: Some("nowhere".to_owned()),
            ..FrameQuery::default()
        },
    ];
    for query in queries {
        let expected: Vec<String> = summaries
            .iter()
            .filter(|summary| matches(&query, summary))
            .map(|summary| summary.frame_id.to_string())
            .collect();
        for limit in [7, 200] {
            let mut seen = Vec::new();
            let mut cursor: Option<FrameCursor> = None;
            loop {
                let page = store
                    .search_frames(&FrameQuery {
                        limit,
                        cursor: cursor.clone(),
                        ..query.clone()
                    })
                    .await
                    .expect("search");
                assert!(page.frames.len() <= limit as usize);
                seen.extend(page.frames.iter().map(|frame| frame.frame_id.to_string()));
                match page.next_cursor {
                    Some(next) => {
                        assert_eq!(page.frames.len(), limit as usize);
                        cursor = Some(next);
                    }
                    None => break,
                }
            }
            assert_eq!(seen, expected, "{query:?}, limit {limit}");
        }
    }
    // Pages carry full summaries.
    let page = store
        .search_frames(&FrameQuery {
            limit: 1,
            ..FrameQuery::default()
        })
        .await
        .expect("search");
    assert_eq!(page.frames, summaries[..1]);
}

fn matches(query: &FrameQuery, summary: &FrameSummary) -> bool {
    query
        .camera_id
        .as_ref()
        .is_none_or(|camera| summary.camera_id.as_ref() == Some(camera))
        && query.status.is_none_or(|status| summary.status == status)
        && query
            .min_duration_nanos
            .is_none_or(|min| summary.total_duration_nanos >= min)
        && query
            .since_unix_nanos
            .is_none_or(|since| summary.first_seen_unix_nanos >= since)
        && query
            .until_unix_nanos
            .is_none_or(|until| summary.first_seen_unix_nanos < until)
}

pub(crate) async fn retention_by_count_deletes_the_oldest_events_and_fixes_projections(
    test: TestStore,
) {
    let store = &test.store;
    let frames: Vec<_> = (0..10).map(|_| frame("cam01")).collect();
    for (n, frame) in frames.iter().enumerate() {
        let base = n as i64 * 100;
        let events = [
            event(frame, "capture", base, base + 10),
            event(frame, "process", base + 10, base + 20),
            if n == 5 {
                failed(event(frame, "store", base + 20, base + 30), "disk")
            } else {
                event(frame, "store", base + 20, base + 30)
            },
        ];
        append(store, &events).await;
    }
    let policy = Retention {
        max_events: Some(14),
        ..no_retention()
    };
    let outcome = store.apply_retention(&policy).await.expect("retention");
    assert_eq!((outcome.events_deleted, outcome.frames_deleted), (16, 5));

    for frame in &frames[..5] {
        assert_eq!(store.journey(frame).await.expect("journey"), []);
        assert_eq!(store.frame_summary(frame).await.expect("summary"), None);
    }
    let partial = summary(store, &frames[5]).await;
    assert_eq!(partial.stages, ["process", "store"]);
    assert_eq!(partial.events, 2);
    assert_eq!(partial.first_seen_unix_nanos, 510);
    assert_eq!(partial.status, FrameStatus::Failed);
    assert_eq!(summary(store, &frames[9]).await.events, 3);

    let status = store.status().await.expect("status");
    assert_eq!((status.events, status.frames), (14, 5));
    let camera = camera(store, "cam01").await;
    assert_eq!(
        (camera.frames, camera.failed_frames, camera.events),
        (5, 1, 14)
    );
    assert_eq!(camera.first_seen_unix_nanos, 510);

    let again = store.apply_retention(&policy).await.expect("retention");
    assert_eq!(again, Default::default());
    // Positions are never reused after a deletion.
    let before = status.last_position;
    append(store, &[event(&frames[9], "late", 999, 1_000)]).await;
    let journey = store.journey(&frames[9]).await.expect("journey");
    assert!(journey.iter().any(|stored| stored.position > before));

    // Everything can go: the camera goes with its last frame.
    let all = Retention {
        max_events: Some(0),
        ..no_retention()
    };
    let outcome = store.apply_retention(&all).await.expect("retention");
    assert_eq!((outcome.events_deleted, outcome.frames_deleted), (15, 5));
    assert_eq!(store.camera_stats("cam01").await.expect("stats"), None);
    let empty = store.status().await.expect("status");
    assert_eq!((empty.events, empty.frames), (0, 0));
    assert!(empty.last_position > before);
}

pub(crate) async fn retention_by_age_deletes_events_that_ended_before_the_cutoff(test: TestStore) {
    let store = &test.store;
    let now = now_nanos();
    let hour = 3_600 * 1_000 * MS;
    let (old, mixed, new) = (frame("cam01"), frame("cam01"), frame("cam01"));
    append(
        store,
        &[
            event(&old, "capture", now - 3 * hour, now - 3 * hour + MS),
            event(&mixed, "capture", now - 2 * hour, now - 2 * hour + MS),
            event(&mixed, "process", now - 10 * MS, now - 5 * MS),
            event(&new, "capture", now - 4 * MS, now - 2 * MS),
        ],
    )
    .await;
    let policy = Retention {
        max_age: Some(Duration::from_secs(3_600)),
        ..no_retention()
    };
    let outcome = store.apply_retention(&policy).await.expect("retention");
    assert_eq!((outcome.events_deleted, outcome.frames_deleted), (2, 1));
    assert_eq!(store.frame_summary(&old).await.expect("summary"), None);
    assert_eq!(stages(store, &mixed).await, ["process"]);
    let mixed = summary(store, &mixed).await;
    assert_eq!(mixed.first_seen_unix_nanos, now - 10 * MS);
    assert_eq!(mixed.total_duration_nanos, 5 * MS);
    assert_eq!(stages(store, &new).await, ["capture"]);
    let camera = camera(store, "cam01").await;
    assert_eq!((camera.frames, camera.events), (2, 2));
    assert_eq!(camera.first_seen_unix_nanos, now - 10 * MS);
    // The larger of the two remaining frames lasts 5 ms.
    let p99 = camera.latency_p99_nanos;
    assert!((p99 - 5 * MS).abs() <= 5 * MS / 32, "{p99}");
}

pub(crate) async fn retention_by_size_keeps_the_log_under_the_limit(test: TestStore) {
    let store = &test.store;
    let frame = frame("cam01");
    // Events of one shape all count the same size.
    let events: Vec<Event> = (0..40)
        .map(|n| event(&frame, "stage", n * 10, n * 10 + 5))
        .collect();
    append(store, &events).await;
    let size = store::retained_size(&events[0]);
    assert!(
        events
            .iter()
            .all(|event| store::retained_size(event) == size)
    );

    let unbounded = Retention {
        max_bytes: Some(u64::MAX),
        ..no_retention()
    };
    let outcome = store.apply_retention(&unbounded).await.expect("retention");
    assert_eq!(outcome, Default::default());

    // Room for ten and a half events keeps the ten newest.
    let policy = Retention {
        max_bytes: Some(size * 10 + size / 2),
        ..no_retention()
    };
    let outcome = store.apply_retention(&policy).await.expect("retention");
    assert_eq!((outcome.events_deleted, outcome.frames_deleted), (30, 0));
    let kept: Vec<i64> = store
        .journey(&frame)
        .await
        .expect("journey")
        .iter()
        .map(|stored| stored.event.start_unix_nanos)
        .collect();
    assert_eq!(kept, (30..40).map(|n| n * 10).collect::<Vec<_>>());
    assert_eq!(summary(store, &frame).await.first_seen_unix_nanos, 300);
}

pub(crate) async fn background_retention_enforces_the_policy(test: TestStore) {
    let store = &test.store;
    let events: Vec<Event> = (0..30)
        .map(|n| event(&frame("cam01"), "capture", n, n + 1))
        .collect();
    append(store, &events).await;
    let policy = Retention {
        max_events: Some(10),
        ..no_retention()
    };
    let task = store::spawn_retention(Arc::clone(store), policy, Duration::from_millis(20));
    // Wait for the effect, not for a time: the first pass runs at once.
    let mut status = store.status().await.expect("status");
    for _ in 0..500 {
        if status.events == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        status = store.status().await.expect("status");
    }
    task.abort();
    assert_eq!((status.events, status.frames), (10, 10));
    assert_eq!(
        store
            .frame_summary(&events[0].frame_id)
            .await
            .expect("summary"),
        None
    );
    assert!(
        store
            .frame_summary(&events[29].frame_id)
            .await
            .expect("summary")
            .is_some()
    );
}

pub(crate) async fn status_counts_events_frames_and_positions(test: TestStore) {
    let store = &test.store;
    let empty = store.status().await.expect("status");
    assert_eq!((empty.events, empty.frames, empty.last_position), (0, 0, 0));
    let (a, b) = (frame("cam01"), frame("cam02"));
    append(
        store,
        &[
            event(&a, "capture", 1, 2),
            event(&a, "process", 2, 3),
            event(&b, "capture", 1, 2),
        ],
    )
    .await;
    let status = store.status().await.expect("status");
    assert_eq!((status.events, status.frames), (3, 2));
    assert!(status.last_position >= 3);
    assert_eq!(status.projected_position, status.last_position);
    assert!(status.size_bytes > 0);
}

pub(crate) async fn reopening_the_store_keeps_everything(test: TestStore) {
    let frame = frame("cam01");
    let events = [
        event(&frame, "capture", 1_000, 2_000),
        failed(event(&frame, "process", 2_000, 5_000), "boom"),
    ];
    append(&test.store, &events).await;
    let journey = test.store.journey(&frame).await.expect("journey");
    let summary_before = summary(&test.store, &frame).await;
    let stats = test.store.camera_stats("cam01").await.expect("stats");
    let status = test.store.status().await.expect("status");

    let mut test = test;
    test.restart().await;
    let reopened = &test.store;
    assert_eq!(reopened.journey(&frame).await.expect("journey"), journey);
    assert_eq!(summary(reopened, &frame).await, summary_before);
    assert_eq!(reopened.camera_stats("cam01").await.expect("stats"), stats);
    let status_after = reopened.status().await.expect("status");
    assert_eq!(
        (
            status_after.events,
            status_after.frames,
            status_after.last_position
        ),
        (status.events, status.frames, status.last_position)
    );
    // Re-delivery after the restart is still recognised, and positions keep growing.
    let outcome = reopened.append(&events).await.expect("append");
    assert_eq!((outcome.inserted, outcome.duplicates), (0, 2));
    append(reopened, &[event(&frame, "store", 5_000, 6_000)]).await;
    let last = reopened.journey(&frame).await.expect("journey");
    assert!(last[2].position > status.last_position);
}

pub(crate) async fn concurrent_appends_all_land_with_unique_positions(test: TestStore) {
    let store = &test.store;
    let frames: Vec<_> = (0..16).map(|_| frame("cam01")).collect();
    let mut tasks = Vec::new();
    for worker in 0..8i64 {
        let store = Arc::clone(store);
        let frames = frames.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..10i64 {
                let events: Vec<Event> = (0..10i64)
                    .map(|n| {
                        let frame = &frames[((worker + batch + n) % 16) as usize];
                        event(
                            frame,
                            &format!("w{worker}"),
                            batch * 10 + n,
                            batch * 10 + n + 1,
                        )
                    })
                    .collect();
                let outcome = store.append(&events).await.expect("append");
                assert_eq!(outcome.inserted, 10);
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    let mut positions = BTreeSet::new();
    let mut events = 0;
    for frame in &frames {
        let journey = store.journey(frame).await.expect("journey");
        events += journey.len();
        positions.extend(journey.iter().map(|stored| stored.position));
        assert_eq!(summary(store, frame).await.events as usize, journey.len());
    }
    assert_eq!((events, positions.len()), (800, 800));
    let status = store.status().await.expect("status");
    assert_eq!((status.events, status.frames), (800, 16));
    assert_eq!(positions.last().copied(), Some(status.last_position));
    let camera = camera(store, "cam01").await;
    assert_eq!((camera.frames, camera.events), (16, 800));
}

pub(crate) async fn prepared_batches_append_as_one_batch_in_order(test: TestStore) {
    let store = &test.store;
    let (a, b) = (frame("cam01"), frame("cam02"));
    let mut capture = event(&a, "capture", 1_000, 2_000);
    capture
        .attributes
        .insert("frame.size_bytes".to_owned(), serde_json::json!(1024));
    let first = vec![
        capture,
        event(&b, "capture", 1_500, 2_500),
        event(&a, "encode", 2_000, 3_000),
    ];
    let repeated = first[2].clone();
    let second = vec![
        event(&b, "process", 3_000, 9_000),
        repeated,
        failed(event(&a, "process", 900, 4_000), "boom"),
    ];
    let batches = [
        Arc::new(store::PreparedEvents::new(first.clone())),
        Arc::new(store::PreparedEvents::new(Vec::new())),
        Arc::new(store::PreparedEvents::new(second.clone())),
    ];
    let outcome = store.append_prepared(&batches).await.expect("append");
    assert_eq!((outcome.inserted, outcome.duplicates), (5, 1));

    // Positions follow the batches' order, as one append of all of them would.
    let mut stored: Vec<StoredEvent> = store.journey(&a).await.expect("journey");
    stored.extend(store.journey(&b).await.expect("journey"));
    stored.sort_by_key(|stored| stored.position);
    let in_position_order: Vec<_> = stored.iter().map(|stored| stored.event.event_id).collect();
    let expected: Vec<_> = first
        .iter()
        .chain([&second[0], &second[2]])
        .map(|event| event.event_id)
        .collect();
    assert_eq!(in_position_order, expected);
    // Stored unchanged, attributes included.
    assert_eq!(stored[0].event, first[0]);

    let a_summary = summary(store, &a).await;
    assert_eq!(a_summary.stages, ["process", "capture", "encode"]);
    assert_eq!(a_summary.status, FrameStatus::Failed);
    assert_eq!(a_summary.events, 3);
    let status = store.status().await.expect("status");
    assert_eq!((status.events, status.frames), (5, 2));
    assert_eq!(
        store
            .append_prepared(&[Arc::new(store::PreparedEvents::new(first))])
            .await
            .expect("append")
            .duplicates,
        3
    );
}
