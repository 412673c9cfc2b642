//! [`SpanLayer`]: the `tracing` layer that turns spans into OTLP spans, encoding each one
//! as it is recorded (see [`super::record`]).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, InstrumentationScope};
use rand::distr::{Distribution, StandardUniform};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LimitsConfig, SamplerConfig};
use crate::export::SpanSinks;
use crate::otlp::SpanHeader;
use crate::spans::record::{AttributeValue, EncodedAttributes, SpanRecord};

/// Turns `tracing` spans into OTLP spans: ids and sampling as the SDK would do them, the
/// `otel.name`, `otel.kind`, `otel.status_code` and `otel.status_description` fields,
/// code location attributes, and events inside a span as span events.
///
/// Installed by [`crate::Telemetry::start`]; [`super::SpanExt`] reaches a span's state
/// through it.
#[derive(Debug, Clone)]
pub struct SpanLayer {
    pub(crate) pipeline: Arc<Pipeline>,
}

/// What every span of a layer shares.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub(crate) sinks: Arc<SpanSinks>,
    pub(crate) settings: Settings,
    pub(crate) scope: InstrumentationScope,
}

/// The sampler and limits, copied into every span so that [`super::SpanExt`] can start
/// it and record into it without the layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) sampler: SamplerConfig,
    pub(crate) limits: LimitsConfig,
}

/// What a span is when it ends, besides its record.
#[derive(Debug)]
pub(crate) struct EndedSpan<'a> {
    pub(crate) context: &'a SpanContext,
    pub(crate) parent: Option<&'a SpanContext>,
    pub(crate) name: &'a str,
    pub(crate) kind: &'a SpanKind,
    pub(crate) start_time: SystemTime,
    pub(crate) end_time: SystemTime,
    pub(crate) status: &'a Status,
}

impl Pipeline {
    /// Ends a recorded span: counts it, and when a sink takes it, completes its bytes and
    /// hands them over.
    pub(crate) fn end(&self, mut record: SpanRecord, span: &EndedSpan<'_>) {
        let admission = self.sinks.admit();
        if !admission.any() {
            return;
        }
        let bytes = record.finish(SpanHeader {
            context: span.context,
            parent_span_id: span.parent.map_or(SpanId::INVALID, SpanContext::span_id),
            parent_is_remote: span.parent.is_some_and(SpanContext::is_remote),
            name: span.name,
            kind: span.kind,
            start_time: span.start_time,
            end_time: span.end_time,
            status: span.status,
            dropped_attributes: 0,
            dropped_events: 0,
            dropped_links: 0,
        });
        self.sinks.deliver(admission, &self.scope, bytes);
    }
}

impl SpanLayer {
    pub(crate) fn new(pipeline: Pipeline) -> Self {
        Self {
            pipeline: Arc::new(pipeline),
        }
    }
}

/// One span's state, kept in the registry's extensions from `on_new_span` to `on_close`.
#[derive(Debug)]
pub(crate) struct SpanState {
    pub(crate) settings: Settings,
    /// The parent's context until the span starts (ids and sampling are decided when
    /// something first needs them, so `set_parent` right after creation still works).
    parent: Option<SpanContext>,
    /// The context from outside `tracing` this span's trace continues (a remote parent,
    /// a server span, baggage): what [`super::SpanExt::context`] builds on.
    base: Context,
    /// This span's own context, once started.
    started: Option<SpanContext>,
    /// `None` when the span is not sampled, or when no sink would take it.
    record: Option<SpanRecord>,
    name: Cow<'static, str>,
    kind: SpanKind,
    status: Status,
    start_time: SystemTime,
    /// Which of the callsite's fields were recorded (bit = field index), so that
    /// recording one again replaces it.
    recorded: u64,
}

impl SpanState {
    /// Decides the span's ids and sampling if it has not happened yet; returns its context.
    pub(crate) fn start(&mut self) -> &SpanContext {
        let (sampler, parent, record) = (self.settings.sampler, &self.parent, &mut self.record);
        self.started.get_or_insert_with(|| {
            let context = new_context(sampler, parent.as_ref());
            if !context.is_sampled() {
                *record = None;
            }
            context
        })
    }

    /// The span's context for carriers and children outside `tracing`.
    pub(crate) fn context(&mut self) -> Context {
        let span_context = self.start().clone();
        self.base.with_remote_span_context(span_context)
    }

