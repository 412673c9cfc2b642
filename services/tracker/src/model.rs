//! The event model: one lifecycle [`Event`] per span that carries `frame.id`, and what the
//! query side returns ([`FrameSummary`], [`CameraStats`], [`FramePage`]).
//!
//! Times are Unix nanoseconds (`i64`, as OTLP sends them, signed so that differences are
//! plain subtraction). An event's id is its trace id followed by its span id
//! ([`EventId::from_span`]), so delivering the same span twice stores it once.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use frame_tracking::FrameId;
use opentelemetry::trace::{SpanId, TraceId};
use serde::{Deserialize, Serialize};

/// The id of an event: trace id (16 bytes) followed by span id (8 bytes), shown as 48
/// lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId([u8; 24]);

/// What happened to a unit of work at one stage, as recorded by one span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Idempotency key: [`EventId::from_span`] of `trace_id` and `span_id`.
    pub event_id: EventId,
    /// The frame this event belongs to (the span's `frame.id`).
    pub frame_id: FrameId,
    /// The service that recorded it (`service.name` of the span's resource).
    pub service: String,
    /// The stage: the span's name (`capture`, `process_frame`, `detect_objects`, ...).
    pub stage: String,
    /// When the stage started, Unix nanoseconds.
    pub start_unix_nanos: i64,
    /// When the stage ended, Unix nanoseconds (`>= start_unix_nanos`).
    pub end_unix_nanos: i64,
    /// The span's status.
    pub status: EventStatus,
    /// The error message, for failed stages.
    pub error_message: Option<String>,
    /// The span's trace id.
    #[serde(with = "hex_trace_id")]
    pub trace_id: TraceId,
    /// The span's id.
    #[serde(with = "hex_span_id")]
    pub span_id: SpanId,
    /// The parent span's id, when the span has a parent.
    #[serde(default, with = "hex_parent_span_id")]
    pub parent_span_id: Option<SpanId>,
    /// The camera (`camera.id`), when known.
    pub camera_id: Option<String>,
    /// Selected span attributes (`frame.size_bytes`, `messaging.system`, detection counts,
    /// ...): bounded in number and length at ingest.
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// An event as stored: with its position in the global, append-only log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the log: strictly increasing in append order, never reused.
    pub position: i64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// A span's status, as OTLP defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// No status was set (the usual case for success).
    Unset,
    /// Explicitly successful.
    Ok,
    /// Failed.
    Error,
}

/// A frame's status over its whole journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameStatus {
    /// No stage failed.
    Ok,
    /// At least one stage failed.
    Failed,
}

/// The frame-summary projection: one row per frame, kept up to date from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameSummary {
    /// The frame.
    pub frame_id: FrameId,
    /// Its camera, when any event named one.
    pub camera_id: Option<String>,
    /// Earliest start of any of its events, Unix nanoseconds.
    pub first_seen_unix_nanos: i64,
    /// Latest end of any of its events, Unix nanoseconds.
    pub last_seen_unix_nanos: i64,
    /// `last_seen - first_seen`, nanoseconds.
    pub total_duration_nanos: i64,
    /// Number of events.
    pub events: u64,
    /// Distinct stage names, in order of first start.
    pub stages: Vec<String>,
    /// Failed when any event has [`EventStatus::Error`].
    pub status: FrameStatus,
}

/// Per-camera statistics, kept up to date from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraStats {
    /// The camera.
    pub camera_id: String,
    /// Frames seen.
    pub frames: u64,
    /// Frames with at least one failed stage.
    pub failed_frames: u64,
    /// Events stored for the camera.
    pub events: u64,
    /// Percentiles of frame total duration (first start to last end), nanoseconds.
    pub latency_p50_nanos: i64,
    /// 90th percentile, nanoseconds.
    pub latency_p90_nanos: i64,
    /// 99th percentile, nanoseconds.
    pub latency_p99_nanos: i64,
    /// Earliest event start, Unix nanoseconds.
    pub first_seen_unix_nanos: i64,
    /// Latest event end, Unix nanoseconds.
    pub last_seen_unix_nanos: i64,
}

/// A frame search (`GET /frames?...`): every given filter must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameQuery {
    /// Only frames of this camera.
    pub camera_id: Option<String>,
    /// Only frames with this status.
    pub status: Option<FrameStatus>,
    /// Only frames whose total duration is at least this, nanoseconds.
    pub min_duration_nanos: Option<i64>,
    /// Only frames first seen at or after this, Unix nanoseconds.
    pub since_unix_nanos: Option<i64>,
    /// Only frames first seen before this, Unix nanoseconds.
    pub until_unix_nanos: Option<i64>,
    /// Page size (the API bounds it).
    pub limit: u32,
    /// Where the previous page ended ([`FramePage::next_cursor`]).
    pub cursor: Option<FrameCursor>,
}

/// A position in a frame search: results are ordered by first seen, newest first, then by
/// frame id; a cursor is the last row of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameCursor {
    /// First seen of the last row returned.
    pub first_seen_unix_nanos: i64,
    /// Frame id of the last row returned.
    pub frame_id: String,
}

