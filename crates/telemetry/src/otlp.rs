//! The OTLP span exporter: encodes `SpanData` straight into OTLP protobuf and sends
//! `ExportTraceServiceRequest`s over gRPC or HTTP/protobuf.
//!
//! `opentelemetry-otlp` first converts every span into `opentelemetry-proto` structs (one
//! `String` per attribute key and value) and then encodes those. At tens of thousands of
//! spans a second that conversion is most of the export cost, and the export shares the
//! CPU with the service. Here each span is written in wire format directly from the SDK's
//! `SpanData` as it ends ([`encode_span`], called by the batch span processor on the
//! thread that ended it), and a request is the encoded resource plus those bytes grouped
//! by instrumentation scope ([`encode_request`]). The output is checked against
//! `opentelemetry-proto`'s decoder in tests.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::SpanData;

use crate::config::{Compression, OtlpConfig, Protocol};

// Wire types; field numbers are from opentelemetry/proto/trace/v1/trace.proto and
// common/v1/common.proto.
pub(crate) const LEN: u8 = 2;
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const FIXED32: u8 = 5;

/// Messages larger than this cannot be described by a four-byte varint.
const MAX_NESTED_LEN: usize = (1 << 28) - 1;

/// Queued spans of one instrumentation scope: their `ScopeSpans.spans` fields (key,
/// length, `Span` message), encoded on the threads that ended them, back to back. A
/// request writes a run under its scope with one copy.
#[derive(Debug)]
pub(crate) struct ScopeRun {
    pub(crate) scope: InstrumentationScope,
    pub(crate) bytes: Vec<u8>,
    /// How many spans `bytes` holds.
    pub(crate) spans: usize,
}

/// Appends the `ScopeSpans.spans` field of `span` (key, length and `Span` message) to
/// `buf`.
///
/// Attributes (the bulk of a span) have their exact length computed up front. Larger
/// messages (the span, events, links, status) get a four-byte length placeholder, a valid
/// non-minimal varint that every protobuf decoder accepts, patched when they end.
pub(crate) fn encode_span(buf: &mut Vec<u8>, span: &SpanData) {
    let at = begin(buf, 2);
    put_key_values(buf, 9, &span.attributes);
    for event in span.events.iter() {
        let at = begin(buf, 11);
        put_fixed64(buf, 1, unix_nanos(event.timestamp));
        put_bytes(buf, 2, event.name.as_bytes());
        put_key_values(buf, 3, &event.attributes);
        put_uint(buf, 4, u64::from(event.dropped_attributes_count));
        end(buf, at);
    }
    for link in span.links.iter() {
        put_link(
            buf,
            &link.span_context,
            &link.attributes,
            link.dropped_attributes_count,
        );
    }
    put_span_header(
        buf,
        &SpanHeader {
            context: &span.span_context,
            parent_span_id: span.parent_span_id,
            parent_is_remote: span.parent_span_is_remote,
            name: &span.name,
            kind: &span.span_kind,
            start_time: span.start_time,
            end_time: span.end_time,
            status: &span.status,
            dropped_attributes: span.dropped_attributes_count,
            dropped_events: span.events.dropped_count,
            dropped_links: span.links.dropped_count,
        },
    );
    end(buf, at);
}

/// The fields of a `Span` besides its attributes, events and links.
#[derive(Debug)]
pub(crate) struct SpanHeader<'a> {
    pub(crate) context: &'a SpanContext,
    pub(crate) parent_span_id: SpanId,
    pub(crate) parent_is_remote: bool,
    pub(crate) name: &'a str,
    pub(crate) kind: &'a SpanKind,
    pub(crate) start_time: SystemTime,
    pub(crate) end_time: SystemTime,
    pub(crate) status: &'a Status,
    pub(crate) dropped_attributes: u32,
    pub(crate) dropped_events: u32,
    pub(crate) dropped_links: u32,
}

