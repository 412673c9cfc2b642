//! `tracker-load`: an OTLP/HTTP load client for the tracker's ingest benchmark
//! (`cargo xtask bench tracker-ingest`).
//!
//! Builds realistic export requests up front (each frame 10 spans named like the vision
//! pipeline's stages, ~8 attributes each, `--spans` spans per request as a batch span
//! processor sends them, unique trace and span ids so nothing is a duplicate), encodes
//! them with prost (and gzips them with `--gzip`), then posts them over `--connections`
//! concurrent keep-alive connections and checks every answer is 200 without rejected
//! spans. Encoding happens before the clock starts, so the measurement is the tracker's
//! ingest (decode, convert, group commit, durable append) plus HTTP. Bodies are shared,
//! not copied, per request, and the client reports its own CPU time during the
//! measurement, since on a small machine it competes with the tracker for the CPUs.
//!
//! Prints one JSON line: `{"events": N, "requests": R, "seconds": S, "events_per_second":
//! E, "p50_ms": .., "p99_ms": .., "request_bytes": B, "client_cpu_seconds": C}`.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use axum::body::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use frame_tracking::FrameId;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;

const USAGE: &str = "\
usage: tracker-load --url http://127.0.0.1:8081 [--events N] [--spans S] [--connections C] [--gzip] [--warmup N]

  --events N       spans (events) to send in the measurement (default 200000)
  --spans S        spans per export request (default 512)
  --connections C  concurrent connections (default 8)
  --gzip           gzip request bodies
  --warmup N       spans sent before the measurement (default 20000)";

const STAGES: [(&str, &str); 10] = [
    ("frame-capture", "capture"),
    ("frame-capture", "encode"),
    ("frame-capture", "publish"),
    ("frame-processor", "consume"),
    ("frame-processor", "process_frame"),
    ("frame-processor", "decode"),
    ("frame-processor", "detect_faces"),
    ("frame-processor", "detect_objects"),
    ("frame-processor", "detect_gestures"),
    ("frame-processor", "store_result"),
];

#[derive(Debug)]
struct Options {
    url: String,
    events: usize,
    spans: usize,
    connections: usize,
    gzip: bool,
    warmup: usize,
}

