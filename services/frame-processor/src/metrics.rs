//! The processor's metric catalog and the functions that record it.
//!
//! Names follow the detektor example service this one replaces, so its dashboards keep
//! working. Every label has a fixed set of values (stages, detection types, error types).
//!
//! The series a frame records (stage durations, detections, frames processed) are
//! registered once, in [`FrameMetrics`], so a frame updates them through handles: a
//! `metrics::histogram!(name, "stage" => stage)` call per record builds the key, hashes it
//! and looks it up in the recorder's registry every time.

use std::time::Duration;

use metrics::{Counter, Histogram};

use telemetry::metrics::{Catalog, MetricDef, MetricKind, MetricUnit};

use crate::detect::Stage;

/// Frames processed to the end (stored).
pub const FRAMES_PROCESSED: &str = "detektor_frame_processor_frames_processed_total";
/// Detections by type (`object`, `face`, `gesture`).
pub const DETECTIONS: &str = "detektor_frame_processor_detections_total";
/// Time per stage.
pub const PROCESSING_DURATION: &str = "detektor_frame_processor_processing_duration_seconds";
/// Frames that failed, by type.
pub const ERRORS: &str = "detektor_frame_processor_errors_total";
/// Results currently held by the store.
pub const STORED_FRAMES: &str = "detektor_frame_storage_stored_frames";

/// Buckets of [`PROCESSING_DURATION`]: 0.5 ms to 2.5 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Every value of the `stage` label: the detection stages plus the work around them.
pub const TIMED_STAGES: [&str; 6] = ["decode", "objects", "faces", "gestures", "store", "total"];

/// Every value of the `type` label of [`ERRORS`].
pub const ERROR_TYPES: [&str; 3] = ["invalid_request", "decode", "internal"];

/// The metrics this service declares.
pub static CATALOG: Catalog = Catalog {
    owner: "frame-processor",
    metrics: &[
        MetricDef::new(
            FRAMES_PROCESSED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Frames processed and stored.",
            &[],
        ),
        MetricDef::new(
            DETECTIONS,
            MetricKind::Counter,
            MetricUnit::Count,
            "Detections reported, by type (object, face, gesture).",
            &["type"],
        ),
        MetricDef::new(
            PROCESSING_DURATION,
            MetricKind::Histogram,
            MetricUnit::Seconds,
            "Time spent per processing stage (decode, objects, faces, gestures, store, total).",
            &["stage"],
        )
        .with_buckets(DURATION_BUCKETS),
        MetricDef::new(
            ERRORS,
            MetricKind::Counter,
            MetricUnit::Count,
            "Frames that could not be processed, by type (invalid_request, decode, internal).",
            &["type"],
        ),
        MetricDef::new(
            STORED_FRAMES,
            MetricKind::Gauge,
            MetricUnit::Count,
            "Frame results currently held by the bounded result store.",
            &[],
        ),
    ],
};

/// Describes the catalog to the recorder and creates every series at zero, so dashboards
/// and alerts see them before the first frame.
pub fn register() {
    telemetry::metrics::describe(&CATALOG);
    metrics::counter!(FRAMES_PROCESSED).absolute(0);
    for stage in Stage::ALL {
        metrics::counter!(DETECTIONS, "type" => stage.detection_type()).absolute(0);
    }
    for error_type in ERROR_TYPES {
        metrics::counter!(ERRORS, "type" => error_type).absolute(0);
    }
    metrics::gauge!(STORED_FRAMES).set(0.0);
}

/// Handles of the series a processed frame records, taken from the recorder installed
/// when they are created (before [`telemetry::init`], they are no-ops).
#[derive(Debug, Clone)]
pub struct FrameMetrics {
    frames_processed: Counter,
    /// By [`Stage`], in [`Stage::ALL`] order.
    detections: [Counter; 3],
    /// By stage, in [`TIMED_STAGES`] order.
    durations: [Histogram; 6],
}

/// A timed part of processing: a value of the `stage` label of [`PROCESSING_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    /// Decoding the pixels.
    Decode,
    /// One detection stage.
    Stage(Stage),
    /// Storing the result.
    Store,
    /// The whole frame.
    Total,
}

impl Timed {
    /// The label value, one of [`TIMED_STAGES`].
    pub fn as_str(self) -> &'static str {
        TIMED_STAGES[self.index()]
    }

    fn index(self) -> usize {
        match self {
            Timed::Decode => 0,
            Timed::Stage(Stage::Objects) => 1,
            Timed::Stage(Stage::Faces) => 2,
            Timed::Stage(Stage::Gestures) => 3,
            Timed::Store => 4,
            Timed::Total => 5,
        }
    }
}

impl FrameMetrics {
    /// Registers the series with the current recorder.
    pub fn new() -> FrameMetrics {
        FrameMetrics {
            frames_processed: metrics::counter!(FRAMES_PROCESSED),
            detections: Stage::ALL
                .map(|stage| metrics::counter!(DETECTIONS, "type" => stage.detection_type())),
            durations: TIMED_STAGES
                .map(|stage| metrics::histogram!(PROCESSING_DURATION, "stage" => stage)),
        }
    }

    /// Records how long a part of processing took.
    pub fn duration(&self, timed: Timed, elapsed: Duration) {
        self.durations[timed.index()].record(elapsed.as_secs_f64());
    }

    /// Counts the detections of one stage.
    pub fn detections(&self, stage: Stage, count: usize) {
        let index = match stage {
            Stage::Objects => 0,
            Stage::Faces => 1,
            Stage::Gestures => 2,
        };
        self.detections[index].increment(count as u64);
    }

    /// Counts a frame processed to the end.
    pub fn frame_processed(&self) {
        self.frames_processed.increment(1);
    }
}

impl Default for FrameMetrics {
    fn default() -> Self {
        FrameMetrics::new()
    }
}

/// Counts a failed frame.
pub fn error(error_type: &'static str) {
    metrics::counter!(ERRORS, "type" => error_type).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timed_part_has_its_own_label_value() {
        let mut labels: Vec<&str> = [Timed::Decode, Timed::Store, Timed::Total]
            .into_iter()
            .chain(Stage::ALL.map(Timed::Stage))
            .map(Timed::as_str)
            .collect();
        labels.sort_unstable();
        let mut expected = TIMED_STAGES.to_vec();
        expected.sort_unstable();
        assert_eq!(labels, expected);
        for stage in Stage::ALL {
            assert_eq!(Timed::Stage(stage).as_str(), stage.as_str());
        }
    }

    #[test]
    fn the_catalog_follows_the_naming_rules() {
        assert!(CATALOG.lint().is_empty(), "{:?}", CATALOG.lint());
    }
}
