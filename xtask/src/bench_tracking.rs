//! `cargo xtask bench tracking [--messages N] [--rounds R]`: the frame-tracking
//! benchmark. Builds `frame-tracking-bench` and `otlp-sink` in release mode, runs the
//! micro-benchmarks once, then R rounds of Redis Streams round trips in three modes, one
//! process per run, the order of the modes rotating from round to round so a slow spell of
//! this shared machine does not always land on the same mode:
//!
//! - `plain`: telemetry disabled, no trace context in messages (the baseline);
//! - `propagation`: telemetry disabled, W3C context injected and extracted;
//! - `traced`: spans exported at 100 % sampling to a fresh counting `otlp-sink`, with a
//!   batch queue large enough for every span of the run, and the spans the sink received
//!   compared with the spans the run ended.
//!
//! Prints a table of medians with their spread and writes everything, every run included,
//! to `target/bench/tracking.json`. The overheads are medians of the per-round ratios of
//! one mode to `plain` (the runs of a round are close in time), for throughput and for CPU
//! per message. What each mode measures is described in
//! `crates/frame-tracking/src/bin/frame-tracking-bench.rs`. Needs Redis (`REDIS_URL`, or
//! the local default).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::project_root;

const MODES: [&str; 3] = ["plain", "propagation", "traced"];

/// The results of one Redis run, as the bench printed them.
#[derive(Debug, Clone)]
struct Run {
    mode: &'static str,
    rate: f64,
    cpu_us: f64,
    spans_ended: u64,
    spans_received: u64,
    json: Value,
}

