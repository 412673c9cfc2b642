//! OTLP spans to lifecycle events: every span carrying `frame.id` becomes one [`Event`].
//!
//! Spans without `frame.id` are counted and dropped (a Collector fans every span out to
//! the tracker; most are not about frames). Spans whose `frame.id` does not parse, or
//! whose ids or times are invalid, are rejected and reported in the OTLP partial-success
//! response. Selected attributes are kept, bounded in number and length, so one chatty
//! producer cannot blow up the log.

use std::collections::BTreeMap;

use frame_tracking::{FrameId, FrameIdError};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message as _;

use crate::model::{Event, EventId, EventStatus};

mod wire;

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
    let spans = request
        .resource_spans
        .iter()
        .flat_map(|resource_spans| &resource_spans.scope_spans)
        .map(|scope_spans| scope_spans.spans.len())
        .sum();
    conversion.events.reserve(spans);
    let mut frame_ids = FrameIds::default();
    let mut resource_attributes = Vec::new();
    let mut span_attributes = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|resource| resource.attributes.as_slice())
            .unwrap_or_default();
        resource_attributes.clear();
        resource_attributes.extend(resource.iter().map(Attribute::from_proto));
        let context = ResourceContext::new(&resource_attributes);
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                span_attributes.clear();
                span_attributes.extend(span.attributes.iter().map(Attribute::from_proto));
                let view = SpanView {
                    name: &span.name,
                    trace_id: &span.trace_id,
                    span_id: &span.span_id,
                    parent_span_id: &span.parent_span_id,
                    start_time_unix_nano: span.start_time_unix_nano,
                    end_time_unix_nano: span.end_time_unix_nano,
                    status: span
                        .status
                        .as_ref()
                        .map(|status| (status.code, status.message.as_str())),
                    attributes: &span_attributes,
                    events: SpanEvents::Proto(&span.events),
                };
                conversion.add(convert_span(&view, &context, &mut frame_ids));
            }
        }
    }
    conversion
}

/// Converts every span of an encoded `ExportTraceServiceRequest` straight from its bytes,
/// without building the request first, so an attribute that is not kept costs no
/// allocation. The result is the same as [`convert`] of the decoded request; `None` when
/// the bytes are not a message this fast path is sure to read as prost does (malformed,
/// or legal but unusual: a field repeated that prost would merge, groups, deep nesting),
/// in which case the caller decodes with prost, which also reports the error.
pub fn convert_encoded(bytes: &[u8]) -> Option<Conversion> {
    wire::convert(bytes)
}

impl Conversion {
    fn add(&mut self, outcome: Outcome) {
        self.spans += 1;
        match outcome {
            Outcome::Event(event) => self.events.push(*event),
            Outcome::NoFrameId => self.dropped += 1,
            Outcome::Rejected(reason) => {
                self.rejected += 1;
                self.first_rejection.get_or_insert(reason);
            }
        }
    }
}

enum Outcome {
    Event(Box<Event>),
    NoFrameId,
    Rejected(String),
}

/// What conversion reads of a span: borrowed from prost's `Span` or from the encoded
/// request, so that both paths share one conversion.
struct SpanView<'a, 'b> {
    name: &'a str,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_span_id: &'a [u8],
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    /// The status's code and message, when the span has a status.
    status: Option<(i32, &'a str)>,
    attributes: &'b [Attribute<'a>],
    events: SpanEvents<'a, 'b>,
}

/// An attribute: its key and its value, `None` when the value is absent or empty.
#[derive(Debug, Clone)]
struct Attribute<'a> {
    key: &'a str,
    value: Option<ValueView<'a>>,
}

