//! Capture -> queue -> processor: frames sent by the capture service's queue delivery are
//! consumed and processed, and the processor's spans continue the trace through the
//! queue's producer and consumer spans, and the ground truth in the message's metadata
//! is scored like over HTTP. Needs the Redis and RabbitMQ servers that
//! `cargo xtask test` provisions.

use std::time::{Duration, Instant};

use frame_capture::config::{DeliveryConfig, QueueKind, QueueTarget};
use frame_capture::delivery::Delivery;
use otlp_sink::SpanKind;
use service_kit::env::Secret;

use crate::helpers::{Harness, camera, harness, spawn_app_with, unique};
use crate::traces::{one, parent};

async fn frames_flow_through_the_queue(kind: QueueKind, camera_id: &str) {
    let Harness { sink, telemetry } = harness();
    let (queue, url_var, url) = match kind {
        QueueKind::Redis => ("redis", "REDIS_URL", testkit::redis_url()),
        QueueKind::Amqp => ("amqp", "AMQP_URL", testkit::amqp_url()),
    };
    let name = unique("frames:test");
    // The processor connects (and declares the queue or consumer group) first.
    let app = spawn_app_with(&[("QUEUE", queue), (url_var, &url), ("QUEUE_NAME", &name)]).await;
    let target = QueueTarget {
        kind,
        url: Secret::new(url),
        name: name.clone(),
    };
    let delivery = Delivery::from_config(&DeliveryConfig::Queue(target), telemetry)
        .await
        .expect("the queue connects");
    let (camera, _) = camera(camera_id, delivery);
    let mut last = None;
    for sequence in 0..3 {
        last = Some(camera.capture(sequence).await.expect("sent to the queue"));
    }
    let frame_id = last.expect("three frames").to_string();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, stats) = app.get(&format!("/cameras/{camera_id}/stats")).await;
        if status == 200 && stats["frames_processed"] == 3 {
            assert_eq!(stats["detections"]["objects"], 9, "{stats}");
            // The ground truth travels in the message's metadata: every frame is scored.
            assert_eq!(stats["accuracy"]["frames_scored"], 3, "{stats}");
            assert_eq!(stats["accuracy"]["objects"]["truths"], 9, "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "frames not processed: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, result) = app.get(&format!("/frames/{frame_id}")).await;
    assert_eq!(status, 200, "{result}");

    let spans = sink
        .wait_for_spans(
            |spans| {
                ["capture", "store_result"].iter().all(|name| {
                    spans
                        .iter()
                        .any(|s| s.name == *name && s.str_attr("frame.id") == Some(&frame_id))
                })
            },
            Duration::from_secs(30),
        )
        .await
        .expect("spans arrive");
    let capture = one(&spans, "capture", &frame_id);
    let process = one(&spans, "process_frame", &frame_id);
    assert_eq!(process.trace_id, capture.trace_id);
    // process_frame <- consumer span <- producer span <- capture.
    let consumer = parent(&spans, process);
    assert_eq!(consumer.kind, SpanKind::Consumer, "{consumer:?}");
    assert_eq!(consumer.name, format!("process {name}"));
    let producer = parent(&spans, consumer);
    assert_eq!(producer.kind, SpanKind::Producer, "{producer:?}");
    assert_eq!(parent(&spans, producer).span_id, capture.span_id);
    for span in [consumer, producer] {
        assert_eq!(
            span.str_attr("frame.id"),
            Some(frame_id.as_str()),
            "{}",
            span.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_flow_through_redis_streams_in_one_trace() {
    frames_flow_through_the_queue(QueueKind::Redis, "qredis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_flow_through_rabbitmq_in_one_trace() {
    frames_flow_through_the_queue(QueueKind::Amqp, "qamqp").await;
}
