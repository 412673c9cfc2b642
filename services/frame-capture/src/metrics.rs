//! The capture service's metric catalog. The `camera` label takes configured camera ids
//! only (a bounded set); `reason` is `backpressure` or `error`.

use telemetry::metrics::{Catalog, MetricDef, MetricKind, MetricUnit};

/// Frames rendered.
pub const FRAMES_CAPTURED: &str = "frame_capture_frames_captured_total";
/// Frames the processor accepted.
pub const FRAMES_DELIVERED: &str = "frame_capture_frames_delivered_total";
/// Frames dropped, by reason.
pub const FRAMES_DROPPED: &str = "frame_capture_frames_dropped_total";
/// Encoded bytes of captured frames.
pub const BYTES: &str = "frame_capture_bytes_total";
/// Frames captured per second, measured over the last second.
pub const FPS: &str = "frame_capture_fps";

/// Every value of the `reason` label.
pub const DROP_REASONS: [&str; 2] = ["backpressure", "error"];

/// The metrics this service declares.
pub static CATALOG: Catalog = Catalog {
    owner: "frame-capture",
    metrics: &[
        MetricDef::new(
            FRAMES_CAPTURED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Frames rendered and handed to delivery, per camera.",
            &["camera"],
        ),
        MetricDef::new(
            FRAMES_DELIVERED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Frames the processor accepted, per camera.",
            &["camera"],
        ),
        MetricDef::new(
            FRAMES_DROPPED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Frames dropped, per camera and reason (backpressure: in-flight limit reached; error: delivery failed).",
            &["camera", "reason"],
        ),
        MetricDef::new(
            BYTES,
            MetricKind::Counter,
            MetricUnit::Bytes,
            "Encoded bytes of captured frames, per camera.",
            &["camera"],
        ),
        MetricDef::new(
            FPS,
            MetricKind::Gauge,
            MetricUnit::Count,
            "Frames captured per second over the last second, per camera.",
            &["camera"],
        ),
    ],
};

/// Describes the catalog and creates every series of `cameras` at zero.
pub fn register(cameras: &[String]) {
    telemetry::metrics::describe(&CATALOG);
    for camera in cameras {
        let camera = camera.clone();
        metrics::counter!(FRAMES_CAPTURED, "camera" => camera.clone()).absolute(0);
        metrics::counter!(FRAMES_DELIVERED, "camera" => camera.clone()).absolute(0);
        metrics::counter!(BYTES, "camera" => camera.clone()).absolute(0);
        for reason in DROP_REASONS {
            metrics::counter!(FRAMES_DROPPED, "camera" => camera.clone(), "reason" => reason)
                .absolute(0);
        }
        metrics::gauge!(FPS, "camera" => camera).set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_follows_the_naming_rules() {
        assert!(CATALOG.lint().is_empty(), "{:?}", CATALOG.lint());
    }
}