    /// Changes the parent; refused once the span has started.
    pub(crate) fn set_parent(&mut self, cx: &Context) -> Result<(), super::SpanError> {
        if self.started.is_some() {
            return Err(super::SpanError::AlreadyStarted);
        }
        self.parent = super::valid_span_context(cx);
        self.base = cx.clone();
        Ok(())
    }

    /// The record, if the span is recorded, with the limits to record by.
    pub(crate) fn record(&mut self) -> Option<(&mut SpanRecord, &LimitsConfig)> {
        Some((self.record.as_mut()?, &self.settings.limits))
    }

    pub(crate) fn set_status(&mut self, status: Status) {
        set_status(&mut self.status, status);
    }
}

/// Sets a span's status: `Ok` is final, `Unset` changes nothing.
pub(crate) fn set_status(current: &mut Status, status: Status) {
    match (&*current, status) {
        (Status::Ok, _) | (_, Status::Unset) => {}
        (_, status) => *current = status,
    }
}

/// The context of a new span child of `parent` (a root without one): the parent's trace
/// id and trace state or a new trace id, a new span id, and the sampler's decision.
pub(crate) fn new_context(sampler: SamplerConfig, parent: Option<&SpanContext>) -> SpanContext {
    let trace_id = parent.map_or_else(new_trace_id, SpanContext::trace_id);
    let sampled = crate::traces::is_sampled(sampler, parent, trace_id);
    SpanContext::new(
        trace_id,
        new_span_id(),
        if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        false,
        parent.map_or_else(TraceState::default, |p| p.trace_state().clone()),
    )
}

thread_local! {
    /// This thread's id generator: ids must be unique, not unpredictable, so a small fast
    /// generator seeded from the OS serves (as in the SDK's `RandomIdGenerator`), instead
    /// of the cryptographic thread RNG behind `rand::random`.
    static IDS: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// A random value from this thread's id generator (the thread RNG while the thread exits).
fn random_id<T>() -> T
where
    StandardUniform: Distribution<T>,
{
    IDS.try_with(|ids| ids.borrow_mut().random())
        .unwrap_or_else(|_| rand::random())
}

fn new_trace_id() -> TraceId {
    TraceId::from(random_id::<u128>().max(1))
}

fn new_span_id() -> SpanId {
    SpanId::from(random_id::<u64>().max(1))
}

/// How many callsites' code locations a thread keeps encoded: a thread's hot loop makes
/// spans at a few callsites.
const LOCATIONS: usize = 16;

/// A callsite's code location attributes, encoded.
struct Location {
    /// The callsite's metadata (its address) and the value length limit it was cut to.
    metadata: *const Metadata<'static>,
    value_length: Option<usize>,
    attributes: EncodedAttributes,
}

thread_local! {
    /// The code locations this thread encoded last, the newest first.
    static RECENT_LOCATIONS: RefCell<Vec<Location>> = const { RefCell::new(Vec::new()) };
}

/// The `code.file.path`, `code.module.name` and `code.line.number` attributes of a span's
/// callsite: encoded the first time this thread sees the callsite, then one copy per span
/// instead of three attributes encoded field by field.
fn push_location(
    record: &mut SpanRecord,
    limits: &LimitsConfig,
    metadata: &'static Metadata<'static>,
) {
    let pushed = RECENT_LOCATIONS
        .try_with(|recent| {
            let mut recent = recent.try_borrow_mut().ok()?;
            let key = std::ptr::from_ref(metadata);
            let value_length = limits.attribute_value_length;
            let index = match recent
                .iter()
                .position(|l| l.metadata == key && l.value_length == value_length)
            {
                Some(index) => index,
                None => {
                    let mut attributes = EncodedAttributes::default();
                    location_attributes(metadata, |key, value| {
                        attributes.push(limits, key, value);
                    });
                    recent.truncate(LOCATIONS - 1);
                    recent.insert(
                        0,
                        Location {
                            metadata: key,
                            value_length,
                            attributes,
                        },
                    );
                    0
                }
            };
            Some(record.push_encoded(limits, &recent[index].attributes))
        })
        .ok()
        .flatten()
        .unwrap_or(false);
    if !pushed {
        // Past the attribute count limit (or while the thread exits): one by one.
        location_attributes(metadata, |key, value| {
            record.push_attribute(limits, key, value);
        });
    }
}

/// Calls `put` with each code location attribute of a callsite.
fn location_attributes<'a>(
    metadata: &Metadata<'a>,
    mut put: impl FnMut(&'static str, AttributeValue<'a>),
) {
    if let Some(file) = metadata.file() {
        put("code.file.path", AttributeValue::Str(file));
    }
    if let Some(module) = metadata.module_path() {
        put("code.module.name", AttributeValue::Str(module));
    }
    if let Some(line) = metadata.line() {
        put("code.line.number", AttributeValue::I64(i64::from(line)));
    }
}

