//! Capture -> processor over HTTP keeps one trace: the capture side runs in this process
//! (the real camera and delivery code, exporting to an in-process OTLP sink), the
//! processor is its real binary exporting to the same sink.

use std::time::Duration;

use frame_capture::config::DeliveryConfig;
use frame_capture::delivery::Delivery;
use otlp_sink::{ReceivedSpan, SpanKind};

use crate::helpers::{Harness, ProcessorProcess, camera, harness};

/// The frame-work spans of one frame (the HTTP client and server spans carry `frame.id`
/// too; they are found through the parent chain).
const FRAME_SPANS: [&str; 7] = [
    "decode_frame",
    "capture",
    "process_frame",
    "detect_objects",
    "detect_faces",
    "detect_gestures",
    "store_result",
];

pub(crate) fn one<'a>(spans: &'a [ReceivedSpan], name: &str, frame_id: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name && s.str_attr("frame.id") == Some(frame_id))
        .collect();
    assert_eq!(found.len(), 1, "one {name} span for {frame_id}: {found:#?}");
    found[0]
}

pub(crate) fn parent<'a>(spans: &'a [ReceivedSpan], child: &ReceivedSpan) -> &'a ReceivedSpan {
    let parent_id = child
        .parent_span_id
        .as_deref()
        .unwrap_or_else(|| panic!("{} has no parent", child.name));
    spans
        .iter()
        .find(|s| s.span_id == parent_id && s.trace_id == child.trace_id)
        .unwrap_or_else(|| panic!("the parent of {} was not exported", child.name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_to_processor_is_one_trace_and_every_frame_span_has_the_frame_id() {
    let Harness { sink, telemetry } = harness();
    let processor = ProcessorProcess::spawn(&[
        ("OTEL_SERVICE_NAME", "frame-processor".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.grpc_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_LOGS_EXPORTER", "none".to_owned()),
    ]);
    let delivery = Delivery::from_config(
        &DeliveryConfig::Http {
            url: processor.url.clone(),
            timeout: Duration::from_secs(30),
        },
        telemetry,
    )
    .await
    .expect("delivery");
    let (camera, stats) = camera("trc01", delivery);
    let frame_id = camera.capture(0).await.expect("captured and delivered");
    let frame_id = frame_id.to_string();

    let spans = sink
        .wait_for_spans(
            |spans| {
                FRAME_SPANS.iter().all(|name| {
                    spans
                        .iter()
                        .any(|s| s.name == *name && s.str_attr("frame.id") == Some(&frame_id))
                })
            },
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|error| panic!("spans: {error}; processor: {:?}", processor.stderr()));

    let capture = one(&spans, "capture", &frame_id);
    let process = one(&spans, "process_frame", &frame_id);
    assert_eq!(capture.service_name(), Some("frame-capture"));
    assert_eq!(process.service_name(), Some("frame-processor"));
    assert_eq!(
        process.trace_id, capture.trace_id,
        "one trace from capture to processing"
    );
    assert!(capture.parent_span_id.is_none(), "capture is the root");
    assert_eq!(capture.str_attr("camera.id"), Some("trc01"));
    assert!(
        capture.int_attr("frame.size_bytes").unwrap_or(0) > 0,
        "{capture:?}"
    );

    // process_frame <- server span <- client span <- capture.
    let server = parent(&spans, process);
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(server.service_name(), Some("frame-processor"));
    let client = parent(&spans, server);
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(client.service_name(), Some("frame-capture"));
    assert_eq!(parent(&spans, client).span_id, capture.span_id);

    for name in [
        "detect_objects",
        "detect_faces",
        "detect_gestures",
        "store_result",
    ] {
        let span = one(&spans, name, &frame_id);
        assert_eq!(
            span.parent_span_id.as_deref(),
            Some(process.span_id.as_str()),
            "{name}"
        );
        assert_eq!(span.str_attr("camera.id"), Some("trc01"), "{name}");
    }
    let objects = one(&spans, "detect_objects", &frame_id);
    assert_eq!(objects.int_attr("detections.count"), Some(3));
    assert_eq!(
        objects.str_attr("detections.labels"),
        Some("ball,person,vehicle")
    );

    // Every span of the frame's trace, the transport spans included, carries frame.id:
    // that is what lets the tracker keep the whole journey without orphans.
    for span in spans.iter().filter(|s| s.trace_id == capture.trace_id) {
        assert_eq!(
            span.str_attr("frame.id"),
            Some(frame_id.as_str()),
            "{} ({:?}) lacks frame.id",
            span.name,
            span.kind
        );
    }
    assert_eq!(stats.snapshot().cameras[0].delivered, 1);
}
