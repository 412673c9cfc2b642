//! Server spans, child spans, propagation and secrets, over every transport.

use std::time::Duration;

use otlp_sink::{OtlpSink, ReceivedSpan, SpanKind, StatusCode, Transport};

use crate::helpers::{Example, client, env_with, sink_env};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

async fn request_with_parent(example: &Example, path: &str) -> reqwest::Response {
    client()
        .get(example.url(path))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .header("user-agent", "pathlight-test/1.0")
        .header("authorization", "Bearer s3cret-token")
        .header("cookie", "session=c00kie-value")
        .send()
        .await
        .expect("request works")
}

async fn server_and_child(sink: &OtlpSink) -> (ReceivedSpan, ReceivedSpan) {
    let spans = sink
        .wait_for_spans(
            |s| {
                s.iter().any(|s| s.name == "GET /items/{id}")
                    && s.iter().any(|s| s.name == "load_item")
            },
            Duration::from_secs(20),
        )
        .await
        .expect("server and child spans arrive");
    let server: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server)
        .cloned()
        .collect();
    assert_eq!(server.len(), 1, "exactly one server span: {server:#?}");
    let child = spans
        .iter()
        .find(|s| s.name == "load_item")
        .cloned()
        .unwrap();
    (server[0].clone(), child)
}

