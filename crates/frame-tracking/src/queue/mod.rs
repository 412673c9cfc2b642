//! [`FrameQueue`]: send a frame (its [`FrameMetadata`] and payload bytes) to a queue and
//! receive it elsewhere with its trace context, over one of three adapters:
//!
//! | adapter | config | `messaging.system` | for |
//! |---|---|---|---|
//! | [`InMemoryQueue`] | [`InMemoryConfig`] | `in_memory` | one process (the embedded default), tests |
//! | [`RedisQueue`] | [`RedisConfig`] | `redis` | Redis Streams with a consumer group |
//! | [`RabbitMqQueue`] | [`RabbitMqConfig`] | `rabbitmq` | a durable RabbitMQ quorum queue |
//!
//! Every adapter behaves the same way:
//!
//! - [`send`](FrameQueue::send) starts a producer span (`send <queue>`, kind producer) as a
//!   child of the current span, injects its context into the message and ends it once the
//!   broker has the message (Redis `XADD` answered, RabbitMQ publisher confirm received).
//!   When telemetry does not record the span, the frame's own `trace_context` is injected
//!   instead, so an untraced service passes traces on; with [`Propagation::Off`] nothing
//!   is injected or extracted.
//! - [`receive`](FrameQueue::receive) waits for one message and returns a [`Delivery`]: the
//!   payload, the metadata, the extracted context and a consumer span (`process <queue>`,
//!   kind consumer) whose parent is the producer span. The span lasts until the delivery
//!   is settled.
//! - [`receive_batch`](FrameQueue::receive_batch) returns up to `max` messages under one
//!   consumer span that links every producer span instead of having a parent.
//! - [`Delivery::ack`] after successful handling; [`Delivery::nack`] on failure, which
//!   makes the message come back later, or moves it to the dead-letter queue once it has
//!   been delivered `max_deliveries` times. A delivery dropped without either is delivered
//!   again (in memory at once, Redis after the claim interval, RabbitMQ when the channel
//!   closes).
//! - Delivery is at least once: a consumer that crashes between handling and acking
//!   leaves the message to be delivered again, so handlers must be idempotent.
//! - [`QueueMetrics`](telemetry::metrics::QueueMetrics) labelled with the queue name count
//!   published, processed, failed, redelivered and dead-lettered messages and track the
//!   length, pending count and age of the oldest pending message.
//!
//! ```
//! use frame_tracking::queue::{FrameQueue, InMemoryConfig};
//! use frame_tracking::{FrameId, FrameMetadata};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let queue = FrameQueue::connect(InMemoryConfig::new("frames:queue").into()).await?;
//!
//! // Producer (frame-capture).
//! let metadata = FrameMetadata::new(FrameId::generate("cam01", "rgb")?);
//! queue.send(&metadata, b"jpeg bytes").await?;
//!
//! // Consumer (frame-processor).
//! let delivery = queue.receive().await?;
//! assert_eq!(delivery.metadata().frame_id, metadata.frame_id);
//! assert_eq!(delivery.payload(), b"jpeg bytes");
//! delivery.ack().await?;
//! # Ok(())
//! # }
//! ```

mod memory;
mod rabbitmq;
mod redis;

use std::fmt;
use std::time::Duration;

use opentelemetry::propagation::Extractor;
use tracing::Span;

pub use crate::queue::memory::{InMemoryConfig, InMemoryQueue, Overflow};
pub use crate::queue::rabbitmq::{RabbitMqConfig, RabbitMqQueue};
pub use crate::queue::redis::{RedisConfig, RedisQueue};

use crate::carrier;
use crate::context::TraceContext;
use crate::metadata::{FrameMetadata, MetadataError};
use crate::span;

/// A frame queue over one of the adapters; cheap to clone, every clone uses the same
/// connections and consumer.
#[derive(Debug, Clone)]
pub enum FrameQueue {
    /// In one process.
    InMemory(InMemoryQueue),
    /// Redis Streams.
    Redis(RedisQueue),
    /// RabbitMQ.
    RabbitMq(RabbitMqQueue),
}

