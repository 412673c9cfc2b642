//! Delivery of captured frames to the processor.
//!
//! - HTTP (`POST {PROCESSOR_URL}/process`) through the telemetry client, so each request
//!   has a client span (a child of the frame's `capture` span) and carries `traceparent`:
//!   the processor's spans join the frame's trace.
//! - A frame-tracking [`FrameQueue`] (Redis Streams or RabbitMQ): the metadata and the
//!   encoded pixels as payload; the queue's producer span is a child of `capture` and its
//!   context travels in the message.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use frame_tracking::FrameMetadata;
use frame_tracking::queue::{FrameQueue, QueueError, RabbitMqConfig, RedisConfig};
use opentelemetry::KeyValue;
use serde_json::json;
use telemetry::Telemetry;
use telemetry::client::SpanAttributes;

use crate::config::{DeliveryConfig, Encoding, QueueKind, QueueTarget};
use crate::scene::GroundTruth;

/// A frame ready to deliver.
#[derive(Debug, Clone)]
pub struct CapturedFrame {
    /// Its metadata (id, camera, size, format, sequence, ground truth attribute).
    pub metadata: FrameMetadata,
    /// How `encoded` is encoded.
    pub encoding: Encoding,
    /// The pixels.
    pub encoded: Vec<u8>,
    /// What the scene drew.
    pub truth: Vec<GroundTruth>,
}

/// Why a frame was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The processor was unreachable or too slow.
    #[error("cannot reach the processor: {0}")]
    Transport(String),
    /// The queue failed.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// The processor answered with an error.
    #[error("the processor answered {status}: {body}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
}

/// Where frames go.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// `POST /process` on the processor.
    Http(HttpDelivery),
    /// A frame queue the processor consumes.
    Queue(FrameQueue),
}

/// HTTP delivery.
#[derive(Debug, Clone)]
pub struct HttpDelivery {
    client: reqwest_middleware::ClientWithMiddleware,
    endpoint: String,
}

impl Delivery {
    /// The delivery `config` describes, instrumented by `telemetry`.
    ///
    /// A queue is connected (and declared) here, so an unreachable broker stops startup.
    pub async fn from_config(
        config: &DeliveryConfig,
        telemetry: &Telemetry,
    ) -> Result<Delivery, DeliveryError> {
        match config {
            DeliveryConfig::Http { url, timeout } => {
                Ok(Delivery::Http(HttpDelivery::new(url, *timeout, telemetry)?))
            }
            DeliveryConfig::Queue(target) => Ok(Delivery::Queue(connect(target).await?)),
        }
    }

    /// Delivers one frame; `Ok` once the processor accepted it.
    pub async fn deliver(&self, frame: &CapturedFrame) -> Result<(), DeliveryError> {
        match self {
            Delivery::Http(http) => http.deliver(frame).await,
            Delivery::Queue(queue) => {
                queue.send(&frame.metadata, &frame.encoded).await?;
                Ok(())
            }
        }
    }
}

impl HttpDelivery {
    /// A client for the processor at `url` (`/process` is appended).
    pub fn new(
        url: &str,
        timeout: Duration,
        telemetry: &Telemetry,
    ) -> Result<HttpDelivery, DeliveryError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|error| DeliveryError::Client(error.to_string()))?;
        Ok(HttpDelivery {
            client: telemetry.http_client(client),
            endpoint: format!("{}/process", url.trim_end_matches('/')),
        })
    }

    async fn deliver(&self, frame: &CapturedFrame) -> Result<(), DeliveryError> {
        let body = request_body(frame);
        let response = self
            .client
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .body(body)
            .with_extension(SpanAttributes(vec![
                KeyValue::new("frame.id", frame.metadata.frame_id.to_string()),
                KeyValue::new("camera.id", frame.metadata.camera_id.clone()),
            ]))
            .send()
            .await
            .map_err(|error| DeliveryError::Transport(error.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut body = response.text().await.unwrap_or_default();
        body.truncate(body.floor_char_boundary(300));
        Err(DeliveryError::Rejected {
            status: status.as_u16(),
            body,
        })
    }
}

/// Connects the queue `target` names; the Redis consumer group is the processor's.
pub async fn connect(target: &QueueTarget) -> Result<FrameQueue, QueueError> {
    let url = target.url.expose();
    let config = match target.kind {
        QueueKind::Redis => {
            RedisConfig::new(url, &target.name, "frame-processor", "frame-capture").into()
        }
        QueueKind::Amqp => RabbitMqConfig::new(url, &target.name).into(),
    };
    FrameQueue::connect(config).await
}

/// The processor's `POST /process` body: its own fields plus the frame's metadata.
pub fn request_body(frame: &CapturedFrame) -> String {
    let metadata = &frame.metadata;
    let timestamp = metadata
        .captured_at
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0);
    json!({
        "frame_id": metadata.frame_id.to_string(),
        "camera_id": metadata.camera_id,
        "frame_data": {
            "width": metadata.width,
            "height": metadata.height,
            "format": frame.encoding.as_str(),
            "timestamp": timestamp,
        },
        "image": base64::engine::general_purpose::STANDARD.encode(&frame.encoded),
        "metadata": metadata,
    })
    .to_string()
}
