//! Metrics: the catalog, the global `metrics` recorder (Prometheus pull or OTLP push) and
//! the small APIs services and queue adapters call.
//!
//! Everything goes through the `metrics` facade, so services record domain metrics with
//! `metrics::counter!` and friends and the exporter is chosen by `OTEL_METRICS_EXPORTER`.

pub mod catalog;
pub mod process;
pub mod recorder;
pub mod standard;

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use catalog::{Catalog, MetricDef, MetricKind, MetricUnit};
use process::ProcessState;
use recorder::{Histograms, PathlightRecorder};

/// Registers a catalog's help texts and units with the installed recorder.
pub fn describe(catalog: &Catalog) {
    for def in catalog.metrics {
        let unit = match def.unit {
            MetricUnit::Seconds => Some(metrics::Unit::Seconds),
            MetricUnit::Bytes => Some(metrics::Unit::Bytes),
            MetricUnit::Count | MetricUnit::Ratio | MetricUnit::Info => None,
        };
        let help = SharedString::const_str(def.help);
        match (def.kind, unit) {
            (MetricKind::Counter, Some(u)) => metrics::describe_counter!(def.name, u, help),
            (MetricKind::Counter, None) => metrics::describe_counter!(def.name, help),
            (MetricKind::Gauge, Some(u)) => metrics::describe_gauge!(def.name, u, help),
            (MetricKind::Gauge, None) => metrics::describe_gauge!(def.name, help),
            (MetricKind::Histogram, Some(u)) => metrics::describe_histogram!(def.name, u, help),
            (MetricKind::Histogram, None) => metrics::describe_histogram!(def.name, help),
        }
    }
}

/// Builds the Prometheus recorder; histograms get the buckets their catalog declares.
pub(crate) fn prometheus_recorder(catalogs: &[&Catalog]) -> PathlightRecorder {
    PathlightRecorder::new(PrometheusBuilder::new().build_recorder(), catalogs)
}

/// Serves the Prometheus text of every metric of this process.
#[derive(Debug, Clone)]
pub struct MetricsHandle {
    inner: Option<Arc<HandleInner>>,
}

#[derive(Debug)]
struct HandleInner {
    prometheus: PrometheusHandle,
    histograms: Arc<Histograms>,
    process: Arc<ProcessState>,
}

impl MetricsHandle {
    pub(crate) fn disabled() -> Self {
        Self { inner: None }
    }

    pub(crate) fn prometheus(recorder: &PathlightRecorder, process: Arc<ProcessState>) -> Self {
        let (prometheus, histograms) = recorder.handles();
        Self {
            inner: Some(Arc::new(HandleInner {
                prometheus,
                histograms,
                process,
            })),
        }
    }

    /// True when `/metrics` has something to serve (`OTEL_METRICS_EXPORTER=prometheus`).
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The Prometheus text exposition: counters and gauges, histograms, and the last
    /// process sample.
    pub fn render(&self) -> String {
        match &self.inner {
            None => String::new(),
            Some(inner) => {
                let mut text = inner.prometheus.render();
                if !text.is_empty() && !text.ends_with("\n\n") {
                    text.push('\n');
                }
                inner.histograms.render(&mut text);
                text.push_str(&inner.process.rendered());
                text
            }
        }
    }
}

/// Counts an error the application handled: `errors_total{component, error_type}`.
///
/// Both labels are `&'static str` so their values come from a bounded set by construction.
pub fn record_error(component: &'static str, error_type: &'static str) {
    metrics::counter!(standard::ERRORS, "component" => component, "error_type" => error_type)
        .increment(1);
}

/// Standard metrics of one queue, labelled `queue`.
///
/// Create it once per queue (registration looks the series up) and keep it; every method
/// is then an atomic operation.
///
/// ```
/// let queue = telemetry::metrics::QueueMetrics::new("frames:queue");
/// queue.published(1);
/// queue.set_length(12);
/// queue.set_lag(std::time::Duration::from_millis(250));
/// queue.processed(1);
/// ```
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    length: Gauge,
    pending: Gauge,
    lag: Gauge,
    published: Counter,
    processed: Counter,
    failed: Counter,
    redeliveries: Counter,
    dead_lettered: Counter,
}

impl QueueMetrics {
    /// Registers the series of `queue` with the installed recorder.
    pub fn new(queue: impl Into<SharedString>) -> Self {
        let queue: SharedString = queue.into();
        let label = || [("queue", queue.clone())];
        Self {
            length: metrics::gauge!(standard::QUEUE_LENGTH, &label()),
            pending: metrics::gauge!(standard::QUEUE_PENDING, &label()),
            lag: metrics::gauge!(standard::QUEUE_LAG, &label()),
            published: metrics::counter!(standard::QUEUE_PUBLISHED, &label()),
            processed: metrics::counter!(standard::QUEUE_PROCESSED, &label()),
            failed: metrics::counter!(standard::QUEUE_FAILED, &label()),
            redeliveries: metrics::counter!(standard::QUEUE_REDELIVERIES, &label()),
            dead_lettered: metrics::counter!(standard::QUEUE_DEAD_LETTERED, &label()),
        }
    }

    /// Messages waiting, not yet delivered.
    pub fn set_length(&self, messages: u64) {
        self.length.set(messages as f64);
    }

    /// Messages delivered and not yet acknowledged.
    pub fn set_pending(&self, messages: u64) {
        self.pending.set(messages as f64);
    }

    /// Age of the oldest message not yet acknowledged.
    pub fn set_lag(&self, age: Duration) {
        self.lag.set(age.as_secs_f64());
    }

    /// Counts published messages.
    pub fn published(&self, messages: u64) {
        self.published.increment(messages);
    }

    /// Counts messages handled and acknowledged.
    pub fn processed(&self, messages: u64) {
        self.processed.increment(messages);
    }

    /// Counts messages whose handling failed.
    pub fn failed(&self, messages: u64) {
        self.failed.increment(messages);
    }

    /// Counts redeliveries.
    pub fn redelivered(&self, messages: u64) {
        self.redeliveries.increment(messages);
    }

    /// Counts messages moved to a dead-letter queue.
    pub fn dead_lettered(&self, messages: u64) {
        self.dead_lettered.increment(messages);
    }
}

/// Cached counters of the span export pipeline (`telemetry_spans_*`).
#[derive(Debug, Clone)]
pub(crate) struct ExportCounters {
    pub(crate) ended: Counter,
    pub(crate) exported: Counter,
    pub(crate) dropped_queue_full: Counter,
    pub(crate) dropped_export_failed: Counter,
    pub(crate) dropped_shutdown: Counter,
    pub(crate) failures: Counter,
}

impl ExportCounters {
    pub(crate) fn register() -> Self {
        Self {
            ended: metrics::counter!(standard::SPANS_ENDED),
            exported: metrics::counter!(standard::SPANS_EXPORTED),
            dropped_queue_full: metrics::counter!(standard::SPANS_DROPPED, "reason" => "queue_full"),
            dropped_export_failed: metrics::counter!(standard::SPANS_DROPPED, "reason" => "export_failed"),
            dropped_shutdown: metrics::counter!(standard::SPANS_DROPPED, "reason" => "shutdown"),
            failures: metrics::counter!(standard::EXPORT_FAILURES, "signal" => "traces"),
        }
    }
}