/// Which adapter to use and how; what a service's typed config resolves to.
#[derive(Debug, Clone)]
pub enum QueueConfig {
    /// [`InMemoryQueue`].
    InMemory(InMemoryConfig),
    /// [`RedisQueue`].
    Redis(RedisConfig),
    /// [`RabbitMqQueue`].
    RabbitMq(RabbitMqConfig),
}

/// Whether messages carry trace context. Producer and consumer spans are created either
/// way; whether they are recorded and exported is telemetry's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// W3C trace context in the message (the default): the producer span's context, or,
    /// when that span is not recorded (telemetry disabled, or the span filtered out), the
    /// frame's own [`FrameMetadata::trace_context`], so a service that does not trace
    /// still passes its frames' traces on. The consumer extracts it and parents its span
    /// on it.
    W3c,
    /// No trace context written into messages or read from them: the consumer span is not
    /// connected to the producer's trace. For measuring what propagation itself costs
    /// (`cargo xtask bench tracking`).
    Off,
}

/// One received message; settle it with [`ack`](Delivery::ack) or
/// [`nack`](Delivery::nack).
pub struct Delivery {
    payload: Vec<u8>,
    metadata: FrameMetadata,
    context: TraceContext,
    message_id: String,
    delivery_count: u64,
    span: Span,
    settle: Settle,
}

/// Messages received together under one consumer span that links each producer span.
#[derive(Debug)]
pub struct Batch {
    /// The messages, each to be settled on its own.
    pub deliveries: Vec<Delivery>,
    /// The consumer span of the batch, with a link per message.
    pub span: Span,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The in-memory queue is full and its overflow policy is [`Overflow::Reject`].
    #[error("queue {queue} is full ({capacity} messages)")]
    Full {
        /// The queue name.
        queue: String,
        /// Its capacity.
        capacity: usize,
    },
    /// The metadata could not be written as JSON.
    #[error("frame metadata could not be encoded")]
    Metadata(#[from] MetadataError),
    /// A Redis command failed.
    #[error("redis {operation} on {queue} failed")]
    Redis {
        /// The queue (stream) name.
        queue: String,
        /// What was being done.
        operation: &'static str,
        /// The Redis error.
        #[source]
        source: ::redis::RedisError,
    },
    /// A RabbitMQ operation failed.
    #[error("rabbitmq {operation} on {queue} failed")]
    RabbitMq {
        /// The queue name.
        queue: String,
        /// What was being done.
        operation: &'static str,
        /// The AMQP error.
        #[source]
        source: lapin::Error,
    },
    /// The broker refused a published message (a negative publisher confirm).
    #[error("rabbitmq did not confirm the message published to {queue}")]
    NotConfirmed {
        /// The queue name.
        queue: String,
    },
    /// The consumer was cancelled by the broker.
    #[error("the consumer of {queue} was cancelled")]
    ConsumerCancelled {
        /// The queue name.
        queue: String,
    },
    /// The configuration is invalid.
    #[error("invalid queue configuration: {0}")]
    Config(String),
}

/// How a delivery is settled, per adapter.
pub(crate) enum Settle {
    InMemory(memory::Pending),
    Redis(redis::Pending),
    RabbitMq(rabbitmq::Pending),
}

/// The message as every adapter decodes it, before it becomes a [`Delivery`].
pub(crate) struct Received {
    pub(crate) payload: Vec<u8>,
    pub(crate) metadata: FrameMetadata,
    pub(crate) context: TraceContext,
    pub(crate) message_id: String,
    pub(crate) delivery_count: u64,
    pub(crate) settle: Settle,
}

/// What the spans of one queue say about it.
#[derive(Debug, Clone)]
pub(crate) struct SpanInfo {
    pub(crate) system: &'static str,
    pub(crate) destination: String,
    pub(crate) send_operation: &'static str,
    pub(crate) propagation: Propagation,
}

impl FrameQueue {
    /// Connects (or, in memory, creates) the queue `config` describes, declaring what the
    /// broker needs (consumer group, queues, dead-letter exchange).
    pub async fn connect(config: QueueConfig) -> Result<FrameQueue, QueueError> {
        Ok(match config {
            QueueConfig::InMemory(config) => FrameQueue::InMemory(InMemoryQueue::new(config)?),
            QueueConfig::Redis(config) => FrameQueue::Redis(RedisQueue::connect(config).await?),
            QueueConfig::RabbitMq(config) => {
                FrameQueue::RabbitMq(RabbitMqQueue::connect(config).await?)
            }
        })
    }

