//! An in-process OTLP receiver for tests, benchmarks and demos.
//!
//! [`OtlpSink`] listens for OTLP/gRPC and OTLP/HTTP (protobuf, optionally gzip) on two
//! ports, decodes every export request with `opentelemetry-proto`, and keeps the spans,
//! log records and metrics as flat, assertion-friendly values ([`ReceivedSpan`],
//! [`ReceivedLog`], [`ReceivedMetric`]) together with per-request facts
//! ([`RequestInfo`]: transport, compression, headers). [`Behaviour`] makes it answer
//! unavailable or slowly, to exercise exporter error handling.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! use otlp_sink::OtlpSink;
//!
//! let sink = OtlpSink::start().await?;
//! // Configure the exporter with `sink.grpc_endpoint()` or `sink.http_endpoint()`.
//! let spans = sink
//!     .wait_for_spans(|spans| !spans.is_empty(), Duration::from_secs(5))
//!     .await?;
//! assert_eq!(spans[0].service_name(), Some("checkout"));
//! # Ok(())
//! # }
//! ```
//!
//! The `otlp-sink` binary runs the same receiver as a process that only counts, for
//! benchmarks.

#![warn(missing_docs)]

mod convert;
mod error;
mod grpc_server;
mod http_server;
mod model;
mod sink;
mod store;

pub use crate::error::{ShutdownError, StartError, WaitError};
pub use crate::model::{
    AttrValue, Attributes, Counts, DataPoint, MetricKind, PointValue, ReceivedEvent, ReceivedLink,
    ReceivedLog, ReceivedMetric, ReceivedSpan, RequestInfo, Signal, SpanKind, SpanStatus,
    StatusCode, Temporality, Transport,
};
pub use crate::sink::{Behaviour, OtlpSink, Retention, SinkConfig};
