//! OTLP/HTTP ingest: plain and gzip bodies become journeys; re-delivery is idempotent;
//! partial success; 400, 413 and 415.

use crate::helpers::{
    SpanSpec, encode_otlp, export_request, frame_id, frame_spans, gzip_bytes, now_nanos, span,
    spawn_app, spawn_app_with, trace_id,
};

#[tokio::test]
async fn plain_and_gzip_exports_become_one_journey() {
    let app = spawn_app().await;
    let frame = frame_id("cam01");
    let (capture, processing) = frame_spans(&frame, true);
    let response = app.post_otlp(&capture, false).await.ok();
    assert_eq!(response.partial_success, None);
    app.post_otlp(&processing, true).await.ok();

    let journey = app.journey(&frame).await;
    assert_eq!(journey.status, 200, "{:?}", journey.body);
    let body = journey.body;
    assert_eq!(body["frame_id"], frame.to_string());
    assert_eq!(body["camera_id"], "cam01");
    assert_eq!(body["status"], "failed");
    let stages: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["capture", "process_frame", "detect_objects"]);
    let events = body["events"].as_array().unwrap();
    assert_eq!(events[0]["service"], "frame-capture");
    assert_eq!(events[1]["service"], "frame-processor");
    assert_eq!(events[2]["error_message"], "model not loaded");
    assert_eq!(events[1]["parent_span_id"], "0000000000000001");
    assert_eq!(events[0]["attributes"]["frame.size_bytes"], 921_600);
    assert_eq!(events[0]["attributes"]["messaging.system"], "redis");
    assert_eq!(events[0]["attributes"]["detections.count"], 3);
    assert!(events[0]["attributes"].get("http.request.method").is_none());
    assert!(events[0]["attributes"].get("frame.id").is_none());
    assert_eq!(body["duration_nanos"], 10_000_000);
    assert_eq!(body["gaps"][0]["duration_nanos"], 4_000_000);
    assert_eq!(body["gaps"][0]["after_stage"], "capture");
    let trace = body["traces"][0]["trace_id"].as_str().unwrap();
    assert_eq!(
        body["traces"][0]["url"],
        format!("http://localhost:16686/trace/{trace}")
    );
}

#[tokio::test]
async fn redelivered_spans_are_stored_once() {
    let app = spawn_app().await;
    let frame = frame_id("cam02");
    let (capture, processing) = frame_spans(&frame, false);
    for _ in 0..3 {
        app.post_otlp(&capture, false).await.ok();
        app.post_otlp(&processing, true).await.ok();
    }
    let journey = app.journey(&frame).await.body;
    assert_eq!(journey["events"].as_array().unwrap().len(), 3, "{journey}");
    let health = app.get("/health").await.body;
    assert_eq!(health["store"]["events"], 3, "{health}");
}

#[tokio::test]
async fn spans_without_frame_id_are_dropped_and_bad_ones_rejected() {
    let app = spawn_app().await;
    let frame = frame_id("cam03");
    let id = frame.to_string();
    let start = now_nanos();
    let spec = |frame_id, name, span_id| SpanSpec {
        frame_id,
        name,
        trace_id: trace_id(),
        span_id,
        parent: None,
        start,
        end: start + 1_000,
        error: None,
    };
    let mut backwards = span(spec(Some(&id), "backwards", 4));
    backwards.end_time_unix_nano = start - 1;
    let request = export_request(
        "mixed",
        vec![
            span(spec(Some(&id), "good", 1)),
            span(spec(None, "GET /health", 2)),
            span(spec(Some("not-a-frame-id"), "bad", 3)),
            backwards,
        ],
    );
    let response = app.post_otlp(&request, false).await.ok();
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial
            .error_message
            .contains("invalid frame.id \"not-a-frame-id\""),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("and 1 more"),
        "{}",
        partial.error_message
    );
    let journey = app.journey(&frame).await.body;
    let events = journey["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{journey}");
    assert_eq!(events[0]["stage"], "good");
}

/// OTLP/HTTP: "the response body for all HTTP 4xx and HTTP 5xx responses MUST be a
/// Protobuf-encoded Status message that describes the problem".
#[tokio::test]
async fn undecodable_bodies_are_400_with_a_protobuf_status() {
    let app = spawn_app().await;
    let protobuf = [("content-type", "application/x-protobuf")];
    let error = app.post_otlp_raw(vec![0xff; 64], &protobuf).await.error();
    assert_eq!(error.status, 400);
    assert_eq!(error.content_type, "application/x-protobuf");
    assert_eq!(error.code, Some(tonic::Code::InvalidArgument as i32));
    assert!(error.message.contains("cannot decode"), "{error:?}");
    let gzip = [
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "gzip"),
    ];
    let error = app.post_otlp_raw(b"not gzip".to_vec(), &gzip).await.error();
    assert_eq!(error.status, 400);
    assert_eq!(error.content_type, "application/x-protobuf");
    assert!(error.message.contains("gzip"), "{error:?}");
}

#[tokio::test]
async fn unsupported_content_types_are_415_naming_protobuf() {
    let app = spawn_app().await;
    let error = app
        .post_otlp_raw(b"{}".to_vec(), &[("content-type", "application/json")])
        .await
        .error();
    assert_eq!(error.status, 415);
    // Not an OTLP protobuf client: the answer is the service's JSON error.
    assert_eq!(error.content_type, "application/json");
    assert!(
        error.message.contains("application/x-protobuf"),
        "{error:?}"
    );
    let (body, _) = encode_otlp(&export_request("x", vec![]), false);
    let error = app
        .post_otlp_raw(
            body,
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "br"),
            ],
        )
        .await
        .error();
    assert_eq!(error.status, 415);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_before_and_after_gzip() {
    let app = spawn_app_with(&[("INGEST_MAX_BODY_BYTES", "4KiB")]).await;
    let protobuf = [("content-type", "application/x-protobuf")];
    let error = app
        .post_otlp_raw(vec![0; 8 * 1024], &protobuf)
        .await
        .error();
    assert_eq!(error.status, 413);
    assert_eq!(error.content_type, "application/x-protobuf");
    assert_eq!(error.code, Some(tonic::Code::ResourceExhausted as i32));
    assert!(
        error.message.contains("too large") && error.message.contains("4096"),
        "{error:?}"
    );

    // A small gzip body that inflates past the limit: a zip bomb in miniature.
    let bomb = gzip_bytes(&vec![0; 64 * 1024]);
    assert!(bomb.len() < 4096);
    let error = app
        .post_otlp_raw(
            bomb,
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
        )
        .await
        .error();
    assert_eq!(error.status, 413);
}