/// An attribute value as far as conversion looks at it.
#[derive(Debug, Clone)]
enum ValueView<'a> {
    String(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(ArrayView<'a>),
    /// Key-value lists, bytes, string-table indexes: never kept.
    Other,
}

/// An array value: prost's, or its encoding (decoded only when the attribute is kept).
#[derive(Debug, Clone, Copy)]
enum ArrayView<'a> {
    Proto(&'a ArrayValue),
    Encoded(&'a [u8]),
}

/// A span's events, which conversion reads only for the first exception message of a
/// failed span without a status message.
enum SpanEvents<'a, 'b> {
    Proto(&'a [span::Event]),
    /// Each event's encoding, already checked to decode.
    Encoded(&'b [&'a [u8]]),
}

/// Parses `frame.id`s, remembering the last one: a frame's spans usually come one after
/// another, and a parsed id keeps its exact text, so the same text is the same id.
#[derive(Debug, Default)]
struct FrameIds {
    last: Option<FrameId>,
}

impl FrameIds {
    fn parse(&mut self, text: &str) -> Result<FrameId, FrameIdError> {
        if let Some(last) = self.last
            && last.as_str() == text
        {
            return Ok(last);
        }
        let parsed = text.parse::<FrameId>()?;
        self.last = Some(parsed);
        Ok(parsed)
    }
}

/// What every span of one resource shares.
struct ResourceContext<'a> {
    service: String,
    camera: Option<&'a str>,
}

impl<'a> ResourceContext<'a> {
    fn new(attributes: &[Attribute<'a>]) -> ResourceContext<'a> {
        let service = find(attributes, "service.name")
            .and_then(as_str)
            .map(|name| truncate(name, MAX_NAME_BYTES))
            .unwrap_or_else(|| "unknown_service".to_owned());
        let camera = find(attributes, CAMERA_ID_ATTRIBUTE).and_then(as_str);
        ResourceContext { service, camera }
    }
}

impl<'a> Attribute<'a> {
    fn from_proto(attribute: &'a KeyValue) -> Attribute<'a> {
        Attribute {
            key: &attribute.key,
            value: attribute.value.as_ref().and_then(ValueView::from_proto),
        }
    }
}

impl<'a> ValueView<'a> {
    fn from_proto(value: &'a AnyValue) -> Option<ValueView<'a>> {
        Some(match value.value.as_ref()? {
            Value::StringValue(text) => ValueView::String(text),
            Value::BoolValue(flag) => ValueView::Bool(*flag),
            Value::IntValue(number) => ValueView::Int(*number),
            Value::DoubleValue(number) => ValueView::Double(*number),
            Value::ArrayValue(array) => ValueView::Array(ArrayView::Proto(array)),
            Value::KvlistValue(_) | Value::BytesValue(_) | Value::StringValueStrindex(_) => {
                ValueView::Other
            }
        })
    }
}

fn convert_span(
    span: &SpanView<'_, '_>,
    resource: &ResourceContext<'_>,
    frame_ids: &mut FrameIds,
) -> Outcome {
    let Some(frame_id_value) = find(span.attributes, FRAME_ID_ATTRIBUTE) else {
        return Outcome::NoFrameId;
    };
    let name = truncate(span.name, 64);
    let Some(frame_id_text) = as_str(frame_id_value) else {
        return Outcome::Rejected(format!("span {name:?}: frame.id is not a string"));
    };
    let frame_id = match frame_ids.parse(frame_id_text) {
        Ok(frame_id) => frame_id,
        Err(error) => {
            let shown = truncate(frame_id_text, 80);
            return Outcome::Rejected(format!(
                "span {name:?}: invalid frame.id {shown:?}: {error}"
            ));
        }
    };
    let Some(trace_id) = <[u8; 16]>::try_from(span.trace_id)
        .ok()
        .map(TraceId::from_bytes)
        .filter(|id| *id != TraceId::INVALID)
    else {
        return Outcome::Rejected(format!(
            "span {name:?}: trace_id must be 16 bytes, not all zero"
        ));
    };
    let Some(span_id) = <[u8; 8]>::try_from(span.span_id)
        .ok()
        .map(SpanId::from_bytes)
        .filter(|id| *id != SpanId::INVALID)
    else {
        return Outcome::Rejected(format!(
            "span {name:?}: span_id must be 8 bytes, not all zero"
        ));
    };
    let parent_span_id = <[u8; 8]>::try_from(span.parent_span_id)
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
    let status_code = span.status.map(|(code, _)| code);
    let status = match status_code.and_then(|code| StatusCode::try_from(code).ok()) {
        Some(StatusCode::Ok) => EventStatus::Ok,
        Some(StatusCode::Error) => EventStatus::Error,
        Some(StatusCode::Unset) | None => EventStatus::Unset,
    };
    let error_message = (status == EventStatus::Error)
        .then(|| error_message(span))
        .flatten()
        .map(|message| truncate(&message, MAX_ERROR_MESSAGE_BYTES));
    let camera_id = find(span.attributes, CAMERA_ID_ATTRIBUTE)
        .and_then(as_str)
        .or(resource.camera)
        .map(|camera| truncate(camera, MAX_NAME_BYTES))
        .unwrap_or_else(|| frame_id.camera_id().to_owned());
    Outcome::Event(Box::new(Event {
        event_id: EventId::from_span(trace_id, span_id),
        frame_id,
        service: resource.service.clone(),
        stage: truncate(span.name, MAX_NAME_BYTES),
        start_unix_nanos: start,
        end_unix_nanos: end,
        status,
        error_message,
        trace_id,
        span_id,
        parent_span_id,
        camera_id: Some(camera_id),
        attributes: kept(span.attributes),
    }))
}

/// The status message, or the message of the first `exception` event.
fn error_message(span: &SpanView<'_, '_>) -> Option<String> {
    if let Some((_, message)) = span.status
        && !message.is_empty()
    {
        return Some(message.to_owned());
    }
    let exception = |event: &span::Event| {
        if event.name != "exception" {
            return None;
        }
        let attributes: Vec<Attribute<'_>> =
            event.attributes.iter().map(Attribute::from_proto).collect();
        find(&attributes, "exception.message")
            .and_then(as_str)
            .map(str::to_owned)
    };
    match &span.events {
        SpanEvents::Proto(events) => events.iter().find_map(exception),
        SpanEvents::Encoded(events) => events.iter().find_map(|encoded| {
            // Checked to decode when the request was read.
            span::Event::decode(*encoded)
                .ok()
                .and_then(|event| exception(&event))
        }),
    }
}

/// The attributes worth keeping, bounded in number, key and value length.
pub fn kept_attributes(attributes: &[KeyValue]) -> BTreeMap<String, serde_json::Value> {
    let attributes: Vec<Attribute<'_>> = attributes.iter().map(Attribute::from_proto).collect();
    kept(&attributes)
}

fn kept(attributes: &[Attribute<'_>]) -> BTreeMap<String, serde_json::Value> {
    let mut kept = BTreeMap::new();
    for attribute in attributes {
        if kept.len() >= MAX_ATTRIBUTES {
            break;
        }
        let key = attribute.key;
        if key == FRAME_ID_ATTRIBUTE
            || key == CAMERA_ID_ATTRIBUTE
            || key.len() > MAX_ATTRIBUTE_KEY_BYTES
            || !KEPT_ATTRIBUTE_PREFIXES
                .iter()
                .any(|prefix| key.starts_with(prefix))
        {
            continue;
        }
        if let Some(value) = attribute.value.as_ref().and_then(view_json_value) {
            kept.insert(key.to_owned(), value);
        }
    }
    kept
}

fn view_json_value(value: &ValueView<'_>) -> Option<serde_json::Value> {
    match value {
        ValueView::String(text) => Some(truncate(text, MAX_ATTRIBUTE_VALUE_BYTES).into()),
        ValueView::Bool(flag) => Some((*flag).into()),
        ValueView::Int(number) => Some((*number).into()),
        ValueView::Double(number) => serde_json::Number::from_f64(*number).map(Into::into),
        ValueView::Array(ArrayView::Proto(array)) => Some(array_json(array)),
        ValueView::Array(ArrayView::Encoded(encoded)) => {
            // Checked to decode when the request was read.
            ArrayValue::decode(*encoded)
                .ok()
                .map(|array| array_json(&array))
        }
        ValueView::Other => None,
    }
}

fn array_json(array: &ArrayValue) -> serde_json::Value {
    serde_json::Value::Array(
        array
            .values
            .iter()
            .take(MAX_ARRAY_ELEMENTS)
            .filter_map(|element| match element.value.as_ref()? {
                Value::ArrayValue(_) | Value::KvlistValue(_) => None,
                _ => json_value(element),
            })
            .collect(),
    )
}

fn json_value(value: &AnyValue) -> Option<serde_json::Value> {
    view_json_value(&ValueView::from_proto(value)?)
}

fn find<'v, 'a>(attributes: &'v [Attribute<'a>], key: &str) -> Option<&'v ValueView<'a>> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
}

fn as_str<'a>(value: &ValueView<'a>) -> Option<&'a str> {
    match value {
        ValueView::String(text) => Some(text),
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
