//! Typed telemetry configuration read from the standard `OTEL_*` variables.
//!
//! Every variable is parsed strictly: an invalid value is a [`ConfigError`] naming the
//! variable, the value and what is accepted, instead of the silent fallback the SDK does.
//! Parsing reads through a lookup function so tests can use a map instead of the process
//! environment.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A configuration value that could not be used; startup stops with this one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}={value:?}: {expected}")]
pub struct ConfigError {
    /// The environment variable that holds the bad value.
    pub variable: &'static str,
    /// The value as it was found.
    pub value: String,
    /// What the variable accepts.
    pub expected: String,
}

impl ConfigError {
    fn new(variable: &'static str, value: &str, expected: impl Into<String>) -> Self {
        Self {
            variable,
            value: value.to_owned(),
            expected: expected.into(),
        }
    }
}

/// Where spans go (`OTEL_TRACES_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracesExporter {
    /// OTLP to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    Otlp,
    /// Human-readable spans on stdout.
    Console,
}

/// How metrics leave the process (`OTEL_METRICS_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsExporter {
    /// Served on `/metrics` for Prometheus to scrape (the default).
    Prometheus,
    /// Pushed over OTLP every `OTEL_METRIC_EXPORT_INTERVAL`.
    Otlp,
}

/// Where logs go (`OTEL_LOGS_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogsExporter {
    /// JSON lines on stdout, with `trace_id` and `span_id` (the default).
    Console,
    /// OTLP log records to `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`.
    Otlp,
}

/// OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC, default port 4317.
    Grpc,
    /// OTLP/HTTP with protobuf bodies, default port 4318 (the spec's default).
    HttpProtobuf,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        })
    }
}

/// Payload compression of OTLP requests (`OTEL_EXPORTER_OTLP_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed (the default).
    None,
    /// gzip.
    Gzip,
}

/// The OpenTelemetry signal a setting applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// The lowercase name used in metric labels and URL paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }
}

/// Resolved OTLP settings for one signal.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// Full URL requests go to (for HTTP it includes `/v1/{signal}`).
    pub endpoint: String,
    /// Transport.
    pub protocol: Protocol,
    /// Extra request headers; values are secrets and never logged.
    pub headers: Vec<(String, String)>,
    /// Payload compression.
    pub compression: Compression,
    /// Bound on one export request.
    pub timeout: Duration,
}

impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values carry API keys: only their names may appear in logs.
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(name, _)| format!("{name}=<redacted>"))
            .collect();
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &headers)
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The sampler chosen by `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerConfig {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio` with the ratio.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default).
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio` with the ratio.
    ParentBasedTraceIdRatio(f64),
}

/// Batch span processor settings (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Delay between two exports.
    pub schedule_delay: Duration,
    /// Bound on one export.
    pub export_timeout: Duration,
    /// Spans kept waiting before new ones are dropped.
    pub max_queue_size: usize,
    /// Spans per export request.
    pub max_export_batch_size: usize,
}

/// Span limits (`OTEL_SPAN_*_COUNT_LIMIT`, `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Attributes kept per span.
    pub span_attribute_count: u32,
    /// Events kept per span.
    pub span_event_count: u32,
    /// Links kept per span.
    pub span_link_count: u32,
    /// String attribute values are cut to this many bytes (at a char boundary).
    pub attribute_value_length: Option<usize>,
}

/// Which propagators carry context across process boundaries (`OTEL_PROPAGATORS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropagatorsConfig {
    /// W3C `traceparent`/`tracestate`.
    pub tracecontext: bool,
    /// W3C `baggage`.
    pub baggage: bool,
}

