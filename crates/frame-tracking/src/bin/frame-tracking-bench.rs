//! `frame-tracking-bench`: the measurements behind `cargo xtask bench tracking`, one per
//! process (build it in release mode). Each invocation prints one JSON line on stdout;
//! the xtask runs the modes interleaved over several rounds and reports medians.
//!
//! - `frame-tracking-bench micro`: `FrameId::generate`, a `traceparent` (+ `tracestate`)
//!   inject and extract round trip through Redis Stream fields, in nanoseconds per
//!   operation (median of 7 runs), and the size of a `TraceContext`.
//! - `frame-tracking-bench redis --mode M [--messages N] [--round R]`: one Redis Streams
//!   round trip run (send, receive, ack; 32 sends in flight, one consumer) through
//!   `RedisQueue`, in one of three modes that differ only in what they name:
//!
//!   | mode | telemetry | `Propagation` | what differs from `plain` |
//!   |---|---|---|---|
//!   | `plain` | disabled (`OTEL_SDK_DISABLED`) | `Off` | nothing: the baseline |
//!   | `propagation` | disabled | `W3c` | `_traceparent` on the wire, inject + extract |
//!   | `traced` | from `OTEL_*` (OTLP) | `W3c` | also two spans per message, exported |
//!
//!   The queue creates the same producer and consumer `tracing` spans in every mode; with
//!   telemetry disabled nothing records them. Every frame's metadata carries the same
//!   trace context, which is what an untraced producer passes on (`propagation`), so the
//!   message is the same size in every mode except for the propagation fields.
//!
//!   Reports messages per second over the round trip and this process's CPU time per
//!   message (all threads, from `/proc/self/task/*/schedstat`; with `traced`, plus the
//!   final flush of the remaining spans, from `/proc/self/stat` because the exporter's
//!   threads are gone by then), and how many deliveries carried a valid context, which
//!   checks that the mode did what it says.
//!
//! Needs Redis (`REDIS_URL`, or the local default).

// Stdout is this binary's report.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use frame_tracking::carrier::{StreamFieldsExtractor, StreamFieldsInjector, extract, inject};
use frame_tracking::queue::{Propagation, RedisConfig, RedisQueue};
use frame_tracking::{FrameId, FrameMetadata, TraceContext};
use futures::StreamExt;
use telemetry::{Globals, Telemetry, TelemetryConfig};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "usage: frame-tracking-bench micro | frame-tracking-bench redis \
                     --mode plain|propagation|traced [--messages N] [--round R]";
/// Runs per micro-benchmark; the median is reported.
const RUNS: usize = 7;
/// Sends in flight at once.
const IN_FLIGHT: usize = 32;
/// Spans the queue creates per message: the producer's and the consumer's.
const SPANS_PER_MESSAGE: u64 = 2;
/// `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat` on Linux.
const CLOCK_TICKS_PER_SECOND: u64 = 100;
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What a Redis run measures; see the table at the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Propagation,
    Traced,
}

/// One Redis run's results.
#[derive(Debug, Clone, Copy)]
struct Run {
    rate: f64,
    cpu_us: f64,
    valid_contexts: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> BenchResult<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("micro") => micro(),
        Some("redis") => {
            let mut mode = None;
            let mut messages = 20_000u64;
            let mut round = 0usize;
            while let Some(arg) = args.next() {
                let mut value = || args.next().ok_or(format!("{arg} needs a value"));
                match arg.as_str() {
                    "--mode" => mode = Some(Mode::parse(&value()?)?),
                    "--messages" => messages = value()?.parse()?,
                    "--round" => round = value()?.parse()?,
                    other => return Err(format!("unknown argument {other}; {USAGE}").into()),
                }
            }
            let mode = mode.ok_or(format!("--mode is required; {USAGE}"))?;
            if messages == 0 {
                return Err("--messages must be positive".into());
            }
            redis(mode, messages, round).await
        }
        _ => Err(USAGE.into()),
    }
}

