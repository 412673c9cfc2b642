//! `POST /events`: validated JSON events for producers that do not speak OTLP.

use serde_json::json;

use crate::helpers::{frame_id, now_nanos, spawn_app};

fn event(frame: &str, span_id: &str, start: u64) -> serde_json::Value {
    json!({
        "frame_id": frame,
        "service": "legacy-uploader",
        "stage": "upload",
        "start_unix_nanos": start,
        "end_unix_nanos": start + 2_000_000,
        "status": "ok",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": span_id,
        "attributes": {"frame.size_bytes": 1024}
    })
}

#[tokio::test]
async fn json_events_become_a_journey_once() {
    let app = spawn_app().await;
    let frame = frame_id("cam21").to_string();
    let start = now_nanos();
    let body = json!({"events": [event(&frame, "00f067aa0ba902b7", start), event(&frame, "00f067aa0ba902b8", start + 5_000_000)]});
    for _ in 0..2 {
        let response = app.post_events(&body).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.body["accepted"], 2);
    }
    let journey = app.get(&format!("/frames/{frame}/journey")).await;
    assert_eq!(journey.status, 200);
    assert_eq!(journey.body["events"].as_array().unwrap().len(), 2);
    assert_eq!(journey.body["gaps"][0]["duration_nanos"], 3_000_000);
}

#[tokio::test]
async fn invalid_events_are_400_naming_index_and_field() {
    let app = spawn_app().await;
    let frame = frame_id("cam22").to_string();
    let start = now_nanos();
    let mut bad = event(&frame, "00f067aa0ba902b9", start);
    bad["end_unix_nanos"] = json!(start - 1);
    let body = json!({"events": [event(&frame, "00f067aa0ba902b7", start), event(&frame, "00f067aa0ba902b8", start), event(&frame, "00f067aa0ba902ba", start), bad]});
    let response = app.post_events(&body).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.body,
        json!({"error": "invalid event at index 3: end_unix_nanos is before start_unix_nanos"})
    );
    // All or nothing: the valid events of the refused request were not stored.
    assert_eq!(
        app.get(&format!("/frames/{frame}/journey")).await.status,
        404
    );

    let mut bad_trace = event(&frame, "00f067aa0ba902b7", start);
    bad_trace["trace_id"] = json!("XYZ");
    let response = app.post_events(&json!({"events": [bad_trace]})).await;
    assert_eq!(response.status, 400);
    assert!(
        response.body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid event at index 0: trace_id"),
        "{:?}",
        response.body
    );

    let response = app.post_events(&json!([1, 2])).await;
    assert_eq!(response.status, 400);

    let response = app
        .http
        .post(app.url("/events"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
}