/// Everything [`crate::init`] needs, resolved from the environment.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `OTEL_SDK_DISABLED=true` or `TELEMETRY_ENABLED=false`: every signal is a no-op.
    pub sdk_disabled: bool,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_SERVICE_VERSION`.
    pub service_version: Option<String>,
    /// `ENVIRONMENT`, reported as `deployment.environment.name`.
    pub environment: Option<String>,
    /// `HOSTNAME`, used as `service.instance.id` and `host.name`.
    pub hostname: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, decoded.
    pub resource_attributes: BTreeMap<String, String>,
    /// `OTEL_TRACES_EXPORTER`, empty for `none`.
    pub traces_exporters: Vec<TracesExporter>,
    /// `OTEL_METRICS_EXPORTER`, `None` for `none`.
    pub metrics_exporter: Option<MetricsExporter>,
    /// `OTEL_LOGS_EXPORTER`, empty for `none`.
    pub logs_exporters: Vec<LogsExporter>,
    /// OTLP settings for spans.
    pub otlp_traces: OtlpConfig,
    /// OTLP settings for metrics.
    pub otlp_metrics: OtlpConfig,
    /// OTLP settings for logs.
    pub otlp_logs: OtlpConfig,
    /// `OTEL_METRIC_EXPORT_INTERVAL`.
    pub metric_export_interval: Duration,
    /// `OTEL_METRIC_EXPORT_TIMEOUT`.
    pub metric_export_timeout: Duration,
    /// Sampler.
    pub sampler: SamplerConfig,
    /// Propagators.
    pub propagators: PropagatorsConfig,
    /// Batch span processor.
    pub batch: BatchConfig,
    /// Span limits.
    pub limits: LimitsConfig,
    /// `OTEL_LOG_LEVEL`: level of the SDK's own diagnostics.
    pub otel_log_level: tracing::Level,
    /// `RUST_LOG`: the application's log filter directives.
    pub rust_log: String,
    /// `OTEL_RUST_SHUTDOWN_TIMEOUT` (ms): bound on flushing everything at shutdown.
    pub shutdown_timeout: Duration,
    /// `OTEL_RUST_EXCLUDED_URLS`: paths the HTTP layer neither traces nor measures.
    pub excluded_urls: Vec<String>,
    /// `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`: request headers
    /// recorded as `http.request.header.<name>`.
    pub capture_request_headers: Vec<http::HeaderName>,
}

/// Headers that are never recorded, even when listed for capture.
pub const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// The variables this crate reads, for documentation and the startup log.
pub const VARIABLES: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "TELEMETRY_ENABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_SERVICE_VERSION",
    "OTEL_RESOURCE_ATTRIBUTES",
    "ENVIRONMENT",
    "HOSTNAME",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_METRIC_EXPORT_TIMEOUT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_LOG_LEVEL",
    "RUST_LOG",
    "OTEL_RUST_SHUTDOWN_TIMEOUT",
    "OTEL_RUST_EXCLUDED_URLS",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
];

impl TelemetryConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`; empty values count as unset, as the spec says.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { lookup: &lookup };

        let otel_disabled = env.parse("OTEL_SDK_DISABLED", parse_bool)?.unwrap_or(false);
        let enabled_alias = env.parse("TELEMETRY_ENABLED", parse_bool)?.unwrap_or(true);

        let traces_exporters = env
            .parse("OTEL_TRACES_EXPORTER", |v| {
                parse_list(v, "otlp, console, none", |item| match item {
                    "otlp" => Some(Some(TracesExporter::Otlp)),
                    "console" => Some(Some(TracesExporter::Console)),
                    "none" => Some(None),
                    _ => None,
                })
            })?
            .unwrap_or_else(|| vec![TracesExporter::Otlp]);

        let metrics_exporter = env
            .parse("OTEL_METRICS_EXPORTER", |v| match v.trim() {
                "prometheus" => Ok(Some(MetricsExporter::Prometheus)),
                "otlp" => Ok(Some(MetricsExporter::Otlp)),
                "none" => Ok(None),
                _ => Err("expected one of prometheus, otlp, none".to_owned()),
            })?
            .unwrap_or(Some(MetricsExporter::Prometheus));

        let logs_exporters = env
            .parse("OTEL_LOGS_EXPORTER", |v| {
                parse_list(v, "console, otlp, none", |item| match item {
                    "console" => Some(Some(LogsExporter::Console)),
                    "otlp" => Some(Some(LogsExporter::Otlp)),
                    "none" => Some(None),
                    _ => None,
                })
            })?
            .unwrap_or_else(|| vec![LogsExporter::Console]);

        let sampler_arg = env.get("OTEL_TRACES_SAMPLER_ARG");
        let ratio = || -> Result<f64, ConfigError> {
            match &sampler_arg {
                None => Ok(1.0),
                Some(raw) => match raw.trim().parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                    _ => Err(ConfigError::new(
                        "OTEL_TRACES_SAMPLER_ARG",
                        raw,
                        "expected a sampling ratio between 0.0 and 1.0",
                    )),
                },
            }
        };
        let sampler = match env.get("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
            None | Some("parentbased_always_on") => SamplerConfig::ParentBasedAlwaysOn,
            Some("always_on") => SamplerConfig::AlwaysOn,
            Some("always_off") => SamplerConfig::AlwaysOff,
            Some("traceidratio") => SamplerConfig::TraceIdRatio(ratio()?),
            Some("parentbased_always_off") => SamplerConfig::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => SamplerConfig::ParentBasedTraceIdRatio(ratio()?),
            Some(other) => {
                return Err(ConfigError::new(
                    "OTEL_TRACES_SAMPLER",
                    other,
                    "expected one of always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off, parentbased_traceidratio",
                ));
            }
        };

        let propagators = env
            .parse("OTEL_PROPAGATORS", |v| {
                let mut config = PropagatorsConfig {
                    tracecontext: false,
                    baggage: false,
                };
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    match item {
                        "tracecontext" => config.tracecontext = true,
                        "baggage" => config.baggage = true,
                        "none" => {}
                        _ => {
                            return Err(
                                "expected a comma-separated list of tracecontext, baggage, none"
                                    .to_owned(),
                            );
                        }
                    }
                }
                Ok(config)
            })?
            .unwrap_or(PropagatorsConfig {
                tracecontext: true,
                baggage: true,
            });

        let batch = BatchConfig {
            schedule_delay: env.millis("OTEL_BSP_SCHEDULE_DELAY", 5_000)?,
            export_timeout: env.millis("OTEL_BSP_EXPORT_TIMEOUT", 30_000)?,
            max_queue_size: env.positive("OTEL_BSP_MAX_QUEUE_SIZE", 2_048)?,
            max_export_batch_size: env.positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?,
        };
        if batch.max_export_batch_size > batch.max_queue_size {
            return Err(ConfigError::new(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                &batch.max_export_batch_size.to_string(),
                format!(
                    "must not exceed OTEL_BSP_MAX_QUEUE_SIZE ({})",
                    batch.max_queue_size
                ),
            ));
        }

        // The general attribute limit applies where no span-specific one is set.
        let attribute_count = env.count("OTEL_ATTRIBUTE_COUNT_LIMIT", 128)?;
        let limits = LimitsConfig {
            span_attribute_count: env.count("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", attribute_count)?,
            span_event_count: env.count("OTEL_SPAN_EVENT_COUNT_LIMIT", 128)?,
            span_link_count: env.count("OTEL_SPAN_LINK_COUNT_LIMIT", 128)?,
            attribute_value_length: env.parse("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", |v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| "expected a non-negative integer (bytes)".to_owned())
            })?,
        };

        let otel_log_level = env
            .parse("OTEL_LOG_LEVEL", |v| {
                match v.trim().to_ascii_lowercase().as_str() {
                    "trace" => Ok(tracing::Level::TRACE),
                    "debug" => Ok(tracing::Level::DEBUG),
                    "info" => Ok(tracing::Level::INFO),
                    "warn" => Ok(tracing::Level::WARN),
                    "error" => Ok(tracing::Level::ERROR),
                    _ => Err("expected one of trace, debug, info, warn, error".to_owned()),
                }
            })?
            .unwrap_or(tracing::Level::INFO);

        let rust_log = env.get("RUST_LOG").unwrap_or_else(|| "info".to_owned());
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&rust_log) {
            return Err(ConfigError::new(
                "RUST_LOG",
                &rust_log,
                format!(
                    "expected tracing filter directives such as `info,my_crate=debug` ({error})"
                ),
            ));
        }

        let excluded_urls = env
            .parse("OTEL_RUST_EXCLUDED_URLS", |v| {
                let paths: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if paths.iter().all(|p| p.starts_with('/')) {
                    Ok(paths)
                } else {
                    Err("expected a comma-separated list of paths starting with `/` (a trailing `*` matches a prefix)".to_owned())
                }
            })?
            .unwrap_or_else(|| vec!["/health".to_owned(), "/metrics".to_owned()]);

        let capture_request_headers = env
            .parse(
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
                parse_header_allow_list,
            )?
            .unwrap_or_default();

        Ok(Self {
            sdk_disabled: otel_disabled || !enabled_alias,
            service_name: env.get("OTEL_SERVICE_NAME"),
            service_version: env.get("OTEL_SERVICE_VERSION"),
            environment: env.get("ENVIRONMENT"),
            hostname: env.get("HOSTNAME"),
            resource_attributes: env
                .parse("OTEL_RESOURCE_ATTRIBUTES", parse_resource_attributes)?
                .unwrap_or_default(),
            traces_exporters,
            metrics_exporter,
            logs_exporters,
            otlp_traces: env.otlp(Signal::Traces)?,
            otlp_metrics: env.otlp(Signal::Metrics)?,
            otlp_logs: env.otlp(Signal::Logs)?,
            metric_export_interval: env.millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000)?,
            metric_export_timeout: env.millis("OTEL_METRIC_EXPORT_TIMEOUT", 30_000)?,
            sampler,
            propagators,
            batch,
            limits,
            otel_log_level,
            rust_log,
            shutdown_timeout: env.millis("OTEL_RUST_SHUTDOWN_TIMEOUT", 5_000)?,
            excluded_urls,
            capture_request_headers,
        })
    }

    /// A one-line description of the resolved configuration, OTLP header values redacted.
    pub fn summary(&self) -> String {
        format!(
            "sdk_disabled={} traces={:?} metrics={:?} logs={:?} otlp_traces={:?} otlp_metrics={:?} \
             otlp_logs={:?} sampler={:?} propagators={:?} batch={:?} limits={:?} \
             shutdown_timeout={:?} excluded_urls={:?} capture_request_headers={:?}",
            self.sdk_disabled,
            self.traces_exporters,
            self.metrics_exporter,
            self.logs_exporters,
            self.otlp_traces,
            self.otlp_metrics,
            self.otlp_logs,
            self.sampler,
            self.propagators,
            self.batch,
            self.limits,
            self.shutdown_timeout,
            self.excluded_urls,
            self.capture_request_headers,
        )
    }
}

