//! The export pipeline: one dedicated thread with its own Tokio runtime runs every
//! exporter, and a batch span processor that counts what it exports and drops.
//!
//! Exporters (tonic, reqwest) need a Tokio reactor. Running them on the application's
//! runtime is how upstream setups hang or panic at shutdown on `current_thread` runtimes,
//! on a single worker, or after the runtime began to stop (opentelemetry-rust #2583, #3176,
//! #2715, #1963). Here they never touch the application's runtime: spans, logs and metrics
//! are exported on the `telemetry-export` thread, and every wait for it is bounded.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry::{Context, InstrumentationScope, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use tokio::sync::{mpsc, oneshot};

use crate::config::BatchConfig;
use crate::metrics::ExportCounters;
use crate::otlp::{OtlpSpanExporter, ScopeRun, SpanBatch};

/// A Tokio runtime on its own thread, used only for exporting telemetry.
#[derive(Debug)]
pub(crate) struct ExportRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ExportRuntime {
    pub(crate) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("telemetry-export")
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("telemetry-export".to_owned())
            .spawn(move || {
                // The runtime's I/O driver runs while this thread waits here, so exporters
                // polled from SDK threads (logs, metrics) make progress too.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Stops the runtime; waits at most `timeout` for its thread.
    pub(crate) fn stop(&mut self, timeout: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            join_within(thread, timeout);
        }
    }

    /// Leaves the runtime running, detached, for the rest of the process: for when an
    /// exporter may still be in flight. Its future may be polled by an SDK thread (the
    /// logs and metrics processors block on their exports) and would panic there if the
    /// runtime's timers shut down under it.
    pub(crate) fn detach(mut self) {
        if let Some(stop) = self.stop.take() {
            // Dropping the sender would wake the runtime's thread and shut it down.
            std::mem::forget(stop);
        }
        drop(self.thread.take());
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(200));
    }
}

/// Joins a thread if it ends within `timeout`; otherwise leaves it detached.
pub(crate) fn join_within(thread: JoinHandle<()>, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while !thread.is_finished() {
        if std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = thread.join();
}

/// A future that enters the export runtime's context on every poll, so an exporter can be
/// driven from an SDK thread while its I/O is registered with the export runtime.
pub(crate) struct OnRuntime<F> {
    handle: tokio::runtime::Handle,
    future: Pin<Box<F>>,
}

impl<F> OnRuntime<F> {
    pub(crate) fn new(handle: tokio::runtime::Handle, future: F) -> Self {
        Self {
            handle,
            future: Box::pin(future),
        }
    }
}

impl<F: Future> Future for OnRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _guard = this.handle.enter();
        this.future.as_mut().poll(cx)
    }
}

/// Messages from the processor to its export task.
#[derive(Debug)]
enum Control {
    Flush(crossbeam_channel::Sender<OTelSdkResult>),
    Shutdown(crossbeam_channel::Sender<OTelSdkResult>),
}

/// Batches ended spans and exports them on the export runtime.
///
/// Spans the queue cannot take are dropped and counted, never blocked on; so are spans
/// of failed exports. `telemetry_spans_ended_total` = exported + dropped + queued.
///
/// A span is encoded to OTLP protobuf on the thread that ended it, into a buffer from that
/// thread's pool, and nothing it owns crosses threads: the strings and vectors a span owns
/// are freed by the thread that allocated them (with glibc, frees from another thread take
/// the slow path of the allocator on both sides). Handing it over is one copy of its bytes
/// into the [`SpanQueue`] under a short lock, and at steady state allocates nothing; the
/// export task is woken only when a batch is full or the schedule delay passed, never per
/// span (a wake per span cost more than the rest of the instrumentation together).
#[derive(Debug)]
pub(crate) struct BatchSpanProcessor {
    queue: Arc<SpanQueue>,
    batch_ready: Arc<BatchSignal>,
    max_export_batch_size: usize,
    control: mpsc::UnboundedSender<Control>,
    counters: ExportCounters,
    is_shutdown: AtomicBool,
    shutdown_timeout: Duration,
}

