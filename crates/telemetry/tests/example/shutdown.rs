//! Shutdown is bounded on every runtime flavour, with the collector up or down.

use std::time::Duration;

use otlp_sink::OtlpSink;

use crate::helpers::{Example, env_with, get_ok, sink_env};

async fn run(runtime: &str, collector_up: bool) {
    let sink = OtlpSink::start().await.unwrap();
    let mut env = env_with(
        sink_env(&sink, "grpc"),
        &[
            ("EXAMPLE_RUNTIME", runtime),
            ("OTEL_RUST_SHUTDOWN_TIMEOUT", "1500"),
            // Nothing exported before shutdown: what arrives was flushed by it.
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            ("OTEL_LOGS_EXPORTER", "console,otlp"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
        ],
    );
    if !collector_up {
        // A port nothing listens on: connections are refused.
        let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", unused.local_addr().unwrap());
        drop(unused);
        env = env_with(env, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    }
    let example = Example::spawn(&env);
    for i in 0..5 {
        get_ok(&example, &format!("/items/{i}")).await;
    }
    let (exit, example) = example.terminate();
    assert!(
        exit.status.success(),
        "{runtime}: exit {:?}; stderr {:?}",
        exit.status,
        example.stderr_lines()
    );
    // The bound is 1.5 s; the margin covers process start-up noise, not a hang.
    assert!(
        exit.elapsed < Duration::from_secs(6),
        "{runtime}, collector up={collector_up}: took {:?}",
        exit.elapsed
    );
    if collector_up {
        assert_eq!(
            sink.counts().spans,
            10,
            "{runtime}: every span flushed at shutdown"
        );
        assert!(sink.counts().logs > 0, "{runtime}: logs flushed");
        assert!(sink.counts().metrics > 0, "{runtime}: metrics flushed");
    } else {
        let stderr = example.stderr_lines().join("\n");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains("warning: telemetry shutdown"),
            "the loss is reported: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_thread_runtime_shuts_down_within_the_bound() {
    run("current_thread", true).await;
    run("current_thread", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_worker_runtime_shuts_down_within_the_bound() {
    run("multi_thread_1", true).await;
    run("multi_thread_1", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_runtime_shuts_down_within_the_bound() {
    run("multi_thread", true).await;
    run("multi_thread", false).await;
}
