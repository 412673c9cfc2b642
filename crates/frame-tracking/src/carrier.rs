//! Carriers: where a [`TraceContext`] travels, as OpenTelemetry
//! [`Injector`]/[`Extractor`]s, and [`inject`]/[`extract`] that read and write them with this
//! crate's W3C parser.
//!
//! | carrier | injector | extractor | keys |
//! |---|---|---|---|
//! | HTTP headers ([`http::HeaderMap`]) | [`HeaderInjector`] | [`HeaderExtractor`] | `traceparent`, `tracestate` |
//! | a `HashMap<String, String>` | the map itself | the map itself | `traceparent`, `tracestate` |
//! | Redis Stream fields (`Vec<(String, String)>`) | [`StreamFieldsInjector`] | [`StreamFieldsExtractor`] | `_traceparent`, `_tracestate` |
//! | AMQP message headers ([`FieldTable`]) | [`AmqpHeadersInjector`] | [`AmqpHeadersExtractor`] | `traceparent`, `tracestate` |
//!
//! The OpenTelemetry API already implements both traits for `HashMap<String, String>`. The
//! HTTP pair is `telemetry`'s own ([`telemetry::http::HeaderInjector`] and
//! [`telemetry::http::HeaderExtractor`]), re-exported so services and this crate read and
//! write headers the same way.

use lapin::types::{AMQPValue, FieldTable, ShortString};
use opentelemetry::propagation::{Extractor, Injector};
pub use telemetry::http::{HeaderExtractor, HeaderInjector};

use crate::context::{ContextError, TRACEPARENT_KEY, TRACESTATE_KEY, TraceContext};

/// The Redis Stream field that carries `traceparent`.
pub const TRACEPARENT_FIELD: &str = "_traceparent";
/// The Redis Stream field that carries `tracestate`.
pub const TRACESTATE_FIELD: &str = "_tracestate";

/// Writes Redis Stream fields: key `k` becomes field `_k`, replacing an existing field of
/// that name or appending a new one.
///
/// ```
/// use frame_tracking::{TraceContext, carrier::{StreamFieldsInjector, inject}};
///
/// let context = TraceContext::from_traceparent(
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
/// )?;
/// let mut fields = vec![("frame_id".to_owned(), "f1".to_owned())];
/// inject(&context, &mut StreamFieldsInjector(&mut fields));
/// assert_eq!(fields[1].0, "_traceparent");
/// # Ok::<(), frame_tracking::ContextError>(())
/// ```
#[derive(Debug)]
pub struct StreamFieldsInjector<'a>(pub &'a mut Vec<(String, String)>);

/// Reads Redis Stream fields: key `k` is read from field `_k`; fields without the `_`
/// prefix are the message's own and invisible to propagation.
///
/// ```
/// use frame_tracking::carrier::{StreamFieldsExtractor, extract};
///
/// let fields = vec![
///     ("frame_id".to_owned(), "f1".to_owned()),
///     (
///         "_traceparent".to_owned(),
///         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
///     ),
/// ];
/// assert!(extract(&StreamFieldsExtractor(&fields)).is_valid());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StreamFieldsExtractor<'a>(pub &'a [(String, String)]);

/// Writes AMQP message headers (a lapin [`FieldTable`]) as long strings under the plain
/// W3C names, replacing a header already present.
///
/// ```
/// use lapin::types::FieldTable;
/// use frame_tracking::{TraceContext, carrier::{AmqpHeadersExtractor, AmqpHeadersInjector, extract, inject}};
///
/// let context = TraceContext::from_traceparent(
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
/// )?;
/// let mut headers = FieldTable::default();
/// inject(&context, &mut AmqpHeadersInjector(&mut headers));
/// assert!(headers.contains_key("traceparent"));
/// assert_eq!(extract(&AmqpHeadersExtractor(&headers)), context);
/// # Ok::<(), frame_tracking::ContextError>(())
/// ```
#[derive(Debug)]
pub struct AmqpHeadersInjector<'a>(pub &'a mut FieldTable);

/// Reads AMQP message headers: a header is read when it is a (long or short) string of
/// UTF-8; other value types are invisible to propagation.
#[derive(Debug, Clone, Copy)]
pub struct AmqpHeadersExtractor<'a>(pub &'a FieldTable);

/// Writes `context` into `injector` as `traceparent` and, when not empty, `tracestate`;
/// writes nothing for an invalid context.
///
/// ```
/// use std::collections::HashMap;
/// use frame_tracking::{TraceContext, carrier::inject};
///
/// let mut map = HashMap::new();
/// inject(&TraceContext::default(), &mut map);
/// assert!(map.is_empty());
/// ```
pub fn inject(context: &TraceContext, injector: &mut impl Injector) {
    if let Some(traceparent) = context.to_traceparent() {
        injector.set(TRACEPARENT_KEY, traceparent);
        if let Some(tracestate) = context.to_tracestate() {
            injector.set(TRACESTATE_KEY, tracestate);
        }
    }
}

