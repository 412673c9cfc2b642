//! `tracing` spans as OTLP spans, without building OpenTelemetry span objects.
//!
//! [`SpanLayer`] (installed by [`crate::Telemetry::start`]) gives every `tracing` span a
//! trace id, span id and sampling decision exactly as the SDK would, and writes its
//! attributes, events and links as OTLP protobuf the moment they are recorded. When the
//! span closes its identity, times and status are appended and the bytes go to the
//! exporter's queue. Nothing is converted to `KeyValue`s, `SpanBuilder`s or `SpanData`
//! on the way, which is most of what a span costs with `tracing-opentelemetry`.
//!
//! [`SpanExt`] is the OpenTelemetry side of a `tracing` span (parent, context,
//! attributes, events, links, status), and [`current_context`] the context a carrier or
//! an outgoing request should continue: the current `tracing` span's, or else whatever
//! context is attached (the HTTP layer's server span while it polls a handler).
//!
//! ```
//! use telemetry::spans::SpanExt as _;
//!
//! let span = tracing::info_span!("resize", otel.kind = "internal", width = 640);
//! span.set_attribute("height", 480);
//! span.add_event("cache miss", vec![opentelemetry::KeyValue::new("key", "a1")]);
//! // Without telemetry installed the context is invalid, and carriers ignore it.
//! assert!(!opentelemetry::trace::TraceContextExt::has_active_span(&span.context()));
//! ```
//!
//! Fields with special meaning: `otel.name` (the span's name instead of the callsite's),
//! `otel.kind` (`server`, `client`, `producer`, `consumer`, `internal`),
//! `otel.status_code` (`ok`, `error`) and `otel.status_description`. An `ERROR` event
//! inside a span sets its status to error. The span ends when it closes (the last
//! handle is dropped).
//!
//! Limitation: a span's parent is the current `tracing` span when there is one, and the
//! attached OpenTelemetry context only otherwise. A handler called in-process (a tower
//! `oneshot`) from inside an entered `tracing` span therefore parents its spans on that
//! span rather than on the HTTP layer's server span.

pub(crate) mod direct;
pub(crate) mod layer;
pub(crate) mod record;

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, Status, TraceContextExt as _};
use opentelemetry::{Context, Key, KeyValue, Value};
use tracing_subscriber::registry::LookupSpan as _;

pub use layer::SpanLayer;
pub(crate) use layer::{Pipeline, Settings, SpanState};
use record::AttributeValue;

/// Why a span operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    /// The span's ids were already decided (a child, its context or an event used
    /// them); its parent can no longer change.
    #[error("the span already started; its parent can no longer change")]
    AlreadyStarted,
}

/// The OpenTelemetry side of a `tracing` span. Every method does nothing (and
/// [`context`](SpanExt::context) is empty) without a [`SpanLayer`], for example with
/// telemetry disabled.
pub trait SpanExt {
    /// Makes `cx`'s span the parent (a remote parent from a carrier, say). Only before the
    /// span started: call it right after creating the span.
    fn set_parent(&self, cx: &Context) -> Result<(), SpanError>;

    /// The span's context: what to inject into a carrier, or the parent of a span made
    /// with the OpenTelemetry API.
    fn context(&self) -> Context;

    /// Sets an attribute, replacing an earlier value of the same key.
    fn set_attribute(&self, key: impl Into<Key>, value: impl Into<Value>);

    /// Adds an event with attributes.
    fn add_event(&self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>);

    /// Adds a link to another span (a message this one handles, say).
    fn add_link(&self, linked: SpanContext);

    /// Sets the status (`Ok` is final).
    fn set_status(&self, status: Status);
}

/// Runs `f` on the state of `span` when a [`SpanLayer`] recorded it.
fn with_state<R>(span: &tracing::Span, f: impl FnOnce(&mut SpanState) -> R) -> Option<R> {
    let mut f = Some(f);
    let mut out = None;
    span.with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        let Some(data) = registry.span(id) else {
            return;
        };
        let mut extensions = data.extensions_mut();
        if let (Some(state), Some(f)) = (extensions.get_mut::<SpanState>(), f.take()) {
            out = Some(f(state));
        }
    });
    out
}

impl SpanExt for tracing::Span {
    fn set_parent(&self, cx: &Context) -> Result<(), SpanError> {
        with_state(self, |state| state.set_parent(cx)).unwrap_or(Ok(()))
    }

    fn context(&self) -> Context {
        with_state(self, SpanState::context).unwrap_or_default()
    }

    fn set_attribute(&self, key: impl Into<Key>, value: impl Into<Value>) {
        let (key, value) = (key.into(), value.into());
        with_state(self, |state| {
            if let Some((record, limits)) = state.record() {
                record.set_attribute(limits, key.as_str(), AttributeValue::Otel(&value));
            }
        });
    }

    fn add_event(&self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
        let name = name.into();
        with_state(self, |state| {
            if let Some((record, limits)) = state.record() {
                record.add_event(limits, SystemTime::now(), |writer| {
                    writer.name(&name);
                    for kv in &attributes {
                        writer.attribute(kv.key.as_str(), AttributeValue::Otel(&kv.value));
                    }
                });
            }
        });
    }

    fn add_link(&self, linked: SpanContext) {
        if !linked.is_valid() {
            return;
        }
        with_state(self, |state| {
            if let Some((record, limits)) = state.record() {
                record.add_link(limits, &linked, &[]);
            }
        });
    }

    fn set_status(&self, status: Status) {
        with_state(self, |state| state.set_status(status));
    }
}

/// The context work on this thread continues: the current `tracing` span's when a
/// [`SpanLayer`] recorded it, else the attached OpenTelemetry context (the HTTP layer's
/// server span while a handler runs, or whatever `Context::attach` installed).
pub fn current_context() -> Context {
    let span = tracing::Span::current();
    with_state(&span, SpanState::context).unwrap_or_else(Context::current)
}

/// The span context of `cx`'s span if it is valid: the parent a new span continues.
pub(crate) fn valid_span_context(cx: &Context) -> Option<SpanContext> {
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| context.clone())
}

/// The span context of [`current_context`] (invalid when there is none).
pub fn current_span_context() -> SpanContext {
    current_context().span().span_context().clone()
}
