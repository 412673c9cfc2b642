//! Detections scored against a frame's ground truth: precision and recall per stage.
//!
//! frame-capture renders synthetic scenes and knows what it drew: each frame's metadata
//! carries `attributes.ground_truth`, the JSON of its [`GroundTruth`] list (kind, box,
//! face box, velocity of every object). When a frame arrives with it, the pipeline scores
//! the frame's detections and the camera's statistics accumulate the counts.
//!
//! The rules (the ones `tests/api/accuracy.rs` applies to 300 frames):
//!
//! - **Objects**: each truth is a (kind, box) pair. Truths are matched greedily, in order,
//!   each to the unused detection of the same label with the highest IoU, when that IoU
//!   is at least [`OBJECT_MIN_IOU`] (0.5). A detection matches at most one truth.
//! - **Faces**: the same, with the face boxes of the truths (objects that show a face) and
//!   the label `face`.
//! - **Gestures** need the truth of the camera's previous frame (the frame the gesture
//!   stage compared this one with), object by object in the same order. An object moving
//!   in the same direction (the signs of both velocity components) in both frames expects
//!   a swipe in its dominant direction (`swipe_right` when `|dx| >= |dy|` and `dx >= 0`,
//!   and so on), over the union of its boxes in the two frames; a swipe matches it with an
//!   IoU of at least [`GESTURE_MIN_IOU`] (0.3). An object that bounced off an edge between
//!   the frames is judged neither way: swipes overlapping its union box by that IoU are
//!   left out of the detections, and it expects nothing. Without a previous truth (the
//!   camera's first frame, or a previous frame without ground truth), or when the two
//!   frames list a different number of objects, gestures are not scored for the frame.
//!
//! Precision is `matched / detections` and recall `matched / truths`, both 0 when the
//! denominator is 0.
//!
//! Ground truth comes from clients, so it is read leniently ([`ground_truth_of_metadata`],
//! [`ground_truth_of_attributes`]):
//! absent or malformed means the frame is not scored, never that the request fails. A
//! truth list is malformed when it is not the JSON above, lists more than [`MAX_TRUTHS`]
//! objects (which bounds matching work and what a camera keeps), or has a box whose far
//! edge does not fit in `u32` or a velocity that is not finite.
//!
//! ```
//! use frame_capture::scene::{BoundingBox, GroundTruth, ObjectKind};
//! use frame_processor::accuracy::score_objects;
//! use frame_processor::detect::{self, Detection};
//!
//! let truth = [GroundTruth {
//!     kind: ObjectKind::Ball,
//!     bbox: BoundingBox { x: 10, y: 10, width: 20, height: 20 },
//!     face: None,
//!     velocity: (1.0, 0.0),
//! }];
//! let found = [Detection {
//!     label: "ball".to_owned(),
//!     confidence: 0.9,
//!     bbox: detect::BoundingBox { x: 11, y: 10, width: 20, height: 20 },
//! }];
//! let score = score_objects(&truth, &found);
//! assert_eq!((score.matched, score.detections, score.truths), (1, 1, 1));
//! assert_eq!(score.precision(), 1.0);
//! ```

use std::collections::BTreeMap;

use frame_capture::scene::{BoundingBox, GroundTruth};
use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Serialize, Serializer};

use crate::detect::{self, Detection};
use crate::model::Detections;

/// The smallest IoU with which an object or face detection matches its truth.
pub const OBJECT_MIN_IOU: f64 = 0.5;

/// The smallest IoU with which a swipe matches the union of a moving object's boxes.
pub const GESTURE_MIN_IOU: f64 = 0.3;

/// The most objects a frame's ground truth may list; a longer list is not scored.
pub const MAX_TRUTHS: usize = 64;

/// Counts of one stage: what should have been found, what was, and how much agreed.
///
/// Serialized with `precision` and `recall` beside the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Score {
    /// What the ground truth says should be found.
    pub truths: u64,
    /// What the stage found (that was judged).
    pub detections: u64,
    /// Detections matched to a truth.
    pub matched: u64,
}

/// The score of one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameScore {
    /// Objects.
    pub objects: Score,
    /// Faces.
    pub faces: Score,
    /// Gestures, `None` when the frame could not be judged (see the module doc).
    pub gestures: Option<Score>,
}

/// Scores accumulated over frames: the `accuracy` of a camera's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Objects.
    pub objects: Score,
    /// Faces.
    pub faces: Score,
    /// Gestures (over the frames that had a previous truth).
    pub gestures: Score,
    /// Frames that carried ground truth.
    pub frames_scored: u64,
}

