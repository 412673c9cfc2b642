//! Conversion from decoded OTLP protobuf messages to the flattened [`crate::model`]
//! types, and item counting for requests that are not retained.

use std::fmt::Write as _;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, NumberDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status};

use crate::model::{
    AttrValue, Attributes, DataPoint, MetricKind, PointValue, ReceivedEvent, ReceivedLink,
    ReceivedLog, ReceivedMetric, ReceivedSpan, SpanKind, SpanStatus, StatusCode, Temporality,
    Transport,
};

/// Where the items of one request came from, copied onto each of them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub(crate) transport: Transport,
    pub(crate) compressed: bool,
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Lowercase hex of an id, `None` when the id is absent (empty).
fn optional_id(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty()).then(|| hex(bytes))
}

pub(crate) fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|resource_spans| &resource_spans.scope_spans)
        .map(|scope_spans| scope_spans.spans.len())
        .sum()
}

pub(crate) fn log_count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|resource_logs| &resource_logs.scope_logs)
        .map(|scope_logs| scope_logs.log_records.len())
        .sum()
}

pub(crate) fn metric_count(request: &ExportMetricsServiceRequest) -> usize {
    request
        .resource_metrics
        .iter()
        .flat_map(|resource_metrics| &resource_metrics.scope_metrics)
        .map(|scope_metrics| scope_metrics.metrics.len())
        .sum()
}

pub(crate) fn spans(request: ExportTraceServiceRequest, origin: Origin) -> Vec<ReceivedSpan> {
    let mut out = Vec::with_capacity(span_count(&request));
    for resource_spans in request.resource_spans {
        let resource = resource_attributes(resource_spans.resource);
        for scope_spans in resource_spans.scope_spans {
            let (scope_name, scope_version) = scope_names(scope_spans.scope);
            for span in scope_spans.spans {
                out.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: optional_id(&span.parent_span_id),
                    trace_state: span.trace_state,
                    name: span.name,
                    kind: span_kind(span.kind),
                    start_time_unix_nano: span.start_time_unix_nano,
                    end_time_unix_nano: span.end_time_unix_nano,
                    attributes: attributes(span.attributes),
                    events: span.events.into_iter().map(event).collect(),
                    links: span.links.into_iter().map(link).collect(),
                    status: span_status(span.status),
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    transport: origin.transport,
                    compressed: origin.compressed,
                });
            }
        }
    }
    out
}

pub(crate) fn logs(request: ExportLogsServiceRequest, origin: Origin) -> Vec<ReceivedLog> {
    let mut out = Vec::with_capacity(log_count(&request));
    for resource_logs in request.resource_logs {
        let resource = resource_attributes(resource_logs.resource);
        for scope_logs in resource_logs.scope_logs {
            let (scope_name, _) = scope_names(scope_logs.scope);
            for record in scope_logs.log_records {
                out.push(ReceivedLog {
                    body: record
                        .body
                        .map(value)
                        .map(|body| body.to_string())
                        .unwrap_or_default(),
                    severity_text: record.severity_text,
                    severity_number: record.severity_number,
                    event_name: record.event_name,
                    trace_id: optional_id(&record.trace_id),
                    span_id: optional_id(&record.span_id),
                    time_unix_nano: record.time_unix_nano,
                    observed_time_unix_nano: record.observed_time_unix_nano,
                    attributes: attributes(record.attributes),
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    transport: origin.transport,
                    compressed: origin.compressed,
                });
            }
        }
    }
    out
}

pub(crate) fn metrics(request: ExportMetricsServiceRequest, origin: Origin) -> Vec<ReceivedMetric> {
    let mut out = Vec::with_capacity(metric_count(&request));
    for resource_metrics in request.resource_metrics {
        let resource = resource_attributes(resource_metrics.resource);
        for scope_metrics in resource_metrics.scope_metrics {
            let (scope_name, _) = scope_names(scope_metrics.scope);
            for proto in scope_metrics.metrics {
                let shape = metric_data(proto.data);
                out.push(ReceivedMetric {
                    name: proto.name,
                    description: proto.description,
                    unit: proto.unit,
                    kind: shape.kind,
                    is_monotonic: shape.is_monotonic,
                    temporality: shape.temporality,
                    data_points: shape.data_points,
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    transport: origin.transport,
                    compressed: origin.compressed,
                });
            }
        }
    }
    out
}