thread_local! {
    /// Where `Debug` and `Display` field values are formatted before they are encoded.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Calls `f` with `value` formatted, in a per-thread buffer (a fresh one if a value's
/// formatting itself records a field).
fn formatted<R>(value: fmt::Arguments<'_>, f: impl FnOnce(&str) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut text) => {
            text.clear();
            let _ = text.write_fmt(value);
            let out = f(&text);
            if text.capacity() > 64 * 1024 {
                *text = String::new();
            }
            out
        }
        Err(_) => f(&value.to_string()),
    })
}

/// Where a [`Fields`] visitor's values go: a span's attributes or an event's.
trait FieldSink {
    /// A value as `tracing` hands it over.
    fn value(&mut self, field: &Field, value: AttributeValue<'_>);

    /// A string value: `record_str`, or a `Debug`, `Display` or error value formatted.
    fn text(&mut self, field: &Field, value: &str) {
        self.value(field, AttributeValue::Str(value));
    }
}

/// The `tracing` visitor for both: integers that fit stay integers, everything else that
/// is not a scalar is formatted once, in the per-thread buffer.
struct Fields<T>(T);

impl<T: FieldSink> Visit for Fields<T> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.value(field, AttributeValue::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.value(field, AttributeValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.0.value(field, AttributeValue::I64(value)),
            Err(_) => formatted(format_args!("{value}"), |text| self.0.text(field, text)),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.value(field, AttributeValue::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.text(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        formatted(format_args!("{value}"), |text| self.0.text(field, text));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        formatted(format_args!("{value:?}"), |text| self.0.text(field, text));
    }
}

/// Records a callsite's fields into a span.
struct SpanFields<'a> {
    state: &'a mut SpanState,
    limits: &'a LimitsConfig,
    /// `on_record`: a field recorded before is replaced.
    replace: bool,
}

impl SpanFields<'_> {
    /// Handles the `otel.*` fields; false for any other field.
    fn special(&mut self, field: &Field, value: &str) -> bool {
        match field.name() {
            "otel.name" => self.state.name = Cow::Owned(value.to_owned()),
            "otel.kind" => {
                self.state.kind = match value.to_ascii_lowercase().as_str() {
                    "server" => SpanKind::Server,
                    "client" => SpanKind::Client,
                    "producer" => SpanKind::Producer,
                    "consumer" => SpanKind::Consumer,
                    _ => SpanKind::Internal,
                };
            }
            "otel.status_code" => {
                if value.eq_ignore_ascii_case("ok") {
                    self.state.set_status(Status::Ok);
                } else if value.eq_ignore_ascii_case("error")
                    && !matches!(self.state.status, Status::Error { .. })
                {
                    self.state.set_status(Status::error(""));
                }
            }
            "otel.status_description" | "otel.status_message" => {
                if !matches!(self.state.status, Status::Ok) {
                    self.state.status = Status::error(value.to_owned());
                }
            }
            _ => return false,
        }
        true
    }
}

impl FieldSink for SpanFields<'_> {
    fn value(&mut self, field: &Field, value: AttributeValue<'_>) {
        let bit = 1u64.checked_shl(field.index() as u32).unwrap_or(0);
        let seen = bit == 0 || self.state.recorded & bit != 0;
        self.state.recorded |= bit;
        let Some(record) = self.state.record.as_mut() else {
            return;
        };
        let name = field_name(field);
        if self.replace && seen {
            record.set_attribute(self.limits, name, value);
        } else {
            record.push_attribute(self.limits, name, value);
        }
    }

    fn text(&mut self, field: &Field, value: &str) {
        if !(field.name().starts_with("otel.") && self.special(field, value)) {
            self.value(field, AttributeValue::Str(value));
        }
    }
}

/// Records an event's fields as a span event: the message is its name.
struct EventFields<'a, 'b> {
    writer: &'a mut crate::spans::record::EventWriter<'b>,
}

impl FieldSink for EventFields<'_, '_> {
    fn value(&mut self, field: &Field, value: AttributeValue<'_>) {
        self.writer.attribute(field_name(field), value);
    }

