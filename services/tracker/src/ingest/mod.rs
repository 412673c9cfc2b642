//! Ingest: OTLP/HTTP (`POST /v1/traces`), OTLP/gRPC ([`crate::grpc`]) and JSON
//! (`POST /events`), all into the group-commit [`writer`].
//!
//! A 2xx means every accepted event is committed. OTLP answers follow the spec: 200 with
//! an `ExportTraceServiceResponse` (partial success naming rejected spans), 400 for an
//! undecodable body, 413 above `INGEST_MAX_BODY_BYTES` (before or after gzip), 415 for a
//! content type other than `application/x-protobuf`, 503 (with `Retry-After`) when the
//! store is unavailable. Error bodies of protobuf requests are a protobuf `google.rpc.Status`
//! whose message names the problem, as the spec requires and exporters log; a request in
//! another content type (415) gets the service's JSON `ApiError`.

pub mod json;
pub mod otlp;
pub mod writer;

use std::borrow::Cow;
use std::io::Read as _;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flate2::read::GzDecoder;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use service_kit::ApiError;

use crate::api::AppState;
use crate::ingest::writer::CommitError;
use crate::metrics::Transport;

/// The OTLP/HTTP protobuf media type.
pub const PROTOBUF: &str = "application/x-protobuf";

/// Why an OTLP/HTTP body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not `application/x-protobuf`.
    #[error("unsupported content type {0:?}: OTLP/HTTP here accepts {PROTOBUF} only")]
    ContentType(String),
    /// Neither gzip nor identity.
    #[error("unsupported content encoding {0:?}: expected gzip or none")]
    ContentEncoding(String),
    /// The gzip stream is broken.
    #[error("cannot decompress the gzip body: {0}")]
    Gzip(#[source] std::io::Error),
    /// Larger than the limit once decompressed.
    #[error("the decompressed body is larger than {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// Not an `ExportTraceServiceRequest`.
    #[error("cannot decode the body as an OTLP ExportTraceServiceRequest: {0}")]
    Protobuf(#[source] prost::DecodeError),
}

/// Decodes an OTLP/HTTP traces body: checks the content type, inflates gzip (bounded by
/// `max_bytes`) and decodes the protobuf. Never panics, whatever the bytes.
pub fn decode_request(
    headers: &HeaderMap,
    body: &[u8],
    max_bytes: usize,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    let bytes = request_bytes(headers, body, max_bytes)?;
    ExportTraceServiceRequest::decode(bytes.as_ref()).map_err(DecodeError::Protobuf)
}

/// [`decode_request`] then [`otlp::convert`], with the same result and errors, but reading
/// the spans straight from the bytes ([`otlp::convert_encoded`]) whenever it can, which
/// spares building and freeing the whole request. Never panics, whatever the bytes.
pub fn decode_and_convert(
    headers: &HeaderMap,
    body: &[u8],
    max_bytes: usize,
) -> Result<otlp::Conversion, DecodeError> {
    let bytes = request_bytes(headers, body, max_bytes)?;
    if let Some(conversion) = otlp::convert_encoded(&bytes) {
        return Ok(conversion);
    }
    let request =
        ExportTraceServiceRequest::decode(bytes.as_ref()).map_err(DecodeError::Protobuf)?;
    Ok(otlp::convert(&request))
}

/// The encoded request: the body itself, or inflated when it is gzip.
fn request_bytes<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    max_bytes: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    check_content_type(headers)?;
    let gzip = match headers.get(CONTENT_ENCODING) {
        None => false,
        Some(encoding) if encoding.as_bytes().eq_ignore_ascii_case(b"gzip") => true,
        Some(encoding) if encoding.as_bytes().eq_ignore_ascii_case(b"identity") => false,
        Some(encoding) => {
            let encoding = String::from_utf8_lossy(encoding.as_bytes()).into_owned();
            return Err(DecodeError::ContentEncoding(encoding));
        }
    };
    if gzip {
        Ok(Cow::Owned(gunzip(body, max_bytes)?))
    } else {
        Ok(Cow::Borrowed(body))
    }
}

/// Accepts `application/x-protobuf` (any parameters) or no content type at all.
fn check_content_type(headers: &HeaderMap) -> Result<(), DecodeError> {
    if let Some(content_type) = headers.get(CONTENT_TYPE) {
        let text = String::from_utf8_lossy(content_type.as_bytes());
        let media_type = text.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case(PROTOBUF) {
            return Err(DecodeError::ContentType(text.into_owned()));
        }
    }
    Ok(())
}

