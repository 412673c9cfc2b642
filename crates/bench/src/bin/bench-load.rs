//! `bench-load --url URL [--connections N] [--rate R] (--requests M | --duration SECS)`: a
//! keep-alive HTTP/1.1 load generator for the middleware benchmark.
//!
//! Opens N connections from one thread (a `current_thread` runtime, so the generator uses
//! at most one core), each sending GET requests to `URL` with the request number appended
//! (`/items/` + `17`): back to back, or with `--rate` paced so that all connections
//! together send R requests per second (each connection on its own schedule, staggered). Every response is checked (status 200, body read to
//! the end); anything else counts as an error, and a failed connection is re-opened.
//! Prints one JSON line:
//! `{"requests":..,"errors":..,"seconds":..,"rps":..,"p50_us":..,"p99_us":..}` where
//! `rps` counts successful responses only.

// Stdout is this binary's interface: the result line is what the benchmark harness parses.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

const USAGE: &str =
    "usage: bench-load --url URL [--connections N] [--rate R] (--requests M | --duration SECS)";

/// The parsed command line.
#[derive(Debug)]
struct Args {
    url: Uri,
    connections: usize,
    /// Requests per second over all connections; `None` sends back to back.
    rate: Option<f64>,
    limit: Limit,
}

/// When to stop sending.
#[derive(Debug, Clone, Copy)]
enum Limit {
    Requests(u64),
    Duration(Duration),
}

/// The counters every connection updates.
#[derive(Debug, Default)]
struct Counters {
    next: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
}

/// What one connection's request loop needs.
#[derive(Debug, Clone)]
struct Target {
    address: String,
    host: String,
    path_prefix: String,
    limit: Limit,
    deadline: Instant,
    /// Time between two requests of one connection, when paced.
    period: Option<Duration>,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let authority = args
        .url
        .authority()
        .context("--url needs a host and port")?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let target = Target {
        address: format!("{}:{port}", authority.host()),
        host: authority.to_string(),
        path_prefix: args.url.path().to_owned(),
        limit: args.limit,
        deadline: match args.limit {
            Limit::Duration(duration) => Instant::now() + duration,
            Limit::Requests(_) => Instant::now() + Duration::from_secs(24 * 3600),
        },
        period: args
            .rate
            .map(|rate| Duration::from_secs_f64(args.connections as f64 / rate)),
    };
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let mut workers = Vec::with_capacity(args.connections);
    for index in 0..args.connections {
        let pacer = target.period.map(|period| {
            // Staggered, so the connections' sends spread over each period.
            let offset = period.mul_f64(index as f64 / args.connections as f64);
            let mut pacer = tokio::time::interval_at((start + offset).into(), period);
            // Catch up after a slow response: the rate is what the server is offered.
            pacer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            pacer
        });
        workers.push(tokio::spawn(connection(
            target.clone(),
            counters.clone(),
            pacer,
        )));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.context("a connection task panicked")?);
    }
    let seconds = start.elapsed().as_secs_f64();
    let ok = counters.ok.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    latencies.sort_unstable();
    println!(
        "{{\"requests\":{},\"errors\":{errors},\"seconds\":{seconds:.6},\"rps\":{:.1},\"p50_us\":{},\"p99_us\":{}}}",
        ok + errors,
        ok as f64 / seconds,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
    Ok(())
}

/// One keep-alive connection sending requests back to back; returns the latencies (µs) of
/// its successful requests.
async fn connection(
    target: Target,
    counters: Arc<Counters>,
    mut pacer: Option<tokio::time::Interval>,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    loop {
        if let Some(pacer) = pacer.as_mut() {
            pacer.tick().await;
        }
        let number = counters.next.fetch_add(1, Ordering::Relaxed);
        let more = match target.limit {
            Limit::Requests(total) => number < total,
            Limit::Duration(_) => Instant::now() < target.deadline,
        };
        if !more {
            return latencies;
        }
        if sender.is_none() {
            match connect(&target.address).await {
                Ok(connected) => sender = Some(connected),
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    // Do not spin on a server that refuses connections.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(connected) = sender.as_mut() else {
            continue;
        };
        let start = Instant::now();
        match request(connected, &target, number).await {
            Ok((StatusCode::OK, body_len)) if body_len > 0 => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
                let micros = start.elapsed().as_micros();
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
            Ok(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                sender = None;
            }
        }
    }
}

async fn connect(address: &str) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The request loop sees the error as a failed request and reconnects.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request, reads the whole body, and returns the status and the body's length.
async fn request(
    sender: &mut SendRequest<Empty<Bytes>>,
    target: &Target,
    number: u64,
) -> anyhow::Result<(StatusCode, usize)> {
    sender.ready().await?;
    let request = Request::get(format!("{}{}", target.path_prefix, number % 10_000))
        .header(header::HOST, &target.host)
        .header(header::USER_AGENT, "bench-load/0.1")
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body.len()))
}

fn percentile(sorted: &[u32], quantile: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * quantile).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut url = None;
    let mut connections = 32;
    let mut rate = None;
    let mut limit = None;
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || -> anyhow::Result<u64> {
            value
                .parse()
                .with_context(|| format!("{flag} {value:?} is not a number"))
        };
        match flag.as_str() {
            "--url" => {
                url = Some(
                    value
                        .parse::<Uri>()
                        .with_context(|| format!("--url {value:?} is not a URL"))?,
                );
            }
            "--connections" => {
                connections = usize::try_from(number()?)?.max(1);
            }
            "--rate" => {
                let requests_per_second = number()?;
                if requests_per_second == 0 {
                    bail!("--rate must be at least 1");
                }
                rate = Some(requests_per_second as f64);
            }
            "--requests" => limit = Some(Limit::Requests(number()?)),
            "--duration" => limit = Some(Limit::Duration(Duration::from_secs(number()?))),
            _ => bail!("unknown argument {flag:?}\n{USAGE}"),
        }
    }
    Ok(Args {
        url: url.with_context(|| format!("--url is required\n{USAGE}"))?,
        connections,
        rate,
        limit: limit.with_context(|| format!("--requests or --duration is required\n{USAGE}"))?,
    })
}
