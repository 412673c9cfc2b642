//! Flattened, assertion-friendly views of what the sink received.
//!
//! OTLP nests items under resources and instrumentation scopes; these types copy the
//! resource and scope onto every item so a test can look at one span, log record or
//! metric without walking the tree.

use std::collections::BTreeMap;
use std::fmt;

/// Attributes keyed by name, sorted so that `Debug` output is stable.
pub type Attributes = BTreeMap<String, AttrValue>;

/// An OTLP `AnyValue`: the value of an attribute, a log body or an array element.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A UTF-8 string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Double(f64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A list of values.
    Array(Vec<AttrValue>),
    /// A nested key/value list.
    Map(Attributes),
    /// No value was set (also used for profile string-table references, which traces,
    /// metrics and logs never send).
    Empty,
}

/// Which OTLP signal an export request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `ExportTraceServiceRequest`.
    Traces,
    /// `ExportMetricsServiceRequest`.
    Metrics,
    /// `ExportLogsServiceRequest`.
    Logs,
}

/// How an export request reached the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with a protobuf body.
    Http,
}

/// One export request as the sink saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInfo {
    /// The signal of the request.
    pub signal: Signal,
    /// The transport it arrived on.
    pub transport: Transport,
    /// Whether the payload was gzip-compressed (`grpc-encoding: gzip` or
    /// `Content-Encoding: gzip`).
    pub compressed: bool,
    /// HTTP headers or gRPC metadata, names lowercase, in arrival order; non-UTF-8
    /// values are converted lossily.
    pub headers: Vec<(String, String)>,
    /// Spans, log records or metrics (not data points) in the request.
    pub items: usize,
    /// Whether the sink answered with success; `false` when the
    /// [`Behaviour`](crate::Behaviour) was `Unavailable`.
    pub accepted: bool,
}

/// The kind of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    /// `SPAN_KIND_UNSPECIFIED`, or a value this sink does not know.
    Unspecified,
    /// `SPAN_KIND_INTERNAL`.
    Internal,
    /// `SPAN_KIND_SERVER`.
    Server,
    /// `SPAN_KIND_CLIENT`.
    Client,
    /// `SPAN_KIND_PRODUCER`.
    Producer,
    /// `SPAN_KIND_CONSUMER`.
    Consumer,
}

/// The status code of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// `STATUS_CODE_UNSET`, or a value this sink does not know.
    Unset,
    /// `STATUS_CODE_OK`.
    Ok,
    /// `STATUS_CODE_ERROR`.
    Error,
}

/// The status of a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanStatus {
    /// The status code.
    pub code: StatusCode,
    /// The description; empty unless the code is `Error`.
    pub message: String,
}

/// A span event.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEvent {
    /// The event name (`exception` for recorded errors).
    pub name: String,
    /// When the event happened, in nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// The event attributes.
    pub attributes: Attributes,
}

/// A span link.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedLink {
    /// The linked trace id, lowercase hex.
    pub trace_id: String,
    /// The linked span id, lowercase hex.
    pub span_id: String,
    /// The link attributes.
    pub attributes: Attributes,
}

/// One received span with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The trace id, lowercase hex (32 characters for a valid id).
    pub trace_id: String,
    /// The span id, lowercase hex (16 characters for a valid id).
    pub span_id: String,
    /// The parent span id, lowercase hex; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// The W3C `tracestate`, empty when none.
    pub trace_state: String,
    /// The span name.
    pub name: String,
    /// The span kind.
    pub kind: SpanKind,
    /// Start time in nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End time in nanoseconds since the Unix epoch.
    pub end_time_unix_nano: u64,
    /// The span attributes.
    pub attributes: Attributes,
    /// The span events.
    pub events: Vec<ReceivedEvent>,
    /// The span links.
    pub links: Vec<ReceivedLink>,
    /// The span status.
    pub status: SpanStatus,
    /// The attributes of the resource the span was exported under.
    pub resource: Attributes,
    /// The instrumentation scope name.
    pub scope_name: String,
    /// The instrumentation scope version, empty when none.
    pub scope_version: String,
    /// The transport the span arrived on.
    pub transport: Transport,
    /// Whether the request carrying the span was gzip-compressed.
    pub compressed: bool,
}

