//! Logs: `tracing` events as JSON lines on stdout, correlated with the active trace, and
//! optionally as OTLP log records.

use std::fmt::Write as _;

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Writes each event as one JSON object per line:
/// `{"timestamp","level","target","message",<fields>,"span","trace_id","span_id"}`.
///
/// `trace_id` and `span_id` are those of the event's `tracing` span (as
/// [`crate::spans::SpanLayer`] records it), or else of the attached OpenTelemetry context:
/// the server span of [`crate::http::TelemetryLayer`] while a request is handled.
#[derive(Debug)]
pub struct JsonLogLayer<W = fn() -> std::io::Stdout> {
    make_writer: W,
}

impl JsonLogLayer {
    /// Writes to stdout.
    pub fn stdout() -> Self {
        Self {
            make_writer: std::io::stdout,
        }
    }
}

impl<W> JsonLogLayer<W> {
    /// Writes to whatever `make_writer` returns, e.g. a buffer in tests.
    pub fn with_writer<W2>(self, make_writer: W2) -> JsonLogLayer<W2> {
        JsonLogLayer { make_writer }
    }
}

impl<S, W, Out> Layer<S> for JsonLogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: Fn() -> Out + Send + Sync + 'static,
    Out: std::io::Write,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = ctx.event_span(event);
        // The event's span, when the span layer records it; else the attached context.
        let ids = span
            .as_ref()
            .and_then(|span| {
                let mut extensions = span.extensions_mut();
                let state = extensions.get_mut::<crate::spans::SpanState>()?;
                let context = state.start();
                Some((context.trace_id(), context.span_id()))
            })
            .or_else(|| {
                let cx = opentelemetry::Context::current();
                let span = cx.span();
                let context = span.span_context();
                context
                    .is_valid()
                    .then(|| (context.trace_id(), context.span_id()))
            });
        let mut line = format_event(event, span.map(|s| s.name()), ids);
        line.push('\n');
        let mut out = (self.make_writer)();
        // One write per line so concurrent lines do not interleave.
        let _ = out.write_all(line.as_bytes());
    }
}

/// Builds the JSON line for one event (without the newline).
pub(crate) fn format_event(
    event: &Event<'_>,
    span: Option<&'static str>,
    ids: Option<(TraceId, SpanId)>,
) -> String {
    let metadata = event.metadata();
    let mut fields = Map::new();
    fields.insert("timestamp".to_owned(), Value::String(timestamp()));
    fields.insert(
        "level".to_owned(),
        Value::String(metadata.level().to_string()),
    );
    fields.insert(
        "target".to_owned(),
        Value::String(metadata.target().to_owned()),
    );
    let mut visitor = JsonVisitor {
        fields: &mut fields,
    };
    event.record(&mut visitor);
    if let Some(span) = span {
        fields.insert("span".to_owned(), Value::String(span.to_owned()));
    }
    if let Some((trace_id, span_id)) = ids {
        fields.insert("trace_id".to_owned(), Value::String(trace_id.to_string()));
        fields.insert("span_id".to_owned(), Value::String(span_id.to_string()));
    }
    Value::Object(fields).to_string()
}

struct JsonVisitor<'a> {
    fields: &'a mut Map<String, Value>,
}

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        // `log` records carry their metadata as fields; they are already in the line.
        if name.starts_with("log.") {
            return;
        }
        self.fields.insert(name.to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole cause chain, so the log says why and not only what.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.put(field, Value::String(text));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// RFC 3339 UTC timestamp with microseconds.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_683), (2023, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn timestamps_look_like_rfc3339() {
        let ts = timestamp();
        assert_eq!(ts.len(), 27, "{ts}");
        assert!(ts.ends_with('Z'));
        assert_eq!(&ts[10..11], "T");
    }
}