impl BatchSpanProcessor {
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        exporter: OtlpSpanExporter,
        config: BatchConfig,
        shutdown_timeout: Duration,
    ) -> Self {
        let queue = Arc::new(SpanQueue::new(
            config.max_queue_size,
            config.max_export_batch_size,
        ));
        let (control, control_rx) = mpsc::unbounded_channel();
        let counters = ExportCounters::register();
        let batch_ready = Arc::new(BatchSignal::default());
        let worker = ExportWorker {
            exporter,
            queue: queue.clone(),
            batch_ready: batch_ready.clone(),
            control: control_rx,
            config,
            counters: counters.clone(),
        };
        runtime.spawn(worker.run());
        Self {
            queue,
            batch_ready,
            max_export_batch_size: config.max_export_batch_size,
            control,
            counters,
            is_shutdown: AtomicBool::new(false),
            shutdown_timeout,
        }
    }

    fn request(
        &self,
        make: impl FnOnce(crossbeam_channel::Sender<OTelSdkResult>) -> Control,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (reply, replied) = crossbeam_channel::bounded(1);
        self.control
            .send(make(reply))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        // A plain blocking wait with a bound: it works inside or outside any runtime, of
        // any flavour, because the export happens on the export thread.
        match replied.recv_timeout(timeout) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(OTelSdkError::Timeout(timeout))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                Err(OTelSdkError::AlreadyShutdown)
            }
        }
    }
}

impl BatchSpanProcessor {
    /// Counts one ended span and tells whether the queue would take it; a span refused
    /// here (queue full, shut down) is counted as dropped and not worth encoding.
    fn admit(&self) -> bool {
        self.counters.ended.increment(1);
        if self.is_shutdown.load(Ordering::Relaxed) {
            self.counters.dropped_shutdown.increment(1);
            return false;
        }
        if self.queue.len() >= self.queue.capacity {
            self.counters.dropped_queue_full.increment(1);
            return false;
        }
        true
    }

