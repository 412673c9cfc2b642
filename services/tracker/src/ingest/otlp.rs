//! OTLP spans to lifecycle events: every span carrying `frame.id` becomes one [`Event`].
//!
//! Spans without `frame.id` are counted and dropped (a Collector fans every span out to
//! the tracker; most are not about frames). Spans whose `frame.id` does not parse, or
//! whose ids or times are invalid, are rejected and reported in the OTLP partial-success
//! response. Selected attributes are kept, bounded in number and length, so one chatty
//! producer cannot blow up the log.

use std::collections::BTreeMap;

use frame_tracking::FrameId;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use crate::model::{Event, EventId, EventStatus};

/// The span attribute that makes a span a lifecycle event.
pub const FRAME_ID_ATTRIBUTE: &str = "frame.id";

/// The span (or resource) attribute naming the camera.
pub const CAMERA_ID_ATTRIBUTE: &str = "camera.id";

/// At most this many attributes are kept per event.
pub const MAX_ATTRIBUTES: usize = 32;

/// Attribute keys longer than this are skipped.
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 128;

/// String attribute values are cut to this many bytes (on a character boundary).
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 256;

/// Service, stage and camera names are cut to this many bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Error messages are cut to this many bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 2048;

/// Array attributes keep at most this many elements.
const MAX_ARRAY_ELEMENTS: usize = 16;

/// Attribute key prefixes kept on events (besides `frame.id` and `camera.id`, which have
/// their own fields).
pub const KEPT_ATTRIBUTE_PREFIXES: &[&str] = &[
    "frame.",
    "camera.",
    "messaging.",
    "detection.",
    "detections.",
    "faces.",
    "objects.",
    "gestures.",
    "queue.",
    "stage.",
    "error.",
    "exception.type",
    "http.response.status_code",
    "http.route",
];

/// What one export request turned into.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Conversion {
    /// One event per valid span with `frame.id`.
    pub events: Vec<Event>,
    /// Spans in the request.
    pub spans: u64,
    /// Spans without `frame.id`, dropped.
    pub dropped: u64,
    /// Spans rejected as invalid.
    pub rejected: u64,
    /// Why the first rejected span was rejected (the partial-success message).
    pub first_rejection: Option<String>,
}

impl Conversion {
    /// The OTLP response: partial success when any span was rejected.
    pub fn response(&self) -> ExportTraceServiceResponse {
        let partial_success = self.first_rejection.as_ref().map(|reason| {
            let more = if self.rejected > 1 {
                format!(" (and {} more)", self.rejected - 1)
            } else {
                String::new()
            };
            ExportTracePartialSuccess {
                rejected_spans: i64::try_from(self.rejected).unwrap_or(i64::MAX),
                error_message: format!("{} span(s) rejected: {reason}{more}", self.rejected),
            }
        });
        ExportTraceServiceResponse { partial_success }
    }
}

/// Converts every span of `request`.
pub fn convert(request: &ExportTraceServiceRequest) -> Conversion {
    let mut conversion = Conversion::default();
    for resource_spans in &request.resource_spans {
        let resource_attributes = resource_spans
            .resource
            .as_ref()
            .map(|resource| resource.attributes.as_slice())
            .unwrap_or_default();
        let service = find(resource_attributes, "service.name")
            .and_then(as_str)
            .map(|name| truncate(name, MAX_NAME_BYTES))
            .unwrap_or_else(|| "unknown_service".to_owned());
        let resource_camera = find(resource_attributes, CAMERA_ID_ATTRIBUTE).and_then(as_str);
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                conversion.spans += 1;
                match convert_span(span, &service, resource_camera) {
                    Outcome::Event(event) => conversion.events.push(*event),
                    Outcome::NoFrameId => conversion.dropped += 1,
                    Outcome::Rejected(reason) => {
                        conversion.rejected += 1;
                        conversion.first_rejection.get_or_insert(reason);
                    }
                }
            }
        }
    }
    conversion
}

enum Outcome {
    Event(Box<Event>),
    NoFrameId,
    Rejected(String),
}

