//! `cargo xtask bench pipeline [--frames N] [--chunk N] [--warmup N] [--rounds R]
//! [--connections C] [--cameras C] [--format png|rgb24] [--env NAME=VALUE]... [--simultaneous]
//! [--no-pin]`:
//! what telemetry costs the frame processor (issue 5: "< 1 % difference"), side by side in
//! one run, in two modes:
//!
//! - `off`: `frame-processor` with `OTEL_SDK_DISABLED=true` (no spans, no metrics recorder;
//!   the JSON console logs stay, as they do in production);
//! - `on`: the production set-up at 100 % sampling: `OTEL_TRACES_SAMPLER=always_on`, spans
//!   exported over OTLP/HTTP (protobuf) to a running `tracker` (a fresh SQLite `DATA_DIR`
//!   per round), Prometheus metrics, the batch span processor's defaults.
//!
//! What runs:
//! - release builds of `frame-processor`, `tracker`, `bench-load` and `bench-frames`,
//!   run from copies in `target/bench/bin/` (as `bench middleware` does);
//! - `bench-frames` renders the frames once: W warm-up frames, then N measured frames in
//!   chunks of `--chunk` frames, one file of `POST /process` bodies each (640x480 PNG with
//!   ground truth by default, round-robin over 4 seeded cameras, bodies built by
//!   frame-capture's own `request_body`). Both modes get the same bodies in the same order,
//!   so they do the same detection work, the motion stage included (ids grow per camera
//!   from file to file, so every frame's previous frame is the one rendered before it);
//! - every request carries a fresh sampled `traceparent` (`bench-load --traceparent`), as a
//!   frame from frame-capture does, in both modes: the bytes on the wire are the same, and
//!   in `on` the processor's spans continue the caller's trace.
//!
//! Each round starts a tracker and both processors, fresh, and sends the warm-up frames to
//! each. Then the chunks go to the two processors alternately: chunk 1 to one, chunk 1 to
//! the other, chunk 2 in the other order, and so on (closed loop over C keep-alive
//! connections: maximum load), so both modes meet the same moments of this shared machine.
//! Only one processor works at a time; both are pinned to the same CPU. With
//! `--simultaneous` both processors get each chunk at the same time instead (one load
//! generator each) and share their CPU, so that a slow second of the host, which on this
//! shared machine moves a chunk's CPU per frame by tens of percent, falls on both modes
//! alike; their caches then also see the other processor's frames, as on a busy node.
//! Frames/s mean little in that design (the two share one CPU); CPU per frame is what is
//! compared. A chunk's CPU time is the processor's CPU time from the end of its previous
//! chunk (or of the warm-up) to the end of this one, so every CPU second of the measured
//! period is counted, background threads included (for `on` that counts its sampler and
//! export ticks during the other processor's chunks too, which overstates it a little).
//!
//! CPU time comes from `/proc/<pid>/stat` (utime + stime of the whole process, clock ticks:
//! a round spans hundreds of ticks per mode), because threads come and go (each frame runs
//! on Tokio's blocking pool, which starts and retires threads) and `stat` keeps the time
//! of exited threads; the nanosecond
//! sum over `/proc/<pid>/task/*/schedstat` that `bench middleware` uses sees only the
//! threads alive at the time, and is reported as "live threads". Minor page faults per
//! frame (`stat` too) are reported because that is where the difference between the modes
//! turned out to go (see the processor's README). Frames/s is bench-load's rate of
//! successful responses.
//!
//! After the chunks, the `on` processor's `/metrics` is scraped (spans exported and
//! dropped so far), both processors get SIGTERM and must exit 0 (`on` flushes its spans),
//! and the round waits until the tracker has received every span: [`SPANS_PER_FRAME`] per
//! frame, warm-up included. The tracker's CPU over the round is reported per frame but not
//! counted: it is another process, on another CPU when pinned. Spans still queued at the
//! end are exported at shutdown, outside the measured period: at most one batch (512 spans,
//! a few hundred microseconds of CPU against seconds measured).
//!
//! The overhead is `on / off - 1` of CPU per frame over a round's chunks; the verdict takes
//! the median over rounds, printed with the per-round values, the pooled value over all
//! rounds and the spread of the per-chunk ratios. With `taskset` and two or more CPUs the
//! processors run pinned to the last CPU and bench-load and the tracker to CPU 0, as in
//! `bench middleware`. Results are printed and written to `target/bench/pipeline.json`;
//! service logs go to `target/bench/logs/pipeline/`. The rendered bodies (about 0.7 MB a
//! frame) are deleted when the run ends.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::bench::{
    CpuTime, LoadResult, Pinning, all_at_once, clock_ticks_per_second, cpu_time, json_number,
    loadavg, median, quantile, release_copy, rss_kb, run_load, target_dir, verdict,
};
use crate::demo::metric_sum;
use crate::process::{Spawned, http_get};

