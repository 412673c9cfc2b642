//! W3C Trace Context (`traceparent` and `tracestate`) on top of the OpenTelemetry API's
//! [`SpanContext`], with a parser that follows the specification rule by rule, and the
//! metadata-map form that carriers store.
//!
//! Parsing and formatting are the telemetry crate's ([`telemetry::w3c`], whose
//! documentation lists the rules), so a context reads the same from a queue message as
//! from an HTTP request.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
pub use telemetry::w3c::{ContextError, MAX_TRACESTATE_MEMBERS, parse_tracestate};

/// The metadata-map key of the trace id (32 lowercase hex digits), for humans and queries.
pub const TRACE_ID_KEY: &str = "trace_id";
/// The metadata-map key of the span id (16 lowercase hex digits), for humans and queries.
pub const SPAN_ID_KEY: &str = "span_id";
/// The metadata-map key (and HTTP header name) of the `traceparent` value.
pub const TRACEPARENT_KEY: &str = "traceparent";
/// The metadata-map key (and HTTP header name) of the `tracestate` value.
pub const TRACESTATE_KEY: &str = "tracestate";

/// A W3C trace context: the [`SpanContext`] (trace id, span id, flags and trace state) that
/// links a frame's work across services and queues.
///
/// An invalid context (the [`Default`]) stands for "no trace": it is what extraction
/// returns when nothing valid was received and what [`TraceContext::current`] returns
/// when no tracer is installed, and injecting it writes nothing.
///
/// ```
/// use frame_tracking::TraceContext;
///
/// let context = TraceContext::from_traceparent(
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
/// )?;
/// assert!(context.is_valid() && context.is_sampled());
/// assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(
///     context.to_traceparent().as_deref(),
///     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
/// );
/// # Ok::<(), frame_tracking::ContextError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    span_context: SpanContext,
}

impl TraceContext {
    /// Wraps a span context.
    ///
    /// ```
    /// use opentelemetry::trace::SpanContext;
    /// use frame_tracking::TraceContext;
    ///
    /// let context = TraceContext::new(SpanContext::empty_context());
    /// assert!(!context.is_valid());
    /// ```
    pub fn new(span_context: SpanContext) -> TraceContext {
        TraceContext { span_context }
    }

    /// The span context.
    pub fn span_context(&self) -> &SpanContext {
        &self.span_context
    }

    /// The trace id (all zeros when invalid).
    pub fn trace_id(&self) -> TraceId {
        self.span_context.trace_id()
    }

    /// The span id of the parent span (all zeros when invalid).
    pub fn span_id(&self) -> SpanId {
        self.span_context.span_id()
    }

    /// The trace flags.
    pub fn trace_flags(&self) -> TraceFlags {
        self.span_context.trace_flags()
    }

    /// The vendor-specific trace state.
    pub fn trace_state(&self) -> &TraceState {
        self.span_context.trace_state()
    }

    /// Whether the trace id and span id are both non-zero.
    pub fn is_valid(&self) -> bool {
        self.span_context.is_valid()
    }

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(&self) -> bool {
        self.span_context.is_sampled()
    }

    /// Whether the context was received from another process.
    pub fn is_remote(&self) -> bool {
        self.span_context.is_remote()
    }

    /// The version `00` `traceparent` value, or `None` when the context is invalid.
    ///
    /// ```
    /// use frame_tracking::TraceContext;
    ///
    /// assert_eq!(TraceContext::default().to_traceparent(), None);
    /// ```
    pub fn to_traceparent(&self) -> Option<String> {
        self.is_valid()
            .then(|| telemetry::w3c::traceparent_string(&self.span_context))
    }

    /// The `tracestate` value, or `None` when the trace state is empty or the context is
    /// invalid.
    pub fn to_tracestate(&self) -> Option<String> {
        let header = self.trace_state().header();
        (self.is_valid() && !header.is_empty()).then_some(header)
    }