/// One received log record with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedLog {
    /// The body rendered with [`AttrValue`]'s `Display` (a string body stays as is);
    /// empty when there is no body.
    pub body: String,
    /// The severity text, e.g. `INFO`.
    pub severity_text: String,
    /// The OTLP severity number (9 is `INFO`, 17 is `ERROR`).
    pub severity_number: i32,
    /// The event name, empty when none.
    pub event_name: String,
    /// The trace id of the active span, lowercase hex; `None` outside a span.
    pub trace_id: Option<String>,
    /// The span id of the active span, lowercase hex; `None` outside a span.
    pub span_id: Option<String>,
    /// When the event happened, in nanoseconds since the Unix epoch (0 when unknown).
    pub time_unix_nano: u64,
    /// When the event was observed, in nanoseconds since the Unix epoch.
    pub observed_time_unix_nano: u64,
    /// The log record attributes.
    pub attributes: Attributes,
    /// The attributes of the resource the record was exported under.
    pub resource: Attributes,
    /// The instrumentation scope name.
    pub scope_name: String,
    /// The transport the record arrived on.
    pub transport: Transport,
    /// Whether the request carrying the record was gzip-compressed.
    pub compressed: bool,
}

/// The type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A gauge.
    Gauge,
    /// A sum (a counter when monotonic, an up-down counter otherwise).
    Sum,
    /// An explicit-bucket histogram.
    Histogram,
    /// An exponential histogram.
    ExponentialHistogram,
    /// A summary.
    Summary,
    /// A metric without data.
    Empty,
}

/// The aggregation temporality of a sum or histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Temporality {
    /// Not set, or a value this sink does not know.
    Unspecified,
    /// Each point covers the time since the previous export.
    Delta,
    /// Each point covers the time since the start of the process.
    Cumulative,
}

/// The value of one metric data point.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    /// An integer gauge or sum value.
    Int(i64),
    /// A float gauge or sum value.
    Double(f64),
    /// An explicit-bucket histogram.
    Histogram {
        /// The number of recorded values.
        count: u64,
        /// The sum of recorded values, if sent.
        sum: Option<f64>,
        /// Per-bucket counts; one more than `explicit_bounds`.
        bucket_counts: Vec<u64>,
        /// Upper bucket bounds.
        explicit_bounds: Vec<f64>,
        /// The smallest recorded value, if sent.
        min: Option<f64>,
        /// The largest recorded value, if sent.
        max: Option<f64>,
    },
    /// An exponential histogram, summarised.
    ExponentialHistogram {
        /// The number of recorded values.
        count: u64,
        /// The sum of recorded values, if sent.
        sum: Option<f64>,
        /// The resolution of the buckets.
        scale: i32,
        /// The number of values in the zero bucket.
        zero_count: u64,
    },
    /// A summary.
    Summary {
        /// The number of recorded values.
        count: u64,
        /// The sum of recorded values.
        sum: f64,
        /// `(quantile, value)` pairs.
        quantiles: Vec<(f64, f64)>,
    },
    /// A number data point without a value.
    Empty,
}

/// One metric data point.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    /// The point attributes.
    pub attributes: Attributes,
    /// Start of the covered interval, in nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End of the covered interval, in nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// The value.
    pub value: PointValue,
}

/// One received metric with its data points, resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMetric {
    /// The metric name.
    pub name: String,
    /// The description.
    pub description: String,
    /// The unit, e.g. `s` or `By`.
    pub unit: String,
    /// The metric type.
    pub kind: MetricKind,
    /// Whether a sum is monotonic; `false` for other kinds.
    pub is_monotonic: bool,
    /// The temporality of a sum or histogram; `Unspecified` for other kinds.
    pub temporality: Temporality,
    /// The data points.
    pub data_points: Vec<DataPoint>,
    /// The attributes of the resource the metric was exported under.
    pub resource: Attributes,
    /// The instrumentation scope name.
    pub scope_name: String,
    /// The transport the metric arrived on.
    pub transport: Transport,
    /// Whether the request carrying the metric was gzip-compressed.
    pub compressed: bool,
}

