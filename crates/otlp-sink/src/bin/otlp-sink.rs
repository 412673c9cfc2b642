//! `otlp-sink --grpc-port P --http-port Q`: a counting OTLP receiver for benchmarks.
//!
//! Prints `{"grpc":"http://…","http":"http://…"}` on one line once both listeners are
//! bound (port 0 means any free port), runs until SIGTERM or SIGINT, then prints
//! `{"spans":N,"logs":N,"metrics":N,"requests":N}` and exits. Requests are fully
//! decoded but only counted, so memory stays flat however long the benchmark runs.
//!
//! With `--report` it keeps what it receives and, after the counts, prints a human-readable
//! report: spans by service and name, and one trace as a tree (used by `cargo xtask demo`).

// Stdout is this binary's interface: the two JSON lines above are what the benchmark
// harness parses.
#![allow(clippy::print_stdout)]

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use otlp_sink::{OtlpSink, ReceivedSpan, Retention, SinkConfig};

const USAGE: &str = "usage: otlp-sink [--grpc-port PORT] [--http-port PORT] [--report]";

/// The parsed command line.
#[derive(Debug)]
struct Args {
    grpc_port: u16,
    http_port: u16,
    report: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    let sink = OtlpSink::start_on(SinkConfig {
        grpc_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, args.grpc_port)),
        http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, args.http_port)),
        retention: if args.report {
            Retention::All
        } else {
            Retention::CountOnly
        },
    })
    .await
    .context("cannot start the sink")?;
    // Listen for signals before announcing the endpoints: whoever reads them may send
    // SIGTERM at once, and an unhandled SIGTERM would kill the sink without its report.
    let stop = stop_signal().context("cannot listen for signals")?;
    println!(
        "{}",
        serde_json::json!({ "grpc": sink.grpc_endpoint(), "http": sink.http_endpoint() })
    );

    stop.await;

    let counts = sink.counts();
    let sink_spans = sink.spans();
    let sink_logs = sink.logs();
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
    if args.report {
        print!("{}", report(&sink_spans, sink_logs));
    }
    shutdown.context("cannot stop the sink")
}

/// Spans by service and name, then the largest trace as an indented tree.
fn report(spans: &[ReceivedSpan], logs: Vec<otlp_sink::ReceivedLog>) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;

    let mut out = String::new();
    let mut by_name: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for span in spans {
        let key = (
            span.service_name().unwrap_or("?").to_owned(),
            span.name.clone(),
            format!("{:?}", span.kind).to_lowercase(),
        );
        *by_name.entry(key).or_default() += 1;
    }
    let _ = writeln!(out, "spans by service and name:");
    for ((service, name, kind), count) in &by_name {
        let _ = writeln!(out, "  {service:<12} {name:<22} {kind:<9} {count:>6}");
    }
    let mut traces: BTreeMap<&str, Vec<&ReceivedSpan>> = BTreeMap::new();
    for span in spans {
        traces.entry(span.trace_id.as_str()).or_default().push(span);
    }
    let services_in = |trace: &[&ReceivedSpan]| {
        trace
            .iter()
            .filter_map(|s| s.service_name())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    if let Some((trace_id, trace)) = traces.iter().max_by_key(|(_, t)| (services_in(t), t.len())) {
        let _ = writeln!(out, "one trace end to end ({trace_id}):");
        let ids: std::collections::BTreeSet<&str> =
            trace.iter().map(|s| s.span_id.as_str()).collect();
        let mut roots: Vec<&&ReceivedSpan> = trace
            .iter()
            .filter(|s| s.parent_span_id.as_deref().is_none_or(|p| !ids.contains(p)))
            .collect();
        roots.sort_by_key(|s| s.start_time_unix_nano);
        for root in roots {
            tree(&mut out, trace, root, 1);
        }
    }
    let correlated = logs.iter().filter(|l| l.trace_id.is_some()).count();
    let _ = writeln!(
        out,
        "logs: {} records, {correlated} with a trace id",
        logs.len()
    );
    out
}

fn tree(out: &mut String, trace: &[&ReceivedSpan], span: &ReceivedSpan, depth: usize) {
    use std::fmt::Write as _;

    let label = format!("{}{}", "  ".repeat(depth), span.name);
    let _ = writeln!(
        out,
        "  {label:<32} {:<12} {:<9} {:>9.3} ms",
        span.service_name().unwrap_or("?"),
        format!("{:?}", span.kind).to_lowercase(),
        span.duration_nanos() as f64 / 1e6
    );
    let mut children: Vec<&&ReceivedSpan> = trace
        .iter()
        .filter(|s| s.parent_span_id.as_deref() == Some(span.span_id.as_str()))
        .collect();
    children.sort_by_key(|s| s.start_time_unix_nano);
    for child in children {
        tree(out, trace, child, depth + 1);
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut parsed = Args {
        grpc_port: 0,
        http_port: 0,
        report: false,
    };
    while let Some(flag) = args.next() {
        let port = match flag.as_str() {
            "--report" => {
                parsed.report = true;
                continue;
            }
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

/// Registers the SIGTERM and SIGINT handlers now; the future completes on either.
#[cfg(unix)]
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