    /// Queues an admitted span; wakes the export task when a batch is full.
    fn push(&self, scope: &InstrumentationScope, span: &[u8]) {
        match self.queue.push(scope, span) {
            None => self.counters.dropped_queue_full.increment(1),
            Some(queued) => {
                if queued >= self.max_export_batch_size
                    && !self.batch_ready.pending.swap(true, Ordering::AcqRel)
                {
                    self.batch_ready.notify.notify_one();
                }
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.request(Control::Flush, self.shutdown_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.is_shutdown.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.request(Control::Shutdown, timeout)
    }
}

/// Where ended spans go, encoded once: the OTLP batch processor and/or the console
/// (`OTEL_TRACES_EXPORTER`). Shared by the SDK's spans (through [`SinkProcessor`]) and
/// the `tracing` spans of [`crate::spans::SpanLayer`], which encode themselves.
#[derive(Debug, Default)]
pub(crate) struct SpanSinks {
    batch: Option<BatchSpanProcessor>,
    console: Option<ConsoleSink>,
    value_length_limit: Option<usize>,
}

/// Which sinks take a span that ended: the result of [`SpanSinks::admit`].
#[derive(Debug, Clone, Copy)]
#[must_use]
pub(crate) struct Admission {
    batch: bool,
    console: bool,
}

impl Admission {
    /// Whether any sink takes the span (else encoding it is wasted work).
    pub(crate) fn any(self) -> bool {
        self.batch || self.console
    }
}

impl SpanSinks {
    pub(crate) fn new(
        batch: Option<BatchSpanProcessor>,
        console: bool,
        value_length_limit: Option<usize>,
    ) -> Self {
        Self {
            batch,
            console: console.then(ConsoleSink::default),
            value_length_limit,
        }
    }

    /// Whether no exporter takes spans (`OTEL_TRACES_EXPORTER=none`).
    pub(crate) fn is_empty(&self) -> bool {
        self.batch.is_none() && self.console.is_none()
    }

    /// Counts one ended, sampled span and tells which sinks take it.
    pub(crate) fn admit(&self) -> Admission {
        Admission {
            batch: self.batch.as_ref().is_some_and(BatchSpanProcessor::admit),
            console: self.console.is_some(),
        }
    }

    /// Hands an encoded span (a `ScopeSpans.spans` field) to the sinks that admitted it.
    pub(crate) fn deliver(&self, admission: Admission, scope: &InstrumentationScope, bytes: &[u8]) {
        if admission.console
            && let Some(console) = &self.console
        {
            console.print(scope, bytes);
        }
        if admission.batch
            && let Some(batch) = &self.batch
        {
            batch.push(scope, bytes);
        }
    }

    pub(crate) fn force_flush(&self) -> OTelSdkResult {
        self.batch
            .as_ref()
            .map_or(Ok(()), BatchSpanProcessor::force_flush)
    }

    pub(crate) fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.batch
            .as_ref()
            .map_or(Ok(()), |batch| batch.shutdown_with_timeout(timeout))
    }
}

/// The SDK's side of [`SpanSinks`]: spans made with the OpenTelemetry API (the HTTP
/// layer's server spans, the client's spans, `global::tracer`) are encoded from their
/// `SpanData` on the thread that ended them.
#[derive(Debug)]
pub(crate) struct SinkProcessor(pub(crate) Arc<SpanSinks>);

impl SpanProcessor for SinkProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, mut span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let admission = self.0.admit();
        if !admission.any() {
            return;
        }
        if let Some(limit) = self.0.value_length_limit {
            truncate_values(&mut span, limit);
        }
        let mut bytes = span_buffer();
        crate::otlp::encode_span(&mut bytes, &span);
        self.0
            .deliver(admission, &span.instrumentation_scope, &bytes);
        recycle_span_buffer(bytes);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
}

/// `OTEL_TRACES_EXPORTER=console`: each span as one JSON line on stdout, when it ends.
#[derive(Debug, Default)]
pub(crate) struct ConsoleSink;

impl ConsoleSink {
    fn print(&self, scope: &InstrumentationScope, bytes: &[u8]) {
        let Some(line) = crate::otlp::span_json(scope, bytes) else {
            return;
        };
        let mut line = line.to_string();
        line.push('\n');
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
    }
}

/// Cuts string attribute values (and strings inside arrays) to `limit` bytes at a char
/// boundary: `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, which the Rust SDK does not implement.
pub(crate) fn truncate_values(span: &mut SpanData, limit: usize) {
    for kv in &mut span.attributes {
        truncate_value(&mut kv.value, limit);
    }
    for event in &mut span.events.events {
        for kv in &mut event.attributes {
            truncate_value(&mut kv.value, limit);
        }
    }
}

pub(crate) fn truncate_value(value: &mut Value, limit: usize) {
    match value {
        Value::String(s) if s.as_str().len() > limit => {
            *value = Value::String(truncate_str(s.as_str(), limit).to_owned().into());
        }
        Value::Array(opentelemetry::Array::String(items)) => {
            for item in items.iter_mut() {
                if item.as_str().len() > limit {
                    *item = truncate_str(item.as_str(), limit).to_owned().into();
                }
            }
        }
        _ => {}
    }
}

pub(crate) fn truncate_str(s: &str, limit: usize) -> &str {
    let mut end = limit.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The batch processor's queue: ended spans' bytes appended to their scope's run, under
/// a lock held for one copy.
///
/// Handing a span over is a copy of its encoded bytes (a few hundred) into the current
/// run, so the buffer it was recorded in goes straight back to its thread's pool
/// ([`span_buffer`]); the export task takes whole runs and writes each with one copy. At
/// most `capacity` spans wait. A run holds at most `run_spans` (the export batch size), so
/// a full queue is a few batch-sized runs that leave whole, not one run that grows by
/// doubling and is cut (and its rest moved) for every batch; the run buffers are reused
/// from batch to batch.
#[derive(Debug)]
pub(crate) struct SpanQueue {
    state: Mutex<Queued>,
    /// The number of queued spans, readable without the lock.
    len: AtomicUsize,
    capacity: usize,
    run_spans: usize,
}

#[derive(Debug, Default)]
struct Queued {
    runs: Vec<ScopeRun>,
    spans: usize,
    /// Emptied run buffers from exported batches.
    spare: Vec<Vec<u8>>,
}

/// Run buffers kept for reuse, and the largest kept: one run is filled while the last
/// batch's is written, and a batch of 512 usual spans takes about 200 KiB; a buffer that
/// grew larger in a burst is freed, so that the queue's memory goes back down.
const SPARE_RUNS: usize = 2;
const MAX_SPARE_CAPACITY: usize = 512 * 1024;

impl SpanQueue {
    /// A queue of at most `capacity` spans in runs of at most `run_spans`.
    pub(crate) fn new(capacity: usize, run_spans: usize) -> Self {
        Self {
            state: Mutex::default(),
            len: AtomicUsize::new(0),
            capacity,
            run_spans: run_spans.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queued> {
        // The lock guards plain data that every holder leaves consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of queued spans.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Queues one `ScopeSpans.spans` field; returns the number queued, or `None` when the
    /// queue is full.
    pub(crate) fn push(&self, scope: &InstrumentationScope, span: &[u8]) -> Option<usize> {
        let mut queued = self.lock();
        if queued.spans >= self.capacity {
            return None;
        }
        let state = &mut *queued;
        // One open run per scope (a process has a few), so that spans of interleaved scopes
        // still go out in a few `ScopeSpans`.
        match state
            .runs
            .iter_mut()
            .rev()
            .find(|run| crate::otlp::same_scope(&run.scope, scope))
            .filter(|run| run.spans < self.run_spans)
        {
            Some(run) => {
                run.bytes.extend_from_slice(span);
                run.spans += 1;
            }
            None => {
                let mut bytes = state.spare.pop().unwrap_or_default();
                bytes.extend_from_slice(span);
                state.runs.push(ScopeRun {
                    scope: scope.clone(),
                    bytes,
                    spans: 1,
                });
            }
        }
        state.spans += 1;
        self.len.store(state.spans, Ordering::Relaxed);
        Some(state.spans)
    }

    /// Takes up to `max` queued spans, as runs (the runs started first, first).
    pub(crate) fn take(&self, max: usize) -> Vec<ScopeRun> {
        let mut queued = self.lock();
        let state = &mut *queued;
        let taken = if state.spans <= max {
            state.spans = 0;
            std::mem::take(&mut state.runs)
        } else {
            let mut taken = Vec::new();
            let mut left = max;
            while left > 0 && !state.runs.is_empty() {
                let first = &mut state.runs[0];
                if first.spans <= left {
                    left -= first.spans;
                    taken.push(state.runs.remove(0));
                } else {
                    // Split the run after its first `left` spans.
                    let cut = crate::otlp::fields_len(&first.bytes, left);
                    let head: Vec<u8> = first.bytes.drain(..cut).collect();
                    first.spans -= left;
                    taken.push(ScopeRun {
                        scope: first.scope.clone(),
                        bytes: head,
                        spans: left,
                    });
                    left = 0;
                }
            }
            state.spans -= max - left;
            taken
        };
        self.len.store(state.spans, Ordering::Relaxed);
        taken
    }

    /// Takes back an exported run's buffer.
    pub(crate) fn recycle(&self, mut bytes: Vec<u8>) {
        if bytes.capacity() > MAX_SPARE_CAPACITY {
            return;
        }
        bytes.clear();
        let mut queued = self.lock();
        if queued.spare.len() < SPARE_RUNS {
            queued.spare.push(bytes);
        }
    }
}

/// Span buffers a thread keeps for reuse, and the largest kept (a usual span takes 300 to
/// 600 bytes; a larger buffer is freed).
const POOLED_BUFFERS: usize = 16;
const MAX_POOLED_CAPACITY: usize = 2 * 1024;

/// The capacity of a fresh span buffer: a usual span fits, where growing from empty would
/// take six reallocations. Threads that start more spans than they end (a span started on
/// one thread and ended on another gives its buffer to the other) take fresh ones often.
const FRESH_SPAN_CAPACITY: usize = 512;

thread_local! {
    /// This thread's spare span buffers: a span is recorded into one while it runs, and
    /// the buffer comes back when it has been handed over (or dropped).
    static SPAN_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer to record a span into: one of this thread's spare ones when it has any.
pub(crate) fn span_buffer() -> Vec<u8> {
    SPAN_BUFFERS
        .try_with(|pool| pool.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(FRESH_SPAN_CAPACITY))
}

/// Gives a span buffer back to this thread's pool (emptied), or frees it.
pub(crate) fn recycle_span_buffer(mut buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > MAX_POOLED_CAPACITY {
        return;
    }
    buffer.clear();
    let _ = SPAN_BUFFERS.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED_BUFFERS {
            pool.push(buffer);
        }
    });
}

/// Wakes the export task once per full batch.
#[derive(Debug, Default)]
struct BatchSignal {
    notify: tokio::sync::Notify,
    /// Set by the producer that notified, cleared by the task once it took the batch, so
    /// producers notify at most once per batch.
    pending: AtomicBool,
}

struct ExportWorker {
    exporter: OtlpSpanExporter,
    queue: Arc<SpanQueue>,
    batch_ready: Arc<BatchSignal>,
    control: mpsc::UnboundedReceiver<Control>,
    config: BatchConfig,
    counters: ExportCounters,
}

impl ExportWorker {
    async fn run(mut self) {
        let timer = tokio::time::sleep(self.config.schedule_delay);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                control = self.control.recv() => {
                    let result = self.export_queued(1).await;
                    match control {
                        Some(Control::Flush(reply)) => {
                            let _ = reply.send(result);
                        }
                        Some(Control::Shutdown(reply)) => {
                            let _ = reply.send(result);
                            return;
                        }
                        None => return,
                    }
                }
                () = self.batch_ready.notify.notified() => {
                    self.batch_ready.pending.store(false, Ordering::Release);
                    // Full batches only; the rest waits for the timer.
                    let _ = self.export_queued(self.config.max_export_batch_size).await;
                }
                () = &mut timer => {
                    let _ = self.export_queued(1).await;
                    timer.as_mut().reset(tokio::time::Instant::now() + self.config.schedule_delay);
                }
            }
        }
    }

    /// Exports queued spans in batches while at least `at_least` are waiting.
    async fn export_queued(&mut self, at_least: usize) -> OTelSdkResult {
        let mut result = Ok(());
        while self.queue.len() >= at_least.max(1) {
            let runs = self.queue.take(self.config.max_export_batch_size);
            if let Err(error) = self.export(runs).await {
                result = Err(error);
            }
        }
        result
    }

    /// Exports `runs`; their buffers go back to the queue once the request is written.
    async fn export(&mut self, runs: Vec<ScopeRun>) -> OTelSdkResult {
        let count = runs.iter().map(|run| run.spans as u64).sum::<u64>();
        if count == 0 {
            return Ok(());
        }
        let outcome = tokio::time::timeout(
            self.config.export_timeout,
            self.exporter
                .export(SpanBatch::new(runs, self.queue.clone())),
        )
        .await;
        let result = match outcome {
            Ok(Ok(())) => {
                self.counters.exported.increment(count);
                return Ok(());
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(OTelSdkError::Timeout(self.config.export_timeout)),
        };
        self.counters.failures.increment(1);
        self.counters.dropped_export_failed.increment(count);
        if let Err(error) = &result {
            tracing::warn!(target: "telemetry::export", spans = count, error = %error, "span export failed");
        }
        result
    }
}

/// Wraps an exporter so its futures run with the export runtime entered (logs, metrics).
#[derive(Debug)]
pub(crate) struct RuntimeExporter<E> {
    pub(crate) inner: E,
    pub(crate) handle: tokio::runtime::Handle,
}

impl<E: opentelemetry_sdk::logs::LogExporter> opentelemetry_sdk::logs::LogExporter
    for RuntimeExporter<E>
{
    fn export(
        &self,
        batch: opentelemetry_sdk::logs::LogBatch<'_>,
    ) -> impl Future<Output = OTelSdkResult> + Send {
        OnRuntime::new(self.handle.clone(), self.inner.export(batch))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: opentelemetry_sdk::metrics::exporter::PushMetricExporter>
    opentelemetry_sdk::metrics::exporter::PushMetricExporter for RuntimeExporter<E>
{
    fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> impl Future<Output = OTelSdkResult> + Send {
        let handle = self.handle.clone();
        let failures =
            metrics::counter!(crate::metrics::standard::EXPORT_FAILURES, "signal" => "metrics");
        OnRuntime::new(handle, async move {
            let result = self.inner.export(metrics).await;
            if result.is_err() {
                failures.increment(1);
            }
            result
        })
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `ScopeSpans.spans` field holding `payload`, as the span encoders write it.
    fn field(payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        let at = crate::otlp::begin(&mut buf, 2);
        buf.extend_from_slice(payload);
        crate::otlp::end(&mut buf, at);
        buf
    }

    #[test]
    fn the_queue_keeps_order_groups_scopes_and_splits_runs() {
        let a = InstrumentationScope::builder("a").build();
        let b = InstrumentationScope::builder("b").build();
        let queue = SpanQueue::new(5, 5);
        let spans: Vec<Vec<u8>> = (0..6_u8)
            .map(|i| field(&vec![i; 200 + usize::from(i)]))
            .collect();
        assert_eq!(queue.push(&a, &spans[0]), Some(1));
        assert_eq!(queue.push(&a, &spans[1]), Some(2));
        assert_eq!(queue.push(&b, &spans[2]), Some(3));
        assert_eq!(queue.push(&a, &spans[3]), Some(4));
        assert_eq!(queue.push(&a, &spans[4]), Some(5));
        assert_eq!(queue.push(&a, &spans[5]), None, "full");
        assert_eq!(queue.len(), 5);

        // Spans of one scope share a run. A batch of 3 takes three of the four in `a`'s.
        let first = queue.take(3);
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].scope.name(), first[0].spans), ("a", 3));
        assert_eq!(
            first[0].bytes,
            [&spans[0][..], &spans[1][..], &spans[3][..]].concat()
        );
        assert_eq!(queue.len(), 2);

        let rest = queue.take(4);
        let shape: Vec<(&str, usize)> = rest.iter().map(|r| (r.scope.name(), r.spans)).collect();
        assert_eq!(shape, [("a", 1), ("b", 1)]);
        assert_eq!(rest[0].bytes, spans[4]);
        assert_eq!(rest[1].bytes, spans[2]);
        assert_eq!(queue.len(), 0);
        assert!(queue.take(4).is_empty());

        // Exported runs' buffers are reused, emptied.
        for run in first {
            queue.recycle(run.bytes);
        }
        assert_eq!(queue.push(&b, &spans[5]), Some(1));
        let reused = queue.take(1);
        assert_eq!(reused[0].bytes, spans[5]);
        assert!(reused[0].bytes.capacity() >= 400);
    }

    #[test]
    fn runs_hold_at_most_a_batch_and_leave_whole() {
        let a = InstrumentationScope::builder("a").build();
        let b = InstrumentationScope::builder("b").build();
        let queue = SpanQueue::new(100, 2);
        let spans: Vec<Vec<u8>> = (0..6_u8).map(|i| field(&[i; 30])).collect();
        for (i, span) in spans.iter().enumerate() {
            // a a b a a a: `a` fills a run of two, then opens the next.
            let scope = if i == 2 { &b } else { &a };
            assert_eq!(queue.push(scope, span), Some(i + 1));
        }
        let shape = |runs: &[ScopeRun]| -> Vec<(String, usize)> {
            runs.iter()
                .map(|r| (r.scope.name().to_owned(), r.spans))
                .collect()
        };
        let batch = queue.take(2);
        assert_eq!(shape(&batch), [("a".to_owned(), 2)]);
        assert_eq!(batch[0].bytes, [&spans[0][..], &spans[1][..]].concat());
        let batch = queue.take(3);
        assert_eq!(shape(&batch), [("b".to_owned(), 1), ("a".to_owned(), 2)]);
        assert_eq!(batch[1].bytes, [&spans[3][..], &spans[4][..]].concat());
        let batch = queue.take(2);
        assert_eq!(shape(&batch), [("a".to_owned(), 1)]);
        assert_eq!(batch[0].bytes, spans[5]);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn spans_pushed_from_many_threads_while_batches_are_taken_arrive_whole() {
        let scopes = [
            InstrumentationScope::builder("a").build(),
            InstrumentationScope::builder("b").build(),
        ];
        let queue = SpanQueue::new(10_000, 512);
        let (threads, per_thread) = (4_usize, 1_000_usize);
        let mut taken = Vec::new();
        std::thread::scope(|s| {
            for t in 0..threads {
                let (queue, scopes) = (&queue, &scopes);
                s.spawn(move || {
                    for i in 0..per_thread {
                        // Payloads of varying length, tagged with their thread and number.
                        let mut payload = vec![t as u8; 20 + i % 300];
                        payload[1..5].copy_from_slice(&(i as u32).to_le_bytes());
                        assert!(queue.push(&scopes[i % 2], &field(&payload)).is_some());
                    }
                });
            }
            while taken.iter().map(|r: &ScopeRun| r.spans).sum::<usize>() < threads * per_thread {
                taken.extend(queue.take(512));
                std::thread::yield_now();
            }
        });
        assert_eq!(queue.len(), 0);
        // Every span is whole: walk each run's fields and check what each one holds.
        let mut seen = vec![vec![false; per_thread]; threads];
        for run in &taken {
            let mut rest = &run.bytes[..];
            for _ in 0..run.spans {
                let len = crate::otlp::fields_len(rest, 1);
                let payload = &rest[5..len];
                let (t, i) = (
                    usize::from(payload[0]),
                    u32::from_le_bytes(payload[1..5].try_into().unwrap()) as usize,
                );
                assert_eq!(payload.len(), 20 + i % 300);
                assert_eq!(run.scope.name(), ["a", "b"][i % 2]);
                assert!(!seen[t][i], "span {t}/{i} twice");
                seen[t][i] = true;
                rest = &rest[len..];
            }
            assert!(rest.is_empty());
        }
        assert!(seen.iter().flatten().all(|s| *s));
    }

    #[test]
    fn span_buffers_come_back_to_their_thread() {
        let mut buffer = span_buffer();
        buffer.extend_from_slice(&[1; 300]);
        let pointer = buffer.as_ptr();
        recycle_span_buffer(buffer);
        let again = span_buffer();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), pointer);
        // Too large to keep: the next one is fresh, with room for a usual span.
        recycle_span_buffer(Vec::with_capacity(MAX_POOLED_CAPACITY + 1));
        assert_eq!(span_buffer().capacity(), FRESH_SPAN_CAPACITY);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_str("héllo", 2), "h");
        assert_eq!(truncate_str("héllo", 3), "hé");
        assert_eq!(truncate_str("abc", 10), "abc");
    }
}
