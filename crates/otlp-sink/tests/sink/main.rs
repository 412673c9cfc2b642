//! Integration tests: real OTLP exports over gRPC and HTTP into a running sink.

mod binary;
mod grpc;
mod helpers;
mod http;
mod lifecycle;
mod wait;
