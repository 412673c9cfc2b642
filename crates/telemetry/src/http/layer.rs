//! [`TelemetryLayer`]: the `tower::Layer` half.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use http::{HeaderName, Request};
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::propagation::text_map_propagator::TextMapPropagator;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, Key, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use tower::Layer;

use crate::http::service::TelemetryService;
use crate::http::{
    ExcludedPaths, HeaderExtractor, METHODS, MatchedPathRoute, RouteLabel, ServerMetrics,
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
    names: SpanNames,
}

/// Span names and route strings per (method, route), made once and kept for the life of
/// the process, so a request allocates neither. Routes are templates, so the set is
/// small; past [`SpanNames::LIMIT`] entries (a route strategy that returns raw paths)
/// names are built per request instead of kept.
#[derive(Debug, Default)]
struct SpanNames {
    map: RwLock<HashMap<Box<str>, RouteNames>>,
}

/// The kept route string and the span name per method index.
#[derive(Debug)]
struct RouteNames {
    route: &'static str,
    names: [Option<&'static str>; METHODS.len()],
}

impl SpanNames {
    const LIMIT: usize = 4_096;

    fn get(
        &self,
        method: usize,
        verb: &'static str,
        route: &str,
    ) -> (Cow<'static, str>, Cow<'static, str>) {
        if let Ok(map) = self.map.read()
            && let Some(entry) = map.get(route)
            && let Some(name) = entry.names[method]
        {
            return (Cow::Borrowed(name), Cow::Borrowed(entry.route));
        }
        let name = format!("{verb} {route}");
        if let Ok(mut map) = self.map.write()
            && map.len() < Self::LIMIT
        {
            let entry = map.entry(Box::from(route)).or_insert_with(|| RouteNames {
                route: Box::leak(Box::from(route)),
                names: [None; METHODS.len()],
            });
            let name: &'static str = Box::leak(name.into_boxed_str());
            entry.names[method] = Some(name);
            return (Cow::Borrowed(name), Cow::Borrowed(entry.route));
        }
        (Cow::Owned(name), Cow::Owned(route.to_owned()))
    }
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
                names: SpanNames::default(),
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
    /// Starts the server span of a request; `None` when tracing is off.
    pub(crate) fn start_span<B>(
        &self,
        request: &Request<B>,
        method: usize,
        route: Option<&str>,
    ) -> Option<Context> {
        let tracer = self.tracer.as_ref()?;
        // Most requests carry no context; skip the propagators' work for them. The parent
        // is only ever what the request carries, never whatever context the thread holds.
        let headers = request.headers();
        let parent = if headers.contains_key("traceparent") || headers.contains_key("baggage") {
            self.propagator
                .extract_with_context(&Context::new(), &HeaderExtractor(headers))
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
        let (name, route_value) = match route {
            Some(route) => {
                let (name, route) = self.names.get(method, verb, route);
                (name, Some(route))
            }
            None => (Cow::Borrowed(verb), None),
        };

        let mut attributes = Vec::with_capacity(10 + self.capture_headers.len());
        attributes.push(KeyValue::new("http.request.method", method_name));
        if method_name == "_OTHER" {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                request.method().as_str().to_owned(),
            ));
        }
        // The path only: query strings carry tokens and signatures.
        attributes.push(KeyValue::new("url.path", request.uri().path().to_owned()));
        attributes.push(KeyValue::new(
            "url.scheme",
            match request.uri().scheme_str() {
                Some("https") => "https",
                _ => "http",
            },
        ));
        if let Some(route) = route_value {
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
            request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        if let Some(host) = host {
            let (address, port) = split_host_port(host);
            attributes.push(KeyValue::new("server.address", address.to_owned()));
            if let Some(port) = port {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        if let Some(peer) = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        {
            attributes.push(KeyValue::new("client.address", peer.0.ip().to_string()));
            attributes.push(KeyValue::new("client.port", i64::from(peer.0.port())));
        }
        if let Some(agent) = request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
        }
        for (header, key) in &self.capture_headers {
            let values: Vec<opentelemetry::StringValue> = request
                .headers()
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

        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        Some(parent.with_span(span))
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
}
