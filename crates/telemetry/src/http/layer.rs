//! [`TelemetryLayer`]: the `tower::Layer` half.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use http::{HeaderName, Request};
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::propagation::text_map_propagator::TextMapPropagator;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, Key, KeyValue, Value};
use opentelemetry_sdk::trace::SdkTracer;
use tower::Layer;

use crate::http::metrics::RouteDurations;
use crate::http::service::TelemetryService;
use crate::http::{
    BAGGAGE, ExcludedPaths, HeaderExtractor, METHODS, MatchedPathRoute, RouteLabel, ServerMetrics,
    TRACEPARENT,
};

/// Gives every request a server span (HTTP semantic conventions, W3C context extracted
/// from the request, trace id returned in `traceparent` and `x-trace-id` response headers)
/// and RED metrics with bounded labels.
///
/// Made by [`crate::Telemetry::http_layer`]. The route label is chosen by `R`
/// ([`MatchedPathRoute`] by default).
#[derive(Debug, Clone)]
pub struct TelemetryLayer<R = MatchedPathRoute> {
    pub(crate) state: Arc<LayerState>,
    pub(crate) route: R,
}

/// What every service made by one layer shares.
#[derive(Debug)]
pub(crate) struct LayerState {
    pub(crate) tracer: Option<SdkTracer>,
    pub(crate) propagator: Arc<TextMapCompositePropagator>,
    pub(crate) excluded: ExcludedPaths,
    pub(crate) capture_headers: Vec<(HeaderName, Key)>,
    pub(crate) metrics: ServerMetrics,
    routes: Routes,
}

/// A request's server span and when it started. The span ends at the start time plus the
/// request's duration on the monotonic clock (the one its metrics use), which spares a
/// clock read and keeps the span's duration immune to wall-clock steps.
#[derive(Debug)]
pub(crate) struct StartedSpan {
    pub(crate) cx: Context,
    pub(crate) start_time: SystemTime,
}

/// What the layer keeps per route template for the life of the process: the route string,
/// the span name per method and the duration histograms, found with one map lookup per
/// request so that a request allocates none of them. Routes are templates, so the set is
/// small; past [`Routes::LIMIT`] entries (a route strategy that returns raw paths) a
/// request builds its names and finds its histogram per request instead.
#[derive(Debug)]
struct Routes {
    /// Distinguishes this layer's entries in [`RECENT_ROUTES`].
    id: u64,
    map: RwLock<HashMap<Box<str>, &'static RouteEntry>>,
}

/// Source of [`Routes::id`].
static NEXT_ROUTES_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The route entries this thread resolved last, with their layer's id: a request for
    /// a recent route finds its entry without the map's lock and hash.
    static RECENT_ROUTES: Cell<[Option<(u64, &'static RouteEntry)>; 4]> =
        const { Cell::new([None; 4]) };
}

/// One kept route (leaked: entries live as long as the process and are bounded in number).
#[derive(Debug)]
pub(crate) struct RouteEntry {
    route: &'static str,
    names: [OnceLock<&'static str>; METHODS.len()],
    durations: RouteDurations,
}

/// The route of one request, as the layer resolved it.
#[derive(Debug)]
pub(crate) enum RequestRoute<R> {
    /// No route matched.
    Unmatched,
    /// A kept route.
    Kept(&'static RouteEntry),
    /// A route past the limit of kept routes.
    Other(R),
}

impl Routes {
    const LIMIT: usize = 4_096;

    fn new() -> Self {
        Self {
            id: NEXT_ROUTES_ID.fetch_add(1, Ordering::Relaxed),
            map: RwLock::default(),
        }
    }

    fn get(&self, route: &str) -> Option<&'static RouteEntry> {
        let recent = RECENT_ROUTES.get();
        if let Some((_, entry)) = recent
            .iter()
            .flatten()
            .find(|(id, entry)| *id == self.id && entry.route == route)
        {
            return Some(entry);
        }
        let entry = self.lookup(route)?;
        RECENT_ROUTES.set([Some((self.id, entry)), recent[0], recent[1], recent[2]]);
        Some(entry)
    }

    fn lookup(&self, route: &str) -> Option<&'static RouteEntry> {
        if let Ok(map) = self.map.read()
            && let Some(entry) = map.get(route)
        {
            return Some(entry);
        }
        let mut map = self.map.write().ok()?;
        if let Some(entry) = map.get(route) {
            return Some(entry);
        }
        if map.len() >= Self::LIMIT {
            return None;
        }
        let entry: &'static RouteEntry = Box::leak(Box::new(RouteEntry {
            route: Box::leak(Box::from(route)),
            names: Default::default(),
            durations: RouteDurations::default(),
        }));
        map.insert(Box::from(route), entry);
        Some(entry)
    }
}

