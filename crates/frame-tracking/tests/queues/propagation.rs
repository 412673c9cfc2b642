//! The checks every adapter must pass: the consumer continues the producer's trace, as a
//! child for one message and through links for a batch.

use frame_tracking::{FrameQueue, FrameSpan};
use otlp_sink::{ReceivedSpan, SpanKind};
use tracing::Instrument;

use crate::helpers::{frame, harness, trace_spans};

/// Sends one frame inside a frame span, receives it, and checks the exported spans: the
/// trace id received is the one sent, and the consumer span's parent is the producer span.
pub(crate) async fn consumer_span_is_child_of_producer_span(queue: &FrameQueue, system: &str) {
    harness();
    let metadata = frame(1);
    let capture = FrameSpan::start("capture frame", &metadata);
    let sent_trace_id = capture.context().trace_id();
    assert!(capture.context().is_valid(), "telemetry is installed");
    let message_id = queue
        .send(&metadata, b"pixels")
        .instrument(capture.span().clone())
        .await
        .unwrap();
    drop(capture);

    let delivery = queue.receive().await.unwrap();
    assert_eq!(delivery.context().trace_id(), sent_trace_id);
    assert_eq!(delivery.message_id(), message_id);
    assert_eq!(delivery.payload(), b"pixels");
    assert_eq!(delivery.metadata().frame_id, metadata.frame_id);
    delivery.ack().await.unwrap();

    let trace_id = sent_trace_id.to_string();
    let spans = trace_spans(&trace_id, 3).await;
    let capture = find(&spans, "capture frame");
    let producer = find(&spans, &format!("send {}", queue.name()));
    let consumer = find(&spans, &format!("process {}", queue.name()));
    assert_eq!(
        capture.str_attr("frame.id"),
        Some(metadata.frame_id.as_str())
    );
    assert_eq!(capture.str_attr("camera.id"), Some("cam01"));
    assert_eq!(producer.kind, SpanKind::Producer);
    assert_eq!(
        producer.parent_span_id.as_deref(),
        Some(capture.span_id.as_str())
    );
    assert_eq!(consumer.kind, SpanKind::Consumer);
    assert_eq!(consumer.trace_id, trace_id);
    assert_eq!(
        consumer.parent_span_id.as_deref(),
        Some(producer.span_id.as_str()),
        "the consumer span is a child of the producer span"
    );
    for span in [producer, consumer] {
        assert_eq!(span.str_attr("messaging.system"), Some(system));
        assert_eq!(
            span.str_attr("messaging.destination.name"),
            Some(queue.name())
        );
        assert_eq!(
            span.str_attr("messaging.message.id"),
            Some(message_id.as_str())
        );
        assert_eq!(span.str_attr("frame.id"), Some(metadata.frame_id.as_str()));
        assert!(span.str_attr("messaging.operation.name").is_some());
    }
    assert_eq!(producer.str_attr("messaging.operation.type"), Some("send"));
    assert_eq!(
        consumer.str_attr("messaging.operation.type"),
        Some("process")
    );
}

/// Sends three frames, each in its own trace, receives them as one batch and checks that
/// the batch span links all three producer spans.
pub(crate) async fn batch_span_links_every_producer_span(queue: &FrameQueue) {
    harness();
    let mut producers = Vec::new();
    for sequence in 0..3 {
        let metadata = frame(sequence);
        let capture = FrameSpan::start("capture frame", &metadata);
        queue
            .send(&metadata, b"")
            .instrument(capture.span().clone())
            .await
            .unwrap();
        producers.push(capture.context().trace_id().to_string());
    }
    let mut deliveries = Vec::new();
    while deliveries.len() < 3 {
        let batch = queue.receive_batch(10).await.unwrap();
        deliveries.extend(batch.deliveries);
    }
    for delivery in deliveries {
        delivery.ack().await.unwrap();
    }
    let send_name = format!("send {}", queue.name());
    let mut producer_span_ids = Vec::new();
    for trace_id in &producers {
        let spans = trace_spans(trace_id, 2).await;
        producer_span_ids.push(find(&spans, &send_name).span_id.clone());
    }
    let process_name = format!("process {}", queue.name());
    let spans = crate::helpers::spans_where(|spans| {
        let linked: usize = spans
            .iter()
            .filter(|span| span.name == process_name)
            .flat_map(|span| &span.links)
            .filter(|link| producer_span_ids.contains(&link.span_id))
            .count();
        linked == 3
    })
    .await;
    for span in spans.iter().filter(|span| span.name == process_name) {
        assert_eq!(span.kind, SpanKind::Consumer);
        assert!(!span.links.is_empty());
        for link in &span.links {
            assert!(producers.contains(&link.trace_id));
        }
    }
}

fn find<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span {name} among {:?}", names(spans)))
}

fn names(spans: &[ReceivedSpan]) -> Vec<&str> {
    spans.iter().map(|span| span.name.as_str()).collect()
}
