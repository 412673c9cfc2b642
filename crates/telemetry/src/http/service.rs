//! [`TelemetryService`]: the `tower::Service` half.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower::Service;

use crate::http::future::{RequestState, ResponseFuture};
use crate::http::layer::LayerState;
use crate::http::{RouteLabel, method_index};

/// The service [`crate::http::TelemetryLayer`] wraps around a handler.
#[derive(Debug, Clone)]
pub struct TelemetryService<S, R> {
    pub(crate) inner: S,
    pub(crate) state: Arc<LayerState>,
    pub(crate) route: R,
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for TelemetryService<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
    R: RouteLabel,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, R::Route>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if self.state.excluded.contains(request.uri().path()) {
            return ResponseFuture::untracked(self.inner.call(request));
        }
        let start = Instant::now();
        let method = method_index(request.method());
        let route = self.state.resolve_route(self.route.route(&request));
        let span = self.state.start_span(&request, method, &route);
        self.state.metrics.active(method).increment(1.0);
        let inner = match &span {
            // Handlers that do work before their first await see the server span too.
            Some(span) => {
                let _attached = span.cx.clone().attach();
                self.inner.call(request)
            }
            None => self.inner.call(request),
        };
        ResponseFuture::tracked(
            inner,
            RequestState {
                state: self.state.clone(),
                method,
                route,
                start,
                span,
            },
        )
    }
}