    /// Parses a `traceparent` value into a remote context with an empty trace state.
    ///
    /// ```
    /// use frame_tracking::{ContextError, TraceContext};
    ///
    /// let err = TraceContext::from_traceparent(
    ///     "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    /// );
    /// assert_eq!(err, Err(ContextError::ForbiddenVersion));
    /// ```
    pub fn from_traceparent(traceparent: &str) -> Result<TraceContext, ContextError> {
        TraceContext::from_headers(traceparent, &[])
    }

    /// Parses a `traceparent` value and the `tracestate` values received with it, in order.
    ///
    /// An invalid `traceparent` is an error; an invalid `tracestate` is dropped (the context
    /// gets an empty trace state), as the specification requires.
    ///
    /// ```
    /// use frame_tracking::TraceContext;
    ///
    /// let context = TraceContext::from_headers(
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ///     &["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"],
    /// )?;
    /// assert_eq!(context.trace_state().get("rojo"), Some("00f067aa0ba902b7"));
    /// assert_eq!(
    ///     context.to_tracestate().as_deref(),
    ///     Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
    /// );
    /// # Ok::<(), frame_tracking::ContextError>(())
    /// ```
    pub fn from_headers(
        traceparent: &str,
        tracestate: &[&str],
    ) -> Result<TraceContext, ContextError> {
        telemetry::w3c::span_context(traceparent, tracestate).map(TraceContext::new)
    }

    /// The metadata-map form: `trace_id`, `span_id`, `traceparent` and, when not empty,
    /// `tracestate`. An invalid context gives an empty map.
    ///
    /// ```
    /// use frame_tracking::TraceContext;
    ///
    /// let context = TraceContext::from_traceparent(
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    /// )?;
    /// let map = context.to_metadata_map();
    /// assert_eq!(map["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    /// assert_eq!(map["span_id"], "00f067aa0ba902b7");
    /// assert_eq!(TraceContext::from_metadata_map(&map)?, context);
    /// # Ok::<(), frame_tracking::ContextError>(())
    /// ```
    pub fn to_metadata_map(&self) -> HashMap<String, String> {
        self.metadata_entries().collect()
    }

    /// Reads the metadata-map form back. `traceparent` is authoritative (`trace_id` and
    /// `span_id` are there for people and queries); `tracestate` is optional and dropped
    /// when invalid.
    pub fn from_metadata_map(map: &HashMap<String, String>) -> Result<TraceContext, ContextError> {
        let traceparent = map
            .get(TRACEPARENT_KEY)
            .ok_or(ContextError::MissingTraceparent)?;
        let tracestate: Vec<&str> = map
            .get(TRACESTATE_KEY)
            .map(String::as_str)
            .into_iter()
            .collect();
        TraceContext::from_headers(traceparent, &tracestate)
    }

    /// A new OpenTelemetry context whose (remote) parent is this trace context; for an
    /// invalid trace context, an empty context.
    ///
    /// ```
    /// use opentelemetry::trace::TraceContextExt;
    /// use frame_tracking::TraceContext;
    ///
    /// let context = TraceContext::from_traceparent(
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    /// )?;
    /// let otel = context.to_otel_context();
    /// assert_eq!(otel.span().span_context(), context.span_context());
    /// # Ok::<(), frame_tracking::ContextError>(())
    /// ```
    pub fn to_otel_context(&self) -> Context {
        self.to_otel_context_from(&Context::new())
    }

    /// `base` with this trace context as its (remote) parent span; `base` unchanged when
    /// this trace context is invalid.
    pub fn to_otel_context_from(&self, base: &Context) -> Context {
        if self.is_valid() {
            base.with_remote_span_context(self.span_context.clone())
        } else {
            base.clone()
        }
    }

