//! The RabbitMQ adapter: a durable quorum queue, publisher confirms, manual acks and a
//! dead-letter exchange.
//!
//! - A message's body is the payload; its headers carry the metadata JSON
//!   (`x-frame-metadata`) and `traceparent`/`tracestate`; its `message-id` is the frame id.
//!   Messages are persistent and a send returns only after the broker confirmed it.
//! - The queue is a quorum queue, so the broker counts deliveries (`x-delivery-count`, the
//!   failed deliveries before this one). A nack of the `max_deliveries`-th delivery
//!   rejects without requeue, which routes the message through the dead-letter exchange
//!   `<queue>:dead` to the durable queue `<queue>:dead`; earlier nacks requeue it.
//!   `x-delivery-limit` is set to `max_deliveries` as well, so a message whose consumer
//!   keeps crashing is dead-lettered by the broker.
//! - Unacked messages of a consumer whose connection closes (a crash) are delivered again
//!   at once.
//! - Every message carries the AMQP `timestamp` property (Unix seconds) set at publish.
//!   The consumer's gauges, refreshed at most once a second when it receives, describe
//!   what this consumer holds: `queue_pending_messages` is the deliveries it has handed out
//!   and not yet settled, and `queue_lag_seconds` the age, since publish, of the oldest of
//!   them (to the second; 0 when it holds none). A consumer that keeps up reports the
//!   time its latest message waited in the queue; messages prefetched by the channel but
//!   not yet received, and other consumers' deliveries, are not seen. `queue_length` is
//!   the queue's ready messages from a passive `queue.declare`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
};
use telemetry::metrics::QueueMetrics;
use tokio::sync::Mutex;

use crate::carrier;
use crate::metadata::FrameMetadata;
use crate::queue::{Batch, Delivery, Propagation, QueueError, Received, Settle, SpanInfo};

/// The header carrying the frame metadata as JSON.
const METADATA_HEADER: &str = "x-frame-metadata";
/// How often the consumer reads the queue length from the broker.
const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

/// How a [`RabbitMqQueue`] is set up.
#[derive(Debug, Clone)]
pub struct RabbitMqConfig {
    /// The AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// The queue name, e.g. `frames:queue`.
    pub queue: String,
    /// How many unacked messages the broker sends this consumer ahead.
    pub prefetch: u16,
    /// Deliveries after which a failed message is dead-lettered.
    pub max_deliveries: u64,
    /// Whether messages carry trace context.
    pub propagation: Propagation,
}

/// A RabbitMQ queue; clones share the connection, channels and consumer.
#[derive(Debug, Clone)]
pub struct RabbitMqQueue {
    shared: Arc<Shared>,
}

/// The settle handle of a RabbitMQ delivery.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    acker: Option<Acker>,
    /// The key of this delivery in [`Shared::unsettled`].
    key: u64,
}

#[derive(Debug)]
struct Shared {
    config: RabbitMqConfig,
    spans: SpanInfo,
    metrics: QueueMetrics,
    /// Kept so the connection lives as long as the queue.
    _connection: Connection,
    publish: Channel,
    consume: Channel,
    consumer: Mutex<ConsumerState>,
    /// Deliveries handed out and not yet settled, with their publish timestamps (Unix
    /// seconds; `None` when the publisher set none), by a key of this process's.
    unsettled: std::sync::Mutex<HashMap<u64, Option<u64>>>,
    next_key: AtomicU64,
}

#[derive(Debug)]
struct ConsumerState {
    consumer: Option<Consumer>,
    last_observed: Option<Instant>,
}

impl RabbitMqConfig {
    /// The queue `queue` on the broker at `url`: prefetch 16, dead-letter after 5
    /// deliveries, with propagation.
    pub fn new(url: impl Into<String>, queue: impl Into<String>) -> RabbitMqConfig {
        RabbitMqConfig {
            url: url.into(),
            queue: queue.into(),
            prefetch: 16,
            max_deliveries: 5,
            propagation: Propagation::W3c,
        }
    }