const USAGE: &str = "\
usage: cargo xtask bench pipeline [options]

Options:
  --frames N       measured frames per round, each sent once to each mode (default 1000)
  --chunk N        frames sent to one mode before the other gets the same ones (default 200)
  --warmup N       warm-up frames per processor and round (default 100)
  --rounds R       rounds, each with fresh processes (default 6)
  --connections C  concurrent keep-alive connections of the load generator (default 3)
  --cameras C      cameras the frames are spread over (default 4)
  --format F       pixel encoding of the frames: png (as frame-capture sends) or rgb24 (default png)
  --env NAME=VALUE also set this variable for the processor, in both modes (repeatable),
                   e.g. GLIBC_TUNABLES=... or LD_PRELOAD=... to compare allocators
  --simultaneous   send each chunk to both processors at the same time (they share their CPU)
                   instead of to one after the other
  --no-pin         do not pin the processors and the load generator to separate CPUs";

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
    chunk: u64,
    warmup: u64,
    rounds: usize,
    connections: u64,
    cameras: u64,
    format: String,
    /// Extra variables of the processor, both modes.
    env: Vec<(String, String)>,
    pin: bool,
    /// Both processors get each chunk at the same time.
    simultaneous: bool,
}

/// Telemetry off or on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    On,
}

/// The binaries (copies) and the request bodies.
#[derive(Debug)]
struct Setup {
    processor: PathBuf,
    tracker: PathBuf,
    load: PathBuf,
    warmup_bodies: PathBuf,
    /// The measured frames, one file per chunk, with its frame count.
    chunks: Vec<(PathBuf, u64)>,
    pinning: Pinning,
    clock_ticks: u64,
    run_dir: PathBuf,
    log_dir: PathBuf,
}

/// One chunk of frames sent to one processor.
#[derive(Debug, Clone)]
struct Chunk {
    round: usize,
    index: usize,
    mode: Mode,
    /// Successful responses.
    frames: u64,
    seconds: f64,
    fps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The processor's CPU (ns) since its previous chunk: the whole process from `stat`,
    /// and the threads alive at both ends from `schedstat`.
    cpu_ns: u64,
    live_cpu_ns: u64,
    minor_faults: u64,
}

/// One round: both processors over all chunks, and where the spans went.
#[derive(Debug, Clone)]
struct Round {
    round: usize,
    off: Totals,
    on: Totals,
    /// `on / off - 1` of CPU per frame for each chunk, %.
    chunk_percents: Vec<f64>,
    export: Export,
}

/// One mode's sums over a round's chunks.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    frames: u64,
    seconds: f64,
    cpu_ns: u64,
    live_cpu_ns: u64,
    minor_faults: u64,
    rss_kb: u64,
    threads: usize,
}

/// Where the spans of a round went.
#[derive(Debug, Clone)]
struct Export {
    /// The `on` processor's own counters, scraped after the chunks (before its final
    /// flush).
    exported_before_exit: u64,
    dropped_before_exit: u64,
    /// The tracker's counts after the processor exited.
    received: u64,
    expected: u64,
    events_stored: u64,
    without_frame_id: u64,
    rejected: u64,
    /// The tracker's CPU over the round per frame of the `on` processor (warm-up
    /// included), ms.
    tracker_cpu_ms_per_frame: f64,
}

/// A running processor and its CPU time at the end of its last chunk.
struct Processor {
    mode: Mode,
    spawned: Spawned,
    url: String,
    last: CpuTime,
}

impl Drop for Setup {
    /// The bodies take hundreds of megabytes and are rendered again by every run.
    fn drop(&mut self) {
        for path in
            std::iter::once(&self.warmup_bodies).chain(self.chunks.iter().map(|(path, _)| path))
        {
            let _ = fs::remove_file(path);
        }
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

    /// Which mode goes first with chunk `index` (0-based) of `round` (1-based): the order
    /// alternates from chunk to chunk, and rounds start alternately.
    fn order(round: usize, index: usize) -> [Mode; 2] {
        if (round + index) % 2 == 1 {
            [Mode::Off, Mode::On]
        } else {
            [Mode::On, Mode::Off]
        }
    }
}

impl Totals {
    fn add(&mut self, chunk: &Chunk) {
        self.frames += chunk.frames;
        self.seconds += chunk.seconds;
        self.cpu_ns += chunk.cpu_ns;
        self.live_cpu_ns += chunk.live_cpu_ns;
        self.minor_faults += chunk.minor_faults;
    }

