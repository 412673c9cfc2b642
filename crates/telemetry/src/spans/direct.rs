//! [`DirectSpan`]: an OpenTelemetry API span that records like the span layer's spans,
//! for the crate's own server and client spans.
//!
//! It is an `opentelemetry::trace::Span`, so it lives in a `Context` like any other span
//! (handlers find it current, `ServerSpan` sets attributes on it), but its attributes are
//! written as OTLP protobuf when they are set and it goes to the export queue as bytes
//! when it ends, without the SDK's span object, `SpanData` or the `KeyValue`s behind them.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanKind, Status};
use opentelemetry::{Context, KeyValue};

use crate::config::LimitsConfig;
use crate::spans::Pipeline;
use crate::spans::layer::{EndedSpan, set_status};
use crate::spans::record::{AttributeValue, SpanRecord};

/// A span started by [`Pipeline::start_span`]; ends on [`end`](opentelemetry::trace::Span::end)
/// or, if never ended, when dropped.
#[derive(Debug)]
pub(crate) struct DirectSpan {
    context: SpanContext,
    parent: Option<SpanContext>,
    /// `None` once ended, or when the span is not sampled or no exporter takes spans.
    record: Option<SpanRecord>,
    name: Cow<'static, str>,
    kind: SpanKind,
    status: Status,
    start_time: SystemTime,
    pipeline: Arc<Pipeline>,
}

impl Pipeline {
    /// Starts a span child of `parent`'s span (a root when it has none); `attributes`
    /// writes its first attributes when it is recorded.
    pub(crate) fn start_span(
        self: &Arc<Self>,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: &Context,
        start_time: SystemTime,
        attributes: impl FnOnce(&mut SpanRecord, &LimitsConfig),
    ) -> DirectSpan {
        let parent = super::valid_span_context(parent);
        let context = crate::spans::layer::new_context(self.settings.sampler, parent.as_ref());
        let mut record = (context.is_sampled() && !self.sinks.is_empty()).then(SpanRecord::new);
        if let Some(record) = record.as_mut() {
            attributes(record, &self.settings.limits);
        }
        DirectSpan {
            context,
            parent,
            record,
            name: name.into(),
            kind,
            status: Status::Unset,
            start_time,
            pipeline: self.clone(),
        }
    }
}

impl opentelemetry::trace::Span for DirectSpan {
    fn add_event_with_timestamp<T>(
        &mut self,
        name: T,
        timestamp: SystemTime,
        attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
        if let Some(record) = self.record.as_mut() {
            let name = name.into();
            record.add_event(&self.pipeline.settings.limits, timestamp, |writer| {
                writer.name(&name);
                for kv in &attributes {
                    writer.attribute(kv.key.as_str(), AttributeValue::Otel(&kv.value));
                }
            });
        }
    }

    fn span_context(&self) -> &SpanContext {
        &self.context
    }

    fn is_recording(&self) -> bool {
        self.record.is_some()
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        if let Some(record) = self.record.as_mut() {
            record.set_attribute(
                &self.pipeline.settings.limits,
                attribute.key.as_str(),
                AttributeValue::Otel(&attribute.value),
            );
        }
    }

    fn set_status(&mut self, status: Status) {
        set_status(&mut self.status, status);
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        self.name = new_name.into();
    }

    fn add_link(&mut self, span_context: SpanContext, attributes: Vec<KeyValue>) {
        if let Some(record) = self.record.as_mut()
            && span_context.is_valid()
        {
            record.add_link(&self.pipeline.settings.limits, &span_context, &attributes);
        }
    }

    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        let Some(record) = self.record.take() else {
            return;
        };
        self.pipeline.end(
            record,
            &EndedSpan {
                context: &self.context,
                parent: self.parent.as_ref(),
                name: &self.name,
                kind: &self.kind,
                start_time: self.start_time,
                end_time: timestamp,
                status: &self.status,
            },
        );
    }
}

impl Drop for DirectSpan {
    fn drop(&mut self) {
        // Ended spans (nearly all) have nothing left to do: no clock read for them.
        if self.record.is_some() {
            opentelemetry::trace::Span::end(self);
        }
    }
}
