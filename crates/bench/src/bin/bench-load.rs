//! `bench-load --url URL [--connections N] [--rate R] (--requests M | --duration SECS)
//! [--bodies FILE] [--traceparent]`: a keep-alive HTTP/1.1 load generator for the
//! benchmarks (`cargo xtask bench middleware`, `cargo xtask bench pipeline`).
//!
//! Opens N connections from one thread (a `current_thread` runtime, so the generator uses
//! at most one core), each sending requests back to back, or with `--rate` paced so that
//! all connections together send R requests per second (each connection on its own
//! schedule, staggered). Without `--bodies`, requests are GETs of `URL` with the request
//! number appended (`/items/` + `17`). With `--bodies FILE` (one body per line, e.g. JSON
//! Lines, loaded into memory first), they are `application/json` POSTs to `URL` as is,
//! request number `n` sending line `n` modulo the number of lines, so `--requests` equal
//! to the number of lines sends every body once. `--traceparent` gives every request a
//! fresh sampled W3C `traceparent` (random trace and parent ids), as an instrumented
//! client would send. Every response is checked (status 200, body read to the end);
//! anything else counts as an error, and a failed connection is re-opened.
//! Prints one JSON line:
//! `{"requests":..,"errors":..,"seconds":..,"rps":..,"p50_us":..,"p99_us":..,"work_ns":..}`
//! where `rps` counts successful responses only and `work_ns` sums the `"work_ns"` numbers
//! of the response bodies (the CPU time `bench-server` spent in its handler's work loop;
//! 0 when bodies carry none).

// Stdout is this binary's interface: the result line is what the benchmark harness parses.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

const USAGE: &str = "usage: bench-load --url URL [--connections N] [--rate R] \
     (--requests M | --duration SECS) [--bodies FILE] [--traceparent]";

/// The parsed command line.
#[derive(Debug)]
struct Args {
    url: Uri,
    connections: usize,
    /// Requests per second over all connections; `None` sends back to back.
    rate: Option<f64>,
    limit: Limit,
    /// Request bodies, one per line: POST them instead of GETs.
    bodies: Option<PathBuf>,
    /// Whether every request carries a fresh sampled `traceparent`.
    traceparent: bool,
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
    /// Sum of the successful responses' `"work_ns"` body fields.
    work_ns: AtomicU64,
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
    /// The bodies to POST round-robin; empty for GETs.
    bodies: Arc<[Bytes]>,
    /// Seed of the `traceparent` ids, when sent.
    traceparent_seed: Option<u64>,
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
    let bodies: Arc<[Bytes]> = match &args.bodies {
        Some(path) => read_bodies(path)?.into(),
        None => Arc::new([]),
    };
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
        bodies,
        traceparent_seed: args.traceparent.then(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos() as u64)
                ^ u64::from(std::process::id()).rotate_left(32)
        }),
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
    let work_ns = counters.work_ns.load(Ordering::Relaxed);
    latencies.sort_unstable();
    println!(
        "{{\"requests\":{},\"errors\":{errors},\"seconds\":{seconds:.6},\"rps\":{:.1},\"p50_us\":{},\"p99_us\":{},\"work_ns\":{work_ns}}}",
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
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
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
            Ok((StatusCode::OK, body)) if !body.is_empty() => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
                counters
                    .work_ns
                    .fetch_add(work_ns(&body), Ordering::Relaxed);
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

async fn connect(address: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The request loop sees the error as a failed request and reconnects.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request, reads the whole body, and returns the status and the body.
async fn request(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    number: u64,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let builder = if target.bodies.is_empty() {
        Request::get(format!("{}{}", target.path_prefix, number % 10_000))
    } else {
        Request::builder()
            .method(Method::POST)
            .uri(target.path_prefix.as_str())
            .header(header::CONTENT_TYPE, "application/json")
    };
    let mut builder = builder
        .header(header::HOST, &target.host)
        .header(header::USER_AGENT, "bench-load/0.1")
        .header(header::ACCEPT, "application/json");
    if let Some(seed) = target.traceparent_seed {
        builder = builder.header("traceparent", traceparent(seed, number));
    }
    let body = match target.bodies.len() {
        0 => Bytes::new(),
        count => target.bodies[(number % count as u64) as usize].clone(),
    };
    let request = builder.body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// The number after the first `"work_ns":` in `body`, or 0 when there is none.
fn work_ns(body: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"work_ns\":";
    let Some(at) = body.windows(KEY.len()).position(|window| window == KEY) else {
        return 0;
    };
    body[at + KEY.len()..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .fold(0u64, |sum, byte| {
            sum.saturating_mul(10)
                .saturating_add(u64::from(byte - b'0'))
        })
}

/// The lines of `path` that are not empty, as bodies sharing one buffer.
fn read_bodies(path: &std::path::Path) -> anyhow::Result<Vec<Bytes>> {
    let all = Bytes::from(
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let mut bodies = Vec::new();
    let mut start = 0;
    for end in all
        .iter()
        .enumerate()
        .filter_map(|(index, &byte)| (byte == b'\n').then_some(index))
        .chain(std::iter::once(all.len()))
    {
        if end > start {
            bodies.push(all.slice(start..end));
        }
        start = end + 1;
    }
    ensure!(!bodies.is_empty(), "{} holds no bodies", path.display());
    Ok(bodies)
}

/// A sampled W3C `traceparent` with ids derived from `seed` and the request number
/// (SplitMix64), distinct for every request of a run.
fn traceparent(seed: u64, number: u64) -> String {
    let mut state = seed ^ number.wrapping_mul(0xD134_2543_DE82_EF95);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // All-zero ids are invalid; one in 2^64, but cheap to rule out.
        (z ^ (z >> 31)).max(1)
    };
    format!("00-{:016x}{:016x}-{:016x}-01", next(), next(), next())
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
    let mut bodies = None;
    let mut traceparent = false;
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--traceparent" {
            traceparent = true;
            continue;
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
            "--bodies" => bodies = Some(PathBuf::from(value)),
            _ => bail!("unknown argument {flag:?}\n{USAGE}"),
        }
    }
    Ok(Args {
        url: url.with_context(|| format!("--url is required\n{USAGE}"))?,
        connections,
        rate,
        limit: limit.with_context(|| format!("--requests or --duration is required\n{USAGE}"))?,
        bodies,
        traceparent,
    })
}

#[cfg(test)]
mod tests {
    use super::work_ns;

    #[test]
    fn work_ns_reads_the_bodys_field_and_is_zero_without_one() {
        assert_eq!(
            work_ns(br#"{"id":7,"name":"item-7","work":123,"work_ns":1048576}"#),
            1_048_576
        );
        assert_eq!(work_ns(br#"{"id":7,"work_ns":0}"#), 0);
        assert_eq!(work_ns(br#"{"id":7,"name":"item-7"}"#), 0);
        assert_eq!(work_ns(b"not json"), 0);
    }
}
