//! Sample OTLP requests and clients shared by the tests.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

pub(crate) const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
pub(crate) const TRACE_ID_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub(crate) const ROOT_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
pub(crate) const ROOT_ID_HEX: &str = "00f067aa0ba902b7";
pub(crate) const CHILD_ID: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
pub(crate) const CHILD_ID_HEX: &str = "0102030405060708";

/// How long tests wait for something that should happen at once.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

pub(crate) fn string(key: &str, value: &str) -> KeyValue {
    key_value(key, any_value::Value::StringValue(value.to_owned()))
}

pub(crate) fn int(key: &str, value: i64) -> KeyValue {
    key_value(key, any_value::Value::IntValue(value))
}

fn key_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            string("service.name", "checkout"),
            string("service.version", "1.2.3"),
        ],
        ..Resource::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "pathlight-test".to_owned(),
        version: "0.1.0".to_owned(),
        ..InstrumentationScope::default()
    })
}

/// A server root span with an error status, an event and a link, and an internal child.
pub(crate) fn trace_request() -> ExportTraceServiceRequest {
    let root = Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: ROOT_ID.to_vec(),
        name: "GET /orders/{id}".to_owned(),
        kind: span::SpanKind::Server.into(),
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 5_000,
        attributes: vec![
            string("http.route", "/orders/{id}"),
            int("http.response.status_code", 500),
            key_value(
                "tags",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(any_value::Value::StringValue("a".to_owned())),
                        },
                        AnyValue {
                            value: Some(any_value::Value::BoolValue(true)),
                        },
                    ],
                }),
            ),
        ],
        events: vec![span::Event {
            name: "exception".to_owned(),
            time_unix_nano: 4_000,
            attributes: vec![string("exception.message", "boom")],
            ..span::Event::default()
        }],
        links: vec![span::Link {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            attributes: vec![string("link.kind", "follows")],
            ..span::Link::default()
        }],
        status: Some(Status {
            code: status::StatusCode::Error.into(),
            message: "internal error".to_owned(),
        }),
        ..Span::default()
    };
    let child = Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: CHILD_ID.to_vec(),
        parent_span_id: ROOT_ID.to_vec(),
        name: "db.query".to_owned(),
        kind: span::SpanKind::Internal.into(),
        start_time_unix_nano: 2_000,
        end_time_unix_nano: 3_000,
        ..Span::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![root, child],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// One log record inside the root span of [`trace_request`].
pub(crate) fn logs_request() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![LogRecord {
                    time_unix_nano: 4_500,
                    severity_number: 17,
                    severity_text: "ERROR".to_owned(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(
                            "order lookup failed".to_owned(),
                        )),
                    }),
                    attributes: vec![string("order.id", "42")],
                    trace_id: TRACE_ID.to_vec(),
                    span_id: ROOT_ID.to_vec(),
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// A monotonic counter and a histogram.
pub(crate) fn metrics_request() -> ExportMetricsServiceRequest {
    let counter = Metric {
        name: "http.server.requests".to_owned(),
        description: "Requests served".to_owned(),
        unit: "{request}".to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                attributes: vec![string("http.route", "/orders/{id}")],
                time_unix_nano: 9_000,
                value: Some(number_data_point::Value::AsInt(7)),
                ..NumberDataPoint::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative.into(),
            is_monotonic: true,
        })),
        ..Metric::default()
    };
    let histogram = Metric {
        name: "http.server.request.duration".to_owned(),
        unit: "s".to_owned(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: vec![string("http.route", "/orders/{id}")],
                count: 3,
                sum: Some(0.6),
                bucket_counts: vec![1, 2, 0],
                explicit_bounds: vec![0.1, 0.5],
                ..HistogramDataPoint::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta.into(),
        })),
        ..Metric::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![counter, histogram],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}
