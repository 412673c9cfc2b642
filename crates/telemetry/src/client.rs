//! The client side of HTTP telemetry: a `reqwest-middleware` middleware that makes a client
//! span, injects the W3C context into the outgoing request and records
//! `http_client_request_duration_seconds`.
//!
//! ```no_run
//! # async fn example(telemetry: &telemetry::Telemetry) -> Result<(), reqwest_middleware::Error> {
//! let client = telemetry.http_client(reqwest::Client::new());
//! let response = client.get("http://processor:8080/health").send().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::Extensions;
use opentelemetry::KeyValue;
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::text_map_propagator::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use reqwest_middleware::{Middleware, Next};

use crate::http::{HeaderInjector, HistogramCache, METHODS, method_index};
use crate::metrics::standard;
use crate::spans::Pipeline;
use crate::spans::record::AttributeValue;

/// How outgoing requests are labelled in `http_client_request_duration_seconds{peer}`.
#[derive(Debug, Clone)]
pub enum PeerLabel {
    /// `host:port` of the URL: right for services that call a fixed set of peers.
    Host,
    /// One fixed value: right for clients that reach arbitrary hosts (a scraper), where
    /// host names would make the label unbounded.
    Fixed(&'static str),
}

/// Extra attributes for one request's client span, passed as a request extension: the way
/// to put a domain id (`frame.id`) on the transport span.
///
/// ```no_run
/// # async fn example(client: reqwest_middleware::ClientWithMiddleware) -> Result<(), reqwest_middleware::Error> {
/// use opentelemetry::KeyValue;
/// use telemetry::client::SpanAttributes;
///
/// client
///     .post("http://processor:8080/process")
///     .with_extension(SpanAttributes(vec![KeyValue::new("frame.id", "20261121T101530.123Z_...")]))
///     .send()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct SpanAttributes(pub Vec<KeyValue>);

/// The middleware; build a client with [`crate::Telemetry::http_client`].
#[derive(Debug, Clone)]
pub struct ClientTelemetry {
    inner: Arc<ClientState>,
}

#[derive(Debug)]
struct ClientState {
    spans: Option<Arc<Pipeline>>,
    propagator: Arc<crate::w3c::Propagator>,
    peer: PeerLabel,
    durations: HistogramCache,
}

impl ClientTelemetry {
    pub(crate) fn new(
        spans: Option<Arc<Pipeline>>,
        propagator: Arc<crate::w3c::Propagator>,
    ) -> Self {
        Self {
            inner: Arc::new(ClientState {
                spans,
                propagator,
                peer: PeerLabel::Host,
                durations: HistogramCache::default(),
            }),
        }
    }

    /// Chooses the `peer` label strategy.
    pub fn with_peer_label(self, peer: PeerLabel) -> Self {
        Self {
            inner: Arc::new(ClientState {
                spans: self.inner.spans.clone(),
                propagator: self.inner.propagator.clone(),
                peer,
                durations: HistogramCache::default(),
            }),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for ClientTelemetry {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let state = &self.inner;
        let method = method_index(request.method());
        let url = request.url();
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default();
        let peer = match &state.peer {
            PeerLabel::Host => match port {
                Some(port) => format!("{host}:{port}"),
                None => host.clone(),
            },
            PeerLabel::Fixed(name) => (*name).to_owned(),
        };

        let parent = crate::spans::current_context();
        let cx = match &state.spans {
            Some(spans) => {
                let method_name = METHODS[method];
                let verb = if method_name == "_OTHER" {
                    "HTTP"
                } else {
                    method_name
                };
                let mut attributes = vec![
                    KeyValue::new("http.request.method", method_name),
                    KeyValue::new("server.address", host.clone()),
                    // Scheme, host and path only: query strings carry tokens and signatures.
                    KeyValue::new(
                        "url.full",
                        format!(
                            "{}://{}{}",
                            url.scheme(),
                            url.host_str().unwrap_or_default(),
                            url.path()
                        ),
                    ),
                ];
                if let Some(port) = port {
                    attributes.push(KeyValue::new("server.port", i64::from(port)));
                }
                if let Some(extra) = extensions.get::<SpanAttributes>() {
                    attributes.extend(extra.0.iter().cloned());
                }
                let span = spans.start_span(
                    verb,
                    SpanKind::Client,
                    &parent,
                    SystemTime::now(),
                    |record, limits| {
                        for kv in &attributes {
                            record.push_attribute(
                                limits,
                                kv.key.as_str(),
                                AttributeValue::Otel(&kv.value),
                            );
                        }
                    },
                );
                parent.with_span(span)
            }
            None => parent,
        };
        state
            .propagator
            .inject_context(&cx, &mut HeaderInjector(request.headers_mut()));

        let start = Instant::now();
        let result = next.run(request, extensions).with_context(cx.clone()).await;
        let elapsed = start.elapsed().as_secs_f64();

        let span = cx.span();
        let status = match &result {
            Ok(response) => {
                let status = response.status().as_u16();
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                if status >= 400 {
                    span.set_attribute(KeyValue::new("error.type", status.to_string()));
                    span.set_status(Status::error(""));
                }
                status
            }
            Err(error) => {
                let error_type = if error.is_middleware() {
                    "middleware"
                } else if error.is_timeout() {
                    "timeout"
                } else if error.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                span.set_attribute(KeyValue::new("error.type", error_type));
                span.set_status(Status::error(error.to_string()));
                0
            }
        };
        span.end();
        state.durations.record(
            standard::HTTP_CLIENT_REQUEST_DURATION,
            "peer",
            &peer,
            method,
            status,
            elapsed,
        );
        result
    }
}