/// Reads the trace context from `extractor`; an invalid context when there is none or it is
/// invalid (see [`try_extract`] for why).
///
/// ```
/// use std::collections::HashMap;
/// use frame_tracking::carrier::extract;
///
/// let map = HashMap::from([(
///     "traceparent".to_owned(),
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
/// )]);
/// assert!(extract(&map).is_sampled());
/// assert!(!extract(&HashMap::<String, String>::new()).is_valid());
/// ```
pub fn extract(extractor: &impl Extractor) -> TraceContext {
    try_extract(extractor).unwrap_or_default()
}

/// Reads the trace context from `extractor`, saying why when there is no valid one: no
/// `traceparent`, more than one, or an invalid one. An invalid `tracestate` is dropped, not
/// an error.
///
/// ```
/// use std::collections::HashMap;
/// use frame_tracking::{ContextError, carrier::try_extract};
///
/// let map = HashMap::<String, String>::new();
/// assert_eq!(try_extract(&map), Err(ContextError::MissingTraceparent));
/// ```
pub fn try_extract(extractor: &impl Extractor) -> Result<TraceContext, ContextError> {
    let traceparents = extractor
        .get_all(TRACEPARENT_KEY)
        .ok_or(ContextError::MissingTraceparent)?;
    let traceparent = match traceparents.as_slice() {
        [] => return Err(ContextError::MissingTraceparent),
        [traceparent] => *traceparent,
        many => return Err(ContextError::DuplicateTraceparent { count: many.len() }),
    };
    let tracestate = extractor.get_all(TRACESTATE_KEY).unwrap_or_default();
    TraceContext::from_headers(traceparent, &tracestate)
}

impl Injector for StreamFieldsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let existing = self
            .0
            .iter_mut()
            .find(|(field, _)| field.strip_prefix('_') == Some(key));
        match existing {
            Some((_, old)) => *old = value,
            None => self.0.push((format!("_{key}"), value)),
        }
    }
}

impl Extractor for StreamFieldsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, _)| field.strip_prefix('_') == Some(key))
            .map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|(field, _)| field.strip_prefix('_'))
            .collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .0
            .iter()
            .filter(|(field, _)| field.strip_prefix('_') == Some(key))
            .map(|(_, value)| value.as_str())
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

impl Injector for AmqpHeadersInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0
            .insert(ShortString::from(key), AMQPValue::LongString(value.into()));
    }
}

