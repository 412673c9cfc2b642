//! Redis Streams: propagation, restart, trimming and metrics.

use std::time::Duration;

use frame_tracking::FrameQueue;
use frame_tracking::queue::{RedisConfig, RedisQueue};

use crate::helpers::{frame, harness, metric, unique};
use crate::propagation;

/// `REDIS_URL` (or the local default), failing the test when Redis is unreachable.
pub(crate) fn redis_url() -> String {
    let url = testkit::redis_url();
    testkit::require_reachable("Redis", "REDIS_URL", &url);
    url
}

pub(crate) fn config(stream: &str, consumer: &str) -> RedisConfig {
    RedisConfig {
        claim_interval: Duration::from_millis(500),
        ..RedisConfig::new(redis_url(), stream, "workers", consumer)
    }
}

pub(crate) async fn redis_command<T: redis::FromRedisValue>(cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut connection).await.unwrap()
}

pub(crate) async fn xlen(stream: &str) -> u64 {
    redis_command(redis::cmd("XLEN").arg(stream)).await
}

#[tokio::test]
async fn redis_consumer_span_is_a_child_of_the_producer_span() {
    let stream = unique("redis");
    let queue = FrameQueue::connect(config(&stream, "c1").into())
        .await
        .unwrap();
    propagation::consumer_span_is_child_of_producer_span(&queue, "redis").await;
}

#[tokio::test]
async fn redis_batch_span_links_every_producer_span() {
    let stream = unique("redis");
    let queue = FrameQueue::connect(config(&stream, "c1").into())
        .await
        .unwrap();
    propagation::batch_span_links_every_producer_span(&queue).await;
}

#[tokio::test]
async fn restarted_consumer_rereads_its_own_pending_entries_first() {
    let stream = unique("redis");
    let first = RedisQueue::connect(config(&stream, "c1")).await.unwrap();
    first.send(&frame(1), b"one").await.unwrap();
    first.send(&frame(2), b"two").await.unwrap();
    let unacked = first.receive().await.unwrap();
    let unacked_id = unacked.message_id().to_owned();
    // The process "restarts": the delivery is never acked.
    drop(unacked);
    drop(first);

    let restarted = RedisQueue::connect(config(&stream, "c1")).await.unwrap();
    let again = restarted.receive().await.unwrap();
    assert_eq!(again.message_id(), unacked_id);
    assert_eq!(again.metadata().sequence, 1);
    assert_eq!(again.delivery_count(), 2);
    again.ack().await.unwrap();
    // Entry 2 was buffered by the first consumer and is pending too: it comes next.
    let next = restarted.receive().await.unwrap();
    assert_eq!(next.metadata().sequence, 2);
    next.ack().await.unwrap();
}

#[tokio::test]
async fn trimming_keeps_every_pending_and_undelivered_entry() {
    let stream = unique("redis");
    let queue = RedisQueue::connect(RedisConfig {
        max_len: Some(5),
        batch: 1,
        ..config(&stream, "c1")
    })
    .await
    .unwrap();
    for sequence in 0..20 {
        queue.send(&frame(sequence), b"").await.unwrap();
    }
    for _ in 0..10 {
        queue.receive().await.unwrap().ack().await.unwrap();
    }
    let pending = queue.receive().await.unwrap();
    assert_eq!(pending.metadata().sequence, 10);

    queue.trim().await.unwrap();

    // 10 acked entries are gone; the pending one and the 9 undelivered ones stay, although
    // that is more than max_len.
    assert_eq!(xlen(&stream).await, 10);
    let first: redis::streams::StreamRangeReply = redis_command(
        redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1),
    )
    .await;
    assert_eq!(first.ids[0].id, pending.message_id());
    pending.ack().await.unwrap();
    for sequence in 11..20 {
        let delivery = queue.receive().await.unwrap();
        assert_eq!(delivery.metadata().sequence, sequence);
        delivery.ack().await.unwrap();
    }
}

#[tokio::test]
async fn queue_metrics_count_published_and_processed_messages() {
    harness();
    let stream = unique("redis");
    let queue = FrameQueue::connect(config(&stream, "c1").into())
        .await
        .unwrap();
    for sequence in 0..3 {
        queue.send(&frame(sequence), b"").await.unwrap();
    }
    for _ in 0..2 {
        queue.receive().await.unwrap().ack().await.unwrap();
    }
    let failed = queue.receive().await.unwrap();
    failed.nack().await.unwrap();
    assert_eq!(metric("queue_messages_published_total", &stream), Some(3.0));
    assert_eq!(metric("queue_messages_processed_total", &stream), Some(2.0));
    assert_eq!(metric("queue_messages_failed_total", &stream), Some(1.0));
    // Maintenance runs before the first read: the gauges exist.
    assert!(metric("queue_pending_messages", &stream).is_some());
    assert!(metric("queue_length", &stream).is_some());
    assert!(metric("queue_lag_seconds", &stream).is_some());
}
