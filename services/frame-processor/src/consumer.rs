//! The queue consumer: frames from a frame-tracking [`FrameQueue`] (Redis Streams or
//! RabbitMQ) go through the same pipeline as `POST /process`.
//!
//! Each message is handled inside the queue's consumer span (`process <queue>`, whose
//! parent is the producer span in frame-capture, from the message's trace context), so
//! `process_frame` and its children join the frame's trace. A processed frame is acked;
//! a failed one is nacked, which redelivers it and dead-letters it after the queue's
//! `max_deliveries`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use frame_tracking::queue::{Delivery, FrameQueue, QueueError, RabbitMqConfig, RedisConfig};
use service_kit::env::{Env, EnvError, Secret};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::model::{FrameError, FrameInput, MAX_SIDE, PixelFormat};
use crate::pipeline::{ProcessError, Processor};

/// Which broker to consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Redis Streams.
    Redis,
    /// RabbitMQ.
    Amqp,
}

/// The queue to consume: `QUEUE` (`none`, `redis`, `amqp`), `REDIS_URL` / `AMQP_URL`
/// (secrets), `QUEUE_NAME` (`frames:queue`), `QUEUE_GROUP` (`frame-processor`, Redis
/// consumer group), `QUEUE_CONSUMER` (`frame-processor-<pid>`, Redis consumer name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSource {
    /// The broker.
    pub kind: QueueKind,
    /// The broker URL (may carry credentials).
    pub url: Secret,
    /// The stream or queue name.
    pub name: String,
    /// The Redis consumer group.
    pub group: String,
    /// The Redis consumer name.
    pub consumer: String,
}

impl QueueSource {
    /// Reads the variables above; `None` when `QUEUE` is `none` or unset.
    pub fn from_env(env: &Env) -> Result<Option<QueueSource>, EnvError> {
        let (kind, var, default) =
            match env.choice_or("QUEUE", &["none", "redis", "amqp"], "none")? {
                "redis" => (QueueKind::Redis, "REDIS_URL", "redis://127.0.0.1:6379"),
                "amqp" => (QueueKind::Amqp, "AMQP_URL", "amqp://127.0.0.1:5672/%2f"),
                _ => return Ok(None),
            };
        Ok(Some(QueueSource {
            kind,
            url: env.secret(var).unwrap_or_else(|| Secret::new(default)),
            name: env
                .string("QUEUE_NAME")
                .unwrap_or_else(|| "frames:queue".to_owned()),
            group: env
                .string("QUEUE_GROUP")
                .unwrap_or_else(|| "frame-processor".to_owned()),
            consumer: env
                .string("QUEUE_CONSUMER")
                .unwrap_or_else(|| format!("frame-processor-{}", std::process::id())),
        }))
    }

    /// Connects (and declares) the queue.
    pub async fn connect(&self) -> Result<FrameQueue, QueueError> {
        let url = self.url.expose();
        let config = match self.kind {
            QueueKind::Redis => {
                RedisConfig::new(url, &self.name, &self.group, &self.consumer).into()
            }
            QueueKind::Amqp => RabbitMqConfig::new(url, &self.name).into(),
        };
        FrameQueue::connect(config).await
    }
}

/// Consumes `queue` until `stop` turns true.
pub async fn consume(
    queue: FrameQueue,
    processor: Arc<Processor>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(queue = queue.name(), "consuming frames");
    loop {
        let received = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            received = queue.receive() => received,
        };
        match received {
            Ok(delivery) => handle(&processor, delivery).await,
            Err(error) => {
                tracing::warn!(error = %error, queue = queue.name(), "cannot receive; retrying in 1 s");
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    tracing::info!(queue = queue.name(), "stopped consuming");
}

async fn handle(processor: &Arc<Processor>, delivery: Delivery) {
    let span = delivery.span().clone();
    let outcome = async {
        let input =
            input_of(&delivery).inspect_err(|_| crate::metrics::error("invalid_request"))?;
        processor.process(input).await
    }
    .instrument(span.clone())
    .await;
    let settled = match outcome {
        Ok(_) => delivery.ack().await,
        Err(error) => {
            span.in_scope(|| tracing::warn!(error = %error, "frame from the queue failed; nacked"));
            delivery.nack().await
        }
    };
    if let Err(error) = settled {
        span.in_scope(|| tracing::warn!(error = %error, "cannot settle the message"));
    }
}

/// The pipeline input of a message: its metadata says size and format (and, from
/// synthetic cameras, the ground truth), the payload is the encoded pixels.
pub fn input_of(delivery: &Delivery) -> Result<FrameInput, ProcessError> {
    let metadata = delivery.metadata();
    let invalid = |message: String| ProcessError::Frame(FrameError::Invalid(message));
    let format = PixelFormat::from_str(&metadata.format).map_err(|()| {
        invalid(format!(
            "metadata format {:?} is not supported",
            metadata.format
        ))
    })?;
    for (field, value) in [("width", metadata.width), ("height", metadata.height)] {
        if value == 0 || value > MAX_SIDE {
            return Err(invalid(format!(
                "metadata {field} is {value}, expected 1 to {MAX_SIDE}"
            )));
        }
    }
    Ok(FrameInput {
        frame_id: metadata.frame_id,
        camera_id: metadata.frame_id.camera_id().to_owned(),
        width: metadata.width,
        height: metadata.height,
        format,
        timestamp: metadata
            .captured_at
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|elapsed| elapsed.as_secs_f64()),
        encoded: delivery.payload().to_vec(),
        // The capture service puts the scene's ground truth among the attributes.
        ground_truth: crate::accuracy::ground_truth_of_attributes(&metadata.attributes),
    })
}
