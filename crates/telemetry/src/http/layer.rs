//! [`TelemetryLayer`]: the `tower::Layer` half.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use crate::spans::Pipeline;
use crate::spans::record::AttributeValue;
use http::{HeaderName, Request};
use opentelemetry::trace::{SpanKind, TraceContextExt};
use opentelemetry::{Context, Key, KeyValue};
use tower::Layer;

use crate::http::metrics::RouteDurations;
use crate::http::service::TelemetryService;
use crate::http::{
    BAGGAGE, ExcludedPaths, HeaderExtractor, METHODS, MatchedPathRoute, RouteLabel, ServerMetrics,
    TRACEPARENT, TRACESTATE,
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
    pub(crate) spans: Option<Arc<Pipeline>>,
    pub(crate) propagator: Arc<crate::w3c::Propagator>,
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

impl TelemetryLayer {
    pub(crate) fn new(
        spans: Option<Arc<Pipeline>>,
        propagator: Arc<crate::w3c::Propagator>,
        excluded: &[String],
        capture_headers: &[HeaderName],
    ) -> Self {
        Self {
            state: Arc::new(LayerState {
                spans,
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
        let spans = self.spans.as_ref()?;
        let start_time = SystemTime::now();
        // Most requests carry no context; skip the propagators' work for them. The parent
        // is only ever what the request carries, never whatever context the thread holds.
        let headers = request.headers();
        let wanted = WantedHeaders::find(headers);
        let parent = if wanted.traceparent.is_some() || wanted.baggage {
            self.extract_parent(headers, &wanted)
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
        let span = spans.start_span(
            name,
            SpanKind::Server,
            &parent,
            start_time,
            |record, limits| {
                let mut put = |key: &str, value: &str| {
                    record.push_attribute(limits, key, AttributeValue::Str(value));
                };
                put("http.request.method", method_name);
                if method_name == "_OTHER" {
                    put("http.request.method_original", request.method().as_str());
                }
                put(
                    "url.scheme",
                    match request.uri().scheme_str() {
                        Some("https") => "https",
                        _ => "http",
                    },
                );
                if let Some(route) = route.as_str() {
                    put("http.route", route);
                }
                put(
                    "network.protocol.version",
                    match request.version() {
                        http::Version::HTTP_10 => "1.0",
                        http::Version::HTTP_2 => "2",
                        http::Version::HTTP_3 => "3",
                        _ => "1.1",
                    },
                );
                // The path only: query strings carry tokens and signatures.
                put("url.path", request.uri().path());
                let host = request
                    .uri()
                    .authority()
                    .map(|a| a.as_str())
                    .or_else(|| wanted.host.and_then(|h| h.to_str().ok()));
                let mut port = None;
                if let Some(host) = host {
                    let (address, host_port) = split_host_port(host);
                    put("server.address", address);
                    port = host_port;
                }
                if let Some(agent) = wanted.user_agent.and_then(|v| v.to_str().ok()) {
                    put("user_agent.original", agent);
                }
                let peer = request
                    .extensions()
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|info| info.0);
                if let Some(peer) = peer {
                    let mut text = [0u8; 48];
                    if let Some(address) = ip_text(peer.ip(), &mut text) {
                        put("client.address", address);
                    }
                }
                if let Some(port) = port {
                    record.push_attribute(
                        limits,
                        "server.port",
                        AttributeValue::I64(i64::from(port)),
                    );
                }
                if !self.capture_headers.is_empty() {
                    let mut captured = Vec::new();
                    self.capture_headers(headers, &mut captured);
                    for kv in &captured {
                        record.push_attribute(
                            limits,
                            kv.key.as_str(),
                            AttributeValue::Otel(&kv.value),
                        );
                    }
                }
            },
        );
        Some(StartedSpan {
            cx: parent.with_span(span),
            start_time,
        })
    }

    /// The parent context the request's headers carry, from the values found in the one
    /// pass over them (a lookup by name parses and hashes the name first).
    #[inline(never)]
    fn extract_parent(&self, headers: &http::HeaderMap, wanted: &WantedHeaders<'_>) -> Context {
        let traceparent = wanted.traceparent.and_then(|v| v.to_str().ok());
        let first_state = wanted.tracestate.and_then(|v| v.to_str().ok());
        let all_states: Vec<&str>;
        let tracestate = if wanted.tracestates > 1 {
            all_states = headers
                .get_all(TRACESTATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            all_states.as_slice()
        } else {
            first_state.as_slice()
        };
        let extractor = HeaderExtractor(headers);
        self.propagator.extract_parts(
            &Context::new(),
            traceparent,
            tracestate,
            wanted.baggage.then_some(&extractor),
        )
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

/// `ip` as text in `buf` (on the stack: an IPv6 address is at most 45 bytes). IPv4, what
/// nearly every peer is, is written digit by digit: `Display` through `fmt` cost about
/// 1,000 instructions per request.
fn ip_text(ip: std::net::IpAddr, buf: &mut [u8; 48]) -> Option<&str> {
    let len = match ip {
        std::net::IpAddr::V4(v4) => {
            let mut len = 0;
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            len
        }
        std::net::IpAddr::V6(v6) => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            write!(cursor, "{v6}").ok()?;
            cursor.position() as usize
        }
    };
    std::str::from_utf8(&buf[..len]).ok()
}

/// The request headers the server span reads, found in one pass over the headers (a
/// request has a handful; four hashed lookups cost more than looking at each once).
#[derive(Debug, Default)]
struct WantedHeaders<'a> {
    /// The first `traceparent`.
    traceparent: Option<&'a http::HeaderValue>,
    /// The first `tracestate`, and how many there are (several are read in order).
    tracestate: Option<&'a http::HeaderValue>,
    tracestates: usize,
    /// Whether a `baggage` header is present.
    baggage: bool,
    host: Option<&'a http::HeaderValue>,
    user_agent: Option<&'a http::HeaderValue>,
}

impl<'a> WantedHeaders<'a> {
    fn find(headers: &'a http::HeaderMap) -> Self {
        let mut wanted = Self::default();
        for (name, value) in headers {
            if name == http::header::HOST {
                wanted.host.get_or_insert(value);
            } else if name == http::header::USER_AGENT {
                wanted.user_agent.get_or_insert(value);
            } else if name == TRACEPARENT {
                wanted.traceparent.get_or_insert(value);
            } else if name == TRACESTATE {
                wanted.tracestate.get_or_insert(value);
                wanted.tracestates += 1;
            } else if name == BAGGAGE {
                wanted.baggage = true;
            }
        }
        wanted
    }
}

/// Splits `host:port` (or `[v6]:port`); the port is `None` when absent or invalid.
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((address, after)) = rest.split_once(']')
    {
        return (
            address,
            after
                .strip_prefix(':')
                .and_then(|p| port_number(p.as_bytes())),
        );
    }
    // A host is a few bytes: a byte search and a decimal loop instead of `rsplit_once` on
    // a `char`, `contains` and `str::parse` (about 60 instructions fewer per request).
    let bytes = host.as_bytes();
    match bytes.iter().rposition(|&b| b == b':') {
        Some(colon) if !bytes[..colon].contains(&b':') => {
            (&host[..colon], port_number(&bytes[colon + 1..]))
        }
        _ => (host, None),
    }
}

/// A port in decimal, `None` when empty, not all digits or out of range.
fn port_number(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u32 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(digit - b'0');
        if value > u32::from(u16::MAX) {
            return None;
        }
    }
    u16::try_from(value).ok()
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
        assert_eq!(split_host_port("host:"), ("host", None));
        assert_eq!(split_host_port("host:65535"), ("host", Some(65535)));
        assert_eq!(split_host_port("host:65536"), ("host", None));
        assert_eq!(split_host_port("host:99999999999"), ("host", None));
        assert_eq!(split_host_port("host:0080"), ("host", Some(80)));
        assert_eq!(split_host_port("10.0.0.1:8"), ("10.0.0.1", Some(8)));
        // An IPv6 address without brackets has no port to split off.
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("fe80::1:443"), ("fe80::1:443", None));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("[::1]:x"), ("::1", None));
    }

    #[test]
    fn addresses_read_as_display_writes_them() {
        let samples: [std::net::IpAddr; 7] = [
            [0, 0, 0, 0].into(),
            [127, 0, 0, 1].into(),
            [10, 9, 99, 100].into(),
            [255, 255, 255, 255].into(),
            [192, 168, 1, 250].into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
            "2001:db8:0:0:1:0:0:1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .into(),
        ];
        for ip in samples {
            let mut buf = [0u8; 48];
            assert_eq!(ip_text(ip, &mut buf), Some(ip.to_string().as_str()));
        }
        for octet in 0..=255u8 {
            let ip = std::net::IpAddr::from([octet, 1, octet, 0]);
            let mut buf = [0u8; 48];
            assert_eq!(ip_text(ip, &mut buf), Some(ip.to_string().as_str()));
        }
        let longest = std::net::IpAddr::from(std::net::Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ));
        let mut buf = [0u8; 48];
        assert_eq!(
            ip_text(longest, &mut buf),
            Some(longest.to_string().as_str())
        );
    }

    #[test]
    fn wanted_headers_are_found_in_one_pass() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::ACCEPT, "*/*".parse().unwrap());
        headers.insert("x-request-id", "1".parse().unwrap());
        headers.append(http::header::USER_AGENT, "first".parse().unwrap());
        headers.append(http::header::USER_AGENT, "second".parse().unwrap());
        headers.insert(http::header::HOST, "example.com:80".parse().unwrap());
        let wanted = WantedHeaders::find(&headers);
        assert!(wanted.traceparent.is_none() && wanted.tracestate.is_none() && !wanted.baggage);
        assert_eq!(wanted.host.unwrap(), "example.com:80");
        assert_eq!(wanted.user_agent.unwrap(), "first");

        let mut headers = http::HeaderMap::new();
        headers.insert(TRACEPARENT, "p".parse().unwrap());
        headers.append(TRACESTATE, "a=1".parse().unwrap());
        headers.append(TRACESTATE, "b=2".parse().unwrap());
        headers.insert(BAGGAGE, "k=v".parse().unwrap());
        let wanted = WantedHeaders::find(&headers);
        assert_eq!(wanted.traceparent.unwrap(), "p");
        assert_eq!(wanted.tracestate.unwrap(), "a=1");
        assert_eq!(wanted.tracestates, 2);
        assert!(wanted.baggage);
        assert!(wanted.host.is_none() && wanted.user_agent.is_none());
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
}
