//! `cargo xtask bench pipeline [--frames N] [--warmup N] [--rounds R] [--connections C]
//! [--cameras C] [--format png|rgb24] [--env NAME=VALUE]... [--no-pin]`: what telemetry costs the frame processor
//! (issue 5: "< 1 % difference"), side by side in one run, in two modes:
//!
//! - `off`: `frame-processor` with `OTEL_SDK_DISABLED=true` (no spans exported, no metrics
//!   recorder; the JSON console logs stay, as they do in production);
//! - `on`: the production set-up at 100 % sampling: `OTEL_TRACES_SAMPLER=always_on`, spans
//!   exported over OTLP/HTTP (protobuf) to a running `tracker` (a fresh SQLite `DATA_DIR`
//!   per run), Prometheus metrics, the batch span processor's defaults.
//!
//! What runs:
//! - release builds of `frame-processor`, `tracker`, `bench-load` and `bench-frames`,
//!   run from copies in `target/bench/bin/` (as `bench middleware` does);
//! - `bench-frames` renders the frames once: W warm-up frames then N measured frames
//!   (640x480 PNG with ground truth by default, round-robin over 4 seeded cameras, bodies
//!   built by frame-capture's own `request_body`), one file of bodies each. Every run
//!   sends the same bodies in the same order, so every run does the same detection work
//!   (the measured frames' previous frames, which the motion stage compares with, are the
//!   warm-up's or each other);
//! - every request carries a fresh sampled `traceparent` (`bench-load --traceparent`), as a
//!   frame from frame-capture does, in both modes: the bytes on the wire are the same, and
//!   in `on` the processor's spans continue the caller's trace.
//!
//! Per run: a fresh processor (and for `on` a fresh tracker, started first); `bench-load`
//! POSTs the W warm-up bodies, then each of the N measured bodies once, closed loop over C
//! keep-alive connections (maximum load). The processor's CPU time is read before and after
//! the measured frames: CPU per frame is its difference over N. It comes from
//! `/proc/<pid>/stat` (utime + stime of the whole process, clock ticks: with N frames of a
//! few ms each the run spans hundreds of ticks), because the processor starts a thread per
//! detection stage per frame and `stat` keeps the time of exited threads; the nanosecond
//! sum over `/proc/<pid>/task/*/schedstat` that `bench middleware` uses sees only the
//! threads alive at the end, and is reported as "live threads" for comparison. Minor page
//! faults per frame (`stat` too) are reported because they turned out to be where the
//! difference between the modes goes (see the processor's README). Frames/s is
//! bench-load's rate of successful responses. For `on`, the processor's `/metrics` is
//! scraped after the measurement (spans exported and dropped so far), the processor gets
//! SIGTERM and must exit 0 (it flushes its spans), and the run waits until the tracker has
//! received every span: [`SPANS_PER_FRAME`] per frame, warm-up included. The tracker's CPU
//! from the warm-up to the last span ingested is reported per frame but not counted: it is
//! another process (on another CPU when pinned).
//!
//! Spans still queued when the measurement ends are exported at shutdown, outside the
//! window, and warm-up spans exported inside it are counted instead; with the default batch
//! (512 spans, 5 s) either is at most one batch, a few hundred microseconds of CPU against
//! tens of seconds measured.
//!
//! Rounds alternate the order of the modes (off, on, then on, off: ABBA), so a drift of
//! this shared machine does not always favour one mode. The overhead is the median over
//! rounds of each round's `on / off - 1` for CPU per frame (the two runs of a round are
//! close in time), printed with its spread and the ratio of the medians. With `taskset` and
//! two or more CPUs the processor runs pinned to the last CPU and bench-load and the
//! tracker to CPU 0, as in `bench middleware`. Results are printed and written to
//! `target/bench/pipeline.json`; service logs go to `target/bench/logs/pipeline/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::bench::{
    CpuTime, LoadResult, Pinning, clock_ticks_per_second, cpu_time, json_number, loadavg, median,
    release_copy, rss_kb, run_load, target_dir, verdict,
};
use crate::process::{Spawned, http_get};

const USAGE: &str = "\
usage: cargo xtask bench pipeline [options]

