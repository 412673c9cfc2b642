//! Frames reach the processor with ids, metadata and pixels; a slow processor makes the
//! cameras drop frames instead of queueing them; a failing one is counted.

use base64::Engine as _;
use frame_tracking::{FrameId, FrameMetadata};

use crate::helpers::{Answer, Receiver, spawn_app, startup_error, stats_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arrive_with_ids_metadata_and_decodable_pixels() {
    let receiver = Receiver::start(Answer::Accept).await;
    let app = spawn_app(&[
        ("CAMERAS", "door,yard"),
        ("FPS", "20"),
        ("WIDTH", "160"),
        ("HEIGHT", "120"),
        ("PROCESSOR_URL", &receiver.url),
    ])
    .await;
    let stats = stats_until(&app.url, |stats| {
        stats["cameras"]
            .as_array()
            .is_some_and(|cameras| cameras.iter().all(|c| c["delivered"].as_u64() >= Some(3)))
    })
    .await;
    let door = &stats["cameras"][0];
    assert_eq!(door["camera_id"], "door");
    assert_eq!(
        door["ground_truth"]["person"].as_u64(),
        door["captured"].as_u64(),
        "{stats}"
    );

    let received = receiver.received();
    let (_, body) = received
        .iter()
        .find(|(_, body)| body["camera_id"] == "yard")
        .expect("a yard frame");
    let frame_id: FrameId = body["frame_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(frame_id.camera_id(), "yard");
    assert_eq!(body["frame_data"]["format"], "png");
    assert_eq!(body["frame_data"]["width"], 160);
    let png = base64::engine::general_purpose::STANDARD
        .decode(body["image"].as_str().unwrap())
        .unwrap();
    let image = image::load_from_memory(&png).unwrap();
    assert_eq!((image.width(), image.height()), (160, 120));
    let metadata = FrameMetadata::from_json(&body["metadata"].to_string()).unwrap();
    assert_eq!(metadata.frame_id, frame_id);
    assert_eq!(metadata.size_bytes, png.len() as u64);
    let truth: Vec<frame_capture::scene::GroundTruth> =
        serde_json::from_str(&metadata.attributes["ground_truth"]).unwrap();
    assert_eq!(truth.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_processor_makes_cameras_drop_frames_not_queue_them() {
    let receiver = Receiver::start(Answer::WaitForGate).await;
    let app = spawn_app(&[
        ("CAMERAS", "1"),
        ("FPS", "50"),
        ("WIDTH", "64"),
        ("HEIGHT", "64"),
        ("MAX_IN_FLIGHT", "2"),
        ("PROCESSOR_URL", &receiver.url),
    ])
    .await;
    let stats = stats_until(&app.url, |stats| {
        stats["cameras"][0]["dropped"]["backpressure"].as_u64() >= Some(10)
    })
    .await;
    let camera = &stats["cameras"][0];
    assert_eq!(camera["delivered"], 0, "{stats}");
    assert_eq!(
        camera["captured"], 2,
        "only the in-flight frames were rendered: {stats}"
    );
    assert_eq!(receiver.max_in_flight(), 2);

    receiver.open();
    stats_until(&app.url, |stats| {
        stats["cameras"][0]["delivered"].as_u64() >= Some(4)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_dropped_with_reason_error() {
    let receiver = Receiver::start(Answer::Fail).await;
    let app = spawn_app(&[
        ("CAMERAS", "1"),
        ("FPS", "20"),
        ("WIDTH", "64"),
        ("HEIGHT", "64"),
        ("FORMAT", "rgb24"),
        ("PROCESSOR_URL", &receiver.url),
    ])
    .await;
    let stats = stats_until(&app.url, |stats| {
        stats["cameras"][0]["dropped"]["error"].as_u64() >= Some(3)
    })
    .await;
    assert_eq!(stats["cameras"][0]["delivered"], 0, "{stats}");
    let (_, body) = &receiver.received()[0];
    assert_eq!(body["frame_data"]["format"], "rgb24");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(body["image"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw.len(), 64 * 64 * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duration_stops_the_cameras_but_not_the_api() {
    let receiver = Receiver::start(Answer::Accept).await;
    let app = spawn_app(&[
        ("CAMERAS", "1"),
        ("FPS", "20"),
        ("WIDTH", "64"),
        ("HEIGHT", "64"),
        ("DURATION", "300ms"),
        ("PROCESSOR_URL", &receiver.url),
    ])
    .await;
    let stats = stats_until(&app.url, |stats| stats["running"] == false).await;
    let camera = &stats["cameras"][0];
    assert_eq!(camera["captured"], camera["delivered"], "{stats}");
    assert_eq!(camera["fps"], 0.0);
}

#[test]
fn an_invalid_variable_stops_startup_naming_it() {
    let stderr = startup_error(&[("FPS", "0")]);
    assert!(stderr.contains("invalid FPS=\"0\""), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
