//! Frame metadata: what travels with a frame through queues and services, as versioned
//! JSON that older and newer readers both understand.
//!
//! Compatibility rules, checked by the fixtures in `tests/fixtures/`:
//!
//! - Unknown fields are ignored, so a reader of this version reads what a newer writer
//!   wrote (it drops the fields it does not know).
//! - Every field except `frame_id` has a default, so a newer reader reads what an older
//!   writer wrote; a missing `version` means version 1.
//! - A new schema version adds fields; it never renames a field or changes its meaning.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::context::TraceContext;
use crate::id::FrameId;

/// The schema version this crate writes.
pub const FRAME_METADATA_VERSION: u32 = 1;

/// The metadata of one captured frame.
///
/// ```
/// use frame_tracking::{FrameId, FrameMetadata};
///
/// let mut metadata = FrameMetadata::new(FrameId::generate("cam01", "rgb")?);
/// metadata.width = 1920;
/// metadata.height = 1080;
/// metadata.format = "jpeg".into();
/// metadata.attributes.insert("scene".into(), "entrance".into());
///
/// let json = metadata.to_json()?;
/// assert_eq!(FrameMetadata::from_json(&json)?, metadata);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FrameMetadata {
    /// The schema version the writer used.
    #[serde(default = "first_version")]
    pub version: u32,
    /// The frame's id.
    pub frame_id: FrameId,
    /// The camera that captured the frame.
    #[serde(default)]
    pub camera_id: String,
    /// The camera's source (stream, sensor or generator).
    #[serde(default)]
    pub source: String,
    /// When the frame was captured, as an RFC 3339 UTC string with nanoseconds.
    #[serde(default = "unix_epoch", with = "crate::time::rfc3339")]
    pub captured_at: SystemTime,
    /// Width in pixels.
    #[serde(default)]
    pub width: u32,
    /// Height in pixels.
    #[serde(default)]
    pub height: u32,
    /// The pixel or encoding format, such as `jpeg` or `rgb8`.
    #[serde(default)]
    pub format: String,
    /// The frame's size in bytes.
    #[serde(default)]
    pub size_bytes: u64,
    /// The frame's position in its camera's stream, counting from 0.
    #[serde(default)]
    pub sequence: u64,
    /// Free-form attributes, sorted by key.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The trace context of the span that produced the frame, in the metadata-map form
    /// (`trace_id`, `span_id`, `traceparent`, `tracestate`); absent when untraced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<TraceContext>,
}

/// Why frame metadata could not be read or written as JSON.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The JSON is malformed or a field has the wrong type or an invalid value.
    #[error("invalid frame metadata json")]
    Json(#[from] serde_json::Error),
}

fn first_version() -> u32 {
    1
}

fn unix_epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

impl FrameMetadata {
    /// Metadata for the frame `frame_id`, at the current schema version, with the camera
    /// id, source and capture time taken from the id and every other field empty.
    ///
    /// ```
    /// use frame_tracking::{FrameId, FrameMetadata};
    ///
    /// let id = FrameId::generate("cam01", "rgb")?;
    /// let metadata = FrameMetadata::new(id);
    /// assert_eq!(metadata.camera_id, "cam01");
    /// assert_eq!(metadata.captured_at, id.timestamp());
    /// # Ok::<(), frame_tracking::FrameIdError>(())
    /// ```
    pub fn new(frame_id: FrameId) -> FrameMetadata {
        FrameMetadata {
            version: FRAME_METADATA_VERSION,
            frame_id,
            camera_id: frame_id.camera_id().to_owned(),
            source: frame_id.source().to_owned(),
            captured_at: frame_id.timestamp(),
            width: 0,
            height: 0,
            format: String::new(),
            size_bytes: 0,
            sequence: 0,
            attributes: BTreeMap::new(),
            trace_context: None,
        }
    }

    /// Compact JSON.
    ///
    /// Fails only for a capture time before 1970 or after 9999.
    pub fn to_json(&self) -> Result<String, MetadataError> {
        Ok(serde_json::to_string(self)?)
    }