/// Appends the fields of `header` to a `Span` message. Protobuf decoders accept a
/// message's fields in any order, so a span's attributes, events and links can be written
/// first, as they are set, and these last, when it ends.
pub(crate) fn put_span_header(buf: &mut Vec<u8>, header: &SpanHeader<'_>) {
    let context = header.context;
    // The fixed-size fields are assembled on the stack and appended with one copy: a
    // dozen pushes into the buffer would each check its capacity.
    let mut head = StackBytes::<96>::default();
    head.put(&[tag(1, LEN), 16]);
    head.put(&context.trace_id().to_bytes());
    head.put(&[tag(2, LEN), 8]);
    head.put(&context.span_id().to_bytes());
    if header.parent_span_id != SpanId::INVALID {
        head.put(&[tag(4, LEN), 8]);
        head.put(&header.parent_span_id.to_bytes());
    }
    let kind: u8 = match header.kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    head.put(&[tag(6, VARINT), kind]);
    head.put(&[tag(7, FIXED64)]);
    head.put(&unix_nanos(header.start_time).to_le_bytes());
    head.put(&[tag(8, FIXED64)]);
    head.put(&unix_nanos(header.end_time).to_le_bytes());
    for (field, dropped) in [
        (10, header.dropped_attributes),
        (12, header.dropped_events),
        (14, header.dropped_links),
    ] {
        if dropped != 0 {
            head.put(&[tag(field, VARINT)]);
            head.varint(u64::from(dropped));
        }
    }
    // `Span.flags` is field 16: its key is a two-byte varint.
    head.varint((16 << 3) | u64::from(FIXED32));
    head.put(&span_flags(context.trace_flags().to_u8(), header.parent_is_remote).to_le_bytes());
    buf.extend_from_slice(head.as_slice());
    put_trace_state(buf, 3, context.trace_state());
    put_bytes(buf, 5, header.name.as_bytes());
    match header.status {
        Status::Unset => {}
        Status::Ok => {
            let at = begin(buf, 15);
            put_uint(buf, 3, 1);
            end(buf, at);
        }
        Status::Error { description } => {
            let at = begin(buf, 15);
            if !description.is_empty() {
                put_bytes(buf, 2, description.as_bytes());
            }
            put_uint(buf, 3, 2);
            end(buf, at);
        }
    }
}

/// Up to `N` protobuf bytes assembled on the stack (keys, lengths, scalars, ids).
pub(crate) struct StackBytes<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackBytes<N> {
    fn default() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> StackBytes<N> {
    /// Appends `bytes`; the caller sizes `N` for everything it appends.
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Appends a field key (fields below 16: one byte).
    pub(crate) fn key(&mut self, field: u8, wire_type: u8) {
        self.put(&[tag(field, wire_type)]);
    }

    /// Appends a varint.
    pub(crate) fn varint(&mut self, value: u64) {
        let mut rest = &mut self.bytes[self.len..];
        let room = rest.len();
        put_varint(&mut rest, value);
        self.len += room - rest.len();
    }

    /// What has been appended.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Appends a `Span.links` field.
pub(crate) fn put_link(
    buf: &mut Vec<u8>,
    linked: &SpanContext,
    attributes: &[KeyValue],
    dropped_attributes: u32,
) {
    let at = begin(buf, 13);
    put_bytes(buf, 1, &linked.trace_id().to_bytes());
    put_bytes(buf, 2, &linked.span_id().to_bytes());
    put_trace_state(buf, 3, linked.trace_state());
    put_key_values(buf, 4, attributes);
    put_uint(buf, 5, u64::from(dropped_attributes));
    put_fixed32(
        buf,
        6,
        span_flags(linked.trace_flags().to_u8(), linked.is_remote()),
    );
    end(buf, at);
}

fn put_trace_state(buf: &mut Vec<u8>, field: u8, state: &opentelemetry::trace::TraceState) {
    let header = state.header();
    if !header.is_empty() {
        put_bytes(buf, field, header.as_bytes());
    }
}

/// One encoded span (a `ScopeSpans.spans` field) as JSON, for the console exporter:
/// decoded with `opentelemetry-proto`, so the console shows exactly what OTLP would carry.
pub(crate) fn span_json(scope: &InstrumentationScope, field: &[u8]) -> Option<serde_json::Value> {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as ProtoKeyValue, any_value};
    use prost::Message as _;
    use serde_json::{Map, Value as Json, json};

    fn any(value: Option<&AnyValue>) -> Json {
        match value.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Json::from(s.as_str()),
            Some(any_value::Value::BoolValue(b)) => Json::from(*b),
            Some(any_value::Value::IntValue(i)) => Json::from(*i),
            Some(any_value::Value::DoubleValue(f)) => Json::from(*f),
            Some(any_value::Value::ArrayValue(array)) => {
                Json::Array(array.values.iter().map(|v| any(Some(v))).collect())
            }
            Some(other) => Json::from(format!("{other:?}")),
            None => Json::Null,
        }
    }
    fn attributes(kvs: &[ProtoKeyValue]) -> Json {
        Json::Object(
            kvs.iter()
                .map(|kv| (kv.key.clone(), any(kv.value.as_ref())))
                .collect::<Map<_, _>>(),
        )
    }
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // Skip the field's key (one byte) and its length (a four-byte placeholder).
    let span = opentelemetry_proto::tonic::trace::v1::Span::decode(field.get(5..)?).ok()?;
    let status = span.status.as_ref().map(|status| {
        json!({
            "code": match status.code { 1 => "ok", 2 => "error", _ => "unset" },
            "message": status.message,
        })
    });
    let kind = match span.kind {
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "internal",
    };
    Some(json!({
        "name": span.name,
        "kind": kind,
        "trace_id": hex(&span.trace_id),
        "span_id": hex(&span.span_id),
        "parent_span_id": hex(&span.parent_span_id),
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "attributes": attributes(&span.attributes),
        "events": span.events.iter().map(|event| json!({
            "name": event.name,
            "time_unix_nano": event.time_unix_nano,
            "attributes": attributes(&event.attributes),
        })).collect::<Vec<_>>(),
        "links": span.links.iter().map(|link| json!({
            "trace_id": hex(&link.trace_id),
            "span_id": hex(&link.span_id),
            "attributes": attributes(&link.attributes),
        })).collect::<Vec<_>>(),
        "status": status,
        "scope": scope.name(),
    }))
}

