//! OTLP/gRPC: tonic services for traces, metrics and logs that accept gzip.

use std::future::Future;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
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

use crate::convert::Origin;
use crate::model::Transport;
use crate::sink::{Behaviour, MAX_MESSAGE_BYTES};
use crate::store::{Arrival, ExportRequest, Store, header_pairs};

/// Implements the three OTLP collector services over one [`Store`].
#[derive(Debug, Clone)]
struct GrpcReceiver {
    store: Arc<Store>,
}

/// Serves the OTLP/gRPC services on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let receiver = Arc::new(GrpcReceiver { store });
    Server::builder()
        .add_service(
            TraceServiceServer::from_arc(Arc::clone(&receiver))
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            MetricsServiceServer::from_arc(Arc::clone(&receiver))
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            LogsServiceServer::from_arc(receiver)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

impl GrpcReceiver {
    async fn receive<R>(&self, request: Request<R>) -> Result<(), Status>
    where
        R: ExportRequest + Send,
    {
        let (metadata, _extensions, message) = request.into_parts();
        let headers = metadata.into_headers();
        // tonic has already decompressed the message; the header says whether it had to.
        let compressed = headers
            .get("grpc-encoding")
            .is_some_and(|encoding| encoding.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let arrival = Arrival {
            origin: Origin {
                transport: Transport::Grpc,
                compressed,
            },
            headers: header_pairs(&headers),
        };
        match self.store.receive(message, arrival) {
            Behaviour::Accept => Ok(()),
            Behaviour::Unavailable => Err(Status::unavailable(
                "otlp-sink is set to answer unavailable",
            )),
            Behaviour::Delay(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.receive(request).await?;
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.receive(request).await?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.receive(request).await?;
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}