/// Lookup helpers that turn a raw value into a typed one or a [`ConfigError`].
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => parse(&raw)
                .map(Some)
                .map_err(|expected| ConfigError::new(name, &raw, expected)),
        }
    }

    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(
            self.parse(name, |v| {
                v.trim().parse::<u64>().map_err(|_| {
                    "expected a non-negative integer number of milliseconds".to_owned()
                })
            })?
            .unwrap_or(default),
        ))
    }

    fn positive(&self, name: &'static str, default: usize) -> Result<usize, ConfigError> {
        Ok(self
            .parse(name, |v| match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err("expected a positive integer".to_owned()),
            })?
            .unwrap_or(default))
    }

    fn count(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        Ok(self
            .parse(name, |v| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| "expected a non-negative integer".to_owned())
            })?
            .unwrap_or(default))
    }

    /// Resolves the OTLP settings of one signal: the per-signal variable wins over the
    /// general one, and a general endpoint gets `/v1/{signal}` appended for HTTP.
    fn otlp(&self, signal: Signal) -> Result<OtlpConfig, ConfigError> {
        let vars = SignalVars::of(signal);
        let protocol_parse = |v: &str| match v.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            _ => Err("expected one of grpc, http/protobuf".to_owned()),
        };
        let protocol = match self.parse(vars.protocol, protocol_parse)? {
            Some(p) => p,
            None => self
                .parse("OTEL_EXPORTER_OTLP_PROTOCOL", protocol_parse)?
                .unwrap_or(Protocol::HttpProtobuf),
        };

        let endpoint = match self.parse(vars.endpoint, |v| parse_endpoint(v).map(str::to_owned))? {
            Some(url) => url,
            None => {
                let base = self
                    .parse("OTEL_EXPORTER_OTLP_ENDPOINT", |v| {
                        parse_endpoint(v).map(str::to_owned)
                    })?
                    .unwrap_or_else(|| match protocol {
                        Protocol::Grpc => "http://localhost:4317".to_owned(),
                        Protocol::HttpProtobuf => "http://localhost:4318".to_owned(),
                    });
                match protocol {
                    Protocol::Grpc => base,
                    Protocol::HttpProtobuf => {
                        format!("{}/v1/{}", base.trim_end_matches('/'), signal.as_str())
                    }
                }
            }
        };

        let headers = match self.parse(vars.headers, parse_headers)? {
            Some(h) => h,
            None => self
                .parse("OTEL_EXPORTER_OTLP_HEADERS", parse_headers)?
                .unwrap_or_default(),
        };

        let compression_parse = |v: &str| match v.trim() {
            "gzip" => Ok(Compression::Gzip),
            "none" => Ok(Compression::None),
            _ => Err("expected one of gzip, none".to_owned()),
        };
        let compression = match self.parse(vars.compression, compression_parse)? {
            Some(c) => c,
            None => self
                .parse("OTEL_EXPORTER_OTLP_COMPRESSION", compression_parse)?
                .unwrap_or(Compression::None),
        };

        let timeout = match self.get(vars.timeout) {
            Some(_) => self.millis(vars.timeout, 10_000)?,
            None => self.millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
        };

        Ok(OtlpConfig {
            endpoint,
            protocol,
            headers,
            compression,
            timeout,
        })
    }
}