Options:
  --frames N       measured frames per run, each sent once (default 1000)
  --warmup N       warm-up frames per run, before the measured ones (default 100)
  --rounds R       rounds; each runs both modes, in alternating order (default 6)
  --connections C  concurrent keep-alive connections of the load generator (default 3)
  --cameras C      cameras the frames are spread over (default 4)
  --format F       pixel encoding of the frames: png (as frame-capture sends) or rgb24 (default png)
  --env NAME=VALUE also set this variable for the processor, in both modes (repeatable),
                   e.g. GLIBC_TUNABLES=... or LD_PRELOAD=... to compare allocators
  --no-pin         do not pin the processor and the load generator to separate CPUs";

/// The target: telemetry on costs less than this much more CPU per frame.
const TARGET_OVERHEAD_PERCENT: f64 = 1.0;

/// Spans the processor exports per frame: the telemetry layer's server span,
/// `process_frame`, `decode_frame`, `detect_objects`, `detect_faces`, `detect_gestures` and
/// `store_result`.
const SPANS_PER_FRAME: u64 = 7;

/// The size of the rendered frames: what frame-capture sends by default.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// How long the tracker may take to ingest the last spans after the processor exited.
const INGEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The command line.
#[derive(Debug, Clone)]
struct Options {
    frames: u64,
    warmup: u64,
    rounds: usize,
    connections: u64,
    cameras: u64,
    format: String,
    /// Extra variables of the processor, both modes.
    env: Vec<(String, String)>,
    pin: bool,
}

/// Telemetry off or on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    On,
}

/// The binaries (copies) and the request bodies of a run.
#[derive(Debug)]
struct Setup {
    processor: PathBuf,
    tracker: PathBuf,
    load: PathBuf,
    warmup_bodies: PathBuf,
    frame_bodies: PathBuf,
    pinning: Pinning,
    clock_ticks: u64,
    run_dir: PathBuf,
    log_dir: PathBuf,
}

/// What one processor run measured.
#[derive(Debug, Clone)]
struct Sample {
    round: usize,
    mode: Mode,
    /// Successful responses to the measured frames.
    frames: u64,
    errors: u64,
    seconds: f64,
    fps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The processor's CPU during the measured frames (ns): the whole process from `stat`,
    /// and the threads alive at the end from `schedstat`.
    cpu_ns: u64,
    live_cpu_ns: u64,
    minor_faults: u64,
    threads: usize,
    rss_kb: u64,
    /// Mode `on` only.
    export: Option<Export>,
}

/// Where the spans of an `on` run went.
#[derive(Debug, Clone)]
struct Export {
    /// The processor's own counters, scraped after the measured frames (before its final
    /// flush).
    exported_before_exit: u64,
    dropped_before_exit: u64,
    /// The tracker's counts after the processor exited.
    received: u64,
    expected: u64,
    events_stored: u64,
    without_frame_id: u64,
    rejected: u64,
    /// The tracker's CPU from the warm-up to the last span, per frame of the run (warm-up
    /// included), ms.
    tracker_cpu_ms_per_frame: f64,
}

impl Sample {
    fn cpu_ms_per_frame(&self) -> f64 {
        self.cpu_ns as f64 / 1e6 / self.frames.max(1) as f64
    }

    fn live_cpu_ms_per_frame(&self) -> f64 {
        self.live_cpu_ns as f64 / 1e6 / self.frames.max(1) as f64
    }

