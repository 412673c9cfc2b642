//! `POST /process`, `GET /frames/{id}`, `GET /cameras/{id}/stats`, `POST /simulate`:
//! happy paths and the 4xx answers that name the problem.

use frame_capture::scene::{Scene, SceneConfig};
use serde_json::{Value, json};

use crate::helpers::{client, frame_body, send, spawn_app, spawn_app_with};

fn frame(seed: u64, index: u64) -> frame_capture::scene::RenderedFrame {
    Scene::new(SceneConfig {
        width: 320,
        height: 240,
        objects: 3,
        seed,
    })
    .expect("valid scene")
    .render(index)
}

#[tokio::test]
async fn a_frame_is_processed_stored_and_counted_per_camera() {
    let app = spawn_app().await;
    let body = frame_body("cam01", &frame(1, 0), "png");
    let (status, result) = app.post("/process", &body).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["frame_id"], body["frame_id"]);
    assert_eq!(result["status"], "processed");
    assert_eq!(result["detections"]["objects"]["count"], 3, "{result}");
    assert!(result["summary"]["total_detections"].as_u64().unwrap() >= 3);

    let frame_id = body["frame_id"].as_str().unwrap();
    let (status, stored) = app.get(&format!("/frames/{frame_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(stored, result);

    let (status, stats) = app.get("/cameras/cam01/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["frames_processed"], 1);
    assert_eq!(stats["detections"]["objects"], 3);
    assert_eq!(stats["last_frame_id"], body["frame_id"]);
}

#[tokio::test]
async fn raw_png_and_jpeg_pixels_all_decode() {
    let app = spawn_app().await;
    for format in ["rgb24", "png", "jpeg"] {
        let (status, result) = app
            .post("/process", &frame_body("cam01", &frame(2, 3), format))
            .await;
        assert_eq!(status, 200, "{format}: {result}");
        assert!(
            result["detections"]["objects"]["count"].as_u64().unwrap() >= 2,
            "{format}: {result}"
        );
    }
}

async fn rejected(body: Value) -> (u16, String) {
    let app = spawn_app().await;
    let (status, answer) = app.post("/process", &body).await;
    let error = answer["error"]
        .as_str()
        .unwrap_or_else(|| panic!("a JSON error body, got {answer}"))
        .to_owned();
    (status, error)
}

#[tokio::test]
async fn a_request_without_pixels_is_a_400_naming_the_image() {
    let mut body = frame_body("cam01", &frame(1, 0), "rgb24");
    body.as_object_mut().unwrap().remove("image");
    let (status, error) = rejected(body).await;
    assert_eq!(status, 400);
    assert!(error.contains("missing image"), "{error}");
}

#[tokio::test]
async fn raw_pixels_of_the_wrong_size_are_a_400_naming_both_sizes() {
    let mut body = frame_body("cam01", &frame(1, 0), "rgb24");
    body["frame_data"]["width"] = json!(321);
    let (status, error) = rejected(body).await;
    assert_eq!(status, 400);
    assert!(
        error.contains("230400 bytes") && error.contains("321x240"),
        "{error}"
    );
}

#[tokio::test]
async fn an_undecodable_png_is_a_422() {
    let mut body = frame_body("cam01", &frame(1, 0), "png");
    body["image"] = json!("aGVsbG8gd29ybGQ=");
    let (status, error) = rejected(body).await;
    assert_eq!(status, 422);
    assert!(error.contains("not a decodable png"), "{error}");
}

#[tokio::test]
async fn a_png_whose_size_differs_from_frame_data_is_a_400() {
    let mut body = frame_body("cam01", &frame(1, 0), "png");
    body["frame_data"]["height"] = json!(200);
    let (status, error) = rejected(body).await;
    assert_eq!(status, 400);
    assert!(
        error.contains("320x240") && error.contains("320x200"),
        "{error}"
    );
}

#[tokio::test]
async fn bad_ids_and_formats_are_400s_naming_the_field() {
    let mut body = frame_body("cam01", &frame(1, 0), "rgb24");
    body["frame_id"] = json!("not-a-frame-id");
    assert!(rejected(body).await.1.contains("frame_id"));
    let mut body = frame_body("cam01", &frame(1, 0), "rgb24");
    body["camera_id"] = json!("cam02");
    assert!(rejected(body).await.1.contains("camera_id"));
    let mut body = frame_body("cam01", &frame(1, 0), "rgb24");
    body["frame_data"]["format"] = json!("gif");
    assert!(rejected(body).await.1.contains("frame_data.format"));
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_is_a_json_422() {
    let (status, error) = rejected(json!({ "frame_id": 7 })).await;
    assert_eq!(status, 422);
    assert!(error.contains("expected shape"), "{error}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_json_413() {
    let app = spawn_app_with(&[("MAX_BODY_BYTES", "64KiB")]).await;
    let (status, answer) = app
        .post("/process", &frame_body("cam01", &frame(1, 0), "rgb24"))
        .await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].is_string(), "{answer}");
}

#[tokio::test]
async fn the_default_limit_takes_a_raw_vga_frame() {
    let app = spawn_app().await;
    let vga = Scene::new(SceneConfig {
        width: 640,
        height: 480,
        objects: 3,
        seed: 4,
    })
    .unwrap()
    .render(0);
    let (status, answer) = app
        .post("/process", &frame_body("cam01", &vga, "rgb24"))
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn unknown_frames_and_cameras_are_json_404s() {
    let app = spawn_app().await;
    let (status, answer) = app.get("/frames/cam01-test-nothing").await;
    assert_eq!(status, 404);
    assert!(answer["error"].is_string());
    let (status, _) = app.get("/cameras/nobody/stats").await;
    assert_eq!(status, 404);
    let (status, answer) = send(client().get(format!("{}/nowhere?token=secret", app.url))).await;
    assert_eq!(status, 404);
    assert!(!answer.to_string().contains("secret"), "{answer}");
}

#[tokio::test]
async fn simulate_processes_synthetic_frames_with_their_truth() {
    let app = spawn_app().await;
    let (status, answer) = app
        .post(
            "/simulate",
            &json!({ "camera_id": "sim07", "frames": 4, "seed": 3 }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let frames = answer["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[0]["ground_truth"].as_array().unwrap().len(), 3);
    assert_eq!(frames[3]["result"]["detections"]["objects"]["count"], 3);
    // Frames after the first have a previous frame, so motion is visible.
    assert!(
        frames[3]["result"]["detections"]["gestures"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    let (_, stats) = app.get("/cameras/sim07/stats").await;
    assert_eq!(stats["frames_processed"], 4);

    let (status, answer) = app.post("/simulate", &json!({ "frames": 1000 })).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("frames"),
        "{answer}"
    );
    let (status, _) = app.post("/simulate", &json!({ "width": 5 })).await;
    assert_eq!(status, 400);
}
