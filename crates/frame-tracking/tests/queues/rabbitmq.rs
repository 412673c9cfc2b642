//! RabbitMQ: propagation through message headers, and the pending and lag gauges.

use std::time::{SystemTime, UNIX_EPOCH};

use frame_tracking::FrameQueue;
use frame_tracking::queue::RabbitMqConfig;
use lapin::options::{BasicPublishOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};

use crate::helpers::{frame, harness, metric, unique};
use crate::propagation;

/// `AMQP_URL` (or the local default), failing the test when RabbitMQ is unreachable.
pub(crate) fn amqp_url() -> String {
    let url = testkit::amqp_url();
    testkit::require_reachable("RabbitMQ", "AMQP_URL", &url);
    url
}

/// Deletes the queue `name`, its dead-letter queue and exchange.
pub(crate) async fn delete_queues(name: &str) {
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let dead = format!("{name}:dead");
    for queue in [name, dead.as_str()] {
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    channel
        .exchange_delete(dead.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn rabbitmq_consumer_span_is_a_child_of_the_producer_span() {
    let name = unique("rabbitmq");
    let queue = FrameQueue::connect(RabbitMqConfig::new(amqp_url(), &name).into())
        .await
        .unwrap();
    propagation::consumer_span_is_child_of_producer_span(&queue, "rabbitmq").await;
    drop(queue);
    delete_queues(&name).await;
}

#[tokio::test]
async fn rabbitmq_batch_span_links_every_producer_span() {
    let name = unique("rabbitmq");
    let queue = FrameQueue::connect(RabbitMqConfig::new(amqp_url(), &name).into())
        .await
        .unwrap();
    propagation::batch_span_links_every_producer_span(&queue).await;
    drop(queue);
    delete_queues(&name).await;
}

#[tokio::test]
async fn rabbitmq_lag_is_the_age_since_publish_of_the_oldest_held_delivery() {
    harness();
    let name = unique("rabbitmq");
    let queue = FrameQueue::connect(RabbitMqConfig::new(amqp_url(), &name).into())
        .await
        .unwrap();
    // A message published an hour ago, as its AMQP timestamp says.
    let an_hour_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3_600;
    let mut headers = FieldTable::default();
    headers.insert(
        "x-frame-metadata".into(),
        AMQPValue::LongString(frame(1).to_json().unwrap().into()),
    );
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let published = channel
        .basic_publish(
            "".into(),
            name.as_str().into(),
            BasicPublishOptions::default(),
            b"old",
            BasicProperties::default()
                .with_timestamp(an_hour_ago)
                .with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(matches!(published, Confirmation::NotRequested));

    // The first receive observes, with the delivery just received held and unsettled.
    let delivery = queue.receive().await.unwrap();
    assert_eq!(delivery.payload(), b"old");
    assert_eq!(metric("queue_pending_messages", &name), Some(1.0));
    let lag = metric("queue_lag_seconds", &name).unwrap();
    assert!(lag >= 3_600.0, "lag {lag} s, published an hour ago");
    delivery.ack().await.unwrap();
    drop(queue);
    delete_queues(&name).await;
}