    fn faults_per_frame(&self) -> f64 {
        self.minor_faults as f64 / self.frames.max(1) as f64
    }
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::On => "on",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::Off => "OTEL_SDK_DISABLED=true",
            Mode::On => {
                "100 % sampled (always_on), OTLP/HTTP export to the tracker, Prometheus metrics"
            }
        }
    }

    /// The order of the modes in `round` (1-based): off, on, then on, off, and so on.
    fn order(round: usize) -> [Mode; 2] {
        if round % 2 == 1 {
            [Mode::Off, Mode::On]
        } else {
            [Mode::On, Mode::Off]
        }
    }
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let options = parse_options(args)?;
    let started = Instant::now();
    let target = target_dir();
    let run_dir = target.join("bench").join("pipeline");
    let log_dir = target.join("bench").join("logs").join("pipeline");
    for dir in [&run_dir, &log_dir] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    crate::process::cargo_build(
        true,
        &[
            "-p",
            "frame-processor",
            "-p",
            "tracker",
            "-p",
            "bench",
            "--bin",
            "frame-processor",
            "--bin",
            "tracker",
            "--bin",
            "bench-load",
            "--bin",
            "bench-frames",
        ],
    )?;
    let frames_binary = release_copy(&target, "bench-frames")?;
    let pinning = crate::bench::pinning(options.pin);
    let setup = Setup {
        processor: release_copy(&target, "frame-processor")?,
        tracker: release_copy(&target, "tracker")?,
        load: release_copy(&target, "bench-load")?,
        warmup_bodies: run_dir.join("warmup.jsonl"),
        frame_bodies: run_dir.join("frames.jsonl"),
        pinning,
        clock_ticks: clock_ticks_per_second(),
        run_dir,
        log_dir,
    };
    // The warm-up file first: its frame ids are then older than the measured frames', per
    // camera, and the measured frames continue the warm-up's scenes.
    let per_camera = options.warmup.div_ceil(options.cameras);
    render(
        &frames_binary,
        &options,
        &setup.warmup_bodies,
        options.warmup.max(1),
        0,
    )?;
    render(
        &frames_binary,
        &options,
        &setup.frame_bodies,
        options.frames,
        per_camera,
    )?;

    let load_before = loadavg();
    println!(
        "bench pipeline: {} round(s) of off/on; {} measured frames (+{} warm-up) per run, \
         {WIDTH}x{HEIGHT} {} over {} camera(s); {} connections; {}",
        options.rounds,
        options.frames,
        options.warmup,
        options.format,
        options.cameras,
        options.connections,
        describe_pinning(&setup.pinning),
    );
    if !options.env.is_empty() {
        println!(
            "processor environment (both modes): {}",
            env_list(&options.env)
        );
    }
    println!("load average before: {load_before}");

    let mut samples = Vec::new();
    for round in 1..=options.rounds {
        for mode in Mode::order(round) {
            let sample = run_one(&setup, &options, round, mode)
                .with_context(|| format!("round {round}, mode {}", mode.name()))?;
            println!("  {}", sample_line(&sample));
            samples.push(sample);
        }
    }
    let load_after = loadavg();
    let report = Report {
        options: &options,
        pinning: &setup.pinning,
        samples: &samples,
        load_before,
        load_after,
        elapsed: started.elapsed(),
    };
    print!("{}", report.table());
    let json_path = target.join("bench").join("pipeline.json");
    let json = serde_json::to_string_pretty(&report.json())?;
    fs::write(&json_path, json + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    println!("results written to {}", json_path.display());
    Ok(())
}

fn parse_options(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        frames: 1000,
        warmup: 100,
        rounds: 6,
        connections: 3,
        cameras: 4,
        format: "png".to_owned(),
        env: Vec::new(),
        pin: true,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--no-pin" => {
                options.pin = false;
                continue;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => {}
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        if flag == "--format" {
            ensure!(
                value == "png" || value == "rgb24",
                "--format {value:?}: expected png or rgb24"
            );
            options.format.clone_from(value);
            continue;
        }
        if flag == "--env" {
            let (name, assigned) = value
                .split_once('=')
                .with_context(|| format!("--env {value:?}: expected NAME=VALUE"))?;
            options.env.push((name.to_owned(), assigned.to_owned()));
            continue;
        }
        let number: u64 = value
            .replace('_', "")
            .parse()
            .with_context(|| format!("{flag} {value:?} is not a number"))?;
        match flag.as_str() {
            "--frames" => options.frames = number,
            "--warmup" => options.warmup = number,
            "--rounds" => options.rounds = usize::try_from(number)?,
            "--connections" => options.connections = number,
            "--cameras" => options.cameras = number,
            _ => bail!("unknown option {flag:?}\n{USAGE}"),
        }
    }
    ensure!(options.frames > 0, "--frames must be at least 1");
    ensure!(options.rounds > 0, "--rounds must be at least 1");
    ensure!(options.connections > 0, "--connections must be at least 1");
    ensure!(
        (1..=99).contains(&options.cameras),
        "--cameras must be 1 to 99"
    );
    Ok(options)
}

