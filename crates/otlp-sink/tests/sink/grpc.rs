//! OTLP/gRPC exports with tonic's generated clients.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use otlp_sink::{
    AttrValue, Behaviour, MetricKind, OtlpSink, PointValue, Signal, SpanKind, StatusCode,
    Temporality, Transport,
};
use tonic::codec::CompressionEncoding;

use crate::helpers::{
    CHILD_ID_HEX, PATIENCE, ROOT_ID_HEX, TRACE_ID_HEX, logs_request, metrics_request, trace_request,
};

#[tokio::test]
async fn plain_trace_export_is_flattened() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let mut client = TraceServiceClient::connect(sink.grpc_endpoint()).await?;
    let mut request = tonic::Request::new(trace_request());
    request
        .metadata_mut()
        .insert("x-api-key", "secret".parse()?);
    client.export(request).await?;

    let spans = sink.spans();
    assert_eq!(spans.len(), 2);
    let root = &spans[0];
    assert_eq!(root.trace_id, TRACE_ID_HEX);
    assert_eq!(root.span_id, ROOT_ID_HEX);
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.name, "GET /orders/{id}");
    assert_eq!(root.kind, SpanKind::Server);
    assert_eq!(root.str_attr("http.route"), Some("/orders/{id}"));
    assert_eq!(root.int_attr("http.response.status_code"), Some(500));
    assert_eq!(
        root.attr("tags"),
        Some(&AttrValue::Array(vec![
            AttrValue::from("a"),
            AttrValue::Bool(true)
        ]))
    );
    assert_eq!(root.service_name(), Some("checkout"));
    assert_eq!(root.resource_str("service.version"), Some("1.2.3"));
    assert_eq!(root.scope_name, "pathlight-test");
    assert_eq!(root.scope_version, "0.1.0");
    assert_eq!(root.status.code, StatusCode::Error);
    assert_eq!(root.status.message, "internal error");
    let exception = root.event("exception").expect("the exception event");
    assert_eq!(exception.time_unix_nano, 4_000);
    assert_eq!(
        exception.attributes.get("exception.message"),
        Some(&AttrValue::from("boom"))
    );
    assert_eq!(root.links.len(), 1);
    assert_eq!(root.links[0].trace_id, "ab".repeat(16));
    assert_eq!(root.links[0].span_id, "cd".repeat(8));
    assert_eq!(
        root.links[0].attributes.get("link.kind"),
        Some(&AttrValue::from("follows"))
    );
    assert_eq!(root.start_time_unix_nano, 1_000);
    assert_eq!(root.duration_nanos(), 4_000);
    assert_eq!(root.transport, Transport::Grpc);
    assert!(!root.compressed);

    let child = &spans[1];
    assert_eq!(child.span_id, CHILD_ID_HEX);
    assert_eq!(child.parent_span_id.as_deref(), Some(ROOT_ID_HEX));
    assert_eq!(child.kind, SpanKind::Internal);
    assert_eq!(child.status.code, StatusCode::Unset);

    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].signal, Signal::Traces);
    assert_eq!(requests[0].transport, Transport::Grpc);
    assert!(!requests[0].compressed);
    assert_eq!(requests[0].items, 2);
    assert!(requests[0].accepted);
    assert_eq!(requests[0].header("X-Api-Key"), Some("secret"));
    Ok(())
}

#[tokio::test]
async fn gzip_trace_export_is_marked_compressed() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let mut client = TraceServiceClient::connect(sink.grpc_endpoint())
        .await?
        .send_compressed(CompressionEncoding::Gzip);
    client.export(trace_request()).await?;

    let spans = sink.spans();
    assert_eq!(spans.len(), 2);
    assert!(spans.iter().all(|span| span.compressed));
    assert_eq!(spans[0].str_attr("http.route"), Some("/orders/{id}"));
    let requests = sink.requests();
    assert!(requests[0].compressed);
    assert_eq!(requests[0].header("grpc-encoding"), Some("gzip"));
    Ok(())
}