/// How many items the sink accepted, kept whatever the
/// [`Retention`](crate::Retention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Accepted spans.
    pub spans: u64,
    /// Accepted log records.
    pub logs: u64,
    /// Accepted metrics (not data points).
    pub metrics: u64,
    /// Export requests received, accepted or not.
    pub requests: u64,
    /// Export requests answered with an error because of the behaviour.
    pub rejected_requests: u64,
}

impl AttrValue {
    /// The string, if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(value) => Some(value),
            _ => None,
        }
    }

    /// The integer, if this is an `Int`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(value) => Some(*value),
            _ => None,
        }
    }

    /// The number, if this is a `Double` or an `Int`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Double(value) => Some(*value),
            // Precision loss above 2^53 is acceptable for assertions.
            Self::Int(value) => Some(*value as f64),
            _ => None,
        }
    }

    /// The boolean, if this is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(value) => Some(*value),
            _ => None,
        }
    }
}

impl fmt::Display for AttrValue {
    /// Strings print without quotes, bytes as lowercase hex, arrays as `[a, b]` and
    /// maps as `{k: v}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(value) => f.write_str(value),
            Self::Bool(value) => write!(f, "{value}"),
            Self::Int(value) => write!(f, "{value}"),
            Self::Double(value) => write!(f, "{value}"),
            Self::Bytes(value) => f.write_str(&crate::convert::hex(value)),
            Self::Array(values) => {
                f.write_str("[")?;
                for (index, value) in values.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{value}")?;
                }
                f.write_str("]")
            }
            Self::Map(entries) => {
                f.write_str("{")?;
                for (index, (key, value)) in entries.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key}: {value}")?;
                }
                f.write_str("}")
            }
            Self::Empty => Ok(()),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(value: &str) -> Self {
        Self::Str(value.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(value: String) -> Self {
        Self::Str(value)
    }
}

impl From<bool> for AttrValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<i64> for AttrValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<f64> for AttrValue {
    fn from(value: f64) -> Self {
        Self::Double(value)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        })
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        })
    }
}

impl RequestInfo {
    /// The first value of a header or metadata entry, matching the name
    /// case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl ReceivedSpan {
    /// A span attribute.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    /// A span attribute, if it is a string.
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    /// A span attribute, if it is an integer.
    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.attr(key).and_then(AttrValue::as_i64)
    }

    /// A resource attribute, if it is a string.
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource.get(key).and_then(AttrValue::as_str)
    }

    /// The `service.name` resource attribute.
    pub fn service_name(&self) -> Option<&str> {
        self.resource_str("service.name")
    }

    /// The first event with this name.
    pub fn event(&self, name: &str) -> Option<&ReceivedEvent> {
        self.events.iter().find(|event| event.name == name)
    }

    /// End minus start, in nanoseconds; 0 when the end precedes the start.
    pub fn duration_nanos(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }
}

impl ReceivedLog {
    /// A log record attribute.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    /// A log record attribute, if it is a string.
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    /// A resource attribute, if it is a string.
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource.get(key).and_then(AttrValue::as_str)
    }
}

impl ReceivedMetric {
    /// A resource attribute, if it is a string.
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource.get(key).and_then(AttrValue::as_str)
    }

    /// The first data point whose attributes include every `(key, string value)` pair.
    pub fn point_with(&self, attributes: &[(&str, &str)]) -> Option<&DataPoint> {
        self.data_points.iter().find(|point| {
            attributes
                .iter()
                .all(|(key, value)| point.str_attr(key) == Some(value))
        })
    }
}

impl DataPoint {
    /// A data point attribute.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    /// A data point attribute, if it is a string.
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    /// The value of a gauge or sum point as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self.value {
            PointValue::Double(value) => Some(value),
            // Precision loss above 2^53 is acceptable for assertions.
            PointValue::Int(value) => Some(value as f64),
            _ => None,
        }
    }

    /// The number of recorded values of a histogram, exponential histogram or summary.
    pub fn count(&self) -> Option<u64> {
        match self.value {
            PointValue::Histogram { count, .. }
            | PointValue::ExponentialHistogram { count, .. }
            | PointValue::Summary { count, .. } => Some(count),
            _ => None,
        }
    }
}