    /// Indented JSON, as in the fixtures.
    pub fn to_json_pretty(&self) -> Result<String, MetadataError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Reads JSON written by this or any other schema version.
    ///
    /// ```
    /// use frame_tracking::FrameMetadata;
    ///
    /// let metadata = FrameMetadata::from_json(
    ///     r#"{"frame_id": "20261121T101530.123Z_0000K7PQ2XW9MD_cam01_rgb", "shiny": true}"#,
    /// )?;
    /// assert_eq!(metadata.version, 1);
    /// assert_eq!(metadata.width, 0);
    /// assert!(FrameMetadata::from_json("{}").is_err());
    /// # Ok::<(), frame_tracking::MetadataError>(())
    /// ```
    pub fn from_json(json: &str) -> Result<FrameMetadata, MetadataError> {
        Ok(serde_json::from_str(json)?)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const V1: &str = include_str!("../tests/fixtures/frame_metadata_v1.json");
    const V2: &str = include_str!("../tests/fixtures/frame_metadata_v2_extra_field.json");
    const MINIMAL: &str = include_str!("../tests/fixtures/frame_metadata_minimal.json");

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn v1_metadata() -> FrameMetadata {
        let frame_id: FrameId = "20261121T101530.123Z_0000K7PQ2XW9MD_cam01_rgb"
            .parse()
            .unwrap();
        let mut metadata = FrameMetadata::new(frame_id);
        metadata.captured_at = UNIX_EPOCH + Duration::new(1_795_256_130, 120_000_500);
        metadata.width = 1920;
        metadata.height = 1080;
        metadata.format = "jpeg".into();
        metadata.size_bytes = 245_760;
        metadata.sequence = 42;
        metadata.attributes = BTreeMap::from([
            ("exposure_ms".to_owned(), "8".to_owned()),
            ("scene".to_owned(), "entrance".to_owned()),
        ]);
        metadata.trace_context =
            Some(TraceContext::from_headers(TRACEPARENT, &["congo=t61rcWkgMzE"]).unwrap());
        metadata
    }

    #[test]
    fn v1_fixture_reads_into_every_field() {
        assert_eq!(FrameMetadata::from_json(V1).unwrap(), v1_metadata());
    }

    #[test]
    fn v1_fixture_is_exactly_what_this_version_writes() {
        assert_eq!(v1_metadata().to_json_pretty().unwrap(), V1.trim_end());
    }

    #[test]
    fn json_round_trips_exactly() {
        let metadata = v1_metadata();
        let json = metadata.to_json().unwrap();
        let read = FrameMetadata::from_json(&json).unwrap();
        assert_eq!(read, metadata);
        assert_eq!(read.to_json().unwrap(), json);
    }

    #[test]
    fn newer_version_with_extra_fields_is_read_ignoring_them() {
        let metadata = FrameMetadata::from_json(V2).unwrap();
        assert_eq!(metadata.version, 2);
        let mut expected = v1_metadata();
        expected.version = 2;
        assert_eq!(metadata, expected);
    }

    #[test]
    fn older_writer_missing_fields_gets_defaults() {
        let metadata = FrameMetadata::from_json(MINIMAL).unwrap();
        assert_eq!(metadata.version, 1);
        assert_eq!(metadata.frame_id.camera_id(), "cam01");
        assert_eq!(metadata.camera_id, "cam01");
        assert_eq!(metadata.captured_at, UNIX_EPOCH);
        assert_eq!(
            (metadata.width, metadata.height, metadata.size_bytes),
            (0, 0, 0)
        );
        assert!(metadata.format.is_empty());
        assert!(metadata.attributes.is_empty());
        assert_eq!(metadata.trace_context, None);
    }

    #[test]
    fn untraced_frame_omits_the_trace_context() {
        let metadata = FrameMetadata::new(FrameId::generate("cam01", "rgb").unwrap());
        let json = metadata.to_json().unwrap();
        assert!(!json.contains("trace_context"), "{json}");
        assert_eq!(FrameMetadata::from_json(&json).unwrap(), metadata);
    }

    #[test]
    fn new_takes_camera_source_and_time_from_the_id() {
        let id = FrameId::generate("cam-7", "ir").unwrap();
        let metadata = FrameMetadata::new(id);
        assert_eq!(metadata.version, FRAME_METADATA_VERSION);
        assert_eq!(metadata.camera_id, "cam-7");
        assert_eq!(metadata.source, "ir");
        assert_eq!(metadata.captured_at, id.timestamp());
    }

    #[test]
    fn broken_trace_context_does_not_make_metadata_unreadable() {
        let json = r#"{"frame_id":"20261121T101530.123Z_0000K7PQ2XW9MD_cam01_rgb",
                       "trace_context":{"traceparent":"garbage"}}"#;
        let metadata = FrameMetadata::from_json(json).unwrap();
        let context = metadata.trace_context.unwrap();
        assert!(!context.is_valid());
    }

    #[test]
    fn invalid_json_is_an_error_naming_the_field() {
        let cases = [
            ("{}", "missing field `frame_id`"),
            (r#"{"frame_id":"nope"}"#, "expected 4"),
            (
                r#"{"frame_id":"20261121T101530.123Z_0000K7PQ2XW9MD_cam01_rgb","width":-1}"#,
                "invalid value",
            ),
            (
                r#"{"frame_id":"20261121T101530.123Z_0000K7PQ2XW9MD_cam01_rgb","captured_at":"yesterday"}"#,
                "is not an RFC 3339 UTC time",
            ),
            ("not json", "expected"),
        ];
        for (json, expected) in cases {
            let err = FrameMetadata::from_json(json).unwrap_err();
            assert_eq!(err.to_string(), "invalid frame metadata json");
            let cause = err.source().unwrap().to_string();
            assert!(cause.contains(expected), "{json}: {cause}");
        }
    }

    #[test]
    fn capture_time_before_1970_cannot_be_written() {
        let mut metadata = v1_metadata();
        metadata.captured_at = UNIX_EPOCH - Duration::from_secs(1);
        assert!(metadata.to_json().is_err());
    }
}
