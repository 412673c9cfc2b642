//! OTLP/HTTP exports with reqwest.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use otlp_sink::{Behaviour, OtlpSink, Signal, Transport};
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};

use crate::helpers::{
    ROOT_ID_HEX, TRACE_ID_HEX, gzip, logs_request, metrics_request, trace_request,
};

const PROTOBUF: &str = "application/x-protobuf";

async fn post(url: &str, body: Vec<u8>, gzipped: bool) -> reqwest::Result<reqwest::Response> {
    let mut request = reqwest::Client::new()
        .post(url)
        .header(CONTENT_TYPE, PROTOBUF)
        .header("x-api-key", "secret");
    if gzipped {
        request = request.header(CONTENT_ENCODING, "gzip");
    }
    request.body(body).send().await
}

#[tokio::test]
async fn plain_trace_export_answers_a_protobuf_response() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let response = post(
        &format!("{}/v1/traces", sink.http_endpoint()),
        trace_request().encode_to_vec(),
        false,
    )
    .await?;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| value.as_bytes()),
        Some(PROTOBUF.as_bytes())
    );
    let body = response.bytes().await?;
    assert_eq!(
        ExportTraceServiceResponse::decode(body)?,
        ExportTraceServiceResponse::default()
    );

    let spans = sink.spans();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].trace_id, TRACE_ID_HEX);
    assert_eq!(spans[0].span_id, ROOT_ID_HEX);
    assert_eq!(spans[0].str_attr("http.route"), Some("/orders/{id}"));
    assert_eq!(spans[1].parent_span_id.as_deref(), Some(ROOT_ID_HEX));
    assert!(
        spans
            .iter()
            .all(|span| span.transport == Transport::Http && !span.compressed)
    );
    let requests = sink.requests();
    assert_eq!(requests[0].transport, Transport::Http);
    assert_eq!(requests[0].signal, Signal::Traces);
    assert_eq!(requests[0].header("x-api-key"), Some("secret"));
    Ok(())
}

#[tokio::test]
async fn gzip_trace_export_is_decompressed() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let response = post(
        &sink.http_url(Signal::Traces),
        gzip(&trace_request().encode_to_vec()),
        true,
    )
    .await?;

    assert_eq!(response.status(), StatusCode::OK);
    let spans = sink.spans();
    assert_eq!(spans.len(), 2);
    assert!(spans.iter().all(|span| span.compressed));
    assert_eq!(spans[0].name, "GET /orders/{id}");
    assert!(sink.requests()[0].compressed);
    Ok(())
}

#[tokio::test]
async fn logs_and_metrics_are_received() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let logs = post(
        &sink.http_url(Signal::Logs),
        logs_request().encode_to_vec(),
        false,
    )
    .await?;
    let metrics = post(
        &sink.http_url(Signal::Metrics),
        gzip(&metrics_request().encode_to_vec()),
        true,
    )
    .await?;

    assert_eq!(
        (logs.status(), metrics.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(sink.logs()[0].body, "order lookup failed");
    assert_eq!(sink.logs()[0].transport, Transport::Http);
    let names: Vec<String> = sink
        .metrics()
        .into_iter()
        .map(|metric| metric.name)
        .collect();
    assert_eq!(
        names,
        ["http.server.requests", "http.server.request.duration"]
    );
    let signals: Vec<Signal> = sink
        .requests()
        .iter()
        .map(|request| request.signal)
        .collect();
    assert_eq!(signals, [Signal::Logs, Signal::Metrics]);
    Ok(())
}

#[tokio::test]
async fn undecodable_body_is_a_bad_request() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let response = post(&sink.http_url(Signal::Traces), vec![0xff; 16], false).await?;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let message = response.text().await?;
    assert!(
        message.contains("cannot decode the protobuf body"),
        "{message}"
    );
    assert!(sink.requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn corrupt_gzip_is_a_bad_request() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let response = post(
        &sink.http_url(Signal::Traces),
        trace_request().encode_to_vec(),
        true,
    )
    .await?;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn json_body_is_an_unsupported_media_type() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let response = reqwest::Client::new()
        .post(sink.http_url(Signal::Traces))
        .header(CONTENT_TYPE, "application/json")
        .body("{}")
        .send()
        .await?;

    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    Ok(())
}

#[tokio::test]
async fn unavailable_behaviour_answers_503() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    sink.set_behaviour(Behaviour::Unavailable);
    let response = post(
        &sink.http_url(Signal::Traces),
        trace_request().encode_to_vec(),
        false,
    )
    .await?;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(sink.spans().is_empty());
    assert!(!sink.requests()[0].accepted);
    assert_eq!(sink.counts().rejected_requests, 1);
    Ok(())
}

#[tokio::test]
async fn delay_behaviour_makes_a_client_time_out() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    sink.set_behaviour(Behaviour::Delay(Duration::from_secs(10)));
    let error = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()?
        .post(sink.http_url(Signal::Traces))
        .header(CONTENT_TYPE, PROTOBUF)
        .body(trace_request().encode_to_vec())
        .send()
        .await
        .expect_err("the client gives up before the delay");

    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(sink.spans().len(), 2);
    Ok(())
}