impl Mode {
    fn parse(name: &str) -> BenchResult<Mode> {
        match name {
            "plain" => Ok(Mode::Plain),
            "propagation" => Ok(Mode::Propagation),
            "traced" => Ok(Mode::Traced),
            other => Err(format!("unknown mode {other}; {USAGE}").into()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Propagation => "propagation",
            Mode::Traced => "traced",
        }
    }

    fn propagation(self) -> Propagation {
        match self {
            Mode::Plain => Propagation::Off,
            Mode::Propagation | Mode::Traced => Propagation::W3c,
        }
    }
}

/// The micro-benchmarks, as one JSON line.
fn micro() -> BenchResult<()> {
    let generate_ns = per_op(1_000_000, || {
        black_box(FrameId::generate(black_box("cam01"), black_box("rgb")).ok());
    });
    let round_trip = |context: TraceContext| {
        per_op(1_000_000, || {
            let mut fields = Vec::with_capacity(2);
            inject(black_box(&context), &mut StreamFieldsInjector(&mut fields));
            black_box(extract(&StreamFieldsExtractor(&fields)));
        })
    };
    let round_trip_ns = round_trip(TraceContext::from_traceparent(TRACEPARENT)?);
    let with_state_ns = round_trip(TraceContext::from_headers(
        TRACEPARENT,
        &["congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"],
    )?);
    let json = serde_json::json!({
        "frame_id_generate_ns": generate_ns,
        "traceparent_round_trip_ns": round_trip_ns,
        "traceparent_and_tracestate_round_trip_ns": with_state_ns,
        "trace_context_bytes": std::mem::size_of::<TraceContext>(),
    });
    println!("{json}");
    Ok(())
}

/// One Redis run in `mode`, as one JSON line.
async fn redis(mode: Mode, messages: u64, round: usize) -> BenchResult<()> {
    let mut config = TelemetryConfig::from_env()?;
    config.sdk_disabled = mode != Mode::Traced;
    let telemetry = Telemetry::start(
        telemetry::ServiceInfo {
            name: "frame-tracking-bench",
            version: env!("CARGO_PKG_VERSION"),
            catalogs: &[],
        },
        config,
        Globals::Install,
    )?;
    if mode == Mode::Traced && telemetry.tracer().is_none() {
        return Err("mode traced needs a traces exporter (OTEL_TRACES_EXPORTER=otlp)".into());
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let run = redis_round_trip(&url, messages, mode, round).await?;

    // What is still queued for export is part of what tracing costs: flush it inside the
    // measurement. The exporter's threads end with the flush, so their time is read from
    // the process totals, which keep the time of ended threads.
    let flush_start = process_cpu_total()?;
    telemetry.shutdown()?;
    let flush = process_cpu_total()?.saturating_sub(flush_start);
    let cpu_us = run.cpu_us + flush.as_secs_f64() * 1e6 / messages as f64;

    let expected_contexts = match mode {
        Mode::Plain => 0,
        Mode::Propagation | Mode::Traced => messages,
    };
    if run.valid_contexts != expected_contexts {
        return Err(format!(
            "mode {} delivered {} of {messages} messages with a valid context, expected {expected_contexts}",
            mode.name(),
            run.valid_contexts
        )
        .into());
    }
    let spans = match mode {
        Mode::Traced => messages * SPANS_PER_MESSAGE,
        Mode::Plain | Mode::Propagation => 0,
    };
    let json = serde_json::json!({
        "mode": mode.name(),
        "round": round,
        "messages": messages,
        "msgs_per_s": run.rate,
        "cpu_us_per_message": cpu_us,
        "flush_cpu_us_per_message": flush.as_secs_f64() * 1e6 / messages as f64,
        "valid_contexts": run.valid_contexts,
        "spans_ended": spans,
    });
    println!("{json}");
    Ok(())
}

/// Median nanoseconds per call of `op` over [`RUNS`] runs of `iterations` calls.
fn per_op(iterations: u32, mut op: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                op();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or_default()
}

/// CPU time of every live thread of this process so far (`/proc/self/task/*/schedstat`,
/// in nanoseconds).
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

/// User + system CPU time of this process, ended threads included (`/proc/self/stat`, in
/// clock ticks).
fn process_cpu_total() -> BenchResult<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may contain spaces;
    // utime and stime are fields 14 and 15 of the whole line.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("/proc/self/stat has no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> BenchResult<u64> {
        Ok(fields
            .get(index)
            .ok_or("/proc/self/stat is too short")?
            .parse::<u64>()?)
    };
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_millis(total * 1000 / CLOCK_TICKS_PER_SECOND))
}

/// Messages through a fresh stream: [`IN_FLIGHT`] sends in flight while one consumer
/// receives and acks every message.
async fn redis_round_trip(url: &str, messages: u64, mode: Mode, round: usize) -> BenchResult<Run> {
    let stream = format!(
        "bench:tracking:{}:{round}:{}",
        std::process::id(),
        mode.name()
    );
    let queue = RedisQueue::connect(RedisConfig {
        propagation: mode.propagation(),
        batch: 64,
        max_len: None,
        claim_interval: Duration::from_secs(60),
        ..RedisConfig::new(url, &stream, "bench", "consumer")
    })
    .await?;
    let mut metadata = FrameMetadata::new(FrameId::generate("cam01", "rgb")?);
    metadata.trace_context = Some(TraceContext::from_traceparent(TRACEPARENT)?);
    let payload = vec![0u8; 256];
    let start = Instant::now();
    let cpu_start = process_cpu();
    let producer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..messages)
                .map(|_| queue.send(&metadata, &payload))
                .buffer_unordered(IN_FLIGHT)
                .fold(
                    Ok(()),
                    |result, sent| async move { result.and(sent.map(drop)) },
                )
                .await
        })
    };
    let mut valid_contexts = 0;
    for _ in 0..messages {
        let delivery = queue.receive().await?;
        valid_contexts += u64::from(delivery.context().is_valid());
        delivery.ack().await?;
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
        valid_contexts,
    })
}
