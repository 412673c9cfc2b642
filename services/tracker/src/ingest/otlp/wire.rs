//! Converting an encoded `ExportTraceServiceRequest` without decoding it into prost's types
//! first: the spans are read in place (strings borrowed from the body), so the attributes
//! that are not kept, and every id, name and string of the request, cost no allocation and
//! nothing to free.
//!
//! The result must be exactly what `prost` decoding followed by [`convert`](super::convert)
//! gives, so this reader is at least as strict as prost: it reads every field prost would
//! (checking wire types, UTF-8 in every string field, nested messages, varints), skips
//! unknown fields as prost does, and gives up ([`Bail`]) on anything it does not handle the
//! same way: a malformed message (prost then reports the error), groups, a singular message
//! field or a `oneof` given twice (prost merges those), nesting deeper than
//! [`MAX_DEPTH`]. Repeated scalar and string fields keep the last value, as in prost.

use crate::ingest::otlp::{
    ArrayView, Attribute, Conversion, FrameIds, ResourceContext, SpanEvents, SpanView, ValueView,
    convert_span,
};

/// Messages nested deeper than this are left to prost (whose limit is 100).
const MAX_DEPTH: u32 = 32;

/// The fast path gave up; the caller decodes with prost instead.
#[derive(Debug)]
struct Bail;

type Read<T> = Result<T, Bail>;

/// One field's value as encoded.
#[derive(Debug, Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

/// The fields of one message, in order.
struct Fields<'a> {
    rest: &'a [u8],
}

/// Vectors reused across spans, and the last frame id.
#[derive(Default)]
struct Scratch<'a> {
    resource_attributes: Vec<Attribute<'a>>,
    span_attributes: Vec<Attribute<'a>>,
    span_events: Vec<&'a [u8]>,
    frame_ids: FrameIds,
}

/// Encoded bytes per span assumed when reserving room for the events (the spans the
/// ingest benchmark sends take about 340).
const BYTES_PER_SPAN: usize = 256;

/// Converts the spans of an encoded request, `None` when prost should decode it instead.
pub(super) fn convert(bytes: &[u8]) -> Option<Conversion> {
    read_request(bytes).ok()
}

fn read_request(bytes: &[u8]) -> Read<Conversion> {
    let mut conversion = Conversion::default();
    conversion.events.reserve(bytes.len() / BYTES_PER_SPAN);
    let mut scratch = Scratch::default();
    let mut fields = Fields::new(bytes);
    while let Some((tag, field)) = fields.next()? {
        if tag == 1 {
            read_resource_spans(message(field)?, 1, &mut conversion, &mut scratch)?;
        }
    }
    Ok(conversion)
}

fn read_resource_spans<'a>(
    bytes: &'a [u8],
    depth: u32,
    conversion: &mut Conversion,
    scratch: &mut Scratch<'a>,
) -> Read<()> {
    enter(depth)?;
    // The resource may come after the spans it describes: find it first.
    let mut resource = None;
    let mut scope_spans = Vec::new();
    let mut fields = Fields::new(bytes);
    while let Some((tag, field)) = fields.next()? {
        match tag {
            1 => once(&mut resource, message(field)?)?,
            2 => scope_spans.push(message(field)?),
            3 => {
                string(field)?;
            }
            _ => {}
        }
    }
    scratch.resource_attributes.clear();
    if let Some(resource) = resource {
        read_resource(resource, depth + 1, &mut scratch.resource_attributes)?;
    }
    let context = ResourceContext::new(&scratch.resource_attributes);
    for bytes in scope_spans {
        read_scope_spans(
            bytes,
            depth + 1,
            &context,
            conversion,
            &mut scratch.span_attributes,
            &mut scratch.span_events,
            &mut scratch.frame_ids,
        )?;
    }
    Ok(())
}

fn read_resource<'a>(bytes: &'a [u8], depth: u32, attributes: &mut Vec<Attribute<'a>>) -> Read<()> {
    enter(depth)?;
    let mut fields = Fields::new(bytes);
    while let Some((tag, field)) = fields.next()? {
        match tag {
            1 => attributes.push(read_key_value(message(field)?, depth + 1)?),
            2 => {
                varint(field)?;
            }
            3 => check(message(field)?, depth + 1, ENTITY_REF)?,
            _ => {}
        }
    }
    Ok(())
}

