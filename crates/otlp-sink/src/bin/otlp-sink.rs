//! `otlp-sink --grpc-port P --http-port Q`: a counting OTLP receiver for benchmarks.
//!
//! Prints `{"grpc":"http://…","http":"http://…"}` on one line once both listeners are
//! bound (port 0 means any free port), runs until SIGTERM or SIGINT, then prints
//! `{"spans":N,"logs":N,"metrics":N,"requests":N}` and exits. Requests are fully
//! decoded but only counted, so memory stays flat however long the benchmark runs.

// Stdout is this binary's interface: the two JSON lines above are what the benchmark
// harness parses.
#![allow(clippy::print_stdout)]

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use otlp_sink::{OtlpSink, Retention, SinkConfig};

const USAGE: &str = "usage: otlp-sink [--grpc-port PORT] [--http-port PORT]";

/// The parsed command line.
#[derive(Debug)]
struct Args {
    grpc_port: u16,
    http_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    let sink = OtlpSink::start_on(SinkConfig {
        grpc_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, args.grpc_port)),
        http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, args.http_port)),
        retention: Retention::CountOnly,
    })
    .await
    .context("cannot start the sink")?;
    println!(
        "{}",
        serde_json::json!({ "grpc": sink.grpc_endpoint(), "http": sink.http_endpoint() })
    );

    stop_signal().await.context("cannot listen for signals")?;

    let counts = sink.counts();
    // Report the counts even if a server does not stop cleanly: they are the result.
    let shutdown = sink.shutdown().await;
    println!(
        "{}",
        serde_json::json!({
            "spans": counts.spans,
            "logs": counts.logs,
            "metrics": counts.metrics,
            "requests": counts.requests,
        })
    );
    shutdown.context("cannot stop the sink")
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut parsed = Args {
        grpc_port: 0,
        http_port: 0,
    };
    while let Some(flag) = args.next() {
        let port = match flag.as_str() {
            "--grpc-port" => &mut parsed.grpc_port,
            "--http-port" => &mut parsed.http_port,
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {flag:?}\n{USAGE}"),
        };
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        *port = value
            .parse()
            .with_context(|| format!("{flag} {value:?} is not a port number"))?;
    }
    Ok(parsed)
}

#[cfg(unix)]
async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn stop_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
