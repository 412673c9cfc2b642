//! The query API: journeys, search with pagination, camera statistics, health.

use std::collections::BTreeSet;

use crate::helpers::{TestApp, frame_id, frame_spans, spawn_app};

async fn ingest_frame(app: &TestApp, camera: &str, fail: bool) -> String {
    let frame = frame_id(camera);
    let (capture, processing) = frame_spans(&frame, fail);
    app.post_otlp(&capture, false).await.ok();
    app.post_otlp(&processing, false).await.ok();
    frame.to_string()
}

#[tokio::test]
async fn unknown_frames_are_404_and_malformed_ids_400() {
    let app = spawn_app().await;
    let unknown = frame_id("cam31");
    let response = app.journey(&unknown).await;
    assert_eq!(response.status, 404);
    assert_eq!(
        response.body["error"],
        format!("no events for frame {unknown}")
    );
    let response = app.get("/frames/not-a-frame/journey").await;
    assert_eq!(response.status, 400);
    assert!(
        response.body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid frame id \"not-a-frame\""),
        "{:?}",
        response.body
    );
}

#[tokio::test]
async fn search_pages_through_every_frame_once() {
    let app = spawn_app().await;
    let mut expected = BTreeSet::new();
    for index in 0..5 {
        expected.insert(ingest_frame(&app, "cam32", index == 2).await);
    }
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/frames?camera=cam32&limit=2&cursor={cursor}"),
            None => "/frames?camera=cam32&limit=2".to_owned(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        pages += 1;
        for frame in page.body["frames"].as_array().unwrap() {
            assert!(seen.insert(frame["frame_id"].as_str().unwrap().to_owned()));
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, expected);
    assert!(pages >= 3);

    let failed = app.get("/frames?camera=cam32&status=failed").await.body;
    assert_eq!(failed["frames"].as_array().unwrap().len(), 1, "{failed}");
    let slow = app
        .get("/frames?camera=cam32&min_duration_ms=11")
        .await
        .body;
    assert_eq!(slow["frames"].as_array().unwrap().len(), 0, "{slow}");
    let since = app
        .get("/frames?camera=cam32&since=2000-01-01T00:00:00Z&limit=100")
        .await
        .body;
    assert_eq!(since["frames"].as_array().unwrap().len(), 5, "{since}");
}

#[tokio::test]
async fn bad_search_parameters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    for (query, name) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("status=meh", "status"),
        ("min_duration_ms=-1", "min_duration_ms"),
        ("since=yesterday", "since"),
        ("until=2026-99-01T00:00:00Z", "until"),
        ("cursor=%25%25", "cursor"),
        ("colour=red", "colour"),
    ] {
        let response = app.get(&format!("/frames?{query}")).await;
        assert_eq!(response.status, 400, "{query}: {:?}", response.body);
        assert!(
            response.body["error"].as_str().unwrap().contains(name),
            "{query}: {:?}",
            response.body
        );
    }
}

#[tokio::test]
async fn camera_stats_count_frames_and_failures() {
    let app = spawn_app().await;
    ingest_frame(&app, "cam33", false).await;
    ingest_frame(&app, "cam33", true).await;
    let stats = app.get("/cameras/cam33/stats").await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(stats.body["frames"], 2);
    assert_eq!(stats.body["failed_frames"], 1);
    assert_eq!(stats.body["events"], 6);
    let unknown = app.get("/cameras/nobody/stats").await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn health_reports_the_store() {
    let app = spawn_app().await;
    ingest_frame(&app, "cam34", false).await;
    let health = app.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["store"]["events"], 3);
    assert_eq!(health.body["ingest_queued_events"], 0);
    let unknown_route = app.get("/nope?token=secret").await;
    assert_eq!(unknown_route.status, 404);
    assert_eq!(unknown_route.body["error"], "no route for GET /nope");
}