fn read_scope_spans<'a>(
    bytes: &'a [u8],
    depth: u32,
    resource: &ResourceContext<'_>,
    conversion: &mut Conversion,
    attributes: &mut Vec<Attribute<'a>>,
    events: &mut Vec<&'a [u8]>,
    frame_ids: &mut FrameIds,
) -> Read<()> {
    enter(depth)?;
    let mut scope = None;
    let mut fields = Fields::new(bytes);
    while let Some((tag, field)) = fields.next()? {
        match tag {
            1 => {
                let bytes = message(field)?;
                once(&mut scope, bytes)?;
                check(bytes, depth + 1, SCOPE)?;
            }
            2 => read_span(
                message(field)?,
                depth + 1,
                resource,
                conversion,
                attributes,
                events,
                frame_ids,
            )?,
            3 => {
                string(field)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn read_span<'a>(
    bytes: &'a [u8],
    depth: u32,
    resource: &ResourceContext<'_>,
    conversion: &mut Conversion,
    attributes: &mut Vec<Attribute<'a>>,
    events: &mut Vec<&'a [u8]>,
    frame_ids: &mut FrameIds,
) -> Read<()> {
    enter(depth)?;
    attributes.clear();
    events.clear();
    let (mut trace_id, mut span_id, mut parent_span_id): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let mut name = "";
    let (mut start, mut end) = (0, 0);
    let mut status = None;
    let mut fields = Fields::new(bytes);
    while let Some((tag, field)) = fields.next()? {
        match tag {
            1 => trace_id = bytes_field(field)?,
            2 => span_id = bytes_field(field)?,
            4 => parent_span_id = bytes_field(field)?,
            3 => {
                string(field)?;
            }
            5 => name = string(field)?,
            6 | 10 | 12 | 14 => {
                varint(field)?;
            }
            7 => start = fixed64(field)?,
            8 => end = fixed64(field)?,
            9 => attributes.push(read_key_value(message(field)?, depth + 1)?),
            11 => {
                let bytes = message(field)?;
                check(bytes, depth + 1, SPAN_EVENT)?;
                events.push(bytes);
            }
            13 => check(message(field)?, depth + 1, LINK)?,
            15 => once(&mut status, read_status(message(field)?, depth + 1)?)?,
            16 => {
                fixed32(field)?;
            }
            _ => {}
        }
    }
    let span = SpanView {
        name,
        trace_id,
        span_id,
        parent_span_id,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        status,
        attributes,
        events: SpanEvents::Encoded(events),
    };
    conversion.add(convert_span(&span, resource, frame_ids));
    Ok(())
}

fn read_status(bytes: &[u8], depth: u32) -> Read<(i32, &str)> {
    enter(depth)?;
    let (mut code, mut message) = (0, "");
    let mut fields = Fields::new(bytes);
    while let Some((tag, field)) = fields.next()? {
        match tag {
            2 => message = string(field)?,
            // An enum is an int32: prost keeps the low 32 bits.
            3 => code = varint(field)? as i32,
            _ => {}
        }
    }
    Ok((code, message))
}

fn read_key_value(bytes: &[u8], depth: u32) -> Read<Attribute<'_>> {
    enter(depth)?;
    let mut key = "";
    let mut value = None;
    let mut fields = Fields::new(bytes);
    while let Some((tag, field)) = fields.next()? {
        match tag {
            1 => key = string(field)?,
            2 => once(&mut value, read_any_value(message(field)?, depth + 1)?)?,
            3 => {
                varint(field)?;
            }
            _ => {}
        }
    }
    Ok(Attribute {
        key,
        value: value.flatten(),
    })
}

/// An `AnyValue`: `None` when none of its `oneof` fields is set.
fn read_any_value(bytes: &[u8], depth: u32) -> Read<Option<ValueView<'_>>> {
    enter(depth)?;
    let mut value = None;
    let mut fields = Fields::new(bytes);
    while let Some((tag, field)) = fields.next()? {
        let read = match tag {
            1 => ValueView::String(string(field)?),
            2 => ValueView::Bool(varint(field)? != 0),
            // An int64: prost reinterprets the varint's bits.
            3 => ValueView::Int(varint(field)? as i64),
            4 => ValueView::Double(f64::from_bits(fixed64(field)?)),
            5 => {
                let bytes = message(field)?;
                check(bytes, depth + 1, ARRAY)?;
                ValueView::Array(ArrayView::Encoded(bytes))
            }
            6 => {
                check(message(field)?, depth + 1, KEY_VALUE_LIST)?;
                ValueView::Other
            }
            7 => {
                bytes_field(field)?;
                ValueView::Other
            }
            8 => {
                varint(field)?;
                ValueView::Other
            }
            _ => continue,
        };
        once(&mut value, read)?;
    }
    Ok(value)
}

/// What a field of a message that is only checked, not kept, must hold.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Bytes,
    Varint,
    Fixed64,
    Fixed32,
    KeyValue,
    AnyValue,
}

