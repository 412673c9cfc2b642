//! RabbitMQ: propagation through message headers.

use frame_tracking::FrameQueue;
use frame_tracking::queue::RabbitMqConfig;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

use crate::helpers::unique;
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
