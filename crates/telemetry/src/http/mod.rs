//! The server side of HTTP telemetry: [`TelemetryLayer`], one tower layer that gives every
//! request a server span and RED metrics.
//!
//! Add it with `Router::layer` so axum's [`MatchedPath`](axum::extract::MatchedPath) is
//! known when the request reaches it; requests no route matched are labelled `unmatched`.
//!
//! ```no_run
//! # async fn example(telemetry: &telemetry::Telemetry) {
//! use axum::{Router, routing::get};
//!
//! let app: Router = Router::new()
//!     .route("/frames/{id}", get(|| async { "ok" }))
//!     .layer(telemetry.http_layer());
//! # }
//! ```

mod future;
mod layer;
mod metrics;
mod service;

use std::cell::RefCell;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

pub use future::ResponseFuture;
pub use layer::TelemetryLayer;
pub use service::TelemetryService;

pub(crate) use self::metrics::{HistogramCache, ServerMetrics};

/// Route label used when no route matched; never the raw path.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Chooses the `http.route` of a request: a template with a bounded set of values.
pub trait RouteLabel: Clone + Send + Sync + 'static {
    /// A cheaply cloned route name.
    type Route: AsRef<str> + Send + 'static;

    /// The route template, e.g. `/frames/{id}`; `None` when no route matched.
    fn route<B>(&self, request: &Request<B>) -> Option<Self::Route>;
}

/// The default [`RouteLabel`]: axum's `MatchedPath`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchedPathRoute;

impl RouteLabel for MatchedPathRoute {
    type Route = MatchedRoute;

    #[inline]
    fn route<B>(&self, request: &Request<B>) -> Option<Self::Route> {
        request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .cloned()
            .map(MatchedRoute)
    }
}

/// A matched axum route template (a cheap clone of axum's `MatchedPath`).
#[derive(Debug, Clone)]
pub struct MatchedRoute(axum::extract::MatchedPath);

impl AsRef<str> for MatchedRoute {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

/// The server span of the current request, for a handler that learns an attribute only
/// from the request body (a frame id, say) and wants it on the span every backend indexes.
///
/// An axum extractor that never rejects: without the layer (or with telemetry disabled)
/// setting attributes does nothing. It is the span of the request whose handler is running:
/// the layer makes it current while it polls the inner service's response future, where
/// axum runs extractors (instead of storing a copy in every request's extensions), so
/// extract it in the handler or in a middleware inside the layer, not in a task the
/// handler spawned.
///
/// ```
/// use telemetry::http::ServerSpan;
///
/// async fn process(span: ServerSpan, body: String) -> &'static str {
///     span.set_attribute(opentelemetry::KeyValue::new("frame.id", body));
///     "ok"
/// }
/// # let _ = axum::routing::post::<_, _, ()>(process);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerSpan(pub(crate) Option<opentelemetry::Context>);

thread_local! {
    /// The context of the server span whose request is being handled on this thread.
    static CURRENT_SERVER_SPAN: RefCell<Option<opentelemetry::Context>> = const { RefCell::new(None) };
}

impl ServerSpan {
    /// The server span of the request being handled on this thread: empty outside the
    /// layer's response future's `poll`, or with telemetry disabled.
    pub fn current() -> Self {
        Self(CURRENT_SERVER_SPAN.with_borrow(Clone::clone))
    }

    /// Sets an attribute on the request's server span.
    pub fn set_attribute(&self, attribute: opentelemetry::KeyValue) {
        use opentelemetry::trace::TraceContextExt as _;
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(attribute);
        }
    }

    /// The server span's context (`None` without the layer or with telemetry disabled).
    pub fn context(&self) -> Option<&opentelemetry::Context> {
        self.0.as_ref()
    }
}

/// Makes a server span current on this thread until dropped; the previous one (a request
/// handled inside another's handler) is current again afterwards.
#[derive(Debug)]
pub(crate) struct CurrentServerSpan {
    previous: Option<opentelemetry::Context>,
}

impl CurrentServerSpan {
    pub(crate) fn enter(cx: &opentelemetry::Context) -> Self {
        Self {
            previous: CURRENT_SERVER_SPAN.with(|current| current.replace(Some(cx.clone()))),
        }
    }
}

impl Drop for CurrentServerSpan {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // The replaced context is dropped after the borrow ends.
        let _ = CURRENT_SERVER_SPAN.try_with(|current| current.replace(previous));
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ServerSpan {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let current = Self::current();
        if current.0.is_some() {
            return Ok(current);
        }
        // A span put into the extensions by hand (tests, another layer) still works.
        Ok(parts
            .extensions
            .get::<ServerSpan>()
            .cloned()
            .unwrap_or_default())
    }
}

/// Put into a response's extensions by a handler's error type so the layer records the
/// error on the server span (`exception` event, `error.type`, status ERROR).
///
/// ```
/// let mut response = axum::response::IntoResponse::into_response("boom");
/// response.extensions_mut().insert(telemetry::http::ResponseError::new("database", "connection refused"));
/// ```
#[derive(Debug, Clone)]
pub struct ResponseError {
    /// Bounded error type, e.g. `database`, `timeout`; becomes `error.type`.
    pub error_type: &'static str,
    /// Human-readable message; becomes `exception.message` on the span only.
    pub message: String,
}

