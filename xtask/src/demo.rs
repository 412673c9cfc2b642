//! `cargo xtask demo`: the vision pipeline end to end on this machine.
//!
//! Builds and starts `tracker`, `frame-processor` and `frame-capture` on free local ports
//! with embedded defaults (no Redis, no Jaeger: the services export their spans to the
//! tracker over OTLP/HTTP, the tracker keeps them in SQLite under `target/demo/`), runs a
//! bounded scenario (synthetic cameras for a number of seconds) with a progress line, then
//! prints what happened, all read back from the services' APIs:
//! frames captured / processed / dropped, detection precision and recall against the
//! scene's ground truth, p50/p99 per stage, journey completeness and orphan spans, the
//! waterfall of a typical and of the slowest frame, and the URLs to look further.
//!
//! `--redis URL` or `--amqp URL` sends frames through a Redis stream or a RabbitMQ queue
//! instead of HTTP. `--keep-running` leaves everything up until Enter is pressed.
//! `cargo xtask demo telemetry` runs the smaller telemetry-only demo.
//!
//! Exit code 0 only when every processed frame has a complete journey without orphan
//! spans and every service exited cleanly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::process::{Spawned, get_json, http_get};

const USAGE: &str = "\
usage: cargo xtask demo [options]
       cargo xtask demo telemetry [--requests N]

Options:
  --cameras N      synthetic cameras (default 3)
  --seconds S      how long the cameras capture (default 10)
  --fps F          frames per second per camera (default 5)
  --redis URL      deliver frames through the Redis stream frames:queue
  --amqp URL       deliver frames through the RabbitMQ queue frames:queue
  --keep-running   leave the services running until Enter is pressed
  --debug          use the debug build (what `cargo xtask test` already built)
  --min-processed N  fail unless at least N frames were processed (the end-to-end test)";

/// The stages every processed frame's journey must have, besides its hop.
const FRAME_STAGES: [&str; 6] = [
    "capture",
    "process_frame",
    "detect_objects",
    "detect_faces",
    "detect_gestures",
    "store_result",
];

/// The queue every delivery mode names (the Redis stream or the RabbitMQ queue).
const QUEUE_NAME: &str = "frames:queue";

#[derive(Debug)]
struct Options {
    cameras: u32,
    seconds: u64,
    fps: f64,
    delivery: Delivery,
    keep_running: bool,
    debug: bool,
    min_processed: u64,
}

#[derive(Debug, Clone)]
enum Delivery {
    Http,
    Redis(String),
    Amqp(String),
}

impl Delivery {
    fn name(&self) -> &'static str {
        match self {
            Delivery::Http => "http",
            Delivery::Redis(_) => "redis",
            Delivery::Amqp(_) => "amqp",
        }
    }

    /// The two stages of the hop between capture and processor.
    fn hop_stages(&self) -> [String; 2] {
        match self {
            Delivery::Http => ["POST".to_owned(), "POST /process".to_owned()],
            Delivery::Redis(_) | Delivery::Amqp(_) => [
                format!("send {QUEUE_NAME}"),
                format!("process {QUEUE_NAME}"),
            ],
        }
    }
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    if args.first().map(String::as_str) == Some("telemetry") {
        return crate::demo_telemetry::run(&args[1..]);
    }
    let options = parse_options(args)?;
    let root = crate::project_root();
    build(options.debug)?;
    let bin = root.join(if options.debug {
        "target/debug"
    } else {
        "target/release"
    });
    let run_dir = root.join("target/demo");
    let _ = std::fs::remove_dir_all(&run_dir);
    let logs = run_dir.join("logs");
    std::fs::create_dir_all(&logs).context("cannot create target/demo/logs")?;

    let mut services = Services::start(&bin, &run_dir, &logs, &options)?;
    let outcome = scenario(&mut services, &bin, &options);
    let outcome = match outcome {
        Ok(report) => {
            if options.keep_running {
                println!("\neverything keeps running; press Enter to stop");
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
            }
            Ok(report)
        }
        Err(error) => Err(error),
    };
    let stopped = services.stop_all();
    println!("logs: {}", logs.display());
    let report = outcome?;
    stopped?;
    report.verdict()
}