impl<R: AsRef<str>> RequestRoute<R> {
    /// The route template, `None` when no route matched.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Unmatched => None,
            Self::Kept(entry) => Some(entry.route),
            Self::Other(route) => Some(route.as_ref()),
        }
    }

    /// Records the request's duration in `http_server_request_duration_seconds`.
    pub(crate) fn record_duration(
        &self,
        metrics: &ServerMetrics,
        method: usize,
        status: u16,
        elapsed: Duration,
    ) {
        match self {
            Self::Unmatched => metrics.record_unmatched(method, status, elapsed),
            Self::Kept(entry) => entry.durations.record(entry.route, method, status, elapsed),
            Self::Other(route) => metrics.record_uncached(method, route.as_ref(), status, elapsed),
        }
    }

    /// The span name, `{method} {route}` or the method alone.
    fn span_name(&self, method: usize, verb: &'static str) -> Cow<'static, str> {
        match self {
            Self::Unmatched => Cow::Borrowed(verb),
            Self::Kept(entry) => Cow::Borrowed(
                entry.names[method].get_or_init(|| leaked_span_name(verb, entry.route)),
            ),
            Self::Other(route) => Cow::Owned(span_name(verb, route.as_ref())),
        }
    }

    /// The `http.route` attribute value.
    fn route_value(&self) -> Option<Value> {
        match self {
            Self::Unmatched => None,
            Self::Kept(entry) => Some(Value::from(entry.route)),
            Self::Other(route) => Some(owned_value(route.as_ref())),
        }
    }
}

// The rare paths of a request's span, kept out of line so the usual path stays compact
// (it runs with cold caches when a handler does real work between requests).

#[cold]
#[inline(never)]
fn leaked_span_name(verb: &str, route: &str) -> &'static str {
    Box::leak(span_name(verb, route).into_boxed_str())
}

#[cold]
#[inline(never)]
fn span_name(verb: &str, route: &str) -> String {
    format!("{verb} {route}")
}

#[cold]
#[inline(never)]
fn owned_value(text: &str) -> Value {
    Value::from(text.to_owned())
}

/// Attribute values that repeat from one request to the next on a thread (the `Host` that
/// clients send, their user agent, a keep-alive client's address, a path without
/// parameters), kept as the last value seen per thread so that a request shares the value
/// instead of allocating a copy.
#[derive(Debug, Default)]
struct RecentValues {
    /// The raw `Host`, its address part and its port.
    host: Option<(Arc<str>, Arc<str>, Option<u16>)>,
    user_agent: Option<Arc<str>>,
    client: Option<(IpAddr, Arc<str>)>,
    path: Option<Arc<str>>,
}

thread_local! {
    static RECENT: RefCell<RecentValues> = RefCell::default();
}

impl RecentValues {
    fn host(&mut self, raw: &str) -> (Arc<str>, Option<u16>) {
        match &self.host {
            Some((kept, address, port)) if **kept == *raw => (address.clone(), *port),
            _ => self.new_host(raw),
        }
    }

    // The first request on a thread, or a client that changed: off the usual path.
    #[cold]
    #[inline(never)]
    fn new_host(&mut self, raw: &str) -> (Arc<str>, Option<u16>) {
        let (address, port) = split_host_port(raw);
        let address: Arc<str> = Arc::from(address);
        let kept = if address.len() == raw.len() {
            address.clone()
        } else {
            Arc::from(raw)
        };
        self.host = Some((kept, address.clone(), port));
        (address, port)
    }

    fn user_agent(&mut self, agent: &str) -> Arc<str> {
        recent_str(&mut self.user_agent, agent)
    }

    fn path(&mut self, path: &str) -> Arc<str> {
        recent_str(&mut self.path, path)
    }

