//! Pathlight's shared telemetry: one call sets up traces, metrics and logs from the
//! standard `OTEL_*` variables, and one layer instruments an axum service.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = telemetry::init(telemetry::service_info!())?;
//! let app: Router = Router::new()
//!     .route("/frames/{id}", get(|| async { "ok" }))
//!     .merge(telemetry.metrics_router())
//!     .layer(telemetry.http_layer());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app).await?;
//! telemetry.shutdown()?; // also happens on drop, within OTEL_RUST_SHUTDOWN_TIMEOUT
//! # Ok(()) }
//! ```
//!
//! What it sets up:
//! - traces: OTLP (gRPC or HTTP/protobuf), console or none, exported from a dedicated
//!   thread so shutdown is bounded on any runtime flavour ([`export`]);
//! - metrics: the `metrics` facade, served on `/metrics` (Prometheus) or pushed over OTLP,
//!   with the standard catalog ([`metrics::standard`]) and process metrics;
//! - logs: JSON lines on stdout with `trace_id`/`span_id`, optionally OTLP log records;
//! - [`http::TelemetryLayer`] for servers and [`client::ClientTelemetry`] for reqwest.

#![warn(missing_docs)]

pub mod client;
pub mod config;
mod export;
pub mod http;
pub mod logs;
pub mod metrics;
mod otlp;
pub mod resource;
pub mod spans;
pub mod traces;
pub mod w3c;

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use crate::config::{ConfigError, TelemetryConfig};
use crate::config::{LogsExporter, MetricsExporter, Protocol, TracesExporter};
use crate::export::{ExportRuntime, RuntimeExporter};
use crate::metrics::MetricsHandle;
use crate::metrics::process::{BackgroundSampler, ProcessState};
use crate::resource::ResolvedService;

/// The git commit this workspace was built from (`unknown` outside a git checkout).
pub const GIT_COMMIT: &str = env!("PATHLIGHT_GIT_COMMIT");

/// How often process metrics are sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// The service's identity as the code knows it; `OTEL_SERVICE_NAME` and
/// `OTEL_SERVICE_VERSION` override it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    /// Default `service.name`.
    pub name: &'static str,
    /// Default `service.version`.
    pub version: &'static str,
    /// The service's own metric catalogs (beside [`metrics::standard::STANDARD`]): their
    /// help texts and units are registered and their histogram buckets used at start.
    pub catalogs: &'static [&'static metrics::Catalog],
}

/// The calling crate's name and version as a [`ServiceInfo`], optionally with its metric
/// catalogs: `service_info!()` or `service_info!(catalogs: [&metrics::CATALOG])`.
#[macro_export]
macro_rules! service_info {
    () => {
        $crate::ServiceInfo {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            catalogs: &[],
        }
    };
    (catalogs: [$($catalog:expr),* $(,)?]) => {
        $crate::ServiceInfo {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            catalogs: const { &[$($catalog),*] },
        }
    };
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A variable holds an invalid value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An exporter could not be built.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    /// A global (subscriber, metrics recorder) was already installed in this process.
    #[error("telemetry is already initialised in this process: {0}")]
    AlreadyInitialised(&'static str),
    /// A thread or runtime could not be started.
    #[error("cannot start the telemetry threads: {0}")]
    Io(#[from] std::io::Error),
}

/// Why shutdown was not clean; the process can exit either way.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// Flushing did not finish within the bound.
    #[error("telemetry shutdown of {signal} exceeded {bound:?}; unexported data was dropped")]
    Timeout {
        /// The signal whose flush was cut short.
        signal: &'static str,
        /// The bound (`OTEL_RUST_SHUTDOWN_TIMEOUT`).
        bound: Duration,
    },
    /// A provider reported an error while flushing.
    #[error("telemetry shutdown failed: {0}")]
    Failed(String),
}

/// Reads the `OTEL_*` variables and installs traces, metrics and logs process-wide.
///
/// Call it once, at the top of `main`, and keep the returned [`Telemetry`] alive; dropping
/// it (or calling [`Telemetry::shutdown`]) flushes everything within
/// `OTEL_RUST_SHUTDOWN_TIMEOUT` (default 5 s).
pub fn init(service: ServiceInfo) -> Result<Telemetry, InitError> {
    let config = TelemetryConfig::from_env()?;
    Telemetry::start(service, config, Globals::Install)
}

/// Whether [`Telemetry::start`] installs process-wide state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Globals {
    /// Install the `tracing` subscriber, the `metrics` recorder, the global tracer provider
    /// and propagator (what [`init`] does).
    Install,
    /// Install nothing global: for a second service in the same process (tests).
    Skip,
}