/// The per-signal variable names of one signal.
struct SignalVars {
    endpoint: &'static str,
    protocol: &'static str,
    headers: &'static str,
    compression: &'static str,
    timeout: &'static str,
}

impl SignalVars {
    fn of(signal: Signal) -> Self {
        match signal {
            Signal::Traces => Self {
                endpoint: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                protocol: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                headers: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                compression: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                timeout: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            },
            Signal::Metrics => Self {
                endpoint: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                protocol: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                headers: "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
                compression: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
                timeout: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
            },
            Signal::Logs => Self {
                endpoint: "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                protocol: "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
                headers: "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                compression: "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
                timeout: "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
            },
        }
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// Parses a comma-separated exporter list; `none` alone means "no exporter".
fn parse_list<T: PartialEq>(
    value: &str,
    accepted: &str,
    item: impl Fn(&str) -> Option<Option<T>>,
) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for raw in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item(raw) {
            Some(Some(exporter)) if !out.contains(&exporter) => out.push(exporter),
            Some(_) => {}
            None => return Err(format!("expected a comma-separated list of {accepted}")),
        }
    }
    Ok(out)
}

/// Accepts absolute `http://` URLs with a host; `https://` needs TLS, which this build
/// leaves out, so it is refused up front instead of failing at the first export.
fn parse_endpoint(value: &str) -> Result<&str, String> {
    let value = value.trim();
    match url::Url::parse(value) {
        Ok(url) if url.scheme() == "http" && url.host().is_some() => Ok(value),
        Ok(url) if url.scheme() == "https" => Err(
            "expected an http:// URL such as http://collector:4317 (TLS to the collector is not built in; \
             terminate TLS in a local collector or sidecar)"
                .to_owned(),
        ),
        _ => Err("expected an absolute http:// URL such as http://collector:4317".to_owned()),
    }
}