#[tokio::test]
async fn log_export_is_flattened() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let mut client = LogsServiceClient::connect(sink.grpc_endpoint()).await?;
    client.export(logs_request()).await?;

    let logs = sink
        .wait_for_logs(|logs| !logs.is_empty(), PATIENCE)
        .await?;
    let log = &logs[0];
    assert_eq!(log.body, "order lookup failed");
    assert_eq!(log.severity_text, "ERROR");
    assert_eq!(log.severity_number, 17);
    assert_eq!(log.trace_id.as_deref(), Some(TRACE_ID_HEX));
    assert_eq!(log.span_id.as_deref(), Some(ROOT_ID_HEX));
    assert_eq!(log.str_attr("order.id"), Some("42"));
    assert_eq!(log.resource_str("service.name"), Some("checkout"));
    assert_eq!(log.scope_name, "pathlight-test");
    assert_eq!(log.transport, Transport::Grpc);
    assert_eq!(sink.requests()[0].signal, Signal::Logs);
    Ok(())
}

#[tokio::test]
async fn metric_export_is_flattened() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let mut client = MetricsServiceClient::connect(sink.grpc_endpoint())
        .await?
        .send_compressed(CompressionEncoding::Gzip);
    client.export(metrics_request()).await?;

    let metrics = sink.metrics();
    assert_eq!(metrics.len(), 2);
    let counter = &metrics[0];
    assert_eq!(counter.name, "http.server.requests");
    assert_eq!(counter.description, "Requests served");
    assert_eq!(counter.unit, "{request}");
    assert_eq!(counter.kind, MetricKind::Sum);
    assert!(counter.is_monotonic);
    assert_eq!(counter.temporality, Temporality::Cumulative);
    assert_eq!(counter.resource_str("service.name"), Some("checkout"));
    let point = counter
        .point_with(&[("http.route", "/orders/{id}")])
        .expect("the /orders/{id} point");
    assert_eq!(point.value, PointValue::Int(7));
    assert_eq!(point.as_f64(), Some(7.0));

    let histogram = &metrics[1];
    assert_eq!(histogram.kind, MetricKind::Histogram);
    assert_eq!(histogram.temporality, Temporality::Delta);
    assert_eq!(histogram.data_points[0].count(), Some(3));
    assert_eq!(
        histogram.data_points[0].value,
        PointValue::Histogram {
            count: 3,
            sum: Some(0.6),
            bucket_counts: vec![1, 2, 0],
            explicit_bounds: vec![0.1, 0.5],
            min: None,
            max: None,
        }
    );
    assert!(histogram.compressed);
    assert_eq!(sink.counts().metrics, 2);
    Ok(())
}

#[tokio::test]
async fn unavailable_behaviour_answers_unavailable_and_stores_nothing() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    sink.set_behaviour(Behaviour::Unavailable);
    let mut client = TraceServiceClient::connect(sink.grpc_endpoint()).await?;

    let status = client
        .export(trace_request())
        .await
        .expect_err("the sink answers unavailable");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(sink.spans().is_empty());
    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].accepted);
    assert_eq!(requests[0].items, 2);
    let counts = sink.counts();
    assert_eq!(
        (counts.spans, counts.requests, counts.rejected_requests),
        (0, 1, 1)
    );

    sink.set_behaviour(Behaviour::Accept);
    client.export(trace_request()).await?;
    assert_eq!(sink.spans().len(), 2);
    Ok(())
}

#[tokio::test]
async fn delay_behaviour_makes_a_client_deadline_expire() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    sink.set_behaviour(Behaviour::Delay(std::time::Duration::from_secs(10)));
    let mut client = TraceServiceClient::connect(sink.grpc_endpoint()).await?;
    let mut request = tonic::Request::new(trace_request());
    request.set_timeout(std::time::Duration::from_millis(200));

    let status = client
        .export(request)
        .await
        .expect_err("the deadline expires before the delay");
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "unexpected status {status:?}"
    );
    // The items were stored on arrival, before the delay.
    assert_eq!(sink.spans().len(), 2);
    Ok(())
}