    fn text(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.writer.name(value),
            // `log` records carry their metadata as fields; the event has it already.
            name if name.starts_with("log.") => {}
            _ => self.value(field, AttributeValue::Str(value)),
        }
    }
}

/// A field's name without the `r#` of raw identifiers.
fn field_name(field: &Field) -> &'static str {
    let name = field.name();
    name.strip_prefix("r#").unwrap_or(name)
}

impl SpanLayer {
    /// The parent context of a new span and the outside context it continues.
    fn parent<S>(
        &self,
        attrs: &Attributes<'_>,
        ctx: &LayerContext<'_, S>,
    ) -> (Option<SpanContext>, Context)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let from_span = |span: tracing_subscriber::registry::SpanRef<'_, S>| {
            let mut extensions = span.extensions_mut();
            let state = extensions.get_mut::<SpanState>()?;
            let parent = state.start().clone();
            Some((Some(parent), state.base.clone()))
        };
        if attrs.is_root() {
            return (None, Context::new());
        }
        if let Some(parent) = attrs.parent() {
            // A parent this layer never saw (filtered out) makes a root span.
            return ctx
                .span(parent)
                .and_then(from_span)
                .unwrap_or_else(|| (None, Context::new()));
        }
        if let Some(found) = ctx.lookup_current().and_then(from_span) {
            return found;
        }
        // No `tracing` parent: the context attached outside `tracing`, e.g. the server
        // span of the HTTP layer while it polls a handler.
        let cx = Context::current();
        (super::valid_span_context(&cx), cx)
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let (parent, base) = self.parent(attrs, &ctx);
        let Some(span) = ctx.span(id) else {
            return;
        };
        let pipeline = &*self.pipeline;
        let metadata = attrs.metadata();
        let mut state = SpanState {
            settings: pipeline.settings,
            parent,
            base,
            started: None,
            // Nothing to record for when no exporter takes spans; ids are still made,
            // so the context propagates.
            record: (!pipeline.sinks.is_empty()).then(SpanRecord::new),
            name: Cow::Borrowed(metadata.name()),
            kind: SpanKind::Internal,
            status: Status::Unset,
            start_time: SystemTime::now(),
            recorded: 0,
        };
        if let Some(record) = state.record.as_mut() {
            push_location(record, &pipeline.settings.limits, metadata);
        }
        attrs.record(&mut Fields(SpanFields {
            state: &mut state,
            limits: &pipeline.settings.limits,
            replace: false,
        }));
        span.extensions_mut().insert(state);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(state) = extensions.get_mut::<SpanState>() {
            values.record(&mut Fields(SpanFields {
                state,
                limits: &self.pipeline.settings.limits,
                replace: true,
            }));
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: LayerContext<'_, S>) {
        let Some(linked) = ctx.span(follows).and_then(|span| {
            let mut extensions = span.extensions_mut();
            extensions
                .get_mut::<SpanState>()
                .map(|state| state.start().clone())
        }) else {
            return;
        };
        if let Some(span) = ctx.span(id)
            && let Some(record) = span
                .extensions_mut()
                .get_mut::<SpanState>()
                .and_then(SpanState::record)
        {
            let (record, limits) = record;
            record.add_link(limits, &linked, &[]);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let Some(state) = extensions.get_mut::<SpanState>() else {
            return;
        };
        let metadata = event.metadata();
        if *metadata.level() == Level::ERROR && matches!(state.status, Status::Unset) {
            state.status = Status::error("");
        }
        let Some(record) = state.record.as_mut() else {
            return;
        };
        record.add_event(
            &self.pipeline.settings.limits,
            SystemTime::now(),
            |writer| {
                writer.attribute("level", AttributeValue::Str(metadata.level().as_str()));
                writer.attribute("target", AttributeValue::Str(metadata.target()));
                event.record(&mut Fields(EventFields { writer }));
            },
        );
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(mut state) = span.extensions_mut().remove::<SpanState>() else {
            return;
        };
        let pipeline = &*self.pipeline;
        state.start();
        if let (Some(record), Some(context)) = (state.record.take(), state.started.as_ref()) {
            pipeline.end(
                record,
                &EndedSpan {
                    context,
                    parent: state.parent.as_ref(),
                    name: &state.name,
                    kind: &state.kind,
                    start_time: state.start_time,
                    end_time: SystemTime::now(),
                    status: &state.status,
                },
            );
        }
    }
}
