//! A queue consumer for crash tests: acks `--hold-after` messages, writing `acked <seq>`
//! for each, then receives one more, writes `holding <seq>` and waits without acking, to
//! be killed in that state.
//!
//! ```text
//! frame-queue-worker --backend redis|rabbitmq --url URL --queue NAME --consumer NAME --hold-after N
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use frame_tracking::FrameQueue;
use frame_tracking::queue::{RabbitMqConfig, RedisConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = err.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            // stderr is this test helper's only channel for errors.
            let _ = writeln!(std::io::stderr(), "frame-queue-worker: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options: HashMap<&str, &str> = args
        .chunks(2)
        .filter_map(|pair| match pair {
            [key, value] => Some((key.trim_start_matches("--"), value.as_str())),
            _ => None,
        })
        .collect();
    let option = |name: &str| {
        options
            .get(name)
            .copied()
            .ok_or_else(|| format!("--{name} is required"))
    };
    let url = option("url")?;
    let queue_name = option("queue")?;
    let hold_after: u64 = option("hold-after")?.parse()?;
    let queue = match option("backend")? {
        "redis" => {
            let config = RedisConfig::new(url, queue_name, "workers", option("consumer")?);
            FrameQueue::connect(config.into()).await?
        }
        "rabbitmq" => FrameQueue::connect(RabbitMqConfig::new(url, queue_name).into()).await?,
        other => return Err(format!("unknown backend {other}").into()),
    };
    let mut stdout = std::io::stdout();
    for _ in 0..hold_after {
        let delivery = queue.receive().await?;
        let sequence = delivery.metadata().sequence;
        delivery.ack().await?;
        writeln!(stdout, "acked {sequence}")?;
    }
    let held = queue.receive().await?;
    writeln!(stdout, "holding {}", held.metadata().sequence)?;
    stdout.flush()?;
    // Hold the message unacked until the test kills this process.
    std::future::pending::<()>().await;
    drop(held);
    Ok(())
}
