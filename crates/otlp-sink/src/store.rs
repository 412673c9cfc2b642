//! The state shared by the gRPC and HTTP receivers: what arrived, how to answer, and a
//! change signal for waiters.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::HeaderMap;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::convert::{self, Origin};
use crate::error::WaitError;
use crate::model::{Counts, ReceivedLog, ReceivedMetric, ReceivedSpan, RequestInfo, Signal};
use crate::sink::{Behaviour, Retention};

/// How many item descriptions a [`WaitError`] lists before eliding the rest.
const DESCRIBED_ITEMS: usize = 20;

/// Everything the receivers share.
#[derive(Debug)]
pub(crate) struct Store {
    retention: Retention,
    state: Mutex<State>,
    behaviour: Mutex<Behaviour>,
    /// Bumped after every change to `state`, so waiters need not poll.
    changed: watch::Sender<u64>,
}

/// What an export request looked like on the wire, before decoding its items.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub(crate) origin: Origin,
    pub(crate) headers: Vec<(String, String)>,
}

/// A decoded export request of any signal.
pub(crate) trait ExportRequest {
    const SIGNAL: Signal;

    /// The number of spans, log records or metrics in the request.
    fn items(&self) -> usize;

    /// Flattens the request into the items a test asserts on.
    fn flatten(self, origin: Origin) -> Flattened;
}

/// The flattened items of one request.
#[derive(Debug)]
pub(crate) enum Flattened {
    Spans(Vec<ReceivedSpan>),
    Logs(Vec<ReceivedLog>),
    Metrics(Vec<ReceivedMetric>),
}

#[derive(Debug, Default)]
struct State {
    spans: Vec<ReceivedSpan>,
    logs: Vec<ReceivedLog>,
    metrics: Vec<ReceivedMetric>,
    requests: Vec<RequestInfo>,
    counts: Counts,
}

/// Header or metadata entries as lowercase-name/value pairs, values converted lossily.
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

impl Store {
    pub(crate) fn new(retention: Retention) -> Self {
        Self {
            retention,
            state: Mutex::new(State::default()),
            behaviour: Mutex::new(Behaviour::Accept),
            changed: watch::Sender::new(0),
        }
    }