fn convert_span(span: &Span, service: &str, resource_camera: Option<&str>) -> Outcome {
    let Some(frame_id_value) = find(&span.attributes, FRAME_ID_ATTRIBUTE) else {
        return Outcome::NoFrameId;
    };
    let name = truncate(&span.name, 64);
    let Some(frame_id_text) = as_str(frame_id_value) else {
        return Outcome::Rejected(format!("span {name:?}: frame.id is not a string"));
    };
    let frame_id = match frame_id_text.parse::<FrameId>() {
        Ok(frame_id) => frame_id,
        Err(error) => {
            let shown = truncate(frame_id_text, 80);
            return Outcome::Rejected(format!(
                "span {name:?}: invalid frame.id {shown:?}: {error}"
            ));
        }
    };
    let Some(trace_id) = <[u8; 16]>::try_from(span.trace_id.as_slice())
        .ok()
        .map(TraceId::from_bytes)
        .filter(|id| *id != TraceId::INVALID)
    else {
        return Outcome::Rejected(format!(
            "span {name:?}: trace_id must be 16 bytes, not all zero"
        ));
    };
    let Some(span_id) = <[u8; 8]>::try_from(span.span_id.as_slice())
        .ok()
        .map(SpanId::from_bytes)
        .filter(|id| *id != SpanId::INVALID)
    else {
        return Outcome::Rejected(format!(
            "span {name:?}: span_id must be 8 bytes, not all zero"
        ));
    };
    let parent_span_id = <[u8; 8]>::try_from(span.parent_span_id.as_slice())
        .ok()
        .map(SpanId::from_bytes)
        .filter(|id| *id != SpanId::INVALID);
    let (Ok(start), Ok(end)) = (
        i64::try_from(span.start_time_unix_nano),
        i64::try_from(span.end_time_unix_nano),
    ) else {
        return Outcome::Rejected(format!("span {name:?}: time out of range"));
    };
    if start == 0 || end < start {
        return Outcome::Rejected(format!(
            "span {name:?}: end_time_unix_nano is before start_time_unix_nano or unset"
        ));
    }
    let status_code = span.status.as_ref().map(|status| status.code);
    let status = match status_code.and_then(|code| StatusCode::try_from(code).ok()) {
        Some(StatusCode::Ok) => EventStatus::Ok,
        Some(StatusCode::Error) => EventStatus::Error,
        Some(StatusCode::Unset) | None => EventStatus::Unset,
    };
    let error_message = (status == EventStatus::Error)
        .then(|| error_message(span))
        .flatten()
        .map(|message| truncate(&message, MAX_ERROR_MESSAGE_BYTES));
    let camera_id = find(&span.attributes, CAMERA_ID_ATTRIBUTE)
        .and_then(as_str)
        .or(resource_camera)
        .map(|camera| truncate(camera, MAX_NAME_BYTES))
        .unwrap_or_else(|| frame_id.camera_id().to_owned());
    Outcome::Event(Box::new(Event {
        event_id: EventId::from_span(trace_id, span_id),
        frame_id,
        service: service.to_owned(),
        stage: truncate(&span.name, MAX_NAME_BYTES),
        start_unix_nanos: start,
        end_unix_nanos: end,
        status,
        error_message,
        trace_id,
        span_id,
        parent_span_id,
        camera_id: Some(camera_id),
        attributes: kept_attributes(&span.attributes),
    }))
}

/// The status message, or the message of the first `exception` event.
fn error_message(span: &Span) -> Option<String> {
    if let Some(status) = &span.status
        && !status.message.is_empty()
    {
        return Some(status.message.clone());
    }
    span.events
        .iter()
        .filter(|event| event.name == "exception")
        .find_map(|event| find(&event.attributes, "exception.message").and_then(as_str))
        .map(str::to_owned)
}

/// The attributes worth keeping, bounded in number, key and value length.
pub fn kept_attributes(attributes: &[KeyValue]) -> BTreeMap<String, serde_json::Value> {
    let mut kept = BTreeMap::new();
    for attribute in attributes {
        if kept.len() >= MAX_ATTRIBUTES {
            break;
        }
        let key = attribute.key.as_str();
        if key == FRAME_ID_ATTRIBUTE
            || key == CAMERA_ID_ATTRIBUTE
            || key.len() > MAX_ATTRIBUTE_KEY_BYTES
            || !KEPT_ATTRIBUTE_PREFIXES
                .iter()
                .any(|prefix| key.starts_with(prefix))
        {
            continue;
        }
        if let Some(value) = attribute.value.as_ref().and_then(json_value) {
            kept.insert(key.to_owned(), value);
        }
    }
    kept
}

fn json_value(value: &AnyValue) -> Option<serde_json::Value> {
    match value.value.as_ref()? {
        Value::StringValue(text) => Some(truncate(text, MAX_ATTRIBUTE_VALUE_BYTES).into()),
        Value::BoolValue(flag) => Some((*flag).into()),
        Value::IntValue(number) => Some((*number).into()),
        Value::DoubleValue(number) => serde_json::Number::from_f64(*number).map(Into::into),
        Value::ArrayValue(array) => Some(serde_json::Value::Array(
            array
                .values
                .iter()
                .take(MAX_ARRAY_ELEMENTS)
                .filter_map(|element| match element.value.as_ref()? {
                    Value::ArrayValue(_) | Value::KvlistValue(_) => None,
                    _ => json_value(element),
                })
                .collect(),
        )),
        Value::KvlistValue(_) | Value::BytesValue(_) | Value::StringValueStrindex(_) => None,
    }
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
}

fn as_str(value: &AnyValue) -> Option<&str> {
    match value.value.as_ref()? {
        Value::StringValue(text) => Some(text),
        _ => None,
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
