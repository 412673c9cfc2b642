//! The standard metrics every Pathlight service exports, declared once.

use crate::metrics::catalog::{Catalog, MetricDef, MetricKind, MetricUnit};

/// Buckets for web request latency, 1 ms to 10 s (seconds).
pub const HTTP_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `http_server_request_duration_seconds{method, route, status_code}`.
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// `http_server_active_requests{method}`.
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// `http_server_errors_total{method, route, error_type}`.
pub const HTTP_SERVER_ERRORS: &str = "http_server_errors_total";
/// `http_client_request_duration_seconds{method, peer, status_code}`.
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http_client_request_duration_seconds";
/// `errors_total{component, error_type}`.
pub const ERRORS: &str = "errors_total";
/// `build_info{service, version, git_commit}`.
pub const BUILD_INFO: &str = "build_info";
/// `queue_length{queue}`.
pub const QUEUE_LENGTH: &str = "queue_length";
/// `queue_pending_messages{queue}`.
pub const QUEUE_PENDING: &str = "queue_pending_messages";
/// `queue_lag_seconds{queue}`.
pub const QUEUE_LAG: &str = "queue_lag_seconds";
/// `queue_messages_published_total{queue}`.
pub const QUEUE_PUBLISHED: &str = "queue_messages_published_total";
/// `queue_messages_processed_total{queue}`.
pub const QUEUE_PROCESSED: &str = "queue_messages_processed_total";
/// `queue_messages_failed_total{queue}`.
pub const QUEUE_FAILED: &str = "queue_messages_failed_total";
/// `queue_redeliveries_total{queue}`.
pub const QUEUE_REDELIVERIES: &str = "queue_redeliveries_total";
/// `queue_dead_lettered_total{queue}`.
pub const QUEUE_DEAD_LETTERED: &str = "queue_dead_lettered_total";
/// `telemetry_spans_ended_total`: sampled spans handed to the exporter queue.
pub const SPANS_ENDED: &str = "telemetry_spans_ended_total";
/// `telemetry_spans_exported_total`: spans the backend accepted.
pub const SPANS_EXPORTED: &str = "telemetry_spans_exported_total";
/// `telemetry_spans_dropped_total{reason}`: spans lost (queue_full, export_failed, shutdown).
pub const SPANS_DROPPED: &str = "telemetry_spans_dropped_total";
/// `telemetry_export_failures_total{signal}`: failed export requests.
pub const EXPORT_FAILURES: &str = "telemetry_export_failures_total";

/// HTTP server and client metrics recorded by [`crate::http`] and [`crate::client`].
pub static HTTP: Catalog = Catalog {
    owner: "telemetry/http",
    metrics: &[
        MetricDef {
            buckets: Some(HTTP_LATENCY_BUCKETS),
            ..MetricDef::new(
                HTTP_SERVER_REQUEST_DURATION,
                MetricKind::Histogram,
                MetricUnit::Seconds,
                "Duration of HTTP server requests until the response head is sent.",
                &["method", "route", "status_code"],
            )
        },
        MetricDef::new(
            HTTP_SERVER_ACTIVE_REQUESTS,
            MetricKind::Gauge,
            MetricUnit::Count,
            "HTTP server requests in flight.",
            &["method"],
        ),
        MetricDef::new(
            HTTP_SERVER_ERRORS,
            MetricKind::Counter,
            MetricUnit::Count,
            "HTTP server requests that failed (5xx or handler error), by error type.",
            &["method", "route", "error_type"],
        ),
        MetricDef {
            buckets: Some(HTTP_LATENCY_BUCKETS),
            ..MetricDef::new(
                HTTP_CLIENT_REQUEST_DURATION,
                MetricKind::Histogram,
                MetricUnit::Seconds,
                "Duration of outgoing HTTP requests until the response head arrived.",
                &["method", "peer", "status_code"],
            )
        },
    ],
};

