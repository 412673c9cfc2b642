//! A message that always fails goes to the dead letters after `max_deliveries`, and the
//! messages sent around it are not held back by its retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use frame_tracking::queue::{RabbitMqConfig, RabbitMqQueue, RedisConfig, RedisQueue};
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;

use crate::helpers::{frame, harness, metric, unique};
use crate::rabbitmq::{amqp_url, delete_queues};
use crate::redis::{config, redis_command};

const NORMAL: u64 = 40;

#[tokio::test]
async fn redis_poison_message_is_dead_lettered_without_delaying_the_others() {
    harness();
    let stream = unique("poison");
    let claim_interval = Duration::from_millis(600);
    let queue = RedisQueue::connect(RedisConfig {
        claim_interval,
        max_deliveries: 3,
        batch: 4,
        ..config(&stream, "c1")
    })
    .await
    .unwrap();

    // The poison goes first; the others follow over about five claim intervals, so they
    // arrive while the poison is being retried.
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let producer = {
        let (queue, sent_at) = (queue.clone(), Arc::clone(&sent_at));
        tokio::spawn(async move {
            let mut poison = frame(0);
            poison
                .attributes
                .insert("poison".to_owned(), "yes".to_owned());
            queue.send(&poison, b"").await.unwrap();
            for sequence in 1..=NORMAL {
                sent_at.lock().unwrap().insert(sequence, Instant::now());
                queue.send(&frame(sequence), b"").await.unwrap();
                tokio::time::sleep(Duration::from_millis(75)).await;
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut poison_deliveries = Vec::new();
    let mut delays = Vec::new();
    while delays.len() < NORMAL as usize || poison_deliveries.len() < 3 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let delivery = tokio::time::timeout(remaining, queue.receive())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "not done in 60 s: {} of {NORMAL} handled, poison delivered {poison_deliveries:?}",
                    delays.len()
                )
            })
            .unwrap();
        if delivery.metadata().attributes.contains_key("poison") {
            poison_deliveries.push(delivery.delivery_count());
            delivery.nack().await.unwrap();
        } else {
            let sent = sent_at.lock().unwrap()[&delivery.metadata().sequence];
            delays.push(sent.elapsed());
            delivery.ack().await.unwrap();
        }
    }
    producer.await.unwrap();

    assert_eq!(poison_deliveries, vec![1, 2, 3]);
    let slowest = delays.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < claim_interval,
        "a message waited {slowest:?}, longer than the claim interval {claim_interval:?}"
    );
    let dead: redis::streams::StreamRangeReply = redis_command(
        redis::cmd("XRANGE")
            .arg(format!("{stream}:dead"))
            .arg("-")
            .arg("+"),
    )
    .await;
    assert_eq!(dead.ids.len(), 1);
    let entry = &dead.ids[0];
    let deliveries: String = entry.get("dead_letter.deliveries").unwrap();
    assert_eq!(deliveries, "3");
    let metadata: String = entry.get("metadata").unwrap();
    assert!(metadata.contains("poison"));
    assert_eq!(metric("queue_dead_lettered_total", &stream), Some(1.0));
    assert_eq!(
        metric("queue_redeliveries_total", &stream),
        Some(2.0),
        "the poison was redelivered twice; nothing else was"
    );
    eprintln!(
        "poison: slowest of {NORMAL} other messages waited {slowest:?} (claim interval {claim_interval:?})"
    );
}

#[tokio::test]
async fn rabbitmq_poison_message_is_dead_lettered_after_max_deliveries() {
    let name = unique("poison");
    let queue = RabbitMqQueue::connect(RabbitMqConfig {
        max_deliveries: 3,
        ..RabbitMqConfig::new(amqp_url(), &name)
    })
    .await
    .unwrap();
    let mut poison = frame(0);
    poison
        .attributes
        .insert("poison".to_owned(), "yes".to_owned());
    queue.send(&poison, b"bad").await.unwrap();
    queue.send(&frame(1), b"good").await.unwrap();

    let mut poison_deliveries = Vec::new();
    let mut good = 0;
    while poison_deliveries.len() < 3 || good < 1 {
        let delivery = tokio::time::timeout(Duration::from_secs(20), queue.receive())
            .await
            .expect("a delivery within 20 s")
            .unwrap();
        if delivery.metadata().attributes.contains_key("poison") {
            poison_deliveries.push(delivery.delivery_count());
            delivery.nack().await.unwrap();
        } else {
            good += 1;
            delivery.ack().await.unwrap();
        }
    }
    assert_eq!(poison_deliveries, vec![1, 2, 3]);

    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let dead_queue = format!("{name}:dead");
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let got = channel
            .basic_get(dead_queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if let Some(message) = got {
            break message;
        }
        assert!(Instant::now() < deadline, "nothing reached {dead_queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.delivery.data, b"bad");
    let headers = dead
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    let Some(AMQPValue::LongString(json)) = headers.inner().get("x-frame-metadata") else {
        panic!("the dead letter keeps its metadata header: {headers:?}");
    };
    assert!(String::from_utf8_lossy(json.as_bytes()).contains("poison"));
    delete_queues(&name).await;
}
