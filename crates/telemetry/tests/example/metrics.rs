//! `/metrics`: promtool-clean, matching the catalog, bounded, self-observing.

use std::collections::BTreeSet;
use std::time::Duration;

use otlp_sink::{Behaviour, OtlpSink};
use telemetry::metrics::catalog::{check_exposition, parse_exposition};
use telemetry::metrics::standard::STANDARD;

use crate::helpers::{Example, client, env_with, eventually, get_ok, sample, scrape, sink_env};

/// Requests that touch every standard metric of the example service.
async fn exercise(example: &Example, downstream: &Example) {
    let http = client();
    for path in ["/items/1", "/items/2", "/fail", "/chain", "/nowhere"] {
        http.get(example.url(path)).send().await.unwrap();
    }
    let _ = downstream;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_passes_promtool_and_matches_the_catalog() {
    let sink = OtlpSink::start().await.unwrap();
    let downstream = Example::spawn(&sink_env(&sink, "grpc"));
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[("DOWNSTREAM_URL", &downstream.url(""))],
    ));
    exercise(&example, &downstream).await;
    let text = scrape(&example).await;

    testkit::promtool_check_metrics(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let mismatch = check_exposition(&text, STANDARD);
    assert!(mismatch.is_empty(), "{mismatch}\n{text}");
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_count{method=\"GET\",route=\"/items/{id}\",status_code=\"200\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        text.contains(
            "http_server_errors_total{method=\"GET\",route=\"/fail\",error_type=\"storage\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("build_info{service=\"example\""), "{text}");
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_paths_and_ids_add_no_label_values() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&sink_env(&sink, "grpc"));
    let http = client();
    let series = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
            .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
            .collect()
    };
    for i in 0..50 {
        http.get(example.url(&format!("/items/{i}")))
            .send()
            .await
            .unwrap();
        http.get(example.url(&format!("/random/{i}?q={i}")))
            .send()
            .await
            .unwrap();
    }
    let before = series(&scrape(&example).await);
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        let http = http.clone();
        let base = example.url("");
        tasks.push(tokio::spawn(async move {
            let mut state = worker.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for _ in 0..1_250 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let path = if state % 2 == 0 {
                    format!("/items/{state:x}")
                } else {
                    format!("/r{state:x}/x/{}?id={state}", state % 97)
                };
                http.get(format!("{base}{path}")).send().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let text = scrape(&example).await;
    let after = series(&text);
    assert_eq!(
        before, after,
        "10,000 random requests changed the label sets"
    );
    let families = parse_exposition(&text);
    assert_eq!(
        families["http_server_request_duration_seconds"].series, 2,
        "{after:?}"
    );
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(
        total, 10_100.0,
        "every request was counted under a bounded label set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_paths_are_neither_traced_nor_measured() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&sink_env(&sink, "grpc"));
    client().get(example.url("/health")).send().await.unwrap();
    client().get(example.url("/items/1")).send().await.unwrap();
    sink.wait_for_spans(
        |s| s.iter().any(|s| s.name == "GET /items/{id}"),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let text = scrape(&example).await;
    assert!(!text.contains("route=\"/health\""), "{text}");
    assert!(!text.contains("route=\"/metrics\""), "{text}");
    assert!(
        sink.spans()
            .iter()
            .all(|s| s.str_attr("url.path") != Some("/health"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_and_dropped_spans_add_up_to_ended_spans() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&sink_env(&sink, "grpc"));
    for i in 0..20 {
        client()
            .get(example.url(&format!("/items/{i}")))
            .send()
            .await
            .unwrap();
    }
    // 20 server spans + 20 child spans.
    sink.wait_for_spans(|s| s.len() >= 40, Duration::from_secs(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = scrape(&example).await;
    let ended = sample(&text, "telemetry_spans_ended_total").unwrap();
    let exported = sample(&text, "telemetry_spans_exported_total").unwrap();
    assert_eq!(ended, 40.0, "{text}");
    assert_eq!(exported, 40.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "telemetry_spans_dropped_total{reason=\"queue_full\"}"
        ),
        Some(0.0)
    );

    // The collector refuses: failures are counted and the spans are accounted as dropped.
    sink.set_behaviour(Behaviour::Unavailable);
    for i in 0..5 {
        client()
            .get(example.url(&format!("/items/{i}")))
            .send()
            .await
            .unwrap();
    }
    let text = eventually(
        "span accounting balances",
        Duration::from_secs(30),
        || async {
            let text = scrape(&example).await;
            let value = |series: &str| sample(&text, series).unwrap_or(f64::NAN);
            let ended = value("telemetry_spans_ended_total");
            let exported = value("telemetry_spans_exported_total");
            let failed = value("telemetry_spans_dropped_total{reason=\"export_failed\"}");
            let full = value("telemetry_spans_dropped_total{reason=\"queue_full\"}");
            if ended == exported + failed + full && failed > 0.0 {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert!(sample(&text, "telemetry_export_failures_total{signal=\"traces\"}").unwrap() >= 1.0);
    assert_eq!(
        sample(&text, "telemetry_spans_ended_total"),
        Some(50.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let sink = OtlpSink::start().await.unwrap();
    sink.set_behaviour(Behaviour::Delay(Duration::from_secs(2)));
    let example = Example::spawn(&env_with(
        sink_env(&sink, "grpc"),
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2"),
        ],
    ));
    for i in 0..40 {
        get_ok(&example, &format!("/items/{i}")).await;
    }
    let text = scrape(&example).await;
    assert!(
        sample(
            &text,
            "telemetry_spans_dropped_total{reason=\"queue_full\"}"
        )
        .unwrap()
            > 0.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_metrics_are_pushed_on_the_interval() {
    let sink = OtlpSink::start().await.unwrap();
    let example = Example::spawn(&env_with(
        sink_env(&sink, "http/protobuf"),
        &[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ],
    ));
    client().get(example.url("/items/1")).send().await.unwrap();
    let metrics = sink
        .wait_for_metrics(
            |m| {
                m.iter()
                    .any(|m| m.name == "http_server_request_duration_seconds")
                    && m.iter().any(|m| m.name == "process_cpu_seconds_total")
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let duration = metrics
        .iter()
        .find(|m| m.name == "http_server_request_duration_seconds")
        .unwrap();
    assert_eq!(duration.resource_str("service.name"), Some("example"));
    let point = duration
        .point_with(&[("route", "/items/{id}")])
        .expect("route point");
    assert_eq!(point.count(), Some(1));
    // With OTLP push there is nothing to scrape.
    assert_eq!(scrape(&example).await, "");
}