fn main() -> anyhow::Result<()> {
    let options = parse(std::env::args().skip(1).collect())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

fn parse(args: Vec<String>) -> anyhow::Result<Options> {
    let mut options = Options {
        url: String::new(),
        events: 200_000,
        spans: 512,
        connections: 8,
        gzip: false,
        warmup: 20_000,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => options.url = value()?,
            "--events" => options.events = value()?.parse()?,
            "--spans" => options.spans = value()?.parse()?,
            "--connections" => options.connections = value()?.parse()?,
            "--warmup" => options.warmup = value()?.parse()?,
            "--gzip" => options.gzip = true,
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    ensure!(!options.url.is_empty(), "--url is required\n{USAGE}");
    ensure!(
        options.spans >= STAGES.len() && options.connections > 0,
        "--spans must be at least 10 and --connections positive"
    );
    Ok(options)
}

async fn run(options: Options) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.connections)
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("{}/v1/traces", options.url.trim_end_matches('/'));
    // Requests carry whole frames, so a request holds a multiple of 10 spans.
    let per_request = options.spans / STAGES.len() * STAGES.len();
    let mut ids = IdSource::new();
    let warmup = bodies(&mut ids, options.warmup, per_request, options.gzip);
    send_all(&client, &url, warmup, options.connections, options.gzip).await?;

    let measured = bodies(&mut ids, options.events, per_request, options.gzip);
    let requests = measured.len();
    let events = requests * per_request;
    let request_bytes = measured.iter().map(Bytes::len).sum::<usize>() / requests.max(1);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut latencies =
        send_all(&client, &url, measured, options.connections, options.gzip).await?;
    let seconds = started.elapsed().as_secs_f64();
    let client_cpu_seconds = cpu_seconds() - cpu_before;
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies
            .get(index)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let report = serde_json::json!({
        "events": events,
        "requests": requests,
        "spans_per_request": per_request,
        "connections": options.connections,
        "gzip": options.gzip,
        "seconds": seconds,
        "events_per_second": events as f64 / seconds,
        "p50_ms": percentile(0.5),
        "p99_ms": percentile(0.99),
        "request_bytes": request_bytes,
        "client_cpu_seconds": client_cpu_seconds,
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{report}")?;
    Ok(())
}

/// Sends every body over `connections` concurrent workers; returns request latencies.
async fn send_all(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<Bytes>,
    connections: usize,
    gzip: bool,
) -> anyhow::Result<Vec<Duration>> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (client, url) = (client.clone(), url.to_owned());
        let (bodies, next) = (Arc::clone(&bodies), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else {
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let mut request = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body.clone());
                if gzip {
                    request = request.header("content-encoding", "gzip");
                }
                let started = Instant::now();
                let response = request.send().await.context("POST /v1/traces")?;
                let status = response.status();
                let bytes = response.bytes().await?;
                latencies.push(started.elapsed());
                ensure!(
                    status.is_success(),
                    "the tracker answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                );
                let answer = ExportTraceServiceResponse::decode(bytes.as_ref())?;
                ensure!(
                    answer.partial_success.is_none(),
                    "spans rejected: {:?}",
                    answer.partial_success
                );
            }
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok(latencies)
}

/// Unique trace ids for the whole run.
struct IdSource {
    prefix: u64,
    next: u64,
}

impl IdSource {
    fn new() -> IdSource {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        IdSource {
            prefix: nanos | 1,
            next: 1,
        }
    }

    fn trace_id(&mut self) -> Vec<u8> {
        self.next += 1;
        let mut id = self.prefix.to_be_bytes().to_vec();
        id.extend_from_slice(&self.next.to_be_bytes());
        id
    }
}

/// This process's user + system CPU time, seconds (0 where `/proc` is missing).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces;
    // utime and stime are fields 14 and 15, in clock ticks of 10 ms.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or_default()
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// `events` spans as encoded request bodies of `spans` spans each.
fn bodies(ids: &mut IdSource, events: usize, spans: usize, gzip: bool) -> Vec<Bytes> {
    let requests = events.div_ceil(spans);
    (0..requests)
        .map(|_| {
            let request = request(ids, spans);
            let body = request.encode_to_vec();
            let body = if gzip {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
                // Writing to a Vec cannot fail.
                let _ = encoder.write_all(&body);
                encoder.finish().unwrap_or_default()
            } else {
                body
            };
            Bytes::from(body)
        })
        .collect()
}

/// One export request: whole frames of 10 spans, one resource per service.
fn request(ids: &mut IdSource, spans: usize) -> ExportTraceServiceRequest {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut capture = Vec::new();
    let mut processor = Vec::new();
    let frames = spans / STAGES.len();
    for frame in 0..frames {
        let camera = format!("cam{:02}", frame % 16);
        let frame_id = FrameId::generate(&camera, "rgb")
            .map(|id| id.to_string())
            .unwrap_or_default();
        let trace_id = ids.trace_id();
        for (index, (service, stage)) in STAGES.iter().enumerate() {
            let start = now + index as u64 * 2_000_000;
            let span = Span {
                trace_id: trace_id.clone(),
                span_id: (index as u64 + 1).to_be_bytes().to_vec(),
                parent_span_id: if index == 0 {
                    Vec::new()
                } else {
                    (index as u64).to_be_bytes().to_vec()
                },
                name: (*stage).to_owned(),
                kind: 1,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_500_000,
                attributes: vec![
                    string("frame.id", &frame_id),
                    string("camera.id", &camera),
                    int("frame.size_bytes", 921_600),
                    string("frame.format", "jpeg"),
                    string("messaging.system", "redis"),
                    string("messaging.destination.name", "frames:queue"),
                    int("detections.count", (frame % 5) as i64),
                    string("code.function", stage),
                ],
                status: Some(Status::default()),
                ..Span::default()
            };
            if *service == "frame-capture" {
                capture.push(span);
            } else {
                processor.push(span);
            }
        }
    }
    let resource_spans = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                string("service.name", service),
                string("service.version", "0.1.0"),
                string("telemetry.sdk.language", "rust"),
            ],
            ..Resource::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "pathlight-telemetry".to_owned(),
                ..InstrumentationScope::default()
            }),
            spans,
            ..ScopeSpans::default()
        }],
        ..ResourceSpans::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans("frame-capture", capture),
            resource_spans("frame-processor", processor),
        ],
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}
