//! `frame-tracking-bench [--messages N] [--rounds R] [--out FILE]`: the numbers behind
//! `cargo xtask bench tracking`, measured in one process (build it in release mode).
//!
//! - `FrameId::generate`, and a `traceparent` + `tracestate` inject and extract round trip
//!   through Redis Stream fields, in nanoseconds per operation (median of 7 runs);
//! - the size of a `TraceContext`;
//! - Redis Streams round-trip throughput (send, receive, ack; 32 sends in flight) with
//!   propagation off and on (producer and consumer spans, context in the message, spans
//!   exported over OTLP as configured by `OTEL_*`), interleaved per round, medians
//!   reported, with this process's CPU time per message (all threads, exporter included)
//!   next to it, which a busy machine disturbs less than throughput.
//!
//! Prints a table and writes the results as JSON to `--out`. Needs Redis (`REDIS_URL`).

// Stdout is this binary's report.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use frame_tracking::carrier::{StreamFieldsExtractor, StreamFieldsInjector, extract, inject};
use frame_tracking::queue::{Propagation, RedisConfig, RedisQueue};
use frame_tracking::{FrameId, FrameMetadata, TraceContext};
use futures::StreamExt;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const RUNS: usize = 7;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> BenchResult<()> {
    let mut messages = 20_000u64;
    let mut rounds = 3usize;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--messages" => messages = value()?.parse()?,
            "--rounds" => rounds = value()?.parse()?,
            "--out" => out = Some(value()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let telemetry = telemetry::init(telemetry::ServiceInfo {
        name: "frame-tracking-bench",
        version: env!("CARGO_PKG_VERSION"),
        catalogs: &[],
    })?;

    let generate_ns = per_op(1_000_000, || {
        black_box(FrameId::generate(black_box("cam01"), black_box("rgb")).ok());
    });
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let round_trip = |context: TraceContext| {
        per_op(1_000_000, || {
            let mut fields = Vec::with_capacity(2);
            inject(black_box(&context), &mut StreamFieldsInjector(&mut fields));
            black_box(extract(&StreamFieldsExtractor(&fields)));
        })
    };
    let round_trip_ns = round_trip(TraceContext::from_traceparent(traceparent)?);
    let with_state_ns = round_trip(TraceContext::from_headers(
        traceparent,
        &["congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"],
    )?);
    let context_bytes = std::mem::size_of::<TraceContext>();

    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let mut off = Vec::new();
    let mut on = Vec::new();
    for round in 0..rounds {
        // Alternate which mode goes first, so a slow spell on this machine does not always
        // land on the same one.
        let order = if round % 2 == 0 {
            [Propagation::Off, Propagation::W3c]
        } else {
            [Propagation::W3c, Propagation::Off]
        };
        for propagation in order {
            let run = redis_round_trip(&url, messages, propagation, round).await?;
            match propagation {
                Propagation::Off => off.push(run),
                Propagation::W3c => on.push(run),
            }
        }
    }
    let off_rate = median(off.iter().map(|run| run.rate).collect());
    let on_rate = median(on.iter().map(|run| run.rate).collect());
    let overhead_percent = (off_rate - on_rate) / off_rate * 100.0;
    let off_cpu = median(off.iter().map(|run| run.cpu_us).collect());
    let on_cpu = median(on.iter().map(|run| run.cpu_us).collect());
    let cpu_overhead_percent = (on_cpu - off_cpu) / off_cpu * 100.0;

    println!("| measurement | result | target |");
    println!("|---|---|---|");
    println!("| `FrameId::generate` | {generate_ns:.0} ns | ≤ 100 ns |");
    println!("| traceparent inject + extract | {round_trip_ns:.0} ns | ≤ 300 ns |");
    println!("| same with a two-member tracestate | {with_state_ns:.0} ns | |");
    println!("| `size_of::<TraceContext>()` | {context_bytes} bytes | ≤ 128 bytes |");
    println!("| Redis round trip, no propagation | {off_rate:.0} msg/s | |");
    println!("| Redis round trip, with propagation | {on_rate:.0} msg/s | |");
    println!("| propagation overhead (throughput) | {overhead_percent:.1} % | < 2 % |");
    println!("| process CPU per message, no propagation | {off_cpu:.1} µs | |");
    println!("| process CPU per message, with propagation | {on_cpu:.1} µs | |");
    println!("| propagation overhead (CPU per message) | {cpu_overhead_percent:.1} % | |");
    let rates = |runs: &[Run]| runs.iter().map(|run| run.rate.round()).collect::<Vec<_>>();
    println!(
        "({messages} messages per run, {rounds} round(s), medians; msg/s without: {:?}, with: {:?})",
        rates(&off),
        rates(&on)
    );

    let json = serde_json::json!({
        "frame_id_generate_ns": generate_ns,
        "traceparent_round_trip_ns": round_trip_ns,
        "trace_context_bytes": context_bytes,
        "redis_messages_per_run": messages,
        "rounds": rounds,
        "redis_round_trip_msgs_per_s_without_propagation": off_rate,
        "redis_round_trip_msgs_per_s_with_propagation": on_rate,
        "traceparent_and_tracestate_round_trip_ns": with_state_ns,
        "redis_runs_msgs_per_s_without_propagation": rates(&off),
        "redis_runs_msgs_per_s_with_propagation": rates(&on),
        "propagation_overhead_percent": overhead_percent,
        "cpu_us_per_message_without_propagation": off_cpu,
        "cpu_us_per_message_with_propagation": on_cpu,
        "propagation_cpu_overhead_percent": cpu_overhead_percent,
        "targets": {
            "frame_id_generate_ns": 100,
            "traceparent_round_trip_ns": 300,
            "trace_context_bytes": 128,
            "propagation_overhead_percent": 2,
        },
    });
    if let Some(out) = out {
        std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
    }
    telemetry.shutdown()?;
    Ok(())
}

/// Median nanoseconds per call of `op` over [`RUNS`] runs of `iterations` calls.
fn per_op(iterations: u32, mut op: impl FnMut()) -> f64 {
    let runs = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                op();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    median(runs)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// One Redis run: messages per second, and this process's CPU time per message.
#[derive(Debug, Clone, Copy)]
struct Run {
    rate: f64,
    cpu_us: f64,
}

/// CPU time of every thread of this process so far (`/proc/self/task/*/schedstat`).
fn process_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Messages per second through a fresh stream: 32 sends in flight while one consumer
/// receives and acks every message; the spans of a run are flushed within it.
async fn redis_round_trip(
    url: &str,
    messages: u64,
    propagation: Propagation,
    round: usize,
) -> BenchResult<Run> {
    let stream = format!(
        "bench:tracking:{}:{round}:{propagation:?}",
        std::process::id()
    );
    let queue = RedisQueue::connect(RedisConfig {
        propagation,
        batch: 64,
        max_len: None,
        claim_interval: Duration::from_secs(60),
        ..RedisConfig::new(url, &stream, "bench", "consumer")
    })
    .await?;
    let metadata = FrameMetadata::new(FrameId::generate("cam01", "rgb")?);
    let payload = vec![0u8; 256];
    let start = Instant::now();
    let cpu_start = process_cpu();
    let producer = {
        let (queue, metadata, payload) = (queue.clone(), metadata.clone(), payload.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..messages)
                .map(|_| queue.send(&metadata, &payload))
                .buffer_unordered(32)
                .fold(
                    Ok(()),
                    |result, sent| async move { result.and(sent.map(drop)) },
                )
                .await
        })
    };
    for _ in 0..messages {
        queue.receive().await?.ack().await?;
    }
    let elapsed = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_start);
    producer.await??;
    let mut connection = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("DEL")
        .arg(&stream)
        .query_async::<()>(&mut connection)
        .await?;
    Ok(Run {
        rate: messages as f64 / elapsed.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / messages as f64,
    })
}