/// Live telemetry of a service; flushes and shuts down when dropped.
#[derive(Debug)]
pub struct Telemetry {
    config: TelemetryConfig,
    service: ResolvedService,
    tracer: Option<SdkTracer>,
    span_layer: Option<spans::SpanLayer>,
    propagator: Arc<w3c::Propagator>,
    metrics: MetricsHandle,
    providers: Option<Providers>,
}

#[derive(Debug)]
struct Providers {
    tracer: Option<SdkTracerProvider>,
    logger: Option<SdkLoggerProvider>,
    meter: Option<SdkMeterProvider>,
    sampler: Option<BackgroundSampler>,
    runtime: Option<ExportRuntime>,
}

impl Telemetry {
    /// Starts telemetry from an explicit configuration.
    pub fn start(
        service: ServiceInfo,
        config: TelemetryConfig,
        globals: Globals,
    ) -> Result<Self, InitError> {
        let resolved = resource::resolve_service(&service, &config);
        let install = globals == Globals::Install;
        let propagator = Arc::new(w3c::Propagator::new(config.propagators));

        if config.sdk_disabled {
            if install {
                install_subscriber(&config, None, None)?;
            }
            return Ok(Self {
                config,
                service: resolved,
                tracer: None,
                span_layer: None,
                propagator,
                metrics: MetricsHandle::disabled(),
                providers: None,
            });
        }

        let needs_runtime = config.traces_exporters.contains(&TracesExporter::Otlp)
            || config.logs_exporters.contains(&LogsExporter::Otlp)
            || config.metrics_exporter == Some(MetricsExporter::Otlp);
        let runtime = needs_runtime.then(ExportRuntime::start).transpose()?;
        let resource = resource::build(&resolved, &config);

        // Metrics first: the span pipeline registers its counters with the recorder.
        let process = Arc::new(ProcessState::default());
        let catalogs: Vec<&metrics::Catalog> = metrics::standard::STANDARD
            .iter()
            .chain(service.catalogs)
            .copied()
            .collect();
        let mut meter = None;
        let mut metrics_handle = MetricsHandle::disabled();
        if install {
            match (config.metrics_exporter, &runtime) {
                (Some(MetricsExporter::Prometheus), _) => {
                    let recorder = metrics::prometheus_recorder(&catalogs);
                    metrics_handle = MetricsHandle::prometheus(&recorder, process.clone());
                    ::metrics::set_global_recorder(recorder)
                        .map_err(|_| InitError::AlreadyInitialised("metrics recorder"))?;
                }
                (Some(MetricsExporter::Otlp), Some(runtime)) => {
                    let provider = otlp_meter_provider(
                        &config,
                        resource.clone(),
                        runtime.handle(),
                        process.clone(),
                    )?;
                    let meter_api =
                        opentelemetry::metrics::MeterProvider::meter(&provider, "pathlight");
                    let recorder = metrics_opentelemetry::OpenTelemetryRecorder::new(
                        metrics_opentelemetry::OpenTelemetryMetrics::new(meter_api),
                    );
                    for def in catalogs.iter().flat_map(|c| c.metrics.iter()) {
                        if let Some(buckets) = def.buckets {
                            recorder.set_histogram_bounds(std::iter::once(def.name), buckets);
                        }
                    }
                    ::metrics::set_global_recorder(recorder)
                        .map_err(|_| InitError::AlreadyInitialised("metrics recorder"))?;
                    meter = Some(provider);
                }
                _ => {}
            }
            for catalog in &catalogs {
                metrics::describe(catalog);
            }
            ::metrics::gauge!(
                metrics::standard::BUILD_INFO,
                "service" => resolved.name.clone(),
                "version" => resolved.version.clone(),
                "git_commit" => GIT_COMMIT,
            )
            .set(1.0);
        }
        let sampler = match (install, config.metrics_exporter) {
            (true, Some(_)) => Some(BackgroundSampler::start(process, SAMPLE_INTERVAL)?),
            _ => None,
        };

        let (tracer_provider, sinks) = traces::provider(
            &config,
            resource.clone(),
            runtime.as_ref().map(ExportRuntime::handle),
        )?;
        let scope = opentelemetry::InstrumentationScope::builder("pathlight-telemetry")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = tracer_provider.tracer_with_scope(scope.clone());
        let span_layer = spans::SpanLayer::new(spans::Pipeline {
            sinks,
            settings: spans::Settings {
                sampler: config.sampler,
                limits: config.limits,
            },
            scope,
        });

        let logger = match (
            &runtime,
            config.logs_exporters.contains(&LogsExporter::Otlp),
        ) {
            (Some(runtime), true) => {
                Some(otlp_logger_provider(&config, resource, runtime.handle())?)
            }
            _ => None,
        };

        if install {
            install_subscriber(&config, Some(span_layer.clone()), logger.as_ref())?;
            opentelemetry::global::set_tracer_provider(tracer_provider.clone());
            opentelemetry::global::set_text_map_propagator(w3c::Propagator::new(
                config.propagators,
            ));
        }

        tracing::info!(
            target: "telemetry",
            service_name = %resolved.name,
            service_version = %resolved.version,
            service_instance_id = %resolved.instance_id,
            git_commit = GIT_COMMIT,
            config = %config.summary(),
            "telemetry initialised"
        );

        Ok(Self {
            config,
            service: resolved,
            tracer: Some(tracer),
            span_layer: Some(span_layer),
            propagator,
            metrics: metrics_handle,
            providers: Some(Providers {
                tracer: Some(tracer_provider),
                logger,
                meter,
                sampler,
                runtime,
            }),
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &TelemetryConfig {
        &self.config
    }

    /// The resolved service identity.
    pub fn service(&self) -> &ResolvedService {
        &self.service
    }

    /// The tracer behind the HTTP layer and client, `None` when the SDK is disabled.
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.tracer.as_ref()
    }

    /// The `tracing` layer that exports spans (`None` when the SDK is disabled). With
    /// [`Globals::Install`] it is already part of the global subscriber; with
    /// [`Globals::Skip`] add it to a subscriber of your own.
    pub fn span_layer(&self) -> Option<spans::SpanLayer> {
        self.span_layer.clone()
    }

    /// Where the HTTP layer's and the client's spans go: the span layer's pipeline.
    fn span_pipeline(&self) -> Option<Arc<spans::Pipeline>> {
        self.span_layer.as_ref().map(|layer| layer.pipeline.clone())
    }

    /// The layer that instruments an axum router (add it with `Router::layer`).
    pub fn http_layer(&self) -> http::TelemetryLayer {
        http::TelemetryLayer::new(
            self.span_pipeline(),
            self.propagator.clone(),
            &self.config.excluded_urls,
            &self.config.capture_request_headers,
        )
    }

    /// The reqwest middleware, for building a client with other middlewares.
    pub fn client_middleware(&self) -> client::ClientTelemetry {
        client::ClientTelemetry::new(self.span_pipeline(), self.propagator.clone())
    }

    /// Wraps a reqwest client so every request is traced, propagated and measured.
    pub fn http_client(&self, client: reqwest::Client) -> reqwest_middleware::ClientWithMiddleware {
        reqwest_middleware::ClientBuilder::new(client)
            .with(self.client_middleware())
            .build()
    }

    /// The Prometheus exposition of this process's metrics.
    pub fn metrics_handle(&self) -> &MetricsHandle {
        &self.metrics
    }

    /// A router serving `GET /metrics` in Prometheus text format.
    pub fn metrics_router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let handle = self.metrics.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(
                            ::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        handle.render(),
                    )
                }
            }),
        )
    }

    /// Flushes and shuts down every provider within `OTEL_RUST_SHUTDOWN_TIMEOUT`.
    ///
    /// Safe to call from any thread, inside or outside a Tokio runtime of any flavour: the
    /// work happens on telemetry's own threads and the wait is bounded.
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        self.shutdown_in_place()
    }

    fn shutdown_in_place(&mut self) -> Result<(), ShutdownError> {
        let Some(mut providers) = self.providers.take() else {
            return Ok(());
        };
        let timeout = self.config.shutdown_timeout;
        let deadline = Instant::now() + timeout;
        // The three providers flush in parallel, each on its own thread, so one stuck
        // exporter cannot eat the others' time and none can hold up exit.
        let mut waits = Vec::new();
        if let Some(tracer) = providers.tracer.take() {
            waits.push(spawn_shutdown("traces", move || {
                tracer.shutdown_with_timeout(timeout)
            }));
        }
        if let Some(logger) = providers.logger.take() {
            waits.push(spawn_shutdown("logs", move || {
                logger.shutdown_with_timeout(timeout)
            }));
        }
        if let Some(meter) = providers.meter.take() {
            waits.push(spawn_shutdown("metrics", move || {
                meter.shutdown_with_timeout(timeout)
            }));
        }
        let mut result = Ok(());
        for (signal, wait) in waits {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match wait.recv_timeout(remaining) {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    result = Err(ShutdownError::Failed(format!("{signal}: {error}")));
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    result = Err(ShutdownError::Failed(format!(
                        "{signal}: no shutdown thread"
                    )));
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    result = Err(ShutdownError::Timeout {
                        signal,
                        bound: timeout,
                    })
                }
            }
        }
        drop(providers.sampler.take());
        if let Some(mut runtime) = providers.runtime.take() {
            if result.is_ok() {
                runtime.stop(deadline.saturating_duration_since(Instant::now()));
            } else {
                // A provider that failed or ran out of time may still be exporting on a
                // thread of its own, polling futures on this runtime.
                runtime.detach();
            }
        }
        result
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown_in_place() {
            // The subscriber may already be gone; stderr always works.
            eprintln!("{error}");
        }
    }
}