/// The known fields of the messages that are only checked, by field number; other
/// numbers are skipped, as prost skips unknown fields.
type Schema = &'static [(u32, Kind)];

const ENTITY_REF: Schema = &[
    (1, Kind::Str),
    (2, Kind::Str),
    (3, Kind::Str),
    (4, Kind::Str),
];
const SCOPE: Schema = &[
    (1, Kind::Str),
    (2, Kind::Str),
    (3, Kind::KeyValue),
    (4, Kind::Varint),
];
const SPAN_EVENT: Schema = &[
    (1, Kind::Fixed64),
    (2, Kind::Str),
    (3, Kind::KeyValue),
    (4, Kind::Varint),
];
const LINK: Schema = &[
    (1, Kind::Bytes),
    (2, Kind::Bytes),
    (3, Kind::Str),
    (4, Kind::KeyValue),
    (5, Kind::Varint),
    (6, Kind::Fixed32),
];
const ARRAY: Schema = &[(1, Kind::AnyValue)];
const KEY_VALUE_LIST: Schema = &[(1, Kind::KeyValue)];

/// Reads a message only to reject what prost would reject: every known field must have
/// its kind's wire type (and strings be UTF-8), nested messages included.
fn check(bytes: &[u8], depth: u32, schema: Schema) -> Read<()> {
    enter(depth)?;
    let mut fields = Fields::new(bytes);
    while let Some((tag, field)) = fields.next()? {
        let Some(&(_, kind)) = schema.iter().find(|(number, _)| *number == tag) else {
            continue;
        };
        match kind {
            Kind::Str => {
                string(field)?;
            }
            Kind::Bytes => {
                bytes_field(field)?;
            }
            Kind::Varint => {
                varint(field)?;
            }
            Kind::Fixed64 => {
                fixed64(field)?;
            }
            Kind::Fixed32 => {
                fixed32(field)?;
            }
            Kind::KeyValue => {
                read_key_value(message(field)?, depth + 1)?;
            }
            Kind::AnyValue => {
                read_any_value(message(field)?, depth + 1)?;
            }
        }
    }
    Ok(())
}

fn enter(depth: u32) -> Read<()> {
    if depth > MAX_DEPTH {
        return Err(Bail);
    }
    Ok(())
}

/// Sets a field that prost would merge rather than replace if given twice.
fn once<T>(slot: &mut Option<T>, value: T) -> Read<()> {
    if slot.is_some() {
        return Err(Bail);
    }
    *slot = Some(value);
    Ok(())
}

fn message(field: Field<'_>) -> Read<&[u8]> {
    bytes_field(field)
}

fn bytes_field(field: Field<'_>) -> Read<&[u8]> {
    match field {
        Field::Bytes(bytes) => Ok(bytes),
        _ => Err(Bail),
    }
}

fn string(field: Field<'_>) -> Read<&str> {
    std::str::from_utf8(bytes_field(field)?).map_err(|_| Bail)
}

fn varint(field: Field<'_>) -> Read<u64> {
    match field {
        Field::Varint(value) => Ok(value),
        _ => Err(Bail),
    }
}

fn fixed64(field: Field<'_>) -> Read<u64> {
    match field {
        Field::Fixed64(value) => Ok(value),
        _ => Err(Bail),
    }
}