/// One page of a frame search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FramePage {
    /// The frames, newest first.
    pub frames: Vec<FrameSummary>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<FrameCursor>,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    /// Events stored by this append.
    pub inserted: u64,
    /// Events ignored because their id was already stored.
    pub duplicates: u64,
}

/// Errors parsing an [`EventId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event id {0:?}: expected 48 lowercase hex digits (trace id then span id)")]
pub struct EventIdError(pub String);

impl EventId {
    /// The id of the event recorded by span `span_id` of trace `trace_id`.
    pub fn from_span(trace_id: TraceId, span_id: SpanId) -> EventId {
        let mut bytes = [0u8; 24];
        bytes[..16].copy_from_slice(&trace_id.to_bytes());
        bytes[16..].copy_from_slice(&span_id.to_bytes());
        EventId(bytes)
    }

    /// The raw 24 bytes (what the stores index).
    pub fn to_bytes(self) -> [u8; 24] {
        self.0
    }

    /// From the raw 24 bytes.
    pub fn from_bytes(bytes: [u8; 24]) -> EventId {
        EventId(bytes)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

impl FromStr for EventId {
    type Err = EventIdError;

    fn from_str(text: &str) -> Result<EventId, EventIdError> {
        let error = || EventIdError(text.to_owned());
        if text.len() != 48 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(error());
        }
        let mut bytes = [0u8; 24];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|_| error())?;
        }
        Ok(EventId(bytes))
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<EventId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a trace id: 32 lowercase hex digits, not all zero.
pub fn parse_trace_id(text: &str) -> Option<TraceId> {
    let valid = text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let trace_id = TraceId::from_hex(text).ok().filter(|_| valid)?;
    (trace_id != TraceId::INVALID).then_some(trace_id)
}

/// Parses a span id: 16 lowercase hex digits, not all zero.
pub fn parse_span_id(text: &str) -> Option<SpanId> {
    let valid = text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let span_id = SpanId::from_hex(text).ok().filter(|_| valid)?;
    (span_id != SpanId::INVALID).then_some(span_id)
}

mod hex_trace_id {
    //! Serde for a trace id as 32 hex digits.
    use opentelemetry::trace::TraceId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &TraceId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<TraceId, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::model::parse_trace_id(&text).ok_or_else(|| {
            serde::de::Error::custom("expected 32 lowercase hex digits, not all zero")
        })
    }
}

mod hex_span_id {
    //! Serde for a span id as 16 hex digits.
    use opentelemetry::trace::SpanId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &SpanId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SpanId, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::model::parse_span_id(&text).ok_or_else(|| {
            serde::de::Error::custom("expected 16 lowercase hex digits, not all zero")
        })
    }
}

mod hex_parent_span_id {
    //! Serde for an optional span id (`null` or absent when the span is a root).
    use opentelemetry::trace::SpanId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        id: &Option<SpanId>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => serializer.collect_str(id),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SpanId>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => crate::model::parse_span_id(&text).map(Some).ok_or_else(|| {
                serde::de::Error::custom("expected 16 lowercase hex digits, not all zero")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let trace_id = parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let span_id = parse_span_id("00f067aa0ba902b7").unwrap();
        Event {
            event_id: EventId::from_span(trace_id, span_id),
            frame_id: FrameId::generate("cam01", "rgb").unwrap(),
            service: "frame-processor".into(),
            stage: "process_frame".into(),
            start_unix_nanos: 1_000,
            end_unix_nanos: 2_500,
            status: EventStatus::Error,
            error_message: Some("decoder failed".into()),
            trace_id,
            span_id,
            parent_span_id: None,
            camera_id: Some("cam01".into()),
            attributes: BTreeMap::from([(
                "frame.size_bytes".to_owned(),
                serde_json::json!(921_600),
            )]),
        }
    }

    #[test]
    fn event_id_is_trace_id_then_span_id() {
        let event = event();
        assert_eq!(
            event.event_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e473600f067aa0ba902b7"
        );
        assert_eq!(
            event.event_id.to_string().parse::<EventId>().unwrap(),
            event.event_id
        );
    }

    #[test]
    fn events_round_trip_through_json() {
        let event = event();
        let json = serde_json::to_string(&event).unwrap();
        assert!(
            json.contains(r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736""#),
            "{json}"
        );
        assert!(json.contains(r#""status":"error""#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        assert!(
            "4BF92F3577B34DA6A3CE929D0E0E473600F067AA0BA902B7"
                .parse::<EventId>()
                .is_err()
        );
        assert!("abc".parse::<EventId>().is_err());
        assert_eq!(parse_trace_id("00000000000000000000000000000000"), None);
        assert_eq!(parse_span_id("0000000000000000"), None);
        assert_eq!(parse_span_id("00F067AA0BA902B7"), None);
        assert_eq!(parse_span_id("00f067aa0ba902b7x"), None);
    }
}