async fn check_one_request(
    protocol: &str,
    extra: &[(&'static str, &str)],
) -> Vec<otlp_sink::RequestInfo> {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(sink_env(&sink, protocol), extra));
    let response = request_with_parent(&example, "/items/42?token=abc&sig=xyz").await;
    assert_eq!(response.status(), 200);
    let traceparent = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let x_trace_id = response.headers()["x-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let (server, child) = server_and_child(&sink).await;
    assert_eq!(server.trace_id, TRACE_ID);
    assert_eq!(server.parent_span_id.as_deref(), Some(PARENT_ID));
    assert_eq!(server.str_attr("http.request.method"), Some("GET"));
    assert_eq!(server.str_attr("http.route"), Some("/items/{id}"));
    assert_eq!(server.str_attr("url.path"), Some("/items/42"));
    assert_eq!(server.str_attr("url.scheme"), Some("http"));
    assert_eq!(server.int_attr("http.response.status_code"), Some(200));
    assert_eq!(
        server.int_attr("server.port"),
        Some(i64::from(example.port))
    );
    assert_eq!(
        server.str_attr("user_agent.original"),
        Some("pathlight-test/1.0")
    );
    assert_eq!(server.str_attr("client.address"), Some("127.0.0.1"));
    assert_eq!(server.status.code, StatusCode::Unset);
    assert_eq!(server.service_name(), Some("example"));

    assert_eq!(child.trace_id, TRACE_ID);
    assert_eq!(
        child.parent_span_id.as_deref(),
        Some(server.span_id.as_str())
    );
    assert_eq!(child.str_attr("item.id"), Some("42"));

    assert_eq!(traceparent, format!("00-{TRACE_ID}-{}-01", server.span_id));
    assert_eq!(x_trace_id, TRACE_ID);

    // The log line written inside the handler carries the child span's ids.
    let line = example.wait_for_log("loading item").await;
    assert_eq!(line["trace_id"], TRACE_ID);
    assert_eq!(line["span_id"], child.span_id.as_str());
    sink.requests()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_yields_one_server_span_over_http_protobuf() {
    let requests = check_one_request("http/protobuf", &[]).await;
    assert!(
        requests
            .iter()
            .all(|r| r.transport == Transport::Http && !r.compressed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_yields_one_server_span_over_grpc() {
    let requests = check_one_request("grpc", &[]).await;
    assert!(
        requests
            .iter()
            .all(|r| r.transport == Transport::Grpc && !r.compressed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_compression_works_over_both_transports() {
    for protocol in ["grpc", "http/protobuf"] {
        let requests =
            check_one_request(protocol, &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]).await;
        assert!(!requests.is_empty());
        assert!(
            requests.iter().all(|r| r.compressed),
            "{protocol}: {requests:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_set_status_error_type_and_exception() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&sink_env(&sink, "http/protobuf"));
    let response = client().get(example.url("/fail")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let spans = sink
        .wait_for_spans(
            |s| s.iter().any(|s| s.name == "GET /fail"),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let span = spans.iter().find(|s| s.name == "GET /fail").unwrap();
    assert_eq!(span.status.code, StatusCode::Error);
    assert_eq!(span.str_attr("error.type"), Some("storage"));
    assert_eq!(span.int_attr("http.response.status_code"), Some(503));
    let exception = span.event("exception").expect("exception event");
    assert_eq!(
        exception
            .attributes
            .get("exception.message")
            .map(|v| v.to_string())
            .as_deref(),
        Some("storage is unavailable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_routes_and_unknown_methods_are_bounded() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&sink_env(&sink, "http/protobuf"));
    let response = client()
        .get(example.url("/no/such/path/123"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = client()
        .request(
            reqwest::Method::from_bytes(b"PURGE").unwrap(),
            example.url("/items/1"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let spans = sink
        .wait_for_spans(
            |s| s.iter().filter(|s| s.kind == SpanKind::Server).count() >= 2,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let unmatched = spans
        .iter()
        .find(|s| s.str_attr("url.path") == Some("/no/such/path/123"))
        .unwrap();
    assert_eq!(unmatched.name, "GET");
    assert_eq!(unmatched.attr("http.route"), None);
    let purge = spans
        .iter()
        .find(|s| s.str_attr("http.request.method") == Some("_OTHER"))
        .unwrap();
    assert_eq!(
        purge.str_attr("http.request.method_original"),
        Some("PURGE")
    );
    assert!(purge.name.starts_with("HTTP"), "{}", purge.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_spans_or_logs() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "http/protobuf"),
        &[
            ("OTEL_LOGS_EXPORTER", "console,otlp"),
            (
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
                "user-agent",
            ),
        ],
    ));
    request_with_parent(&example, "/items/9?token=t0ps3cret&sig=s1gnature").await;
    server_and_child(&sink).await;
    sink.wait_for_logs(
        |l| l.iter().any(|l| l.body == "loading item"),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let exported = format!("{:?}{:?}", sink.spans(), sink.logs());
    // The console copy of the handler's line too, so the check below covers it.
    example.wait_for_log("loading item").await;
    let stdout = example.stdout_lines().join("\n");
    for secret in [
        "s3cret-token",
        "c00kie-value",
        "t0ps3cret",
        "s1gnature",
        "token=",
        "sig=",
    ] {
        assert!(!exported.contains(secret), "{secret} was exported");
        assert!(!stdout.contains(secret), "{secret} was logged");
    }
    let server = sink
        .spans()
        .into_iter()
        .find(|s| s.kind == SpanKind::Server)
        .unwrap();
    assert!(
        server.attr("http.request.header.user-agent").is_some(),
        "allow-listed header captured"
    );
    assert!(
        server
            .attributes
            .keys()
            .all(|k| !k.contains("authorization") && !k.contains("cookie"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_client_continues_the_trace_in_the_next_service() {
    let sink = OtlpSink::start().await.unwrap();
    let b = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("OTEL_SERVICE_NAME", "service-b")],
    ));
    let a = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[
            ("OTEL_SERVICE_NAME", "service-a"),
            ("DOWNSTREAM_URL", &b.url("")),
        ],
    ));
    let response = client().get(a.url("/chain")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let spans = sink
        .wait_for_spans(
            |s| {
                s.iter()
                    .any(|s| s.service_name() == Some("service-b") && s.name == "GET /items/{id}")
                    && s.iter().any(|s| s.name == "GET /chain")
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let a_server = spans.iter().find(|s| s.name == "GET /chain").unwrap();
    let a_client = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client && s.service_name() == Some("service-a"))
        .expect("client span in A");
    let b_server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server && s.service_name() == Some("service-b"))
        .unwrap();
    assert_eq!(
        a_client.parent_span_id.as_deref(),
        Some(a_server.span_id.as_str())
    );
    assert_eq!(
        b_server.parent_span_id.as_deref(),
        Some(a_client.span_id.as_str())
    );
    assert_eq!(a_server.trace_id, b_server.trace_id);
    assert_eq!(a_client.int_attr("http.response.status_code"), Some(200));
    assert_eq!(a_client.int_attr("server.port"), Some(i64::from(b.port)));
}