    /// Sends a frame: starts a producer span, injects its context, and returns the
    /// message id once the queue has the message.
    pub async fn send(
        &self,
        metadata: &FrameMetadata,
        payload: &[u8],
    ) -> Result<String, QueueError> {
        match self {
            FrameQueue::InMemory(queue) => queue.send(metadata, payload).await,
            FrameQueue::Redis(queue) => queue.send(metadata, payload).await,
            FrameQueue::RabbitMq(queue) => queue.send(metadata, payload).await,
        }
    }

    /// Waits for the next message.
    pub async fn receive(&self) -> Result<Delivery, QueueError> {
        match self {
            FrameQueue::InMemory(queue) => queue.receive().await,
            FrameQueue::Redis(queue) => queue.receive().await,
            FrameQueue::RabbitMq(queue) => queue.receive().await,
        }
    }

    /// Waits for at least one message and returns up to `max` that are ready, under one
    /// consumer span linking every producer span.
    pub async fn receive_batch(&self, max: usize) -> Result<Batch, QueueError> {
        match self {
            FrameQueue::InMemory(queue) => queue.receive_batch(max).await,
            FrameQueue::Redis(queue) => queue.receive_batch(max).await,
            FrameQueue::RabbitMq(queue) => queue.receive_batch(max).await,
        }
    }

    /// The queue name (`messaging.destination.name`).
    pub fn name(&self) -> &str {
        match self {
            FrameQueue::InMemory(queue) => queue.name(),
            FrameQueue::Redis(queue) => queue.name(),
            FrameQueue::RabbitMq(queue) => queue.name(),
        }
    }
}

impl From<InMemoryConfig> for QueueConfig {
    fn from(config: InMemoryConfig) -> QueueConfig {
        QueueConfig::InMemory(config)
    }
}

impl From<RedisConfig> for QueueConfig {
    fn from(config: RedisConfig) -> QueueConfig {
        QueueConfig::Redis(config)
    }
}

impl From<RabbitMqConfig> for QueueConfig {
    fn from(config: RabbitMqConfig) -> QueueConfig {
        QueueConfig::RabbitMq(config)
    }
}

impl Delivery {
    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The frame metadata.
    pub fn metadata(&self) -> &FrameMetadata {
        &self.metadata
    }

    /// The trace context the producer injected (invalid when it sent none, or with
    /// [`Propagation::Off`]).
    pub fn context(&self) -> &TraceContext {
        &self.context
    }

    /// The broker's id of the message (`messaging.message.id`): the stream entry id in
    /// Redis, the AMQP `message-id` property, a sequence number in memory.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// How many times the message has been delivered, this delivery included.
    pub fn delivery_count(&self) -> u64 {
        self.delivery_count
    }

    /// The consumer span: enter it, or `instrument` the handling with it, so the work is
    /// part of the producer's trace.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Acknowledges the message after successful handling: it is not delivered again.
    pub async fn ack(self) -> Result<(), QueueError> {
        match self.settle {
            Settle::InMemory(pending) => pending.ack(),
            Settle::Redis(pending) => pending.ack().await,
            Settle::RabbitMq(pending) => pending.ack().await,
        }
    }

