//! Tracer provider: sampler, span limits and the span exporters chosen by
//! `OTEL_TRACES_EXPORTER`, plus the OTLP exporter builders shared by every signal.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::trace::{SpanContext, TraceId};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanLimits};

use crate::InitError;
use crate::config::{Compression, OtlpConfig, SamplerConfig, TelemetryConfig, TracesExporter};
use crate::export::{BatchSpanProcessor, SinkProcessor, SpanSinks};
use crate::otlp::OtlpSpanExporter;

/// Builds the SDK sampler for a sampler setting.
pub fn sampler(config: SamplerConfig) -> Sampler {
    match config {
        SamplerConfig::AlwaysOn => Sampler::AlwaysOn,
        SamplerConfig::AlwaysOff => Sampler::AlwaysOff,
        SamplerConfig::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
        SamplerConfig::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerConfig::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerConfig::ParentBasedTraceIdRatio(r) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
        }
    }
}

/// Whether a new span is sampled: the decision of [`sampler`]'s SDK sampler, for spans
/// that do not go through the SDK (`parent` is the parent's context when it has one).
pub(crate) fn is_sampled(
    config: SamplerConfig,
    parent: Option<&SpanContext>,
    trace_id: TraceId,
) -> bool {
    let parent = parent.filter(|p| p.is_valid());
    match (config, parent) {
        (
            SamplerConfig::ParentBasedAlwaysOn
            | SamplerConfig::ParentBasedAlwaysOff
            | SamplerConfig::ParentBasedTraceIdRatio(_),
            Some(parent),
        ) => parent.is_sampled(),
        (SamplerConfig::AlwaysOn | SamplerConfig::ParentBasedAlwaysOn, _) => true,
        (SamplerConfig::AlwaysOff | SamplerConfig::ParentBasedAlwaysOff, _) => false,
        (SamplerConfig::TraceIdRatio(ratio) | SamplerConfig::ParentBasedTraceIdRatio(ratio), _) => {
            ratio_admits(ratio, trace_id)
        }
    }
}

/// The SDK's `TraceIdRatioBased` rule: the trace id's low 63 bits against the ratio.
fn ratio_admits(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let low = u64::from_be_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ]);
    (low >> 1) < bound
}

/// Builds the span sinks `OTEL_TRACES_EXPORTER` asks for and the tracer provider that
/// feeds them; exporters run on `runtime`.
pub(crate) fn provider(
    config: &TelemetryConfig,
    resource: Resource,
    runtime: Option<&tokio::runtime::Handle>,
) -> Result<(SdkTracerProvider, Arc<SpanSinks>), InitError> {
    let limits = SpanLimits {
        max_attributes_per_span: config.limits.span_attribute_count,
        max_events_per_span: config.limits.span_event_count,
        max_links_per_span: config.limits.span_link_count,
        ..SpanLimits::default()
    };
    let mut batch = None;
    if config.traces_exporters.contains(&TracesExporter::Otlp) {
        let runtime = runtime.ok_or_else(|| {
            InitError::Exporter("the OTLP span exporter needs the export runtime".to_owned())
        })?;
        let mut otlp = {
            let _entered = runtime.enter();
            span_exporter(&config.otlp_traces)?
        };
        otlp.set_resource(&resource);
        batch = Some(BatchSpanProcessor::start(
            runtime,
            otlp,
            config.batch,
            config.shutdown_timeout,
        ));
    }
    let sinks = Arc::new(SpanSinks::new(
        batch,
        config.traces_exporters.contains(&TracesExporter::Console),
        config.limits.attribute_value_length,
    ));
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(sampler(config.sampler))
        .with_span_limits(limits)
        .with_resource(resource);
    if !sinks.is_empty() {
        builder = builder.with_span_processor(SinkProcessor(sinks.clone()));
    }
    Ok((builder.build(), sinks))
}

fn span_exporter(config: &OtlpConfig) -> Result<OtlpSpanExporter, InitError> {
    OtlpSpanExporter::new(config).map_err(InitError::Exporter)
}

/// Applies endpoint, timeout, headers and compression to a gRPC exporter builder.
pub(crate) fn tonic_settings<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    config: &OtlpConfig,
) -> B {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in &config.headers {
        // Names and values were validated as HTTP headers when the config was parsed.
        if let (Ok(name), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(name.as_bytes()),
            value.parse(),
        ) {
            metadata.insert(name, value);
        }
    }
    let builder = builder
        .with_endpoint(config.endpoint.clone())
        .with_protocol(opentelemetry_otlp::Protocol::Grpc)
        .with_timeout(config.timeout)
        .with_metadata(metadata);
    match config.compression {
        Compression::Gzip => builder.with_compression(opentelemetry_otlp::Compression::Gzip),
        Compression::None => builder,
    }
}

/// Applies endpoint, timeout, headers and compression to an HTTP/protobuf exporter builder.
pub(crate) fn http_settings<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    config: &OtlpConfig,
) -> B {
    let headers: HashMap<String, String> = config.headers.iter().cloned().collect();
    let builder = builder
        .with_endpoint(config.endpoint.clone())
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(config.timeout)
        .with_headers(headers);
    match config.compression {
        Compression::Gzip => builder.with_compression(opentelemetry_otlp::Compression::Gzip),
        Compression::None => builder,
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::Context;
    use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceFlags, TraceState};
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

    use super::*;

    #[test]
    fn decisions_match_the_sdk_samplers() {
        let configs = [
            SamplerConfig::AlwaysOn,
            SamplerConfig::AlwaysOff,
            SamplerConfig::TraceIdRatio(0.25),
            SamplerConfig::ParentBasedAlwaysOn,
            SamplerConfig::ParentBasedAlwaysOff,
            SamplerConfig::ParentBasedTraceIdRatio(0.5),
        ];
        let parents = [None, Some(TraceFlags::SAMPLED), Some(TraceFlags::default())];
        for config in configs {
            let sdk = sampler(config);
            for parent_flags in parents {
                for _ in 0..500 {
                    let trace_id = TraceId::from(rand::random::<u128>());
                    let parent = parent_flags.map(|flags| {
                        SpanContext::new(
                            trace_id,
                            SpanId::from(rand::random::<u64>() | 1),
                            flags,
                            true,
                            TraceState::default(),
                        )
                    });
                    let parent_cx = parent
                        .clone()
                        .map(|p| Context::new().with_remote_span_context(p));
                    let expected = sdk
                        .should_sample(
                            parent_cx.as_ref(),
                            trace_id,
                            "span",
                            &SpanKind::Internal,
                            &[],
                            &[],
                        )
                        .decision
                        == SamplingDecision::RecordAndSample;
                    assert_eq!(
                        is_sampled(config, parent.as_ref(), trace_id),
                        expected,
                        "{config:?} with parent {parent_flags:?}, {trace_id}"
                    );
                }
            }
        }
    }
}
