//! OTLP/gRPC ingest: the `TraceService` on its own listener (`OTLP_GRPC_PORT`, 4317 by
//! default), gzip accepted, messages bounded by `INGEST_MAX_BODY_BYTES`.
//!
//! The same conversion and group-commit writer as OTLP/HTTP; an unavailable store is
//! `UNAVAILABLE` (the exporter retries), nothing acknowledged.

use std::future::Future;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::api::AppState;
use crate::ingest::otlp;
use crate::ingest::writer::CommitError;
use crate::metrics::Transport;

/// The gRPC trace service over the tracker's state.
#[derive(Debug, Clone)]
struct GrpcIngest {
    state: AppState,
}

/// Serves OTLP/gRPC on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let limit = state.config.max_body_bytes;
    let service = TraceServiceServer::new(GrpcIngest { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[tonic::async_trait]
impl TraceService for GrpcIngest {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let request = request.into_inner();
        let conversion = otlp::convert(&request);
        drop(request);
        let metrics = &self.state.metrics;
        metrics.spans(
            Transport::Grpc,
            conversion.spans,
            conversion.dropped,
            conversion.rejected,
        );
        let response = conversion.response();
        let events = conversion.events.len() as u64;
        let committed = self.state.writer.commit(conversion.events).await;
        metrics.ingested(Transport::Grpc, events, committed.is_ok());
        match committed {
            Ok(()) => Ok(Response::new(response)),
            Err(CommitError::Unavailable(_) | CommitError::Stopped) => Err(Status::unavailable(
                "the event store is unavailable; nothing was stored, retry later",
            )),
            Err(CommitError::Failed(_)) => Err(Status::internal("the event store failed")),
        }
    }
}