/// The kind-dependent part of a metric.
struct MetricShape {
    kind: MetricKind,
    is_monotonic: bool,
    temporality: Temporality,
    data_points: Vec<DataPoint>,
}

fn metric_data(data: Option<metric::Data>) -> MetricShape {
    let (kind, is_monotonic, temporality_code, data_points) = match data {
        None => (MetricKind::Empty, false, 0, Vec::new()),
        Some(metric::Data::Gauge(gauge)) => (
            MetricKind::Gauge,
            false,
            0,
            gauge.data_points.into_iter().map(number_point).collect(),
        ),
        Some(metric::Data::Sum(sum)) => (
            MetricKind::Sum,
            sum.is_monotonic,
            sum.aggregation_temporality,
            sum.data_points.into_iter().map(number_point).collect(),
        ),
        Some(metric::Data::Histogram(histogram)) => (
            MetricKind::Histogram,
            false,
            histogram.aggregation_temporality,
            histogram
                .data_points
                .into_iter()
                .map(|point| DataPoint {
                    attributes: attributes(point.attributes),
                    start_time_unix_nano: point.start_time_unix_nano,
                    time_unix_nano: point.time_unix_nano,
                    value: PointValue::Histogram {
                        count: point.count,
                        sum: point.sum,
                        bucket_counts: point.bucket_counts,
                        explicit_bounds: point.explicit_bounds,
                        min: point.min,
                        max: point.max,
                    },
                })
                .collect(),
        ),
        Some(metric::Data::ExponentialHistogram(histogram)) => (
            MetricKind::ExponentialHistogram,
            false,
            histogram.aggregation_temporality,
            histogram
                .data_points
                .into_iter()
                .map(|point| DataPoint {
                    attributes: attributes(point.attributes),
                    start_time_unix_nano: point.start_time_unix_nano,
                    time_unix_nano: point.time_unix_nano,
                    value: PointValue::ExponentialHistogram {
                        count: point.count,
                        sum: point.sum,
                        scale: point.scale,
                        zero_count: point.zero_count,
                    },
                })
                .collect(),
        ),
        Some(metric::Data::Summary(summary)) => (
            MetricKind::Summary,
            false,
            0,
            summary
                .data_points
                .into_iter()
                .map(|point| DataPoint {
                    attributes: attributes(point.attributes),
                    start_time_unix_nano: point.start_time_unix_nano,
                    time_unix_nano: point.time_unix_nano,
                    value: PointValue::Summary {
                        count: point.count,
                        sum: point.sum,
                        quantiles: point
                            .quantile_values
                            .into_iter()
                            .map(|quantile| (quantile.quantile, quantile.value))
                            .collect(),
                    },
                })
                .collect(),
        ),
    };
    MetricShape {
        kind,
        is_monotonic,
        temporality: temporality(temporality_code),
        data_points,
    }
}

fn number_point(point: NumberDataPoint) -> DataPoint {
    DataPoint {
        attributes: attributes(point.attributes),
        start_time_unix_nano: point.start_time_unix_nano,
        time_unix_nano: point.time_unix_nano,
        value: match point.value {
            Some(number_data_point::Value::AsInt(value)) => PointValue::Int(value),
            Some(number_data_point::Value::AsDouble(value)) => PointValue::Double(value),
            None => PointValue::Empty,
        },
    }
}

fn temporality(code: i32) -> Temporality {
    match AggregationTemporality::try_from(code) {
        Ok(AggregationTemporality::Delta) => Temporality::Delta,
        Ok(AggregationTemporality::Cumulative) => Temporality::Cumulative,
        Ok(AggregationTemporality::Unspecified) | Err(_) => Temporality::Unspecified,
    }
}

