//! The tracker's metrics, declared once in [`CATALOG`] and registered through the
//! `metrics` facade; `main` hands the catalog to `telemetry` (`service_info!(catalogs:
//! [...])`), which registers the help texts, units and histogram buckets.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use telemetry::metrics::{Catalog, MetricDef, MetricKind, MetricUnit};

/// Spans received over OTLP, by transport.
pub const SPANS_RECEIVED: &str = "tracker_ingest_spans_received_total";
/// Spans without `frame.id`: counted and dropped.
pub const SPANS_DROPPED: &str = "tracker_ingest_spans_dropped_total";
/// Spans rejected as invalid (unparsable `frame.id`, bad ids or times), or JSON requests
/// refused.
pub const REJECTED: &str = "tracker_ingest_rejected_total";
/// Events acknowledged to producers (committed), by transport.
pub const EVENTS_ACCEPTED: &str = "tracker_ingest_events_accepted_total";
/// Events not acknowledged because the store failed, by transport.
pub const EVENTS_FAILED: &str = "tracker_ingest_events_failed_total";
/// Events waiting for the group-commit writer.
pub const QUEUE_EVENTS: &str = "tracker_ingest_queue_events";
/// Events newly stored.
pub const EVENTS_STORED: &str = "tracker_store_events_stored_total";
/// Events whose id was already stored (re-deliveries).
pub const EVENTS_DUPLICATE: &str = "tracker_store_events_duplicate_total";
/// Store append latency.
pub const APPEND_DURATION: &str = "tracker_store_append_duration_seconds";
/// Events per store append.
pub const BATCH_EVENTS: &str = "tracker_ingest_batch_events";

/// Where ingested data came from: the label value of `transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/HTTP (`POST /v1/traces`).
    Http,
    /// OTLP/gRPC.
    Grpc,
    /// The JSON API (`POST /events`).
    Json,
}

const TRANSPORTS: [Transport; 3] = [Transport::Http, Transport::Grpc, Transport::Json];

const APPEND_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 8.0, 32.0, 128.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];

/// Every metric the tracker exports besides the standard ones.
pub static CATALOG: Catalog = Catalog {
    owner: "tracker",
    metrics: &[
        MetricDef::new(
            SPANS_RECEIVED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Spans received over OTLP.",
            &["transport"],
        ),
        MetricDef::new(
            SPANS_DROPPED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Spans dropped because they carry no frame.id attribute.",
            &["transport"],
        ),
        MetricDef::new(
            REJECTED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Spans rejected as invalid (unparsable frame.id, bad ids or times), or JSON requests refused.",
            &["transport"],
        ),
        MetricDef::new(
            EVENTS_ACCEPTED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Lifecycle events committed and acknowledged to the producer.",
            &["transport"],
        ),
        MetricDef::new(
            EVENTS_FAILED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Lifecycle events not acknowledged because the store failed.",
            &["transport"],
        ),
        MetricDef::new(
            QUEUE_EVENTS,
            MetricKind::Gauge,
            MetricUnit::Count,
            "Events waiting for the group-commit writer.",
            &[],
        ),
        MetricDef::new(
            EVENTS_STORED,
            MetricKind::Counter,
            MetricUnit::Count,
            "Events newly stored in the event log.",
            &[],
        ),
        MetricDef::new(
            EVENTS_DUPLICATE,
            MetricKind::Counter,
            MetricUnit::Count,
            "Events ignored because their id was already stored.",
            &[],
        ),
        APPEND_DURATION_DEF,
        BATCH_EVENTS_DEF,
    ],
};

const APPEND_DURATION_DEF: MetricDef = MetricDef::new(
    APPEND_DURATION,
    MetricKind::Histogram,
    MetricUnit::Seconds,
    "Duration of one durable store append.",
    &[],
)
.with_buckets(APPEND_BUCKETS);

