//! Invalid values stop startup with one line naming the variable and what it accepts.

use crate::helpers::startup_error;

fn one_line_error(env: &[(&str, &str)]) -> String {
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let stderr = startup_error(&env);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    lines[0].to_owned()
}

#[test]
fn unknown_sampler_names_the_variable_and_the_accepted_values() {
    let line = one_line_error(&[("OTEL_TRACES_SAMPLER", "sometimes")]);
    assert!(line.contains("OTEL_TRACES_SAMPLER"), "{line}");
    assert!(
        line.contains("always_on") && line.contains("parentbased_traceidratio"),
        "{line}"
    );
}

#[test]
fn out_of_range_ratio_is_refused() {
    let line = one_line_error(&[
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.7"),
    ]);
    assert!(
        line.contains("OTEL_TRACES_SAMPLER_ARG") && line.contains("1.7"),
        "{line}"
    );
}

#[test]
fn bad_endpoint_url_is_refused() {
    let line = one_line_error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]);
    assert!(
        line.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && line.contains("http://"),
        "{line}"
    );
    let line = one_line_error(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://")]);
    assert!(
        line.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        "{line}"
    );
}

#[test]
fn unknown_protocol_is_refused() {
    let line = one_line_error(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")]);
    assert!(
        line.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && line.contains("grpc, http/protobuf"),
        "{line}"
    );
}

#[test]
fn other_invalid_values_are_refused_by_name() {
    for (variable, value) in [
        ("OTEL_SDK_DISABLED", "maybe"),
        ("TELEMETRY_ENABLED", "nope"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_METRICS_EXPORTER", "statsd"),
        ("OTEL_LOGS_EXPORTER", "syslog"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign"),
        ("OTEL_PROPAGATORS", "b3"),
        ("OTEL_BSP_SCHEDULE_DELAY", "-1"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "lots"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "x"),
        ("OTEL_LOG_LEVEL", "verbose"),
        ("RUST_LOG", "app=extreme"),
        ("OTEL_RESOURCE_ATTRIBUTES", "=novalue"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1m"),
        ("OTEL_RUST_SHUTDOWN_TIMEOUT", "later"),
        ("OTEL_RUST_EXCLUDED_URLS", "health"),
        (
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
            "cookie",
        ),
    ] {
        let line = one_line_error(&[(variable, value)]);
        assert!(line.contains(&format!("{variable}=")), "{variable}: {line}");
    }
}