    fn client(&mut self, ip: IpAddr) -> Arc<str> {
        match &self.client {
            Some((kept, text)) if *kept == ip => text.clone(),
            _ => self.new_client(ip),
        }
    }

    #[cold]
    #[inline(never)]
    fn new_client(&mut self, ip: IpAddr) -> Arc<str> {
        let text: Arc<str> = Arc::from(ip.to_string());
        self.client = Some((ip, text.clone()));
        text
    }
}

/// The kept string when it equals `text`, else `text` shared, kept in its place.
fn recent_str(kept: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
    match kept {
        Some(kept) if **kept == *text => kept.clone(),
        _ => replace_str(kept, text),
    }
}

#[cold]
#[inline(never)]
fn replace_str(kept: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
    kept.insert(Arc::from(text)).clone()
}

impl TelemetryLayer {
    pub(crate) fn new(
        tracer: Option<SdkTracer>,
        propagator: Arc<TextMapCompositePropagator>,
        excluded: &[String],
        capture_headers: &[HeaderName],
    ) -> Self {
        Self {
            state: Arc::new(LayerState {
                tracer,
                propagator,
                excluded: ExcludedPaths::new(excluded),
                capture_headers: capture_headers
                    .iter()
                    .map(|h| {
                        (
                            h.clone(),
                            Key::new(format!("http.request.header.{}", h.as_str())),
                        )
                    })
                    .collect(),
                metrics: ServerMetrics::new(),
                routes: Routes::new(),
            }),
            route: MatchedPathRoute,
        }
    }
}

impl<R> TelemetryLayer<R> {
    /// Uses another strategy for the `http.route` label.
    pub fn with_route_label<R2: RouteLabel>(self, route: R2) -> TelemetryLayer<R2> {
        TelemetryLayer {
            state: self.state,
            route,
        }
    }
}

impl<S, R: Clone> Layer<S> for TelemetryLayer<R> {
    type Service = TelemetryService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        TelemetryService {
            inner,
            state: self.state.clone(),
            route: self.route.clone(),
        }
    }
}

impl LayerState {
    /// Resolves a request's route to the entry kept for it.
    pub(crate) fn resolve_route<R: AsRef<str>>(&self, route: Option<R>) -> RequestRoute<R> {
        match route {
            None => RequestRoute::Unmatched,
            Some(route) => match self.routes.get(route.as_ref()) {
                Some(entry) => RequestRoute::Kept(entry),
                None => RequestRoute::Other(route),
            },
        }
    }