/// Parses `key=value,key2=value2` with percent-encoded values (W3C baggage octets).
fn parse_key_values(value: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, val)) = pair.split_once('=') else {
            return Err(format!("expected comma-separated {what} pairs key=value"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!(
                "expected comma-separated {what} pairs key=value (empty key)"
            ));
        }
        let decoded = percent_decode(val.trim())
            .ok_or_else(|| format!("expected percent-encoded {what} values"))?;
        out.push((key.to_owned(), decoded));
    }
    Ok(out)
}

fn parse_headers(value: &str) -> Result<Vec<(String, String)>, String> {
    let pairs = parse_key_values(value, "header")?;
    for (name, val) in &pairs {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(val).is_err()
        {
            return Err("expected comma-separated header pairs name=value with valid header names and values".to_owned());
        }
    }
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect())
}

fn parse_resource_attributes(value: &str) -> Result<BTreeMap<String, String>, String> {
    Ok(parse_key_values(value, "attribute")?.into_iter().collect())
}

fn parse_header_allow_list(value: &str) -> Result<Vec<http::HeaderName>, String> {
    let mut out = Vec::new();
    for raw in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let name = http::HeaderName::from_bytes(raw.to_ascii_lowercase().as_bytes())
            .map_err(|_| "expected a comma-separated list of header names".to_owned())?;
        if SENSITIVE_HEADERS.contains(&name.as_str()) {
            return Err(format!(
                "header {name} carries credentials and is never captured; remove it from the list"
            ));
        }
        out.push(name);
    }
    Ok(out)
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetryConfig::from_lookup(|name| map.get(name).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> ConfigError {
        match config(vars) {
            Ok(c) => panic!("expected an error for {vars:?}, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = config(&[]).unwrap();
        assert!(!c.sdk_disabled);
        assert_eq!(c.traces_exporters, vec![TracesExporter::Otlp]);
        assert_eq!(c.metrics_exporter, Some(MetricsExporter::Prometheus));
        assert_eq!(c.logs_exporters, vec![LogsExporter::Console]);
        assert_eq!(c.otlp_traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.otlp_traces.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(c.otlp_logs.endpoint, "http://localhost:4318/v1/logs");
        assert_eq!(c.otlp_traces.timeout, Duration::from_secs(10));
        assert_eq!(c.otlp_traces.compression, Compression::None);
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert_eq!(
            c.propagators,
            PropagatorsConfig {
                tracecontext: true,
                baggage: true
            }
        );
        assert_eq!(c.batch.schedule_delay, Duration::from_secs(5));
        assert_eq!(c.batch.export_timeout, Duration::from_secs(30));
        assert_eq!(c.batch.max_queue_size, 2048);
        assert_eq!(c.batch.max_export_batch_size, 512);
        assert_eq!(c.limits.span_attribute_count, 128);
        assert_eq!(c.limits.attribute_value_length, None);
        assert_eq!(c.metric_export_interval, Duration::from_secs(60));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.excluded_urls, vec!["/health", "/metrics"]);
        assert_eq!(c.otel_log_level, tracing::Level::INFO);
    }

    #[test]
    fn sdk_disabled_and_its_alias_disable_everything() {
        assert!(
            config(&[("OTEL_SDK_DISABLED", "true")])
                .unwrap()
                .sdk_disabled
        );
        assert!(
            config(&[("OTEL_SDK_DISABLED", "TRUE")])
                .unwrap()
                .sdk_disabled
        );
        assert!(
            config(&[("TELEMETRY_ENABLED", "false")])
                .unwrap()
                .sdk_disabled
        );
        assert!(
            !config(&[("TELEMETRY_ENABLED", "true")])
                .unwrap()
                .sdk_disabled
        );
        let e = error(&[("OTEL_SDK_DISABLED", "yes")]);
        assert_eq!(e.variable, "OTEL_SDK_DISABLED");
        assert_eq!(
            error(&[("TELEMETRY_ENABLED", "0")]).variable,
            "TELEMETRY_ENABLED"
        );
    }

    #[test]
    fn exporters_are_parsed_as_lists() {
        let c = config(&[
            ("OTEL_TRACES_EXPORTER", "otlp,console"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ])
        .unwrap();
        assert_eq!(
            c.traces_exporters,
            vec![TracesExporter::Otlp, TracesExporter::Console]
        );
        assert_eq!(c.metrics_exporter, Some(MetricsExporter::Otlp));
        assert!(c.logs_exporters.is_empty());
        assert!(
            config(&[("OTEL_TRACES_EXPORTER", "none")])
                .unwrap()
                .traces_exporters
                .is_empty()
        );
        assert_eq!(
            config(&[("OTEL_METRICS_EXPORTER", "none")])
                .unwrap()
                .metrics_exporter,
            None
        );
        let e = error(&[("OTEL_TRACES_EXPORTER", "jaeger")]);
        assert_eq!(
            e.to_string(),
            "invalid OTEL_TRACES_EXPORTER=\"jaeger\": expected a comma-separated list of otlp, console, none"
        );
        assert_eq!(
            error(&[("OTEL_METRICS_EXPORTER", "console")]).variable,
            "OTEL_METRICS_EXPORTER"
        );
        assert_eq!(
            error(&[("OTEL_LOGS_EXPORTER", "file")]).variable,
            "OTEL_LOGS_EXPORTER"
        );
    }

    #[test]
    fn all_six_samplers_are_accepted() {
        let cases = [
            ("always_on", SamplerConfig::AlwaysOn),
            ("always_off", SamplerConfig::AlwaysOff),
            ("traceidratio", SamplerConfig::TraceIdRatio(0.25)),
            ("parentbased_always_on", SamplerConfig::ParentBasedAlwaysOn),
            (
                "parentbased_always_off",
                SamplerConfig::ParentBasedAlwaysOff,
            ),
            (
                "parentbased_traceidratio",
                SamplerConfig::ParentBasedTraceIdRatio(0.25),
            ),
        ];
        for (name, expected) in cases {
            let c = config(&[
                ("OTEL_TRACES_SAMPLER", name),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ])
            .unwrap();
            assert_eq!(c.sampler, expected, "{name}");
        }
        assert_eq!(
            config(&[("OTEL_TRACES_SAMPLER", "traceidratio")])
                .unwrap()
                .sampler,
            SamplerConfig::TraceIdRatio(1.0)
        );
    }

    #[test]
    fn bad_sampler_values_name_the_variable_and_the_accepted_values() {
        let e = error(&[("OTEL_TRACES_SAMPLER", "sometimes")]);
        assert_eq!(e.variable, "OTEL_TRACES_SAMPLER");
        assert!(e.to_string().contains("parentbased_traceidratio"), "{e}");
        let e = error(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.7"),
        ]);
        assert_eq!(
            e.to_string(),
            "invalid OTEL_TRACES_SAMPLER_ARG=\"1.7\": expected a sampling ratio between 0.0 and 1.0"
        );
        let e = error(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "half"),
        ]);
        assert_eq!(e.variable, "OTEL_TRACES_SAMPLER_ARG");
    }

    #[test]
    fn otlp_endpoint_protocol_and_per_signal_overrides() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://metrics:9000/custom",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
        ])
        .unwrap();
        assert_eq!(c.otlp_traces.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(c.otlp_metrics.endpoint, "http://metrics:9000/custom");
        assert_eq!(c.otlp_logs.protocol, Protocol::Grpc);
        assert_eq!(c.otlp_logs.endpoint, "http://collector:4318/");

        let c = config(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap();
        assert_eq!(c.otlp_traces.endpoint, "http://localhost:4317");
        assert_eq!(c.otlp_traces.protocol, Protocol::Grpc);

        let e = error(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert_eq!(
            e.to_string(),
            "invalid OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\": expected one of grpc, http/protobuf"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp")]).variable,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]).variable,
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")]).variable,
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x")]).variable,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        );
        assert!(
            error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://saas.example")])
                .expected
                .contains("TLS")
        );
    }

    #[test]
    fn headers_compression_and_timeout() {
        let c = config(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s3cr%3Dt, X-Tenant=acme",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "other=1"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
        ])
        .unwrap();
        assert_eq!(
            c.otlp_traces.headers,
            vec![
                ("api-key".to_owned(), "s3cr=t".to_owned()),
                ("x-tenant".to_owned(), "acme".to_owned())
            ]
        );
        assert_eq!(
            c.otlp_logs.headers,
            vec![("other".to_owned(), "1".to_owned())]
        );
        assert_eq!(c.otlp_traces.compression, Compression::Gzip);
        assert_eq!(c.otlp_metrics.compression, Compression::None);
        assert_eq!(c.otlp_traces.timeout, Duration::from_millis(700));
        assert_eq!(c.otlp_logs.timeout, Duration::from_millis(2500));
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]).variable,
            "OTEL_EXPORTER_OTLP_HEADERS"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]).variable,
            "OTEL_EXPORTER_OTLP_COMPRESSION"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]).variable,
            "OTEL_EXPORTER_OTLP_TIMEOUT"
        );
    }

    #[test]
    fn header_values_are_redacted_in_the_summary() {
        let c = config(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20topsecret",
        )])
        .unwrap();
        let summary = c.summary();
        assert!(!summary.contains("topsecret"), "{summary}");
        assert!(summary.contains("authorization=<redacted>"), "{summary}");
    }

    #[test]
    fn propagators_batch_and_limits() {
        let c = config(&[
            ("OTEL_PROPAGATORS", "tracecontext"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "5"),
            ("OTEL_ATTRIBUTE_COUNT_LIMIT", "7"),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "16"),
        ])
        .unwrap();
        assert_eq!(
            c.propagators,
            PropagatorsConfig {
                tracecontext: true,
                baggage: false
            }
        );
        assert_eq!(c.batch.max_queue_size, 10);
        assert_eq!(c.batch.schedule_delay, Duration::from_millis(100));
        assert_eq!(c.limits.span_attribute_count, 7);
        assert_eq!(c.limits.attribute_value_length, Some(16));
        assert_eq!(
            config(&[("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "3")])
                .unwrap()
                .limits
                .span_attribute_count,
            3
        );
        assert_eq!(
            config(&[("OTEL_PROPAGATORS", "none")]).unwrap().propagators,
            PropagatorsConfig {
                tracecontext: false,
                baggage: false
            }
        );
        assert_eq!(
            error(&[("OTEL_PROPAGATORS", "b3")]).variable,
            "OTEL_PROPAGATORS"
        );
        assert_eq!(
            error(&[("OTEL_BSP_MAX_QUEUE_SIZE", "0")]).variable,
            "OTEL_BSP_MAX_QUEUE_SIZE"
        );
        assert_eq!(
            error(&[("OTEL_BSP_MAX_QUEUE_SIZE", "4")]).variable,
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
        );
        assert_eq!(
            error(&[("OTEL_BSP_SCHEDULE_DELAY", "-1")]).variable,
            "OTEL_BSP_SCHEDULE_DELAY"
        );
        assert_eq!(
            error(&[("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "many")]).variable,
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"
        );
        assert_eq!(
            error(&[("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-5")]).variable,
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"
        );
    }

    #[test]
    fn resource_attributes_and_aliases() {
        let c = config(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "team=vision,region=eu%2Dwest"),
            ("OTEL_SERVICE_NAME", "svc"),
            ("OTEL_SERVICE_VERSION", "9.9"),
            ("ENVIRONMENT", "staging"),
        ])
        .unwrap();
        assert_eq!(
            c.resource_attributes.get("region").map(String::as_str),
            Some("eu-west")
        );
        assert_eq!(c.service_name.as_deref(), Some("svc"));
        assert_eq!(c.service_version.as_deref(), Some("9.9"));
        assert_eq!(c.environment.as_deref(), Some("staging"));
        assert_eq!(
            error(&[("OTEL_RESOURCE_ATTRIBUTES", "=x")]).variable,
            "OTEL_RESOURCE_ATTRIBUTES"
        );
        assert_eq!(
            error(&[("OTEL_RESOURCE_ATTRIBUTES", "a=%zz")]).variable,
            "OTEL_RESOURCE_ATTRIBUTES"
        );
    }

    #[test]
    fn log_levels_and_filters() {
        assert_eq!(
            config(&[("OTEL_LOG_LEVEL", "debug")])
                .unwrap()
                .otel_log_level,
            tracing::Level::DEBUG
        );
        assert_eq!(
            error(&[("OTEL_LOG_LEVEL", "loud")]).variable,
            "OTEL_LOG_LEVEL"
        );
        assert_eq!(
            config(&[("RUST_LOG", "warn,my_app=debug")])
                .unwrap()
                .rust_log,
            "warn,my_app=debug"
        );
        assert_eq!(
            error(&[("RUST_LOG", "my_app=loudest")]).variable,
            "RUST_LOG"
        );
    }

    #[test]
    fn excluded_urls_shutdown_and_header_capture() {
        let c = config(&[
            ("OTEL_RUST_EXCLUDED_URLS", "/healthz, /internal/*"),
            ("OTEL_RUST_SHUTDOWN_TIMEOUT", "1500"),
            (
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
                "X-Request-Id,accept",
            ),
        ])
        .unwrap();
        assert_eq!(c.excluded_urls, vec!["/healthz", "/internal/*"]);
        assert_eq!(c.shutdown_timeout, Duration::from_millis(1500));
        assert_eq!(
            c.capture_request_headers
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>(),
            vec!["x-request-id", "accept"]
        );
        assert_eq!(
            error(&[("OTEL_RUST_EXCLUDED_URLS", "health")]).variable,
            "OTEL_RUST_EXCLUDED_URLS"
        );
        let e = error(&[(
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
            "Authorization",
        )]);
        assert!(e.expected.contains("never captured"), "{e}");
        assert_eq!(
            error(&[("OTEL_RUST_SHUTDOWN_TIMEOUT", "soon")]).variable,
            "OTEL_RUST_SHUTDOWN_TIMEOUT"
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = config(&[
            ("OTEL_TRACES_SAMPLER", ""),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", " "),
        ])
        .unwrap();
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert_eq!(c.otlp_traces.endpoint, "http://localhost:4318/v1/traces");
    }
}
