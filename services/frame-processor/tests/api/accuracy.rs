//! Detections against the scene's ground truth on 300 synthetic frames sent over HTTP,
//! scored with `frame_processor::accuracy` (whose module doc states the matching rules),
//! and the processor's own online score in the camera statistics.
//!
//! Each frame is sent the way frame-capture sends it: the `POST /process` body of
//! `frame_capture::delivery::request_body`, whose `metadata` carries the ground truth.
//!
//! Floors: the scene has no occlusion and low-saturation noise, so segmentation should
//! find essentially every object; the floors leave room for the cases that really occur
//! (a vehicle's box lacks the lower half of its wheels; small faces at 320x240 have eyes
//! of a few pixels). Measured numbers are printed to stderr with `--nocapture`.

use std::collections::BTreeSet;

use frame_capture::config::Encoding;
use frame_capture::delivery::{CapturedFrame, request_body};
use frame_capture::scene::{GroundTruth, ObjectKind, RenderedFrame, Scene, SceneConfig};
use frame_processor::accuracy::{Accuracy, score_frame};
use frame_processor::cameras::CameraStats;
use frame_processor::model::FrameResult;
use frame_tracking::{FrameId, FrameMetadata};
use serde_json::{Value, json};

use crate::helpers::{TestApp, frame_body, spawn_app};

const CAMERAS: u64 = 3;
const FRAMES_PER_CAMERA: u64 = 100;

/// The body frame-capture's HTTP delivery sends for `frame`.
fn capture_body(camera_id: &str, frame: &RenderedFrame) -> Value {
    let frame_id = FrameId::generate(camera_id, "test").expect("valid camera id");
    let mut metadata = FrameMetadata::new(frame_id);
    metadata.width = frame.image.width();
    metadata.height = frame.image.height();
    metadata.format = Encoding::Rgb24.as_str().to_owned();
    metadata.sequence = frame.index;
    metadata.attributes.insert(
        "ground_truth".to_owned(),
        serde_json::to_string(&frame.truth).expect("truth serializes"),
    );
    let captured = CapturedFrame {
        metadata,
        encoding: Encoding::Rgb24,
        encoded: frame.image.as_raw().clone(),
        truth: frame.truth.clone(),
    };
    serde_json::from_str(&request_body(&captured)).expect("the body is JSON")
}

async fn camera_stats(app: &TestApp, camera_id: &str) -> Value {
    let (status, stats) = app.get(&format!("/cameras/{camera_id}/stats")).await;
    assert_eq!(status, 200, "{stats}");
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_match_the_ground_truth_of_synthetic_frames() {
    let app = spawn_app().await;
    let mut total = Accuracy::default();
    let mut classes_seen = BTreeSet::new();
    for camera in 0..CAMERAS {
        let scene = Scene::new(SceneConfig {
            width: 320,
            height: 240,
            objects: 3 + camera as usize % 2,
            seed: 100 + camera,
        })
        .expect("valid scene");
        let camera_id = format!("acc{camera}");
        let mut expected = Accuracy::default();
        let mut previous: Option<Vec<GroundTruth>> = None;
        for index in 0..FRAMES_PER_CAMERA {
            let frame = scene.render(index);
            let (status, response) = app
                .post("/process", &capture_body(&camera_id, &frame))
                .await;
            assert_eq!(status, 200, "{response}");
            let result: FrameResult = serde_json::from_value(response).expect("a frame result");
            classes_seen.extend(
                result
                    .detections
                    .objects
                    .items
                    .iter()
                    .map(|item| item.label.clone()),
            );
            expected.add(&score_frame(
                &frame.truth,
                previous.as_deref(),
                &result.detections,
            ));
            previous = Some(frame.truth);
        }

        let stats = camera_stats(&app, &camera_id).await;
        let online: CameraStats = serde_json::from_value(stats.clone()).expect("camera stats");
        assert_eq!(online.accuracy, Some(expected), "{stats}");
        assert_eq!(stats["accuracy"]["frames_scored"], FRAMES_PER_CAMERA);
        assert_eq!(
            stats["accuracy"]["objects"]["precision"].as_f64(),
            Some(expected.objects.precision()),
            "{stats}"
        );
        assert_eq!(
            stats["accuracy"]["gestures"]["recall"].as_f64(),
            Some(expected.gestures.recall()),
            "{stats}"
        );
        total.objects.add(&expected.objects);
        total.faces.add(&expected.faces);
        total.gestures.add(&expected.gestures);
        total.frames_scored += expected.frames_scored;
    }
    for (name, score) in [
        ("objects", &total.objects),
        ("faces", &total.faces),
        ("gestures", &total.gestures),
    ] {
        eprintln!(
            "{name}: precision {:.3} recall {:.3} ({} matched, {} detections, {} truths)",
            score.precision(),
            score.recall(),
            score.matched,
            score.detections,
            score.truths
        );
    }
    let expected_classes: BTreeSet<_> = ObjectKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(classes_seen, expected_classes);
    let (objects, faces, gestures) = (total.objects, total.faces, total.gestures);
    assert_eq!(total.frames_scored, CAMERAS * FRAMES_PER_CAMERA);
    assert!(
        objects.truths >= 900 && faces.truths >= 100,
        "{objects:?} {faces:?}"
    );
    assert!(
        objects.precision() >= 0.95 && objects.recall() >= 0.95,
        "objects {objects:?}"
    );
    assert!(
        faces.precision() >= 0.9 && faces.recall() >= 0.85,
        "faces {faces:?}"
    );
    assert!(
        gestures.precision() >= 0.85 && gestures.recall() >= 0.85,
        "gestures {gestures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_without_usable_ground_truth_are_processed_but_not_scored() {
    let app = spawn_app().await;
    let scene = Scene::new(SceneConfig {
        width: 160,
        height: 120,
        objects: 2,
        seed: 7,
    })
    .expect("valid scene");
    let camera_id = "nogt";
    let malformed = [
        json!(null),
        json!("not metadata"),
        json!({"attributes": {}}),
        json!({"attributes": {"ground_truth": "{not json"}}),
        json!({"attributes": {"ground_truth": [{"kind": "dragon"}]}}),
        json!({"attributes": {"ground_truth": [{
            "kind": "ball",
            "bbox": {"x": u32::MAX, "y": 0, "width": 10, "height": 10},
            "face": null,
            "velocity": [1.0, 0.0],
        }]}}),
    ];
    let mut index = 0;
    for metadata in malformed {
        let mut body = frame_body(camera_id, &scene.render(index), "rgb24");
        body["metadata"] = metadata.clone();
        let (status, result) = app.post("/process", &body).await;
        assert_eq!(status, 200, "metadata {metadata}: {result}");
        index += 1;
    }
    let stats = camera_stats(&app, camera_id).await;
    assert_eq!(stats["frames_processed"], index, "{stats}");
    assert_eq!(stats["accuracy"], Value::Null, "{stats}");

    // The next frame with ground truth is scored; its gestures are not, because the
    // frame before it had no truth to compare with.
    let (status, result) = app
        .post("/process", &capture_body(camera_id, &scene.render(index)))
        .await;
    assert_eq!(status, 200, "{result}");
    let stats = camera_stats(&app, camera_id).await;
    assert_eq!(stats["accuracy"]["frames_scored"], 1, "{stats}");
    assert_eq!(stats["accuracy"]["objects"]["truths"], 2, "{stats}");
    assert_eq!(stats["accuracy"]["gestures"]["truths"], 0, "{stats}");
    assert_eq!(stats["accuracy"]["gestures"]["detections"], 0, "{stats}");
}