    fn per_frame(&self, value: f64) -> f64 {
        value / self.frames.max(1) as f64
    }

    fn cpu_ms(&self) -> f64 {
        self.per_frame(self.cpu_ns as f64 / 1e6)
    }

    fn live_cpu_ms(&self) -> f64 {
        self.per_frame(self.live_cpu_ns as f64 / 1e6)
    }

    fn faults(&self) -> f64 {
        self.per_frame(self.minor_faults as f64)
    }

    fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

impl Chunk {
    fn cpu_ms_per_frame(&self) -> f64 {
        self.cpu_ns as f64 / 1e6 / self.frames.max(1) as f64
    }
}

impl Round {
    fn totals(&self, mode: Mode) -> &Totals {
        match mode {
            Mode::Off => &self.off,
            Mode::On => &self.on,
        }
    }

    fn cpu_percent(&self) -> f64 {
        percent(self.on.cpu_ms(), self.off.cpu_ms())
    }

    fn fps_percent(&self) -> f64 {
        percent(self.on.fps(), self.off.fps())
    }
}

/// `on / off - 1`, in %.
fn percent(on: f64, off: f64) -> f64 {
    (on / off - 1.0) * 100.0
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
    let mut setup = Setup {
        processor: release_copy(&target, "frame-processor")?,
        tracker: release_copy(&target, "tracker")?,
        load: release_copy(&target, "bench-load")?,
        warmup_bodies: run_dir.join("warmup.jsonl"),
        chunks: Vec::new(),
        pinning: crate::bench::pinning(options.pin),
        clock_ticks: clock_ticks_per_second(),
        run_dir,
        log_dir,
    };
    render_bodies(&frames_binary, &options, &mut setup)?;

    let load_before = loadavg();
    println!(
        "bench pipeline: {} round(s); {} measured frames per mode and round in chunks of {} \
         (+{} warm-up), {WIDTH}x{HEIGHT} {} over {} camera(s); {} connections; {}; {}",
        options.rounds,
        options.frames,
        options.chunk,
        options.warmup,
        options.format,
        options.cameras,
        options.connections,
        describe_pinning(&setup.pinning),
        describe_schedule(&options),
    );
    if !options.env.is_empty() {
        println!(
            "processor environment (both modes): {}",
            env_list(&options.env)
        );
    }
    println!("load average before: {load_before}");

    let mut rounds = Vec::new();
    let mut chunks = Vec::new();
    for round in 1..=options.rounds {
        let (summary, round_chunks) =
            run_round(&setup, &options, round).with_context(|| format!("round {round}"))?;
        println!("  {}", round_line(&summary));
        rounds.push(summary);
        chunks.extend(round_chunks);
    }
    let report = Report {
        options: &options,
        pinning: &setup.pinning,
        rounds: &rounds,
        chunks: &chunks,
        load_before,
        load_after: loadavg(),
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
        chunk: 200,
        warmup: 100,
        rounds: 6,
        connections: 3,
        cameras: 4,
        format: "png".to_owned(),
        env: Vec::new(),
        pin: true,
        simultaneous: false,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--no-pin" => {
                options.pin = false;
                continue;
            }
            "--simultaneous" => {
                options.simultaneous = true;
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
        match flag.as_str() {
            "--format" => {
                ensure!(
                    value == "png" || value == "rgb24",
                    "--format {value:?}: expected png or rgb24"
                );
                options.format.clone_from(value);
                continue;
            }
            "--env" => {
                let (name, assigned) = value
                    .split_once('=')
                    .with_context(|| format!("--env {value:?}: expected NAME=VALUE"))?;
                options.env.push((name.to_owned(), assigned.to_owned()));
                continue;
            }
            _ => {}
        }
        let number: u64 = value
            .replace('_', "")
            .parse()
            .with_context(|| format!("{flag} {value:?} is not a number"))?;
        match flag.as_str() {
            "--frames" => options.frames = number,
            "--chunk" => options.chunk = number,
            "--warmup" => options.warmup = number,
            "--rounds" => options.rounds = usize::try_from(number)?,
            "--connections" => options.connections = number,
            "--cameras" => options.cameras = number,
            _ => bail!("unknown option {flag:?}\n{USAGE}"),
        }
    }
    ensure!(
        options.frames > 0 && options.chunk > 0,
        "--frames and --chunk must be at least 1"
    );
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

fn describe_schedule(options: &Options) -> &'static str {
    if options.simultaneous {
        "each chunk to both modes at the same time"
    } else {
        "each chunk to one mode, then the other"
    }
}

fn describe_pinning(pinning: &Pinning) -> String {
    match (&pinning.server, &pinning.load) {
        (Some(server), Some(load)) => {
            format!("processors pinned to CPU {server}, load generator and tracker to CPU {load}")
        }
        _ => "not pinned".to_owned(),
    }
}

/// Renders the warm-up file, then the chunk files, in that order: frame ids grow from
/// file to file, and each file continues the cameras' scenes where the previous one ended.
fn render_bodies(binary: &Path, options: &Options, setup: &mut Setup) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut bytes = 0.0;
    let mut first = 0;
    let mut render = |out: &Path, frames: u64| -> anyhow::Result<()> {
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
        bytes += json_number(&String::from_utf8_lossy(&output.stdout), "bytes").unwrap_or(0.0);
        first += frames.div_ceil(options.cameras);
        Ok(())
    };
    render(&setup.warmup_bodies, options.warmup.max(1))?;
    let mut remaining = options.frames;
    for index in 0.. {
        if remaining == 0 {
            break;
        }
        let frames = remaining.min(options.chunk);
        let path = setup.run_dir.join(format!("chunk{index}.jsonl"));
        render(&path, frames)?;
        setup.chunks.push((path, frames));
        remaining -= frames;
    }
    println!(
        "rendered {} + {} frames into {} ({:.0} MB) in {:.1} s",
        options.warmup,
        options.frames,
        setup.run_dir.display(),
        bytes / 1e6,
        started.elapsed().as_secs_f64()
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

fn run_round(
    setup: &Setup,
    options: &Options,
    round: usize,
) -> anyhow::Result<(Round, Vec<Chunk>)> {
    let data_dir = setup.run_dir.join(format!("round{round}-tracker"));
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
        &format!("round{round}-tracker"),
        Some(&setup.log_dir),
    )?;
    let tracker_url = tracker.url(Duration::from_secs(30))?;
    let tracker_before = cpu_time(tracker.pid(), setup.clock_ticks)?;

    let mut processors = Vec::new();
    for mode in Mode::order(round, 0) {
        let mut command = service_command(&setup.processor, setup.pinning.server.as_ref());
        command
            .env("PORT", "0")
            .envs(options.env.iter().map(|(name, value)| (name, value)));
        match mode {
            Mode::Off => {
                command.env("OTEL_SDK_DISABLED", "true");
            }
            Mode::On => {
                command
                    .env("OTEL_EXPORTER_OTLP_ENDPOINT", &tracker_url)
                    .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                    .env("OTEL_TRACES_SAMPLER", "always_on")
                    .env("OTEL_METRICS_EXPORTER", "prometheus");
            }
        }
        let name = format!("round{round}-{}-frame-processor", mode.name());
        let mut spawned = Spawned::start(&mut command, &name, Some(&setup.log_dir))?;
        let url = spawned.url(Duration::from_secs(30))?;
        let warm = load(setup, options, &url, &setup.warmup_bodies, options.warmup)?;
        ensure!(
            warm.errors == 0,
            "{} errors during the warm-up of {}",
            warm.errors,
            mode.name()
        );
        let last = cpu_time(spawned.pid(), setup.clock_ticks)?;
        processors.push(Processor {
            mode,
            spawned,
            url,
            last,
        });
    }

    let mut chunks = Vec::new();
    for (index, (bodies, count)) in setup.chunks.iter().enumerate() {
        if options.simultaneous {
            // Both processors get the chunk at once and share their CPU: whatever the host
            // does during the chunk, it does to both.
            let results = all_at_once(
                processors
                    .iter()
                    .map(|p| p.url.as_str())
                    .map(|url| move || load(setup, options, url, bodies, *count)),
            )?;
            for (processor, result) in processors.iter_mut().zip(results) {
                chunks.push(measure_chunk(setup, processor, round, index, &result)?);
            }
            continue;
        }
        for mode in Mode::order(round, index) {
            let processor = processors
                .iter_mut()
                .find(|p| p.mode == mode)
                .context("both modes run")?;
            let result = load(setup, options, &processor.url, bodies, *count)?;
            chunks.push(measure_chunk(setup, processor, round, index, &result)?);
        }
    }

    let mut off = Totals::default();
    let mut on = Totals::default();
    for processor in &processors {
        let totals = match processor.mode {
            Mode::Off => &mut off,
            Mode::On => &mut on,
        };
        totals.rss_kb = rss_kb(processor.spawned.pid())?;
        totals.threads = processor.last.threads;
    }
    for chunk in &chunks {
        match chunk.mode {
            Mode::Off => off.add(chunk),
            Mode::On => on.add(chunk),
        }
    }
    let chunk_percents = (0..setup.chunks.len())
        .filter_map(|index| {
            let find = |mode: Mode| chunks.iter().find(|c| c.index == index && c.mode == mode);
            Some(percent(
                find(Mode::On)?.cpu_ms_per_frame(),
                find(Mode::Off)?.cpu_ms_per_frame(),
            ))
        })
        .collect();

    let export = finish_round(
        setup,
        options,
        processors,
        tracker,
        &tracker_url,
        tracker_before,
    )?;
    Ok((
        Round {
            round,
            off,
            on,
            chunk_percents,
            export,
        },
        chunks,
    ))
}

/// Checks a chunk's load result and reads the processor's CPU since its previous chunk.
fn measure_chunk(
    setup: &Setup,
    processor: &mut Processor,
    round: usize,
    index: usize,
    result: &LoadResult,
) -> anyhow::Result<Chunk> {
    let mode = processor.mode;
    ensure!(
        result.errors == 0,
        "{} of {} requests of chunk {index} to {} failed (see {})",
        result.errors,
        result.requests,
        mode.name(),
        setup.log_dir.display()
    );
    let now = cpu_time(processor.spawned.pid(), setup.clock_ticks)?;
    let chunk = Chunk {
        round,
        index,
        mode,
        frames: result.requests - result.errors,
        seconds: result.seconds,
        fps: result.rps,
        p50_ms: result.p50_us / 1000.0,
        p99_ms: result.p99_us / 1000.0,
        cpu_ns: now.stat_ns.saturating_sub(processor.last.stat_ns),
        live_cpu_ns: now.sched_ns.saturating_sub(processor.last.sched_ns),
        minor_faults: now.minor_faults.saturating_sub(processor.last.minor_faults),
    };
    processor.last = now;
    Ok(chunk)
}

/// POSTs each body of `bodies` (`count` of them) once over the run's connections, with a
/// fresh `traceparent` each.
fn load(
    setup: &Setup,
    options: &Options,
    url: &str,
    bodies: &Path,
    count: u64,
) -> anyhow::Result<LoadResult> {
    let args = [
        "--url".to_owned(),
        format!("{url}/process"),
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

/// Scrapes the `on` processor's span counters, stops both processors (`on` flushes),
/// waits for the tracker to hold every span of the round, and stops the tracker.
fn finish_round(
    setup: &Setup,
    options: &Options,
    processors: Vec<Processor>,
    tracker: Spawned,
    tracker_url: &str,
    tracker_before: CpuTime,
) -> anyhow::Result<Export> {
    let mut exported_before_exit = 0;
    let mut dropped_before_exit = 0;
    for processor in processors {
        if processor.mode == Mode::On {
            let metrics = metrics_text(&format!("{}/metrics", processor.url))?;
            exported_before_exit = metric_sum(&metrics, "telemetry_spans_exported_total");
            dropped_before_exit = metric_sum(&metrics, "telemetry_spans_dropped_total");
        }
        processor.spawned.stop()?;
    }

    let frames = options.warmup + options.frames;
    let expected = frames * SPANS_PER_FRAME;
    let tracker_metrics_url = format!("{tracker_url}/metrics");
    let deadline = Instant::now() + INGEST_TIMEOUT;
    let mut last = (0, Instant::now());
    let tracker_metrics = loop {
        let text = metrics_text(&tracker_metrics_url)?;
        let received = metric_sum(&text, "tracker_ingest_spans_received_total");
        let queued = metric_sum(&text, "tracker_ingest_queue_events");
        if received >= expected && queued == 0 {
            break text;
        }
        if received != last.0 {
            last = (received, Instant::now());
        }
        // Nothing more arrives once the processor has exited and flushed: stop waiting
        // after two quiet seconds rather than for the whole timeout.
        if Instant::now() > deadline || (queued == 0 && last.1.elapsed() > Duration::from_secs(2)) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let tracker_after = cpu_time(tracker.pid(), setup.clock_ticks)?;
    tracker.stop()?;
    Ok(Export {
        exported_before_exit,
        dropped_before_exit,
        received: metric_sum(&tracker_metrics, "tracker_ingest_spans_received_total"),
        expected,
        events_stored: metric_sum(&tracker_metrics, "tracker_store_events_stored_total"),
        without_frame_id: metric_sum(&tracker_metrics, "tracker_ingest_spans_dropped_total"),
        rejected: metric_sum(&tracker_metrics, "tracker_ingest_rejected_total"),
        tracker_cpu_ms_per_frame: tracker_after.stat_ns.saturating_sub(tracker_before.stat_ns)
            as f64
            / 1e6
            / frames.max(1) as f64,
    })
}

fn metrics_text(url: &str) -> anyhow::Result<String> {
    let (status, body) = http_get(url)?;
    ensure!(status == 200, "GET {url} answered {status}");
    Ok(body)
}

fn round_line(round: &Round) -> String {
    let mode = |totals: &Totals| {
        format!(
            "{:.3} ms CPU/frame ({:.0} faults, {:.1} frames/s)",
            totals.cpu_ms(),
            totals.faults(),
            totals.fps()
        )
    };
    format!(
        "round {}: off {}  on {}  → CPU/frame {:+.2} %, frames/s {:+.2} %; chunks {} %; \
         spans {}/{} at the tracker, {} dropped before exit",
        round.round,
        mode(&round.off),
        mode(&round.on),
        round.cpu_percent(),
        round.fps_percent(),
        signed_list(&round.chunk_percents),
        round.export.received,
        round.export.expected,
        round.export.dropped_before_exit,
    )
}

fn signed_list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:+.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything the printed table and the JSON file are made from.
#[derive(Debug)]
struct Report<'a> {
    options: &'a Options,
    pinning: &'a Pinning,
    rounds: &'a [Round],
    chunks: &'a [Chunk],
    load_before: String,
    load_after: String,
    elapsed: Duration,
}

impl Report<'_> {
    /// The median over rounds of a mode's per-frame value.
    fn median_of(&self, mode: Mode, f: impl Fn(&Totals) -> f64) -> f64 {
        median(
            &self
                .rounds
                .iter()
                .map(|r| f(r.totals(mode)))
                .collect::<Vec<_>>(),
        )
    }

    /// A mode's sums over every round.
    fn pooled(&self, mode: Mode) -> Totals {
        let mut totals = Totals::default();
        for chunk in self.chunks.iter().filter(|c| c.mode == mode) {
            totals.add(chunk);
        }
        totals
    }

    fn cpu_percent(&self) -> f64 {
        median(
            &self
                .rounds
                .iter()
                .map(Round::cpu_percent)
                .collect::<Vec<_>>(),
        )
    }

    fn fps_percent(&self) -> f64 {
        median(
            &self
                .rounds
                .iter()
                .map(Round::fps_percent)
                .collect::<Vec<_>>(),
        )
    }

    fn chunk_percents(&self) -> Vec<f64> {
        self.rounds
            .iter()
            .flat_map(|r| r.chunk_percents.iter().copied())
            .collect()
    }

    fn spans(&self) -> (u64, u64, u64) {
        self.rounds
            .iter()
            .fold((0, 0, 0), |(received, expected, dropped), r| {
                (
                    received + r.export.received,
                    expected + r.export.expected,
                    dropped + r.export.dropped_before_exit,
                )
            })
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(String::new());
        line(format!(
            "pipeline benchmark: {} round(s) of {} frames per mode, {}; CPU = frame-processor process (all threads) per frame",
            self.options.rounds,
            self.options.frames,
            describe_schedule(self.options)
        ));
        for mode in [Mode::Off, Mode::On] {
            line(format!("  {:<3} {}", mode.name(), mode.describe()));
        }
        line(String::new());
        line(
            "round  off ms/frame  on ms/frame  CPU on/off  off frames/s  on frames/s  off faults  on faults  live threads on/off"
                .to_owned(),
        );
        for r in self.rounds {
            line(format!(
                "{:<5}  {:>12.3}  {:>11.3}  {:>+9.2} %  {:>12.1}  {:>11.1}  {:>10.0}  {:>9.0}  {:>+17.2} %",
                r.round,
                r.off.cpu_ms(),
                r.on.cpu_ms(),
                r.cpu_percent(),
                r.off.fps(),
                r.on.fps(),
                r.off.faults(),
                r.on.faults(),
                percent(r.on.live_cpu_ms(), r.off.live_cpu_ms()),
            ));
        }
        let off = self.pooled(Mode::Off);
        let on = self.pooled(Mode::On);
        line(format!(
            "median {:>12.3}  {:>11.3}  {:>+9.2} %  {:>12.1}  {:>11.1}  {:>10.0}  {:>9.0}",
            self.median_of(Mode::Off, Totals::cpu_ms),
            self.median_of(Mode::On, Totals::cpu_ms),
            self.cpu_percent(),
            self.median_of(Mode::Off, Totals::fps),
            self.median_of(Mode::On, Totals::fps),
            self.median_of(Mode::Off, Totals::faults),
            self.median_of(Mode::On, Totals::faults),
        ));
        line(format!(
            "pooled {:>12.3}  {:>11.3}  {:>+9.2} %  {:>12.1}  {:>11.1}  {:>10.0}  {:>9.0}  {:>+17.2} %",
            off.cpu_ms(),
            on.cpu_ms(),
            percent(on.cpu_ms(), off.cpu_ms()),
            off.fps(),
            on.fps(),
            off.faults(),
            on.faults(),
            percent(on.live_cpu_ms(), off.live_cpu_ms()),
        ));
        line(String::new());
        let chunk_percents = self.chunk_percents();
        let cpu = self.cpu_percent();
        let (received, expected, dropped) = self.spans();
        line(format!(
            "CPU per frame, on vs off: {cpu:+.2} % (median over rounds; pooled {:+.2} %; per chunk: median {:+.2} %, \
             quartiles {:+.2} to {:+.2} %, range {:+.2} to {:+.2} %) target < {TARGET_OVERHEAD_PERCENT} %: {}",
            percent(on.cpu_ms(), off.cpu_ms()),
            median(&chunk_percents),
            quantile(&chunk_percents, 0.25),
            quantile(&chunk_percents, 0.75),
            quantile(&chunk_percents, 0.0),
            quantile(&chunk_percents, 1.0),
            if received == expected {
                verdict(cpu < TARGET_OVERHEAD_PERCENT)
            } else {
                "NOT VALID (spans were lost, so `on` did less work than in production)"
            },
        ));
        line(format!(
            "frames/s, on vs off:      {:+.2} % (median over rounds; pooled {:+.2} %); p99 latency off {:.1} ms, on {:.1} ms (median chunk)",
            self.fps_percent(),
            percent(on.fps(), off.fps()),
            median(&self.chunk_values(Mode::Off, |c| c.p99_ms)),
            median(&self.chunk_values(Mode::On, |c| c.p99_ms)),
        ));
        line(format!(
            "spans at the tracker: {received}/{expected} ({SPANS_PER_FRAME} per frame, warm-up included){}; \
             dropped by the processor before exit: {dropped}; tracker CPU {:.2} ms/frame (not counted)",
            if received == expected {
                ", every span arrived".to_owned()
            } else {
                format!(", {} MISSING", expected.saturating_sub(received))
            },
            median(
                &self
                    .rounds
                    .iter()
                    .map(|r| r.export.tracker_cpu_ms_per_frame)
                    .collect::<Vec<_>>()
            ),
        ));
        line(format!(
            "RSS after the chunks: off {:.1} MB, on {:.1} MB (median); threads: off {}, on {}",
            self.median_of(Mode::Off, |t| t.rss_kb as f64 / 1024.0),
            self.median_of(Mode::On, |t| t.rss_kb as f64 / 1024.0),
            self.rounds.first().map_or(0, |r| r.off.threads),
            self.rounds.first().map_or(0, |r| r.on.threads),
        ));
        if !self.options.env.is_empty() {
            line(format!(
                "processor environment (both modes): {}",
                env_list(&self.options.env)
            ));
        }
        line(format!(
            "{}; load average before: {}, after: {}; took {:.0} s",
            describe_pinning(self.pinning),
            self.load_before,
            self.load_after,
            self.elapsed.as_secs_f64()
        ));
        out
    }

    fn chunk_values(&self, mode: Mode, f: impl Fn(&Chunk) -> f64) -> Vec<f64> {
        self.chunks
            .iter()
            .filter(|c| c.mode == mode)
            .map(f)
            .collect()
    }

    fn json(&self) -> Value {
        let options = self.options;
        let totals = |t: &Totals| {
            json!({
                "frames": t.frames,
                "seconds": t.seconds,
                "cpu_ns": t.cpu_ns,
                "cpu_ms_per_frame": t.cpu_ms(),
                "live_threads_cpu_ms_per_frame": t.live_cpu_ms(),
                "minor_faults_per_frame": t.faults(),
                "fps": t.fps(),
                "rss_kb": t.rss_kb,
                "threads": t.threads,
            })
        };
        let rounds: Vec<Value> = self
            .rounds
            .iter()
            .map(|r| {
                let e = &r.export;
                json!({
                    "round": r.round,
                    "off": totals(&r.off),
                    "on": totals(&r.on),
                    "cpu_overhead_percent": r.cpu_percent(),
                    "fps_change_percent": r.fps_percent(),
                    "chunk_cpu_overhead_percents": r.chunk_percents,
                    "export": {
                        "processor_spans_exported_before_exit": e.exported_before_exit,
                        "processor_spans_dropped_before_exit": e.dropped_before_exit,
                        "tracker_spans_received": e.received,
                        "tracker_spans_expected": e.expected,
                        "tracker_events_stored": e.events_stored,
                        "tracker_spans_without_frame_id": e.without_frame_id,
                        "tracker_spans_rejected": e.rejected,
                        "tracker_cpu_ms_per_frame": e.tracker_cpu_ms_per_frame,
                    },
                })
            })
            .collect();
        let chunks: Vec<Value> = self
            .chunks
            .iter()
            .map(|c| {
                json!({
                    "round": c.round,
                    "chunk": c.index,
                    "mode": c.mode.name(),
                    "frames": c.frames,
                    "seconds": c.seconds,
                    "fps": c.fps,
                    "p50_ms": c.p50_ms,
                    "p99_ms": c.p99_ms,
                    "cpu_ns": c.cpu_ns,
                    "live_threads_cpu_ns": c.live_cpu_ns,
                    "minor_faults": c.minor_faults,
                })
            })
            .collect();
        let off = self.pooled(Mode::Off);
        let on = self.pooled(Mode::On);
        let chunk_percents = self.chunk_percents();
        let (received, expected, dropped) = self.spans();
        json!({
            "config": {
                "rounds": options.rounds,
                "frames": options.frames,
                "chunk": options.chunk,
                "warmup": options.warmup,
                "connections": options.connections,
                "cameras": options.cameras,
                "simultaneous": options.simultaneous,
                "format": options.format,
                "width": WIDTH,
                "height": HEIGHT,
                "processor_env": env_list(&options.env),
                "spans_per_frame": SPANS_PER_FRAME,
                "processor_cpu": self.pinning.server,
                "load_cpu": self.pinning.load,
                "load_before": self.load_before,
                "load_after": self.load_after,
                "seconds": self.elapsed.as_secs_f64(),
            },
            "comparison": {
                "cpu_overhead_percent": self.cpu_percent(),
                "cpu_overhead_percent_pooled": percent(on.cpu_ms(), off.cpu_ms()),
                "chunk_cpu_overhead_percent_median": median(&chunk_percents),
                "chunk_cpu_overhead_percent_quartiles": [quantile(&chunk_percents, 0.25), quantile(&chunk_percents, 0.75)],
                "fps_change_percent": self.fps_percent(),
                "fps_change_percent_pooled": percent(on.fps(), off.fps()),
                "target_percent": TARGET_OVERHEAD_PERCENT,
                "met": received == expected && self.cpu_percent() < TARGET_OVERHEAD_PERCENT,
                "spans_received": received,
                "spans_expected": expected,
                "spans_dropped_before_exit": dropped,
            },
            "pooled": {"off": totals(&off), "on": totals(&on)},
            "rounds": rounds,
            "chunks": chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::bench_pipeline::Mode;

    #[test]
    fn the_order_of_the_modes_alternates_by_chunk_and_by_round() {
        assert_eq!(Mode::order(1, 0), [Mode::Off, Mode::On]);
        assert_eq!(Mode::order(1, 1), [Mode::On, Mode::Off]);
        assert_eq!(Mode::order(2, 0), [Mode::On, Mode::Off]);
        assert_eq!(Mode::order(2, 1), [Mode::Off, Mode::On]);
    }
}
