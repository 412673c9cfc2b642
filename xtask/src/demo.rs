//! `cargo xtask demo`: the vision pipeline end to end on this machine.
//!
//! Builds and starts `tracker`, `frame-processor` and `frame-capture` on free local ports
//! with embedded defaults (no Redis, no Jaeger: the services export their spans to the
//! tracker over OTLP/HTTP, the tracker keeps them in SQLite under `target/demo/`), runs a
//! bounded scenario (synthetic cameras for a number of seconds) with a progress line, then
//! prints what happened, all read back from the services' APIs:
//! frames captured / processed / dropped, detection precision and recall against the
//! scene's ground truth, then the trace analyzer's report (`tracker analyze`: latency per
//! stage, waits, slowest, failed and incomplete journeys, orphan spans), the waterfall of a
//! typical and of the slowest frame, and the URLs to look further.
//!
//! `--redis URL` or `--amqp URL` sends frames through a Redis stream or a RabbitMQ queue
//! instead of HTTP. `--keep-running` leaves everything up until Enter is pressed.
//! `cargo xtask demo telemetry` runs the smaller telemetry-only demo.
//!
//! Exit code 0 only when every processed frame has a complete journey without orphan
//! spans and every service exited cleanly.

use std::collections::BTreeMap;
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
    let outcome = scenario(&mut services, &bin, &run_dir, &options);
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
    incomplete: u64,
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
            self.incomplete == 0,
            "{} processed frames have an incomplete journey (tracker analyze lists them)",
            self.incomplete
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

fn scenario(
    services: &mut Services,
    bin: &Path,
    run_dir: &Path,
    options: &Options,
) -> anyhow::Result<Report> {
    let capture = progress(services, options)?;
    let processed = wait_for_processing(services, &capture)?;
    let events = wait_for_tracker(services)?;
    println!("tracker stored {events} events");

    print_accuracy(&services.processor_url, &capture)?;
    let analysis = analyse(bin, run_dir, &services.tracker_url, &options.delivery)?;
    print_counts(&capture, processed, &analysis);
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
        incomplete: analysis.incomplete_processed,
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

/// What `tracker analyze` found (its JSON report), with the counts the verdict needs.
struct Analysis {
    report: Value,
    frames: u64,
    /// Frames that reached `process_frame` (the others failed delivery or were still in
    /// flight).
    processed: u64,
    complete: u64,
    /// Processed frames lacking another expected stage.
    incomplete_processed: u64,
    orphans: u64,
    /// Processed frames whose journey has more than one trace id.
    multi_trace: u64,
}

/// Runs the trace analyzer (`tracker analyze`) over everything the tracker stored,
/// expecting every frame stage and the delivery's hop: prints its report and reads its
/// JSON form back for the verdict.
fn analyse(
    bin: &Path,
    run_dir: &Path,
    tracker_url: &str,
    delivery: &Delivery,
) -> anyhow::Result<Analysis> {
    let expected: Vec<String> = FRAME_STAGES
        .iter()
        .map(|stage| (*stage).to_owned())
        .chain(delivery.hop_stages())
        .collect();
    let saved = run_dir.join("analysis.json");
    println!(
        "
$ tracker analyze --url {tracker_url} --expect {}",
        expected.join(",")
    );
    let output = Command::new(bin.join("tracker"))
        .args(["analyze", "--url", tracker_url, "--top", "5", "--expect"])
        .arg(expected.join(","))
        .arg("--save")
        .arg(&saved)
        .output()
        .context("cannot run tracker analyze")?;
    ensure!(
        output.status.success(),
        "tracker analyze failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    print!("{}", String::from_utf8_lossy(&output.stdout));
    let text = std::fs::read_to_string(&saved)
        .with_context(|| format!("cannot read {}", saved.display()))?;
    let report: Value = serde_json::from_str(&text).context("tracker analyze wrote no JSON")?;
    let count = |field: &str| report[field].as_u64().unwrap_or(0);
    let not_processed = report["missing_stages"]["process_frame"]
        .as_u64()
        .unwrap_or(0);
    Ok(Analysis {
        frames: count("frames"),
        processed: count("frames") - not_processed.min(count("frames")),
        complete: count("complete"),
        incomplete_processed: count("incomplete").saturating_sub(not_processed),
        orphans: count("orphans"),
        multi_trace: count("multi_trace"),
        report,
    })
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

fn print_waterfalls(bin: &Path, tracker_url: &str, analysis: &Analysis) -> anyhow::Result<()> {
    let chosen = [
        ("a typical frame", &analysis.report["typical"]),
        ("the slowest frame", &analysis.report["slowest"][0]),
    ];
    for (title, brief) in chosen {
        let Some(frame_id) = brief["frame_id"].as_str() else {
            continue;
        };
        let total = brief["duration_nanos"].as_i64().unwrap_or(0) as f64 / 1e6;
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
pub(crate) fn metric_sum(text: &str, family: &str) -> u64 {
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