fn env_list(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe_pinning(pinning: &Pinning) -> String {
    match (&pinning.server, &pinning.load) {
        (Some(server), Some(load)) => {
            format!("processor pinned to CPU {server}, load generator and tracker to CPU {load}")
        }
        _ => "not pinned".to_owned(),
    }
}

/// Runs `bench-frames` to write `frames` bodies to `out`, scene indices from `first` on.
fn render(
    binary: &Path,
    options: &Options,
    out: &Path,
    frames: u64,
    first: u64,
) -> anyhow::Result<()> {
    let output = Command::new(binary)
        .arg("--out")
        .arg(out)
        .args([
            "--frames",
            &frames.to_string(),
            "--first",
            &first.to_string(),
            "--cameras",
            &options.cameras.to_string(),
            "--format",
            &options.format,
            "--width",
            &WIDTH.to_string(),
            "--height",
            &HEIGHT.to_string(),
        ])
        .output()
        .context("cannot run bench-frames")?;
    ensure!(
        output.status.success(),
        "bench-frames failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8_lossy(&output.stdout);
    println!(
        "rendered {} frames into {} ({:.1} MB) in {:.1} s",
        frames,
        out.display(),
        json_number(&line, "bytes").unwrap_or(0.0) / 1e6,
        json_number(&line, "seconds").unwrap_or(0.0),
    );
    Ok(())
}

/// A command with a clean environment (inherited `OTEL_*` variables would skew the
/// comparison), on `cpu` when pinned.
fn service_command(program: &Path, cpu: Option<&String>) -> Command {
    let mut command = crate::bench::command(program, cpu);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    command
}

fn run_one(setup: &Setup, options: &Options, round: usize, mode: Mode) -> anyhow::Result<Sample> {
    let label = format!("round{round}-{}", mode.name());
    let mut tracker = match mode {
        Mode::Off => None,
        Mode::On => {
            let data_dir = setup.run_dir.join(format!("{label}-tracker"));
            if data_dir.exists() {
                fs::remove_dir_all(&data_dir)
                    .with_context(|| format!("cannot remove {}", data_dir.display()))?;
            }
            let mut command = service_command(&setup.tracker, setup.pinning.load.as_ref());
            command
                .env("PORT", "0")
                .env("OTLP_GRPC_PORT", "0")
                .env("DATA_DIR", &data_dir)
                .env("OTEL_TRACES_EXPORTER", "none");
            let mut tracker = Spawned::start(
                &mut command,
                &format!("{label}-tracker"),
                Some(&setup.log_dir),
            )?;
            let url = tracker.url(Duration::from_secs(30))?;
            Some((tracker, url))
        }
    };

    let mut command = service_command(&setup.processor, setup.pinning.server.as_ref());
    command.env("PORT", "0");
    command.envs(options.env.iter().map(|(name, value)| (name, value)));
    match &tracker {
        None => {
            command.env("OTEL_SDK_DISABLED", "true");
        }
        Some((_, tracker_url)) => {
            command
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", tracker_url)
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                .env("OTEL_TRACES_SAMPLER", "always_on")
                .env("OTEL_METRICS_EXPORTER", "prometheus");
        }
    }
    let mut processor = Spawned::start(
        &mut command,
        &format!("{label}-frame-processor"),
        Some(&setup.log_dir),
    )?;
    let url = processor.url(Duration::from_secs(30))?;
    let pid = processor.pid();
    let process_url = format!("{url}/process");

    let tracker_before = match &tracker {
        Some((spawned, _)) => Some(cpu_time(spawned.pid(), setup.clock_ticks)?),
        None => None,
    };
    let warm = load(
        setup,
        options,
        &process_url,
        &setup.warmup_bodies,
        options.warmup,
    )?;
    ensure!(
        warm.errors == 0,
        "{} errors during the warm-up",
        warm.errors
    );
    let before = cpu_time(pid, setup.clock_ticks)?;
    let measured = load(
        setup,
        options,
        &process_url,
        &setup.frame_bodies,
        options.frames,
    )?;
    let after = cpu_time(pid, setup.clock_ticks)?;
    let rss_kb = rss_kb(pid)?;
    ensure!(
        measured.errors == 0,
        "{} of {} measured requests failed (see {})",
        measured.errors,
        measured.requests,
        setup.log_dir.display()
    );

    let export = match tracker.take() {
        None => {
            processor.stop()?;
            None
        }
        Some((spawned, tracker_url)) => Some(finish_export(
            setup,
            options,
            processor,
            spawned,
            &tracker_url,
            &url,
            tracker_before,
        )?),
    };
    Ok(Sample {
        round,
        mode,
        frames: measured.requests - measured.errors,
        errors: measured.errors,
        seconds: measured.seconds,
        fps: measured.rps,
        p50_ms: measured.p50_us / 1000.0,
        p99_ms: measured.p99_us / 1000.0,
        cpu_ns: after.stat_ns.saturating_sub(before.stat_ns),
        live_cpu_ns: after.sched_ns.saturating_sub(before.sched_ns),
        minor_faults: after.minor_faults.saturating_sub(before.minor_faults),
        threads: after.threads,
        rss_kb,
        export,
    })
}

/// POSTs the first `count` bodies of `bodies` (each once when `count` is the file's line
/// count) over the run's connections, with a fresh `traceparent` each.
fn load(
    setup: &Setup,
    options: &Options,
    url: &str,
    bodies: &Path,
    count: u64,
) -> anyhow::Result<LoadResult> {
    if count == 0 {
        return Ok(LoadResult {
            requests: 0,
            errors: 0,
            seconds: 0.0,
            rps: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
        });
    }
    let args = [
        "--url".to_owned(),
        url.to_owned(),
        "--bodies".to_owned(),
        bodies.display().to_string(),
        "--requests".to_owned(),
        count.to_string(),
        "--connections".to_owned(),
        options.connections.to_string(),
        "--traceparent".to_owned(),
    ];
    run_load(&setup.load, setup.pinning.load.as_ref(), &args)
}

/// Scrapes the processor's span counters, stops it (it flushes), waits for the tracker to
/// hold every span of the run, and stops the tracker.
fn finish_export(
    setup: &Setup,
    options: &Options,
    processor: Spawned,
    tracker: Spawned,
    tracker_url: &str,
    processor_url: &str,
    tracker_before: Option<CpuTime>,
) -> anyhow::Result<Export> {
    let metrics = metrics_text(&format!("{processor_url}/metrics"))?;
    let exported_before_exit = crate::demo::metric_sum(&metrics, "telemetry_spans_exported_total");
    let dropped_before_exit = crate::demo::metric_sum(&metrics, "telemetry_spans_dropped_total");
    processor.stop()?;

    let expected = (options.warmup + options.frames) * SPANS_PER_FRAME;
    let tracker_metrics_url = format!("{tracker_url}/metrics");
    let deadline = Instant::now() + INGEST_TIMEOUT;
    let mut last = (0, Instant::now());
    let tracker_metrics = loop {
        let text = metrics_text(&tracker_metrics_url)?;
        let received = crate::demo::metric_sum(&text, "tracker_ingest_spans_received_total");
        let queued = crate::demo::metric_sum(&text, "tracker_ingest_queue_events");
        if received >= expected && queued == 0 {
            break text;
        }
        if received != last.0 {
            last = (received, Instant::now());
        }
        // Nothing more arrives once the processor has exited and flushed: stop waiting
        // after a quiet second rather than for the whole timeout.
        if Instant::now() > deadline || (queued == 0 && last.1.elapsed() > Duration::from_secs(2)) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let tracker_after = cpu_time(tracker.pid(), setup.clock_ticks)?;
    tracker.stop()?;
    let tracker_ns = tracker_before.map_or(0, |before| {
        tracker_after.stat_ns.saturating_sub(before.stat_ns)
    });
    let frames = (options.warmup + options.frames).max(1);
    Ok(Export {
        exported_before_exit,
        dropped_before_exit,
        received: crate::demo::metric_sum(&tracker_metrics, "tracker_ingest_spans_received_total"),
        expected,
        events_stored: crate::demo::metric_sum(
            &tracker_metrics,
            "tracker_store_events_stored_total",
        ),
        without_frame_id: crate::demo::metric_sum(
            &tracker_metrics,
            "tracker_ingest_spans_dropped_total",
        ),
        rejected: crate::demo::metric_sum(&tracker_metrics, "tracker_ingest_rejected_total"),
        tracker_cpu_ms_per_frame: tracker_ns as f64 / 1e6 / frames as f64,
    })
}

fn metrics_text(url: &str) -> anyhow::Result<String> {
    let (status, body) = http_get(url)?;
    ensure!(status == 200, "GET {url} answered {status}");
    Ok(body)
}

fn sample_line(s: &Sample) -> String {
    let mut line = format!(
        "round {} {:<3} {:>7.3} ms CPU/frame (live threads {:>6.3}) {:>6.0} faults/frame {:>7.2} frames/s  \
         p50 {:>6.1} ms  p99 {:>6.1} ms  RSS {:>6.1} MB  {} threads",
        s.round,
        s.mode.name(),
        s.cpu_ms_per_frame(),
        s.live_cpu_ms_per_frame(),
        s.faults_per_frame(),
        s.fps,
        s.p50_ms,
        s.p99_ms,
        s.rss_kb as f64 / 1024.0,
        s.threads,
    );
    if let Some(export) = &s.export {
        line.push_str(&format!(
            "  spans {}/{} at the tracker, {} dropped before exit; tracker {:.2} ms CPU/frame",
            export.received,
            export.expected,
            export.dropped_before_exit,
            export.tracker_cpu_ms_per_frame
        ));
    }
    line
}

/// Everything the printed table and the JSON file are made from.
#[derive(Debug)]
struct Report<'a> {
    options: &'a Options,
    pinning: &'a Pinning,
    samples: &'a [Sample],
    load_before: String,
    load_after: String,
    elapsed: Duration,
}

/// Medians over rounds of one mode.
#[derive(Debug)]
struct Summary {
    cpu_ms: f64,
    cpu_ms_min: f64,
    cpu_ms_max: f64,
    live_cpu_ms: f64,
    faults: f64,
    fps: f64,
    fps_min: f64,
    fps_max: f64,
    p99_ms: f64,
    rss_mb: f64,
}

/// On against off.
#[derive(Debug)]
struct Comparison {
    /// Each round's `on / off - 1` of CPU per frame and of frames/s, in %.
    cpu_rounds: Vec<f64>,
    fps_rounds: Vec<f64>,
    /// Medians of those.
    cpu_percent: f64,
    fps_percent: f64,
    /// `median(on) / median(off) - 1`, in %.
    cpu_percent_of_medians: f64,
    live_cpu_percent_of_medians: f64,
}

impl Report<'_> {
    fn runs(&self, mode: Mode) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.mode == mode)
    }

    fn summary(&self, mode: Mode) -> Summary {
        let cpu: Vec<f64> = self.runs(mode).map(Sample::cpu_ms_per_frame).collect();
        let fps: Vec<f64> = self.runs(mode).map(|s| s.fps).collect();
        let min = |values: &[f64]| values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = |values: &[f64]| values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Summary {
            cpu_ms: median(&cpu),
            cpu_ms_min: min(&cpu),
            cpu_ms_max: max(&cpu),
            live_cpu_ms: median(
                &self
                    .runs(mode)
                    .map(Sample::live_cpu_ms_per_frame)
                    .collect::<Vec<_>>(),
            ),
            faults: median(
                &self
                    .runs(mode)
                    .map(Sample::faults_per_frame)
                    .collect::<Vec<_>>(),
            ),
            fps: median(&fps),
            fps_min: min(&fps),
            fps_max: max(&fps),
            p99_ms: median(&self.runs(mode).map(|s| s.p99_ms).collect::<Vec<_>>()),
            rss_mb: median(
                &self
                    .runs(mode)
                    .map(|s| s.rss_kb as f64 / 1024.0)
                    .collect::<Vec<_>>(),
            ),
        }
    }

    fn comparison(&self) -> Comparison {
        let mut cpu_rounds = Vec::new();
        let mut fps_rounds = Vec::new();
        for round in 1..=self.options.rounds {
            let find = |mode: Mode| {
                self.samples
                    .iter()
                    .find(|s| s.round == round && s.mode == mode)
            };
            if let (Some(off), Some(on)) = (find(Mode::Off), find(Mode::On)) {
                cpu_rounds.push((on.cpu_ms_per_frame() / off.cpu_ms_per_frame() - 1.0) * 100.0);
                fps_rounds.push((on.fps / off.fps - 1.0) * 100.0);
            }
        }
        let off = self.summary(Mode::Off);
        let on = self.summary(Mode::On);
        Comparison {
            cpu_percent: median(&cpu_rounds),
            fps_percent: median(&fps_rounds),
            cpu_rounds,
            fps_rounds,
            cpu_percent_of_medians: (on.cpu_ms / off.cpu_ms - 1.0) * 100.0,
            live_cpu_percent_of_medians: (on.live_cpu_ms / off.live_cpu_ms - 1.0) * 100.0,
        }
    }

    fn spans(&self) -> (u64, u64, u64) {
        self.runs(Mode::On).filter_map(|s| s.export.as_ref()).fold(
            (0, 0, 0),
            |(received, expected, dropped), e| {
                (
                    received + e.received,
                    expected + e.expected,
                    dropped + e.dropped_before_exit,
                )
            },
        )
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(&mut out, String::new());
        line(
            &mut out,
            format!(
                "pipeline benchmark: medians of {} round(s); CPU = frame-processor process (all threads) per frame",
                self.options.rounds
            ),
        );
        for mode in [Mode::Off, Mode::On] {
            line(
                &mut out,
                format!("  {:<3} {}", mode.name(), mode.describe()),
            );
        }
        line(&mut out, String::new());
        line(
            &mut out,
            "mode  CPU ms/frame (min–max)      live threads  faults/frame  frames/s (min–max)        p99 ms  RSS MB"
                .to_owned(),
        );
        for mode in [Mode::Off, Mode::On] {
            let s = self.summary(mode);
            line(
                &mut out,
                format!(
                    "{:<5} {:>12.3} ({:>6.3}–{:<6.3})  {:>12.3}  {:>12.0}  {:>8.2} ({:>6.2}–{:<6.2})  {:>7.1}  {:>6.1}",
                    mode.name(),
                    s.cpu_ms,
                    s.cpu_ms_min,
                    s.cpu_ms_max,
                    s.live_cpu_ms,
                    s.faults,
                    s.fps,
                    s.fps_min,
                    s.fps_max,
                    s.p99_ms,
                    s.rss_mb,
                ),
            );
        }
        let c = self.comparison();
        let rounds = |values: &[f64]| {
            values
                .iter()
                .map(|v| format!("{v:+.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        line(&mut out, String::new());
        line(
            &mut out,
            format!(
                "CPU per frame, on vs off: {:+.2} % (median of per-round ratios; rounds: {} %; ratio of medians {:+.2} %, \
                 live threads only {:+.2} %) target < {TARGET_OVERHEAD_PERCENT} %: {}",
                c.cpu_percent,
                rounds(&c.cpu_rounds),
                c.cpu_percent_of_medians,
                c.live_cpu_percent_of_medians,
                verdict(c.cpu_percent < TARGET_OVERHEAD_PERCENT),
            ),
        );
        line(
            &mut out,
            format!(
                "frames/s, on vs off:      {:+.2} % (median of per-round ratios; rounds: {} %)",
                c.fps_percent,
                rounds(&c.fps_rounds),
            ),
        );
        let (received, expected, dropped) = self.spans();
        let tracker_cpu = median(
            &self
                .runs(Mode::On)
                .filter_map(|s| s.export.as_ref().map(|e| e.tracker_cpu_ms_per_frame))
                .collect::<Vec<_>>(),
        );
        line(
            &mut out,
            format!(
                "spans at the tracker: {received}/{expected} ({SPANS_PER_FRAME} per frame, warm-up included){}; \
                 dropped by the processor before exit: {dropped}; tracker CPU {tracker_cpu:.2} ms/frame (not counted)",
                if received == expected {
                    ", every span arrived".to_owned()
                } else {
                    format!(", {} MISSING", expected.saturating_sub(received))
                }
            ),
        );
        if !self.options.env.is_empty() {
            line(
                &mut out,
                format!(
                    "processor environment (both modes): {}",
                    env_list(&self.options.env)
                ),
            );
        }
        line(
            &mut out,
            format!(
                "{}; load average before: {}, after: {}; took {:.0} s",
                describe_pinning(self.pinning),
                self.load_before,
                self.load_after,
                self.elapsed.as_secs_f64()
            ),
        );
        out
    }

    fn json(&self) -> Value {
        let options = self.options;
        let summary = |mode: Mode| {
            let s = self.summary(mode);
            json!({
                "mode": mode.name(),
                "cpu_ms_per_frame": s.cpu_ms,
                "cpu_ms_min": s.cpu_ms_min,
                "cpu_ms_max": s.cpu_ms_max,
                "live_threads_cpu_ms_per_frame": s.live_cpu_ms,
                "minor_faults_per_frame": s.faults,
                "fps": s.fps,
                "fps_min": s.fps_min,
                "fps_max": s.fps_max,
                "p99_ms": s.p99_ms,
                "rss_mb": s.rss_mb,
            })
        };
        let c = self.comparison();
        let (received, expected, dropped) = self.spans();
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|s| {
                json!({
                    "round": s.round,
                    "mode": s.mode.name(),
                    "frames": s.frames,
                    "errors": s.errors,
                    "seconds": s.seconds,
                    "fps": s.fps,
                    "p50_ms": s.p50_ms,
                    "p99_ms": s.p99_ms,
                    "cpu_ns": s.cpu_ns,
                    "live_threads_cpu_ns": s.live_cpu_ns,
                    "cpu_ms_per_frame": s.cpu_ms_per_frame(),
                    "minor_faults": s.minor_faults,
                    "threads": s.threads,
                    "rss_kb": s.rss_kb,
                    "export": s.export.as_ref().map(|e| json!({
                        "processor_spans_exported_before_exit": e.exported_before_exit,
                        "processor_spans_dropped_before_exit": e.dropped_before_exit,
                        "tracker_spans_received": e.received,
                        "tracker_spans_expected": e.expected,
                        "tracker_events_stored": e.events_stored,
                        "tracker_spans_without_frame_id": e.without_frame_id,
                        "tracker_spans_rejected": e.rejected,
                        "tracker_cpu_ms_per_frame": e.tracker_cpu_ms_per_frame,
                    })),
                })
            })
            .collect();
        json!({
            "config": {
                "rounds": options.rounds,
                "frames": options.frames,
                "warmup": options.warmup,
                "connections": options.connections,
                "cameras": options.cameras,
                "format": options.format,
                "processor_env": env_list(&options.env),
                "width": WIDTH,
                "height": HEIGHT,
                "spans_per_frame": SPANS_PER_FRAME,
                "processor_cpu": self.pinning.server,
                "load_cpu": self.pinning.load,
                "load_before": self.load_before,
                "load_after": self.load_after,
                "seconds": self.elapsed.as_secs_f64(),
            },
            "summary": [summary(Mode::Off), summary(Mode::On)],
            "comparison": {
                "cpu_overhead_percent": c.cpu_percent,
                "cpu_overhead_percent_rounds": c.cpu_rounds,
                "cpu_overhead_percent_of_medians": c.cpu_percent_of_medians,
                "live_threads_cpu_overhead_percent_of_medians": c.live_cpu_percent_of_medians,
                "fps_change_percent": c.fps_percent,
                "fps_change_percent_rounds": c.fps_rounds,
                "target_percent": TARGET_OVERHEAD_PERCENT,
                "met": c.cpu_percent < TARGET_OVERHEAD_PERCENT,
                "spans_received": received,
                "spans_expected": expected,
                "spans_dropped_before_exit": dropped,
            },
            "samples": samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::bench_pipeline::Mode;

    #[test]
    fn rounds_alternate_the_order_of_the_modes() {
        assert_eq!(Mode::order(1), [Mode::Off, Mode::On]);
        assert_eq!(Mode::order(2), [Mode::On, Mode::Off]);
        assert_eq!(Mode::order(3), [Mode::Off, Mode::On]);
    }
}
