//! Tracer provider: sampler, span limits, propagators and the span exporters chosen by
//! `OTEL_TRACES_EXPORTER`, plus the OTLP exporter builders shared by every signal.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::propagation::text_map_propagator::TextMapPropagator;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SimpleSpanProcessor, SpanLimits};

use crate::InitError;
use crate::config::{
    Compression, OtlpConfig, PropagatorsConfig, SamplerConfig, TelemetryConfig, TracesExporter,
};
use crate::export::BatchSpanProcessor;
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

/// Builds the propagator `OTEL_PROPAGATORS` asks for (possibly one that does nothing).
pub fn propagator(config: PropagatorsConfig) -> TextMapCompositePropagator {
    let mut propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    if config.tracecontext {
        propagators.push(Box::new(TraceContextPropagator::new()));
    }
    if config.baggage {
        propagators.push(Box::new(BaggagePropagator::new()));
    }
    TextMapCompositePropagator::new(propagators)
}

/// Builds the tracer provider; exporters run on `runtime`.
pub(crate) fn provider(
    config: &TelemetryConfig,
    resource: Resource,
    runtime: Option<&tokio::runtime::Handle>,
) -> Result<SdkTracerProvider, InitError> {
    let limits = SpanLimits {
        max_attributes_per_span: config.limits.span_attribute_count,
        max_events_per_span: config.limits.span_event_count,
        max_links_per_span: config.limits.span_link_count,
        ..SpanLimits::default()
    };
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(sampler(config.sampler))
        .with_span_limits(limits)
        .with_resource(resource.clone());
    for exporter in &config.traces_exporters {
        match exporter {
            TracesExporter::Otlp => {
                let runtime = runtime.ok_or_else(|| {
                    InitError::Exporter(
                        "the OTLP span exporter needs the export runtime".to_owned(),
                    )
                })?;
                let mut otlp = {
                    let _entered = runtime.enter();
                    span_exporter(&config.otlp_traces)?
                };
                // The SDK hands the resource to span processors; ours owns the exporter.
                otlp.set_resource(&resource);
                builder = builder.with_span_processor(BatchSpanProcessor::start(
                    runtime,
                    otlp,
                    config.batch,
                    config.limits.attribute_value_length,
                    config.shutdown_timeout,
                ));
            }
            TracesExporter::Console => {
                builder = builder.with_span_processor(SimpleSpanProcessor::new(
                    opentelemetry_stdout::SpanExporter::default(),
                ));
            }
        }
    }
    Ok(builder.build())
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