    /// The dead-letter exchange and queue: `<queue>:dead`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}:dead", self.queue)
    }
}

impl RabbitMqQueue {
    /// Connects, opens a confirming publish channel and a consume channel, and declares
    /// the queue, the dead-letter exchange and the dead-letter queue.
    pub async fn connect(config: RabbitMqConfig) -> Result<RabbitMqQueue, QueueError> {
        if config.max_deliveries == 0 || config.prefetch == 0 {
            return Err(QueueError::Config(
                "max_deliveries and prefetch must be positive".to_owned(),
            ));
        }
        let error = |operation| {
            let queue = config.queue.clone();
            move |source| QueueError::RabbitMq {
                queue,
                operation,
                source,
            }
        };
        let connection = Connection::connect(&config.url, ConnectionProperties::default())
            .await
            .map_err(error("connect"))?;
        let publish = connection
            .create_channel()
            .await
            .map_err(error("open channel"))?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(error("confirm.select"))?;
        let consume = connection
            .create_channel()
            .await
            .map_err(error("open channel"))?;
        consume
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(error("basic.qos"))?;

        let dead = config.dead_letter_queue();
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        publish
            .exchange_declare(
                dead.as_str().into(),
                lapin::ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(error("exchange.declare"))?;
        publish
            .queue_declare(dead.as_str().into(), durable, FieldTable::default())
            .await
            .map_err(error("queue.declare"))?;
        publish
            .queue_bind(
                dead.as_str().into(),
                dead.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(error("queue.bind"))?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dead.as_str().into()),
        );
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::try_from(config.max_deliveries).unwrap_or(i64::MAX)),
        );
        publish
            .queue_declare(config.queue.as_str().into(), durable, arguments)
            .await
            .map_err(error("queue.declare"))?;

        let spans = SpanInfo {
            system: "rabbitmq",
            destination: config.queue.clone(),
            send_operation: "publish",
            propagation: config.propagation,
        };
        Ok(RabbitMqQueue {
            shared: Arc::new(Shared {
                metrics: QueueMetrics::new(config.queue.clone()),
                spans,
                _connection: connection,
                publish,
                consume,
                consumer: Mutex::new(ConsumerState {
                    consumer: None,
                    last_observed: None,
                }),
                unsettled: std::sync::Mutex::new(HashMap::new()),
                next_key: AtomicU64::new(0),
                config,
            }),
        })
    }

    /// The queue name.
    pub fn name(&self) -> &str {
        &self.shared.config.queue
    }

    /// Publishes a frame and waits for the publisher confirm; see
    /// [`FrameQueue::send`](crate::queue::FrameQueue::send).
    pub async fn send(
        &self,
        metadata: &FrameMetadata,
        payload: &[u8],
    ) -> Result<String, QueueError> {
        let shared = &self.shared;
        let span = shared.spans.producer_span(metadata);
        let mut headers = FieldTable::default();
        headers.insert(
            METADATA_HEADER.into(),
            AMQPValue::LongString(metadata.to_json()?.into()),
        );
        carrier::inject(
            &shared.spans.context_of(&span, metadata),
            &mut carrier::AmqpHeadersInjector(&mut headers),
        );
        let message_id = metadata.frame_id.as_str().to_owned();
        let properties = BasicProperties::default()
            .with_message_id(message_id.as_str().into())
            .with_delivery_mode(2)
            .with_content_type("application/octet-stream".into())
            .with_timestamp(unix_seconds(SystemTime::now()))
            .with_headers(headers);
        let confirm = shared
            .publish
            .basic_publish(
                "".into(),
                shared.config.queue.as_str().into(),
                BasicPublishOptions::default(),
                payload,
                properties,
            )
            .await
            .map_err(shared.error("basic.publish"))?
            .await
            .map_err(shared.error("publisher confirm"))?;
        match confirm {
            Confirmation::Ack(_) => {}
            Confirmation::Nack(_) | Confirmation::NotRequested => {
                return Err(QueueError::NotConfirmed {
                    queue: shared.config.queue.clone(),
                });
            }
        }
        span.record("messaging.message.id", message_id.as_str());
        shared.metrics.published(1);
        Ok(message_id)
    }

    /// Waits for the next message; see
    /// [`FrameQueue::receive`](crate::queue::FrameQueue::receive).
    pub async fn receive(&self) -> Result<Delivery, QueueError> {
        let mut state = self.shared.consumer.lock().await;
        let received = self.shared.next(&mut state).await?;
        Ok(self.shared.spans.single(received))
    }

    /// Waits for at least one message and returns up to `max` that are ready; see
    /// [`FrameQueue::receive_batch`](crate::queue::FrameQueue::receive_batch).
    pub async fn receive_batch(&self, max: usize) -> Result<Batch, QueueError> {
        let mut state = self.shared.consumer.lock().await;
        let mut received = vec![self.shared.next(&mut state).await?];
        while received.len() < max {
            // Only what the channel already holds; no observing here, whose round trip
            // would never finish in one poll and drop the message just received.
            match self.shared.receive_one(&mut state).now_or_never() {
                Some(message) => received.push(message?),
                None => break,
            }
        }
        Ok(self.shared.spans.batch(received))
    }
}