const BATCH_EVENTS_DEF: MetricDef = MetricDef::new(
    BATCH_EVENTS,
    MetricKind::Histogram,
    MetricUnit::Count,
    "Events per store append (one group commit).",
    &[],
)
.with_buckets(BATCH_BUCKETS);

/// The tracker's metric handles, registered once and shared.
#[derive(Debug)]
pub struct TrackerMetrics {
    per_transport: [TransportCounters; 3],
    queue_events: Gauge,
    events_stored: Counter,
    events_duplicate: Counter,
    append_duration: Histogram,
    batch_events: Histogram,
}

#[derive(Debug)]
struct TransportCounters {
    spans_received: Counter,
    spans_dropped: Counter,
    rejected: Counter,
    events_accepted: Counter,
    events_failed: Counter,
}

impl Transport {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Grpc => "grpc",
            Transport::Json => "json",
        }
    }

    fn index(self) -> usize {
        match self {
            Transport::Http => 0,
            Transport::Grpc => 1,
            Transport::Json => 2,
        }
    }
}

impl TrackerMetrics {
    /// Registers every series with the installed recorder (a no-op without one), so the
    /// counters appear on `/metrics` at zero before anything happens.
    pub fn register() -> TrackerMetrics {
        let per_transport = TRANSPORTS.map(|transport| {
            let label = transport.as_str();
            let counters = TransportCounters {
                spans_received: metrics::counter!(SPANS_RECEIVED, "transport" => label),
                spans_dropped: metrics::counter!(SPANS_DROPPED, "transport" => label),
                rejected: metrics::counter!(REJECTED, "transport" => label),
                events_accepted: metrics::counter!(EVENTS_ACCEPTED, "transport" => label),
                events_failed: metrics::counter!(EVENTS_FAILED, "transport" => label),
            };
            for counter in [
                &counters.spans_received,
                &counters.spans_dropped,
                &counters.rejected,
                &counters.events_accepted,
                &counters.events_failed,
            ] {
                counter.increment(0);
            }
            counters
        });
        let metrics = TrackerMetrics {
            per_transport,
            queue_events: metrics::gauge!(QUEUE_EVENTS),
            events_stored: metrics::counter!(EVENTS_STORED),
            events_duplicate: metrics::counter!(EVENTS_DUPLICATE),
            append_duration: metrics::histogram!(APPEND_DURATION),
            batch_events: metrics::histogram!(BATCH_EVENTS),
        };
        metrics.queue_events.set(0.0);
        metrics.events_stored.increment(0);
        metrics.events_duplicate.increment(0);
        metrics
    }

    /// Counts what one OTLP request carried.
    pub fn spans(&self, transport: Transport, received: u64, dropped: u64, rejected: u64) {
        let counters = &self.per_transport[transport.index()];
        counters.spans_received.increment(received);
        counters.spans_dropped.increment(dropped);
        counters.rejected.increment(rejected);
    }

    /// Counts refused JSON requests.
    pub fn rejected(&self, transport: Transport, events: u64) {
        self.per_transport[transport.index()]
            .rejected
            .increment(events);
    }

    /// Counts the outcome of one ingest request's events.
    pub fn ingested(&self, transport: Transport, events: u64, committed: bool) {
        let counters = &self.per_transport[transport.index()];
        if committed {
            counters.events_accepted.increment(events);
        } else {
            counters.events_failed.increment(events);
        }
    }

    /// Sets the number of events waiting for the writer.
    pub fn set_queue_events(&self, events: u64) {
        self.queue_events.set(events as f64);
    }

    /// Records one store append.
    pub fn append(&self, events: usize, elapsed: Duration, inserted: u64, duplicates: u64) {
        self.append_duration.record(elapsed.as_secs_f64());
        self.batch_events.record(events as f64);
        self.events_stored.increment(inserted);
        self.events_duplicate.increment(duplicates);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_follows_the_naming_rules() {
        assert_eq!(CATALOG.lint(), Vec::<String>::new());
    }
}