/// The `ResourceSpans.resource` field for `resource`, encoded once per exporter.
pub(crate) fn encode_resource(resource: &Resource) -> Vec<u8> {
    let attributes: Vec<KeyValue> = resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let mut buf = Vec::new();
    let at = begin(&mut buf, 1);
    put_key_values(&mut buf, 1, &attributes);
    end(&mut buf, at);
    buf
}

/// Assembles one `ExportTraceServiceRequest` from the encoded resource and spans into a
/// vector.
pub(crate) fn encode_request(resource: &[u8], runs: &[ScopeRun]) -> Vec<u8> {
    let request = RequestLayout::new(resource, runs);
    let mut buf = Vec::with_capacity(request.len());
    request.write(&mut buf);
    buf
}

/// One `ExportTraceServiceRequest` about to be written: the resource, and each run of
/// spans under its instrumentation scope as one `ScopeSpans`. Lengths are exact, so the
/// request can be written front to back into any buffer (tonic's, for gRPC).
#[derive(Debug)]
struct RequestLayout<'a> {
    resource: &'a [u8],
    groups: Vec<ScopeGroup<'a>>,
    /// Length of the `ResourceSpans` message.
    resource_spans_len: usize,
}

/// One `ScopeSpans` of a request.
#[derive(Debug)]
struct ScopeGroup<'a> {
    /// The `ScopeSpans.scope` field (key, length, `InstrumentationScope`).
    scope: Vec<u8>,
    /// The `ScopeSpans.spans` fields.
    spans: &'a [u8],
    schema_url: Option<&'a str>,
    /// Length of the `ScopeSpans` message.
    len: usize,
}

impl<'a> RequestLayout<'a> {
    fn new(resource: &'a [u8], runs: &'a [ScopeRun]) -> Self {
        let groups: Vec<ScopeGroup<'a>> = runs
            .iter()
            .filter(|run| run.spans > 0)
            .map(|run| {
                let scope = &run.scope;
                let mut scope_field = Vec::new();
                let at = begin(&mut scope_field, 1);
                put_bytes(&mut scope_field, 1, scope.name().as_bytes());
                if let Some(version) = scope.version() {
                    put_bytes(&mut scope_field, 2, version.as_bytes());
                }
                put_key_values(&mut scope_field, 3, scope.attributes());
                end(&mut scope_field, at);
                let schema_url = scope.schema_url();
                let len = scope_field.len()
                    + run.bytes.len()
                    + schema_url.map_or(0, |url| field_len(url.len()));
                ScopeGroup {
                    scope: scope_field,
                    spans: &run.bytes,
                    schema_url,
                    len,
                }
            })
            .collect();
        let resource_spans_len =
            resource.len() + groups.iter().map(|g| field_len(g.len)).sum::<usize>();
        Self {
            resource,
            groups,
            resource_spans_len,
        }
    }

