//! `/metrics` of the real binary: promtool-clean and matching the catalogs both ways.

use frame_capture::scene::{Scene, SceneConfig};
use frame_processor::metrics::CATALOG;
use telemetry::metrics::catalog::check_exposition;
use telemetry::metrics::standard::STANDARD;

use crate::helpers::{ProcessorProcess, frame_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_passes_promtool_and_matches_the_catalog() {
    let processor = ProcessorProcess::spawn(&[
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
        ("OTEL_LOGS_EXPORTER", "none".to_owned()),
    ]);
    let scene = Scene::new(SceneConfig {
        width: 160,
        height: 120,
        objects: 3,
        seed: 9,
    })
    .expect("valid scene");
    for index in 0..3 {
        let (status, answer) = processor
            .post(
                "/process",
                &frame_body("met01", &scene.render(index), "png"),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let mut bad = frame_body("met01", &scene.render(0), "png");
    bad["image"] = serde_json::json!("aGVsbG8=");
    let (status, _) = processor.post("/process", &bad).await;
    assert_eq!(status, 422);

    let text = processor.scrape().await;
    testkit::promtool_check_metrics(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let mut catalogs = STANDARD.to_vec();
    catalogs.push(&CATALOG);
    let mut mismatch = check_exposition(&text, &catalogs);
    // Standard families of features this service does not use (queues, an HTTP client)
    // are absent; every family of its own catalog must be there.
    mismatch.missing.retain(|name| CATALOG.get(name).is_some());
    assert!(mismatch.is_empty(), "{mismatch}\n{text}");
    assert!(
        text.contains("detektor_frame_processor_frames_processed_total 3"),
        "{text}\n{:?}",
        processor.stderr()
    );
    assert!(
        text.contains("detektor_frame_processor_errors_total{type=\"decode\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("detektor_frame_storage_stored_frames 3"),
        "{text}"
    );
}
