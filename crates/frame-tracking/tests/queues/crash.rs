//! A consumer killed with SIGKILL after reading and before acking: another consumer
//! finishes its messages; none is lost, duplicates are counted and reported.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use frame_tracking::FrameQueue;
use frame_tracking::queue::RabbitMqConfig;
use futures::StreamExt;

use crate::helpers::{frame, unique};
use crate::rabbitmq::{amqp_url, delete_queues};
use crate::redis::{config, redis_url};

const MESSAGES: u64 = 10_000;
/// Messages the first consumer acks before it takes one more and is killed holding it.
const ACKED_BEFORE_KILL: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_consumer_loses_no_message() {
    let stream = unique("crash");
    let producer = FrameQueue::connect(config(&stream, "producer").into())
        .await
        .unwrap();
    send_all(&producer).await;
    let worker_acked = run_worker_until_killed("redis", &redis_url(), &stream);
    let survivor = FrameQueue::connect(config(&stream, "survivor").into())
        .await
        .unwrap();
    finish_and_report("redis", &survivor, worker_acked, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_rabbitmq_consumer_loses_no_message() {
    let name = unique("crash");
    let queue = FrameQueue::connect(RabbitMqConfig::new(amqp_url(), &name).into())
        .await
        .unwrap();
    send_all(&queue).await;
    let worker_acked = run_worker_until_killed("rabbitmq", &amqp_url(), &name);
    finish_and_report("rabbitmq", &queue, worker_acked, false).await;
    drop(queue);
    delete_queues(&name).await;
}

async fn send_all(queue: &FrameQueue) {
    futures::stream::iter(0..MESSAGES)
        .map(|sequence| async move { queue.send(&frame(sequence), b"frame").await })
        .buffer_unordered(64)
        .for_each(|sent| async move {
            sent.unwrap();
        })
        .await;
}

/// Runs `frame-queue-worker` until it holds a message unacked, kills it with SIGKILL and
/// returns the sequence numbers it acked.
fn run_worker_until_killed(backend: &str, url: &str, queue: &str) -> Vec<u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_frame-queue-worker"))
        .args(["--backend", backend, "--url", url, "--queue", queue])
        .args(["--consumer", "doomed", "--hold-after"])
        .arg(ACKED_BEFORE_KILL.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the worker starts");
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut acked = Vec::new();
    loop {
        let line = received
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let status = child.try_wait();
                panic!(
                    "the worker did not hold a message in time ({} acked, status {status:?})",
                    acked.len()
                )
            });
        if let Some(sequence) = line.strip_prefix("acked ") {
            acked.push(sequence.parse().unwrap());
        } else if line.starts_with("holding ") {
            break;
        }
    }
    // SIGKILL: no chance to ack, nack or close anything.
    child.kill().unwrap();
    child.wait().unwrap();
    acked
}

/// Consumes until every sequence number has been handled by someone, then reports.
/// `acks_confirmed`: the server answers each ack (Redis `XACK`), so no acked message can be
/// delivered again; AMQP acks are not answered, and the last ones may die with the process.
async fn finish_and_report(
    backend: &str,
    queue: &FrameQueue,
    worker_acked: Vec<u64>,
    acks_confirmed: bool,
) {
    assert_eq!(worker_acked.len() as u64, ACKED_BEFORE_KILL);
    let mut seen: HashSet<u64> = worker_acked.iter().copied().collect();
    let mut handled = worker_acked.len() as u64;
    let mut redelivered = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while (seen.len() as u64) < MESSAGES {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let delivery = tokio::time::timeout(remaining, queue.receive())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{backend}: {} of {MESSAGES} messages handled after 300 s",
                    seen.len()
                )
            })
            .unwrap();
        if delivery.delivery_count() > 1 {
            redelivered += 1;
        }
        seen.insert(delivery.metadata().sequence);
        handled += 1;
        delivery.ack().await.unwrap();
    }
    let lost = MESSAGES - seen.len() as u64;
    let duplicates = handled - seen.len() as u64;
    eprintln!(
        "{backend} crash: {MESSAGES} sent, {} acked before SIGKILL, {lost} lost, \
         {duplicates} handled twice, {redelivered} redelivered to the survivor",
        worker_acked.len()
    );
    assert_eq!(lost, 0);
    assert!(
        redelivered >= 1,
        "the message held by the killed consumer came back"
    );
    if acks_confirmed {
        // Every ack the worker reported was answered by the server before it said so, so
        // nothing it handled can come back.
        assert_eq!(duplicates, 0);
    }
}
