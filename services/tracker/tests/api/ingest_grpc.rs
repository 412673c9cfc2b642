//! OTLP/gRPC ingest: the same events as HTTP, gzip accepted, partial success.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::codec::CompressionEncoding;

use crate::helpers::{
    SpanSpec, export_request, frame_id, frame_spans, now_nanos, span, spawn_app, trace_id,
};

#[tokio::test]
async fn grpc_exports_become_journeys() {
    let app = spawn_app().await;
    let mut client = TraceServiceClient::connect(app.grpc_url.clone())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);
    let frame = frame_id("cam11");
    let (capture, processing) = frame_spans(&frame, false);
    let response = client.export(capture).await.unwrap().into_inner();
    assert_eq!(response.partial_success, None);
    client.export(processing).await.unwrap();

    let journey = app.journey(&frame).await;
    assert_eq!(journey.status, 200, "{:?}", journey.body);
    assert_eq!(journey.body["events"].as_array().unwrap().len(), 3);
    assert_eq!(journey.body["status"], "ok");
}

#[tokio::test]
async fn grpc_reports_rejected_spans_as_partial_success() {
    let app = spawn_app().await;
    let mut client = TraceServiceClient::connect(app.grpc_url.clone())
        .await
        .unwrap();
    let start = now_nanos();
    let request = export_request(
        "svc",
        vec![span(SpanSpec {
            frame_id: Some("20261121T101530.123Z_broken"),
            name: "bad",
            trace_id: trace_id(),
            span_id: 9,
            parent: None,
            start,
            end: start + 1,
            error: None,
        })],
    );
    let response = client.export(request).await.unwrap().into_inner();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("frame.id"),
        "{}",
        partial.error_message
    );
}
