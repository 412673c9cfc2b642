//! Spans for the work on a frame: [`FrameSpan`], a `tracing` span exported as an
//! OpenTelemetry span by `telemetry`'s span layer, with `frame.id` and `camera.id` set,
//! parented on the frame's [`TraceContext`] when it has a valid one.
//!
//! Without that layer installed (telemetry disabled) a frame span is an ordinary
//! `tracing` span: events and attributes go nowhere and its
//! [`context`](FrameSpan::context) is invalid, which every carrier ignores.
//!
//! ```
//! use frame_tracking::{FrameId, FrameMetadata, FrameSpan};
//! use opentelemetry::KeyValue;
//!
//! let metadata = FrameMetadata::new(FrameId::generate("cam01", "rgb")?);
//! let span = FrameSpan::start("detect faces", &metadata);
//! span.set_attribute("faces.count", 2);
//! span.add_event("model loaded", vec![KeyValue::new("model", "blazeface")]);
//! span.in_scope(|| {
//!     // Work here is inside the span; its context is what a producer injects.
//! });
//! // No telemetry installed in this example: the context is invalid but harmless.
//! assert!(!span.context().is_valid());
//! # Ok::<(), frame_tracking::FrameIdError>(())
//! ```

use std::borrow::Cow;

use opentelemetry::{Key, KeyValue, Value};
use telemetry::spans::SpanExt;
use tracing::Span;

use crate::context::TraceContext;
use crate::id::FrameId;
use crate::metadata::FrameMetadata;

/// A span for one unit of work on one frame; the span ends when the last clone of its
/// `tracing` span is dropped.
#[derive(Debug, Clone)]
pub struct FrameSpan {
    span: Span,
}

impl FrameSpan {
    /// Starts a span named `name` for the frame of `metadata`: its parent is the frame's
    /// trace context when valid, else the current `tracing` span.
    pub fn start(name: &str, metadata: &FrameMetadata) -> FrameSpan {
        let parent = metadata.trace_context.clone().unwrap_or_default();
        FrameSpan::start_with_parent(name, &metadata.frame_id, &parent)
    }

    /// Starts a span named `name` for frame `frame_id` whose parent is `parent` when valid,
    /// else the current `tracing` span.
    ///
    /// ```
    /// use frame_tracking::{FrameId, FrameSpan, TraceContext};
    ///
    /// let frame_id = FrameId::generate("cam01", "rgb")?;
    /// let parent = TraceContext::from_traceparent(
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    /// )?;
    /// let span = FrameSpan::start_with_parent("resize", &frame_id, &parent);
    /// span.set_attribute("width", 640);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_with_parent(name: &str, frame_id: &FrameId, parent: &TraceContext) -> FrameSpan {
        let span = tracing::info_span!(
            "frame",
            otel.name = name,
            frame.id = frame_id.as_str(),
            camera.id = frame_id.camera_id(),
        );
        set_parent(&span, parent);
        FrameSpan { span }
    }

    /// Wraps an existing `tracing` span (for example a queue consumer span).
    pub fn from_span(span: Span) -> FrameSpan {
        FrameSpan { span }
    }

    /// The trace context of this span: what to inject so the next hop continues the trace.
    /// Invalid when telemetry is disabled.
    pub fn context(&self) -> TraceContext {
        span_context(&self.span)
    }

    /// Sets an attribute on the span.
    pub fn set_attribute(&self, key: impl Into<Key>, value: impl Into<Value>) {
        self.span.set_attribute(key, value);
    }

    /// Adds an event (a timestamped log line of the span) with attributes.
    pub fn add_event(&self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
        self.span.add_event(name, attributes);
    }

    /// Runs `work` inside the span.
    pub fn in_scope<T>(&self, work: impl FnOnce() -> T) -> T {
        self.span.in_scope(work)
    }

    /// The `tracing` span, to enter it or `instrument` a future with it.
    pub fn span(&self) -> &Span {
        &self.span
    }
}

impl TraceContext {
    /// Starts a [`FrameSpan`] named `name` for `frame_id`, child of this context when it is
    /// valid.
    ///
    /// ```
    /// use frame_tracking::{FrameId, TraceContext};
    ///
    /// let span = TraceContext::current().start_frame_span("decode", &FrameId::generate("cam01", "rgb")?);
    /// span.add_event("decoded", Vec::new());
    /// # Ok::<(), frame_tracking::FrameIdError>(())
    /// ```
    pub fn start_frame_span(&self, name: &str, frame_id: &FrameId) -> FrameSpan {
        FrameSpan::start_with_parent(name, frame_id, self)
    }
}

/// Makes `parent` the parent of `span` when it is valid; a span already started keeps its
/// parent (late changes are refused, which is harmless here).
pub(crate) fn set_parent(span: &Span, parent: &TraceContext) {
    if parent.is_valid() {
        // The only error is "already started"; the span then keeps its contextual parent.
        let _ = span.set_parent(&parent.to_otel_context());
    }
}

/// The trace context of `span` (invalid when telemetry is disabled).
pub(crate) fn span_context(span: &Span) -> TraceContext {
    TraceContext::from_otel_context(&span.context())
}

/// Adds a link from `span` to `linked` when it is valid.
pub(crate) fn add_link(span: &Span, linked: &TraceContext) {
    if linked.is_valid() {
        span.add_link(linked.span_context().clone());
    }
}