/// A counting `otlp-sink` for one traced run.
struct Sink {
    child: Child,
    stdout: BufReader<ChildStdout>,
    endpoint: String,
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut messages = 20_000u64;
    let mut rounds = 7usize;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--messages" => messages = value()?.parse().context("--messages")?,
            "--rounds" => rounds = value()?.parse().context("--rounds")?,
            other => {
                bail!("unknown argument {other}; usage: bench tracking [--messages N] [--rounds R]")
            }
        }
    }
    ensure!(
        messages > 0 && rounds > 0,
        "--messages and --rounds must be positive"
    );

    let root = project_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out_dir = target.join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let redis_url = testkit::redis_url();
    if let Err(message) = testkit::check_reachable("Redis", "REDIS_URL", &redis_url) {
        bail!("{message}");
    }

    crate::process::cargo_build(
        true,
        &[
            "-p",
            "frame-tracking",
            "--bin",
            "frame-tracking-bench",
            "-p",
            "otlp-sink",
            "--bin",
            "otlp-sink",
        ],
    )?;
    let release = target.join("release");
    let bench = release.join("frame-tracking-bench");

    let micro = bench_json(Command::new(&bench).arg("micro"))?;
    let mut runs = Vec::new();
    for round in 0..rounds {
        for index in 0..MODES.len() {
            let mode = MODES[(index + round) % MODES.len()];
            let run = redis_run(&bench, &release, &redis_url, mode, messages, round)?;
            eprintln!(
                "round {round} {mode:<11} {:>7.0} msg/s {:>6.1} µs CPU/msg",
                run.rate, run.cpu_us
            );
            runs.push(run);
        }
    }

    let of = |mode: &str| -> Vec<&Run> { runs.iter().filter(|run| run.mode == mode).collect() };
    let (plain, propagation, traced) = (of("plain"), of("propagation"), of("traced"));
    let rates = |runs: &[&Run]| runs.iter().map(|run| run.rate).collect::<Vec<_>>();
    let cpus = |runs: &[&Run]| runs.iter().map(|run| run.cpu_us).collect::<Vec<_>>();
    // Per round: how much slower (throughput) or costlier (CPU) a mode is than `plain`.
    let rate_overhead = |runs: &[&Run]| {
        overheads(&rates(&plain), &rates(runs), |base, other| {
            (base - other) / base * 100.0
        })
    };
    let cpu_overhead = |runs: &[&Run]| {
        overheads(&cpus(&plain), &cpus(runs), |base, other| {
            (other - base) / base * 100.0
        })
    };
    let spans_ended: u64 = traced.iter().map(|run| run.spans_ended).sum();
    let spans_received: u64 = traced.iter().map(|run| run.spans_received).sum();
    let dropped = spans_ended.saturating_sub(spans_received);

    let ns = |key: &str| micro.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    println!();
    println!("| measurement | result (median) | spread (min–max) | target |");
    println!("|---|---|---|---|");
    println!(
        "| `FrameId::generate` | {:.0} ns | | ≤ 100 ns |",
        ns("frame_id_generate_ns")
    );
    println!(
        "| traceparent inject + extract (Redis Stream fields) | {:.0} ns | | ≤ 300 ns |",
        ns("traceparent_round_trip_ns")
    );
    println!(
        "| same with a two-member tracestate | {:.0} ns | | |",
        ns("traceparent_and_tracestate_round_trip_ns")
    );
    println!(
        "| `size_of::<TraceContext>()` | {:.0} bytes | | ≤ 128 bytes |",
        ns("trace_context_bytes")
    );
    for (label, runs) in [
        ("plain", &plain),
        ("propagation", &propagation),
        ("traced", &traced),
    ] {
        println!(
            "| Redis round trip, {label} | {} msg/s | {} | |",
            fmt_median(&rates(runs), 0),
            fmt_spread(&rates(runs), 0)
        );
    }
    for (label, runs) in [
        ("plain", &plain),
        ("propagation", &propagation),
        ("traced", &traced),
    ] {
        println!(
            "| process CPU per message, {label} | {} µs | {} | |",
            fmt_median(&cpus(runs), 1),
            fmt_spread(&cpus(runs), 1)
        );
    }
    println!(
        "| **propagation overhead, CPU per message** | {} % | {} | < 2 % |",
        fmt_median(&cpu_overhead(&propagation), 1),
        fmt_spread(&cpu_overhead(&propagation), 1)
    );
    println!(
        "| propagation overhead, throughput | {} % | {} | < 2 % |",
        fmt_median(&rate_overhead(&propagation), 1),
        fmt_spread(&rate_overhead(&propagation), 1)
    );
    println!(
        "| tracing overhead, CPU per message (information) | {} % | {} | |",
        fmt_median(&cpu_overhead(&traced), 1),
        fmt_spread(&cpu_overhead(&traced), 1)
    );
    println!(
        "| tracing overhead, throughput (information) | {} % | {} | |",
        fmt_median(&rate_overhead(&traced), 1),
        fmt_spread(&rate_overhead(&traced), 1)
    );
    println!(
        "| spans ended / received by the sink / dropped (traced runs) | {spans_ended} / {spans_received} / {dropped} | | |"
    );
    println!(
        "({messages} messages per run, {rounds} rounds, modes interleaved; overheads are \
         medians of per-round ratios to plain)"
    );

    let out = out_dir.join("tracking.json");
    let json = serde_json::json!({
        "micro": micro,
        "messages_per_run": messages,
        "rounds": rounds,
        "median_msgs_per_s": {
            "plain": median(&rates(&plain)),
            "propagation": median(&rates(&propagation)),
            "traced": median(&rates(&traced)),
        },
        "median_cpu_us_per_message": {
            "plain": median(&cpus(&plain)),
            "propagation": median(&cpus(&propagation)),
            "traced": median(&cpus(&traced)),
        },
        "propagation_overhead_percent": {
            "cpu_per_message": median(&cpu_overhead(&propagation)),
            "throughput": median(&rate_overhead(&propagation)),
            "per_round_cpu": cpu_overhead(&propagation),
            "per_round_throughput": rate_overhead(&propagation),
        },
        "tracing_overhead_percent": {
            "cpu_per_message": median(&cpu_overhead(&traced)),
            "throughput": median(&rate_overhead(&traced)),
            "per_round_cpu": cpu_overhead(&traced),
            "per_round_throughput": rate_overhead(&traced),
        },
        "spans": {
            "ended": spans_ended,
            "received": spans_received,
            "dropped": dropped,
        },
        "runs": runs.iter().map(|run| run.json.clone()).collect::<Vec<_>>(),
        "targets": {
            "frame_id_generate_ns": 100,
            "traceparent_round_trip_ns": 300,
            "trace_context_bytes": 128,
            "propagation_overhead_percent": 2,
        },
    });
    fs::write(&out, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("results: {}", out.display());
    Ok(())
}