    /// Starts the server span of a request; `None` when tracing is off.
    pub(crate) fn start_span<B, R: AsRef<str>>(
        &self,
        request: &Request<B>,
        method: usize,
        route: &RequestRoute<R>,
    ) -> Option<StartedSpan> {
        let tracer = self.tracer.as_ref()?;
        let start_time = SystemTime::now();
        // Most requests carry no context; skip the propagators' work for them. The parent
        // is only ever what the request carries, never whatever context the thread holds.
        let headers = request.headers();
        let parent = if headers.contains_key(TRACEPARENT) || headers.contains_key(BAGGAGE) {
            self.extract_parent(headers)
        } else {
            Context::new()
        };
        let method_name = METHODS[method];
        // The spec names spans of unknown methods "HTTP".
        let verb = if method_name == "_OTHER" {
            "HTTP"
        } else {
            method_name
        };
        let name = route.span_name(method, verb);

        let mut attributes = Vec::with_capacity(12 + self.capture_headers.len());
        attributes.push(KeyValue::new("http.request.method", method_name));
        if method_name == "_OTHER" {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                owned_value(request.method().as_str()),
            ));
        }
        // The path only: query strings carry tokens and signatures.
        let path = request.uri().path();
        attributes.push(KeyValue::new(
            "url.scheme",
            match request.uri().scheme_str() {
                Some("https") => "https",
                _ => "http",
            },
        ));
        if let Some(route) = route.route_value() {
            attributes.push(KeyValue::new("http.route", route));
        }
        attributes.push(KeyValue::new(
            "network.protocol.version",
            match request.version() {
                http::Version::HTTP_10 => "1.0",
                http::Version::HTTP_2 => "2",
                http::Version::HTTP_3 => "3",
                _ => "1.1",
            },
        ));
        let host = request.uri().authority().map(|a| a.as_str()).or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0);
        let agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        RECENT.with_borrow_mut(|recent| {
            attributes.push(KeyValue::new("url.path", recent.path(path)));
            if let Some(host) = host {
                let (address, port) = recent.host(host);
                attributes.push(KeyValue::new("server.address", address));
                if let Some(port) = port {
                    attributes.push(KeyValue::new("server.port", i64::from(port)));
                }
            }
            if let Some(peer) = peer {
                attributes.push(KeyValue::new("client.address", recent.client(peer.ip())));
                attributes.push(KeyValue::new("client.port", i64::from(peer.port())));
            }
            if let Some(agent) = agent {
                attributes.push(KeyValue::new(
                    "user_agent.original",
                    recent.user_agent(agent),
                ));
            }
        });
        if !self.capture_headers.is_empty() {
            self.capture_headers(headers, &mut attributes);
        }

        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(start_time)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        Some(StartedSpan {
            cx: parent.with_span(span),
            start_time,
        })
    }

    /// The parent context the request's headers carry.
    #[inline(never)]
    fn extract_parent(&self, headers: &http::HeaderMap) -> Context {
        self.propagator
            .extract_with_context(&Context::new(), &HeaderExtractor(headers))
    }

    /// `http.request.header.<name>` for the allow-listed request headers present.
    #[inline(never)]
    fn capture_headers(&self, headers: &http::HeaderMap, attributes: &mut Vec<KeyValue>) {
        for (header, key) in &self.capture_headers {
            let values: Vec<opentelemetry::StringValue> = headers
                .get_all(header)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.to_owned().into())
                .collect();
            if !values.is_empty() {
                attributes.push(KeyValue::new(
                    key.clone(),
                    opentelemetry::Value::Array(opentelemetry::Array::String(values)),
                ));
            }
        }
    }
}

/// Splits `host:port` (or `[v6]:port`); the port is `None` when absent or invalid.
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((address, after)) = rest.split_once(']')
    {
        return (
            address,
            after.strip_prefix(':').and_then(|p| p.parse().ok()),
        );
    }
    match host.rsplit_once(':') {
        Some((address, port)) if !address.contains(':') => (address, port.parse().ok()),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_split() {
        assert_eq!(
            split_host_port("example.com:8080"),
            ("example.com", Some(8080))
        );
        assert_eq!(split_host_port("example.com"), ("example.com", None));
        assert_eq!(split_host_port("[::1]:3000"), ("::1", Some(3000)));
        assert_eq!(split_host_port("host:notaport"), ("host", None));
    }

    #[test]
    fn routes_are_kept_per_layer_and_found_again() {
        let first = Routes::new();
        let second = Routes::new();
        let kept = first.get("/frames/{id}").unwrap();
        let other = second.get("/frames/{id}").unwrap();
        assert!(!std::ptr::eq(kept, other));
        // More routes than the thread-local cache holds.
        for i in 0..10 {
            let route = format!("/r{i}/{{id}}");
            assert_eq!(first.get(&route).unwrap().route, route);
        }
        assert!(std::ptr::eq(first.get("/frames/{id}").unwrap(), kept));
        assert!(std::ptr::eq(second.get("/frames/{id}").unwrap(), other));
        assert_eq!(kept.route, "/frames/{id}");
    }

    #[test]
    fn recent_values_follow_the_request() {
        let mut recent = RecentValues::default();
        assert_eq!(
            recent.host("example.com:8080"),
            (Arc::from("example.com"), Some(8080))
        );
        assert_eq!(
            recent.host("example.com:8080"),
            (Arc::from("example.com"), Some(8080))
        );
        assert_eq!(recent.host("example.com"), (Arc::from("example.com"), None));
        assert_eq!(recent.host("[::1]:3000"), (Arc::from("::1"), Some(3000)));
        assert_eq!(&*recent.user_agent("curl/8"), "curl/8");
        assert_eq!(&*recent.user_agent("curl/9"), "curl/9");
        let local = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(&*recent.client(local), "127.0.0.1");
        assert_eq!(&*recent.client(IpAddr::from([10, 0, 0, 2])), "10.0.0.2");
    }
}
