//! Cached handles of the HTTP metrics, so a request costs atomic operations and a
//! read-locked map lookup instead of a registry lookup with label allocation.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use metrics::{Gauge, Histogram, SharedString};

use crate::http::{METHODS, UNMATCHED_ROUTE};
use crate::metrics::standard;

/// The histograms of one name, by packed (method, status) code.
type Series = Vec<(u32, Histogram)>;

/// Histogram handles keyed by a name (route or peer) and a packed (method, status) code.
/// The key set is bounded because names are templates or configured peers, methods are
/// [`METHODS`] and statuses are three digits.
#[derive(Debug, Default)]
pub(crate) struct HistogramCache {
    map: RwLock<HashMap<Box<str>, Series>>,
}

impl HistogramCache {
    /// Records `value` in the series `(name, method, status)`, registering it on first use.
    pub(crate) fn record(
        &self,
        metric: &'static str,
        name_label: &'static str,
        name: &str,
        method: usize,
        status: u16,
        value: f64,
    ) {
        let code = ((method as u32) << 16) | u32::from(status);
        if let Ok(map) = self.map.read()
            && let Some((_, histogram)) = map
                .get(name)
                .and_then(|v| v.iter().find(|(c, _)| *c == code))
        {
            histogram.record(value);
            return;
        }
        let histogram = metrics::histogram!(
            metric,
            "method" => METHODS[method],
            name_label => SharedString::from(name.to_owned()),
            "status_code" => status_label(status),
        );
        histogram.record(value);
        if let Ok(mut map) = self.map.write() {
            map.entry(name.into()).or_default().push((code, histogram));
        }
    }
}

/// The request-duration histograms of one kept route, by packed (method, status) code,
/// so that recording costs a read lock and a short scan instead of a registry lookup.
#[derive(Debug, Default)]
pub(crate) struct RouteDurations {
    series: RwLock<Series>,
}

impl RouteDurations {
    /// Records `elapsed` for `(route, method, status)`, registering the series on first use.
    pub(crate) fn record(
        &self,
        route: &'static str,
        method: usize,
        status: u16,
        elapsed: Duration,
    ) {
        let code = ((method as u32) << 16) | u32::from(status);
        let value = elapsed.as_secs_f64();
        if let Ok(series) = self.series.read()
            && let Some((_, histogram)) = series.iter().find(|(c, _)| *c == code)
        {
            histogram.record(value);
            return;
        }
        let histogram = duration_histogram(method, SharedString::const_str(route), status);
        histogram.record(value);
        if let Ok(mut series) = self.series.write() {
            series.push((code, histogram));
        }
    }
}

/// Server-side RED metrics.
#[derive(Debug)]
pub(crate) struct ServerMetrics {
    active: Vec<Gauge>,
    /// Requests no route matched.
    unmatched: RouteDurations,
}

impl ServerMetrics {
    pub(crate) fn new() -> Self {
        Self {
            active: METHODS
                .iter()
                .map(|m| metrics::gauge!(standard::HTTP_SERVER_ACTIVE_REQUESTS, "method" => *m))
                .collect(),
            unmatched: RouteDurations::default(),
        }
    }

    #[inline]
    pub(crate) fn active(&self, method: usize) -> &Gauge {
        &self.active[method]
    }

    /// Records the duration of a request no route matched.
    pub(crate) fn record_unmatched(&self, method: usize, status: u16, elapsed: Duration) {
        self.unmatched
            .record(UNMATCHED_ROUTE, method, status, elapsed);
    }

    /// Records the duration of a request whose route is not kept (past the limit of kept
    /// routes): a registry lookup per request.
    pub(crate) fn record_uncached(
        &self,
        method: usize,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
        duration_histogram(method, SharedString::from(route.to_owned()), status)
            .record(elapsed.as_secs_f64());
    }

    /// Errors are rare, so they go through the registry instead of a cache.
    pub(crate) fn record_error(&self, method: usize, route: Option<&str>, error_type: &str) {
        metrics::counter!(
            standard::HTTP_SERVER_ERRORS,
            "method" => METHODS[method],
            "route" => SharedString::from(route.unwrap_or(UNMATCHED_ROUTE).to_owned()),
            "error_type" => SharedString::from(error_type.to_owned()),
        )
        .increment(1);
    }
}

fn duration_histogram(method: usize, route: SharedString, status: u16) -> Histogram {
    metrics::histogram!(
        standard::HTTP_SERVER_REQUEST_DURATION,
        "method" => METHODS[method],
        "route" => route,
        "status_code" => status_label(status),
    )
}

/// The status code as a label; `0` (no response) and codes outside 100..=599 collapse into
/// one value each.
pub(crate) fn status_label(status: u16) -> SharedString {
    match status {
        100..=599 => SharedString::from(status.to_string()),
        0 => SharedString::const_str("none"),
        _ => SharedString::const_str("_OTHER"),
    }
}