fn parse_options(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        cameras: 3,
        seconds: 10,
        fps: 5.0,
        delivery: Delivery::Http,
        keep_running: false,
        debug: false,
        min_processed: 1,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--cameras" => {
                options.cameras = value()?.parse().context("--cameras takes a number")?
            }
            "--seconds" => {
                options.seconds = value()?.parse().context("--seconds takes a number")?
            }
            "--fps" => options.fps = value()?.parse().context("--fps takes a number")?,
            "--redis" => options.delivery = Delivery::Redis(value()?.clone()),
            "--amqp" => options.delivery = Delivery::Amqp(value()?.clone()),
            "--keep-running" => options.keep_running = true,
            "--debug" => options.debug = true,
            "--min-processed" => {
                options.min_processed =
                    value()?.parse().context("--min-processed takes a number")?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    ensure!(
        (1..=16).contains(&options.cameras),
        "--cameras must be between 1 and 16"
    );
    ensure!(
        (1..=600).contains(&options.seconds),
        "--seconds must be between 1 and 600"
    );
    Ok(options)
}

fn build(debug: bool) -> anyhow::Result<()> {
    let profile = if debug { "debug" } else { "release" };
    println!("building tracker, frame-processor and frame-capture ({profile})...");
    let started = Instant::now();
    crate::process::cargo_build(
        !debug,
        &[
            "-q",
            "-p",
            "tracker",
            "-p",
            "frame-processor",
            "-p",
            "frame-capture",
            "--bins",
        ],
    )?;
    println!("built in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The three running services, stopped in reverse order of the pipeline.
struct Services {
    tracker: Option<Spawned>,
    processor: Option<Spawned>,
    capture: Option<Spawned>,
    tracker_url: String,
    processor_url: String,
    capture_url: String,
}

impl Services {
    fn start(
        bin: &Path,
        run_dir: &Path,
        logs: &Path,
        options: &Options,
    ) -> anyhow::Result<Services> {
        let mut tracker = Spawned::start(
            base_command(&bin.join("tracker"))
                .env("PORT", "0")
                .env("OTLP_GRPC_PORT", "0")
                .env("DATA_DIR", run_dir.join("tracker-data"))
                .env("OTEL_TRACES_EXPORTER", "none"),
            "tracker",
            Some(logs),
        )?;
        let tracker_url = tracker.url(Duration::from_secs(30))?;
        println!("tracker          {tracker_url}");

        // The demo polls the read endpoints; excluding them keeps every exported span a
        // frame's, which is what the "no span without frame.id" check relies on.
        let mut command = exporting_command(&bin.join("frame-processor"), &tracker_url);
        command.env("PORT", "0").env(
            "OTEL_RUST_EXCLUDED_URLS",
            "/health,/metrics,/cameras/*,/frames/*",
        );
        match &options.delivery {
            Delivery::Http => {}
            Delivery::Redis(url) => {
                command
                    .env("QUEUE", "redis")
                    .env("REDIS_URL", url)
                    .env("QUEUE_NAME", QUEUE_NAME);
            }
            Delivery::Amqp(url) => {
                command
                    .env("QUEUE", "amqp")
                    .env("AMQP_URL", url)
                    .env("QUEUE_NAME", QUEUE_NAME);
            }
        }
        let mut processor = Spawned::start(&mut command, "frame-processor", Some(logs))?;
        let processor_url = processor.url(Duration::from_secs(30))?;
        println!("frame-processor  {processor_url}");

        let mut command = exporting_command(&bin.join("frame-capture"), &tracker_url);
        command
            .env("PORT", "0")
            .env("OTEL_RUST_EXCLUDED_URLS", "/health,/metrics,/stats")
            .env("CAMERAS", options.cameras.to_string())
            .env("FPS", options.fps.to_string())
            .env("DURATION", format!("{}s", options.seconds))
            .env("PROCESSOR_URL", &processor_url)
            .env("DELIVERY", options.delivery.name())
            .env("QUEUE_NAME", QUEUE_NAME);
        match &options.delivery {
            Delivery::Http => {}
            Delivery::Redis(url) => {
                command.env("REDIS_URL", url);
            }
            Delivery::Amqp(url) => {
                command.env("AMQP_URL", url);
            }
        }
        let mut capture = Spawned::start(&mut command, "frame-capture", Some(logs))?;
        let capture_url = capture.url(Duration::from_secs(30))?;
        println!(
            "frame-capture    {capture_url}  ({} delivery)",
            options.delivery.name()
        );
        Ok(Services {
            tracker: Some(tracker),
            processor: Some(processor),
            capture: Some(capture),
            tracker_url,
            processor_url,
            capture_url,
        })
    }

    /// Fails naming the first service that is no longer running.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for service in [&mut self.capture, &mut self.processor, &mut self.tracker]
            .into_iter()
            .flatten()
        {
            ensure!(
                service.is_running(),
                "{} exited unexpectedly (see target/demo/logs/{}.stderr.log)",
                service.name(),
                service.name()
            );
        }
        Ok(())
    }

    /// SIGTERM to capture, processor, tracker (so spans are flushed before the tracker
    /// stops); fails when one does not exit cleanly.
    fn stop_all(&mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        for service in [
            self.capture.take(),
            self.processor.take(),
            self.tracker.take(),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(error) = service.stop() {
                failures.push(error.to_string());
            }
        }
        ensure!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    }
}

/// A command with a clean environment (a user's `OTEL_*` variables must not leak in).
fn base_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    command
}

