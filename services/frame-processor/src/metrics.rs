//! The processor's metric catalog and the functions that record it.
//!
//! Names follow the detektor example service this one replaces, so its dashboards keep
//! working. Every label has a fixed set of values (stages, detection types, error types).

use std::time::Duration;

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

/// Records the duration of one stage.
pub fn stage_duration(stage: &'static str, elapsed: Duration) {
    metrics::histogram!(PROCESSING_DURATION, "stage" => stage).record(elapsed.as_secs_f64());
}

/// Counts a failed frame.
pub fn error(error_type: &'static str) {
    metrics::counter!(ERRORS, "type" => error_type).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_follows_the_naming_rules() {
        assert!(CATALOG.lint().is_empty(), "{:?}", CATALOG.lint());
    }
}