    /// The encoded length of the request.
    fn len(&self) -> usize {
        field_len(self.resource_spans_len)
    }

    fn write(&self, dst: &mut impl BufMut) {
        dst.put_u8(tag(1, LEN));
        put_varint(dst, self.resource_spans_len as u64);
        dst.put_slice(self.resource);
        for group in &self.groups {
            dst.put_u8(tag(2, LEN));
            put_varint(dst, group.len as u64);
            dst.put_slice(&group.scope);
            dst.put_slice(group.spans);
            if let Some(url) = group.schema_url {
                dst.put_u8(tag(3, LEN));
                put_varint(dst, url.len() as u64);
                dst.put_slice(url.as_bytes());
            }
        }
    }
}

/// The length of a length-delimited field with a one-byte key and a `len`-byte body.
pub(crate) fn field_len(len: usize) -> usize {
    1 + varint_len(len) + len
}

/// The one-byte key of a field below 16.
const fn tag(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

pub(crate) fn put_varint(dst: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        dst.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

/// A batch of queued spans on its way out. Dropping it (once its request is written, or
/// abandoned) hands the runs' buffers back to the queue for reuse.
#[derive(Debug)]
pub(crate) struct SpanBatch {
    runs: Vec<ScopeRun>,
    queue: Arc<crate::export::SpanQueue>,
}

impl SpanBatch {
    pub(crate) fn new(runs: Vec<ScopeRun>, queue: Arc<crate::export::SpanQueue>) -> Self {
        Self { runs, queue }
    }
}

impl Drop for SpanBatch {
    fn drop(&mut self) {
        for run in self.runs.drain(..) {
            self.queue.recycle(run.bytes);
        }
    }
}

/// The length of the first `n` fields of `bytes` (all of it if it holds fewer): where a
/// run of queued spans is split.
pub(crate) fn fields_len(bytes: &[u8], n: usize) -> usize {
    let mut pos = 0;
    for _ in 0..n {
        match next_field(bytes, pos) {
            Some((.., next)) => pos = next.min(bytes.len()),
            None => return bytes.len(),
        }
    }
    pos
}

/// The field at `pos`: (field number, wire type, start of its body, end of the field).
pub(crate) fn next_field(buf: &[u8], pos: usize) -> Option<(u64, u64, usize, usize)> {
    let (tag, pos) = read_varint(buf, pos)?;
    let (field, wire) = (tag >> 3, tag & 7);
    match wire {
        0 => {
            let (_, next) = read_varint(buf, pos)?;
            Some((field, wire, pos, next))
        }
        1 => Some((field, wire, pos, pos + 8)),
        2 => {
            let (len, body) = read_varint(buf, pos)?;
            Some((field, wire, body, body + len as usize))
        }
        5 => Some((field, wire, pos, pos + 4)),
        _ => None,
    }
}

fn read_varint(buf: &[u8], mut pos: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(pos)?;
        pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, pos));
        }
    }
    None
}

/// What the gRPC codec writes: the resource and a batch, straight into tonic's buffer.
#[derive(Debug)]
struct GrpcRequest {
    resource: Bytes,
    batch: SpanBatch,
}

/// Scope equality with a fast path for the usual case: the same static strings.
pub(crate) fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    let same_str = |x: &str, y: &str| std::ptr::eq(x, y) || x == y;
    same_str(a.name(), b.name())
        && match (a.version(), b.version()) {
            (Some(x), Some(y)) => same_str(x, y),
            (None, None) => true,
            _ => false,
        }
        && a.schema_url() == b.schema_url()
        && a.attributes().eq(b.attributes())
}

/// Starts a nested message: its key and a four-byte length placeholder; returns where the
/// placeholder is, for [`end`].
pub(crate) fn begin(buf: &mut Vec<u8>, field: u8) -> usize {
    key(buf, field, LEN);
    let at = buf.len();
    buf.extend_from_slice(&[0x80, 0x80, 0x80, 0x00]);
    at
}

