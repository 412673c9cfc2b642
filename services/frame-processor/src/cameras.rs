//! Per-camera state: statistics for `GET /cameras/{camera_id}/stats` and the thumbnail of
//! the camera's latest frame, which the gesture stage compares the next frame with (with
//! that frame's ground truth, which scoring the next frame's gestures needs).
//!
//! Camera ids come from clients, so the map is bounded: beyond `max_cameras` the camera
//! seen least recently is forgotten. Per camera, only counters and the latest frame's
//! thumbnail and ground truth (at most [`crate::accuracy::MAX_TRUTHS`] objects) are kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use frame_capture::scene::GroundTruth;
use frame_tracking::FrameId;
use serde::{Deserialize, Serialize};

use crate::accuracy::{Accuracy, FrameScore};
use crate::detect::{Stage, Thumbnail};
use crate::model::FrameResult;

/// What `GET /cameras/{camera_id}/stats` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraStats {
    /// The camera.
    pub camera_id: String,
    /// Frames processed.
    pub frames_processed: u64,
    /// Detections per stage (`objects`, `faces`, `gestures`).
    pub detections: BTreeMap<String, u64>,
    /// Detections per label (`person`, `face`, `swipe_left`, ...).
    pub labels: BTreeMap<String, u64>,
    /// Mean processing time per frame, in milliseconds.
    pub average_processing_ms: f64,
    /// The latest frame processed (by frame id order).
    pub last_frame_id: Option<String>,
    /// When the latest result was stored, milliseconds since the Unix epoch.
    pub last_processed_at_ms: u64,
    /// Detections scored against the ground truth of the frames that carried one; `null`
    /// when none did.
    #[serde(default)]
    pub accuracy: Option<Accuracy>,
}

/// The camera's latest frame, which the next one is compared with.
#[derive(Debug, Clone)]
pub struct PreviousFrame {
    /// Its thumbnail.
    pub thumbnail: Arc<Thumbnail>,
    /// Its ground truth, when it had one.
    pub ground_truth: Option<Arc<[GroundTruth]>>,
}

/// What [`Cameras::record`] records of a processed frame.
#[derive(Debug)]
pub struct Processed<'a> {
    /// The frame's id.
    pub frame_id: FrameId,
    /// Its thumbnail.
    pub thumbnail: Arc<Thumbnail>,
    /// Its ground truth, when it had one.
    pub ground_truth: Option<Arc<[GroundTruth]>>,
    /// Its detections' score, when it had ground truth.
    pub score: Option<FrameScore>,
    /// Its result.
    pub result: &'a FrameResult,
}

/// Every camera's state.
#[derive(Debug)]
pub struct Cameras {
    max_cameras: usize,
    inner: Mutex<HashMap<String, CameraState>>,
}

#[derive(Debug)]
struct CameraState {
    stats: CameraStats,
    total_processing_ms: f64,
    latest: Option<(FrameId, PreviousFrame)>,
    last_seen: Instant,
}

impl Cameras {
    /// No cameras yet; at most `max_cameras` are remembered.
    pub fn new(max_cameras: usize) -> Cameras {
        Cameras {
            max_cameras: max_cameras.max(1),
            inner: Mutex::new(HashMap::new()),
        }
    }

    /// The camera's latest frame before `frame_id`, if any.
    pub fn previous(&self, camera_id: &str, frame_id: &FrameId) -> Option<PreviousFrame> {
        let inner = self.lock();
        let (latest_id, previous) = inner.get(camera_id)?.latest.as_ref()?;
        (latest_id < frame_id).then(|| previous.clone())
    }

    /// Records a processed frame: statistics (its score among them), and its thumbnail and
    /// ground truth when it is the camera's newest frame (frames processed out of order do
    /// not move history backwards).
    pub fn record(&self, processed: Processed<'_>) {
        let Processed {
            frame_id,
            thumbnail,
            ground_truth,
            score,
            result,
        } = processed;
        let mut inner = self.lock();
        if !inner.contains_key(&result.camera_id) && inner.len() >= self.max_cameras {
            let oldest = inner
                .iter()
                .min_by_key(|(_, state)| state.last_seen)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                inner.remove(&oldest);
            }
        }
        let state = inner
            .entry(result.camera_id.clone())
            .or_insert_with(|| CameraState {
                stats: CameraStats {
                    camera_id: result.camera_id.clone(),
                    frames_processed: 0,
                    detections: Stage::ALL
                        .iter()
                        .map(|stage| (stage.as_str().to_owned(), 0))
                        .collect(),
                    labels: BTreeMap::new(),
                    average_processing_ms: 0.0,
                    last_frame_id: None,
                    last_processed_at_ms: 0,
                    accuracy: None,
                },
                total_processing_ms: 0.0,
                latest: None,
                last_seen: Instant::now(),
            });
        state.last_seen = Instant::now();
        let stats = &mut state.stats;
        stats.frames_processed += 1;
        for stage in Stage::ALL {
            *stats
                .detections
                .entry(stage.as_str().to_owned())
                .or_default() += result.detections.stage(stage).count as u64;
        }
        for (label, count) in &result.summary.labels {
            *stats.labels.entry(label.clone()).or_default() += *count as u64;
        }
        state.total_processing_ms += result.processing_time_ms;
        stats.average_processing_ms = state.total_processing_ms / stats.frames_processed as f64;
        stats.last_processed_at_ms = result.processed_at_ms;
        if let Some(score) = &score {
            stats
                .accuracy
                .get_or_insert_with(Accuracy::default)
                .add(score);
        }
        let newer = state
            .latest
            .as_ref()
            .is_none_or(|(latest_id, _)| *latest_id < frame_id);
        if newer {
            stats.last_frame_id = Some(frame_id.to_string());
            state.latest = Some((
                frame_id,
                PreviousFrame {
                    thumbnail,
                    ground_truth,
                },
            ));
        }
    }

    /// The statistics of a camera, `None` when it sent nothing (or was forgotten).
    pub fn stats(&self, camera_id: &str) -> Option<CameraStats> {
        self.lock().get(camera_id).map(|state| state.stats.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CameraState>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