/// A service exporting its spans to the tracker over OTLP/HTTP.
fn exporting_command(program: &Path, tracker_url: &str) -> Command {
    let mut command = base_command(program);
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", tracker_url)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "16384");
    command
}

/// What the scenario found.
struct Report {
    processed: u64,
    min_processed: u64,
    incomplete: Vec<String>,
    orphans: u64,
    multi_trace: u64,
    spans_without_frame_id: u64,
    spans_rejected: u64,
    metrics_problems: Vec<String>,
}

impl Report {
    fn verdict(&self) -> anyhow::Result<()> {
        ensure!(
            self.processed >= self.min_processed,
            "{} frames were processed, fewer than {}",
            self.processed,
            self.min_processed
        );
        ensure!(
            self.multi_trace == 0,
            "{} journeys span more than one trace: the context was lost on the way",
            self.multi_trace
        );
        ensure!(
            self.spans_without_frame_id == 0 && self.spans_rejected == 0,
            "the tracker dropped {} spans without frame.id and rejected {}",
            self.spans_without_frame_id,
            self.spans_rejected
        );
        ensure!(
            self.metrics_problems.is_empty(),
            "{}",
            self.metrics_problems.join("; ")
        );
        ensure!(
            self.incomplete.is_empty(),
            "{} processed frames have an incomplete journey, e.g. {}",
            self.incomplete.len(),
            self.incomplete[0]
        );
        ensure!(
            self.orphans == 0,
            "{} spans have a parent the tracker never received",
            self.orphans
        );
        println!("\nevery processed frame has a complete journey; all services exited cleanly.");
        Ok(())
    }
}

fn scenario(services: &mut Services, bin: &Path, options: &Options) -> anyhow::Result<Report> {
    let capture = progress(services, options)?;
    let processed = wait_for_processing(services, &capture)?;
    let events = wait_for_tracker(services)?;
    println!("tracker stored {events} events");

    let journeys = journeys(&services.tracker_url)?;
    let analysis = analyse(&journeys, &options.delivery);

    print_counts(&capture, processed, &analysis);
    print_accuracy(&services.processor_url, &capture)?;
    print_stages(&analysis);
    print_waterfalls(bin, &services.tracker_url, &analysis)?;
    let tracker_metrics = http_text(&format!("{}/metrics", services.tracker_url))?;
    let spans_without_frame_id = metric_sum(&tracker_metrics, "tracker_ingest_spans_dropped_total");
    let spans_rejected = metric_sum(&tracker_metrics, "tracker_ingest_rejected_total");
    println!(
        "
tracker ingest: {spans_without_frame_id} spans without frame.id, {spans_rejected} rejected"
    );
    let metrics_problems = check_metrics(services)?;
    println!("\nlook further:");
    println!(
        "  journey API     {}/frames/<frame-id>/journey",
        services.tracker_url
    );
    println!(
        "  frame search    {}/frames?status=failed&min_duration_ms=50",
        services.tracker_url
    );
    println!("  metrics         {}/metrics", services.tracker_url);
    println!("                  {}/metrics", services.processor_url);
    println!("                  {}/metrics", services.capture_url);
    Ok(Report {
        processed,
        min_processed: options.min_processed,
        incomplete: analysis.incomplete.clone(),
        orphans: analysis.orphans,
        multi_trace: analysis.multi_trace,
        spans_without_frame_id,
        spans_rejected,
        metrics_problems,
    })
}