impl Shared {
    fn error(&self, operation: &'static str) -> impl FnOnce(lapin::Error) -> QueueError + '_ {
        move |source| QueueError::RabbitMq {
            queue: self.config.queue.clone(),
            operation,
            source,
        }
    }

    /// The next well-formed message; malformed ones are dead-lettered on the way.
    async fn next(self: &Arc<Self>, state: &mut ConsumerState) -> Result<Received, QueueError> {
        let received = self.receive_one(state).await?;
        // Observed after receiving, so the message just received counts: a consumer that
        // settles each message before asking for the next would otherwise never hold one
        // when the gauges are set.
        let due = state
            .last_observed
            .is_none_or(|last| last.elapsed() >= OBSERVE_INTERVAL);
        if due {
            state.last_observed = Some(Instant::now());
            self.observe().await?;
        }
        Ok(received)
    }

    /// The next well-formed message, without observing.
    async fn receive_one(
        self: &Arc<Self>,
        state: &mut ConsumerState,
    ) -> Result<Received, QueueError> {
        if state.consumer.is_none() {
            let consumer = self
                .consume
                .basic_consume(
                    self.config.queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(self.error("basic.consume"))?;
            state.consumer = Some(consumer);
        }
        loop {
            let next = match state.consumer.as_mut() {
                Some(consumer) => consumer.next().await,
                None => None,
            };
            let delivery = match next {
                Some(delivery) => delivery.map_err(self.error("consume"))?,
                None => {
                    return Err(QueueError::ConsumerCancelled {
                        queue: self.config.queue.clone(),
                    });
                }
            };
            let headers = delivery.properties.headers().clone().unwrap_or_default();
            // Failed deliveries before this one, counted by the quorum queue.
            let previous = match headers.inner().get("x-delivery-count") {
                Some(AMQPValue::LongLongInt(count)) => u64::try_from(*count).unwrap_or(0),
                Some(AMQPValue::LongInt(count)) => u64::try_from(*count).unwrap_or(0),
                _ => u64::from(delivery.redelivered),
            };
            let delivery_count = previous + 1;
            if delivery_count > 1 {
                self.metrics.redelivered(1);
            }
            let key = self.next_key.fetch_add(1, Ordering::Relaxed);
            self.unsettled_map()
                .insert(key, *delivery.properties.timestamp());
            let pending = Pending {
                shared: Arc::clone(self),
                acker: Some(delivery.acker.clone()),
                key,
            };
            let metadata = match headers.inner().get(METADATA_HEADER) {
                Some(AMQPValue::LongString(json)) => std::str::from_utf8(json.as_bytes())
                    .ok()
                    .and_then(|json| FrameMetadata::from_json(json).ok()),
                _ => None,
            };
            let Some(metadata) = metadata else {
                tracing::warn!(queue = %self.config.queue, "malformed message dead-lettered");
                pending.reject().await?;
                continue;
            };
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(ShortString::to_string)
                .unwrap_or_default();
            return Ok(Received {
                context: self.spans.extract(&carrier::AmqpHeadersExtractor(&headers)),
                payload: delivery.data,
                metadata,
                message_id,
                delivery_count,
                settle: Settle::RabbitMq(pending),
            });
        }
    }

    fn unsettled_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Option<u64>>> {
        // The map stays consistent whatever panicked while holding it: one insert or remove.
        self.unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the length gauge from a passive declare, and the pending and lag gauges from
    /// this consumer's unsettled deliveries.
    async fn observe(&self) -> Result<(), QueueError> {
        let queue = self
            .publish
            .queue_declare(
                self.config.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(self.error("queue.declare"))?;
        self.metrics.set_length(u64::from(queue.message_count()));
        let (pending, lag) = {
            let unsettled = self.unsettled_map();
            let now = unix_seconds(SystemTime::now());
            (
                unsettled.len() as u64,
                oldest_age(unsettled.values().copied(), now),
            )
        };
        self.metrics.set_pending(pending);
        self.metrics.set_lag(lag);
        Ok(())
    }
}

impl Pending {
    fn take(&mut self) -> Option<Acker> {
        let acker = self.acker.take();
        if acker.is_some() {
            self.shared.unsettled_map().remove(&self.key);
        }
        acker
    }

    pub(crate) async fn ack(mut self) -> Result<(), QueueError> {
        if let Some(acker) = self.take() {
            acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(self.shared.error("basic.ack"))?;
            self.shared.metrics.processed(1);
        }
        Ok(())
    }

    /// Requeues the message, or rejects it into the dead-letter queue when this was
    /// delivery `max_deliveries`.
    pub(crate) async fn nack(mut self, delivery_count: u64) -> Result<(), QueueError> {
        self.shared.metrics.failed(1);
        if delivery_count >= self.shared.config.max_deliveries {
            return self.reject().await;
        }
        if let Some(acker) = self.take() {
            acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
                .map_err(self.shared.error("basic.nack"))?;
        }
        Ok(())
    }

    /// Rejects without requeue: the broker routes the message to the dead-letter exchange.
    async fn reject(mut self) -> Result<(), QueueError> {
        if let Some(acker) = self.take() {
            acker
                .nack(BasicNackOptions {
                    requeue: false,
                    ..BasicNackOptions::default()
                })
                .await
                .map_err(self.shared.error("basic.nack"))?;
            self.shared.metrics.dead_lettered(1);
        }
        Ok(())
    }
}

impl Drop for Pending {
    /// A delivery dropped unsettled is requeued, as a crashed consumer's would be.
    fn drop(&mut self) {
        if let Some(acker) = self.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                // Nothing to report to: the channel closing requeues it anyway.
                let _ = acker.nack(requeue).await;
            });
        }
    }
}

/// Seconds since the Unix epoch (0 for a clock before it).
fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The age at `now` of the oldest of `timestamps` (Unix seconds; `None`s, messages published
/// without a timestamp, are skipped); zero when there is none, or for a timestamp in the
/// future (clocks disagree).
fn oldest_age(timestamps: impl Iterator<Item = Option<u64>>, now: u64) -> Duration {
    timestamps.flatten().min().map_or(Duration::ZERO, |oldest| {
        Duration::from_secs(now.saturating_sub(oldest))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::queue::rabbitmq::oldest_age;

    #[test]
    fn lag_is_the_age_of_the_oldest_timestamped_delivery() {
        let held = [Some(1_000), None, Some(990), Some(1_005)];
        assert_eq!(oldest_age(held.into_iter(), 1_010), Duration::from_secs(20));
    }

    #[test]
    fn lag_is_zero_without_timestamped_deliveries_or_for_future_ones() {
        assert_eq!(oldest_age([None, None].into_iter(), 1_010), Duration::ZERO);
        assert_eq!(oldest_age(std::iter::empty(), 1_010), Duration::ZERO);
        assert_eq!(oldest_age([Some(2_000)].into_iter(), 1_010), Duration::ZERO);
    }
}