type ShutdownWait = (
    &'static str,
    crossbeam_channel::Receiver<opentelemetry_sdk::error::OTelSdkResult>,
);

/// Runs one provider's shutdown on its own thread; the caller bounds the wait with
/// `recv_timeout`, so a stuck provider is left behind instead of holding up exit.
fn spawn_shutdown(
    signal: &'static str,
    f: impl FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send + 'static,
) -> ShutdownWait {
    let (tx, rx) = crossbeam_channel::bounded(1);
    // If no thread can be started, `tx` is dropped and the caller sees a disconnect,
    // which it reports as a failed flush.
    let _ = std::thread::Builder::new()
        .name(format!("telemetry-shutdown-{signal}"))
        .spawn(move || {
            let _ = tx.send(f());
        });
    (signal, rx)
}

/// Installs the `tracing` subscriber: filter, JSON console logs, spans to OpenTelemetry,
/// and log records to OTLP when asked.
fn install_subscriber(
    config: &TelemetryConfig,
    spans: Option<spans::SpanLayer>,
    logger: Option<&SdkLoggerProvider>,
) -> Result<(), InitError> {
    let filter = log_filter(config);
    let console = config
        .logs_exporters
        .contains(&LogsExporter::Console)
        .then(logs::JsonLogLayer::stdout);
    // Exporters log through `tracing` too: keep their own events out of the OTLP log
    // pipeline, or every failed export would produce more records to export.
    let otlp_logs = logger.map(|provider| {
        opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(provider)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                let target = meta.target();
                !["opentelemetry", "hyper", "h2", "tonic", "tower", "reqwest"]
                    .iter()
                    .any(|prefix| target.starts_with(prefix))
            }))
    });
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(spans)
        .with(otlp_logs);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| InitError::AlreadyInitialised("tracing subscriber"))
}

