//! The in-memory adapter propagates context like the brokers do.

use frame_tracking::FrameQueue;
use frame_tracking::queue::InMemoryConfig;

use crate::helpers::unique;
use crate::propagation;

#[tokio::test]
async fn in_memory_consumer_span_is_a_child_of_the_producer_span() {
    let queue = FrameQueue::connect(InMemoryConfig::new(unique("memory")).into())
        .await
        .unwrap();
    propagation::consumer_span_is_child_of_producer_span(&queue, "in_memory").await;
}

#[tokio::test]
async fn in_memory_batch_span_links_every_producer_span() {
    let queue = FrameQueue::connect(InMemoryConfig::new(unique("memory")).into())
        .await
        .unwrap();
    propagation::batch_span_links_every_producer_span(&queue).await;
}