impl ResponseError {
    /// Describes a handler error.
    pub fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            error_type,
            message: message.into(),
        }
    }
}

/// Semantic-convention method names; anything else is `_OTHER`.
pub(crate) const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
];

/// Index into [`METHODS`].
#[inline]
pub(crate) fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// Reads propagation headers from an `http::HeaderMap`; a repeated header (as
/// `tracestate` may be) yields every value in order.
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .0
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

/// Writes propagation headers into an `http::HeaderMap`, replacing a header already
/// present; a key or value that is not a valid header is skipped.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl opentelemetry::propagation::Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The `traceparent` request header, which carries the parent span context.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` request header, which carries vendor data with the parent.
pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The `baggage` request header.
pub(crate) const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
/// The response header with the trace id alone.
pub(crate) const X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");

/// The `traceparent` and `x-trace-id` response header values of a span context. Both
/// share one allocation: the trace id is bytes 3..35 of the traceparent.
pub(crate) fn trace_response_headers(
    span_context: &opentelemetry::trace::SpanContext,
) -> Option<(HeaderValue, HeaderValue)> {
    let bytes = bytes::Bytes::from_owner(crate::w3c::format_traceparent(span_context));
    let trace_id = HeaderValue::from_maybe_shared(bytes.slice(3..35)).ok()?;
    let traceparent = HeaderValue::from_maybe_shared(bytes).ok()?;
    Some((traceparent, trace_id))
}

/// Paths the layer neither traces nor measures: exact, or a prefix when ending in `*`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExcludedPaths {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl ExcludedPaths {
    pub(crate) fn new(paths: &[String]) -> Self {
        let mut excluded = Self::default();
        for path in paths {
            match path.strip_suffix('*') {
                Some(prefix) => excluded.prefixes.push(prefix.to_owned()),
                None => excluded.exact.push(path.clone()),
            }
        }
        excluded
    }

    #[inline]
    pub(crate) fn contains(&self, path: &str) -> bool {
        self.exact.iter().any(|p| p == path)
            || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_formatted_per_w3c() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let context = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let (traceparent, trace_id) = trace_response_headers(&context).unwrap();
        assert_eq!(
            traceparent,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    /// A handler that extracts `ServerSpan` (also inside another request's handler) gets
    /// its own request's server span, and what it sets there is exported.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_span_extracted_in_a_handler_is_its_requests_span() {
        use axum::Router;
        use axum::body::Body;
        use axum::extract::Path;
        use axum::routing::get;
        use tower::Service as _;

        let sink = otlp_sink::OtlpSink::start().await.unwrap();
        let endpoint = sink.http_endpoint();
        let config = crate::TelemetryConfig::from_lookup(|name| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
            "OTEL_METRICS_EXPORTER" | "OTEL_LOGS_EXPORTER" => Some("none".to_owned()),
            _ => None,
        })
        .unwrap();
        let telemetry =
            crate::Telemetry::start(crate::service_info!(), config, crate::Globals::Skip).unwrap();
        let inner = Router::new()
            .route(
                "/inner",
                get(|span: ServerSpan| async move {
                    span.set_attribute(opentelemetry::KeyValue::new("frame.id", "inner"));
                    "inner"
                }),
            )
            .layer(telemetry.http_layer());
        let app = Router::new()
            .route(
                "/frames/{id}",
                get(move |span: ServerSpan, Path(id): Path<String>| {
                    let mut inner = inner.clone();
                    async move {
                        let request = Request::get("/inner").body(Body::empty()).unwrap();
                        let _ = inner.call(request).await;
                        // After the inner request, this handler's span is current again.
                        assert!(ServerSpan::current().context().is_some());
                        span.set_attribute(opentelemetry::KeyValue::new("frame.id", id));
                        "ok"
                    }
                }),
            )
            .layer(telemetry.http_layer());
        let request = Request::get("/frames/f-1").body(Body::empty()).unwrap();
        let response = app.clone().call(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(ServerSpan::current().context().is_none());
        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .unwrap()
            .unwrap();

        let spans = sink.spans();
        let frame_id = |name: &str| {
            let span = spans.iter().find(|s| s.name == name).unwrap();
            span.str_attr("frame.id").map(str::to_owned)
        };
        assert_eq!(frame_id("GET /frames/{id}").as_deref(), Some("f-1"));
        assert_eq!(frame_id("GET /inner").as_deref(), Some("inner"));
    }

    #[test]
    fn unknown_methods_are_other() {
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(METHODS[method_index(&custom)], "_OTHER");
        assert_eq!(METHODS[method_index(&Method::PATCH)], "PATCH");
    }

    #[test]
    fn excluded_paths_match_exactly_or_by_prefix() {
        let excluded = ExcludedPaths::new(&["/health".to_owned(), "/internal/*".to_owned()]);
        assert!(excluded.contains("/health"));
        assert!(!excluded.contains("/healthz"));
        assert!(excluded.contains("/internal/debug"));
        assert!(!excluded.contains("/frames"));
    }
}
