//! `/metrics` of the tracker binary: promtool-clean, and exactly the standard catalogs plus
//! the tracker's.

use telemetry::metrics::catalog::check_exposition;
use telemetry::metrics::standard::STANDARD;

use crate::helpers::{OtlpAnswer, TempDir, TrackerProcess, frame_id, frame_spans, send_otlp};

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_passes_promtool_and_matches_the_catalog() {
    let data = TempDir::new("tracker-metrics");
    let tracker = TrackerProcess::spawn(&[("DATA_DIR", &data.path().display().to_string())]);
    let http = reqwest::Client::new();
    let frame = frame_id("cam41");
    let (capture, processing) = frame_spans(&frame, false);
    for (request, gzip) in [(&capture, false), (&processing, true)] {
        assert!(matches!(
            send_otlp(&http, &tracker.url, request, gzip).await.unwrap(),
            OtlpAnswer::Ok(_)
        ));
    }
    let bad = http
        .post(tracker.url("/events"))
        .header("content-type", "application/json")
        .body(r#"{"events": [{}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    let text = http
        .get(tracker.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    testkit::promtool_check_metrics(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let mut catalogs: Vec<_> = STANDARD.to_vec();
    catalogs.push(&tracker::metrics::CATALOG);
    let mismatch = check_exposition(&text, &catalogs);
    // Standard metrics the tracker never touches (queues, client requests, span export
    // with tracing off) are legitimately absent; the tracker's own must all be there.
    assert!(
        mismatch.undeclared.is_empty() && mismatch.different.is_empty(),
        "{mismatch}\n{text}"
    );
    for def in tracker::metrics::CATALOG.metrics {
        assert!(
            !mismatch.missing.contains(&def.name.to_owned()),
            "{mismatch}\n{text}"
        );
    }
    assert!(
        !mismatch
            .missing
            .contains(&"http_server_request_duration_seconds".to_owned())
    );
    assert_eq!(
        sample(
            &text,
            "tracker_ingest_events_accepted_total{transport=\"http\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tracker_ingest_rejected_total{transport=\"json\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tracker_store_events_stored_total"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tracker_store_append_duration_seconds_count"),
        Some(2.0),
        "{text}"
    );
    tracker.terminate();
}