    /// The span context of the span active in `context` (invalid when there is none).
    ///
    /// ```
    /// use opentelemetry::Context;
    /// use frame_tracking::TraceContext;
    ///
    /// assert!(!TraceContext::from_otel_context(&Context::new()).is_valid());
    /// ```
    pub fn from_otel_context(context: &Context) -> TraceContext {
        TraceContext::new(context.span().span_context().clone())
    }

    /// The trace context of the span active on this thread: invalid when there is none, as
    /// when telemetry is disabled or no tracer is installed.
    ///
    /// ```
    /// use frame_tracking::TraceContext;
    ///
    /// // No tracer installed, no span active: an invalid context, not a panic.
    /// assert!(!TraceContext::current().is_valid());
    /// ```
    pub fn current() -> TraceContext {
        TraceContext::from_otel_context(&telemetry::spans::current_context())
    }

    fn metadata_entries(&self) -> impl Iterator<Item = (String, String)> {
        let traceparent = self.to_traceparent();
        let valid = traceparent.is_some();
        let ids = valid.then(|| {
            [
                (TRACE_ID_KEY.to_owned(), self.trace_id().to_string()),
                (SPAN_ID_KEY.to_owned(), self.span_id().to_string()),
            ]
        });
        ids.into_iter()
            .flatten()
            .chain(traceparent.map(|value| (TRACEPARENT_KEY.to_owned(), value)))
            .chain(
                self.to_tracestate()
                    .map(|value| (TRACESTATE_KEY.to_owned(), value)),
            )
    }
}

impl Default for TraceContext {
    /// The invalid context: no trace.
    fn default() -> TraceContext {
        TraceContext::new(SpanContext::NONE)
    }
}

impl From<SpanContext> for TraceContext {
    fn from(span_context: SpanContext) -> TraceContext {
        TraceContext::new(span_context)
    }
}

impl From<TraceContext> for SpanContext {
    fn from(context: TraceContext) -> SpanContext {
        context.span_context
    }
}

impl fmt::Display for TraceContext {
    /// The `traceparent` value, or `-` when invalid.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_traceparent() {
            Some(traceparent) => f.write_str(&traceparent),
            None => f.write_str("-"),
        }
    }
}

