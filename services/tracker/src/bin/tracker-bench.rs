//! `tracker-bench`: loads N synthetic lifecycle events into a fresh journey store and
//! measures journey lookups by frame id. `cargo xtask bench tracker` builds and runs it.
//!
//! The data: 300 cameras, 10 events per frame (capture, encode, publish, consume,
//! process_frame, detect_faces, detect_objects, detect_gestures, aggregate, store) from four
//! services, frames spread evenly over the last 24 hours, 1 % of frames with a failed stage,
//! attributes on some stages. Events are appended in batches (default 1000) the way the
//! ingest writer sends them: each batch carries the late stages of the previous 100 frames
//! and the early stages of the next 100, so every frame's projection is written twice.
//!
//! Measured:
//! - load: wall time and events/s for the whole load, and per tenth (the store grows);
//!   per-batch append latency p50/p99;
//! - lookups after the load, one at a time: `journey` of random existing frames (the
//!   target: p99 <= 5 ms on SQLite, <= 20 ms on PostgreSQL), `journey` of unknown ids,
//!   `frame_summary` of random frames, and the first page of a camera's search;
//! - PostgreSQL only: journey lookups again after `VACUUM (ANALYZE)` and `CHECKPOINT`,
//!   since right after a bulk load the server is still busy with the loaded data.
//!
//! SQLite runs in a fresh file under `target/bench/`, PostgreSQL in a fresh database
//! created on the server at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! both are removed afterwards. Results are printed and written to
//! `target/bench/tracker.json` (or `--out`).

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use frame_tracking::FrameId;
use opentelemetry::trace::{SpanId, TraceId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tracker::model::{Event, EventId, EventStatus, FrameQuery};
use tracker::store::{self, StoreConfig};

const USAGE: &str = "\
usage: tracker-bench [options]

Options:
  --events N        events to load (default 10000000)
  --backend B       sqlite, postgres or both (default both)
  --batch N         events per append (default 1000)
  --lookups N       journey lookups of existing frames (default 10000)
  --cameras N       cameras (default 300)
  --out PATH        where to write the JSON report (default target/bench/tracker.json)
  --dir PATH        directory for the SQLite file (default target/bench)
  --database-url U  PostgreSQL server to create the database on (default DATABASE_URL)";

/// Events per frame.
const EVENTS_PER_FRAME: usize = 10;

/// The stages of a frame, with their service, offset from the frame's start and typical
/// duration (microseconds).
const STAGES: [(&str, &str, i64, i64); EVENTS_PER_FRAME] = [
    ("capture", "frame-capture", 0, 2_000),
    ("encode", "frame-capture", 2_000, 4_000),
    ("publish", "frame-capture", 6_000, 500),
    ("consume", "frame-processor", 9_000, 300),
    ("process_frame", "frame-processor", 9_500, 40_000),
    ("detect_faces", "frame-processor", 10_000, 15_000),
    ("detect_objects", "frame-processor", 10_000, 25_000),
    ("detect_gestures", "frame-processor", 10_000, 12_000),
    ("aggregate", "frame-processor", 36_000, 1_000),
    ("store", "results-store", 38_000, 3_000),
];

#[derive(Debug, Clone)]
struct Options {
    events: u64,
    backends: Vec<Backend>,
    batch: usize,
    lookups: usize,
    cameras: usize,
    out: PathBuf,
    dir: PathBuf,
    database_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Latency percentiles of one kind of operation, microseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    count: usize,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

#[derive(Debug)]
struct Report {
    backend: Backend,
    events: u64,
    frames: usize,
    load_seconds: f64,
    append_seconds: f64,
    tenths_events_per_second: Vec<f64>,
    append_batch: Latency,
    journey: Latency,
    journey_unknown: Latency,
    summary: Latency,
    search: Latency,
    size_bytes: u64,
    stored_events: u64,
    /// PostgreSQL only: lookups again after `VACUUM (ANALYZE)` and `CHECKPOINT`.
    settled: Option<Settled>,
}

/// Lookups once the database has caught up with the bulk load.
#[derive(Debug)]
struct Settled {
    settle_seconds: f64,
    journey: Latency,
    journey_unknown: Latency,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = parse(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut reports = Vec::new();
    for backend in &options.backends {
        reports.push(runtime.block_on(run(*backend, &options))?);
    }
    print_table(&reports);
    write_json(&options, &reports)?;
    Ok(())
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|services| services.parent())
        .map(|root| root.join("target").join("bench"))
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    let mut options = Options {
        events: 10_000_000,
        backends: vec![Backend::Sqlite, Backend::Postgres],
        batch: 1000,
        lookups: 10_000,
        cameras: 300,
        out: root.join("tracker.json"),
        dir: root,
        database_url: testkit_like_database_url(),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--events" => options.events = value()?.parse().context("--events")?,
            "--batch" => options.batch = value()?.parse().context("--batch")?,
            "--lookups" => options.lookups = value()?.parse().context("--lookups")?,
            "--cameras" => options.cameras = value()?.parse().context("--cameras")?,
            "--out" => options.out = PathBuf::from(value()?),
            "--dir" => options.dir = PathBuf::from(value()?),
            "--database-url" => options.database_url = value()?.clone(),
            "--backend" => {
                options.backends = match value()?.as_str() {
                    "sqlite" => vec![Backend::Sqlite],
                    "postgres" => vec![Backend::Postgres],
                    "both" => vec![Backend::Sqlite, Backend::Postgres],
                    other => bail!("unknown backend {other:?}\n{USAGE}"),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    if options.batch == 0 || options.cameras == 0 || options.lookups == 0 {
        bail!("--batch, --cameras and --lookups must be at least 1");
    }
    if options.events < EVENTS_PER_FRAME as u64 {
        bail!("--events must be at least {EVENTS_PER_FRAME}");
    }
    Ok(options)
}

/// `DATABASE_URL`, or the local default the test servers use.
fn testkit_like_database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn run(backend: Backend, options: &Options) -> anyhow::Result<Report> {
    let name = format!("tracker_bench_{}", std::process::id());
    let (config, cleanup) = match backend {
        Backend::Sqlite => {
            let dir = options.dir.join(&name);
            let _ = std::fs::remove_dir_all(&dir);
            let config = StoreConfig::Sqlite {
                path: dir.join("tracker.db"),
            };
            (config, Cleanup::Dir(dir))
        }
        Backend::Postgres => {
            execute(&options.database_url, &format!("CREATE DATABASE {name}")).await?;
            let config = StoreConfig::Postgres {
                url: with_database(&options.database_url, &name)?,
            };
            (
                config,
                Cleanup::Database {
                    url: options.database_url.clone(),
                    name,
                },
            )
        }
    };
    let result = measure(backend, &config, options).await;
    match cleanup {
        Cleanup::Dir(dir) => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Cleanup::Database { url, name } => {
            execute(
                &url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await?;
        }
    }
    result
}

enum Cleanup {
    Dir(PathBuf),
    Database { url: String, name: String },
}

async fn measure(
    backend: Backend,
    config: &StoreConfig,
    options: &Options,
) -> anyhow::Result<Report> {
    let store = store::open(config).await?;
    let frames_total = (options.events / EVENTS_PER_FRAME as u64) as usize;
    println!(
        "{backend:?}: loading {} events ({frames_total} frames, {} cameras, batches of {})",
        frames_total * EVENTS_PER_FRAME,
        options.cameras,
        options.batch
    );
    let cameras: Vec<String> = (0..options.cameras)
        .map(|n| format!("cam-{n:04}"))
        .collect();
    let mut rng = StdRng::seed_from_u64(42);
    let mut generator = Generator::new(frames_total);
    let mut frame_ids = Vec::with_capacity(frames_total);
    let mut batch_latencies = Vec::new();
    let mut append_time = Duration::ZERO;
    let mut tenths = Vec::new();
    let tenth = (frames_total * EVENTS_PER_FRAME).div_ceil(10);
    let (mut loaded, mut tenth_loaded, mut tenth_append) = (0usize, 0usize, Duration::ZERO);
    let started = Instant::now();
    // Frames in groups of batch/10; each batch: the late stages of the previous group and
    // the early stages of the current one.
    let group = (options.batch / EVENTS_PER_FRAME).max(1);
    let mut pending: Vec<Event> = Vec::new();
    let mut next_frame = 0;
    while next_frame < frames_total || !pending.is_empty() {
        let mut batch = std::mem::take(&mut pending);
        let end = (next_frame + group).min(frames_total);
        for index in next_frame..end {
            let camera = &cameras[rng.random_range(0..cameras.len())];
            let frame_id = FrameId::generate(camera, "rgb")?;
            let events = generator.frame(&mut rng, index, frame_id, camera);
            let (early, late) = events.split_at(EVENTS_PER_FRAME / 2);
            batch.extend_from_slice(early);
            pending.extend_from_slice(late);
            frame_ids.push(frame_id);
        }
        next_frame = end;
        if next_frame >= frames_total {
            batch.append(&mut pending);
        }
        let began = Instant::now();
        let outcome = store.append(&batch).await?;
        let took = began.elapsed();
        if outcome.inserted != batch.len() as u64 {
            bail!("expected {} inserted, got {outcome:?}", batch.len());
        }
        append_time += took;
        tenth_append += took;
        batch_latencies.push(took);
        loaded += batch.len();
        tenth_loaded += batch.len();
        if tenth_loaded >= tenth {
            tenths.push(tenth_loaded as f64 / tenth_append.as_secs_f64());
            println!(
                "  {loaded:>10} events, {:>8.0} events/s over the last {tenth_loaded}, {:.1} s",
                tenth_loaded as f64 / tenth_append.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
            (tenth_loaded, tenth_append) = (0, Duration::ZERO);
        }
    }
    let load_seconds = started.elapsed().as_secs_f64();
    if tenth_loaded > 0 {
        tenths.push(tenth_loaded as f64 / tenth_append.as_secs_f64());
    }
    let status = store.status().await?;
    println!(
        "  loaded in {load_seconds:.1} s ({:.0} events/s); {} bytes",
        loaded as f64 / load_seconds,
        status.size_bytes
    );

    let journey = lookups(options.lookups, &mut rng, |rng| {
        let frame_id = frame_ids[rng.random_range(0..frame_ids.len())];
        let store = Arc::clone(&store);
        async move {
            let events = store.journey(&frame_id).await?;
            if events.len() != EVENTS_PER_FRAME {
                bail!("frame {frame_id}: {} events", events.len());
            }
            Ok(())
        }
    })
    .await?;
    let journey_unknown = lookups(options.lookups / 10, &mut rng, |_| {
        let store = Arc::clone(&store);
        async move {
            let frame_id = FrameId::generate("cam-unknown", "rgb")?;
            if !store.journey(&frame_id).await?.is_empty() {
                bail!("an unknown frame has events");
            }
            Ok(())
        }
    })
    .await?;
    let summary = lookups(options.lookups, &mut rng, |rng| {
        let frame_id = frame_ids[rng.random_range(0..frame_ids.len())];
        let store = Arc::clone(&store);
        async move {
            store
                .frame_summary(&frame_id)
                .await?
                .context("a loaded frame has no summary")?;
            Ok(())
        }
    })
    .await?;
    let search = lookups(options.lookups / 10, &mut rng, |rng| {
        let camera = cameras[rng.random_range(0..cameras.len())].clone();
        let store = Arc::clone(&store);
        async move {
            let query = FrameQuery {
                camera_id: Some(camera),
                limit: 50,
                ..FrameQuery::default()
            };
            store.search_frames(&query).await?;
            Ok(())
        }
    })
    .await?;
    // Right after a bulk load PostgreSQL is still vacuuming, analysing and checkpointing
    // what was loaded; a service that accumulated the same events over hours would not
    // be. Measure again once that work is done, and report both.
    let settled = match config {
        StoreConfig::Postgres { url } => {
            let began = Instant::now();
            execute(url, "VACUUM (ANALYZE) events, frames, cameras").await?;
            execute(url, "CHECKPOINT").await?;
            let settle_seconds = began.elapsed().as_secs_f64();
            let journey = lookups(options.lookups, &mut rng, |rng| {
                let frame_id = frame_ids[rng.random_range(0..frame_ids.len())];
                let store = Arc::clone(&store);
                async move {
                    store.journey(&frame_id).await?;
                    Ok(())
                }
            })
            .await?;
            let journey_unknown = lookups(options.lookups / 10, &mut rng, |_| {
                let store = Arc::clone(&store);
                async move {
                    let frame_id = FrameId::generate("cam-unknown", "rgb")?;
                    store.journey(&frame_id).await?;
                    Ok(())
                }
            })
            .await?;
            Some(Settled {
                settle_seconds,
                journey,
                journey_unknown,
            })
        }
        StoreConfig::Sqlite { .. } => None,
    };
    drop(store);
    Ok(Report {
        settled,
        backend,
        events: loaded as u64,
        frames: frames_total,
        load_seconds,
        append_seconds: append_time.as_secs_f64(),
        tenths_events_per_second: tenths,
        append_batch: latency(batch_latencies),
        journey,
        journey_unknown,
        summary,
        search,
        size_bytes: status.size_bytes,
        stored_events: status.events,
    })
}

/// Runs `count` operations one after the other and returns their latency.
async fn lookups<F, Fut>(
    count: usize,
    rng: &mut StdRng,
    mut operation: F,
) -> anyhow::Result<Latency>
where
    F: FnMut(&mut StdRng) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let future = operation(rng);
        let began = Instant::now();
        future.await?;
        latencies.push(began.elapsed());
    }
    Ok(latency(latencies))
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let at = |quantile: f64| {
        let rank = ((quantile * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1].as_secs_f64() * 1e6
    };
    Latency {
        count: samples.len(),
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: at(1.0),
    }
}

/// Synthetic events: frames evenly spread over the last 24 hours.
struct Generator {
    base_nanos: i64,
    spacing_nanos: i64,
}

impl Generator {
    fn new(frames: usize) -> Generator {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as i64);
        let day = 24 * 3_600 * 1_000_000_000i64;
        Generator {
            base_nanos: now - day,
            spacing_nanos: (day / frames.max(1) as i64).max(1),
        }
    }

    fn frame(
        &mut self,
        rng: &mut StdRng,
        index: usize,
        frame_id: FrameId,
        camera: &str,
    ) -> Vec<Event> {
        let start = self.base_nanos + index as i64 * self.spacing_nanos;
        let trace_id = TraceId::from_bytes(rng.random::<[u8; 16]>());
        let failing = rng.random_range(0..100) == 0;
        let failed_stage = rng.random_range(4..EVENTS_PER_FRAME);
        let mut parent = None;
        STAGES
            .iter()
            .enumerate()
            .map(|(n, (stage, service, offset_us, duration_us))| {
                let span_id = SpanId::from_bytes(rng.random_range(1..u64::MAX).to_be_bytes());
                // Durations vary by up to +-50 %.
                let duration = duration_us * 1_000 * rng.random_range(50..150) / 100;
                let stage_start = start + offset_us * 1_000;
                let failed = failing && n == failed_stage;
                let mut attributes = BTreeMap::new();
                match *stage {
                    "capture" => {
                        attributes.insert("frame.size_bytes".to_owned(), json!(921_600));
                    }
                    "publish" | "consume" => {
                        attributes.insert("messaging.system".to_owned(), json!("redis"));
                    }
                    "detect_objects" => {
                        attributes.insert("detections".to_owned(), json!(rng.random_range(0..12)));
                    }
                    _ => {}
                }
                let event = Event {
                    event_id: EventId::from_span(trace_id, span_id),
                    frame_id,
                    service: (*service).to_owned(),
                    stage: (*stage).to_owned(),
                    start_unix_nanos: stage_start,
                    end_unix_nanos: stage_start + duration,
                    status: if failed {
                        EventStatus::Error
                    } else {
                        EventStatus::Unset
                    },
                    error_message: failed.then(|| "detector timed out".to_owned()),
                    trace_id,
                    span_id,
                    parent_span_id: parent,
                    camera_id: Some(camera.to_owned()),
                    attributes,
                };
                if n == 0 {
                    parent = Some(span_id);
                }
                event
            })
            .collect()
    }
}

async fn execute(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| "cannot connect to PostgreSQL (set DATABASE_URL or --database-url)")?;
    let task = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .with_context(|| sql.to_owned())?;
    drop(client);
    let _ = task.await;
    Ok(())
}

fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .context("DATABASE_URL must be a postgres:// URL")?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |index| &tail[index..]);
    Ok(format!("{scheme}://{authority}/{name}{query}"))
}

fn print_table(reports: &[Report]) {
    println!();
    println!(
        "{:<9} {:>10} {:>8} {:>10} {:>10} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "backend",
        "events",
        "load s",
        "events/s",
        "append/s",
        "journey p50",
        "journey p99",
        "journey max",
        "unknown p99",
        "size MB"
    );
    for report in reports {
        println!(
            "{:<9} {:>10} {:>8.1} {:>10.0} {:>10.0} {:>10.2}ms {:>10.2}ms {:>10.2}ms {:>10.2}ms {:>10.0}",
            format!("{:?}", report.backend).to_lowercase(),
            report.events,
            report.load_seconds,
            report.events as f64 / report.load_seconds,
            report.events as f64 / report.append_seconds,
            report.journey.p50_us / 1e3,
            report.journey.p99_us / 1e3,
            report.journey.max_us / 1e3,
            report.journey_unknown.p99_us / 1e3,
            report.size_bytes as f64 / 1e6,
        );
    }
    println!();
    for report in reports {
        let target_ms = match report.backend {
            Backend::Sqlite => 5.0,
            Backend::Postgres => 20.0,
        };
        println!(
            "{:?}: journey p99 {:.2} ms (target <= {target_ms} ms: {}); summary p50/p99 {:.2}/{:.2} ms; \
             camera search p50/p99 {:.2}/{:.2} ms; append batch p50/p99 {:.1}/{:.1} ms; \
             events/s per tenth of the load: {}",
            report.backend,
            report.journey.p99_us / 1e3,
            if report.journey.p99_us / 1e3 <= target_ms {
                "met"
            } else {
                "NOT met"
            },
            report.summary.p50_us / 1e3,
            report.summary.p99_us / 1e3,
            report.search.p50_us / 1e3,
            report.search.p99_us / 1e3,
            report.append_batch.p50_us / 1e3,
            report.append_batch.p99_us / 1e3,
            report
                .tenths_events_per_second
                .iter()
                .map(|rate| format!("{rate:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        if let Some(settled) = &report.settled {
            println!(
                "{:?} after VACUUM (ANALYZE) + CHECKPOINT ({:.1} s): journey p50/p99/max \
                 {:.2}/{:.2}/{:.2} ms (target <= {target_ms} ms: {}); unknown p50/p99 {:.2}/{:.2} ms",
                report.backend,
                settled.settle_seconds,
                settled.journey.p50_us / 1e3,
                settled.journey.p99_us / 1e3,
                settled.journey.max_us / 1e3,
                if settled.journey.p99_us / 1e3 <= target_ms {
                    "met"
                } else {
                    "NOT met"
                },
                settled.journey_unknown.p50_us / 1e3,
                settled.journey_unknown.p99_us / 1e3,
            );
        }
    }
}

fn latency_json(latency: &Latency) -> serde_json::Value {
    json!({
        "count": latency.count,
        "p50_ms": latency.p50_us / 1e3,
        "p99_ms": latency.p99_us / 1e3,
        "max_ms": latency.max_us / 1e3,
    })
}

fn write_json(options: &Options, reports: &[Report]) -> anyhow::Result<()> {
    let runs: Vec<serde_json::Value> = reports
        .iter()
        .map(|report| {
            json!({
                "backend": format!("{:?}", report.backend).to_lowercase(),
                "events": report.events,
                "stored_events": report.stored_events,
                "frames": report.frames,
                "cameras": options.cameras,
                "batch": options.batch,
                "load_seconds": report.load_seconds,
                "load_events_per_second": report.events as f64 / report.load_seconds,
                "append_events_per_second": report.events as f64 / report.append_seconds,
                "append_events_per_second_by_tenth": report.tenths_events_per_second,
                "append_batch": latency_json(&report.append_batch),
                "journey": latency_json(&report.journey),
                "journey_unknown": latency_json(&report.journey_unknown),
                "frame_summary": latency_json(&report.summary),
                "camera_search_first_page": latency_json(&report.search),
                "size_bytes": report.size_bytes,
                "settled": report.settled.as_ref().map(|settled| json!({
                    "after": "VACUUM (ANALYZE) events, frames, cameras; CHECKPOINT",
                    "settle_seconds": settled.settle_seconds,
                    "journey": latency_json(&settled.journey),
                    "journey_unknown": latency_json(&settled.journey_unknown),
                })),
            })
        })
        .collect();
    let document = json!({
        "benchmark": "tracker store: load, then journey lookup by frame id",
        "events_per_frame": EVENTS_PER_FRAME,
        "targets": {"sqlite_journey_p99_ms": 5.0, "postgres_journey_p99_ms": 20.0},
        "runs": runs,
    });
    if let Some(dir) = options.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &options.out,
        serde_json::to_string_pretty(&document)? + "\n",
    )
    .with_context(|| format!("cannot write {}", options.out.display()))?;
    println!("wrote {}", options.out.display());
    Ok(())
}
