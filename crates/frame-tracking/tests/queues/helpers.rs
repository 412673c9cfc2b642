//! Shared set-up: one OTLP sink and process-wide telemetry exporting to it, unique queue
//! names, frames, and waiting for spans.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use frame_tracking::{FrameId, FrameMetadata};
use otlp_sink::{OtlpSink, ReceivedSpan};
use telemetry::{Globals, ServiceInfo, Telemetry, TelemetryConfig};

/// The sink every test's spans go to, and the telemetry exporting them.
pub(crate) struct Harness {
    pub(crate) sink: OtlpSink,
    pub(crate) telemetry: Telemetry,
}

/// Starts the sink (on its own runtime, which outlives every test's runtime) and installs
/// telemetry pointing at it, once per test binary.
pub(crate) fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime for the sink");
            runtime.block_on(async move {
                let sink = OtlpSink::start().await.expect("the sink starts");
                sender.send(sink).expect("the test waits for the sink");
                std::future::pending::<()>().await;
            });
        });
        let sink = receiver.recv().expect("the sink thread sends the sink");
        let vars = HashMap::from([
            ("OTEL_SERVICE_NAME", "frame-tracking-tests".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.grpc_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("OTEL_LOGS_EXPORTER", "none".to_owned()),
            ("OTEL_METRICS_EXPORTER", "prometheus".to_owned()),
        ]);
        let config = TelemetryConfig::from_lookup(|key| vars.get(key).cloned())
            .expect("the test configuration is valid");
        let service = ServiceInfo {
            name: "frame-tracking-tests",
            version: env!("CARGO_PKG_VERSION"),
            catalogs: &[],
        };
        let telemetry =
            Telemetry::start(service, config, Globals::Install).expect("telemetry starts");
        Harness { sink, telemetry }
    })
}

/// A name no other test (or earlier run) uses.
pub(crate) fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("test:{prefix}:{}:{nanos}:{n}", std::process::id())
}

/// A frame of camera `cam01` with sequence number `sequence`.
pub(crate) fn frame(sequence: u64) -> FrameMetadata {
    let mut metadata = FrameMetadata::new(FrameId::generate("cam01", "rgb").unwrap());
    metadata.sequence = sequence;
    metadata
}

/// Waits until the sink has spans satisfying `predicate`.
pub(crate) async fn spans_where(
    predicate: impl FnMut(&[ReceivedSpan]) -> bool,
) -> Vec<ReceivedSpan> {
    harness()
        .sink
        .wait_for_spans(predicate, Duration::from_secs(20))
        .await
        .expect("the spans arrive")
}

/// The spans of trace `trace_id` once there are at least `count`.
pub(crate) async fn trace_spans(trace_id: &str, count: usize) -> Vec<ReceivedSpan> {
    spans_where(|spans| spans.iter().filter(|s| s.trace_id == trace_id).count() >= count)
        .await
        .into_iter()
        .filter(|span| span.trace_id == trace_id)
        .collect()
}

/// The value of the Prometheus series `name{queue="<queue>"}`, when present.
pub(crate) fn metric(name: &str, queue: &str) -> Option<f64> {
    let text = harness().telemetry.metrics_handle().render();
    let prefix = format!("{name}{{queue=\"{queue}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}
