//! OTLP/HTTP with protobuf bodies: `POST /v1/traces`, `/v1/metrics` and `/v1/logs`,
//! optionally gzip-compressed.

use std::future::Future;
use std::io::{self, Read};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flate2::read::GzDecoder;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;

use crate::convert::Origin;
use crate::model::Transport;
use crate::sink::{Behaviour, MAX_MESSAGE_BYTES};
use crate::store::{Arrival, ExportRequest, Store, header_pairs};

/// The largest body accepted after gzip decompression; bigger ones are answered 413
/// rather than inflated without bound.
const MAX_DECOMPRESSED_BYTES: usize = 4 * MAX_MESSAGE_BYTES;

const PROTOBUF: &str = "application/x-protobuf";

/// Why an HTTP export request was refused.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("unsupported content type {0:?}, expected {PROTOBUF}")]
    ContentType(String),
    #[error("unsupported content encoding {0:?}, expected gzip or none")]
    ContentEncoding(String),
    #[error("cannot decompress the gzip body")]
    Decompress(#[source] io::Error),
    #[error("the decompressed body exceeds {MAX_DECOMPRESSED_BYTES} bytes")]
    TooLarge,
    #[error("cannot decode the protobuf body")]
    Decode(#[source] prost::DecodeError),
    #[error("otlp-sink is set to answer unavailable")]
    Unavailable,
}

/// Serves the OTLP/HTTP routes on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route(
            "/v1/traces",
            post(export::<ExportTraceServiceRequest, ExportTraceServiceResponse>),
        )
        .route(
            "/v1/metrics",
            post(export::<ExportMetricsServiceRequest, ExportMetricsServiceResponse>),
        )
        .route(
            "/v1/logs",
            post(export::<ExportLogsServiceRequest, ExportLogsServiceResponse>),
        )
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(store)
}

async fn export<Req, Resp>(
    State(store): State<Arc<Store>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response
where
    Req: ExportRequest + Message + Default + Send + 'static,
    Resp: Message + Default,
{
    match receive::<Req>(&store, &headers, &body).await {
        Ok(()) => (
            [(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF))],
            Resp::default().encode_to_vec(),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

async fn receive<Req>(store: &Store, headers: &HeaderMap, body: &[u8]) -> Result<(), HttpError>
where
    Req: ExportRequest + Message + Default,
{
    if let Some(content_type) = headers.get(CONTENT_TYPE) {
        let content_type = String::from_utf8_lossy(content_type.as_bytes());
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case(PROTOBUF) {
            return Err(HttpError::ContentType(content_type.into_owned()));
        }
    }
    let compressed = match headers.get(CONTENT_ENCODING) {
        None => false,
        Some(encoding) if encoding.as_bytes().eq_ignore_ascii_case(b"gzip") => true,
        Some(encoding) if encoding.as_bytes().eq_ignore_ascii_case(b"identity") => false,
        Some(encoding) => {
            let encoding = String::from_utf8_lossy(encoding.as_bytes()).into_owned();
            return Err(HttpError::ContentEncoding(encoding));
        }
    };
    let request = if compressed {
        Req::decode(gunzip(body)?.as_slice())
    } else {
        Req::decode(body)
    }
    .map_err(HttpError::Decode)?;
    let arrival = Arrival {
        origin: Origin {
            transport: Transport::Http,
            compressed,
        },
        headers: header_pairs(headers),
    };
    match store.receive(request, arrival) {
        Behaviour::Accept => Ok(()),
        Behaviour::Unavailable => Err(HttpError::Unavailable),
        Behaviour::Delay(delay) => {
            tokio::time::sleep(delay).await;
            Ok(())
        }
    }
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut decompressed = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    GzDecoder::new(body)
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut decompressed)
        .map_err(HttpError::Decompress)?;
    if decompressed.len() > MAX_DECOMPRESSED_BYTES {
        return Err(HttpError::TooLarge);
    }
    Ok(decompressed)
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::ContentType(_) | Self::ContentEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Decompress(_) | Self::Decode(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        // The exporter logs the body, so give it the whole cause chain.
        let mut message = self.to_string();
        let mut source = std::error::Error::source(&self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        (status, message).into_response()
    }
}