/// `RUST_LOG`, plus `OTEL_LOG_LEVEL` for the SDK's own diagnostics unless `RUST_LOG`
/// already says something about them.
fn log_filter(config: &TelemetryConfig) -> EnvFilter {
    let mut directives = config.rust_log.clone();
    let level = config.otel_log_level.as_str().to_ascii_lowercase();
    for target in [
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry_otlp",
        "telemetry::export",
    ] {
        if !directives.contains(target) {
            directives.push_str(&format!(",{target}={level}"));
        }
    }
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

fn otlp_meter_provider(
    config: &TelemetryConfig,
    resource: opentelemetry_sdk::Resource,
    runtime: &tokio::runtime::Handle,
    process: Arc<ProcessState>,
) -> Result<SdkMeterProvider, InitError> {
    let exporter = {
        let _entered = runtime.enter();
        let builder = opentelemetry_otlp::MetricExporter::builder();
        match config.otlp_metrics.protocol {
            Protocol::Grpc => {
                traces::tonic_settings(builder.with_tonic(), &config.otlp_metrics).build()
            }
            Protocol::HttpProtobuf => {
                traces::http_settings(builder.with_http(), &config.otlp_metrics).build()
            }
        }
        .map_err(|e| InitError::Exporter(e.to_string()))?
    };
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(RuntimeExporter {
        inner: exporter,
        handle: runtime.clone(),
    })
    .with_interval(config.metric_export_interval)
    .build();
    let provider = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader)
        .build();
    register_process_instruments(&provider, process);
    Ok(provider)
}