    pub(crate) fn behaviour(&self) -> Behaviour {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_behaviour(&self, behaviour: Behaviour) {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    /// Records a decoded request and returns the behaviour its response must follow.
    ///
    /// Items of a request answered `Unavailable` are counted in its [`RequestInfo`] but
    /// not stored, since the exporter will consider them failed. Items of a delayed
    /// request are stored at once, before the delay, so what is stored does not depend
    /// on whether the client waited for the answer.
    pub(crate) fn receive<R: ExportRequest>(&self, request: R, arrival: Arrival) -> Behaviour {
        let behaviour = self.behaviour();
        let accepted = !matches!(behaviour, Behaviour::Unavailable);
        let items = request.items();
        let Arrival { origin, headers } = arrival;
        let retain = self.retention == Retention::All;
        // Flatten before taking the lock so concurrent requests do not serialise on it.
        let flattened = (retain && accepted).then(|| request.flatten(origin));
        self.update(|state| {
            let counts = &mut state.counts;
            counts.requests += 1;
            if accepted {
                let added = items as u64;
                match R::SIGNAL {
                    Signal::Traces => counts.spans += added,
                    Signal::Logs => counts.logs += added,
                    Signal::Metrics => counts.metrics += added,
                }
            } else {
                counts.rejected_requests += 1;
            }
            if retain {
                state.requests.push(RequestInfo {
                    signal: R::SIGNAL,
                    transport: origin.transport,
                    compressed: origin.compressed,
                    headers,
                    items,
                    accepted,
                });
            }
            match flattened {
                Some(Flattened::Spans(spans)) => state.spans.extend(spans),
                Some(Flattened::Logs(logs)) => state.logs.extend(logs),
                Some(Flattened::Metrics(metrics)) => state.metrics.extend(metrics),
                None => {}
            }
        });
        behaviour
    }

    pub(crate) fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    pub(crate) fn logs(&self) -> Vec<ReceivedLog> {
        self.lock().logs.clone()
    }

    pub(crate) fn metrics(&self) -> Vec<ReceivedMetric> {
        self.lock().metrics.clone()
    }

    pub(crate) fn requests(&self) -> Vec<RequestInfo> {
        self.lock().requests.clone()
    }

    pub(crate) fn counts(&self) -> Counts {
        self.lock().counts
    }

    pub(crate) fn clear(&self) {
        self.update(|state| *state = State::default());
    }

    pub(crate) async fn wait_for_spans<F>(
        &self,
        predicate: F,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitError>
    where
        F: FnMut(&[ReceivedSpan]) -> bool,
    {
        self.wait_for(
            Signal::Traces,
            |state| &state.spans,
            |span| &span.name,
            predicate,
            timeout,
        )
        .await
    }

    pub(crate) async fn wait_for_logs<F>(
        &self,
        predicate: F,
        timeout: Duration,
    ) -> Result<Vec<ReceivedLog>, WaitError>
    where
        F: FnMut(&[ReceivedLog]) -> bool,
    {
        self.wait_for(
            Signal::Logs,
            |state| &state.logs,
            |log| &log.body,
            predicate,
            timeout,
        )
        .await
    }

    pub(crate) async fn wait_for_metrics<F>(
        &self,
        predicate: F,
        timeout: Duration,
    ) -> Result<Vec<ReceivedMetric>, WaitError>
    where
        F: FnMut(&[ReceivedMetric]) -> bool,
    {
        self.wait_for(
            Signal::Metrics,
            |state| &state.metrics,
            |metric| &metric.name,
            predicate,
            timeout,
        )
        .await
    }

    /// Waits until `predicate` holds for the items `select` picks, re-checking after
    /// every change.
    async fn wait_for<T, F>(
        &self,
        signal: Signal,
        select: fn(&State) -> &Vec<T>,
        describe: fn(&T) -> &str,
        mut predicate: F,
        timeout: Duration,
    ) -> Result<Vec<T>, WaitError>
    where
        T: Clone,
        F: FnMut(&[T]) -> bool,
    {
        let deadline = Instant::now() + timeout;
        let mut changed = self.changed.subscribe();
        loop {
            // Mark the current version seen before looking, so a change made after
            // the snapshot wakes the wait below.
            changed.borrow_and_update();
            // Run the predicate on a copy, outside the lock, so it may call the sink.
            let items = select(&self.lock()).clone();
            if predicate(&items) {
                return Ok(items);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `self`, so it cannot close while we borrow it;
                // treat a closed channel like a timeout rather than spinning.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        // One last look, for a change that raced with the deadline.
        let items = select(&self.lock()).clone();
        if predicate(&items) {
            return Ok(items);
        }
        let mut seen = items
            .iter()
            .take(DESCRIBED_ITEMS)
            .map(describe)
            .collect::<Vec<_>>()
            .join(", ");
        if items.len() > DESCRIBED_ITEMS {
            seen.push_str(", ...");
        }
        Err(WaitError::Timeout {
            signal,
            timeout,
            received: items.len(),
            seen,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking predicate must not make the sink unusable for later assertions.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changed
            .send_modify(|version| *version = version.wrapping_add(1));
    }
}

impl ExportRequest for ExportTraceServiceRequest {
    const SIGNAL: Signal = Signal::Traces;

    fn items(&self) -> usize {
        convert::span_count(self)
    }

    fn flatten(self, origin: Origin) -> Flattened {
        Flattened::Spans(convert::spans(self, origin))
    }
}

impl ExportRequest for ExportLogsServiceRequest {
    const SIGNAL: Signal = Signal::Logs;

    fn items(&self) -> usize {
        convert::log_count(self)
    }

    fn flatten(self, origin: Origin) -> Flattened {
        Flattened::Logs(convert::logs(self, origin))
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    const SIGNAL: Signal = Signal::Metrics;

    fn items(&self) -> usize {
        convert::metric_count(self)
    }

    fn flatten(self, origin: Origin) -> Flattened {
        Flattened::Metrics(convert::metrics(self, origin))
    }
}