/// Ends the nested message begun at `at`: patches its length.
pub(crate) fn end(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at - 4).min(MAX_NESTED_LEN);
    buf[at] = (len & 0x7f) as u8 | 0x80;
    buf[at + 1] = ((len >> 7) & 0x7f) as u8 | 0x80;
    buf[at + 2] = ((len >> 14) & 0x7f) as u8 | 0x80;
    buf[at + 3] = ((len >> 21) & 0x7f) as u8;
}

pub(crate) fn put_bytes(buf: &mut Vec<u8>, field: u8, value: &[u8]) {
    key(buf, field, LEN);
    varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

pub(crate) fn put_uint(buf: &mut Vec<u8>, field: u8, value: u64) {
    if value != 0 {
        key(buf, field, VARINT);
        varint(buf, value);
    }
}

pub(crate) fn put_fixed64(buf: &mut Vec<u8>, field: u8, value: u64) {
    key(buf, field, FIXED64);
    buf.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_fixed32(buf: &mut Vec<u8>, field: u8, value: u32) {
    key(buf, field, FIXED32);
    buf.extend_from_slice(&value.to_le_bytes());
}

/// `KeyValue { key = 1; value = 2 }` for each attribute, with exact lengths.
pub(crate) fn put_key_values<'a>(
    buf: &mut Vec<u8>,
    field: u8,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
) {
    for kv in attributes {
        let name = kv.key.as_str();
        // Strings are most attributes: one look at the value instead of three.
        let (value_len, text) = match &kv.value {
            Value::String(s) => {
                let text = s.as_str();
                (field_len(text.len()), Some(text))
            }
            other => (any_value_len(other), None),
        };
        let len = field_len(name.len()) + field_len(value_len);
        key(buf, field, LEN);
        varint(buf, len as u64);
        put_bytes(buf, 1, name.as_bytes());
        key(buf, 2, LEN);
        varint(buf, value_len as u64);
        match text {
            Some(text) => put_bytes(buf, 1, text.as_bytes()),
            None => put_any_value_body(buf, &kv.value),
        }
    }
}

/// The fields of an `AnyValue` (without its own key and length).
pub(crate) fn put_any_value_body(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => put_bytes(buf, 1, s.as_str().as_bytes()),
        Value::Bool(b) => {
            key(buf, 2, VARINT);
            buf.push(u8::from(*b));
        }
        Value::I64(i) => {
            key(buf, 3, VARINT);
            varint(buf, *i as u64);
        }
        Value::F64(f) => put_fixed64(buf, 4, f.to_bits()),
        Value::Array(array) => {
            let items = array_items(array);
            let body: usize = items
                .iter()
                .map(|v| 1 + varint_len(any_value_len(v)) + any_value_len(v))
                .sum();
            key(buf, 5, LEN);
            varint(buf, body as u64);
            for item in &items {
                key(buf, 1, LEN);
                varint(buf, any_value_len(item) as u64);
                put_any_value_body(buf, item);
            }
        }
        other => put_bytes(buf, 1, other.as_str().as_bytes()),
    }
}

/// Encoded length of an `AnyValue`'s fields.
pub(crate) fn any_value_len(value: &Value) -> usize {
    match value {
        Value::String(s) => 1 + varint_len(s.as_str().len()) + s.as_str().len(),
        Value::Bool(_) => 2,
        Value::I64(i) => 1 + varint_len_u64(*i as u64),
        Value::F64(_) => 9,
        Value::Array(array) => {
            let body: usize = array_items(array)
                .iter()
                .map(|v| 1 + varint_len(any_value_len(v)) + any_value_len(v))
                .sum();
            1 + varint_len(body) + body
        }
        other => {
            let text = other.as_str();
            1 + varint_len(text.len()) + text.len()
        }
    }
}