/// Why a ground truth attribute was not used.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    /// Not a JSON list of ground truths.
    #[error("ground truth is not a list of objects: {0}")]
    Json(#[from] serde_json::Error),
    /// Too many objects.
    #[error("ground truth lists {0} objects, at most {MAX_TRUTHS} are scored")]
    TooMany(usize),
    /// A box or velocity out of range.
    #[error("ground truth object {0} has a box beyond u32 or a velocity that is not finite")]
    OutOfRange(usize),
}

impl Score {
    /// `matched / detections`, 0 without detections.
    pub fn precision(&self) -> f64 {
        ratio(self.matched, self.detections)
    }

    /// `matched / truths`, 0 without truths.
    pub fn recall(&self) -> f64 {
        ratio(self.matched, self.truths)
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Score) {
        self.truths += other.truths;
        self.detections += other.detections;
        self.matched += other.matched;
    }
}

impl Serialize for Score {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut state = serializer.serialize_struct("Score", 5)?;
        state.serialize_field("precision", &self.precision())?;
        state.serialize_field("recall", &self.recall())?;
        state.serialize_field("matched", &self.matched)?;
        state.serialize_field("detections", &self.detections)?;
        state.serialize_field("truths", &self.truths)?;
        state.end()
    }
}

impl Accuracy {
    /// Adds one frame's score.
    pub fn add(&mut self, frame: &FrameScore) {
        self.objects.add(&frame.objects);
        self.faces.add(&frame.faces);
        if let Some(gestures) = &frame.gestures {
            self.gestures.add(gestures);
        }
        self.frames_scored += 1;
    }
}

/// Scores a frame's detections against its `truth`; `previous` is the truth of the frame
/// the gesture stage compared it with.
pub fn score_frame(
    truth: &[GroundTruth],
    previous: Option<&[GroundTruth]>,
    detections: &Detections,
) -> FrameScore {
    FrameScore {
        objects: score_objects(truth, &detections.objects.items),
        faces: score_faces(truth, &detections.faces.items),
        gestures: previous
            .and_then(|previous| score_gestures(truth, previous, &detections.gestures.items)),
    }
}

/// Object detections against the objects of `truth`.
pub fn score_objects(truth: &[GroundTruth], found: &[Detection]) -> Score {
    let truths: Vec<_> = truth.iter().map(|t| (t.kind.as_str(), t.bbox)).collect();
    score(&truths, &labelled(found), OBJECT_MIN_IOU)
}

/// Face detections against the faces of `truth`.
pub fn score_faces(truth: &[GroundTruth], found: &[Detection]) -> Score {
    let truths: Vec<_> = truth
        .iter()
        .filter_map(|t| t.face.map(|face| ("face", face)))
        .collect();
    score(&truths, &labelled(found), OBJECT_MIN_IOU)
}

/// Swipes against the motion from `previous` to `truth`; `None` when the two frames list
/// a different number of objects.
pub fn score_gestures(
    truth: &[GroundTruth],
    previous: &[GroundTruth],
    found: &[Detection],
) -> Option<Score> {
    if truth.len() != previous.len() {
        return None;
    }
    let mut expected = Vec::new();
    let mut bounced = Vec::new();
    for (now, then) in truth.iter().zip(previous) {
        let area = union(&now.bbox, &then.bbox);
        let same_direction = now.velocity.0.signum() == then.velocity.0.signum()
            && now.velocity.1.signum() == then.velocity.1.signum();
        if same_direction {
            expected.push((swipe(now.velocity), area));
        } else {
            bounced.push(area);
        }
    }
    // Swipes over a bouncing object are neither right nor wrong.
    let judged: Vec<_> = labelled(found)
        .into_iter()
        .filter(|(_, found)| {
            !bounced
                .iter()
                .any(|area| area.iou(found) >= GESTURE_MIN_IOU)
        })
        .collect();
    Some(score(&expected, &judged, GESTURE_MIN_IOU))
}

/// The swipe an object moving at `velocity` (pixels per frame, y down) should cause.
pub fn swipe(velocity: (f32, f32)) -> &'static str {
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

/// Reads a ground truth attribute: the JSON list frame-capture writes.
pub fn parse_ground_truth(json: &str) -> Result<Vec<GroundTruth>, TruthError> {
    checked(serde_json::from_str(json)?)
}

