//! [`SpanRecord`]: a span being recorded, written as OTLP protobuf while it runs.
//!
//! Attributes, events and links go into the span's buffer the moment they are set, as
//! `Span` message fields; the identity, name, times and status are appended when the span
//! ends (protobuf decoders accept a message's fields in any order). No attribute is held
//! as a `KeyValue` or an owned `String` in between, so recording a `tracing` field costs
//! a copy of its bytes into a buffer that is recycled from span to span.

use std::time::SystemTime;

use opentelemetry::trace::SpanContext;
use opentelemetry::{KeyValue, Value};

use crate::config::LimitsConfig;
use crate::otlp::{self, FIXED64, LEN, SpanHeader, VARINT, next_field};

/// `Span.attributes`.
const ATTRIBUTES: u8 = 9;
/// `Span.events`.
const EVENTS: u8 = 11;
/// `Span.Event.attributes`.
const EVENT_ATTRIBUTES: u8 = 3;

/// One attribute value as `tracing` and the OpenTelemetry API hand them over.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttributeValue<'a> {
    /// A string.
    Str(&'a str),
    /// A signed integer.
    I64(i64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// Any OpenTelemetry value (arrays included).
    Otel(&'a Value),
}

/// A span's encoded fields so far.
#[derive(Debug)]
pub(crate) struct SpanRecord {
    /// The `ScopeSpans.spans` field: key, length placeholder, then `Span` fields.
    buf: Vec<u8>,
    /// Where the length placeholder is.
    at: usize,
    attributes: u32,
    dropped_attributes: u32,
    events: u32,
    dropped_events: u32,
    links: u32,
    dropped_links: u32,
    /// One bit per key added ([`key_bit`]): a key whose bit is clear is not in the span,
    /// so setting it needs no search for an earlier value.
    keys: u64,
}

/// A key's bit in [`SpanRecord::keys`], from its length and three of its bytes.
fn key_bit(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let pick = |i: usize| u32::from(bytes.get(i).copied().unwrap_or(0));
    let hash = (bytes.len() as u32).wrapping_mul(31)
        ^ pick(0).wrapping_mul(7)
        ^ pick(bytes.len() / 2).wrapping_mul(13)
        ^ pick(bytes.len().wrapping_sub(1)).wrapping_mul(131);
    1 << (hash % 64)
}

impl SpanRecord {
    /// Starts a record in a buffer from this thread's pool, which it goes back to when
    /// the record is dropped.
    pub(crate) fn new() -> Self {
        let mut buf = crate::export::span_buffer();
        let at = otlp::begin(&mut buf, 2);
        Self {
            buf,
            at,
            attributes: 0,
            dropped_attributes: 0,
            events: 0,
            dropped_events: 0,
            links: 0,
            dropped_links: 0,
            keys: 0,
        }
    }

    /// Adds an attribute that is known not to be set yet (the fields a span was created
    /// with have distinct names).
    pub(crate) fn push_attribute(
        &mut self,
        limits: &LimitsConfig,
        key: &str,
        value: AttributeValue<'_>,
    ) {
        if self.attributes >= limits.span_attribute_count {
            self.dropped_attributes += 1;
            return;
        }
        self.attributes += 1;
        self.keys |= key_bit(key);
        put_attribute(&mut self.buf, ATTRIBUTES, key, value, limits);
    }

    /// Adds attributes encoded beforehand (keys known not to be set yet); false, adding
    /// nothing, when they would pass the attribute count limit (the caller then adds them
    /// one by one, so the limit keeps the first ones).
    pub(crate) fn push_encoded(
        &mut self,
        limits: &LimitsConfig,
        encoded: &EncodedAttributes,
    ) -> bool {
        if self.attributes + encoded.count > limits.span_attribute_count {
            return false;
        }
        self.attributes += encoded.count;
        self.keys |= encoded.keys;
        self.buf.extend_from_slice(&encoded.bytes);
        true
    }

    /// Sets an attribute, replacing an earlier value of the same key.
    pub(crate) fn set_attribute(
        &mut self,
        limits: &LimitsConfig,
        key: &str,
        value: AttributeValue<'_>,
    ) {
        if self.keys & key_bit(key) != 0 && self.remove_attribute(key) {
            self.attributes -= 1;
        }
        self.push_attribute(limits, key, value);
    }

    /// Removes the attribute `key` if the span has it; walks the span's fields.
    fn remove_attribute(&mut self, key: &str) -> bool {
        let mut pos = self.at + 4;
        while pos < self.buf.len() {
            let Some((field, wire, body, next)) = next_field(&self.buf, pos) else {
                return false;
            };
            if field == u64::from(ATTRIBUTES)
                && wire == u64::from(LEN)
                && key_of(&self.buf[body..next]) == Some(key.as_bytes())
            {
                self.buf.drain(pos..next);
                return true;
            }
            pos = next;
        }
        false
    }

    /// Adds an event; `write` gives it a name and attributes through the
    /// [`EventWriter`] (an event without a name is named `event`).
    pub(crate) fn add_event(
        &mut self,
        limits: &LimitsConfig,
        time: SystemTime,
        write: impl FnOnce(&mut EventWriter<'_>),
    ) {
        if self.events >= limits.span_event_count {
            self.dropped_events += 1;
            return;
        }
        self.events += 1;
        let at = otlp::begin(&mut self.buf, EVENTS);
        otlp::put_fixed64(&mut self.buf, 1, otlp::unix_nanos(time));
        let mut writer = EventWriter {
            buf: &mut self.buf,
            limits,
            named: false,
            count: 0,
            dropped: 0,
        };
        write(&mut writer);
        let (named, dropped) = (writer.named, writer.dropped);
        if !named {
            otlp::put_bytes(&mut self.buf, 2, b"event");
        }
        otlp::put_uint(&mut self.buf, 4, u64::from(dropped));
        otlp::end(&mut self.buf, at);
    }

    /// Adds a link to `linked`.
    pub(crate) fn add_link(
        &mut self,
        limits: &LimitsConfig,
        linked: &SpanContext,
        attributes: &[KeyValue],
    ) {
        if self.links >= limits.span_link_count {
            self.dropped_links += 1;
            return;
        }
        self.links += 1;
        let kept = attributes.len().min(limits.span_attribute_count as usize);
        let truncated: Vec<KeyValue>;
        let kept_attributes = if limits.attribute_value_length.is_some() {
            truncated = attributes[..kept]
                .iter()
                .map(|kv| truncated_key_value(kv, limits))
                .collect();
            &truncated[..]
        } else {
            &attributes[..kept]
        };
        otlp::put_link(
            &mut self.buf,
            linked,
            kept_attributes,
            (attributes.len() - kept) as u32,
        );
    }

    /// Completes the span with `header` (whose dropped counts are this record's) and
    /// returns its `ScopeSpans.spans` field.
    pub(crate) fn finish(&mut self, header: SpanHeader<'_>) -> &[u8] {
        let header = SpanHeader {
            dropped_attributes: self.dropped_attributes,
            dropped_events: self.dropped_events,
            dropped_links: self.dropped_links,
            ..header
        };
        otlp::put_span_header(&mut self.buf, &header);
        otlp::end(&mut self.buf, self.at);
        &self.buf
    }
}

impl Drop for SpanRecord {
    fn drop(&mut self) {
        crate::export::recycle_span_buffer(std::mem::take(&mut self.buf));
    }
}

/// Span attributes encoded once and added to many spans with one copy
/// ([`SpanRecord::push_encoded`]): e.g. the code location of a callsite, the same for
/// every span it makes.
#[derive(Debug, Default)]
pub(crate) struct EncodedAttributes {
    bytes: Vec<u8>,
    count: u32,
    keys: u64,
}

impl EncodedAttributes {
    /// Appends an attribute, its value cut to `limits` as in a span.
    pub(crate) fn push(&mut self, limits: &LimitsConfig, key: &str, value: AttributeValue<'_>) {
        self.count += 1;
        self.keys |= key_bit(key);
        put_attribute(&mut self.bytes, ATTRIBUTES, key, value, limits);
    }
}

/// Writes one event's attributes.
#[derive(Debug)]
pub(crate) struct EventWriter<'a> {
    buf: &'a mut Vec<u8>,
    limits: &'a LimitsConfig,
    named: bool,
    count: u32,
    dropped: u32,
}

impl EventWriter<'_> {
    /// Names the event (once; later names are ignored).
    pub(crate) fn name(&mut self, name: &str) {
        if !self.named {
            self.named = true;
            otlp::put_bytes(self.buf, 2, name.as_bytes());
        }
    }

    /// Adds an attribute to the event.
    pub(crate) fn attribute(&mut self, key: &str, value: AttributeValue<'_>) {
        if self.count >= self.limits.span_attribute_count {
            self.dropped += 1;
            return;
        }
        self.count += 1;
        put_attribute(self.buf, EVENT_ATTRIBUTES, key, value, self.limits);
    }
}

/// Appends a `KeyValue` field; strings are cut to the value length limit.
fn put_attribute(
    buf: &mut Vec<u8>,
    field: u8,
    key: &str,
    value: AttributeValue<'_>,
    limits: &LimitsConfig,
) {
    let value = match value {
        AttributeValue::Otel(Value::String(s)) => AttributeValue::Str(s.as_str()),
        AttributeValue::Otel(Value::I64(i)) => AttributeValue::I64(*i),
        AttributeValue::Otel(Value::F64(f)) => AttributeValue::F64(*f),
        AttributeValue::Otel(Value::Bool(b)) => AttributeValue::Bool(*b),
        other => other,
    };
    // The `AnyValue`'s fields: a head assembled on the stack (its key, and a scalar or a
    // string's length), then a string's bytes.
    let mut head = Head::default();
    let tail: &[u8] = match value {
        AttributeValue::Str(s) => {
            let text = truncate(s, limits.attribute_value_length).as_bytes();
            head.key(1, LEN);
            head.varint(text.len() as u64);
            text
        }
        AttributeValue::I64(i) => {
            head.key(3, VARINT);
            head.varint(i as u64);
            &[]
        }
        AttributeValue::F64(f) => {
            head.key(4, FIXED64);
            head.put(&f.to_bits().to_le_bytes());
            &[]
        }
        AttributeValue::Bool(b) => {
            head.key(2, VARINT);
            head.put(&[u8::from(b)]);
            &[]
        }
        AttributeValue::Otel(value) => {
            // Arrays (the scalars were turned into their own variants above).
            let kv = truncated_key_value(&KeyValue::new(key.to_owned(), value.clone()), limits);
            otlp::put_key_values(buf, field, [&kv]);
            return;
        }
    };
    put_key_value(buf, field, key.as_bytes(), head.as_slice(), tail);
}

/// Appends a `KeyValue` field whose `AnyValue` holds `value_head` then `value_tail`.
///
/// Keys and values are short in nearly every span, so every length fits in one varint
/// byte: then the field is a fixed four-byte header, the key, a two-byte header and the
/// value, after one capacity check. Longer ones get their lengths' varints in full.
#[inline]
fn put_key_value(buf: &mut Vec<u8>, field: u8, key: &[u8], value_head: &[u8], value_tail: &[u8]) {
    let value_len = value_head.len() + value_tail.len();
    // KeyValue: 0x0a len key, 0x12 len AnyValue.
    let key_value_len = 4 + key.len() + value_len;
    if key_value_len < 0x80 {
        buf.reserve(2 + key_value_len);
        buf.extend_from_slice(&[
            (field << 3) | LEN,
            key_value_len as u8,
            (1 << 3) | LEN,
            key.len() as u8,
        ]);
        buf.extend_from_slice(key);
        buf.extend_from_slice(&[(2 << 3) | LEN, value_len as u8]);
    } else {
        let mut head = Head::default();
        head.key(field, LEN);
        head.varint((otlp::field_len(key.len()) + otlp::field_len(value_len)) as u64);
        head.key(1, LEN);
        head.varint(key.len() as u64);
        let mut middle = Head::default();
        middle.key(2, LEN);
        middle.varint(value_len as u64);
        buf.reserve(head.as_slice().len() + key.len() + middle.as_slice().len() + value_len);
        buf.extend_from_slice(head.as_slice());
        buf.extend_from_slice(key);
        buf.extend_from_slice(middle.as_slice());
    }
    buf.extend_from_slice(value_head);
    buf.extend_from_slice(value_tail);
}

/// A few protobuf bytes assembled on the stack (keys, lengths, scalars).
type Head = otlp::StackBytes<24>;

/// `kv` with its string values cut to the value length limit.
fn truncated_key_value(kv: &KeyValue, limits: &LimitsConfig) -> KeyValue {
    let mut kv = kv.clone();
    if let Some(limit) = limits.attribute_value_length {
        crate::export::truncate_value(&mut kv.value, limit);
    }
    kv
}

/// `s` cut to `limit` bytes at a char boundary.
pub(crate) fn truncate(s: &str, limit: Option<usize>) -> &str {
    match limit {
        Some(limit) if s.len() > limit => crate::export::truncate_str(s, limit),
        _ => s,
    }
}

/// The `key` of an encoded `KeyValue` message (written first by this module).
fn key_of(key_value: &[u8]) -> Option<&[u8]> {
    let (field, wire, body, next) = next_field(key_value, 0)?;
    (field == 1 && wire == u64::from(LEN)).then(|| key_value.get(body..next))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            span_attribute_count: 128,
            span_event_count: 128,
            span_link_count: 128,
            attribute_value_length: None,
        }
    }

    fn attributes(record: &SpanRecord) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut pos = record.at + 4;
        while let Some((field, _, body, next)) = next_field(&record.buf, pos) {
            if field == u64::from(ATTRIBUTES) {
                let kv = &record.buf[body..next];
                let key = String::from_utf8_lossy(key_of(kv).unwrap()).into_owned();
                out.push((key, format!("{:?}", &kv[2 + kv[1] as usize..])));
            }
            pos = next;
        }
        out
    }

    #[test]
    fn encoded_attributes_are_the_same_bytes_and_respect_the_count_limit() {
        let limits = LimitsConfig {
            attribute_value_length: Some(4),
            ..limits()
        };
        let fields = [
            ("code.file.path", AttributeValue::Str("src/main.rs")),
            ("code.line.number", AttributeValue::I64(42)),
        ];
        let mut encoded = EncodedAttributes::default();
        let mut one_by_one = SpanRecord::new();
        for (key, value) in fields {
            encoded.push(&limits, key, value);
            one_by_one.push_attribute(&limits, key, value);
        }
        let mut record = SpanRecord::new();
        assert!(record.push_encoded(&limits, &encoded));
        assert_eq!(attributes(&record), attributes(&one_by_one));
        // The keys are known to the record: setting one again replaces it.
        record.set_attribute(&limits, "code.line.number", AttributeValue::I64(7));
        assert_eq!(attributes(&record).len(), 2);

        let tight = LimitsConfig {
            span_attribute_count: 3,
            ..limits
        };
        let mut full = SpanRecord::new();
        full.push_attribute(&tight, "a", AttributeValue::Bool(true));
        full.push_attribute(&tight, "b", AttributeValue::Bool(true));
        assert!(
            !full.push_encoded(&tight, &encoded),
            "two more would pass the limit of 3"
        );
        assert_eq!(attributes(&full).len(), 2);
    }

    #[test]
    fn setting_an_attribute_again_replaces_it() {
        let limits = limits();
        let mut record = SpanRecord::new();
        record.push_attribute(&limits, "a", AttributeValue::I64(1));
        record.push_attribute(&limits, "b", AttributeValue::Str("x"));
        record.set_attribute(&limits, "a", AttributeValue::I64(2));
        let kept = attributes(&record);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].0, "b");
        assert_eq!(kept[1].0, "a");
        assert_eq!(record.attributes, 2);
    }

    #[test]
    fn limits_drop_and_count() {
        let limits = LimitsConfig {
            span_attribute_count: 1,
            span_event_count: 0,
            span_link_count: 0,
            attribute_value_length: Some(2),
        };
        let mut record = SpanRecord::new();
        record.push_attribute(&limits, "a", AttributeValue::Str("héllo"));
        record.push_attribute(&limits, "b", AttributeValue::I64(1));
        record.add_event(&limits, SystemTime::now(), |_| {});
        assert_eq!(
            (
                record.attributes,
                record.dropped_attributes,
                record.dropped_events
            ),
            (1, 1, 1)
        );
        // "héllo" cut at two bytes is "h" (the é does not fit).
        assert!(record.buf.ends_with(b"\x0a\x01h"));
    }

    /// Integers on either side of the varint byte boundaries.
    const VARINT_BOUNDARIES: [(&str, i64); 5] = [
        ("z", 0),
        ("i2", 16_383),
        ("i3", 16_384),
        ("i4", 127),
        ("i5", 128),
    ];

    #[test]
    fn every_value_kind_decodes_with_the_official_proto_types() {
        use opentelemetry::trace::{
            SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
        };
        use opentelemetry_proto::tonic::common::v1::any_value::Value as Proto;
        use prost::Message as _;

        let limits = limits();
        let mut record = SpanRecord::new();
        record.push_attribute(&limits, "s", AttributeValue::Str("text"));
        record.push_attribute(&limits, "i", AttributeValue::I64(-3));
        record.push_attribute(&limits, "f", AttributeValue::F64(1.5));
        record.push_attribute(&limits, "b", AttributeValue::Bool(true));
        // Strings around the one-byte length fast path: a `KeyValue` of 127 and 128 bytes,
        // a long key and a long value.
        let (v121, v122) = ("x".repeat(121), "y".repeat(122));
        let (long_key, long_value) = ("k".repeat(200), "v".repeat(300));
        record.push_attribute(&limits, "1", AttributeValue::Str(&v121));
        record.push_attribute(&limits, "2", AttributeValue::Str(&v122));
        record.push_attribute(&limits, &long_key, AttributeValue::Str("short"));
        record.push_attribute(&limits, "long", AttributeValue::Str(&long_value));
        record.push_attribute(&limits, &long_key, AttributeValue::I64(5));
        for (key, value) in VARINT_BOUNDARIES {
            record.push_attribute(&limits, key, AttributeValue::I64(value));
        }
        let array = Value::Array(opentelemetry::Array::I64(vec![1, 2]));
        record.set_attribute(&limits, "a", AttributeValue::Otel(&array));
        record.set_attribute(&limits, "i", AttributeValue::I64(300));
        let context = SpanContext::new(
            TraceId::from(7_u128),
            SpanId::from(9_u64),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let now = SystemTime::now();
        let bytes = record.finish(SpanHeader {
            context: &context,
            parent_span_id: SpanId::INVALID,
            parent_is_remote: false,
            name: "n",
            kind: &SpanKind::Client,
            start_time: now,
            end_time: now,
            status: &Status::Unset,
            dropped_attributes: 0,
            dropped_events: 0,
            dropped_links: 0,
        });
        let span = opentelemetry_proto::tonic::trace::v1::Span::decode(&bytes[5..]).unwrap();
        let values: Vec<(String, Option<Proto>)> = span
            .attributes
            .into_iter()
            .map(|kv| (kv.key, kv.value.and_then(|v| v.value)))
            .collect();
        let get = |key: &str| {
            values
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("s"), [Some(Proto::StringValue("text".to_owned()))]);
        assert_eq!(get("i"), [Some(Proto::IntValue(300))]);
        assert_eq!(get("f"), [Some(Proto::DoubleValue(1.5))]);
        assert_eq!(get("b"), [Some(Proto::BoolValue(true))]);
        assert_eq!(get("1"), [Some(Proto::StringValue(v121))]);
        assert_eq!(get("2"), [Some(Proto::StringValue(v122))]);
        assert_eq!(
            get(&long_key),
            [
                Some(Proto::StringValue("short".to_owned())),
                Some(Proto::IntValue(5))
            ]
        );
        assert_eq!(get("long"), [Some(Proto::StringValue(long_value))]);
        for (key, value) in VARINT_BOUNDARIES {
            assert_eq!(get(key), [Some(Proto::IntValue(value))], "{key}");
        }
        assert!(matches!(&get("a")[..], [Some(Proto::ArrayValue(a))] if a.values.len() == 2));
        assert_eq!(span.name, "n");
        assert_eq!(span.kind, 3);
    }
}