/// The items of an array attribute as values (arrays are rare; this allocates).
fn array_items(array: &Array) -> Vec<Value> {
    match array {
        Array::Bool(items) => items.iter().map(|v| Value::Bool(*v)).collect(),
        Array::I64(items) => items.iter().map(|v| Value::I64(*v)).collect(),
        Array::F64(items) => items.iter().map(|v| Value::F64(*v)).collect(),
        Array::String(items) => items.iter().map(|v| Value::String(v.clone())).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn varint_len(value: usize) -> usize {
    varint_len_u64(value as u64)
}

pub(crate) fn varint_len_u64(value: u64) -> usize {
    // One byte per started group of 7 bits; zero still takes one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Trace flags plus the "has is_remote" and "is_remote" bits of the OTLP span flags.
pub(crate) fn span_flags(trace_flags: u8, remote: bool) -> u32 {
    u32::from(trace_flags) | 0x100 | if remote { 0x200 } else { 0 }
}

pub(crate) fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

/// A field's key: one byte for fields below 16 (all but `Span.flags`).
pub(crate) fn key(buf: &mut Vec<u8>, field: u8, wire_type: u8) {
    let tag = (u64::from(field) << 3) | u64::from(wire_type);
    if tag < 0x80 {
        buf.push(tag as u8);
    } else {
        varint(buf, tag);
    }
}

pub(crate) fn varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Where and how requests go.
#[derive(Debug)]
enum Transport {
    Http {
        client: reqwest::Client,
        url: String,
        headers: reqwest::header::HeaderMap,
    },
    Grpc {
        client: tonic::client::Grpc<tonic::transport::Channel>,
        metadata: tonic::metadata::MetadataMap,
    },
}

/// The span exporter used by [`crate::export::BatchSpanProcessor`]: sends requests
/// assembled from spans encoded when they ended.
#[derive(Debug)]
pub(crate) struct OtlpSpanExporter {
    transport: Transport,
    compression: Compression,
    timeout: Duration,
    /// The encoded `ResourceSpans.resource` field.
    resource: Bytes,
}

impl OtlpSpanExporter {
    /// Builds the exporter; must run inside the export runtime (gRPC spawns its worker).
    pub(crate) fn new(config: &OtlpConfig) -> Result<Self, String> {
        let transport = match config.protocol {
            Protocol::HttpProtobuf => {
                let mut headers = reqwest::header::HeaderMap::new();
                for (name, value) in &config.headers {
                    let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| e.to_string())?;
                    let value =
                        reqwest::header::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
                    headers.insert(name, value);
                }
                Transport::Http {
                    client: reqwest::Client::builder()
                        .timeout(config.timeout)
                        .build()
                        .map_err(|e| e.to_string())?,
                    url: config.endpoint.clone(),
                    headers,
                }
            }
            Protocol::Grpc => {
                let endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
                    .map_err(|e| e.to_string())?
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout);
                let mut client = tonic::client::Grpc::new(endpoint.connect_lazy());
                if config.compression == Compression::Gzip {
                    client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (name, value) in &config.headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
                        .map_err(|e| e.to_string())?;
                    let value = value
                        .parse()
                        .map_err(|_| format!("invalid header value for {name}"))?;
                    metadata.insert(key, value);
                }
                Transport::Grpc { client, metadata }
            }
        };
        Ok(Self {
            transport,
            compression: config.compression,
            timeout: config.timeout,
            resource: Bytes::from(encode_resource(&Resource::builder_empty().build())),
        })
    }

    /// Sets the resource every request carries.
    pub(crate) fn set_resource(&mut self, resource: &Resource) {
        self.resource = Bytes::from(encode_resource(resource));
    }

    /// Exports one batch of encoded spans.
    pub(crate) async fn export(&self, batch: SpanBatch) -> OTelSdkResult {
        match &self.transport {
            Transport::Http {
                client,
                url,
                headers,
            } => {
                let body = encode_request(&self.resource, &batch.runs);
                drop(batch);
                let (body, gzip) = match self.compression {
                    Compression::Gzip => (gzip(&body)?, true),
                    Compression::None => (body, false),
                };
                let mut request = client
                    .post(url)
                    .headers(headers.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
                if gzip {
                    request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
                }
                let response = request.body(body).send().await.map_err(|e| {
                    OTelSdkError::InternalFailure(format!("OTLP/HTTP export failed: {e}"))
                })?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(OTelSdkError::InternalFailure(format!(
                        "OTLP/HTTP export to {url} answered {status}"
                    )))
                }
            }
            Transport::Grpc { client, metadata } => {
                let mut client = client.clone();
                client.ready().await.map_err(|e| {
                    OTelSdkError::InternalFailure(format!("OTLP/gRPC export failed: {e}"))
                })?;
                // Encoded by the codec into tonic's own buffer: no intermediate copy.
                let mut request = tonic::Request::new(GrpcRequest {
                    resource: self.resource.clone(),
                    batch,
                });
                *request.metadata_mut() = metadata.clone();
                request.set_timeout(self.timeout);
                client
                    .unary::<GrpcRequest, (), RawCodec>(
                        request,
                        http::uri::PathAndQuery::from_static(
                            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                        ),
                        RawCodec,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|status| {
                        OTelSdkError::InternalFailure(format!(
                            "OTLP/gRPC export failed with {:?}: {}",
                            status.code(),
                            status.message()
                        ))
                    })
            }
        }
    }
}

fn gzip(body: &[u8]) -> Result<Vec<u8>, OTelSdkError> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map_err(|e| OTelSdkError::InternalFailure(format!("gzip failed: {e}")))
}