/// Capture's per-camera counters, summed.
#[derive(Debug, Default)]
struct CaptureTotals {
    cameras: Vec<String>,
    captured: u64,
    delivered: u64,
    dropped: BTreeMap<String, u64>,
}

fn capture_totals(capture_url: &str) -> anyhow::Result<(bool, CaptureTotals)> {
    let stats = get_json(&format!("{capture_url}/stats"))?;
    let mut totals = CaptureTotals::default();
    for camera in stats["cameras"].as_array().into_iter().flatten() {
        totals
            .cameras
            .push(camera["camera_id"].as_str().unwrap_or_default().to_owned());
        totals.captured += camera["captured"].as_u64().unwrap_or(0);
        totals.delivered += camera["delivered"].as_u64().unwrap_or(0);
        for (reason, count) in camera["dropped"].as_object().into_iter().flatten() {
            *totals.dropped.entry(reason.clone()).or_default() += count.as_u64().unwrap_or(0);
        }
    }
    Ok((stats["running"].as_bool().unwrap_or(false), totals))
}

/// Shows a progress line until the cameras have stopped.
fn progress(services: &mut Services, options: &Options) -> anyhow::Result<CaptureTotals> {
    let started = Instant::now();
    let limit = Duration::from_secs(options.seconds + 60);
    println!(
        "\ncapturing: {} cameras x {} s at {} fps",
        options.cameras, options.seconds, options.fps
    );
    loop {
        services.check_running()?;
        let (running, totals) = capture_totals(&services.capture_url)?;
        let elapsed = started.elapsed().as_secs_f64().min(options.seconds as f64);
        let done = (elapsed / options.seconds as f64 * 30.0) as usize;
        let dropped: u64 = totals.dropped.values().sum();
        print!(
            "\r  [{}{}] {elapsed:>5.1}/{} s  captured {:>5}  delivered {:>5}  dropped {:>4}",
            "#".repeat(done),
            "-".repeat(30 - done.min(30)),
            options.seconds,
            totals.captured,
            totals.delivered,
            dropped
        );
        let _ = std::io::stdout().flush();
        if !running {
            println!();
            return Ok(totals);
        }
        ensure!(
            started.elapsed() < limit,
            "the cameras did not stop after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until the processor has handled what capture delivered (or stops progressing).
fn wait_for_processing(services: &Services, capture: &CaptureTotals) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (0, Instant::now());
    loop {
        let mut processed = 0;
        for camera in &capture.cameras {
            let url = format!("{}/cameras/{camera}/stats", services.processor_url);
            if let Ok(stats) = get_json(&url) {
                processed += stats["frames_processed"].as_u64().unwrap_or(0);
            }
        }
        if processed >= capture.delivered {
            return Ok(processed);
        }
        if processed != last.0 {
            last = (processed, Instant::now());
        }
        if last.1.elapsed() > Duration::from_secs(10) || Instant::now() > deadline {
            println!(
                "the processor stopped at {processed} of {} delivered frames",
                capture.delivered
            );
            return Ok(processed);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until the tracker's event count has been stable for a while (the services
/// export every 200 ms) and nothing waits for its writer.
fn wait_for_tracker(services: &Services) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (u64::MAX, Instant::now());
    loop {
        let health = get_json(&format!("{}/health", services.tracker_url))?;
        let events = health["store"]["events"].as_u64().unwrap_or(0);
        let queued = health["ingest_queued_events"].as_u64().unwrap_or(0);
        if events != last.0 || queued > 0 {
            last = (events, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(1500) {
            return Ok(events);
        }
        ensure!(
            Instant::now() < deadline,
            "the tracker kept ingesting for a minute"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every frame's journey, via the search API's pages.
fn journeys(tracker_url: &str) -> anyhow::Result<Vec<Value>> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{tracker_url}/frames?limit=1000&cursor={cursor}"),
            None => format!("{tracker_url}/frames?limit=1000"),
        };
        let page = get_json(&url)?;
        for frame in page["frames"].as_array().into_iter().flatten() {
            if let Some(id) = frame["frame_id"].as_str() {
                ids.push(id.to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    ids.iter()
        .map(|id| get_json(&format!("{tracker_url}/frames/{id}/journey")))
        .collect()
}

/// What the journeys say.
#[derive(Debug, Default)]
struct Analysis {
    frames: usize,
    processed: usize,
    complete: usize,
    incomplete: Vec<String>,
    orphans: u64,
    /// Processed frames whose journey has more than one trace id.
    multi_trace: u64,
    /// Stage name -> durations (ms), in pipeline order of first appearance.
    stages: Vec<(String, Vec<f64>)>,
    /// Capture start to process_frame start (ms): the hop including queue wait.
    hop: Vec<f64>,
    /// (total duration ms, frame id) of complete journeys.
    totals: Vec<(f64, String)>,
}

fn analyse(journeys: &[Value], delivery: &Delivery) -> Analysis {
    let mut analysis = Analysis {
        frames: journeys.len(),
        ..Analysis::default()
    };
    let hop = delivery.hop_stages();
    let mut stage_index: HashMap<String, usize> = HashMap::new();
    for journey in journeys {
        let frame_id = journey["frame_id"].as_str().unwrap_or_default().to_owned();
        let events: Vec<&Value> = journey["events"].as_array().into_iter().flatten().collect();
        let stage_of = |event: &Value| {
            event["event"]["stage"]
                .as_str()
                .or_else(|| event["stage"].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let field = |event: &Value, name: &str| {
            event["event"][name]
                .as_str()
                .or_else(|| event[name].as_str())
                .map(str::to_owned)
        };
        let stages: BTreeSet<String> = events.iter().map(|e| stage_of(e)).collect();
        if !stages.contains("process_frame") {
            // Dropped by back-pressure before delivery: only its capture span exists.
            continue;
        }
        analysis.processed += 1;
        if journey["traces"].as_array().map_or(0, Vec::len) != 1 {
            analysis.multi_trace += 1;
        }
        let missing: Vec<&str> = FRAME_STAGES
            .iter()
            .copied()
            .chain(hop.iter().map(String::as_str))
            .filter(|stage| !stages.contains(*stage))
            .collect();
        if missing.is_empty() {
            analysis.complete += 1;
            let total = journey["duration_nanos"].as_i64().unwrap_or(0) as f64 / 1e6;
            analysis.totals.push((total, frame_id.clone()));
        } else {
            analysis
                .incomplete
                .push(format!("{frame_id} lacks {}", missing.join(", ")));
        }
        let spans: BTreeSet<(String, String)> = events
            .iter()
            .filter_map(|e| Some((field(e, "trace_id")?, field(e, "span_id")?)))
            .collect();
        for event in &events {
            if let (Some(trace), Some(parent)) =
                (field(event, "trace_id"), field(event, "parent_span_id"))
                && !spans.contains(&(trace, parent))
            {
                analysis.orphans += 1;
            }
        }
        let offset_of = |stage: &str| {
            events
                .iter()
                .find(|e| stage_of(e) == stage)
                .and_then(|e| e["offset_nanos"].as_i64())
        };
        if let (Some(capture), Some(process)) = (offset_of("capture"), offset_of("process_frame")) {
            analysis.hop.push((process - capture) as f64 / 1e6);
        }
        for event in &events {
            let stage = stage_of(event);
            let duration = event["duration_nanos"].as_i64().unwrap_or(0) as f64 / 1e6;
            let index = *stage_index.entry(stage.clone()).or_insert_with(|| {
                analysis.stages.push((stage.clone(), Vec::new()));
                analysis.stages.len() - 1
            });
            analysis.stages[index].1.push(duration);
        }
    }
    analysis
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn print_counts(capture: &CaptureTotals, processed: u64, analysis: &Analysis) {
    let dropped: u64 = capture.dropped.values().sum();
    let reasons: Vec<String> = capture
        .dropped
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    println!("\nframes");
    println!("  captured    {:>6}", capture.captured);
    println!("  delivered   {:>6}", capture.delivered);
    println!(
        "  dropped     {dropped:>6}{}",
        if reasons.is_empty() {
            String::new()
        } else {
            format!("  ({})", reasons.join(", "))
        }
    );
    println!("  processed   {processed:>6}");
    println!("\njourneys in the tracker");
    println!("  frames                {:>6}", analysis.frames);
    println!(
        "  processed, complete   {:>6} of {}",
        analysis.complete, analysis.processed
    );
    println!("  orphan spans          {:>6}", analysis.orphans);
    println!("  more than one trace   {:>6}", analysis.multi_trace);
}

fn print_accuracy(processor_url: &str, capture: &CaptureTotals) -> anyhow::Result<()> {
    let mut totals: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut scored = 0;
    for camera in &capture.cameras {
        let stats = get_json(&format!("{processor_url}/cameras/{camera}/stats"))?;
        let accuracy = &stats["accuracy"];
        scored += accuracy["frames_scored"].as_u64().unwrap_or(0);
        for stage in ["objects", "faces", "gestures"] {
            let entry = totals.entry(stage.to_owned()).or_default();
            entry.0 += accuracy[stage]["matched"].as_u64().unwrap_or(0);
            entry.1 += accuracy[stage]["detections"].as_u64().unwrap_or(0);
            entry.2 += accuracy[stage]["truths"].as_u64().unwrap_or(0);
        }
    }
    println!("\ndetections against the scene's ground truth ({scored} frames scored)");
    if scored == 0 {
        println!("  the processor scored no frame (no ground truth reached it)");
        return Ok(());
    }
    println!(
        "  {:<10} {:>9} {:>7} {:>8} {:>11} {:>7}",
        "stage", "precision", "recall", "matched", "detections", "truths"
    );
    for (stage, (matched, detections, truths)) in &totals {
        println!(
            "  {stage:<10} {:>9.3} {:>7.3} {matched:>8} {detections:>11} {truths:>7}",
            *matched as f64 / (*detections).max(1) as f64,
            *matched as f64 / (*truths).max(1) as f64,
        );
    }
    Ok(())
}

fn print_stages(analysis: &Analysis) {
    println!("\nstage durations over processed frames (ms)");
    println!("  {:<22} {:>6} {:>8} {:>8}", "stage", "spans", "p50", "p99");
    for (stage, durations) in &analysis.stages {
        let mut durations = durations.clone();
        println!(
            "  {stage:<22} {:>6} {:>8.2} {:>8.2}",
            durations.len(),
            percentile(&mut durations, 50.0),
            percentile(&mut durations, 99.0)
        );
    }
    let mut hop = analysis.hop.clone();
    println!(
        "  {:<22} {:>6} {:>8.2} {:>8.2}",
        "capture -> processing",
        hop.len(),
        percentile(&mut hop, 50.0),
        percentile(&mut hop, 99.0)
    );
}

fn print_waterfalls(bin: &Path, tracker_url: &str, analysis: &Analysis) -> anyhow::Result<()> {
    let mut totals = analysis.totals.clone();
    if totals.is_empty() {
        return Ok(());
    }
    totals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let typical = &totals[totals.len() / 2];
    let slowest = &totals[totals.len() - 1];
    for (title, (total, frame_id)) in [("a typical frame", typical), ("the slowest frame", slowest)]
    {
        println!("\njourney of {title} ({total:.1} ms): tracker journey {frame_id}");
        let output = Command::new(bin.join("tracker"))
            .args(["journey", frame_id, "--url", tracker_url])
            .output()
            .context("cannot run tracker journey")?;
        ensure!(
            output.status.success(),
            "tracker journey failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
    Ok(())
}

fn http_text(url: &str) -> anyhow::Result<String> {
    let (status, body) = http_get(url)?;
    ensure!(status == 200, "GET {url} answered {status}");
    Ok(body)
}

/// The sum of every series of a metric family in Prometheus text.
fn metric_sum(text: &str, family: &str) -> u64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `promtool check metrics` on every service's `/metrics`, when promtool is installed
/// (`cargo xtask test` provisions it); the catalog match is each service's own test.
fn check_metrics(services: &Services) -> anyhow::Result<Vec<String>> {
    if let Err(error) = testkit::find_promtool() {
        println!("promtool not found ({error}); /metrics not linted");
        return Ok(Vec::new());
    }
    let mut problems = Vec::new();
    for (name, url) in [
        ("tracker", &services.tracker_url),
        ("frame-processor", &services.processor_url),
        ("frame-capture", &services.capture_url),
    ] {
        let text = http_text(&format!("{url}/metrics"))?;
        if let Err(error) = testkit::promtool_check_metrics(&text) {
            problems.push(format!("{name} /metrics: {error}"));
        }
    }
    if problems.is_empty() {
        println!("promtool check metrics: tracker, frame-processor and frame-capture are clean");
    }
    Ok(problems)
}
