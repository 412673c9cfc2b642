//! Each variable changes what a running service does.

use std::time::Duration;

use otlp_sink::{Behaviour, OtlpSink, SpanKind};

use crate::helpers::{Example, client, env_with, eventually, sample, scrape, sink_env};

async fn get(example: &Example, path: &str) -> reqwest::Response {
    client().get(example.url(path)).send().await.unwrap()
}

/// Waits long enough for a batch to have been exported if there was one.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(800)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_disabled_and_its_alias_make_every_signal_a_noop_while_the_service_works() {
    for (variable, value) in [
        ("OTEL_SDK_DISABLED", "true"),
        ("TELEMETRY_ENABLED", "false"),
    ] {
        let sink = OtlpSink::start().await.unwrap();
        let example = Example::spawn(&env_with(sink_env(&sink, "grpc"), &[(variable, value)]));
        let response = get(&example, "/items/1").await;
        assert_eq!(response.status(), 200, "{variable}");
        assert!(response.headers().get("traceparent").is_none());
        settle().await;
        assert_eq!(sink.counts().spans, 0, "{variable}");
        assert_eq!(scrape(&example).await, "", "{variable}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_identity_variables_shape_the_resource() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[
            ("OTEL_SERVICE_NAME", "renamed"),
            ("OTEL_SERVICE_VERSION", "9.9.9"),
            ("ENVIRONMENT", "staging"),
            ("HOSTNAME", "pod-42"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=vision,region=eu%2Dwest"),
        ],
    ));
    get(&example, "/items/1").await;
    let spans = sink
        .wait_for_spans(|s| !s.is_empty(), Duration::from_secs(20))
        .await
        .unwrap();
    let span = &spans[0];
    assert_eq!(span.resource_str("service.name"), Some("renamed"));
    assert_eq!(span.resource_str("service.version"), Some("9.9.9"));
    assert_eq!(
        span.resource_str("deployment.environment.name"),
        Some("staging")
    );
    assert_eq!(span.resource_str("service.instance.id"), Some("pod-42"));
    assert_eq!(span.resource_str("region"), Some("eu-west"));
    assert_eq!(span.resource_str("telemetry.sdk.language"), Some("rust"));
    assert!(
        scrape(&example)
            .await
            .contains("build_info{service=\"renamed\",version=\"9.9.9\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_exporter_none_and_console() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("OTEL_TRACES_EXPORTER", "none")],
    ));
    get(&example, "/items/1").await;
    settle().await;
    assert_eq!(sink.counts().spans, 0);

    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("OTEL_TRACES_EXPORTER", "console")],
    ));
    get(&example, "/items/1").await;
    settle().await;
    assert_eq!(sink.counts().spans, 0);
    let stdout = example.stdout_lines().join("\n");
    assert!(
        stdout.contains("GET /items/{id}"),
        "console exporter prints spans: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exporter_none_serves_nothing() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("OTEL_METRICS_EXPORTER", "none")],
    ));
    get(&example, "/items/1").await;
    assert_eq!(scrape(&example).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_exporters_console_otlp_and_none() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "http/protobuf"),
        &[("OTEL_LOGS_EXPORTER", "otlp")],
    ));
    get(&example, "/items/5").await;
    let logs = sink
        .wait_for_logs(
            |l| l.iter().any(|l| l.body == "loading item"),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let record = logs.iter().find(|l| l.body == "loading item").unwrap();
    assert!(
        record.trace_id.is_some() && record.span_id.is_some(),
        "{record:?}"
    );
    assert_eq!(record.resource_str("service.name"), Some("example"));
    assert!(
        example
            .logs()
            .iter()
            .all(|l| l["message"] != "loading item"),
        "console off"
    );

    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("OTEL_LOGS_EXPORTER", "none")],
    ));
    get(&example, "/items/5").await;
    assert!(
        example
            .logs()
            .iter()
            .all(|l| l["message"] != "loading item")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_signal_endpoint_wins_over_the_general_one() {
    let general = OtlpSink::start().await.unwrap();
    let traces = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&general, "http/protobuf"),
        &[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            &format!("{}/v1/traces", traces.http_endpoint()),
        )],
    ));
    get(&example, "/items/1").await;
    traces
        .wait_for_spans(|s| !s.is_empty(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(general.counts().spans, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_signal_protocol_wins_over_the_general_one() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "http/protobuf"),
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &sink.grpc_endpoint()),
        ],
    ));
    get(&example, "/items/1").await;
    sink.wait_for_spans(|s| !s.is_empty(), Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        sink.requests()
            .iter()
            .all(|r| r.transport == otlp_sink::Transport::Grpc)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_sent_with_every_export() {
    for protocol in ["grpc", "http/protobuf"] {
        let sink = OtlpSink::start().await.unwrap();
        let example = Example::spawn(&env_with(
            sink_env(&sink, protocol),
            &[(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-api-key=k3y%3D1,x-tenant=acme",
            )],
        ));
        get(&example, "/items/1").await;
        sink.wait_for_spans(|s| !s.is_empty(), Duration::from_secs(20))
            .await
            .unwrap();
        let request = &sink.requests()[0];
        assert_eq!(request.header("x-api-key"), Some("k3y=1"), "{protocol}");
        assert_eq!(request.header("x-tenant"), Some("acme"), "{protocol}");
        // The startup log shows header names, never values.
        example.wait_for_log("telemetry initialised").await;
        let stdout = example.stdout_lines().join("\n");
        assert!(!stdout.contains("k3y"), "{stdout}");
        assert!(stdout.contains("x-api-key=<redacted>"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_timeout_bounds_a_slow_collector() {
    let sink = OtlpSink::start().await.unwrap();
    sink.set_behaviour(Behaviour::Delay(Duration::from_secs(5)));
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "200")],
    ));
    get(&example, "/items/1").await;
    eventually(
        "a 200 ms timeout fails a 5 s export",
        Duration::from_secs(4),
        || async {
            let text = scrape(&example).await;
            match sample(&text, "telemetry_export_failures_total{signal=\"traces\"}") {
                Some(failures) if failures >= 1.0 => Ok(()),
                _ => Err(text),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samplers_decide_what_is_recorded() {
    let sink = OtlpSink::start().await.unwrap();
    for (sampler, arg) in [
        ("always_off", ""),
        ("traceidratio", "0"),
        ("parentbased_always_off", ""),
    ] {
        let example = Example::spawn(&env_with(
            sink_env(&sink, "grpc"),
            &[
                ("OTEL_TRACES_SAMPLER", sampler),
                ("OTEL_TRACES_SAMPLER_ARG", arg),
            ],
        ));
        get(&example, "/items/1").await;
        settle().await;
        assert_eq!(sink.counts().spans, 0, "{sampler}");
    }
    // A sampled remote parent is followed by the parent-based default even at ratio 0.
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    ));
    client()
        .get(example.url("/items/1"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    sink.wait_for_spans(|s| !s.is_empty(), Duration::from_secs(20))
        .await
        .unwrap();
    // always_on records a root span.
    sink.clear();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("OTEL_TRACES_SAMPLER", "always_on")],
    ));
    get(&example, "/items/1").await;
    sink.wait_for_spans(|s| !s.is_empty(), Duration::from_secs(20))
        .await
        .unwrap();
}

/// The server span of one request sent with a remote parent, under `OTEL_PROPAGATORS`.
async fn server_span_with_propagators(propagators: &str) -> otlp_sink::ReceivedSpan {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("OTEL_PROPAGATORS", propagators)],
    ));
    client()
        .get(example.url("/items/1"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    let spans = sink
        .wait_for_spans(
            |s| s.iter().any(|s| s.kind == SpanKind::Server),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    spans
        .into_iter()
        .find(|s| s.kind == SpanKind::Server)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagators_decide_whether_the_incoming_parent_is_used() {
    let ignored = server_span_with_propagators("none").await;
    assert_ne!(ignored.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(ignored.parent_span_id, None);

    let followed = server_span_with_propagators("tracecontext").await;
    assert_eq!(followed.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(followed.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_settings_shape_export_requests() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    ));
    for i in 0..3 {
        get(&example, &format!("/items/{i}")).await;
    }
    sink.wait_for_spans(|s| s.len() >= 6, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        sink.requests().iter().all(|r| r.items == 1),
        "{:?}",
        sink.requests()
    );

    // A long schedule delay holds spans back until the batch is full or shutdown.
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("OTEL_BSP_SCHEDULE_DELAY", "60000")],
    ));
    get(&example, "/items/1").await;
    settle().await;
    assert_eq!(sink.counts().spans, 0);
    let (exit, example) = example.terminate();
    assert!(exit.status.success(), "{:?}", example.stderr_lines());
    assert_eq!(sink.counts().spans, 2, "flushed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_limits_cap_attributes_and_value_lengths() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[
            ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "3"),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4"),
        ],
    ));
    get(&example, "/items/123456789").await;
    let spans = sink
        .wait_for_spans(
            |s| s.iter().any(|s| s.kind == SpanKind::Server),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert!(server.attributes.len() <= 3, "{:?}", server.attributes);
    assert!(
        server
            .attributes
            .values()
            .all(|v| v.as_str().is_none_or(|s| s.len() <= 4)),
        "{:?}",
        server.attributes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_filters_follow_rust_log_and_otel_log_level() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("RUST_LOG", "warn,telemetry_example=info")],
    ));
    get(&example, "/items/1").await;
    get(&example, "/fail").await;
    let error = example.wait_for_log("storage is unavailable").await;
    assert!(
        example
            .logs()
            .iter()
            .all(|l| l["message"] != "telemetry initialised"),
        "telemetry target filtered to warn"
    );
    assert_eq!(error["level"], "ERROR");
    assert!(error["trace_id"].is_string(), "{error}");

    // OTEL_LOG_LEVEL sets the level of the export pipeline's own diagnostics.
    sink.set_behaviour(Behaviour::Unavailable);
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("RUST_LOG", "info"), ("OTEL_LOG_LEVEL", "error")],
    ));
    get(&example, "/items/1").await;
    settle().await;
    assert!(
        example
            .logs()
            .iter()
            .all(|l| l["message"] != "span export failed"),
        "warn is below error"
    );
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("RUST_LOG", "info"), ("OTEL_LOG_LEVEL", "warn")],
    ));
    get(&example, "/items/1").await;
    eventually(
        "the export failure is logged",
        Duration::from_secs(10),
        || async {
            let logs = example.logs();
            if logs.iter().any(|l| l["message"] == "span export failed") {
                Ok(())
            } else {
                Err(format!("{} log lines, none about the failure", logs.len()))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_urls_are_configurable() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("OTEL_RUST_EXCLUDED_URLS", "/items/*")],
    ));
    get(&example, "/items/1").await;
    get(&example, "/health").await;
    let spans = sink
        .wait_for_spans(
            |s| s.iter().any(|s| s.kind == SpanKind::Server),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(
        spans
            .iter()
            .all(|s| s.str_attr("url.path") != Some("/items/1"))
    );
    assert!(
        spans
            .iter()
            .any(|s| s.str_attr("url.path") == Some("/health"))
    );
}
