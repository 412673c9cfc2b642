//! The in-memory adapter: a bounded queue inside one process, with the same delivery
//! semantics as the brokers (pending until acked, redelivery, dead letters).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use telemetry::metrics::QueueMetrics;
use tokio::sync::Notify;

use crate::carrier;
use crate::metadata::FrameMetadata;
use crate::queue::{Batch, Delivery, Propagation, QueueError, Received, Settle, SpanInfo};

/// How an [`InMemoryQueue`] is set up.
#[derive(Debug, Clone)]
pub struct InMemoryConfig {
    /// The queue name, for spans and metrics.
    pub name: String,
    /// The most messages held, pending (delivered, not acked) ones included.
    pub capacity: usize,
    /// What [`send`](InMemoryQueue::send) does when the queue is full.
    pub overflow: Overflow,
    /// Deliveries after which a failed message is dead-lettered.
    pub max_deliveries: u64,
    /// Whether messages carry trace context.
    pub propagation: Propagation,
}

/// What sending to a full in-memory queue does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Wait until a message is acked or dead-lettered (back-pressure on the producer).
    Wait,
    /// Fail at once with [`QueueError::Full`].
    Reject,
}

/// A bounded queue in one process; clones share the queue.
#[derive(Debug, Clone)]
pub struct InMemoryQueue {
    shared: Arc<Shared>,
}

/// The settle handle of an in-memory delivery; dropping it unsettled puts the message
/// back at the front of the queue, as a crashed consumer's message would come back.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    id: u64,
    settled: bool,
}

#[derive(Debug)]
struct Shared {
    config: InMemoryConfig,
    spans: SpanInfo,
    metrics: QueueMetrics,
    state: Mutex<State>,
    not_empty: Notify,
    not_full: Notify,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Message>,
    pending: HashMap<u64, Message>,
    dead: Vec<Message>,
    next_id: u64,
}

#[derive(Debug)]
struct Message {
    id: u64,
    metadata: FrameMetadata,
    payload: Vec<u8>,
    trace: Vec<(String, String)>,
    deliveries: u64,
    sent_at: Instant,
}

impl InMemoryConfig {
    /// A queue named `name` holding at most 1024 messages, waiting when full, dead-lettering
    /// after 5 deliveries, with propagation.
    pub fn new(name: impl Into<String>) -> InMemoryConfig {
        InMemoryConfig {
            name: name.into(),
            capacity: 1024,
            overflow: Overflow::Wait,
            max_deliveries: 5,
            propagation: Propagation::W3c,
        }
    }
}

impl InMemoryQueue {
    /// Creates the queue.
    pub fn new(config: InMemoryConfig) -> Result<InMemoryQueue, QueueError> {
        if config.capacity == 0 || config.max_deliveries == 0 {
            return Err(QueueError::Config(
                "capacity and max_deliveries must be at least 1".to_owned(),
            ));
        }
        let spans = SpanInfo {
            system: "in_memory",
            destination: config.name.clone(),
            send_operation: "send",
            propagation: config.propagation,
        };
        Ok(InMemoryQueue {
            shared: Arc::new(Shared {
                metrics: QueueMetrics::new(config.name.clone()),
                config,
                spans,
                state: Mutex::new(State::default()),
                not_empty: Notify::new(),
                not_full: Notify::new(),
            }),
        })
    }

    /// The queue name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// Sends a frame; see [`FrameQueue::send`](crate::queue::FrameQueue::send).
    pub async fn send(
        &self,
        metadata: &FrameMetadata,
        payload: &[u8],
    ) -> Result<String, QueueError> {
        let shared = &self.shared;
        let span = shared.spans.producer_span(metadata);
        let mut trace = Vec::new();
        carrier::inject(
            &shared.spans.context_of(&span, metadata),
            &mut carrier::StreamFieldsInjector(&mut trace),
        );
        let mut message = Message {
            id: 0,
            metadata: metadata.clone(),
            payload: payload.to_vec(),
            trace,
            deliveries: 0,
            sent_at: Instant::now(),
        };
        loop {
            let not_full = shared.not_full.notified();
            {
                let mut state = shared.lock();
                if state.ready.len() + state.pending.len() < shared.config.capacity {
                    message.id = state.next_id;
                    state.next_id += 1;
                    let id = message.id.to_string();
                    state.ready.push_back(message);
                    shared.update_gauges(&state);
                    drop(state);
                    span.record("messaging.message.id", id.as_str());
                    shared.metrics.published(1);
                    shared.not_empty.notify_one();
                    return Ok(id);
                }
            }
            if shared.config.overflow == Overflow::Reject {
                return Err(QueueError::Full {
                    queue: shared.config.name.clone(),
                    capacity: shared.config.capacity,
                });
            }
            not_full.await;
        }
    }