/// Inflates a gzip body, refusing to produce more than `max_bytes`.
pub fn gunzip(body: &[u8], max_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    let mut inflated = Vec::with_capacity(body.len().saturating_mul(4).min(max_bytes));
    // One byte past the limit tells "exactly at the limit" from "over it".
    GzDecoder::new(body)
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(DecodeError::Gzip)?;
    if inflated.len() > max_bytes {
        return Err(DecodeError::TooLarge { limit: max_bytes });
    }
    Ok(inflated)
}

impl DecodeError {
    fn into_api_error(self) -> ApiError {
        let status = match &self {
            DecodeError::ContentType(_) | DecodeError::ContentEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            DecodeError::Gzip(_) | DecodeError::Protobuf(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, self.to_string())
    }
}

/// The API error for events that were not committed.
pub(crate) fn commit_error(error: CommitError) -> ApiError {
    match error {
        CommitError::Unavailable(_) | CommitError::Stopped => ApiError::unavailable(
            "store_unavailable",
            "the event store is unavailable; nothing was stored, retry later",
            error,
        ),
        CommitError::Failed(_) => ApiError::internal("store_failed", error),
    }
}

fn body_error(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large(limit as u64)
    } else {
        ApiError::bad_request("the request body could not be read")
    }
}

/// Seconds an OTLP client is asked to wait before retrying when the store is unavailable.
const RETRY_AFTER_SECONDS: &str = "1";

/// An OTLP/HTTP failure: the service's [`ApiError`] (its status, its logging, the span
/// marked on 5xx), answered as the OTLP spec says.
#[derive(Debug)]
pub(crate) struct OtlpError {
    error: ApiError,
    /// Whether the request was `application/x-protobuf`: then the body is a protobuf
    /// `google.rpc.Status`; otherwise the JSON `ApiError`.
    protobuf: bool,
}

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let message = match self.error.body().get("detail") {
            Some(detail) => format!("{}: {detail}", self.error.message()),
            None => self.error.message().to_owned(),
        };
        let mut response = self.error.into_response();
        if self.protobuf {
            let body = tonic_types::Status {
                code: grpc_code(status) as i32,
                message,
                details: Vec::new(),
            }
            .encode_to_vec();
            let (mut parts, _) = response.into_parts();
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
            parts.headers.remove(http::header::CONTENT_LENGTH);
            response = Response::from_parts(parts, axum::body::Body::from(body));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

/// The gRPC code that matches an HTTP status, for `google.rpc.Status.code` (informative:
/// OTLP clients go by the HTTP status).
fn grpc_code(status: StatusCode) -> tonic::Code {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            tonic::Code::InvalidArgument
        }
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    }
}

/// `POST /v1/traces`: OTLP/HTTP protobuf, optionally gzip.
pub(crate) async fn otlp_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OtlpError> {
    let protobuf = check_content_type(&headers).is_ok();
    otlp_traces_inner(state, headers, body)
        .await
        .map_err(|error| OtlpError { error, protobuf })
}

async fn otlp_traces_inner(
    state: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let limit = state.config.max_body_bytes;
    let body = body.map_err(|rejection| body_error(rejection, limit))?;
    let conversion =
        decode_and_convert(&headers, &body, limit).map_err(DecodeError::into_api_error)?;
    drop(body);
    state.metrics.spans(
        Transport::Http,
        conversion.spans,
        conversion.dropped,
        conversion.rejected,
    );
    let response = conversion.response();
    let events = conversion.events.len() as u64;
    let committed = state.writer.commit(conversion.events).await;
    state
        .metrics
        .ingested(Transport::Http, events, committed.is_ok());
    committed.map_err(commit_error)?;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF))],
        response.encode_to_vec(),
    )
        .into_response())
}

/// `POST /events`: lifecycle events as JSON.
pub(crate) async fn json_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let limit = state.config.max_body_bytes;
    let is_json = headers.get(CONTENT_TYPE).is_some_and(|value| {
        let text = String::from_utf8_lossy(value.as_bytes());
        let media_type = text.split(';').next().unwrap_or_default().trim();
        media_type.eq_ignore_ascii_case("application/json")
    });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected content type application/json",
        ));
    }
    let body = body.map_err(|rejection| body_error(rejection, limit))?;
    let events = match json::parse_events(&body) {
        Ok(events) => events,
        Err(error) => {
            state.metrics.rejected(Transport::Json, 1);
            return Err(ApiError::bad_request(error.to_string()));
        }
    };
    let count = events.len() as u64;
    let committed = state.writer.commit(events).await;
    state
        .metrics
        .ingested(Transport::Json, count, committed.is_ok());
    committed.map_err(commit_error)?;
    Ok(axum::Json(serde_json::json!({ "accepted": count })).into_response())
}