/// Application error, queue, build and self-observability metrics.
pub static SERVICE: Catalog = Catalog {
    owner: "telemetry/service",
    metrics: &[
        MetricDef::new(
            ERRORS,
            MetricKind::Counter,
            MetricUnit::Count,
            "Errors handled by the application, by component and error type.",
            &["component", "error_type"],
        ),
        MetricDef::new(
            BUILD_INFO,
            MetricKind::Gauge,
            MetricUnit::Info,
            "Always 1; labels name the running build.",
            &["service", "version", "git_commit"],
        ),
        MetricDef::new(
            SPANS_ENDED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Sampled spans handed to the span exporter queue.",
            &[],
        ),
        MetricDef::new(
            SPANS_EXPORTED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Spans accepted by the trace backend.",
            &[],
        ),
        MetricDef::new(
            SPANS_DROPPED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Spans lost before export, by reason (queue_full, export_failed, shutdown).",
            &["reason"],
        ),
        MetricDef::new(
            EXPORT_FAILURES,
            MetricKind::Counter,
            MetricUnit::Count,
            "Export requests that failed, by signal.",
            &["signal"],
        ),
    ],
};

/// Queue metrics recorded through [`crate::metrics::QueueMetrics`].
pub static QUEUE: Catalog = Catalog {
    owner: "telemetry/queue",
    metrics: &[
        MetricDef::new(
            QUEUE_LENGTH,
            MetricKind::Gauge,
            MetricUnit::Count,
            "Messages waiting in the queue, not yet delivered to a consumer.",
            &["queue"],
        ),
        MetricDef::new(
            QUEUE_PENDING,
            MetricKind::Gauge,
            MetricUnit::Count,
            "Messages delivered to a consumer and not yet acknowledged.",
            &["queue"],
        ),
        MetricDef::new(
            QUEUE_LAG,
            MetricKind::Gauge,
            MetricUnit::Seconds,
            "Age of the oldest message not yet acknowledged.",
            &["queue"],
        ),
        MetricDef::new(
            QUEUE_PUBLISHED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Messages published to the queue.",
            &["queue"],
        ),
        MetricDef::new(
            QUEUE_PROCESSED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Messages handled successfully and acknowledged.",
            &["queue"],
        ),
        MetricDef::new(
            QUEUE_FAILED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Messages whose handling failed.",
            &["queue"],
        ),
        MetricDef::new(
            QUEUE_REDELIVERIES,
            MetricKind::Counter,
            MetricUnit::Count,
            "Messages delivered again after a failure or a consumer crash.",
            &["queue"],
        ),
        MetricDef::new(
            QUEUE_DEAD_LETTERED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Messages moved to the dead-letter queue after too many deliveries.",
            &["queue"],
        ),
    ],
};

/// Process metrics sampled in the background by `sysinfo`.
pub static PROCESS: Catalog = Catalog {
    owner: "telemetry/process",
    metrics: &[
        MetricDef::new(
            "process_cpu_seconds_total",
            MetricKind::Counter,
            MetricUnit::Seconds,
            "User and system CPU time spent by the process.",
            &[],
        ),
        MetricDef::new(
            "process_resident_memory_bytes",
            MetricKind::Gauge,
            MetricUnit::Bytes,
            "Resident memory of the process.",
            &[],
        ),
        MetricDef::new(
            "process_virtual_memory_bytes",
            MetricKind::Gauge,
            MetricUnit::Bytes,
            "Virtual memory of the process.",
            &[],
        ),
        MetricDef::new(
            "process_open_fds",
            MetricKind::Gauge,
            MetricUnit::Count,
            "Open file descriptors of the process.",
            &[],
        ),
        MetricDef::new(
            "process_max_fds",
            MetricKind::Gauge,
            MetricUnit::Count,
            "Limit on open file descriptors of the process.",
            &[],
        ),
        MetricDef::new(
            "process_threads",
            MetricKind::Gauge,
            MetricUnit::Count,
            "Threads of the process.",
            &[],
        ),
        MetricDef::new(
            "process_start_time_seconds",
            MetricKind::Gauge,
            MetricUnit::Seconds,
            "Start time of the process since the Unix epoch.",
            &[],
        ),
    ],
};

/// Every standard catalog, in the order they appear in dashboards.
pub static STANDARD: &[&Catalog] = &[&HTTP, &SERVICE, &QUEUE, &PROCESS];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_catalogs_follow_naming_rules() {
        for catalog in STANDARD {
            assert_eq!(catalog.lint(), Vec::<String>::new(), "{}", catalog.owner);
        }
    }
}