/// The ground truth of a frame's metadata (a `FrameMetadata` as JSON, from an HTTP body):
/// its `attributes.ground_truth`, a string holding the JSON list (or the list itself).
/// `None` when absent or malformed (logged at debug level).
pub fn ground_truth_of_metadata(metadata: &serde_json::Value) -> Option<Vec<GroundTruth>> {
    let attribute = metadata.get("attributes")?.get("ground_truth")?;
    let parsed = match attribute {
        serde_json::Value::String(json) => parse_ground_truth(json),
        other => Vec::<GroundTruth>::deserialize(other)
            .map_err(TruthError::from)
            .and_then(checked),
    };
    lenient(parsed)
}

/// The ground truth of a frame's metadata attributes (a `FrameMetadata` from a queue):
/// `None` when absent or malformed (logged at debug level).
pub fn ground_truth_of_attributes(
    attributes: &BTreeMap<String, String>,
) -> Option<Vec<GroundTruth>> {
    lenient(parse_ground_truth(attributes.get("ground_truth")?))
}

fn lenient(parsed: Result<Vec<GroundTruth>, TruthError>) -> Option<Vec<GroundTruth>> {
    parsed
        .inspect_err(|error| tracing::debug!(%error, "ground truth ignored; frame not scored"))
        .ok()
}