/// Process metrics as OTLP observable instruments reading the sampler's cached sample.
fn register_process_instruments(provider: &SdkMeterProvider, process: Arc<ProcessState>) {
    use opentelemetry::metrics::MeterProvider as _;
    let meter = provider.meter("pathlight-process");
    let p = process.clone();
    meter
        .f64_observable_counter("process_cpu_seconds_total")
        .with_description("User and system CPU time spent by the process.")
        .with_unit("s")
        .with_callback(move |o| o.observe(p.latest().cpu_seconds, &[]))
        .build();
    type Read = fn(&metrics::process::ProcessSample) -> u64;
    let gauges: [(&'static str, &'static str, Read); 5] = [
        (
            "process_resident_memory_bytes",
            "Resident memory of the process.",
            |s| s.resident_memory_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory of the process.",
            |s| s.virtual_memory_bytes,
        ),
        (
            "process_open_fds",
            "Open file descriptors of the process.",
            |s| s.open_fds,
        ),
        (
            "process_max_fds",
            "Limit on open file descriptors of the process.",
            |s| s.max_fds,
        ),
        ("process_threads", "Threads of the process.", |s| s.threads),
    ];
    for (name, help, read) in gauges {
        let p = process.clone();
        meter
            .u64_observable_gauge(name)
            .with_description(help)
            .with_callback(move |o| o.observe(read(&p.latest()), &[]))
            .build();
    }
}

fn otlp_logger_provider(
    config: &TelemetryConfig,
    resource: opentelemetry_sdk::Resource,
    runtime: &tokio::runtime::Handle,
) -> Result<SdkLoggerProvider, InitError> {
    let exporter = {
        let _entered = runtime.enter();
        let builder = opentelemetry_otlp::LogExporter::builder();
        match config.otlp_logs.protocol {
            Protocol::Grpc => {
                traces::tonic_settings(builder.with_tonic(), &config.otlp_logs).build()
            }
            Protocol::HttpProtobuf => {
                traces::http_settings(builder.with_http(), &config.otlp_logs).build()
            }
        }
        .map_err(|e| InitError::Exporter(e.to_string()))?
    };
    Ok(SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(RuntimeExporter {
            inner: exporter,
            handle: runtime.clone(),
        })
        .build())
}