/// A tonic codec that writes a [`GrpcRequest`] from its pre-encoded parts and ignores the
/// response body (an `ExportTraceServiceResponse`, whose partial-success details are
/// optional).
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = GrpcRequest;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = GrpcRequest;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: GrpcRequest,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        let request = RequestLayout::new(&item.resource, &item.batch.runs);
        dst.reserve(request.len());
        request.write(dst);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RawDecoder;

impl tonic::codec::Decoder for RawDecoder {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn varint_lengths_match_the_encoding() {
        for value in [
            0_u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            super::varint(&mut buf, value);
            assert_eq!(super::varint_len_u64(value), buf.len(), "{value}");
        }
    }

    use std::borrow::Cow;

    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;

    use super::*;

    fn span(name: &'static str, scope: &InstrumentationScope) -> SpanData {
        let mut events = SpanEvents::default();
        events.events.push(opentelemetry::trace::Event::new(
            "exception",
            UNIX_EPOCH + Duration::from_secs(2),
            vec![KeyValue::new("exception.message", "boom")],
            0,
        ));
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                TraceFlags::SAMPLED,
                false,
                TraceState::from_key_value([("vendor", "v1")]).unwrap(),
            ),
            parent_span_id: SpanId::from_hex("0102030405060708").unwrap(),
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed(name),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_000_000_123),
            end_time: UNIX_EPOCH + Duration::from_nanos(3_000_000_456),
            attributes: vec![
                KeyValue::new("http.route", "/items/{id}"),
                KeyValue::new("http.response.status_code", 503_i64),
                KeyValue::new("ratio", 0.5),
                KeyValue::new("cached", true),
                KeyValue::new(
                    "http.request.header.accept",
                    Value::Array(Array::String(vec!["a".into(), "b".into()])),
                ),
            ],
            dropped_attributes_count: 2,
            events,
            links: SpanLinks::default(),
            status: Status::error("unavailable"),
            instrumentation_scope: scope.clone(),
        }
    }

    #[test]
    fn encoding_decodes_with_the_official_proto_types() {
        let scope_a = InstrumentationScope::builder("a")
            .with_version("1.0")
            .build();
        let scope_b = InstrumentationScope::builder("b")
            .with_attributes([KeyValue::new("scope.kind", "test")])
            .build();
        let spans = vec![
            span("one", &scope_a),
            span("two", &scope_a),
            span("three", &scope_b),
        ];
        let resource = Resource::builder_empty()
            .with_attributes([KeyValue::new("service.name", "svc")])
            .build();
        let bytes = request(&resource, spans);
        let request = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();

        assert_eq!(request.resource_spans.len(), 1);
        let rs = &request.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        assert_eq!(rs.scope_spans.len(), 2);
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "a");
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().version, "1.0");
        assert_eq!(rs.scope_spans[0].spans.len(), 2);
        assert_eq!(rs.scope_spans[1].spans[0].name, "three");
        let scope_b = rs.scope_spans[1].scope.as_ref().unwrap();
        assert_eq!(scope_b.attributes[0].key, "scope.kind");

        let s = &rs.scope_spans[0].spans[0];
        assert_eq!(hex(&s.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&s.span_id), "00f067aa0ba902b7");
        assert_eq!(hex(&s.parent_span_id), "0102030405060708");
        assert_eq!(s.trace_state, "vendor=v1");
        assert_eq!(s.name, "one");
        assert_eq!(s.kind, 2);
        assert_eq!(s.start_time_unix_nano, 1_000_000_123);
        assert_eq!(s.end_time_unix_nano, 3_000_000_456);
        assert_eq!(s.dropped_attributes_count, 2);
        assert_eq!(s.flags, 0x1 | 0x100 | 0x200);
        let attr = |k: &str| {
            s.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(
            attr("http.route"),
            Some(any_value::Value::StringValue("/items/{id}".into()))
        );
        assert_eq!(
            attr("http.response.status_code"),
            Some(any_value::Value::IntValue(503))
        );
        assert_eq!(attr("ratio"), Some(any_value::Value::DoubleValue(0.5)));
        assert_eq!(attr("cached"), Some(any_value::Value::BoolValue(true)));
        match attr("http.request.header.accept") {
            Some(any_value::Value::ArrayValue(array)) => assert_eq!(array.values.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.events[0].name, "exception");
        assert_eq!(s.events[0].time_unix_nano, 2_000_000_000);
        let status = s.status.as_ref().unwrap();
        assert_eq!(status.code, 2);
        assert_eq!(status.message, "unavailable");
    }

    #[test]
    fn every_status_and_kind_decodes() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;

        let context = SpanContext::new(
            TraceId::from(1_u128),
            SpanId::from(2_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cases = [
            (Status::Unset, SpanKind::Internal, None, 1),
            (Status::Ok, SpanKind::Producer, Some((1, "")), 4),
            (Status::error(""), SpanKind::Consumer, Some((2, "")), 5),
            (
                Status::error("boom"),
                SpanKind::Client,
                Some((2, "boom")),
                3,
            ),
        ];
        for (status, kind, expected, kind_number) in cases {
            let mut buf = Vec::new();
            put_span_header(
                &mut buf,
                &SpanHeader {
                    context: &context,
                    parent_span_id: SpanId::INVALID,
                    parent_is_remote: true,
                    name: "n",
                    kind: &kind,
                    start_time: UNIX_EPOCH + Duration::from_nanos(5),
                    end_time: UNIX_EPOCH + Duration::from_nanos(9),
                    status: &status,
                    dropped_attributes: 0,
                    dropped_events: 3,
                    dropped_links: 300,
                },
            );
            let span = ProtoSpan::decode(buf.as_slice()).unwrap();
            assert_eq!(
                span.status.map(|s| (s.code, s.message)),
                expected.map(|(code, message)| (code, message.to_owned())),
                "{status:?}"
            );
            assert_eq!(span.kind, kind_number);
            assert!(span.parent_span_id.is_empty());
            assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (5, 9));
            assert_eq!(
                (span.dropped_events_count, span.dropped_links_count),
                (3, 300)
            );
            assert_eq!(span.flags, 0x1 | 0x100 | 0x200);
        }
    }

    #[test]
    fn negative_integers_use_ten_byte_varints() {
        let mut s = span("neg", &InstrumentationScope::builder("a").build());
        s.attributes = vec![KeyValue::new("n", -5_i64)];
        let bytes = request(&Resource::builder_empty().build(), vec![s]);
        let request = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let value = request.resource_spans[0].scope_spans[0].spans[0].attributes[0]
            .value
            .clone()
            .unwrap()
            .value;
        assert_eq!(value, Some(any_value::Value::IntValue(-5)));
    }

    /// A request as the batch span processor makes one: spans encoded one by one (into
    /// reused buffers), then assembled.
    /// A request made the way the exporter makes it: each span encoded, queued, and
    /// taken from the queue as one batch.
    fn request(resource: &Resource, spans: Vec<SpanData>) -> Vec<u8> {
        let queue = crate::export::SpanQueue::new(spans.len(), spans.len());
        let mut buf = vec![0xff; 7];
        for span in &spans {
            buf.clear();
            encode_span(&mut buf, span);
            assert!(queue.push(&span.instrumentation_scope, &buf).is_some());
        }
        encode_request(&encode_resource(resource), &queue.take(spans.len()))
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
