//! [`ResponseFuture`]: finishes the span and records the metrics when the response head is
//! ready, or when the request is abandoned.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Instant;

use http::Response;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt};
use std::sync::Arc;

use crate::http::layer::{LayerState, RequestRoute, StartedSpan};
use crate::http::{
    CurrentServerSpan, ResponseError, TRACEPARENT, X_TRACE_ID, trace_response_headers,
};

pin_project_lite::pin_project! {
    /// Response future of [`crate::http::TelemetryService`].
    pub struct ResponseFuture<F, R> {
        #[pin]
        inner: F,
        request: Option<RequestState<R>>,
    }
}

impl<F, R> std::fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("tracked", &self.request.is_some())
            .finish()
    }
}

/// Everything needed to finish one request's telemetry.
pub(crate) struct RequestState<R> {
    pub(crate) state: Arc<LayerState>,
    pub(crate) method: usize,
    pub(crate) route: RequestRoute<R>,
    pub(crate) start: Instant,
    pub(crate) span: Option<StartedSpan>,
}

impl<F, R> ResponseFuture<F, R> {
    pub(crate) fn untracked(inner: F) -> Self {
        Self {
            inner,
            request: None,
        }
    }

    pub(crate) fn tracked(inner: F, request: RequestState<R>) -> Self {
        Self {
            inner,
            request: Some(request),
        }
    }
}

impl<F, R, B, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: std::fmt::Display,
    R: AsRef<str>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.request.as_ref().and_then(|r| r.span.as_ref()) {
            Some(StartedSpan { cx: otel_cx, .. }) => {
                // The handler's own spans and log lines find the server span as current.
                let _attached = otel_cx.clone().attach();
                let _current = CurrentServerSpan::enter(otel_cx);
                ready!(this.inner.poll(cx))
            }
            None => ready!(this.inner.poll(cx)),
        };
        if let Some(request) = this.request.take() {
            match result {
                Ok(mut response) => {
                    request.finish_response(&mut response);
                    return Poll::Ready(Ok(response));
                }
                Err(error) => {
                    request.finish_error(&error);
                    return Poll::Ready(Err(error));
                }
            }
        }
        Poll::Ready(result)
    }
}

impl<R: AsRef<str>> RequestState<R> {
    fn route(&self) -> Option<&str> {
        self.route.as_str()
    }

    fn finish_response<B>(mut self, response: &mut Response<B>) {
        let status = response.status().as_u16();
        let metrics = &self.state.metrics;
        let elapsed = self.start.elapsed();
        self.route
            .record_duration(metrics, self.method, status, elapsed);
        let handler_error = response.extensions().get::<ResponseError>().cloned();
        let status_error = (status >= 500).then(|| status.to_string());
        let error_type: Option<&str> = handler_error
            .as_ref()
            .map(|e| e.error_type)
            .or(status_error.as_deref());
        if let Some(error_type) = error_type {
            metrics.record_error(self.method, self.route(), error_type);
        }
        let Some(StartedSpan {
            cx: otel_cx,
            start_time,
        }) = self.span.take()
        else {
            return;
        };
        let span = otel_cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if let Some(error_type) = error_type {
            span.set_attribute(KeyValue::new("error.type", error_type.to_owned()));
            span.set_status(Status::error(""));
        }
        if let Some(error) = handler_error {
            span.add_event(
                "exception",
                vec![
                    KeyValue::new("exception.type", error.error_type),
                    KeyValue::new("exception.message", error.message),
                ],
            );
        }
        let span_context = span.span_context();
        if span_context.is_valid()
            && let Some((traceparent, trace_id)) = trace_response_headers(span_context)
        {
            let headers = response.headers_mut();
            headers.insert(X_TRACE_ID, trace_id);
            headers.insert(TRACEPARENT, traceparent);
        }
        span.end_with_timestamp(start_time + elapsed);
    }

    fn finish_error<E: std::fmt::Display>(mut self, error: &E) {
        let error_type = short_type_name::<E>();
        self.state
            .metrics
            .record_error(self.method, self.route(), error_type);
        let Some(StartedSpan {
            cx: otel_cx,
            start_time,
        }) = self.span.take()
        else {
            return;
        };
        let span = otel_cx.span();
        span.set_attribute(KeyValue::new("error.type", error_type));
        span.set_status(Status::error(error.to_string()));
        span.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", error_type),
                KeyValue::new("exception.message", error.to_string()),
            ],
        );
        span.end_with_timestamp(start_time + self.start.elapsed());
    }
}

impl<R> Drop for RequestState<R> {
    fn drop(&mut self) {
        self.state.metrics.active(self.method).decrement(1.0);
        // Abandoned (client went away, timeout layer fired): end the span now instead of
        // whenever the last clone of its context goes away.
        if let Some(StartedSpan { cx, start_time }) = self.span.take() {
            let span = cx.span();
            span.set_attribute(KeyValue::new("error.type", "cancelled"));
            span.end_with_timestamp(start_time + self.start.elapsed());
        }
    }
}

/// The last path segment of a type name, e.g. `hyper::Error` -> `Error`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}