/// Serialized as the metadata map (keys sorted); deserialized leniently: a map without a
/// valid `traceparent` gives an invalid context rather than an error, since a broken trace
/// context must not make the data it travels with unreadable. A deserialized context is
/// remote.
impl Serialize for TraceContext {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<String, String> = self.metadata_entries().collect();
        map.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TraceContext {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TraceContext, D::Error> {
        let map = HashMap::<String, String>::deserialize(deserializer)?;
        Ok(TraceContext::from_metadata_map(&map).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span, Tracer, TracerProvider};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use proptest::prelude::*;

    use super::*;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN_ID: &str = "00f067aa0ba902b7";
    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(value: &str) -> Result<TraceContext, ContextError> {
        TraceContext::from_traceparent(value)
    }

    #[test]
    fn valid_traceparent_gives_a_remote_sampled_context() {
        let context = parse(VALID).unwrap();
        assert!(context.is_valid());
        assert!(context.is_sampled());
        assert!(context.is_remote());
        assert_eq!(context.trace_id().to_string(), TRACE_ID);
        assert_eq!(context.span_id().to_string(), SPAN_ID);
        assert_eq!(context.to_traceparent().as_deref(), Some(VALID));
        assert_eq!(context.to_string(), VALID);
    }

    #[test]
    fn unsampled_flag_is_kept() {
        let context = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(context.is_valid());
        assert!(!context.is_sampled());
    }

    #[test]
    fn version_ff_is_invalid() {
        assert_eq!(
            parse("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Err(ContextError::ForbiddenVersion)
        );
    }

    #[test]
    fn version_00_must_be_exactly_55_characters() {
        assert_eq!(
            parse(&format!("{VALID}-")),
            Err(ContextError::TraceparentWrongLength { len: 56 })
        );
        assert_eq!(
            parse(&format!("{VALID}-what-the-future-holds")),
            Err(ContextError::TraceparentWrongLength { len: 77 })
        );
        assert_eq!(
            parse(&VALID[..54]),
            Err(ContextError::TraceparentTooShort { len: 54 })
        );
    }

    #[test]
    fn higher_version_is_parsed_from_its_first_55_characters() {
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parse(future).unwrap().trace_id().to_string(), TRACE_ID);
        let extended = parse(&format!("{future}-what-the-future-holds")).unwrap();
        assert_eq!(extended.span_id().to_string(), SPAN_ID);
        // Written back as version 00, the only version this crate speaks.
        assert_eq!(extended.to_traceparent().as_deref(), Some(VALID));
    }

    #[test]
    fn higher_version_with_trailing_data_not_after_a_dash_is_invalid() {
        assert_eq!(
            parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.x"),
            Err(ContextError::TrailingData)
        );
        assert_eq!(
            parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-012"),
            Err(ContextError::TrailingData)
        );
    }

    #[test]
    fn higher_version_still_requires_valid_fields() {
        assert_eq!(
            parse("01-00000000000000000000000000000000-00f067aa0ba902b7-01-x"),
            Err(ContextError::ZeroTraceId)
        );
        assert_eq!(
            parse("01-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01-x"),
            Err(ContextError::MissingDelimiter { position: 35 })
        );
    }

    #[test]
    fn uppercase_hex_is_invalid_in_every_field() {
        assert_eq!(
            parse("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Err(ContextError::InvalidVersion)
        );
        assert_eq!(
            parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Err(ContextError::InvalidHex {
                field: "trace id",
                digits: 32
            })
        );
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"),
            Err(ContextError::InvalidHex {
                field: "span id",
                digits: 16
            })
        );
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A"),
            Err(ContextError::InvalidHex {
                field: "flags",
                digits: 2
            })
        );
    }

    #[test]
    fn all_zero_trace_id_or_span_id_is_invalid() {
        assert_eq!(
            parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Err(ContextError::ZeroTraceId)
        );
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            Err(ContextError::ZeroSpanId)
        );
    }

