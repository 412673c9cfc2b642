//! The span layer on its own: `tracing` spans recorded through `Telemetry::span_layer`
//! in a subscriber of the test's, exported to a real OTLP receiver.

use std::str::FromStr as _;

use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use otlp_sink::{AttrValue, OtlpSink, ReceivedSpan, SpanKind, StatusCode};
use telemetry::spans::{SpanError, SpanExt as _};
use telemetry::{Globals, Telemetry, TelemetryConfig};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::helpers::sink_env;

/// Runs `work` with the span layer of a telemetry exporting to a fresh sink (extra
/// variables in `vars`), shuts telemetry down (which flushes) and returns the spans.
fn spans_of(vars: &[(&'static str, &str)], work: impl FnOnce()) -> Vec<ReceivedSpan> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sink = runtime.block_on(OtlpSink::start()).unwrap();
    let mut env = sink_env(&sink, "grpc");
    env.extend([
        ("OTEL_METRICS_EXPORTER", "none".to_owned()),
        ("OTEL_LOGS_EXPORTER", "none".to_owned()),
    ]);
    env.extend(vars.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let config = TelemetryConfig::from_lookup(|name| {
        env.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let telemetry = Telemetry::start(telemetry::service_info!(), config, Globals::Skip).unwrap();
    let subscriber = tracing_subscriber::registry().with(telemetry.span_layer().unwrap());
    tracing::subscriber::with_default(subscriber, work);
    telemetry.shutdown().unwrap();
    sink.spans()
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

#[test]
fn fields_records_events_and_status_reach_the_receiver() {
    let spans = spans_of(&[], || {
        let outer =
            tracing::info_span!("outer", otel.kind = "server", item.count = 3_i64, label = %"x");
        let _entered = outer.enter();
        let inner = tracing::info_span!(
            "inner",
            otel.name = "renamed",
            detections = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        inner.in_scope(|| tracing::warn!(reason = "slow", "took long"));
        inner.record("detections", 2_i64);
        inner.record("detections", 5_i64);
        inner.record("otel.status_code", "ERROR");
        inner.set_attribute("frame.id", "f-1");
        inner.add_event("decoded", vec![KeyValue::new("bytes", 10_i64)]);
    });
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let outer = named(&spans, "outer");
    let inner = named(&spans, "renamed");
    assert_eq!(outer.kind, SpanKind::Server);
    assert_eq!(outer.parent_span_id, None);
    assert_eq!(outer.int_attr("item.count"), Some(3));
    assert_eq!(outer.str_attr("label"), Some("x"));
    assert_eq!(inner.kind, SpanKind::Internal);
    assert_eq!(inner.trace_id, outer.trace_id);
    assert_eq!(
        inner.parent_span_id.as_deref(),
        Some(outer.span_id.as_str())
    );
    assert_eq!(inner.int_attr("detections"), Some(5));
    assert_eq!(inner.str_attr("frame.id"), Some("f-1"));
    assert!(
        inner
            .str_attr("code.file.path")
            .is_some_and(|path| path.ends_with("spans.rs")),
        "{inner:#?}"
    );
    assert_eq!(inner.status.code, StatusCode::Error);
    assert!(inner.start_time_unix_nano <= inner.end_time_unix_nano);
    assert!(outer.start_time_unix_nano <= inner.start_time_unix_nano);
    let names: Vec<&str> = inner.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["took long", "decoded"]);
    assert_eq!(
        inner.events[0].attributes.get("level"),
        Some(&AttrValue::Str("WARN".to_owned()))
    );
    assert_eq!(
        inner.events[0].attributes.get("reason"),
        Some(&AttrValue::Str("slow".to_owned()))
    );
    assert_eq!(
        inner.events[1].attributes.get("bytes"),
        Some(&AttrValue::Int(10))
    );
    assert_eq!(outer.scope_name, "pathlight-telemetry");
    assert_eq!(outer.service_name(), Some("example"));
}

#[test]
fn a_remote_parent_is_continued_and_a_started_span_keeps_its_parent() {
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let remote_span = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let remote = |flags| {
        Context::new().with_remote_span_context(SpanContext::new(
            trace_id,
            remote_span,
            flags,
            true,
            TraceState::from_str("vendor=v1").unwrap(),
        ))
    };
    let spans = spans_of(&[], || {
        let span = tracing::info_span!("consume", otel.kind = "consumer");
        span.set_parent(&remote(TraceFlags::SAMPLED)).unwrap();
        let cx = span.context();
        let context = cx.span().span_context().clone();
        assert_eq!(context.trace_id(), trace_id);
        assert!(context.is_sampled());
        assert_eq!(
            span.set_parent(&Context::new()),
            Err(SpanError::AlreadyStarted)
        );
        // A span whose parent was not sampled is not exported, but continues the trace.
        let unsampled = tracing::info_span!("skipped");
        unsampled
            .set_parent(&remote(TraceFlags::default()))
            .unwrap();
        let context = unsampled.context().span().span_context().clone();
        assert_eq!(context.trace_id(), trace_id);
        assert!(!context.is_sampled());
        // Inside a span, the current context is that span's.
        span.in_scope(|| {
            assert_eq!(
                telemetry::spans::current_span_context().span_id(),
                cx.span().span_context().span_id()
            );
        });
        span.set_status(Status::Ok);
        span.set_status(Status::error("too late: ok is final"));
    });
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    assert_eq!(span.name, "consume");
    assert_eq!(span.kind, SpanKind::Consumer);
    assert_eq!(span.trace_id, trace_id.to_string());
    assert_eq!(span.parent_span_id, Some(remote_span.to_string()));
    assert_eq!(span.trace_state, "vendor=v1");
    assert_eq!(span.status.code, StatusCode::Ok);
}

#[test]
fn follows_from_becomes_a_link_and_limits_apply() {
    let spans = spans_of(
        &[
            // Three of the five are the code location.
            ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "5"),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4"),
        ],
        || {
            let cause = tracing::info_span!("cause");
            let effect = tracing::info_span!(
                parent: None,
                "effect",
                a = "abcdefgh",
                b = 1_i64,
                c = 2_i64
            );
            effect.follows_from(&cause);
        },
    );
    let cause = named(&spans, "cause");
    let effect = named(&spans, "effect");
    assert_eq!(effect.parent_span_id, None);
    assert_eq!(effect.links.len(), 1);
    assert_eq!(effect.links[0].span_id, cause.span_id);
    assert_eq!(effect.str_attr("a"), Some("abcd"));
    assert_eq!(effect.int_attr("b"), Some(1));
    assert_eq!(effect.attr("c"), None, "over the count limit: {effect:#?}");
}

#[test]
fn the_sampler_decides_for_tracing_spans_too() {
    let spans = spans_of(&[("OTEL_TRACES_SAMPLER", "always_off")], || {
        let span = tracing::info_span!("dropped");
        let context = span.context().span().span_context().clone();
        assert!(context.is_valid(), "ids are made for propagation");
        assert!(!context.is_sampled());
    });
    assert!(spans.is_empty(), "{spans:#?}");
}