fn fixed32(field: Field<'_>) -> Read<u32> {
    match field {
        Field::Fixed32(value) => Ok(value),
        _ => Err(Bail),
    }
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields { rest: bytes }
    }

    /// The next field's tag and value; `None` at the end of the message.
    fn next(&mut self) -> Read<Option<(u32, Field<'a>)>> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = u32::try_from(self.varint()?).map_err(|_| Bail)?;
        let tag = key >> 3;
        if tag == 0 {
            return Err(Bail);
        }
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| Bail)?;
                Field::Fixed64(u64::from_le_bytes(bytes))
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Bail)?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                let bytes: [u8; 4] = self.take(4)?.try_into().map_err(|_| Bail)?;
                Field::Fixed32(u32::from_le_bytes(bytes))
            }
            // Groups (3, 4) are left to prost; 6 and 7 are not wire types.
            _ => return Err(Bail),
        };
        Ok(Some((tag, field)))
    }

    /// A varint of at most 10 bytes whose last byte fits in the 64th bit, as prost
    /// requires.
    fn varint(&mut self) -> Read<u64> {
        let mut value = 0u64;
        for (index, byte) in self.rest.iter().enumerate().take(10) {
            if index == 9 && *byte > 1 {
                return Err(Bail);
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[index + 1..];
                return Ok(value);
            }
        }
        Err(Bail)
    }

    fn take(&mut self, len: usize) -> Read<&'a [u8]> {
        if len > self.rest.len() {
            return Err(Bail);
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use proptest::prelude::*;
    use prost::Message as _;

    use crate::ingest::otlp::{Conversion, convert, convert_encoded};

    const FRAME: &str = "20261121T101530.123Z_0000K7PQ2XW9MD_cam01_rgb";

    fn value(value: Value) -> Option<AnyValue> {
        Some(AnyValue { value: Some(value) })
    }

    fn attribute(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: self::value(value),
            ..KeyValue::default()
        }
    }

    fn text(key: &str, text: &str) -> KeyValue {
        attribute(key, Value::StringValue(text.to_owned()))
    }

    fn span(index: u8, attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![7; 16],
            span_id: vec![index + 1; 8],
            parent_span_id: if index == 0 {
                Vec::new()
            } else {
                vec![index; 8]
            },
            name: format!("stage{index}"),
            start_time_unix_nano: 1_000 + u64::from(index),
            end_time_unix_nano: 2_000,
            attributes,
            ..Span::default()
        }
    }

    /// A request using every field the converter reads and most it does not.
    fn rich_request() -> ExportTraceServiceRequest {
        let array = Value::ArrayValue(ArrayValue {
            values: vec![
                value(Value::IntValue(1)).unwrap_or_default(),
                value(Value::StringValue("two".to_owned())).unwrap_or_default(),
                value(Value::ArrayValue(ArrayValue::default())).unwrap_or_default(),
                AnyValue::default(),
            ],
        });
        let kvlist = Value::KvlistValue(KeyValueList {
            values: vec![text("inner", "x")],
        });
        let mut failed = span(
            1,
            vec![
                text("frame.id", FRAME),
                attribute("frame.size_bytes", Value::IntValue(921_600)),
                attribute("detections.ratio", Value::DoubleValue(0.25)),
                attribute("detections.ok", Value::BoolValue(true)),
                attribute("detections.list", array),
                attribute("detections.map", kvlist),
                attribute("detections.raw", Value::BytesValue(vec![1, 2])),
                attribute("http.route", Value::StringValueStrindex(3)),
                text("ignored.key", "dropped"),
                text("frame.id", "the first one counts"),
            ],
        );
        failed.status = Some(Status {
            code: 2,
            message: String::new(),
        });
        failed.events = vec![
            Event {
                name: "log".to_owned(),
                ..Event::default()
            },
            Event {
                time_unix_nano: 5,
                name: "exception".to_owned(),
                attributes: vec![text("exception.message", "model not loaded")],
                dropped_attributes_count: 1,
            },
        ];
        failed.links = vec![Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "a=b".to_owned(),
            attributes: vec![text("link", "x")],
            dropped_attributes_count: 0,
            flags: 1,
        }];
        failed.trace_state = "k=v".to_owned();
        failed.kind = 2;
        failed.flags = 0x100;
        let spans = vec![
            span(0, vec![text("frame.id", FRAME), text("camera.id", "cam07")]),
            failed,
            span(2, vec![text("unrelated", "no frame")]),
            span(3, vec![text("frame.id", "not a frame id")]),
            span(4, vec![attribute("frame.id", Value::IntValue(5))]),
        ];
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            text("service.name", "frame-processor"),
                            text("camera.id", "cam09"),
                        ],
                        dropped_attributes_count: 2,
                        entity_refs: vec![EntityRef {
                            schema_url: "s".to_owned(),
                            r#type: "host".to_owned(),
                            id_keys: vec!["host.id".to_owned()],
                            description_keys: vec!["host.name".to_owned()],
                        }],
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "scope".to_owned(),
                            version: "1".to_owned(),
                            attributes: vec![text("scope.key", "v")],
                            dropped_attributes_count: 0,
                        }),
                        spans,
                        schema_url: "https://example.com".to_owned(),
                    }],
                    schema_url: "https://example.com/r".to_owned(),
                },
                ResourceSpans {
                    resource: None,
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(5, vec![text("frame.id", FRAME)])],
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                },
            ],
        }
    }

    /// What prost and the converter make of `bytes`, `None` when prost refuses them.
    fn through_prost(bytes: &[u8]) -> Option<Conversion> {
        ExportTraceServiceRequest::decode(bytes)
            .ok()
            .map(|request| convert(&request))
    }

    /// The fast path either agrees with prost or leaves the bytes to it.
    fn agrees_with_prost(bytes: &[u8]) {
        if let Some(fast) = convert_encoded(bytes) {
            assert_eq!(Some(fast), through_prost(bytes), "{bytes:?}");
        }
    }

    #[test]
    fn a_rich_request_converts_as_through_prost() {
        let bytes = rich_request().encode_to_vec();
        let fast = convert_encoded(&bytes).expect("the fast path reads a well-formed request");
        assert_eq!(Some(fast.clone()), through_prost(&bytes));
        assert_eq!(
            (fast.spans, fast.events.len(), fast.dropped, fast.rejected),
            (6, 3, 1, 2)
        );
        let failed = &fast.events[1];
        assert_eq!(failed.error_message.as_deref(), Some("model not loaded"));
        assert_eq!(failed.camera_id.as_deref(), Some("cam09"));
        assert_eq!(fast.events[0].camera_id.as_deref(), Some("cam07"));
        assert_eq!(fast.events[2].service, "unknown_service");
        assert_eq!(
            failed.attributes["detections.list"],
            serde_json::json!([1, "two"])
        );
    }

    #[test]
    fn fields_in_any_order_and_unknown_fields_read_as_prost_reads_them() {
        // The resource after the spans it describes, and fields this prost does not know.
        let request = rich_request();
        let mut bytes = Vec::new();
        for resource_spans in &request.resource_spans {
            let mut inner = Vec::new();
            for scope_spans in &resource_spans.scope_spans {
                prost::encoding::message::encode(2, scope_spans, &mut inner);
            }
            if let Some(resource) = &resource_spans.resource {
                prost::encoding::message::encode(1, resource, &mut inner);
            }
            prost::encoding::uint64::encode(99, &7, &mut inner);
            prost::encoding::string::encode(98, &"extra".to_owned(), &mut inner);
            prost::encoding::fixed32::encode(97, &1, &mut inner);
            prost::encoding::fixed64::encode(96, &1, &mut inner);
            prost::encoding::bytes::encode(1, &inner, &mut bytes);
        }
        let fast = convert_encoded(&bytes).expect("read by the fast path");
        assert_eq!(Some(fast), through_prost(&bytes));
    }

    #[test]
    fn what_prost_merges_or_refuses_is_left_to_prost() {
        let one = ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", "a")],
                ..Resource::default()
            }),
            ..ResourceSpans::default()
        };
        // The resource twice: prost merges the two (their attributes add up).
        let mut inner = one.encode_to_vec();
        inner.extend(one.encode_to_vec());
        let mut bytes = Vec::new();
        prost::encoding::bytes::encode(1, &inner, &mut bytes);
        assert!(convert_encoded(&bytes).is_none());
        assert!(through_prost(&bytes).is_some());

        // A string that is not UTF-8, in a field the converter does not even read.
        let mut span = span(0, vec![text("frame.id", FRAME)]);
        span.trace_state = "\u{0}".to_owned();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let mut bytes = request.encode_to_vec();
        let at = bytes
            .iter()
            .position(|byte| *byte == 0)
            .expect("the NUL of the trace state");
        bytes[at] = 0xff;
        assert!(convert_encoded(&bytes).is_none());
        assert!(through_prost(&bytes).is_none());

        // A group, an invalid wire type, a truncated message.
        for bytes in [vec![0x0b, 0x0c], vec![0x0e], vec![0x0a, 0x05, 0x0a]] {
            assert!(convert_encoded(&bytes).is_none(), "{bytes:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_agree_with_prost(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            agrees_with_prost(&bytes);
        }

        #[test]
        fn mutated_requests_agree_with_prost(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            let mut bytes = rich_request().encode_to_vec();
            for (index, byte, kind) in edits {
                let at = index.index(bytes.len());
                match kind {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => { bytes.remove(at); }
                }
            }
            agrees_with_prost(&bytes);
        }
    }
}