    #[test]
    fn wrong_lengths_and_bad_characters_are_invalid() {
        // Trace id one digit short, span id one digit long: the delimiters move.
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7f-01"),
            Err(ContextError::MissingDelimiter { position: 35 })
        );
        assert_eq!(
            parse("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"),
            Err(ContextError::MissingDelimiter { position: 2 })
        );
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9g2b7-01"),
            Err(ContextError::InvalidHex {
                field: "span id",
                digits: 16
            })
        );
        assert_eq!(
            parse("0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Err(ContextError::InvalidVersion)
        );
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é"),
            Err(ContextError::InvalidHex {
                field: "flags",
                digits: 2
            })
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn surrounding_http_whitespace_is_ignored_but_other_trailing_data_is_not() {
        assert_eq!(
            parse(&format!(" \t{VALID} ")).unwrap(),
            parse(VALID).unwrap()
        );
        assert_eq!(
            parse(&format!("{VALID}x")),
            Err(ContextError::TraceparentWrongLength { len: 56 })
        );
        assert_eq!(
            parse(&format!("{VALID}\n")),
            Err(ContextError::TraceparentWrongLength { len: 56 })
        );
    }

    #[test]
    fn unknown_flags_are_not_propagated() {
        let context = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap();
        assert_eq!(context.trace_flags().to_u8(), 0x03);
        assert!(context.is_sampled());
        assert!(context.to_traceparent().unwrap().ends_with("-03"));
    }

    #[test]
    fn invalid_traceparent_drops_tracestate() {
        let result = TraceContext::from_headers(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            &["congo=t61rcWkgMzE"],
        );
        assert_eq!(result, Err(ContextError::ZeroTraceId));
    }

    #[test]
    fn invalid_tracestate_is_dropped_and_traceparent_kept() {
        let context = TraceContext::from_headers(VALID, &["congo=t61rcWkgMzE,Bad=1"]).unwrap();
        assert!(context.is_valid());
        assert_eq!(context.trace_state(), &TraceState::NONE);
        assert_eq!(context.to_tracestate(), None);
    }

    #[test]
    fn multiple_tracestate_values_are_combined_in_order() {
        let context = TraceContext::from_headers(VALID, &["a=1", "b=2,c=3", "", "d=4"]).unwrap();
        assert_eq!(context.to_tracestate().as_deref(), Some("a=1,b=2,c=3,d=4"));
    }

    #[test]
    fn tracestate_allows_optional_whitespace_and_skips_empty_members() {
        let state = parse_tracestate(&[" a=1 ,\t, ,b=2\t", ",,"]).unwrap();
        assert_eq!(state.header(), "a=1,b=2");
        assert_eq!(parse_tracestate(&[]).unwrap(), TraceState::NONE);
        assert_eq!(parse_tracestate(&[" , "]).unwrap(), TraceState::NONE);
    }

    #[test]
    fn tracestate_with_32_members_is_kept_and_with_33_is_dropped() {
        let members = |n: usize| {
            (0..n)
                .map(|i| format!("k{i}=v{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let state = parse_tracestate(&[&members(32)]).unwrap();
        assert_eq!(state.header(), members(32));
        assert_eq!(
            parse_tracestate(&[&members(33)]),
            Err(ContextError::TooManyTracestateMembers { count: 33 })
        );
        // Empty members do not count towards the limit.
        let with_empty = format!("{},,, ,", members(32));
        assert!(parse_tracestate(&[&with_empty]).is_ok());
    }

    #[test]
    fn duplicate_tracestate_keys_invalidate_the_list() {
        assert_eq!(
            parse_tracestate(&["a=1,b=2", "a=3"]),
            Err(ContextError::DuplicateTracestateKey { index: 2 })
        );
        let context = TraceContext::from_headers(VALID, &["a=1", "a=1"]).unwrap();
        assert_eq!(context.trace_state(), &TraceState::NONE);
    }

    #[test]
    fn metadata_map_round_trips() {
        let context = TraceContext::from_headers(VALID, &["congo=t61rcWkgMzE"]).unwrap();
        let map = context.to_metadata_map();
        assert_eq!(map.len(), 4);
        assert_eq!(map[TRACE_ID_KEY], TRACE_ID);
        assert_eq!(map[SPAN_ID_KEY], SPAN_ID);
        assert_eq!(map[TRACEPARENT_KEY], VALID);
        assert_eq!(map[TRACESTATE_KEY], "congo=t61rcWkgMzE");
        assert_eq!(TraceContext::from_metadata_map(&map).unwrap(), context);
    }

    #[test]
    fn invalid_context_gives_an_empty_metadata_map() {
        let context = TraceContext::default();
        assert!(context.to_metadata_map().is_empty());
        assert_eq!(context.to_traceparent(), None);
        assert_eq!(context.to_tracestate(), None);
        assert_eq!(context.to_string(), "-");
        assert_eq!(
            TraceContext::from_metadata_map(&HashMap::new()),
            Err(ContextError::MissingTraceparent)
        );
    }

    #[test]
    fn serde_uses_the_sorted_metadata_map_and_tolerates_garbage() {
        let context = TraceContext::from_headers(VALID, &["congo=t61rcWkgMzE"]).unwrap();
        let json = serde_json::to_string(&context).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"span_id":"{SPAN_ID}","trace_id":"{TRACE_ID}","traceparent":"{VALID}","tracestate":"congo=t61rcWkgMzE"}}"#
            )
        );
        assert_eq!(
            serde_json::from_str::<TraceContext>(&json).unwrap(),
            context
        );
        let garbage: TraceContext = serde_json::from_str(r#"{"traceparent":"nonsense"}"#).unwrap();
        assert!(!garbage.is_valid());
        assert!(serde_json::from_str::<TraceContext>("42").is_err());
    }

    #[test]
    fn otel_context_round_trips_as_remote_parent() {
        let context = TraceContext::from_headers(VALID, &["a=1"]).unwrap();
        let otel = context.to_otel_context();
        assert!(otel.has_active_span());
        assert_eq!(TraceContext::from_otel_context(&otel), context);
        assert!(!TraceContext::default().to_otel_context().has_active_span());
    }

    #[test]
    fn current_reads_the_attached_context() {
        let context = parse(VALID).unwrap();
        {
            let _guard = context.to_otel_context().attach();
            assert_eq!(TraceContext::current(), context);
        }
        assert!(!TraceContext::current().is_valid());
    }

    #[test]
    fn without_a_tracer_contexts_are_invalid_and_nothing_panics() {
        // The global tracer provider is the no-op one unless a test installs another;
        // this test only uses it, as a service with telemetry disabled does.
        let tracer = opentelemetry::global::tracer("frame-tracking-test");
        let span = tracer.start("no-op");
        let otel = Context::current_with_span(span);
        let context = TraceContext::from_otel_context(&otel);
        assert!(!context.is_valid());
        assert!(context.to_metadata_map().is_empty());
        assert!(!TraceContext::current().is_valid());
    }

    #[test]
    fn sdk_child_span_continues_the_received_trace() {
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("frame-tracking-test");
        let received = parse(VALID).unwrap();

        let child = tracer.start_with_context("process", &received.to_otel_context());
        let child_context = TraceContext::new(child.span_context().clone());
        assert_eq!(child_context.trace_id(), received.trace_id());
        assert_ne!(child_context.span_id(), received.span_id());
        assert!(child_context.is_sampled());

        // The child's own context, active on this thread, is what `current` reports.
        let otel = Context::current_with_span(child);
        let _guard = otel.attach();
        let current = TraceContext::current();
        assert_eq!(current, child_context);
        assert!(!current.is_remote());
        let child_traceparent = current.to_traceparent().unwrap();
        assert!(child_traceparent.starts_with(&format!("00-{TRACE_ID}-")));
        assert_eq!(
            parse(&child_traceparent).unwrap().span_id(),
            current.span_id()
        );
    }

    proptest! {
        #[test]
        fn arbitrary_traceparent_never_panics(input in any::<String>()) {
            let _ = parse(&input);
        }

        #[test]
        fn near_valid_traceparent_never_panics(
            input in "[0-9a-fA-F]{2}-[0-9a-gA-G]{30,34}-[0-9a-f]{14,18}-[0-9a-f]{1,3}(-.{0,5})?",
        ) {
            if let Ok(context) = parse(&input) {
                prop_assert!(context.is_valid());
            }
        }

        #[test]
        fn arbitrary_tracestate_never_panics(
            first in any::<String>(),
            second in "([a-z0-9@ =,\t]{0,12},?){0,40}",
        ) {
            if let Ok(state) = parse_tracestate(&[&first, &second]) {
                // Whatever is accepted is written back in a form that parses the same.
                let header = state.header();
                prop_assert_eq!(parse_tracestate(&[&header]), Ok(state));
            }
        }

        #[test]
        fn valid_contexts_round_trip_through_traceparent(
            trace_id in 1u128..,
            span_id in 1u64..,
            sampled in any::<bool>(),
        ) {
            let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::NOT_SAMPLED };
            let context = TraceContext::new(SpanContext::new(
                TraceId::from(trace_id),
                SpanId::from(span_id),
                flags,
                true,
                TraceState::NONE,
            ));
            let traceparent = context.to_traceparent().unwrap();
            prop_assert_eq!(parse(&traceparent), Ok(context));
        }
    }
}