    /// Reports failed handling: the message is delivered again later, or moved to the
    /// dead-letter queue when it has been delivered `max_deliveries` times.
    pub async fn nack(self) -> Result<(), QueueError> {
        telemetry::spans::SpanExt::set_status(
            &self.span,
            opentelemetry::trace::Status::error("handling failed"),
        );
        match self.settle {
            Settle::InMemory(pending) => pending.nack(self.delivery_count),
            Settle::Redis(pending) => pending.nack(self.delivery_count).await,
            Settle::RabbitMq(pending) => pending.nack(self.delivery_count).await,
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message_id", &self.message_id)
            .field("frame_id", &self.metadata.frame_id)
            .field("context", &self.context)
            .field("delivery_count", &self.delivery_count)
            .field("payload_bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("message_id", &self.message_id)
            .field("delivery_count", &self.delivery_count)
            .finish_non_exhaustive()
    }
}

impl SpanInfo {
    /// The producer span of one message, a child of the current span.
    pub(crate) fn producer_span(&self, metadata: &FrameMetadata) -> Span {
        tracing::info_span!(
            "queue.send",
            otel.name = format!("send {}", self.destination),
            otel.kind = "producer",
            messaging.system = self.system,
            messaging.destination.name = self.destination.as_str(),
            messaging.operation.type = "send",
            messaging.operation.name = self.send_operation,
            messaging.message.id = tracing::field::Empty,
            frame.id = metadata.frame_id.as_str(),
            camera.id = metadata.frame_id.camera_id(),
        )
    }

    /// The context to inject for the producer span `span` of the frame of `metadata`: the
    /// span's own when it is recorded, else the frame's (passed on unchanged), none with
    /// propagation off.
    pub(crate) fn context_of(&self, span: &Span, metadata: &FrameMetadata) -> TraceContext {
        match self.propagation {
            Propagation::W3c => {
                let context = span::span_context(span);
                match &metadata.trace_context {
                    Some(frame) if !context.is_valid() && frame.is_valid() => frame.clone(),
                    _ => context,
                }
            }
            Propagation::Off => TraceContext::default(),
        }
    }

    /// The context a message carries, read from `extractor`; none with propagation off.
    pub(crate) fn extract(&self, extractor: &impl Extractor) -> TraceContext {
        match self.propagation {
            Propagation::W3c => carrier::extract(extractor),
            Propagation::Off => TraceContext::default(),
        }
    }

    /// The consumer span of one message, a child of the producer's context.
    pub(crate) fn consumer_span(&self, received: &Received) -> Span {
        let span = tracing::info_span!(
            "queue.process",
            otel.name = format!("process {}", self.destination),
            otel.kind = "consumer",
            messaging.system = self.system,
            messaging.destination.name = self.destination.as_str(),
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.message.id = received.message_id.as_str(),
            queue.delivery_count = received.delivery_count,
            frame.id = received.metadata.frame_id.as_str(),
            camera.id = received.metadata.frame_id.camera_id(),
        );
        span::set_parent(&span, &received.context);
        span
    }

    /// Turns one received message into a delivery with its own consumer span.
    pub(crate) fn single(&self, received: Received) -> Delivery {
        let span = self.consumer_span(&received);
        received.into_delivery(span)
    }

    /// Turns received messages into a batch under one consumer span linking each
    /// producer span.
    pub(crate) fn batch(&self, received: Vec<Received>) -> Batch {
        let span = tracing::info_span!(
            "queue.process",
            otel.name = format!("process {}", self.destination),
            otel.kind = "consumer",
            messaging.system = self.system,
            messaging.destination.name = self.destination.as_str(),
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.batch.message_count = received.len(),
        );
        for message in &received {
            span::add_link(&span, &message.context);
        }
        let deliveries = received
            .into_iter()
            .map(|message| message.into_delivery(span.clone()))
            .collect();
        Batch { deliveries, span }
    }
}

impl Received {
    fn into_delivery(self, span: Span) -> Delivery {
        Delivery {
            payload: self.payload,
            metadata: self.metadata,
            context: self.context,
            message_id: self.message_id,
            delivery_count: self.delivery_count,
            span,
            settle: self.settle,
        }
    }
}

/// The time to wait for more messages in one blocking read: short enough that claims and
/// metrics run on time, never zero (which Redis reads as "forever").
pub(crate) fn poll_interval(bound: Duration) -> Duration {
    bound.clamp(Duration::from_millis(10), Duration::from_secs(1))
}
