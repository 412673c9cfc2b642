//! `/metrics` of the real binary: promtool-clean and matching the catalogs.

use frame_capture::metrics::CATALOG;
use telemetry::metrics::catalog::check_exposition;
use telemetry::metrics::standard::STANDARD;

use crate::helpers::{Answer, CaptureProcess, Receiver, stats_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_passes_promtool_and_matches_the_catalog() {
    let receiver = Receiver::start(Answer::Accept).await;
    let capture = CaptureProcess::spawn(&[
        ("CAMERAS", "2"),
        ("FPS", "20"),
        ("WIDTH", "64"),
        ("HEIGHT", "64"),
        ("PROCESSOR_URL", &receiver.url),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ]);
    stats_until(&capture.url, |stats| {
        stats["cameras"][1]["delivered"].as_u64() >= Some(2)
    })
    .await;
    let text = reqwest::get(format!("{}/metrics", capture.url))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape body");
    testkit::promtool_check_metrics(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let mut catalogs = STANDARD.to_vec();
    catalogs.push(&CATALOG);
    let mut mismatch = check_exposition(&text, &catalogs);
    // Standard families of features this service does not use (queues) are absent; every
    // family of its own catalog must be there.
    mismatch.missing.retain(|name| CATALOG.get(name).is_some());
    assert!(mismatch.is_empty(), "{mismatch}\n{text}");
    assert!(
        text.contains(
            "frame_capture_frames_dropped_total{camera=\"cam02\",reason=\"backpressure\"}"
        ),
        "{text}"
    );
}
