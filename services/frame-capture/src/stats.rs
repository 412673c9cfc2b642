//! Per-camera counters behind `GET /stats`: captured, delivered, dropped (by reason),
//! bytes, and the ground truth of every captured frame, so a demo can compute precision
//! and recall against the processor's results.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::metrics::{BYTES, FRAMES_CAPTURED, FRAMES_DELIVERED, FRAMES_DROPPED};
use crate::scene::GroundTruth;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The camera's in-flight limit was reached: the processor is slower than the camera.
    Backpressure,
    /// Delivery failed (connection, timeout, non-2xx answer).
    Error,
}

impl DropReason {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Backpressure => "backpressure",
            DropReason::Error => "error",
        }
    }
}

/// One camera's counters.
#[derive(Debug)]
pub struct CameraCounters {
    camera_id: String,
    captured: AtomicU64,
    delivered: AtomicU64,
    dropped_backpressure: AtomicU64,
    dropped_error: AtomicU64,
    bytes: AtomicU64,
    fps_millis: AtomicU64,
    truth: Mutex<BTreeMap<String, u64>>,
}

/// What `GET /stats` reports for one camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraSnapshot {
    /// The camera.
    pub camera_id: String,
    /// Frames rendered and handed to delivery.
    pub captured: u64,
    /// Frames the processor accepted.
    pub delivered: u64,
    /// Frames dropped, by reason (`backpressure`, `error`).
    pub dropped: BTreeMap<String, u64>,
    /// Encoded bytes captured.
    pub bytes: u64,
    /// Frames per second over the last second.
    pub fps: f64,
    /// Objects drawn in captured frames, by kind, plus `face`.
    pub ground_truth: BTreeMap<String, u64>,
}

/// What `GET /stats` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Whether the cameras are still capturing.
    pub running: bool,
    /// Per camera.
    pub cameras: Vec<CameraSnapshot>,
}

/// Every camera's counters.
#[derive(Debug)]
pub struct Stats {
    cameras: Vec<CameraCounters>,
    running: AtomicBool,
}

impl Stats {
    /// Zeroed counters for `cameras`.
    pub fn new(cameras: &[String]) -> Stats {
        Stats {
            cameras: cameras
                .iter()
                .map(|camera_id| CameraCounters {
                    camera_id: camera_id.clone(),
                    captured: AtomicU64::new(0),
                    delivered: AtomicU64::new(0),
                    dropped_backpressure: AtomicU64::new(0),
                    dropped_error: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    fps_millis: AtomicU64::new(0),
                    truth: Mutex::new(BTreeMap::new()),
                })
                .collect(),
            running: AtomicBool::new(true),
        }
    }

    /// The counters of camera number `index`.
    pub fn camera(&self, index: usize) -> Option<&CameraCounters> {
        self.cameras.get(index)
    }

    /// Marks capturing as finished.
    pub fn stopped(&self) {
        self.running.store(false, Ordering::Relaxed);
    }

    /// A consistent-enough copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            running: self.running.load(Ordering::Relaxed),
            cameras: self
                .cameras
                .iter()
                .map(|camera| CameraSnapshot {
                    camera_id: camera.camera_id.clone(),
                    captured: camera.captured.load(Ordering::Relaxed),
                    delivered: camera.delivered.load(Ordering::Relaxed),
                    dropped: BTreeMap::from([
                        (
                            "backpressure".to_owned(),
                            camera.dropped_backpressure.load(Ordering::Relaxed),
                        ),
                        (
                            "error".to_owned(),
                            camera.dropped_error.load(Ordering::Relaxed),
                        ),
                    ]),
                    bytes: camera.bytes.load(Ordering::Relaxed),
                    fps: camera.fps_millis.load(Ordering::Relaxed) as f64 / 1000.0,
                    ground_truth: camera
                        .truth
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .clone(),
                })
                .collect(),
        }
    }
}

impl CameraCounters {
    /// The camera's id.
    pub fn camera_id(&self) -> &str {
        &self.camera_id
    }

    /// Counts a captured frame of `bytes` encoded bytes with its ground truth.
    pub fn captured(&self, bytes: u64, truth: &[GroundTruth]) {
        self.captured.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        metrics::counter!(FRAMES_CAPTURED, "camera" => self.camera_id.clone()).increment(1);
        metrics::counter!(BYTES, "camera" => self.camera_id.clone()).increment(bytes);
        let mut counts = self
            .truth
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for object in truth {
            *counts.entry(object.kind.as_str().to_owned()).or_default() += 1;
            if object.face.is_some() {
                *counts.entry("face".to_owned()).or_default() += 1;
            }
        }
    }

    /// Counts a delivered frame.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(FRAMES_DELIVERED, "camera" => self.camera_id.clone()).increment(1);
    }

    /// Counts a dropped frame.
    pub fn dropped(&self, reason: DropReason) {
        let counter = match reason {
            DropReason::Backpressure => &self.dropped_backpressure,
            DropReason::Error => &self.dropped_error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            FRAMES_DROPPED,
            "camera" => self.camera_id.clone(),
            "reason" => reason.as_str(),
        )
        .increment(1);
    }

    /// Records the measured frame rate.
    pub fn set_fps(&self, fps: f64) {
        self.fps_millis
            .store((fps * 1000.0).round() as u64, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::FPS, "camera" => self.camera_id.clone()).set(fps);
    }
}