    /// Waits for the next message; see
    /// [`FrameQueue::receive`](crate::queue::FrameQueue::receive).
    pub async fn receive(&self) -> Result<Delivery, QueueError> {
        let (first, _) = self.take(1).await;
        Ok(self.shared.spans.single(first))
    }

    /// Waits for at least one message and returns up to `max`; see
    /// [`FrameQueue::receive_batch`](crate::queue::FrameQueue::receive_batch).
    pub async fn receive_batch(&self, max: usize) -> Result<Batch, QueueError> {
        let (first, mut rest) = self.take(max.max(1)).await;
        rest.insert(0, first);
        Ok(self.shared.spans.batch(rest))
    }

    /// The frames of dead-lettered messages, oldest first.
    pub fn dead_letters(&self) -> Vec<FrameMetadata> {
        let state = self.shared.lock();
        state
            .dead
            .iter()
            .map(|message| message.metadata.clone())
            .collect()
    }

    /// Waits until a message is ready, then takes up to `max` (at least one).
    async fn take(&self, max: usize) -> (Received, Vec<Received>) {
        let shared = &self.shared;
        loop {
            let not_empty = shared.not_empty.notified();
            {
                let mut state = shared.lock();
                if let Some(first) = state.ready.pop_front() {
                    let mut next = Some(first);
                    let mut received = Vec::new();
                    while let Some(mut message) = next.take() {
                        message.deliveries += 1;
                        if message.deliveries > 1 {
                            shared.metrics.redelivered(1);
                        }
                        received.push(Received {
                            payload: message.payload.clone(),
                            metadata: message.metadata.clone(),
                            context: shared
                                .spans
                                .extract(&carrier::StreamFieldsExtractor(&message.trace)),
                            message_id: message.id.to_string(),
                            delivery_count: message.deliveries,
                            settle: Settle::InMemory(Pending {
                                shared: Arc::clone(shared),
                                id: message.id,
                                settled: false,
                            }),
                        });
                        state.pending.insert(message.id, message);
                        if received.len() < max {
                            next = state.ready.pop_front();
                        }
                    }
                    shared.update_gauges(&state);
                    if !state.ready.is_empty() {
                        // Another receiver may be waiting for what is left.
                        shared.not_empty.notify_one();
                    }
                    let mut received = received.into_iter();
                    // The loop ran at least once, for `first`.
                    if let Some(first) = received.next() {
                        return (first, received.collect());
                    }
                }
            }
            not_empty.await;
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every critical section
        // only moves whole messages between collections.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update_gauges(&self, state: &State) {
        self.metrics.set_length(state.ready.len() as u64);
        self.metrics.set_pending(state.pending.len() as u64);
        let oldest = state
            .pending
            .values()
            .chain(state.ready.iter())
            .map(|message| message.sent_at)
            .min();
        self.metrics
            .set_lag(oldest.map(|sent_at| sent_at.elapsed()).unwrap_or_default());
    }

    /// Settles pending message `id`: `Ack` removes it, `Retry` requeues it at the front,
    /// `Dead` moves it to the dead letters.
    fn settle(&self, id: u64, outcome: Outcome) {
        let mut state = self.lock();
        let Some(message) = state.pending.remove(&id) else {
            return;
        };
        match outcome {
            Outcome::Ack => self.metrics.processed(1),
            Outcome::Retry => {
                state.ready.push_front(message);
                self.not_empty.notify_one();
            }
            Outcome::Dead => {
                self.metrics.dead_lettered(1);
                state.dead.push(message);
            }
        }
        self.update_gauges(&state);
        drop(state);
        if outcome != Outcome::Retry {
            self.not_full.notify_one();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ack,
    Retry,
    Dead,
}

impl Pending {
    pub(crate) fn ack(mut self) -> Result<(), QueueError> {
        self.settled = true;
        self.shared.settle(self.id, Outcome::Ack);
        Ok(())
    }

    pub(crate) fn nack(mut self, delivery_count: u64) -> Result<(), QueueError> {
        self.settled = true;
        self.shared.metrics.failed(1);
        let outcome = if delivery_count >= self.shared.config.max_deliveries {
            Outcome::Dead
        } else {
            Outcome::Retry
        };
        self.shared.settle(self.id, outcome);
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.settle(self.id, Outcome::Retry);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::id::FrameId;
    use crate::queue::memory::{InMemoryConfig, InMemoryQueue, Overflow};
    use crate::queue::{FrameQueue, Propagation, QueueError};
    use crate::{FrameMetadata, TraceContext};

    fn frame(sequence: u64) -> FrameMetadata {
        let mut metadata = FrameMetadata::new(FrameId::generate("cam01", "rgb").unwrap());
        metadata.sequence = sequence;
        metadata
    }

    fn queue(capacity: usize, overflow: Overflow) -> InMemoryQueue {
        InMemoryQueue::new(InMemoryConfig {
            capacity,
            overflow,
            max_deliveries: 3,
            ..InMemoryConfig::new("test")
        })
        .unwrap()
    }

    #[tokio::test]
    async fn messages_arrive_in_order_with_metadata_and_payload() {
        let queue = FrameQueue::InMemory(queue(8, Overflow::Reject));
        for sequence in 0..3 {
            queue
                .send(&frame(sequence), &[sequence as u8])
                .await
                .unwrap();
        }
        for sequence in 0..3 {
            let delivery = queue.receive().await.unwrap();
            assert_eq!(delivery.metadata().sequence, sequence);
            assert_eq!(delivery.payload(), &[sequence as u8]);
            assert_eq!(delivery.delivery_count(), 1);
            delivery.ack().await.unwrap();
        }
    }

    #[tokio::test]
    async fn full_queue_rejects_when_configured_to() {
        let queue = queue(1, Overflow::Reject);
        queue.send(&frame(0), b"a").await.unwrap();
        let err = queue.send(&frame(1), b"b").await.unwrap_err();
        assert!(matches!(err, QueueError::Full { capacity: 1, .. }), "{err}");
        assert_eq!(err.to_string(), "queue test is full (1 messages)");
    }

    #[tokio::test]
    async fn full_queue_makes_the_producer_wait_until_an_ack() {
        let queue = queue(1, Overflow::Wait);
        queue.send(&frame(0), b"a").await.unwrap();
        let producer = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.send(&frame(1), b"b").await })
        };
        let delivery = queue.receive().await.unwrap();
        // Pending messages count against the capacity: the producer still waits.
        tokio::task::yield_now().await;
        assert!(!producer.is_finished());
        delivery.ack().await.unwrap();
        producer.await.unwrap().unwrap();
        assert_eq!(queue.receive().await.unwrap().metadata().sequence, 1);
    }

    #[tokio::test]
    async fn nacked_message_is_redelivered_then_dead_lettered() {
        let queue = queue(4, Overflow::Reject);
        queue.send(&frame(7), b"poison").await.unwrap();
        for expected in 1..=3 {
            let delivery = queue.receive().await.unwrap();
            assert_eq!(delivery.delivery_count(), expected);
            delivery.nack().await.unwrap();
        }
        assert_eq!(queue.dead_letters().len(), 1);
        assert_eq!(queue.dead_letters()[0].sequence, 7);
        let nothing = tokio::time::timeout(Duration::from_millis(20), queue.receive()).await;
        assert!(nothing.is_err(), "a dead-lettered message is not delivered");
    }

    #[tokio::test]
    async fn dropped_delivery_is_delivered_again() {
        let queue = queue(4, Overflow::Reject);
        queue.send(&frame(1), b"x").await.unwrap();
        drop(queue.receive().await.unwrap());
        let again = queue.receive().await.unwrap();
        assert_eq!(again.delivery_count(), 2);
        again.ack().await.unwrap();
    }

    #[tokio::test]
    async fn batch_takes_what_is_ready_up_to_max() {
        let queue = queue(8, Overflow::Reject);
        for sequence in 0..5 {
            queue.send(&frame(sequence), b"").await.unwrap();
        }
        let batch = queue.receive_batch(3).await.unwrap();
        assert_eq!(batch.deliveries.len(), 3);
        let rest = queue.receive_batch(10).await.unwrap();
        assert_eq!(rest.deliveries.len(), 2);
    }

    #[tokio::test]
    async fn without_telemetry_contexts_are_invalid_and_nothing_fails() {
        let queue = queue(2, Overflow::Reject);
        queue.send(&frame(1), b"x").await.unwrap();
        let delivery = queue.receive().await.unwrap();
        assert_eq!(delivery.context(), &TraceContext::default());
        delivery.ack().await.unwrap();
    }

    fn traced_frame() -> FrameMetadata {
        let mut metadata = frame(1);
        metadata.trace_context = Some(
            TraceContext::from_traceparent(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .unwrap(),
        );
        metadata
    }

    #[tokio::test]
    async fn untraced_producer_passes_the_frames_own_context_on() {
        // No telemetry here: the producer span is not recorded and has no context.
        let queue = queue(2, Overflow::Reject);
        let metadata = traced_frame();
        queue.send(&metadata, b"x").await.unwrap();
        let delivery = queue.receive().await.unwrap();
        assert_eq!(Some(delivery.context()), metadata.trace_context.as_ref());
        delivery.ack().await.unwrap();
    }

    #[tokio::test]
    async fn propagation_off_carries_no_context() {
        let queue = InMemoryQueue::new(InMemoryConfig {
            propagation: Propagation::Off,
            ..InMemoryConfig::new("off")
        })
        .unwrap();
        queue.send(&traced_frame(), b"x").await.unwrap();
        let delivery = queue.receive().await.unwrap();
        assert_eq!(delivery.context(), &TraceContext::default());
        delivery.ack().await.unwrap();
    }
}