impl Extractor for AmqpHeadersExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
            AMQPValue::ShortString(value) => Some(value.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(ShortString::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use http::{HeaderMap, HeaderValue};

    use crate::carrier::*;
    use crate::context::{ContextError, TraceContext};

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

    fn context_with_state() -> TraceContext {
        TraceContext::from_headers(VALID, &["congo=t61rcWkgMzE,rojo=1"]).unwrap()
    }

    #[test]
    fn header_map_round_trips() {
        let context = context_with_state();
        let mut headers = HeaderMap::new();
        inject(&context, &mut HeaderInjector(&mut headers));
        assert_eq!(headers["traceparent"], VALID);
        assert_eq!(headers["tracestate"], "congo=t61rcWkgMzE,rojo=1");
        assert_eq!(extract(&HeaderExtractor(&headers)), context);
    }

    #[test]
    fn header_injection_replaces_an_existing_context() {
        let mut headers = HeaderMap::new();
        headers.append("traceparent", HeaderValue::from_static(OTHER));
        headers.append("traceparent", HeaderValue::from_static(OTHER));
        inject(&context_with_state(), &mut HeaderInjector(&mut headers));
        assert_eq!(headers.get_all("traceparent").iter().count(), 1);
        assert_eq!(headers["traceparent"], VALID);
    }

    #[test]
    fn header_extraction_is_case_insensitive_and_lists_keys() {
        let mut headers = HeaderMap::new();
        headers.insert("TraceParent", HeaderValue::from_static(VALID));
        let extractor = HeaderExtractor(&headers);
        assert_eq!(extractor.get("traceparent"), Some(VALID));
        assert_eq!(extractor.keys(), vec!["traceparent"]);
        assert!(extract(&extractor).is_valid());
    }

    #[test]
    fn repeated_traceparent_headers_are_invalid() {
        let mut headers = HeaderMap::new();
        headers.append("traceparent", HeaderValue::from_static(VALID));
        headers.append("traceparent", HeaderValue::from_static(OTHER));
        assert_eq!(
            try_extract(&HeaderExtractor(&headers)),
            Err(ContextError::DuplicateTraceparent { count: 2 })
        );
        assert!(!extract(&HeaderExtractor(&headers)).is_valid());
    }

    #[test]
    fn non_ascii_header_values_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_bytes(b"00-\xff").unwrap());
        assert_eq!(
            try_extract(&HeaderExtractor(&headers)),
            Err(ContextError::MissingTraceparent)
        );
    }

    #[test]
    fn invalid_tracestate_header_is_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(VALID));
        headers.append("tracestate", HeaderValue::from_static("a=1"));
        headers.append("tracestate", HeaderValue::from_static("a=2"));
        let context = extract(&HeaderExtractor(&headers));
        assert!(context.is_valid());
        assert_eq!(context.to_tracestate(), None);
    }

    #[test]
    fn hash_map_round_trips() {
        let context = context_with_state();
        let mut map: HashMap<String, String> = HashMap::new();
        inject(&context, &mut map);
        assert_eq!(map.len(), 2);
        assert_eq!(map["traceparent"], VALID);
        assert_eq!(extract(&map), context);
    }

    #[test]
    fn hash_map_with_invalid_traceparent_extracts_an_invalid_context() {
        let map = HashMap::from([
            ("traceparent".to_owned(), "00-garbage".to_owned()),
            ("tracestate".to_owned(), "a=1".to_owned()),
        ]);
        assert_eq!(
            try_extract(&map),
            Err(ContextError::TraceparentTooShort { len: 10 })
        );
        let context = extract(&map);
        assert!(!context.is_valid());
        assert_eq!(context.trace_state().header(), "");
    }

    #[test]
    fn stream_fields_round_trip_under_underscore_names() {
        let context = context_with_state();
        let mut fields = vec![
            ("frame_id".to_owned(), "f1".to_owned()),
            ("traceparent".to_owned(), "not ours".to_owned()),
        ];
        inject(&context, &mut StreamFieldsInjector(&mut fields));
        assert_eq!(
            fields,
            vec![
                ("frame_id".to_owned(), "f1".to_owned()),
                ("traceparent".to_owned(), "not ours".to_owned()),
                (TRACEPARENT_FIELD.to_owned(), VALID.to_owned()),
                (
                    TRACESTATE_FIELD.to_owned(),
                    "congo=t61rcWkgMzE,rojo=1".to_owned()
                ),
            ]
        );
        let extractor = StreamFieldsExtractor(&fields);
        assert_eq!(extractor.keys(), vec!["traceparent", "tracestate"]);
        assert_eq!(extract(&extractor), context);
    }

    #[test]
    fn stream_field_injection_replaces_an_existing_context() {
        let mut fields = vec![(TRACEPARENT_FIELD.to_owned(), OTHER.to_owned())];
        inject(
            &TraceContext::from_traceparent(VALID).unwrap(),
            &mut StreamFieldsInjector(&mut fields),
        );
        assert_eq!(
            fields,
            vec![(TRACEPARENT_FIELD.to_owned(), VALID.to_owned())]
        );
    }

    #[test]
    fn stream_fields_without_context_extract_an_invalid_context() {
        let fields = vec![("frame_id".to_owned(), "f1".to_owned())];
        assert_eq!(
            try_extract(&StreamFieldsExtractor(&fields)),
            Err(ContextError::MissingTraceparent)
        );
        assert!(!extract(&StreamFieldsExtractor(&[])).is_valid());
    }

    #[test]
    fn invalid_context_injects_nothing_into_any_carrier() {
        let context = TraceContext::default();
        let mut headers = HeaderMap::new();
        inject(&context, &mut HeaderInjector(&mut headers));
        let mut fields = Vec::new();
        inject(&context, &mut StreamFieldsInjector(&mut fields));
        let mut map = HashMap::new();
        inject(&context, &mut map);
        assert!(headers.is_empty() && fields.is_empty() && map.is_empty());
    }

    #[test]
    fn amqp_headers_round_trip_and_ignore_other_value_types() {
        let context = context_with_state();
        let mut headers = FieldTable::default();
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        inject(&context, &mut AmqpHeadersInjector(&mut headers));
        let extractor = AmqpHeadersExtractor(&headers);
        assert_eq!(extractor.get("traceparent"), Some(VALID));
        assert_eq!(extractor.get("x-delivery-count"), None);
        assert_eq!(extract(&extractor), context);
    }

    #[test]
    fn amqp_headers_without_context_extract_an_invalid_context() {
        let headers = FieldTable::default();
        assert_eq!(
            try_extract(&AmqpHeadersExtractor(&headers)),
            Err(ContextError::MissingTraceparent)
        );
    }
}