/// One Redis run of `mode` in its own process; a traced run gets its own sink, whose
/// count of received spans is recorded next to the run.
fn redis_run(
    bench: &Path,
    release: &Path,
    redis_url: &str,
    mode: &'static str,
    messages: u64,
    round: usize,
) -> anyhow::Result<Run> {
    let mut command = Command::new(bench);
    command
        .args(["redis", "--mode", mode, "--messages"])
        .arg(messages.to_string())
        .arg("--round")
        .arg(round.to_string())
        .env("REDIS_URL", redis_url)
        .env("OTEL_SERVICE_NAME", "frame-tracking-bench")
        .env("OTEL_TRACES_SAMPLER", "always_on")
        .env("OTEL_LOGS_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "none")
        // Room for every span of the run, so the exporter never drops one for want of
        // space; the sink's count checks that.
        .env(
            "OTEL_BSP_MAX_QUEUE_SIZE",
            (messages * 2 + 2_048).to_string(),
        )
        // The queue spans are INFO spans: the same filter in every mode, so `plain` and
        // `propagation` create the same (unrecorded) spans that `traced` exports.
        .env("RUST_LOG", "info");
    let sink = if mode == "traced" {
        let sink = Sink::start(release)?;
        command
            .env("OTEL_TRACES_EXPORTER", "otlp")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
        Some(sink)
    } else {
        command.env("OTEL_TRACES_EXPORTER", "none");
        None
    };
    let json = bench_json(&mut command);
    let spans_received = match sink {
        Some(sink) => sink.stop()?,
        None => 0,
    };
    let json = json?;
    let number = |key: &str| {
        json.get(key)
            .and_then(Value::as_f64)
            .with_context(|| format!("the bench printed no {key}: {json}"))
    };
    Ok(Run {
        mode,
        rate: number("msgs_per_s")?,
        cpu_us: number("cpu_us_per_message")?,
        spans_ended: number("spans_ended")? as u64,
        spans_received,
        json,
    })
}

/// Runs the bench and parses the JSON line it prints.
fn bench_json(command: &mut Command) -> anyhow::Result<Value> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run frame-tracking-bench")?;
    ensure!(
        output.status.success(),
        "frame-tracking-bench failed ({})",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .with_context(|| format!("frame-tracking-bench printed no JSON: {stdout:?}"))?;
    serde_json::from_str(line).with_context(|| format!("invalid JSON from the bench: {line}"))
}

impl Sink {
    fn start(release: &Path) -> anyhow::Result<Sink> {
        let mut child = Command::new(release.join("otlp-sink"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start otlp-sink")?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("otlp-sink has no stdout");
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let endpoint = line
            .split("\"grpc\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned);
        match (read, endpoint) {
            (Ok(_), Some(endpoint)) => Ok(Sink {
                child,
                stdout,
                endpoint,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("otlp-sink printed no gRPC endpoint: {line:?}")
            }
        }
    }

    /// Stops the sink (SIGTERM) and returns how many spans it received.
    fn stop(mut self) -> anyhow::Result<u64> {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let mut line = String::new();
        let mut spans = None;
        loop {
            line.clear();
            if self.stdout.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Ok(counts) = serde_json::from_str::<Value>(&line)
                && let Some(count) = counts.get("spans").and_then(Value::as_u64)
            {
                spans = Some(count);
                break;
            }
        }
        let _ = self.child.wait();
        ensure!(
            stopped.is_ok_and(|status| status.success()),
            "cannot stop otlp-sink"
        );
        spans.context("otlp-sink printed no span count")
    }
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `change(base, other)` for each round, pairing the runs of the same round.
fn overheads(base: &[f64], other: &[f64], change: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    base.iter()
        .zip(other)
        .map(|(&base, &other)| change(base, other))
        .collect()
}

fn fmt_median(values: &[f64], decimals: usize) -> String {
    format!("{:.*}", decimals, median(values))
}

fn fmt_spread(values: &[f64], decimals: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.decimals$} – {max:.decimals$}")
}
