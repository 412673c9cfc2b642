//! End to end: a service instrumented with the `telemetry` crate, exporting OTLP to the
//! tracker, shows up as a journey.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, Tracer as _};
use telemetry::{Globals, Telemetry, TelemetryConfig};

use crate::helpers::{eventually, frame_id, spawn_app};

async fn export_one_span(protocol: &'static str, endpoint: String, frame: String) {
    let config = TelemetryConfig::from_lookup(move |name| match name {
        "OTEL_SERVICE_NAME" => Some("e2e-producer".to_owned()),
        "OTEL_TRACES_EXPORTER" => Some("otlp".to_owned()),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some(protocol.to_owned()),
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
        "OTEL_METRICS_EXPORTER" | "OTEL_LOGS_EXPORTER" => Some("none".to_owned()),
        _ => None,
    })
    .unwrap();
    // Shutdown blocks until the export finished, so keep it off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let telemetry =
            Telemetry::start(telemetry::service_info!(), config, Globals::Skip).unwrap();
        let tracer = telemetry.tracer().unwrap();
        let mut span = tracer.start("capture");
        span.set_attribute(KeyValue::new("frame.id", frame));
        span.set_attribute(KeyValue::new("frame.size_bytes", 2048_i64));
        span.end();
        telemetry.shutdown().unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_an_instrumented_service_become_journeys() {
    let app = spawn_app().await;
    for (protocol, endpoint) in [
        ("grpc", app.grpc_url.clone()),
        ("http/protobuf", app.url.clone()),
    ] {
        let frame = frame_id("cam51");
        export_one_span(protocol, endpoint, frame.to_string()).await;
        let journey = eventually(Duration::from_secs(20), || async {
            let response = app.journey(&frame).await;
            (response.status == 200).then_some(response.body)
        })
        .await;
        let event = &journey["events"][0];
        assert_eq!(event["service"], "e2e-producer", "{protocol}: {journey}");
        assert_eq!(event["stage"], "capture");
        assert_eq!(event["attributes"]["frame.size_bytes"], 2048);
    }
}