fn span_kind(code: i32) -> SpanKind {
    match span::SpanKind::try_from(code) {
        Ok(span::SpanKind::Internal) => SpanKind::Internal,
        Ok(span::SpanKind::Server) => SpanKind::Server,
        Ok(span::SpanKind::Client) => SpanKind::Client,
        Ok(span::SpanKind::Producer) => SpanKind::Producer,
        Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
        Ok(span::SpanKind::Unspecified) | Err(_) => SpanKind::Unspecified,
    }
}

fn span_status(proto: Option<opentelemetry_proto::tonic::trace::v1::Status>) -> SpanStatus {
    let Some(proto) = proto else {
        return SpanStatus {
            code: StatusCode::Unset,
            message: String::new(),
        };
    };
    let code = match status::StatusCode::try_from(proto.code) {
        Ok(status::StatusCode::Ok) => StatusCode::Ok,
        Ok(status::StatusCode::Error) => StatusCode::Error,
        Ok(status::StatusCode::Unset) | Err(_) => StatusCode::Unset,
    };
    SpanStatus {
        code,
        message: proto.message,
    }
}

fn event(proto: span::Event) -> ReceivedEvent {
    ReceivedEvent {
        name: proto.name,
        time_unix_nano: proto.time_unix_nano,
        attributes: attributes(proto.attributes),
    }
}

fn link(proto: span::Link) -> ReceivedLink {
    ReceivedLink {
        trace_id: hex(&proto.trace_id),
        span_id: hex(&proto.span_id),
        attributes: attributes(proto.attributes),
    }
}

fn resource_attributes(resource: Option<Resource>) -> Attributes {
    resource
        .map(|resource| attributes(resource.attributes))
        .unwrap_or_default()
}

fn scope_names(scope: Option<InstrumentationScope>) -> (String, String) {
    scope
        .map(|scope| (scope.name, scope.version))
        .unwrap_or_default()
}

fn attributes(key_values: Vec<KeyValue>) -> Attributes {
    key_values
        .into_iter()
        .map(|key_value| {
            let value = key_value.value.map(value).unwrap_or(AttrValue::Empty);
            (key_value.key, value)
        })
        .collect()
}

fn value(proto: AnyValue) -> AttrValue {
    match proto.value {
        Some(any_value::Value::StringValue(value)) => AttrValue::Str(value),
        Some(any_value::Value::BoolValue(value)) => AttrValue::Bool(value),
        Some(any_value::Value::IntValue(value)) => AttrValue::Int(value),
        Some(any_value::Value::DoubleValue(value)) => AttrValue::Double(value),
        Some(any_value::Value::BytesValue(value)) => AttrValue::Bytes(value),
        Some(any_value::Value::ArrayValue(array)) => {
            AttrValue::Array(array.values.into_iter().map(value).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => AttrValue::Map(attributes(list.values)),
        // String-table references only occur in profiles, which this sink does not receive.
        Some(any_value::Value::StringValueStrindex(_)) | None => AttrValue::Empty,
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value};

    use crate::convert::{hex, optional_id, value};
    use crate::model::AttrValue;

    #[test]
    fn hex_is_lowercase_and_zero_padded() {
        assert_eq!(hex(&[0x00, 0x0a, 0xff]), "000aff");
    }

    #[test]
    fn empty_id_is_none() {
        assert_eq!(optional_id(&[]), None);
        assert_eq!(optional_id(&[1]), Some("01".to_owned()));
    }

    #[test]
    fn nested_values_are_flattened() {
        let proto = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(any_value::Value::IntValue(1)),
                    },
                    AnyValue {
                        value: Some(any_value::Value::StringValue("a".to_owned())),
                    },
                ],
            })),
        };
        let converted = value(proto);
        assert_eq!(
            converted,
            AttrValue::Array(vec![AttrValue::Int(1), AttrValue::from("a")])
        );
        assert_eq!(converted.to_string(), "[1, a]");
    }
}
