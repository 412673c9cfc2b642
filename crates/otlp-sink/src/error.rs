//! Errors returned by the sink.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::model::{Signal, Transport};

/// The sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot bind the otlp {transport} listener to {addr}")]
    Bind {
        /// Which receiver failed.
        transport: Transport,
        /// The address it tried.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A `wait_for_*` call gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The predicate did not hold before the timeout.
    #[error("timed out after {timeout:?} waiting for {signal}; {received} received: [{seen}]")]
    Timeout {
        /// The signal waited for.
        signal: Signal,
        /// How long the call waited.
        timeout: Duration,
        /// How many items had been received.
        received: usize,
        /// Span names, log bodies or metric names of the first items received,
        /// comma-separated.
        seen: String,
    },
}

/// A server did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// The server failed or panicked.
    #[error("the otlp {transport} server failed")]
    Serve {
        /// Which server.
        transport: Transport,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// In-flight requests did not finish in time, so the server was aborted.
    #[error("the otlp {transport} server did not stop within {timeout:?}")]
    Timeout {
        /// Which server.
        transport: Transport,
        /// How long it was given.
        timeout: Duration,
    },
}
