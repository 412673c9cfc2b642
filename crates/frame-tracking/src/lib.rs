//! Frame tracking: follow one camera frame through every service and queue it passes.
//!
//! - [`FrameId`] ([`id`]): a unique, time-sortable, readable id that carries its camera id
//!   and source.
//! - [`FrameMetadata`] ([`metadata`]): what travels with a frame, as versioned JSON that
//!   older and newer readers both understand.
//! - [`TraceContext`] ([`context`]): the W3C trace context of the work on a frame, on top
//!   of the OpenTelemetry API, with a parser that follows the specification.
//! - [`carrier`]: where a trace context travels (HTTP headers, maps, Redis Stream fields,
//!   AMQP headers), with [`inject`](carrier::inject) and [`extract`](carrier::extract).
//! - [`FrameSpan`] ([`span`]): a span for the work on a frame, with `frame.id` and
//!   `camera.id`, parented on the frame's trace context.
//! - [`FrameQueue`] ([`queue`]): send frames through a queue (in memory, Redis Streams,
//!   RabbitMQ) with their trace context, and receive them with ack, retry and dead letters.
//! - [`guide`]: the integration guide, with examples that are compiled as doctests.
//!
//! The crate uses the OpenTelemetry API (through `tracing` and `telemetry`'s span layer)
//! only, never the SDK: without a tracer installed
//! (telemetry disabled) every context is simply invalid and nothing fails.
//!
//! ```
//! use std::collections::HashMap;
//! use frame_tracking::{FrameId, FrameMetadata, TraceContext, carrier};
//!
//! // Producer: a new frame, with the trace context of the span capturing it.
//! let mut metadata = FrameMetadata::new(FrameId::generate("cam01", "rgb")?);
//! let context = TraceContext::from_traceparent(
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
//! )?;
//! metadata.trace_context = Some(context.clone());
//! let mut fields = HashMap::new();
//! carrier::inject(&context, &mut fields);
//!
//! // Consumer: the same frame and trace on the other side.
//! let received = FrameMetadata::from_json(&metadata.to_json()?)?;
//! assert_eq!(received.frame_id, metadata.frame_id);
//! assert_eq!(carrier::extract(&fields), context);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod carrier;
pub mod context;
pub mod id;
pub mod metadata;
pub mod queue;
pub mod span;
mod time;

#[doc = include_str!("../../../docs/frame-tracking.md")]
pub mod guide {}

pub use crate::context::{ContextError, TraceContext};
pub use crate::id::{FrameId, FrameIdError, FrameIdPart};
pub use crate::metadata::{FRAME_METADATA_VERSION, FrameMetadata, MetadataError};
pub use crate::queue::{Delivery, FrameQueue, QueueConfig, QueueError};
pub use crate::span::FrameSpan;