fn checked(truth: Vec<GroundTruth>) -> Result<Vec<GroundTruth>, TruthError> {
    if truth.len() > MAX_TRUTHS {
        return Err(TruthError::TooMany(truth.len()));
    }
    // Boxes are compared with `BoundingBox::iou`, which adds edges in u32.
    let fits =
        |b: &BoundingBox| b.x.checked_add(b.width).is_some() && b.y.checked_add(b.height).is_some();
    for (index, object) in truth.iter().enumerate() {
        let in_range = fits(&object.bbox)
            && object.face.as_ref().is_none_or(fits)
            && object.velocity.0.is_finite()
            && object.velocity.1.is_finite();
        if !in_range {
            return Err(TruthError::OutOfRange(index));
        }
    }
    Ok(truth)
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn labelled(found: &[Detection]) -> Vec<(&str, BoundingBox)> {
    found
        .iter()
        .map(|detection| (detection.label.as_str(), scene_box(&detection.bbox)))
        .collect()
}

fn scene_box(bbox: &detect::BoundingBox) -> BoundingBox {
    BoundingBox {
        x: bbox.x,
        y: bbox.y,
        width: bbox.width,
        height: bbox.height,
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

fn score(truths: &[(&str, BoundingBox)], found: &[(&str, BoundingBox)], min_iou: f64) -> Score {
    Score {
        truths: truths.len() as u64,
        detections: found.len() as u64,
        matched: matches(truths, found, min_iou),
    }
}

/// Greedy matching: each truth in turn takes the unused detection of its label with the
/// highest IoU, when that IoU reaches `min_iou`.
fn matches(truths: &[(&str, BoundingBox)], found: &[(&str, BoundingBox)], min_iou: f64) -> u64 {
    let mut used = vec![false; found.len()];
    let mut matched = 0;
    for (label, truth) in truths {
        let best = found
            .iter()
            .enumerate()
            .filter(|(index, (found_label, _))| !used[*index] && found_label == label)
            .map(|(index, (_, found_box))| (index, truth.iou(found_box)))
            .filter(|(_, iou)| *iou >= min_iou)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((index, _)) = best {
            used[index] = true;
            matched += 1;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use frame_capture::scene::{BoundingBox, GroundTruth, ObjectKind};
    use serde_json::json;

    use crate::accuracy::{
        Accuracy, FrameScore, MAX_TRUTHS, Score, TruthError, ground_truth_of_metadata,
        parse_ground_truth, score_faces, score_frame, score_gestures, score_objects, swipe,
    };
    use crate::detect::{self, Detection};
    use crate::model::{Detections, StageResult};

    fn boxed(x: u32, y: u32, width: u32, height: u32) -> BoundingBox {
        BoundingBox {
            x,
            y,
            width,
            height,
        }
    }

    fn truth(kind: ObjectKind, bbox: BoundingBox, velocity: (f32, f32)) -> GroundTruth {
        GroundTruth {
            kind,
            bbox,
            face: None,
            velocity,
        }
    }

    fn found(label: &str, bbox: BoundingBox) -> Detection {
        Detection {
            label: label.to_owned(),
            confidence: 0.9,
            bbox: detect::BoundingBox {
                x: bbox.x,
                y: bbox.y,
                width: bbox.width,
                height: bbox.height,
            },
        }
    }

    fn stage(items: Vec<Detection>) -> StageResult {
        StageResult {
            count: items.len(),
            items,
            duration_ms: 0.0,
        }
    }

    #[test]
    fn a_detection_of_the_right_class_over_half_overlapping_matches() {
        let truths = [truth(ObjectKind::Person, boxed(10, 10, 20, 40), (1.0, 0.0))];
        let score = score_objects(&truths, &[found("person", boxed(12, 12, 20, 40))]);
        assert_eq!(
            score,
            Score {
                truths: 1,
                detections: 1,
                matched: 1
            }
        );
    }

    #[test]
    fn another_class_or_a_small_overlap_does_not_match() {
        let truths = [truth(ObjectKind::Person, boxed(10, 10, 20, 40), (1.0, 0.0))];
        let wrong_class = score_objects(&truths, &[found("vehicle", boxed(10, 10, 20, 40))]);
        assert_eq!(wrong_class.matched, 0);
        // IoU 1/3: half the box shifted away.
        let shifted = score_objects(&truths, &[found("person", boxed(20, 10, 20, 40))]);
        assert_eq!(shifted.matched, 0);
        assert_eq!((shifted.precision(), shifted.recall()), (0.0, 0.0));
    }

    #[test]
    fn a_detection_matches_at_most_one_truth() {
        let truths = [
            truth(ObjectKind::Ball, boxed(0, 0, 10, 10), (1.0, 0.0)),
            truth(ObjectKind::Ball, boxed(1, 0, 10, 10), (1.0, 0.0)),
        ];
        let score = score_objects(&truths, &[found("ball", boxed(0, 0, 10, 10))]);
        assert_eq!((score.matched, score.detections, score.truths), (1, 1, 2));
        assert_eq!((score.precision(), score.recall()), (1.0, 0.5));
    }

    #[test]
    fn each_truth_takes_the_best_overlapping_unused_detection() {
        let truths = [
            truth(ObjectKind::Ball, boxed(0, 0, 10, 10), (1.0, 0.0)),
            truth(ObjectKind::Ball, boxed(4, 0, 10, 10), (1.0, 0.0)),
        ];
        let detections = [
            found("ball", boxed(4, 0, 10, 10)),
            found("ball", boxed(0, 0, 10, 10)),
        ];
        assert_eq!(score_objects(&truths, &detections).matched, 2);
    }

    #[test]
    fn faces_are_expected_only_on_objects_that_show_one() {
        let mut person = truth(ObjectKind::Person, boxed(10, 10, 20, 40), (1.0, 0.0));
        person.face = Some(boxed(14, 12, 12, 12));
        let ball = truth(ObjectKind::Ball, boxed(60, 60, 10, 10), (1.0, 0.0));
        let score = score_faces(
            &[person, ball],
            &[
                found("face", boxed(14, 12, 12, 12)),
                found("face", boxed(60, 60, 10, 10)),
            ],
        );
        assert_eq!((score.matched, score.detections, score.truths), (1, 2, 1));
    }

    #[test]
    fn a_moving_object_expects_a_swipe_in_its_dominant_direction() {
        assert_eq!(swipe((3.0, -1.0)), "swipe_right");
        assert_eq!(swipe((-3.0, 1.0)), "swipe_left");
        assert_eq!(swipe((1.0, 3.0)), "swipe_down");
        assert_eq!(swipe((1.0, -3.0)), "swipe_up");
        let before = [truth(ObjectKind::Ball, boxed(10, 10, 10, 10), (-2.0, 0.5))];
        let now = [truth(ObjectKind::Ball, boxed(8, 10, 10, 10), (-2.0, 0.5))];
        let over_both = boxed(8, 10, 12, 10);
        let right = score_gestures(&now, &before, &[found("swipe_left", over_both)]);
        assert_eq!(
            right,
            Some(Score {
                truths: 1,
                detections: 1,
                matched: 1
            })
        );
        let wrong = score_gestures(&now, &before, &[found("swipe_right", over_both)]);
        assert_eq!(wrong.map(|score| score.matched), Some(0));
    }

    #[test]
    fn swipes_over_a_bouncing_object_are_not_judged() {
        let before = [truth(ObjectKind::Ball, boxed(0, 10, 10, 10), (-2.0, 0.0))];
        let now = [truth(ObjectKind::Ball, boxed(1, 10, 10, 10), (2.0, 0.0))];
        let score = score_gestures(&now, &before, &[found("swipe_right", boxed(0, 10, 11, 10))]);
        assert_eq!(score, Some(Score::default()));
    }

    #[test]
    fn gestures_are_not_scored_without_a_comparable_previous_truth() {
        let now = [truth(ObjectKind::Ball, boxed(1, 10, 10, 10), (2.0, 0.0))];
        let detections = Detections {
            objects: stage(vec![found("ball", boxed(1, 10, 10, 10))]),
            faces: stage(Vec::new()),
            gestures: stage(vec![found("swipe_right", boxed(0, 10, 11, 10))]),
        };
        let first = score_frame(&now, None, &detections);
        assert_eq!(first.gestures, None);
        assert_eq!(first.objects.matched, 1);
        let two_objects_before = [now[0], now[0]];
        assert_eq!(
            score_frame(&now, Some(&two_objects_before), &detections).gestures,
            None
        );
    }

    #[test]
    fn accuracy_adds_frames_and_gestures_only_when_judged() {
        let one = Score {
            truths: 2,
            detections: 1,
            matched: 1,
        };
        let mut accuracy = Accuracy::default();
        accuracy.add(&FrameScore {
            objects: one,
            faces: one,
            gestures: None,
        });
        accuracy.add(&FrameScore {
            objects: one,
            faces: Score::default(),
            gestures: Some(one),
        });
        assert_eq!(accuracy.frames_scored, 2);
        assert_eq!(accuracy.objects.truths, 4);
        assert_eq!(accuracy.faces, one);
        assert_eq!(accuracy.gestures, one);
    }

    #[test]
    fn a_score_serializes_with_precision_and_recall() {
        let score = Score {
            truths: 4,
            detections: 2,
            matched: 1,
        };
        let value = serde_json::to_value(score).expect("serializes");
        assert_eq!(
            value,
            json!({"precision": 0.5, "recall": 0.25, "matched": 1, "detections": 2, "truths": 4})
        );
        let back: Score = serde_json::from_value(value).expect("deserializes");
        assert_eq!(back, score);
    }

    #[test]
    fn ground_truth_is_read_from_the_metadata_attribute() {
        let objects = vec![truth(ObjectKind::Vehicle, boxed(5, 6, 30, 12), (1.5, -0.5))];
        let text = serde_json::to_string(&objects).expect("serializes");
        let as_written = json!({"frame_id": "x", "attributes": {"ground_truth": text}});
        assert_eq!(ground_truth_of_metadata(&as_written), Some(objects.clone()));
        let as_list = json!({"attributes": {"ground_truth": objects}});
        assert_eq!(ground_truth_of_metadata(&as_list), Some(objects));
        let empty = json!({"attributes": {"ground_truth": "[]"}});
        assert_eq!(ground_truth_of_metadata(&empty), Some(Vec::new()));
    }

    #[test]
    fn absent_or_malformed_ground_truth_is_none() {
        for metadata in [
            json!(null),
            json!("metadata"),
            json!({}),
            json!({"attributes": {}}),
            json!({"attributes": "ground_truth"}),
            json!({"attributes": {"ground_truth": "not json"}}),
            json!({"attributes": {"ground_truth": 7}}),
            json!({"attributes": {"ground_truth": [{"kind": "dragon"}]}}),
        ] {
            assert_eq!(ground_truth_of_metadata(&metadata), None, "{metadata}");
        }
    }

    #[test]
    fn oversized_lists_and_overflowing_boxes_are_rejected() {
        let one = truth(ObjectKind::Ball, boxed(1, 1, 2, 2), (1.0, 1.0));
        let many = serde_json::to_string(&vec![one; MAX_TRUTHS + 1]).expect("serializes");
        assert!(matches!(
            parse_ground_truth(&many),
            Err(TruthError::TooMany(count)) if count == MAX_TRUTHS + 1
        ));
        let mut overflowing = one;
        overflowing.bbox = boxed(u32::MAX, 0, 2, 2);
        let text = serde_json::to_string(&[one, overflowing]).expect("serializes");
        assert!(matches!(
            parse_ground_truth(&text),
            Err(TruthError::OutOfRange(1))
        ));
        let mut bad_face = one;
        bad_face.face = Some(boxed(0, u32::MAX, 1, 1));
        let text = serde_json::to_string(&[bad_face]).expect("serializes");
        assert!(matches!(
            parse_ground_truth(&text),
            Err(TruthError::OutOfRange(0))
        ));
    }
}
