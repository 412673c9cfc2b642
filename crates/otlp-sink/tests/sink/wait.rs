//! Waiting for items, clearing, and counting without retaining.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use otlp_sink::{OtlpSink, Retention, Signal, SinkConfig, WaitError};

use crate::helpers::{PATIENCE, logs_request, metrics_request, trace_request};

#[tokio::test]
async fn wait_for_spans_wakes_when_spans_arrive() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let endpoint = sink.grpc_endpoint();
    let export = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut client = TraceServiceClient::connect(endpoint).await?;
        client.export(trace_request()).await?;
        anyhow::Ok(())
    });

    let spans = sink
        .wait_for_spans(
            |spans| spans.iter().any(|span| span.name == "db.query"),
            PATIENCE,
        )
        .await?;
    assert_eq!(spans.len(), 2);
    export.await??;
    Ok(())
}

#[tokio::test]
async fn wait_timeout_says_what_was_received() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let mut client = TraceServiceClient::connect(sink.grpc_endpoint()).await?;
    client.export(trace_request()).await?;

    let error = sink
        .wait_for_spans(|spans| spans.len() > 2, Duration::from_millis(100))
        .await
        .expect_err("only two spans arrive");
    let WaitError::Timeout {
        signal, received, ..
    } = &error;
    assert_eq!((*signal, *received), (Signal::Traces, 2));
    assert_eq!(
        error.to_string(),
        "timed out after 100ms waiting for traces; 2 received: [GET /orders/{id}, db.query]"
    );
    Ok(())
}

#[tokio::test]
async fn clear_forgets_everything() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let mut client = TraceServiceClient::connect(sink.grpc_endpoint()).await?;
    client.export(trace_request()).await?;
    sink.clear();

    assert!(sink.spans().is_empty());
    assert!(sink.requests().is_empty());
    assert_eq!(sink.counts().spans, 0);
    client.export(trace_request()).await?;
    assert_eq!(sink.spans().len(), 2);
    Ok(())
}

#[tokio::test]
async fn count_only_retention_counts_without_keeping() -> anyhow::Result<()> {
    let sink = OtlpSink::start_on(SinkConfig {
        retention: Retention::CountOnly,
        ..SinkConfig::local()
    })
    .await?;
    let endpoint = sink.grpc_endpoint();
    let mut traces = TraceServiceClient::connect(endpoint.clone()).await?;
    traces.export(trace_request()).await?;
    traces.export(trace_request()).await?;
    opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(endpoint.clone())
        .await?
        .export(logs_request())
        .await?;
    opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient::connect(endpoint)
        .await?
        .export(metrics_request())
        .await?;

    let counts = sink.counts();
    assert_eq!(
        (counts.spans, counts.logs, counts.metrics, counts.requests),
        (4, 1, 2, 4)
    );
    assert!(sink.spans().is_empty());
    assert!(sink.requests().is_empty());
    Ok(())
}
