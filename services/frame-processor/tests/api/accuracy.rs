//! Detections against the scene's ground truth on 300 synthetic frames sent over HTTP.
//!
//! Matching: a detection is a true positive when it has the ground truth's class and an
//! IoU of at least 0.5 with its box (each truth matched once, greedily by IoU). Gestures:
//! an object moving since the previous frame expects a swipe in its dominant direction; a
//! swipe matches when its label is that direction and its box overlaps the object's boxes
//! of both frames (IoU >= 0.3 with their union). Objects that bounced off an edge between
//! the two frames are left out of the gesture count either way.
//!
//! Floors: the scene has no occlusion and low-saturation noise, so segmentation should
//! find essentially every object; the floors leave room for the cases that really occur
//! (a vehicle's box lacks the lower half of its wheels; small faces at 320x240 have eyes
//! of a few pixels). Measured numbers are printed to stderr with `--nocapture`.

use frame_capture::scene::{BoundingBox, GroundTruth, ObjectKind, Scene, SceneConfig};
use serde_json::Value;

use crate::helpers::{frame_body, spawn_app};

const CAMERAS: u64 = 3;
const FRAMES_PER_CAMERA: u64 = 100;

#[derive(Debug, Default)]
struct Score {
    truths: usize,
    detections: usize,
    matched: usize,
}

impl Score {
    fn precision(&self) -> f64 {
        self.matched as f64 / self.detections.max(1) as f64
    }

    fn recall(&self) -> f64 {
        self.matched as f64 / self.truths.max(1) as f64
    }
}

fn bbox(value: &Value) -> BoundingBox {
    let field = |name: &str| value[name].as_u64().expect("bbox field") as u32;
    BoundingBox {
        x: field("x"),
        y: field("y"),
        width: field("width"),
        height: field("height"),
    }
}

fn union(a: &BoundingBox, b: &BoundingBox) -> BoundingBox {
    let (x, y) = (a.x.min(b.x), a.y.min(b.y));
    BoundingBox {
        x,
        y,
        width: (a.x + a.width).max(b.x + b.width) - x,
        height: (a.y + a.height).max(b.y + b.height) - y,
    }
}

/// Greedy matching of `truths` (label, box) to `detections` (label, box).
fn matches(
    truths: &[(String, BoundingBox)],
    detections: &[(String, BoundingBox)],
    min_iou: f64,
) -> usize {
    let mut used = vec![false; detections.len()];
    let mut matched = 0;
    for (label, truth) in truths {
        let best = detections
            .iter()
            .enumerate()
            .filter(|(i, (l, _))| !used[*i] && l == label)
            .map(|(i, (_, found))| (i, truth.iou(found)))
            .filter(|(_, iou)| *iou >= min_iou)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = best {
            used[i] = true;
            matched += 1;
        }
    }
    matched
}

fn detections(result: &Value, stage: &str) -> Vec<(String, BoundingBox)> {
    result["detections"][stage]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["label"].as_str().expect("label").to_owned(),
                bbox(&item["bbox"]),
            )
        })
        .collect()
}

fn swipe(velocity: (f32, f32)) -> &'static str {
    let (dx, dy) = velocity;
    if dx.abs() >= dy.abs() {
        if dx >= 0.0 {
            "swipe_right"
        } else {
            "swipe_left"
        }
    } else if dy >= 0.0 {
        "swipe_down"
    } else {
        "swipe_up"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_match_the_ground_truth_of_synthetic_frames() {
    let app = spawn_app().await;
    let (mut objects, mut faces, mut gestures) =
        (Score::default(), Score::default(), Score::default());
    let mut classes_seen = std::collections::BTreeSet::new();
    for camera in 0..CAMERAS {
        let scene = Scene::new(SceneConfig {
            width: 320,
            height: 240,
            objects: 3 + camera as usize % 2,
            seed: 100 + camera,
        })
        .expect("valid scene");
        let camera_id = format!("acc{camera}");
        let mut previous: Option<Vec<GroundTruth>> = None;
        for index in 0..FRAMES_PER_CAMERA {
            let frame = scene.render(index);
            let (status, result) = app
                .post("/process", &frame_body(&camera_id, &frame, "rgb24"))
                .await;
            assert_eq!(status, 200, "{result}");

            let truths: Vec<_> = frame
                .truth
                .iter()
                .map(|t| (t.kind.as_str().to_owned(), t.bbox))
                .collect();
            let found = detections(&result, "objects");
            classes_seen.extend(found.iter().map(|(label, _)| label.clone()));
            objects.truths += truths.len();
            objects.detections += found.len();
            objects.matched += matches(&truths, &found, 0.5);

            let face_truths: Vec<_> = frame
                .truth
                .iter()
                .filter_map(|t| t.face.map(|face| ("face".to_owned(), face)))
                .collect();
            let found = detections(&result, "faces");
            faces.truths += face_truths.len();
            faces.detections += found.len();
            faces.matched += matches(&face_truths, &found, 0.5);

            let found = detections(&result, "gestures");
            if let Some(before) = &previous {
                let mut expected = Vec::new();
                let mut bounced = Vec::new();
                for (now, then) in frame.truth.iter().zip(before) {
                    let area = union(&now.bbox, &then.bbox);
                    let same_direction = now.velocity.0.signum() == then.velocity.0.signum()
                        && now.velocity.1.signum() == then.velocity.1.signum();
                    if same_direction {
                        expected.push((swipe(now.velocity).to_owned(), area));
                    } else {
                        bounced.push(area);
                    }
                }
                // Swipes over a bouncing object are neither right nor wrong.
                let judged: Vec<_> = found
                    .into_iter()
                    .filter(|(_, b)| !bounced.iter().any(|area| area.iou(b) >= 0.3))
                    .collect();
                gestures.truths += expected.len();
                gestures.detections += judged.len();
                gestures.matched += matches(&expected, &judged, 0.3);
            }
            previous = Some(frame.truth.clone());
        }
    }
    for (name, score) in [
        ("objects", &objects),
        ("faces", &faces),
        ("gestures", &gestures),
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
    let expected_classes: std::collections::BTreeSet<_> = ObjectKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(classes_seen, expected_classes);
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
